//! Supervision: a failed actor restarted in place (same address, name and
//! queued messages), its intensity and backoff, supervised native actors, and
//! supervision groups; hot swap (`Runtime::upgrade`).
//! Driven through the Rust test guest's `forward` and `trap` roles
//! (`tests/guests/roles`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wasmshard::{
    Address, Component, Context, Group, NativeActor, RequestError, Restart, Runtime, SendError,
    SpawnError, SpawnOptions, Strategy, UpgradeError,
};

use crate::support::*;

/// Restarts at once, every time (no backoff), up to `max` within a minute.
fn eager(max: u32) -> Restart {
    Restart::on_failure()
        .max_restarts(max)
        .window(Duration::from_secs(60))
        .backoff(Duration::ZERO, Duration::ZERO)
}

/// A collector probe and a `forward` actor supervised by `restart`.
fn forwarder(rt: &Runtime, g: &Component, shard: usize, restart: Restart) -> (Address, Inbox) {
    let (_, inbox) = probe(rt, "collector", 0);
    let fwd = rt
        .spawn(
            g,
            SpawnOptions::new("fwd")
                .config("forward collector")
                .shard(shard)
                .restart(restart),
        )
        .unwrap();
    (fwd, inbox)
}

fn payloads(inbox: &Inbox) -> Vec<String> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect()
}

#[test]
fn a_restart_keeps_the_address_the_name_and_the_queue() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (fwd, inbox) = forwarder(&rt, &g, 0, eager(5));
    // Queued together: the fatal one is in the middle.
    for p in ["1", "2", "panic", "3", "4", "5"] {
        rt.send(fwd, p.as_bytes()).unwrap();
    }
    rt.run_until_stalled();
    // Each instance announces itself from init: the second one handled what
    // was queued behind the fatal message, in order, at the same address.
    assert_eq!(payloads(&inbox), ["up", "1", "2", "up", "3", "4", "5"]);
    assert!(inbox.lock().unwrap().iter().all(|(from, _)| *from == fwd));
    let stats = rt.stats();
    let a = stats.actor("fwd").unwrap();
    assert_eq!(
        (a.restarts, a.failures, a.alive, a.failed),
        (1, 1, true, false)
    );
    // (The test guest installs no panic hook: a panic is a bare trap.)
    assert!(
        a.failure.as_deref().unwrap().contains("unreachable"),
        "{:?}",
        a.failure
    );
    assert_eq!(a.address, fwd);
    // The fatal message is the only dead letter.
    assert_eq!(stats.dead_letters, 1);
    assert_eq!(rt.lookup("fwd"), Some(fwd));
    rt.send(fwd, b"6").unwrap();
    rt.run_until_stalled();
    assert_eq!(payloads(&inbox).last().unwrap(), "6");
    let report = rt.shutdown();
    assert_eq!(report.dead_letter_count, 1);
}

#[test]
fn requests_it_held_or_failed_on_end_target_failed_at_once() {
    let rt = builder(2).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let trap = rt
        .spawn(
            &g,
            SpawnOptions::new("trap")
                .config("trap")
                .shard(1)
                .restart(eager(5)),
        )
        .unwrap();
    let long = Duration::from_secs(600);
    // Held (deferred) by the first instance; then it panics on a tell.
    let held = rt.request(trap, b"held", long).unwrap();
    rt.run_until_stalled();
    assert_eq!(held.try_get(), None);
    rt.send(trap, b"panic").unwrap();
    rt.run_until_stalled();
    assert_eq!(held.try_get(), Some(Err(RequestError::TargetFailed)));
    // A request it fails on ends the same way.
    let fatal = rt.request(trap, b"panic", long).unwrap();
    rt.run_until_stalled();
    assert_eq!(fatal.try_get(), Some(Err(RequestError::TargetFailed)));
    // The third instance answers.
    let fresh = rt.request(trap, b"fresh", long).unwrap();
    rt.send(trap, b"answer").unwrap();
    rt.run_until_stalled();
    assert_eq!(
        fresh.try_get(),
        Some(Ok(crate::pattern::transform(b"fresh")))
    );
    let stats = rt.stats();
    let a = stats.actor("trap").unwrap();
    assert_eq!((a.restarts, a.failures, a.alive), (2, 2, true));
    assert_eq!(stats.shards[0].requests.open, 0);
}

