//! Durable storage: with a storage directory configured, what named actors
//! store is written to a redb database there, keyed by actor name, by a
//! writer thread of its own in group commits, so a later process finds it.
//!
//! An actor's storage is read from memory (`storage.rs`) as always; each
//! change it makes is also queued here, off the message path, and the writer
//! commits whatever has queued in one transaction (a redb commit, which
//! fsyncs), again and again while changes come. A spawn of a named actor
//! loads its entries: the database's, then the changes still queued or being
//! committed, in order, so a name reused at once sees the last actor's end.
//!
//! What a crash can lose: the changes queued or being committed when it
//! happened (those of the last commit's duration, typically a few
//! milliseconds); a committed change survives. A clean shutdown waits for the
//! queue to be committed.
//!
//! | field | written by | read by | ordering |
//! |---|---|---|---|
//! | `queue` | shards (push), the writer (take, clear) | shards (load), shutdown (flush) | `Mutex` + `Condvar`; a push wakes the writer only when it finds the queue empty |
//! | `failed` | the writer, once, if a commit fails | shards (refuse writes) | Release / Acquire |

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use ahash::AHashMap;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::cause;
use crate::shared::lock;

/// (actor name, key) → value.
const TABLE: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("storage");

/// The database file in the storage directory.
pub(crate) const FILE: &str = "wasmshard-storage.redb";

/// One change to one actor's storage.
pub(crate) enum Op {
    Set(Arc<str>, Box<[u8]>, Arc<[u8]>),
    Delete(Arc<str>, Box<[u8]>),
    /// The actor ended for good: everything it stored goes.
    Clear(Arc<str>),
}

impl Op {
    fn name(&self) -> &str {
        match self {
            Op::Set(n, ..) | Op::Delete(n, _) | Op::Clear(n) => n,
        }
    }
}

#[derive(Default)]
struct Queue {
    /// Changes waiting for the next commit.
    queued: Vec<Op>,
    /// Changes in the commit under way (shared with the writer, which
    /// commits them without the lock).
    committing: Arc<Vec<Op>>,
    /// No more changes come: the writer commits what is queued and ends.
    closed: bool,
}

/// The durable store of a runtime.
pub(crate) struct Durable {
    db: Database,
    queue: Mutex<Queue>,
    /// Wakes the writer: changes queued in an empty queue, or closed.
    changed: Condvar,
    /// A commit failed: the store takes no more changes (`unavailable`).
    failed: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// An actor's stored keys and values.
pub(crate) type Entries = AHashMap<Box<[u8]>, Arc<[u8]>>;

/// Why the store could not be opened or read.
pub(crate) type Failure = Box<dyn std::error::Error + Send + Sync>;

impl Durable {
    /// Opens (or creates) the store in `dir` and starts its writer.
    pub(crate) fn open(dir: &Path) -> Result<Arc<Durable>, Failure> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join(FILE))?;
        // The table exists from the start, so reads never find it missing.
        let w = db.begin_write()?;
        w.open_table(TABLE)?;
        w.commit()?;
        let durable = Arc::new(Durable {
            db,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            failed: AtomicBool::new(false),
            writer: Mutex::new(None),
        });
        let d = durable.clone();
        let handle = std::thread::Builder::new()
            .name("wasmshard-storage".into())
            .spawn(move || d.write_loop())?;
        *lock(&durable.writer) = Some(handle);
        Ok(durable)
    }

    /// Whether the store takes changes (no commit has failed).
    pub(crate) fn is_available(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    /// Queues a change for the next commit.
    pub(crate) fn push(&self, op: Op) {
        let mut q = lock(&self.queue);
        if q.closed {
            return;
        }
        q.queued.push(op);
        // Only the change that makes the queue non-empty wakes the writer (a
        // system call): it waits only on an empty queue, which it checks under
        // this lock, so a change queued behind others, or during a commit, is
        // found without one.
        if q.queued.len() == 1 {
            self.changed.notify_one();
        }
    }

    /// What actor `name` has stored: the committed entries, with the changes
    /// queued or being committed applied in order.
    pub(crate) fn load(&self, name: &str) -> Result<Entries, Failure> {
        // Held while reading: the writer cannot drop `committing` (committed
        // or not) before it is applied here.
        let q = lock(&self.queue);
        let mut entries = AHashMap::new();
        let r = self.db.begin_read()?;
        let table = r.open_table(TABLE)?;
        for entry in table.range((name, &[][..])..)? {
            let (k, v) = entry?;
            let (n, key) = k.value();
            if n != name {
                break;
            }
            entries.insert(Box::<[u8]>::from(key), Arc::<[u8]>::from(v.value()));
        }
        for op in q.committing.iter().chain(q.queued.iter()) {
            if op.name() != name {
                continue;
            }
            match op {
                Op::Set(_, k, v) => {
                    entries.insert(k.clone(), v.clone());
                }
                Op::Delete(_, k) => {
                    entries.remove(k);
                }
                Op::Clear(_) => entries.clear(),
            }
        }
        Ok(entries)
    }

    /// Waits until every change queued so far is committed (or the store
    /// failed), then stops the writer.
    pub(crate) fn close(&self) {
        {
            let mut q = lock(&self.queue);
            q.closed = true;
            self.changed.notify_all();
        }
        if let Some(writer) = lock(&self.writer).take()
            && writer.join().is_err()
        {
            log::error!("wasmshard: the storage writer panicked");
        }
    }

    fn write_loop(&self) {
        loop {
            let batch = {
                let mut q = lock(&self.queue);
                while q.queued.is_empty() && !q.closed {
                    q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                if q.queued.is_empty() {
                    return; // closed, and nothing left
                }
                q.committing = Arc::new(std::mem::take(&mut q.queued));
                q.committing.clone()
            };
            // The queue's lock is not held while committing: shards keep
            // queueing (the next group), and loads see this group in
            // `committing` until it is in the database.
            let result = self.commit(&batch);
            let mut q = lock(&self.queue);
            q.committing = Arc::default();
            if let Err(e) = result {
                log::error!(
                    "wasmshard: storage commit of {} changes failed ({e}); the store takes no more",
                    batch.len()
                );
                self.failed.store(true, Ordering::Release);
                q.queued.clear();
                q.closed = true;
            }
            drop(batch);
        }
    }

    fn commit(&self, batch: &[Op]) -> Result<(), Failure> {
        let w = self.db.begin_write()?;
        {
            let mut table = w.open_table(TABLE)?;
            for op in batch {
                match op {
                    Op::Set(n, k, v) => {
                        table.insert((&**n, &**k), &**v)?;
                    }
                    Op::Delete(n, k) => {
                        table.remove((&**n, &**k))?;
                    }
                    Op::Clear(n) => {
                        let keys: Vec<Vec<u8>> = table
                            .range((&**n, &[][..])..)?
                            .map_while(Result::ok)
                            .take_while(|(k, _)| k.value().0 == &**n)
                            .map(|(k, _)| k.value().1.to_vec())
                            .collect();
                        for k in keys {
                            table.remove((&**n, &k[..]))?;
                        }
                    }
                }
            }
        }
        w.commit()?;
        Ok(())
    }
}

/// Keeps a cause from the store's error types.
pub(crate) fn failure(e: Failure) -> crate::error::Cause {
    cause(e)
}
