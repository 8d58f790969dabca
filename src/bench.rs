//! The benchmark workloads, written once and run by both `wasmshard bench` and the
//! criterion benches in `benches/`.
//!
//! A workload is a small system of actors ([`System`]) that the host drives in
//! runs of a given number of operations, and, for WebAssembly components, a
//! [`Floor`]: the exact import and export calls the workload makes, on plain
//! wasmtime stores with the runtime's own engine and no runtime around them. A
//! workload's ratio is its time per operation over its floor's, both measured in
//! the same process, one right after the other.
//!
//! | workload | one operation | shards |
//! |---|---|---|
//! | `tell` | a message from a producer to a sink | 1 |
//! | `tell-cross` | a message from a producer to a sink on the next shard; one producer→sink pair per shard | ≥ 2 |
//! | `ping-pong` | a round trip: two actors bouncing one message | 1 |
//! | `request` | a request→response round trip | 1 |
//! | `request-cross` | the same with the responder on a second shard | 2 |
//! | `fan-out` | a message from one actor to one of its N receivers (spread over the shards) | any |
//! | `ring` | one hop of a token around a ring of N actors (actor i on shard i mod S) | any |
//! | `counting` | a message to one receiver on shard 0 from one producer on every shard | any |
//! | `spawn` | spawning an actor from a loaded component (or a native actor) | any |
//!
//! Every run checks its outcome (the receivers handled exactly what was sent,
//! every request was answered) before its time is used, and a system or floor that
//! fails to check is an error, never a figure.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::{
    ComponentExportIndex, Func, Instance, InstancePre, Linker, TypedFunc, WasmList, WasmStr,
};
use wasmtime::{Engine, Store, StoreContextMut};

use crate::{
    Address, Component, Context, LogLevel, NativeActor, RequestError, Runtime, SendError,
    SpawnOptions,
};

/// The fixtures the workloads run, bundled so that `wasmshard bench` needs no files.
pub mod fixtures {
    /// Sends sequenced messages to the actor named in its config (`producer.wat`).
    pub const PRODUCER: &str = include_str!("../fixtures/producer.wat");
    /// Counts what it handles (`counter.wat`).
    pub const COUNTER: &str = include_str!("../fixtures/counter.wat");
    /// Forwards a hop count to the actor named in its config (`relay.wat`).
    pub const RELAY: &str = include_str!("../fixtures/relay.wat");
    /// Sends each round to every address in its config (`fanout.wat`).
    pub const FANOUT: &str = include_str!("../fixtures/fanout.wat");
    /// Sequential requests to the actor named in its config (`rtt.wat`).
    pub const RTT: &str = include_str!("../fixtures/rtt.wat");
    /// Answers every request with its payload (`responder.wat`).
    pub const RESPONDER: &str = include_str!("../fixtures/responder.wat");
}

/// Why a workload could not be set up or did not check out.
#[derive(Debug, Clone)]
pub struct BenchError(String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

fn err(message: impl fmt::Display) -> BenchError {
    BenchError(message.to_string())
}

/// One of the workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Producer → sink, same shard.
    Tell,
    /// Producer → sink on the next shard, one pair per shard.
    TellCross,
    /// Two actors bouncing one message; one operation is a round trip.
    PingPong,
    /// Sequential request→response round trips, same shard.
    Request,
    /// Sequential request→response round trips, responder on another shard.
    RequestCross,
    /// One actor to N receivers.
    FanOut,
    /// A token passed around a ring of N actors.
    Ring,
    /// One receiver, a producer on every shard.
    Counting,
    /// Spawning actors.
    Spawn,
}

