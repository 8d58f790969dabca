//! Two runtimes in one process, bridged through a real `nats-server`.

mod server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use server::{Server, eventually};
use wasmshard::{Address, Context, NativeActor, RequestError, Runtime, SendError};
use wasmshard_nats::{Bridge, BridgeError, BridgeOptions, BridgeStats, Reason};

fn runtime() -> Runtime {
    Runtime::builder().shards(2).build().unwrap()
}

/// Counts sequenced tells (`u64` little-endian) and whether they came in order.
#[derive(Clone, Default)]
struct Seen {
    count: Arc<AtomicU64>,
    next: Arc<AtomicU64>,
    in_order: Arc<AtomicBool>,
    from: Arc<Mutex<Option<Address>>>,
}

impl Seen {
    fn sink(&self) -> impl FnMut(&mut Context<'_>, Address, &[u8]) + Send + 'static {
        let seen = self.clone();
        seen.in_order.store(true, Ordering::Relaxed);
        move |_, from, payload| {
            *seen.from.lock().unwrap() = Some(from);
            let seq = u64::from_le_bytes(payload.try_into().unwrap());
            if seq < seen.next.swap(seq + 1, Ordering::Relaxed) {
                seen.in_order.store(false, Ordering::Relaxed);
            }
            seen.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends `payload` from the host, waiting while the target's mailbox is full.
fn send_waiting(rt: &Runtime, to: Address, payload: &[u8]) {
    loop {
        match rt.send(to, payload) {
            Err(SendError::MailboxFull) => std::thread::yield_now(),
            other => return other.unwrap(),
        }
    }
}

/// 100 000 sequenced tells from node b reach node a's actor in order; each is
/// delivered or its refusal counted at both bridges, and the exported actor
/// sees the ingress as their sender.
#[test]
fn a_hundred_thousand_tells_cross_in_order() {
    let Some(server) = Server::start("a_hundred_thousand_tells_cross_in_order") else {
        return;
    };
    let (a, b) = (runtime(), runtime());
    let seen = Seen::default();
    a.spawn_handler("sink", Some(1), seen.sink()).unwrap();
    let bridge_a = Bridge::connect(&server.url(), "a", &a).unwrap();
    assert_eq!(bridge_a.export("sink").unwrap(), "wasmshard.default.a.sink");
    let bridge_b = Bridge::connect(&server.url(), "b", &b).unwrap();
    let sink = bridge_b.import(&b, "sink", "a").unwrap();
    assert_eq!(b.lookup("sink@a"), Some(sink));
    const N: u64 = 100_000;
    for seq in 0..N {
        send_waiting(&b, sink, &seq.to_le_bytes());
    }
    eventually("every tell delivered or refused", || {
        let done =
            seen.count.load(Ordering::Relaxed) + bridge_b.stats().refused_remote.total() == N;
        if !done {
            eprintln!(
                "seen {} a {:?} b {:?}",
                seen.count.load(Ordering::Relaxed),
                bridge_a.stats(),
                bridge_b.stats()
            );
        }
        done
    });
    assert!(seen.in_order.load(Ordering::Relaxed), "in order");
    let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
    assert_eq!(sb.tells_out, N);
    // The ingress waits for room at the sink: none is refused.
    assert_eq!(seen.count.load(Ordering::Relaxed), N, "{sa:?}");
    assert_eq!(sb.dead_letters, 0);
    assert_eq!(sa.tells_in, seen.count.load(Ordering::Relaxed));
    assert_eq!(
        sa.refused_here, sb.refused_remote,
        "both sides count refusals"
    );
    assert_eq!(*seen.from.lock().unwrap(), Some(bridge_a.ingress()));
    eprintln!(
        "delivered {} of {N}; refused: {:?}",
        seen.count.load(Ordering::Relaxed),
        sb.refused_remote
    );
    drop((bridge_a, bridge_b));
    assert_eq!(a.shutdown().dead_letter_count, 0);
    assert_eq!(b.shutdown().dead_letter_count, 0);
}

/// Answers a request with its payload, reversed; `fail` panics (a failure);
/// `hold` defers it forever, recording how long its requester still waits.
struct Responder {
    remaining: Arc<Mutex<Vec<Duration>>>,
}

impl NativeActor for Responder {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        _: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        match payload {
            b"fail" => panic!("the responder fails"),
            b"hold" => {
                self.remaining
                    .lock()
                    .unwrap()
                    .push(ctx.remaining().unwrap());
                None
            }
            _ => Some(payload.iter().rev().copied().collect()),
        }
    }
}

/// Node a: `sink` (a [`Seen`]) and `responder`, both exported.
fn node_a(server: &Server) -> (Runtime, Bridge, Seen, Arc<Mutex<Vec<Duration>>>) {
    let a = runtime();
    let seen = Seen::default();
    a.spawn_handler("sink", Some(1), seen.sink()).unwrap();
    let remaining = Arc::new(Mutex::new(Vec::new()));
    let r = remaining.clone();
    a.spawn_native("responder", Some(0), Responder { remaining: r })
        .unwrap();
    let bridge = Bridge::connect(&server.url(), "a", &a).unwrap();
    bridge.export("sink").unwrap();
    bridge.export("responder").unwrap();
    (a, bridge, seen, remaining)
}

struct Pair {
    a: Runtime,
    b: Runtime,
    bridge_a: Bridge,
    bridge_b: Bridge,
    /// `responder@a` in b.
    proxy: Address,
    remaining: Arc<Mutex<Vec<Duration>>>,
}

fn pair(server: &Server) -> Pair {
    let (a, b) = (runtime(), runtime());
    let remaining = Arc::new(Mutex::new(Vec::new()));
    let r = remaining.clone();
    a.spawn_native_supervised(
        "responder",
        Some(0),
        wasmshard::Restart::on_failure().max_restarts(100),
        move || Responder {
            remaining: r.clone(),
        },
    )
    .unwrap();
    let bridge_a = Bridge::connect(&server.url(), "a", &a).unwrap();
    bridge_a.export("responder").unwrap();
    let bridge_b = Bridge::connect(&server.url(), "b", &b).unwrap();
    let proxy = bridge_b.import(&b, "responder", "a").unwrap();
    Pair {
        a,
        b,
        bridge_a,
        bridge_b,
        proxy,
        remaining,
    }
}

/// 10 000 request round trips (100 in flight at a time), each answered once
/// with its own reply.
#[test]
fn ten_thousand_requests_round_trip() {
    let Some(server) = Server::start("ten_thousand_requests_round_trip") else {
        return;
    };
    let p = pair(&server);
    for window in 0..100u32 {
        let pending: Vec<_> = (0..100u32)
            .map(|i| {
                let n = window * 100 + i;
                let reply =
                    p.b.request(p.proxy, &n.to_be_bytes(), Duration::from_secs(30))
                        .unwrap();
                (n, reply)
            })
            .collect();
        for (n, reply) in pending {
            let mut expected = n.to_be_bytes();
            expected.reverse();
            assert_eq!(
                reply.wait(Duration::from_secs(30)),
                Some(Ok(expected.to_vec()))
            );
        }
    }
    let (sa, sb) = (p.bridge_a.stats(), p.bridge_b.stats());
    assert_eq!((sb.requests_out, sb.replies_in), (10_000, 10_000));
    assert_eq!((sa.requests_in, sa.replies_out), (10_000, 10_000));
    assert_eq!(sb.requests_failed + sb.late_replies, 0);
}

/// A request carries its remaining deadline; one the remote actor never
/// answers ends with `timeout` for its requester; a remote failure ends it
/// with `target-failed`; an unexported name with `unknown-target`, counted
/// as `denied` at both bridges.
#[test]
fn remote_deadlines_failures_and_refusals_end_requests_once() {
    let Some(server) = Server::start("remote_deadlines_failures_and_refusals") else {
        return;
    };
    let p = pair(&server);
    // Held: the requester's own timeout ends it; the remote side saw the
    // deadline it carried.
    let held =
        p.b.request(p.proxy, b"hold", Duration::from_millis(400))
            .unwrap();
    assert_eq!(
        held.wait(Duration::from_secs(10)),
        Some(Err(RequestError::Timeout))
    );
    let left = p.remaining.lock().unwrap().clone();
    assert_eq!(left.len(), 1);
    // Rounded up to the millisecond at each hop (the proxy, the remote ingress).
    assert!(
        left[0] <= Duration::from_millis(402) && left[0] > Duration::from_millis(100),
        "the remote side waits what the requester still waits: {left:?}"
    );
    // The remote side ends it by the same deadline, a moment later: its
    // `timeout` comes back, and is counted (the requester had its end).
    eventually("the remote timeout", || {
        p.bridge_b.stats().refused_remote.get(Reason::Timeout) == 1
    });
    // A failure there ends it here.
    let failed =
        p.b.request(p.proxy, b"fail", Duration::from_secs(10))
            .unwrap();
    assert_eq!(
        failed.wait(Duration::from_secs(10)),
        Some(Err(RequestError::TargetFailed))
    );
    assert_eq!(
        p.bridge_b.stats().refused_remote.get(Reason::TargetFailed),
        1
    );
    // Restarted: it answers again.
    let again =
        p.b.request(p.proxy, b"ab", Duration::from_secs(10))
            .unwrap();
    assert_eq!(
        again.wait(Duration::from_secs(10)),
        Some(Ok(b"ba".to_vec()))
    );

    // Not exported: refused as denied, the request ends at once.
    let hidden = p.bridge_b.import(&p.b, "hidden", "a").unwrap();
    p.a.spawn_handler("hidden", None, |_, _, _| {}).unwrap();
    let denied = p.b.request(hidden, b"x", Duration::from_secs(30)).unwrap();
    assert_eq!(
        denied.wait(Duration::from_secs(10)),
        Some(Err(RequestError::UnknownTarget))
    );
    p.b.send(hidden, b"tell").unwrap();
    // An empty tell from the host is a message like any (not a wake-up).
    p.b.send(hidden, b"").unwrap();
    eventually("the tells' refusals", || {
        p.bridge_b.stats().refused_remote.get(Reason::Denied) == 3
    });
    assert_eq!(p.bridge_a.stats().refused_here.get(Reason::Denied), 3);

    // A node with no bridge: no responders, `unknown-target` at once.
    let nowhere = p.bridge_b.import(&p.b, "responder", "z").unwrap();
    let lost = p.b.request(nowhere, b"x", Duration::from_secs(30)).unwrap();
    assert_eq!(
        lost.wait(Duration::from_secs(10)),
        Some(Err(RequestError::UnknownTarget))
    );
    drop(p);
}

/// A slow remote consumer (100 µs a message, a mailbox of 16) on node a,
/// its bridge stalling at a full mailbox for `stall`, sent `n` sequenced
/// tells from node b: what it saw, and both bridges' counters once every
/// tell is handled or refused.
fn slow_consumer(stall: Duration, n: u64) -> Option<(Seen, BridgeStats, BridgeStats)> {
    let server = Server::start("a slow consumer")?;
    let a = Runtime::builder()
        .shards(2)
        .mailbox_capacity(16)
        .build()
        .unwrap();
    let b = runtime();
    let seen = Seen::default();
    let mut sink = seen.sink();
    a.spawn_handler("slow", Some(1), move |ctx, from, payload| {
        std::thread::sleep(Duration::from_micros(100));
        sink(ctx, from, payload);
    })
    .unwrap();
    let options = BridgeOptions::default().stall_limit(stall);
    let bridge_a = Bridge::connect_with(&server.url(), "a", &a, options).unwrap();
    bridge_a.export("slow").unwrap();
    let bridge_b = Bridge::connect(&server.url(), "b", &b).unwrap();
    let slow = bridge_b.import(&b, "slow", "a").unwrap();
    for seq in 0..n {
        send_waiting(&b, slow, &seq.to_le_bytes());
    }
    eventually("every tell handled or refused", || {
        seen.count.load(Ordering::Relaxed) + bridge_b.stats().refused_remote.total() == n
    });
    Some((seen, bridge_a.stats(), bridge_b.stats()))
}

/// With no stall, what the slow consumer's mailbox cannot take is refused:
/// the refusals come back counted by reason at both bridges.
#[test]
fn a_slow_consumer_s_refusals_come_back_counted() {
    let Some((_, sa, sb)) = slow_consumer(Duration::ZERO, 2_000) else {
        return;
    };
    let refused = sb.refused_remote;
    assert!(refused.get(Reason::MailboxFull) > 0, "{refused:?}");
    assert_eq!(refused.total(), refused.get(Reason::MailboxFull));
    assert_eq!(sa.refused_here, refused);
}

/// With the default stall limit, the ingress waits for room (senders are
/// slowed through the acknowledged window), and every tell arrives, in order.
#[test]
fn a_slow_consumer_slows_its_senders_and_loses_nothing() {
    let Some((seen, sa, sb)) = slow_consumer(BridgeOptions::default().stall_limit, 5_000) else {
        return;
    };
    assert_eq!(seen.count.load(Ordering::Relaxed), 5_000);
    assert!(seen.in_order.load(Ordering::Relaxed), "in order");
    assert_eq!(sb.refused_remote.total() + sa.refused_here.total(), 0);
}

/// Names that would change a subject are refused before anything starts; a
/// server that is not there is a connect error with its cause.
#[test]
fn bad_names_and_unreachable_servers_are_clear_errors() {
    let rt = runtime();
    for (node, options) in [
        ("a.b", BridgeOptions::default()),
        ("a", BridgeOptions::default().cluster("x y")),
        ("a", BridgeOptions::default().prefix("p.*")),
    ] {
        let e = Bridge::connect_with("nats://127.0.0.1:1", node, &rt, options).unwrap_err();
        assert!(matches!(e, BridgeError::BadName { .. }), "{e}");
    }
    let e = Bridge::connect("nats://127.0.0.1:1", "a", &rt).unwrap_err();
    assert!(matches!(e, BridgeError::Connect { .. }), "{e}");
    assert!(std::error::Error::source(&e).is_some(), "keeps its cause");
    assert!(rt.lookup("nats-bridge").is_none(), "nothing left behind");

    let Some(server) = Server::start("bad_names_and_unreachable_servers_are_clear_errors") else {
        return;
    };
    let bridge = Bridge::connect(&server.url(), "a", &rt).unwrap();
    assert!(matches!(
        bridge.export("a.b"),
        Err(BridgeError::BadName { .. })
    ));
    assert!(matches!(
        bridge.import(&rt, "x", "*"),
        Err(BridgeError::BadName { .. })
    ));
    bridge.import(&rt, "x", "b").unwrap();
    assert!(matches!(
        bridge.import(&rt, "x", "b"),
        Err(BridgeError::Spawn { .. })
    ));
    // Two tokens of 128 bytes make a proxy name of 257: over an actor
    // name's 256 bytes, refused by the runtime; one byte less is a proxy.
    let long = "n".repeat(128);
    let e = bridge.import(&rt, &long, &long).unwrap_err();
    assert!(
        matches!(
            e,
            BridgeError::Spawn {
                source: wasmshard::SpawnError::BadName(wasmshard::NameFault::TooLong(257)),
                ..
            }
        ),
        "{e}"
    );
    bridge.import(&rt, &long, &long[1..]).unwrap();
    // A second bridge on the same runtime needs an ingress name of its own.
    let e = Bridge::connect(&server.url(), "a2", &rt).unwrap_err();
    assert!(matches!(e, BridgeError::Spawn { .. }), "{e}");
    // A runtime admitting more than the server takes is refused.
    let big = Runtime::builder().max_payload(4 << 20).build().unwrap();
    let e = Bridge::connect(&server.url(), "big", &big).unwrap_err();
    assert!(matches!(e, BridgeError::PayloadLimit { .. }), "{e}");
}

/// The server stops mid-stream and comes back on its port: both bridges
/// reconnect, and every tell is delivered in order, or a dead letter of the
/// sending bridge (taken while it knew it was disconnected), or refused, or
/// counted lost by the receiving bridge (a gap in the sender's sequence,
/// reported back to it).
#[test]
fn a_server_restart_mid_stream_loses_nothing_uncounted() {
    let Some(mut server) = Server::start("a_server_restart_mid_stream_loses_nothing_uncounted")
    else {
        return;
    };
    let b = runtime();
    let (_a, bridge_a, seen, remaining) = node_a(&server);
    let bridge_b = Bridge::connect(&server.url(), "b", &b).unwrap();
    let sink = bridge_b.import(&b, "sink", "a").unwrap();
    let responder = bridge_b.import(&b, "responder", "a").unwrap();
    // A request the remote actor holds, in flight when the server goes.
    let held = b
        .request(responder, b"hold", Duration::from_secs(60))
        .unwrap();
    eventually("the request held", || remaining.lock().unwrap().len() == 1);
    let mut seq = 0u64;
    let mut send = |n: u64| {
        for _ in 0..n {
            send_waiting(&b, sink, &seq.to_le_bytes());
            seq += 1;
            if seq.is_multiple_of(50) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    send(3_000);
    server.stop();
    send(3_000);
    // In flight when the connection was lost: ended then, with an error.
    assert_eq!(
        held.wait(Duration::from_secs(10)),
        Some(Err(RequestError::TargetFailed))
    );
    // Made while disconnected: ended at once.
    let refused = b.request(responder, b"x", Duration::from_secs(60)).unwrap();
    assert_eq!(
        refused.wait(Duration::from_secs(10)),
        Some(Err(RequestError::TargetFailed))
    );
    assert_eq!(bridge_b.stats().requests_failed, 2);
    let server = Server::on(server.port).unwrap();
    send(3_000);
    eventually("both bridges back", || {
        let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
        sa.connected && sb.connected && sa.reconnects >= 1 && sb.reconnects >= 1
    });
    // What follows the restart shows any gap it left.
    std::thread::sleep(Duration::from_millis(200));
    send(1_000);
    let sent = seq;
    let accounted = || {
        let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
        seen.count.load(Ordering::Relaxed) + sa.refused_here.total() + sb.dead_letters
    };
    eventually("every tell delivered or counted", || accounted() == sent);
    assert!(seen.in_order.load(Ordering::Relaxed), "in order");
    let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
    assert!(sa.disconnects >= 1 && sb.disconnects >= 1);
    assert_eq!(
        sb.dead_letter_reasons.get(Reason::Disconnected),
        sb.dead_letters,
        "each dead letter says why: {sb:?}"
    );
    assert!(
        sb.dead_letters + sa.refused_here.get(Reason::Lost) > 0,
        "the restart cost something: {sa:?} {sb:?}"
    );
    // Reports of refusals cross NATS too, and the restart may lose some: the
    // refusing bridge's count is the exact one.
    let heard = bridge_b.stats().refused_remote;
    for reason in [Reason::MailboxFull, Reason::Lost] {
        assert!(
            heard.get(reason) <= sa.refused_here.get(reason),
            "{sa:?} {sb:?}"
        );
    }
    assert_eq!(sa.slow_consumer + sb.slow_consumer, 0);
    eprintln!(
        "sent {sent}: delivered {}, dead letters at b {}, refused at a {:?}, heard at b {:?}",
        seen.count.load(Ordering::Relaxed),
        sb.dead_letters,
        sa.refused_here,
        heard
    );
    drop(server);
}

/// The server stops while the client's queue is full (the server was frozen
/// and read nothing, so a publish waits for room there): the waiting publish
/// does not hold the bridge through the client's reconnection. The bridge
/// hears that it is disconnected, what comes meanwhile is counted at once, and
/// every tell is published or a dead letter.
#[test]
fn a_server_lost_under_a_full_client_queue_does_not_hold_the_bridge() {
    let Some(mut server) = Server::start("a_server_lost_under_a_full_client_queue") else {
        return;
    };
    let b = runtime();
    let bridge = Bridge::connect(&server.url(), "b", &b).unwrap();
    let proxy = bridge.import(&b, "sink", "a").unwrap();
    server.freeze();
    // More than the socket's buffers and the client's queue (2 048 messages)
    // hold, and less than a node's window and the outbound bytes: the
    // bridge's thread ends up waiting in a publish.
    const TELLS: u64 = 4_000;
    let payload = vec![7u8; 12 << 10];
    for _ in 0..TELLS {
        send_waiting(&b, proxy, &payload);
    }
    let mut last = u64::MAX;
    eventually("the client's queue full", || {
        let now = bridge.stats().tells_out;
        std::thread::sleep(Duration::from_millis(200));
        let still = now == last && now < TELLS;
        last = now;
        still
    });
    server.stop();
    eventually("the bridge disconnected", || !bridge.stats().connected);
    let refused = b.request(proxy, b"q", Duration::from_secs(600)).unwrap();
    assert_eq!(
        refused.wait(Duration::from_secs(10)),
        Some(Err(RequestError::TargetFailed))
    );
    let stats = bridge.close();
    assert_eq!(stats.tells_out + stats.dead_letters, TELLS, "{stats:?}");
    assert!(
        stats.dead_letter_reasons.get(Reason::Disconnected) > 0,
        "{stats:?}"
    );
    assert_eq!(stats.requests_failed, 1, "{stats:?}");
}

/// Requests whose requesters cancelled them still wait for their replies at
/// the bridge (the remote side may answer them), at most
/// `max_waiting_requests` of them: past that a request ends at once with
/// `target-failed`, however much room its proxy has.
#[test]
fn a_requester_that_asks_and_cancels_in_a_loop_is_bounded() {
    let Some(server) = Server::start("a_requester_that_asks_and_cancels") else {
        return;
    };
    let (_a, _bridge_a, _seen, remaining) = node_a(&server);
    let b = runtime();
    let options = BridgeOptions::default().max_waiting_requests(4);
    assert_eq!(options.max_waiting_requests, 4);
    let bridge_b = Bridge::connect_with(&server.url(), "b", &b, options).unwrap();
    let proxy = bridge_b.import(&b, "responder", "a").unwrap();
    for held in 1..=4 {
        let asked = b.request(proxy, b"hold", Duration::from_secs(60)).unwrap();
        eventually("the request held", || {
            remaining.lock().unwrap().len() == held
        });
        asked.cancel();
    }
    assert_eq!(bridge_b.stats().requests_out, 4);
    let refused = b.request(proxy, b"hold", Duration::from_secs(60)).unwrap();
    assert_eq!(
        refused.wait(Duration::from_secs(10)),
        Some(Err(RequestError::TargetFailed))
    );
    let stats = bridge_b.stats();
    assert_eq!(
        (stats.requests_out, stats.requests_failed),
        (4, 1),
        "{stats:?}"
    );
    assert_eq!(remaining.lock().unwrap().len(), 4, "never published");
}

/// A plain NATS client reaches an exported actor: a publish is a tell, a
/// NATS request a request. A bridge's numbered tells with a gap are counted
/// lost, and the gap is reported to the sender's refusal subject.
#[test]
fn plain_nats_clients_and_sequence_gaps() {
    let Some(server) = Server::start("plain_nats_clients_and_sequence_gaps") else {
        return;
    };
    let (_a, bridge, seen, _) = node_a(&server);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        use futures_util::StreamExt;
        let client = async_nats::connect(server.url()).await.unwrap();
        client
            .publish(
                "wasmshard.default.a.sink",
                7u64.to_le_bytes().to_vec().into(),
            )
            .await
            .unwrap();
        let reply = client
            .request("wasmshard.default.a.responder", "abc".into())
            .await
            .unwrap();
        assert_eq!(&reply.payload[..], b"cba");
        // Numbered tells from a "bridge" whose inbox is `_INBOX.peer`: 0, 1,
        // then 5 (three lost on the way).
        let mut refusals = client.subscribe("_INBOX.peer.refused").await.unwrap();
        client.flush().await.unwrap();
        for seq in [0u64, 1, 5] {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Wasmshard-Kind", "tell");
            headers.insert("Wasmshard-Seq", seq.to_string().as_str());
            client
                .publish_with_reply_and_headers(
                    "wasmshard.default.a.sink",
                    "_INBOX.peer.refused",
                    headers,
                    (100 + seq).to_le_bytes().to_vec().into(),
                )
                .await
                .unwrap();
        }
        let refusal = tokio::time::timeout(Duration::from_secs(10), refusals.next())
            .await
            .unwrap()
            .unwrap();
        let headers = refusal.headers.unwrap();
        assert_eq!(headers.get("Wasmshard-Error").unwrap().as_str(), "lost");
        assert_eq!(headers.get("Wasmshard-Count").unwrap().as_str(), "3");
        assert_eq!(headers.get("Wasmshard-Target").unwrap().as_str(), "sink");
        // Forged numbers: the largest, a jump far ahead, garbage, a forged
        // refusal count. None panics the bridge or counts a loss.
        for (reply, seq) in [
            ("_INBOX.forged.refused", u64::MAX.to_string()),
            ("_INBOX.peer.refused", (u64::MAX / 2).to_string()),
            ("_INBOX.peer.refused", "-1".to_string()),
            ("nodots", "7".to_string()),
        ] {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Wasmshard-Kind", "tell");
            headers.insert("Wasmshard-Seq", seq.as_str());
            client
                .publish_with_reply_and_headers(
                    "wasmshard.default.a.sink",
                    reply,
                    headers,
                    200u64.to_le_bytes().to_vec().into(),
                )
                .await
                .unwrap();
        }
        let reply = client
            .request("wasmshard.default.a.responder", "xy".into())
            .await
            .unwrap();
        assert_eq!(&reply.payload[..], b"yx", "the bridge still serves");
    });
    eventually("eight tells", || seen.count.load(Ordering::Relaxed) == 8);
    let stats = bridge.stats();
    assert_eq!(stats.refused_here.get(Reason::Lost), 3);
    assert_eq!((stats.tells_in, stats.requests_in), (8, 2));
}

/// A request from NATS waits at most `max_request_timeout`, whatever its
/// header asks (a peer cannot hold the ingress's open requests for days), and
/// a plain client's default is held to it too.
#[test]
fn wire_timeouts_are_capped() {
    let Some(server) = Server::start("wire_timeouts_are_capped") else {
        return;
    };
    let a = runtime();
    let remaining = Arc::new(Mutex::new(Vec::new()));
    let r = remaining.clone();
    a.spawn_native("responder", Some(0), Responder { remaining: r })
        .unwrap();
    let cap = Duration::from_secs(5);
    let options = BridgeOptions::default().max_request_timeout(cap);
    assert_eq!(options.max_request_timeout, cap);
    let bridge = Bridge::connect_with(&server.url(), "a", &a, options).unwrap();
    bridge.export("responder").unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let day = Duration::from_secs(86_400).as_nanos().to_string();
        for header in [Some(day.as_str()), Some("18446744073709551615"), None] {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(ns) = header {
                headers.insert("Wasmshard-Timeout-Ns", ns);
            }
            client
                .publish_with_reply_and_headers(
                    "wasmshard.default.a.responder",
                    "_INBOX.held",
                    headers,
                    "hold".into(),
                )
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
    });
    eventually("three held requests", || {
        remaining.lock().unwrap().len() == 3
    });
    // The runtime keeps deadlines to the millisecond, rounded up.
    for left in remaining.lock().unwrap().iter() {
        assert!(
            *left <= cap + Duration::from_millis(1) && *left > Duration::ZERO,
            "{left:?}"
        );
    }
    assert_eq!(bridge.close().requests_in, 3);
    a.shutdown_within(Duration::ZERO);
}

/// Closing a bridge whose server is gone returns promptly, and what its
/// proxies handed it that it never published is counted, not dropped.
#[test]
fn closing_without_a_server_is_prompt_and_counts_what_it_held() {
    let Some(mut server) = Server::start("closing_without_a_server_is_prompt") else {
        return;
    };
    let b = runtime();
    let bridge = Bridge::connect(&server.url(), "b", &b).unwrap();
    let proxy = bridge.import(&b, "sink", "a").unwrap();
    server.stop();
    for seq in 0..1_000u64 {
        send_waiting(&b, proxy, &seq.to_le_bytes());
    }
    let pending = b.request(proxy, b"q", Duration::from_secs(60)).unwrap();
    assert!(b.wait_idle(Duration::from_secs(10)) || pending.try_get().is_some());
    let started = std::time::Instant::now();
    let stats = bridge.close();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closing took {:?}",
        started.elapsed()
    );
    assert_eq!(
        pending.wait(Duration::from_secs(10)),
        Some(Err(RequestError::TargetFailed))
    );
    // Published before the client knew, or counted: nothing else.
    assert_eq!(
        stats.tells_out + stats.dead_letters + stats.refused_remote.total(),
        1_000,
        "{stats:?}"
    );
    assert_eq!(stats.requests_failed, 1);
    // Each dead letter with its reason: most because the client was away.
    let reasons = stats.dead_letter_reasons;
    assert_eq!(reasons.total(), stats.dead_letters);
    assert_eq!(
        reasons.get(Reason::Disconnected) + reasons.get(Reason::Closed),
        stats.dead_letters
    );
    assert!(reasons.get(Reason::Disconnected) > 0, "{stats:?}");
    // After the bridge is closed, its proxy counts what it takes.
    b.send(proxy, b"late").unwrap();
    assert!(b.wait_idle(Duration::from_secs(10)));
    assert_eq!(b.shutdown().dead_letter_count, 0);
}

/// A runtime that shuts down under a live bridge: once its drain is over,
/// what arrives from NATS is refused as `shutting-down`, and a remote
/// request to it ends at once.
#[test]
fn a_runtime_shut_down_under_its_bridge_refuses_what_arrives() {
    let Some(server) = Server::start("a_runtime_shut_down_under_its_bridge") else {
        return;
    };
    let p = pair(&server);
    let Pair {
        a,
        b,
        bridge_a,
        bridge_b,
        proxy,
        ..
    } = p;
    a.shutdown();
    let r = b.request(proxy, b"ab", Duration::from_secs(30)).unwrap();
    assert_eq!(
        r.wait(Duration::from_secs(10)),
        Some(Err(RequestError::TargetFailed))
    );
    assert_eq!(bridge_a.stats().refused_here.get(Reason::ShuttingDown), 1);
    assert_eq!(bridge_b.stats().refused_remote.get(Reason::ShuttingDown), 1);
}

/// Holds the first request it gets until released (telling the test it has
/// it); takes tells.
struct Blocker {
    entered: std::sync::mpsc::Sender<()>,
    release: Arc<AtomicBool>,
}

impl NativeActor for Blocker {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        _: &mut Context<'_>,
        _: Address,
        _: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let _ = self.entered.send(());
        while !self.release.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Some(payload.to_vec())
    }
}

