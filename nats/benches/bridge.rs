//! Tells and requests over NATS between two processes, beside the same loops
//! in one process (host to an actor on another shard) and a bare `async-nats`
//! publish/subscribe and request/reply loop (the floor), in one run:
//!
//! ```sh
//! cargo bench -p wasmshard-nats --bench bridge            # nats-server on PATH
//! ```
//!
//! The bench starts its own `nats-server` on a free localhost port, and node
//! `a` as a child process (this program again): a native actor `sink` that
//! counts tells and answers each request with the count so far.

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmshard::{Address, Context, NativeActor, Runtime, SendError};
use wasmshard_nats::Bridge;

const TELLS: u64 = 200_000;
const REQUESTS: usize = 10_000;
const ROLE: &str = "WASMSHARD_BRIDGE_BENCH_NODE_A";

/// Counts tells; answers a request with the count.
struct Sink(Arc<AtomicU64>);

impl NativeActor for Sink {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn handle_request(
        &mut self,
        _: &mut Context<'_>,
        _: Address,
        _: u64,
        _: &[u8],
    ) -> Option<Vec<u8>> {
        Some(self.0.load(Ordering::Relaxed).to_le_bytes().to_vec())
    }
}

fn main() {
    if let Ok(url) = std::env::var(ROLE) {
        return node_a(&url);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server on PATH (Debian: apt-get install nats-server)");
    let url = format!("nats://127.0.0.1:{port}");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("bare async-nats ...");
    let floor = floor(&url);
    eprintln!("in process ...");
    let local = in_process();
    eprintln!("two processes over NATS ...");
    let bridged = across_processes(&url);
    println!("{:<44} {:>12} {:>12}", "", "tell ns/msg", "request p50 ns");
    for (name, (tell, request)) in [
        ("in process (host -> actor, other shard)", local),
        ("bare async-nats (pub/sub, request/reply)", floor),
        ("wasmshard over NATS (two processes)", bridged),
    ] {
        println!("{name:<44} {tell:>12.0} {request:>12.0}");
    }
    println!(
        "bridge / floor: tell {:.2}x, request {:.2}x",
        bridged.0 / floor.0,
        bridged.1 / floor.1
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// Node a: `sink` exported; runs until its stdin closes.
fn node_a(url: &str) {
    let rt = Runtime::builder().shards(2).build().unwrap();
    rt.spawn_native("sink", Some(1), Sink(Arc::default()))
        .unwrap();
    let bridge = Bridge::connect(url, "a", &rt).unwrap();
    bridge.export("sink").unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    drop(bridge);
    rt.shutdown();
}

/// Sends `TELLS` tells to `to` (waiting while its mailbox is full), then a
/// request that comes after them all: ns per tell, and the sink's count.
fn tells(rt: &Runtime, to: Address) -> (f64, u64) {
    let started = Instant::now();
    for seq in 0..TELLS {
        loop {
            match rt.send(to, &seq.to_le_bytes()) {
                Err(SendError::MailboxFull) => std::thread::yield_now(),
                other => break other.unwrap(),
            }
        }
    }
    let barrier = loop {
        match rt.request(to, b"count", Duration::from_secs(60)) {
            Err(SendError::MailboxFull) => std::thread::yield_now(),
            other => break other.unwrap(),
        }
    };
    let count = barrier.wait(Duration::from_secs(60)).unwrap().unwrap();
    let elapsed = started.elapsed().as_nanos() as f64;
    let count = u64::from_le_bytes(count.try_into().unwrap());
    (elapsed / TELLS as f64, count)
}

/// The median of `REQUESTS` sequential round trips to `to`.
fn requests(rt: &Runtime, to: Address) -> f64 {
    let mut samples: Vec<u128> = (0..REQUESTS)
        .map(|_| {
            let started = Instant::now();
            rt.request(to, b"q", Duration::from_secs(10))
                .unwrap()
                .wait(Duration::from_secs(10))
                .unwrap()
                .unwrap();
            started.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2] as f64
}

fn in_process() -> (f64, f64) {
    let rt = Runtime::builder().shards(2).build().unwrap();
    let sink = rt
        .spawn_native("sink", Some(1), Sink(Arc::default()))
        .unwrap();
    let (tell, count) = tells(&rt, sink);
    assert_eq!(count, TELLS);
    let request = requests(&rt, sink);
    rt.shutdown();
    (tell, request)
}

fn across_processes(url: &str) -> (f64, f64) {
    let mut node_a = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufReader::new(node_a.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    let rt = Runtime::builder().shards(2).build().unwrap();
    let bridge = Bridge::connect(url, "b", &rt).unwrap();
    let sink = bridge.import(&rt, "sink", "a").unwrap();
    let (tell, count) = tells(&rt, sink);
    let stats = bridge.stats();
    if count != TELLS {
        eprintln!("note: {count} of {TELLS} tells arrived; the rest counted: {stats:?}");
    }
    let request = requests(&rt, sink);
    drop(bridge);
    rt.shutdown();
    drop(node_a.stdin.take());
    let _ = node_a.wait();
    (tell, request)
}

/// The same loops on bare `async-nats`: one client publishes, another
/// subscribed counts; then sequential requests to a responder.
fn floor(url: &str) -> (f64, f64) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        use futures_util::StreamExt;
        let publisher = async_nats::connect(url).await.unwrap();
        // Room for every tell (as the bridge's own subscriptions have): a
        // publisher faster than the subscriber must not make it drop.
        let subscriber = async_nats::ConnectOptions::new()
            .subscription_capacity(TELLS as usize)
            .connect(url)
            .await
            .unwrap();
        let mut sub = subscriber.subscribe("floor.tell").await.unwrap();
        let mut responder = subscriber.subscribe("floor.request").await.unwrap();
        subscriber.flush().await.unwrap();
        let counting = tokio::spawn(async move {
            let mut n = 0u64;
            while n < TELLS {
                sub.next().await.unwrap();
                n += 1;
            }
        });
        let answering = tokio::spawn({
            let client = subscriber.clone();
            async move {
                while let Some(m) = responder.next().await {
                    if let Some(reply) = m.reply {
                        client.publish(reply, m.payload).await.unwrap();
                    }
                }
            }
        });
        let started = Instant::now();
        for seq in 0..TELLS {
            publisher
                .publish("floor.tell", seq.to_le_bytes().to_vec().into())
                .await
                .unwrap();
        }
        counting.await.unwrap();
        let tell = started.elapsed().as_nanos() as f64 / TELLS as f64;
        let mut samples = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let started = Instant::now();
            publisher
                .request("floor.request", "q".into())
                .await
                .unwrap();
            samples.push(started.elapsed().as_nanos());
        }
        samples.sort_unstable();
        answering.abort();
        (tell, samples[samples.len() / 2] as f64)
    })
}
