//! Typed payloads from the host: values written and read in the format the guest
//! SDK uses ([`crate::codec`]: a multicodec prefix, then the value).

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmshard_codec::{self as codec, Codec, DecodeError, EncodeError};

use crate::address::Address;
use crate::error::{RequestError, SendError};
use crate::pending::PendingReply;
use crate::runtime::Runtime;

/// A typed send or request that did not go out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedSendError {
    /// The runtime refused it.
    #[error("refused")]
    Refused(#[source] SendError),
    /// The value could not be encoded.
    #[error("cannot encode the value")]
    Encode(#[source] EncodeError),
}

/// Why a typed request has no reply to give.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// It has not ended yet (by the time the wait gave up, or when polled).
    #[error("no reply yet")]
    NotYet,
    /// It ended without a reply: `timeout`, `cancelled`, `target-failed`, ….
    #[error("the request ended without a reply")]
    Failed(#[source] RequestError),
    /// The responder dropped it unanswered (its reply was empty, as the guest
    /// SDK's dropped `Reply` sends).
    #[error("the responder dropped the request unanswered")]
    Dropped,
    /// The reply does not decode into the type asked for.
    #[error("the reply does not decode")]
    Decode(#[source] DecodeError),
}

/// A typed request made by the host: a [`PendingReply`] whose reply is decoded
/// as `R`. Dropping it cancels the request.
#[derive(Debug)]
pub struct TypedReply<R> {
    pending: PendingReply,
    _type: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> TypedReply<R> {
    /// Waits up to `timeout` for the request to end, and decodes the reply.
    ///
    /// # Errors
    ///
    /// [`ReplyError::NotYet`] if it has not ended by then; otherwise why it has no
    /// reply, or why the reply does not decode.
    pub fn wait(&self, timeout: Duration) -> Result<R, ReplyError> {
        Self::read(self.pending.wait(timeout))
    }

    /// The decoded reply if the request has ended; never blocks.
    ///
    /// # Errors
    ///
    /// As [`TypedReply::wait`].
    pub fn try_get(&self) -> Result<R, ReplyError> {
        Self::read(self.pending.try_get())
    }

    /// The untyped handle.
    pub fn into_inner(self) -> PendingReply {
        self.pending
    }

    /// Cancels the request; whether it was still open (as
    /// [`PendingReply::cancel`]).
    pub fn cancel(self) -> bool {
        self.pending.cancel()
    }

    fn read(outcome: Option<Result<Vec<u8>, RequestError>>) -> Result<R, ReplyError> {
        match outcome {
            None => Err(ReplyError::NotYet),
            Some(Err(e)) => Err(ReplyError::Failed(e)),
            Some(Ok(bytes)) if bytes.is_empty() => Err(ReplyError::Dropped),
            Some(Ok(bytes)) => codec::decode(&bytes).map_err(ReplyError::Decode),
        }
    }
}

/// Typed sends and requests: the value is encoded with a codec prefix, as the
/// guest SDK writes and reads payloads.
impl Runtime {
    /// Sends `value` to `to` in the default codec ([`codec::DEFAULT`]).
    ///
    /// # Errors
    ///
    /// As [`Runtime::send`], or a value the codec cannot encode.
    pub fn send_typed<T: Serialize + ?Sized>(
        &self,
        to: Address,
        value: &T,
    ) -> Result<(), TypedSendError> {
        self.send_typed_with(codec::DEFAULT, to, value)
    }

    /// Sends `value` to `to` in `codec`.
    ///
    /// # Errors
    ///
    /// As [`Runtime::send_typed`].
    pub fn send_typed_with<T: Serialize + ?Sized>(
        &self,
        codec: Codec,
        to: Address,
        value: &T,
    ) -> Result<(), TypedSendError> {
        let bytes = codec::encode(codec, value).map_err(TypedSendError::Encode)?;
        self.send(to, &bytes).map_err(TypedSendError::Refused)
    }

    /// Requests `to` with `request` in the default codec; the reply is decoded as
    /// `R`.
    ///
    /// # Errors
    ///
    /// As [`Runtime::request`], or a value the codec cannot encode.
    pub fn request_typed<Q: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        to: Address,
        request: &Q,
        timeout: Duration,
    ) -> Result<TypedReply<R>, TypedSendError> {
        self.request_typed_with(codec::DEFAULT, to, request, timeout)
    }

    /// Requests `to` with `request` in `codec`; the reply is decoded as `R`
    /// (whatever codec it comes in).
    ///
    /// # Errors
    ///
    /// As [`Runtime::request_typed`].
    pub fn request_typed_with<Q: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        codec: Codec,
        to: Address,
        request: &Q,
        timeout: Duration,
    ) -> Result<TypedReply<R>, TypedSendError> {
        let bytes = codec::encode(codec, request).map_err(TypedSendError::Encode)?;
        let pending = self
            .request(to, &bytes, timeout)
            .map_err(TypedSendError::Refused)?;
        Ok(TypedReply {
            pending,
            _type: PhantomData,
        })
    }
}
