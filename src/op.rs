//! Every change netscript makes to a system is one `Op`. An op is data: the
//! journal stores it, a backend applies it, and `render` spells it as the command a
//! person would type (for `plan`, for rollback messages, for `show`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{Family, NsId, NsRef, Route, join_words, shell_quote as q};
use crate::qdisc::Qdisc;
use crate::tag_first::tag_first_enum;

/// A link of a kind made by `link.add` (veth and bridge have ops of their own).
/// `parent` / `dev` name a link in the namespace the new link is created from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkKind {
    Vxlan {
        id: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dev: Option<String>,
        port: u16,
    },
    Macvlan {
        parent: String,
        mode: String,
    },
    Macvtap {
        parent: String,
        mode: String,
    },
    Vlan {
        parent: String,
        id: u16,
    },
    Dummy,
    Ifb,
}

impl LinkKind {
    /// The kind as `ip link` names it.
    pub fn name(&self) -> &'static str {
        match self {
            LinkKind::Vxlan { .. } => "vxlan",
            LinkKind::Macvlan { .. } => "macvlan",
            LinkKind::Macvtap { .. } => "macvtap",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Dummy => "dummy",
            LinkKind::Ifb => "ifb",
        }
    }

    /// The link this one sits on (the parent of a macvlan / vlan, a vxlan's `dev`).
    pub fn lower(&self) -> Option<&str> {
        match self {
            LinkKind::Vxlan { dev, .. } => dev.as_deref(),
            LinkKind::Macvlan { parent, .. } | LinkKind::Macvtap { parent, .. } | LinkKind::Vlan { parent, .. } => {
                Some(parent)
            }
            LinkKind::Dummy | LinkKind::Ifb => None,
        }
    }

    /// The words after `type KIND` in `ip link add`.
    fn type_args(&self) -> Vec<String> {
        let mut v = vec![self.name().to_string()];
        match self {
            LinkKind::Vxlan { id, remote, local, dev, port } => {
                v.extend(["id".into(), id.to_string()]);
                if let Some(r) = remote {
                    v.extend(["remote".into(), r.to_string()]);
                }
                if let Some(l) = local {
                    v.extend(["local".into(), l.to_string()]);
                }
                if let Some(d) = dev {
                    v.extend(["dev".into(), d.clone()]);
                }
                v.extend(["dstport".into(), port.to_string()]);
            }
            LinkKind::Macvlan { mode, .. } | LinkKind::Macvtap { mode, .. } => v.extend(["mode".into(), mode.clone()]),
            LinkKind::Vlan { id, .. } => v.extend(["id".into(), id.to_string()]),
            LinkKind::Dummy | LinkKind::Ifb => {}
        }
        v
    }
}

/// Bridge options (`bridge.add(name, {vlan_filtering =, stp =})`); None: left as is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BridgeOpts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_filtering: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stp: Option<bool>,
}

impl BridgeOpts {
    fn words(&self) -> Vec<String> {
        let mut v = Vec::new();
        let b = |x: bool| if x { "1" } else { "0" }.to_string();
        if let Some(x) = self.vlan_filtering {
            v.extend(["vlan_filtering".into(), b(x)]);
        }
        if let Some(x) = self.stp {
            v.extend(["stp_state".into(), b(x)]);
        }
        v
    }
}

/// Flags of a bridge port (`Link:bridge_port{hairpin =, isolated =, learning =,
/// flood =}`); None: left as is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortFlags {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hairpin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flood: Option<bool>,
}

