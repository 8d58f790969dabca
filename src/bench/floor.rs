//! Floors: the same calls as a workload's components make, on plain wasmtime
//! stores with the runtime's own engine settings and no runtime around them.

use std::time::{Duration, Instant};

use wasmtime::component::{
    ComponentExportIndex, Func, Instance, InstancePre, Linker, TypedFunc, WasmList, WasmStr,
};
use wasmtime::{Engine, Store, StoreContextMut};

use super::{BenchError, Params, Workload, err, fixtures, producer_command};
use crate::exports::{ACTOR_INTERFACE, BATCH_INTERFACE};
use crate::host::{BATCH_HOST_INTERFACE, HOST_INTERFACE, STORAGE_INTERFACE};
use crate::lifted::LiftedBytes;
use crate::{LogLevel, RequestError, RuntimeBuilder, SendError};

/// What the floor's host functions saw.
#[derive(Default)]
struct Seen {
    sum: u64,
    next_id: u64,
}

/// The runtime's engine settings (so the floor compiles the same code) with host
/// functions that do the least the contract allows: look at the payload, answer.
fn floor_engine(max_actors: u32) -> Result<(Engine, Linker<Seen>), BenchError> {
    let engine = RuntimeBuilder::new()
        .max_actors(max_actors)
        .config
        .engine()
        .map_err(err)?;
    let mut linker = Linker::<Seen>::new(&engine);
    let mut host = linker.instance(HOST_INTERFACE).map_err(err)?;
    (|| -> wasmtime::Result<()> {
        host.func_wrap(
            "send",
            |mut store: StoreContextMut<'_, Seen>, (to, payload): (u64, WasmList<u8>)| {
                let n = std::hint::black_box(payload.as_le_slice(&store)).len() as u64;
                store.data_mut().sum += n ^ to;
                Ok((Ok::<(), SendError>(()),))
            },
        )?;
        host.func_wrap(
            "request",
            |mut store: StoreContextMut<'_, Seen>, (to, payload, _): (u64, WasmList<u8>, u64)| {
                let n = std::hint::black_box(payload.as_le_slice(&store)).len() as u64;
                let seen = store.data_mut();
                seen.sum += n ^ to;
                seen.next_id += 1;
                Ok((Ok::<u64, SendError>(seen.next_id),))
            },
        )?;
        host.func_wrap(
            "respond",
            |_: StoreContextMut<'_, Seen>, (_, _): (u64, WasmList<u8>)| {
                Ok((Ok::<(), SendError>(()),))
            },
        )?;
        host.func_wrap("cancel", |_: StoreContextMut<'_, Seen>, (_,): (u64,)| {
            Ok((false,))
        })?;
        host.func_wrap(
            "lookup",
            |_: StoreContextMut<'_, Seen>, (_,): (WasmStr,)| Ok((Some(7u64),)),
        )?;
        host.func_wrap(
            "log",
            |_: StoreContextMut<'_, Seen>, (_, _): (LogLevel, WasmStr)| Ok(()),
        )?;
        host.func_wrap("self-address", |_: StoreContextMut<'_, Seen>, (): ()| {
            Ok((1u64,))
        })?;
        host.func_wrap("now-ns", |_: StoreContextMut<'_, Seen>, (): ()| Ok((0u64,)))?;
        Ok(())
    })()
    .map_err(err)?;
    (|| -> wasmtime::Result<()> {
        // Walks the frames' headers (to say how many were sent) and sends
        // none of them.
        linker.instance(BATCH_HOST_INTERFACE)?.func_wrap(
            "send-frames",
            |mut store: StoreContextMut<'_, Seen>, (frames,): (WasmList<u8>,)| {
                let bytes = std::hint::black_box(frames.as_le_slice(&store));
                let (mut at, mut n) = (0usize, 0u32);
                while let Some(header) = bytes.get(at..at + 12) {
                    let len = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
                    at += 12 + len as usize;
                    n += 1;
                }
                store.data_mut().sum += u64::from(n);
                Ok(((n, None::<SendError>),))
            },
        )?;
        Ok(())
    })()
    .map_err(err)?;
    Ok((engine, linker))
}

/// One fixture instantiated on the floor engine and initialised.
struct Bare {
    store: Store<Seen>,
    instance: Instance,
    component: wasmtime::component::Component,
}

const BUDGET_TICKS: u64 = 100;