impl Workload {
    /// Every workload, in the order `wasmshard bench` runs them.
    pub const ALL: [Workload; 9] = [
        Workload::Tell,
        Workload::TellCross,
        Workload::PingPong,
        Workload::Request,
        Workload::RequestCross,
        Workload::FanOut,
        Workload::Ring,
        Workload::Counting,
        Workload::Spawn,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Tell => "tell",
            Workload::TellCross => "tell-cross",
            Workload::PingPong => "ping-pong",
            Workload::Request => "request",
            Workload::RequestCross => "request-cross",
            Workload::FanOut => "fan-out",
            Workload::Ring => "ring",
            Workload::Counting => "counting",
            Workload::Spawn => "spawn",
        }
    }

    /// The workload called `name`.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// Whether one operation is a round trip (then latency percentiles apply).
    pub fn is_round_trip(self) -> bool {
        matches!(
            self,
            Workload::PingPong | Workload::Request | Workload::RequestCross
        )
    }

    /// The shards the workload runs on, given the requested count.
    pub fn shards(self, requested: usize) -> usize {
        match self {
            Workload::Tell | Workload::PingPong | Workload::Request => 1,
            Workload::RequestCross => 2,
            Workload::TellCross => requested.max(2),
            _ => requested.max(1),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the actors of a workload are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Actors {
    /// The bundled WebAssembly fixtures.
    Component,
    /// Native Rust actors doing the same, so the runtime's own cost shows apart
    /// from WebAssembly's.
    Native,
}

impl Actors {
    /// `component` or `native`.
    pub fn name(self) -> &'static str {
        match self {
            Actors::Component => "component",
            Actors::Native => "native",
        }
    }
}

/// How a workload is shaped.
#[derive(Clone, Debug)]
pub struct Params {
    /// Shards requested; see [`Workload::shards`] for what each workload uses.
    pub shards: usize,
    /// Payload bytes per message, 8 to 1024.
    pub payload: usize,
    /// Receivers of `fan-out`.
    pub fan_out: usize,
    /// Actors in the `ring`.
    pub ring: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            shards: 2,
            payload: 64,
            fan_out: 8,
            ring: 16,
        }
    }
}

impl Params {
    fn check(&self) -> Result<(), BenchError> {
        if !(8..=1024).contains(&self.payload) {
            return Err(err(format!(
                "payload of {} bytes: workloads carry 8 to 1024",
                self.payload
            )));
        }
        if self.shards == 0 || self.shards > crate::MAX_SHARDS {
            return Err(err(format!(
                "{} shards: 1 to {} are possible",
                self.shards,
                crate::MAX_SHARDS
            )));
        }
        if !(1..=8192).contains(&self.fan_out) || !(2..=100_000).contains(&self.ring) {
            return Err(err(
                "fan-out takes 1 to 8192 receivers, a ring 2 to 100 000 actors",
            ));
        }
        Ok(())
    }
}

/// Most round-trip times a component records in one run.
const LATENCY_SAMPLES: u64 = 65_536;

/// How long a run may take before it is called stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Round-trip times recorded by native actors, handed over once per run.
type Samples = Arc<Mutex<Vec<u64>>>;

/// A workload's actors on a running [`Runtime`], ready for runs.
pub struct System {
    workload: Workload,
    actors: Actors,
    params: Params,
    shards: usize,
    rt: Runtime,
    /// Who the host kicks off, one per sender.
    senders: Vec<Address>,
    /// Names whose handled counts measure the work done.
    sinks: Vec<String>,
    /// Handled (or answered) so far, over `sinks`.
    done: u64,
    samples: Option<Samples>,
    /// Components' round-trip workloads: the native actor that starts a recorded
    /// run and collects the times the guest reports.
    collector: Option<(Address, Samples)>,
    spawnable: Option<Component>,
    spawned: u64,
}

impl System {
    /// Sets up `workload` with `actors`, shaped by `params`.
    ///
    /// # Errors
    ///
    /// Bad parameters, or a runtime, component or actor that cannot be set up.
    pub fn new(workload: Workload, actors: Actors, params: &Params) -> Result<System, BenchError> {
        params.check()?;
        let shards = workload.shards(params.shards);
        let max_actors = match workload {
            Workload::Spawn => SPAWN_BATCH as u32 + 16,
            _ => (2 * shards + params.fan_out + params.ring + 8) as u32,
        };
        let rt = Runtime::builder()
            .shards(shards)
            .max_actors(max_actors)
            .log_sink(|_| {})
            .build()
            .map_err(err)?;
        let mut sys = System {
            workload,
            actors,
            params: params.clone(),
            shards,
            rt,
            senders: Vec::new(),
            sinks: Vec::new(),
            done: 0,
            samples: None,
            collector: None,
            spawnable: None,
            spawned: 0,
        };
        sys.build()?;
        Ok(sys)
    }

