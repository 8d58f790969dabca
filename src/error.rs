//! Error types: one per operation, each saying what happened and what to do.

use std::fmt;

use wasmtime::component::{ComponentType, Lift, Lower};

/// Why a message could not be sent. Mirrors `wasmshard:actor/types.send-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
pub enum SendError {
    /// No live actor has this address (never spawned, stopped, failed, or a stale
    /// generation of a reused slot).
    #[component(name = "unknown-target")]
    UnknownTarget,
    /// The target's mailbox is at capacity. Nothing was enqueued; try again later.
    #[component(name = "mailbox-full")]
    MailboxFull,
    /// The sender is not allowed to reach the target.
    #[component(name = "denied")]
    Denied,
    /// The payload is larger than the runtime's maximum payload size.
    #[component(name = "too-large")]
    TooLarge,
    /// The target does not accept the payload's codec.
    #[component(name = "unsupported-codec")]
    UnsupportedCodec,
    /// The runtime is shutting down and accepts no new messages.
    #[component(name = "shutting-down")]
    ShuttingDown,
    /// The sender has as many open requests as it may have.
    #[component(name = "too-many-requests")]
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

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            SendError::UnknownTarget => "no live actor has this address",
            SendError::MailboxFull => "the target's mailbox is full; retry later",
            SendError::Denied => "the sender may not reach this target",
            SendError::TooLarge => "the payload exceeds the runtime's maximum payload size",
            SendError::UnsupportedCodec => "the target does not accept this payload's codec",
            SendError::ShuttingDown => "the runtime is shutting down",
            SendError::TooManyRequests => "the sender has too many open requests",
        };
        write!(f, "{} ({what})", self.wit_name())
    }
}

impl std::error::Error for SendError {}

/// A component could not be loaded: the file is unreadable, not WebAssembly, or does
/// not fit the `wasmshard:actor/component` world.
#[derive(Debug)]
pub struct LoadError {
    message: String,
}

impl LoadError {
    pub(crate) fn new(message: impl Into<String>) -> LoadError {
        LoadError {
            message: message.into(),
        }
    }

    pub(crate) fn wrap(context: &str, error: impl fmt::Display) -> LoadError {
        LoadError {
            message: format!("{context}: {error:#}"),
        }
    }

    /// What is wrong, as one line (with causes separated by `: `).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoadError {}

/// An actor could not be spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnError {
    /// Another live actor already has this name.
    NameTaken(String),
    /// The requested shard does not exist.
    NoSuchShard {
        /// The shard asked for.
        shard: usize,
        /// How many shards the runtime has.
        shards: usize,
    },
    /// The shard has no free slot, or the instance pool is exhausted; raise
    /// `max_actors` in the builder.
    NoCapacity(String),
    /// Instantiating the component failed.
    Instantiate(String),
    /// The component's `init` returned an error (its message), trapped, or ran out of
    /// budget or memory.
    Init(String),
    /// The runtime is shutting down.
    ShuttingDown,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NameTaken(name) => write!(f, "an actor named `{name}` already exists"),
            SpawnError::NoSuchShard { shard, shards } => {
                write!(
                    f,
                    "shard {shard} does not exist (the runtime has {shards} shards)"
                )
            }
            SpawnError::NoCapacity(why) => write!(f, "no capacity for another actor: {why}"),
            SpawnError::Instantiate(why) => write!(f, "instantiation failed: {why}"),
            SpawnError::Init(why) => write!(f, "init failed: {why}"),
            SpawnError::ShuttingDown => f.write_str("the runtime is shutting down"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// An actor could not be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopError {
    /// No live actor has this address.
    UnknownTarget(crate::Address),
    /// The runtime is shutting down.
    ShuttingDown,
}

impl fmt::Display for StopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopError::UnknownTarget(a) => write!(f, "no live actor has address {a}"),
            StopError::ShuttingDown => f.write_str("the runtime is shutting down"),
        }
    }
}

impl std::error::Error for StopError {}

/// The runtime could not be built from its configuration.
#[derive(Debug)]
pub struct BuildError {
    message: String,
}

impl BuildError {
    pub(crate) fn new(message: impl Into<String>) -> BuildError {
        BuildError {
            message: message.into(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid runtime configuration: {}", self.message)
    }
}

impl std::error::Error for BuildError {}

/// Why a request ended without a reply. Mirrors `wasmshard:actor/types.request-error`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
pub enum RequestError {
    /// No reply came before the request's timeout.
    #[component(name = "timeout")]
    Timeout,
    /// The requester cancelled the request.
    #[component(name = "cancelled")]
    Cancelled,
    /// The responder failed (trapped, ran out of budget or memory) while the request was open.
    #[component(name = "target-failed")]
    TargetFailed,
    /// The responder stopped while the request was open.
    #[component(name = "target-stopped")]
    TargetStopped,
    /// No live actor had the target address.
    #[component(name = "unknown-target")]
    UnknownTarget,
}
