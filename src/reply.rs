//! Requests made by the embedding host, and the handle it waits on.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::RequestError;

/// Where a shard puts the outcome of a host request.
pub(crate) struct HostWaiter {
    outcome: Mutex<Option<Result<Vec<u8>, RequestError>>>,
    ready: Condvar,
}

impl HostWaiter {
    pub(crate) fn new() -> Arc<HostWaiter> {
        Arc::new(HostWaiter {
            outcome: Mutex::new(None),
            ready: Condvar::new(),
        })
    }

    /// Records the outcome; only the first one counts.
    pub(crate) fn fulfil(&self, outcome: Result<Vec<u8>, RequestError>) {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(outcome);
            self.ready.notify_all();
        }
    }
}

/// A request made by the host with [`Runtime::request`](crate::Runtime::request).
///
/// It ends exactly once, as a component's request does: with the reply, or with a
/// [`RequestError`]. Wait for it with [`PendingReply::wait`] or poll it with
/// [`PendingReply::try_get`].
pub struct PendingReply {
    pub(crate) waiter: Arc<HostWaiter>,
}

impl std::fmt::Debug for PendingReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingReply")
            .field("ended", &self.try_get().is_some())
            .finish()
    }
}

impl PendingReply {
    /// The outcome, if the request has ended.
    pub fn try_get(&self) -> Option<Result<Vec<u8>, RequestError>> {
        self.waiter
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits up to `timeout` for the request to end; `None` if it has not by then
    /// (the request itself still ends at its own timeout).
    pub fn wait(&self, timeout: Duration) -> Option<Result<Vec<u8>, RequestError>> {
        let deadline = Instant::now() + timeout;
        let mut slot = self
            .waiter
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = slot.as_ref() {
                return Some(outcome.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            slot = self
                .waiter
                .ready
                .wait_timeout(slot, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
