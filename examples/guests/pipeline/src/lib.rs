//! A pipeline with continuations: a front actor answers each request only after
//! its own sub-requests to two workers have returned.
//!
//! Config selects the role:
//! - `{"Worker": "Double"}` or `{"Worker": "Square"}`: answers a request `n: u64`
//!   with `2n` or `n²` (wrapping);
//! - `{"Front": {"workers": ["a", "b"], "timeout_ms": 1000}}`: answers a request
//!   `n: u64` with the sum of what the two named workers answer for `n`, or with
//!   an error string if either fails. A message `n: u64` to the front does the
//!   same work and logs the answer instead.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use wasmshard_guest::{Actor, Address, Ctx, Reply, RequestFailure};

/// What a worker does.
#[derive(Deserialize, Clone, Copy, Debug)]
pub enum Op {
    /// `2n`.
    Double,
    /// `n²`.
    Square,
}

/// The role.
#[derive(Deserialize, Debug)]
pub enum Config {
    /// A worker.
    Worker(Op),
    /// The front.
    Front {
        /// The two workers' names.
        workers: [String; 2],
        /// How long a sub-request may take.
        timeout_ms: u64,
    },
}

/// One request the front is working on.
struct Job {
    answer: Answer,
    parts: [Option<u64>; 2],
}

enum Pipeline {
    Worker(Op),
    Front {
        workers: [Address; 2],
        timeout: Duration,
        jobs: HashMap<u64, Job>,
        next: u64,
    },
}

impl Actor for Pipeline {
    type Config = Config;
    type Message = u64;
    type Request = u64;
    type Reply = Result<u64, String>;

    fn init(ctx: &mut Ctx<Self>, config: Config) -> Result<Self, String> {
        Ok(match config {
            Config::Worker(op) => Pipeline::Worker(op),
            Config::Front {
                workers,
                timeout_ms,
            } => {
                let find = |name: &str| {
                    ctx.lookup(name)
                        .ok_or_else(|| format!("no worker named `{name}`"))
                };
                Pipeline::Front {
                    workers: [find(&workers[0])?, find(&workers[1])?],
                    timeout: Duration::from_millis(timeout_ms),
                    jobs: HashMap::new(),
                    next: 0,
                }
            }
        })
    }

    fn message(&mut self, ctx: &mut Ctx<Self>, _: Address, n: u64) {
        self.start(ctx, n, Answer::Log(n));
    }

    fn request(
        &mut self,
        ctx: &mut Ctx<Self>,
        _: Address,
        n: u64,
        reply: Reply<Result<u64, String>>,
    ) {
        self.start(ctx, n, Answer::Reply(reply));
    }
}

/// Where a job's answer goes.
enum Answer {
    /// Back to the requester.
    Reply(Reply<Result<u64, String>>),
    /// To the log (a message asked for the work, with this input).
    Log(u64),
}

impl Answer {
    fn give(self, result: Result<u64, String>) {
        match self {
            Answer::Reply(reply) => {
                let _ = reply.send(&result);
            }
            Answer::Log(n) => wasmshard_guest::log::info!("{n} -> {result:?}"),
        }
    }
}

impl Pipeline {
    /// Works on `n`: a worker answers at once; the front asks both workers and
    /// answers when both have.
    fn start(&mut self, ctx: &mut Ctx<Self>, n: u64, answer: Answer) {
        match self {
            Pipeline::Worker(op) => answer.give(Ok(match op {
                Op::Double => n.wrapping_mul(2),
                Op::Square => n.wrapping_mul(n),
            })),
            Pipeline::Front {
                workers,
                timeout,
                jobs,
                next,
            } => {
                let (workers, timeout) = (*workers, *timeout);
                let job = *next;
                *next += 1;
                jobs.insert(
                    job,
                    Job {
                        answer,
                        parts: [None, None],
                    },
                );
                for (part, worker) in workers.iter().enumerate() {
                    let asked = ctx.request(
                        *worker,
                        &n,
                        timeout,
                        move |me: &mut Pipeline, _: &mut Ctx<Pipeline>, r: Result<Result<u64, String>, RequestFailure>| {
                            me.part_done(job, part, r)
                        },
                    );
                    if let Err(e) = asked {
                        self.fail(job, format!("cannot ask a worker: {e}"));
                        return;
                    }
                }
            }
        }
    }

    /// One sub-request of `job` ended.
    fn part_done(
        &mut self,
        job: u64,
        part: usize,
        outcome: Result<Result<u64, String>, RequestFailure>,
    ) {
        let value = match outcome {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return self.fail(job, e),
            Err(e) => return self.fail(job, format!("a worker's answer: {e}")),
        };
        let Pipeline::Front { jobs, .. } = self else {
            return;
        };
        let Some(j) = jobs.get_mut(&job) else {
            return; // already failed
        };
        j.parts[part] = Some(value);
        if let [Some(a), Some(b)] = j.parts {
            let j = jobs.remove(&job).expect("present");
            j.answer.give(Ok(a.wrapping_add(b)));
        }
    }

    /// Ends `job` with an error (once).
    fn fail(&mut self, job: u64, why: String) {
        if let Pipeline::Front { jobs, .. } = self
            && let Some(j) = jobs.remove(&job)
        {
            j.answer.give(Err(why));
        }
    }
}

wasmshard_guest::export_actor!(Pipeline);
