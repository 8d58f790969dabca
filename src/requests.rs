//! The per-shard table of open requests and their timeouts.
//!
//! A request id packs the requester's shard (8 bits), a slot in this table (24 bits)
//! and the slot's generation (32 bits), so a reply is routed to the right shard in
//! O(1) and a reply for a request that already ended (timed out, cancelled,
//! answered) is recognised there, even if the slot now holds a newer request. The
//! table never holds more than 2^24 entries (the slot field's range): beyond that,
//! `open` refuses with `too-many-requests`.
//!
//! Slots are reused first-in, first-out, and only once at least `MIN_FREE` of them
//! are free (the table grows until then), so between two uses of a slot at least
//! `MIN_FREE` other requests are made. An id therefore repeats only after 2^32 uses
//! of one slot, that is after at least 2^32 × 4096 ≈ 1.8 × 10^13 requests from one
//! shard (about two months at three million requests a second).
//!
//! A request is opened with its timeout, not a deadline: it waits in a list of
//! fresh requests until the shard next reads the clock (`arm`, once per pass of
//! its loop and before it parks), which sets its deadline to that reading plus
//! the timeout. The reading comes after the request was made, so no request ever
//! times out early, and making a request reads no clock. A request answered before
//! then (the usual case on one shard) never reaches the heap.
//!
//! Timeouts live in a binary heap of `(deadline, id)` with generation-checked lazy
//! deletion: cancelling or answering a request is O(1) (the heap entry goes stale
//! and is skipped when it reaches the top); inserting is O(log n). The heap is
//! rebuilt from the open entries when stale ones outnumber them, so memory stays
//! proportional to the open requests.
//!
//! When an actor goes, the requests, monitors and timers it has open end with
//! it (`abandon`, `drop_timers`): each actor's open entries that outlived the
//! pass they were made in are linked in a list of their own
//! (`Requests::owned`, by the actor's slot; linked as `arm` gives them their
//! deadlines, a monitor at once), and those made since are in `fresh`, so
//! ending them visits only those, however large the table (a scan of the
//! whole table for every actor that went made a parent stopping thousands of
//! children, each with thousands of timers, a quadratic stall). A request
//! answered within its pass (the usual case on one shard) is never linked and
//! pays nothing for this; shutdown ends every actor's requests in one scan
//! (`abandon_all`).
//!
//! The table is owned by its shard and lent to the actor being invoked (moved into
//! its outbox for the length of the call), so host functions reach it without a
//! lock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ahash::AHashMap;
use smallvec::SmallVec;

use crate::address::Address;
use crate::directory::Directory;
use crate::envelope::Payload;
use crate::error::{RequestError, SendError};
use crate::reply::HostWaiter;
use crate::stats::RequestStats;

/// Who is waiting for a request to end.
pub(crate) enum Waiter {
    /// An actor on this shard; the response goes to its mailbox.
    Actor(Address),
    /// The embedding host, through a [`crate::PendingReply`].
    Host(Arc<HostWaiter>),
}

/// The most entries a table holds: the range of an id's slot field.
const MAX_ENTRIES: usize = 1 << 24;
/// Free slots the table keeps before it reuses one (see the module docs).
const MIN_FREE: usize = 4096;
/// What an open entry is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// A request: it ends with a reply, a failure or its timeout.
    Request,
    /// A monitor: no deadline; it ends when its target is gone for good.
    Monitor,
    /// A timer: at its deadline its payload (kept in `payloads` at the same
    /// slot) goes to the waiting actor, from the entry's "target" (the actor
    /// itself, or the host).
    Timer,
}

struct Entry {
    generation: u32,
    open: Option<(Waiter, Address)>,
    kind: Use,
    /// The request it was made on behalf of (0: none), whose end by timeout
    /// or cancel ends it too, and its place in that request's list.
    parent: u64,
    link: u32,
    /// Whether it is in its actor's list (`Requests::owned`), and the entries
    /// before and after it there, or [`NIL`].
    linked: bool,
    before: u32,
    after: u32,
}

/// No entry (the end of an actor's list).
const NIL: u32 = u32::MAX;

impl Entry {
    /// The slot of the actor this open entry waits for (whose list it goes
    /// in); none for the host's.
    #[inline]
    fn owner(&self) -> Option<u32> {
        match &self.open {
            Some((Waiter::Actor(a), _)) => Some(a.slot()),
            _ => None,
        }
    }

    /// [`Entry::owner`], if the entry is not in that actor's list yet.
    #[inline]
    fn unlinked_owner(&self) -> Option<u32> {
        self.owner().filter(|_| !self.linked)
    }
}

/// What reached its deadline (see [`Requests::expire`]).
pub(crate) enum Expired {
    /// Request `id` to the target timed out; `Waiter` waits for its end.
    Request(u64, Waiter, Address),
    /// Timer `id` of actor `to` is due: deliver `payload` from `from`.
    Timer {
        #[cfg_attr(not(any(test, feature = "bench")), allow(dead_code))]
        id: u64,
        to: Address,
        from: Address,
        payload: Payload,
    },
}

