//! A wasmshard test component written as an ordinary Rust program: owned payloads,
//! `Vec` and `String` allocations, state in a `RefCell`, panics where a trap is
//! wanted. The integration tests build it for `wasm32-unknown-unknown` and load the
//! core module (with the `component-type` metadata `wit-bindgen` embeds).
//!
//! One component plays several roles; `init`'s config (UTF-8, words separated by
//! spaces) names the role and its arguments. Integers in commands and reports are
//! little-endian; an address is a `u64`.
//!
//! Payloads (see `pattern.rs`, which the tests share): payload number `seq` is
//! `seq % 300 + 1` bytes long, byte `i` being `pattern::byte(seq, len, i)`. Tells
//! carry no header: a receiver knows `seq` because messages from one sender arrive
//! in order, so loss, duplication and reordering show up as bad payloads too. The
//! responders' transform `f(p)` is `p` reversed followed by the FNV-1a checksum of
//! `p` (4 bytes), so every reply is 4 bytes longer than its request.
//!
//! Roles:
//!
//! - `sink`: every non-empty tell is checked byte for byte against the next
//!   payload of its sender (`seq` counts per sender from 0); it counts good and
//!   bad ones. An empty tell is a command: the sink tells the sender
//!   `[good u32, bad u32]`.
//! - `source`: a tell `[target u64, count u32]` makes it send `count` tells to
//!   `target`, payloads `seq, seq+1, …` (`seq` counts per target from 0 and moves
//!   only on a successful send); then it tells the command's sender
//!   `[sent u32, refused u32]` (refused: `send` returned an error).
//! - `echo`: `handle-request` answers at once with `some(f(payload))`, and, as a
//!   service would for diagnostics, keeps a journal of the last 64 requests it
//!   served (one `String` each, made after the reply). That allocation outlives
//!   the call, so the reply's buffer, which the generated `post-return` frees,
//!   is usually not next to free memory and goes back to the allocator's bins:
//!   a host that reads a returned list after `post-return` sees the allocator's
//!   bookkeeping in it. An empty tell makes it tell the sender `[served u32]`
//!   (and log the journal).
//! - `deferring`: `handle-request` returns `none` and keeps the request; any tell
//!   makes it answer every request it holds, oldest first, with
//!   `respond(id, f(payload))`.
//! - `deferring NAME`: `handle-request` returns `none` and makes a sub-request
//!   with the same payload to the actor registered as `NAME` (60 s timeout); when
//!   that ends it answers the original request with `respond`: the sub-reply's
//!   bytes verbatim, or an empty payload if the sub-request failed.
//! - `silent`: takes requests and never answers them.
//! - `requester`: a tell `[target u64, count u32, timeout_ms u32, cancel_every
//!   u32]` makes it request `count` times from `target`, payloads `seq, seq+1, …`
//!   (`seq` counts from 0 over the actor's life); when `cancel_every` is `k > 0`,
//!   every `k`-th request (the 1st, the `k+1`-th, …) is cancelled right after it is
//!   made. Each reply is checked byte for byte against `f(payload)`. When no
//!   request it made is open any more, it tells the sender of the latest command
//!   its report; an empty tell asks for the report at once. The report is eleven
//!   `u32` counters, cumulative over the actor's life: `[made, ok, corrupted,
//!   timeouts, failed, stopped, other, cancelled, cancel_missed, refused,
//!   unexpected]`: requests made; replies equal to `f(payload)`; other replies;
//!   requests ended with `timeout`, `target-failed`, `target-stopped`, any other
//!   error; `cancel` calls that returned true, false; `request` calls that
//!   failed; responses for an id that was cancelled, had already ended or was
//!   never made (each of those is a runtime bug).
//! - `forward NAME [GATE]`: `init` fails (returns an error) if an actor
//!   called `GATE` is given and not registered; otherwise it tells the actor
//!   called `NAME` `up` (so each instance announces itself). Each tell is
//!   forwarded to `NAME` verbatim, except `panic`, which panics. A request is
//!   answered with the number of tells this instance has forwarded (`u32`), or
//!   panics if it is `panic`.
//! - `slow-forward MS NAME`: busy for `MS` milliseconds in `init`, then as
//!   `forward NAME` (its `init` fails if there is no `NAME`).
//! - `parent COMPONENT`: spawns and watches children of the registered
//!   `COMPONENT` (with config `forward collector`); its requests are commands,
//!   answered with `u32` words (codes: 0 ok, `1 +` the spawn-error's or
//!   send-error's index): `s` + `n: u32` spawns `n` anonymous children →
//!   `[spawned, last error code]`; `S` + name spawns one child by that name →
//!   `[code]`; `u` + component spawns one anonymous child of another
//!   component → `[code]`; `c` + `n: u32` + config spawns `n` anonymous
//!   children with that config and tells each `hi` at once → `[spawned, last
//!   error code, told]`; `m` + `n: u32` spawns `n` anonymous children and
//!   monitors each in the same call → `[spawned, watched]`; `t` + bytes tells every child the bytes →
//!   `[ok, refused]`; `w` monitors every child → `[ok, last error code]`; `h`
//!   stops the first half of its children → `[ok, refused]`; `p` tells the
//!   second half `panic` → `[ok, refused]`; `x`/`y`/`z` + address stops,
//!   monitors, tells `hi` to that address → `[code]`; `k` + address + `n:
//!   u32` monitors that address and cancels the monitor, `n` times, in one
//!   call → `[watched, cancelled]`; `K` + address + `n: u32` stops it `n`
//!   times in one call → `[ok]`; `e` reports how its
//!   monitors ended → `[target-stopped, target-failed, other, unknown id,
//!   ended twice]`.
//! - `keeper`: keeps state in the host's storage. Its `init` adds one to the
//!   `u32` stored under `inits` (so a restarted or upgraded instance shows it
//!   read what the last one wrote; a store that is `unavailable` does not
//!   fail it). Requests: `g` + key → `[1, value…]` or
//!   `[0]`; `s` + key length (`u32`) + key + value → `[code]` (0 ok, 1
//!   too-large, 2 quota-exceeded, 3 unavailable); `d` + key → `[deleted]`;
//!   `i` → `[code]` of its `init`'s set. A
//!   tell `panic` panics.
//! - `heir TARGET`: its first `init` requests `o` from `TARGET` and stores
//!   the request's id under `asked`; a later `init` (an upgrade's) cancels
//!   that id and stores whether the cancel took under `cancelled` (`[1]` or
//!   `[0]`). Otherwise a `keeper`.
//! - `quitter`: its first `init` marks its storage; a later one (a restart)
//!   stops the actor and then fails. A tell `panic` panics; a request
//!   `stop-then-panic` stops the actor and then panics.
//! - `trap`: holds requests like `deferring` and answers them all on a tell, but:
//!   a tell `panic` panics in `handle-message`; a request `panic` panics in
//!   `handle-request` before answering; a request `respond-then-panic` answers
//!   itself with `respond(id, f(payload))` and then panics.
//! - `trap loud`: a `trap` whose `init` logs an error line, and succeeds.
//! - `blot`: its `init` sets `colour` to `red` and `blot`, deletes `size`,
//!   then fails.
//! - `fickle TOPIC`: its first `init` subscribes to `TOPIC`; a later one (an
//!   upgrade's) unsubscribes, publishes to `TOPIC` and fails with
//!   `fickle: unsubscribed BOOL, delivered N`. Otherwise a `quitter`.
//! - `sticky`: its `init` sets a timer an hour out; the first marks its
//!   storage, a later one (a restart's) then fails. Otherwise a `quitter`.
//! - `trap-in-init`: panics in `init`.
//! - `ops`: its requests are commands, each answered at once with what the
//!   host calls returned, as `u32`s; a code is 0 for ok, or `1 +` the
//!   `send-error` case's index in the WIT enum (1 unknown-target, 2
//!   mailbox-full, 3 denied, 4 too-large, 5 unsupported-codec, 6
//!   shutting-down, 7 too-many-requests). `l` + a name: `lookup`, answered
//!   `[0, address lo, hi]` when found and `[1, 0, 0]` when not; `s` + a target
//!   `u64`: `send`s it `ops`, answered `[code]`; `r` + a target `u64`:
//!   `request`s `ops` from it, answered `[code]`; `m`: sends itself `self`,
//!   answered `[code]`; `x` + a target `u64` + a count `u32`: sends it `count`
//!   tells, answered `[ok, denied, too-many-requests, other]`; `c`: answered
//!   `[selfs, replies, failures]`, how many `self` tells it received from
//!   itself and how its own requests ended; `ops` (what the role itself
//!   requests): answered with nothing. A tell `panic` panics; other tells
//!   are ignored.
//! - `ops early TARGET`: an `ops` whose `init` sets a timer (1 ms, back as a
//!   `self` tell), requests `o` from `TARGET` and monitors it (the monitor's
//!   end counts among `failures`).
//! - `nest COMPONENT CHILD [CONFIG…]`: an `ops` whose `init` spawns an actor
//!   named `CHILD` from the registered `COMPONENT`, configured with `CONFIG`
//!   (default `ops`).
//! - `brief`: stops itself from `init`; silent until then.
//! - `clock`: sets timers (`timers` interface); its requests are commands:
//!   `b` + `count u32` + `max_delay_us u32` + `seed u32` sets `count` timers
//!   with pseudo-random delays below `max_delay_us` (xorshift from `seed`;
//!   each payload `F`, its tag and its due time by `now-ns`) → `[set, refused]`;
//!   `s` + `delay_ns u64` sets one → `[code, id lo, id hi]`; `c` + `id u64`
//!   cancels → `[was pending]`; `t` + `period_ns u64` + `n u32` starts a tick
//!   re-armed from `handle-message` `n` times → `[code]`; `r` reports `[fired,
//!   early, twice, max late in µs, ticks, from someone else, host timers,
//!   unknown]`. A fired timer is checked: from itself, not before its due time,
//!   not fired before. A tell `H` (a host timer) is counted; `panic` panics.
//! - `subscriber TOPIC…`: subscribes to each topic in `init`. Every tell
//!   `[seq u32]` is checked per sender: each must be above the last from that
//!   sender (a publisher's own order). Requests are commands: `s` + topic
//!   subscribes → `[code]`; `S` + `to u64` + topic subscribes and then tells
//!   `to` `go` → `[code, code]`; `u` + topic unsubscribes → `[had one]`; `p` +
//!   `count u32` + topic publishes `[seq u32]` `count` times (`seq` counts its
//!   publications from 1) → `[delivered, refused, errors, last code]`; `r`
//!   reports `[received, out of order, from itself]`. A tell `panic` panics;
//!   `stop` stops it.
//! - `relay NAME [answer]`: each request (but `?`) becomes a sub-request to
//!   the actor called `NAME` with the same payload and a 60 s timeout (the
//!   runtime caps it at the request's deadline). Without `answer` it answers
//!   the request when the sub-request ends (the sub-reply, or an empty
//!   payload); with `answer`, at once (empty). A request `?` is answered with
//!   how its sub-requests ended: `[ok, timeout, cancelled, other, ended twice
//!   or unknown, longest in ms]`.
//! - `slow MS`: each request spins `MS` ms of the clock, then is answered
//!   `f(payload)`.
//! - `tracer [NAME]`: reads `tracing.current` and appends it to what it
//!   passes on (24 bytes: trace id high, low, span, little-endian; zeros when
//!   untraced). A tell gets its context appended and is sent on to `NAME`; a
//!   request likewise becomes a sub-request to `NAME`, and when that ends the
//!   reply (or nothing, on an error) gets the context of the response's
//!   handling appended and answers the request. Without `NAME` a tell is
//!   dropped and a request is answered at once with the payload and the
//!   context appended.
//!
//! - `framer`: a request `[0][frames]` hands `frames` verbatim to
//!   `batch-host.send-frames`; `[1][to u64][len u32]` sends three frames to `to`,
//!   `4`, `len` zero bytes, `5` (a frame larger than any message: the buffer
//!   is the guest's own memory). The answer is `[sent u32, error u32]` (the
//!   error coded as `code` does, 0 for none). A malformed buffer traps inside
//!   the call.
//!
//! A panic aborts (there is no unwinding on this target), which traps: the
//! runtime fails the actor.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

