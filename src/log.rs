//! What components write with `log`: levels, records, and where they go.

use std::sync::Arc;

use wasmtime::component::{ComponentType, Lift, Lower};

use crate::address::Address;

/// A function that receives every log line components write.
///
/// It runs on the shard thread of the actor that logged, inside the actor's
/// invocation: it should return quickly and must not block.
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// Severity of a component's log line. Mirrors `wasmshard:actor/types.log-level`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[component(enum)]
#[repr(u8)]
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
pub struct LogRecord {
    /// The actor's address.
    pub actor: Address,
    /// The actor's name.
    pub name: Arc<str>,
    /// The level it logged at.
    pub level: LogLevel,
    /// The message.
    pub message: String,
}

/// Hands one record to the sink, or to the [`log`] crate (target
/// `wasmshard::guest`) when there is none.
pub(crate) fn emit(
    sink: Option<&LogSink>,
    actor: Address,
    name: &Arc<str>,
    level: LogLevel,
    message: &str,
) {
    match sink {
        Some(sink) => sink(&LogRecord {
            actor,
            name: name.clone(),
            level,
            message: message.to_string(),
        }),
        None => {
            log::log!(target: "wasmshard::guest", level.to_log(), "[{name}] {}: {message}", level.wit_name())
        }
    }
}
