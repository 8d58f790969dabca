//! The runtime: engine, shards, name registry, and the host-side API.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use crossbeam_queue::{ArrayQueue, SegQueue};
use wasmtime::component::Linker;
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::address::Address;
use crate::component::{self, Component, Inspection};
use crate::config::{Config, RuntimeBuilder};
use crate::envelope::{Envelope, Payload};
use crate::error::{BuildError, LoadError, SendError, SpawnError, StopError};
use crate::host::{self, ActorCtx, Limiter, LogLevel, LogRecord};
use crate::native::NativeActor;
use crate::outbox::Outbox;
use crate::reply::{HostWaiter, PendingReply};
use crate::shard::{Command, Shard, ShardExit, SpawnBody};
use crate::stats::{ActorInfo, DeadLetter, ShardCounters, ShardStats, ShutdownReport, Stats};

/// A function that receives every log line components write.
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// What other threads may touch of one shard.
pub(crate) struct ShardHandle {
    pub(crate) slots: crate::slots::SlotTable,
    pub(crate) waker: mio::Waker,
    pub(crate) parked: AtomicBool,
    pub(crate) host_inbox: SegQueue<Envelope>,
    pub(crate) host_out: AtomicU64,
    pub(crate) control: SegQueue<Command>,
    pub(crate) control_out: AtomicU64,
    pub(crate) counters: ShardCounters,
}

impl ShardHandle {
    /// Wakes the shard if it is parked. Callers issue a `SeqCst` fence (or a `SeqCst`
    /// read-modify-write) after publishing work and before calling this.
    #[inline]
    pub(crate) fn wake(&self) {
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }
}

/// Runtime-wide state shared by the host and every shard.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<ActorCtx>,
    pub(crate) shards: Box<[ShardHandle]>,
    /// `rings[from * n + to]`: single producer (`from`), single consumer (`to`).
    rings: Box<[ArrayQueue<Envelope>]>,
    names: RwLock<AHashMap<Arc<str>, Address>>,
    pub(crate) actors: Mutex<Vec<Arc<ActorInfo>>>,
    closing: AtomicBool,
    start: Instant,
    log_sink: Option<LogSink>,
    /// Shards not parked; the epoch ticker sleeps while this is zero.
    active: AtomicUsize,
    ticker: OnceLock<Thread>,
    ticker_stop: AtomicBool,
    idle_waiters: AtomicUsize,
    idle_waiter: Mutex<Vec<Thread>>,
}

impl Shared {
    #[inline]
    pub(crate) fn ring(&self, from: usize, to: usize) -> &ArrayQueue<Envelope> {
        &self.rings[from * self.shards.len() + to]
    }

    /// Reserves room for one message in `to`'s mailbox.
    #[inline]
    pub(crate) fn admit(&self, to: Address) -> Result<(), SendError> {
        match self.shards.get(to.shard()) {
            Some(shard) => {
                shard
                    .slots
                    .admit(to.slot(), to.generation(), self.config.mailbox_capacity)
            }
            None => Err(SendError::UnknownTarget),
        }
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Address> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names.get(name).copied().filter(|a| *a != Address::HOST)
    }

    /// Reserves `name` for an actor being spawned.
    fn reserve(&self, name: &str) -> Result<Arc<str>, SpawnError> {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if names.contains_key(name) {
            return Err(SpawnError::NameTaken(name.to_string()));
        }
        let name: Arc<str> = name.into();
        names.insert(name.clone(), Address::HOST);
        Ok(name)
    }

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

    pub(crate) fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub(crate) fn log(&self, actor: Address, name: &Arc<str>, level: LogLevel, message: &str) {
        match &self.log_sink {
            Some(sink) => sink(&LogRecord {
                actor,
                name: name.clone(),
                level,
                message: message.to_string(),
            }),
            None => {
                log::log!(target: "wasmshard::guest", level.to_log(), "[{name}] {}: {message}", level.wit_name())
            }
        }
    }

