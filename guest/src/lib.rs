//! Write wasmshard actors in Rust.
//!
//! An actor is a type that implements [`Actor`]: its state is `self`, its
//! messages, requests and replies are serde types, and one macro,
//! [`export_actor!`], makes the crate a wasmshard component. Build it for
//! `wasm32-unknown-unknown` as a `cdylib`; the runtime loads the `.wasm` as it is.
//!
//! ```ignore
//! use serde::{Deserialize, Serialize};
//! use wasmshard_guest::{Actor, Address, Ctx, Reply};
//!
//! #[derive(Deserialize)]
//! enum Msg { Add(u64) }
//!
//! #[derive(Deserialize)]
//! enum Req { Total }
//!
//! struct Counter { total: u64 }
//!
//! impl Actor for Counter {
//!     type Config = ();
//!     type Message = Msg;
//!     type Request = Req;
//!     type Reply = u64;
//!
//!     fn init(_: &mut Ctx<Self>, (): ()) -> Result<Self, String> {
//!         Ok(Counter { total: 0 })
//!     }
//!     fn message(&mut self, _: &mut Ctx<Self>, _: Address, Msg::Add(n): Msg) {
//!         self.total += n;
//!     }
//!     fn request(&mut self, _: &mut Ctx<Self>, _: Address, Req::Total: Req, reply: Reply<u64>) {
//!         let _ = reply.send(&self.total);
//!     }
//! }
//!
//! wasmshard_guest::export_actor!(Counter);
//! ```
//!
//! # Payloads
//!
//! Every payload the SDK writes starts with its codec's multicodec code
//! ([`Codec`]; by default [`codec::DEFAULT`]), and every payload it reads is
//! decoded by its own prefix, whatever codec the sender chose. A payload that
//! does not decode into the actor's type is handed to [`Actor::malformed`] (the
//! default logs a warning); it never traps. [`Bytes`] takes any payload's body
//! as it is, and [`Ctx::send_raw`] sends bytes with no encoding at all.
//!
//! # Requests
//!
//! [`Ctx::request`] sends a request and takes a continuation: a closure that
//! runs with the actor and a context when the request ends (a reply, decoded;
//! or why it failed). The SDK keeps the id → continuation table; a cancelled
//! request's continuation never runs. A request the actor receives comes with a
//! [`Reply`]: answer it during the handler (the reply goes back with the
//! handler's return, no extra host call), or keep it in the actor's state and
//! answer later. A `Reply` dropped unanswered answers with an empty payload,
//! which an SDK requester sees as [`RequestFailure::Dropped`] at once, not as a
//! timeout.
//!
//! # Failures
//!
//! A panic traps, which fails the actor (the runtime stops it and ends what it
//! held). Before the trap, the SDK's panic hook writes the panic's message and
//! location to the host log at `error`, and the runtime puts that line in the
//! actor's failure reason. The [`log`] crate's macros go to the host log too
//! (at `info` and above unless [`set_log_level`] says otherwise).

#![warn(missing_docs)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub mod abi;

/// The `log` crate, whose records the SDK forwards to the host log.
pub use log;
pub use wasmshard_codec::{self as codec, Bytes, Codec, DecodeError, EncodeError};

/// The bindings `wit-bindgen` generates for the contract (`wit/actor.wit`), for
/// what the SDK does not wrap. [`export_actor!`] uses them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "component",
    });
}

pub use bindings::wasmshard::actor::lifecycle::SpawnError;
pub use bindings::wasmshard::actor::storage::StorageError;
pub use bindings::wasmshard::actor::topics::PublishOutcome;
pub use bindings::wasmshard::actor::tracing::TraceContext;
pub use bindings::wasmshard::actor::types::{LogLevel, RequestError, SendError};
use bindings::wasmshard::actor::{batch_host, host, lifecycle, storage, timers, topics, tracing};

/// The id of a timer this actor set ([`Ctx::schedule`]).
pub type TimerId = u64;

/// An actor's address: where messages to it go. Any `u64` can be one; an address
/// that names no live actor makes a send fail with [`SendError::UnknownTarget`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Address(pub u64);

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

/// The id of a request this actor made.
pub type RequestId = u64;

/// Messages gathered to go out in one call ([`Ctx::send_frames`]): an actor
/// that sends many messages in one turn crosses into the host once for all
/// of them instead of once each. Each is encoded as [`Ctx::send`] would
/// encode it, framed `[to: u64 LE][len: u32 LE][bytes]`.
#[derive(Default, Debug, Clone)]
pub struct Frames {
    buf: Vec<u8>,
    count: usize,
}

/// A frame's header: the target's address and the payload's length.
const FRAME_HEADER: usize = 12;

impl Frames {
    /// No messages; room is taken as they are added (and kept after a send,
    /// so a `Frames` kept in the actor allocates only as it grows).
    pub fn new() -> Frames {
        Frames::default()
    }

    /// Adds `message` for `to`, in the default codec.
    ///
    /// # Errors
    ///
    /// It cannot be encoded (nothing was added).
    pub fn push<T: Serialize + ?Sized>(&mut self, to: Address, message: &T) -> Result<(), Error> {
        self.push_with(codec::DEFAULT, to, message)
    }

