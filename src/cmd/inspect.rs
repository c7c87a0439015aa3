//! `netscript ls`, `show` and `gc`: what is up, what a topology owns, and marked
//! objects that no record accounts for. They read; only `gc --yes` removes.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{EXIT_ROLLBACK_INCOMPLETE, firewall, state_base};
use crate::cli::RunOpts;
use crate::error::Result;
use crate::kernel::Kernel;

fn inspector(opts: &RunOpts) -> Result<Kernel> {
    Kernel::new(String::new(), firewall(opts)?, Arc::new(AtomicBool::new(false)))
}

fn when(secs: u64) -> String {
    let ago = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).saturating_sub(secs);
    match ago {
        0..=119 => format!("{ago}s ago"),
        120..=7199 => format!("{}m ago", ago / 60),
        7200..=172799 => format!("{}h ago", ago / 3600),
        _ => format!("{}d ago", ago / 86400),
    }
}

pub fn ls(opts: &RunOpts, json: bool) -> Result<u8> {
    let mut k = inspector(opts)?;
    let list = crate::inspect::list(&state_base(opts), &mut k)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list).expect("serializes"));
        return Ok(0);
    }
    if list.is_empty() {
        println!("no topologies are up (records in {})", state_base(opts).display());
        return Ok(0);
    }
    println!("{:<20} {:>7} {:<10} {:<12} SCRIPT", "NAME", "CHANGES", "STATUS", "STARTED");
    for t in &list {
        let status = if t.drift.is_empty() { t.status.clone() } else { format!("drift({})", t.drift.len()) };
        println!("{:<20} {:>7} {:<10} {:<12} {}", t.name, t.changes, status, when(t.started), t.script);
        for d in t.drift.iter().chain(&t.notes) {
            println!("    {d}");
        }
    }
    Ok(0)
}

pub fn show(opts: &RunOpts, name: &str, json: bool, dot: bool) -> Result<u8> {
    let shown = crate::inspect::show(&state_base(opts), name)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&shown).expect("serializes"));
    } else if dot {
        print!("{}", crate::inspect::dot(&shown));
    } else {
        println!("topology {} (from {}, {})", shown.name, shown.script, when(shown.started));
        for (ns, owned) in shown.by_namespace() {
            println!("{ns}:");
            for o in owned {
                println!("    {}", o.command);
                if let Some(n) = &o.note {
                    println!("        # {n}");
                }
            }
        }
    }
    Ok(0)
}

pub fn gc(opts: &RunOpts, yes: bool) -> Result<u8> {
    use crate::backend::Backend;
    let mut k = inspector(opts)?;
    let base = state_base(opts);
    let found = crate::inspect::orphans(&base, &mut k)?;
    for s in &found.skipped {
        println!("skipped: {s}");
    }
    if found.orphans.is_empty() {
        println!("nothing to collect: every marked object belongs to a recorded topology");
        return Ok(0);
    }
    let mut failed = 0;
    for o in &found.orphans {
        if yes {
            match found.recheck(&base, &mut k, o) {
                Ok(None) => {}
                Ok(Some(why)) => {
                    println!("left alone {}: {why}", o.what);
                    continue;
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("netscript: could not check {} again: {e}", o.what);
                    continue;
                }
            }
            match k.apply(&o.remove) {
                Ok(()) => println!("removed {}: {}", o.what, o.remove.render()),
                Err(e) if e.is_gone() => println!("already gone: {}", o.what),
                Err(e) => {
                    failed += 1;
                    eprintln!("netscript: could not remove {}: {e}", o.what);
                }
            }
        } else {
            println!("{}\n    remove with: {}", o.what, o.remove.render());
        }
    }
    if !yes {
        println!("{} object(s) found; run `netscript gc --yes` to remove them", found.orphans.len());
    }
    Ok(if failed > 0 { EXIT_ROLLBACK_INCOMPLETE } else { 0 })
}
