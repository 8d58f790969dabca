//! What a supervised restart costs: from the failure to the new instance
//! handling the next queued message. Each iteration sends a fatal message and
//! then an ordinary one to a supervised actor and steps the runtime until it
//! stalls; the baseline sends two ordinary messages the same way, so the
//! difference between the two is the restart (drop of the failed instance,
//! dead letter, new instance, its `init`). Components: `trap.wat` (traps on
//! `boom`); native: a closure that panics on `boom`, remade by its factory.
//! Manual runtime, one shard, so nothing else runs.
//!
//! ```sh
//! RUST_LIB_BACKTRACE=0 cargo bench --bench supervision
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wasmshard::{Address, Context, Restart, Runtime, SpawnOptions};

/// Restarts at once, always: a window of a nanosecond holds one failure.
fn always() -> Restart {
    Restart::on_failure()
        .max_restarts(1)
        .window(Duration::from_nanos(1))
        .backoff(Duration::ZERO, Duration::ZERO)
}

fn twice(rt: &Runtime, to: Address, first: &[u8], iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        rt.send(to, first).expect("admitted");
        rt.send(to, b"ok").expect("admitted");
        rt.run_until_stalled();
    }
    start.elapsed()
}

fn supervision(c: &mut Criterion) {
    // A native actor's panic goes through the panic hook; keep it quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(16)
        .build_manual()
        .expect("runtime");
    let trap = rt
        .load_component_file(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/trap.wat"))
        .expect("trap.wat");
    let component = rt
        .spawn(&trap, SpawnOptions::new("component").restart(always()))
        .expect("spawn");
    let native = rt
        .spawn_native_supervised("native", None, always(), || {
            |_: &mut Context<'_>, _: Address, payload: &[u8]| {
                assert!(payload != b"boom", "boom");
            }
        })
        .expect("spawn");
    let mut g = c.benchmark_group("restart");
    for (name, to) in [("component", component), ("native", native)] {
        g.bench_function(format!("{name}/baseline"), |b| {
            b.iter_custom(|iters| twice(&rt, to, b"ok", iters))
        });
        g.bench_function(format!("{name}/restart"), |b| {
            b.iter_custom(|iters| twice(&rt, to, b"boom", iters))
        });
    }
    g.finish();
    let stats = rt.stats();
    for name in ["component", "native"] {
        let a = stats.actor(name).expect("stats");
        assert!(a.alive && a.restarts > 0, "{name}: {a:?}");
        assert_eq!(a.restarts, a.failures, "{name}: every failure restarted");
    }
}

criterion_group!(benches, supervision);
criterion_main!(benches);
