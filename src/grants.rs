//! Capabilities and quotas: what a component actor may reach ([`Grants`]), how
//! fast it may send ([`Rate`]), and what the check on the message path is made of.
//!
//! **Grants** name targets by pattern (`*` matches any run of characters, so
//! `worker-*` matches `worker-1` and `worker-`). The message path never matches a
//! pattern: every distinct pattern in use gets a *label*, one bit of a `u64`
//! (bit 0 is `*`, which every actor carries), each actor carries the labels its
//! name matches beside its slot word, and each sender a mask per operation. A send
//! is allowed when `labels & mask != 0`: one load from the cache line the
//! admission reads anyway, an `and` and a branch. Labels are assigned when a spawn
//! brings a pattern no live actor uses, which then marks the live actors whose names
//! match it (a control path, under the name registry's lock); a label is freed
//! when the last actor using its pattern ends. At most [`MAX_PATTERNS`] patterns
//! (besides `*`) are in use at once.
//!
//! **Rates** are token buckets, kept as a theoretical arrival time (GCRA): a send
//! costs `1 / messages-per-sec` seconds of it, and is refused once the time runs
//! ahead of the clock by more than `burst` sends. The clock is the shard's reading
//! once per pass, taken only when an actor with a rate runs.

use serde::{Deserialize, Serialize};

use crate::address::Address;

/// Most distinct grant patterns in use at once in one runtime (besides `*`).
pub const MAX_PATTERNS: usize = 63;
/// Longest grant pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 256;
/// The fastest rate a quota may name (one message a nanosecond).
pub const MAX_RATE: u64 = 1_000_000_000;

/// An operation a grant allows, as named in grants and in the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Operation {
    /// `send` (a tell).
    Send,
    /// `request`.
    Request,
    /// `lookup` of a name.
    Lookup,
    /// `spawn` of a registered component (by component name).
    Spawn,
    /// `stop` of an actor.
    Stop,
    /// `monitor` of an actor.
    Monitor,
    /// `publish` to a topic.
    Publish,
    /// `subscribe` to a topic.
    Subscribe,
}

impl Operation {
    /// Every operation, in the order grants list them.
    pub const ALL: [Operation; 8] = [
        Operation::Send,
        Operation::Request,
        Operation::Lookup,
        Operation::Spawn,
        Operation::Stop,
        Operation::Monitor,
        Operation::Publish,
        Operation::Subscribe,
    ];

    /// The operation's name in grants (`send`, `request`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Operation::Send => "send",
            Operation::Request => "request",
            Operation::Lookup => "lookup",
            Operation::Spawn => "spawn",
            Operation::Stop => "stop",
            Operation::Monitor => "monitor",
            Operation::Publish => "publish",
            Operation::Subscribe => "subscribe",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a component actor may reach: for each operation, the name patterns
/// (actor names; component names for `spawn`; topics for `publish` and
/// `subscribe`) it may use it on. `*` in a pattern matches any run of
/// characters (`worker-*`, `*.db`, `*`). An empty list denies the operation.
///
/// Whatever the grants, an actor may always respond to the requests it
/// received and message itself. The host and native actors are trusted: they
/// have no grants and are never denied.
///
/// The same table is a manifest's `grants = { send = ["worker-*"], ... }`.
///
/// ```
/// use wasmshard::Grants;
/// let grants = Grants::none().send(["worker-*"]).request(["db"]).lookup(["*"]);
/// assert_eq!(grants.send, ["worker-*"]);
/// assert!(Grants::none().send.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Grants {
    /// Actors it may `send` to.
    pub send: Vec<String>,
    /// Actors it may `request` from.
    pub request: Vec<String>,
    /// Names whose `lookup` it may see (others look absent).
    pub lookup: Vec<String>,
    /// Registered components it may `spawn` (checked by the lifecycle
    /// interface, which a later version adds).
    pub spawn: Vec<String>,
    /// Actors it may `stop` (lifecycle interface, later).
    pub stop: Vec<String>,
    /// Actors it may `monitor` (lifecycle interface, later).
    pub monitor: Vec<String>,
    /// Topics it may `publish` to (topics interface, later).
    pub publish: Vec<String>,
    /// Topics it may `subscribe` to (topics interface, later).
    pub subscribe: Vec<String>,
}

macro_rules! grant_setters {
    ($($op:ident),*) => {$(
        #[doc = concat!("Replaces the patterns `", stringify!($op), "` is allowed on.")]
        pub fn $op<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Grants {
            self.$op = patterns.into_iter().map(Into::into).collect();
            self
        }
    )*};
}

