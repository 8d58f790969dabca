//! Spawns that do not wait for the shard: a spawn from the host takes its slot
//! and registers its name on the caller's thread (both lock-free or under the
//! name registry's lock, never the shard's), instantiates the component and runs
//! its `init` there, then hands the started actor to its shard in a control
//! command and returns. The shard places it when it takes its commands: it
//! registers the actor, starts what `init` spawned, routes what it sent.
//! A parked shard is woken for the placement only if `init` sent or spawned
//! something, or the shard parked holding what arrived for an actor not
//! placed yet; otherwise the placement waits for the shard's next wake-up
//! (every pass takes the commands first; what a busy shard takes from its
//! queues in the middle of a pass before that waits for the placement, in
//! order), or for 1 024 placements to wait, and a burst of spawns costs the
//! spawning thread one system call per 1 024 and leaves it the cores between
//! (see `ShardHandle::command_lazily`).
//!
//! Until the shard has placed it, the actor's address is live in the slot table
//! (senders are admitted) but the shard has no actor in the slot: the shard
//! holds what arrives for it (`Shard::unplaced`) and delivers it, in order,
//! when the actor is placed.
//!
//! `init` may open requests, timers and monitors, which live in the shard's
//! request table. The first such call borrows the table: it asks the shard for
//! it (a control command) and the shard, once it takes the command, lends it and
//! waits until the spawn hands it back with the started actor, then places the
//! actor at once. Such a spawn costs what a spawn on the shard costs; one whose
//! `init` only sends (the usual case) never waits for the shard. A failed spawn
//! waits for the shard to undo it (so its name is free when `spawn` returns).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::actor::{Body, InitEnd, Unstarted, WasmActor, WasmSettings};
use crate::address::Address;
use crate::component::Component;
use crate::directory::Directory;
use crate::error::{Capacity, SpawnError};
use crate::grants::{Grants, Masks};
use crate::outbox::Outbox;
use crate::requests::Requests;
use crate::shared::{Command, Shared, SpawnBody};
use crate::stats::ActorInfo;
use crate::storage::Storage;
use crate::supervision::{Judge, Maker, Plan, Supervisor};

/// A spawn's slot, taken, and its name, enrolled: its address is known.
pub(crate) struct Reserved {
    pub(crate) slot: u32,
    pub(crate) name: Arc<str>,
    pub(crate) me: Address,
    pub(crate) masks: Masks,
}

/// Takes a slot of `shard` and enrolls `name` (reserved) there for `body`.
/// On failure the slot is given back (the name stays reserved: the caller
/// frees it).
pub(crate) fn reserve(
    directory: &Directory,
    shard: usize,
    name: Arc<str>,
    body: &SpawnBody,
) -> Result<Reserved, SpawnError> {
    with_slot(directory, shard, body, |slot, accepts, grants| {
        let (me, masks) =
            directory.enroll(&name, (shard, slot), accepts, grants, Address::HOST, true)?;
        Ok((name, me, masks))
    })
}

/// Takes a slot of `shard` and claims `name` there for `body`: a spawn from
/// the host, whose name is not reserved yet, under one hold of the name
/// registry's write lock (see [`Directory::claim`]). On failure nothing is
/// held.
pub(crate) fn claim(
    directory: &Directory,
    shard: usize,
    name: &str,
    body: &SpawnBody,
) -> Result<Reserved, SpawnError> {
    // A taken name is the first thing a spawn reports, and a spawn bound to
    // fail on it takes no slot: while it held one, a spawn beside it could
    // find the shard full.
    if directory.is_taken(name) {
        return Err(SpawnError::NameTaken(name.to_string()));
    }
    with_slot(directory, shard, body, |slot, accepts, grants| {
        directory.claim(name, (shard, slot), accepts, grants)
    })
}

