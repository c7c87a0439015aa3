//! Looking at recorded topologies: `ls` (with drift), `show` (what a topology owns)
//! and `gc` (marked objects that no journal accounts for).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::backend::{Backend, LinkInfo};
use crate::error::{Error, Result};
use crate::firewall::{Family, RuleAt};
use crate::journal::{Entry, Journal, State};
use crate::model::{ADDR_PROTO, NsRef, ROUTE_PROTO, mark_topology, split_words};
use crate::op::Op;
use crate::qdisc::{Qdisc, RootQdisc};
use crate::state::{LockMode, Record, StateDir};

mod dot;
mod now;
pub use dot::dot;
pub use now::{Drift, DriftKind, Now, NsNow, now, short_command};

#[derive(Debug, Serialize)]
pub struct TopologySummary {
    /// The record's directory name: the name `down` and `show` take.
    pub name: String,
    pub script: String,
    /// Seconds since the epoch; absent when the record does not say (`Damage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    pub changes: usize,
    /// "up", "running" (a netscript process holds it now), "incomplete" or "empty"
    /// (`Damage::status`), or "unreadable" (a line does not parse: said in `notes`).
    pub status: String,
    /// Changes whose effect is missing or altered since the run.
    pub drift: Vec<Drift>,
    /// What a person should know about the record itself (a last line cut short by
    /// a crash: that change never started).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What is wrong with a record that reads but lacks the `meta` line every run
/// writes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Nothing recorded at all (an empty file, or one cut short line).
    Empty,
    /// Changes without their meta line (the first line was lost): the script and
    /// the start time are unknown; what is recorded still counts.
    NoMeta,
}

impl Damage {
    pub fn of(j: &Journal) -> Option<Damage> {
        match (j.has_meta, j.entries().is_empty()) {
            (true, _) => None,
            (false, true) => Some(Damage::Empty),
            (false, false) => Some(Damage::NoMeta),
        }
    }

    /// How `ls` lists such a record.
    pub fn status(self) -> &'static str {
        match self {
            Damage::Empty => "empty",
            Damage::NoMeta => "incomplete",
        }
    }

    /// What is wrong, for a person: the record of topology `name` under `base`.
    pub fn describe(self, base: &Path, name: &str) -> String {
        let file = base.join(name).join(crate::journal::JOURNAL_FILE);
        match self {
            Damage::Empty => format!(
                "its record is empty ({} holds no change); `{}` removes it",
                file.display(),
                crate::state::down_command(base, name)
            ),
            Damage::NoMeta => format!(
                "its record has no meta line ({} lost its first line): its script and start time are unknown",
                file.display()
            ),
        }
    }
}

/// Whether another netscript process is changing topology `name` right now.
pub fn busy(base: &Path, name: &str) -> bool {
    Record::lock_as(base, name, LockMode::Shared).is_err()
}

/// Every recorded topology under `base`, checked against the system. Records that
/// cannot be read at all (no permission) are an error, never an empty list.
/// The recorded topologies; each compared with the kernel (`drift`) when `check`.
pub fn list(base: &Path, backend: &mut dyn Backend, check: bool) -> Result<Vec<TopologySummary>> {
    let mut out = Vec::new();
    let Some(sd) = StateDir::open(base, false)? else { return Ok(out) };
    for name in sd.list()? {
        let running = busy(base, &name);
        match sd.read_journal(&name) {
            Ok(Some(mut j)) => {
                j.meta.name = name.clone();
                let damage = Damage::of(&j);
                let drift =
                    if !check || running || damage == Some(Damage::Empty) { Vec::new() } else { drift(&j, backend) };
                let status = match damage {
                    Some(d) => d.status(),
                    None if running => "running",
                    None => "up",
                };
                out.push(TopologySummary {
                    script: j.meta.script.clone(),
                    started: j.has_meta.then_some(j.meta.started),
                    changes: j.live_count(),
                    status: status.into(),
                    drift,
                    notes: damage
                        .map(|d| d.describe(base, &name))
                        .into_iter()
                        .chain(j.torn.iter().cloned())
                        .chain(notes(j.entries().iter().filter(|e| e.live())))
                        .collect(),
                    name,
                });
            }
            Ok(None) => {}
            Err(e) => out.push(TopologySummary {
                name,
                script: String::new(),
                started: None,
                changes: 0,
                status: "unreadable".into(),
                drift: Vec::new(),
                notes: vec![e.to_string()],
            }),
        }
    }
    Ok(out)
}

