//! The `wasmshard:actor/host` imports, and the per-actor store data they run on.

use wasmtime::component::{Linker, WasmList, WasmStr};
use wasmtime::{Engine, ResourceLimiter, StoreContextMut};

use crate::address::Address;
use crate::config::MAX_TABLE_ELEMENTS;
use crate::envelope::Payload;
use crate::error::{FailureKind, SendError};
use crate::log::LogLevel;
use crate::message_log::Whom;
use crate::outbox::Outbox;

/// The name of the imported interface.
pub(crate) const HOST_INTERFACE: &str = "wasmshard:actor/host@0.1.0";
pub(crate) const TIMERS_INTERFACE: &str = "wasmshard:actor/timers@0.1.0";
pub(crate) const TOPICS_INTERFACE: &str = "wasmshard:actor/topics@0.1.0";
pub(crate) const LIFECYCLE_INTERFACE: &str = "wasmshard:actor/lifecycle@0.1.0";
pub(crate) const STORAGE_INTERFACE: &str = "wasmshard:actor/storage@0.1.0";
pub(crate) const TRACING_INTERFACE: &str = "wasmshard:actor/tracing@0.1.0";
pub(crate) const BATCH_HOST_INTERFACE: &str = "wasmshard:actor/batch-host@0.1.0";

/// The header of a frame in `send-frames`: `[to: u64 LE][len: u32 LE]`.
const FRAME_HEADER: usize = 12;

/// The most frames one `send-frames` call sends: a host call cannot be
/// interrupted by the CPU budget (its epoch deadline fires in guest code
/// only), so the work of one is bounded (about 4096 admissions, well under a
/// budget tick).
pub const MAX_FRAMES: u32 = 4096;

/// The longest buffer one `send-frames` call takes, in bytes.
pub const MAX_FRAMES_BYTES: usize = 16 << 20;

/// Checks the framing of a `send-frames` buffer before anything is sent:
/// every frame's header and payload lie within it. Returns how many frames it
/// holds (`None` past [`MAX_FRAMES`]: the scan stops there), or why it is
/// malformed (the call traps, and nothing is sent).
fn count_frames(frames: &[u8]) -> wasmtime::Result<Option<u32>> {
    let (mut at, mut count) = (0usize, 0u32);
    while at < frames.len() {
        if count == MAX_FRAMES {
            return Ok(None);
        }
        let rest = &frames[at..];
        let Some(len) = rest.get(8..FRAME_HEADER) else {
            wasmtime::bail!(
                "`send-frames`: frame {count} at byte {at} has a cut-short header \
                 ({} bytes left, a header is {FRAME_HEADER}); nothing was sent",
                rest.len()
            );
        };
        let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
        if rest.len() - FRAME_HEADER < len {
            wasmtime::bail!(
                "`send-frames`: frame {count} at byte {at} says {len} bytes and {} follow; \
                 nothing was sent",
                rest.len() - FRAME_HEADER
            );
        }
        at += FRAME_HEADER + len;
        count += 1;
    }
    Ok(Some(count))
}

/// `publish-outcome` as the canonical ABI lowers it.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower, Clone, Copy)]
#[component(record)]
struct PublishOutcome {
    delivered: u32,
    refused: u32,
}

/// `trace-context` as the canonical ABI lowers it.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower, Clone, Copy)]
#[component(record)]
struct TraceContext {
    #[component(name = "trace-hi")]
    trace_hi: u64,
    #[component(name = "trace-lo")]
    trace_lo: u64,
    span: u64,
}

/// Store data of one component actor.
pub(crate) struct ActorCtx {
    pub(crate) out: Outbox,
    pub(crate) limiter: Limiter,
    /// False while the component is being instantiated: host calls then trap.
    pub(crate) instantiated: bool,
    /// The last `error` line logged during the invocation under way (made one
    /// line and cut after [`LAST_ERROR_BYTES`]), for the failure's message if it
    /// fails.
    pub(crate) last_error: Option<String>,
    /// Epoch ticks an invocation may run (`None`: no CPU budgets), for an
    /// `init` off the shard whose budget is armed again after it waited for
    /// the shard.
    pub(crate) budget: Option<u64>,
}

