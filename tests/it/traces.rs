//! Trace context travels with messages: everything an actor sends while
//! handling a traced message carries the trace on (a new span), across
//! shards, through requests, responses and deferred replies, with no code in
//! the guest; the host starts traces (by sampling, or continuing one of its
//! own); untraced messages carry none. With the `tracing` feature (on in the
//! tests), each handled traced message is one `tracing` span, captured here
//! by a subscriber of the test's own. Driven through the Rust test guest's
//! `tracer` role (`tests/guests/roles`) and native actors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmshard::{
    Address, Component, Context, NativeActor, RequestError, Restart, Runtime, SpawnOptions,
    TraceContext,
};

use crate::support::*;

/// One `wasmshard.handle` span as the subscriber saw it: its fields.
type Fields = HashMap<&'static str, String>;

/// A `tracing` subscriber that keeps every span's fields (and nothing else).
#[derive(Default)]
struct Capture {
    spans: Mutex<Vec<Fields>>,
}

struct Visitor<'a>(&'a mut Fields);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name(), value.to_string());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields::new();
        fields.insert("name", span.metadata().name().to_string());
        span.record(&mut Visitor(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push(fields);
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        let fields = &mut spans[span.into_u64() as usize - 1];
        values.record(&mut Visitor(fields));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The process's subscriber (set once for the test binary).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::default());
        struct Shared(&'static Capture);
        impl tracing::Subscriber for Shared {
            fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
                self.0.enabled(m)
            }
            fn new_span(&self, s: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                self.0.new_span(s)
            }
            fn record(&self, s: &tracing::span::Id, v: &tracing::span::Record<'_>) {
                self.0.record(s, v)
            }
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, _: &tracing::Event<'_>) {}
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        tracing::subscriber::set_global_default(Shared(capture))
            .expect("no other subscriber in this test binary");
        capture
    })
}

/// The spans captured for trace `trace_id`, in the order they began.
fn spans_of(trace_id: u128) -> Vec<Fields> {
    let id = format!("{trace_id:032x}");
    capture()
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.get("trace_id") == Some(&id))
        .cloned()
        .collect()
}

/// The spans captured for the actor called `name`.
fn spans_of_actor(name: &str) -> usize {
    capture()
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.get("actor").map(String::as_str) == Some(name))
        .count()
}

fn spawn(rt: &Runtime, g: &Component, name: &str, config: &str, shard: usize) -> Address {
    rt.spawn(g, SpawnOptions::new(name).config(config).shard(shard))
        .unwrap()
}

/// The contexts a tracer appended, after `prefix` bytes: `None` for zeros.
fn contexts(bytes: &[u8], prefix: usize) -> Vec<Option<TraceContext>> {
    assert_eq!((bytes.len() - prefix) % 24, 0, "{bytes:?}");
    bytes[prefix..]
        .chunks(24)
        .map(|c| {
            let w = |i: usize| u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().unwrap());
            TraceContext::new((u128::from(w(0)) << 64) | u128::from(w(1)), w(2))
        })
        .collect()
}

/// The host's span, in a trace of the test's own (`test` tells them apart:
/// the subscriber sees every test's spans).
fn parent(test: u8) -> TraceContext {
    let p = format!("00-4bf92f3577b34da6a3ce929d0e0e47{test:02x}-00f067aa0ba902b7-01");
    TraceContext::from_traceparent(&p).unwrap()
}

fn request(rt: &Runtime, to: Address, traced: Option<TraceContext>) -> Vec<u8> {
    let timeout = Duration::from_secs(30);
    match traced {
        Some(p) => rt.request_traced(to, b"x", timeout, p),
        None => rt.request(to, b"x", timeout),
    }
    .unwrap()
    .wait(timeout)
    .expect("ended")
    .expect("answered")
}

