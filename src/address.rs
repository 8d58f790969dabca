//! Actor addresses: shard, slot and generation packed into one `u64`.

use std::fmt;

/// Bits of an address given to the shard index.
pub(crate) const SHARD_BITS: u32 = 8;
/// Bits of an address given to the slot index inside a shard.
pub(crate) const SLOT_BITS: u32 = 24;
/// The largest number of shards a runtime may have.
pub const MAX_SHARDS: usize = 1 << SHARD_BITS;
/// The largest number of actor slots one shard may have.
pub const MAX_SLOTS_PER_SHARD: usize = 1 << SLOT_BITS;

/// The address of an actor: the shard that owns it, its slot in that shard, and
/// the generation of the slot when the actor was spawned.
///
/// Addresses are plain `u64`s on the WebAssembly side (`wasmshard:actor/types.address`).
/// The generation (32 bits) is checked on every delivery, so an address kept after its
/// actor stopped never reaches a newer actor spawned into the same slot. A shard keeps
/// spare slots beyond `max_actors` (as many again, up to 4096), uses each of its slots
/// once before it reuses any, and then reuses the one free the longest; so even on a
/// full shard a freed slot waits behind the spare ones, and an address recurs only
/// after its slot's generation wraps: 2^32 spawns into that slot, at least
/// 2^32 × min(`max_actors`, 4096) spawns on the shard (with the default 4096, about
/// 1.8 × 10^13; months of spawning without pause).
///
/// [`Address::HOST`] (`0`) is the sender of messages sent by the embedding host; it is
/// never the address of an actor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(u64);

impl Address {
    /// The `from` address of messages sent by the embedding host. No actor has it.
    pub const HOST: Address = Address(0);

    pub(crate) fn new(shard: usize, slot: u32, generation: u32) -> Address {
        debug_assert!(shard < MAX_SHARDS);
        debug_assert!((slot as usize) < MAX_SLOTS_PER_SHARD);
        debug_assert!(generation != 0, "generation 0 is reserved");
        Address(((shard as u64) << 56) | ((slot as u64) << 32) | generation as u64)
    }

    /// The address as the `u64` a component sees.
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// An address from the `u64` a component passed. Any value is accepted; one that
    /// names no live actor makes sends fail with `unknown-target`.
    pub const fn from_bits(bits: u64) -> Address {
        Address(bits)
    }

    /// The index of the shard that owns the actor.
    pub const fn shard(self) -> usize {
        (self.0 >> 56) as usize
    }

    pub(crate) const fn slot(self) -> u32 {
        ((self.0 >> 32) as u32) & ((1 << SLOT_BITS) - 1)
    }

    pub(crate) const fn generation(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Address::HOST {
            return f.write_str("Address(host)");
        }
        write!(
            f,
            "Address({}:{}#{})",
            self.shard(),
            self.slot(),
            self.generation()
        )
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

/// Serialized as its [`Display`](fmt::Display) form, `0x` and 16 hex digits: the
/// notation the runtime's logs use.
impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks() {
        let a = Address::new(255, (1 << 24) - 1, u32::MAX);
        assert_eq!(a.shard(), 255);
        assert_eq!(a.slot(), (1 << 24) - 1);
        assert_eq!(a.generation(), u32::MAX);
        let b = Address::new(3, 7, 1);
        assert_eq!(Address::from_bits(b.to_bits()), b);
        assert_ne!(b, Address::HOST);
    }
}
