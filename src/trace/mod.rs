//! `trace`: why a packet goes where it goes. One probe (an ICMP echo, a TCP connect
//! or a UDP datagram) with a source port / ICMP id of its own; a temporary nftables
//! table in each namespace of the topology sets `meta nftrace` on the probe's packets
//! (and their replies) only, `xtables-monitor --trace` in each namespace reports every
//! rule and policy they meet, in iptables syntax; the walk is put back in order and
//! explained (the deciding rule, or, when no rule saw the loss, the kernel's routing
//! answer: no route, no route back, a martian).
//!
//! No Lua and no printing here: `Trace` is data; `Display` is its readable walk.
//! The plan back end answers with the same type from its model (`source: Model`).

pub mod kernel;
pub mod probe;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::model::{NsRef, shell_quote};

/// What the probe is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Icmp,
    Tcp(u16),
    Udp(u16),
}

impl Proto {
    pub fn name(&self) -> &'static str {
        match self {
            Proto::Icmp => "icmp",
            Proto::Tcp(_) => "tcp",
            Proto::Udp(_) => "udp",
        }
    }
    pub fn port(&self) -> Option<u16> {
        match self {
            Proto::Icmp => None,
            Proto::Tcp(p) | Proto::Udp(p) => Some(*p),
        }
    }
}

/// A probe: what, from which source address (None: the kernel's choice), how long to
/// wait, and the id (source port, or ICMP id) that marks its packets.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub proto: Proto,
    pub src: Option<IpAddr>,
    pub timeout: Duration,
    pub id: u16,
}

/// Where a trace's explanation comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The real kernel's trace events and routing answers.
    Kernel,
    /// The plan's model (src/plan/reach.rs), or a fallback where the kernel cannot
    /// trace (iptables-legacy).
    Model,
}

/// How a back end answers `trace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// From the kernel: the session puts the trace tables (`Op::TraceOn`) first.
    Kernel,
    /// From its own model, with nothing to put in place (the plan).
    Model,
    /// It cannot trace, for this reason: the session answers from a model of what
    /// the topology's journal made, marked as such.
    Unavailable(String),
}

/// One step of the walk: a packet met a hook (and a table's chain there) in a
/// namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Hop {
    /// "host" or the namespace's name.
    pub ns: String,
    /// Part of the answer's way back.
    pub reply: bool,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING, or ROUTING (a routing
    /// decision no rule saw).
    pub hook: String,
    pub table: Option<String>,
    pub chain: Option<String>,
    /// The rule that matched, as iptables-save spells it (None: the chain's policy,
    /// or the packet was only seen).
    pub rule: Option<String>,
    /// ACCEPT, DROP, REJECT, DNAT, ..., "policy DROP", "seen", "no route", ...
    pub verdict: String,
    /// An address / port rewrite seen after this hop ("dst 127.0.0.1:8088 -> 175.18.0.2:80").
    pub rewrite: Option<String>,
    /// The packet as it was here ("175.18.0.2:40000 -> 175.18.0.3:80").
    pub packet: String,
    /// This hop decided the outcome.
    pub deciding: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trace {
    pub delivered: bool,
    pub reason: String,
    pub hops: Vec<Hop>,
    pub source: Source,
    /// What could not be traced and why (e.g. iptables-legacy), when the answer is a
    /// fallback.
    pub note: Option<String>,
}

impl Trace {
    /// The deciding hop, if any.
    pub fn deciding(&self) -> Option<&Hop> {
        self.hops.iter().find(|h| h.deciding)
    }
}

pub fn ns_label(ns: &NsRef) -> String {
    ns.name().unwrap_or("host").to_string()
}

/// "the host namespace" / "ns1", as reasons name a namespace.
pub fn ns_words(ns: &str) -> String {
    if ns == "host" { "the host namespace".into() } else { ns.to_string() }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = format!("{:<8} {:<11}", self.ns, self.hook);
        let dev = match (&self.iif, &self.oif) {
            (Some(i), Some(o)) => format!("{i} -> {o}"),
            (Some(i), None) => format!("in {i}"),
            (None, Some(o)) => format!("out {o}"),
            (None, None) => String::new(),
        };
        s += &format!(" {dev:<20}");
        if let (Some(t), Some(c)) = (&self.table, &self.chain) {
            s += &format!(" {t}/{c}");
        }
        match &self.rule {
            Some(r) => s += &format!(" [{r}] {}", self.verdict),
            None => s += &format!(" {}", self.verdict),
        }
        if !self.packet.is_empty() {
            s += &format!("  ({})", self.packet);
        }
        if let Some(r) = &self.rewrite {
            s += &format!("  rewrite: {r}");
        }
        f.write_str(s.trim_end())
    }
}

impl fmt::Display for Trace {
    /// The readable walk, one hop a line, the deciding line marked with `>>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match self.source {
            Source::Kernel => "",
            Source::Model => " (from the model)",
        };
        writeln!(f, "{}{from}: {}", if self.delivered { "delivered" } else { "not delivered" }, self.reason)?;
        if let Some(n) = &self.note {
            writeln!(f, "note: {n}")?;
        }
        let mut reply = false;
        for h in &self.hops {
            if h.reply && !reply {
                reply = true;
                writeln!(f, "   -- the answer's way back --")?;
            }
            writeln!(f, "{} {h}", if h.deciding { ">>" } else { "  " })?;
        }
        Ok(())
    }
}

