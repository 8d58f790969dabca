//! Same-shard component→component tell, 64-byte payload, beside its bare-wasmtime
//! floor measured in the same run.
//!
//! Floor: one host→guest `handle-message` call whose guest makes one guest→host
//! `send` import call with the same 64-byte payload, on plain wasmtime stores with
//! no runtime around them (the same engine settings: epoch interruption on,
//! component-model concurrency off), alternating between two instances as the
//! runtime's rally does. Runtime: a rally between two components on
//! one shard, where every message is exactly that pair of calls plus wasmshard's
//! admission, routing and scheduling. Run with `RUST_LIB_BACKTRACE=0`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmtime::component::TypedFunc;

use wasmshard::{Runtime, SpawnOptions};

#[path = "common.rs"]
mod common;
use common::{Bare, PAYLOAD, fixture};

/// Two instances of the echo fixture (it sends every payload back to its sender)
/// on bare stores, called alternately, as the runtime's rally alternates between
/// its two actors.
struct Floor {
    pair: [(Bare, wasmtime::component::Func); 2],
    turn: usize,
}

impl Floor {
    fn new() -> Floor {
        let (engine, linker) = common::floor_engine();
        let one = || {
            let mut bare = Bare::new(&engine, &linker, "echo.wat", b"");
            let handle = bare.export("handle-message");
            handle.typed::<(u64, &[u8]), ()>(&bare.store).unwrap();
            (bare, handle)
        };
        Floor {
            pair: [one(), one()],
            turn: 0,
        }
    }

    /// One message: a `handle-message` call whose guest makes one `send` call.
    fn call(&mut self, payload: &[u8]) {
        self.turn ^= 1;
        let (bare, handle) = &mut self.pair[self.turn];
        bare.store.set_epoch_deadline(100);
        // SAFETY: the type was checked with `typed` in `new`.
        let f = unsafe { TypedFunc::<(u64, &[u8]), ()>::new_unchecked(*handle) };
        f.call(&mut bare.store, (7, payload)).unwrap();
    }

    fn sum(&self) -> u64 {
        self.pair.iter().map(|(b, _)| b.store.data().sum).sum()
    }
}

fn tell(c: &mut Criterion) {
    let mut group = c.benchmark_group("tell_64B");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));

    let mut floor = Floor::new();
    let payload = [0xabu8; PAYLOAD];
    floor.call(&payload);
    assert_eq!(
        floor.sum(),
        PAYLOAD as u64 ^ 7,
        "the floor's guest sent the payload once"
    );
    group.bench_function("floor_wasmtime", |b| {
        b.iter(|| floor.call(black_box(&payload)))
    });

    let rt = Runtime::builder().shards(1).max_actors(8).build().unwrap();
    let pingpong = rt.load_component_file(fixture("pingpong.wat")).unwrap();
    let ping = rt
        .spawn(&pingpong, SpawnOptions::new("ping").config("pong"))
        .unwrap();
    rt.spawn(&pingpong, SpawnOptions::new("pong").config("ping"))
        .unwrap();
    let rally = |n: u32| {
        let mut msg = [0u8; PAYLOAD];
        msg[..4].copy_from_slice(&n.to_le_bytes());
        rt.send(ping, &msg).unwrap();
        assert!(rt.wait_idle(Duration::from_secs(600)));
    };
    // Check before timing: a rally of 1000 is 1001 handled messages.
    rally(1000);
    let handled: u64 = rt.stats().actors.iter().map(|a| a.handled).sum();
    assert_eq!(handled, 1001);
    group.bench_function("wasmshard_same_shard", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rally(iters.min(u32::MAX as u64) as u32);
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, tell);
criterion_main!(benches);
