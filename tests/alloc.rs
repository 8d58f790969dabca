//! Steady-state messaging and requests perform no heap allocation (payloads up to
//! 64 bytes): component and native messaging on one shard and across shards,
//! fan-in, rings that overflow, request round trips, deferred replies, timeouts
//! and cancels; no memory held on as actors churn, as requests go on with a
//! monitor open, as a never-idle actor's started requests are cancelled, or
//! as timers are set and cancelled in one call;
//! and a positive control shows the counter sees the shards' allocations.
//!
//! A test binary of its own, because it installs a counting global allocator. The
//! count covers every thread, the host's included, so the test leaves a small,
//! fixed allowance for the host's one kick-off send and idle wait; a per-message
//! allocation would show up as tens of thousands.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmshard::{Address, Context, Grants, NativeActor, Runtime, SpawnOptions};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not freed.
static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, adding only a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size as u64, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MESSAGES: u32 = 50_000;
/// Allocations allowed for the host's kick-off send and idle wait, whatever the
/// number of messages.
const HOST_ALLOWANCE: u64 = 16;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Spawns the producer (shard 0) → seqcheck (`checker_shard`) pipeline; returns
/// the producer.
fn pipeline(rt: &Runtime, checker_shard: usize) -> Address {
    let producer = rt.load_component_file(fixture("producer.wat")).unwrap();
    let seqcheck = rt.load_component_file(fixture("seqcheck.wat")).unwrap();
    rt.spawn(&seqcheck, SpawnOptions::new("check").shard(checker_shard))
        .unwrap();
    rt.spawn(
        &producer,
        SpawnOptions::new("producer")
            .config("check")
            .shard(0)
            .grants(Grants::none().lookup(["check"]).send(["check"])),
    )
    .unwrap()
}

