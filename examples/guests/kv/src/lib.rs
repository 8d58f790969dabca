//! A key-value service answering typed requests, one of them with a deferred
//! reply.
//!
//! Requests (`Req`), each answered with a `Resp`:
//! - `Put { key, value }`: stores it, answers `Done`; and answers every
//!   `WaitFor` of that key that was waiting, with the value;
//! - `Get { key }`: answers `Value(Some(v))` or `Value(None)` at once;
//! - `WaitFor { key }`: answers `Value(Some(v))` as soon as the key has a value:
//!   at once, or later (the `Reply` waits in the actor's state);
//! - `Ignore`: drops its reply unanswered (the requester learns it at once).
//!
//! Messages (`Msg`): `Put { key, value }` stores without an answer (and answers
//! waiters, as the request does); `Delete { key }` removes a key; `Dump` logs
//! every key and value, in key order.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use wasmshard_guest::{Actor, Address, Ctx, Reply};

/// The requests.
#[derive(Serialize, Deserialize, Debug)]
pub enum Req {
    /// Store a value.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Read a value.
    Get {
        /// The key.
        key: String,
    },
    /// Read a value once there is one.
    WaitFor {
        /// The key.
        key: String,
    },
    /// Nothing: the reply is dropped.
    Ignore,
}

/// The answers.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Resp {
    /// Stored.
    Done,
    /// The value, if any.
    Value(Option<String>),
}

/// The messages.
#[derive(Serialize, Deserialize, Debug)]
pub enum Msg {
    /// Store a value, answering nobody.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Log the contents.
    Dump,
}

#[derive(Default)]
struct Kv {
    map: HashMap<String, String>,
    waiting: HashMap<String, Vec<Reply<Resp>>>,
}

impl Actor for Kv {
    type Config = ();
    type Message = Msg;
    type Request = Req;
    type Reply = Resp;

    fn init(_: &mut Ctx<Self>, (): ()) -> Result<Self, String> {
        Ok(Kv::default())
    }

    fn message(&mut self, _: &mut Ctx<Self>, _: Address, msg: Msg) {
        match msg {
            Msg::Put { key, value } => self.put(key, value),
            Msg::Delete { key } => {
                self.map.remove(&key);
            }
            Msg::Dump => {
                let mut keys: Vec<_> = self.map.keys().collect();
                keys.sort();
                for k in keys {
                    wasmshard_guest::log::info!("{k} = {}", self.map[k]);
                }
            }
        }
    }

    fn request(&mut self, _: &mut Ctx<Self>, _: Address, req: Req, reply: Reply<Resp>) {
        match req {
            Req::Put { key, value } => {
                self.put(key, value);
                let _ = reply.send(&Resp::Done);
            }
            Req::Get { key } => {
                let _ = reply.send(&Resp::Value(self.map.get(&key).cloned()));
            }
            Req::WaitFor { key } => match self.map.get(&key) {
                Some(v) => {
                    let _ = reply.send(&Resp::Value(Some(v.clone())));
                }
                None => self.waiting.entry(key).or_default().push(reply),
            },
            Req::Ignore => drop(reply),
        }
    }
}

impl Kv {
    /// Stores `value`, and answers whoever waited for `key`.
    fn put(&mut self, key: String, value: String) {
        for waiter in self.waiting.remove(&key).unwrap_or_default() {
            // A waiter whose requester gave up is refused: nothing to do.
            let _ = waiter.send(&Resp::Value(Some(value.clone())));
        }
        self.map.insert(key, value);
    }
}

wasmshard_guest::export_actor!(Kv);
