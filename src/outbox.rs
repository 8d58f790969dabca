//! The send side of an actor: admission against the target's mailbox, then staging.
//!
//! Host functions and native actors both send through an [`Outbox`]. A send is
//! admitted at once (so a full mailbox is reported to the sender synchronously) and
//! the envelope is staged; the shard routes staged envelopes when the invocation
//! returns, so host functions never re-enter the shard.

use std::sync::Arc;

use crate::actor_requests::ActorRequests;
use crate::address::Address;
use crate::audit::Record;
use crate::component::Component;
use crate::directory::Directory;
use crate::envelope::{Envelope, Kind, Payload, deadline_ms};
use crate::error::{ChildSpawnError, RequestError, SendError};
use crate::grants::{Aim, Bucket, Grants, Masks, Operation};
use crate::message_log::Whom;
use crate::requests::{Requests, Waiter};
use crate::storage::Storage;
use crate::trace::{Trace, TraceContext};

pub(crate) struct Outbox {
    pub(crate) me: Address,
    pub(crate) name: Arc<str>,
    pub(crate) directory: Arc<Directory>,
    /// What its grants allow (trusted: everything).
    pub(crate) masks: Masks,
    /// Its quota, if it has one.
    pub(crate) rate: Option<Box<Bucket>>,
    /// The shard's clock reading for this turn (set when it has a quota).
    pub(crate) now: u64,
    /// Operations denied by its grants.
    pub(crate) denied: u64,
    /// Sends refused by its quota.
    pub(crate) rate_limited: u64,
    /// What it sent during the invocation under way, routed by the shard
    /// after it. Empty until the actor first sends (an idle actor holds no
    /// room for envelopes: 112 bytes each); then it keeps the room it has
    /// needed, so steady sending allocates nothing (beyond 256 envelopes'
    /// room, only as long as its invocations still use a quarter of it: see
    /// `Shard::keep_staged`).
    pub(crate) staged: Vec<Envelope>,
    /// While `staged` holds more than 256 envelopes' room: the most one
    /// invocation staged, and the invocations counted, since the room was
    /// last weighed.
    pub(crate) staged_peak: usize,
    pub(crate) staged_calls: u32,
    /// Messages and requests sent successfully, as counted for the actor's stats.
    pub(crate) sent: u64,
    /// The shard's request table, lent for the length of an invocation.
    pub(crate) table: Option<Box<Requests>>,
    /// While `init` runs off the shard (a spawn from the host): how to borrow
    /// the shard's table, the first time a call needs it.
    pub(crate) lend: Option<Box<crate::placement::Lend>>,
    /// This actor's requests: open, being handled, deferred.
    pub(crate) requests: ActorRequests,
    /// Its grants (`None`: trusted), for spawns and what its children inherit.
    pub(crate) grants: Option<Arc<Grants>>,
    /// Its storage (kept with the outbox, so a restart finds it).
    pub(crate) storage: Storage,
    /// Children it spawned during the invocation, for the shard to start
    /// (their slots taken, their names registered) before it routes `staged`.
    pub(crate) spawns: Vec<Child>,
    /// Its timers pending in the shard's table (they outlive an instance:
    /// kept with the outbox, so a restart or upgrade finds them).
    pub(crate) timers: u32,
    /// Whether it ever subscribed to a topic (its subscriptions end with it).
    pub(crate) subscribed: bool,
    /// The topics it published to, resolved (made at its first publication).
    pub(crate) topic_cache: Option<Box<crate::topics::Cache>>,
    /// Set while it is the new instance of an upgrade, running its `init`.
    pub(crate) trial: Option<Box<Trial>>,
    /// The trace context of the envelope it is handling, if that is traced:
    /// what it sends meanwhile carries a child of it.
    pub(crate) trace: Option<TraceContext>,
    /// Whether its messages are logged (`log-messages`).
    pub(crate) logs: bool,
}

