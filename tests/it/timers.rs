//! Timers (`wasmshard:actor/timers`, `Context::schedule`, `Runtime::schedule`),
//! driven through the Rust test guest's `clock` role (`tests/guests/roles`): a
//! timer fires exactly once, never early, unless cancelled; the per-actor cap;
//! a periodic tick; timers carry over a supervised restart and end with the
//! actor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmshard::{Address, Context, Restart, Runtime, SpawnOptions, TimerError};

use crate::support::*;

fn ask(rt: &Runtime, clock: Address, command: &[u8]) -> Vec<u32> {
    let reply = rt
        .request(clock, command, Duration::from_secs(600))
        .unwrap();
    let bytes = if rt.is_manual() {
        rt.run_until_stalled();
        reply.try_get().expect("answered")
    } else {
        reply.wait(Duration::from_secs(60)).expect("answered")
    }
    .expect("a reply");
    bytes
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// `[fired, early, twice, max late µs, ticks, strangers, host timers, unknown]`.
fn report(rt: &Runtime, clock: Address) -> Vec<u32> {
    ask(rt, clock, b"r")
}

fn set_one(rt: &Runtime, clock: Address, delay: Duration) -> (u32, u64) {
    let mut c = vec![b's'];
    c.extend_from_slice(&(delay.as_nanos() as u64).to_le_bytes());
    let r = ask(rt, clock, &c);
    (r[0], u64::from(r[1]) | (u64::from(r[2]) << 32))
}

fn cancel(rt: &Runtime, clock: Address, id: u64) -> bool {
    let mut c = vec![b'c'];
    c.extend_from_slice(&id.to_le_bytes());
    ask(rt, clock, &c)[0] == 1
}

fn bulk(rt: &Runtime, clock: Address, count: u32, max_delay_us: u32, seed: u32) -> Vec<u32> {
    let mut c = vec![b'b'];
    for w in [count, max_delay_us, seed] {
        c.extend_from_slice(&w.to_le_bytes());
    }
    ask(rt, clock, &c)
}

fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_hundred_thousand_timers_fire_once_each_never_early() {
    let rt = builder(2).max_timers(60_000).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let clocks: Vec<Address> = (0..2)
        .map(|s| {
            rt.spawn(
                &g,
                SpawnOptions::new(format!("clock-{s}"))
                    .config("clock")
                    .shard(s),
            )
            .unwrap()
        })
        .collect();
    for (i, &c) in clocks.iter().enumerate() {
        // Delays below 300 ms, set 5 000 a call (well within a call's CPU budget).
        for k in 0..10 {
            assert_eq!(
                bulk(&rt, c, 5_000, 300_000, 7 + i as u32 * 10 + k),
                vec![5_000, 0]
            );
        }
    }
    assert!(rt.wait_idle(Duration::from_secs(60)), "every timer fired");
    let mut late = Vec::new();
    for &c in &clocks {
        let r = report(&rt, c);
        assert_eq!(r[0], 50_000, "each fired: {r:?}");
        assert_eq!(
            (r[1], r[2], r[5], r[7]),
            (0, 0, 0, 0),
            "none early, none twice: {r:?}"
        );
        late.push(r[3]);
    }
    let stats = rt.stats();
    let fired: u64 = stats.shards.iter().map(|s| s.requests.fired).sum();
    let pending: u64 = stats.shards.iter().map(|s| s.requests.timers).sum();
    assert_eq!((fired, pending), (100_000, 0));
    eprintln!("100 000 timers: latest fired {late:?} µs after its due time");
    // Generous: each due time counts from the `schedule` call, and timers due
    // together are handled one after another on a loaded machine.
    assert!(late.iter().all(|&l| l < 2_000_000), "{late:?} µs late");
    rt.shutdown();
}

#[test]
fn a_cancelled_timer_never_fires_and_a_fired_one_cannot_be_cancelled() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let clock = rt
        .spawn(&g, SpawnOptions::new("clock").config("clock"))
        .unwrap();
    let (code, far) = set_one(&rt, clock, Duration::from_secs(3600));
    assert_eq!(code, 0);
    assert!(cancel(&rt, clock, far), "pending: cancelled");
    assert!(!cancel(&rt, clock, far), "only once");
    let (_, now) = set_one(&rt, clock, Duration::ZERO);
    assert!(rt.wait_idle(Duration::from_secs(10)));
    assert_eq!(
        report(&rt, clock)[0],
        1,
        "the due one fired, the cancelled one not"
    );
    assert!(!cancel(&rt, clock, now), "fired: no longer pending");
    // Ids of other actors' timers and forged ids cancel nothing.
    let other = rt
        .spawn(&g, SpawnOptions::new("other").config("clock"))
        .unwrap();
    let (_, theirs) = set_one(&rt, other, Duration::from_secs(3600));
    assert!(!cancel(&rt, clock, theirs));
    assert!(!cancel(&rt, clock, u64::MAX) && !cancel(&rt, clock, 0));
    assert!(rt.cancel_timer(theirs).unwrap(), "the host cancels any");
    assert_eq!(rt.stats().shards[0].requests.timers, 0);
    rt.shutdown();
}

