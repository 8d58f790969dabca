//! What the benches share: fixtures, and bare-wasmtime instances for the floors.

#![allow(dead_code)]

use std::hint::black_box;

use wasmtime::component::{Component, Func, Instance, Linker, WasmList, WasmStr};
use wasmtime::{Config, Engine, Store, StoreContextMut};

use wasmshard::{LogLevel, SendError};

pub(crate) const PAYLOAD: usize = 64;

pub(crate) fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// What the floor's host functions saw: a checksum of every payload's length and
/// target, and the ids handed out.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) sum: u64,
    pub(crate) next_id: u64,
}

/// An engine like the runtime's (epoch interruption on, component-model concurrency
/// off) with host functions that do the least the contract allows: look at the
/// payload and answer. No runtime around them.
pub(crate) fn floor_engine() -> (Engine, Linker<Seen>) {
    let mut config = Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config).unwrap();
    let mut linker = Linker::<Seen>::new(&engine);
    let mut host = linker.instance("wasmshard:actor/host@0.1.0").unwrap();
    host.func_wrap(
        "send",
        |mut store: StoreContextMut<'_, Seen>, (to, payload): (u64, WasmList<u8>)| {
            let n = black_box(payload.as_le_slice(&store)).len() as u64;
            store.data_mut().sum += n ^ to;
            Ok((Ok::<(), SendError>(()),))
        },
    )
    .unwrap();
    host.func_wrap(
        "request",
        |mut store: StoreContextMut<'_, Seen>, (to, payload, _): (u64, WasmList<u8>, u64)| {
            let n = black_box(payload.as_le_slice(&store)).len() as u64;
            let seen = store.data_mut();
            seen.sum += n ^ to;
            seen.next_id += 1;
            Ok((Ok::<u64, SendError>(seen.next_id),))
        },
    )
    .unwrap();
    host.func_wrap(
        "respond",
        |_: StoreContextMut<'_, Seen>, (_, _): (u64, WasmList<u8>)| Ok((Ok::<(), SendError>(()),)),
    )
    .unwrap();
    host.func_wrap("cancel", |_: StoreContextMut<'_, Seen>, (_,): (u64,)| {
        Ok((false,))
    })
    .unwrap();
    host.func_wrap(
        "lookup",
        |_: StoreContextMut<'_, Seen>, (_,): (WasmStr,)| Ok((Some(7u64),)),
    )
    .unwrap();
    host.func_wrap(
        "log",
        |_: StoreContextMut<'_, Seen>, (_, _): (LogLevel, WasmStr)| Ok(()),
    )
    .unwrap();
    host.func_wrap("self-address", |_: StoreContextMut<'_, Seen>, (): ()| {
        Ok((1u64,))
    })
    .unwrap();
    host.func_wrap("now-ns", |_: StoreContextMut<'_, Seen>, (): ()| Ok((0u64,)))
        .unwrap();
    (engine, linker)
}

/// One fixture instantiated on the floor engine, initialised with `config`.
pub(crate) struct Bare {
    pub(crate) store: Store<Seen>,
    pub(crate) instance: Instance,
    pub(crate) component: Component,
}

impl Bare {
    pub(crate) fn new(
        engine: &Engine,
        linker: &Linker<Seen>,
        fixture_name: &str,
        config: &[u8],
    ) -> Bare {
        let bytes =
            wasmshard::encode_component(&std::fs::read(fixture(fixture_name)).unwrap()).unwrap();
        let component = Component::new(engine, bytes).unwrap();
        let mut store = Store::new(engine, Seen::default());
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker.instantiate(&mut store, &component).unwrap();
        let mut bare = Bare {
            store,
            instance,
            component,
        };
        let init = bare
            .export("init")
            .typed::<(&[u8],), (Result<(), String>,)>(&bare.store)
            .unwrap();
        init.call(&mut bare.store, (config,)).unwrap().0.unwrap();
        bare
    }

    pub(crate) fn export(&mut self, name: &str) -> Func {
        let iface = self
            .component
            .get_export_index(None, "wasmshard:actor/actor@0.1.0")
            .unwrap();
        let idx = self.component.get_export_index(Some(&iface), name).unwrap();
        self.instance.get_func(&mut self.store, idx).unwrap()
    }
}
