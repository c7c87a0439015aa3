//! `netscript show`: what a topology owns now, by namespace. The net effect of its
//! live changes (a policy set three times is one policy, a deleted link or rule is
//! gone, a moved link is where it went), with what the kernel reports for its links
//! and processes, and drift as data. No printing here (src/cmd/inspect.rs prints).

use std::fmt;

use serde::Serialize;

use crate::backend::Backend;
use crate::firewall::Family;
use crate::journal::{Journal, State};
use crate::model::{NsRef, Route, join_words};
use crate::op::{LinkKind, Op};

/// What a topology owns now.
#[derive(Debug, Serialize)]
pub struct Now {
    pub name: String,
    pub script: String,
    /// Seconds since the epoch; absent when the record does not say (no meta line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// How many changes of the run are in effect (the history: `show --log`).
    pub changes: usize,
    /// The namespace netscript runs in ("host") first, then the others in the order
    /// the topology first touched them.
    pub namespaces: Vec<NsNow>,
    /// What is no longer as the run left it (empty while a run is changing it).
    pub drift: Vec<Drift>,
    /// What a person should know about the record (a last line cut short by a crash).
    pub notes: Vec<String>,
    /// A netscript process is changing the topology right now (drift not checked).
    pub running: bool,
}

/// What a topology owns in one namespace.
#[derive(Debug, Serialize)]
pub struct NsNow {
    /// "host" or the namespace's name (the spelling `netscript exec` takes).
    pub ns: String,
    /// The topology created this namespace (`down` deletes it with all in it).
    pub created: bool,
    pub links: Vec<LinkNow>,
    pub routes: Vec<String>,
    pub sysctls: Vec<Setting>,
    pub policies: Vec<Policy>,
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
    pub processes: Vec<Process>,
    #[serde(skip)]
    pub(crate) nsref: NsRef,
}

#[derive(Debug, Serialize)]
pub struct LinkNow {
    pub name: String,
    /// veth, bridge, vxlan, macvlan, macvtap, vlan, dummy, ifb; "existing" for a link
    /// the topology changed but did not create (`lo`, a host's eth0).
    pub kind: String,
    /// The topology created it (`down` deletes it).
    pub created: bool,
    /// What the kernel says now: "up", "down", "missing", or "unknown" (could not read).
    pub state: String,
    /// The addresses the topology gave it.
    pub addrs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The other end of a veth: "NS/NAME".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The link it sits on (a macvlan's parent, a vxlan's dev): "NS/NAME".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The root qdisc the topology set, as tc's words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qdisc: Option<String>,
    /// Bridge options and port flags the topology set ("stp_state 1", "hairpin on").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
    /// A value to restore that another topology handed over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Policy {
    /// iptables or ip6tables (left out of the JSON for IPv4).
    #[serde(skip_serializing_if = "Family::is_ipv4")]
    pub family: Family,
    pub table: String,
    pub chain: String,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Chain {
    /// iptables or ip6tables (left out of the JSON for IPv4).
    #[serde(skip_serializing_if = "Family::is_ipv4")]
    pub family: Family,
    pub table: String,
    pub chain: String,
}

#[derive(Debug, Serialize)]
pub struct Rule {
    /// iptables or ip6tables (left out of the JSON for IPv4).
    #[serde(skip_serializing_if = "Family::is_ipv4")]
    pub family: Family,
    pub table: String,
    pub chain: String,
    /// The rule's words after the chain, shell-quoted, without the ownership comment.
    pub rule: String,
    #[serde(skip)]
    pub(crate) words: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Process {
    pub pid: u32,
    /// The command's first line, shortened (a server's source is not repeated).
    pub command: String,
    pub running: bool,
}

/// One thing that is not as the run left it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// "not_in_place": the change's effect is missing or altered; "not_ours": another
    /// object took its name (`down` leaves it alone); "unchecked": it could not be read.
    pub kind: DriftKind,
    /// "host" or the namespace's name.
    pub ns: String,
    /// The change, as the command that made it.
    pub command: String,
    /// Why (for "not_ours" and "unchecked").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    NotInPlace,
    NotOurs,
    Unchecked,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = self.reason.as_deref().unwrap_or("");
        match self.kind {
            DriftKind::NotInPlace => write!(f, "not in place: {}", self.command),
            DriftKind::NotOurs => write!(f, "not ours: {why}; `down` will leave it alone"),
            DriftKind::Unchecked if self.command.is_empty() => f.write_str(why),
            DriftKind::Unchecked => write!(f, "cannot check `{}`: {why}", self.command),
        }
    }
}