/// The notes of `entries`, each once (the chains another topology handed over share
/// theirs).
fn notes<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in entries.filter_map(|e| e.note.as_ref()) {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

/// What of a topology is no longer as its run left it: one line per change whose
/// effect is missing or altered (checked newest first; an older change to the same
/// thing is covered by the newer one).
pub fn drift(journal: &Journal, b: &mut dyn Backend) -> Vec<Drift> {
    // The firewall tool its run used: not detected again.
    if let Some(tool) = &journal.meta.firewall {
        b.prefer_firewall_tool(tool);
    }
    let r = &mut Reads::new(b);
    r.read_rules(journal);
    let mut seen: HashSet<String> = HashSet::new();
    let mut moved_away: HashSet<(NsRef, String)> = HashSet::new();
    let mut out = Vec::new();
    for e in journal.live_newest_first() {
        if e.state != State::Done {
            continue;
        }
        let (key, link) = drift_key(&e.op);
        if link.as_ref().is_some_and(|l| moved_away.contains(l)) {
            continue;
        }
        if let Op::MoveLink { ns, name, .. } = &e.op {
            moved_away.insert((ns.clone(), name.clone()));
        }
        if !seen.insert(key) {
            continue;
        }
        let item = |kind, reason: Option<String>| Drift {
            kind,
            ns: e.op.ns().short().to_string(),
            command: e.op.render(),
            reason,
        };
        match not_ours(r, e, &crate::session::mark_for(&journal.meta.name)) {
            Ok(Some(why)) => {
                out.push(item(DriftKind::NotOurs, Some(why)));
                continue;
            }
            Ok(None) => {}
            Err(err) => out.push(item(DriftKind::Unchecked, Some(err.to_string()))),
        }
        match in_place(r, &e.op) {
            Ok(true) => {}
            Ok(false) => out.push(item(DriftKind::NotInPlace, None)),
            Err(err) => out.push(item(DriftKind::Unchecked, Some(err.to_string()))),
        }
    }
    out
}

/// What `drift` reads of the system, each link, namespace and root qdisc once: the
/// check of a creation's owner and that of its effect look at the same link (an
/// address's or a root qdisc's entry read it twice before), and the changes to one
/// link (its state, master, addresses) all read it.
///
/// The firewall rules are looked up all at once per namespace and family
/// (`read_rules`); policies and chains from one listing of each table (a Docker
/// network's seven chains and policy took eight `iptables -S` before).
struct Reads<'b> {
    b: &'b mut dyn Backend,
    links: HashMap<(NsRef, String), Option<LinkInfo>>,
    namespaces: HashMap<String, bool>,
    roots: HashMap<(NsRef, String), RootQdisc>,
    rules: HashMap<RuleKey, bool>,
    tables: HashMap<(NsRef, Family, String), Vec<String>>,
}

/// A rule where it is: namespace, family, table, chain, rule.
type RuleKey = (NsRef, Family, String, String, Vec<String>);

impl<'b> Reads<'b> {
    fn new(b: &'b mut dyn Backend) -> Self {
        Reads {
            b,
            links: HashMap::new(),
            namespaces: HashMap::new(),
            roots: HashMap::new(),
            rules: HashMap::new(),
            tables: HashMap::new(),
        }
    }

    /// Whether the rules of the journal's changes in effect are there, looked up
    /// together (`Backend::fw_exist_all`) for each namespace that exists and
    /// family; a lookup that fails leaves them to `fw_exists`, rule by rule.
    fn read_rules(&mut self, journal: &Journal) {
        let mut groups: Vec<((&NsRef, Family), Vec<RuleAt<'_>>)> = Vec::new();
        for e in journal.live_newest_first().filter(|e| e.state == State::Done) {
            let (Op::FwAppend { ns, family, table, chain, rule }
            | Op::FwInsert { ns, family, table, chain, rule, .. }
            | Op::FwDelete { ns, family, table, chain, rule }) = &e.op
            else {
                continue;
            };
            let r = (table.as_str(), chain.as_str(), rule.as_slice());
            match groups.iter_mut().find(|(k, _)| *k == (ns, *family)) {
                Some((_, v)) => v.push(r),
                None => groups.push(((ns, *family), vec![r])),
            }
        }
        for ((ns, fam), rules) in groups {
            if ns.name().is_some_and(|n| !self.netns_exists(n)) {
                continue;
            }
            if let Ok(there) = self.b.fw_exist_all(ns, fam, &rules) {
                for ((t, c, r), there) in rules.into_iter().zip(there) {
                    self.rules.insert((ns.clone(), fam, t.to_string(), c.to_string(), r.to_vec()), there);
                }
            }
        }
    }

    fn fw_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str, rule: &[String]) -> Result<bool> {
        let key = (ns.clone(), fam, table.to_string(), chain.to_string(), rule.to_vec());
        match self.rules.get(&key) {
            Some(&there) => Ok(there),
            None => self.b.fw_exists(ns, fam, table, chain, rule),
        }
    }

    /// The `-S` listing of a table, read once.
    fn table(&mut self, ns: &NsRef, fam: Family, table: &str) -> Result<&[String]> {
        let key = (ns.clone(), fam, table.to_string());
        if !self.tables.contains_key(&key) {
            let listing = self.b.fw_rules(ns, fam, table, None)?;
            self.tables.insert(key.clone(), listing);
        }
        Ok(&self.tables[&key])
    }