impl Bare {
    fn new(
        engine: &Engine,
        linker: &Linker<Seen>,
        text: &str,
        config: &[u8],
    ) -> Result<Bare, BenchError> {
        let bytes = crate::encode_component(text.as_bytes()).map_err(err)?;
        let component = wasmtime::component::Component::new(engine, bytes).map_err(err)?;
        let mut store = Store::new(engine, Seen::default());
        store.set_epoch_deadline(BUDGET_TICKS);
        let instance = linker.instantiate(&mut store, &component).map_err(err)?;
        let mut bare = Bare {
            store,
            instance,
            component,
        };
        let init = bare
            .export("init")?
            .typed::<(&[u8],), (Result<(), String>,)>(&bare.store)
            .map_err(err)?;
        init.call(&mut bare.store, (config,))
            .map_err(err)?
            .0
            .map_err(err)?;
        Ok(bare)
    }

    fn export(&mut self, name: &str) -> Result<Func, BenchError> {
        self.export_of(ACTOR_INTERFACE, name)
    }

    fn export_of(&mut self, interface: &str, name: &str) -> Result<Func, BenchError> {
        let iface = self
            .component
            .get_export_index(None, interface)
            .ok_or_else(|| err(format!("no interface {interface}")))?;
        let idx = self
            .component
            .get_export_index(Some(&iface), name)
            .ok_or_else(|| err(format!("no export {name}")))?;
        self.instance
            .get_func(&mut self.store, idx)
            .ok_or_else(|| err(format!("no function {name}")))
    }

    /// `handle-message`, checked for its type.
    fn handle_message(&mut self) -> Result<Func, BenchError> {
        let f = self.export("handle-message")?;
        f.typed::<(u64, &[u8]), ()>(&self.store).map_err(err)?;
        Ok(f)
    }

    /// Calls `handle-message`, fetched with [`Bare::handle_message`].
    fn message(&mut self, f: Func, from: u64, payload: &[u8]) -> Result<(), BenchError> {
        self.store.set_epoch_deadline(BUDGET_TICKS);
        // SAFETY: `f` is this instance's `handle-message`, whose type
        // `Bare::handle_message` checked.
        let f = unsafe { TypedFunc::<(u64, &[u8]), ()>::new_unchecked(f) };
        f.call(&mut self.store, (from, payload)).map_err(err)
    }
}

/// `count` frames of 64-byte messages as `handle-messages` takes them.
fn frames_of_64(count: u32) -> Vec<u8> {
    let mut frames = Vec::with_capacity(count as usize * 76);
    for _ in 0..count {
        frames.extend_from_slice(&2u64.to_le_bytes());
        frames.extend_from_slice(&64u32.to_le_bytes());
        frames.extend_from_slice(&[0; 64]);
    }
    frames
}

/// A workload's floor: the same import and export calls with no runtime around
/// them. Only components have one.
pub struct Floor {
    workload: Workload,
    params: Params,
    kind: FloorKind,
}

enum FloorKind {
    /// Producer's `handle-message` making k sends, then k sink `handle-message`s.
    Stream {
        producer: Bare,
        produce: Func,
        sink: Bare,
        consume: Func,
    },
    /// The framer's `handle-message` making one `send-frames` call of up to
    /// 64 frames, then the sink's `handle-messages` with as many.
    Frames {
        framer: Bare,
        produce: Func,
        sink: Bare,
        consume: Func,
        frames: Vec<u8>,
    },
    /// Relays' `handle-message` (one `send` each), alternating between two.
    Hops {
        pair: [(Bare, Func); 2],
        turn: usize,
    },
    /// The responder's `handle-request`, then the requester's `handle-response`
    /// (which makes the next `request`).
    RoundTrip {
        requester: Bare,
        responder: Bare,
        handle_response: Func,
        handle_request: Func,
    },
    /// The fan-out actor's round (N sends and one to itself), then N sink calls.
    Fan {
        fanout: Bare,
        round: Func,
        sink: Bare,
        consume: Func,
    },
    /// A store, an instance from an `InstancePre`, and `init`.
    Spawn {
        engine: Engine,
        pre: InstancePre<Seen>,
        init: ComponentExportIndex,
    },
}

