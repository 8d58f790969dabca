//! Steady-state messaging and request round trips perform no heap allocation
//! (payloads up to 64 bytes).
//!
//! A test binary of its own, because it installs a counting global allocator. The
//! count covers every thread, the host's included, so the test leaves a small,
//! fixed allowance for the host's one kick-off send and idle wait; a per-message
//! allocation would show up as tens of thousands.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmshard::{Address, Context, Runtime, SpawnOptions};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, adding only a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MESSAGES: u32 = 50_000;
/// Allocations allowed for the host's kick-off send and idle wait, whatever the
/// number of messages.
const HOST_ALLOWANCE: u64 = 16;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Spawns the producer (shard 0) → seqcheck (`checker_shard`) pipeline; returns
/// the producer.
fn pipeline(rt: &Runtime, checker_shard: usize) -> Address {
    let producer = rt.load_component_file(fixture("producer.wat")).unwrap();
    let seqcheck = rt.load_component_file(fixture("seqcheck.wat")).unwrap();
    rt.spawn(&seqcheck, SpawnOptions::new("check").shard(checker_shard))
        .unwrap();
    rt.spawn(
        &producer,
        SpawnOptions::new("producer").config("check").shard(0),
    )
    .unwrap()
}

/// The producer's command: `MESSAGES` sequenced messages of `size` bytes, reliably.
fn command(size: u32) -> Vec<u8> {
    [MESSAGES, 1, size]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// The checker saw two rounds, complete and in order.
fn assert_two_rounds_checked(rt: &Runtime) {
    let stats = rt.stats();
    let check = stats.actor("check").unwrap();
    assert_eq!(check.failure, None);
    assert_eq!(check.handled, 2 * MESSAGES as u64);
}

/// Runs the producer → seqcheck pipeline once and returns the allocations made.
fn run_once(rt: &Runtime, producer: Address, size: u32) -> u64 {
    let cmd = command(size);
    let before = ALLOCS.load(Ordering::SeqCst);
    rt.send(producer, &cmd).unwrap();
    assert!(rt.wait_idle(Duration::from_secs(120)));
    ALLOCS.load(Ordering::SeqCst) - before
}

fn steady_state(shards: usize, checker_shard: usize, size: u32) {
    let rt = Runtime::builder()
        .shards(shards)
        .max_actors(8)
        .mailbox_capacity(256)
        .build()
        .unwrap();
    let p = pipeline(&rt, checker_shard);
    // A native actor beside them, so a shard with one is measured too.
    rt.spawn_native("sink", Some(0), |_: &mut Context<'_>, _, _: &[u8]| {})
        .unwrap();
    // Warm up: mailboxes, rings' overflow buffers and the ready queue reach their
    // steady-state capacity.
    run_once(&rt, p, size);
    let allocs = run_once(&rt, p, size);
    assert_two_rounds_checked(&rt);
    assert!(
        allocs <= HOST_ALLOWANCE,
        "{allocs} allocations for {MESSAGES} messages of {size} bytes on {shards} shard(s)"
    );
}

/// Sequential request round trips (rtt → responder): the measured run, after a
/// warm-up, allocates at most the host's small allowance.
fn requests_steady_state(shards: usize, responder_shard: usize) {
    let rt = Runtime::builder()
        .shards(shards)
        .max_actors(8)
        .build()
        .unwrap();
    let rtt = rt.load_component_file(fixture("rtt.wat")).unwrap();
    let responder = rt.load_component_file(fixture("responder.wat")).unwrap();
    rt.spawn(
        &responder,
        SpawnOptions::new("responder").shard(responder_shard),
    )
    .unwrap();
    let r = rt
        .spawn(&rtt, SpawnOptions::new("rtt").config("responder").shard(0))
        .unwrap();
    let run = |n: u32| {
        let mut msg = [0u8; 64];
        msg[..4].copy_from_slice(&n.to_le_bytes());
        let before = ALLOCS.load(Ordering::SeqCst);
        rt.send(r, &msg).unwrap();
        assert!(rt.wait_idle(Duration::from_secs(120)));
        ALLOCS.load(Ordering::SeqCst) - before
    };
    run(MESSAGES / 10);
    let allocs = run(MESSAGES / 10);
    let answered: u64 = rt.stats().shards.iter().map(|s| s.requests.answered).sum();
    assert_eq!(answered, 2 * (MESSAGES / 10) as u64);
    assert!(
        allocs <= HOST_ALLOWANCE,
        "{allocs} allocations for {} request round trips on {shards} shard(s)",
        MESSAGES / 10
    );
}

/// On a manual runtime nothing else runs: a whole round (a host send, 50 000
/// component-to-component messages routed and handled on one shard, driven by
/// `run_until_stalled`) is counted exactly.
fn manual_steady_state() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .mailbox_capacity(256)
        .build_manual()
        .unwrap();
    let p = pipeline(&rt, 0);
    let cmd = command(8);
    let round = || {
        let before = ALLOCS.load(Ordering::SeqCst);
        rt.send(p, &cmd).unwrap();
        rt.run_until_stalled();
        ALLOCS.load(Ordering::SeqCst) - before
    };
    round();
    let allocs = round();
    assert_two_rounds_checked(&rt);
    // The host's send may start a new block of the host queue; nothing else may.
    assert!(allocs <= 1, "{allocs} allocations in a manual round");
}

#[test]
fn steady_state_messaging_does_not_allocate() {
    manual_steady_state();
    // One test function: the counter is global, so nothing may run beside it.
    for size in [8, 64] {
        steady_state(1, 0, size);
        steady_state(2, 1, size);
    }
    requests_steady_state(1, 0);
    requests_steady_state(2, 1);
}