#[test]
fn beyond_its_intensity_it_ends_for_good_and_leaves_nothing_behind() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (fwd, inbox) = forwarder(&rt, &g, 0, eager(2));
    for p in ["panic", "a", "panic", "b", "panic", "after", "later"] {
        rt.send(fwd, p.as_bytes()).unwrap();
    }
    rt.run_until_stalled();
    assert_eq!(payloads(&inbox), ["up", "up", "a", "up", "b"]);
    let stats = rt.stats();
    let a = stats.actor("fwd").unwrap();
    assert_eq!(
        (a.restarts, a.failures, a.alive, a.failed),
        (2, 3, false, true)
    );
    let why = a.failure.as_deref().unwrap();
    assert!(why.contains("gave up"), "{why}");
    assert!(why.contains("2 restarts within 1m"), "{why}");
    assert!(why.contains("last failure: trap"), "{why}");
    // Three fatal messages and the two queued behind the last.
    assert_eq!(stats.dead_letters, 5);
    assert_eq!(stats.shards[0].actors, 1);
    assert_eq!(stats.shards[0].restarting, 0);
    assert_eq!(rt.lookup("fwd"), None);
    assert_eq!(rt.send(fwd, b"x"), Err(SendError::UnknownTarget));
    // The name is free again.
    rt.spawn(&g, SpawnOptions::new("fwd").config("forward collector"))
        .unwrap();
}

#[test]
fn a_restart_whose_init_fails_is_a_failure_of_its_own() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (gate, _) = probe(&rt, "gate", 0);
    let (_, inbox) = probe(&rt, "collector", 0);
    let fwd = rt
        .spawn(
            &g,
            SpawnOptions::new("fwd")
                .config("forward collector gate")
                .restart(eager(3)),
        )
        .unwrap();
    // Without the gate, every new instance's init refuses.
    rt.stop(gate).unwrap();
    rt.send(fwd, b"panic").unwrap();
    rt.send(fwd, b"queued").unwrap();
    rt.run_until_stalled();
    let stats = rt.stats();
    let a = stats.actor("fwd").unwrap();
    // One panic, then three restarts that failed: the fourth failure is one
    // more than the intensity allows.
    assert_eq!((a.restarts, a.failures, a.alive), (0, 4, false));
    let why = a.failure.as_deref().unwrap();
    assert!(why.contains("gave up"), "{why}");
    assert!(why.contains("restart failed"), "{why}");
    assert!(why.contains("`gate` is not registered"), "{why}");
    assert_eq!(payloads(&inbox), ["up"]);
    assert_eq!(stats.dead_letters, 2);
    assert_eq!(rt.lookup("fwd"), None);
}

#[test]
fn the_backoff_delays_a_restart_and_sends_are_admitted_meanwhile() {
    let rt = builder(1).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let backoff = Duration::from_millis(300);
    let (fwd, inbox) = forwarder(
        &rt,
        &g,
        0,
        Restart::on_failure().backoff(backoff, Duration::from_secs(5)),
    );
    let sent = Instant::now();
    rt.send(fwd, b"panic").unwrap();
    rt.send(fwd, b"panic").unwrap();
    // The second failure waits the backoff; wait until it has happened.
    let deadline = Instant::now() + IDLE;
    while rt.stats().actor("fwd").unwrap().failures < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    rt.send(fwd, b"waited").unwrap();
    let a = rt.stats().actor("fwd").unwrap().clone();
    assert_eq!((a.restarts, a.alive), (1, true));
    assert!(rt.wait_idle(IDLE));
    assert!(sent.elapsed() >= backoff);
    assert_eq!(payloads(&inbox), ["up", "up", "up", "waited"]);
    assert_eq!(rt.stats().actor("fwd").unwrap().restarts, 2);
}

#[test]
fn stop_and_shutdown_while_waiting_for_a_restart() {
    let rt = builder(1).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let wait = Restart::on_failure().backoff(Duration::from_secs(60), Duration::from_secs(60));
    let (fwd, _) = forwarder(&rt, &g, 0, wait);
    let other = rt
        .spawn(
            &g,
            SpawnOptions::new("other")
                .config("forward collector")
                .restart(wait),
        )
        .unwrap();
    for to in [fwd, other] {
        rt.send(to, b"panic").unwrap();
        rt.send(to, b"panic").unwrap();
        rt.send(to, b"queued").unwrap();
    }
    // Both wait a minute for their second restart; the runtime is not idle.
    assert!(!rt.wait_idle(Duration::from_millis(50)));
    assert_eq!(rt.stats().shards[0].restarting, 2);
    rt.stop(fwd).unwrap();
    assert_eq!(rt.lookup("fwd"), None);
    assert_eq!(rt.stats().shards[0].restarting, 1);
    assert_eq!(rt.send(fwd, b"x"), Err(SendError::UnknownTarget));
    let report = rt.shutdown_within(Duration::from_millis(10));
    // Per actor: two fatal messages and the one queued.
    assert_eq!(report.dead_letter_count, 6);
    assert!(!report.stats.actor("other").unwrap().alive);
}

