//! One shard: a thread that owns its actors and runs them.
//!
//! Loop: take control commands; drain the host inbox and the inbound rings into
//! mailboxes; run ready actors round-robin, at most `batch` messages each per turn;
//! flush overflow to other shards' rings and wake parked targets; with nothing to
//! do, announce parking, re-check every inbound queue, and sleep in `poll`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use crate::actor::{Actor, Body, InitEnd, Unstarted, WasmActor, WasmSettings};
use crate::address::Address;
use crate::component::Component;
use crate::config::Config;
use crate::directory::Directory;
use crate::envelope::{Envelope, Kind, deadline_ms};
use crate::error::{
    Failure, FailureKind, QuotaError, RequestError, SpawnError, StopError, TimerError, UpgradeError,
};
use crate::grants::Bucket;
use crate::grants::PolicyError;
use crate::outbox::{Child, Outbox};
use crate::panics::quietly;
use crate::parking::Spin;
use crate::placement::{self, Placement, Returned};
use crate::requests::{self, Expired, Requests, Waiter};
use crate::shared::{Command, HostItem, HostRequest, ShardHandle, Shared, SpawnBody};
use crate::slots::SlotTable;
use crate::stats::{ActorInfo, DeadLetter, DeadLetterReason, ShardStats};
use crate::supervision::{GroupState, Intensity, Judge, Maker, Strategy, Supervisor, Verdict};
use crate::sys::Parker;

/// Most dead letters a shard keeps for the shutdown report; the rest are counted.
const DEAD_LETTER_SAMPLES: usize = 1024;
/// Payload bytes a shard keeps whole in those: past them, a kept dead letter
/// keeps the first [`DEAD_LETTER_CUT`] bytes of its payload (so a guest's
/// largest messages do not hold 1 024 × the maximum payload until shutdown).
const DEAD_LETTER_SAMPLE_BYTES: usize = 1 << 20;
/// What a dead letter kept past [`DEAD_LETTER_SAMPLE_BYTES`] keeps of its payload.
const DEAD_LETTER_CUT: usize = 64;
/// The most bytes of frames one `handle-messages` call of a batched actor
/// gets (12 bytes of header per message included): the default maximum
/// payload. A message that would take a batch past it starts the next one,
/// and one that could not share a call with another goes through
/// `handle-message` alone, so with the default maximum payload a batch never
/// needs more guest memory than one message may.
pub const BATCH_BYTES: usize = 64 * 1024;
/// A frame's header for `handle-messages`: `[from: u64 LE][len: u32 LE]`.
const FRAME_HEADER: usize = 12;
/// Turns in one pass, at most.
const MAX_TURNS: u32 = 256;
/// Turns between two looks at the host queue and the inbound rings within a
/// pass: a look costs about as much as a short turn's bookkeeping.
const LOOK_TURNS: u32 = 16;
/// Ticks a pass may run before it ends (between two turns or two messages), so
/// that timers, control commands and inbound rings are serviced: a pass lasts at
/// most two epoch ticks, plus the invocation running when they pass.
const PASS_TICKS: u64 = 2;

/// Looks at its queues a spinning shard takes between two readings of the
/// clock (a reading costs several times a look at empty queues).
const SPIN_POLLS: u32 = 16;
/// Panics a shard's thread survives before it gives up.
const MAX_PANICS: u32 = 16;
/// The shortest and longest sleep of a shard waiting for a full ring to drain.
const MIN_BACKOFF: Duration = Duration::from_micros(10);
const MAX_BACKOFF: Duration = Duration::from_millis(1);
/// Actors a shard removes before, about to sleep, it has the allocator give
/// free pages back (see `sys::trim_heap`).
const TRIM_AFTER: u32 = 1024;

thread_local! {
    /// The runtime (by its directory's id) the current thread is running a pass
    /// of a shard of, innermost, if any: calls into that runtime that would
    /// wait for a shard refuse instead of deadlocking.
    static ON_SHARD: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    /// The runtimes of the passes that one runs inside, outermost first
    /// (empty unless a handler of one runtime steps another: a call back into
    /// an outer one must refuse too).
    static OUTER_SHARDS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether the current thread is running a pass of a shard of the runtime `id`
/// (inside one of its actors' handlers), however deeply nested in passes of
/// other runtimes.
pub(crate) fn on_shard_of(runtime: u64) -> bool {
    match ON_SHARD.with(std::cell::Cell::get) {
        None => false,
        Some(r) if r == runtime => true,
        Some(_) => OUTER_SHARDS.with(|o| o.borrow().contains(&runtime)),
    }
}

/// Runs `f` as a pass of a shard of runtime `runtime` for [`on_shard_of`].
/// (The runtimes it was already running passes of stay, and it is taken off
/// however `f` ends.)
pub(crate) fn as_shard<R>(runtime: u64, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ON_SHARD.with(|c| c.set(self.0));
            if self.0.is_some() {
                OUTER_SHARDS.with(|o| o.borrow_mut().pop());
            }
        }
    }
    let outer = ON_SHARD.with(|c| c.replace(Some(runtime)));
    if let Some(outer) = outer {
        OUTER_SHARDS.with(|o| o.borrow_mut().push(outer));
    }
    let _restore = Restore(outer);
    f()
}

/// The earlier addresses of the dead-letter actor that are remembered, so
/// that a letter forwarded to one of them, gone since, is not forwarded again.
const PAST_DEAD_LETTER_ACTORS: usize = 64;

/// What a shard thread hands back when it ends.
pub(crate) struct ShardExit {
    pub(crate) dead_letters: Vec<DeadLetter>,
}

