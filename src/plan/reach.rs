//! Does a ping or a TCP connect get an answer, in the model? A packet walk good
//! enough for the topologies scripts build: routing (longest prefix), veth pairs and
//! bridges, forwarding, the filter table (with bridged traffic passing FORWARD, as
//! br_netfilter does), DNAT / SNAT / MASQUERADE in the nat table, undone for the
//! reply as conntrack does, and route_localnet for 127.0.0.0/8. IPv4 and IPv6 alike:
//! an IPv6 packet follows the IPv6 routes, needs net.ipv6.conf.all.forwarding to be
//! forwarded, passes the ip6tables tables of the model (net.bridge.bridge-nf-call-ip6tables
//! for bridged traffic), and ::1 never leaves lo. The reply must find its way back, so
//! "no route back" is caught.
//!
//! Not modelled: rp_filter, ARP and neighbour discovery, IPv6 link-local addresses (a
//! route through an fe80:: gateway leads nowhere in the model), MTU, rules matching anything but addresses,
//! interfaces, protocol, ports, address types and conntrack state (an unknown match
//! is taken as matching), and whether anything listens on a port (it does).

use std::collections::BTreeMap;
use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;

use super::Plan;
use super::model::Table;
use crate::model::NsRef;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum L4 {
    Icmp,
    Tcp,
}

#[derive(Clone, Debug)]
struct Pkt {
    src: IpAddr,
    dst: IpAddr,
    l4: L4,
    sport: u16,
    dport: u16,
    /// A reply: conntrack says ESTABLISHED and the nat table is not consulted.
    reply: bool,
}

/// A translation made on the way there, undone on the way back.
#[derive(Clone, Debug)]
enum Nat {
    Dnat { ns: NsRef, from: (IpAddr, u16), to: (IpAddr, u16) },
    Snat { ns: NsRef, from: IpAddr, to: IpAddr },
}

enum Verdict {
    Accept,
    Drop,
    /// Fell off the end of a chain (or RETURN).
    Continue,
    Dnat(String),
    Snat(String),
    Masquerade,
}

const MAX_HOPS: usize = 32;

impl Plan {
    /// Would `dst` answer a ping (or a TCP connect to `port`) sent from `ns`?
    pub(super) fn reaches(&self, ns: &NsRef, dst: IpAddr, tcp_port: Option<u16>) -> bool {
        let Some(src) = self.source_for(ns, dst) else { return false };
        let (l4, dport) = match tcp_port {
            Some(p) => (L4::Tcp, p),
            None => (L4::Icmp, 0),
        };
        let mut nats = Vec::new();
        let there = Pkt { src, dst, l4, sport: 40000, dport, reply: false };
        let Some((at, p)) = self.originate(ns, there, &mut nats) else { return false };
        let back = Pkt { src: p.dst, dst: p.src, l4, sport: p.dport, dport: p.sport, reply: true };
        match self.originate(&at, back, &mut nats) {
            Some((home, p)) => &home == ns && p.dst == src,
            None => false,
        }
    }

    /// The addresses of `dev` of the family of `like` (IPv6 link-local ones left out).
    fn fam_addrs(&self, ns: &NsRef, dev: &str, like: IpAddr) -> Vec<IpNet> {
        let Some(l) = self.nss.get(ns).and_then(|n| n.link(dev)) else { return Vec::new() };
        l.addrs.iter().filter(|a| a.addr().is_ipv6() == like.is_ipv6() && !link_local(a.addr())).copied().collect()
    }

    fn is_local(&self, ns: &NsRef, a: IpAddr) -> bool {
        let Some(n) = self.nss.get(ns) else { return false };
        n.links.iter().any(|l| {
            l.addrs
                .iter()
                .any(|x| x.addr() == a || (l.name == "lo" && l.up && a.is_loopback() && a.is_ipv4() && x.contains(&a)))
        })
    }

