//! The trial of `async` against continuations (see docs/GUESTS.md, "Why
//! continuations"): the pipeline example's front, written as an `async`
//! block per request on a small executor inside the guest. It behaves as the
//! example's front does (a request `n: u64` is answered with the sum of what
//! two workers answer for `n`, or an error string), and the tests and
//! `benches/typed_counts.rs` run both.
//!
//! Config: `{"workers": ["a", "b"], "timeout_ms": 1000}` (the workers are the
//! pipeline example's).
//!
//! What it shows: the future cannot hold `&mut self` across an `.await`
//! (other messages run in between), so what a task touches lives in an
//! `Rc<RefCell<…>>`; a request must still be sent while a handler has the
//! context (`ctx` does not live across an `.await`) and its outcome reaches
//! the task through a shared slot and a waker; and each request pays for a
//! boxed task, its waker and the slots on top of the continuations that
//! deliver the outcomes.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use serde::Deserialize;
use wasmshard_guest::{Actor, Address, Ctx, Reply, RequestFailure};

/// The config.
#[derive(Deserialize)]
pub struct Config {
    workers: [String; 2],
    timeout_ms: u64,
}

/// One spawned task and whether it was woken since it last ran.
struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    woken: Arc<Flag>,
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The executor: tasks polled when woken, after each handler.
#[derive(Default)]
struct Executor {
    tasks: Vec<Task>,
}

impl Executor {
    fn spawn(&mut self, future: impl Future<Output = ()> + 'static) {
        self.tasks.push(Task {
            future: Box::pin(future),
            woken: Arc::new(Flag(AtomicBool::new(true))),
        });
        self.run();
    }

    /// Polls every woken task once; drops those that finished.
    fn run(&mut self) {
        self.tasks.retain_mut(|task| {
            if !task.woken.0.swap(false, Ordering::Relaxed) {
                return true;
            }
            let waker = Waker::from(task.woken.clone());
            task.future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        });
    }
}

/// Where a worker's answer (or why there is none) waits for its task.
#[derive(Default)]
struct Slot {
    outcome: Option<Result<u64, String>>,
    waker: Option<Waker>,
}

/// A worker's answer, as a future.
struct Outcome(Rc<RefCell<Slot>>);

impl Future for Outcome {
    type Output = Result<u64, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.borrow_mut();
        match slot.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Asks worker `to` for `n` now (the context is the handler's) and returns
/// the answer as a future.
fn ask(ctx: &mut Ctx<Front>, to: Address, n: u64, timeout: Duration) -> Outcome {
    let slot = Rc::new(RefCell::new(Slot::default()));
    let fill = slot.clone();
    let sent = ctx.request(
        to,
        &n,
        timeout,
        move |front: &mut Front,
              _: &mut Ctx<Front>,
              r: Result<Result<u64, String>, RequestFailure>| {
            let waker = {
                let mut s = fill.borrow_mut();
                s.outcome = Some(r.unwrap_or_else(|e| Err(format!("a worker's answer: {e}"))));
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
            front.executor.run();
        },
    );
    if let Err(e) = sent {
        slot.borrow_mut().outcome = Some(Err(format!("cannot ask a worker: {e}")));
    }
    Outcome(slot)
}

/// The front.
struct Front {
    workers: [Address; 2],
    timeout: Duration,
    executor: Executor,
}

impl Actor for Front {
    type Config = Config;
    type Message = u64;
    type Request = u64;
    type Reply = Result<u64, String>;

    fn init(ctx: &mut Ctx<Self>, config: Config) -> Result<Self, String> {
        let find = |name: &str| {
            ctx.lookup(name)
                .ok_or_else(|| format!("no worker named `{name}`"))
        };
        Ok(Front {
            workers: [find(&config.workers[0])?, find(&config.workers[1])?],
            timeout: Duration::from_millis(config.timeout_ms),
            executor: Executor::default(),
        })
    }

    fn request(
        &mut self,
        ctx: &mut Ctx<Self>,
        _: Address,
        n: u64,
        reply: Reply<Result<u64, String>>,
    ) {
        let a = ask(ctx, self.workers[0], n, self.timeout);
        let b = ask(ctx, self.workers[1], n, self.timeout);
        self.executor.spawn(async move {
            let (a, b) = (a.await, b.await);
            let _ = reply.send(&a.and_then(|a| Ok(a.wrapping_add(b?))));
        });
    }
}

wasmshard_guest::export_actor!(Front);
