//! One running actor: its mailbox, its body (a component instance or a native
//! handler), and its invocation.

use std::sync::Arc;

use wasmtime::component::{Func, TypedFunc};
use wasmtime::{Store, Trap};

use crate::address::Address;
use crate::component::Component;
use crate::envelope::{Envelope, Kind, Payload};
use crate::error::{Capacity, Failure, FailureKind, RequestError, SpawnError, cause};
use crate::host::{ActorCtx, Limiter};
use crate::lifted::LiftedBytes;
use crate::mailbox::Mailbox;
use crate::native::{Context, NativeActor};
use crate::outbox::Outbox;
use crate::panics;
use crate::requests::Requests;
use crate::stats::ActorInfo;
use crate::supervision::{Maker, Supervisor};

pub(crate) struct Actor {
    pub(crate) generation: u32,
    pub(crate) mailbox: Mailbox,
    /// Whether the actor is in the shard's ready queue.
    pub(crate) scheduled: bool,
    /// Whether its messages are logged (`log-messages`; its outbox's flag,
    /// beside the scheduling state the shard's loop reads anyway).
    pub(crate) logs: bool,
    pub(crate) info: Arc<ActorInfo>,
    pub(crate) received: u64,
    pub(crate) handled: u64,
    pub(crate) body: Body,
    /// Monitors watching it: (id, watcher). They end when it is gone for good.
    /// A set, so that a watch cancelled is found without a look through all
    /// (watchers that watch and cancel in a loop make many).
    pub(crate) monitors: std::collections::BTreeSet<(u64, Address)>,
    /// Requests to it that ended (timeout, cancel) while they were queued:
    /// shed when their turn comes. Emptied whenever its mailbox empties (a
    /// revocation always arrives after its request, so by then each was
    /// taken or had already been handled), and cut to the requests still
    /// queued once it outgrows the mailbox (`keep_queued_marks`).
    pub(crate) unstarted: crate::actor_requests::IdSet,
    /// How it is restarted, if it is supervised.
    pub(crate) supervisor: Option<Box<Supervisor>>,
}

/// An invocation that failed.
pub(crate) struct Fault {
    pub(crate) failure: Failure,
    /// Whether the envelope it failed on was a request the actor had already
    /// answered (with `respond`, before failing): it must not end a second time.
    pub(crate) answered: bool,
}

/// What runs an actor. A native actor's outbox is boxed (a component's is
/// in its store): inline it would make every actor's entry in its shard's
/// table as large as an outbox (about 580 bytes), components' included,
/// which is what a million idle actors cannot afford; a native send pays
/// one pointer more to reach it.
pub(crate) enum Body {
    Wasm(WasmActor),
    Native {
        actor: Box<dyn NativeActor>,
        out: Box<Outbox>,
    },
    /// A supervised actor between a failure and its restart: its outbox (with
    /// its grants, quota and counters) waits for the new instance. It is never
    /// in the ready queue; its mailbox fills as usual.
    Down {
        out: Box<Outbox>,
    },
}

pub(crate) struct WasmActor {
    pub(crate) store: Store<ActorCtx>,
    handle_message: Func,
    handle_request: Func,
    handle_response: Func,
    /// `handle-messages`, if the component exports `batch`.
    handle_messages: Option<Func>,
    budget: Option<u64>,
}

/// A start that ended short of an actor: how, and the actor's outbox, with
/// what `init` sent staged in it. Boxed: rare, and most of a `Placement`'s
/// size otherwise, which every spawn moves.
pub(crate) type Unstarted = Box<(InitEnd, Outbox)>;

/// How a component's spawn ended short of an actor.
pub(crate) enum InitEnd {
    /// Instantiation or `init` failed: the spawn's error.
    Failed(SpawnError),
    /// The runtime's own code panicked during `init` (the payload, to go on
    /// unwinding once the spawn is undone).
    Panicked(Box<dyn std::any::Any + Send>),
}

