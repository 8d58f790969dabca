//! How long a shard that ran out of work spins before it parks.
//!
//! A parked shard costs whoever wakes it an `eventfd` write and itself a return
//! from `poll`: together several microseconds, against well under one for work
//! that a spinning shard finds. Spinning costs the core. The spin therefore
//! starts at `park_spin` and adapts between it and `park_spin_max`:
//!
//! - work that woke the shard `gap` after it ran out (spin and sleep together),
//!   with `gap` within `park_spin_max`: the next spin lasts one and a half
//!   times that gap (at most `park_spin_max`; never shorter than it was), so
//!   work arriving at that cadence is found spinning;
//! - a sleep that ended with no work at its deadline or time-out, or work
//!   after a gap longer than `park_spin_max`: the spin halves, down to
//!   `park_spin`;
//! - work found while spinning, or a wake-up for no work before the time-out
//!   (stale), leaves the spin as it is;
//! - a park that is a back-off (only overflow left, or a failed shard's loop)
//!   spins `park_spin` at most and teaches nothing.
//!
//! This removes the bistability of a fixed spin: a token passed around a ring
//! of shards stays fast only while one lap takes less than the spin, and once a
//! lap outlasts it every hop pays a wake-up, the lap grows by that much, and the
//! ring stays slow. With the adaptive spin, one slow lap teaches every shard the
//! lap's length, and the next is fast again. An idle shard still parks (after
//! at most `park_spin_max`), so an idle runtime uses no CPU; a shard that sees
//! work at a cadence shorter than `park_spin_max` keeps its core busy.

use std::time::Duration;

/// The spin of one shard: between `base` and `max`, learnt from its wake-ups.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spin {
    base: Duration,
    max: Duration,
    now: Duration,
}

impl Spin {
    /// A spin of `base`, adapting up to `max` (no adaptation when `max` is not
    /// above `base`).
    pub(crate) fn new(base: Duration, max: Duration) -> Spin {
        Spin {
            base,
            max: max.max(base),
            now: base,
        }
    }

    /// How long to spin now.
    pub(crate) fn current(&self) -> Duration {
        self.now
    }

    /// The spin it started with (`park_spin`), for parks that are a back-off
    /// rather than a wait for work.
    pub(crate) fn base(&self) -> Duration {
        self.base
    }

    /// The shard parked and woke: for work that arrived `gap` after it ran out
    /// of work (`Some`), or for none at its deadline or time-out (`None`). A
    /// wake-up for no work before the time-out (a stale wake from a sender that
    /// saw the shard about to park) teaches nothing: the caller does not
    /// report it.
    pub(crate) fn woke(&mut self, gap: Option<Duration>) {
        self.now = match gap {
            Some(gap) if gap <= self.max => (gap + gap / 2).clamp(self.now, self.max),
            _ => (self.now / 2).max(self.base),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn a_wake_within_the_cap_teaches_the_gap() {
        let mut s = Spin::new(50 * US, 1000 * US);
        assert_eq!(s.current(), 50 * US);
        // A ring's lap of 200 µs while parked: the next spin covers it.
        s.woke(Some(200 * US));
        assert_eq!(s.current(), 300 * US);
        // A shorter gap (a spin cut short by a deadline) does not shorten it:
        // only sleeps that find nothing, or find it too late, do.
        s.woke(Some(10 * US));
        assert_eq!(s.current(), 300 * US);
    }

    #[test]
    fn long_gaps_and_time_outs_halve_down_to_the_base() {
        let mut s = Spin::new(50 * US, 1000 * US);
        s.woke(Some(900 * US));
        assert_eq!(s.current(), 1000 * US);
        s.woke(Some(5000 * US));
        assert_eq!(s.current(), 500 * US);
        s.woke(None);
        assert_eq!(s.current(), 250 * US);
        for _ in 0..10 {
            s.woke(None);
        }
        assert_eq!(s.current(), 50 * US);
    }

    #[test]
    fn no_cap_above_the_base_is_a_fixed_spin() {
        let mut s = Spin::new(50 * US, 50 * US);
        s.woke(Some(40 * US));
        assert_eq!(s.current(), 50 * US);
        s.woke(None);
        assert_eq!(s.current(), 50 * US);
        let mut zero = Spin::new(Duration::ZERO, Duration::ZERO);
        zero.woke(Some(10 * US));
        assert_eq!(zero.current(), Duration::ZERO);
        // A cap below the base is the base.
        let s = Spin::new(50 * US, 10 * US);
        assert_eq!(s.current(), 50 * US);
    }
}
