//! Containing panics of code the runtime calls but does not own: native actors'
//! handlers and `Drop`s, the log sink, and (as a last line) the shard loop itself.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The message of a panic's payload.
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// Runs `f`, catching a panic: its result, or the panic's message. A payload
/// whose own `Drop` panics is kept (leaked) rather than unwinding again.
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(settle)
}

/// A caught panic's message; its payload is dropped, or kept (leaked) if its own
/// `Drop` panics, rather than unwinding again.
pub(crate) fn settle(payload: Box<dyn Any + Send>) -> String {
    let message = message(&*payload);
    if let Err(worse) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(worse);
    }
    message
}

/// Runs `f`, catching a panic: the panic's message, if there was one.
pub(crate) fn quietly(f: impl FnOnce()) -> Option<String> {
    contain(f).err()
}
