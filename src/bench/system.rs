//! A workload's actors on a running runtime, and runs of it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::natives::{Collector, FanOut, Producer, Relay, Responder, Rtt, Sink};
use super::{
    Actors, BenchError, Params, SPAWN_BATCH, Samples, Workload, err, fixtures, lock,
    producer_command,
};
use crate::{Address, Component, Grants, NativeActor, Runtime, SpawnOptions};

/// What a bench component is granted when the runtime does not trust it: the
/// names of the actors the workloads send to, request from and look up.
fn bench_grants() -> Grants {
    let names = ["sink-*", "relay-*", "responder", "collector"];
    Grants::none().send(names).request(names).lookup(names)
}

/// Most round-trip times a component records in one run.
const LATENCY_SAMPLES: u64 = 65_536;

/// How long a run may take before it is called stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Round-trip times recorded by native actors, handed over once per run.
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
        let mut builder = Runtime::builder()
            .shards(shards)
            .max_actors(max_actors)
            .pin_cores(params.pin_cores)
            .log_sink(|_| {});
        if params.trusted {
            builder = builder.default_grants(Grants::all());
        }
        if let Some(spin) = params.park_spin {
            builder = builder.park_spin(spin);
        }
        if let Some(max) = params.park_spin_max {
            builder = builder.park_spin_max(max);
        }
        let rt = builder.build().map_err(err)?;
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
            Some(c) => {
                let mut options = SpawnOptions::new(name).config(config).shard(shard);
                // The spawned counters reach no one: they keep the runtime's
                // default grants (building grants is not the spawn's cost).
                if !self.params.trusted && self.workload != Workload::Spawn {
                    options = options.grants(bench_grants());
                }
                self.rt.spawn(c, options)
            }
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
            Workload::TellBatch if wasm => {
                let framer = self.load("framer", fixtures::FRAMER)?;
                let counter = self.load("batcount", fixtures::BATCOUNT)?;
                self.spawn(Some(&counter), Sink, "sink-0", b"", 0)?;
                self.sinks.push("sink-0".into());
                let p = self.spawn(Some(&framer), Sink, "framer", b"sink-0", 0)?;
                self.senders.push(p);
            }
            Workload::Tell | Workload::TellBatch | Workload::TellCross | Workload::Counting => {
                let producer = comp(self, "producer", fixtures::PRODUCER)?;
                let counter = comp(self, "counter", fixtures::COUNTER)?;
                // tell: one pair on shard 0; tell-cross: pair i sends from shard i to
                // shard i+1; counting: a producer per shard, one sink on shard 0.
                let (pairs, sinks) = match self.workload {
                    Workload::Tell | Workload::TellBatch => (1, 1),
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
                stats.shards.iter().map(|s| s.requests.answered).sum()
            }
            _ => self
                .sinks
                .iter()
                .map(|n| stats.actor(n).map_or(0, |a| a.handled))
                .sum(),
        }
    }

    /// Runs `ops` operations (taken as 1 to [`super::MAX_MESSAGES`]) and returns
    /// how long they took. For `fan-out`, whole rounds run, and the time is scaled
    /// to `ops`.
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
        let ops = ops.clamp(1, super::MAX_MESSAGES);
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
            Workload::TellBatch if self.actors == Actors::Component => {
                let cmd = super::framer_command(ops as u32);
                self.rt.send(self.senders[0], &cmd).map_err(err)?;
            }
            Workload::Tell | Workload::TellBatch | Workload::TellCross | Workload::Counting => {
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
    /// does not say (only Linux's `/proc/self/status` is read). Call it before any
    /// other spawn: a pool slot used before keeps the start of its memory and
    /// table resident, so actors in reused slots would look cheaper.
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

/// The process's resident set (`VmRSS` of Linux's `/proc/self/status`,
/// whatever the page size).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// What many idle actors hold ([`density`]).
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct Density {
    /// Actors asked for.
    pub asked: u64,
    /// Actors spawned (fewer than asked if a spawn failed).
    pub spawned: u64,
    /// Resident bytes per idle actor, with all of them alive (Linux).
    pub bytes_per_actor: Option<u64>,
    /// Resident bytes per actor left once all of them were stopped (what
    /// their pool slots and the runtime keep) (Linux).
    pub left_per_actor: Option<u64>,
    /// Why spawning stopped short, with its causes.
    pub stopped_by: Option<String>,
}

/// Spawns `n` idle actors (`counter.wat`, or empty native actors) into a
/// fresh runtime sized for them, over `params.shards` shards, and measures
/// the process's resident set before, with all of them alive, and after
/// stopping them all. A spawn that fails ends the spawning (the count and the
/// error are reported); the kernel's limit on memory mappings stops
/// component actors near 21 800 unless it is raised.
///
/// # Errors
///
/// Bad parameters, or a runtime or component that cannot be set up.
pub fn density(actors: Actors, params: &Params, n: u64) -> Result<Density, BenchError> {
    params.check()?;
    let n = n.clamp(1, 1_000_000);
    let shards = params.shards;
    let rt = Runtime::builder()
        .shards(shards)
        .max_actors(n as u32 + 16)
        .log_sink(|_| {})
        .build()
        .map_err(err)?;
    let component = match actors {
        Actors::Component => Some(
            rt.load_component("counter", fixtures::COUNTER.as_bytes())
                .map_err(err)?,
        ),
        Actors::Native => None,
    };
    let before = resident_bytes();
    let mut spawned = Vec::with_capacity(n as usize);
    let mut stopped_by = None;
    for i in 0..n {
        let name = format!("dense-{i}");
        let shard = i as usize % shards;
        let r = match &component {
            Some(c) => rt.spawn(c, SpawnOptions::new(&name).shard(shard)),
            None => rt.spawn_native(&name, Some(shard), Sink),
        };
        match r {
            Ok(a) => spawned.push(a),
            Err(e) => {
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why.push_str(": ");
                    why.push_str(&s.to_string());
                    source = s.source();
                }
                stopped_by = Some(why);
                break;
            }
        }
    }
    if !rt.wait_idle(RUN_TIMEOUT) {
        return Err(err("density: not idle"));
    }
    let alive = resident_bytes();
    for a in &spawned {
        rt.stop(*a).map_err(err)?;
    }
    rt.wait_idle(RUN_TIMEOUT);
    let left = resident_bytes();
    rt.shutdown();
    let count = spawned.len() as u64;
    let per = |to: Option<u64>| match (before, to) {
        (Some(b), Some(t)) if count > 0 => Some(t.saturating_sub(b) / count),
        _ => None,
    };
    Ok(Density {
        asked: n,
        spawned: count,
        bytes_per_actor: per(alive),
        left_per_actor: per(left),
        stopped_by,
    })
}
