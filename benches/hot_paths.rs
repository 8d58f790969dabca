//! Instruction counts of the single-threaded hot paths, under callgrind.
//!
//! Each benchmark runs in its own process under valgrind; setup (building a
//! manual runtime, compiling fixtures, a warm-up round that also checks the
//! result) is not counted, and neither is dropping what the benchmark returns.
//! Runtimes are manual (`RuntimeBuilder::build_manual`): no threads, one shard
//! (two for the cross-shard pieces, both stepped in turn) stepped on the
//! calling thread, so the counts repeat exactly.
//!
//! `cargo bench --bench hot_paths` (needs valgrind and `iai-callgrind-runner`
//! 0.16.1); `perf/compare.py` checks a run against the baselines in
//! `perf/hot_paths.txt`. Every benchmark does `OPS` operations; the baselines
//! give the count per operation.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iai_callgrind::{library_benchmark, library_benchmark_group, main};
use wasmshard::bench::{Floor, Params, Responder, StorageFloor, Workload};
use wasmshard::codec::Codec;
use wasmshard::internals::{Mailbox, RequestTable, Ring, Slots};
use wasmshard::{Address, Context, Grants, NativeActor, Rate, RequestError, Runtime, SpawnOptions};

/// Operations per benchmark (messages, round trips, inserts).
const OPS: u32 = 100;

// ---- queues ------------------------------------------------------------------

fn ring() -> Ring {
    let ring = Ring::new(4096);
    // Warm: every cell written once.
    for _ in 0..4096 {
        // SAFETY: one thread pushes and pops (here and below).
        assert!(unsafe { ring.push(&[7; 8]) });
    }
    // SAFETY: as above.
    while unsafe { ring.pop() }.is_some() {}
    ring
}

// Enqueue and dequeue `OPS` 8-byte messages on a cross-shard ring.
#[library_benchmark]
#[bench::ops(setup = ring)]
fn ring_push_pop(ring: Ring) -> Ring {
    for _ in 0..OPS {
        // SAFETY: one thread pushes and pops.
        assert!(unsafe { ring.push(black_box(&[7; 8])) });
    }
    for _ in 0..OPS {
        // SAFETY: as above.
        assert_eq!(unsafe { ring.pop() }, Some(8));
    }
    ring
}

fn mailbox() -> Mailbox {
    let mut mailbox = Mailbox::default();
    for _ in 0..OPS {
        mailbox.push(&[7; 8]);
    }
    while mailbox.pop().is_some() {}
    mailbox
}

// Enqueue and dequeue `OPS` 8-byte messages on an actor's mailbox.
#[library_benchmark]
#[bench::ops(setup = mailbox)]
fn mailbox_push_pop(mut mailbox: Mailbox) -> Mailbox {
    for _ in 0..OPS {
        mailbox.push(black_box(&[7; 8]));
    }
    for _ in 0..OPS {
        assert_eq!(mailbox.pop(), Some(8));
    }
    mailbox
}

/// An actor that declared its codecs: admission checks each payload's prefix.
fn slots() -> (Slots, u32) {
    let slots = Slots::new(64);
    let generation = slots.activate(3, &[Codec::Cbor, Codec::MessagePack]);
    (slots, generation)
}

/// An actor that declared none: any payload, no look at it.
fn slots_any_codec() -> (Slots, u32) {
    let slots = Slots::new(64);
    let generation = slots.activate(3, &[]);
    (slots, generation)
}

// Admit `OPS` messages at a mailbox, then release them as a turn does.
#[library_benchmark]
#[bench::ops(setup = slots)]
#[bench::any_codec(setup = slots_any_codec)]
fn slot_admit_release((slots, generation): (Slots, u32)) -> Slots {
    let payload = [0x81, 0x04, 0x01];
    for _ in 0..OPS {
        assert!(slots.admit(3, black_box(generation), 1024, black_box(&payload)));
    }
    slots.release(3, OPS);
    slots
}

// ---- request table: slab and timers ------------------------------------------

/// Requests opened and answered before the shard next reads the clock, as on one
/// shard: slab insert and remove; `arm` finds each ended, so none reaches the heap.
fn answer_round(table: &mut RequestTable) {
    for i in 0..u64::from(OPS) {
        let id = table.open(black_box(2_000_000_000 + i));
        assert!(table.close(id));
    }
    table.arm(black_box(1));
}