    /// The shards the system runs on.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The runtime, for stats.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn load(&self, name: &str, text: &str) -> Result<Component, BenchError> {
        self.rt
            .load_component(name, text.as_bytes())
            .map_err(|e| err(format!("{name}: {e}")))
    }

    fn spawn(
        &mut self,
        component: Option<&Component>,
        native: impl NativeActor,
        name: &str,
        config: &[u8],
        shard: usize,
    ) -> Result<Address, BenchError> {
        let shard = shard % self.shards;
        let spawned = match component {
            Some(c) => self
                .rt
                .spawn(c, SpawnOptions::new(name).config(config).shard(shard)),
            None => self.rt.spawn_native(name, Some(shard), native),
        };
        spawned.map_err(|e| err(format!("cannot spawn `{name}`: {e}")))
    }

    fn build(&mut self) -> Result<(), BenchError> {
        let wasm = self.actors == Actors::Component;
        let comp =
            |sys: &System, name: &str, text: &str| -> Result<Option<Component>, BenchError> {
                if wasm {
                    sys.load(name, text).map(Some)
                } else {
                    Ok(None)
                }
            };
        let s = self.shards;
        match self.workload {
            Workload::Tell | Workload::TellCross | Workload::Counting => {
                let producer = comp(self, "producer", fixtures::PRODUCER)?;
                let counter = comp(self, "counter", fixtures::COUNTER)?;
                // tell: one pair on shard 0; tell-cross: pair i sends from shard i to
                // shard i+1; counting: a producer per shard, one sink on shard 0.
                let (pairs, sinks) = match self.workload {
                    Workload::Tell => (1, 1),
                    Workload::TellCross => (s, s),
                    _ => (s, 1),
                };
                for i in 0..sinks {
                    let name = format!("sink-{i}");
                    let shard = if self.workload == Workload::TellCross {
                        i + 1
                    } else {
                        0
                    };
                    self.spawn(counter.as_ref(), Sink, &name, b"", shard)?;
                    self.sinks.push(name);
                }
                for i in 0..pairs {
                    let sink = format!("sink-{}", i % sinks);
                    let target = self.rt.lookup(&sink).expect("spawned");
                    let p = self.spawn(
                        producer.as_ref(),
                        Producer::new(target),
                        &format!("producer-{i}"),
                        sink.as_bytes(),
                        i,
                    )?;
                    self.senders.push(p);
                }
            }
            Workload::PingPong | Workload::Ring => {
                let relay = comp(self, "relay", fixtures::RELAY)?;
                let n = if self.workload == Workload::PingPong {
                    2
                } else {
                    self.params.ring
                };
                let samples: Samples = Arc::new(Mutex::new(Vec::new()));
                for i in (0..n).rev() {
                    let next = format!("relay-{}", (i + 1) % n);
                    let recorder =
                        (i == 0 && self.workload == Workload::PingPong).then(|| samples.clone());
                    let a = self.spawn(
                        relay.as_ref(),
                        Relay::new(next.clone(), recorder),
                        &format!("relay-{i}"),
                        next.as_bytes(),
                        i,
                    )?;
                    self.sinks.push(format!("relay-{i}"));
                    if i == 0 {
                        self.senders.push(a);
                    }
                }
                if self.workload == Workload::PingPong {
                    if wasm {
                        self.collect()?;
                    } else {
                        self.samples = Some(samples);
                    }
                }
            }
            Workload::Request | Workload::RequestCross => {
                let rtt = comp(self, "rtt", fixtures::RTT)?;
                let responder = comp(self, "responder", fixtures::RESPONDER)?;
                let shard = if self.workload == Workload::RequestCross {
                    1
                } else {
                    0
                };
                self.spawn(responder.as_ref(), Responder, "responder", b"", shard)?;
                let target = self.rt.lookup("responder").expect("spawned");
                let samples: Samples = Arc::new(Mutex::new(Vec::new()));
                let r = self.spawn(
                    rtt.as_ref(),
                    Rtt::new(target, samples.clone()),
                    "rtt",
                    b"responder",
                    0,
                )?;
                self.senders.push(r);
                if wasm {
                    self.collect()?;
                } else {
                    self.samples = Some(samples);
                }
            }
            Workload::FanOut => {
                let fanout = comp(self, "fanout", fixtures::FANOUT)?;
                let counter = comp(self, "counter", fixtures::COUNTER)?;
                let mut targets = Vec::new();
                for i in 0..self.params.fan_out {
                    let name = format!("sink-{i}");
                    targets.push(self.spawn(counter.as_ref(), Sink, &name, b"", i)?);
                    self.sinks.push(name);
                }
                let config: Vec<u8> = targets
                    .iter()
                    .flat_map(|a| a.to_bits().to_le_bytes())
                    .collect();
                let f = self.spawn(fanout.as_ref(), FanOut::new(targets), "fanout", &config, 0)?;
                self.senders.push(f);
            }
            Workload::Spawn => {
                self.spawnable = comp(self, "counter", fixtures::COUNTER)?;
            }
        }
        Ok(())
    }

    /// Spawns the collector for `senders[0]`, on its shard (0).
    fn collect(&mut self) -> Result<(), BenchError> {
        let samples: Samples = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector {
            start: self.senders[0],
            samples: samples.clone(),
        };
        let a = self.spawn(None, collector, "collector", b"", 0)?;
        self.collector = Some((a, samples));
        Ok(())
    }

    /// Handled so far by the sinks (or requests answered).
    fn progress(&self) -> u64 {
        let stats = self.rt.stats();
        match self.workload {
            Workload::Request | Workload::RequestCross => {
                stats.shards.iter().map(|s| s.requests_answered).sum()
            }
            _ => self
                .sinks
                .iter()
                .map(|n| stats.actor(n).map_or(0, |a| a.handled))
                .sum(),
        }
    }

    /// Runs `ops` operations and returns how long they took. For `fan-out`, whole
    /// rounds run, and the time is scaled to `ops`.
    ///
    /// # Errors
    ///
    /// The system did not become idle within 10 minutes, or did not do exactly the
    /// work asked (a lost or extra message, an unanswered request).
    pub fn run(&mut self, ops: u64) -> Result<Duration, BenchError> {
        self.run_inner(ops, false)
    }

    /// Round-trip times of components (`ping-pong`, `request`, `request-cross`):
    /// a separate run of `ops` round trips in which the guest reads the clock
    /// (`now-ns`) around each one and reports the times at the end, at most the
    /// last 65 536. `None` for other workloads and for native actors (they record
    /// during [`System::run`]; see [`System::take_samples`]).
    ///
    /// # Errors
    ///
    /// As [`System::run`], or a report that does not hold one time per round trip.
    pub fn record_latency(&mut self, ops: u64) -> Result<Option<Vec<u64>>, BenchError> {
        let Some((_, samples)) = &self.collector else {
            return Ok(None);
        };
        lock(samples).clear();
        let ops = ops.clamp(1, LATENCY_SAMPLES);
        self.run_inner(ops, true)?;
        let (_, samples) = self.collector.as_ref().expect("collector");
        let times = std::mem::take(&mut *lock(samples));
        if times.len() as u64 != ops {
            return Err(err(format!(
                "{}: {} round-trip times reported for {ops} round trips",
                self.workload,
                times.len()
            )));
        }
        Ok(Some(times))
    }

    fn run_inner(&mut self, ops: u64, record: bool) -> Result<Duration, BenchError> {
        let ops = ops.clamp(1, u32::MAX as u64 / 2);
        if self.workload == Workload::Spawn {
            return self.run_spawn(ops);
        }
        let mut msg = vec![0u8; self.params.payload];
        let (expected, work) = match self.workload {
            Workload::PingPong => (2 * ops + 1, 2 * ops),
            Workload::Ring => (ops + 1, ops),
            Workload::FanOut => {
                let n = self.params.fan_out as u64;
                let rounds = ops.div_ceil(n);
                (rounds * n, rounds * n)
            }
            _ => (ops, ops),
        };
        let fresh = |samples: &Option<Samples>| {
            if let Some(s) = samples {
                *lock(s) = Vec::with_capacity(ops as usize);
            }
        };
        fresh(&self.samples);
        let start = Instant::now();
        match self.workload {
            Workload::Tell | Workload::TellCross | Workload::Counting => {
                let n = self.senders.len() as u64;
                for (i, p) in self.senders.iter().enumerate() {
                    let share = ops / n + u64::from((i as u64) < ops % n);
                    if share == 0 {
                        continue;
                    }
                    let cmd = producer_command(share as u32, 1, self.params.payload);
                    self.rt.send(*p, &cmd).map_err(err)?;
                }
            }
            Workload::FanOut => {
                msg[..4]
                    .copy_from_slice(&((work / self.params.fan_out as u64) as u32).to_le_bytes());
                msg[4..8].copy_from_slice(&0u32.to_le_bytes());
                self.rt.send(self.senders[0], &msg).map_err(err)?;
            }
            _ => {
                msg[..4].copy_from_slice(&(work as u32).to_le_bytes());
                let to = match (&self.collector, record) {
                    (Some((collector, _)), true) => {
                        msg[4..8].copy_from_slice(&1u32.to_le_bytes());
                        *collector
                    }
                    _ => self.senders[0],
                };
                self.rt.send(to, &msg).map_err(err)?;
            }
        }
        if !self.rt.wait_idle(RUN_TIMEOUT) {
            return Err(err(format!(
                "{}: not idle after {RUN_TIMEOUT:?}",
                self.workload
            )));
        }
        let elapsed = start.elapsed();
        let progress = self.progress();
        if progress - self.done != expected {
            return Err(err(format!(
                "{} ({}): {} handled, {expected} expected",
                self.workload,
                self.actors.name(),
                progress - self.done
            )));
        }
        self.done = progress;
        let total = if self.workload == Workload::FanOut {
            work
        } else {
            ops
        };
        Ok(elapsed.mul_f64(ops as f64 / total as f64))
    }

    fn run_spawn(&mut self, ops: u64) -> Result<Duration, BenchError> {
        let mut elapsed = Duration::ZERO;
        let mut left = ops;
        while left > 0 {
            let batch = left.min(SPAWN_BATCH);
            let mut spawned = Vec::with_capacity(batch as usize);
            let names: Vec<String> = (0..batch)
                .map(|i| format!("spawned-{}", self.spawned + i))
                .collect();
            let start = Instant::now();
            for (i, name) in names.iter().enumerate() {
                let component = self.spawnable.clone();
                let a = self.spawn(component.as_ref(), Sink, name, b"", i)?;
                spawned.push(a);
            }
            elapsed += start.elapsed();
            self.spawned += batch;
            left -= batch;
            for a in spawned {
                self.rt.stop(a).map_err(err)?;
            }
            if !self.rt.wait_idle(RUN_TIMEOUT) {
                return Err(err("spawn: not idle after stopping"));
            }
        }
        Ok(elapsed)
    }

    /// Resident memory per idle actor: spawns `n` actors, measures the process's
    /// resident set before and after, and stops them. `None` where the platform
    /// does not say (only Linux's `/proc/self/statm` is read). Call it before any
    /// other spawn: a pool slot used before keeps its first 64 KiB resident, so
    /// actors in reused slots would look free.
    ///
    /// # Errors
    ///
    /// An actor that cannot be spawned.
    pub fn memory_per_actor(&mut self, n: u64) -> Result<Option<u64>, BenchError> {
        let n = n.clamp(1, SPAWN_BATCH);
        let Some(before) = resident_bytes() else {
            return Ok(None);
        };
        let mut spawned = Vec::new();
        for i in 0..n {
            let component = self.spawnable.clone();
            let name = format!("idle-{}", self.spawned + i);
            spawned.push(self.spawn(component.as_ref(), Sink, &name, b"", i as usize)?);
        }
        self.spawned += n;
        if !self.rt.wait_idle(RUN_TIMEOUT) {
            return Err(err("spawn: not idle"));
        }
        let after = resident_bytes().unwrap_or(before);
        for a in spawned {
            self.rt.stop(a).map_err(err)?;
        }
        self.rt.wait_idle(RUN_TIMEOUT);
        Ok(Some(after.saturating_sub(before) / n))
    }

    /// The round-trip times (ns) recorded during the last run, where native actors
    /// recorded them (`ping-pong` and `request` with native actors).
    pub fn take_samples(&mut self) -> Option<Vec<u64>> {
        let s = self.samples.as_ref()?;
        let v = std::mem::take(&mut *lock(s));
        (!v.is_empty()).then_some(v)
    }

    /// Shuts the runtime down.
    pub fn shutdown(self) {
        self.rt.shutdown();
    }
}