    /// The route to `dst`: (device, next hop, preferred source).
    fn lookup(&self, ns: &NsRef, dst: IpAddr) -> Option<(String, IpAddr, Option<IpAddr>)> {
        let n = self.nss.get(ns)?;
        let r = n
            .routes
            .iter()
            .filter(|r| r.dest.contains(&dst))
            .filter(|r| r.dev.as_deref().and_then(|d| n.link(d)).is_some_and(|l| l.up))
            .max_by_key(|r| (r.dest.prefix_len(), std::cmp::Reverse(r.metric.unwrap_or(0))))?;
        let nh = match r.via {
            Some(v) if v.is_ipv6() != dst.is_ipv6() => return None,
            Some(v) => v,
            None => dst,
        };
        Some((r.dev.clone()?, nh, r.src.filter(|s| s.is_ipv6() == dst.is_ipv6())))
    }

    /// The source address the kernel picks for a packet to `dst`.
    fn source_for(&self, ns: &NsRef, dst: IpAddr) -> Option<IpAddr> {
        if self.is_local(ns, dst) {
            return Some(dst);
        }
        let (dev, nh, src) = self.lookup(ns, dst)?;
        if src.is_some() {
            return src;
        }
        let addrs = self.fam_addrs(ns, &dev, dst);
        addrs.iter().find(|a| a.contains(&nh)).or(addrs.first()).map(|a| a.addr())
    }

    /// The firewall tables a packet of `p`'s family passes: iptables or ip6tables.
    fn tables(&self, ns: &NsRef, p: &Pkt) -> Option<&BTreeMap<String, Table>> {
        let n = self.nss.get(ns)?;
        Some(if p.dst.is_ipv6() { &n.tables6 } else { &n.tables })
    }

    fn sysctl_is(&self, ns: &NsRef, key: &str, want: &str) -> bool {
        self.sysctl_value(ns, key).is_ok_and(|v| v.trim() == want)
    }

    /// Whether loopback addresses may leave (or arrive on) `dev`: IPv4 with
    /// route_localnet, IPv6 (::1) never.
    fn route_localnet(&self, ns: &NsRef, dev: &str, p: &Pkt) -> bool {
        if p.dst.is_ipv6() {
            return false;
        }
        self.sysctl_is(ns, "net.ipv4.conf.all.route_localnet", "1")
            || self.sysctl_is(ns, &format!("net.ipv4.conf.{dev}.route_localnet"), "1")
    }

    /// A packet made in `ns` (or a reply sent from there).
    fn originate(&self, ns: &NsRef, mut p: Pkt, nats: &mut Vec<Nat>) -> Option<(NsRef, Pkt)> {
        if p.reply {
            p = unnat(ns, p, nats);
        } else {
            p = self.nat(ns, "OUTPUT", p, None, None, nats)?;
        }
        self.route_out(ns, p, None, nats, 0)
    }

    /// Routes a packet out of `ns` (made there when `in_dev` is None, forwarded otherwise).
    fn route_out(
        &self,
        ns: &NsRef,
        mut p: Pkt,
        in_dev: Option<&str>,
        nats: &mut Vec<Nat>,
        hops: usize,
    ) -> Option<(NsRef, Pkt)> {
        if hops > MAX_HOPS {
            return None;
        }
        if self.is_local(ns, p.dst) {
            if in_dev.is_none() {
                self.filter(ns, "OUTPUT", &p, None, Some("lo"))?;
                self.filter(ns, "INPUT", &p, Some("lo"), None)?;
            }
            return Some((ns.clone(), p));
        }
        let (dev, nh, _) = self.lookup(ns, p.dst)?;
        if p.src.is_loopback() && !self.route_localnet(ns, &dev, &p) {
            return None;
        }
        match in_dev {
            Some(i) => {
                let forwarding = if p.dst.is_ipv6() { "net.ipv6.conf.all.forwarding" } else { "net.ipv4.ip_forward" };
                if !self.sysctl_is(ns, forwarding, "1") {
                    return None;
                }
                self.filter(ns, "FORWARD", &p, Some(i), Some(&dev))?;
            }
            None => self.filter(ns, "OUTPUT", &p, None, Some(&dev))?,
        }
        if !p.reply {
            p = self.nat(ns, "POSTROUTING", p, in_dev, Some(&dev), nats)?;
        }
        let (rns, rdev, bridged) = self.l2(ns, &dev, nh)?;
        let nf_call =
            if p.dst.is_ipv6() { "net.bridge.bridge-nf-call-ip6tables" } else { "net.bridge.bridge-nf-call-iptables" };
        for (bns, br) in &bridged {
            if self.sysctl_is(bns, nf_call, "1") {
                self.filter(bns, "FORWARD", &p, Some(br), Some(br))?;
            }
        }
        self.receive(&rns, &rdev, p, nats, hops + 1)
    }

