//! Loading components: binary or text, component or core module, checked against
//! the `wasmshard:actor/component` world.

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{InstancePre, Linker};

use wasmshard_codec::Codec;

use crate::error::LoadError;
use crate::exports::{self, Exports};
use crate::host::ActorCtx;

/// The WIT package every component is written against.
pub const WIT: &str = include_str!("../wit/actor.wit");

/// What a file turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceKind {
    /// A component, binary or text.
    Component,
    /// A core module that carried its own `component-type` metadata, component-ized
    /// on load.
    CoreModuleWithMetadata,
    /// A core module written against the canonical ABI of the world with no metadata
    /// of its own; component-ized on load against the bundled WIT.
    CoreModule,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Component => "component",
            SourceKind::CoreModuleWithMetadata => "core module with component-type metadata",
            SourceKind::CoreModule => {
                "core module (component-ized against wasmshard:actor/component)"
            }
        })
    }
}

/// A compiled component, ready to spawn actors from. Cheap to clone; shared by all
/// shards and compiled once.
#[derive(Clone)]
pub struct Component {
    pub(crate) inner: Arc<ComponentInner>,
}

pub(crate) struct ComponentInner {
    pub(crate) name: String,
    pub(crate) kind: SourceKind,
    pub(crate) pre: InstancePre<ActorCtx>,
    pub(crate) exports: Exports,
    pub(crate) imports: Vec<String>,
    pub(crate) export_names: Vec<String>,
    /// The codecs its `wasmshard:accepts` section declares, if it has one.
    pub(crate) accepts: Option<Vec<Codec>>,
}

impl Component {
    /// A name for the component: the file it came from, or what the caller gave.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// What the loaded bytes were.
    pub fn source_kind(&self) -> SourceKind {
        self.inner.kind
    }

    /// Names of the component's imports.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// Names of the component's exports.
    pub fn exports(&self) -> &[String] {
        &self.inner.export_names
    }

    /// The codecs the component declares it accepts (its `wasmshard:accepts`
    /// custom section), if it declares any: actors spawned from it refuse other
    /// payloads at admission with `unsupported-codec`, unless
    /// [`crate::SpawnOptions::accepts`] says otherwise.
    pub fn accepts(&self) -> Option<&[Codec]> {
        self.inner.accepts.as_deref()
    }
}

/// The name of the custom section in which a component declares the codecs it
/// accepts: UTF-8, codec names separated by commas (`cbor,json`).
pub const ACCEPTS_SECTION: &str = "wasmshard:accepts";

/// The codecs a `wasmshard:accepts` section declares (in any module or component
/// inside `binary`; several are joined). `None` if there is none.
fn declared_accepts(binary: &[u8]) -> Result<Option<Vec<Codec>>, LoadError> {
    let mut found: Option<Vec<Codec>> = None;
    for payload in wasmparser::Parser::new(0).parse_all(binary) {
        let payload = payload.map_err(|e| LoadError::wrap("invalid WebAssembly", e))?;
        let wasmparser::Payload::CustomSection(section) = payload else {
            continue;
        };
        if section.name() != ACCEPTS_SECTION {
            continue;
        }
        let text = std::str::from_utf8(section.data()).map_err(|e| {
            LoadError::wrap(format!("the {ACCEPTS_SECTION} section is not UTF-8"), e)
        })?;
        let codecs = found.get_or_insert_with(Vec::new);
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let codec = Codec::from_name(name).ok_or_else(|| {
                LoadError::new(format!(
                    "the {ACCEPTS_SECTION} section names the codec `{name}`, which the \
                     runtime does not know (it knows raw, json, cbor, messagepack)"
                ))
            })?;
            if !codecs.contains(&codec) {
                codecs.push(codec);
            }
        }
    }
    Ok(found)
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.inner.name)
            .field("kind", &self.inner.kind)
            .finish()
    }
}

/// Turns WebAssembly (binary or text, component or core module) into a component
/// binary, component-izing a core module as loading does: with its own
/// `component-type` metadata, or against the bundled WIT if it has none.
///
/// # Errors
///
/// A [`LoadError`] if the bytes are not WebAssembly or a core module does not fit
/// the world.
pub fn encode_component(bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
    to_component_binary(bytes).map(|(binary, _)| binary)
}

/// The largest file (binary or text) loading takes: 16 MiB.
pub const MAX_COMPONENT_SIZE: usize = 16 << 20;

/// Reads the file at `path`, at most `max` bytes of it: a larger one (or an
/// endless one, such as `/dev/zero`) is an error of kind `InvalidData` once
/// `max + 1` bytes were read, never a read of the whole.
pub(crate) fn read_at_most(path: &std::path::Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}
/// How deep components and modules may nest inside a component (a component-ized
/// core module nests one level).
const MAX_NESTING: usize = 4;
/// How many core modules and components a component may hold, all levels together.
const MAX_PIECES: usize = 32;
/// How many core and component instances a component may create, all levels
/// together (the instance pool runs at most 8 core instances per component).
const MAX_INSTANCES: usize = 64;
/// How deep the parentheses of a text file may nest (the text parser recurses).
const MAX_TEXT_NESTING: usize = 512;

