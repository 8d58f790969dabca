//! Request→response round trip, 64-byte payload, on one shard and across shards,
//! beside its bare-wasmtime floor measured in the same run; and the request table
//! (slab insert+remove with timer insert+cancel) on its own.
//!
//! Floor: the three calls a round trip needs, on plain wasmtime stores: the
//! requester's `handle-response` (whose guest makes the next `request` import
//! call) and the responder's `handle-request` (returning `some(payload)`). Runtime:
//! the `rtt` fixture making sequential requests to the `responder` fixture. Run
//! with `RUST_LIB_BACKTRACE=0`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmtime::component::{Func, TypedFunc, WasmList};

use wasmshard::internals::RequestTable;
use wasmshard::{RequestError, Runtime, SpawnOptions};

#[path = "common.rs"]
mod common;
use common::{Bare, PAYLOAD};

struct Floor {
    requester: Bare,
    responder: Bare,
    handle_response: Func,
    handle_request: Func,
}

impl Floor {
    fn new() -> Floor {
        let (engine, linker) = common::floor_engine();
        let mut requester = Bare::new(&engine, &linker, "rtt.wat", b"responder");
        let mut responder = Bare::new(&engine, &linker, "responder.wat", b"");
        let handle_response = requester.export("handle-response");
        handle_response
            .typed::<(u64, Result<&[u8], RequestError>), ()>(&requester.store)
            .unwrap();
        let handle_request = responder.export("handle-request");
        handle_request
            .typed::<(u64, u64, &[u8]), (Option<WasmList<u8>>,)>(&responder.store)
            .unwrap();
        // Arm the requester: a count so large its chain never ends.
        let start = requester.export("handle-message");
        let mut msg = [0u8; PAYLOAD];
        msg[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        start
            .typed::<(u64, &[u8]), ()>(&requester.store)
            .unwrap()
            .call(&mut requester.store, (0, &msg))
            .unwrap();
        Floor {
            requester,
            responder,
            handle_response,
            handle_request,
        }
    }

    /// One round trip: the reply enters the requester (which makes its next request
    /// through the import), and the responder answers a request.
    fn round_trip(&mut self, payload: &[u8]) -> usize {
        self.requester.store.set_epoch_deadline(100);
        self.responder.store.set_epoch_deadline(100);
        let id = self.requester.store.data().next_id;
        // SAFETY: both types were checked with `typed` in `new`.
        let respond = unsafe {
            TypedFunc::<(u64, u64, &[u8]), (Option<WasmList<u8>>,)>::new_unchecked(
                self.handle_request,
            )
        };
        let (reply,) = respond
            .call(&mut self.responder.store, (1, id, payload))
            .unwrap();
        let reply = reply.unwrap();
        let len = black_box(reply.as_le_slice(&self.responder.store)).len();
        // SAFETY: as above.
        let deliver = unsafe {
            TypedFunc::<(u64, Result<&[u8], RequestError>), ()>::new_unchecked(self.handle_response)
        };
        deliver
            .call(&mut self.requester.store, (id, Ok(payload)))
            .unwrap();
        len
    }
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_64B");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));

    let mut floor = Floor::new();
    let payload = [0u8; PAYLOAD];
    let before = floor.requester.store.data().next_id;
    assert_eq!(floor.round_trip(&payload), PAYLOAD);
    assert_eq!(
        floor.requester.store.data().next_id,
        before + 1,
        "the requester made its next request"
    );
    group.bench_function("floor_wasmtime", |b| {
        b.iter(|| floor.round_trip(black_box(&payload)))
    });

    for (name, shards, responder_shard) in [
        ("wasmshard_same_shard", 1, 0),
        ("wasmshard_cross_shard", 2, 1),
    ] {
        let rt = Runtime::builder()
            .shards(shards)
            .max_actors(8)
            .build()
            .unwrap();
        let rtt = rt.load_component_file(common::fixture("rtt.wat")).unwrap();
        let responder = rt
            .load_component_file(common::fixture("responder.wat"))
            .unwrap();
        rt.spawn(
            &responder,
            SpawnOptions::new("responder").shard(responder_shard),
        )
        .unwrap();
        let r = rt
            .spawn(&rtt, SpawnOptions::new("rtt").config("responder").shard(0))
            .unwrap();
        let run = |n: u32| {
            let mut msg = [0u8; PAYLOAD];
            msg[..4].copy_from_slice(&n.to_le_bytes());
            rt.send(r, &msg).unwrap();
            assert!(rt.wait_idle(Duration::from_secs(600)));
        };
        // Check before timing: 1000 round trips, all answered.
        run(1000);
        let answered: u64 = rt.stats().shards.iter().map(|s| s.requests_answered).sum();
        assert_eq!(answered, 1000);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                run(iters.clamp(1, u32::MAX as u64) as u32);
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn request_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_table");
    let mut table = RequestTable::default();
    // Steady state: some requests stay open, as in a busy shard.
    let held: Vec<u64> = (0..1024).map(|i| table.open(1_000_000 + i)).collect();
    group.bench_function("open_close", |b| {
        b.iter(|| {
            let id = table.open(black_box(2_000_000));
            assert!(table.close(black_box(id)));
        })
    });
    group.bench_function("open_expire", |b| {
        b.iter(|| {
            table.open(black_box(0));
            black_box(table.expire(1).unwrap());
        })
    });
    assert_eq!(table.open_count(), held.len());
    group.finish();
}

criterion_group!(benches, round_trip, request_table);
criterion_main!(benches);
