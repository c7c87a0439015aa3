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

mod model;
mod reach;
mod record;

use model::{MLink, Netns, no_link};
pub use record::{Recorder, Recording, RecordingRef, Step};

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use ipnet::IpNet;
use nix::errno::Errno;

use crate::backend::{Backend, LinkInfo};
use crate::error::{Error, Result};
use crate::firewall::{self, Family};

use crate::model::{NsRef, Route};
use crate::observer::Observer;
use crate::op::Op;

use crate::sys::process::ExecResult;

pub(super) const PROTO_KERNEL: u8 = 2;
pub(super) const SCOPE_LINK: u8 = 253;

/// The model of the system, and the recorder of the plan.
pub struct Plan {
    /// The ownership mark put on links (alias), as the kernel back end does.
    mark: String,
    nss: BTreeMap<NsRef, Netns>,
    rec: RecordingRef,
    next_pid: u32,
    /// Processes the script started: the plan's made-up pid and the command.
    spawned: Vec<(u32, String, NsRef)>,
    /// The links declared with --host-link (first), and those the script made in
    /// (or moved to) the host namespace.
    declared: Vec<String>,
    /// How many of `declared` came from --host-link.
    host_links: usize,
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
        Plan {
            mark: mark.into(),
            nss,
            rec: Rc::default(),
            next_pid: 10000,
            spawned: Vec::new(),
            declared: Vec::new(),
            host_links: 0,
        }
    }

    /// What this plan records (shared: the session owns the plan itself).
    pub fn recording(&self) -> RecordingRef {
        self.rec.clone()
    }

    /// The session observer that gives this plan's recording the origins and reads
    /// (install it with `Session::observe`).
    pub fn recorder(&self) -> Box<dyn Observer> {
        Box::new(Recorder(self.rec.clone()))
    }

    /// Declares a link the real host has (`netscript plan --host-link NAME[=ADDR,...]`):
    /// it is in the model's host namespace, up, with `addrs` and their connected
    /// routes, not created by the script (no mark; a rollback leaves it).
    pub fn declare_host_link(&mut self, name: &str, addrs: &[IpNet]) -> Result<()> {
        crate::model::check_ifname(name)?;
        let host = self.nss.get_mut(&NsRef::Host).expect("the host namespace");
        if host.link(name).is_some() {
            return Err(Error::invalid(format!("--host-link {name}: the model has \"{name}\" already")));
        }
        let mut l = MLink::new(name, "device", "");
        (l.kind, l.alias, l.up, l.addrs) = (None, None, true, addrs.to_vec());
        host.links.push(l);
        for a in addrs {
            host.add_connected(name, a);
        }
        self.declared.push(name.to_string());
        self.host_links += 1;
        Ok(())
    }

    fn record(&self, step: Step) {
        self.rec.borrow_mut().push(step);
    }
}