impl PortFlags {
    /// (name, value) of the flags that are set, in a fixed order.
    pub fn set(&self) -> Vec<(&'static str, bool)> {
        [("hairpin", self.hairpin), ("isolated", self.isolated), ("learning", self.learning), ("flood", self.flood)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect()
    }

    /// Only the flags `like` sets, with the values of `self`.
    pub fn restricted_to(&self, like: &PortFlags) -> PortFlags {
        PortFlags {
            hairpin: like.hairpin.and(self.hairpin),
            isolated: like.isolated.and(self.isolated),
            learning: like.learning.and(self.learning),
            flood: like.flood.and(self.flood),
        }
    }
}

// One change, as the journal writes it: `{"op":"add_netns","name":"n1"}`, the tag
// first. Declared through `tag_first_enum!` (src/tag_first.rs) so that the journal
// reads an op without first buffering it (its `Deserialize` comes from there).
tag_first_enum! {
#[serde(tag = "op", rename_all = "snake_case")]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Op as "Op" {
    AddNetns {
        name: String,
    },
    DelNetns {
        name: String,
        /// The namespace's identity, recorded when netscript created it (the nsfs
        /// inode behind /run/netns/NAME): deleted only while the name still holds it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<NsId>,
        /// Its lo carries the topology's mark, set before its name existed: while its
        /// identity is not recorded (a crash between its creation and the record),
        /// deleted only if its lo is so marked. False in records from before the mark
        /// (deleted by name, as then).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        marked: bool,
    },
    /// `name` is created in `ns`, `peer` directly in `peer_ns`; each end with
    /// `queues` transmit and receive queues (None: the kernel's default, one per CPU
    /// of which it then uses one; records of netscript before 2026-12-02 have none).
    AddVeth {
        ns: NsRef,
        name: String,
        peer: String,
        peer_ns: NsRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queues: Option<u32>,
    },
    AddBridge {
        ns: NsRef,
        name: String,
    },
    /// A link of another kind, made in `ns` from `from` (where its parent / underlay
    /// link lives; the same namespace unless the link is sent elsewhere at creation).
    AddLink {
        ns: NsRef,
        name: String,
        link: LinkKind,
        from: NsRef,
    },
    SetBridge {
        ns: NsRef,
        name: String,
        opts: BridgeOpts,
    },
    SetBridgePort {
        ns: NsRef,
        dev: String,
        flags: PortFlags,
    },
    /// Makes `qdisc` the root qdisc of `dev` (`tc qdisc replace ... root`). `over`,
    /// in an undo: made only while the root qdisc has this handle (`qdisc::
    /// DEFAULT_HANDLE`: the kernel's own), the one the change being undone left
    /// there; None: whatever is there (a script's change, and records from before
    /// the mark).
    SetQdisc {
        ns: NsRef,
        dev: String,
        qdisc: Qdisc,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        over: Option<u16>,
    },
    /// Gives `dev` back the root qdisc the kernel attaches by default; `over` as for
    /// `SetQdisc`.
    DelQdisc {
        ns: NsRef,
        dev: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        over: Option<u16>,
    },
    DelLink {
        ns: NsRef,
        name: String,
        /// The link's index, recorded when netscript created it: deleted only while
        /// the name still belongs to that link (and it carries the topology's mark).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ifindex: Option<u32>,
    },
    MoveLink {
        ns: NsRef,
        name: String,
        to: NsRef,
    },
    SetUp {
        ns: NsRef,
        name: String,
        up: bool,
    },
    /// `nodad`: IPv6 only, no duplicate address detection (usable at once).
    AddAddr {
        ns: NsRef,
        dev: String,
        addr: IpNet,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        nodad: bool,
        /// The address's protocol (IFA_PROTO): `ADDR_PROTO`, netscript's mark, for an
        /// address it adds; the one it had for an address it gives back; None: none
        /// (and records from before the mark).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<u8>,
    },
    /// `proto`: deleted only while the address carries this protocol (None: any, as
    /// in records from before the mark).
    DelAddr {
        ns: NsRef,
        dev: String,
        addr: IpNet,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<u8>,
    },
    /// Enslave `dev` to `master` (None: release it).
    SetMaster {
        ns: NsRef,
        dev: String,
        master: Option<String>,
    },
    SetMtu {
        ns: NsRef,
        dev: String,
        mtu: u32,
    },
    AddRoute {
        ns: NsRef,
        route: Route,
    },
    DelRoute {
        ns: NsRef,
        route: Route,
    },
    SetSysctl {
        ns: NsRef,
        key: String,
        value: String,
    },
    FwPolicy {
        ns: NsRef,
        /// iptables or ip6tables (absent in the journal: IPv4).
        #[serde(default, skip_serializing_if = "Family::is_ipv4")]
        family: Family,
        table: String,
        chain: String,
        target: String,
    },
    FwAppend {
        ns: NsRef,
        /// iptables or ip6tables (absent in the journal: IPv4).
        #[serde(default, skip_serializing_if = "Family::is_ipv4")]
        family: Family,
        table: String,
        chain: String,
        rule: Vec<String>,
    },
    FwInsert {
        ns: NsRef,
        /// iptables or ip6tables (absent in the journal: IPv4).
        #[serde(default, skip_serializing_if = "Family::is_ipv4")]
        family: Family,
        table: String,
        chain: String,
        pos: u32,
        rule: Vec<String>,
    },
    FwDelete {
        ns: NsRef,
        /// iptables or ip6tables (absent in the journal: IPv4).
        #[serde(default, skip_serializing_if = "Family::is_ipv4")]
        family: Family,
        table: String,
        chain: String,
        rule: Vec<String>,
    },
    FwNewChain {
        ns: NsRef,
        /// iptables or ip6tables (absent in the journal: IPv4).
        #[serde(default, skip_serializing_if = "Family::is_ipv4")]
        family: Family,
        table: String,
        chain: String,
    },
    /// Flush and remove a user chain.
    FwDelChain {
        ns: NsRef,
        /// iptables or ip6tables (absent in the journal: IPv4).
        #[serde(default, skip_serializing_if = "Family::is_ipv4")]
        family: Family,
        table: String,
        chain: String,
    },
    /// A background process (recorded once it runs; `pid` and `start` identify it).
    /// `mark` is the value of NETSCRIPT_OWNER in the process's environment: it finds
    /// the process when a crash left its pid unrecorded.
    Spawn {
        ns: NsRef,
        cmd: Vec<String>,
        pid: u32,
        start: u64,
        #[serde(default)]
        mark: String,
    },
    /// Stop a process netscript started (the inverse of Spawn).
    Kill {
        pid: u32,
        start: u64,
    },
    /// Stop the processes whose environment carries NETSCRIPT_OWNER=`mark` (the undo
    /// of a spawn until its pid is journaled).
    StopMarked {
        mark: String,
    },
    /// A `trace`'s temporary nftables table (`netscript_trace_<id>`, inet family) that
    /// sets nftrace on the probe's packets only (`proto` "icmp": ICMP id `id`; "tcp" /
    /// "udp": source or destination port `id`). Removed when the trace ends.
    TraceOn {
        ns: NsRef,
        proto: String,
        id: u16,
    },
    /// Removes the table of `TraceOn`.
    TraceOff {
        ns: NsRef,
        id: u16,
    },
}
}

