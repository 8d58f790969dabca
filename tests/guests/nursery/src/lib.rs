//! An SDK actor that spawns, watches and stops children with the guest SDK's
//! lifecycle wrappers (`Ctx::spawn`, `Ctx::monitor`, `Ctx::stop`).
//!
//! Its config `{"component": NAME, "children": N}` makes `init` spawn `N`
//! anonymous children of the registered component `NAME` and watch each. A
//! message `{"Add": n}` tells every child `{"n": n}` (the tally's message);
//! `"Stop"` stops them all; `{"Spawn": NAME}` spawns one more of `NAME`,
//! under that name. The request `"Report"` answers `[children, stopped,
//! failed, refused]`: children spawned, watches that ended with
//! `target-stopped`, with `target-failed`, and spawns refused.

use serde::{Deserialize, Serialize};
use wasmshard_guest::{Actor, Address, Ctx, Reply, RequestError};

#[derive(Deserialize)]
struct Config {
    component: String,
    children: u32,
}

#[derive(Deserialize)]
enum Command {
    Add(u64),
    Stop,
    Spawn(String),
}

#[derive(Deserialize)]
enum Ask {
    Report,
}

/// The tally's message.
#[derive(Serialize)]
struct Add {
    n: u64,
}

#[derive(Default)]
struct Nursery {
    children: Vec<Address>,
    stopped: u32,
    failed: u32,
    refused: u32,
}

impl Nursery {
    fn spawn(&mut self, ctx: &mut Ctx<Self>, component: &str, name: Option<&str>) {
        let child = match ctx.spawn(component, name, &()) {
            Ok(child) => child,
            Err(e) => {
                wasmshard_guest::log::warn!("spawn of {component} refused: {e}");
                self.refused += 1;
                return;
            }
        };
        self.children.push(child);
        let watched = ctx.monitor(child, |me: &mut Nursery, _, why| match why {
            RequestError::TargetStopped => me.stopped += 1,
            RequestError::TargetFailed => me.failed += 1,
            other => wasmshard_guest::log::warn!("a watch ended with {other:?}"),
        });
        if let Err(e) = watched {
            wasmshard_guest::log::warn!("cannot watch {child}: {e}");
        }
    }
}

impl Actor for Nursery {
    type Config = Config;
    type Message = Command;
    type Request = Ask;
    type Reply = [u32; 4];

    fn init(ctx: &mut Ctx<Self>, config: Config) -> Result<Self, String> {
        let mut me = Nursery::default();
        for _ in 0..config.children {
            me.spawn(ctx, &config.component, None);
        }
        Ok(me)
    }

    fn message(&mut self, ctx: &mut Ctx<Self>, _: Address, command: Command) {
        match command {
            Command::Add(n) => {
                for &c in &self.children {
                    if let Err(e) = ctx.send(c, &Add { n }) {
                        wasmshard_guest::log::warn!("tell {c}: {e}");
                    }
                }
            }
            Command::Stop => {
                for &c in &self.children {
                    if let Err(e) = ctx.stop(c) {
                        wasmshard_guest::log::warn!("stop {c}: {e}");
                    }
                }
            }
            Command::Spawn(name) => self.spawn(ctx, &name.clone(), Some(&name)),
        }
    }

    fn request(&mut self, _: &mut Ctx<Self>, _: Address, _: Ask, reply: Reply<[u32; 4]>) {
        let _ = reply.send(&[
            self.children.len() as u32,
            self.stopped,
            self.failed,
            self.refused,
        ]);
    }
}

wasmshard_guest::export_actor!(Nursery);
