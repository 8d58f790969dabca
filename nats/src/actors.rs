//! The bridge's native actors: the ingress, which hands what arrives from NATS
//! to local actors, and a proxy per imported actor, which hands what local
//! actors send it to the bridge's thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmshard::{Address, Context, NativeActor, RequestError, SendError};

use crate::inlet::Inlet;
use crate::stats::bump;
use crate::wire::{PLAIN_REQUEST_TIMEOUT, Reason};
use crate::{Out, Shared};

/// What arrives from NATS for an exported actor, on its way to the ingress.
pub(crate) enum Inbound {
    Tell {
        name: String,
        payload: Bytes,
        /// Where to report a refusal (a bridge's tell gives one).
        refuse_to: Option<String>,
    },
    Request {
        name: String,
        payload: Bytes,
        /// When its requester stops waiting (`None`: too far to count).
        deadline: Option<Instant>,
        reply: String,
    },
}

/// The end of a request a proxy forwarded, on its way back to the proxy.
pub(crate) struct Completion {
    pub(crate) id: u64,
    pub(crate) result: Result<Bytes, RequestError>,
    /// From the remote side (counted by the proxy), or decided by the bridge
    /// (counted by its thread already).
    pub(crate) remote: bool,
}

/// Hands what arrives from NATS to local actors, as an actor of the runtime:
/// tells with `send`, requests with `request` (their replies go back through
/// the bridge's thread).
pub(crate) struct Ingress {
    pub(crate) shared: Arc<Shared>,
    /// Requests made for remote requesters: local id → reply subject.
    pub(crate) open: HashMap<u64, String>,
    /// A message its target's mailbox refused, tried again before anything
    /// behind it (so nothing overtakes it), and when it was first refused.
    pub(crate) stalled: Option<(Inbound, Instant)>,
    /// A retry timer is pending.
    pub(crate) armed: bool,
}

/// How a message fared at its target.
enum Delivery {
    Done,
    /// The target's mailbox is full: try again later.
    Full(Inbound),
}

/// The retry timer's payload.
const RETRY: &[u8] = b"retry";

impl Ingress {
    fn drain(&mut self, ctx: &mut Context<'_>) {
        let shared = self.shared.clone();
        shared.inbound.begin();
        if let Some((item, since)) = self.stalled.take() {
            match self.deliver(ctx, item) {
                Delivery::Done => {}
                Delivery::Full(item) if since.elapsed() >= shared.options.stall_limit => {
                    shared.refuse_inbound(item, Reason::MailboxFull);
                }
                Delivery::Full(item) => {
                    self.stalled = Some((item, since));
                    return self.arm(ctx);
                }
            }
        }
        for _ in 0..CHUNK {
            let Some(item) = shared.inbound.pop() else {
                return;
            };
            if let Delivery::Full(item) = self.deliver(ctx, item) {
                if shared.options.stall_limit.is_zero() {
                    shared.refuse_inbound(item, Reason::MailboxFull);
                    continue;
                }
                bump(&shared.counters.stalls);
                self.stalled = Some((item, Instant::now()));
                return self.arm(ctx);
            }
        }
        if shared.inbound.len() > 0 {
            // The rest after the actors of this shard had a turn (those it
            // just sent to among them): a wake-up of its own, behind them.
            let me = ctx.self_address();
            if ctx.send(me, &[]).is_err() {
                // Its mailbox is full: what fills it wakes it.
            }
        }
    }

    /// Tries again in a millisecond (a target with a full mailbox makes room
    /// as it runs).
    fn arm(&mut self, ctx: &mut Context<'_>) {
        if !self.armed && ctx.schedule(Duration::from_millis(1), RETRY).is_ok() {
            self.armed = true;
        }
    }

