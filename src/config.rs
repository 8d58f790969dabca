//! Runtime configuration and its builder.

use std::time::Duration;

use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::address::{MAX_SHARDS, MAX_SLOTS_PER_SHARD};
use crate::error::{BuildError, cause};
use crate::log::{LogRecord, LogSink};

/// Default capacity of every actor's mailbox, in messages.
pub const DEFAULT_MAILBOX_CAPACITY: u32 = 1024;
/// Default largest payload, in bytes. Payloads up to 64 bytes never touch the heap.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
/// Default period of the epoch ticker that enforces CPU budgets.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(1);
/// Default CPU budget of one invocation (`init` or one message).
pub const DEFAULT_CPU_BUDGET: Duration = Duration::from_millis(100);
/// Default linear-memory limit of one actor, in bytes.
pub const DEFAULT_MEMORY_LIMIT: usize = 16 << 20;
/// Default number of actors the runtime can hold at once (sizes the instance pool).
pub const DEFAULT_MAX_ACTORS: u32 = 4096;
/// Default number of messages an actor handles per turn before others get theirs.
pub const DEFAULT_BATCH: u32 = 64;
/// Default capacity of each shard-to-shard ring, in envelopes.
pub const DEFAULT_RING_CAPACITY: usize = 4096;
/// Default time a shard that ran out of work keeps checking its queues before it
/// parks (sleeps in `poll`).
pub const DEFAULT_PARK_SPIN: Duration = Duration::from_micros(50);
/// Default number of requests one actor may have open at once.
pub const DEFAULT_MAX_OPEN_REQUESTS: u32 = 4096;
/// Default time `shutdown` waits for in-flight messages to drain.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a [`Runtime`](crate::Runtime) is built from. Build one with [`RuntimeBuilder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) shards: usize,
    pub(crate) mailbox_capacity: u32,
    pub(crate) max_payload: usize,
    pub(crate) epoch_tick: Duration,
    pub(crate) cpu_budget: Option<Duration>,
    pub(crate) memory_limit: usize,
    pub(crate) max_actors: u32,
    pub(crate) pin_cores: bool,
    pub(crate) batch: u32,
    pub(crate) ring_capacity: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) max_open_requests: u32,
    pub(crate) park_spin: Duration,
}

impl Config {
    /// CPU budget in epoch ticks (at least one), or `None` when budgets are off.
    pub(crate) fn budget_ticks(&self) -> Option<u64> {
        self.cpu_budget.map(|b| {
            let tick = self.epoch_tick.as_nanos().max(1);
            (b.as_nanos().div_ceil(tick) as u64).max(1)
        })
    }

    /// Slots each shard needs so that `max_actors` fit however they are placed.
    pub(crate) fn slots_per_shard(&self) -> u32 {
        self.max_actors
    }

    /// The wasmtime engine these settings call for: a pooling allocator sized by
    /// `max_actors` and `memory_limit`, and epoch interruption when CPU budgets are
    /// on. (wasmtime is built without the component model's async support, which
    /// would double the cost of every call.)
    pub(crate) fn engine(&self) -> Result<Engine, BuildError> {
        let mut c = wasmtime::Config::new();
        c.epoch_interruption(self.cpu_budget.is_some());
        let page = 64 * 1024;
        let memory = self.memory_limit.div_ceil(page) * page;
        let actors = self.max_actors;
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
        Engine::new(&c).map_err(|e| BuildError::Engine(cause(e)))
    }
}

/// Builds a [`Runtime`](crate::Runtime).
///
/// Every setting has a documented default (the `DEFAULT_*` constants); the same
/// settings can be given in a manifest's `[runtime]` table.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let runtime = wasmshard::RuntimeBuilder::new()
///     .shards(2)
///     .mailbox_capacity(256)
///     .cpu_budget(Some(Duration::from_millis(20)))
///     .build()?;
/// assert_eq!(runtime.shards(), 2);
/// # Ok::<(), wasmshard::BuildError>(())
/// ```
#[derive(Clone)]
pub struct RuntimeBuilder {
    pub(crate) config: Config,
    pub(crate) log_sink: Option<LogSink>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder::new()
    }
}

impl RuntimeBuilder {
    /// A builder with every default: one shard per available core, the
    /// `DEFAULT_*` limits, CPU budgets on, no core pinning.
    pub fn new() -> RuntimeBuilder {
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
        RuntimeBuilder {
            config: Config {
                shards: shards.min(MAX_SHARDS),
                mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
                max_payload: DEFAULT_MAX_PAYLOAD,
                epoch_tick: DEFAULT_EPOCH_TICK,
                cpu_budget: Some(DEFAULT_CPU_BUDGET),
                memory_limit: DEFAULT_MEMORY_LIMIT,
                max_actors: DEFAULT_MAX_ACTORS,
                pin_cores: false,
                batch: DEFAULT_BATCH,
                ring_capacity: DEFAULT_RING_CAPACITY,
                drain_timeout: DEFAULT_DRAIN_TIMEOUT,
                max_open_requests: DEFAULT_MAX_OPEN_REQUESTS,
                park_spin: DEFAULT_PARK_SPIN,
            },
            log_sink: None,
        }
    }

