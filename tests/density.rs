//! Density: 100 000 idle component actors in one runtime, the memory each
//! holds, and that memory given back once they are all stopped.
//!
//! A test binary of its own, with one test: it reads the process's resident
//! set, which other tests running beside it would disturb.
//!
//! A component actor takes about three memory mappings (its linear memory's
//! slot between inaccessible ones, its data image); the kernel's limit
//! (`vm.max_map_count`, 65 530 by default) allows about 21 000. `.ci/run`
//! raises it; where it is lower, the test spawns as many as it allows (at
//! least 10 000) and says so.

use std::time::{Duration, Instant};

use wasmshard::{Runtime, SpawnOptions};

/// The goal: an idle actor holds at most 16 KiB.
const ALIVE_PER_ACTOR: u64 = 16 << 10;
/// What may stay once all are stopped (the rest is given back): per actor,
/// what the shards' tables keep for each slot used (about 300 bytes) and the
/// name registry's room; and besides, what the allocator keeps of its arenas.
const LEFT_PER_ACTOR: u64 = 1 << 10;
const LEFT_BESIDES: u64 = 8 << 20;

const WANTED: u64 = 100_000;

/// What three more shards of a runtime built for 1 000 000 actors a shard
/// may hold before any is spawned (their slot tables written at build would
/// be 3 × 72 MB).
const BUILT_MORE: u64 = 16 << 20;

/// The process's resident set in bytes (`VmRSS`, whatever the page size).
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Whether transparent huge pages may back any mapping (`always`): the
/// pool's table region then takes 2 MiB pages, several actors' tables to
/// one, and what an actor holds is not what this test measures.
fn huge_pages_always() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[always]"))
}

/// How many actors the kernel's mapping limit leaves room for.
fn room() -> u64 {
    let limit: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .expect("Linux /proc")
        .trim()
        .parse()
        .unwrap();
    let used = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count() as u64;
    // About three mappings per actor (3.2, to be safe), and a margin for the
    // runtime's own.
    limit.saturating_sub(used + 2_000) * 10 / 32
}

/// Waits (up to a minute) for `done`; returns whether it came.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn a_hundred_thousand_idle_actors_fit_and_give_their_memory_back() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        eprintln!("density: skipped: it reads /proc and relies on glibc giving pages back");
        return;
    }
    if huge_pages_always() {
        eprintln!(
            "density: skipped: transparent huge pages are `always` here (set them to \
             `madvise` to measure what an actor holds)"
        );
        return;
    }
    let n = WANTED.min(room());
    assert!(
        n >= 10_000,
        "vm.max_map_count leaves room for {n} actors only; raise it (sysctl vm.max_map_count)"
    );
    if n < WANTED {
        eprintln!(
            "density: vm.max_map_count leaves room for {n} actors, not {WANTED}: \
             raise it (sysctl vm.max_map_count=1048576) to run them all"
        );
    }
    // A runtime built for a million actors on each of its shards holds what
    // its actors use, not what they could: each shard's slot table (64 bytes
    // a slot) becomes resident as its slots are used, so four shards hold
    // about what one does (what the instance pool keeps for its million
    // slots is the same for both).
    let built = |shards: usize| {
        let before = resident();
        let rt = Runtime::builder()
            .shards(shards)
            .max_actors(1_000_000)
            .log_sink(|_| {})
            .build()
            .unwrap();
        let held = resident().saturating_sub(before);
        drop(rt);
        held
    };
    let (one, four) = (built(1), built(4));
    eprintln!(
        "density: a runtime for 1 000 000 actors a shard holds {one} bytes with one shard, {four} with four"
    );
    assert!(
        four.saturating_sub(one) <= BUILT_MORE,
        "three more shards for 1 000 000 actors each hold {} bytes more at build, over {BUILT_MORE}",
        four.saturating_sub(one)
    );
    // Nothing kept resident in a stopped actor's slot: all of it goes back.
    let rt = Runtime::builder()
        .shards(2)
        .max_actors(n as u32 + 16)
        .keep_resident(0)
        .log_sink(|_| {})
        .build()
        .unwrap();
    let counter = rt
        .load_component_file(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/counter.wat"),
        )
        .unwrap();
    let mut actors = Vec::with_capacity(n as usize);
    let before = resident();
    for i in 0..n {
        let options = SpawnOptions::new(format!("dense-{i}")).shard(i as usize % 2);
        actors.push(rt.spawn(&counter, options).unwrap());
    }
    assert!(rt.wait_idle(Duration::from_secs(60)));
    let alive = resident().saturating_sub(before) / n;
    eprintln!("density: {n} idle actors, {alive} bytes resident each");
    assert!(
        alive <= ALIVE_PER_ACTOR,
        "{alive} bytes per idle actor, over {ALIVE_PER_ACTOR}"
    );
    // They run: the last one spawned handles a message.
    let last = *actors.last().unwrap();
    rt.send(last, b"tick").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(60)));
    let stats = rt.stats();
    assert_eq!(stats.actors.len() as u64, n);
    let handled = stats.actors.iter().find(|a| a.address == last).unwrap();
    assert_eq!(handled.handled, 1);

    for a in &actors {
        rt.stop(*a).unwrap();
    }
    assert!(rt.wait_idle(Duration::from_secs(60)));
    // The shards give the heap's free pages back once they go idle.
    let mut left = 0;
    let back = eventually(|| {
        left = resident().saturating_sub(before);
        left <= n * LEFT_PER_ACTOR + LEFT_BESIDES
    });
    eprintln!(
        "density: {} bytes per actor left once all stopped",
        left / n
    );
    assert!(
        back,
        "{left} bytes left once all stopped, over {LEFT_PER_ACTOR} per actor and \
         {LEFT_BESIDES} besides"
    );
    // The slots given back take new actors.
    let again: Vec<_> = (0..1_000)
        .map(|i| {
            let options = SpawnOptions::new(format!("again-{i}")).shard(i % 2);
            rt.spawn(&counter, options).unwrap()
        })
        .collect();
    rt.send(again[999], b"tick").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(60)));
    let stats = rt.stats();
    let handled = stats.actors.iter().find(|a| a.address == again[999]);
    assert_eq!(handled.unwrap().handled, 1);
    let report = rt.shutdown();
    assert_eq!(report.dead_letter_count, 0);
}