/// A runtime shut down while its ingress holds a tell stalled at a full
/// mailbox and a request for a remote requester: the tell is refused
/// (`shutting-down`, counted at both bridges) and the request ends for its
/// requester at once, not by its timeout.
#[test]
fn a_shutdown_answers_what_the_ingress_held() {
    let Some(server) = Server::start("a_shutdown_answers_what_the_ingress_held") else {
        return;
    };
    let a = Runtime::builder()
        .shards(2)
        .mailbox_capacity(2)
        .build()
        .unwrap();
    let b = runtime();
    // It waits for room for as long as the test lasts.
    let options = BridgeOptions::default().stall_limit(Duration::from_secs(3600));
    let bridge_a = Bridge::connect_with(&server.url(), "a", &a, options).unwrap();
    // The blocker on the shard the ingress is not on: the ingress runs while
    // the blocker holds its own shard.
    let ingress_shard = a
        .stats()
        .actors
        .iter()
        .find(|s| s.name == "nats-bridge")
        .unwrap()
        .shard;
    let (entered, has_it) = std::sync::mpsc::channel();
    let release = Arc::new(AtomicBool::new(false));
    let blocker = Blocker {
        entered,
        release: release.clone(),
    };
    a.spawn_native("blocker", Some(1 - ingress_shard), blocker)
        .unwrap();
    bridge_a.export("blocker").unwrap();
    let bridge_b = Bridge::connect(&server.url(), "b", &b).unwrap();
    let proxy = bridge_b.import(&b, "blocker", "a").unwrap();

    let request = b.request(proxy, b"held", Duration::from_secs(600)).unwrap();
    has_it.recv_timeout(Duration::from_secs(20)).unwrap();
    // Two fill the blocker's mailbox (or one does, and one waits queued
    // behind the stalled one).
    const TELLS: u64 = 3;
    for _ in 0..TELLS {
        send_waiting(&b, proxy, b"tell");
    }
    eventually("a tell stalled at the full mailbox", || {
        bridge_a.stats().stalls == 1
    });

    // The blocker's shard is released once the request ended for its
    // requester, which only the ingress's answer does while the blocker
    // holds it (or, on failure, after a while: the shutdown waits for it).
    let (ended, report) = std::thread::scope(|scope| {
        let releaser = scope.spawn(|| {
            let ended = request.wait(Duration::from_secs(20));
            release.store(true, Ordering::SeqCst);
            ended
        });
        let report = a.shutdown_within(Duration::ZERO);
        (releaser.join().unwrap(), report)
    });
    // The request ended with the remote runtime's shutdown.
    assert_eq!(ended, Some(Err(RequestError::TargetFailed)));
    // Each tell reached the blocker's mailbox (a dead letter of the runtime
    // now) or was refused here, the refusals reported back.
    let here = bridge_a.stats();
    let refused = here.refused_here.get(Reason::ShuttingDown);
    assert!(refused >= 1, "{here:?}");
    assert_eq!(here.tells_in + refused, TELLS, "{here:?}");
    // (Besides them, a retry timer or wake-up of the ingress may be one.)
    assert!(report.dead_letter_count >= here.tells_in, "{report:?}");
    eventually("the refusals and the request's end reported", || {
        bridge_b.stats().refused_remote.get(Reason::ShuttingDown) == refused + 1
    });
    assert_eq!(b.shutdown().dead_letter_count, 0);
}