/// The message that starts `producer.wat` (and [`Producer`]): `count` messages of
/// `size` bytes, in `mode` 0 (blast: a failed send is dropped) or 1 (reliable).
fn producer_command(count: u32, mode: u32, size: usize) -> [u8; 12] {
    let mut cmd = [0u8; 12];
    for (i, w) in [count, mode, size as u32].into_iter().enumerate() {
        cmd[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    cmd
}

/// Swaps `local` with the buffer in `samples`: a native actor takes the buffer the
/// host prepared when a run starts and hands it back when the run ends, one lock
/// each time, none per message.
fn exchange(samples: &Samples, local: &mut Vec<u64>) {
    std::mem::swap(local, &mut *lock(samples));
}

fn lock(samples: &Samples) -> std::sync::MutexGuard<'_, Vec<u64>> {
    samples.lock().unwrap_or_else(|e| e.into_inner())
}

/// Actors spawned per batch in `spawn` (they are stopped between batches).
const SPAWN_BATCH: u64 = 1000;

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

// ---------------------------------------------------------------------------
// Native actors: the same behaviour as the fixtures, in Rust.

/// Counts nothing itself: the runtime's `handled` counter is the measure.
struct Sink;

impl NativeActor for Sink {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, payload: &[u8]) {
        std::hint::black_box(payload);
    }
}

