//! What a trace context costs per hop: two native actors on one shard (a
//! manual runtime, stepped until it stalls) pass a message back and forth 64
//! times, started by one host message. `untraced` carries no context;
//! `traced` starts with `Runtime::send_traced`, so every hop carries the trace
//! on (a new span: an allocation and a free), with the `tracing` feature
//! compiled in and no subscriber interested; `traced-subscribed` adds a
//! `tracing` subscriber that takes every span (it gives each an id and
//! records nothing), the least an exporter costs.
//!
//! ```sh
//! cargo bench --bench traces
//! ```

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmshard::{Address, Context, Runtime, TraceContext};

/// Hops per round.
const HOPS: u8 = 64;

/// A subscriber that takes every span and keeps nothing.
struct Taker(std::sync::atomic::AtomicU64);

impl tracing::Subscriber for Taker {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::span::Id::from_u64(n + 1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn pair(rt: &Runtime) -> Address {
    let spawn = |name: &str, peer: &'static str| {
        rt.spawn_native(
            name,
            Some(0),
            move |ctx: &mut Context<'_>, _: Address, payload: &[u8]| {
                let left = payload[0];
                if left > 0 {
                    let to = ctx.lookup(peer).expect("peer");
                    ctx.send(to, &[left - 1]).expect("admitted");
                }
            },
        )
        .expect("spawned")
    };
    let a = spawn("a", "b");
    spawn("b", "a");
    a
}

fn rounds(rt: &Runtime, a: Address, trace: Option<TraceContext>, iters: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        match trace {
            Some(p) => rt.send_traced(a, &[HOPS - 1], p),
            None => rt.send(a, &[HOPS - 1]),
        }
        .expect("admitted");
        rt.run_until_stalled();
    }
    t.elapsed()
}

fn hops(c: &mut Criterion) {
    let mut g = c.benchmark_group("traces");
    g.throughput(Throughput::Elements(u64::from(HOPS)));
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .build_manual()
        .expect("runtime");
    let a = pair(&rt);
    let parent = TraceContext::random();
    g.bench_function("untraced", |b| b.iter_custom(|n| rounds(&rt, a, None, n)));
    g.bench_function("traced", |b| {
        b.iter_custom(|n| rounds(&rt, a, Some(parent), n))
    });
    let taker = Taker(Default::default());
    tracing::subscriber::with_default(taker, || {
        g.bench_function("traced-subscribed", |b| {
            b.iter_custom(|n| rounds(&rt, a, Some(parent), n))
        });
    });
    g.finish();
    rt.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = hops
}
criterion_main!(benches);
