//! Capabilities and quotas: grants checked at admission (deny by default), the
//! audit trail, and rate limits, driven through the Rust test guest's `ops`
//! role (`tests/guests/roles`), whose requests are commands answered with what
//! the host calls returned.

use std::time::{Duration, Instant};

use wasmshard::{
    Address, Component, Grants, Operation, QuotaError, Rate, Runtime, SendError, SpawnError,
    SpawnOptions,
};

use crate::support::*;

/// Codes the `ops` role answers with (0: ok; `1 +` the send-error's index).
const OK: u32 = 0;
const UNKNOWN_TARGET: u32 = 1;
const DENIED: u32 = 3;

/// A runtime with the default grants (none), and the test guest.
fn rig(shards: usize) -> Option<(Runtime, Component)> {
    let rt = Runtime::builder()
        .shards(shards)
        .max_actors(32)
        .mailbox_capacity(1 << 20)
        .build()
        .unwrap();
    let g = guest(&rt)?;
    Some((rt, g))
}

fn spawn_ops(rt: &Runtime, g: &Component, name: &str, shard: usize, grants: Grants) -> Address {
    rt.spawn(
        g,
        SpawnOptions::new(name)
            .config("ops")
            .shard(shard)
            .grants(grants),
    )
    .unwrap_or_else(|e| panic!("spawn {name}: {e}"))
}

/// A target: an `ops` actor with no grants (it ignores tells and answers the
/// requests `ops` actors make).
fn spawn_sink(rt: &Runtime, g: &Component, name: &str, shard: usize) -> Address {
    spawn_ops(rt, g, name, shard, Grants::none())
}

/// Has `ops` run one command; returns its answer as `u32`s.
fn op(rt: &Runtime, ops: Address, command: &[u8]) -> Vec<u32> {
    let reply = rt
        .request(ops, command, Duration::from_secs(60))
        .unwrap()
        .wait(Duration::from_secs(60))
        .expect("answered in time")
        .unwrap_or_else(|e| panic!("command {:?}: {e}", command[0] as char));
    reply
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect()
}

fn with_target(c: u8, target: Address) -> Vec<u8> {
    let mut cmd = vec![c];
    cmd.extend_from_slice(&target.to_bits().to_le_bytes());
    cmd
}

fn send(rt: &Runtime, ops: Address, to: Address) -> u32 {
    op(rt, ops, &with_target(b's', to))[0]
}

fn request(rt: &Runtime, ops: Address, to: Address) -> u32 {
    op(rt, ops, &with_target(b'r', to))[0]
}

/// What `ops`'s lookup of `name` found.
fn lookup(rt: &Runtime, ops: Address, name: &str) -> Option<Address> {
    let mut cmd = vec![b'l'];
    cmd.extend_from_slice(name.as_bytes());
    let w = op(rt, ops, &cmd);
    (w[0] == 0).then(|| Address::from_bits(u64::from(w[1]) | u64::from(w[2]) << 32))
}

/// `ops` floods `to` with `n` tells: `[ok, denied, too-many-requests, other]`.
fn flood(rt: &Runtime, ops: Address, to: Address, n: u32) -> [u32; 4] {
    let mut cmd = with_target(b'x', to);
    cmd.extend_from_slice(&n.to_le_bytes());
    op(rt, ops, &cmd).try_into().unwrap()
}

fn received(rt: &Runtime, name: &str) -> u64 {
    rt.stats().actor(name).expect(name).received
}

