//! The unit moved through mailboxes and rings.

use smallvec::SmallVec;

use crate::address::Address;
use crate::error::RequestError;
use crate::trace::Trace;

/// Payload bytes; up to 64 bytes live inline, with no heap allocation.
pub(crate) type Payload = SmallVec<[u8; 64]>;

/// What an envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A fire-and-forget message; it holds one unit of the target's mailbox.
    Tell,
    /// A request with its id and its deadline (see [`deadline_ms`]: the
    /// responder's shard sheds it unstarted once that has passed, and the
    /// requests its handler makes are capped at it; 32 bits keep the envelope
    /// its size); it holds one unit of the target's mailbox.
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
    /// Request `id`, to this target, ended by its timeout or a cancel: the
    /// requests its target made on its behalf end too.
    Revoke(u64),
    /// A timer that fired: handled as a message (from the actor itself, or
    /// the host). Always admitted: bounded by the actor's cap on pending
    /// timers.
    Timer,
}

/// The farthest a carried deadline reaches past the clock reading it is made
/// from: 2^31 − 2 ms (24.8 days; rounding up adds at most one); a longer
/// timeout is carried as this (the requester's own timeout stays exact).
pub(crate) const MAX_CARRIED_NS: u64 = (i32::MAX as u64 - 1) * 1_000_000;

/// A request's deadline as its envelope carries it: `now_ns + timeout_ns` of
/// the runtime's clock in milliseconds, rounded up, modulo 2^32 (so it never
/// runs out, however long the runtime runs); compared with [`remaining_ns`]
/// within 24.8 days either side of the clock.
#[inline]
pub(crate) fn deadline_ms(now_ns: u64, timeout_ns: u64) -> u32 {
    now_ns
        .saturating_add(timeout_ns.min(MAX_CARRIED_NS))
        .div_ceil(1_000_000) as u32
}

/// Nanoseconds from `now_ns` to the carried deadline `deadline` (0 once it
/// has come).
#[inline]
pub(crate) fn remaining_ns(deadline: u32, now_ns: u64) -> u64 {
    let now_ms = (now_ns / 1_000_000) as u32;
    let ahead_ms = deadline.wrapping_sub(now_ms) as i32;
    if ahead_ms <= 0 {
        return 0;
    }
    (ahead_ms as u64 * 1_000_000).saturating_sub(now_ns % 1_000_000)
}

impl Kind {
    /// Whether the envelope holds room in its target's mailbox.
    #[inline]
    pub(crate) fn counted(self) -> bool {
        matches!(self, Kind::Tell | Kind::Request(..))
    }
}

/// `{to, from, kind, payload}`: what a send produces and a handler consumes.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) to: Address,
    pub(crate) from: Address,
    pub(crate) kind: Kind,
    pub(crate) payload: Payload,
    /// Its trace context, if it is traced (`None`: unsampled, and one
    /// pointer's width).
    pub(crate) trace: Option<Box<Trace>>,
}

impl Envelope {
    pub(crate) fn tell(to: Address, from: Address, payload: &[u8]) -> Envelope {
        Envelope {
            trace: None,
            to,
            from,
            kind: Kind::Tell,
            payload: Payload::from_slice(payload),
        }
    }

    /// The failure notice ending this request (`id`) for its sender, from
    /// `from` (the target): in the request's trace, if it is traced (its
    /// requester's span the parent), unless the host made it.
    pub(crate) fn failed(&self, from: Address, id: u64, error: RequestError) -> Envelope {
        let mut notice = Envelope::failure(self.from, from, id, error);
        if self.from != Address::HOST {
            notice.trace = self.trace.as_deref().map(Trace::sibling);
        }
        notice
    }

    /// A failure notice ending request `id`, from `from` (the target) to `to`.
    pub(crate) fn failure(to: Address, from: Address, id: u64, error: RequestError) -> Envelope {
        Envelope {
            trace: None,
            to,
            from,
            kind: Kind::Response(id, Err(error)),
            payload: Payload::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carried_deadlines_wrap_and_never_come_early() {
        for now in [
            0u64,
            999_999,
            5_000_000_123,
            (u32::MAX as u64) * 1_000_000 - 7,
        ] {
            for timeout in [0u64, 1, 999_999, 1_000_000, 20_000_000, MAX_CARRIED_NS] {
                let d = deadline_ms(now, timeout);
                let left = remaining_ns(d, now);
                assert!(left >= timeout, "now {now} timeout {timeout}: {left}");
                assert!(left < timeout + 1_000_000, "rounded up by under 1 ms");
                assert_eq!(remaining_ns(d, now + left), 0, "come at its time");
            }
        }
        // Longer than 24.8 days is carried as that.
        assert_eq!(remaining_ns(deadline_ms(0, u64::MAX), 0), MAX_CARRIED_NS);
        // Past, even 20 days past: 0.
        let d = deadline_ms(0, 1_000_000);
        assert_eq!(remaining_ns(d, 20 * 24 * 3600 * 1_000_000_000), 0);
    }

    /// The docs give a ring's memory as capacity × 128 bytes: an envelope and the
    /// queue's stamp (120 bytes) in a slot of two cache lines. A change of the
    /// envelope's size must change them too.
    #[test]
    fn an_envelope_and_its_stamp_are_120_bytes() {
        assert_eq!(std::mem::size_of::<super::Envelope>() + 8, 120);
    }
}
