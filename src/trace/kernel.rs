//! The kernel's side of a trace: `xtables-monitor --trace` output, parsed; the walk
//! put in order across namespaces; the reason, with the kernel's routing answers
//! where no rule saw the loss.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use super::probe::Answer;
use super::{Hop, Proto, Source, Spec, Trace, ns_words, table_name};

/// One PACKET line of xtables-monitor and the TRACE lines under it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Block {
    pub trace_id: String,
    pub fields: HashMap<String, String>,
    pub flags: Vec<String>,
    /// (table, chain, kind "rule" / "policy" / "return", verdict, rule text)
    pub lines: Vec<(String, String, String, String, Option<String>)>,
    /// The rule handle of our trace table's rule that matched (0: none).
    pub ours: u64,
    /// Part of the answer (from `directions`).
    pub reply: Option<bool>,
}

impl Block {
    fn f(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }
    fn ip(&self, k: &str) -> Option<Ipv4Addr> {
        self.f(k)?.parse().ok()
    }
    fn port(&self, k: &str) -> Option<u16> {
        self.f(k)?.parse().ok()
    }
    fn ttl(&self) -> u32 {
        self.f("TTL").and_then(|t| t.parse().ok()).unwrap_or(0)
    }
    fn tuple(&self) -> (Option<Ipv4Addr>, Option<u16>, Option<Ipv4Addr>, Option<u16>) {
        (self.ip("SRC"), self.port("SPORT"), self.ip("DST"), self.port("DPORT"))
    }
    fn packet(&self) -> String {
        let a = |ip: Option<Ipv4Addr>, p: Option<u16>| match (ip, p) {
            (Some(i), Some(p)) => format!("{i}:{p}"),
            (Some(i), None) => i.to_string(),
            _ => "?".into(),
        };
        let (s, sp, d, dp) = self.tuple();
        format!("{} -> {}", a(s, sp), a(d, dp))
    }
}

/// Parses `xtables-monitor --trace` output.
pub fn parse(text: &str) -> Vec<Block> {
    let mut v: Vec<Block> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("PACKET:") {
            let mut words = rest.split_whitespace();
            let _family = words.next();
            let mut b = Block { trace_id: words.next().unwrap_or("").to_string(), ..Default::default() };
            for w in words {
                match w.split_once('=') {
                    Some((k, val)) => {
                        b.fields.insert(k.to_string(), val.to_string());
                    }
                    None => b.flags.push(w.to_string()),
                }
            }
            v.push(b);
        } else if let Some(rest) = line.strip_prefix("TRACE:") {
            let rest = rest.trim_start();
            // "2 6bd449e2 nat:OUTPUT:rule:0x2:ACCEPT  -4 -t nat -A OUTPUT ..."
            let mut parts = rest.splitn(3, ' ');
            let _family = parts.next();
            let id = parts.next().unwrap_or("").to_string();
            let rest = parts.next().unwrap_or("").trim_start();
            let (what, rule) = match rest.split_once(' ') {
                Some((w, r)) => (w, r.trim()),
                None => (rest, ""),
            };
            let f: Vec<&str> = what.split(':').collect();
            if f.len() < 3 {
                continue;
            }
            let (table, chain, kind) = (f[0].to_string(), f[1].to_string(), f[2].to_string());
            if table.starts_with("netscript_trace_") && kind == "rule" {
                let h = f.get(3).and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok());
                if let (Some(b), Some(h)) = (v.last_mut(), h) {
                    b.ours = h;
                }
            }
            let verdict = match kind.as_str() {
                "rule" => f.get(4).copied().unwrap_or(""),
                _ => f.get(3).copied().unwrap_or(""),
            }
            .to_string();
            let rule = rule.strip_prefix("-4 ").unwrap_or(rule).trim();
            let rule = (!rule.is_empty()).then(|| rule.to_string());
            if v.is_empty() {
                v.push(Block { trace_id: id, ..Default::default() });
            }
            v.last_mut().unwrap().lines.push((table, chain, kind, verdict, rule));
        }
    }
    v
}

