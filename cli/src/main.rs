//! The `wasmshard` command: run a manifest, inspect a component, run the benchmark
//! workloads.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
        /// Stop after this long even if not idle (e.g. 500ms, 2s, 1m).
        #[arg(long = "for", value_parser = parse_duration)]
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 500ms, 2s or 1m"))?;
    let secs = match unit.trim() {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("unknown unit `{u}` (use ns, us, ms, s, m or h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Sends the runtime's own warnings to stderr.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{}", r.args());
        }
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    let _ = log::set_logger(&StderrLogger).map(|()| log::set_max_level(log::LevelFilter::Warn));
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
            eprintln!("wasmshard: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(path: &PathBuf, duration: Option<Duration>, json: bool) -> Result<ExitCode, String> {
    let manifest = Manifest::from_file(path).map_err(|e| e.to_string())?;
    let builder = manifest.builder().log_sink(|r: &LogRecord| {
        eprintln!("[{}] {}: {}", r.name, r.level.wit_name(), r.message);
    });
    let report = manifest.run(builder, duration).map_err(|e| e.to_string())?;
    if json {
        println!("{}", to_json(&report));
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(report: &RunReport) -> serde_json::Value {
    let actors: Vec<_> = report
        .actors
        .iter()
        .map(|a| {
            serde_json::json!({
                "name": a.name,
                "address": a.address.to_bits(),
                "shard": a.shard,
                "received": a.received,
                "sent": a.sent,
                "handled": a.handled,
                "failure": a.failure,
            })
        })
        .collect();
    serde_json::json!({
        "actors": actors,
        "dead_letters": report.dead_letters,
        "elapsed_ns": report.elapsed.as_nanos() as u64,
    })
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

fn inspect(path: &PathBuf) -> Result<ExitCode, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let runtime = Runtime::builder()
        .shards(1)
        .max_actors(4)
        .build()
        .map_err(|e| e.to_string())?;
    let i = runtime
        .inspect(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
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
) -> Result<ExitCode, String> {
    use wasmshard::bench::{Actors, Params, Workload, measure};

    let workloads = if names.is_empty() {
        Workload::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| {
                Workload::from_name(n).ok_or_else(|| {
                    let all: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                    format!("no workload `{n}`; there are: {}", all.join(", "))
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let kinds: &[Actors] = match actors {
        "both" => &[Actors::Component, Actors::Native],
        "component" => &[Actors::Component],
        "native" => &[Actors::Native],
        other => {
            return Err(format!(
                "--actors {other}: expected component, native or both"
            ));
        }
    };
    if messages == 0 {
        return Err("--messages must be at least 1".into());
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
        let m = measure(*workload, *actors, &params, messages).map_err(|e| {
            eprintln!("failed");
            e.to_string()
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