fn deny_by_default(sender_shard: usize, target_shard: usize) {
    let Some((rt, g)) = rig(2) else { return };
    let target = spawn_sink(&rt, &g, "target", target_shard);
    let ops = spawn_ops(&rt, &g, "nobody", sender_shard, Grants::none());
    assert_eq!(send(&rt, ops, target), DENIED, "send");
    assert_eq!(request(&rt, ops, target), DENIED, "request");
    assert_eq!(lookup(&rt, ops, "target"), None, "lookup of a hidden name");
    assert_eq!(lookup(&rt, ops, "no-such-actor"), None, "lookup of no name");
    assert!(rt.wait_idle(IDLE));
    assert_eq!(received(&rt, "target"), 0, "the target received nothing");
    let stats = rt.stats();
    let nobody = stats.actor("nobody").unwrap();
    assert_eq!(nobody.denied, 3, "send, request, the hidden lookup");
    assert_eq!(nobody.sent, 0);
    let audit = rt.audit();
    let ops_seen: Vec<_> = audit.iter().map(|d| d.operation).collect();
    assert_eq!(
        ops_seen,
        [Operation::Send, Operation::Request, Operation::Lookup]
    );
    for d in &audit {
        assert_eq!((d.from, d.from_name.as_str()), (ops, "nobody"));
        assert_eq!(d.target_name.as_deref(), Some("target"));
    }
    assert_eq!(audit[0].target, Some(target));
    assert_eq!(audit[2].target, None, "a lookup names no address");
    assert!(audit.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
    // Nothing was staged: shutdown finds nothing in flight.
    assert_eq!(rt.shutdown().dead_letter_count, 0);
}

#[test]
fn a_component_without_grants_reaches_no_one_on_its_shard() {
    deny_by_default(0, 0);
}

#[test]
fn a_component_without_grants_reaches_no_one_on_another_shard() {
    deny_by_default(0, 1);
}

#[test]
fn exact_names_and_globs_allow_what_they_name_and_nothing_else() {
    for (sender, other) in [(0, 0), (0, 1)] {
        let Some((rt, g)) = rig(2) else { return };
        let db = spawn_sink(&rt, &g, "db", other);
        let w1 = spawn_sink(&rt, &g, "worker-1", other);
        let w2 = spawn_sink(&rt, &g, "worker-2", sender);
        let dbx = spawn_sink(&rt, &g, "db-replica", other);
        let ops = spawn_ops(
            &rt,
            &g,
            "client",
            sender,
            Grants::none()
                .send(["worker-*"])
                .request(["db"])
                .lookup(["db*"]),
        );
        assert_eq!(send(&rt, ops, w1), OK);
        assert_eq!(send(&rt, ops, w2), OK);
        assert_eq!(send(&rt, ops, db), DENIED, "db is not a worker-*");
        assert_eq!(request(&rt, ops, db), OK);
        assert_eq!(request(&rt, ops, dbx), DENIED, "`db` is exact");
        assert_eq!(
            request(&rt, ops, w1),
            DENIED,
            "no request grant for workers"
        );
        assert_eq!(lookup(&rt, ops, "db"), Some(db));
        assert_eq!(lookup(&rt, ops, "db-replica"), Some(dbx));
        assert_eq!(lookup(&rt, ops, "worker-1"), None);
        assert!(rt.wait_idle(IDLE));
        assert_eq!(rt.stats().actor("client").unwrap().denied, 4);
        assert_eq!(received(&rt, "worker-1"), 1);
        assert_eq!(received(&rt, "worker-2"), 1);
        assert_eq!(received(&rt, "db"), 1, "the request only");
        assert_eq!(received(&rt, "db-replica"), 0);
    }
}

#[test]
fn a_grant_reaches_actors_spawned_after_it_and_new_patterns_reach_older_ones() {
    let Some((rt, g)) = rig(2) else { return };
    // An actor that exists before any grant names it.
    let old = spawn_sink(&rt, &g, "old-1", 1);
    let ops = spawn_ops(
        &rt,
        &g,
        "client",
        0,
        Grants::none().send(["old-*", "late", "later-*"]),
    );
    assert_eq!(
        send(&rt, ops, old),
        OK,
        "a new pattern marks the live actors"
    );
    let late = spawn_sink(&rt, &g, "late", 1);
    let later = spawn_sink(&rt, &g, "later-7", 0);
    let other = spawn_sink(&rt, &g, "lately", 1);
    assert_eq!(send(&rt, ops, late), OK);
    assert_eq!(send(&rt, ops, later), OK);
    assert_eq!(send(&rt, ops, other), DENIED);
    // A second client with one of the same patterns and a new one.
    let ops2 = spawn_ops(&rt, &g, "client-2", 1, Grants::none().send(["late*"]));
    assert_eq!(send(&rt, ops2, other), OK);
    assert_eq!(send(&rt, ops2, late), OK);
    assert_eq!(send(&rt, ops2, old), DENIED);
    // The first client's grants are unchanged by the second's pattern.
    assert_eq!(send(&rt, ops, other), DENIED);
    // When the first client ends, its patterns go; the second's stay.
    rt.stop(ops).unwrap();
    assert_eq!(send(&rt, ops2, other), OK);
    assert_eq!(send(&rt, ops2, old), DENIED);
}

#[test]
fn a_reused_name_is_granted_and_a_reused_slot_carries_no_old_grant() {
    let Some((rt, g)) = rig(2) else { return };
    let ops = spawn_ops(
        &rt,
        &g,
        "client",
        0,
        Grants::none().send(["db"]).lookup(["db"]),
    );
    let first = spawn_sink(&rt, &g, "db", 1);
    assert_eq!(send(&rt, ops, first), OK);
    rt.stop(first).unwrap();
    assert_eq!(
        send(&rt, ops, first),
        UNKNOWN_TARGET,
        "the old address is dead"
    );
    assert_eq!(lookup(&rt, ops, "db"), None);
    // The name again, from another component: granted by name.
    let counter = load(&rt, "counter.wat");
    let second = rt
        .spawn(&counter, SpawnOptions::new("db").shard(1))
        .unwrap();
    assert_eq!(lookup(&rt, ops, "db"), Some(second));
    assert_eq!(send(&rt, ops, second), OK);
    // Every slot of shard 1 in turn, under other names: none is granted.
    rt.stop(second).unwrap();
    for i in 0..80 {
        let a = spawn_sink(&rt, &g, &format!("other-{i}"), 1);
        assert_eq!(send(&rt, ops, a), DENIED, "other-{i} at {a}");
        rt.stop(a).unwrap();
    }
}

#[test]
fn responding_messaging_itself_and_being_asked_need_no_grant() {
    let Some((rt, g)) = rig(2) else { return };
    let ops = spawn_ops(&rt, &g, "loner", 0, Grants::none());
    // It messages itself.
    assert_eq!(op(&rt, ops, b"m"), [OK]);
    assert!(rt.wait_idle(IDLE));
    assert_eq!(op(&rt, ops, b"c")[0], 1, "its own message arrived");
    // It answers requests: the host's (every command is one), another
    // component's (direct replies) and, deferred, with `respond`.
    let asker = spawn_ops(
        &rt,
        &g,
        "asker",
        1,
        Grants::none().request(["loner", "holder"]),
    );
    assert_eq!(request(&rt, asker, ops), OK);
    let holder = rt
        .spawn(&g, SpawnOptions::new("holder").config("deferring").shard(0))
        .unwrap();
    assert_eq!(request(&rt, asker, holder), OK);
    // Any tell makes the deferring role answer with `respond`, once it holds
    // the request (which crosses shards while the host's tell need not).
    let held = Instant::now();
    while rt.stats().actor("holder").unwrap().deferred == 0 {
        assert!(held.elapsed() < IDLE, "the holder never got the request");
        std::thread::sleep(Duration::from_millis(1));
    }
    rt.send(holder, b"now").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(op(&rt, asker, b"c")[1..], [2, 0], "[replies, failures]");
    let stats = rt.stats();
    for name in ["loner", "asker", "holder"] {
        assert_eq!(stats.actor(name).unwrap().denied, 0, "{name}");
    }
    assert!(rt.audit().is_empty());
}

#[test]
fn native_actors_and_the_host_are_trusted() {
    let Some((rt, g)) = rig(2) else { return };
    let sink = spawn_sink(&rt, &g, "sink", 1);
    let (probe, _) = probe(&rt, "probe", 0);
    relay(&rt, probe, sink, b"from a native actor");
    rt.send(sink, b"from the host").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(received(&rt, "sink"), 2);
}

#[test]
fn the_default_grants_and_bad_patterns() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .default_grants(Grants::all())
        .build()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let sink = spawn_sink(&rt, &g, "sink", 0);
    let ops = rt
        .spawn(&g, SpawnOptions::new("trusted").config("ops"))
        .unwrap();
    assert_eq!(send(&rt, ops, sink), OK);
    assert_eq!(lookup(&rt, ops, "sink"), Some(sink));
    // Its own grants replace the default.
    let own = spawn_ops(&rt, &g, "own", 0, Grants::none().lookup(["*"]));
    assert_eq!(send(&rt, own, sink), DENIED);
    assert_eq!(lookup(&rt, own, "sink"), Some(sink));
    // An empty pattern is refused at spawn, clearly, and takes nothing.
    let err = rt
        .spawn(
            &g,
            SpawnOptions::new("bad")
                .config("ops")
                .grants(Grants::none().send([""])),
        )
        .unwrap_err();
    assert!(matches!(err, SpawnError::Policy(_)), "{err}");
    assert!(
        wasmshard::Runtime::lookup(&rt, "bad").is_none(),
        "the name is free again"
    );
    // Too many distinct patterns: the spawn that would exceed them is refused;
    // the patterns of actors that end are free again.
    let many: Vec<String> = (0..wasmshard::MAX_PATTERNS)
        .map(|i| format!("p{i}-*"))
        .collect();
    let full = spawn_ops(&rt, &g, "full", 0, Grants::none().send(many));
    let err = rt
        .spawn(
            &g,
            SpawnOptions::new("one-more")
                .config("ops")
                .grants(Grants::none().send(["another"])),
        )
        .unwrap_err();
    assert!(matches!(err, SpawnError::Policy(_)), "{err}");
    rt.stop(full).unwrap();
    spawn_ops(&rt, &g, "one-more", 0, Grants::none().send(["another"]));
}