/// Runs a native handler; a panic fails the actor alone, like a trapping component.
/// (With the `testing` feature, a `RuntimeDefect` payload passes through,
/// as a panic of the runtime's own code during the call would.) Inlined
/// into each handler's call: out of line it cost a native message 5 %.
#[inline(always)]
fn guard<R>(f: impl FnOnce() -> R) -> Result<R, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        #[cfg(feature = "testing")]
        if payload.is::<crate::RuntimeDefect>() {
            std::panic::resume_unwind(payload);
        }
        let msg = panics::settle(payload);
        Failure::new(
            FailureKind::Panic,
            format!("native actor panicked: {msg}"),
            None,
        )
    })
}

/// The failure of a call into an actor that is waiting for its restart (the
/// shard never runs one; a defect if it does).
#[cold]
fn down() -> Failure {
    Failure::new(
        FailureKind::Other,
        "invoked while waiting for its restart",
        None,
    )
}

impl Actor {
    pub(crate) fn new(generation: u32, info: Arc<ActorInfo>, body: Body) -> Actor {
        let logs = match &body {
            Body::Wasm(w) => w.store.data().out.logs,
            Body::Native { out, .. } | Body::Down { out } => out.logs,
        };
        Actor {
            generation,
            mailbox: Mailbox::default(),
            scheduled: false,
            logs,
            info,
            received: 0,
            handled: 0,
            body,
            monitors: std::collections::BTreeSet::new(),
            unstarted: Default::default(),
            supervisor: None,
        }
    }

    /// Keeps only the marks in `unstarted` of requests still in the mailbox
    /// (the others were started before their marks came).
    #[cold]
    pub(crate) fn keep_queued_marks(&mut self) {
        let marks = std::mem::take(&mut self.unstarted);
        self.unstarted = self
            .mailbox
            .iter()
            .filter_map(|env| match env.kind {
                crate::envelope::Kind::Request(id, _) if marks.contains(&id) => Some(id),
                _ => None,
            })
            .collect();
    }

    /// Whether it takes runs of plain messages in one call: a component that
    /// exports `batch`.
    #[inline]
    pub(crate) fn batched(&self) -> bool {
        matches!(&self.body, Body::Wasm(w) if w.handle_messages.is_some())
    }

    /// Hands `count` messages, framed `[from: u64 LE][len: u32 LE][bytes]` in
    /// `frames`, to the component's `handle-messages` in one call.
    pub(crate) fn handle_frames(&mut self, count: u32, frames: &[u8]) -> Result<(), Failure> {
        match &mut self.body {
            Body::Wasm(w) => w.handle_messages(count, frames),
            Body::Native { .. } | Body::Down { .. } => Err(down()),
        }
    }

    pub(crate) fn outbox(&mut self) -> &mut Outbox {
        match &mut self.body {
            Body::Wasm(w) => &mut w.store.data_mut().out,
            Body::Native { out, .. } | Body::Down { out } => out,
        }
    }

    /// A fired timer is being handled: it no longer counts against the cap.
    #[cold]
    fn timer_handled(&mut self) {
        self.outbox().timers -= 1;
    }

    /// [`Actor::handle`] for a traced envelope: what the actor sends meanwhile
    /// inherits its trace; with the `tracing` feature, the handling is a span
    /// (`wasmshard.handle`, at `INFO`) carrying the ids, the actor's name and
    /// address, the shard, the envelope's kind and size, and the outcome.
    #[cold]
    #[inline(never)]
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn handle_traced(&mut self, env: &Envelope, shard: usize) -> Result<(), Fault> {
        let Some(trace) = env.trace.as_deref().copied() else {
            return self.handle(env);
        };
        self.outbox().trace = Some(trace.context);
        #[cfg(feature = "tracing")]
        let result = {
            let span = tracing::info_span!(
                target: "wasmshard",
                "wasmshard.handle",
                trace_id = %format_args!("{:032x}", trace.context.trace_id()),
                span_id = %format_args!("{:016x}", trace.context.span_id()),
                parent_span_id = %format_args!("{:016x}", trace.parent),
                actor = %self.info.name,
                address = %env.to,
                from = %env.from,
                shard,
                kind = match env.kind {
                    Kind::Request(..) => "request",
                    Kind::Response(..) => "response",
                    _ => "message",
                },
                size = env.payload.len(),
                outcome = tracing::field::Empty,
            );
            let result = span.in_scope(|| self.handle(env));
            match &result {
                Ok(()) => span.record("outcome", "handled"),
                Err(fault) => span.record("outcome", tracing::field::display(&fault.failure)),
            };
            result
        };
        #[cfg(not(feature = "tracing"))]
        let result = self.handle(env);
        self.outbox().trace = None;
        result
    }

