//! Native actors: Rust handlers scheduled and addressed like components.

use crate::address::Address;
use crate::envelope::Payload;
use crate::error::{ChildSpawnError, RequestError, SendError};
use crate::outbox::Outbox;
use crate::topics::PublishOutcome;

/// A Rust actor. It runs on the shard it was spawned on, one message at a time,
/// exactly like a component; an embedding host uses one to receive messages.
///
/// Closures `FnMut(&mut Context<'_>, Address, &[u8])` are native actors that handle
/// messages only: they answer no requests (`handle_request` returns `None`, so
/// each request is deferred and never answered: its requester sees its timeout,
/// or `target-failed` once the actor holds `max-open-requests` of them).
pub trait NativeActor: Send + 'static {
    /// Handles one message.
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]);

    /// Handles request `id`. `Some(bytes)` replies at once; `None` defers, and the
    /// actor may answer later with [`Context::respond`]. (Returning a `Vec`
    /// allocates it: an actor that must not allocate per message answers with
    /// [`Context::respond`] during the call and returns `None`.)
    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        from: Address,
        id: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let _ = (ctx, from, id, payload);
        None
    }

    /// Receives the end of request `id` this actor made: the reply, or why not.
    fn handle_response(
        &mut self,
        ctx: &mut Context<'_>,
        id: u64,
        response: Result<&[u8], RequestError>,
    ) {
        let _ = (ctx, id, response);
    }
}

impl<F> NativeActor for F
where
    F: FnMut(&mut Context<'_>, Address, &[u8]) + Send + 'static,
{
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]) {
        self(ctx, from, payload)
    }
}

/// What a native actor can do while it handles a message: the host functions of
/// the component contract.
pub struct Context<'a> {
    pub(crate) out: &'a mut Outbox,
}

