//! The per-shard slot table: which slots hold a live actor of which generation, and
//! how full each mailbox is. It is the only actor state other threads touch.
//!
//! Each slot is one `AtomicU64`: `generation << 32 | ALIVE | fill`. A sender reserves
//! room with a compare-and-swap that checks generation, liveness and capacity in one
//! step, so a stale address can never take room in a newer actor's mailbox. Only the
//! owning shard changes the generation on stop or releases room (after it handled
//! a message), and a spawn marks a free slot live under the name registry's lock
//! (on the host's thread or the shard's), so those are plain stores and
//! subtractions.
//!
//! Beside each word, on the same cache line, are the labels of the grant patterns
//! the slot's actor's name matches (see `grants.rs`): a sender's mask for the
//! operation must share a bit with them. They are written with the word when the
//! owner marks the slot live, and only under the name registry's lock after that.
//!
//! The word also holds the codecs the slot's actor accepts (a bit per codec,
//! [`Codec::bit`]; none set: any payload), written with the generation when the
//! owner marks the slot live, so the admission check reads them from the word it
//! loads for the compare-and-swap: no other load, and a refused payload takes no
//! room.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_queue::SegQueue;

use wasmshard_codec::Codec;

use crate::error::SendError;
use crate::grants::EVERYONE;

const ALIVE: u64 = 1 << 31;
/// Where the accepted codecs' four bits start.
const ACCEPTS_SHIFT: u32 = 26;
/// The mailbox's fill: the low 26 bits (so `mailbox_capacity` < 2^26).
const FILL: u64 = (1 << ACCEPTS_SHIFT) - 1;

/// Why no actor took a message (the address names no live actor) for a sender
/// whose grant is `mask`, the slot's labels being `labels` (those of the last
/// actor it held; 0 if none): `unknown-target`, unless the sender may not reach
/// what the slot held, when it is `denied`, as for a live actor. So a sender
/// without the `*` grant cannot tell a live actor it may not reach from a dead
/// address or a forged one; the sender granted `*` (and the host, and native
/// actors) learns `unknown-target`, as does anyone for generation 0, which no
/// actor ever has (the host's address is one).
#[cold]
pub(crate) fn no_actor(mask: u64, labels: u64, generation: u32) -> SendError {
    if generation != 0 && mask & EVERYONE == 0 && labels & mask == 0 {
        SendError::Denied
    } else {
        SendError::UnknownTarget
    }
}

pub(crate) struct SlotTable {
    words: Zeroed<Slot>,
    /// `parents[slot]`: the address (bits) of the actor that spawned the
    /// slot's actor, 0 if the host did. Read only when a grant check fails (an
    /// actor may always reach its own children). Written before the word makes
    /// the slot live.
    parents: Zeroed<AtomicU64>,
}

/// Which slots of a shard are free: shared by the shard (stops, failures), its
/// actors (spawns from a guest, which take a slot during the call) and the host
/// (spawns, which take a slot on the caller's thread). Lock-free: a count of
/// slots taken bounds them by `max`, slots never used are handed out by a
/// counter, freed ones wait in a FIFO queue. Every slot is used once before any
/// is reused, then the one free the longest first.
#[derive(Debug)]
pub(crate) struct SlotPool {
    free: SegQueue<u32>,
    /// Slots handed out at least once (the next never used is `used`).
    used: AtomicU32,
    /// Slots in the table.
    capacity: u32,
    /// Slots taken now (live actors and spawns under way) in every shard's
    /// pool: one count the pools share.
    live: Arc<AtomicU32>,
    /// Most slots taken at once, in all the pools together (`max_actors`).
    max: u32,
}

impl SlotPool {
    /// A pool of `capacity` slots, counting what it hands out in `live`,
    /// which the pools of the other shards share, up to `max` in all (at most
    /// `capacity`, so that a pool never runs dry while `live` is below it).
    pub(crate) fn new(capacity: u32, max: u32, live: Arc<AtomicU32>) -> SlotPool {
        SlotPool {
            free: SegQueue::new(),
            used: AtomicU32::new(0),
            capacity,
            live,
            max,
        }
    }