    /// Adds `message` for `to`, in `codec`.
    ///
    /// # Errors
    ///
    /// As [`Frames::push`].
    pub fn push_with<T: Serialize + ?Sized>(
        &mut self,
        codec: Codec,
        to: Address,
        message: &T,
    ) -> Result<(), Error> {
        let start = self.begin(to);
        if let Err(e) = codec::encode_into(codec, message, &mut self.buf) {
            self.buf.truncate(start);
            return Err(Error::Encode(e));
        }
        self.end(start);
        Ok(())
    }

    /// Adds `bytes` for `to` with the `raw` prefix and no encoding.
    pub fn push_raw(&mut self, to: Address, bytes: &[u8]) {
        let start = self.begin(to);
        self.buf.extend_from_slice(Codec::Raw.prefix());
        self.buf.extend_from_slice(bytes);
        self.end(start);
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Drops every message it holds (keeping its room).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
    }

    /// Writes a frame's header with a length to be filled in; returns where
    /// the frame starts.
    fn begin(&mut self, to: Address) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&to.0.to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        start
    }

    /// Fills in the length of the frame that starts at `start`.
    fn end(&mut self, start: usize) {
        let len = u32::try_from(self.buf.len() - start - FRAME_HEADER)
            .expect("a frame's payload is under 4 GiB");
        self.buf[start + 8..start + FRAME_HEADER].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
    }

    /// Removes the first `n` messages (all of them if it holds fewer): after a
    /// refusal, `remove_first(1)` skips the refused one.
    pub fn remove_first(&mut self, n: usize) {
        let n = n.min(self.count);
        let mut at = 0;
        for _ in 0..n {
            let len = u32::from_le_bytes(
                self.buf[at + 8..at + FRAME_HEADER]
                    .try_into()
                    .expect("four bytes"),
            ) as usize;
            at += FRAME_HEADER + len;
        }
        self.buf.drain(..at);
        self.count -= n;
    }
}

/// A send or request that did not go out.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The runtime refused it (the target's mailbox is full, the target is
    /// unknown, the payload is too large, …).
    Refused(SendError),
    /// The value could not be encoded in the codec asked for.
    Encode(EncodeError),
    /// A spawn the runtime refused (the component is not registered, the name
    /// is taken, the shard is full, the grants do not allow it, …).
    NotSpawned(SpawnError),
    /// A storage write the runtime refused (too large, over the quota, …).
    NotStored(StorageError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Refused(e) => write!(f, "refused: {}", send_error_name(*e)),
            Error::Encode(e) => e.fmt(f),
            Error::NotSpawned(e) => write!(f, "not spawned: {}", spawn_error_name(*e)),
            Error::NotStored(e) => f.write_str(match e {
                StorageError::TooLarge => "not stored: too-large",
                StorageError::QuotaExceeded => "not stored: quota-exceeded",
                StorageError::Unavailable => "not stored: unavailable",
            }),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Refused(_) | Error::NotSpawned(_) | Error::NotStored(_) => None,
            Error::Encode(e) => Some(e),
        }
    }
}

/// The WIT name of a send error (`mailbox-full`, …).
pub fn send_error_name(e: SendError) -> &'static str {
    match e {
        SendError::UnknownTarget => "unknown-target",
        SendError::MailboxFull => "mailbox-full",
        SendError::Denied => "denied",
        SendError::TooLarge => "too-large",
        SendError::UnsupportedCodec => "unsupported-codec",
        SendError::ShuttingDown => "shutting-down",
        SendError::TooManyRequests => "too-many-requests",
    }
}

/// The WIT name of a spawn error (`unknown-component`, …).
pub fn spawn_error_name(e: SpawnError) -> &'static str {
    match e {
        SpawnError::UnknownComponent => "unknown-component",
        SpawnError::NameTaken => "name-taken",
        SpawnError::NoCapacity => "no-capacity",
        SpawnError::Denied => "denied",
        SpawnError::ShuttingDown => "shutting-down",
    }
}

/// Why a request this actor made ended without a reply it could read.
#[derive(Debug)]
#[non_exhaustive]
pub enum RequestFailure {
    /// The runtime ended it: `timeout`, `target-failed`, `target-stopped`, ….
    Failed(RequestError),
    /// The responder dropped its [`Reply`] without answering.
    Dropped,
    /// The reply did not decode into the type expected.
    Decode(DecodeError),
}

impl std::fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestFailure::Failed(e) => write!(f, "the request ended: {e:?}"),
            RequestFailure::Dropped => f.write_str("the responder dropped the request unanswered"),
            RequestFailure::Decode(e) => write!(f, "the reply does not decode: {e}"),
        }
    }
}

impl std::error::Error for RequestFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RequestFailure::Decode(e) => Some(e),
            _ => None,
        }
    }
}