impl Op {
    /// The undo of a deletion of an object netscript created, as a plain deletion
    /// by name (what `DelLink { ns, name }` was before identities were recorded).
    pub fn del_link(ns: &NsRef, name: &str) -> Op {
        Op::DelLink { ns: ns.clone(), name: name.to_string(), ifindex: None }
    }

    pub fn del_netns(name: &str) -> Op {
        Op::DelNetns { name: name.to_string(), id: None, marked: true }
    }

    /// The equivalent shell command, as iproute2 / iptables / sysctl spell it.
    pub fn render(&self) -> String {
        use Op::*;
        match self {
            AddNetns { name } => format!("ip netns add {}", q(name)),
            DelNetns { name, .. } => format!("ip netns del {}", q(name)),
            AddVeth { ns, name, peer, peer_ns, queues } => {
                let qs = queues.map(|n| format!(" numtxqueues {n} numrxqueues {n}")).unwrap_or_default();
                match (ns, peer_ns) {
                    // Made from inside the namespace with the peer in the host: the same
                    // pair reads best as made from the host with the peer sent inside.
                    (NsRef::Named(n), NsRef::Host) => format!(
                        "ip link add {}{qs} type veth peer name {}{qs} netns {}",
                        link_arg("name", peer),
                        q(name),
                        q(n)
                    ),
                    _ => {
                        let mut s = format!(
                            "ip {}link add {}{qs} type veth peer name {}{qs}",
                            ns.ip_flag(),
                            link_arg("name", name),
                            q(peer)
                        );
                        if let (NsRef::Named(p), true) = (peer_ns, peer_ns != ns) {
                            s += &format!(" netns {}", q(p));
                        }
                        s
                    }
                }
            }
            AddBridge { ns, name } => {
                format!("ip {}link add {} type bridge", ns.ip_flag(), link_arg("name", name))
            }
            AddLink { ns, name, link, from } => {
                let mut s = format!("ip {}link add ", from.ip_flag());
                s += &match (link.lower(), matches!(link, LinkKind::Vxlan { .. })) {
                    (Some(p), false) => format!("link {} name {}", q(p), q(name)),
                    _ => link_arg("name", name),
                };
                if from != ns {
                    s += &format!(" netns {}", ns.name().map(q).unwrap_or_else(|| "$$".into()));
                }
                format!("{s} type {}", join_words(&link.type_args()))
            }
            SetBridge { ns, name, opts } => {
                format!("ip {}link set dev {} type bridge {}", ns.ip_flag(), q(name), join_words(&opts.words()))
            }
            SetBridgePort { ns, dev, flags } => {
                let words: Vec<String> = flags
                    .set()
                    .iter()
                    .flat_map(|(k, v)| [k.to_string(), if *v { "on" } else { "off" }.into()])
                    .collect();
                format!("ip {}link set dev {} type bridge_slave {}", ns.ip_flag(), q(dev), join_words(&words))
            }
            SetQdisc { ns, dev, qdisc, .. } => {
                let words = qdisc.command_words(false);
                format!("tc {}qdisc replace dev {} root {}", ns.ip_flag(), q(dev), join_words(&words))
            }
            DelQdisc { ns, dev, .. } => format!("tc {}qdisc del dev {} root", ns.ip_flag(), q(dev)),
            DelLink { ns, name, .. } => format!("ip {}link del {}", ns.ip_flag(), link_arg("dev", name)),
            MoveLink { ns, name, to } => {
                let target = match to {
                    NsRef::Named(n) => q(n),
                    NsRef::Host => "$$".into(),
                };
                format!("ip {}link set {} netns {}", ns.ip_flag(), link_arg("dev", name), target)
            }
            SetUp { ns, name, up } => {
                format!("ip {}link set {} {}", ns.ip_flag(), link_arg("dev", name), if *up { "up" } else { "down" })
            }
            // netscript's own mark is left out, as for routes (see `Route`'s Display).
            AddAddr { ns, dev, addr, nodad, proto } => {
                let nodad = if *nodad { " nodad" } else { "" };
                let proto = match proto {
                    None | Some(crate::model::ADDR_PROTO) => String::new(),
                    Some(p) => format!(" proto {p}"),
                };
                format!("ip {}addr add {addr} dev {}{nodad}{proto}", ns.ip_flag(), q(dev))
            }
            DelAddr { ns, dev, addr, .. } => {
                format!("ip {}addr del {addr} dev {}", ns.ip_flag(), q(dev))
            }
            SetMaster { ns, dev, master } => match master {
                Some(m) => format!("ip {}link set {} master {}", ns.ip_flag(), link_arg("dev", dev), q(m)),
                None => format!("ip {}link set {} nomaster", ns.ip_flag(), link_arg("dev", dev)),
            },
            SetMtu { ns, dev, mtu } => {
                format!("ip {}link set {} mtu {mtu}", ns.ip_flag(), link_arg("dev", dev))
            }
            AddRoute { ns, route } => {
                format!("ip {}{}route add {}", route.family_flag(), ns.ip_flag(), route.render_args())
            }
            DelRoute { ns, route } => {
                format!("ip {}{}route del {}", route.family_flag(), ns.ip_flag(), route.to_delete().render_args())
            }
            SetSysctl { ns, key, value } => {
                format!("{}sysctl -w {}", ns.exec_prefix(), q(&format!("{key}={value}")))
            }
            FwPolicy { ns, family, table, chain, target } => {
                format!("{}{} -t {} -P {} {}", ns.exec_prefix(), family.cmd(), q(table), q(chain), q(target))
            }
            FwAppend { ns, family, table, chain, rule } => {
                let (p, f, t, c) = (ns.exec_prefix(), family.cmd(), q(table), q(chain));
                format!("{p}{f} -t {t} -A {c} {}", join_words(rule))
            }
            FwInsert { ns, family, table, chain, pos, rule } => {
                let (p, f, t, c) = (ns.exec_prefix(), family.cmd(), q(table), q(chain));
                format!("{p}{f} -t {t} -I {c} {pos} {}", join_words(rule))
            }
            FwDelete { ns, family, table, chain, rule } => {
                let (p, f, t, c) = (ns.exec_prefix(), family.cmd(), q(table), q(chain));
                format!("{p}{f} -t {t} -D {c} {}", join_words(rule))
            }
            FwNewChain { ns, family, table, chain } => {
                format!("{}{} -t {} -N {}", ns.exec_prefix(), family.cmd(), q(table), q(chain))
            }
            // Two commands, on two lines (so `set -e` stops at either).
            FwDelChain { ns, family, table, chain } => {
                let (p, f, t, c) = (ns.exec_prefix(), family.cmd(), q(table), q(chain));
                format!("{p}{f} -t {t} -F {c}\n{p}{f} -t {t} -X {c}")
            }
            Spawn { ns, cmd, .. } => format!("{}{} &", ns.exec_prefix(), join_words(cmd)),
            // As `sys::process::stop`: only the process netscript started (the start
            // time it recorded, field 22 of its stat: 20 after the name, which may hold
            // spaces and parentheses), with its group (spawn makes it the leader);
            // never pid 1 or 0 (the group kill would be `kill -- -1`: everything).
            Kill { pid, .. } if *pid <= 1 => format!("# process {pid} is not a process netscript started: left alone"),
            Kill { pid, start } => format!(
                "[ \"$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null | cut -d' ' -f20)\" = {start} ] && kill -- -{pid}"
            ),
            StopMarked { mark } => format!(
                "grep -lzxF -e {} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | xargs -r kill",
                q(&format!("{}={mark}", crate::model::OWNER_ENV))
            ),
            TraceOn { ns, proto, id } => crate::trace::render_table(ns, proto, *id),
            TraceOff { ns, id } => {
                format!("{}nft delete table inet {}", ns.exec_prefix(), crate::trace::table_name(*id))
            }
        }
    }