/// The name of the temporary nftables table of a trace with this id.
pub fn table_name(id: u16) -> String {
    format!("netscript_trace_{id}")
}

/// The nft commands (without the leading `nft`) that make the temporary table: two
/// base chains (prerouting and output, before conntrack and NAT at priority -400) that
/// set nftrace on the probe's packets and their answers only.
pub fn table_commands(proto: &str, id: u16) -> Vec<String> {
    let t = table_name(id);
    let mut v = vec![
        format!("add table inet {t}"),
        format!("add chain inet {t} pre {{ type filter hook prerouting priority -400; }}"),
        format!("add chain inet {t} out {{ type filter hook output priority -400; }}"),
    ];
    // The probe's way there first, then its answer's: a trace event names the rule's
    // handle, which tells the two apart (`kernel::directions`).
    let matches: Vec<String> = match proto {
        "icmp" => vec![format!("icmp type echo-request icmp id {id}"), format!("icmp type echo-reply icmp id {id}")],
        p => vec![format!("{p} sport {id}"), format!("{p} dport {id}")],
    };
    for chain in ["pre", "out"] {
        for m in &matches {
            v.push(format!("add rule inet {t} {chain} {m} meta nftrace set 1"));
        }
    }
    v
}

/// The commands as a person would type them (one `nft` per line, each word quoted).
pub fn render_table(ns: &NsRef, proto: &str, id: u16) -> String {
    table_commands(proto, id)
        .iter()
        .map(|c| {
            // `{ ... }` and `;` must reach nft as one word.
            let words: Vec<String> = match c.split_once(" {") {
                Some((head, body)) => {
                    let mut w: Vec<String> = head.split(' ').map(shell_quote).collect();
                    w.push(shell_quote(&format!("{{{body}")));
                    w
                }
                None => c.split(' ').map(shell_quote).collect(),
            };
            format!("{}nft {}", ns.exec_prefix(), words.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The words of `netscript trace TOPOLOGY NS DST [tcp|udp PORT]` and the REPL's
/// `.trace NS DST [tcp|udp PORT]` after the topology: the namespace ("host" or a
/// name), the destination and the probe.
pub fn parse_words(words: &[&str]) -> crate::error::Result<(NsRef, IpAddr, Proto)> {
    use crate::error::Error;
    let usage = || Error::invalid("usage: NS DST [tcp PORT | udp PORT | icmp] (NS: a namespace, or host)");
    let (ns, dst, rest) = match words {
        [ns, dst, rest @ ..] => (*ns, *dst, rest),
        _ => return Err(usage()),
    };
    let ns = if ns == "host" {
        NsRef::Host
    } else {
        crate::model::check_name("namespace", ns)?;
        NsRef::named(ns)
    };
    let dst: IpAddr = dst.parse().map_err(|_| Error::invalid(format!("{dst:?} is not an IP address")))?;
    let port = |p: &str| -> crate::error::Result<u16> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(Error::invalid(format!("{p:?} is not a port (1-65535)"))),
            Ok(n) => Ok(n),
        }
    };
    let proto = match rest {
        [] | ["icmp"] => Proto::Icmp,
        ["tcp", p] => Proto::Tcp(port(p)?),
        ["udp", p] => Proto::Udp(port(p)?),
        _ => return Err(usage()),
    };
    Ok((ns, dst, proto))
}

/// Whether `proto` names a protocol a trace table can match.
pub fn valid_proto(proto: &str) -> bool {
    matches!(proto, "icmp" | "tcp" | "udp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_renders_as_quoted_nft_commands() {
        let r = render_table(&NsRef::named("ns1"), "tcp", 4242);
        assert!(r.starts_with("ip netns exec ns1 nft add table inet netscript_trace_4242\n"), "{r}");
        assert!(
            r.contains("nft add chain inet netscript_trace_4242 pre '{ type filter hook prerouting priority -400; }'")
        );
        assert!(r.contains("nft add rule inet netscript_trace_4242 out tcp dport 4242 meta nftrace set 1"));
        assert_eq!(table_commands("icmp", 7).len(), 7);
    }

    #[test]
    fn command_words() {
        let ip: IpAddr = "175.18.0.3".parse().unwrap();
        assert_eq!(parse_words(&["ns1", "175.18.0.3"]).unwrap(), (NsRef::named("ns1"), ip, Proto::Icmp));
        assert_eq!(parse_words(&["host", "175.18.0.3", "tcp", "80"]).unwrap(), (NsRef::Host, ip, Proto::Tcp(80)));
        assert_eq!(parse_words(&["ns1", "175.18.0.3", "udp", "53"]).unwrap().2, Proto::Udp(53));
        for bad in [&["ns1"][..], &["ns1", "x"], &["ns1", "175.18.0.3", "tcp"], &["ns1", "175.18.0.3", "tcp", "0"]] {
            assert!(parse_words(bad).is_err(), "{bad:?}");
        }
        assert!(parse_words(&["a/b", "175.18.0.3"]).unwrap_err().to_string().contains("a/b"));
    }
}