/// An actor: its state is `self`; the runtime calls these methods, one message
/// at a time.
pub trait Actor: Sized + 'static {
    /// What `init` receives, decoded from the spawn's config bytes: by their
    /// codec prefix if they have one, else as JSON text (so a manifest can say
    /// `config = '{"limit": 5}'`); an empty config reads as JSON `null` (`()`,
    /// `None`).
    type Config: DeserializeOwned;
    /// The messages (tells) it takes.
    type Message: DeserializeOwned;
    /// The requests it answers.
    type Request: DeserializeOwned;
    /// What it answers them with.
    type Reply: Serialize;

    /// Makes the actor from its config. An error fails the spawn with the message.
    fn init(ctx: &mut Ctx<Self>, config: Self::Config) -> Result<Self, String>;

    /// A message from `from`. The default ignores it.
    fn message(&mut self, ctx: &mut Ctx<Self>, from: Address, message: Self::Message) {
        let _ = (ctx, from, message);
    }

    /// A request from `from`, to be answered through `reply`, now or later. The
    /// default drops it (the requester sees it dropped).
    fn request(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: Address,
        request: Self::Request,
        reply: Reply<Self::Reply>,
    ) {
        let _ = (ctx, from, request, reply);
    }

    /// A message or request whose payload did not decode into [`Actor::Message`]
    /// or [`Actor::Request`]. For a request, the SDK then drops its reply (the
    /// requester sees it dropped). The default logs a warning.
    fn malformed(&mut self, ctx: &mut Ctx<Self>, from: Address, error: DecodeError) {
        let _ = ctx;
        log::warn!("a payload from {from} does not decode: {error}");
    }
}

/// What runs when a request ends: the actor, a context, and the raw outcome.
type Continuation<A> = Box<dyn FnOnce(&mut A, &mut Ctx<A>, Result<&[u8], RequestError>)>;

/// The open requests' continuations, by id.
type Pending<A> = HashMap<RequestId, Continuation<A>, BuildHasherDefault<IdHasher>>;

/// Hashes request ids with a fold and one multiplication (as FxHash does):
/// the host assigns them, so nobody picks them to collide, and SipHash, the
/// default, costs more than the rest of a lookup. The fold first: an id is
/// `shard << 56 | slot << 32 | generation`, and on wasm32 the table uses the
/// low 32 bits of the hash, which a product takes from the id's low 32 bits
/// alone (its generation, the same for most slots): every id hashed alike.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod id_hasher_tests {
    use super::*;

    #[test]
    fn ids_of_one_generation_hash_apart_in_their_low_bits() {
        // Slots 0..4096 of shard 3, all of generation 1 (fresh slots): the
        // low 32 bits, all a 32-bit table uses, must differ.
        let low: std::collections::HashSet<u32> = (0..4096u64)
            .map(|slot| {
                let mut h = IdHasher::default();
                h.write_u64(3 << 56 | slot << 32 | 1);
                h.finish() as u32
            })
            .collect();
        assert_eq!(low.len(), 4096);
    }
}

/// What an actor can do while it handles something: send, request, look up,
/// read the clock. Handed to every [`Actor`] method.
pub struct Ctx<'a, A> {
    pending: &'a mut Pending<A>,
    buf: &'a mut Vec<u8>,
}

