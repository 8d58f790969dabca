//! Many sends in one call (`wasmshard:actor/batch-host`, `send-frames`), driven
//! through the Rust test guest's `framer` role (`tests/guests/roles`): each
//! frame is admitted as `send` would admit it, in order; the call stops at the
//! first refusal and says how many went; a malformed buffer traps the caller
//! and sends nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmshard::{
    Address, Context, Grants, Rate, RequestError, Runtime, SpawnOptions, TraceContext,
};

use crate::pattern;
use crate::support::*;

/// What a native sink received: (sender, payload), in order.
type Received = Arc<Mutex<Vec<(Address, Vec<u8>)>>>;

fn sink(rt: &Runtime, name: &str, shard: usize) -> (Address, Received) {
    let seen: Received = Arc::default();
    let log = seen.clone();
    let a = rt
        .spawn_native(
            name,
            Some(shard),
            move |_: &mut Context<'_>, from: Address, payload: &[u8]| {
                log.lock().unwrap().push((from, payload.to_vec()));
            },
        )
        .unwrap();
    (a, seen)
}

/// The framer's command to send frames: `[0]`, then `[to u64][len u32][bytes]`
/// each.
fn frames<'a>(messages: impl IntoIterator<Item = (Address, &'a [u8])>) -> Vec<u8> {
    let mut buf = vec![0];
    for (to, payload) in messages {
        buf.extend_from_slice(&to.to_bits().to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(payload);
    }
    buf
}

/// The framer's answer to `frames`: (sent, error code as the guest's `code`).
fn send_frames(rt: &Runtime, framer: Address, frames: &[u8]) -> (u32, u32) {
    let reply = rt
        .request(framer, frames, Duration::from_secs(600))
        .unwrap();
    rt.run_until_stalled();
    let r = reply.try_get().expect("answered").expect("a reply");
    let word = |i: usize| u32::from_le_bytes(r[i * 4..i * 4 + 4].try_into().unwrap());
    (word(0), word(1))
}

const UNKNOWN_TARGET: u32 = 1;
const MAILBOX_FULL: u32 = 2;
const DENIED: u32 = 3;
const TOO_LARGE: u32 = 4;
const TOO_MANY_REQUESTS: u32 = 7;

fn payloads(n: u32) -> Vec<Vec<u8>> {
    (0..n).map(pattern::payload).collect()
}

#[test]
fn frames_are_sent_in_order_and_the_call_stops_at_the_first_refusal() {
    let rt = builder(1)
        .mailbox_capacity(64)
        .max_payload(16 * 1024)
        .build_manual()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let (a, to_a) = sink(&rt, "a", 0);
    let (b, to_b) = sink(&rt, "b", 0);
    let framer = rt
        .spawn(&g, SpawnOptions::new("framer").config("framer"))
        .unwrap();

    // Interleaved to two targets, every size the pattern has (1..=300 bytes).
    let ps = payloads(60);
    let buf = frames(ps.iter().enumerate().map(|(i, p)| {
        let to = if i % 2 == 0 { a } else { b };
        (to, &p[..])
    }));
    assert_eq!(send_frames(&rt, framer, &buf), (60, 0));
    let expect = |parity: usize| -> Vec<(Address, Vec<u8>)> {
        ps.iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .map(|(_, p)| (framer, p.clone()))
            .collect()
    };
    assert_eq!(*to_a.lock().unwrap(), expect(0));
    assert_eq!(*to_b.lock().unwrap(), expect(1));
    to_a.lock().unwrap().clear();
    to_b.lock().unwrap().clear();

    // An empty buffer sends nothing and succeeds.
    assert_eq!(send_frames(&rt, framer, &[0]), (0, 0));

    // A forged address stops the call: what came before it went, nothing after.
    let forged = Address::from_bits(0xdead_beef_0000_0007);
    let buf = frames([(a, &b"1"[..]), (a, b"2"), (forged, b"x"), (a, b"3")]);
    assert_eq!(send_frames(&rt, framer, &buf), (2, UNKNOWN_TARGET));
    // A frame over the maximum payload likewise (and nothing of it is copied):
    // the framer builds `4`, 16 KiB + 1 bytes, `5` in its own memory.
    let mut big = vec![1];
    big.extend_from_slice(&a.to_bits().to_le_bytes());
    big.extend_from_slice(&(16 * 1024 + 1u32).to_le_bytes());
    assert_eq!(send_frames(&rt, framer, &big), (1, TOO_LARGE));
    let got: Vec<Vec<u8>> = to_a.lock().unwrap().drain(..).map(|(_, p)| p).collect();
    assert_eq!(got, [b"1".to_vec(), b"2".to_vec(), b"4".to_vec()]);

    // A full mailbox stops it mid-buffer: the sink does not run while the
    // framer does (one shard), so exactly its capacity is admitted.
    let ps = payloads(100);
    let buf = frames(ps.iter().map(|p| (b, &p[..])));
    assert_eq!(send_frames(&rt, framer, &buf), (64, MAILBOX_FULL));
    let first: Vec<(Address, Vec<u8>)> = ps[..64].iter().map(|p| (framer, p.clone())).collect();
    assert_eq!(*to_b.lock().unwrap(), first);

    let stats = rt.stats();
    let f = stats.actor("framer").unwrap();
    assert!(f.alive && f.failure.is_none(), "{f:?}");
    assert_eq!(stats.actor("b").unwrap().handled, 30 + 64);
}

#[test]
fn a_frame_to_a_target_the_grants_do_not_name_is_denied() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (a, to_a) = sink(&rt, "a", 0);
    let (secret, to_secret) = sink(&rt, "secret", 0);
    let framer = rt
        .spawn(
            &g,
            SpawnOptions::new("framer")
                .config("framer")
                .grants(Grants::none().send(["a"])),
        )
        .unwrap();
    let buf = frames([(a, &b"1"[..]), (secret, b"2"), (a, b"3")]);
    assert_eq!(send_frames(&rt, framer, &buf), (1, DENIED));
    assert_eq!(to_a.lock().unwrap().len(), 1);
    assert!(to_secret.lock().unwrap().is_empty());
    assert_eq!(rt.stats().actor("framer").unwrap().denied, 1);
}

