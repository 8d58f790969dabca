//! A NATS bridge for wasmshard runtimes: local actors exported as subjects,
//! remote actors imported as local proxy addresses, with the runtime's
//! messaging semantics kept explicit at the boundary.
//!
//! ```no_run
//! use std::time::Duration;
//! use wasmshard::Runtime;
//! use wasmshard_nats::Bridge;
//!
//! // Node `a` exports its actor `counter` ...
//! let a = Runtime::builder().build()?;
//! # a.spawn_handler("counter", None, |_, _, _| {})?;
//! let bridge_a = Bridge::connect("nats://127.0.0.1:4222", "a", &a)?;
//! bridge_a.export("counter")?;
//!
//! // ... and node `b` reaches it through a local proxy named `counter@a`.
//! let b = Runtime::builder().build()?;
//! let bridge_b = Bridge::connect("nats://127.0.0.1:4222", "b", &b)?;
//! let counter = bridge_b.import(&b, "counter", "a")?;
//! b.send(counter, b"+1")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! Each bridge owns one NATS connection, driven on a thread of its own by a
//! single-threaded tokio runtime: the shards never run async code, and the
//! bridge is off the local hot path. In the runtime it is native actors:
//!
//! - the **ingress** (named `nats-bridge` unless [`BridgeOptions::ingress`]
//!   says otherwise) takes what arrives from NATS for an exported actor and
//!   sends or requests it locally: the exported actor sees the ingress as the
//!   sender;
//! - a **proxy** per imported actor, registered as `name@node`, so that a hop
//!   off the machine is always visible in the name: tells to it are
//!   published to the remote actor's subject, requests become NATS
//!   request/reply carrying the request's remaining deadline, and the reply
//!   (or the remote error) ends the local request exactly once.
//!
//! Subjects are `<prefix>.<cluster>.<node>.<name>` (prefix `wasmshard`,
//! cluster `default` unless [`BridgeOptions`] says otherwise). A plain NATS
//! client may publish to an exported actor's subject (a tell) or make a NATS
//! request to it (a request with a 30 s timeout unless its header says
//! otherwise). Every request from NATS waits at most
//! [`BridgeOptions::max_request_timeout`] (5 min) here, whatever it asks.
//!
//! # Guarantees, and what NATS core can lose
//!
//! - Order: tells and requests from one local sender to one proxy are
//!   published in the order it sent them, on one connection, to one subject;
//!   the remote bridge takes them from one subscription and hands them to
//!   its runtime in that order, and the runtime keeps the order from the
//!   ingress to the target. So per sender→receiver order holds across the
//!   bridge, as it does locally (a message refused on the way leaves a gap,
//!   never a swap).
//! - Bounds: the proxy's mailbox bounds local senders (`mailbox-full` at
//!   once, as for any actor). Between the actors and the bridge's thread at
//!   most [`BridgeOptions::max_outbound_bytes`] wait to be published; past
//!   that a proxy's tell is a dead letter of the bridge and its request ends
//!   with `target-failed` at once (a sender faster than NATS for long loses
//!   tells so, counted: requests pace themselves). The remote target's mailbox bounds
//!   what the remote ingress admits; the remote bridge holds at most
//!   [`BridgeOptions::max_inbound`] messages on their way to its runtime and
//!   refuses the rest (`overloaded`); the client queues at most 131 072 per
//!   subscription for the bridge's thread (which takes them without
//!   waiting) and drops beyond that, counted as
//!   [`BridgeStats::slow_consumer`]. Those two bounds count messages: the
//!   memory they hold is at most that many times the maximum payload.
//! - Flow control: NATS core has none (a fast publisher overruns a slower
//!   subscriber, and the server or client drops what does not fit). A bridge
//!   has at most 4 096 messages to one node published and not acknowledged;
//!   the receiving bridge acknowledges every 512th once its queue toward the
//!   runtime has taken nearly all that came, and the sender holds what comes
//!   next meanwhile (within [`BridgeOptions::max_outbound_bytes`] for all
//!   nodes and 262 144 messages for one; past either, counted at once; an
//!   acknowledgement that does not come within 2 s is given up on, and a
//!   request that waited out its timeout there ends with `timeout`). What a
//!   remote target's mailbox refuses is still refused (`mailbox-full`,
//!   counted and reported) only after the ingress has tried it for
//!   [`BridgeOptions::stall_limit`] (everything from NATS waits behind it
//!   meanwhile: the queue toward the runtime grows, acknowledgements stop, and
//!   the senders hold what comes next).
//! - Refusals come back: a tell the remote side refuses (mailbox full,
//!   unknown name, not exported, too large, overloaded, shutting down) is
//!   counted by reason at the refusing bridge ([`BridgeStats::refused_here`])
//!   and reported to the sending bridge, which counts it too
//!   ([`BridgeStats::refused_remote`]; the report crosses NATS like any
//!   message, so the refusing side's count is the exact one). A tell to a
//!   node with no bridge listening is counted as `unknown-target` by its
//!   sender. A request the remote side refuses ends at once for its
//!   requester: `unknown-target` for an unknown or unexported name (or a
//!   node with no bridge listening), `target-failed` for a refusal at its
//!   mailbox; a request that times out, fails or stops there ends with
//!   `timeout`, `target-failed`, `target-stopped`.
//! - Size: a bridge refuses to connect to a server whose maximum payload is
//!   below the runtime's (plus room for the bridge's headers), so every
//!   payload the runtime admits can be published: what is too large fails at
//!   once with `too-large`, at the sender's `send`. A reply larger than the
//!   requester's runtime admits ends its request with `target-failed`.
//! - Disconnects: the client reconnects on its own, without limit. While the
//!   client is disconnected, tells are dead letters of the bridge
//!   ([`BridgeStats::dead_letters`], by reason in
//!   [`BridgeStats::dead_letter_reasons`]: `disconnected`) and requests end at once with
//!   `target-failed` ([`BridgeStats::requests_failed`]); requests in flight
//!   when the connection is lost end with `target-failed` then. A publish
//!   that waited for room in the client's queue when the connection was lost
//!   is given up (within 20 ms) and counted the same way: the client takes
//!   nothing from its queue while it reconnects, and the bridge does not wait
//!   for the server's return. What the client's queue held then is published
//!   once the client is back (those were counted published).
//! - Losses: NATS core delivers at most once. What the client had handed to
//!   its socket when the connection broke, and what the server drops while
//!   the receiving bridge is away, never arrives. Every tell and request a
//!   bridge publishes to a node carries its place in that bridge's sequence
//!   to that node (`Wasmshard-Seq`), so the receiving bridge counts a gap as
//!   `lost` ([`Reason::Lost`] in its `refused_here`) and reports it to the
//!   sender, when the next message of the sequence arrives: a loss at the
//!   very end of a stream is not seen. A tell to a node whose bridge was
//!   away may be counted twice: as `unknown-target` by the sender when the
//!   server had no one to give it to, and as `lost` by the receiver once it
//!   is back. A lost request ends by its requester's timeout. Use requests
//!   where an answer must be known.
//! - Shutdown: while its runtime shuts down, a bridge refuses what arrives
//!   from NATS with `shutting-down` once the drain is over; replies to
//!   requests held by proxies still reach them during the drain. When the
//!   runtime stops its actors, the ingress refuses what it still holds (a
//!   message waiting for room at a full mailbox, what is queued for it) with
//!   `shutting-down`, reported to the senders, and ends the requests it made
//!   for remote requesters and has no response to with `shutting-down`:
//!   they end for their requesters then, not by their timeouts. An ingress
//!   stopped while its runtime runs (a `Runtime::stop`, a failure) does the
//!   same with `target-stopped`, and the bridge refuses what arrives after
//!   it the same way. Shut the runtime down before closing its bridge (as
//!   `wasmshard run` does): a bridge closed first no longer reports these
//!   refusals (it counts them, after [`Bridge::close`] returned), and the
//!   remote requests the ingress holds then end by their timeouts.
#![deny(missing_docs)]