impl Floor {
    /// The floor of `workload`.
    ///
    /// # Errors
    ///
    /// Bad parameters, or a fixture that cannot be set up.
    pub fn new(workload: Workload, params: &Params) -> Result<Floor, BenchError> {
        params.check()?;
        // The spawn floor holds as many instances at once as the runtime's
        // spawn measurement holds actors.
        let max_actors = match workload {
            Workload::Spawn => super::SPAWN_BATCH as u32 + 16,
            _ => 64,
        };
        let (engine, linker) = floor_engine(max_actors)?;
        let kind = match workload {
            Workload::Tell | Workload::TellCross | Workload::Counting => {
                let mut producer = Bare::new(&engine, &linker, fixtures::PRODUCER, b"sink")?;
                let mut sink = Bare::new(&engine, &linker, fixtures::COUNTER, b"")?;
                FloorKind::Stream {
                    produce: producer.handle_message()?,
                    consume: sink.handle_message()?,
                    producer,
                    sink,
                }
            }
            Workload::TellBatch => {
                let mut framer = Bare::new(&engine, &linker, fixtures::FRAMER, b"sink")?;
                let mut sink = Bare::new(&engine, &linker, fixtures::BATCOUNT, b"")?;
                let consume = sink.export_of(BATCH_INTERFACE, "handle-messages")?;
                consume
                    .typed::<(u32, &[u8]), ()>(&sink.store)
                    .map_err(err)?;
                FloorKind::Frames {
                    produce: framer.handle_message()?,
                    framer,
                    sink,
                    consume,
                    frames: frames_of_64(super::FRAMES_PER_CALL),
                }
            }
            Workload::PingPong | Workload::Ring => {
                let one = || -> Result<(Bare, Func), BenchError> {
                    let mut b = Bare::new(&engine, &linker, fixtures::RELAY, b"next")?;
                    let f = b.handle_message()?;
                    Ok((b, f))
                };
                FloorKind::Hops {
                    pair: [one()?, one()?],
                    turn: 0,
                }
            }
            Workload::Request | Workload::RequestCross => {
                let mut requester = Bare::new(&engine, &linker, fixtures::RTT, b"responder")?;
                let mut responder = Bare::new(&engine, &linker, fixtures::RESPONDER, b"")?;
                let handle_response = requester.export("handle-response")?;
                handle_response
                    .typed::<(u64, Result<&[u8], RequestError>), ()>(&requester.store)
                    .map_err(err)?;
                let handle_request = responder.export("handle-request")?;
                handle_request
                    .typed::<(u64, u64, &[u8]), (Option<LiftedBytes>,)>(&responder.store)
                    .map_err(err)?;
                // Arm the requester with a count so large its chain never ends.
                let start = requester.handle_message()?;
                let mut msg = vec![0u8; params.payload];
                msg[..4].copy_from_slice(&u32::MAX.to_le_bytes());
                requester.message(start, 0, &msg)?;
                FloorKind::RoundTrip {
                    requester,
                    responder,
                    handle_response,
                    handle_request,
                }
            }
            Workload::FanOut => {
                let config: Vec<u8> = (1..=params.fan_out as u64)
                    .flat_map(|a| a.to_le_bytes())
                    .collect();
                let mut fanout = Bare::new(&engine, &linker, fixtures::FANOUT, &config)?;
                let mut sink = Bare::new(&engine, &linker, fixtures::COUNTER, b"")?;
                FloorKind::Fan {
                    round: fanout.handle_message()?,
                    consume: sink.handle_message()?,
                    fanout,
                    sink,
                }
            }
            Workload::Spawn => {
                let bytes = crate::encode_component(fixtures::COUNTER.as_bytes()).map_err(err)?;
                let component = wasmtime::component::Component::new(&engine, bytes).map_err(err)?;
                let pre = linker.instantiate_pre(&component).map_err(err)?;
                // Resolved once, as the runtime resolves its exports at load.
                let iface = component
                    .get_export_index(None, ACTOR_INTERFACE)
                    .ok_or_else(|| err("no actor interface"))?;
                let init = component
                    .get_export_index(Some(&iface), "init")
                    .ok_or_else(|| err("no init"))?;
                FloorKind::Spawn { engine, pre, init }
            }
        };
        let mut floor = Floor {
            workload,
            params: params.clone(),
            kind,
        };
        floor.check()?;
        Ok(floor)
    }

