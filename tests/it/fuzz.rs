//! Property tests with random input, run by `cargo test` with a bounded number of
//! cases: a guest's host calls with random arguments (addresses, ids, pointers,
//! lengths, log levels, timeouts), and random manifests. Whatever the input: no
//! panic, no hang, the runtime still delivers afterwards, and every request (the
//! host's and the guests') ended exactly once; for manifests, every send is
//! counted as delivered, refused or undelivered. (Message conservation under
//! failure, shutdown and floods has its own tests in `regressions` and
//! `lifecycle`.)
//!
//! `cargo test` runs 40 cases of each from a fixed seed;
//! `WASMSHARD_FUZZ_CASES=2000 cargo test fuzz` runs 2000 from a random one.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use wasmshard::manifest::Manifest;
use wasmshard::{Runtime, SpawnOptions, Stats};

use crate::support::*;

/// Where the interpreter keeps the payload it runs, and its scratch area.
const PAYLOAD_AT: u32 = 131_072;
const SCRATCH_AT: u32 = 65_536;

/// One instruction of `fixtures/hostile/interpreter.wat` (see its header).
fn instruction() -> impl Strategy<Value = Vec<u8>> {
    let op = (0u8..16, prop_oneof![Just(0u8), 0u8..8]).prop_map(|(kind, from)| {
        // Traps are rarer than the rest, so programs get somewhere first.
        let kind = if kind == 10 && from % 2 == 0 {
            15
        } else {
            kind
        };
        (from << 4) | kind
    });
    let a = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just((1u64 << 32) | 1),
        Just((1u64 << 56) | (1 << 32) | 1),
        any::<u64>(),
        0u64..8,
    ];
    let b = prop_oneof![
        Just(PAYLOAD_AT),
        Just(SCRATCH_AT),
        Just(0),
        Just(u32::MAX),
        any::<u32>(),
    ];
    let c = prop_oneof![
        Just(0u32),
        Just(1),
        Just(8),
        Just(64),
        Just(300),
        Just(70_000),
        Just(u32::MAX),
        0u32..512,
    ];
    let d = prop_oneof![Just(0u64), Just(1_000_000), Just(u64::MAX), any::<u64>()];
    (op, a, b, c, d).prop_map(|(op, a, b, c, d)| {
        let mut v = vec![op];
        v.extend(a.to_le_bytes());
        v.extend(b.to_le_bytes());
        v.extend(c.to_le_bytes());
        v.extend(d.to_le_bytes());
        v
    })
}

/// A program: up to 12 instructions.
fn program() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(instruction(), 0..12).prop_map(|v| v.concat())
}

/// What the host does with a program: which interpreter runs it, and whether it
/// arrives as a message or as a request (with the request header's flag).
fn delivery() -> impl Strategy<Value = (usize, Option<u8>, Vec<u8>)> {
    (
        0usize..3,
        prop_oneof![Just(None), (0u8..4).prop_map(Some)],
        program(),
    )
}

/// The runner: 40 cases from a fixed seed (the same cases every run, as CI needs),
/// or, with `WASMSHARD_FUZZ_CASES=N` in the environment, N cases from a random
/// seed, to explore.
fn runner() -> TestRunner {
    let config = |cases| Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    match std::env::var("WASMSHARD_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(cases) => TestRunner::new(config(cases)),
        None => {
            TestRunner::new_with_rng(config(40), TestRng::deterministic_rng(RngAlgorithm::ChaCha))
        }
    }
}

/// Every request made ended once: after shutdown none is open, and each counts
/// under exactly one outcome.
fn requests_all_ended(stats: &Stats) {
    for s in &stats.shards {
        let r = &s.requests;
        assert_eq!(r.open, 0, "shard {}: {r:?}", s.shard);
        assert_eq!(
            r.made,
            r.answered + r.timed_out + r.cancelled + r.failed + r.abandoned,
            "shard {}: {r:?}",
            s.shard
        );
    }
}