mod actors;
mod inlet;
mod stats;
mod thread;
mod wire;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use wasmshard::{Address, Runtime, SpawnError};

use crate::actors::{Completion, Inbound, Ingress, Proxy};
use crate::inlet::Inlet;
pub use crate::stats::{BridgeStats, Refusals};
use crate::stats::{Counters, bump};
pub use crate::wire::Reason;

/// What may go wrong connecting a bridge, or exporting and importing through it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// A node, cluster, prefix or actor name that cannot be part of a subject.
    #[error(
        "{what} `{value}` cannot be part of a NATS subject (a token is 1-128 printable ASCII characters with no `.`, `*`, `>` or spaces; a prefix is tokens joined by `.`, up to 256 bytes)"
    )]
    BadName {
        /// What the name is (`node`, `cluster`, `prefix`, `actor name`).
        what: &'static str,
        /// The name.
        value: String,
    },
    /// The NATS server could not be reached or refused the connection.
    #[error("cannot connect to the NATS server at {url}")]
    Connect {
        /// The server's address as given.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A subscription the bridge needs was refused.
    #[error("cannot subscribe to `{subject}`")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The server takes smaller payloads than the runtime admits.
    #[error(
        "the NATS server takes payloads of at most {server} bytes, but the runtime admits {runtime} (plus {room} for the bridge's headers): raise the server's max_payload or lower the runtime's"
    )]
    PayloadLimit {
        /// The runtime's maximum payload.
        runtime: usize,
        /// The server's maximum payload.
        server: usize,
        /// The room the bridge needs for its headers.
        room: usize,
    },
    /// The bridge's actor (ingress or proxy) could not be spawned.
    #[error("cannot spawn the bridge's actor `{name}`")]
    Spawn {
        /// The actor's name.
        name: String,
        /// Why.
        #[source]
        source: SpawnError,
    },
    /// The bridge's thread could not be started.
    #[error("cannot start the bridge's thread")]
    Thread(#[source] std::io::Error),
    /// The bridge's thread is gone (closed, or it panicked).
    #[error("the bridge is closed")]
    Closed,
}

