//! Access to the hot-path data structures for the project's own instruction-count
//! benchmarks (`benches/hot_paths.rs`). Each type wraps the real one the shards
//! use, so the benchmarks measure the code that runs. Not a stable API; built
//! only with the `bench` feature.

use crate::address::Address;
use crate::envelope::Envelope;
use crate::requests::{Requests, Waiter};
use crate::slots::SlotTable;

const TO: Address = Address::from_bits((1 << 32) | 1);

/// A cross-shard ring: the bounded single-producer single-consumer queue of
/// envelopes between two shards.
pub struct Ring(crate::ring::Ring);

impl Ring {
    /// A ring holding up to `capacity` envelopes.
    pub fn new(capacity: usize) -> Ring {
        Ring(crate::ring::Ring::new(capacity))
    }

    /// Enqueues a message (the envelope built as a send builds it); whether it fit.
    ///
    /// # Safety
    ///
    /// One producer: every `push` on a ring happens before the next (one
    /// thread makes them, or a lock orders them).
    pub unsafe fn push(&self, payload: &[u8]) -> bool {
        // SAFETY: the caller's contract is the ring's.
        unsafe { self.0.push(Envelope::tell(TO, TO, payload)) }.is_ok()
    }

    /// Dequeues a message; its payload length.
    ///
    /// # Safety
    ///
    /// One consumer: every `pop` on a ring happens before the next (one
    /// thread makes them, or a lock orders them).
    pub unsafe fn pop(&self) -> Option<usize> {
        // SAFETY: the caller's contract is the ring's.
        unsafe { self.0.pop() }.map(|e| e.payload.len())
    }
}

/// An actor's mailbox.
#[derive(Default)]
pub struct Mailbox(crate::mailbox::Mailbox);

impl Mailbox {
    /// Enqueues a message.
    pub fn push(&mut self, payload: &[u8]) {
        self.0.push(Envelope::tell(TO, TO, payload));
    }

    /// Dequeues a message; its payload length.
    pub fn pop(&mut self) -> Option<usize> {
        self.0.pop().map(|e| e.payload.len())
    }
}

/// A shard's actor slots: generation checks and mailbox admission.
pub struct Slots(SlotTable);

impl Slots {
    /// A table of `slots` slots, none in use.
    pub fn new(slots: u32) -> Slots {
        Slots(SlotTable::new(slots))
    }

    /// Takes `slot` into use for an actor that accepts `accepts` (none: any
    /// payload), whose name matches one grant pattern besides `*`; returns its
    /// generation.
    pub fn activate(&self, slot: u32, accepts: &[crate::codec::Codec]) -> u32 {
        self.0
            .activate(slot, crate::slots::accepts_bits(accepts), GRANTED | 1)
    }

    /// Ends the actor in `slot`.
    pub fn deactivate(&self, slot: u32) {
        self.0.deactivate(slot)
    }

    /// Admits one message (`payload`) for the actor `slot`/`generation` from a
    /// sender granted the pattern its name matches: whether it fit and its codec
    /// is accepted.
    pub fn admit(&self, slot: u32, generation: u32, capacity: u32, payload: &[u8]) -> bool {
        self.0
            .admit(slot, generation, capacity, payload, GRANTED)
            .is_ok()
    }

    /// Frees `n` admitted messages' room (a turn that handled them).
    pub fn release(&self, slot: u32, n: u32) {
        self.0.release(slot, n)
    }
}

/// The label of the one grant pattern the benchmark's actors match.
const GRANTED: u64 = 1 << 5;

/// The per-shard table of open requests and their timeouts.
pub struct RequestTable(Requests);

impl Default for RequestTable {
    fn default() -> Self {
        RequestTable(Requests::new(0))
    }
}

impl RequestTable {
    /// Opens a request timing out `timeout` ns after the next `arm`; returns
    /// its id.
    pub fn open(&mut self, timeout: u64) -> u64 {
        let me = Address::new(0, 0, 1);
        self.0
            .open(Waiter::Actor(me), me, timeout)
            .expect("a benchmark's table has room")
    }

    /// Gives the requests opened since the last call their deadlines, from
    /// the clock reading `now` (once per pass of a shard's loop).
    pub fn arm(&mut self, now: u64) {
        self.0.arm(now)
    }

    /// Ends request `id`; whether it was open.
    pub fn close(&mut self, id: u64) -> bool {
        self.0.close(id).is_some()
    }

    /// Ends one request due at `now`.
    pub fn expire(&mut self, now: u64) -> Option<u64> {
        self.0.expire(now).map(|e| match e {
            crate::requests::Expired::Request(id, ..)
            | crate::requests::Expired::Timer { id, .. } => id,
        })
    }

    /// Requests open.
    pub fn open_count(&self) -> usize {
        self.0.open_count()
    }
}