/// From `nft -a list table inet netscript_trace_ID`: which of its rule handles match
/// the answer (true) and which the probe (false).
pub fn handle_directions(listing: &str) -> HashMap<u64, bool> {
    listing
        .lines()
        .filter_map(|l| {
            let (rule, h) = l.rsplit_once("# handle ")?;
            let h = h.trim().parse().ok()?;
            let reply = rule.contains("echo-reply") || rule.contains(" dport ");
            rule.contains("nftrace").then_some((h, reply))
        })
        .collect()
}

/// Marks each block as the probe's or the answer's: by the trace-table rule that
/// matched the packet as it entered the namespace (the blocks after it, until the
/// next packet enters, are the same packet's). Trace ids cannot tell packets apart:
/// the kernel derives them from the flow hash, and a forwarded packet changes id.
pub fn directions(blocks: &mut [Block], handles: &HashMap<u64, bool>) {
    let mut current = None;
    for b in blocks.iter_mut() {
        if let Some(r) = handles.get(&b.ours) {
            current = Some(*r);
        }
        b.reply = current;
    }
}

/// The first packet of `blocks` (one direction, one namespace): up to the next packet
/// that enters the namespace the same way (our table's chain at the same hook).
fn first_packet<'a>(blocks: &[&'a Block]) -> Vec<&'a Block> {
    let entry = |b: &Block| (b.ours != 0).then(|| b.lines.first().map(|l| l.1.clone())).flatten();
    let Some(first) = blocks.iter().position(|b| entry(b).is_some()) else { return blocks.to_vec() };
    let hook = entry(blocks[first]);
    let mut out = vec![blocks[first]];
    for b in &blocks[first + 1..] {
        if entry(b).is_some() && entry(b) == hook {
            break;
        }
        out.push(*b);
    }
    out
}

/// What the explanation asks of the kernel.
pub trait Oracle {
    /// `ip -j route get ARGS` in a namespace ("host" or its name): the route's output
    /// device and type, or the kernel's error.
    fn route_get(&mut self, ns: &str, args: &[String]) -> Result<RouteAnswer, String>;
    fn sysctl(&mut self, ns: &str, key: &str) -> Option<String>;
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteAnswer {
    pub dev: Option<String>,
    pub kind: Option<String>,
}

/// The value of `-j TARGET ... --to(-destination|-source) X` in a rule.
fn rule_target(rule: &str) -> Option<(String, Option<String>)> {
    let w: Vec<&str> = rule.split_whitespace().collect();
    let k = w.iter().position(|x| *x == "-j")?;
    let target = w.get(k + 1)?.to_string();
    let to = w
        .iter()
        .position(|x| matches!(*x, "--to-destination" | "--to-source" | "--to"))
        .and_then(|i| w.get(i + 1))
        .map(|s| s.to_string());
    Some((target, to))
}

const HOOKS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// The hops of one namespace's blocks.
fn hops_of(ns: &str, blocks: &[&Block], reply: bool) -> Vec<Hop> {
    let mut out = Vec::new();
    for b in blocks {
        let mut hook = String::new();
        for (table, chain, kind, verdict, rule) in &b.lines {
            let ours = table.starts_with("netscript_trace_");
            let h = match chain.as_str() {
                "pre" if ours => "PREROUTING",
                "out" if ours => "OUTPUT",
                c if HOOKS.contains(&c) => c,
                _ => hook.as_str(),
            }
            .to_string();
            hook = h.clone();
            if ours && kind == "rule" {
                continue;
            }
            let base = Hop {
                ns: ns.to_string(),
                reply,
                iif: b.f("IN").map(str::to_string),
                oif: b.f("OUT").map(str::to_string),
                hook: h,
                packet: b.packet(),
                ..Default::default()
            };
            let hop = if ours {
                Hop { verdict: "seen".into(), ..base }
            } else {
                let shown = match (kind.as_str(), rule.as_deref().and_then(rule_target)) {
                    ("policy", _) => format!("policy {verdict}"),
                    ("return", _) => "return".into(),
                    (_, Some((t, _))) if verdict != "CONTINUE" && !matches!(t.as_str(), "ACCEPT" | "DROP") => t,
                    _ => verdict.clone(),
                };
                Hop {
                    table: Some(table.clone()),
                    chain: Some(chain.clone()),
                    rule: if kind == "rule" { rule.clone() } else { None },
                    verdict: shown,
                    ..base
                }
            };
            out.push(hop);
        }
    }
    out
}

struct Leg<'a> {
    ns: String,
    blocks: Vec<&'a Block>,
}

