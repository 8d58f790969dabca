//! Spawns from the host that do not wait for the shard: the component is
//! instantiated and its `init` run on the caller's thread, and the started
//! actor handed to its shard. What arrives for it before the shard has placed
//! it waits for it; an `init` that opens requests, timers or monitors borrows
//! the shard's table; slots are taken without a lock from many threads at once.

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmshard::{
    Address, Capacity, Component, Context, NameFault, Rate, Runtime, SpawnError, SpawnOptions,
};

use crate::support::{IDLE, builder, eventually, guest, load, probe, relay, within};

/// A native actor on `shard` that, on any message, tells `entered` and then
/// holds its shard's thread until `release` is sent (or a minute passes).
fn gate(rt: &wasmshard::Runtime, shard: usize) -> (Address, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered_tx, entered) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let gate = rt
        .spawn_native(
            "gate",
            Some(shard),
            move |_: &mut Context<'_>, _: Address, _: &[u8]| {
                entered_tx.send(()).unwrap();
                let _ = released
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(60));
            },
        )
        .unwrap();
    (gate, entered, release)
}

/// A spawn under way on a thread of its own.
type Spawning = JoinHandle<Result<Address, SpawnError>>;

/// Spawns `options` from `component` on a thread of its own.
fn spawn_apart(rt: &Arc<Runtime>, component: &Component, options: SpawnOptions) -> Spawning {
    let (rt, component) = (rt.clone(), component.clone());
    std::thread::spawn(move || rt.spawn(&component, options))
}

