//! The rings between shards: one bounded single-producer, single-consumer queue of
//! envelopes per ordered pair of shards (a mesh).
//!
//! The ring from `from` to `to` is pushed only by shard `from` and popped only by
//! shard `to` (each inside its own pass, which has the shard to itself: on its
//! thread, or, for a manual runtime, on the thread stepping it). A full ring
//! never blocks: `push` hands the envelope back and the sender keeps it in its
//! overflow, in order.
//!
//! Each slot carries a stamp, as in Vyukov's bounded queue: the position it
//! waits for, and whether it holds an envelope for that position. With one
//! producer and one consumer nobody races for a position, so neither side needs
//! a compare-and-swap (an MPMC queue's locked instruction per push and per pop,
//! which also waits for the previous slot's cache line, is what a stream of
//! envelopes between two cores paid most for); each side keeps its own
//! position, and the consumer looks at a ring by reading the stamp of the slot
//! at its own position (the one the producer writes next when the ring is
//! empty), never the producer's position.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::envelope::Envelope;

/// A position of one side, alone on its cache line(s).
#[repr(align(128))]
struct Position(AtomicUsize);

struct Slot {
    /// The position this slot waits for: equal to it, the slot is free for
    /// the producer to write that position; one more, it holds that
    /// position's envelope for the consumer.
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<Envelope>>,
}

/// One ring: envelopes from one shard to another.
pub(crate) struct Ring {
    /// The producer's next position (`lap | index`). Producer only.
    tail: Position,
    /// The consumer's next position. Consumer only.
    head: Position,
    /// A lap's worth of positions: the smallest power of two above the
    /// capacity, so an index never carries into the lap bits.
    one_lap: usize,
    slots: Box<[Slot]>,
}

// SAFETY: a slot's value is written only by the producer, while the slot's
// stamp says it is free (the consumer does not touch it then), and read only by
// the consumer, while the stamp says it is full (the producer does not touch it
// then); each side hands the slot over with a Release store of the stamp, seen
// by the other's Acquire load before it touches the value. `push` and `pop` are
// `unsafe`, with one producer and one consumer as their contract, so two
// threads never write, or never read, the same slot at once.
unsafe impl Sync for Ring {}
// SAFETY: the ring owns its envelopes, which are `Send` (checked below).
unsafe impl Send for Ring {}
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Envelope>();
};