/// How a bridge names things and how much it holds.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BridgeOptions {
    /// The first tokens of every subject (default `wasmshard`).
    pub prefix: String,
    /// The cluster: bridges reach each other only within one (default `default`).
    pub cluster: String,
    /// The ingress actor's name (default `nats-bridge`).
    pub ingress: String,
    /// Messages from NATS held on their way to the runtime before the bridge
    /// refuses more with `overloaded` (default 65 536).
    pub max_inbound: usize,
    /// Bytes of messages (payload and 64 for each) the proxies and the
    /// ingress may hand the bridge's thread ahead of its publishing them; past
    /// this a proxy's tell is a dead letter of the bridge and its request
    /// ends with `target-failed` at once (default 64 MiB).
    pub max_outbound_bytes: usize,
    /// How long the ingress keeps trying a message whose target's mailbox is
    /// full (everything from NATS waits behind it meanwhile, so order holds)
    /// before it refuses it with `mailbox-full` (default 1 s; zero: refuse at
    /// once).
    pub stall_limit: Duration,
    /// How long the first connection may take (default 5 s).
    pub connect_timeout: Duration,
    /// The longest a request from NATS may wait for its answer here: a
    /// longer timeout in its header (or a plain client's 30 s) is cut to it,
    /// so that no peer holds the ingress's open requests (at most the
    /// runtime's `max_open_requests`) for longer (default 5 min). Its
    /// requester then hears `timeout` before its own deadline.
    pub max_request_timeout: Duration,
    /// The longest wait between reconnection attempts (default 1 s).
    pub reconnect_delay_max: Duration,
    /// Requests published for local requesters and waiting for their
    /// replies, at most (default 1 048 576); past this a proxy's request ends
    /// with `target-failed` at once. A request its requester cancelled, or
    /// stopped waiting for, still waits for its reply here until a second
    /// past its deadline (the remote side may answer it), so a requester that
    /// asks and cancels in a loop would otherwise grow what the bridge keeps
    /// without bound.
    pub max_waiting_requests: usize,
}

impl Default for BridgeOptions {
    fn default() -> BridgeOptions {
        BridgeOptions {
            prefix: "wasmshard".into(),
            cluster: "default".into(),
            ingress: "nats-bridge".into(),
            max_inbound: 65_536,
            max_outbound_bytes: 64 << 20,
            stall_limit: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            max_request_timeout: Duration::from_secs(300),
            max_waiting_requests: 1 << 20,
            reconnect_delay_max: Duration::from_secs(1),
        }
    }
}

