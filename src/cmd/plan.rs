//! `netscript plan SCRIPT`: the script run against the plan model (src/plan) instead
//! of the kernel; prints the commands it would run. Needs no root, touches nothing.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{EXIT_FAILED, check_script, run_script};
use crate::cli::RunOpts;
use crate::error::Result;
use crate::journal::{Journal, Meta};
use crate::model::shell_quote;
use crate::plan::Plan;
use crate::session::{Session, mark_for};

/// `netscript plan`: the script against a model of the system; prints the commands.
/// Needs no root and touches nothing (no sandbox, no kernel, no state dir).
pub fn plan(opts: &RunOpts, undo: bool, script: &Path, args: &[String]) -> Result<u8> {
    let topo = check_script(opts, script)?;
    let model = Plan::new(&mark_for(&topo));
    let rec = model.recording();
    let recorder = model.recorder();
    let journal =
        Journal::in_memory(Meta { name: topo.clone(), script: script.display().to_string(), ..Meta::default() });
    let cancel = Arc::new(AtomicBool::new(false));
    let mut session = Session::new(Box::new(model), journal, &topo, cancel.clone());
    session.observe(recorder);
    let session = Rc::new(RefCell::new(session));
    if let Some(msg) = run_script(&session, &topo, script, args, &cancel, true, Some("plan"))? {
        eprintln!("netscript: {msg}");
        let n = session.borrow().journal().live_count();
        eprintln!("netscript: plan: the script failed after {n} change(s); a real run failing here rolls them back");
        return Ok(EXIT_FAILED);
    }
    let what = if undo { "undo what" } else { "do what" };
    let header = vec![
        format!(
            "netscript plan{}: the commands that {what} `netscript {}` does (topology {}).",
            if undo { " --undo" } else { "" },
            shell_quote(&script.display().to_string()),
            shell_quote(&topo)
        ),
        "Run as root. Ownership marks (link alias, route protocol 78) are left out.".to_string(),
    ];
    if undo {
        rec.borrow_mut().steps.clear();
        let report = session.borrow_mut().rollback();
        for f in &report.failures {
            eprintln!("netscript: plan: the model could not undo `{}`: {}", f.undo.render(), f.error);
        }
    }
    print!("{}", rec.borrow().script(&header));
    Ok(0)
}
