//! `netscript down NAME`: undo a recorded topology, newest change first.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{EXIT_ROLLBACK_INCOMPLETE, firewall, install_signals, print_report, state_base};
use crate::backend::Backend;
use crate::cli::RunOpts;
use crate::error::Result;
use crate::faults::{Faults, Faulty};
use crate::kernel::Kernel;
use crate::session::{Session, mark_for};
use crate::state::Record;

pub fn down(opts: &RunOpts, name: &str) -> Result<u8> {
    crate::model::check_name("topology", name)?;
    let signals = install_signals();
    let base = state_base(opts);
    if !crate::state::StateDir::open(&base, false)?.map(|s| s.has_record(name)).transpose()?.unwrap_or(false) {
        eprintln!("netscript: topology \"{name}\" is not up (no record in {}); nothing to do", base.display());
        return Ok(0);
    }
    super::require_network_admin(&format!("taking topology \"{name}\" down changes this machine's network, which"))?;
    let record = Record::lock(&base, name)?;
    let Some(journal) = record.existing()? else {
        let _ = record.remove();
        return Ok(0);
    };
    if crate::inspect::Damage::of(&journal) == Some(crate::inspect::Damage::Empty) {
        if let Some(t) = &journal.torn {
            eprintln!("netscript: {t}");
        }
        eprintln!("netscript: {name}: its record was empty (no change recorded); removed");
        let _ = record.remove();
        return Ok(0);
    }
    if let Some(t) = &journal.torn {
        eprintln!("netscript: {t}; taking down the rest");
    }
    let mut kernel = Kernel::new(mark_for(name), firewall(opts)?, Arc::new(AtomicBool::new(false)))?;
    // The firewall tool the run found (unless --iptables says which): not detected again.
    if let Some(tool) = &journal.meta.firewall {
        kernel.prefer_firewall_tool(tool);
    }
    let started = journal.meta.started_at();
    // The test switch (NETSCRIPT_FAIL_UNDO / NETSCRIPT_CRASH_AT=after-undo:K) wraps the kernel.
    let backend: Box<dyn Backend> = match Faults::from_env() {
        Some(f) => Box::new(Faulty::new(kernel, f)),
        None => Box::new(kernel),
    };
    let mut session = Session::new(backend, journal, name, Arc::new(AtomicBool::new(false)));
    session.set_handover(super::handover(opts, name, started));
    let report = session.rollback_with(super::rollback_tick(&signals, format!("down {name}")));
    print_report(&format!("down {name}"), &report, opts.verbose);
    if report.complete() {
        let _ = record.remove();
        Ok(0)
    } else {
        Ok(EXIT_ROLLBACK_INCOMPLETE)
    }
}
