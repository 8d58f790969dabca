//! The send side of an actor: admission against the target's mailbox, then staging.
//!
//! Host functions and native actors both send through an [`Outbox`]. A send is
//! admitted at once (so a full mailbox is reported to the sender synchronously) and
//! the envelope is staged; the shard routes staged envelopes when the invocation
//! returns, so host functions never re-enter the shard.

use std::sync::Arc;

use ahash::AHashMap;

use crate::address::Address;
use crate::envelope::{Envelope, Kind, Payload};
use crate::error::SendError;
use crate::requests::{Requests, Waiter};
use crate::runtime::Shared;

pub(crate) struct Outbox {
    pub(crate) me: Address,
    pub(crate) shared: Arc<Shared>,
    pub(crate) staged: Vec<Envelope>,
    /// Messages and requests sent successfully, as counted for the actor's stats.
    pub(crate) sent: u64,
    /// The shard's request table, lent for the length of an invocation.
    pub(crate) requests: Option<Box<Requests>>,
    /// Requests this actor made that have not ended.
    pub(crate) open_requests: u32,
    /// The request being handled now, while it is unanswered: (id, requester).
    /// Kept apart from `answerable` so a request answered during its own
    /// invocation (the usual case) never touches the map.
    pub(crate) current: Option<(u64, Address)>,
    /// Requests this actor deferred and may still answer: id → requester.
    pub(crate) answerable: AHashMap<u64, Address>,
}

impl Outbox {
    pub(crate) fn new(me: Address, shared: Arc<Shared>) -> Outbox {
        Outbox {
            me,
            shared,
            staged: Vec::with_capacity(16),
            sent: 0,
            requests: None,
            open_requests: 0,
            current: None,
            answerable: AHashMap::new(),
        }
    }

    /// Admits and stages a tell of `payload` to `to`.
    #[inline]
    pub(crate) fn send(&mut self, to: Address, payload: Payload) -> Result<(), SendError> {
        if payload.len() > self.shared.config.max_payload {
            return Err(SendError::TooLarge);
        }
        self.shared.admit(to)?;
        self.staged.push(Envelope {
            to,
            from: self.me,
            kind: Kind::Tell,
            payload,
        });
        self.sent += 1;
        Ok(())
    }

    /// Admits and stages a request; returns its id.
    pub(crate) fn request(
        &mut self,
        to: Address,
        payload: Payload,
        timeout_ns: u64,
    ) -> Result<u64, SendError> {
        if self.open_requests >= self.shared.config.max_open_requests {
            return Err(SendError::TooManyRequests);
        }
        if payload.len() > self.shared.config.max_payload {
            return Err(SendError::TooLarge);
        }
        self.shared.admit(to)?;
        let requests = self
            .requests
            .as_mut()
            .expect("the request table is lent during invocations");
        let id = requests.open(Waiter::Actor(self.me), to, timeout_ns);
        self.open_requests += 1;
        self.staged.push(Envelope {
            to,
            from: self.me,
            kind: Kind::Request(id),
            payload,
        });
        self.sent += 1;
        Ok(id)
    }

    /// Stages the reply to request `id`, which this actor received and has not
    /// answered yet.
    pub(crate) fn respond(&mut self, id: u64, payload: Payload) -> Result<(), SendError> {
        if payload.len() > self.shared.config.max_payload {
            return Err(SendError::TooLarge);
        }
        let requester = match self.current {
            Some((current, requester)) if current == id => {
                self.current = None;
                requester
            }
            // Never received, or already answered.
            _ => self
                .answerable
                .remove(&id)
                .ok_or(SendError::UnknownTarget)?,
        };
        self.staged.push(Envelope {
            to: requester,
            from: self.me,
            kind: Kind::Response(id, Ok(())),
            payload,
        });
        Ok(())
    }

    /// Cancels request `id` if this actor made it and it is still open.
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        let Some(requests) = self.requests.as_mut() else {
            return false;
        };
        if !requests.is_open_by(id, self.me) {
            return false;
        }
        requests.close(id);
        requests.counts.cancelled += 1;
        self.open_requests -= 1;
        true
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Address> {
        self.shared.lookup(name)
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.shared.now_ns()
    }
}