    fn fw_policy(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<Option<String>> {
        Ok(crate::firewall::rule::policy_in(self.table(ns, fam, table)?, chain).map(str::to_string))
    }

    fn fw_chain_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<bool> {
        Ok(crate::firewall::rule::declares(self.table(ns, fam, table)?, chain))
    }

    fn netns_exists(&mut self, name: &str) -> bool {
        if let Some(&there) = self.namespaces.get(name) {
            return there;
        }
        let there = self.b.netns_exists(name);
        self.namespaces.insert(name.to_string(), there);
        there
    }

    /// The link, or None when it is gone (or its namespace is).
    fn link(&mut self, ns: &NsRef, name: &str) -> Result<Option<&LinkInfo>> {
        let key = (ns.clone(), name.to_string());
        if !self.links.contains_key(&key) {
            let l = match ns {
                NsRef::Named(n) if !self.netns_exists(n) => None,
                _ => self.b.link(ns, name)?,
            };
            self.links.insert(key.clone(), l);
        }
        Ok(self.links[&key].as_ref())
    }

    fn root_qdisc(&mut self, ns: &NsRef, dev: &str) -> Result<RootQdisc> {
        let key = (ns.clone(), dev.to_string());
        if let Some(root) = self.roots.get(&key) {
            return Ok(root.clone());
        }
        let root = self.b.root_qdisc(ns, dev)?;
        self.roots.insert(key, root.clone());
        Ok(root)
    }
}

/// Whether the object a creation made has been replaced by another one under its
/// name (not marked for the topology, another link index, another namespace, a
/// route or an address of another protocol, a root qdisc of another handle): what,
/// if so.
fn not_ours(r: &mut Reads<'_>, e: &crate::journal::Entry, mark: &str) -> Result<Option<String>> {
    Ok(match (&e.op, e.undo.first()) {
        (Op::AddNetns { name }, Some(Op::DelNetns { id: Some(want), .. })) => match r.b.netns_id(name) {
            Some(have) if !have.is(want) => {
                Some(format!("namespace \"{name}\" is not the namespace this topology created"))
            }
            _ => None,
        },
        (Op::AddVeth { ns, name, .. } | Op::AddBridge { ns, name }, undo) => {
            let Some(l) = r.link(ns, name)? else { return Ok(None) };
            let index = match undo {
                Some(Op::DelLink { ifindex: Some(i), .. }) => Some(*i),
                _ => None,
            };
            if l.alias.as_deref() != Some(mark) {
                Some(format!("\"{name}\" in {ns} is not the link this topology created (it is not marked {mark})"))
            } else if index.is_some() && r.b.link_index(ns, name)? != index {
                Some(format!("\"{name}\" in {ns} is not the link this topology created (another link took its name)"))
            } else {
                None
            }
        }
        (Op::AddRoute { ns, route }, _) if route.proto.is_none() => {
            if ns.name().is_some_and(|n| !r.netns_exists(n)) {
                return Ok(None);
            }
            match r.b.find_route(ns, route)? {
                Some(k) if k.proto != Some(ROUTE_PROTO) => {
                    Some(format!("the route {route} in {ns} is not the route this topology added ({k})"))
                }
                _ => None,
            }
        }
        (Op::SetQdisc { ns, dev, qdisc: Qdisc { handle: Some(mine), .. }, .. }, _) => {
            if r.link(ns, dev)?.is_none() {
                return Ok(None);
            }
            match r.root_qdisc(ns, dev)? {
                RootQdisc::Default => None,
                root if root.handle() != *mine => Some(format!(
                    "the root qdisc of \"{dev}\" in {ns} is not the one this topology set (it is {} now, not {mine:x}:)",
                    root.describe()
                )),
                _ => None,
            }
        }
        (Op::AddAddr { ns, dev, addr, proto: Some(ADDR_PROTO), .. }, _) => match r.link(ns, dev)? {
            Some(l) if l.addrs.contains(addr) && !l.protos.contains(&(*addr, ADDR_PROTO)) => Some(format!(
                "{addr} on \"{dev}\" in {ns} is not the address this topology added (it is not marked protocol {ADDR_PROTO})"
            )),
            _ => None,
        },
        _ => None,
    })
}

/// Whether the effect of `op` is what the system shows now.
fn in_place(r: &mut Reads<'_>, op: &Op) -> Result<bool> {
    fn ns_ok(r: &mut Reads<'_>, ns: &NsRef) -> bool {
        ns.name().is_none_or(|n| r.netns_exists(n))
    }
    Ok(match op {
        Op::AddNetns { name } => r.netns_exists(name),
        Op::DelNetns { name, .. } => !r.netns_exists(name),
        Op::AddVeth { ns, name, .. } | Op::AddBridge { ns, name } => r.link(ns, name)?.is_some(),
        Op::AddLink { ns, name, .. } => r.link(ns, name)?.is_some(),
        Op::SetBridge { ns, name, opts } => {
            r.link(ns, name)?.is_some() && {
                let now = r.b.bridge_opts(ns, name)?;
                opts.vlan_filtering.is_none_or(|v| now.vlan_filtering == Some(v))
                    && opts.stp.is_none_or(|v| now.stp == Some(v))
            }
        }
        Op::SetBridgePort { ns, dev, flags } => {
            r.link(ns, dev)?.is_some() && r.b.port_flags(ns, dev)?.restricted_to(flags) == *flags
        }
        Op::SetQdisc { ns, dev, qdisc, .. } => {
            // The kind (the kernel rounds some parameters, tbf's burst, as it reports
            // them) and the handle it was given.
            r.link(ns, dev)?.is_some() && {
                let root = r.root_qdisc(ns, dev)?;
                qdisc.handle.is_none_or(|h| h == root.handle()) && root.kind() == Some(qdisc.kind.as_str())
            }
        }
        Op::DelQdisc { ns, dev, .. } => r.link(ns, dev)?.is_none() || r.root_qdisc(ns, dev)? == RootQdisc::Default,
        Op::DelLink { ns, name, .. } => r.link(ns, name)?.is_none(),
        Op::MoveLink { name, to, .. } => r.link(to, name)?.is_some(),
        Op::SetUp { ns, name, up } => r.link(ns, name)?.is_some_and(|l| l.up == *up),
        Op::AddAddr { ns, dev, addr, .. } => r.link(ns, dev)?.is_some_and(|l| l.addrs.contains(addr)),
        Op::DelAddr { ns, dev, addr, .. } => r.link(ns, dev)?.is_none_or(|l| !l.addrs.contains(addr)),
        Op::SetMaster { ns, dev, master } => r.link(ns, dev)?.is_some_and(|l| &l.master == master),
        Op::SetMtu { ns, dev, mtu } => r.link(ns, dev)?.is_some_and(|l| l.mtu == *mtu),
        Op::AddRoute { ns, route } => ns_ok(r, ns) && r.b.find_route(ns, route)?.is_some(),
        Op::DelRoute { ns, route } => !ns_ok(r, ns) || r.b.find_route(ns, route)?.is_none(),
        Op::SetSysctl { ns, key, value } => ns_ok(r, ns) && r.b.sysctl_get(ns, key)? == *value,
        Op::FwPolicy { ns, family: f, table, chain, target } => {
            ns_ok(r, ns) && r.fw_policy(ns, *f, table, chain)?.as_ref() == Some(target)
        }
        Op::FwAppend { ns, family: f, table, chain, rule } | Op::FwInsert { ns, family: f, table, chain, rule, .. } => {
            ns_ok(r, ns) && r.fw_exists(ns, *f, table, chain, rule)?
        }
        Op::FwDelete { ns, family: f, table, chain, rule } => {
            !ns_ok(r, ns) || !r.fw_exists(ns, *f, table, chain, rule)?
        }
        Op::FwNewChain { ns, family: f, table, chain } => ns_ok(r, ns) && r.fw_chain_exists(ns, *f, table, chain)?,
        Op::FwDelChain { ns, family: f, table, chain } => !ns_ok(r, ns) || !r.fw_chain_exists(ns, *f, table, chain)?,
        Op::Spawn { pid, start, .. } => r.b.alive(*pid, *start),
        Op::Kill { pid, start } => !r.b.alive(*pid, *start),
        Op::StopMarked { .. } | Op::TraceOn { .. } | Op::TraceOff { .. } => true,
    })
}

/// What a change is about, for drift: changes with the same key supersede each other;
/// the second value names the link the change is about, if any.
fn drift_key(op: &Op) -> (String, Option<(NsRef, String)>) {
    let l = |ns: &NsRef, n: &str| Some((ns.clone(), n.to_string()));
    match op {
        Op::AddNetns { name } | Op::DelNetns { name, .. } => (format!("netns {name}"), None),
        Op::AddVeth { ns, name, .. }
        | Op::AddBridge { ns, name }
        | Op::AddLink { ns, name, .. }
        | Op::DelLink { ns, name, .. }
        | Op::MoveLink { ns, name, .. } => (format!("link {ns} {name}"), l(ns, name)),
        Op::SetBridge { ns, name, .. } => (format!("bridge {ns} {name}"), l(ns, name)),
        Op::SetBridgePort { ns, dev, .. } => (format!("port {ns} {dev}"), l(ns, dev)),
        Op::SetQdisc { ns, dev, .. } | Op::DelQdisc { ns, dev, .. } => (format!("qdisc {ns} {dev}"), l(ns, dev)),
        Op::SetUp { ns, name, .. } => (format!("up {ns} {name}"), l(ns, name)),
        Op::AddAddr { ns, dev, addr, .. } | Op::DelAddr { ns, dev, addr, .. } => {
            (format!("addr {ns} {dev} {addr}"), l(ns, dev))
        }
        Op::SetMaster { ns, dev, .. } => (format!("master {ns} {dev}"), l(ns, dev)),
        Op::SetMtu { ns, dev, .. } => (format!("mtu {ns} {dev}"), l(ns, dev)),
        Op::AddRoute { ns, route } | Op::DelRoute { ns, route } => (format!("route {ns} {route}"), None),
        Op::SetSysctl { ns, key, .. } => (format!("sysctl {ns} {key}"), None),
        Op::FwPolicy { ns, family: f, table, chain, .. } => (format!("policy {ns} {f} {table} {chain}"), None),
        Op::FwAppend { ns, family: f, table, chain, rule, .. }
        | Op::FwInsert { ns, family: f, table, chain, rule, .. }
        | Op::FwDelete { ns, family: f, table, chain, rule } => {
            (format!("rule {ns} {f} {table} {chain} {rule:?}"), None)
        }
        Op::FwNewChain { ns, family: f, table, chain } | Op::FwDelChain { ns, family: f, table, chain } => {
            (format!("chain {ns} {f} {table} {chain}"), None)
        }
        Op::Spawn { pid, .. } | Op::Kill { pid, .. } => (format!("process {pid}"), None),
        Op::StopMarked { mark } => (format!("process {mark}"), None),
        Op::TraceOn { ns, id, .. } | Op::TraceOff { ns, id } => (format!("trace {ns} {id}"), None),
    }
}

#[derive(Debug, Serialize)]
pub struct Owned {
    /// The namespace it is in: "host" or the namespace's name.
    pub ns: String,
    pub command: String,
    #[serde(skip)]
    pub op: Op,
    /// A value to restore that another topology handed over (a shared host-wide setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Shown {
    pub name: String,
    pub script: String,
    /// Absent when the record does not say (`Damage::NoMeta`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// What the topology owns, in the order it was made.
    pub changes: Vec<Owned>,
    /// What a person should know about the record itself (no meta line, a last
    /// line cut short).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The journal of topology `name` for `show`, named after its directory, and what is
/// wrong with it (an empty record is an error that says so: it owns nothing).
fn read(base: &Path, name: &str) -> Result<(Journal, Option<String>)> {
    crate::model::check_name("topology", name)?;
    let not_up = || Error::invalid(format!("topology \"{name}\" is not up (no record in {})", base.display()));
    let sd = StateDir::open(base, false)?.ok_or_else(not_up)?;
    let mut j = sd.read_journal(name)?.ok_or_else(not_up)?;
    j.meta.name = name.to_string();
    let damage = Damage::of(&j);
    if damage == Some(Damage::Empty) {
        return Err(Error::invalid(format!(
            "topology \"{name}\" owns nothing: {}",
            Damage::Empty.describe(base, name)
        )));
    }
    Ok((j, damage.map(|d| d.describe(base, name))))
}

/// What topology `name` owns now (`netscript show`), with its drift.
pub fn show(base: &Path, name: &str, backend: &mut dyn Backend) -> Result<Now> {
    let (j, damage) = read(base, name)?;
    if let Some(tool) = &j.meta.firewall {
        backend.prefer_firewall_tool(tool);
    }
    let mut n = now(&j, backend);
    // What is wrong with the record, first.
    n.notes.splice(0..0, damage);
    n.running = busy(base, name);
    if !n.running {
        n.drift = drift(&j, backend);
    }
    Ok(n)
}

/// The history of topology `name`'s changes in effect (`netscript show --log`).
pub fn log(base: &Path, name: &str) -> Result<Shown> {
    let (j, damage) = read(base, name)?;
    let changes = j
        .entries()
        .iter()
        .filter(|e| e.state == State::Done)
        .map(|e| Owned {
            ns: e.op.ns().short().to_string(),
            command: e.op.render(),
            op: e.op.clone(),
            note: e.note.clone(),
        })
        .collect();
    Ok(Shown {
        name: name.into(),
        script: j.meta.script.clone(),
        started: j.has_meta.then_some(j.meta.started),
        changes,
        notes: damage.into_iter().chain(j.torn.clone()).collect(),
    })
}

/// A marked object that no journal accounts for, and the op that removes it.
#[derive(Debug, Serialize)]
pub struct Orphan {
    pub what: String,
    pub remove: Op,
    /// The topology its mark names (None for a route: protocol 78 names none).
    #[serde(skip)]
    topo: Option<String>,
}

/// What `gc` found, with the records it read held under a shared lock (no run or
/// `down` changes them while gc looks and removes).
pub struct Collection {
    pub orphans: Vec<Orphan>,
    /// What was not looked at, and why (a topology being changed right now).
    pub skipped: Vec<String>,
    busy: HashSet<String>,
    _locks: Vec<Record>,
}

/// What the live entries of the recorded topologies account for.
#[derive(Default)]
struct Accounted {
    links: HashSet<(String, NsRef, String)>,
    /// The namespaces records hold: topology, name.
    namespaces: HashSet<(String, String)>,
    rule_topos: HashSet<String>,
    routes: HashSet<(NsRef, String)>,
    /// The marked addresses records hold: namespace, link, address.
    addrs: HashSet<(NsRef, String, ipnet::IpNet)>,
    processes: HashSet<String>,
    /// The links whose root qdisc records change: namespace, link.
    qdiscs: HashSet<(NsRef, String)>,
}

impl Accounted {
    fn add(&mut self, name: &str, j: &Journal) {
        for e in j.entries().iter().filter(|e| e.live()) {
            match &e.op {
                Op::AddNetns { name: n } => {
                    self.namespaces.insert((name.to_string(), n.clone()));
                }
                Op::AddVeth { ns, name: n, peer, peer_ns, .. } => {
                    self.links.insert((name.to_string(), ns.clone(), n.clone()));
                    self.links.insert((name.to_string(), peer_ns.clone(), peer.clone()));
                }
                Op::AddBridge { ns, name: n } | Op::AddLink { ns, name: n, .. } => {
                    self.links.insert((name.to_string(), ns.clone(), n.clone()));
                }
                Op::MoveLink { name: n, to, .. } => {
                    self.links.insert((name.to_string(), to.clone(), n.clone()));
                }
                // A rule another topology handed over carries that one's mark.
                Op::FwAppend { rule, .. } | Op::FwInsert { rule, .. } => {
                    let marked = rule.windows(2).find(|w| w[0] == "--comment").and_then(|w| mark_topology(&w[1]));
                    self.rule_topos.insert(marked.unwrap_or(name).to_string());
                }
                Op::AddRoute { ns, route } => {
                    self.routes.insert((ns.clone(), route.dest.to_string()));
                }
                Op::AddAddr { ns, dev, addr, proto: Some(ADDR_PROTO), .. } => {
                    self.addrs.insert((ns.clone(), dev.clone(), *addr));
                }
                Op::Spawn { mark, .. } => {
                    self.processes.insert(mark.clone());
                }
                Op::SetQdisc { ns, dev, .. } | Op::DelQdisc { ns, dev, .. } => {
                    self.qdiscs.insert((ns.clone(), dev.clone()));
                }
                _ => {}
            }
        }
    }

