//! Where a shard puts the outcome of a request the host made.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::error::RequestError;

/// The outcome of one host request, shared by the host's [`crate::PendingReply`]
/// and the shard that opened the request.
pub(crate) struct HostWaiter {
    outcome: Mutex<Option<Result<Vec<u8>, RequestError>>>,
    ready: Condvar,
    /// The request's id, once its shard has opened it (0 before).
    id: AtomicU64,
    /// The host's open requests (the cap counts them); one less when this ends.
    open: Arc<AtomicU32>,
}

impl HostWaiter {
    pub(crate) fn new(open: Arc<AtomicU32>) -> Arc<HostWaiter> {
        Arc::new(HostWaiter {
            outcome: Mutex::new(None),
            ready: Condvar::new(),
            id: AtomicU64::new(0),
            open,
        })
    }

    /// The shard opened the request as `id`.
    pub(crate) fn opened(&self, id: u64) {
        self.id.store(id, Ordering::Release);
    }

    /// The id the shard gave the request (0 if it never opened it).
    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Acquire)
    }

    /// Records the outcome; only the first one counts.
    /// Ends the request with `outcome`, unless it has ended; whether it did now.
    pub(crate) fn fulfil(&self, outcome: Result<Vec<u8>, RequestError>) -> bool {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(outcome);
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.ready.notify_all();
        true
    }

    /// The outcome, if the request has ended.
    pub(crate) fn outcome(&self) -> Option<Result<Vec<u8>, RequestError>> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the request ends or `deadline` (`None`: no deadline).
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<Result<Vec<u8>, RequestError>> {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = slot.as_ref() {
                return Some(outcome.clone());
            }
            slot = match deadline {
                None => self.ready.wait(slot).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    self.ready
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}
