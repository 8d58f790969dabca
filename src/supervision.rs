//! Supervision: restarting a failed actor in place.
//!
//! A supervised actor that fails keeps its slot, so its address, its name and
//! the messages queued for it stay; its body is dropped, and a new one is made
//! (a component instantiated again, with `init` run on the same config; a
//! native actor from its factory) when the backoff has passed. The policy
//! counts failures within a sliding window; beyond `max_restarts` of them the
//! actor ends for good.

use std::collections::VecDeque;
use std::time::Duration;

use crate::component::Component;
use crate::grants::PolicyError;
use crate::native::NativeActor;

/// Whether a failed actor is restarted (in a manifest: `restart = "never"` or
/// `"on-failure"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RestartPolicy {
    /// A failure ends the actor (the default).
    #[default]
    Never,
    /// A failure restarts the actor in place, within the intensity.
    OnFailure,
}

/// Most failures a restart window may allow.
pub const MAX_RESTARTS: u32 = 10_000;
/// The longest restart window and the longest backoff.
pub const MAX_RESTART_DURATION: Duration = Duration::from_secs(24 * 3600);

/// How an actor is supervised: its policy, its intensity (at most
/// `max_restarts` restarts within `window`) and its backoff.
///
/// The first restart after a quiet window is immediate; each further failure
/// within the window waits `backoff`, doubled each time, up to `max_backoff`,
/// before its restart. A failure that would make `max_restarts + 1` within the
/// window ends the actor for good. Messages sent to it while it waits are
/// admitted against its mailbox as usual and handled by the new instance.
///
/// ```
/// use std::time::Duration;
/// use wasmshard::Restart;
///
/// let restart = Restart::on_failure()
///     .max_restarts(3)
///     .window(Duration::from_secs(5))
///     .backoff(Duration::from_millis(1), Duration::from_millis(100));
/// assert!(restart.check().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Restart {
    /// Whether it restarts at all.
    pub policy: RestartPolicy,
    /// Restarts allowed within `window` (default 5). The backoff waits
    /// count toward the window: if they add up to `window` or more before
    /// this many restarts, the limit is never reached and the actor restarts
    /// for ever, at most once every `max_backoff`.
    pub max_restarts: u32,
    /// The window the restarts are counted in (default 10 s).
    pub window: Duration,
    /// The wait before the second restart within the window (default 10 ms).
    pub backoff: Duration,
    /// The longest wait (default 1 s).
    pub max_backoff: Duration,
}

impl Default for Restart {
    fn default() -> Restart {
        Restart::never()
    }
}

impl Restart {
    /// No restarts: a failure ends the actor.
    pub const fn never() -> Restart {
        Restart {
            policy: RestartPolicy::Never,
            max_restarts: 5,
            window: Duration::from_secs(10),
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        }
    }

    /// Restarts on failure, with the default intensity (5 within 10 s) and
    /// backoff (10 ms, doubling, up to 1 s).
    pub const fn on_failure() -> Restart {
        Restart {
            policy: RestartPolicy::OnFailure,
            ..Restart::never()
        }
    }

    /// At most `n` restarts within the window.
    pub const fn max_restarts(mut self, n: u32) -> Restart {
        self.max_restarts = n;
        self
    }

    /// The window restarts are counted in.
    pub const fn window(mut self, window: Duration) -> Restart {
        self.window = window;
        self
    }

    /// The first wait, and the longest.
    pub const fn backoff(mut self, first: Duration, max: Duration) -> Restart {
        self.backoff = first;
        self.max_backoff = max;
        self
    }

    /// Whether it restarts at all.
    pub fn restarts(&self) -> bool {
        self.policy == RestartPolicy::OnFailure
    }

    /// Checks the values: `max_restarts` at most [`MAX_RESTARTS`]; a window
    /// above zero; the backoff at most `max_backoff`; both durations at most
    /// [`MAX_RESTART_DURATION`].
    ///
    /// # Errors
    ///
    /// [`PolicyError::Restart`] saying which value is out of range.
    pub fn check(&self) -> Result<(), PolicyError> {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        let bad = |why: String| Err(PolicyError::Restart(why));
        if self.max_restarts > MAX_RESTARTS {
            return bad(format!(
                "max-restarts {} is above {MAX_RESTARTS}",
                self.max_restarts
            ));
        }
        if self.window.is_zero() || self.window > MAX_RESTART_DURATION {
            return bad(format!(
                "restart-window {} is not within (0, {}]",
                show(self.window),
                show(MAX_RESTART_DURATION)
            ));
        }
        if self.max_backoff > MAX_RESTART_DURATION {
            return bad(format!(
                "max-backoff {} is above {}",
                show(self.max_backoff),
                show(MAX_RESTART_DURATION)
            ));
        }
        if self.backoff > self.max_backoff {
            return bad(format!(
                "backoff {} is above max-backoff {}",
                show(self.backoff),
                show(self.max_backoff)
            ));
        }
        Ok(())
    }
}

