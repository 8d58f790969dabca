//! What the shard threads, the host and the epoch ticker touch together: each
//! shard's handle (its waker, parked flag, host and control queues, published
//! counters), the rings between shards, the actor registry, and the state of the
//! ticker and of threads waiting for idle.
//!
//! Who writes each field, who reads it, and with which ordering:
//!
//! | field | written by | read by | ordering |
//! |---|---|---|---|
//! | `ShardHandle::parked` | its shard (set before parking, cleared after); a waker (swap to false) | senders deciding whether to wake it; idle checks | SeqCst, paired with a SeqCst fence after the sender publishes work |
//! | `ShardHandle::waker` | — | any thread that pushed work for the shard and saw it parked | an `eventfd` write |
//! | `ShardHandle::host_inbox` | the host (push: tells, requests, cancels, in call order) | its shard (pop) | `SegQueue`, MPMC |
//! | `ShardHandle::host_out` | the host, before each push | idle checks | SeqCst RMW |
//! | `ShardHandle::control` | the host (push: spawn, stop, shutdown), a manual runtime's caller (pop) | its shard (pop) | `SegQueue`, MPMC |
//! | `ShardHandle::control_out` | the host, before each push | idle checks | SeqCst RMW |
//! | `ShardHandle::counters` | its shard, once per pass and before parking | `Runtime::stats`, idle checks | Relaxed stores; a reader may lag one pass |
//! | `mesh` ring `from → to` | shard `from` (allocates on first push, then pushes) | shard `to` (pop) | `OnceLock` (Release/Acquire) for the allocation; `ring::Ring`, SPSC: each slot's stamp handed over with Release/Acquire |
//! | `actors` | shards (spawn registers, removal retires) | `Runtime::stats` | `Mutex` (spawn, stop, failure and stats only) |
//! | `active` | every shard (decrement before parking, increment after); a spawn's thread around the `init` it runs | the ticker | SeqCst RMW |
//! | `ticker` | the runtime, once, at start | shards waking it | `OnceLock` |
//! | `ticker_stop` | the runtime, at shutdown | the ticker | SeqCst |
//! | `ShardHandle::dead` | its shard's thread, once, when it gives up | whoever pushes a command | SeqCst, paired with a SeqCst fence on each side |
//! | `idle_waiters`, `idle_waiter` | threads in `wait_idle` | shards about to park (they unpark the waiters) | SeqCst count; `Mutex` list taken only when the count is non-zero |
//! | `ticks` | the ticker, once per tick while a shard is busy | shards, between turns and messages | Relaxed: a coarse clock, late by up to a tick |
//!
//! Nothing here is touched per message but the rings (and, for a parked target,
//! its `parked` flag and waker).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use std::collections::VecDeque;

use ahash::AHashMap;
use crossbeam_queue::SegQueue;

use crate::address::Address;
use crate::component::Component;
use crate::envelope::{Envelope, Payload};
use crate::error::{QuotaError, SpawnError, StopError, TimerError, UpgradeError};
use crate::grants::{Grants, Rate};
use crate::native::NativeActor;
use crate::reply::HostWaiter;
use crate::ring::{Mesh, Ring};
use crate::stats::{ActorInfo, RETAINED_ENDED_ACTORS, ShardCounters};
use crate::supervision::{Factory, Plan, Restart, Strategy};

/// What an actor is spawned from.
pub(crate) enum SpawnBody {
    Wasm {
        component: Component,
        config: Vec<u8>,
        /// The codecs the actor accepts ([`wasmshard_codec::Codec::bit`]s; 0: any).
        accepts: u8,
        /// What it may reach.
        grants: Arc<Grants>,
        /// Its quota.
        rate: Option<Rate>,
        /// How it is supervised (`None`: it is not).
        plan: Option<Plan>,
    },
    /// A native actor, and how it is supervised (`None`: it is not) and
    /// remade.
    Native(Box<dyn NativeActor>, Option<(Plan, Factory)>),
}

