//! One actor's side of requests: how many it has open as a requester, the request
//! it is handling now, and those it deferred and may still answer.
//!
//! Owned by the actor's outbox and touched only on its shard: by the host functions
//! (`request`, `respond`, `cancel`), by the actor's invocation (a request begins
//! and ends being handled) and by the shard (a response arrives, the actor goes).

/// A map keyed by request id. Ids are the runtime's (shard, table slot and
/// generation), not a guest's or a remote peer's choice, so the hasher's
/// keys need not differ per map: `AHasher::default` draws one set per
/// process, and no map carries 32 bytes of random state of its own (a
/// million idle actors hold several maps each).
pub(crate) type IdMap<V> = std::collections::HashMap<u64, V, IdHasher>;
/// A set of request ids (see [`IdMap`]).
pub(crate) type IdSet = std::collections::HashSet<u64, IdHasher>;
/// The hasher of [`IdMap`] and [`IdSet`].
pub(crate) type IdHasher = std::hash::BuildHasherDefault<ahash::AHasher>;

use crate::address::Address;
use crate::trace::TraceContext;

pub(crate) struct ActorRequests {
    /// Requests this actor made that have not ended.
    open: u32,
    /// The request being handled now, while it is unanswered: (id, requester).
    /// Kept apart from `deferred` so a request answered during its own invocation
    /// (the usual case) never touches the map.
    current: Option<(u64, Address)>,
    /// The request whose `handle-request` is running, answered or not, and its
    /// carried deadline: the requests made meanwhile are made on its behalf.
    on_behalf: Option<(u64, u32)>,
    /// Requests this actor deferred and may still answer: id → (requester, when
    /// the requester stops waiting, in the runtime's clock).
    deferred: IdMap<(Address, u64)>,
    /// Deferred requests whose requesters stopped waiting (a cancel or a
    /// timeout reached this shard): no longer counted against the cap, but an
    /// answer to one is still taken (and discarded by the requester's shard,
    /// counted late). At most the cap; at it, those past their expiry go,
    /// and all if over half the cap are left.
    let_go: IdMap<(Address, u64)>,
    /// The trace contexts of the deferred requests that are traced (empty, and
    /// never touched, while none is): a later answer carries their trace.
    traces: IdMap<TraceContext>,
    /// Deferred requests past which the next deferral first drops the expired.
    purge_at: usize,
    /// No deferred request expires before this (it may be earlier than the
    /// earliest still kept, after answers): until then a purge would find
    /// nothing, so none is tried.
    earliest: u64,
}

/// The fewest deferred requests an actor keeps before it looks for expired ones.
const PURGE_AT: usize = 64;

impl Default for ActorRequests {
    fn default() -> ActorRequests {
        ActorRequests {
            open: 0,
            current: None,
            on_behalf: None,
            deferred: IdMap::default(),
            let_go: IdMap::default(),
            traces: IdMap::default(),
            purge_at: PURGE_AT,
            earliest: u64::MAX,
        }
    }
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

    /// Request `id` from `from`, carrying `deadline`, is about to be handled.
    #[inline]
    pub(crate) fn begin(&mut self, id: u64, from: Address, deadline: u32) {
        self.current = Some((id, from));
        self.on_behalf = Some((id, deadline));
    }

    /// The handler of the current request returned: the request, if it is still
    /// unanswered (it may have been answered with `respond` during the call).
    #[inline]
    pub(crate) fn finish(&mut self) -> Option<(u64, Address)> {
        self.on_behalf = None;
        self.current.take()
    }

    /// The request being handled (answered or not) and its carried deadline.
    #[inline]
    pub(crate) fn on_behalf(&self) -> Option<(u64, u32)> {
        self.on_behalf
    }

