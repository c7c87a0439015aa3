//! The iptables back end: the `iptables` crate for single rules (run from a thread
//! inside the namespace, with `--wait` for the xtables lock).

use std::os::fd::BorrowedFd;
use std::process::Command;

use nix::errno::Errno;

use super::Firewall;
use crate::error::{Error, Result};
use crate::sys::netns::in_netns;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// The system's `iptables` (an alternative for one of the two below).
    System,
    Nft,
    Legacy,
}

impl Flavor {
    pub fn parse(s: &str) -> Result<Option<Flavor>> {
        match s {
            "auto" => Ok(None),
            "nft" => Ok(Some(Flavor::Nft)),
            "legacy" => Ok(Some(Flavor::Legacy)),
            other => Err(Error::invalid(format!("--iptables takes auto, nft or legacy, not \"{other}\""))),
        }
    }
    fn cmd(self) -> &'static str {
        match self {
            Flavor::System => "iptables",
            Flavor::Nft => "iptables-nft",
            Flavor::Legacy => "iptables-legacy",
        }
    }
}

pub struct Iptables {
    ipt: iptables::IPTables,
}

fn has(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

fn rule_count(save: &str) -> usize {
    Command::new(save)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("-A ")).count())
        .unwrap_or(0)
}

impl Iptables {
    /// `flavor` None = auto-detect as Kubernetes' iptables-wrapper does: when both
    /// back ends are installed and only the legacy one holds rules, the system is
    /// using legacy; otherwise the system's `iptables` command.
    pub fn new(flavor: Option<Flavor>) -> Result<Self> {
        let flavor = match flavor {
            Some(f) => f,
            None if has("iptables-legacy")
                && has("iptables-nft")
                && rule_count("iptables-nft-save") == 0
                && rule_count("iptables-legacy-save") > 0 =>
            {
                Flavor::Legacy
            }
            None => Flavor::System,
        };
        if !has(flavor.cmd()) {
            return Err(Error::sys(
                format!("{} is not installed (Debian: apt-get install iptables)", flavor.cmd()),
                Some(Errno::ENOENT),
            ));
        }
        Ok(Iptables {
            ipt: iptables::IPTables { cmd: flavor.cmd(), has_check: true, has_wait: true, is_numeric: true },
        })
    }

    pub fn cmd(&self) -> &'static str {
        self.ipt.cmd
    }

    /// The matching iptables-restore command.
    fn restore_cmd(&self) -> String {
        match self.ipt.cmd {
            "iptables" => "iptables-restore".into(),
            other => format!("{other}-restore"),
        }
    }
}

/// The crate takes a rule as one string and splits it on spaces, honouring quotes.
fn rule_string(rule: &[String]) -> Result<String> {
    let mut parts = Vec::with_capacity(rule.len());
    for w in rule {
        if w.contains('"') || w.contains('\'') {
            return Err(Error::invalid(format!(
                "rule word {w:?} contains a quote character, which iptables rules cannot carry here"
            )));
        }
        if w.is_empty() || w.contains(char::is_whitespace) {
            parts.push(format!("\"{w}\""));
        } else {
            parts.push(w.clone());
        }
    }
    Ok(parts.join(" "))
}

