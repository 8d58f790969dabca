//! Request–response: correlation, deferral, timeouts, cancellation, failure.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmshard::{
    Address, Context, LogRecord, NativeActor, RequestError, Runtime, RuntimeBuilder, SendError,
    SpawnOptions,
};

use crate::support::*;

/// How each request ended: (id, outcome).
type Ended = Arc<Mutex<Vec<(u64, Result<Vec<u8>, RequestError>)>>>;
/// How each request ended, with the time it took: (id, ns, outcome).
type TimedEnded = Arc<Mutex<Vec<(u64, u64, Result<Vec<u8>, RequestError>)>>>;

/// Log lines captured from components.
type Logs = Arc<Mutex<Vec<LogRecord>>>;

fn logging(builder: RuntimeBuilder) -> (Runtime, Logs) {
    let logs: Logs = Arc::default();
    let sink = logs.clone();
    let rt = builder
        .log_sink(move |r: &LogRecord| sink.lock().unwrap().push(r.clone()))
        .build()
        .unwrap();
    (rt, logs)
}

/// The "done …" line a requester fixture logged.
fn outcome(logs: &Logs, requester: &str) -> String {
    let logs = logs.lock().unwrap();
    let lines: Vec<_> = logs
        .iter()
        .filter(|r| &*r.name == requester && r.message.starts_with("done"))
        .collect();
    assert_eq!(lines.len(), 1, "{requester} should report once: {logs:?}");
    lines[0].message.clone()
}

fn expect(ok: u64, timeout: u64, failed: u64, stopped: u64) -> String {
    format!(
        "done ok={ok} timeout={timeout} cancelled=0 failed={failed} stopped={stopped} unknown=0 mismatched=0 refused=0"
    )
}

fn round_trips(requester_shard: usize, responder_shard: usize, shards: usize) {
    let (rt, logs) = logging(builder(shards));
    let requester = load(&rt, "requester.wat");
    let responder = load(&rt, "responder.wat");
    rt.spawn(
        &responder,
        SpawnOptions::new("responder").shard(responder_shard),
    )
    .unwrap();
    let r = rt
        .spawn(
            &requester,
            SpawnOptions::new("requester")
                .config("1000 60000 responder")
                .shard(requester_shard),
        )
        .unwrap();
    rt.send(r, b"go").unwrap();
    assert!(rt.wait_idle(IDLE));
    // Every reply carried the sequence number recorded for its id: mismatched=0.
    assert_eq!(outcome(&logs, "requester"), expect(1000, 0, 0, 0));
    let stats = rt.stats();
    let shard = &stats.shards[requester_shard];
    assert_eq!(
        (
            shard.requests.made,
            shard.requests.answered,
            shard.requests.open
        ),
        (1000, 1000, 0)
    );
    assert_eq!(stats.actor("responder").unwrap().handled, 1000);
}

#[test]
fn round_trips_on_one_shard() {
    round_trips(0, 0, 1);
}

#[test]
fn round_trips_across_shards() {
    round_trips(0, 1, 2);
}

#[test]
fn deferred_reply_after_a_sub_request() {
    // A → B → C: B defers each request and answers once C has replied.
    let (rt, logs) = logging(builder(2).mailbox_capacity(4096));
    let requester = load(&rt, "requester.wat");
    let deferring = load(&rt, "deferring.wat");
    let responder = load(&rt, "responder.wat");
    rt.spawn(&responder, SpawnOptions::new("c").shard(1))
        .unwrap();
    rt.spawn(&deferring, SpawnOptions::new("b").config("c").shard(0))
        .unwrap();
    let a = rt
        .spawn(
            &requester,
            SpawnOptions::new("a").config("200 60000 b").shard(1),
        )
        .unwrap();
    rt.send(a, b"go").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(outcome(&logs, "a"), expect(200, 0, 0, 0));
    let stats = rt.stats();
    assert_eq!(
        stats.actor("b").unwrap().sent,
        200,
        "B made one sub-request per request"
    );
    assert_eq!(stats.actor("c").unwrap().handled, 200);
}

