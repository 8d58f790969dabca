//! Runtime configuration and its builder.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::address::{MAX_SHARDS, MAX_SLOTS_PER_SHARD};
use crate::error::{BuildError, cause};
use crate::grants::{Grants, Rate};
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
/// Default longest spin an idle shard learns from the gaps between its
/// wake-ups, where each shard has a core of its own (fewer shards than cores);
/// see [`RuntimeBuilder::park_spin_max`].
pub const DEFAULT_PARK_SPIN_MAX: Duration = Duration::from_millis(1);
/// Default number of requests one actor may have open at once.
pub const DEFAULT_MAX_OPEN_REQUESTS: u32 = 4096;
/// Default number of timers one actor may have pending at once.
pub const DEFAULT_MAX_TIMERS: u32 = 4096;
/// The most timers one actor may have pending.
pub const MAX_MAX_TIMERS: u32 = 1 << 20;
/// Default number of denials the audit trail keeps (the most recent ones).
pub const DEFAULT_AUDIT_CAPACITY: usize = 1024;
/// The most denials the audit trail may keep.
pub const MAX_AUDIT_CAPACITY: usize = 1 << 20;
/// Default bytes one actor may keep in its storage (keys and values).
pub const DEFAULT_STORAGE_QUOTA: usize = 1 << 20;
/// The largest storage quota.
pub const MAX_STORAGE_QUOTA: usize = 1 << 30;
/// Default bytes at the start of a freed actor's linear memory kept resident
/// for the next actor in its pool slot; see [`RuntimeBuilder::keep_resident`].
pub const DEFAULT_KEEP_RESIDENT: usize = 8 << 10;
/// The most bytes of a freed actor's linear memory kept resident: 1 MiB.
pub const MAX_KEEP_RESIDENT: usize = 1 << 20;
/// Default time `shutdown` waits for in-flight messages to drain.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest mailbox capacity (the fill of a mailbox shares its slot word with
/// the generation, a flag and the accepted codecs).
pub const MAX_MAILBOX_CAPACITY: u32 = (1 << 26) - 1;
/// The largest `max_payload`: 64 MiB.
pub const MAX_MAX_PAYLOAD: usize = 64 << 20;
/// The shortest epoch tick: 100 µs (each tick wakes the ticker thread).
pub const MIN_EPOCH_TICK: Duration = Duration::from_micros(100);
/// The longest epoch tick: 100 ms (a pass under load lasts up to two ticks).
pub const MAX_EPOCH_TICK: Duration = Duration::from_millis(100);
/// The longest CPU budget: one hour. (The shortest is one epoch tick.)
pub const MAX_CPU_BUDGET: Duration = Duration::from_secs(3600);
/// The largest memory limit: 4 GiB, all a 32-bit memory can address.
pub const MAX_MEMORY_LIMIT: usize = 4 << 30;
/// The most messages an actor handles in one turn.
pub const MAX_BATCH: u32 = 65_536;
/// The largest ring: 65 536 envelopes (8 MiB per pair of shards that
/// talk, allocated when they first do).
pub const MAX_RING_CAPACITY: usize = 65_536;
/// The longest drain at shutdown: one day.
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The most requests one actor may have open.
pub const MAX_MAX_OPEN_REQUESTS: u32 = 1 << 20;
/// The longest park spin: 10 ms.
pub const MAX_PARK_SPIN: Duration = Duration::from_millis(10);
/// The longest actor name, in bytes: a name is 1 to 256 bytes, none of them a
/// control character, a line or paragraph separator, or a text-direction mark
/// or override, whoever gives it (the
/// host's spawns, a manifest, a guest's `lifecycle.spawn`, a native actor's
/// `Context::spawn`). A name is kept for the actor's life, in the registry
/// and in its stats, and printed in logs and tables, so a guest must not
/// pick its size or make it break a line.
pub const MAX_NAME_LEN: usize = 256;

/// Whether `name` may name an actor (see [`MAX_NAME_LEN`]).
pub(crate) fn is_valid_name(name: &str) -> bool {
    name_fault(name).is_none()
}