    fn receive(&self, ns: &NsRef, dev: &str, mut p: Pkt, nats: &mut Vec<Nat>, hops: usize) -> Option<(NsRef, Pkt)> {
        if p.reply {
            p = unnat(ns, p, nats);
        } else {
            p = self.nat(ns, "PREROUTING", p, Some(dev), None, nats)?;
        }
        if (p.dst.is_loopback() || p.src.is_loopback()) && !self.route_localnet(ns, dev, &p) {
            return None;
        }
        if self.is_local(ns, p.dst) {
            self.filter(ns, "INPUT", &p, Some(dev), None)?;
            return Some((ns.clone(), p));
        }
        self.route_out(ns, p, Some(dev), nats, hops)
    }

    /// Which interface takes a frame sent out of `dev` to `nh`: through veth pairs
    /// and bridges. Also returns the bridges that forwarded it (port to port).
    #[allow(clippy::type_complexity)]
    fn l2(&self, ns: &NsRef, dev: &str, nh: IpAddr) -> Option<(NsRef, String, Vec<(NsRef, String)>)> {
        enum Hop {
            Out(NsRef, String),
            In(NsRef, String),
            Bridge(NsRef, String, String),
        }
        let has = |n: &NsRef, l: &str| self.fam_addrs(n, l, nh).iter().any(|a| a.addr() == nh);
        let up = |n: &NsRef, l: &str| self.nss.get(n).and_then(|x| x.link(l)).is_some_and(|l| l.up);
        let mut q = VecDeque::from([(Hop::Out(ns.clone(), dev.to_string()), Vec::new())]);
        let mut seen = HashSet::new();
        while let Some((hop, fwd)) = q.pop_front() {
            let key = match &hop {
                Hop::Out(n, l) => (0, n.clone(), l.clone()),
                Hop::In(n, l) => (1, n.clone(), l.clone()),
                Hop::Bridge(n, b, from) => (2, n.clone(), format!("{b}/{from}")),
            };
            if !seen.insert(key) {
                continue;
            }
            match hop {
                Hop::Out(n, l) => {
                    let Some(link) = self.nss.get(&n).and_then(|x| x.link(&l)) else { continue };
                    if !link.up {
                        continue;
                    }
                    if link.kind.as_deref() == Some("bridge") {
                        for p in self.nss[&n].links.iter().filter(|p| p.master.as_deref() == Some(l.as_str())) {
                            q.push_back((Hop::Out(n.clone(), p.name.clone()), fwd.clone()));
                        }
                    } else if let Some((pn, pl)) = &link.peer {
                        q.push_back((Hop::In(pn.clone(), pl.clone()), fwd));
                    } else if let Some((id, port, Some(local), Some(remote))) = link.vxlan {
                        // The other end of a point-to-point vxlan: same id and port,
                        // its local address our remote and the other way round.
                        for (pn, x) in &self.nss {
                            for o in &x.links {
                                if o.vxlan == Some((id, port, Some(remote), Some(local))) {
                                    q.push_back((Hop::In(pn.clone(), o.name.clone()), fwd.clone()));
                                }
                            }
                        }
                    }
                }
                Hop::In(n, l) => {
                    let Some(link) = self.nss.get(&n).and_then(|x| x.link(&l)) else { continue };
                    if !link.up {
                        continue;
                    }
                    match &link.master {
                        Some(b) if up(&n, b) => q.push_back((Hop::Bridge(n.clone(), b.clone(), l.clone()), fwd)),
                        Some(_) => {}
                        None if has(&n, &l) => return Some((n, l, fwd)),
                        None => {}
                    }
                }
                Hop::Bridge(n, b, from) => {
                    if has(&n, &b) {
                        return Some((n, b, fwd));
                    }
                    let mut fwd = fwd;
                    fwd.push((n.clone(), b.clone()));
                    for p in
                        self.nss[&n].links.iter().filter(|p| p.master.as_deref() == Some(b.as_str()) && p.name != from)
                    {
                        q.push_back((Hop::Out(n.clone(), p.name.clone()), fwd.clone()));
                    }
                }
            }
        }
        None
    }