/// What the new instance of an upgrade did with timers during its `init`,
/// undone if the upgrade rolls back.
#[derive(Default)]
pub(crate) struct Trial {
    /// The timers it set.
    pub(crate) scheduled: Vec<u64>,
    /// Earlier timers it cancelled: they end when the upgrade commits.
    pub(crate) cancelled: Vec<u64>,
    /// Topics it unsubscribed from: they end when the upgrade commits (until
    /// then the old instance stands, subscribed).
    pub(crate) unsubscribed: Vec<Box<str>>,
    /// The requests and watches the old instance has open: the old
    /// instance's, which the new one cannot cancel (they end with the old
    /// instance if the upgrade commits, and go on if it rolls back).
    pub(crate) inherited: Vec<u64>,
}

/// An actor spawned by another, waiting for its shard to start it: its slot
/// and address are its already, its `init` has not run.
pub(crate) struct Child {
    pub(crate) slot: u32,
    pub(crate) me: Address,
    pub(crate) name: Arc<str>,
    /// Whether its name is in the registry (it is not anonymous).
    pub(crate) registered: bool,
    pub(crate) parent: Address,
    pub(crate) masks: Masks,
    pub(crate) grants: Arc<Grants>,
    pub(crate) component: Component,
    pub(crate) config: Vec<u8>,
    /// Its quota: its parent's, or the runtime's default.
    pub(crate) rate: Option<crate::grants::Rate>,
}

/// Whether `grants` allow `operation` on `name` (a topic or component name:
/// matched against the patterns, on the rare paths that name one).
fn allows(grants: &Grants, operation: Operation, name: &str) -> bool {
    grants
        .patterns(operation)
        .iter()
        .any(|p| crate::grants::pattern_matches(p, name))
}

impl Outbox {
    pub(crate) fn new(
        me: Address,
        name: Arc<str>,
        directory: Arc<Directory>,
        masks: Masks,
        grants: Option<Arc<Grants>>,
    ) -> Outbox {
        Outbox {
            logs: directory.logs_messages(&name),
            me,
            name,
            directory,
            masks,
            rate: None,
            now: 0,
            denied: 0,
            rate_limited: 0,
            staged: Vec::new(),
            staged_peak: 0,
            staged_calls: 0,
            sent: 0,
            table: None,
            lend: None,
            requests: ActorRequests::default(),
            grants,
            storage: Storage::default(),
            spawns: Vec::new(),
            timers: 0,
            subscribed: false,
            topic_cache: None,
            trial: None,
            trace: None,
        }
    }

    /// Whether an `init` running off the shard waited for the shard to lend
    /// its table since the last look ([`Lend::waited`](crate::placement::Lend::waited)).
    #[inline]
    pub(crate) fn waited_for_shard(&mut self) -> bool {
        self.lend.as_mut().is_some_and(|l| l.waited())
    }

    /// The shard's request table: lent for the invocation, or borrowed from
    /// the shard now by an `init` running off it.
    #[inline]
    fn borrow_table(&mut self) {
        if self.table.is_none()
            && let Some(lend) = &mut self.lend
            && let Some(mut table) = lend.borrow()
        {
            table.set_now(&self.directory, self.now);
            self.table = Some(table);
        }
    }

    /// Offers `payload` to every current subscriber of `topic`, each admitted
    /// at its mailbox at once (staged as a message from this actor, so it
    /// keeps its place among what this actor sends that subscriber). One unit
    /// of a quota, whatever the number of subscribers.
    ///
    /// # Errors
    ///
    /// `too-large` for a payload over the maximum or a topic over
    /// [`crate::MAX_TOPIC_LEN`]; `unknown-target` for a topic that breaks the
    /// grammar (see [`crate::topics`]); `denied` by its `publish` grant;
    /// `too-many-requests` beyond its quota; `shutting-down`.
    pub(crate) fn publish(
        &mut self,
        topic: &str,
        payload: Payload,
    ) -> Result<crate::PublishOutcome, SendError> {
        let size = payload.len();
        let published = self.publish_unlogged(topic, payload);
        if let Err(e) = published
            && self.logs
        {
            self.log_refused(Whom::Topic(topic), "publication", size, e);
        }
        published
    }

    /// A refused send, request, answer or publication of an actor whose
    /// messages are logged.
    fn log_refused(&self, to: Whom<'_>, kind: &str, size: usize, e: SendError) {
        crate::message_log::refused(&self.name, self.me, to, kind, size, self.trace, e);
    }