    /// The family of a firewall change (None for other changes).
    pub fn fw_family(&self) -> Option<Family> {
        use Op::*;
        match self {
            FwPolicy { family, .. }
            | FwAppend { family, .. }
            | FwInsert { family, .. }
            | FwDelete { family, .. }
            | FwNewChain { family, .. }
            | FwDelChain { family, .. } => Some(*family),
            _ => None,
        }
    }

    /// Whether this is a firewall change.
    pub fn is_firewall(&self) -> bool {
        matches!(
            self,
            Op::FwPolicy { .. }
                | Op::FwAppend { .. }
                | Op::FwInsert { .. }
                | Op::FwDelete { .. }
                | Op::FwNewChain { .. }
                | Op::FwDelChain { .. }
        )
    }

    /// The namespace this op acts in (for grouping in `show`).
    pub fn ns(&self) -> NsRef {
        use Op::*;
        match self {
            AddNetns { name } | DelNetns { name, .. } => NsRef::Named(name.clone()),
            AddVeth { ns, .. }
            | AddBridge { ns, .. }
            | AddLink { ns, .. }
            | SetBridge { ns, .. }
            | SetBridgePort { ns, .. }
            | SetQdisc { ns, .. }
            | DelQdisc { ns, .. }
            | DelLink { ns, .. }
            | MoveLink { ns, .. }
            | SetUp { ns, .. }
            | AddAddr { ns, .. }
            | DelAddr { ns, .. }
            | SetMaster { ns, .. }
            | SetMtu { ns, .. }
            | AddRoute { ns, .. }
            | DelRoute { ns, .. }
            | SetSysctl { ns, .. }
            | FwPolicy { ns, .. }
            | FwAppend { ns, .. }
            | FwInsert { ns, .. }
            | FwDelete { ns, .. }
            | FwNewChain { ns, .. }
            | FwDelChain { ns, .. }
            | Spawn { ns, .. }
            | TraceOn { ns, .. }
            | TraceOff { ns, .. } => ns.clone(),
            Kill { .. } | StopMarked { .. } => NsRef::Host,
        }
    }
}