/// The producer's command: `MESSAGES` sequenced messages of `size` bytes, reliably.
fn command(size: u32) -> Vec<u8> {
    [MESSAGES, 1, size]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// The checker saw two rounds, complete and in order.
fn assert_two_rounds_checked(rt: &Runtime) {
    let stats = rt.stats();
    let check = stats.actor("check").unwrap();
    assert_eq!(check.failure, None);
    assert_eq!(check.handled, 2 * MESSAGES as u64);
}

/// Runs the producer → seqcheck pipeline once and returns the allocations made.
fn run_once(rt: &Runtime, producer: Address, size: u32) -> u64 {
    let cmd = command(size);
    let before = ALLOCS.load(Ordering::SeqCst);
    rt.send(producer, &cmd).unwrap();
    assert!(rt.wait_idle(Duration::from_secs(120)));
    ALLOCS.load(Ordering::SeqCst) - before
}

fn steady_state(shards: usize, checker_shard: usize, size: u32) {
    let rt = Runtime::builder()
        .shards(shards)
        .max_actors(8)
        .mailbox_capacity(256)
        .build()
        .unwrap();
    let p = pipeline(&rt, checker_shard);
    // A native actor beside them, so a shard with one is measured too.
    rt.spawn_native("sink", Some(0), |_: &mut Context<'_>, _, _: &[u8]| {})
        .unwrap();
    // Warm up: mailboxes, rings' overflow buffers and the ready queue reach their
    // steady-state capacity.
    run_once(&rt, p, size);
    let allocs = run_once(&rt, p, size);
    assert_two_rounds_checked(&rt);
    assert!(
        allocs <= HOST_ALLOWANCE,
        "{allocs} allocations for {MESSAGES} messages of {size} bytes on {shards} shard(s)"
    );
}

/// Sequential request round trips (rtt → responder): the measured run, after a
/// warm-up, allocates at most the host's small allowance.
fn requests_steady_state(shards: usize, responder_shard: usize) {
    let rt = Runtime::builder()
        .shards(shards)
        .max_actors(8)
        .build()
        .unwrap();
    let rtt = rt.load_component_file(fixture("rtt.wat")).unwrap();
    let responder = rt.load_component_file(fixture("responder.wat")).unwrap();
    rt.spawn(
        &responder,
        SpawnOptions::new("responder").shard(responder_shard),
    )
    .unwrap();
    let r = rt
        .spawn(
            &rtt,
            SpawnOptions::new("rtt")
                .config("responder")
                .shard(0)
                .grants(Grants::none().lookup(["responder"]).request(["responder"])),
        )
        .unwrap();
    let run = |n: u32| {
        let mut msg = [0u8; 64];
        msg[..4].copy_from_slice(&n.to_le_bytes());
        let before = ALLOCS.load(Ordering::SeqCst);
        rt.send(r, &msg).unwrap();
        assert!(rt.wait_idle(Duration::from_secs(120)));
        ALLOCS.load(Ordering::SeqCst) - before
    };
    run(MESSAGES / 10);
    let allocs = run(MESSAGES / 10);
    let answered: u64 = rt.stats().shards.iter().map(|s| s.requests.answered).sum();
    assert_eq!(answered, 2 * (MESSAGES / 10) as u64);
    assert!(
        allocs <= HOST_ALLOWANCE,
        "{allocs} allocations for {} request round trips on {shards} shard(s)",
        MESSAGES / 10
    );
}

/// Request round trips on one shard while a monitor is open there hold no
/// more memory as they go on: each made and answered within one step of a
/// manual runtime, so no request is open when the shard reads the clock (the
/// requests made since the last reading were kept, 16 bytes each, while any
/// monitor was open).
fn requests_with_a_monitor_open() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .build_manual()
        .unwrap();
    let echo = rt.spawn_native("echo", Some(0), Echo).unwrap();
    let watcher = rt
        .spawn_native(
            "watcher",
            Some(0),
            move |ctx: &mut Context<'_>, _, _: &[u8]| {
                ctx.monitor(echo).unwrap();
            },
        )
        .unwrap();
    rt.send(watcher, b"watch").unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.stats().shards[0].requests.monitors, 1);
    let asker = rt
        .spawn_native(
            "asker",
            Some(0),
            move |ctx: &mut Context<'_>, _, _: &[u8]| {
                ctx.request(echo, b"q", Duration::from_secs(60)).unwrap();
            },
        )
        .unwrap();
    let run = |n: u32| {
        let before = LIVE.load(Ordering::SeqCst);
        for _ in 0..n {
            rt.send(asker, b"ask").unwrap();
            rt.run_until_stalled();
        }
        LIVE.load(Ordering::SeqCst).saturating_sub(before)
    };
    run(MESSAGES / 10);
    let grew = run(MESSAGES / 10);
    assert_eq!(
        rt.stats().shards[0].requests.answered,
        2 * u64::from(MESSAGES / 10)
    );
    assert!(
        grew < 4096,
        "{grew} bytes more held after {} request round trips with a monitor open",
        MESSAGES / 10
    );
}

/// Never idle (it messages itself every turn from `go` on); holds every
/// request it gets, and answers those it holds when told `answer`.
struct Busy {
    held: Vec<u64>,
}

impl NativeActor for Busy {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        if payload == b"answer" {
            for id in self.held.drain(..) {
                let _ = ctx.respond(id, b"late");
            }
            return;
        }
        let me = ctx.self_address();
        ctx.send(me, b"again").unwrap();
    }

    fn handle_request(
        &mut self,
        _: &mut Context<'_>,
        _: Address,
        id: u64,
        _: &[u8],
    ) -> Option<Vec<u8>> {
        self.held.push(id);
        None
    }
}

/// An actor that is never idle holds no more memory as requests it already
/// started are cancelled: a cancel after the start has nothing left to shed
/// (it used to leave the request's id marked until the mailbox next
/// emptied, which for this actor is never).
fn cancels_of_started_requests_on_a_busy_actor() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .build_manual()
        .unwrap();
    let busy = Busy {
        held: Vec::with_capacity(4),
    };
    let holder = rt.spawn_native("holder", Some(0), busy).unwrap();
    rt.send(holder, b"go").unwrap();
    rt.step();
    let run = |n: u32| {
        let before = LIVE.load(Ordering::SeqCst);
        for _ in 0..n {
            let reply = rt.request(holder, b"q", Duration::from_secs(60)).unwrap();
            // Delivered and started (held) in this pass.
            rt.step();
            assert_eq!(reply.try_get(), None);
            reply.cancel();
            // The cancel is taken in this one; the answer, late, in the next.
            rt.step();
            rt.send(holder, b"answer").unwrap();
            rt.step();
        }
        LIVE.load(Ordering::SeqCst).saturating_sub(before)
    };
    run(MESSAGES / 10);
    let grew = run(MESSAGES / 10);
    let stats = rt.stats();
    assert_eq!(
        stats.shards[0].requests.cancelled,
        2 * u64::from(MESSAGES / 10)
    );
    assert!(stats.actors[0].alive);
    assert!(
        grew < 4096,
        "{grew} bytes more held after {} cancels of started requests",
        MESSAGES / 10
    );
}

