//! The dead-letter actor (`RuntimeBuilder::dead_letter_actor`): every dead
//! letter reaches it with its reason, original sender and target; what it
//! cannot take is counted, never recursed into.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmshard::{Address, Context, DEAD_LETTER_HEADER, Runtime, SpawnOptions};

use crate::support::*;

/// A dead letter as the dead-letter actor gets it: (reason, from, to,
/// original length, payload).
fn parse(bytes: &[u8]) -> (u8, Address, Address, u32, Vec<u8>) {
    assert_eq!(bytes[0], 0x55, "the raw codec's prefix");
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    (
        bytes[1],
        Address::from_bits(word(2)),
        Address::from_bits(word(10)),
        u32::from_le_bytes(bytes[18..22].try_into().unwrap()),
        bytes[DEAD_LETTER_HEADER..].to_vec(),
    )
}

fn dead_letter_sink(rt: &Runtime, shard: usize) -> (Address, Inbox) {
    let inbox: Inbox = Default::default();
    let seen = inbox.clone();
    let a = rt
        .spawn_native(
            "dead",
            Some(shard),
            move |_: &mut Context<'_>, from: Address, payload: &[u8]| {
                seen.lock().unwrap().push((from, payload.to_vec()));
            },
        )
        .unwrap();
    (a, inbox)
}

#[test]
fn a_failed_actors_queued_messages_reach_the_dead_letter_actor() {
    // Manual: every tell is queued before the trap runs.
    let rt = builder(2).dead_letter_actor("dead").build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    // Spawned after the build: found by name when the first dead letter comes
    // (on the other shard: it crosses a ring).
    let (_, inbox) = dead_letter_sink(&rt, 1);
    let trap = rt
        .spawn(&g, SpawnOptions::new("trap").config("trap").shard(0))
        .unwrap();
    for m in [b"panic".as_slice(), b"one", b"two", b"three"] {
        rt.send(trap, m).unwrap();
    }
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let got: Vec<_> = inbox
        .lock()
        .unwrap()
        .iter()
        .map(|(from, bytes)| {
            assert_eq!(*from, Address::HOST);
            parse(bytes)
        })
        .collect();
    let payloads: Vec<&[u8]> = got.iter().map(|g| g.4.as_slice()).collect();
    assert_eq!(payloads, [b"panic".as_slice(), b"one", b"two", b"three"]);
    for (reason, from, to, len, payload) in &got {
        assert_eq!(
            (*reason, *from, *to),
            (1, Address::HOST, trap),
            "target-failed"
        );
        assert_eq!(*len as usize, payload.len());
    }
    let stats = rt.stats();
    let dead: u64 = stats.shards.iter().map(|s| s.dead_letters).sum();
    let refused: u64 = stats.shards.iter().map(|s| s.dead_letters_refused).sum();
    assert_eq!((dead, refused), (4, 0));
    rt.shutdown();
}

#[test]
fn a_full_dead_letter_mailbox_is_counted_and_its_own_dead_letters_not_forwarded() {
    let rt = builder(1)
        .mailbox_capacity(4)
        .dead_letter_actor("dead")
        .build_manual()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let (dead, inbox) = dead_letter_sink(&rt, 0);
    let trap = rt
        .spawn(&g, SpawnOptions::new("trap").config("trap"))
        .unwrap();
    rt.run_until_stalled();
    rt.send(trap, b"panic").unwrap();
    rt.send(trap, b"a").unwrap();
    rt.send(trap, b"b").unwrap();
    rt.send(trap, b"c").unwrap();
    // The dead-letter actor's mailbox is full (4) before the trap fails.
    for _ in 0..4 {
        rt.send(dead, b"filler").unwrap();
    }
    rt.run_until_stalled();
    let stats = rt.stats();
    assert_eq!(stats.shards[0].dead_letters, 4);
    assert_eq!(stats.shards[0].dead_letters_refused, 4, "no room: counted");
    assert_eq!(inbox.lock().unwrap().len(), 4, "the fillers only");
    // Dead letters addressed to the dead-letter actor are not forwarded to it.
    for _ in 0..4 {
        rt.send(dead, b"x").unwrap();
    }
    rt.stop(dead).unwrap();
    // (The host's tells reach the shard in its next pass: after the stop.)
    rt.run_until_stalled();
    let stats = rt.stats();
    assert_eq!(stats.shards[0].dead_letters, 8);
    assert_eq!(stats.shards[0].dead_letters_refused, 8);
    rt.shutdown();
}

