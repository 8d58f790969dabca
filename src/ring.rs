//! The rings between shards: one bounded single-producer, single-consumer queue of
//! envelopes per ordered pair of shards (a mesh).
//!
//! The ring from `from` to `to` is pushed only by shard `from` and popped only by
//! shard `to` (through the shard itself, which one thread has at a time: its
//! own, or, for a manual runtime, whichever holds the runtime's lock of its
//! shards, to step them, take commands or shut down). A full ring
//! never blocks: `push` hands the envelope back and the sender keeps it in its
//! overflow, in order.
//!
//! Only the producer writes a slot. Each slot carries a stamp beside its
//! envelope, on the same lines: the number of the envelope it holds, plus one
//! (envelopes are numbered from 0 as they are pushed). The consumer, which has
//! taken `n` envelopes, looks at the ring by reading the stamp of slot
//! `n mod capacity`: `n + 1`, it holds the next envelope; anything else (an
//! earlier lap's, or none), the ring is empty. So the consumer only reads an
//! envelope's lines: the producer's next write of the slot, a lap later,
//! takes back a copy it shares rather than a line the consumer changed (a
//! stamp written back on each take made every push wait for its slot's line
//! from the consumer's core).
//!
//! The consumer publishes how many envelopes it has taken, on a line of its
//! own. The producer keeps the last count it read, and reads the consumer's
//! line again only when that count says the ring is full: about once a lap
//! while envelopes stream, not once an envelope. Neither side needs a
//! compare-and-swap (an MPMC queue's locked instruction per push and per pop
//! is what a stream of envelopes between two cores paid most for).

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::envelope::Envelope;

/// One side's counters, alone on its cache line(s) (128 bytes: the adjacent
/// line prefetcher fetches lines in pairs).
#[repr(align(128))]
struct Side {
    /// Envelopes this side has pushed (producer) or taken (consumer). The
    /// consumer's is read by the producer; the producer's by nobody else.
    count: AtomicUsize,
    /// `count` modulo the capacity: the slot of the next push or take.
    index: AtomicUsize,
    /// The producer's: the consumer's `count` when it last read it, a bound
    /// on what the consumer has taken. Unused by the consumer.
    seen: AtomicUsize,
}

impl Side {
    const fn new() -> Side {
        Side {
            count: AtomicUsize::new(0),
            index: AtomicUsize::new(0),
            seen: AtomicUsize::new(0),
        }
    }
}

/// One envelope's place: 128 bytes (an envelope and its stamp fill 120), so
/// each slot is two whole lines, never a line shared with the next slot.
#[repr(C, align(128))]
struct Slot {
    /// The number of the envelope the slot holds, plus one (0: it never
    /// held one). Written by the producer, after the envelope.
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<Envelope>>,
}

/// One ring: envelopes from one shard to another.
pub(crate) struct Ring {
    producer: Side,
    consumer: Side,
    slots: Box<[Slot]>,
}

// SAFETY: a slot's value is written only by the producer and read only by the
// consumer. The producer writes slot `i` for envelope `n` only once the
// consumer's count (read with Acquire, after the consumer's Release store of
// it) says envelope `n - capacity`, the slot's last, was taken; the consumer
// reads it only once the slot's stamp (read with Acquire, after the producer's
// Release store of it) says envelope `n` is there. `push` and `pop` are
// `unsafe`, with one producer and one consumer as their contract, so two
// threads never write, or never read, the same slot at once, and each side's
// counters are written by that side alone.
unsafe impl Sync for Ring {}
// SAFETY: the ring owns its envelopes, which are `Send` (checked below).
unsafe impl Send for Ring {}
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Envelope>();
};
const _: () = assert!(std::mem::size_of::<Slot>() == 128);