    /// Handles one envelope: a message, a request or a response. `Err` carries why
    /// the actor failed. (Inlined into both callers, the shard's loop and
    /// [`Actor::handle_traced`]: out of line it cost a native message 7 %.)
    #[inline(always)]
    pub(crate) fn handle(&mut self, env: &Envelope) -> Result<(), Fault> {
        let from = env.from;
        let payload = &env.payload[..];
        let unanswered = |failure| Fault {
            failure,
            answered: false,
        };
        match env.kind {
            Kind::Tell | Kind::Timer => {
                if env.kind == Kind::Timer {
                    // A fired timer is held against the cap until it is
                    // handled, so timers cannot pile up in the mailbox.
                    self.timer_handled();
                }
                match &mut self.body {
                    Body::Wasm(w) => w.handle_message(from, payload),
                    Body::Native { actor, out } => {
                        guard(|| actor.handle_message(&mut Context { out }, from, payload))
                    }
                    Body::Down { .. } => Err(down()),
                }
                .map_err(unanswered)
            }
            Kind::Request(id, deadline) => {
                self.outbox().requests.begin(id, from, deadline);
                let reply = match &mut self.body {
                    Body::Wasm(w) => w.handle_request(from, id, payload),
                    Body::Native { actor, out } => {
                        guard(|| actor.handle_request(&mut Context { out }, from, id, payload))
                            .map(|r| r.map(Payload::from_vec))
                    }
                    Body::Down { .. } => Err(down()),
                };
                let out = self.outbox();
                // `Some` while unanswered; `respond` during the call took it.
                let unanswered = out.requests.finish();
                let reply = reply.map_err(|failure| Fault {
                    failure,
                    // A failure after `respond` leaves the request answered.
                    answered: unanswered.is_none(),
                })?;
                match (reply, unanswered) {
                    // A reply larger than any message may be: the request ends
                    // without it (the guest returned it, so it cannot be told).
                    (Some(bytes), Some(_)) if bytes.len() > out.directory.max_payload => {
                        log::warn!(
                            "wasmshard: actor {} replied to request {id:#x} with {} bytes, \
                             over the {}-byte payload limit; the request fails",
                            out.me,
                            bytes.len(),
                            out.directory.max_payload
                        );
                        out.staged
                            .push(env.failed(out.me, id, RequestError::TargetFailed));
                    }
                    (Some(bytes), Some(_)) => {
                        let me = out.me;
                        crate::outbox::stage(&mut out.staged, || Envelope {
                            trace: None,
                            to: from,
                            from: me,
                            kind: Kind::Response(id, Ok(())),
                            payload: bytes,
                        });
                        if let Some(current) = out.trace
                            && from != Address::HOST
                        {
                            crate::outbox::trace_last(&mut out.staged, current);
                        }
                    }
                    (Some(_), None) => log::warn!(
                        "wasmshard: actor `{}` answered request {id:#x} twice; the second answer is dropped",
                        self.info.name
                    ),
                    // Deferred: answerable later, with `respond`.
                    (None, Some(_)) => {
                        let now = out.directory.now_ns();
                        let cap = out.directory.max_open_requests as usize;
                        let expires =
                            now.saturating_add(crate::envelope::remaining_ns(deadline, now));
                        if !out.requests.defer(id, from, expires, now, cap, out.trace) {
                            log::warn!(
                                "wasmshard: actor {} holds {cap} deferred requests; request \
                                 {id:#x} fails",
                                out.me
                            );
                            out.staged
                                .push(env.failed(out.me, id, RequestError::TargetFailed));
                        }
                    }
                    (None, None) => {}
                }
                Ok(())
            }
            Kind::Response(id, result) => {
                let response = result.map(|()| payload);
                match &mut self.body {
                    Body::Wasm(w) => w.handle_response(id, response),
                    Body::Native { actor, out } => {
                        guard(|| actor.handle_response(&mut Context { out }, id, response))
                    }
                    Body::Down { .. } => Err(down()),
                }
                .map_err(unanswered)
            }
            // Taken by the shard as it arrives; never in a mailbox.
            Kind::Stop | Kind::Monitor(_) | Kind::Demonitor(_) | Kind::Revoke(_) => Ok(()),
        }
    }

