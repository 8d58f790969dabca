//! The directory: where actors are and whether they can take a message.
//!
//! One `Directory` per runtime, shared (in an `Arc`) by the host, every shard and
//! every actor's outbox. It holds what a sender needs to admit a message without
//! asking the target's shard: the admission limits, each shard's slot table (the
//! generation and mailbox fill of every actor, one atomic word each), the name
//! registry, the runtime's clock, its log sink, and whether it is closing.
//!
//! | field | written by | read by | ordering |
//! |---|---|---|---|
//! | `slots[s]` words | senders (admit: CAS), shard `s` (release, activate, deactivate) | any sender | AcqRel RMW; see `slots.rs` |
//! | `names` | spawn (reserve, on the host thread; register, on the shard), stop and failure (unregister, on the shard) | `lookup` from any thread | `RwLock` (a control path: never taken to deliver a message) |
//! | `closing` | the host, once, at shutdown | host sends, spawns | Release store / Acquire load |
//! | `stopping` | the host, once, after the shutdown drain | actors' refused sends and requests | Release store / Acquire load, on the refusal path only |
//! | limits, clock start, log sink | nobody after construction | anyone | immutable |

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ahash::AHashMap;

use crate::address::Address;
use crate::config::Config;
use crate::error::{SendError, SpawnError};
use crate::log::{self, LogLevel, LogSink};
use crate::slots::SlotTable;
use crate::sys::Clock;

/// Where actors are and whether they can take a message. See the module docs.
pub(crate) struct Directory {
    /// This runtime's number, unique in the process.
    pub(crate) id: u64,
    /// Messages an actor's mailbox holds.
    pub(crate) mailbox_capacity: u32,
    /// The largest payload a send may carry.
    pub(crate) max_payload: usize,
    /// Requests one actor may have open.
    pub(crate) max_open_requests: u32,
    /// `slots[s]`: the slot table of shard `s`.
    slots: Box<[SlotTable]>,
    names: RwLock<AHashMap<Arc<str>, Address>>,
    clock: Clock,
    log_sink: Option<LogSink>,
    closing: AtomicBool,
    /// Set after the shutdown drain: nothing new is admitted any more.
    stopping: AtomicBool,
}

impl Directory {
    pub(crate) fn new(config: &Config, log_sink: Option<LogSink>) -> Directory {
        static RUNTIMES: AtomicU64 = AtomicU64::new(1);
        Directory {
            id: RUNTIMES.fetch_add(1, Ordering::Relaxed),
            mailbox_capacity: config.mailbox_capacity,
            max_payload: config.max_payload,
            max_open_requests: config.max_open_requests,
            slots: (0..config.shards)
                .map(|_| SlotTable::new(config.slots_per_shard()))
                .collect(),
            names: RwLock::new(AHashMap::new()),
            clock: Clock::new(),
            log_sink,
            closing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// The slot table of `shard`.
    #[inline]
    pub(crate) fn slots(&self, shard: usize) -> &SlotTable {
        &self.slots[shard]
    }

    /// Reserves room for one message in `to`'s mailbox.
    #[inline]
    pub(crate) fn admit(&self, to: Address, payload: &[u8]) -> Result<(), SendError> {
        match self.slots.get(to.shard()) {
            Some(slots) => slots.admit(to.slot(), to.generation(), self.mailbox_capacity, payload),
            None => Err(SendError::UnknownTarget),
        }
    }

    /// The address registered under `name`.
    pub(crate) fn lookup(&self, name: &str) -> Option<Address> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names.get(name).copied().filter(|a| *a != Address::HOST)
    }

    /// Reserves `name` for an actor being spawned.
    pub(crate) fn reserve(&self, name: &str) -> Result<Arc<str>, SpawnError> {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if names.contains_key(name) {
            return Err(SpawnError::NameTaken(name.to_string()));
        }
        let name: Arc<str> = name.into();
        names.insert(name.clone(), Address::HOST);
        Ok(name)
    }

    /// Gives a reserved name its actor's address.
    pub(crate) fn register(&self, name: &Arc<str>, address: Address) {
        self.names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), address);
    }

    /// Drops `name` if it still names `address` (or is still only reserved).
    pub(crate) fn unregister(&self, name: &str, address: Address) {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if names
            .get(name)
            .is_some_and(|a| *a == address || *a == Address::HOST)
        {
            names.remove(name);
        }
    }

    /// Monotonic nanoseconds since the runtime started.
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Writes one line an actor logged.
    pub(crate) fn log(&self, actor: Address, name: &Arc<str>, level: LogLevel, message: &str) {
        log::emit(self.log_sink.as_ref(), actor, name, level, message);
    }

    /// Whether the runtime is shutting down (it refuses new host sends and spawns).
    #[inline]
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Starts shutting down.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Shutdown has drained what it could: from now on a refused send or request
    /// of an actor says `shutting-down`.
    pub(crate) fn stop_admitting(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Reserves room for one message from an actor in `to`'s mailbox: as
    /// [`Directory::admit`], but once shutdown has drained what it could (its
    /// actors are being stopped), a refusal says `shutting-down`, whatever refused
    /// it. Only the refusal reads the flag: a send costs nothing more.
    #[inline]
    pub(crate) fn admit_from_actor(&self, to: Address, payload: &[u8]) -> Result<(), SendError> {
        self.admit(to, payload).map_err(|e| {
            if self.stopping.load(Ordering::Acquire) {
                SendError::ShuttingDown
            } else {
                e
            }
        })
    }
}