/// iptables' own message, without its usage hints.
fn tool_message(e: &(dyn std::error::Error + 'static)) -> String {
    let raw = match e.downcast_ref::<iptables::error::IptablesError>() {
        Some(ie) => ie.msg.clone(),
        None => e.to_string(),
    };
    let lines: Vec<&str> = raw
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Try `") && !l.starts_with("Perhaps iptables"))
        .collect();
    if lines.is_empty() { "iptables failed".into() } else { lines.join("; ") }
}

impl Iptables {
    fn run<T: Send>(
        &self,
        ns: Option<BorrowedFd<'_>>,
        f: impl FnOnce(&iptables::IPTables) -> std::result::Result<T, Box<dyn std::error::Error>> + Send,
    ) -> Result<T> {
        let ipt = &self.ipt;
        in_netns(ns, move || f(ipt).map_err(|e| tool_message(e.as_ref())))?.map_err(|m| {
            let errno = if m.contains("Permission denied") || m.contains("you must be root") {
                Some(Errno::EPERM)
            } else if m.contains("does a matching rule exist") || m.contains("No chain/target/match by that name") {
                // The rule or chain is not there (rollback counts that as undone).
                Some(Errno::ENOENT)
            } else {
                None
            };
            let m = if errno == Some(Errno::EPERM) { format!("{m} (needs root, or run with --sandbox)") } else { m };
            Error::sys(m, errno)
        })
    }
}

impl Firewall for Iptables {
    fn describe(&self) -> String {
        self.ipt.cmd.to_string()
    }

    fn policy(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str) -> Result<String> {
        let lines = self.rules(ns, table, Some(chain))?;
        let prefix = format!("-P {chain} ");
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .ok_or_else(|| Error::sys(format!("chain {chain} in table {table} has no policy"), None))
    }

    fn set_policy(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, target: &str) -> Result<()> {
        self.run(ns, |i| i.set_policy(table, chain, target))
    }

    fn append(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, rule: &[String]) -> Result<()> {
        let r = rule_string(rule)?;
        self.run(ns, |i| i.append(table, chain, &r))
    }

    fn insert(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, pos: u32, rule: &[String]) -> Result<()> {
        let r = rule_string(rule)?;
        self.run(ns, |i| i.insert(table, chain, &r, pos as i32))
    }

    fn delete(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, rule: &[String]) -> Result<()> {
        let r = rule_string(rule)?;
        self.run(ns, |i| i.delete(table, chain, &r))
    }

    fn exists(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, rule: &[String]) -> Result<bool> {
        let r = rule_string(rule)?;
        self.run(ns, |i| i.exists(table, chain, &r))
    }

    fn new_chain(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str) -> Result<()> {
        self.run(ns, |i| i.new_chain(table, chain))
    }

    fn delete_chain(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str) -> Result<()> {
        self.run(ns, |i| {
            i.flush_chain(table, chain)?;
            i.delete_chain(table, chain)
        })
    }

    fn chain_exists(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str) -> Result<bool> {
        Ok(self.rules(ns, table, None)?.iter().any(|l| {
            l.strip_prefix("-N ").or_else(|| l.strip_prefix("-P ")).and_then(|r| r.split_whitespace().next())
                == Some(chain)
        }))
    }

    fn restore(&self, ns: Option<BorrowedFd<'_>>, lines: &[(String, String)]) -> Result<()> {
        // Group by table, keeping the order of lines within each table (changes to
        // different tables do not depend on each other).
        let mut tables: Vec<(&str, Vec<&str>)> = Vec::new();
        for (t, l) in lines {
            match tables.iter_mut().find(|(x, _)| x == t) {
                Some((_, v)) => v.push(l),
                None => tables.push((t, vec![l])),
            }
        }
        let mut input = String::new();
        for (t, ls) in &tables {
            input += &format!("*{t}\n");
            for l in ls {
                input += l;
                input.push('\n');
            }
            input += "COMMIT\n";
        }
        let cmd = self.restore_cmd();
        self.run(ns, move |_| {
            use std::io::Write;
            let mut child = Command::new(&cmd)
                .args(["--noflush", "--wait"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            child.stdin.take().unwrap().write_all(input.as_bytes())?;
            let o = child.wait_with_output()?;
            if !o.status.success() {
                return Err(Box::new(iptables::error::IptablesError::from(o)) as Box<dyn std::error::Error>);
            }
            Ok(())
        })
    }

    fn rules(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: Option<&str>) -> Result<Vec<String>> {
        let out = self.run(ns, |i| {
            let mut args = vec!["-t", table, "-S"];
            if let Some(c) = chain {
                args.push(c);
            }
            let o = Command::new(i.cmd).args(&args).arg("--wait").output()?;
            if !o.status.success() {
                return Err(Box::new(iptables::error::IptablesError::from(o)) as Box<dyn std::error::Error>);
            }
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        })?;
        Ok(out.lines().map(str::to_string).collect())
    }
}
