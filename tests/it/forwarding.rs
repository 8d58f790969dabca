//! What a native actor that forwards messages outside the runtime needs: a
//! handle for another thread to send with, the time a request it holds has
//! left, and ending a held request with an error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmshard::{Address, Context, NativeActor, RequestError, SendError};

use crate::support::*;

/// Holds every request it gets; a tell `fail <n>` ends the held ones with
/// error `n` (0: timeout, 1: target-failed, 2: target-stopped, 3:
/// unknown-target), a tell `answer` answers them. Records what
/// `remaining` said in each handler, and what `fail` returned.
#[derive(Default)]
struct Holder {
    held: Vec<u64>,
    remaining: Arc<Mutex<Vec<Option<Duration>>>>,
    results: Arc<Mutex<Vec<Result<(), SendError>>>>,
}

impl NativeActor for Holder {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        self.remaining.lock().unwrap().push(ctx.remaining());
        let held = std::mem::take(&mut self.held);
        for id in held {
            let result = match payload {
                b"answer" => ctx.respond(id, b"late"),
                [b'f', b'a', b'i', b'l', b' ', n] => {
                    let error = [
                        RequestError::Timeout,
                        RequestError::TargetFailed,
                        RequestError::TargetStopped,
                        RequestError::UnknownTarget,
                    ][usize::from(n - b'0')];
                    let first = ctx.fail(id, error);
                    // Once ended, it cannot end again, either way.
                    let again = ctx.fail(id, error);
                    let answer = ctx.respond(id, b"x");
                    self.results.lock().unwrap().extend([again, answer]);
                    first
                }
                _ => continue,
            };
            self.results.lock().unwrap().push(result);
        }
    }

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        id: u64,
        _: &[u8],
    ) -> Option<Vec<u8>> {
        self.remaining.lock().unwrap().push(ctx.remaining());
        self.held.push(id);
        None
    }
}

/// Waits until the holder's handlers ran `n` times.
fn handled_calls(calls: &Mutex<Vec<Option<Duration>>>, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while calls.lock().unwrap().len() < n {
        assert!(std::time::Instant::now() < deadline, "the holder ran late");
        std::thread::yield_now();
    }
}

/// A held request ends with the error the holder gives it, for the host and
/// for an actor alike, exactly once; the holder cannot answer it after.
#[test]
fn a_native_actor_ends_a_request_it_holds_with_an_error() {
    let rt = builder(2).build().unwrap();
    let holder = Holder::default();
    let results = holder.results.clone();
    let calls = holder.remaining.clone();
    let at = rt.spawn_native("holder", Some(0), holder).unwrap();
    let errors = [
        RequestError::Timeout,
        RequestError::TargetFailed,
        RequestError::TargetStopped,
        RequestError::UnknownTarget,
    ];
    for (n, error) in errors.into_iter().enumerate() {
        let pending = rt.request(at, b"q", Duration::from_secs(60)).unwrap();
        handled_calls(&calls, 2 * n + 1);
        assert_eq!(pending.try_get(), None, "held, not ended");
        rt.send(at, format!("fail {n}").as_bytes()).unwrap();
        assert_eq!(
            pending.wait(Duration::from_secs(10)),
            Some(Err(error)),
            "ended with the error given"
        );
    }
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let results = results.lock().unwrap().clone();
    assert_eq!(results.len(), 12);
    for three in results.chunks(3) {
        assert_eq!(
            three,
            [
                Err(SendError::UnknownTarget),
                Err(SendError::UnknownTarget),
                Ok(())
            ],
            "a second end and an answer after it are refused"
        );
    }

    // An actor's request (on the other shard) ends the same way.
    let ended = Arc::new(Mutex::new(Vec::new()));
    let seen = ended.clone();
    type Ends = Arc<Mutex<Vec<Result<Vec<u8>, RequestError>>>>;
    struct Asker(Address, Ends);
    impl NativeActor for Asker {
        fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, _: &[u8]) {
            ctx.request(self.0, b"q", Duration::from_secs(60)).unwrap();
        }
        fn handle_response(&mut self, _: &mut Context<'_>, _: u64, r: Result<&[u8], RequestError>) {
            self.1.lock().unwrap().push(r.map(<[u8]>::to_vec));
        }
    }
    let asker = rt.spawn_native("asker", Some(1), Asker(at, seen)).unwrap();
    rt.send(asker, b"go").unwrap();
    rt.send(asker, b"go").unwrap();
    handled_calls(&calls, 10);
    rt.send(at, b"fail 2").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(10)));
    assert_eq!(
        *ended.lock().unwrap(),
        vec![
            Err(RequestError::TargetStopped),
            Err(RequestError::TargetStopped)
        ]
    );
    let report = rt.shutdown();
    assert_eq!(report.dead_letter_count, 0);
    let holder = report.stats.actors.iter().find(|a| a.name == "holder");
    assert_eq!(holder.unwrap().deferred, 0, "nothing left held");
}