    /// The filter table's verdict: Some(()) when the packet passes.
    fn filter(&self, ns: &NsRef, chain: &str, p: &Pkt, i: Option<&str>, o: Option<&str>) -> Option<()> {
        let policy = self
            .tables(ns, p)?
            .get("filter")
            .and_then(|t| t.chains.iter().find(|c| c.name == chain))
            .and_then(|c| c.policy.clone());
        match self.eval(ns, "filter", chain, p, i, o, 0) {
            Verdict::Drop => None,
            Verdict::Continue if policy.as_deref() == Some("DROP") => None,
            _ => Some(()),
        }
    }

    /// The nat table on a new connection: the packet as it leaves the chain.
    fn nat(
        &self,
        ns: &NsRef,
        chain: &str,
        mut p: Pkt,
        i: Option<&str>,
        o: Option<&str>,
        nats: &mut Vec<Nat>,
    ) -> Option<Pkt> {
        match self.eval(ns, "nat", chain, &p, i, o, 0) {
            Verdict::Dnat(to) => {
                let (ip, port) = parse_to(&to, p.dport)?;
                nats.push(Nat::Dnat { ns: ns.clone(), from: (p.dst, p.dport), to: (ip, port) });
                p.dst = ip;
                p.dport = port;
            }
            Verdict::Snat(to) => {
                let (ip, _) = parse_to(&to, p.sport)?;
                nats.push(Nat::Snat { ns: ns.clone(), from: p.src, to: ip });
                p.src = ip;
            }
            Verdict::Masquerade => {
                let dev = o?;
                let (_, nh, _) = self.lookup(ns, p.dst)?;
                let addrs = self.fam_addrs(ns, dev, p.dst);
                let ip = addrs.iter().find(|a| a.contains(&nh)).or(addrs.first())?.addr();
                nats.push(Nat::Snat { ns: ns.clone(), from: p.src, to: ip });
                p.src = ip;
            }
            _ => {}
        }
        Some(p)
    }

    #[allow(clippy::too_many_arguments)]
    fn eval(
        &self,
        ns: &NsRef,
        table: &str,
        chain: &str,
        p: &Pkt,
        i: Option<&str>,
        o: Option<&str>,
        depth: usize,
    ) -> Verdict {
        let Some(c) =
            self.tables(ns, p).and_then(|t| t.get(table)).and_then(|t| t.chains.iter().find(|c| c.name == chain))
        else {
            return Verdict::Continue;
        };
        if depth > 16 {
            return Verdict::Continue;
        }
        for rule in &c.rules {
            let Some((target, opts)) = self.matches(ns, rule, p, i, o) else { continue };
            let opt = |names: &[&str]| {
                opts.iter()
                    .position(|w| names.contains(&w.as_str()))
                    .and_then(|k| opts.get(k + 1))
                    .cloned()
                    .unwrap_or_default()
            };
            match target.as_str() {
                "ACCEPT" => return Verdict::Accept,
                "DROP" | "REJECT" => return Verdict::Drop,
                "RETURN" => return Verdict::Continue,
                "DNAT" => return Verdict::Dnat(opt(&["--to-destination", "--to"])),
                "SNAT" => return Verdict::Snat(opt(&["--to-source", "--to"])),
                "MASQUERADE" => return Verdict::Masquerade,
                user => match self.eval(ns, table, user, p, i, o, depth + 1) {
                    Verdict::Continue => {}
                    v => return v,
                },
            }
        }
        Verdict::Continue
    }

