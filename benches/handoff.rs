//! The cross-shard handoff against its floor, measured in one run: a bare
//! two-thread ping-pong over the runtime's own ring type (`internals::Ring`,
//! the lock-free queue between shards, an envelope built as a send builds
//! it), each thread spinning on its ring, beside the runtime's sequential
//! request round trips between native actors on one shard (`request`) and
//! on two (`request-cross`). Per round trip; a bare round trip is two
//! handoffs.
//!
//! And the streaming floor: one thread pushing 64-byte envelopes into a
//! ring as fast as it has room, another popping them (per message), beside
//! native `tell` on one shard and `tell-cross` on two (a producer→sink pair
//! per shard, each sink on the other shard; per message over both shards).
//!
//! ```sh
//! RUST_LIB_BACKTRACE=0 cargo bench --bench handoff
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wasmshard::bench::{Actors, Params, System, Workload};
use wasmshard::internals::Ring;

/// One round trip: `there` carries the message to the other thread, which
/// hands it back on `back`.
fn bare_round_trips(iters: u64) -> Duration {
    let there = Arc::new(Ring::new(4096));
    let back = Arc::new(Ring::new(4096));
    let done = Arc::new(AtomicBool::new(false));
    let echo = {
        let (there, back, done) = (there.clone(), back.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                // SAFETY: this thread is `there`'s only consumer and
                // `back`'s only producer.
                if let Some(n) = unsafe { there.pop() } {
                    // SAFETY: as above.
                    assert!(unsafe { back.push(&[7; 64][..n]) });
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    // Warm: the other thread is running and both rings' cells are touched.
    // This thread is `there`'s only producer and `back`'s only consumer.
    let round_trip = || {
        // SAFETY: the only producer (above).
        assert!(unsafe { there.push(&[7; 64]) });
        // SAFETY: the only consumer (above).
        while unsafe { back.pop() }.is_none() {
            std::hint::spin_loop();
        }
    };
    for _ in 0..1000 {
        round_trip();
    }
    let start = Instant::now();
    for _ in 0..iters {
        round_trip();
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    echo.join().expect("the echo thread");
    elapsed
}

/// `messages` envelopes streamed from one thread to another through a ring:
/// the time until the last is popped.
fn bare_stream(messages: u64) -> Duration {
    let ring = Arc::new(Ring::new(4096));
    let sink = {
        let ring = ring.clone();
        std::thread::spawn(move || {
            let mut got = 0;
            while got < messages {
                // SAFETY: this thread is the ring's only consumer.
                if unsafe { ring.pop() }.is_some() {
                    got += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let start = Instant::now();
    let mut sent = 0;
    while sent < messages {
        // SAFETY: this thread is the ring's only producer.
        if unsafe { ring.push(&[7; 64]) } {
            sent += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    sink.join().expect("the sink thread");
    start.elapsed()
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    g.bench_function("bare-ring-round-trip", |b| b.iter_custom(bare_round_trips));
    for workload in [Workload::Request, Workload::RequestCross] {
        let mut sys = System::new(workload, Actors::Native, &Params::default()).expect("system");
        sys.run(10_000).expect("warm-up");
        g.bench_function(format!("{}-native", workload.name()), |b| {
            b.iter_custom(|iters| sys.run(iters).expect("run"))
        });
        sys.shutdown();
    }
    g.bench_function("bare-ring-stream", |b| b.iter_custom(bare_stream));
    for workload in [Workload::Tell, Workload::TellCross] {
        let params = Params {
            shards: 2,
            ..Params::default()
        };
        let mut sys = System::new(workload, Actors::Native, &params).expect("system");
        sys.run(100_000).expect("warm-up");
        g.bench_function(format!("{}-native", workload.name()), |b| {
            b.iter_custom(|iters| sys.run(iters).expect("run"))
        });
        sys.shutdown();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = handoff
}
criterion_main!(benches);
