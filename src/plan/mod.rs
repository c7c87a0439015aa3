//! The plan back end: a model of the system (namespaces, links, addresses, routes,
//! sysctls, iptables tables) that a session changes instead of the kernel. Every
//! change it accepts is recorded as its shell command (`Op::render`), under a comment
//! naming where it came from; the result is the bash script `netscript plan` prints.
//!
//! The model mimics the kernel where a script would notice: names are unique per
//! namespace, moving a link takes it down and drops its addresses, deleting a
//! namespace deletes its links and their veth peers, an address on an up link brings
//! its connected route, a gateway must be reachable, `lo` exists (down) in every new
//! namespace. It needs no privileges and touches nothing: it never opens a netlink
//! socket, only reads /proc/sys to tell whether a sysctl key exists.

mod reach;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use ipnet::IpNet;
use nix::errno::Errno;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::backend::{Backend, LinkInfo};
use crate::cli::RunOpts;
use crate::error::{Error, Result};
use crate::firewall;
use crate::journal::{Journal, Meta};
use crate::lua;
use crate::model::{NsRef, ROUTE_PROTO, Route, join_words};
use crate::op::{Op, Probe};
use crate::session::{Session, mark_for};
use crate::sys::process::ExecResult;

const PROTO_KERNEL: u8 = 2;
const SCOPE_LINK: u8 = 253;

/// One line of the plan: a change (a command), or a read (shown as a comment).
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Change(String),
    Read(String),
    /// A change the plan cannot spell as a command (shown as a comment).
    Note(String),
}

/// What a plan recorded: steps with the origin each came from, in order.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    pub steps: Vec<(String, Step)>,
}

impl Recording {
    /// The changes only, as commands.
    pub fn commands(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|(_, s)| match s {
                Step::Change(c) => Some(c.clone()),
                Step::Read(_) | Step::Note(_) => None,
            })
            .collect()
    }

    /// A runnable bash script: `header` lines (comments), `set -e`, then the steps,
    /// each group under a `# origin` comment; reads appear as comments.
    pub fn script(&self, header: &[String]) -> String {
        let mut out = String::from("#!/bin/bash\n");
        for h in header {
            out += &format!("# {h}\n");
        }
        out += "set -e\n";
        let mut last: Option<&str> = None;
        for (origin, step) in &self.steps {
            if last != Some(origin.as_str()) {
                out += "\n";
                if !origin.is_empty() {
                    out += &comment("", origin);
                }
                last = Some(origin);
            }
            match step {
                Step::Change(c) => out += &format!("{c}\n"),
                Step::Read(c) => out += &comment("(reads) ", c),
                Step::Note(c) => out += &comment("", c),
            }
        }
        out
    }
}

/// `text` as a bash comment, every line of it (a quoted argument may hold newlines,
/// which must not turn the rest into commands).
fn comment(prefix: &str, text: &str) -> String {
    let mut out = String::new();
    for (i, l) in text.split('\n').enumerate() {
        out += &format!("# {}{l}\n", if i == 0 { prefix } else { "  " });
    }
    out
}

/// A shared handle on what a `Plan` records (the session owns the back end itself).
pub type RecordingRef = Rc<RefCell<Recording>>;

#[derive(Clone, Debug)]
struct MLink {
    name: String,
    kind: Option<String>,
    up: bool,
    master: Option<String>,
    mtu: u32,
    alias: Option<String>,
    addrs: Vec<IpNet>,
    /// The other end of a veth pair.
    peer: Option<(NsRef, String)>,
}

impl MLink {
    fn new(name: &str, kind: &str, alias: &str) -> Self {
        MLink {
            name: name.into(),
            kind: Some(kind.into()),
            up: false,
            master: None,
            mtu: 1500,
            alias: Some(alias.into()),
            addrs: Vec::new(),
            peer: None,
        }
    }

