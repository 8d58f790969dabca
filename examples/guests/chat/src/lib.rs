//! A chat room: one room actor and member actors, on any shards.
//!
//! Config selects the role:
//! - `"Room"`: keeps the members that joined and relays every `Say` as a `Line`
//!   to each of them (the speaker included), in the order it received them (and
//!   logs it at `info`);
//! - `{"Member": {"room": "lobby", "name": "ann"}}`: joins the room at init;
//!   a `Say` from anyone else (the host) goes to the room; a `Line` from the
//!   room is kept. Request `History` answers with the lines kept, as
//!   `"name: text"` strings.

use serde::{Deserialize, Serialize};
use wasmshard_guest::{Actor, Address, Ctx, Reply};

/// Messages between the host, the members and the room.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum Msg {
    /// A member joins (member → room).
    Join {
        /// Its name.
        name: String,
    },
    /// Something to say (host → member → room).
    Say {
        /// What.
        text: String,
    },
    /// A line said in the room (room → every member).
    Line {
        /// Who said it.
        from: String,
        /// What.
        text: String,
    },
}

/// The requests a member answers.
#[derive(Serialize, Deserialize, Debug)]
pub enum Req {
    /// The lines it has seen.
    History,
}

/// The role.
#[derive(Deserialize, Debug)]
pub enum Config {
    /// The room.
    Room,
    /// A member.
    Member {
        /// The room's name.
        room: String,
        /// The member's name.
        name: String,
    },
}

enum Chat {
    Room { members: Vec<(Address, String)> },
    Member { room: Address, lines: Vec<String> },
}

impl Actor for Chat {
    type Config = Config;
    type Message = Msg;
    type Request = Req;
    type Reply = Vec<String>;

    fn init(ctx: &mut Ctx<Self>, config: Config) -> Result<Self, String> {
        match config {
            Config::Room => Ok(Chat::Room {
                members: Vec::new(),
            }),
            Config::Member { room, name } => {
                let room = ctx
                    .lookup(&room)
                    .ok_or_else(|| format!("no room named `{room}`"))?;
                ctx.send(room, &Msg::Join { name })
                    .map_err(|e| format!("cannot join: {e}"))?;
                Ok(Chat::Member {
                    room,
                    lines: Vec::new(),
                })
            }
        }
    }

    fn message(&mut self, ctx: &mut Ctx<Self>, from: Address, msg: Msg) {
        match (self, msg) {
            (Chat::Room { members }, Msg::Join { name }) => members.push((from, name)),
            (Chat::Room { members }, Msg::Say { text }) => {
                let Some(speaker) = members.iter().find(|(a, _)| *a == from) else {
                    return wasmshard_guest::log::warn!("{from} spoke without joining");
                };
                wasmshard_guest::log::info!("{}: {text}", speaker.1);
                let line = Msg::Line {
                    from: speaker.1.clone(),
                    text,
                };
                for (member, name) in members.iter() {
                    if let Err(e) = ctx.send(*member, &line) {
                        wasmshard_guest::log::warn!("{name} missed a line: {e}");
                    }
                }
            }
            (Chat::Member { room, .. }, Msg::Say { text }) => {
                let room = *room;
                if let Err(e) = ctx.send(room, &Msg::Say { text }) {
                    wasmshard_guest::log::warn!("not said: {e}");
                }
            }
            (Chat::Member { lines, .. }, Msg::Line { from, text }) => {
                let line = format!("{from}: {text}");
                wasmshard_guest::log::debug!("{line}");
                lines.push(line);
            }
            (_, other) => wasmshard_guest::log::warn!("unexpected {other:?}"),
        }
    }

    fn request(
        &mut self,
        _: &mut Ctx<Self>,
        _: Address,
        Req::History: Req,
        reply: Reply<Vec<String>>,
    ) {
        let lines = match self {
            Chat::Member { lines, .. } => lines.clone(),
            Chat::Room { members } => members.iter().map(|(_, n)| n.clone()).collect(),
        };
        let _ = reply.send(&lines);
    }
}

wasmshard_guest::export_actor!(Chat);