#[test]
fn timeouts_fire_once_with_timeout() {
    let (rt, logs) = logging(builder(2));
    let requester = load(&rt, "requester.wat");
    let silent = load(&rt, "silent.wat");
    rt.spawn(&silent, SpawnOptions::new("silent").shard(1))
        .unwrap();
    let r = rt
        .spawn(
            &requester,
            SpawnOptions::new("r").config("50 20 silent").shard(0),
        )
        .unwrap();
    rt.send(r, b"go").unwrap();
    assert!(
        rt.wait_idle(IDLE),
        "an idle shard with open requests wakes at their deadline"
    );
    // Each ended exactly once: a second end would make the requester report again
    // (outcome() checks it reported exactly once) and push ended past the count.
    assert_eq!(outcome(&logs, "r"), expect(0, 50, 0, 0));
    assert_eq!(rt.stats().shards[0].requests.timed_out, 50);
}

/// A native requester that records when each request was made and how it ended.
struct Timed {
    target: Address,
    timeout_ns: u64,
    count: u64,
    made: Vec<(u64, u64)>,
    ended: TimedEnded,
}

impl NativeActor for Timed {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, _: &[u8]) {
        for _ in 0..self.count {
            let id = ctx
                .request(self.target, b"?", Duration::from_nanos(self.timeout_ns))
                .unwrap();
            self.made.push((id, ctx.now_ns()));
        }
    }

    fn handle_response(
        &mut self,
        ctx: &mut Context<'_>,
        id: u64,
        response: Result<&[u8], RequestError>,
    ) {
        let made = self
            .made
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, t)| *t)
            .expect("a response for an id I made");
        self.ended
            .lock()
            .unwrap()
            .push((id, ctx.now_ns() - made, response.map(<[u8]>::to_vec)));
    }
}

#[test]
fn timeouts_are_never_early_and_come_within_the_documented_resolution() {
    let rt = builder(1).build().unwrap();
    let silent = load(&rt, "silent.wat");
    let target = rt.spawn(&silent, SpawnOptions::new("silent")).unwrap();
    let ended = Arc::default();
    let timeout = Duration::from_millis(30);
    let timed = Timed {
        target,
        timeout_ns: timeout.as_nanos() as u64,
        count: 5,
        made: Vec::new(),
        ended: Arc::clone(&ended),
    };
    let t = rt.spawn_native("timed", None, timed).unwrap();
    rt.send(t, b"go").unwrap();
    assert!(rt.wait_idle(IDLE));
    let ended = ended.lock().unwrap();
    assert_eq!(ended.len(), 5);
    for (_, elapsed, outcome) in ended.iter() {
        assert_eq!(outcome, &Err(RequestError::Timeout));
        assert!(
            *elapsed >= timeout.as_nanos() as u64,
            "fired early: {elapsed} ns"
        );
        // Resolution: one poll tick (1 ms) plus scheduling; a generous bound so a
        // loaded machine cannot fail it, while a timer that never fired would.
        assert!(*elapsed < (timeout + Duration::from_secs(5)).as_nanos() as u64);
    }
}

/// A native requester making `count` requests with a short timeout.
struct Flood {
    target: Address,
    count: u32,
    seen: Arc<Mutex<(HashSet<u64>, u64)>>,
}

impl NativeActor for Flood {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, _: &[u8]) {
        for _ in 0..self.count {
            ctx.request(self.target, &[], Duration::from_millis(200))
                .unwrap();
        }
    }

    fn handle_response(
        &mut self,
        _: &mut Context<'_>,
        id: u64,
        response: Result<&[u8], RequestError>,
    ) {
        assert_eq!(response, Err(RequestError::Timeout));
        let mut seen = self.seen.lock().unwrap();
        if !seen.0.insert(id) {
            seen.1 += 1; // ended twice
        }
    }
}

