//! The threaded driver: one OS thread per shard, plus the epoch ticker.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::Engine;

use crate::config::Config;
use crate::error::BuildError;
use crate::shard::{Shard, ShardExit};
use crate::shared::{Command, Shared};
use crate::stats::DeadLetter;

pub(crate) struct Threaded {
    threads: Vec<JoinHandle<ShardExit>>,
    ticker: Option<JoinHandle<()>>,
    /// How long the host spins for a shard's answer before it blocks.
    host_spin: Duration,
}

impl Threaded {
    /// Starts a thread per shard, and the epoch ticker if CPU budgets are on.
    pub(crate) fn start(
        shards: Vec<Shard>,
        shared: &Arc<Shared>,
        engine: &Engine,
        config: &Config,
    ) -> Result<Threaded, BuildError> {
        let (s, tick) = (shared.clone(), config.epoch_tick);
        // The engine's epoch matters only with CPU budgets; the ticks always do.
        let engine = config.cpu_budget.map(|_| engine.clone());
        let ticker = std::thread::Builder::new()
            .name("wasmshard-epoch".into())
            .spawn(move || ticker(&s, engine.as_ref(), tick))
            .map_err(|source| BuildError::System {
                what: "the epoch ticker thread".into(),
                source,
            })?;
        shared.set_ticker(ticker.thread().clone());
        let mut threads = Vec::with_capacity(shards.len());
        for (id, shard) in shards.into_iter().enumerate() {
            let spawn = || {
                std::thread::Builder::new()
                    .name(format!("wasmshard-{id}"))
                    .spawn(move || shard.run())
            };
            #[cfg(feature = "testing")]
            let spawn = || match config.fail_shard_thread {
                Some(at) if at == id => Err(std::io::Error::other("a failure injected by a test")),
                _ => spawn(),
            };
            let started = spawn();
            match started {
                Ok(t) => threads.push(t),
                Err(source) => {
                    // The shards started so far and the ticker end (they
                    // waited for ever, the ticker waking every tick, since the
                    // shards that never started never count themselves idle).
                    phased_shutdown(shared, threads, Some(ticker));
                    return Err(BuildError::System {
                        what: format!("shard thread {id}"),
                        source,
                    });
                }
            }
        }
        let host_spin = if config.spare_core() {
            config.park_spin
        } else {
            Duration::ZERO
        };
        Ok(Threaded {
            threads,
            ticker: Some(ticker),
            host_spin,
        })
    }

    /// Waits for a shard's answer to a spawn or stop. Where the host has a core
    /// of its own (fewer shards than cores), it spins up to `park_spin` first, as
    /// idle shards do: the sleep and wake-up of a blocking receive cost several
    /// times the spawn itself. Without a spare core, spinning would take the
    /// core the answering shard needs, so it blocks at once.
    pub(crate) fn answer<T>(&self, answer: &Receiver<T>) -> Option<T> {
        if !self.host_spin.is_zero() {
            let until = Instant::now() + self.host_spin;
            loop {
                match answer.try_recv() {
                    Ok(v) => return Some(v),
                    Err(TryRecvError::Disconnected) => return None,
                    Err(TryRecvError::Empty) if Instant::now() >= until => break,
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                }
            }
        }
        answer.recv().ok()
    }

    /// Blocks until nothing is in flight or `deadline` (and, if it woke
    /// shards to take the placements they held, up to `PLACEMENT_GRACE`
    /// past it).
    pub(crate) fn wait_idle(&self, shared: &Shared, deadline: Instant) -> bool {
        shared.watch_idle();
        // Whether this wait woke a shard to take the placements it held, and
        // when the grace that gives them ends (set once past the deadline).
        let (mut woke, mut grace) = (false, None::<Instant>);
        let idle = loop {
            if shared.is_idle() {
                break true;
            }
            woke |= shared.wake_holding();
            let now = Instant::now();
            if now >= deadline {
                // Placements a parked shard held (queued without waking it)
                // are not work in flight: a wait that woke shards to take
                // them goes on up to `PLACEMENT_GRACE` past its deadline
                // (they take them and park again within microseconds, and a
                // shard that parks unparks this thread).
                let end = *grace.get_or_insert(now + PLACEMENT_GRACE);
                if !woke || now >= end {
                    break false;
                }
                std::thread::park_timeout((end - now).min(Duration::from_millis(1)));
                continue;
            }
            std::thread::park_timeout((deadline - now).min(Duration::from_millis(5)));
        };
        shared.unwatch_idle();
        idle
    }

