//! Topics: publish/subscribe by name or by pattern, across shards.
//!
//! **Grammar.** A topic is one or more segments separated by `.`; a segment is
//! a non-empty run of bytes other than `.` and `*` (`prices`, `events.user.created`),
//! at most [`MAX_TOPIC_LEN`] bytes in all. A subscription names a topic, or a
//! pattern whose last segment is `*` (`events.*`), which matches every topic
//! that starts with the segments before it and has *one or more* segments
//! after them: `events.*` matches `events.user` and `events.user.created`, not
//! `events` or `eventsx.user`. `*` alone matches every topic. `*` anywhere
//! else (`a.*.b`, `a*`) is not a pattern and is refused.
//!
//! **Index.** Subscriptions live in one registry per runtime: subscribers by
//! exact name, and pattern subscribers by their prefix (`events.*` under
//! `events`). A publication to a topic of `n` segments looks up the name and
//! its `n - 1` proper prefixes (and `*`): `n + 1` hash lookups, whatever the
//! number of patterns. Changing a subscription takes the registry's lock and
//! moves its version on.
//!
//! **No lock when publishing.** Each publishing actor keeps what it resolved
//! (a topic's subscribers and counters) in a cache of its own, each topic's
//! entry valid while the versions it depends on are the ones it saw: a
//! publication reads them (three atomic loads) and, in steady state, looks the
//! topic up in its cache. The registry keeps [`VERSION_BUCKETS`] versions for
//! names (a change of a subscription to a name moves the one its hash picks),
//! as many for patterns (picked by the hash of the pattern's first segment,
//! which every topic it matches shares) and one for `*`, so an actor that
//! subscribes and unsubscribes in a loop makes re-resolve (a lock, an
//! allocation) only the publications of topics that share its bucket, not
//! every publication of the runtime. A subscription made before the
//! subscriber messages a publisher moved its version on before that message
//! was sent, so the publisher's next publication sees it (the message's
//! passage through a ring or a mailbox orders the two), on any shard.
//!
//! **Counters** per published topic are kept per publishing shard (one cache
//! line each, written by that shard alone, plus one for the host), so
//! publishing contends on nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ahash::{AHashMap, AHashSet};
use serde::Serialize;

use crate::address::Address;
use crate::shared::lock;

/// Longest topic or subscription pattern, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// Most subscriptions one actor may hold at once.
pub const MAX_SUBSCRIPTIONS: usize = 1024;
/// Versions of the registry for names, and as many for patterns: see the
/// module's "No lock when publishing".
const VERSION_BUCKETS: usize = 64;
/// Most topics a publisher's cache keeps before it starts again.
const CACHE_TOPICS: usize = 1024;
/// Most topics counted one by one; publications to topics beyond them are
/// counted together, as [`OTHER_TOPICS`].
pub const MAX_COUNTED_TOPICS: usize = 4096;
/// The name under which [`Runtime::topics`](crate::Runtime::topics) counts
/// the topics beyond [`MAX_COUNTED_TOPICS`].
pub const OTHER_TOPICS: &str = "(other topics)";

/// What a publication did: how many subscribers it reached, and how many
/// refused it (a full mailbox, or a codec the subscriber does not accept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PublishOutcome {
    /// Subscriptions whose actor admitted it.
    pub delivered: u32,
    /// Subscriptions whose actor refused it.
    pub refused: u32,
}

/// One topic's figures, from [`Runtime::topics`](crate::Runtime::topics): a
/// topic published to, or a name or pattern subscribed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TopicStats {
    /// The topic, or the pattern (`events.*`).
    pub topic: String,
    /// Subscriptions it reaches now (for a topic: those by its name and by
    /// the patterns that match it; for a pattern: those to the pattern).
    pub subscribers: u64,
    /// Publications to it.
    pub published: u64,
    /// Deliveries of those (one per subscription reached).
    pub delivered: u64,
    /// Refusals of those by full mailboxes (or codecs not accepted).
    pub refused: u64,
}

