//! Actors that spawn, stop and watch actors (`wasmshard:actor/lifecycle`),
//! driven through the Rust test guest's `parent` role (`tests/guests/roles`),
//! whose children are the same guest in its `forward collector` role.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmshard::{
    Address, ChildSpawnError, Component, Context, Grants, NativeActor, Operation, RequestError,
    Runtime, SpawnOptions,
};

use crate::support::*;

/// Codes the `parent` role answers with.
const OK: u32 = 0;
const UNKNOWN_COMPONENT: u32 = 1;
const NAME_TAKEN: u32 = 2;
const NO_CAPACITY: u32 = 3;
const SPAWN_DENIED: u32 = 4;
/// A send-error's code: `1 +` its index.
const UNKNOWN_TARGET: u32 = 1;
const DENIED: u32 = 3;

fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Asks the parent to run `command`, stepping the manual runtime until the
/// answer is in.
fn ask(rt: &Runtime, parent: Address, command: &[u8]) -> Vec<u32> {
    let reply = rt
        .request(parent, command, Duration::from_secs(600))
        .unwrap();
    rt.run_until_stalled();
    words(&reply.try_get().expect("answered").expect("a reply"))
}

fn with_address(c: u8, a: Address) -> Vec<u8> {
    let mut v = vec![c];
    v.extend_from_slice(&a.to_bits().to_le_bytes());
    v
}

/// What children need: to find the collector and tell it.
fn parent_grants() -> Grants {
    Grants::none()
        .spawn(["child"])
        .lookup(["collector"])
        .send(["collector"])
}

/// A manual runtime with a collector, the guest registered as `child`, and a
/// parent with `grants`.
fn family(max_actors: u32, grants: Grants) -> Option<(Runtime, Component, Address, Inbox)> {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(max_actors)
        .mailbox_capacity(4096)
        .build_manual()
        .unwrap();
    family_in(rt, grants)
}

/// [`family`], in `rt`.
fn family_in(rt: Runtime, grants: Grants) -> Option<(Runtime, Component, Address, Inbox)> {
    let g = guest(&rt)?;
    assert!(rt.register_component("child", &g).unwrap().is_none());
    let (_, inbox) = probe(&rt, "collector", 0);
    let parent = rt
        .spawn(
            &g,
            SpawnOptions::new("parent")
                .config("parent child")
                .grants(grants),
        )
        .unwrap();
    Some((rt, g, parent, inbox))
}

#[test]
fn a_parent_spawns_messages_stops_and_watches_a_thousand_children() {
    let Some((rt, _, parent, inbox)) = family(1100, parent_grants()) else {
        return;
    };
    for _ in 0..4 {
        assert_eq!(ask(&rt, parent, &[b's', 250, 0, 0, 0]), [250, OK]);
    }
    // Each child started (its init told the collector) before the parent's
    // next message to it: its own children are reachable without a grant.
    assert_eq!(ask(&rt, parent, b"tm1"), [1000, 0]);
    assert_eq!(ask(&rt, parent, b"w"), [1000, OK]);
    let seen = inbox.lock().unwrap().clone();
    let children: std::collections::HashSet<Address> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(children.len(), 1000);
    for (what, n) in [(&b"up"[..], 1000), (b"m1", 1000)] {
        assert_eq!(seen.iter().filter(|(_, p)| p == what).count(), n);
    }
    // Half stopped, half failed: each monitor ends once, with the right error.
    assert_eq!(ask(&rt, parent, b"h"), [500, 0]);
    assert_eq!(ask(&rt, parent, b"p"), [500, 0]);
    rt.run_until_stalled();
    assert_eq!(ask(&rt, parent, b"e"), [500, 500, 0, 0, 0]);
    let stats = rt.stats();
    // The registry is back to the parent and the collector.
    assert_eq!(stats.shards[0].actors, 2);
    assert_eq!(stats.shards[0].requests.monitors, 0);
    assert_eq!(stats.shards[0].requests.open, 0);
    let child = stats
        .actors
        .iter()
        .find(|a| a.name.starts_with("child@"))
        .unwrap();
    assert!(!child.alive);
    // A second round fits in the freed slots.
    assert_eq!(ask(&rt, parent, &[b's', 0xe8, 3, 0, 0]), [1000, OK]);
}

