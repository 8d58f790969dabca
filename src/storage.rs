//! Per-actor storage (`wasmshard:actor/storage`): key-value state the host
//! keeps for an actor, beside its outbox, so it outlives the instance: a
//! supervised restart and an upgrade find it; it is dropped when the actor ends
//! for good.
//!
//! Bounded per actor: a key is at most [`MAX_STORAGE_KEY`] bytes; the keys and
//! values an actor holds add up to at most its quota
//! ([`RuntimeBuilder::storage_quota`](crate::RuntimeBuilder::storage_quota)).

use std::sync::Arc;

use ahash::AHashMap;

use crate::durable::{Durable, Op};
use crate::error::StorageError;

/// The longest storage key, in bytes.
pub const MAX_STORAGE_KEY: usize = 1024;

/// What each stored entry counts against the quota besides its key and
/// value: about what the host spends keeping it (so a flood of tiny entries
/// is bounded too).
pub const STORAGE_ENTRY_OVERHEAD: usize = 32;

/// Stored keys and their values.
type Entries = AHashMap<Box<[u8]>, Arc<[u8]>>;

/// What each key changed in a spawn's `init` held before (`None`: nothing).
type Journal = AHashMap<Box<[u8]>, Option<Arc<[u8]>>>;

/// One actor's stored keys and values, and the bytes they take.
#[derive(Default)]
pub(crate) struct Storage {
    /// Values are shared (`Arc`), so `get` hands one out without a copy and a
    /// durable change queues it without one. Boxed, and made at the first
    /// `set`: most actors store nothing, and an empty map with its random
    /// state is 64 bytes in every actor.
    map: Option<Box<Entries>>,
    /// Keys and values together, in bytes.
    bytes: usize,
    /// Where its changes go too, with a storage directory (a named actor):
    /// the durable store, under its name.
    durable: Option<(Arc<str>, Arc<Durable>)>,
    /// A copy's (see [`Storage::copy`]): the durable store its changes go to
    /// if it is adopted, asked only whether it still takes changes.
    adopting: Option<Arc<Durable>>,
    /// While a spawn's `init` runs (durable storage only): the value each key
    /// it changed had before (`None`: none), so that an `init` that fails
    /// takes its changes back (see [`Storage::undo`]).
    journal: Option<Box<Journal>>,
}

impl Storage {
    /// The storage of the actor called `name`, as the durable store has it.
    pub(crate) fn durable(
        name: Arc<str>,
        durable: Arc<Durable>,
    ) -> Result<Storage, crate::durable::Failure> {
        let map = durable.load(&name)?;
        let bytes = map
            .iter()
            .map(|(k, v)| STORAGE_ENTRY_OVERHEAD + k.len() + v.len())
            .sum();
        Ok(Storage {
            map: (!map.is_empty()).then(|| Box::new(map)),
            bytes,
            durable: Some((name, durable)),
            adopting: None,
            // Kept until the spawn's `init` has returned.
            journal: Some(Box::default()),
        })
    }

    /// A copy for a new instance whose `init` may fail (an upgrade): its
    /// changes stay in memory until [`Storage::adopt`].
    pub(crate) fn copy(&self) -> Storage {
        Storage {
            map: self.map.clone(),
            bytes: self.bytes,
            durable: None,
            adopting: self.durable.as_ref().map(|(_, d)| d.clone()),
            journal: None,
        }
    }

    /// Makes this copy (see [`Storage::copy`]) the actor's storage in place of
    /// `old`: with a durable store, what it holds is written over what was.
    pub(crate) fn adopt(&mut self, old: &mut Storage) {
        self.durable = old.durable.take();
        self.adopting = None;
        if let Some((name, durable)) = &self.durable {
            // In one commit: committed apart, a crash between the clear and
            // the rewrite would lose all of it.
            let rewrite = self
                .map
                .iter()
                .flat_map(|m| m.iter())
                .map(|(k, v)| Op::Set(name.clone(), k.clone(), v.clone(), false));
            durable.push_all(std::iter::once(Op::Clear(name.clone())).chain(rewrite));
        }
    }