/// Splits each namespace's blocks into the probe's way there and the answer's way
/// back (the first packet each way), and orders the namespaces along each.
fn legs<'a>(per_ns: &'a [(String, Vec<Block>)], spec: &Spec) -> (Vec<Leg<'a>>, Vec<Leg<'a>>) {
    let is_request = |b: &Block| match b.reply {
        Some(r) => !r,
        None => match spec.proto {
            Proto::Icmp => true,
            _ => b.port("SPORT") == Some(spec.id),
        },
    };
    let mut there = Vec::new();
    let mut back = Vec::new();
    for (ns, blocks) in per_ns {
        for (want, legs) in [(true, &mut there), (false, &mut back)] {
            let mine: Vec<&Block> = blocks.iter().filter(|b| is_request(b) == want).collect();
            if mine.is_empty() {
                continue;
            }
            let blocks = first_packet(&mine);
            legs.push(Leg { ns: ns.clone(), blocks });
        }
    }
    let key = |l: &Leg| {
        let first = l.blocks[0];
        let rank = if first.f("IN").is_none() {
            0
        } else if l.blocks.iter().any(|b| b.f("OUT").is_some()) {
            1
        } else {
            2
        };
        (std::cmp::Reverse(first.ttl()), rank)
    };
    there.sort_by_key(key);
    back.sort_by_key(key);
    (there, back)
}

/// Marks rewrites: where the packet's addresses / ports change between two hops, on
/// the nat hop before the change.
fn mark_rewrites(hops: &mut [Hop], blocks_tuple: &[(usize, String)]) {
    let mut last: Option<String> = None;
    for (i, t) in blocks_tuple {
        if let Some(prev) = &last
            && prev != t
        {
            let at = hops[..*i].iter().rposition(|h| h.table.as_deref() == Some("nat")).or(i.checked_sub(1));
            if let Some(k) = at
                && hops[k].rewrite.is_none()
            {
                hops[k].rewrite = Some(format!("{prev} => {t}"));
            }
        }
        last = Some(t.clone());
    }
}

fn walk(legs: &[Leg], reply: bool) -> Vec<Hop> {
    let mut hops = Vec::new();
    let mut tuples = Vec::new();
    for l in legs {
        for b in &l.blocks {
            let h = hops_of(&l.ns, &[b], reply);
            if !h.is_empty() {
                tuples.push((hops.len(), b.packet()));
            }
            hops.extend(h);
        }
    }
    mark_rewrites(&mut hops, &tuples);
    hops
}

fn routing_hop(ns: &str, reply: bool, verdict: String) -> Hop {
    Hop { ns: ns.into(), reply, hook: "ROUTING".into(), verdict, deciding: true, ..Default::default() }
}