    /// Every record's journal, read now.
    fn read(base: &Path) -> Result<Accounted> {
        let mut acc = Accounted::default();
        if let Some(sd) = StateDir::open(base, false)? {
            for name in sd.list()? {
                if let Some(j) = sd.read_journal(&name)? {
                    acc.add(&name, &j);
                }
            }
        }
        Ok(acc)
    }
}

/// The topology a namespace is marked for (the alias of its lo), from its links.
fn marked_namespace(links: &[LinkInfo]) -> Option<&str> {
    mark_topology(links.iter().find(|l| l.name == "lo")?.alias.as_deref()?)
}

/// Finds objects carrying netscript's ownership mark (a namespace's lo alias and a
/// link alias `netscript:NAME`, rule comment `netscript:NAME`, route and address
/// protocol 78, process environment NETSCRIPT_OWNER) that no recorded topology
/// accounts for, in the namespace netscript runs in and every named namespace.
///
/// Each record is read under its lock, shared: a topology that a netscript process
/// is changing right now (its journal may be ahead of what was listed) is skipped,
/// and so are routes while one is (their mark names no topology).
pub fn orphans(base: &Path, backend: &mut dyn Backend) -> Result<Collection> {
    let mut acc = Accounted::default();
    let mut busy = HashSet::new();
    let mut locks = Vec::new();
    let mut skipped = Vec::new();
    let sd = StateDir::open(base, false)?;
    for name in sd.as_ref().map(|s| s.list()).transpose()?.unwrap_or_default() {
        match Record::lock_as(base, &name, LockMode::Shared) {
            Ok(r) => locks.push(r),
            Err(_) => {
                skipped.push(format!(
                    "topology \"{name}\" is being changed by a netscript process right now: its objects (and all routes and addresses) are left for a later gc"
                ));
                busy.insert(name);
                continue;
            }
        }
        let Some(j) = sd.as_ref().expect("listed").read_journal(&name)? else { continue };
        acc.add(&name, &j);
    }
    let mut out = Vec::new();
    let mut seen_marks = HashSet::new();
    for (pid, mark, cmd) in backend.marked_processes() {
        let topo = crate::model::process_mark_topology(&mark).map(str::to_string);
        if topo.as_ref().is_some_and(|t| !busy.contains(t))
            && !acc.processes.contains(&mark)
            && seen_marks.insert(mark.clone())
        {
            out.push(Orphan {
                what: format!("process {pid} `{cmd}` (marked {mark})"),
                remove: Op::StopMarked { mark },
                topo,
            });
        }
    }
    let mut nss = vec![NsRef::Host];
    nss.extend(backend.netns_list().into_iter().map(NsRef::Named));
    'namespaces: for ns in nss {
        let links = backend.links(&ns)?;
        // A namespace's mark is its lo's alias: one that no record holds is an
        // orphan, with everything in it (lo itself is never an orphan link).
        if let (NsRef::Named(name), Some(topo)) = (&ns, marked_namespace(&links))
            && !busy.contains(topo)
            && !acc.namespaces.contains(&(topo.to_string(), name.clone()))
        {
            out.push(Orphan {
                what: format!("namespace \"{name}\" (marked for topology \"{topo}\")"),
                remove: Op::DelNetns { name: name.clone(), id: None, marked: true },
                topo: Some(topo.to_string()),
            });
            continue 'namespaces;
        }
        let mut orphan_links = HashSet::new();
        for l in &links {
            if l.name != "lo"
                && let Some(topo) = l.alias.as_deref().and_then(mark_topology)
                && !busy.contains(topo)
                && !acc.links.contains(&(topo.to_string(), ns.clone(), l.name.clone()))
            {
                orphan_links.insert(l.name.as_str());
                out.push(Orphan {
                    what: format!("link \"{}\" in {ns} (marked for topology \"{topo}\")", l.name),
                    remove: Op::del_link(&ns, &l.name),
                    topo: Some(topo.to_string()),
                });
                // Its addresses go with it.
                continue;
            }
            // As routes, an address's mark names no topology: none is collected while
            // one is being changed.
            for (addr, _) in l.protos.iter().filter(|(_, p)| *p == ADDR_PROTO) {
                if busy.is_empty() && !acc.addrs.contains(&(ns.clone(), l.name.clone(), *addr)) {
                    out.push(Orphan {
                        what: format!("address {addr} on \"{}\" in {ns}", l.name),
                        remove: Op::DelAddr {
                            ns: ns.clone(),
                            dev: l.name.clone(),
                            addr: *addr,
                            proto: Some(ADDR_PROTO),
                        },
                        topo: None,
                    });
                }
            }
        }
        // As routes, a root qdisc's mark (its handle) names no topology. One on an
        // orphan link goes with it; a namespace without tc has none.
        if busy.is_empty() {
            for (dev, handle) in backend.marked_qdiscs(&ns).unwrap_or_default() {
                if !orphan_links.contains(dev.as_str()) && !acc.qdiscs.contains(&(ns.clone(), dev.clone())) {
                    out.push(Orphan {
                        what: format!("root qdisc {handle:x}: on \"{dev}\" in {ns} (a handle of netscript's)"),
                        remove: Op::DelQdisc { ns: ns.clone(), dev, over: Some(handle) },
                        topo: None,
                    });
                }
            }
        }
        for r in backend.routes(&ns)? {
            if busy.is_empty()
                && r.proto == Some(ROUTE_PROTO)
                && !acc.routes.contains(&(ns.clone(), r.dest.to_string()))
            {
                out.push(Orphan {
                    what: format!("route {r} in {ns}"),
                    remove: Op::DelRoute { ns: ns.clone(), route: r.clone() },
                    topo: None,
                });
            }
        }
        for (family, table) in Family::ALL.iter().flat_map(|f| crate::firewall::TABLES.iter().map(move |t| (*f, t))) {
            let Ok(lines) = backend.fw_rules(&ns, family, table, None) else { continue };
            for line in lines {
                let Some(rest) = line.strip_prefix("-A ") else { continue };
                let Ok(words) = split_words(rest) else { continue };
                let Some(i) = words.iter().position(|w| w == "--comment") else { continue };
                let Some(topo) = words.get(i + 1).and_then(|c| mark_topology(c)) else { continue };
                if !busy.contains(topo) && !acc.rule_topos.contains(topo) {
                    out.push(Orphan {
                        what: match family {
                            Family::Ipv4 => format!("rule `{line}` in table {table} of {ns}"),
                            Family::Ipv6 => format!("ip6tables rule `{line}` in table {table} of {ns}"),
                        },
                        remove: Op::FwDelete {
                            ns: ns.clone(),
                            family,
                            table: table.to_string(),
                            chain: words[0].clone(),
                            rule: words[1..].to_vec(),
                        },
                        topo: Some(topo.to_string()),
                    });
                }
            }
        }
    }
    // What is printed of each: names, rules and command lines other processes chose,
    // with their control characters escaped (their removal commands are quoted).
    for o in &mut out {
        o.what = crate::model::one_line(&o.what);
    }
    Ok(Collection { orphans: out, skipped, busy, _locks: locks })
}

impl Collection {
    /// Checks an orphan again right before it is removed: still there, still
    /// marked the same, and its topology still without a record and not being
    /// changed (a run that started since gc looked owns what it made). None: remove
    /// it; Some(why) not.
    pub fn recheck(&self, base: &Path, backend: &mut dyn Backend, o: &Orphan) -> Result<Option<String>> {
        if let Some(t) = &o.topo {
            let recorded = StateDir::open(base, false)?.map(|s| s.has_record(t)).transpose()?.unwrap_or(false);
            let ours = self._locks.iter().any(|r| &r.name == t);
            if self.busy.contains(t) || (recorded && !ours && busy(base, t)) {
                return Ok(Some(format!("topology \"{t}\" is being changed now")));
            }
            if recorded && !ours {
                return Ok(Some(format!("topology \"{t}\" has a record now")));
            }
        }
        let mark = o.topo.as_ref().map(|t| crate::session::mark_for(t));
        let there = match &o.remove {
            Op::DelNetns { name, .. } => {
                let ns = NsRef::Named(name.clone());
                backend.netns_exists(name)
                    && backend.link(&ns, "lo")?.is_some_and(|l| l.alias == mark)
                    && !Accounted::read(base)?.namespaces.iter().any(|(_, n)| n == name)
            }
            Op::DelLink { ns, name, .. } => backend.link(ns, name)?.is_some_and(|l| l.alias == mark),
            Op::DelRoute { ns, route } => {
                let acc = Accounted::read(base)?;
                if acc.routes.contains(&(ns.clone(), route.dest.to_string())) {
                    return Ok(Some("a recorded topology has it now".into()));
                }
                backend.find_route(ns, route)?.is_some_and(|r| r.proto == Some(ROUTE_PROTO))
            }
            Op::DelAddr { ns, dev, addr, .. } => {
                if Accounted::read(base)?.addrs.contains(&(ns.clone(), dev.clone(), *addr)) {
                    return Ok(Some("a recorded topology has it now".into()));
                }
                backend.link(ns, dev)?.is_some_and(|l| l.protos.contains(&(*addr, ADDR_PROTO)))
            }
            Op::FwDelete { ns, family, table, chain, rule } => backend.fw_exists(ns, *family, table, chain, rule)?,
            Op::DelQdisc { ns, dev, over } => {
                if Accounted::read(base)?.qdiscs.contains(&(ns.clone(), dev.clone())) {
                    return Ok(Some("a recorded topology has it now".into()));
                }
                backend.marked_qdiscs(ns)?.iter().any(|(d, h)| d == dev && Some(*h) == *over)
            }
            _ => true,
        };
        Ok(if there { None } else { Some("it is gone or changed since".into()) })
    }
}

/// Drift, checked without root against the plan back end: a session makes the
/// changes on the model, then the model is changed behind the journal's back.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Meta;
    use crate::plan::Plan;
    use crate::session::Session;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    const H: NsRef = NsRef::Host;

