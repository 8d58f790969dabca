//! Defects found by trying the runtime as its users would: with guests built by the
//! ordinary toolchain, hostile guests and bad input. Each test failed before its
//! fix. (The post-return corruption of direct replies and the double end of a
//! request whose handler responded and then trapped are shown by Rust guests, in
//! `guests`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmshard::{
    Address, Context, FailureKind, NativeActor, RequestError, Runtime, SendError, SpawnError,
    SpawnOptions,
};

use crate::support::*;

/// A start function that calls `request` panicked the host at load (loading
/// instantiated the component, and no request table is lent then) and panicked
/// the shard at spawn, which then hung the runtime.
#[test]
fn a_start_function_that_calls_request_fails_its_spawn_and_nothing_else() {
    let rt = Arc::new(builder(2).build().unwrap());
    let counter = load(&rt, "counter.wat");
    rt.spawn(&counter, SpawnOptions::new("victim").shard(1))
        .unwrap();
    for fixture in [
        "hostile/start_calls_request.wat",
        "hostile/start_calls_request_at_spawn.wat",
    ] {
        let r = rt.clone();
        let err = within(Duration::from_secs(60), fixture, move || {
            let hostile = load(&r, fixture);
            r.spawn(&hostile, SpawnOptions::new("hostile").shard(0))
        })
        .unwrap_err();
        let SpawnError::Instantiate(failure) = &err else {
            panic!("{fixture}: {err:?}");
        };
        assert!(
            failure
                .to_string()
                .contains("`request` was called during instantiation"),
            "{fixture}: {failure}"
        );
        assert_eq!(rt.lookup("hostile"), None);
    }
    let rt = Arc::into_inner(rt).unwrap();
    let report = within(Duration::from_secs(60), "shutdown", move || rt.shutdown());
    assert_eq!(report.stats.actor("victim").unwrap().received, 0);
    assert_eq!(
        report
            .stats
            .shards
            .iter()
            .map(|s| s.requests.made)
            .sum::<u64>(),
        0
    );
}

/// Sends from a start function were admitted (reserving room in the target's
/// mailbox) and then dropped with the throwaway store or the failed instance: the
/// target's mailbox stayed full for good.
#[test]
fn sends_from_a_start_function_take_no_room_in_any_mailbox() {
    let rt = builder(2).mailbox_capacity(8).build().unwrap();
    let counter = load(&rt, "counter.wat");
    let victim = rt
        .spawn(&counter, SpawnOptions::new("victim").shard(1))
        .unwrap();
    let hostile = load(&rt, "hostile/start_calls_send.wat");
    let err = rt
        .spawn(&hostile, SpawnOptions::new("hostile").shard(0))
        .unwrap_err();
    assert!(
        err.to_string().contains("instantiation") || matches!(&err, SpawnError::Instantiate(_)),
        "{err:?}"
    );
    for _ in 0..8 {
        rt.send(victim, b"hello").unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().actor("victim").unwrap().handled, 8);
}

/// A start function that never returns hung `load_component` and `inspect`
/// (loading instantiated the component with no CPU budget). Loading now runs no
/// guest code, and the spawn fails within the budget.
#[test]
fn a_start_function_that_never_returns_hangs_neither_load_nor_spawn() {
    let rt = Arc::new(
        builder(1)
            .cpu_budget(Some(Duration::from_millis(20)))
            .build()
            .unwrap(),
    );
    let r = rt.clone();
    let inspection = within(Duration::from_secs(60), "inspect", move || {
        let bytes = std::fs::read(fixture("hostile/start_loops.wat")).unwrap();
        r.inspect(&bytes).unwrap()
    });
    assert_eq!(inspection.fit, Ok(()));
    let r = rt.clone();
    let err = within(Duration::from_secs(60), "load and spawn", move || {
        let looping = load(&r, "hostile/start_loops.wat");
        r.spawn(&looping, SpawnOptions::new("looping"))
    })
    .unwrap_err();
    assert!(
        matches!(&err, SpawnError::Instantiate(f) if f.kind() == FailureKind::CpuBudget),
        "{err:?}"
    );
}

/// What a recorder saw: `(kind, payload)` in arrival order.
type Seen = Arc<Mutex<Vec<(&'static str, Vec<u8>)>>>;

/// Records every message and request in arrival order; answers no request.
struct Recorder(Seen);

impl NativeActor for Recorder {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, payload: &[u8]) {
        self.0.lock().unwrap().push(("tell", payload.to_vec()));
    }

    fn handle_request(
        &mut self,
        _: &mut Context<'_>,
        _: Address,
        _: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        self.0.lock().unwrap().push(("request", payload.to_vec()));
        None
    }
}

/// The host's requests went through the control queue, which each pass takes
/// before the host's messages: `send(a, m1); request(a, m2)` delivered m2 first.
#[test]
fn the_hosts_tells_and_requests_arrive_in_call_order() {
    let rt = builder(2).build_manual().unwrap();
    let seen = Seen::default();
    let a = rt
        .spawn_native("recorder", Some(1), Recorder(seen.clone()))
        .unwrap();
    rt.send(a, b"m1").unwrap();
    let _r2 = rt.request(a, b"m2", Duration::from_secs(60)).unwrap();
    rt.send(a, b"m3").unwrap();
    let _r4 = rt.request(a, b"m4", Duration::from_secs(60)).unwrap();
    rt.run_until_stalled();
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            ("tell", b"m1".to_vec()),
            ("request", b"m2".to_vec()),
            ("tell", b"m3".to_vec()),
            ("request", b"m4".to_vec()),
        ]
    );
}

/// The host's requests had no cap, and dropping a `PendingReply` cancelled
/// nothing: the request stayed open (keeping the runtime from idling) until its
/// timeout.
#[test]
fn the_host_is_capped_like_an_actor_and_a_dropped_reply_cancels_its_request() {
    let rt = builder(1).max_open_requests(4).build().unwrap();
    let silent = rt
        .spawn_native("silent", Some(0), Recorder(Seen::default()))
        .unwrap();
    let hour = Duration::from_secs(3600);
    let mut open: Vec<_> = (0..4)
        .map(|_| rt.request(silent, b"q", hour).unwrap())
        .collect();
    assert_eq!(
        rt.request(silent, b"q", hour).unwrap_err(),
        SendError::TooManyRequests
    );
    open.pop();
    let fifth = rt.request(silent, b"q", hour).unwrap();
    drop(open);
    drop(fifth);
    assert!(
        rt.wait_idle(Duration::from_secs(20)),
        "dropped requests must not stay open until their timeout"
    );
    let requests = rt.stats().shards[0].requests;
    assert_eq!(
        (requests.made, requests.cancelled, requests.open),
        (5, 5, 0)
    );
    // Room under the cap again.
    for _ in 0..4 {
        std::mem::forget(rt.request(silent, b"q", Duration::from_millis(1)).unwrap());
    }
}

/// A native requester: "req" makes a request to its target with a long timeout.
struct Asker {
    target: Address,
    ids: Arc<Mutex<Vec<u64>>>,
    answered: Arc<Mutex<u64>>,
}

impl NativeActor for Asker {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        let n = payload.first().copied().unwrap_or(1);
        for _ in 0..n {
            let id = ctx
                .request(self.target, b"q", Duration::from_secs(3600))
                .unwrap();
            self.ids.lock().unwrap().push(id);
        }
    }

    fn handle_response(&mut self, ctx: &mut Context<'_>, _: u64, r: Result<&[u8], RequestError>) {
        r.unwrap();
        *self.answered.lock().unwrap() += 1;
        // Sequential round trips: the next one.
        let id = ctx
            .request(self.target, b"q", Duration::from_secs(3600))
            .unwrap();
        self.ids.lock().unwrap().push(id);
    }
}

/// Answers every request at once.
struct Echo;

impl NativeActor for Echo {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        _: &mut Context<'_>,
        _: Address,
        _: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        Some(payload.to_vec())
    }
}

/// Defers every request; a message answers them all.
struct Holder(Vec<u64>);

impl NativeActor for Holder {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, _: &[u8]) {
        for id in self.0.drain(..) {
            // A late answer succeeds for the responder.
            ctx.respond(id, b"late").unwrap();
        }
    }

    fn handle_request(
        &mut self,
        _: &mut Context<'_>,
        _: Address,
        id: u64,
        _: &[u8],
    ) -> Option<Vec<u8>> {
        self.0.push(id);
        None
    }
}

