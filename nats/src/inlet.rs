//! The way from the bridge's thread into one of its native actors: a lock-free
//! queue, and a tell from the host (a random 16-byte token, so the actor
//! tells it from a message) that wakes the actor when the queue gains its
//! first item since the actor last looked.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_queue::SegQueue;
use wasmshard::{Address, Handle, SendError};

pub(crate) struct Inlet<T> {
    queue: SegQueue<T>,
    /// The wake-up's payload: random, so that an actor tells a wake-up from
    /// a message (an empty one from the host, say).
    token: [u8; 16],
    /// A wake-up is on its way (or the actor is draining): no other is sent.
    woken: AtomicBool,
    /// The actor's address, set once it is spawned.
    actor: OnceLock<Address>,
    handle: Handle,
}

impl<T> Inlet<T> {
    pub(crate) fn new(handle: Handle) -> Inlet<T> {
        Inlet {
            queue: SegQueue::new(),
            token: token(),
            woken: AtomicBool::new(false),
            actor: OnceLock::new(),
            handle,
        }
    }

    /// The actor it feeds is spawned at `address`: woken at once if
    /// something was queued before it was known.
    pub(crate) fn attach(&self, address: Address) {
        let _ = self.actor.set(address);
        if !self.queue.is_empty() {
            self.woken.store(true, Ordering::SeqCst);
            let _ = self.handle.send(address, &self.token);
        }
    }

    /// Whether `from` and `payload` are this inlet's wake-up.
    pub(crate) fn is_wake_up(&self, from: Address, payload: &[u8]) -> bool {
        from == Address::HOST && payload == self.token
    }

    /// Whether the runtime still takes the wake-ups.
    pub(crate) fn is_open(&self) -> bool {
        self.handle.is_open()
    }

    /// Queues `item` for the actor and wakes it if no wake-up is under way.
    ///
    /// The wake-up is a tell from the host carrying the inlet's token. If the actor's mailbox is
    /// full, it is refused, and the actor finds the item when it handles what
    /// fills its mailbox (it drains on every message). An error (the
    /// runtime takes no more host sends, or the actor is gone) leaves the
    /// item queued: the caller takes what is queued ([`Inlet::take_all`])
    /// if no one else will.
    pub(crate) fn push(&self, item: T) -> Result<(), SendError> {
        self.queue.push(item);
        // SeqCst, with the store in `begin`: either this sees the flag
        // cleared, or the drain that cleared it sees the item.
        if self.woken.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let Some(&actor) = self.actor.get() else {
            // Not attached yet: `attach` wakes it.
            return Ok(());
        };
        match self.handle.send(actor, &self.token) {
            Ok(()) | Err(SendError::MailboxFull) => Ok(()),
            Err(e) => {
                self.woken.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Takes what is queued, on the actor's shard: the flag is cleared first,
    /// so an item queued after this looked gets a wake-up of its own.
    pub(crate) fn drain(&self, mut each: impl FnMut(T)) {
        self.begin();
        while let Some(item) = self.pop() {
            each(item);
        }
    }

    /// The actor begins taking items one by one ([`Inlet::pop`]): an item
    /// queued after this gets a wake-up of its own.
    pub(crate) fn begin(&self) {
        self.woken.store(false, Ordering::SeqCst);
    }

    /// The next item, after [`Inlet::begin`].
    pub(crate) fn pop(&self) -> Option<T> {
        self.queue.pop()
    }

    /// Items queued and not taken (to count what a closed bridge leaves).
    pub(crate) fn take_all(&self) -> Vec<T> {
        std::iter::from_fn(|| self.queue.pop()).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// 16 bytes no sender can guess: the process's random hash keys, drawn anew
/// per inlet.
fn token() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut token = [0u8; 16];
    for half in token.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(half.as_ptr() as usize);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    token
}
