//! What crosses NATS: subjects, the headers a bridge reads and writes, and the
//! reasons a remote side gives for what it refused.

use wasmshard::{RequestError, SendError};

/// Header: `tell` on a tell from a bridge (its reply subject takes refusals);
/// absent on a request, and on a message from a plain NATS client.
pub(crate) const KIND: &str = "Wasmshard-Kind";
/// Header: a request's remaining deadline, in nanoseconds (a duration, not a
/// time: the two machines' clocks need not agree).
pub(crate) const TIMEOUT_NS: &str = "Wasmshard-Timeout-Ns";
/// Header: why the remote side refused a tell, or how a request ended there,
/// as a [`Reason`]'s name.
pub(crate) const ERROR: &str = "Wasmshard-Error";
/// Header: the local name of the actor a refusal is about.
pub(crate) const TARGET: &str = "Wasmshard-Target";
/// Header: a message's place in the sequence of what one bridge published to
/// one node (tells and requests), from 0: a gap at the receiving bridge is
/// what NATS lost on the way.
pub(crate) const SEQ: &str = "Wasmshard-Seq";
/// Header: the receiver is asked to acknowledge this message (flow control).
pub(crate) const ACK: &str = "Wasmshard-Ack";
/// Header: on an acknowledgement, the acknowledging node's key
/// (`<prefix>.<cluster>.<node>`).
pub(crate) const NODE: &str = "Wasmshard-Node";
/// Header: how many messages a refusal stands for (absent: one).
pub(crate) const COUNT: &str = "Wasmshard-Count";

/// Room the bridge keeps for its headers within the server's maximum
/// payload (headers and payload count together there).
pub(crate) const HEADER_ROOM: usize = 512;

/// The timeout of a request from a plain NATS client (no timeout header).
pub(crate) const PLAIN_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a message did not reach its target across the bridge, or how a request
/// ended on the remote side: the names travel in the `Wasmshard-Error` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The target's mailbox was full.
    MailboxFull,
    /// The name is exported, but no actor is registered under it now.
    UnknownTarget,
    /// The name is not exported by the remote bridge.
    Denied,
    /// The payload is over the remote runtime's maximum.
    TooLarge,
    /// The remote bridge's queue toward its runtime was full.
    Overloaded,
    /// The remote runtime is shutting down.
    ShuttingDown,
    /// The target refused it for another reason (a quota, a codec it does not accept).
    Refused,
    /// The remote request timed out.
    Timeout,
    /// The remote target failed while the request was open.
    TargetFailed,
    /// The remote target stopped while the request was open.
    TargetStopped,
    /// The message was not a well-formed bridge message.
    Malformed,
    /// Published, but never arrived: the receiving bridge found a gap in
    /// the sender's sequence (NATS core lost it, at a disconnect or while the
    /// receiver was away).
    Lost,
    /// Not published: the bridge's client was disconnected.
    Disconnected,
    /// Not published: the bridge was closed (or closing).
    Closed,
}

impl Reason {
    /// The name carried in the header.
    pub fn name(self) -> &'static str {
        match self {
            Reason::MailboxFull => "mailbox-full",
            Reason::UnknownTarget => "unknown-target",
            Reason::Denied => "denied",
            Reason::TooLarge => "too-large",
            Reason::Overloaded => "overloaded",
            Reason::ShuttingDown => "shutting-down",
            Reason::Refused => "refused",
            Reason::Timeout => "timeout",
            Reason::TargetFailed => "target-failed",
            Reason::TargetStopped => "target-stopped",
            Reason::Malformed => "malformed",
            Reason::Lost => "lost",
            Reason::Disconnected => "disconnected",
            Reason::Closed => "closed",
        }
    }

    /// Every reason.
    pub const ALL: [Reason; 14] = [
        Reason::MailboxFull,
        Reason::UnknownTarget,
        Reason::Denied,
        Reason::TooLarge,
        Reason::Overloaded,
        Reason::ShuttingDown,
        Reason::Refused,
        Reason::Timeout,
        Reason::TargetFailed,
        Reason::TargetStopped,
        Reason::Malformed,
        Reason::Lost,
        Reason::Disconnected,
        Reason::Closed,
    ];

    /// The reason named `name` (an unknown name is `Refused`: a newer remote
    /// bridge may know more reasons).
    pub(crate) fn parse(name: &str) -> Reason {
        Reason::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .unwrap_or(Reason::Refused)
    }

    /// The reason for a send the runtime refused.
    pub(crate) fn of_send(e: SendError) -> Reason {
        match e {
            SendError::MailboxFull => Reason::MailboxFull,
            SendError::UnknownTarget => Reason::UnknownTarget,
            SendError::TooLarge => Reason::TooLarge,
            SendError::ShuttingDown => Reason::ShuttingDown,
            SendError::Denied => Reason::Denied,
            _ => Reason::Refused,
        }
    }

    /// The reason for how a request ended on the runtime's side.
    pub(crate) fn of_request(e: RequestError) -> Reason {
        match e {
            RequestError::Timeout => Reason::Timeout,
            RequestError::TargetFailed => Reason::TargetFailed,
            RequestError::TargetStopped => Reason::TargetStopped,
            RequestError::UnknownTarget => Reason::UnknownTarget,
            // A cancel ends on the side that made it; none is carried.
            _ => Reason::TargetFailed,
        }
    }

    /// How a local request through a proxy ends when the remote side gives
    /// this reason: the request errors a requester knows. A refusal at the
    /// remote mailbox (`mailbox-full`, `overloaded`, `too-large`, `refused`,
    /// `shutting-down`, `malformed`) ends it as `target-failed`; an unknown or
    /// unexported name as `unknown-target`.
    pub(crate) fn request_error(self) -> RequestError {
        match self {
            Reason::Timeout => RequestError::Timeout,
            Reason::TargetStopped => RequestError::TargetStopped,
            Reason::UnknownTarget | Reason::Denied => RequestError::UnknownTarget,
            _ => RequestError::TargetFailed,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `token` may be one token of a NATS subject as the bridge builds
/// them: not empty, at most 128 bytes, printable ASCII with no `.`, `*`, `>`
/// or whitespace.
pub(crate) fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
}

/// Whether `prefix` is one or more tokens joined by `.`.
pub(crate) fn is_prefix(prefix: &str) -> bool {
    prefix.len() <= 256 && prefix.split('.').all(is_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_their_names() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.name()), r);
        }
        assert_eq!(Reason::parse("from-the-future"), Reason::Refused);
    }

    #[test]
    fn tokens_refuse_what_would_change_the_subject() {
        assert!(is_token("counter-1_a@b"));
        for bad in ["", "a.b", "a*", ">", "a b", "a\tb", "é", &"x".repeat(129)] {
            assert!(!is_token(bad), "{bad:?}");
        }
        assert!(is_prefix("acme.wasmshard"));
        assert!(!is_prefix("acme..wasmshard"));
        assert!(!is_prefix(""));
    }
}
