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
//! | `names` (names, grant labels) | spawn (reserve, on the host thread; enroll, on the shard), stop and failure (unregister, on the shard) | `lookup` from any thread | `RwLock` (a control path: never taken to deliver a message) |
//! | `trails[s]` | actors of shard `s` (a denial) | `Runtime::audit` | `Mutex`, one per shard: taken only to record a denial or to read |
//! | `closing` | the host, once, at shutdown | host sends, spawns | Release store / Acquire load |
//! | `handle_sends` | sends through a `Handle`, from any thread | shutdown, which waits for it to reach 0 after setting `stopping` | SeqCst with `stopping`: a send sees `stopping`, or shutdown sees the send |
//! | `stopping` | the host, once, after the shutdown drain | actors' refused sends and requests; sends through a `Handle` | Release store / Acquire load, on the refusal path only; SeqCst with `handle_sends` |
//! | `pools[s]` (free slots) | the host (spawns take a slot), shard `s` (stops and failures give slots back; its actors' spawns take them) | the same | lock-free: atomic counts and a `SegQueue` |
//! | `components` (registered for spawns from actors) | the host (`register_component`) | actors spawning, on their shard | `RwLock` (a control path) |
//! | limits, default grants, clock start, log sink | nobody after construction | anyone | immutable |

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ahash::AHashMap;

use crate::address::Address;
use crate::audit::{Denial, Record, Trail};
use crate::component::Component;
use crate::config::Config;
use crate::durable::Durable;
use crate::error::{SendError, SpawnError};
use crate::grants::{Grants, Labels, Masks};
use crate::log::{self, LogLevel, LogSink};
use crate::slots::{SlotPool, SlotTable};
use crate::sys::Clock;

/// The name registry: names and the grant labels their patterns use.
#[derive(Default)]
struct Names {
    map: AHashMap<Arc<str>, Address>,
    labels: Labels,
}

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
    /// Timers one actor may have pending.
    pub(crate) max_timers: u32,
    /// Which of the host's messages start a trace.
    pub(crate) sampler: crate::trace::Sampler,
    /// Names (patterns) of the actors whose messages are logged.
    message_log: Box<[Box<str>]>,
    /// Epoch ticks so far (the shards' coarse clock; zero for ever on a
    /// manual runtime): a clock reading taken before the last tick is stale.
    pub(crate) ticks: Arc<AtomicU64>,
    /// The actor that receives dead letters (by name), and its address as last
    /// found (0: not yet).
    pub(crate) dead_letter_actor: Option<Arc<str>>,
    pub(crate) dead_letter_to: std::sync::atomic::AtomicU64,
    /// The addresses the dead-letter actor had before (the last
    /// `PAST_DEAD_LETTER_ACTORS`): a letter forwarded to one of them that
    /// finds it gone is not forwarded again.
    pub(crate) dead_letter_past: Mutex<std::collections::VecDeque<Address>>,
    /// Subscriptions to topics.
    pub(crate) topics: crate::topics::Topics,
    /// Bytes one actor may keep in its storage.
    pub(crate) storage_quota: usize,
    /// The durable store, with a storage directory.
    pub(crate) durable: Option<Arc<Durable>>,
    /// `slots[s]`: the slot table of shard `s`.
    slots: Box<[SlotTable]>,
    /// `pools[s]`: the free slots of shard `s`.
    pools: Box<[SlotPool]>,
    /// Components actors may spawn, by the name they were registered under.
    components: RwLock<AHashMap<Arc<str>, Component>>,
    /// The grants of an actor spawned by a native actor (which is trusted, but
    /// its component children are not).
    pub(crate) default_grants: Arc<Grants>,
    /// The quota of an actor spawned by a native actor.
    pub(crate) default_rate: Option<crate::grants::Rate>,
    names: RwLock<Names>,
    /// `trails[s]`: the last denials of shard `s`'s actors.
    trails: Box<[Mutex<Trail>]>,
    clock: Clock,
    log_sink: Option<LogSink>,
    closing: AtomicBool,
    /// Sends through a [`Handle`](crate::Handle) under way (shutdown waits for
    /// them once `stopping` is set, so none lands after the shards are gone).
    handle_sends: AtomicUsize,
    /// Set after the shutdown drain: nothing new is admitted any more.
    stopping: AtomicBool,
}