/// The words of `ip link` that a link name could be read as: iproute2 takes some
/// of them by a prefix too (`d` is `dynamic`), so a name that is one of them or the
/// start of one is written after its keyword.
const IP_LINK_WORDS: &[&str] = &[
    "add",
    "address",
    "addrgenmode",
    "alias",
    "allmulticast",
    "altname",
    "arp",
    "broadcast",
    "brd",
    "carrier",
    "delete",
    "dev",
    "down",
    "dynamic",
    "gro_max_size",
    "gro_ipv4_max_size",
    "group",
    "gso_max_segs",
    "gso_max_size",
    "gso_ipv4_max_size",
    "help",
    "index",
    "link",
    "link-netns",
    "link-netnsid",
    "master",
    "mode",
    "mtu",
    "multicast",
    "name",
    "netns",
    "nomaster",
    "numrxqueues",
    "numtxqueues",
    "parentdev",
    "promisc",
    "protodown",
    "protodown_reason",
    "qlen",
    "set",
    "state",
    "trailers",
    "txqlen",
    "txqueuelen",
    "type",
    "up",
    "vf",
    "vrf",
    "xdp",
    "xdpdrv",
    "xdpgeneric",
    "xdpoffload",
];

/// A link name where `ip link` expects one: quoted, and after `keyword` (`dev`, or
/// `name` for `ip link add`) when iproute2 would read it as one of its words
/// (`ip link add up type bridge` makes a bridge named bridge0, up).
fn link_arg(keyword: &str, name: &str) -> String {
    if IP_LINK_WORDS.iter().any(|w| w.starts_with(name)) { format!("{keyword} {}", q(name)) } else { q(name) }
}

/// Stops every process in a namespace and waits until they are gone: how a plan
/// undoes `spawn` in a namespace the script made, without knowing the pids.
pub fn render_stop_all_in(ns: &str) -> String {
    let n = q(ns);
    format!(
        "ip netns pids {n} | xargs -r kill 2>/dev/null || true; while [ -n \"$(ip netns pids {n})\" ]; do sleep 0.1; done"
    )
}