/// A native actor that records what it handles and panics on `panic`.
struct Flaky {
    instance: u32,
    seen: Inbox,
}

impl NativeActor for Flaky {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, payload: &[u8]) {
        assert!(payload != b"panic", "flaky: panic on command");
        let mut p = self.instance.to_le_bytes().to_vec();
        p.extend_from_slice(payload);
        self.seen.lock().unwrap().push((Address::HOST, p));
    }
}

#[test]
fn a_native_actor_is_restarted_from_its_factory() {
    let rt = builder(1).build_manual().unwrap();
    let seen: Inbox = Arc::default();
    let made = Arc::new(AtomicU32::new(0));
    let (s, m) = (seen.clone(), made.clone());
    let flaky = rt
        .spawn_native_supervised("flaky", None, eager(5), move || {
            let instance = m.fetch_add(1, Ordering::SeqCst);
            // The second instance cannot be made: that restart fails.
            assert!(instance != 1, "factory: no second instance");
            Flaky {
                instance,
                seen: s.clone(),
            }
        })
        .unwrap();
    for p in ["a", "panic", "b"] {
        rt.send(flaky, p.as_bytes()).unwrap();
    }
    rt.run_until_stalled();
    let seen: Vec<(u32, Vec<u8>)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| {
            (
                u32::from_le_bytes(p[..4].try_into().unwrap()),
                p[4..].to_vec(),
            )
        })
        .collect();
    assert_eq!(seen, [(0, b"a".to_vec()), (2, b"b".to_vec())]);
    assert_eq!(made.load(Ordering::SeqCst), 3);
    let stats = rt.stats();
    let a = stats.actor("flaky").unwrap();
    assert_eq!((a.restarts, a.failures, a.alive), (1, 2, true));
    assert!(a.failure.as_deref().unwrap().contains("no second instance"));
}

#[test]
fn restart_policies_out_of_range_are_refused() {
    let rt = builder(1).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let bad = Restart::on_failure().window(Duration::ZERO);
    let e = rt
        .spawn(
            &g,
            SpawnOptions::new("bad")
                .config("forward collector")
                .restart(bad),
        )
        .unwrap_err();
    assert!(matches!(e, SpawnError::Policy(_)), "{e}");
    let why = std::error::Error::source(&e).unwrap().to_string();
    assert!(why.contains("restart-window"), "{why}");
    let e = rt
        .spawn_native_supervised(
            "bad",
            None,
            Restart::on_failure().backoff(Duration::from_secs(2), Duration::from_secs(1)),
            || |_: &mut Context<'_>, _: Address, _: &[u8]| {},
        )
        .unwrap_err();
    let why = std::error::Error::source(&e).unwrap().to_string();
    assert!(why.contains("max-backoff"), "{why}");
    assert_eq!(rt.lookup("bad"), None);
}

/// A flood across shards with a fatal message every thousand: every other
/// message is forwarded once, in order, and each fatal one is a dead letter.
#[test]
fn a_flood_through_restarts_loses_and_repeats_nothing() {
    let rt = builder(2).mailbox_capacity(1 << 16).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (fwd, inbox) = forwarder(&rt, &g, 1, eager(100));
    let mut expected = Vec::new();
    for i in 0..10_000u32 {
        if i % 1000 == 999 {
            rt.send(fwd, b"panic").unwrap();
        } else {
            let p = format!("m{i}");
            rt.send(fwd, p.as_bytes()).unwrap();
            expected.push(p);
        }
    }
    assert!(rt.wait_idle(IDLE));
    let got: Vec<String> = payloads(&inbox).into_iter().filter(|p| p != "up").collect();
    assert_eq!(got, expected);
    let stats = rt.stats();
    let a = stats.actor("fwd").unwrap();
    assert_eq!((a.restarts, a.failures, a.alive), (10, 10, true));
    assert_eq!(stats.dead_letters, 10);
    assert_eq!(a.handled, 9_990);
}

/// Spawns `forward collector` actors `names` into `group`, in order.
fn members(rt: &Runtime, g: &Component, group: &Group, names: &[&str]) -> Vec<Address> {
    names
        .iter()
        .map(|n| {
            rt.spawn(
                g,
                SpawnOptions::new(*n)
                    .config("forward collector")
                    .group(group),
            )
            .unwrap()
        })
        .collect()
}