impl Grants {
    /// No operation on anything: the default.
    pub fn none() -> Grants {
        Grants::default()
    }

    /// Every operation on everything (`*` for each).
    pub fn all() -> Grants {
        let all = || vec!["*".to_string()];
        Grants {
            send: all(),
            request: all(),
            lookup: all(),
            spawn: all(),
            stop: all(),
            monitor: all(),
            publish: all(),
            subscribe: all(),
        }
    }

    grant_setters!(
        send, request, lookup, spawn, stop, monitor, publish, subscribe
    );

    /// The patterns of `operation`.
    pub fn patterns(&self, operation: Operation) -> &[String] {
        match operation {
            Operation::Send => &self.send,
            Operation::Request => &self.request,
            Operation::Lookup => &self.lookup,
            Operation::Spawn => &self.spawn,
            Operation::Stop => &self.stop,
            Operation::Monitor => &self.monitor,
            Operation::Publish => &self.publish,
            Operation::Subscribe => &self.subscribe,
        }
    }

    /// Checks every pattern: not empty, at most [`MAX_PATTERN_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Pattern`] naming the operation and the pattern.
    pub fn check(&self) -> Result<(), PolicyError> {
        for op in Operation::ALL {
            for p in self.patterns(op) {
                if p.is_empty() || p.len() > MAX_PATTERN_LEN {
                    return Err(PolicyError::Pattern {
                        operation: op,
                        pattern: p.chars().take(64).collect(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters
/// (bytes; a pattern is compared byte by byte) and everything else itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    // Where the last `*` was, and where in `name` its run ends for now.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            // Let the last `*` take one more byte and try again after it.
            star = Some((si, sj + 1));
            i = si + 1;
            j = sj + 1;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&b| b == b'*')
}

/// A quota: a sustained rate of sends (tells and requests together) and a burst.
///
/// The manifest's `rate = { messages-per-sec = 10000, burst = 100 }`. A send or
/// request beyond it fails at once with `too-many-requests`. Responses, `respond`
/// and messages an actor sends itself are never limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Rate {
    /// Sends per second, sustained: 1 to [`MAX_RATE`].
    pub messages_per_sec: u64,
    /// Sends that may go at once after a quiet spell (at least 1; default 1).
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl Rate {
    /// A rate of `messages_per_sec` with a burst of `burst`.
    pub fn new(messages_per_sec: u64, burst: u32) -> Rate {
        Rate {
            messages_per_sec,
            burst,
        }
    }

    /// Checks the numbers: a rate of 1 to [`MAX_RATE`], a burst of at least 1.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Rate`] saying which is out of range.
    pub fn check(&self) -> Result<(), PolicyError> {
        if !(1..=MAX_RATE).contains(&self.messages_per_sec) {
            return Err(PolicyError::Rate(format!(
                "messages-per-sec must be 1 to {MAX_RATE}, not {}",
                self.messages_per_sec
            )));
        }
        if self.burst == 0 {
            return Err(PolicyError::Rate("burst must be at least 1".into()));
        }
        Ok(())
    }
}

/// A grant or quota that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A pattern is empty or longer than [`MAX_PATTERN_LEN`] bytes.
    #[error(
        "the {operation} grant `{pattern}` is not a pattern (empty, or longer than \
         {MAX_PATTERN_LEN} bytes)"
    )]
    Pattern {
        /// The operation it was given for.
        operation: Operation,
        /// The pattern (its first 64 characters).
        pattern: String,
    },
    /// The runtime's actors would use more than [`MAX_PATTERNS`] distinct patterns.
    #[error(
        "the runtime's actors would use more than {MAX_PATTERNS} distinct grant patterns \
         (besides `*`); reuse patterns, or use wider ones"
    )]
    TooManyPatterns,
    /// A rate out of range.
    #[error("invalid rate: {0}")]
    Rate(String),
    /// A restart policy out of range.
    #[error("invalid restart policy: {0}")]
    Restart(String),
}

/// The label bit of `*`, which every actor carries.
pub(crate) const EVERYONE: u64 = 1;

/// The label registry: which pattern each label bit stands for, and how many
/// live actors' grants use it. Kept with the name registry, under its lock.
#[derive(Default)]
pub(crate) struct Labels {
    /// `patterns[i]`: the pattern of label `i + 1`, and its users.
    patterns: Vec<Option<(Box<str>, u32)>>,
}

impl Labels {
    /// The labels `name` carries: `*`'s, and every pattern's it matches.
    pub(crate) fn of(&self, name: &str) -> u64 {
        self.patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| p.as_ref().is_some_and(|(p, _)| pattern_matches(p, name)))
            .fold(EVERYONE, |bits, (i, _)| bits | 2 << i)
    }