#[test]
fn the_trail_is_bounded_and_a_flood_of_denials_slows_no_one() {
    let rt = Runtime::builder()
        .shards(2)
        .max_actors(8)
        .mailbox_capacity(1 << 20)
        .audit_capacity(100)
        .build()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let sink = spawn_sink(&rt, &g, "sink", 1);
    let flooder = spawn_ops(&rt, &g, "flooder", 0, Grants::none());
    let worker = spawn_ops(&rt, &g, "worker", 0, Grants::none().send(["sink"]));
    // A million denials, in a hundred commands, while the worker on the same shard
    // sends as usual.
    let rt = std::sync::Arc::new(rt);
    let flooding = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            (0..100).fold(0u64, |n, _| {
                let [ok, denied, ..] = flood(&rt, flooder, sink, 10_000);
                assert_eq!(ok, 0);
                n + u64::from(denied)
            })
        })
    };
    let mut sent = 0;
    for _ in 0..20 {
        let [ok, denied, limited, other] = flood(&rt, worker, sink, 1000);
        assert_eq!([denied, limited, other], [0, 0, 0]);
        sent += ok;
    }
    assert_eq!(flooding.join().unwrap(), 1_000_000);
    assert!(rt.wait_idle(IDLE));
    assert_eq!(u64::from(sent), received(&rt, "sink"), "every tell arrived");
    assert_eq!(rt.stats().actor("flooder").unwrap().denied, 1_000_000);
    let audit = rt.audit();
    assert_eq!(audit.len(), 100, "the trail keeps its capacity");
    assert!(
        audit
            .iter()
            .all(|d| d.from == flooder && d.target == Some(sink))
    );
}