impl<A: Actor> Ctx<'_, A> {
    /// This actor's address.
    pub fn me(&self) -> Address {
        Address(host::self_address())
    }

    /// The address of the actor registered as `name`.
    pub fn lookup(&self, name: &str) -> Option<Address> {
        host::lookup(name).map(Address)
    }

    /// Monotonic time since an arbitrary origin (the runtime's clock).
    pub fn now(&self) -> Duration {
        Duration::from_nanos(host::now_ns())
    }

    /// The trace context of the message, request or response being handled,
    /// if it is traced (the host samples or continues traces). What this actor
    /// sends while handling it carries the trace on by itself: a new span of
    /// the same trace.
    pub fn trace(&self) -> Option<TraceContext> {
        tracing::current()
    }

    /// Sends `message` to `to` in the default codec.
    ///
    /// # Errors
    ///
    /// The runtime refused it, or it cannot be encoded.
    pub fn send<T: Serialize + ?Sized>(&mut self, to: Address, message: &T) -> Result<(), Error> {
        self.send_with(codec::DEFAULT, to, message)
    }

    /// Sends `message` to `to` in `codec`.
    ///
    /// # Errors
    ///
    /// As [`Ctx::send`].
    pub fn send_with<T: Serialize + ?Sized>(
        &mut self,
        codec: Codec,
        to: Address,
        message: &T,
    ) -> Result<(), Error> {
        abi::reuse(self.buf);
        codec::encode_into(codec, message, self.buf).map_err(Error::Encode)?;
        host::send(to.0, self.buf).map_err(Error::Refused)
    }

    /// Sends `bytes` to `to` with the `raw` prefix and no encoding.
    ///
    /// # Errors
    ///
    /// The runtime refused it.
    pub fn send_raw(&mut self, to: Address, bytes: &[u8]) -> Result<(), Error> {
        abi::reuse(self.buf);
        self.buf.extend_from_slice(Codec::Raw.prefix());
        self.buf.extend_from_slice(bytes);
        host::send(to.0, self.buf).map_err(Error::Refused)
    }

    /// Sends every message gathered in `frames`, in order, in one call out of
    /// the guest (`batch-host.send-frames`): each is admitted as
    /// [`Ctx::send`] would admit it. On success `frames` is left empty.
    ///
    /// # Errors
    ///
    /// The runtime refused a message: those before it were sent and are
    /// removed from `frames`; the refused one and those after it stay, in
    /// order, so they can be sent again later (or skipped with
    /// [`Frames::remove_first`], dropped with [`Frames::clear`]; skipping
    /// refusals one by one re-sends the rest each time, so a batch with many
    /// refusals costs more than single sends would). More than
    /// 4096 messages (or 16 MiB) in one `Frames` are refused whole with
    /// `too-large`: send a turn's messages in batches of that size at most.
    pub fn send_frames(&mut self, frames: &mut Frames) -> Result<(), Error> {
        if frames.is_empty() {
            return Ok(());
        }
        let (sent, refused) = batch_host::send_frames(&frames.buf);
        match refused {
            None => {
                frames.clear();
                Ok(())
            }
            Some(e) => {
                frames.remove_first(sent as usize);
                Err(Error::Refused(e))
            }
        }
    }

    /// Sends `request` to `to` (default codec); when it ends, `then` runs with
    /// the actor, a context and the reply decoded as `R` (or why there is none).
    /// Returns the request's id (for [`Ctx::cancel`]).
    ///
    /// # Errors
    ///
    /// The runtime refused it (`then` never runs), or it cannot be encoded.
    pub fn request<Q, R, F>(
        &mut self,
        to: Address,
        request: &Q,
        timeout: Duration,
        then: F,
    ) -> Result<RequestId, Error>
    where
        Q: Serialize + ?Sized,
        R: DeserializeOwned,
        F: FnOnce(&mut A, &mut Ctx<A>, Result<R, RequestFailure>) + 'static,
    {
        abi::reuse(self.buf);
        codec::encode_into(codec::DEFAULT, request, self.buf).map_err(Error::Encode)?;
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let id = host::request(to.0, self.buf, ns).map_err(Error::Refused)?;
        self.pending.insert(
            id,
            Box::new(move |actor, ctx, outcome| {
                let outcome = match outcome {
                    Ok([]) => Err(RequestFailure::Dropped),
                    Ok(bytes) => codec::decode(bytes).map_err(RequestFailure::Decode),
                    Err(e) => Err(RequestFailure::Failed(e)),
                };
                then(actor, ctx, outcome)
            }),
        );
        Ok(id)
    }

    /// Spawns an actor from the component the host registered as `component`,
    /// on this actor's shard, named `name` (`None`: anonymous), its `init`
    /// getting `config` in the default codec. Returns its address at once;
    /// messages to it wait for its `init`. It inherits this actor's grants,
    /// and this actor may always message, stop and monitor it. A name is 1
    /// to 256 bytes, none of them a control character or a text-direction
    /// override, and the encoded `config` at most the runtime's
    /// `max-payload`: the runtime traps a spawn given another (so the actor
    /// fails). A name taken from a message is checked first by an actor
    /// that must not fail on it.
    ///
    /// # Errors
    ///
    /// The runtime refused the spawn ([`Error::NotSpawned`]: `denied` if
    /// this actor's `spawn` grant does not name the component or its
    /// `lookup` grant hides `name`), or `config` cannot be encoded.
    pub fn spawn<C: Serialize + ?Sized>(
        &mut self,
        component: &str,
        name: Option<&str>,
        config: &C,
    ) -> Result<Address, Error> {
        abi::reuse(self.buf);
        codec::encode_into(codec::DEFAULT, config, self.buf).map_err(Error::Encode)?;
        lifecycle::spawn(component, name, self.buf)
            .map(Address)
            .map_err(Error::NotSpawned)
    }

    /// Stops `target` once this handler returns: an actor this one spawned,
    /// itself, or one its `stop` grant names. (For an actor exported as
    /// `batched`, once the batch's call returns: the messages after this one
    /// in the same batch are still handled.)
    ///
    /// # Errors
    ///
    /// The runtime refused it (`unknown-target`, `denied`).
    pub fn stop(&mut self, target: Address) -> Result<(), Error> {
        lifecycle::stop(target.0).map_err(Error::Refused)
    }

    /// Watches `target`: when it is gone for good (a supervised restart is not
    /// an end), `then` runs with why (`target-stopped` or `target-failed`).
    /// Returns the watch's id ([`Ctx::cancel`] stops watching).
    ///
    /// # Errors
    ///
    /// The runtime refused it (`unknown-target`, `denied`,
    /// `too-many-requests`): `then` never runs.
    pub fn monitor<F>(&mut self, target: Address, then: F) -> Result<RequestId, Error>
    where
        F: FnOnce(&mut A, &mut Ctx<A>, RequestError) + 'static,
    {
        let id = lifecycle::monitor(target.0).map_err(Error::Refused)?;
        self.pending.insert(
            id,
            Box::new(move |actor, ctx, outcome| {
                // A monitor never gets a reply; its end is always an error.
                if let Err(why) = outcome {
                    then(actor, ctx, why)
                }
            }),
        );
        Ok(id)
    }

    /// Sets a timer: `message` (in the default codec) comes back to this
    /// actor's `handle_message`, from its own address, once `delay` has
    /// passed — exactly once, unless cancelled with [`Ctx::cancel_timer`].
    /// Timers carry over a supervised restart and end with the actor.
    ///
    /// # Errors
    ///
    /// The runtime refused it (`too-many-requests` beyond the actor's cap on
    /// pending timers, `too-large`), or it cannot be encoded.
    pub fn schedule<T: Serialize + ?Sized>(
        &mut self,
        delay: Duration,
        message: &T,
    ) -> Result<TimerId, Error> {
        abi::reuse(self.buf);
        codec::encode_into(codec::DEFAULT, message, self.buf).map_err(Error::Encode)?;
        let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        timers::schedule(ns, self.buf).map_err(Error::Refused)
    }

    /// Cancels timer `id`; whether it was still pending (a cancelled timer
    /// never fires).
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        timers::cancel_timer(id)
    }

    /// Subscribes this actor to `topic`: a name (`prices.eur`) or a pattern
    /// whose last segment is `*` (`prices.*`: one or more segments after
    /// `prices`). Publications arrive through `handle_message`, from their
    /// publisher. Subscribing twice to the same topic is one subscription.
    ///
    /// # Errors
    ///
    /// The runtime refused it (`unknown-target` for a malformed topic,
    /// `denied` by the actor's grants, `too-many-requests` beyond the cap).
    pub fn subscribe(&mut self, topic: &str) -> Result<(), Error> {
        topics::subscribe(topic).map_err(Error::Refused)
    }

    /// Ends this actor's subscription to `topic`; whether it had one.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        topics::unsubscribe(topic)
    }

    /// Publishes `message` (in the default codec) to every current subscriber
    /// of `topic`; returns how many admitted it and how many refused it
    /// (full mailboxes).
    ///
    /// # Errors
    ///
    /// The runtime refused it (`unknown-target` for a malformed topic,
    /// `denied` by the actor's grants, `too-large`), or it cannot be encoded.
    pub fn publish<T: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        message: &T,
    ) -> Result<PublishOutcome, Error> {
        abi::reuse(self.buf);
        codec::encode_into(codec::DEFAULT, message, self.buf).map_err(Error::Encode)?;
        topics::publish(topic, self.buf).map_err(Error::Refused)
    }

    /// The value this actor stored under `key` (in its storage, which the
    /// host keeps across restarts and upgrades), decoded as `T`.
    ///
    /// # Errors
    ///
    /// The stored bytes do not decode as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DecodeError> {
        storage::get(key.as_bytes())
            .map(|bytes| codec::decode(&bytes))
            .transpose()
    }

    /// Stores `value` (in the default codec) under `key`.
    ///
    /// # Errors
    ///
    /// The runtime refused it ([`Error::NotStored`]: the key is too long, the
    /// value too large, the actor's quota exceeded), or it cannot be encoded.
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        abi::reuse(self.buf);
        codec::encode_into(codec::DEFAULT, value, self.buf).map_err(Error::Encode)?;
        storage::set(key.as_bytes(), self.buf).map_err(Error::NotStored)
    }

    /// Deletes what is stored under `key`; whether there was anything.
    pub fn delete(&mut self, key: &str) -> bool {
        storage::delete(key.as_bytes())
    }

    /// Cancels request `id`: its continuation never runs. Whether it was still
    /// open.
    pub fn cancel(&mut self, id: RequestId) -> bool {
        let open = self.pending.remove(&id).is_some();
        host::cancel(id) && open
    }

    /// Requests this actor made that have not ended.
    pub fn open_requests(&self) -> usize {
        self.pending.len()
    }

    /// Writes `message` to the host log at `level`.
    pub fn log(&self, level: LogLevel, message: &str) {
        host::log(level, message);
    }
}