/// Refuses what would be too costly to compile before compiling it: a file over
/// [`MAX_COMPONENT_SIZE`], and a component nested too deep or holding too many
/// modules, components or instances. What is left costs compile time roughly in
/// proportion to its bytes (its functions and their bodies), which the size cap
/// bounds, together with the validator's own limits (at most a million
/// functions, 128 KiB per function body, 50 000 locals per function); functions
/// are not counted here.
fn bound(binary: &[u8]) -> Result<(), LoadError> {
    let (mut depth, mut pieces, mut instances) = (0usize, 0usize, 0usize);
    for payload in wasmparser::Parser::new(0).parse_all(binary) {
        use wasmparser::Payload;
        match payload.map_err(|e| LoadError::wrap("invalid WebAssembly", e))? {
            Payload::Version { .. } => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(LoadError::new(format!(
                        "components and modules are nested more than {MAX_NESTING} deep"
                    )));
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                pieces += 1;
                if pieces > MAX_PIECES {
                    return Err(LoadError::new(format!(
                        "more than {MAX_PIECES} modules and components (nested ones included)"
                    )));
                }
            }
            Payload::InstanceSection(r) => instances += r.count() as usize,
            Payload::ComponentInstanceSection(r) => instances += r.count() as usize,
            _ => {}
        }
        if instances > MAX_INSTANCES {
            return Err(LoadError::new(format!(
                "more than {MAX_INSTANCES} instances (nested ones included)"
            )));
        }
    }
    Ok(())
}

/// How deep the parentheses of WebAssembly text nest (strings and comments
/// skipped), stopping once past `MAX_TEXT_NESTING`.
fn text_nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            ';' if chars.peek() == Some(&';') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' if chars.peek() == Some(&';') => {
                // A block comment, `(; ... ;)`, which may nest.
                let mut level = 1;
                chars.next();
                while level > 0 {
                    match chars.next() {
                        Some('(') if chars.peek() == Some(&';') => {
                            chars.next();
                            level += 1;
                        }
                        Some(';') if chars.peek() == Some(&')') => {
                            chars.next();
                            level -= 1;
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            '(' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > MAX_TEXT_NESTING {
                    return deepest;
                }
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Binary WebAssembly from binary or text, refusing a file too large, or text
/// nested too deep to parse safely.
fn to_binary(bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
    if bytes.len() > MAX_COMPONENT_SIZE {
        return Err(LoadError::new(format!(
            "{} bytes: loading takes at most {MAX_COMPONENT_SIZE} bytes",
            bytes.len()
        )));
    }
    let binary = if bytes.starts_with(b"\0asm") {
        bytes.to_vec()
    } else {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err(LoadError::new(
                "not WebAssembly: no `\\0asm` header and not UTF-8 text (expected a .wasm binary or .wat text)",
            ));
        };
        if text_nesting(text) > MAX_TEXT_NESTING {
            return Err(LoadError::new(format!(
                "the text's parentheses are nested more than {MAX_TEXT_NESTING} deep"
            )));
        }
        wat::parse_str(text).map_err(|e| LoadError::wrap("not valid WebAssembly text", e))?
    };
    Ok(binary)
}

/// Turns text into binary and core modules into components, refusing first what
/// would be too costly to compile (see [`MAX_COMPONENT_SIZE`]).
pub(crate) fn to_component_binary(bytes: &[u8]) -> Result<(Vec<u8>, SourceKind), LoadError> {
    let binary = to_binary(bytes)?;
    if wasmparser::Parser::is_component(&binary) {
        bound(&binary)?;
        return Ok((binary, SourceKind::Component));
    }
    if !wasmparser::Parser::is_core_wasm(&binary) {
        return Err(LoadError::new("not WebAssembly: unknown binary header"));
    }
    bound(&binary)?;
    let mut module = binary;
    let (metadata, batched) = scan_core_module(&module)?;
    // A bare core module is made a component of the world its exports say:
    // `batched` if it exports `handle-messages`, `component` otherwise.
    let world_name = if batched { "batched" } else { "component" };
    let kind = if metadata {
        SourceKind::CoreModuleWithMetadata
    } else {
        let mut resolve = wit_parser::Resolve::default();
        let pkg = resolve
            .push_str("actor.wit", WIT)
            .map_err(|e| LoadError::wrap("bundled WIT", e))?;
        let world = resolve
            .select_world(&[pkg], Some(world_name))
            .map_err(|e| LoadError::wrap("bundled WIT", e))?;
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .map_err(|e| LoadError::wrap("cannot embed component metadata", e))?;
        SourceKind::CoreModule
    };
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut enc| enc.encode())
        .map_err(|e| {
            LoadError::wrap(
                if metadata || !batched {
                    "the core module does not fit the wasmshard:actor/component world"
                } else {
                    "the core module does not fit the wasmshard:actor/batched world"
                },
                e,
            )
        })?;
    Ok((component, kind))
}

/// Whether a core module carries `component-type` metadata, and whether it
/// exports the batch interface's `handle-messages`.
fn scan_core_module(module: &[u8]) -> Result<(bool, bool), LoadError> {
    let (mut metadata, mut batched) = (false, false);
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| LoadError::wrap("invalid core module", e))?;
        match payload {
            wasmparser::Payload::CustomSection(section)
                if section.name().starts_with("component-type") =>
            {
                metadata = true;
            }
            wasmparser::Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export.map_err(|e| LoadError::wrap("invalid core module", e))?;
                    batched |= export.name == HANDLE_MESSAGES_EXPORT;
                }
            }
            _ => {}
        }
    }
    Ok((metadata, batched))
}