/// Work the host hands a shard through its control queue (and waits for).
pub(crate) enum Command {
    Spawn {
        name: Arc<str>,
        body: SpawnBody,
        reply: SyncSender<Result<Address, SpawnError>>,
    },
    /// An actor the host started off the shard (`placement`), to place; or
    /// whose start failed, to undo. Answered only if `reply` is given.
    Place {
        placement: Box<crate::placement::Placement>,
        reply: Option<SyncSender<Result<Address, SpawnError>>>,
    },
    /// An `init` running off the shard needs the shard's request table: the
    /// shard lends it through `give` and waits on `back` for it, with the
    /// started actor to place.
    Lend {
        give: SyncSender<Box<crate::requests::Requests>>,
        back: std::sync::mpsc::Receiver<crate::placement::Returned>,
    },
    Stop {
        address: Address,
        reply: SyncSender<Result<(), StopError>>,
    },
    /// Sets (or, with `None`, lifts) an actor's quota.
    SetRate {
        address: Address,
        rate: Option<Rate>,
        reply: SyncSender<Result<(), QuotaError>>,
    },
    /// Replaces a component actor's component (between two messages).
    Upgrade {
        address: Address,
        component: Component,
        reply: SyncSender<Result<(), UpgradeError>>,
    },
    /// Creates a supervision group on the shard; answers its index.
    CreateGroup {
        name: Arc<str>,
        strategy: Strategy,
        restart: Restart,
        reply: SyncSender<Result<u32, SpawnError>>,
    },
    /// The last handle to group `index` (of this shard) was dropped: it goes
    /// once it has no members.
    DropGroup { index: u32 },
    /// Sets a timer for the actor `to`, from the host.
    Schedule {
        to: Address,
        delay_ns: u64,
        payload: Payload,
        reply: SyncSender<Result<u64, TimerError>>,
    },
    /// Cancels timer `id` (of this shard); answers whether it was pending.
    CancelTimer { id: u64, reply: SyncSender<bool> },
    /// Shutdown, phase one: stop every actor; from now on whatever arrives is a
    /// dead letter.
    StopAll { reply: SyncSender<()> },
    /// Shutdown, phase two (once every shard has stopped its actors): push nothing
    /// more into any ring; what waits in the overflow becomes dead letters.
    Seal { reply: SyncSender<()> },
    /// Shutdown, phase three (once every shard is sealed, so nothing more can
    /// arrive): drain what is left as dead letters and end the thread.
    Exit,
    /// A deliberate panic of the shard's thread, for the tests of what happens
    /// when a shard fails.
    #[cfg(feature = "testing")]
    Panic,
}

impl Command {
    /// The actor a host command acts on that waits for the actor's placement
    /// (a rate, an upgrade, a timer), if it is one.
    pub(crate) fn waits_for(&self) -> Option<Address> {
        match self {
            Command::SetRate { address, .. } | Command::Upgrade { address, .. } => Some(*address),
            Command::Schedule { to, .. } => Some(*to),
            _ => None,
        }
    }
}

/// What the host hands a shard, in one queue so that the host's messages to one
/// actor (tells and requests alike) arrive in the order it sent them.
pub(crate) enum HostItem {
    /// A message, already admitted at its target.
    Tell(Envelope),
    /// A request, already admitted at its target (an actor of this shard); opened
    /// here. Boxed, so an item is no larger than an envelope.
    Request(Box<HostRequest>),
    /// The host dropped the handle of a request it made through this shard.
    Cancel(Arc<HostWaiter>),
}

/// A request from the host.
pub(crate) struct HostRequest {
    pub(crate) to: Address,
    pub(crate) payload: Payload,
    pub(crate) timeout_ns: u64,
    pub(crate) waiter: Arc<HostWaiter>,
    pub(crate) trace: Option<Box<crate::trace::Trace>>,
}

/// Placements a parked shard may hold before a lazy one wakes it (see
/// [`ShardHandle::command_lazily`]).
pub(crate) const LAZY_PLACEMENTS: u64 = 1024;

/// What other threads may touch of one shard.
pub(crate) struct ShardHandle {
    pub(crate) waker: mio::Waker,
    pub(crate) parked: AtomicBool,
    /// The shard's thread has given up (it panicked again and again): nobody
    /// takes its control queue, so whoever pushes a command takes it back.
    pub(crate) dead: AtomicBool,
    /// The shard failed (its loop panicked): it runs no actor from now on,
    /// and spawns to it fail at once.
    pub(crate) failed: AtomicBool,
    pub(crate) host_inbox: SegQueue<HostItem>,
    pub(crate) host_out: AtomicU64,
    pub(crate) control: SegQueue<Command>,
    pub(crate) control_out: AtomicU64,
    /// The shard parked holding what arrived for actors it has not placed yet
    /// (set as it parks): a placement then wakes it, even one that needs
    /// nothing of the shard itself (see [`ShardHandle::command_lazily`]).
    pub(crate) holds_unplaced: AtomicBool,
    pub(crate) counters: ShardCounters,
}

