//! Every change netscript makes to a system is one `Op`. An op is data: the
//! journal stores it, a backend applies it, and `render` spells it as the command a
//! person would type (for `plan`, for rollback messages, for `show`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{NsRef, Route, join_words, shell_quote as q};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    AddNetns {
        name: String,
    },
    DelNetns {
        name: String,
    },
    /// `name` is created in `ns`, `peer` directly in `peer_ns`.
    AddVeth {
        ns: NsRef,
        name: String,
        peer: String,
        peer_ns: NsRef,
    },
    AddBridge {
        ns: NsRef,
        name: String,
    },
    DelLink {
        ns: NsRef,
        name: String,
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
    AddAddr {
        ns: NsRef,
        dev: String,
        addr: IpNet,
    },
    DelAddr {
        ns: NsRef,
        dev: String,
        addr: IpNet,
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
        table: String,
        chain: String,
        target: String,
    },
    FwAppend {
        ns: NsRef,
        table: String,
        chain: String,
        rule: Vec<String>,
    },
    FwInsert {
        ns: NsRef,
        table: String,
        chain: String,
        pos: u32,
        rule: Vec<String>,
    },
    FwDelete {
        ns: NsRef,
        table: String,
        chain: String,
        rule: Vec<String>,
    },
    FwNewChain {
        ns: NsRef,
        table: String,
        chain: String,
    },
    /// Flush and remove a user chain.
    FwDelChain {
        ns: NsRef,
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

impl Op {
    /// The equivalent shell command, as iproute2 / iptables / sysctl spell it.
    pub fn render(&self) -> String {
        use Op::*;
        match self {
            AddNetns { name } => format!("ip netns add {}", q(name)),
            DelNetns { name } => format!("ip netns del {}", q(name)),
            AddVeth { ns, name, peer, peer_ns } => match (ns, peer_ns) {
                // Made from inside the namespace with the peer in the host: the same
                // pair reads best as made from the host with the peer sent inside.
                (NsRef::Named(n), NsRef::Host) => {
                    format!("ip link add {} type veth peer name {} netns {}", q(peer), q(name), q(n))
                }
                _ => {
                    let mut s = format!("ip {}link add {} type veth peer name {}", ns.ip_flag(), q(name), q(peer));
                    if let (NsRef::Named(p), true) = (peer_ns, peer_ns != ns) {
                        s += &format!(" netns {}", q(p));
                    }
                    s
                }
            },
            AddBridge { ns, name } => {
                format!("ip {}link add {} type bridge", ns.ip_flag(), q(name))
            }
            DelLink { ns, name } => format!("ip {}link del {}", ns.ip_flag(), q(name)),
            MoveLink { ns, name, to } => {
                let target = match to {
                    NsRef::Named(n) => q(n),
                    NsRef::Host => "$$".into(),
                };
                format!("ip {}link set {} netns {}", ns.ip_flag(), q(name), target)
            }
            SetUp { ns, name, up } => {
                format!("ip {}link set {} {}", ns.ip_flag(), q(name), if *up { "up" } else { "down" })
            }
            AddAddr { ns, dev, addr } => {
                format!("ip {}addr add {addr} dev {}", ns.ip_flag(), q(dev))
            }
            DelAddr { ns, dev, addr } => {
                format!("ip {}addr del {addr} dev {}", ns.ip_flag(), q(dev))
            }
            SetMaster { ns, dev, master } => match master {
                Some(m) => format!("ip {}link set {} master {}", ns.ip_flag(), q(dev), q(m)),
                None => format!("ip {}link set {} nomaster", ns.ip_flag(), q(dev)),
            },
            SetMtu { ns, dev, mtu } => {
                format!("ip {}link set {} mtu {mtu}", ns.ip_flag(), q(dev))
            }
            AddRoute { ns, route } => format!("ip {}route add {}", ns.ip_flag(), route.render_args()),
            DelRoute { ns, route } => format!("ip {}route del {}", ns.ip_flag(), route.render_args()),
            SetSysctl { ns, key, value } => {
                format!("{}sysctl -w {}", ns.exec_prefix(), q(&format!("{key}={value}")))
            }
            FwPolicy { ns, table, chain, target } => {
                format!("{}iptables -t {} -P {} {}", ns.exec_prefix(), q(table), q(chain), q(target))
            }
            FwAppend { ns, table, chain, rule } => {
                format!("{}iptables -t {} -A {} {}", ns.exec_prefix(), q(table), q(chain), join_words(rule))
            }
            FwInsert { ns, table, chain, pos, rule } => {
                format!("{}iptables -t {} -I {} {pos} {}", ns.exec_prefix(), q(table), q(chain), join_words(rule))
            }
            FwDelete { ns, table, chain, rule } => {
                format!("{}iptables -t {} -D {} {}", ns.exec_prefix(), q(table), q(chain), join_words(rule))
            }
            FwNewChain { ns, table, chain } => {
                format!("{}iptables -t {} -N {}", ns.exec_prefix(), q(table), q(chain))
            }
            // Two commands, on two lines (so `set -e` stops at either).
            FwDelChain { ns, table, chain } => {
                let (p, t, c) = (ns.exec_prefix(), q(table), q(chain));
                format!("{p}iptables -t {t} -F {c}\n{p}iptables -t {t} -X {c}")
            }
            Spawn { ns, cmd, .. } => format!("{}{} &", ns.exec_prefix(), join_words(cmd)),
            Kill { pid, .. } => format!("kill {pid}"),
            StopMarked { mark } => format!(
                "grep -lzx {} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | xargs -r kill",
                q(&format!("{}={mark}", crate::sys::process::OWNER_ENV))
            ),
            TraceOn { ns, proto, id } => crate::trace::render_table(ns, proto, *id),
            TraceOff { ns, id } => {
                format!("{}nft delete table inet {}", ns.exec_prefix(), crate::trace::table_name(*id))
            }
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
            AddNetns { name } | DelNetns { name } => NsRef::Named(name.clone()),
            AddVeth { ns, .. }
            | AddBridge { ns, .. }
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
    SysctlGet { ns: NsRef, key: String },
    FwRules { ns: NsRef, table: String },
    Exec { ns: NsRef, cmd: Vec<String> },
    Ping { ns: NsRef, addr: IpAddr, count: u32, timeout: std::time::Duration },
    Tcp { ns: NsRef, addr: IpAddr, port: u16, timeout_secs: u64 },
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
            FwRules { ns, table } => format!("{}iptables -t {} -S", ns.exec_prefix(), q(table)),
            Exec { ns, cmd } => format!("{}{}", ns.exec_prefix(), join_words(cmd)),
            Ping { ns, addr, count, timeout } => {
                format!("{}{}", ns.exec_prefix(), join_words(&ping_argv(*addr, *count, *timeout)))
            }
            Tcp { ns, addr, port, timeout_secs } => {
                format!("{}nc -z -w {timeout_secs} {addr} {port}", ns.exec_prefix())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_article() {
        let ns1 = NsRef::named("ns1");
        assert_eq!(Op::AddNetns { name: "ns1".into() }.render(), "ip netns add ns1");
        assert_eq!(
            Op::AddVeth { ns: NsRef::Host, name: "veth0".into(), peer: "veth_ns_1".into(), peer_ns: NsRef::Host }
                .render(),
            "ip link add veth0 type veth peer name veth_ns_1"
        );
        assert_eq!(
            Op::MoveLink { ns: NsRef::Host, name: "veth0".into(), to: ns1.clone() }.render(),
            "ip link set veth0 netns ns1"
        );
        assert_eq!(
            Op::AddAddr { ns: ns1.clone(), dev: "veth0".into(), addr: "175.18.0.2/24".parse().unwrap() }.render(),
            "ip -n ns1 addr add 175.18.0.2/24 dev veth0"
        );
        assert_eq!(
            Op::SetSysctl { ns: NsRef::Host, key: "net.ipv4.ip_forward".into(), value: "1".into() }.render(),
            "sysctl -w net.ipv4.ip_forward=1"
        );
        assert_eq!(
            Op::FwAppend {
                ns: NsRef::Host,
                table: "nat".into(),
                chain: "POSTROUTING".into(),
                rule: vec!["-s".into(), "175.18.0.0/24".into(), "-j".into(), "MASQUERADE".into()]
            }
            .render(),
            "iptables -t nat -A POSTROUTING -s 175.18.0.0/24 -j MASQUERADE"
        );
    }

    #[test]
    fn journal_form_round_trips() {
        let op = Op::AddVeth { ns: NsRef::Host, name: "a".into(), peer: "b".into(), peer_ns: NsRef::named("x") };
        let s = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<Op>(&s).unwrap(), op);
    }
}