/// A timer set and cancelled over and over in one call, while another timer
/// is pending, holds no memory: the list of timers to arm at the next clock
/// reading used to keep every one of them (16 bytes each, and its room for
/// the life of the shard).
fn timers_set_and_cancelled_in_one_call() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .build_manual()
        .unwrap();
    let churner = rt
        .spawn_native(
            "churner",
            Some(0),
            |ctx: &mut Context<'_>, _, payload: &[u8]| {
                if payload == b"start" {
                    ctx.schedule(Duration::from_secs(3600), b"later").unwrap();
                    return;
                }
                let n = if payload == b"one" { 1 } else { 100_000 };
                for _ in 0..n {
                    let id = ctx.schedule(Duration::ZERO, b"").unwrap();
                    assert!(ctx.cancel_timer(id));
                }
            },
        )
        .unwrap();
    rt.send(churner, b"start").unwrap();
    rt.run_until_stalled();
    // The request table grows to its 4 096 free entries first (it reuses
    // an id's slot only after that many others), one timer a pass.
    for _ in 0..5_000 {
        rt.send(churner, b"one").unwrap();
        rt.run_until_stalled();
    }
    let before = LIVE.load(Ordering::SeqCst);
    rt.send(churner, b"churn").unwrap();
    rt.run_until_stalled();
    let grew = LIVE.load(Ordering::SeqCst).saturating_sub(before);
    // 100 000 timers kept to be armed would be 1.6 MB.
    assert!(grew < 64 << 10, "{grew} bytes more held after the churn");
    rt.stop(churner).unwrap();
    rt.run_until_stalled();
    let requests = rt.stats().shards[0].requests;
    assert_eq!(requests.scheduled, 105_001);
    assert_eq!(requests.unfired, 105_001);
}

/// On a manual runtime nothing else runs: a whole round (a host send, 50 000
/// component-to-component messages routed and handled on one shard, driven by
/// `run_until_stalled`) is counted exactly.
fn manual_steady_state() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .mailbox_capacity(256)
        .build_manual()
        .unwrap();
    let p = pipeline(&rt, 0);
    let cmd = command(8);
    let round = || {
        let before = ALLOCS.load(Ordering::SeqCst);
        rt.send(p, &cmd).unwrap();
        rt.run_until_stalled();
        ALLOCS.load(Ordering::SeqCst) - before
    };
    round();
    let allocs = round();
    assert_two_rounds_checked(&rt);
    // The host's send may start a new block of the host queue; nothing else may.
    assert!(allocs <= 1, "{allocs} allocations in a manual round");
}

/// Native actors: a producer sending `n` messages (carrying `size` bytes) to a
/// sink per command; `fan` producers on the given shards all send to one sink.
fn natives(
    rt: &Runtime,
    producers: &[usize],
    sink_shard: usize,
    n: u32,
    size: usize,
) -> Vec<Address> {
    let sink = rt
        .spawn_native(
            "sink",
            Some(sink_shard),
            |_: &mut Context<'_>, _, _: &[u8]| {},
        )
        .unwrap();
    producers
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            let payload = vec![7u8; size];
            rt.spawn_native(
                &format!("producer{i}"),
                Some(*shard),
                move |ctx: &mut Context<'_>, _, _: &[u8]| {
                    for _ in 0..n {
                        // Reliable: a full mailbox is retried while the sink
                        // drains it on another shard (the caller sizes the
                        // mailbox so that one on this shard never fills).
                        while ctx.send(sink, &payload).is_err() {
                            std::hint::spin_loop();
                        }
                    }
                },
            )
            .unwrap()
        })
        .collect()
}