impl ShardHandle {
    pub(crate) fn new(waker: mio::Waker) -> ShardHandle {
        ShardHandle {
            waker,
            parked: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            host_inbox: SegQueue::new(),
            host_out: AtomicU64::new(0),
            control: SegQueue::new(),
            control_out: AtomicU64::new(0),
            holds_unplaced: AtomicBool::new(false),
            counters: ShardCounters::default(),
        }
    }

    /// Wakes the shard if it is parked. Callers issue a `SeqCst` fence (or a `SeqCst`
    /// read-modify-write) after publishing work and before calling this.
    #[inline]
    pub(crate) fn wake(&self) {
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    /// Hands the shard a control command and wakes it. If the shard's thread is
    /// dead, the command is dropped instead (its reply channel closes, so whoever
    /// waits for the answer learns at once).
    pub(crate) fn command(&self, cmd: Command) {
        if self.push_command(cmd) {
            self.wake();
        }
    }

    /// Hands the shard a placement that needs nothing of it until something
    /// else does, without waking it if it is parked: a started actor whose
    /// `init` left nothing for the shard to do (see `placement`). The shard
    /// takes it before anything else once it wakes (every pass begins with
    /// the commands), so what is sent to the actor, any command for it, and
    /// shutdown find it placed (on a busy shard, what it takes from its
    /// queues in the middle of a pass before that waits for the placement,
    /// in order); `wait_idle` wakes a parked shard that holds
    /// commands (see [`Shared::wake_holding`]). A parked shard that holds
    /// what arrived for actors not placed yet (the placement's, perhaps) is
    /// woken, and so is one left with [`LAZY_PLACEMENTS`] commands to take
    /// (what waits is memory held: placements taken in batches free theirs
    /// in batches). A burst of spawns therefore wakes a parked shard once per
    /// that many, and leaves the cores to the spawning thread between.
    pub(crate) fn command_lazily(&self, cmd: Command) {
        if !self.push_command(cmd) {
            return;
        }
        // Pairs with `Shard::park`, which sets `holds_unplaced` before it
        // says it is parked and looks at its queues once more: either it
        // sees this command, or this sees the flag it set.
        if self.commands_waiting() >= LAZY_PLACEMENTS || self.holds_unplaced.load(Ordering::SeqCst)
        {
            self.wake();
        }
    }

    /// Commands queued that the shard has not taken yet (as far as it has
    /// published what it took).
    fn commands_waiting(&self) -> u64 {
        self.control_out
            .load(Ordering::SeqCst)
            .saturating_sub(self.counters.control_in.get())
    }

    /// Queues a command; whether the shard's thread lives to take it.
    fn push_command(&self, cmd: Command) -> bool {
        self.control_out.fetch_add(1, Ordering::SeqCst);
        self.control.push(cmd);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.is_dead() {
            // Pairs with the fence in `bury`: either the dying thread drains this
            // command, or we see it dead and drain it ourselves.
            self.drain_commands();
            return false;
        }
        true
    }

    /// Drops every queued command (their waiters see their channels close).
    pub(crate) fn drain_commands(&self) {
        while self.control.pop().is_some() {}
    }

    /// Whether the shard's thread has given up (commands to it go unanswered).
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Whether the shard has failed (or its thread has given up).
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst) || self.is_dead()
    }

    /// The shard's thread gives up: from now on commands are dropped on arrival.
    pub(crate) fn bury(&self) {
        self.dead.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.drain_commands();
    }

    /// Hands the shard a message, request or cancel from the host and wakes it.
    pub(crate) fn host_send(&self, item: HostItem) {
        self.host_out.fetch_add(1, Ordering::SeqCst);
        self.host_inbox.push(item);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.wake();
    }
}