    fn session() -> Session {
        let j = Journal::in_memory(Meta { name: "t".into(), ..Default::default() });
        Session::new(Box::new(Plan::new("netscript:t")), j, "t", Arc::new(AtomicBool::new(false)))
    }

    /// The session's journal as a second reader sees it (entries and their states).
    fn copy(j: &Journal) -> Journal {
        let mut c = Journal::in_memory(j.meta.clone());
        for e in j.entries() {
            let seq = c.begin(&e.op, &e.undo).unwrap();
            if e.state != State::InFlight {
                c.mark(seq, e.state).unwrap();
            }
        }
        c
    }

    fn drift_of(s: &mut Session) -> Vec<String> {
        let j = copy(s.journal());
        drift(&j, s.backend()).iter().map(|d| d.to_string()).collect()
    }

    /// Part 1 of the article, shortened: a namespace, a veth into it, addresses,
    /// a default route, forwarding and a rule.
    fn build(s: &mut Session) -> NsRef {
        let ns1 = s.netns_add("ns1").unwrap();
        s.veth_add("veth0", "veth_ns_1", &ns1, &H, None).unwrap();
        s.link_addr(&ns1, "veth0", "175.18.0.2/24".parse().unwrap()).unwrap();
        s.link_set_up(&ns1, "veth0", true).unwrap();
        s.link_addr(&H, "veth_ns_1", "175.18.0.1/24".parse().unwrap()).unwrap();
        s.link_set_up(&H, "veth_ns_1", true).unwrap();
        s.route_add(
            &ns1,
            crate::model::Route {
                dest: "0.0.0.0/0".parse().unwrap(),
                via: Some("175.18.0.1".parse().unwrap()),
                dev: None,
                metric: None,
                proto: None,
                scope: None,
                src: None,
            },
        )
        .unwrap();
        s.sysctl_set(&H, "net.ipv4.ip_forward", "1").unwrap();
        s.fw_append(&H, Family::Ipv4, "nat", "POSTROUTING", "-s 175.18.0.0/24 -j MASQUERADE").unwrap();
        ns1
    }

