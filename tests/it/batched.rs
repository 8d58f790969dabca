//! Batched actors (`wasmshard:actor/batch`, world `batched`): a run of an
//! actor's queued plain messages in one `handle-messages` call. Driven
//! through the SDK's batcher (`tests/guests/batcher`, exported with
//! `export_actor!(…, batched)`): order within and across batches and shards,
//! runs ended by requests and traced messages, a trap mid-batch (every
//! message of the batch a dead letter, in order; what it sent before the
//! trap delivered), a supervised restart after one, a full mailbox, the CPU
//! budget, and the message log.

use std::time::Duration;

use wasmshard::codec::{self, Bytes};
use wasmshard::{Address, Context, DeadLetterReason, Restart, Runtime, SpawnOptions, TraceContext};

use crate::support::*;

/// `bytes` with the raw codec's prefix, as the SDK actor reads it.
fn raw(bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![0x55];
    v.extend_from_slice(bytes);
    v
}

/// A sequenced message: `[key u32][seq u32]`.
fn seq(key: u32, n: u32) -> Vec<u8> {
    let mut v = key.to_le_bytes().to_vec();
    v.extend_from_slice(&n.to_le_bytes());
    raw(&v)
}

/// A native actor that, told anything by the host, sends `script` to `to`
/// in that one turn (so the messages are queued together); it records what
/// else it gets. Returns its address and what it got.
fn sender(
    rt: &Runtime,
    name: &str,
    shard: usize,
    to: Address,
    script: Vec<Vec<u8>>,
) -> (Address, Inbox) {
    let inbox: Inbox = Default::default();
    let seen = inbox.clone();
    let me = rt
        .spawn_native(
            name,
            Some(shard),
            move |ctx: &mut Context<'_>, from: Address, payload: &[u8]| {
                if from == Address::HOST {
                    for m in &script {
                        ctx.send(to, m).expect("admitted");
                    }
                } else {
                    seen.lock().unwrap().push((from, payload.to_vec()));
                }
            },
        )
        .unwrap();
    (me, inbox)
}

/// The batcher's counts: [sequenced, out of order, other, echoed].
fn counts(rt: &Runtime, b: Address) -> [u64; 4] {
    let reply = rt
        .request(b, &raw(b"get"), Duration::from_secs(600))
        .unwrap();
    rt.run_until_stalled();
    let bytes = reply.try_get().expect("answered").expect("a reply");
    let Bytes(r) = codec::decode(&bytes).unwrap();
    std::array::from_fn(|i| u64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().unwrap()))
}

/// (`handle-messages` calls, messages they carried) over every shard.
fn batches(rt: &Runtime) -> (u64, u64) {
    let s = rt.stats();
    (
        s.shards.iter().map(|s| s.batches).sum(),
        s.shards.iter().map(|s| s.batched).sum(),
    )
}

#[test]
fn queued_messages_come_in_batches_of_a_turn_in_order() {
    let rt = builder(1).build_manual().unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    // Two senders' sequences interleaved: 200 messages queued at once.
    let script = (0..200).map(|i| seq(i % 2, i / 2)).collect();
    let (s, _) = sender(&rt, "s", 0, b, script);
    rt.send(s, b"go").unwrap();
    rt.run_until_stalled();
    // 64 a turn (the runtime's batch): 64, 64, 64 and 8.
    assert_eq!(batches(&rt), (4, 200));
    let a = rt.stats().actor("b").unwrap().clone();
    assert_eq!((a.received, a.handled), (200, 200));
    assert_eq!(counts(&rt, b), [200, 0, 0, 0]);
    // A lone message goes through `handle-message`: no batch.
    rt.send(b, &seq(0, 100)).unwrap();
    rt.run_until_stalled();
    assert_eq!(batches(&rt), (4, 200));
    assert_eq!(counts(&rt, b), [201, 0, 0, 0]);
}

#[test]
fn the_runtime_batch_size_bounds_a_batch() {
    let rt = builder(1).batch(5).build_manual().unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    let (s, _) = sender(&rt, "s", 0, b, (0..12).map(|i| seq(7, i)).collect());
    rt.send(s, b"go").unwrap();
    rt.run_until_stalled();
    // 5, 5, then 2.
    assert_eq!(batches(&rt), (3, 12));
    assert_eq!(counts(&rt, b), [12, 0, 0, 0]);
}