    fn publish_unlogged(
        &mut self,
        topic: &str,
        payload: Payload,
    ) -> Result<crate::PublishOutcome, SendError> {
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        crate::topics::checked(topic, false)?;
        if self.directory.is_stopping() {
            return Err(SendError::ShuttingDown);
        }
        if let Some(rate) = &self.rate
            && !rate.admits(self.now)
        {
            return Err(self.limited());
        }
        let mut cache = self.topic_cache.take().unwrap_or_default();
        let grants = self.grants.as_deref();
        let route = cache.route(&self.directory.topics, topic, |t| {
            grants.is_none_or(|g| allows(g, Operation::Publish, t))
        });
        let (me, staged, trace) = (self.me, &mut self.staged, self.trace);
        // Its shard's counters are written by that shard's thread alone; an
        // `init` run off the shard (a spawn from the host runs it on the
        // caller's thread, with the table lent) counts in the host's, which
        // any thread may add to.
        let lane = if self.lend.is_none() {
            me.shard()
        } else {
            self.directory.shard_count()
        };
        let outcome = route.map(|route| {
            route.offer(&self.directory, &payload, lane, |to| {
                stage(staged, || Envelope {
                    trace: None,
                    to,
                    from: me,
                    kind: Kind::Tell,
                    payload: payload.clone(),
                });
                if let Some(current) = trace {
                    trace_last(staged, current);
                }
            })
        });
        self.topic_cache = Some(cache);
        if let Some(rate) = &mut self.rate {
            // A denied publication costs its quota too, as a denied send does.
            rate.spend(self.now);
        }
        match outcome {
            Some(outcome) => {
                self.sent += u64::from(outcome.delivered);
                Ok(outcome)
            }
            None => Err(self.deny_name(Operation::Publish, topic)),
        }
    }

    /// Subscribes this actor to `topic` (a name, or a pattern ending in `.*`).
    ///
    /// # Errors
    ///
    /// `too-large` for a topic over [`crate::MAX_TOPIC_LEN`]; `unknown-target`
    /// for one that breaks the grammar; `denied` by its `subscribe` grant;
    /// `too-many-requests` beyond [`crate::MAX_SUBSCRIPTIONS`];
    /// `shutting-down`.
    pub(crate) fn subscribe(&mut self, topic: &str) -> Result<(), SendError> {
        use crate::topics::SubscribeError;
        crate::topics::checked(topic, true)?;
        if self.directory.is_stopping() {
            return Err(SendError::ShuttingDown);
        }
        if let Some(g) = self.grants.as_deref()
            && !allows(g, Operation::Subscribe, topic)
        {
            return Err(self.deny_name(Operation::Subscribe, topic));
        }
        match self.directory.topics.subscribe(self.me, topic) {
            Ok(()) => {
                self.subscribed = true;
                Ok(())
            }
            Err(SubscribeError::TooMany) => Err(SendError::TooManyRequests),
            Err(SubscribeError::Malformed(_)) => Err(SendError::UnknownTarget),
        }
    }

    /// Ends this actor's subscription to `topic`; returns whether it had one.
    pub(crate) fn unsubscribe(&mut self, topic: &str) -> bool {
        if !self.subscribed {
            return false;
        }
        if let Some(trial) = self.trial.as_deref_mut() {
            // An upgrade's `init`: it ends when the upgrade commits.
            if trial.unsubscribed.iter().any(|t| &**t == topic) {
                return false;
            }
            let had = self.directory.topics.is_subscribed(self.me, topic);
            if had {
                trial.unsubscribed.push(topic.into());
            }
            return had;
        }
        self.directory.topics.unsubscribe(self.me, topic)
    }

    /// Sets a timer: `payload` comes back to this actor's `handle-message`
    /// (from itself) once `delay_ns` has passed. Returns the timer's id.
    ///
    /// # Errors
    ///
    /// `too-large` for a payload over the maximum; `too-many-requests` beyond
    /// the per-actor cap on pending timers.
    pub(crate) fn schedule(&mut self, delay_ns: u64, payload: Payload) -> Result<u64, SendError> {
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        if self.timers >= self.directory.max_timers {
            return Err(SendError::TooManyRequests);
        }
        self.borrow_table();
        let table = self.table.as_mut().ok_or(SendError::ShuttingDown)?;
        let id = table.open_timer(self.me, self.me, delay_ns, payload)?;
        self.timers += 1;
        if let Some(trial) = &mut self.trial {
            trial.scheduled.push(id);
        }
        Ok(id)
    }

