//! The iptables back end: one `iptables` process per single change (each rule word
//! one argument, run from a thread inside the namespace, with `--wait` for the
//! xtables lock; the `iptables` crate for policies and chains), `iptables-restore
//! --noflush` for batches, `ip6tables` for IPv6.
//! Both families use the same variant (nft or legacy).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::Command;
use std::sync::OnceLock;

use nix::errno::Errno;

use super::{Change, Choice, Family, Firewall, RuleAt};
use crate::error::{Error, Result};
use crate::sys::netns::in_netns;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    /// The system's `iptables` (an alternative for one of the two below).
    System,
    Nft,
    Legacy,
}

impl Flavor {
    /// The flavour whose IPv4 command is `cmd`.
    fn from_cmd(cmd: &str) -> Option<Flavor> {
        [Flavor::System, Flavor::Nft, Flavor::Legacy].into_iter().find(|f| f.cmd(Family::Ipv4) == cmd)
    }

    fn cmd(self, fam: Family) -> &'static str {
        match (self, fam) {
            (Flavor::System, Family::Ipv4) => "iptables",
            (Flavor::Nft, Family::Ipv4) => "iptables-nft",
            (Flavor::Legacy, Family::Ipv4) => "iptables-legacy",
            (Flavor::System, Family::Ipv6) => "ip6tables",
            (Flavor::Nft, Family::Ipv6) => "ip6tables-nft",
            (Flavor::Legacy, Family::Ipv6) => "ip6tables-legacy",
        }
    }
}

pub struct Iptables {
    choice: Choice,
    /// The variant, decided on first use (see `flavor`).
    flavor: OnceLock<Flavor>,
    /// The command of each family, found on first use (see `ipt`).
    ipt: [OnceLock<iptables::IPTables>; 2],
}