#[test]
fn requests_and_traced_messages_end_a_run_and_keep_their_place() {
    let rt = builder(1).build_manual().unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    // All queued before the actor runs: 10 tells, a request, 5 tells, a
    // traced tell, 5 tells.
    for i in 0..10 {
        rt.send(b, &seq(0, i)).unwrap();
    }
    let reply = rt
        .request(b, &raw(b"get"), Duration::from_secs(600))
        .unwrap();
    for i in 10..15 {
        rt.send(b, &seq(0, i)).unwrap();
    }
    let parent = TraceContext::new(1, 2).unwrap();
    rt.send_traced(b, &seq(0, 15), parent).unwrap();
    for i in 16..21 {
        rt.send(b, &seq(0, i)).unwrap();
    }
    rt.run_until_stalled();
    // The request saw exactly the ten before it.
    let Bytes(r) = codec::decode(&reply.try_get().unwrap().unwrap()).unwrap();
    assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), 10);
    // Three runs (10, 5, 5); the traced one came alone.
    assert_eq!(batches(&rt), (3, 20));
    assert_eq!(rt.stats().shards[0].traced, 1);
    assert_eq!(counts(&rt, b), [21, 0, 0, 0]);
}

#[test]
fn order_holds_across_batches_and_shards() {
    let rt = builder(2).mailbox_capacity(2048).build_manual().unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("b").shard(1)).unwrap();
    // A sender on each shard, 1 000 each; they cross a ring or not.
    let (s0, _) = sender(&rt, "s0", 0, b, (0..1000).map(|i| seq(0, i)).collect());
    let (s1, _) = sender(&rt, "s1", 1, b, (0..1000).map(|i| seq(1, i)).collect());
    for _ in 0..3 {
        rt.send(s0, b"go").unwrap();
        rt.send(s1, b"go").unwrap();
        rt.run_until_stalled();
    }
    // Each round's 1 000 of a key follow the last round's: 0..1000 again
    // counts one break per key per round after the first.
    let [sequenced, out_of_order, ..] = counts(&rt, b);
    assert_eq!((sequenced, out_of_order), (6000, 4));
    let (calls, carried) = batches(&rt);
    assert!(calls > 0 && carried > 5000, "{calls} batches of {carried}");
    assert_eq!(rt.stats().actor("b").unwrap().handled, 6001);
}

#[test]
fn a_trap_mid_batch_makes_every_message_of_the_batch_a_dead_letter() {
    let rt = builder(1).build_manual().unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    let script = vec![
        seq(0, 0),
        seq(0, 1),
        raw(b"echo, the first"),
        raw(b"poison"),
        seq(0, 2),
        raw(b"echo, the second"),
    ];
    let (s, echoes) = sender(&rt, "s", 0, b, script.clone());
    rt.send(s, b"go").unwrap();
    rt.run_until_stalled();
    // What it sent before the trap went out; nothing after it.
    assert_eq!(*echoes.lock().unwrap(), vec![(b, raw(b"echo, the first"))]);
    let stats = rt.stats();
    let a = stats.actor("b").unwrap();
    assert!(!a.alive);
    assert_eq!((a.received, a.handled, a.failures), (6, 0, 1));
    let failure = a.failure.clone().unwrap();
    assert!(failure.contains("poisoned by"), "{failure}");
    assert_eq!(batches(&rt), (1, 6));
    let report = rt.shutdown();
    assert_eq!(report.dead_letter_count, 6);
    let dead: Vec<_> = report
        .dead_letters
        .iter()
        .map(|d| (d.from, d.to, d.reason, d.payload.clone()))
        .collect();
    let expected: Vec<_> = script
        .into_iter()
        .map(|p| (s, b, DeadLetterReason::TargetFailed, p))
        .collect();
    assert_eq!(dead, expected);
}