/// Kicks every producer once and waits; returns the allocations made.
fn kick(rt: &Runtime, producers: &[Address]) -> u64 {
    let before = ALLOCS.load(Ordering::SeqCst);
    for p in producers {
        rt.send(*p, b"go").unwrap();
    }
    assert!(rt.wait_idle(Duration::from_secs(120)));
    ALLOCS.load(Ordering::SeqCst) - before
}

fn handled(rt: &Runtime, name: &str) -> u64 {
    rt.stats().actor(name).unwrap().handled
}

/// Native messaging on one shard and across shards, fan-in from both shards, and
/// a ring that overflows (a ring of 64 with thousands in flight): after a warm-up,
/// no allocation per message.
fn native_steady_state() {
    for (shards, producers, sink_shard, ring) in [
        (1, vec![0], 0, 4096),
        (2, vec![0], 1, 4096),
        (2, vec![0, 1, 1], 0, 4096),
        (2, vec![1], 0, 64),
    ] {
        let rt = Runtime::builder()
            .shards(shards)
            .max_actors(8)
            // Room for all a kick sends (three producers of MESSAGES / 5): a
            // producer on the sink's own shard cannot wait for the sink to drain
            // (it would spin in the sink's shard's turn forever).
            .mailbox_capacity(32_768)
            .ring_capacity(ring)
            .build()
            .unwrap();
        let ps = natives(&rt, &producers, sink_shard, MESSAGES / 5, 64);
        kick(&rt, &ps);
        let allocs = kick(&rt, &ps);
        let expect = 2 * u64::from(MESSAGES / 5) * ps.len() as u64;
        assert_eq!(handled(&rt, "sink"), expect);
        assert!(
            allocs <= HOST_ALLOWANCE,
            "{allocs} allocations: {} producers on shards {producers:?}, sink on {sink_shard}, ring {ring}",
            ps.len()
        );
    }
}

/// A native requester keeping `window` requests open at a time, 2000 in a round:
/// to a responder that defers each request and answers a window at once (deferred
/// replies), to an actor that defers and never answers, with a zero timeout
/// (timeouts), or to an echo, cancelling each request as soon as it is made
/// (cancels; the echo's replies arrive late).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Deferred,
    Timeouts,
    Cancels,
}

struct Requester {
    target: Address,
    mode: Mode,
    window: u32,
    left: u32,
    ended: u32,
}

impl NativeActor for Requester {
    fn handle_message(&mut self, ctx: &mut Context<'_>, _: Address, payload: &[u8]) {
        if payload == b"again" {
            return self.next(ctx);
        }
        self.left = 2000;
        self.ended = 0;
        for _ in 0..self.window {
            self.next(ctx);
        }
    }

    fn handle_response(
        &mut self,
        ctx: &mut Context<'_>,
        _: u64,
        r: Result<&[u8], wasmshard::RequestError>,
    ) {
        match self.mode {
            Mode::Deferred => assert!(r.is_ok()),
            Mode::Timeouts => assert_eq!(r, Err(wasmshard::RequestError::Timeout)),
            Mode::Cancels => unreachable!("a cancelled request gets no response"),
        }
        self.ended += 1;
        self.next(ctx);
    }
}

impl Requester {
    fn next(&mut self, ctx: &mut Context<'_>) {
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        let timeout = if self.mode == Mode::Timeouts {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs(60)
        };
        let id = match ctx.request(self.target, &[1; 16], timeout) {
            Ok(id) => id,
            Err(wasmshard::SendError::MailboxFull) => {
                // The target is behind: try again in a later turn.
                self.left += 1;
                ctx.send(ctx.self_address(), b"again").unwrap();
                return;
            }
            Err(e) => panic!("{e}"),
        };
        if self.mode == Mode::Cancels {
            assert!(ctx.cancel(id));
            self.ended += 1;
            // The next one, in a later turn (a message to itself).
            ctx.send(ctx.self_address(), b"again").unwrap();
        }
    }
}

/// Answers every request at once, with `respond` during the call (returning
/// `Some(Vec)` would allocate the Vec).
struct Echo;

impl NativeActor for Echo {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        id: u64,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        ctx.respond(id, payload).unwrap();
        None
    }
}

/// Defers every request, answering a window of them at once.
struct Deferrer {
    held: Vec<u64>,
    window: usize,
}

