//! The `wasmshard` command: run a manifest, inspect a component, run the benchmark
//! workloads.
//!
//! Exit status: 0 when the command did what was asked (for `run`: the system ran
//! and no actor failed); 1 when it could not (a bad manifest, a component that
//! does not load, an actor that does not spawn, a file that is not WebAssembly;
//! for `inspect`: the file does not fit the world); 2 for bad arguments; 3 when
//! `run` ran but an actor failed (the report says which and why); 130 when `run`
//! was interrupted with Ctrl-C (after shutting down and printing the report).

mod bridge;
mod logs;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmshard::manifest::{Manifest, RunOptions, RunReport};
use wasmshard::{LogRecord, Runtime};

/// `run` ran, but an actor failed.
const ACTOR_FAILED: u8 = 3;
/// `run` was interrupted (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;

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
    /// shut down, and print per-actor counters. Exit status 3 if an actor ended
    /// failed (one restarted by its supervision did not);
    /// Ctrl-C shuts down and prints the report (exit status 130).
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
    /// Show what a file is, its imports and exports, and whether it fits the world
    /// (exit status 1 if it does not).
    Inspect {
        /// A .wasm or .wat file: component or core module.
        file: PathBuf,
    },
    /// Run benchmark workloads on the bundled fixtures and print each beside its
    /// bare-wasmtime floor.
    Bench {
        /// Workloads to run (default: all): tell, tell-batch, tell-cross, ping-pong,
        /// request, request-cross, fan-out, ring, counting, spawn.
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
        /// The components' grants: `exact` (each is granted the bench's actor
        /// names, so every send passes the grant check) or `all` (the runtime's
        /// `default-grants = "all"`).
        #[arg(long, default_value = "exact")]
        grants: String,
        /// With `spawn`: also spawn N idle actors into a fresh runtime and
        /// report the memory each holds, alive and once all are stopped (1 to
        /// 1 000 000; about 16 KB each; component actors past about 21 800
        /// need the kernel's vm.max_map_count raised).
        #[arg(long, value_name = "N")]
        density: Option<u64>,
        /// The runtime's park spin in microseconds (default: the runtime's, 50).
        #[arg(long, value_name = "US")]
        park_spin_us: Option<u64>,
        /// The longest spin an idle shard learns, in microseconds (default: the
        /// runtime's: 1000 with fewer shards than cores, else no adaptation);
        /// the park spin or less fixes the spin.
        #[arg(long, value_name = "US")]
        park_spin_max_us: Option<u64>,
        /// Pin shard i to core i (modulo the cores), so every workload puts
        /// shard 0 on the same core: on a machine whose cores run at different
        /// speeds, `tell` and `tell-cross` then compare like with like.
        #[arg(long)]
        pin_cores: bool,
        /// After the table, what each shard did in each measured run: turns,
        /// loops, parks, messages routed and taken from other shards, each per
        /// operation (the JSON output always carries them).
        #[arg(long)]
        stats: bool,
        /// Print the results as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // The runtime's own messages: warnings and errors unless RUST_LOG says
    // otherwise, and the message log (`log-messages`, always on: lines come
    // only if the manifest asks) as bare JSON lines, through the same
    // non-blocking queue as the actors' log lines. Every other line is made
    // one line starting with `[`, so no text of a guest's (a name, an
    // `init` error) can pass for a message-log line.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .filter_module(wasmshard::MESSAGE_LOG_TARGET, log::LevelFilter::Info)
        .format_timestamp(None)
        .format(|buf, record| {
            use std::io::Write;
            if record.target() == wasmshard::MESSAGE_LOG_TARGET {
                writeln!(buf, "{}", record.args())
            } else {
                let text = record.args().to_string();
                writeln!(
                    buf,
                    "[{:<5} {}] {}",
                    record.level(),
                    record.target(),
                    wasmshard::printable(&text)
                )
            }
        })
        .target(env_logger::Target::Pipe(Box::new(logs::LineWriter::new())))
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
            grants,
            density,
            park_spin_us,
            park_spin_max_us,
            pin_cores,
            stats,
            json,
        } => bench_params(shards, payload, &grants, density)
            .map(|p| wasmshard::bench::Params {
                park_spin: park_spin_us.map(Duration::from_micros),
                park_spin_max: park_spin_max_us.map(Duration::from_micros),
                pin_cores,
                ..p
            })
            .and_then(|params| bench(&workloads, messages, &actors, &params, stats, json)),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            // The error and every cause, on one line (a cause's text may
            // be a guest's: a trap's backtrace names its functions).
            logs::logs().line(format!(
                "wasmshard: {}",
                wasmshard::printable(&format!("{e:#}"))
            ));
            if e.is::<BadArgument>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    };
    logs::logs().flush();
    code
}