    /// Publishes the actor's counters for the host to read.
    pub(crate) fn publish(&mut self) {
        self.info.received.set(self.received);
        self.info.handled.set(self.handled);
        let out = self.outbox();
        let (sent, deferred) = (out.sent, out.requests.deferred() as u64);
        let (denied, rate_limited) = (out.denied, out.rate_limited);
        let rate = out.rate.as_deref().map(|b| (b.rate, b.available(out.now)));
        let stored = out.storage.bytes() as u64;
        self.info.sent.set(sent);
        self.info.deferred.set(deferred);
        self.info.denied.set(denied);
        self.info.rate_limited.set(rate_limited);
        self.info.publish_rate(rate);
        self.info.stored.set(stored);
    }
}

impl Body {
    /// Ends the body, keeping its outbox. A native actor's `Drop` runs here; a
    /// panic there is returned (its message) and ends nothing more.
    pub(crate) fn into_outbox(self) -> (Outbox, Option<String>) {
        match self {
            Body::Wasm(w) => (w.store.into_data().out, None),
            Body::Native { actor, out } => (*out, panics::quietly(|| drop(actor))),
            Body::Down { out } => (*out, None),
        }
    }

    /// Makes a new body around `out` from `maker`, for a restart: a component
    /// instantiated again with `init` run on its config, or a native actor
    /// from its factory (a panic there fails the restart).
    pub(crate) fn remake(
        maker: &mut Maker,
        settings: &WasmSettings,
        out: Outbox,
        table: &mut Option<Box<Requests>>,
    ) -> Result<Body, Unstarted> {
        match maker {
            Maker::Wasm { component, config } => {
                WasmActor::spawn(settings, component, out, config, table).map(Body::Wasm)
            }
            Maker::Native(factory) => match guard(factory) {
                Ok(actor) => Ok(Body::Native {
                    actor,
                    out: Box::new(out),
                }),
                Err(failure) => Err(Box::new((
                    InitEnd::Failed(SpawnError::InitFailed(failure)),
                    out,
                ))),
            },
        }
    }
}

/// What every component actor of a shard is spawned with.
pub(crate) struct WasmSettings {
    /// Bytes of linear memory an actor may have.
    pub(crate) memory_limit: usize,
    /// Epoch ticks an invocation may run, or `None` without CPU budgets.
    pub(crate) budget: Option<u64>,
}

