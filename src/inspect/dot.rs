//! `netscript show --dot`: a Graphviz graph of what a topology owns now.

use super::now::{Now, NsNow};

/// A string inside a dot double-quoted string.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " ")
}

fn id(ns: &str, rest: &str) -> String {
    format!("\"{}/{}\"", esc(ns), esc(rest))
}

/// What a nat-table rule does, in a few words, if it is NAT or a published port.
fn nat_line(rule: &[String]) -> Option<String> {
    let val = |opt: &str| rule.iter().position(|w| w == opt).and_then(|i| rule.get(i + 1)).cloned();
    let target = val("-j")?;
    let to = |full: &str| val(full).or_else(|| val("--to"));
    // The matches, without the ownership comment and the target.
    let mut matches = Vec::new();
    let mut i = 0;
    while i < rule.len() {
        match rule[i].as_str() {
            "-m" if rule.get(i + 1).is_some_and(|m| m == "comment") => i += 2,
            "--comment" => i += 2,
            "-j" => break,
            w => {
                matches.push(w.to_string());
                i += 1;
            }
        }
    }
    let matches = matches.join(" ");
    match target.as_str() {
        "MASQUERADE" => Some(format!("masquerade {matches}")),
        "SNAT" => Some(format!("snat {matches} → {}", to("--to-source").unwrap_or_default())),
        "DNAT" => Some(match (val("--dport"), to("--to-destination")) {
            (Some(port), Some(to)) => {
                format!("publish {} {port} → {to}", val("-p").unwrap_or_else(|| "port".into()))
            }
            _ => format!("dnat {matches} → {}", to("--to-destination").unwrap_or_default()),
        }),
        _ => None,
    }
}

/// A note node (left-justified lines) in a namespace's cluster.
fn note(out: &mut String, ns: &str, what: &str, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut label = format!("{title}\\l");
    for l in lines {
        label += &format!("{}\\l", esc(l));
    }
    *out += &format!("    {} [shape=note, label=\"{label}\"];\n", id(ns, &format!("#{what}")));
}

fn cluster(out: &mut String, i: usize, n: &NsNow) {
    let label = if n.ns == "host" { "host".to_string() } else { format!("netns {}", n.ns) };
    *out += &format!("  subgraph cluster_{i} {{\n    label=\"{}\";\n", esc(&label));
    for l in &n.links {
        let mut label = vec![l.name.clone(), l.kind.clone()];
        label.extend(l.addrs.iter().cloned());
        label.extend(l.qdisc.iter().cloned());
        let label: Vec<String> = label.iter().map(|s| esc(s)).collect();
        let shape = if l.kind == "bridge" { ", shape=component" } else { "" };
        let style = match l.state.as_str() {
            "up" => ", color=darkgreen",
            "down" => ", color=gray, style=dashed",
            _ => ", color=red, style=dotted",
        };
        *out += &format!("    {} [label=\"{}\"{shape}{style}];\n", id(&n.ns, &l.name), label.join("\\n"));
    }
    for p in &n.processes {
        let state = if p.running { "" } else { " (stopped)" };
        *out += &format!(
            "    {} [shape=ellipse, label=\"{} {}{state}\"];\n",
            id(&n.ns, &format!("#pid{}", p.pid)),
            p.pid,
            esc(&p.command)
        );
    }
    note(out, &n.ns, "routes", "routes", &n.routes);
    let mut nat: Vec<String> = Vec::new();
    for line in n.rules.iter().filter(|r| r.table == "nat").filter_map(|r| nat_line(&r.words)) {
        // A port is published by a PREROUTING and an OUTPUT rule: said once.
        if !nat.contains(&line) {
            nat.push(line);
        }
    }
    note(out, &n.ns, "nat", "NAT and published ports", &nat);
    *out += "  }\n";
}

const LEGEND: &str = r#"  subgraph cluster_legend {
    label="legend";
    "legend/up" [label="link (up)", color=darkgreen];
    "legend/down" [label="link (down)", color=gray, style=dashed];
    "legend/missing" [label="link (missing now)", color=red, style=dotted];
    "legend/bridge" [label="bridge", shape=component];
    "legend/process" [label="process", shape=ellipse];
    "legend/note" [label="routes, NAT,\lpublished ports\l", shape=note];
    "legend/a" [shape=point]; "legend/b" [shape=point]; "legend/c" [shape=point];
    "legend/d" [shape=point]; "legend/e" [shape=point]; "legend/f" [shape=point];
    "legend/a" -- "legend/b" [label="veth pair"];
    "legend/c" -- "legend/d" [style=dashed, label="port of a bridge"];
    "legend/e" -- "legend/f" [style=dotted, label="on top of (macvlan, vlan, vxlan)"];
  }
"#;

/// A Graphviz graph of what a topology owns now: namespaces as clusters; links as
/// nodes with their kind, addresses, qdisc and state (colour and line style);
/// processes; routes and NAT / published ports as notes; veth pairs, bridge ports
/// and stacked links as edges; and a legend.
pub fn dot(now: &Now) -> String {
    let mut out = format!("graph \"{}\" {{\n  node [shape=box, fontname=\"monospace\"];\n", esc(&now.name));
    for (i, n) in now.namespaces.iter().enumerate() {
        cluster(&mut out, i, n);
    }
    for n in &now.namespaces {
        for l in &n.links {
            let me = format!("{}/{}", n.ns, l.name);
            if let Some(p) = l.peer.as_ref().filter(|p| me > **p) {
                let (pns, pname) = p.split_once('/').unwrap_or(("host", p));
                out += &format!("  {} -- {} [label=\"veth\"];\n", id(&n.ns, &l.name), id(pns, pname));
            }
            if let Some(lower) = &l.lower {
                let (lns, lname) = lower.split_once('/').unwrap_or(("host", lower));
                out += &format!(
                    "  {} -- {} [style=dotted, label=\"{}\"];\n",
                    id(&n.ns, &l.name),
                    id(lns, lname),
                    esc(&l.kind)
                );
            }
            if let Some(m) = &l.master {
                out += &format!("  {} -- {} [style=dashed];\n", id(&n.ns, &l.name), id(&n.ns, m));
            }
        }
    }
    out += LEGEND;
    out += "}\n";
    out
}