/// Requests that outlive the pass they were made in and are then answered: timer
/// insert (at `arm`) and lazy cancel (the heap entry goes stale).
fn cancel_round(table: &mut RequestTable) {
    let ids: [u64; OPS as usize] =
        std::array::from_fn(|i| table.open(black_box(3_000_000_000 + i as u64)));
    table.arm(black_box(1));
    for id in ids {
        assert!(table.close(id));
    }
}

/// Requests opened, armed and timed out: slab insert, timer insert, expiry.
fn timeout_round(table: &mut RequestTable) {
    for _ in 0..OPS {
        table.open(black_box(5));
    }
    table.arm(black_box(1));
    for _ in 0..OPS {
        assert!(table.expire(10).is_some());
    }
}

fn table() -> RequestTable {
    let mut table = RequestTable::default();
    // Steady state: the table has grown its pool of free slots (it reuses a slot
    // only once 4096 are free), and requests stay open (armed) around the ones
    // measured.
    for _ in 0..8192 {
        let id = table.open(1);
        assert!(table.close(id));
    }
    for i in 0..1024 {
        table.open(1_000_000_000 + i);
    }
    table.arm(0);
    // Warm: a round of each benchmark's work, so the slab, the list of fresh
    // requests and the timer heap have grown to hold it.
    answer_round(&mut table);
    cancel_round(&mut table);
    timeout_round(&mut table);
    assert_eq!(table.open_count(), 1024);
    table
}

// `OPS` requests opened and answered within one pass of the shard's loop.
#[library_benchmark]
#[bench::ops(setup = table)]
fn request_open_close(mut table: RequestTable) -> RequestTable {
    answer_round(&mut table);
    table
}

// `OPS` requests armed into the timer heap, then answered: timer insert and cancel.
#[library_benchmark]
#[bench::ops(setup = table)]
fn timer_insert_cancel(mut table: RequestTable) -> RequestTable {
    cancel_round(&mut table);
    table
}

// `OPS` requests opened and timed out: timer insert and expiry.
#[library_benchmark]
#[bench::ops(setup = table)]
fn request_open_expire(mut table: RequestTable) -> RequestTable {
    timeout_round(&mut table);
    table
}

// ---- one shard, end to end ---------------------------------------------------

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn manual() -> Runtime {
    manual_with(1)
}

fn manual_with(shards: usize) -> Runtime {
    Runtime::builder()
        .shards(shards)
        .max_actors(8)
        .build_manual()
        .expect("manual runtime")
}

/// A manual runtime, the address that starts a round, and a count that a round
/// raises by `OPS`.
struct Rig {
    rt: Runtime,
    start: Address,
    trigger: Vec<u8>,
    count: Count,
}

/// Reads the count a round raises.
type Count = Box<dyn Fn(&Runtime) -> u64>;

impl Rig {
    fn round(&self) {
        self.rt.send(self.start, &self.trigger).expect("trigger");
        self.rt.run_until_stalled();
    }

    /// `rounds` warm-up rounds, the last checked (a request round needs its
    /// shard's request table past its pool of free slots, 4096 requests, to be in
    /// its steady state).
    fn warmed_for(self, rounds: u32) -> Rig {
        for _ in 1..rounds {
            self.round();
        }
        self.warmed()
    }

    /// A warm-up round, checked: the benchmark measures the steady state.
    fn warmed(self) -> Rig {
        let before = (self.count)(&self.rt);
        self.round();
        assert_eq!((self.count)(&self.rt), before + u64::from(OPS));
        self
    }
}

fn handled(name: &'static str) -> Count {
    Box::new(move |rt: &Runtime| rt.stats().actor(name).expect(name).handled)
}

/// A component producer blasting `OPS` 8-byte messages at a counter component
/// (granted exactly that: the grant check is measured).
fn components_rig() -> Rig {
    components_rig_with(None)
}

/// The same with a quota on the producer, one it never reaches: what checking
/// and spending a quota costs.
fn components_with_quota_rig() -> Rig {
    components_rig_with(Some(Rate::new(wasmshard::MAX_RATE, u32::MAX)))
}

/// Spawns the fixture `sender` (named after it), configured with and granted
/// exactly the actor `sink` (lookup and send), with `rate` as its quota.
fn sender(rt: &Runtime, sender: &str, rate: Option<Rate>) -> Address {
    let component = rt.load_component_file(fixture(sender)).unwrap();
    rt.spawn(
        &component,
        SpawnOptions::new(sender.trim_end_matches(".wat"))
            .config("sink")
            .grants(Grants::none().lookup(["sink"]).send(["sink"]))
            .rate(rate),
    )
    .unwrap()
}

