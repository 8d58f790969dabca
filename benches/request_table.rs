//! The request table on its own: slab insert+remove with timer insert+cancel
//! (`open_close`), and timer insert+expiry (`open_expire`); and the timer
//! structure it was chosen over, a hashed timing wheel, measured the same way
//! (`timers/…`).
//!
//! `cargo bench --bench request_table`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use wasmshard::internals::RequestTable;

fn request_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_table");
    let mut table = RequestTable::default();
    // Steady state: some requests stay open, as in a busy shard.
    let held: Vec<u64> = (0..1024).map(|i| table.open(1_000_000 + i)).collect();
    table.arm(0);
    // Answered before the shard's next clock reading: the request never reaches
    // the heap (`arm` drops it).
    group.bench_function("open_close", |b| {
        b.iter(|| {
            let id = table.open(black_box(2_000_000));
            assert!(table.close(black_box(id)));
            table.arm(black_box(1));
        })
    });
    group.bench_function("open_expire", |b| {
        b.iter(|| {
            table.open(black_box(0));
            table.arm(black_box(1));
            black_box(table.expire(1).unwrap());
        })
    });
    assert_eq!(table.open_count(), held.len());
    group.finish();
}

/// The alternative the heap was chosen over: a hashed timing wheel of 1 ms slots
/// (4 096 of them; later deadlines wait out whole turns of the wheel). Insert and
/// cancel are O(1), cancel removing the entry at once (each entry knows its place,
/// `swap_remove` moves one other); expiry walks every slot between the last tick
/// and now, and keeps entries that are due in a later turn.
struct Wheel {
    slots: Vec<Vec<(u64, u32)>>,
    /// Where each entry is filed: (wheel slot, index in it).
    place: Vec<(u32, u32)>,
    /// The next tick (ms) not yet expired.
    cursor: u64,
}

const SLOT_NS: u64 = 1_000_000;
const SLOTS: u64 = 4096;

impl Wheel {
    fn new(entries: usize) -> Wheel {
        Wheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            place: vec![(0, 0); entries],
            cursor: 0,
        }
    }

    /// Files entry `e` due at `deadline` ns.
    fn insert(&mut self, deadline: u64, e: u32) {
        let tick = (deadline / SLOT_NS).max(self.cursor);
        let w = (tick % SLOTS) as usize;
        self.place[e as usize] = (w as u32, self.slots[w].len() as u32);
        self.slots[w].push((deadline, e));
    }

    fn cancel(&mut self, e: u32) {
        let (w, i) = self.place[e as usize];
        let slot = &mut self.slots[w as usize];
        slot.swap_remove(i as usize);
        if let Some(&(_, moved)) = slot.get(i as usize) {
            self.place[moved as usize].1 = i;
        }
    }

    /// Expires everything due at `now`; returns how many fired.
    fn expire(&mut self, now: u64) -> usize {
        let mut fired = 0;
        let end = now / SLOT_NS;
        loop {
            let w = (self.cursor % SLOTS) as usize;
            let before = self.slots[w].len();
            self.slots[w].retain(|&(deadline, _)| deadline > now);
            fired += before - self.slots[w].len();
            for (i, &(_, e)) in self.slots[w].iter().enumerate() {
                self.place[e as usize] = (w as u32, i as u32);
            }
            if self.cursor >= end {
                break;
            }
            self.cursor += 1;
        }
        fired
    }
}

fn timer_choice(c: &mut Criterion) {
    let mut group = c.benchmark_group("timers");
    // 1 024 timers stay open (never due), as in `request_table`; each iteration adds one and
    // cancels it (a request answered before its timeout: the common case), or adds
    // one due now and expires it.
    let mut wheel = Wheel::new(2048);
    for e in 0..1024 {
        wheel.insert(u64::MAX / 4 + e as u64, e);
    }
    group.bench_function("wheel_insert_cancel", |b| {
        b.iter(|| {
            wheel.insert(black_box(2_000_000_000), 1500);
            wheel.cancel(black_box(1500));
        })
    });
    let mut now = 0u64;
    group.bench_function("wheel_insert_expire", |b| {
        b.iter(|| {
            now += SLOT_NS;
            wheel.insert(black_box(now), 1500);
            assert_eq!(wheel.expire(now), 1);
        })
    });
    let mut generation = 1u32;

    // The structure in use, alone (without the slab): a binary heap with the same
    // lazy cancel. Cancelled entries are popped when they reach the top; here they
    // are swept each time they outnumber the held ones, as `compact` does.
    let mut heap: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut live = vec![0u32; 2048];
    for s in 0..1024u64 {
        heap.push(Reverse((u64::MAX / 4 + s, s << 32 | 1)));
        live[s as usize] = 1;
    }
    group.bench_function("heap_insert_cancel", |b| {
        b.iter(|| {
            generation = generation.wrapping_add(1).max(1);
            heap.push(Reverse((
                black_box(2_000_000_000),
                1500 << 32 | generation as u64,
            )));
            live[1500] = generation;
            live[black_box(1500)] = 0;
            if heap.len() > 4 * 1024 {
                let mut v = std::mem::take(&mut heap).into_vec();
                v.retain(|Reverse((_, id))| live[(id >> 32) as usize] == *id as u32);
                heap = BinaryHeap::from(v);
            }
        })
    });
    let mut now = 0u64;
    group.bench_function("heap_insert_expire", |b| {
        b.iter(|| {
            now += SLOT_NS;
            generation = generation.wrapping_add(1).max(1);
            heap.push(Reverse((black_box(now), 1500 << 32 | generation as u64)));
            live[1500] = generation;
            let mut fired = 0;
            while let Some(Reverse((deadline, id))) = heap.peek().copied() {
                if deadline > now {
                    break;
                }
                heap.pop();
                if live[(id >> 32) as usize] == id as u32 {
                    live[(id >> 32) as usize] = 0;
                    fired += 1;
                }
            }
            assert_eq!(fired, 1);
        })
    });
    group.finish();
}

criterion_group!(benches, request_table, timer_choice);
criterion_main!(benches);