/// A (shard 0) → B (shard 1) → C (shard 0), requests answered back up the
/// chain with deferred replies: every hop, requests and responses, carries
/// the host's trace, each handling its own span, each span's parent the one
/// that sent it (for a deferred answer: the request it answers). The same actors then handle an untraced request with no
/// context at all (a trace does not outlive its message).
#[test]
fn a_request_chain_across_two_shards_shares_one_trace() {
    capture();
    let rt = builder(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let a = spawn(&rt, &g, "ta", "tracer tb", 0);
    spawn(&rt, &g, "tb", "tracer tc", 1);
    spawn(&rt, &g, "tc", "tracer", 0);
    let p = parent(1);
    let reply = request(&rt, a, Some(p));
    // A, B and C stamped the request on its way; B and A the reply.
    let got = contexts(&reply, 1);
    assert_eq!(got.len(), 5);
    let got: Vec<TraceContext> = got.into_iter().map(|c| c.expect("traced")).collect();
    assert!(got.iter().all(|c| c.trace_id() == p.trace_id()), "{got:?}");
    let mut spans: Vec<u64> = got.iter().map(|c| c.span_id()).collect();
    spans.push(p.span_id());
    spans.sort_unstable();
    spans.dedup();
    assert_eq!(spans.len(), 6, "a new span at every hop: {got:?}");
    assert!(rt.wait_idle(Duration::from_secs(10)));

    // The spans: (actor, kind, shard), each the child of the one before.
    let seen = spans_of(p.trace_id());
    let hops: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|f| (f["actor"].as_str(), f["kind"].as_str(), f["shard"].as_str()))
        .collect();
    assert_eq!(
        hops,
        [
            ("ta", "request", "0"),
            ("tb", "request", "1"),
            ("tc", "request", "0"),
            ("tb", "response", "1"),
            ("ta", "response", "0"),
        ]
    );
    let span_ids: Vec<String> = got
        .iter()
        .map(|c| format!("{:016x}", c.span_id()))
        .collect();
    // Down the chain, each request's parent is the one before; C's reply
    // is C's request's child; B's deferred answer (made while it handled
    // C's reply) is the child of B's request, as it answers that.
    let host = format!("{:016x}", p.span_id());
    let parents = [
        &host,
        &span_ids[0],
        &span_ids[1],
        &span_ids[2],
        &span_ids[1],
    ];
    for ((f, id), parent) in seen.iter().zip(&span_ids).zip(parents) {
        assert_eq!(f["name"], "wasmshard.handle");
        assert_eq!(&f["span_id"], id, "{f:?}");
        assert_eq!(&f["parent_span_id"], parent, "{f:?}");
        assert_eq!(f["outcome"], "handled", "{f:?}");
    }

    // Untraced: no context anywhere, and no span.
    let before = spans_of_actor("ta");
    let reply = request(&rt, a, None);
    assert_eq!(contexts(&reply, 1), [None; 5]);
    assert!(rt.wait_idle(Duration::from_secs(10)));
    assert_eq!(spans_of_actor("ta"), before);
    let traced: u64 = rt.stats().shards.iter().map(|s| s.traced).sum();
    assert_eq!(traced, 5);
    rt.shutdown();
}

/// What the native actor at the chain's end saw: its context, the payload.
type Seen = (Option<TraceContext>, Vec<u8>);

/// A tell chain: A (component, shard 0) → B (component, shard 1) → a native
/// actor (shard 0): three spans of one trace, the native actor reading its
/// context with `Context::trace` (none in its `init`).
#[test]
fn a_tell_chain_carries_the_trace_to_a_native_actor() {
    capture();
    let rt = builder(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let a = spawn(&rt, &g, "sa", "tracer sb", 0);
    spawn(&rt, &g, "sb", "tracer sc", 1);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    rt.spawn_native(
        "sc",
        Some(0),
        move |cx: &mut Context<'_>, _: Address, payload: &[u8]| {
            log.lock().unwrap().push((cx.trace(), payload.to_vec()));
        },
    )
    .unwrap();
    let p = parent(2);
    rt.send_traced(a, b"t", p).unwrap();
    rt.send(a, b"u").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (mine, payload) = &seen[0];
    let mine = mine.expect("the native actor's message is traced");
    let hops = contexts(payload, 1);
    let (ca, cb) = (hops[0].unwrap(), hops[1].unwrap());
    assert_eq!(
        [ca.trace_id(), cb.trace_id(), mine.trace_id()],
        [p.trace_id(); 3]
    );
    let spans = spans_of(p.trace_id());
    let names: Vec<&str> = spans.iter().map(|f| f["actor"].as_str()).collect();
    assert_eq!(names, ["sa", "sb", "sc"]);
    assert_eq!(spans[2]["span_id"], format!("{:016x}", mine.span_id()));
    assert_eq!(spans[2]["parent_span_id"], format!("{:016x}", cb.span_id()));
    assert_eq!(spans[1]["parent_span_id"], format!("{:016x}", ca.span_id()));
    assert!(spans.iter().all(|f| f["kind"] == "message"));
    // The untraced tell: no context at any hop.
    assert_eq!(seen[1].0, None);
    assert_eq!(contexts(&seen[1].1, 1), [None, None]);
    rt.shutdown();
}

