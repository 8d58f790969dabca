//! One actor's side of requests: how many it has open as a requester, the request
//! it is handling now, and those it deferred and may still answer.
//!
//! Owned by the actor's outbox and touched only on its shard: by the host functions
//! (`request`, `respond`, `cancel`), by the actor's invocation (a request begins
//! and ends being handled) and by the shard (a response arrives, the actor goes).

use ahash::AHashMap;

use crate::address::Address;

#[derive(Default)]
pub(crate) struct ActorRequests {
    /// Requests this actor made that have not ended.
    open: u32,
    /// The request being handled now, while it is unanswered: (id, requester).
    /// Kept apart from `deferred` so a request answered during its own invocation
    /// (the usual case) never touches the map.
    current: Option<(u64, Address)>,
    /// Requests this actor deferred and may still answer: id → requester.
    deferred: AHashMap<u64, Address>,
}

impl ActorRequests {
    /// Requests this actor made that are still open.
    pub(crate) fn open(&self) -> u32 {
        self.open
    }

    /// It made a request.
    #[inline]
    pub(crate) fn opened(&mut self) {
        self.open += 1;
    }

    /// One of its requests ended (a response or failure reached it, or it
    /// cancelled one).
    #[inline]
    pub(crate) fn ended(&mut self) {
        debug_assert!(self.open > 0, "a request ended that was never open");
        self.open -= 1;
    }

    /// Request `id` from `from` is about to be handled.
    #[inline]
    pub(crate) fn begin(&mut self, id: u64, from: Address) {
        self.current = Some((id, from));
    }

    /// The handler of the current request returned: the request, if it is still
    /// unanswered (it may have been answered with `respond` during the call).
    #[inline]
    pub(crate) fn finish(&mut self) -> Option<(u64, Address)> {
        self.current.take()
    }

    /// The handler deferred request `id`: it may be answered later.
    pub(crate) fn defer(&mut self, id: u64, from: Address) {
        self.deferred.insert(id, from);
    }

    /// `respond(id)`: the requester to answer, if `id` may be answered now (it is
    /// the current request or a deferred one); it cannot be answered again.
    #[inline]
    pub(crate) fn answer(&mut self, id: u64) -> Option<Address> {
        match self.current {
            Some((current, requester)) if current == id => {
                self.current = None;
                Some(requester)
            }
            _ => self.deferred.remove(&id),
        }
    }

    /// The actor is going away: every request it still held, to be ended for its
    /// requester.
    pub(crate) fn take_deferred(&mut self) -> AHashMap<u64, Address> {
        std::mem::take(&mut self.deferred)
    }
}