/// How many times each of `who` announced an instance, in order.
fn ups(inbox: &Inbox, who: &[Address]) -> Vec<usize> {
    let seen = inbox.lock().unwrap();
    who.iter()
        .map(|a| seen.iter().filter(|(f, p)| f == a && p == b"up").count())
        .collect()
}

fn restarts(rt: &Runtime, names: &[&str]) -> Vec<(u64, u64, bool)> {
    let stats = rt.stats();
    names
        .iter()
        .map(|n| {
            let a = stats.actor(n).unwrap();
            (a.restarts, a.failures, a.alive)
        })
        .collect()
}

#[test]
fn a_group_restarts_the_members_its_strategy_names_and_nobody_else() {
    for (strategy, restarted) in [
        (Strategy::OneForOne, [1, 2, 1]),
        (Strategy::OneForAll, [2, 2, 2]),
        (Strategy::RestForOne, [1, 2, 2]),
    ] {
        let rt = builder(2).build_manual().unwrap();
        let Some(g) = guest(&rt) else { return };
        let (_, inbox) = probe(&rt, "collector", 0);
        let group = rt.create_group("g", strategy, eager(5), Some(1)).unwrap();
        let who = members(&rt, &g, &group, &["a", "b", "c"]);
        assert!(who.iter().all(|a| a.shard() == 1));
        // An actor of its own beside the group, on the same shard.
        let outsider = rt
            .spawn(
                &g,
                SpawnOptions::new("outsider")
                    .config("forward collector")
                    .shard(1)
                    .restart(eager(5)),
            )
            .unwrap();
        rt.send(who[0], b"a1").unwrap();
        rt.send(who[1], b"panic").unwrap();
        rt.send(who[2], b"c1").unwrap();
        rt.send(outsider, b"o1").unwrap();
        rt.run_until_stalled();
        let mut all = who.clone();
        all.push(outsider);
        let mut expected = restarted.to_vec();
        expected.push(1);
        assert_eq!(ups(&inbox, &all), expected, "{strategy}");
        let r: Vec<u64> = restarts(&rt, &["a", "b", "c", "outsider"])
            .iter()
            .map(|r| r.0)
            .collect();
        let want: Vec<u64> = expected.iter().map(|&n| n as u64 - 1).collect();
        assert_eq!(r, want, "{strategy}");
        // Only b failed; what the others had queued was handled once.
        assert_eq!(restarts(&rt, &["a", "b", "c"])[1].1, 1);
        let got = payloads(&inbox);
        for p in ["a1", "c1", "o1"] {
            assert_eq!(
                got.iter().filter(|g| *g == p).count(),
                1,
                "{strategy}: {got:?}"
            );
        }
        assert_eq!(rt.stats().dead_letters, 1, "{strategy}");
    }
}