/// Rates outside 0..=1 are refused; with a rate of 1 a publication is one
/// trace, a span per subscriber, and every host message starts a trace of
/// its own (its first span has no parent); at 0 (the default) nothing is
/// traced.
#[test]
fn sampling_starts_traces_at_the_host() {
    capture();
    for bad in [-0.1, 1.5, f64::NAN] {
        let Err(e) = builder(1).trace_sampling(bad).build() else {
            panic!("{bad} refused")
        };
        assert!(e.to_string().contains("trace_sampling"), "{e}");
    }
    let rt = builder(2).trace_sampling(1.0).build().unwrap();
    let seen: Arc<Mutex<Vec<TraceContext>>> = Arc::default();
    for (name, shard) in [("s0", 0), ("s1", 1)] {
        let log = seen.clone();
        let s = rt
            .spawn_native(
                name,
                Some(shard),
                move |cx: &mut Context<'_>, _: Address, payload: &[u8]| {
                    if payload == b"sub" {
                        cx.subscribe("news.*").unwrap();
                    } else {
                        log.lock().unwrap().extend(cx.trace());
                    }
                },
            )
            .unwrap();
        rt.send(s, b"sub").unwrap();
    }
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let outcome = rt.publish("news.today", b"n").unwrap();
    assert_eq!(outcome.delivered, 2);
    assert!(rt.wait_idle(Duration::from_secs(10)));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].trace_id(), seen[1].trace_id());
        assert_ne!(seen[0].span_id(), seen[1].span_id());
        let spans = spans_of(seen[0].trace_id());
        assert_eq!(spans.len(), 2);
        assert!(
            spans
                .iter()
                .all(|f| f["parent_span_id"] == "0000000000000000")
        );
    }
    // An unsampled `traceparent` from upstream: not traced.
    let unsampled = parent(9).with_sampled(false);
    let s0 = rt.lookup("s0").unwrap();
    rt.send_traced(s0, b"n", unsampled).unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    assert_eq!(seen.lock().unwrap().len(), 2, "handled untraced");
    assert!(spans_of(unsampled.trace_id()).is_empty());

    if let Some(g) = guest(&rt) {
        let a = spawn(&rt, &g, "pa", "tracer", 1);
        let first = contexts(&request(&rt, a, None), 1)[0].expect("sampled");
        let second = contexts(&request(&rt, a, None), 1)[0].expect("sampled");
        assert_ne!(first.trace_id(), second.trace_id(), "a trace each");
        let spans = spans_of(first.trace_id());
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0]["parent_span_id"], "0000000000000000");
    }
    rt.shutdown();

    let rt = builder(1).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let a = spawn(&rt, &g, "pz", "tracer", 0);
    for _ in 0..100 {
        assert_eq!(contexts(&request(&rt, a, None), 1), [None]);
    }
    rt.shutdown();
}

/// Holds the requests it gets, answering them all when told `go`.
struct Holder {
    held: Vec<u64>,
    spans: Arc<Mutex<Vec<TraceContext>>>,
}

impl NativeActor for Holder {
    fn handle_message(&mut self, cx: &mut Context<'_>, _: Address, _: &[u8]) {
        for id in self.held.drain(..) {
            cx.respond(id, b"late").unwrap();
        }
    }
    fn handle_request(
        &mut self,
        cx: &mut Context<'_>,
        _: Address,
        id: u64,
        _: &[u8],
    ) -> Option<Vec<u8>> {
        self.spans.lock().unwrap().extend(cx.trace());
        self.held.push(id);
        None
    }
}

/// Asks the holder on each message; keeps the context of each response.
struct Asker {
    holder: Address,
    responses: Arc<Mutex<Vec<Option<TraceContext>>>>,
}