/// How much of an `error` log line a failure's message keeps.
const LAST_ERROR_BYTES: usize = 512;

impl ActorCtx {
    pub(crate) fn new(out: Outbox, memory_limit: usize) -> ActorCtx {
        ActorCtx {
            out,
            limiter: Limiter::new(memory_limit),
            instantiated: false,
            last_error: None,
            budget: None,
        }
    }
}

/// Memory and table limits of one actor; remembers whether a limit was hit so the
/// failure can be reported as such.
pub(crate) struct Limiter {
    pub(crate) memory_limit: usize,
    /// Bytes of linear memory the actor has, all its memories together.
    memory: usize,
    /// What the last permitted grow added to `memory` (taken back if it failed).
    last_grow: usize,
    /// Which limit a grow ran into, and the words for it.
    pub(crate) hit: Option<Box<(FailureKind, String)>>,
}

impl Limiter {
    pub(crate) fn new(memory_limit: usize) -> Limiter {
        Limiter {
            memory_limit,
            memory: 0,
            last_grow: 0,
            hit: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    /// Called for each memory when it is created (from 0) and when it grows: the
    /// limit holds for the actor's memories together.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        let total = self.memory.saturating_add(grow);
        if total > self.memory_limit {
            let why = format!(
                "memory limit of {} bytes reached (growing from {} to {total} bytes in all)",
                self.memory_limit, self.memory
            );
            self.hit = Some(Box::new((FailureKind::MemoryLimit, why.clone())));
            wasmtime::bail!("{why}");
        }
        self.memory = total;
        self.last_grow = grow;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Permitted, then refused by wasmtime (the memory's own maximum): the
        // memory did not grow.
        let _ = error;
        self.memory -= std::mem::take(&mut self.last_grow);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            let why = format!("table limit of {MAX_TABLE_ELEMENTS} elements reached");
            self.hit = Some(Box::new((FailureKind::TableLimit, why.clone())));
            wasmtime::bail!("{why}");
        }
        Ok(true)
    }
}

/// Copies a payload out of guest memory, or `None` if it exceeds the maximum size
/// (checked before copying, so an oversized payload costs nothing).
#[inline]
fn copy_payload(store: &StoreContextMut<'_, ActorCtx>, list: &WasmList<u8>) -> Option<Payload> {
    if list.len() > store.data().out.directory.max_payload {
        return None;
    }
    Some(Payload::from_slice(list.as_le_slice(store)))
}

/// Refuses a call that acts (`send`, `request`, `respond`, `cancel`, `spawn`,
/// `stop`, `monitor`) made while
/// the component is being instantiated (from a start function): the actor does
/// not exist yet, so nothing it asked for could be delivered or undone. The call
/// traps, which fails the spawn. Calls that only read (`self-address`, `lookup`,
/// `now-ns`) and `log` are answered.
#[inline]
fn entered(store: &StoreContextMut<'_, ActorCtx>, call: &str) -> wasmtime::Result<()> {
    if store.data().instantiated {
        return Ok(());
    }
    wasmtime::bail!(
        "`{call}` was called during instantiation (from a start function); it may \
         be called from `init` and the handlers only"
    )
}

/// After a call that may have borrowed the shard's request table: an `init`
/// running off the shard that waited for the shard to lend it gets its CPU
/// budget afresh, since the epoch ticked on while the shard ran other work
/// (so `init` runs at most twice its budget in all; on the shard it never
/// waits).
#[inline]
fn rearm_after_wait(store: &mut StoreContextMut<'_, ActorCtx>) {
    if store.data_mut().out.waited_for_shard()
        && let Some(ticks) = store.data().budget
    {
        store.set_epoch_deadline(ticks);
    }
}

/// Builds the linker that provides `wasmshard:actor/host` to every component.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<ActorCtx>> {
    let mut linker = Linker::<ActorCtx>::new(engine);
    let mut host = linker.instance(HOST_INTERFACE)?;

    host.func_wrap(
        "self-address",
        |store: StoreContextMut<'_, ActorCtx>, (): ()| Ok((store.data().out.me.to_bits(),)),
    )?;