/// Open requests of a requester that was stopped stayed open (until their
/// timeout), so the runtime never idled and `wasmshard run` without `--for` ran
/// for ever; an answer that came later was counted as answered.
#[test]
fn a_requester_that_goes_ends_its_requests_and_later_answers_count_as_late() {
    let rt = builder(2).build().unwrap();
    let holder = rt
        .spawn_native("holder", Some(1), Holder(Vec::new()))
        .unwrap();
    let asker = rt
        .spawn_native(
            "asker",
            Some(0),
            Asker {
                target: holder,
                ids: Arc::default(),
                answered: Arc::default(),
            },
        )
        .unwrap();
    rt.send(asker, &[3]).unwrap();
    let deadline = std::time::Instant::now() + IDLE;
    while rt.stats().actor("holder").unwrap().handled < 3 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    rt.stop(asker).unwrap();
    assert!(
        rt.wait_idle(Duration::from_secs(20)),
        "the stopped requester's requests must end with it"
    );
    rt.send(holder, b"answer").unwrap();
    assert!(rt.wait_idle(IDLE));
    let requests = rt.stats().shards[0].requests;
    assert_eq!(
        (
            requests.made,
            requests.abandoned,
            requests.answered,
            requests.late,
            requests.open
        ),
        (3, 3, 0, 3, 0)
    );
}

/// Free lists were LIFO: a stopped actor's slot went to the very next spawn, and
/// sequential requests reused one table slot, so a busy slot's generation wrapped
/// (and an address or request id repeated) within hours.
#[test]
fn slots_of_actors_and_requests_are_reused_first_in_first_out() {
    let rt = builder(1)
        .max_actors(64)
        .drain_timeout(Duration::ZERO)
        .build_manual()
        .unwrap();
    let slot = |bits: u64| (bits >> 32) & 0xff_ffff;
    let mut last_use = std::collections::HashMap::new();
    for n in 0..500u64 {
        let a = rt
            .spawn_native("churn", Some(0), |_: &mut Context<'_>, _, _: &[u8]| {})
            .unwrap();
        if let Some(before) = last_use.insert(slot(a.to_bits()), n) {
            assert!(n - before >= 63, "slot reused after {} spawns", n - before);
        }
        rt.stop(a).unwrap();
    }
    let echo = rt.spawn_native("echo", Some(0), Echo).unwrap();
    let ids: Arc<Mutex<Vec<u64>>> = Arc::default();
    let asker = rt
        .spawn_native(
            "asker",
            Some(0),
            Asker {
                target: echo,
                ids: ids.clone(),
                answered: Arc::default(),
            },
        )
        .unwrap();
    rt.send(asker, &[1]).unwrap();
    while ids.lock().unwrap().len() < 10_000 {
        assert!(
            rt.step(),
            "the round trips stopped after {}: {:?}",
            ids.lock().unwrap().len(),
            rt.stats()
        );
    }
    let ids = ids.lock().unwrap();
    let mut last_use = std::collections::HashMap::new();
    for (n, id) in ids.iter().enumerate() {
        if let Some(before) = last_use.insert(slot(*id), n) {
            assert!(
                n - before >= 4096,
                "request slot reused after {}",
                n - before
            );
        }
    }
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        ids.len()
    );
}

/// A manual runtime whose actors never run out of work (an endless chain of
/// round trips) hung `wait_idle` and shutdown: the passes ran with no look at the
/// deadline.
#[test]
fn a_manual_runtime_that_never_idles_still_meets_its_deadlines() {
    let rt = builder(1)
        .drain_timeout(Duration::from_millis(50))
        .build_manual()
        .unwrap();
    let echo = rt.spawn_native("echo", Some(0), Echo).unwrap();
    let asker = rt
        .spawn_native(
            "asker",
            Some(0),
            Asker {
                target: echo,
                ids: Arc::default(),
                answered: Arc::default(),
            },
        )
        .unwrap();
    rt.send(asker, &[1]).unwrap();
    let report = within(Duration::from_secs(60), "an endless system", move || {
        assert!(!rt.wait_idle(Duration::from_millis(50)));
        rt.shutdown()
    });
    assert!(!report.drained);
    assert!(report.stats.actor("echo").unwrap().handled > 0);
}

/// A native actor that runs `f` on each message.
struct Native<F>(F);

impl<F: FnMut(&mut Context<'_>, Address, &[u8]) + Send + 'static> NativeActor for Native<F> {
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        (self.0)(ctx, from, payload)
    }
}

/// Signals on a channel when dropped (when its actor is stopped).
struct OnDrop(std::sync::mpsc::Sender<()>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Panics when dropped.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("a native actor's drop panicked");
    }
}

/// A panic on a shard's thread (here a native actor's `Drop`, run when it is
/// stopped) killed the thread, and every later spawn, stop, shutdown or drop of
/// the runtime waited for it for ever.
#[test]
fn a_native_actor_whose_drop_panics_takes_nothing_down_with_it() {
    let rt = Arc::new(builder(2).build().unwrap());
    let bomb = PanicOnDrop;
    let a = rt
        .spawn_native("bomb", Some(1), move |_: &mut Context<'_>, _, _: &[u8]| {
            let _ = &bomb;
        })
        .unwrap();
    let r = rt;
    within(
        Duration::from_secs(60),
        "stop, spawn, send, shutdown",
        move || {
            r.stop(a).unwrap();
            let (probe, inbox) = probe(&r, "probe", 1);
            r.send(probe, b"hi").unwrap();
            assert!(r.wait_idle(IDLE));
            assert_eq!(inbox.lock().unwrap().len(), 1);
            let r = Arc::into_inner(r).unwrap();
            r.shutdown()
        },
    );
}

/// What a failed shard does (a panic of the shard's loop is a defect, injected
/// here): its actors are reported failed and their addresses go dead, spawns on
/// it say so, other shards carry on, and shutdown completes.
#[test]
fn a_shard_that_panics_fails_its_actors_and_hangs_nothing() {
    let rt = Arc::new(builder(2).build().unwrap());
    let counter = load(&rt, "counter.wat");
    let gone = rt
        .spawn(&counter, SpawnOptions::new("gone").shard(1))
        .unwrap();
    let alive = rt
        .spawn(&counter, SpawnOptions::new("alive").shard(0))
        .unwrap();
    rt.inject_shard_panic(1);
    let r = rt;
    let report = within(Duration::from_secs(60), "a failed shard", move || {
        eventually("never: the actor is reported failed", || {
            r.stats().actor("gone").unwrap().failure.is_some()
        });
        let err = r
            .spawn(&counter, SpawnOptions::new("new").shard(1))
            .unwrap_err();
        assert!(
            matches!(err, SpawnError::ShardFailed { shard: 1 }),
            "{err:?}"
        );
        assert_eq!(r.send(gone, b"x"), Err(SendError::UnknownTarget));
        assert!(r.stop(gone).is_err());
        r.send(alive, b"x").unwrap();
        assert!(r.wait_idle(IDLE));
        Arc::into_inner(r).unwrap().shutdown()
    });
    let gone = report.stats.actor("gone").unwrap();
    assert!(!gone.alive);
    assert!(
        gone.failure.as_deref().unwrap().contains("shard 1 failed"),
        "{gone:?}"
    );
    assert_eq!(report.stats.actor("alive").unwrap().handled, 1);
}

