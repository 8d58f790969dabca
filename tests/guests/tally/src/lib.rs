//! A tally whose message is a struct, not an enum: `Add { n }` adds `n` (a
//! total past `u64::MAX` panics); the request `Get` (a unit struct) replies
//! with the total. The SDK's benchmarks measure a struct message with it
//! (`benches/typed_counts.rs`), and the SDK tests read one in every codec,
//! with fields the struct does not know.

use serde::Deserialize;
use wasmshard_guest::{Actor, Address, Ctx, Reply};

/// What the tally takes.
#[derive(Deserialize)]
pub struct Add {
    /// How much to add.
    n: u64,
}

/// What the tally answers: the total.
#[derive(Deserialize)]
pub struct Get;

struct Tally {
    total: u64,
}

impl Actor for Tally {
    type Config = Option<()>;
    type Message = Add;
    type Request = Get;
    type Reply = u64;

    fn init(_: &mut Ctx<Self>, _: Option<()>) -> Result<Self, String> {
        Ok(Tally { total: 0 })
    }

    fn message(&mut self, _: &mut Ctx<Self>, _: Address, msg: Add) {
        self.total = self.total.checked_add(msg.n).expect("the total overflows");
    }

    fn request(&mut self, _: &mut Ctx<Self>, _: Address, _: Get, reply: Reply<u64>) {
        let _ = reply.send(&self.total);
    }
}

wasmshard_guest::export_actor!(Tally);
