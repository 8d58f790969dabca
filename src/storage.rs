//! Per-actor storage (`wasmshard:actor/storage`): key-value state the host
//! keeps for an actor, beside its outbox, so it outlives the instance: a
//! supervised restart and an upgrade find it; it is dropped when the actor ends
//! for good.
//!
//! Bounded per actor: a key is at most [`MAX_STORAGE_KEY`] bytes; the keys and
//! values an actor holds add up to at most its quota
//! ([`RuntimeBuilder::storage_quota`](crate::RuntimeBuilder::storage_quota)).

use ahash::AHashMap;

use crate::error::StorageError;

/// The longest storage key, in bytes.
pub const MAX_STORAGE_KEY: usize = 1024;

/// One actor's stored keys and values, and the bytes they take.
#[derive(Clone, Debug, Default)]
pub(crate) struct Storage {
    map: AHashMap<Box<[u8]>, Box<[u8]>>,
    /// Keys and values together, in bytes.
    bytes: usize,
}

impl Storage {
    /// The value stored under `key`.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|v| &**v)
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
        value: Box<[u8]>,
        quota: usize,
    ) -> Result<(), StorageError> {
        let size = key.len() + value.len();
        if key.len() > MAX_STORAGE_KEY || size > quota {
            return Err(StorageError::TooLarge);
        }
        match self.map.get_mut(key) {
            Some(old) => {
                let after = self.bytes - old.len() + value.len();
                if after > quota {
                    return Err(StorageError::QuotaExceeded);
                }
                *old = value;
                self.bytes = after;
            }
            None => {
                if self.bytes + size > quota {
                    return Err(StorageError::QuotaExceeded);
                }
                self.map.insert(key.into(), value);
                self.bytes += size;
            }
        }
        Ok(())
    }

    /// Deletes `key`; whether it was there.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some(old) => {
                self.bytes -= key.len() + old.len();
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
    fn the_quota_counts_keys_and_values_and_replacements() {
        let mut s = Storage::default();
        let b = |v: &[u8]| -> Box<[u8]> { v.into() };
        assert_eq!(s.set(b"ab", b(b"1234"), 10), Ok(()));
        assert_eq!(s.bytes(), 6);
        assert_eq!(
            s.set(b"cd", b(b"12345"), 10),
            Err(StorageError::QuotaExceeded)
        );
        // Replacing shrinks or grows by the difference only.
        assert_eq!(s.set(b"ab", b(b"12345678"), 10), Ok(()));
        assert_eq!(s.bytes(), 10);
        assert_eq!(s.get(b"ab"), Some(&b"12345678"[..]));
        assert_eq!(
            s.set(b"ab", b(b"123456789"), 10),
            Err(StorageError::QuotaExceeded)
        );
        assert_eq!(
            s.set(b"x", b(b"1234567890"), 10),
            Err(StorageError::TooLarge)
        );
        assert!(s.delete(b"ab"));
        assert!(!s.delete(b"ab"));
        assert_eq!((s.bytes(), s.get(b"ab")), (0, None));
        let long = vec![0u8; MAX_STORAGE_KEY + 1];
        assert_eq!(
            s.set(&long, b(b""), usize::MAX),
            Err(StorageError::TooLarge)
        );
    }
}