mod pattern;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "component",
});

use exports::wasmshard::actor::actor::Guest;
use wasmshard::actor::types::{Address, LogLevel, RequestError, RequestId};
use wasmshard::actor::{batch_host, host, lifecycle, storage, timers, topics, tracing};

/// How long the requests the guest makes on its own account may take.
const SUB_REQUEST_TIMEOUT_NS: u64 = 60_000_000_000;

enum Role {
    Sink(Sink),
    Source(Source),
    Echo(Echo),
    Deferring(Deferring),
    Proxy(Proxy),
    Silent,
    Framer,
    Requester(Requester),
    Trap(Deferring),
    Ops(Ops),
    Forward { to: Address, forwarded: u32 },
    Parent(Parent),
    Keeper,
    Quitter,
    Clock(Clock),
    Subscriber(Subscriber),
    Relay(Relay),
    Slow(u64),
    Tracer(Tracer),
}

#[derive(Default)]
struct Tracer {
    next: Option<String>,
    /// Open sub-requests: id → the request it serves.
    open: HashMap<RequestId, RequestId>,
}

impl Tracer {
    /// `payload` with the current trace context appended.
    fn stamped(mut payload: Vec<u8>) -> Vec<u8> {
        let (hi, lo, span) =
            tracing::current().map_or((0, 0, 0), |t| (t.trace_hi, t.trace_lo, t.span));
        for word in [hi, lo, span] {
            payload.extend_from_slice(&word.to_le_bytes());
        }
        payload
    }