pub(crate) struct Requests {
    shard: usize,
    entries: Vec<Entry>,
    free: VecDeque<u32>,
    /// Most entries this table may hold.
    limit: usize,
    timers: BinaryHeap<Reverse<(u64, u64)>>,
    /// Requests and timers opened since the last `arm`: (timeout in ns, id).
    fresh: Vec<(u64, u64)>,
    /// How many of `fresh` (from the front) were linked into their actors'
    /// lists already (by a look at an actor's entries: see `owned_by`).
    fresh_linked: usize,
    /// Timers' payloads, by entry slot (grown only once a timer is set).
    payloads: Vec<Payload>,
    /// The open requests made on behalf of a request (by its id), which end
    /// if it ends by timeout or cancel.
    derived: AHashMap<u64, SmallVec<[u64; 2]>>,
    /// The first open entry of each actor of this shard, by the actor's
    /// slot ([`NIL`]: none), the rest linked through `Entry::after`.
    owned: Vec<u32>,
    /// Outcomes so far, and the requests open now (`counts.open`).
    pub(crate) counts: RequestStats,
    /// The shard's pass now (set as each pass begins), and the pass and
    /// epoch tick when the clock was last read, with the reading: the clock is
    /// read at most once a pass and tick, and only when something needs it.
    pass: u64,
    clock: (u64, u64, u64),
}

fn pack(shard: usize, slot: u32, generation: u32) -> u64 {
    ((shard as u64) << 56) | ((slot as u64) << 32) | generation as u64
}

/// The shard that owns request `id`.
pub(crate) fn shard_of(id: u64) -> usize {
    (id >> 56) as usize
}

fn unpack(id: u64) -> (u32, u32) {
    (((id >> 32) as u32) & ((1 << 24) - 1), id as u32)
}

impl Requests {
    pub(crate) fn new(shard: usize) -> Requests {
        Requests::with_limit(shard, MAX_ENTRIES)
    }

    fn with_limit(shard: usize, limit: usize) -> Requests {
        Requests {
            shard,
            entries: Vec::new(),
            free: VecDeque::new(),
            limit,
            timers: BinaryHeap::new(),
            fresh: Vec::new(),
            fresh_linked: 0,
            payloads: Vec::new(),
            derived: AHashMap::new(),
            owned: Vec::new(),
            counts: RequestStats::default(),
            pass: 0,
            clock: (u64::MAX, 0, 0),
        }
    }

    /// A pass of the shard begins.
    #[inline]
    pub(crate) fn new_pass(&mut self, pass: u64) {
        self.pass = pass;
    }

    /// `d`'s clock as read in this pass and its epoch tick, read now if it
    /// has not been (a reading older than a tick is stale: a long handler).
    #[inline]
    pub(crate) fn now(&mut self, d: &Directory) -> u64 {
        let tick = d.ticks.load(Ordering::Relaxed);
        if self.clock.0 != self.pass || self.clock.1 != tick {
            self.clock = (self.pass, tick, d.now_ns());
        }
        self.clock.2
    }

    /// `d`'s clock was just read (`now`): the rest of this pass and tick go by it.
    #[inline]
    pub(crate) fn set_now(&mut self, d: &Directory, now: u64) {
        self.clock = (self.pass, d.ticks.load(Ordering::Relaxed), now);
    }