thread_local! {
    /// The request being handled now, while its reply may still go back with
    /// the handler's return.
    static CURRENT: Cell<Option<RequestId>> = const { Cell::new(None) };
    /// Whether the request being handled was answered (the reply is in the
    /// outbox, going back with the handler's return).
    static ANSWERED: Cell<bool> = const { Cell::new(false) };
    /// Where an answer given later is encoded before it goes to `respond`.
    static LATER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The answer to one request this actor received: answer it once, now or later
/// (it can be kept in the actor's state). Dropped unanswered, it answers with an
/// empty payload, which an SDK requester sees as [`RequestFailure::Dropped`]
/// (and any other requester as an empty reply), so nobody waits for a timeout.
#[must_use = "a Reply dropped unanswered tells the requester it was dropped"]
pub struct Reply<T> {
    id: RequestId,
    answered: bool,
    _type: PhantomData<fn(&T)>,
}

impl<T: Serialize> Reply<T> {
    /// The request's id.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Answers with `value` in the default codec.
    ///
    /// # Errors
    ///
    /// The value cannot be encoded (nothing went, and the reply, consumed,
    /// answers as dropped: the requester learns at once), or the runtime
    /// refused the answer (the request has ended: timed out, cancelled, or the
    /// requester is gone). A reply sent during the request's own handler goes
    /// back with the handler's return, so `Ok` there means only that it was
    /// encoded: one over the runtime's `max-payload` then fails the request
    /// (`target-failed`) rather than this call.
    pub fn send(self, value: &T) -> Result<(), Error> {
        self.send_with(codec::DEFAULT, value)
    }

    /// Answers with `value` in `codec`.
    ///
    /// # Errors
    ///
    /// As [`Reply::send`].
    pub fn send_with(mut self, codec: Codec, value: &T) -> Result<(), Error> {
        // Written out rather than shared with `drop` through a closure: that
        // cost about 60 instructions per reply (measured).
        if CURRENT.get() == Some(self.id) {
            // Goes back with the handler's return, from the outbox.
            abi::OUTBOX.with_borrow_mut(|out| {
                abi::reuse(out);
                codec::encode_into(codec, value, out).map_err(Error::Encode)
            })?;
            CURRENT.set(None);
            ANSWERED.set(true);
            self.answered = true;
            return Ok(());
        }
        LATER.with_borrow_mut(|buf| {
            abi::reuse(buf);
            codec::encode_into(codec, value, buf).map_err(Error::Encode)?;
            self.answered = true;
            host::respond(self.id, buf).map_err(Error::Refused)
        })
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        // The empty payload: "dropped".
        if CURRENT.get() == Some(self.id) {
            abi::OUTBOX.with_borrow_mut(abi::reuse);
            CURRENT.set(None);
            ANSWERED.set(true);
        } else {
            let _ = host::respond(self.id, &[]);
        }
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("id", &self.id).finish()
    }
}

/// The most detailed `log` records forwarded to the host (default: `info`).
pub fn set_log_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

/// The SDK's side of the exports; [`export_actor!`] calls it.
#[doc(hidden)]
pub mod __rt {
    use super::*;

    /// `text` as the bytes of a custom section (`N` is its length).
    pub const fn section<const N: usize>(text: &str) -> [u8; N] {
        let bytes = text.as_bytes();
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            out[i] = bytes[i];
            i += 1;
        }
        out
    }

    /// An actor's state between calls.
    pub struct Host<A: Actor> {
        actor: A,
        pending: Pending<A>,
        buf: Vec<u8>,
    }

    /// Where an exported actor's state lives.
    pub type State<A> = std::thread::LocalKey<RefCell<Option<Host<A>>>>;

    struct HostLog;

    impl log::Log for HostLog {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            let level = match record.level() {
                log::Level::Error => LogLevel::Error,
                log::Level::Warn => LogLevel::Warn,
                log::Level::Info => LogLevel::Info,
                log::Level::Debug => LogLevel::Debug,
                log::Level::Trace => LogLevel::Trace,
            };
            host::log(level, &record.args().to_string());
        }
        fn flush(&self) {}
    }

    /// The panic hook: the message and where, to the host log, before the trap.
    fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic");
        let message = match info.location() {
            Some(at) => format!(
                "panicked at {}:{}:{}: {what}",
                at.file(),
                at.line(),
                at.column()
            ),
            None => format!("panicked: {what}"),
        };
        host::log(LogLevel::Error, &message);
    }

    fn config<C: DeserializeOwned>(bytes: &[u8]) -> Result<C, DecodeError> {
        if bytes.is_empty() {
            return codec::decode_body(Codec::Json, b"null");
        }
        if Codec::of(bytes).is_some() {
            return codec::decode(bytes);
        }
        codec::decode_body(Codec::Json, bytes)
    }

    /// `init`: the config lowered at `ptr`, `len`; returns the result's area.
    ///
    /// # Safety
    ///
    /// `ptr` and `len` are the export's list argument.
    pub unsafe fn init<A: Actor>(state: &'static State<A>, ptr: *mut u8, len: usize) -> *mut u8 {
        // SAFETY: the caller passes the export's argument, once.
        let config = unsafe { abi::Lowered::new(ptr, len) };
        abi::init_result(start::<A>(state, config.bytes()))
    }

    fn start<A: Actor>(state: &'static State<A>, config_bytes: &[u8]) -> Result<(), String> {
        std::panic::set_hook(Box::new(panic_hook));
        static LOGGER: HostLog = HostLog;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
        let config = config::<A::Config>(config_bytes)
            .map_err(|e| format!("the config does not decode: {e}"))?;
        let mut pending = Pending::default();
        let mut buf = Vec::with_capacity(64);
        let actor = A::init(
            &mut Ctx {
                pending: &mut pending,
                buf: &mut buf,
            },
            config,
        )?;
        state.with_borrow_mut(|s| {
            *s = Some(Host {
                actor,
                pending,
                buf,
            })
        });
        Ok(())
    }

    fn with<A: Actor, R>(
        state: &'static State<A>,
        f: impl FnOnce(&mut A, &mut Ctx<'_, A>) -> R,
    ) -> R {
        state.with_borrow_mut(|s| {
            let Host {
                actor,
                pending,
                buf,
            } = s.as_mut().expect("the runtime runs init first");
            f(actor, &mut Ctx { pending, buf })
        })
    }

    /// `handle-message`.
    ///
    /// # Safety
    ///
    /// `ptr` and `len` are the export's list argument.
    pub unsafe fn message<A: Actor>(state: &'static State<A>, from: u64, ptr: *mut u8, len: usize) {
        // SAFETY: the caller passes the export's argument, once.
        let payload = unsafe { abi::Lowered::new(ptr, len) };
        with(state, |actor, ctx| {
            match codec::decode::<A::Message>(payload.bytes()) {
                Ok(m) => actor.message(ctx, Address(from), m),
                Err(e) => actor.malformed(ctx, Address(from), e),
            }
        })
    }

    /// The contract's world `batched`, encoded as `component-type` metadata
    /// (by the SDK's build script).
    pub const BATCHED_WORLD: &[u8; include_bytes!(concat!(env!("OUT_DIR"), "/batched-world.bin"))
         .len()] = include_bytes!(concat!(env!("OUT_DIR"), "/batched-world.bin"));

    /// `handle-messages`: `count` messages framed `[from: u64 LE][len: u32
    /// LE][bytes]`, each handled as `handle-message` handles one, in order.
    ///
    /// # Safety
    ///
    /// `ptr` and `len` are the export's list argument.
    pub unsafe fn messages<A: Actor>(
        state: &'static State<A>,
        count: u32,
        ptr: *mut u8,
        len: usize,
    ) {
        // SAFETY: the caller passes the export's argument, once.
        let frames = unsafe { abi::Lowered::new(ptr, len) };
        let mut rest = frames.bytes();
        with(state, |actor, ctx| {
            for _ in 0..count {
                let Some((header, tail)) = rest.split_first_chunk::<12>() else {
                    panic!("handle-messages: a frame's header runs past the frames");
                };
                let from = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
                let n = u32::from_le_bytes(header[8..].try_into().expect("4 bytes")) as usize;
                let Some((payload, tail)) = tail.split_at_checked(n) else {
                    panic!("handle-messages: a frame's payload runs past the frames");
                };
                rest = tail;
                match codec::decode::<A::Message>(payload) {
                    Ok(m) => actor.message(ctx, Address(from), m),
                    Err(e) => actor.malformed(ctx, Address(from), e),
                }
            }
            assert!(
                rest.is_empty(),
                "handle-messages: {} bytes past the last of {count} frames",
                rest.len()
            );
        })
    }

    /// `handle-request`: returns the result's area.
    ///
    /// # Safety
    ///
    /// `ptr` and `len` are the export's list argument.
    pub unsafe fn request<A: Actor>(
        state: &'static State<A>,
        from: u64,
        id: u64,
        ptr: *mut u8,
        len: usize,
    ) -> *mut u8 {
        // SAFETY: the caller passes the export's argument, once.
        let payload = unsafe { abi::Lowered::new(ptr, len) };
        CURRENT.set(Some(id));
        ANSWERED.set(false);
        with(state, |actor, ctx| {
            let reply = Reply {
                id,
                answered: false,
                _type: PhantomData,
            };
            match codec::decode::<A::Request>(payload.bytes()) {
                Ok(r) => actor.request(ctx, Address(from), r, reply),
                Err(e) => {
                    drop(reply);
                    actor.malformed(ctx, Address(from), e)
                }
            }
        });
        CURRENT.set(None);
        abi::request_result(ANSWERED.replace(false))
    }

    /// `handle-response`: `case` 0 is a reply lowered at `ptr`, `len`; 1 an
    /// error whose case is `ptr`.
    ///
    /// # Safety
    ///
    /// The arguments are the export's.
    pub unsafe fn response<A: Actor>(
        state: &'static State<A>,
        id: u64,
        case: u32,
        ptr: *mut u8,
        len: usize,
    ) {
        let outcome = if case == 0 {
            // SAFETY: in case 0, the caller passes the export's list, once.
            Ok(unsafe { abi::Lowered::new(ptr, len) })
        } else {
            Err(abi::request_error(ptr as usize))
        };
        with(state, |actor, ctx| {
            // A cancelled request's end finds no continuation.
            if let Some(then) = ctx.pending.remove(&id) {
                then(
                    actor,
                    ctx,
                    outcome.as_ref().map(abi::Lowered::bytes).map_err(|e| *e),
                );
            }
        })
    }
}