    fn info(&self) -> LinkInfo {
        LinkInfo {
            name: self.name.clone(),
            up: self.up,
            master: self.master.clone(),
            mtu: self.mtu,
            kind: self.kind.clone(),
            alias: self.alias.clone(),
            addrs: self.addrs.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct Chain {
    name: String,
    /// Built-in chains have a policy; user chains do not.
    policy: Option<String>,
    rules: Vec<Vec<String>>,
}

#[derive(Clone, Debug)]
struct Table {
    chains: Vec<Chain>,
}

impl Table {
    fn new(table: &str) -> Self {
        let chains = firewall::builtin_chains(table)
            .iter()
            .map(|c| Chain { name: c.to_string(), policy: Some("ACCEPT".into()), rules: Vec::new() })
            .collect();
        Table { chains }
    }

    fn chain(&mut self, name: &str) -> Option<&mut Chain> {
        self.chains.iter_mut().find(|c| c.name == name)
    }

    /// As `iptables -t TABLE -S [CHAIN]` prints it.
    fn lines(&self, only: Option<&str>) -> Vec<String> {
        let chains: Vec<&Chain> = self.chains.iter().filter(|c| only.is_none_or(|o| o == c.name)).collect();
        let mut out = Vec::new();
        for c in &chains {
            match &c.policy {
                Some(p) => out.push(format!("-P {} {p}", c.name)),
                None => out.push(format!("-N {}", c.name)),
            }
        }
        for c in &chains {
            for r in &c.rules {
                out.push(format!("-A {} {}", c.name, join_words(r)));
            }
        }
        out
    }
}

#[derive(Clone, Debug)]
struct Netns {
    links: Vec<MLink>,
    /// The main routing table.
    routes: Vec<Route>,
    /// Sysctls this plan set (others read as their defaults).
    sysctls: BTreeMap<String, String>,
    tables: BTreeMap<String, Table>,
}

impl Netns {
    /// A new namespace: only `lo`, down, without addresses.
    fn fresh() -> Self {
        let lo = MLink {
            name: "lo".into(),
            kind: None,
            up: false,
            master: None,
            mtu: 65536,
            alias: None,
            addrs: Vec::new(),
            peer: None,
        };
        Netns { links: vec![lo], routes: Vec::new(), sysctls: BTreeMap::new(), tables: BTreeMap::new() }
    }

    fn link(&self, name: &str) -> Option<&MLink> {
        self.links.iter().find(|l| l.name == name)
    }

    fn link_mut(&mut self, name: &str) -> Option<&mut MLink> {
        self.links.iter_mut().find(|l| l.name == name)
    }

    fn table(&mut self, table: &str) -> &mut Table {
        self.tables.entry(table.to_string()).or_insert_with(|| Table::new(table))
    }

    /// The connected route an address brings (None for a host address).
    fn connected_route(dev: &str, a: &IpNet) -> Option<Route> {
        let full = if a.addr().is_ipv6() { 128 } else { 32 };
        if a.prefix_len() == full {
            return None;
        }
        let v6 = a.addr().is_ipv6();
        Some(Route {
            dest: a.trunc(),
            via: None,
            dev: Some(dev.into()),
            metric: if v6 { Some(256) } else { None },
            proto: Some(PROTO_KERNEL),
            scope: Some(if v6 { 0 } else { SCOPE_LINK }),
            src: if v6 { None } else { Some(a.addr()) },
        })
    }

    fn add_connected(&mut self, dev: &str, a: &IpNet) {
        // lo's prefix goes to the local table, which the model does not keep.
        if dev == "lo" {
            return;
        }
        if let Some(r) = Self::connected_route(dev, a)
            && !self.routes.iter().any(|x| x.dest == r.dest && x.dev == r.dev && x.proto == r.proto)
        {
            self.routes.push(r);
        }
    }

    /// A link goes down or away: the kernel drops every route through it.
    fn drop_routes_via(&mut self, dev: &str) {
        self.routes.retain(|r| r.dev.as_deref() != Some(dev));
    }

    /// Takes a link out of this namespace (deleted or moved): its routes go, the
    /// ports of a bridge are released. Returns the link.
    fn take_link(&mut self, name: &str) -> Option<MLink> {
        let i = self.links.iter().position(|l| l.name == name)?;
        let l = self.links.remove(i);
        self.drop_routes_via(name);
        for p in self.links.iter_mut().filter(|p| p.master.as_deref() == Some(name)) {
            p.master = None;
        }
        Some(l)
    }
}

/// The default of a sysctl in a fresh namespace, for the keys scripts use.
fn sysctl_default(key: &str) -> Option<&'static str> {
    let k = key.replace('/', ".");
    let last = k.rsplit('.').next().unwrap_or("");
    if k == "net.ipv4.ip_forward" {
        return Some("0");
    }
    if k.starts_with("net.ipv4.conf.") || k.starts_with("net.ipv6.conf.") {
        return match last {
            "forwarding" | "route_localnet" | "rp_filter" | "proxy_arp" | "disable_ipv6" | "accept_local"
            | "arp_ignore" | "arp_announce" | "log_martians" => Some("0"),
            "send_redirects" | "accept_redirects" => Some("1"),
            _ => None,
        };
    }
    match k.as_str() {
        "net.bridge.bridge-nf-call-iptables" | "net.bridge.bridge-nf-call-ip6tables" => Some("1"),
        "net.ipv4.ping_group_range" => Some("1\t0"),
        _ => None,
    }
}

/// The model of the system, and the recorder of the plan.
pub struct Plan {
    /// The ownership mark put on links (alias), as the kernel back end does.
    mark: String,
    nss: BTreeMap<NsRef, Netns>,
    origin: String,
    rec: RecordingRef,
    next_pid: u32,
    /// Processes the script started: the plan's made-up pid and the command.
    spawned: Vec<(u32, String, NsRef)>,
}

fn no_ns(ns: &NsRef) -> Error {
    Error::sys(format!("{ns} does not exist"), Some(Errno::ENOENT))
}

fn no_link(ns: &NsRef, name: &str) -> Error {
    Error::sys(format!("no link named \"{name}\" in {ns}"), Some(Errno::ENODEV))
}

impl Plan {
    /// A model of a freshly booted host: `lo` up with 127.0.0.1/8 and ::1, no named
    /// namespaces, empty firewall tables with ACCEPT policies, default sysctls.
    pub fn new(mark: &str) -> Self {
        let mut host = Netns::fresh();
        let lo = host.link_mut("lo").expect("lo");
        lo.up = true;
        lo.addrs = vec!["127.0.0.1/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let mut nss = BTreeMap::new();
        nss.insert(NsRef::Host, host);
        Plan { mark: mark.into(), nss, origin: String::new(), rec: Rc::default(), next_pid: 10000, spawned: Vec::new() }
    }

    /// What this plan records (shared: the session owns the plan itself).
    pub fn recording(&self) -> RecordingRef {
        self.rec.clone()
    }

    fn record(&self, step: Step) {
        self.rec.borrow_mut().steps.push((self.origin.clone(), step));
    }

    fn ns(&self, ns: &NsRef) -> Result<&Netns> {
        self.nss.get(ns).ok_or_else(|| no_ns(ns))
    }

    fn ns_mut(&mut self, ns: &NsRef) -> Result<&mut Netns> {
        self.nss.get_mut(ns).ok_or_else(|| no_ns(ns))
    }

    fn link_mut(&mut self, ns: &NsRef, name: &str) -> Result<&mut MLink> {
        self.ns_mut(ns)?.link_mut(name).ok_or_else(|| no_link(ns, name))
    }

    fn require_free(&self, ns: &NsRef, name: &str) -> Result<()> {
        if self.ns(ns)?.link(name).is_some() {
            return Err(Error::sys(format!("a link named \"{name}\" already exists in {ns}"), Some(Errno::EEXIST)));
        }
        Ok(())
    }

    /// Deletes a link and, for a veth, its peer (wherever that is).
    fn delete_link(&mut self, ns: &NsRef, name: &str) -> Result<()> {
        let l = self.ns_mut(ns)?.take_link(name).ok_or_else(|| no_link(ns, name))?;
        if let Some((pns, pname)) = l.peer
            && let Some(n) = self.nss.get_mut(&pns)
        {
            n.take_link(&pname);
        }
        Ok(())
    }

    /// Points the peer of a veth end at the end's new place.
    fn repoint_peer(&mut self, l: &MLink, ns: &NsRef) {
        if let Some((pns, pname)) = &l.peer
            && let Some(p) = self.nss.get_mut(pns).and_then(|n| n.link_mut(pname))
        {
            p.peer = Some((ns.clone(), l.name.clone()));
        }
    }

    fn check_sysctl(&self, ns: &NsRef, key: &str) -> Result<()> {
        let path = crate::sys::sysctl::key_path(key)?;
        // Per-link keys name a link of the model: check it there, and the key's
        // existence against lo's.
        let rel = path.strip_prefix("/proc/sys").unwrap_or(&path).to_path_buf();
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let mut probe = path.clone();
        if parts.len() == 5 && parts[0] == "net" && (parts[2] == "conf" || parts[2] == "neigh") {
            let dev = &parts[3];
            if dev != "all" && dev != "default" {
                if self.ns(ns)?.link(dev).is_none() {
                    return Err(Error::sys(
                        format!("sysctl {key}: no link named \"{dev}\" in {ns}"),
                        Some(Errno::ENOENT),
                    ));
                }
                probe = std::path::Path::new("/proc/sys")
                    .join(&parts[0])
                    .join(&parts[1])
                    .join(&parts[2])
                    .join("lo")
                    .join(&parts[4]);
            }
        }
        if sysctl_default(key).is_none() && !probe.exists() {
            return Err(Error::sys(format!("no sysctl named {key} (no {})", path.display()), Some(Errno::ENOENT)));
        }
        Ok(())
    }

    fn sysctl_value(&self, ns: &NsRef, key: &str) -> Result<String> {
        self.check_sysctl(ns, key)?;
        let k = key.replace('/', ".");
        let n = self.ns(ns)?;
        if let Some(v) = n.sysctls.get(&k) {
            return Ok(v.clone());
        }
        // A link's own setting starts as the namespace's default.
        for fam in ["net.ipv4.conf.", "net.ipv6.conf."] {
            if let Some((dev, leaf)) = k.strip_prefix(fam).and_then(|r| r.rsplit_once('.'))
                && dev != "all"
                && let Some(v) = n.sysctls.get(&format!("{fam}default.{leaf}"))
            {
                return Ok(v.clone());
            }
        }
        if let Some(v) = sysctl_default(&k) {
            return Ok(v.to_string());
        }
        // Not one the model knows: what this machine says is as plausible as anything.
        let path = crate::sys::sysctl::key_path(key)?;
        Ok(std::fs::read_to_string(path).map(|s| s.trim_end_matches('\n').to_string()).unwrap_or_default())
    }

    fn set_sysctl(&mut self, ns: &NsRef, key: &str, value: &str) -> Result<()> {
        self.check_sysctl(ns, key)?;
        let k = key.replace('/', ".");
        let links: Vec<String> = self.ns(ns)?.links.iter().map(|l| l.name.clone()).collect();
        let n = self.ns_mut(ns)?;
        // ip_forward and conf.all.forwarding are one switch: writing either sets
        // forwarding on every link (and the default for new ones).
        if k == "net.ipv4.ip_forward" || k == "net.ipv4.conf.all.forwarding" {
            n.sysctls.insert("net.ipv4.ip_forward".into(), value.into());
            for d in ["all".to_string(), "default".to_string()].into_iter().chain(links) {
                n.sysctls.insert(format!("net.ipv4.conf.{d}.forwarding"), value.into());
            }
        } else {
            n.sysctls.insert(k, value.into());
        }
        Ok(())
    }

    /// The route a gateway is reached by: a link-scope route containing it.
    fn gateway_dev(&self, ns: &NsRef, via: IpAddr, dev: Option<&str>) -> Result<Option<String>> {
        let n = self.ns(ns)?;
        let found = n.routes.iter().find(|r| {
            r.via.is_none()
                && r.dest.contains(&via)
                && dev.is_none_or(|d| r.dev.as_deref() == Some(d))
                && r.dev.as_deref().and_then(|d| n.link(d)).is_some_and(|l| l.up)
        });
        Ok(found.and_then(|r| r.dev.clone()))
    }

    fn add_route(&mut self, ns: &NsRef, route: &Route) -> Result<()> {
        let v6 = route.dest.addr().is_ipv6();
        let n = self.ns(ns)?;
        if let Some(d) = &route.dev {
            let l = n.link(d).ok_or_else(|| no_link(ns, d))?;
            if !l.up {
                return Err(Error::sys(
                    format!("link \"{d}\" in {ns} is down (a route needs its link up)"),
                    Some(Errno::ENETDOWN),
                ));
            }
        }
        let mut dev = route.dev.clone();
        if let Some(via) = route.via {
            match self.gateway_dev(ns, via, route.dev.as_deref())? {
                Some(d) => dev = Some(d),
                // IPv6 gateways are often link-local; the model does not track those.
                None if v6 && route.dev.is_some() => {}
                None => {
                    return Err(Error::sys(
                        format!("gateway {via} is not on any link that is up in {ns} (no connected route reaches it)"),
                        Some(Errno::ENETUNREACH),
                    ));
                }
            }
        }
        let metric = route.metric.or(if v6 { Some(1024) } else { None });
        let n = self.ns_mut(ns)?;
        if n.routes.iter().any(|r| r.dest == route.dest && r.metric.unwrap_or(0) == metric.unwrap_or(0)) {
            return Err(Error::sys(format!("{ns} already has a route to {}", route.dest), Some(Errno::EEXIST)));
        }
        n.routes.push(Route {
            dest: route.dest,
            via: route.via,
            dev,
            metric,
            proto: Some(route.proto.unwrap_or(ROUTE_PROTO)),
            scope: Some(route.scope.unwrap_or(if route.via.is_none() { SCOPE_LINK } else { 0 })),
            src: route.src,
        });
        Ok(())
    }

    fn route_matches(k: &Route, r: &Route) -> bool {
        k.dest == r.dest
            && (r.via.is_none() || k.via == r.via)
            && (r.dev.is_none() || k.dev == r.dev)
            && (r.metric.is_none() || k.metric.unwrap_or(0) == r.metric.unwrap_or(0))
    }

    fn apply_inner(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::AddNetns { name } => {
                let ns = NsRef::named(name.clone());
                if self.nss.contains_key(&ns) {
                    return Err(Error::sys(format!("{ns} already exists"), Some(Errno::EEXIST)));
                }
                self.nss.insert(ns, Netns::fresh());
            }
            Op::DelNetns { name } => {
                let ns = NsRef::named(name.clone());
                let gone = self.nss.remove(&ns).ok_or_else(|| no_ns(&ns))?;
                for l in gone.links {
                    if let Some((pns, pname)) = l.peer
                        && let Some(n) = self.nss.get_mut(&pns)
                    {
                        n.take_link(&pname);
                    }
                }
            }
            Op::AddVeth { ns, name, peer, peer_ns } => {
                self.require_free(ns, name)?;
                self.require_free(peer_ns, peer)?;
                let mut a = MLink::new(name, "veth", &self.mark);
                let mut b = MLink::new(peer, "veth", &self.mark);
                a.peer = Some((peer_ns.clone(), peer.clone()));
                b.peer = Some((ns.clone(), name.clone()));
                self.ns_mut(ns)?.links.push(a);
                self.ns_mut(peer_ns)?.links.push(b);
            }
            Op::AddBridge { ns, name } => {
                self.require_free(ns, name)?;
                let l = MLink::new(name, "bridge", &self.mark);
                self.ns_mut(ns)?.links.push(l);
            }
            Op::DelLink { ns, name } => self.delete_link(ns, name)?,
            Op::MoveLink { ns, name, to } => {
                self.ns(ns)?.link(name).ok_or_else(|| no_link(ns, name))?;
                self.ns(to)?;
                self.require_free(to, name)?;
                let mut l = self.ns_mut(ns)?.take_link(name).expect("checked");
                l.up = false;
                l.addrs.clear();
                l.master = None;
                self.repoint_peer(&l, to);
                self.ns_mut(to)?.links.push(l);
            }
            Op::SetUp { ns, name, up } => {
                let l = self.link_mut(ns, name)?;
                l.up = *up;
                if *up && name == "lo" {
                    for a in ["127.0.0.1/8", "::1/128"] {
                        let a: IpNet = a.parse().unwrap();
                        if !l.addrs.contains(&a) {
                            l.addrs.push(a);
                        }
                    }
                }
                let addrs = l.addrs.clone();
                let n = self.ns_mut(ns)?;
                if *up {
                    for a in &addrs {
                        n.add_connected(name, a);
                    }
                } else {
                    n.drop_routes_via(name);
                }
            }
            Op::AddAddr { ns, dev, addr } => {
                let l = self.link_mut(ns, dev)?;
                if l.addrs.contains(addr) {
                    return Err(Error::sys(
                        format!("{addr} is already on link \"{dev}\" in {ns}"),
                        Some(Errno::EEXIST),
                    ));
                }
                l.addrs.push(*addr);
                if l.up {
                    self.ns_mut(ns)?.add_connected(dev, addr);
                }
            }
            Op::DelAddr { ns, dev, addr } => {
                let l = self.link_mut(ns, dev)?;
                let i = l.addrs.iter().position(|a| a == addr).ok_or_else(|| {
                    Error::sys(format!("{addr} is not on link \"{dev}\" in {ns}"), Some(Errno::EADDRNOTAVAIL))
                })?;
                l.addrs.remove(i);
                let still = l.addrs.iter().any(|a| a.trunc() == addr.trunc());
                if !still {
                    let dest = addr.trunc();
                    self.ns_mut(ns)?.routes.retain(|r| {
                        !(r.dest == dest && r.dev.as_deref() == Some(dev) && r.proto == Some(PROTO_KERNEL))
                    });
                }
            }
            Op::SetMaster { ns, dev, master } => {
                if let Some(m) = master {
                    let b = self.ns(ns)?.link(m).ok_or_else(|| no_link(ns, m))?;
                    if b.kind.as_deref() != Some("bridge") {
                        return Err(Error::sys(format!("\"{m}\" in {ns} is not a bridge"), Some(Errno::EOPNOTSUPP)));
                    }
                    if m == dev {
                        return Err(Error::sys(format!("\"{m}\" cannot be its own master"), Some(Errno::ELOOP)));
                    }
                }
                self.link_mut(ns, dev)?.master = master.clone();
            }
            Op::SetMtu { ns, dev, mtu } => self.link_mut(ns, dev)?.mtu = *mtu,
            Op::AddRoute { ns, route } => self.add_route(ns, route)?,
            Op::DelRoute { ns, route } => {
                if let Some(d) = &route.dev {
                    self.ns(ns)?.link(d).ok_or_else(|| no_link(ns, d))?;
                }
                let n = self.ns_mut(ns)?;
                let i = n
                    .routes
                    .iter()
                    .position(|k| Self::route_matches(k, route))
                    .ok_or_else(|| Error::sys(format!("{ns} has no route {route}"), Some(Errno::ESRCH)))?;
                n.routes.remove(i);
            }
            Op::SetSysctl { ns, key, value } => self.set_sysctl(ns, key, value)?,
            Op::FwPolicy { ns, table, chain, target } => {
                firewall::check_policy(table, chain, target)?;
                let c = self.ns_mut(ns)?.table(table).chain(chain).expect("a built-in chain");
                c.policy = Some(target.clone());
            }
            Op::FwAppend { ns, table, chain, rule } => {
                self.fw_chain(ns, table, chain)?.rules.push(rule.clone());
            }
            Op::FwInsert { ns, table, chain, pos, rule } => {
                let c = self.fw_chain(ns, table, chain)?;
                let i = (*pos as usize).saturating_sub(1);
                if i > c.rules.len() {
                    return Err(Error::sys(
                        format!("position {pos} is past the end of chain {chain} ({} rules)", c.rules.len()),
                        Some(Errno::E2BIG),
                    ));
                }
                c.rules.insert(i, rule.clone());
            }
            Op::FwDelete { ns, table, chain, rule } => {
                let c = self.fw_chain(ns, table, chain)?;
                let i = c.rules.iter().position(|r| r == rule).ok_or_else(|| {
                    Error::sys(format!("chain {chain} has no rule {}", join_words(rule)), Some(Errno::ENOENT))
                })?;
                c.rules.remove(i);
            }
            Op::FwNewChain { ns, table, chain } => {
                let t = self.ns_mut(ns)?.table(table);
                if t.chain(chain).is_some() {
                    return Err(Error::sys(format!("table {table} already has a chain {chain}"), Some(Errno::EEXIST)));
                }
                t.chains.push(Chain { name: chain.clone(), policy: None, rules: Vec::new() });
            }
            Op::FwDelChain { ns, table, chain } => {
                let t = self.ns_mut(ns)?.table(table);
                let i =
                    t.chains.iter().position(|c| &c.name == chain && c.policy.is_none()).ok_or_else(|| {
                        Error::sys(format!("table {table} has no chain {chain}"), Some(Errno::ENOENT))
                    })?;
                let used = t
                    .chains
                    .iter()
                    .flat_map(|c| &c.rules)
                    .any(|r| r.windows(2).any(|w| w[0] == "-j" && &w[1] == chain));
                if used {
                    return Err(Error::sys(format!("chain {chain} is still the target of a rule"), Some(Errno::EBUSY)));
                }
                t.chains.remove(i);
            }
            Op::Spawn { .. } => return Err(Error::invalid("a process is started with spawn(), not replayed")),
            Op::Kill { pid, .. } => self.stop(*pid)?,
            // The model starts processes at once; no spawn is ever left unrecorded.
            Op::StopMarked { .. } => return Err(Error::sys("no such process", Some(Errno::ESRCH))),
        }
        Ok(())
    }

    /// Stops a process the script started. `kill PID` would hit a stranger: in a
    /// namespace (which the script made, as every named one of the model) the plan
    /// stops everything there; in the host it can only say so.
    fn stop(&mut self, pid: u32) -> Result<()> {
        let i = self
            .spawned
            .iter()
            .position(|(p, _, _)| *p == pid)
            .ok_or_else(|| Error::sys("no such process (already gone?)", Some(Errno::ESRCH)))?;
        let (_, cmd, ns) = self.spawned.remove(i);
        match &ns {
            NsRef::Named(n) => {
                self.record(Step::Note(format!("stop the process started by `{cmd}` (every process in \"{n}\")")));
                self.record(Step::Change(crate::op::render_stop_all_in(n)));
            }
            NsRef::Host => self.record(Step::Note(format!(
                "stop the process started by `{cmd}` (kill its pid; the plan cannot know it)"
            ))),
        }
        Ok(())
    }

    fn fw_chain(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<&mut Chain> {
        firewall::check_table(table)?;
        self.ns_mut(ns)?
            .table(table)
            .chain(chain)
            .ok_or_else(|| Error::sys(format!("table {table} has no chain {chain} in {ns}"), Some(Errno::ENOENT)))
    }
}

impl Backend for Plan {
    fn apply(&mut self, op: &Op) -> Result<()> {
        match self.apply_inner(op) {
            // A stop is spelled by `stop` itself: the pid is the plan's own invention.
            Ok(()) if matches!(op, Op::Kill { .. }) => Ok(()),
            Ok(()) => {
                self.record(Step::Change(op.render()));
                Ok(())
            }
            Err(Error::Sys { msg, errno }) => Err(Error::Sys { msg: format!("{}: {msg}", op.render()), errno }),
            Err(e) => Err(e),
        }
    }

    fn netns_exists(&mut self, name: &str) -> bool {
        self.nss.contains_key(&NsRef::named(name))
    }

    fn netns_list(&mut self) -> Vec<String> {
        self.nss.keys().filter_map(|n| n.name().map(str::to_string)).collect()
    }

    fn link(&mut self, ns: &NsRef, name: &str) -> Result<Option<LinkInfo>> {
        Ok(self.ns(ns)?.link(name).map(MLink::info))
    }

    fn links(&mut self, ns: &NsRef) -> Result<Vec<LinkInfo>> {
        Ok(self.ns(ns)?.links.iter().map(MLink::info).collect())
    }

    fn find_route(&mut self, ns: &NsRef, r: &Route) -> Result<Option<Route>> {
        let n = self.ns(ns)?;
        if let Some(d) = &r.dev {
            n.link(d).ok_or_else(|| no_link(ns, d))?;
        }
        Ok(n.routes.iter().find(|k| Self::route_matches(k, r)).cloned())
    }

    fn sysctl_get(&mut self, ns: &NsRef, key: &str) -> Result<String> {
        self.sysctl_value(ns, key)
    }

    fn fw_policy(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<String> {
        firewall::check_table(table)?;
        Ok(self.ns_mut(ns)?.table(table).chain(chain).and_then(|c| c.policy.clone()).unwrap_or_else(|| "ACCEPT".into()))
    }

    fn fw_rules(&mut self, ns: &NsRef, table: &str, chain: Option<&str>) -> Result<Vec<String>> {
        firewall::check_table(table)?;
        let t = self.ns_mut(ns)?.table(table);
        if let Some(c) = chain
            && t.chain(c).is_none()
        {
            return Err(Error::sys(format!("table {table} has no chain {c} in {ns}"), Some(Errno::ENOENT)));
        }
        Ok(t.lines(chain))
    }

    fn fw_exists(&mut self, ns: &NsRef, table: &str, chain: &str, rule: &[String]) -> Result<bool> {
        Ok(self.fw_chain(ns, table, chain)?.rules.iter().any(|r| r == rule))
    }

    fn fw_chain_exists(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<bool> {
        firewall::check_table(table)?;
        Ok(self.ns_mut(ns)?.table(table).chain(chain).is_some())
    }

    fn exec(&mut self, ns: &NsRef, _argv: &[String], _timeout: Option<Duration>) -> Result<ExecResult> {
        self.ns(ns)?;
        Ok(ExecResult { code: 0, stdout: String::new(), stderr: String::new(), timed_out: false })
    }

    fn spawn(&mut self, ns: &NsRef, argv: &[String], _mark: &str) -> Result<(u32, u64)> {
        self.ns(ns)?;
        let pid = self.next_pid;
        self.next_pid += 1;
        let line = Op::Spawn { ns: ns.clone(), cmd: argv.to_vec(), pid, start: 0, mark: String::new() }.render();
        self.spawned.push((pid, line.trim_end_matches(" &").to_string(), ns.clone()));
        self.record(Step::Change(line));
        Ok((pid, 0))
    }

    fn wait(&mut self, pid: u32) -> Result<i32> {
        // The model's processes end at once, successfully.
        if !self.spawned.iter().any(|(p, _, _)| *p == pid) {
            return Err(Error::invalid(format!(
                "process {pid} was not started by this run (or was already waited for)"
            )));
        }
        self.spawned.retain(|(p, _, _)| *p != pid);
        Ok(0)
    }

    fn ping(&mut self, ns: &NsRef, addr: IpAddr, _count: u32, _timeout: Duration) -> Result<bool> {
        self.ns(ns)?;
        Ok(self.reaches(ns, addr, None))
    }

    /// Something listens on every port of the model: the answer is whether the
    /// connection gets there and back.
    fn tcp(&mut self, ns: &NsRef, addr: IpAddr, port: u16, _timeout: Duration) -> Result<bool> {
        self.ns(ns)?;
        Ok(self.reaches(ns, addr, Some(port)))
    }

    fn describe(&self) -> String {
        "plan (a model of the system; nothing is changed)".into()
    }

    fn routes(&mut self, ns: &NsRef) -> Result<Vec<Route>> {
        Ok(self.ns(ns)?.routes.clone())
    }

    fn alive(&mut self, pid: u32, _start: u64) -> bool {
        self.spawned.iter().any(|(p, _, _)| *p == pid)
    }

    fn set_origin(&mut self, origin: &dyn Fn() -> String) {
        self.origin = origin();
    }

    fn note_read(&mut self, probe: &Probe, answer: &str) {
        self.record(Step::Read(format!("{}   -> {answer}", probe.render())));
    }
}

/// `netscript plan`: the script against a model of the system; prints the commands.
/// Needs no root and touches nothing (no sandbox, no kernel, no state dir).
pub fn command(opts: &RunOpts, undo: bool, script: &Path, args: &[String]) -> Result<u8> {
    let topo = crate::app::topo_name(opts, script);
    crate::model::check_name("topology", &topo)?;
    if !script.is_file() {
        return Err(Error::invalid(format!("no such script: {}", script.display())));
    }
    let model = Plan::new(&mark_for(&topo));
    let rec = model.recording();
    let journal =
        Journal::in_memory(Meta { name: topo.clone(), script: script.display().to_string(), ..Meta::default() });
    let cancel = Arc::new(AtomicBool::new(false));
    let session = Rc::new(RefCell::new(Session::new(Box::new(model), journal, &topo, cancel.clone())));
    let lua = lua::new_lua(session.clone(), &topo, Some(script), args, cancel)
        .and_then(|l| lua::output_to_stderr(&l).map(|()| l))
        .map_err(|e| Error::sys(format!("cannot start Lua: {e}"), None))?;
    let result = lua::run_file(&lua, script, args);
    drop(lua);
    if let Some(msg) = lua::failure(&result, false) {
        eprintln!("netscript: {msg}");
        let n = session.borrow().journal().live_count();
        eprintln!("netscript: plan: the script failed after {n} change(s); a real run failing here rolls them back");
        return Ok(crate::app::EXIT_FAILED);
    }
    let what = if undo { "undo what" } else { "do what" };
    let header = vec![
        format!(
            "netscript plan{}: the commands that {what} `netscript {}` does (topology \"{topo}\").",
            if undo { " --undo" } else { "" },
            script.display()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A default route through `gw`.
    fn default_via(gw: &str) -> Route {
        Route {
            dest: "0.0.0.0/0".parse().unwrap(),
            via: Some(gw.parse().unwrap()),
            dev: None,
            metric: None,
            proto: None,
            scope: None,
            src: None,
        }
    }
    use crate::journal::{Journal, Meta};
    use crate::model::split_words;
    use crate::session::Session;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    fn session() -> (Session, RecordingRef) {
        let p = Plan::new("netscript:t");
        let rec = p.recording();
        let j = Journal::in_memory(Meta { name: "t".into(), ..Default::default() });
        (Session::new(Box::new(p), j, "t", Arc::new(AtomicBool::new(false))), rec)
    }

    #[test]
    fn models_the_article() {
        let (mut s, rec) = session();
        let ns1 = s.netns_add("ns1").unwrap();
        s.veth_add("veth0", "veth_ns_1", &NsRef::Host, &NsRef::Host).unwrap();
        s.link_move(&NsRef::Host, "veth0", &ns1).unwrap();
        s.link_addr(&ns1, "veth0", "175.18.0.2/24".parse().unwrap()).unwrap();
        s.link_set_up(&ns1, "veth0", true).unwrap();
        s.link_set_up(&ns1, "lo", true).unwrap();
        let r = default_via("175.18.0.1");
        s.route_add(&ns1, r).unwrap();
        assert_eq!(s.sysctl_set(&NsRef::Host, "net.ipv4.ip_forward", "1").unwrap(), "0");
        assert_eq!(s.sysctl_get(&NsRef::Host, "net.ipv4.conf.all.forwarding").unwrap(), "1");
        s.fw_append(&NsRef::Host, "nat", "POSTROUTING", "-s 175.18.0.0/24 -j MASQUERADE").unwrap();
        assert_eq!(
            rec.borrow().commands(),
            vec![
                "ip netns add ns1",
                "ip link add veth0 type veth peer name veth_ns_1",
                "ip link set veth0 netns ns1",
                "ip -n ns1 addr add 175.18.0.2/24 dev veth0",
                "ip -n ns1 link set veth0 up",
                "ip -n ns1 link set lo up",
                "ip -n ns1 route add default via 175.18.0.1",
                "sysctl -w net.ipv4.ip_forward=1",
                "iptables -t nat -A POSTROUTING -m comment --comment netscript:t -s 175.18.0.0/24 -j MASQUERADE",
            ]
        );
        let lo = s.link(&ns1, "lo").unwrap();
        assert!(lo.addrs.contains(&"127.0.0.1/8".parse().unwrap()));
    }

    #[test]
    fn kernel_facts() {
        let (mut s, _) = session();
        let ns1 = s.netns_add("ns1").unwrap();
        s.veth_add("a", "b", &NsRef::Host, &ns1).unwrap();
        s.link_addr(&NsRef::Host, "a", "10.0.0.1/24".parse().unwrap()).unwrap();
        s.link_set_up(&NsRef::Host, "a", true).unwrap();
        assert!(
            s.backend()
                .find_route(
                    &NsRef::Host,
                    &Route {
                        dest: "10.0.0.0/24".parse().unwrap(),
                        via: None,
                        dev: None,
                        metric: None,
                        proto: None,
                        scope: None,
                        src: None
                    }
                )
                .unwrap()
                .is_some()
        );
        // A gateway nobody reaches is refused, as the kernel does.
        let r = default_via("10.9.0.1");
        let e = s.route_add(&NsRef::Host, r).unwrap_err().to_string();
        assert!(e.contains("10.9.0.1") && e.contains("not on any link"), "{e}");
        // Moving drops addresses and takes the link down.
        s.link_move(&NsRef::Host, "a", &ns1).unwrap();
        let a = s.link(&ns1, "a").unwrap();
        assert!(!a.up && a.addrs.is_empty());
        // Deleting the namespace deletes both ends.
        s.netns_del("ns1").unwrap();
        assert!(s.backend().link(&NsRef::Host, "b").unwrap().is_none());
        assert!(s.backend().link(&NsRef::Host, "a").unwrap().is_none());
        // Forwarding: one switch, per namespace, inherited by new links.
        let ns2 = s.netns_add("ns2").unwrap();
        s.sysctl_set(&NsRef::Host, "net.ipv4.ip_forward", "1").unwrap();
        s.bridge_add("br9", &NsRef::Host).unwrap();
        assert_eq!(s.sysctl_get(&NsRef::Host, "net.ipv4.conf.br9.forwarding").unwrap(), "1");
        assert_eq!(s.sysctl_get(&ns2, "net.ipv4.ip_forward").unwrap(), "0");
        let e = s.sysctl_get(&ns2, "net.ipv4.conf.br9.forwarding").unwrap_err().to_string();
        assert!(e.contains("no link named \"br9\""), "{e}");
    }

    #[test]
    fn undo_is_newest_first_with_the_firewall_last() {
        let (mut s, rec) = session();
        let ns1 = s.netns_add("ns1").unwrap();
        s.veth_add("a", "b", &NsRef::Host, &ns1).unwrap();
        s.fw_policy(&NsRef::Host, "filter", "FORWARD", "DROP").unwrap();
        rec.borrow_mut().steps.clear();
        let report = s.rollback();
        assert!(report.complete());
        // The session sends firewall undos together, after the rest.
        assert_eq!(
            rec.borrow().commands(),
            vec!["ip link del a", "ip netns del ns1", "iptables -t filter -P FORWARD ACCEPT"]
        );
    }

    #[test]
    fn pings_follow_routes_bridges_filters_and_nat() {
        let (mut s, _) = session();
        let h = NsRef::Host;
        let addr = |x: &str| -> IpNet { x.parse().unwrap() };
        let ip = |x: &str| -> IpAddr { x.parse().unwrap() };
        let t = Duration::from_secs(1);
        s.bridge_add("br", &h).unwrap();
        s.link_addr(&h, "br", addr("10.0.0.1/24")).unwrap();
        s.link_set_up(&h, "br", true).unwrap();
        for i in 1..=2 {
            let ns = s.netns_add(&format!("c{i}")).unwrap();
            s.veth_add("eth0", &format!("p{i}"), &ns, &h).unwrap();
            s.link_addr(&ns, "eth0", addr(&format!("10.0.0.{}/24", i + 1))).unwrap();
            s.link_set_up(&ns, "eth0", true).unwrap();
            s.link_master(&h, &format!("p{i}"), Some("br")).unwrap();
            s.link_set_up(&h, &format!("p{i}"), true).unwrap();
            let r = default_via("10.0.0.1");
            s.route_add(&ns, r).unwrap();
        }
        // An outside world with no route back to 10.0.0.0/24.
        let w = s.netns_add("world").unwrap();
        s.veth_add("up0", "eth0", &h, &w).unwrap();
        s.link_addr(&h, "up0", addr("192.168.1.1/24")).unwrap();
        s.link_set_up(&h, "up0", true).unwrap();
        s.link_addr(&w, "eth0", addr("192.168.1.2/24")).unwrap();
        s.link_set_up(&w, "eth0", true).unwrap();
        let c1 = NsRef::named("c1");
        assert!(s.ping(&c1, ip("10.0.0.3"), 1, t).unwrap(), "across the bridge");
        assert!(s.ping(&h, ip("10.0.0.2"), 1, t).unwrap(), "host to container");
        assert!(!s.ping(&c1, ip("192.168.1.2"), 1, t).unwrap(), "no forwarding yet");
        s.sysctl_set(&h, "net.ipv4.ip_forward", "1").unwrap();
        assert!(!s.ping(&c1, ip("192.168.1.2"), 1, t).unwrap(), "no route back");
        s.fw_append(&h, "nat", "POSTROUTING", "-s 10.0.0.0/24 -o up0 -j MASQUERADE").unwrap();
        assert!(s.ping(&c1, ip("192.168.1.2"), 1, t).unwrap(), "masqueraded");
        s.fw_policy(&h, "filter", "FORWARD", "DROP").unwrap();
        assert!(!s.ping(&c1, ip("10.0.0.3"), 1, t).unwrap(), "bridged traffic passes FORWARD");
        s.fw_append(&h, "filter", "FORWARD", "-i br -j ACCEPT").unwrap();
        assert!(s.ping(&c1, ip("10.0.0.3"), 1, t).unwrap());
        assert!(!s.ping(&c1, ip("192.168.1.2"), 1, t).unwrap(), "the reply comes in from up0");
        s.fw_append(&h, "filter", "FORWARD", "-o br -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT").unwrap();
        assert!(s.ping(&c1, ip("192.168.1.2"), 1, t).unwrap());
        // A published port, from outside and from 127.0.0.1.
        s.fw_append(&h, "nat", "PREROUTING", "-p tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80").unwrap();
        assert!(!s.tcp(&w, ip("192.168.1.1"), 8080, t).unwrap(), "FORWARD drops it");
        s.fw_append(&h, "filter", "FORWARD", "-d 10.0.0.2/32 ! -i br -o br -p tcp -m tcp --dport 80 -j ACCEPT")
            .unwrap();
        assert!(s.tcp(&w, ip("192.168.1.1"), 8080, t).unwrap());
        s.fw_append(&h, "nat", "OUTPUT", "-d 127.0.0.0/8 -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80")
            .unwrap();
        assert!(!s.tcp(&h, ip("127.0.0.1"), 8080, t).unwrap(), "127.0.0.1 may not leave lo");
        s.sysctl_set(&h, "net.ipv4.conf.br.route_localnet", "1").unwrap();
        assert!(!s.tcp(&h, ip("127.0.0.1"), 8080, t).unwrap(), "the reply goes to the container's own 127.0.0.1");
        s.fw_append(&h, "nat", "POSTROUTING", "-s 127.0.0.0/8 -o br -j MASQUERADE").unwrap();
        assert!(s.tcp(&h, ip("127.0.0.1"), 8080, t).unwrap());
        assert!(!s.tcp(&c1, ip("127.0.0.1"), 80, t).unwrap(), "lo is down in c1");
        s.link_set_up(&c1, "lo", true).unwrap();
        assert!(s.tcp(&c1, ip("127.0.0.1"), 80, t).unwrap());
    }

    #[test]
    fn comments_stay_comments() {
        let r = Recording {
            steps: vec![
                ("t.lua:1".into(), Step::Read("sh -c 'echo a\necho b'".into())),
                ("t.lua:1".into(), Step::Change("sh -c 'x\ny' &".into())),
            ],
        };
        let s = r.script(&["head".into()]);
        assert_eq!(
            s,
            "#!/bin/bash\n# head\nset -e\n\n# t.lua:1\n# (reads) sh -c 'echo a\n#   echo b'\nsh -c 'x\ny' &\n"
        );
    }

    #[test]
    fn rules_read_back_as_iptables_prints_them() {
        let (mut s, _) = session();
        s.fw_chain(&NsRef::Host, "filter", "MINE").unwrap();
        s.fw_append(&NsRef::Host, "filter", "MINE", "-j ACCEPT").unwrap();
        let r = s.fw_rules(&NsRef::Host, "filter").unwrap();
        assert_eq!(r[0], "-P INPUT ACCEPT");
        assert_eq!(r[3], "-N MINE");
        assert_eq!(
            split_words(r[4].splitn(3, ' ').nth(2).unwrap()).unwrap(),
            vec!["-m", "comment", "--comment", "netscript:t", "-j", "ACCEPT"]
        );
    }
}