    /// Whether `rule` matches `p`; if so its target and the target's options.
    fn matches(
        &self,
        ns: &NsRef,
        rule: &[String],
        p: &Pkt,
        i: Option<&str>,
        o: Option<&str>,
    ) -> Option<(String, Vec<String>)> {
        let mut k = 0;
        let mut neg = false;
        let arg = |k: usize| rule.get(k + 1).map(String::as_str).unwrap_or("");
        while k < rule.len() {
            let w = rule[k].as_str();
            let ok = match w {
                "!" => {
                    neg = true;
                    k += 1;
                    continue;
                }
                "-j" | "--jump" | "-g" | "--goto" => {
                    return Some((arg(k).to_string(), rule.get(k + 2..).map(<[String]>::to_vec).unwrap_or_default()));
                }
                "-s" | "--source" => net_has(arg(k), p.src),
                "-d" | "--destination" => net_has(arg(k), p.dst),
                "-i" | "--in-interface" => iface(arg(k), i),
                "-o" | "--out-interface" => iface(arg(k), o),
                "-p" | "--protocol" => match arg(k) {
                    "all" | "0" => true,
                    "tcp" | "6" => p.l4 == L4::Tcp,
                    "icmp" | "1" => p.l4 == L4::Icmp && p.dst.is_ipv4(),
                    "ipv6-icmp" | "icmpv6" | "58" => p.l4 == L4::Icmp && p.dst.is_ipv6(),
                    _ => false,
                },
                "--dport" | "--destination-port" => p.l4 == L4::Tcp && port_in(arg(k), p.dport),
                "--sport" | "--source-port" => p.l4 == L4::Tcp && port_in(arg(k), p.sport),
                "--dst-type" => addr_type(arg(k), self.is_local(ns, p.dst)),
                "--src-type" => addr_type(arg(k), self.is_local(ns, p.src)),
                "--ctstate" | "--state" => arg(k).split(',').any(|s| s == if p.reply { "ESTABLISHED" } else { "NEW" }),
                // -m NAME, --comment TEXT and options the model does not know: they match.
                _ => true,
            };
            let takes_value =
                w.starts_with('-') && rule.get(k + 1).is_some_and(|v| !v.starts_with('-') || v.parse::<i64>().is_ok());
            k += if takes_value { 2 } else { 1 };
            if ok == neg {
                return None;
            }
            neg = false;
        }
        // No target: the rule only counts packets.
        None
    }
}

fn net_has(net: &str, a: IpAddr) -> bool {
    if let Ok(n) = net.parse::<IpNet>() {
        return n.contains(&a);
    }
    net.parse::<IpAddr>().is_ok_and(|x| x == a)
}

fn link_local(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80)
}

fn iface(pat: &str, dev: Option<&str>) -> bool {
    let Some(d) = dev else { return false };
    match pat.strip_suffix('+') {
        Some(prefix) => d.starts_with(prefix),
        None => d == pat,
    }
}

fn port_in(spec: &str, port: u16) -> bool {
    match spec.split_once(':') {
        Some((a, b)) => {
            let lo = a.parse().unwrap_or(0);
            let hi = b.parse().unwrap_or(u16::MAX);
            (lo..=hi).contains(&port)
        }
        None => spec.parse::<u16>().is_ok_and(|x| x == port),
    }
}

fn addr_type(types: &str, local: bool) -> bool {
    types.split(',').any(|t| match t {
        "LOCAL" => local,
        "UNICAST" => true,
        _ => false,
    })
}

/// "175.18.0.2:80" or "175.18.0.2" (keeping `port`); IPv6 as "[fd00::2]:80" or
/// "fd00::2".
fn parse_to(to: &str, port: u16) -> Option<(IpAddr, u16)> {
    let port_of = |p: &str| p.split('-').next()?.parse().ok();
    if let Some(rest) = to.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let p = match after.strip_prefix(':') {
            Some(p) => port_of(p)?,
            None => port,
        };
        return Some((ip.split('-').next()?.parse().ok()?, p));
    }
    if to.matches(':').count() > 1 {
        return Some((to.split('-').next()?.parse().ok()?, port));
    }
    let (ip, p) = match to.split_once(':') {
        Some((ip, p)) => (ip, port_of(p)?),
        None => (to, port),
    };
    Some((ip.split('-').next()?.parse().ok()?, p))
}

/// Undoes, for a reply arriving in (or leaving) `ns`, what was translated there.
fn unnat(ns: &NsRef, mut p: Pkt, nats: &[Nat]) -> Pkt {
    for n in nats.iter().rev() {
        match n {
            Nat::Dnat { ns: at, from, to } if at == ns && (p.src, p.sport) == *to => {
                p.src = from.0;
                p.sport = from.1;
            }
            Nat::Snat { ns: at, from, to } if at == ns && p.dst == *to => p.dst = *from,
            _ => {}
        }
    }
    p
}
