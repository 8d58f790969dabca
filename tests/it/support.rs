//! Shared helpers: fixtures, small runtimes, and a native probe actor.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmshard::{Address, Component, Context, Runtime, RuntimeBuilder};

pub(crate) const IDLE: Duration = Duration::from_secs(60);

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A builder sized for tests: few actors, so many runtimes fit side by side.
pub(crate) fn builder(shards: usize) -> RuntimeBuilder {
    Runtime::builder().shards(shards).max_actors(32)
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