/// A topic or pattern, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape<'a> {
    /// A topic name.
    Name(&'a str),
    /// A pattern: the prefix before `.*` (empty for `*` alone).
    Pattern(&'a str),
}

/// Why a topic or pattern is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Longer than [`MAX_TOPIC_LEN`].
    TooLong,
    /// Not of the grammar.
    Invalid,
}

/// Checks `topic` against the grammar; `pattern` allows a last `*` segment.
pub(crate) fn parse(topic: &str, pattern: bool) -> Result<Shape<'_>, Malformed> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(Malformed::TooLong);
    }
    if pattern && topic == "*" {
        return Ok(Shape::Pattern(""));
    }
    let (name, is_pattern) = match topic.strip_suffix(".*") {
        Some(prefix) if pattern => (prefix, true),
        _ => (topic, false),
    };
    // The name of the row that counts the topics beyond the counted ones is
    // no topic's: a topic of that name made a second row of it.
    let ok = !name.is_empty()
        && name != OTHER_TOPICS
        && name
            .split('.')
            .all(|seg| !seg.is_empty() && !seg.contains('*'));
    match (ok, is_pattern) {
        (false, _) => Err(Malformed::Invalid),
        (true, true) => Ok(Shape::Pattern(name)),
        (true, false) => Ok(Shape::Name(name)),
    }
}

/// Checks `topic` (`pattern`: a subscription, which may end in `*`) as a
/// send or subscribe does: `too-large` over [`MAX_TOPIC_LEN`],
/// `unknown-target` for one that breaks the grammar.
pub(crate) fn checked(topic: &str, pattern: bool) -> Result<Shape<'_>, crate::SendError> {
    parse(topic, pattern).map_err(|e| match e {
        Malformed::TooLong => crate::SendError::TooLarge,
        Malformed::Invalid => crate::SendError::UnknownTarget,
    })
}

/// Per-topic counters of one publishing shard (or the host).
#[derive(Default)]
#[repr(align(128))]
struct Lane {
    published: AtomicU64,
    delivered: AtomicU64,
    refused: AtomicU64,
}

/// The counters of one published topic: a lane per shard, and one for the host.
pub(crate) struct Counters {
    lanes: Box<[Lane]>,
}

impl Counters {
    fn new(lanes: usize) -> Counters {
        Counters {
            lanes: (0..lanes).map(|_| Lane::default()).collect(),
        }
    }

    /// Counts a publication from `lane`: a shard's own (written by that
    /// shard alone, so a load and a store), or the host's (shared by host
    /// threads: an atomic add).
    pub(crate) fn count(&self, lane: usize, shared: bool, outcome: PublishOutcome) {
        let l = &self.lanes[lane];
        let add = |c: &AtomicU64, n: u64| {
            if shared {
                c.fetch_add(n, Ordering::Relaxed);
            } else {
                c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            }
        };
        add(&l.published, 1);
        add(&l.delivered, u64::from(outcome.delivered));
        add(&l.refused, u64::from(outcome.refused));
    }

    fn sum(&self) -> (u64, u64, u64) {
        self.lanes.iter().fold((0, 0, 0), |(p, d, r), l| {
            (
                p + l.published.load(Ordering::Relaxed),
                d + l.delivered.load(Ordering::Relaxed),
                r + l.refused.load(Ordering::Relaxed),
            )
        })
    }
}

/// A topic resolved: its subscribers now, and its counters.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) subscribers: Arc<[Address]>,
    pub(crate) counters: Arc<Counters>,
}

impl Route {
    /// Offers `payload` to every subscriber: each admits it at its mailbox
    /// or refuses it (a full mailbox, a codec it does not accept);
    /// `deliver` sends it to those that admitted it. Counted in the topic's
    /// `lane` (a publishing shard's, or the host's: the last).
    pub(crate) fn offer(
        &self,
        directory: &crate::directory::Directory,
        payload: &[u8],
        lane: usize,
        mut deliver: impl FnMut(Address),
    ) -> PublishOutcome {
        let mut outcome = PublishOutcome::default();
        for &to in self.subscribers.iter() {
            match directory.admit(to, payload, u64::MAX) {
                Ok(()) => {
                    deliver(to);
                    outcome.delivered += 1;
                }
                // It ended since the route was resolved: no longer a subscriber.
                Err(crate::SendError::UnknownTarget) => {}
                Err(_) => outcome.refused += 1,
            }
        }
        let host = lane + 1 == self.counters.lanes.len();
        self.counters.count(lane, host, outcome);
        outcome
    }
}