    /// The spawn's `init` returned: its changes stand.
    pub(crate) fn keep(&mut self) {
        self.journal = None;
    }

    /// The spawn's `init` failed: what it changed durably is put back as it
    /// was (the next actor of the name found what the failed one wrote).
    pub(crate) fn undo(&mut self) {
        let (Some(journal), Some((name, durable))) = (self.journal.take(), &self.durable) else {
            return;
        };
        durable.push_all(journal.into_iter().map(|(key, before)| match before {
            Some(value) => Op::Set(name.clone(), key, value, false),
            None => Op::Delete(name.clone(), key),
        }));
    }

    /// Notes what `key` held before its first change in a spawn's `init`
    /// (nothing outside one).
    #[inline]
    fn journal(&mut self, key: &[u8]) {
        if let Some(journal) = self.journal.as_deref_mut()
            && !journal.contains_key(key)
        {
            let before = self.map.as_ref().and_then(|m| m.get(key)).cloned();
            journal.insert(key.into(), before);
        }
    }

    /// The actor ended for good: what it stored durably goes. One that
    /// holds nothing now has nothing stored once its changes are written
    /// (they mirror what it holds): it queues nothing (a clear costs the
    /// queue a pass over what it holds, under its lock).
    pub(crate) fn end(&mut self) {
        if let Some((name, durable)) = self.durable.take()
            && self.map.as_ref().is_some_and(|m| !m.is_empty())
        {
            durable.push(Op::Clear(name));
        }
    }