/// Shutdown's second phase only exited the shards: a shard still flushing its
/// overflow into a ring whose owner had already made its last drain lost those
/// envelopes, neither delivered nor counted. The loss needs a narrow race (about
/// one round in fifteen lost a ring's worth before the fix), hence the rounds.
#[test]
fn shutdown_with_full_rings_and_overflow_counts_every_message() {
    for round in 0..100 {
        let rt = builder(2)
            .ring_capacity(8)
            .mailbox_capacity(100_000)
            .drain_timeout(Duration::ZERO)
            .build()
            .unwrap();
        // The overflow builds on shard 1, which is told to end after shard 0.
        let sink = rt
            .spawn_native("sink", Some(0), |_: &mut Context<'_>, _, _: &[u8]| {})
            .unwrap();
        let refused = Arc::new(Mutex::new(0u64));
        let count = refused.clone();
        let producer = rt
            .spawn_native(
                "producer",
                Some(1),
                Native(move |ctx: &mut Context<'_>, _, _: &[u8]| {
                    for _ in 0..20_000 {
                        if ctx.send(sink, b"blast").is_err() {
                            *count.lock().unwrap() += 1;
                        }
                    }
                }),
            )
            .unwrap();
        rt.send(producer, b"go").unwrap();
        eventually("never: the producer ran", || {
            rt.stats().actor("producer").unwrap().handled == 1
        });
        let report = rt.shutdown();
        let sent = report.stats.actor("producer").unwrap().sent;
        let handled = report.stats.actor("sink").unwrap().handled;
        assert_eq!(sent + *refused.lock().unwrap(), 20_000);
        assert_eq!(
            sent,
            handled + report.dead_letter_count,
            "round {round}: {sent} sent, {handled} handled, {} dead letters",
            report.dead_letter_count
        );
    }
}

/// While any envelope waited in a shard's overflow (a full ring), the shard ran
/// no actor at all, and spun at full speed until the ring drained.
#[test]
fn a_full_ring_stalls_no_other_actor_and_the_shard_does_not_spin() {
    let rt = builder(2)
        .ring_capacity(4)
        .mailbox_capacity(10_000)
        .build()
        .unwrap();
    // Holds shard 1 until released, so its ring from shard 0 stays full.
    let (blocker, entered, release) = blocker(&rt, 1);
    let sink = rt
        .spawn_native("sink", Some(1), |_: &mut Context<'_>, _, _: &[u8]| {})
        .unwrap();
    let producer = rt
        .spawn_native(
            "producer",
            Some(0),
            Native(move |ctx: &mut Context<'_>, _, _: &[u8]| {
                for _ in 0..1000 {
                    ctx.send(sink, b"m").unwrap();
                }
            }),
        )
        .unwrap();
    let (probe, inbox) = probe(&rt, "probe", 0);
    rt.send(blocker, b"hold").unwrap();
    entered.recv_timeout(IDLE).unwrap();
    rt.send(producer, b"go").unwrap();
    eventually("never: the producer ran", || {
        rt.stats().shards[0].overflow > 0
    });
    // Another actor of shard 0 still runs.
    rt.send(probe, b"ping").unwrap();
    eventually("never: the probe ran beside the overflow", || {
        !inbox.lock().unwrap().is_empty()
    });
    // And the shard waits for the ring rather than spinning.
    let before = rt.stats().shards[0].loops;
    std::thread::sleep(Duration::from_millis(300));
    let spun = rt.stats().shards[0].loops - before;
    assert!(spun < 30_000, "shard 0 ran {spun} passes in 300 ms");
    release.send(()).unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().actor("sink").unwrap().handled, 1000);
}

/// A pass ran up to 256 turns of up to a batch of messages each, however long
/// they took: behind an actor that takes 50 ms a message, a 100 ms timeout fired
/// seconds late, and control commands (spawn) waited as long.
#[test]
fn a_slow_actor_delays_timeouts_and_commands_by_about_one_message() {
    use std::sync::mpsc;
    use std::time::Instant;
    let rt = builder(1).build().unwrap();
    let (entered_tx, entered) = mpsc::channel();
    let slow = rt
        .spawn_native(
            "slow",
            Some(0),
            Native(move |_: &mut Context<'_>, _, _: &[u8]| {
                let _ = entered_tx.send(());
                std::thread::sleep(Duration::from_millis(50));
            }),
        )
        .unwrap();
    let silent = rt
        .spawn_native("silent", Some(0), Recorder(Seen::default()))
        .unwrap();
    let ended: Arc<Mutex<Option<Instant>>> = Arc::default();
    struct Timer {
        target: Address,
        ended: Arc<Mutex<Option<Instant>>>,
    }
    impl NativeActor for Timer {
        fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, _: &[u8]) {
            ctx.request(self.target, b"q", Duration::from_millis(100))
                .unwrap();
        }
        fn handle_response(&mut self, _: &mut Context<'_>, _: u64, r: Result<&[u8], RequestError>) {
            assert_eq!(r, Err(RequestError::Timeout));
            *self.ended.lock().unwrap() = Some(Instant::now());
        }
    }
    let timer = rt
        .spawn_native(
            "timer",
            Some(0),
            Timer {
                target: silent,
                ended: ended.clone(),
            },
        )
        .unwrap();
    // While the slow actor handles its first message, 3 s of work queue behind
    // it, then the request that should time out after 100 ms, then a spawn.
    rt.send(slow, b"work").unwrap();
    entered.recv_timeout(IDLE).unwrap();
    for _ in 0..60 {
        rt.send(slow, b"work").unwrap();
    }
    let sent = Instant::now();
    rt.send(timer, b"go").unwrap();
    rt.spawn_native("late", Some(0), |_: &mut Context<'_>, _, _: &[u8]| {})
        .unwrap();
    let spawn_took = sent.elapsed();
    eventually("never: the timeout", || ended.lock().unwrap().is_some());
    let took = ended.lock().unwrap().unwrap() - sent;
    assert!(
        took < Duration::from_millis(1000),
        "a 100 ms timeout took {took:?}"
    );
    assert!(
        spawn_took < Duration::from_millis(1000),
        "a spawn took {spawn_took:?}"
    );
}

/// Spawns an actor that, on a message, calls back into its own runtime (spawn,
/// stop itself, wait for idle, wait for a reply from `echo`) and records what
/// each call returned.
fn reentrant_actor(rt: &Arc<Runtime>, echo: Address) -> (Address, Arc<Mutex<Vec<String>>>) {
    reentrant_actor_on(rt, rt, echo)
}

/// As [`reentrant_actor`], the actor spawned on `on` and calling `calls` (it
/// stops itself only where `calls` is `on`).
fn reentrant_actor_on(
    on: &Runtime,
    calls: &Arc<Runtime>,
    echo: Address,
) -> (Address, Arc<Mutex<Vec<String>>>) {
    let rt = on;
    let handle: Arc<std::sync::OnceLock<Arc<Runtime>>> = Arc::default();
    let results: Arc<Mutex<Vec<String>>> = Arc::default();
    let (h, out) = (handle.clone(), results.clone());
    let me = rt
        .spawn_native(
            "reentrant",
            Some(0),
            Native(move |ctx: &mut Context<'_>, _, _: &[u8]| {
                let rt = h.get().unwrap();
                let spawned =
                    rt.spawn_native("child", Some(0), |_: &mut Context<'_>, _, _: &[u8]| {});
                let stopped = rt.stop(ctx.self_address());
                let idle = rt.wait_idle(Duration::from_secs(3600));
                let reply = rt.request(echo, b"q", IDLE).unwrap();
                let waited = reply.wait(Duration::from_secs(3600));
                out.lock()
                    .unwrap()
                    .push(format!("{spawned:?} {stopped:?} {idle} {waited:?}"));
            }),
        )
        .unwrap();
    // The actor holds its runtime for the test's length (a cycle the test ends).
    handle.set(calls.clone()).unwrap();
    (me, results)
}

/// What every reentrant call returns, on either kind of runtime.
const REFUSED: &str = "Err(Reentrant) Err(Reentrant) false None";

/// A native actor calling a blocking method of its own runtime (spawn or stop on
/// its shard, wait_idle, waiting for a reply) deadlocked its shard silently.
#[test]
fn an_actor_calling_its_own_runtime_gets_an_error_not_a_deadlock() {
    let rt = Arc::new(builder(1).build().unwrap());
    let echo = rt.spawn_native("echo", Some(0), Echo).unwrap();
    let (me, results) = reentrant_actor(&rt, echo);
    rt.send(me, b"go").unwrap();
    let r = results.clone();
    within(Duration::from_secs(60), "a reentrant call", move || {
        eventually("never: the actor's calls returned", || {
            !r.lock().unwrap().is_empty()
        })
    });
    assert_eq!(results.lock().unwrap()[0], REFUSED);
}