impl Context<'_> {
    /// The actor's own address.
    pub fn self_address(&self) -> Address {
        self.out.me
    }

    /// Sends `payload` to `to`, as a component's `send` does.
    ///
    /// # Errors
    ///
    /// The [`SendError`] a component would see: `mailbox-full`, `unknown-target`,
    /// `too-large`, `unsupported-codec`, and `too-many-requests` beyond a quota
    /// set with [`Runtime::set_rate`](crate::Runtime::set_rate). A native actor
    /// is trusted: grants never deny it.
    pub fn send(&mut self, to: Address, payload: &[u8]) -> Result<(), SendError> {
        self.out.send(to, Payload::from_slice(payload))
    }

    /// Makes a request to `to` that times out after `timeout`; its end arrives in
    /// [`NativeActor::handle_response`] exactly once (unless cancelled).
    ///
    /// # Errors
    ///
    /// As [`Context::send`], plus `too-many-requests` beyond the open-request cap.
    pub fn request(
        &mut self,
        to: Address,
        payload: &[u8],
        timeout: std::time::Duration,
    ) -> Result<u64, SendError> {
        let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.out
            .request(to, Payload::from_slice(payload), timeout_ns)
    }

    /// Answers request `id`, received earlier and not answered yet.
    ///
    /// # Errors
    ///
    /// `unknown-target` if this actor never received `id` or already answered it;
    /// `too-large`.
    pub fn respond(&mut self, id: u64, payload: &[u8]) -> Result<(), SendError> {
        self.out.respond(id, Payload::from_slice(payload))
    }

    /// Ends request `id`, received earlier and not answered yet, with `error`
    /// instead of a reply: its requester sees that error, exactly as if the
    /// runtime had ended the request so (a native actor that forwards requests
    /// elsewhere passes on how they ended there).
    ///
    /// # Errors
    ///
    /// `unknown-target` if this actor never received `id` or already answered it.
    pub fn fail(&mut self, id: u64, error: RequestError) -> Result<(), SendError> {
        self.out.fail(id, error)
    }

    /// How long the requester of the request being handled still waits for
    /// its answer (its timeout less the time since it was made, rounded up
    /// to the millisecond); `None` outside [`NativeActor::handle_request`]. Requests
    /// this actor makes meanwhile are capped at it already; an actor that
    /// forwards the request outside the runtime carries it on.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.out.remaining_ns().map(std::time::Duration::from_nanos)
    }

    /// Whether returning `None` from [`NativeActor::handle_request`] now
    /// would hold the request: an actor holds at most
    /// [`RuntimeBuilder::max_open_requests`](crate::RuntimeBuilder::max_open_requests)
    /// deferred requests (those whose requesters stopped waiting are
    /// forgotten first), and beyond that the runtime ends a deferred request
    /// with `target-failed`. An actor that hands the request on before it
    /// returns asks this first.
    pub fn can_defer(&mut self) -> bool {
        self.out.can_defer()
    }

    /// Cancels request `id`; returns whether it was still open. A cancelled request
    /// gets no response.
    pub fn cancel(&mut self, id: u64) -> bool {
        self.out.cancel(id)
    }

    /// The address registered under `name`, if any.
    pub fn lookup(&self, name: &str) -> Option<Address> {
        self.out.directory.lookup(name, u64::MAX).ok().flatten()
    }

    /// Monotonic nanoseconds since the runtime started.
    pub fn now_ns(&self) -> u64 {
        self.out.now_ns()
    }

    /// The trace context of the message, request or response being handled,
    /// if it is traced (`None` in `init` and for untraced messages).
    /// Everything the actor sends while handling it carries the trace on: a
    /// new span of the same trace, with no code of its own.
    pub fn trace(&self) -> Option<crate::TraceContext> {
        self.out.trace
    }

    /// Spawns an actor from the component registered under `component`
    /// ([`Runtime::register_component`](crate::Runtime::register_component)),
    /// named `name` (`None`: anonymous, reachable by its address only), on
    /// this actor's shard, as a component's `lifecycle.spawn` does: the address
    /// is returned at once, and the child's `init` runs with `config` when this
    /// handler returns, before what it sent is routed. The child gets the
    /// runtime's default grants (a native actor is trusted; the components it
    /// spawns are not), and this actor may always reach, stop and monitor it.
    ///
    /// # Errors
    ///
    /// [`ChildSpawnError::UnknownComponent`], [`ChildSpawnError::NameTaken`],
    /// [`ChildSpawnError::NoCapacity`], [`ChildSpawnError::ShuttingDown`].
    ///
    /// # Panics
    ///
    /// If `name` is empty or longer than [`MAX_NAME_LEN`](crate::MAX_NAME_LEN)
    /// bytes (a component's `spawn` traps then): the actor fails, as for
    /// any panic in a handler.
    pub fn spawn(
        &mut self,
        component: &str,
        name: Option<&str>,
        config: &[u8],
    ) -> Result<Address, ChildSpawnError> {
        if let Some(fault) = name.and_then(crate::config::name_fault) {
            panic!(
                "spawn was given {fault}: a name is 1 to {} bytes that print as they are",
                crate::MAX_NAME_LEN
            );
        }
        self.out.spawn(component, name, config)
    }

    /// Stops the actor at `target` once this handler returns (after what it
    /// sent before).
    ///
    /// # Errors
    ///
    /// `unknown-target` if no live actor has the address.
    pub fn stop(&mut self, target: Address) -> Result<(), SendError> {
        self.out.stop(target)
    }

    /// Sets a timer: `payload` comes back to this actor's
    /// [`NativeActor::handle_message`] (from its own address) once `delay` has
    /// passed, exactly once unless cancelled, always admitted when due. Timers
    /// end with the actor and carry over a supervised restart. Returns the
    /// timer's id, for [`Context::cancel_timer`]. Resolution: as a request's
    /// timeout (never early; in the first pass of the shard after it is due).
    ///
    /// # Errors
    ///
    /// `too-large`; `too-many-requests` beyond the per-actor cap on pending
    /// timers ([`RuntimeBuilder::max_timers`](crate::RuntimeBuilder::max_timers)).
    pub fn schedule(
        &mut self,
        delay: std::time::Duration,
        payload: &[u8],
    ) -> Result<u64, SendError> {
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.out.schedule(delay_ns, Payload::from_slice(payload))
    }

    /// Cancels timer `id` of this actor; returns whether it was pending (a
    /// cancelled timer never fires).
    pub fn cancel_timer(&mut self, id: u64) -> bool {
        self.out.cancel_timer(id)
    }

    /// Subscribes this actor to `topic`: a name (`prices.eur`) or a pattern
    /// whose last segment is `*` (`prices.*` matches `prices.eur` and
    /// `prices.eur.spot`; see [`Runtime::publish`](crate::Runtime::publish)
    /// for the grammar). Publications reach it through
    /// [`NativeActor::handle_message`], from their publisher. Subscribing
    /// twice to the same topic or pattern is one subscription; subscriptions
    /// end with the actor.
    ///
    /// # Errors
    ///
    /// `unknown-target` for a topic that breaks the grammar, `too-large` over
    /// [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN), `too-many-requests` beyond
    /// [`MAX_SUBSCRIPTIONS`](crate::MAX_SUBSCRIPTIONS).
    pub fn subscribe(&mut self, topic: &str) -> Result<(), SendError> {
        self.out.subscribe(topic)
    }

    /// Ends this actor's subscription to `topic` (as given to
    /// [`Context::subscribe`]); returns whether it had one.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.out.unsubscribe(topic)
    }

    /// Offers `payload` to every current subscriber of `topic`, as
    /// [`Runtime::publish`](crate::Runtime::publish) does, from this actor:
    /// each admitted at its mailbox at once, in order with what this actor
    /// sends it otherwise.
    ///
    /// # Errors
    ///
    /// `unknown-target` for a topic that breaks the grammar, `too-large`,
    /// `too-many-requests` beyond a quota.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<PublishOutcome, SendError> {
        self.out.publish(topic, Payload::from_slice(payload))
    }

    /// Watches `target`: the returned id ends in [`NativeActor::handle_response`]
    /// with `target-stopped` or `target-failed` once the target is gone for
    /// good (a supervised restart is not an end); [`Context::cancel`] stops
    /// watching.
    ///
    /// # Errors
    ///
    /// `unknown-target` if no live actor has the address; `too-many-requests`
    /// beyond the open-request cap (monitors count as open requests).
    pub fn monitor(&mut self, target: Address) -> Result<u64, SendError> {
        self.out.monitor(target)
    }
}