/// Makes a native actor (for its first instance and each restart).
pub(crate) type Factory = Box<dyn FnMut() -> Box<dyn NativeActor> + Send>;

/// What a supervised actor is made from again.
pub(crate) enum Maker {
    Wasm {
        component: Component,
        config: Vec<u8>,
    },
    Native(Factory),
}

/// How an actor being spawned is supervised: by a policy of its own, or by
/// the group (its index on the shard) it joins.
pub(crate) enum Plan {
    Own(Restart),
    Group(u32),
}

/// How a supervised actor's failures are judged: by its own policy, or by its
/// group's (the index of the group on the actor's shard); or not at all (a
/// component that is not supervised, kept for what it is made from, which an
/// upgrade needs).
pub(crate) enum Judge {
    Own(Intensity),
    Group(u32),
    Unsupervised,
}

/// What an actor is made from, and who judges its failures (every component
/// actor has one; a native actor only if it is supervised).
pub(crate) struct Supervisor {
    pub(crate) maker: Maker,
    pub(crate) judge: Judge,
}

/// A restart policy and the failures within its window.
pub(crate) struct Intensity {
    pub(crate) restart: Restart,
    /// When its failures within the window happened (oldest first).
    recent: VecDeque<u64>,
}

/// What a failure leads to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Restart once this many nanoseconds have passed.
    RestartAfter(u64),
    /// The intensity is exceeded: the actor (or group) ends for good.
    GiveUp,
}

impl Intensity {
    pub(crate) fn new(restart: Restart) -> Intensity {
        Intensity {
            restart,
            recent: VecDeque::new(),
        }
    }

    /// Records a failure at `now` (nanoseconds) and says what follows.
    pub(crate) fn failed(&mut self, now: u64) -> Verdict {
        let r = &self.restart;
        let window = u64::try_from(r.window.as_nanos()).unwrap_or(u64::MAX);
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        let streak = self.recent.len();
        if streak > r.max_restarts as usize {
            return Verdict::GiveUp;
        }
        if streak == 1 {
            return Verdict::RestartAfter(0);
        }
        let first = u64::try_from(r.backoff.as_nanos()).unwrap_or(u64::MAX);
        let max = u64::try_from(r.max_backoff.as_nanos()).unwrap_or(u64::MAX);
        let doubled = first.saturating_mul(1u64 << (streak - 2).min(63));
        Verdict::RestartAfter(doubled.min(max))
    }

    /// Forgets the failures seen: a group that gave up starts over with the
    /// members spawned into it later.
    pub(crate) fn clear(&mut self) {
        self.recent.clear();
    }

    /// Says that the intensity was exceeded, with the last failure.
    pub(crate) fn gave_up(&self) -> String {
        let r = &self.restart;
        format!(
            "failed again after {} restart{} within {}",
            r.max_restarts,
            if r.max_restarts == 1 { "" } else { "s" },
            humantime::format_duration(r.window)
        )
    }
}

/// How a supervision group restarts its members when one fails (as OTP's
/// supervisors do). In a manifest: `"one-for-one"`, `"one-for-all"`,
/// `"rest-for-one"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Strategy {
    /// Only the member that failed (the default).
    #[default]
    OneForOne,
    /// Every member.
    OneForAll,
    /// The member that failed and every member started after it.
    RestForOne,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::OneForOne => "one-for-one",
            Strategy::OneForAll => "one-for-all",
            Strategy::RestForOne => "rest-for-one",
        })
    }
}

/// A supervision group made with [`Runtime::create_group`](crate::Runtime::create_group):
/// actors spawned into it ([`SpawnOptions::group`](crate::SpawnOptions::group))
/// live on its shard and are restarted together by its strategy, within its
/// intensity; beyond that, every member ends.
///
/// The group lasts while a handle to it (this value, or a clone) or a member
/// does: once both are gone, its shard reclaims it.
#[derive(Clone)]
pub struct Group {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) shard: usize,
    pub(crate) index: u32,
    /// The runtime it belongs to (its directory's id).
    pub(crate) runtime: u64,
    /// Dropped with the last handle: tells the shard the group may go.
    pub(crate) _handles: std::sync::Arc<GroupHandles>,
}

/// The handles of a group, counted by the `Arc` that holds this: when the last
/// goes, the group's shard hears (and reclaims the group once it has no
/// members either).
pub(crate) struct GroupHandles {
    pub(crate) shared: std::sync::Weak<crate::shared::Shared>,
    pub(crate) shard: usize,
    pub(crate) index: u32,
}