/// See the module docs.
pub(crate) struct Shared {
    pub(crate) shards: Box<[ShardHandle]>,
    mesh: Mesh,
    actors: Mutex<Registry>,
    /// Shards not parked; the epoch ticker sleeps while this is zero.
    active: AtomicUsize,
    /// Epoch ticks so far, counted by the ticker while some shard is busy: the
    /// coarse clock by which a shard bounds the length of a pass.
    /// (Shared with the directory, whose outboxes read it too.)
    ticks: Arc<AtomicU64>,
    ticker: OnceLock<Thread>,
    /// The ticker sleeps with no time-out (every shard was parked): the
    /// shard that wakes first wakes it. (While it waits out a tick, nothing
    /// wakes it: a wake-up there would cut the tick short, and cost the
    /// waking shard a system call.)
    ticker_asleep: AtomicBool,
    ticker_stop: AtomicBool,
    idle_waiters: AtomicUsize,
    idle_waiter: Mutex<Vec<Thread>>,
    /// Set by a test: spawns off the shard wait, their actors started, before
    /// handing them to their shard (see `Runtime::hold_placements`).
    #[cfg(feature = "testing")]
    placement_gate: (Mutex<bool>, std::sync::Condvar),
}

impl Shared {
    pub(crate) fn new(
        shards: Vec<ShardHandle>,
        ring_capacity: usize,
        ticks: Arc<AtomicU64>,
    ) -> Shared {
        let n = shards.len();
        Shared {
            shards: shards.into_boxed_slice(),
            mesh: Mesh::new(n, ring_capacity),
            actors: Mutex::new(Registry::default()),
            active: AtomicUsize::new(n),
            ticks,
            ticker: OnceLock::new(),
            ticker_asleep: AtomicBool::new(false),
            ticker_stop: AtomicBool::new(false),
            idle_waiters: AtomicUsize::new(0),
            idle_waiter: Mutex::new(Vec::new()),
            #[cfg(feature = "testing")]
            placement_gate: (Mutex::new(false), std::sync::Condvar::new()),
        }
    }

    /// Holds (or lets go of) spawns off the shard before they hand their
    /// started actors over.
    #[cfg(feature = "testing")]
    pub(crate) fn hold_placements(&self, hold: bool) {
        *lock(&self.placement_gate.0) = hold;
        self.placement_gate.1.notify_all();
    }

    /// Waits while placements are held.
    #[cfg(feature = "testing")]
    pub(crate) fn placement_gate(&self) {
        let mut held = lock(&self.placement_gate.0);
        while *held {
            held = self
                .placement_gate
                .1
                .wait(held)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The ring from shard `from` to shard `to`, to push to. Shard `from` only.
    #[inline]
    pub(crate) fn outbound(&self, from: usize, to: usize) -> &Ring {
        self.mesh.outbound(from, to)
    }

    /// The ring from shard `from` to shard `to`, to pop from, if it exists. Shard
    /// `to` only.
    #[inline]
    pub(crate) fn inbound(&self, from: usize, to: usize) -> Option<&Ring> {
        self.mesh.inbound(from, to)
    }

    /// Records a spawned actor for [`crate::Runtime::stats`].
    pub(crate) fn register_actor(&self, info: Arc<ActorInfo>) {
        let mut r = lock(&self.actors);
        let seq = r.spawned;
        r.spawned += 1;
        r.live.insert(info.address, (seq, info));
    }

    /// The actor at `address` has ended: it stays in the stats among the most
    /// recent ended ones.
    pub(crate) fn retire_actor(&self, address: Address) {
        let mut r = lock(&self.actors);
        if let Some(entry) = r.live.remove(&address) {
            if r.ended.len() == RETAINED_ENDED_ACTORS {
                r.ended.pop_front();
            }
            r.ended.push_back(entry);
        }
    }

    /// Snapshots of the live actors and the most recent ended ones, in spawn order.
    ///
    /// Only the list is taken under the registry's lock (which a shard placing
    /// an actor takes too); the snapshots (names, failures, counters) are
    /// read after it is let go.
    pub(crate) fn actor_stats(&self) -> Vec<crate::stats::ActorStats> {
        let mut all: Vec<(u64, Arc<ActorInfo>)> = {
            let r = lock(&self.actors);
            r.live.values().chain(r.ended.iter()).cloned().collect()
        };
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, info)| info.snapshot()).collect()
    }

