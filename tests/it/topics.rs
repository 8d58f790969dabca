//! Topics (`wasmshard:actor/topics`, `Context::publish`, `Runtime::publish`),
//! driven through the Rust test guest's `subscriber` role
//! (`tests/guests/roles`): every subscriber gets every publication in
//! publisher order across shards; a full mailbox refuses and is counted;
//! patterns; unsubscribe and stop; a subscription made before messaging a
//! publisher is in effect for its next publication; grants.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmshard::{Address, Component, Context, Grants, Runtime, SendError, SpawnOptions};

use crate::support::*;

fn ask(rt: &Runtime, to: Address, command: &[u8]) -> Vec<u32> {
    let reply = rt.request(to, command, Duration::from_secs(600)).unwrap();
    let bytes = if rt.is_manual() {
        rt.run_until_stalled();
        reply.try_get().expect("answered")
    } else {
        reply.wait(Duration::from_secs(120)).expect("answered")
    }
    .expect("a reply");
    bytes
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn with_topic(op: u8, words: &[u32], topic: &str) -> Vec<u8> {
    let mut c = vec![op];
    for w in words {
        c.extend_from_slice(&w.to_le_bytes());
    }
    c.extend_from_slice(topic.as_bytes());
    c
}

/// Has the subscriber `s` publish `count` times to `topic`: `[delivered,
/// refused, errors, last code]`.
fn publish(rt: &Runtime, s: Address, count: u32, topic: &str) -> Vec<u32> {
    ask(rt, s, &with_topic(b'p', &[count], topic))
}

/// `[received, out of order, from itself]`.
fn received(rt: &Runtime, s: Address) -> Vec<u32> {
    ask(rt, s, b"r")
}

fn subscriber(rt: &Runtime, g: &Component, name: &str, topics: &str, shard: usize) -> Address {
    rt.spawn(
        g,
        SpawnOptions::new(name)
            .config(format!("subscriber {topics}"))
            .shard(shard),
    )
    .unwrap()
}

fn topic<'a>(stats: &'a [wasmshard::TopicStats], name: &str) -> &'a wasmshard::TopicStats {
    stats
        .iter()
        .find(|t| t.topic == name)
        .unwrap_or_else(|| panic!("no topic `{name}` in {stats:?}"))
}

#[test]
fn a_thousand_subscribers_over_two_shards_get_every_publication_in_order() {
    let rt = builder(2)
        .max_actors(1100)
        .memory_limit(2 << 20)
        .build()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let subs: Vec<Address> = (0..1000)
        .map(|i| subscriber(&rt, &g, &format!("s{i}"), "news", i % 2))
        .collect();
    let publisher = subscriber(&rt, &g, "publisher", "", 1);
    let native: Inbox = Arc::default();
    let seen = native.clone();
    let native_sub = rt
        .spawn_native(
            "native-sub",
            Some(0),
            move |ctx: &mut Context<'_>, from: Address, payload: &[u8]| {
                if from == Address::HOST {
                    ctx.subscribe("news").unwrap();
                } else {
                    seen.lock().unwrap().push((from, payload.to_vec()));
                }
            },
        )
        .unwrap();
    rt.send(native_sub, b"subscribe").unwrap();
    assert!(rt.wait_idle(Duration::from_secs(30)));
    let rounds = 20;
    let mut delivered = 0;
    for _ in 0..rounds {
        let r = publish(&rt, publisher, 1, "news");
        assert_eq!((r[1], r[2]), (0, 0), "nothing refused: {r:?}");
        delivered += r[0];
    }
    assert_eq!(delivered, rounds * 1001);
    assert!(rt.wait_idle(Duration::from_secs(60)));
    for &s in &subs {
        assert_eq!(received(&rt, s), vec![rounds, 0, 0], "subscriber {s}");
    }
    let got = native.lock().unwrap();
    assert_eq!(got.len(), rounds as usize);
    for (i, (from, payload)) in got.iter().enumerate() {
        assert_eq!(*from, publisher);
        assert_eq!(payload[..], (i as u32 + 1).to_le_bytes(), "in order");
    }
    let stats = rt.topics();
    let news = topic(&stats, "news");
    assert_eq!(
        (
            news.subscribers,
            news.published,
            news.delivered,
            news.refused
        ),
        (1001, u64::from(rounds), u64::from(rounds) * 1001, 0)
    );
    rt.shutdown();
}

