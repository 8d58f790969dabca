//! The runtime: the host-side API over the directory, the shards and their driver.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::actor::WasmSettings;
use crate::address::Address;
use crate::audit::Denial;
use crate::component::{self, Component, Inspection};
use crate::config::{Config, RuntimeBuilder};
use crate::directory::Directory;
use crate::durable::Durable;
use crate::envelope::{Envelope, Kind, Payload};
use crate::error::{
    BuildError, LoadError, QuotaError, SendError, SpawnError, StopError, TimerError, UpgradeError,
    cause,
};
use crate::grants::{Grants, PolicyError, Rate};
use crate::host::{self, ActorCtx};
use crate::manual::Manual;
use crate::native::NativeActor;
use crate::pending::PendingReply;
use crate::placement;
use crate::reply::HostWaiter;
use crate::shard::{self, Shard};
use crate::shared::{Command, HostItem, HostRequest, ShardHandle, Shared, SpawnBody};
use crate::stats::{DeadLetter, ShutdownReport, Stats};
use crate::supervision::{Factory, Group, Plan, Restart, Strategy};
use crate::threaded::Threaded;
use crate::topics::{PublishOutcome, TopicStats};
use crate::trace::{Trace, TraceContext};

/// The wasmshard runtime: the wasmtime engine, the shard threads, the name registry.
///
/// `Send + Sync`; share it by reference or in an `Arc`. Dropping it shuts it down
/// (see [`Runtime::shutdown`] for the report).
pub struct Runtime {
    directory: Arc<Directory>,
    shared: Arc<Shared>,
    engine: Engine,
    /// The host functions every component is linked against (used by loading).
    linker: Linker<ActorCtx>,
    config: Config,
    driver: Driver,
    next_shard: AtomicUsize,
    /// Requests the host has open (capped at `max_open_requests`).
    host_requests: Arc<AtomicU32>,
    /// Set once shutdown has run (by [`Runtime::shutdown`] or on drop).
    down: bool,
}

/// How a runtime runs its shards.
enum Driver {
    /// One thread per shard, plus the epoch ticker.
    Threads(Threaded),
    /// No threads: the shards run when the caller steps them.
    Manual(Manual),
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("shards", &self.shards())
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Checks the configuration, creates the engine, starts the shard threads.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting that is out of range, or the engine or
    /// thread that could not be created.
    pub fn build(self) -> Result<Runtime, BuildError> {
        self.check()?;
        Runtime::start(self, false)
    }

    /// Makes the build fail to start the thread of shard `shard`, as a thread
    /// limit would (the `testing` feature: the tests of a build that fails
    /// part-way).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn inject_thread_failure(mut self, shard: usize) -> Self {
        self.config.fail_shard_thread = Some(shard);
        self
    }

    /// Builds a manual runtime: no threads of its own (no shard threads, no epoch
    /// ticker; compiling a component may still use wasmtime's compiler threads,
    /// which do nothing afterwards). Its shards run only inside [`Runtime::step`],
    /// [`Runtime::run_until_stalled`], [`Runtime::wait_idle`] and
    /// [`Runtime::shutdown`], on the calling thread, one after another in shard
    /// order, so a run is deterministic: the same sends give the same turns in the
    /// same order. Everything else (spawn, send, request, stats) works as on a
    /// threaded runtime; spawn and stop take effect at once.
    ///
    /// Meant for instruction-count benchmarks, profiling and deterministic tests.
    /// With no ticker, the CPU budget is never enforced: a guest that loops forever
    /// blocks the caller. [`crate::PendingReply::wait`] blocks the caller without
    /// running anything; step the runtime and use [`crate::PendingReply::try_get`].
    /// An actor must not call back into its own manual runtime (spawn, stop,
    /// step) from a handler: the shards are held while they run.
    ///
    /// # Errors
    ///
    /// As [`RuntimeBuilder::build`].
    pub fn build_manual(self) -> Result<Runtime, BuildError> {
        self.check()?;
        Runtime::start(self, true)
    }
}