/// `producer.wat` in reliable mode: sends its count of messages, and when the
/// target's mailbox is full, messages itself and goes on later.
struct Producer {
    target: Address,
    left: u32,
    size: usize,
    seq: u64,
    buf: [u8; 1024],
}

impl Producer {
    fn new(target: Address) -> Producer {
        Producer {
            target,
            left: 0,
            size: 8,
            seq: 0,
            buf: [0; 1024],
        }
    }
}

impl NativeActor for Producer {
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        let word = |i: usize| {
            payload
                .get(i * 4..i * 4 + 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        if from != ctx.self_address() {
            self.left = word(0);
            self.size = (word(2) as usize).clamp(8, 1024);
        }
        while self.left > 0 {
            self.buf[..8].copy_from_slice(&self.seq.to_le_bytes());
            match ctx.send(self.target, &self.buf[..self.size]) {
                Ok(()) => {
                    self.seq += 1;
                    self.left -= 1;
                }
                Err(SendError::MailboxFull) => {
                    let me = ctx.self_address();
                    let _ = ctx.send(me, &[0; 8]);
                    return;
                }
                Err(_) => self.left -= 1,
            }
        }
    }
}

/// `relay.wat`: forwards count - 1 to the next actor while the count is not 0.
/// The one at position 0 of a ping-pong pair records round-trip times.
struct Relay {
    next_name: String,
    next: Option<Address>,
    buf: [u8; 1024],
    samples: Option<Samples>,
    local: Vec<u64>,
    last: Option<Instant>,
}

impl Relay {
    fn new(next_name: String, samples: Option<Samples>) -> Relay {
        Relay {
            next_name,
            next: None,
            buf: [0; 1024],
            samples,
            local: Vec::new(),
            last: None,
        }
    }
}

impl NativeActor for Relay {
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        if payload.len() < 4 || payload.len() > 1024 {
            return;
        }
        let n = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
        if let Some(samples) = &self.samples {
            let now = Instant::now();
            if from == Address::HOST {
                // A run starts: take the buffer the host prepared.
                exchange(samples, &mut self.local);
            } else if let Some(last) = self.last
                && self.local.len() < self.local.capacity()
            {
                self.local.push(now.duration_since(last).as_nanos() as u64);
            }
            self.last = Some(now);
            if n == 0 {
                exchange(samples, &mut self.local);
                self.last = None;
            }
        }
        if n == 0 {
            return;
        }
        let next = match self.next {
            Some(a) => a,
            None => match ctx.lookup(&self.next_name) {
                Some(a) => *self.next.insert(a),
                None => return,
            },
        };
        let len = payload.len();
        self.buf[..len].copy_from_slice(payload);
        self.buf[..4].copy_from_slice(&(n - 1).to_le_bytes());
        let _ = ctx.send(next, &self.buf[..len]);
    }
}