/// Waits until `name` is registered (a spawn under way on another thread got
/// as far as its `init`) and returns its address.
fn registered(rt: &Runtime, name: &str) -> Address {
    let deadline = std::time::Instant::now() + IDLE;
    loop {
        if let Some(a) = rt.lookup(name) {
            return a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{name}` never registered"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_spawn_returns_while_its_shard_is_busy() {
    let rt = Arc::new(builder(1).build().unwrap());
    let counter = load(&rt, "counter.wat");
    let (gate, entered, release) = gate(&rt, 0);
    rt.send(gate, b"hold").unwrap();
    // The shard's thread is inside the gate's handler from here on.
    entered.recv().unwrap();
    let r = rt.clone();
    let counted = within(
        Duration::from_secs(30),
        "a spawn onto a busy shard",
        move || r.spawn(&counter, SpawnOptions::new("counted").shard(0)),
    )
    .unwrap();
    // Listed at once, though its shard has not placed it yet.
    assert!(rt.stats().actor("counted").is_some());
    for _ in 0..3 {
        rt.send(counted, b"x").unwrap();
    }
    release.send(()).unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    assert_eq!(stats.actor("counted").unwrap().handled, 3);
    assert_eq!(stats.dead_letters, 0);
}

#[test]
fn what_arrives_before_the_shard_places_an_actor_waits_for_it() {
    let rt = Arc::new(builder(2).build().unwrap());
    let responder = load(&rt, "responder.wat");
    let (probe, _) = probe(&rt, "probe", 0);
    rt.hold_placements(true);
    let spawning = spawn_apart(&rt, &responder, SpawnOptions::new("late").shard(1));
    // Its name and address are live once its `init` ran, before its shard
    // has it.
    let late = registered(&rt, "late");
    for _ in 0..3 {
        rt.send(late, b"early").unwrap();
    }
    // From an actor on another shard, through the ring.
    relay(&rt, probe, late, b"from a probe");
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    assert_eq!(stats.dead_letters, 0, "nothing sent to it was lost");
    let reply = rt.request(late, b"ask", Duration::from_secs(60)).unwrap();
    rt.hold_placements(false);
    assert_eq!(spawning.join().unwrap().unwrap(), late);
    assert_eq!(reply.wait(IDLE).unwrap().unwrap(), b"ask");
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    let late = stats.actor("late").unwrap();
    assert_eq!((late.received, late.handled), (5, 5));
    assert_eq!(stats.dead_letters, 0);
}

/// Waits until `shard` has taken `n` control commands in all.
fn commands_taken(rt: &Runtime, shard: usize, n: u64) {
    let deadline = std::time::Instant::now() + IDLE;
    while rt.stats().shards[shard].control_in < n {
        assert!(std::time::Instant::now() < deadline, "commands never taken");
        std::thread::yield_now();
    }
}

/// The host's rate, upgrade and timer for an actor its shard has not placed
/// yet (its address found by name, from another thread, while its spawn is
/// under way) wait for the placement, as a stop does, instead of failing with
/// `unknown-target` for an address that is live.
#[test]
fn host_commands_for_an_actor_not_placed_yet_wait_for_it() {
    let rt = Arc::new(builder(2).build().unwrap());
    let counter = load(&rt, "counter.wat");
    rt.hold_placements(true);
    let spawning = spawn_apart(&rt, &counter, SpawnOptions::new("late").shard(1));
    let late = registered(&rt, "late");
    let before = rt.stats().shards[1].control_in;
    let (r1, r2, r3, c) = (rt.clone(), rt.clone(), rt.clone(), counter.clone());
    let rate = std::thread::spawn(move || r1.set_rate(late, Some(Rate::new(1000, 10))));
    let timer = std::thread::spawn(move || r2.schedule(late, Duration::from_millis(1), b"tick"));
    let upgrade = std::thread::spawn(move || r3.upgrade(late, &c));
    // All three reached the shard (and got no answer yet) before it has the
    // actor.
    commands_taken(&rt, 1, before + 3);
    assert!(
        !rate.is_finished() && !timer.is_finished() && !upgrade.is_finished(),
        "answered before the actor was placed"
    );
    rt.hold_placements(false);
    assert_eq!(spawning.join().unwrap().unwrap(), late);
    rate.join().unwrap().unwrap();
    timer.join().unwrap().unwrap();
    upgrade.join().unwrap().unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    let a = stats.actor("late").unwrap();
    assert!(a.alive);
    assert_eq!(a.upgrades, 1);
    assert_eq!(a.handled, 1, "the host's timer fired for it");
    assert_eq!(stats.dead_letters, 0);
}

/// What waits for an actor not placed yet runs in arrival order: a rate set
/// before a stop takes effect, and the stop after it.
#[test]
fn a_command_and_a_stop_for_an_actor_not_placed_yet_keep_their_order() {
    let rt = Arc::new(builder(2).build().unwrap());
    let counter = load(&rt, "counter.wat");
    rt.hold_placements(true);
    let spawning = spawn_apart(&rt, &counter, SpawnOptions::new("brief").shard(1));
    let brief = registered(&rt, "brief");
    let before = rt.stats().shards[1].control_in;
    let r = rt.clone();
    let rate = std::thread::spawn(move || r.set_rate(brief, Some(Rate::new(5, 5))));
    commands_taken(&rt, 1, before + 1);
    rt.stop(brief).unwrap();
    rt.hold_placements(false);
    assert_eq!(spawning.join().unwrap().unwrap(), brief);
    rate.join()
        .unwrap()
        .expect("the rate came first: the actor was there");
    assert!(rt.wait_idle(IDLE));
    assert!(!rt.stats().actor("brief").unwrap().alive);
}

/// The same commands for an actor whose `init` failed wait for the shard to
/// undo its start, and then find no actor.
#[test]
fn host_commands_for_an_actor_whose_start_is_undone_find_no_actor() {
    let rt = Arc::new(builder(2).build().unwrap());
    let Some(g) = guest(&rt) else { return };
    rt.hold_placements(true);
    let spawning = spawn_apart(
        &rt,
        &g,
        SpawnOptions::new("doomed").shard(1).config("trap-in-init"),
    );
    let doomed = registered(&rt, "doomed");
    let before = rt.stats().shards[1].control_in;
    let (r1, r2) = (rt.clone(), rt.clone());
    let rate = std::thread::spawn(move || r1.set_rate(doomed, None));
    let timer = std::thread::spawn(move || r2.schedule(doomed, Duration::from_millis(1), b"t"));
    commands_taken(&rt, 1, before + 2);
    assert!(
        !rate.is_finished() && !timer.is_finished(),
        "answered before the start was undone"
    );
    rt.hold_placements(false);
    let err = spawning.join().unwrap().unwrap_err();
    assert!(matches!(err, SpawnError::InitFailed(_)), "{err:?}");
    let err = rate.join().unwrap().unwrap_err();
    assert!(
        matches!(err, wasmshard::QuotaError::UnknownTarget(a) if a == doomed),
        "{err:?}"
    );
    let err = timer.join().unwrap().unwrap_err();
    assert!(
        matches!(err, wasmshard::TimerError::UnknownTarget(a) if a == doomed),
        "{err:?}"
    );
    assert!(rt.lookup("doomed").is_none());
}

#[test]
fn a_stop_that_arrives_before_the_shard_places_an_actor_stops_it_once_placed() {
    let rt = Arc::new(builder(2).build().unwrap());
    let counter = load(&rt, "counter.wat");
    // Spawned first: spawns wait while placements are held.
    let stopper = rt
        .spawn_native(
            "stopper",
            Some(0),
            move |ctx: &mut Context<'_>, _: Address, payload: &[u8]| {
                let to = Address::from_bits(u64::from_le_bytes(payload.try_into().unwrap()));
                ctx.stop(to).unwrap();
            },
        )
        .unwrap();
    rt.hold_placements(true);
    let spawning: Vec<_> = ["by-actor", "by-host"]
        .into_iter()
        .map(|name| spawn_apart(&rt, &counter, SpawnOptions::new(name).shard(1)))
        .collect();
    let (by_actor, by_host) = (registered(&rt, "by-actor"), registered(&rt, "by-host"));
    rt.send(by_actor, b"one").unwrap();
    rt.send(by_host, b"one").unwrap();
    // A stop from an actor is a control envelope that waits like a message.
    rt.send(stopper, &by_actor.to_bits().to_le_bytes()).unwrap();
    // So does the host's, from a thread other than the spawning one.
    rt.stop(by_host).unwrap();
    assert!(rt.wait_idle(IDLE));
    rt.hold_placements(false);
    for s in spawning {
        s.join().unwrap().unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    for name in ["by-actor", "by-host"] {
        let a = stats.actor(name).unwrap();
        assert!(!a.alive, "{name}: stopped once placed");
        assert_eq!(a.handled, 0, "{name}");
    }
    // Each message was in its mailbox when the stop took effect, or came
    // after it (a host's command may overtake its earlier tells, as for any
    // actor): a dead letter either way, not lost.
    assert_eq!(stats.dead_letters, 2);
}

/// On a fresh two-shard runtime with placements held: the roles guest
/// registered as `worker`, and a spawn of it configured `config` on a thread
/// of its own (on shard 1), which runs `init` and waits to hand it over.
fn nest_held(config: &str) -> Option<(Arc<Runtime>, Spawning)> {
    let rt = Arc::new(builder(2).build().unwrap());
    let g = guest(&rt)?;
    rt.register_component("worker", &g).unwrap();
    rt.hold_placements(true);
    let spawning = spawn_apart(&rt, &g, SpawnOptions::new("nest").shard(1).config(config));
    Some((rt, spawning))
}

#[test]
fn what_arrives_for_a_child_of_an_init_before_its_parent_is_placed_waits_for_it() {
    let Some((rt, spawning)) = nest_held("nest worker kid") else {
        return;
    };
    // The child's name is registered by its parent's `init`, before the shard
    // has either of them.
    let kid = registered(&rt, "kid");
    for _ in 0..3 {
        rt.send(kid, b"early").unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().dead_letters, 0);
    let reply = rt.request(kid, b"c", Duration::from_secs(60)).unwrap();
    rt.hold_placements(false);
    spawning.join().unwrap().unwrap();
    assert_eq!(reply.wait(IDLE).unwrap().unwrap().len(), 12);
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    let kid = stats.actor("kid").unwrap();
    assert_eq!((kid.received, kid.handled), (4, 4));
    assert_eq!(stats.dead_letters, 0);
}

#[test]
fn what_waited_for_a_child_that_stops_itself_at_once_ends_as_dead_letters() {
    let Some((rt, spawning)) = nest_held("nest worker kid brief") else {
        return;
    };
    let kid = registered(&rt, "kid");
    for _ in 0..3 {
        rt.send(kid, b"early").unwrap();
    }
    rt.hold_placements(false);
    spawning.join().unwrap().unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    assert!(!stats.actor("kid").unwrap().alive);
    // Counted now, not kept until shutdown.
    assert_eq!(stats.dead_letters, 3);
}

#[test]
fn an_init_that_needs_the_shards_table_borrows_it() {
    let rt = builder(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let target = rt
        .spawn(&g, SpawnOptions::new("target").shard(0).config("ops"))
        .unwrap();
    // A timer, a request and a monitor from `init`, on the target's shard and
    // on the other one.
    let early: Vec<Address> = (0..2)
        .map(|shard| {
            rt.spawn(
                &g,
                SpawnOptions::new(format!("early{shard}"))
                    .shard(shard)
                    .config("ops early target"),
            )
            .unwrap()
        })
        .collect();
    let counts = |a: Address| {
        let words = rt
            .request(a, b"c", Duration::from_secs(60))
            .unwrap()
            .wait(IDLE)
            .unwrap()
            .unwrap();
        let w = |i: usize| u32::from_le_bytes(words[i * 4..i * 4 + 4].try_into().unwrap());
        (w(0), w(1), w(2))
    };
    for &a in &early {
        // The timer fired (a message from itself), the request was answered.
        let deadline = std::time::Instant::now() + IDLE;
        while counts(a) != (1, 1, 0) {
            assert!(std::time::Instant::now() < deadline, "{:?}", counts(a));
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // The monitors end when the target goes.
    rt.stop(target).unwrap();
    for &a in &early {
        let deadline = std::time::Instant::now() + IDLE;
        while counts(a) != (1, 1, 1) {
            assert!(std::time::Instant::now() < deadline, "{:?}", counts(a));
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn a_failed_init_frees_its_name_and_slot_before_spawn_returns() {
    let rt = builder(1).max_actors(1).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    for _ in 0..3 {
        let err = rt
            .spawn(&g, SpawnOptions::new("again").config("trap-in-init"))
            .unwrap_err();
        assert!(matches!(err, SpawnError::InitFailed(_)), "{err:?}");
    }
    // The one slot and the name are free again at once.
    rt.spawn(&g, SpawnOptions::new("again").config("ops"))
        .unwrap();
}

#[test]
fn a_full_shard_reports_a_taken_name_first_and_a_refused_spawn_holds_nothing() {
    let rt = builder(1).max_actors(3).build().unwrap();
    let counter = load(&rt, "counter.wat");
    // Every grant label taken: a spawn bringing one more pattern is refused
    // when its grants are compiled, under the registry's lock.
    let many: Vec<String> = (0..wasmshard::MAX_PATTERNS)
        .map(|i| format!("p{i}-*"))
        .collect();
    rt.spawn(
        &counter,
        SpawnOptions::new("many").grants(wasmshard::Grants::none().send(many)),
    )
    .unwrap();
    rt.spawn(&counter, SpawnOptions::new("one")).unwrap();
    // Refused: neither the name nor the shard's last slot is held.
    for _ in 0..3 {
        let err = rt
            .spawn(
                &counter,
                SpawnOptions::new("two").grants(wasmshard::Grants::none().send(["another"])),
            )
            .unwrap_err();
        assert!(matches!(err, SpawnError::Policy(_)), "{err:?}");
        assert_eq!(rt.lookup("two"), None);
    }
    rt.spawn(&counter, SpawnOptions::new("two")).unwrap();
    // Full: a taken name is reported as such, a free one as no room.
    let err = rt.spawn(&counter, SpawnOptions::new("one")).unwrap_err();
    assert!(
        matches!(&err, SpawnError::NameTaken(n) if n == "one"),
        "{err:?}"
    );
    let err = rt.spawn(&counter, SpawnOptions::new("three")).unwrap_err();
    assert!(
        matches!(
            err,
            SpawnError::NoCapacity(Capacity::ShardFull { shard: 0, .. })
        ),
        "{err:?}"
    );
    assert_eq!(rt.lookup("three"), None);
    let err = rt
        .spawn_native("one", None, |_: &mut Context<'_>, _: Address, _: &[u8]| {})
        .unwrap_err();
    assert!(
        matches!(&err, SpawnError::NameTaken(n) if n == "one"),
        "{err:?}"
    );
}

/// A spawn bound to fail on its name takes no slot, so it never makes a
/// spawn beside it find the shard full.
#[test]
fn retries_of_a_taken_name_never_fill_the_shard() {
    const ROUNDS: usize = 200;
    let rt = Arc::new(builder(1).max_actors(2).build().unwrap());
    let noop = |_: &mut Context<'_>, _: Address, _: &[u8]| {};
    rt.spawn_native("taken", Some(0), noop).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let retrier = {
        let (rt, stop) = (rt.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let err = rt.spawn_native("taken", Some(0), noop).unwrap_err();
                assert!(matches!(err, SpawnError::NameTaken(_)), "{err:?}");
            }
        })
    };
    for i in 0..ROUNDS {
        let a = rt
            .spawn_native(&format!("free-{i}"), Some(0), noop)
            .unwrap_or_else(|e| panic!("round {i}: {e:?}"));
        rt.stop(a).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    retrier.join().unwrap();
}

#[test]
fn spawns_from_many_threads_take_distinct_slots_up_to_the_limit() {
    const THREADS: usize = 4;
    const EACH: usize = 40;
    const MAX: usize = 64;
    let rt = Arc::new(builder(1).max_actors(MAX as u32).build().unwrap());
    let round = |round: usize| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let rt = rt.clone();
                std::thread::spawn(move || {
                    (0..EACH)
                        .map(|i| {
                            rt.spawn_native(
                                &format!("r{round}t{t}i{i}"),
                                Some(0),
                                |_: &mut Context<'_>, _: Address, _: &[u8]| {},
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let spawned: Vec<Address> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        // Exactly the shard's room, the rest refused as such.
        assert_eq!(spawned.len(), MAX);
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(
                        e,
                        SpawnError::NoCapacity(Capacity::ShardFull { shard: 0, .. })
                    ),
                    "{e:?}"
                );
            }
        }
        let distinct: HashSet<Address> = spawned.iter().copied().collect();
        assert_eq!(distinct.len(), MAX);
        for &a in &spawned {
            rt.send(a, b"x").unwrap();
        }
        assert!(rt.wait_idle(IDLE));
        let stats = rt.stats();
        assert_eq!(stats.dead_letters, 0);
        for &a in &spawned {
            assert_eq!(
                stats
                    .actors
                    .iter()
                    .find(|s| s.address == a)
                    .unwrap()
                    .handled,
                1
            );
        }
        for &a in &spawned {
            rt.stop(a).unwrap();
        }
        assert!(rt.wait_idle(IDLE));
    };
    // Twice: every slot came back.
    round(0);
    round(1);
}

#[test]
fn shutdown_right_after_spawns_counts_every_message() {
    // No drain: every actor is stopped as soon as its shard takes the
    // shutdown, which may be before it took the placements ahead of it.
    let rt = builder(2)
        .max_actors(64)
        .drain_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let counter = load(&rt, "counter.wat");
    let mut sent = 0;
    for i in 0..48 {
        let a = rt
            .spawn(&counter, SpawnOptions::new(format!("c{i}")))
            .unwrap();
        for _ in 0..4 {
            rt.send(a, b"x").unwrap();
            sent += 1;
        }
    }
    let report = rt.shutdown();
    let handled: u64 = report
        .stats
        .actors
        .iter()
        .filter(|a| a.name.starts_with('c'))
        .map(|a| a.handled)
        .sum();
    assert_eq!(handled + report.dead_letter_count, sent);
    assert!(report.stats.actors.iter().all(|a| !a.alive));
}

/// A runtime of one shard that parks as soon as it runs out of work.
fn sleepy(max_actors: u32) -> Runtime {
    builder(1)
        .max_actors(max_actors)
        .park_spin(Duration::ZERO)
        .park_spin_max(Duration::ZERO)
        .build()
        .unwrap()
}

/// The times shard 0 has parked, as last published.
fn parks(rt: &Runtime) -> u64 {
    rt.stats().shards[0].parks
}

#[test]
fn spawns_into_a_sleeping_shard_do_not_wake_it() {
    // More than the 1 024 placements a sleeping shard may hold.
    const N: usize = 1_100;
    let rt = sleepy(N as u32 + 8);
    let counter = load(&rt, "counter.wat");
    let rust = guest(&rt);
    assert!(rt.wait_idle(IDLE));
    let before = parks(&rt);
    let spawned: Vec<Address> = (0..N)
        .map(|i| {
            // Every other one built with the Rust toolchain, where it is.
            let (component, config) = match &rust {
                Some(g) if i % 2 == 1 => (g, "sink"),
                _ => (&counter, ""),
            };
            let options = SpawnOptions::new(format!("idle-{i}")).config(config);
            rt.spawn(component, options).unwrap()
        })
        .collect();
    // Their `init`s left the shard nothing to do: it was woken once, when
    // 1 024 placements waited for it, to take them (before, every spawn
    // woke it, and it parked again: hundreds of parks).
    eventually("1 024 waiting placements never woke the shard", || {
        parks(&rt) > before
    });
    let woken = parks(&rt) - before;
    assert!(woken <= 3, "{N} spawns woke the shard {woken} times");
    // Listed at once; placed by the shard when it is asked to finish its work.
    assert_eq!(rt.stats().actors.iter().filter(|a| a.alive).count(), N);
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().shards[0].actors, N as u64);
    // What is sent to them finds every one placed, in order.
    for &a in &spawned {
        rt.send(a, b"one").unwrap();
        rt.send(a, b"two").unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    for i in 0..N {
        let a = stats.actor(&format!("idle-{i}")).unwrap();
        assert_eq!((a.received, a.handled), (2, 2), "idle-{i}");
    }
    assert_eq!(stats.dead_letters, 0);
}

#[test]
fn a_message_to_an_actor_its_sleeping_shard_holds_unplaced_is_delivered() {
    let rt = sleepy(8);
    let counter = load(&rt, "counter.wat");
    let responder = load(&rt, "responder.wat");
    assert!(rt.wait_idle(IDLE));
    let a = rt.spawn(&responder, SpawnOptions::new("late")).unwrap();
    // No wait: the request wakes the shard, which places the actor first.
    let answer = rt
        .request(a, b"x", Duration::from_secs(60))
        .unwrap()
        .wait(IDLE)
        .expect("answered");
    assert_eq!(answer.unwrap(), b"x");
    // And a stop from the host, to one spawned after it.
    let b = rt.spawn(&counter, SpawnOptions::new("stopped")).unwrap();
    rt.stop(b).unwrap();
    assert!(rt.wait_idle(IDLE));
    assert!(!rt.stats().actor("stopped").unwrap().alive);
}

/// A shard that went to sleep holding a message for an actor whose
/// placement had not come yet is woken by that placement (which needs
/// nothing of the shard otherwise), and delivers it, with no other wake-up.
#[test]
fn a_placement_wakes_a_shard_that_sleeps_holding_what_came_for_it() {
    let rt = Arc::new(sleepy(8));
    let counter = load(&rt, "counter.wat");
    assert!(rt.wait_idle(IDLE));
    rt.hold_placements(true);
    let spawning = spawn_apart(&rt, &counter, SpawnOptions::new("late"));
    let late = registered(&rt, "late");
    let before = parks(&rt);
    rt.send(late, b"early").unwrap();
    // The send woke the shard, which kept the message for the actor it does
    // not have yet, and went back to sleep.
    eventually("the shard never slept", || {
        parks(&rt) > before && rt.stats().shards[0].host_in > 0
    });
    rt.hold_placements(false);
    spawning.join().unwrap().unwrap();
    // No `wait_idle` (it would wake the shard itself).
    eventually("the message waits in a sleeping shard", || {
        rt.stats().actor("late").unwrap().handled == 1
    });
}

/// Placements a sleeping shard holds are not work in flight: a shutdown
/// that does not wait still reports the runtime drained.
#[test]
fn a_shutdown_at_once_after_quiet_spawns_is_drained() {
    let rt = sleepy(8);
    let counter = load(&rt, "counter.wat");
    assert!(rt.wait_idle(IDLE));
    for i in 0..3 {
        rt.spawn(&counter, SpawnOptions::new(format!("quiet-{i}")))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    let report = rt.shutdown_within(Duration::ZERO);
    assert!(report.drained);
    assert_eq!(report.dead_letter_count, 0);
}

#[test]
fn an_init_that_leaves_its_shard_work_wakes_it() {
    let rt = sleepy(8);
    let Some(g) = guest(&rt) else { return };
    rt.register_component("worker", &g).unwrap();
    assert!(rt.wait_idle(IDLE));
    // `init` spawns a child (started by the shard as it places the parent)
    // and another stops itself: neither waits for a later wake-up.
    rt.spawn(&g, SpawnOptions::new("nest").config("nest worker kid"))
        .unwrap();
    rt.spawn(&g, SpawnOptions::new("brief").config("brief"))
        .unwrap();
    // No `wait_idle` (it would wake the shard itself).
    eventually("the child never started, or `brief` never stopped", || {
        let stats = rt.stats();
        let kid = stats.actor("kid").is_some_and(|k| k.alive);
        let brief_gone = !stats.actor("brief").unwrap().alive;
        kid && brief_gone && stats.shards[0].actors == 2
    });
}

#[test]
fn a_name_is_1_to_256_bytes_for_every_spawn_from_the_host() {
    let rt = builder(1).max_actors(4).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let long = "n".repeat(wasmshard::MAX_NAME_LEN + 1);
    let noop = |_: &mut Context<'_>, _: Address, _: &[u8]| {};
    for name in ["", long.as_str(), "bad\nname", "bad\u{1b}[31m"] {
        let err = rt
            .spawn(&g, SpawnOptions::new(name).config("ops"))
            .unwrap_err();
        let fault = match name.chars().next() {
            None => NameFault::Empty,
            Some('n') => NameFault::TooLong(name.len()),
            Some(_) => NameFault::Unprintable(if name.contains('\n') { '\n' } else { '\u{1b}' }),
        };
        assert!(
            matches!(&err, SpawnError::BadName(f) if *f == fault),
            "{err:?}"
        );
        assert!(err.to_string().starts_with(&fault.to_string()), "{err}");
        let err = rt.spawn_native(name, None, noop).unwrap_err();
        assert!(matches!(err, SpawnError::BadName(_)), "{err:?}");
        assert_eq!(rt.lookup(name), None);
    }
    // A refused name took nothing: four slots hold the longest name (256
    // bytes of two-byte characters) and three more.
    let longest = "é".repeat(wasmshard::MAX_NAME_LEN / 2);
    rt.spawn(&g, SpawnOptions::new(longest.as_str()).config("ops"))
        .unwrap();
    assert!(rt.lookup(&longest).is_some());
    for i in 0..3 {
        rt.spawn_native(&format!("n{i}"), None, noop).unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().shards[0].actors, 4);
}

#[test]
fn a_manifest_refuses_a_name_over_256_bytes_or_unprintable() {
    let name = "m".repeat(wasmshard::MAX_NAME_LEN + 1);
    let text = format!("[[actor]]\nname = \"{name}\"\ncomponent = \"c.wasm\"\n");
    let err = wasmshard::manifest::Manifest::parse(&text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("257 bytes, over the 256-byte limit"), "{err}");
    let text = "[[actor]]\nname = \"m\\nforged\"\ncomponent = \"c.wasm\"\n";
    let err = wasmshard::manifest::Manifest::parse(text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a name holding '\\n'"), "{err}");
    // A registered component's name too: a guest's anonymous child is named
    // after it.
    let text = "[[actor]]\nname = \"m\"\ncomponent = \"c.wasm\"\n\
                [[component]]\nname = \"w\\u001b[2J\"\npath = \"c.wasm\"\n";
    let err = wasmshard::manifest::Manifest::parse(text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[[component]] #1 has a name holding"), "{err}");
    let name = "m".repeat(wasmshard::MAX_NAME_LEN);
    let text = format!("[[actor]]\nname = \"{name}\"\ncomponent = \"c.wasm\"\n");
    wasmshard::manifest::Manifest::parse(&text).unwrap();
}

/// A native actor that spawns a `child` named what it is told.
fn name_spawner(rt: &Runtime, name: &str) -> Address {
    rt.spawn_native(
        name,
        None,
        |ctx: &mut Context<'_>, _: Address, payload: &[u8]| {
            let name = String::from_utf8_lossy(payload);
            let _ = ctx.spawn("child", Some(&name), b"ops");
        },
    )
    .unwrap()
}

/// Why the actor `name` failed, once it has (it is not alive and failed once).
fn failure_of(rt: &Runtime, name: &str) -> String {
    let stats = rt.stats();
    let s = stats.actors.iter().find(|a| a.name == name).unwrap();
    assert!(!s.alive && s.failures == 1, "{s:?}");
    s.failure.clone().unwrap_or_default()
}

#[test]
fn a_native_actor_that_spawns_with_a_bad_name_fails() {
    let rt = builder(1).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    assert!(rt.register_component("child", &g).unwrap().is_none());
    let spawner = name_spawner(&rt, "spawner");
    // 256 bytes: a child; then 257: the spawner fails, and nothing is
    // registered under that name.
    for n in [wasmshard::MAX_NAME_LEN, wasmshard::MAX_NAME_LEN + 1] {
        rt.send(spawner, "c".repeat(n).as_bytes()).unwrap();
        assert!(rt.wait_idle(IDLE));
    }
    assert!(rt.lookup(&"c".repeat(wasmshard::MAX_NAME_LEN)).is_some());
    assert_eq!(rt.lookup(&"c".repeat(wasmshard::MAX_NAME_LEN + 1)), None);
    let why = failure_of(&rt, "spawner");
    assert!(why.contains("257 bytes"), "{why}");
    // A name that would break a line.
    let spawner = name_spawner(&rt, "another");
    rt.send(spawner, b"c\nd").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.lookup("c\nd"), None);
    let why = failure_of(&rt, "another");
    assert!(why.contains("a name holding '\\n'"), "{why}");
}

#[test]
fn an_init_that_waits_for_its_busy_shard_keeps_its_cpu_budget() {
    // A budget of 20 ms, and a shard held ten times as long by a native
    // handler while an `init` on the caller's thread waits for the shard's
    // table: the wait is not the `init`'s time.
    let rt = Arc::new(
        builder(2)
            .cpu_budget(Some(Duration::from_millis(20)))
            .build()
            .unwrap(),
    );
    let Some(g) = guest(&rt) else { return };
    rt.spawn(&g, SpawnOptions::new("target").shard(1).config("ops"))
        .unwrap();
    let (gate, entered, release) = gate(&rt, 0);
    rt.send(gate, b"hold").unwrap();
    entered.recv().unwrap();
    let spawning = spawn_apart(
        &rt,
        &g,
        SpawnOptions::new("early")
            .shard(0)
            .config("ops early target"),
    );
    std::thread::sleep(Duration::from_millis(200));
    release.send(()).unwrap();
    let early = spawning
        .join()
        .unwrap()
        .expect("the init's wait is not its time");
    // It started whole: its timer fired and its request was answered.
    let deadline = std::time::Instant::now() + IDLE;
    loop {
        let words = rt
            .request(early, b"c", Duration::from_secs(60))
            .unwrap()
            .wait(IDLE)
            .unwrap()
            .unwrap();
        let w = |i: usize| u32::from_le_bytes(words[i * 4..i * 4 + 4].try_into().unwrap());
        if (w(0), w(1)) == (1, 1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", (w(0), w(1)));
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `max_actors` is documented across all shards, but each shard's slots were
/// counted apart: native actors (which the instance pool does not bound)
/// reached `shards × max_actors`.
#[test]
fn max_actors_holds_across_all_shards() {
    let rt = builder(2).max_actors(2).build().unwrap();
    let idle = |_: &mut Context<'_>, _: Address, _: &[u8]| {};
    let a = rt.spawn_native("a", Some(0), idle).unwrap();
    rt.spawn_native("b", Some(1), idle).unwrap();
    assert!(matches!(
        rt.spawn_native("c", Some(0), idle),
        Err(SpawnError::NoCapacity(_))
    ));
    assert!(matches!(
        rt.spawn_native("c", Some(1), idle),
        Err(SpawnError::NoCapacity(_))
    ));
    // A stop gives the room back, to either shard.
    rt.stop(a).unwrap();
    assert!(rt.wait_idle(IDLE));
    rt.spawn_native("c", Some(1), idle).unwrap();
}