#[test]
fn random_host_calls_from_a_guest_break_nothing() {
    let mut runner = runner();
    let result = runner.run(&prop::collection::vec(delivery(), 1..6), |programs| {
        let report = within(Duration::from_secs(60), "a fuzz case", move || {
            let rt = builder(2)
                .max_open_requests(64)
                .drain_timeout(Duration::ZERO)
                .build_manual()
                .unwrap();
            let interpreter = load(&rt, "hostile/interpreter.wat");
            let counter = load(&rt, "counter.wat");
            let sink = rt.spawn(&counter, SpawnOptions::new("sink")).unwrap();
            let actors: Vec<_> = (0..3)
                .map(|i| {
                    rt.spawn(
                        &interpreter,
                        SpawnOptions::new(format!("i{i}")).shard(i % 2),
                    )
                    .unwrap()
                })
                .collect();
            let mut pending = Vec::new();
            for (to, flag, program) in programs {
                match flag {
                    None => {
                        let _ = rt.send(actors[to], &program);
                    }
                    Some(flag) => {
                        let mut payload = vec![flag];
                        payload.extend(PAYLOAD_AT.to_le_bytes());
                        payload.extend(64u32.to_le_bytes());
                        payload.extend(program);
                        if let Ok(r) = rt.request(actors[to], &payload, Duration::from_millis(1)) {
                            pending.push(r);
                        }
                    }
                }
                rt.run_until_stalled();
            }
            // The runtime still serves (programs may have messaged the sink too).
            rt.run_until_stalled();
            let before = rt.stats().actor("sink").unwrap().handled;
            rt.send(sink, b"after").unwrap();
            rt.run_until_stalled();
            assert_eq!(rt.stats().actor("sink").unwrap().handled, before + 1);
            let report = rt.shutdown();
            // Every host request ended.
            assert!(pending.iter().all(|r| r.try_get().is_some()));
            report
        });
        requests_all_ended(&report.stats);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A `[runtime]` key with a value, or nothing.
fn setting() -> impl Strategy<Value = String> {
    // (Shards beyond what the test machine has are fine: threads are cheap.)
    let key = prop::sample::select(vec![
        "shards",
        "mailbox-capacity",
        "max-payload",
        "epoch-tick-ms",
        "cpu-budget-ms",
        "memory-limit",
        "max-actors",
        "batch",
        "ring-capacity",
        "drain-timeout-ms",
        "max-open-requests",
        "park-spin-us",
        "park-spin-max-us",
        "keep-resident",
        "no-such-key",
    ]);
    let value = prop_oneof![
        20 => (1u64..64).prop_map(|v| v.to_string()),
        1 => Just("0".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("18446744073709551615".to_string()),
        1 => Just("true".to_string()),
        1 => Just("\"text\"".to_string()),
        1 => (64u64..100_000).prop_map(|v| v.to_string()),
    ];
    (key, value).prop_map(|(k, v)| format!("{k} = {v}\n"))
}

/// Fixtures that only send messages (no requests), so the messages in a run can be
/// counted exactly.
const TELLERS: [&str; 6] = [
    "counter.wat",
    "echo.wat",
    "pingpong.wat",
    "trap.wat",
    "relay.wat",
    "no-such-file.wat",
];

fn manifest() -> impl Strategy<Value = String> {
    // Mostly well-formed (distinct names, sends to actors that exist), so most
    // cases run; the rest are refused, which must be clean too.
    (1usize..5)
        .prop_flat_map(|n| {
            let actor = (
                prop_oneof![16 => 0usize..TELLERS.len() - 1, 1 => Just(TELLERS.len() - 1)],
                0..n,
                prop_oneof![8 => prop::option::of(0usize..2), 1 => Just(Some(5))],
            );
            let send = (
                prop_oneof![16 => 0..n, 1 => Just(n)],
                prop_oneof![
                    4 => Just("payload = \"boom\"".to_string()),
                    4 => Just("payload-hex = \"05000000\"".to_string()),
                    4 => Just("payload = \"report\"".to_string()),
                    4 => "[a-z]{0,8}".prop_map(|s| format!("payload = \"{s}\"")),
                    1 => Just("payload-hex = \"0g\"".to_string()),
                ],
                0u64..200,
            );
            (
                prop::collection::vec(setting(), 0..2),
                prop::collection::vec(actor, n),
                prop::collection::vec(send, 0..4),
            )
        })
        .prop_map(|(settings, actors, sends)| {
            let mut text = format!("[runtime]\n{}", settings.concat());
            for (i, (fixture, config, shard)) in actors.into_iter().enumerate() {
                text.push_str(&format!(
                    "[[actor]]\nname = \"a{i}\"\ncomponent = \"{}\"\nconfig = \"a{config}\"\n",
                    fixture_path(TELLERS[fixture])
                ));
                if let Some(shard) = shard {
                    text.push_str(&format!("shard = {shard}\n"));
                }
            }
            for (to, payload, repeat) in sends {
                text.push_str(&format!(
                    "[[send]]\nto = \"a{to}\"\n{payload}\nrepeat = {repeat}\n"
                ));
            }
            text
        })
}

fn fixture_path(name: &str) -> String {
    fixture(name).display().to_string()
}

#[test]
fn random_manifests_are_refused_or_run_and_count_every_message() {
    let mut runner = runner();
    let cases = runner.config().cases as usize;
    let ran = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&manifest(), |text| {
        let Ok(m) = Manifest::parse(&text) else {
            return Ok(());
        };
        let builder = m.builder().max_actors(16);
        let run = within(Duration::from_secs(60), "a fuzz manifest", move || {
            m.run(builder, Some(Duration::from_millis(300)))
        });
        let Ok(report) = run else {
            return Ok(());
        };
        ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let total: u64 = Manifest::parse(&text)
            .unwrap()
            .sends
            .iter()
            .map(|s| s.repeat.unwrap_or(1))
            .sum();
        let delivered = total - report.undelivered_sends;
        // Every message admitted (sent by an actor, or delivered by the host) was
        // handled or is a dead letter (one delivered and then stopped with its
        // actor counts as received too, so received is not the measure).
        let sent: u64 = report.actors.iter().map(|a| a.sent).sum();
        let handled: u64 = report.actors.iter().map(|a| a.handled).sum();
        prop_assert_eq!(
            sent + delivered,
            handled + report.dead_letters,
            "{}\n{:?}",
            text,
            report
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let ran = ran.into_inner();
    assert!(
        ran * 8 >= cases * 3,
        "only {ran} of {cases} manifests ran: the generator needs work"
    );
}

/// A runtime must be usable at all for the cases above to mean anything.
#[test]
fn the_fuzz_fixtures_load() {
    let rt: Runtime = builder(1).build().unwrap();
    load(&rt, "hostile/interpreter.wat");
    for name in TELLERS.iter().filter(|n| !n.starts_with("no-such")) {
        load(&rt, name);
    }
}