#[test]
fn a_group_beyond_its_intensity_ends_every_member() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (_, inbox) = probe(&rt, "collector", 0);
    let group = rt
        .create_group("crew", Strategy::OneForOne, eager(1), None)
        .unwrap();
    let who = members(&rt, &g, &group, &["a", "b", "c"]);
    let seen = Arc::new(AtomicU32::new(0));
    let s = seen.clone();
    let native = rt
        .spawn_native_in_group("n", &group, move || {
            let s = s.clone();
            move |_: &mut Context<'_>, _: Address, _: &[u8]| {
                s.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    rt.send(native, b"hello").unwrap();
    rt.send(who[1], b"panic").unwrap();
    rt.run_until_stalled();
    rt.send(who[0], b"panic").unwrap();
    rt.send(who[2], b"queued").unwrap();
    rt.run_until_stalled();
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    let stats = rt.stats();
    for n in ["a", "b", "c", "n"] {
        let a = stats.actor(n).unwrap();
        assert!(!a.alive && a.failed, "{n}");
        assert_eq!(rt.lookup(n), None);
    }
    let why = stats.actor("a").unwrap().failure.clone().unwrap();
    assert!(
        why.starts_with("gave up: group `crew` failed again after 1 restart within 1m"),
        "{why}"
    );
    let sibling = stats.actor("c").unwrap().failure.clone().unwrap();
    assert!(
        sibling.starts_with("group `crew` gave up after `a` failed"),
        "{sibling}"
    );
    assert_eq!(stats.actor("b").unwrap().restarts, 1);
    assert_eq!(stats.shards[0].actors, 1); // the collector
    assert_eq!(ups(&inbox, &who), [1, 2, 1]);
    // Two fatal messages, and what c had queued.
    assert_eq!(stats.dead_letters, 3);
}

#[test]
fn group_membership_is_checked() {
    let rt = builder(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let policy = |e: SpawnError| {
        assert!(matches!(e, SpawnError::Policy(_)), "{e}");
        std::error::Error::source(&e).unwrap().to_string()
    };
    let e = rt
        .create_group("g", Strategy::OneForAll, Restart::never(), None)
        .unwrap_err();
    assert!(policy(e).contains("on-failure"));
    let group = rt
        .create_group("g", Strategy::OneForAll, eager(3), Some(0))
        .unwrap();
    assert_eq!((group.name(), group.shard()), ("g", 0));
    let opts = || {
        SpawnOptions::new("m")
            .config("forward collector")
            .group(&group)
    };
    let e = rt.spawn(&g, opts().restart(eager(1))).unwrap_err();
    assert!(policy(e).contains("no policy of its own"));
    let e = rt.spawn(&g, opts().shard(1)).unwrap_err();
    assert!(policy(e).contains("live on its shard 0"));
    let other = builder(1).build().unwrap();
    let e = other.spawn(&guest(&other).unwrap(), opts()).unwrap_err();
    assert!(policy(e).contains("another runtime"));
    assert_eq!(rt.lookup("m"), None);
}

#[test]
fn an_upgrade_under_a_flood_loses_and_repeats_nothing() {
    let rt = Arc::new(builder(2).mailbox_capacity(1 << 16).build().unwrap());
    let Some(g) = guest(&rt) else { return };
    let (fwd, inbox) = forwarder(&rt, &g, 1, Restart::never());
    // A second load of the same guest: a different component value.
    let next = guest(&rt).unwrap();
    let flood = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            for i in 0..10_000u32 {
                rt.send(fwd, format!("m{i}").as_bytes()).unwrap();
            }
        })
    };
    for _ in 0..5 {
        rt.upgrade(fwd, &next).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    flood.join().unwrap();
    assert!(rt.wait_idle(IDLE));
    let got = payloads(&inbox);
    // Each instance said `up` once from its init.
    assert_eq!(got.iter().filter(|p| *p == "up").count(), 6);
    let expected: Vec<String> = (0..10_000).map(|i| format!("m{i}")).collect();
    let forwarded: Vec<String> = got.into_iter().filter(|p| p != "up").collect();
    assert_eq!(forwarded, expected);
    let stats = rt.stats();
    let a = stats.actor("fwd").unwrap();
    assert_eq!((a.upgrades, a.handled, a.failures), (5, 10_000, 0));
    assert_eq!(stats.dead_letters, 0);
}

