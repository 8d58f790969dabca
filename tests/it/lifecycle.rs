//! Spawning, stopping, idling and shutting down.

use std::time::Duration;

use wasmshard::{SpawnError, SpawnOptions};

use crate::support::*;

#[test]
fn shutdown_drains_pending_mailboxes() {
    let rt = builder(2).build().unwrap();
    let counter = load(&rt, "counter.wat");
    let echo = load(&rt, "echo.wat");
    rt.spawn(&counter, SpawnOptions::new("counter").shard(1))
        .unwrap();
    let e = rt
        .spawn(&echo, SpawnOptions::new("echo").config("counter").shard(0))
        .unwrap();
    for _ in 0..500 {
        rt.send(e, b"queued").unwrap();
    }
    // No wait: shutdown itself must let everything in flight be handled.
    let report = rt.shutdown();
    assert!(report.drained);
    assert_eq!(report.dead_letter_count, 0);
    assert_eq!(report.stats.actor("counter").unwrap().handled, 500);
    assert!(report.stats.actors.iter().all(|a| !a.alive));
}

#[test]
fn shutdown_reports_what_it_could_not_deliver() {
    let rt = builder(2)
        .drain_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let pingpong = load(&rt, "pingpong.wat");
    let ping = rt
        .spawn(&pingpong, SpawnOptions::new("ping").config("pong").shard(0))
        .unwrap();
    rt.spawn(&pingpong, SpawnOptions::new("pong").config("ping").shard(1))
        .unwrap();
    // A rally that outlasts the drain timeout by far.
    rt.send(ping, &u32::MAX.to_le_bytes()).unwrap();
    let report = rt.shutdown();
    assert!(!report.drained);
    let sent: u64 = report.stats.actors.iter().map(|a| a.sent).sum();
    let handled: u64 = report.stats.actors.iter().map(|a| a.handled).sum();
    // Every handled ball tried one send; one that was refused (its peer already
    // stopped) was reported to its sender, else the ball in play is a dead letter.
    let refused = handled - sent;
    assert_eq!(report.dead_letter_count + refused, 1);
    assert_eq!(report.dead_letters.len() as u64, report.dead_letter_count);
    assert!(
        report
            .dead_letters
            .iter()
            .all(|d| d.reason == wasmshard::DeadLetterReason::ShuttingDown)
    );
    assert!(report.stats.actors.iter().all(|a| a.failure.is_none()));
}

#[test]
fn idle_runtime_parks_instead_of_spinning() {
    let rt = builder(2).build().unwrap();
    let counter = load(&rt, "counter.wat");
    let a = rt.spawn(&counter, SpawnOptions::new("c").shard(1)).unwrap();
    for _ in 0..10 {
        rt.send(a, b"x").unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    // Let any wake-up already signalled be consumed before the window opens.
    std::thread::sleep(Duration::from_millis(50));
    let before = rt.stats();
    std::thread::sleep(Duration::from_millis(300));
    let after = rt.stats();
    for (b, a) in before.shards.iter().zip(&after.shards) {
        assert_eq!(
            b.loops, a.loops,
            "shard {} kept looping while idle",
            b.shard
        );
        assert_eq!(b.parks, a.parks);
        assert!(a.parks >= 1);
        // What it spins now is published: the default, or what it learnt
        // (two shards on more than two cores adapt) within the default cap.
        assert!(
            (wasmshard::DEFAULT_PARK_SPIN.as_nanos() as u64
                ..=wasmshard::DEFAULT_PARK_SPIN_MAX.as_nanos() as u64)
                .contains(&a.spin_ns),
            "shard {}: {}",
            a.shard,
            a.spin_ns
        );
    }
    assert_eq!(after.actor("c").unwrap().handled, 10);
}

/// The adaptive spin (up to `park_spin_max`) learns from the gaps between a
/// shard's wake-ups; however long it has grown, a shard whose work stops parks
/// within the cap, and the runtime then uses no CPU.
#[test]
fn shards_that_learnt_a_long_spin_still_park_when_idle() {
    use wasmshard::bench::{Actors, Params, System, Workload};
    for actors in [Actors::Native, Actors::Component] {
        let params = Params {
            shards: 3,
            ring: 6,
            park_spin_max: Some(wasmshard::MAX_PARK_SPIN),
            ..Params::default()
        };
        let mut ring = System::new(Workload::Ring, actors, &params).unwrap();
        // A token around six actors on three shards: every hop crosses. Then
        // sparse runs, a few milliseconds apart, which teach the shards spins
        // of a few milliseconds (see the next test for the learning itself).
        ring.run(20_000).unwrap();
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(3));
            ring.run(12).unwrap();
        }
        assert!(ring.runtime().wait_idle(IDLE));
        // Longer than the longest spin: every shard has parked by now.
        std::thread::sleep(wasmshard::MAX_PARK_SPIN * 5);
        let before = ring.runtime().stats();
        std::thread::sleep(Duration::from_millis(300));
        let after = ring.runtime().stats();
        for (b, a) in before.shards.iter().zip(&after.shards) {
            assert_eq!(
                b.loops,
                a.loops,
                "{}: shard {} kept looping while idle",
                actors.name(),
                b.shard
            );
            assert!(a.parks >= 1);
            // What each shard spins now is published, within its bounds.
            assert!(
                (wasmshard::DEFAULT_PARK_SPIN.as_nanos() as u64
                    ..=wasmshard::MAX_PARK_SPIN.as_nanos() as u64)
                    .contains(&a.spin_ns),
                "{}",
                a.spin_ns
            );
        }
        ring.shutdown();
    }
}

