//! The bridge's thread: one NATS connection on a single-threaded tokio
//! runtime, publishing what the proxies hand it, handing what arrives to the
//! ingress, and matching replies to the requests it published.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::header::HeaderMap;
use async_nats::{Client, Event, Message, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;
use wasmshard::{RequestError, SendError};

use crate::actors::{Completion, Inbound};
use crate::inlet::Inlet;
use crate::stats::bump;
use crate::wire::{
    ACK, COUNT, ERROR, KIND, NODE, PLAIN_REQUEST_TIMEOUT, Reason, SEQ, TARGET, TIMEOUT_NS,
};
use crate::{BridgeError, Out, Shared};

/// Messages the client queues per subscription for this thread (it drops
/// what comes beyond, reporting each as a slow consumer). This thread takes
/// them without waiting (handing them to the ingress, or refusing them), so
/// only a thread starved of CPU falls this far behind; the queue's memory is
/// taken only as it fills.
const SUBSCRIPTION_CAPACITY: usize = 1 << 17;

/// A sequence number further ahead of the one expected than this is no loss
/// but a forged or restarted sequence: the receiver starts over from it.
const SEQ_WINDOW: u64 = 1 << 20;

/// Sending bridges whose sequences a bridge follows at most (past this it
/// forgets them all and starts over: no loss is counted falsely, a gap
/// across that moment goes unseen).
const MAX_SENDERS: usize = 4096;

/// What one bridge may have published to one node and not heard acknowledged
/// (tells and requests): beyond it, it holds what comes next until an
/// acknowledgement comes (NATS core has no flow control of its own: a fast
/// publisher overruns a slower receiver, which then loses messages).
const WINDOW: u64 = 4096;

/// The receiver acknowledges every message whose number is one less than a
/// multiple of this (once its queue toward the runtime holds no more than
/// this).
const ACK_EVERY: u64 = 512;

/// A sender that has held messages this long without an acknowledgement (it
/// was lost with a disconnect, or the receiver went away) goes on as if it had
/// come: the receiver counts a gap, if there is one.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// What one node's window holds at most, beyond which what comes for that
/// node is counted at once (a dead letter, or `target-failed`): a node that
/// takes nothing for long does not take all of the outbound bytes (the
/// bound for all nodes together) from the others.
const MAX_HELD: usize = 1 << 18;

/// How often a publish that waits for room in the client's queue looks
/// whether the client is still connected.
const DISCONNECT_POLL: Duration = Duration::from_millis(20);

/// How long closing waits for what was published to reach the server.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(1);

/// What the connection said about itself once connected.
pub(crate) struct Connection {
    pub(crate) max_payload: usize,
}

/// A request published and not answered yet.
struct Waiting {
    id: u64,
    back: Arc<Inlet<Completion>>,
    /// After this its requester has stopped waiting (its own timeout ended
    /// it): the entry is dropped.
    expires: Instant,
}

/// A connection that did not come up within the connect timeout.
fn timed_out(url: String, elapsed: tokio::time::error::Elapsed) -> BridgeError {
    let source =
        async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::TimedOut, elapsed);
    BridgeError::Connect { url, source }
}

/// Starts the thread and connects; returns once connected and subscribed.
pub(crate) fn start(
    url: &str,
    shared: Arc<Shared>,
    out: UnboundedReceiver<Out>,
) -> Result<(std::thread::JoinHandle<()>, Connection), BridgeError> {
    let (ready, started) = std::sync::mpsc::channel();
    let url = url.to_owned();
    let thread = std::thread::Builder::new()
        .name(format!("nats-bridge-{}", shared.node))
        .spawn(move || {
            let tokio = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(tokio) => tokio,
                Err(e) => {
                    let _ = ready.send(Err(BridgeError::Thread(e)));
                    return;
                }
            };
            tokio.block_on(run(url, shared, out, ready));
        })
        .map_err(BridgeError::Thread)?;
    match started.recv() {
        Ok(Ok(connection)) => Ok((thread, connection)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(BridgeError::Closed)
        }
    }
}