#[test]
fn a_guest_that_spawns_a_child_by_a_name_over_256_bytes_empty_or_unprintable_traps() {
    let long = "w".repeat(wasmshard::MAX_NAME_LEN + 1);
    for (name, fault) in [
        (long.as_str(), "a name of 257 bytes"),
        ("", "an empty name"),
        ("w\n[ERROR] forged", "a name holding '\\n'"),
        ("w\u{202e}x", "a name holding '\\u{202e}'"),
    ] {
        let Some((rt, _, parent, _)) = family(8, parent_grants().lookup(["collector", "w*"]))
        else {
            return;
        };
        // The longest name is a child's.
        let longest = "w".repeat(wasmshard::MAX_NAME_LEN);
        assert_eq!(ask(&rt, parent, format!("S{longest}").as_bytes()), [OK]);
        assert!(rt.lookup(&longest).is_some());
        let reply = rt
            .request(
                parent,
                format!("S{name}").as_bytes(),
                Duration::from_secs(600),
            )
            .unwrap();
        rt.run_until_stalled();
        assert_eq!(reply.try_get(), Some(Err(RequestError::TargetFailed)));
        let stats = rt.stats();
        let p = stats.actors.iter().find(|a| a.name == "parent").unwrap();
        assert!(!p.alive, "{p:?}");
        let why = p.failure.as_deref().unwrap_or_default();
        assert!(why.contains(fault), "{why}");
        if !name.is_empty() {
            assert_eq!(rt.lookup(name), None);
        }
    }
}

#[test]
fn spawn_errors_are_reported_and_leave_nothing_behind() {
    let grants = parent_grants()
        .spawn(["child", "nowhere"])
        .lookup(["collector", "worker"]);
    let Some((rt, _, parent, _)) = family(8, grants) else {
        return;
    };
    assert_eq!(ask(&rt, parent, b"unowhere"), [UNKNOWN_COMPONENT]);
    assert_eq!(ask(&rt, parent, b"uelsewhere"), [SPAWN_DENIED]);
    assert_eq!(ask(&rt, parent, b"Scollector"), [NAME_TAKEN]);
    // A name its lookup grant hides: denied, taken (`parent`) or not, so
    // the spawn does not tell it that the name exists.
    let before = rt.audit().len();
    assert_eq!(ask(&rt, parent, b"Sparent"), [SPAWN_DENIED]);
    assert_eq!(ask(&rt, parent, b"Shidden"), [SPAWN_DENIED]);
    assert_eq!(rt.lookup("hidden"), None);
    let audit = rt.audit();
    assert_eq!(audit.len(), before + 2);
    assert_eq!(audit[before].operation, Operation::Lookup);
    assert_eq!(audit[before].target_name.as_deref(), Some("parent"));
    assert_eq!(audit[before + 1].target_name.as_deref(), Some("hidden"));
    assert_eq!(ask(&rt, parent, b"Sworker"), [OK]);
    assert_eq!(ask(&rt, parent, b"Sworker"), [NAME_TAKEN]);
    assert!(rt.lookup("worker").is_some());
    // Eight actors at most: parent, collector, worker, then five more.
    assert_eq!(ask(&rt, parent, &[b's', 10, 0, 0, 0]), [5, NO_CAPACITY]);
    let stats = rt.stats();
    assert_eq!(stats.shards[0].actors, 8);
    // Stopping one makes room for one.
    let worker = rt.lookup("worker").unwrap();
    assert_eq!(ask(&rt, parent, &with_address(b'x', worker)), [OK]);
    assert_eq!(rt.lookup("worker"), None);
    assert_eq!(ask(&rt, parent, &[b's', 2, 0, 0, 0]), [1, NO_CAPACITY]);
}