    pub(crate) fn actor_ctx(self: &Arc<Self>, me: Address, name: Arc<str>) -> ActorCtx {
        ActorCtx {
            out: Outbox::new(me, self.clone()),
            limiter: Limiter {
                memory_limit: self.config.memory_limit,
                hit: None,
            },
            name,
        }
    }

    /// A shard is about to park.
    pub(crate) fn shard_idle(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        if self.idle_waiters.load(Ordering::SeqCst) > 0 {
            for t in self
                .idle_waiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                t.unpark();
            }
        }
    }

    /// A shard woke up.
    pub(crate) fn shard_busy(&self) {
        if self.active.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(t) = self.ticker.get()
        {
            t.unpark();
        }
    }

    /// A summary of every shard's idle-relevant counters: (all parked, sum of ring
    /// pushes, sum of ring pops, host and control queues all drained, a digest of
    /// every value). Allocates nothing, so waiting for idle does not disturb the
    /// allocation count of the shards it watches.
    fn idle_summary(&self) -> (bool, u64, u64, bool, u64) {
        let (mut parked, mut out, mut inn, mut drained, mut digest) =
            (true, 0u64, 0u64, true, 0u64);
        for s in self.shards.iter() {
            let c = &s.counters;
            parked &= s.parked.load(Ordering::SeqCst);
            let (o, i) = (c.remote_out.get(), c.remote_in.get());
            let (hi, ho) = (c.host_in.get(), s.host_out.load(Ordering::SeqCst));
            let (ci, co) = (c.control_in.get(), s.control_out.load(Ordering::SeqCst));
            out += o;
            inn += i;
            drained &= hi == ho && ci == co && c.open_requests.get() == 0;
            for v in [o, i, hi, ho, ci, co, c.loops.get()] {
                digest = digest.rotate_left(7) ^ v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
        }
        (parked, out, inn, drained, digest)
    }

    /// Whether nothing is in flight: every shard parked, every envelope that was
    /// pushed anywhere taken out again, and nothing changed while we looked.
    fn is_idle(&self) -> bool {
        let a = self.idle_summary();
        if !a.0 {
            return false;
        }
        let b = self.idle_summary();
        a == b && a.1 == a.2 && a.3
    }
}

/// The wasmshard runtime: the wasmtime engine, the shard threads, the name registry.
///
/// `Send + Sync`; share it by reference or in an `Arc`. Dropping it shuts it down
/// (see [`Runtime::shutdown`] for the report).
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<ShardExit>>,
    ticker: Option<JoinHandle<()>>,
    next_shard: AtomicUsize,
    /// A manual runtime's shards, run by whoever calls [`Runtime::step`] and
    /// friends; `None` for a threaded runtime and once a manual one has shut down.
    local: Option<Mutex<Vec<Shard>>>,
    /// How long the host spins for a shard's answer before it blocks.
    host_spin: Duration,
}

/// How a runtime runs its shards.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One thread per shard, plus the epoch ticker.
    Threads,
    /// No threads: the shards run when the caller steps them.
    Manual,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("shards", &self.shards())
            .finish_non_exhaustive()
    }
}

pub(crate) fn engine(config: &Config) -> Result<Engine, BuildError> {
    let mut c = wasmtime::Config::new();
    c.epoch_interruption(config.cpu_budget.is_some());
    let page = 64 * 1024;
    let memory = config.memory_limit.div_ceil(page) * page;
    let actors = config.max_actors;
    let mut pool = PoolingAllocationConfig::new();
    // A component-ized core module instantiates its main module plus wit-component's
    // shim and fixup modules.
    pool.total_component_instances(actors)
        .total_core_instances(actors.saturating_mul(4))
        .total_memories(actors)
        .total_tables(actors.saturating_mul(2))
        .max_memory_size(memory)
        .max_core_instances_per_component(8)
        .max_tables_per_component(4)
        .max_memories_per_component(2)
        // Reset the first 64 KiB of a freed memory (and table) with memset, not
        // madvise: a slot's next instance then takes no page faults there, which
        // halves instantiation (10.5 to 4.6 us for the fixtures). The cost is up
        // to 64 KiB resident per pool slot ever used.
        .linear_memory_keep_resident(64 * 1024)
        .table_keep_resident(64 * 1024);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Reserve exactly the limit per memory (plus a guard), not the 4 GiB default, so
    // the pool's address space stays proportional to `max_actors`.
    c.memory_reservation(memory as u64);
    c.memory_guard_size(page as u64);
    c.memory_reservation_for_growth(0);
    Engine::new(&c).map_err(|e| BuildError::new(format!("cannot create the engine: {e:#}")))
}