    /// A free slot, or `None` if `max` are taken in all the pools.
    pub(crate) fn take(&self) -> Option<u32> {
        // A unit of `live` first: whoever holds one is owed a slot, since
        // `give_back` queues a slot before it hands its unit back.
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.max).then_some(live + 1)
            })
            .ok()?;
        let fresh = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.capacity).then_some(used + 1)
            });
        match fresh {
            Ok(slot) => Some(slot),
            // Fewer than `max` taken in all the pools, so fewer here: the
            // spare slots, at least, are free.
            Err(_) => self.free.pop().or_else(|| {
                // Unreachable while the invariant above holds; refuse rather
                // than hand out a slot twice.
                self.live.fetch_sub(1, Ordering::AcqRel);
                None
            }),
        }
    }

    /// Gives `slot` back (at the back of the line).
    pub(crate) fn give_back(&self, slot: u32) {
        self.free.push(slot);
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// The most slots taken at once.
    pub(crate) fn max(&self) -> u32 {
        self.max
    }
}

/// One slot: its word and its labels, on a cache line of its own. A sender
/// on another core writes the word of the actor it sends to with every
/// admission, and the owner writes its own actors' words with every release
/// and every message one sends itself: two slots in one line (a producer and
/// the sink of another shard's producer, spawned one after the other, say)
/// would take the line from each other's core with each of those writes.
/// (So a shard's table is 64 bytes per slot; a page of it is resident once
/// a slot in it is used: see [`Zeroed`].)
#[repr(C, align(64))]
struct Slot {
    word: AtomicU64,
    labels: AtomicU64,
}

/// Values that are valid as all-zero bytes and need no drop.
///
/// # Safety
///
/// A `T` of zero bytes is a valid value, and dropping it does nothing.
unsafe trait Zeroable {}
// SAFETY: an atomic of zero bytes is 0, and has no drop.
unsafe impl Zeroable for AtomicU64 {}
// SAFETY: two such atomics (and padding).
unsafe impl Zeroable for Slot {}

/// `len` zeroed values in memory the allocator hands out zeroed, so that
/// the pages of a large table become resident as they are touched, not
/// when it is built (a runtime for a million actors a shard would otherwise
/// write 64 MiB a shard at build). Asked for more than its smallest
/// alignment (16 bytes), the system allocator zeroes every byte itself;
/// asked for 16, it uses `calloc`, whose large blocks are fresh pages the
/// kernel maps on first touch. So the block is allocated at 16 with one
/// alignment's room more, and the values start at the first multiple of
/// their alignment in it.
struct Zeroed<T: Zeroable> {
    block: NonNull<u8>,
    layout: Layout,
    values: NonNull<T>,
    len: usize,
}

// SAFETY: it owns its values as a `Box<[T]>` would.
unsafe impl<T: Zeroable + Send> Send for Zeroed<T> {}
// SAFETY: as above; shared, it hands out only `&[T]`.
unsafe impl<T: Zeroable + Sync> Sync for Zeroed<T> {}

impl<T: Zeroable> Zeroed<T> {
    fn new(len: usize) -> Zeroed<T> {
        let align = std::mem::align_of::<T>();
        let layout = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|size| size.checked_add(align))
            .and_then(|size| Layout::from_size_align(size, 16).ok())
            .expect("a slot table within MAX_SLOT_WORDS");
        // SAFETY: the size is at least `align`, not zero.
        let block = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(block) = NonNull::new(block) else {
            std::alloc::handle_alloc_error(layout)
        };
        let addr = block.as_ptr() as usize;
        let offset = addr.next_multiple_of(align) - addr;
        // SAFETY: `offset < align`, and the block has `align` bytes beyond
        // the values' size: the values lie within it.
        let values = unsafe { block.add(offset) }.cast::<T>();
        Zeroed {
            block,
            layout,
            values,
            len,
        }
    }
}

