//! The batch lane. `batch/*`: what `batch-host.send-frames` saves on the
//! sending side: `framer.wat` sends 4096 messages of 64 bytes to a native
//! actor that counts them, one `send` call each (`send`) or in `send-frames`
//! calls of 1, 8, 64 or 256 frames (`frames-K`). Per message: the guest's
//! calls, admission, routing and the native actor's turn (the same in every
//! variant). `batch-c2c/*`: component to component, the same 4096 messages
//! to a component that counts them: `send` to `counter.wat` (one
//! `handle-message` each), `frames-64` to `counter.wat`, and `frames-64` to
//! `batcount.wat`, a batched actor (`handle-messages`, 64 a turn): both ends
//! batched. Manual runtime, one shard, mailboxes large enough that nothing is
//! refused.
//!
//! ```sh
//! cargo bench --bench batch
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmshard::{Context, Grants, Runtime, SpawnOptions};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Spawns `framer.wat`, sending to the actor `sink` (and granted it).
fn framer(rt: &Runtime) -> wasmshard::Address {
    let framer = rt
        .load_component_file(fixture("framer.wat"))
        .expect("framer.wat");
    rt.spawn(
        &framer,
        SpawnOptions::new("framer")
            .config("sink")
            .grants(Grants::none().lookup(["sink"]).send(["sink"])),
    )
    .expect("spawn")
}

/// Messages per round.
const MESSAGES: u32 = 4096;

fn batch(c: &mut Criterion) {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .mailbox_capacity(2 * MESSAGES)
        .build_manual()
        .expect("runtime");
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    rt.spawn_native("sink", None, move |_: &mut Context<'_>, _, _: &[u8]| {
        counter.fetch_add(1, Ordering::Relaxed);
    })
    .expect("sink");
    let framer = framer(&rt);
    let round = |batch: u32| {
        let mut msg = MESSAGES.to_le_bytes().to_vec();
        msg.extend_from_slice(&batch.to_le_bytes());
        let before = seen.load(Ordering::Relaxed);
        rt.send(framer, &msg).expect("admitted");
        rt.run_until_stalled();
        assert_eq!(seen.load(Ordering::Relaxed), before + u64::from(MESSAGES));
    };
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(u64::from(MESSAGES)));
    for (name, batch) in [
        ("send", 0),
        ("frames-1", 1),
        ("frames-8", 8),
        ("frames-64", 64),
        ("frames-256", 256),
    ] {
        round(batch);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    round(batch);
                }
                start.elapsed()
            })
        });
    }
    g.finish();
    c2c(c);
}

fn c2c(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch-c2c");
    g.throughput(Throughput::Elements(u64::from(MESSAGES)));
    for (name, sink, batch) in [
        ("send", "counter.wat", 0),
        ("frames-64", "counter.wat", 64),
        ("frames-64-batched", "batcount.wat", 64),
    ] {
        let rt = Runtime::builder()
            .shards(1)
            .max_actors(8)
            .mailbox_capacity(2 * MESSAGES)
            .build_manual()
            .expect("runtime");
        let sink = rt.load_component_file(fixture(sink)).expect("sink");
        rt.spawn(&sink, SpawnOptions::new("sink")).expect("sink");
        let framer = framer(&rt);
        let mut msg = MESSAGES.to_le_bytes().to_vec();
        msg.extend_from_slice(&u32::to_le_bytes(batch));
        let round = || {
            let before = rt.stats().actor("sink").expect("sink").handled;
            rt.send(framer, &msg).expect("admitted");
            rt.run_until_stalled();
            let after = rt.stats().actor("sink").expect("sink").handled;
            assert_eq!(after, before + u64::from(MESSAGES));
        };
        round();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    round();
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = batch
}
criterion_main!(benches);