#[test]
fn grants_bound_spawning_stopping_and_watching_and_children_inherit_them() {
    // No spawn grant.
    let Some((rt, _, parent, _)) = family(16, Grants::none()) else {
        return;
    };
    assert_eq!(ask(&rt, parent, &[b's', 1, 0, 0, 0]), [0, SPAWN_DENIED]);
    let audit = rt.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].operation, Operation::Spawn);
    // Another actor: not its child, no grant to stop, watch or message it.
    let (other, _) = probe(&rt, "other", 0);
    assert_eq!(ask(&rt, parent, &with_address(b'x', other)), [DENIED]);
    assert_eq!(ask(&rt, parent, &with_address(b'y', other)), [DENIED]);
    assert_eq!(ask(&rt, parent, &with_address(b'z', other)), [DENIED]);
    // A forged address: as for a send, denied (it may not learn what is live).
    let forged = Address::from_bits(other.to_bits() + 7);
    assert_eq!(ask(&rt, parent, &with_address(b'x', forged)), [DENIED]);
    drop(rt);

    // Granted: it may stop and watch `other`; a dead one is unknown-target.
    let grants = parent_grants().stop(["other"]).monitor(["other"]);
    let Some((rt, _, parent, _)) = family(16, grants) else {
        return;
    };
    let (other, _) = probe(&rt, "other", 0);
    assert_eq!(ask(&rt, parent, &with_address(b'y', other)), [OK]);
    assert_eq!(ask(&rt, parent, &with_address(b'x', other)), [OK]);
    assert_eq!(rt.lookup("other"), None);
    assert_eq!(ask(&rt, parent, b"e"), [1, 0, 0, 0, 0]);
    assert_eq!(
        ask(&rt, parent, &with_address(b'x', other)),
        [UNKNOWN_TARGET]
    );
    drop(rt);

    // Children inherit the parent's grants: without `send` to the collector
    // a child's init cannot announce itself, and the child does not start.
    let grants = Grants::none().spawn(["child"]).lookup(["collector"]);
    let Some((rt, _, parent, inbox)) = family(16, grants) else {
        return;
    };
    // Spawned and watched in one call: the address is its at once.
    assert_eq!(ask(&rt, parent, &[b'm', 1, 0, 0, 0]), [1, 1]);
    rt.run_until_stalled();
    assert!(inbox.lock().unwrap().is_empty());
    // Gone by the next call.
    assert_eq!(ask(&rt, parent, b"w"), [0, UNKNOWN_TARGET]);
    let denial = rt.audit().pop().unwrap();
    assert!(denial.from_name.starts_with("child@"), "{denial:?}");
    assert_eq!(denial.target_name.as_deref(), Some("collector"));
    // The child that did not start: its monitor ended target-failed.
    assert_eq!(ask(&rt, parent, b"e"), [0, 1, 0, 0, 0]);
    assert_eq!(rt.stats().shards[0].actors, 2);
}

/// How a native actor's monitors ended.
type Ends = Arc<Mutex<Vec<Result<Vec<u8>, RequestError>>>>;

/// A native actor that spawns one child, watches it, stops it, and records
/// how the watch ended.
struct Nanny {
    ends: Ends,
}

impl NativeActor for Nanny {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        match payload {
            b"go" => {
                let child = ctx
                    .spawn("child", Some("kid"), b"forward collector")
                    .unwrap();
                ctx.monitor(child).unwrap();
                assert_eq!(
                    ctx.spawn("nowhere", None, b""),
                    Err(ChildSpawnError::UnknownComponent)
                );
                ctx.send(child, b"hello").unwrap();
            }
            b"stop" => {
                let kid = ctx.lookup("kid").unwrap();
                ctx.stop(kid).unwrap();
            }
            _ => {}
        }
    }

    fn handle_response(
        &mut self,
        _: &mut Context<'_>,
        _: u64,
        response: Result<&[u8], RequestError>,
    ) {
        self.ends.lock().unwrap().push(response.map(<[u8]>::to_vec));
    }
}

#[test]
fn a_native_actor_spawns_stops_and_watches_components() {
    let rt = Runtime::builder()
        .shards(2)
        .max_actors(16)
        .default_grants(Grants::none().lookup(["collector"]).send(["collector"]))
        .build_manual()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    rt.register_component("child", &g).unwrap();
    let (_, inbox) = probe(&rt, "collector", 0);
    let ends: Ends = Arc::default();
    let nanny = rt
        .spawn_native(
            "nanny",
            Some(1),
            Nanny {
                ends: Arc::clone(&ends),
            },
        )
        .unwrap();
    rt.send(nanny, b"go").unwrap();
    rt.run_until_stalled();
    let kid = rt.lookup("kid").unwrap();
    assert_eq!(kid.shard(), 1, "children live on their parent's shard");
    let got: Vec<Vec<u8>> = inbox
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(got, [b"up".to_vec(), b"hello".to_vec()]);
    rt.send(nanny, b"stop").unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.lookup("kid"), None);
    assert_eq!(*ends.lock().unwrap(), [Err(RequestError::TargetStopped)]);
}

/// A child gets its parent's quota (a rate-limited actor cannot send past its
/// quota through children it spawns).
#[test]
fn children_inherit_their_parents_quota() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(16)
        .build_manual()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    rt.register_component("child", &g).unwrap();
    let (_, _) = probe(&rt, "collector", 0);
    let parent = rt
        .spawn(
            &g,
            SpawnOptions::new("parent")
                .config("parent child")
                .grants(parent_grants())
                .rate(Some(wasmshard::Rate::new(1000, 10))),
        )
        .unwrap();
    assert_eq!(ask(&rt, parent, &[b's', 1, 0, 0, 0]), [1, OK]);
    let stats = rt.stats();
    let child = stats
        .actors
        .iter()
        .find(|a| a.name.starts_with("child@"))
        .unwrap();
    assert_eq!(child.rate.unwrap().limit, wasmshard::Rate::new(1000, 10));
}