#[test]
fn a_full_subscriber_refuses_without_blocking_others_and_is_counted() {
    let rt = builder(1).mailbox_capacity(4).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let full = subscriber(&rt, &g, "full", "prices", 0);
    let free = subscriber(&rt, &g, "free", "prices", 0);
    rt.run_until_stalled();
    for _ in 0..4 {
        rt.send(full, b"filler").unwrap();
    }
    let out = rt.publish("prices", &1u32.to_le_bytes()).unwrap();
    assert_eq!((out.delivered, out.refused), (1, 1));
    rt.run_until_stalled();
    assert_eq!(received(&rt, free)[0], 1);
    assert_eq!(received(&rt, full)[0], 0, "refused: never delivered");
    let stats = rt.topics();
    let prices = topic(&stats, "prices");
    assert_eq!(
        (prices.published, prices.delivered, prices.refused),
        (1, 1, 1)
    );
    // Full again, for a component's publication.
    let publisher = subscriber(&rt, &g, "publisher", "", 0);
    rt.run_until_stalled();
    // The publisher runs first in the next pass, before `full` drains.
    let reply = rt
        .request(
            publisher,
            &with_topic(b'p', &[1], "prices"),
            Duration::from_secs(60),
        )
        .unwrap();
    for _ in 0..4 {
        rt.send(full, b"filler").unwrap();
    }
    rt.run_until_stalled();
    let r = reply.try_get().unwrap().unwrap();
    assert_eq!(r, with_topic(0, &[1, 1, 0, 0], "")[1..]);
    assert_eq!(topic(&rt.topics(), "prices").refused, 2);
    rt.shutdown();
}

#[test]
fn patterns_match_one_or_more_segments_and_each_subscription_delivers() {
    let rt = builder(2).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let pat = subscriber(&rt, &g, "pattern", "a.*", 0);
    let both = subscriber(&rt, &g, "both", "a.b a.*", 1);
    let publisher = subscriber(&rt, &g, "publisher", "", 1);
    rt.run_until_stalled();
    for t in ["a.b", "a.b.c", "a", "ab.c", "b.a"] {
        assert_eq!(publish(&rt, publisher, 1, t)[2], 0, "{t}");
    }
    rt.run_until_stalled();
    // `a.*`: a.b and a.b.c, not a or ab.c.
    assert_eq!(received(&rt, pat)[0], 2);
    // Subscribed by name and by pattern: a.b twice, a.b.c once.
    assert_eq!(received(&rt, both)[0], 3);
    let stats = rt.topics();
    assert_eq!(topic(&stats, "a.b").subscribers, 3);
    assert_eq!(topic(&stats, "a.*").subscribers, 2);
    assert_eq!(topic(&stats, "ab.c").delivered, 0);
    // Malformed topics and patterns.
    // `(other topics)` names the row of the topics beyond the counted ones.
    for bad in ["", "a..b", "a.*.b", "*a", "a.", "a.*", "(other topics)"] {
        assert_eq!(publish(&rt, publisher, 1, bad)[3], 1, "publish {bad:?}");
        assert_eq!(rt.publish(bad, b"x"), Err(SendError::UnknownTarget));
    }
    for bad in ["", "a..b", "a.*.b", "*a", "a.", "(other topics)"] {
        assert_eq!(ask(&rt, publisher, &with_topic(b's', &[], bad)), vec![1]);
    }
    let long = "x".repeat(wasmshard::MAX_TOPIC_LEN + 1);
    assert_eq!(publish(&rt, publisher, 1, &long)[3], 4, "too-large");
    assert_eq!(rt.publish(&long, b"x"), Err(SendError::TooLarge));
    rt.shutdown();
}

#[test]
fn unsubscribe_and_stop_end_subscriptions_and_a_publisher_may_subscribe() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let s = subscriber(&rt, &g, "s", "", 0);
    let p = subscriber(&rt, &g, "p", "chat", 0);
    rt.run_until_stalled();
    assert_eq!(ask(&rt, s, &with_topic(b's', &[], "chat")), vec![0]);
    assert_eq!(
        ask(&rt, s, &with_topic(b's', &[], "chat")),
        vec![0],
        "again: one"
    );
    assert_eq!(publish(&rt, p, 3, "chat"), vec![6, 0, 0, 0]);
    rt.run_until_stalled();
    assert_eq!(received(&rt, s), vec![3, 0, 0]);
    assert_eq!(received(&rt, p), vec![3, 0, 3], "its own, from itself");
    assert_eq!(ask(&rt, s, &with_topic(b'u', &[], "chat")), vec![1]);
    assert_eq!(ask(&rt, s, &with_topic(b'u', &[], "chat")), vec![0]);
    assert_eq!(publish(&rt, p, 1, "chat"), vec![1, 0, 0, 0]);
    rt.run_until_stalled();
    assert_eq!(received(&rt, s)[0], 3, "unsubscribed");
    rt.send(p, b"stop").unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.publish("chat", b"late").unwrap().delivered, 0);
    assert_eq!(topic(&rt.topics(), "chat").subscribers, 0);
    // A failed actor's subscriptions end too.
    let f = subscriber(&rt, &g, "f", "chat", 0);
    rt.run_until_stalled();
    assert_eq!(topic(&rt.topics(), "chat").subscribers, 1);
    rt.send(f, b"panic").unwrap();
    rt.run_until_stalled();
    assert_eq!(topic(&rt.topics(), "chat").subscribers, 0);
    rt.shutdown();
}

