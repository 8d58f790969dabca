//! What a publication costs per delivery: a native publisher publishes 64
//! times to a topic with 1, 8 or 64 native subscribers (on the same shard, and
//! half of them on a second shard), and the subscribers handle what they get;
//! the time of that, per delivery (route resolved from the publisher's cache,
//! admission at each subscriber's mailbox, one envelope per subscriber,
//! delivery, the subscriber's turn). `same-shard/*` is a manual runtime, one
//! shard, stepped until it stalls; `two-shards/*` a threaded runtime of two
//! shards, waited on until idle. The baseline `tell/64` sends the same
//! messages with 64 `send`s of one actor to another.
//!
//! ```sh
//! cargo bench --bench topics
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmshard::{Address, Context, Runtime};

/// Publications per round.
const ROUND: u64 = 64;

fn subscribers(rt: &Runtime, n: usize, shards: usize) -> Arc<AtomicU64> {
    let got = Arc::new(AtomicU64::new(0));
    for i in 0..n {
        let seen = got.clone();
        let a = rt
            .spawn_native(
                &format!("sub-{i}"),
                Some(i % shards),
                move |ctx: &mut Context<'_>, from: Address, _: &[u8]| {
                    if from == Address::HOST {
                        ctx.subscribe("bench.prices").expect("subscribe");
                    } else {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                },
            )
            .expect("subscriber");
        rt.send(a, b"subscribe").expect("admitted");
    }
    if !rt.is_manual() {
        assert!(rt.wait_idle(Duration::from_secs(30)), "subscribed");
    }
    got
}

fn publisher(rt: &Runtime) -> Address {
    rt.spawn_native(
        "publisher",
        Some(0),
        move |ctx: &mut Context<'_>, _: Address, _: &[u8]| {
            for i in 0..ROUND {
                ctx.publish("bench.prices", &i.to_le_bytes())
                    .expect("published");
            }
        },
    )
    .expect("publisher")
}

fn rounds(rt: &Runtime, start: Address, iters: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        rt.send(start, b"go").expect("admitted");
        if rt.is_manual() {
            rt.run_until_stalled();
        } else {
            assert!(rt.wait_idle(Duration::from_secs(30)));
        }
    }
    t.elapsed()
}

fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("topics");
    for (label, shards) in [("same-shard", 1), ("two-shards", 2)] {
        for n in [1usize, 8, 64] {
            let builder = Runtime::builder()
                .shards(shards)
                .max_actors(128)
                .mailbox_capacity(4096);
            let rt = if shards == 1 {
                builder.build_manual()
            } else {
                builder.build()
            }
            .expect("runtime");
            let got = subscribers(&rt, n, shards);
            let start = publisher(&rt);
            let _ = rounds(&rt, start, 1);
            assert_eq!(
                got.load(Ordering::Relaxed),
                ROUND * n as u64,
                "every delivery"
            );
            g.throughput(Throughput::Elements(ROUND * n as u64));
            g.bench_function(format!("{label}/{n}"), |b| {
                b.iter_custom(|iters| rounds(&rt, start, iters))
            });
            rt.shutdown();
        }
    }
    // The baseline: 64 plain sends a round to one native actor.
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .build_manual()
        .expect("runtime");
    let sink = rt
        .spawn_native("sink", None, |_: &mut Context<'_>, _: Address, _: &[u8]| {})
        .expect("sink");
    let start = rt
        .spawn_native(
            "sender",
            None,
            move |ctx: &mut Context<'_>, _: Address, _: &[u8]| {
                for i in 0..ROUND {
                    ctx.send(sink, &i.to_le_bytes()).expect("sent");
                }
            },
        )
        .expect("sender");
    g.throughput(Throughput::Elements(ROUND));
    g.bench_function("tell/64", |b| {
        b.iter_custom(|iters| rounds(&rt, start, iters))
    });
    g.finish();
    rt.shutdown();
}

criterion_group!(benches, publish);
criterion_main!(benches);