impl Ring {
    /// A ring of `capacity` envelopes (at least one).
    pub(crate) fn new(capacity: usize) -> Ring {
        Ring {
            producer: Side::new(),
            consumer: Side::new(),
            slots: (0..capacity.max(1))
                .map(|_| Slot {
                    stamp: AtomicUsize::new(0),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
        }
    }

    /// The index after `index`.
    #[inline]
    fn next(&self, index: usize) -> usize {
        if index + 1 < self.slots.len() {
            index + 1
        } else {
            0
        }
    }

    /// Enqueues `env`, or hands it back if the ring is full.
    ///
    /// # Safety
    ///
    /// One producer: every `push` on a ring happens before the next
    /// (one thread makes them, or a lock orders them), so no two overlap.
    #[inline]
    pub(crate) unsafe fn push(&self, env: Envelope) -> Result<(), Envelope> {
        let p = &self.producer;
        let n = p.count.load(Ordering::Relaxed);
        if n.wrapping_sub(p.seen.load(Ordering::Relaxed)) >= self.slots.len() && !self.room(n) {
            return Err(env);
        }
        let index = p.index.load(Ordering::Relaxed);
        let slot = &self.slots[index];
        // SAFETY: the consumer has taken the slot's last envelope (`room`, or
        // an earlier read of its count, says so; its Acquire load saw the
        // consumer's Release store after that take), and does not read the
        // slot again until the stamp below says envelope `n` is there; no
        // other push runs (the caller's contract).
        unsafe { (*slot.value.get()).write(env) };
        slot.stamp.store(n.wrapping_add(1), Ordering::Release);
        p.count.store(n.wrapping_add(1), Ordering::Relaxed);
        p.index.store(self.next(index), Ordering::Relaxed);
        Ok(())
    }

    /// Whether the consumer has taken enough for envelope `n` to fit: reads
    /// its count (the producer's one look at the consumer's line) and keeps
    /// it. Producer only.
    #[cold]
    fn room(&self, n: usize) -> bool {
        let taken = self.consumer.count.load(Ordering::Acquire);
        self.producer.seen.store(taken, Ordering::Relaxed);
        n.wrapping_sub(taken) < self.slots.len()
    }

    /// Dequeues the oldest envelope.
    ///
    /// # Safety
    ///
    /// One consumer: every `pop` on a ring happens before the next
    /// (one thread makes them, or a lock orders them), so no two overlap.
    #[inline]
    pub(crate) unsafe fn pop(&self) -> Option<Envelope> {
        let c = &self.consumer;
        let n = c.count.load(Ordering::Relaxed);
        let index = c.index.load(Ordering::Relaxed);
        let slot = &self.slots[index];
        if slot.stamp.load(Ordering::Acquire) != n.wrapping_add(1) {
            return None;
        }
        // SAFETY: the stamp says the producer wrote envelope `n` here (its
        // Release store, seen by the Acquire load above) and it will not
        // write the slot again until the count below says it was taken; no
        // other pop runs (the caller's contract), so the envelope is read
        // out once.
        let env = unsafe { (*slot.value.get()).assume_init_read() };
        c.index.store(self.next(index), Ordering::Relaxed);
        c.count.store(n.wrapping_add(1), Ordering::Release);
        Some(env)
    }

    /// Whether the ring holds nothing (as the consumer sees it).
    pub(crate) fn is_empty(&self) -> bool {
        let c = &self.consumer;
        let n = c.count.load(Ordering::Relaxed);
        self.slots[c.index.load(Ordering::Relaxed)]
            .stamp
            .load(Ordering::Acquire)
            != n.wrapping_add(1)
    }

    /// Whether the ring has no room (as the producer sees it: a look that
    /// changes nothing, so that a call from elsewhere cannot hand `push` a
    /// count it did not read itself).
    pub(crate) fn is_full(&self) -> bool {
        let n = self.producer.count.load(Ordering::Relaxed);
        n.wrapping_sub(self.consumer.count.load(Ordering::Acquire)) >= self.slots.len()
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
