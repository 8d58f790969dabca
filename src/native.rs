//! Native actors: Rust handlers scheduled and addressed like components.

use crate::address::Address;
use crate::error::SendError;
use crate::outbox::Outbox;

/// A Rust actor. It runs on the shard it was spawned on, one message at a time,
/// exactly like a component; an embedding host uses one to receive messages.
///
/// Closures `FnMut(&mut Context<'_>, Address, &[u8])` are native actors too.
pub trait NativeActor: Send + 'static {
    /// Handles one message.
    fn handle_message(&mut self, ctx: &mut Context<'_>, from: Address, payload: &[u8]);
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
    /// `too-large`.
    pub fn send(&mut self, to: Address, payload: &[u8]) -> Result<(), SendError> {
        self.out.send(to, payload)
    }

    /// The address registered under `name`, if any.
    pub fn lookup(&self, name: &str) -> Option<Address> {
        self.out.lookup(name)
    }

    /// Monotonic nanoseconds since the runtime started.
    pub fn now_ns(&self) -> u64 {
        self.out.now_ns()
    }
}