    /// Cancels timer `id` of this actor; returns whether it was pending (a
    /// cancelled timer never fires).
    pub(crate) fn cancel_timer(&mut self, id: u64) -> bool {
        let Some(table) = self.table.as_mut() else {
            return false;
        };
        if let Some(trial) = &mut self.trial {
            match trial.scheduled.iter().position(|&t| t == id) {
                // One it set itself: cancelled now.
                Some(at) => {
                    trial.scheduled.swap_remove(at);
                }
                // An earlier instance's: cancelled if the upgrade commits.
                None => {
                    let pending = table.is_timer_of(id, self.me) && !trial.cancelled.contains(&id);
                    if pending {
                        trial.cancelled.push(id);
                    }
                    return pending;
                }
            }
        }
        let cancelled = table.cancel_timer(id, self.me);
        if cancelled {
            self.timers -= 1;
        }
        cancelled
    }

    /// Admits and stages a tell of `payload` to `to`.
    #[inline]
    pub(crate) fn send(&mut self, to: Address, payload: Payload) -> Result<(), SendError> {
        if self.logs {
            return self.send_logged(to, payload);
        }
        self.send_unlogged(to, payload)
    }

    /// [`Outbox::send`] for an actor whose messages are logged: a refusal is
    /// logged here (the shard logs what it routes).
    #[cold]
    #[inline(never)]
    fn send_logged(&mut self, to: Address, payload: Payload) -> Result<(), SendError> {
        let size = payload.len();
        let sent = self.send_unlogged(to, payload);
        if let Err(e) = sent {
            self.log_refused(Whom::Actor(to), "message", size, e);
        }
        sent
    }

    #[inline(always)]
    fn send_unlogged(&mut self, to: Address, payload: Payload) -> Result<(), SendError> {
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        if self.rate.is_some() {
            return self.send_limited(to, payload);
        }
        self.admit_and_stage(to, payload)
    }

    /// Admission with the send grant, then staging. Inlined into both callers:
    /// left a call of its own it cost natives' sends about 1.5 % of
    /// `route::natives`.
    #[inline(always)]
    fn admit_and_stage(&mut self, to: Address, payload: Payload) -> Result<(), SendError> {
        if let Err(e) = self
            .directory
            .admit_from_actor(to, &payload, self.masks.send)
        {
            self.refused(to, &payload, e, Operation::Send)?;
        }
        let me = self.me;
        stage(&mut self.staged, || Envelope {
            trace: None,
            to,
            from: me,
            kind: Kind::Tell,
            payload,
        });
        if let Some(current) = self.trace {
            trace_last(&mut self.staged, current);
        }
        self.sent += 1;
        Ok(())
    }

    /// [`Outbox::send`] for an actor with a quota (out of line: the others pay
    /// one branch for it).
    #[inline(never)]
    fn send_limited(&mut self, to: Address, payload: Payload) -> Result<(), SendError> {
        if !self.quota_admits(to) {
            return Err(self.limited());
        }
        let sent = self.admit_and_stage(to, payload);
        // A denied send costs its quota too: an actor with a quota cannot fill
        // the audit trail faster than it may send.
        if matches!(sent, Ok(()) | Err(SendError::Denied)) {
            self.spend(to);
        }
        sent
    }

    /// Whether the quota lets a send to `to` go (messages to itself always go).
    #[inline]
    fn quota_admits(&self, to: Address) -> bool {
        self.rate
            .as_ref()
            .is_none_or(|rate| to == self.me || rate.admits(self.now))
    }

    /// A send to `to` was admitted: it costs its quota (messages to itself are free).
    #[inline]
    fn spend(&mut self, to: Address) {
        if let Some(rate) = &mut self.rate
            && to != self.me
        {
            rate.spend(self.now);
        }
    }

    /// A send beyond the quota.
    #[cold]
    fn limited(&mut self) -> SendError {
        self.rate_limited += 1;
        SendError::TooManyRequests
    }