/// Starts a recorded run of a component (a host message is passed on to `start`,
/// which reports to its sender) and collects the round-trip times it reports
/// (u32 little endian, ns).
struct Collector {
    start: Address,
    samples: Samples,
}

impl NativeActor for Collector {
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        if from == Address::HOST {
            let _ = ctx.send(self.start, payload);
            return;
        }
        lock(&self.samples).extend(
            payload
                .chunks_exact(4)
                .map(|c| u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes")))),
        );
    }
}

/// `fanout.wat`: one round per message, resuming after a full mailbox.
struct FanOut {
    targets: Vec<Address>,
    buf: [u8; 1024],
}

impl FanOut {
    fn new(targets: Vec<Address>) -> FanOut {
        FanOut {
            targets,
            buf: [0; 1024],
        }
    }
}

impl NativeActor for FanOut {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        let len = payload.len();
        if !(8..=1024).contains(&len) {
            return;
        }
        self.buf[..len].copy_from_slice(payload);
        let word =
            |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let rounds = word(&self.buf, 0);
        if rounds == 0 {
            return;
        }
        let me = ctx.self_address();
        for i in word(&self.buf, 4) as usize..self.targets.len() {
            if let Err(SendError::MailboxFull) = ctx.send(self.targets[i], &self.buf[..len]) {
                self.buf[4..8].copy_from_slice(&(i as u32).to_le_bytes());
                let _ = ctx.send(me, &self.buf[..len]);
                return;
            }
        }
        if rounds > 1 {
            self.buf[..4].copy_from_slice(&(rounds - 1).to_le_bytes());
            self.buf[4..8].copy_from_slice(&0u32.to_le_bytes());
            let _ = ctx.send(me, &self.buf[..len]);
        }
    }
}