#[test]
fn a_manifest_names_its_dead_letter_actor() {
    let text = "[runtime]\nshards = 1\ndead-letter-actor = \"dead\"\n\
                [[actor]]\nname = \"dead\"\ncomponent = \"counter.wat\"\n\
                [[actor]]\nname = \"trap\"\ncomponent = \"trap.wat\"\n\
                [[send]]\nto = \"trap\"\npayload = \"boom\"\nrepeat = 3\n";
    let mut m = wasmshard::manifest::Manifest::parse(text).unwrap();
    m.base = fixture("");
    let report = m.run(m.builder(), None).unwrap();
    // The first `boom` fails the trap; the others are dead letters if they
    // were admitted before that, refused sends if after.
    assert!(report.dead_letters >= 1);
    assert_eq!(report.dead_letters + report.refused_sends, 3);
    let dead = report.actors.iter().find(|a| a.name == "dead").unwrap();
    assert_eq!(
        dead.received, report.dead_letters,
        "each dead letter reached it"
    );
}

/// A dead-letter actor that fails on what it is sent, and is restarted: the
/// dead letter it failed on (addressed to it) is not forwarded to it again,
/// so there is no loop.
#[test]
fn a_failing_dead_letter_actor_is_not_fed_its_own_dead_letters() {
    let rt = builder(1).dead_letter_actor("dead").build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let got = Arc::new(AtomicU64::new(0));
    let seen = got.clone();
    rt.spawn_native_supervised(
        "dead",
        Some(0),
        wasmshard::Restart::on_failure().max_restarts(100),
        move || {
            let seen = seen.clone();
            move |_: &mut Context<'_>, _: Address, _: &[u8]| {
                seen.fetch_add(1, Ordering::Relaxed);
                panic!("the dead-letter actor fails on every message");
            }
        },
    )
    .unwrap();
    let trap = rt
        .spawn(&g, SpawnOptions::new("trap").config("trap"))
        .unwrap();
    rt.send(trap, b"panic").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)), "no loop");
    let stats = rt.stats();
    assert_eq!(
        got.load(Ordering::Relaxed),
        1,
        "the trap's dead letter, once"
    );
    // The trap's dead letter, and the dead-letter actor's own (the letter it
    // failed on), which is counted and not forwarded.
    assert_eq!(stats.shards[0].dead_letters, 2);
    assert_eq!(stats.shards[0].dead_letters_refused, 1);
    rt.shutdown();
}

/// A manifest run's `on_finish` hook runs once the runtime has shut down
/// (what it closes, a bridge say, still served the drain), on a run that
/// ends and on one that fails after the runtime is built.
#[test]
fn a_run_finishes_once_its_runtime_is_shut_down() {
    use wasmshard::manifest::{Manifest, RunOptions};
    for (text, fails) in [
        (
            "[[actor]]\nname = \"c\"\ncomponent = \"counter.wat\"\n",
            false,
        ),
        (
            "[[actor]]\nname = \"c\"\ncomponent = \"no-such-file.wat\"\n",
            true,
        ),
    ] {
        let mut m = Manifest::parse(text).unwrap();
        m.base = fixture("");
        let handle = Arc::new(std::sync::Mutex::new(None));
        let (kept, seen) = (handle.clone(), Arc::new(std::sync::Mutex::new(None)));
        let finished = seen.clone();
        let options = RunOptions::new()
            .on_start(move |rt| {
                *kept.lock().unwrap() = Some(rt.handle());
                Ok(())
            })
            .on_finish(move || {
                let open = handle.lock().unwrap().as_ref().map(|h| h.is_open());
                *finished.lock().unwrap() = Some(open);
            });
        let result = m.run_with(m.builder(), options);
        assert_eq!(result.is_err(), fails);
        // Finished once, with the runtime no longer open.
        assert_eq!(*seen.lock().unwrap(), Some(Some(false)), "{text}");
    }
}