#[test]
fn a_malformed_buffer_traps_the_caller_and_sends_nothing() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (a, to_a) = sink(&rt, "a", 0);
    let good = frames([(a, &b"one"[..]), (a, b"two")]);
    let mut cut_header = good.clone();
    cut_header.extend_from_slice(&a.to_bits().to_le_bytes()[..5]);
    let mut long_len = good.clone();
    long_len.extend_from_slice(&frames([(a, &b"three"[..])]));
    long_len.truncate(long_len.len() - 1);
    let mut huge_len = frames([(a, &b"x"[..])]);
    huge_len[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
    for (i, bad) in [cut_header, long_len, huge_len, vec![0u8; 12]]
        .into_iter()
        .enumerate()
    {
        let name = format!("framer-{i}");
        let framer = rt
            .spawn(&g, SpawnOptions::new(&name).config("framer"))
            .unwrap();
        let reply = rt.request(framer, &bad, Duration::from_secs(600)).unwrap();
        rt.run_until_stalled();
        assert_eq!(
            reply.try_get().expect("ended"),
            Err(RequestError::TargetFailed),
            "buffer {i}"
        );
        let stats = rt.stats();
        let f = stats.actor(&name).unwrap();
        assert!(!f.alive, "buffer {i}");
        let why = f.failure.as_ref().expect("failed").to_string();
        assert!(why.contains("send-frames"), "buffer {i}: {why}");
    }
    assert!(to_a.lock().unwrap().is_empty());
}

#[test]
fn frames_across_shards_keep_per_target_order() {
    let rt = builder(2).max_payload(1 << 20).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (near, to_near) = sink(&rt, "near", 0);
    let (far, to_far) = sink(&rt, "far", 1);
    let framer = rt
        .spawn(&g, SpawnOptions::new("framer").config("framer").shard(0))
        .unwrap();
    let ps = payloads(1000);
    for round in 0..4 {
        let buf = frames(ps.iter().enumerate().map(|(i, p)| {
            let to = if (i + round) % 2 == 0 { near } else { far };
            (to, &p[..])
        }));
        let reply = rt.request(framer, &buf, Duration::from_secs(600)).unwrap();
        let r = reply
            .wait(Duration::from_secs(60))
            .expect("answered")
            .unwrap();
        assert_eq!(
            &r[..],
            &[232, 3, 0, 0, 0, 0, 0, 0][..],
            "round {round}: 1000 sent"
        );
        assert!(rt.wait_idle(Duration::from_secs(60)));
    }
    for (seen, parity) in [(to_near, 0), (to_far, 1)] {
        let seen = seen.lock().unwrap();
        let mut expected = Vec::new();
        for round in 0..4 {
            for (i, p) in ps.iter().enumerate() {
                if (i + round) % 2 == parity {
                    expected.push((framer, p.clone()));
                }
            }
        }
        assert_eq!(seen.len(), 2000);
        assert!(
            *seen == expected,
            "order differs on the sink of parity {parity}"
        );
    }
}