    /// Admission refused `to` with `e`: a denial of a message to itself is
    /// admitted again without the grant; other denials are recorded.
    #[cold]
    fn refused(
        &mut self,
        to: Address,
        payload: &[u8],
        e: SendError,
        op: Operation,
    ) -> Result<(), SendError> {
        if e != SendError::Denied {
            return Err(e);
        }
        if to == self.me || self.is_child(to) {
            return self.directory.admit_from_actor(to, payload, u64::MAX);
        }
        Err(self.deny(op, Aim::Actor(to)))
    }

    /// Counts and records a denial.
    #[cold]
    fn deny(&mut self, operation: Operation, aim: Aim) -> SendError {
        self.denied += 1;
        // A send, a request and a publication spent the quota already; any
        // other operation's denial spends it here, and past the quota it is
        // counted but not recorded: an actor with a quota cannot fill the
        // audit trail faster than it may send.
        if !matches!(
            operation,
            Operation::Send | Operation::Request | Operation::Publish
        ) && let Some(rate) = &mut self.rate
        {
            if !rate.admits(self.now) {
                return SendError::Denied;
            }
            rate.spend(self.now);
        }
        self.directory.record(Record {
            at_ns: self.directory.now_ns(),
            from: self.me,
            from_name: self.name.clone(),
            operation,
            aim,
        });
        SendError::Denied
    }

    /// Admits and stages a request; returns its id.
    pub(crate) fn request(
        &mut self,
        to: Address,
        payload: Payload,
        timeout_ns: u64,
    ) -> Result<u64, SendError> {
        if self.logs {
            return self.request_logged(to, payload, timeout_ns);
        }
        self.request_unlogged(to, payload, timeout_ns)
    }

    /// [`Outbox::request`] for an actor whose messages are logged.
    #[cold]
    #[inline(never)]
    fn request_logged(
        &mut self,
        to: Address,
        payload: Payload,
        timeout_ns: u64,
    ) -> Result<u64, SendError> {
        let size = payload.len();
        let made = self.request_unlogged(to, payload, timeout_ns);
        if let Err(e) = made {
            self.log_refused(Whom::Actor(to), "request", size, e);
        }
        made
    }

    #[inline(always)]
    fn request_unlogged(
        &mut self,
        to: Address,
        payload: Payload,
        timeout_ns: u64,
    ) -> Result<u64, SendError> {
        // The table is lent for every invocation (a start function cannot get
        // here: calls that act trap during instantiation), or borrowed by an
        // `init` off the shard.
        self.borrow_table();
        let Some(table) = self.table.as_mut() else {
            return Err(SendError::ShuttingDown);
        };
        if self.requests.open() >= self.directory.max_open_requests || !table.has_room() {
            return Err(SendError::TooManyRequests);
        }
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        if !self.quota_admits(to) {
            return Err(self.limited());
        }
        if let Err(e) = self
            .directory
            .admit_from_actor(to, &payload, self.masks.request)
            && let Err(e) = self.refused(to, &payload, e, Operation::Request)
        {
            if e == SendError::Denied {
                // As for a send: a denial costs its quota.
                self.spend(to);
            }
            return Err(e);
        }
        let table = self.table.as_mut().ok_or(SendError::ShuttingDown)?;
        let now = table.now(&self.directory);
        // Made while handling a request: capped at its deadline, and ended
        // with it if it ends by timeout or cancel.
        let (timeout_ns, parent) = match self.requests.on_behalf() {
            Some((parent, deadline)) => (
                timeout_ns.min(crate::envelope::remaining_ns(deadline, now)),
                parent,
            ),
            None => (timeout_ns, 0),
        };
        let id = table.open_for(Waiter::Actor(self.me), to, timeout_ns, parent)?;
        self.spend(to);
        self.requests.opened();
        let me = self.me;
        stage(&mut self.staged, || Envelope {
            trace: None,
            to,
            from: me,
            kind: Kind::Request(id, deadline_ms(now, timeout_ns)),
            payload,
        });
        if let Some(current) = self.trace {
            trace_last(&mut self.staged, current);
        }
        self.sent += 1;
        Ok(id)
    }