#[test]
fn an_upgrade_whose_init_fails_rolls_back() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (gate, _) = probe(&rt, "gate", 0);
    let (_, inbox) = probe(&rt, "collector", 0);
    let fwd = rt
        .spawn(
            &g,
            SpawnOptions::new("fwd").config("forward collector gate"),
        )
        .unwrap();
    rt.send(fwd, b"before").unwrap();
    rt.stop(gate).unwrap();
    // Queued: the upgrade comes between two messages.
    let e = rt.upgrade(fwd, &g).unwrap_err();
    match &e {
        UpgradeError::Init(SpawnError::Init(why)) => {
            assert!(why.contains("`gate` is not registered"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    rt.send(fwd, b"after").unwrap();
    rt.run_until_stalled();
    assert_eq!(payloads(&inbox), ["up", "before", "after"]);
    let a = rt.stats().actor("fwd").unwrap().clone();
    assert_eq!((a.upgrades, a.alive, a.failures), (0, true, 0));
}

#[test]
fn an_upgrade_runs_the_new_code_and_ends_what_the_old_one_held() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let counter = load(&rt, "counter.wat");
    // The trap role defers requests; the counter (WAT) ignores its config.
    let trap = rt
        .spawn(&g, SpawnOptions::new("trap").config("trap"))
        .unwrap();
    let held = rt.request(trap, b"held", Duration::from_secs(600)).unwrap();
    rt.run_until_stalled();
    assert_eq!(held.try_get(), None);
    rt.upgrade(trap, &counter).unwrap();
    assert_eq!(held.try_get(), Some(Err(RequestError::TargetStopped)));
    // `panic` traps the old code, not the new.
    rt.send(trap, b"panic").unwrap();
    rt.run_until_stalled();
    let a = rt.stats().actor("trap").unwrap().clone();
    // (The old instance handled the request it deferred; the new one `panic`.)
    assert_eq!(
        (a.upgrades, a.alive, a.failures, a.handled),
        (1, true, 0, 2)
    );
    // Errors: a native actor, a dead address; the actor is untouched.
    let (native, _) = probe(&rt, "native", 0);
    assert!(matches!(
        rt.upgrade(native, &counter),
        Err(UpgradeError::Native(a)) if a == native
    ));
    rt.stop(native).unwrap();
    assert!(matches!(
        rt.upgrade(native, &counter),
        Err(UpgradeError::UnknownTarget(_))
    ));
}

#[test]
fn upgrading_an_actor_waiting_for_its_restart_restarts_it_from_the_new_code() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (_, inbox) = probe(&rt, "collector", 0);
    let counter = load(&rt, "counter.wat");
    let fwd = rt
        .spawn(
            &g,
            SpawnOptions::new("fwd")
                .config("forward collector")
                .restart(
                    Restart::on_failure()
                        .backoff(Duration::from_secs(600), Duration::from_secs(600)),
                ),
        )
        .unwrap();
    for p in ["panic", "panic", "queued"] {
        rt.send(fwd, p.as_bytes()).unwrap();
    }
    rt.run_until_stalled();
    assert_eq!(rt.stats().shards[0].restarting, 1);
    rt.upgrade(fwd, &counter).unwrap();
    rt.run_until_stalled();
    let stats = rt.stats();
    assert_eq!(stats.shards[0].restarting, 0);
    let a = stats.actor("fwd").unwrap();
    // The counter handled what was queued.
    assert_eq!(
        (a.upgrades, a.restarts, a.handled, a.alive),
        (1, 1, 1, true)
    );
    assert_eq!(payloads(&inbox), ["up", "up"]);
}

#[test]
fn an_upgrade_whose_init_stops_the_actor_ends_it_and_nothing_else() {
    // The upgrade's log line read the actor after what its `init` sent was
    // routed: with info logging on, a stop of itself took the shard down.
    log::set_max_level(log::LevelFilter::Info);
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let counter = load(&rt, "counter.wat");
    let bystander = rt.spawn(&counter, SpawnOptions::new("bystander")).unwrap();
    // The counter ignores its config; the guest's `brief` stops itself in init.
    let target = rt
        .spawn(&counter, SpawnOptions::new("target").config("brief"))
        .unwrap();
    rt.upgrade(target, &g).unwrap();
    rt.run_until_stalled();
    let stats = rt.stats();
    assert!(!stats.actor("target").unwrap().alive);
    assert!(stats.actor("bystander").unwrap().alive);
    rt.send(bystander, b"x").unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.stats().actor("bystander").unwrap().handled, 1);
}

#[test]
fn an_upgrade_ends_the_old_instances_watches_at_their_targets() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    assert!(rt.register_component("child", &g).unwrap().is_none());
    let counter = load(&rt, "counter.wat");
    let watched = rt.spawn(&counter, SpawnOptions::new("watched")).unwrap();
    let parent = rt
        .spawn(
            &g,
            SpawnOptions::new("parent")
                .config("parent child")
                .grants(wasmshard::Grants::none().monitor(["watched"])),
        )
        .unwrap();
    let mut watch = vec![b'y'];
    watch.extend_from_slice(&watched.to_bits().to_le_bytes());
    let reply = rt
        .request(parent, &watch, Duration::from_secs(600))
        .unwrap();
    rt.run_until_stalled();
    assert_eq!(reply.try_get(), Some(Ok(0u32.to_le_bytes().to_vec())));
    assert_eq!(rt.stats().shards[0].requests.monitors, 1);
    // The new instance does not hold the old one's watch, and its target
    // forgot it: its end tells no one (before, it sent a failure that
    // arrived late).
    rt.upgrade(parent, &g).unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.stats().shards[0].requests.monitors, 0);
    rt.stop(watched).unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.stats().shards[0].requests.late, 0);
}

#[test]
fn a_member_down_already_restarts_with_its_group_not_before() {
    // Rest-for-one, [a, b, c]: c fails, then a, in one pass. a's failure takes
    // a and b down; c, down already, restarted first before (with a and b
    // still down, against the order it depends on them in).
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (_, inbox) = probe(&rt, "collector", 0);
    let group = rt
        .create_group("g", Strategy::RestForOne, eager(5), Some(0))
        .unwrap();
    let who = members(&rt, &g, &group, &["a", "b", "c"]);
    rt.run_until_stalled();
    let started = inbox.lock().unwrap().len();
    rt.send(who[2], b"panic").unwrap();
    rt.send(who[0], b"panic").unwrap();
    rt.run_until_stalled();
    let order: Vec<Address> = inbox.lock().unwrap()[started..]
        .iter()
        .filter(|(_, p)| p == b"up")
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(order, who, "restarted in the group's order, once each");
    assert_eq!(
        restarts(&rt, &["a", "b", "c"]),
        [(1, 1, true), (1, 0, true), (1, 1, true)]
    );
}

