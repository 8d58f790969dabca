//! The `wasmshard` command: run a manifest, inspect a component, run the benchmark
//! workloads.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmshard::manifest::{Manifest, RunReport};
use wasmshard::{LogRecord, Runtime};

#[derive(Parser)]
#[command(
    name = "wasmshard",
    version,
    about = "Run WebAssembly components as actors on a sharded scheduler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Spawn the actors a manifest describes, deliver its messages, run until idle,
    /// shut down, and print per-actor counters.
    Run {
        /// The TOML manifest.
        manifest: PathBuf,
        /// Stop after this long even if not idle (e.g. 500ms, 2s, 1m 30s).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Print the report as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show what a file is, its imports and exports, and whether it fits the world.
    Inspect {
        /// A .wasm or .wat file: component or core module.
        file: PathBuf,
    },
    /// Run benchmark workloads on the bundled fixtures and print each beside its
    /// bare-wasmtime floor.
    Bench {
        /// Workloads to run (default: all): tell, tell-cross, ping-pong, request,
        /// request-cross, fan-out, ring, counting, spawn.
        workloads: Vec<String>,
        /// Shards for the workloads that spread over shards (default: the machine's
        /// available parallelism, at least 2).
        #[arg(long)]
        shards: Option<usize>,
        /// Operations measured per workload (messages, round trips, hops or spawns).
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        /// Payload bytes per message (8 to 1024).
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Which actors: component, native, or both.
        #[arg(long, default_value = "both")]
        actors: String,
        /// Print the results as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // The runtime's own messages: warnings and errors unless RUST_LOG says otherwise.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            manifest,
            duration,
            json,
        } => run(&manifest, duration, json),
        Command::Inspect { file } => inspect(&file),
        Command::Bench {
            workloads,
            shards,
            messages,
            payload,
            actors,
            json,
        } => bench(&workloads, shards, messages, payload, &actors, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // The error and every cause, on one line.
            eprintln!("wasmshard: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(path: &PathBuf, duration: Option<Duration>, json: bool) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::from_file(path)?;
    let builder = manifest.builder().log_sink(|r: &LogRecord| {
        eprintln!("[{}] {}: {}", r.name, r.level.wit_name(), r.message);
    });
    let report = manifest.run(builder, duration)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &RunReport) {
    let width = report
        .actors
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:>5}  {:>10}  {:>10}  {:>10}  failure",
        "name", "shard", "received", "sent", "handled"
    );
    for a in &report.actors {
        println!(
            "{:<width$}  {:>5}  {:>10}  {:>10}  {:>10}  {}",
            a.name,
            a.shard,
            a.received,
            a.sent,
            a.handled,
            a.failure.as_deref().unwrap_or("-")
        );
    }
    println!();
    println!("dead letters: {}", report.dead_letters);
    if report.undelivered_sends > 0 {
        println!("manifest sends not delivered: {}", report.undelivered_sends);
    }
    println!(
        "{} in {:.3} ms",
        if report.idle {
            "ran to idle"
        } else {
            "stopped at the time limit"
        },
        report.elapsed.as_secs_f64() * 1e3
    );
}

fn inspect(path: &PathBuf) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let runtime = Runtime::builder().shards(1).max_actors(4).build()?;
    let i = runtime
        .inspect(&bytes)
        .with_context(|| path.display().to_string())?;
    println!("file: {}", path.display());
    println!("kind: {}", i.kind);
    println!("imports:");
    for name in &i.imports {
        println!("  {name}");
    }
    println!("exports:");
    for name in &i.exports {
        println!("  {name}");
    }
    match &i.fit {
        Ok(()) => {
            println!("fits wasmshard:actor/component: yes");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("fits wasmshard:actor/component: no: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

fn bench(
    names: &[String],
    shards: Option<usize>,
    messages: u64,
    payload: usize,
    actors: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use wasmshard::bench::{Actors, Params, Workload, measure};

    let workloads = if names.is_empty() {
        Workload::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| {
                Workload::from_name(n).ok_or_else(|| {
                    let all: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                    anyhow::anyhow!("no workload `{n}`; there are: {}", all.join(", "))
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let kinds: &[Actors] = match actors {
        "both" => &[Actors::Component, Actors::Native],
        "component" => &[Actors::Component],
        "native" => &[Actors::Native],
        other => anyhow::bail!("--actors {other}: expected component, native or both"),
    };
    if messages == 0 {
        anyhow::bail!("--messages must be at least 1");
    }
    let shards = shards.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2)
    });
    let params = Params {
        shards,
        payload,
        ..Params::default()
    };
    let runs: Vec<(Workload, Actors)> = workloads
        .iter()
        .flat_map(|w| kinds.iter().map(move |a| (*w, *a)))
        .collect();
    let mut results = Vec::new();
    for (i, (workload, actors)) in runs.iter().enumerate() {
        eprint!(
            "[{}/{}] {workload} ({}) ... ",
            i + 1,
            runs.len(),
            actors.name()
        );
        let started = std::time::Instant::now();
        let m = measure(*workload, *actors, &params, messages).inspect_err(|_| {
            eprintln!("failed");
        })?;
        eprintln!("{:.1} s", started.elapsed().as_secs_f64());
        results.push(m);
    }
    if json {
        println!("{}", serde_json::json!({ "results": results }));
        return Ok(ExitCode::SUCCESS);
    }
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
    };
    println!(
        "{:<14} {:<9} {:>6} {:>9} {:>10} {:>12} {:>9} {:>6} {:>9} {:>9}",
        "workload",
        "actors",
        "shards",
        "messages",
        "ns/op",
        "ops/s",
        "floor ns",
        "ratio",
        "p50 ns",
        "p99 ns"
    );
    for m in &results {
        println!(
            "{:<14} {:<9} {:>6} {:>9} {:>10.1} {:>12.0} {:>9} {:>6} {:>9} {:>9}",
            m.workload,
            m.actors.name(),
            m.shards,
            m.messages,
            m.ns_per_op,
            m.ops_per_sec,
            opt(m.floor_ns, 1),
            opt(m.ratio, 2),
            opt(m.p50_ns, 0),
            opt(m.p99_ns, 0),
        );
    }
    for m in results.iter().filter(|m| m.bytes_per_actor.is_some()) {
        println!(
            "{} ({}): {} bytes resident per idle actor",
            m.workload,
            m.actors.name(),
            m.bytes_per_actor.unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
