//! `netscript plan SCRIPT`: the script run against the plan model (src/plan) instead
//! of the kernel; prints the commands it would run. Needs no root, touches nothing.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{EXIT_FAILED, Ran, check_script, module_hint, run_script};
use crate::cli::RunOpts;
use crate::error::{Error, Result};
use crate::journal::{Journal, Meta};
use crate::lua::{self, SessionRef};
use crate::model::shell_quote;
use crate::plan::{Plan, RecordingRef};
use crate::session::{Session, mark_for};

/// A session over a plan model (fresh: a host with only `lo`), with what it records.
fn model_session(model: Plan, topo: &str, script: &Path) -> (SessionRef, RecordingRef, Arc<AtomicBool>) {
    let rec = model.recording();
    let recorder = model.recorder();
    let journal =
        Journal::in_memory(Meta { name: topo.to_string(), script: script.display().to_string(), ..Meta::default() });
    let cancel = Arc::new(AtomicBool::new(false));
    let mut session = Session::new(Box::new(model), journal, topo, cancel.clone());
    session.observe(recorder);
    (Rc::new(RefCell::new(session)), rec, cancel)
}

/// Whether `script` runs to its end under the plan model, quietly (what it prints is
/// dropped); the reason when it does not. The REPL's `.save` checks what it wrote.
pub fn runs_under_plan(topo: &str, script: &Path) -> Result<Option<String>> {
    let (session, _rec, cancel) = model_session(Plan::new(&mark_for(topo)), topo, script);
    let lua = lua::new_lua(session, topo, Some(script), &[], cancel.clone())
        .and_then(|l| l.load("print = function() end; io.write = function() return io end").exec().map(|()| l))
        .and_then(|l| lua::restrict::restrict(&l, "plan").map(|()| l))
        .map_err(|e| Error::sys(format!("cannot start Lua: {e}"), None))?;
    let result = lua::run_file(&lua, script, &[]);
    drop(lua);
    Ok(lua::failure(&result, false))
}

/// `netscript plan`: the script against a model of the system; prints the commands.
/// Needs no root and touches nothing (no sandbox, no kernel, no state dir).
pub fn plan(opts: &RunOpts, undo: bool, host_links: &[String], script: &Path, args: &[String]) -> Result<u8> {
    let topo = check_script(opts, script)?;
    let mut model = Plan::new(&mark_for(&topo));
    let mut declared = Vec::new();
    for spec in host_links {
        let (name, addrs) = parse_host_link(spec)?;
        model.declare_host_link(&name, &addrs)?;
        declared.push(spec.clone());
    }
    let (session, rec, cancel) = model_session(model, &topo, script);
    match run_script(&session, &topo, script, args, &cancel, true, Some("plan"))? {
        Ran::Failed(msg) => {
            eprintln!("netscript: {msg}");
            let n = session.borrow().journal().live_count();
            eprintln!(
                "netscript: plan: the script failed after {n} change(s); a real run failing here rolls them back"
            );
            return Ok(EXIT_FAILED);
        }
        Ran::Done { module: true } => eprintln!("{}", module_hint(script)),
        Ran::Done { module: false } => {}
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
    let mut header = header;
    if !declared.is_empty() {
        header.push(format!(
            "It assumes the host has: {} (--host-link).",
            declared.iter().map(|d| shell_quote(d)).collect::<Vec<_>>().join(" ")
        ));
    }
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

/// `--host-link NAME[=ADDR/PREFIX,...]`: the link's name and addresses.
fn parse_host_link(spec: &str) -> Result<(String, Vec<ipnet::IpNet>)> {
    let (name, addrs) = spec.split_once('=').unwrap_or((spec, ""));
    crate::model::check_ifname(name).map_err(|e| Error::invalid(format!("--host-link {}: {e}", shell_quote(spec))))?;
    let addrs = addrs
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse().map_err(|_| {
                Error::invalid(format!(
                    "--host-link {}: {} is not an address with a prefix (ADDR/PREFIX)",
                    shell_quote(spec),
                    shell_quote(a)
                ))
            })
        })
        .collect::<Result<_>>()?;
    Ok((name.to_string(), addrs))
}