    #[test]
    fn a_topology_as_its_run_left_it_has_no_drift() {
        let mut s = session();
        build(&mut s);
        assert_eq!(drift_of(&mut s), Vec::<String>::new());
    }

    #[test]
    fn changes_behind_its_back_are_named_once_each() {
        let mut s = session();
        build(&mut s);
        let b = s.backend();
        b.apply(&Op::SetUp { ns: H, name: "veth_ns_1".into(), up: false }).unwrap();
        b.apply(&Op::SetSysctl { ns: H, key: "net.ipv4.ip_forward".into(), value: "0".into() }).unwrap();
        let rule = split_words("-m comment --comment netscript:t -s 175.18.0.0/24 -j MASQUERADE").unwrap();
        b.apply(&Op::FwDelete { ns: H, family: Family::Ipv4, table: "nat".into(), chain: "POSTROUTING".into(), rule })
            .unwrap();
        assert_eq!(
            drift_of(&mut s),
            vec![
                "not in place: iptables -t nat -A POSTROUTING -m comment --comment netscript:t -s 175.18.0.0/24 -j MASQUERADE",
                "not in place: sysctl -w net.ipv4.ip_forward=1",
                "not in place: ip link set veth_ns_1 up",
            ]
        );
    }

    #[test]
    fn a_deleted_namespace_takes_what_was_in_it_along() {
        let mut s = session();
        build(&mut s);
        s.backend().apply(&Op::del_netns("ns1")).unwrap();
        // Its links, their addresses and states, its route: each named, without an
        // error for reading inside a namespace that is gone. The veth's outer end
        // died with it, so its address and state are gone too.
        assert_eq!(
            drift_of(&mut s),
            vec![
                "not in place: ip -n ns1 route add default via 175.18.0.1",
                "not in place: ip link set veth_ns_1 up",
                "not in place: ip addr add 175.18.0.1/24 dev veth_ns_1",
                "not in place: ip -n ns1 link set veth0 up",
                "not in place: ip -n ns1 addr add 175.18.0.2/24 dev veth0",
                "not in place: ip link add veth_ns_1 numtxqueues 1 numrxqueues 1 type veth peer name veth0 numtxqueues 1 numrxqueues 1 netns ns1",
                "not in place: ip netns add ns1",
            ]
        );
    }