    fn deliver(&mut self, ctx: &mut Context<'_>, item: Inbound) -> Delivery {
        let shared = &self.shared;
        let result = match &item {
            Inbound::Tell { name, payload, .. } => match ctx.lookup(name) {
                Some(to) => ctx.send(to, payload).map(|()| None),
                None => Err(SendError::UnknownTarget),
            },
            Inbound::Request {
                name,
                payload,
                deadline,
                ..
            } => {
                let timeout = deadline.map_or(Duration::MAX, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                match ctx.lookup(name) {
                    Some(to) => ctx.request(to, payload, timeout).map(Some),
                    None => Err(SendError::UnknownTarget),
                }
            }
        };
        match (result, item) {
            (Err(SendError::MailboxFull), item) => return Delivery::Full(item),
            (Err(e), item) => shared.refuse_inbound(item, Reason::of_send(e)),
            (Ok(None), _) => bump(&shared.counters.tells_in),
            (Ok(Some(id)), Inbound::Request { reply, .. }) => {
                bump(&shared.counters.requests_in);
                self.open.insert(id, reply);
            }
            (Ok(Some(_)), Inbound::Tell { .. }) => unreachable!("a tell makes no request"),
        }
        Delivery::Done
    }
}

impl Drop for Ingress {
    /// The ingress stops with its runtime (or is stopped): what it holds is
    /// answered, not lost. The message stalled at a full mailbox and what is
    /// still queued for it are refused (`shutting-down`, reported to their
    /// senders); the requests it made for remote requesters and has no
    /// response to yet end for them with `shutting-down` (their targets stop
    /// too, or answer an ingress that is gone). An ingress stopped while its
    /// runtime runs says `target-stopped` instead.
    fn drop(&mut self) {
        let shared = self.shared.clone();
        // Stopped alone (its runtime still runs): its targets may live on.
        let reason = if shared.inbound.is_open() {
            Reason::TargetStopped
        } else {
            Reason::ShuttingDown
        };
        if let Some((item, _)) = self.stalled.take() {
            shared.refuse_inbound(item, reason);
        }
        // The flag cleared first: what the thread queues after this finds
        // no one to wake, and the thread refuses it.
        shared.inbound.begin();
        shared.refuse_queued(reason);
        for (_, reply) in self.open.drain() {
            let _ = shared.send_out(Out::Reply {
                to: reply,
                result: Err(reason),
            });
        }
    }
}

/// Messages the ingress hands on per turn before it lets the other actors of
/// its shard run.
const CHUNK: usize = 64;

impl NativeActor for Ingress {
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        if from == ctx.self_address() && payload == RETRY {
            self.armed = false;
        }
        // A wake-up from the bridge's thread, its retry timer, or anything
        // else: either way, what is queued is taken now.
        self.drain(ctx);
    }

    fn handle_response(
        &mut self,
        ctx: &mut Context<'_>,
        id: u64,
        response: Result<&[u8], RequestError>,
    ) {
        if let Some(reply) = self.open.remove(&id) {
            let _ = self.shared.send_out(Out::Reply {
                to: reply,
                result: response
                    .map(Bytes::copy_from_slice)
                    .map_err(Reason::of_request),
            });
        }
        self.drain(ctx);
    }
}

/// A remote actor's local address: what local actors send it is published to
/// the remote actor's subject, in the order it arrives here.
pub(crate) struct Proxy {
    pub(crate) shared: Arc<Shared>,
    pub(crate) subject: Arc<str>,
    /// The ends of the requests it forwarded.
    pub(crate) back: Arc<Inlet<Completion>>,
}

impl Proxy {
    fn drain(&mut self, ctx: &mut Context<'_>) {
        let counters = &self.shared.counters;
        self.back.drain(|done| {
            let ended = match done.result {
                Ok(bytes) => match ctx.respond(done.id, &bytes) {
                    // Larger than this runtime admits: the request ends
                    // all the same, failed.
                    Err(SendError::TooLarge) => {
                        counters.refused_here(Reason::TooLarge);
                        ctx.fail(done.id, RequestError::TargetFailed)
                    }
                    ended => ended,
                },
                Err(e) => ctx.fail(done.id, e),
            };
            match (ended, done.remote) {
                (Ok(()), true) => bump(&counters.replies_in),
                // Forgotten here already (long past its timeout).
                (Err(_), true) => bump(&counters.late_replies),
                (_, false) => {}
            }
        });
    }
}

impl NativeActor for Proxy {
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        self.drain(ctx);
        if self.back.is_wake_up(from, payload) {
            return;
        }
        let _ = self.shared.send_out(Out::Tell {
            subject: self.subject.clone(),
            payload: Bytes::copy_from_slice(payload),
        });
    }

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        id: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        self.drain(ctx);
        if !ctx.can_defer() {
            // It holds all the runtime lets an actor hold: ended here,
            // before anything goes out (the remote side never sees it).
            bump(&self.shared.counters.requests_failed);
            let _ = ctx.fail(id, RequestError::TargetFailed);
            return None;
        }
        let timeout = ctx.remaining().unwrap_or(PLAIN_REQUEST_TIMEOUT);
        let unsent = self.shared.send_out(Out::Request {
            subject: self.subject.clone(),
            payload: Bytes::copy_from_slice(payload),
            timeout,
            made: Instant::now(),
            id,
            back: self.back.clone(),
        });
        if unsent.is_some() {
            // The bridge is closed, or holds all it may (counted).
            let _ = ctx.fail(id, RequestError::TargetFailed);
        }
        None
    }
}