impl NativeActor for Asker {
    fn handle_message(&mut self, cx: &mut Context<'_>, _: Address, _: &[u8]) {
        cx.request(self.holder, b"q", Duration::from_secs(30))
            .unwrap();
    }
    fn handle_response(
        &mut self,
        cx: &mut Context<'_>,
        _: u64,
        response: Result<&[u8], RequestError>,
    ) {
        assert_eq!(response, Ok(&b"late"[..]));
        self.responses.lock().unwrap().push(cx.trace());
    }
}

/// A deferred request answered later, while the responder handles a message
/// of another trace (or none): the answer belongs to the request's trace.
#[test]
fn a_deferred_answer_keeps_the_trace_of_its_request() {
    capture();
    let rt = builder(2).build().unwrap();
    let spans: Arc<Mutex<Vec<TraceContext>>> = Arc::default();
    let holder = rt
        .spawn_native(
            "holder",
            Some(1),
            Holder {
                held: Vec::new(),
                spans: spans.clone(),
            },
        )
        .unwrap();
    let responses: Arc<Mutex<Vec<Option<TraceContext>>>> = Arc::default();
    let asker = rt
        .spawn_native(
            "asker",
            Some(0),
            Asker {
                holder,
                responses: responses.clone(),
            },
        )
        .unwrap();
    let (p, q) = (parent(4), parent(5));
    rt.send_traced(asker, b"ask", p).unwrap(); // traced request
    rt.send(asker, b"ask").unwrap(); // untraced request
    while rt.stats().actor("holder").unwrap().handled < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Answered while handling a message of trace `q`.
    rt.send_traced(holder, b"go", q).unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let responses = responses.lock().unwrap();
    assert_eq!(responses.len(), 2);
    let traced = responses[0].expect("the traced request's answer is traced");
    assert_eq!(traced.trace_id(), p.trace_id());
    assert_eq!(responses[1], None, "the untraced request's answer is not");
    // The answer's span is the child of the holder's handling of the request.
    let request_span = spans.lock().unwrap()[0];
    let answer = spans_of(p.trace_id())
        .into_iter()
        .find(|f| f["kind"] == "response")
        .expect("a span for the answer");
    assert_eq!(answer["actor"], "asker");
    assert_eq!(
        answer["parent_span_id"],
        format!("{:016x}", request_span.span_id())
    );
    assert_eq!(spans_of(q.trace_id()).len(), 1, "q: the `go` alone");
    rt.shutdown();
}

/// A supervised native actor that panics on a traced message: restarted, it
/// handles the next, untraced, message with no context.
#[test]
fn a_trace_does_not_outlive_a_failure() {
    let rt = builder(1).build().unwrap();
    let seen: Arc<Mutex<Vec<Option<TraceContext>>>> = Arc::default();
    let log = seen.clone();
    let a = rt
        .spawn_native_supervised("phoenix", Some(0), Restart::on_failure(), move || {
            let log = log.clone();
            move |cx: &mut Context<'_>, _: Address, payload: &[u8]| {
                log.lock().unwrap().push(cx.trace());
                assert_ne!(payload, b"panic", "panics on command");
            }
        })
        .unwrap();
    rt.send_traced(a, b"panic", parent(6)).unwrap();
    rt.send(a, b"after").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].is_some());
    assert_eq!(seen[1], None);
    assert_eq!(rt.stats().actor("phoenix").unwrap().restarts, 1);
    rt.shutdown();
}

/// A traced message whose handler traps: its span says how it failed, and
/// the actor's dead letters reach the dead-letter actor inside the trace.
#[test]
fn a_failing_traced_message_ends_its_span_with_the_failure() {
    capture();
    // Manual: both sends queue before the first is handled.
    let rt = builder(1).dead_letter_actor("dl").build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let seen: Arc<Mutex<Vec<Option<TraceContext>>>> = Arc::default();
    let log = seen.clone();
    rt.spawn_native(
        "dl",
        Some(0),
        move |cx: &mut Context<'_>, _: Address, _: &[u8]| {
            log.lock().unwrap().push(cx.trace());
        },
    )
    .unwrap();
    let t = spawn(&rt, &g, "ft", "trap", 0);
    let p = parent(3);
    // Held until the panic: the queued tell behind it is a dead letter.
    rt.send_traced(t, b"panic", p).unwrap();
    rt.send_traced(t, b"behind", p).unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let spans: Vec<Fields> = spans_of(p.trace_id())
        .into_iter()
        .filter(|f| f["actor"] == "ft")
        .collect();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert!(spans[0]["outcome"].contains("trap"), "{:?}", spans[0]);
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|c| c.is_some_and(|c| c.trace_id() == p.trace_id()))
    );
    rt.shutdown();
}

