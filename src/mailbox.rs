//! An actor's mailbox: the envelopes delivered to it and not yet handled, in
//! arrival order. Owned by the actor's shard; never touched by another thread.
//!
//! Its bound is not kept here: senders reserve room in the actor's slot word
//! (`slots.rs`) before an envelope is staged, so a mailbox never holds more counted
//! envelopes than its capacity. Responses are not counted (they are bounded by the
//! requests the actor has open).

use std::collections::VecDeque;

use crate::envelope::Envelope;

/// The envelopes waiting for one actor.
#[derive(Default)]
pub(crate) struct Mailbox(VecDeque<Envelope>);

impl Mailbox {
    #[inline]
    pub(crate) fn push(&mut self, env: Envelope) {
        self.0.push_back(env);
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Envelope> {
        self.0.pop_front()
    }

    /// The next envelope, left in place.
    #[inline]
    pub(crate) fn front(&self) -> Option<&Envelope> {
        self.0.front()
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The envelopes, oldest first, left in place.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Envelope> + '_ {
        self.0.iter()
    }

    /// Drops the responses waiting here (what an instance asked, which the
    /// instance replacing it did not); returns how many.
    pub(crate) fn drop_responses(&mut self) -> u64 {
        let before = self.0.len();
        self.0
            .retain(|e| !matches!(e.kind, crate::envelope::Kind::Response(..)));
        (before - self.0.len()) as u64
    }

    /// Takes every envelope out, oldest first.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Envelope> + '_ {
        self.0.drain(..)
    }
}
