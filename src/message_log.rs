//! Structured message logging, for audits: for each actor whose name matches
//! a pattern of [`RuntimeBuilder::log_messages`](crate::RuntimeBuilder::log_messages),
//! one JSON line per message it receives (when handled) and per message it
//! sends (when admitted, or refused), through the `log` crate at `INFO`,
//! target [`MESSAGE_LOG_TARGET`].
//!
//! Only such actors pay anything: the others one branch where a message is
//! sent, routed and handled. A line is built only if the process's logger
//! takes it. Each line is one JSON object (keys in alphabetical order).
//!
//! What is logged: every message, request, response and timer such an actor
//! handles (`receive`, after the handler returns: a refusal during the
//! handler comes before it); every message, request, response and
//! publication delivery it sends that is admitted (`send`, when routed) and
//! every send, request, answer or publication the runtime refuses it
//! (`send`, with the `send-error`). Not logged: what an `init` that then
//! fails had sent, deliveries of a publication a subscriber refused (counted
//! per topic), the failure notices the runtime sends for the actor when it
//! fails or stops, and requests shed unstarted (`expired`).

use serde_json::{Value, json};

use crate::address::Address;
use crate::envelope::{Envelope, Kind};
use crate::error::{Failure, SendError};
use crate::trace::{Trace, TraceContext};

/// The `log` target of the message lines (`RUST_LOG=wasmshard::messages=info`).
pub const MESSAGE_LOG_TARGET: &str = "wasmshard::messages";

fn kind(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Tell => "message",
        Kind::Request(..) => "request",
        Kind::Response(_, Ok(())) => "response",
        Kind::Response(_, Err(_)) => "failure",
        Kind::Timer => "timer",
        // Control envelopes are not messages.
        Kind::Stop | Kind::Monitor(_) | Kind::Demonitor(_) | Kind::Revoke(_) => return None,
    })
}

fn trace_id(trace: Option<&Trace>) -> Value {
    trace.map_or(Value::Null, |t| {
        Value::String(format!("{:032x}", t.context.trace_id()))
    })
}

/// Whether the process's logger takes the lines (else none is built).
fn wanted() -> bool {
    log::log_enabled!(target: MESSAGE_LOG_TARGET, log::Level::Info)
}

fn emit(line: &Value) {
    // The process's logger is not ours: a panic there loses the line, not
    // the actor or the shard.
    if crate::panics::quietly(|| log::info!(target: MESSAGE_LOG_TARGET, "{line}")).is_some() {
        // The same logger: it may panic again, and that loses the word too.
        let _ = crate::panics::quietly(|| {
            log::error!("wasmshard: the logger panicked; a message-log line is lost")
        });
    }
}

/// The actor `actor` handled `env` on `shard`: `failure` if it failed on it.
#[cold]
#[inline(never)]
pub(crate) fn received(actor: &str, env: &Envelope, shard: usize, failure: Option<&Failure>) {
    let Some(kind) = kind(env.kind) else { return };
    if !wanted() {
        return;
    }
    emit(&json!({
        "event": "receive",
        "actor": actor,
        "shard": shard,
        "to": env.to.to_string(),
        "from": env.from.to_string(),
        "kind": kind,
        "size": env.payload.len(),
        "trace_id": trace_id(env.trace.as_deref()),
        "outcome": failure.map_or_else(|| "handled".to_string(), |f| format!("failed: {f}")),
    }));
}

/// The actor `actor` sent `env`, admitted at its target.
#[cold]
#[inline(never)]
pub(crate) fn sent(actor: &str, env: &Envelope) {
    let Some(kind) = kind(env.kind) else { return };
    if !wanted() {
        return;
    }
    emit(&json!({
        "event": "send",
        "actor": actor,
        "from": env.from.to_string(),
        "to": env.to.to_string(),
        "kind": kind,
        "size": env.payload.len(),
        "trace_id": trace_id(env.trace.as_deref()),
        "outcome": "admitted",
    }));
}

/// Whom a refused send was for.
#[derive(Clone, Copy)]
pub(crate) enum Whom<'a> {
    /// An actor (`to`).
    Actor(Address),
    /// A topic (`topic`).
    Topic(&'a str),
    /// The requester of request `id` (`request_id`; a refused answer).
    Answer(u64),
}

/// The actor `actor` (`from`) tried to send `kind` of `size` bytes to `to`
/// while handling an envelope traced with `trace`, and the runtime refused
/// it with `error`.
#[cold]
#[inline(never)]
pub(crate) fn refused(
    actor: &str,
    from: Address,
    to: Whom<'_>,
    kind: &str,
    size: usize,
    trace: Option<TraceContext>,
    error: SendError,
) {
    if !wanted() {
        return;
    }
    let mut line = json!({
        "event": "send",
        "actor": actor,
        "from": from.to_string(),
        "kind": kind,
        "size": size,
        "trace_id": trace.map_or(Value::Null, |t| Value::String(format!("{:032x}", t.trace_id()))),
        "outcome": error.wit_name(),
    });
    match to {
        Whom::Actor(to) => line["to"] = Value::String(to.to_string()),
        Whom::Topic(topic) => line["topic"] = Value::String(topic.to_string()),
        Whom::Answer(id) => line["request_id"] = Value::String(format!("{id:#x}")),
    }
    emit(&line);
}
