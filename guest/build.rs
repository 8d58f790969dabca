//! Encodes the contract's `batched` world as `component-type` metadata, the
//! custom section an actor exported with `export_actor!(…, batched)` carries
//! (`OUT_DIR/batched-world.bin`): only such actors claim the `batch` export,
//! so the SDK cannot embed it in every actor as it does the `component` world.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=../wit");
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path("../wit")
        .expect("the contract (../wit) parses");
    let world = resolve
        .select_world(&[package], Some("batched"))
        .expect("the contract has the world `batched`");
    let bytes =
        wit_component::metadata::encode(&resolve, world, wit_component::StringEncoding::UTF8, None)
            .expect("the world `batched` encodes");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("batched-world.bin"), bytes).expect("OUT_DIR is writable");
}