/// During shutdown a guest's send to an actor already stopped failed with
/// `unknown-target`: `shutting-down` was never seen by guests.
#[test]
fn once_shutdown_stops_actors_their_sends_say_shutting_down() {
    use std::sync::mpsc;
    let rt = builder(2)
        .drain_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let (stopped_tx, stopped) = mpsc::channel();
    let guard = OnDrop(stopped_tx);
    let target = rt
        .spawn_native(
            "target",
            Some(1),
            move |_: &mut Context<'_>, _, _: &[u8]| {
                let _ = &guard;
            },
        )
        .unwrap();
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let seen: Arc<Mutex<Vec<SendError>>> = Arc::default();
    let out = seen.clone();
    // Holds shard 0 until the target has been stopped, then sends to it.
    let sender = rt
        .spawn_native(
            "sender",
            Some(0),
            Native(move |ctx: &mut Context<'_>, _, _: &[u8]| {
                entered_tx.send(()).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
                out.lock()
                    .unwrap()
                    .push(ctx.send(target, b"late").unwrap_err());
                out.lock().unwrap().push(
                    ctx.request(target, b"late", Duration::from_secs(1))
                        .unwrap_err(),
                );
            }),
        )
        .unwrap();
    rt.send(sender, b"go").unwrap();
    entered.recv_timeout(IDLE).unwrap();
    let shutdown = std::thread::spawn(move || rt.shutdown());
    stopped.recv_timeout(IDLE).unwrap();
    release.send(()).unwrap();
    shutdown.join().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![SendError::ShuttingDown, SendError::ShuttingDown]
    );
}

/// Settings had no upper bounds: `ring-capacity = 18446744073709551615` panicked,
/// `1000000000000` aborted on allocation, `epoch-tick-ms = 3600000` hung shutdown,
/// `park-spin-us = u64::MAX` spun for ever, `cpu-budget-ms = u64::MAX` failed every
/// spawn. Each is refused now, naming the setting, its key and its range.
#[test]
fn every_setting_out_of_its_range_is_refused_by_name() {
    use wasmshard::{BuildError, RuntimeBuilder};
    let refused = |b: RuntimeBuilder, key: &str| {
        let err = b.build().expect_err(key);
        assert!(matches!(err, BuildError::Setting(_)), "{key}: {err:?}");
        let message = err.to_string();
        assert!(message.contains(key), "`{message}` should name `{key}`");
        assert!(
            message.contains(" to "),
            "`{message}` should give the range"
        );
    };
    let b = || builder(1);
    let forever = Duration::from_secs(u64::MAX);
    refused(b().shards(0), "shards");
    refused(b().shards(257), "shards");
    refused(b().ring_capacity(usize::MAX), "ring-capacity");
    refused(b().ring_capacity(1_000_000_000_000), "ring-capacity");
    refused(b().ring_capacity(0), "ring-capacity");
    refused(b().epoch_tick(Duration::from_secs(3600)), "epoch-tick-ms");
    refused(b().epoch_tick(Duration::ZERO), "epoch-tick-ms");
    refused(b().park_spin(forever), "park-spin-us");
    refused(b().park_spin_max(forever), "park-spin-max-us");
    refused(
        b().park_spin_max(wasmshard::MAX_PARK_SPIN + Duration::from_nanos(1)),
        "park-spin-max-us",
    );
    refused(b().cpu_budget(Some(forever)), "cpu-budget-ms");
    refused(b().drain_timeout(forever), "drain-timeout-ms");
    refused(b().mailbox_capacity(0), "mailbox-capacity");
    refused(b().mailbox_capacity(u32::MAX), "mailbox-capacity");
    refused(b().max_payload(usize::MAX), "max-payload");
    refused(b().memory_limit(1), "memory-limit");
    refused(
        b().keep_resident(wasmshard::MAX_KEEP_RESIDENT + 1),
        "keep-resident",
    );
    refused(b().batch(0), "batch");
    refused(b().batch(u32::MAX), "batch");
    refused(b().max_open_requests(u32::MAX), "max-open-requests");
    refused(b().max_actors(0), "max-actors");
    refused(builder(256).max_actors(1 << 20), "max-actors");
    // The same through a manifest.
    let refused_key = |key: &str, value: &str| {
        let manifest = wasmshard::manifest::Manifest::parse(&format!(
            "[runtime]\n{key} = {value}\n[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n"
        ))
        .unwrap();
        let err = manifest.run(manifest.builder(), None).unwrap_err();
        let message = format!("{err:?}");
        assert!(message.contains(key), "{message}");
    };
    refused_key("ring-capacity", "18446744073709551615");
    refused_key("park-spin-max-us", "10001");
    refused_key("keep-resident", "1048577");
}

/// Rings were allocated up front, shards² × capacity of them (1.75 GiB at 64
/// shards; an allocation abort at 256). They are allocated when a pair of shards
/// first talks.
#[test]
fn rings_take_memory_only_between_shards_that_talk() {
    let resident = || {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 4096
    };
    let before = resident();
    let rt = builder(64)
        .ring_capacity(wasmshard::MAX_RING_CAPACITY)
        .max_actors(8)
        .build()
        .unwrap();
    let grew = resident().saturating_sub(before);
    // Eagerly: 64 × 64 rings of 65 536 envelopes of about 100 bytes, 27 GiB.
    assert!(grew < 512 << 20, "building 64 shards took {grew} bytes");
    let (a, inbox) = probe(&rt, "a", 63);
    let (b, _) = probe(&rt, "b", 0);
    relay(&rt, b, a, b"across");
    assert!(rt.wait_idle(IDLE));
    assert_eq!(inbox.lock().unwrap().len(), 1);
    drop(rt);
}

/// One instruction of `fixtures/hostile/interpreter.wat`.
fn instr(op: u8, a: u64, b: u32, c: u32, d: u64) -> Vec<u8> {
    let mut v = vec![op];
    v.extend(a.to_le_bytes());
    v.extend(b.to_le_bytes());
    v.extend(c.to_le_bytes());
    v.extend(d.to_le_bytes());
    v
}

/// Where the interpreter keeps the payload it runs.
const PAYLOAD_AT: u32 = 131_072;

/// A guest's log text was printed raw: a newline forged lines that seemed to come
/// from other actors, and escape sequences drove the terminal. A record is one
/// line now, and a long one is cut.
#[test]
fn a_guest_log_record_is_one_printable_line() {
    let records: Arc<Mutex<Vec<wasmshard::LogRecord>>> = Arc::default();
    let sink = records.clone();
    let rt = builder(1)
        .log_sink(move |r| sink.lock().unwrap().push(r.clone()))
        .build()
        .unwrap();
    let interpreter = load(&rt, "hostile/interpreter.wat");
    let guest = rt.spawn(&interpreter, SpawnOptions::new("liar")).unwrap();
    for text in [
        "one\n[victim] error: forged\r\x1b[31mred\u{202e}desrever".to_string(),
        "x".repeat(10_000),
        // A backslash the guest wrote is escaped too: its `\n` must not read
        // as a line break the record escaped.
        "typed \\n, broke \n".to_string(),
    ] {
        // log(info, the text after two instructions), halt, the text.
        let mut program = instr(5, 2, PAYLOAD_AT + 50, text.len() as u32, 0);
        program.extend(instr(12, 0, 0, 0, 0));
        program.extend(text.as_bytes());
        rt.send(guest, &program).unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    let records = records.lock().unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(
        records[0].message,
        "one\\n[victim] error: forged\\r\\u{1b}[31mred\\u{202e}desrever"
    );
    assert!(records[1].message.len() < wasmshard::MAX_LOG_MESSAGE + 32);
    assert!(
        records[1].message.ends_with("… (5904 more bytes)"),
        "{}",
        &records[1].message[4000..]
    );
    assert_eq!(records[2].message, "typed \\\\n, broke \\n");
    assert!(
        records
            .iter()
            .all(|r| !r.message.chars().any(char::is_control))
    );
}

/// A direct reply (`handle-request` returning `some(bytes)`) skipped the payload
/// limit that `respond` keeps.
#[test]
fn a_direct_reply_over_the_payload_limit_fails_its_request() {
    let rt = builder(1).max_payload(100).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    // The echo's reply is the request reversed plus a 4-byte checksum: 104 bytes.
    let echo = rt
        .spawn(&g, SpawnOptions::new("echo").config("echo"))
        .unwrap();
    let r = rt.request(echo, &[7; 100], IDLE).unwrap();
    assert_eq!(r.wait(IDLE), Some(Err(RequestError::TargetFailed)));
    // The echo is fine, and a reply within the limit arrives.
    let r = rt.request(echo, &[7; 96], IDLE).unwrap();
    assert_eq!(r.wait(IDLE).unwrap().unwrap().len(), 100);
    assert!(rt.stats().actor("echo").unwrap().alive);
}

/// The memory limit held per memory, while the docs promised it per actor: a
/// component of two instances, each with a memory, could use twice the limit.
#[test]
fn the_memory_limit_holds_for_all_of_an_actors_memories() {
    let rt = builder(1).memory_limit(1 << 20).build().unwrap();
    let two = load(&rt, "hostile/two_memories.wat");
    let a = rt.spawn(&two, SpawnOptions::new("two")).unwrap();
    // Each memory starts at one page: 2 of the 16 pages the limit allows.
    rt.send(a, &[0, 10]).unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().actor("two").unwrap().failure, None);
    // 12 pages so far; 10 more in the other memory would make 22.
    rt.send(a, &[1, 10]).unwrap();
    assert!(rt.wait_idle(IDLE));
    let failure = rt.stats().actor("two").unwrap().failure.clone();
    assert!(
        failure
            .as_deref()
            .is_some_and(|f| f.contains("memory limit of 1048576 bytes")),
        "{failure:?}"
    );
}