/// Takes a slot of `shard` and makes it `body`'s by `enroll` (given the slot,
/// the codecs the actor accepts and its grants; `None`: trusted), which
/// answers its name, address and masks. On failure the slot is given back.
fn with_slot(
    directory: &Directory,
    shard: usize,
    body: &SpawnBody,
    enroll: impl FnOnce(u32, u8, Option<&Grants>) -> Result<(Arc<str>, Address, Masks), SpawnError>,
) -> Result<Reserved, SpawnError> {
    // Every slot is used once before any is reused, and then the one free the
    // longest first. The table has spare slots beyond `max_actors` (as many
    // again, up to 4096), so even on a full shard a freed slot waits behind
    // the spare ones: an address can only recur after 2^32 spawns into one
    // slot (its generation wraps), at least 2^32 × spare spawns on the shard
    // (see `Address`).
    let pool = directory.pool(shard);
    let Some(slot) = pool.take() else {
        return Err(SpawnError::NoCapacity(Capacity::ShardFull {
            shard,
            slots: pool.max(),
        }));
    };
    let (accepts, grants) = match body {
        SpawnBody::Wasm {
            accepts, grants, ..
        } => (*accepts, Some(&**grants)),
        SpawnBody::Native(..) => (0, None),
    };
    match enroll(slot, accepts, grants) {
        Ok((name, me, masks)) => Ok(Reserved {
            slot,
            name,
            me,
            masks,
        }),
        Err(e) => {
            // Never live: the slot waits at the back of the line.
            pool.give_back(slot);
            Err(e)
        }
    }
}

/// The group an actor joins, if its body names one.
pub(crate) fn group_of(body: &SpawnBody) -> Option<u32> {
    match body {
        SpawnBody::Wasm {
            plan: Some(Plan::Group(g)),
            ..
        }
        | SpawnBody::Native(_, Some((Plan::Group(g), _))) => Some(*g),
        _ => None,
    }
}

/// Who supervises an actor of `plan` made by `maker` (every component has
/// one; a native actor only when supervised).
pub(crate) fn supervisor_of(plan: Option<Plan>, maker: Option<Maker>) -> Option<Supervisor> {
    let maker = maker?;
    let judge = match plan {
        Some(Plan::Own(restart)) => Judge::Own(crate::supervision::Intensity::new(restart)),
        Some(Plan::Group(g)) => Judge::Group(g),
        None => Judge::Unsupervised,
    };
    Some(Supervisor { maker, judge })
}

/// Readies `out` for a component's start: the clock read now (a spawn may
/// run outside a pass; its `init`'s requests and quota count from it), its
/// quota, and the storage its name finds: what it stored durably before, with
/// a storage directory and a name (`registered`); otherwise empty, in memory.
pub(crate) fn prepare(
    directory: &Directory,
    out: &mut Outbox,
    rate: Option<crate::grants::Rate>,
    registered: bool,
) -> Result<(), crate::error::Cause> {
    out.now = directory.now_ns();
    if let Some(rate) = rate {
        out.rate = Some(Box::new(crate::grants::Bucket::new(rate)));
    }
    out.storage = match &directory.durable {
        Some(durable) if registered => {
            Storage::durable(out.name.clone(), durable.clone()).map_err(crate::durable::failure)?
        }
        _ => Storage::default(),
    };
    Ok(())
}

/// An actor started (or whose start failed), for its shard to place (or undo).
pub(crate) struct Placement {
    pub(crate) slot: u32,
    pub(crate) name: Arc<str>,
    pub(crate) me: Address,
    /// The grant labels its name holds (given back if it never starts).
    pub(crate) held: u64,
    pub(crate) native: bool,
    pub(crate) body: Result<Body, Unstarted>,
    pub(crate) supervisor: Option<Supervisor>,
    /// Its entry in the runtime's stats, if its spawn listed it already (a
    /// spawn off the shard lists an actor as soon as it started).
    pub(crate) info: Option<Arc<ActorInfo>>,
}