/// A native responder that takes requests and never answers.
struct Mute;

impl NativeActor for Mute {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}
}

/// An actor that goes with a request and a monitor open: the request is
/// counted abandoned, the monitor is not (monitors are not requests made), so
/// the request counts still add up.
#[test]
fn an_ending_actor_abandons_its_requests_and_not_its_monitors() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(4)
        .build_manual()
        .unwrap();
    let mute = rt.spawn_native("mute", Some(0), Mute).unwrap();
    let watcher = rt
        .spawn_native(
            "watcher",
            Some(0),
            move |ctx: &mut Context<'_>, _, _: &[u8]| {
                ctx.monitor(mute).unwrap();
                ctx.request(mute, b"q", Duration::from_secs(600)).unwrap();
            },
        )
        .unwrap();
    rt.send(watcher, b"go").unwrap();
    rt.run_until_stalled();
    let r = rt.stats().shards[0].requests;
    assert_eq!((r.made, r.open, r.monitors), (1, 2, 1));
    rt.stop(watcher).unwrap();
    rt.run_until_stalled();
    let r = rt.stats().shards[0].requests;
    assert_eq!((r.open, r.monitors, r.abandoned), (0, 0, 1));
    assert_eq!(
        r.made,
        r.answered + r.timed_out + r.cancelled + r.revoked + r.failed + r.abandoned + r.open
            - r.monitors
    );
}

/// Cancels of requests still queued shed them when their turn comes, while
/// the cancels of requests already started, many more, come in beside them
/// (the marks of those are let go once they outnumber what could be queued;
/// the queued ones' marks must stay).
#[test]
fn queued_requests_cancelled_among_many_started_ones_are_still_shed() {
    // One envelope a turn: a pass of 256 turns starts 256 of the 310.
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(4)
        .batch(1)
        .build_manual()
        .unwrap();
    let mute = rt.spawn_native("mute", Some(0), Mute).unwrap();
    let ask = || rt.request(mute, b"q", Duration::from_secs(600)).unwrap();
    let started: Vec<_> = (0..256).map(|_| ask()).collect();
    let rest: Vec<_> = (0..44).map(|_| ask()).collect();
    let mut queued: Vec<_> = (0..10).map(|_| ask()).collect();
    assert!(rt.step());
    let handled = |rt: &Runtime| rt.stats().actors[0].handled;
    assert_eq!(handled(&rt), 256);
    // Five queued ones first, then the 256 started ones.
    for reply in queued.drain(..5) {
        assert!(reply.cancel());
    }
    for reply in started {
        assert!(reply.cancel());
    }
    rt.run_until_stalled();
    let stats = rt.stats();
    assert_eq!(stats.shards[0].expired, 5);
    assert_eq!(handled(&rt), 256 + 44 + 5);
    assert!(rest.iter().chain(&queued).all(|r| r.try_get().is_none()));
}

#[test]
fn a_million_outstanding_requests_all_end_exactly_once() {
    const N: u32 = 1_000_000;
    let rt = builder(2)
        .mailbox_capacity(N)
        .max_open_requests(N)
        .build()
        .unwrap();
    let mute = rt.spawn_native("mute", Some(1), Mute).unwrap();
    let seen = Arc::default();
    let flood = rt
        .spawn_native(
            "flood",
            Some(0),
            Flood {
                target: mute,
                count: N,
                seen: Arc::clone(&seen),
            },
        )
        .unwrap();
    rt.send(flood, b"go").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(300)));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.0.len(), N as usize);
    assert_eq!(seen.1, 0, "no request ended twice");
    let shard = &rt.stats().shards[0];
    assert_eq!(
        (
            shard.requests.made,
            shard.requests.timed_out,
            shard.requests.open
        ),
        (N as u64, N as u64, 0)
    );
}

/// A native responder that defers every request and answers them all when told to.
struct Later {
    held: Vec<u64>,
}