impl WasmActor {
    /// Instantiates `component` for the actor whose outbox is `out` (its
    /// address, name, grants, quota and the shard's clock reading) and runs its
    /// `init`, with the shard's request table lent to it.
    /// On failure, the outbox is handed back with what the actor sent during
    /// `init` staged in it, for routing.
    pub(crate) fn spawn(
        settings: &WasmSettings,
        component: &Component,
        out: Outbox,
        config: &[u8],
        table: &mut Option<Box<Requests>>,
    ) -> Result<WasmActor, Unstarted> {
        let mut ctx = ActorCtx::new(out, settings.memory_limit);
        ctx.budget = settings.budget;
        let pre = &component.inner.pre;
        let mut store = Store::new(pre.engine(), ctx);
        store.limiter(|c| &mut c.limiter);
        let budget = settings.budget;
        store.set_epoch_deadline(budget.unwrap_or(u64::MAX / 2));
        let instance = match pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => {
                let err = if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                    SpawnError::NoCapacity(Capacity::InstancePool(cause(e)))
                } else if let Some((mappings, limit)) = out_of_mappings(&e) {
                    SpawnError::NoCapacity(Capacity::MemoryMappings {
                        mappings,
                        limit,
                        source: cause(e),
                    })
                } else {
                    SpawnError::Instantiate(describe(e, &store.data().limiter))
                };
                return Err(Box::new((InitEnd::Failed(err), store.into_data().out)));
            }
        };
        store.data_mut().instantiated = true;
        let exports = &component.inner.exports;
        let get = |store: &mut Store<ActorCtx>, idx| {
            instance.get_func(store, idx).expect("checked at load")
        };
        let init = get(&mut store, &exports.init);
        let handle_message = get(&mut store, &exports.handle_message);
        let handle_request = get(&mut store, &exports.handle_request);
        let handle_response = get(&mut store, &exports.handle_response);
        let handle_messages = exports
            .handle_messages
            .as_ref()
            .map(|idx| get(&mut store, idx));
        // SAFETY: `load` checked this export's type (`exports::check`, exactly
        // the types these Rust types lower and lift, a subset of what
        // wasmtime's own check accepts) against the same component, and every
        // instance of a component has the same types.
        let init = unsafe { TypedFunc::<(&[u8],), (Result<(), String>,)>::new_unchecked(init) };
        store.data_mut().out.table = table.take();
        // A panic of the runtime's own code inside `init` (a host function's
        // defect) must not take the shard's request table, or what `init` sent,
        // down with the store: both are handed back, and the panic goes on.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            init.call(&mut store, (config,))
        }));
        *table = store.data_mut().out.table.take();
        let result = match result {
            Ok(result) => result,
            Err(payload) => {
                return Err(Box::new((
                    InitEnd::Panicked(payload),
                    store.into_data().out,
                )));
            }
        };
        if matches!(result, Ok((Ok(()),))) {
            // An error line `init` logged belongs to it, not to a later
            // failure (as after any successful call).
            store.data_mut().last_error = None;
            // What it stored stands (a failed `init`'s is taken back).
            store.data_mut().out.storage.keep();
        }
        match result {
            // What `init` sent stays staged in the outbox; the shard routes it.
            Ok((Ok(()),)) => Ok(WasmActor {
                store,
                handle_message,
                handle_request,
                handle_response,
                handle_messages,
                budget,
            }),
            // The guest's text, as one line of at most `MAX_LOG_MESSAGE`
            // bytes: it goes to logs and stays in the stats.
            Ok((Err(msg),)) => Err(Box::new((
                InitEnd::Failed(SpawnError::Init(
                    crate::log::one_line(&msg, crate::log::MAX_LOG_MESSAGE).into_owned(),
                )),
                store.into_data().out,
            ))),
            Err(e) => {
                let logged = store.data_mut().last_error.take();
                let why = describe(e, &store.data().limiter).with_logged(logged);
                Err(Box::new((
                    InitEnd::Failed(SpawnError::InitFailed(why)),
                    store.into_data().out,
                )))
            }
        }
    }

    #[inline]
    fn arm(&mut self) {
        if let Some(ticks) = self.budget {
            self.store.set_epoch_deadline(ticks);
        }
    }

    /// The end of an invocation: its result, or why it failed. An `error` line the
    /// actor logged during a failed invocation (a guest SDK's panic hook writes
    /// the panic's message and location there before the trap) goes into the
    /// failure's message; after a successful one it is forgotten.
    #[inline]
    fn end<T>(&mut self, r: Result<T, wasmtime::Error>) -> Result<T, Failure> {
        match r {
            Ok(v) => {
                if self.store.data().last_error.is_some() {
                    self.store.data_mut().last_error = None;
                }
                Ok(v)
            }
            Err(e) => {
                let logged = self.store.data_mut().last_error.take();
                Err(describe(e, &self.store.data().limiter).with_logged(logged))
            }
        }
    }

    #[inline]
    fn handle_message(&mut self, from: Address, payload: &[u8]) -> Result<(), Failure> {
        self.arm();
        // SAFETY: `load` checked this export's type (`exports::check`, exactly
        // the types these Rust types lower and lift, a subset of what
        // wasmtime's own check accepts) against the same component, and every
        // instance of a component has the same types.
        let f = unsafe { TypedFunc::<(u64, &[u8]), ()>::new_unchecked(self.handle_message) };
        let r = f.call(&mut self.store, (from.to_bits(), payload));
        self.end(r)
    }

    /// `handle-messages` with `count` messages in `frames`. The call's CPU
    /// budget is `count` invocations' worth: the messages get together what
    /// they would have had one by one.
    fn handle_messages(&mut self, count: u32, frames: &[u8]) -> Result<(), Failure> {
        let Some(f) = self.handle_messages else {
            return Err(down());
        };
        if let Some(ticks) = self.budget {
            let ticks = ticks.saturating_mul(count.into()).min(u64::MAX / 2);
            self.store.set_epoch_deadline(ticks);
        }
        // SAFETY: `load` checked this export's type (`func(u32, list<u8>)`)
        // against the same component, and every instance of a component has
        // the same types.
        let f = unsafe { TypedFunc::<(u32, &[u8]), ()>::new_unchecked(f) };
        let r = f.call(&mut self.store, (count, frames));
        self.end(r)
    }

    #[inline]
    fn handle_request(
        &mut self,
        from: Address,
        id: u64,
        payload: &[u8],
    ) -> Result<Option<Payload>, Failure> {
        self.arm();
        // SAFETY: as in `handle_message`; `load` checked `option<list<u8>>` as the
        // result, which `Option<LiftedBytes>` lifts as `Option<WasmList<u8>>` does.
        let f = unsafe {
            TypedFunc::<(u64, u64, &[u8]), (Option<LiftedBytes>,)>::new_unchecked(
                self.handle_request,
            )
        };
        // The reply is copied while it is lifted: `call` runs the guest's
        // post-return (which may free the buffer) before it returns.
        let r = f.call(&mut self.store, (from.to_bits(), id, payload));
        let (reply,) = self.end(r)?;
        Ok(reply.map(|r| r.0))
    }

    #[inline]
    fn handle_response(
        &mut self,
        id: u64,
        response: Result<&[u8], RequestError>,
    ) -> Result<(), Failure> {
        self.arm();
        // SAFETY: as in `handle_message`.
        let f = unsafe {
            TypedFunc::<(u64, Result<&[u8], RequestError>), ()>::new_unchecked(self.handle_response)
        };
        let r = f.call(&mut self.store, (id, response));
        self.end(r)
    }
}

