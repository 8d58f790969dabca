//! Defects found by trying the runtime as its users would: with guests built by the
//! ordinary toolchain, hostile guests and bad input. Each test failed before its
//! fix. (The post-return corruption of direct replies and the double end of a
//! request whose handler responded and then trapped are shown by Rust guests, in
//! `guests`.)

use std::sync::Arc;
use std::time::Duration;

use wasmshard::{FailureKind, SpawnError, SpawnOptions};

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
