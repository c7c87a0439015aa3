//! Where a run's time went: the session adds up, per phase, the time its back end
//! spent making changes and the time the journal took. Always collected (a clock
//! read per change); `src/cmd` prints them when asked (NETSCRIPT_PHASES).

use std::time::{Duration, Instant};

use crate::op::Op;

/// The phases a build's time is split into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Making and deleting namespaces.
    Netns,
    /// Links: creation, moves, up/down, master, MTU, bridge and port options.
    Links,
    /// Addresses and routes.
    AddrsRoutes,
    /// Firewall changes (the batched iptables-restore runs included).
    Firewall,
    /// Sysctls, qdiscs, processes, traces.
    Other,
    /// Journal lines written (begin, done, amend, ...).
    Journal,
}

impl Phase {
    pub const ALL: [Phase; 6] =
        [Phase::Netns, Phase::Links, Phase::AddrsRoutes, Phase::Firewall, Phase::Other, Phase::Journal];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Netns => "netns",
            Phase::Links => "links",
            Phase::AddrsRoutes => "addrs+routes",
            Phase::Firewall => "firewall",
            Phase::Other => "other",
            Phase::Journal => "journal",
        }
    }

    /// The phase a change belongs to.
    pub fn of(op: &Op) -> Phase {
        match op {
            Op::AddNetns { .. } | Op::DelNetns { .. } => Phase::Netns,
            Op::AddVeth { .. }
            | Op::AddBridge { .. }
            | Op::AddLink { .. }
            | Op::SetBridge { .. }
            | Op::SetBridgePort { .. }
            | Op::DelLink { .. }
            | Op::MoveLink { .. }
            | Op::SetUp { .. }
            | Op::SetMaster { .. }
            | Op::SetMtu { .. } => Phase::Links,
            Op::AddAddr { .. } | Op::DelAddr { .. } | Op::AddRoute { .. } | Op::DelRoute { .. } => Phase::AddrsRoutes,
            op if op.is_firewall() => Phase::Firewall,
            _ => Phase::Other,
        }
    }
}

/// Time per phase, and how many changes the back end was handed.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    spent: [Duration; 6],
    pub changes: u64,
}

impl Timings {
    pub fn get(&self, p: Phase) -> Duration {
        self.spent[p as usize]
    }

    pub(super) fn add(&mut self, p: Phase, since: Instant) {
        self.spent[p as usize] += since.elapsed();
    }
}