/// A table grow over 20 000 elements returned -1 (the instance pool's limit) but
/// one over 100 000 trapped (the runtime's): one documented rule now, a trap
/// beyond `MAX_TABLE_ELEMENTS`, as for memory.
#[test]
fn a_table_grow_beyond_the_limit_traps_with_that_reason() {
    let rt = builder(1).build().unwrap();
    let grower = load(&rt, "hostile/table_grow.wat");
    let a = rt.spawn(&grower, SpawnOptions::new("grower")).unwrap();
    rt.send(a, &19_000u32.to_le_bytes()).unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().actor("grower").unwrap().failure, None);
    rt.send(a, &2_000u32.to_le_bytes()).unwrap();
    assert!(rt.wait_idle(IDLE));
    let failure = rt.stats().actor("grower").unwrap().failure.clone();
    assert!(
        failure
            .as_deref()
            .is_some_and(|f| f.contains("table limit of 20000 elements")),
        "{failure:?}"
    );
}

/// A component nested `depth` deep (empty components in components), as bytes.
fn nested_components(depth: usize) -> Vec<u8> {
    const HEADER: [u8; 8] = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
    let mut c = HEADER.to_vec();
    for _ in 0..depth {
        let mut outer = HEADER.to_vec();
        // A component section (id 4) holding the component so far.
        outer.push(4);
        let mut len = c.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                outer.push(byte);
                break;
            }
            outer.push(byte | 0x80);
        }
        outer.extend(c);
        c = outer;
    }
    c
}

/// Loading compiled whatever it was given: a 94 KB file of 8 000 nested empty
/// components took 2 GB to load. Nesting, counts and size are checked with the
/// parser before anything is compiled.
#[test]
fn loading_refuses_deep_or_huge_components_before_compiling_them() {
    let rt = builder(1).build().unwrap();
    let bomb = nested_components(8000);
    assert!(bomb.len() < 200_000);
    let err = within(
        Duration::from_secs(60),
        "loading a nesting bomb",
        move || rt.load_component("bomb", &bomb).unwrap_err(),
    );
    assert!(err.message().contains("nested"), "{}", err.message());
    // Within the limits, nesting is fine (it just does not fit the world).
    let rt = builder(1).build().unwrap();
    let err = rt
        .load_component("shallow", &nested_components(2))
        .unwrap_err();
    assert!(!err.message().contains("nested"), "{}", err.message());
    // And size is bounded.
    let err = rt
        .load_component("huge", &vec![0u8; wasmshard::MAX_COMPONENT_SIZE + 1])
        .unwrap_err();
    assert!(err.message().contains("bytes"), "{}", err.message());
}

/// Every actor ever spawned stayed in the stats, so stats (and memory) grew with
/// every spawn over the runtime's life: churn kept growing it.
#[test]
fn spawning_and_stopping_a_hundred_thousand_actors_keeps_the_stats_bounded() {
    let rt = builder(1).max_actors(64).build_manual().unwrap();
    let keeper = rt
        .spawn_native("keeper", Some(0), |_: &mut Context<'_>, _, _: &[u8]| {})
        .unwrap();
    let churn = |n: u32| {
        for i in 0..n {
            let a = rt
                .spawn_native(
                    &format!("churn{i}"),
                    Some(0),
                    |_: &mut Context<'_>, _, _: &[u8]| {},
                )
                .unwrap();
            rt.send(a, b"x").unwrap();
            rt.run_until_stalled();
            rt.stop(a).unwrap();
        }
    };
    churn(100_000);
    let stats = rt.stats();
    assert!(
        stats.actors.len() <= wasmshard::RETAINED_ENDED_ACTORS + 1,
        "{} actors in the stats",
        stats.actors.len()
    );
    assert!(
        stats.actor("keeper").is_some_and(|k| k.alive),
        "live actors stay"
    );
    assert!(
        stats.actor("churn99999").is_some_and(|c| !c.alive),
        "the latest ended stay"
    );
    // The bytes held over the churn are measured exactly in `tests/alloc.rs`.
    rt.send(keeper, b"still here").unwrap();
    rt.run_until_stalled();
}

/// Requests whose requester stops waiting at `timeout`, from a native requester:
/// "go" makes `n` of them to `target`.
struct Impatient {
    target: Address,
    n: u32,
    timeout_ns: u64,
    failed: Arc<Mutex<u64>>,
}

impl NativeActor for Impatient {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, _: &[u8]) {
        for _ in 0..self.n {
            ctx.request(self.target, b"q", Duration::from_nanos(self.timeout_ns))
                .unwrap();
        }
    }

    fn handle_response(&mut self, _: &mut Context<'_>, _: u64, r: Result<&[u8], RequestError>) {
        match r {
            Err(RequestError::Timeout) => {}
            Err(RequestError::TargetFailed) => *self.failed.lock().unwrap() += 1,
            other => panic!("{other:?}"),
        }
    }
}

/// A responder that defers requests kept every one until it answered it, also
/// those whose requesters had long stopped waiting: its deferred map grew without
/// bound. It forgets expired ones once it holds many, and holds at most
/// `max_open_requests`.
#[test]
fn a_responder_forgets_requests_nobody_waits_for_and_holds_a_bounded_number() {
    let rt = builder(2).max_open_requests(100).build().unwrap();
    let silent = rt
        .spawn_native("silent", Some(1), Recorder(Seen::default()))
        .unwrap();
    let failed: Arc<Mutex<u64>> = Arc::default();
    // 30 rounds of 50 requests that give up after a millisecond.
    let impatient = rt
        .spawn_native(
            "impatient",
            Some(0),
            Impatient {
                target: silent,
                n: 50,
                timeout_ns: 1_000_000,
                failed: failed.clone(),
            },
        )
        .unwrap();
    for _ in 0..30 {
        rt.send(impatient, b"go").unwrap();
        assert!(rt.wait_idle(IDLE));
    }
    let deferred = rt.stats().actor("silent").unwrap().deferred;
    assert!(
        deferred <= 200,
        "{deferred} requests nobody waits for are kept"
    );
    assert_eq!(*failed.lock().unwrap(), 0);
    // A deadline travels in whole milliseconds, rounded up: the responder sees
    // the last round expired up to a millisecond after its requester's
    // timeouts fired (which the idle runtime says they did).
    std::thread::sleep(Duration::from_millis(2));
    // Requests that wait an hour are kept, up to the cap; beyond it they fail at
    // once. (Two requesters, as each may have only 100 open.)
    for name in ["patient1", "patient2"] {
        let patient = rt
            .spawn_native(
                name,
                Some(0),
                Impatient {
                    target: silent,
                    n: 75,
                    timeout_ns: 3_600_000_000_000,
                    failed: failed.clone(),
                },
            )
            .unwrap();
        rt.send(patient, b"go").unwrap();
    }
    let r = failed.clone();
    eventually("never: the refused deferrals", move || {
        *r.lock().unwrap() == 50
    });
    let kept = rt.stats().actor("silent").unwrap().deferred;
    assert_eq!(
        kept, 100,
        "the expired ones were forgotten, the patient ones kept"
    );
}

