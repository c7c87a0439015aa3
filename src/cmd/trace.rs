//! `netscript trace TOPOLOGY NS DST [tcp|udp PORT]`: one probe from a namespace of a
//! topology that is up, explained hop by hop (see src/trace). It opens the topology's
//! record as `down` does and changes nothing but the probe's temporary trace tables,
//! which are journaled in the record and removed before it returns.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{firewall, state_base};
use crate::cli::RunOpts;
use crate::error::{Error, Result};
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
        return Err(Error::invalid(format!("--timeout must be between 0 and 60 seconds, not {timeout}")));
    }
    let base = state_base(opts);
    if !crate::state::StateDir::open(&base, false)?.map(|s| s.has_record(topo)).transpose()?.unwrap_or(false) {
        return Err(Error::invalid(format!("topology \"{topo}\" is not up (no record in {})", base.display())));
    }
    let record = Record::lock(&base, topo)?;
    let Some(journal) = record.existing()? else {
        return Err(Error::invalid(format!("topology \"{topo}\" is not up (its record has no journal)")));
    };
    if let NsRef::Named(name) = &ns
        && !journal.entries().iter().any(|e| e.live() && matches!(&e.op, Op::AddNetns { name: n } if n == name))
    {
        return Err(Error::invalid(format!("topology \"{topo}\" has no namespace \"{name}\"")));
    }
    let kernel = Kernel::new(mark_for(topo), firewall(opts)?, Arc::new(AtomicBool::new(false)))?;
    let mut session = Session::new(Box::new(kernel), journal, topo, Arc::new(AtomicBool::new(false)));
    if opts.verbose {
        session.observe(Box::new(super::Verbose));
    }
    let t = session.trace(&ns, dst, proto, None, Duration::from_secs_f64(timeout))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t).map_err(|e| Error::invalid(e.to_string()))?);
    } else {
        print!("{t}");
    }
    Ok(if t.delivered { 0 } else { 1 })
}