impl Backend for Plan {
    fn apply(&mut self, op: &Op) -> Result<()> {
        match self.apply_inner(op) {
            // A stop is spelled by `stop` itself: the pid is the plan's own invention.
            Ok(()) if matches!(op, Op::Kill { .. }) => Ok(()),
            Ok(()) => {
                // Links the script had in the host namespace: one of them missing later
                // is the script's doing, not the model's lack of the real host's links.
                match op {
                    Op::AddVeth { ns, name, peer, peer_ns, .. } => {
                        for (n, x) in [(ns, name), (peer_ns, peer)] {
                            if n.is_host() {
                                self.declared.push(x.clone());
                            }
                        }
                    }
                    Op::AddBridge { ns, name } | Op::AddLink { ns, name, .. } if ns.is_host() => {
                        self.declared.push(name.clone())
                    }
                    Op::MoveLink { name, to, .. } if to.is_host() => self.declared.push(name.clone()),
                    _ => {}
                }
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

    fn root_qdisc(&mut self, ns: &NsRef, dev: &str) -> Result<crate::qdisc::RootQdisc> {
        let l = self.ns(ns)?.link(dev).ok_or_else(|| no_link(ns, dev))?;
        Ok(l.qdisc.clone().map_or(crate::qdisc::RootQdisc::Default, crate::qdisc::RootQdisc::Known))
    }

    fn bridge_opts(&mut self, ns: &NsRef, name: &str) -> Result<crate::op::BridgeOpts> {
        let l = self.ns(ns)?.link(name).ok_or_else(|| no_link(ns, name))?;
        Ok(crate::op::BridgeOpts {
            vlan_filtering: Some(l.bridge.vlan_filtering.unwrap_or(false)),
            stp: Some(l.bridge.stp.unwrap_or(false)),
        })
    }

    fn port_flags(&mut self, ns: &NsRef, dev: &str) -> Result<crate::op::PortFlags> {
        let l = self.ns(ns)?.link(dev).ok_or_else(|| no_link(ns, dev))?;
        if l.master.is_none() {
            return Err(Error::sys(format!("link \"{dev}\" in {ns} is not a bridge port"), Some(Errno::EINVAL)));
        }
        Ok(crate::op::PortFlags {
            hairpin: Some(l.port.hairpin.unwrap_or(false)),
            isolated: Some(l.port.isolated.unwrap_or(false)),
            learning: Some(l.port.learning.unwrap_or(true)),
            flood: Some(l.port.flood.unwrap_or(true)),
        })
    }

    fn find_route(&mut self, ns: &NsRef, r: &Route) -> Result<Option<Route>> {
        let n = self.ns(ns)?;
        if let Some(d) = &r.dev {
            n.link(d).ok_or_else(|| no_link(ns, d))?;
        }
        Ok(n.routes.iter().find(|k| k.matches(r)).cloned())
    }

    fn sysctl_get(&mut self, ns: &NsRef, key: &str) -> Result<String> {
        self.sysctl_value(ns, key)
    }

    fn fw_policy(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<String> {
        firewall::check_table(table)?;
        Ok(self
            .ns_mut(ns)?
            .table(fam, table)
            .chain(chain)
            .and_then(|c| c.policy.clone())
            .unwrap_or_else(|| "ACCEPT".into()))
    }

    fn fw_rules(&mut self, ns: &NsRef, fam: Family, table: &str, chain: Option<&str>) -> Result<Vec<String>> {
        firewall::check_table(table)?;
        let t = self.ns_mut(ns)?.table(fam, table);
        if let Some(c) = chain
            && t.chain(c).is_none()
        {
            return Err(Error::sys(format!("table {table} has no chain {c} in {ns}"), Some(Errno::ENOENT)));
        }
        Ok(t.lines(chain))
    }

    fn fw_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str, rule: &[String]) -> Result<bool> {
        Ok(self.fw_chain(ns, fam, table, chain)?.rules.iter().any(|r| r == rule))
    }

    fn fw_chain_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<bool> {
        firewall::check_table(table)?;
        Ok(self.ns_mut(ns)?.table(fam, table).chain(chain).is_some())
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

    fn trace_mode(&mut self) -> crate::trace::Mode {
        crate::trace::Mode::Model
    }

    /// The model's walk (src/plan/reach.rs), as a kernel trace would report it.
    fn trace(
        &mut self,
        from: &NsRef,
        dst: IpAddr,
        spec: &crate::trace::Spec,
        _nss: &[NsRef],
    ) -> Result<crate::trace::Trace> {
        self.ns(from)?;
        Ok(self.model_trace(from, dst, spec))
    }

    fn describe(&self) -> String {
        "plan (a model of the system; nothing is changed)".into()
    }

    fn routes(&mut self, ns: &NsRef) -> Result<Vec<Route>> {
        Ok(self.ns(ns)?.routes.clone())
    }

    fn no_link_message(&self, ns: &NsRef, name: &str) -> Option<String> {
        let q = crate::model::shell_quote;
        (ns.is_host() && !self.declared[self.host_links..].iter().any(|d| d == name)).then(|| {
            format!(
                "no link named \"{name}\" in plan's model of the host namespace: the model starts with only `lo` \
                 (plan does not read this machine's links{}); if the real host has it, declare it with \
                 `netscript plan --host-link {} ...` (or --host-link {} with its addresses), or create it in the script \
                 (veth.add, bridge.add, link.add)",
                if self.host_links == 0 {
                    String::new()
                } else {
                    format!("; declared: {}", self.declared[..self.host_links].join(", "))
                },
                q(name),
                q(&format!("{name}=ADDR/PREFIX"))
            )
        })
    }

    fn alive(&mut self, pid: u32, _start: u64) -> bool {
        self.spawned.iter().any(|(p, _, _)| *p == pid)
    }
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
    use ipnet::IpNet;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    fn session() -> (Session, RecordingRef) {
        let p = Plan::new("netscript:t");
        let rec = p.recording();
        let j = Journal::in_memory(Meta { name: "t".into(), ..Default::default() });
        let recorder = p.recorder();
        let mut s = Session::new(Box::new(p), j, "t", Arc::new(AtomicBool::new(false)));
        s.observe(recorder);
        (s, rec)
    }

    #[test]
    fn models_the_article() {
        let (mut s, rec) = session();
        let ns1 = s.netns_add("ns1").unwrap();
        s.veth_add("veth0", "veth_ns_1", &NsRef::Host, &NsRef::Host, None).unwrap();
        s.link_move(&NsRef::Host, "veth0", &ns1).unwrap();
        s.link_addr(&ns1, "veth0", "175.18.0.2/24".parse().unwrap()).unwrap();
        s.link_set_up(&ns1, "veth0", true).unwrap();
        s.link_set_up(&ns1, "lo", true).unwrap();
        let r = default_via("175.18.0.1");
        s.route_add(&ns1, r).unwrap();
        assert_eq!(s.sysctl_set(&NsRef::Host, "net.ipv4.ip_forward", "1").unwrap(), "0");
        assert_eq!(s.sysctl_get(&NsRef::Host, "net.ipv4.conf.all.forwarding").unwrap(), "1");
        s.fw_append(&NsRef::Host, Family::Ipv4, "nat", "POSTROUTING", "-s 175.18.0.0/24 -j MASQUERADE").unwrap();
        assert_eq!(
            rec.borrow().commands(),
            vec![
                "ip netns add ns1",
                "ip link add veth0 numtxqueues 1 numrxqueues 1 type veth peer name veth_ns_1 numtxqueues 1 numrxqueues 1",
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
        s.veth_add("a", "b", &NsRef::Host, &ns1, None).unwrap();
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
    fn undo_is_newest_first_with_the_firewall_together_after_the_namespaces() {
        let (mut s, rec) = session();
        let ns1 = s.netns_add("ns1").unwrap();
        s.veth_add("a", "b", &NsRef::Host, &ns1, None).unwrap();
        s.fw_policy(&NsRef::Host, Family::Ipv4, "filter", "FORWARD", "DROP").unwrap();
        rec.borrow_mut().steps.clear();
        let report = s.rollback();
        assert!(report.complete());
        // The session sends firewall undos together, right after the last namespace
        // deletion (a kernel makes them on a thread while the rest goes on).
        assert_eq!(
            rec.borrow().commands(),
            vec!["ip link del dev a", "ip netns del ns1", "iptables -t filter -P FORWARD ACCEPT"]
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
            s.veth_add("eth0", &format!("p{i}"), &ns, &h, None).unwrap();
            s.link_addr(&ns, "eth0", addr(&format!("10.0.0.{}/24", i + 1))).unwrap();
            s.link_set_up(&ns, "eth0", true).unwrap();
            s.link_master(&h, &format!("p{i}"), Some("br")).unwrap();
            s.link_set_up(&h, &format!("p{i}"), true).unwrap();
            let r = default_via("10.0.0.1");
            s.route_add(&ns, r).unwrap();
        }
        // An outside world with no route back to 10.0.0.0/24.
        let w = s.netns_add("world").unwrap();
        s.veth_add("up0", "eth0", &h, &w, None).unwrap();
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
        s.fw_append(&h, Family::Ipv4, "nat", "POSTROUTING", "-s 10.0.0.0/24 -o up0 -j MASQUERADE").unwrap();
        assert!(s.ping(&c1, ip("192.168.1.2"), 1, t).unwrap(), "masqueraded");
        s.fw_policy(&h, Family::Ipv4, "filter", "FORWARD", "DROP").unwrap();
        assert!(!s.ping(&c1, ip("10.0.0.3"), 1, t).unwrap(), "bridged traffic passes FORWARD");
        s.fw_append(&h, Family::Ipv4, "filter", "FORWARD", "-i br -j ACCEPT").unwrap();
        assert!(s.ping(&c1, ip("10.0.0.3"), 1, t).unwrap());
        assert!(!s.ping(&c1, ip("192.168.1.2"), 1, t).unwrap(), "the reply comes in from up0");
        s.fw_append(
            &h,
            Family::Ipv4,
            "filter",
            "FORWARD",
            "-o br -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        )
        .unwrap();
        assert!(s.ping(&c1, ip("192.168.1.2"), 1, t).unwrap());
        // A published port, from outside and from 127.0.0.1.
        s.fw_append(&h, Family::Ipv4, "nat", "PREROUTING", "-p tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80")
            .unwrap();
        assert!(!s.tcp(&w, ip("192.168.1.1"), 8080, t).unwrap(), "FORWARD drops it");
        s.fw_append(
            &h,
            Family::Ipv4,
            "filter",
            "FORWARD",
            "-d 10.0.0.2/32 ! -i br -o br -p tcp -m tcp --dport 80 -j ACCEPT",
        )
        .unwrap();
        assert!(s.tcp(&w, ip("192.168.1.1"), 8080, t).unwrap());
        s.fw_append(
            &h,
            Family::Ipv4,
            "nat",
            "OUTPUT",
            "-d 127.0.0.0/8 -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80",
        )
        .unwrap();
        assert!(!s.tcp(&h, ip("127.0.0.1"), 8080, t).unwrap(), "127.0.0.1 may not leave lo");
        s.sysctl_set(&h, "net.ipv4.conf.br.route_localnet", "1").unwrap();
        assert!(!s.tcp(&h, ip("127.0.0.1"), 8080, t).unwrap(), "the reply goes to the container's own 127.0.0.1");
        s.fw_append(&h, Family::Ipv4, "nat", "POSTROUTING", "-s 127.0.0.0/8 -o br -j MASQUERADE").unwrap();
        assert!(s.tcp(&h, ip("127.0.0.1"), 8080, t).unwrap());
        assert!(!s.tcp(&c1, ip("127.0.0.1"), 80, t).unwrap(), "lo is down in c1");
        s.link_set_up(&c1, "lo", true).unwrap();
        assert!(s.tcp(&c1, ip("127.0.0.1"), 80, t).unwrap());
    }

    #[test]
    fn ipv6_pings_follow_ipv6_routes_and_forwarding() {
        let (mut s, rec) = session();
        let h = NsRef::Host;
        let addr = |x: &str| -> IpNet { x.parse().unwrap() };
        let ip = |x: &str| -> IpAddr { x.parse().unwrap() };
        let t = Duration::from_secs(1);
        s.bridge_add("br", &h).unwrap();
        s.link_addr(&h, "br", addr("175.30.0.1/24")).unwrap();
        s.link_addr(&h, "br", addr("fd00:30::1/64")).unwrap();
        s.link_set_up(&h, "br", true).unwrap();
        let c1 = s.netns_add("c1").unwrap();
        s.veth_add("eth0", "p1", &c1, &h, None).unwrap();
        s.link_addr(&c1, "eth0", addr("fd00:30::2/64")).unwrap();
        s.link_set_up(&c1, "eth0", true).unwrap();
        s.link_master(&h, "p1", Some("br")).unwrap();
        s.link_set_up(&h, "p1", true).unwrap();
        assert!(s.ping(&c1, ip("fd00:30::1"), 1, t).unwrap(), "across the bridge");
        assert!(!s.ping(&c1, ip("175.30.0.1"), 1, t).unwrap(), "c1 has no IPv4 address");
        // A remote site behind a router namespace.
        let r = s.netns_add("r").unwrap();
        s.link_set_up(&r, "lo", true).unwrap();
        s.link_addr(&r, "lo", addr("2001:db8::1/128")).unwrap();
        s.veth_add("eth0", "up0", &r, &h, None).unwrap();
        s.link_addr(&r, "eth0", addr("fd00:31::2/64")).unwrap();
        s.link_set_up(&r, "eth0", true).unwrap();
        s.link_addr(&h, "up0", addr("fd00:31::1/64")).unwrap();
        s.link_set_up(&h, "up0", true).unwrap();
        assert!(!s.ping(&c1, ip("2001:db8::1"), 1, t).unwrap(), "no route in c1");
        let gw = Route { dest: "::/0".parse().unwrap(), ..default_via("fd00:30::1") };
        s.route_add(&c1, Route { via: Some(ip("fd00:30::1")), ..gw }).unwrap();
        assert!(!s.ping(&c1, ip("2001:db8::1"), 1, t).unwrap(), "no route in the host");
        let to_r = Route { dest: "2001:db8::/32".parse().unwrap(), ..default_via("fd00:31::2") };
        s.route_add(&h, Route { via: Some(ip("fd00:31::2")), ..to_r }).unwrap();
        assert!(!s.ping(&c1, ip("2001:db8::1"), 1, t).unwrap(), "no IPv6 forwarding");
        s.sysctl_set(&h, "net.ipv4.ip_forward", "1").unwrap();
        assert!(!s.ping(&c1, ip("2001:db8::1"), 1, t).unwrap(), "IPv4 forwarding does not forward IPv6");
        s.sysctl_set(&h, "net.ipv6.conf.all.forwarding", "1").unwrap();
        assert_eq!(s.sysctl_get(&h, "net.ipv6.conf.up0.forwarding").unwrap(), "1", "copied to every link");
        assert!(!s.ping(&c1, ip("2001:db8::1"), 1, t).unwrap(), "no route back from r");
        let back = Route { dest: "fd00:30::/64".parse().unwrap(), ..default_via("fd00:31::1") };
        s.route_add(&r, Route { via: Some(ip("fd00:31::1")), ..back }).unwrap();
        assert!(s.ping(&c1, ip("2001:db8::1"), 1, t).unwrap(), "routed there and back");
        assert!(s.tcp(&c1, ip("2001:db8::1"), 80, t).unwrap());
        assert!(s.tcp(&h, ip("::1"), 80, t).unwrap(), "the host reaches its own ::1");
        assert!(!s.ping(&c1, ip("::1"), 1, t).unwrap(), "lo is down in c1");
        // A link going down loses its IPv6 addresses, as in the kernel.
        s.link_set_up(&h, "up0", false).unwrap();
        assert!(!s.link(&h, "up0").unwrap().addrs.iter().any(|a| a.addr().is_ipv6()));
        assert!(!s.ping(&c1, ip("2001:db8::1"), 1, t).unwrap());
        let cmds = rec.borrow().commands();
        assert!(cmds.contains(&"ip -6 route add 2001:db8::/32 via fd00:31::2".to_string()), "{cmds:#?}");
        assert!(cmds.contains(&"ip -n c1 addr add fd00:30::2/64 dev eth0 nodad".to_string()), "{cmds:#?}");
    }

    #[test]
    fn comments_stay_comments() {
        let r = Recording {
            steps: vec![
                ("t.lua:1".into(), Step::Read("sh -c 'echo a\necho b'".into())),
                ("t.lua:1".into(), Step::Change("sh -c 'x\ny' &".into())),
            ],
            ..Recording::default()
        };
        let s = r.script(&["head".into()]);
        assert_eq!(s, "#!/bin/bash\n# head\nset -e\n\n# t.lua:1\n# (reads) sh -c 'echo a\\necho b'\nsh -c 'x\ny' &\n");
    }

    #[test]
    fn rules_read_back_as_iptables_prints_them() {
        let (mut s, _) = session();
        s.fw_chain(&NsRef::Host, Family::Ipv4, "filter", "MINE").unwrap();
        s.fw_append(&NsRef::Host, Family::Ipv4, "filter", "MINE", "-j ACCEPT").unwrap();
        let r = s.fw_rules(&NsRef::Host, Family::Ipv4, "filter").unwrap();
        assert_eq!(r[0], "-P INPUT ACCEPT");
        assert_eq!(r[3], "-N MINE");
        assert_eq!(
            split_words(r[4].splitn(3, ' ').nth(2).unwrap()).unwrap(),
            vec!["-m", "comment", "--comment", "netscript:t", "-j", "ACCEPT"]
        );
    }
}