#[test]
fn a_periodic_tick_re_armed_from_handle_message() {
    let rt = builder(1).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let clock = rt
        .spawn(&g, SpawnOptions::new("clock").config("clock"))
        .unwrap();
    let mut c = vec![b't'];
    c.extend_from_slice(&1_000_000u64.to_le_bytes());
    c.extend_from_slice(&25u32.to_le_bytes());
    assert_eq!(ask(&rt, clock, &c), vec![0]);
    let start = Instant::now();
    wait_for(|| report(&rt, clock)[4] == 25, "25 ticks");
    assert!(
        start.elapsed() >= Duration::from_millis(24),
        "a tick is never early"
    );
    assert!(
        rt.wait_idle(Duration::from_secs(10)),
        "the tick stops when asked"
    );
    assert_eq!(report(&rt, clock)[4], 25);
    rt.shutdown();
}

#[test]
fn the_cap_on_pending_timers() {
    let rt = builder(1).max_timers(10).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let clock = rt
        .spawn(&g, SpawnOptions::new("clock").config("clock"))
        .unwrap();
    assert_eq!(bulk(&rt, clock, 15, 3_600_000_000, 1), vec![10, 5]);
    // too-many-requests, from the guest and from the host.
    assert_eq!(set_one(&rt, clock, Duration::ZERO).0, 7);
    assert_eq!(
        rt.schedule(clock, Duration::ZERO, b"H"),
        Err(TimerError::TooManyTimers(10))
    );
    assert_eq!(rt.stats().shards[0].requests.timers, 10);
    // A stopped actor's timers end with it.
    rt.stop(clock).unwrap();
    assert_eq!(rt.stats().shards[0].requests.timers, 0);
    assert_eq!(
        rt.schedule(clock, Duration::ZERO, b"H"),
        Err(TimerError::UnknownTarget(clock))
    );
    rt.shutdown();
}

#[test]
fn timers_carry_over_a_restart_and_the_host_sets_them_too() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let clock = rt
        .spawn(
            &g,
            SpawnOptions::new("clock")
                .config("clock")
                .restart(Restart::on_failure()),
        )
        .unwrap();
    let (code, _) = set_one(&rt, clock, Duration::from_millis(30));
    assert_eq!(code, 0);
    let host = rt.schedule(clock, Duration::from_millis(30), b"H").unwrap();
    let cancelled = rt.schedule(clock, Duration::from_millis(1), b"H").unwrap();
    assert!(rt.cancel_timer(cancelled).unwrap());
    assert!(!rt.cancel_timer(cancelled).unwrap());
    rt.send(clock, b"panic").unwrap();
    rt.run_until_stalled();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let stats = rt.stats();
    assert_eq!(stats.actor("clock").unwrap().restarts, 1);
    let r = report(&rt, clock);
    assert_eq!(
        (r[0], r[6]),
        (1, 1),
        "the restarted instance got both: {r:?}"
    );
    assert!(!rt.cancel_timer(host).unwrap(), "fired");
    rt.shutdown();
}

#[test]
fn a_native_actor_sets_and_cancels_timers() {
    let rt = builder(1).build().unwrap();
    let got: Inbox = Arc::default();
    let seen = got.clone();
    let me = rt
        .spawn_native(
            "native-clock",
            None,
            move |ctx: &mut Context<'_>, from: Address, payload: &[u8]| {
                if from == Address::HOST {
                    let keep = ctx.schedule(Duration::from_millis(5), b"kept").unwrap();
                    let drop = ctx.schedule(Duration::from_millis(1), b"dropped").unwrap();
                    assert!(ctx.cancel_timer(drop) && !ctx.cancel_timer(drop));
                    assert_ne!(keep, drop);
                } else {
                    seen.lock().unwrap().push((from, payload.to_vec()));
                }
            },
        )
        .unwrap();
    rt.send(me, b"go").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    assert_eq!(*got.lock().unwrap(), vec![(me, b"kept".to_vec())]);
    rt.shutdown();
}