#[test]
fn a_failed_batchs_dead_letters_come_before_the_rest_of_the_mailbox() {
    let rt = builder(1).build_manual().unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    // 70 queued: the first batch (64, the poison fifth) fails; the 6 left
    // follow as dead letters of the failed actor, in order.
    let mut script: Vec<_> = (0..4).map(|i| seq(0, i)).collect();
    script.push(raw(b"poison"));
    script.extend((4..69).map(|i| seq(0, i)));
    let (s, _) = sender(&rt, "s", 0, b, script.clone());
    rt.send(s, b"go").unwrap();
    rt.run_until_stalled();
    assert_eq!(batches(&rt), (1, 64));
    let report = rt.shutdown();
    let dead: Vec<_> = report
        .dead_letters
        .iter()
        .map(|d| (d.reason, d.payload.clone()))
        .collect();
    let expected: Vec<_> = script
        .into_iter()
        .map(|p| (DeadLetterReason::TargetFailed, p))
        .collect();
    assert_eq!(dead, expected);
}

#[test]
fn a_turns_last_message_is_not_a_batch_of_one() {
    // Batch 3: two requests, then two tells. The first tell is the turn's
    // third message, with no room for a second: it goes alone, as does the
    // other on the next turn.
    let rt = builder(1).batch(3).build_manual().unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    let r1 = rt
        .request(b, &raw(b"get"), Duration::from_secs(600))
        .unwrap();
    let r2 = rt
        .request(b, &raw(b"get"), Duration::from_secs(600))
        .unwrap();
    rt.send(b, &seq(0, 0)).unwrap();
    rt.send(b, &seq(0, 1)).unwrap();
    rt.run_until_stalled();
    assert!(r1.try_get().is_some() && r2.try_get().is_some());
    assert_eq!(batches(&rt), (0, 0));
    assert_eq!(counts(&rt, b), [2, 0, 0, 0]);
}

#[test]
fn a_stop_of_itself_takes_effect_when_the_batch_returns() {
    let rt = builder(1).build_manual().unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    // 70 queued, `quit` second: the first batch (64) is handled whole, the
    // stop takes effect when its call returns, and the 6 left are dead
    // letters (`target-stopped`), in order.
    let mut script = vec![seq(0, 0), raw(b"quit")];
    script.extend((1..69).map(|i| seq(0, i)));
    let (s, _) = sender(&rt, "s", 0, b, script.clone());
    rt.send(s, b"go").unwrap();
    rt.run_until_stalled();
    assert_eq!(batches(&rt), (1, 64));
    let report = rt.shutdown();
    let a = report.stats.actor("b").unwrap();
    assert_eq!((a.alive, a.handled, a.failures), (false, 64, 0));
    let dead: Vec<_> = report
        .dead_letters
        .iter()
        .map(|d| (d.reason, d.payload.clone()))
        .collect();
    let expected: Vec<_> = script[64..]
        .iter()
        .map(|p| (DeadLetterReason::TargetStopped, p.clone()))
        .collect();
    assert_eq!(dead, expected);
}

#[test]
fn a_restarted_actor_gets_what_was_queued_after_the_failed_batch() {
    let rt = builder(1).build_manual().unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt
        .spawn(&c, SpawnOptions::new("b").restart(Restart::on_failure()))
        .unwrap();
    // 70 queued: the first batch (64, the poison among them) fails whole;
    // the new instance takes the last 6.
    let mut script: Vec<_> = (0..3).map(|i| seq(0, i)).collect();
    script.push(raw(b"poison"));
    script.extend((3..69).map(|i| seq(0, i)));
    let (s, _) = sender(&rt, "s", 0, b, script);
    rt.send(s, b"go").unwrap();
    rt.run_until_stalled();
    assert!(rt.wait_idle(IDLE));
    let a = rt.stats().actor("b").unwrap().clone();
    assert_eq!((a.alive, a.failures, a.restarts), (true, 1, 1));
    assert_eq!(a.handled, 6);
    // The new instance's state: six, starting at 63 (one break).
    assert_eq!(counts(&rt, b), [6, 1, 0, 0]);
    assert_eq!(rt.stats().dead_letters, 64);
    // Every taken message's room came back: the mailbox takes its whole
    // capacity again, and not one more.
    for i in 0..1024 {
        rt.send(b, &seq(9, i))
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
    }
    assert_eq!(
        rt.send(b, &seq(9, 1024)),
        Err(wasmshard::SendError::MailboxFull)
    );
    rt.run_until_stalled();
    assert_eq!(counts(&rt, b), [1030, 1, 0, 0]);
}

