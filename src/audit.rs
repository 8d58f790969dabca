//! The audit trail: the last denials, kept per shard of the sender in a ring of
//! fixed size (a flood of denials keeps memory flat and slows no one else: the
//! ring's lock is its shard's alone, taken only to record a denial or to read).

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;

use crate::address::Address;
use crate::grants::{Aim, Operation};

/// One denied operation, from [`Runtime::audit`](crate::Runtime::audit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Denial {
    /// When, in nanoseconds since the runtime started (the clock of `now-ns`).
    pub at_ns: u64,
    /// The actor that was denied.
    pub from: Address,
    /// Its name.
    pub from_name: String,
    /// What it tried.
    pub operation: Operation,
    /// The actor it aimed at, when it named one by address.
    pub target: Option<Address>,
    /// The name (of the target actor, if it is known) or topic it aimed at.
    pub target_name: Option<String>,
}

/// One shard's ring of the last denials its actors met.
pub(crate) struct Trail {
    capacity: usize,
    records: VecDeque<Record>,
}

pub(crate) struct Record {
    pub(crate) at_ns: u64,
    pub(crate) from: Address,
    pub(crate) from_name: Arc<str>,
    pub(crate) operation: Operation,
    pub(crate) aim: Aim,
}

impl Trail {
    pub(crate) fn new(capacity: usize) -> Trail {
        Trail {
            capacity,
            records: VecDeque::new(),
        }
    }

    pub(crate) fn push(&mut self, record: Record) {
        if self.capacity == 0 {
            return;
        }
        if self.records.capacity() == 0 {
            // Room for the usual trail at once, so recording a denial does not
            // allocate again and again as the ring fills.
            self.records.reserve_exact(self.capacity.min(1024));
        }
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// The records, oldest first, as denials (`name_of` names a target address).
    pub(crate) fn denials(&self, name_of: impl Fn(Address) -> Option<String>) -> Vec<Denial> {
        self.records
            .iter()
            .map(|r| {
                let (target, target_name) = match &r.aim {
                    Aim::Actor(a) => (Some(*a), name_of(*a)),
                    Aim::Name(n) => (None, Some(n.to_string())),
                };
                Denial {
                    at_ns: r.at_ns,
                    from: r.from,
                    from_name: r.from_name.to_string(),
                    operation: r.operation,
                    target,
                    target_name,
                }
            })
            .collect()
    }
}