impl<T: Zeroable> std::ops::Deref for Zeroed<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `len` values, aligned (`new`), in a block this owns and
        // the allocator zeroed, which is a valid `T` each (`Zeroable`); they
        // are only ever changed through their atomics.
        unsafe { std::slice::from_raw_parts(self.values.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Drop for Zeroed<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the values need no
        // drop (`Zeroable`).
        unsafe { std::alloc::dealloc(self.block.as_ptr(), self.layout) }
    }
}

/// The slot word's bits for an actor that accepts `codecs` (none: any payload).
pub(crate) fn accepts_bits(codecs: &[Codec]) -> u8 {
    codecs.iter().fold(0, |bits, c| bits | c.bit())
}

impl SlotTable {
    pub(crate) fn new(slots: u32) -> SlotTable {
        SlotTable {
            words: Zeroed::new(slots as usize),
            parents: Zeroed::new(slots as usize),
        }
    }

    /// Records who spawns the actor about to go live in `slot` (the host:
    /// [`Address::HOST`](crate::address::Address::HOST)). Before the word makes it live.
    pub(crate) fn set_parent(&self, slot: u32, parent: crate::address::Address) {
        if let Some(p) = self.parents.get(slot as usize) {
            p.store(parent.to_bits(), Ordering::Relaxed);
        }
    }

    /// Whether `parent` spawned the actor (live or not) last in `slot`.
    #[cold]
    pub(crate) fn is_parent(&self, slot: u32, parent: crate::address::Address) -> bool {
        parent != crate::address::Address::HOST
            && self
                .parents
                .get(slot as usize)
                .is_some_and(|p| p.load(Ordering::Relaxed) == parent.to_bits())
    }

    /// The labels of the actor (live or not) last in `slot` (0: none ever).
    pub(crate) fn last_labels(&self, slot: u32) -> u64 {
        self.words
            .get(slot as usize)
            .map_or(0, |s| s.labels.load(Ordering::Relaxed))
    }

    /// Reserves one message of room in the mailbox of `slot`, if it holds a live
    /// actor of `generation` whose mailbox has fewer than `capacity` messages,
    /// which carries a label of `mask` (the sender's grant) and which accepts
    /// `payload`'s codec (an actor that declared none accepts any).
    #[inline]
    pub(crate) fn admit(
        &self,
        slot: u32,
        generation: u32,
        capacity: u32,
        payload: &[u8],
        mask: u64,
    ) -> Result<(), SendError> {
        let Some(Slot { word, labels }) = self.words.get(slot as usize) else {
            return Err(no_actor(mask, 0, generation));
        };
        let live = |cur: u64| (cur >> 32) as u32 == generation && cur & ALIVE != 0;
        let mut cur = word.load(Ordering::Acquire);
        if !live(cur) {
            return Err(no_actor(mask, labels.load(Ordering::Relaxed), generation));
        }
        // Written before the word made the slot live (the Acquire above sees
        // them), or later under the name registry's lock.
        if labels.load(Ordering::Relaxed) & mask == 0 {
            return Err(SendError::Denied);
        }
        // Fixed for the generation: checked once, from the word already loaded.
        let accepts = (cur >> ACCEPTS_SHIFT) & 0xf;
        if accepts != 0 && accepts & u64::from(Codec::bit_of(payload)) == 0 {
            return Err(SendError::UnsupportedCodec);
        }
        loop {
            if cur & FILL >= capacity as u64 {
                return Err(SendError::MailboxFull);
            }
            match word.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) if live(now) => cur = now,
                Err(_) => return Err(SendError::UnknownTarget),
            }
        }
    }

    /// Gives back `n` messages of room after the owner handled them.
    /// Owner only, while the actor is alive.
    #[inline]
    pub(crate) fn release(&self, slot: u32, n: u32) {
        let prev = self.words[slot as usize]
            .word
            .fetch_sub(n as u64, Ordering::AcqRel);
        debug_assert!(
            prev & FILL >= n as u64,
            "released more room than was reserved"
        );
        debug_assert!(prev & ALIVE != 0);
    }

    /// Marks `slot` live with an empty mailbox, for an actor that accepts the
    /// codecs in `accepts` (0: any payload) and carries `labels`, and returns its
    /// generation. Owner only, on a free slot, under the name registry's lock.
    pub(crate) fn activate(&self, slot: u32, accepts: u8, labels: u64) -> u32 {
        let Slot { word, labels: l } = &self.words[slot as usize];
        l.store(labels, Ordering::Relaxed);
        let cur = word.load(Ordering::Acquire);
        debug_assert!(cur & ALIVE == 0, "activating a live slot");
        let generation = ((cur >> 32) as u32).max(1);
        let accepts = u64::from(accepts & 0xf) << ACCEPTS_SHIFT;
        word.store(
            ((generation as u64) << 32) | ALIVE | accepts,
            Ordering::Release,
        );
        generation
    }

    /// Marks `slot` dead and moves it to the next generation, so every address of
    /// the old actor fails from now on. Owner only.
    pub(crate) fn deactivate(&self, slot: u32) {
        let word = &self.words[slot as usize].word;
        let cur = word.load(Ordering::Acquire);
        let mut next = ((cur >> 32) as u32).wrapping_add(1);
        if next == 0 {
            next = 1;
        }
        // A swap, not a store: racing senders' CAS then fail and see the new word.
        word.swap((next as u64) << 32, Ordering::AcqRel);
    }
}

