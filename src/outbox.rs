//! The send side of an actor: admission against the target's mailbox, then staging.
//!
//! Host functions and native actors both send through an [`Outbox`]. A send is
//! admitted at once (so a full mailbox is reported to the sender synchronously) and
//! the envelope is staged; the shard routes staged envelopes when the invocation
//! returns, so host functions never re-enter the shard.

use std::sync::Arc;

use crate::address::Address;
use crate::envelope::{Envelope, Payload};
use crate::error::SendError;
use crate::runtime::Shared;

pub(crate) struct Outbox {
    pub(crate) me: Address,
    pub(crate) shared: Arc<Shared>,
    pub(crate) staged: Vec<Envelope>,
    /// Messages sent successfully, as counted for the actor's stats.
    pub(crate) sent: u64,
}

impl Outbox {
    pub(crate) fn new(me: Address, shared: Arc<Shared>) -> Outbox {
        Outbox {
            me,
            shared,
            staged: Vec::with_capacity(16),
            sent: 0,
        }
    }

    /// Admits and stages a tell of `payload` to `to`.
    #[inline]
    pub(crate) fn send(&mut self, to: Address, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > self.shared.config.max_payload {
            return Err(SendError::TooLarge);
        }
        self.shared.admit(to)?;
        self.staged.push(Envelope::tell(to, self.me, payload));
        self.sent += 1;
        Ok(())
    }

    /// As [`Outbox::send`], for a payload already copied out of guest memory.
    #[inline]
    pub(crate) fn send_payload(&mut self, to: Address, payload: Payload) -> Result<(), SendError> {
        if payload.len() > self.shared.config.max_payload {
            return Err(SendError::TooLarge);
        }
        self.shared.admit(to)?;
        self.staged.push(Envelope {
            to,
            from: self.me,
            payload,
        });
        self.sent += 1;
        Ok(())
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Address> {
        self.shared.lookup(name)
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.shared.now_ns()
    }
}