/// What is wrong with a name that no actor may have: an actor's (or a
/// registered component's) name is 1 to [`MAX_NAME_LEN`] bytes that print as
/// they are (no control character, line or paragraph separator, or
/// text-direction mark). Its text reads "a name …".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameFault {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes (its length).
    TooLong(usize),
    /// The name holds a character that does not print as it is (the first
    /// such).
    Unprintable(char),
}

impl std::fmt::Display for NameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameFault::Empty => f.write_str("an empty name"),
            NameFault::TooLong(len) => {
                write!(
                    f,
                    "a name of {len} bytes, over the {MAX_NAME_LEN}-byte limit"
                )
            }
            NameFault::Unprintable(c) => {
                write!(f, "a name holding {c:?}, which does not print as it is")
            }
        }
    }
}

/// What is wrong with `name` as an actor's name, if anything.
pub(crate) fn name_fault(name: &str) -> Option<NameFault> {
    if name.is_empty() {
        return Some(NameFault::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Some(NameFault::TooLong(name.len()));
    }
    name.chars()
        .find(|&c| crate::log::unsafe_char(c))
        .map(NameFault::Unprintable)
}
/// The most elements a table may have. A grow beyond it traps (as a memory grow
/// beyond the memory limit does), and the instance pool is sized to the same
/// number, so no grow within it is refused.
pub const MAX_TABLE_ELEMENTS: usize = 20_000;
/// The most slots all shards keep together (`shards × (max_actors + spare
/// slots)`): 2^25 of 64 bytes (a slot word and the labels beside it, on a
/// cache line of their own), two GiB of address space, resident as used.
const MAX_SLOT_WORDS: u128 = 1 << 25;

/// The most slots a shard keeps beyond `max_actors`.
pub(crate) const MAX_SPARE_SLOTS: u32 = 4096;

/// The largest `max_actors`: a shard's slots (`max_actors` and the spare ones)
/// must fit the 24 bits an address gives them.
pub const MAX_MAX_ACTORS: u32 = MAX_SLOTS_PER_SHARD as u32 - MAX_SPARE_SLOTS;

/// Slots a shard keeps beyond `max_actors` (as many again, up to 4096): with
/// them, a freed slot is reused only after at least that many other spawns.
pub(crate) fn spare_slots(max_actors: u32) -> u32 {
    max_actors.min(MAX_SPARE_SLOTS)
}

/// Refuses `value` outside `min..=max`.
fn count(setting: &str, key: &str, value: u128, min: u128, max: u128) -> Result<(), BuildError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(BuildError::Setting(format!(
        "{setting} (manifest `{key}`) must be {min} to {max}, not {value}"
    )))
}

/// Refuses `value` outside `min..=max`.
fn duration(
    setting: &str,
    key: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), BuildError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let show = |d: Duration| humantime::format_duration(d).to_string();
    Err(BuildError::Setting(format!(
        "{setting} (manifest `{key}`) must be {} to {}, not {}",
        show(min),
        show(max),
        show(value)
    )))
}

/// Everything a [`Runtime`](crate::Runtime) is built from. Build one with [`RuntimeBuilder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) shards: usize,
    pub(crate) mailbox_capacity: u32,
    pub(crate) max_payload: usize,
    pub(crate) epoch_tick: Duration,
    pub(crate) cpu_budget: Option<Duration>,
    pub(crate) memory_limit: usize,
    /// Bytes of a freed memory kept resident for its slot's next instance.
    pub(crate) keep_resident: usize,
    pub(crate) max_actors: u32,
    pub(crate) pin_cores: bool,
    pub(crate) batch: u32,
    pub(crate) ring_capacity: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) max_open_requests: u32,
    pub(crate) max_timers: u32,
    /// The share of the host's sends that start a trace (0 to 1).
    pub(crate) trace_sampling: f64,
    /// Names (patterns) of the actors whose messages are logged.
    pub(crate) log_messages: Vec<String>,
    pub(crate) storage_quota: usize,
    pub(crate) storage_dir: Option<std::path::PathBuf>,
    pub(crate) park_spin: Duration,
    /// The longest adaptive spin; `None`: [`DEFAULT_PARK_SPIN_MAX`] with fewer
    /// shards than cores, else no adaptation.
    pub(crate) park_spin_max: Option<Duration>,
    pub(crate) audit_capacity: usize,
    /// The actor that receives every dead letter, by name.
    pub(crate) dead_letter_actor: Option<Arc<str>>,
    /// The shard whose thread a threaded build fails to start (the
    /// `testing` feature's `RuntimeBuilder::inject_thread_failure`).
    #[cfg(feature = "testing")]
    pub(crate) fail_shard_thread: Option<usize>,
    /// The grants of a component actor spawned without its own.
    pub(crate) default_grants: Arc<Grants>,
    /// The quota of a component actor spawned without its own.
    pub(crate) default_rate: Option<Rate>,
}

