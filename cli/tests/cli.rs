//! The `wasmshard` command line, run as a user runs it.

use std::path::PathBuf;
use std::process::Command;

/// A file of the repository's `fixtures/`.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

fn wasmshard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmshard"))
        .args(args)
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
fn run_prints_the_table() {
    let out = wasmshard(&["run", fixture("example.toml").to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for name in ["counter", "echo", "ping", "pong"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(name)),
            "{name} missing from\n{stdout}"
        );
    }
    assert!(stdout.contains("dead letters: 0"), "{stdout}");
    // Component logs go to stderr as `[name] level: message`.
    assert!(stderr.contains("[ping] info: rally done"), "{stderr}");
}

#[test]
fn run_json_has_the_documented_shape() {
    let out = wasmshard(&["run", fixture("example.toml").to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert!(v["elapsed_ns"].as_u64().unwrap() > 0);
    assert_eq!(v["dead_letters"], 0);
    assert_eq!(v["undelivered_sends"], 0);
    assert_eq!(v["refused_sends"], 0);
    assert_eq!(v["idle"], true);
    assert_eq!(v["interrupted"], false);
    let actors = v["actors"].as_array().unwrap();
    assert_eq!(actors.len(), 4);
    for a in actors {
        for key in [
            "name", "address", "shard", "received", "sent", "handled", "failure",
        ] {
            assert!(a.get(key).is_some(), "{key} missing in {a}");
        }
        assert!(a["failure"].is_null());
        // Addresses in the notation of the logs: 0x and 16 hex digits.
        let address = a["address"].as_str().unwrap();
        assert!(
            address.starts_with("0x") && address.len() == 18,
            "{address}"
        );
    }
    assert_eq!(v["audit"], serde_json::json!([]), "nothing was denied");
    let by = |n: &str| actors.iter().find(|a| a["name"] == n).unwrap().clone();
    assert_eq!(by("echo")["denied"], 0);
    // echo forwards its 100 hellos to the counter, which also gets one "report".
    assert_eq!(by("echo")["handled"], 100);
    assert_eq!(by("counter")["handled"], 101);
    // A rally of 1000 bounces: 1001 deliveries, split between the pair.
    let rally = by("ping")["handled"].as_u64().unwrap() + by("pong")["handled"].as_u64().unwrap();
    assert_eq!(rally, 1001);
}

#[test]
fn run_waits_for_requests_and_reports_their_outcomes() {
    let out = wasmshard(&["run", fixture("requests.toml").to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let done = |who: &str, ok: u32, timeout: u32| {
        format!(
            "[{who}] info: done ok={ok} timeout={timeout} cancelled=0 failed=0 stopped=0 unknown=0 mismatched=0 refused=0"
        )
    };
    // `run` calls the system idle only once every request has ended: the 50 ms
    // timeouts included.
    for line in [
        done("direct", 1000, 0),
        done("chained", 100, 0),
        done("impatient", 0, 10),
    ] {
        assert!(stderr.contains(&line), "missing `{line}` in\n{stderr}");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dead_letters"], 0);
}

#[test]
fn run_for_a_duration_stops_a_system_that_never_idles() {
    let dir = tempdir();
    let manifest = dir.join("forever.toml");
    std::fs::write(
        &manifest,
        format!(
            "[runtime]\nshards = 2\ndrain-timeout-ms = 0\n\
             [[actor]]\nname = \"ping\"\ncomponent = \"{p}\"\nconfig = \"pong\"\n\
             grants = {{ lookup = [\"pong\"], send = [\"pong\"] }}\n\
             [[actor]]\nname = \"pong\"\ncomponent = \"{p}\"\nconfig = \"ping\"\n\
             grants = {{ lookup = [\"ping\"], send = [\"ping\"] }}\n\
             [[send]]\nto = \"ping\"\npayload-hex = \"ffffffff\"\n",
            p = fixture("pingpong.wat").display()
        ),
    )
    .unwrap();
    let out = wasmshard(&[
        "run",
        manifest.to_str().unwrap(),
        "--for",
        "300ms",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The ball in play when it stopped ends one way: as a dead letter, or as a send
    // refused to its sender (its peer was stopped first).
    let total = |k: &str| {
        v["actors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a[k].as_u64().unwrap())
            .sum::<u64>()
    };
    let refused = total("handled") - total("sent"); // every handled ball tried one send
    assert_eq!(v["dead_letters"].as_u64().unwrap() + refused, 1, "{v}");
}

#[test]
fn a_bad_manifest_is_refused_clearly() {
    let dir = tempdir();
    let cases = [
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"nope.wat\"\n",
            "nope.wat",
        ),
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n[[send]]\nto = \"b\"\npayload = \"x\"\n",
            "`b`",
        ),
        ("[runtime]\nshardz = 2\n", "shardz"),
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n",
            "two actors",
        ),
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n[[send]]\nto = \"a\"\npayload-hex = \"abc\"\n",
            "hex",
        ),
        (
            "[runtime]\nshards = 0\n[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n",
            "shards",
        ),
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\naccepts = [\"cbor\", \"yaml\"]\n",
            "`yaml`",
        ),
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n[[send]]\nto = \"a\"\njson = \"{\"\n",
            "`json` is not JSON",
        ),
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n[[send]]\nto = \"a\"\njson = \"1\"\npayload = \"x\"\n",
            "not several",
        ),
        // A grant naming an operation that does not exist.
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\ngrants = { sned = [\"b\"] }\n",
            "unknown field `sned`, expected one of `send`, `request`, `lookup`",
        ),
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\ngrants = { send = [\"\"] }\n",
            "send grant",
        ),
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\nrate = { messages-per-sec = 0 }\n",
            "messages-per-sec must be 1 to",
        ),
        (
            "[runtime]\ndefault-grants = \"some\"\n[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n",
            "default-grants",
        ),
        // Repeats that add up past 2^64 overflowed the count of sends (a panic).
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n[[send]]\nto = \"a\"\npayload = \"x\"\nrepeat = 9223372036854775807\n[[send]]\nto = \"a\"\npayload = \"x\"\nrepeat = 9223372036854775807\n[[send]]\nto = \"a\"\npayload = \"x\"\nrepeat = 2\n",
            "repeats add up",
        ),
        // The bridge's tables.
        (
            "[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n[[export]]\nname = \"a\"\n",
            "need a [nats] table",
        ),
        (
            "[nats]\nurl = \"nats://127.0.0.1:1\"\nnode = \"b\"\n[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n[[import]]\nname = \"c\"\nnode = \"a\"\n[[import]]\nname = \"c\"\nnode = \"a\"\n",
            "`c@a` is imported twice",
        ),
        (
            "[nats]\nurl = \"nats://127.0.0.1:1\"\nnode = \"b\"\nqueit-ms = 5\n[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n",
            "queit-ms",
        ),
        (
            "[nats]\nurl = \"nats://127.0.0.1:1\"\nnode = \"b\"\n[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n[[send]]\nto = \"c@a\"\npayload = \"x\"\n",
            "no [[actor]] or [[import]]",
        ),
        (
            "[nats]\nurl = \"nats://127.0.0.1:1\"\nnode = \"b\"\nmax-request-timeout = \"forever\"\n[[actor]]\nname = \"a\"\ncomponent = \"x.wat\"\n",
            "[nats] max-request-timeout `forever` is not a duration",
        ),
        // Well-formed, but no server there: the run cannot start, and says why.
        (
            "[nats]\nurl = \"nats://127.0.0.1:1\"\nnode = \"b\"\n[[actor]]\nname = \"a\"\ncomponent = \"FIXTURES/counter.wat\"\n",
            "cannot connect to the NATS server at nats://127.0.0.1:1",
        ),
        (
            "[nats]\nurl = \"nats://127.0.0.1:1\"\nnode = \"b.c\"\n[[actor]]\nname = \"a\"\ncomponent = \"FIXTURES/counter.wat\"\n",
            "node `b.c` cannot be part of a NATS subject",
        ),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let path = manifest(&dir, &format!("bad{i}.toml"), text);
        let out = wasmshard(&["run", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "case {i} should fail: {stderr}");
        assert!(
            stderr.contains(expect),
            "case {i}: `{stderr}` should mention {expect}"
        );
    }
    let out = wasmshard(&["run", dir.join("missing.toml").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn inspect_describes_fit_and_misfit() {
    let out = wasmshard(&["inspect", fixture("echo.wat").to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("wasmshard:actor/host@0.1.0"));
    assert!(stdout.contains("wasmshard:actor/actor@0.1.0"));
    assert!(stdout.contains("fits wasmshard:actor/component: yes"));
    assert!(
        stdout.contains("accepts: any payload (no codecs declared)"),
        "{stdout}"
    );

    let dir = tempdir();
    // A component that declares its codecs; and one that names an unknown one.
    let echo = std::fs::read_to_string(fixture("echo.wat")).unwrap();
    for (section, says, fits) in [
        ("cbor, json", "accepts: cbor, json", true),
        ("cbor,yaml", "names the codec `yaml`", false),
    ] {
        let picky = dir.join("picky.wat");
        let text = echo.replacen(
            "(module",
            &format!("(module (@custom \"wasmshard:accepts\" \"{section}\")"),
            1,
        );
        std::fs::write(&picky, text).unwrap();
        let out = wasmshard(&["inspect", picky.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(says), "{stdout}");
        assert_eq!(out.status.success(), fits, "{stdout}");
    }
    let bad = dir.join("bad.wat");
    std::fs::write(&bad, "(module (memory (export \"memory\") 1))").unwrap();
    let out = wasmshard(&["inspect", bad.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("memory"), "{stdout}");
    assert!(
        stdout.contains("fits wasmshard:actor/component: no"),
        "{stdout}"
    );
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wasmshard-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bench_json_has_the_documented_shape() {
    let out = wasmshard(&[
        "bench",
        "tell",
        "ping-pong",
        "--messages",
        "2000",
        "--shards",
        "2",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Progress goes to stderr, one line per workload and kind of actor.
    assert!(stderr.contains("[1/4] tell (component)"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for r in results {
        for key in [
            "workload",
            "shards",
            "messages",
            "ns_per_op",
            "ops_per_sec",
            "floor_ns",
            "ratio",
            "p50_ns",
            "p99_ns",
        ] {
            assert!(r.get(key).is_some(), "{key} missing from {r}");
        }
        assert_eq!(r["messages"], 2000);
        assert!(r["ns_per_op"].as_f64().unwrap() > 0.0);
        match r["actors"].as_str().unwrap() {
            "component" => assert!(r["ratio"].as_f64().unwrap() > 0.0),
            "native" => assert!(r["floor_ns"].is_null()),
            other => panic!("actors {other}"),
        }
    }
    assert_eq!(results[0]["workload"], "tell");
    assert_eq!(results[2]["workload"], "ping-pong");
    // Percentiles for the round trip with native actors; not for tell.
    assert!(results[3]["p99_ns"].as_f64().is_some());
    assert!(results[0]["p50_ns"].is_null());
}

#[test]
fn bench_reports_what_each_shard_did_in_the_measured_run() {
    let out = wasmshard(&[
        "bench",
        "tell-cross",
        "--messages",
        "3000",
        "--shards",
        "2",
        "--actors",
        "native",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let activity = v["results"][0]["activity"].as_array().unwrap();
    assert_eq!(activity.len(), 2, "{v}");
    // Every message of the measured run (not the warm-up's) crossed once:
    // each shard's producer sent half, and each shard took the other half.
    let sum = |key: &str| -> u64 { activity.iter().map(|a| a[key].as_u64().unwrap()).sum() };
    assert_eq!(sum("routed_remote"), 3000, "{v}");
    assert_eq!(sum("remote_in"), 3000, "{v}");
    for (i, a) in activity.iter().enumerate() {
        assert_eq!(a["shard"], i);
        assert_eq!(a["routed_remote"], 1500, "{a}");
        assert!(a["turns"].as_u64().unwrap() > 0, "{a}");
    }
    // The table form, with --stats: a row per shard, per operation.
    let out = wasmshard(&[
        "bench",
        "tell",
        "--messages",
        "2000",
        "--actors",
        "native",
        "--stats",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let rows: Vec<_> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("per operation:"))
        .collect();
    assert!(
        rows[0].contains("turns") && rows[0].contains("remote"),
        "{stdout}"
    );
    let row: Vec<_> = rows[1].split_whitespace().collect();
    assert_eq!(&row[..3], ["tell", "native", "0"], "{stdout}");
    // On one shard, no message crosses.
    assert_eq!(row[8], "0.000", "{stdout}");
    assert_eq!(rows.len(), 2, "{stdout}");
}

#[test]
fn bench_tell_batch_reports_its_floor_and_ratio() {
    let out = wasmshard(&[
        "bench",
        "tell-batch",
        "--messages",
        "3000",
        "--actors",
        "component",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r["workload"], "tell-batch");
    assert_eq!(r["shards"], 1);
    assert!(r["floor_ns"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn bench_prints_a_table_and_refuses_unknown_workloads() {
    let out = wasmshard(&["bench", "ring", "--messages", "500", "--actors", "native"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("workload"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ring") && l.contains("native")),
        "{stdout}"
    );
    let out = wasmshard(&["bench", "nope"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no workload `nope`") && stderr.contains("tell-cross"),
        "{stderr}"
    );
    let out = wasmshard(&["bench", "tell", "--payload", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("payload of 2 bytes"));
}

fn manifest(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        text.replace("FIXTURES", fixture("").to_str().unwrap()),
    )
    .unwrap();
    path
}

/// Starts `wasmshard ARGS` with stdout and stderr piped.
fn start(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_wasmshard"))
        .args(args)
        .env("RUST_LIB_BACKTRACE", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads all of a child's pipe.
fn read(mut pipe: impl std::io::Read) -> String {
    let mut text = String::new();
    pipe.read_to_string(&mut text).unwrap();
    text
}

/// Waits for `child` to end, failing after `limit`.
fn finish(mut child: std::process::Child, limit: std::time::Duration) -> std::process::ExitStatus {
    finish_keeping_output(&mut child, limit)
}

#[test]
fn the_exit_status_says_what_happened() {
    let dir = tempdir();
    // Bad arguments: clap's 2, and 2 for those the command refuses itself.
    assert_eq!(wasmshard(&["run", "--no-such-flag"]).status.code(), Some(2));
    for args in [
        &["bench", "--actors", "foo"][..],
        &["bench", "--grants", "x"],
        &["bench", "--messages", "0"],
        &["bench", "no-such-workload"],
        &["bench", "tell", "--payload", "4"],
        &["bench", "tell", "--shards", "100000"],
    ] {
        let out = wasmshard(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("wasmshard: "), "{stderr}");
    }
    // The command could not do it: 1.
    let missing = dir.join("missing.toml");
    assert_eq!(
        wasmshard(&["run", missing.to_str().unwrap()]).status.code(),
        Some(1)
    );
    // It ran, but an actor failed: 3, and the report says which.
    let path = manifest(
        &dir,
        "trap.toml",
        "[[actor]]\nname = \"t\"\ncomponent = \"FIXTURES/trap.wat\"\n[[send]]\nto = \"t\"\npayload = \"boom\"\n",
    );
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("trap: wasm `unreachable`"));
}

/// Log lines were written with `eprintln!` on shard threads: a closed stderr
/// panicked a shard, which then hung the run.
#[test]
fn a_closed_stderr_neither_panics_nor_hangs_a_run() {
    let dir = tempdir();
    // A counter that logs a line for each of 3000 messages.
    let path = manifest(
        &dir,
        "chatty.toml",
        "[[actor]]\nname = \"c\"\ncomponent = \"FIXTURES/counter.wat\"\n[[send]]\nto = \"c\"\npayload = \"report\"\nrepeat = 3000\n",
    );
    let mut child = start(&["run", path.to_str().unwrap()]);
    drop(child.stderr.take());
    let stdout = child.stdout.take().unwrap();
    let status = finish(child, std::time::Duration::from_secs(60));
    let out = read(stdout);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("ran to idle"), "{out}");
}

/// With stderr a pipe nobody reads, the log queue filled and the final flush
/// waited for room in it for ever: the run never ended.
#[test]
fn a_stuck_stderr_does_not_hold_the_run_at_its_end() {
    let dir = tempdir();
    // More log lines than the queue holds (8192), more bytes than a pipe buffers.
    let path = manifest(
        &dir,
        "flood.toml",
        "[[actor]]\nname = \"c\"\ncomponent = \"FIXTURES/counter.wat\"\n[[send]]\nto = \"c\"\npayload = \"report\"\nrepeat = 20000\n",
    );
    let mut child = start(&["run", path.to_str().unwrap()]);
    // Held open, never read.
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let status = finish(child, std::time::Duration::from_secs(60));
    let out = read(stdout);
    drop(stderr);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("ran to idle"), "{out}");
}

/// A closed stdout (`wasmshard run x.toml | head -1`) panicked the command (exit
/// status 101).
#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    let mut child = start(&["run", fixture("example.toml").to_str().unwrap()]);
    drop(child.stdout.take());
    let stderr = child.stderr.take().unwrap();
    let status = finish(child, std::time::Duration::from_secs(60));
    let err = read(stderr);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `--for` with a duration too long to add to the clock panicked.
#[test]
fn a_duration_too_long_for_the_clock_is_no_limit() {
    let out = wasmshard(&[
        "run",
        fixture("example.toml").to_str().unwrap(),
        "--for",
        "18446744073709551615s",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ran to idle"), "{stdout}");
}

/// When the time limit passed with sends still to make, the report counted one
/// undelivered send, not the ones never made.
#[test]
fn sends_not_made_by_the_time_limit_are_all_counted() {
    let dir = tempdir();
    // A target that takes its whole CPU budget for one message, with room for one
    // more: the host waits on a full mailbox until the limit.
    let path = manifest(
        &dir,
        "slow.toml",
        "[runtime]\nmailbox-capacity = 1\ncpu-budget-ms = 500\n[[actor]]\nname = \"slow\"\ncomponent = \"FIXTURES/loop.wat\"\n[[send]]\nto = \"slow\"\npayload = \"spin\"\nrepeat = 100000\n",
    );
    let out = wasmshard(&["run", path.to_str().unwrap(), "--for", "200ms", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let slow = &v["actors"][0];
    let received = slow["received"].as_u64().unwrap();
    assert!(received <= 2, "{v}");
    assert_eq!(
        v["undelivered_sends"].as_u64().unwrap(),
        100_000 - received,
        "{v}"
    );
    assert_eq!(v["idle"], false);
}

/// Ctrl-C during `run` shuts down gracefully and prints the report.
#[test]
fn ctrl_c_shuts_down_and_reports() {
    let dir = tempdir();
    // A rally that never ends.
    let path = manifest(
        &dir,
        "endless.toml",
        "[[actor]]\nname = \"ping\"\ncomponent = \"FIXTURES/pingpong.wat\"\nconfig = \"pong\"\ngrants = { lookup = [\"pong\"], send = [\"pong\"] }\n[[actor]]\nname = \"pong\"\ncomponent = \"FIXTURES/pingpong.wat\"\nconfig = \"ping\"\ngrants = { lookup = [\"ping\"], send = [\"ping\"] }\n[[send]]\nto = \"ping\"\npayload-hex = \"ffffffff\"\n",
    );
    let mut child = start(&["run", path.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stdout = child.stdout.take().unwrap();
    let status = finish(child, std::time::Duration::from_secs(60));
    let out = read(stdout);
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(out.contains("interrupted in"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ping")), "{out}");
}

/// A bad `--payload` was refused only when the workload that used it ran, after
/// the ones before it.
/// `--messages` beyond what a run can count or record (each round trip's time is
/// kept) overflowed, or aborted the process allocating the samples.
#[test]
fn bench_refuses_too_many_messages_before_running_anything() {
    for n in ["18446744073709551615", "100000001"] {
        let out = wasmshard(&["bench", "ping-pong", "--messages", n]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{n}: {stderr}");
        assert!(stderr.contains("--messages"), "{n}: {stderr}");
        assert!(!stderr.contains("[1/"), "a workload ran: {stderr}");
    }
}

#[test]
fn bench_refuses_a_park_spin_out_of_range_before_running_anything() {
    for flag in ["--park-spin-us", "--park-spin-max-us"] {
        let out = wasmshard(&["bench", "ring", flag, "10001", "--messages", "10"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("park spin"), "{flag}: {stderr}");
        assert!(!stderr.contains("[1/"), "a workload ran: {stderr}");
    }
    // In range, both run.
    let out = wasmshard(&[
        "bench",
        "ring",
        "--shards",
        "2",
        "--park-spin-us",
        "0",
        "--park-spin-max-us",
        "2000",
        "--messages",
        "100",
        "--actors",
        "native",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_refuses_a_bad_payload_before_running_anything() {
    let out = wasmshard(&[
        "bench",
        "tell",
        "spawn",
        "--payload",
        "2",
        "--messages",
        "10",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("payload"), "{stderr}");
    assert!(!stderr.contains("[1/"), "a workload ran: {stderr}");
}

#[test]
fn run_reports_what_grants_denied() {
    let dir = tempdir();
    // The echo may find the counter but not message it; the second echo has
    // the runtime's default, which this manifest makes "all".
    let path = manifest(
        &dir,
        "denied.toml",
        "[runtime]\nshards = 2\n\
         [[actor]]\nname = \"counter\"\ncomponent = \"FIXTURES/counter.wat\"\n\
         [[actor]]\nname = \"echo\"\ncomponent = \"FIXTURES/echo.wat\"\nconfig = \"counter\"\n\
         grants = { lookup = [\"counter\"] }\n\
         [[send]]\nto = \"echo\"\npayload = \"hello\"\nrepeat = 3\n",
    );
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("denied by grants (the last 3, oldest first):"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("`echo`") && l.contains("send `counter`"))
            .count(),
        3,
        "{stdout}"
    );
    let echo = stdout.lines().find(|l| l.starts_with("echo")).unwrap();
    let columns: Vec<&str> = echo.split_whitespace().collect();
    // name, shard, received, sent, handled, denied, limited, restarts, failure
    assert_eq!(columns[2..9], ["3", "0", "3", "3", "0", "0", "-"], "{echo}");
    let out = wasmshard(&["run", path.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let audit = v["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[0]["operation"], "send");
    assert_eq!(audit[0]["from_name"], "echo");
    assert_eq!(audit[0]["target_name"], "counter");
    // With `default-grants = "all"` nothing is denied.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("shards = 2", "shards = 2\ndefault-grants = \"all\"")
        .replace("grants = { lookup = [\"counter\"] }\n", "");
    std::fs::write(&path, text).unwrap();
    let out = wasmshard(&["run", path.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["audit"], serde_json::json!([]));
    let counter = v["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "counter")
        .unwrap()
        .clone();
    assert_eq!(counter["received"], 3);
}

#[test]
fn run_restarts_a_supervised_actor_and_reports_it() {
    let dir = tempdir();
    // `boom` traps; the supervised one is restarted in place and handles what
    // was queued behind each `boom`; the other ends at its first.
    let path = manifest(
        &dir,
        "supervised.toml",
        "[[actor]]\nname = \"kept\"\ncomponent = \"FIXTURES/trap.wat\"\n\
         restart = \"on-failure\"\nmax-restarts = 3\nrestart-window = \"1m\"\n\
         backoff = \"1ms\"\nmax-backoff = \"5ms\"\n\
         [[actor]]\nname = \"lost\"\ncomponent = \"FIXTURES/trap.wat\"\n\
         [[send]]\nto = \"kept\"\npayload = \"boom\"\nrepeat = 2\n\
         [[send]]\nto = \"kept\"\npayload = \"fine\"\nrepeat = 5\n\
         [[send]]\nto = \"lost\"\npayload = \"boom\"\n",
    );
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let kept = stdout.lines().find(|l| l.starts_with("kept")).unwrap();
    let columns: Vec<&str> = kept.split_whitespace().collect();
    // name, shard, received, sent, handled, denied, limited, restarts, failure
    assert_eq!(
        columns[2..9],
        ["7", "0", "5", "0", "0", "2", "(restarted)"],
        "{kept}"
    );
    let lost = stdout.lines().find(|l| l.starts_with("lost")).unwrap();
    assert!(lost.contains("unreachable"), "{lost}");
    assert!(stdout.contains("dead letters: 3"), "{stdout}");
    let out = wasmshard(&["run", path.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept = v["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "kept")
        .unwrap()
        .clone();
    assert_eq!(
        (kept["restarts"].as_u64(), kept["failures"].as_u64()),
        (Some(2), Some(2))
    );
    // Supervision keys are checked before anything runs.
    for (bad, says) in [
        (
            "backoff = \"1ms\"",
            "`backoff` needs `restart = \"on-failure\"`",
        ),
        ("restart = \"sometimes\"", "unknown variant `sometimes`"),
        (
            "restart = \"on-failure\"\nrestart-window = \"soon\"",
            "restart-window `soon` is not a duration",
        ),
        (
            "restart = \"on-failure\"\nbackoff = \"2s\"",
            "backoff 2s is above max-backoff 1s",
        ),
    ] {
        let path = manifest(
            &dir,
            "bad-supervision.toml",
            &format!("[[actor]]\nname = \"a\"\ncomponent = \"FIXTURES/trap.wat\"\n{bad}\n"),
        );
        let out = wasmshard(&["run", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}");
        assert!(stderr.contains(says), "{bad}: {stderr}");
    }
}

#[test]
fn run_restarts_a_group_together() {
    let dir = tempdir();
    let actor = |n: &str| format!("[[actor]]\nname = \"{n}\"\ncomponent = \"FIXTURES/trap.wat\"\n");
    let text = format!(
        "[runtime]\nshards = 2\n{}{}{}{}\
         [[group]]\nname = \"crew\"\nstrategy = \"rest-for-one\"\nmembers = [\"x\", \"y\", \"z\"]\n\
         shard = 1\nmax-restarts = 2\n\
         [[send]]\nto = \"y\"\npayload = \"boom\"\n",
        actor("x"),
        actor("y"),
        actor("z"),
        actor("outside"),
    );
    let path = manifest(&dir, "group.toml", &text);
    let out = wasmshard(&["run", path.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stats_of = |n: &str| {
        v["actors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == n)
            .unwrap()
            .clone()
    };
    // rest-for-one: y and the member started after it.
    let restarts: Vec<_> = ["x", "y", "z", "outside"]
        .iter()
        .map(|n| stats_of(n)["restarts"].as_u64().unwrap())
        .collect();
    assert_eq!(restarts, [0, 1, 1, 0]);
    for n in ["x", "y", "z"] {
        assert_eq!(stats_of(n)["shard"], 1, "{n}");
    }
    // Groups are checked before anything runs.
    for (bad, says) in [
        (
            "members = [\"x\", \"nobody\"]",
            "group `g` has member `nobody`, which is no [[actor]]",
        ),
        (
            "members = [\"x\"]\nstrategy = \"all-for-none\"",
            "unknown variant `all-for-none`",
        ),
        (
            "members = [\"y\"]\n[[group]]\nname = \"h\"\nmembers = [\"y\"]",
            "actor `y` is a member of two groups, `g` and `h`",
        ),
        (
            "members = [\"x\", \"y\"]\nshard = 0",
            "but its member `y` is on shard 1",
        ),
        ("members = [\"z\"]", "takes no restart keys of its own"),
        (
            "members = [\"x\"]\nbackoff = \"later\"",
            "group `g`: backoff `later` is not a duration",
        ),
    ] {
        let text = format!(
            "[runtime]\nshards = 2\n{}[[actor]]\nname = \"y\"\ncomponent = \"FIXTURES/trap.wat\"\n\
             shard = 1\n[[actor]]\nname = \"z\"\ncomponent = \"FIXTURES/trap.wat\"\n\
             restart = \"on-failure\"\n[[group]]\nname = \"g\"\n{bad}\n",
            actor("x")
        );
        let path = manifest(&dir, "bad-group.toml", &text);
        let out = wasmshard(&["run", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}");
        assert!(stderr.contains(says), "{bad}: {stderr}");
    }
}

#[test]
fn durable_storage_survives_between_runs() {
    let dir = tempdir();
    let manifest_with = |payload: &str| {
        manifest(
            &dir,
            "durable.toml",
            &format!(
                "[runtime]\nstorage-dir = \"state\"\n\
                 [[actor]]\nname = \"store\"\ncomponent = \"FIXTURES/store.wat\"\n\
                 [[send]]\nto = \"store\"\npayload-hex = \"{payload}\"\n"
            ),
        )
    };
    // First run: set. Second: get, which traps if nothing was kept.
    for (mode, payload) in [("set", "7300000001000000"), ("get", "6700000001000000")] {
        let path = manifest_with(payload);
        let out = wasmshard(&["run", path.to_str().unwrap(), "--json"]);
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The key, the value and the entry's overhead.
        assert_eq!(v["actors"][0]["stored"], 40 + 32, "{mode}");
    }
    assert!(dir.join("state").is_dir(), "relative to the manifest");
    // Without the directory, the second run finds nothing and the actor fails.
    let path = manifest(
        &dir,
        "memory.toml",
        "[[actor]]\nname = \"store\"\ncomponent = \"FIXTURES/store.wat\"\n\
         [[send]]\nto = \"store\"\npayload-hex = \"6700000001000000\"\n",
    );
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn run_upgrades_an_actor_under_load() {
    let dir = tempdir();
    let text = "[runtime]\nshards = 2\n\
         [[actor]]\nname = \"a\"\ncomponent = \"FIXTURES/trap.wat\"\nshard = 1\n\
         [[send]]\nto = \"a\"\npayload = \"x\"\nrepeat = 3000\n\
         [[upgrade]]\nactor = \"a\"\ncomponent = \"FIXTURES/counter.wat\"\n";
    let path = manifest(&dir, "upgrade.toml", text);
    let out = wasmshard(&["run", path.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &v["actors"][0];
    // Every message handled once, by one instance or the other.
    assert_eq!(
        (a["handled"].as_u64(), a["upgrades"].as_u64()),
        (Some(3000), Some(1))
    );
    assert_eq!(v["dead_letters"], 0);
    // An upgrade whose init fails (it loops past its CPU budget) rolls back,
    // and the run says so.
    let path = manifest(
        &dir,
        "rollback.toml",
        &text.replace("FIXTURES/counter.wat", "FIXTURES/hostile/init_loops.wat"),
    );
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("actor `a` was not upgraded"), "{stderr}");
    assert!(stderr.contains("CPU budget"), "{stderr}");
    // An upgrade of no actor is refused before anything runs.
    let path = manifest(
        &dir,
        "nobody.toml",
        &text.replace("actor = \"a\"\ncomponent", "actor = \"b\"\ncomponent"),
    );
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("upgrade of `b`, which is no [[actor]]"));
}

#[test]
fn run_publishes_to_subscribers_and_reports_topics() {
    let dir = tempdir();
    // Two subscribers by name on two shards, one by pattern, one denied its
    // subscription (its `init` fails, so it never starts); five publications
    // to `prices.eur`, one to `prices.usd.spot`, one to a topic nobody takes.
    let path = manifest(
        &dir,
        "topics.toml",
        "[runtime]\nshards = 2\ndefault-grants = \"all\"\n\
         [[actor]]\nname = \"eur-0\"\ncomponent = \"FIXTURES/topical.wat\"\nconfig = \"prices.eur\"\nshard = 0\n\
         [[actor]]\nname = \"eur-1\"\ncomponent = \"FIXTURES/topical.wat\"\nconfig = \"prices.eur\"\nshard = 1\n\
         [[actor]]\nname = \"all\"\ncomponent = \"FIXTURES/topical.wat\"\nconfig = \"prices.*\"\n\
         [[publish]]\ntopic = \"prices.eur\"\npayload = \"1.08\"\nrepeat = 5\n\
         [[publish]]\ntopic = \"prices.usd.spot\"\npayload-hex = \"01\"\n\
         [[publish]]\ntopic = \"weather\"\npayload = \"rain\"\n",
    );
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |topic: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(topic))
            .unwrap_or_else(|| panic!("no row for {topic}: {stdout}"))
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    // subscribers, published, delivered, refused
    assert_eq!(row("prices.eur"), ["3", "5", "15", "0"], "{stdout}");
    assert_eq!(row("prices.usd.spot"), ["1", "1", "1", "0"], "{stdout}");
    assert_eq!(row("weather"), ["0", "1", "0", "0"], "{stdout}");
    assert_eq!(row("prices.*"), ["1", "0", "0", "0"], "{stdout}");
    let out = wasmshard(&["run", path.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = v["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "all")
        .unwrap()
        .clone();
    assert_eq!(all["received"], 6);
    let eur = v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "prices.eur")
        .unwrap()
        .clone();
    assert_eq!(eur["delivered"], 15);
    // A malformed topic is refused before anything runs; a subscription the
    // grants refuse fails the actor's `init`.
    for (bad, says) in [
        (
            "[[publish]]\ntopic = \"prices.*\"\npayload = \"x\"\n",
            "publish to `prices.*`: not a topic",
        ),
        (
            "[[publish]]\ntopic = \"a..b\"\npayload = \"x\"\n",
            "publish to `a..b`: not a topic",
        ),
        (
            "[[publish]]\ntopic = \"ok\"\n",
            "publish to `ok`: give `payload`",
        ),
        (
            "[[actor]]\nname = \"denied\"\ncomponent = \"FIXTURES/topical.wat\"\nconfig = \"x\"\n\
             grants = { subscribe = [\"y\"] }\n",
            "subscription refused",
        ),
    ] {
        let text = format!("[[actor]]\nname = \"a\"\ncomponent = \"FIXTURES/topical.wat\"\n{bad}");
        let path = manifest(&dir, "bad-topics.toml", &text);
        let out = wasmshard(&["run", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}");
        assert!(stderr.contains(says), "{bad}: {stderr}");
    }
}

/// `trace-sampling = 1` traces every manifest send, and the trace travels on:
/// the report counts what was handled with a trace context. Out of range, the
/// manifest is refused with the key named.
#[test]
fn run_samples_traces_and_reports_them() {
    let dir = tempdir();
    let text = |rate: &str| {
        format!(
            "[runtime]\nshards = 2\ndefault-grants = \"all\"\ntrace-sampling = {rate}\n\
             [[actor]]\nname = \"first\"\ncomponent = \"FIXTURES/echo.wat\"\nconfig = \"last\"\nshard = 0\n\
             [[actor]]\nname = \"last\"\ncomponent = \"FIXTURES/silent.wat\"\nshard = 1\n\
             [[send]]\nto = \"first\"\npayload = \"hi\"\nrepeat = 3\n"
        )
    };
    let path = manifest(&dir, "traced.toml", &text("1.0"));
    let out = wasmshard(&["run", path.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["traced"], 6, "three sends, each handled twice: {v}");
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("traced: 6 handled with a trace context"),
        "{stdout}"
    );

    let path = manifest(&dir, "untraced.toml", &text("0"));
    let out = wasmshard(&["run", path.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["traced"], 0, "{v}");

    let path = manifest(&dir, "bad.toml", &text("2"));
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("trace-sampling"), "{stderr}");
}

/// `log-messages` prints one bare JSON line per message the matching actors
/// receive and send, on stderr, beside the report.
#[test]
fn run_logs_the_messages_of_audited_actors() {
    let dir = tempdir();
    let path = manifest(
        &dir,
        "audited.toml",
        "[runtime]\nshards = 2\ndefault-grants = \"all\"\ntrace-sampling = 1.0\nlog-messages = [\"first\"]\n\
         [[actor]]\nname = \"first\"\ncomponent = \"FIXTURES/echo.wat\"\nconfig = \"last\"\nshard = 0\n\
         [[actor]]\nname = \"last\"\ncomponent = \"FIXTURES/silent.wat\"\nshard = 1\n\
         [[send]]\nto = \"first\"\npayload = \"hi\"\nrepeat = 2\n",
    );
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let events: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["event"].as_str().unwrap(), l["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            ("receive", "first"),
            ("send", "first"),
            ("receive", "first"),
            ("send", "first"),
        ],
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["trace_id"].as_str().is_some_and(|t| t.len() == 32))
    );
    assert_eq!(
        lines[0]["trace_id"], lines[1]["trace_id"],
        "one trace a send"
    );
    assert_ne!(lines[0]["trace_id"], lines[2]["trace_id"]);
    assert_eq!(lines[1]["size"], 2);
}

// The NATS tests' server (only part of it is used here).
#[allow(dead_code)]
#[path = "../../nats/tests/server/mod.rs"]
mod server;

/// Two manifests in two processes form a two-node system over a real NATS
/// server: node b's component forwards to `counter@a` (granted by that
/// name), and node a's exported counter takes every message; both reports
/// count what crossed.
#[test]
fn two_processes_form_a_two_node_system_over_nats() {
    let Some(server) = server::Server::start("two_processes_form_a_two_node_system_over_nats")
    else {
        return;
    };
    let dir = tempdir();
    let url = server.url();
    let a = manifest(
        &dir,
        "a.toml",
        &format!(
            r#"
[nats]
url = "{url}"
node = "a"
quiet-ms = 3000
max-request-timeout = "1m"

[[actor]]
name = "counter"
component = "FIXTURES/counter.wat"

[[export]]
name = "counter"
"#
        ),
    );
    let b = manifest(
        &dir,
        "b.toml",
        &format!(
            r#"
[nats]
url = "{url}"
node = "b"
quiet-ms = 500

[[import]]
name = "counter"
node = "a"

[[actor]]
name = "echo"
component = "FIXTURES/echo.wat"
config = "counter@a"
grants = {{ lookup = ["counter@a"], send = ["counter@a"] }}

[[actor]]
name = "stranger"
component = "FIXTURES/echo.wat"
config = "counter@a"

[[send]]
to = "echo"
payload = "hello"
repeat = 100

[[send]]
to = "stranger"
payload = "not granted"

[[send]]
to = "counter@a"
payload = "from the host"
"#
        ),
    );
    let node_a = NodeA::start(&a);
    let node_b = wasmshard(&["run", b.to_str().unwrap(), "--json"]);
    assert!(
        node_b.status.success(),
        "{}",
        String::from_utf8_lossy(&node_b.stderr)
    );
    let a = node_a.report(std::time::Duration::from_secs(60));
    let b: serde_json::Value = serde_json::from_slice(&node_b.stdout).unwrap();
    let actor = |report: &serde_json::Value, name: &str| {
        report["actors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {report}"))
            .clone()
    };
    // 100 forwarded by echo, one from b's host; the stranger was denied.
    assert_eq!(actor(&a, "counter")["handled"], 101, "{a}");
    assert_eq!(a["bridge"]["tells_in"], 101, "{a}");
    assert_eq!(b["bridge"]["tells_out"], 101, "{b}");
    assert_eq!(actor(&b, "echo")["sent"], 100, "{b}");
    assert_eq!(actor(&b, "stranger")["denied"], 1, "{b}");
    assert_eq!(actor(&b, "counter@a")["handled"], 101, "{b}");
    for report in [&a, &b] {
        assert_eq!(report["dead_letters"], 0, "{report}");
        assert_eq!(report["bridge"]["dead_letters"], 0, "{report}");
        assert_eq!(report["idle"], true, "{report}");
    }
    drop(server);
}

/// `wasmshard run MANIFEST --json` as node a of a two-node system, started
/// and waited for until its bridge is ready (subscribed, its exports made),
/// so that node b sends nothing before node a can take it.
struct NodeA {
    child: std::process::Child,
    stderr: std::thread::JoinHandle<Vec<String>>,
}

impl NodeA {
    fn start(manifest: &std::path::Path) -> NodeA {
        let mut child = start(&["run", manifest.to_str().unwrap(), "--json"]);
        let pipe = child.stderr.take().unwrap();
        let (ready, up) = std::sync::mpsc::channel();
        let stderr = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(pipe).lines() {
                let line = line.unwrap();
                if line.contains("bridge of node `a` ready") {
                    let _ = ready.send(());
                }
                lines.push(line);
            }
            lines
        });
        up.recv_timeout(std::time::Duration::from_secs(60))
            .expect("node a's bridge ready");
        NodeA { child, stderr }
    }

    /// Waits for node a to end (its quiet time), successfully, and returns
    /// its JSON report.
    fn report(mut self, limit: std::time::Duration) -> serde_json::Value {
        let status = finish_keeping_output(&mut self.child, limit);
        let stderr = self.stderr.join().unwrap().join("\n");
        assert!(status.success(), "{stderr}");
        serde_json::from_str(&read(self.child.stdout.take().unwrap()))
            .unwrap_or_else(|e| panic!("node a's report: {e}\n{stderr}"))
    }
}

/// As [`finish`], leaving the child's pipes to the caller.
fn finish_keeping_output(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Two processes over NATS exchange 100 000 sequenced tells (a producer on
/// node b to a sequence checker on node a, which fails on any gap or
/// reordering) and 10 000 request round trips (a requester on node b to an
/// echoing responder on node a, each reply matched to its request).
#[test]
fn two_processes_exchange_a_hundred_thousand_tells_and_ten_thousand_requests() {
    let Some(server) = server::Server::start("two_processes_exchange") else {
        return;
    };
    let dir = tempdir();
    let url = server.url();
    let a = manifest(
        &dir,
        "a.toml",
        &format!(
            r#"
[runtime]
max-open-requests = 16384

[nats]
url = "{url}"
node = "a"
quiet-ms = 3000

[[actor]]
name = "seqcheck"
component = "FIXTURES/seqcheck.wat"

[[actor]]
name = "responder"
component = "FIXTURES/responder.wat"

[[export]]
name = "seqcheck"

[[export]]
name = "responder"
"#
        ),
    );
    let b = manifest(
        &dir,
        "b.toml",
        &format!(
            r#"
[runtime]
mailbox-capacity = 16384
max-open-requests = 16384

[nats]
url = "{url}"
node = "b"
quiet-ms = 1000

[[import]]
name = "seqcheck"
node = "a"

[[import]]
name = "responder"
node = "a"

[[actor]]
name = "producer"
component = "FIXTURES/producer.wat"
config = "seqcheck@a"
grants = {{ lookup = ["seqcheck@a"], send = ["seqcheck@a"] }}

[[actor]]
name = "requester"
component = "FIXTURES/requester.wat"
config = "10000 30000 responder@a"
grants = {{ lookup = ["responder@a"], request = ["responder@a"] }}

# 100 000 reliable sends (count, mode 1, 8 bytes).
[[send]]
to = "producer"
payload-hex = "a08601000100000008000000"

[[send]]
to = "requester"
payload = "go"
"#
        ),
    );
    let node_a = NodeA::start(&a);
    let node_b = wasmshard(&["run", b.to_str().unwrap(), "--json"]);
    let stderr_b = String::from_utf8_lossy(&node_b.stderr);
    assert!(node_b.status.success(), "{stderr_b}");
    let a = node_a.report(std::time::Duration::from_secs(120));
    let actor = |name: &str| {
        a["actors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {a}"))
            .clone()
    };
    // Every tell, in order (the checker fails on a gap or a swap).
    assert_eq!(actor("seqcheck")["handled"], 100_000, "{a}");
    assert_eq!(actor("seqcheck")["failures"], 0, "{a}");
    assert_eq!(actor("responder")["handled"], 10_000, "{a}");
    let done = "[requester] info: done ok=10000 timeout=0 cancelled=0 failed=0 stopped=0 unknown=0 mismatched=0 refused=0";
    assert!(stderr_b.contains(done), "missing `{done}` in\n{stderr_b}");
    let b: serde_json::Value = serde_json::from_slice(&node_b.stdout).unwrap();
    assert_eq!(b["bridge"]["tells_out"], 100_000, "{b}");
    assert_eq!(b["bridge"]["requests_out"], 10_000, "{b}");
    assert_eq!(b["bridge"]["replies_in"], 10_000, "{b}");
    for report in [&a, &b] {
        assert_eq!(report["dead_letters"], 0, "{report}");
        assert_eq!(report["bridge"]["dead_letters"], 0, "{report}");
    }
    drop(server);
}

#[test]
fn bench_runs_pinned_shards() {
    // Components too: their floor runs on shard 0's core.
    let out = wasmshard(&[
        "bench",
        "tell-cross",
        "--messages",
        "2000",
        "--shards",
        "2",
        "--pin-cores",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{v}");
    assert!(results[0]["floor_ns"].as_f64().unwrap() > 0.0, "{v}");
    for r in results {
        assert_eq!(r["shards"], 2, "{r}");
        assert_eq!(r["activity"][1]["routed_remote"], 1000, "{r}");
    }
}

/// What the report prints that a guest (or a manifest) chose, a topic here,
/// is one line with its control characters escaped: a topic holding an
/// escape sequence and a line break printed them raw, forging a line.
#[test]
fn a_topic_cannot_forge_a_line_of_the_report() {
    let dir = tempdir();
    let path = manifest(
        &dir,
        "topic.toml",
        "[[actor]]\nname = \"a\"\ncomponent = \"FIXTURES/counter.wat\"\n\
         [[publish]]\ntopic = \"evil\\u001b[2J\\nran to idle in 1.000 ms\"\npayload = \"x\"\n",
    );
    let out = wasmshard(&["run", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("ran to idle in 1.000 ms")),
        "{stdout}"
    );
    assert!(stdout.contains("evil\\u{1b}[2J\\nran to idle"), "{stdout}");
}