fn components_rig_with(rate: Option<Rate>) -> Rig {
    let rt = manual();
    let counter = rt.load_component_file(fixture("counter.wat")).unwrap();
    rt.spawn(&counter, SpawnOptions::new("sink")).unwrap();
    let start = sender(&rt, "producer.wat", rate);
    let trigger = [OPS, 0, 8].iter().flat_map(|v| v.to_le_bytes()).collect();
    Rig {
        rt,
        start,
        trigger,
        count: handled("sink"),
    }
    .warmed()
}

/// A native actor named `sink` that counts what it receives, and that count.
fn counting_sink(rt: &Runtime, shard: usize) -> (Address, Count) {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let sink = rt
        .spawn_native(
            "sink",
            Some(shard),
            move |_: &mut Context<'_>, _, _: &[u8]| {
                counter.fetch_add(1, Ordering::Relaxed);
            },
        )
        .unwrap();
    (sink, Box::new(move |_| seen.load(Ordering::Relaxed)))
}

/// The same with native actors: the runtime's own cost.
fn natives_rig() -> Rig {
    natives_rig_on(1)
}

/// The same across two shards (the producer on shard 0, the sink on shard 1):
/// what a cross-shard send adds on one thread (the ring push, the receiving
/// shard's drain), without the handoff between cores.
fn natives_cross_rig() -> Rig {
    natives_rig_on(2)
}

fn natives_rig_on(shards: usize) -> Rig {
    let rt = manual_with(shards);
    let (sink, count) = counting_sink(&rt, shards - 1);
    let start = rt
        .spawn_native(
            "producer",
            Some(0),
            move |ctx: &mut Context<'_>, _, _: &[u8]| {
                for i in 0..u64::from(OPS) {
                    ctx.send(sink, &i.to_le_bytes()).expect("send");
                }
            },
        )
        .unwrap();
    Rig {
        rt,
        start,
        trigger: b"go".to_vec(),
        count,
    }
    .warmed()
}

/// A component (`framer.wat`) sending `OPS` 64-byte messages to a counting
/// native actor, one `send` each (`batch` 0) or in `send-frames` calls of
/// `batch` frames.
fn framer_rig(batch: u32) -> Rig {
    let rt = manual();
    let (_, count) = counting_sink(&rt, 0);
    let start = sender(&rt, "framer.wat", None);
    let mut trigger = OPS.to_le_bytes().to_vec();
    trigger.extend_from_slice(&batch.to_le_bytes());
    Rig {
        rt,
        start,
        trigger,
        count,
    }
    .warmed()
}

/// `OPS` sequential request round trips between two components (the requester
/// granted the responder).
fn requests_rig() -> Rig {
    let rt = manual();
    let rtt = rt.load_component_file(fixture("rtt.wat")).unwrap();
    let responder = rt.load_component_file(fixture("responder.wat")).unwrap();
    rt.spawn(&responder, SpawnOptions::new("responder"))
        .unwrap();
    let start = rt
        .spawn(
            &rtt,
            SpawnOptions::new("rtt")
                .config("responder")
                .grants(Grants::none().lookup(["responder"]).request(["responder"])),
        )
        .unwrap();
    // 8 bytes, as the floor's requests carry.
    let mut trigger = OPS.to_le_bytes().to_vec();
    trigger.extend_from_slice(&[0; 4]);
    Rig {
        rt,
        start,
        trigger,
        count: handled("responder"),
    }
    .warmed_for(4096 / OPS + 2)
}

/// Asks `target` once per response until it has asked the number a message
/// gave it.
struct Asker {
    target: Address,
    left: u32,
}

impl Asker {
    fn ask(&mut self, ctx: &mut Context<'_>) {
        self.left -= 1;
        ctx.request(self.target, b"question", Duration::from_secs(60))
            .expect("request");
    }
}

impl NativeActor for Asker {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        self.left = u32::from_le_bytes(payload.try_into().expect("a count"));
        self.ask(ctx);
    }

    fn handle_response(&mut self, ctx: &mut Context<'_>, _: u64, r: Result<&[u8], RequestError>) {
        r.expect("an answer");
        if self.left > 0 {
            self.ask(ctx);
        }
    }
}

