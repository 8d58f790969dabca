//! The send side of an actor: admission against the target's mailbox, then staging.
//!
//! Host functions and native actors both send through an [`Outbox`]. A send is
//! admitted at once (so a full mailbox is reported to the sender synchronously) and
//! the envelope is staged; the shard routes staged envelopes when the invocation
//! returns, so host functions never re-enter the shard.

use std::sync::Arc;

use crate::actor_requests::ActorRequests;
use crate::address::Address;
use crate::directory::Directory;
use crate::envelope::{Envelope, Kind, Payload, timeout_ms};
use crate::error::SendError;
use crate::requests::{Requests, Waiter};

pub(crate) struct Outbox {
    pub(crate) me: Address,
    pub(crate) directory: Arc<Directory>,
    pub(crate) staged: Vec<Envelope>,
    /// Messages and requests sent successfully, as counted for the actor's stats.
    pub(crate) sent: u64,
    /// The shard's request table, lent for the length of an invocation.
    pub(crate) table: Option<Box<Requests>>,
    /// This actor's requests: open, being handled, deferred.
    pub(crate) requests: ActorRequests,
}

impl Outbox {
    pub(crate) fn new(me: Address, directory: Arc<Directory>) -> Outbox {
        Outbox {
            me,
            directory,
            staged: Vec::with_capacity(16),
            sent: 0,
            table: None,
            requests: ActorRequests::default(),
        }
    }

    /// Admits and stages a tell of `payload` to `to`.
    #[inline]
    pub(crate) fn send(&mut self, to: Address, payload: Payload) -> Result<(), SendError> {
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        self.directory.admit_from_actor(to, &payload)?;
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
        // The table is lent for every invocation (a start function cannot get
        // here: calls that act trap during instantiation).
        let Some(table) = self.table.as_mut() else {
            return Err(SendError::ShuttingDown);
        };
        if self.requests.open() >= self.directory.max_open_requests || !table.has_room() {
            return Err(SendError::TooManyRequests);
        }
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        self.directory.admit_from_actor(to, &payload)?;
        let id = table.open(Waiter::Actor(self.me), to, timeout_ns)?;
        self.requests.opened();
        self.staged.push(Envelope {
            to,
            from: self.me,
            kind: Kind::Request(id, timeout_ms(timeout_ns)),
            payload,
        });
        self.sent += 1;
        Ok(id)
    }

    /// Stages the reply to request `id`, which this actor received and has not
    /// answered yet.
    pub(crate) fn respond(&mut self, id: u64, payload: Payload) -> Result<(), SendError> {
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        // Never received, or already answered.
        let requester = self.requests.answer(id).ok_or(SendError::UnknownTarget)?;
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
        let Some(table) = self.table.as_mut() else {
            return false;
        };
        if !table.is_open_by(id, self.me) {
            return false;
        }
        table.close(id);
        table.counts.cancelled += 1;
        self.requests.ended();
        true
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Address> {
        self.directory.lookup(name)
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.directory.now_ns()
    }
}