/// The runtime's registry of subscriptions.
pub(crate) struct Topics {
    /// The versions: [`VERSION_BUCKETS`] for names, as many for patterns,
    /// one for `*`. A change of a subscription moves the one it affects
    /// (Release); a publication reads the three of its topic (Acquire).
    versions: Box<[AtomicU64]>,
    /// Picks a version by hash (fixed within the runtime).
    hasher: ahash::RandomState,
    inner: Mutex<Inner>,
    /// Counter lanes per topic: the shards, and the host.
    lanes: usize,
}

struct Inner {
    /// Subscribers by topic name.
    exact: AHashMap<Box<str>, AHashSet<Address>>,
    /// Pattern subscribers by prefix (`events` for `events.*`; `` for `*`).
    prefixes: AHashMap<Box<str>, AHashSet<Address>>,
    /// The subscriptions of each subscriber, as given.
    by_actor: AHashMap<Address, Vec<Box<str>>>,
    /// The counters of the topics published to (the first
    /// [`MAX_COUNTED_TOPICS`] of them).
    counters: AHashMap<Arc<str>, Arc<Counters>>,
    /// The counters of the topics beyond those.
    other: Arc<Counters>,
}

/// Why a subscription was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubscribeError {
    /// Not a topic or pattern.
    Malformed(Malformed),
    /// The actor holds [`MAX_SUBSCRIPTIONS`] already.
    TooMany,
}

impl Topics {
    pub(crate) fn new(shards: usize) -> Topics {
        Topics {
            versions: (0..2 * VERSION_BUCKETS + 1)
                .map(|_| AtomicU64::new(1))
                .collect(),
            hasher: ahash::RandomState::new(),
            inner: Mutex::new(Inner {
                exact: AHashMap::new(),
                prefixes: AHashMap::new(),
                by_actor: AHashMap::new(),
                counters: AHashMap::new(),
                other: Arc::new(Counters::new(shards + 1)),
            }),
            lanes: shards + 1,
        }
    }

    /// The bucket of `s` (a name, or a first segment).
    #[inline]
    fn bucket(&self, s: &str) -> usize {
        (self.hasher.hash_one(s) % VERSION_BUCKETS as u64) as usize
    }

    /// The versions a route of `topic` (a checked name) depends on, now.
    #[inline]
    pub(crate) fn stamp(&self, topic: &str) -> Stamp {
        let first = topic.split('.').next().unwrap_or(topic);
        let v = |i: usize| self.versions[i].load(Ordering::Acquire);
        Stamp([
            v(self.bucket(topic)),
            v(VERSION_BUCKETS + self.bucket(first)),
            v(2 * VERSION_BUCKETS),
        ])
    }

    /// Moves on the version that a change of a subscription to `shape`
    /// affects (under the registry's lock, after the change).
    fn changed(&self, shape: Shape<'_>) {
        let i = match shape {
            Shape::Name(n) => self.bucket(n),
            Shape::Pattern("") => 2 * VERSION_BUCKETS,
            Shape::Pattern(p) => VERSION_BUCKETS + self.bucket(p.split('.').next().unwrap_or(p)),
        };
        self.versions[i].fetch_add(1, Ordering::AcqRel);
    }