    /// The handler deferred request `id`, whose requester waits until `expires`:
    /// it may be answered later. Requests past their expiry are forgotten first
    /// once the actor holds many (an answer to one of them would be discarded
    /// anyway); the map is scanned for them only when some may be found, so an
    /// actor at `cap` does not scan it on every deferral. An actor holds at most
    /// `cap`. Returns whether the request was kept (if not, it must end for its
    /// requester).
    ///
    /// `expires` is the responder's view: its clock when the request arrived
    /// plus the timeout (rounded up to a millisecond). The requester's deadline
    /// counts from its own shard's clock reading after the send, which may come
    /// up to a pass later; in that window an actor holding many deferred
    /// requests may forget one its requester still waits for, and a `respond`
    /// to it says `unknown-target` while the requester ends with `timeout` a
    /// moment later, as if the answer had come just after the deadline.
    pub(crate) fn defer(
        &mut self,
        id: u64,
        from: Address,
        expires: u64,
        now: u64,
        cap: usize,
        trace: Option<TraceContext>,
    ) -> bool {
        if !self.has_room(now, cap) {
            return false;
        }
        self.deferred.insert(id, (from, expires));
        if let Some(trace) = trace {
            self.traces.insert(id, trace);
        }
        self.earliest = self.earliest.min(expires);
        true
    }

    /// Whether one more request can be deferred now (at most `cap`), after
    /// forgetting those past their expiry if the actor holds many.
    pub(crate) fn has_room(&mut self, now: u64, cap: usize) -> bool {
        if self.deferred.len() >= self.purge_at.min(cap) && now >= self.earliest {
            let mut earliest = u64::MAX;
            self.deferred.retain(|_, (_, e)| {
                let keep = *e > now;
                if keep {
                    earliest = earliest.min(*e);
                }
                keep
            });
            self.earliest = earliest;
            self.purge_at = (2 * self.deferred.len()).max(PURGE_AT);
            if !self.traces.is_empty() {
                let deferred = &self.deferred;
                self.traces.retain(|id, _| deferred.contains_key(id));
            }
        }
        self.deferred.len() < cap
    }

    /// Requests deferred and not answered yet.
    pub(crate) fn deferred(&self) -> usize {
        self.deferred.len()
    }

    /// `respond(id)`: the requester to answer, if `id` may be answered now (it is
    /// the current request or a deferred one); it cannot be answered again.
    /// With it, for a deferred request, `Some` of its trace context (the
    /// current request's is the one in force).
    #[inline]
    pub(crate) fn answer(&mut self, id: u64) -> Option<(Address, Option<Option<TraceContext>>)> {
        match self.current {
            Some((current, requester)) if current == id => {
                self.current = None;
                Some((requester, None))
            }
            _ => {
                let (requester, _) = match self.deferred.remove(&id) {
                    Some(held) => held,
                    None => return Some((self.let_go.remove(&id)?.0, Some(None))),
                };
                let trace = if self.traces.is_empty() {
                    None
                } else {
                    self.traces.remove(&id)
                };
                Some((requester, Some(trace)))
            }
        }
    }

    /// Request `id` ended for its requester: if it was deferred, it no longer
    /// counts against the cap (`cap`, as for [`defer`](Self::defer)); an answer
    /// to it is still taken, unless the actor already keeps `cap` such
    /// requests, none past its expiry at `now`. Returns whether it was
    /// deferred.
    pub(crate) fn let_go(&mut self, id: u64, now: u64, cap: usize) -> bool {
        let Some(held) = self.deferred.remove(&id) else {
            return false;
        };
        if !self.traces.is_empty() {
            self.traces.remove(&id);
        }
        if self.let_go.len() >= cap {
            self.let_go.retain(|_, (_, expires)| *expires > now);
            // Over half still kept: all go, so that the next scan is at
            // least half the cap away (a scan that freed one place each time
            // would cost the whole map per let-go).
            if self.let_go.len() > cap / 2 {
                self.let_go.clear();
            }
        }
        self.let_go.insert(id, held);
        true
    }

