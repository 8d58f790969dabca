//! What the Rust guest SDK costs per message: host tells and host requests to the
//! SDK's counter example (`examples/guests/counter`), a typed `Add(1)` or `Get`
//! in each codec, against the same to the raw-bytes WAT fixtures (`counter.wat`
//! takes a tell; `responder.wat` answers a request with its payload), measured
//! in one run on a manual runtime (one shard, no threads) so the ratios compare.
//! The host encodes every payload before timing; what is timed is delivery, the
//! guest's decode and handling, and for requests its encoded reply back to the
//! host.
//!
//! Needs the example built first:
//!
//! ```sh
//! cargo build --release --target wasm32-unknown-unknown -p wasmshard-example-counter
//! RUST_LIB_BACKTRACE=0 cargo bench --bench typed
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use wasmshard::codec::{self, Codec};
use wasmshard::{Address, Runtime, SpawnOptions};

#[derive(Serialize)]
enum Msg {
    Add(u64),
}

#[derive(Serialize)]
enum Req {
    Get,
}

/// Tells per timed batch (the mailbox takes them all).
const BATCH: u64 = 512;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Sends `payload` `iters` times to `to`, stepping the runtime after each batch.
fn tells(rt: &Runtime, to: Address, payload: &[u8], iters: u64) -> Duration {
    let mut left = iters;
    let start = Instant::now();
    while left > 0 {
        let n = left.min(BATCH);
        for _ in 0..n {
            rt.send(to, payload).expect("admitted");
        }
        rt.run_until_stalled();
        left -= n;
    }
    start.elapsed()
}

/// `iters` request round trips from the host to `to`, one at a time.
fn requests(rt: &Runtime, to: Address, payload: &[u8], iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let reply = rt
            .request(to, payload, Duration::from_secs(60))
            .expect("admitted");
        rt.run_until_stalled();
        let bytes = reply.try_get().expect("answered").expect("a reply");
        std::hint::black_box(bytes);
    }
    start.elapsed()
}

fn typed(c: &mut Criterion) {
    let example =
        root().join("target/wasm32-unknown-unknown/release/wasmshard_example_counter.wasm");
    if !example.is_file() {
        eprintln!(
            "typed: {} is missing; build it with `cargo build --release --target \
             wasm32-unknown-unknown -p wasmshard-example-counter`",
            example.display()
        );
        return;
    }
    let rt = Runtime::builder()
        .shards(1)
        .mailbox_capacity(BATCH as u32)
        .build_manual()
        .expect("runtime");
    let sdk = rt.load_component_file(&example).expect("the SDK counter");
    let raw = rt
        .load_component_file(root().join("fixtures/counter.wat"))
        .expect("counter.wat");
    let responder = rt
        .load_component_file(root().join("fixtures/responder.wat"))
        .expect("responder.wat");
    let typed = rt.spawn(&sdk, SpawnOptions::new("typed")).unwrap();
    let plain = rt.spawn(&raw, SpawnOptions::new("raw")).unwrap();
    let answering = rt
        .spawn(&responder, SpawnOptions::new("responder"))
        .unwrap();

    let mut group = c.benchmark_group("typed_tell");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("raw_wat", |b| {
        b.iter_custom(|iters| tells(&rt, plain, b"12345678", iters))
    });
    for codec in [Codec::Json, Codec::Cbor, Codec::MessagePack] {
        let payload = codec::encode(codec, &Msg::Add(1)).unwrap();
        group.bench_function(format!("sdk_{codec}"), |b| {
            b.iter_custom(|iters| tells(&rt, typed, &payload, iters))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("typed_request");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("raw_wat", |b| {
        b.iter_custom(|iters| requests(&rt, answering, b"12345678", iters))
    });
    for codec in [Codec::Json, Codec::Cbor, Codec::MessagePack] {
        let payload = codec::encode(codec, &Req::Get).unwrap();
        group.bench_function(format!("sdk_{codec}"), |b| {
            b.iter_custom(|iters| requests(&rt, typed, &payload, iters))
        });
    }
    group.finish();
    let stats = rt.stats();
    assert!(stats.actors.iter().all(|a| a.failure.is_none()));
}

criterion_group!(benches, typed);
criterion_main!(benches);