    /// Epoch ticks so far (zero for ever on a manual runtime, which has no ticker).
    #[inline]
    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// One more tick. Ticker only.
    pub(crate) fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// The epoch ticker's thread, to wake when a shard becomes busy.
    pub(crate) fn set_ticker(&self, ticker: Thread) {
        let _ = self.ticker.set(ticker);
    }

    /// Whether every shard is parked (the ticker then sleeps).
    pub(crate) fn all_parked(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0
    }

    /// The ticker's sleep while every shard is parked: until a shard wakes
    /// (or the ticker is stopped). Returns at once if one is busy by the time
    /// the ticker says it sleeps.
    pub(crate) fn ticker_sleep(&self) {
        self.ticker_asleep.store(true, Ordering::SeqCst);
        // Pairs with `shard_busy`: either this sees the shard busy, or the
        // shard sees the ticker asleep and unparks it (an unpark before the
        // park is kept for it).
        if self.all_parked() && !self.ticker_stopped() {
            std::thread::park();
        }
        self.ticker_asleep.store(false, Ordering::SeqCst);
    }

    pub(crate) fn ticker_stopped(&self) -> bool {
        self.ticker_stop.load(Ordering::SeqCst)
    }

    /// Tells the ticker to end and wakes it.
    pub(crate) fn stop_ticker(&self) {
        self.ticker_stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.get() {
            t.unpark();
        }
    }

    /// A shard is about to park.
    pub(crate) fn shard_idle(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        if self.idle_waiters.load(Ordering::SeqCst) > 0 {
            for t in lock(&self.idle_waiter).iter() {
                t.unpark();
            }
        }
    }

    /// A shard woke up (or a spawn runs an `init` off the shards). The first
    /// to be busy wakes the ticker if it sleeps (see `ticker_sleep`).
    pub(crate) fn shard_busy(&self) {
        if self.active.fetch_add(1, Ordering::SeqCst) == 0
            && self.ticker_asleep.load(Ordering::SeqCst)
            && let Some(t) = self.ticker.get()
        {
            t.unpark();
        }
    }

    /// Registers the calling thread to be unparked whenever a shard parks; undone
    /// by [`Shared::unwatch_idle`].
    pub(crate) fn watch_idle(&self) {
        self.idle_waiters.fetch_add(1, Ordering::SeqCst);
        lock(&self.idle_waiter).push(std::thread::current());
    }

    pub(crate) fn unwatch_idle(&self) {
        let me = std::thread::current().id();
        let mut waiters = lock(&self.idle_waiter);
        if let Some(i) = waiters.iter().position(|t| t.id() == me) {
            waiters.swap_remove(i);
        }
        self.idle_waiters.fetch_sub(1, Ordering::SeqCst);
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
            drained &= hi == ho
                && ci == co
                && c.open_requests() == 0
                && c.overflow.get() == 0
                && c.restarting() == 0;
            for v in [o, i, hi, ho, ci, co, c.loops.get()] {
                digest = digest.rotate_left(7) ^ v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
        }
        (parked, out, inn, drained, digest)
    }

    /// Wakes every parked shard that holds commands it has not taken (a
    /// placement queued lazily, see [`ShardHandle::command_lazily`]), so that
    /// a wait for idleness ends. Returns whether it woke any.
    pub(crate) fn wake_holding(&self) -> bool {
        let mut woke = false;
        for s in self.shards.iter() {
            if s.parked.load(Ordering::SeqCst) && s.commands_waiting() > 0 {
                s.wake();
                woke = true;
            }
        }
        woke
    }

    /// Whether nothing is in flight: every shard parked, every envelope that was
    /// pushed anywhere taken out again, and nothing changed while we looked.
    pub(crate) fn is_idle(&self) -> bool {
        let a = self.idle_summary();
        if !a.0 {
            return false;
        }
        let b = self.idle_summary();
        a == b && a.1 == a.2 && a.3
    }
}

/// The actors `Runtime::stats` reports: every live one, and the most recent that
/// ended; each with its spawn number, for the order.
#[derive(Default)]
struct Registry {
    spawned: u64,
    live: AHashMap<Address, (u64, Arc<ActorInfo>)>,
    ended: VecDeque<(u64, Arc<ActorInfo>)>,
}

/// Locks `m`, going on with the data if a panicking thread poisoned it (every
/// structure behind a lock here stays consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