/// A command line cut to its first line and `max` characters ("…" when cut).
pub fn short_command(words: &[String], max: usize) -> String {
    let full = join_words(words);
    let first = full.lines().next().unwrap_or("");
    let cut = first.chars().count() > max || first.len() < full.len();
    let mut s: String = first.chars().take(max).collect();
    if cut {
        s.push('…');
    }
    s
}

/// A link while the changes are replayed.
struct L {
    ns: NsRef,
    name: String,
    kind: String,
    created: bool,
    gone: bool,
    addrs: Vec<String>,
    master: Option<String>,
    peer: Option<usize>,
    lower: Option<(NsRef, String)>,
    mtu: Option<u32>,
    qdisc: Option<String>,
    options: Vec<(String, String)>,
}

impl L {
    fn new(ns: &NsRef, name: &str, kind: &str, created: bool) -> L {
        L {
            ns: ns.clone(),
            name: name.into(),
            kind: kind.into(),
            created,
            gone: false,
            addrs: Vec::new(),
            master: None,
            peer: None,
            lower: None,
            mtu: None,
            qdisc: None,
            options: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Replay {
    nss: Vec<(NsRef, bool, bool)>, // (ns, created, deleted)
    links: Vec<L>,
    routes: Vec<(NsRef, Route)>,
    sysctls: Vec<(NsRef, Setting)>,
    policies: Vec<(NsRef, Policy)>,
    chains: Vec<(NsRef, Chain)>,
    rules: Vec<(NsRef, Rule)>,
    procs: Vec<(NsRef, Vec<String>, u32, u64)>,
}

impl Replay {
    fn touch(&mut self, ns: &NsRef) {
        if !self.nss.iter().any(|(n, _, _)| n == ns) {
            self.nss.push((ns.clone(), false, false));
        }
    }

    fn link(&mut self, ns: &NsRef, name: &str) -> usize {
        if let Some(i) = self.links.iter().position(|l| !l.gone && &l.ns == ns && l.name == name) {
            return i;
        }
        self.touch(ns);
        self.links.push(L::new(ns, name, "existing", false));
        self.links.len() - 1
    }

    fn drop_link(&mut self, i: usize) {
        self.links[i].gone = true;
        // A veth's two ends go together; its ports leave a deleted bridge.
        if let Some(p) = self.links[i].peer {
            self.links[p].gone = true;
        }
        let (ns, name) = (self.links[i].ns.clone(), self.links[i].name.clone());
        for l in self.links.iter_mut().filter(|l| l.ns == ns && l.master.as_deref() == Some(&name)) {
            l.master = None;
        }
    }

    fn option(&mut self, i: usize, key: &str, value: String) {
        let opts = &mut self.links[i].options;
        match opts.iter_mut().find(|(k, _)| k == key) {
            Some(o) => o.1 = value,
            None => opts.push((key.to_string(), value)),
        }
    }

    fn apply(&mut self, op: &Op, note: Option<&String>, mark: &str) {
        let ns = op.ns().clone();
        if !matches!(op, Op::Kill { .. } | Op::StopMarked { .. } | Op::TraceOn { .. } | Op::TraceOff { .. }) {
            self.touch(&ns);
        }
        match op {
            Op::AddNetns { name } => {
                let n = NsRef::named(name);
                self.nss.retain(|(x, _, _)| *x != n);
                self.nss.push((n, true, false));
            }
            Op::DelNetns { name, .. } => {
                let n = NsRef::named(name);
                for i in 0..self.links.len() {
                    if self.links[i].ns == n && !self.links[i].gone {
                        self.drop_link(i);
                    }
                }
                self.routes.retain(|(x, _)| *x != n);
                self.sysctls.retain(|(x, _)| *x != n);
                self.policies.retain(|(x, _)| *x != n);
                self.chains.retain(|(x, _)| *x != n);
                self.rules.retain(|(x, _)| *x != n);
                if let Some(e) = self.nss.iter_mut().find(|(x, _, _)| *x == n) {
                    e.2 = true;
                }
            }
            Op::AddVeth { ns, name, peer, peer_ns, .. } => {
                self.touch(peer_ns);
                self.links.push(L::new(ns, name, "veth", true));
                self.links.push(L::new(peer_ns, peer, "veth", true));
                let a = self.links.len() - 2;
                self.links[a].peer = Some(a + 1);
                self.links[a + 1].peer = Some(a);
            }
            Op::AddBridge { ns, name } => self.links.push(L::new(ns, name, "bridge", true)),
            Op::AddLink { ns, name, link, from } => {
                let mut l = L::new(ns, name, link.name(), true);
                l.lower = link.lower().map(|p| (from.clone(), p.to_string()));
                if let LinkKind::Vlan { id, .. } = link {
                    l.options.push(("id".into(), id.to_string()));
                }
                if let LinkKind::Vxlan { id, .. } = link {
                    l.options.push(("id".into(), id.to_string()));
                }
                self.links.push(l);
            }
            Op::DelLink { ns, name, .. } => {
                let i = self.link(ns, name);
                self.drop_link(i);
            }
            Op::MoveLink { ns, name, to } => {
                let i = self.link(ns, name);
                self.touch(to);
                self.links[i].ns = to.clone();
            }
            Op::SetUp { ns, name, .. } => {
                self.link(ns, name);
            }
            Op::AddAddr { ns, dev, addr, .. } => {
                let i = self.link(ns, dev);
                let a = addr.to_string();
                if !self.links[i].addrs.contains(&a) {
                    self.links[i].addrs.push(a);
                }
            }
            Op::DelAddr { ns, dev, addr, .. } => {
                let i = self.link(ns, dev);
                let a = addr.to_string();
                self.links[i].addrs.retain(|x| *x != a);
            }
            Op::SetMaster { ns, dev, master } => {
                let i = self.link(ns, dev);
                self.links[i].master = master.clone();
            }
            Op::SetMtu { ns, dev, mtu } => {
                let i = self.link(ns, dev);
                self.links[i].mtu = Some(*mtu);
            }
            Op::SetQdisc { ns, dev, qdisc, .. } => {
                let i = self.link(ns, dev);
                self.links[i].qdisc = Some(qdisc.describe());
            }
            Op::DelQdisc { ns, dev, .. } => {
                let i = self.link(ns, dev);
                self.links[i].qdisc = None;
            }
            Op::SetBridge { ns, name, opts } => {
                let i = self.link(ns, name);
                let b = |x: bool| if x { "1" } else { "0" }.to_string();
                if let Some(v) = opts.vlan_filtering {
                    self.option(i, "vlan_filtering", b(v));
                }
                if let Some(v) = opts.stp {
                    self.option(i, "stp_state", b(v));
                }
            }
            Op::SetBridgePort { ns, dev, flags } => {
                let i = self.link(ns, dev);
                for (k, v) in flags.set() {
                    self.option(i, k, if v { "on" } else { "off" }.into());
                }
            }
            Op::AddRoute { ns, route } => {
                self.routes.retain(|(n, r)| !(n == ns && r.dest == route.dest && r.metric == route.metric));
                self.routes.push((ns.clone(), route.clone()));
            }
            Op::DelRoute { ns, route } => {
                self.routes.retain(|(n, r)| !(n == ns && r.dest == route.dest));
            }
            Op::SetSysctl { ns, key, value } => {
                self.sysctls.retain(|(n, s)| !(n == ns && s.key == *key));
                self.sysctls
                    .push((ns.clone(), Setting { key: key.clone(), value: value.clone(), note: note.cloned() }));
            }
            Op::FwPolicy { ns, family, table, chain, target } => {
                let p = Policy {
                    family: *family,
                    table: table.clone(),
                    chain: chain.clone(),
                    policy: target.clone(),
                    note: note.cloned(),
                };
                match self
                    .policies
                    .iter_mut()
                    .find(|(n, p)| n == ns && p.family == *family && p.table == *table && p.chain == *chain)
                {
                    Some(e) => e.1 = p,
                    None => self.policies.push((ns.clone(), p)),
                }
            }
            Op::FwNewChain { ns, family, table, chain } => {
                self.chains.push((ns.clone(), Chain { family: *family, table: table.clone(), chain: chain.clone() }));
            }
            Op::FwDelChain { ns, family, table, chain } => {
                self.chains
                    .retain(|(n, c)| !(n == ns && c.family == *family && c.table == *table && c.chain == *chain));
                self.rules.retain(|(n, r)| !(n == ns && r.family == *family && r.table == *table && r.chain == *chain));
            }
            Op::FwAppend { ns, family, table, chain, rule } | Op::FwInsert { ns, family, table, chain, rule, .. } => {
                let shown = unmarked(rule, mark);
                let r = Rule {
                    family: *family,
                    table: table.clone(),
                    chain: chain.clone(),
                    rule: join_words(shown),
                    words: rule.clone(),
                };
                let at = match op {
                    Op::FwInsert { pos, .. } => self
                        .rules
                        .iter()
                        .enumerate()
                        .filter(|(_, (n, x))| n == ns && x.family == *family && x.table == *table && x.chain == *chain)
                        .map(|(i, _)| i)
                        .nth((*pos as usize).saturating_sub(1)),
                    _ => None,
                };
                match at {
                    Some(i) => self.rules.insert(i, (ns.clone(), r)),
                    None => self.rules.push((ns.clone(), r)),
                }
            }
            Op::FwDelete { ns, family, table, chain, rule } => {
                if let Some(i) = self.rules.iter().position(|(n, r)| {
                    n == ns && r.family == *family && r.table == *table && r.chain == *chain && r.words == *rule
                }) {
                    self.rules.remove(i);
                }
            }
            Op::Spawn { ns, cmd, pid, start, .. } => self.procs.push((ns.clone(), cmd.clone(), *pid, *start)),
            Op::Kill { pid, start } => self.procs.retain(|(_, _, p, s)| !(p == pid && s == start)),
            Op::StopMarked { .. } | Op::TraceOn { .. } | Op::TraceOff { .. } => {}
        }
    }
}

/// A rule's words without the ownership comment netscript puts first.
fn unmarked<'a>(rule: &'a [String], mark: &str) -> &'a [String] {
    match rule {
        [m, c, cc, v, rest @ ..] if m == "-m" && c == "comment" && cc == "--comment" && v == mark => rest,
        _ => rule,
    }
}

/// What the journal's live changes add up to, with the kernel's (or any back end's)
/// state of the links and processes. `drift` is checked by the caller.
pub fn now(journal: &Journal, b: &mut dyn Backend) -> Now {
    let mark = crate::session::mark_for(&journal.meta.name);
    let mut r = Replay::default();
    r.touch(&NsRef::Host);
    let live: Vec<_> = journal.entries().iter().filter(|e| e.state == State::Done).collect();
    for e in &live {
        r.apply(&e.op, e.note.as_ref(), &mark);
    }
    let slash = |ns: &NsRef, n: &str| format!("{}/{}", ns.short(), n);
    let mut namespaces = Vec::new();
    for (nsref, created, deleted) in &r.nss {
        if *deleted {
            continue;
        }
        let exists = nsref.name().is_none_or(|n| b.netns_exists(n));
        let links = r
            .links
            .iter()
            .filter(|l| !l.gone && l.ns == *nsref)
            .map(|l| LinkNow {
                name: l.name.clone(),
                kind: l.kind.clone(),
                created: l.created,
                state: if !exists {
                    "missing".into()
                } else {
                    match b.link(nsref, &l.name) {
                        Ok(Some(k)) => if k.up { "up" } else { "down" }.into(),
                        Ok(None) => "missing".into(),
                        Err(_) => "unknown".into(),
                    }
                },
                addrs: l.addrs.clone(),
                master: l.master.clone(),
                peer: l.peer.map(|p| slash(&r.links[p].ns, &r.links[p].name)),
                lower: l.lower.as_ref().map(|(n, x)| slash(n, x)),
                mtu: l.mtu,
                qdisc: l.qdisc.clone(),
                options: l.options.iter().map(|(k, v)| format!("{k} {v}")).collect(),
            })
            .collect();
        let of = |n: &NsRef| n == nsref;
        namespaces.push(NsNow {
            ns: nsref.short().to_string(),
            created: *created,
            links,
            routes: r.routes.iter().filter(|(n, _)| of(n)).map(|(_, x)| x.render_args()).collect(),
            sysctls: r
                .sysctls
                .iter()
                .filter(|(n, _)| of(n))
                .map(|(_, s)| Setting { key: s.key.clone(), value: s.value.clone(), note: s.note.clone() })
                .collect(),
            policies: r
                .policies
                .iter()
                .filter(|(n, _)| of(n))
                .map(|(_, p)| Policy {
                    family: p.family,
                    table: p.table.clone(),
                    chain: p.chain.clone(),
                    policy: p.policy.clone(),
                    note: p.note.clone(),
                })
                .collect(),
            chains: r
                .chains
                .iter()
                .filter(|(n, _)| of(n))
                .map(|(_, c)| Chain { family: c.family, table: c.table.clone(), chain: c.chain.clone() })
                .collect(),
            rules: r
                .rules
                .iter()
                .filter(|(n, _)| of(n))
                .map(|(_, x)| Rule {
                    family: x.family,
                    table: x.table.clone(),
                    chain: x.chain.clone(),
                    rule: x.rule.clone(),
                    words: x.words.clone(),
                })
                .collect(),
            processes: r
                .procs
                .iter()
                .filter(|(n, ..)| of(n))
                .map(|(_, cmd, pid, start)| Process {
                    pid: *pid,
                    command: short_command(cmd, 60),
                    running: b.alive(*pid, *start),
                })
                .collect(),
            nsref: nsref.clone(),
        });
    }
    // The host stays listed (first) even when the topology owns nothing in it.
    namespaces.retain(|n| {
        n.nsref.is_host()
            || n.created
            || !(n.links.is_empty()
                && n.routes.is_empty()
                && n.sysctls.is_empty()
                && n.policies.is_empty()
                && n.chains.is_empty()
                && n.rules.is_empty()
                && n.processes.is_empty())
    });
    Now {
        name: journal.meta.name.clone(),
        script: journal.meta.script.clone(),
        started: journal.has_meta.then_some(journal.meta.started),
        changes: journal.live_count(),
        namespaces,
        drift: Vec::new(),
        // What another topology handed over (its chains) is said once; a handed-over
        // setting's note is printed with the setting.
        notes: journal
            .torn
            .iter()
            .cloned()
            .chain(super::notes(journal.entries().iter().filter(|e| e.live() && e.from.is_some())))
            .collect(),
        running: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Meta;
    use crate::plan::Plan;
    use crate::session::Session;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    const H: NsRef = NsRef::Host;

    #[test]
    fn the_net_effect_not_the_history() {
        let j = Journal::in_memory(Meta { name: "t".into(), ..Default::default() });
        let mut s = Session::new(Box::new(Plan::new("netscript:t")), j, "t", Arc::new(AtomicBool::new(false)));
        let ns1 = s.netns_add("ns1").unwrap();
        s.link_set_up(&ns1, "lo", true).unwrap();
        s.veth_add("veth0", "veth_ns_1", &ns1, &H, None).unwrap();
        s.link_addr(&ns1, "veth0", "10.0.0.2/24".parse().unwrap()).unwrap();
        s.link_set_up(&ns1, "veth0", true).unwrap();
        for p in ["DROP", "ACCEPT", "DROP"] {
            s.fw_policy(&H, Family::Ipv4, "filter", "FORWARD", p).unwrap();
        }
        s.fw_append(&H, Family::Ipv4, "nat", "POSTROUTING", "-s 10.0.0.0/24 -j MASQUERADE").unwrap();
        s.fw_append(&H, Family::Ipv4, "filter", "FORWARD", "-s 10.9.9.9 -j DROP").unwrap();
        s.fw_delete(&H, Family::Ipv4, "filter", "FORWARD", "-s 10.9.9.9 -j DROP").unwrap();
        s.bridge_add("br9", &H).unwrap();
        s.link_addr(&H, "br9", "10.1.0.1/24".parse().unwrap()).unwrap();
        s.link_move(&H, "br9", &ns1).unwrap();
        s.bridge_add("gone", &H).unwrap();
        s.link_del(&H, "gone").unwrap();
        let src = "import socket\nprint(1)\n".to_string();
        s.spawn(&ns1, &["python3".into(), "-c".into(), src]).unwrap();

        // The journal as a second reader sees it.
        let mut j = Journal::in_memory(s.journal().meta.clone());
        for e in s.journal().entries() {
            let seq = j.begin(&e.op, &e.undo).unwrap();
            j.mark(seq, e.state).unwrap();
        }
        let n = now(&j, s.backend());
        let host = &n.namespaces[0];
        assert_eq!(host.ns, "host");
        assert_eq!(host.policies.len(), 1);
        assert_eq!((host.policies[0].chain.as_str(), host.policies[0].policy.as_str()), ("FORWARD", "DROP"));
        assert_eq!(host.rules.len(), 1, "the deleted rule is gone");
        assert_eq!(host.rules[0].rule, "-s 10.0.0.0/24 -j MASQUERADE", "without the ownership comment");
        let names: Vec<_> = host.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["veth_ns_1"], "the moved and the deleted bridge are not in the host");
        assert_eq!(host.links[0].peer.as_deref(), Some("ns1/veth0"));
        let ns1 = &n.namespaces[1];
        assert!(ns1.created && ns1.ns == "ns1");
        let l: Vec<_> = ns1.links.iter().map(|l| (l.name.as_str(), l.kind.as_str(), l.state.as_str())).collect();
        assert_eq!(l, [("lo", "existing", "up"), ("veth0", "veth", "up"), ("br9", "bridge", "down")]);
        assert_eq!(ns1.links[2].addrs, ["10.1.0.1/24"]);
        assert_eq!(ns1.processes.len(), 1);
        assert_eq!(ns1.processes[0].command, "python3 -c 'import socket…");
        assert!(ns1.processes[0].running);
    }
}