/// A shard that work wakes at a steady cadence learns to spin through the
/// gap (`ShardStats::spin_ns` grows from `park_spin` towards 1.5 × the gap,
/// at most `park_spin_max`); work after a gap longer than the cap halves it.
/// A shard that nothing woke keeps `park_spin`.
#[test]
fn a_shard_learns_the_cadence_of_its_work_and_forgets_it() {
    let cap = wasmshard::MAX_PARK_SPIN;
    let rt = builder(2)
        .park_spin(Duration::ZERO)
        .park_spin_max(cap)
        .build()
        .unwrap();
    let counter = load(&rt, "counter.wat");
    let a = rt.spawn(&counter, SpawnOptions::new("c").shard(1)).unwrap();
    assert!(rt.wait_idle(IDLE));
    let spin = |shard: usize| rt.stats().shards[shard].spin_ns;
    let mut sent = 0;
    // The spawn's placement itself was work that woke the shard: it may have
    // taught a spin already. Work after gaps longer than the cap halves it,
    // each time exactly.
    for _ in 0..40 {
        let before = spin(1);
        if before < 100_000 {
            break;
        }
        std::thread::sleep(cap * 3);
        rt.send(a, b"x").unwrap();
        sent += 1;
        assert!(rt.wait_idle(IDLE));
        assert_eq!(spin(1), before / 2);
    }
    assert!(spin(1) < 100_000, "{}", spin(1));
    // A message every millisecond (at least: a sleep may last longer): each
    // wakes the parked shard about a millisecond after it ran out of work,
    // until the spin covers the gap.
    for _ in 0..20 {
        rt.send(a, b"x").unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(rt.wait_idle(IDLE));
    let learnt = spin(1);
    // 1.5 × a gap of about a millisecond (halved once, should the last sleep
    // of this loop have overslept the cap on a loaded machine).
    assert!(
        (500_000..=cap.as_nanos() as u64).contains(&learnt),
        "learnt {learnt} ns"
    );
    assert_eq!(spin(0), 0, "shard 0 had no work and learnt nothing");
    // And forgets it again.
    std::thread::sleep(cap * 3);
    rt.send(a, b"x").unwrap();
    sent += 1;
    assert!(rt.wait_idle(IDLE));
    assert_eq!(spin(1), learnt / 2);
    assert_eq!(rt.stats().actor("c").unwrap().handled, sent);
}

#[test]
fn spawn_errors_are_specific() {
    let rt = builder(2).build().unwrap();
    let counter = load(&rt, "counter.wat");
    let echo = load(&rt, "echo.wat");
    rt.spawn(&counter, SpawnOptions::new("one")).unwrap();
    let err = rt.spawn(&counter, SpawnOptions::new("one")).unwrap_err();
    assert!(
        matches!(&err, SpawnError::NameTaken(n) if n == "one"),
        "{err:?}"
    );
    let err = rt
        .spawn(&counter, SpawnOptions::new("two").shard(7))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SpawnError::NoSuchShard {
                shard: 7,
                shards: 2
            }
        ),
        "{err:?}"
    );
    // echo's init refuses a config longer than 256 bytes with its own message.
    let err = rt
        .spawn(&echo, SpawnOptions::new("three").config(vec![b'x'; 300]))
        .unwrap_err();
    assert!(
        matches!(&err, SpawnError::Init(why) if why == "config longer than 256 bytes.."),
        "{err:?}"
    );
    assert_eq!(rt.lookup("three"), None, "a failed spawn frees its name");
    rt.spawn(&echo, SpawnOptions::new("three").config("one"))
        .unwrap();
}

#[test]
fn slots_run_out_with_a_clear_error_and_come_back() {
    let rt = builder(1).max_actors(2).build().unwrap();
    let counter = load(&rt, "counter.wat");
    let a = rt.spawn(&counter, SpawnOptions::new("a")).unwrap();
    rt.spawn(&counter, SpawnOptions::new("b")).unwrap();
    let err = rt.spawn(&counter, SpawnOptions::new("c")).unwrap_err();
    assert!(matches!(err, SpawnError::NoCapacity(_)), "{err:?}");
    rt.stop(a).unwrap();
    rt.spawn(&counter, SpawnOptions::new("c")).unwrap();
}