impl BridgeOptions {
    /// The default options with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> BridgeOptions {
        self.prefix = prefix.into();
        self
    }

    /// The default options with `cluster`.
    pub fn cluster(mut self, cluster: impl Into<String>) -> BridgeOptions {
        self.cluster = cluster.into();
        self
    }

    /// With the ingress actor named `name`.
    pub fn ingress(mut self, name: impl Into<String>) -> BridgeOptions {
        self.ingress = name.into();
        self
    }

    /// With the ingress trying a message a full mailbox refused for `limit`.
    pub fn stall_limit(mut self, limit: Duration) -> BridgeOptions {
        self.stall_limit = limit;
        self
    }

    /// With requests from NATS waiting at most `max` for their answers.
    pub fn max_request_timeout(mut self, max: Duration) -> BridgeOptions {
        self.max_request_timeout = max;
        self
    }

    /// With at most `max` requests published and waiting for their replies.
    pub fn max_waiting_requests(mut self, max: usize) -> BridgeOptions {
        self.max_waiting_requests = max;
        self
    }

    /// With at most `max` messages from NATS held on their way in.
    pub fn max_inbound(mut self, max: usize) -> BridgeOptions {
        self.max_inbound = max;
        self
    }
}

/// What the bridge's thread is asked to do.
pub(crate) enum Out {
    /// Publish a tell from a proxy.
    Tell { subject: Arc<str>, payload: Bytes },
    /// Publish a request from a proxy; its end goes to `back`.
    Request {
        subject: Arc<str>,
        payload: Bytes,
        timeout: Duration,
        /// When the proxy took it (`timeout` counts from then).
        made: std::time::Instant,
        id: u64,
        back: Arc<Inlet<Completion>>,
    },
    /// Publish the end of a remote requester's request.
    Reply {
        to: String,
        result: Result<Bytes, Reason>,
    },
    /// Tell a remote bridge that its tell to `target` was refused.
    Refusal {
        to: String,
        target: String,
        reason: Reason,
        /// How many messages it stands for.
        count: u64,
    },
}

impl Out {
    /// What it counts against `max_outbound_bytes`.
    fn cost(&self) -> usize {
        64 + match self {
            Out::Tell { payload, .. } | Out::Request { payload, .. } => payload.len(),
            Out::Reply {
                result: Ok(payload),
                ..
            } => payload.len(),
            Out::Reply { .. } | Out::Refusal { .. } => 0,
        }
    }
}

/// What the bridge, its thread and its actors share.
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    /// To the bridge's thread (bounded by `max_outbound_bytes`, counted in
    /// `outbound_bytes`).
    pub(crate) out: tokio::sync::mpsc::UnboundedSender<Out>,
    pub(crate) outbound_bytes: std::sync::atomic::AtomicUsize,
    /// Tells the bridge's thread to stop (apart from `out`, so that it is
    /// heard however full `out` is, even while a publish waits).
    pub(crate) close: tokio::sync::Notify,
    pub(crate) inbound: Inlet<Inbound>,
    pub(crate) exported: Mutex<HashSet<String>>,
    pub(crate) options: BridgeOptions,
    pub(crate) node: String,
}

impl Shared {
    /// Hands `out` to the thread; if it holds all it may or is gone, counts
    /// what is lost and returns the request it could not take (for its proxy
    /// to end).
    pub(crate) fn send_out(&self, out: Out) -> Option<Out> {
        use std::sync::atomic::Ordering::Relaxed;
        let cost = out.cost();
        let held = self.outbound_bytes.fetch_add(cost, Relaxed);
        // Replies and refusals are bounded by what came in: only the
        // proxies' tells and requests are held to the budget.
        let budgeted = matches!(out, Out::Tell { .. } | Out::Request { .. });
        let (unsent, reason) = if budgeted && held + cost > self.options.max_outbound_bytes {
            self.outbound_bytes.fetch_sub(cost, Relaxed);
            (out, Reason::Overloaded)
        } else {
            match self.out.send(out) {
                Ok(()) => return None,
                Err(unsent) => {
                    self.outbound_bytes.fetch_sub(cost, Relaxed);
                    (unsent.0, Reason::Closed)
                }
            }
        };
        match unsent {
            Out::Request { .. } => {
                bump(&self.counters.requests_failed);
                return Some(unsent);
            }
            Out::Tell { .. } | Out::Reply { .. } => self.counters.dead_letter(reason),
            Out::Refusal { .. } => {}
        }
        None
    }

