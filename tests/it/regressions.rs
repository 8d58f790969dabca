//! Defects found by trying the runtime as its users would: with guests built by the
//! ordinary toolchain, hostile guests and bad input. Each test failed before its
//! fix. (The post-return corruption of direct replies and the double end of a
//! request whose handler responded and then trapped are shown by Rust guests, in
//! `guests`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmshard::{
    Address, Context, FailureKind, NativeActor, RequestError, SendError, SpawnError, SpawnOptions,
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
            let id = ctx.request(self.target, b"q", 3_600_000_000_000).unwrap();
            self.ids.lock().unwrap().push(id);
        }
    }

    fn handle_response(&mut self, ctx: &mut Context<'_>, _: u64, r: Result<&[u8], RequestError>) {
        r.unwrap();
        *self.answered.lock().unwrap() += 1;
        // Sequential round trips: the next one.
        let id = ctx.request(self.target, b"q", 3_600_000_000_000).unwrap();
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