    fn next(&self) -> Option<Address> {
        host::lookup(self.next.as_deref()?)
    }

    fn tell(&mut self, payload: Vec<u8>) {
        if let Some(to) = self.next() {
            host::send(to, &Self::stamped(payload)).expect("passed on");
        }
    }

    fn request(&mut self, id: RequestId, payload: Vec<u8>) -> Option<Vec<u8>> {
        let stamped = Self::stamped(payload);
        let Some(to) = self.next() else {
            return Some(stamped);
        };
        let sub = host::request(to, &stamped, SUB_REQUEST_TIMEOUT_NS).expect("sub-request");
        self.open.insert(sub, id);
        None
    }

    fn response(&mut self, id: RequestId, response: Result<Vec<u8>, RequestError>) {
        if let Some(original) = self.open.remove(&id) {
            let _ = host::respond(original, &Self::stamped(response.unwrap_or_default()));
        }
    }
}

#[derive(Default)]
struct Relay {
    name: String,
    answer_at_once: bool,
    /// Open sub-requests: id → (the request it serves if still unanswered,
    /// when it was made).
    open: HashMap<RequestId, (Option<RequestId>, u64)>,
    /// `[ok, timeout, cancelled, other, unknown, longest ms]`.
    counts: [u32; 6],
}

impl Relay {
    fn request(&mut self, id: RequestId, payload: Vec<u8>) -> Option<Vec<u8>> {
        if payload == b"?" {
            return Some(encode(&self.counts));
        }
        let Some(target) = host::lookup(&self.name) else {
            return Some(Vec::new());
        };
        match host::request(target, &payload, SUB_REQUEST_TIMEOUT_NS) {
            Ok(sub) => {
                let serves = (!self.answer_at_once).then_some(id);
                self.open.insert(sub, (serves, host::now_ns()));
                if self.answer_at_once {
                    Some(Vec::new())
                } else {
                    None
                }
            }
            Err(_) => Some(Vec::new()),
        }
    }

    fn response(&mut self, id: RequestId, response: Result<Vec<u8>, RequestError>) {
        let Some((serves, made)) = self.open.remove(&id) else {
            self.counts[4] += 1;
            return;
        };
        let at = match &response {
            Ok(_) => 0,
            Err(RequestError::Timeout) => 1,
            Err(RequestError::Cancelled) => 2,
            Err(_) => 3,
        };
        self.counts[at] += 1;
        let ms = ((host::now_ns() - made) / 1_000_000) as u32;
        self.counts[5] = self.counts[5].max(ms);
        if let Some(original) = serves {
            // The original may have ended already: a late answer is the
            // runtime's to discard.
            let _ = host::respond(original, &response.unwrap_or_default());
        }
    }
}

#[derive(Default)]
struct Clock {
    fired: u32,
    early: u32,
    twice: u32,
    max_late_us: u32,
    ticks: u32,
    /// Ticks still to come.
    ticks_left: u32,
    period_ns: u64,
    strangers: u32,
    host_timers: u32,
    unknown: u32,
    seen: HashSet<u32>,
    /// The tag of the next timer `b` sets (unique over the actor's life).
    next_tag: u32,
}

impl Clock {
    fn command(&mut self, payload: &[u8]) -> Vec<u8> {
        match payload.first() {
            Some(b'b') => {
                let count = u32_at(payload, 1);
                let max_us = u64::from(u32_at(payload, 5).max(1));
                let mut x = u32_at(payload, 9) | 1;
                let (mut set, mut refused) = (0, 0);
                for _ in 0..count {
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let delay = u64::from(x) % max_us * 1_000;
                    let due = host::now_ns() + delay;
                    let mut p = vec![b'F'];
                    p.extend_from_slice(&tag.to_le_bytes());
                    p.extend_from_slice(&due.to_le_bytes());
                    match timers::schedule(delay, &p) {
                        Ok(_) => set += 1,
                        Err(_) => refused += 1,
                    }
                }
                encode(&[set, refused])
            }
            Some(b's') => match timers::schedule(u64_at(payload, 1), b"S") {
                Ok(id) => encode(&[0, id as u32, (id >> 32) as u32]),
                Err(e) => encode(&[code(Err(e)), 0, 0]),
            },
            Some(b'c') => encode(&[timers::cancel_timer(u64_at(payload, 1)) as u32]),
            Some(b't') => {
                self.period_ns = u64_at(payload, 1);
                self.ticks_left = u32_at(payload, 9);
                encode(&[self.arm_tick()])
            }
            Some(b'r') => encode(&[
                self.fired,
                self.early,
                self.twice,
                self.max_late_us,
                self.ticks,
                self.strangers,
                self.host_timers,
                self.unknown,
            ]),
            _ => Vec::new(),
        }
    }

    fn arm_tick(&mut self) -> u32 {
        if self.ticks_left == 0 {
            return 0;
        }
        self.ticks_left -= 1;
        code(timers::schedule(self.period_ns, b"T").map(|_| ()))
    }

