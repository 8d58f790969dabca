//! Deadlines travel with requests: a request made while handling another is
//! capped at its deadline; when a request ends by timeout or cancel, the
//! requests made on its behalf end with `cancelled` at their requesters,
//! across shards and down the chain; a request whose deadline has passed is
//! never started. Driven through the Rust test guest's `relay` and `slow`
//! roles (`tests/guests/roles`).

use std::time::{Duration, Instant};

use wasmshard::{Address, Component, RequestError, Runtime, SpawnOptions};

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
    assert!(late >= 1, "C's answer to the revoked one came late");
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
    // Without shedding it would wait behind about 980 ms of work.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(stats.shards[0].expired > 500, "most were shed");
    rt.shutdown();
}
