//! Criterion over the workloads of `wasmshard::bench`, the same code `wasmshard
//! bench` runs: for each workload, its bare-wasmtime floor, the components, and
//! native actors doing the same, measured in one run so their ratios compare.
//!
//! `RUST_LIB_BACKTRACE=0 cargo bench --bench workloads [-- FILTER]`, e.g.
//! `-- tell/` or `-- request`. Every system and floor checks its outcome (what was
//! sent was handled, every request answered) before it is timed and on every run.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use wasmshard::bench::{Actors, Floor, Params, System, Workload};

fn workloads(c: &mut Criterion) {
    let params = Params {
        shards: 2,
        ..Params::default()
    };
    for workload in Workload::ALL {
        let mut group = c.benchmark_group(workload.name());
        group.throughput(Throughput::Elements(1));
        group.measurement_time(Duration::from_secs(5));
        let mut floor = Floor::new(workload, &params).expect("floor");
        group.bench_function("floor_wasmtime", |b| {
            b.iter_custom(|iters| floor.run(iters).expect("floor run"))
        });
        for actors in [Actors::Component, Actors::Native] {
            let mut system = System::new(workload, actors, &params).expect("system");
            // Check before timing.
            system.run(1000).expect("checked run");
            group.bench_function(actors.name(), |b| {
                b.iter_custom(|iters| system.run(iters).expect("run"))
            });
            system.shutdown();
        }
        group.finish();
    }
}

criterion_group!(benches, workloads);
criterion_main!(benches);