type Ready = std::sync::mpsc::Sender<Result<Connection, BridgeError>>;

async fn run(url: String, shared: Arc<Shared>, out: UnboundedReceiver<Out>, ready: Ready) {
    let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let delay_max = shared.options.reconnect_delay_max;
    let connecting = async_nats::ConnectOptions::new()
        .name(format!("wasmshard node {}", shared.node))
        .connection_timeout(shared.options.connect_timeout)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .reconnect_delay_callback(move |attempts| {
            Duration::from_millis(10 * attempts as u64).min(delay_max)
        })
        .event_callback(move |event| {
            let events: UnboundedSender<Event> = events.clone();
            async move {
                let _ = events.send(event);
            }
        })
        .connect(url.as_str());
    let client = match tokio::time::timeout(shared.options.connect_timeout, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(source)) => {
            let _ = ready.send(Err(BridgeError::Connect { url, source }));
            return;
        }
        Err(elapsed) => {
            let _ = ready.send(Err(timed_out(url, elapsed)));
            return;
        }
    };
    let inbox = client.new_inbox();
    let exports = shared.subject(&shared.node, "*");
    let replies = format!("{inbox}.>");
    let mut subscriptions = Vec::new();
    let limit = shared.options.connect_timeout;
    for subject in [exports, replies] {
        match tokio::time::timeout(limit, client.subscribe(subject.clone())).await {
            Ok(Ok(s)) => subscriptions.push(s),
            Ok(Err(source)) => {
                let _ = ready.send(Err(BridgeError::Subscribe { subject, source }));
                return;
            }
            Err(elapsed) => {
                // The server did not confirm it within the connect timeout.
                let source = async_nats::SubscribeError::with_source(
                    async_nats::client::SubscribeErrorKind::Other,
                    elapsed,
                );
                let _ = ready.send(Err(BridgeError::Subscribe { subject, source }));
                return;
            }
        }
    }
    // The subscriptions reach the server before anyone is told the bridge is
    // up: a message published to an exported actor from then on is taken.
    match tokio::time::timeout(limit, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let source = async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Io, e);
            let _ = ready.send(Err(BridgeError::Connect { url, source }));
            return;
        }
        Err(elapsed) => {
            let _ = ready.send(Err(timed_out(url, elapsed)));
            return;
        }
    }
    shared.counters.connected.store(true, Ordering::Relaxed);
    let max_payload = client.server_info().max_payload;
    if ready.send(Ok(Connection { max_payload })).is_err() {
        return;
    }
    let replies = subscriptions.pop().expect("two subscriptions");
    let exports = subscriptions.pop().expect("two subscriptions");
    let mut bridge = Thread {
        shared: shared.clone(),
        client,
        refusals: format!("{inbox}.refused"),
        inbox,
        waiting: HashMap::new(),
        next: 0,
        sequences: HashMap::new(),
        expected: HashMap::new(),
        windows: HashMap::new(),
        owed: HashMap::new(),
        node_key: node_of(&shared.subject(&shared.node, "-")).to_owned(),
        dirty: false,
        closing: std::cell::Cell::new(false),
    };
    bridge.serve(out, events_rx, exports, replies).await;
}

struct Thread {
    shared: Arc<Shared>,
    client: Client,
    /// `_INBOX.<unique>`: replies come to `<inbox>.<n>`.
    inbox: String,
    /// Where remote bridges report refused tells.
    refusals: String,
    waiting: HashMap<u64, Waiting>,
    next: u64,
    /// The next sequence number of what this bridge publishes to each node
    /// (keyed by the subject less the actor's name).
    sequences: HashMap<String, u64>,
    /// The next sequence number expected from each sending bridge (keyed by
    /// its inbox).
    expected: HashMap<String, u64>,
    /// What each node has acknowledged of this bridge's sequence to it, and
    /// what waits for its acknowledgement (keyed as `sequences`).
    windows: HashMap<String, Window>,
    /// Acknowledgements owed to senders: their inbox → the highest number.
    owed: HashMap<String, u64>,
    /// This node's key in others' windows (`<prefix>.<cluster>.<node>`).
    node_key: String,
    /// A window may have room for what it holds.
    dirty: bool,
    /// Closing was asked for while a publish waited.
    closing: std::cell::Cell<bool>,
}

