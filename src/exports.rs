//! The `wasmshard:actor/actor` exports a component must have, checked against
//! the component's own type information at load time.
//!
//! Nothing is instantiated to check them, so loading never runs guest code (no
//! start function, no instance from the pool). Calls then use
//! `TypedFunc::new_unchecked`, whose soundness rests on this check: each export's
//! parameter and result types must be exactly those of the Rust types the calls
//! use (`u64` for `u64`, `list<u8>` for `&[u8]` and `LiftedBytes`, the enum
//! `request-error` with exactly its five cases in order for `RequestError`): a
//! subset of what wasmtime's own type check of those Rust types accepts.

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, ComponentExportIndex, Type};

use crate::error::LoadError;

/// The name of the exported interface.
pub(crate) const ACTOR_INTERFACE: &str = "wasmshard:actor/actor@0.1.0";

/// The name of the optional interface of batched actors (world `batched`).
pub(crate) const BATCH_INTERFACE: &str = "wasmshard:actor/batch@0.1.0";

/// The cases of `wasmshard:actor/types.request-error`, in order.
const REQUEST_ERROR_CASES: [&str; 5] = [
    "timeout",
    "cancelled",
    "target-failed",
    "target-stopped",
    "unknown-target",
];

/// Where each export of the actor interface is.
#[derive(Clone, Copy)]
pub(crate) struct Exports {
    pub(crate) init: ComponentExportIndex,
    pub(crate) handle_message: ComponentExportIndex,
    pub(crate) handle_request: ComponentExportIndex,
    pub(crate) handle_response: ComponentExportIndex,
    /// `wasmshard:actor/batch#handle-messages`, if the component exports it.
    pub(crate) handle_messages: Option<ComponentExportIndex>,
}

/// A value type an export's signature needs.
#[derive(Clone, Copy)]
enum Want {
    /// `u32`
    U32,
    /// `u64`
    U64,
    /// `list<u8>`
    Bytes,
    /// `result<_, string>`
    UnitOrString,
    /// `option<list<u8>>`
    MaybeBytes,
    /// `result<list<u8>, request-error>`
    BytesOrRequestError,
}

impl Want {
    fn wit(self) -> &'static str {
        match self {
            Want::U32 => "u32",
            Want::U64 => "u64",
            Want::Bytes => "list<u8>",
            Want::UnitOrString => "result<_, string>",
            Want::MaybeBytes => "option<list<u8>>",
            Want::BytesOrRequestError => "result<list<u8>, request-error>",
        }
    }

    fn matches(self, ty: &Type) -> bool {
        let bytes = |t: &Type| matches!(t, Type::List(l) if l.ty() == Type::U8);
        match (self, ty) {
            (Want::U32, Type::U32) | (Want::U64, Type::U64) => true,
            (Want::Bytes, t) => bytes(t),
            (Want::UnitOrString, Type::Result(r)) => {
                r.ok().is_none() && r.err() == Some(Type::String)
            }
            (Want::MaybeBytes, Type::Option(o)) => bytes(&o.ty()),
            (Want::BytesOrRequestError, Type::Result(r)) => {
                r.ok().is_some_and(|t| bytes(&t))
                    && matches!(r.err(), Some(Type::Enum(e)) if e.names().eq(REQUEST_ERROR_CASES))
            }
            _ => false,
        }
    }
}

/// Finds the actor interface's four exports and, if the component exports the
/// batch interface, its `handle-messages`, and checks their types.
pub(crate) fn check(component: &Component) -> Result<Exports, LoadError> {
    let iface = component
        .get_export_index(None, ACTOR_INTERFACE)
        .ok_or_else(|| {
            LoadError::new(format!(
                "the component does not export the interface `{ACTOR_INTERFACE}`"
            ))
        })?;
    use Want::*;
    let handle_messages = match component.get_export_index(None, BATCH_INTERFACE) {
        Some(batch) => Some(func(
            component,
            BATCH_INTERFACE,
            &batch,
            "handle-messages",
            &[U32, Bytes],
            &[],
        )?),
        None => None,
    };
    Ok(Exports {
        handle_messages,
        init: func(
            component,
            ACTOR_INTERFACE,
            &iface,
            "init",
            &[Bytes],
            &[UnitOrString],
        )?,
        handle_message: func(
            component,
            ACTOR_INTERFACE,
            &iface,
            "handle-message",
            &[U64, Bytes],
            &[],
        )?,
        handle_request: func(
            component,
            ACTOR_INTERFACE,
            &iface,
            "handle-request",
            &[U64, U64, Bytes],
            &[MaybeBytes],
        )?,
        handle_response: func(
            component,
            ACTOR_INTERFACE,
            &iface,
            "handle-response",
            &[U64, BytesOrRequestError],
            &[],
        )?,
    })
}

fn func(
    component: &Component,
    iface_name: &str,
    iface: &ComponentExportIndex,
    name: &str,
    params: &[Want],
    results: &[Want],
) -> Result<ComponentExportIndex, LoadError> {
    let Some((item, index)) = component.get_export(Some(iface), name) else {
        return Err(LoadError::new(format!(
            "the component does not export `{iface_name}#{name}`"
        )));
    };
    let ComponentItem::ComponentFunc(f) = item else {
        return Err(LoadError::new(format!(
            "export `{iface_name}#{name}` is not a function"
        )));
    };
    if fits(&f, params, results) {
        return Ok(index);
    }
    let list = |w: &[Want]| w.iter().map(|w| w.wit()).collect::<Vec<_>>().join(", ");
    Err(LoadError::new(format!(
        "export `{iface_name}#{name}` has the wrong type: expected func({}){}",
        list(params),
        if results.is_empty() {
            String::new()
        } else {
            format!(" -> {}", list(results))
        }
    )))
}

fn fits(f: &ComponentFunc, params: &[Want], results: &[Want]) -> bool {
    !f.async_()
        && f.params().len() == params.len()
        && f.params().zip(params).all(|((_, ty), w)| w.matches(&ty))
        && f.results().len() == results.len()
        && f.results().zip(results).all(|(ty, w)| w.matches(&ty))
}