/// A call that only reads the system (`sysctl.get`, `fw.rules`, `Netns:exec`, `ping`,
/// `tcp`). It changes nothing, so it is not an `Op` and never journaled; `render`
/// spells it as the command a person would type to ask the same question (`plan`
/// shows it as a comment).
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    SysctlGet {
        ns: NsRef,
        key: String,
    },
    FwRules {
        ns: NsRef,
        family: Family,
        table: String,
    },
    Exec {
        ns: NsRef,
        cmd: Vec<String>,
    },
    Ping {
        ns: NsRef,
        addr: IpAddr,
        count: u32,
        timeout: std::time::Duration,
    },
    Tcp {
        ns: NsRef,
        addr: IpAddr,
        port: u16,
        timeout_secs: u64,
    },
    /// `Netns:trace`: shown as the probe it sends.
    Trace {
        ns: NsRef,
        addr: IpAddr,
        proto: crate::trace::Proto,
    },
}

/// The ping command behind `Netns:ping`: `count` echo requests, each waiting
/// `timeout` for its reply (fractions of a second allowed).
pub fn ping_argv(addr: IpAddr, count: u32, timeout: std::time::Duration) -> Vec<String> {
    let w = format!("{}", (timeout.as_millis() as f64) / 1000.0);
    ["ping", "-n", "-q", "-c", &count.to_string(), "-W", &w, &addr.to_string()].iter().map(|s| s.to_string()).collect()
}