/// `rtt.wat`: sequential requests, recording each round trip's time.
struct Rtt {
    target: Address,
    left: u32,
    buf: [u8; 1024],
    len: usize,
    sent_at: Instant,
    samples: Samples,
    local: Vec<u64>,
}

impl Rtt {
    fn new(target: Address, samples: Samples) -> Rtt {
        Rtt {
            target,
            left: 0,
            buf: [0; 1024],
            len: 0,
            sent_at: Instant::now(),
            samples,
            local: Vec::new(),
        }
    }

    fn next(&mut self, ctx: &mut Context<'_>) {
        self.sent_at = Instant::now();
        if ctx
            .request(self.target, &self.buf[..self.len], 60_000_000_000)
            .is_err()
        {
            self.left = 0;
            self.publish();
        }
    }

    fn publish(&mut self) {
        exchange(&self.samples, &mut self.local);
    }
}

impl NativeActor for Rtt {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        if payload.len() < 4 || payload.len() > 1024 {
            return;
        }
        self.left = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
        self.len = payload.len();
        self.buf[..self.len].copy_from_slice(payload);
        if self.left > 0 {
            self.publish(); // take the host's prepared buffer
            self.next(ctx);
        }
    }

    fn handle_response(
        &mut self,
        ctx: &mut Context<'_>,
        _: u64,
        response: Result<&[u8], RequestError>,
    ) {
        if self.local.len() < self.local.capacity() {
            self.local.push(self.sent_at.elapsed().as_nanos() as u64);
        }
        self.left = if response.is_ok() { self.left - 1 } else { 0 };
        if self.left > 0 {
            self.next(ctx);
        } else {
            self.publish();
        }
    }
}

/// `responder.wat`: answers every request with its payload, at once.
struct Responder;

impl NativeActor for Responder {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        id: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        // Answer through the context rather than by returning a Vec: no allocation.
        let _ = ctx.respond(id, payload);
        None
    }
}

// ---------------------------------------------------------------------------
// Floors: the same calls on plain wasmtime stores.

/// What the floor's host functions saw.
#[derive(Default)]
struct Seen {
    sum: u64,
    next_id: u64,
}

