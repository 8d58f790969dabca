//! Structured message logging, for audits: for each actor whose name matches
//! a pattern of [`RuntimeBuilder::log_messages`](crate::RuntimeBuilder::log_messages),
//! one JSON line per message it receives (when handled) and per message it
//! sends (when admitted, or refused), through the `log` crate at `INFO`,
//! target [`MESSAGE_LOG_TARGET`].
//!
//! Only such actors pay anything: the others one branch per handled message.

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

fn emit(line: &Value) {
    log::info!(target: MESSAGE_LOG_TARGET, "{line}");
}

/// The actor `actor` handled `env` on `shard`: `failure` if it failed on it.
#[cold]
#[inline(never)]
pub(crate) fn received(actor: &str, env: &Envelope, shard: usize, failure: Option<&Failure>) {
    let Some(kind) = kind(env.kind) else { return };
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

/// The actor `actor` (`from`) tried to send `kind` of `size` bytes to `to`
/// (or to the topic `topic`) while handling an envelope traced with `trace`,
/// and the runtime refused it with `error`.
#[cold]
#[inline(never)]
pub(crate) fn refused(
    actor: &str,
    from: Address,
    to: Result<Address, &str>,
    kind: &str,
    size: usize,
    trace: Option<TraceContext>,
    error: SendError,
) {
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
        Ok(to) => line["to"] = Value::String(to.to_string()),
        Err(topic) => line["topic"] = Value::String(topic.to_string()),
    }
    emit(&line);
}