impl Drop for GroupHandles {
    fn drop(&mut self) {
        // A runtime gone already has nothing to reclaim.
        if let Some(shared) = self.shared.upgrade() {
            shared.shards[self.shard]
                .command(crate::shared::Command::DropGroup { index: self.index });
        }
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("shard", &self.shard)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Two handles are equal when they are handles of the same group.
impl PartialEq for Group {
    fn eq(&self, other: &Group) -> bool {
        (self.runtime, self.shard, self.index) == (other.runtime, other.shard, other.index)
    }
}

impl Eq for Group {}

impl std::hash::Hash for Group {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.runtime, self.shard, self.index).hash(state);
    }
}

impl Group {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shard its members live on.
    pub fn shard(&self) -> usize {
        self.shard
    }
}

/// A group as its shard keeps it.
pub(crate) struct GroupState {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) strategy: Strategy,
    pub(crate) intensity: Intensity,
    /// Its live members, in the order they were spawned: (slot, generation).
    pub(crate) members: Vec<(u32, u32)>,
    /// Whether a [`Group`] handle to it may still exist (until the last one's
    /// drop is heard).
    pub(crate) held: bool,
    /// Reclaimed (no handle, no member): its index waits for the next group
    /// made on the shard.
    pub(crate) reclaimed: bool,
}

impl GroupState {
    /// The members a failure of `slot` restarts, in spawn order.
    pub(crate) fn affected(&self, slot: u32) -> Vec<(u32, u32)> {
        match self.strategy {
            Strategy::OneForAll => self.members.clone(),
            Strategy::RestForOne => {
                let at = self
                    .members
                    .iter()
                    .position(|&(s, _)| s == slot)
                    .unwrap_or(self.members.len());
                self.members[at..].to_vec()
            }
            _ => self
                .members
                .iter()
                .filter(|&&(s, _)| s == slot)
                .copied()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor(restart: Restart) -> Intensity {
        Intensity::new(restart)
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn the_first_restart_is_immediate_then_the_backoff_doubles_up_to_its_cap() {
        let mut s = supervisor(
            Restart::on_failure()
                .max_restarts(6)
                .window(Duration::from_secs(10))
                .backoff(Duration::from_millis(10), Duration::from_millis(35)),
        );
        let verdicts: Vec<_> = (0..7).map(|i| s.failed(i * MS)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::RestartAfter(0),
                Verdict::RestartAfter(10 * MS),
                Verdict::RestartAfter(20 * MS),
                Verdict::RestartAfter(35 * MS),
                Verdict::RestartAfter(35 * MS),
                Verdict::RestartAfter(35 * MS),
                Verdict::GiveUp,
            ]
        );
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut s = supervisor(
            Restart::on_failure()
                .max_restarts(2)
                .window(Duration::from_millis(100)),
        );
        assert_eq!(s.failed(0), Verdict::RestartAfter(0));
        assert_eq!(s.failed(50 * MS), Verdict::RestartAfter(10 * MS));
        // The first has left the window: two within it, still allowed.
        assert_eq!(s.failed(120 * MS), Verdict::RestartAfter(10 * MS));
        assert_eq!(s.failed(130 * MS), Verdict::GiveUp);
        // A quiet window later, a failure restarts at once again.
        let mut s = supervisor(Restart::on_failure().window(Duration::from_millis(100)));
        s.failed(0);
        assert_eq!(s.failed(500 * MS), Verdict::RestartAfter(0));
    }

    #[test]
    fn zero_restarts_gives_up_at_the_first_failure() {
        let mut s = supervisor(Restart::on_failure().max_restarts(0));
        assert_eq!(s.failed(0), Verdict::GiveUp);
    }

    #[test]
    fn a_strategy_picks_the_members_a_failure_restarts() {
        let mut g = GroupState {
            name: "g".into(),
            strategy: Strategy::OneForOne,
            intensity: Intensity::new(Restart::on_failure()),
            members: vec![(4, 1), (2, 1), (7, 3)],
            held: true,
            reclaimed: false,
        };
        assert_eq!(g.affected(2), [(2, 1)]);
        g.strategy = Strategy::RestForOne;
        assert_eq!(g.affected(2), [(2, 1), (7, 3)]);
        assert_eq!(g.affected(4), [(4, 1), (2, 1), (7, 3)]);
        g.strategy = Strategy::OneForAll;
        assert_eq!(g.affected(7), [(4, 1), (2, 1), (7, 3)]);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let ok = Restart::on_failure();
        assert!(ok.check().is_ok());
        assert!(ok.max_restarts(MAX_RESTARTS + 1).check().is_err());
        assert!(ok.window(Duration::ZERO).check().is_err());
        assert!(
            ok.backoff(Duration::from_secs(2), Duration::from_secs(1))
                .check()
                .is_err()
        );
        assert!(
            ok.backoff(Duration::ZERO, MAX_RESTART_DURATION * 2)
                .check()
                .is_err()
        );
    }
}
