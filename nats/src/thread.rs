//! The bridge's thread: one NATS connection on a single-threaded tokio
//! runtime, publishing what the proxies hand it, handing what arrives to the
//! ingress, and matching replies to the requests it published.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::header::HeaderMap;
use async_nats::{Client, Event, Message, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;
use wasmshard::RequestError;

use crate::actors::{Completion, Inbound};
use crate::inlet::Inlet;
use crate::stats::bump;
use crate::wire::{COUNT, ERROR, KIND, PLAIN_REQUEST_TIMEOUT, Reason, SEQ, TARGET, TIMEOUT_NS};
use crate::{BridgeError, Out, Shared};

/// Messages the client queues per subscription for this thread (it drops
/// what comes beyond, reporting each as a slow consumer). This thread takes
/// them without waiting, so only a thread starved of CPU falls this far
/// behind; the queue's memory is taken only as it fills.
const SUBSCRIPTION_CAPACITY: usize = 1 << 20;

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
        Err(_) => {
            let source = async_nats::ConnectError::new(async_nats::ConnectErrorKind::TimedOut);
            let _ = ready.send(Err(BridgeError::Connect { url, source }));
            return;
        }
    };
    let inbox = client.new_inbox();
    let exports = shared.subject(&shared.node, "*");
    let replies = format!("{inbox}.*");
    let mut subscriptions = Vec::new();
    for subject in [exports, replies] {
        match client.subscribe(subject.clone()).await {
            Ok(s) => subscriptions.push(s),
            Err(source) => {
                let _ = ready.send(Err(BridgeError::Subscribe { subject, source }));
                return;
            }
        }
    }
    // The subscriptions reach the server before anyone is told the bridge is
    // up: a message published to an exported actor from then on is taken.
    let _ = client.flush().await;
    shared.counters.connected.store(true, Ordering::Relaxed);
    let max_payload = client.server_info().max_payload;
    if ready.send(Ok(Connection { max_payload })).is_err() {
        return;
    }
    let replies = subscriptions.pop().expect("two subscriptions");
    let exports = subscriptions.pop().expect("two subscriptions");
    let mut bridge = Thread {
        shared,
        client,
        refusals: format!("{inbox}.refused"),
        inbox,
        waiting: HashMap::new(),
        next: 0,
        sequences: HashMap::new(),
        expected: HashMap::new(),
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
}