impl NativeActor for Later {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, _: &[u8]) {
        for id in self.held.drain(..) {
            ctx.respond(id, &id.to_le_bytes()).unwrap();
        }
    }

    fn handle_request(
        &mut self,
        _: &mut Context<'_>,
        _: Address,
        id: u64,
        _: &[u8],
    ) -> Option<Vec<u8>> {
        self.held.push(id);
        None
    }
}

/// A native requester driven by the host: "req" makes a request, "cancel" cancels
/// the last one. It records every id it made, what cancel returned, and every
/// response.
#[derive(Default)]
struct Driven {
    target: Option<Address>,
    made: Arc<Mutex<Vec<u64>>>,
    cancels: Arc<Mutex<Vec<bool>>>,
    responses: Ended,
}

impl NativeActor for Driven {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        match payload {
            b"req" => {
                let id = ctx
                    .request(self.target.unwrap(), b"q", Duration::from_secs(60))
                    .unwrap();
                self.made.lock().unwrap().push(id);
            }
            b"cancel" => {
                let id = *self.made.lock().unwrap().last().unwrap();
                self.cancels.lock().unwrap().push(ctx.cancel(id));
            }
            _ => {}
        }
    }

    fn handle_response(
        &mut self,
        _: &mut Context<'_>,
        id: u64,
        response: Result<&[u8], RequestError>,
    ) {
        self.responses
            .lock()
            .unwrap()
            .push((id, response.map(<[u8]>::to_vec)));
    }
}