    fn tell(&mut self, from: Address, payload: &[u8]) {
        let me = host::self_address();
        match payload.first() {
            Some(b'H') => self.host_timers += 1,
            _ if from != me => self.strangers += 1,
            Some(b'T') => {
                self.ticks += 1;
                let _ = self.arm_tick();
            }
            Some(b'S') => self.fired += 1,
            Some(b'F') if payload.len() == 13 => {
                let tag = u32_at(payload, 1);
                let due = u64_at(payload, 5);
                let now = host::now_ns();
                self.fired += 1;
                if now < due {
                    self.early += 1;
                }
                let late_us = (now.saturating_sub(due) / 1_000) as u32;
                self.max_late_us = self.max_late_us.max(late_us);
                if !self.seen.insert(tag) {
                    self.twice += 1;
                }
            }
            _ => self.unknown += 1,
        }
    }
}

#[derive(Default)]
struct Subscriber {
    last: HashMap<Address, u32>,
    received: u32,
    out_of_order: u32,
    from_self: u32,
    /// Its own publications so far.
    published: u32,
}

impl Subscriber {
    fn tell(&mut self, from: Address, payload: &[u8]) {
        if payload == b"stop" {
            lifecycle::stop(host::self_address()).expect("stop myself");
            return;
        }
        if payload.len() != 4 {
            return;
        }
        self.received += 1;
        if from == host::self_address() {
            self.from_self += 1;
        }
        let seq = u32_at(payload, 0);
        let last = self.last.entry(from).or_insert(0);
        if seq <= *last {
            self.out_of_order += 1;
        }
        *last = seq;
    }

    fn command(&mut self, payload: &[u8]) -> Vec<u8> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match payload.first() {
            Some(b's') => encode(&[code(topics::subscribe(&text(&payload[1..])))]),
            Some(b'u') => encode(&[topics::unsubscribe(&text(&payload[1..])) as u32]),
            Some(b'S') => {
                let to = u64_at(payload, 1);
                let subscribed = code(topics::subscribe(&text(&payload[9..])));
                encode(&[subscribed, code(host::send(to, b"go"))])
            }
            Some(b'p') => {
                let count = u32_at(payload, 1);
                let topic = text(&payload[5..]);
                let (mut delivered, mut refused, mut errors, mut last) = (0, 0, 0, 0);
                for _ in 0..count {
                    self.published += 1;
                    match topics::publish(&topic, &self.published.to_le_bytes()) {
                        Ok(o) => {
                            delivered += o.delivered;
                            refused += o.refused;
                            last = 0;
                        }
                        Err(e) => {
                            errors += 1;
                            last = code(Err(e));
                        }
                    }
                }
                encode(&[delivered, refused, errors, last])
            }
            Some(b'r') => encode(&[self.received, self.out_of_order, self.from_self]),
            _ => Vec::new(),
        }
    }
}

fn keeper(payload: &[u8]) -> Vec<u8> {
    match payload.first() {
        Some(b'g') => match storage::get(&payload[1..]) {
            Some(mut v) => {
                v.insert(0, 1);
                v
            }
            None => vec![0],
        },
        Some(b's') => {
            let n = u32_at(payload, 1) as usize;
            let (key, value) = payload[5..].split_at(n);
            let code = match storage::set(key, value) {
                Ok(()) => 0,
                Err(storage::StorageError::TooLarge) => 1,
                Err(storage::StorageError::QuotaExceeded) => 2,
                Err(storage::StorageError::Unavailable) => 3,
            };
            vec![code]
        }
        Some(b'd') => vec![u8::from(storage::delete(&payload[1..]))],
        Some(b'i') => vec![INIT_SET.with(|c| c.get())],
        _ => panic!("keeper: unknown command"),
    }
}

#[derive(Default)]
struct Parent {
    component: String,
    children: Vec<Address>,
    /// Open monitors, and how the ended ones ended.
    watching: HashSet<RequestId>,
    ended: HashSet<RequestId>,
    /// [target-stopped, target-failed, other, unknown id, ended twice]
    ends: [u32; 5],
}

fn spawn_code(r: Result<Address, lifecycle::SpawnError>) -> u32 {
    use lifecycle::SpawnError as E;
    match r {
        Ok(_) => 0,
        Err(E::UnknownComponent) => 1,
        Err(E::NameTaken) => 2,
        Err(E::NoCapacity) => 3,
        Err(E::Denied) => 4,
        Err(E::ShuttingDown) => 5,
    }
}

impl Parent {
    fn spawn(&mut self, component: &str, name: Option<&str>) -> u32 {
        let r = lifecycle::spawn(component, name, b"forward collector");
        if let Ok(child) = r {
            self.children.push(child);
        }
        spawn_code(r)
    }

    fn tell_all(children: &[Address], payload: &[u8]) -> Vec<u32> {
        let mut counts = [0u32; 2];
        for &c in children {
            counts[usize::from(host::send(c, payload).is_err())] += 1;
        }
        counts.to_vec()
    }

