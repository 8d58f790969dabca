//! The unit moved through mailboxes and rings.

use smallvec::SmallVec;

use crate::address::Address;

/// Payload bytes; up to 64 bytes live inline, with no heap allocation.
pub(crate) type Payload = SmallVec<[u8; 64]>;

/// What an envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A fire-and-forget message; it holds one unit of the target's mailbox.
    Tell,
}

/// `{to, from, kind, payload}`: what a send produces and a handler consumes.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) to: Address,
    pub(crate) from: Address,
    pub(crate) kind: Kind,
    pub(crate) payload: Payload,
}

impl Envelope {
    pub(crate) fn tell(to: Address, from: Address, payload: &[u8]) -> Envelope {
        Envelope { to, from, kind: Kind::Tell, payload: Payload::from_slice(payload) }
    }
}
