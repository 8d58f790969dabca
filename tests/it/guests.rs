//! The Rust test guest (`tests/guests/roles`, an ordinary `wit-bindgen` program
//! that allocates and frees as Rust code does) driven through the public API:
//! tells, immediate and deferred replies, cancel, timeouts and traps, every payload
//! checked byte for byte. The guest's crate docs describe its roles and commands.

use std::time::Duration;

use wasmshard::{
    Address, Component, Context, FailureKind, NativeActor, RequestError, Runtime, SpawnError,
    SpawnOptions,
};

use crate::pattern;
use crate::support::*;

/// Enough room for every test's burst of tells or requests in one mailbox.
const ROOM: u32 = 4096;
/// A timeout no test waits for.
const HOUR_MS: u32 = 3_600_000;

fn runtime(shards: usize) -> Runtime {
    builder(shards).mailbox_capacity(ROOM).build().unwrap()
}

fn spawn(rt: &Runtime, guest: &Component, name: &str, config: &str, shard: usize) -> Address {
    rt.spawn(guest, SpawnOptions::new(name).config(config).shard(shard))
        .unwrap_or_else(|e| panic!("spawn {name} ({config}): {e}"))
}

fn words(payload: &[u8]) -> Vec<u32> {
    payload
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect()
}

/// Takes the reports the probe received from `from`, as `u32` words.
fn reports(inbox: &Inbox, from: Address) -> Vec<Vec<u32>> {
    let mut inbox = inbox.lock().unwrap();
    let (theirs, others): (Vec<_>, Vec<_>) = inbox.drain(..).partition(|(f, _)| *f == from);
    *inbox = others;
    theirs.iter().map(|(_, p)| words(p)).collect()
}

/// Has `probe` ask `guest` (a sink or a requester) for its report, and returns it.
fn ask(rt: &Runtime, probe: Address, inbox: &Inbox, guest: Address) -> Vec<u32> {
    relay(rt, probe, guest, &[]);
    assert!(rt.wait_idle(IDLE));
    let mut got = reports(inbox, guest);
    assert_eq!(got.len(), 1, "one report from {guest}");
    got.pop().unwrap()
}

/// A requester command: `[target u64, count u32, timeout_ms u32, cancel_every u32]`.
fn requests(target: Address, count: u32, timeout_ms: u32, cancel_every: u32) -> Vec<u8> {
    let mut cmd = target.to_bits().to_le_bytes().to_vec();
    for w in [count, timeout_ms, cancel_every] {
        cmd.extend_from_slice(&w.to_le_bytes());
    }
    cmd
}

/// A source command: `[target u64, count u32]`.
fn tells(target: Address, count: u32) -> Vec<u8> {
    let mut cmd = target.to_bits().to_le_bytes().to_vec();
    cmd.extend_from_slice(&count.to_le_bytes());
    cmd
}

/// A requester's report, by name.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
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

impl Report {
    fn from_words(w: &[u32]) -> Report {
        assert_eq!(w.len(), 11, "a requester report is eleven words");
        Report {
            made: w[0],
            ok: w[1],
            corrupted: w[2],
            timeouts: w[3],
            failed: w[4],
            stopped: w[5],
            other: w[6],
            cancelled: w[7],
            cancel_missed: w[8],
            refused: w[9],
            unexpected: w[10],
        }
    }
}

/// Relays a requester command and returns the one report the requester sends when
/// its requests have all ended (the system must go idle: no timeout left open).
fn run_requester(
    rt: &Runtime,
    probe: Address,
    inbox: &Inbox,
    requester: Address,
    command: &[u8],
) -> Report {
    relay(rt, probe, requester, command);
    assert!(rt.wait_idle(IDLE));
    let mut got = reports(inbox, requester);
    assert_eq!(got.len(), 1, "the requester reports once: {got:?}");
    Report::from_words(&got.pop().unwrap())
}

/// Waits until `name` has handled `n` envelopes (for systems with requests still
/// open, which are not idle).
fn handled(rt: &Runtime, name: &str, n: u64) {
    eventually(&format!("{name} never handled {n}"), || {
        rt.stats().actor(name).unwrap().handled >= n
    });
}

// ---- tells ----