    fn command(&mut self, payload: &[u8]) -> Vec<u8> {
        let target = || u64_at(payload, 1);
        let half = self.children.len() / 2;
        let words = match payload.first() {
            Some(b's') => {
                let (mut spawned, mut last) = (0, 0);
                let component = self.component.clone();
                for _ in 0..u32_at(payload, 1) {
                    match self.spawn(&component, None) {
                        0 => spawned += 1,
                        e => last = e,
                    }
                }
                vec![spawned, last]
            }
            Some(b'm') => {
                let (mut spawned, mut watched) = (0, 0);
                let component = self.component.clone();
                for _ in 0..u32_at(payload, 1) {
                    if self.spawn(&component, None) != 0 {
                        continue;
                    }
                    spawned += 1;
                    let child = *self.children.last().expect("spawned");
                    if let Ok(id) = lifecycle::monitor(child) {
                        self.watching.insert(id);
                        watched += 1;
                    }
                }
                vec![spawned, watched]
            }
            Some(b'S') => {
                let name = std::str::from_utf8(&payload[1..]).expect("a UTF-8 name");
                let component = self.component.clone();
                vec![self.spawn(&component, Some(name))]
            }
            Some(b'u') => {
                let component = std::str::from_utf8(&payload[1..]).expect("a UTF-8 name");
                vec![self.spawn(component, None)]
            }
            Some(b'c') => {
                // `n` anonymous children with the config that follows, each
                // told `hi` at once: [spawned, last error, told].
                let config = &payload[5..];
                let (mut spawned, mut last, mut told) = (0, 0, 0);
                for _ in 0..u32_at(payload, 1) {
                    match lifecycle::spawn(&self.component, None, config) {
                        Ok(child) => {
                            spawned += 1;
                            told += u32::from(host::send(child, b"hi").is_ok());
                            self.children.push(child);
                        }
                        Err(e) => last = spawn_code(Err(e)),
                    }
                }
                vec![spawned, last, told]
            }
            Some(b't') => Self::tell_all(&self.children, &payload[1..]),
            Some(b'p') => Self::tell_all(&self.children[half..], b"panic"),
            Some(b'h') => {
                let mut counts = [0u32; 2];
                for &c in &self.children[..half] {
                    counts[usize::from(lifecycle::stop(c).is_err())] += 1;
                }
                counts.to_vec()
            }
            Some(b'w') => {
                let (mut ok, mut last) = (0, 0);
                for &c in &self.children {
                    match lifecycle::monitor(c) {
                        Ok(id) => {
                            self.watching.insert(id);
                            ok += 1;
                        }
                        Err(e) => last = code(Err(e)),
                    }
                }
                vec![ok, last]
            }
            Some(b'k') => {
                // `n` times, a monitor of `target` cancelled at once.
                let (mut watched, mut cancelled) = (0, 0);
                for _ in 0..u32_at(payload, 9) {
                    if let Ok(id) = lifecycle::monitor(target()) {
                        watched += 1;
                        cancelled += u32::from(host::cancel(id));
                    }
                }
                vec![watched, cancelled]
            }
            Some(b'K') => {
                // `n` stops of `target`.
                let mut ok = 0;
                for _ in 0..u32_at(payload, 9) {
                    ok += u32::from(lifecycle::stop(target()).is_ok());
                }
                vec![ok]
            }
            Some(b'x') => vec![code(lifecycle::stop(target()))],
            Some(b'y') => vec![code(lifecycle::monitor(target()).map(|id| {
                self.watching.insert(id);
            }))],
            Some(b'z') => vec![code(host::send(target(), b"hi"))],
            Some(b'e') => self.ends.to_vec(),
            _ => panic!("parent: unknown command"),
        };
        encode(&words)
    }

    fn ended(&mut self, id: RequestId, response: Result<Vec<u8>, RequestError>) {
        if !self.watching.remove(&id) {
            let i = if self.ended.contains(&id) { 4 } else { 3 };
            self.ends[i] += 1;
            return;
        }
        self.ended.insert(id);
        let i = match response {
            Err(RequestError::TargetStopped) => 0,
            Err(RequestError::TargetFailed) => 1,
            _ => 2,
        };
        self.ends[i] += 1;
    }
}

fn code(r: Result<(), host::SendError>) -> u32 {
    use host::SendError as E;
    match r {
        Ok(()) => 0,
        Err(E::UnknownTarget) => 1,
        Err(E::MailboxFull) => 2,
        Err(E::Denied) => 3,
        Err(E::TooLarge) => 4,
        Err(E::UnsupportedCodec) => 5,
        Err(E::ShuttingDown) => 6,
        Err(E::TooManyRequests) => 7,
    }
}

#[derive(Default)]
struct Ops {
    selfs: u32,
    replies: u32,
    failures: u32,
}

impl Ops {
    fn command(&mut self, payload: &[u8]) -> Vec<u8> {
        let target = || u64_at(payload, 1);
        let words = match payload.first() {
            Some(b'l') => {
                let name = std::str::from_utf8(&payload[1..]).expect("a UTF-8 name");
                let found = host::lookup(name);
                let a = found.unwrap_or(0);
                vec![u32::from(found.is_none()), a as u32, (a >> 32) as u32]
            }
            Some(b's') => vec![code(host::send(target(), b"ops"))],
            Some(b'r') => vec![code(
                host::request(target(), b"ops", SUB_REQUEST_TIMEOUT_NS).map(|_| ()),
            )],
            Some(b'm') => vec![code(host::send(host::self_address(), b"self"))],
            Some(b'x') => {
                let (to, n) = (target(), u32_at(payload, 9));
                let mut counts = [0u32; 4];
                for _ in 0..n {
                    let i = match code(host::send(to, b"flood")) {
                        0 => 0,
                        3 => 1,
                        7 => 2,
                        _ => 3,
                    };
                    counts[i] += 1;
                }
                counts.to_vec()
            }
            Some(b'c') => vec![self.selfs, self.replies, self.failures],
            // What the role's own `r` asks: answered with nothing.
            Some(b'o') => vec![],
            _ => panic!("ops: unknown command"),
        };
        encode(&words)
    }
}

