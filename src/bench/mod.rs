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

mod floor;
mod natives;
mod system;

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::Serialize;

pub use floor::{Floor, StorageFloor};
pub use natives::Responder;
pub use system::{Density, System, density};

/// The fixtures the workloads run, bundled so that `wasmshard bench` needs no files.
pub mod fixtures {
    /// Sends sequenced messages to the actor named in its config (`producer.wat`).
    pub const PRODUCER: &str = include_str!("../../fixtures/producer.wat");
    /// Counts what it handles (`counter.wat`).
    pub const COUNTER: &str = include_str!("../../fixtures/counter.wat");
    /// Forwards a hop count to the actor named in its config (`relay.wat`).
    pub const RELAY: &str = include_str!("../../fixtures/relay.wat");
    /// Sends each round to every address in its config (`fanout.wat`).
    pub const FANOUT: &str = include_str!("../../fixtures/fanout.wat");
    /// Sequential requests to the actor named in its config (`rtt.wat`).
    pub const RTT: &str = include_str!("../../fixtures/rtt.wat");
    /// Answers every request with its payload (`responder.wat`).
    pub const RESPONDER: &str = include_str!("../../fixtures/responder.wat");
    /// Sends 64-byte messages, one `send` each or in `send-frames` calls
    /// (`framer.wat`).
    pub const FRAMER: &str = include_str!("../../fixtures/framer.wat");
    /// Counts what it handles, one by one or in batches (`batcount.wat`).
    pub const BATCOUNT: &str = include_str!("../../fixtures/batcount.wat");
    /// Calls `storage` in a loop (`store.wat`).
    pub const STORE: &str = include_str!("../../fixtures/store.wat");
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
#[non_exhaustive]
pub enum Workload {
    /// Producer → sink, same shard.
    Tell,
    /// As `tell`, through the batch lane: components send in `send-frames`
    /// calls of 64 frames to a batched sink (`batcount.wat`), which takes each
    /// turn's batch in one `handle-messages` call; messages of 64 bytes,
    /// whatever the payload parameter says. Native actors have no call to
    /// batch: theirs is `tell`.
    TellBatch,
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
    pub const ALL: [Workload; 10] = [
        Workload::Tell,
        Workload::TellBatch,
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
            Workload::TellBatch => "tell-batch",
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
            Workload::Tell | Workload::TellBatch | Workload::PingPong | Workload::Request => 1,
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
#[non_exhaustive]
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
    /// Whether components run with every grant (the runtime's default grants
    /// all), rather than granted the bench's actor names (the default).
    pub trusted: bool,
    /// With `spawn`: also spawn this many idle actors into a fresh runtime
    /// and report what each holds resident ([`Density`]); 1 to 1 000 000.
    pub density: Option<u64>,
    /// The runtime's `park_spin`, if not its default.
    pub park_spin: Option<std::time::Duration>,
    /// The runtime's `park_spin_max`, if not its default.
    pub park_spin_max: Option<std::time::Duration>,
    /// Pin shard `i` to core `i % cores`
    /// ([`RuntimeBuilder::pin_cores`](crate::RuntimeBuilder::pin_cores)), so
    /// that runs of different workloads put each shard on the same core.
    pub pin_cores: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            shards: 2,
            payload: 64,
            fan_out: 8,
            ring: 16,
            trusted: false,
            density: None,
            park_spin: None,
            park_spin_max: None,
            pin_cores: false,
        }
    }
}

impl Params {
    /// Checks the parameters before anything runs.
    ///
    /// # Errors
    ///
    /// A payload outside 8 to 1024 bytes, shards outside 1 to 256, a park spin
    /// (or its cap) beyond 10 ms, or fan-out and ring sizes out of range.
    pub fn check(&self) -> Result<(), BenchError> {
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
        if self.density.is_some_and(|n| !(1..=1_000_000).contains(&n)) {
            return Err(err("a density measurement takes 1 to 1 000 000 actors"));
        }
        for (name, spin) in [
            ("park spin", self.park_spin),
            ("park spin max", self.park_spin_max),
        ] {
            if spin.is_some_and(|s| s > crate::MAX_PARK_SPIN) {
                return Err(err(format!(
                    "a {name} of {:?}: 0 to {:?} are possible",
                    spin.unwrap_or_default(),
                    crate::MAX_PARK_SPIN
                )));
            }
        }
        if !(1..=8192).contains(&self.fan_out) || !(2..=100_000).contains(&self.ring) {
            return Err(err(
                "fan-out takes 1 to 8192 receivers, a ring 2 to 100 000 actors",
            ));
        }
        Ok(())
    }
}

/// Round-trip times recorded by native actors, handed over once per run.
type Samples = Arc<Mutex<Vec<u64>>>;

/// The most operations one measurement takes (10^8): its counts fit the
/// workloads' 32-bit commands, and the recorded round-trip times (8 bytes each)
/// fit in memory.
pub const MAX_MESSAGES: u64 = 100_000_000;

/// Frames per `send-frames` call in `tell-batch`.
const FRAMES_PER_CALL: u32 = 64;

