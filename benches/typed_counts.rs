//! What the Rust guest SDK costs per message, in instructions (callgrind `Ir`,
//! exact, unlike the wall-clock figures of `benches/typed.rs` on a noisy VM):
//! `OPS` host tells to the SDK's counter example (a typed `Add(1)`) in each
//! codec against the same to `counter.wat` (raw bytes), and `OPS` host request
//! round trips (a typed `Get`, answered with a `u64`) against `responder.wat`, on
//! a manual runtime; `sdk_struct` does the same with a struct as the message
//! (`Add { n: 1 }` to `tests/guests/tally`) and a unit struct as the request. The host's payloads are encoded before the benchmark; what
//! is counted is the send, the delivery, the guest's decode and handling, and for
//! requests the encoded reply.
//!
//! `pipeline`: `OPS` host requests to the pipeline example's front, which asks
//! two workers and answers with the sum (five component calls per request),
//! written with continuations (the SDK's way) and with `async` on an in-guest
//! executor (`tests/guests/async-trial`).
//!
//! Not part of the CI gate (it needs the guests built first):
//!
//! ```sh
//! cargo build --release --target wasm32-unknown-unknown -p wasmshard-example-counter \
//!     -p wasmshard-example-pipeline -p wasmshard-async-trial -p wasmshard-tally
//! cargo bench --bench typed_counts
//! ```

use std::path::PathBuf;
use std::time::Duration;

use iai_callgrind::{library_benchmark, library_benchmark_group, main};
use serde::Serialize;
use wasmshard::codec::{self, Codec};
use wasmshard::{Address, Grants, Runtime, SpawnOptions};

/// Messages or round trips per benchmark.
const OPS: usize = 100;

#[derive(Serialize)]
enum Msg {
    Add(u64),
}

#[derive(Serialize)]
enum Req {
    Get,
}

#[derive(Serialize)]
struct Add {
    n: u64,
}

#[derive(Serialize)]
struct Get;

fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

const EXAMPLE: &str = "target/wasm32-unknown-unknown/release/wasmshard_example_counter.wasm";
const PIPELINE: &str = "target/wasm32-unknown-unknown/release/wasmshard_example_pipeline.wasm";
const ASYNC_TRIAL: &str = "target/wasm32-unknown-unknown/release/wasmshard_async_trial.wasm";
const TALLY: &str = "target/wasm32-unknown-unknown/release/wasmshard_tally.wasm";

/// A manual runtime with one actor from `component`, and the payload to send it.
struct Rig {
    rt: Runtime,
    to: Address,
    payload: Vec<u8>,
}

fn rig(component: &str, payload: Vec<u8>) -> Rig {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(4)
        .build_manual()
        .expect("manual runtime");
    let c = rt
        .load_component_file(path(component))
        .unwrap_or_else(|e| panic!("{component}: {e} (build the example first)"));
    let to = rt.spawn(&c, SpawnOptions::new("target")).unwrap();
    let rig = Rig { rt, to, payload };
    // Warm: the instance's memory and the runtime's buffers are in use.
    tells(&rig);
    rig
}

fn tells(rig: &Rig) {
    for _ in 0..OPS {
        rig.rt.send(rig.to, &rig.payload).expect("admitted");
    }
    rig.rt.run_until_stalled();
}

fn round_trips(rig: &Rig) {
    for _ in 0..OPS {
        let reply = rig
            .rt
            .request(rig.to, &rig.payload, Duration::from_secs(60))
            .expect("admitted");
        rig.rt.run_until_stalled();
        let bytes = reply.try_get().expect("answered").expect("a reply");
        std::hint::black_box(bytes);
    }
}

fn raw_tell() -> Rig {
    rig("fixtures/counter.wat", b"12345678".to_vec())
}

fn typed_tell(codec: Codec) -> Rig {
    rig(EXAMPLE, codec::encode(codec, &Msg::Add(1)).unwrap())
}

fn struct_tell() -> Rig {
    rig(TALLY, codec::encode(codec::DEFAULT, &Add { n: 1 }).unwrap())
}

fn struct_request() -> Rig {
    let r = rig(TALLY, codec::encode(codec::DEFAULT, &Get).unwrap());
    round_trips(&r);
    r
}

fn raw_request() -> Rig {
    let r = rig("fixtures/responder.wat", b"12345678".to_vec());
    round_trips(&r);
    r
}

fn typed_request(codec: Codec) -> Rig {
    let r = rig(EXAMPLE, codec::encode(codec, &Req::Get).unwrap());
    round_trips(&r);
    r
}

/// The pipeline's two workers and a front from `front` (with `config`).
fn pipeline(front: &str, config: &str) -> Rig {
    let rt = Runtime::builder()
        .shards(1)
        .max_actors(8)
        .build_manual()
        .expect("manual runtime");
    let load = |file: &str| {
        rt.load_component_file(path(file))
            .unwrap_or_else(|e| panic!("{file}: {e} (build the guests first)"))
    };
    let workers = load(PIPELINE);
    for (name, op) in [("double", "Double"), ("square", "Square")] {
        let config = format!(r#"{{"Worker": "{op}"}}"#);
        rt.spawn(&workers, SpawnOptions::new(name).config(config))
            .unwrap();
    }
    let to = rt
        .spawn(
            &load(front),
            SpawnOptions::new("front").config(config).grants(
                Grants::none()
                    .lookup(["double", "square"])
                    .request(["double", "square"]),
            ),
        )
        .unwrap();
    let payload = codec::encode(codec::DEFAULT, &12u64).unwrap();
    let rig = Rig { rt, to, payload };
    round_trips(&rig);
    rig
}

fn continuation_front() -> Rig {
    pipeline(
        PIPELINE,
        r#"{"Front": {"workers": ["double", "square"], "timeout_ms": 60000}}"#,
    )
}

fn async_front() -> Rig {
    pipeline(
        ASYNC_TRIAL,
        r#"{"workers": ["double", "square"], "timeout_ms": 60000}"#,
    )
}

#[library_benchmark]
#[bench::continuations(setup = continuation_front)]
#[bench::async_executor(setup = async_front)]
fn pipeline_request(rig: Rig) -> Rig {
    round_trips(&rig);
    rig
}

#[library_benchmark]
#[bench::raw_wat(setup = raw_tell)]
#[bench::sdk_json(args = (Codec::Json), setup = typed_tell)]
#[bench::sdk_cbor(args = (Codec::Cbor), setup = typed_tell)]
#[bench::sdk_messagepack(args = (Codec::MessagePack), setup = typed_tell)]
#[bench::sdk_struct(setup = struct_tell)]
fn tell(rig: Rig) -> Rig {
    tells(&rig);
    rig
}

#[library_benchmark]
#[bench::raw_wat(setup = raw_request)]
#[bench::sdk_json(args = (Codec::Json), setup = typed_request)]
#[bench::sdk_cbor(args = (Codec::Cbor), setup = typed_request)]
#[bench::sdk_messagepack(args = (Codec::MessagePack), setup = typed_request)]
#[bench::sdk_struct(setup = struct_request)]
fn request(rig: Rig) -> Rig {
    round_trips(&rig);
    rig
}

library_benchmark_group!(name = typed; benchmarks = tell, request, pipeline_request);
main!(library_benchmark_groups = typed);