/// Watches that end on the watcher's side (cancelled) are forgotten by the
/// target: a loop of monitor and cancel grew the target's list without
/// bound, and its end sent one late notice per cancelled watch.
#[test]
fn a_cancelled_watch_is_forgotten_by_its_target() {
    let rt = Runtime::builder()
        .shards(2)
        .max_actors(16)
        .build_manual()
        .unwrap();
    let (target, _) = probe(&rt, "target", 1);
    let watcher = rt
        .spawn_handler(
            "watcher",
            Some(0),
            move |ctx: &mut Context<'_>, _: Address, _: &[u8]| {
                for _ in 0..100 {
                    let id = ctx.monitor(target).unwrap();
                    assert!(ctx.cancel(id));
                }
            },
        )
        .unwrap();
    rt.send(watcher, b"go").unwrap();
    rt.run_until_stalled();
    rt.stop(target).unwrap();
    rt.run_until_stalled();
    let stats = rt.stats();
    assert_eq!(stats.shards[0].requests.late, 0);
    assert_eq!(stats.shards[0].requests.monitors, 0);
    assert_eq!(
        stats.shards[0].requests.cancelled, 0,
        "a watch is not a request"
    );
}

#[test]
fn a_loop_of_watches_cancelled_or_stops_repeated_stages_nothing_more() {
    let Some((rt, _, parent, _inbox)) = family(16, parent_grants()) else {
        return;
    };
    assert_eq!(ask(&rt, parent, &[b's', 1, 0, 0, 0]), [1, OK]);
    let child = rt
        .stats()
        .actors
        .iter()
        .find(|a| a.name.starts_with("child@"))
        .unwrap()
        .address;
    let routed = |rt: &Runtime| rt.stats().shards[0].routed_local;
    let command = |c: u8, n: u32| {
        let mut v = with_address(c, child);
        v.extend_from_slice(&n.to_le_bytes());
        v
    };
    // What a command routes besides what it makes (the request, its answer).
    let before = routed(&rt);
    assert_eq!(ask(&rt, parent, &command(b'k', 0)), [0, 0]);
    let base = routed(&rt) - before;
    // A watch made and cancelled in the same call is never sent: the call
    // routes nothing more, however many times it loops.
    let before = routed(&rt);
    assert_eq!(
        ask(&rt, parent, &command(b'k', 100_000)),
        [100_000, 100_000]
    );
    assert_eq!(routed(&rt) - before, base);
    assert_eq!(rt.stats().shards[0].requests.monitors, 0);
    // A watch made in one call and cancelled in a later one is forgotten by
    // its target.
    assert_eq!(ask(&rt, parent, &with_address(b'y', child)), [OK]);
    assert_eq!(rt.stats().shards[0].requests.monitors, 1);
    // Stops of one target in one call: one stop.
    let before = routed(&rt);
    assert_eq!(ask(&rt, parent, &command(b'K', 100_000)), [100_000]);
    // One stop, and the end of the watch made above.
    assert_eq!(routed(&rt) - before, base + 2);
    rt.run_until_stalled();
    assert!(
        !rt.stats()
            .actors
            .iter()
            .any(|a| a.address == child && a.alive)
    );
    assert_eq!(ask(&rt, parent, b"e"), [1, 0, 0, 0, 0]);
}