    /// Subscribes `who` to `topic` (checked: a name or a pattern). Subscribing
    /// again to the same topic or pattern changes nothing.
    pub(crate) fn subscribe(&self, who: Address, topic: &str) -> Result<(), SubscribeError> {
        let shape = parse(topic, true).map_err(SubscribeError::Malformed)?;
        let mut inner = lock(&self.inner);
        let mine = inner.by_actor.entry(who).or_default();
        if mine.iter().any(|t| &**t == topic) {
            return Ok(());
        }
        if mine.len() >= MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::TooMany);
        }
        mine.push(topic.into());
        let (map, key) = match shape {
            Shape::Name(n) => (&mut inner.exact, n),
            Shape::Pattern(p) => (&mut inner.prefixes, p),
        };
        map.entry(key.into()).or_default().insert(who);
        self.changed(shape);
        Ok(())
    }

    /// `who`'s subscriptions, as given.
    pub(crate) fn subscriptions_of(&self, who: Address) -> Vec<Box<str>> {
        lock(&self.inner)
            .by_actor
            .get(&who)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes `who`'s subscriptions exactly `topics` (as
    /// [`Topics::subscriptions_of`] gave them): an upgrade rolled back.
    /// Only what differs changes: a subscription it had all along is never
    /// off (it was taken off and put back, and publications in between
    /// skipped the actor).
    pub(crate) fn restore(&self, who: Address, topics: &[Box<str>]) {
        let now = self.subscriptions_of(who);
        for t in now.iter().filter(|t| !topics.contains(t)) {
            self.unsubscribe(who, t);
        }
        for t in topics.iter().filter(|t| !now.contains(t)) {
            // They were accepted before.
            let _ = self.subscribe(who, t);
        }
    }

    /// Whether `who` is subscribed to `topic` (as it wrote it).
    pub(crate) fn is_subscribed(&self, who: Address, topic: &str) -> bool {
        lock(&self.inner)
            .by_actor
            .get(&who)
            .is_some_and(|mine| mine.iter().any(|t| &**t == topic))
    }

    /// Ends `who`'s subscription to `topic`; returns whether it had one.
    pub(crate) fn unsubscribe(&self, who: Address, topic: &str) -> bool {
        let Ok(shape) = parse(topic, true) else {
            return false;
        };
        let mut inner = lock(&self.inner);
        let Some(mine) = inner.by_actor.get_mut(&who) else {
            return false;
        };
        let Some(at) = mine.iter().position(|t| &**t == topic) else {
            return false;
        };
        mine.swap_remove(at);
        if mine.is_empty() {
            inner.by_actor.remove(&who);
        }
        inner.remove(shape, who);
        self.changed(shape);
        true
    }

    /// Ends every subscription of `who` (it ended); returns how many.
    pub(crate) fn unsubscribe_all(&self, who: Address) -> usize {
        let mut inner = lock(&self.inner);
        let Some(mine) = inner.by_actor.remove(&who) else {
            return 0;
        };
        for topic in &mine {
            if let Ok(shape) = parse(topic, true) {
                inner.remove(shape, who);
                self.changed(shape);
            }
        }
        mine.len()
    }

    /// Resolves `topic` (a checked name): its subscribers now, in a stable
    /// order (by name first, then by pattern from the shortest prefix), and
    /// its counters. Takes the lock: publishers cache the result.
    pub(crate) fn resolve(&self, topic: &str) -> Route {
        let mut inner = lock(&self.inner);
        let mut subscribers: Vec<Address> = Vec::new();
        if let Some(s) = inner.exact.get(topic) {
            subscribers.extend(s);
        }
        if let Some(s) = inner.prefixes.get("") {
            subscribers.extend(s);
        }
        for (i, _) in topic.match_indices('.') {
            if let Some(s) = inner.prefixes.get(&topic[..i]) {
                subscribers.extend(s);
            }
        }
        let counters = match inner.counters.get(topic) {
            Some(c) => c.clone(),
            None if inner.counters.len() < MAX_COUNTED_TOPICS => {
                let c = Arc::new(Counters::new(self.lanes));
                inner.counters.insert(Arc::from(topic), c.clone());
                c
            }
            None => inner.other.clone(),
        };
        Route {
            subscribers: subscribers.into(),
            counters,
        }
    }

    /// The figures of every topic published to or subscribed to, by name.
    pub(crate) fn stats(&self) -> Vec<TopicStats> {
        let inner = lock(&self.inner);
        let mut names: Vec<String> = inner
            .counters
            .keys()
            .map(|k| k.to_string())
            .chain(inner.exact.keys().map(|k| k.to_string()))
            .chain(inner.prefixes.keys().map(|k| {
                if k.is_empty() {
                    "*".to_string()
                } else {
                    format!("{k}.*")
                }
            }))
            .collect();
        names.sort();
        names.dedup();
        let other = inner.other.sum();
        let other = (other.0 > 0).then(|| TopicStats {
            topic: OTHER_TOPICS.to_string(),
            subscribers: 0,
            published: other.0,
            delivered: other.1,
            refused: other.2,
        });
        names
            .into_iter()
            .map(|topic| {
                let (subscribers, (published, delivered, refused)) = match parse(&topic, true) {
                    Ok(Shape::Pattern(p)) => (
                        inner.prefixes.get(p).map_or(0, |s| s.len() as u64),
                        (0, 0, 0),
                    ),
                    _ => {
                        let reach = inner.exact.get(topic.as_str()).map_or(0, |s| s.len())
                            + inner.prefixes.get("").map_or(0, |s| s.len())
                            + topic
                                .match_indices('.')
                                .map(|(i, _)| {
                                    inner.prefixes.get(&topic[..i]).map_or(0, |s| s.len())
                                })
                                .sum::<usize>();
                        let sums = inner
                            .counters
                            .get(topic.as_str())
                            .map_or((0, 0, 0), |c| c.sum());
                        (reach as u64, sums)
                    }
                };
                TopicStats {
                    topic,
                    subscribers,
                    published,
                    delivered,
                    refused,
                }
            })
            .chain(other)
            .collect()
    }
}