/// Whether instantiating failed for want of memory mappings: the error is
/// `ENOMEM` from the operating system while the process is within a few
/// hundred mappings of the kernel's limit (what `mmap` and `mprotect` then
/// fail with). Returns (mappings, limit).
#[cold]
fn out_of_mappings(e: &wasmtime::Error) -> Option<(u64, u64)> {
    const ENOMEM: i32 = 12;
    let enomem = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(ENOMEM))
    });
    if !enomem {
        return None;
    }
    let (mappings, limit) = crate::sys::memory_mappings()?;
    (mappings + 256 >= limit).then_some((mappings, limit))
}

/// Says why an invocation failed: classified by the error's type (a trap, the
/// epoch interrupt of an exhausted budget) or by the limiter that refused a grow,
/// with the wasmtime error kept as the cause.
fn describe(e: wasmtime::Error, limiter: &Limiter) -> Failure {
    if let Some((kind, why)) = limiter.hit.as_deref() {
        return Failure::new(*kind, why.clone(), Some(cause(e)));
    }
    match e.downcast_ref::<Trap>().copied() {
        Some(Trap::Interrupt) => Failure::new(
            FailureKind::CpuBudget,
            "CPU budget exhausted (interrupted at its epoch deadline)",
            Some(cause(e)),
        ),
        Some(trap) => Failure::new(FailureKind::Trap, format!("trap: {trap}"), Some(cause(e))),
        None => {
            // The outermost layer may be the guest's backtrace: say the root cause.
            let root = e.root_cause().to_string();
            let first = root.lines().next().unwrap_or("failed").to_string();
            Failure::new(FailureKind::Other, first, Some(cause(e)))
        }
    }
}