/// Makes a request to `to` for every message it gets; keeps how each ended.
struct Asker {
    to: Address,
    ended: Ended,
}

/// How the requests an [`Asker`] made ended, in order.
type Ended = Arc<Mutex<Vec<Result<Vec<u8>, RequestError>>>>;

impl NativeActor for Asker {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        ctx.request(self.to, payload, Duration::from_secs(600))
            .unwrap();
    }

    fn handle_response(
        &mut self,
        _: &mut Context<'_>,
        _: u64,
        response: Result<&[u8], RequestError>,
    ) {
        self.ended
            .lock()
            .unwrap()
            .push(response.map(<[u8]>::to_vec));
    }
}

/// A proxy holds at most `max_open_requests` requests: one beyond that
/// fails at once with `target-failed`, counted, and is never published (the
/// remote actor never runs it).
#[test]
fn a_proxy_holds_no_more_requests_than_its_runtime_allows() {
    let Some(server) = Server::start("a_proxy_holds_no_more_requests") else {
        return;
    };
    let (a, bridge_a, seen, remaining) = node_a(&server);
    let b = Runtime::builder()
        .shards(2)
        .max_open_requests(2)
        .build()
        .unwrap();
    let bridge_b = Bridge::connect(&server.url(), "b", &b).unwrap();
    let proxy = bridge_b.import(&b, "responder", "a").unwrap();
    // Two held by the remote responder: the proxy holds two.
    let held: Vec<_> = (0..2)
        .map(|_| b.request(proxy, b"hold", Duration::from_secs(600)).unwrap())
        .collect();
    eventually("both held remotely", || {
        remaining.lock().unwrap().len() == 2
    });
    let ended = Arc::new(Mutex::new(Vec::new()));
    let asker = Asker {
        to: proxy,
        ended: ended.clone(),
    };
    let asker = b.spawn_native("asker", None, asker).unwrap();
    b.send(asker, b"hold").unwrap();
    eventually("the third request ended", || {
        !ended.lock().unwrap().is_empty()
    });
    assert_eq!(ended.lock().unwrap()[..], [Err(RequestError::TargetFailed)]);
    let stats = bridge_b.stats();
    assert_eq!(
        (stats.requests_out, stats.requests_failed),
        (2, 1),
        "{stats:?}"
    );
    // Nothing more reached node a: a tell published after it arrives after
    // it (one stream per node), and by then a has taken two requests.
    let sink = bridge_b.import(&b, "sink", "a").unwrap();
    b.send(sink, &0u64.to_le_bytes()).unwrap();
    eventually("the tell behind it", || {
        seen.count.load(Ordering::Relaxed) == 1
    });
    assert_eq!(bridge_a.stats().requests_in, 2);
    assert_eq!(remaining.lock().unwrap().len(), 2);
    drop((held, bridge_a, bridge_b));
    a.shutdown_within(Duration::ZERO);
    b.shutdown_within(Duration::ZERO);
}