    /// Runs once and checks that the guests made the calls the workload counts on.
    fn check(&mut self) -> Result<(), BenchError> {
        let payload = self.params.payload as u64;
        let fan = self.params.fan_out as u64;
        let sent = |b: &Bare| b.store.data().sum;
        match &self.kind {
            FloorKind::Stream { producer, .. } => {
                let before = sent(producer);
                self.run(3)?;
                let FloorKind::Stream { producer, .. } = &self.kind else {
                    unreachable!()
                };
                // Three sends to the sink (address 7) and a 12-byte report to the
                // sender (address 1).
                let expect = 3 * (payload ^ 7) + (12 ^ 1);
                if sent(producer) - before != expect {
                    return Err(err("tell floor: the producer did not send as expected"));
                }
            }
            FloorKind::Frames { framer, .. } => {
                let before = sent(framer);
                self.run(3)?;
                let FloorKind::Frames { framer, .. } = &self.kind else {
                    unreachable!()
                };
                if sent(framer) - before != 3 {
                    return Err(err("tell-batch floor: the framer did not send as expected"));
                }
            }
            FloorKind::Hops { .. } => {
                self.run(1)?;
                let FloorKind::Hops { pair, .. } = &self.kind else {
                    unreachable!()
                };
                let total: u64 = pair.iter().map(|(b, _)| sent(b)).sum();
                let hops = if self.workload == Workload::PingPong {
                    2
                } else {
                    1
                };
                if total != hops * (payload ^ 7) {
                    return Err(err("relay floor: the relays did not forward as expected"));
                }
            }
            FloorKind::RoundTrip { requester, .. } => {
                let before = requester.store.data().next_id;
                self.run(1)?;
                let FloorKind::RoundTrip { requester, .. } = &self.kind else {
                    unreachable!()
                };
                if requester.store.data().next_id != before + 1 {
                    return Err(err("request floor: the requester made no next request"));
                }
            }
            FloorKind::Fan { fanout, .. } => {
                let before = sent(fanout);
                self.run(fan)?;
                let FloorKind::Fan { fanout, .. } = &self.kind else {
                    unreachable!()
                };
                // One round: N sends to addresses 1..=N and one to itself (1), as
                // rounds = 2 leaves one more round.
                let expect: u64 = (1..=fan).map(|a| payload ^ a).sum::<u64>() + (payload ^ 1);
                if sent(fanout) - before != expect {
                    return Err(err("fan-out floor: the round did not send as expected"));
                }
            }
            FloorKind::Spawn { .. } => {
                self.run(1)?;
            }
        }
        Ok(())
    }

    /// Runs `ops` operations' worth of the floor's calls; returns how long they took.
    ///
    /// # Errors
    ///
    /// A guest that traps (none of the fixtures does).
    pub fn run(&mut self, ops: u64) -> Result<Duration, BenchError> {
        let mut msg = vec![0u8; self.params.payload];
        let start = Instant::now();
        match &mut self.kind {
            FloorKind::Stream {
                producer,
                produce,
                sink,
                consume,
            } => {
                let mut left = ops;
                while left > 0 {
                    let k = left.min(1000);
                    let cmd = producer_command(k as u32, 0, self.params.payload);
                    producer.message(*produce, 1, &cmd)?;
                    for _ in 0..k {
                        sink.message(*consume, 2, &msg)?;
                    }
                    left -= k;
                }
            }
            FloorKind::Frames {
                framer,
                produce,
                sink,
                consume,
                frames,
            } => {
                let mut left = ops;
                while left > 0 {
                    let k = left.min(u64::from(super::FRAMES_PER_CALL)) as u32;
                    framer.message(*produce, 1, &super::framer_command(k))?;
                    sink.store.set_epoch_deadline(BUDGET_TICKS);
                    // SAFETY: `consume` is the sink's `handle-messages`, whose
                    // type `Floor::new` checked.
                    let f = unsafe { TypedFunc::<(u32, &[u8]), ()>::new_unchecked(*consume) };
                    f.call(&mut sink.store, (k, &frames[..k as usize * 76]))
                        .map_err(err)?;
                    left -= u64::from(k);
                }
            }
            FloorKind::Hops { pair, turn } => {
                let hops = if self.workload == Workload::PingPong {
                    2
                } else {
                    1
                };
                msg[..4].copy_from_slice(&u32::MAX.to_le_bytes());
                for _ in 0..ops * hops {
                    *turn ^= 1;
                    let (bare, f) = &mut pair[*turn];
                    bare.message(*f, 7, &msg)?;
                }
            }
            FloorKind::RoundTrip {
                requester,
                responder,
                handle_response,
                handle_request,
            } => {
                for _ in 0..ops {
                    requester.store.set_epoch_deadline(BUDGET_TICKS);
                    responder.store.set_epoch_deadline(BUDGET_TICKS);
                    let id = requester.store.data().next_id;
                    // SAFETY: both types were checked with `typed` in `Floor::new`.
                    let answer = unsafe {
                        TypedFunc::<(u64, u64, &[u8]), (Option<LiftedBytes>,)>::new_unchecked(
                            *handle_request,
                        )
                    };
                    // The reply is copied while it is lifted, as the runtime does:
                    // the guest's post-return may free it before `call` returns.
                    let (reply,) = answer
                        .call(&mut responder.store, (1, id, &msg))
                        .map_err(err)?;
                    let reply = reply.ok_or_else(|| err("the responder deferred"))?;
                    std::hint::black_box(&reply.0);
                    // SAFETY: as above.
                    let deliver = unsafe {
                        TypedFunc::<(u64, Result<&[u8], RequestError>), ()>::new_unchecked(
                            *handle_response,
                        )
                    };
                    deliver
                        .call(&mut requester.store, (id, Ok(&msg)))
                        .map_err(err)?;
                }
            }
            FloorKind::Fan {
                fanout,
                round,
                sink,
                consume,
            } => {
                let n = self.params.fan_out as u64;
                msg[..4].copy_from_slice(&2u32.to_le_bytes());
                for _ in 0..ops.div_ceil(n) {
                    fanout.message(*round, 1, &msg)?;
                    for _ in 0..n {
                        sink.message(*consume, 2, &msg)?;
                    }
                }
            }
            FloorKind::Spawn { engine, pre, init } => {
                // As the runtime's measurement does: batches of instances
                // alive at once (each in a pool slot of its own), timed while
                // they are made, dropped outside the time.
                let mut elapsed = Duration::ZERO;
                let mut left = ops;
                let mut stores = Vec::with_capacity(super::SPAWN_BATCH as usize);
                while left > 0 {
                    let batch = left.min(super::SPAWN_BATCH);
                    let start = Instant::now();
                    for _ in 0..batch {
                        let mut store = Store::new(engine, Seen::default());
                        store.set_epoch_deadline(BUDGET_TICKS);
                        let instance = pre.instantiate(&mut store).map_err(err)?;
                        let init = instance
                            .get_typed_func::<(&[u8],), (Result<(), String>,)>(&mut store, &*init)
                            .map_err(err)?;
                        init.call(&mut store, (&[][..],))
                            .map_err(err)?
                            .0
                            .map_err(err)?;
                        stores.push(store);
                    }
                    elapsed += start.elapsed();
                    stores.clear();
                    left -= batch;
                }
                return Ok(elapsed);
            }
        }
        let elapsed = start.elapsed();
        let total = match self.workload {
            Workload::FanOut => {
                ops.div_ceil(self.params.fan_out as u64) * self.params.fan_out as u64
            }
            _ => ops,
        };
        Ok(elapsed.mul_f64(ops as f64 / total as f64))
    }
}