/// The shard's request table, lent to a spawn's `init` off the shard, coming
/// back with the started actor and where to answer.
pub(crate) struct Returned {
    pub(crate) table: Box<Requests>,
    pub(crate) placement: Box<Placement>,
    pub(crate) reply: SyncSender<Result<Address, SpawnError>>,
}

/// How an `init` running off its shard borrows the shard's request table.
pub(crate) struct Lend {
    shared: Arc<Shared>,
    shard: usize,
    /// Where the table goes back, once the shard lent it.
    back: Option<SyncSender<Returned>>,
    /// The shard would not lend it (stopping, failed): calls that need it
    /// fail as they do during shutdown.
    refused: bool,
    /// `borrow` waited for the shard, and the call that borrowed has not yet
    /// given `init` its CPU budget again ([`Lend::waited`]).
    waited: bool,
}

impl Lend {
    /// Asks the shard for its table and waits until it is lent (`None`: the
    /// shard refused, or has gone).
    #[cold]
    #[inline(never)]
    pub(crate) fn borrow(&mut self) -> Option<Box<Requests>> {
        if self.back.is_some() || self.refused {
            return None;
        }
        let (give, given) = sync_channel(1);
        let (back, returned) = sync_channel(1);
        self.shared.shards[self.shard].command(Command::Lend {
            give,
            back: returned,
        });
        // However long the shard takes to lend it (it may be running
        // anything), the time is not `init`'s: the call gives its budget
        // back afterwards.
        self.waited = true;
        match given.recv() {
            Ok(table) => {
                self.back = Some(back);
                Some(table)
            }
            Err(_) => {
                self.refused = true;
                None
            }
        }
    }

    /// Whether a `borrow` waited for the shard since the last look: the
    /// epoch ticked on meanwhile, so the caller arms `init`'s CPU budget
    /// afresh (at most once an `init`: it borrows once).
    pub(crate) fn waited(&mut self) -> bool {
        std::mem::take(&mut self.waited)
    }
}

/// Makes the actor `reserved` is for from `body`: a native actor as it is, a
/// component by `start` (its outbox, quota, component and config in; the
/// instance with `init` run, or why not with the outbox, out). Not listed in
/// the stats (`info` is `None`).
pub(crate) fn make(
    directory: &Arc<Directory>,
    reserved: Reserved,
    body: SpawnBody,
    start: impl FnOnce(
        Outbox,
        Option<crate::grants::Rate>,
        &Component,
        &[u8],
    ) -> Result<WasmActor, Unstarted>,
) -> Placement {
    let Reserved {
        slot,
        name,
        me,
        masks,
    } = reserved;
    let native = matches!(body, SpawnBody::Native(..));
    let grants = match &body {
        SpawnBody::Wasm { grants, .. } => Some(grants.clone()),
        SpawnBody::Native(..) => None,
    };
    let out = Outbox::new(me, name.clone(), directory.clone(), masks, grants);
    let (body, maker, plan) = match body {
        SpawnBody::Native(actor, supervision) => {
            let (plan, maker) = match supervision {
                Some((plan, factory)) => (Some(plan), Some(Maker::Native(factory))),
                None => (None, None),
            };
            let out = Box::new(out);
            (Ok(Body::Native { actor, out }), maker, plan)
        }
        SpawnBody::Wasm {
            component,
            config,
            rate,
            plan,
            ..
        } => {
            let body = start(out, rate, &component, &config).map(Body::Wasm);
            (body, Some(Maker::Wasm { component, config }), plan)
        }
    };
    Placement {
        slot,
        name,
        me,
        held: masks.held,
        native,
        body,
        supervisor: supervisor_of(plan, maker),
        info: None,
    }
}