impl Config {
    /// The longest adaptive spin of a shard: as set, or the default for the
    /// runtime's shards on this machine's cores.
    pub(crate) fn spin_cap(&self) -> Duration {
        self.park_spin_max.unwrap_or_else(|| {
            if self.spare_core() {
                DEFAULT_PARK_SPIN_MAX
            } else {
                self.park_spin
            }
        })
    }

    /// Whether the machine has a core beyond one per shard (fewer shards than
    /// available cores): only then does anything spin longer than it must
    /// (the host waiting for a shard's answer, a shard's adaptive spin).
    pub(crate) fn spare_core(&self) -> bool {
        self.shards < std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// CPU budget in epoch ticks (at least one), or `None` when budgets are off.
    pub(crate) fn budget_ticks(&self) -> Option<u64> {
        self.cpu_budget.map(|b| {
            let tick = self.epoch_tick.as_nanos().max(1);
            (b.as_nanos().div_ceil(tick) as u64).max(1)
        })
    }

    /// Slots each shard keeps: room for `max_actors` however they are placed,
    /// and [`spare_slots`] more, so that a freed slot waits behind at least that
    /// many others before it is reused (see `Address`).
    pub(crate) fn slots_per_shard(&self) -> u32 {
        self.max_actors + spare_slots(self.max_actors)
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
        let keep = self.keep_resident.next_multiple_of(4 << 10);
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
            // The same bound as the limiter's, so that it alone decides.
            .table_elements(MAX_TABLE_ELEMENTS)
            // Reset the first `keep_resident` bytes of a freed memory (and
            // table) with memset, not madvise: a slot's next instance takes no page
            // faults there, and what lies beyond goes back to the system.
            // Measured (`bench spawn --shards 1`, counter.wat): none kept, a
            // 8.5 us floor (every page faults in again); 8 KiB, 3.1 us; 16 KiB,
            // 3.1 us; 64 KiB, 5.2-6.3 us (the memset of 64 KiB costs more than
            // the faults it saves). See docs/PERFORMANCE.md, "Density".
            .linear_memory_keep_resident(keep)
            .table_keep_resident(keep)
            // Decommit what lies beyond that (a freed memory's higher pages) in
            // batches: one `madvise` per 16 freed instances rather than one
            // each, which was a fifth of a restart (a slot waiting in the batch
            // is flushed at once if the pool runs out).
            .decommit_batch_size(16);
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
                keep_resident: DEFAULT_KEEP_RESIDENT,
                max_actors: DEFAULT_MAX_ACTORS,
                pin_cores: false,
                batch: DEFAULT_BATCH,
                ring_capacity: DEFAULT_RING_CAPACITY,
                drain_timeout: DEFAULT_DRAIN_TIMEOUT,
                max_open_requests: DEFAULT_MAX_OPEN_REQUESTS,
                max_timers: DEFAULT_MAX_TIMERS,
                trace_sampling: 0.0,
                log_messages: Vec::new(),
                storage_quota: DEFAULT_STORAGE_QUOTA,
                storage_dir: None,
                park_spin: DEFAULT_PARK_SPIN,
                park_spin_max: None,
                audit_capacity: DEFAULT_AUDIT_CAPACITY,
                dead_letter_actor: None,
                #[cfg(feature = "testing")]
                fail_shard_thread: None,
                default_grants: Arc::new(Grants::none()),
                default_rate: None,
            },
            log_sink: None,
        }
    }

    /// Number of shard threads, 1 to [`MAX_SHARDS`] (256).
    /// Default: available parallelism.
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = n;
        self
    }

    /// Capacity of every actor's mailbox, in messages: 1 to
    /// [`MAX_MAILBOX_CAPACITY`] (2^26 − 1: the slot word keeps the count in 26
    /// bits, beside the generation and the accepted codecs). Default: 1024.
    pub fn mailbox_capacity(mut self, n: u32) -> Self {
        self.config.mailbox_capacity = n;
        self
    }

    /// Largest payload a send may carry, in bytes: 0 to [`MAX_MAX_PAYLOAD`]
    /// (64 MiB). Default: 64 KiB.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// Period of the epoch ticker: [`MIN_EPOCH_TICK`] to [`MAX_EPOCH_TICK`]
    /// (100 µs to 100 ms). Default: 1 ms. CPU budgets are enforced to within a
    /// tick, and a pass of a busy shard lasts at most two ticks (plus the
    /// invocation running then) before it looks at its timers and commands. The
    /// ticker runs only while some shard is busy, so an idle runtime uses no CPU.
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.config.epoch_tick = tick;
        self
    }

    /// CPU budget of one invocation, or `None` to turn budgets (and epoch
    /// interruption) off: one epoch tick to [`MAX_CPU_BUDGET`] (1 h). Default:
    /// 100 ms. Enforced to within one epoch tick.
    pub fn cpu_budget(mut self, budget: Option<Duration>) -> Self {
        self.config.cpu_budget = budget;
        self
    }

    /// Linear-memory limit of one actor, in bytes (rounded up to 64 KiB pages),
    /// over all its memories together: 64 KiB to [`MAX_MEMORY_LIMIT`] (4 GiB).
    /// Default: 16 MiB. A `memory.grow` beyond it traps and stops the actor.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.config.memory_limit = bytes;
        self
    }

    /// Bytes of a stopped component actor's linear memory (and of its
    /// tables) kept resident, reset in place, for the next actor its pool
    /// slot holds (rounded up to 4 KiB pages): 0 to [`MAX_KEEP_RESIDENT`]
    /// (1 MiB). Its next instance takes no page faults there, which makes
    /// spawning about 2.5 times faster for a small component; the price is
    /// that every slot ever used keeps up to that much of each after its
    /// actor stopped. Zero gives a stopped actor's memory back to the system
    /// entirely. Default: [`DEFAULT_KEEP_RESIDENT`] (8 KiB).
    pub fn keep_resident(mut self, bytes: usize) -> Self {
        self.config.keep_resident = bytes;
        self
    }

    /// Most actors alive at once, across all shards; sizes the instance pool:
    /// 1 to [`MAX_MAX_ACTORS`] (2^24 − 4096). Each shard keeps a 64-byte slot
    /// (a cache line) for every actor it might hold and for as many spare slots
    /// again (up to 4096), resident once used (a page at a time), and all
    /// shards together at most 2^25 slots (two GiB of address space), so
    /// `shards × (max_actors + min(max_actors, 4096))` is at most 2^25.
    /// Default: 4096.
    pub fn max_actors(mut self, n: u32) -> Self {
        self.config.max_actors = n;
        self
    }

    /// Pin shard `i` to the `i % n`-th of the `n` cores the process may run
    /// on (its affinity mask, in order). A pin that does not take (no such
    /// call on this system, say) is logged as a warning and the shard runs
    /// unpinned. Default: off.
    pub fn pin_cores(mut self, pin: bool) -> Self {
        self.config.pin_cores = pin;
        self
    }

    /// Messages an actor handles per turn before the next ready actor runs; a turn
    /// takes only messages already in the mailbox when it begins: 1 to
    /// [`MAX_BATCH`] (65 536). Default: 64.
    pub fn batch(mut self, n: u32) -> Self {
        self.config.batch = n;
        self
    }

    /// Capacity of each shard-to-shard ring, in envelopes: 1 to
    /// [`MAX_RING_CAPACITY`] (65 536). Default: 4096. A ring is allocated when its
    /// pair of shards first talks, 128 bytes per envelope it can hold (512 KiB at
    /// the default; with `S` shards that all talk, `S × (S − 1)` rings). A full
    /// ring never blocks or drops: the sender keeps the rest in an overflow
    /// buffer, in order.
    pub fn ring_capacity(mut self, n: usize) -> Self {
        self.config.ring_capacity = n;
        self
    }

    /// How long [`Runtime::shutdown`](crate::Runtime::shutdown) waits for in-flight
    /// messages before it stops every actor and reports what is left as dead
    /// letters: 0 to [`MAX_DRAIN_TIMEOUT`] (one day). Default: 5 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// How long a shard that ran out of work keeps checking its queues before it
    /// parks, at first: 0 to [`MAX_PARK_SPIN`] (10 ms). Default: 50 µs. A short
    /// spin saves the wake-up syscalls of a message that arrives soon after
    /// (cross-shard ping-pong). The spin then adapts between this and
    /// [`park_spin_max`](Self::park_spin_max); an idle shard still parks after
    /// it, so an idle runtime uses no CPU. Zero (with `park_spin_max` zero too)
    /// parks at once.
    ///
    /// With fewer shards than cores, the host thread also spins this long for a
    /// shard's answer to [`Runtime::spawn`](crate::Runtime::spawn) or [`Runtime::stop`](crate::Runtime::stop) before it blocks
    /// (a spawn then costs about a third as much); with a shard per core it blocks
    /// at once, leaving the cores to the shards.
    pub fn park_spin(mut self, spin: Duration) -> Self {
        self.config.park_spin = spin;
        self
    }

    /// The longest spin an idle shard learns: 0 to [`MAX_PARK_SPIN`] (10 ms);
    /// at or below `park_spin`, no adaptation. A shard that work woke from a
    /// sleep `gap` after it ran out (spin included), with `gap` within this
    /// cap, spins one and a half times that gap next time; a sleep that reaches
    /// its deadline with no work, or work that came later than this cap, halves
    /// the spin down to `park_spin`. The spin never runs past the shard's next
    /// deadline (a timer, a request's timeout, a restart). Work at a
    /// steady cadence (a token around a ring of shards, a request answered on
    /// another shard) is then found spinning instead of paying a wake-up per
    /// hop; the price is the core, kept busy while work keeps coming within the
    /// cap, and up to this long after the last of it. Each shard's current
    /// spin is in [`ShardStats::spin_ns`](crate::ShardStats::spin_ns).
    ///
    /// Default: [`DEFAULT_PARK_SPIN_MAX`] (1 ms) with fewer shards than
    /// available cores; with a shard per core (or more), no adaptation (a
    /// spinning shard would take a core that another thread needs).
    pub fn park_spin_max(mut self, max: Duration) -> Self {
        self.config.park_spin_max = Some(max);
        self
    }

    /// Requests one actor (and the host) may have open at once; beyond it
    /// `request` fails with `too-many-requests`: 1 to [`MAX_MAX_OPEN_REQUESTS`]
    /// (2^20). Default: 4096. Responses are always admitted to a requester's
    /// mailbox, and this cap is what bounds them.
    pub fn max_open_requests(mut self, n: u32) -> Self {
        self.config.max_open_requests = n;
        self
    }

    /// Timers one actor may have pending at once (`wasmshard:actor/timers`,
    /// [`Context::schedule`](crate::Context::schedule), and the host's
    /// [`Runtime::schedule`](crate::Runtime::schedule) for it): 1 to
    /// [`MAX_MAX_TIMERS`] (2^20). Default: 4096. Beyond it, `schedule` fails
    /// with `too-many-requests`. A fired timer is always admitted to its
    /// actor's mailbox, and this cap is what bounds them.
    pub fn max_timers(mut self, n: u32) -> Self {
        self.config.max_timers = n;
        self
    }

    /// The share of the host's messages that start a trace: each tell,
    /// request or publication the host makes without a context
    /// ([`Runtime::send`](crate::Runtime::send),
    /// [`request`](crate::Runtime::request),
    /// [`publish`](crate::Runtime::publish)) is traced with probability
    /// `rate`, from 0 (the default: none) to 1 (all). Everything actors send
    /// while handling a traced message carries the trace on (see
    /// [`TraceContext`](crate::TraceContext)). Messages the host sends with
    /// [`Runtime::send_traced`](crate::Runtime::send_traced) or
    /// [`request_traced`](crate::Runtime::request_traced) are traced
    /// whatever the rate.
    pub fn trace_sampling(mut self, rate: f64) -> Self {
        self.config.trace_sampling = rate;
        self
    }

    /// Logs the messages of the actors whose names match one of `patterns`
    /// (`*` matches any run of characters, as in grants): one JSON line per
    /// message such an actor handles (`"event": "receive"`) and per message it
    /// sends (`"event": "send"`, admitted or refused), with its trace id,
    /// sender, target, kind, size and outcome, through the `log` crate at
    /// `INFO`, target [`MESSAGE_LOG_TARGET`](crate::MESSAGE_LOG_TARGET). An
    /// actor's name is matched when it is spawned. Default: none. For audits,
    /// not speed: each line is formatted and logged on the actor's shard.
    pub fn log_messages<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.log_messages = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Bytes one actor may keep in its storage (`wasmshard:actor/storage`),
    /// keys and values together, each entry counting
    /// [`STORAGE_ENTRY_OVERHEAD`](crate::STORAGE_ENTRY_OVERHEAD) (32) bytes
    /// more: 0 to [`MAX_STORAGE_QUOTA`] (1 GiB). Default: 1 MiB. Beyond it,
    /// `set` fails with `quota-exceeded`.
    pub fn storage_quota(mut self, bytes: usize) -> Self {
        self.config.storage_quota = bytes;
        self
    }

    /// Makes storage durable: what named actors store is written to a
    /// database in `dir` (created if missing), keyed by actor name, in group
    /// commits off the message path, and an actor spawned under a name finds
    /// what an actor of that name stored before, in this process or an
    /// earlier one. A crash loses at most the changes not yet committed (those
    /// of the last few milliseconds); a clean shutdown commits everything.
    /// What an actor stored is deleted when it ends for good (stopped, or
    /// failed beyond its supervision), not at shutdown. Anonymous actors keep
    /// their storage in memory only. Default: none (all storage in memory).
    pub fn storage_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.storage_dir = Some(dir.into());
        self
    }

    /// The grants of a component actor spawned without its own
    /// ([`SpawnOptions::grants`](crate::SpawnOptions::grants)). Default:
    /// [`Grants::none`], so a component may message no one but itself and those
    /// who made requests of it until it is granted more; [`Grants::all`] trusts
    /// every component.
    pub fn default_grants(mut self, grants: Grants) -> Self {
        self.config.default_grants = Arc::new(grants);
        self
    }

    /// The quota of a component actor spawned without its own
    /// ([`SpawnOptions::rate`](crate::SpawnOptions::rate)). Default: none.
    pub fn default_rate(mut self, rate: Option<Rate>) -> Self {
        self.config.default_rate = rate;
        self
    }

    /// How many denials the audit trail ([`Runtime::audit`](crate::Runtime::audit))
    /// keeps for each shard's actors, the most recent ones: 0 to
    /// [`MAX_AUDIT_CAPACITY`]. Default: 1024.
    pub fn audit_capacity(mut self, n: usize) -> Self {
        self.config.audit_capacity = n;
        self
    }

    /// Names the actor (native or component, spawned under this name before
    /// or after the build) that receives every dead letter, as a message from
    /// [`Address::HOST`](crate::Address::HOST) whose payload is
    /// [`crate::DEAD_LETTER_HEADER`] bytes (the raw codec's prefix `0x55`, the
    /// reason, the original sender and target, the original length) followed
    /// by the original payload (cut to the maximum payload). It is bounded
    /// like any mailbox: what it cannot take, and dead letters addressed to
    /// it, are counted (`ShardStats::dead_letters_refused`) and never
    /// forwarded again. Dead letters of the shutdown are not forwarded (it is
    /// stopping too). Default: none (dead letters are counted and sampled in
    /// the shutdown report only).
    pub fn dead_letter_actor(mut self, name: impl Into<String>) -> Self {
        self.config.dead_letter_actor = Some(Arc::from(name.into()));
        self
    }

    /// Sends components' log lines to `sink` instead of the [`log`] crate (where they
    /// go by default, target `wasmshard::guest`, as `[name] level: message`).
    pub fn log_sink(mut self, sink: impl Fn(&LogRecord) + Send + Sync + 'static) -> Self {
        self.log_sink = Some(std::sync::Arc::new(sink));
        self
    }

    /// Checks every setting against its range (each setter says it): a value
    /// outside it is refused, naming the setting, its manifest key, the range and
    /// the value.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let c = &self.config;
        count("shards", "shards", c.shards as u128, 1, MAX_SHARDS as u128)?;
        count(
            "mailbox_capacity",
            "mailbox-capacity",
            c.mailbox_capacity.into(),
            1,
            MAX_MAILBOX_CAPACITY.into(),
        )?;
        count(
            "max_payload",
            "max-payload",
            c.max_payload as u128,
            0,
            MAX_MAX_PAYLOAD as u128,
        )?;
        duration(
            "epoch_tick",
            "epoch-tick-ms",
            c.epoch_tick,
            MIN_EPOCH_TICK,
            MAX_EPOCH_TICK,
        )?;
        if let Some(budget) = c.cpu_budget {
            duration(
                "cpu_budget",
                "cpu-budget-ms",
                budget,
                c.epoch_tick,
                MAX_CPU_BUDGET,
            )?;
        }
        count(
            "memory_limit",
            "memory-limit",
            c.memory_limit as u128,
            64 << 10,
            MAX_MEMORY_LIMIT as u128,
        )?;
        count(
            "keep_resident",
            "keep-resident",
            c.keep_resident as u128,
            0,
            MAX_KEEP_RESIDENT as u128,
        )?;
        count(
            "max_actors",
            "max-actors",
            c.max_actors.into(),
            1,
            MAX_MAX_ACTORS.into(),
        )?;
        // Each shard keeps a slot (64 bytes) for every actor it might hold.
        if c.shards as u128 * c.slots_per_shard() as u128 > MAX_SLOT_WORDS {
            return Err(BuildError::Setting(format!(
                "shards × max_actors (manifest `shards`, `max-actors`) is too large: each \
                 shard keeps 64 bytes for every actor it might hold and for as many spare \
                 slots again (up to 4096), at most {MAX_SLOT_WORDS} in all, not {} × ({} + {})",
                c.shards,
                c.max_actors,
                spare_slots(c.max_actors)
            )));
        }
        count("batch", "batch", c.batch.into(), 1, MAX_BATCH.into())?;
        count(
            "ring_capacity",
            "ring-capacity",
            c.ring_capacity as u128,
            1,
            MAX_RING_CAPACITY as u128,
        )?;
        duration(
            "drain_timeout",
            "drain-timeout-ms",
            c.drain_timeout,
            Duration::ZERO,
            MAX_DRAIN_TIMEOUT,
        )?;
        count(
            "max_open_requests",
            "max-open-requests",
            c.max_open_requests.into(),
            1,
            MAX_MAX_OPEN_REQUESTS.into(),
        )?;
        count(
            "max_timers",
            "max-timers",
            c.max_timers.into(),
            1,
            MAX_MAX_TIMERS.into(),
        )?;
        if !(0.0..=1.0).contains(&c.trace_sampling) {
            return Err(BuildError::Setting(format!(
                "trace_sampling (manifest `trace-sampling`) must be a share from 0 to 1, not {}",
                c.trace_sampling
            )));
        }
        duration(
            "park_spin",
            "park-spin-us",
            c.park_spin,
            Duration::ZERO,
            MAX_PARK_SPIN,
        )?;
        if let Some(max) = c.park_spin_max {
            duration(
                "park_spin_max",
                "park-spin-max-us",
                max,
                Duration::ZERO,
                MAX_PARK_SPIN,
            )?;
        }
        count(
            "storage_quota",
            "storage-quota",
            c.storage_quota as u128,
            0,
            MAX_STORAGE_QUOTA as u128,
        )?;
        count(
            "audit_capacity",
            "audit-capacity",
            c.audit_capacity as u128,
            0,
            MAX_AUDIT_CAPACITY as u128,
        )?;
        c.default_grants
            .check()
            .map_err(|e| BuildError::Policy("default_grants", e))?;
        if let Some(rate) = &c.default_rate {
            rate.check()
                .map_err(|e| BuildError::Policy("default_rate", e))?;
        }
        if let Some(name) = &c.dead_letter_actor
            && let Some(fault) = name_fault(name)
        {
            // No actor could take the name: dead letters would never be
            // forwarded, and nothing would say why.
            return Err(BuildError::Setting(format!(
                "dead_letter_actor (manifest `dead-letter-actor`) names an actor no spawn \
                 can make: it is {fault}"
            )));
        }
        Ok(())
    }
}