thread_local! {
    static ROLE: RefCell<Option<Role>> = const { RefCell::new(None) };
    /// What a keeper's `init` got from its `set` (0 ok, 3 unavailable).
    static INIT_SET: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

fn with_role<R>(f: impl FnOnce(&mut Role) -> R) -> R {
    ROLE.with_borrow_mut(|role| f(role.as_mut().expect("init has run")))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

fn encode(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Tells `to` a report. A report nobody can receive is logged, not fatal.
fn report(to: Address, words: &[u32]) {
    if let Err(e) = host::send(to, &encode(words)) {
        host::log(
            LogLevel::Warn,
            &format!("report to {to:#x} not sent: {e:?}"),
        );
    }
}

#[derive(Default)]
struct Sink {
    next: HashMap<Address, u32>,
    good: u32,
    bad: u32,
}

impl Sink {
    fn tell(&mut self, from: Address, payload: Vec<u8>) {
        if payload.is_empty() {
            return report(from, &[self.good, self.bad]);
        }
        let seq = self.next.entry(from).or_insert(0);
        if pattern::is_payload(*seq, &payload) {
            self.good += 1;
        } else {
            self.bad += 1;
        }
        *seq += 1;
    }
}

#[derive(Default)]
struct Source {
    next: HashMap<Address, u32>,
}

impl Source {
    fn tell(&mut self, from: Address, command: Vec<u8>) {
        assert_eq!(command.len(), 12, "source command: [target u64, count u32]");
        let (target, count) = (u64_at(&command, 0), u32_at(&command, 8));
        let seq = self.next.entry(target).or_insert(0);
        let (mut sent, mut refused) = (0, 0);
        for _ in 0..count {
            let payload = pattern::payload(*seq);
            match host::send(target, &payload) {
                Ok(()) => {
                    sent += 1;
                    *seq += 1;
                }
                Err(_) => refused += 1,
            }
        }
        report(from, &[sent, refused]);
    }
}

/// How many served requests the echo remembers.
const JOURNAL: usize = 64;

/// Answers at once, and keeps a journal of the latest requests it served, as a
/// service keeps for diagnostics.
#[derive(Default)]
struct Echo {
    served: u32,
    journal: VecDeque<String>,
}

impl Echo {
    fn request(&mut self, from: Address, id: RequestId, payload: Vec<u8>) -> Vec<u8> {
        let reply = pattern::transform(&payload);
        self.served += 1;
        if self.journal.len() == JOURNAL {
            self.journal.pop_front();
        }
        self.journal.push_back(format!(
            "request {id:#x} from {from:#x}: {} bytes in, {} out",
            payload.len(),
            reply.len()
        ));
        reply
    }

    fn tell(&mut self, from: Address) {
        for line in &self.journal {
            host::log(LogLevel::Debug, line);
        }
        report(from, &[self.served]);
    }
}

/// Requests held for a later answer: (id, payload).
#[derive(Default)]
struct Deferring {
    held: Vec<(RequestId, Vec<u8>)>,
}

impl Deferring {
    fn answer_all(&mut self) {
        for (id, payload) in self.held.drain(..) {
            let reply = pattern::transform(&payload);
            if let Err(e) = host::respond(id, &reply) {
                host::log(
                    LogLevel::Error,
                    &format!("respond to {id:#x} failed: {e:?}"),
                );
            }
        }
    }
}

/// Answers each request once a sub-request with the same payload has ended.
struct Proxy {
    name: String,
    target: Option<Address>,
    /// sub-request id → the request it answers.
    waiting: HashMap<RequestId, RequestId>,
}

impl Proxy {
    fn request(&mut self, id: RequestId, payload: Vec<u8>) {
        let target = match self.target {
            Some(t) => t,
            None => {
                let t = host::lookup(&self.name)
                    .unwrap_or_else(|| panic!("no actor is registered as `{}`", self.name));
                *self.target.insert(t)
            }
        };
        match host::request(target, &payload, SUB_REQUEST_TIMEOUT_NS) {
            Ok(sub) => {
                self.waiting.insert(sub, id);
            }
            Err(e) => {
                host::log(LogLevel::Warn, &format!("sub-request refused: {e:?}"));
                let _ = host::respond(id, &[]);
            }
        }
    }

    fn response(&mut self, sub: RequestId, response: Result<Vec<u8>, RequestError>) {
        let Some(id) = self.waiting.remove(&sub) else {
            return host::log(
                LogLevel::Error,
                &format!("response for unknown sub-request {sub:#x}"),
            );
        };
        let reply = response.unwrap_or_default();
        if let Err(e) = host::respond(id, &reply) {
            host::log(
                LogLevel::Error,
                &format!("respond to {id:#x} failed: {e:?}"),
            );
        }
    }
}

/// The requester's report, in the order it is sent.
#[derive(Default)]
struct Counts {
    made: u32,
    ok: u32,
    corrupted: u32,
    timeouts: u32,
    failed: u32,
    stopped: u32,
    other: u32,
    cancelled: u32,
    cancel_missed: u32,
    refused: u32,
    unexpected: u32,
}

impl Counts {
    fn words(&self) -> [u32; 11] {
        [
            self.made,
            self.ok,
            self.corrupted,
            self.timeouts,
            self.failed,
            self.stopped,
            self.other,
            self.cancelled,
            self.cancel_missed,
            self.refused,
            self.unexpected,
        ]
    }
}

#[derive(Default)]
struct Requester {
    seq: u32,
    /// Open requests: id → the seq of their payload.
    open: HashMap<RequestId, u32>,
    cancelled: HashSet<RequestId>,
    ended: HashSet<RequestId>,
    counts: Counts,
    report_to: Option<Address>,
}

impl Requester {
    fn tell(&mut self, from: Address, command: Vec<u8>) {
        if command.is_empty() {
            return report(from, &self.counts.words());
        }
        assert_eq!(
            command.len(),
            20,
            "requester command: [target u64, count u32, timeout_ms u32, cancel_every u32]"
        );
        let target = u64_at(&command, 0);
        let count = u32_at(&command, 8);
        let timeout_ns = u64::from(u32_at(&command, 12)) * 1_000_000;
        let cancel_every = u32_at(&command, 16);
        self.report_to = Some(from);
        for i in 0..count {
            let seq = self.seq;
            self.seq += 1;
            let payload = pattern::payload(seq);
            let id = match host::request(target, &payload, timeout_ns) {
                Ok(id) => id,
                Err(_) => {
                    self.counts.refused += 1;
                    continue;
                }
            };
            self.counts.made += 1;
            if cancel_every > 0 && i % cancel_every == 0 {
                if host::cancel(id) {
                    self.counts.cancelled += 1;
                    self.cancelled.insert(id);
                } else {
                    self.counts.cancel_missed += 1;
                    self.open.insert(id, seq);
                }
            } else {
                self.open.insert(id, seq);
            }
        }
        self.report_if_done();
    }

    fn response(&mut self, id: RequestId, response: Result<Vec<u8>, RequestError>) {
        let Some(seq) = self.open.remove(&id) else {
            self.counts.unexpected += 1;
            let why = if self.cancelled.contains(&id) {
                "cancelled"
            } else if self.ended.contains(&id) {
                "already ended"
            } else {
                "never made"
            };
            return host::log(
                LogLevel::Error,
                &format!("response for request {id:#x}, which {why}"),
            );
        };
        self.ended.insert(id);
        let c = &mut self.counts;
        match response {
            Ok(reply) if reply == pattern::transform(&pattern::payload(seq)) => c.ok += 1,
            Ok(_) => c.corrupted += 1,
            Err(RequestError::Timeout) => c.timeouts += 1,
            Err(RequestError::TargetFailed) => c.failed += 1,
            Err(RequestError::TargetStopped) => c.stopped += 1,
            Err(_) => c.other += 1,
        }
        self.report_if_done();
    }

    fn report_if_done(&mut self) {
        if !self.open.is_empty() {
            return;
        }
        if let Some(to) = self.report_to.take() {
            let words = self.counts.words();
            host::log(LogLevel::Debug, &format!("requests done: {words:?}"));
            report(to, &words);
        }
    }
}

struct Roles;

impl Guest for Roles {
    fn init(config: Vec<u8>) -> Result<(), String> {
        let config = String::from_utf8(config).map_err(|e| format!("config: {e}"))?;
        let words: Vec<&str> = config.split_whitespace().collect();
        let role = match words.as_slice() {
            ["sink"] => Role::Sink(Sink::default()),
            ["source"] => Role::Source(Source::default()),
            ["echo"] => Role::Echo(Echo::default()),
            ["deferring"] => Role::Deferring(Deferring::default()),
            ["deferring", name] => Role::Proxy(Proxy {
                name: name.to_string(),
                target: None,
                waiting: HashMap::new(),
            }),
            ["silent"] => Role::Silent,
            ["framer"] => Role::Framer,
            ["requester"] => Role::Requester(Requester::default()),
            ["trap"] => Role::Trap(Deferring::default()),
            ["trap", "loud"] => {
                host::log(LogLevel::Error, "init said so");
                Role::Trap(Deferring::default())
            }
            ["trap-in-init"] => panic!("trap-in-init: init panics on purpose"),
            ["ops"] => Role::Ops(Ops::default()),
            // From `init`: spawns a child named `child` from the registered
            // `component`, as an `ops` actor.
            ["nest", component, child, rest @ ..] => {
                let config = if rest.is_empty() {
                    "ops".to_string()
                } else {
                    rest.join(" ")
                };
                lifecycle::spawn(component, Some(child), config.as_bytes())
                    .map_err(|e| format!("nest: {e:?}"))?;
                Role::Ops(Ops::default())
            }
            // Stops itself from `init` (the stop takes effect once it started).
            ["brief"] => {
                lifecycle::stop(host::self_address()).map_err(|e| format!("brief: {e:?}"))?;
                Role::Silent
            }
            // From `init`: a timer (1 ms, back as `self`), a request to
            // `target` (its reply counts) and a monitor of it (whose end
            // counts as a failure): the calls that need the shard's table.
            ["ops", "early", target] => {
                let to = host::lookup(target).ok_or_else(|| format!("ops: no `{target}`"))?;
                timers::schedule(1_000_000, b"self").map_err(|e| format!("timer: {e:?}"))?;
                host::request(to, b"o", SUB_REQUEST_TIMEOUT_NS)
                    .map_err(|e| format!("request: {e:?}"))?;
                lifecycle::monitor(to).map_err(|e| format!("monitor: {e:?}"))?;
                Role::Ops(Ops::default())
            }
            // Writes its storage (`colour` = `red`, `blot` = `x`), deletes
            // `size`, then fails.
            ["blot"] => {
                storage::set(b"colour", b"red").map_err(|e| format!("blot: {e:?}"))?;
                storage::set(b"blot", b"x").map_err(|e| format!("blot: {e:?}"))?;
                storage::delete(b"size");
                return Err("blot: fails after writing".into());
            }
            // Its first `init` subscribes to `topic` and marks its storage; a
            // later one (an upgrade's) unsubscribes, publishes to the topic
            // itself and fails, saying what the two calls returned.
            ["fickle", topic] => {
                if storage::get(b"started").is_some() {
                    let had = topics::unsubscribe(topic);
                    let delivered = topics::publish(topic, b"own").map_or(0, |o| o.delivered);
                    return Err(format!("fickle: unsubscribed {had}, delivered {delivered}"));
                }
                storage::set(b"started", b"").map_err(|e| format!("fickle: {e:?}"))?;
                topics::subscribe(topic).map_err(|e| format!("fickle: {e:?}"))?;
                Role::Quitter
            }
            // Sets a timer an hour out; its first `init` marks its storage,
            // a later one (a restart's) fails after setting its timer.
            ["sticky"] => {
                timers::schedule(3_600_000_000_000, b"late")
                    .map_err(|e| format!("sticky: {e:?}"))?;
                if storage::get(b"started").is_some() {
                    return Err("sticky: fails on its restart".into());
                }
                storage::set(b"started", b"").map_err(|e| format!("sticky: {e:?}"))?;
                Role::Quitter
            }
            ["quitter"] => {
                if storage::get(b"started").is_some() {
                    lifecycle::stop(host::self_address()).expect("stop myself");
                    return Err("quitter: quits on its restart".into());
                }
                storage::set(b"started", b"").map_err(|e| format!("quitter: {e:?}"))?;
                Role::Quitter
            }
            // Its first `init` requests `o` from `target` and stores the
            // request's id; a later one (an upgrade's) cancels that id and
            // stores whether the cancel took (`cancelled`: 1 or 0). Then a
            // keeper.
            ["heir", target] => {
                match storage::get(b"asked") {
                    Some(id) => {
                        let took = host::cancel(u64_at(&id, 0));
                        storage::set(b"cancelled", &[u8::from(took)])
                            .map_err(|e| format!("heir: {e:?}"))?;
                    }
                    None => {
                        let to =
                            host::lookup(target).ok_or_else(|| format!("heir: no `{target}`"))?;
                        let id = host::request(to, b"o", SUB_REQUEST_TIMEOUT_NS)
                            .map_err(|e| format!("heir: {e:?}"))?;
                        storage::set(b"asked", &id.to_le_bytes())
                            .map_err(|e| format!("heir: {e:?}"))?;
                    }
                }
                Role::Keeper
            }
            ["keeper"] => {
                let inits = storage::get(b"inits").map_or(0, |v| u32_at(&v, 0));
                let code = match storage::set(b"inits", &(inits + 1).to_le_bytes()) {
                    Ok(()) => 0,
                    Err(storage::StorageError::Unavailable) => 3,
                    Err(e) => return Err(format!("keeper: {e:?}")),
                };
                INIT_SET.with(|c| c.set(code));
                Role::Keeper
            }
            ["clock"] => Role::Clock(Clock::default()),
            ["relay", name, rest @ ..] => Role::Relay(Relay {
                name: name.to_string(),
                answer_at_once: rest == ["answer"],
                ..Relay::default()
            }),
            ["tracer", rest @ ..] => Role::Tracer(Tracer {
                next: rest.first().map(|n| n.to_string()),
                ..Tracer::default()
            }),
            ["slow", ms] => Role::Slow(ms.parse().map_err(|e| format!("slow: {e}"))?),
            ["subscriber", topics @ ..] => {
                for t in topics {
                    topics::subscribe(t).map_err(|e| format!("subscribe `{t}`: {e:?}"))?;
                }
                Role::Subscriber(Subscriber::default())
            }
            ["parent", component] => Role::Parent(Parent {
                component: component.to_string(),
                ..Parent::default()
            }),
            // Busy for `ms` milliseconds in `init` (a slow start), then a
            // `forward` actor.
            ["slow-forward", ms, to] => {
                let ms: u64 = ms.parse().map_err(|e| format!("slow-forward: {e}"))?;
                let until = host::now_ns() + ms * 1_000_000;
                while host::now_ns() < until {}
                let to = host::lookup(to).ok_or_else(|| format!("slow-forward: no `{to}`"))?;
                host::send(to, b"up").map_err(|e| format!("slow-forward: {e:?}"))?;
                Role::Forward { to, forwarded: 0 }
            }
            ["forward", to, rest @ ..] => {
                if let [gate] = rest
                    && host::lookup(gate).is_none()
                {
                    return Err(format!("forward: `{gate}` is not registered"));
                }
                let to = host::lookup(to).ok_or_else(|| format!("forward: no `{to}`"))?;
                host::send(to, b"up").map_err(|e| format!("forward: {e:?}"))?;
                Role::Forward { to, forwarded: 0 }
            }
            _ => return Err(format!("unknown role `{config}`")),
        };
        ROLE.with_borrow_mut(|r| *r = Some(role));
        Ok(())
    }

    fn handle_message(from: Address, payload: Vec<u8>) {
        with_role(|role| match role {
            Role::Sink(s) => s.tell(from, payload),
            Role::Source(s) => s.tell(from, payload),
            Role::Requester(r) => r.tell(from, payload),
            Role::Echo(e) => e.tell(from),
            Role::Deferring(d) => d.answer_all(),
            Role::Trap(_) if payload == b"panic" => panic!("trap: panic on command"),
            Role::Trap(d) => d.answer_all(),
            Role::Ops(o) if from == host::self_address() && payload == b"self" => o.selfs += 1,
            Role::Ops(_) if payload == b"panic" => panic!("ops: panic on command"),
            Role::Ops(_) => {}
            Role::Forward { .. } if payload == b"panic" => panic!("forward: panic on command"),
            Role::Keeper if payload == b"panic" => panic!("keeper: panic on command"),
            Role::Quitter if payload == b"panic" => panic!("quitter: panic on command"),
            Role::Forward { to, forwarded } => {
                host::send(*to, &payload).expect("forwarded");
                *forwarded += 1;
            }
            Role::Clock(_) | Role::Subscriber(_) if payload == b"panic" => {
                panic!("panic on command")
            }
            Role::Clock(c) => c.tell(from, &payload),
            Role::Subscriber(s) => s.tell(from, &payload),
            Role::Proxy(_)
            | Role::Silent
            | Role::Framer
            | Role::Parent(_)
            | Role::Keeper
            | Role::Quitter
            | Role::Relay(_)
            | Role::Slow(_) => {}
            Role::Tracer(t) => t.tell(payload),
        })
    }

    fn handle_request(from: Address, id: RequestId, payload: Vec<u8>) -> Option<Vec<u8>> {
        with_role(|role| match role {
            Role::Echo(e) => Some(e.request(from, id, payload)),
            Role::Deferring(d) => {
                d.held.push((id, payload));
                None
            }
            Role::Proxy(p) => {
                p.request(id, payload);
                None
            }
            Role::Trap(_) if payload == b"panic" => panic!("trap: panic before answering"),
            Role::Trap(_) if payload == b"respond-then-panic" => {
                host::respond(id, &pattern::transform(&payload)).expect("first answer");
                panic!("trap: panic after answering")
            }
            Role::Trap(d) => {
                d.held.push((id, payload));
                None
            }
            Role::Ops(o) => Some(o.command(&payload)),
            Role::Framer => {
                let (sent, error) = match payload.split_first() {
                    Some((0, frames)) => batch_host::send_frames(frames),
                    Some((1, big)) if big.len() == 12 => {
                        let to = &big[..8];
                        let len = u32::from_le_bytes(big[8..].try_into().unwrap());
                        let mut frames = Vec::new();
                        for body in [&b"4"[..], &vec![0; len as usize], b"5"] {
                            frames.extend_from_slice(to);
                            frames.extend_from_slice(&(body.len() as u32).to_le_bytes());
                            frames.extend_from_slice(body);
                        }
                        batch_host::send_frames(&frames)
                    }
                    _ => panic!("framer: bad command"),
                };
                Some(encode(&[sent, code(error.map_or(Ok(()), Err))]))
            }
            Role::Forward { .. } if payload == b"panic" => panic!("forward: panic on request"),
            Role::Forward { forwarded, .. } => Some(forwarded.to_le_bytes().to_vec()),
            Role::Parent(p) => Some(p.command(&payload)),
            Role::Keeper => Some(keeper(&payload)),
            Role::Clock(c) => Some(c.command(&payload)),
            Role::Relay(r) => r.request(id, payload),
            Role::Tracer(t) => t.request(id, payload),
            Role::Slow(ms) => {
                let until = host::now_ns() + *ms * 1_000_000;
                while host::now_ns() < until {}
                Some(pattern::transform(&payload))
            }
            Role::Subscriber(s) => Some(s.command(&payload)),
            Role::Quitter if payload == b"stop-then-panic" => {
                lifecycle::stop(host::self_address()).expect("stop myself");
                panic!("quitter: panic after stopping")
            }
            Role::Quitter => Some(Vec::new()),
            Role::Sink(_) | Role::Source(_) | Role::Silent | Role::Requester(_) => None,
        })
    }

    fn handle_response(id: RequestId, response: Result<Vec<u8>, RequestError>) {
        with_role(|role| match role {
            Role::Requester(r) => r.response(id, response),
            Role::Proxy(p) => p.response(id, response),
            Role::Parent(p) => p.ended(id, response),
            Role::Relay(r) => r.response(id, response),
            Role::Tracer(t) => t.response(id, response),
            Role::Ops(o) if response.is_ok() => o.replies += 1,
            Role::Ops(o) => o.failures += 1,
            _ => host::log(LogLevel::Warn, &format!("unexpected response for {id:#x}")),
        })
    }
}

export!(Roles);