/// Waits until `name` has handled `n` envelopes (for systems with requests still
/// open, which are not idle).
fn handled(rt: &Runtime, name: &str, n: u64) {
    let deadline = std::time::Instant::now() + IDLE;
    while rt.stats().actor(name).unwrap().handled < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never handled {n}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn driven(rt: &Runtime, later: Address) -> (Address, Driven) {
    let d = Driven {
        target: Some(later),
        ..Driven::default()
    };
    let handles = Driven {
        target: None,
        made: d.made.clone(),
        cancels: d.cancels.clone(),
        responses: d.responses.clone(),
    };
    (rt.spawn_native("driven", Some(0), d).unwrap(), handles)
}

#[test]
fn cancel_suppresses_the_response_and_the_late_reply_is_counted() {
    let rt = builder(2).build().unwrap();
    let later = rt
        .spawn_native("later", Some(1), Later { held: Vec::new() })
        .unwrap();
    let (d, h) = driven(&rt, later);
    rt.send(d, b"req").unwrap();
    handled(&rt, "later", 1);
    rt.send(d, b"cancel").unwrap();
    rt.send(d, b"cancel").unwrap();
    assert!(rt.wait_idle(IDLE), "nothing is open after the cancel");
    assert_eq!(
        *h.cancels.lock().unwrap(),
        vec![true, false],
        "open once, then not"
    );
    rt.send(later, b"answer now").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert!(
        h.responses.lock().unwrap().is_empty(),
        "a cancelled request gets no response"
    );
    let shard = &rt.stats().shards[0];
    assert_eq!(
        (
            shard.requests.cancelled,
            shard.requests.late,
            shard.requests.open
        ),
        (1, 1, 0)
    );
}

#[test]
fn a_reply_to_a_reused_slot_does_not_reach_the_new_request() {
    // Manual, so each step runs to completion at once while requests stay open;
    // the responder holds over 4096 deferred requests, beyond the default cap.
    let rt = builder(2).max_open_requests(8192).build_manual().unwrap();
    let later = rt
        .spawn_native("later", Some(1), Later { held: Vec::new() })
        .unwrap();
    let (d, h) = driven(&rt, later);
    let slot = |id: u64| id >> 32;
    rt.send(d, b"req").unwrap();
    rt.run_until_stalled();
    let first = h.made.lock().unwrap()[0];
    // The table reuses a slot only once 4096 others are free, first freed first:
    // cancel and make requests until one lands in the first one's slot.
    loop {
        rt.send(d, b"cancel").unwrap();
        rt.run_until_stalled();
        rt.send(d, b"req").unwrap();
        rt.run_until_stalled();
        let made = h.made.lock().unwrap();
        if slot(*made.last().unwrap()) == slot(first) {
            break;
        }
        assert!(made.len() < 10_000, "the first slot is never reused");
    }
    let made = h.made.lock().unwrap().clone();
    let newest = *made.last().unwrap();
    assert_ne!(newest, first, "the reused slot has a new generation");
    assert!(made.len() > 4096, "reused after {} requests", made.len());
    // The responder answers every request it holds, the stale ones first.
    rt.send(later, b"answer now").unwrap();
    rt.run_until_stalled();
    let responses = h.responses.lock().unwrap();
    assert_eq!(
        *responses,
        vec![(newest, Ok(newest.to_le_bytes().to_vec()))]
    );
    assert_eq!(rt.stats().shards[0].requests.late, made.len() as u64 - 1);
}

#[test]
fn a_trapping_responder_fails_its_open_requests_at_once() {
    let (rt, logs) = logging(builder(2));
    let requester = load(&rt, "requester.wat");
    let silent = load(&rt, "silent.wat");
    let s = rt
        .spawn(&silent, SpawnOptions::new("silent").shard(1))
        .unwrap();
    // A one-hour timeout: only target-failed can end these within the test.
    let r = rt
        .spawn(
            &requester,
            SpawnOptions::new("r").config("20 3600000 silent").shard(0),
        )
        .unwrap();
    rt.send(r, b"go").unwrap();
    // Wait until silent holds all twenty, deferred.
    handled(&rt, "silent", 20);
    rt.send(s, b"boom").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(outcome(&logs, "r"), expect(0, 0, 20, 0));
    assert!(rt.stats().actor("silent").unwrap().failure.is_some());
}

#[test]
fn requests_to_a_stopped_responder_end_with_target_stopped() {
    let rt = builder(2).build().unwrap();
    let later = rt
        .spawn_native("later", Some(1), Later { held: Vec::new() })
        .unwrap();
    let (d, h) = driven(&rt, later);
    rt.send(d, b"req").unwrap();
    handled(&rt, "later", 1);
    rt.stop(later).unwrap();
    assert!(rt.wait_idle(IDLE));
    let made = h.made.lock().unwrap()[0];
    assert_eq!(
        *h.responses.lock().unwrap(),
        vec![(made, Err(RequestError::TargetStopped))]
    );
}

#[test]
fn double_and_foreign_responds_are_refused() {
    let (rt, logs) = logging(builder(1));
    let doubler = load(&rt, "doubler.wat");
    let d = rt.spawn(&doubler, SpawnOptions::new("doubler")).unwrap();
    let reply = rt.request(d, b"payload", Duration::from_secs(60)).unwrap();
    assert_eq!(reply.wait(IDLE), Some(Ok(b"payload".to_vec())));
    assert!(rt.wait_idle(IDLE));
    let logs = logs.lock().unwrap();
    // first ok; second and foreign refused with unknown-target (case 0, logged as 1).
    assert_eq!(logs[0].message, "first=0 second=1 foreign=1");
}

#[test]
fn host_requests_can_be_waited_on_or_polled() {
    let rt = builder(2).build().unwrap();
    let responder = load(&rt, "responder.wat");
    let silent = load(&rt, "silent.wat");
    let r = rt
        .spawn(&responder, SpawnOptions::new("responder").shard(1))
        .unwrap();
    let s = rt
        .spawn(&silent, SpawnOptions::new("silent").shard(0))
        .unwrap();
    let reply = rt.request(r, b"hello", Duration::from_secs(60)).unwrap();
    assert_eq!(reply.wait(IDLE), Some(Ok(b"hello".to_vec())));
    let pending = rt
        .request(s, b"anyone?", Duration::from_millis(20))
        .unwrap();
    assert_eq!(pending.try_get(), None);
    assert_eq!(pending.wait(IDLE), Some(Err(RequestError::Timeout)));
    assert_eq!(
        rt.request(Address::from_bits(99), b"x", IDLE).unwrap_err(),
        SendError::UnknownTarget
    );
}

#[test]
fn open_requests_are_capped_per_actor() {
    let rt = builder(1).max_open_requests(3).build().unwrap();
    let results = Arc::new(Mutex::new(Vec::new()));
    let r2 = results.clone();
    let mute = rt.spawn_native("mute", None, Mute).unwrap();
    let a = rt
        .spawn_native("a", None, move |ctx: &mut Context<'_>, _, _: &[u8]| {
            for _ in 0..4 {
                r2.lock()
                    .unwrap()
                    .push(ctx.request(mute, b"", Duration::from_secs(60)).map(|_| ()));
            }
        })
        .unwrap();
    rt.send(a, b"go").unwrap();
    assert!(
        !rt.wait_idle(Duration::from_millis(200)),
        "three requests stay open"
    );
    assert_eq!(
        *results.lock().unwrap(),
        vec![Ok(()), Ok(()), Ok(()), Err(SendError::TooManyRequests)]
    );
}