    /// The label of `pattern`, for an actor that holds the labels `held`: one
    /// more use of it unless it is among them. `Ok((bit, true))` when the label
    /// is new (the live actors must be marked).
    fn take(&mut self, pattern: &str, held: u64) -> Result<(u64, bool), PolicyError> {
        let mut free = None;
        for (i, slot) in self.patterns.iter_mut().enumerate() {
            match slot {
                Some((p, users)) if &**p == pattern => {
                    if held & (2 << i) == 0 {
                        *users += 1;
                    }
                    return Ok((2 << i, false));
                }
                None if free.is_none() => free = Some(i),
                _ => {}
            }
        }
        let i = match free {
            Some(i) => i,
            None if self.patterns.len() < MAX_PATTERNS => {
                self.patterns.push(None);
                self.patterns.len() - 1
            }
            None => return Err(PolicyError::TooManyPatterns),
        };
        self.patterns[i] = Some((pattern.into(), 1));
        Ok((2 << i, true))
    }

    /// Gives back the labels in `held` (one use each).
    pub(crate) fn release(&mut self, held: u64) {
        for (i, slot) in self.patterns.iter_mut().enumerate() {
            if held & (2 << i) != 0
                && let Some((_, users)) = slot
            {
                *users -= 1;
                if *users == 0 {
                    *slot = None;
                }
            }
        }
    }

    /// Compiles `grants` into masks, taking a label for each distinct pattern
    /// (`*` is the label everyone carries). Calls `mark(bit, pattern)` for each
    /// label that is new. On error, nothing stays taken.
    pub(crate) fn compile(
        &mut self,
        grants: &Grants,
        mut mark: impl FnMut(u64, &str),
    ) -> Result<Masks, PolicyError> {
        let mut masks = Masks::default();
        for (op, mask) in [
            (Operation::Send, &mut masks.send),
            (Operation::Request, &mut masks.request),
            (Operation::Lookup, &mut masks.lookup),
            (Operation::Stop, &mut masks.stop),
            (Operation::Monitor, &mut masks.monitor),
        ] {
            for p in grants.patterns(op) {
                // `*`, `**`, ...: everyone.
                if p.bytes().all(|b| b == b'*') {
                    *mask |= EVERYONE;
                    continue;
                }
                let (bit, new) = match self.take(p, masks.held) {
                    Ok(taken) => taken,
                    Err(e) => {
                        self.release(masks.held);
                        return Err(e);
                    }
                };
                if new {
                    mark(bit, p);
                }
                masks.held |= bit;
                *mask |= bit;
            }
        }
        Ok(masks)
    }
}

/// One actor's grants, compiled: a label mask per operation whose target is an
/// actor, and the labels it holds (to give back when it ends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Masks {
    pub(crate) send: u64,
    pub(crate) request: u64,
    pub(crate) lookup: u64,
    pub(crate) stop: u64,
    pub(crate) monitor: u64,
    pub(crate) held: u64,
}

impl Masks {
    /// The host's and native actors': everything.
    pub(crate) const TRUSTED: Masks = Masks {
        send: u64::MAX,
        request: u64::MAX,
        lookup: u64::MAX,
        stop: u64::MAX,
        monitor: u64::MAX,
        held: 0,
    };
}

/// A rate in force: the quota and the theoretical arrival time of the next send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub(crate) rate: Rate,
    /// Nanoseconds of quota one send costs.
    interval: u64,
    /// How far ahead of the clock the arrival time may run (`burst` sends).
    tolerance: u64,
    /// When the quota would next be full again, in the runtime's clock.
    tat: u64,
}

impl Bucket {
    pub(crate) fn new(rate: Rate) -> Bucket {
        // Rounded up: a rate that does not divide a second is held a little
        // under what it asks (at most one nanosecond a send), never over it.
        let interval = 1_000_000_000u64.div_ceil(rate.messages_per_sec.max(1));
        Bucket {
            rate,
            interval,
            tolerance: interval.saturating_mul(u64::from(rate.burst)),
            tat: 0,
        }
    }

    /// Whether one more send fits at `now`.
    #[inline]
    pub(crate) fn admits(&self, now: u64) -> bool {
        self.tat.max(now) + self.interval <= now.saturating_add(self.tolerance)
    }

    /// Spends one send at `now` (after [`Bucket::admits`] said it fits).
    #[inline]
    pub(crate) fn spend(&mut self, now: u64) {
        self.tat = self.tat.max(now) + self.interval;
    }