    host.func_wrap(
        "lookup",
        |mut store: StoreContextMut<'_, ActorCtx>, (name,): (WasmStr,)| {
            let name = name.to_str(&store)?;
            match store.data().out.lookup(&name) {
                Ok(found) => Ok((found.map(Address::to_bits),)),
                // Hidden by its grants: as absent.
                Err(()) => {
                    let name = name.into_owned();
                    store.data_mut().out.hidden(&name);
                    Ok((None,))
                }
            }
        },
    )?;

    host.func_wrap(
        "send",
        |mut store: StoreContextMut<'_, ActorCtx>, (to, payload): (u64, WasmList<u8>)| {
            entered(&store, "send")?;
            let Some(bytes) = copy_payload(&store, &payload) else {
                let to = Whom::Actor(Address::from_bits(to));
                return Ok((Err(store.data().out.too_large(
                    to,
                    "message",
                    payload.len(),
                )),));
            };
            Ok((store.data_mut().out.send(Address::from_bits(to), bytes),))
        },
    )?;

    host.func_wrap(
        "request",
        |mut store: StoreContextMut<'_, ActorCtx>,
         (to, payload, timeout): (u64, WasmList<u8>, u64)| {
            entered(&store, "request")?;
            let Some(bytes) = copy_payload(&store, &payload) else {
                let to = Whom::Actor(Address::from_bits(to));
                return Ok((Err(store.data().out.too_large(
                    to,
                    "request",
                    payload.len(),
                )),));
            };
            let id = store
                .data_mut()
                .out
                .request(Address::from_bits(to), bytes, timeout);
            rearm_after_wait(&mut store);
            Ok((id,))
        },
    )?;

    host.func_wrap(
        "respond",
        |mut store: StoreContextMut<'_, ActorCtx>, (id, payload): (u64, WasmList<u8>)| {
            entered(&store, "respond")?;
            let Some(bytes) = copy_payload(&store, &payload) else {
                let size = payload.len();
                return Ok((Err(store.data().out.too_large(
                    Whom::Answer(id),
                    "response",
                    size,
                )),));
            };
            Ok((store.data_mut().out.respond(id, bytes),))
        },
    )?;

    host.func_wrap(
        "cancel",
        |mut store: StoreContextMut<'_, ActorCtx>, (id,): (u64,)| {
            entered(&store, "cancel")?;
            Ok((store.data_mut().out.cancel(id),))
        },
    )?;

    host.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, ActorCtx>, (level, message): (LogLevel, WasmStr)| {
            let message = message.to_str(&store)?;
            let data = store.data();
            data.out
                .directory
                .log(data.out.me, &data.out.name, level, &message);
            if level == LogLevel::Error {
                let line = crate::log::one_line(&message, LAST_ERROR_BYTES).into_owned();
                drop(message);
                store.data_mut().last_error = Some(line);
            }
            Ok(())
        },
    )?;

    host.func_wrap("now-ns", |store: StoreContextMut<'_, ActorCtx>, (): ()| {
        Ok((store.data().out.now_ns(),))
    })?;

    let mut timers = linker.instance(TIMERS_INTERFACE)?;

    timers.func_wrap(
        "schedule",
        |mut store: StoreContextMut<'_, ActorCtx>, (delay, payload): (u64, WasmList<u8>)| {
            entered(&store, "schedule")?;
            let Some(bytes) = copy_payload(&store, &payload) else {
                return Ok((Err(SendError::TooLarge),));
            };
            let id = store.data_mut().out.schedule(delay, bytes);
            rearm_after_wait(&mut store);
            Ok((id,))
        },
    )?;

    timers.func_wrap(
        "cancel-timer",
        |mut store: StoreContextMut<'_, ActorCtx>, (id,): (u64,)| {
            entered(&store, "cancel-timer")?;
            Ok((store.data_mut().out.cancel_timer(id),))
        },
    )?;

    let mut trace = linker.instance(TRACING_INTERFACE)?;

    trace.func_wrap("current", |store: StoreContextMut<'_, ActorCtx>, (): ()| {
        entered(&store, "current")?;
        Ok((store.data().out.trace.map(|t| TraceContext {
            trace_hi: (t.trace_id() >> 64) as u64,
            trace_lo: t.trace_id() as u64,
            span: t.span_id(),
        }),))
    })?;

    let mut topics = linker.instance(TOPICS_INTERFACE)?;

    topics.func_wrap(
        "subscribe",
        |mut store: StoreContextMut<'_, ActorCtx>, (topic,): (WasmStr,)| {
            entered(&store, "subscribe")?;
            let topic = topic.to_str(&store)?;
            // Checked before it is copied out of the guest's memory.
            if let Err(e) = crate::topics::checked(&topic, true) {
                return Ok((Err(e),));
            }
            let topic = topic.into_owned();
            Ok((store.data_mut().out.subscribe(&topic),))
        },
    )?;

    topics.func_wrap(
        "unsubscribe",
        |mut store: StoreContextMut<'_, ActorCtx>, (topic,): (WasmStr,)| {
            entered(&store, "unsubscribe")?;
            let topic = topic.to_str(&store)?;
            if topic.len() > crate::topics::MAX_TOPIC_LEN {
                // Never subscribed: nothing to copy out.
                return Ok((false,));
            }
            let topic = topic.into_owned();
            Ok((store.data_mut().out.unsubscribe(&topic),))
        },
    )?;

    topics.func_wrap(
        "publish",
        |mut store: StoreContextMut<'_, ActorCtx>, (topic, payload): (WasmStr, WasmList<u8>)| {
            entered(&store, "publish")?;
            let size = payload.len();
            // Copied onto the stack (the store is borrowed by the string):
            // a topic is short.
            let mut name = [0u8; crate::MAX_TOPIC_LEN];
            let topic_str = topic.to_str(&store)?;
            let len = topic_str.len();
            if len > crate::MAX_TOPIC_LEN {
                let cut = topic_str.floor_char_boundary(crate::MAX_TOPIC_LEN);
                let shown = Whom::Topic(&topic_str[..cut]);
                return Ok((Err(store.data().out.too_large(shown, "publication", size)),));
            }
            name[..len].copy_from_slice(topic_str.as_bytes());
            drop(topic_str);
            let topic = std::str::from_utf8(&name[..len]).expect("copied from a str");
            let Some(bytes) = copy_payload(&store, &payload) else {
                let shown = Whom::Topic(topic);
                return Ok((Err(store.data().out.too_large(shown, "publication", size)),));
            };
            let r = store.data_mut().out.publish(topic, bytes);
            Ok((r.map(|o| PublishOutcome {
                delivered: o.delivered,
                refused: o.refused,
            }),))
        },
    )?;

    let mut lifecycle = linker.instance(LIFECYCLE_INTERFACE)?;

    lifecycle.func_wrap(
        "spawn",
        |mut store: StoreContextMut<'_, ActorCtx>,
         (component, name, config): (WasmStr, Option<WasmStr>, WasmList<u8>)| {
            entered(&store, "spawn")?;
            let max = store.data().out.directory.max_payload;
            if config.len() > max {
                wasmtime::bail!(
                    "`spawn` was given a config of {} bytes, over the {max}-byte payload limit",
                    config.len()
                );
            }
            let component = component.to_str(&store)?.into_owned();
            let name = match &name {
                Some(n) => {
                    // Checked before it is copied out of the guest's memory.
                    let n = n.to_str(&store)?;
                    if let Some(fault) = crate::config::name_fault(&n) {
                        wasmtime::bail!(
                            "`spawn` was given {fault}: a name is 1 to {} bytes that print \
                             as they are (`none` for an anonymous child)",
                            crate::MAX_NAME_LEN
                        );
                    }
                    Some(n.into_owned())
                }
                None => None,
            };
            let config = config.as_le_slice(&store).to_vec();
            let r = store
                .data_mut()
                .out
                .spawn(&component, name.as_deref(), &config);
            Ok((r.map(Address::to_bits),))
        },
    )?;

    lifecycle.func_wrap(
        "stop",
        |mut store: StoreContextMut<'_, ActorCtx>, (target,): (u64,)| {
            entered(&store, "stop")?;
            Ok((store.data_mut().out.stop(Address::from_bits(target)),))
        },
    )?;

    lifecycle.func_wrap(
        "monitor",
        |mut store: StoreContextMut<'_, ActorCtx>, (target,): (u64,)| {
            entered(&store, "monitor")?;
            let id = store.data_mut().out.monitor(Address::from_bits(target));
            rearm_after_wait(&mut store);
            Ok((id,))
        },
    )?;

    let mut batch = linker.instance(BATCH_HOST_INTERFACE)?;
    batch.func_wrap(
        "send-frames",
        |mut store: StoreContextMut<'_, ActorCtx>, (frames,): (WasmList<u8>,)| {
            entered(&store, "send-frames")?;
            // Too many frames or bytes for one call: nothing is sent.
            let count = match frames.len() {
                n if n > MAX_FRAMES_BYTES => None,
                _ => count_frames(frames.as_le_slice(&store))?,
            };
            let Some(count) = count else {
                return Ok(((0, Some(SendError::TooLarge)),));
            };
            let max = store.data().out.directory.max_payload;
            let mut at = 0;
            for sent in 0..count {
                // Each frame as `send` takes it: copied out of guest memory,
                // then admitted (the framing was checked above).
                let buf = &frames.as_le_slice(&store)[at..];
                let to = Address::from_bits(u64::from_le_bytes(
                    buf[..8].try_into().expect("eight bytes"),
                ));
                let len = u32::from_le_bytes(buf[8..FRAME_HEADER].try_into().expect("four bytes"))
                    as usize;
                at += FRAME_HEADER + len;
                let refused = if len > max {
                    Err(store.data().out.too_large(Whom::Actor(to), "message", len))
                } else {
                    let payload = Payload::from_slice(&buf[FRAME_HEADER..FRAME_HEADER + len]);
                    store.data_mut().out.send(to, payload)
                };
                if let Err(e) = refused {
                    return Ok(((sent, Some(e)),));
                }
            }
            Ok(((count, None),))
        },
    )?;

    let mut storage = linker.instance(STORAGE_INTERFACE)?;

    storage.func_wrap(
        "get",
        |store: StoreContextMut<'_, ActorCtx>, (key,): (WasmList<u8>,)| {
            if key.len() > crate::storage::MAX_STORAGE_KEY {
                // Never stored: not hashed.
                return Ok((None,));
            }
            let key = key.as_le_slice(&store);
            // The stored `Arc` is lowered as it is: no copy into a `Vec` on
            // the way (11 % fewer instructions per `get`, benches/hot_paths.rs).
            Ok((store.data().out.storage.get(key).cloned(),))
        },
    )?;

    storage.func_wrap(
        "set",
        |mut store: StoreContextMut<'_, ActorCtx>, (key, value): (WasmList<u8>, WasmList<u8>)| {
            entered(&store, "set")?;
            let quota = store.data().out.directory.storage_quota;
            // Checked before anything is copied: an oversized entry costs nothing.
            if key.len() > crate::storage::MAX_STORAGE_KEY
                || key.len().saturating_add(value.len()) > quota
            {
                return Ok((Err(crate::error::StorageError::TooLarge),));
            }
            // Copied out of guest memory (which the store holds) before the
            // store's data can be borrowed: the key on the stack if short, the
            // value into the box it is kept in.
            let key: smallvec::SmallVec<[u8; 64]> = key.as_le_slice(&store).into();
            let value: std::sync::Arc<[u8]> = value.as_le_slice(&store).into();
            Ok((store.data_mut().out.storage.set(&key, value, quota),))
        },
    )?;

    storage.func_wrap(
        "delete",
        |mut store: StoreContextMut<'_, ActorCtx>, (key,): (WasmList<u8>,)| {
            entered(&store, "delete")?;
            if key.len() > crate::storage::MAX_STORAGE_KEY {
                // Never stored: not copied out.
                return Ok((false,));
            }
            let key: smallvec::SmallVec<[u8; 64]> = key.as_le_slice(&store).into();
            Ok((store.data_mut().out.storage.delete(&key),))
        },
    )?;

    Ok(linker)
}