#[test]
fn a_flooding_actor_is_held_to_its_rate_and_others_are_not() {
    let Some((rt, g)) = rig(2) else { return };
    let sink = spawn_sink(&rt, &g, "sink", 1);
    let (rate, burst) = (2000u64, 200u32);
    let flooder = rt
        .spawn(
            &g,
            SpawnOptions::new("flooder")
                .config("ops")
                .shard(0)
                .grants(Grants::none().send(["sink"]))
                .rate(Some(Rate::new(rate, burst))),
        )
        .unwrap();
    let free = spawn_ops(&rt, &g, "free", 0, Grants::none().send(["sink"]));
    let start = Instant::now();
    let (mut ok, mut limited, mut free_ok) = (0u64, 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(1) {
        let [o, d, l, x] = flood(&rt, flooder, sink, 100);
        assert_eq!([d, x], [0, 0]);
        ok += u64::from(o);
        limited += u64::from(l);
        let [o, d, l, x] = flood(&rt, free, sink, 100);
        assert_eq!(
            [o, d, l, x],
            [100, 0, 0, 0],
            "the other actor is unaffected"
        );
        free_ok += u64::from(o);
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = f64::from(burst) + rate as f64 * elapsed;
    assert!(
        (0.9 * allowed..=1.1 * allowed).contains(&(ok as f64)),
        "{ok} tells in {elapsed:.3} s at {rate}/s with a burst of {burst}"
    );
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    let f = stats.actor("flooder").unwrap();
    assert_eq!((f.sent, f.rate_limited), (ok, limited));
    assert!(limited > 0);
    let usage = f.rate.expect("a quota");
    assert_eq!(usage.limit, Rate::new(rate, burst));
    assert!(usage.available <= u64::from(burst));
    assert_eq!(stats.actor("free").unwrap().rate_limited, 0);
    assert_eq!(received(&rt, "sink"), ok + free_ok);
}

#[test]
fn the_burst_is_honoured_and_a_quota_change_takes_effect() {
    let Some((rt, g)) = rig(1) else { return };
    let sink = spawn_sink(&rt, &g, "sink", 0);
    let ops = rt
        .spawn(
            &g,
            SpawnOptions::new("limited")
                .config("ops")
                .grants(Grants::none().send(["sink"]))
                .rate(Some(Rate::new(1, 20))),
        )
        .unwrap();
    assert_eq!(
        flood(&rt, ops, sink, 100),
        [20, 0, 80, 0],
        "the burst, then refusals"
    );
    // Messages to itself are not limited.
    assert_eq!(op(&rt, ops, b"m"), [OK]);
    rt.set_rate(ops, Some(Rate::new(1, 5))).unwrap();
    assert_eq!(
        flood(&rt, ops, sink, 10),
        [5, 0, 5, 0],
        "a new quota, a new burst"
    );
    rt.set_rate(ops, None).unwrap();
    assert_eq!(flood(&rt, ops, sink, 1000), [1000, 0, 0, 0], "lifted");
    assert!(rt.stats().actor("limited").unwrap().rate.is_none());
    assert!(rt.wait_idle(IDLE));
    assert_eq!(received(&rt, "sink"), 1025);
    assert_eq!(rt.stats().actor("limited").unwrap().rate_limited, 85);
    // Bad quotas and targets are refused clearly.
    assert!(matches!(
        rt.set_rate(ops, Some(Rate::new(0, 1))),
        Err(QuotaError::Invalid(_))
    ));
    rt.stop(sink).unwrap();
    assert!(matches!(
        rt.set_rate(sink, None),
        Err(QuotaError::UnknownTarget(_))
    ));
    let err = rt
        .spawn(
            &g,
            SpawnOptions::new("bad")
                .config("ops")
                .rate(Some(Rate::new(10, 0))),
        )
        .unwrap_err();
    assert!(matches!(err, SpawnError::Policy(_)), "{err}");
    // A denied send costs its quota: an actor with a quota cannot fill the
    // audit trail faster than it may send.
    let target = spawn_sink(&rt, &g, "target", 0);
    let denied = rt
        .spawn(
            &g,
            SpawnOptions::new("denied")
                .config("ops")
                .rate(Some(Rate::new(1, 5))),
        )
        .unwrap();
    assert_eq!(flood(&rt, denied, target, 100), [0, 5, 95, 0]);
    assert_eq!(rt.audit().len(), 5);
}

#[test]
fn a_refused_send_is_reported_with_the_right_error_from_a_native_context() {
    // The host and native actors are never denied; a quota set on a native
    // actor limits it like a component.
    let Some((rt, g)) = rig(1) else { return };
    let sink = spawn_sink(&rt, &g, "sink", 0);
    let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = results.clone();
    let native = rt
        .spawn_native(
            "native",
            Some(0),
            move |ctx: &mut wasmshard::Context<'_>, _, _: &[u8]| {
                let mut r = seen.lock().unwrap();
                for _ in 0..5 {
                    r.push(ctx.send(sink, b"n"));
                }
            },
        )
        .unwrap();
    rt.set_rate(native, Some(Rate::new(1, 3))).unwrap();
    rt.send(native, b"go").unwrap();
    assert!(rt.wait_idle(IDLE));
    let r = results.lock().unwrap().clone();
    assert_eq!(
        r,
        [
            Ok(()),
            Ok(()),
            Ok(()),
            Err(SendError::TooManyRequests),
            Err(SendError::TooManyRequests)
        ]
    );
}

#[test]
fn grants_hold_while_other_spawns_bring_and_free_patterns() {
    // Patterns come and go (each spawn below brings a new one and frees it
    // when stopped, so labels are marked on live actors, freed and reused)
    // while a sender on another shard keeps sending: its grant never fails
    // a target it names and never lets it reach one it does not.
    let Some((rt, g)) = rig(2) else { return };
    let named: Vec<Address> = (0..4)
        .map(|i| spawn_sink(&rt, &g, &format!("t-{i}"), 1))
        .collect();
    let other = spawn_sink(&rt, &g, "u-0", 1);
    let sender = spawn_ops(&rt, &g, "s", 0, Grants::none().send(["t-*"]));
    let rt = std::sync::Arc::new(rt);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (rt, g, stop) = (rt.clone(), g.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Patterns that match the targets, the other, or nothing.
                let patterns = [format!("t-{}*", n % 4), format!("u-*{n}"), format!("*-{n}")];
                let a = spawn_ops(&rt, &g, &format!("churn-{n}"), (n % 2) as usize, {
                    Grants::none().send(patterns).lookup(["*"])
                });
                rt.stop(a).unwrap();
                n += 1;
            }
            n
        })
    };
    for _ in 0..200 {
        for &t in &named {
            assert_eq!(flood(&rt, sender, t, 5), [5, 0, 0, 0]);
        }
        assert_eq!(flood(&rt, sender, other, 5), [0, 5, 0, 0]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let spawned = churn.join().unwrap();
    assert!(spawned > 0);
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().actor("s").unwrap().sent, 200 * 4 * 5);
}