/// Regression: a request whose handler traps ended twice (once from the actor's
/// answerable set, once as the envelope it failed on), the second counted as a
/// late reply. It ends once, with `target-failed`.
#[test]
fn a_request_whose_handler_traps_ends_once() {
    let rt = builder(1).build().unwrap();
    let text = std::fs::read_to_string(fixture("trap.wat")).unwrap();
    let body = "(global.set $heap (i32.const 4096))\n    (i32.store8 (i32.const 16) (i32.const 0))\n    (i32.const 16))";
    assert!(text.contains(body));
    let trapping = text.replacen(body, "unreachable)", 1);
    let c = rt
        .load_component("trap-on-request", trapping.as_bytes())
        .unwrap();
    let a = rt.spawn(&c, SpawnOptions::new("t")).unwrap();
    let reply = rt.request(a, b"x", Duration::from_secs(3600)).unwrap();
    assert_eq!(reply.wait(IDLE), Some(Err(RequestError::TargetFailed)));
    assert!(rt.wait_idle(IDLE));
    let shard = &rt.stats().shards[0];
    assert_eq!((shard.requests.failed, shard.requests.late), (1, 0));
}

/// A request cancelled while its responder held it (deferred) stayed held,
/// counted against the responder's `max-open-requests`, until its timeout: a
/// requester that asked and cancelled could fill the responder's room for
/// deferrals, and every other requester's deferral failed with `target-failed`.
#[test]
fn a_cancelled_request_is_no_longer_held_by_its_responder() {
    let rt = builder(2).max_open_requests(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let holder = spawn_holder(&rt, &g);
    for _ in 0..3 {
        let r = rt
            .request(holder, b"ask", Duration::from_secs(3600))
            .unwrap();
        eventually("the holder holds the request", || held(&rt) == 1);
        assert!(r.cancel());
        // Idle: the cancel reached the holder's shard.
        assert!(rt.wait_idle(IDLE));
        assert_eq!(held(&rt), 0, "the cancelled request is let go");
    }
    // The room is there for the next two, which are answered.
    two_more_are_held_and_answered(&rt, holder);
    assert!(rt.wait_idle(IDLE));
    // An answer to a cancelled request is taken and discarded as late. The
    // holder keeps at most `max-open-requests` (2) of those: the third
    // cancel made it forget the first two (answers to them say
    // `unknown-target`), so one is late.
    let stats = rt.stats();
    assert!(stats.actor("holder").unwrap().alive);
    let late: u64 = stats.shards.iter().map(|s| s.requests.late).sum();
    assert_eq!(late, 1);
}

/// A requester that went away (stopped, failed, replaced) left its requests
/// with their targets: a deferred one counted against the responder's
/// `max-open-requests` until its deadline (an hour here), so requesters that
/// asked and were stopped filled the responder's room for deferrals, as
/// cancels did.
#[test]
fn a_stopped_requester_s_deferred_requests_are_let_go() {
    let rt = builder(2).max_open_requests(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let holder = spawn_holder(&rt, &g);
    for i in 0..3 {
        let asker = rt
            .spawn_native(
                &format!("asker {i}"),
                Some(0),
                move |ctx: &mut Context<'_>, _: Address, _: &[u8]| {
                    ctx.request(holder, b"ask", Duration::from_secs(3600))
                        .unwrap();
                },
            )
            .unwrap();
        rt.send(asker, b"go").unwrap();
        eventually("the holder holds the request", || held(&rt) == 1);
        rt.stop(asker).unwrap();
        // Idle: the asker's request was abandoned, and the holder heard.
        assert!(rt.wait_idle(IDLE));
        assert_eq!(held(&rt), 0, "the abandoned request is let go");
    }
    two_more_are_held_and_answered(&rt, holder);
}

/// The `holder` (the test guest's `deferring` role) on shard 1: it holds every
/// request until a tell makes it answer them all.
fn spawn_holder(rt: &Runtime, g: &wasmshard::Component) -> Address {
    rt.spawn(g, SpawnOptions::new("holder").config("deferring").shard(1))
        .unwrap()
}

/// Requests the `holder` holds now.
fn held(rt: &Runtime) -> u64 {
    rt.stats().actor("holder").unwrap().deferred
}

/// The `holder`, with room for two (`max-open-requests`), holds two host
/// requests (neither fails) and answers both when told.
fn two_more_are_held_and_answered(rt: &Runtime, holder: Address) {
    let asked: Vec<_> = (0..2)
        .map(|_| {
            rt.request(holder, b"ask", Duration::from_secs(3600))
                .unwrap()
        })
        .collect();
    eventually("the holder holds both", || held(rt) == 2);
    for r in &asked {
        assert_eq!(r.try_get(), None, "held, not failed");
    }
    rt.send(holder, b"now").unwrap();
    for r in asked {
        assert!(matches!(r.wait(IDLE), Some(Ok(_))));
    }
}

/// A response waiting in the mailbox of a requester that was stopped went
/// uncounted (the same response, queued for a requester that was restarted,
/// counted as late).
#[test]
fn a_response_queued_for_a_stopped_requester_counts_as_late() {
    struct Answers;
    impl NativeActor for Answers {
        fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}
        fn handle_request(
            &mut self,
            ctx: &mut Context<'_>,
            from: Address,
            id: u64,
            _: &[u8],
        ) -> Option<Vec<u8>> {
            // The answer reaches the requester's mailbox, then the stop ends it
            // before its next turn.
            ctx.respond(id, b"answer").unwrap();
            ctx.stop(from).unwrap();
            None
        }
    }
    let rt = builder(1).build().unwrap();
    let answers = rt.spawn_native("answers", Some(0), Answers).unwrap();
    let asker = rt
        .spawn_native(
            "asker",
            Some(0),
            move |ctx: &mut Context<'_>, _: Address, _: &[u8]| {
                ctx.request(answers, b"q", IDLE).unwrap();
            },
        )
        .unwrap();
    rt.send(asker, b"go").unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    assert!(!stats.actor("asker").unwrap().alive);
    let r = &stats.shards[0].requests;
    assert_eq!((r.answered, r.late), (1, 1), "{r:?}");
}

