//! The bridge's counters: every message that crosses it, or does not, counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::wire::Reason;

/// How many reasons there are (the index of a reason in [`Refusals`]).
const REASONS: usize = Reason::ALL.len();

fn index(reason: Reason) -> usize {
    match reason {
        Reason::MailboxFull => 0,
        Reason::UnknownTarget => 1,
        Reason::Denied => 2,
        Reason::TooLarge => 3,
        Reason::Overloaded => 4,
        Reason::ShuttingDown => 5,
        Reason::Refused => 6,
        Reason::Timeout => 7,
        Reason::TargetFailed => 8,
        Reason::TargetStopped => 9,
        Reason::Malformed => 10,
        Reason::Lost => 11,
        Reason::Disconnected => 12,
        Reason::Closed => 13,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_reason_has_its_own_index() {
        for (i, reason) in super::Reason::ALL.into_iter().enumerate() {
            assert_eq!(super::index(reason), i);
        }
    }
}

/// Counts by [`Reason`] (serialized as a map from each reason's name to its
/// count, those counted only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals([u64; REASONS]);

impl serde::Serialize for Refusals {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for reason in Reason::ALL {
            let n = self.get(reason);
            if n > 0 {
                map.serialize_entry(reason.name(), &n)?;
            }
        }
        map.end()
    }
}

impl Refusals {
    /// How many had `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[index(reason)]
    }

    /// How many in all.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// A snapshot of a bridge's counters ([`Bridge::stats`](crate::Bridge::stats)).
///
/// Every tell a proxy takes is published (`tells_out`) or a dead letter of
/// the bridge (`dead_letters`); every request a proxy takes ends for its
/// requester with the remote reply or error (`replies_in`), or with an error
/// here (`requests_failed`), or by its own timeout. Every message that arrives from NATS for an
/// exported actor is delivered (`tells_in`, `requests_in`) or refused
/// (`refused_here`, reported to its sender where it gave a subject to report
/// to).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Whether the bridge is connected to its server now.
    pub connected: bool,
    /// Tells published for local senders.
    pub tells_out: u64,
    /// Requests published for local requesters.
    pub requests_out: u64,
    /// Replies (and remote errors) handed to the local request they answer
    /// (one whose requester has stopped waiting by then drops it).
    pub replies_in: u64,
    /// Tells from NATS admitted at a local actor's mailbox.
    pub tells_in: u64,
    /// Requests from NATS admitted at a local actor.
    pub requests_in: u64,
    /// Replies published for remote requesters.
    pub replies_out: u64,
    /// What remote bridges refused of this bridge's tells and requests, or how
    /// its requests ended in error there, by reason.
    pub refused_remote: Refusals,
    /// What this bridge refused of messages from NATS, by reason, and what
    /// it found lost on the way ([`Reason::Lost`]).
    pub refused_here: Refusals,
    /// Tells from local senders, and replies to remote requesters, that could
    /// not be published.
    pub dead_letters: u64,
    /// The same, by reason: `disconnected` (the client was), `closed` (the
    /// bridge was), `overloaded` (the bridge held all it may, or the node's
    /// window did), `refused` (the client refused the publish).
    pub dead_letter_reasons: Refusals,
    /// Requests from local requesters ended here with an error: not published
    /// (disconnected, closed), in flight when the connection was lost, or
    /// sent to a node with no bridge listening, or beyond what its proxy may
    /// hold (the runtime's `max_open_requests` per actor) or the bridge keeps
    /// waiting for replies ([`BridgeOptions::max_waiting_requests`](crate::BridgeOptions::max_waiting_requests)).
    pub requests_failed: u64,
    /// Replies that came for no request the bridge still waits for (it
    /// waits until a second past a request's deadline).
    pub late_replies: u64,
    /// Times the connection was lost.
    pub disconnects: u64,
    /// Times it came back.
    pub reconnects: u64,
    /// Messages from NATS the client dropped because this bridge did not take
    /// them in time (it reports each, though under a flood its reports may
    /// be dropped too: a lower bound). Expected 0: the bridge takes what
    /// arrives without waiting, and the client queues 131 072 per
    /// subscription.
    pub slow_consumer: u64,
    /// Messages from NATS that waited at a full mailbox for room (each once,
    /// however long it waited): a local consumer slower than its senders.
    pub stalls: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicBool,
    pub(crate) tells_out: AtomicU64,
    pub(crate) requests_out: AtomicU64,
    pub(crate) replies_in: AtomicU64,
    pub(crate) tells_in: AtomicU64,
    pub(crate) requests_in: AtomicU64,
    pub(crate) replies_out: AtomicU64,
    refused_remote: [AtomicU64; REASONS],
    refused_here: [AtomicU64; REASONS],
    pub(crate) dead_letters: AtomicU64,
    dead_letter_reasons: [AtomicU64; REASONS],
    pub(crate) requests_failed: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) slow_consumer: AtomicU64,
    pub(crate) stalls: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn refused_remote(&self, reason: Reason, n: u64) {
        self.refused_remote[index(reason)].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn refused_here(&self, reason: Reason) {
        self.lost_here(reason, 1);
    }

    /// A tell or reply not published, for `reason`.
    pub(crate) fn dead_letter(&self, reason: Reason) {
        bump(&self.dead_letters);
        bump(&self.dead_letter_reasons[index(reason)]);
    }

    pub(crate) fn lost_here(&self, reason: Reason, n: u64) {
        self.refused_here[index(reason)].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BridgeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let all = |cs: &[AtomicU64; REASONS]| Refusals(std::array::from_fn(|i| get(&cs[i])));
        BridgeStats {
            connected: self.connected.load(Ordering::Relaxed),
            tells_out: get(&self.tells_out),
            requests_out: get(&self.requests_out),
            replies_in: get(&self.replies_in),
            tells_in: get(&self.tells_in),
            requests_in: get(&self.requests_in),
            replies_out: get(&self.replies_out),
            refused_remote: all(&self.refused_remote),
            refused_here: all(&self.refused_here),
            dead_letters: get(&self.dead_letters),
            dead_letter_reasons: all(&self.dead_letter_reasons),
            requests_failed: get(&self.requests_failed),
            late_replies: get(&self.late_replies),
            disconnects: get(&self.disconnects),
            reconnects: get(&self.reconnects),
            slow_consumer: get(&self.slow_consumer),
            stalls: get(&self.stalls),
        }
    }
}
