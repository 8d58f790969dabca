//! wasmshard runs WebAssembly components as actors on a sharded, thread-per-core
//! scheduler with no async runtime.
//!
//! ```
//! use wasmshard::{Grants, Runtime, SpawnOptions};
//! use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
//!
//! let runtime = Runtime::builder().shards(2).build()?;
//! // A component that forwards every message to the actor named in its config.
//! let echo = runtime.load_component_file(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/echo.wat"))?;
//! // A native actor that counts what it receives.
//! let seen = Arc::new(AtomicU64::new(0));
//! let counter = seen.clone();
//! runtime.spawn_native("sink", Some(1), move |_: &mut wasmshard::Context<'_>, _, payload: &[u8]| {
//!     counter.fetch_add(payload.len() as u64, Ordering::Relaxed);
//! })?;
//! // Components reach no one unless granted: this one may find and message `sink`.
//! let grants = Grants::none().lookup(["sink"]).send(["sink"]);
//! let echo = runtime.spawn(&echo, SpawnOptions::new("echo").config("sink").shard(0).grants(grants))?;
//! runtime.send(echo, b"hello")?;
//! assert!(runtime.wait_idle(std::time::Duration::from_secs(10)));
//! assert_eq!(seen.load(Ordering::Relaxed), 5);
//! let report = runtime.shutdown();
//! assert_eq!(report.dead_letter_count, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Core concepts
//!
//! | type | what it is | threading / cost |
//! |---|---|---|
//! | [`Runtime`] | the engine, the shard threads, the name registry | `Send + Sync`; one per process is typical |
//! | [`Component`] | a compiled component, cheap to clone | shared by all shards; compiled once |
//! | actor | a running instance: its store, mailbox and [`Address`] | owned by one shard, touched only by its thread |
//! | [`Address`] | `u64`: shard, slot, generation | a stale address never reaches a newer actor in the same slot |
//! | [`NativeActor`] | a Rust actor, scheduled like a component | runs on its shard's thread |
//! | envelope | `{to, from, kind, payload}` | payloads up to 64 bytes inline, no heap allocation |
//! | [`PendingReply`] | a request the host made | `Send + Sync`; dropping it cancels the request |
//!
//! Components implement the `wasmshard:actor/component` world ([`WIT`]). Sends are
//! admitted against the target's bounded mailbox at once (`mailbox-full` when it is
//! full, for same-shard and cross-shard senders alike); messages from one sender to
//! one receiver arrive in order (the host's tells and requests included); every
//! message admitted is handled or counted as a dead letter, through shutdown too,
//! and every request admitted ends exactly once for its requester (a reply, or
//! `timeout`, `cancelled`, `target-failed`, `target-stopped`; a request to a
//! target that stopped or failed ends with a failure, not as a dead letter,
//! unless shutdown has stopped its requester too).
//! A trap, an exhausted CPU budget, a memory- or table-limit hit, or a native
//! actor's panic stops that actor only. Loading a component runs none of its code.
//!
//! Delivering a message takes no lock, makes no syscall and allocates nothing in
//! steady state (payloads up to 64 bytes); spawn, stop, `lookup` and stats are
//! control paths and may lock, and the host's own sends allocate for their queue.
//!
//! The feature `bench` adds the benchmark workloads (`wasmshard::bench`, what
//! `wasmshard bench` runs); by default the crate is the runtime alone.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

mod actor;
mod actor_requests;
mod address;
mod audit;
#[cfg(feature = "bench")]
pub mod bench;
mod component;
mod config;
mod directory;
mod durable;
mod envelope;
mod error;
mod exports;
mod grants;
mod host;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod internals;
mod lifted;
mod log;
mod mailbox;
pub mod manifest;
mod manual;
mod message_log;
mod native;
mod outbox;
mod panics;
mod parking;
mod pending;
mod placement;
mod reply;
mod requests;
mod ring;
mod runtime;
mod shard;
mod shared;
mod slots;
mod stats;
mod storage;
mod supervision;
mod sys;
mod threaded;
mod topics;
mod trace;
mod typed;

pub use self::log::{LogLevel, LogRecord, LogSink, MAX_LOG_MESSAGE, printable};
pub use address::{Address, MAX_SHARDS, MAX_SLOTS_PER_SHARD};
pub use audit::Denial;
pub use component::{
    ACCEPTS_SECTION, Component, Inspection, MAX_COMPONENT_SIZE, SourceKind, WIT, encode_component,
};
pub use config::{
    DEFAULT_AUDIT_CAPACITY, DEFAULT_BATCH, DEFAULT_CPU_BUDGET, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_EPOCH_TICK, DEFAULT_KEEP_RESIDENT, DEFAULT_MAILBOX_CAPACITY, DEFAULT_MAX_ACTORS,
    DEFAULT_MAX_OPEN_REQUESTS, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_TIMERS, DEFAULT_MEMORY_LIMIT,
    DEFAULT_PARK_SPIN, DEFAULT_PARK_SPIN_MAX, DEFAULT_RING_CAPACITY, DEFAULT_STORAGE_QUOTA,
    MAX_AUDIT_CAPACITY, MAX_BATCH, MAX_CPU_BUDGET, MAX_DRAIN_TIMEOUT, MAX_EPOCH_TICK,
    MAX_KEEP_RESIDENT, MAX_MAILBOX_CAPACITY, MAX_MAX_ACTORS, MAX_MAX_OPEN_REQUESTS,
    MAX_MAX_PAYLOAD, MAX_MAX_TIMERS, MAX_MEMORY_LIMIT, MAX_NAME_LEN, MAX_PARK_SPIN,
    MAX_RING_CAPACITY, MAX_STORAGE_QUOTA, MAX_TABLE_ELEMENTS, MIN_EPOCH_TICK, NameFault,
    RuntimeBuilder,
};
pub use error::{
    BuildError, Capacity, Cause, ChildSpawnError, Failure, FailureKind, LoadError, QuotaError,
    RequestError, SendError, SpawnError, StopError, StorageError, TimerError, UpgradeError,
};
pub use grants::{
    Grants, MAX_PATTERN_LEN, MAX_PATTERNS, MAX_RATE, Operation, PolicyError, Rate, pattern_matches,
};
pub use host::{MAX_FRAMES, MAX_FRAMES_BYTES};
pub use message_log::MESSAGE_LOG_TARGET;
pub use native::{Context, NativeActor};
pub use pending::PendingReply;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub use runtime::RuntimeDefect;
pub use runtime::{Handle, Runtime, SpawnOptions};
pub use shard::BATCH_BYTES;
pub use stats::{
    ActorStats, DEAD_LETTER_HEADER, DeadLetter, DeadLetterReason, RETAINED_ENDED_ACTORS, RateUsage,
    RequestStats, ShardStats, ShutdownReport, Stats,
};
pub use storage::{MAX_STORAGE_KEY, STORAGE_ENTRY_OVERHEAD};
pub use supervision::{
    Group, MAX_RESTART_DURATION, MAX_RESTARTS, Restart, RestartPolicy, Strategy,
};
pub use topics::{
    MAX_COUNTED_TOPICS, MAX_SUBSCRIPTIONS, MAX_TOPIC_LEN, OTHER_TOPICS, PublishOutcome, TopicStats,
};
pub use trace::{TraceContext, TraceparentError};
pub use typed::{ReplyError, TypedReply, TypedSendError};
/// The payload format typed sends use, shared with the guest SDK: a multicodec
/// prefix, then the value in that codec (the `wasmshard-codec` crate).
pub use wasmshard_codec as codec;
