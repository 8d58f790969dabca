//! A trap, an exhausted budget or a memory-limit hit stops that actor only.

use std::time::{Duration, Instant};

use wasmshard::SpawnOptions;

use crate::support::*;

/// Sends `bad` its poison, then 100 messages to a counter on the same shard, and
/// checks the counter handled them all while `bad` failed with `cause`.
fn neighbour_survives(rt: &wasmshard::Runtime, fixture_name: &str, poison: &[u8], cause: &str) {
    let bad_c = load(rt, fixture_name);
    let counter = load(rt, "counter.wat");
    let bad = rt.spawn(&bad_c, SpawnOptions::new("bad").shard(0)).unwrap();
    let good = rt
        .spawn(&counter, SpawnOptions::new("good").shard(0))
        .unwrap();
    rt.send(bad, poison).unwrap();
    for _ in 0..100 {
        rt.send(good, b"tick").unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    let b = stats.actor("bad").unwrap();
    assert!(!b.alive);
    assert_eq!(b.failures, 1);
    let failure = b.failure.clone().expect("failure recorded");
    assert!(
        failure.contains(cause),
        "failure `{failure}` should mention `{cause}`"
    );
    let g = stats.actor("good").unwrap();
    assert_eq!((g.handled, g.failure.clone(), g.alive), (100, None, true));
    // The failed actor's name is free and its address is dead.
    assert_eq!(rt.lookup("bad"), None);
    assert_eq!(rt.send(bad, b"x"), Err(wasmshard::SendError::UnknownTarget));
    // The shard still runs new work.
    rt.send(good, b"tock").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().actor("good").unwrap().handled, 101);
}

#[test]
fn endless_loop_is_interrupted_within_its_budget() {
    let budget = Duration::from_millis(50);
    let rt = builder(1).cpu_budget(Some(budget)).build().unwrap();
    let started = Instant::now();
    neighbour_survives(&rt, "loop.wat", b"spin", "CPU budget");
    // Not a timing assertion on the runtime's speed: a sanity bound that the loop was
    // cut at its budget rather than running on (the suite's idle wait is 60 s).
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn memory_hog_is_stopped_at_its_limit() {
    let rt = builder(1).memory_limit(1 << 20).build().unwrap();
    neighbour_survives(&rt, "memhog.wat", b"eat", "memory limit of 1048576 bytes");
}

#[test]
fn trap_stops_only_the_trapping_actor() {
    let rt = builder(1).build().unwrap();
    neighbour_survives(&rt, "trap.wat", b"boom", "unreachable");
}

#[test]
fn native_actor_panic_is_isolated() {
    let rt = builder(1).build().unwrap();
    let bad = rt
        .spawn_native(
            "bad",
            Some(0),
            |_: &mut wasmshard::Context<'_>, _, _: &[u8]| panic!("native boom"),
        )
        .unwrap();
    let counter = load(&rt, "counter.wat");
    let good = rt
        .spawn(&counter, SpawnOptions::new("good").shard(0))
        .unwrap();
    rt.send(bad, b"x").unwrap();
    rt.send(good, b"y").unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    assert!(
        stats
            .actor("bad")
            .unwrap()
            .failure
            .as_deref()
            .unwrap()
            .contains("native boom")
    );
    assert_eq!(stats.actor("good").unwrap().handled, 1);
}

#[test]
fn runaway_recursion_is_stopped_at_the_stack_limit() {
    let rt = builder(1).build().unwrap();
    neighbour_survives(&rt, "hostile/recurse.wat", b"down", "call stack exhausted");
}

#[test]
fn an_init_that_never_returns_fails_its_spawn_within_the_budget() {
    let rt = builder(1)
        .cpu_budget(Some(Duration::from_millis(20)))
        .build()
        .unwrap();
    let looping = load(&rt, "hostile/init_loops.wat");
    let err = rt
        .spawn(&looping, SpawnOptions::new("looping"))
        .unwrap_err();
    assert!(
        matches!(&err, wasmshard::SpawnError::InitFailed(f)
            if f.kind() == wasmshard::FailureKind::CpuBudget),
        "{err:?}"
    );
    assert_eq!(rt.lookup("looping"), None);
}

/// An actor that traps with messages queued: the one it failed on and each queued
/// one become dead letters, each exactly once.
#[test]
fn a_trap_with_a_full_mailbox_dead_letters_each_message_once() {
    let rt = builder(1).build_manual().unwrap();
    let trap = load(&rt, "trap.wat");
    let a = rt.spawn(&trap, SpawnOptions::new("t")).unwrap();
    rt.send(a, b"boom").unwrap();
    for i in 0..99u32 {
        rt.send(a, &i.to_le_bytes()).unwrap();
    }
    rt.run_until_stalled();
    let report = rt.shutdown();
    assert_eq!(report.dead_letter_count, 100);
    let mut payloads: Vec<_> = report
        .dead_letters
        .iter()
        .map(|d| d.payload.clone())
        .collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), 100, "every message once");
    let t = report.stats.actor("t").unwrap();
    assert_eq!((t.received, t.handled, t.failures), (100, 0, 1));
}

/// With every instance in the pool taken, loading a component still works (it
/// instantiates nothing); spawning says there is no capacity.
#[test]
fn a_full_instance_pool_refuses_spawns_not_loads() {
    let rt = builder(2).max_actors(2).build().unwrap();
    let counter = load(&rt, "counter.wat");
    rt.spawn(&counter, SpawnOptions::new("a").shard(0)).unwrap();
    rt.spawn(&counter, SpawnOptions::new("b").shard(1)).unwrap();
    let echo = load(&rt, "echo.wat");
    let err = rt
        .spawn(&echo, SpawnOptions::new("c").config("a").shard(0))
        .unwrap_err();
    assert!(
        matches!(err, wasmshard::SpawnError::NoCapacity(_)),
        "{err:?}"
    );
}