/// An argument that clap accepted and the command refuses (exit status 2, as
/// clap's own refusals).
#[derive(Debug)]
struct BadArgument(anyhow::Error);

impl std::fmt::Display for BadArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BadArgument {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Refuses an argument: exit status 2.
fn bad_argument(why: impl Into<anyhow::Error>) -> anyhow::Error {
    BadArgument(why.into()).into()
}

/// Writes `text` to stdout. A closed stdout (`| head`) ends the output quietly;
/// the exit status is still the command's.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        logs::logs().line(format!("wasmshard: cannot write the output: {e}"));
    }
}

fn run(path: &PathBuf, duration: Option<Duration>, json: bool) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::from_file(path)?;
    let builder = manifest.builder().log_sink(|r: &LogRecord| {
        // The message is one printable line already (the runtime escapes it).
        logs::logs().line(format!(
            "[{}] {}: {}",
            wasmshard::printable(&r.name),
            r.level.wit_name(),
            r.message
        ));
    });
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    // The first Ctrl-C shuts down gracefully and reports; a second one ends at once.
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(INTERRUPTED));
        }
    })
    .context("cannot handle Ctrl-C")?;
    let mut options = RunOptions::new().interrupt(interrupt);
    if let Some(limit) = duration {
        options = options.limit(limit);
    }
    let closed = match &manifest.nats {
        Some(nats) => {
            let (with_bridge, closed) = bridge::attach(&manifest, nats, options);
            options = with_bridge;
            Some(closed)
        }
        None => None,
    };
    let report = manifest.run_with(builder, options)?;
    let bridge = closed.and_then(|c| c.lock().ok().and_then(|mut s| s.take()));
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let (Some(stats), Some(map)) = (&bridge, value.as_object_mut()) {
            map.insert("bridge".into(), serde_json::to_value(stats)?);
        }
        print(&(serde_json::to_string(&value)? + "\n"));
    } else {
        let mut text = table(&report);
        if let Some(stats) = &bridge {
            text.push_str(&bridge::line(stats));
            text.push('\n');
        }
        print(&text);
    }
    Ok(if report.interrupted {
        ExitCode::from(INTERRUPTED)
    } else if report.actors.iter().any(|a| a.failed) {
        ExitCode::from(ACTOR_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn table(report: &RunReport) -> String {
    let mut out = String::new();
    let width = report
        .actors
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:>5}  {:>10}  {:>10}  {:>10}  {:>8}  {:>8}  {:>8}  failure",
        "name", "shard", "received", "sent", "handled", "denied", "limited", "restarts"
    );
    for a in &report.actors {
        let _ = writeln!(
            out,
            "{:<width$}  {:>5}  {:>10}  {:>10}  {:>10}  {:>8}  {:>8}  {:>8}  {}",
            a.name,
            a.shard,
            a.received,
            a.sent,
            a.handled,
            a.denied,
            a.rate_limited,
            a.restarts,
            match (&a.failure, a.failed) {
                (None, _) => "-".to_string(),
                // A failure's text may carry what a guest chose (a trap's
                // backtrace names its functions): one line, escaped.
                (Some(f), true) => wasmshard::printable(f).into_owned(),
                // Supervised, and restarted after it.
                (Some(f), false) => format!("(restarted) {}", wasmshard::printable(f)),
            }
        );
    }
    let _ = writeln!(out);
    if !report.topics.is_empty() {
        let width = report
            .topics
            .iter()
            .map(|t| wasmshard::printable(&t.topic).len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "{:<width$}  {:>11}  {:>10}  {:>10}  {:>10}",
            "topic", "subscribers", "published", "delivered", "refused"
        );
        for t in &report.topics {
            let _ = writeln!(
                out,
                "{:<width$}  {:>11}  {:>10}  {:>10}  {:>10}",
                // A guest picks its topics: one line, escaped.
                wasmshard::printable(&t.topic),
                t.subscribers,
                t.published,
                t.delivered,
                t.refused
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "dead letters: {}", report.dead_letters);
    if report.traced > 0 {
        let _ = writeln!(
            out,
            "traced: {} handled with a trace context",
            report.traced
        );
    }
    if !report.audit.is_empty() {
        let _ = writeln!(
            out,
            "denied by grants (the last {}, oldest first):",
            report.audit.len()
        );
        for d in &report.audit {
            let target = match (&d.target_name, d.target) {
                // A name it was denied (a topic, a component) is the
                // guest's: one line, escaped.
                (Some(name), Some(a)) => format!("`{}` ({a})", wasmshard::printable(name)),
                (Some(name), None) => format!("`{}`", wasmshard::printable(name)),
                (None, Some(a)) => a.to_string(),
                (None, None) => "-".into(),
            };
            let _ = writeln!(
                out,
                "  {:>12.6} s  `{}` ({}) {} {target}",
                d.at_ns as f64 / 1e9,
                d.from_name,
                d.from,
                d.operation
            );
        }
    }
    if report.undelivered_sends > 0 {
        let _ = writeln!(
            out,
            "manifest sends not delivered: {} ({} refused, the rest not made)",
            report.undelivered_sends, report.refused_sends
        );
    }
    let how = if report.idle {
        "ran to idle"
    } else if report.interrupted {
        "interrupted"
    } else {
        "stopped at the time limit"
    };
    let _ = writeln!(out, "{how} in {:.3} ms", report.elapsed.as_secs_f64() * 1e3);
    out
}

fn inspect(path: &PathBuf) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::builder().shards(1).max_actors(4).build()?;
    let i = runtime.inspect_file(path)?;
    let mut out = String::new();
    let _ = writeln!(out, "file: {}", path.display());
    let _ = writeln!(out, "kind: {}", i.kind);
    let _ = writeln!(out, "imports:");
    for name in &i.imports {
        let _ = writeln!(out, "  {name}");
    }
    let _ = writeln!(out, "exports:");
    for name in &i.exports {
        let _ = writeln!(out, "  {name}");
    }
    match &i.accepts {
        Ok(Some(codecs)) => {
            let names: Vec<_> = codecs.iter().map(|c| c.name()).collect();
            let _ = writeln!(out, "accepts: {}", names.join(", "));
        }
        Ok(None) => {
            let _ = writeln!(out, "accepts: any payload (no codecs declared)");
        }
        Err(why) => {
            let _ = writeln!(out, "accepts: {why}");
        }
    }
    let code = match &i.fit {
        Ok(()) => {
            let _ = writeln!(out, "fits wasmshard:actor/component: yes");
            ExitCode::SUCCESS
        }
        Err(why) => {
            let _ = writeln!(out, "fits wasmshard:actor/component: no: {why}");
            ExitCode::FAILURE
        }
    };
    print(&out);
    Ok(code)
}

/// The workloads' parameters from `bench`'s options.
fn bench_params(
    shards: Option<usize>,
    payload: usize,
    grants: &str,
    density: Option<u64>,
) -> anyhow::Result<wasmshard::bench::Params> {
    let shards = shards.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2)
    });
    let trusted = match grants {
        "exact" => false,
        "all" => true,
        other => {
            return Err(bad_argument(anyhow::anyhow!(
                "--grants {other}: expected exact or all"
            )));
        }
    };
    Ok(wasmshard::bench::Params {
        shards,
        payload,
        trusted,
        density,
        ..wasmshard::bench::Params::default()
    })
}

