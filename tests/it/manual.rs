//! Manual runtimes: no threads, shards stepped on the calling thread.

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use wasmshard::{Address, Context, RequestError, Runtime, SpawnOptions};

use crate::support::*;

/// Nothing runs until the runtime is stepped, and then on the calling thread.
#[test]
fn nothing_runs_until_stepped_and_then_on_the_calling_thread() {
    let rt = builder(1).build_manual().unwrap();
    assert!(rt.is_manual());
    let echo = load(&rt, "echo.wat");
    let threads: Arc<Mutex<Vec<ThreadId>>> = Arc::default();
    let seen = threads.clone();
    rt.spawn_native(
        "sink",
        None,
        move |_: &mut Context<'_>, _: Address, payload: &[u8]| {
            assert_eq!(payload, b"hello");
            seen.lock().unwrap().push(std::thread::current().id());
        },
    )
    .unwrap();
    // Spawn answers at once: `init` ran during the call.
    let echo = rt
        .spawn(&echo, SpawnOptions::new("echo").config("sink"))
        .unwrap();
    rt.send(echo, b"hello").unwrap();
    rt.send(echo, b"hello").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(threads.lock().unwrap().is_empty(), "ran without a step");
    assert_eq!(rt.stats().actor("echo").unwrap().handled, 0);

    let passes = rt.run_until_stalled();
    assert!(passes >= 1);
    assert_eq!(
        *threads.lock().unwrap(),
        vec![std::thread::current().id(); 2]
    );
    assert_eq!(rt.stats().actor("echo").unwrap().handled, 2);
    assert!(!rt.step(), "a stalled runtime has nothing to do");
    assert_eq!(rt.run_until_stalled(), 0);
    let report = rt.shutdown();
    assert!(report.drained);
    assert_eq!(report.dead_letter_count, 0);
}

/// The order of turns depends only on the inputs: two runs of the same sends give
/// the same sequence at a receiver fed by two producers on different shards, in
/// the same number of passes.
#[test]
fn the_same_inputs_give_the_same_run() {
    fn run() -> (Vec<(Address, Vec<u8>)>, u64) {
        let rt = builder(2)
            .mailbox_capacity(16)
            .batch(4)
            .build_manual()
            .unwrap();
        let producer = load(&rt, "producer.wat");
        let (sink, inbox) = probe(&rt, "sink", 0);
        let a = rt
            .spawn(&producer, SpawnOptions::new("a").config("sink").shard(0))
            .unwrap();
        let b = rt
            .spawn(&producer, SpawnOptions::new("b").config("sink").shard(1))
            .unwrap();
        relay(&rt, sink, a, &produce(200, 1, 8));
        relay(&rt, sink, b, &produce(200, 1, 8));
        let passes = rt.run_until_stalled();
        let seen = inbox.lock().unwrap().clone();
        (seen, passes)
    }
    let (first, passes) = run();
    // 400 sequenced messages (8 bytes; the producers' reports, 12 bytes, may meet a
    // full mailbox and are not retried).
    let sequenced: Vec<_> = first.iter().filter(|(_, p)| p.len() == 8).collect();
    assert_eq!(sequenced.len(), 400);
    let from_a = sequenced.iter().filter(|(f, _)| f.shard() == 0).count();
    assert_eq!(from_a, 200);
    for _ in 0..3 {
        assert_eq!(run(), (first.clone(), passes));
    }
}

/// A host request ends during a step; `try_get` sees it without blocking.
#[test]
fn a_host_request_is_answered_by_stepping() {
    let rt = builder(2).build_manual().unwrap();
    let responder = load(&rt, "responder.wat");
    let r = rt
        .spawn(&responder, SpawnOptions::new("responder").shard(1))
        .unwrap();
    let reply = rt.request(r, b"ping", Duration::from_secs(60)).unwrap();
    assert_eq!(reply.try_get(), None);
    rt.run_until_stalled();
    let answer = reply.try_get().expect("answered").unwrap();
    assert!(!answer.is_empty());
    assert_eq!(rt.stats().shards[1].requests.answered, 1);
}

/// Open requests keep `wait_idle` stepping until their timeouts fire; a stalled
/// runtime leaves them open.
#[test]
fn timeouts_fire_while_waiting_for_idle() {
    let rt = builder(1).build_manual().unwrap();
    let (silent, _) = probe(&rt, "silent", 0);
    let reply = rt.request(silent, b"?", Duration::from_millis(30)).unwrap();
    rt.run_until_stalled();
    assert_eq!(reply.try_get(), None);
    assert_eq!(rt.stats().shards[0].requests.open, 1);
    assert!(rt.wait_idle(IDLE));
    assert_eq!(reply.try_get(), Some(Err(RequestError::Timeout)));
    assert_eq!(rt.stats().shards[0].requests.timed_out, 1);
}

/// Shutting a manual runtime down stops its actors and reports what was left.
#[test]
fn shutdown_reports_undelivered_messages() {
    let rt = builder(1)
        .drain_timeout(Duration::ZERO)
        .build_manual()
        .unwrap();
    let counter = load(&rt, "counter.wat");
    let c = rt.spawn(&counter, SpawnOptions::new("counter")).unwrap();
    rt.send(c, b"one").unwrap();
    // Shutdown drains first: the message is handled, not lost.
    let report = rt.shutdown();
    assert!(report.drained);
    assert_eq!(report.dead_letter_count, 0);
    assert_eq!(report.stats.actor("counter").unwrap().handled, 1);
}

#[test]
#[should_panic(expected = "build_manual")]
fn stepping_a_threaded_runtime_panics() {
    let rt: Runtime = builder(1).build().unwrap();
    rt.step();
}
