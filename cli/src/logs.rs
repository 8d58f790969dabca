//! Where the command's log lines go: one writer thread owns stderr and takes
//! lines from a bounded queue, so a shard that logs never blocks on a slow or
//! closed stderr (it could otherwise stall, or with `eprintln!` panic). When the
//! queue is full, lines are dropped and counted; at the end the count is said.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Lines waiting for stderr, at most.
const QUEUE: usize = 8192;

enum Item {
    Line(String),
    /// Everything before this is written (or stderr is gone); answer.
    Flush(SyncSender<()>),
}

/// The queue to the stderr writer.
#[derive(Clone)]
pub(crate) struct Logs {
    tx: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
}

static LOGS: OnceLock<Logs> = OnceLock::new();

/// The process's log queue (the writer thread starts on first use).
pub(crate) fn logs() -> &'static Logs {
    LOGS.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        // Without a writer thread the queue is closed: lines are counted as dropped.
        let _ = std::thread::Builder::new()
            .name("wasmshard-stderr".into())
            .spawn(move || writer(rx));
        Logs {
            tx,
            dropped: Arc::default(),
        }
    })
}

fn writer(rx: Receiver<Item>) {
    let stderr = std::io::stderr();
    let mut open = true;
    for item in rx {
        match item {
            Item::Line(line) if open => {
                let mut e = stderr.lock();
                // A closed stderr (`2>&1 | head -1`) is not an error of the run:
                // stop writing, keep draining.
                open = e
                    .write_all(line.as_bytes())
                    .and_then(|()| e.flush())
                    .is_ok();
            }
            Item::Line(_) => {}
            Item::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

impl Logs {
    /// Queues one line (a newline is added); never blocks.
    pub(crate) fn line(&self, mut line: String) {
        line.push('\n');
        match self.tx.try_send(Item::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits (up to two seconds in all, however stuck stderr is) until what was
    /// queued is written, saying first how many lines were dropped, if any.
    pub(crate) fn flush(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note =
                format!("wasmshard: {dropped} log lines were dropped (stderr did not keep up)\n");
            self.send_by(Item::Line(note), deadline);
        }
        let (ack, done) = sync_channel(1);
        if self.send_by(Item::Flush(ack), deadline) {
            let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// Queues `item` if room opens before `deadline`; whether it was queued.
    fn send_by(&self, mut item: Item, deadline: Instant) -> bool {
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
    }
}

/// A `Write` for env_logger: whole lines go to the queue.
pub(crate) struct LineWriter {
    buf: Vec<u8>,
}

impl LineWriter {
    pub(crate) fn new() -> LineWriter {
        LineWriter { buf: Vec::new() }
    }
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            logs().line(text);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            self.buf.clear();
            logs().line(text);
        }
        Ok(())
    }
}