impl Runtime {
    /// A [`RuntimeBuilder`] with every default.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::new()
    }

    pub(crate) fn start(
        config: Config,
        log_sink: Option<LogSink>,
        mode: Mode,
    ) -> Result<Runtime, BuildError> {
        let engine = engine(&config)?;
        let linker = host::linker(&engine)
            .map_err(|e| BuildError::new(format!("cannot link host functions: {e:#}")))?;
        let n = config.shards;
        let mut parkers = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for _ in 0..n {
            let (parker, waker) = crate::sys::parker()
                .map_err(|e| BuildError::new(format!("cannot create a poller: {e}")))?;
            parkers.push(parker);
            handles.push(ShardHandle {
                slots: crate::slots::SlotTable::new(config.slots_per_shard()),
                waker,
                parked: AtomicBool::new(false),
                host_inbox: SegQueue::new(),
                host_out: AtomicU64::new(0),
                control: SegQueue::new(),
                control_out: AtomicU64::new(0),
                counters: ShardCounters::default(),
            });
        }
        let rings = (0..n * n)
            .map(|_| ArrayQueue::new(config.ring_capacity))
            .collect();
        let budgets = config.cpu_budget.is_some() && mode == Mode::Threads;
        let shared = Arc::new(Shared {
            config,
            engine,
            linker,
            shards: handles.into_boxed_slice(),
            rings,
            names: RwLock::new(AHashMap::new()),
            actors: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            start: Instant::now(),
            log_sink,
            active: AtomicUsize::new(n),
            ticker: OnceLock::new(),
            ticker_stop: AtomicBool::new(false),
            idle_waiters: AtomicUsize::new(0),
            idle_waiter: Mutex::new(Vec::new()),
        });
        let ticker = if budgets {
            let s = shared.clone();
            let t = std::thread::Builder::new()
                .name("wasmshard-epoch".into())
                .spawn(move || ticker(s))
                .map_err(|e| BuildError::new(format!("cannot start the epoch ticker: {e}")))?;
            let _ = shared.ticker.set(t.thread().clone());
            Some(t)
        } else {
            None
        };
        if mode == Mode::Manual {
            let shards = parkers
                .into_iter()
                .enumerate()
                .map(|(id, parker)| Shard::new(id, shared.clone(), parker))
                .collect();
            return Ok(Runtime {
                shared,
                threads: Vec::new(),
                ticker,
                next_shard: AtomicUsize::new(0),
                local: Some(Mutex::new(shards)),
                host_spin: Duration::ZERO,
            });
        }
        let mut threads = Vec::with_capacity(n);
        for (id, parker) in parkers.into_iter().enumerate() {
            let shard = Shard::new(id, shared.clone(), parker);
            let t = std::thread::Builder::new()
                .name(format!("wasmshard-{id}"))
                .spawn(move || shard.run())
                .map_err(|e| BuildError::new(format!("cannot start shard thread {id}: {e}")))?;
            threads.push(t);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let host_spin = if n < cores {
            shared.config.park_spin
        } else {
            Duration::ZERO
        };
        Ok(Runtime {
            shared,
            threads,
            ticker,
            next_shard: AtomicUsize::new(0),
            local: None,
            host_spin,
        })
    }

    /// Number of shards (threads).
    pub fn shards(&self) -> usize {
        self.shared.shards.len()
    }

    /// Loads a component from a file: a `.wasm` binary or `.wat` text, a component or
    /// a core module (component-ized on load).
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the file and what is wrong with it: unreadable, not
    /// WebAssembly, or not fitting the `wasmshard:actor/component` world (naming the
    /// missing export or the unknown import).
    pub fn load_component_file(&self, path: impl AsRef<Path>) -> Result<Component, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| LoadError::new(format!("{}: cannot read: {e}", path.display())))?;
        let name = path.display().to_string();
        self.load_component(&name, &bytes)
            .map_err(|e| LoadError::new(format!("{name}: {}", e.message())))
    }

    /// Loads a component from bytes (binary or text); `name` is used in errors and
    /// stats.
    ///
    /// # Errors
    ///
    /// As [`Runtime::load_component_file`].
    pub fn load_component(&self, name: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        let probe = Address::new(0, 0, 1);
        component::load(
            &self.shared.engine,
            &self.shared.linker,
            name,
            bytes,
            || self.shared.actor_ctx(probe, Arc::from("(load check)")),
        )
    }

    /// Describes a file (binary or text, component or core module): what it is, its
    /// imports and exports, and whether it fits the `wasmshard:actor/component` world.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] if the bytes are not WebAssembly at all.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection, LoadError> {
        let probe = Address::new(0, 0, 1);
        component::inspect(&self.shared.engine, &self.shared.linker, bytes, || {
            self.shared.actor_ctx(probe, Arc::from("(load check)"))
        })
    }

    fn pick_shard(&self, shard: Option<usize>) -> Result<usize, SpawnError> {
        let shards = self.shards();
        match shard {
            Some(s) if s < shards => Ok(s),
            Some(s) => Err(SpawnError::NoSuchShard { shard: s, shards }),
            None => Ok(self.next_shard.fetch_add(1, Ordering::Relaxed) % shards),
        }
    }

    fn spawn_body(
        &self,
        name: &str,
        shard: Option<usize>,
        body: SpawnBody,
    ) -> Result<Address, SpawnError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(SpawnError::ShuttingDown);
        }
        let shard = self.pick_shard(shard)?;
        let name = self.shared.reserve(name)?;
        let (reply, answer) = sync_channel(1);
        self.command(
            shard,
            Command::Spawn {
                name: name.clone(),
                body,
                reply,
            },
        );
        let result = self
            .answer(&answer)
            .unwrap_or(Err(SpawnError::ShuttingDown));
        if result.is_err() {
            // Frees the reservation if the shard refused before registering.
            self.shared.unregister(&name, Address::HOST);
        }
        result
    }

    /// Waits for a shard's answer to a spawn or stop. Where the host has a core
    /// of its own (fewer shards than cores), it spins up to `park_spin` first, as
    /// idle shards do: the sleep and wake-up of a blocking receive cost several
    /// times the spawn itself. Without a spare core, spinning would take the
    /// core the answering shard needs, so it blocks at once.
    fn answer<T>(&self, answer: &Receiver<T>) -> Option<T> {
        if !self.host_spin.is_zero() {
            let until = Instant::now() + self.host_spin;
            loop {
                match answer.try_recv() {
                    Ok(v) => return Some(v),
                    Err(TryRecvError::Disconnected) => return None,
                    Err(TryRecvError::Empty) if Instant::now() >= until => break,
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                }
            }
        }
        answer.recv().ok()
    }

    fn command(&self, shard: usize, cmd: Command) {
        let h = &self.shared.shards[shard];
        h.control_out.fetch_add(1, Ordering::SeqCst);
        h.control.push(cmd);
        std::sync::atomic::fence(Ordering::SeqCst);
        h.wake();
        if let Some(local) = &self.local {
            // No thread takes it: take it now, so spawn and stop answer at once.
            // `Exit` is never sent to a manual runtime's shards.
            lock(local)[shard].take_commands();
        }
    }

    /// Spawns an actor from `component` and runs its `init` with the options' config.
    /// Returns once `init` has returned.
    ///
    /// # Errors
    ///
    /// [`SpawnError::NameTaken`], [`SpawnError::NoSuchShard`],
    /// [`SpawnError::NoCapacity`], [`SpawnError::Instantiate`], or
    /// [`SpawnError::Init`] with the message `init` returned (or its trap).
    pub fn spawn(
        &self,
        component: &Component,
        options: SpawnOptions,
    ) -> Result<Address, SpawnError> {
        let body = SpawnBody::Wasm {
            component: component.clone(),
            config: options.config,
        };
        self.spawn_body(&options.name, options.shard, body)
    }

    /// Spawns a native actor: Rust code scheduled and addressed like a component.
    ///
    /// # Errors
    ///
    /// As [`Runtime::spawn`], less the ones only components have.
    pub fn spawn_native(
        &self,
        name: &str,
        shard: Option<usize>,
        actor: impl NativeActor,
    ) -> Result<Address, SpawnError> {
        self.spawn_body(name, shard, SpawnBody::Native(Box::new(actor)))
    }

    /// Stops the actor at `address`. Messages still in its mailbox become dead letters;
    /// its name is free again; its address never reaches a later actor.
    ///
    /// # Errors
    ///
    /// [`StopError::UnknownTarget`] if no live actor has the address.
    pub fn stop(&self, address: Address) -> Result<(), StopError> {
        if address.shard() >= self.shards() {
            return Err(StopError::UnknownTarget(address));
        }
        let (reply, answer) = sync_channel(1);
        self.command(address.shard(), Command::Stop { address, reply });
        self.answer(&answer).unwrap_or(Err(StopError::ShuttingDown))
    }

    /// The address registered under `name`.
    pub fn lookup(&self, name: &str) -> Option<Address> {
        self.shared.lookup(name)
    }

    /// Sends `payload` from the host ([`Address::HOST`]) to `to`.
    ///
    /// # Errors
    ///
    /// [`SendError::MailboxFull`] at once if the target's mailbox is full,
    /// [`SendError::UnknownTarget`], [`SendError::TooLarge`],
    /// [`SendError::ShuttingDown`].
    pub fn send(&self, to: Address, payload: &[u8]) -> Result<(), SendError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(SendError::ShuttingDown);
        }
        if payload.len() > self.shared.config.max_payload {
            return Err(SendError::TooLarge);
        }
        self.shared.admit(to)?;
        let h = &self.shared.shards[to.shard()];
        h.host_out.fetch_add(1, Ordering::SeqCst);
        h.host_inbox
            .push(Envelope::tell(to, Address::HOST, payload));
        std::sync::atomic::fence(Ordering::SeqCst);
        h.wake();
        Ok(())
    }

    /// Makes a request from the host to `to`, ending after `timeout` at the latest.
    /// The returned handle can be waited on or polled; the request ends exactly once
    /// (reply, `timeout`, `target-failed`, `target-stopped`).
    ///
    /// # Errors
    ///
    /// As [`Runtime::send`]: the request is admitted at the target's mailbox at once.
    pub fn request(
        &self,
        to: Address,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<PendingReply, SendError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(SendError::ShuttingDown);
        }
        if payload.len() > self.shared.config.max_payload {
            return Err(SendError::TooLarge);
        }
        self.shared.admit(to)?;
        let waiter = HostWaiter::new();
        let cmd = Command::Request {
            to,
            payload: Payload::from_slice(payload),
            timeout_ns: timeout.as_nanos().min(u64::MAX as u128) as u64,
            waiter: waiter.clone(),
        };
        self.command(to.shard(), cmd);
        Ok(PendingReply { waiter })
    }

    /// A snapshot of every actor's and shard's counters.
    pub fn stats(&self) -> Stats {
        let actors: Vec<_> = self
            .shared
            .actors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|a| a.snapshot())
            .collect();
        let shards: Vec<_> = self
            .shared
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let c = &s.counters;
                ShardStats {
                    shard: i,
                    routed_local: c.routed_local.get(),
                    routed_remote: c.routed_remote.get(),
                    parks: c.parks.get(),
                    loops: c.loops.get(),
                    dead_letters: c.dead_letters.get(),
                    actors: c.live_actors.get(),
                    requests_made: c.requests_made.get(),
                    requests_answered: c.requests_answered.get(),
                    requests_timed_out: c.requests_timed_out.get(),
                    requests_cancelled: c.requests_cancelled.get(),
                    requests_failed: c.requests_failed.get(),
                    requests_open: c.open_requests.get(),
                    late_replies: c.late_replies.get(),
                }
            })
            .collect();
        let dead_letters = shards.iter().map(|s| s.dead_letters).sum();
        Stats {
            actors,
            shards,
            dead_letters,
        }
    }

    /// Blocks until nothing is in flight (every shard parked, every mailbox and ring
    /// empty) or `timeout` passes. Returns whether the runtime became idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if let Some(local) = &self.local {
            return self.run_until_idle(local, deadline);
        }
        let shared = &self.shared;
        shared.idle_waiters.fetch_add(1, Ordering::SeqCst);
        shared
            .idle_waiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(std::thread::current());
        let idle = loop {
            if shared.is_idle() {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            std::thread::park_timeout((deadline - now).min(Duration::from_millis(5)));
        };
        let me = std::thread::current().id();
        let mut waiters = shared.idle_waiter.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = waiters.iter().position(|t| t.id() == me) {
            waiters.swap_remove(i);
        }
        shared.idle_waiters.fetch_sub(1, Ordering::SeqCst);
        idle
    }

    /// Shuts down gracefully: refuses new host sends and spawns, waits up to the
    /// drain timeout for in-flight messages to be handled, stops every actor, joins
    /// every thread, and reports what could not be delivered.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.shutdown_inner()
    }

    /// The shutdown report: what was left undelivered, and the final stats.
    fn report(&self, drained: bool, dead_letters: Vec<DeadLetter>) -> ShutdownReport {
        let stats = self.stats();
        ShutdownReport {
            drained,
            dead_letter_count: stats.dead_letters,
            dead_letters,
            stats,
        }
    }

    fn shutdown_inner(&mut self) -> ShutdownReport {
        if self.local.is_some() {
            return self.shutdown_manual();
        }
        let shared = self.shared.clone();
        shared.closing.store(true, Ordering::Release);
        let drained = self.threads.is_empty() || self.wait_idle(shared.config.drain_timeout);
        let mut answers = Vec::new();
        for shard in 0..self.threads.len() {
            let (reply, answer) = sync_channel(1);
            self.command(shard, Command::StopAll { reply });
            answers.push(answer);
        }
        for a in answers {
            let _ = a.recv();
        }
        for shard in 0..self.threads.len() {
            self.command(shard, Command::Exit);
        }
        let mut dead_letters = Vec::new();
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(exit) => dead_letters.extend(exit.dead_letters),
                Err(_) => log::error!("wasmshard: a shard thread panicked"),
            }
        }
        shared.ticker_stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        self.report(drained, dead_letters)
    }
}