    #[test]
    fn a_newer_change_supersedes_an_older_one_and_undone_or_unfinished_ones_do_not_count() {
        let mut s = session();
        let ns1 = build(&mut s);
        // Down, then up again, by the script: only the newest state is expected.
        s.link_set_up(&H, "veth_ns_1", false).unwrap();
        assert_eq!(drift_of(&mut s), Vec::<String>::new());
        s.link_set_up(&H, "veth_ns_1", true).unwrap();
        // A link moved by the script: what was about it where it was is not drift.
        s.bridge_add("br0", &H).unwrap();
        s.link_addr(&H, "br0", "10.1.0.1/24".parse().unwrap()).unwrap();
        s.link_move(&H, "br0", &ns1).unwrap();
        assert_eq!(drift_of(&mut s), Vec::<String>::new());
        // An undone change is not expected; a change in flight (never confirmed) is not
        // checked.
        s.sysctl_set(&H, "net.ipv4.conf.all.rp_filter", "2").unwrap();
        s.undo_last(1);
        let mut j = copy(s.journal());
        j.begin(&Op::AddBridge { ns: H, name: "never".into() }, &[]).unwrap();
        assert_eq!(drift(&j, s.backend()), Vec::<Drift>::new());
        // Moved back behind the script's back: the move is named.
        s.backend().apply(&Op::MoveLink { ns: ns1, name: "br0".into(), to: H }).unwrap();
        assert_eq!(drift_of(&mut s), vec!["not in place: ip link set br0 netns ns1"]);
    }
}
