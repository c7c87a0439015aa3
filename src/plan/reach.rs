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
use crate::model::{NsRef, join_words, shell_quote};
use crate::trace::{Hop, Proto, Source, Spec, Trace, ns_label, ns_words};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum L4 {
    Icmp,
    Tcp,
    Udp,
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

impl Pkt {
    /// As a trace shows it: "175.18.0.2:41000 -> 175.18.0.3:80".
    fn show(&self) -> String {
        match self.l4 {
            L4::Icmp => format!("{} -> {}", self.src, self.dst),
            _ => format!("{} -> {}", sock(self.src, self.sport), sock(self.dst, self.dport)),
        }
    }
}

fn sock(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(_) => format!("{a}:{port}"),
        IpAddr::V6(_) => format!("[{a}]:{port}"),
    }
}

/// A translation made on the way there, undone on the way back.
#[derive(Clone, Debug)]
enum Nat {
    Dnat { ns: NsRef, from: (IpAddr, u16), to: (IpAddr, u16) },
    Snat { ns: NsRef, from: IpAddr, to: IpAddr },
}

enum Verdict {
    Accept,
    /// DROP or REJECT (the target's name).
    Drop(String),
    /// Fell off the end of a chain (or RETURN).
    Continue,
    Dnat(String),
    Snat(String),
    Masquerade,
}

/// The rule that gave a chain's verdict: the chain it is in and its words.
type Matched = Option<(String, Vec<String>)>;

/// One packet walk (there and back): the translations to undo for the reply, the
/// hops met (as a trace shows them), and why the walk stopped, once it did.
#[derive(Default)]
struct Walk {
    nats: Vec<Nat>,
    hops: Vec<Hop>,
    why: Option<String>,
}

impl Walk {
    /// Records that `p` met `hook` in `ns` (seen, until a verdict is set).
    fn hop(&mut self, ns: &NsRef, p: &Pkt, hook: &str, i: Option<&str>, o: Option<&str>) -> &mut Hop {
        self.hops.push(Hop {
            ns: ns_label(ns),
            reply: p.reply,
            iif: i.map(str::to_string),
            oif: o.map(str::to_string),
            hook: hook.to_string(),
            verdict: "seen".into(),
            packet: p.show(),
            ..Default::default()
        });
        self.hops.last_mut().expect("pushed")
    }

    /// Stops the walk at a routing decision no rule saw: a deciding ROUTING hop, and
    /// the reason (the first stop's only).
    fn stop<T>(&mut self, ns: &NsRef, reply: bool, verdict: String, reason: String) -> Option<T> {
        if self.why.is_none() {
            self.hops.push(Hop {
                ns: ns_label(ns),
                reply,
                hook: "ROUTING".into(),
                verdict,
                deciding: true,
                ..Default::default()
            });
            self.why = Some(reason);
        }
        None
    }
}

const MAX_HOPS: usize = 32;

impl Plan {
    /// Would `dst` answer a ping (or a TCP connect to `port`) sent from `ns`?
    pub(super) fn reaches(&self, ns: &NsRef, dst: IpAddr, tcp_port: Option<u16>) -> bool {
        let proto = match tcp_port {
            Some(p) => Proto::Tcp(p),
            None => Proto::Icmp,
        };
        self.walk(ns, dst, proto, None, 40000).delivered
    }

    /// The model's answer to `trace`: the probe's walk there and back, with the hop
    /// that decided and the reason, in the words the kernel's trace uses.
    pub(super) fn model_trace(&self, ns: &NsRef, dst: IpAddr, spec: &Spec) -> Trace {
        self.walk(ns, dst, spec.proto, spec.src, spec.id)
    }

    fn walk(&self, ns: &NsRef, dst: IpAddr, proto: Proto, src: Option<IpAddr>, sport: u16) -> Trace {
        let (l4, dport) = match proto {
            Proto::Icmp => (L4::Icmp, 0),
            Proto::Tcp(p) => (L4::Tcp, p),
            Proto::Udp(p) => (L4::Udp, p),
        };
        let mut w = Walk::default();
        let delivered = self.walk_there_and_back(ns, dst, src, l4, sport, dport, &mut w);
        let reason = match (&delivered, w.why.take()) {
            (Some((at, ip, port)), _) => {
                let a = if l4 == L4::Icmp { ip.to_string() } else { sock(*ip, *port) };
                format!("delivered to {} ({a})", ns_words(&ns_label(at)))
            }
            (None, Some(why)) => why,
            (None, None) => format!("no answer to {} (the model cannot say why)", ns_words(&ns_label(ns))),
        };
        // The model cannot tell whether anything listens: a connection that gets
        // there and back counts as answered.
        let note = (delivered.is_some() && l4 != L4::Icmp)
            .then(|| "the model takes every port as listened on (a real run may be refused)".to_string());
        Trace { delivered: delivered.is_some(), reason, hops: w.hops, source: Source::Model, note }
    }