#[test]
fn a_full_mailbox_stops_the_frames_and_the_rest_come_in_one_batch() {
    let rt = builder(1).mailbox_capacity(8).build_manual().unwrap();
    let (Some(g), Some(c)) = (guest(&rt), batcher(&rt)) else {
        return;
    };
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    let framer = rt
        .spawn(&g, SpawnOptions::new("framer").config("framer"))
        .unwrap();
    // The framer's command: [0], then [to][len][bytes] per frame.
    let mut cmd = vec![0];
    for i in 0..20 {
        let p = seq(3, i);
        cmd.extend_from_slice(&b.to_bits().to_le_bytes());
        cmd.extend_from_slice(&(p.len() as u32).to_le_bytes());
        cmd.extend_from_slice(&p);
    }
    let reply = rt.request(framer, &cmd, Duration::from_secs(600)).unwrap();
    rt.run_until_stalled();
    let r = reply.try_get().unwrap().unwrap();
    // 8 sent, then mailbox-full (2).
    assert_eq!(&r[..8], &[8, 0, 0, 0, 2, 0, 0, 0]);
    assert_eq!(batches(&rt), (1, 8));
    assert_eq!(counts(&rt, b), [8, 0, 0, 0]);
}

#[test]
fn an_endless_message_in_a_batch_is_cut_by_the_cpu_budget() {
    let rt = builder(1)
        .cpu_budget(Some(Duration::from_millis(20)))
        .build()
        .unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    let (s, _) = sender(&rt, "s", 0, b, vec![seq(0, 0), raw(b"spin"), seq(0, 1)]);
    rt.send(s, b"go").unwrap();
    assert!(rt.wait_idle(IDLE));
    let stats = rt.stats();
    let a = stats.actor("b").unwrap();
    assert!(!a.alive);
    let failure = a.failure.clone().unwrap();
    assert!(failure.contains("CPU budget"), "{failure}");
    assert_eq!(stats.dead_letters, 3);
    assert_eq!(batches(&rt), (1, 3));
}

#[test]
fn an_audited_batched_actor_logs_each_message() {
    message_log();
    let rt = builder(1)
        .log_messages(["audited-batcher"])
        .build_manual()
        .unwrap();
    let Some(c) = batcher(&rt) else { return };
    let b = rt.spawn(&c, SpawnOptions::new("audited-batcher")).unwrap();
    let (s0, _) = sender(&rt, "s0", 0, b, vec![seq(0, 0), seq(0, 1)]);
    let (s1, _) = sender(&rt, "s1", 0, b, vec![seq(1, 0), raw(b"poison"), seq(1, 1)]);
    rt.send(s0, b"go").unwrap();
    rt.run_until_stalled();
    rt.send(s1, b"go").unwrap();
    rt.run_until_stalled();
    assert_eq!(batches(&rt), (2, 5));
    let outcomes: Vec<String> = message_log()
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|v| v["actor"] == "audited-batcher" && v["event"] == "receive")
        .map(|v| v["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    assert!(outcomes[..2].iter().all(|o| o == "handled"), "{outcomes:?}");
    assert!(
        outcomes[2..]
            .iter()
            .all(|o| o.starts_with("failed") && o.contains("poisoned by")),
        "{outcomes:?}"
    );
}

/// A message of `n` bytes, none of them a codec prefix the fixture checks.
fn sized(n: usize) -> Vec<u8> {
    vec![7; n]
}

#[test]
fn a_core_module_exporting_handle_messages_is_a_batched_actor() {
    // `batcount.wat` walks each batch's frames and traps unless they add up
    // to the buffer exactly: every length, empty payloads included.
    let rt = builder(1).build_manual().unwrap();
    let c = load(&rt, "batcount.wat");
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    let (s, _) = sender(&rt, "s", 0, b, (0..100).map(sized).collect());
    rt.send(s, b"go").unwrap();
    rt.run_until_stalled();
    assert_eq!(batches(&rt), (2, 100));
    let reply = rt.request(b, b"", Duration::from_secs(600)).unwrap();
    rt.run_until_stalled();
    let r = reply.try_get().unwrap().unwrap();
    assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), 100);
    let a = rt.stats().actor("b").unwrap().clone();
    assert_eq!((a.handled, a.failures), (101, 0));
}