/// `OPS` sequential request round trips between native actors, on one shard
/// or across two (the asker on shard 0, the answerer on the last).
fn native_requests_rig(shards: usize) -> Rig {
    let rt = manual_with(shards);
    let answerer = rt
        .spawn_native("answerer", Some(shards - 1), Responder)
        .unwrap();
    let start = rt
        .spawn_native(
            "asker",
            Some(0),
            Asker {
                target: answerer,
                left: 0,
            },
        )
        .unwrap();
    Rig {
        rt,
        start,
        trigger: OPS.to_le_bytes().to_vec(),
        count: handled("answerer"),
    }
    .warmed_for(4096 / OPS + 2)
}

fn native_requests_one_shard() -> Rig {
    native_requests_rig(1)
}

fn native_requests_cross() -> Rig {
    native_requests_rig(2)
}

/// `OPS` host sends to a native actor, each admitted, queued, delivered, handled.
fn host_rig() -> Rig {
    let rt = manual();
    let (sink, count) = counting_sink(&rt, 0);
    let rig = Rig {
        rt,
        start: sink,
        trigger: Vec::new(),
        count,
    };
    host_round(&rig);
    assert_eq!((rig.count)(&rig.rt), u64::from(OPS));
    rig
}

fn host_round(rig: &Rig) {
    for i in 0..u64::from(OPS) {
        rig.rt.send(rig.start, &i.to_le_bytes()).expect("send");
    }
    rig.rt.run_until_stalled();
}

/// A native actor that sets `OPS` timers of no delay when told, and counts
/// them as they fire (from itself): schedule, arm, expiry, delivery, turn.
fn timers_fire_rig() -> Rig {
    let rt = manual();
    let fired = Arc::new(AtomicU64::new(0));
    let seen = fired.clone();
    let start = rt
        .spawn_native(
            "clock",
            None,
            move |ctx: &mut Context<'_>, from: Address, _: &[u8]| {
                if from == ctx.self_address() {
                    seen.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                for i in 0..u64::from(OPS) {
                    ctx.schedule(Duration::ZERO, &i.to_le_bytes())
                        .expect("schedule");
                }
            },
        )
        .unwrap();
    Rig {
        rt,
        start,
        trigger: b"go".to_vec(),
        count: Box::new(move |_| fired.load(Ordering::Relaxed)),
    }
    .warmed_for(4096 / OPS + 2)
}

