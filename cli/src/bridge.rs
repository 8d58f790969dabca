//! `run` with a `[nats]` table: the bridge connects and imports before
//! anything is spawned (so the actors find their imports), exports once the
//! actors exist, serves while the run goes on and while the runtime shuts
//! down (so that what its actors still answer, and what the ingress refuses
//! when it stops, reaches the other nodes), and closes after; its counters
//! join the report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmshard::manifest::{Manifest, NatsSection, RunOptions};
use wasmshard_nats::{Bridge, BridgeOptions, BridgeStats};

/// The bridge's final counters, once the run has closed it.
pub(crate) type Closed = Arc<Mutex<Option<BridgeStats>>>;

/// `options` with the bridge of `manifest`'s `[nats]` table attached.
pub(crate) fn attach(
    manifest: &Manifest,
    nats: &NatsSection,
    options: RunOptions,
) -> (RunOptions, Closed) {
    let bridge: Arc<Mutex<Option<Bridge>>> = Arc::default();
    let closed: Closed = Arc::default();
    let (url, node) = (nats.url.clone(), nats.node.clone());
    let mut bridge_options = BridgeOptions::default();
    if let Some(cluster) = &nats.cluster {
        bridge_options = bridge_options.cluster(cluster);
    }
    if let Some(prefix) = &nats.prefix {
        bridge_options = bridge_options.prefix(prefix);
    }
    if let Some(max) = nats.max_request_timeout() {
        bridge_options = bridge_options.max_request_timeout(max);
    }
    let imports: Vec<_> = manifest
        .imports
        .iter()
        .map(|i| (i.name.clone(), i.node.clone()))
        .collect();
    let exports: Vec<_> = manifest.exports.iter().map(|e| e.name.clone()).collect();
    let started = bridge.clone();
    let options = options.on_start(move |runtime| {
        let connected = Bridge::connect_with(&url, &node, runtime, bridge_options)?;
        for (name, node) in &imports {
            connected.import(runtime, name, node)?;
        }
        *lock(&started) = Some(connected);
        Ok(())
    });
    // Exported once the actors exist (what comes before would find none).
    let exporting = bridge.clone();
    let (url, node) = (nats.url.clone(), nats.node.clone());
    let imported = manifest.imports.len();
    let options = options.on_spawned(move |_| {
        if let Some(bridge) = lock(&exporting).as_ref() {
            for name in &exports {
                bridge.export(name)?;
            }
        }
        crate::logs::logs().line(format!(
            "wasmshard: bridge of node `{node}` ready on {url}: {imported} import(s), {} export(s)",
            exports.len()
        ));
        Ok(())
    });
    // Serve until the limit or Ctrl-C, or, with `quiet-ms`, until nothing
    // crossed the bridge for that long while the system was idle.
    let quiet = nats.quiet_ms.map(Duration::from_millis);
    let watched = bridge.clone();
    let mut last = (u64::MAX, Instant::now());
    let options = options.busy(move || {
        let Some(quiet) = quiet else { return true };
        let (activity, pending) = lock(&watched)
            .as_ref()
            .map_or((0, false), |b| (activity(&b.stats()), b.is_pending()));
        // Still holding messages to publish is not quiet.
        if activity != last.0 || pending {
            last = (activity, Instant::now());
        }
        last.1.elapsed() < quiet
    });
    let done = closed.clone();
    let options = options.on_finish(move || {
        if let Some(bridge) = lock(&bridge).take() {
            *lock(&done) = Some(bridge.close());
        }
    });
    (options, closed)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything that crossed the bridge, or was refused at it, so far.
fn activity(s: &BridgeStats) -> u64 {
    s.tells_out
        + s.tells_in
        + s.requests_out
        + s.requests_in
        + s.replies_in
        + s.replies_out
        + s.refused_here.total()
        + s.refused_remote.total()
        + s.dead_letters
        + s.requests_failed
}

/// The report's line for the bridge.
pub(crate) fn line(s: &BridgeStats) -> String {
    format!(
        "bridge: tells out {}, in {}; requests out {}, in {}; replies in {}, out {}; refused here {}, by remote {}; dead letters {}; requests failed {}; disconnects {}",
        s.tells_out,
        s.tells_in,
        s.requests_out,
        s.requests_in,
        s.replies_in,
        s.replies_out,
        s.refused_here.total(),
        s.refused_remote.total(),
        s.dead_letters,
        s.requests_failed,
        s.disconnects
    )
}