/// `remaining` is the time the requester still waits, inside a request's
/// handler only; a request made on its behalf from an actor carries the
/// smaller of the two.
#[test]
fn a_native_actor_sees_how_long_its_requester_still_waits() {
    let rt = builder(2).build().unwrap();
    let holder = Holder::default();
    let remaining = holder.remaining.clone();
    let at = rt.spawn_native("holder", Some(0), holder).unwrap();
    let long = rt.request(at, b"q", Duration::from_secs(30)).unwrap();
    let short = rt.request(at, b"q", Duration::from_millis(900)).unwrap();
    rt.send(at, b"tell").unwrap();
    handled_calls(&remaining, 3);
    let seen = remaining.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let (long_left, short_left) = (seen[0].unwrap(), seen[1].unwrap());
    // The deadline is carried rounded up to the millisecond.
    let ms = Duration::from_millis(1);
    assert!(
        long_left <= Duration::from_secs(30) + ms && long_left > Duration::from_secs(20),
        "{long_left:?}"
    );
    assert!(short_left <= Duration::from_millis(901), "{short_left:?}");
    assert_eq!(seen[2], None, "a tell has no requester waiting");
    assert_eq!(
        short.wait(Duration::from_secs(10)),
        Some(Err(RequestError::Timeout))
    );
    drop(long);
    rt.shutdown();
}

/// A handle sends from a thread that does not borrow the runtime, in order
/// with itself; once shutdown begins it refuses, and every send it made that
/// returned `Ok` was handled or counted, even with shutdown racing it.
#[test]
fn a_handle_sends_from_another_thread_and_refuses_after_shutdown() {
    for round in 0..20 {
        let rt = builder(2).build().unwrap();
        let handled = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        let in_order = Arc::new(AtomicBool::new(true));
        let (h, n, o) = (handled.clone(), next.clone(), in_order.clone());
        let sink = rt
            .spawn_handler("sink", Some(round % 2), move |_, _, payload| {
                let seq = u64::from_le_bytes(payload.try_into().unwrap());
                if n.swap(seq + 1, Ordering::Relaxed) != seq {
                    o.store(false, Ordering::Relaxed);
                }
                h.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        let handle = rt.handle();
        assert_eq!(handle.lookup("sink"), Some(sink));
        assert!(handle.is_open());
        let sender = std::thread::spawn(move || {
            let mut ok = 0u64;
            let mut refused = 0u64;
            loop {
                match handle.send(sink, &ok.to_le_bytes()) {
                    Ok(()) => ok += 1,
                    Err(SendError::MailboxFull) => {
                        refused += 1;
                        std::thread::yield_now();
                    }
                    Err(SendError::ShuttingDown) => break,
                    Err(e) => panic!("unexpected refusal {e}"),
                }
            }
            assert!(!handle.is_open());
            assert_eq!(handle.send(sink, b"late"), Err(SendError::ShuttingDown));
            (ok, refused, handle)
        });
        // Let some sends land, then shut down under them.
        while handled.load(Ordering::Relaxed) < 100 {
            std::thread::yield_now();
        }
        let report = rt.shutdown_within(Duration::from_millis(round as u64 % 3));
        let (ok, _, handle) = sender.join().unwrap();
        assert_eq!(
            handled.load(Ordering::Relaxed) + report.dead_letter_count,
            ok,
            "every send that returned Ok is handled or counted (round {round})"
        );
        assert!(in_order.load(Ordering::Relaxed), "in order");
        // The handle outlives the runtime.
        assert_eq!(handle.send(sink, b"x"), Err(SendError::ShuttingDown));
        assert_eq!(handle.lookup("nobody"), None);
    }
}

/// Holds requests while `can_defer` says it may, and records what it said;
/// one it may not hold it ends with `target-failed` itself.
#[derive(Default)]
struct Careful {
    said: Arc<Mutex<Vec<bool>>>,
}

impl NativeActor for Careful {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        id: u64,
        _: &[u8],
    ) -> Option<Vec<u8>> {
        let may = ctx.can_defer();
        self.said.lock().unwrap().push(may);
        if !may {
            ctx.fail(id, RequestError::TargetFailed).unwrap();
        }
        None
    }
}

/// Asks `to` for every message it gets; keeps how each request ended.
struct Asker {
    to: Address,
    ended: Ended,
}

/// How the requests an [`Asker`] made ended, in order.
type Ended = Arc<Mutex<Vec<Result<Vec<u8>, RequestError>>>>;

impl NativeActor for Asker {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        ctx.request(self.to, payload, Duration::from_secs(600))
            .unwrap();
    }

    fn handle_response(
        &mut self,
        _: &mut Context<'_>,
        _: u64,
        response: Result<&[u8], RequestError>,
    ) {
        self.ended
            .lock()
            .unwrap()
            .push(response.map(<[u8]>::to_vec));
    }
}

/// `can_defer` says whether an actor may hold one more request: yes below
/// `max_open_requests`, no at it.
#[test]
fn a_native_actor_knows_whether_it_may_hold_one_more_request() {
    let rt = builder(2).max_open_requests(2).build().unwrap();
    let careful = Careful::default();
    let said = careful.said.clone();
    let careful = rt.spawn_native("careful", Some(0), careful).unwrap();
    let held: Vec<_> = (0..2)
        .map(|_| rt.request(careful, b"q", Duration::from_secs(600)).unwrap())
        .collect();
    let ended = Arc::new(Mutex::new(Vec::new()));
    let asker = Asker {
        to: careful,
        ended: ended.clone(),
    };
    let asker = rt.spawn_native("asker", Some(1), asker).unwrap();
    rt.send(asker, b"q").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ended.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the third never ended"
        );
        std::thread::yield_now();
    }
    assert_eq!(said.lock().unwrap()[..], [true, true, false]);
    assert_eq!(ended.lock().unwrap()[..], [Err(RequestError::TargetFailed)]);
    drop(held);
    rt.shutdown_within(Duration::ZERO);
}
