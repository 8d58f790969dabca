//! The request table on its own: slab insert+remove with timer insert+cancel
//! (`open_close`), and timer insert+expiry (`open_expire`).
//!
//! `cargo bench --bench request_table`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use wasmshard::internals::RequestTable;

fn request_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_table");
    let mut table = RequestTable::default();
    // Steady state: some requests stay open, as in a busy shard.
    let held: Vec<u64> = (0..1024).map(|i| table.open(1_000_000 + i)).collect();
    group.bench_function("open_close", |b| {
        b.iter(|| {
            let id = table.open(black_box(2_000_000));
            assert!(table.close(black_box(id)));
        })
    });
    group.bench_function("open_expire", |b| {
        b.iter(|| {
            table.open(black_box(0));
            black_box(table.expire(1).unwrap());
        })
    });
    assert_eq!(table.open_count(), held.len());
    group.finish();
}

criterion_group!(benches, request_table);
criterion_main!(benches);