impl Thread {
    async fn serve(
        &mut self,
        mut out: UnboundedReceiver<Out>,
        mut events: UnboundedReceiver<Event>,
        mut exports: async_nats::Subscriber,
        mut replies: async_nats::Subscriber,
    ) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                    biased;
                Some(event) = events.recv() => self.event(event),
                // What arrives first, and it never waits: the client's
                // subscription queues stay short (a full one drops).
                Some(message) = replies.next() => self.reply(message),
                Some(message) = exports.next() => self.inbound(message),
                next = out.recv() => match next {
                    Some(Out::Close) | None => break,
                    Some(item) => self.publish(item).await,
                },
                _ = sweep.tick() => self.sweep(),
            }
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

    fn connected(&self) -> bool {
        self.shared.counters.connected.load(Ordering::Relaxed)
    }

    fn event(&mut self, event: Event) {
        let counters = &self.shared.counters;
        match event {
            Event::Disconnected => {
                if counters.connected.swap(false, Ordering::Relaxed) {
                    bump(&counters.disconnects);
                }
                self.fail_waiting();
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
            let _ = w.back.push(Completion {
                id: w.id,
                result: Err(RequestError::TargetFailed),
                remote: false,
            });
        }
    }

    async fn publish(&mut self, item: Out) {
        let shared = self.shared.clone();
        let counters = &shared.counters;
        match item {
            Out::Tell { subject, payload } => {
                let mut headers = HeaderMap::new();
                headers.insert(KIND, "tell");
                let sent = self.connected()
                    && self.sequence(&subject, &mut headers)
                    && self
                        .client
                        .publish_with_reply_and_headers(
                            subject.to_string(),
                            self.refusals.clone(),
                            headers,
                            payload,
                        )
                        .await
                        .is_ok();
                bump(if sent {
                    &counters.tells_out
                } else {
                    &counters.dead_letters
                });
            }
            Out::Request {
                subject,
                payload,
                timeout,
                id,
                back,
            } => {
                let seq = self.next;
                self.next += 1;
                let mut headers = HeaderMap::new();
                headers.insert(TIMEOUT_NS, timeout.as_nanos().to_string().as_str());
                let sent = self.connected()
                    && self.sequence(&subject, &mut headers)
                    && self
                        .client
                        .publish_with_reply_and_headers(
                            subject.to_string(),
                            format!("{}.{seq}", self.inbox),
                            headers,
                            payload,
                        )
                        .await
                        .is_ok();
                if sent {
                    bump(&counters.requests_out);
                    let expires = Instant::now() + timeout + Duration::from_secs(1);
                    self.waiting.insert(seq, Waiting { id, back, expires });
                } else {
                    bump(&counters.requests_failed);
                    let _ = back.push(Completion {
                        id,
                        result: Err(RequestError::TargetFailed),
                        remote: false,
                    });
                }
            }
            Out::Reply { to, result } => {
                let sent = self.connected()
                    && match result {
                        Ok(payload) => self.client.publish(to, payload).await.is_ok(),
                        Err(reason) => {
                            let mut headers = HeaderMap::new();
                            headers.insert(ERROR, reason.name());
                            self.client
                                .publish_with_headers(to, headers, Bytes::new())
                                .await
                                .is_ok()
                        }
                    };
                bump(if sent {
                    &counters.replies_out
                } else {
                    &counters.dead_letters
                });
            }
            Out::Refusal {
                to,
                target,
                reason,
                count,
            } => {
                if self.connected() {
                    let mut headers = HeaderMap::new();
                    headers.insert(ERROR, reason.name());
                    headers.insert(TARGET, target.as_str());
                    if count != 1 {
                        headers.insert(COUNT, count.to_string().as_str());
                    }
                    let _ = self
                        .client
                        .publish_with_headers(to, headers, Bytes::new())
                        .await;
                }
            }
            Out::Close => {}
        }
    }

    /// Numbers a message about to be published to `subject` (true: it is
    /// published next, so the number is spent).
    fn sequence(&mut self, subject: &str, headers: &mut HeaderMap) -> bool {
        let node = subject.rsplit_once('.').map_or(subject, |(node, _)| node);
        let next = match self.sequences.get_mut(node) {
            Some(next) => next,
            None => self.sequences.entry(node.to_owned()).or_insert(0),
        };
        headers.insert(SEQ, next.to_string().as_str());
        *next += 1;
        true
    }

    /// Checks a message's place in its sender's sequence: a gap is what NATS
    /// lost on the way, counted here and reported to the sender.
    fn in_sequence(&mut self, message: &Message, target: &str) {
        let (Some(reply), Some(seq)) = (
            message.reply.as_ref(),
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(SEQ))
                .and_then(|v| v.as_str().parse::<u64>().ok()),
        ) else {
            return;
        };
        let Some((sender, _)) = reply.as_str().rsplit_once('.') else {
            return;
        };
        let expected = match self.expected.get_mut(sender) {
            Some(expected) => expected,
            None => self.expected.entry(sender.to_owned()).or_insert(seq),
        };
        let lost = seq.saturating_sub(*expected);
        *expected = (*expected).max(seq + 1);
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

    /// A message for an exported actor.
    fn inbound(&mut self, message: Message) {
        let name = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let header = |key: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(key))
                .map(|v| v.as_str().to_owned())
        };
        self.in_sequence(&message, &name);
        let is_tell = header(KIND).as_deref() == Some("tell") || message.reply.is_none();
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
            let timeout = match header(TIMEOUT_NS) {
                None => PLAIN_REQUEST_TIMEOUT,
                Some(ns) => match ns.parse::<u64>() {
                    Ok(ns) => Duration::from_nanos(ns),
                    Err(_) => return refuse(Reason::Malformed),
                },
            };
            Inbound::Request {
                name: name.clone(),
                payload: message.payload.clone(),
                timeout,
                reply: reply.clone().unwrap_or_default(),
            }
        };
        if self.shared.inbound.push(item).is_err() {
            // The runtime is shutting down: the item stays queued for the
            // ingress, which may still take it; the bridge counts what is
            // left when it closes.
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
        let error = message
            .headers
            .as_ref()
            .and_then(|h| h.get(ERROR))
            .map(|v| Reason::parse(v.as_str()));
        if last == "refused" {
            let count = message
                .headers
                .as_ref()
                .and_then(|h| h.get(COUNT))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(1);
            counters.refused_remote(error.unwrap_or(Reason::Refused), count);
            return;
        }
        let Some(w) = last.parse().ok().and_then(|seq| self.waiting.remove(&seq)) else {
            bump(&counters.late_replies);
            return;
        };
        let (result, remote) = if message.status == Some(StatusCode::NO_RESPONDERS) {
            // No bridge listens on that node's subjects.
            bump(&counters.requests_failed);
            (Err(RequestError::UnknownTarget), false)
        } else if let Some(reason) = error {
            counters.refused_remote(reason, 1);
            (Err(reason.request_error()), true)
        } else {
            (Ok(message.payload), true)
        };
        let _ = w.back.push(Completion {
            id: w.id,
            result,
            remote,
        });
    }

    /// Forgets requests whose requesters stopped waiting long ago.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.waiting.retain(|_, w| w.expires > now);
    }
}
