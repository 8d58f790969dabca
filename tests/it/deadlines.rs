//! Deadlines travel with requests: a request made while handling another is
//! capped at its deadline; when a request ends by timeout or cancel, the
//! requests made on its behalf end with `cancelled` at their requesters,
//! across shards and down the chain; a request whose deadline has passed is
//! never started. Driven through the Rust test guest's `relay` and `slow`
//! roles (`tests/guests/roles`).

use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmshard::{Address, Component, Context, NativeActor, RequestError, Runtime, SpawnOptions};

use crate::support::*;

fn spawn(rt: &Runtime, g: &Component, name: &str, config: &str, shard: usize) -> Address {
    rt.spawn(g, SpawnOptions::new(name).config(config).shard(shard))
        .unwrap()
}

/// A relay's `[ok, timeout, cancelled, other, unknown, longest ms]`.
fn relay_counts(rt: &Runtime, relay: Address) -> Vec<u32> {
    rt.request(relay, b"?", Duration::from_secs(60))
        .unwrap()
        .wait(Duration::from_secs(60))
        .expect("answered")
        .expect("a reply")
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn handled(rt: &Runtime, name: &str) -> u64 {
    rt.stats().actor(name).unwrap().handled
}

/// A (the host) → B (`relay c`, shard 0) → C (`slow 80`, shard 1). A's
/// requests time out after 30 ms: B's sub-requests to C end `cancelled` at
/// B, once each, long before their own 60 s; of the five sub-requests only
/// the first is started by C, the rest are past their deadline when C is
/// free again.
#[test]
fn a_timeout_revokes_the_chain_and_expired_requests_are_never_started() {
    let rt = builder(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let b = spawn(&rt, &g, "b", "relay c", 0);
    spawn(&rt, &g, "c", "slow 80", 1);
    let replies: Vec<_> = (0..5)
        .map(|i| rt.request(b, &[i], Duration::from_millis(30)).unwrap())
        .collect();
    let start = Instant::now();
    for r in &replies {
        assert_eq!(
            r.wait(Duration::from_secs(10)),
            Some(Err(RequestError::Timeout))
        );
    }
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let counts = relay_counts(&rt, b);
    assert_eq!(
        counts[..5],
        [0, 0, 5, 0, 0],
        "five cancelled, once each: {counts:?}"
    );
    assert!(
        counts[5] < 5_000,
        "cancelled when the original timed out, not at 60 s: {counts:?}"
    );
    assert_eq!(handled(&rt, "c"), 1, "only the first was started");
    let stats = rt.stats();
    let expired: u64 = stats.shards.iter().map(|s| s.expired).sum();
    let revoked: u64 = stats.shards.iter().map(|s| s.requests.revoked).sum();
    let late: u64 = stats.shards.iter().map(|s| s.requests.late).sum();
    assert_eq!((expired, revoked), (4, 5));
    // B's five answers to the host (after it timed out) and C's answer to
    // the one sub-request it started.
    assert_eq!(late, 6, "C's answer to the revoked one came late");
    eprintln!("chain revoked in {:?}", start.elapsed());
    rt.shutdown();
}

/// A request made while handling one is capped at its deadline, across
/// shards: B answers at once and its 60 s sub-request to a silent C times out
/// at A's deadline (200 ms), not at 60 s.
#[test]
fn a_sub_request_is_capped_at_the_deadline_of_the_request_it_serves() {
    let rt = builder(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let b = spawn(&rt, &g, "b", "relay c answer", 0);
    spawn(&rt, &g, "c", "silent", 1);
    let reply = rt.request(b, b"x", Duration::from_millis(200)).unwrap();
    assert_eq!(reply.wait(Duration::from_secs(10)), Some(Ok(Vec::new())));
    let start = Instant::now();
    assert!(rt.wait_idle(Duration::from_secs(20)));
    let counts = relay_counts(&rt, b);
    assert_eq!(counts[..5], [0, 1, 0, 0, 0], "timed out: {counts:?}");
    assert!((150..5_000).contains(&counts[5]), "{counts:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    rt.shutdown();
}

/// A cancel revokes too: the host drops its handle (cancelling the request),
/// and B's sub-request ends `cancelled` at B; two relays deep, the second
/// relay's sub-request ends too.
#[test]
fn a_cancel_revokes_down_the_chain() {
    let rt = builder(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let b = spawn(&rt, &g, "b", "relay c", 0);
    let c = spawn(&rt, &g, "c", "relay d", 1);
    spawn(&rt, &g, "d", "silent", 0);
    let reply = rt.request(b, b"x", Duration::from_secs(60)).unwrap();
    // Let the chain form: b asks c, c asks d.
    let start = Instant::now();
    while rt.stats().actor("d").unwrap().received == 0 {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(reply.cancel());
    assert!(rt.wait_idle(Duration::from_secs(10)));
    assert_eq!(relay_counts(&rt, b)[..5], [0, 0, 1, 0, 0]);
    assert_eq!(relay_counts(&rt, c)[..5], [0, 0, 1, 0, 0]);
    rt.shutdown();
}

/// A flood of requests that expire while they wait is shed, so a fresh
/// request behind them is answered within its deadline.
#[test]
fn a_flood_of_expired_requests_is_shed() {
    let rt = builder(1).mailbox_capacity(4096).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let c = spawn(&rt, &g, "c", "slow 1", 0);
    // 1000 requests of 1 ms of work each, which their requesters wait 20 ms for.
    let flood: Vec<_> = (0..1000)
        .map(|_| rt.request(c, b"x", Duration::from_millis(20)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(40));
    let sent = Instant::now();
    let fresh = rt.request(c, b"fresh", Duration::from_secs(2)).unwrap();
    let answer = fresh.wait(Duration::from_secs(10));
    let took = sent.elapsed();
    assert!(
        matches!(answer, Some(Ok(_))),
        "answered within its deadline: {answer:?}"
    );
    assert!(rt.wait_idle(Duration::from_secs(10)));
    let timed_out = flood
        .iter()
        .filter(|r| r.try_get() == Some(Err(RequestError::Timeout)))
        .count();
    let stats = rt.stats();
    eprintln!(
        "fresh request behind a flood of 1000 expiring ones answered in {took:?}; \
         {} handled, {} shed, {timed_out} timed out",
        stats.actor("c").unwrap().handled,
        stats.shards[0].expired
    );
    // Without shedding it would wait behind about 940 ms of work.
    assert!(took < Duration::from_millis(400), "{took:?}");
    assert!(stats.shards[0].expired > 500, "most were shed");
    assert!(
        timed_out as u64 >= stats.shards[0].expired,
        "each shed one timed out"
    );
    rt.shutdown();
}

/// A request cancelled while it still waits in its target's mailbox is never
/// started (manual runtime: the request and the cancel arrive in one pass).
#[test]
fn a_request_cancelled_while_queued_is_never_started() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let b = spawn(&rt, &g, "b", "relay c", 0);
    spawn(&rt, &g, "c", "silent", 0);
    rt.run_until_stalled();
    let reply = rt.request(b, b"x", Duration::from_secs(60)).unwrap();
    assert!(reply.cancel());
    rt.run_until_stalled();
    let stats = rt.stats();
    assert_eq!(stats.actor("b").unwrap().handled, 0, "not started");
    assert_eq!(stats.actor("c").unwrap().received, 0);
    assert_eq!(stats.shards[0].expired, 1);
    rt.shutdown();
}

/// A native relay: each request becomes a sub-request to the next actor
/// (none: held for ever); a sub-request that ends `cancelled` is counted.
struct Link {
    next: Option<Address>,
    cancelled: Arc<AtomicU64>,
}

impl NativeActor for Link {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        _: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        if let Some(next) = self.next {
            ctx.request(next, payload, Duration::from_secs(600))
                .unwrap();
        }
        None
    }

    fn handle_response(&mut self, _: &mut Context<'_>, _: u64, r: Result<&[u8], RequestError>) {
        if r == Err(RequestError::Cancelled) {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A chain of 5 000 requests on one shard unwinds when the first times out,
/// each link once, without recursion (a recursive unwinding overflowed the
/// shard's stack).
#[test]
fn a_long_chain_on_one_shard_unwinds_without_recursion() {
    const LINKS: usize = 5_000;
    let rt = builder(1)
        .max_actors(LINKS as u32 + 8)
        .mailbox_capacity(4)
        .build()
        .unwrap();
    let cancelled = Arc::new(AtomicU64::new(0));
    let mut next = None;
    for i in (0..LINKS).rev() {
        let link = Link {
            next,
            cancelled: cancelled.clone(),
        };
        next = Some(
            rt.spawn_native(&format!("link-{i}"), Some(0), link)
                .unwrap(),
        );
    }
    let reply = rt
        .request(next.unwrap(), b"x", Duration::from_millis(300))
        .unwrap();
    assert_eq!(
        reply.wait(Duration::from_secs(30)),
        Some(Err(RequestError::Timeout))
    );
    assert!(rt.wait_idle(Duration::from_secs(30)));
    assert_eq!(cancelled.load(Ordering::Relaxed), LINKS as u64 - 1);
    let stats = rt.stats();
    assert_eq!(stats.shards[0].requests.revoked, LINKS as u64 - 1);
    assert_eq!(stats.shards[0].requests.open, 0);
    rt.shutdown();
}