/// The core export of the batch interface's function.
const HANDLE_MESSAGES_EXPORT: &str = "wasmshard:actor/batch@0.1.0#handle-messages";

/// Compiles `bytes` and checks it against the world: every import provided, every
/// export present with the right type.
pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<ActorCtx>,
    name: &str,
    bytes: &[u8],
) -> Result<Component, LoadError> {
    let (binary, kind) = to_component_binary(bytes)?;
    // From the bytes as given: component-izing a core module may drop its
    // custom sections.
    let accepts = declared_accepts(&to_binary(bytes)?)?;
    let component = wasmtime::component::Component::new(engine, &binary)
        .map_err(|e| LoadError::wrap("invalid component", e))?;
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let export_names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        LoadError::wrap(
            "the component needs an import the runtime does not provide",
            e,
        )
    })?;
    let exports = exports::check(&component)?;
    Ok(Component {
        inner: Arc::new(ComponentInner {
            name: name.to_string(),
            kind,
            pre,
            exports,
            imports,
            export_names,
            accepts,
        }),
    })
}

/// What `inspect` found in a file.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Inspection {
    /// What the file is.
    pub kind: SourceKind,
    /// Import names (of the component, or of the core module if it could not be
    /// component-ized).
    pub imports: Vec<String>,
    /// Export names, likewise.
    pub exports: Vec<String>,
    /// `Ok` if it fits the `wasmshard:actor/component` world, else what is wrong.
    pub fit: Result<(), String>,
    /// The codecs its `wasmshard:accepts` section declares, if it has one (or
    /// what is wrong with the section).
    pub accepts: Result<Option<Vec<Codec>>, String>,
}

/// Describes a file's imports and exports and whether it fits the world.
pub(crate) fn inspect(
    engine: &Engine,
    linker: &Linker<ActorCtx>,
    bytes: &[u8],
) -> Result<Inspection, LoadError> {
    let binary = to_binary(bytes)?;
    match to_component_binary(&binary) {
        Ok((component_bytes, kind)) => {
            let component = wasmtime::component::Component::new(engine, &component_bytes)
                .map_err(|e| LoadError::wrap("invalid component", e))?;
            let ty = component.component_type();
            let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
            let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
            let fit = load(engine, linker, "", &binary)
                .map(|_| ())
                .map_err(|e| e.message());
            Ok(Inspection {
                kind,
                imports,
                exports,
                fit,
                accepts: declared_accepts(&binary).map_err(|e| e.message()),
            })
        }
        Err(e) if wasmparser::Parser::is_core_wasm(&binary) => {
            let mut imports = Vec::new();
            let mut exports = Vec::new();
            for payload in wasmparser::Parser::new(0).parse_all(&binary) {
                match payload.map_err(|e| LoadError::wrap("invalid core module", e))? {
                    wasmparser::Payload::ImportSection(s) => {
                        for imp in s.into_imports() {
                            let imp = imp.map_err(|e| LoadError::wrap("invalid core module", e))?;
                            imports.push(format!("{}#{}", imp.module, imp.name));
                        }
                    }
                    wasmparser::Payload::ExportSection(s) => {
                        for exp in s {
                            exports.push(
                                exp.map_err(|e| LoadError::wrap("invalid core module", e))?
                                    .name
                                    .to_string(),
                            );
                        }
                    }
                    _ => {}
                }
            }
            let kind = if scan_core_module(&binary)?.0 {
                SourceKind::CoreModuleWithMetadata
            } else {
                SourceKind::CoreModule
            };
            Ok(Inspection {
                kind,
                imports,
                exports,
                fit: Err(e.message()),
                accepts: declared_accepts(&binary).map_err(|e| e.message()),
            })
        }
        Err(e) => Err(e),
    }
}