/// Driving a manual runtime (built with [`RuntimeBuilder::build_manual`]).
impl Runtime {
    /// Runs one pass of the shard loop on every shard that has something to do,
    /// in shard order, on the calling thread: host sends and cross-shard rings
    /// into mailboxes, due timeouts, up to 256 actor turns, overflow flushed.
    /// Never blocks. Returns whether any shard had something to do.
    ///
    /// # Panics
    ///
    /// If the runtime runs its own threads (built with [`RuntimeBuilder::build`]).
    pub fn step(&self) -> bool {
        pass_all(&mut lock(self.manual("step")))
    }

    /// Steps every shard until none has anything to do now; returns the passes
    /// that did something. Open requests whose deadlines are still ahead stay
    /// open (see [`Runtime::wait_idle`] to wait for them too). The order in which
    /// actors run depends only on what was sent, so the same inputs give the same
    /// run.
    ///
    /// # Panics
    ///
    /// As [`Runtime::step`].
    pub fn run_until_stalled(&self) -> u64 {
        self.manual("run_until_stalled");
        let mut passes = 0;
        while self.step() {
            passes += 1;
        }
        passes
    }

    /// Whether this runtime was built with [`RuntimeBuilder::build_manual`].
    pub fn is_manual(&self) -> bool {
        self.local.is_some()
    }