/// Children whose `init`s are slow do not hold their shard for all of them:
/// once a pass has run its time, the rest start in later passes, between the
/// turns of actors already running. What their parent sent them waits for
/// each and comes after what its `init` sent; a child whose `init` fails
/// ends what waited for it as for a failed actor.
#[test]
fn slow_children_start_between_turns_and_get_what_their_parent_sent() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(64)
        .mailbox_capacity(4096)
        .build()
        .unwrap();
    let Some((rt, g, parent, inbox)) = family_in(rt, parent_grants()) else {
        return;
    };
    // Another parent, whose child reports to `quick`, which records in the
    // collector's inbox what it is told, marked as its.
    let marked = inbox.clone();
    rt.spawn_native(
        "quick",
        Some(0),
        move |_: &mut Context<'_>, from: Address, payload: &[u8]| {
            let mut said = b"quick ".to_vec();
            said.extend_from_slice(payload);
            marked.lock().unwrap().push((from, said));
        },
    )
    .unwrap();
    let other = rt
        .spawn(
            &g,
            SpawnOptions::new("other").config("parent child").grants(
                Grants::none()
                    .spawn(["child"])
                    .lookup(["quick"])
                    .send(["quick"]),
            ),
        )
        .unwrap();
    // Each `init` is busy for 5 ms: more than a pass's two epoch ticks.
    const N: u32 = 12;
    let ask = |parent: Address, n: u32, config: &str| {
        let mut command = vec![b'c'];
        command.extend_from_slice(&n.to_le_bytes());
        command.extend_from_slice(config.as_bytes());
        rt.request(parent, &command, Duration::from_secs(60))
            .unwrap()
    };
    let answer = |reply: wasmshard::PendingReply| {
        words(&reply.wait(Duration::from_secs(60)).unwrap().unwrap())
    };
    let spawn = |config: &str| answer(ask(parent, N, config));
    // Another actor's child, spawned while those wait, does not wait for
    // all of them: families of children take turns.
    let slow = ask(parent, N, "slow-forward 5 collector");
    let quick = ask(other, 1, "slow-forward 0 quick");
    assert_eq!(answer(slow), [N, OK, N]);
    assert_eq!(answer(quick), [1, OK, 1]);
    eventually("every child's two messages", || {
        inbox.lock().unwrap().len() == 2 * (N + 1) as usize
    });
    let mut seen = inbox.lock().unwrap().clone();
    let mut children: Vec<Address> = seen.iter().map(|(from, _)| *from).collect();
    children.sort();
    children.dedup();
    assert_eq!(children.len(), N as usize + 1);
    let quick_up = seen.iter().position(|(_, p)| p == b"quick up").unwrap();
    let quick_child = seen[quick_up].0;
    let last_slow_up = seen.iter().rposition(|(_, p)| p == b"up").unwrap();
    assert!(quick_up < last_slow_up, "{seen:?}");
    seen.retain(|(from, _)| *from != quick_child);
    children.retain(|c| *c != quick_child);
    for child in children {
        let said: Vec<&[u8]> = seen
            .iter()
            .filter(|(from, _)| *from == child)
            .map(|(_, p)| p.as_slice())
            .collect();
        assert_eq!(said, [&b"up"[..], b"hi"], "{child}");
    }
    // The first child handled its message before the last one started: the
    // shard ran turns between the children's `init`s.
    let first_hi = seen.iter().position(|(_, p)| p == b"hi").unwrap();
    let last_up = seen.iter().rposition(|(_, p)| p == b"up").unwrap();
    assert!(first_hi < last_up, "{seen:?}");
    // Children that fail their (slow) `init`: what their parent sent them
    // waited for them and is a dead letter for a failed target.
    assert_eq!(spawn("slow-forward 5 nobody"), [N, OK, N]);
    assert!(rt.wait_idle(IDLE));
    let report = rt.shutdown();
    let failed: Vec<_> = report
        .dead_letters
        .iter()
        .filter(|d| d.from == parent && d.payload == b"hi")
        .map(|d| d.reason)
        .collect();
    assert_eq!(failed.len(), N as usize, "{:?}", report.dead_letters);
    assert!(
        failed
            .iter()
            .all(|r| *r == wasmshard::DeadLetterReason::TargetFailed),
        "{failed:?}"
    );
}

/// A shutdown (with no drain) while children wait to start: the children
/// that never started are undone, and every message their parent sent them is
/// delivered (to one that started, which forwards it) or a dead letter.
#[test]
fn a_shutdown_while_children_wait_to_start_counts_what_was_sent_them() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(64)
        .mailbox_capacity(4096)
        .drain_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let Some((rt, _g, parent, inbox)) = family_in(rt, parent_grants()) else {
        return;
    };
    const N: u32 = 40;
    let mut command = vec![b'c'];
    command.extend_from_slice(&N.to_le_bytes());
    command.extend_from_slice(b"slow-forward 20 collector");
    let reply = rt
        .request(parent, &command, Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        words(&reply.wait(Duration::from_secs(60)).unwrap().unwrap()),
        [N, OK, N]
    );
    let report = rt.shutdown();
    let forwarded = inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p)| p == b"hi")
        .count();
    let lost = report
        .dead_letters
        .iter()
        .filter(|d| d.payload == b"hi")
        .count();
    assert_eq!(forwarded + lost, N as usize, "{:?}", report.dead_letters);
    assert!(
        lost > 0,
        "some children were still waiting: {forwarded} forwarded"
    );
}