    /// Shutdown after the drain, in three phases, each finished on every shard
    /// before the next begins: stop every actor; seal (push nothing more into any
    /// ring, so the overflow becomes dead letters); exit (drain what is left, end
    /// the thread). Then the ticker ends. Returns the dead letters the shards kept.
    pub(crate) fn shutdown(&mut self, shared: &Shared) -> Vec<DeadLetter> {
        let threads = std::mem::take(&mut self.threads);
        phased_shutdown(shared, threads, self.ticker.take())
    }

    /// Shutdown from one of the runtime's own shard threads (an actor dropped the
    /// last handle to its runtime): that thread cannot wait for itself, so a
    /// thread of its own runs the same phased shutdown once the actor's handler
    /// has returned, and logs what was left undelivered (the report has nobody
    /// to go to). Nothing is lost uncounted: the phases are the same.
    pub(crate) fn shutdown_detached(
        &mut self,
        shared: &Arc<Shared>,
        durable: Option<Arc<crate::durable::Durable>>,
    ) {
        let threads = std::mem::take(&mut self.threads);
        let ticker = self.ticker.take();
        let s = shared.clone();
        let run = move || {
            let dead_letters = phased_shutdown(&s, threads, ticker);
            // Every actor is stopped: what they stored is committed, and
            // the store (its file, its writer thread) let go.
            if let Some(durable) = durable {
                durable.close();
            }
            let counted: u64 = s
                .shards
                .iter()
                .enumerate()
                .map(|(i, s)| s.counters.snapshot(i).dead_letters)
                .sum();
            log::warn!(
                target: "wasmshard",
                "wasmshard: shut down from inside one of its actors (it dropped the last \
                 handle to its runtime): {counted} dead letters{}",
                dead_letters
                    .first()
                    .map(|d| format!(", the first to {}", d.to))
                    .unwrap_or_default()
            );
        };
        let started = std::thread::Builder::new()
            .name("wasmshard-shutdown".into())
            .spawn(run);
        if let Err(e) = started {
            // No thread for it: the shards are told to stop and end without
            // waiting (what is in flight between them may go uncounted).
            log::error!("wasmshard: no thread for a detached shutdown ({e}); shards told to end");
            for shard in shared.shards.iter() {
                let (reply, _) = sync_channel(1);
                shard.command(Command::StopAll { reply });
                let (reply, _) = sync_channel(1);
                shard.command(Command::Seal { reply });
                shard.command(Command::Exit);
            }
            shared.stop_ticker();
        }
    }
}

/// The three shutdown phases over `threads` (see [`Threaded::shutdown`]); joins
/// them and the ticker, and returns the dead letters the shards kept.
fn phased_shutdown(
    shared: &Shared,
    threads: Vec<JoinHandle<ShardExit>>,
    ticker: Option<JoinHandle<()>>,
) -> Vec<DeadLetter> {
    let shards = &shared.shards[..threads.len()];
    for phase in [Phase::StopAll, Phase::Seal] {
        let answers: Vec<_> = shards
            .iter()
            .map(|shard| {
                let (reply, answer) = sync_channel(1);
                shard.command(match phase {
                    Phase::StopAll => Command::StopAll { reply },
                    Phase::Seal => Command::Seal { reply },
                });
                answer
            })
            .collect();
        for a in answers {
            // A shard whose thread is gone drops the command: no answer.
            let _ = a.recv();
        }
    }
    for shard in shards {
        shard.command(Command::Exit);
    }
    let mut dead_letters = Vec::new();
    for t in threads {
        match t.join() {
            Ok(exit) => dead_letters.extend(exit.dead_letters),
            Err(_) => log::error!("wasmshard: a shard thread panicked"),
        }
    }
    shared.stop_ticker();
    if let Some(t) = ticker {
        let _ = t.join();
    }
    dead_letters
}

#[derive(Clone, Copy)]
enum Phase {
    StopAll,
    Seal,
}

/// How long `wait_idle`, past its deadline, waits for shards it woke to take
/// the placements they held.
const PLACEMENT_GRACE: Duration = Duration::from_millis(100);

/// The epoch ticker: every tick while any shard is busy, counts a tick (the coarse
/// clock that bounds a shard's pass) and advances the engine's epoch (which
/// enforces CPU budgets, when they are on); sleeps while all shards are parked, so
/// an idle runtime uses no CPU.
fn ticker(shared: &Shared, engine: Option<&Engine>, tick: Duration) {
    while !shared.ticker_stopped() {
        if shared.all_parked() {
            shared.ticker_sleep();
            continue;
        }
        // Woken early only at shutdown.
        std::thread::park_timeout(tick);
        shared.tick();
        if let Some(engine) = engine {
            engine.increment_epoch();
        }
    }
}
