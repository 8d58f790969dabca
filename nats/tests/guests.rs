//! Components built with the guest SDK, on two runtimes bridged through a
//! real `nats-server`: a front on node b answers after sub-requests to two
//! workers on node a, reached through their proxies (granted by their
//! `name@node` names).

#[allow(dead_code)]
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use server::Server;
use wasmshard::{Grants, Runtime, SpawnOptions};
use wasmshard_nats::Bridge;

const TARGET: &str = "wasm32-unknown-unknown";

/// Builds the SDK's pipeline example for wasm32 (into the folder the other
/// test suites build guests in), or `None` without the target outside CI.
fn pipeline() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = root.join("target").join("guests");
    let output = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .args(["-p", "wasmshard-example-pipeline", "--target-dir"])
        .arg(&target_dir)
        .output()
        .expect("cargo runs");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let missing = stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`");
        assert!(
            missing && std::env::var_os("CI").is_none(),
            "building the pipeline example failed:\n{stderr}"
        );
        eprintln!("skipped: the {TARGET} target is not installed (rustup target add {TARGET})");
        return None;
    }
    Some(
        target_dir
            .join(TARGET)
            .join("release")
            .join("wasmshard_example_pipeline.wasm"),
    )
}

#[test]
fn sdk_components_make_requests_across_the_bridge() {
    let Some(server) = Server::start("sdk_components_make_requests_across_the_bridge") else {
        return;
    };
    let Some(wasm) = pipeline() else {
        return;
    };
    let a = Runtime::builder().shards(2).build().unwrap();
    let b = Runtime::builder().shards(2).build().unwrap();
    let on_a = a.load_component_file(&wasm).unwrap();
    let on_b = b.load_component_file(&wasm).unwrap();
    for (name, op, shard) in [("double", "Double", 0), ("square", "Square", 1)] {
        a.spawn(
            &on_a,
            SpawnOptions::new(name)
                .config(format!(r#"{{"Worker": "{op}"}}"#))
                .shard(shard),
        )
        .unwrap();
    }
    let bridge_a = Bridge::connect(&server.url(), "a", &a).unwrap();
    bridge_a.export("double").unwrap();
    bridge_a.export("square").unwrap();
    let bridge_b = Bridge::connect(&server.url(), "b", &b).unwrap();
    bridge_b.import(&b, "double", "a").unwrap();
    bridge_b.import(&b, "square", "a").unwrap();
    let remote = ["double@a", "square@a"];
    let front = b
        .spawn(
            &on_b,
            SpawnOptions::new("front")
                .config(r#"{"Front": {"workers": ["double@a", "square@a"], "timeout_ms": 30000}}"#)
                .grants(Grants::none().lookup(remote).request(remote)),
        )
        .unwrap();
    // A front granted nothing cannot even find the proxies: its init fails.
    let e = b
        .spawn(
            &on_b,
            SpawnOptions::new("ungranted")
                .config(r#"{"Front": {"workers": ["double@a", "square@a"], "timeout_ms": 30000}}"#),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("double@a") || format!("{e:?}").contains("double@a"),
        "{e:?}"
    );
    let wait = Duration::from_secs(30);
    let pending: Vec<_> = (0..200u64)
        .map(|n| {
            b.request_typed::<_, Result<u64, String>>(front, &n, wait)
                .unwrap()
        })
        .collect();
    for (n, p) in pending.into_iter().enumerate() {
        let n = n as u64;
        assert_eq!(p.wait(wait).unwrap(), Ok(2 * n + n * n));
    }
    assert!(!b.audit().is_empty(), "the denial is audited");
    let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
    assert_eq!((sb.requests_out, sb.replies_in), (400, 400));
    assert_eq!((sa.requests_in, sa.replies_out), (400, 400));
    drop((bridge_a, bridge_b));
    assert_eq!(a.shutdown().dead_letter_count, 0);
    assert_eq!(b.shutdown().dead_letter_count, 0);
}