/// The trace, explained. `from` is the probe's namespace label, `per_ns` each traced
/// namespace's monitor output, `src` the probe's source address.
pub fn explain(
    from: &str,
    dst: IpAddr,
    spec: &Spec,
    per_ns: &[(String, Vec<Block>)],
    answer: &Answer,
    oracle: &mut dyn Oracle,
) -> Trace {
    let (there, back) = legs(per_ns, spec);
    let mut hops = walk(&there, false);
    hops.extend(walk(&back, true));
    let mut t = Trace { delivered: false, reason: String::new(), hops, source: Source::Kernel, note: None };
    let port = spec.proto.port();

    // A rule or a policy that dropped it.
    if let Some(k) =
        t.hops.iter().position(|h| matches!(h.verdict.as_str(), "DROP" | "REJECT" | "policy DROP") && h.table.is_some())
    {
        let h = &mut t.hops[k];
        h.deciding = true;
        let chain = h.chain.clone().unwrap_or_default();
        let way = if h.reply { " (on the answer's way back)" } else { "" };
        t.reason = match &h.rule {
            None => format!("dropped by the {chain} policy DROP in {}{way}", ns_words(&h.ns)),
            Some(r) => format!(
                "{} by `iptables {r}` in {}{way}",
                if h.verdict == "REJECT" { "rejected" } else { "dropped" },
                ns_words(&h.ns)
            ),
        };
        return t;
    }

    let last_there = there.last().and_then(|l| l.blocks.last().map(|b| (l.ns.clone(), *b)));
    let target = last_there.as_ref().map(|(ns, b)| (ns.clone(), b.ip("DST"), b.port("DPORT")));
    let addr = |ip: Option<Ipv4Addr>, p: Option<u16>| match (ip, p) {
        (Some(i), Some(p)) => format!("{i}:{p}"),
        (Some(i), None) => i.to_string(),
        _ => dst.to_string(),
    };
    match answer {
        Answer::Answered => {
            t.delivered = true;
            let (ns, ip, p) = target.unwrap_or((from.to_string(), None, port));
            t.reason = format!("delivered to {} ({})", ns_words(&ns), addr(ip, p.or(port)));
            if let Some(h) = t.hops.iter_mut().rfind(|h| !h.reply && h.ns == ns) {
                h.deciding = true;
            }
            return t;
        }
        Answer::Refused => {
            let ns = back.first().map(|l| l.ns.clone()).or(target.as_ref().map(|t| t.0.clone()));
            let ns = ns.unwrap_or_else(|| from.to_string());
            let p = target.as_ref().and_then(|t| t.2).or(port).unwrap_or(0);
            t.reason = format!("connection refused by {}: nothing listens on port {p}", ns_words(&ns));
            if let Some(h) = t.hops.iter_mut().find(|h| h.reply) {
                h.deciding = true;
            }
            return t;
        }
        Answer::Unreachable(e) if there.is_empty() => {
            t.reason = format!("no route from {} to {dst} ({e})", ns_words(from));
            t.hops.push(routing_hop(from, false, e.clone()));
            return t;
        }
        _ => {}
    }

    // Silent (or an ICMP error): find where the packet stopped.
    let Some((ns, b)) = last_there else {
        t.reason = format!("the probe never left {}", ns_words(from));
        return t;
    };
    let (mut s, mut d) = (b.ip("SRC"), b.ip("DST"));
    // A DNAT / SNAT in the last hop the packet reached: its result was never seen.
    if let Some((target, Some(to))) = b.lines.last().and_then(|l| l.4.as_deref()).and_then(rule_target) {
        let ip = to.split(':').next().and_then(|x| x.split('-').next()).and_then(|x| x.parse().ok());
        match target.as_str() {
            "DNAT" => d = ip.or(d),
            "SNAT" => s = ip.or(s),
            _ => {}
        }
    }
    let (Some(s), Some(d)) = (s, d) else {
        t.reason = format!("no answer; last seen in {}", ns_words(&ns));
        return t;
    };
    let rl = |o: &mut dyn Oracle, dev: &str| {
        o.sysctl(&ns, "net.ipv4.conf.all.route_localnet").as_deref() == Some("1")
            || o.sysctl(&ns, &format!("net.ipv4.conf.{dev}.route_localnet")).as_deref() == Some("1")
    };
    let out = oracle.route_get(&ns, &[d.to_string()]);
    let local = matches!(&out, Ok(r) if r.kind.as_deref() == Some("local"));
    if !local && (s.is_loopback() != d.is_loopback()) {
        let dev = out.as_ref().ok().and_then(|r| r.dev.clone()).unwrap_or_else(|| "?".into());
        if !rl(oracle, &dev) {
            let lo = if s.is_loopback() { s } else { d };
            t.reason = format!(
                "dropped as a martian: {lo} is not routable without route_localnet on {dev} in {}",
                ns_words(&ns)
            );
            t.hops.push(routing_hop(&ns, false, format!("martian: {s} -> {d} out {dev}, route_localnet=0")));
            return t;
        }
    }
    if local {
        if back.is_empty() {
            match oracle.route_get(&ns, &[s.to_string(), "from".into(), d.to_string()]) {
                Err(e) => {
                    t.reason = format!("no route back from {} to {s}", ns_words(&ns));
                    t.hops.push(routing_hop(&ns, true, format!("no route to {s}: {e}")));
                }
                Ok(_) => {
                    t.reason = format!("no answer from {} ({})", ns_words(&ns), addr(Some(d), b.port("DPORT")));
                }
            }
            return t;
        }
        // The answer left, and got lost on its way back.
        let lb = back.last().expect("not empty");
        let bb = lb.blocks.last().expect("a leg has blocks");
        let (bs, bd) = (bb.ip("SRC"), bb.ip("DST"));
        if let (Some(bs), Some(bd)) = (bs, bd)
            && let Err(e) = oracle.route_get(&lb.ns, &[bd.to_string(), "from".into(), bs.to_string()])
        {
            t.reason = format!("no route back from {} to {bd}", ns_words(&lb.ns));
            t.hops.push(routing_hop(&lb.ns, true, format!("no route to {bd}: {e}")));
            return t;
        }
        t.reason = format!("the answer was lost after {}", ns_words(&lb.ns));
        return t;
    }
    // Not local, not forwarded: routing.
    if b.f("IN").is_some() && b.f("OUT").is_none() {
        if oracle.sysctl(&ns, "net.ipv4.ip_forward").as_deref() != Some("1") {
            t.reason = format!("not forwarded: net.ipv4.ip_forward is 0 in {}", ns_words(&ns));
            t.hops.push(routing_hop(&ns, false, "ip_forward=0".into()));
            return t;
        }
        let iif = b.f("IN").unwrap_or("lo").to_string();
        if let Err(e) = oracle.route_get(&ns, &[d.to_string(), "from".into(), s.to_string(), "iif".into(), iif.clone()])
        {
            t.reason = format!("no route from {} to {d} (for a packet from {s} in {iif}: {e})", ns_words(&ns));
            t.hops.push(routing_hop(&ns, false, e));
            return t;
        }
    }
    if let Err(e) = &out {
        t.reason = format!("no route from {} to {d}", ns_words(&ns));
        t.hops.push(routing_hop(&ns, false, e.clone()));
        return t;
    }
    let dev = out.ok().and_then(|r| r.dev).unwrap_or_default();
    t.reason = match answer {
        Answer::Unreachable(e) => format!("{e}; last seen in {}", ns_words(&ns)),
        _ => format!("no answer; last seen in {} (out {dev})", ns_words(&ns)),
    };
    t
}