impl Inner {
    fn remove(&mut self, shape: Shape<'_>, who: Address) {
        let (map, key) = match shape {
            Shape::Name(n) => (&mut self.exact, n),
            Shape::Pattern(p) => (&mut self.prefixes, p),
        };
        if let Some(subs) = map.get_mut(key) {
            subs.remove(&who);
            if subs.is_empty() {
                map.remove(key);
            }
        }
    }
}

/// The versions of the registry a topic's route depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp([u64; 3]);

/// A publisher's resolved topics, each valid while its stamp is the
/// registry's (`None`: its grants do not let it publish there).
#[derive(Default)]
pub(crate) struct Cache {
    routes: AHashMap<Box<str>, (Stamp, Option<Route>)>,
}

impl Cache {
    /// The route of `topic` (a checked name), or `None` if `allowed` refuses
    /// the publisher: from the cache if the registry has not changed since it
    /// was filled, else checked and resolved (and kept).
    #[inline]
    pub(crate) fn route(
        &mut self,
        topics: &Topics,
        topic: &str,
        allowed: impl FnOnce(&str) -> bool,
    ) -> Option<&Route> {
        let stamp = topics.stamp(topic);
        let fresh = match self.routes.get_mut(topic) {
            Some((seen, route)) if *seen != stamp => {
                // Resolved again in place (the grant's answer stands).
                if route.is_some() {
                    *route = Some(topics.resolve(topic));
                }
                *seen = stamp;
                true
            }
            Some(_) => true,
            None => false,
        };
        if !fresh {
            if self.routes.len() >= CACHE_TOPICS {
                self.routes.clear();
            }
            let route = allowed(topic).then(|| topics.resolve(topic));
            self.routes.insert(topic.into(), (stamp, route));
        }
        self.routes[topic].1.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        assert_eq!(parse("a.b", false), Ok(Shape::Name("a.b")));
        assert_eq!(parse("a.*", true), Ok(Shape::Pattern("a")));
        assert_eq!(parse("*", true), Ok(Shape::Pattern("")));
        for bad in ["", ".", "a.", ".a", "a..b", "a.*.b", "a*", "*.a", "**"] {
            assert_eq!(parse(bad, true), Err(Malformed::Invalid), "{bad:?}");
        }
        assert_eq!(
            parse("a.*", false),
            Err(Malformed::Invalid),
            "a name has no *"
        );
        assert_eq!(parse("*", false), Err(Malformed::Invalid));
        assert_eq!(
            parse(&"a".repeat(MAX_TOPIC_LEN + 1), false),
            Err(Malformed::TooLong)
        );
    }