    /// Number of shard threads (1 to 256). Default: available parallelism.
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = n;
        self
    }

    /// Capacity of every actor's mailbox, in messages. Default: 1024.
    pub fn mailbox_capacity(mut self, n: u32) -> Self {
        self.config.mailbox_capacity = n;
        self
    }

    /// Largest payload a send may carry, in bytes. Default: 64 KiB.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// Period of the epoch ticker. Default: 1 ms. The ticker runs only while some
    /// shard is busy, so an idle runtime uses no CPU.
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.config.epoch_tick = tick;
        self
    }

    /// CPU budget of one invocation, or `None` to turn budgets (and epoch
    /// interruption) off. Default: 100 ms. Enforced to within one epoch tick.
    pub fn cpu_budget(mut self, budget: Option<Duration>) -> Self {
        self.config.cpu_budget = budget;
        self
    }

    /// Linear-memory limit of one actor, in bytes (rounded up to 64 KiB pages).
    /// Default: 16 MiB. A `memory.grow` beyond it traps and stops the actor.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.config.memory_limit = bytes;
        self
    }

    /// Most actors alive at once, across all shards; sizes the instance pool.
    /// Default: 4096.
    pub fn max_actors(mut self, n: u32) -> Self {
        self.config.max_actors = n;
        self
    }

    /// Pin shard `i` to core `i % cores`. Default: off.
    pub fn pin_cores(mut self, pin: bool) -> Self {
        self.config.pin_cores = pin;
        self
    }

    /// Messages an actor handles per turn before the next ready actor runs; a turn
    /// takes only messages already in the mailbox when it begins. Default: 64.
    pub fn batch(mut self, n: u32) -> Self {
        self.config.batch = n;
        self
    }

    /// Capacity of each shard-to-shard ring. Default: 4096. A full ring never
    /// blocks or drops: the sender keeps the rest in an overflow buffer.
    pub fn ring_capacity(mut self, n: usize) -> Self {
        self.config.ring_capacity = n;
        self
    }

    /// How long [`Runtime::shutdown`](crate::Runtime::shutdown) waits for in-flight messages before it stops
    /// every actor and reports what is left as dead letters. Default: 5 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// How long a shard that ran out of work keeps checking its queues before it
    /// parks. Default: 50 µs. A short spin saves the wake-up syscalls of a
    /// message that arrives soon after (cross-shard ping-pong); an idle shard still
    /// parks after it, so an idle runtime uses no CPU. Zero parks at once.
    ///
    /// With fewer shards than cores, the host thread also spins this long for a
    /// shard's answer to [`Runtime::spawn`](crate::Runtime::spawn) or [`Runtime::stop`](crate::Runtime::stop) before it blocks
    /// (a spawn then costs about a third as much); with a shard per core it blocks
    /// at once, leaving the cores to the shards.
    pub fn park_spin(mut self, spin: Duration) -> Self {
        self.config.park_spin = spin;
        self
    }

    /// Requests one actor may have open at once; beyond it `request` fails with
    /// `too-many-requests`. Default: 4096. Responses are always admitted to a
    /// requester's mailbox, and this cap is what bounds them.
    pub fn max_open_requests(mut self, n: u32) -> Self {
        self.config.max_open_requests = n;
        self
    }

    /// Sends components' log lines to `sink` instead of the [`log`] crate (where they
    /// go by default, target `wasmshard::guest`, as `[name] level: message`).
    pub fn log_sink(mut self, sink: impl Fn(&LogRecord) + Send + Sync + 'static) -> Self {
        self.log_sink = Some(std::sync::Arc::new(sink));
        self
    }

    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let c = &self.config;
        if c.shards == 0 || c.shards > MAX_SHARDS {
            return Err(BuildError::Setting(format!(
                "shards must be 1 to {MAX_SHARDS}, not {}",
                c.shards
            )));
        }
        if c.mailbox_capacity == 0 || c.mailbox_capacity >= 1 << 30 {
            return Err(BuildError::Setting(
                "mailbox capacity must be 1 to 2^30 - 1".into(),
            ));
        }
        if c.max_actors == 0 || c.max_actors as usize >= MAX_SLOTS_PER_SHARD {
            return Err(BuildError::Setting(format!(
                "max actors must be 1 to {}",
                MAX_SLOTS_PER_SHARD - 1
            )));
        }
        if c.batch == 0 {
            return Err(BuildError::Setting("batch must be at least 1".into()));
        }
        if c.ring_capacity == 0 {
            return Err(BuildError::Setting(
                "ring capacity must be at least 1".into(),
            ));
        }
        if c.epoch_tick.is_zero() {
            return Err(BuildError::Setting("epoch tick must be positive".into()));
        }
        if c.memory_limit < 64 * 1024 || c.memory_limit > 4 << 30 {
            return Err(BuildError::Setting(
                "memory limit must be 64 KiB to 4 GiB".into(),
            ));
        }
        if c.max_payload > u32::MAX as usize {
            return Err(BuildError::Setting(
                "max payload must fit in 32 bits".into(),
            ));
        }
        Ok(())
    }
}