/// An actor that stopped itself and then made a request, in one call, had its
/// request revoked before the request itself was routed: the responder, which
/// found nothing queued to shed, started it and held it until its deadline.
#[test]
fn a_request_made_after_a_stop_of_oneself_is_revoked_after_it_is_routed() {
    let rt = builder(1).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let holder = rt
        .spawn(&g, SpawnOptions::new("holder").config("deferring").shard(0))
        .unwrap();
    let quits = rt
        .spawn_native(
            "quits",
            Some(0),
            move |ctx: &mut Context<'_>, _: Address, _: &[u8]| {
                ctx.stop(ctx.self_address()).unwrap();
                ctx.request(holder, b"ask", Duration::from_secs(3600))
                    .unwrap();
            },
        )
        .unwrap();
    rt.send(quits, b"go").unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    assert!(!stats.actor("quits").unwrap().alive);
    let holder = stats.actor("holder").unwrap();
    assert_eq!(holder.deferred, 0, "the request was shed, not held");
    assert_eq!(holder.handled, 0);
}

/// A host request's timeout was kept only by the target's shard, between two
/// turns: while a turn held the shard (a native actor's handler, or a guest's
/// with no CPU budget), `wait` went on past the timeout, for ever if the turn
/// never ended. The handle keeps the deadline too now.
#[test]
fn a_host_request_times_out_while_its_target_s_shard_is_busy() {
    let rt = builder(1).build().unwrap();
    let (blocker, entered, release) = blocker(&rt, 0);
    let silent = rt
        .spawn_native(
            "silent",
            Some(0),
            |_: &mut Context<'_>, _: Address, _: &[u8]| {},
        )
        .unwrap();
    rt.send(blocker, b"hold").unwrap();
    entered.recv().unwrap();
    // One dropped past its deadline, never looked at: timed out too.
    let unseen = rt.request(silent, b"?", Duration::from_millis(1)).unwrap();
    let pending = rt.request(silent, b"?", Duration::from_millis(20)).unwrap();
    assert!(
        format!("{pending:?}").contains("ended: false"),
        "a look that ends nothing"
    );
    assert_eq!(
        pending.wait(Duration::from_secs(60)),
        Some(Err(RequestError::Timeout))
    );
    assert_eq!(pending.try_get(), Some(Err(RequestError::Timeout)));
    drop(unseen);
    release.send(()).unwrap();
    assert!(rt.wait_idle(IDLE));
    let r = &rt.stats().shards[0].requests;
    assert_eq!(
        (r.made, r.timed_out, r.cancelled, r.open),
        (2, 2, 0, 0),
        "{r:?}"
    );
    assert_eq!(rt.stats().actor("silent").unwrap().handled, 0, "shed");
}

