//! `netscript trace TOPOLOGY NS DST [tcp|udp PORT]`: one probe from a namespace of a
//! topology that is up, explained hop by hop (see src/trace). It opens the topology's
//! record as `down` does and changes nothing but the probe's temporary trace tables,
//! which are journaled in the record and removed before it returns. A topology that a
//! sandbox holds (a `--sandbox --wait` run, a `repl --sandbox`) is traced inside that
//! sandbox (see `trace`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::firewall;
use crate::cli::RunOpts;
use crate::error::{Error, Result};
use crate::journal::{Journal, Meta};
use crate::kernel::Kernel;
use crate::model::NsRef;
use crate::op::Op;
use crate::session::{Session, mark_for};
use crate::state::Record;

/// Prints the trace (or its JSON); exit code 0 when the probe got its answer, 1 when not.
pub fn trace(opts: &RunOpts, topo: &str, words: &[String], json: bool, timeout: f64) -> Result<u8> {
    crate::model::check_name("topology", topo)?;
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let (ns, dst, proto) = crate::trace::parse_words(&w)?;
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 60.0) {
        return Err(Error::invalid(format!("--timeout must be more than 0 and at most 60 seconds, not {timeout}")));
    }
    // A `--sandbox --wait` run: enter its sandbox. It holds its record while it
    // waits, so the probe reads that record and journals its temporary tables in
    // memory: they are inside the sandbox, which removes them when it ends.
    let sandbox = super::exec::enter_waiting_sandbox(topo)?;
    let base = super::exec::record_base(opts, sandbox);
    let not_up = |why: &str| match sandbox {
        Some(pid) => Error::invalid(format!("topology \"{topo}\" is not up in the sandbox of process {pid} ({why})")),
        None => Error::invalid(format!("topology \"{topo}\" is not up ({why})")),
    };
    // `theirs`: the waiting run's record, read (the probe's own journal is in memory).
    let (record, journal, theirs) = match sandbox {
        None => {
            let dir = crate::state::StateDir::open(&base, false)?;
            if !dir.map(|s| s.has_record(topo)).transpose()?.unwrap_or(false) {
                return Err(not_up(&super::exec::no_record(&base)));
            }
            let record = Record::lock(&base, topo)?;
            let Some(journal) = record.existing()? else {
                return Err(not_up("its record has no journal"));
            };
            (Some(record), journal, None)
        }
        Some(_) => {
            let dir = crate::state::StateDir::open(&base, false)?;
            let Some(theirs) = dir.map(|s| s.read_journal(topo)).transpose()?.flatten() else {
                return Err(not_up(&format!("no record in its {}", base.display())));
            };
            let meta = Meta { name: topo.to_string(), script: "netscript trace".into(), ..Meta::default() };
            (None, Journal::in_memory(meta), Some(theirs))
        }
    };
    if let NsRef::Named(name) = &ns
        && !super::exec::owned(theirs.as_ref().unwrap_or(&journal), name)
    {
        return Err(Error::invalid(format!("topology \"{topo}\" has no namespace \"{name}\"")));
    }
    // The probe's trace tables go into every namespace of the topology: none of them
    // may be another namespace under one of its names.
    super::exec::check_identities(theirs.as_ref().unwrap_or(&journal), topo)?;
    let live: Option<Vec<Op>> = theirs.map(|j| j.entries().iter().filter(|e| e.live()).map(|e| e.op.clone()).collect());
    let kernel = Kernel::new(mark_for(topo), firewall(opts)?, Arc::new(AtomicBool::new(false)))?;
    let mut session = Session::new(Box::new(kernel), journal, topo, Arc::new(AtomicBool::new(false)));
    if opts.verbose {
        session.observe(Box::new(super::Verbose));
    }
    let timeout = Duration::from_secs_f64(timeout);
    let t = match &live {
        Some(live) => session.trace_over(live, &ns, dst, proto, None, timeout)?,
        None => session.trace(&ns, dst, proto, None, timeout)?,
    };
    drop(session);
    drop(record);
    if json {
        println!("{}", serde_json::to_string_pretty(&t).map_err(|e| Error::invalid(e.to_string()))?);
    } else {
        print!("{t}");
    }
    Ok(if t.delivered { 0 } else { 1 })
}