/// The dead letters a shard keeps for the shutdown report keep whole
/// payloads up to 1 MiB in all, then the first 64 bytes of each (with the
/// whole length): a guest's largest messages, undelivered, were each kept
/// whole until shutdown (1 024 × the maximum payload a shard).
#[test]
fn kept_dead_letters_hold_a_bounded_share_of_their_payloads() {
    const BIG: usize = 256 << 10;
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(4)
        .max_payload(BIG)
        .build_manual()
        .unwrap();
    let doomed = rt
        .spawn_native("doomed", Some(0), |_: &mut Context<'_>, _, _: &[u8]| {
            panic!("doomed")
        })
        .unwrap();
    for i in 0..10u8 {
        rt.send(doomed, &vec![i; BIG]).unwrap();
    }
    rt.run_until_stalled();
    let report = rt.shutdown();
    assert_eq!(report.dead_letter_count, 10);
    let kept = &report.dead_letters;
    assert_eq!(kept.len(), 10);
    assert!(kept.iter().all(|d| d.payload_len == BIG));
    // The first four fill the 1 MiB whole; the rest keep 64 bytes each.
    for (i, d) in kept.iter().enumerate() {
        let whole = i < 4;
        assert_eq!(d.payload.len(), if whole { BIG } else { 64 }, "letter {i}");
        assert!(d.payload.iter().all(|&b| b == i as u8));
    }
}

/// A dead-letter actor named what no actor can be named (empty, too long,
/// unprintable) was taken: dead letters were then never forwarded, and
/// nothing said why.
#[test]
fn a_dead_letter_actor_no_spawn_can_make_is_refused() {
    for name in [
        String::new(),
        "a\nb".into(),
        "d".repeat(wasmshard::MAX_NAME_LEN + 1),
    ] {
        let Err(e) = builder(1).dead_letter_actor(name.clone()).build() else {
            panic!("{name:?} was taken");
        };
        assert!(
            matches!(&e, wasmshard::BuildError::Setting(why) if why.contains("dead_letter_actor")),
            "{e:?}"
        );
    }
    builder(1).dead_letter_actor("dlq").build().unwrap();
}

/// A letter forwarded to the dead-letter actor that was replaced before the
/// letter arrived (stopped, and another spawned under the name) was forwarded
/// again, nested in a second header, to the new one: one lost message counted
/// twice, and a forwarded letter forwarded again.
#[test]
fn a_letter_forwarded_to_a_replaced_dead_letter_actor_is_not_forwarded_again() {
    let rt = builder(2).dead_letter_actor("dl").build_manual().unwrap();
    let counter = |n: &Arc<AtomicU64>| {
        let n = n.clone();
        move |_: &mut Context<'_>, _: Address, _: &[u8]| {
            n.fetch_add(1, Ordering::Relaxed);
        }
    };
    let (first, second) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let idle = |_: &mut Context<'_>, _: Address, _: &[u8]| {};
    let dl = rt.spawn_native("dl", Some(0), counter(&first)).unwrap();
    let x = rt.spawn_native("x", Some(1), idle).unwrap();
    let y = rt.spawn_native("y", Some(0), idle).unwrap();
    // X's message becomes a dead letter on shard 1, forwarded to the first
    // dead-letter actor on shard 0: it waits in the ring.
    rt.send(x, b"lost").unwrap();
    rt.stop(x).unwrap();
    rt.step();
    // The first goes, a second takes the name, and Y's dead letter finds it
    // before the letter in the ring arrives at the first's empty slot.
    rt.stop(dl).unwrap();
    rt.spawn_native("dl", Some(0), counter(&second)).unwrap();
    rt.send(y, b"lost too").unwrap();
    rt.stop(y).unwrap();
    rt.run_until_stalled();
    assert_eq!(first.load(Ordering::Relaxed), 0);
    assert_eq!(second.load(Ordering::Relaxed), 1, "Y's, once");
    let stats = rt.stats();
    let refused: u64 = stats.shards.iter().map(|s| s.dead_letters_refused).sum();
    assert_eq!(refused, 1, "the letter for the first");
}