/// On a manual runtime the same: a failed shard fails its actors, and nothing
/// panics in the caller.
#[test]
fn a_manual_shard_that_panics_fails_its_actors_without_panicking_the_caller() {
    let rt = builder(2).build_manual().unwrap();
    let counter = load(&rt, "counter.wat");
    let gone = rt
        .spawn(&counter, SpawnOptions::new("gone").shard(1))
        .unwrap();
    let alive = rt
        .spawn(&counter, SpawnOptions::new("alive").shard(0))
        .unwrap();
    rt.inject_shard_panic(1);
    rt.run_until_stalled();
    assert!(rt.stats().actor("gone").unwrap().failure.is_some());
    assert_eq!(rt.send(gone, b"x"), Err(SendError::UnknownTarget));
    let err = rt
        .spawn(&counter, SpawnOptions::new("new").shard(1))
        .unwrap_err();
    assert!(
        matches!(err, SpawnError::ShardFailed { shard: 1 }),
        "{err:?}"
    );
    rt.send(alive, b"x").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.shutdown().stats.actor("alive").unwrap().handled, 1);
}

/// On a manual runtime, a call back into the runtime from a handler (spawn, stop,
/// waiting) would wait for shards that are held while the handler runs: it is
/// refused instead.
#[test]
fn a_handler_calling_its_manual_runtime_gets_an_error_not_a_deadlock() {
    let rt = Arc::new(builder(1).build_manual().unwrap());
    let echo = rt.spawn_native("echo", Some(0), Echo).unwrap();
    let (me, results) = reentrant_actor(&rt, echo);
    rt.send(me, b"go").unwrap();
    let r = rt.clone();
    within(Duration::from_secs(60), "a reentrant call", move || {
        r.run_until_stalled();
    });
    assert_eq!(results.lock().unwrap()[0], REFUSED);
}

/// A handler of one runtime that stepped another (a manual one) made the
/// inner runtime's pass the only one its thread knew of: an actor there that
/// called back into the outer runtime was not refused, and waited for ever
/// for the outer runtime's shards, which the handler below it held.
#[test]
fn a_call_back_into_an_outer_runtime_from_a_nested_pass_is_refused() {
    let outer = Arc::new(builder(1).build_manual().unwrap());
    let inner = Arc::new(builder(1).build_manual().unwrap());
    let echo = outer.spawn_native("echo", Some(0), Echo).unwrap();
    // The inner runtime's actor calls the outer runtime.
    let (me, results) = reentrant_actor_on(&inner, &outer, echo);
    inner.send(me, b"go").unwrap();
    // The outer runtime's actor steps the inner one.
    let stepped = inner.clone();
    let stepper = outer
        .spawn_native(
            "stepper",
            Some(0),
            Native(move |_: &mut Context<'_>, _, _: &[u8]| {
                stepped.run_until_stalled();
            }),
        )
        .unwrap();
    outer.send(stepper, b"go").unwrap();
    let o = outer.clone();
    within(Duration::from_secs(60), "a nested call", move || {
        o.run_until_stalled();
    });
    assert_eq!(results.lock().unwrap()[0], REFUSED);
    // Outside the nested pass, the outer runtime is called as usual.
    let reply = outer.request(echo, b"q", IDLE).unwrap();
    outer.run_until_stalled();
    assert_eq!(reply.try_get(), Some(Ok(b"q".to_vec())));
}

/// An actor that owned the last handle to its runtime and dropped it ran shutdown
/// on its own shard's thread, which then waited for itself for ever.
#[test]
fn an_actor_dropping_the_last_handle_to_its_runtime_shuts_it_down() {
    use std::sync::mpsc;
    let dir = std::env::temp_dir().join(format!("wasmshard-detached-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Arc::new(builder(2).storage_dir(&dir).build().unwrap());
    let held: Arc<Mutex<Option<Arc<wasmshard::Runtime>>>> = Arc::default();
    let (go_tx, go) = mpsc::channel::<()>();
    let go = Mutex::new(go);
    let (done_tx, done) = mpsc::channel();
    let h = held.clone();
    let owner = rt
        .spawn_native(
            "owner",
            Some(1),
            Native(move |_: &mut Context<'_>, _, _: &[u8]| {
                // Wait until the test has let go of its own handle.
                go.lock().unwrap().recv().unwrap();
                let last = h.lock().unwrap().take();
                drop(last);
                let _ = done_tx.send(());
            }),
        )
        .unwrap();
    *held.lock().unwrap() = Some(rt.clone());
    rt.send(owner, b"drop it").unwrap();
    drop(rt);
    go_tx.send(()).unwrap();
    done.recv_timeout(IDLE)
        .expect("dropping the runtime on its own shard returned");
    // Its durable store is closed once the shutdown is done (it kept the
    // database file open, so no other runtime could open it).
    let deadline = std::time::Instant::now() + IDLE;
    loop {
        match builder(1).storage_dir(&dir).build() {
            Ok(rt) => {
                rt.shutdown();
                break;
            }
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the store stayed open: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shutdown an actor started by dropping the last handle to its runtime told
/// every shard to stop, seal and exit at once, without the phases: a shard could
/// end while another still routed messages admitted for it into their ring,
/// where they were neither delivered nor counted. Now the phased shutdown runs on
/// a thread of its own and logs what it counted.
#[test]
fn a_detached_shutdown_delivers_or_counts_what_was_in_flight() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    const SENT: u64 = 300;
    let logs = runtime_log();
    let rt = Arc::new(builder(2).mailbox_capacity(1024).build().unwrap());
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let sink = rt
        .spawn_native(
            "sink",
            Some(0),
            Native(move |_: &mut Context<'_>, _, _: &[u8]| {
                h.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
    let held: Arc<Mutex<Option<Arc<wasmshard::Runtime>>>> = Arc::default();
    let (go_tx, go) = mpsc::channel::<()>();
    let go = Mutex::new(go);
    let (done_tx, done) = mpsc::channel();
    let hold = held.clone();
    let owner = rt
        .spawn_native(
            "owner",
            Some(1),
            Native(move |ctx: &mut Context<'_>, _, _: &[u8]| {
                go.lock().unwrap().recv().unwrap();
                // Admitted now, routed to shard 0 when this handler returns.
                let sent = (0..SENT).filter(|_| ctx.send(sink, b"m").is_ok()).count();
                drop(hold.lock().unwrap().take());
                // Shard 0 has been told to shut down meanwhile.
                std::thread::sleep(Duration::from_millis(200));
                let _ = done_tx.send(sent as u64);
            }),
        )
        .unwrap();
    *held.lock().unwrap() = Some(rt.clone());
    rt.send(owner, b"drop it").unwrap();
    drop(rt);
    go_tx.send(()).unwrap();
    let sent = done.recv_timeout(IDLE).expect("the handler returned");
    assert_eq!(sent, SENT, "every send was admitted");
    let mut line = None;
    eventually("never: the detached shutdown's log line", || {
        line = logs
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("shut down from inside one of its actors"))
            .cloned();
        line.is_some()
    });
    let line = line.unwrap();
    let dead: u64 = line
        .split(": ")
        .nth(2)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert_eq!(
        handled.load(Ordering::SeqCst) + dead,
        SENT,
        "handled {} and {dead} dead letters ({line})",
        handled.load(Ordering::SeqCst)
    );
}

/// With all but one of a shard's slots taken, every spawn reused that one slot:
/// an address recurred after 2^32 spawns, not the 2^32 × `max_actors` documented.
/// The shard now keeps spare slots (as many again as `max_actors`, up to 4096),
/// so a freed slot waits behind them, and `max_actors` still bounds live actors.
#[test]
fn a_nearly_full_shard_does_not_reuse_one_slot_over_and_over() {
    use wasmshard::Capacity;
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(3)
        .build_manual()
        .unwrap();
    let slot = |a: Address| (a.to_bits() >> 32) & 0xff_ffff;
    let idle = |_: &mut Context<'_>, _: Address, _: &[u8]| {};
    rt.spawn_native("a", None, idle).unwrap();
    rt.spawn_native("b", None, idle).unwrap();
    let mut slots = Vec::new();
    for i in 0..12 {
        let c = rt.spawn_native(&format!("c{i}"), None, idle).unwrap();
        let err = rt.spawn_native("one too many", None, idle).unwrap_err();
        assert!(
            matches!(
                err,
                SpawnError::NoCapacity(Capacity::ShardFull { slots: 3, .. })
            ),
            "{err:?}"
        );
        slots.push(slot(c));
        rt.stop(c).unwrap();
    }
    for (i, s) in slots.iter().enumerate() {
        if let Some(again) = slots[i + 1..].iter().position(|t| t == s) {
            assert!(
                again >= 3,
                "slot {s} reused after {again} other spawns: {slots:?}"
            );
        }
    }
}

/// On a manual runtime, a handler that stepped its runtime, or a native actor
/// whose `Drop` (run by `Runtime::stop`) spawned or stepped, locked the shards the
/// caller already held: a deadlock, or a panic of the standard library's mutex.
/// Those calls are now refused as every reentrant call is.
#[test]
fn stepping_a_manual_runtime_from_its_own_actor_is_refused() {
    struct CallsBackOnDrop {
        rt: Arc<std::sync::OnceLock<std::sync::Weak<Runtime>>>,
        out: Arc<Mutex<Vec<String>>>,
    }
    impl NativeActor for CallsBackOnDrop {
        fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}
    }
    impl Drop for CallsBackOnDrop {
        fn drop(&mut self) {
            if let Some(rt) = self.rt.get().and_then(|w| w.upgrade()) {
                let spawned = rt.spawn_native("late", Some(0), Echo);
                let stepped = rt.step();
                let stalled = rt.run_until_stalled();
                self.out
                    .lock()
                    .unwrap()
                    .push(format!("{spawned:?} {stepped} {stalled}"));
            }
        }
    }
    let rt = Arc::new(builder(1).build_manual().unwrap());
    let handle: Arc<std::sync::OnceLock<std::sync::Weak<Runtime>>> = Arc::default();
    let out: Arc<Mutex<Vec<String>>> = Arc::default();
    let (h, o) = (handle.clone(), out.clone());
    let stepper = rt
        .spawn_native(
            "stepper",
            Some(0),
            Native(move |_: &mut Context<'_>, _, _: &[u8]| {
                let rt = h.get().and_then(|w| w.upgrade()).unwrap();
                let stepped = rt.step();
                let stalled = rt.run_until_stalled();
                o.lock().unwrap().push(format!("{stepped} {stalled}"));
            }),
        )
        .unwrap();
    let dropper = rt
        .spawn_native(
            "dropper",
            Some(0),
            CallsBackOnDrop {
                rt: handle.clone(),
                out: out.clone(),
            },
        )
        .unwrap();
    handle.set(Arc::downgrade(&rt)).unwrap();
    rt.send(stepper, b"go").unwrap();
    let r = rt.clone();
    within(Duration::from_secs(60), "reentrant stepping", move || {
        r.run_until_stalled();
        r.stop(dropper).unwrap();
    });
    assert_eq!(
        *out.lock().unwrap(),
        ["false 0", "Err(Reentrant) false 0"],
        "what the reentrant calls returned"
    );
    assert!(rt.lookup("late").is_none());
}

/// A native actor whose handler, on a host request, sends messages and then hits
/// a defect of the runtime (a panic the actor's guard does not contain).
struct Defective {
    sink: Address,
}

impl NativeActor for Defective {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        _: u64,
        _: &[u8],
    ) -> Option<Vec<u8>> {
        for _ in 0..5 {
            ctx.send(self.sink, b"sent before the defect").unwrap();
        }
        std::panic::panic_any(wasmshard::RuntimeDefect)
    }
}

