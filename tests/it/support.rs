//! Shared helpers: fixtures, small runtimes, and a native probe actor.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmshard::{Address, Component, Context, Grants, Runtime, RuntimeBuilder};

pub(crate) const IDLE: Duration = Duration::from_secs(60);

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A builder sized for tests: few actors, so many runtimes fit side by side.
/// Its components are granted everything (`default_grants`): the tests of
/// other features are not about grants; `capabilities.rs` is, and builds its
/// runtimes with the default (nothing granted).
pub(crate) fn builder(shards: usize) -> RuntimeBuilder {
    Runtime::builder()
        .shards(shards)
        .max_actors(32)
        .default_grants(Grants::all())
}

pub(crate) fn load(rt: &Runtime, name: &str) -> Component {
    rt.load_component_file(fixture(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What a probe received: (from, payload).
pub(crate) type Inbox = Arc<Mutex<Vec<(Address, Vec<u8>)>>>;

/// Spawns a native probe. A message from the host whose payload is an 8-byte
/// little-endian address followed by bytes is relayed: the probe sends the bytes to
/// that address (so components answer the probe). Anything else is recorded.
pub(crate) fn probe(rt: &Runtime, name: &str, shard: usize) -> (Address, Inbox) {
    let inbox: Inbox = Arc::default();
    let seen = inbox.clone();
    let addr = rt
        .spawn_native(
            name,
            Some(shard),
            move |ctx: &mut Context<'_>, from: Address, payload: &[u8]| {
                if from == Address::HOST && payload.len() >= 8 {
                    let to =
                        Address::from_bits(u64::from_le_bytes(payload[..8].try_into().unwrap()));
                    ctx.send(to, &payload[8..]).expect("probe relay send");
                } else {
                    seen.lock().unwrap().push((from, payload.to_vec()));
                }
            },
        )
        .unwrap();
    (addr, inbox)
}

/// Makes `probe` send `payload` to `to`.
pub(crate) fn relay(rt: &Runtime, probe: Address, to: Address, payload: &[u8]) {
    let mut msg = to.to_bits().to_le_bytes().to_vec();
    msg.extend_from_slice(payload);
    rt.send(probe, &msg).unwrap();
}

/// A producer command: `[count, mode, size]`.
pub(crate) fn produce(count: u32, mode: u32, size: u32) -> Vec<u8> {
    [count, mode, size]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// A producer report: (sent, failed, last-error case or 255).
pub(crate) fn report(payload: &[u8]) -> (u32, u32, u32) {
    let w = |i: usize| u32::from_le_bytes(payload[i * 4..i * 4 + 4].try_into().unwrap());
    (w(0), w(1), w(2))
}

/// The Rust guests: the test guest (`tests/guests/roles`, see its crate docs
/// for the roles), the async trial (`tests/guests/async-trial`), the tally
/// (`tests/guests/tally`) and the SDK's example actors (`examples/guests/*`).
const GUEST_PACKAGES: [&str; 9] = [
    "wasmshard-test-guest",
    "wasmshard-batcher",
    "wasmshard-async-trial",
    "wasmshard-tally",
    "wasmshard-nursery",
    "wasmshard-example-counter",
    "wasmshard-example-kv",
    "wasmshard-example-pipeline",
    "wasmshard-example-chat",
];

/// Builds the Rust guests for `wasm32-unknown-unknown`, once per test binary
/// (one cargo run for all), and returns the folder of the core modules. `None`
/// when the `wasm32-unknown-unknown` target is not installed and `CI` is not
/// set: the caller skips (a note goes to stderr). With `CI` set a missing target
/// is a failure, as is any other build failure.
fn guests_dir() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT.get_or_init(build_guests).as_deref()
}

/// The Rust test guest's core module; `None` as [`guests_dir`].
pub(crate) fn guest_wasm() -> Option<PathBuf> {
    Some(guests_dir()?.join("wasmshard_test_guest.wasm"))
}

/// Loads the Rust test guest into `rt`; `None` as [`guests_dir`].
pub(crate) fn guest(rt: &Runtime) -> Option<Component> {
    Some(load_built(rt, &guest_wasm()?))
}

/// Loads the async trial (`tests/guests/async-trial`: the pipeline's front on
/// an in-guest executor) into `rt`; `None` as [`guests_dir`].
pub(crate) fn async_trial(rt: &Runtime) -> Option<Component> {
    Some(load_built(
        rt,
        &guests_dir()?.join("wasmshard_async_trial.wasm"),
    ))
}

/// Loads the nursery (`tests/guests/nursery`: spawns, watches and stops
/// children with the SDK) into `rt`; `None` as [`guests_dir`].
pub(crate) fn nursery(rt: &Runtime) -> Option<Component> {
    Some(load_built(
        rt,
        &guests_dir()?.join("wasmshard_nursery.wasm"),
    ))
}

/// Loads the batcher (`tests/guests/batcher`: an SDK actor exported as
/// batched) into `rt`; `None` as [`guests_dir`].
pub(crate) fn batcher(rt: &Runtime) -> Option<Component> {
    Some(load_built(
        rt,
        &guests_dir()?.join("wasmshard_batcher.wasm"),
    ))
}

/// Loads the tally (`tests/guests/tally`: a struct as its message) into
/// `rt`; `None` as [`guests_dir`].
pub(crate) fn tally(rt: &Runtime) -> Option<Component> {
    Some(load_built(rt, &guests_dir()?.join("wasmshard_tally.wasm")))
}

/// The example actor `examples/guests/NAME`'s core module; `None` as
/// [`guests_dir`].
pub(crate) fn example_wasm(name: &str) -> Option<PathBuf> {
    Some(guests_dir()?.join(format!("wasmshard_example_{name}.wasm")))
}

/// Loads the example actor `examples/guests/NAME` into `rt`; `None` as
/// [`guests_dir`].
pub(crate) fn example(rt: &Runtime, name: &str) -> Option<Component> {
    Some(load_built(rt, &example_wasm(name)?))
}

/// Loads a built guest's core module into `rt`; a load failure fails the test.
fn load_built(rt: &Runtime, wasm: &Path) -> Component {
    rt.load_component_file(wasm)
        .unwrap_or_else(|e| panic!("{}: {e}", wasm.display()))
}

fn build_guests() -> Option<PathBuf> {
    const TARGET: &str = "wasm32-unknown-unknown";
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = root.join("target").join("guests");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(root)
        .args(["build", "--release", "--locked", "--target", TARGET]);
    for p in GUEST_PACKAGES {
        cargo.args(["-p", p]);
    }
    let output = cargo
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the Rust guests: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let missing = stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`");
        if missing {
            let how = format!("the {TARGET} target is not installed (rustup target add {TARGET})");
            if std::env::var_os("CI").is_some() {
                panic!("cannot build the Rust guests: {how}\n{stderr}");
            }
            // Straight to stderr: the test harness captures `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "note: skipping the tests that need the Rust guests (the test guest and \
                 the SDK examples): {how}"
            );
            return None;
        }
        panic!(
            "building the Rust guests failed ({}):\n{stderr}",
            output.status
        );
    }
    let dir = target_dir.join(TARGET).join("release");
    for p in GUEST_PACKAGES {
        let wasm = dir.join(format!("{}.wasm", p.replace('-', "_")));
        assert!(wasm.is_file(), "cargo built no {}", wasm.display());
    }
    Some(dir)
}

