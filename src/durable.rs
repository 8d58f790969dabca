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
//! | `db` | `open`; `close` (set to `None` once the writer is done, letting go of the file) | shards (load), the writer (commit) | `RwLock` (read by both; written once, at close) |

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
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
#[derive(Clone)]
pub(crate) enum Op {
    /// A key set. `fresh`: the actor had no such key when it set it, so
    /// neither has the database once what is queued before is committed.
    Set(Arc<str>, Box<[u8]>, Arc<[u8]>, bool),
    Delete(Arc<str>, Box<[u8]>),
    /// The actor ended for good: everything it stored goes.
    Clear(Arc<str>),
    /// Nothing: a fresh key's set undone by its delete before either was
    /// committed (left in place, so the changes after it keep their order).
    Void,
}

impl Op {
    /// The actor it changes (`""`, which names no actor, for a void).
    fn name(&self) -> &str {
        match self {
            Op::Set(n, ..) | Op::Delete(n, _) | Op::Clear(n) => n,
            Op::Void => "",
        }
    }
}

#[derive(Default)]
struct Queue {
    /// Changes waiting for the next commit: at most one per (actor, key)
    /// (a change replaces the one queued before it for its key) and one
    /// `Clear` per actor (it drops what was queued for the actor before
    /// it), and a key set anew and deleted again before either is
    /// committed leaves nothing (a void, squeezed out in time), so what
    /// waits is bounded by what the actors hold and have held in the
    /// database, not by how fast they change it.
    queued: Vec<Op>,
    /// Where in `queued` the change of each (actor, key) is.
    at: AHashMap<(Arc<str>, Box<[u8]>), usize>,
    /// Voids in `queued` (squeezed out once they are half of it).
    voids: usize,
    /// Changes in the commit under way (shared with the writer, which
    /// commits them without the lock).
    committing: Arc<Vec<Op>>,
    /// No more changes come: the writer commits what is queued and ends.
    closed: bool,
}

impl Queue {
    /// Queues `op`, replacing what it makes void; returns whether the queue
    /// was empty (the writer waits only on an empty queue).
    fn add(&mut self, mut op: Op) -> bool {
        match &mut op {
            Op::Void => return false,
            Op::Set(n, k, ..) | Op::Delete(n, k) => {
                let Queue { queued, at, .. } = self;
                match at.entry((n.clone(), k.clone())) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        let i = *e.get();
                        let was_fresh = matches!(queued[i], Op::Set(.., true));
                        if was_fresh && matches!(op, Op::Delete(..)) {
                            // A key that never reached the database, gone
                            // again: nothing to commit (a loop of set and
                            // delete of new keys queued a delete each).
                            e.remove();
                            queued[i] = Op::Void;
                            self.voids += 1;
                            self.squeeze();
                            return false;
                        }
                        // Replaces the queued change of that key, where it was:
                        // changes of other keys keep their order around it. A
                        // set is fresh if what it replaces was (the key is not
                        // in the database whatever the actor had since), and
                        // not if it replaces a delete (whose key may be).
                        if let Op::Set(.., fresh) = &mut op {
                            *fresh = was_fresh;
                        }
                        queued[i] = op;
                        return false;
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(queued.len());
                    }
                }
                queued.push(op);
            }
            Op::Clear(n) => {
                // Everything queued for the actor before is void: its end
                // removes what it stored, whatever that was.
                let n = n.clone();
                self.queued
                    .retain(|o| !matches!(o, Op::Void) && o.name() != &*n);
                self.voids = 0;
                self.reindex();
                self.queued.push(op);
            }
        }
        self.queued.len() == 1
    }

    /// Squeezes the voids out once they are half the queue (amortized).
    fn squeeze(&mut self) {
        if self.voids > 64 && 2 * self.voids > self.queued.len() {
            self.queued.retain(|o| !matches!(o, Op::Void));
            self.voids = 0;
            self.reindex();
        }
    }

    /// Rebuilds `at` from `queued`.
    fn reindex(&mut self) {
        self.at.clear();
        for (i, o) in self.queued.iter().enumerate() {
            if let Op::Set(n, k, ..) | Op::Delete(n, k) = o {
                self.at.insert((n.clone(), k.clone()), i);
            }
        }
    }
}