    fn manual(&self, what: &str) -> &Mutex<Vec<Shard>> {
        match &self.local {
            Some(local) => local,
            None => panic!(
                "Runtime::{what} drives a manual runtime (RuntimeBuilder::build_manual); \
                 this one runs its own shard threads"
            ),
        }
    }

    /// Steps until nothing is runnable and no request is open, or `deadline`.
    fn run_until_idle(&self, local: &Mutex<Vec<Shard>>, deadline: Instant) -> bool {
        loop {
            let mut shards = lock(local);
            while pass_all(&mut shards) {}
            if shards.iter_mut().all(|s| s.open_requests() == 0) {
                return true;
            }
            let next = shards.iter_mut().filter_map(|s| s.next_deadline()).min();
            drop(shards);
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Only timeouts are left (or sends from other threads): sleep toward the
            // first deadline, looking again at least every millisecond.
            let until_next = next.map_or(Duration::MAX, |d| {
                Duration::from_nanos(d.saturating_sub(self.shared.now_ns()))
            });
            std::thread::sleep(until_next.min(Duration::from_millis(1)).min(deadline - now));
        }
    }

    fn shutdown_manual(&mut self) -> ShutdownReport {
        self.shared.closing.store(true, Ordering::Release);
        let drained = self.wait_idle(self.shared.config.drain_timeout);
        let Some(local) = self.local.take() else {
            unreachable!("shutdown_manual runs once, on a manual runtime");
        };
        let mut shards = local.into_inner().unwrap_or_else(|e| e.into_inner());
        for shard in shards.iter_mut() {
            shard.stop_all();
        }
        let mut dead_letters = Vec::new();
        for shard in shards {
            dead_letters.extend(shard.exit().dead_letters);
        }
        self.report(drained, dead_letters)
    }
}