/// When the shard's loop panicked inside a handler, what the actor had sent was
/// dropped with its outbox, the request being handled vanished uncounted, and the
/// host waited for that request until its timeout (for ever on a shard that gave
/// up). Now the sends go on their way, the envelope in hand is a dead letter, and
/// the host's request ends `target-failed` at once.
#[test]
fn a_defect_inside_a_handler_loses_nothing_and_leaves_no_one_waiting() {
    let rt = Arc::new(builder(2).build().unwrap());
    let (sink, inbox) = probe(&rt, "sink", 0);
    let doomed = rt
        .spawn_native("doomed", Some(1), Defective { sink })
        .unwrap();
    let r = rt.clone();
    let result = within(Duration::from_secs(60), "the host's request", move || {
        r.request(doomed, b"q", Duration::from_secs(3600))
            .unwrap()
            .wait(Duration::from_secs(3600))
    });
    assert_eq!(result, Some(Err(RequestError::TargetFailed)));
    assert!(rt.wait_idle(IDLE));
    assert_eq!(inbox.lock().unwrap().len(), 5, "the sends made before");
    let stats = rt.stats();
    assert_eq!(stats.shards[1].dead_letters, 1, "the request in hand");
    assert!(stats.actor("doomed").unwrap().failure.is_some());
}

/// A request admitted for an actor whose shard then failed was counted as a dead
/// letter there, and its requester heard nothing until its timeout. It now ends
/// with `target-failed`.
#[test]
fn a_request_reaching_a_failed_shard_ends_target_failed() {
    let rt = builder(2).build_manual().unwrap();
    let doomed = rt.spawn_native("doomed", Some(0), Echo).unwrap();
    type Outcomes = Arc<Mutex<Vec<Result<Vec<u8>, RequestError>>>>;
    let outcomes: Outcomes = Arc::default();
    struct Ask {
        target: Address,
        outcomes: Outcomes,
    }
    impl NativeActor for Ask {
        fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, _: &[u8]) {
            ctx.request(self.target, b"q", Duration::from_secs(3600))
                .unwrap();
        }
        fn handle_response(&mut self, _: &mut Context<'_>, _: u64, r: Result<&[u8], RequestError>) {
            self.outcomes.lock().unwrap().push(r.map(<[u8]>::to_vec));
        }
    }
    let asker = rt
        .spawn_native(
            "asker",
            Some(1),
            Ask {
                target: doomed,
                outcomes: outcomes.clone(),
            },
        )
        .unwrap();
    rt.send(asker, b"go").unwrap();
    // One pass: shard 1 runs the asker, whose request waits in the ring to shard 0.
    assert!(rt.step());
    assert!(outcomes.lock().unwrap().is_empty());
    rt.inject_shard_panic(0);
    rt.run_until_stalled();
    assert_eq!(*outcomes.lock().unwrap(), [Err(RequestError::TargetFailed)]);
    let stats = rt.stats();
    assert_eq!(stats.shards[1].requests.open, 0);
}

/// A shard whose loop keeps panicking gives up running actor code, but still
/// answers commands and counts what reaches it, so nothing waits for it and
/// shutdown completes with every message accounted for.
#[test]
fn a_shard_that_keeps_panicking_gives_up_and_still_answers() {
    let rt = builder(2).build().unwrap();
    let counter = load(&rt, "counter.wat");
    let sink = rt
        .spawn(&counter, SpawnOptions::new("sink").shard(0))
        .unwrap();
    rt.spawn(&counter, SpawnOptions::new("doomed").shard(1))
        .unwrap();
    for _ in 0..20 {
        rt.inject_shard_panic(1);
    }
    let report = within(Duration::from_secs(60), "a shard that gave up", move || {
        eventually("never: the doomed actor is reported failed", || {
            rt.stats().actor("doomed").unwrap().failure.is_some()
        });
        let err = rt
            .spawn(&counter, SpawnOptions::new("new").shard(1))
            .unwrap_err();
        assert!(
            matches!(err, SpawnError::ShardFailed { shard: 1 }),
            "{err:?}"
        );
        rt.send(sink, b"x").unwrap();
        assert!(rt.wait_idle(IDLE));
        rt.shutdown()
    });
    assert_eq!(report.stats.actor("sink").unwrap().handled, 1);
    assert!(!report.stats.actor("doomed").unwrap().alive);
}

