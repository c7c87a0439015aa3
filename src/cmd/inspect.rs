//! `netscript ls`, `show` and `gc`: what is up, what a topology owns, and marked
//! objects that no record accounts for. They read; only `gc --yes` removes.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{EXIT_ROLLBACK_INCOMPLETE, firewall, state_base};
use crate::cli::RunOpts;
use crate::error::Result;
use crate::kernel::Kernel;
use crate::model::{one_line, plural, shell_quote};

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

/// Where a topology came from, for a header: "from SCRIPT, 3s ago" (the path with
/// its control characters escaped, as `plan` prints it); what its record does not say
/// (it lost its meta line) is said to be unknown.
fn origin(script: &str, started: Option<u64>) -> String {
    let script = if script.is_empty() { "an unknown script".to_string() } else { one_line(script) };
    format!("from {script}, {}", started.map_or_else(|| "start time unknown".to_string(), when))
}

pub fn ls(opts: &RunOpts, json: bool) -> Result<u8> {
    let mut k = inspector(opts)?;
    // Without the capabilities to read every namespace and the firewall, the records
    // are listed as they are, not compared with the kernel (each read would fail and
    // read as drift).
    let check = super::can_admin_network();
    let list = crate::inspect::list(&state_base(opts), &mut k, check)?;
    if !check && !list.is_empty() {
        eprintln!("netscript: not compared with the kernel: reading every namespace and the firewall needs root");
    }
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
        // Drift is the status of a record that is up; a damaged record says what it is.
        let status = match t.status.as_str() {
            "up" if !t.drift.is_empty() => format!("drift({})", t.drift.len()),
            s => s.to_string(),
        };
        let started = t.started.map_or_else(|| "-".to_string(), when);
        // A script path is one line, its control characters escaped (as `plan` does).
        println!("{:<20} {:>7} {:<10} {:<12} {}", t.name, t.changes, status, started, one_line(&t.script));
        for d in t.drift.iter().map(|d| d.to_string()).chain(t.notes.iter().cloned()) {
            println!("    {d}");
        }
    }
    Ok(0)
}

pub fn show(opts: &RunOpts, name: &str, json: bool, dot: bool, log: bool) -> Result<u8> {
    if log {
        let shown = crate::inspect::log(&state_base(opts), name)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&shown).expect("serializes"));
            return Ok(0);
        }
        println!(
            "topology {} ({}): the changes in effect, in the order they were made",
            shown.name,
            origin(&shown.script, shown.started)
        );
        // One line per change, in journal order (replayable as they are: a link is
        // made before it is put on a bridge); the command names its namespace.
        for o in &shown.changes {
            println!("    {}", o.command);
            if let Some(n) = &o.note {
                println!("        # {n}");
            }
        }
        for n in &shown.notes {
            println!("note: {n}");
        }
        return Ok(0);
    }
    let mut k = inspector(opts)?;
    if !super::can_admin_network() {
        // What is wrong with the record itself (none, unreadable) is said first.
        crate::inspect::log(&state_base(opts), name)?;
        return Err(crate::error::Error::invalid(format!(
            "showing what topology \"{name}\" owns reads every namespace and the firewall, which needs root \
             (CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo; its history, from the record alone: \
             netscript show --log {}",
            shell_quote(name)
        )));
    }
    let now = crate::inspect::show(&state_base(opts), name, &mut k)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&now).expect("serializes"));
    } else if dot {
        print!("{}", crate::inspect::dot(&now));
    } else {
        print!("{}", text(&now));
    }
    Ok(0)
}

/// `show`'s text: one block per namespace, one line per thing owned.
fn text(now: &crate::inspect::Now) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let drift = if now.running {
        "a netscript process is changing it now".to_string()
    } else if now.drift.is_empty() {
        "as its run left it".to_string()
    } else {
        format!("{} changed since (below)", plural(now.drift.len(), "thing"))
    };
    let _ = writeln!(
        o,
        "topology {} ({}): {} in effect, {drift}; the history: netscript show --log {}",
        now.name,
        origin(&now.script, now.started),
        plural(now.changes, "change"),
        shell_quote(&now.name)
    );
    for n in &now.namespaces {
        let what = match (n.ns.as_str(), n.created) {
            ("host", _) => "host:".to_string(),
            (_, true) => format!("netns {}:", n.ns),
            (_, false) => format!("netns {} (not created by this topology):", n.ns),
        };
        let _ = writeln!(o, "{what}");
        let width = n.links.iter().map(|l| l.name.len()).max().unwrap_or(0);
        for l in &n.links {
            let mut line = format!("  link    {:<width$}  {:<8} {:<7}", l.name, l.kind, l.state);
            if !l.addrs.is_empty() {
                line += &format!(" {}", l.addrs.join(" "));
            }
            for (k, v) in [("master", &l.master), ("peer", &l.peer), ("on", &l.lower)] {
                if let Some(v) = v {
                    line += &format!(" {k} {v}");
                }
            }
            if let Some(m) = l.mtu {
                line += &format!(" mtu {m}");
            }
            if let Some(q) = &l.qdisc {
                line += &format!(" qdisc {q}");
            }
            for x in &l.options {
                line += &format!(" {x}");
            }
            let _ = writeln!(o, "{}", line.trim_end());
        }
        for r in &n.routes {
            let _ = writeln!(o, "  route   {r}");
        }
        for s in &n.sysctls {
            let _ = writeln!(o, "  sysctl  {} = {}", s.key, s.value);
            if let Some(note) = &s.note {
                let _ = writeln!(o, "          # {note}");
            }
        }
        // IPv6 rule sets are named ("ip6tables filter"), IPv4 ones as before ("filter").
        let fam = |f: crate::firewall::Family| if f.is_ipv4() { "" } else { "ip6tables " };
        for p in &n.policies {
            let _ = writeln!(o, "  policy  {}{} {} {}", fam(p.family), p.table, p.chain, p.policy);
            if let Some(note) = &p.note {
                let _ = writeln!(o, "          # {note}");
            }
        }
        for c in &n.chains {
            let _ = writeln!(o, "  chain   {}{} {}", fam(c.family), c.table, c.chain);
        }
        for r in &n.rules {
            let _ = writeln!(o, "  rule    {}{} {} {}", fam(r.family), r.table, r.chain, r.rule);
        }
        for p in &n.processes {
            let state = if p.running { "running" } else { "stopped" };
            let _ = writeln!(o, "  process {} {state}: {}", p.pid, p.command);
        }
    }
    if !now.drift.is_empty() {
        let _ = writeln!(o, "drift:");
        for d in &now.drift {
            let _ = writeln!(o, "  {d}");
        }
    }
    for n in &now.notes {
        let _ = writeln!(o, "note: {n}");
    }
    o
}

pub fn gc(opts: &RunOpts, yes: bool) -> Result<u8> {
    use crate::backend::Backend;
    super::require_network_admin("gc reads every namespace and the firewall, which")?;
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