/// Whether `cmd` is an executable file on PATH (looked up, not run: a process each
/// costs milliseconds on every run that uses the firewall).
fn has(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .any(|d| std::fs::metadata(d.join(cmd)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// How many rules (`-A` lines) each of the save commands `saves` prints (0 for one
/// that cannot run); the commands run at the same time.
fn rule_counts<const N: usize>(saves: [&str; N]) -> [usize; N] {
    let children = saves
        .map(|s| Command::new(s).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().ok());
    children.map(|c| {
        c.and_then(|c| c.wait_with_output().ok())
            .map_or(0, |o| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("-A ")).count())
    })
}

impl Iptables {
    /// The driver for `choice`; the command is looked for on first use.
    pub fn new(choice: Choice) -> Self {
        Iptables { choice, flavor: OnceLock::new(), ipt: [OnceLock::new(), OnceLock::new()] }
    }

    fn ipt_for(cmd: &'static str) -> iptables::IPTables {
        iptables::IPTables { cmd, has_check: true, has_wait: true, is_numeric: true }
    }

    /// The variant. `Auto` decides as Kubernetes' iptables-wrapper does: when both
    /// variants are installed and only the legacy one holds rules (of either family),
    /// the system is using legacy; otherwise the system's `iptables` command.
    fn flavor(&self) -> Flavor {
        *self.flavor.get_or_init(|| match self.choice {
            Choice::Nft => Flavor::Nft,
            Choice::Legacy => Flavor::Legacy,
            Choice::Auto if has("iptables-legacy") && has("iptables-nft") => {
                let [nft4, nft6, legacy4, legacy6] = rule_counts([
                    "iptables-nft-save",
                    "ip6tables-nft-save",
                    "iptables-legacy-save",
                    "ip6tables-legacy-save",
                ]);
                if nft4 + nft6 == 0 && legacy4 + legacy6 > 0 { Flavor::Legacy } else { Flavor::System }
            }
            Choice::Auto => Flavor::System,
        })
    }

    /// The command to run for `fam`.
    fn ipt(&self, fam: Family) -> Result<&iptables::IPTables> {
        let cell = &self.ipt[fam as usize];
        if let Some(i) = cell.get() {
            return Ok(i);
        }
        let cmd = self.flavor().cmd(fam);
        if !has(cmd) {
            let said = crate::sys::process::not_installed(cmd).unwrap_or_else(|| format!("{cmd} is not installed"));
            return Err(Error::sys(said, Some(Errno::ENOENT)));
        }
        Ok(cell.get_or_init(|| Self::ipt_for(cmd)))
    }

    /// The matching iptables-restore (ip6tables-restore) command.
    fn restore_cmd(&self, fam: Family) -> Result<String> {
        Ok(format!("{}-restore", self.ipt(fam)?.cmd))
    }

    /// Feeds `input` to `iptables-restore --noflush` (`ip6tables-restore`) in `ns`.
    fn restore(&self, ns: Option<BorrowedFd<'_>>, fam: Family, input: String) -> Result<()> {
        let cmd = self.restore_cmd(fam)?;
        self.run(ns, fam, move |_| {
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

    /// `exist_all` by the two listings (see there).
    fn exist_by_listing(&self, ns: Option<BorrowedFd<'_>>, fam: Family, rules: &[RuleAt<'_>]) -> Result<Vec<bool>> {
        let mut tables: Vec<&str> = Vec::new();
        for (t, _, _) in rules {
            if !tables.contains(t) {
                tables.push(t);
            }
        }
        let live = self.tables(ns, fam, &tables)?;
        let mut input = String::new();
        for (t, lines) in &live {
            input += &format!("*{t}\n");
            let mut chains: Vec<&str> = super::rule::user_chains(lines).collect();
            for (_, c, _) in rules.iter().filter(|(rt, _, _)| rt == t) {
                if !chains.contains(c) && !super::builtin_chains(t).contains(c) {
                    chains.push(c);
                }
            }
            for c in chains {
                input += &format!(":{c} - [0:0]\n");
            }
            for (rt, c, r) in rules.iter().filter(|(rt, _, _)| rt == t) {
                input += &restore_line(&Change::Append { table: rt, chain: c, rule: r }).1;
                input.push('\n');
            }
            input += "COMMIT\n";
        }
        let scratch = crate::sys::netns::scratch()?;
        self.restore(Some(scratch.as_fd()), fam, input)?;
        let spelled = self.tables(Some(scratch.as_fd()), fam, &tables)?;
        // Each chain's rules in the order they were written, as spelled there.
        let mut written: HashMap<(&str, &str), std::vec::IntoIter<&String>> = HashMap::new();
        for (t, lines) in &spelled {
            for (_, c, _) in rules.iter().filter(|(rt, _, _)| rt == t) {
                written.entry((t.as_str(), c)).or_insert_with(|| {
                    let prefix = format!("-A {c} ");
                    lines.iter().filter(|l| l.starts_with(&prefix)).collect::<Vec<_>>().into_iter()
                });
            }
        }
        let there: HashMap<&str, HashSet<&String>> =
            live.iter().map(|(t, lines)| (t.as_str(), lines.iter().collect())).collect();
        rules
            .iter()
            .map(|(t, c, _)| {
                let line = written.get_mut(&(*t, *c)).and_then(Iterator::next).ok_or_else(|| {
                    Error::sys(format!("{}-save printed fewer rules in chain {c} than were written", fam.cmd()), None)
                })?;
                Ok(there.get(t).is_some_and(|ls| ls.contains(line)))
            })
            .collect()
    }
}

/// Quotes a rule word for iptables-save / iptables-restore syntax.
fn restore_quote(w: &str) -> String {
    if !w.is_empty() && !w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\' || c == '\'') {
        w.to_string()
    } else {
        format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A change as a line of iptables-restore input: (table, line).
fn restore_line<'a>(c: &Change<'a>) -> (&'a str, String) {
    let words = |rule: &[String]| rule.iter().map(|w| restore_quote(w)).collect::<Vec<_>>().join(" ");
    match *c {
        Change::Append { table, chain, rule } => (table, format!("-A {chain} {}", words(rule))),
        Change::Insert { table, chain, pos, rule } => (table, format!("-I {chain} {pos} {}", words(rule))),
        Change::Delete { table, chain, rule } => (table, format!("-D {chain} {}", words(rule))),
        Change::Policy { table, chain, target } => (table, format!(":{chain} {target} [0:0]")),
    }
}

/// `iptables-save` output as `iptables -S` prints each table: `:CHAIN POLICY [n:m]`
/// is `-P CHAIN POLICY` for a built-in chain and `-N CHAIN` for a user chain (policy
/// `-`); rules are the same lines.
fn save_as_rules(save: &str) -> Vec<(String, Vec<String>)> {
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for l in save.lines() {
        if let Some(t) = l.strip_prefix('*') {
            tables.push((t.trim().to_string(), Vec::new()));
            continue;
        }
        let Some((_, lines)) = tables.last_mut() else { continue };
        if let Some(decl) = l.strip_prefix(':') {
            let mut w = decl.split_whitespace();
            match (w.next(), w.next()) {
                (Some(c), Some("-")) => lines.push(format!("-N {c}")),
                (Some(c), Some(p)) => lines.push(format!("-P {c} {p}")),
                _ => {}
            }
        } else if l.starts_with("-A ") {
            lines.push(l.to_string());
        }
    }
    tables
}

/// `cmd ARGS RULE... --wait`, each word of the rule one argument as it is (no
/// splitting, no quoting: a word may hold spaces and quotes, as in a batch).
fn rule_command(cmd: &str, args: &[&str], rule: &[String]) -> Command {
    let mut c = Command::new(cmd);
    c.args(args).args(rule).arg("--wait");
    c
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
    /// Runs iptables (ip6tables) with `args` and then the rule's words, in namespace
    /// `ns`; a failure is iptables' own message, as `run` gives it.
    fn rule_cmd(&self, ns: Option<BorrowedFd<'_>>, fam: Family, args: &[&str], rule: &[String]) -> Result<()> {
        self.run(ns, fam, |i| {
            let out = rule_command(i.cmd, args, rule).output()?;
            if out.status.success() {
                Ok(())
            } else {
                Err(Box::new(iptables::error::IptablesError::from(out)) as Box<dyn std::error::Error>)
            }
        })
    }

    fn run<T: Send>(
        &self,
        ns: Option<BorrowedFd<'_>>,
        fam: Family,
        f: impl FnOnce(&iptables::IPTables) -> std::result::Result<T, Box<dyn std::error::Error>> + Send,
    ) -> Result<T> {
        let ipt = self.ipt(fam)?;
        in_netns(ns, move || f(ipt).map_err(|e| tool_message(e.as_ref())))?.map_err(|m| {
            let errno = if m.contains("Permission denied") || m.contains("you must be root") {
                Some(Errno::EPERM)
            } else if m.contains("does a matching rule exist")
                || m.contains("No chain/target/match by that name")
                || (m.contains("Chain '") && m.contains("' does not exist"))
            {
                // The rule or chain is not there, or the chain the rule jumps to (so
                // the rule is not either; iptables-nft says so in the last form):
                // rollback counts that as undone.
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
        match (self.flavor.get(), self.choice) {
            (Some(f), _) => f.cmd(Family::Ipv4).to_string(),
            (None, Choice::Nft) => Flavor::Nft.cmd(Family::Ipv4).into(),
            (None, Choice::Legacy) => Flavor::Legacy.cmd(Family::Ipv4).into(),
            (None, Choice::Auto) => "iptables (not used yet)".into(),
        }
    }

    /// The variant, once a command of it was found (as its IPv4 command's name).
    fn resolved(&self) -> Option<String> {
        let found = self.ipt.iter().any(|c| c.get().is_some());
        self.flavor.get().filter(|_| found).map(|f| f.cmd(Family::Ipv4).to_string())
    }

    fn prefer(&self, tool: &str) {
        if let (Choice::Auto, Some(flavor)) = (self.choice, Flavor::from_cmd(tool))
            && self.flavor.set(flavor).is_ok()
        {
            for fam in Family::ALL {
                let _ = self.ipt[fam as usize].set(Self::ipt_for(flavor.cmd(fam)));
            }
        }
    }

    fn policy(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str) -> Result<String> {
        let lines = self.rules(ns, fam, table, Some(chain))?;
        super::rule::policy_in(&lines, chain)
            .map(str::to_string)
            .ok_or_else(|| Error::sys(format!("chain {chain} in table {table} has no policy"), None))
    }

    fn set_policy(
        &self,
        ns: Option<BorrowedFd<'_>>,
        fam: Family,
        table: &str,
        chain: &str,
        target: &str,
    ) -> Result<()> {
        self.run(ns, fam, |i| i.set_policy(table, chain, target))
    }

    fn append(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str, rule: &[String]) -> Result<()> {
        self.rule_cmd(ns, fam, &["-t", table, "-A", chain], rule)
    }

    fn insert(
        &self,
        ns: Option<BorrowedFd<'_>>,
        fam: Family,
        table: &str,
        chain: &str,
        pos: u32,
        rule: &[String],
    ) -> Result<()> {
        self.rule_cmd(ns, fam, &["-t", table, "-I", chain, &pos.to_string()], rule)
    }

    fn delete(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str, rule: &[String]) -> Result<()> {
        self.rule_cmd(ns, fam, &["-t", table, "-D", chain], rule)
    }

    fn exists(
        &self,
        ns: Option<BorrowedFd<'_>>,
        fam: Family,
        table: &str,
        chain: &str,
        rule: &[String],
    ) -> Result<bool> {
        // `-C` exits 1 when the rule is not there: an answer, not a failure.
        self.run(ns, fam, |i| Ok(rule_command(i.cmd, &["-t", table, "-C", chain], rule).output()?.status.success()))
    }

    fn new_chain(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str) -> Result<()> {
        self.run(ns, fam, |i| i.new_chain(table, chain))
    }

    fn delete_chain(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str) -> Result<()> {
        self.run(ns, fam, |i| {
            i.flush_chain(table, chain)?;
            i.delete_chain(table, chain)
        })
    }

    fn chain_exists(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str) -> Result<bool> {
        Ok(super::rule::declares(&self.rules(ns, fam, table, None)?, chain))
    }

    fn batch(&self, ns: Option<BorrowedFd<'_>>, fam: Family, changes: &[Change<'_>]) -> Result<()> {
        // Group by table, keeping the order of lines within each table (changes to
        // different tables do not depend on each other).
        let mut tables: Vec<(&str, Vec<String>)> = Vec::new();
        for (t, l) in changes.iter().map(restore_line) {
            match tables.iter_mut().find(|(x, _)| *x == t) {
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
        self.restore(ns, fam, input)
    }

    /// One `iptables-save` of the namespace, and the rules as that prints them: made
    /// in a new, empty namespace (with the namespace's user chains, and the rules'
    /// own) by one `iptables-restore` and saved there, in order. A rule is there
    /// when its line is: the tool's own spelling on both sides, as `-C` compares
    /// (`-s 10.0.0.1` is `-s 10.0.0.1/32`, `-p tcp --dport 80` gains `-m tcp`).
    /// Rule by rule when the empty namespace refuses them (a match that needs what
    /// only the namespace has, an ipset say; 1,000 rules took 5 s that way), or for
    /// one rule (one process, not three).
    fn exist_all(&self, ns: Option<BorrowedFd<'_>>, fam: Family, rules: &[RuleAt<'_>]) -> Result<Vec<bool>> {
        let listed = if rules.len() > 1 { self.exist_by_listing(ns, fam, rules).ok() } else { None };
        match listed {
            Some(there) => Ok(there),
            None => rules.iter().map(|(t, c, r)| self.exists(ns, fam, t, c, r)).collect(),
        }
    }

    /// One `iptables-save` (`ip6tables-save`) for all of them.
    fn tables(&self, ns: Option<BorrowedFd<'_>>, fam: Family, tables: &[&str]) -> Result<Vec<(String, Vec<String>)>> {
        let cmd = format!("{}-save", self.ipt(fam)?.cmd);
        let out = self.run(ns, fam, move |_| {
            let o = Command::new(&cmd).output()?;
            if !o.status.success() {
                return Err(Box::new(iptables::error::IptablesError::from(o)) as Box<dyn std::error::Error>);
            }
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        })?;
        let saved = save_as_rules(&out);
        Ok(tables
            .iter()
            .map(|t| (t.to_string(), saved.iter().find(|(n, _)| n == t).map(|(_, ls)| ls.clone()).unwrap_or_default()))
            .collect())
    }

    fn rules(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: Option<&str>) -> Result<Vec<String>> {
        let out = self.run(ns, fam, |i| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_reads_as_the_rules_of_each_table() {
        let save = "# Generated by iptables-nft-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [3:180]\n:MINE - [0:0]\n-A FORWARD -i br0 -j ACCEPT\n-A MINE -j RETURN\nCOMMIT\n# Completed\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 8001 -j DNAT --to-destination 10.0.0.2:80\nCOMMIT\n";
        let t = save_as_rules(save);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].0, "filter");
        assert_eq!(
            t[0].1,
            vec!["-P INPUT ACCEPT", "-P FORWARD DROP", "-N MINE", "-A FORWARD -i br0 -j ACCEPT", "-A MINE -j RETURN"]
        );
        assert_eq!(
            t[1],
            (
                "nat".to_string(),
                vec![
                    "-P PREROUTING ACCEPT".to_string(),
                    "-A PREROUTING -p tcp -m tcp --dport 8001 -j DNAT --to-destination 10.0.0.2:80".to_string()
                ]
            )
        );
    }
}