/// The runtime's engine settings (so the floor compiles the same code) with host
/// functions that do the least the contract allows: look at the payload, answer.
fn floor_engine() -> Result<(Engine, Linker<Seen>), BenchError> {
    let engine =
        crate::runtime::engine(&crate::RuntimeBuilder::new().max_actors(64).config).map_err(err)?;
    let mut linker = Linker::<Seen>::new(&engine);
    let mut host = linker.instance("wasmshard:actor/host@0.1.0").map_err(err)?;
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
        let iface = self
            .component
            .get_export_index(None, "wasmshard:actor/actor@0.1.0")
            .ok_or_else(|| err("no actor interface"))?;
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
        let (engine, linker) = floor_engine()?;
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
                    .typed::<(u64, u64, &[u8]), (Option<WasmList<u8>>,)>(&responder.store)
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
                    .get_export_index(None, "wasmshard:actor/actor@0.1.0")
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
                        TypedFunc::<(u64, u64, &[u8]), (Option<WasmList<u8>>,)>::new_unchecked(
                            *handle_request,
                        )
                    };
                    let (reply,) = answer
                        .call(&mut responder.store, (1, id, &msg))
                        .map_err(err)?;
                    let reply = reply.ok_or_else(|| err("the responder deferred"))?;
                    std::hint::black_box(reply.as_le_slice(&responder.store));
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
                for _ in 0..ops {
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
                }
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

// ---------------------------------------------------------------------------
// Measuring.

/// One row of `wasmshard bench`: a workload measured beside its floor.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// The workload's name.
    pub workload: &'static str,
    /// `component` or `native`.
    pub actors: Actors,
    /// Shards the workload ran on.
    pub shards: usize,
    /// Operations measured.
    pub messages: u64,
    /// Nanoseconds per operation (per message, round trip, hop or spawn).
    pub ns_per_op: f64,
    /// Operations per second, over all shards.
    pub ops_per_sec: f64,
    /// The floor's nanoseconds per operation (components only).
    pub floor_ns: Option<f64>,
    /// `ns_per_op / floor_ns`.
    pub ratio: Option<f64>,
    /// Median round-trip time (round-trip workloads with native actors).
    pub p50_ns: Option<f64>,
    /// 99th-percentile round-trip time (as `p50_ns`).
    pub p99_ns: Option<f64>,
    /// Resident memory per idle actor (`spawn` only, Linux).
    pub bytes_per_actor: Option<u64>,
}

/// Measures `workload` with `actors` over `messages` operations, after a warm-up
/// of a tenth as many, and its floor likewise (components only).
///
/// # Errors
///
/// As [`System::new`], [`System::run`] and [`Floor::new`].
pub fn measure(
    workload: Workload,
    actors: Actors,
    params: &Params,
    messages: u64,
) -> Result<Measurement, BenchError> {
    let messages = messages.max(1);
    let warm = (messages / 10).clamp(1, 100_000);
    let mut sys = System::new(workload, actors, params)?;
    let shards = sys.shards();
    // Memory first, while every pool slot is fresh: a slot used before keeps its
    // first pages resident, which would hide what an actor costs.
    let bytes_per_actor = if workload == Workload::Spawn {
        sys.memory_per_actor(SPAWN_BATCH)?
    } else {
        None
    };
    sys.run(warm)?;
    let elapsed = sys.run(messages)?;
    let samples = match sys.take_samples() {
        Some(s) => Some(s),
        None => sys.record_latency(messages)?,
    };
    sys.shutdown();
    let ns_per_op = elapsed.as_nanos() as f64 / messages as f64;
    let floor_ns = match actors {
        Actors::Component => {
            let mut floor = Floor::new(workload, params)?;
            floor.run(warm)?;
            Some(floor.run(messages)?.as_nanos() as f64 / messages as f64)
        }
        Actors::Native => None,
    };
    let (p50_ns, p99_ns) = match samples {
        Some(mut s) => {
            s.sort_unstable();
            let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize] as f64;
            (Some(at(0.5)), Some(at(0.99)))
        }
        None => (None, None),
    };
    Ok(Measurement {
        workload: workload.name(),
        actors,
        shards,
        messages,
        ns_per_op,
        ops_per_sec: 1e9 / ns_per_op,
        floor_ns,
        ratio: floor_ns.map(|f| ns_per_op / f),
        p50_ns,
        p99_ns,
        bytes_per_actor,
    })
}