/// Exports `$actor` (a type that implements [`Actor`]) as the crate's
/// component: generates the `wasmshard:actor/actor` exports and keeps the
/// actor's state between calls. Use it once, at the crate's top level.
///
/// It also declares the codecs the actor accepts, in the component's
/// `wasmshard:accepts` section: by default every codec the SDK decodes (`raw`,
/// `json`, `cbor`, `messagepack`), so the runtime refuses a payload with no
/// codec prefix at admission (`unsupported-codec`) instead of handing the actor
/// bytes it cannot read. `export_actor!(MyActor, accepts = "cbor,json")`
/// declares fewer.
///
/// `export_actor!(MyActor, batched)` (or with `accepts = "…"` as well)
/// exports the `batch` interface too (the world `batched`): the runtime then
/// hands the actor a run of its queued plain messages in one call, and the
/// SDK calls [`Actor::message`] for each, in order, so the actor's code is
/// the same. One call instead of one per message is much cheaper, at a cost
/// that comes from the batch being one call: if a message of a batch panics,
/// the runtime cannot know which of the batch's messages were finished, so
/// each of them is a dead letter and none counts as handled (a batch holds at
/// most the runtime's per-turn batch of messages, 64 by default); a stop of
/// the actor itself ([`Ctx::stop`]) takes effect when the call returns, after
/// the rest of the batch; and the call's CPU budget is the batch's (a message
/// may use the budget of all of them). Requests, responses, timers and traced
/// messages still come one by one.
///
/// ```
/// use wasmshard_guest::{Actor, Address, Bytes, Ctx};
///
/// struct Sink {
///     seen: u64,
/// }
///
/// impl Actor for Sink {
///     type Config = Option<()>;
///     type Message = Bytes;
///     type Request = ();
///     type Reply = u64;
///
///     fn init(_: &mut Ctx<Self>, _: Option<()>) -> Result<Self, String> {
///         Ok(Sink { seen: 0 })
///     }
///
///     fn message(&mut self, _: &mut Ctx<Self>, _: Address, _: Bytes) {
///         self.seen += 1;
///     }
/// }
///
/// // Batched, taking raw bytes only.
/// wasmshard_guest::export_actor!(Sink, accepts = "raw", batched);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_actor {
    (@export $actor:ty, $accepts:literal, $mode:ident) => {
        const _: () = {
            const __ACCEPTS_TEXT: &str = $accepts;
            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = "wasmshard:accepts")]
            #[used]
            static __ACCEPTS: [u8; __ACCEPTS_TEXT.len()] =
                $crate::__rt::section::<{ __ACCEPTS_TEXT.len() }>(__ACCEPTS_TEXT);
            ::std::thread_local! {
                static __STATE: ::core::cell::RefCell<
                    ::core::option::Option<$crate::__rt::Host<$actor>>,
                > = const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }
            $crate::__export_batch!($mode, $actor);
            #[cfg_attr(
                target_arch = "wasm32",
                unsafe(export_name = "wasmshard:actor/actor@0.1.0#init")
            )]
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            unsafe extern "C" fn __init(ptr: *mut u8, len: usize) -> *mut u8 {
                // SAFETY: the host calls the export with its lowered argument.
                unsafe { $crate::__rt::init::<$actor>(&__STATE, ptr, len) }
            }
            #[cfg_attr(
                target_arch = "wasm32",
                unsafe(export_name = "wasmshard:actor/actor@0.1.0#handle-message")
            )]
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            unsafe extern "C" fn __handle_message(from: i64, ptr: *mut u8, len: usize) {
                // SAFETY: the host calls the export with its lowered arguments.
                unsafe { $crate::__rt::message::<$actor>(&__STATE, from as u64, ptr, len) }
            }
            #[cfg_attr(
                target_arch = "wasm32",
                unsafe(export_name = "wasmshard:actor/actor@0.1.0#handle-request")
            )]
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            unsafe extern "C" fn __handle_request(
                from: i64,
                id: i64,
                ptr: *mut u8,
                len: usize,
            ) -> *mut u8 {
                // SAFETY: the host calls the export with its lowered arguments.
                unsafe {
                    $crate::__rt::request::<$actor>(&__STATE, from as u64, id as u64, ptr, len)
                }
            }
            #[cfg_attr(
                target_arch = "wasm32",
                unsafe(export_name = "wasmshard:actor/actor@0.1.0#handle-response")
            )]
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            unsafe extern "C" fn __handle_response(id: i64, case: i32, ptr: *mut u8, len: usize) {
                // SAFETY: the host calls the export with its lowered arguments.
                unsafe {
                    $crate::__rt::response::<$actor>(&__STATE, id as u64, case as u32, ptr, len)
                }
            }
        };
    };
    ($actor:ty $(,)?) => {
        $crate::export_actor!(@export $actor, "raw,json,cbor,messagepack", single);
    };
    ($actor:ty, accepts = $accepts:literal $(,)?) => {
        $crate::export_actor!(@export $actor, $accepts, single);
    };
    ($actor:ty, batched $(,)?) => {
        $crate::export_actor!(@export $actor, "raw,json,cbor,messagepack", batched);
    };
    ($actor:ty, batched, accepts = $accepts:literal $(,)?) => {
        $crate::export_actor!(@export $actor, $accepts, batched);
    };
    ($actor:ty, accepts = $accepts:literal, batched $(,)?) => {
        $crate::export_actor!(@export $actor, $accepts, batched);
    };
}

/// The `batch` export of [`export_actor!`]`(…, batched)`; nothing otherwise.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_batch {
    (single, $actor:ty) => {};
    (batched, $actor:ty) => {
        // The world `batched` as `component-type` metadata: the component is
        // made with the `batch` export only when this section is linked in.
        #[cfg(target_arch = "wasm32")]
        #[unsafe(link_section = "component-type:wasmshard:batched")]
        #[used]
        static __BATCHED_WORLD: [u8; $crate::__rt::BATCHED_WORLD.len()] =
            *$crate::__rt::BATCHED_WORLD;
        #[cfg_attr(
            target_arch = "wasm32",
            unsafe(export_name = "wasmshard:actor/batch@0.1.0#handle-messages")
        )]
        #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
        unsafe extern "C" fn __handle_messages(count: i32, ptr: *mut u8, len: usize) {
            // SAFETY: the host calls the export with its lowered arguments.
            unsafe { $crate::__rt::messages::<$actor>(&__STATE, count as u32, ptr, len) }
        }
    };
}
