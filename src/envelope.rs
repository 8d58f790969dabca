//! The unit moved through mailboxes and rings.

use smallvec::SmallVec;

use crate::address::Address;

/// Payload bytes; up to 64 bytes live inline, with no heap allocation.
pub(crate) type Payload = SmallVec<[u8; 64]>;

/// `{to, from, payload}`: what a send produces and a handler consumes. Every
/// envelope is a tell and holds one unit of its target's mailbox.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) to: Address,
    pub(crate) from: Address,
    pub(crate) payload: Payload,
}

impl Envelope {
    pub(crate) fn tell(to: Address, from: Address, payload: &[u8]) -> Envelope {
        Envelope {
            to,
            from,
            payload: Payload::from_slice(payload),
        }
    }
}
