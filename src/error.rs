//! Error types: one per operation, each saying what happened and what to do, and
//! keeping what caused it as its [`source`](std::error::Error::source).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use wasmtime::component::{ComponentType, Lift, Lower};

use crate::address::Address;

/// An error that caused another, kept whole (with its own chain of causes),
/// shared so that the error holding it can be cloned.
///
/// Not itself an error: it dereferences to the one it keeps, so the
/// `source()` of an error holding it is that error (which a caller can
/// downcast, to a `std::io::Error` say), not a wrapper around it.
#[derive(Clone)]
pub struct Cause(Arc<dyn StdError + Send + Sync + 'static>);

impl std::ops::Deref for Cause {
    type Target = dyn StdError + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

/// Keeps an error (a wasmtime error, with the chain of causes it carries, or any
/// other) as a [`Cause`].
pub(crate) fn cause(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Cause {
    Cause(Arc::from(error.into()))
}

/// Why a message could not be sent. Mirrors `wasmshard:actor/types.send-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[component(enum)]
#[repr(u8)]
#[non_exhaustive]
pub enum SendError {
    /// No live actor has this address (never spawned, stopped, failed, or a stale
    /// generation of a reused slot).
    #[component(name = "unknown-target")]
    #[error("unknown-target (no live actor has this address)")]
    UnknownTarget,
    /// The target's mailbox is at capacity. Nothing was enqueued; try again later.
    #[component(name = "mailbox-full")]
    #[error("mailbox-full (the target's mailbox is full; retry later)")]
    MailboxFull,
    /// The sender is not allowed to reach the target: its grants do not name
    /// it. A sender without the `*` grant also gets this for an address no
    /// live actor has (unless its grant named the actor that last had it), so
    /// it cannot tell an actor it may not reach from a dead or forged address.
    #[component(name = "denied")]
    #[error("denied (the sender may not reach this target)")]
    Denied,
    /// The payload is larger than the runtime's maximum payload size.
    #[component(name = "too-large")]
    #[error("too-large (the payload exceeds the runtime's maximum payload size)")]
    TooLarge,
    /// The target does not accept the payload's codec.
    #[component(name = "unsupported-codec")]
    #[error("unsupported-codec (the target does not accept this payload's codec)")]
    UnsupportedCodec,
    /// The runtime is shutting down and accepts no new messages.
    #[component(name = "shutting-down")]
    #[error("shutting-down (the runtime is shutting down)")]
    ShuttingDown,
    /// The sender has as many open requests as it may have.
    #[component(name = "too-many-requests")]
    #[error("too-many-requests (the sender has too many open requests)")]
    TooManyRequests,
}

impl SendError {
    /// The WIT name of the case, e.g. `mailbox-full`.
    pub fn wit_name(self) -> &'static str {
        match self {
            SendError::UnknownTarget => "unknown-target",
            SendError::MailboxFull => "mailbox-full",
            SendError::Denied => "denied",
            SendError::TooLarge => "too-large",
            SendError::UnsupportedCodec => "unsupported-codec",
            SendError::ShuttingDown => "shutting-down",
            SendError::TooManyRequests => "too-many-requests",
        }
    }
}

/// Why a request ended without a reply. Mirrors `wasmshard:actor/types.request-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[component(enum)]
#[repr(u8)]
#[non_exhaustive]
pub enum RequestError {
    /// No reply came before the request's timeout.
    #[component(name = "timeout")]
    #[error("timeout (no reply came before the request's timeout)")]
    Timeout,
    /// The requester cancelled the request.
    #[component(name = "cancelled")]
    #[error("cancelled (the request was cancelled)")]
    Cancelled,
    /// The responder failed (trapped, ran out of budget or memory) while the request was open.
    #[component(name = "target-failed")]
    #[error("target-failed (the responder failed while the request was open)")]
    TargetFailed,
    /// The responder stopped while the request was open.
    #[component(name = "target-stopped")]
    #[error("target-stopped (the responder stopped while the request was open)")]
    TargetStopped,
    /// No live actor had the target address.
    #[component(name = "unknown-target")]
    #[error("unknown-target (no live actor had the target address)")]
    UnknownTarget,
}

/// What kind of failure ended an actor's invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The guest trapped (`unreachable`, an out-of-bounds access, a bad argument
    /// to a host call, ...).
    Trap,
    /// The invocation ran past its CPU budget and was interrupted.
    CpuBudget,
    /// The actor tried to grow its linear memory beyond the memory limit.
    MemoryLimit,
    /// The actor tried to grow a table beyond the table limit.
    TableLimit,
    /// A native actor panicked.
    Panic,
    /// The shard that ran the actor failed (a defect of the runtime); every actor
    /// of that shard failed with it.
    ShardFailed,
    /// A supervised actor failed once more than its restart intensity allows
    /// and ended for good; the source is its last failure.
    RestartsExhausted,
    /// Something else went wrong in wasmtime; see the source.
    Other,
}

/// Why an actor's invocation (instantiation, `init` or a handler) failed.
///
/// Its `Display` is one line; the wasmtime error behind it (with the guest's
/// backtrace, when there is one) is its [`source`](std::error::Error::source).
#[derive(Clone, Debug)]
pub struct Failure {
    kind: FailureKind,
    message: String,
    source: Option<Cause>,
}

impl Failure {
    pub(crate) fn new(
        kind: FailureKind,
        message: impl Into<String>,
        source: Option<Cause>,
    ) -> Failure {
        Failure {
            kind,
            message: message.into(),
            source,
        }
    }

    /// What kind of failure it was.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The failure, saying also the `error` line the actor logged just before
    /// it (a panic's message and location, from a guest SDK's panic hook).
    pub(crate) fn with_logged(mut self, logged: Option<String>) -> Failure {
        if let Some(line) = logged {
            self.message = format!("{} (it logged before: {line})", self.message);
        }
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A component could not be loaded: the file is unreadable, not WebAssembly, too
/// large or deep to compile safely, or does not fit the `wasmshard:actor/component`
/// world.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct LoadError {
    context: String,
    #[source]
    source: Option<Cause>,
}

impl LoadError {
    pub(crate) fn new(context: impl Into<String>) -> LoadError {
        LoadError {
            context: context.into(),
            source: None,
        }
    }

    /// `context`, caused by `error`.
    pub(crate) fn wrap(
        context: impl Into<String>,
        error: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> LoadError {
        LoadError {
            context: context.into(),
            source: Some(cause(error)),
        }
    }

    /// The same error, said of `file`.
    pub(crate) fn in_file(self, file: &str) -> LoadError {
        LoadError {
            context: format!("{file}: {}", self.context),
            source: self.source,
        }
    }

    /// What is wrong, as one line: this error and each of its causes, separated
    /// by `: `.
    pub fn message(&self) -> String {
        chain(self)
    }
}

/// The runtime could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of its range; the message names it and the range.
    #[error("invalid runtime configuration: {0}")]
    Setting(String),
    /// wasmtime refused the engine the settings call for.
    #[error("cannot create the wasmtime engine")]
    Engine(#[source] Cause),
    /// The operating system refused a thread or a poller.
    #[error("cannot create {what}")]
    System {
        /// What could not be created.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A default grant or quota cannot be used (the setting's name, and why).
    #[error("invalid runtime configuration: {0}")]
    Policy(&'static str, #[source] crate::grants::PolicyError),
    /// The durable store in the storage directory cannot be opened.
    #[error("cannot open the storage in {dir}")]
    Storage {
        /// The storage directory.
        dir: String,
        /// Why.
        #[source]
        source: Cause,
    },
}

/// Why there is no room for another actor.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Capacity {
    /// The runtime holds `max_actors` actors (the limit holds across all
    /// shards; `shard` is the one the spawn was for).
    #[error(
        "all {slots} actor slots are in use, across all shards (spawning on shard {shard}; raise max_actors)"
    )]
    ShardFull {
        /// The shard the spawn was for.
        shard: usize,
        /// The slots for live actors (`max_actors`).
        slots: u32,
    },
    /// The instance pool (sized by `max_actors`) has no free instance.
    #[error("the instance pool is exhausted (raise max_actors)")]
    InstancePool(#[source] Cause),
    /// The process has as many memory mappings as the kernel allows (Linux's
    /// `vm.max_map_count`, 65 530 by default): a component actor takes about
    /// three, so about 21 800 fit under the default.
    #[error(
        "the process has {mappings} memory mappings, the kernel's limit is {limit} \
         (vm.max_map_count); a component actor takes about three: raise the limit \
         (sysctl vm.max_map_count) to hold more actors"
    )]
    MemoryMappings {
        /// Mappings the process had when the spawn failed.
        mappings: u64,
        /// The kernel's limit.
        limit: u64,
        /// The instantiation's error.
        #[source]
        source: Cause,
    },
}

/// An actor could not be spawned.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// Another live actor already has this name.
    #[error("an actor named `{0}` already exists")]
    NameTaken(String),
    /// The name is empty, longer than [`MAX_NAME_LEN`](crate::MAX_NAME_LEN)
    /// bytes, or holds a character that does not print as it is (a control
    /// character, a line or paragraph separator, a text-direction mark):
    /// which of these.
    #[error("{0}: an actor's name is 1 to {max} bytes that print as they are (no control character, line or paragraph separator, or text-direction mark)", max = crate::MAX_NAME_LEN)]
    BadName(crate::NameFault),
    /// The component was loaded by another runtime (each runtime compiles
    /// for its own engine: its CPU budget, instance pool and limits); load it
    /// with this one.
    #[error("component `{0}` was loaded by another runtime; load it with this one")]
    ForeignComponent(String),
    /// The requested shard does not exist.
    #[error("shard {shard} does not exist (the runtime has {shards} shards)")]
    NoSuchShard {
        /// The shard asked for.
        shard: usize,
        /// How many shards the runtime has.
        shards: usize,
    },
    /// No room for another actor.
    #[error("no capacity for another actor")]
    NoCapacity(#[source] Capacity),
    /// Instantiating the component failed (its start function trapped, say).
    #[error("instantiation failed")]
    Instantiate(#[source] Failure),
    /// The component's `init` returned this error (made one line and cut
    /// after [`MAX_LOG_MESSAGE`](crate::MAX_LOG_MESSAGE) bytes, as a log
    /// line is).
    #[error("init refused: {0}")]
    Init(String),
    /// The component's `init` trapped, or ran out of budget or memory.
    #[error("init failed")]
    InitFailed(#[source] Failure),
    /// The runtime is shutting down.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// The shard failed (a defect of the runtime, reported in its log); it runs
    /// no actors.
    #[error("shard {shard} has failed and runs no actors")]
    ShardFailed {
        /// The shard.
        shard: usize,
    },
    /// Called from one of the runtime's own actors (on a shard's thread), where
    /// waiting for a shard would deadlock. Ask the host to spawn instead (send it
    /// a message through a native actor).
    #[error("spawn was called from one of the runtime's own actors, where it would deadlock")]
    Reentrant,
    /// What the actor stored durably cannot be read.
    #[error("its durable storage cannot be read")]
    Storage(#[source] Cause),
    /// Its grants, quota or restart policy cannot be used.
    #[error("the actor's grants, quota or restart policy cannot be used")]
    Policy(#[source] crate::grants::PolicyError),
}

/// An actor's quota could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// No live actor has this address.
    #[error("no live actor has address {0}")]
    UnknownTarget(Address),
    /// The rate is out of range.
    #[error("the quota cannot be used")]
    Invalid(#[source] crate::grants::PolicyError),
    /// The runtime is shutting down.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// Called from one of the runtime's own actors, where waiting for a shard
    /// would deadlock.
    #[error("set_rate was called from one of the runtime's own actors, where it would deadlock")]
    Reentrant,
}

/// Why a spawn from an actor (`wasmshard:actor/lifecycle.spawn`, or
/// [`Context::spawn`](crate::Context::spawn)) failed. Mirrors
/// `wasmshard:actor/lifecycle.spawn-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[component(enum)]
#[repr(u8)]
#[non_exhaustive]
pub enum ChildSpawnError {
    /// No component is registered under that name
    /// ([`Runtime::register_component`](crate::Runtime::register_component)).
    #[component(name = "unknown-component")]
    #[error("unknown-component (no component is registered under that name)")]
    UnknownComponent,
    /// An actor of that name exists (or is being spawned).
    #[component(name = "name-taken")]
    #[error("name-taken (an actor of that name exists)")]
    NameTaken,
    /// The caller's shard holds as many actors as it may (or the grants the
    /// child would get bring a pattern beyond the runtime's 63 in use).
    #[component(name = "no-capacity")]
    #[error("no-capacity (the runtime holds as many actors as it may)")]
    NoCapacity,
    /// The caller's `spawn` grant does not name the component, or its
    /// `lookup` grant hides the child's name (refused whether an actor has
    /// that name or not, so a spawn cannot tell a hidden name's actor from
    /// none).
    #[component(name = "denied")]
    #[error("denied (the caller may not spawn this component, or may not see the name)")]
    Denied,
    /// The runtime is shutting down.
    #[component(name = "shutting-down")]
    #[error("shutting-down (the runtime is shutting down)")]
    ShuttingDown,
}

/// Why a storage `set` failed. Mirrors `wasmshard:actor/storage.storage-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[component(enum)]
#[repr(u8)]
#[non_exhaustive]
pub enum StorageError {
    /// The key is over the longest key, or the key and value together are
    /// over the actor's whole quota.
    #[component(name = "too-large")]
    #[error("too-large (the key, or the key and value together, can never fit)")]
    TooLarge,
    /// It would take the actor's storage over its quota.
    #[component(name = "quota-exceeded")]
    #[error("quota-exceeded (the actor's storage would exceed its quota)")]
    QuotaExceeded,
    /// The storage cannot be written (the durable store failed).
    #[component(name = "unavailable")]
    #[error("unavailable (the storage cannot be written)")]
    Unavailable,
}

/// An actor's component could not be replaced
/// ([`Runtime::upgrade`](crate::Runtime::upgrade)); the actor runs on as before.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// No live actor has this address.
    #[error("no live actor has address {0}")]
    UnknownTarget(Address),
    /// The actor is a native actor, which has no component to replace.
    #[error("actor {0} is a native actor: it has no component to replace")]
    Native(Address),
    /// The new component could not be instantiated, or its `init` failed: the
    /// old instance stays (rolled back).
    #[error("the new instance did not start; the old one stays")]
    Init(#[source] SpawnError),
    /// The runtime is shutting down.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// The actor's shard has failed.
    #[error("shard {shard} has failed")]
    ShardFailed {
        /// The shard.
        shard: usize,
    },
    /// Called from one of the runtime's own actors (on a shard's thread), where
    /// waiting for a shard would deadlock.
    #[error("upgrade was called from one of the runtime's own actors, where it would deadlock")]
    Reentrant,
}

/// An actor could not be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StopError {
    /// No live actor has this address.
    #[error("no live actor has address {0}")]
    UnknownTarget(Address),
    /// The runtime is shutting down.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// Called from one of the runtime's own actors (on a shard's thread), where
    /// waiting for a shard would deadlock.
    #[error("stop was called from one of the runtime's own actors, where it would deadlock")]
    Reentrant,
}

/// The host could not set or cancel a timer ([`crate::Runtime::schedule`],
/// [`crate::Runtime::cancel_timer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimerError {
    /// No live actor has this address.
    #[error("no live actor has address {0}")]
    UnknownTarget(Address),
    /// The payload is larger than the runtime's maximum.
    #[error("the payload of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The actor has as many timers pending as it may (`max-timers`).
    #[error("the actor has {0} timers pending, as many as it may")]
    TooManyTimers(u32),
    /// The runtime is shutting down.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// Called from one of the runtime's own actors (on a shard's thread), where
    /// waiting for a shard would deadlock (a native actor uses
    /// [`crate::Context::schedule`]).
    #[error("a timer call was made from one of the runtime's own actors, where it would deadlock")]
    Reentrant,
}

/// `error` and each of its causes, separated by `: `, on one line.
pub(crate) fn chain(error: &dyn StdError) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let line = e.to_string();
        let first = line.lines().next().unwrap_or_default();
        if !first.is_empty() && !out.ends_with(first) {
            out.push_str(": ");
            out.push_str(first);
        }
        next = e.source();
    }
    out
}