/// One node's side of this bridge's flow control.
struct Window {
    /// Every number below this is acknowledged.
    acked: u64,
    /// Tells and requests waiting for room, in order.
    held: VecDeque<Out>,
    /// The last acknowledgement (or the start).
    heard: Instant,
}

impl Thread {
    async fn serve(
        &mut self,
        mut out: UnboundedReceiver<Out>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
        mut exports: async_nats::Subscriber,
        mut replies: async_nats::Subscriber,
    ) {
        let mut sweep = tokio::time::interval(Duration::from_millis(250));
        let mut owed = tokio::time::interval(Duration::from_millis(10));
        for ticks in [&mut sweep, &mut owed] {
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let shared = self.shared.clone();
        loop {
            // No branch is preferred (tokio picks at random among the ready
            // ones): a flood one way does not starve the other.
            tokio::select! {
                () = shared.close.notified() => break,
                Some(event) = events.recv() => self.event(event),
                Some(message) = replies.next() => self.reply(message),
                Some(message) = exports.next() => self.inbound(message),
                Some(item) = out.recv() => {
                    shared.taken(&item);
                    self.publish(item).await;
                }
                _ = sweep.tick() => self.sweep(),
                _ = owed.tick(), if !self.owed.is_empty() => {}
            }
            if self.dirty {
                self.release().await;
            }
            // Acknowledged once the ingress has taken nearly all that came:
            // a receiver slower than its senders slows them, rather than
            // refusing what its queue or its actors' mailboxes cannot hold.
            if !self.owed.is_empty() && self.shared.inbound.len() <= ACK_EVERY as usize {
                self.acknowledge().await;
            }
        }
        // What the actors handed over and this thread did not publish is
        // counted (tells, replies) or ended (requests): nothing is dropped
        // with the channel.
        out.close();
        while let Ok(item) = out.try_recv() {
            shared.taken(&item);
            self.unsent(item, Reason::Closed);
        }
        // What the windows hold goes out now, without waiting for room (the
        // receiver counts a gap if it cannot take it all), or is counted.
        let held: Vec<Out> = self
            .windows
            .values_mut()
            .flat_map(|w| w.held.drain(..))
            .collect();
        for item in held {
            shared.taken(&item);
            self.send_now(item).await;
        }
        // What was published reaches the server, unless it is away: then
        // closing does not wait for it.
        let _ = tokio::time::timeout(FLUSH_ON_CLOSE, self.client.flush()).await;
        self.fail_waiting();
        self.shared
            .counters
            .connected
            .store(false, Ordering::Relaxed);
    }

    /// Whether the client is connected now (its own state: the event that
    /// says so may come later).
    fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    fn event(&mut self, event: Event) {
        let counters = &self.shared.counters;
        match event {
            Event::Disconnected => {
                if counters.connected.swap(false, Ordering::Relaxed) {
                    bump(&counters.disconnects);
                }
                self.fail_waiting();
                // Acknowledgements on the way are lost with the connection:
                // what is held goes (or is counted) without them.
                for (node, w) in &mut self.windows {
                    w.acked = self.sequences.get(node).copied().unwrap_or(0);
                }
                self.dirty = true;
            }
            Event::Connected => {
                if !counters.connected.swap(true, Ordering::Relaxed) {
                    bump(&counters.reconnects);
                }
            }
            Event::Closed => {
                counters.connected.store(false, Ordering::Relaxed);
                self.fail_waiting();
            }
            Event::SlowConsumer(_) => {
                // The client dropped a message for want of room in a
                // subscription's queue.
                bump(&counters.slow_consumer);
                log::warn!(
                    "nats bridge of node {}: dropped a message (slow consumer)",
                    self.shared.node
                );
            }
            other => log::warn!("nats bridge of node {}: {other}", self.shared.node),
        }
    }

    /// Ends every request waiting for a remote reply with `target-failed`.
    fn fail_waiting(&mut self) {
        for (_, w) in self.waiting.drain() {
            bump(&self.shared.counters.requests_failed);
            complete(&w.back, w.id, Err(RequestError::TargetFailed), false);
        }
    }

    /// What could not be published, for `reason`: a tell or a reply is a
    /// dead letter of the bridge, a request ends with `target-failed`.
    fn unsent(&self, item: Out, reason: Reason) {
        let counters = &self.shared.counters;
        match item {
            Out::Tell { .. } | Out::Reply { .. } => counters.dead_letter(reason),
            Out::Request { id, back, .. } => {
                bump(&counters.requests_failed);
                complete(&back, id, Err(RequestError::TargetFailed), false);
            }
            Out::Refusal { .. } => {}
        }
    }

    /// Why a publish just failed: the client disconnected meanwhile, the
    /// bridge is closing, or the client refused it.
    fn why_unsent(&self) -> Reason {
        if !self.is_connected() {
            Reason::Disconnected
        } else if self.closing.get() {
            Reason::Closed
        } else {
            Reason::Refused
        }
    }

    /// Awaits a publish unless the client loses its connection meanwhile or
    /// the bridge is closing: whether it was handed to the client.
    ///
    /// A publish waits while the client's queue is full, and the client
    /// takes nothing from its queue while it reconnects: a publish waiting
    /// when the connection is lost would wait for the server's return, and
    /// hold this thread (what arrives, the events, the other nodes) all that
    /// time. It is given up instead, and counted as disconnected.
    async fn guarded<E>(&self, publish: impl Future<Output = Result<(), E>>) -> bool {
        tokio::select! {
            // The publish first: one the client takes at once never starts
            // the watch below.
            biased;
            published = publish => published.is_ok(),
            () = self.disconnected() => false,
            () = self.shared.close.notified() => {
                // For the loop, which ends on it.
                self.shared.close.notify_one();
                self.closing.set(true);
                false
            }
        }
    }

    /// Returns once the client is not connected (a look every
    /// `DISCONNECT_POLL`: the client has no wait for a change of its state).
    async fn disconnected(&self) {
        while self.is_connected() {
            tokio::time::sleep(DISCONNECT_POLL).await;
        }
    }

    /// Publishes `item`, or holds it while its node's window is full (what
    /// a window holds keeps its place in the outbound bytes).
    async fn publish(&mut self, item: Out) {
        let subject = match &item {
            Out::Tell { subject, .. } | Out::Request { subject, .. } => subject.clone(),
            _ => return self.send_now(item).await,
        };
        let node = node_of(&subject);
        let next = self.sequences.get(node).copied().unwrap_or(0);
        let w = match self.windows.get_mut(node) {
            Some(w) => w,
            None => self.windows.entry(node.to_owned()).or_insert(Window {
                acked: next,
                held: VecDeque::new(),
                heard: Instant::now(),
            }),
        };
        if !w.held.is_empty() || next.saturating_sub(w.acked) >= WINDOW {
            if w.held.len() >= MAX_HELD {
                // That node takes nothing for a long while: what comes for
                // it is counted at once, and the other nodes keep their share
                // of the outbound bytes.
                return self.unsent(item, Reason::Overloaded);
            }
            if w.held.is_empty() {
                w.heard = Instant::now();
            }
            self.shared.hold(&item);
            w.held.push_back(item);
            return;
        }
        self.send_now(item).await;
    }

    /// Publishes what the windows hold, as far as they have room.
    async fn release(&mut self) {
        self.dirty = false;
        let nodes: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, w)| !w.held.is_empty())
            .map(|(node, _)| node.clone())
            .collect();
        for node in nodes {
            loop {
                let next = self.sequences.get(&node).copied().unwrap_or(0);
                let Some(w) = self.windows.get_mut(&node) else {
                    break;
                };
                if next.saturating_sub(w.acked) >= WINDOW {
                    break;
                }
                let Some(item) = w.held.pop_front() else {
                    break;
                };
                self.shared.taken(&item);
                self.send_now(item).await;
            }
        }
    }

    /// Publishes the acknowledgements owed.
    async fn acknowledge(&mut self) {
        for (sender, seq) in std::mem::take(&mut self.owed) {
            if !self.is_connected() {
                break;
            }
            let mut headers = HeaderMap::new();
            headers.insert(SEQ, seq.to_string().as_str());
            headers.insert(NODE, self.node_key.as_str());
            self.guarded(self.client.publish_with_headers(
                format!("{sender}.ack"),
                headers,
                Bytes::new(),
            ))
            .await;
        }
    }

    /// Publishes `item` now (or counts it, disconnected).
    async fn send_now(&mut self, item: Out) {
        if !self.is_connected() {
            return self.unsent(item, Reason::Disconnected);
        }
        let shared = self.shared.clone();
        let counters = &shared.counters;
        match item {
            Out::Tell { subject, payload } => {
                let mut headers = HeaderMap::new();
                headers.insert(KIND, "tell");
                let node = self.number(&subject, &mut headers);
                let sent = self
                    .guarded(self.client.publish_with_reply_and_headers(
                        subject.to_string(),
                        self.refusals.clone(),
                        headers,
                        payload,
                    ))
                    .await;
                if sent {
                    bump(&counters.tells_out);
                } else {
                    self.unnumber(&node);
                    counters.dead_letter(self.why_unsent());
                }
            }
            Out::Request {
                subject,
                payload,
                timeout,
                made,
                id,
                back,
            } => {
                // The time it waited here counts against it.
                let timeout = timeout.saturating_sub(made.elapsed());
                if timeout.is_zero() {
                    bump(&counters.requests_failed);
                    return complete(&back, id, Err(RequestError::Timeout), false);
                }
                if self.waiting.len() >= shared.options.max_waiting_requests {
                    // As many wait for replies as the bridge keeps.
                    bump(&counters.requests_failed);
                    return complete(&back, id, Err(RequestError::TargetFailed), false);
                }
                let seq = self.next;
                self.next += 1;
                let mut headers = HeaderMap::new();
                headers.insert(TIMEOUT_NS, timeout.as_nanos().to_string().as_str());
                let node = self.number(&subject, &mut headers);
                let sent = self
                    .guarded(self.client.publish_with_reply_and_headers(
                        subject.to_string(),
                        format!("{}.{seq}", self.inbox),
                        headers,
                        payload,
                    ))
                    .await;
                if sent {
                    bump(&counters.requests_out);
                    let expires = Instant::now() + timeout + Duration::from_secs(1);
                    self.waiting.insert(seq, Waiting { id, back, expires });
                } else {
                    self.unnumber(&node);
                    bump(&counters.requests_failed);
                    complete(&back, id, Err(RequestError::TargetFailed), false);
                }
            }
            Out::Reply { to, result } => {
                let sent = match result {
                    Ok(payload) => self.guarded(self.client.publish(to, payload)).await,
                    Err(reason) => {
                        let mut headers = HeaderMap::new();
                        headers.insert(ERROR, reason.name());
                        self.guarded(self.client.publish_with_headers(to, headers, Bytes::new()))
                            .await
                    }
                };
                if sent {
                    bump(&counters.replies_out);
                } else {
                    counters.dead_letter(self.why_unsent());
                }
            }
            Out::Refusal {
                to,
                target,
                reason,
                count,
            } => {
                let mut headers = HeaderMap::new();
                headers.insert(ERROR, reason.name());
                headers.insert(TARGET, target.as_str());
                if count != 1 {
                    headers.insert(COUNT, count.to_string().as_str());
                }
                self.guarded(self.client.publish_with_headers(to, headers, Bytes::new()))
                    .await;
            }
        }
    }

    /// Numbers a message about to be published to `subject`; returns its
    /// node's key (to give the number back if the publish fails).
    fn number(&mut self, subject: &str, headers: &mut HeaderMap) -> String {
        let node = node_of(subject);
        let next = match self.sequences.get_mut(node) {
            Some(next) => next,
            None => self.sequences.entry(node.to_owned()).or_insert(0),
        };
        headers.insert(SEQ, next.to_string().as_str());
        if *next % ACK_EVERY == ACK_EVERY - 1 {
            headers.insert(ACK, "1");
        }
        *next += 1;
        node.to_owned()
    }

    /// The last number given for `node` was not published after all.
    fn unnumber(&mut self, node: &str) {
        if let Some(next) = self.sequences.get_mut(node) {
            *next = next.saturating_sub(1);
        }
    }

    /// Checks a message's place in its sender's sequence: a gap is what NATS
    /// lost on the way, counted here and reported to the sender.
    fn in_sequence(&mut self, message: &Message, target: &str) {
        let (Some(reply), Some(seq)) = (message.reply.as_ref(), number(message, SEQ)) else {
            return;
        };
        let Some((sender, _)) = reply.as_str().rsplit_once('.') else {
            return;
        };
        let Some(after) = seq.checked_add(1) else {
            return;
        };
        if !self.expected.contains_key(sender) && self.expected.len() >= MAX_SENDERS {
            self.expected.clear();
        }
        let expected = match self.expected.get_mut(sender) {
            Some(expected) => expected,
            None => self.expected.entry(sender.to_owned()).or_insert(seq),
        };
        if seq < *expected {
            // Behind: not from this sequence (NATS does not reorder one
            // publisher's messages); nothing to count.
            return;
        }
        let lost = seq - *expected;
        *expected = after;
        if lost > SEQ_WINDOW {
            log::warn!(
                "nats bridge of node {}: sequence of {sender} jumped by {lost}; following it from there",
                self.shared.node
            );
            return;
        }
        if lost > 0 {
            self.shared.counters.lost_here(Reason::Lost, lost);
            self.shared.send_out(Out::Refusal {
                to: format!("{sender}.refused"),
                target: target.to_owned(),
                reason: Reason::Lost,
                count: lost,
            });
        }
    }

    /// Notes the acknowledgement a message asks for (sent once the queue
    /// toward the runtime has room).
    fn owe(&mut self, message: &Message) {
        if header(message, ACK).is_none() {
            return;
        }
        let (Some(reply), Some(seq)) = (message.reply.as_ref(), number(message, SEQ)) else {
            return;
        };
        let Some((sender, _)) = reply.as_str().rsplit_once('.') else {
            return;
        };
        let room = self.owed.len() < MAX_SENDERS;
        match self.owed.get_mut(sender) {
            Some(owed) => *owed = (*owed).max(seq),
            None if room => {
                self.owed.insert(sender.to_owned(), seq);
            }
            None => {}
        }
    }

    /// A message for an exported actor.
    fn inbound(&mut self, message: Message) {
        let name = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        self.in_sequence(&message, &name);
        self.owe(&message);
        let is_tell = header(&message, KIND) == Some("tell") || message.reply.is_none();
        let reply = message.reply.as_ref().map(|r| r.as_str().to_owned());
        let refuse = |reason: Reason| {
            if is_tell {
                self.shared.refuse(reply.clone(), name.clone(), reason);
            } else if let Some(to) = reply.clone() {
                self.shared.counters.refused_here(reason);
                self.shared.send_out(Out::Reply {
                    to,
                    result: Err(reason),
                });
            }
        };
        if !self.is_exported(&name) {
            return refuse(Reason::Denied);
        }
        if !self.shared.inbound.is_open() {
            return refuse(Reason::ShuttingDown);
        }
        if self.shared.inbound.len() >= self.shared.options.max_inbound {
            return refuse(Reason::Overloaded);
        }
        let item = if is_tell {
            Inbound::Tell {
                name: name.clone(),
                payload: message.payload.clone(),
                refuse_to: reply.clone(),
            }
        } else {
            let timeout = match header(&message, TIMEOUT_NS) {
                None => PLAIN_REQUEST_TIMEOUT,
                Some(ns) => match ns.parse::<u64>() {
                    Ok(ns) => Duration::from_nanos(ns),
                    Err(_) => return refuse(Reason::Malformed),
                },
            }
            .min(self.shared.options.max_request_timeout);
            Inbound::Request {
                name: name.clone(),
                payload: message.payload.clone(),
                // The time it waits in the queue counts against it.
                deadline: std::time::Instant::now().checked_add(timeout),
                reply: reply.clone().unwrap_or_default(),
            }
        };
        if let Err(e) = self.shared.inbound.push(item) {
            // No wake-up reaches the ingress: it is gone while its runtime
            // runs (stopped, or failed), or its runtime stops its actors now
            // (the ingress refuses what it holds when it stops, and may have
            // already). Nothing will take what is queued: refused here, each
            // item once (the ingress may still pop some meanwhile).
            let reason = match e {
                SendError::UnknownTarget => Reason::TargetStopped,
                _ => Reason::ShuttingDown,
            };
            self.shared.refuse_queued(reason);
        }
    }

    fn is_exported(&self, name: &str) -> bool {
        self.shared
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name)
    }

    /// A reply to a request this bridge published, or a refusal of one of
    /// its tells.
    fn reply(&mut self, message: Message) {
        let counters = &self.shared.counters;
        let last = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or_default();
        let no_responders = message.status == Some(StatusCode::NO_RESPONDERS);
        let error = header(&message, ERROR).map(Reason::parse);
        if last == "ack" {
            if let (Some(node), Some(seq)) = (header(&message, NODE), number(&message, SEQ))
                && let Some(w) = self.windows.get_mut(node)
            {
                let next = self.sequences.get(node).copied().unwrap_or(0);
                let acked = seq.saturating_add(1).min(next);
                if acked > w.acked {
                    // Only progress counts as hearing from it: a stale or
                    // forged acknowledgement does not keep a window shut.
                    w.acked = acked;
                    w.heard = Instant::now();
                    self.dirty = true;
                }
            }
            return;
        }
        if last == "refused" {
            if no_responders {
                // A tell to a node with no bridge listening.
                counters.refused_remote(Reason::UnknownTarget, 1);
                return;
            }
            let count = number(&message, COUNT).unwrap_or(1).min(SEQ_WINDOW);
            counters.refused_remote(error.unwrap_or(Reason::Refused), count);
            return;
        }
        let Some(w) = last.parse().ok().and_then(|seq| self.waiting.remove(&seq)) else {
            bump(&counters.late_replies);
            return;
        };
        let (result, remote) = if no_responders {
            // No bridge listens on that node's subjects.
            bump(&counters.requests_failed);
            (Err(RequestError::UnknownTarget), false)
        } else if let Some(reason) = error {
            counters.refused_remote(reason, 1);
            (Err(reason.request_error()), true)
        } else {
            (Ok(message.payload), true)
        };
        complete(&w.back, w.id, result, remote);
    }

    /// Forgets requests whose requesters stopped waiting long ago; goes on
    /// past acknowledgements that do not come.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.waiting.retain(|_, w| w.expires > now);
        for (node, w) in &mut self.windows {
            if !w.held.is_empty() && now.duration_since(w.heard) > ACK_TIMEOUT {
                w.acked = self.sequences.get(node).copied().unwrap_or(0);
                w.heard = now;
                self.dirty = true;
            }
        }
    }
}

/// Header `key` of `message`, if it has it.
fn header<'m>(message: &'m Message, key: &str) -> Option<&'m str> {
    message.headers.as_ref()?.get(key).map(|v| v.as_str())
}

/// Header `key` of `message` as a number, if it has it and it is one.
fn number(message: &Message, key: &str) -> Option<u64> {
    header(message, key)?.parse().ok()
}

/// The key of `subject`'s node: the subject less the actor's name.
fn node_of(subject: &str) -> &str {
    subject.rsplit_once('.').map_or(subject, |(node, _)| node)
}

/// Hands the end of request `id` to its proxy.
fn complete(back: &Inlet<Completion>, id: u64, result: Result<Bytes, RequestError>, remote: bool) {
    // Refused only once the runtime takes no more sends: its shutdown ends
    // the request then.
    let _ = back.push(Completion { id, result, remote });
}
