//! Loading: binary and text, components and core modules; refusals name the problem.

use wasmshard::{Runtime, SourceKind, SpawnOptions};

use crate::support::*;

fn rt() -> Runtime {
    builder(1).build().unwrap()
}

fn refused(bytes: &[u8], expect: &str) {
    let err = rt().load_component("test", bytes).unwrap_err();
    let message = err.message();
    assert!(
        message.contains(expect),
        "error `{message}` should mention `{expect}`"
    );
}

#[test]
fn core_module_text_and_binary_load_as_the_same_component() {
    let rt = rt();
    let text = std::fs::read(fixture("counter.wat")).unwrap();
    let binary = wat::parse_bytes(&text).unwrap().into_owned();
    for bytes in [&text, &binary] {
        let c = rt.load_component("counter", bytes).unwrap();
        assert_eq!(c.source_kind(), SourceKind::CoreModule);
        assert!(
            c.exports()
                .iter()
                .any(|e| e == "wasmshard:actor/actor@0.1.0")
        );
    }
}

#[test]
fn components_load_as_binary_and_as_text() {
    let rt = rt();
    let text = std::fs::read(fixture("counter.wat")).unwrap();
    // The component wasmshard makes of the core module, as a binary and printed as text.
    let component = rt.inspect(&text).unwrap();
    assert!(component.fit.is_ok());
    let module = wat::parse_bytes(&text).unwrap().into_owned();
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("actor.wit", wasmshard::WIT).unwrap();
    let world = resolve.select_world(&[pkg], Some("component")).unwrap();
    let mut module = module;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    // A core module carrying its own metadata, as wit-bindgen emits.
    let c = rt.load_component("with-metadata", &module).unwrap();
    assert_eq!(c.source_kind(), SourceKind::CoreModuleWithMetadata);
    let binary = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .encode()
        .unwrap();
    let c = rt.load_component("binary", &binary).unwrap();
    assert_eq!(c.source_kind(), SourceKind::Component);
    let printed = wasmprinter::print_bytes(&binary).unwrap();
    let c = rt.load_component("text", printed.as_bytes()).unwrap();
    assert_eq!(c.source_kind(), SourceKind::Component);
    let a = rt.spawn(&c, SpawnOptions::new("from-text")).unwrap();
    rt.send(a, b"x").unwrap();
    assert!(rt.wait_idle(IDLE));
    assert_eq!(rt.stats().actor("from-text").unwrap().handled, 1);
}

#[test]
fn garbage_is_not_webassembly() {
    refused(&[0xff, 0xfe, 0x00, 0x01], "not WebAssembly");
    refused(
        b"(module (func $f (param i32) (resul",
        "not valid WebAssembly text",
    );
    refused(b"\0asm\x01\x00\x00\x00\xff\xff", "invalid");
}

#[test]
fn missing_export_is_named() {
    let text = std::fs::read_to_string(fixture("counter.wat")).unwrap();
    let without = text.replace(
        "(export \"wasmshard:actor/actor@0.1.0#handle-message\")",
        "",
    );
    refused(without.as_bytes(), "handle-message");
}

#[test]
fn unknown_import_is_named() {
    let text = std::fs::read_to_string(fixture("counter.wat")).unwrap();
    let with = text.replace(
        "(memory (export \"memory\") 2)",
        "(import \"wasmshard:actor/host@0.1.0\" \"frobnicate\" (func (param i32)))\n  (memory (export \"memory\") 2)",
    );
    refused(with.as_bytes(), "frobnicate");
    let with = text.replace(
        "(memory (export \"memory\") 2)",
        "(import \"wasi:cli/environment@0.2.0\" \"get-environment\" (func (param i32)))\n  (memory (export \"memory\") 2)",
    );
    refused(with.as_bytes(), "wasi:cli/environment@0.2.0");
}

#[test]
fn wrong_export_signature_is_named() {
    let text = std::fs::read_to_string(fixture("counter.wat")).unwrap();
    let wrong = text.replace(
        "(func (export \"wasmshard:actor/actor@0.1.0#handle-message\") (param $from i64) (param $ptr i32) (param $len i32)",
        "(func (export \"wasmshard:actor/actor@0.1.0#handle-message\") (param $from i64) (param $ptr i32) (param $len i32) (param i32)",
    );
    assert_ne!(wrong, text);
    refused(wrong.as_bytes(), "handle-message");
}

#[test]
fn component_without_the_actor_interface_is_refused() {
    refused(
        b"(component)",
        "does not export the interface `wasmshard:actor/actor@0.1.0`",
    );
    let component_importing_unknown = br#"(component
        (import "acme:thing/api" (instance (export "f" (func))))
    )"#;
    refused(component_importing_unknown, "acme:thing/api");
}

#[test]
fn missing_file_is_named() {
    let err = rt().load_component_file("/nonexistent/x.wasm").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.wasm"), "{err}");
}

/// A component file was read whole before its size was checked: a manifest
/// naming `/dev/zero` (or a huge sparse file) ran the process out of memory.
/// Reading stops past the limit now, and says so, for components, `inspect`
/// and manifests alike.
#[test]
fn a_file_over_the_limit_is_not_read_whole() {
    use std::error::Error;
    fn cut_short(err: &(dyn Error + 'static)) -> bool {
        let mut cause = err.source();
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return io.kind() == std::io::ErrorKind::InvalidData;
            }
            cause = e.source();
        }
        false
    }
    let dir = std::env::temp_dir().join(format!("wasmshard-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.wasm");
    // Sparse: no disk is used, and a whole read would take 64 MiB.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(4 * wasmshard::MAX_COMPONENT_SIZE as u64)
        .unwrap();
    let rt = rt();
    for path in [big.as_path(), std::path::Path::new("/dev/zero")] {
        let err = rt.load_component_file(path).unwrap_err();
        assert!(cut_short(&err), "{path:?}: {}", err.message());
        assert!(err.message().contains("larger than"), "{}", err.message());
        let err = rt.inspect_file(path).unwrap_err();
        assert!(cut_short(&err), "{path:?}: {}", err.message());
        let err = wasmshard::manifest::Manifest::from_file(path).unwrap_err();
        assert!(cut_short(&err), "{path:?}: {err}");
    }
    // A file within the limit still loads, and inspects.
    let counter = fixture("counter.wat");
    assert!(rt.load_component_file(&counter).is_ok());
    assert!(rt.inspect_file(&counter).unwrap().fit.is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