pub(crate) struct Shard {
    id: usize,
    shared: Arc<Shared>,
    directory: Arc<Directory>,
    wasm: WasmSettings,
    /// Messages an actor handles per turn.
    batch: u32,
    /// How long the shard looks for work before it parks (adaptive).
    spin: Spin,
    pin_core: bool,
    parker: Parker,
    /// The actors by slot (grown as slots are first used; the free slots are
    /// the directory's `pool` of this shard).
    actors: Vec<Option<Actor>>,
    /// Children spawned by actors, waiting to start (see `place_children`):
    /// started as the pass's time allows, the rest in later passes. By
    /// family (the children one invocation spawned, and theirs), taking
    /// turns, so that a family of thousands of slow starters does not hold
    /// back the children other actors spawn after it.
    children: VecDeque<VecDeque<Child>>,
    /// A child whose `init` just failed, while what waited for it ends: as
    /// for a failed actor (`target-failed`), not a stopped one.
    start_failed: Option<Address>,
    /// The last pass ran out of time with timers or deadlines still due: the
    /// loop goes on rather than park.
    due_left: bool,
    ready: VecDeque<u32>,
    /// Envelopes for shard `i` that did not fit its ring, in order.
    overflow: Vec<VecDeque<Envelope>>,
    /// Envelopes waiting in `overflow`, all destinations together.
    overflowing: usize,
    /// Actors removed since the allocator last gave free pages back.
    removed_since_trim: u32,
    /// Shards whose ring this turn pushed to (to wake them if parked).
    touched: Vec<bool>,
    /// Shutting down (or failed): no actor runs, whatever arrives is a dead letter.
    stopping: bool,
    /// Shutdown, phase two on: nothing more goes into any ring.
    sealed: bool,
    /// The shard's loop panicked; it runs stopped from then on.
    failed: bool,
    /// How long to sleep when only overflow is left and the last flush moved
    /// nothing (grows while that lasts).
    backoff: Duration,
    /// The tick (`Shared::ticks`) by which the current pass ends.
    pass_end_tick: u64,
    /// The clock as the park's spin last read it when it caught an envelope
    /// (at most `SPIN_POLLS` looks before), with the epoch tick it was read
    /// in: the hop goes by it rather than read the clock again (see `hop`).
    spun_clock: Option<(u64, u64)>,
    /// The envelope the park's spin took from a ring (`from`, the envelope)
    /// when it found one: the next drain delivers it first, ahead of the rest
    /// of that ring (`pop_inbound`).
    caught: Option<(usize, Envelope)>,
    /// Open requests made from this shard; lent to the actor being invoked.
    table: Option<Box<Requests>>,
    /// How many admitted (counted) envelopes are being handled (one, or a
    /// batch's): if the shard's loop panics then, they count as dead letters.
    in_hand: u32,
    /// The frames of the batch being handled (`run_frames`), and its
    /// envelopes: kept between batches, so a batch allocates nothing.
    frames: Vec<u8>,
    held: Vec<Envelope>,
    /// What arrived for actors spawned off the shard (or children not started
    /// yet) before they were placed (see `placement`): envelopes, and host
    /// commands (a rate, an upgrade, a timer), each actor's in arrival order.
    /// By actor, so that placing one does not look through what waits for
    /// the others (ordered, so that a manual runtime's runs repeat exactly).
    unplaced: BTreeMap<Address, VecDeque<Waiting>>,
    /// The spawn under way: its slot, name, address and the grant labels it
    /// holds (undone if the shard's loop panics before it is placed).
    spawning: Option<(u32, Arc<str>, Address, u64)>,
    dead_letters: Vec<DeadLetter>,
    /// Payload bytes kept in `dead_letters`.
    dead_letter_bytes: usize,
    /// How deep the shard is in routing an actor's sends (`route_taken`):
    /// revokes for the requests of an actor that goes meanwhile wait for the
    /// end, so that they follow the requests still to be routed.
    routing: u32,
    /// Those revokes: (request, requester, target).
    revokes_after_routing: Vec<(u64, Address, Address)>,
    /// Supervision groups on this shard, by index.
    groups: Vec<GroupState>,
    /// The indexes of the groups reclaimed (no handle, no member), for the
    /// next groups made here.
    free_groups: Vec<u32>,
    /// Supervised actors waiting for their restart: when, slot, generation.
    restarts: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Counters, published to the shard handle once per pass. (The request
    /// counters are kept by the request table.)
    counts: ShardStats,
}

/// Whether `env` may go in a batch: an untraced tell (requests, responses,
/// timers and traced messages each take their own call).
#[inline]
fn plain(env: &Envelope) -> bool {
    env.kind == Kind::Tell && env.trace.is_none()
}

/// Whether `first`, just taken, starts a run for `handle-messages`: it and
/// the next in `mailbox` are plain and fit in one call together.
#[inline]
fn starts_run(first: &Envelope, mailbox: &crate::mailbox::Mailbox) -> bool {
    plain(first)
        && mailbox.front().is_some_and(|next| {
            plain(next)
                && 2 * FRAME_HEADER + first.payload.len() + next.payload.len() <= BATCH_BYTES
        })
}

/// Appends `env` to `frames` as `[from: u64 LE][len: u32 LE][bytes]`.
#[inline]
fn push_frame(frames: &mut Vec<u8>, env: &Envelope) {
    frames.extend_from_slice(&env.from.to_bits().to_le_bytes());
    frames.extend_from_slice(&(env.payload.len() as u32).to_le_bytes());
    frames.extend_from_slice(&env.payload);
}

impl Shard {
    pub(crate) fn new(
        id: usize,
        shared: Arc<Shared>,
        directory: Arc<Directory>,
        config: &Config,
        parker: Parker,
    ) -> Shard {
        let n = shared.shards.len();
        Shard {
            id,
            shared,
            wasm: WasmSettings {
                memory_limit: config.memory_limit,
                budget: config.budget_ticks(),
            },
            directory,
            batch: config.batch,
            spin: Spin::new(config.park_spin, config.spin_cap()),
            pin_core: config.pin_cores,
            parker,
            actors: Vec::new(),
            children: VecDeque::new(),
            start_failed: None,
            due_left: false,
            ready: VecDeque::with_capacity(64),
            overflow: (0..n).map(|_| VecDeque::new()).collect(),
            overflowing: 0,
            touched: vec![false; n],
            stopping: false,
            sealed: false,
            failed: false,
            backoff: MIN_BACKOFF,
            pass_end_tick: PASS_TICKS,
            spun_clock: None,
            caught: None,
            table: Some(Box::new(Requests::new(id))),
            in_hand: 0,
            frames: Vec::new(),
            held: Vec::new(),
            unplaced: BTreeMap::new(),
            spawning: None,
            dead_letters: Vec::new(),
            dead_letter_bytes: 0,
            routing: 0,
            revokes_after_routing: Vec::new(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            restarts: BinaryHeap::new(),
            removed_since_trim: 0,
            counts: ShardStats {
                shard: id,
                spin_ns: config.park_spin.as_nanos() as u64,
                ..ShardStats::default()
            },
        }
    }

    /// The shard's thread: passes until told to exit. A panic (a defect: no guest
    /// input or native actor can cause one) fails every actor of the shard, and
    /// the thread goes on as a stopped shard, answering commands and counting what
    /// arrives as dead letters, so nothing waits for it for ever.
    pub(crate) fn run(mut self) -> ShardExit {
        if self.pin_core && !crate::sys::pin_current_thread(self.id) {
            log::warn!("wasmshard: shard {} could not be pinned to a core", self.id);
        }
        let (runtime, id) = (self.directory.id, self.id);
        as_shard(runtime, || {
            let mut panics = 0;
            while let Some(cause) = quietly(|| self.run_loop()) {
                panics += 1;
                if panics > MAX_PANICS || quietly(|| self.crashed(&cause)).is_some() {
                    log::error!(
                        "wasmshard: shard {id} gave up after {panics} panics; it runs no \
                         actor code from now on"
                    );
                    // Still answer commands and count what arrives, so nothing
                    // waits for this shard and nothing is lost uncounted; only if
                    // even that fails does the thread end, its commands dropped at
                    // the door from then on.
                    if quietly(|| self.given_up_loop()).is_some() {
                        self.handle().bury();
                    }
                    break;
                }
            }
            let mut exit = None;
            quietly(|| exit = Some(self.exit()));
            exit.unwrap_or(ShardExit {
                dead_letters: Vec::new(),
            })
        })
    }

    fn run_loop(&mut self) {
        while !self.pass() {
            if !self.ready.is_empty() || !self.children.is_empty() || self.due_left {
                continue;
            }
            if self.overflowing == 0 {
                self.park(None);
            } else {
                // Only overflow is left and its rings are full: sleep a little
                // (longer while that lasts) rather than spin.
                self.park(Some(self.backoff));
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
            self.hop();
        }
    }

    /// A short pass for the envelope the park's spin caught from a ring, if
    /// it did: delivered, its actor's turn run, what that sent pushed on. The
    /// whole pass follows at once (commands, host queue, the rest of the
    /// rings, timers), so this only moves the one envelope ahead of them: on a
    /// sequential exchange between shards (a request and its response, a
    /// token passed round), each hop's envelope is on its way without waiting
    /// for the rest of a pass. Only that actor's turn runs (nothing else was
    /// ready when the shard parked); what the turn makes ready on this shard
    /// runs in the whole pass, so commands and timers wait for one turn more
    /// at most.
    fn hop(&mut self) {
        let spun = self.spun_clock.take();
        let Some((_, env)) = self.caught.take() else {
            return;
        };
        let tick = self.begin_pass();
        // The spin's reading serves as the hop's clock if no tick passed
        // since (a reading older than a tick is stale); otherwise what needs
        // the clock reads it.
        if let Some((now, at)) = spun
            && at == tick
        {
            self.set_pass_now(now);
        }
        self.counts.remote_in += 1;
        self.counts.hops += 1;
        self.deliver(env);
        // Nothing was ready when the shard parked: this is the caught
        // envelope's actor (if it made one ready). What its turn makes ready
        // here waits for the whole pass, which comes next.
        if let Some(slot) = self.ready.pop_front() {
            self.run_actor(slot);
        }
        self.flush_overflow();
    }

    /// The loop of a shard that gave up: no actor runs, no table is touched but to
    /// publish; commands are answered (spawns refused, shutdown phases
    /// acknowledged) and whatever arrives is counted as a dead letter (a host
    /// request ends with `target-failed`), until `Exit`.
    fn given_up_loop(&mut self) {
        self.stopping = true;
        self.failed = true;
        self.handle().failed.store(true, Ordering::SeqCst);
        // What waited for actors not placed yet ends as for a failed shard.
        self.discard_waiting_children();
        self.refuse_unplaced();
        // Nothing more leaves this shard: its overflow becomes dead letters.
        self.seal();
        // It fires no timeouts: the host's requests still open here end now (if
        // the crash did not end them already).
        if let Some(table) = self.table.as_mut() {
            table.end_host_waiters(RequestError::TargetFailed);
        }
        loop {
            while let Some(cmd) = self.handle().control.pop() {
                self.counts.control_in += 1;
                match cmd {
                    Command::Spawn { reply, .. } => {
                        let _ = reply.send(Err(SpawnError::ShardFailed { shard: self.id }));
                    }
                    Command::Place { placement, reply } => {
                        // Undone (the shard is failed), what it sent ended.
                        let r = self.place(*placement);
                        if let Some(reply) = reply {
                            let _ = reply.send(r);
                        }
                    }
                    // Refused: the borrower's calls fail as during shutdown.
                    Command::Lend { .. } | Command::DropGroup { .. } => {}
                    Command::CreateGroup { reply, .. } => {
                        let _ = reply.send(Err(SpawnError::ShardFailed { shard: self.id }));
                    }
                    Command::Upgrade { reply, .. } => {
                        let _ = reply.send(Err(UpgradeError::ShardFailed { shard: self.id }));
                    }
                    Command::Stop { address, reply } => {
                        let _ = reply.send(Err(StopError::UnknownTarget(address)));
                    }
                    Command::SetRate { address, reply, .. } => {
                        let _ = reply.send(Err(QuotaError::UnknownTarget(address)));
                    }
                    Command::Schedule { to, reply, .. } => {
                        let _ = reply.send(Err(TimerError::UnknownTarget(to)));
                    }
                    Command::CancelTimer { reply, .. } => {
                        let _ = reply.send(false);
                    }
                    Command::StopAll { reply } | Command::Seal { reply } => {
                        let _ = reply.send(());
                    }
                    Command::Exit => return,
                    #[cfg(feature = "testing")]
                    Command::Panic => {}
                }
            }
            while let Some(item) = self.handle().host_inbox.pop() {
                self.counts.host_in += 1;
                match item {
                    HostItem::Tell(env) => self.dead_letter(env, DeadLetterReason::TargetFailed),
                    HostItem::Request(r) => {
                        r.waiter.fulfil(Err(RequestError::TargetFailed));
                    }
                    HostItem::Cancel(_) => {}
                }
            }
            for from in 0..self.shared.shards.len() {
                while let Some(env) = self.pop_inbound(from) {
                    self.counts.remote_in += 1;
                    if env.kind.counted() {
                        self.dead_letter(env, DeadLetterReason::TargetFailed);
                    }
                }
            }
            self.publish();
            // Asleep until something comes: commands, host sends and rings
            // wake it as they wake any parked shard (it polled every
            // millisecond, and kept the epoch ticker awake, for good).
            self.park(None);
        }
    }

    /// One pass of the loop, never parking; returns whether the shard must exit.
    #[inline]
    pub(crate) fn pass(&mut self) -> bool {
        self.begin_pass();
        if self.take_commands() {
            return true;
        }
        self.drain_inbound();
        self.fire_timers();
        self.run_ready();
        if !self.children.is_empty() {
            self.start_children(true);
        }
        self.flush_overflow();
        self.publish();
        false
    }

    /// Starts a pass (or a hop): counted, its own clock reading to come, and
    /// its end set two epoch ticks on. Returns the tick it began in.
    #[inline]
    fn begin_pass(&mut self) -> u64 {
        self.counts.loops += 1;
        let loops = self.counts.loops;
        self.table().new_pass(loops);
        let tick = self.shared.ticks();
        self.pass_end_tick = tick + PASS_TICKS;
        tick
    }

    /// Whether the current pass has run its time (never on a manual runtime,
    /// whose passes are not cut by time, so its runs repeat exactly).
    #[inline]
    fn pass_expired(&self) -> bool {
        self.shared.ticks() >= self.pass_end_tick
    }

    /// A pass panicked on a manual runtime: as on a thread of its own, every
    /// actor fails and the shard runs stopped from then on.
    pub(crate) fn crash(&mut self, cause: &str) {
        if let Some(again) = quietly(|| self.crashed(cause)) {
            log::error!("wasmshard: shard {} panicked again ({again})", self.id);
        }
    }

    /// The shard's loop panicked: every actor fails, and from now on the shard
    /// runs stopped (see `run`).
    fn crashed(&mut self, cause: &str) {
        log::error!(
            "wasmshard: shard {} panicked ({cause}); its actors have failed",
            self.id
        );
        self.stopping = true;
        self.failed = true;
        self.handle().failed.store(true, Ordering::SeqCst);
        self.ready.clear();
        // A routing the panic cut short never ends: what waited for its end
        // goes (every request ends below).
        self.routing = 0;
        self.revokes_after_routing.clear();
        // The request table may have been lent to the actor that was running.
        if self.table.is_none() {
            for actor in self.actors.iter_mut().flatten() {
                if let Some(table) = actor.outbox().table.take() {
                    self.table = Some(table);
                }
            }
        }
        if self.table.is_none() {
            self.table = Some(Box::new(Requests::new(self.id)));
        }
        self.table().abandon_all();
        // The envelope being handled when the loop panicked is gone with the
        // unwinding: counted, so nothing admitted goes uncounted.
        self.counts.dead_letters += u64::from(std::mem::take(&mut self.in_hand));
        // A spawn cut short: its slot and name are freed.
        if let Some((slot, name, me, held)) = self.spawning.take()
            && self.actors[slot as usize].is_none()
        {
            self.unspawn(slot, &name, me, held);
        }
        // So are those of children that were waiting to start.
        self.discard_waiting_children();
        for slot in 0..self.actors.len() {
            if let Some(actor) = self.actors[slot].as_mut() {
                let spawns = std::mem::take(&mut actor.outbox().spawns);
                self.discard_children(spawns);
            }
        }
        // What the actors sent before (admitted, staged) goes on its way; then
        // each fails, and what it held ends.
        for slot in 0..self.actors.len() as u32 {
            self.route_staged(slot);
        }
        let why = Failure::new(
            FailureKind::ShardFailed,
            format!("shard {} failed: {cause}", self.id),
            None,
        );
        for slot in 0..self.actors.len() as u32 {
            if self.actors[slot as usize].is_some() {
                self.fail(slot, why.clone(), None);
            }
        }
        // No actor is left here to answer the host's requests: they end now
        // (a shard that gives up fires no timeouts).
        self.table().end_host_waiters(RequestError::TargetFailed);
        // What waited for actors not placed yet ends too (their `Place` may
        // have been the command the loop panicked in).
        self.refuse_unplaced();
        self.publish();
    }

    /// Whether a pass would find anything to do: a command, an envelope, a ready
    /// actor, overflow to flush, or a request past its deadline.
    pub(crate) fn has_work(&mut self) -> bool {
        !self.ready.is_empty()
            || !self.children.is_empty()
            || self.overflowing > 0
            || self.inbound_pending()
            || self
                .next_deadline()
                .is_some_and(|d| d <= self.directory.now_ns())
    }

    /// The earliest deadline of a request open on this shard (arming those made
    /// since the last clock reading, so it reads the clock if any is open), or
    /// of a restart, whichever comes first.
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        let restart = self.restarts.peek().map(|Reverse((at, ..))| *at);
        let request = match self.arm_timers() {
            Some(_) => self.table().next_deadline(),
            None => None,
        };
        match (restart, request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Reads the clock and arms the requests made since the last reading;
    /// returns the reading, or `None` (reading nothing) if no request is open.
    fn arm_timers(&mut self) -> Option<u64> {
        if self.table().timed_count() == 0 {
            return None;
        }
        let now = self.directory.now_ns();
        self.table().arm(now);
        Some(now)
    }

    /// Requests open on this shard with a deadline (not monitors).
    pub(crate) fn open_requests(&mut self) -> usize {
        self.table().timed_count()
    }

    /// Whether a supervised actor waits for its restart here.
    pub(crate) fn restarting(&self) -> bool {
        !self.restarts.is_empty()
    }

    /// Shutdown, phase one: stops every actor; from now on everything is a dead letter.
    pub(crate) fn stop_all(&mut self) {
        self.stopping = true;
        self.discard_waiting_children();
        self.refuse_unplaced();
        self.table().abandon_all();
        for slot in 0..self.actors.len() as u32 {
            if self.actors[slot as usize].is_some() {
                self.remove(slot, DeadLetterReason::ShuttingDown, None);
            }
        }
        self.publish();
    }

    /// Shutdown, phase two, once every shard has stopped its actors: nothing more
    /// goes into any ring. What waits in the overflow, and whatever would be routed
    /// to another shard from now on, is a dead letter.
    pub(crate) fn seal(&mut self) {
        self.sealed = true;
        for dest in 0..self.overflow.len() {
            while let Some(env) = self.overflow[dest].pop_front() {
                self.overflowing -= 1;
                self.undeliverable(env);
            }
        }
        self.publish();
    }

    fn handle(&self) -> &ShardHandle {
        &self.shared.shards[self.id]
    }

    fn slots(&self) -> &SlotTable {
        self.directory.slots(self.id)
    }

    /// Runs control commands; returns whether the shard must exit.
    pub(crate) fn take_commands(&mut self) -> bool {
        while let Some(cmd) = self.handle().control.pop() {
            self.counts.control_in += 1;
            if self.command(cmd) {
                return true;
            }
        }
        false
    }

    /// Runs one control command; returns whether the shard must exit. A host
    /// command for an actor spawned off the shard and not placed yet (a rate,
    /// an upgrade, a timer) waits in `unplaced` until it is, and runs then.
    fn command(&mut self, cmd: Command) -> bool {
        if let Some(to) = cmd.waits_for()
            && !self.stopping
            && !self.is_live(to)
            && self.awaits_placement(to)
        {
            self.wait_for_placement(Waiting::Command(to, cmd));
            return false;
        }
        match cmd {
            Command::Spawn { name, body, reply } => {
                let r = self.spawn(name, body);
                let _ = reply.send(r);
            }
            Command::Place { placement, reply } => {
                let r = self.place(*placement);
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::Lend { give, back } => self.lend(give, back),
            Command::Stop { address, reply } => {
                let r = if self.is_live(address) {
                    self.remove(address.slot(), DeadLetterReason::TargetStopped, None);
                    self.publish();
                    Ok(())
                } else if !self.stopping && self.awaits_placement(address) {
                    // Spawned off the shard, not placed yet: stopped once
                    // it is, after what arrived for it before.
                    self.wait_for_placement(Waiting::Envelope(Envelope {
                        trace: None,
                        to: address,
                        from: Address::HOST,
                        kind: Kind::Stop,
                        payload: crate::envelope::Payload::new(),
                    }));
                    Ok(())
                } else {
                    Err(StopError::UnknownTarget(address))
                };
                let _ = reply.send(r);
            }
            Command::SetRate {
                address,
                rate,
                reply,
            } => {
                let r = if self.is_live(address) {
                    // Read now: commands may run outside a pass (a manual
                    // runtime takes them at once), and the new bucket
                    // starts full from this moment.
                    let now = self.directory.now_ns();
                    let actor = self.actors[address.slot() as usize]
                        .as_mut()
                        .expect("live actor");
                    let out = actor.outbox();
                    out.rate = rate.map(|r| Box::new(Bucket::new(r)));
                    out.now = now;
                    actor.publish();
                    Ok(())
                } else {
                    Err(QuotaError::UnknownTarget(address))
                };
                let _ = reply.send(r);
            }
            Command::Upgrade {
                address,
                component,
                reply,
            } => {
                let r = if self.failed {
                    Err(UpgradeError::ShardFailed { shard: self.id })
                } else if self.stopping {
                    Err(UpgradeError::ShuttingDown)
                } else if !self.is_live(address) {
                    Err(UpgradeError::UnknownTarget(address))
                } else {
                    self.upgrade(address.slot(), component)
                };
                self.publish();
                let _ = reply.send(r);
            }
            Command::Schedule {
                to,
                delay_ns,
                payload,
                reply,
            } => {
                let r = self.schedule_for_host(to, delay_ns, payload);
                self.publish();
                let _ = reply.send(r);
            }
            Command::CancelTimer { id, reply } => {
                let r = self.cancel_timer_for_host(id);
                self.publish();
                let _ = reply.send(r);
            }
            Command::DropGroup { index } => {
                if let Some(group) = self.groups.get_mut(index as usize) {
                    group.held = false;
                    self.reclaim_group(index);
                }
                self.publish();
            }
            Command::CreateGroup {
                name,
                strategy,
                restart,
                reply,
            } => {
                let r = if self.failed {
                    Err(SpawnError::ShardFailed { shard: self.id })
                } else if self.stopping {
                    Err(SpawnError::ShuttingDown)
                } else {
                    let group = GroupState {
                        name,
                        strategy,
                        intensity: Intensity::new(restart),
                        members: Vec::new(),
                        held: true,
                        reclaimed: false,
                    };
                    // A reclaimed group's place first (nothing refers to it:
                    // neither a handle nor a member).
                    match self.free_groups.pop() {
                        Some(index) => {
                            self.groups[index as usize] = group;
                            Ok(index)
                        }
                        None => {
                            self.groups.push(group);
                            Ok(self.groups.len() as u32 - 1)
                        }
                    }
                };
                self.publish();
                let _ = reply.send(r);
            }
            Command::StopAll { reply } => {
                self.stop_all();
                let _ = reply.send(());
            }
            Command::Seal { reply } => {
                self.seal();
                let _ = reply.send(());
            }
            Command::Exit => return true,
            #[cfg(feature = "testing")]
            Command::Panic => panic!("a panic injected by a test"),
        }
        false
    }

    /// A timer the host sets for the actor `to`.
    fn schedule_for_host(
        &mut self,
        to: Address,
        delay_ns: u64,
        payload: crate::envelope::Payload,
    ) -> Result<u64, TimerError> {
        if self.stopping {
            return Err(TimerError::ShuttingDown);
        }
        if !self.is_live(to) {
            return Err(TimerError::UnknownTarget(to));
        }
        let cap = self.directory.max_timers;
        let table = self
            .table
            .as_mut()
            .expect("the table is home between passes");
        let out = self.actors[to.slot() as usize]
            .as_mut()
            .expect("live actor")
            .outbox();
        if out.timers >= cap {
            return Err(TimerError::TooManyTimers(cap));
        }
        let id = table
            .open_timer(to, Address::HOST, delay_ns, payload)
            .map_err(|_| TimerError::TooManyTimers(cap))?;
        out.timers += 1;
        Ok(id)
    }

    /// The host cancels timer `id`: whichever actor of this shard it is for.
    fn cancel_timer_for_host(&mut self, id: u64) -> bool {
        let Some(to) = self.table().timer_target(id) else {
            return false;
        };
        if !self.table().cancel_timer(id, to) {
            return false;
        }
        if self.is_live(to) {
            let actor = self.actors[to.slot() as usize]
                .as_mut()
                .expect("live actor");
            actor.outbox().timers -= 1;
        }
        true
    }

    fn is_live(&self, a: Address) -> bool {
        a.shard() == self.id
            && matches!(self.actors.get(a.slot() as usize), Some(Some(actor)) if actor.generation == a.generation())
    }

    fn spawn(&mut self, name: Arc<str>, body: SpawnBody) -> Result<Address, SpawnError> {
        if self.failed {
            return Err(SpawnError::ShardFailed { shard: self.id });
        }
        if self.stopping {
            return Err(SpawnError::ShuttingDown);
        }
        if placement::group_of(&body).is_some_and(|g| g as usize >= self.groups.len()) {
            // Group handles are checked against their runtime and shard by
            // the host: a defect if this is reached.
            return Err(no_such_group(self.id));
        }
        let reserved = placement::reserve(&self.directory, self.id, name, &body)?;
        self.make_room(reserved.slot);
        self.spawning = Some((
            reserved.slot,
            reserved.name.clone(),
            reserved.me,
            reserved.masks.held,
        ));
        let directory = self.directory.clone();
        let made = placement::make(
            &directory,
            reserved,
            body,
            |out, rate, component, config| self.start_component(out, rate, true, component, config),
        );
        self.place(made)
    }

    /// Places an actor started here or off the shard (see `placement`): it is
    /// registered, what its `init` spawned starts, what it sent is routed, and
    /// what arrived for it meanwhile goes into its mailbox. A start that failed,
    /// or one that arrives on a stopping or failed shard, is undone.
    fn place(&mut self, placement: Placement) -> Result<Address, SpawnError> {
        let Placement {
            slot,
            name,
            me,
            held,
            native,
            body,
            supervisor,
            info,
        } = placement;
        self.make_room(slot);
        self.spawning = None;
        let group = match &supervisor {
            Some(Supervisor {
                judge: Judge::Group(g),
                ..
            }) => Some(*g),
            _ => None,
        };
        let refused = if self.failed {
            Some(SpawnError::ShardFailed { shard: self.id })
        } else if self.stopping {
            Some(SpawnError::ShuttingDown)
        } else if group.is_some_and(|g| g as usize >= self.groups.len()) {
            Some(no_such_group(self.id))
        } else {
            None
        };
        let body = match (body, refused) {
            (Ok(body), Some(refused)) => {
                let (out, _) = body.into_outbox();
                if let Some(info) = &info {
                    // Listed by its spawn: it ended before it ran.
                    info.alive.store(false, Ordering::Release);
                    if self.failed {
                        info.failed.store(true, Ordering::Release);
                        *info.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(format!("{refused}"));
                    }
                    self.shared.retire_actor(me);
                }
                Err(Box::new((InitEnd::Failed(refused), out)))
            }
            (body, _) => body,
        };
        match body {
            Ok(body) => {
                let generation = me.generation();
                let info = info.unwrap_or_else(|| {
                    let info = Arc::new(ActorInfo::new(name, me, native));
                    self.shared.register_actor(info.clone());
                    info
                });
                if let Some(g) = group {
                    self.groups[g as usize].members.push((slot, generation));
                }
                let mut actor = Actor::new(generation, info, body);
                actor.outbox().lend = None;
                actor.supervisor = supervisor.map(Box::new);
                self.actors[slot as usize] = Some(actor);
                self.counts.actors += 1;
                // What `init` spawned starts (as far as the pass has time) and
                // what it sent goes first.
                self.route_staged(slot);
                self.release_unplaced(me);
                Ok(me)
            }
            Err(failed) => {
                let (end, mut out) = *failed;
                self.never_started(slot, &name, me, held, &mut out);
                self.release_unplaced(me);
                match end {
                    InitEnd::Failed(err) => Err(err),
                    // The runtime's own code panicked inside `init`: undone as
                    // above, the panic goes on to the shard's loop.
                    InitEnd::Panicked(payload) => std::panic::resume_unwind(payload),
                }
            }
        }
    }

    /// Whether `to` is an actor spawned off the shard that is not placed yet:
    /// its slot is live in the slot table, but the shard has no actor there.
    #[cold]
    fn awaits_placement(&self, to: Address) -> bool {
        to.shard() == self.id
            && self.slots().labels(to.slot(), to.generation()).is_some()
            && !matches!(self.actors.get(to.slot() as usize), Some(Some(_)))
    }

    /// Delivers what arrived for `me` before it was placed (or its start was
    /// undone), in the order it arrived: envelopes, and host commands, which
    /// run now (placed: on the actor; undone: finding no such actor). One at a
    /// time out of the queue, so a panic in one loses no other.
    fn release_unplaced(&mut self, me: Address) {
        while let Some(waiting) = self.next_unplaced(Some(me)) {
            match waiting {
                Waiting::Envelope(env) => self.deliver(env),
                Waiting::Command(_, cmd) => {
                    self.command(cmd);
                }
            }
        }
    }

    /// Keeps `waiting` until its actor is placed (or its start undone).
    fn wait_for_placement(&mut self, waiting: Waiting) {
        self.unplaced
            .entry(waiting.to())
            .or_default()
            .push_back(waiting);
    }

    /// Takes the oldest of what waits for `me` (for any actor, the first
    /// by address, if `None`).
    fn next_unplaced(&mut self, me: Option<Address>) -> Option<Waiting> {
        let mut entry = match me {
            Some(me) => match self.unplaced.entry(me) {
                std::collections::btree_map::Entry::Occupied(e) => e,
                std::collections::btree_map::Entry::Vacant(_) => return None,
            },
            None => self.unplaced.first_entry()?,
        };
        let waiting = entry.get_mut().pop_front();
        if entry.get().is_empty() {
            entry.remove();
        }
        waiting
    }

    /// Ends what waits for actors that will not be placed (the shard is
    /// stopping or failed): as anything else arriving now (a command is
    /// answered as a stopping shard answers it).
    fn refuse_unplaced(&mut self) {
        debug_assert!(self.stopping);
        while let Some(waiting) = self.next_unplaced(None) {
            match waiting {
                Waiting::Envelope(env) => self.deliver(env),
                Waiting::Command(_, cmd) => {
                    self.command(cmd);
                }
            }
        }
    }

    /// Lends the request table to an `init` running off the shard (through
    /// `give`) and waits until it comes back (on `back`) with the actor that
    /// `init` started, which it places at once. A stopping shard refuses.
    #[cold]
    #[inline(never)]
    fn lend(
        &mut self,
        give: std::sync::mpsc::SyncSender<Box<Requests>>,
        back: std::sync::mpsc::Receiver<Returned>,
    ) {
        if self.stopping {
            return;
        }
        let table = self.table.take().expect("the table is home between passes");
        if let Err(refused) = give.send(table) {
            // The borrower is gone: nothing will come back.
            self.table = Some(refused.0);
            return;
        }
        // The borrower hands the table back, whatever its `init` did (a panic
        // there is caught and comes back as the spawn's end); only a defect
        // of the runtime could drop it, and the shard cannot go on without it.
        let Returned {
            table,
            placement,
            reply,
        } = back
            .recv()
            .expect("a spawn off the shard kept the shard's request table");
        self.table = Some(table);
        let r = self.place(*placement);
        let _ = reply.send(r);
    }

    /// Undoes a spawn that placed no actor: the slot is free again (at the back
    /// of the line), its generation moves on, the name is released.
    fn unspawn(&mut self, slot: u32, name: &Arc<str>, me: Address, held: u64) {
        // What its `init` subscribed to (before it failed) ends with it.
        self.directory.topics.unsubscribe_all(me);
        self.slots().deactivate(slot);
        // What waited for it (it never started) ends as for a gone actor.
        self.release_unplaced(me);
        self.directory.pool(self.id).give_back(slot);
        self.directory.unregister(name, me, held);
    }

    /// Starts a component actor around `out`: its quota, the storage its name
    /// finds (durable only for a `registered` name), then the instance and
    /// its `init` with `config`.
    fn start_component(
        &mut self,
        mut out: Outbox,
        rate: Option<crate::grants::Rate>,
        registered: bool,
        component: &Component,
        config: &[u8],
    ) -> Result<WasmActor, Unstarted> {
        let prepared = placement::prepare(&self.directory, &mut out, rate, registered);
        // The pass goes by the clock just read (a manual runtime takes a
        // spawn at once, outside a pass).
        self.set_pass_now(out.now);
        match prepared {
            Ok(()) => WasmActor::spawn(&self.wasm, component, out, config, &mut self.table),
            Err(e) => Err(Box::new((InitEnd::Failed(SpawnError::Storage(e)), out))),
        }
    }

    /// The watcher `me` goes (or its instance does): the targets of its open
    /// monitors forget them.
    fn forget_watches(&mut self, me: Address) {
        let watches = self.table().monitors_of(me);
        self.forget(me, watches);
    }

    /// The targets of `watches` (watches of `me`) forget them.
    fn forget(&mut self, me: Address, watches: Vec<(u64, Address)>) {
        for (id, target) in watches {
            self.route(Envelope {
                trace: None,
                to: target,
                from: me,
                kind: Kind::Demonitor(id),
                payload: crate::envelope::Payload::new(),
            });
        }
    }

    /// A spawn whose start failed (its `init`, or its storage): the slot and
    /// name are freed, the children it spawned never start, what it sent goes
    /// on its way, and the requests and watches it made have nobody to end
    /// for.
    fn never_started(
        &mut self,
        slot: u32,
        name: &Arc<str>,
        me: Address,
        held: u64,
        out: &mut Outbox,
    ) {
        // What its `init` stored durably is put back first (before the name
        // is free for another spawn to load it).
        out.storage.undo();
        self.unspawn(slot, name, me, held);
        self.discard_children(std::mem::take(&mut out.spawns));
        let ended = if out.requests.open() > 0 {
            self.table().abandon(me)
        } else {
            Vec::new()
        };
        self.drop_timers(me, out);
        for env in std::mem::take(&mut out.staged) {
            if !matches!(env.kind, Kind::Monitor(_)) {
                self.route(env);
            }
        }
        // After the requests themselves, so a revoke finds its request
        // queued and has it shed.
        self.revoke_abandoned(me, ended);
    }

    /// The clock as read in this pass and tick (read now if it has not been).
    #[inline]
    fn pass_now(&mut self) -> u64 {
        let d = &self.directory;
        self.table
            .as_mut()
            .expect("the table is home between invocations")
            .now(d)
    }

    /// The clock was just read (`now`): the rest of this pass and tick go by it.
    fn set_pass_now(&mut self, now: u64) {
        let d = &self.directory;
        self.table
            .as_mut()
            .expect("the table is home between invocations")
            .set_now(d, now);
    }

    /// Makes sure `actors` reaches `slot`.
    fn make_room(&mut self, slot: u32) {
        if self.actors.len() <= slot as usize {
            self.actors.resize_with(slot as usize + 1, || None);
        }
    }

    /// Undoes the spawns of children waiting to start (the shard is stopping
    /// or failed).
    fn discard_waiting_children(&mut self) {
        let waiting: Vec<Child> = self.children.drain(..).flatten().collect();
        self.discard_children(waiting);
    }

    /// Undoes the spawns an outbox holds whose children will never start (the
    /// spawner's own start failed, or the shard is stopping).
    fn discard_children(&mut self, spawns: Vec<Child>) {
        for child in spawns {
            self.unspawn(child.slot, &child.name, child.me, child.masks.held);
        }
    }

    /// Starts the children the actor in `parent` spawned during its last
    /// invocation, and theirs (whom their `init` spawned), before anything they
    /// sent is routed (as far as the pass has time: see below; a message to a
    /// child not started yet waits for it). Each gets its
    /// `init` in spawn order; a child whose `init` fails is undone, and what its
    /// parent sent it ends as for a failed actor. No recursion: the children
    /// wait in `self.children`, so a chain of spawns takes no stack.
    ///
    /// Only as many as the pass has time for: each `init` may take the CPU
    /// budget, and an invocation may spawn thousands, so once the pass has
    /// run its time the rest wait in `self.children`, one or more starting
    /// after each later pass's turns (`start_children`). What is sent to a
    /// child meanwhile waits for it in `unplaced`, as for an actor spawned off
    /// the shard.
    #[cold]
    #[inline(never)]
    fn place_children(&mut self, parent: u32) {
        let Some(actor) = self.actors[parent as usize].as_mut() else {
            return;
        };
        let spawns = std::mem::take(&mut actor.outbox().spawns);
        if !spawns.is_empty() {
            self.children.push_back(spawns.into());
        }
        self.start_children(false);
    }

    /// Starts waiting children while the pass has time (all of them on a
    /// manual runtime, whose passes are not cut by time), at least one if
    /// `one` (after a pass's turns, so that children waiting start however
    /// long their `init`s take): one of each family in turn, each family's
    /// in spawn order. What the started ones sent from their `init` is
    /// routed once they are all started, and what waited for them is
    /// delivered.
    #[cold]
    #[inline(never)]
    fn start_children(&mut self, one: bool) {
        let mut started = Vec::new();
        let mut first = one;
        while !self.children.is_empty() && (std::mem::take(&mut first) || !self.pass_expired()) {
            // The family stays first while its child starts: the child's own
            // children join it.
            let child = self.children.front_mut().and_then(VecDeque::pop_front);
            if let Some(child) = child
                && let Some(slot) = self.place_child(child)
            {
                started.push(slot);
            }
            // The next family's turn: this one goes behind the others.
            if let Some(family) = self.children.pop_front()
                && !family.is_empty()
            {
                self.children.push_back(family);
            }
        }
        // What the children sent from their `init`, now that all are started.
        for &slot in &started {
            self.route_staged(slot);
        }
        // What arrived for them meanwhile (from other threads that found
        // their names while their parent's spawn was under way).
        if !self.unplaced.is_empty() {
            for slot in started {
                if let Some(actor) = self.actors[slot as usize].as_ref() {
                    let me = actor.info.address;
                    self.release_unplaced(me);
                }
            }
        }
    }

    /// Starts one child; returns its slot if it started.
    fn place_child(&mut self, child: Child) -> Option<u32> {
        let Child {
            slot,
            me,
            name,
            registered,
            parent,
            masks,
            grants,
            component,
            config,
            rate,
        } = child;
        if self.stopping {
            self.unspawn(slot, &name, me, masks.held);
            return None;
        }
        self.make_room(slot);
        self.spawning = Some((slot, name.clone(), me, masks.held));
        let out = Outbox::new(
            me,
            name.clone(),
            self.directory.clone(),
            masks,
            Some(grants),
        );
        let made = self.start_component(out, rate, registered, &component, &config);
        self.spawning = None;
        match made {
            Ok(body) => {
                let info = Arc::new(ActorInfo::new(name, me, false));
                self.shared.register_actor(info.clone());
                let mut actor = Actor::new(me.generation(), info, Body::Wasm(body));
                actor.supervisor = Some(Box::new(Supervisor {
                    maker: Maker::Wasm { component, config },
                    judge: Judge::Unsupervised,
                }));
                // Its own children start after it, in its family (the one
                // first in line, whose child it is).
                let spawns = std::mem::take(&mut actor.outbox().spawns);
                if !spawns.is_empty() {
                    match self.children.front_mut() {
                        Some(family) => family.extend(spawns),
                        None => self.children.push_back(spawns.into()),
                    }
                }
                actor.publish();
                self.actors[slot as usize] = Some(actor);
                self.counts.actors += 1;
                Some(slot)
            }
            Err(failed) => {
                let (end, mut out) = *failed;
                // What waited for it (sent once its parent's invocation
                // returned, the child not started yet) ends as for a
                // failed actor, as what its parent has not sent yet does.
                self.start_failed = Some(me);
                self.never_started(slot, &name, me, masks.held, &mut out);
                self.start_failed = None;
                self.orphaned(parent, me);
                match end {
                    InitEnd::Failed(e) => {
                        log::warn!(
                            "wasmshard: actor `{name}` ({me}), spawned by {parent}, did not start: {e}"
                        );
                        None
                    }
                    InitEnd::Panicked(payload) => std::panic::resume_unwind(payload),
                }
            }
        }
    }

    /// The child `child` of the actor `parent` did not start: what the parent
    /// sent it (not routed yet) ends as for a failed actor: a message is a dead
    /// letter, a request and a monitor end `target-failed`.
    fn orphaned(&mut self, parent: Address, child: Address) {
        if !self.is_live(parent) {
            return;
        }
        let actor = self.actors[parent.slot() as usize]
            .as_mut()
            .expect("live actor");
        let staged = &mut actor.outbox().staged;
        if !staged.iter().any(|e| e.to == child) {
            return;
        }
        let (to_child, rest): (Vec<Envelope>, Vec<Envelope>) = std::mem::take(staged)
            .into_iter()
            .partition(|e| e.to == child);
        *staged = rest;
        for env in to_child {
            match env.kind {
                Kind::Tell => self.dead_letter(env, DeadLetterReason::TargetFailed),
                Kind::Request(id, _) | Kind::Monitor(id) => {
                    self.route(env.failed(child, id, RequestError::TargetFailed))
                }
                Kind::Stop
                | Kind::Demonitor(_)
                | Kind::Revoke(_)
                | Kind::Response(..)
                | Kind::Timer => {}
            }
        }
    }

    /// Takes the actor out of its slot and ends its address. Requests it held
    /// (queued, deferred, or `killer`, the envelope it failed on) end for their
    /// requesters with `target-failed` or `target-stopped`; queued messages become
    /// dead letters.
    fn remove(&mut self, slot: u32, reason: DeadLetterReason, killer: Option<Envelope>) {
        let Some(mut actor) = self.actors[slot as usize].take() else {
            return;
        };
        if matches!(actor.body, Body::Down { .. }) {
            // Its restart will not come.
            self.restarts.retain(|Reverse((_, s, _))| *s != slot);
        }
        if let Some(Supervisor {
            judge: Judge::Group(g),
            ..
        }) = actor.supervisor.as_deref()
        {
            let g = *g;
            self.groups[g as usize].members.retain(|&(s, _)| s != slot);
            self.reclaim_group(g);
        }
        self.slots().deactivate(slot);
        self.directory.pool(self.id).give_back(slot);
        self.counts.actors -= 1;
        self.removed_since_trim = self.removed_since_trim.saturating_add(1);
        actor.publish();
        if reason == DeadLetterReason::TargetFailed {
            actor.info.failed.store(true, Ordering::Release);
        }
        actor.info.alive.store(false, Ordering::Release);
        let me = actor.info.address;
        // Ended for good: what it stored goes (not at shutdown: durable
        // storage is for the next process; nor when the shard itself has
        // crashed, a defect of the runtime, not the actor's end: as after a
        // crash of the process, its storage stays). Before its name is free:
        // a spawn that takes the name from another thread at once loads
        // what is stored after this end.
        if reason != DeadLetterReason::ShuttingDown && !self.failed {
            actor.outbox().storage.end();
        }
        let held = actor.outbox().masks.held;
        self.directory.unregister(&actor.info.name, me, held);
        self.shared.retire_actor(me);
        // A child started in the same placement that stopped at once: what
        // waited for it ends as for a gone actor.
        if !self.unplaced.is_empty() {
            self.release_unplaced(me);
        }
        // What it asked for ends here: nobody is left to receive the answers (a
        // reply that comes later is counted as late). A stopping shard has ended
        // every actor's requests at once already.
        let abandoned = if !self.stopping && actor.outbox().requests.open() > 0 {
            self.forget_watches(me);
            self.table().abandon(me)
        } else {
            Vec::new()
        };
        // Its subscriptions end with it.
        if actor.outbox().subscribed {
            self.directory.topics.unsubscribe_all(me);
        }
        // Its timers end with it.
        if !self.stopping {
            self.drop_timers(me, actor.outbox());
        }
        let error = if reason == DeadLetterReason::TargetFailed {
            RequestError::TargetFailed
        } else {
            RequestError::TargetStopped
        };
        for (id, requester) in actor.outbox().requests.take_deferred() {
            self.route(Envelope::failure(requester, me, id, error));
        }
        // Those watching it learn it is gone for good.
        for (id, watcher) in std::mem::take(&mut actor.monitors) {
            self.route(Envelope::failure(watcher, me, id, error));
        }
        // Children it spawned that have not started (it is removed within the
        // invocation that spawned them) never will; what it sent and was
        // admitted but not routed yet (a child's `init` stopped it) goes on.
        let spawns = std::mem::take(&mut actor.outbox().spawns);
        self.discard_children(spawns);
        let staged = std::mem::take(&mut actor.outbox().staged);
        for env in staged {
            if !matches!(env.kind, Kind::Monitor(_)) {
                self.route(env);
            }
        }
        // After the requests themselves, so that a revoke finds its request
        // queued and has it shed.
        self.revoke_abandoned(me, abandoned);
        let mailbox = std::mem::take(&mut actor.mailbox);
        // Dropping the actor runs a native actor's `Drop`: a panic there ends no
        // more than the actor.
        if let Some(why) = quietly(|| drop(actor)) {
            log::warn!("wasmshard: dropping native actor {me} panicked: {why}");
        }
        let mut mailbox = mailbox;
        for env in killer.into_iter().chain(mailbox.drain()) {
            match env.kind {
                Kind::Tell | Kind::Timer => self.dead_letter(env, reason),
                Kind::Request(id, _) => self.route(env.failed(me, id, error)),
                // A response for a requester that is gone: nobody is left to
                // tell, and it is counted late, as when the requester is
                // restarted or upgraded with it queued.
                Kind::Response(..) => self.table().counts.late += 1,
                // Control envelopes never wait in a mailbox.
                Kind::Stop | Kind::Monitor(_) | Kind::Demonitor(_) | Kind::Revoke(_) => {}
            }
        }
    }

    fn table(&mut self) -> &mut Requests {
        self.table
            .as_mut()
            .expect("the request table is home between invocations")
    }

    fn dead_letter(&mut self, env: Envelope, reason: DeadLetterReason) {
        self.counts.dead_letters += 1;
        // Not in the shutdown (the dead-letter actor is stopping too); a
        // failed shard's dead letters go.
        if self.directory.dead_letter_actor.is_some()
            && !self.sealed
            && !self.directory.is_stopping()
        {
            self.forward_dead_letter(&env, reason);
        }
        if self.dead_letters.len() < DEAD_LETTER_SAMPLES {
            let whole = env.payload.len();
            let keep = if self.dead_letter_bytes + whole <= DEAD_LETTER_SAMPLE_BYTES {
                whole
            } else {
                whole.min(DEAD_LETTER_CUT)
            };
            self.dead_letter_bytes += keep;
            self.dead_letters.push(DeadLetter {
                to: env.to,
                from: env.from,
                reason,
                payload: env.payload[..keep].to_vec(),
                payload_len: whole,
            });
        }
    }

    /// Offers a dead letter to the runtime's dead-letter actor, admitted at
    /// its mailbox like any message; what it cannot take is counted, and a
    /// dead letter addressed to it is never forwarded (no recursion).
    #[cold]
    #[inline(never)]
    fn forward_dead_letter(&mut self, env: &Envelope, reason: DeadLetterReason) {
        use std::sync::atomic::Ordering::Relaxed;
        let d = self.directory.clone();
        let Some(name) = &d.dead_letter_actor else {
            return;
        };
        if d.max_payload < crate::DEAD_LETTER_HEADER {
            // Not even the header fits a message.
            self.counts.dead_letters_refused += 1;
            return;
        }
        let mut bytes = crate::envelope::Payload::new();
        bytes.push(0x55);
        bytes.push(reason as u8);
        bytes.extend_from_slice(&env.from.to_bits().to_le_bytes());
        bytes.extend_from_slice(&env.to.to_bits().to_le_bytes());
        bytes.extend_from_slice(&(env.payload.len() as u32).to_le_bytes());
        let room = d.max_payload.saturating_sub(crate::DEAD_LETTER_HEADER);
        bytes.extend_from_slice(&env.payload[..env.payload.len().min(room)]);
        let mut to = Address::from_bits(d.dead_letter_to.load(Relaxed));
        let past = |a: Address| {
            d.dead_letter_past
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&a)
        };
        if env.from == Address::HOST && past(env.to) {
            // A letter forwarded to an earlier dead-letter actor, gone since.
            self.counts.dead_letters_refused += 1;
            return;
        }
        for _ in 0..2 {
            if to != Address::HOST && (to == env.to || to == env.from) {
                // Addressed to the dead-letter actor itself, or its own.
                break;
            }
            if self.stopping && to.shard() == self.id {
                // This shard takes nothing more (it failed): it would be a
                // dead letter again.
                break;
            }
            match d.admit(to, &bytes, u64::MAX) {
                Ok(()) => {
                    return self.route(Envelope {
                        // Its handling is part of the letter's trace (beside
                        // the letter's own span, which may never have run).
                        trace: env.trace.as_deref().map(crate::trace::Trace::sibling),
                        to,
                        from: Address::HOST,
                        kind: Kind::Tell,
                        payload: bytes,
                    });
                }
                // Not found yet, or a new actor under the name since.
                Err(crate::SendError::UnknownTarget) => match d.lookup(name, u64::MAX) {
                    Ok(Some(found)) if found != to => {
                        if to != Address::HOST {
                            let mut past =
                                d.dead_letter_past.lock().unwrap_or_else(|e| e.into_inner());
                            if past.len() == PAST_DEAD_LETTER_ACTORS {
                                past.pop_front();
                            }
                            past.push_back(to);
                        }
                        d.dead_letter_to.store(found.to_bits(), Relaxed);
                        to = found;
                    }
                    _ => break,
                },
                Err(_) => break,
            }
        }
        self.counts.dead_letters_refused += 1;
    }

    /// An envelope that can go nowhere at shutdown: a message or request is a dead
    /// letter; a response has nobody left to tell (its requester is stopped too).
    fn undeliverable(&mut self, env: Envelope) {
        if env.kind.counted() {
            self.dead_letter(env, DeadLetterReason::ShuttingDown);
        } else if matches!(env.kind, Kind::Response(..))
            && let Some(table) = self.table.as_mut()
        {
            // The end of a request its requester will never handle (the
            // table may be away on a shard that gave up).
            table.counts.late += 1;
        }
    }

    /// Takes what the host and the other shards sent into mailboxes: at the
    /// start of a pass and every `LOOK_TURNS` turns of it (out of line, so
    /// the turn loop stays as small as it was).
    #[inline(never)]
    fn drain_inbound(&mut self) {
        // A look first: an empty queue's `pop` costs several times as much,
        // and this runs every 16 turns of a pass.
        if !self.handle().host_inbox.is_empty() {
            while let Some(item) = self.handle().host_inbox.pop() {
                self.counts.host_in += 1;
                self.host_item(item);
            }
        }
        for from in 0..self.shared.shards.len() {
            if from == self.id {
                continue;
            }
            while let Some(env) = self.pop_inbound(from) {
                self.counts.remote_in += 1;
                self.deliver(env);
            }
        }
    }

    /// Takes the next envelope of the ring from shard `from`, if any.
    #[inline]
    fn ring_pop(&self, from: usize) -> Option<Envelope> {
        // SAFETY: this shard is the only consumer of the rings to it: they
        // are popped only here, called from methods that hold `&mut Shard`;
        // one `Shard` exists per shard, and it is owned by its thread or, on
        // a manual runtime, reached only under the runtime's lock of its
        // shards (passes, commands taken during a spawn, the shutdown
        // phases).
        self.shared
            .inbound(from, self.id)
            .and_then(|r| unsafe { r.pop() })
    }

    /// Pushes `env` into the ring to shard `dest`, or hands it back if full.
    #[inline]
    fn ring_push(&self, dest: usize, env: Envelope) -> Result<(), Envelope> {
        // SAFETY: this shard is the only producer of its rings to others:
        // they are pushed only here, from methods that hold `&mut Shard`, as
        // for `ring_pop`.
        unsafe { self.shared.outbound(self.id, dest).push(env) }
    }

    /// The next envelope from shard `from`'s ring: the one the spin caught
    /// from it, if any, then the ring's.
    #[inline]
    fn pop_inbound(&mut self, from: usize) -> Option<Envelope> {
        if self.caught.as_ref().is_some_and(|(f, _)| *f == from) {
            return self.caught.take().map(|(_, env)| env);
        }
        self.ring_pop(from)
    }

    /// Takes one thing the host sent this shard.
    #[inline]
    fn host_item(&mut self, item: HostItem) {
        match item {
            HostItem::Tell(env) => self.deliver(env),
            HostItem::Request(request) => {
                let HostRequest {
                    to,
                    payload,
                    timeout_ns,
                    waiter,
                    trace,
                } = *request;
                match self
                    .table()
                    .open(Waiter::Host(waiter.clone()), to, timeout_ns)
                {
                    Ok(id) => {
                        waiter.opened(id);
                        let now = self.pass_now();
                        self.route(Envelope {
                            trace,
                            to,
                            from: Address::HOST,
                            kind: Kind::Request(id, deadline_ms(now, timeout_ns)),
                            payload,
                        });
                    }
                    Err(_) => {
                        // 2^24 requests open on this shard: this one cannot be made
                        // in time. The target gets its room back (placed or
                        // still to be).
                        if self.is_live(to) || self.awaits_placement(to) {
                            self.slots().release(to.slot(), 1);
                        }
                        waiter.fulfil(Err(RequestError::Timeout));
                    }
                }
            }
            HostItem::Cancel(waiter) => {
                let table = self.table();
                if let Some((_, target)) = table.close(waiter.id()) {
                    table.count_ended_by_host(&waiter);
                    waiter.fulfil(Err(RequestError::Cancelled));
                    self.revoke_at(waiter.id(), Address::HOST, target);
                }
            }
        }
    }

    /// Puts an envelope addressed to this shard into its actor's mailbox.
    #[inline]
    fn deliver(&mut self, env: Envelope) {
        if !matches!(env.kind, Kind::Tell | Kind::Request(..)) {
            return self.deliver_other(env);
        }
        if self.stopping {
            return self.refuse(env);
        }
        let slot = env.to.slot();
        match self.actors.get_mut(slot as usize) {
            Some(Some(actor)) if actor.generation == env.to.generation() => {
                actor.mailbox.push(env);
                actor.received += 1;
                if !actor.scheduled {
                    actor.scheduled = true;
                    self.ready.push_back(slot);
                }
            }
            _ => self.no_actor(env),
        }
    }

    /// A message or request for a slot with no actor of its generation:
    /// its target stopped after it was admitted, or was spawned off the
    /// shard and is not placed yet (then it waits for it).
    #[cold]
    #[inline(never)]
    fn no_actor(&mut self, env: Envelope) {
        if self.awaits_placement(env.to) {
            return self.wait_for_placement(Waiting::Envelope(env));
        }
        if self.start_failed == Some(env.to) {
            // It waited for a child whose `init` failed.
            return match env.kind {
                Kind::Request(id, _) => {
                    self.route(env.failed(env.to, id, RequestError::TargetFailed))
                }
                _ => self.dead_letter(env, DeadLetterReason::TargetFailed),
            };
        }
        match env.kind {
            // Admitted, but the target stopped before it arrived.
            Kind::Request(id, _) => self.route(env.failed(env.to, id, RequestError::TargetStopped)),
            _ => self.dead_letter(env, DeadLetterReason::TargetGone),
        }
    }

    /// Delivers a response (the end of a request made here) or a control
    /// envelope.
    #[inline]
    fn deliver_other(&mut self, env: Envelope) {
        if let Kind::Response(id, result) = env.kind {
            return self.end_request(id, result, env);
        }
        self.control(env);
    }

    /// A control envelope reached its target's shard: stop the target, or add
    /// a monitor to it. A monitor of an actor that is gone ends at once
    /// (`target-stopped`; `target-failed` on a failed shard).
    #[cold]
    #[inline(never)]
    fn control(&mut self, env: Envelope) {
        let live = !self.stopping && self.is_live(env.to);
        if !live && !self.stopping && self.awaits_placement(env.to) {
            // Its spawn has not reached the shard yet: this waits for it.
            return self.wait_for_placement(Waiting::Envelope(env));
        }
        match env.kind {
            Kind::Stop if live => {
                self.remove(env.to.slot(), DeadLetterReason::TargetStopped, None);
            }
            Kind::Monitor(id) if live => {
                let actor = self.actors[env.to.slot() as usize]
                    .as_mut()
                    .expect("live actor");
                actor.monitors.insert((id, env.from));
            }
            Kind::Revoke(id) => self.revoked(id, env.to),
            Kind::Demonitor(id) if live => {
                let actor = self.actors[env.to.slot() as usize]
                    .as_mut()
                    .expect("live actor");
                actor.monitors.remove(&(id, env.from));
            }
            Kind::Monitor(id) if !self.sealed => {
                let error = if self.failed || self.start_failed == Some(env.to) {
                    RequestError::TargetFailed
                } else {
                    RequestError::TargetStopped
                };
                self.route(env.failed(env.to, id, error));
            }
            // Stop of an actor that is gone, or anything once sealed.
            _ => {}
        }
    }

    /// An envelope for a shard that runs no actors: at shutdown a dead letter; on a
    /// failed shard, a request ends for its requester with `target-failed` (while
    /// the shard can still send; a message is a dead letter).
    #[cold]
    fn refuse(&mut self, env: Envelope) {
        if !self.failed {
            return self.dead_letter(env, DeadLetterReason::ShuttingDown);
        }
        match env.kind {
            Kind::Request(id, _) if !self.sealed => {
                self.route(env.failed(env.to, id, RequestError::TargetFailed))
            }
            _ => self.dead_letter(env, DeadLetterReason::TargetFailed),
        }
    }

    /// A response for request `id` of this shard arrived: end the request and hand
    /// the outcome to whoever waits, or discard a late reply.
    fn end_request(&mut self, id: u64, result: Result<(), RequestError>, env: Envelope) {
        let table = self.table();
        let Some((waiter, _, monitor)) = table.close_entry(id) else {
            table.counts.late += 1;
            return;
        };
        // The host may have cancelled it since (its handle ends at once; the
        // cancel reaches this shard after the reply): then it ended cancelled.
        let taken = match &waiter {
            Waiter::Host(w) => w.fulfil(result.map(|()| env.payload.to_vec())),
            Waiter::Actor(_) => true,
        };
        match result {
            // A monitor's end is not a request's outcome.
            _ if monitor => {}
            // The host ended it first (only a host's waiter is ever taken).
            _ if !taken => {
                if let Waiter::Host(w) = &waiter {
                    table.count_ended_by_host(w);
                }
            }
            Ok(()) => table.counts.answered += 1,
            Err(_) => table.counts.failed += 1,
        }
        if let Waiter::Actor(requester) = waiter {
            self.push_response(requester, env);
        }
    }

    /// Puts the end of one of `requester`'s requests into its mailbox (always
    /// admitted: it does not count against the mailbox's capacity).
    fn push_response(&mut self, requester: Address, mut env: Envelope) {
        let slot = requester.slot();
        if let Some(Some(actor)) = self.actors.get_mut(slot as usize)
            && actor.generation == requester.generation()
        {
            actor.outbox().requests.ended();
            env.to = requester;
            actor.mailbox.push(env);
            actor.received += 1;
            if !actor.scheduled {
                actor.scheduled = true;
                self.ready.push_back(slot);
            }
        }
        // Otherwise the requester is gone and nobody is left to tell.
    }

    fn fire_timers(&mut self) {
        self.due_left = false;
        if !self.restarts.is_empty() {
            self.fire_restarts(self.directory.now_ns());
        }
        let Some(now) = self.arm_timers() else {
            return;
        };
        // The pass's clock reading, for what runs next.
        self.set_pass_now(now);
        // At least one, then only while the pass has time: thousands of
        // timers due at once (actors may set millions) do not hold the pass;
        // the rest fire in the next.
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) && self.pass_expired() {
                // Perhaps more are due: the loop comes back for them.
                self.due_left = true;
                break;
            }
            let Some(expired) = self.table().expire(now) else {
                break;
            };
            match expired {
                Expired::Request(id, Waiter::Host(w), target) => {
                    w.fulfil(Err(RequestError::Timeout));
                    self.revoke_at(id, Address::HOST, target);
                }
                Expired::Request(id, Waiter::Actor(requester), target) => {
                    self.push_response(
                        requester,
                        Envelope::failure(requester, requester, id, RequestError::Timeout),
                    );
                    self.revoke_at(id, requester, target);
                }
                Expired::Timer {
                    to, from, payload, ..
                } => self.fire(to, from, payload),
            }
        }
    }

    /// Request `id` from `from` to `target` ended by its timeout or a cancel:
    /// the target's shard ends the requests made on its behalf.
    fn revoke_at(&mut self, id: u64, from: Address, target: Address) {
        if self.sealed {
            return;
        }
        self.route(Envelope {
            trace: None,
            to: target,
            from,
            kind: Kind::Revoke(id),
            payload: crate::envelope::Payload::new(),
        });
    }

    /// Request `parent` (to an actor of this shard) ended by its timeout or a
    /// cancel: the requests made on its behalf here end with `cancelled` for
    /// their requesters (who did not cancel them, so they must learn), and so
    /// on down the chain, across shards.
    #[cold]
    fn revoked(&mut self, parent: u64, target: Address) {
        self.let_go(parent, target);
        // Nothing made on its behalf (the usual case): no allocation.
        let children = self.table().revoke(parent);
        if children.is_empty() {
            return self.not_to_start(parent, target);
        }
        // A worklist, not a recursion: a chain on one shard may be long.
        let mut work = Vec::new();
        let mut next = Some(children);
        loop {
            let children = match next.take() {
                Some(children) => children,
                None => {
                    let Some((parent, target)) = work.pop() else {
                        break;
                    };
                    self.let_go(parent, target);
                    let children = self.table().revoke(parent);
                    if children.is_empty() {
                        self.not_to_start(parent, target);
                        continue;
                    }
                    children
                }
            };
            for (id, waiter, child_target) in children {
                let from = match waiter {
                    Waiter::Host(w) => {
                        w.fulfil(Err(RequestError::Cancelled));
                        Address::HOST
                    }
                    Waiter::Actor(requester) => {
                        self.push_response(
                            requester,
                            Envelope::failure(requester, child_target, id, RequestError::Cancelled),
                        );
                        requester
                    }
                };
                if child_target.shard() == self.id {
                    work.push((id, child_target));
                } else {
                    self.revoke_at(id, from, child_target);
                }
            }
        }
    }

    /// The requests `requester` made and that were just abandoned (it went,
    /// or was replaced): their targets learn as for a cancel, so a request
    /// still queued is shed, one deferred no longer counts against the
    /// target's cap, and what was asked on its behalf ends.
    fn revoke_abandoned(&mut self, requester: Address, ended: Vec<(u64, Address)>) {
        if self.routing > 0 {
            // The requester went while its sends were being routed (it
            // stopped itself, say): what it sent after the stop, requests
            // included, is routed first.
            self.revokes_after_routing.extend(
                ended
                    .into_iter()
                    .map(|(id, target)| (id, requester, target)),
            );
            return;
        }
        for (id, target) in ended {
            self.revoke_at(id, requester, target);
        }
    }

    /// Routes the revokes [`Shard::revoke_abandoned`] kept for the end of
    /// the routing under way.
    #[cold]
    #[inline(never)]
    fn route_revokes_after_routing(&mut self) {
        for (id, requester, target) in std::mem::take(&mut self.revokes_after_routing) {
            self.revoke_at(id, requester, target);
        }
    }

    /// Reclaims group `g` if nothing refers to it any more: no handle, no
    /// member (a handle is what spawns members into it; a member is what
    /// restarts by it).
    fn reclaim_group(&mut self, g: u32) {
        let group = &mut self.groups[g as usize];
        if !group.held && group.members.is_empty() && !group.reclaimed {
            group.reclaimed = true;
            group.members = Vec::new();
            self.free_groups.push(g);
        }
    }

    /// Request `id` to `target` ended for its requester (timeout, cancel): if
    /// `target` deferred it, it no longer counts against `max-open-requests`
    /// (it did until its deadline). A later answer is still taken, and
    /// discarded where the request was made.
    fn let_go(&mut self, id: u64, target: Address) {
        if self.is_live(target) {
            let now = self.pass_now();
            let cap = self.directory.max_open_requests as usize;
            let actor = self.actors[target.slot() as usize]
                .as_mut()
                .expect("live actor");
            if actor.outbox().requests.let_go(id, now, cap) {
                actor.publish();
            }
        }
    }

    /// Request `id` to `target` ended (timeout, cancel) before it made any
    /// request: if it may still be queued, it is marked so that it is shed
    /// when its turn comes rather than started.
    #[cold]
    fn not_to_start(&mut self, id: u64, target: Address) {
        if !self.is_live(target) {
            return;
        }
        let actor = self.actors[target.slot() as usize]
            .as_mut()
            .expect("live actor");
        if actor.mailbox.is_empty() {
            return;
        }
        actor.unstarted.insert(id);
        // An actor that never empties its mailbox never clears the set (see
        // `run_actor`), and a mark for a request it had already started is
        // never taken out: once the set outgrows what could be queued, only
        // the marks of requests still queued are kept (amortized: the set is
        // then at most the mailbox, and grows past twice that before the
        // next look).
        if actor.unstarted.len() > 2 * actor.mailbox.len() + 64 {
            actor.keep_queued_marks();
        }
    }

    /// Timer of the actor `to` fired: its payload joins the mailbox, always
    /// admitted (an actor waiting for its restart finds it there).
    fn fire(&mut self, to: Address, from: Address, payload: crate::envelope::Payload) {
        let slot = to.slot();
        let env = Envelope {
            trace: None,
            to,
            from,
            kind: Kind::Timer,
            payload,
        };
        if let Some(Some(actor)) = self.actors.get_mut(slot as usize)
            && actor.generation == to.generation()
        {
            // Still held against the actor's cap until it is handled.
            actor.mailbox.push(env);
            actor.received += 1;
            if !actor.scheduled {
                actor.scheduled = true;
                self.ready.push_back(slot);
            }
        } else {
            // A defect (an actor's timers end with it), but never uncounted.
            debug_assert!(false, "a timer outlived its actor {to}");
            self.dead_letter(env, DeadLetterReason::TargetGone);
        }
    }

    /// Ends the timers the actor `me` (whose outbox is `out`) has pending,
    /// if it has any.
    fn drop_timers(&mut self, me: Address, out: &mut Outbox) {
        if out.timers > 0 {
            self.table().drop_timers(me);
            out.timers = 0;
        }
    }

    /// Sends a staged envelope on its way: into a local mailbox, or toward its shard.
    #[inline]
    fn route(&mut self, env: Envelope) {
        let dest = match env.kind {
            Kind::Response(id, _) => requests::shard_of(id),
            _ => env.to.shard(),
        };
        if dest == self.id {
            self.counts.routed_local += 1;
            return self.deliver(env);
        }
        if self.sealed {
            return self.undeliverable(env);
        }
        self.counts.routed_remote += 1;
        if self.overflow[dest].is_empty() {
            match self.ring_push(dest, env) {
                Ok(()) => {
                    self.counts.remote_out += 1;
                    self.touched[dest] = true;
                }
                Err(env) => {
                    self.overflow[dest].push_back(env);
                    self.overflowing += 1;
                }
            }
        } else {
            // Keep per-pair order: nothing overtakes what is already waiting.
            self.overflow[dest].push_back(env);
            self.overflowing += 1;
        }
    }

    /// Routes what the actor in `slot` staged, after starting the children it
    /// spawned. Its staging vector is lent out and handed back empty, so every
    /// actor keeps the capacity it has needed (vectors do not wander between
    /// actors, which would make them grow again). Returns whether the actor is
    /// still there (it may have stopped itself).
    #[inline]
    fn route_staged(&mut self, slot: u32) -> bool {
        let Some(actor) = self.actors[slot as usize].as_mut() else {
            return false;
        };
        if actor.logs {
            return self.route_staged_slowly(slot);
        }
        let out = actor.outbox();
        if !out.spawns.is_empty() {
            return self.route_staged_slowly(slot);
        }
        if out.staged.capacity() > KEEP_STAGED {
            keep_staged(out);
        }
        if out.staged.is_empty() {
            return true;
        }
        let staged = std::mem::take(&mut out.staged);
        self.route_taken(slot, staged)
    }

    /// Routes `staged`, taken from the outbox of the actor in `slot`, and
    /// gives the vector back (if the actor is still there).
    #[inline(always)]
    fn route_taken(&mut self, slot: u32, mut staged: Vec<Envelope>) -> bool {
        self.routing += 1;
        for env in staged.drain(..) {
            self.route(env);
        }
        self.routing -= 1;
        if !self.revokes_after_routing.is_empty() && self.routing == 0 {
            self.route_revokes_after_routing();
        }
        match self.actors[slot as usize].as_mut() {
            Some(actor) => {
                actor.outbox().staged = staged;
                true
            }
            // It stopped itself.
            None => false,
        }
    }

    /// [`Shard::route_staged`] for an actor that spawned children (they are
    /// started first, so what it sent them finds them) or whose messages are
    /// logged.
    #[cold]
    #[inline(never)]
    fn route_staged_slowly(&mut self, slot: u32) -> bool {
        // Takes the spawns out of its outbox: routing comes next.
        self.place_children(slot);
        let Some(actor) = self.actors[slot as usize].as_mut() else {
            return false;
        };
        if actor.logs {
            debug_assert!(actor.outbox().logs, "the two copies of the flag agree");
            let name = actor.info.name.clone();
            for env in &actor.outbox().staged {
                crate::message_log::sent(&name, env);
            }
        }
        let staged = std::mem::take(&mut actor.outbox().staged);
        self.route_taken(slot, staged)
    }

    /// Runs ready actors round-robin, one turn each, until none is ready,
    /// `MAX_TURNS` turns have run, or the pass has run its time. A full ring stops
    /// no one: what does not fit waits in the overflow, in order, and room in the
    /// targets' mailboxes (reserved at admission) bounds it.
    ///
    /// Every `LOOK_TURNS` turns the host queue and the inbound rings are
    /// drained again, so what arrives from elsewhere waits that many turns at
    /// most before it is in its mailbox. (Drained once a pass, an actor that
    /// keeps messaging itself, a sender retrying a full mailbox on another
    /// shard, say, held the messages from other shards back for 256 of its
    /// turns, and with them the room their handling gives back to their
    /// senders.)
    fn run_ready(&mut self) {
        for _ in 0..MAX_TURNS / LOOK_TURNS {
            for _ in 0..LOOK_TURNS {
                if self.pass_expired() {
                    return;
                }
                let Some(slot) = self.ready.pop_front() else {
                    return;
                };
                self.run_actor(slot);
            }
            self.drain_inbound();
        }
    }

    /// Runs one actor for at most `batch` envelopes, and only those in its mailbox
    /// when the turn begins: what arrives during the turn (a message it sends
    /// itself to yield, say) waits for its next turn, so other actors run first.
    fn run_actor(&mut self, slot: u32) {
        let Some(actor) = self.actors[slot as usize].as_mut() else {
            return;
        };
        if matches!(actor.body, Body::Down { .. }) {
            return; // waiting for its restart, which schedules it
        }
        self.counts.turns += 1;
        if actor.outbox().rate.is_some() {
            let d = &self.directory;
            let table = self
                .table
                .as_mut()
                .expect("the table is home between invocations");
            actor.outbox().now = table.now(d);
        }
        let batch = self
            .batch
            .min(u32::try_from(actor.mailbox.len()).unwrap_or(u32::MAX));
        let (mut taken, mut counted) = (0u32, 0u32);
        loop {
            // At least one message a turn, then no more once the pass has run
            // its time (the rest wait for the actor's next turn).
            if taken == batch || (taken > 0 && self.pass_expired()) {
                break;
            }
            let Some(actor) = self.actors[slot as usize].as_mut() else {
                return;
            };
            if !actor.scheduled {
                return; // a stale entry for a slot that was reused
            }
            let Some(env) = actor.mailbox.pop() else {
                break;
            };
            taken += 1;
            let admitted = env.kind.counted();
            counted += admitted as u32;
            // A run needs room for two this turn. Natives and unbatched
            // components pay one test of their body.
            if taken < batch && actor.batched() && starts_run(&env, &actor.mailbox) {
                if self.run_frames(slot, env, batch - taken + 1, &mut taken, &mut counted) {
                    continue;
                }
                return;
            }
            if let Kind::Request(id, deadline) = env.kind {
                let revoked = !actor.unstarted.is_empty() && actor.unstarted.remove(&id);
                let now = self
                    .table
                    .as_mut()
                    .expect("the table is home between invocations")
                    .now(&self.directory);
                if revoked || crate::envelope::remaining_ns(deadline, now) == 0 {
                    // Its requester has stopped waiting (its own timer ends
                    // it with `timeout`; or it ended already): shed unstarted.
                    self.counts.expired += 1;
                    continue;
                }
            }
            // Lend the request table for the call (two pointer moves, no lock).
            actor.outbox().table = self.table.take();
            self.in_hand = u32::from(admitted || env.kind == Kind::Timer);
            let result = if env.trace.is_none() {
                actor.handle(&env)
            } else {
                self.counts.traced += 1;
                actor.handle_traced(&env, self.id)
            };
            if actor.logs {
                let failure = result.as_ref().err().map(|f| &f.failure);
                crate::message_log::received(&actor.info.name, &env, self.id, failure);
            }
            self.in_hand = 0;
            self.table = actor.outbox().table.take();
            if result.is_ok() {
                actor.handled += 1;
            }
            // Route what it sent, even if it failed afterwards: those sends succeeded.
            let here = self.route_staged(slot);
            if let Err(fault) = result {
                let killer = (!fault.answered).then_some(env);
                if here {
                    // The room of what it took this turn (the failing one
                    // included) is given back: a restarted actor keeps its slot.
                    self.slots().release(slot, counted);
                    self.fail(slot, fault.failure, killer);
                } else if let Some(env) = killer {
                    // It stopped itself, then failed on this one: it ends as
                    // it would have with the actor.
                    match env.kind {
                        Kind::Tell | Kind::Timer => {
                            self.dead_letter(env, DeadLetterReason::TargetFailed)
                        }
                        Kind::Request(id, _) => {
                            self.route(env.failed(env.to, id, RequestError::TargetFailed))
                        }
                        _ => {}
                    }
                }
                return;
            }
            if !here {
                return; // it stopped itself
            }
        }
        self.slots().release(slot, counted);
        let actor = self.actors[slot as usize].as_mut().expect("live actor");
        actor.publish();
        if actor.mailbox.is_empty() {
            actor.scheduled = false;
            if !actor.unstarted.is_empty() {
                // Every request queued when it was marked has been taken.
                // Cleared, not replaced: its room serves the next marks with
                // no allocation (replaced, a burst of timeouts allocated
                // again each time the mailbox emptied); a set grown past a
                // mailbox's worth is let go.
                if actor.unstarted.capacity() > 1024 {
                    actor.unstarted = Default::default();
                } else {
                    actor.unstarted.clear();
                }
            }
        } else {
            self.ready.push_back(slot);
        }
    }

    /// Runs the batched actor in `slot` on the run of plain messages that
    /// starts with `first`: it and the mailbox's next envelopes while they are
    /// untraced tells, at most `room` in all and [`BATCH_BYTES`] of frames, in
    /// one `handle-messages` call. `taken` and `counted` (which count `first`
    /// already) grow by the rest. Returns whether the actor is still there to
    /// go on.
    ///
    /// (Out of line: inlined into `run_actor`, it cost the single-message
    /// path of every actor a few percent.)
    ///
    /// The batch is one invocation: if it fails, the host cannot know which
    /// of its messages the actor had finished or failed on, so none counts as
    /// handled and each is a dead letter (`target-failed`), in order, before
    /// the rest of the mailbox is dealt with as for any failure (kept for a
    /// restart, or dead letters after these). What the actor sent before
    /// failing goes on its way, as for a single message. A stop it sent
    /// itself takes effect when the call returns, as for a single message:
    /// the batch's later messages were handled by then.
    #[inline(never)]
    fn run_frames(
        &mut self,
        slot: u32,
        first: Envelope,
        room: u32,
        taken: &mut u32,
        counted: &mut u32,
    ) -> bool {
        let mut frames = std::mem::take(&mut self.frames);
        let mut held = std::mem::take(&mut self.held);
        frames.clear();
        let actor = self.actors[slot as usize].as_mut().expect("live actor");
        push_frame(&mut frames, &first);
        held.push(first);
        while (held.len() as u32) < room {
            match actor.mailbox.front() {
                Some(e)
                    if plain(e) && frames.len() + FRAME_HEADER + e.payload.len() <= BATCH_BYTES =>
                {
                    let e = actor.mailbox.pop().expect("it has a front");
                    push_frame(&mut frames, &e);
                    held.push(e);
                }
                _ => break,
            }
        }
        let n = held.len() as u32;
        *taken += n - 1;
        *counted += n - 1;
        self.counts.batches += 1;
        self.counts.batched += u64::from(n);
        actor.outbox().table = self.table.take();
        self.in_hand = n;
        let result = actor.handle_frames(n, &frames);
        if actor.logs {
            let failure = result.as_ref().err();
            for env in &held {
                crate::message_log::received(&actor.info.name, env, self.id, failure);
            }
        }
        self.table = actor.outbox().table.take();
        if result.is_ok() {
            actor.handled += u64::from(n);
            self.in_hand = 0;
        }
        // (A failed batch stays in hand until each of its messages is a dead
        // letter, so a panic of the loop before then counts the rest.)
        let here = self.route_staged(slot);
        let go_on = match result {
            Ok(()) => {
                held.clear();
                here
            }
            Err(failure) => {
                // Every message of the batch is a dead letter, in order,
                // before the actor's failure ends (or keeps, for its restart)
                // what is still in its mailbox: dead letters keep the
                // mailbox's order. The failure itself names no message.
                for env in held.drain(..) {
                    self.dead_letter(env, DeadLetterReason::TargetFailed);
                    self.in_hand -= 1;
                }
                if here {
                    // The room of what it took this turn is given back, as
                    // for a single message.
                    self.slots().release(slot, *counted);
                    self.fail(slot, failure, None);
                }
                false
            }
        };
        self.frames = frames;
        self.held = held;
        go_on
    }

    /// The actor in `slot` failed on `killer` (`None` if that was a request it had
    /// already answered): a supervised actor within its intensity goes down to
    /// be restarted in place; otherwise it is removed, and everything it held ends.
    fn fail(&mut self, slot: u32, cause: Failure, killer: Option<Envelope>) {
        let now = self.directory.now_ns();
        let actor = self.actors[slot as usize].as_mut().expect("live actor");
        let info = actor.info.clone();
        info.failures.set(info.failures.get() + 1);
        let set_failure = |why: String| {
            *info.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        };
        // A stopping (or failed) shard restarts nothing.
        let (verdict, group) = match &mut actor.supervisor {
            Some(s) if !self.stopping => match &mut s.judge {
                Judge::Own(intensity) => (Some(intensity.failed(now)), None),
                Judge::Unsupervised => (None, None),
                Judge::Group(g) => {
                    let group = &mut self.groups[*g as usize];
                    (Some(group.intensity.failed(now)), Some(*g))
                }
            },
            _ => (None, None),
        };
        match verdict {
            Some(Verdict::RestartAfter(delay)) => {
                let after = if delay == 0 {
                    String::new()
                } else {
                    format!(
                        " in {}",
                        humantime::format_duration(Duration::from_nanos(delay))
                    )
                };
                log::warn!(
                    "wasmshard: actor `{}` ({}) failed: {cause}; restarting{after}",
                    info.name,
                    info.address
                );
                set_failure(cause.to_string());
                let Some(g) = group else {
                    return self.go_down(slot, killer, delay);
                };
                let group = &self.groups[g as usize];
                let affected = group.affected(slot);
                if affected.len() > 1 {
                    log::warn!(
                        "wasmshard: group `{}` ({}) restarts {} members{after}",
                        group.name,
                        group.strategy,
                        affected.len()
                    );
                }
                let mut killer = killer;
                for (member, generation) in affected {
                    let (live, down) = match &self.actors[member as usize] {
                        Some(a) if a.generation == generation => {
                            (true, matches!(a.body, Body::Down { .. }))
                        }
                        _ => (false, false),
                    };
                    if member == slot {
                        self.go_down(slot, killer.take(), delay);
                    } else if live && !down {
                        self.go_down(member, None, delay);
                    } else if down {
                        // Down already, for an earlier failure: it restarts
                        // with the others, not before them.
                        self.restarts.retain(|Reverse((_, s, _))| *s != member);
                        let due = self.directory.now_ns().saturating_add(delay);
                        self.restarts.push(Reverse((due, member, generation)));
                    }
                }
            }
            Some(Verdict::GiveUp) => {
                let Some(g) = group else {
                    let Some(Supervisor {
                        judge: Judge::Own(intensity),
                        ..
                    }) = actor.supervisor.as_deref()
                    else {
                        unreachable!("judged by its own intensity")
                    };
                    let why = gave_up(format!("gave up: {}", intensity.gave_up()), cause);
                    return self.end_failed(slot, why, killer);
                };
                let group = &self.groups[g as usize];
                let (gname, members) = (group.name.clone(), group.members.clone());
                let why = gave_up(
                    format!("gave up: group `{gname}` {}", group.intensity.gave_up()),
                    cause,
                );
                let sibling = format!(
                    "group `{gname}` gave up after `{}` failed: {why}",
                    info.name
                );
                self.end_failed(slot, why, killer);
                for (member, generation) in members {
                    if matches!(&self.actors[member as usize], Some(a) if a.generation == generation)
                    {
                        let info = self.actors[member as usize]
                            .as_ref()
                            .expect("live")
                            .info
                            .clone();
                        log::warn!(
                            "wasmshard: actor `{}` ({}) ends: {sibling}",
                            info.name,
                            info.address
                        );
                        *info.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(sibling.clone());
                        self.remove(member, DeadLetterReason::TargetFailed, None);
                    }
                }
                // Every member has ended: members spawned into the group from
                // now on are supervised afresh.
                self.groups[g as usize].intensity.clear();
            }
            None => self.end_failed(slot, cause, killer),
        }
    }

    /// Ends the actor in `slot` for good, failed with `cause`.
    fn end_failed(&mut self, slot: u32, cause: Failure, killer: Option<Envelope>) {
        let info = self.actors[slot as usize]
            .as_ref()
            .expect("live actor")
            .info
            .clone();
        log::warn!(
            "wasmshard: actor `{}` ({}) failed: {cause}",
            info.name,
            info.address
        );
        *info.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(cause.to_string());
        self.remove(slot, DeadLetterReason::TargetFailed, killer);
    }

    /// A supervised actor failed and will restart in place after `delay`
    /// nanoseconds: its body is dropped (its outbox kept); the message it failed
    /// on is a dead letter (a request ends `target-failed`); requests it held
    /// end `target-failed`; its own open requests are abandoned (late replies
    /// are discarded). Its slot stays live: senders are admitted against its
    /// mailbox as usual, and what is queued waits for the new instance.
    fn go_down(&mut self, slot: u32, killer: Option<Envelope>, delay: u64) {
        let mut actor = self.actors[slot as usize].take().expect("live actor");
        let me = actor.info.address;
        let (mut out, panicked) = actor.body.into_outbox();
        if let Some(why) = panicked {
            log::warn!("wasmshard: dropping native actor {me} panicked: {why}");
        }
        let asked = out.requests.open() > 0;
        // The answers to what this instance asked, queued already: late for
        // the next one, which asked nothing.
        let late = actor.mailbox.drop_responses();
        self.table().counts.late += late;
        let held: Vec<(u64, Address)> = out.requests.take_deferred().collect();
        out.requests = Default::default();
        actor.body = Body::Down { out: Box::new(out) };
        // Kept out of the ready queue until the restart: `scheduled` set, so a
        // delivery does not queue it.
        actor.scheduled = true;
        actor.publish();
        let generation = actor.generation;
        self.actors[slot as usize] = Some(actor);
        // What it asked ends, its watches are forgotten and its requests
        // revoked at their targets: once it is back in its slot, so that
        // those of itself find it there (out of it, they would wait in
        // `unplaced` as for an actor not placed yet).
        if asked {
            self.forget_watches(me);
            let ended = self.table().abandon(me);
            self.revoke_abandoned(me, ended);
        }
        for (id, requester) in held {
            self.route(Envelope::failure(
                requester,
                me,
                id,
                RequestError::TargetFailed,
            ));
        }
        if let Some(env) = killer {
            match env.kind {
                Kind::Tell | Kind::Timer => self.dead_letter(env, DeadLetterReason::TargetFailed),
                Kind::Request(id, _) => self.route(env.failed(me, id, RequestError::TargetFailed)),
                Kind::Response(..)
                | Kind::Stop
                | Kind::Monitor(_)
                | Kind::Demonitor(_)
                | Kind::Revoke(_) => {}
            }
        }
        let due = self.directory.now_ns().saturating_add(delay);
        self.restarts.push(Reverse((due, slot, generation)));
    }

    /// Restarts the supervised actor of `generation` in `slot`, if it is still
    /// down: a new body around its outbox. If that fails (its `init` refused or
    /// trapped, its factory panicked), it is a failure like any other.
    fn restart(&mut self, slot: u32, generation: u32) {
        let Some(mut actor) = self.actors[slot as usize].take() else {
            return;
        };
        let mut out = match actor.body {
            Body::Down { out } if actor.generation == generation => out,
            body => {
                // Stopped, or a later actor in the slot: nothing to restart.
                actor.body = body;
                self.actors[slot as usize] = Some(actor);
                return;
            }
        };
        out.now = self.directory.now_ns();
        let now = out.now;
        self.set_pass_now(now);
        let supervisor = actor
            .supervisor
            .as_mut()
            .expect("a down actor is supervised");
        // The timers it has now: those a failing `init` adds are taken back.
        let me = actor.info.address;
        let before: ahash::AHashSet<u64> = if out.timers > 0 {
            self.table().timers_of(me).into_iter().collect()
        } else {
            Default::default()
        };
        let made = Body::remake(&mut supervisor.maker, &self.wasm, *out, &mut self.table);
        let failure = match made {
            Ok(body) => {
                actor.body = body;
                actor.info.restarts.set(actor.info.restarts.get() + 1);
                let queued = !actor.mailbox.is_empty();
                actor.scheduled = queued;
                actor.publish();
                self.actors[slot as usize] = Some(actor);
                if queued {
                    self.ready.push_back(slot);
                }
                // What its `init` sent.
                self.route_staged(slot);
                return;
            }
            Err(failed) => {
                let (end, mut out) = *failed;
                // Children its `init` spawned never start; what it sent
                // before it failed goes on its way (a watch it made ends
                // with it: its requests are abandoned when it goes down).
                self.discard_children(std::mem::take(&mut out.spawns));
                out.staged.retain(|e| !matches!(e.kind, Kind::Monitor(_)));
                // The timers it set go too, as for a spawn or an upgrade
                // whose `init` fails (they stayed pending, counted against
                // `max-timers`, until the actor ended).
                if out.timers > 0 {
                    for id in self.table().timers_of(me) {
                        if !before.contains(&id) && self.table().cancel_timer(id, me) {
                            out.timers -= 1;
                        }
                    }
                }
                actor.body = Body::Down { out: Box::new(out) };
                self.actors[slot as usize] = Some(actor);
                if !self.route_staged(slot) {
                    // Its `init` stopped it: nothing is left to restart.
                    if let InitEnd::Panicked(payload) = end {
                        std::panic::resume_unwind(payload);
                    }
                    return;
                }
                match end {
                    InitEnd::Failed(SpawnError::InitFailed(f) | SpawnError::Instantiate(f)) => {
                        Failure::new(
                            f.kind(),
                            format!("restart failed: {f}"),
                            Some(crate::error::cause(f)),
                        )
                    }
                    InitEnd::Failed(e) => Failure::new(
                        FailureKind::Other,
                        format!("restart failed: {e}"),
                        Some(crate::error::cause(e)),
                    ),
                    InitEnd::Panicked(payload) => std::panic::resume_unwind(payload),
                }
            }
        };
        self.fail(slot, failure, None);
    }

    /// Replaces the component of the actor in `slot` (between two messages: a
    /// command runs between passes). The new instance is made around a new
    /// outbox with the actor's address, name, grants and quota, and its `init`
    /// runs on the actor's config while the old instance stands; if that
    /// fails, the new one is dropped and the old one goes on (what the new
    /// `init` sent is routed, its requests abandoned). Otherwise the new one
    /// takes the old one's place: the mailbox is untouched, the counters carry
    /// over, the old instance's open requests are abandoned and those it held
    /// end `target-stopped` (the new instance cannot know them). An actor
    /// waiting for its restart is restarted now, from the new component; a
    /// member of a group whose strategy restarts others with it waits for
    /// its group's restart, which makes it from the new component.
    fn upgrade(&mut self, slot: u32, component: Component) -> Result<(), UpgradeError> {
        let mut actor = self.actors[slot as usize].take().expect("live actor");
        let me = actor.info.address;
        let down = matches!(actor.body, Body::Down { .. });
        let Some(Supervisor {
            maker: Maker::Wasm { config, .. },
            ..
        }) = actor.supervisor.as_deref()
        else {
            self.actors[slot as usize] = Some(actor);
            return Err(UpgradeError::Native(me));
        };
        let config = config.clone();
        // A member of a group whose strategy restarts others with it.
        let together = match actor.supervisor.as_deref() {
            Some(Supervisor {
                judge: Judge::Group(g),
                ..
            }) => self.groups[*g as usize].strategy != Strategy::OneForOne,
            _ => false,
        };
        if down && together {
            // A member waiting for its group's restart comes back with the
            // members it restarts with, not before nor without them: the
            // restart, when it comes, makes it from the new component (its
            // `init` is tried then, a failure counting as the group's).
            if let Some(s) = actor.supervisor.as_deref_mut() {
                s.maker = Maker::Wasm { component, config };
            }
            actor.info.upgrades.set(actor.info.upgrades.get() + 1);
            actor.publish();
            self.actors[slot as usize] = Some(actor);
            return Ok(());
        }
        let old = actor.outbox();
        let mut out = Outbox::new(
            me,
            old.name.clone(),
            self.directory.clone(),
            old.masks,
            old.grants.clone(),
        );
        (out.sent, out.denied, out.rate_limited) = (old.sent, old.denied, old.rate_limited);
        // Its timers and subscriptions carry over. The new `init` is a
        // trial: the timers it sets are recorded (a rollback cancels them),
        // its cancels of earlier timers wait for the upgrade to commit, and
        // the subscriptions are restored if it rolls back.
        out.timers = old.timers;
        out.subscribed = old.subscribed;
        out.trial = Some(Box::default());
        let subscriptions = if old.subscribed {
            self.directory.topics.subscriptions_of(me)
        } else {
            Vec::new()
        };
        out.rate = old.rate.clone();
        out.now = self.directory.now_ns();
        // (Commands may run outside a pass.)
        let now = out.now;
        self.set_pass_now(now);
        // The new `init` reads what the old instance stored; a copy, so a
        // rollback leaves the old one's as it was.
        out.storage = old.storage.copy();
        // The old instance's requests, to end if the new one takes over,
        // and its watches, whose targets then forget them.
        let (asked, watched) = if old.requests.open() > 0 {
            (self.table().open_by(me), self.table().monitors_of(me))
        } else {
            (Vec::new(), Vec::new())
        };
        if let Some(trial) = out.trial.as_deref_mut() {
            trial.inherited.clone_from(&asked);
        }
        match WasmActor::spawn(&self.wasm, &component, out, &config, &mut self.table) {
            Ok(new) => {
                let (mut old, _) =
                    std::mem::replace(&mut actor.body, Body::Wasm(new)).into_outbox();
                actor.outbox().storage.adopt(&mut old.storage);
                // Committed: the earlier timers the new `init` cancelled go.
                let trial = actor.outbox().trial.take().unwrap_or_default();
                for id in trial.cancelled {
                    if self.table().cancel_timer(id, me) {
                        actor.outbox().timers -= 1;
                    }
                }
                // And the subscriptions it ended.
                for topic in &trial.unsubscribed {
                    self.directory.topics.unsubscribe(me, topic);
                }
                let ended = self.table().abandon_ids(asked);
                // The answers to what the old instance asked, queued already
                // (the new one's come later): late.
                let late = actor.mailbox.drop_responses();
                self.table().counts.late += late;
                let held: Vec<(u64, Address)> = old.requests.take_deferred().collect();
                if let Some(s) = actor.supervisor.as_deref_mut() {
                    s.maker = Maker::Wasm { component, config };
                }
                actor.info.upgrades.set(actor.info.upgrades.get() + 1);
                if down {
                    // Its restart has come.
                    self.restarts.retain(|Reverse((_, s, _))| *s != slot);
                    let queued = !actor.mailbox.is_empty();
                    actor.scheduled = queued;
                    if queued {
                        self.ready.push_back(slot);
                    }
                }
                actor.publish();
                let generation = actor.generation;
                let name = actor.info.name.clone();
                self.actors[slot as usize] = Some(actor);
                // Back in its slot first, so that a revoke or a forgotten
                // watch of itself finds it (see `go_down`).
                self.revoke_abandoned(me, ended);
                self.forget(me, watched);
                for (id, requester) in held {
                    self.route(Envelope::failure(
                        requester,
                        me,
                        id,
                        RequestError::TargetStopped,
                    ));
                }
                // What the new `init` sent (a stop of itself included: it
                // may be gone after this).
                self.route_staged(slot);
                log::info!("wasmshard: actor `{name}` ({me}) upgraded (generation {generation})");
                Ok(())
            }
            Err(failed) => {
                let (end, mut out) = *failed;
                self.actors[slot as usize] = Some(actor);
                // Rolled back. Children the new `init` spawned never start;
                // what it sent goes on its way, but the requests and watches
                // it made have nobody to end for.
                self.discard_children(std::mem::take(&mut out.spawns));
                let mut staged = std::mem::take(&mut out.staged);
                let made: Vec<u64> = staged
                    .iter()
                    .filter_map(|e| match e.kind {
                        Kind::Request(id, _) | Kind::Monitor(id) => Some(id),
                        _ => None,
                    })
                    .collect();
                let ended = self.table().abandon_ids(made);
                // The timers the new `init` set go; those it cancelled stay.
                let trial = out.trial.take().unwrap_or_default();
                for id in trial.scheduled {
                    self.table().cancel_timer(id, me);
                }
                // The subscriptions are the old instance's again.
                if out.subscribed {
                    self.directory.topics.restore(me, &subscriptions);
                }
                // A stop of the actor itself was the new instance's wish to
                // end: the old one, which stays, did not ask for it.
                staged.retain(|e| match e.kind {
                    Kind::Monitor(_) => false,
                    Kind::Stop => e.to != me,
                    _ => true,
                });
                for env in staged {
                    self.route(env);
                }
                // After the requests themselves, so a revoke finds its
                // request queued and has it shed.
                self.revoke_abandoned(me, ended);
                match end {
                    InitEnd::Failed(e) => Err(UpgradeError::Init(e)),
                    InitEnd::Panicked(payload) => std::panic::resume_unwind(payload),
                }
            }
        }
    }

    /// Restarts the supervised actors whose backoff has passed by `now` (those
    /// due when it begins: a restart that fails again waits its turn).
    fn fire_restarts(&mut self, now: u64) {
        // One at a time: a restart that fails may put off the restarts of
        // its group's other members (see `fail`). Those due again at once
        // (no backoff) wait for the next pass.
        let mut fired = Vec::new();
        while let Some(&Reverse((at, slot, generation))) = self.restarts.peek() {
            if at > now || fired.contains(&slot) {
                break;
            }
            self.restarts.pop();
            fired.push(slot);
            self.restart(slot, generation);
        }
    }

    fn flush_overflow(&mut self) {
        for dest in 0..self.overflow.len() {
            while let Some(env) = self.overflow[dest].pop_front() {
                match self.ring_push(dest, env) {
                    Ok(()) => {
                        self.counts.remote_out += 1;
                        self.overflowing -= 1;
                        self.touched[dest] = true;
                        self.backoff = MIN_BACKOFF;
                    }
                    Err(env) => {
                        self.overflow[dest].push_front(env);
                        break;
                    }
                }
            }
        }
        if self.touched.iter().any(|&t| t) {
            // Pairs with the fence in `park`: either we see the target parked, or it
            // sees our envelopes when it re-checks its rings.
            fence(Ordering::SeqCst);
            for dest in 0..self.touched.len() {
                if std::mem::take(&mut self.touched[dest]) {
                    self.shared.shards[dest].wake();
                }
            }
        }
    }

    fn publish(&mut self) {
        self.counts.overflow = self.overflowing as u64;
        self.counts.restarting = self.restarts.len() as u64;
        self.counts.groups = (self.groups.len() - self.free_groups.len()) as u64;
        if let Some(table) = &self.table {
            self.handle().counters.publish(&self.counts, &table.counts);
        }
    }

    fn inbound_pending(&self) -> bool {
        self.pending_besides_rings()
            || (0..self.shared.shards.len()).any(|from| {
                from != self.id
                    && self
                        .shared
                        .inbound(from, self.id)
                        .is_some_and(|r| !r.is_empty())
            })
    }

    /// Whether anything waits but in the rings: a caught envelope, a
    /// command, something from the host.
    #[inline]
    fn pending_besides_rings(&self) -> bool {
        let me = self.handle();
        self.caught.is_some() || !me.control.is_empty() || !me.host_inbox.is_empty()
    }

    /// A spinning shard's look at its queues: whether anything waits. A ring
    /// is looked at by taking its first envelope (into `caught`): what ends
    /// the spin is then in hand, and runs at once (`hop`).
    fn poll_inbound(&mut self) -> bool {
        if self.pending_besides_rings() {
            return true;
        }
        for from in 0..self.shared.shards.len() {
            if from == self.id {
                continue;
            }
            if let Some(env) = self.ring_pop(from) {
                self.caught = Some((from, env));
                return true;
            }
        }
        false
    }

    /// Whether a ring this shard's overflow waits for has room now.
    fn overflow_has_room(&self) -> bool {
        self.overflowing > 0
            && (0..self.overflow.len()).any(|dest| {
                !self.overflow[dest].is_empty() && !self.shared.outbound(self.id, dest).is_full()
            })
    }

    /// Sleeps until woken, until the next request deadline, or for `cap` at most,
    /// after a spin that never runs past that deadline. Without a cap (the
    /// shard simply ran out of work) the spin is as long as the adaptive spin
    /// says (see [`crate::parking`]), and the shard learns from how long the
    /// work took to come; with one (a back-off) it is `park_spin` at most and
    /// teaches nothing.
    fn park(&mut self, cap: Option<Duration>) {
        let deadline = self.next_deadline();
        // The tick first: a reading labelled with it is never older than it.
        let first_tick = self.shared.ticks();
        let idle_since = self.directory.now_ns();
        // Spin first: work that arrives soon is taken without a syscall on
        // either side.
        let mut spin = match cap {
            None => self.spin.current(),
            // A back-off: never the learnt spin, never longer than the sleep.
            Some(c) => self.spin.base().min(c),
        };
        if let Some(d) = deadline {
            spin = spin.min(Duration::from_nanos(d.saturating_sub(idle_since)));
        }
        if !spin.is_zero() {
            let until = idle_since.saturating_add(spin.as_nanos() as u64);
            let (mut now, mut tick) = (idle_since, first_tick);
            loop {
                // The clock costs more than a look at the queues: read it
                // once per `SPIN_POLLS` looks, so work is seen sooner.
                for _ in 0..SPIN_POLLS {
                    if self.poll_inbound() || self.overflow_has_room() {
                        if self.caught.is_some() {
                            self.spun_clock = Some((now, tick));
                        }
                        return;
                    }
                    std::hint::spin_loop();
                }
                tick = self.shared.ticks();
                now = self.directory.now_ns();
                if now >= until {
                    break;
                }
            }
        }
        if cap.is_none() && self.removed_since_trim >= TRIM_AFTER {
            // Many actors stopped: what they held was freed, but a heap keeps
            // freed pages resident until trimmed. Once per many stops, after
            // the spin found no work, before a sleep with nothing waiting
            // (not in a back-off park, which has overflow waiting).
            self.removed_since_trim = 0;
            crate::sys::trim_heap();
        }
        self.counts.parks += 1;
        self.publish();
        let timeout =
            deadline.map(|d| Duration::from_nanos(d.saturating_sub(self.directory.now_ns())));
        let timeout = match (timeout, cap) {
            (Some(t), Some(c)) => Some(t.min(c)),
            (t, c) => t.or(c),
        };
        let me = &self.shared.shards[self.id];
        // A placement that comes while this sleeps wakes it only if it holds
        // something for an actor not placed yet (see `command_lazily`).
        me.holds_unplaced
            .store(!self.unplaced.is_empty(), Ordering::SeqCst);
        me.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.inbound_pending() {
            me.parked.store(false, Ordering::SeqCst);
            self.counts.parks -= 1;
            return;
        }
        self.shared.shard_idle();
        let asleep = std::time::Instant::now();
        self.parker.park(timeout);
        me.parked.store(false, Ordering::SeqCst);
        self.shared.shard_busy();
        if cap.is_none() {
            if self.inbound_pending() {
                self.spin.woke(Some(Duration::from_nanos(
                    self.directory.now_ns().saturating_sub(idle_since),
                )));
            } else if timeout.is_some_and(|t| asleep.elapsed() >= t) {
                // Its deadline came, and no work with it.
                self.spin.woke(None);
            }
            // (Nothing to learn from a wake-up for nothing before the time-out:
            // a stale wake from a sender that saw the flag set as this shard
            // found its work before sleeping.)
            self.counts.spin_ns = self.spin.current().as_nanos() as u64;
        }
    }

    /// Shutdown, phase three, once every shard is sealed (nothing more can arrive):
    /// what is left in the inbound queues is a dead letter, and the shard ends.
    pub(crate) fn exit(mut self) -> ShardExit {
        self.stopping = true;
        self.drain_inbound();
        self.seal();
        self.table().end_host_waiters(RequestError::TargetStopped);
        self.publish();
        ShardExit {
            dead_letters: std::mem::take(&mut self.dead_letters),
        }
    }
}

/// What waits in `Shard::unplaced` for an actor its shard has not placed yet.
enum Waiting {
    Envelope(Envelope),
    /// A host command that acts on the actor (`Command::waits_for`).
    Command(Address, Command),
}

impl Waiting {
    /// The actor it waits for.
    fn to(&self) -> Address {
        match self {
            Waiting::Envelope(env) => env.to,
            Waiting::Command(to, _) => *to,
        }
    }
}

/// Room for staged envelopes an outbox keeps whatever its invocations use
/// (about 28 KB).
const KEEP_STAGED: usize = 256;

/// Invocations over which an outbox's room for staged envelopes beyond
/// [`KEEP_STAGED`] is weighed against what they used.
const STAGED_WINDOW: u32 = 1024;

/// Weighs the room `out` keeps for staged envelopes, beyond [`KEEP_STAGED`],
/// after each of its invocations: once every [`STAGED_WINDOW`], room over
/// four times what the most staging of them used is given back (down to
/// twice that). One invocation
/// that staged a flood (a publish to a large topic, frames to many targets)
/// so does not keep its room for the actor's life, while an actor that stages
/// that much now and then (once in a window) keeps it and allocates nothing.
#[cold]
#[inline(never)]
fn keep_staged(out: &mut Outbox) {
    // Before routing: what this invocation staged is in it (the room is
    // never cut below that), and one that staged nothing counts too.
    let used = out.staged.len();
    weigh_staged(
        &mut out.staged_peak,
        &mut out.staged_calls,
        &mut out.staged,
        used,
    );
}

/// [`keep_staged`]'s reckoning, on the outbox's two counters.
fn weigh_staged(peak: &mut usize, calls: &mut u32, staged: &mut Vec<Envelope>, used: usize) {
    *peak = (*peak).max(used);
    *calls += 1;
    if *calls < STAGED_WINDOW {
        return;
    }
    let kept = (*peak).max(KEEP_STAGED);
    if staged.capacity() > 4 * kept {
        staged.shrink_to(2 * kept);
    }
    *peak = 0;
    *calls = 0;
}

/// A spawn into a group the shard does not have (a defect if it happens: the
/// host checks group handles against their runtime and shard).
fn no_such_group(shard: usize) -> SpawnError {
    SpawnError::Policy(PolicyError::Restart(format!(
        "shard {shard} has no such group"
    )))
}

/// A failure beyond an intensity: `what` it says, with the last failure as
/// its source.
fn gave_up(what: String, last: Failure) -> Failure {
    Failure::new(
        FailureKind::RestartsExhausted,
        format!("{what}; last failure: {last}"),
        Some(crate::error::cause(last)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room for staged envelopes beyond 256 is kept while a window of
    /// invocations uses a quarter of it, and given back (to twice what they
    /// used) once one does not.
    #[test]
    fn staging_room_is_kept_while_used_and_given_back_after_a_flood() {
        let (mut peak, mut calls) = (0, 0);
        let mut staged: Vec<Envelope> = Vec::with_capacity(100_000);
        // A flood now and then (once a window): kept.
        for round in 0..3 {
            for call in 0..STAGED_WINDOW {
                let used = if call == 7 { 60_000 } else { 3 };
                weigh_staged(&mut peak, &mut calls, &mut staged, used);
            }
            assert!(staged.capacity() >= 100_000, "round {round}");
        }
        // A window without one: given back, down to twice the 256 kept.
        for _ in 0..STAGED_WINDOW {
            weigh_staged(&mut peak, &mut calls, &mut staged, 3);
        }
        assert!(
            staged.capacity() <= 2 * KEEP_STAGED,
            "{}",
            staged.capacity()
        );
        assert!(staged.capacity() >= KEEP_STAGED);
    }
}
