//! Native actors: the same behaviour as the fixtures, in Rust.

use std::time::Instant;

use super::{Samples, exchange, lock};
use crate::{Address, Context, NativeActor, RequestError, SendError};

/// Counts nothing itself: the runtime's `handled` counter is the measure.
pub(super) struct Sink;

impl NativeActor for Sink {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, payload: &[u8]) {
        std::hint::black_box(payload);
    }
}

/// `producer.wat` in reliable mode: sends its count of messages, and when the
/// target's mailbox is full, messages itself and goes on later.
pub(super) struct Producer {
    target: Address,
    left: u32,
    size: usize,
    seq: u64,
    buf: [u8; 1024],
}

impl Producer {
    pub(super) fn new(target: Address) -> Producer {
        Producer {
            target,
            left: 0,
            size: 8,
            seq: 0,
            buf: [0; 1024],
        }
    }
}

impl NativeActor for Producer {
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        let word = |i: usize| {
            payload
                .get(i * 4..i * 4 + 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        if from != ctx.self_address() {
            self.left = word(0);
            self.size = (word(2) as usize).clamp(8, 1024);
        }
        while self.left > 0 {
            self.buf[..8].copy_from_slice(&self.seq.to_le_bytes());
            match ctx.send(self.target, &self.buf[..self.size]) {
                Ok(()) => {
                    self.seq += 1;
                    self.left -= 1;
                }
                Err(SendError::MailboxFull) => {
                    let me = ctx.self_address();
                    let _ = ctx.send(me, &[0; 8]);
                    return;
                }
                Err(_) => self.left -= 1,
            }
        }
    }
}

/// `relay.wat`: forwards count - 1 to the next actor while the count is not 0.
/// The one at position 0 of a ping-pong pair records round-trip times.
pub(super) struct Relay {
    next_name: String,
    next: Option<Address>,
    buf: [u8; 1024],
    samples: Option<Samples>,
    local: Vec<u64>,
    last: Option<Instant>,
}

impl Relay {
    pub(super) fn new(next_name: String, samples: Option<Samples>) -> Relay {
        Relay {
            next_name,
            next: None,
            buf: [0; 1024],
            samples,
            local: Vec::new(),
            last: None,
        }
    }
}

impl NativeActor for Relay {
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        if payload.len() < 4 || payload.len() > 1024 {
            return;
        }
        let n = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
        if let Some(samples) = &self.samples {
            let now = Instant::now();
            if from == Address::HOST {
                // A run starts: take the buffer the host prepared.
                exchange(samples, &mut self.local);
            } else if let Some(last) = self.last
                && self.local.len() < self.local.capacity()
            {
                self.local.push(now.duration_since(last).as_nanos() as u64);
            }
            self.last = Some(now);
            if n == 0 {
                exchange(samples, &mut self.local);
                self.last = None;
            }
        }
        if n == 0 {
            return;
        }
        let next = match self.next {
            Some(a) => a,
            None => match ctx.lookup(&self.next_name) {
                Some(a) => *self.next.insert(a),
                None => return,
            },
        };
        let len = payload.len();
        self.buf[..len].copy_from_slice(payload);
        self.buf[..4].copy_from_slice(&(n - 1).to_le_bytes());
        let _ = ctx.send(next, &self.buf[..len]);
    }
}

/// Starts a recorded run of a component (a host message is passed on to `start`,
/// which reports to its sender) and collects the round-trip times it reports
/// (u32 little endian, ns).
pub(super) struct Collector {
    pub(super) start: Address,
    pub(super) samples: Samples,
}

impl NativeActor for Collector {
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        if from == Address::HOST {
            let _ = ctx.send(self.start, payload);
            return;
        }
        lock(&self.samples).extend(
            payload
                .chunks_exact(4)
                .map(|c| u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes")))),
        );
    }
}

/// `fanout.wat`: one round per message, resuming after a full mailbox.
pub(super) struct FanOut {
    targets: Vec<Address>,
    buf: [u8; 1024],
}

impl FanOut {
    pub(super) fn new(targets: Vec<Address>) -> FanOut {
        FanOut {
            targets,
            buf: [0; 1024],
        }
    }
}

impl NativeActor for FanOut {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        let len = payload.len();
        if !(8..=1024).contains(&len) {
            return;
        }
        self.buf[..len].copy_from_slice(payload);
        let word =
            |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let rounds = word(&self.buf, 0);
        if rounds == 0 {
            return;
        }
        let me = ctx.self_address();
        for i in word(&self.buf, 4) as usize..self.targets.len() {
            if let Err(SendError::MailboxFull) = ctx.send(self.targets[i], &self.buf[..len]) {
                self.buf[4..8].copy_from_slice(&(i as u32).to_le_bytes());
                let _ = ctx.send(me, &self.buf[..len]);
                return;
            }
        }
        if rounds > 1 {
            self.buf[..4].copy_from_slice(&(rounds - 1).to_le_bytes());
            self.buf[4..8].copy_from_slice(&0u32.to_le_bytes());
            let _ = ctx.send(me, &self.buf[..len]);
        }
    }
}

/// `rtt.wat`: sequential requests, recording each round trip's time.
pub(super) struct Rtt {
    target: Address,
    left: u32,
    buf: [u8; 1024],
    len: usize,
    sent_at: Instant,
    samples: Samples,
    local: Vec<u64>,
}

impl Rtt {
    pub(super) fn new(target: Address, samples: Samples) -> Rtt {
        Rtt {
            target,
            left: 0,
            buf: [0; 1024],
            len: 0,
            sent_at: Instant::now(),
            samples,
            local: Vec::new(),
        }
    }

    fn next(&mut self, ctx: &mut Context<'_>) {
        self.sent_at = Instant::now();
        if ctx
            .request(
                self.target,
                &self.buf[..self.len],
                std::time::Duration::from_secs(60),
            )
            .is_err()
        {
            self.left = 0;
            self.publish();
        }
    }

    fn publish(&mut self) {
        exchange(&self.samples, &mut self.local);
    }
}

impl NativeActor for Rtt {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        if payload.len() < 4 || payload.len() > 1024 {
            return;
        }
        self.left = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
        self.len = payload.len();
        self.buf[..self.len].copy_from_slice(payload);
        if self.left > 0 {
            self.publish(); // take the host's prepared buffer
            self.next(ctx);
        }
    }

    fn handle_response(
        &mut self,
        ctx: &mut Context<'_>,
        _: u64,
        response: Result<&[u8], RequestError>,
    ) {
        if self.local.len() < self.local.capacity() {
            self.local.push(self.sent_at.elapsed().as_nanos() as u64);
        }
        self.left = if response.is_ok() { self.left - 1 } else { 0 };
        if self.left > 0 {
            self.next(ctx);
        } else {
            self.publish();
        }
    }
}

/// The native twin of `responder.wat`: answers every request with its
/// payload, at once (through the context: no allocation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Responder;

impl NativeActor for Responder {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        id: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        // Answer through the context rather than by returning a Vec: no allocation.
        let _ = ctx.respond(id, payload);
        None
    }
}