/// Polls `done` every millisecond until it holds, failing the test with
/// `what` after [`IDLE`]: for what `wait_idle` cannot wait for (open
/// requests) or must not (it would wake a parked shard itself).
pub(crate) fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + IDLE;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on a thread of its own and returns what it returns, failing the test
/// if it takes longer than `limit` (a hang becomes a failure, not a stuck run).
pub(crate) fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: still running after {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// What the runtime itself logged at `warn` and above (target `wasmshard`), in
/// this test binary: a logger that keeps the lines, installed on first use.
pub(crate) fn runtime_log() -> &'static Mutex<Vec<String>> {
    &logger().warnings
}

/// The message log's lines (target `wasmshard::messages`, `log-messages`),
/// in this test binary.
pub(crate) fn message_log() -> &'static Mutex<Vec<String>> {
    &logger().messages
}

struct Keep {
    warnings: Mutex<Vec<String>>,
    messages: Mutex<Vec<String>>,
}

impl log::Log for Keep {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target() == wasmshard::MESSAGE_LOG_TARGET
            || (m.level() <= log::Level::Warn && m.target().starts_with("wasmshard"))
    }
    fn log(&self, r: &log::Record<'_>) {
        let lines = if r.target() == wasmshard::MESSAGE_LOG_TARGET {
            &self.messages
        } else if self.enabled(r.metadata()) {
            &self.warnings
        } else {
            return;
        };
        lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r.args().to_string());
    }
    fn flush(&self) {}
}

fn logger() -> &'static Keep {
    static KEEP: OnceLock<&'static Keep> = OnceLock::new();
    KEEP.get_or_init(|| {
        let keep: &'static Keep = Box::leak(Box::new(Keep {
            warnings: Mutex::new(Vec::new()),
            messages: Mutex::new(Vec::new()),
        }));
        log::set_logger(keep).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Info);
        keep
    })
}

/// Spawns `blocker` on `shard`: a native actor that, on a message, holds its
/// shard until released. Returns its address, a receiver that hears when it
/// holds the shard, and the sender that releases it (dropping it releases too).
pub(crate) fn blocker(
    rt: &Runtime,
    shard: usize,
) -> (
    Address,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let blocker = rt
        .spawn_native(
            "blocker",
            Some(shard),
            move |_: &mut wasmshard::Context<'_>, _: Address, _: &[u8]| {
                let _ = entered_tx.send(());
                let _ = release_rx.lock().unwrap().recv();
            },
        )
        .unwrap();
    (blocker, entered, release)
}