    /// Stages the reply to request `id`, which this actor received and has not
    /// answered yet.
    pub(crate) fn respond(&mut self, id: u64, payload: Payload) -> Result<(), SendError> {
        let size = payload.len();
        let answered = self.respond_unlogged(id, payload);
        if let Err(e) = answered
            && self.logs
        {
            self.log_refused(Whom::Answer(id), "response", size, e);
        }
        answered
    }

    /// `too-large` for a payload the host functions refuse before the
    /// outbox sees it (logged as refused, if the actor's messages are).
    #[cold]
    pub(crate) fn too_large(&self, to: Whom<'_>, kind: &str, size: usize) -> SendError {
        if self.logs {
            self.log_refused(to, kind, size, SendError::TooLarge);
        }
        SendError::TooLarge
    }

    fn respond_unlogged(&mut self, id: u64, payload: Payload) -> Result<(), SendError> {
        if payload.len() > self.directory.max_payload {
            return Err(SendError::TooLarge);
        }
        // Never received, or already answered.
        let (requester, deferred) = self.requests.answer(id).ok_or(SendError::UnknownTarget)?;
        // A deferred request's answer is part of its trace, whatever is
        // being handled now; the host takes no trace.
        let trace = inherit_to(requester, deferred.unwrap_or(self.trace));
        let me = self.me;
        stage(&mut self.staged, || Envelope {
            trace,
            to: requester,
            from: me,
            kind: Kind::Response(id, Ok(())),
            payload,
        });
        Ok(())
    }

    /// Ends request `id`, which this actor received and has not answered yet,
    /// with `error` instead of a reply.
    pub(crate) fn fail(&mut self, id: u64, error: RequestError) -> Result<(), SendError> {
        let (requester, deferred) = self.requests.answer(id).ok_or(SendError::UnknownTarget)?;
        let trace = inherit_to(requester, deferred.unwrap_or(self.trace));
        let mut notice = Envelope::failure(requester, self.me, id, error);
        notice.trace = trace;
        self.staged.push(notice);
        Ok(())
    }

    /// Nanoseconds left before the request being handled ends for its
    /// requester (`None` outside a request's handler).
    pub(crate) fn remaining_ns(&self) -> Option<u64> {
        let (_, deadline) = self.requests.on_behalf()?;
        let now = self.now_ns();
        Some(crate::envelope::remaining_ns(deadline, now))
    }

    /// Whether a request this actor handles now can be deferred (the actor
    /// holds fewer than `max_open_requests`).
    pub(crate) fn can_defer(&mut self) -> bool {
        let now = self.now_ns();
        let cap = self.directory.max_open_requests as usize;
        self.requests.has_room(now, cap)
    }

