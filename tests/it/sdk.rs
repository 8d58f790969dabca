//! The Rust guest SDK (`wasmshard-guest`), through its example actors
//! (`examples/guests/*`, built by cargo for `wasm32-unknown-unknown`): typed
//! messages in every codec, requests answered at once and later, continuations,
//! dropped replies, malformed payloads, panics, and every example end to end on
//! one and two shards. The host side uses the runtime's typed helpers, which
//! read and write the same format.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmshard::codec::{self, Codec};
use wasmshard::{
    Address, Context, Grants, LogRecord, ReplyError, RequestError, Runtime, RuntimeBuilder,
    SendError, SpawnOptions,
};

use crate::support::*;

/// `examples/guests/counter`'s messages (the same shape, so the same bytes).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum CounterMsg {
    Add(u64),
    Report,
    Total(u64),
}

#[derive(Serialize, Deserialize, Debug)]
enum CounterReq {
    Get,
    AddAndGet(u64),
}

/// `examples/guests/kv`'s requests and answers.
#[derive(Serialize, Deserialize, Debug)]
enum KvReq {
    Put { key: String, value: String },
    Get { key: String },
    WaitFor { key: String },
    Ignore,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum KvResp {
    Done,
    Value(Option<String>),
}

/// `examples/guests/chat`'s messages and request.
#[derive(Serialize, Deserialize, Debug)]
#[allow(
    dead_code,
    reason = "the same shape as the example's: some are only its own"
)]
enum ChatMsg {
    Join { name: String },
    Say { text: String },
    Line { from: String, text: String },
}

#[derive(Serialize, Deserialize, Debug)]
enum ChatReq {
    History,
}

/// What the actors logged.
type Logs = Arc<Mutex<Vec<LogRecord>>>;

