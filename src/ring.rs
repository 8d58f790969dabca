//! The rings between shards: one bounded single-producer, single-consumer queue of
//! envelopes per ordered pair of shards (a mesh).
//!
//! `Mesh::ring(from, to)` is pushed only by shard `from`'s thread and popped only
//! by shard `to`'s (or, for a manual runtime, by the thread stepping them). A full
//! ring never blocks: `push` hands the envelope back and the sender keeps it in
//! its overflow, in order.

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
}

/// Every ring of a runtime: `shards × shards` of them, the diagonal unused.
pub(crate) struct Mesh {
    shards: usize,
    /// `rings[from * shards + to]`.
    rings: Box<[Ring]>,
}

impl Mesh {
    pub(crate) fn new(shards: usize, capacity: usize) -> Mesh {
        Mesh {
            shards,
            rings: (0..shards * shards).map(|_| Ring::new(capacity)).collect(),
        }
    }

    /// The ring from shard `from` to shard `to`.
    #[inline]
    pub(crate) fn ring(&self, from: usize, to: usize) -> &Ring {
        &self.rings[from * self.shards + to]
    }
}
