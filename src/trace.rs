//! Trace context: W3C-compatible ids that travel with messages.
//!
//! A traced envelope carries a boxed [`Trace`] (a pointer's width in every
//! envelope, `None` when unsampled: an untraced message pays one branch where
//! it is sent and one where it is handled). While an actor handles a traced
//! envelope, its outbox holds the context, and everything it sends then
//! carries a child: the same trace id, a new span id, its parent the span
//! being handled.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU64;

/// The trace context of a message: a 128-bit trace id and the 64-bit id of
/// the span that handles the message, as in W3C Trace Context
/// (`traceparent`), and whether it is sampled (the flag a `traceparent`
/// carries; the contexts the runtime hands out always are). Neither id is
/// ever zero.
///
/// [`Runtime::send_traced`](crate::Runtime::send_traced) and
/// [`Runtime::request_traced`](crate::Runtime::request_traced) continue a
/// trace the host is part of; [`Context::trace`](crate::Context::trace) and a
/// component's `tracing.current` read the context of the message being
/// handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    // The trace id in two halves (8-byte alignment: an `Option` of it is 32
    // bytes, not 48).
    hi: u64,
    lo: u64,
    span: NonZeroU64,
    sampled: bool,
}

impl TraceContext {
    /// A sampled context with these ids; `None` if either is zero (W3C:
    /// invalid).
    pub fn new(trace_id: u128, span_id: u64) -> Option<TraceContext> {
        if trace_id == 0 {
            return None;
        }
        Some(TraceContext {
            hi: (trace_id >> 64) as u64,
            lo: trace_id as u64,
            span: NonZeroU64::new(span_id)?,
            sampled: true,
        })
    }

    /// A new trace, sampled: random ids (not for cryptographic use).
    pub fn random() -> TraceContext {
        TraceContext {
            hi: nonzero_id().get(),
            lo: next_id(),
            span: nonzero_id(),
            sampled: true,
        }
    }

    /// The 128-bit trace id.
    pub fn trace_id(&self) -> u128 {
        (u128::from(self.hi) << 64) | u128::from(self.lo)
    }

    /// The 64-bit span id.
    pub fn span_id(&self) -> u64 {
        self.span.get()
    }

    /// Whether it is sampled. A message the host sends as part of an
    /// unsampled context ([`Runtime::send_traced`](crate::Runtime::send_traced))
    /// is not traced: the decision of whoever began the trace holds.
    pub fn is_sampled(&self) -> bool {
        self.sampled
    }

    /// The same context, sampled or not.
    pub fn with_sampled(self, sampled: bool) -> TraceContext {
        TraceContext { sampled, ..self }
    }

    /// Parses a W3C `traceparent` header value
    /// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`). Only version
    /// `00`'s layout is read; later versions are read by the same prefix, as
    /// the recommendation asks. The sampled flag is kept: a context handed to
    /// the runtime (`send_traced`, `request_traced`) is traced only if it is
    /// sampled (flags `01`); an unsampled one sends the message untraced.
    ///
    /// # Errors
    ///
    /// [`TraceparentError`] if the value is not of that shape, its version is
    /// `ff`, or an id is zero.
    pub fn from_traceparent(value: &str) -> Result<TraceContext, TraceparentError> {
        let bytes = value.as_bytes();
        let hex_at = |range: std::ops::Range<usize>| {
            let s = value.get(range).ok_or(TraceparentError)?;
            if s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                Ok(s)
            } else {
                Err(TraceparentError)
            }
        };
        if bytes.len() < 55 || [2, 35, 52].iter().any(|&i| bytes[i] != b'-') {
            return Err(TraceparentError);
        }
        let version = hex_at(0..2)?;
        if version == "ff" || (version == "00" && bytes.len() != 55) {
            return Err(TraceparentError);
        }
        if bytes.len() > 55 && bytes[55] != b'-' {
            return Err(TraceparentError);
        }
        let trace = u128::from_str_radix(hex_at(3..35)?, 16).map_err(|_| TraceparentError)?;
        let span = u64::from_str_radix(hex_at(36..52)?, 16).map_err(|_| TraceparentError)?;
        let flags = u8::from_str_radix(hex_at(53..55)?, 16).map_err(|_| TraceparentError)?;
        TraceContext::new(trace, span)
            .map(|t| t.with_sampled(flags & 1 == 1))
            .ok_or(TraceparentError)
    }

    /// The `traceparent` header value for this context:
    /// `00-<trace id>-<span id>-<flags>`, the flags `01` if it is sampled,
    /// else `00`.
    pub fn traceparent(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TraceContext {
    /// As [`TraceContext::traceparent`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id(),
            self.span_id(),
            u8::from(self.sampled)
        )
    }
}