#[test]
fn a_restricted_sender_cannot_tell_live_actors_from_dead_or_forged_addresses() {
    for (sender_shard, target_shard) in [(0, 0), (0, 1)] {
        let Some((rt, g)) = rig(2) else { return };
        let live = spawn_sink(&rt, &g, "live", target_shard);
        let gone = spawn_sink(&rt, &g, "gone", target_shard);
        let mine = spawn_sink(&rt, &g, "mine", target_shard);
        let prober = spawn_ops(
            &rt,
            &g,
            "prober",
            sender_shard,
            Grants::none().send(["mine"]),
        );
        rt.stop(gone).unwrap();
        rt.stop(mine).unwrap();
        // A live actor it may not reach, a dead one it could not have reached,
        // a slot never used, a shard that does not exist: all alike.
        let forged = [
            live,
            gone,
            Address::from_bits(live.to_bits() + (20 << 32)),
            Address::from_bits(((target_shard as u64) << 56) | (30 << 32) | 1),
            Address::from_bits((200 << 56) | 1),
        ];
        for a in forged {
            assert_eq!(send(&rt, prober, a), DENIED, "{a}");
        }
        // What it was granted, now gone: it may learn that.
        assert_eq!(send(&rt, prober, mine), UNKNOWN_TARGET);
        // An actor granted `*` learns unknown-target, as before grants.
        let trusted = spawn_ops(&rt, &g, "trusted", sender_shard, Grants::all());
        for a in &forged[1..] {
            assert_eq!(send(&rt, trusted, *a), UNKNOWN_TARGET, "{a}");
        }
        assert_eq!(send(&rt, trusted, live), OK);
        // The probes are in the audit trail.
        assert_eq!(rt.audit().len(), forged.len());
        assert_eq!(
            rt.stats().actor("prober").unwrap().denied,
            forged.len() as u64
        );
    }
}