#[test]
fn a_batch_stays_within_its_byte_bound() {
    // Messages of a quarter of the bytes a call takes, headers included:
    // four fit, the fifth starts the next batch. A message too large to share
    // a call goes alone through `handle-message`.
    let rt = builder(1)
        .max_payload(wasmshard::BATCH_BYTES)
        .build_manual()
        .unwrap();
    let c = load(&rt, "batcount.wat");
    let b = rt.spawn(&c, SpawnOptions::new("b")).unwrap();
    let big = wasmshard::BATCH_BYTES / 4 - 12;
    let mut script: Vec<_> = (0..10).map(|_| sized(big)).collect();
    script.push(sized(wasmshard::BATCH_BYTES));
    script.push(sized(1));
    let (s, _) = sender(&rt, "s", 0, b, script);
    rt.send(s, b"go").unwrap();
    rt.run_until_stalled();
    // 4, 4, 2; then the whole-bound one alone; then the last alone.
    assert_eq!(batches(&rt), (3, 10));
    let a = rt.stats().actor("b").unwrap().clone();
    assert_eq!((a.handled, a.failures), (12, 0));
}

#[test]
fn a_batch_export_of_the_wrong_type_is_refused_at_load() {
    let rt = builder(1).build_manual().unwrap();
    // A core module: its `handle-messages` must fit the world `batched`.
    let text = std::fs::read_to_string(fixture("batcount.wat")).unwrap();
    let extra = text.replace(
        "(param $n i32) (param $ptr i32) (param $len i32)",
        "(param $n i32) (param $ptr i32) (param $len i32) (param $extra i32)",
    );
    assert_ne!(extra, text);
    let err = rt.load_component("wrong", extra.as_bytes()).unwrap_err();
    assert!(err.message().contains("batched"), "{err}");
    // A component whose `batch` interface is not the contract's.
    let wit = wasmshard::WIT.replace(
        "handle-messages: func(count: u32, frames: list<u8>);",
        "handle-messages: func(count: u64, frames: list<u8>);",
    );
    assert_ne!(wit, wasmshard::WIT);
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("actor.wit", &wit).unwrap();
    let world = resolve.select_world(&[pkg], Some("batched")).unwrap();
    // The fixture with a 64-bit count, as that interface lowers it.
    let wrong = text
        .replace(
            "(param $n i32) (param $ptr i32) (param $len i32)",
            "(param $n i64) (param $ptr i32) (param $len i32)",
        )
        .replace(
            "(i32.ge_u (local.get $i) (local.get $n))",
            "(i64.ge_u (i64.extend_i32_u (local.get $i)) (local.get $n))",
        )
        .replace("(i64.extend_i32_u (local.get $n))", "(local.get $n)");
    let mut module = wat::parse_str(&wrong).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    let binary = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .encode()
        .unwrap();
    let err = rt.load_component("wrong", &binary).unwrap_err();
    let message = err.message();
    assert!(
        message.contains("wasmshard:actor/batch@0.1.0#handle-messages")
            && message.contains("func(u32, list<u8>)"),
        "{message}"
    );
}

#[test]
fn an_upgrade_switches_between_batched_and_unbatched_code() {
    let rt = builder(1).build_manual().unwrap();
    let batched = load(&rt, "batcount.wat");
    let single = load(&rt, "counter.wat");
    let b = rt.spawn(&batched, SpawnOptions::new("b")).unwrap();
    let round = |n: usize| {
        let (s, _) = sender(
            &rt,
            &format!("s{}", rt.stats().actors.len()),
            0,
            b,
            (0..n).map(sized).collect(),
        );
        rt.send(s, b"go").unwrap();
        rt.run_until_stalled();
    };
    round(10);
    assert_eq!(batches(&rt), (1, 10));
    // The new code has no `handle-messages`: one call each from now on.
    rt.upgrade(b, &single).unwrap();
    rt.run_until_stalled();
    round(10);
    assert_eq!(batches(&rt), (1, 10));
    // And back.
    rt.upgrade(b, &batched).unwrap();
    rt.run_until_stalled();
    round(10);
    assert_eq!(batches(&rt), (2, 20));
    let a = rt.stats().actor("b").unwrap().clone();
    assert_eq!((a.handled, a.upgrades, a.failures), (30, 2, 0));
}