impl SlotTable {
    /// The labels of the live actor of `generation` in `slot`.
    pub(crate) fn labels(&self, slot: u32, generation: u32) -> Option<u64> {
        let Slot { word, labels } = self.words.get(slot as usize)?;
        let cur = word.load(Ordering::Acquire);
        ((cur >> 32) as u32 == generation && cur & ALIVE != 0)
            .then(|| labels.load(Ordering::Relaxed))
    }

    /// Takes label `bit` away from every slot, live or not (a label about to
    /// stand for a new pattern: what the slots carried of its old one must not
    /// count). Under the name registry's lock.
    pub(crate) fn clear_label(&self, bit: u64) {
        for Slot { labels, .. } in self.words.iter() {
            // A look first: a write to every slot's line would take each one
            // from the core that holds it.
            if labels.load(Ordering::Relaxed) & bit != 0 {
                labels.fetch_and(!bit, Ordering::Release);
            }
        }
    }

    /// Adds label `bit` to the live actor of `generation` in `slot`. Under the
    /// name registry's lock.
    pub(crate) fn mark(&self, slot: u32, generation: u32, bit: u64) {
        let Some(Slot { word, labels }) = self.words.get(slot as usize) else {
            return;
        };
        let cur = word.load(Ordering::Acquire);
        if (cur >> 32) as u32 == generation && cur & ALIVE != 0 {
            labels.fetch_or(bit, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_checks_generation_and_capacity() {
        let t = SlotTable::new(4);
        assert_eq!(t.admit(0, 1, 2, b"", 1), Err(SendError::UnknownTarget));
        let g = t.activate(0, 0, 1);
        assert_eq!(g, 1);
        assert_eq!(t.admit(0, g, 2, b"", 1), Ok(()));
        assert_eq!(t.admit(0, g, 2, b"", 1), Ok(()));
        assert_eq!(t.admit(0, g, 2, b"", 1), Err(SendError::MailboxFull));
        t.release(0, 1);
        assert_eq!(t.admit(0, g, 2, b"", 1), Ok(()));
        t.deactivate(0);
        assert_eq!(t.admit(0, g, 2, b"", 1), Err(SendError::UnknownTarget));
        let g2 = t.activate(0, 0, 1);
        assert_ne!(g, g2);
        assert_eq!(t.admit(0, g, 2, b"", 1), Err(SendError::UnknownTarget));
        assert_eq!(t.admit(0, g2, 2, b"", 1), Ok(()));
        assert_eq!(t.admit(9, g2, 2, b"", 1), Err(SendError::UnknownTarget));
    }

    #[test]
    fn admission_checks_the_codec_and_a_refusal_takes_no_room() {
        let t = SlotTable::new(2);
        let g = t.activate(0, Codec::Cbor.bit() | Codec::Json.bit(), 1);
        assert_eq!(t.admit(0, g, 1, b"\x51\x01", 1), Ok(()));
        t.release(0, 1);
        assert_eq!(t.admit(0, g, 1, b"\x80\x04{}", 1), Ok(()));
        t.release(0, 1);
        for refused in [&b""[..], b"\x55raw", b"\x81\x04", b"plain"] {
            assert_eq!(
                t.admit(0, g, 1, refused, 1),
                Err(SendError::UnsupportedCodec)
            );
        }
        // The refusals took no room.
        assert_eq!(t.admit(0, g, 1, b"\x51", 1), Ok(()));
        assert_eq!(t.admit(0, g, 1, b"\x51", 1), Err(SendError::MailboxFull));
        // An actor that declared nothing takes anything.
        let g1 = t.activate(1, 0, 1);
        assert_eq!(t.admit(1, g1, 4, b"plain", 1), Ok(()));
        assert_eq!(t.admit(1, g1, 4, b"", 1), Ok(()));
    }

    #[test]
    fn admission_checks_the_labels_and_a_denial_takes_no_room() {
        let t = SlotTable::new(1);
        let g = t.activate(0, 0, 0b101);
        assert_eq!(t.admit(0, g, 1, b"", 0b010), Err(SendError::Denied));
        assert_eq!(t.admit(0, g, 1, b"", 0b100), Ok(()));
        t.release(0, 1);
        t.mark(0, g, 0b010);
        assert_eq!(t.labels(0, g), Some(0b111));
        assert_eq!(t.admit(0, g, 1, b"", 0b010), Ok(()));
        assert_eq!(t.admit(0, g, 1, b"", 0b010), Err(SendError::MailboxFull));
        t.clear_label(0b100);
        assert_eq!(t.labels(0, g), Some(0b011));
        // A stale generation is neither marked nor read.
        t.deactivate(0);
        t.mark(0, g, 0b1000);
        assert_eq!(t.labels(0, g), None);
        let g2 = t.activate(0, 0, 1);
        assert_eq!(t.labels(0, g2), Some(1));
    }

    #[test]
    fn a_sender_without_the_star_grant_learns_nothing_of_dead_addresses() {
        let t = SlotTable::new(2);
        let g = t.activate(0, 0, EVERYONE | 0b100);
        t.deactivate(0);
        // Granted the name the dead actor had: it learns it is gone.
        assert_eq!(t.admit(0, g, 1, b"", 0b100), Err(SendError::UnknownTarget));
        // Not granted it, a slot never used, a slot out of range: denied, as a
        // live actor it may not reach would be.
        assert_eq!(t.admit(0, g, 1, b"", 0b010), Err(SendError::Denied));
        assert_eq!(t.admit(1, 1, 1, b"", 0b010), Err(SendError::Denied));
        assert_eq!(t.admit(9, 1, 1, b"", 0b010), Err(SendError::Denied));
        // Generation 0 (the host's address) is no actor's, for anyone.
        assert_eq!(t.admit(0, 0, 1, b"", 0b010), Err(SendError::UnknownTarget));
        // The `*` grant, and the trusted, learn unknown-target.
        for mask in [EVERYONE, u64::MAX] {
            assert_eq!(t.admit(1, 1, 1, b"", mask), Err(SendError::UnknownTarget));
            assert_eq!(t.admit(9, 1, 1, b"", mask), Err(SendError::UnknownTarget));
        }
    }
}
