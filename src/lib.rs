//! wasmshard runs WebAssembly components as actors on a sharded, thread-per-core
//! scheduler with no async runtime.
//!
//! ```
//! use wasmshard::{Runtime, SpawnOptions};
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
//! let echo = runtime.spawn(&echo, SpawnOptions::new("echo").config("sink").shard(0))?;
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
//!
//! Components implement the `wasmshard:actor/component` world ([`WIT`]). Sends are
//! admitted against the target's bounded mailbox at once (`mailbox-full` when it is
//! full, for same-shard and cross-shard senders alike); messages from one sender to
//! one receiver arrive in order; anything undeliverable is counted as a dead letter.
//! A trap, an exhausted CPU budget or a memory-limit hit stops that actor only.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

mod actor;
mod address;
pub mod bench;
mod component;
mod config;
mod envelope;
mod error;
mod host;
pub mod manifest;
mod native;
mod outbox;
mod reply;
mod requests;
mod runtime;
mod shard;
mod slots;
mod stats;
mod sys;

pub use address::{Address, MAX_SHARDS, MAX_SLOTS_PER_SHARD};
pub use component::{Component, Inspection, SourceKind, WIT, encode_component};
pub use config::{
    DEFAULT_BATCH, DEFAULT_CPU_BUDGET, DEFAULT_DRAIN_TIMEOUT, DEFAULT_EPOCH_TICK,
    DEFAULT_MAILBOX_CAPACITY, DEFAULT_MAX_ACTORS, DEFAULT_MAX_OPEN_REQUESTS, DEFAULT_MAX_PAYLOAD,
    DEFAULT_MEMORY_LIMIT, DEFAULT_PARK_SPIN, DEFAULT_RING_CAPACITY, RuntimeBuilder,
};
pub use error::{BuildError, LoadError, RequestError, SendError, SpawnError, StopError};
pub use host::{LogLevel, LogRecord};
pub use native::{Context, NativeActor};
pub use reply::PendingReply;
pub use runtime::{LogSink, Runtime, SpawnOptions};
pub use stats::{ActorStats, DeadLetter, DeadLetterReason, ShardStats, ShutdownReport, Stats};

/// Access to internals for the project's own benchmarks. Not a stable API.
#[doc(hidden)]
pub mod internals {
    use std::collections::VecDeque;

    use crossbeam_queue::ArrayQueue;

    use crate::address::Address;
    use crate::envelope::Envelope;
    use crate::requests::{Requests, Waiter};
    use crate::slots::SlotTable;

    const TO: Address = Address::from_bits((1 << 32) | 1);

    /// A cross-shard ring: the bounded single-producer single-consumer queue of
    /// envelopes between two shards.
    pub struct Ring(ArrayQueue<Envelope>);

    impl Ring {
        /// A ring holding up to `capacity` envelopes.
        pub fn new(capacity: usize) -> Ring {
            Ring(ArrayQueue::new(capacity))
        }

        /// Enqueues a message (the envelope built as a send builds it); whether it fit.
        pub fn push(&self, payload: &[u8]) -> bool {
            self.0.push(Envelope::tell(TO, TO, payload)).is_ok()
        }

        /// Dequeues a message; its payload length.
        pub fn pop(&self) -> Option<usize> {
            self.0.pop().map(|e| e.payload.len())
        }
    }

    /// An actor's mailbox.
    #[derive(Default)]
    pub struct Mailbox(VecDeque<Envelope>);

    impl Mailbox {
        /// Enqueues a message.
        pub fn push(&mut self, payload: &[u8]) {
            self.0.push_back(Envelope::tell(TO, TO, payload));
        }

        /// Dequeues a message; its payload length.
        pub fn pop(&mut self) -> Option<usize> {
            self.0.pop_front().map(|e| e.payload.len())
        }
    }

    /// A shard's actor slots: generation checks and mailbox admission.
    pub struct Slots(SlotTable);

    impl Slots {
        /// A table of `slots` slots, none in use.
        pub fn new(slots: u32) -> Slots {
            Slots(SlotTable::new(slots))
        }

        /// Takes `slot` into use; returns its generation.
        pub fn activate(&self, slot: u32) -> u32 {
            self.0.activate(slot)
        }

        /// Ends the actor in `slot`.
        pub fn deactivate(&self, slot: u32) {
            self.0.deactivate(slot)
        }

        /// Admits one message for the actor `slot`/`generation`: whether it fit.
        pub fn admit(&self, slot: u32, generation: u32, capacity: u32) -> bool {
            self.0.admit(slot, generation, capacity).is_ok()
        }

        /// Frees `n` admitted messages' room (a turn that handled them).
        pub fn release(&self, slot: u32, n: u32) {
            self.0.release(slot, n)
        }
    }

    /// The per-shard table of open requests and their timeouts.
    pub struct RequestTable(Requests);

    impl Default for RequestTable {
        fn default() -> Self {
            RequestTable(Requests::new(0))
        }
    }

    impl RequestTable {
        /// Opens a request timing out `timeout` ns after the next `arm`; returns
        /// its id.
        pub fn open(&mut self, timeout: u64) -> u64 {
            let me = Address::new(0, 0, 1);
            self.0.open(Waiter::Actor(me), me, timeout)
        }

        /// Gives the requests opened since the last call their deadlines, from
        /// the clock reading `now` (once per pass of a shard's loop).
        pub fn arm(&mut self, now: u64) {
            self.0.arm(now)
        }

        /// Ends request `id`; whether it was open.
        pub fn close(&mut self, id: u64) -> bool {
            self.0.close(id).is_some()
        }

        /// Ends one request due at `now`.
        pub fn expire(&mut self, now: u64) -> Option<u64> {
            self.0.expire(now).map(|(id, _)| id)
        }

        /// Requests open.
        pub fn open_count(&self) -> usize {
            self.0.open_count()
        }
    }
}