fn runtime(shards: usize) -> (Runtime, Logs) {
    let logs: Logs = Arc::default();
    let sink = logs.clone();
    let rt = RuntimeBuilder::new()
        .shards(shards)
        .max_actors(32)
        .log_sink(move |r: &LogRecord| sink.lock().unwrap().push(r.clone()))
        .build()
        .unwrap();
    (rt, logs)
}

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn counter_takes_typed_messages_in_every_codec_and_answers_requests() {
    for shards in [1, 2] {
        let (rt, _) = runtime(shards);
        let Some(counter) = example(&rt, "counter") else {
            return;
        };
        let c = rt
            .spawn(
                &counter,
                SpawnOptions::new("counter")
                    .config(r#"{"start": 100}"#)
                    // It answers a `Report` with a tell to the asker.
                    .grants(Grants::none().send(["probe"])),
            )
            .unwrap();
        for (i, codec) in [Codec::Json, Codec::Cbor, Codec::MessagePack]
            .into_iter()
            .enumerate()
        {
            rt.send_typed_with(codec, c, &CounterMsg::Add(i as u64 + 1))
                .unwrap();
        }
        // Requests in each codec too; the reply comes in the SDK's default.
        let total: u64 = rt
            .request_typed(c, &CounterReq::Get, WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        assert_eq!(total, 106, "{shards} shards");
        for codec in [Codec::Json, Codec::Cbor, Codec::MessagePack] {
            let bytes = codec::encode(codec, &CounterReq::AddAndGet(1)).unwrap();
            let reply = rt.request(c, &bytes, WAIT).unwrap().wait(WAIT);
            let reply = reply.unwrap().unwrap();
            assert_eq!(Codec::of(&reply), Some(codec::DEFAULT));
            let _: u64 = codec::decode(&reply).unwrap();
        }
        let total: u64 = rt
            .request_typed(c, &CounterReq::Get, WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        assert_eq!(total, 109);
        // A typed tell back: the counter reports to an actor that asks.
        let (probe, inbox) = probe(&rt, "probe", shards - 1);
        relay(
            &rt,
            probe,
            c,
            &codec::encode(Codec::Cbor, &CounterMsg::Report).unwrap(),
        );
        assert!(rt.wait_idle(WAIT));
        let got = inbox.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            codec::decode::<CounterMsg>(&got[0].1).unwrap(),
            CounterMsg::Total(109)
        );
        let report = rt.shutdown();
        assert_eq!(report.dead_letter_count, 0);
    }
}

/// The tally's message, with a field it does not know.
#[derive(Serialize)]
struct TallyAdd {
    note: &'static str,
    n: u64,
    tags: Vec<u8>,
}

#[derive(Serialize)]
struct TallyGet;

/// A tally on `rt`; `None` as [`tally`].
fn spawn_tally(rt: &Runtime) -> Option<Address> {
    Some(rt.spawn(&tally(rt)?, SpawnOptions::new("tally")).unwrap())
}

#[test]
fn a_struct_message_decodes_in_every_codec_skipping_unknown_fields() {
    let (rt, logs) = runtime(1);
    let Some(t) = spawn_tally(&rt) else {
        return;
    };
    for (i, codec) in [Codec::Json, Codec::Cbor, Codec::MessagePack]
        .into_iter()
        .enumerate()
    {
        // Unknown fields before and after the one it reads, one of them nested.
        let add = TallyAdd {
            note: "skip me",
            n: 10u64.pow(i as u32),
            tags: vec![1, 2, 3],
        };
        rt.send_typed_with(codec, t, &add).unwrap();
    }
    // A large `n` (not a fixint), and one without `n` (malformed: not counted).
    rt.send_typed(
        t,
        &TallyAdd {
            note: "",
            n: 1 << 40,
            tags: vec![],
        },
    )
    .unwrap();
    rt.send_typed(t, &TallyGet).unwrap();
    let total: u64 = rt
        .request_typed(t, &TallyGet, WAIT)
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert_eq!(total, 111 + (1 << 40));
    let logs = logs.lock().unwrap();
    assert!(
        logs.iter().any(|r| r.message.contains("does not decode")),
        "{logs:?}"
    );
    let report = rt.shutdown();
    assert_eq!(report.dead_letter_count, 0);
}

#[test]
fn unknown_fields_nested_to_the_limit_are_skipped_and_past_it_refused_without_a_trap() {
    let (rt, logs) = runtime(1);
    let Some(t) = spawn_tally(&rt) else {
        return;
    };
    // `{n: 1, x: [[...[0]...]]}`: the struct is one level, each array one more.
    let nested = |arrays: usize| {
        let mut p = Codec::MessagePack.prefix().to_vec();
        p.extend_from_slice(&[0x82, 0xa1, b'n', 0x01, 0xa1, b'x']);
        p.extend(std::iter::repeat_n(0x91, arrays));
        p.push(0x00);
        p
    };
    rt.send(t, &nested(250)).unwrap();
    rt.send(t, &nested(10_000)).unwrap();
    let total: u64 = rt
        .request_typed(t, &TallyGet, WAIT)
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert_eq!(total, 1, "the one within the limit counted");
    let refused = logs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.message.contains("does not decode"))
        .count();
    assert_eq!(refused, 1);
    assert!(
        rt.stats().actor("tally").unwrap().failure.is_none(),
        "no trap"
    );
    rt.shutdown();
}

#[test]
fn a_malformed_payload_is_reported_to_the_actor_not_a_trap() {
    let (rt, logs) = runtime(1);
    let Some(counter) = example(&rt, "counter") else {
        return;
    };
    let c = rt.spawn(&counter, SpawnOptions::new("counter")).unwrap();
    // A payload with no codec prefix is refused at the door: the SDK declares
    // the codecs it decodes.
    assert_eq!(
        rt.send(c, b"\x99 not a codec"),
        Err(SendError::UnsupportedCodec)
    );
    // A known codec with a body of the wrong type, twice; a request that does not
    // decode (its reply is dropped: the requester learns at once).
    rt.send_typed_with(Codec::Json, c, &"a string, not a Msg")
        .unwrap();
    rt.send_typed_with(Codec::Cbor, c, &[1u8, 2, 3]).unwrap();
    let dropped = rt
        .request_typed::<_, u64>(c, &["not", "a", "Req"], WAIT)
        .unwrap()
        .wait(WAIT);
    assert!(matches!(dropped, Err(ReplyError::Dropped)), "{dropped:?}");
    rt.send_typed(c, &CounterMsg::Add(2)).unwrap();
    let total: u64 = rt
        .request_typed(c, &CounterReq::Get, WAIT)
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert_eq!(total, 2, "the actor is alive and kept its state");
    let stats = rt.stats();
    assert!(stats.actor("counter").unwrap().failure.is_none());
    let warned = logs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.message.contains("does not decode"))
        .count();
    assert_eq!(warned, 3, "{:?}", logs.lock().unwrap());
}