#[test]
fn a_reused_label_carries_nothing_of_its_old_pattern() {
    // A label freed with its pattern and given to a new one: the dead slot that
    // carried the old pattern must not answer the new pattern's holder
    // `unknown-target` (that would tell it the address is dead, not merely
    // out of its reach).
    let Some((rt, g)) = rig(1) else { return };
    let old = spawn_ops(&rt, &g, "old", 0, Grants::none().send(["x-*"]));
    let x = spawn_sink(&rt, &g, "x-1", 0);
    assert_eq!(send(&rt, old, x), OK);
    rt.stop(x).unwrap();
    assert_eq!(
        send(&rt, old, x),
        UNKNOWN_TARGET,
        "it may learn its target is gone"
    );
    rt.stop(old).unwrap();
    // `x-*`'s label is free; `y` takes it.
    let prober = spawn_ops(&rt, &g, "prober", 0, Grants::none().send(["y"]));
    assert_eq!(send(&rt, prober, x), DENIED);
    let y = spawn_sink(&rt, &g, "y", 0);
    assert_eq!(send(&rt, prober, y), OK);
}

/// Denials of operations that send nothing (a `lookup` its grants hide, a
/// `stop` or `monitor` refused) cost the quota as a denied send does: an
/// actor with a quota records at most what the quota allows in the audit
/// trail, and the rest are counted only (they were recorded without limit,
/// so a prober could push every other denial out of the trail).
#[test]
fn denials_that_send_nothing_are_recorded_within_the_quota() {
    let Some((rt, g)) = rig(1) else { return };
    spawn_sink(&rt, &g, "secret", 0);
    let prober = rt
        .spawn(
            &g,
            SpawnOptions::new("prober")
                .config("ops")
                .shard(0)
                .grants(Grants::none())
                .rate(Some(Rate::new(1, 1))),
        )
        .unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(lookup(&rt, prober, "secret"), None);
    }
    // At 1 a second (burst 1), what may be recorded in the time it took.
    let allowed = 2 + started.elapsed().as_secs();
    let recorded = rt.audit().iter().filter(|d| d.from == prober).count() as u64;
    assert!(
        (1..=allowed).contains(&recorded),
        "{recorded} denials recorded"
    );
    // Its stats are published as its turn ends, after it answered.
    assert!(rt.wait_idle(Duration::from_secs(10)));
    assert_eq!(rt.stats().actor("prober").unwrap().denied, 20);
}

/// Each shard's actors keep their own `audit_capacity` of denials: a flood
/// on one shard does not push another shard's out of `Runtime::audit` (it
/// kept the last `audit_capacity` of all shards together).
#[test]
fn one_shards_denials_do_not_push_out_anothers() {
    let rt = Runtime::builder()
        .shards(2)
        .max_actors(8)
        .audit_capacity(4)
        .build()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let target = spawn_sink(&rt, &g, "target", 0);
    let quiet = spawn_ops(&rt, &g, "quiet", 1, Grants::none());
    let loud = spawn_ops(&rt, &g, "loud", 0, Grants::none());
    assert_eq!(send(&rt, quiet, target), DENIED);
    for _ in 0..10 {
        assert_eq!(send(&rt, loud, target), DENIED);
    }
    let audit = rt.audit();
    assert_eq!(audit.iter().filter(|d| d.from == quiet).count(), 1);
    assert_eq!(audit.iter().filter(|d| d.from == loud).count(), 4);
    // Oldest first.
    assert_eq!(audit[0].from, quiet);
}