impl Probe {
    pub fn render(&self) -> String {
        use Probe::*;
        match self {
            SysctlGet { ns, key } => format!("{}sysctl -n {}", ns.exec_prefix(), q(key)),
            FwRules { ns, family, table } => format!("{}{} -t {} -S", ns.exec_prefix(), family.cmd(), q(table)),
            Exec { ns, cmd } => format!("{}{}", ns.exec_prefix(), join_words(cmd)),
            Ping { ns, addr, count, timeout } => {
                format!("{}{}", ns.exec_prefix(), join_words(&ping_argv(*addr, *count, *timeout)))
            }
            Tcp { ns, addr, port, timeout_secs } => {
                format!("{}nc -z -w {timeout_secs} {addr} {port}", ns.exec_prefix())
            }
            Trace { ns, addr, proto } => match proto {
                crate::trace::Proto::Icmp => format!("{}ping -n -q -c 1 {addr}", ns.exec_prefix()),
                crate::trace::Proto::Tcp(p) => format!("{}nc -z {addr} {p}", ns.exec_prefix()),
                crate::trace::Proto::Udp(p) => format!("{}nc -u -z {addr} {p}", ns.exec_prefix()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_named_like_an_ip_word_is_written_after_its_keyword() {
        let h = NsRef::Host;
        assert_eq!(Op::SetUp { ns: h.clone(), name: "up".into(), up: true }.render(), "ip link set dev up up");
        assert_eq!(Op::AddBridge { ns: h.clone(), name: "d".into() }.render(), "ip link add name d type bridge");
        assert_eq!(Op::del_link(&h, "help").render(), "ip link del dev help");
        let vlan = LinkKind::Vlan { parent: "eth0".into(), id: 5 };
        assert_eq!(
            Op::AddLink { ns: h.clone(), name: "up".into(), link: vlan, from: h.clone() }.render(),
            "ip link add link eth0 name up type vlan id 5"
        );
        assert_eq!(
            Op::SetMaster { ns: h.clone(), dev: "master".into(), master: Some("up".into()) }.render(),
            "ip link set dev master master up"
        );
        // Other names as a person writes them.
        assert_eq!(Op::SetUp { ns: h.clone(), name: "veth0".into(), up: false }.render(), "ip link set veth0 down");
        assert_eq!(Op::SetMtu { ns: h, dev: "br0".into(), mtu: 1400 }.render(), "ip link set br0 mtu 1400");
    }

    #[test]
    fn renders_like_the_article() {
        let ns1 = NsRef::named("ns1");
        assert_eq!(Op::AddNetns { name: "ns1".into() }.render(), "ip netns add ns1");
        assert_eq!(
            Op::AddVeth {
                ns: NsRef::Host,
                name: "veth0".into(),
                peer: "veth_ns_1".into(),
                peer_ns: NsRef::Host,
                queues: None
            }
            .render(),
            "ip link add veth0 type veth peer name veth_ns_1"
        );
        assert_eq!(
            Op::MoveLink { ns: NsRef::Host, name: "veth0".into(), to: ns1.clone() }.render(),
            "ip link set veth0 netns ns1"
        );
        assert_eq!(
            Op::AddAddr {
                ns: ns1.clone(),
                dev: "veth0".into(),
                addr: "175.18.0.2/24".parse().unwrap(),
                nodad: false,
                proto: Some(crate::model::ADDR_PROTO),
            }
            .render(),
            "ip -n ns1 addr add 175.18.0.2/24 dev veth0"
        );
        assert_eq!(
            Op::SetSysctl { ns: NsRef::Host, key: "net.ipv4.ip_forward".into(), value: "1".into() }.render(),
            "sysctl -w net.ipv4.ip_forward=1"
        );
        assert_eq!(
            Op::FwAppend {
                ns: NsRef::Host,
                family: Family::Ipv4,
                table: "nat".into(),
                chain: "POSTROUTING".into(),
                rule: vec!["-s".into(), "175.18.0.0/24".into(), "-j".into(), "MASQUERADE".into()]
            }
            .render(),
            "iptables -t nat -A POSTROUTING -s 175.18.0.0/24 -j MASQUERADE"
        );
        assert_eq!(
            Op::FwAppend {
                ns: ns1.clone(),
                family: Family::Ipv6,
                table: "nat".into(),
                chain: "POSTROUTING".into(),
                rule: vec!["-s".into(), "fd00::/64".into(), "-j".into(), "MASQUERADE".into()]
            }
            .render(),
            "ip netns exec ns1 ip6tables -t nat -A POSTROUTING -s fd00::/64 -j MASQUERADE"
        );
    }

    #[test]
    fn renders_new_kinds_and_qdiscs() {
        let ns1 = NsRef::named("ns1");
        let vx = LinkKind::Vxlan {
            id: 42,
            remote: Some("10.0.0.2".parse().unwrap()),
            local: Some("10.0.0.1".parse().unwrap()),
            dev: Some("eth0".into()),
            port: 4789,
        };
        assert_eq!(
            Op::AddLink { ns: ns1.clone(), name: "vx0".into(), link: vx, from: ns1.clone() }.render(),
            "ip -n ns1 link add vx0 type vxlan id 42 remote 10.0.0.2 local 10.0.0.1 dev eth0 dstport 4789"
        );
        let mv = LinkKind::Macvlan { parent: "br0".into(), mode: "bridge".into() };
        assert_eq!(
            Op::AddLink { ns: ns1.clone(), name: "mv0".into(), link: mv, from: NsRef::Host }.render(),
            "ip link add link br0 name mv0 netns ns1 type macvlan mode bridge"
        );
        assert_eq!(
            Op::AddLink { ns: NsRef::Host, name: "d 0".into(), link: LinkKind::Dummy, from: NsRef::Host }.render(),
            "ip link add 'd 0' type dummy"
        );
        // netscript's own handle (its mark) is left out, as a link's alias is; another
        // one, of a qdisc put back, is part of what is put back.
        let q = Qdisc { kind: "netem".into(), args: vec!["delay".into(), "50ms".into()], handle: Some(0x4e53) };
        assert_eq!(
            Op::SetQdisc { ns: ns1.clone(), dev: "veth0".into(), qdisc: q, over: None }.render(),
            "tc -n ns1 qdisc replace dev veth0 root netem delay 50ms"
        );
        let q = Qdisc { kind: "pfifo".into(), args: vec!["limit".into(), "7".into()], handle: Some(0x8001) };
        assert_eq!(
            Op::SetQdisc { ns: NsRef::Host, dev: "d0".into(), qdisc: q, over: Some(0x4e54) }.render(),
            "tc qdisc replace dev d0 root handle 8001: pfifo limit 7"
        );
        let flags = PortFlags { hairpin: Some(true), learning: Some(false), ..Default::default() };
        assert_eq!(
            Op::SetBridgePort { ns: NsRef::Host, dev: "v1".into(), flags }.render(),
            "ip link set dev v1 type bridge_slave hairpin on learning off"
        );
        let opts = BridgeOpts { vlan_filtering: Some(true), stp: Some(false) };
        assert_eq!(
            Op::SetBridge { ns: NsRef::Host, name: "br0".into(), opts }.render(),
            "ip link set dev br0 type bridge vlan_filtering 1 stp_state 0"
        );
    }

    #[test]
    fn a_veths_queues_are_rendered_on_both_ends() {
        let ns1 = NsRef::named("ns1");
        let veth = |ns: &NsRef, peer_ns: &NsRef, queues| Op::AddVeth {
            ns: ns.clone(),
            name: "eth0".into(),
            peer: "vh".into(),
            peer_ns: peer_ns.clone(),
            queues,
        };
        assert_eq!(
            veth(&NsRef::Host, &ns1, Some(4)).render(),
            "ip link add eth0 numtxqueues 4 numrxqueues 4 type veth peer name vh numtxqueues 4 numrxqueues 4 netns ns1"
        );
        // Made inside with the peer outside: read as made from the host.
        assert_eq!(
            veth(&ns1, &NsRef::Host, Some(1)).render(),
            "ip link add vh numtxqueues 1 numrxqueues 1 type veth peer name eth0 numtxqueues 1 numrxqueues 1 netns ns1"
        );
        // A record without them (netscript before they were set): the kernel's default.
        assert_eq!(veth(&ns1, &ns1, None).render(), "ip -n ns1 link add eth0 type veth peer name vh");
        // Such a record reads back without them; a new one keeps its count.
        for queues in [None, Some(1)] {
            let line = serde_json::to_string(&veth(&ns1, &NsRef::Host, queues)).unwrap();
            assert_eq!(line.contains("queues"), queues.is_some(), "{line}");
            assert_eq!(serde_json::from_str::<Op>(&line).unwrap(), veth(&ns1, &NsRef::Host, queues));
        }
    }

    #[test]
    fn journal_form_round_trips() {
        let op = Op::AddVeth {
            ns: NsRef::Host,
            name: "a".into(),
            peer: "b".into(),
            peer_ns: NsRef::named("x"),
            queues: None,
        };
        let s = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<Op>(&s).unwrap(), op);
    }

    /// A qdisc's handle and an undo's expectation are written when there are some,
    /// and a record from before them (neither) reads as "any handle, whatever is there".
    #[test]
    fn qdisc_marks_round_trip_and_old_records_read() {
        let q = Qdisc { kind: "tbf".into(), args: vec!["rate".into(), "8mbit".into()], handle: Some(0x8001) };
        let op = Op::SetQdisc { ns: NsRef::Host, dev: "d0".into(), qdisc: q, over: Some(0x4e53) };
        let s = serde_json::to_string(&op).unwrap();
        assert!(s.contains("\"handle\":32769") && s.contains("\"over\":20051"), "{s}");
        assert_eq!(serde_json::from_str::<Op>(&s).unwrap(), op);
        let old = r#"{"op":"set_qdisc","ns":null,"dev":"d0","qdisc":{"kind":"tbf","args":["rate","8mbit"]}}"#;
        let Op::SetQdisc { qdisc, over, .. } = serde_json::from_str::<Op>(old).unwrap() else { panic!() };
        assert_eq!((qdisc.handle, over), (None, None));
        let old = r#"{"op":"del_qdisc","ns":null,"dev":"d0"}"#;
        assert!(matches!(serde_json::from_str::<Op>(old).unwrap(), Op::DelQdisc { over: None, .. }));
    }

    #[test]
    fn firewall_family_is_optional_in_the_journal() {
        let rule = vec!["-j".to_string(), "DROP".into()];
        let v4 =
            Op::FwAppend { ns: NsRef::Host, family: Family::Ipv4, table: "filter".into(), chain: "INPUT".into(), rule };
        // IPv4 is written as before the field existed, and old records read as IPv4.
        let s = serde_json::to_string(&v4).unwrap();
        assert!(!s.contains("family"), "{s}");
        assert_eq!(serde_json::from_str::<Op>(&s).unwrap(), v4);
        let mut v6 = v4.clone();
        if let Op::FwAppend { family, .. } = &mut v6 {
            *family = Family::Ipv6;
        }
        let s = serde_json::to_string(&v6).unwrap();
        assert!(s.contains("\"family\":\"ipv6\""), "{s}");
        assert_eq!(serde_json::from_str::<Op>(&s).unwrap(), v6);
        assert_eq!(v6.fw_family(), Some(Family::Ipv6));
    }

    /// The printed stop of a process stops the process netscript started, with its
    /// group, and nothing that took its pid: a start time that differs leaves it
    /// running. Pid 1 is never printed as a stop.
    #[test]
    fn a_printed_process_stop_checks_the_start_time() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        let pid = child.id();
        let start = crate::sys::process::start_time(pid).unwrap();
        let run = |op: Op| {
            let c = op.render();
            assert!(std::process::Command::new("bash").args(["-c", &c]).status().is_ok(), "{c}");
        };
        run(Op::Kill { pid, start: start + 1 });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(child.try_wait().unwrap().is_none(), "a process with another start time was stopped");
        run(Op::Kill { pid, start });
        let t0 = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5), "process {pid} still runs");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let one = Op::Kill { pid: 1, start: 0 }.render();
        assert!(one.starts_with("# ") && !one.contains('\n'), "{one}");
    }
}
