//! Same-shard component→component tell, 64-byte payload, beside its bare-wasmtime
//! floor measured in the same run.
//!
//! Floor: one host→guest `handle-message` call whose guest makes one guest→host
//! `send` import call with the same 64-byte payload, on a plain wasmtime store with
//! no runtime around it (the same engine settings: epoch interruption on,
//! component-model concurrency off). Runtime: a rally between two components on
//! one shard, where every message is exactly that pair of calls plus wasmshard's
//! admission, routing and scheduling. Run with `RUST_LIB_BACKTRACE=0`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmtime::component::{Component, Linker, TypedFunc, WasmList, WasmStr};
use wasmtime::{Config, Engine, Store, StoreContextMut};

use wasmshard::{LogLevel, Runtime, SendError, SpawnOptions};

const PAYLOAD: usize = 64;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The echo fixture (sends every payload back to its sender) as a component.
fn echo_component() -> Vec<u8> {
    wasmshard::encode_component(&std::fs::read(fixture("echo.wat")).unwrap()).unwrap()
}

struct Floor {
    store: Store<u64>,
    handle: wasmtime::component::Func,
}

impl Floor {
    fn new() -> Floor {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, echo_component()).unwrap();
        let mut linker = Linker::<u64>::new(&engine);
        let mut host = linker.instance("wasmshard:actor/host@0.1.0").unwrap();
        host.func_wrap(
            "send",
            |mut store: StoreContextMut<'_, u64>, (to, payload): (u64, WasmList<u8>)| {
                let bytes = payload.as_le_slice(&store);
                let sum = black_box(bytes).len() as u64 ^ to;
                *store.data_mut() += sum;
                Ok((Ok::<(), SendError>(()),))
            },
        )
        .unwrap();
        // The echo fixture imports these too; the floor never calls them.
        host.func_wrap("lookup", |_: StoreContextMut<'_, u64>, (_,): (WasmStr,)| {
            Ok((None::<u64>,))
        })
        .unwrap();
        host.func_wrap(
            "log",
            |_: StoreContextMut<'_, u64>, (_, _): (LogLevel, WasmStr)| Ok(()),
        )
        .unwrap();
        let mut store = Store::new(&engine, 0u64);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker.instantiate(&mut store, &component).unwrap();
        let iface = component
            .get_export_index(None, "wasmshard:actor/actor@0.1.0")
            .unwrap();
        let init = component.get_export_index(Some(&iface), "init").unwrap();
        let handle = component
            .get_export_index(Some(&iface), "handle-message")
            .unwrap();
        let init = instance
            .get_typed_func::<(&[u8],), (Result<(), String>,)>(&mut store, &init)
            .unwrap();
        init.call(&mut store, (&[],)).unwrap().0.unwrap();
        let handle = instance.get_func(&mut store, handle).unwrap();
        handle.typed::<(u64, &[u8]), ()>(&store).unwrap();
        Floor { store, handle }
    }

    fn call(&mut self, payload: &[u8]) {
        self.store.set_epoch_deadline(100);
        // SAFETY: the type was checked with `typed` in `new`.
        let f = unsafe { TypedFunc::<(u64, &[u8]), ()>::new_unchecked(self.handle) };
        f.call(&mut self.store, (7, payload)).unwrap();
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
        *floor.store.data(),
        (PAYLOAD as u64 ^ 7),
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