    /// Cancels request `id` if this actor made it and it is still open.
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        let Some(table) = self.table.as_mut() else {
            return false;
        };
        if !table.is_open_by(id, self.me)
            || self
                .trial
                .as_deref()
                .is_some_and(|t| t.inherited.contains(&id))
        {
            return false;
        }
        let Some((_, target, monitor)) = table.close_entry(id) else {
            return false;
        };
        self.requests.ended();
        if monitor {
            // A watch made in this invocation is not sent at all (else a
            // loop of monitor and cancel would stage without bound).
            if let Some(at) = self
                .staged
                .iter()
                .rposition(|e| e.kind == Kind::Monitor(id) && e.to == target)
            {
                self.staged.remove(at);
                return true;
            }
            // The target forgets the watch (else a loop of monitor and
            // cancel would grow its list without bound).
            self.staged.push(Envelope {
                trace: None,
                to: target,
                from: self.me,
                kind: Kind::Demonitor(id),
                payload: Payload::new(),
            });
        } else {
            table.counts.cancelled += 1;
            table.cancelled_early();
            // What the target asked on its behalf ends too.
            self.staged.push(Envelope {
                trace: None,
                to: target,
                from: self.me,
                kind: Kind::Revoke(id),
                payload: Payload::new(),
            });
        }
        true
    }

    /// The actor registered under `name`; `Err(())` if its grants hide it (see
    /// [`Outbox::hidden`]).
    pub(crate) fn lookup(&self, name: &str) -> Result<Option<Address>, ()> {
        self.directory.lookup(name, self.masks.lookup)
    }

    /// Counts and records a `lookup` of `name` that its grants hid.
    #[cold]
    pub(crate) fn hidden(&mut self, name: &str) {
        self.deny_name(Operation::Lookup, name);
    }

    /// Counts and records a denial of `operation` on a name (a component,
    /// a topic, a name looked up), cut for the audit trail.
    #[cold]
    fn deny_name(&mut self, operation: Operation, name: &str) -> SendError {
        let name: String = name.chars().take(256).collect();
        self.deny(operation, Aim::Name(name.into()))
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.directory.now_ns()
    }

    /// Whether this actor spawned the actor last in `to`'s slot (the
    /// admission that follows checks it is still that one).
    #[cold]
    fn is_child(&self, to: Address) -> bool {
        // The slot's word first (live at `to`'s generation, Acquire), then
        // the parent, as in `Directory::reach`: read the other way round, a
        // parent written before the slot was reused could vouch for the
        // stranger that took it.
        self.directory.slots_of(to.shard()).is_some_and(|t| {
            t.labels(to.slot(), to.generation()).is_some() && t.is_parent(to.slot(), self.me)
        })
    }

    /// Spawns an actor from the component registered as `component`, named
    /// `name` (`None`: anonymous), on this actor's shard: its slot is taken and
    /// its name registered now, so its address is returned at once; the shard
    /// starts it (runs its `init` with `config`) when this invocation returns,
    /// before it routes what this one sent (as far as the pass has time: what
    /// is sent to a child not started yet waits for it). It inherits this
    /// actor's grants
    /// (an actor spawned by a native one gets the runtime's default grants).
    pub(crate) fn spawn(
        &mut self,
        component: &str,
        name: Option<&str>,
        config: &[u8],
    ) -> Result<Address, ChildSpawnError> {
        let d = self.directory.clone();
        if d.is_closing() || d.is_stopping() {
            return Err(ChildSpawnError::ShuttingDown);
        }
        if let Some(grants) = &self.grants
            && !allows(grants, Operation::Spawn, component)
        {
            self.deny_name(Operation::Spawn, component);
            return Err(ChildSpawnError::Denied);
        }
        // A name its `lookup` grant hides is refused whether it is taken or
        // not: `name-taken` would tell it that the name exists.
        if let (Some(grants), Some(n)) = (&self.grants, name)
            && !allows(grants, Operation::Lookup, n)
        {
            self.hidden(n);
            return Err(ChildSpawnError::Denied);
        }
        // No component is registered under a name longer than an actor's:
        // a longer one is not hashed under the registry's lock.
        let Some(made_from) = (component.len() <= crate::MAX_NAME_LEN)
            .then(|| d.component(component))
            .flatten()
        else {
            return Err(ChildSpawnError::UnknownComponent);
        };
        let shard = self.me.shard();
        // Checked by the callers, which trap or panic on a bad name.
        debug_assert!(name.is_none_or(crate::config::is_valid_name));
        let (name, registered) = match name {
            Some(n) => (d.reserve(n).map_err(|_| ChildSpawnError::NameTaken)?, true),
            None => (Arc::from(component), false),
        };
        let Some(slot) = d.pool(shard).take() else {
            if registered {
                d.unregister(&name, Address::HOST, 0);
            }
            return Err(ChildSpawnError::NoCapacity);
        };
        let grants = self
            .grants
            .clone()
            .unwrap_or_else(|| d.default_grants.clone());
        let accepts = crate::slots::accepts_bits(made_from.accepts().unwrap_or_default());
        let enrolled = d.enroll(
            &name,
            (shard, slot),
            accepts,
            Some(&grants),
            self.me,
            registered,
        );
        let (me, masks) = match enrolled {
            Ok(e) => e,
            Err(_) => {
                d.pool(shard).give_back(slot);
                if registered {
                    d.unregister(&name, Address::HOST, 0);
                }
                return Err(ChildSpawnError::NoCapacity);
            }
        };
        let name = if registered {
            name
        } else {
            // Anonymous: named for reports by its component and address (`@`
            // and 18 characters), the component's name cut to keep the whole
            // within `MAX_NAME_LEN`.
            let mut cut = component.len().min(crate::MAX_NAME_LEN - 19);
            while !component.is_char_boundary(cut) {
                cut -= 1;
            }
            Arc::from(format!("{}@{me}", &component[..cut]))
        };
        self.spawns.push(Child {
            slot,
            me,
            name,
            registered,
            parent: self.me,
            masks,
            grants,
            component: made_from,
            config: config.to_vec(),
            rate: self.rate.as_deref().map(|b| b.rate).or(d.default_rate),
        });
        Ok(me)
    }

    /// Stops `target` once this invocation returns (after what it sent
    /// before): its own child, itself, or an actor its `stop` grant names.
    pub(crate) fn stop(&mut self, target: Address) -> Result<(), SendError> {
        if let Err(e) = self.directory.reach(self.me, target, self.masks.stop) {
            return Err(self.unreached(e, Operation::Stop, target));
        }
        // One stop of a target per invocation: a second would stop nothing
        // (and a loop of them would stage without bound).
        if self
            .staged
            .iter()
            .any(|e| e.kind == Kind::Stop && e.to == target)
        {
            return Ok(());
        }
        self.staged.push(Envelope {
            trace: None,
            to: target,
            from: self.me,
            kind: Kind::Stop,
            payload: Payload::new(),
        });
        Ok(())
    }

    /// Watches `target` (its own child, itself, or an actor its `monitor`
    /// grant names): returns the id that ends, through `handle-response`, with
    /// `target-stopped` or `target-failed` once the target is gone for good.
    pub(crate) fn monitor(&mut self, target: Address) -> Result<u64, SendError> {
        self.borrow_table();
        let Some(table) = self.table.as_mut() else {
            return Err(SendError::ShuttingDown);
        };
        if self.requests.open() >= self.directory.max_open_requests || !table.has_room() {
            return Err(SendError::TooManyRequests);
        }
        if let Err(e) = self.directory.reach(self.me, target, self.masks.monitor) {
            return Err(self.unreached(e, Operation::Monitor, target));
        }
        let table = self.table.as_mut().ok_or(SendError::ShuttingDown)?;
        let id = table.open_monitor(self.me, target)?;
        self.requests.opened();
        self.staged.push(Envelope {
            trace: None,
            to: target,
            from: self.me,
            kind: Kind::Monitor(id),
            payload: Payload::new(),
        });
        Ok(id)
    }

    /// A `stop` or `monitor` that could not reach `target`: a denial is
    /// recorded; at shutdown any refusal says `shutting-down`.
    #[cold]
    fn unreached(&mut self, e: SendError, op: Operation, target: Address) -> SendError {
        if e == SendError::Denied {
            return self.deny(op, Aim::Actor(target));
        }
        if self.directory.is_stopping() {
            return SendError::ShuttingDown;
        }
        e
    }
}