#[test]
fn a_guest_panic_says_why_in_the_failure_reason() {
    let (rt, logs) = runtime(2);
    let Some(counter) = example(&rt, "counter") else {
        return;
    };
    let c = rt.spawn(&counter, SpawnOptions::new("counter")).unwrap();
    rt.send_typed(c, &CounterMsg::Add(u64::MAX)).unwrap();
    rt.send_typed(c, &CounterMsg::Add(1)).unwrap();
    assert!(rt.wait_idle(WAIT));
    let stats = rt.stats();
    let failure = stats.actor("counter").unwrap().failure.clone().unwrap();
    assert!(
        failure.contains("the total overflows u64") && failure.contains("src/lib.rs"),
        "{failure}"
    );
    assert!(
        logs.lock()
            .unwrap()
            .iter()
            .any(|r| r.message.contains("panicked at")),
        "the panic went to the log too"
    );
}

#[test]
fn kv_answers_at_once_later_and_says_when_it_drops_a_request() {
    for shards in [1, 2] {
        let (rt, _) = runtime(shards);
        let Some(kv) = example(&rt, "kv") else {
            return;
        };
        let k = rt.spawn(&kv, SpawnOptions::new("kv")).unwrap();
        let get = |key: &str| -> KvResp {
            rt.request_typed(k, &KvReq::Get { key: key.into() }, WAIT)
                .unwrap()
                .wait(WAIT)
                .unwrap()
        };
        assert_eq!(get("a"), KvResp::Value(None));
        // Deferred: the answer waits in the actor's state until the key is set.
        let waiting = rt
            .request_typed::<_, KvResp>(k, &KvReq::WaitFor { key: "a".into() }, WAIT)
            .unwrap();
        assert!(matches!(waiting.try_get(), Err(ReplyError::NotYet)));
        let put: KvResp = rt
            .request_typed(
                k,
                &KvReq::Put {
                    key: "a".into(),
                    value: "1".into(),
                },
                WAIT,
            )
            .unwrap()
            .wait(WAIT)
            .unwrap();
        assert_eq!(put, KvResp::Done);
        assert_eq!(waiting.wait(WAIT).unwrap(), KvResp::Value(Some("1".into())));
        assert_eq!(get("a"), KvResp::Value(Some("1".into())));
        // A dropped reply ends the request at once, long before its timeout.
        let ignored = rt
            .request_typed::<_, KvResp>(k, &KvReq::Ignore, Duration::from_secs(3600))
            .unwrap()
            .wait(WAIT);
        assert!(matches!(ignored, Err(ReplyError::Dropped)), "{ignored:?}");
        // A waiter whose requester gave up: the later answer is refused quietly.
        let gone = rt
            .request_typed::<_, KvResp>(
                k,
                &KvReq::WaitFor { key: "b".into() },
                Duration::from_millis(1),
            )
            .unwrap()
            .wait(WAIT);
        assert!(
            matches!(gone, Err(ReplyError::Failed(RequestError::Timeout))),
            "{gone:?}"
        );
        let _: KvResp = rt
            .request_typed(
                k,
                &KvReq::Put {
                    key: "b".into(),
                    value: "2".into(),
                },
                WAIT,
            )
            .unwrap()
            .wait(WAIT)
            .unwrap();
        // The host cancels what it no longer wants; an ended request stays ended.
        let unwanted = rt
            .request_typed::<_, KvResp>(k, &KvReq::WaitFor { key: "c".into() }, WAIT)
            .unwrap();
        assert!(unwanted.cancel());
        let answered = rt
            .request_typed::<_, KvResp>(k, &KvReq::Get { key: "a".into() }, WAIT)
            .unwrap();
        assert_eq!(
            answered.wait(WAIT).unwrap(),
            KvResp::Value(Some("1".into()))
        );
        assert!(!answered.cancel());
        let report = rt.shutdown();
        assert!(report.stats.actor("kv").unwrap().failure.is_none());
        assert_eq!(
            report
                .stats
                .shards
                .iter()
                .map(|s| s.requests.cancelled)
                .sum::<u64>(),
            1
        );
    }
}