    #[test]
    fn patterns_match_one_or_more_segments() {
        let t = Topics::new(1);
        let (p, e, all) = (
            Address::new(0, 1, 1),
            Address::new(0, 2, 1),
            Address::new(0, 3, 1),
        );
        t.subscribe(p, "a.*").unwrap();
        t.subscribe(e, "a.b").unwrap();
        t.subscribe(all, "*").unwrap();
        let subs = |topic: &str| t.resolve(topic).subscribers.to_vec();
        // By name, then by the patterns from the shortest prefix.
        assert_eq!(subs("a.b"), vec![e, all, p]);
        assert_eq!(subs("a.b.c"), vec![all, p]);
        assert_eq!(subs("a"), vec![all]);
        assert_eq!(subs("ab.c"), vec![all]);
        let v = t.stamp("a.b");
        t.subscribe(p, "a.*").unwrap();
        assert_eq!(t.stamp("a.b"), v, "subscribing twice changes nothing");
        assert!(t.unsubscribe(p, "a.*"));
        assert!(!t.unsubscribe(p, "a.*"));
        assert_eq!(subs("a.b.c"), vec![all]);
        assert_eq!(t.unsubscribe_all(all), 1);
        assert_eq!(subs("a.b"), vec![e]);
    }

    #[test]
    fn a_change_moves_only_the_stamps_of_the_topics_it_may_affect() {
        let t = Topics::new(1);
        let who = Address::new(0, 1, 1);
        // Two names in different buckets, with different first segments in
        // different pattern buckets.
        let names: Vec<String> = (0..1000).map(|i| format!("t{i}.x")).collect();
        let first = |n: &str| n.split('.').next().unwrap().to_string();
        let (a, b) = names
            .iter()
            .flat_map(|a| names.iter().map(move |b| (a, b)))
            .find(|(a, b)| t.bucket(a) != t.bucket(b) && t.bucket(&first(a)) != t.bucket(&first(b)))
            .unwrap();
        let (sa, sb) = (t.stamp(a), t.stamp(b));
        // A name: its own topic's stamp only.
        t.subscribe(who, a).unwrap();
        assert_ne!(t.stamp(a), sa);
        assert_eq!(t.stamp(b), sb);
        // A pattern: the topics under its first segment only.
        let sa = t.stamp(a);
        t.subscribe(who, &format!("{}.*", first(b))).unwrap();
        assert_eq!(t.stamp(a), sa);
        assert_ne!(t.stamp(b), sb);
        // `*` and an actor's end: every topic it may reach.
        let (sa, sb) = (t.stamp(a), t.stamp(b));
        t.subscribe(who, "*").unwrap();
        assert!(t.stamp(a) != sa && t.stamp(b) != sb);
        let (sa, sb) = (t.stamp(a), t.stamp(b));
        assert_eq!(t.unsubscribe_all(who), 3);
        assert!(t.stamp(a) != sa && t.stamp(b) != sb);
    }

    #[test]
    fn a_cached_route_follows_the_subscriptions_of_its_topic() {
        let t = Topics::new(1);
        let mut cache = Cache::default();
        let (x, y) = (Address::new(0, 1, 1), Address::new(0, 2, 1));
        let subs = |cache: &mut Cache| {
            cache
                .route(&t, "a.b", |_| true)
                .unwrap()
                .subscribers
                .to_vec()
        };
        assert_eq!(subs(&mut cache), vec![]);
        t.subscribe(x, "a.b").unwrap();
        assert_eq!(subs(&mut cache), vec![x]);
        t.subscribe(y, "a.*").unwrap();
        assert_eq!(subs(&mut cache), vec![x, y]);
        assert!(t.unsubscribe(x, "a.b"));
        assert_eq!(subs(&mut cache), vec![y]);
        assert_eq!(t.unsubscribe_all(y), 1);
        assert_eq!(subs(&mut cache), vec![]);
        // A refused topic stays refused.
        assert!(cache.route(&t, "c", |_| false).is_none());
        t.subscribe(x, "c").unwrap();
        assert!(cache.route(&t, "c", |_| true).is_none());
    }
}