impl Runtime {
    /// A [`RuntimeBuilder`] with every default.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::new()
    }

    fn start(builder: RuntimeBuilder, manual: bool) -> Result<Runtime, BuildError> {
        let RuntimeBuilder {
            mut config,
            log_sink,
        } = builder;
        // The adaptive spin's cap, resolved once for every shard.
        config.park_spin_max = Some(config.spin_cap());
        let engine = config.engine()?;
        let linker = host::linker(&engine).map_err(|e| BuildError::Engine(cause(e)))?;
        let mut parkers = Vec::with_capacity(config.shards);
        let mut handles = Vec::with_capacity(config.shards);
        for _ in 0..config.shards {
            let (parker, waker) = crate::sys::parker().map_err(|source| BuildError::System {
                what: "a poller for a shard".into(),
                source,
            })?;
            parkers.push(parker);
            handles.push(ShardHandle::new(waker));
        }
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let shared = Arc::new(Shared::new(handles, config.ring_capacity, ticks.clone()));
        let durable = match &config.storage_dir {
            Some(dir) => Some(Durable::open(dir).map_err(|e| BuildError::Storage {
                dir: dir.display().to_string(),
                source: crate::durable::failure(e),
            })?),
            None => None,
        };
        let directory = Arc::new(Directory::new(&config, log_sink, durable, ticks));
        let shards: Vec<Shard> = parkers
            .into_iter()
            .enumerate()
            .map(|(id, parker)| Shard::new(id, shared.clone(), directory.clone(), &config, parker))
            .collect();
        let driver = if manual {
            Driver::Manual(Manual::new(directory.id, shards))
        } else {
            match Threaded::start(shards, &shared, &engine, &config) {
                Ok(threads) => Driver::Threads(threads),
                Err(e) => {
                    // The store (its file, its writer thread) is let go: a
                    // build retried on the directory would find it open.
                    if let Some(durable) = &directory.durable {
                        durable.close();
                    }
                    return Err(e);
                }
            }
        };
        Ok(Runtime {
            directory,
            shared,
            engine,
            linker,
            config,
            driver,
            next_shard: AtomicUsize::new(0),
            host_requests: Arc::new(AtomicU32::new(0)),
            down: false,
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
    /// A [`LoadError`] naming the file and what is wrong with it: unreadable,
    /// larger than [`MAX_COMPONENT_SIZE`](crate::MAX_COMPONENT_SIZE) (found
    /// without reading past that), not WebAssembly, or not fitting the
    /// `wasmshard:actor/component` world (naming the missing export or the
    /// unknown import).
    pub fn load_component_file(&self, path: impl AsRef<Path>) -> Result<Component, LoadError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = read_component_file(path, &name)?;
        self.load_component(&name, &bytes)
            .map_err(|e| e.in_file(&name))
    }

    /// Loads a component from bytes (binary or text); `name` is used in errors and
    /// stats.
    ///
    /// # Errors
    ///
    /// As [`Runtime::load_component_file`].
    pub fn load_component(&self, name: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        component::load(&self.engine, &self.linker, name, bytes)
    }

    /// Describes a file (binary or text, component or core module): what it is, its
    /// imports and exports, and whether it fits the `wasmshard:actor/component` world.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] if the bytes are not WebAssembly at all.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection, LoadError> {
        component::inspect(&self.engine, &self.linker, bytes)
    }

    /// [`Runtime::inspect`] of the file at `path`.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the file: it cannot be read, is larger than
    /// [`MAX_COMPONENT_SIZE`](crate::MAX_COMPONENT_SIZE) (found without
    /// reading past that), or is not WebAssembly at all.
    pub fn inspect_file(&self, path: impl AsRef<Path>) -> Result<Inspection, LoadError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = read_component_file(path, &name)?;
        self.inspect(&bytes).map_err(|e| e.in_file(&name))
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
        if let Some(fault) = crate::config::name_fault(name) {
            return Err(SpawnError::BadName(fault));
        }
        if self.directory.is_closing() {
            return Err(SpawnError::ShuttingDown);
        }
        if shard::on_shard_of(self.directory.id) {
            return Err(SpawnError::Reentrant);
        }
        let shard = self.pick_shard(shard)?;
        if matches!(self.driver, Driver::Threads(_)) {
            return self.spawn_here(name, shard, body);
        }
        let name = self.directory.reserve(name)?;
        let (reply, answer) = sync_channel(1);
        self.command(
            shard,
            Command::Spawn {
                name: name.clone(),
                body,
                reply,
            },
        );
        let result = self.answer(&answer).unwrap_or_else(|| {
            Err(if self.shared.shards[shard].is_dead() {
                SpawnError::ShardFailed { shard }
            } else {
                SpawnError::ShuttingDown
            })
        });
        if result.is_err() {
            // Frees the reservation if the shard refused before registering.
            self.directory.unregister(&name, Address::HOST, 0);
        }
        result
    }

    /// Spawns on the caller's thread (see `placement`): the slot and name
    /// are taken here, the component instantiated and its `init` run here,
    /// and the started actor handed to its shard, which is not waited for.
    fn spawn_here(&self, name: &str, shard: usize, body: SpawnBody) -> Result<Address, SpawnError> {
        if self.shared.shards[shard].has_failed() {
            return Err(SpawnError::ShardFailed { shard });
        }
        let reserved = placement::claim(&self.directory, shard, name, &body)?;
        let settings = WasmSettings {
            memory_limit: self.config.memory_limit,
            budget: self.config.budget_ticks(),
        };
        placement::spawn_here(
            &self.shared,
            &self.directory,
            &settings,
            shard,
            reserved,
            body,
        )
    }

    /// Waits for a shard's answer to a command.
    fn answer<T>(&self, answer: &Receiver<T>) -> Option<T> {
        match &self.driver {
            Driver::Threads(threads) => threads.answer(answer),
            // The command ran when it was sent.
            Driver::Manual(_) => answer.try_recv().ok(),
        }
    }

    fn command(&self, shard: usize, cmd: Command) {
        self.shared.shards[shard].command(cmd);
        if let Driver::Manual(manual) = &self.driver {
            manual.take_commands(shard);
        }
    }

    /// Spawns an actor from `component` and runs its `init` with the options' config.
    /// Returns once `init` has returned.
    ///
    /// On a runtime with threads, the component is instantiated and `init` runs
    /// on the calling thread (within the actor's CPU budget), and the started
    /// actor is handed to its shard without waiting for it: a spawn costs about
    /// an instantiation, whatever the shard is doing. The address is usable at
    /// once (what is sent to it before its shard takes it waits for it), and the
    /// stats list the actor. A shard that sleeps is not woken for it unless
    /// its `init` sent something or spawned a child (or the shard holds what
    /// was sent to it): it places the actor when it next wakes, before
    /// anything else (or once 1 024 placements wait for it), so a burst of
    /// spawns leaves the cores to the spawning thread. Its shard's counters
    /// ([`ShardStats::actors`](crate::ShardStats::actors)) count it from
    /// then; [`Runtime::wait_idle`] (called from outside the runtime's
    /// actors) wakes every shard that holds placements and waits for them to
    /// be taken. An `init` that makes a request, sets a timer or
    /// monitors borrows the shard's request table, and so waits for the shard,
    /// as does a spawn whose start fails (its name is free again when this
    /// returns).
    ///
    /// # Errors
    ///
    /// [`SpawnError::BadName`] (a name is 1 to
    /// [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes), [`SpawnError::NameTaken`],
    /// [`SpawnError::NoSuchShard`], [`SpawnError::NoCapacity`],
    /// [`SpawnError::ForeignComponent`] (another runtime loaded it),
    /// [`SpawnError::Instantiate`], or [`SpawnError::Init`] with the message
    /// `init` returned (or its trap).
    pub fn spawn(
        &self,
        component: &Component,
        options: SpawnOptions,
    ) -> Result<Address, SpawnError> {
        self.ours(component)?;
        let accepts = options
            .accepts
            .as_deref()
            .or(component.accepts())
            .unwrap_or_default();
        let grants = match options.grants {
            Some(grants) => {
                grants.check().map_err(SpawnError::Policy)?;
                Arc::new(grants)
            }
            None => self.config.default_grants.clone(),
        };
        let rate = options.rate.unwrap_or(self.config.default_rate);
        if let Some(rate) = &rate {
            rate.check().map_err(SpawnError::Policy)?;
        }
        let (shard, plan) = self.plan(
            &options.name,
            options.shard,
            options.restart,
            options.group.as_ref(),
        )?;
        let body = SpawnBody::Wasm {
            component: component.clone(),
            config: options.config,
            accepts: crate::slots::accepts_bits(accepts),
            grants,
            rate,
            plan,
        };
        self.spawn_body(&options.name, shard, body)
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
        self.spawn_body(name, shard, SpawnBody::Native(Box::new(actor), None))
    }

    /// Spawns a supervised native actor: `factory` makes its first instance
    /// (here, on the caller's thread) and, after each failure (a panic) within
    /// `restart`'s intensity, a new one on the actor's shard, in place (same
    /// address, name and queued messages; see [`Restart`]). A panic of the
    /// factory during a restart is a failure like any other.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Policy`] for a restart policy out of range, and those of
    /// [`Runtime::spawn_native`].
    pub fn spawn_native_supervised<A, F>(
        &self,
        name: &str,
        shard: Option<usize>,
        restart: Restart,
        factory: F,
    ) -> Result<Address, SpawnError>
    where
        A: NativeActor,
        F: FnMut() -> A + Send + 'static,
    {
        let (shard, plan) = self.plan(name, shard, restart, None)?;
        self.spawn_made(name, shard, plan, factory)
    }

    /// Spawns a native actor into `group` (on its shard), made by `factory`
    /// as for [`Runtime::spawn_native_supervised`] and restarted by the group.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Policy`] for a group of another runtime, and those of
    /// [`Runtime::spawn_native`].
    pub fn spawn_native_in_group<A, F>(
        &self,
        name: &str,
        group: &Group,
        factory: F,
    ) -> Result<Address, SpawnError>
    where
        A: NativeActor,
        F: FnMut() -> A + Send + 'static,
    {
        let (shard, plan) = self.plan(name, None, Restart::never(), Some(group))?;
        self.spawn_made(name, shard, plan, factory)
    }

    fn spawn_made<A, F>(
        &self,
        name: &str,
        shard: Option<usize>,
        plan: Option<Plan>,
        mut factory: F,
    ) -> Result<Address, SpawnError>
    where
        A: NativeActor,
        F: FnMut() -> A + Send + 'static,
    {
        let first: Box<dyn NativeActor> = Box::new(factory());
        let supervision = plan.map(|plan| {
            let factory: Factory = Box::new(move || Box::new(factory()) as Box<dyn NativeActor>);
            (plan, factory)
        });
        self.spawn_body(name, shard, SpawnBody::Native(first, supervision))
    }

    /// How an actor called `name` is supervised, and the shard it goes to: its
    /// own `restart` policy, or `group`'s (on the group's shard).
    fn plan(
        &self,
        name: &str,
        shard: Option<usize>,
        restart: Restart,
        group: Option<&Group>,
    ) -> Result<(Option<usize>, Option<Plan>), SpawnError> {
        let refuse = |why: String| Err(SpawnError::Policy(PolicyError::Restart(why)));
        restart.check().map_err(SpawnError::Policy)?;
        let Some(group) = group else {
            return Ok((shard, restart.restarts().then_some(Plan::Own(restart))));
        };
        if group.runtime != self.directory.id {
            return refuse(format!("group `{}` belongs to another runtime", group.name));
        }
        if restart.restarts() {
            return refuse(format!(
                "`{name}` is a member of group `{}`, which restarts it: it has no policy of its own",
                group.name
            ));
        }
        if shard.is_some_and(|s| s != group.shard) {
            return refuse(format!(
                "`{name}` is a member of group `{}`, whose members live on its shard {}",
                group.name, group.shard
            ));
        }
        Ok((Some(group.shard), Some(Plan::Group(group.index))))
    }

    /// Registers `component` under `name` for actors to spawn
    /// (`wasmshard:actor/lifecycle.spawn`, [`Context::spawn`](crate::Context::spawn));
    /// returns the component it replaces (spawns from then on use the new one;
    /// running actors are untouched). An actor's `spawn` grant names the
    /// components it may spawn by these names.
    ///
    /// # Errors
    ///
    /// [`SpawnError::BadName`] for a name an actor could not have (see
    /// [`MAX_NAME_LEN`](crate::MAX_NAME_LEN)), [`SpawnError::ForeignComponent`]
    /// for a component another runtime loaded.
    pub fn register_component(
        &self,
        name: &str,
        component: &Component,
    ) -> Result<Option<Component>, SpawnError> {
        if let Some(fault) = crate::config::name_fault(name) {
            return Err(SpawnError::BadName(fault));
        }
        self.ours(component)?;
        Ok(self.directory.register_component(name, component.clone()))
    }

    /// Refuses a component another runtime loaded: it was compiled for that
    /// runtime's engine, whose epoch (the CPU budget), instance pool and
    /// limits are not this one's.
    fn ours(&self, component: &Component) -> Result<(), SpawnError> {
        if wasmtime::Engine::same(component.inner.pre.engine(), &self.engine) {
            Ok(())
        } else {
            Err(SpawnError::ForeignComponent(component.inner.name.clone()))
        }
    }

    /// Replaces the component of the component actor at `address` with
    /// `component`, between two of its messages: a new instance runs `init`
    /// with the actor's config first, while the old one stands. If that fails,
    /// the old instance stays and the error says why (rollback). Otherwise the
    /// new instance takes over the address, the name, the grants, the quota,
    /// the queued messages (none lost, none handled twice) and the counters;
    /// the old instance's own open requests and watches are abandoned (the
    /// new `init` cannot cancel them, and the targets forget the watches) and
    /// the requests it held (deferred) end `target-stopped`. The codecs it accepts stay as they
    /// were. A supervised actor's later restarts use the new component; one
    /// waiting for its restart is restarted from it at once (a member of a
    /// one-for-all or rest-for-one group waits for its group's restart, which
    /// makes it from the new component: it never comes back without the
    /// members it restarts with; its new `init` is tried then, and a failure
    /// counts as the group's, not as a rolled-back upgrade).
    ///
    /// # Errors
    ///
    /// [`UpgradeError::UnknownTarget`], [`UpgradeError::Native`],
    /// [`UpgradeError::Init`] (rolled back; or, with
    /// [`SpawnError::ForeignComponent`], refused before anything ran: another
    /// runtime loaded the component), [`UpgradeError::ShuttingDown`],
    /// [`UpgradeError::ShardFailed`], [`UpgradeError::Reentrant`].
    pub fn upgrade(&self, address: Address, component: &Component) -> Result<(), UpgradeError> {
        self.ours(component).map_err(UpgradeError::Init)?;
        if address.shard() >= self.shards() {
            return Err(UpgradeError::UnknownTarget(address));
        }
        if self.directory.is_closing() {
            return Err(UpgradeError::ShuttingDown);
        }
        if shard::on_shard_of(self.directory.id) {
            return Err(UpgradeError::Reentrant);
        }
        let shard = address.shard();
        let (reply, answer) = sync_channel(1);
        self.command(
            shard,
            Command::Upgrade {
                address,
                component: component.clone(),
                reply,
            },
        );
        self.answer(&answer).unwrap_or_else(|| {
            Err(if self.shared.shards[shard].is_dead() {
                UpgradeError::ShardFailed { shard }
            } else {
                UpgradeError::ShuttingDown
            })
        })
    }

    /// Creates a supervision group on `shard` (default: round-robin): members
    /// spawned into it ([`SpawnOptions::group`], [`Runtime::spawn_native_in_group`])
    /// live on that shard and are restarted in place by `strategy` when one
    /// fails, at most `restart.max_restarts` times within its window for the
    /// whole group (with its backoff); the failure beyond that ends every member,
    /// and the group starts over with the members spawned into it later.
    /// The name is a label for reports and logs.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Policy`] for a policy out of range or one that does not
    /// restart ([`Restart::never`]); [`SpawnError::NoSuchShard`],
    /// [`SpawnError::ShuttingDown`], [`SpawnError::ShardFailed`],
    /// [`SpawnError::Reentrant`].
    pub fn create_group(
        &self,
        name: &str,
        strategy: Strategy,
        restart: Restart,
        shard: Option<usize>,
    ) -> Result<Group, SpawnError> {
        restart.check().map_err(SpawnError::Policy)?;
        if !restart.restarts() {
            return Err(SpawnError::Policy(PolicyError::Restart(format!(
                "group `{name}` restarts its members: its policy is on-failure"
            ))));
        }
        if self.directory.is_closing() {
            return Err(SpawnError::ShuttingDown);
        }
        if shard::on_shard_of(self.directory.id) {
            return Err(SpawnError::Reentrant);
        }
        let shard = self.pick_shard(shard)?;
        let name: Arc<str> = name.into();
        let (reply, answer) = sync_channel(1);
        self.command(
            shard,
            Command::CreateGroup {
                name: name.clone(),
                strategy,
                restart,
                reply,
            },
        );
        let index = self.answer(&answer).unwrap_or_else(|| {
            Err(if self.shared.shards[shard].is_dead() {
                SpawnError::ShardFailed { shard }
            } else {
                SpawnError::ShuttingDown
            })
        })?;
        Ok(Group {
            name,
            shard,
            index,
            runtime: self.directory.id,
            _handles: Arc::new(crate::supervision::GroupHandles {
                shared: Arc::downgrade(&self.shared),
                shard,
                index,
            }),
        })
    }

    /// Spawns a native actor that handles messages with `handler` (a closure whose
    /// argument types need no annotations: `|ctx, from, payload| ...`). As
    /// [`Runtime::spawn_native`] with the closure as the actor.
    ///
    /// # Errors
    ///
    /// As [`Runtime::spawn_native`].
    pub fn spawn_handler<F>(
        &self,
        name: &str,
        shard: Option<usize>,
        handler: F,
    ) -> Result<Address, SpawnError>
    where
        F: FnMut(&mut crate::native::Context<'_>, Address, &[u8]) + Send + 'static,
    {
        self.spawn_native(name, shard, handler)
    }

    /// Stops the actor at `address`. Messages still in its mailbox become dead letters;
    /// its name is free again; its address never reaches a later actor.
    ///
    /// An actor spawned from another thread whose shard has not placed it
    /// yet: `Ok` at once, and it is stopped as its shard places it, after
    /// what was sent to it before (if its start fails, there is nothing
    /// left to stop).
    ///
    /// # Errors
    ///
    /// [`StopError::UnknownTarget`] if no live actor has the address.
    pub fn stop(&self, address: Address) -> Result<(), StopError> {
        if address.shard() >= self.shards() {
            return Err(StopError::UnknownTarget(address));
        }
        if shard::on_shard_of(self.directory.id) {
            return Err(StopError::Reentrant);
        }
        let (reply, answer) = sync_channel(1);
        self.command(address.shard(), Command::Stop { address, reply });
        self.answer(&answer).unwrap_or_else(|| {
            // No answer: the shard's thread is gone (its actors failed with it),
            // or the runtime is shutting down.
            Err(if self.shared.shards[address.shard()].is_dead() {
                StopError::UnknownTarget(address)
            } else {
                StopError::ShuttingDown
            })
        })
    }

    /// Sets the quota of the actor at `address` (any actor, native ones
    /// included), or lifts it with `None`. It takes effect from the actor's next
    /// turn, with a full burst.
    ///
    /// # Errors
    ///
    /// [`QuotaError::UnknownTarget`] if no live actor has the address,
    /// [`QuotaError::Invalid`] for a rate out of range.
    pub fn set_rate(&self, address: Address, rate: Option<Rate>) -> Result<(), QuotaError> {
        if let Some(rate) = &rate {
            rate.check().map_err(QuotaError::Invalid)?;
        }
        if address.shard() >= self.shards() {
            return Err(QuotaError::UnknownTarget(address));
        }
        if shard::on_shard_of(self.directory.id) {
            return Err(QuotaError::Reentrant);
        }
        let (reply, answer) = sync_channel(1);
        self.command(
            address.shard(),
            Command::SetRate {
                address,
                rate,
                reply,
            },
        );
        self.answer(&answer).unwrap_or_else(|| {
            Err(if self.shared.shards[address.shard()].is_dead() {
                QuotaError::UnknownTarget(address)
            } else {
                QuotaError::ShuttingDown
            })
        })
    }

    /// Sets a timer from the host: `payload` reaches the actor at `to`
    /// (through `handle-message`, from [`Address::HOST`]) once `delay` has
    /// passed, exactly once unless cancelled, always admitted when due. It
    /// counts against the actor's cap on pending timers
    /// ([`RuntimeBuilder::max_timers`](crate::RuntimeBuilder::max_timers)),
    /// ends with the actor and carries over its supervised restarts and
    /// upgrades. Returns the timer's id, for [`Runtime::cancel_timer`].
    /// Resolution: as a request's timeout (it fires in the first pass of
    /// its shard after it is due; never early).
    ///
    /// # Errors
    ///
    /// [`TimerError::UnknownTarget`], [`TimerError::TooLarge`],
    /// [`TimerError::TooManyTimers`], [`TimerError::ShuttingDown`],
    /// [`TimerError::Reentrant`] from one of the runtime's own actors.
    pub fn schedule(
        &self,
        to: Address,
        delay: Duration,
        payload: &[u8],
    ) -> Result<u64, TimerError> {
        let max = self.directory.max_payload;
        if payload.len() > max {
            return Err(TimerError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        if to.shard() >= self.shards() {
            return Err(TimerError::UnknownTarget(to));
        }
        if shard::on_shard_of(self.directory.id) {
            return Err(TimerError::Reentrant);
        }
        if self.directory.is_closing() {
            return Err(TimerError::ShuttingDown);
        }
        let (reply, answer) = sync_channel(1);
        self.command(
            to.shard(),
            Command::Schedule {
                to,
                delay_ns: u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX),
                payload: crate::envelope::Payload::from_slice(payload),
                reply,
            },
        );
        self.answer(&answer).unwrap_or_else(|| {
            Err(if self.shared.shards[to.shard()].is_dead() {
                TimerError::UnknownTarget(to)
            } else {
                TimerError::ShuttingDown
            })
        })
    }

    /// Offers `payload` to every current subscriber of `topic`, from the host
    /// ([`Address::HOST`]): each subscription's actor admits it at its mailbox
    /// at once or refuses it (a full mailbox, a codec it does not accept),
    /// and the outcome counts both; refusals are counted per topic too
    /// ([`Runtime::topics`]). Subscribers get it through `handle-message`; the
    /// host's messages to one actor keep their order.
    ///
    /// A topic is one or more non-empty segments separated by `.` (no `*`),
    /// at most [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN) bytes. Subscriptions
    /// name a topic or a pattern whose last segment is `*`, which matches one
    /// or more segments (`events.*` matches `events.user` and
    /// `events.user.created`, not `events`); `*` alone matches every topic.
    /// An actor subscribed both by name and by a pattern (or by two patterns)
    /// that match gets each publication once per subscription.
    ///
    /// The host's publication resolves the topic under the registry's lock
    /// (actors' publications use a cache of their own and take no lock).
    ///
    /// # Errors
    ///
    /// [`SendError::UnknownTarget`] for a topic that breaks the grammar,
    /// [`SendError::TooLarge`], [`SendError::ShuttingDown`].
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<PublishOutcome, SendError> {
        if self.directory.is_closing() {
            return Err(SendError::ShuttingDown);
        }
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        crate::topics::checked(topic, false)?;
        let route = self.directory.topics.resolve(topic);
        // One trace per publication (a span per delivery), if sampled.
        let trace = self.directory.sampler.sample().map(|t| t.context);
        Ok(route.offer(&self.directory, payload, self.shards(), |to| {
            let mut env = Envelope::tell(to, Address::HOST, payload);
            env.trace = trace.map(Trace::first_in);
            self.shared.shards[to.shard()].host_send(HostItem::Tell(env));
        }))
    }

    /// Every topic published to or subscribed to (names and patterns), by
    /// name, with its subscriptions now and its counts: publications,
    /// deliveries, refusals.
    pub fn topics(&self) -> Vec<TopicStats> {
        self.directory.topics.stats()
    }

    /// Cancels timer `id` (set by [`Runtime::schedule`], or by an actor);
    /// returns whether it was pending. A cancelled timer never fires.
    ///
    /// # Errors
    ///
    /// [`TimerError::ShuttingDown`], [`TimerError::Reentrant`] from one of
    /// the runtime's own actors.
    pub fn cancel_timer(&self, id: u64) -> Result<bool, TimerError> {
        let shard = crate::requests::shard_of(id);
        if shard >= self.shards() {
            return Ok(false);
        }
        if shard::on_shard_of(self.directory.id) {
            return Err(TimerError::Reentrant);
        }
        let (reply, answer) = sync_channel(1);
        self.command(shard, Command::CancelTimer { id, reply });
        match self.answer(&answer) {
            Some(pending) => Ok(pending),
            None if self.shared.shards[shard].is_dead() => Ok(false),
            None => Err(TimerError::ShuttingDown),
        }
    }

    /// The audit trail: the most recent operations denied by actors' grants
    /// (at most [`RuntimeBuilder::audit_capacity`] of each shard's actors, so
    /// a flood on one shard does not push out another's; oldest first). A target's
    /// name is given while the runtime still knows the actor (live, or among
    /// the ended actors stats keep).
    pub fn audit(&self) -> Vec<Denial> {
        // Each target's name by its address, looked up once per denial (a
        // scan of every actor per denial held each shard's trail, which its
        // actors' denials wait for, for the product of the two). The last
        // actor of an address wins, as in the stats.
        let names: ahash::AHashMap<Address, String> = self
            .shared
            .actor_stats()
            .into_iter()
            .map(|s| (s.address, s.name))
            .collect();
        self.directory.audit(|a| names.get(&a).cloned())
    }

    /// The address registered under `name`.
    pub fn lookup(&self, name: &str) -> Option<Address> {
        self.directory.lookup(name, u64::MAX).ok().flatten()
    }

    /// Sends `payload` from the host ([`Address::HOST`]) to `to`.
    ///
    /// # Errors
    ///
    /// [`SendError::MailboxFull`] at once if the target's mailbox is full,
    /// [`SendError::UnknownTarget`], [`SendError::TooLarge`],
    /// [`SendError::ShuttingDown`].
    pub fn send(&self, to: Address, payload: &[u8]) -> Result<(), SendError> {
        self.send_from_host(to, payload, None)
    }

    /// [`Runtime::send`] as part of the trace `parent` (the host's span that
    /// sends it): the message carries a new span of that trace, whatever the
    /// sampling rate, and so does everything sent while handling it. If
    /// `parent` is not sampled ([`TraceContext::is_sampled`]: its
    /// `traceparent` said so), the message is not traced.
    ///
    /// # Errors
    ///
    /// As [`Runtime::send`].
    pub fn send_traced(
        &self,
        to: Address,
        payload: &[u8],
        parent: TraceContext,
    ) -> Result<(), SendError> {
        self.send_from_host(to, payload, Some(parent))
    }

    fn send_from_host(
        &self,
        to: Address,
        payload: &[u8],
        parent: Option<TraceContext>,
    ) -> Result<(), SendError> {
        if self.directory.is_closing() {
            return Err(SendError::ShuttingDown);
        }
        host_tell(
            &self.directory,
            &self.shared,
            to,
            payload,
            self.host_trace(parent),
        )
    }

    /// The trace a message from the host carries: a child of `parent`, or a
    /// new trace if the sampler draws one.
    #[inline]
    fn host_trace(&self, parent: Option<TraceContext>) -> Option<Box<Trace>> {
        host_trace(&self.directory, parent)
    }

    /// Makes a request from the host to `to`, ending after `timeout` (counted
    /// from the call) for a handle that waits or looks: its target's shard ends
    /// it between two turns, and the handle at its deadline whatever the shard
    /// is doing. The returned handle can be waited on or polled; the request ends
    /// exactly once (reply, `timeout`, `target-failed`, `target-stopped`,
    /// `cancelled`); dropping the handle cancels it (past its deadline, it
    /// times out). The host's tells and requests to one actor arrive in the order
    /// they were made.
    ///
    /// # Errors
    ///
    /// As [`Runtime::send`]: the request is admitted at the target's mailbox at once.
    /// [`SendError::TooManyRequests`] if the host already has as many requests open
    /// as an actor may (`max_open_requests`).
    pub fn request(
        &self,
        to: Address,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<PendingReply, SendError> {
        self.request_from_host(to, payload, timeout, None)
    }

    /// [`Runtime::request`] as part of the trace `parent`, as
    /// [`Runtime::send_traced`] is for a send.
    ///
    /// # Errors
    ///
    /// As [`Runtime::request`].
    pub fn request_traced(
        &self,
        to: Address,
        payload: &[u8],
        timeout: Duration,
        parent: TraceContext,
    ) -> Result<PendingReply, SendError> {
        self.request_from_host(to, payload, timeout, Some(parent))
    }

    fn request_from_host(
        &self,
        to: Address,
        payload: &[u8],
        timeout: Duration,
        parent: Option<TraceContext>,
    ) -> Result<PendingReply, SendError> {
        if self.directory.is_closing() {
            return Err(SendError::ShuttingDown);
        }
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        let cap = self.directory.max_open_requests;
        if self.host_requests.fetch_add(1, Ordering::AcqRel) >= cap {
            self.host_requests.fetch_sub(1, Ordering::AcqRel);
            return Err(SendError::TooManyRequests);
        }
        if let Err(e) = self.directory.admit(to, payload, u64::MAX) {
            self.host_requests.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        let waiter = HostWaiter::new(self.host_requests.clone());
        self.shared.shards[to.shard()].host_send(HostItem::Request(Box::new(HostRequest {
            to,
            payload: Payload::from_slice(payload),
            timeout_ns: u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX),
            waiter: waiter.clone(),
            trace: self.host_trace(parent),
        })));
        Ok(PendingReply {
            waiter,
            shared: Arc::downgrade(&self.shared),
            shard: to.shard(),
            runtime: self.directory.id,
            deadline: Instant::now().checked_add(timeout),
        })
    }

    /// A handle for other threads to send to this runtime's actors and look
    /// up names, without borrowing the runtime (sending on through
    /// shutdown's drain): see [`Handle`].
    pub fn handle(&self) -> Handle {
        Handle {
            directory: self.directory.clone(),
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// The largest payload a send or request admits (the builder's
    /// `max_payload`).
    pub fn max_payload(&self) -> usize {
        self.directory.max_payload
    }

    /// A snapshot of every actor's and shard's counters.
    pub fn stats(&self) -> Stats {
        let actors = self.shared.actor_stats();
        let shards: Vec<_> = self
            .shared
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| s.counters.snapshot(i))
            .collect();
        let dead_letters = shards.iter().map(|s| s.dead_letters).sum();
        Stats {
            actors,
            shards,
            dead_letters,
        }
    }

    /// Blocks until nothing is in flight (every shard parked, every mailbox and ring
    /// empty, no request open, every spawned actor placed on its shard) or
    /// `timeout` passes (a wait that woke shards to place actors they held
    /// goes on up to 100 ms past it for them: placements are not work in
    /// flight). Returns whether the runtime
    /// became idle. A timeout too large to add to the clock waits without limit.
    ///
    /// Called from one of the runtime's own actors (on its shard's thread), where
    /// waiting would deadlock, it returns `false` at once.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        if shard::on_shard_of(self.directory.id) {
            return false;
        }
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
        match &self.driver {
            Driver::Threads(threads) => threads.wait_idle(&self.shared, deadline),
            Driver::Manual(manual) => manual.run_until_idle(&self.directory, deadline),
        }
    }

    /// Shuts down gracefully: refuses new host sends and spawns, waits up to the
    /// drain timeout for in-flight messages to be handled (actors still send and
    /// request while they finish them), then stops every actor (from then on a
    /// guest's `send` or `request` that is refused fails with `shutting-down`, and
    /// what is in flight becomes dead letters), joins every thread, and reports
    /// what could not be delivered.
    ///
    /// A shard stops its actors between two turns: one in the middle of a turn
    /// finishes it first (a component's within its CPU budget; a native
    /// actor's handler, which has none, whenever it returns), so a handler
    /// that never returns holds the shutdown up for ever.
    pub fn shutdown(mut self) -> ShutdownReport {
        let drain = self.config.drain_timeout;
        self.shutdown_inner(drain)
    }

    /// [`Runtime::shutdown`], waiting at most `drain` (instead of the configured
    /// drain timeout) for in-flight messages; `Duration::ZERO` stops every actor
    /// without waiting for what is in flight (each as soon as its shard is
    /// between two turns) and reports that as dead letters.
    pub fn shutdown_within(mut self, drain: Duration) -> ShutdownReport {
        self.shutdown_inner(drain)
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

    fn shutdown_inner(&mut self, drain: Duration) -> ShutdownReport {
        self.down = true;
        self.directory.close();
        if shard::on_shard_of(self.directory.id)
            && let Driver::Threads(threads) = &mut self.driver
        {
            // An actor dropped the last handle to its own runtime: its thread
            // cannot wait for itself.
            self.directory.stop_admitting();
            threads.shutdown_detached(&self.shared, self.directory.durable.clone());
            // Closed: no spawn takes a registered component any more.
            self.directory.clear_components();
            return self.report(false, Vec::new());
        }
        let drained = self.wait_idle(drain);
        // Actors are stopped from here on: a refused send says `shutting-down`.
        self.directory.stop_admitting();
        let dead_letters = match &mut self.driver {
            Driver::Threads(threads) => threads.shutdown(&self.shared),
            Driver::Manual(manual) => manual.shutdown(),
        };
        // Every actor is stopped: what they stored is committed before the
        // runtime is gone.
        if let Some(durable) = &self.directory.durable {
            durable.close();
        }
        // The registered components (each holds the engine, with its instance
        // pool) go now, not with the last `Handle`, which may outlive the
        // runtime by long.
        self.directory.clear_components();
        self.report(drained, dead_letters)
    }
}

/// A tell from the host to `to`, once the runtime is known open: the payload
/// size, then admission at the target's mailbox, then the shard's host queue.
fn host_tell(
    directory: &Directory,
    shared: &Shared,
    to: Address,
    payload: &[u8],
    trace: Option<Box<Trace>>,
) -> Result<(), SendError> {
    if payload.len() > directory.max_payload {
        return Err(SendError::TooLarge);
    }
    directory.admit(to, payload, u64::MAX)?;
    shared.shards[to.shard()].host_send(HostItem::Tell(Envelope {
        to,
        from: Address::HOST,
        kind: Kind::Tell,
        payload: Payload::from_slice(payload),
        trace,
    }));
    Ok(())
}

/// The trace a message from the host carries: a child of `parent`, or a new
/// trace if the sampler draws one.
#[inline]
fn host_trace(directory: &Directory, parent: Option<TraceContext>) -> Option<Box<Trace>> {
    match parent {
        Some(parent) if parent.is_sampled() => Some(Trace::child_of(parent)),
        Some(_) => None,
        None => directory.sampler.sample(),
    }
}

/// A handle to a [`Runtime`] for threads that must not borrow it (a network
/// bridge, a timer wheel of the host's own): it sends to actors as the host
/// does, and looks up names. Cheap to clone; `Send + Sync`.
///
/// It does not keep the runtime running. Unlike the runtime's own host sends,
/// its sends go on through shutdown's drain, as the actors' do (a thread that
/// brings the answers actors wait for keeps bringing them); once the drain is
/// over (or the runtime is dropped), every send through it says
/// [`SendError::ShuttingDown`]. Shutdown waits for the sends already under
/// way then, so a send that returned `Ok` is handled or counted as a dead
/// letter like any host send.
#[derive(Clone)]
pub struct Handle {
    directory: Arc<Directory>,
    shared: std::sync::Weak<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("open", &self.directory.takes_handle_sends())
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Sends `payload` from the host ([`Address::HOST`]) to `to`, as
    /// [`Runtime::send`] does (in order with the host's other sends to `to`).
    ///
    /// # Errors
    ///
    /// As [`Runtime::send`].
    pub fn send(&self, to: Address, payload: &[u8]) -> Result<(), SendError> {
        if !self.directory.enter_handle() {
            return Err(SendError::ShuttingDown);
        }
        let sent = match self.shared.upgrade() {
            Some(shared) => host_tell(
                &self.directory,
                &shared,
                to,
                payload,
                host_trace(&self.directory, None),
            ),
            None => Err(SendError::ShuttingDown),
        };
        self.directory.leave_handle();
        sent
    }

    /// The address registered under `name`, as [`Runtime::lookup`] finds it.
    pub fn lookup(&self, name: &str) -> Option<Address> {
        self.directory.lookup(name, u64::MAX).ok().flatten()
    }

    /// Whether the runtime still takes sends through the handle (shutdown
    /// has not finished its drain).
    pub fn is_open(&self) -> bool {
        self.directory.takes_handle_sends()
    }
}

/// A panic payload that stands for a defect of the runtime's own code, for the
/// project's own tests (the `testing` feature): a native actor's handler that
/// panics with it (`std::panic::panic_any(RuntimeDefect)`) is not contained as
/// the actor's failure but unwinds into the shard's loop, as a panic of the
/// runtime during the call would.
#[cfg(feature = "testing")]
#[doc(hidden)]
#[derive(Debug)]
pub struct RuntimeDefect;

/// Fault injection for the project's own tests (the `testing` feature).
#[cfg(feature = "testing")]
impl Runtime {
    /// Makes shard `shard`'s loop panic when it next takes its control queue, as a
    /// defect of the runtime would: the tests of what a failed shard does.
    #[doc(hidden)]
    pub fn inject_shard_panic(&self, shard: usize) {
        self.command(shard, Command::Panic);
    }

    /// Makes the durable store's next commit fail, as a full disk would
    /// (nothing without a storage directory).
    #[doc(hidden)]
    pub fn inject_storage_failure(&self) {
        if let Some(durable) = &self.directory.durable {
            durable
                .fail_next
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Makes spawns from the host (on a runtime with threads) wait, once their
    /// actor has started (or its `init` failed), before handing it to its
    /// shard (or asking the shard to undo it), until called again
    /// with `false`: the tests of what arrives for an actor its shard has not
    /// placed yet.
    #[doc(hidden)]
    pub fn hold_placements(&self, hold: bool) {
        self.shared.hold_placements(hold);
    }
}

/// Driving a manual runtime (built with [`RuntimeBuilder::build_manual`]).
impl Runtime {
    /// Runs one pass of the shard loop on every shard that has something to do,
    /// in shard order, on the calling thread: host sends and cross-shard rings
    /// into mailboxes, due timeouts, up to 256 actor turns (taking the host
    /// sends and rings again every 16), overflow flushed.
    /// Never blocks. Returns whether any shard had something to do.
    ///
    /// Called from one of the runtime's own actors (a handler, or a native
    /// actor's `Drop`), where the shards are already running, it does nothing
    /// and returns `false`.
    ///
    /// # Panics
    ///
    /// If the runtime runs its own threads (built with [`RuntimeBuilder::build`]).
    pub fn step(&self) -> bool {
        let manual = self.manual("step");
        if shard::on_shard_of(self.directory.id) {
            return false;
        }
        manual.step()
    }

    /// Steps every shard until none has anything to do now; returns the passes
    /// that did something. Open requests whose deadlines are still ahead stay
    /// open (see [`Runtime::wait_idle`] to wait for them too). The order in which
    /// actors run depends only on what was sent, so the same inputs give the same
    /// run. Called from one of the runtime's own actors, it does nothing and
    /// returns 0 (as [`Runtime::step`]).
    ///
    /// # Panics
    ///
    /// As [`Runtime::step`].
    pub fn run_until_stalled(&self) -> u64 {
        let manual = self.manual("run_until_stalled");
        if shard::on_shard_of(self.directory.id) {
            return 0;
        }
        let mut passes = 0;
        while manual.step() {
            passes += 1;
        }
        passes
    }

    /// Whether this runtime was built with [`RuntimeBuilder::build_manual`].
    pub fn is_manual(&self) -> bool {
        matches!(self.driver, Driver::Manual(_))
    }

    fn manual(&self, what: &str) -> &Manual {
        match &self.driver {
            Driver::Manual(manual) => manual,
            Driver::Threads(_) => panic!(
                "Runtime::{what} drives a manual runtime (RuntimeBuilder::build_manual); \
                 this one runs its own shard threads"
            ),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.down {
            let drain = self.config.drain_timeout;
            self.shutdown_inner(drain);
        }
    }
}

/// How to spawn an actor: its unique name, the bytes its `init` receives, and
/// optionally the shard to put it on (default: round-robin).
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    name: String,
    config: Vec<u8>,
    shard: Option<usize>,
    accepts: Option<Vec<crate::codec::Codec>>,
    grants: Option<Grants>,
    rate: Option<Option<Rate>>,
    restart: Restart,
    group: Option<Group>,
}

impl SpawnOptions {
    /// Options for an actor called `name`, with empty config, on any shard.
    pub fn new(name: impl Into<String>) -> SpawnOptions {
        SpawnOptions {
            name: name.into(),
            config: Vec::new(),
            shard: None,
            accepts: None,
            grants: None,
            rate: None,
            restart: Restart::never(),
            group: None,
        }
    }

    /// Spawns it into a supervision group (on the group's shard), which
    /// restarts it (see [`Runtime::create_group`]). A member has no restart
    /// policy of its own.
    pub fn group(mut self, group: &Group) -> SpawnOptions {
        self.group = Some(group.clone());
        self
    }

    /// How the actor is supervised (see [`Restart`]). Default: [`Restart::never`].
    pub fn restart(mut self, restart: Restart) -> SpawnOptions {
        self.restart = restart;
        self
    }

    /// What the actor may reach (see [`Grants`]). Default: the runtime's
    /// [`RuntimeBuilder::default_grants`], which is [`Grants::none`] unless set.
    pub fn grants(mut self, grants: Grants) -> SpawnOptions {
        self.grants = Some(grants);
        self
    }

    /// The actor's quota (`None`: unlimited). Default: the runtime's
    /// [`RuntimeBuilder::default_rate`], which is none unless set.
    pub fn rate(mut self, rate: Option<Rate>) -> SpawnOptions {
        self.rate = Some(rate);
        self
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

    /// The codecs the actor accepts: a tell or request whose payload does not
    /// start with one of their prefixes fails at admission with
    /// [`SendError::UnsupportedCodec`], for every sender. Overrides what the
    /// component declares (its `wasmshard:accepts` section); an empty list
    /// accepts any payload. Default: what the component declares, or any payload.
    pub fn accepts(
        mut self,
        codecs: impl IntoIterator<Item = crate::codec::Codec>,
    ) -> SpawnOptions {
        self.accepts = Some(codecs.into_iter().collect());
        self
    }
}

/// The bytes of the component file at `path` (`name` in errors), at most
/// [`MAX_COMPONENT_SIZE`](crate::MAX_COMPONENT_SIZE) of them.
fn read_component_file(path: &Path, name: &str) -> Result<Vec<u8>, LoadError> {
    component::read_at_most(path, component::MAX_COMPONENT_SIZE)
        .map_err(|e| LoadError::wrap("cannot read", e).in_file(name))
}