    /// Requests open now.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn open_count(&self) -> usize {
        self.counts.open as usize
    }

    /// Whether `open` would succeed.
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        self.entries.len() < self.limit || !self.free.is_empty()
    }

    /// Opens a request by `waiter` to `target` that times out `timeout_ns` after
    /// the next `arm`.
    ///
    /// # Errors
    ///
    /// `too-many-requests` if the table holds as many requests as an id can name.
    pub(crate) fn open(
        &mut self,
        waiter: Waiter,
        target: Address,
        timeout_ns: u64,
    ) -> Result<u64, SendError> {
        self.open_for(waiter, target, timeout_ns, 0)
    }

    /// [`Requests::open`], on behalf of request `parent` (0: none): it ends
    /// with `cancelled` if `parent` ends by timeout or cancel ([`Requests::revoke`]).
    #[inline]
    pub(crate) fn open_for(
        &mut self,
        waiter: Waiter,
        target: Address,
        timeout_ns: u64,
        parent: u64,
    ) -> Result<u64, SendError> {
        let id = self.take(waiter, target, Use::Request)?;
        self.fresh.push((timeout_ns, id));
        self.counts.open += 1;
        self.counts.made += 1;
        if parent != 0 {
            self.link(id, parent);
        }
        Ok(id)
    }

    /// Records request `id` as made on behalf of `parent`.
    #[cold]
    fn link(&mut self, id: u64, parent: u64) {
        let (slot, _) = unpack(id);
        let children = self.derived.entry(parent).or_default();
        let e = &mut self.entries[slot as usize];
        e.parent = parent;
        e.link = children.len() as u32;
        children.push(id);
    }

    /// Request `id`, linked to `parent` at `link`, ended: the link goes (in
    /// O(1): the last of the list takes its place).
    #[cold]
    fn unlink(&mut self, id: u64, parent: u64, link: u32) {
        let Some(children) = self.derived.get_mut(&parent) else {
            return;
        };
        let at = link as usize;
        if children.get(at) != Some(&id) {
            return;
        }
        children.swap_remove(at);
        if let Some(&moved) = children.get(at) {
            let (slot, _) = unpack(moved);
            self.entries[slot as usize].link = link;
        } else if children.is_empty() {
            self.derived.remove(&parent);
        }
    }

    /// Request `parent` ended by timeout or cancel: the requests made on its
    /// behalf that are still open end (counted as `revoked`); returns them,
    /// with who waits for each and its target.
    pub(crate) fn revoke(&mut self, parent: u64) -> Vec<(u64, Waiter, Address)> {
        let Some(children) = self.derived.remove(&parent) else {
            return Vec::new();
        };
        let mut ended = Vec::with_capacity(children.len());
        for id in children {
            // Unlinked already (the list is gone): close it plainly.
            let (slot, _) = unpack(id);
            if let Some(e) = self.entries.get_mut(slot as usize) {
                e.parent = 0;
            }
            if let Some((waiter, target)) = self.close(id) {
                self.counts.revoked += 1;
                ended.push((id, waiter, target));
            }
        }
        ended
    }

    /// Takes a free entry for `kind`; returns its id.
    #[inline]
    fn take(&mut self, waiter: Waiter, target: Address, kind: Use) -> Result<u64, SendError> {
        let slot = if self.free.len() >= MIN_FREE || self.entries.len() >= self.limit {
            self.free.pop_front().ok_or(SendError::TooManyRequests)?
        } else {
            self.entries.push(Entry {
                generation: 0,
                open: None,
                kind: Use::Request,
                parent: 0,
                link: 0,
                linked: false,
                before: NIL,
                after: NIL,
            });
            self.entries.len() as u32 - 1
        };
        let e = &mut self.entries[slot as usize];
        debug_assert!(!e.linked, "a free entry is in no list");
        e.generation = e.generation.wrapping_add(1).max(1);
        e.open = Some((waiter, target));
        e.kind = kind;
        Ok(pack(self.shard, slot, e.generation))
    }

    /// Puts entry `at` (open, not linked) first in the list of the actor in
    /// slot `owner`.
    #[inline]
    fn own(&mut self, at: u32, owner: u32) {
        let owner = owner as usize;
        if self.owned.len() <= owner {
            self.grow_owned(owner);
        }
        let head = &mut self.owned[owner];
        let first = std::mem::replace(head, at);
        let e = &mut self.entries[at as usize];
        e.linked = true;
        e.before = NIL;
        e.after = first;
        if first != NIL {
            self.entries[first as usize].before = at;
        }
    }

    #[cold]
    #[inline(never)]
    fn grow_owned(&mut self, owner: usize) {
        self.owned.resize(owner + 1, NIL);
    }

    /// Takes entry `at` out of the list of the actor in slot `owner`.
    #[inline]
    fn disown(&mut self, at: u32, owner: u32) {
        let e = &mut self.entries[at as usize];
        e.linked = false;
        let (before, after) = (e.before, e.after);
        if before == NIL {
            self.owned[owner as usize] = after;
        } else {
            self.entries[before as usize].after = after;
        }
        if after != NIL {
            self.entries[after as usize].before = before;
        }
    }

    /// Links what was opened since the last `arm` (and since the last call)
    /// into its actor's list, if it is still open: so that a look at one
    /// actor's entries finds them, at a cost of each once.
    fn link_fresh(&mut self) {
        while self.fresh_linked < self.fresh.len() {
            let (_, id) = self.fresh[self.fresh_linked];
            self.fresh_linked += 1;
            self.link_open(id);
        }
    }

    /// Links entry `id` into its actor's list if it is open and not linked.
    #[inline]
    fn link_open(&mut self, id: u64) {
        if let Some(owner) = self.entry(id).and_then(Entry::unlinked_owner) {
            self.own(unpack(id).0, owner);
        }
    }

    /// The ids of the open entries of the actor `me` (of this shard) that
    /// `pick` picks by kind: a walk of its list, not of the table.
    fn owned_by(&mut self, me: Address, pick: impl Fn(Use) -> bool) -> Vec<u64> {
        self.link_fresh();
        let mut ids = Vec::new();
        let mut at = self.owned.get(me.slot() as usize).copied().unwrap_or(NIL);
        while at != NIL {
            let e = &self.entries[at as usize];
            if pick(e.kind) && matches!(e.open, Some((Waiter::Actor(a), _)) if a == me) {
                ids.push(pack(self.shard, at, e.generation));
            }
            at = e.after;
        }
        ids
    }

    /// Sets a timer: `payload` goes to the actor `to`, from `from` (itself, or
    /// the host), `delay_ns` after the next `arm`. The caller keeps the
    /// per-actor cap.
    ///
    /// # Errors
    ///
    /// As [`Requests::open`].
    pub(crate) fn open_timer(
        &mut self,
        to: Address,
        from: Address,
        delay_ns: u64,
        payload: Payload,
    ) -> Result<u64, SendError> {
        let id = self.take(Waiter::Actor(to), from, Use::Timer)?;
        let (slot, _) = unpack(id);
        if self.payloads.len() <= slot as usize {
            self.payloads.resize_with(slot as usize + 1, Payload::new);
        }
        self.payloads[slot as usize] = payload;
        self.fresh.push((delay_ns, id));
        self.counts.timers += 1;
        self.counts.scheduled += 1;
        Ok(id)
    }

    /// Whether `id` is a timer of the actor `me` that has not fired.
    pub(crate) fn is_timer_of(&self, id: u64, me: Address) -> bool {
        self.entry(id).is_some_and(|e| {
            e.kind == Use::Timer && matches!(e.open, Some((Waiter::Actor(a), _)) if a == me)
        })
    }

    /// The actor timer `id` is for, if it is pending.
    pub(crate) fn timer_target(&self, id: u64) -> Option<Address> {
        match self.entry(id) {
            Some(Entry {
                kind: Use::Timer,
                open: Some((Waiter::Actor(a), _)),
                ..
            }) => Some(*a),
            _ => None,
        }
    }

    /// Cancels timer `id` of the actor `me`; returns whether it was pending.
    pub(crate) fn cancel_timer(&mut self, id: u64, me: Address) -> bool {
        if !self.is_timer_of(id, me) {
            return false;
        }
        self.counts.unfired += 1;
        let closed = self.close_timer(id).is_some();
        self.cancelled_early();
        closed
    }

    /// Ends every timer the actor `me` has pending (it ended); returns how many.
    pub(crate) fn drop_timers(&mut self, me: Address) -> u64 {
        let mut ended = 0;
        for id in self.owned_by(me, |kind| kind == Use::Timer) {
            if self.close_timer(id).is_some() {
                ended += 1;
            }
        }
        self.counts.unfired += ended;
        ended
    }

    /// The timers the actor `me` has pending, oldest first.
    pub(crate) fn timers_of(&mut self, me: Address) -> Vec<u64> {
        let mut ids = self.owned_by(me, |kind| kind == Use::Timer);
        ids.reverse();
        ids
    }

    /// Opens a monitor of `target` by the actor `watcher`: an entry like a
    /// request's, with no deadline, that ends when the target's shard says it
    /// is gone (or the watcher cancels it, or goes).
    ///
    /// # Errors
    ///
    /// As [`Requests::open`].
    pub(crate) fn open_monitor(
        &mut self,
        watcher: Address,
        target: Address,
    ) -> Result<u64, SendError> {
        // Never armed: it has no deadline (so it is linked now).
        let id = self.take(Waiter::Actor(watcher), target, Use::Monitor)?;
        self.own(unpack(id).0, watcher.slot());
        self.counts.open += 1;
        self.counts.monitors += 1;
        Ok(id)
    }

    /// Requests open now with a deadline (monitors have none), and timers.
    pub(crate) fn timed_count(&self) -> usize {
        (self.counts.open - self.counts.monitors + self.counts.timers) as usize
    }

    fn entry(&self, id: u64) -> Option<&Entry> {
        let (slot, generation) = unpack(id);
        if shard_of(id) != self.shard {
            return None;
        }
        self.entries
            .get(slot as usize)
            .filter(|e| e.generation == generation && e.open.is_some())
    }

    /// Whether `id` is an open request or monitor made by the actor `me`.
    pub(crate) fn is_open_by(&self, id: u64, me: Address) -> bool {
        self.entry(id).is_some_and(|e| {
            e.kind != Use::Timer && matches!(e.open, Some((Waiter::Actor(a), _)) if a == me)
        })
    }

    /// Ends request `id` if it is open, returning who waits for it and its target.
    pub(crate) fn close(&mut self, id: u64) -> Option<(Waiter, Address)> {
        self.close_entry(id)
            .map(|(waiter, target, _)| (waiter, target))
    }

    /// [`Requests::close`], saying also whether it was a monitor. A timer's
    /// payload is dropped (its id is never a request's: a response naming it
    /// is late).
    pub(crate) fn close_entry(&mut self, id: u64) -> Option<(Waiter, Address, bool)> {
        let e = self.entry(id)?;
        if e.kind == Use::Timer {
            // A response never ends a timer.
            return None;
        }
        let monitor = e.kind == Use::Monitor;
        let (slot, _) = unpack(id);
        if e.linked
            && let Some(owner) = e.owner()
        {
            self.disown(slot, owner);
        }
        let e = &mut self.entries[slot as usize];
        let open = e.open.take();
        let parent = std::mem::take(&mut e.parent);
        if parent != 0 {
            let link = e.link;
            self.unlink(id, parent, link);
        }
        self.free.push_back(slot);
        self.counts.open -= 1;
        if monitor {
            self.counts.monitors -= 1;
        }
        self.closed();
        open.map(|(waiter, target)| (waiter, target, monitor))
    }

    /// Ends timer `id` if it is pending, dropping its payload; returns who it
    /// was for and from.
    fn close_timer(&mut self, id: u64) -> Option<(Waiter, Address, Payload)> {
        let e = self.entry(id)?;
        if e.kind != Use::Timer {
            return None;
        }
        let (slot, _) = unpack(id);
        if e.linked
            && let Some(owner) = e.owner()
        {
            self.disown(slot, owner);
        }
        let open = self.entries[slot as usize].open.take();
        let payload = std::mem::take(&mut self.payloads[slot as usize]);
        self.free.push_back(slot);
        self.counts.timers -= 1;
        self.closed();
        open.map(|(waiter, from)| (waiter, from, payload))
    }

    /// An entry closed: nothing to arm if none is open; the heap rebuilt once
    /// stale entries dominate it.
    #[inline]
    fn closed(&mut self) {
        if self.timed_count() == 0 {
            // Every fresh one has ended (monitors are never fresh: they have
            // no deadline): nothing to arm. Counting monitors here kept the
            // list growing by each request made and ended between two
            // readings of the clock while any monitor was open.
            self.fresh.clear();
            self.fresh_linked = 0;
        }
        // The heap entry is now stale; rebuild once stale ones dominate.
        if self.timers.len() > 1024 && self.timers.len() > 4 * self.timed_count() {
            self.compact();
        }
    }

    /// A request or timer was cancelled by its actor (the ways one made in
    /// an invocation ends in that same invocation): while others stay open,
    /// what was made and ended between two readings of the clock would stay
    /// in `fresh` until the next one, so a loop of `schedule` and
    /// `cancel-timer` (or `request` and `cancel`) in one call grew it for as
    /// long as the loop ran. Past twice what is open, only the open ones are
    /// kept (amortized). Here, not in `closed`: the answer path pays nothing.
    #[inline]
    pub(crate) fn cancelled_early(&mut self) {
        if self.fresh.len() > 64 && self.fresh.len() > 2 * self.timed_count() + 64 {
            self.prune_fresh();
        }
    }

    /// Drops from `fresh` what has ended.
    #[cold]
    #[inline(never)]
    fn prune_fresh(&mut self) {
        let mut fresh = std::mem::take(&mut self.fresh);
        fresh.retain(|&(_, id)| self.entry(id).is_some());
        if fresh.capacity() > 4 * fresh.len().max(64) {
            fresh.shrink_to(2 * fresh.len().max(64));
        }
        self.fresh = fresh;
        // Those linked already are skipped again at little cost.
        self.fresh_linked = 0;
    }

    /// Ends every request and monitor the actor `requester` (of this shard)
    /// has open: it is going away, and nobody is left to receive their ends.
    /// Returns the requests that ended (oldest first), with their targets.
    pub(crate) fn abandon(&mut self, requester: Address) -> Vec<(u64, Address)> {
        let mut ended = Vec::new();
        for id in self.open_by(requester) {
            if let Some((_, target, monitor)) = self.close_entry(id)
                && !monitor
            {
                self.counts.abandoned += 1;
                ended.push((id, target));
            }
        }
        ended
    }

    /// The monitors `requester` (of this shard) has open, and their targets,
    /// oldest first.
    pub(crate) fn monitors_of(&mut self, requester: Address) -> Vec<(u64, Address)> {
        let mut ids = self.owned_by(requester, |kind| kind == Use::Monitor);
        ids.reverse();
        ids.into_iter()
            .filter_map(|id| self.entry(id)?.open.as_ref().map(|(_, t)| (id, *t)))
            .collect()
    }

    /// The requests and monitors `requester` (of this shard) has open (not its
    /// timers), oldest first.
    pub(crate) fn open_by(&mut self, requester: Address) -> Vec<u64> {
        let mut ids = self.owned_by(requester, |kind| kind != Use::Timer);
        ids.reverse();
        ids
    }

    /// Ends the requests and monitors `ids` (those still open): their
    /// requester's instance is gone. The requests count as abandoned.
    pub(crate) fn abandon_ids(
        &mut self,
        ids: impl IntoIterator<Item = u64>,
    ) -> Vec<(u64, Address)> {
        let mut ended = Vec::new();
        for id in ids {
            if let Some((_, target, false)) = self.close_entry(id) {
                self.counts.abandoned += 1;
                ended.push((id, target));
            }
        }
        ended
    }

    /// Ends every request, monitor and timer any actor of this shard has
    /// open (shutdown: all of them are going), in one scan. The requests
    /// count as abandoned and the timers as unfired; returns how many
    /// requests ended.
    pub(crate) fn abandon_all(&mut self) -> u64 {
        let (mut requests, mut timers) = (0, 0);
        for slot in 0..self.entries.len() {
            let e = &self.entries[slot];
            if e.owner().is_none() {
                continue;
            }
            let id = pack(self.shard, slot as u32, e.generation);
            match e.kind {
                Use::Timer => {
                    self.close_timer(id);
                    timers += 1;
                }
                Use::Request => {
                    self.close(id);
                    requests += 1;
                }
                Use::Monitor => {
                    self.close(id);
                }
            }
        }
        self.counts.unfired += timers;
        self.counts.abandoned += requests;
        requests
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        let shard = self.shard;
        let live = |id: u64| {
            let (slot, generation) = unpack(id);
            shard_of(id) == shard
                && entries
                    .get(slot as usize)
                    .is_some_and(|e| e.generation == generation && e.open.is_some())
        };
        // Filter in place and heapify the same buffer: compaction never allocates.
        let mut timers = std::mem::take(&mut self.timers).into_vec();
        timers.retain(|Reverse((_, id))| live(*id));
        self.timers = BinaryHeap::from(timers);
    }

    /// Counts a host request the host ended before this shard did: its
    /// handle cancelled it, or timed it out at its own deadline (see
    /// `PendingReply`).
    pub(crate) fn count_ended_by_host(&mut self, waiter: &HostWaiter) {
        if matches!(waiter.outcome(), Some(Err(RequestError::Timeout))) {
            self.counts.timed_out += 1;
        } else {
            self.counts.cancelled += 1;
        }
    }

    /// Ends every open request the host waits for with `error` (shutdown, or a
    /// shard whose actors all failed: nobody is left to answer them).
    pub(crate) fn end_host_waiters(&mut self, error: RequestError) {
        for slot in 0..self.entries.len() {
            if let Some((Waiter::Host(_), _)) = &self.entries[slot].open
                && let Some((Waiter::Host(w), _)) = self.entries[slot].open.take()
            {
                self.free.push_back(slot as u32);
                self.counts.open -= 1;
                // The host may have ended it first (a cancel, or its own
                // deadline: see `PendingReply`), its word on the way here.
                if w.fulfil(Err(error)) {
                    self.counts.failed += 1;
                } else {
                    self.count_ended_by_host(&w);
                }
            }
        }
    }

    /// Gives the requests opened since the last call their deadlines: `now` (a
    /// clock reading taken after they were opened) plus their timeouts. Those
    /// already ended are dropped.
    pub(crate) fn arm(&mut self, now: u64) {
        for i in 0..self.fresh.len() {
            let (timeout, id) = self.fresh[i];
            let Some(e) = self.entry(id) else { continue };
            // Out of `fresh`: into its actor's list (if not linked already;
            // one look at the entry for both).
            let owner = e.unlinked_owner();
            self.timers.push(Reverse((now.saturating_add(timeout), id)));
            if let Some(owner) = owner {
                self.own(unpack(id).0, owner);
            }
        }
        self.fresh.clear();
        self.fresh_linked = 0;
    }

    /// The earliest deadline of an open request that is armed.
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        while let Some(&Reverse((deadline, id))) = self.timers.peek() {
            if self.entry(id).is_some() {
                return Some(deadline);
            }
            self.timers.pop();
        }
        None
    }

    /// Ends and returns one armed request or timer whose deadline is at or
    /// before `now`.
    pub(crate) fn expire(&mut self, now: u64) -> Option<Expired> {
        loop {
            let &Reverse((deadline, id)) = self.timers.peek()?;
            let Some(kind) = self.entry(id).map(|e| e.kind) else {
                self.timers.pop();
                continue;
            };
            if deadline > now {
                return None;
            }
            self.timers.pop();
            if kind == Use::Timer {
                let (waiter, from, payload) = self.close_timer(id)?;
                // A timer always waits for an actor.
                let Waiter::Actor(to) = waiter else { continue };
                self.counts.fired += 1;
                return Some(Expired::Timer {
                    id,
                    to,
                    from,
                    payload,
                });
            }
            let (waiter, target) = self.close(id)?;
            self.counts.timed_out += 1;
            return Some(Expired::Request(id, waiter, target));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Address {
        Address::new(0, 1, 1)
    }

    fn expired_id(e: Expired) -> u64 {
        match e {
            Expired::Request(id, ..) | Expired::Timer { id, .. } => id,
        }
    }

    #[test]
    fn a_revoked_request_ends_those_made_on_its_behalf() {
        let mut r = Requests::new(0);
        let parent = 0x0100_0000_0000_0001;
        let a = r.open_for(Waiter::Actor(me()), me(), 100, parent).unwrap();
        let b = r.open_for(Waiter::Actor(me()), me(), 100, parent).unwrap();
        let c = r.open_for(Waiter::Actor(me()), me(), 100, parent).unwrap();
        let other = open(&mut r, 100);
        // Two end first, on their own: unlinked (the first from the middle
        // of the list, the last one's place taken).
        assert!(r.close(a).is_some());
        assert!(r.close(c).is_some());
        let ended: Vec<u64> = r.revoke(parent).into_iter().map(|e| e.0).collect();
        assert_eq!(ended, vec![b]);
        assert!(r.revoke(parent).is_empty(), "once");
        assert!(r.close(b).is_none(), "ended");
        assert!(r.close(other).is_some(), "not on its behalf");
        assert_eq!(r.counts.revoked, 1);
        assert!(r.derived.is_empty());
    }

    /// Each actor's open entries are found by a walk of its own list, which
    /// follows every way an entry opens and ends (answered, timed out, fired,
    /// cancelled, abandoned), whatever the other actors hold.
    #[test]
    fn an_actor_s_entries_are_its_own_list() {
        let mut r = Requests::new(0);
        let (a, b) = (Address::new(0, 1, 1), Address::new(0, 2, 1));
        // Another shard's actor in the same slot as `a` shares its list, not
        // its entries.
        let stranger = Address::new(1, 1, 1);
        let mut mine = Vec::new();
        let mut timers = Vec::new();
        let mut monitors = Vec::new();
        for i in 0..50u64 {
            let id = r.open(Waiter::Actor(a), b, 1_000 + i).unwrap();
            mine.push(id);
            r.open(Waiter::Actor(b), a, 1_000).unwrap();
            r.open(Waiter::Actor(stranger), a, 1_000).unwrap();
            timers.push(r.open_timer(a, a, 10 + i, Payload::new()).unwrap());
            r.open_timer(b, b, 10, Payload::new()).unwrap();
            monitors.push(r.open_monitor(a, b).unwrap());
        }
        // Some end on their own: from the front, the back and the middle.
        for id in [
            mine[0],
            mine[49],
            mine[20],
            monitors[7],
            timers[0],
            timers[49],
        ] {
            if r.close(id).is_none() {
                assert!(r.cancel_timer(id, a), "{id:x}");
            }
        }
        let keep = |v: &[u64], gone: &[usize]| -> Vec<u64> {
            v.iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(i))
                .map(|(_, id)| *id)
                .collect()
        };
        let (mine, timers) = (keep(&mine, &[0, 49, 20]), keep(&timers, &[0, 49]));
        let monitors = keep(&monitors, &[7]);
        assert_eq!(r.timers_of(a), timers);
        let open: Vec<u64> = r.open_by(a);
        let mut expected: Vec<u64> = mine.iter().chain(&monitors).copied().collect();
        expected.sort_unstable();
        let mut got = open.clone();
        got.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(
            r.monitors_of(a),
            monitors.iter().map(|&id| (id, b)).collect::<Vec<_>>()
        );
        // Made after that look (not linked yet), and one made and ended
        // before any look (never linked): found, and not found.
        let late = r.open(Waiter::Actor(a), b, 1_000).unwrap();
        let gone = r.open(Waiter::Actor(a), b, 1_000).unwrap();
        assert!(r.close(gone).is_some());
        assert_eq!(r.open_by(a).len(), expected.len() + 1);
        assert!(r.open_by(a).contains(&late) && !r.open_by(a).contains(&gone));
        assert!(r.close(late).is_some());
        // Timers that fire leave the list too.
        let fired = std::iter::from_fn(|| r.expire(u64::MAX / 2)).count();
        assert_eq!(fired, 0, "not armed yet");
        r.arm(0);
        assert_eq!(r.drop_timers(a), 48);
        assert!(r.timers_of(a).is_empty());
        let ended: Vec<u64> = r.abandon(a).into_iter().map(|(id, _)| id).collect();
        let mut ended_sorted = ended.clone();
        ended_sorted.sort_unstable();
        let mut mine_sorted = mine.clone();
        mine_sorted.sort_unstable();
        assert_eq!(ended_sorted, mine_sorted, "requests, not monitors");
        assert!(r.open_by(a).is_empty() && r.monitors_of(a).is_empty());
        // The others' entries are all still there.
        assert_eq!(r.open_by(b).len(), 50);
        assert_eq!(r.timers_of(b).len(), 50);
        assert_eq!(r.open_by(stranger).len(), 50);
        let due: Vec<Expired> = std::iter::from_fn(|| r.expire(u64::MAX / 2)).collect();
        assert_eq!(
            due.len(),
            150,
            "b's requests and timers, the stranger's requests"
        );
        assert!(r.open_by(b).is_empty() && r.timers_of(b).is_empty());
        assert!(r.open_by(stranger).is_empty());
        assert!(r.owned.iter().all(|&first| first == NIL));
    }

    fn open(r: &mut Requests, timeout: u64) -> u64 {
        r.open(Waiter::Actor(me()), me(), timeout).unwrap()
    }

    #[test]
    fn ids_are_generation_checked() {
        let mut r = Requests::new(3);
        let a = open(&mut r, 100);
        assert_eq!(shard_of(a), 3);
        assert!(r.is_open_by(a, me()));
        assert!(r.close(a).is_some());
        assert!(r.close(a).is_none(), "ends once");
        let b = open(&mut r, 100);
        assert_ne!(a, b, "a new request gets a new id");
        assert!(
            r.close(a).is_none(),
            "a stale id never reaches the newer request"
        );
        assert!(r.close(b).is_some());
        assert_eq!(r.open_count(), 0);
    }

    #[test]
    fn a_slot_is_reused_only_after_min_free_others() {
        let mut r = Requests::new(0);
        let mut last_use = std::collections::HashMap::new();
        for n in 0..3 * MIN_FREE as u64 {
            let id = open(&mut r, 100);
            let (slot, _) = unpack(id);
            if let Some(before) = last_use.insert(slot, n) {
                assert!(
                    n - before >= MIN_FREE as u64,
                    "slot {slot} reused after {}",
                    n - before
                );
            }
            r.close(id);
        }
    }

    #[test]
    fn a_full_table_refuses_instead_of_overflowing_the_id() {
        let mut r = Requests::with_limit(0, 8);
        let ids: Vec<u64> = (0..8).map(|_| open(&mut r, 100)).collect();
        assert_eq!(
            r.open(Waiter::Actor(me()), me(), 100),
            Err(SendError::TooManyRequests)
        );
        r.close(ids[3]);
        let id = open(&mut r, 100);
        assert_eq!(
            unpack(id).0,
            unpack(ids[3]).0,
            "the freed slot, at the limit"
        );
        assert_ne!(id, ids[3]);
    }

    #[test]
    fn a_requester_that_goes_ends_its_requests_and_no_others() {
        let mut r = Requests::new(0);
        let other = Address::new(0, 2, 1);
        let mine: Vec<u64> = (0..5).map(|_| open(&mut r, 100)).collect();
        let theirs = r.open(Waiter::Actor(other), me(), 100).unwrap();
        r.close(mine[2]);
        assert_eq!(r.abandon(me()).len(), 4);
        assert!(mine.iter().all(|id| r.close(*id).is_none()));
        assert_eq!(r.open_count(), 1);
        assert!(r.is_open_by(theirs, other));
        assert_eq!(r.abandon(me()).len(), 0);
        assert_eq!(r.counts.abandoned, 4);
    }

    #[test]
    fn timers_fire_in_order_and_skip_closed() {
        let mut r = Requests::new(0);
        let a = open(&mut r, 30);
        let b = open(&mut r, 10);
        let c = open(&mut r, 20);
        r.close(c);
        // Unarmed requests have no deadline yet.
        assert_eq!(r.next_deadline(), None);
        assert!(r.expire(u64::MAX).is_none());
        r.arm(0);
        assert_eq!(r.next_deadline(), Some(10));
        assert_eq!(r.timers.len(), 2, "the closed one never reached the heap");
        assert!(r.expire(5).is_none());
        assert_eq!(r.expire(100).map(expired_id), Some(b));
        assert_eq!(r.expire(100).map(expired_id), Some(a));
        assert!(r.expire(100).is_none());
        assert_eq!(r.counts.timed_out, 2);
    }

    #[test]
    fn timers_fire_once_cancel_and_outlive_abandon() {
        let mut r = Requests::new(0);
        let t1 = r
            .open_timer(me(), me(), 10, Payload::from_slice(b"one"))
            .unwrap();
        let t2 = r
            .open_timer(me(), Address::HOST, 20, Payload::from_slice(b"two"))
            .unwrap();
        let req = open(&mut r, 15);
        assert_eq!(r.timed_count(), 3);
        assert!(!r.is_open_by(t1, me()), "a timer is not a request");
        assert!(r.is_timer_of(t1, me()) && !r.is_timer_of(req, me()));
        // A restart abandons the requests, not the timers.
        assert_eq!(r.abandon(me()).len(), 1);
        assert_eq!(r.timers_of(me()), vec![t1, t2]);
        r.arm(100);
        match r.expire(110) {
            Some(Expired::Timer {
                id, to, payload, ..
            }) => {
                assert_eq!((id, to, &payload[..]), (t1, me(), &b"one"[..]));
            }
            _ => panic!("timer one is due"),
        }
        assert!(r.expire(119).is_none(), "never early");
        assert!(!r.cancel_timer(t1, me()), "fired: no longer pending");
        assert!(!r.cancel_timer(t2, Address::new(0, 2, 1)), "not theirs");
        assert!(r.cancel_timer(t2, me()));
        assert!(
            r.expire(u64::MAX).is_none(),
            "a cancelled timer never fires"
        );
        assert_eq!(
            (
                r.counts.scheduled,
                r.counts.fired,
                r.counts.unfired,
                r.counts.timers
            ),
            (2, 1, 1, 0)
        );
        // A response naming a timer's id ends nothing.
        let t = r.open_timer(me(), me(), 5, Payload::new()).unwrap();
        assert!(r.close_entry(t).is_none());
        assert!(r.cancel_timer(t, me()));
        // Closing one of many pending timers does not rebuild the heap (that
        // made firing n timers cost n² once).
        let many: Vec<u64> = (0..3000)
            .map(|i| r.open_timer(me(), me(), 1000 + i, Payload::new()).unwrap())
            .collect();
        r.arm(0);
        let heap = r.timers.len();
        assert!(r.cancel_timer(many[0], me()));
        assert_eq!(r.timers.len(), heap, "no compaction");
        assert_eq!(r.drop_timers(me()), 2999);
        let t3 = r.open_timer(me(), me(), 5, Payload::new()).unwrap();
        assert_eq!(r.drop_timers(me()), 1);
        assert!(!r.cancel_timer(t3, me()));
        assert_eq!(r.timed_count(), 0);
    }

    #[test]
    fn deadlines_count_from_the_arming_clock_reading() {
        let mut r = Requests::new(0);
        let a = open(&mut r, 50);
        r.arm(1_000);
        let b = open(&mut r, 10);
        assert_eq!(r.next_deadline(), Some(1_050));
        r.arm(2_000);
        assert!(r.expire(1_049).is_none());
        assert_eq!(r.expire(1_050).map(expired_id), Some(a));
        assert!(r.expire(2_009).is_none());
        assert_eq!(r.expire(2_010).map(expired_id), Some(b));
    }
}