/// Payloads and replies of every size through the SDK's kept buffers: the
/// inbox the host lowers into, the outbox immediate replies leave from, the
/// buffer deferred replies are encoded in; small after large and large after
/// small, past the size the buffers keep between calls.
#[test]
fn sdk_payloads_of_any_size_arrive_whole() {
    let rt = RuntimeBuilder::new()
        .shards(1)
        .max_payload(4 << 20)
        // Megabytes through a debug-built host on a loaded machine: the CPU
        // budget (wall-clock epochs) is not what this test is about.
        .cpu_budget(Some(Duration::from_secs(30)))
        .build()
        .unwrap();
    let Some(kv) = example(&rt, "kv") else {
        return;
    };
    let k = rt.spawn(&kv, SpawnOptions::new("kv")).unwrap();
    let ask =
        |req: &KvReq| -> KvResp { rt.request_typed(k, req, WAIT).unwrap().wait(WAIT).unwrap() };
    for (i, len) in [3usize, 300_000, 0, 70_000, 5, 2_000_000, 64 * 1024, 1]
        .into_iter()
        .enumerate()
    {
        let key = format!("k{i}");
        // Deferred first: the answer to this `WaitFor` is encoded later, when
        // the `Put` arrives.
        let waiting = rt
            .request_typed::<_, KvResp>(k, &KvReq::WaitFor { key: key.clone() }, WAIT)
            .unwrap();
        let value: String = (0..len)
            .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
            .collect();
        let put = KvReq::Put {
            key: key.clone(),
            value: value.clone(),
        };
        assert_eq!(ask(&put), KvResp::Done, "{len}");
        assert_eq!(
            waiting.wait(WAIT).unwrap(),
            KvResp::Value(Some(value.clone())),
            "{len}"
        );
        assert_eq!(
            ask(&KvReq::Get { key }),
            KvResp::Value(Some(value)),
            "{len}"
        );
    }
    assert_eq!(rt.stats().dead_letters, 0);
}