/// A shard that gave up sleeps until something comes for it, as any idle
/// shard does: it woke every millisecond for the rest of the runtime's life
/// (and woke the epoch ticker with it), so an idle runtime used CPU.
#[test]
fn a_shard_that_gave_up_sleeps_while_idle() {
    let rt = builder(2).build().unwrap();
    for _ in 0..20 {
        rt.inject_shard_panic(1);
    }
    within(Duration::from_secs(60), "a shard that gave up", move || {
        eventually("never: shard 1 gives up", || {
            rt.spawn_native("probe", Some(1), |_: &mut Context<'_>, _, _: &[u8]| {})
                .is_err()
        });
        assert!(rt.wait_idle(IDLE));
        let parks = |rt: &Runtime| rt.stats().shards[1].parks;
        let before = parks(&rt);
        std::thread::sleep(Duration::from_millis(300));
        let woke = parks(&rt) - before;
        assert!(
            woke < 30,
            "an idle shard that gave up parked {woke} times in 300 ms"
        );
        rt.shutdown();
    });
}

/// A supervised actor whose restarted `init` stops it and then fails: the
/// restart found it gone and failed it again, a panic of the shard's loop
/// that failed every actor there.
#[test]
fn a_restart_whose_init_stops_the_actor_fails_nothing_else() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (bystander, _) = probe(&rt, "bystander", 0);
    let quitter = rt
        .spawn(
            &g,
            SpawnOptions::new("quitter")
                .config("quitter")
                .restart(wasmshard::Restart::on_failure()),
        )
        .unwrap();
    rt.send(quitter, b"panic").unwrap();
    rt.run_until_stalled();
    let stats = rt.stats();
    let q = stats.actor("quitter").unwrap();
    assert!(!q.alive);
    assert!(stats.actor("bystander").unwrap().alive);
    assert!(stats.actor("bystander").unwrap().failure.is_none());
    rt.send(bystander, b"still here").unwrap();
}

/// A restart whose `init` sets a timer and then fails leaves no timer behind,
/// as a spawn whose `init` fails and a rolled-back upgrade do not: the timers
/// of each failed restart stayed pending, counted against `max-timers`, until
/// the actor ended.
#[test]
fn a_failed_restart_leaves_no_timers_behind() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let sticky = rt
        .spawn(
            &g,
            SpawnOptions::new("sticky").config("sticky").restart(
                wasmshard::Restart::on_failure()
                    .max_restarts(3)
                    .backoff(Duration::from_secs(600), Duration::from_secs(600)),
            ),
        )
        .unwrap();
    let timers = |rt: &Runtime| rt.stats().shards[0].requests.timers;
    // A pass publishes the shard's counts.
    rt.send(sticky, b"hi").unwrap();
    rt.run_until_stalled();
    assert_eq!(timers(&rt), 1);
    // Fails; its first restart is at once, and its `init` fails after it set
    // a timer; the next restart waits ten minutes.
    rt.send(sticky, b"panic").unwrap();
    rt.run_until_stalled();
    let stats = rt.stats();
    let s = stats.actor("sticky").unwrap();
    assert!(s.alive && !s.failed, "{s:?}");
    assert!(
        s.failure
            .as_deref()
            .unwrap_or_default()
            .contains("restart failed"),
        "{s:?}"
    );
    assert_eq!(timers(&rt), 1, "the first instance's timer only");
    let r = rt.stats().shards[0].requests;
    assert_eq!(r.scheduled, 2);
    assert_eq!(r.unfired, 1);
    // Its restart and its timer are ten minutes and an hour away.
    rt.shutdown_within(Duration::ZERO);
}

/// An actor that stops itself while handling a request, then fails: the
/// request it was handling was left open (its requester waited for its
/// timeout, forever with no timeout).
#[test]
fn a_request_whose_handler_stops_itself_then_fails_ends_at_once() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let quitter = rt
        .spawn(&g, SpawnOptions::new("quitter").config("quitter"))
        .unwrap();
    let reply = rt
        .request(quitter, b"stop-then-panic", Duration::from_secs(3600))
        .unwrap();
    rt.run_until_stalled();
    assert_eq!(reply.try_get(), Some(Err(RequestError::TargetFailed)));
    assert_eq!(rt.stats().shards[0].requests.open, 0);
    assert_eq!(rt.lookup("quitter"), None);
}

/// A component loaded by one runtime was taken by another, where it ran on the
/// first one's engine: under that engine's epoch (no CPU budget at all, for a
/// runtime built without one, so a loop hung the second runtime's shard and
/// its shutdown) and in that engine's instance pool. Spawns, upgrades and
/// registrations refuse it now.
#[test]
fn a_component_from_another_runtime_is_refused() {
    let lender = builder(1).cpu_budget(None).build().unwrap();
    let rt = builder(1).build().unwrap();
    let foreign = load(&lender, "loop.wat");
    assert!(matches!(
        rt.spawn(&foreign, SpawnOptions::new("spinner")),
        Err(SpawnError::ForeignComponent(_))
    ));
    assert!(matches!(
        rt.register_component("spinner", &foreign),
        Err(SpawnError::ForeignComponent(_))
    ));
    let own = load(&rt, "counter.wat");
    let counter = rt.spawn(&own, SpawnOptions::new("counter")).unwrap();
    assert!(matches!(
        rt.upgrade(counter, &foreign),
        Err(wasmshard::UpgradeError::Init(SpawnError::ForeignComponent(
            _
        )))
    ));
    // Its own components are taken, and names are checked as actors' are.
    assert!(rt.register_component("counter", &own).unwrap().is_none());
    for name in ["", "a\nb", &"w".repeat(wasmshard::MAX_NAME_LEN + 1)] {
        assert!(matches!(
            rt.register_component(name, &own),
            Err(SpawnError::BadName(_))
        ));
    }
    rt.send(counter, b"x").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().actor("counter").unwrap().handled, 1);
    assert!(rt.stats().actor("spinner").is_none());
}

/// An upgrade whose `init` stopped the actor and then failed was rolled back,
/// yet the stop it sent went on its way and ended the old instance that the
/// rollback promised to keep (its queue turned into dead letters).
#[test]
fn a_rolled_back_upgrade_does_not_stop_the_old_instance() {
    let rt = builder(1).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let quitter = rt
        .spawn(&g, SpawnOptions::new("quitter").config("quitter"))
        .unwrap();
    // Its second `init` (the upgrade's) stops the actor, then fails.
    assert!(matches!(
        rt.upgrade(quitter, &g),
        Err(wasmshard::UpgradeError::Init(SpawnError::Init(_)))
    ));
    rt.send(quitter, b"still here?").unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    let q = stats.actor("quitter").unwrap();
    assert!(q.alive, "{q:?}");
    assert_eq!(q.handled, 1);
    assert_eq!(rt.lookup("quitter"), Some(quitter));
    assert_eq!(stats.dead_letters, 0);
}

/// A manual runtime's shutdown ran its shards' last work outside a pass: a
/// native actor whose `Drop` waited for a host request's reply was not
/// refused, and waited for ever (host waiters end only after the drops).
#[test]
fn a_drop_that_waits_during_a_manual_shutdown_is_refused() {
    type Seen = Arc<Mutex<Vec<Option<Result<Vec<u8>, RequestError>>>>>;
    struct Waits(Option<wasmshard::PendingReply>, Seen);
    impl NativeActor for Waits {
        fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}
    }
    impl Drop for Waits {
        fn drop(&mut self) {
            if let Some(pending) = self.0.take() {
                self.1.lock().unwrap().push(pending.wait(Duration::MAX));
            }
        }
    }
    let rt = builder(2).build_manual().unwrap();
    // Defers every request and never answers; on shard 1, stopped after
    // shard 0's actors.
    let silent = rt
        .spawn_native(
            "silent",
            Some(1),
            |_: &mut Context<'_>, _: Address, _: &[u8]| {},
        )
        .unwrap();
    let pending = rt.request(silent, b"?", Duration::from_secs(3600)).unwrap();
    rt.run_until_stalled();
    let seen: Seen = Arc::default();
    rt.spawn_native("waits", Some(0), Waits(Some(pending), seen.clone()))
        .unwrap();
    let report = within(Duration::from_secs(60), "a manual shutdown", move || {
        rt.shutdown_within(Duration::ZERO)
    });
    assert!(!report.stats.actor("waits").unwrap().alive);
    assert_eq!(*seen.lock().unwrap(), [None], "refused at once");
}