#[test]
fn stop_turns_undelivered_messages_into_dead_letters() {
    use std::sync::mpsc;
    let rt = std::sync::Arc::new(builder(1).build().unwrap());
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    // A native actor that holds the shard until released, so what is sent meanwhile
    // stays undelivered.
    let c = rt
        .spawn_native(
            "c",
            Some(0),
            move |_: &mut wasmshard::Context<'_>, _, payload: &[u8]| {
                if payload == b"hold" {
                    entered_tx.send(()).unwrap();
                    release_rx.lock().unwrap().recv().unwrap();
                }
            },
        )
        .unwrap();
    rt.send(c, b"hold").unwrap();
    entered.recv().unwrap();
    for _ in 0..3 {
        rt.send(c, b"x").unwrap();
    }
    let stopper = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.stop(c))
    };
    // Give the stopper time to queue its command; commands run before the inbox is
    // drained, so the three messages are never handled.
    std::thread::sleep(Duration::from_millis(200));
    release.send(()).unwrap();
    stopper.join().unwrap().unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    assert_eq!(stats.actor("c").unwrap().handled, 1);
    assert_eq!(stats.dead_letters, 3);
}

/// `turns` counts the turns actors were given: each takes at most a batch of
/// what waits in its mailbox, for components and natives alike.
#[test]
fn a_turn_takes_at_most_a_batch() {
    let rt = builder(1).batch(4).build_manual().unwrap();
    let counter = load(&rt, "counter.wat");
    let c = rt.spawn(&counter, SpawnOptions::new("c")).unwrap();
    let n = rt
        .spawn_native(
            "n",
            None,
            |_: &mut wasmshard::Context<'_>, _: wasmshard::Address, _: &[u8]| {},
        )
        .unwrap();
    rt.run_until_stalled();
    let before = rt.stats().shards[0].turns;
    for _ in 0..10 {
        rt.send(c, b"x").unwrap();
    }
    rt.run_until_stalled();
    // 4, 4 and 2.
    assert_eq!(rt.stats().shards[0].turns - before, 3);
    for _ in 0..9 {
        rt.send(n, b"x").unwrap();
    }
    rt.run_until_stalled();
    assert_eq!(rt.stats().shards[0].turns - before, 3 + 3);
    let stats = rt.stats();
    assert_eq!(stats.actor("c").unwrap().handled, 10);
    assert_eq!(stats.actor("n").unwrap().handled, 9);
}

/// A shard takes what arrived from other shards and from the host every 16
/// turns, not only between passes (256 turns): a message from elsewhere waits
/// that long at most, however long a busy actor keeps messaging itself.
#[test]
fn a_message_from_elsewhere_waits_16_turns_not_a_pass() {
    // An attempt whose pass may have ended by time (a pass lasts at least
    // one epoch tick, 100 ms here; only a descheduled shard takes that long)
    // proves nothing: another is made.
    let (seen, turns) = (0..5)
        .find_map(|_| elsewhere_attempt())
        .expect("five attempts, each held up for 50 ms or more");
    // The spinner's first 16 turns, then a look at the queues (the receiver
    // is ready behind the spinner), the spinner's 17th turn and the
    // receiver's, with both messages. (Taken once a pass, they waited for
    // 256 of the spinner's turns.)
    assert_eq!(
        seen,
        vec![(b"host".to_vec(), 17), (b"remote".to_vec(), 17)],
        "the spinner had taken that many turns when each message arrived"
    );
    assert_eq!(turns, 17 + 1, "it stopped once both arrived");
}

/// Each message a receiver took, and the spinner's turns by then.
type Seen = Vec<(Vec<u8>, u32)>;

