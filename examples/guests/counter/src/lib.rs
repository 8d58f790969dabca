//! A counter: typed messages add to a total; a request reads it.
//!
//! - message `Add(n)`: adds `n` (a total past `u64::MAX` panics: the actor fails,
//!   and its failure reason says why);
//! - message `Report`: tells the sender `Total(total)` (the host, which takes no
//!   messages, gets the total in the log instead);
//! - request `Get`: replies with the total; `AddAndGet(n)`: adds, then replies.
//!
//! Config (optional): `{"start": n}`, the total to start from.

use serde::{Deserialize, Serialize};
use wasmshard_guest::{Actor, Address, Ctx, Reply};

/// What the counter takes.
#[derive(Serialize, Deserialize, Debug)]
pub enum Msg {
    /// Add to the total.
    Add(u64),
    /// Tell the sender the total.
    Report,
    /// What `Report` sends back.
    Total(u64),
}

/// What the counter answers.
#[derive(Deserialize, Debug)]
pub enum Req {
    /// The total.
    Get,
    /// Add, then the total.
    AddAndGet(u64),
}

/// The config.
#[derive(Deserialize, Default)]
pub struct Config {
    #[serde(default)]
    start: u64,
}

struct Counter {
    total: u64,
}

impl Actor for Counter {
    type Config = Option<Config>;
    type Message = Msg;
    type Request = Req;
    type Reply = u64;

    fn init(_: &mut Ctx<Self>, config: Option<Config>) -> Result<Self, String> {
        Ok(Counter {
            total: config.unwrap_or_default().start,
        })
    }

    fn message(&mut self, ctx: &mut Ctx<Self>, from: Address, msg: Msg) {
        match msg {
            Msg::Add(n) => self.add(n),
            Msg::Report if from == Address(0) => {
                wasmshard_guest::log::info!("total: {}", self.total);
            }
            Msg::Report => {
                if let Err(e) = ctx.send(from, &Msg::Total(self.total)) {
                    wasmshard_guest::log::warn!("cannot report to {from}: {e}");
                }
            }
            Msg::Total(_) => {}
        }
    }

    fn request(&mut self, _: &mut Ctx<Self>, _: Address, req: Req, reply: Reply<u64>) {
        if let Req::AddAndGet(n) = req {
            self.add(n);
        }
        let _ = reply.send(&self.total);
    }
}

impl Counter {
    /// Adds `n`; a total past `u64::MAX` is a bug of the sender's: it panics,
    /// which fails the actor, and the failure says why and where.
    fn add(&mut self, n: u64) {
        self.total = self.total.checked_add(n).expect("the total overflows u64");
    }
}

wasmshard_guest::export_actor!(Counter);