    /// The actor is going away: every request it still held, to be ended for its
    /// requester.
    pub(crate) fn take_deferred(&mut self) -> impl Iterator<Item = (u64, Address)> {
        self.traces = IdMap::default();
        self.let_go = IdMap::default();
        std::mem::take(&mut self.deferred)
            .into_iter()
            .map(|(id, (requester, _))| (id, requester))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// At the cap, an expired request makes room; one not yet expired does not.
    #[test]
    fn a_full_map_makes_room_only_from_expired_requests() {
        let mut r = ActorRequests::default();
        let from = Address::from_bits(7);
        assert!(r.defer(1, from, 10 * MS, 0, 1, None));
        assert!(!r.defer(2, from, 20 * MS, 9 * MS, 1, None));
        assert_eq!(r.answer(1), Some((from, Some(None))));
        assert!(r.defer(3, from, 10 * MS, 0, 1, None));
        assert!(r.defer(4, from, 2_000 * MS, 10 * MS, 1, None));
        assert_eq!(r.answer(3), None);
        assert_eq!(r.answer(4), Some((from, Some(None))));
    }

    /// A traced deferred request's context comes back with its answer, and
    /// goes when it is forgotten as expired.
    #[test]
    fn a_deferred_request_keeps_its_trace_until_answered_or_forgotten() {
        let mut r = ActorRequests::default();
        let from = Address::from_bits(7);
        let t = crate::TraceContext::new(5, 6);
        assert!(r.defer(1, from, 10 * MS, 0, 2, t));
        assert!(r.defer(2, from, 10 * MS, 0, 2, None));
        assert_eq!(r.answer(2), Some((from, Some(None))));
        assert_eq!(r.answer(1), Some((from, Some(t))));
        assert!(r.defer(3, from, 10 * MS, 0, 1, t));
        // Expired when the next comes: forgotten, its context with it.
        assert!(r.defer(4, from, 50 * MS, 20 * MS, 1, None));
        assert!(r.traces.is_empty());
        assert_eq!(r.answer(3), None);
    }

    /// At the cap with nothing expired, a deferral does not scan the map: the
    /// earliest expiry is known, and no scan is tried before it.
    #[test]
    fn a_full_map_is_not_rescanned_until_something_can_expire() {
        let mut r = ActorRequests::default();
        let from = Address::from_bits(7);
        for id in 0..100 {
            assert!(r.defer(id, from, (5_000 + id) * MS, 0, 100, None));
        }
        assert_eq!(r.earliest, 5_000 * MS);
        assert!(!r.defer(100, from, 9_000 * MS, MS, 100, None));
        // Past the earliest: that one is forgotten, the new one kept.
        assert!(r.defer(101, from, 9_000 * MS, 5_000 * MS, 100, None));
        assert_eq!(r.answer(0), None);
        assert_eq!(r.answer(1), Some((from, Some(None))));
        assert_eq!(r.earliest, 5_001 * MS);
    }

    /// A request let go no longer counts against the cap but can still be
    /// answered once; past the cap the expired ones go first, then all.
    #[test]
    fn a_request_let_go_makes_room_and_can_still_be_answered() {
        let mut r = ActorRequests::default();
        let from = Address::from_bits(7);
        assert!(r.defer(1, from, 10 * MS, 0, 1, None));
        assert!(!r.has_room(0, 1));
        assert!(r.let_go(1, 0, 1));
        assert!(!r.let_go(1, 0, 1), "let go once");
        assert_eq!(r.deferred(), 0);
        assert!(r.defer(2, from, 20 * MS, 0, 1, None));
        assert_eq!(r.answer(1), Some((from, Some(None))));
        assert_eq!(r.answer(1), None, "answered once");
        // At the cap of requests let go: the expired one goes, then all.
        assert!(r.let_go(2, 0, 1));
        assert!(r.defer(3, from, 30 * MS, 0, 1, None));
        assert!(r.let_go(3, 25 * MS, 1));
        assert_eq!(r.answer(2), None, "expired, forgotten");
        assert!(r.defer(4, from, 40 * MS, 0, 1, None));
        assert!(r.let_go(4, 25 * MS, 1));
        assert_eq!(r.answer(3), None, "over the cap, forgotten");
        assert_eq!(r.answer(4), Some((from, Some(None))));
        // An actor that goes ends only what it still held for waiting requesters.
        assert!(r.defer(5, from, 50 * MS, 0, 2, None));
        assert!(r.defer(6, from, 50 * MS, 0, 2, None));
        assert!(r.let_go(5, 0, 2));
        assert_eq!(r.take_deferred().collect::<Vec<_>>(), vec![(6, from)]);
        assert_eq!(r.answer(5), None);
    }
}