#[test]
fn a_group_that_gave_up_supervises_its_later_members_afresh() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (_, _inbox) = probe(&rt, "collector", 0);
    let group = rt
        .create_group("g", Strategy::OneForAll, eager(1), Some(0))
        .unwrap();
    let a = members(&rt, &g, &group, &["a"])[0];
    for _ in 0..2 {
        rt.send(a, b"panic").unwrap();
        rt.run_until_stalled();
    }
    // One restart allowed: the second failure ended the group's members.
    assert_eq!(restarts(&rt, &["a"]), [(1, 2, false)]);
    // A member spawned later gets its restart, as a new group's would.
    let b = members(&rt, &g, &group, &["b"])[0];
    rt.send(b, b"panic").unwrap();
    rt.run_until_stalled();
    assert_eq!(restarts(&rt, &["b"]), [(1, 1, true)]);
}

#[test]
fn an_upgrades_init_cannot_cancel_what_the_old_instance_asked() {
    // The new `init` shares the old instance's address: it could cancel the
    // old instance's open request, counting down an open count it never had
    // (a debug assertion took the shard down; a release build wrapped it and
    // refused every later request).
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    rt.spawn(&g, SpawnOptions::new("slow").config("trap"))
        .unwrap();
    let heir = rt
        .spawn(&g, SpawnOptions::new("heir").config("heir slow"))
        .unwrap();
    rt.upgrade(heir, &g).unwrap();
    rt.run_until_stalled();
    let reply = rt
        .request(heir, b"gcancelled", Duration::from_secs(600))
        .unwrap();
    rt.run_until_stalled();
    assert_eq!(
        reply.try_get(),
        Some(Ok(vec![1, 0])),
        "the cancel did not take"
    );
    let a = rt.stats().actor("heir").unwrap().clone();
    assert!(a.alive && a.upgrades == 1 && a.failures == 0, "{a:?}");
}

#[test]
fn a_restarted_instance_gets_no_answer_to_what_the_last_one_asked() {
    let rt = builder(2).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let b = rt
        .spawn(&g, SpawnOptions::new("b").config("ops").shard(1))
        .unwrap();
    let a = rt
        .spawn(
            &g,
            SpawnOptions::new("a")
                .config("ops")
                .shard(0)
                .restart(eager(5)),
        )
        .unwrap();
    // a asks b; b answers in the same step (its shard runs after a's), so
    // the answer waits in a's mailbox behind the `panic` sent next.
    let mut ask = vec![b'r'];
    ask.extend_from_slice(&b.to_bits().to_le_bytes());
    let asked = rt.request(a, &ask, Duration::from_secs(600)).unwrap();
    rt.step();
    rt.send(a, b"panic").unwrap();
    rt.run_until_stalled();
    assert_eq!(asked.try_get(), Some(Ok(0u32.to_le_bytes().to_vec())));
    let counts = rt.request(a, b"c", Duration::from_secs(600)).unwrap();
    rt.run_until_stalled();
    // [selfs, replies, failures] of the instance now running: it asked
    // nothing, so it got no answer; the old one's was late.
    let words = counts.try_get().unwrap().unwrap();
    assert_eq!(words, [0u32, 0, 0].map(u32::to_le_bytes).concat());
    let stats = rt.stats();
    assert_eq!(stats.actor("a").unwrap().restarts, 1);
    assert_eq!(stats.shards[0].requests.late, 1);
}

