//! The unit moved through mailboxes and rings.

use smallvec::SmallVec;

use crate::address::Address;
use crate::error::RequestError;

/// Payload bytes; up to 64 bytes live inline, with no heap allocation.
pub(crate) type Payload = SmallVec<[u8; 64]>;

/// What an envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A fire-and-forget message; it holds one unit of the target's mailbox.
    Tell,
    /// A request with its id and its requester's timeout in milliseconds, rounded
    /// up and saturating (which tells the responder how long an answer is worth
    /// keeping; 32 bits keep the envelope its size); it holds one unit of the
    /// target's mailbox.
    Request(u64, u32),
    /// The end of request `id`: the reply (its bytes are the payload) or why it
    /// failed. Always admitted: bounded by the requester's open requests.
    Response(u64, Result<(), RequestError>),
    /// Control envelopes from an actor (`stop`, `monitor`): never in a
    /// mailbox, they hold no room, and go to the target's shard like a
    /// message, so they keep their place after what the same sender sent
    /// before. Stop the target:
    Stop,
    /// Monitor `id` of the sender watches the target: end it when the target
    /// is gone for good.
    Monitor(u64),
    /// Monitor `id` of the sender ended on its side (cancelled, or the
    /// watcher went): the target forgets it.
    Demonitor(u64),
    /// A timer that fired: handled as a message (from the actor itself, or
    /// the host). Always admitted: bounded by the actor's cap on pending
    /// timers.
    Timer,
}

/// A timeout in nanoseconds as a request envelope carries it: milliseconds,
/// rounded up, saturating at `u32::MAX` (49 days).
#[inline]
pub(crate) fn timeout_ms(timeout_ns: u64) -> u32 {
    u32::try_from(timeout_ns.div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

impl Kind {
    /// Whether the envelope holds room in its target's mailbox.
    pub(crate) fn counted(self) -> bool {
        !matches!(
            self,
            Kind::Response(..) | Kind::Stop | Kind::Monitor(_) | Kind::Demonitor(_) | Kind::Timer
        )
    }
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
        Envelope {
            to,
            from,
            kind: Kind::Tell,
            payload: Payload::from_slice(payload),
        }
    }

    /// A failure notice ending request `id`, from `from` (the target) to `to`.
    pub(crate) fn failure(to: Address, from: Address, id: u64, error: RequestError) -> Envelope {
        Envelope {
            to,
            from,
            kind: Kind::Response(id, Err(error)),
            payload: Payload::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The docs give a ring's memory as capacity × 112 bytes: an envelope and the
    /// queue's stamp. A change of the envelope's size must change them too.
    #[test]
    fn a_ring_slot_is_112_bytes() {
        assert_eq!(std::mem::size_of::<super::Envelope>() + 8, 112);
    }
}
