//! An SDK actor that spawns, watches and stops children with the guest SDK's
//! lifecycle wrappers (`Ctx::spawn`, `Ctx::monitor`, `Ctx::stop`).
//!
//! Its config `{"component": NAME, "children": N}` makes `init` spawn `N`
//! anonymous children of the registered component `NAME` and watch each. A
//! message `{"Add": n}` tells every child `{"n": n}` (the tally's message) in
//! one call (`Frames`, `Ctx::send_frames`; a refused tell is skipped);
//! `"Stop"` stops them all; `{"Spawn": NAME}` spawns one more of `NAME`,
//! under that name. The request `"Report"` answers `[children, stopped,
//! failed, refused, inits]`: children spawned, watches that ended with
//! `target-stopped`, with `target-failed`, spawns refused, and how many times
//! an instance of it has run `init` (kept in its storage with `Ctx::get` and
//! `Ctx::set`, so a restart or an upgrade counts on), then `ticks` and
//! `delivered` (below). A message `"Panic"` panics.
//!
//! Timers and topics (`Ctx::schedule`, `Ctx::subscribe`, `Ctx::publish`):
//! `{"Tick": [ms, times]}` sets a timer that brings `"Tock"` back `ms` later,
//! set again from each `"Tock"` until `times` have come (each counts in
//! `ticks`; a `"Tock"` from anyone else is not counted);
//! `{"Subscribe": topic}` subscribes; `{"Publish": [topic, n]}` publishes
//! `{"Add": n}` to the topic (so subscribed nurseries pass it to their
//! children), adding the deliveries to `delivered`.
//!
//! Trace context (`Ctx::trace`): the last word of the report, `traced`,
//! counts the messages it handled that carried a trace.

use serde::{Deserialize, Serialize};
use wasmshard_guest::{Actor, Address, Ctx, Frames, Reply, RequestError};

#[derive(Deserialize)]
struct Config {
    component: String,
    children: u32,
}

#[derive(Serialize, Deserialize)]
enum Command {
    Add(u64),
    Stop,
    Spawn(String),
    Panic,
    Tick(u64, u32),
    Tock,
    Subscribe(String),
    Publish(String, u64),
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
    inits: u32,
    ticks: u32,
    /// Ticks still to come, and their period.
    ticking: (u32, u64),
    delivered: u32,
    traced: u32,
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

impl Nursery {
    /// Sets the next tick, if one is still to come.
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        let (left, ms) = self.ticking;
        if left == 0 {
            return;
        }
        self.ticking.0 -= 1;
        if let Err(e) = ctx.schedule(std::time::Duration::from_millis(ms), &Command::Tock) {
            wasmshard_guest::log::warn!("schedule: {e}");
        }
    }
}

impl Actor for Nursery {
    type Config = Config;
    type Message = Command;
    type Request = Ask;
    type Reply = [u32; 8];

    fn init(ctx: &mut Ctx<Self>, config: Config) -> Result<Self, String> {
        let inits = ctx.get::<u32>("inits").map_err(|e| e.to_string())?;
        let inits = inits.unwrap_or(0) + 1;
        ctx.set("inits", &inits).map_err(|e| e.to_string())?;
        let mut me = Nursery {
            inits,
            ..Nursery::default()
        };
        for _ in 0..config.children {
            me.spawn(ctx, &config.component, None);
        }
        Ok(me)
    }

    fn message(&mut self, ctx: &mut Ctx<Self>, from: Address, command: Command) {
        if ctx.trace().is_some() {
            self.traced += 1;
        }
        match command {
            Command::Tick(ms, times) => {
                self.ticking = (times, ms);
                self.tick(ctx);
            }
            Command::Tock if from == ctx.me() => {
                self.ticks += 1;
                self.tick(ctx);
            }
            Command::Tock => wasmshard_guest::log::warn!("a Tock from {from}"),
            Command::Subscribe(topic) => {
                if let Err(e) = ctx.subscribe(&topic) {
                    wasmshard_guest::log::warn!("subscribe {topic}: {e}");
                }
            }
            Command::Publish(topic, n) => match ctx.publish(&topic, &Command::Add(n)) {
                Ok(out) => self.delivered += out.delivered,
                Err(e) => wasmshard_guest::log::warn!("publish {topic}: {e}"),
            },
            Command::Add(n) => {
                // One call out for all the children (`Ctx::send_frames`).
                let mut frames = Frames::new();
                for &c in &self.children {
                    if let Err(e) = frames.push(c, &Add { n }) {
                        wasmshard_guest::log::warn!("encode for {c}: {e}");
                    }
                }
                while !frames.is_empty() {
                    if let Err(e) = ctx.send_frames(&mut frames) {
                        // The refused one is first: skip it, send the rest.
                        wasmshard_guest::log::warn!("tell: {e}");
                        frames.remove_first(1);
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
            Command::Panic => panic!("nursery: panic on command"),
        }
    }

    fn request(&mut self, _: &mut Ctx<Self>, _: Address, _: Ask, reply: Reply<[u32; 8]>) {
        let _ = reply.send(&[
            self.children.len() as u32,
            self.stopped,
            self.failed,
            self.refused,
            self.inits,
            self.ticks,
            self.delivered,
            self.traced,
        ]);
    }
}

wasmshard_guest::export_actor!(Nursery);