/// A native actor that sets `OPS` timers an hour away and cancels each at
/// once, counting the cancellations.
fn timers_cancel_rig() -> Rig {
    let rt = manual();
    let cancelled = Arc::new(AtomicU64::new(0));
    let seen = cancelled.clone();
    let start = rt
        .spawn_native(
            "clock",
            None,
            move |ctx: &mut Context<'_>, _: Address, _: &[u8]| {
                for i in 0..u64::from(OPS) {
                    let id = ctx
                        .schedule(Duration::from_secs(3600), &i.to_le_bytes())
                        .expect("schedule");
                    if ctx.cancel_timer(id) {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
        )
        .unwrap();
    Rig {
        rt,
        start,
        trigger: b"go".to_vec(),
        count: Box::new(move |_| cancelled.load(Ordering::Relaxed)),
    }
    .warmed_for(4096 / OPS + 2)
}

/// The bare-wasmtime floor of `workload` (the same guest calls with no runtime
/// around them), warmed by one round.
fn floor(workload: Workload) -> Floor {
    let params = Params {
        payload: 8,
        ..Params::default()
    };
    let mut floor = Floor::new(workload, &params).expect("floor");
    floor.run(u64::from(OPS)).expect("floor round");
    floor
}

/// `store.wat` holding one entry (an 8-byte key, a 32-byte value), asked by a
/// round's message to `get` it `OPS` times (the fixture traps if one misses, so
/// a handled round is `OPS` answered gets).
fn storage_rig() -> Rig {
    let rt = manual();
    let store = rt.load_component_file(fixture("store.wat")).unwrap();
    let start = rt.spawn(&store, SpawnOptions::new("store")).unwrap();
    let command = |mode: u8, n: u32| {
        let mut msg = vec![mode, 0, 0, 0];
        msg.extend_from_slice(&n.to_le_bytes());
        msg
    };
    rt.send(start, &command(b's', 1)).unwrap();
    rt.run_until_stalled();
    Rig {
        rt,
        start,
        trigger: command(b'g', OPS),
        count: Box::new(|rt: &Runtime| {
            let stats = rt.stats();
            let a = stats.actor("store").expect("store");
            assert!(a.alive && a.failure.is_none(), "{a:?}");
            a.handled * u64::from(OPS)
        }),
    }
    .warmed()
}

/// The floor of a storage `get`, warmed by one round.
fn storage_floor() -> StorageFloor {
    let mut floor = StorageFloor::new().expect("storage floor");
    floor.run(b'g', OPS).expect("floor round");
    floor
}

// `OPS` storage `get`s by a component, in one message.
#[library_benchmark]
#[bench::get(setup = storage_rig)]
fn storage(rig: Rig) -> Rig {
    rig.round();
    rig
}

// Their floor: the same calls on plain wasmtime, the host keeping nothing.
#[library_benchmark]
#[bench::get(setup = storage_floor)]
fn storage_floors(mut floor: StorageFloor) -> StorageFloor {
    floor.run(b'g', OPS).expect("floor round");
    floor
}

// Guest send → guest handle on one shard, `OPS` messages.
#[library_benchmark]
#[bench::components(setup = components_rig)]
#[bench::components_with_quota(setup = components_with_quota_rig)]
#[bench::natives(setup = natives_rig)]
#[bench::natives_cross(setup = natives_cross_rig)]
fn route(rig: Rig) -> Rig {
    rig.round();
    rig
}

// A component's sends to a native actor: one `send` call each, or
// `send-frames` calls of 50 frames (the sending side of the batch lane).
#[library_benchmark]
#[bench::send(args = (0), setup = framer_rig)]
#[bench::frames_50(args = (50), setup = framer_rig)]
fn sends(rig: Rig) -> Rig {
    rig.round();
    rig
}

/// A component (`framer.wat`) sending `OPS` 64-byte messages in
/// `send-frames` calls of 50 frames to a batched component (`batcount.wat`),
/// which takes them in `handle-messages` calls of the turn's batch (64, then
/// the 36 left): the batch lane end to end.
fn batched_rig() -> Rig {
    let rt = manual();
    let batcount = rt.load_component_file(fixture("batcount.wat")).unwrap();
    rt.spawn(&batcount, SpawnOptions::new("sink")).unwrap();
    let start = sender(&rt, "framer.wat", None);
    let trigger = [OPS, 50].iter().flat_map(|v| v.to_le_bytes()).collect();
    Rig {
        rt,
        start,
        trigger,
        count: handled("sink"),
    }
    .warmed()
}

// Component → component through the batch lane (`send-frames` out,
// `handle-messages` in).
#[library_benchmark]
#[bench::components(setup = batched_rig)]
fn batched(rig: Rig) -> Rig {
    rig.round();
    rig
}

// Request → response round trips between two components on one shard, and
// between native actors on one shard and across two (one thread: the
// cross-shard pieces without the handoff between cores).
#[library_benchmark]
#[bench::components(setup = requests_rig)]
#[bench::natives(setup = native_requests_one_shard)]
#[bench::natives_cross(setup = native_requests_cross)]
fn request_round_trip(rig: Rig) -> Rig {
    rig.round();
    rig
}

// The floors of `route` and `request_round_trip`: what wasmtime alone costs.
#[library_benchmark]
#[bench::tell(args = (Workload::Tell), setup = floor)]
#[bench::tell_batch(args = (Workload::TellBatch), setup = floor)]
#[bench::request(args = (Workload::Request), setup = floor)]
fn floors(mut floor: Floor) -> Floor {
    floor.run(u64::from(OPS)).expect("floor round");
    floor
}

// `OPS` timers set by a native actor and fired back to it, or set and
// cancelled at once.
#[library_benchmark]
#[bench::schedule_fire(setup = timers_fire_rig)]
#[bench::schedule_cancel(setup = timers_cancel_rig)]
fn timers(rig: Rig) -> Rig {
    rig.round();
    rig
}

// Host send → native handle on one shard: admission, host queue, delivery, turn.
#[library_benchmark]
#[bench::natives(setup = host_rig)]
fn host_send(rig: Rig) -> Rig {
    host_round(&rig);
    rig
}

library_benchmark_group!(
    name = queues;
    benchmarks = ring_push_pop, mailbox_push_pop, slot_admit_release
);

library_benchmark_group!(
    name = table;
    benchmarks = request_open_close, timer_insert_cancel, request_open_expire
);

library_benchmark_group!(
    name = shard;
    benchmarks = route, request_round_trip, floors, host_send, timers, storage, storage_floors, sends,
        batched
);

main!(library_benchmark_groups = queues, table, shard);