    /// Sends that would fit at `now`.
    pub(crate) fn available(&self, now: u64) -> u64 {
        now.saturating_add(self.tolerance)
            .saturating_sub(self.tat.max(now))
            / self.interval
    }
}

/// What a denial was aimed at.
#[derive(Clone, Debug)]
pub(crate) enum Aim {
    Actor(Address),
    Name(Box<str>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_glob() {
        for (p, n, m) in [
            ("db", "db", true),
            ("db", "db2", false),
            ("db", "d", false),
            ("*", "", true),
            ("*", "anything", true),
            ("worker-*", "worker-1", true),
            ("worker-*", "worker-", true),
            ("worker-*", "worker", false),
            ("*-db", "user-db", true),
            ("*-db", "user-db-2", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("a**", "a", true),
            ("*a*a*a", "aaaa", true),
            ("*a*a*b", "aaaaaaaaaaaaaaaaaaaaa", false),
        ] {
            assert_eq!(pattern_matches(p, n), m, "{p} ~ {n}");
        }
    }

    #[test]
    fn a_pattern_of_stars_is_everyone() {
        let mut labels = Labels::default();
        let m = labels
            .compile(&Grants::none().send(["**"]).lookup(["***"]), |_, _| {
                panic!("no label")
            })
            .unwrap();
        assert_eq!((m.send, m.lookup, m.held), (EVERYONE, EVERYONE, 0));
    }

    #[test]
    fn labels_are_shared_reused_and_bounded() {
        let mut labels = Labels::default();
        let mut marked = Vec::new();
        let g = Grants::none().send(["w-*", "db"]).request(["db"]);
        let a = labels
            .compile(&g, |b, p| marked.push((b, p.to_string())))
            .unwrap();
        assert_eq!(marked.len(), 2);
        assert_eq!(a.request & a.send, a.request);
        assert_eq!(labels.of("w-1"), EVERYONE | marked[0].0);
        assert_eq!(labels.of("db"), EVERYONE | marked[1].0);
        assert_eq!(labels.of("x"), EVERYONE);
        // A second user of the same patterns takes no new label.
        let b = labels.compile(&g, |_, _| panic!("no new label")).unwrap();
        assert_eq!(a, b);
        labels.release(a.held);
        assert_eq!(labels.of("db"), EVERYONE | marked[1].0);
        labels.release(b.held);
        assert_eq!(labels.of("db"), EVERYONE);
        // Bounded: the 64th distinct pattern is refused, and nothing stays taken.
        let many: Vec<String> = (0..MAX_PATTERNS).map(|i| format!("p{i}")).collect();
        let full = labels
            .compile(&Grants::none().send(many), |_, _| {})
            .unwrap();
        let err = labels.compile(&Grants::none().send(["one-more", "p0"]), |_, _| {});
        assert_eq!(err, Err(PolicyError::TooManyPatterns));
        assert_eq!(labels.of("p0"), EVERYONE | 2);
        labels.release(full.held);
        assert!(
            labels
                .compile(&Grants::none().send(["one-more"]), |_, _| {})
                .is_ok()
        );
    }

    #[test]
    fn a_rate_that_does_not_divide_a_second_is_never_exceeded() {
        for rate in [3, 7, 600_000_000, 400_000_000, MAX_RATE] {
            let mut b = Bucket::new(Rate::new(rate, 1));
            // Ten thousand intervals, a try at each.
            let (start, window) = (1_000_000_000u64, 10_000 * b.interval);
            let mut sent = 0u128;
            for now in (start..start + window).step_by(b.interval as usize) {
                if b.admits(now) {
                    b.spend(now);
                    sent += 1;
                }
            }
            let allowed = u128::from(rate) * u128::from(window) / 1_000_000_000 + 1;
            assert!(sent <= allowed, "{sent} sends in {window} ns at {rate}/s");
        }
    }

    #[test]
    fn the_bucket_holds_the_rate_and_the_burst() {
        let mut b = Bucket::new(Rate::new(1000, 10));
        let now = 5_000_000_000;
        let mut sent = 0;
        while b.admits(now) {
            b.spend(now);
            sent += 1;
        }
        assert_eq!(sent, 10, "the burst");
        assert_eq!(b.available(now), 0);
        // 100 ms later: 100 more.
        let later = now + 100_000_000;
        assert_eq!(b.available(later), 10);
        let mut more = 0;
        let mut t = later;
        for _ in 0..100 {
            while b.admits(t) {
                b.spend(t);
                more += 1;
            }
            t += 1_000_000;
        }
        assert_eq!(more, 10 + 99);
    }
}