/// A `traceparent` value that is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent value (00-<32 hex>-<16 hex>-<2 hex>, ids not zero)")]
#[non_exhaustive]
pub struct TraceparentError;

/// What a traced envelope carries: its context, and the span it was sent
/// from (0: none, the trace or the host's part of it begins here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trace {
    pub(crate) context: TraceContext,
    pub(crate) parent: u64,
}

impl Trace {
    /// A new trace, for a message the host sends while sampling.
    #[cold]
    pub(crate) fn root() -> Box<Trace> {
        Box::new(Trace {
            context: TraceContext::random(),
            parent: 0,
        })
    }

    /// A message sent from the span `parent`: the same trace, a new span.
    #[cold]
    pub(crate) fn child_of(parent: TraceContext) -> Box<Trace> {
        Box::new(Trace {
            context: TraceContext {
                span: nonzero_id(),
                sampled: true,
                ..parent
            },
            parent: parent.span_id(),
        })
    }

    /// Another span beside this one: the same trace and parent (the handling
    /// of a dead letter: its own span may never have been handled).
    #[cold]
    pub(crate) fn sibling(&self) -> Box<Trace> {
        Box::new(Trace {
            context: TraceContext {
                span: nonzero_id(),
                ..self.context
            },
            parent: self.parent,
        })
    }

    /// A message that begins its part of the trace of `context` (a delivery
    /// of a publication the host traced): a new span with no parent.
    #[cold]
    pub(crate) fn first_in(context: TraceContext) -> Box<Trace> {
        Box::new(Trace {
            context: TraceContext {
                span: nonzero_id(),
                ..context
            },
            parent: 0,
        })
    }
}

/// Whether the host's sends are sampled: each message the host sends without
/// a context starts a trace with probability `rate` (0 to 1), drawn by the
/// sending thread. 0 (the default) costs one comparison per send.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sampler {
    /// `rate` × 2^64, saturated: a draw below it samples.
    threshold: u64,
    always: bool,
}

impl Sampler {
    pub(crate) fn new(rate: f64) -> Sampler {
        Sampler {
            // `as` saturates; NaN (refused before this) would give 0.
            threshold: (rate * 18_446_744_073_709_551_616.0) as u64,
            always: rate >= 1.0,
        }
    }

    /// The trace a host send starts, if it is sampled.
    #[inline]
    pub(crate) fn sample(&self) -> Option<Box<Trace>> {
        if self.threshold == 0 {
            return None;
        }
        (self.always || next_id() < self.threshold).then(Trace::root)
    }
}

thread_local! {
    /// Per thread, so that drawing ids takes no lock and no atomic.
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()));
}

/// A pseudo-random u64 (SplitMix64 on the thread's state).
fn next_id() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn nonzero_id() -> NonZeroU64 {
    loop {
        if let Some(id) = NonZeroU64::new(next_id()) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_what_is_not_one() {
        let t = TraceContext::new(0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331).unwrap();
        let s = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(t.traceparent(), s);
        assert_eq!(t.to_string(), s);
        assert_eq!(TraceContext::from_traceparent(s), Ok(t));
        // A later version with more fields is read by its prefix.
        let later = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-extra";
        assert_eq!(
            TraceContext::from_traceparent(later),
            Ok(t.with_sampled(false))
        );
        let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02";
        let u = TraceContext::from_traceparent(unsampled).unwrap();
        assert!(!u.is_sampled());
        assert_eq!(u.traceparent(), unsampled.replace("-02", "-00"));
        assert_eq!(std::mem::size_of::<Option<TraceContext>>(), 32);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
            "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333é-01",
        ] {
            assert_eq!(
                TraceContext::from_traceparent(bad),
                Err(TraceparentError),
                "{bad}"
            );
        }
        assert_eq!(TraceContext::new(0, 1), None);
        assert_eq!(TraceContext::new(1, 0), None);
    }

    #[test]
    fn children_keep_the_trace_and_name_their_parent() {
        let root = Trace::root();
        let child = Trace::child_of(root.context);
        assert_eq!(child.context.trace_id(), root.context.trace_id());
        assert_ne!(child.context.span_id(), root.context.span_id());
        assert_eq!(child.parent, root.context.span_id());
        assert_eq!(root.parent, 0);
    }

    #[test]
    fn sampling_follows_its_rate() {
        assert!((0..1000).all(|_| Sampler::new(0.0).sample().is_none()));
        assert!((0..1000).all(|_| Sampler::new(1.0).sample().is_some()));
        let half = (0..10_000)
            .filter(|_| Sampler::new(0.5).sample().is_some())
            .count();
        assert!((4_000..6_000).contains(&half), "{half}");
    }
}