#[test]
fn one_call_sends_at_most_max_frames_and_frames_to_itself_are_admitted() {
    let rt = builder(1)
        .mailbox_capacity(2 * wasmshard::MAX_FRAMES)
        .build_manual()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let (a, to_a) = sink(&rt, "a", 0);
    let framer = rt
        .spawn(&g, SpawnOptions::new("framer").config("framer"))
        .unwrap();
    let n = wasmshard::MAX_FRAMES as usize;
    let empty: &[u8] = &[];
    let full = frames(std::iter::repeat_n((a, empty), n));
    assert_eq!(send_frames(&rt, framer, &full), (n as u32, 0));
    assert_eq!(to_a.lock().unwrap().len(), n);
    // One frame more: the whole buffer is refused, nothing of it sent.
    let over = frames(std::iter::repeat_n((a, empty), n + 1));
    assert_eq!(send_frames(&rt, framer, &over), (0, TOO_LARGE));
    assert_eq!(to_a.lock().unwrap().len(), n);
    // Frames to itself are admitted against its own mailbox and handled after.
    let before = rt.stats().actor("framer").unwrap().handled;
    let mine = frames(std::iter::repeat_n((framer, &b"self"[..]), 100));
    assert_eq!(send_frames(&rt, framer, &mine), (100, 0));
    let f = rt.stats();
    let f = f.actor("framer").unwrap();
    assert_eq!(f.handled, before + 1 + 100);
    assert!(f.alive);
}

#[test]
fn each_frame_sent_while_handling_a_traced_request_is_a_child_span() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let seen: Arc<Mutex<Vec<Option<TraceContext>>>> = Arc::default();
    let log = seen.clone();
    let a = rt
        .spawn_native(
            "a",
            Some(0),
            move |cx: &mut Context<'_>, _: Address, _: &[u8]| {
                log.lock().unwrap().push(cx.trace());
            },
        )
        .unwrap();
    let framer = rt
        .spawn(&g, SpawnOptions::new("framer").config("framer"))
        .unwrap();
    let buf = frames([(a, &b"1"[..]), (a, b"2"), (a, b"3")]);
    let parent = TraceContext::new(0x0123_4567, 9).unwrap();
    let reply = rt
        .request_traced(framer, &buf, Duration::from_secs(600), parent)
        .unwrap();
    rt.run_until_stalled();
    assert_eq!(
        reply.try_get().expect("answered").unwrap()[..4],
        3u32.to_le_bytes()
    );
    // Untraced: no context on any frame.
    send_frames(&rt, framer, &buf);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    let traced: Vec<TraceContext> = seen[..3].iter().map(|c| c.expect("traced")).collect();
    assert!(traced.iter().all(|c| c.trace_id() == parent.trace_id()));
    let mut spans: Vec<u64> = traced.iter().map(|c| c.span_id()).collect();
    spans.sort_unstable();
    spans.dedup();
    assert_eq!(spans.len(), 3, "one span per frame");
    assert!(!spans.contains(&parent.span_id()));
    assert_eq!(seen[3..], [None, None, None]);
}

#[test]
fn a_quota_refuses_frames_past_it_and_frames_to_itself_are_free() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (a, to_a) = sink(&rt, "a", 0);
    // A burst of 3 and one message an hour: nothing refills during the test.
    let framer = rt
        .spawn(
            &g,
            SpawnOptions::new("framer")
                .config("framer")
                .rate(Some(Rate::new(1, 3))),
        )
        .unwrap();
    let mine = frames(std::iter::repeat_n((framer, &b"self"[..]), 10));
    assert_eq!(send_frames(&rt, framer, &mine), (10, 0));
    let buf = frames(std::iter::repeat_n((a, &b"x"[..]), 5));
    assert_eq!(send_frames(&rt, framer, &buf), (3, TOO_MANY_REQUESTS));
    assert_eq!(to_a.lock().unwrap().len(), 3);
    let stats = rt.stats();
    let f = stats.actor("framer").unwrap();
    assert_eq!(f.rate_limited, 1);
}

#[test]
fn refused_frames_of_an_audited_actor_are_logged() {
    message_log();
    let rt = builder(1).log_messages(["framer"]).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let (a, _) = sink(&rt, "a", 0);
    let framer = rt
        .spawn(&g, SpawnOptions::new("framer").config("framer"))
        .unwrap();
    let forged = Address::from_bits(0xdead_beef_0000_0009);
    let buf = frames([(a, &b"12345"[..]), (forged, b"1234567")]);
    assert_eq!(send_frames(&rt, framer, &buf), (1, UNKNOWN_TARGET));
    let lines: Vec<String> = message_log()
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&forged.to_string()))
        .cloned()
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("unknown-target")),
        "no refusal logged: {lines:?}"
    );
}