    /// The walk; Some(where it was delivered, to which address and port) when the
    /// answer came back.
    #[allow(clippy::too_many_arguments)]
    fn walk_there_and_back(
        &self,
        ns: &NsRef,
        dst: IpAddr,
        src: Option<IpAddr>,
        l4: L4,
        sport: u16,
        dport: u16,
        w: &mut Walk,
    ) -> Option<(NsRef, IpAddr, u16)> {
        let from = ns_label(ns);
        let Some(src) = src.or_else(|| self.source_for(ns, dst)) else {
            let e = "Network is unreachable".to_string();
            return w.stop(ns, false, e.clone(), format!("no route from {} to {dst} ({e})", ns_words(&from)));
        };
        let there = Pkt { src, dst, l4, sport, dport, reply: false };
        let (at, p) = self.originate(ns, there, w)?;
        let label = ns_label(&at);
        let k = w.hops.iter().rposition(|h| !h.reply && h.ns == label);
        let back = Pkt { src: p.dst, dst: p.src, l4, sport: p.dport, dport: p.sport, reply: true };
        let (home, b) = self.originate(&at, back, w)?;
        if &home != ns || b.dst != src {
            let lost = format!("answer to {} in {}", b.dst, ns_label(&home));
            let why = format!(
                "the answer went to {} ({}), not back to {} ({src})",
                ns_words(&ns_label(&home)),
                b.dst,
                ns_words(&from)
            );
            return w.stop(&home, true, lost, why);
        }
        if let Some(k) = k {
            w.hops[k].deciding = true;
        }
        Some((at, p.dst, p.dport))
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
    fn originate(&self, ns: &NsRef, mut p: Pkt, w: &mut Walk) -> Option<(NsRef, Pkt)> {
        let out = if self.is_local(ns, p.dst) { Some("lo".to_string()) } else { self.lookup(ns, p.dst).map(|r| r.0) };
        w.hop(ns, &p, "OUTPUT", None, out.as_deref());
        if p.reply {
            p = unnat(ns, p, &w.nats);
        } else {
            p = self.nat(ns, "OUTPUT", p, None, out.as_deref(), w)?;
        }
        self.route_out(ns, p, None, w, 0)
    }

    /// The reason a packet with no route stops, as the kernel's trace words it.
    fn no_route<T>(&self, ns: &NsRef, p: &Pkt, in_dev: Option<&str>, w: &mut Walk) -> Option<T> {
        let e = "Network is unreachable";
        let at = ns_words(&ns_label(ns));
        let (verdict, why) = match in_dev {
            _ if p.reply => (format!("no route to {}: {e}", p.dst), format!("no route back from {at} to {}", p.dst)),
            Some(i) => {
                (e.to_string(), format!("no route from {at} to {} (for a packet from {} in {i}: {e})", p.dst, p.src))
            }
            None => (e.to_string(), format!("no route from {at} to {} ({e})", p.dst)),
        };
        w.stop(ns, p.reply, verdict, why)
    }

    /// Routes a packet out of `ns` (made there when `in_dev` is None, forwarded otherwise).
    fn route_out(
        &self,
        ns: &NsRef,
        mut p: Pkt,
        in_dev: Option<&str>,
        w: &mut Walk,
        hops: usize,
    ) -> Option<(NsRef, Pkt)> {
        if hops > MAX_HOPS {
            let why = format!("a routing loop: more than {MAX_HOPS} hops, the last in {}", ns_words(&ns_label(ns)));
            return w.stop(ns, p.reply, "loop".into(), why);
        }
        if self.is_local(ns, p.dst) {
            if in_dev.is_none() {
                self.filter(ns, "OUTPUT", &p, None, Some("lo"), w)?;
                w.hop(ns, &p, "PREROUTING", Some("lo"), None);
                self.filter(ns, "INPUT", &p, Some("lo"), None, w)?;
            }
            return Some((ns.clone(), p));
        }
        let Some((dev, nh, _)) = self.lookup(ns, p.dst) else { return self.no_route(ns, &p, in_dev, w) };
        if p.src.is_loopback() && !self.route_localnet(ns, &dev, &p) {
            let why = format!(
                "dropped as a martian: {} is not routable without route_localnet on {dev} in {}",
                p.src,
                ns_words(&ns_label(ns))
            );
            let v = format!("martian: {} -> {} out {dev}, route_localnet=0", p.src, p.dst);
            return w.stop(ns, p.reply, v, why);
        }
        match in_dev {
            Some(i) => {
                let forwarding = if p.dst.is_ipv6() { "net.ipv6.conf.all.forwarding" } else { "net.ipv4.ip_forward" };
                if !self.sysctl_is(ns, forwarding, "1") {
                    let why = format!("not forwarded: {forwarding} is 0 in {}", ns_words(&ns_label(ns)));
                    let v = format!("{}=0", forwarding.rsplit('.').next().unwrap_or(forwarding));
                    return w.stop(ns, p.reply, v, why);
                }
                self.filter(ns, "FORWARD", &p, Some(i), Some(&dev), w)?;
            }
            None => self.filter(ns, "OUTPUT", &p, None, Some(&dev), w)?,
        }
        if !p.reply {
            p = self.nat(ns, "POSTROUTING", p, in_dev, Some(&dev), w)?;
        }
        let Some((rns, rdev, bridged)) = self.l2(ns, &dev, nh) else {
            let why =
                format!("no answer; last seen in {} (out {dev}): nothing there has {nh}", ns_words(&ns_label(ns)));
            return w.stop(ns, p.reply, format!("no neighbour {nh} on {dev}"), why);
        };
        let nf_call =
            if p.dst.is_ipv6() { "net.bridge.bridge-nf-call-ip6tables" } else { "net.bridge.bridge-nf-call-iptables" };
        for (bns, br) in &bridged {
            if self.sysctl_is(bns, nf_call, "1") {
                self.filter(bns, "FORWARD", &p, Some(br), Some(br), w)?;
            }
        }
        self.receive(&rns, &rdev, p, w, hops + 1)
    }

    fn receive(&self, ns: &NsRef, dev: &str, mut p: Pkt, w: &mut Walk, hops: usize) -> Option<(NsRef, Pkt)> {
        w.hop(ns, &p, "PREROUTING", Some(dev), None);
        if p.reply {
            p = unnat(ns, p, &w.nats);
        } else {
            p = self.nat(ns, "PREROUTING", p, Some(dev), None, w)?;
        }
        if (p.dst.is_loopback() || p.src.is_loopback()) && !self.route_localnet(ns, dev, &p) {
            let lo = if p.src.is_loopback() { p.src } else { p.dst };
            let why = format!(
                "dropped as a martian: {lo} arriving on {dev} in {} without route_localnet",
                ns_words(&ns_label(ns))
            );
            let v = format!("martian: {} -> {} in {dev}, route_localnet=0", p.src, p.dst);
            return w.stop(ns, p.reply, v, why);
        }
        if self.is_local(ns, p.dst) {
            self.filter(ns, "INPUT", &p, Some(dev), None, w)?;
            return Some((ns.clone(), p));
        }
        self.route_out(ns, p, Some(dev), w, hops)
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

    /// The filter table's verdict: Some(()) when the packet passes. A chain with
    /// rules or a policy other than ACCEPT shows as a hop.
    #[allow(clippy::too_many_arguments)]
    fn filter(&self, ns: &NsRef, chain: &str, p: &Pkt, i: Option<&str>, o: Option<&str>, w: &mut Walk) -> Option<()> {
        let c = self.tables(ns, p)?.get("filter").and_then(|t| t.chains.iter().find(|c| c.name == chain));
        let policy = c.and_then(|c| c.policy.clone()).unwrap_or_else(|| "ACCEPT".into());
        let quiet = c.is_none_or(|c| c.rules.is_empty()) && policy == "ACCEPT";
        let (v, rule) = self.eval(ns, "filter", chain, p, i, o, 0);
        let (verdict, pass) = match v {
            Verdict::Drop(t) => (t, false),
            Verdict::Continue => (format!("policy {policy}"), policy != "DROP"),
            _ => ("ACCEPT".to_string(), true),
        };
        if quiet {
            return Some(());
        }
        let h = w.hop(ns, p, chain, i, o);
        h.table = Some("filter".into());
        h.chain = Some(rule.as_ref().map_or(chain.to_string(), |r| r.0.clone()));
        h.rule = rule.map(|(c, words)| format!("-t filter -A {} {}", shell_quote(&c), join_words(&words)));
        h.verdict = verdict;
        if pass {
            return Some(());
        }
        h.deciding = true;
        let at = ns_words(&h.ns);
        let way = if h.reply { " (on the answer's way back)" } else { "" };
        let why = match &h.rule {
            None => format!("dropped by the {chain} policy DROP in {at}{way}"),
            Some(r) => {
                format!("{} by `iptables {r}` in {at}{way}", if h.verdict == "REJECT" { "rejected" } else { "dropped" })
            }
        };
        if w.why.is_none() {
            w.why = Some(why);
        }
        None
    }

    /// The nat table on a new connection: the packet as it leaves the chain. A rule
    /// that translates shows as a hop, with the rewrite.
    fn nat(&self, ns: &NsRef, chain: &str, mut p: Pkt, i: Option<&str>, o: Option<&str>, w: &mut Walk) -> Option<Pkt> {
        let (v, rule) = self.eval(ns, "nat", chain, &p, i, o, 0);
        let before = p.clone();
        let target = match v {
            Verdict::Dnat(to) => {
                let (ip, port) = parse_to(&to, p.dport)?;
                w.nats.push(Nat::Dnat { ns: ns.clone(), from: (p.dst, p.dport), to: (ip, port) });
                p.dst = ip;
                p.dport = port;
                "DNAT"
            }
            Verdict::Snat(to) => {
                let (ip, _) = parse_to(&to, p.sport)?;
                w.nats.push(Nat::Snat { ns: ns.clone(), from: p.src, to: ip });
                p.src = ip;
                "SNAT"
            }
            Verdict::Masquerade => {
                let dev = o?;
                let (_, nh, _) = self.lookup(ns, p.dst)?;
                let addrs = self.fam_addrs(ns, dev, p.dst);
                let ip = addrs.iter().find(|a| a.contains(&nh)).or(addrs.first())?.addr();
                w.nats.push(Nat::Snat { ns: ns.clone(), from: p.src, to: ip });
                p.src = ip;
                "MASQUERADE"
            }
            _ => return Some(p),
        };
        let h = w.hop(ns, &before, chain, i, o);
        h.table = Some("nat".into());
        h.chain = Some(rule.as_ref().map_or(chain.to_string(), |r| r.0.clone()));
        h.rule = rule.map(|(c, words)| format!("-t nat -A {} {}", shell_quote(&c), join_words(&words)));
        h.verdict = target.into();
        h.rewrite = Some(format!("{} => {}", before.show(), p.show()));
        Some(p)
    }

    /// A chain's verdict for `p`, and the rule that gave it (None: the chain's end).
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
    ) -> (Verdict, Matched) {
        let Some(c) =
            self.tables(ns, p).and_then(|t| t.get(table)).and_then(|t| t.chains.iter().find(|c| c.name == chain))
        else {
            return (Verdict::Continue, None);
        };
        if depth > 16 {
            return (Verdict::Continue, None);
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
            let v = match target.as_str() {
                "ACCEPT" => Verdict::Accept,
                "DROP" | "REJECT" => Verdict::Drop(target.clone()),
                "RETURN" => return (Verdict::Continue, None),
                "DNAT" => Verdict::Dnat(opt(&["--to-destination", "--to"])),
                "SNAT" => Verdict::Snat(opt(&["--to-source", "--to"])),
                "MASQUERADE" => Verdict::Masquerade,
                user => match self.eval(ns, table, user, p, i, o, depth + 1) {
                    (Verdict::Continue, _) => continue,
                    v => return v,
                },
            };
            return (v, Some((chain.to_string(), rule.clone())));
        }
        (Verdict::Continue, None)
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
                    "udp" | "17" => p.l4 == L4::Udp,
                    "icmp" | "1" => p.l4 == L4::Icmp && p.dst.is_ipv4(),
                    "ipv6-icmp" | "icmpv6" | "58" => p.l4 == L4::Icmp && p.dst.is_ipv6(),
                    _ => false,
                },
                "--dport" | "--destination-port" => p.l4 != L4::Icmp && port_in(arg(k), p.dport),
                "--sport" | "--source-port" => p.l4 != L4::Icmp && port_in(arg(k), p.sport),
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