/// One run of the scenario above: what the receiver saw (each message, and
/// the spinner's turns by then) and the spinner's turns in all; `None` if
/// the spinner's first turn and the receiver's were 50 ms or more apart.
fn elsewhere_attempt() -> Option<(Seen, u32)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
    use std::time::Instant;

    const SPINS: u32 = 1000;
    // A long tick, so no pass ends by time while the spinner waits.
    let rt = builder(2)
        .epoch_tick(Duration::from_millis(100))
        .build()
        .unwrap();
    // Sent: the host's message and the remote actor's are both in their
    // queues (the remote's in its ring, pushed at the end of the turn before
    // the one that counts it).
    let sent = Arc::new(AtomicU32::new(0));
    // The spinner's first turn has begun: its pass took its queues before.
    let started = Arc::new(AtomicBool::new(false));
    let wait = |flag: &AtomicBool| {
        let start = Instant::now();
        while !flag.load(SeqCst) && start.elapsed() < Duration::from_secs(10) {
            std::thread::yield_now();
        }
    };
    // The spinner's turns so far, and what it was when each message arrived.
    let turns = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // When the spinner's first turn began, and when the receiver's did.
    let times = Arc::new(std::sync::Mutex::new((None::<Instant>, None::<Instant>)));

    let (t, s, st, go) = (turns.clone(), sent.clone(), stop.clone(), started.clone());
    let tm = times.clone();
    let spinner = rt
        .spawn_native(
            "spinner",
            Some(0),
            move |ctx: &mut wasmshard::Context<'_>, from: wasmshard::Address, _: &[u8]| {
                if from != ctx.self_address() {
                    // The first turn: hold the shard until both messages
                    // are on their way to it.
                    tm.lock().unwrap().0 = Some(Instant::now());
                    go.store(true, SeqCst);
                    let start = Instant::now();
                    while s.load(SeqCst) < 2 && start.elapsed() < Duration::from_secs(10) {
                        std::thread::yield_now();
                    }
                }
                let n = t.fetch_add(1, SeqCst) + 1;
                if n < SPINS && !st.load(SeqCst) {
                    let me = ctx.self_address();
                    ctx.send(me, b"again").unwrap();
                }
            },
        )
        .unwrap();
    let (t, sn, st, tm) = (turns.clone(), seen.clone(), stop.clone(), times.clone());
    let receiver = rt
        .spawn_native(
            "receiver",
            Some(0),
            move |_: &mut wasmshard::Context<'_>, _: wasmshard::Address, payload: &[u8]| {
                tm.lock().unwrap().1.get_or_insert_with(Instant::now);
                let mut seen = sn.lock().unwrap();
                seen.push((payload.to_vec(), t.load(SeqCst)));
                if seen.len() == 2 {
                    st.store(true, SeqCst);
                }
            },
        )
        .unwrap();
    let (s, go) = (sent.clone(), started.clone());
    let remote = rt
        .spawn_native(
            "remote",
            Some(1),
            move |ctx: &mut wasmshard::Context<'_>, from: wasmshard::Address, _: &[u8]| {
                if from == ctx.self_address() {
                    // The turn before routed the message: it is in the ring.
                    s.fetch_add(1, SeqCst);
                } else {
                    wait(&go);
                    ctx.send(receiver, b"remote").unwrap();
                    let me = ctx.self_address();
                    ctx.send(me, b"sent").unwrap();
                }
            },
        )
        .unwrap();
    assert!(rt.wait_idle(Duration::from_secs(5)));

    rt.send(spinner, b"go").unwrap();
    rt.send(remote, b"go").unwrap();
    wait(&started);
    rt.send(receiver, b"host").unwrap();
    sent.fetch_add(1, SeqCst);
    assert!(rt.wait_idle(Duration::from_secs(30)));

    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let (first, received) = *times.lock().unwrap();
    let apart = received?.duration_since(first?);
    (apart < Duration::from_millis(50)).then(|| (seen, turns.load(SeqCst)))
}

/// The cores a thread may run on, from its `Cpus_allowed_list` (`0-3,6`).
#[cfg(target_os = "linux")]
fn allowed_cores(status: &str) -> Vec<usize> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("a Cpus_allowed_list line")
        .trim();
    let mut cores = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cores.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cores.push(part.parse().unwrap()),
        }
    }
    cores
}

#[cfg(target_os = "linux")]
#[test]
fn pinned_shards_run_each_on_its_own_core() {
    use std::sync::{Arc, Mutex};
    use wasmshard::{Address, Context, Runtime};
    let process = allowed_cores(&std::fs::read_to_string("/proc/self/status").unwrap());
    type Seen = Arc<Mutex<Vec<(usize, Vec<usize>)>>>;
    let seen: Seen = Arc::default();
    for pin in [true, false] {
        seen.lock().unwrap().clear();
        let rt = Runtime::builder().shards(3).pin_cores(pin).build().unwrap();
        for shard in 0..3 {
            let log = seen.clone();
            let a = rt
                .spawn_native(
                    &format!("where-{shard}"),
                    Some(shard),
                    move |_: &mut Context<'_>, _: Address, _: &[u8]| {
                        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
                        log.lock().unwrap().push((shard, allowed_cores(&status)));
                    },
                )
                .unwrap();
            rt.send(a, b"where").unwrap();
        }
        assert!(rt.wait_idle(Duration::from_secs(10)));
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen.len(), 3);
        for (shard, cores) in seen {
            if pin {
                // Shard i on the i-th core the process may use, modulo their number.
                assert_eq!(cores, [process[shard % process.len()]], "shard {shard}");
            } else {
                assert_eq!(cores, process, "shard {shard}");
            }
        }
        rt.shutdown();
    }
}
