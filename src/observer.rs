//! The seam between the session and what watches it: `-v` printing and the run's
//! progress (src/cmd), `plan`'s recording of origins and reads (src/plan), the fault
//! injection's change counter (src/faults.rs). Below all of them, so none imports
//! another to reach it.

use crate::op::{Op, Probe};

/// Watches a session from outside: the CLI prints changes with `-v`, `plan` records
/// origins and reads, the fault injection of the tests counts changes. The core itself
/// neither prints nor reads test switches.
pub trait Observer {
    /// A change the session hands to the back end now (after its journal entry is
    /// written; undos during rollback are not reported).
    fn change(&mut self, _op: &Op) {}
    /// A call that only reads, and what it returned.
    fn read(&mut self, _probe: &Probe, _answer: &str) {}
    /// Where the calls that follow come from (a script's "file:line", or what a
    /// rollback is undoing). Passed as a function: only an observer that wants it
    /// pays for working it out.
    fn origin(&mut self, _origin: &dyn Fn() -> String) {}
}