/// An upgrade of a group's member waiting for its restart restarted it at
/// once, alone, while the siblings its strategy restarts with it were still
/// down: it handled messages with its group half gone. It now waits for the
/// group's restart, which makes it from the new component.
#[test]
fn an_upgrade_of_a_member_waiting_for_its_restart_keeps_it_with_its_group() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (_, inbox) = probe(&rt, "collector", 0);
    let wait = Restart::on_failure().backoff(Duration::from_secs(60), Duration::from_secs(60));
    let group = rt
        .create_group("g", Strategy::OneForAll, wait, Some(0))
        .unwrap();
    let who = members(&rt, &g, &group, &["a", "b"]);
    // The second failure within the window: both wait a minute.
    rt.send(who[0], b"panic").unwrap();
    rt.run_until_stalled();
    rt.send(who[0], b"panic").unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.stats().shards[0].restarting, 2);
    let before = ups(&inbox, &who);
    rt.upgrade(who[0], &g).unwrap();
    rt.send(who[0], b"queued").unwrap();
    rt.run_until_stalled();
    // Still both down: nobody came back, nobody handled anything.
    assert_eq!(rt.stats().shards[0].restarting, 2);
    assert_eq!(ups(&inbox, &who), before);
    assert!(!payloads(&inbox).contains(&"queued".to_string()));
    let stats = rt.stats();
    assert_eq!(stats.actor("a").unwrap().upgrades, 1);
    assert_eq!(
        stats.actor("a").unwrap().handled,
        stats.actor("b").unwrap().handled
    );
    // In a one-for-one group a member restarts alone: an upgrade brings it
    // back at once, as it does an actor of its own.
    let alone = rt
        .create_group("alone", Strategy::OneForOne, wait, Some(0))
        .unwrap();
    let who = members(&rt, &g, &alone, &["c", "d"]);
    for _ in 0..2 {
        rt.send(who[0], b"panic").unwrap();
        rt.run_until_stalled();
    }
    assert_eq!(rt.stats().shards[0].restarting, 3);
    rt.upgrade(who[0], &g).unwrap();
    rt.send(who[0], b"queued").unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.stats().shards[0].restarting, 2);
    assert!(payloads(&inbox).contains(&"queued".to_string()));
}

/// Every `create_group` kept its group for the runtime's life, though nothing
/// could use a group whose handles were all dropped once its members were
/// gone: a group a session grew the shard for good. A group now lasts while a
/// handle or a member does.
#[test]
fn a_group_with_no_handle_and_no_member_is_reclaimed() {
    let rt = builder(1).build_manual().unwrap();
    let groups = |rt: &Runtime| {
        rt.run_until_stalled();
        rt.stats().shards[0].groups
    };
    for _ in 0..100 {
        rt.create_group("brief", Strategy::OneForOne, eager(1), Some(0))
            .unwrap();
    }
    assert_eq!(groups(&rt), 0);
    // A member keeps its group after the handles go, and restarts by it.
    let kept = rt
        .create_group("kept", Strategy::OneForOne, eager(3), Some(0))
        .unwrap();
    let other = kept.clone();
    let flaky = rt
        .spawn_native_in_group("flaky", &kept, move || {
            |_: &mut Context<'_>, _: Address, payload: &[u8]| {
                assert!(payload != b"panic", "flaky: panic on command");
            }
        })
        .unwrap();
    drop((kept, other));
    // Groups made meanwhile take the reclaimed places, not new ones.
    let g = rt
        .create_group("new", Strategy::OneForOne, eager(1), Some(0))
        .unwrap();
    assert_eq!(groups(&rt), 2);
    drop(g);
    assert_eq!(groups(&rt), 1);
    rt.send(flaky, b"panic").unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.stats().actor("flaky").unwrap().restarts, 1);
    assert_eq!(groups(&rt), 1);
    rt.stop(flaky).unwrap();
    assert_eq!(groups(&rt), 0);
}

/// An actor that fails with a request to itself queued in its own mailbox:
/// its restart revokes the request where it waits, in the actor's own slot,
/// so the new instance never handles what the old one asked (the revoke used
/// to be routed while the actor was out of its slot, and waited there as for
/// an actor not placed yet, for as long as the actor lived).
#[test]
fn a_request_to_itself_is_revoked_when_its_maker_fails() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(4)
        .build_manual()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let ops = rt
        .spawn(&g, SpawnOptions::new("ops").config("ops").restart(eager(5)))
        .unwrap();
    // A request to itself (queued behind the host's tell), then the tell
    // that fails it.
    let mut ask_itself = vec![b'r'];
    ask_itself.extend_from_slice(&ops.to_bits().to_le_bytes());
    let asked = rt
        .request(ops, &ask_itself, Duration::from_secs(60))
        .unwrap();
    rt.send(ops, b"panic").unwrap();
    rt.run_until_stalled();
    assert_eq!(asked.try_get(), Some(Ok(vec![0, 0, 0, 0])));
    let stats = rt.stats();
    let actor = stats.actor("ops").unwrap();
    assert_eq!(actor.restarts, 1, "{actor:?}");
    // The host's request (the tell failed it): the request to itself was
    // shed, not handled by the new instance.
    assert_eq!(actor.handled, 1, "{actor:?}");
    let requests = stats.shards[0].requests;
    assert_eq!((requests.abandoned, requests.late), (1, 0), "{requests:?}");
}