/// The message log's lines for the actor called `name`, as JSON.
fn logged(name: &str) -> Vec<serde_json::Value> {
    message_log()
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|v| v["actor"] == name)
        .collect()
}

/// Each line's `(event, kind, outcome)`.
fn summary(lines: &[serde_json::Value]) -> Vec<(&str, &str, &str)> {
    lines
        .iter()
        .map(|l| {
            let field = |k: &str| l[k].as_str().unwrap();
            (field("event"), field("kind"), field("outcome"))
        })
        .collect()
}

/// `log-messages`: an audited component's receives and sends, one JSON line
/// each with the trace id; actors whose names do not match log nothing.
#[test]
fn audited_actors_log_each_message_as_a_json_line() {
    message_log();
    let rt = builder(2).log_messages(["audited-*"]).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let a = spawn(&rt, &g, "audited-a", "tracer plain-b", 0);
    let got = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = got.clone();
    let b = rt
        .spawn_native(
            "plain-b",
            Some(1),
            move |_: &mut Context<'_>, _: Address, _: &[u8]| {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
        )
        .unwrap();
    let p = parent(7);
    rt.send_traced(a, b"t", p).unwrap();
    rt.send(a, b"u").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let lines = logged("audited-a");
    let trace = format!("{:032x}", p.trace_id());
    let events = summary(&lines);
    assert_eq!(
        events,
        [
            ("receive", "message", "handled"),
            ("send", "message", "admitted"),
            ("receive", "message", "handled"),
            ("send", "message", "admitted"),
        ],
        "{lines:?}"
    );
    assert_eq!(lines[0]["trace_id"], trace);
    assert_eq!(lines[1]["trace_id"], trace);
    assert_eq!(lines[1]["to"], b.to_string());
    assert_eq!(lines[1]["size"], 1 + 24);
    assert_eq!(lines[0]["from"], Address::HOST.to_string());
    assert!(lines[2]["trace_id"].is_null());
    assert!(logged("plain-b").is_empty());

    assert_eq!(got.load(std::sync::atomic::Ordering::Relaxed), 2);
    rt.shutdown();
}

/// `log-messages` for a native actor: its refused sends, requests and
/// publications with why (and the topic), and a receive it failed on.
#[test]
fn audited_refusals_and_failures_are_logged() {
    message_log();
    let rt = builder(1).log_messages(["audited-*"]).build().unwrap();
    let sink = rt
        .spawn_native(
            "sink",
            Some(0),
            |_: &mut Context<'_>, _: Address, _: &[u8]| {},
        )
        .unwrap();
    let forged = Address::from_bits(sink.to_bits() ^ (1 << 40));
    let n = rt
        .spawn_native(
            "audited-n",
            Some(0),
            move |cx: &mut Context<'_>, _: Address, payload: &[u8]| {
                if payload == b"boom" {
                    panic!("boom");
                }
                assert!(cx.send(forged, b"x").is_err());
                assert!(cx.request(forged, b"yy", Duration::from_secs(1)).is_err());
                assert!(cx.publish("news.big", &[0; 70_000]).is_err());
                cx.send(sink, b"ok").unwrap();
            },
        )
        .unwrap();
    rt.send(n, b"go").unwrap();
    rt.send(n, b"boom").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let lines = logged("audited-n");
    let summary = summary(&lines);
    assert_eq!(
        summary[..5],
        [
            ("send", "message", "unknown-target"),
            ("send", "request", "unknown-target"),
            ("send", "publication", "too-large"),
            ("receive", "message", "handled"),
            ("send", "message", "admitted"),
        ],
        "{lines:?}"
    );
    assert_eq!(lines[0]["to"], forged.to_string());
    assert_eq!(lines[1]["size"], 2);
    assert_eq!(lines[2]["topic"], "news.big");
    assert_eq!(lines[2]["size"], 70_000);
    assert_eq!(lines[4]["to"], sink.to_string());
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[5]["event"], "receive");
    assert!(
        lines[5]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("failed: native actor panicked: boom"),
        "{lines:?}"
    );
    assert!(logged("sink").is_empty());
    rt.shutdown();
}
