//! The operating system: parking a shard, waking it, pinning it, reading the clock.
//!
//! Contract: [`Parker::park`] blocks the calling thread until the paired
//! [`mio::Waker`] is woken or the timeout passes (spurious returns are allowed);
//! waking is one `eventfd` write; [`Clock::now_ns`] is monotonic and reads the
//! clock through the vDSO (no syscall); nothing here allocates after construction.

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

const WAKE: Token = Token(0);

pub(crate) struct Parker {
    poll: Poll,
    events: Events,
}

/// A parker for a shard and the waker other threads use to rouse it.
pub(crate) fn parker() -> io::Result<(Parker, Waker)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKE)?;
    Ok((
        Parker {
            poll,
            events: Events::with_capacity(8),
        },
        waker,
    ))
}

impl Parker {
    pub(crate) fn park(&mut self, timeout: Option<Duration>) {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // A failing poll would turn the shard into a spinner; back off instead.
                log::error!("wasmshard: poll failed: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Pins the calling thread to the `core % n`-th of the `n` cores it may run on.
/// Returns whether it took effect.
pub(crate) fn pin_current_thread(core: usize) -> bool {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => core_affinity::set_for_current(ids[core % ids.len()]),
        _ => false,
    }
}

/// The runtime's monotonic clock: nanoseconds since it was created.
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the clock was created (saturating after 584 years).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The process's memory mappings and the kernel's limit on them
/// (`vm.max_map_count`), on Linux; read from `/proc` (only when a spawn has
/// failed for want of memory: it reads a line per mapping).
pub(crate) fn memory_mappings() -> Option<(u64, u64)> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let maps = std::fs::read("/proc/self/maps").ok()?;
    let count = maps.iter().filter(|&&b| b == b'\n').count() as u64;
    Some((count, limit))
}

/// Gives the allocator's free pages back to the system (glibc's
/// `malloc_trim`, which returns every whole free page of every arena; a
/// no-op elsewhere). Called by an idle shard after many actors stopped: what
/// they held was freed, but freed memory in the middle of a heap stays
/// resident until trimmed.
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` takes no pointers and may be called from any
        // thread at any time; glibc locks each arena while trimming it.
        unsafe {
            malloc_trim(0);
        }
    }
}
