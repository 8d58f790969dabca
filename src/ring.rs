//! The rings between shards: one bounded single-producer, single-consumer queue of
//! envelopes per ordered pair of shards (a mesh).
//!
//! The ring from `from` to `to` is pushed only by shard `from`'s thread and
//! popped only by shard `to`'s (or, for a manual runtime, by the thread stepping
//! them). A full
//! ring never blocks: `push` hands the envelope back and the sender keeps it in
//! its overflow, in order.

use std::sync::OnceLock;

use crossbeam_queue::ArrayQueue;

use crate::envelope::Envelope;

/// One ring: envelopes from one shard to another.
pub(crate) struct Ring(ArrayQueue<Envelope>);

impl Ring {
    pub(crate) fn new(capacity: usize) -> Ring {
        Ring(ArrayQueue::new(capacity))
    }

    /// Enqueues `env`, or hands it back if the ring is full. Producer only.
    #[inline]
    pub(crate) fn push(&self, env: Envelope) -> Result<(), Envelope> {
        self.0.push(env)
    }

    /// Dequeues the oldest envelope. Consumer only.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Envelope> {
        self.0.pop()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.0.is_full()
    }
}

/// Every ring of a runtime: one per ordered pair of shards, the diagonal unused,
/// each allocated when its sender first pushes to it, so memory follows the pairs
/// that talk rather than `shards²`.
pub(crate) struct Mesh {
    shards: usize,
    capacity: usize,
    /// `rings[from * shards + to]`.
    rings: Box<[OnceLock<Box<Ring>>]>,
}

impl Mesh {
    pub(crate) fn new(shards: usize, capacity: usize) -> Mesh {
        Mesh {
            shards,
            capacity,
            rings: (0..shards * shards).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The ring from shard `from` to shard `to`, allocated now if this is the
    /// first push to it. Producer (`from`) only.
    #[inline]
    pub(crate) fn outbound(&self, from: usize, to: usize) -> &Ring {
        self.rings[from * self.shards + to].get_or_init(|| Box::new(Ring::new(self.capacity)))
    }

    /// The ring from shard `from` to shard `to`, if anything was ever pushed to it.
    /// Consumer (`to`) only.
    #[inline]
    pub(crate) fn inbound(&self, from: usize, to: usize) -> Option<&Ring> {
        self.rings[from * self.shards + to].get().map(|r| &**r)
    }
}