impl NativeActor for Deferrer {
    fn handle_message(&mut self, _: &mut Context<'_>, _: Address, _: &[u8]) {}

    fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: Address,
        id: u64,
        _: &[u8],
    ) -> Option<Vec<u8>> {
        self.held.push(id);
        if self.held.len() == self.window {
            for id in self.held.drain(..) {
                ctx.respond(id, &[2; 16]).unwrap();
            }
        }
        None
    }
}

fn requests_of_every_kind_steady_state() {
    for mode in [Mode::Deferred, Mode::Timeouts, Mode::Cancels] {
        let rt = Runtime::builder().shards(2).max_actors(8).build().unwrap();
        let window = 16;
        let target = match mode {
            Mode::Deferred => rt
                .spawn_native(
                    "target",
                    Some(1),
                    Deferrer {
                        held: Vec::with_capacity(window),
                        window,
                    },
                )
                .unwrap(),
            Mode::Timeouts => rt
                .spawn_native("target", Some(1), |_: &mut Context<'_>, _, _: &[u8]| {})
                .unwrap(),
            Mode::Cancels => rt.spawn_native("target", Some(1), Echo).unwrap(),
        };
        let requester = rt
            .spawn_native(
                "requester",
                Some(0),
                Requester {
                    target,
                    mode,
                    window: window as u32,
                    left: 0,
                    ended: 0,
                },
            )
            .unwrap();
        kick(&rt, &[requester]);
        let allocs = kick(&rt, &[requester]);
        let requests = rt.stats().shards[0].requests;
        assert_eq!(requests.made, 4000);
        assert_eq!(requests.open, 0);
        assert!(
            allocs <= HOST_ALLOWANCE,
            "{allocs} allocations for 2000 requests ({})",
            match mode {
                Mode::Deferred => "deferred replies",
                Mode::Timeouts => "timeouts",
                Mode::Cancels => "cancels",
            }
        );
    }
}

/// The counter sees what the shards allocate: an actor that allocates for every
/// message makes at least one allocation per message.
fn positive_control() {
    let rt = Runtime::builder().shards(2).max_actors(8).build().unwrap();
    let hog = rt
        .spawn_native("hog", Some(1), |_: &mut Context<'_>, _, payload: &[u8]| {
            std::hint::black_box(payload.to_vec().into_boxed_slice());
        })
        .unwrap();
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..1000 {
        rt.send(hog, &[1; 32]).unwrap();
    }
    assert!(rt.wait_idle(Duration::from_secs(120)));
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    assert_eq!(handled(&rt, "hog"), 1000);
    assert!(allocs >= 1000, "only {allocs} allocations were seen");
}

/// Spawning and stopping actors over and over holds no more memory than the
/// runtime's bounded bookkeeping (the most recent ended actors stay in the stats):
/// 100 000 spawns and stops after a warm-up leave the bytes held as they were.
fn churn_holds_no_memory() {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(64)
        .build_manual()
        .unwrap();
    let churn = |n: u32| {
        for _ in 0..n {
            let a = rt
                .spawn_native("churn", Some(0), |_: &mut Context<'_>, _, _: &[u8]| {})
                .unwrap();
            rt.send(a, b"x").unwrap();
            rt.run_until_stalled();
            rt.stop(a).unwrap();
        }
    };
    // Warm: the registry of ended actors fills, the slots are all used once.
    churn(5_000);
    let before = LIVE.load(Ordering::SeqCst);
    churn(100_000);
    let grew = LIVE.load(Ordering::SeqCst).saturating_sub(before);
    assert!(
        grew < 64 << 10,
        "{grew} bytes more are held after 100 000 spawns"
    );
}

#[test]
fn steady_state_messaging_does_not_allocate() {
    positive_control();
    churn_holds_no_memory();
    manual_steady_state();
    native_steady_state();
    requests_of_every_kind_steady_state();
    // One test function: the counter is global, so nothing may run beside it.
    for size in [8, 64] {
        steady_state(1, 0, size);
        steady_state(2, 1, size);
    }
    requests_steady_state(1, 0);
    requests_steady_state(2, 1);
    requests_with_a_monitor_open();
    cancels_of_started_requests_on_a_busy_actor();
    timers_set_and_cancelled_in_one_call();
}
