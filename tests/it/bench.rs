//! The benchmark workloads (`wasmshard::bench`): every workload's system does
//! exactly the work asked, with components and with native actors, on one and on
//! several shards; every floor makes the calls its workload counts on. Nothing
//! here is timed.

use wasmshard::bench::{Actors, Floor, LONGEST_NS, Params, System, Workload, measure, percentiles};

fn params(shards: usize) -> Params {
    Params {
        shards,
        fan_out: 5,
        ring: 7,
        ..Params::default()
    }
}

#[test]
fn every_workload_does_exactly_the_work_asked() {
    for workload in Workload::ALL {
        for actors in [Actors::Component, Actors::Native] {
            let mut sys = System::new(workload, actors, &params(3))
                .unwrap_or_else(|e| panic!("{workload} ({}): {e}", actors.name()));
            // Each run checks that its receivers handled exactly what was sent (or
            // that every request was answered) and fails otherwise. Uneven counts
            // exercise the split over senders and fan-out's whole rounds.
            for ops in [1, 997, 3001] {
                sys.run(ops)
                    .unwrap_or_else(|e| panic!("{workload} ({}), {ops}: {e}", actors.name()));
            }
            let stats = sys.runtime().stats();
            assert_eq!(stats.dead_letters, 0, "{workload} ({})", actors.name());
            assert!(
                stats.actors.iter().all(|a| a.failure.is_none()),
                "{workload} ({}): {:?}",
                actors.name(),
                stats.actors
            );
            sys.shutdown();
        }
    }
}

#[test]
fn workloads_use_the_shards_they_say() {
    let sys = System::new(Workload::TellCross, Actors::Native, &params(1)).unwrap();
    assert_eq!(sys.shards(), 2, "tell-cross needs two shards at least");
    let stats = sys.runtime().stats();
    // One producer→sink pair per shard, each sink on the next shard.
    for a in stats.actors.iter().filter(|a| a.name.starts_with("sink-")) {
        let i: usize = a.name["sink-".len()..].parse().unwrap();
        assert_eq!(a.shard, (i + 1) % 2);
    }
    sys.shutdown();
    // Actor i of the ring sits on shard i mod 3; with 6 actors every hop crosses.
    let six = Params {
        ring: 6,
        ..params(3)
    };
    let mut ring = System::new(Workload::Ring, Actors::Component, &six).unwrap();
    ring.run(100).unwrap();
    let stats = ring.runtime().stats();
    let remote: u64 = stats.shards.iter().map(|s| s.routed_remote).sum();
    assert_eq!(remote, 100, "every hop crosses a shard");
    ring.shutdown();
}

#[test]
fn every_floor_runs() {
    for workload in Workload::ALL {
        // `Floor::new` runs once and checks the guests' calls.
        let mut floor =
            Floor::new(workload, &params(2)).unwrap_or_else(|e| panic!("{workload} floor: {e}"));
        floor.run(50).unwrap();
    }
}

#[test]
fn native_round_trips_record_latencies() {
    for workload in [Workload::PingPong, Workload::Request] {
        let mut sys = System::new(workload, Actors::Native, &params(1)).unwrap();
        sys.run(200).unwrap();
        let samples = sys.take_samples().expect("samples");
        assert_eq!(samples.len(), 200, "{workload}: one sample per round trip");
        assert!(samples.iter().all(|&ns| ns > 0));
        sys.shutdown();
    }
}

/// Components time their round trips in a separate recorded run (the guest reads
/// the clock around each); other workloads and native actors have none.
#[test]
fn component_round_trips_record_latencies() {
    for workload in [
        Workload::PingPong,
        Workload::Request,
        Workload::RequestCross,
    ] {
        let mut sys = System::new(workload, Actors::Component, &params(2)).unwrap();
        sys.run(300).unwrap();
        assert_eq!(
            sys.take_samples(),
            None,
            "{workload}: the timed run records nothing"
        );
        for ops in [1, 250] {
            let times = sys.record_latency(ops).unwrap().expect("times");
            assert_eq!(
                times.len() as u64,
                ops,
                "{workload}: one time per round trip"
            );
            assert!(times.iter().all(|&ns| ns > 0), "{workload}: {times:?}");
        }
        // The timed runs go on exactly as before.
        sys.run(300).unwrap();
        let stats = sys.runtime().stats();
        assert_eq!(stats.dead_letters, 0, "{workload}");
        sys.shutdown();
    }
    let mut tell = System::new(Workload::Tell, Actors::Component, &params(1)).unwrap();
    assert_eq!(tell.record_latency(10).unwrap(), None);
    tell.shutdown();
    let mut native = System::new(Workload::Request, Actors::Native, &params(1)).unwrap();
    assert_eq!(native.record_latency(10).unwrap(), None);
    native.shutdown();
}