    /// The value stored under `key`.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Arc<[u8]>> {
        self.map.as_ref()?.get(key)
    }

    /// Stores `value` under `key`, within `quota` bytes for all keys and
    /// values together.
    ///
    /// # Errors
    ///
    /// `too-large` for a key over [`MAX_STORAGE_KEY`] or an entry larger than
    /// the whole quota; `quota-exceeded` if it would take the actor over it.
    pub(crate) fn set(
        &mut self,
        key: &[u8],
        value: Arc<[u8]>,
        quota: usize,
    ) -> Result<(), StorageError> {
        let size = STORAGE_ENTRY_OVERHEAD + key.len() + value.len();
        if key.len() > MAX_STORAGE_KEY || size > quota {
            return Err(StorageError::TooLarge);
        }
        // A copy's `init` (an upgrade's) is refused as the actor would be.
        let store = self
            .durable
            .as_ref()
            .map(|(_, d)| d)
            .or(self.adopting.as_ref());
        if store.is_some_and(|d| !d.is_available()) {
            return Err(StorageError::Unavailable);
        }
        let logged = self
            .durable
            .as_ref()
            .map(|(name, _)| (name.clone(), Box::<[u8]>::from(key), value.clone()));
        // The quota's verdict first: a refused set changes nothing, and is
        // not journaled (the journal holds only keys held now or before).
        let fresh = match self.get(key) {
            Some(old) => {
                let after = self.bytes - old.len() + value.len();
                // A value that does not grow is always taken: an actor over
                // its quota (a quota lowered since its entries were stored)
                // can shrink what it holds this way, not only by deleting.
                if after > quota && value.len() > old.len() {
                    return Err(StorageError::QuotaExceeded);
                }
                false
            }
            None if self.bytes + size > quota => return Err(StorageError::QuotaExceeded),
            None => true,
        };
        self.journal(key);
        let map = self.map.get_or_insert_with(Box::default);
        if fresh {
            map.insert(key.into(), value);
            self.bytes += size;
        } else {
            let old = map.get_mut(key).expect("looked up above");
            self.bytes = self.bytes - old.len() + value.len();
            *old = value;
        }
        if let (Some((name, key, value)), Some((_, durable))) = (logged, &self.durable) {
            durable.push(Op::Set(name, key, value, fresh));
        }
        Ok(())
    }

    /// Deletes `key`; whether it was there.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        if self.get(key).is_none() {
            // Nothing changes (and nothing is journaled).
            return false;
        }
        self.journal(key);
        if let Some(journal) = self.journal.as_deref_mut()
            && journal.get(key).is_some_and(Option::is_none)
        {
            // Set in this `init` and gone again: as it was before, so there
            // is nothing to take back (and the journal holds only keys held
            // now or before the `init`, within twice the quota).
            journal.remove(key);
        }
        match self.map.as_mut().and_then(|m| m.remove(key)) {
            Some(old) => {
                self.bytes -= STORAGE_ENTRY_OVERHEAD + key.len() + old.len();
                if let Some((name, durable)) = &self.durable {
                    durable.push(Op::Delete(name.clone(), key.into()));
                }
                true
            }
            None => false,
        }
    }

    /// Bytes stored (keys and values).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_counts_keys_values_overhead_and_replacements() {
        const O: usize = STORAGE_ENTRY_OVERHEAD;
        let q = 2 * O + 12;
        let mut s = Storage::default();
        let b = |v: &[u8]| -> Arc<[u8]> { v.into() };
        assert_eq!(s.set(b"ab", b(b"1234"), q), Ok(()));
        assert_eq!(s.bytes(), O + 6);
        assert_eq!(
            s.set(b"cd", b(b"1234567"), q),
            Err(StorageError::QuotaExceeded)
        );
        assert_eq!(s.set(b"cd", b(b"1234"), q), Ok(()));
        // Replacing grows or shrinks by the difference only.
        assert_eq!(
            s.set(b"ab", b(b"12345"), q),
            Err(StorageError::QuotaExceeded)
        );
        assert_eq!(s.set(b"ab", b(b"12"), q), Ok(()));
        assert_eq!(s.bytes(), 2 * O + 10);
        assert_eq!(s.get(b"ab").map(|v| &v[..]), Some(&b"12"[..]));
        // An entry larger than the whole quota can never fit.
        assert_eq!(
            s.set(b"x", vec![0; q].into(), q),
            Err(StorageError::TooLarge)
        );
        assert!(s.delete(b"ab"));
        assert!(!s.delete(b"ab"));
        assert_eq!((s.bytes(), s.get(b"ab").is_none()), (O + 6, true));
        let long = vec![0u8; MAX_STORAGE_KEY + 1];
        assert_eq!(
            s.set(&long, b(b""), usize::MAX),
            Err(StorageError::TooLarge)
        );
    }

    /// A spawn's `init` journals only the keys it changed that are held now
    /// or were before: a key set and deleted again, a refused set and a
    /// delete of nothing leave nothing to take back, so the journal stays
    /// within what the quota holds however long the `init` loops.
    #[test]
    fn an_init_s_journal_holds_only_keys_held_now_or_before() {
        const O: usize = STORAGE_ENTRY_OVERHEAD;
        let q = 4 * O + 64;
        let b = |v: &[u8]| -> Arc<[u8]> { v.into() };
        let mut s = Storage::default();
        assert_eq!(s.set(b"kept", b(b"1"), q), Ok(()));
        s.journal = Some(Box::default());
        for i in 0..10_000u32 {
            let key = i.to_le_bytes();
            assert_eq!(s.set(&key, b(b"v"), q), Ok(()));
            assert!(s.delete(&key));
            assert!(!s.delete(&(i + 1_000_000).to_le_bytes()));
            assert_eq!(
                s.set(&key, vec![0; q - O - 5].into(), q),
                Err(StorageError::QuotaExceeded)
            );
        }
        let journal = |s: &Storage| s.journal.as_ref().map_or(0, |j| j.len());
        assert_eq!(journal(&s), 0);
        // A key held before is journaled once, whatever happens to it; a new
        // key held now is journaled.
        assert!(s.delete(b"kept"));
        assert_eq!(s.set(b"kept", b(b"2"), q), Ok(()));
        assert!(s.delete(b"kept"));
        assert_eq!(s.set(b"new", b(b"3"), q), Ok(()));
        assert_eq!(journal(&s), 2);
        let j = s.journal.as_ref().unwrap();
        assert_eq!(j.get(&b"kept"[..]), Some(&Some(b(b"1"))));
        assert_eq!(j.get(&b"new"[..]), Some(&None));
    }
}