fn bench(
    names: &[String],
    messages: u64,
    actors: &str,
    params: &wasmshard::bench::Params,
    stats: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use wasmshard::bench::{Actors, Workload, measure};

    let workloads = if names.is_empty() {
        Workload::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| {
                Workload::from_name(n).ok_or_else(|| {
                    let all: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                    bad_argument(anyhow::anyhow!(
                        "no workload `{n}`; there are: {}",
                        all.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let kinds: &[Actors] = match actors {
        "both" => &[Actors::Component, Actors::Native],
        "component" => &[Actors::Component],
        "native" => &[Actors::Native],
        other => {
            return Err(bad_argument(anyhow::anyhow!(
                "--actors {other}: expected component, native or both"
            )));
        }
    };
    if !(1..=wasmshard::bench::MAX_MESSAGES).contains(&messages) {
        return Err(bad_argument(anyhow::anyhow!(
            "--messages {messages}: 1 to {} operations per workload",
            wasmshard::bench::MAX_MESSAGES
        )));
    }
    // Bad parameters are refused before anything runs.
    params.check().map_err(bad_argument)?;
    let runs: Vec<(Workload, Actors)> = workloads
        .iter()
        .flat_map(|w| kinds.iter().map(move |a| (*w, *a)))
        .collect();
    let mut results = Vec::new();
    for (i, (workload, actors)) in runs.iter().enumerate() {
        let started = std::time::Instant::now();
        let m = measure(*workload, *actors, params, messages);
        logs::logs().line(format!(
            "[{}/{}] {workload} ({}) ... {}",
            i + 1,
            runs.len(),
            actors.name(),
            match &m {
                Ok(_) => format!("{:.1} s", started.elapsed().as_secs_f64()),
                Err(_) => "failed".into(),
            }
        ));
        results.push(m?);
    }
    if json {
        print(&format!("{}\n", serde_json::json!({ "results": results })));
        return Ok(ExitCode::SUCCESS);
    }
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
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
        let _ = writeln!(
            out,
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
        let _ = writeln!(
            out,
            "{} ({}): {} bytes resident per idle actor",
            m.workload,
            m.actors.name(),
            m.bytes_per_actor.unwrap_or(0)
        );
    }
    for m in &results {
        let Some(d) = &m.density else { continue };
        let bytes = |b: Option<u64>| b.map_or_else(|| "-".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "{} ({}): {} of {} idle actors spawned, {} bytes resident each, {} left per actor \
             once all stopped{}",
            m.workload,
            m.actors.name(),
            d.spawned,
            d.asked,
            bytes(d.bytes_per_actor),
            bytes(d.left_per_actor),
            d.stopped_by
                .as_deref()
                .map_or_else(String::new, |why| format!(
                    "; stopped by: {}",
                    wasmshard::printable(why)
                )),
        );
    }
    if stats {
        let _ = writeln!(
            out,
            "\nper operation:  {:<14} {:<9} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "workload", "actors", "shard", "turns", "loops", "parks", "local", "remote", "in"
        );
        for m in &results {
            let per = |n: u64| n as f64 / m.messages as f64;
            for a in &m.activity {
                let _ = writeln!(
                    out,
                    "                {:<14} {:<9} {:>5} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                    m.workload,
                    m.actors.name(),
                    a.shard,
                    per(a.turns),
                    per(a.loops),
                    per(a.parks),
                    per(a.routed_local),
                    per(a.routed_remote),
                    per(a.remote_in),
                );
            }
        }
    }
    print(&out);
    Ok(ExitCode::SUCCESS)
}
