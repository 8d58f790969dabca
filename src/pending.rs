//! The handle of a request made by the host.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::RequestError;
use crate::reply::HostWaiter;
use crate::shard;
use crate::shared::{HostItem, Shared};

/// A request made by the host with [`Runtime::request`](crate::Runtime::request).
///
/// It ends exactly once, as a component's request does: with the reply, or with a
/// [`RequestError`]. Wait for it with [`PendingReply::wait`] or poll it with
/// [`PendingReply::try_get`]. Dropping the handle before the request ends cancels
/// it (it then counts as cancelled, and frees its place under the host's cap on
/// open requests).
pub struct PendingReply {
    pub(crate) waiter: Arc<HostWaiter>,
    /// The shards, and the index of the one that owns the request, to cancel it on
    /// drop (nothing to do once the runtime is gone).
    pub(crate) shared: Weak<Shared>,
    pub(crate) shard: usize,
    /// The runtime's id (to refuse to block one of its own shards).
    pub(crate) runtime: u64,
    /// When the request times out for the host: the call's time plus its
    /// timeout (`None`: beyond the clock). The target's shard ends it then
    /// too, but only between two turns, which a busy shard may hold off: a
    /// wait or a look past this ends it here.
    pub(crate) deadline: Option<Instant>,
}

impl std::fmt::Debug for PendingReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // What the outcome is now: a look that changes nothing (`try_get`
        // would end a request past its deadline).
        f.debug_struct("PendingReply")
            .field("ended", &self.waiter.outcome().is_some())
            .finish()
    }
}

impl PendingReply {
    /// The outcome, if the request has ended (past its timeout, it has:
    /// with [`RequestError::Timeout`] if nothing came first).
    pub fn try_get(&self) -> Option<Result<Vec<u8>, RequestError>> {
        self.waiter.outcome().or_else(|| self.timed_out())
    }

    /// Waits up to `timeout` for the request to end; `None` if it has not by then
    /// (the request itself still ends at its own timeout, which no wait
    /// outlasts: past it, the wait returns [`RequestError::Timeout`] if
    /// nothing came first, even while the target's shard is busy). A timeout
    /// too large to add to the clock waits without limit.
    ///
    /// Called from one of the runtime's own actors (on a shard's thread), where
    /// waiting could stop the very shard that must answer, it does not wait: it
    /// returns what [`PendingReply::try_get`] returns.
    pub fn wait(&self, timeout: Duration) -> Option<Result<Vec<u8>, RequestError>> {
        if shard::on_shard_of(self.runtime) {
            return self.try_get();
        }
        let until = Instant::now().checked_add(timeout);
        let until = match (until, self.deadline) {
            (Some(u), Some(d)) => Some(u.min(d)),
            (u, d) => u.or(d),
        };
        self.waiter.wait(until).or_else(|| self.timed_out())
    }

    /// Past the request's deadline with no outcome: it ends here with
    /// `timeout`, and its shard is told (it closes the request, counted as
    /// timed out). Otherwise `None`.
    fn timed_out(&self) -> Option<Result<Vec<u8>, RequestError>> {
        if self.deadline.is_none_or(|d| Instant::now() < d) {
            return None;
        }
        self.end_here(RequestError::Timeout);
        self.waiter.outcome()
    }

    /// Cancels the request (as dropping the handle does), and says whether it
    /// was still open: if it had ended, nothing changes.
    pub fn cancel(self) -> bool {
        self.end_here(RequestError::Cancelled)
    }

    /// Ends the request with `error` for the host now (its place under the
    /// cap is free at once) and tells its shard, which closes the request
    /// when it takes the word, or finds it ended; whether it was still open.
    fn end_here(&self, error: RequestError) -> bool {
        if !self.waiter.fulfil(Err(error)) {
            return false;
        }
        if let Some(shared) = self.shared.upgrade() {
            shared.shards[self.shard].host_send(HostItem::Cancel(self.waiter.clone()));
        }
        true
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        // Past its deadline it timed out, whether or not anyone looked.
        if self.timed_out().is_none() {
            self.end_here(RequestError::Cancelled);
        }
    }
}