/// A fired timer waiting in the mailbox still counts against the cap, so an
/// actor that sets timers from its timers cannot pile them up without bound.
#[test]
fn a_fired_timer_counts_against_the_cap_until_it_is_handled() {
    let rt = builder(1).max_timers(4).build_manual().unwrap();
    let results: Arc<std::sync::Mutex<Vec<(bool, bool)>>> = Arc::default();
    let seen = results.clone();
    let me = rt
        .spawn_native(
            "flooder",
            None,
            move |ctx: &mut Context<'_>, from: Address, _: &[u8]| {
                if from == Address::HOST {
                    for _ in 0..4 {
                        ctx.schedule(Duration::ZERO, b"t").unwrap();
                    }
                    return;
                }
                let mut seen = seen.lock().unwrap();
                if seen.len() < 40 {
                    let first = ctx.schedule(Duration::ZERO, b"t").is_ok();
                    let second = ctx.schedule(Duration::ZERO, b"t").is_ok();
                    seen.push((first, second));
                }
            },
        )
        .unwrap();
    rt.send(me, b"go").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let results = results.lock().unwrap();
    assert_eq!(results.len(), 40);
    // Each handled timer frees one place: one more goes, the next is refused.
    assert!(results.iter().all(|&r| r == (true, false)), "{results:?}");
    rt.shutdown();
}

/// A timer that falls due while its actor waits for a restart is queued for
/// the new instance; the cap is whole again once everything fired.
#[test]
fn a_timer_due_during_a_restart_reaches_the_new_instance() {
    let rt = builder(1).max_timers(8).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let clock = rt
        .spawn(
            &g,
            SpawnOptions::new("clock").config("clock").restart(
                Restart::on_failure()
                    .max_restarts(5)
                    .backoff(Duration::from_millis(200), Duration::from_secs(1)),
            ),
        )
        .unwrap();
    assert_eq!(set_one(&rt, clock, Duration::from_millis(50)).0, 0);
    // The first restart is at once, the second waits its backoff (200 ms),
    // past the timer's due time.
    rt.send(clock, b"panic").unwrap();
    rt.send(clock, b"panic").unwrap();
    wait_for(
        || rt.stats().actor("clock").unwrap().restarts == 2,
        "two restarts",
    );
    assert!(rt.wait_idle(Duration::from_secs(10)));
    assert_eq!(report(&rt, clock)[0], 1, "fired into the new instance");
    assert_eq!(
        bulk(&rt, clock, 9, 3_600_000_000, 3),
        vec![8, 1],
        "the cap is whole"
    );
    rt.stop(clock).unwrap();
    rt.shutdown();
}

/// A start that fails after its `init` set a timer and subscribed leaves
/// neither; an upgrade whose new `init` does the same and fails leaves the
/// old instance's timers and subscriptions as they were.
#[test]
fn a_failed_start_or_rolled_back_upgrade_leaves_no_timer_or_subscription() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let trial = load(&rt, "topical.wat");
    // `topical` with the config `clock` sets a timer, subscribes to `trial`,
    // then fails its `init`.
    assert!(
        rt.spawn(&trial, SpawnOptions::new("t").config("clock"))
            .is_err()
    );
    rt.run_until_stalled();
    let subscribers = |rt: &Runtime| {
        rt.topics()
            .iter()
            .find(|t| t.topic == "trial")
            .map_or(0, |t| t.subscribers)
    };
    assert_eq!(subscribers(&rt), 0);
    assert_eq!(rt.stats().shards[0].requests.timers, 0);
    let clock = rt
        .spawn(&g, SpawnOptions::new("clock").config("clock"))
        .unwrap();
    let (_, far) = set_one(&rt, clock, Duration::from_secs(3600));
    assert!(rt.upgrade(clock, &trial).is_err(), "rolled back");
    rt.run_until_stalled();
    assert_eq!(subscribers(&rt), 0);
    let stats = rt.stats();
    assert_eq!(stats.shards[0].requests.timers, 1, "the old one only");
    assert_eq!(report(&rt, clock)[7], 0, "the trial's timer never fired");
    assert!(cancel(&rt, clock, far), "the old timer is pending");
    rt.shutdown();
}
