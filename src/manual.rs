//! The manual driver: no threads; the shards run one pass at a time on the thread
//! that steps them, in shard order, so a run depends only on its inputs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::directory::Directory;
use crate::panics;
use crate::shard::{self, Shard};
use crate::shared::lock;
use crate::stats::DeadLetter;

pub(crate) struct Manual {
    /// The runtime's id (for `shard::on_shard_of`).
    runtime: u64,
    /// Empty once the runtime has shut down.
    shards: Mutex<Vec<Shard>>,
}

impl Manual {
    pub(crate) fn new(runtime: u64, shards: Vec<Shard>) -> Manual {
        Manual {
            runtime,
            shards: Mutex::new(shards),
        }
    }

    /// One pass of every shard that has something to do; whether any had.
    pub(crate) fn step(&self) -> bool {
        pass_all(self.runtime, &mut lock(&self.shards))
    }

    /// Runs the control commands waiting for `shard` now (spawn and stop then
    /// answer at once: no thread would take them). They run as the shard, so
    /// what they run (a native actor's `Drop` at a stop) that calls back into the
    /// runtime is refused as from a handler, rather than locking the shards
    /// again.
    pub(crate) fn take_commands(&self, shard: usize) {
        if let Some(s) = lock(&self.shards).get_mut(shard) {
            shard::as_shard(self.runtime, || {
                // `Exit` is never sent to a manual runtime's shards.
                if let Some(cause) = panics::quietly(|| {
                    s.take_commands();
                }) {
                    s.crash(&cause);
                }
            });
        }
    }

    /// Steps until nothing is runnable and no request is open, or `deadline`.
    pub(crate) fn run_until_idle(&self, directory: &Directory, deadline: Instant) -> bool {
        loop {
            let mut shards = lock(&self.shards);
            while pass_all(self.runtime, &mut shards) {
                // A system that never runs out of work is not idle by the deadline.
                if Instant::now() >= deadline && shards.iter_mut().any(|s| s.has_work()) {
                    return false;
                }
            }
            if shards
                .iter_mut()
                .all(|s| s.open_requests() == 0 && !s.restarting())
            {
                return true;
            }
            let next = shards.iter_mut().filter_map(|s| s.next_deadline()).min();
            drop(shards);
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Only timeouts are left (or sends from other threads): sleep toward the
            // first deadline, looking again at least every millisecond.
            let until_next = next.map_or(Duration::MAX, |d| {
                Duration::from_nanos(d.saturating_sub(directory.now_ns()))
            });
            std::thread::sleep(until_next.min(Duration::from_millis(1)).min(deadline - now));
        }
    }

    /// Shutdown after the drain, in the threaded runtime's three phases: stop
    /// every actor on every shard, seal every shard, then drain what is left.
    /// Returns the dead letters the shards kept.
    ///
    /// Each runs as its shard (as on a threaded runtime, where the shard's
    /// thread runs it), so a native actor's `Drop` that calls back into the
    /// runtime is refused as from a handler, rather than waiting for what
    /// only the end of this shutdown would bring.
    pub(crate) fn shutdown(&self) -> Vec<DeadLetter> {
        let runtime = self.runtime;
        let mut shards = std::mem::take(&mut *lock(&self.shards));
        for shard in shards.iter_mut() {
            shard::as_shard(runtime, || shard.stop_all());
        }
        for shard in shards.iter_mut() {
            shard::as_shard(runtime, || shard.seal());
        }
        let mut dead_letters = Vec::new();
        for shard in shards {
            dead_letters.extend(shard::as_shard(runtime, || shard.exit()).dead_letters);
        }
        dead_letters
    }
}

/// One pass of every shard that has something to do; whether any had.
/// A panic of a pass (a defect) fails that shard's actors, as on a threaded
/// runtime, rather than reaching the caller.
fn pass_all(runtime: u64, shards: &mut [Shard]) -> bool {
    let mut worked = false;
    for shard in shards.iter_mut() {
        if shard.has_work() {
            shard::as_shard(runtime, || {
                if let Some(cause) = panics::quietly(|| {
                    shard.pass();
                }) {
                    shard.crash(&cause);
                }
            });
            worked = true;
        }
    }
    worked
}
