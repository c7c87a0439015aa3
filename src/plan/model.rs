//! The plan's model of the system: namespaces, links, addresses, routes, sysctls and
//! iptables tables, and how each `Op` changes it (`Plan::apply_inner`), mimicking the
//! kernel where a script would notice.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use nix::errno::Errno;

use super::{PROTO_KERNEL, Plan, SCOPE_LINK, Step};
use crate::backend::LinkInfo;
use crate::error::{Error, Result};
use crate::firewall::{self, Family};
use crate::model::{NsRef, ROUTE_PROTO, Route, join_words};
use crate::op::Op;

#[derive(Clone, Debug)]
pub(super) struct MLink {
    pub(super) name: String,
    pub(super) kind: Option<String>,
    pub(super) up: bool,
    pub(super) master: Option<String>,
    pub(super) mtu: u32,
    pub(super) alias: Option<String>,
    pub(super) addrs: Vec<IpNet>,
    /// The IPv6 addresses of `addrs` added with nodad.
    pub(super) nodad: Vec<IpNet>,
    /// The addresses of `addrs` with a protocol, with it.
    pub(super) protos: Vec<(IpNet, u8)>,
    /// The other end of a veth pair.
    pub(super) peer: Option<(NsRef, String)>,
    /// The root qdisc netscript set (None: the kernel's default).
    pub(super) qdisc: Option<crate::qdisc::Qdisc>,
    /// A bridge's options, a bridge port's flags (as set; unset ones read as the
    /// kernel's defaults).
    pub(super) bridge: crate::op::BridgeOpts,
    pub(super) port: crate::op::PortFlags,
    /// A vxlan's id, port, local and remote address: the plan's packet walk joins two
    /// vxlan links whose ends match (the underlay between them is not modelled).
    pub(super) vxlan: Option<(u32, u16, Option<IpAddr>, Option<IpAddr>)>,
}

impl MLink {
    pub(super) fn new(name: &str, kind: &str, alias: &str) -> Self {
        MLink {
            name: name.into(),
            kind: Some(kind.into()),
            up: false,
            master: None,
            mtu: 1500,
            alias: Some(alias.into()),
            addrs: Vec::new(),
            nodad: Vec::new(),
            protos: Vec::new(),
            peer: None,
            qdisc: None,
            bridge: Default::default(),
            port: Default::default(),
            vxlan: None,
        }
    }