/// One pass of every shard that has something to do; whether any had.
fn pass_all(shards: &mut [Shard]) -> bool {
    let mut worked = false;
    for shard in shards {
        if shard.has_work() {
            shard.pass();
            worked = true;
        }
    }
    worked
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.threads.is_empty() || self.local.is_some() {
            self.shutdown_inner();
        }
    }
}

/// The epoch ticker: advances the engine's epoch every tick while any shard is busy,
/// and sleeps while all are parked, so an idle runtime uses no CPU.
fn ticker(shared: Arc<Shared>) {
    let tick = shared.config.epoch_tick;
    while !shared.ticker_stop.load(Ordering::SeqCst) {
        if shared.active.load(Ordering::SeqCst) == 0 {
            std::thread::park();
            continue;
        }
        std::thread::sleep(tick);
        shared.engine.increment_epoch();
    }
}

/// How to spawn an actor: its unique name, the bytes its `init` receives, and
/// optionally the shard to put it on (default: round-robin).
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    name: String,
    config: Vec<u8>,
    shard: Option<usize>,
}

impl SpawnOptions {
    /// Options for an actor called `name`, with empty config, on any shard.
    pub fn new(name: impl Into<String>) -> SpawnOptions {
        SpawnOptions {
            name: name.into(),
            config: Vec::new(),
            shard: None,
        }
    }

    /// The bytes passed to the component's `init`.
    pub fn config(mut self, config: impl Into<Vec<u8>>) -> SpawnOptions {
        self.config = config.into();
        self
    }

    /// The shard to spawn on.
    pub fn shard(mut self, shard: usize) -> SpawnOptions {
        self.shard = Some(shard);
        self
    }
}