/// Pushes the envelope `make` builds onto `staged`, built where it is to lie
/// (pushed whole, the envelope was built on the stack and copied: 120 bytes
/// and a dozen instructions more per send).
#[inline(always)]
pub(crate) fn stage(staged: &mut Vec<Envelope>, make: impl FnOnce() -> Envelope) {
    staged.reserve(1);
    staged.spare_capacity_mut()[0].write(make());
    let len = staged.len() + 1;
    // SAFETY: the element after the old length was just initialised (a
    // panic in `make` leaves the length as it was, and nothing written).
    unsafe { staged.set_len(len) };
}

/// Gives the envelope just staged a child span of `current`, the trace of
/// the envelope being handled (after the push, out of line, so that staging
/// an untraced envelope builds it in place and pays one branch).
#[cold]
#[inline(never)]
pub(crate) fn trace_last(staged: &mut [Envelope], current: TraceContext) {
    if let Some(env) = staged.last_mut() {
        env.trace = Some(Trace::child_of(current));
    }
}

/// What an answer to `to` sent while handling an envelope traced with
/// `current` carries: as [`inherit`], but nothing for the host (no span of
/// its own handles what it gets).
#[inline(always)]
pub(crate) fn inherit_to(to: Address, current: Option<TraceContext>) -> Option<Box<Trace>> {
    if to == Address::HOST {
        None
    } else {
        inherit(current)
    }
}

/// What an envelope sent while handling one traced with `current` carries: a
/// child span of the same trace (nothing when untraced: one branch).
#[inline(always)]
pub(crate) fn inherit(current: Option<TraceContext>) -> Option<Box<Trace>> {
    current.map(Trace::child_of)
}