    pub(super) fn info(&self) -> LinkInfo {
        LinkInfo {
            name: self.name.clone(),
            up: self.up,
            master: self.master.clone(),
            mtu: self.mtu,
            kind: self.kind.clone(),
            alias: self.alias.clone(),
            addrs: self.addrs.clone(),
            nodad: self.nodad.clone(),
            protos: self.protos.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Chain {
    pub(super) name: String,
    /// Built-in chains have a policy; user chains do not.
    pub(super) policy: Option<String>,
    pub(super) rules: Vec<Vec<String>>,
}

#[derive(Clone, Debug)]
pub(super) struct Table {
    pub(super) chains: Vec<Chain>,
}

impl Table {
    pub(super) fn new(table: &str) -> Self {
        let chains = firewall::builtin_chains(table)
            .iter()
            .map(|c| Chain { name: c.to_string(), policy: Some("ACCEPT".into()), rules: Vec::new() })
            .collect();
        Table { chains }
    }

    pub(super) fn chain(&mut self, name: &str) -> Option<&mut Chain> {
        self.chains.iter_mut().find(|c| c.name == name)
    }

    /// As `iptables -t TABLE -S [CHAIN]` prints it.
    pub(super) fn lines(&self, only: Option<&str>) -> Vec<String> {
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

/// A namespace's links in the order they came, found by name through an index (a
/// plan of thousands of containers looks links up by name on every step). A link's
/// name does not change in the model (no change renames one).
#[derive(Clone, Debug, Default)]
pub(super) struct Links {
    list: Vec<MLink>,
    at: HashMap<String, usize>,
}

impl Links {
    pub(super) fn push(&mut self, l: MLink) {
        self.at.insert(l.name.clone(), self.list.len());
        self.list.push(l);
    }

    pub(super) fn get(&self, name: &str) -> Option<&MLink> {
        self.at.get(name).map(|&i| &self.list[i])
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut MLink> {
        self.at.get(name).map(|&i| &mut self.list[i])
    }

    /// Takes a link out; the ones after it keep their order.
    pub(super) fn remove(&mut self, name: &str) -> Option<MLink> {
        let i = self.at.remove(name)?;
        let l = self.list.remove(i);
        for (k, m) in self.list.iter().enumerate().skip(i) {
            *self.at.get_mut(m.name.as_str()).expect("every link is indexed") = k;
        }
        Some(l)
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, MLink> {
        self.list.iter()
    }

    pub(super) fn iter_mut(&mut self) -> std::slice::IterMut<'_, MLink> {
        self.list.iter_mut()
    }
}

impl IntoIterator for Links {
    type Item = MLink;
    type IntoIter = std::vec::IntoIter<MLink>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl<'a> IntoIterator for &'a Links {
    type Item = &'a MLink;
    type IntoIter = std::slice::Iter<'a, MLink>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[derive(Clone, Debug)]
pub(super) struct Netns {
    pub(super) links: Links,
    /// The main routing table.
    pub(super) routes: Vec<Route>,
    /// Sysctls this plan set (others read as their defaults).
    pub(super) sysctls: BTreeMap<String, String>,
    pub(super) tables: BTreeMap<String, Table>,
    /// The ip6tables tables (empty until a script writes IPv6 rules).
    pub(super) tables6: BTreeMap<String, Table>,
}

impl Netns {
    /// A new namespace: only `lo`, down, without addresses.
    pub(super) fn fresh() -> Self {
        // As the kernel makes it: no kind, no alias, the loopback MTU.
        let lo = MLink { kind: None, alias: None, mtu: 65536, ..MLink::new("lo", "", "") };
        let mut links = Links::default();
        links.push(lo);
        Netns { links, routes: Vec::new(), sysctls: BTreeMap::new(), tables: BTreeMap::new(), tables6: BTreeMap::new() }
    }

    pub(super) fn link(&self, name: &str) -> Option<&MLink> {
        self.links.get(name)
    }

    pub(super) fn link_mut(&mut self, name: &str) -> Option<&mut MLink> {
        self.links.get_mut(name)
    }

    /// A table of the iptables (IPv4) or ip6tables (IPv6) rule set.
    pub(super) fn table(&mut self, fam: Family, table: &str) -> &mut Table {
        let tables = match fam {
            Family::Ipv4 => &mut self.tables,
            Family::Ipv6 => &mut self.tables6,
        };
        tables.entry(table.to_string()).or_insert_with(|| Table::new(table))
    }

    /// The connected route an address brings (None for a host address).
    pub(super) fn connected_route(dev: &str, a: &IpNet) -> Option<Route> {
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

    pub(super) fn add_connected(&mut self, dev: &str, a: &IpNet) {
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
    pub(super) fn drop_routes_via(&mut self, dev: &str) {
        self.routes.retain(|r| r.dev.as_deref() != Some(dev));
    }

    /// The kernel drops a link's IPv6 addresses (link down, disable_ipv6) and so the
    /// IPv6 routes through it.
    pub(super) fn flush_v6(&mut self, dev: &str) {
        if let Some(l) = self.link_mut(dev) {
            l.addrs.retain(|a| a.addr().is_ipv4());
            l.nodad.clear();
            l.protos.retain(|(a, _)| a.addr().is_ipv4());
        }
        self.routes.retain(|r| !(r.dest.addr().is_ipv6() && r.dev.as_deref() == Some(dev)));
    }

    /// Takes a link out of this namespace (deleted or moved): its routes go, the
    /// ports of a bridge are released. Returns the link.
    pub(super) fn take_link(&mut self, name: &str) -> Option<MLink> {
        let l = self.links.remove(name)?;
        self.drop_routes_via(name);
        for p in self.links.iter_mut().filter(|p| p.master.as_deref() == Some(name)) {
            p.master = None;
        }
        Some(l)
    }
}

/// The default of a sysctl in a fresh namespace, for the keys scripts use.
pub(super) fn sysctl_default(key: &str) -> Option<&'static str> {
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

pub(super) fn no_ns(ns: &NsRef) -> Error {
    Error::sys(format!("{ns} does not exist"), Some(Errno::ENOENT))
}

pub(super) fn no_link(ns: &NsRef, name: &str) -> Error {
    Error::sys(format!("no link named \"{name}\" in {ns}"), Some(Errno::ENODEV))
}

impl Plan {
    pub(super) fn ns(&self, ns: &NsRef) -> Result<&Netns> {
        self.nss.get(ns).ok_or_else(|| no_ns(ns))
    }

    pub(super) fn ns_mut(&mut self, ns: &NsRef) -> Result<&mut Netns> {
        self.nss.get_mut(ns).ok_or_else(|| no_ns(ns))
    }

    pub(super) fn link_mut(&mut self, ns: &NsRef, name: &str) -> Result<&mut MLink> {
        self.ns_mut(ns)?.link_mut(name).ok_or_else(|| no_link(ns, name))
    }

    pub(super) fn require_free(&self, ns: &NsRef, name: &str) -> Result<()> {
        if self.ns(ns)?.link(name).is_some() {
            return Err(Error::sys(format!("a link named \"{name}\" already exists in {ns}"), Some(Errno::EEXIST)));
        }
        Ok(())
    }

    /// Deletes a link and, for a veth, its peer (wherever that is).
    pub(super) fn delete_link(&mut self, ns: &NsRef, name: &str) -> Result<()> {
        let l = self.ns_mut(ns)?.take_link(name).ok_or_else(|| no_link(ns, name))?;
        if let Some((pns, pname)) = l.peer
            && let Some(n) = self.nss.get_mut(&pns)
        {
            n.take_link(&pname);
        }
        Ok(())
    }

    /// Points the peer of a veth end at the end's new place.
    pub(super) fn repoint_peer(&mut self, l: &MLink, ns: &NsRef) {
        if let Some((pns, pname)) = &l.peer
            && let Some(p) = self.nss.get_mut(pns).and_then(|n| n.link_mut(pname))
        {
            p.peer = Some((ns.clone(), l.name.clone()));
        }
    }

    pub(super) fn check_sysctl(&self, ns: &NsRef, key: &str) -> Result<()> {
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

    pub(super) fn sysctl_value(&self, ns: &NsRef, key: &str) -> Result<String> {
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

    pub(super) fn set_sysctl(&mut self, ns: &NsRef, key: &str, value: &str) -> Result<()> {
        self.check_sysctl(ns, key)?;
        let k = key.replace('/', ".");
        let links: Vec<String> = self.ns(ns)?.links.iter().map(|l| l.name.clone()).collect();
        let n = self.ns_mut(ns)?;
        // ip_forward and conf.all.forwarding are one switch: writing either sets
        // forwarding on every link (and the default for new ones).
        if k == "net.ipv4.ip_forward" || k == "net.ipv4.conf.all.forwarding" {
            n.sysctls.insert("net.ipv4.ip_forward".into(), value.into());
            for d in ["all".to_string(), "default".to_string()].into_iter().chain(links.iter().cloned()) {
                n.sysctls.insert(format!("net.ipv4.conf.{d}.forwarding"), value.into());
            }
        } else if let Some(leaf @ ("forwarding" | "disable_ipv6")) = k.strip_prefix("net.ipv6.conf.all.") {
            // IPv6 propagates these two from "all" to every link and the default.
            for d in ["all".to_string(), "default".to_string()].into_iter().chain(links.iter().cloned()) {
                n.sysctls.insert(format!("net.ipv6.conf.{d}.{leaf}"), value.into());
            }
        } else {
            n.sysctls.insert(k.clone(), value.into());
        }
        // Disabling IPv6 on a link drops its IPv6 addresses (and their routes).
        if value.trim() == "1"
            && let Some(dev) = k.strip_prefix("net.ipv6.conf.").and_then(|r| r.strip_suffix(".disable_ipv6"))
        {
            let devs = if dev == "all" { links } else { vec![dev.to_string()] };
            for d in devs.iter().filter(|d| d.as_str() != "default") {
                n.flush_v6(d);
            }
        }
        Ok(())
    }

    /// The route a gateway is reached by: a link-scope route containing it.
    pub(super) fn gateway_dev(&self, ns: &NsRef, via: IpAddr, dev: Option<&str>) -> Result<Option<String>> {
        let n = self.ns(ns)?;
        let found = n.routes.iter().find(|r| {
            r.via.is_none()
                && r.dest.contains(&via)
                && dev.is_none_or(|d| r.dev.as_deref() == Some(d))
                && r.dev.as_deref().and_then(|d| n.link(d)).is_some_and(|l| l.up)
        });
        Ok(found.and_then(|r| r.dev.clone()))
    }

    pub(super) fn add_route(&mut self, ns: &NsRef, route: &Route) -> Result<()> {
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
        let metric = route.named_metric();
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

    pub(super) fn apply_inner(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::AddNetns { name } => {
                let ns = NsRef::named(name.clone());
                if self.nss.contains_key(&ns) {
                    return Err(Error::sys(format!("{ns} already exists"), Some(Errno::EEXIST)));
                }
                self.nss.insert(ns, Netns::fresh());
            }
            Op::DelNetns { name, .. } => {
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
            Op::AddVeth { ns, name, peer, peer_ns, .. } => {
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
            Op::AddLink { ns, name, link, from } => {
                // As the kernel where the plan is made would answer.
                if crate::sys::kconfig::lacks(crate::sys::kconfig::link_kind_option(link.name()).0) {
                    let msg = crate::sys::kconfig::missing_link_kind(link.name());
                    return Err(Error::sys(msg, Some(Errno::EOPNOTSUPP)));
                }
                self.ns(ns)?;
                self.require_free(ns, name)?;
                if let Some(p) = link.lower() {
                    self.ns(from)?.link(p).ok_or_else(|| no_link(from, p))?;
                }
                let mut l = MLink::new(name, link.name(), &self.mark);
                if let crate::op::LinkKind::Vxlan { id, remote, local, port, .. } = link {
                    l.vxlan = Some((*id, *port, *local, *remote));
                }
                self.ns_mut(ns)?.links.push(l);
            }
            Op::SetBridge { ns, name, opts } => {
                let l = self.link_mut(ns, name)?;
                if l.kind.as_deref() != Some("bridge") {
                    return Err(Error::sys(format!("\"{name}\" in {ns} is not a bridge"), Some(Errno::EOPNOTSUPP)));
                }
                if opts.vlan_filtering == Some(true) && crate::sys::kconfig::lacks("CONFIG_BRIDGE_VLAN_FILTERING") {
                    return Err(Error::sys(crate::sys::kconfig::NO_VLAN_FILTERING, Some(Errno::EOPNOTSUPP)));
                }
                l.bridge.vlan_filtering = opts.vlan_filtering.or(l.bridge.vlan_filtering);
                l.bridge.stp = opts.stp.or(l.bridge.stp);
            }
            Op::SetBridgePort { ns, dev, flags } => {
                let l = self.link_mut(ns, dev)?;
                if l.master.is_none() {
                    return Err(Error::sys(
                        format!("link \"{dev}\" in {ns} is not a bridge port"),
                        Some(Errno::EINVAL),
                    ));
                }
                let p = &mut l.port;
                p.hairpin = flags.hairpin.or(p.hairpin);
                p.isolated = flags.isolated.or(p.isolated);
                p.learning = flags.learning.or(p.learning);
                p.flood = flags.flood.or(p.flood);
            }
            Op::SetQdisc { ns, dev, qdisc, .. } => {
                let l = self.link_mut(ns, dev)?;
                if crate::sys::kconfig::lacks(&format!("CONFIG_NET_SCH_{}", qdisc.kind.to_uppercase())) {
                    let msg = format!("link \"{dev}\": {}", crate::sys::tc::missing_kind(&qdisc.kind));
                    return Err(Error::sys(msg, Some(Errno::EOPNOTSUPP)));
                }
                l.qdisc = Some(qdisc.clone());
            }
            Op::DelQdisc { ns, dev, .. } => self.link_mut(ns, dev)?.qdisc = None,
            Op::DelLink { ns, name, .. } => self.delete_link(ns, name)?,
            Op::MoveLink { ns, name, to } => {
                self.ns(ns)?.link(name).ok_or_else(|| no_link(ns, name))?;
                self.ns(to)?;
                self.require_free(to, name)?;
                let mut l = self.ns_mut(ns)?.take_link(name).expect("checked");
                l.up = false;
                l.addrs.clear();
                l.nodad.clear();
                l.protos.clear();
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
                    // The kernel flushes a link's IPv6 addresses when it goes down
                    // (keep_addr_on_down is 0 by default).
                    n.flush_v6(name);
                }
            }
            Op::AddAddr { ns, dev, addr, nodad, proto } => {
                let l = self.link_mut(ns, dev)?;
                if l.addrs.contains(addr) {
                    return Err(Error::sys(
                        format!("{addr} is already on link \"{dev}\" in {ns}"),
                        Some(Errno::EEXIST),
                    ));
                }
                l.addrs.push(*addr);
                if *nodad && addr.addr().is_ipv6() {
                    l.nodad.push(*addr);
                }
                if let Some(p) = proto.filter(|p| *p != 0) {
                    l.protos.push((*addr, p));
                }
                if l.up {
                    self.ns_mut(ns)?.add_connected(dev, addr);
                }
            }
            Op::DelAddr { ns, dev, addr, proto } => {
                let l = self.link_mut(ns, dev)?;
                let i = l.addrs.iter().position(|a| a == addr).ok_or_else(|| {
                    Error::sys(format!("{addr} is not on link \"{dev}\" in {ns}"), Some(Errno::EADDRNOTAVAIL))
                })?;
                let have = l.protos.iter().find(|(a, _)| a == addr).map_or(0, |(_, p)| *p);
                crate::model::addr_owned(ns, dev, addr, *proto, have)?;
                l.addrs.remove(i);
                l.nodad.retain(|a| a != addr);
                l.protos.retain(|(a, _)| a != addr);
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
                let l = self.link_mut(ns, dev)?;
                if l.master != *master {
                    // A port's flags belong to its place on a bridge.
                    l.port = Default::default();
                }
                l.master = master.clone();
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
                    .position(|k| k.matches(route))
                    .ok_or_else(|| Error::sys(format!("{ns} has no route {route}"), Some(Errno::ESRCH)))?;
                n.routes.remove(i);
            }
            Op::SetSysctl { ns, key, value } => self.set_sysctl(ns, key, value)?,
            Op::FwPolicy { ns, family, table, chain, target } => {
                firewall::check_policy(table, chain, target)?;
                let c = self.ns_mut(ns)?.table(*family, table).chain(chain).expect("a built-in chain");
                c.policy = Some(target.clone());
            }
            Op::FwAppend { ns, family, table, chain, rule } => {
                self.fw_chain(ns, *family, table, chain)?.rules.push(rule.clone());
            }
            Op::FwInsert { ns, family, table, chain, pos, rule } => {
                let c = self.fw_chain(ns, *family, table, chain)?;
                let i = (*pos as usize).saturating_sub(1);
                if i > c.rules.len() {
                    return Err(Error::sys(
                        format!("position {pos} is past the end of chain {chain} ({} rules)", c.rules.len()),
                        Some(Errno::E2BIG),
                    ));
                }
                c.rules.insert(i, rule.clone());
            }
            Op::FwDelete { ns, family, table, chain, rule } => {
                let c = self.fw_chain(ns, *family, table, chain)?;
                let i = c.rules.iter().position(|r| r == rule).ok_or_else(|| {
                    Error::sys(format!("chain {chain} has no rule {}", join_words(rule)), Some(Errno::ENOENT))
                })?;
                c.rules.remove(i);
            }
            Op::FwNewChain { ns, family, table, chain } => {
                let t = self.ns_mut(ns)?.table(*family, table);
                if t.chain(chain).is_some() {
                    return Err(Error::sys(format!("table {table} already has a chain {chain}"), Some(Errno::EEXIST)));
                }
                t.chains.push(Chain { name: chain.clone(), policy: None, rules: Vec::new() });
            }
            Op::FwDelChain { ns, family, table, chain } => {
                let t = self.ns_mut(ns)?.table(*family, table);
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
            // A trace's temporary table changes nothing the model knows.
            Op::TraceOn { ns, .. } | Op::TraceOff { ns, .. } => {
                self.ns_mut(ns)?;
            }
        }
        Ok(())
    }

    /// Stops a process the script started. `kill PID` would hit a stranger: in a
    /// namespace (which the script made, as every named one of the model) the plan
    /// stops everything there; in the host it can only say so.
    pub(super) fn stop(&mut self, pid: u32) -> Result<()> {
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

    pub(super) fn fw_chain(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<&mut Chain> {
        firewall::check_table(table)?;
        self.ns_mut(ns)?
            .table(fam, table)
            .chain(chain)
            .ok_or_else(|| Error::sys(format!("table {table} has no chain {chain} in {ns}"), Some(Errno::ENOENT)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_found_by_name_in_their_order_after_removals() {
        let mut n = Netns::fresh();
        for name in ["a", "b", "c", "d"] {
            n.links.push(MLink::new(name, "veth", "m"));
        }
        assert!(n.take_link("b").is_some());
        assert!(n.take_link("b").is_none());
        n.links.push(MLink::new("b", "bridge", "m"));
        let names: Vec<&str> = n.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lo", "a", "c", "d", "b"]);
        for name in names {
            assert_eq!(n.link(name).map(|l| l.name.as_str()), Some(name));
        }
        assert_eq!(n.link("b").and_then(|l| l.kind.as_deref()), Some("bridge"));
        n.link_mut("d").expect("d").up = true;
        assert!(n.links.iter().any(|l| l.name == "d" && l.up));
        assert!(n.link("e").is_none());
    }
}