/// A host request that timed out where the host looked, while its reply was
/// on its way, was counted as cancelled by the shard that took the reply.
#[test]
fn a_host_timeout_that_races_the_reply_counts_as_timed_out() {
    struct Slow(Arc<Mutex<Option<wasmshard::PendingReply>>>);
    impl NativeActor for Slow {
        fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {
            // Past the request's deadline, the host's handle (looked at from
            // here) ends it with `timeout`; the reply comes next, this turn.
            std::thread::sleep(Duration::from_millis(5));
            let pending = self.0.lock().unwrap();
            let got = pending.as_ref().unwrap().try_get();
            assert_eq!(got, Some(Err(RequestError::Timeout)));
        }
        fn handle_request(
            &mut self,
            _: &mut Context<'_>,
            _: Address,
            _: u64,
            _: &[u8],
        ) -> Option<Vec<u8>> {
            Some(b"late".to_vec())
        }
    }
    let rt = builder(1).build_manual().unwrap();
    let held: Arc<Mutex<Option<wasmshard::PendingReply>>> = Arc::default();
    let slow = rt
        .spawn_native("slow", Some(0), Slow(held.clone()))
        .unwrap();
    rt.send(slow, b"slow").unwrap();
    let pending = rt.request(slow, b"q", Duration::from_millis(1)).unwrap();
    *held.lock().unwrap() = Some(pending);
    rt.run_until_stalled();
    let r = &rt.stats().shards[0].requests;
    assert_eq!(
        (r.made, r.timed_out, r.cancelled, r.open),
        (1, 1, 0, 0),
        "{r:?}"
    );
    assert_eq!(rt.stats().actor("slow").unwrap().handled, 2);
}