/// The trace table's name, for callers that need it with the parser.
pub fn ours(table: &str, id: u16) -> bool {
    table == table_name(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"PACKET: 1 ec20f2d9 IN=ns_br NFPROTO=2 SRC=175.18.0.2 DST=175.18.0.3 LEN=36 TTL=64 ID=1 SPORT=4242 DPORT=80 SYN
 TRACE: 1 ec20f2d9 netscript_trace_4242:pre:rule:0x4:CONTINUE
 TRACE: 1 ec20f2d9 netscript_trace_4242:pre:policy:ACCEPT
PACKET: 2 ec20f2d9 IN=ns_br OUT=ns_br SRC=175.18.0.2 DST=175.18.0.3 LEN=36 TTL=64 ID=1 SPORT=4242 DPORT=80 SYN
 TRACE: 2 ec20f2d9 filter:FORWARD:rule:0x3:CONTINUE  -4 -t filter -A FORWARD -s 10.9.9.9/32 -j ACCEPT
 TRACE: 2 ec20f2d9 filter:FORWARD:policy:DROP
"#;

    #[test]
    fn parses_packets_and_rules() {
        let b = parse(SAMPLE);
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].f("OUT"), Some("ns_br"));
        assert_eq!(b[1].lines[0].4.as_deref(), Some("-t filter -A FORWARD -s 10.9.9.9/32 -j ACCEPT"));
        assert_eq!(b[1].lines[1].2, "policy");
        assert_eq!(b[1].lines[1].3, "DROP");
    }
}
