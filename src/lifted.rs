//! A guest's `list<u8>` result, copied into a [`Payload`] while it is lifted.
//!
//! wasmtime 48's `TypedFunc::call` lifts a call's results and then runs the
//! guest's post-return function before it returns. A guest built with
//! `wit-bindgen` frees the returned buffer there, so a `WasmList` view taken from
//! the results points at freed memory by the time the host reads it (its allocator
//! may already have written its own bookkeeping over the bytes). [`LiftedBytes`]
//! copies the bytes inside the lift, before post-return runs, into a `Payload`
//! (inline up to 64 bytes, so a short reply allocates nothing).
//!
//! It implements wasmtime's `ComponentType` and `Lift` as the `list<u8>` it
//! stands for: same flat and memory representation, same type check, same
//! validation of the pointer and length (it delegates to `WasmList<u8>`); only
//! the result differs, an owned copy instead of a view. The traits' items are
//! wasmtime's hidden derive-support API, stable for the pinned wasmtime version.

use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, WasmList};

use crate::envelope::Payload;

/// The bytes of a guest's `list<u8>`, copied out while lifting.
pub(crate) struct LiftedBytes(pub(crate) Payload);

// SAFETY: the representation (`Lower`: two `ValRaw`s, pointer and length), the
// canonical ABI size and alignment, and the type check are exactly those of
// `WasmList<u8>`, which wasmtime itself implements for `list<u8>`.
unsafe impl ComponentType for LiftedBytes {
    type Lower = <WasmList<u8> as ComponentType>::Lower;

    const ABI: CanonicalAbiInfo = <WasmList<u8> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <WasmList<u8> as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: each lift first lifts a `WasmList<u8>` from the same input, which
// validates that `ptr..ptr + len` lies inside the guest's memory (and fails the
// call otherwise); only then are those bytes read, through the lift context's
// view of that memory, and copied.
unsafe impl Lift for LiftedBytes {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        WasmList::<u8>::linear_lift_from_flat(cx, ty, src)?;
        copy(cx, src[0].get_u32(), src[1].get_u32())
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        WasmList::<u8>::linear_lift_from_memory(cx, ty, bytes)?;
        let word = |i: usize| {
            bytes
                .get(i..i + 4)
                .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        };
        copy(cx, word(0), word(4))
    }
}

/// Copies `len` bytes at `ptr` of the guest's memory (validated by the caller;
/// checked again here, so a mistake fails the call instead of panicking).
fn copy(cx: &LiftContext<'_>, ptr: u32, len: u32) -> wasmtime::Result<LiftedBytes> {
    let start = ptr as usize;
    match cx.memory().get(start..start + len as usize) {
        Some(bytes) => Ok(LiftedBytes(Payload::from_slice(bytes))),
        None => wasmtime::bail!("list pointer/length out of bounds of memory"),
    }
}
