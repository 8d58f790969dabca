//! What the lifecycle costs. **Restart**: from a supervised actor's failure to
//! the new instance handling the next queued message. **Spawn from an actor**:
//! a native actor spawns children of `counter.wat` with `Context::spawn` (the
//! path a component's `lifecycle.spawn` takes, less the call into the guest),
//! 64 per message; the time of those messages, per child (slot, name, grants,
//! instantiation, `init`); stopping them is not timed.
//!
//! **Storage**: `store.wat` calls `storage.set`, `get` or `set` then `delete`
//! 1000 times in one message (an 8-byte key, a 32-byte value); per call, less
//! the loop alone (`storage/loop`); `storage-durable/*` the same with a
//! storage directory (changes also queued for the database's writer thread).
//!
//! Restart: Each iteration sends a fatal message and
//! then an ordinary one to a supervised actor and steps the runtime until it
//! stalls; the baseline sends two ordinary messages the same way, so the
//! difference between the two is the restart (drop of the failed instance,
//! dead letter, new instance, its `init`). Components: `trap.wat` (traps on
//! `boom`); native: a closure that panics on `boom`, remade by its factory.
//! Manual runtime, one shard, so nothing else runs.
//!
//! ```sh
//! RUST_LIB_BACKTRACE=0 cargo bench --bench lifecycle
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wasmshard::{Address, Context, NativeActor, Restart, Runtime, SpawnOptions};

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
    // A native actor's panic goes through the panic hook; keep it quiet
    // (for this group only: the checks after it must say why they fail).
    let hook = std::panic::take_hook();
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
    std::panic::set_hook(hook);
    let stats = rt.stats();
    for name in ["component", "native"] {
        let a = stats.actor(name).expect("stats");
        // (Zero when a filter skipped the group.)
        assert!(a.alive, "{name}: {a:?}");
        assert_eq!(a.restarts, a.failures, "{name}: every failure restarted");
    }
}

/// Children spawned per message.
const BATCH: u64 = 64;

/// Spawns `n` children of `counter` on a message `[n]`; stops them all on an
/// empty one.
struct Spawner {
    children: Vec<Address>,
}

impl NativeActor for Spawner {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        match payload.first() {
            Some(&n) => {
                for _ in 0..n {
                    let child = ctx.spawn("counter", None, b"").expect("spawned");
                    self.children.push(child);
                }
            }
            None => {
                for child in self.children.drain(..) {
                    ctx.stop(child).expect("stopped");
                }
            }
        }
    }
}

fn spawn(c: &mut Criterion) {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(BATCH as u32 + 8)
        .build_manual()
        .expect("runtime");
    let counter = rt
        .load_component_file(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/counter.wat"))
        .expect("counter.wat");
    rt.register_component("counter", &counter).unwrap();
    let spawner = rt
        .spawn_native(
            "spawner",
            None,
            Spawner {
                children: Vec::new(),
            },
        )
        .expect("spawn");
    c.bench_function("spawn/from-actor", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                let start = Instant::now();
                rt.send(spawner, &[n as u8]).expect("admitted");
                rt.run_until_stalled();
                timed += start.elapsed();
                rt.send(spawner, &[]).expect("admitted");
                rt.run_until_stalled();
                left -= n;
            }
            timed
        })
    });
    let stats = rt.stats();
    // Every child stopped, none failed.
    assert!(
        stats
            .actors
            .iter()
            .all(|a| a.failure.is_none() && (a.name == "spawner" || !a.alive))
    );
}

/// Storage operations per message in `store.wat`'s loop.
const STORAGE_OPS: u32 = 1000;

/// The four modes of `store.wat`, by benchmark name.
const STORAGE_MODES: [(&str, u8); 4] = [
    ("loop", b'b'),
    ("set", b's'),
    ("get", b'g'),
    ("set+delete", b'd'),
];

fn storage(c: &mut Criterion) {
    // The floor: the same loop on plain wasmtime, host functions keeping nothing.
    let mut floor = wasmshard::bench::StorageFloor::new().expect("floor");
    let mut g = c.benchmark_group("storage-floor");
    for (name, mode) in STORAGE_MODES {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    floor.run(mode, STORAGE_OPS).expect("floor");
                }
                start.elapsed() / STORAGE_OPS
            })
        });
    }
    g.finish();
    storage_on(c, "storage", None);
    let dir = std::env::temp_dir().join(format!("wasmshard-bench-{}", std::process::id()));
    storage_on(c, "storage-durable", Some(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The storage benchmarks on a runtime with storage in memory, or durable in
/// `dir` (each change also queued for the writer thread, which commits off
/// the measured thread).
fn storage_on(c: &mut Criterion, group: &str, dir: Option<&std::path::Path>) {
    let mut builder = Runtime::builder().shards(1).max_actors(8);
    if let Some(dir) = dir {
        builder = builder.storage_dir(dir);
    }
    let rt = builder.build_manual().expect("runtime");
    let store = rt
        .load_component_file(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/store.wat"))
        .expect("store.wat");
    let actor = rt.spawn(&store, SpawnOptions::new("store")).expect("spawn");
    let run = |mode: u8, n: u32| {
        let mut msg = vec![mode, 0, 0, 0];
        msg.extend_from_slice(&n.to_le_bytes());
        rt.send(actor, &msg).expect("admitted");
        rt.run_until_stalled();
    };
    run(b's', 1);
    let mut g = c.benchmark_group(group);
    // Per operation: the loop of `STORAGE_OPS` in one message.
    for (name, mode) in STORAGE_MODES {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    run(mode, STORAGE_OPS);
                }
                start.elapsed() / STORAGE_OPS
            })
        });
    }
    g.finish();
    let stats = rt.stats();
    let a = stats.actor("store").expect("stats");
    assert!(a.alive && a.failure.is_none(), "{a:?}");
    // The last loop deleted what it set.
    assert_eq!(a.stored, 0);
}

criterion_group!(benches, supervision, spawn, storage);
criterion_main!(benches);
