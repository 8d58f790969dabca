//! What components write with `log`: levels, records, and where they go.

use std::sync::Arc;

use wasmtime::component::{ComponentType, Lift, Lower};

use crate::address::Address;

/// A function that receives every log line components write.
///
/// It runs inside the actor's invocation: on the shard thread of the actor that
/// logged, or, for an `init` run by `Runtime::spawn`, on the thread that called
/// `spawn`. It should return quickly and must not block.
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// Severity of a component's log line. Mirrors `wasmshard:actor/types.log-level`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[component(enum)]
#[repr(u8)]
#[non_exhaustive]
pub enum LogLevel {
    /// Finest detail.
    #[component(name = "trace")]
    Trace,
    /// Debugging detail.
    #[component(name = "debug")]
    Debug,
    /// Normal operation.
    #[component(name = "info")]
    Info,
    /// Something unexpected that the actor handled.
    #[component(name = "warn")]
    Warn,
    /// Something failed.
    #[component(name = "error")]
    Error,
}

impl LogLevel {
    /// The WIT name of the level, e.g. `warn`.
    pub fn wit_name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    pub(crate) fn to_log(self) -> log::Level {
        match self {
            LogLevel::Trace => log::Level::Trace,
            LogLevel::Debug => log::Level::Debug,
            LogLevel::Info => log::Level::Info,
            LogLevel::Warn => log::Level::Warn,
            LogLevel::Error => log::Level::Error,
        }
    }
}

/// One log line written by an actor through `log`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogRecord {
    /// The actor's address.
    pub actor: Address,
    /// The actor's name.
    pub name: Arc<str>,
    /// The level it logged at.
    pub level: LogLevel,
    /// The message, made safe to print as one line: control characters (line
    /// breaks, escape sequences) and text-direction overrides are written as
    /// Rust escapes (`\n`, `\u{1b}`), a backslash as two (so that a `\n` the
    /// actor wrote reads apart from an escaped line break), and it is cut where it would pass
    /// [`MAX_LOG_MESSAGE`] bytes, escapes included, saying how much of the
    /// message was cut.
    pub message: String,
}

/// The longest log message kept, in bytes; the rest is cut.
pub const MAX_LOG_MESSAGE: usize = 4096;

/// Whether `c` could forge or disguise a line of the log when printed: a control
/// character, a line or paragraph separator, or a text-direction mark or
/// override.
pub(crate) fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `message` made safe to print as one line, cut after `max` of its bytes
/// (saying how much was cut): control characters and text-direction marks
/// escaped. Text made so may be made so again and stays as it is (short
/// enough), so text that passes through several layers is escaped once.
pub(crate) fn one_line(message: &str, max: usize) -> std::borrow::Cow<'_, str> {
    escaped(message, max, false)
}

/// [`one_line`], and a backslash written as two, so that an escape the text
/// holds reads apart from one made here: for a log record's message (see
/// [`LogRecord::message`]), made once, from the actor's own text.
pub(crate) fn one_log_line(message: &str, max: usize) -> std::borrow::Cow<'_, str> {
    escaped(message, max, true)
}

fn escaped(message: &str, max: usize, backslash: bool) -> std::borrow::Cow<'_, str> {
    let escape = |c: char| (backslash && c == '\\') || unsafe_char(c);
    if message.len() <= max && !message.chars().any(escape) {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len().min(max) + 32);
    let mut kept = 0;
    for c in message.chars() {
        // What is written counts against `max`, escapes and all (an escape
        // is up to ten bytes for one character of the message).
        let at = out.len();
        if escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(at);
            break;
        }
        kept += c.len_utf8();
    }
    if kept < message.len() {
        out.push_str(&format!("… ({} more bytes)", message.len() - kept));
    }
    std::borrow::Cow::Owned(out)
}

/// `text` made safe to print as one line (control characters and
/// text-direction overrides escaped, as Rust escapes, cut after
/// [`MAX_LOG_MESSAGE`] bytes): for whatever a guest could have chosen (a topic,
/// a name it was denied, an error's text) printed where a line must stay one.
/// Text made printable is printable already and comes back as it is, so text
/// the runtime escaped (an `init`'s error in a [`SpawnError`](crate::SpawnError),
/// say) is not escaped twice. (A [`LogRecord::message`] also has its
/// backslashes doubled: it is made once, from the actor's text.)
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    one_line(text, MAX_LOG_MESSAGE)
}

/// Hands one record to the sink, or to the [`log`] crate (target
/// `wasmshard::guest`) when there is none. The message is made one line first
/// (see [`LogRecord::message`]). A sink that panics loses that record, nothing
/// more.
pub(crate) fn emit(
    sink: Option<&LogSink>,
    actor: Address,
    name: &Arc<str>,
    level: LogLevel,
    message: &str,
) {
    let message = one_log_line(message, MAX_LOG_MESSAGE);
    match sink {
        Some(sink) => {
            let record = LogRecord {
                actor,
                name: name.clone(),
                level,
                message: message.into_owned(),
            };
            if crate::panics::quietly(|| sink(&record)).is_some() {
                log::error!("wasmshard: the log sink panicked; a record from `{name}` is lost");
            }
        }
        None => {
            // The process's logger is not ours either: a panic there loses the
            // record, not the shard.
            let _ = crate::panics::quietly(
                || log::log!(target: "wasmshard::guest", level.to_log(), "[{name}] {}: {message}", level.wit_name()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_made_printable_is_cut_by_what_it_writes() {
        // Each escape character becomes six bytes (`\u{1b}`): the cut counts
        // those (it counted the message's bytes, so a line grew six-fold).
        let escapes = "\u{1b}".repeat(5000);
        let line = printable(&escapes);
        assert!(line.len() <= MAX_LOG_MESSAGE + 32, "{}", line.len());
        assert!(line.starts_with("\\u{1b}\\u{1b}"));
        assert!(line.ends_with("more bytes)"), "{line}");
        assert!(!line.contains('\u{1b}'));
        // Line and paragraph separators and the Arabic letter mark break or
        // turn a line as the controls do.
        for c in ['\u{2028}', '\u{2029}', '\u{061c}'] {
            let line = printable(&format!("a{c}b")).into_owned();
            assert!(!line.contains(c), "{line:?}");
        }
        // Plain text within the limit is left as it is.
        assert_eq!(printable("plain"), "plain");
        let long = "x".repeat(MAX_LOG_MESSAGE + 10);
        assert_eq!(
            printable(&long).len(),
            MAX_LOG_MESSAGE + "… (10 more bytes)".len()
        );
    }

    /// Text made printable comes back as it is (the runtime escapes an
    /// `init`'s error, and the CLI prints that error printable: escaping a
    /// backslash there showed `a\\nb` for `a` and `b` on two lines); only a
    /// log record's message, made once, doubles backslashes.
    #[test]
    fn printable_text_is_escaped_once() {
        for text in ["a\nb", "tab\there \u{1b}[2J", "typed \\n", "plain"] {
            let once = printable(text).into_owned();
            assert_eq!(printable(&once), once, "{text:?}");
        }
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("typed \\n"), "typed \\n");
        assert_eq!(one_log_line("typed \\n", MAX_LOG_MESSAGE), "typed \\\\n");
    }
}