/// The message that starts `framer.wat` in `tell-batch`: `count` messages
/// in calls of [`FRAMES_PER_CALL`] frames, yielding while the sink is full.
fn framer_command(count: u32) -> [u8; 12] {
    let mut cmd = [0u8; 12];
    for (i, w) in [count, FRAMES_PER_CALL, 1].into_iter().enumerate() {
        cmd[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    cmd
}

/// Actors spawned per batch in `spawn` (they are stopped between batches).
const SPAWN_BATCH: u64 = 1000;

/// The message that starts `producer.wat` (and the native producer): `count` messages of
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

/// One row of `wasmshard bench`: a workload measured beside its floor.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
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
    /// The density measurement ([`Params::density`], `spawn` only).
    pub density: Option<Density>,
    /// What each shard did during the measured run (not the warm-up).
    pub activity: Vec<ShardActivity>,
}

/// What one shard did during a measured run: the difference of its counters
/// ([`crate::ShardStats`]) from the run's start to its end.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ShardActivity {
    /// The shard's index.
    pub shard: usize,
    /// Turns it gave its actors.
    pub turns: u64,
    /// Turns of its loop.
    pub loops: u64,
    /// Times it parked for lack of work.
    pub parks: u64,
    /// Messages it routed to an actor on itself.
    pub routed_local: u64,
    /// Messages it routed to another shard.
    pub routed_remote: u64,
    /// Envelopes it took out of its inbound rings.
    pub remote_in: u64,
}

impl ShardActivity {
    fn between(before: &crate::ShardStats, after: &crate::ShardStats) -> ShardActivity {
        let d = |f: fn(&crate::ShardStats) -> u64| f(after).saturating_sub(f(before));
        ShardActivity {
            shard: after.shard,
            turns: d(|s| s.turns),
            loops: d(|s| s.loops),
            parks: d(|s| s.parks),
            routed_local: d(|s| s.routed_local),
            routed_remote: d(|s| s.routed_remote),
            remote_in: d(|s| s.remote_in),
        }
    }
}

/// The longest round trip [`percentiles`] tells apart: an hour, in
/// nanoseconds (a longer one counts as an hour).
pub const LONGEST_NS: u64 = 3_600 * 1_000_000_000;

/// The median and the 99th percentile of round-trip times in nanoseconds, to
/// three significant digits (a recorded time is off by at most 0.1 %; one
/// over an hour counts as an hour), as [`Measurement::p50_ns`] and
/// [`Measurement::p99_ns`] give them.
///
/// # Errors
///
/// None in practice (the histogram's bounds are fixed and valid).
pub fn percentiles(samples: &[u64]) -> Result<(f64, f64), BenchError> {
    // Bounded from the start: a histogram made with `new` covers 0 to 2047
    // only, and `saturating_record` (which never grows it) counted every
    // longer time as its highest trackable value, 2.
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, LONGEST_NS, 3).map_err(err)?;
    for &t in samples {
        h.saturating_record(t);
    }
    let at = |q: f64| h.value_at_quantile(q) as f64;
    Ok((at(0.5), at(0.99)))
}

/// Measures `workload` with `actors` over `messages` operations (1 to
/// [`MAX_MESSAGES`]), after a warm-up of a tenth as many, and its floor likewise
/// (components only).
///
/// # Errors
///
/// `messages` beyond [`MAX_MESSAGES`]; and as [`System::new`], [`System::run`]
/// and [`Floor::new`].
pub fn measure(
    workload: Workload,
    actors: Actors,
    params: &Params,
    messages: u64,
) -> Result<Measurement, BenchError> {
    if messages > MAX_MESSAGES {
        return Err(err(format!(
            "{messages} operations: a measurement takes at most {MAX_MESSAGES}"
        )));
    }
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
    let before = sys.runtime().stats().shards;
    let elapsed = sys.run(messages)?;
    let activity = before
        .iter()
        .zip(&sys.runtime().stats().shards)
        .map(|(b, a)| ShardActivity::between(b, a))
        .collect();
    let samples = match sys.take_samples() {
        Some(s) => Some(s),
        None => sys.record_latency(messages)?,
    };
    sys.shutdown();
    let density = match params.density {
        Some(n) if workload == Workload::Spawn => Some(density(actors, params, n)?),
        _ => None,
    };
    let ns_per_op = elapsed.as_nanos() as f64 / messages as f64;
    let floor_ns = match actors {
        Actors::Component => {
            let floor = || -> Result<f64, BenchError> {
                let mut floor = Floor::new(workload, params)?;
                floor.run(warm)?;
                Ok(floor.run(messages)?.as_nanos() as f64 / messages as f64)
            };
            // Pinned runs measure the floor on shard 0's core, too.
            let ns = if params.pin_cores {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        crate::sys::pin_current_thread(0);
                        floor()
                    })
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
            } else {
                floor()
            };
            Some(ns?)
        }
        Actors::Native => None,
    };
    let (p50_ns, p99_ns) = match samples.filter(|s| !s.is_empty()) {
        Some(s) => {
            let (p50, p99) = percentiles(&s)?;
            (Some(p50), Some(p99))
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
        density,
        activity,
    })
}