    /// The thread holds `out` (a full window) after taking it: it counts
    /// again until published.
    pub(crate) fn hold(&self, out: &Out) {
        self.outbound_bytes
            .fetch_add(out.cost(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The thread took `out` off the channel (or out of a window).
    pub(crate) fn taken(&self, out: &Out) {
        self.outbound_bytes
            .fetch_sub(out.cost(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Refuses a tell from NATS: counted here, reported where it says.
    pub(crate) fn refuse(&self, refuse_to: Option<String>, target: String, reason: Reason) {
        self.counters.refused_here(reason);
        if let Some(to) = refuse_to {
            let _ = self.send_out(Out::Refusal {
                to,
                target,
                reason,
                count: 1,
            });
        }
    }

    /// Refuses `item`, a message from NATS for an exported actor: counted
    /// here, reported to its sender.
    pub(crate) fn refuse_inbound(&self, item: actors::Inbound, reason: Reason) {
        match item {
            actors::Inbound::Tell {
                name, refuse_to, ..
            } => self.refuse(refuse_to, name, reason),
            actors::Inbound::Request { reply, .. } => {
                self.counters.refused_here(reason);
                let _ = self.send_out(Out::Reply {
                    to: reply,
                    result: Err(reason),
                });
            }
        }
    }

    /// Refuses every message queued for the ingress (which will not take
    /// them: it is gone, or its runtime stops it), each once.
    pub(crate) fn refuse_queued(&self, reason: Reason) {
        for item in self.inbound.take_all() {
            self.refuse_inbound(item, reason);
        }
    }

    /// The subject of actor `name` on `node`.
    pub(crate) fn subject(&self, node: &str, name: &str) -> String {
        format!(
            "{}.{}.{node}.{name}",
            self.options.prefix, self.options.cluster
        )
    }
}

/// A runtime's bridge to NATS. Dropping it closes it ([`Bridge::close`]).
pub struct Bridge {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    ingress: Address,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("node", &self.shared.node)
            .field("cluster", &self.shared.options.cluster)
            .finish_non_exhaustive()
    }
}

fn check(what: &'static str, value: &str, ok: fn(&str) -> bool) -> Result<(), BridgeError> {
    if ok(value) {
        Ok(())
    } else {
        Err(BridgeError::BadName {
            what,
            value: value.into(),
        })
    }
}

impl Bridge {
    /// Connects `runtime` to the NATS server at `url` as node `node`, with the
    /// default [`BridgeOptions`].
    ///
    /// # Errors
    ///
    /// See [`Bridge::connect_with`].
    pub fn connect(url: &str, node: &str, runtime: &Runtime) -> Result<Bridge, BridgeError> {
        Bridge::connect_with(url, node, runtime, BridgeOptions::default())
    }

    /// Connects `runtime` to the NATS server at `url` as node `node`: starts
    /// the bridge's thread, connects, subscribes to the subjects of this
    /// node's exported actors and to the bridge's replies, and spawns the
    /// ingress actor. Returns once all of that is done.
    ///
    /// # Errors
    ///
    /// [`BridgeError::BadName`] for a node, cluster or prefix that cannot be
    /// part of a subject; [`BridgeError::Connect`] if the server cannot be
    /// reached within the connect timeout; [`BridgeError::PayloadLimit`] if
    /// it takes smaller payloads than the runtime admits;
    /// [`BridgeError::Spawn`] if the ingress cannot be spawned (its name is
    /// taken).
    pub fn connect_with(
        url: &str,
        node: &str,
        runtime: &Runtime,
        options: BridgeOptions,
    ) -> Result<Bridge, BridgeError> {
        check("node", node, wire::is_token)?;
        check("cluster", &options.cluster, wire::is_token)?;
        check("prefix", &options.prefix, wire::is_prefix)?;
        let (out, out_rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            out,
            outbound_bytes: Default::default(),
            close: tokio::sync::Notify::new(),
            inbound: Inlet::new(runtime.handle()),
            exported: Mutex::new(HashSet::new()),
            options,
            node: node.into(),
        });
        let (thread, connection) = thread::start(url, shared.clone(), out_rx)?;
        let max = runtime.max_payload();
        if connection.max_payload < max + wire::HEADER_ROOM {
            shared.close.notify_one();
            let _ = thread.join();
            return Err(BridgeError::PayloadLimit {
                runtime: max,
                server: connection.max_payload,
                room: wire::HEADER_ROOM,
            });
        }
        let ingress = Ingress {
            shared: shared.clone(),
            open: Default::default(),
            stalled: None,
            armed: false,
        };
        let name = shared.options.ingress.clone();
        let ingress = match runtime.spawn_native(&name, None, ingress) {
            Ok(address) => address,
            Err(source) => {
                shared.close.notify_one();
                let _ = thread.join();
                return Err(BridgeError::Spawn { name, source });
            }
        };
        shared.inbound.attach(ingress);
        Ok(Bridge {
            shared,
            thread: Some(thread),
            ingress,
        })
    }

    /// Makes the local actor registered as `name` reachable from other nodes,
    /// under [`Bridge::subject`] of this node and `name`. What arrives for it
    /// is sent to whatever actor holds the name when it arrives (none:
    /// `unknown-target`). Returns the subject.
    ///
    /// # Errors
    ///
    /// [`BridgeError::BadName`] for a name that cannot be part of a subject.
    pub fn export(&self, name: &str) -> Result<String, BridgeError> {
        check("actor name", name, wire::is_token)?;
        self.exported().insert(name.into());
        Ok(self.shared.subject(&self.shared.node, name))
    }

    /// Stops exporting `name` (what arrives for it from then on is refused as
    /// `denied`); whether it was exported.
    pub fn unexport(&self, name: &str) -> bool {
        self.exported().remove(name)
    }

    fn exported(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.shared
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Imports actor `name` of node `node`: spawns its proxy in `runtime`
    /// (the bridge's runtime), registered as `name@node`, and returns its
    /// address. Grants name the proxy as any actor (`name@node`).
    ///
    /// # Errors
    ///
    /// [`BridgeError::BadName`]; [`BridgeError::Spawn`] if `name@node` is
    /// taken (imported already), is longer than an actor's name may be
    /// ([`wasmshard::MAX_NAME_LEN`], 256 bytes: `name` and `node` of 128
    /// each make 257), or the runtime has no room.
    pub fn import(
        &self,
        runtime: &Runtime,
        name: &str,
        node: &str,
    ) -> Result<Address, BridgeError> {
        check("actor name", name, wire::is_token)?;
        check("node", node, wire::is_token)?;
        let back = Arc::new(Inlet::new(runtime.handle()));
        let proxy = Proxy {
            shared: self.shared.clone(),
            subject: self.shared.subject(node, name).into(),
            back: back.clone(),
        };
        let local = format!("{name}@{node}");
        let address = runtime
            .spawn_native(&local, None, proxy)
            .map_err(|source| BridgeError::Spawn {
                name: local,
                source,
            })?;
        back.attach(address);
        Ok(address)
    }

    /// The subject of actor `name` on `node` in this bridge's cluster.
    pub fn subject(&self, node: &str, name: &str) -> String {
        self.shared.subject(node, name)
    }

    /// The ingress actor's address (the sender that exported actors see).
    pub fn ingress(&self) -> Address {
        self.ingress
    }

    /// Whether the bridge holds messages it has not published yet (waiting
    /// for its thread, or for room in a node's window).
    pub fn is_pending(&self) -> bool {
        self.shared
            .outbound_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }

    /// A snapshot of the bridge's counters.
    pub fn stats(&self) -> BridgeStats {
        self.shared.counters.snapshot()
    }

    /// Flushes what was published, closes the connection and stops the
    /// bridge's thread; returns the final counters. Requests still waiting
    /// for a remote reply end with `target-failed`; from then on the proxies
    /// count what they take as dead letters (tells) or end it with
    /// `target-failed` (requests), and remote messages are no longer taken.
    pub fn close(mut self) -> BridgeStats {
        self.shut();
        self.stats()
    }

    fn shut(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.close.notify_one();
            let _ = thread.join();
        }
        // What the ingress never took is lost with the bridge (the ingress
        // may still take some meanwhile: each is taken once).
        for _ in self.shared.inbound.take_all() {
            self.shared.counters.refused_here(Reason::ShuttingDown);
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shut();
    }
}