impl Directory {
    pub(crate) fn new(
        config: &Config,
        log_sink: Option<LogSink>,
        durable: Option<Arc<Durable>>,
        ticks: Arc<AtomicU64>,
    ) -> Directory {
        static RUNTIMES: AtomicU64 = AtomicU64::new(1);
        Directory {
            id: RUNTIMES.fetch_add(1, Ordering::Relaxed),
            mailbox_capacity: config.mailbox_capacity,
            max_payload: config.max_payload,
            max_open_requests: config.max_open_requests,
            max_timers: config.max_timers,
            sampler: crate::trace::Sampler::new(config.trace_sampling),
            message_log: config
                .log_messages
                .iter()
                .map(|p| p.as_str().into())
                .collect(),
            ticks,
            dead_letter_actor: config.dead_letter_actor.clone(),
            dead_letter_to: std::sync::atomic::AtomicU64::new(0),
            dead_letter_past: Mutex::default(),
            topics: crate::topics::Topics::new(config.shards),
            storage_quota: config.storage_quota,
            durable,
            slots: (0..config.shards)
                .map(|_| SlotTable::new(config.slots_per_shard()))
                .collect(),
            pools: {
                // `max_actors` holds across all shards.
                let live = Arc::default();
                (0..config.shards)
                    .map(|_| {
                        SlotPool::new(
                            config.slots_per_shard(),
                            config.max_actors,
                            Arc::clone(&live),
                        )
                    })
                    .collect()
            },
            components: RwLock::new(AHashMap::new()),
            default_grants: config.default_grants.clone(),
            default_rate: config.default_rate,
            names: RwLock::new(Names::default()),
            trails: (0..config.shards)
                .map(|_| Mutex::new(Trail::new(config.audit_capacity)))
                .collect(),
            clock: Clock::new(),
            log_sink,
            closing: AtomicBool::new(false),
            handle_sends: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Whether the messages of the actor called `name` are logged.
    pub(crate) fn logs_messages(&self, name: &str) -> bool {
        self.message_log
            .iter()
            .any(|p| crate::grants::pattern_matches(p, name))
    }

    /// How many shards the runtime has.
    pub(crate) fn shard_count(&self) -> usize {
        self.slots.len()
    }

    /// The slot table of `shard`.
    #[inline]
    pub(crate) fn slots(&self, shard: usize) -> &SlotTable {
        &self.slots[shard]
    }

    /// The slot table of `shard`, if there is one.
    pub(crate) fn slots_of(&self, shard: usize) -> Option<&SlotTable> {
        self.slots.get(shard)
    }

    /// Reserves room for one message in `to`'s mailbox, from a sender whose
    /// grant for the operation is `mask` (the host's: every bit).
    #[inline]
    pub(crate) fn admit(&self, to: Address, payload: &[u8], mask: u64) -> Result<(), SendError> {
        match self.slots.get(to.shard()) {
            Some(slots) => slots.admit(
                to.slot(),
                to.generation(),
                self.mailbox_capacity,
                payload,
                mask,
            ),
            None => Err(crate::slots::no_actor(mask, 0, to.generation())),
        }
    }

    /// The address registered under `name`, if a sender whose `lookup` grant is
    /// `mask` may see it: `Err(())` when the name exists but is hidden from it.
    pub(crate) fn lookup(&self, name: &str, mask: u64) -> Result<Option<Address>, ()> {
        // No actor has a longer name: a guest's megabytes of name are not
        // hashed under the lock every spawn and stop waits for.
        if name.len() > crate::config::MAX_NAME_LEN {
            return Ok(None);
        }
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        let Some(&a) = names.map.get(name).filter(|a| **a != Address::HOST) else {
            return Ok(None);
        };
        if mask == u64::MAX {
            return Ok(Some(a));
        }
        match self.slots(a.shard()).labels(a.slot(), a.generation()) {
            Some(labels) if labels & mask != 0 => Ok(Some(a)),
            Some(_) => Err(()),
            // Registered, not yet (or no longer) live: as absent.
            None => Ok(None),
        }
    }

    /// Whether `name` is registered or reserved.
    pub(crate) fn is_taken(&self, name: &str) -> bool {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names.map.contains_key(name)
    }

    /// Reserves `name` for an actor being spawned.
    pub(crate) fn reserve(&self, name: &str) -> Result<Arc<str>, SpawnError> {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if names.map.contains_key(name) {
            return Err(SpawnError::NameTaken(name.to_string()));
        }
        let name: Arc<str> = name.into();
        names.map.insert(name.clone(), Address::HOST);
        Ok(name)
    }

    /// Makes the reserved `name` the live actor in `slot` of `shard`, with the
    /// codecs `accepts`, the labels its name matches, and `grants` compiled into
    /// masks (`None`: trusted). New patterns mark the live actors whose names match
    /// them, before the new actor can send. All under the registry's lock, so
    /// that labels are never written but there.
    ///
    /// `parent` spawned it (the host: [`Address::HOST`]). An anonymous actor
    /// (`registered` false) has no name in the registry, and its name matches
    /// no pattern but `*`.
    pub(crate) fn enroll(
        &self,
        name: &Arc<str>,
        at: (usize, u32),
        accepts: u8,
        grants: Option<&Grants>,
        parent: Address,
        registered: bool,
    ) -> Result<(Address, Masks), SpawnError> {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if registered
            && !names
                .map
                .get_key_value(&**name)
                .is_some_and(|(k, a)| Arc::ptr_eq(k, name) && *a == Address::HOST)
        {
            // Not this spawn's reservation (a defect if it happens): refuse
            // rather than give two actors one name.
            return Err(SpawnError::NameTaken(name.to_string()));
        }
        self.make_live(&mut names, name, at, accepts, grants, parent, registered)
    }

    /// Reserves `name` and makes it the live actor in `slot` of `shard`, in
    /// one hold of the registry's lock: [`Directory::reserve`] and
    /// [`Directory::enroll`] for a spawn from the host, which has nothing to
    /// do between the two.
    pub(crate) fn claim(
        &self,
        name: &str,
        at: (usize, u32),
        accepts: u8,
        grants: Option<&Grants>,
    ) -> Result<(Arc<str>, Address, Masks), SpawnError> {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if names.map.contains_key(name) {
            return Err(SpawnError::NameTaken(name.to_string()));
        }
        let name: Arc<str> = name.into();
        let (me, masks) =
            self.make_live(&mut names, &name, at, accepts, grants, Address::HOST, true)?;
        Ok((name, me, masks))
    }

    /// What [`Directory::enroll`] and [`Directory::claim`] do once the name
    /// is theirs, under the registry's lock (`names`).
    #[allow(clippy::too_many_arguments)]
    fn make_live(
        &self,
        names: &mut Names,
        name: &Arc<str>,
        (shard, slot): (usize, u32),
        accepts: u8,
        grants: Option<&Grants>,
        parent: Address,
        registered: bool,
    ) -> Result<(Address, Masks), SpawnError> {
        let Names { map, labels } = names;
        let masks = match grants {
            None => Masks::TRUSTED,
            Some(grants) => labels
                .compile(grants, |bit, pattern| {
                    // A label for a new pattern: nothing may carry it from a
                    // pattern it stood for before (dead slots included: a
                    // sender could tell them from live actors it may not
                    // reach), then the live actors whose names match get it.
                    for table in self.slots.iter() {
                        table.clear_label(bit);
                    }
                    for (n, a) in map.iter().filter(|(_, a)| **a != Address::HOST) {
                        if crate::grants::pattern_matches(pattern, n) {
                            self.slots(a.shard()).mark(a.slot(), a.generation(), bit);
                        }
                    }
                })
                .map_err(SpawnError::Policy)?,
        };
        let own = if registered {
            labels.of(name)
        } else {
            crate::grants::EVERYONE
        };
        self.slots(shard).set_parent(slot, parent);
        let generation = self.slots(shard).activate(slot, accepts, own);
        let me = Address::new(shard, slot, generation);
        if registered {
            map.insert(name.clone(), me);
        }
        Ok((me, masks))
    }

    /// Drops `name` if it is still this spawn's (the very `Arc`
    /// [`Directory::reserve`] or [`Directory::claim`] returned) and names
    /// `address` or is still only reserved, and gives back the grant labels
    /// `held`. A later spawn's reservation of the same name is another `Arc`,
    /// and stays.
    pub(crate) fn unregister(&self, name: &Arc<str>, address: Address, held: u64) {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        names.labels.release(held);
        if names
            .map
            .get_key_value(&**name)
            .is_some_and(|(k, a)| Arc::ptr_eq(k, name) && (*a == address || *a == Address::HOST))
        {
            names.map.remove(&**name);
        }
    }

    /// Records a denial in the trail of the sender's shard.
    pub(crate) fn record(&self, record: Record) {
        if let Some(trail) = self.trails.get(record.from.shard()) {
            trail.lock().unwrap_or_else(|e| e.into_inner()).push(record);
        }
    }

    /// The last denials of each shard (at most the trail's capacity each:
    /// one shard's flood does not push out another's), oldest first.
    pub(crate) fn audit(&self, name_of: impl Fn(Address) -> Option<String>) -> Vec<Denial> {
        let mut all: Vec<Denial> = self
            .trails
            .iter()
            .flat_map(|t| {
                t.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .denials(&name_of)
            })
            .collect();
        all.sort_by_key(|d| d.at_ns);
        all
    }

    /// Monotonic nanoseconds since the runtime started.
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// The free slots of `shard`.
    pub(crate) fn pool(&self, shard: usize) -> &SlotPool {
        &self.pools[shard]
    }

    /// Registers `component` for spawns from actors under `name`; returns the
    /// component it replaces.
    pub(crate) fn register_component(&self, name: &str, component: Component) -> Option<Component> {
        let mut components = self.components.write().unwrap_or_else(|e| e.into_inner());
        components.insert(name.into(), component)
    }

    /// Forgets every registered component (the runtime is shut down).
    pub(crate) fn clear_components(&self) {
        self.components
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The component registered under `name`.
    pub(crate) fn component(&self, name: &str) -> Option<Component> {
        let components = self.components.read().unwrap_or_else(|e| e.into_inner());
        components.get(name).cloned()
    }

    /// Whether the actor `me` (grants compiled to `mask` for the operation) may
    /// act on `to` without sending it anything (`stop`, `monitor`): `to` must be
    /// live, and be `me`, its child, or carry a label of `mask`. Otherwise the
    /// error a send would get (`denied` or `unknown-target`, by the same rule
    /// that hides which addresses are live).
    pub(crate) fn reach(&self, me: Address, to: Address, mask: u64) -> Result<(), SendError> {
        let Some(table) = self.slots.get(to.shard()) else {
            return Err(crate::slots::no_actor(mask, 0, to.generation()));
        };
        // The word first (Acquire), then the parent: a spawn writes the
        // parent before it makes the slot live (Release), so a word read live
        // at `to`'s generation orders the parent read after that spawn's. (In
        // the other order a parent read just before the slot was reused said
        // a stranger at the next generation was its child.)
        let labels = table.labels(to.slot(), to.generation());
        let own = to == me || table.is_parent(to.slot(), me);
        match labels {
            Some(labels) if own || labels & mask != 0 => Ok(()),
            Some(_) => Err(SendError::Denied),
            None if own => Err(SendError::UnknownTarget),
            None => Err(crate::slots::no_actor(
                mask,
                table.last_labels(to.slot()),
                to.generation(),
            )),
        }
    }

    /// Whether the shutdown drain has passed (nothing new is admitted).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
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

    /// A send through a handle begins: `false` (and nothing to undo) once
    /// shutdown has stopped admitting; after `true`,
    /// [`Directory::leave_handle`] when done.
    pub(crate) fn enter_handle(&self) -> bool {
        self.handle_sends.fetch_add(1, Ordering::SeqCst);
        if self.stopping.load(Ordering::SeqCst) {
            self.handle_sends.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Whether sends through a handle are still taken.
    pub(crate) fn takes_handle_sends(&self) -> bool {
        !self.stopping.load(Ordering::Acquire)
    }

    /// A send through a handle is done.
    pub(crate) fn leave_handle(&self) {
        self.handle_sends.fetch_sub(1, Ordering::SeqCst);
    }

    /// Shutdown has drained what it could: from now on a refused send or request
    /// of an actor says `shutting-down`.
    pub(crate) fn stop_admitting(&self) {
        // SeqCst with `enter_handle`: either a handle's send increments first
        // in the single order, and the wait below sees it, or it sees
        // `stopping` and refuses.
        self.stopping.store(true, Ordering::SeqCst);
        while self.handle_sends.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }

    /// Reserves room for one message from an actor in `to`'s mailbox: as
    /// [`Directory::admit`], but once shutdown has drained what it could (its
    /// actors are being stopped), a refusal says `shutting-down`, whatever refused
    /// it. Only the refusal reads the flag: a send costs nothing more.
    #[inline]
    pub(crate) fn admit_from_actor(
        &self,
        to: Address,
        payload: &[u8],
        mask: u64,
    ) -> Result<(), SendError> {
        self.admit(to, payload, mask).map_err(|e| {
            if e != SendError::Denied && self.stopping.load(Ordering::Acquire) {
                SendError::ShuttingDown
            } else {
                e
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuntimeBuilder;

    #[test]
    fn a_failed_spawn_frees_its_own_reservation_only() {
        let d = Directory::new(
            &RuntimeBuilder::new().shards(1).config,
            None,
            None,
            Default::default(),
        );
        let first = d.reserve("x").unwrap();
        // The first spawn fails: its name is freed, and reserved again by a
        // second spawn before the first one's cleanup has finished.
        d.unregister(&first, Address::HOST, 0);
        let second = d.reserve("x").unwrap();
        d.unregister(&first, Address::HOST, 0);
        assert!(
            matches!(d.reserve("x"), Err(SpawnError::NameTaken(_))),
            "the second spawn's reservation was dropped by the first's cleanup"
        );
        // The first spawn cannot enroll under the second's reservation.
        assert!(matches!(
            d.enroll(&first, (0, 0), 0, None, Address::HOST, true),
            Err(SpawnError::NameTaken(_))
        ));
        let (a, masks) = d
            .enroll(&second, (0, 0), 0, None, Address::HOST, true)
            .unwrap();
        assert_eq!(masks, Masks::TRUSTED);
        assert_eq!(d.lookup("x", u64::MAX), Ok(Some(a)));
    }
}