#[test]
fn measure_reports_floor_ratio_and_percentiles() {
    let m = measure(Workload::PingPong, Actors::Component, &params(1), 2000).unwrap();
    assert_eq!((m.workload, m.shards, m.messages), ("ping-pong", 1, 2000));
    let floor = m.floor_ns.expect("components have a floor");
    assert!(m.ns_per_op > 0.0 && floor > 0.0);
    assert!((m.ratio.unwrap() - m.ns_per_op / floor).abs() < 1e-9);
    assert!((m.ops_per_sec * m.ns_per_op - 1e9).abs() < 1.0);
    assert!(m.p50_ns.unwrap() <= m.p99_ns.unwrap());
    let n = measure(Workload::Request, Actors::Native, &params(1), 2000).unwrap();
    assert!(n.floor_ns.is_none() && n.ratio.is_none());
    assert!(n.p50_ns.unwrap() <= n.p99_ns.unwrap());
    let s = measure(Workload::Spawn, Actors::Component, &params(2), 50).unwrap();
    assert!(s.bytes_per_actor.is_some());
}

#[test]
fn bad_parameters_are_refused() {
    let bad = |p: Params| {
        System::new(Workload::Tell, Actors::Native, &p)
            .err()
            .map(|e| e.to_string())
    };
    let e = bad(Params {
        payload: 4,
        ..Params::default()
    })
    .expect("refused");
    assert!(e.contains("payload of 4 bytes"), "{e}");
    assert!(
        bad(Params {
            shards: 0,
            ..Params::default()
        })
        .is_some()
    );
    assert!(
        bad(Params {
            fan_out: 0,
            ..Params::default()
        })
        .is_some()
    );
    assert!(
        Floor::new(
            Workload::Tell,
            &Params {
                payload: 2000,
                ..Params::default()
            }
        )
        .is_err()
    );
}

#[test]
fn tell_batch_goes_through_the_batch_lane() {
    let mut sys = System::new(Workload::TellBatch, Actors::Component, &params(2)).unwrap();
    assert_eq!(sys.shards(), 1);
    // More than a mailbox holds: the framer yields while the sink is full.
    sys.run(5000).unwrap();
    let stats = sys.runtime().stats();
    let (calls, carried): (u64, u64) = stats
        .shards
        .iter()
        .fold((0, 0), |(c, m), s| (c + s.batches, m + s.batched));
    // The sink takes its queued messages 64 at a time, in one call each.
    assert!(
        calls >= 5000 / 64 && carried >= 4900,
        "{calls} calls, {carried} messages"
    );
    assert_eq!(stats.actor("sink-0").unwrap().handled, 5000);
    sys.shutdown();
}

#[test]
fn density_spawns_idle_actors_and_says_what_each_holds() {
    use wasmshard::bench::density;
    for actors in [Actors::Component, Actors::Native] {
        let d = density(actors, &params(2), 1500).unwrap();
        assert_eq!((d.asked, d.spawned), (1500, 1500), "{d:?}");
        assert!(d.stopped_by.is_none(), "{d:?}");
        if cfg!(target_os = "linux") {
            assert!(d.bytes_per_actor.is_some() && d.left_per_actor.is_some());
        }
    }
    // Out of range is refused before anything runs.
    let too_many = Params {
        density: Some(2_000_000),
        ..params(2)
    };
    assert!(too_many.check().is_err());
    // `measure` reports it with `spawn` only.
    let with = Params {
        density: Some(100),
        ..params(1)
    };
    let m = measure(Workload::Spawn, Actors::Component, &with, 50).unwrap();
    assert_eq!(m.density.as_ref().map(|d| d.spawned), Some(100));
    let m = measure(Workload::Tell, Actors::Native, &with, 50).unwrap();
    assert!(m.density.is_none());
}

/// Round trips over 2 047 ns used to count as 2 ns each (the histogram grew
/// no further than its first bucket), so a slow run's median read 2 ns.
#[test]
fn percentiles_keep_long_round_trips() {
    let samples: Vec<u64> = (0..1000).map(|i| 1_000 + 3 * i).collect();
    let (p50, p99) = percentiles(&samples).unwrap();
    assert!((2_490.0..=2_510.0).contains(&p50), "{p50}");
    assert!((3_960.0..=3_980.0).contains(&p99), "{p99}");
    let (p50, p99) = percentiles(&[0, 5, 7_000_000_000_000]).unwrap();
    assert_eq!(p50, 5.0);
    let hour = LONGEST_NS as f64;
    assert!((hour * 0.999..=hour * 1.001).contains(&p99), "{p99}");
}
