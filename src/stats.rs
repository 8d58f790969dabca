//! Counters and the snapshots the host reads.
//!
//! Every counter has one writer, the shard that owns it, which publishes it with a
//! plain relaxed store; readers on other threads see a value that may lag by one
//! scheduling turn. No counter is a contended read-modify-write.
//!
//! The counters of a shard are listed once, in the `shard_counters!` invocation
//! below, which defines the public snapshot ([`ShardStats`], [`RequestStats`]),
//! the published copy (`ShardCounters`) and the copies between them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use crate::address::Address;
use crate::grants::Rate;

/// A counter written by one thread and read by any.
#[derive(Default, Debug)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Defines [`ShardStats`] and [`RequestStats`] (plain values: what a shard counts
/// as it goes, and what the host reads) and `ShardCounters` (their published,
/// atomic copy), from one list of fields.
macro_rules! shard_counters {
    (
        shard { $( $(#[$sdoc:meta])* $sfield:ident, )* }
        requests { $( $(#[$rdoc:meta])* $rfield:ident, )* }
    ) => {
        /// A snapshot of one shard's counters.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
        #[non_exhaustive]
        pub struct ShardStats {
            /// The shard's index.
            pub shard: usize,
            $( $(#[$sdoc])* pub $sfield: u64, )*
            /// Requests made from this shard, by its actors or by the host through it.
            pub requests: RequestStats,
        }

        /// Counters of requests, seen from the requesters' shard.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        #[non_exhaustive]
        pub struct RequestStats {
            $( $(#[$rdoc])* pub $rfield: u64, )*
        }

        /// The published copy of one shard's counters: written by the shard, read
        /// by any thread.
        #[derive(Default, Debug)]
        pub(crate) struct ShardCounters {
            $( pub(crate) $sfield: Counter, )*
            requests: RequestCounters,
        }

        #[derive(Default, Debug)]
        struct RequestCounters {
            $( $rfield: Counter, )*
        }

        impl ShardCounters {
            /// Publishes the shard's own counts. Owning shard only.
            pub(crate) fn publish(&self, shard: &ShardStats, requests: &RequestStats) {
                $( self.$sfield.set(shard.$sfield); )*
                $( self.requests.$rfield.set(requests.$rfield); )*
            }

            /// What was last published.
            pub(crate) fn snapshot(&self, shard: usize) -> ShardStats {
                ShardStats {
                    shard,
                    $( $sfield: self.$sfield.get(), )*
                    requests: RequestStats {
                        $( $rfield: self.requests.$rfield.get(), )*
                    },
                }
            }

            /// Requests open with a deadline (not monitors) and pending timers, as
            /// last published.
            pub(crate) fn open_requests(&self) -> u64 {
                self.requests
                    .open
                    .get()
                    .saturating_sub(self.requests.monitors.get())
                    + self.requests.timers.get()
            }

            /// Supervised actors waiting for their restart, as last published.
            pub(crate) fn restarting(&self) -> u64 {
                self.restarting.get()
            }
        }
    };
}

shard_counters! {
    shard {
        /// Messages routed to an actor on the same shard.
        routed_local,
        /// Messages routed to another shard.
        routed_remote,
        /// Envelopes this shard pushed into other shards' rings.
        remote_out,
        /// Envelopes this shard took out of its inbound rings.
        remote_in,
        /// Messages from the host this shard took out of its host queue.
        host_in,
        /// Control commands (spawn, stop, host requests, shutdown) it ran.
        control_in,
        /// Times the shard parked (slept in `poll`) for lack of work.
        parks,
        /// Turns of the shard's loop (hops included).
        loops,
        /// Turns the shard gave its actors: each takes up to a batch of the
        /// messages waiting in one mailbox (`handled` over this is how many a
        /// turn took, on average).
        turns,
        /// Envelopes the shard caught from an inbound ring while it spun out of
        /// work and ran at once, in a short pass of their own ahead of a whole
        /// one (each also counted in `remote_in`): the hops of sequential
        /// exchanges between shards that found this shard spinning.
        hops,
        /// Messages that could not be delivered.
        dead_letters,
        /// Of those, what the dead-letter actor could not take (its mailbox
        /// full, gone, or the dead letter addressed to it), when one is named.
        dead_letters_refused,
        /// Requests shed unstarted because their requesters no longer wait:
        /// their deadline had passed (the requesters see `timeout`), or they
        /// were cancelled or abandoned before they started.
        expired,
        /// Traced envelopes its actors handled (sampled, or continuing a
        /// trace).
        traced,
        /// `handle-messages` calls: runs of messages a batched actor (one
        /// exporting `batch`) took in one call.
        batches,
        /// Messages those calls carried (each also counted where a single
        /// message is: received, handled or a dead letter).
        batched,
        /// Live actors on the shard, placed (one spawned from the host is
        /// counted once its shard has placed it: see `Runtime::spawn`; once
        /// `Runtime::wait_idle` returned `true`, every one is).
        actors,
        /// Envelopes waiting in the shard's overflow for a full ring (now).
        overflow,
        /// Supervised actors waiting for their restart (now).
        restarting,
        /// Supervision groups on the shard (now): each lasts while a handle
        /// to it or a member does.
        groups,
        /// How long, in nanoseconds, the shard spins now before it parks: it
        /// adapts between `park_spin` and `park_spin_max` (see
        /// [`RuntimeBuilder::park_spin_max`](crate::RuntimeBuilder::park_spin_max)).
        spin_ns,
    }
    requests {
        /// Requests made.
        made,
        /// Of those, ended with a reply.
        answered,
        /// Of those, ended with `timeout`.
        timed_out,
        /// Of those, cancelled by the requester.
        cancelled,
        /// Of those, ended with `cancelled` because the request they were made
        /// on behalf of ended by its timeout or a cancel, or was abandoned (its
        /// requester went).
        revoked,
        /// Of those, ended with `target-failed`, `target-stopped` or `unknown-target`.
        failed,
        /// Of those, ended because their requester stopped or failed (nobody was
        /// left to tell).
        abandoned,
        /// Of those, still open (monitors included).
        open,
        /// Monitors open now (watching an actor until it is gone for good).
        monitors,
        /// Ends of requests discarded: replies that arrived after their
        /// request had ended, and whatever ends (replies, failure notices,
        /// monitors' ends) waited in the mailbox of a requester that went
        /// (stopped, failed, restarted, upgraded, shut down) before it
        /// handled them.
        late,
        /// Timers set (by actors of this shard, or by the host for them).
        scheduled,
        /// Of those, fired (delivered to their actor).
        fired,
        /// Of those, cancelled, or ended with their actor before they fired.
        unfired,
        /// Of those, pending now.
        timers,
    }
}

/// How many ended actors [`Stats::actors`] keeps showing, the most recent ones.
pub const RETAINED_ENDED_ACTORS: usize = 1024;

/// What the host can see of one actor, alive or not.
pub(crate) struct ActorInfo {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) address: Address,
    pub(crate) native: bool,
    pub(crate) received: Counter,
    pub(crate) sent: Counter,
    pub(crate) handled: Counter,
    pub(crate) failures: Counter,
    pub(crate) restarts: Counter,
    pub(crate) upgrades: Counter,
    pub(crate) stored: Counter,
    pub(crate) deferred: Counter,
    pub(crate) denied: Counter,
    pub(crate) rate_limited: Counter,
    /// The quota's rate (0: none), burst and sends available, as last published.
    rate: [Counter; 3],
    pub(crate) alive: AtomicBool,
    /// Whether it ended because it failed.
    pub(crate) failed: AtomicBool,
    pub(crate) failure: Mutex<Option<String>>,
}

impl ActorInfo {
    pub(crate) fn new(name: std::sync::Arc<str>, address: Address, native: bool) -> ActorInfo {
        ActorInfo {
            name,
            address,
            native,
            received: Counter::default(),
            sent: Counter::default(),
            handled: Counter::default(),
            failures: Counter::default(),
            restarts: Counter::default(),
            upgrades: Counter::default(),
            stored: Counter::default(),
            deferred: Counter::default(),
            denied: Counter::default(),
            rate_limited: Counter::default(),
            rate: Default::default(),
            alive: AtomicBool::new(true),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// Publishes the quota in force and what is left of it. Owner only.
    pub(crate) fn publish_rate(&self, rate: Option<(Rate, u64)>) {
        let (mps, burst, available) = rate.map_or((0, 0, 0), |(r, a)| {
            (r.messages_per_sec, u64::from(r.burst), a)
        });
        self.rate[0].set(mps);
        self.rate[1].set(burst);
        self.rate[2].set(available);
    }

    pub(crate) fn snapshot(&self) -> ActorStats {
        let mps = self.rate[0].get();
        ActorStats {
            name: self.name.to_string(),
            address: self.address,
            shard: self.address.shard(),
            native: self.native,
            received: self.received.get(),
            sent: self.sent.get(),
            handled: self.handled.get(),
            failures: self.failures.get(),
            restarts: self.restarts.get(),
            upgrades: self.upgrades.get(),
            stored: self.stored.get(),
            deferred: self.deferred.get(),
            denied: self.denied.get(),
            rate_limited: self.rate_limited.get(),
            rate: (mps != 0).then(|| RateUsage {
                limit: Rate::new(mps, u32::try_from(self.rate[1].get()).unwrap_or(u32::MAX)),
                available: self.rate[2].get(),
            }),
            failure: self
                .failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            alive: self.alive.load(Ordering::Acquire),
            failed: self.failed.load(Ordering::Acquire),
        }
    }
}

/// A snapshot of one actor's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ActorStats {
    /// The name it was spawned with.
    pub name: String,
    /// Its address.
    pub address: Address,
    /// The shard that owns it.
    pub shard: usize,
    /// Whether it is a native (Rust) actor rather than a component.
    pub native: bool,
    /// Messages delivered into its mailbox.
    pub received: u64,
    /// Messages it sent successfully.
    pub sent: u64,
    /// Messages it handled to completion.
    pub handled: u64,
    /// Invocations that failed (trap, CPU budget, memory limit), and restarts
    /// of a supervised actor that failed.
    pub failures: u64,
    /// Times a supervised actor was restarted in place.
    pub restarts: u64,
    /// Times its component was replaced ([`Runtime::upgrade`](crate::Runtime::upgrade)).
    pub upgrades: u64,
    /// Bytes in its storage (keys and values, and
    /// [`STORAGE_ENTRY_OVERHEAD`](crate::STORAGE_ENTRY_OVERHEAD) an entry:
    /// what counts against its quota), as of its last turn.
    pub stored: u64,
    /// Requests it deferred and has not answered yet, and whose requesters
    /// still wait (as far as its shard has heard: a cancel or a timeout takes
    /// one out of this count when word of it arrives).
    pub deferred: u64,
    /// Operations its grants denied (sends, requests, lookups).
    pub denied: u64,
    /// Sends and requests its quota refused.
    pub rate_limited: u64,
    /// Its quota, if it has one, and what is left of it.
    pub rate: Option<RateUsage>,
    /// Why it last failed, if it did: it is stopped then, unless it is
    /// supervised and was restarted (or waits for its restart).
    pub failure: Option<String>,
    /// Whether it is still running.
    pub alive: bool,
    /// Whether it ended because it failed (a supervised actor that was
    /// restarted after its last failure has not; one stopped at shutdown has
    /// not).
    pub failed: bool,
}

/// An actor's quota and its current use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RateUsage {
    /// The quota.
    pub limit: Rate,
    /// Sends it could make now (up to the burst), as of its last turn.
    pub available: u64,
}

/// A snapshot of the whole runtime, from [`Runtime::stats`](crate::Runtime::stats).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Every live actor and the most recent ended ones (up to
    /// [`RETAINED_ENDED_ACTORS`]), in spawn order.
    pub actors: Vec<ActorStats>,
    /// Every shard.
    pub shards: Vec<ShardStats>,
    /// Messages that could not be delivered, over all shards.
    pub dead_letters: u64,
}

impl Stats {
    /// The actor with this name (the most recent one, if the name was reused).
    pub fn actor(&self, name: &str) -> Option<&ActorStats> {
        self.actors.iter().rev().find(|a| a.name == name)
    }
}

/// The header of a dead letter as the dead-letter actor receives it
/// ([`RuntimeBuilder::dead_letter_actor`](crate::RuntimeBuilder::dead_letter_actor)):
/// `0x55` (the raw codec's multicodec prefix), the reason (`u8`: 0
/// target-gone, 1 target-failed, 2 target-stopped, 3 shutting-down, in
/// [`DeadLetterReason`]'s order), the original sender and target (`u64` LE
/// each), the original payload's length (`u32` LE); the payload follows, cut
/// to the maximum payload less this header.
pub const DEAD_LETTER_HEADER: usize = 22;

/// Why a message became a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// The target stopped or failed after the message was admitted.
    TargetGone,
    /// The target failed while handling this message, or with it still queued.
    TargetFailed,
    /// The target was stopped with this message still queued.
    TargetStopped,
    /// The runtime shut down with this message still in flight.
    ShuttingDown,
}

/// A message that could not be delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Where it was going.
    pub to: Address,
    /// Who sent it.
    pub from: Address,
    /// Why it was not delivered.
    pub reason: DeadLetterReason,
    /// Its payload: whole while the shard's kept dead letters hold under
    /// 1 MiB of payloads, after that its first 64 bytes.
    pub payload: Vec<u8>,
    /// The length of its whole payload.
    pub payload_len: usize,
}

/// What [`Runtime::shutdown`](crate::Runtime::shutdown) reports.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Whether every in-flight message was handled before actors were stopped.
    pub drained: bool,
    /// How many messages could not be delivered over the runtime's life.
    pub dead_letter_count: u64,
    /// The undelivered messages themselves (the first 1024 per shard; each
    /// keeps its whole payload while the shard's hold under 1 MiB of them,
    /// then the first 64 bytes, its `payload_len` saying how long it was).
    pub dead_letters: Vec<DeadLetter>,
    /// Final counters.
    pub stats: Stats,
}