/// Starts the actor `reserved` is for, from `body`, on the caller's thread,
/// and hands it to its shard. Returns its address once it is handed over (or,
/// if its `init` borrowed the shard's table or failed, once the shard has
/// placed or undone it).
pub(crate) fn spawn_here(
    shared: &Arc<Shared>,
    directory: &Arc<Directory>,
    settings: &WasmSettings,
    shard: usize,
    reserved: Reserved,
    body: SpawnBody,
) -> Result<Address, SpawnError> {
    let mut table = None;
    let start = |mut out: Outbox,
                 rate: Option<crate::grants::Rate>,
                 component: &Component,
                 config: &[u8]| {
        out.lend = Some(Box::new(Lend {
            shared: shared.clone(),
            shard,
            back: None,
            refused: false,
            waited: false,
        }));
        match prepare(directory, &mut out, rate, true) {
            Ok(()) => {
                // The epoch ticker runs while something is busy: `init`'s
                // CPU budget is cut here as on a shard.
                let _busy = Busy::new(shared);
                // As on the shard: a call from `init` (a log sink's) into
                // this runtime that would wait for a shard refuses.
                crate::shard::as_shard(directory.id, || {
                    WasmActor::spawn(settings, component, out, config, &mut table)
                })
            }
            Err(e) => Err(Box::new((InitEnd::Failed(SpawnError::Storage(e)), out))),
        }
    };
    let mut placement = Box::new(make(directory, reserved, body, start));
    let me = placement.me;
    let lend = match &mut placement.body {
        Ok(Body::Wasm(w)) => w.store.data_mut().out.lend.take(),
        Ok(_) => None,
        Err(failed) => failed.1.lend.take(),
    };
    let failed = placement.body.is_err();
    if !failed {
        // Listed as soon as it started, so the stats show it once `spawn`
        // returns (its counters are published by its shard).
        let info = Arc::new(ActorInfo::new(placement.name.clone(), me, placement.native));
        shared.register_actor(info.clone());
        placement.info = Some(info);
    }
    let handle = &shared.shards[shard];
    if let Some(Lend {
        back: Some(back), ..
    }) = lend.as_deref()
    {
        // The shard lent its table and waits for it: it places the actor as
        // it takes the table back, and answers.
        let (reply, answer) = sync_channel(1);
        let table = table.expect("a borrowed table comes back from `init`");
        let returned = Returned {
            table,
            placement,
            reply,
        };
        if back.send(returned).is_err() {
            // Only a defect of the runtime drops a lending shard's side.
            return Err(SpawnError::ShardFailed { shard });
        }
        return wait(&answer, shard);
    }
    #[cfg(feature = "testing")]
    shared.placement_gate();
    if failed {
        let (reply, answer) = sync_channel(1);
        handle.command(Command::Place {
            placement,
            reply: Some(reply),
        });
        return wait(&answer, shard);
    }
    // A parked shard is woken only if `init` left it something to do now
    // (children to start, messages to route); otherwise it places the actor
    // when it next wakes, before anything else, which is before anything
    // reaches the actor.
    let urgent = match &placement.body {
        Ok(Body::Wasm(w)) => {
            let out = &w.store.data().out;
            !out.staged.is_empty() || !out.spawns.is_empty()
        }
        _ => false,
    };
    let place = Command::Place {
        placement,
        reply: None,
    };
    if urgent {
        handle.command(place);
    } else {
        handle.command_lazily(place);
    }
    Ok(me)
}

/// The shard's answer to a placement it was asked to answer. A spawn never
/// runs beside shutdown (which takes the runtime), so an answer that never
/// comes means the shard failed while placing it.
fn wait(
    answer: &Receiver<Result<Address, SpawnError>>,
    shard: usize,
) -> Result<Address, SpawnError> {
    answer
        .recv()
        .unwrap_or(Err(SpawnError::ShardFailed { shard }))
}

/// Counts the caller's thread as busy while it runs an `init` (the epoch
/// ticker runs while anything is busy, and CPU budgets need its ticks).
struct Busy<'a>(&'a Shared);

impl<'a> Busy<'a> {
    fn new(shared: &'a Shared) -> Busy<'a> {
        shared.shard_busy();
        Busy(shared)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.shard_idle();
    }
}