#[test]
fn pipeline_answers_after_its_sub_requests_return() {
    for shards in [1, 2] {
        let (rt, _) = runtime(shards);
        let (Some(pipeline), Some(trial)) = (example(&rt, "pipeline"), async_trial(&rt)) else {
            return;
        };
        rt.spawn(
            &pipeline,
            SpawnOptions::new("double")
                .config(r#"{"Worker": "Double"}"#)
                .shard(0),
        )
        .unwrap();
        rt.spawn(
            &pipeline,
            SpawnOptions::new("square")
                .config(r#"{"Worker": "Square"}"#)
                .shard(shards - 1),
        )
        .unwrap();
        // A front may find and ask its two workers, no one else.
        let workers = Grants::none()
            .lookup(["double", "square"])
            .request(["double", "square"]);
        let front = rt
            .spawn(
                &pipeline,
                SpawnOptions::new("front")
                    .config(r#"{"Front": {"workers": ["double", "square"], "timeout_ms": 60000}}"#)
                    .grants(workers.clone())
                    .shard(shards - 1),
            )
            .unwrap();
        // The same front with async handlers (the trial that chose
        // continuations) answers the same.
        let async_front = rt
            .spawn(
                &trial,
                SpawnOptions::new("async-front")
                    .config(r#"{"workers": ["double", "square"], "timeout_ms": 60000}"#)
                    .grants(workers)
                    .shard(0),
            )
            .unwrap();
        for front in [front, async_front] {
            // Many at once: each answer waits for its own two sub-replies.
            let pending: Vec<_> = (0..50u64)
                .map(|n| {
                    rt.request_typed::<_, Result<u64, String>>(front, &n, WAIT)
                        .unwrap()
                })
                .collect();
            for (n, p) in pending.into_iter().enumerate() {
                let n = n as u64;
                assert_eq!(p.wait(WAIT).unwrap(), Ok(2 * n + n * n), "{shards} shards");
            }
        }
        // A worker that is gone: the fronts answer with the error.
        rt.stop(rt.lookup("square").unwrap()).unwrap();
        for front in [front, async_front] {
            let failed = rt
                .request_typed::<_, Result<u64, String>>(front, &7u64, WAIT)
                .unwrap()
                .wait(WAIT)
                .unwrap();
            assert!(failed.is_err(), "{failed:?}");
        }
        // Its config names workers that must exist.
        let err = rt
            .spawn(
                &pipeline,
                SpawnOptions::new("lonely")
                    .config(r#"{"Front": {"workers": ["x", "y"], "timeout_ms": 1}}"#),
            )
            .unwrap_err();
        assert!(err.to_string().contains("no worker named `x`"), "{err}");
    }
}

#[test]
fn chat_relays_lines_to_members_across_shards() {
    for shards in [1, 2] {
        let (rt, _) = runtime(shards);
        let Some(chat) = example(&rt, "chat") else {
            return;
        };
        rt.spawn(
            &chat,
            SpawnOptions::new("lobby")
                .config(r#""Room""#)
                .shard(0)
                .grants(Grants::none().send(["ann", "bob", "cy"])),
        )
        .unwrap();
        let names = ["ann", "bob", "cy"];
        let members: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                rt.spawn(
                    &chat,
                    SpawnOptions::new(*name)
                        .config(format!(
                            r#"{{"Member": {{"room": "lobby", "name": "{name}"}}}}"#
                        ))
                        .grants(Grants::none().lookup(["lobby"]).send(["lobby"]))
                        .shard(i % shards),
                )
                .unwrap()
            })
            .collect();
        assert!(rt.wait_idle(WAIT));
        for m in &members {
            for k in 0..3 {
                rt.send_typed(
                    *m,
                    &ChatMsg::Say {
                        text: format!("{k}"),
                    },
                )
                .unwrap();
            }
        }
        assert!(rt.wait_idle(WAIT));
        for m in &members {
            let lines: Vec<String> = rt
                .request_typed(*m, &ChatReq::History, WAIT)
                .unwrap()
                .wait(WAIT)
                .unwrap();
            assert_eq!(lines.len(), 9, "{lines:?}");
            // Each speaker's lines arrive in the order said.
            for name in names {
                let own: Vec<_> = lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("{name}: ")))
                    .collect();
                assert_eq!(
                    own,
                    [0, 1, 2]
                        .map(|k| format!("{name}: {k}"))
                        .iter()
                        .collect::<Vec<_>>()
                );
            }
        }
        assert_eq!(rt.shutdown().dead_letter_count, 0);
    }
}

/// An actor that declares its codecs (here by spawn option, on a WAT counter)
/// refuses other payloads at admission, from the host, from a sender on its own
/// shard and from one on another, for tells and requests alike; what it accepts
/// is delivered as before.
#[test]
fn unsupported_codec_is_refused_at_admission_for_every_sender() {
    let rt = Arc::new(builder(2).build().unwrap());
    let counter = load(&rt, "counter.wat");
    let target = rt
        .spawn(
            &counter,
            SpawnOptions::new("picky")
                .shard(0)
                .accepts([Codec::Cbor, Codec::MessagePack]),
        )
        .unwrap();
    let outcomes: Arc<Mutex<Vec<String>>> = Arc::default();
    let senders: Vec<Address> = (0..2)
        .map(|shard| {
            let out = outcomes.clone();
            rt.spawn_native(
                &format!("sender{shard}"),
                Some(shard),
                move |ctx: &mut Context<'_>, _: Address, _: &[u8]| {
                    let cbor = codec::encode(Codec::Cbor, &1u8).unwrap();
                    let json = codec::encode(Codec::Json, &1u8).unwrap();
                    let results = [
                        format!("{:?}", ctx.send(target, &cbor)),
                        format!("{:?}", ctx.send(target, &json)),
                        format!("{:?}", ctx.send(target, b"plain")),
                        format!(
                            "{:?}",
                            ctx.request(target, &json, Duration::from_secs(1))
                                .map(|_| ())
                        ),
                        format!(
                            "{:?}",
                            ctx.request(target, b"", Duration::from_secs(1)).map(|_| ())
                        ),
                    ];
                    out.lock().unwrap().push(results.join(" "));
                },
            )
            .unwrap()
        })
        .collect();
    for s in &senders {
        rt.send(*s, b"go").unwrap();
    }
    assert!(rt.wait_idle(IDLE));
    let refused = "Ok(()) Err(UnsupportedCodec) Err(UnsupportedCodec) Err(UnsupportedCodec) \
                   Err(UnsupportedCodec)";
    assert_eq!(*outcomes.lock().unwrap(), [refused, refused]);
    assert_eq!(rt.send(target, b"plain"), Err(SendError::UnsupportedCodec));
    let refused = rt.request(target, b"\x80\x04{}", IDLE).map(|_| ());
    assert_eq!(refused, Err(SendError::UnsupportedCodec));
    rt.send_typed_with(Codec::MessagePack, target, &5u8)
        .unwrap();
    assert!(rt.wait_idle(IDLE));
    // Exactly the accepted ones arrived (two senders' CBOR, the host's
    // MessagePack), and nothing was lost or half-admitted: the mailbox is empty.
    let report = Arc::try_unwrap(rt).unwrap().shutdown();
    assert_eq!(report.stats.actor("picky").unwrap().handled, 3);
    assert_eq!(report.dead_letter_count, 0);
}

/// The SDK declares its codecs in the component; loading and `inspect` read them.
#[test]
fn an_sdk_component_declares_its_codecs() {
    let (rt, _) = runtime(1);
    let Some(counter) = example(&rt, "counter") else {
        return;
    };
    let all = [Codec::Raw, Codec::Json, Codec::Cbor, Codec::MessagePack];
    assert_eq!(counter.accepts(), Some(&all[..]));
    let bytes = std::fs::read(example_wasm("counter").unwrap()).unwrap();
    let inspection = rt.inspect(&bytes).unwrap();
    assert_eq!(inspection.accepts.unwrap(), Some(all.to_vec()));
    // A WAT component declares nothing, and takes any payload.
    let plain = load(&rt, "counter.wat");
    assert_eq!(plain.accepts(), None);
    // Spawn options override the section; an empty list accepts anything.
    let any = rt
        .spawn(&counter, SpawnOptions::new("any").accepts([]))
        .unwrap();
    rt.send(any, b"\x99 no codec").unwrap();
}

/// Each example's manifest (`examples/*.toml`) runs to idle with what it says
/// it logs, nothing failed and nothing undelivered. The manifests name the
/// examples where `cargo build --target wasm32-unknown-unknown` puts them; here
/// they are the modules this test binary built.
#[test]
fn the_example_manifests_run() {
    let Some(counter) = example_wasm("counter") else {
        return;
    };
    let built = counter.parent().unwrap().to_str().unwrap().to_string();
    let cases = [
        ("counter", "total: 150"),
        ("kv", "colour = green"),
        ("pipeline", "12 -> Ok(168)"),
        ("chat", "cy: good morning"),
    ];
    for (name, says) in cases {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("../target/wasm32-unknown-unknown/release", &built);
        let manifest = wasmshard::manifest::Manifest::parse(&text).unwrap();
        let logs: Logs = Arc::default();
        let sink = logs.clone();
        let builder = manifest
            .builder()
            .log_sink(move |r: &LogRecord| sink.lock().unwrap().push(r.clone()));
        let report = manifest.run(builder, Some(WAIT)).unwrap();
        assert!(report.idle, "{name}");
        assert_eq!(report.dead_letters, 0, "{name}");
        assert_eq!(report.undelivered_sends, 0, "{name}");
        assert!(
            report.actors.iter().all(|a| a.failure.is_none()),
            "{name}: {:?}",
            report.actors
        );
        assert!(
            logs.lock().unwrap().iter().any(|r| r.message == says),
            "{name}: {:?}",
            logs.lock().unwrap()
        );
    }
}

/// A native actor from a closure with no annotated argument types (the closure
/// passed to `spawn_native` needed every one spelled out).
#[test]
fn a_handler_closure_needs_no_annotations() {
    let rt = builder(2).build().unwrap();
    let seen: Inbox = Arc::default();
    let s = seen.clone();
    let a = rt
        .spawn_handler("handler", Some(1), move |ctx, from, payload| {
            assert_ne!(ctx.self_address(), from);
            s.lock().unwrap().push((from, payload.to_vec()));
        })
        .unwrap();
    rt.send(a, b"hi").unwrap();
    assert!(rt.wait_idle(WAIT));
    assert_eq!(*seen.lock().unwrap(), [(Address::HOST, b"hi".to_vec())]);
}

/// The SDK's lifecycle wrappers, in the nursery (`tests/guests/nursery`):
/// children of the tally spawned from `init`, told, watched as they fail
/// (a total past `u64::MAX` panics), stopped; a refused spawn.
#[test]
fn an_sdk_actor_spawns_watches_and_stops_children() {
    let rt = builder(1).build_manual().unwrap();
    let (Some(n), Some(t)) = (nursery(&rt), tally(&rt)) else {
        return;
    };
    rt.register_component("tally", &t).unwrap();
    let nursery = rt
        .spawn(
            &n,
            SpawnOptions::new("nursery")
                .config(r#"{"component": "tally", "children": 3}"#)
                .grants(Grants::none().spawn(["tally"]).lookup(["tally"])),
        )
        .unwrap();
    let report = |rt: &Runtime| -> [u32; 5] {
        let reply = rt.request_typed::<_, [u32; 8]>(nursery, &"Report", Duration::from_secs(60));
        rt.run_until_stalled();
        let r = reply.unwrap().try_get().expect("answered");
        r[..5].try_into().unwrap()
    };
    rt.run_until_stalled();
    assert_eq!(report(&rt), [3, 0, 0, 0, 1]);
    rt.send_typed(nursery, &serde_json::json!({"Add": 5}))
        .unwrap();
    rt.run_until_stalled();
    let stats = rt.stats();
    let children: Vec<_> = stats
        .actors
        .iter()
        .filter(|a| a.name.starts_with("tally@"))
        .collect();
    assert_eq!(children.len(), 3);
    assert!(children.iter().all(|c| c.handled == 1 && c.alive));
    // Past u64::MAX: every child fails, and every watch says so.
    rt.send_typed(nursery, &serde_json::json!({"Add": u64::MAX}))
        .unwrap();
    rt.run_until_stalled();
    assert_eq!(report(&rt), [3, 0, 3, 0, 1]);
    // Not granted: refused, counted.
    rt.send_typed(nursery, &serde_json::json!({"Spawn": "nursery"}))
        .unwrap();
    rt.run_until_stalled();
    assert_eq!(report(&rt), [3, 0, 3, 1, 1]);
    // One more (named); stopping ends its watch with target-stopped.
    rt.send_typed(nursery, &serde_json::json!({"Spawn": "tally"}))
        .unwrap();
    rt.run_until_stalled();
    assert!(rt.lookup("tally").is_some());
    // A tell to every child in one call (`Ctx::send_frames`): the three failed
    // ones refuse it (each skipped in turn), the new one, last, gets it.
    rt.send_typed(nursery, &serde_json::json!({"Add": 7}))
        .unwrap();
    rt.run_until_stalled();
    let stats = rt.stats();
    assert_eq!(stats.actor("tally").unwrap().handled, 1);
    assert!(stats.actor("nursery").unwrap().alive);
    rt.send_typed(nursery, &serde_json::json!("Stop")).unwrap();
    rt.run_until_stalled();
    assert_eq!(report(&rt), [4, 1, 3, 1, 1]);
    assert_eq!(rt.lookup("tally"), None);
    assert_eq!(rt.stats().shards[0].actors, 1);
    // Its storage (`Ctx::get`, `Ctx::set`) outlives an upgrade: the new
    // instance counts on. (Its children were the old instance's.)
    rt.upgrade(nursery, &n).unwrap();
    rt.run_until_stalled();
    assert_eq!(report(&rt)[4], 2);
}

/// The SDK's timer and topic wrappers, in the nursery: a tick set again from
/// each `Tock` (which arrives from the actor itself), and a publication one
/// nursery makes to a topic the other subscribed to, which that one passes to
/// its children.
#[test]
fn an_sdk_actor_ticks_subscribes_and_publishes() {
    let rt = builder(2).build().unwrap();
    let (Some(n), Some(t)) = (nursery(&rt), tally(&rt)) else {
        return;
    };
    rt.register_component("tally", &t).unwrap();
    let spawn = |name: &str, shard: usize, children: u32| {
        rt.spawn(
            &n,
            SpawnOptions::new(name)
                .config(format!(
                    r#"{{"component": "tally", "children": {children}}}"#
                ))
                .shard(shard)
                .grants(
                    Grants::none()
                        .spawn(["tally"])
                        .publish(["news.*"])
                        .subscribe(["news.*"]),
                ),
        )
        .unwrap()
    };
    let (a, b) = (spawn("a", 0, 0), spawn("b", 1, 2));
    let report = |who: Address| -> [u32; 8] {
        rt.request_typed::<_, [u32; 8]>(who, &"Report", WAIT)
            .unwrap()
            .wait(WAIT)
            .expect("answered")
    };
    rt.send_typed(b, &serde_json::json!({"Subscribe": "news.*"}))
        .unwrap();
    rt.send_typed(a, &serde_json::json!({"Tick": [2, 5]}))
        .unwrap();
    assert!(rt.wait_idle(WAIT));
    rt.send_typed(a, &serde_json::json!({"Publish": ["news.local", 7]}))
        .unwrap();
    rt.send_typed(a, &serde_json::json!({"Publish": ["weather", 7]}))
        .unwrap();
    assert!(rt.wait_idle(WAIT));
    assert_eq!(report(a)[5..], [5, 1, 0], "five ticks; one delivery");
    // A traced publication (`Ctx::trace`): its delivery to `b` carries the
    // trace on; the timer's `Tock` that a traced `Tick` sets does not.
    let parent = wasmshard::TraceContext::random();
    let encode =
        |v: serde_json::Value| wasmshard::codec::encode(wasmshard::codec::DEFAULT, &v).unwrap();
    rt.send_traced(
        a,
        &encode(serde_json::json!({"Publish": ["news.local", 1]})),
        parent,
    )
    .unwrap();
    rt.send_traced(a, &encode(serde_json::json!({"Tick": [1, 1]})), parent)
        .unwrap();
    assert!(rt.wait_idle(WAIT));
    assert_eq!(report(a)[5..], [6, 2, 2], "both traced; the tock not");
    assert_eq!(report(b)[7], 1, "the delivery inherited the trace");
    let stats = rt.stats();
    let tallied: Vec<_> = stats
        .actors
        .iter()
        .filter(|s| s.name.starts_with("tally@"))
        .map(|s| s.handled)
        .collect();
    assert_eq!(
        tallied,
        [2, 2],
        "b passed both publications to its children"
    );
    assert_eq!(
        stats.actor("a").unwrap().denied,
        1,
        "`weather` is not granted"
    );
    rt.shutdown();
}

/// A manifest registers components (`[[component]]`) for its actors to spawn.
#[test]
fn a_manifest_registers_components_for_actors_to_spawn() {
    let Some(dir) = guest_wasm().map(|p| p.parent().unwrap().to_path_buf()) else {
        return;
    };
    let text = format!(
        "[runtime]\nshards = 1\n\
         [[component]]\nname = \"tally\"\npath = \"{dir}/wasmshard_tally.wasm\"\n\
         [[actor]]\nname = \"nursery\"\ncomponent = \"{dir}/wasmshard_nursery.wasm\"\n\
         config = '{{\"component\": \"tally\", \"children\": 4}}'\n\
         grants = {{ spawn = [\"tally\"] }}\n\
         [[send]]\nto = \"nursery\"\njson = '{{\"Add\": 2}}'\n",
        dir = dir.display()
    );
    let manifest = wasmshard::manifest::Manifest::parse(&text).unwrap();
    let report = manifest.run(manifest.builder(), Some(WAIT)).unwrap();
    assert!(report.idle);
    let children: Vec<_> = report
        .actors
        .iter()
        .filter(|a| a.name.starts_with("tally@"))
        .collect();
    assert_eq!(children.len(), 4, "{:?}", report.actors);
    assert!(children.iter().all(|c| c.handled == 1 && !c.failed));
    // Two components of one name are refused before anything runs.
    let twice = text.replace(
        "[[actor]]",
        &format!(
            "[[component]]\nname = \"tally\"\npath = \"{}/x.wasm\"\n[[actor]]",
            dir.display()
        ),
    );
    let e = wasmshard::manifest::Manifest::parse(&twice).unwrap_err();
    assert!(
        e.to_string().contains("two components are named `tally`"),
        "{e}"
    );
}