/// The durable store of a runtime.
pub(crate) struct Durable {
    /// The database; `None` once closed, so that the file is let go at
    /// shutdown even while something (a `Handle`) keeps this struct.
    db: RwLock<Option<Database>>,
    queue: Mutex<Queue>,
    /// Wakes the writer: changes queued in an empty queue, or closed.
    changed: Condvar,
    /// A commit failed: the store takes no more changes (`unavailable`).
    failed: AtomicBool,
    /// The next commit fails (fault injection for the project's tests).
    #[cfg(feature = "testing")]
    pub(crate) fail_next: AtomicBool,
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
        let path = dir.join(FILE);
        let db = damage_is_an_error(|| {
            let db = Database::create(&path)?;
            // The table exists from the start, so reads never find it missing.
            let w = db.begin_write()?;
            w.open_table(TABLE)?;
            w.commit()?;
            Ok(db)
        })?;
        let durable = Arc::new(Durable {
            db: RwLock::new(Some(db)),
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            failed: AtomicBool::new(false),
            #[cfg(feature = "testing")]
            fail_next: AtomicBool::new(false),
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
        self.push_all(std::iter::once(op));
    }

    /// Queues changes for one commit: the writer takes all of them or none
    /// (an upgrade's clear and rewrite must not be committed apart: a crash
    /// between the two commits would lose everything the actor stored).
    pub(crate) fn push_all(&self, ops: impl IntoIterator<Item = Op>) {
        let mut q = lock(&self.queue);
        if q.closed {
            return;
        }
        let mut first = false;
        for op in ops {
            first |= q.add(op);
        }
        // Only the change that makes the queue non-empty wakes the writer (a
        // system call): it waits only on an empty queue, which it checks under
        // this lock, so a change queued behind others, or during a commit, is
        // found without one.
        if first {
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
        self.with_db(|db| {
            let r = db.begin_read()?;
            let table = r.open_table(TABLE)?;
            for entry in table.range((name, &[][..])..)? {
                let (k, v) = entry?;
                let (n, key) = k.value();
                if n != name {
                    break;
                }
                entries.insert(Box::<[u8]>::from(key), Arc::<[u8]>::from(v.value()));
            }
            Ok(())
        })?;
        for op in q.committing.iter().chain(q.queued.iter()) {
            if op.name() != name {
                continue;
            }
            match op {
                Op::Set(_, k, v, _) => {
                    entries.insert(k.clone(), v.clone());
                }
                Op::Delete(_, k) => {
                    entries.remove(k);
                }
                Op::Clear(_) => entries.clear(),
                Op::Void => {}
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
        // Everything is committed: the file is let go.
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = None;
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
                q.at.clear();
                q.voids = 0;
                q.committing.clone()
            };
            // The queue's lock is not held while committing: shards keep
            // queueing (the next group), and loads see this group in
            // `committing` until it is in the database.
            let result = self.with_db(|db| self.commit(db, &batch));
            let mut q = lock(&self.queue);
            q.committing = Arc::default();
            if let Err(e) = result {
                log::error!(
                    "wasmshard: storage commit of {} changes failed ({e}); the store takes no more",
                    batch.len()
                );
                self.failed.store(true, Ordering::Release);
                // Nothing is written from now on, but what was not committed
                // stays queued, and deletes and ends still queue (sets are
                // refused): a load in this process applies them, so a name
                // reused here does not find what its last actor deleted, or
                // what an ended actor stored.
                let mut kept = Arc::try_unwrap(batch).unwrap_or_else(|b| (*b).clone());
                kept.append(&mut q.queued);
                q.queued = kept;
                q.voids = q.queued.iter().filter(|o| matches!(o, Op::Void)).count();
                q.reindex();
                return;
            }
            drop(batch);
        }
    }

    /// Runs `f` on the database while it is open (an error once `close` has
    /// let go of it), a panic in it an error (see [`damage_is_an_error`]).
    fn with_db<R>(&self, f: impl FnOnce(&Database) -> Result<R, Failure>) -> Result<R, Failure> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        let Some(db) = db.as_ref() else {
            return Err("the storage is closed (the runtime has shut down)".into());
        };
        damage_is_an_error(|| f(db))
    }

    fn commit(&self, db: &Database, batch: &[Op]) -> Result<(), Failure> {
        #[cfg(feature = "testing")]
        if self.fail_next.swap(false, Ordering::AcqRel) {
            return Err("a failure injected by a test".into());
        }
        let w = db.begin_write()?;
        {
            let mut table = w.open_table(TABLE)?;
            for op in batch {
                match op {
                    Op::Set(n, k, v, _) => {
                        table.insert((&**n, &**k), &**v)?;
                    }
                    Op::Void => {}
                    Op::Delete(n, k) => {
                        table.remove((&**n, &**k))?;
                    }
                    Op::Clear(n) => {
                        let mut keys: Vec<Vec<u8>> = Vec::new();
                        for entry in table.range((&**n, &[][..])..)? {
                            let (k, _) = entry?;
                            if k.value().0 != &**n {
                                break;
                            }
                            keys.push(k.value().1.to_vec());
                        }
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

/// Runs `f`, a use of the database; a panic in it (the database panics on
/// some damage to its file) is an error like the others.
fn damage_is_an_error<R>(f: impl FnOnce() -> Result<R, Failure>) -> Result<R, Failure> {
    crate::panics::contain(f)
        .unwrap_or_else(|panic| Err(format!("the storage file is damaged ({panic})").into()))
}

/// Keeps a cause from the store's error types.
pub(crate) fn failure(e: Failure) -> crate::error::Cause {
    cause(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: &str, k: &[u8], v: &[u8]) -> Op {
        Op::Set(n.into(), k.into(), v.into(), false)
    }

    /// What the queue holds, as (name, key, value) (`-` for a delete, `*`
    /// for a clear).
    fn held(q: &Queue) -> Vec<String> {
        q.queued
            .iter()
            .map(|op| match op {
                Op::Set(n, k, v, _) => format!(
                    "{n}:{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                ),
                Op::Delete(n, k) => format!("{n}:{}-", String::from_utf8_lossy(k)),
                Op::Clear(n) => format!("{n}*"),
                Op::Void => "void".into(),
            })
            .collect()
    }

    #[test]
    fn a_key_changed_again_and_again_waits_as_one_change() {
        let mut q = Queue::default();
        assert!(q.add(set("a", b"k", b"0")));
        assert!(!q.add(set("a", b"j", b"0")));
        for i in 1..10_000 {
            q.add(set("a", b"k", i.to_string().as_bytes()));
        }
        q.add(set("b", b"k", b"1"));
        q.add(Op::Delete("a".into(), b"j".to_vec().into()));
        assert_eq!(held(&q), ["a:k=9999", "a:j-", "b:k=1"]);
        // A clear voids what was queued for its actor, and what follows it
        // queues after it.
        q.add(Op::Clear("a".into()));
        q.add(set("a", b"k", b"new"));
        q.add(set("b", b"k", b"2"));
        assert_eq!(held(&q), ["b:k=2", "a*", "a:k=new"]);
        q.add(Op::Clear("a".into()));
        assert_eq!(held(&q), ["b:k=2", "a*"]);
        q.add(set("a", b"k", b"again"));
        q.add(set("a", b"k", b"last"));
        assert_eq!(held(&q), ["b:k=2", "a*", "a:k=last"]);
    }

    fn fresh(n: &str, k: &[u8], v: &[u8]) -> Op {
        Op::Set(n.into(), k.into(), v.into(), true)
    }

    fn delete(n: &str, k: &[u8]) -> Op {
        Op::Delete(n.into(), k.into())
    }

    #[test]
    fn new_keys_set_and_deleted_again_queue_nothing() {
        let mut q = Queue::default();
        q.add(set("a", b"old", b"1"));
        // A loop of set and delete of keys the actor never had: each pair
        // undoes itself (it queued a delete each, without bound).
        for i in 0..10_000u32 {
            q.add(fresh("a", &i.to_le_bytes(), b"v"));
            q.add(delete("a", &i.to_le_bytes()));
        }
        assert!(q.queued.len() <= 2 * 64 + 2, "{}", q.queued.len());
        let live: Vec<_> = held(&q).into_iter().filter(|h| h != "void").collect();
        assert_eq!(live, ["a:old=1"]);
        // A key the database may hold: deleted, set again (fresh to the
        // actor, not to the database), deleted: the delete stays.
        q.add(delete("a", b"old"));
        q.add(fresh("a", b"old", b"2"));
        q.add(delete("a", b"old"));
        let live: Vec<_> = held(&q).into_iter().filter(|h| h != "void").collect();
        assert_eq!(live, ["a:old-"]);
        // A fresh set replaced by another set stays fresh; a clear squeezes
        // the voids out and keeps the order of what follows.
        q.add(fresh("b", b"x", b"1"));
        q.add(set("b", b"x", b"2"));
        q.add(delete("b", b"x"));
        q.add(Op::Clear("c".into()));
        q.add(set("c", b"y", b"3"));
        assert_eq!(held(&q), ["a:old-", "c*", "c:y=3"]);
    }

    #[test]
    fn a_reload_sees_the_last_change_of_each_key() {
        let dir = std::env::temp_dir().join(format!("wasmshard-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = Durable::open(&dir).unwrap();
        for i in 0..1000u32 {
            d.push(set("a", b"k", &i.to_le_bytes()));
            d.push(set("a", &i.to_le_bytes(), b"v"));
            if i % 2 == 1 {
                d.push(Op::Delete("a".into(), i.to_le_bytes().to_vec().into()));
            }
        }
        // New keys set and deleted again, and an old one deleted, set anew
        // and deleted: none of them is there after.
        for i in 1000..3000u32 {
            d.push(fresh("a", &i.to_le_bytes(), b"v"));
            d.push(delete("a", &i.to_le_bytes()));
        }
        d.push(delete("a", &0u32.to_le_bytes()));
        d.push(fresh("a", &0u32.to_le_bytes(), b"again"));
        d.push(delete("a", &0u32.to_le_bytes()));
        d.push(fresh("a", &0u32.to_le_bytes(), b"last"));
        let loaded = d.load("a").unwrap();
        assert_eq!(&*loaded[&b"k"[..]], &999u32.to_le_bytes());
        assert_eq!(&*loaded[&0u32.to_le_bytes()[..]], b"last");
        assert_eq!(loaded.len(), 1 + 500);
        d.close();
        drop(d);
        let d = Durable::open(&dir).unwrap();
        let loaded = d.load("a").unwrap();
        assert_eq!(&*loaded[&b"k"[..]], &999u32.to_le_bytes());
        assert_eq!(loaded.len(), 1 + 500);
        d.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