#[test]
fn tells_from_the_host_arrive_byte_for_byte() {
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let sink = spawn(&rt, &g, "sink", "sink", 1);
    for seq in 0..3000 {
        rt.send(sink, &pattern::payload(seq)).unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    assert_eq!(ask(&rt, probe, &inbox, sink), [3000, 0], "[good, bad]");
}

fn tells_between_guests(source_shard: usize, sink_shard: usize, shards: usize) {
    let rt = runtime(shards);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let sink = spawn(&rt, &g, "sink", "sink", sink_shard);
    let source = spawn(&rt, &g, "source", "source", source_shard);
    // Two commands: the second continues the sequence where the first stopped.
    for _ in 0..2 {
        relay(&rt, probe, source, &tells(sink, 1500));
        assert!(rt.wait_idle(IDLE));
        assert_eq!(reports(&inbox, source), [[1500, 0]], "[sent, refused]");
    }
    assert_eq!(ask(&rt, probe, &inbox, sink), [3000, 0], "[good, bad]");
}

#[test]
fn tells_between_guests_on_one_shard_arrive_byte_for_byte() {
    tells_between_guests(0, 0, 1);
}

#[test]
fn tells_between_guests_across_shards_arrive_byte_for_byte() {
    tells_between_guests(0, 1, 2);
}

#[test]
fn tells_from_several_senders_on_both_shards_arrive_byte_for_byte() {
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let sink = spawn(&rt, &g, "sink", "sink", 1);
    let near = spawn(&rt, &g, "near", "source", 1);
    let far = spawn(&rt, &g, "far", "source", 0);
    relay(&rt, probe, near, &tells(sink, 1000));
    relay(&rt, probe, far, &tells(sink, 1000));
    for seq in 0..1000 {
        rt.send(sink, &pattern::payload(seq)).unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    assert_eq!(reports(&inbox, near), [[1000, 0]]);
    assert_eq!(reports(&inbox, far), [[1000, 0]]);
    assert_eq!(ask(&rt, probe, &inbox, sink), [3000, 0], "[good, bad]");
    assert_eq!(rt.stats().dead_letters, 0);
}

/// Exchanges between shards that find the other shard spinning (a long park
/// spin keeps both spinning between rounds): the first envelope of a burst is
/// caught by the spin and run at once, ahead of a whole pass
/// (`ShardStats::hops`), the rest of the burst by the pass that follows;
/// nothing is lost, reordered or corrupted, tells and requests alike.
#[test]
fn hops_between_spinning_shards_lose_and_reorder_nothing() {
    let rt = builder(2)
        .mailbox_capacity(ROOM)
        .park_spin(Duration::from_millis(10))
        .park_spin_max(Duration::from_millis(10))
        .build()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let sink = spawn(&rt, &g, "sink", "sink", 0);
    let source = spawn(&rt, &g, "source", "source", 1);
    let echo = spawn(&rt, &g, "echo", "echo", 1);
    let requester = spawn(&rt, &g, "requester", "requester", 0);
    let (mut told, mut asked) = (0, 0);
    for round in 0..100 {
        // Bursts of 1 to 4: a caught envelope alone, and one with others
        // behind it in its ring.
        let n = round % 4 + 1;
        relay(&rt, probe, source, &tells(sink, n));
        relay(&rt, probe, requester, &requests(echo, n, HOUR_MS, 0));
        (told, asked) = (told + n, asked + n);
        handled(&rt, "sink", u64::from(told));
        handled(&rt, "echo", u64::from(asked));
    }
    assert!(rt.wait_idle(IDLE));
    let hops: u64 = rt.stats().shards.iter().map(|s| s.hops).sum();
    assert!(hops > 0, "no envelope was caught by a spinning shard");
    let sent = reports(&inbox, source);
    assert_eq!(sent.len(), 100);
    assert!(sent.iter().all(|r| r[1] == 0), "refused: {sent:?}");
    let last = reports(&inbox, requester).pop().expect("requester reports");
    assert_eq!(
        Report::from_words(&last),
        Report {
            made: asked,
            ok: asked,
            ..Report::default()
        },
        "every reply is f(request), byte for byte"
    );
    assert_eq!(ask(&rt, probe, &inbox, sink), [told, 0], "[good, bad]");
    assert_eq!(rt.stats().dead_letters, 0);
}

// ---- immediate replies: `handle-request` returns `some` ----

const MANY: u32 = 3000;

fn immediate_replies_between_guests(requester_shard: usize, echo_shard: usize, shards: usize) {
    let rt = runtime(shards);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let echo = spawn(&rt, &g, "echo", "echo", echo_shard);
    let requester = spawn(&rt, &g, "requester", "requester", requester_shard);
    let report = run_requester(
        &rt,
        probe,
        &inbox,
        requester,
        &requests(echo, MANY, HOUR_MS, 0),
    );
    assert_eq!(
        report,
        Report {
            made: MANY,
            ok: MANY,
            ..Report::default()
        },
        "every reply is f(request), byte for byte"
    );
    assert_eq!(rt.stats().actor("echo").unwrap().handled, u64::from(MANY));
}

#[test]
fn immediate_replies_between_guests_on_one_shard_arrive_byte_for_byte() {
    immediate_replies_between_guests(0, 0, 1);
}

#[test]
fn immediate_replies_between_guests_across_shards_arrive_byte_for_byte() {
    immediate_replies_between_guests(0, 1, 2);
}

/// Checks host requests' replies against `f`; returns the seqs whose reply was wrong.
fn check_host_replies(pending: Vec<(u32, wasmshard::PendingReply)>) -> Vec<u32> {
    let mut wrong = Vec::new();
    for (seq, reply) in pending {
        let expected = pattern::transform(&pattern::payload(seq));
        match reply.wait(IDLE) {
            Some(Ok(bytes)) if bytes == expected => {}
            Some(Ok(_)) => wrong.push(seq),
            other => panic!("request {seq} ended with {other:?}"),
        }
    }
    wrong
}

#[test]
fn immediate_replies_to_the_host_arrive_byte_for_byte() {
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let echo = spawn(&rt, &g, "echo", "echo", 1);
    let pending: Vec<_> = (0..MANY)
        .map(|seq| {
            let reply = rt.request(echo, &pattern::payload(seq), IDLE).unwrap();
            (seq, reply)
        })
        .collect();
    let wrong = check_host_replies(pending);
    assert!(
        wrong.is_empty(),
        "{} of {MANY} replies differ from f(request), e.g. seqs {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}

// ---- deferred replies: `none`, then `respond` ----

#[test]
fn deferred_replies_arrive_byte_for_byte() {
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let deferring = spawn(&rt, &g, "deferring", "deferring", 1);
    let requester = spawn(&rt, &g, "requester", "requester", 0);
    relay(
        &rt,
        probe,
        requester,
        &requests(deferring, 1000, HOUR_MS, 0),
    );
    handled(&rt, "deferring", 1000);
    // The host's requests are held too; one tell answers them all.
    let pending: Vec<_> = (0..1000)
        .map(|seq| {
            let reply = rt.request(deferring, &pattern::payload(seq), IDLE).unwrap();
            (seq, reply)
        })
        .collect();
    handled(&rt, "deferring", 2000);
    rt.send(deferring, b"answer").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(check_host_replies(pending), Vec::<u32>::new());
    let mut got = reports(&inbox, requester);
    assert_eq!(got.len(), 1);
    assert_eq!(
        Report::from_words(&got.pop().unwrap()),
        Report {
            made: 1000,
            ok: 1000,
            ..Report::default()
        }
    );
}

/// A native responder answering at once with `f(request)`.
struct NativeEcho;

impl NativeActor for NativeEcho {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        _: &mut Context<'_>,
        _: Address,
        _: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        Some(pattern::transform(payload))
    }
}

#[test]
fn deferred_replies_after_a_sub_request_arrive_byte_for_byte() {
    // requester (guest, shard 1) → proxy (guest, shard 0, defers and sub-requests)
    // → a native echo on shard 1; the proxy answers with `respond` once the
    // sub-reply is in.
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    rt.spawn_native("native-echo", Some(1), NativeEcho).unwrap();
    let proxy = spawn(&rt, &g, "proxy", "deferring native-echo", 0);
    let requester = spawn(&rt, &g, "requester", "requester", 1);
    let report = run_requester(
        &rt,
        probe,
        &inbox,
        requester,
        &requests(proxy, MANY, HOUR_MS, 0),
    );
    assert_eq!(
        report,
        Report {
            made: MANY,
            ok: MANY,
            ..Report::default()
        }
    );
    let stats = rt.stats();
    assert_eq!(stats.actor("proxy").unwrap().sent, u64::from(MANY));
    assert_eq!(stats.shards[0].requests.answered, u64::from(MANY));
    assert_eq!(stats.shards[1].requests.answered, u64::from(MANY));
}

// ---- cancel and timeouts ----

#[test]
fn cancelled_requests_never_get_a_response() {
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let deferring = spawn(&rt, &g, "deferring", "deferring", 1);
    let requester = spawn(&rt, &g, "requester", "requester", 0);
    // Every other request is cancelled right after it is made; the responder
    // receives all of them, and starts those not cancelled while they were
    // still queued (the rest are shed unstarted), and answers what it started.
    relay(
        &rt,
        probe,
        requester,
        &requests(deferring, 1000, HOUR_MS, 2),
    );
    let deadline = std::time::Instant::now() + IDLE;
    let started = loop {
        let stats = rt.stats();
        let started = stats.actor("deferring").unwrap().handled;
        if started + stats.shards[1].expired == 1000 {
            break started;
        }
        assert!(std::time::Instant::now() < deadline, "{started} started");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(started >= 500, "every request not cancelled was started");
    rt.send(deferring, b"answer").unwrap();
    assert!(rt.wait_idle(IDLE));
    let expected = Report {
        made: 1000,
        ok: 500,
        cancelled: 500,
        ..Report::default()
    };
    let mut got = reports(&inbox, requester);
    assert_eq!(got.len(), 1);
    assert_eq!(Report::from_words(&got.pop().unwrap()), expected);
    // Nothing more arrived after the report either.
    assert_eq!(
        Report::from_words(&ask(&rt, probe, &inbox, requester)),
        expected
    );
    let shard = &rt.stats().shards[0];
    assert_eq!(
        (
            shard.requests.made,
            shard.requests.answered,
            shard.requests.cancelled,
            shard.requests.late,
            shard.requests.open
        ),
        (1000, 500, 500, started - 500, 0),
        "the replies to cancelled requests it started were discarded as late"
    );
}

#[test]
fn requests_to_a_silent_target_end_once_with_timeout() {
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let silent = spawn(&rt, &g, "silent", "silent", 1);
    let requester = spawn(&rt, &g, "requester", "requester", 0);
    // Some cancelled, so cancel and timeouts meet: those must not time out.
    let expected = Report {
        made: 300,
        timeouts: 200,
        cancelled: 100,
        ..Report::default()
    };
    let report = run_requester(&rt, probe, &inbox, requester, &requests(silent, 300, 20, 3));
    assert_eq!(report, expected);
    // Well past every deadline, nothing ended a second time.
    std::thread::sleep(Duration::from_millis(100));
    assert!(rt.wait_idle(IDLE));
    assert_eq!(
        Report::from_words(&ask(&rt, probe, &inbox, requester)),
        expected
    );
    let shard = &rt.stats().shards[0];
    assert_eq!(
        (
            shard.requests.timed_out,
            shard.requests.cancelled,
            shard.requests.open
        ),
        (200, 100, 0)
    );
    // The host's requests time out the same way.
    let reply = rt
        .request(silent, b"anyone?", Duration::from_millis(20))
        .unwrap();
    assert_eq!(reply.wait(IDLE), Some(Err(RequestError::Timeout)));
}

// ---- traps ----

/// Asserts that `name` failed with a trap (a Rust panic aborts with
/// `unreachable`) and is gone.
fn trapped(rt: &Runtime, name: &str) {
    let stats = rt.stats();
    let actor = stats.actor(name).unwrap();
    let failure = actor.failure.as_deref().unwrap_or("");
    assert!(
        failure.starts_with("trap:") && failure.contains("unreachable"),
        "{name} failed with a trap: {actor:?}"
    );
    assert!(!actor.alive);
    assert_eq!(rt.lookup(name), None, "its name is free");
}

/// Asserts that a sink next to a failed actor still takes tells and checks them.
fn sink_still_works(rt: &Runtime, probe: Address, inbox: &Inbox, sink: Address) {
    for seq in 0..300 {
        rt.send(sink, &pattern::payload(seq)).unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    assert_eq!(ask(rt, probe, inbox, sink), [300, 0]);
}

/// An error line an `init` that succeeds logged is not blamed on a later
/// failure (a failure says what its own call logged before it; the `init`'s
/// line was kept until the next call that failed).
#[test]
fn an_error_logged_by_a_successful_init_is_not_a_later_failures() {
    let rt = runtime(1);
    let Some(g) = guest(&rt) else { return };
    let t = rt
        .spawn(&g, SpawnOptions::new("t").config("trap loud"))
        .unwrap();
    rt.send(t, b"panic").unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    let why = stats
        .actor("t")
        .unwrap()
        .failure
        .clone()
        .unwrap_or_default();
    assert!(why.contains("unreachable"), "{why}");
    assert!(!why.contains("init said so"), "{why}");
}

#[test]
fn a_panic_in_init_fails_the_spawn() {
    let rt = runtime(1);
    let Some(g) = guest(&rt) else { return };
    let err = rt
        .spawn(&g, SpawnOptions::new("t").config("trap-in-init"))
        .unwrap_err();
    assert!(
        matches!(&err, SpawnError::InitFailed(f)
            if f.kind() == FailureKind::Trap && f.to_string().contains("unreachable")),
        "{err:?}"
    );
    assert_eq!(rt.lookup("t"), None);
    // An init that returns an error is not a trap.
    let err = rt
        .spawn(&g, SpawnOptions::new("t").config("no-such-role"))
        .unwrap_err();
    assert!(
        matches!(&err, SpawnError::Init(why) if why == "unknown role `no-such-role`"),
        "{err:?}"
    );
    // Its text is one line, cut as a log line is: a guest cannot forge log
    // lines or park megabytes in the stats through it.
    let config = format!("x\n[ERROR] forged{}", "a".repeat(60_000));
    let err = rt
        .spawn(&g, SpawnOptions::new("t").config(config.as_bytes()))
        .unwrap_err();
    let SpawnError::Init(why) = &err else {
        panic!("{err:?}")
    };
    assert!(
        why.starts_with("unknown role `x\\n[ERROR] forged"),
        "{why:.80}"
    );
    assert!(!why.contains('\n'), "{why:.80}");
    assert!(
        why.len() <= wasmshard::MAX_LOG_MESSAGE + 64,
        "{}",
        why.len()
    );
    assert!(why.ends_with("more bytes)"), "{why:.80}");
    // The name is free and the component is fine.
    spawn(&rt, &g, "t", "sink", 0);
}

#[test]
fn a_panic_in_handle_message_fails_the_actor_and_its_open_requests() {
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let trap = spawn(&rt, &g, "trap", "trap", 1);
    let sink = spawn(&rt, &g, "sink", "sink", 1);
    let requester = spawn(&rt, &g, "requester", "requester", 0);
    // Twenty requests the trap actor holds; only target-failed can end them within
    // the test.
    relay(&rt, probe, requester, &requests(trap, 20, HOUR_MS, 0));
    handled(&rt, "trap", 20);
    rt.send(trap, b"panic").unwrap();
    assert!(rt.wait_idle(IDLE));
    trapped(&rt, "trap");
    let mut got = reports(&inbox, requester);
    assert_eq!(got.len(), 1);
    assert_eq!(
        Report::from_words(&got.pop().unwrap()),
        Report {
            made: 20,
            failed: 20,
            ..Report::default()
        }
    );
    let stats = rt.stats();
    assert_eq!(stats.shards[0].requests.failed, 20);
    assert_eq!(stats.shards[0].requests.late, 0);
    assert_eq!(stats.actor("trap").unwrap().failures, 1);
    sink_still_works(&rt, probe, &inbox, sink);
}

#[test]
fn a_panic_in_handle_request_fails_the_request_and_the_ones_held() {
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let trap = spawn(&rt, &g, "trap", "trap", 1);
    let sink = spawn(&rt, &g, "sink", "sink", 1);
    let requester = spawn(&rt, &g, "requester", "requester", 0);
    relay(&rt, probe, requester, &requests(trap, 20, HOUR_MS, 0));
    handled(&rt, "trap", 20);
    let reply = rt.request(trap, b"panic", IDLE).unwrap();
    assert_eq!(reply.wait(IDLE), Some(Err(RequestError::TargetFailed)));
    assert!(rt.wait_idle(IDLE));
    trapped(&rt, "trap");
    let mut got = reports(&inbox, requester);
    assert_eq!(got.len(), 1);
    assert_eq!(
        Report::from_words(&got.pop().unwrap()),
        Report {
            made: 20,
            failed: 20,
            ..Report::default()
        }
    );
    let stats = rt.stats();
    // The host's request was made through the trap actor's shard.
    assert_eq!(
        (
            stats.shards[1].requests.failed,
            stats.shards[1].requests.late
        ),
        (1, 0)
    );
    assert_eq!(
        (
            stats.shards[0].requests.failed,
            stats.shards[0].requests.late
        ),
        (20, 0)
    );
    sink_still_works(&rt, probe, &inbox, sink);
}

#[test]
fn a_panic_after_respond_keeps_the_answer_and_ends_the_request_once() {
    let rt = runtime(2);
    let Some(g) = guest(&rt) else { return };
    let (probe, inbox) = probe(&rt, "probe", 0);
    let trap = spawn(&rt, &g, "trap", "trap", 1);
    let sink = spawn(&rt, &g, "sink", "sink", 1);
    let reply = rt.request(trap, b"respond-then-panic", IDLE).unwrap();
    // The answer was sent before the trap, and sends made before a trap stand.
    assert_eq!(
        reply.wait(IDLE),
        Some(Ok(pattern::transform(b"respond-then-panic")))
    );
    assert!(rt.wait_idle(IDLE));
    trapped(&rt, "trap");
    let shard = &rt.stats().shards[1];
    assert_eq!(
        (
            shard.requests.answered,
            shard.requests.failed,
            shard.requests.late
        ),
        (1, 0, 0),
        "answered once; no failure notice follows the answer"
    );
    sink_still_works(&rt, probe, &inbox, sink);
}