/// A subscriber subscribes and then messages a publisher on another shard;
/// the publisher publishes when that message arrives: the publication must
/// reach the subscriber, however warm the publisher's cache of the topic.
#[test]
fn a_subscription_is_in_effect_for_publications_that_follow_it() {
    let rt = builder(2).build().unwrap();
    let Some(g) = guest(&rt) else { return };
    let outcomes: Arc<Mutex<Vec<u32>>> = Arc::default();
    let seen = outcomes.clone();
    let round = Arc::new(Mutex::new(0u32));
    // Publishes to `t{n % 4}` on every message: from the host to warm its
    // cache (nobody subscribed), from the subscriber right after it subscribed.
    let publisher = rt
        .spawn_native(
            "publisher",
            Some(1),
            move |ctx: &mut Context<'_>, _from: Address, payload: &[u8]| {
                let mut round = round.lock().unwrap();
                if let Ok(n) = payload.try_into() {
                    *round = u32::from_le_bytes(n);
                }
                let n = *round;
                let topic = format!("t{}", n % 4);
                let out = ctx.publish(&topic, &n.to_le_bytes()).unwrap();
                seen.lock().unwrap().push(out.delivered);
            },
        )
        .unwrap();
    let s = subscriber(&rt, &g, "s", "", 0);
    for n in 1..=200u32 {
        let topic = format!("t{}", n % 4);
        let mut c = vec![b'u'];
        c.extend_from_slice(format!("t{}", (n + 3) % 4).as_bytes());
        ask(&rt, s, &c);
        // The publisher resolves `topic` with no subscriber, and caches it.
        rt.send(publisher, &n.to_le_bytes()).unwrap();
        assert!(rt.wait_idle(Duration::from_secs(10)));
        let mut c = vec![b'S'];
        c.extend_from_slice(&publisher.to_bits().to_le_bytes());
        c.extend_from_slice(topic.as_bytes());
        assert_eq!(ask(&rt, s, &c), vec![0, 0]);
        assert!(rt.wait_idle(Duration::from_secs(10)));
    }
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 400);
    let expected: Vec<u32> = (0..200).flat_map(|_| [0, 1]).collect();
    assert_eq!(*outcomes, expected);
    assert_eq!(received(&rt, s), vec![200, 0, 0]);
    rt.shutdown();
}

#[test]
fn grants_allow_and_deny_publish_and_subscribe() {
    let rt = builder(1)
        .default_grants(Grants::none())
        .build_manual()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let grants = Grants::none().publish(["news.*"]).subscribe(["news.sport"]);
    let a = rt
        .spawn(
            &g,
            SpawnOptions::new("a").config("subscriber").grants(grants),
        )
        .unwrap();
    rt.run_until_stalled();
    // Subscribe: the name the grant names; not a pattern wider than it.
    assert_eq!(ask(&rt, a, &with_topic(b's', &[], "news.sport")), vec![0]);
    assert_eq!(ask(&rt, a, &with_topic(b's', &[], "news.*")), vec![3]);
    assert_eq!(ask(&rt, a, &with_topic(b's', &[], "weather")), vec![3]);
    // Publish: what `news.*` matches.
    assert_eq!(publish(&rt, a, 1, "news.sport"), vec![1, 0, 0, 0]);
    assert_eq!(publish(&rt, a, 2, "weather"), vec![0, 0, 2, 3]);
    rt.run_until_stalled();
    let stats = rt.stats();
    assert_eq!(stats.actor("a").unwrap().denied, 4);
    assert!(
        rt.topics().iter().all(|t| t.topic != "weather"),
        "a denied publication leaves no trace in the registry"
    );
    let audit = rt.audit();
    let ops: Vec<(String, Option<String>)> = audit
        .iter()
        .map(|d| (d.operation.to_string(), d.target_name.clone()))
        .collect();
    assert_eq!(
        ops,
        vec![
            ("subscribe".to_string(), Some("news.*".to_string())),
            ("subscribe".to_string(), Some("weather".to_string())),
            ("publish".to_string(), Some("weather".to_string())),
            ("publish".to_string(), Some("weather".to_string())),
        ]
    );
    rt.shutdown();
}

/// An upgrade's `init` that unsubscribes does so only if the upgrade
/// commits: until then the old instance stands, subscribed (its `init`'s own
/// publication reaches it), and a rollback leaves its subscriptions as they
/// were. The unsubscribe took effect at once, so publications during the
/// trial skipped the actor.
#[test]
fn an_upgrade_that_rolls_back_never_unsubscribes() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .default_grants(Grants::all())
        .build_manual()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let fickle = rt
        .spawn(&g, SpawnOptions::new("fickle").config("fickle news"))
        .unwrap();
    rt.run_until_stalled();
    let e = rt.upgrade(fickle, &g).unwrap_err();
    // The error and its causes.
    let mut why = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        why.push_str(&format!(": {c}"));
        cause = c.source();
    }
    assert!(why.contains("unsubscribed true, delivered 1"), "{why}");
    rt.run_until_stalled();
    // Still subscribed: the host's publication reaches it.
    assert_eq!(rt.publish("news", b"later").unwrap().delivered, 1);
    rt.run_until_stalled();
    let stats = rt.stats();
    let f = stats.actor("fickle").unwrap();
    // Its own publication from the trial, and the host's.
    assert_eq!(f.received, 2);
}