/// The floor of a storage call: `store.wat`'s loop against host functions that
/// keep nothing: `get` answers a constant 32-byte value, `set` and `delete`
/// succeed.
pub struct StorageFloor {
    bare: Bare,
    f: Func,
}

/// What the floor's `get` answers (lowered from a borrow: nothing allocated).
static STORED: [u8; 32] = *b"0123456789abcdef0123456789abcdef";

impl StorageFloor {
    /// The floor, instantiated and initialised.
    ///
    /// # Errors
    ///
    /// The fixture cannot be set up.
    pub fn new() -> Result<StorageFloor, BenchError> {
        let (engine, mut linker) = floor_engine(64)?;
        let mut storage = linker.instance(STORAGE_INTERFACE).map_err(err)?;
        (|| -> wasmtime::Result<()> {
            storage.func_wrap(
                "get",
                |store: StoreContextMut<'_, Seen>, (key,): (WasmList<u8>,)| {
                    std::hint::black_box(key.as_le_slice(&store));
                    Ok((Some(&STORED[..]),))
                },
            )?;
            storage.func_wrap(
                "set",
                |store: StoreContextMut<'_, Seen>, (key, value): (WasmList<u8>, WasmList<u8>)| {
                    std::hint::black_box((key.as_le_slice(&store), value.as_le_slice(&store)));
                    Ok((Ok::<(), crate::error::StorageError>(()),))
                },
            )?;
            storage.func_wrap(
                "delete",
                |store: StoreContextMut<'_, Seen>, (key,): (WasmList<u8>,)| {
                    std::hint::black_box(key.as_le_slice(&store));
                    Ok((true,))
                },
            )?;
            Ok(())
        })()
        .map_err(err)?;
        let mut bare = Bare::new(&engine, &linker, fixtures::STORE, b"")?;
        let f = bare.handle_message()?;
        Ok(StorageFloor { bare, f })
    }

    /// One message of `store.wat`: `n` iterations of `mode` (`b'b'` the loop
    /// alone, `b's'` set, `b'g'` get, `b'd'` set then delete).
    ///
    /// # Errors
    ///
    /// The guest trapped (a call did not answer as the fixture expects).
    pub fn run(&mut self, mode: u8, n: u32) -> Result<(), BenchError> {
        let mut msg = [mode, 0, 0, 0, 0, 0, 0, 0];
        msg[4..].copy_from_slice(&n.to_le_bytes());
        self.bare.message(self.f, 1, &msg)
    }
}