impl Ring {
    /// A ring of `capacity` envelopes (at least one).
    pub(crate) fn new(capacity: usize) -> Ring {
        let capacity = capacity.max(1);
        Ring {
            tail: Position(AtomicUsize::new(0)),
            head: Position(AtomicUsize::new(0)),
            one_lap: (capacity + 1).next_power_of_two(),
            slots: (0..capacity)
                .map(|i| Slot {
                    stamp: AtomicUsize::new(i),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
        }
    }

    /// The position after `pos`.
    #[inline]
    fn next(&self, pos: usize) -> usize {
        let index = pos & (self.one_lap - 1);
        if index + 1 < self.slots.len() {
            pos + 1
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// The slot of position `pos`.
    #[inline]
    fn slot(&self, pos: usize) -> &Slot {
        &self.slots[pos & (self.one_lap - 1)]
    }

    /// Enqueues `env`, or hands it back if the ring is full.
    ///
    /// # Safety
    ///
    /// One producer: every `push` on a ring happens before the next
    /// (one thread makes them, or a lock orders them), so no two overlap.
    #[inline]
    pub(crate) unsafe fn push(&self, env: Envelope) -> Result<(), Envelope> {
        let tail = self.tail.0.load(Ordering::Relaxed);
        let slot = self.slot(tail);
        if slot.stamp.load(Ordering::Acquire) != tail {
            return Err(env); // the consumer has not taken this slot's last lap
        }
        // SAFETY: the stamp says the slot is free for this position, so the
        // consumer does not touch its value until the store below; and no
        // other push runs (the caller's contract).
        unsafe { (*slot.value.get()).write(env) };
        slot.stamp.store(tail + 1, Ordering::Release);
        self.tail.0.store(self.next(tail), Ordering::Relaxed);
        Ok(())
    }

    /// Dequeues the oldest envelope.
    ///
    /// # Safety
    ///
    /// One consumer: every `pop` on a ring happens before the next
    /// (one thread makes them, or a lock orders them), so no two overlap.
    #[inline]
    pub(crate) unsafe fn pop(&self) -> Option<Envelope> {
        let head = self.head.0.load(Ordering::Relaxed);
        let slot = self.slot(head);
        if slot.stamp.load(Ordering::Acquire) != head + 1 {
            return None;
        }
        // SAFETY: the stamp says the producer wrote this position's envelope
        // (its Release store, seen by the Acquire load above) and will not
        // touch the slot until the store below; no other pop runs (the
        // caller's contract), so the envelope is read out once.
        let env = unsafe { (*slot.value.get()).assume_init_read() };
        slot.stamp
            .store(head.wrapping_add(self.one_lap), Ordering::Release);
        self.head.0.store(self.next(head), Ordering::Relaxed);
        Some(env)
    }

    /// Whether the ring holds nothing (as the consumer sees it).
    pub(crate) fn is_empty(&self) -> bool {
        let head = self.head.0.load(Ordering::Relaxed);
        self.slot(head).stamp.load(Ordering::Acquire) != head + 1
    }

    /// Whether the ring has no room (as the producer sees it).
    pub(crate) fn is_full(&self) -> bool {
        let tail = self.tail.0.load(Ordering::Relaxed);
        self.slot(tail).stamp.load(Ordering::Acquire) != tail
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: nobody else pushes or pops.
        while unsafe { self.pop() }.is_some() {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;

    /// Envelope number `n`: its number in the first 8 bytes of a payload of
    /// 8 to 100 bytes (past 64 it is on the heap, so a ring dropped with it
    /// inside must free it, once).
    fn env(n: u64) -> Envelope {
        let to = Address::from_bits((1 << 32) | 1);
        let mut payload = [0u8; 100];
        payload[..8].copy_from_slice(&n.to_le_bytes());
        Envelope::tell(to, to, &payload[..8 + (n % 93) as usize])
    }

    fn number(e: &Envelope) -> u64 {
        u64::from_le_bytes(e.payload[..8].try_into().unwrap())
    }

    /// Pushes envelope `n`; whether it fit. For the tests on one thread.
    fn push(ring: &Ring, n: u64) -> bool {
        // SAFETY: the test's one thread makes every push and pop.
        unsafe { ring.push(env(n)) }.is_ok()
    }

    /// Pops an envelope; its number. For the tests on one thread.
    fn pop(ring: &Ring) -> Option<u64> {
        // SAFETY: as for `push`.
        unsafe { ring.pop() }.map(|e| number(&e))
    }

    #[test]
    fn fills_to_capacity_and_keeps_order_across_laps() {
        for capacity in [1, 2, 3, 4, 7, 8, 100, 1000, 65_536] {
            let ring = Ring::new(capacity);
            let (mut pushed, mut popped) = (0u64, 0u64);
            for _ in 0..3 {
                assert!(ring.is_empty() && !ring.is_full());
                for _ in 0..capacity {
                    assert!(push(&ring, pushed));
                    pushed += 1;
                    assert!(!ring.is_empty());
                }
                assert!(ring.is_full(), "full at {capacity}");
                assert!(!push(&ring, 0), "full at {capacity}");
                for _ in 0..capacity {
                    assert_eq!(pop(&ring), Some(popped));
                    popped += 1;
                    assert!(!ring.is_full());
                }
                assert!(ring.is_empty());
                assert_eq!(pop(&ring), None);
            }
            // Partly full while positions wrap: half a ring ahead, then one
            // in and one out for three laps.
            let ahead = capacity / 2;
            for _ in 0..ahead {
                assert!(push(&ring, pushed));
                pushed += 1;
            }
            for _ in 0..capacity * 3 {
                assert!(push(&ring, pushed));
                pushed += 1;
                assert_eq!(pop(&ring), Some(popped));
                popped += 1;
            }
            while let Some(n) = pop(&ring) {
                assert_eq!(n, popped);
                popped += 1;
            }
            assert_eq!(popped, pushed);
        }
    }

    /// Runs the drop of a ring holding heap payloads after its positions
    /// wrapped (a double free aborts the test; a leak shows under a leak
    /// checker).
    #[test]
    fn a_dropped_ring_drops_what_it_holds() {
        let ring = Ring::new(8);
        for n in 0..13 {
            assert!(push(&ring, 90 + n));
            if n < 8 {
                assert_eq!(pop(&ring), Some(90 + n));
            }
        }
        assert!(!ring.is_empty());
        drop(ring);
    }

    #[test]
    fn two_threads_stream_every_envelope_in_order() {
        for capacity in [1, 3, 16, 4096] {
            stream(capacity, 100_000);
        }
    }

    /// Streams `n` envelopes from one thread to another through a ring of
    /// `capacity`, checking each as it comes out.
    fn stream(capacity: usize, n: u64) {
        let ring = std::sync::Arc::new(Ring::new(capacity));
        let consumer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut next = 0;
                while next < n {
                    // SAFETY: this thread is the ring's only consumer.
                    match unsafe { ring.pop() } {
                        Some(e) => {
                            assert_eq!(number(&e), next);
                            next += 1;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
            })
        };
        let mut i = 0;
        while i < n {
            // SAFETY: this thread is the ring's only producer.
            match unsafe { ring.push(env(i)) } {
                Ok(()) => i += 1,
                Err(_) => std::hint::spin_loop(),
            }
        }
        consumer.join().unwrap();
        assert!(ring.is_empty());
    }
}