/// An ingress stopped while its runtime runs: what arrives from NATS after
/// is refused (`target-stopped`, reported), not queued for no one.
#[test]
fn what_arrives_for_a_stopped_ingress_is_refused() {
    let Some(server) = Server::start("what_arrives_for_a_stopped_ingress") else {
        return;
    };
    let (a, bridge_a, seen, _) = node_a(&server);
    let b = runtime();
    let bridge_b = Bridge::connect(&server.url(), "b", &b).unwrap();
    let sink = bridge_b.import(&b, "sink", "a").unwrap();
    let responder = bridge_b.import(&b, "responder", "a").unwrap();
    b.send(sink, &0u64.to_le_bytes()).unwrap();
    eventually("the first tell", || seen.count.load(Ordering::Relaxed) == 1);

    a.stop(a.lookup("nats-bridge").unwrap()).unwrap();
    b.send(sink, &1u64.to_le_bytes()).unwrap();
    let request = b
        .request(responder, b"ab", Duration::from_secs(600))
        .unwrap();
    assert_eq!(
        request.wait(Duration::from_secs(10)),
        Some(Err(RequestError::TargetStopped))
    );
    eventually("the tell's refusal reported", || {
        bridge_b.stats().refused_remote.get(Reason::TargetStopped) == 2
    });
    assert_eq!(bridge_a.stats().refused_here.get(Reason::TargetStopped), 2);
    assert_eq!(seen.count.load(Ordering::Relaxed), 1);
    drop((bridge_a, bridge_b));
    a.shutdown();
    b.shutdown();
}
