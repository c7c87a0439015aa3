//! The API table: every Lua function, method and field scripts can use, with its
//! signature (LuaLS types), a one-line doc and one example. The REPL's `.help` and
//! completion lists and `netscript stubs` (a LuaLS annotation file) are made from it;
//! tests check that it and the registered bindings name the same functions and that
//! docs/api.md names each of them.
//!
//! Adding a function to the API: register it (src/lua/<area>.rs), add its `Entry`
//! here, and document it in docs/api.md. The tests say what is missing.

use mlua::{
    AnyUserData, FromLua, FromLuaMulti, IntoLua, IntoLuaMulti, Lua, MaybeSend, UserData, UserDataFields,
    UserDataMethods,
};

/// How scripts reach an entry: `scope.name(...)`, `scope:name(...)` or `scope.name`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Function,
    Method,
    Field,
}

/// What a scope is: a global table, a handle type, or a module scripts `require`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScopeKind {
    /// A global table (`netns`, `fw`, `netscript`).
    Global,
    /// A handle type; the LuaLS class name.
    Class(&'static str),
    /// A module of the embedded standard library: its `require` name.
    Module(&'static str),
}

pub struct Scope {
    /// How scripts (and docs/api.md) write it: `netns`, `Netns`, `docker`, `net`.
    pub name: &'static str,
    pub kind: ScopeKind,
    pub doc: &'static str,
}

/// A parameter: `ty` is a LuaLS type; an options table is written as a table type,
/// `{ns?: Netns|string, pos?: integer}`, whose keys are the accepted options.
pub struct Param {
    pub name: &'static str,
    pub ty: &'static str,
    pub optional: bool,
}

pub struct Entry {
    pub scope: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    pub params: &'static [Param],
    /// LuaLS types of the results, `", "` between several; "" for none. For a field,
    /// its type.
    pub returns: &'static str,
    pub doc: &'static str,
    pub example: &'static str,
}

const fn p(name: &'static str, ty: &'static str) -> Param {
    Param { name, ty, optional: false }
}

const fn opt(name: &'static str, ty: &'static str) -> Param {
    Param { name, ty, optional: true }
}

const fn f(
    scope: &'static str,
    name: &'static str,
    params: &'static [Param],
    returns: &'static str,
    doc: &'static str,
    example: &'static str,
) -> Entry {
    Entry { scope, name, kind: Kind::Function, params, returns, doc, example }
}

const fn m(
    scope: &'static str,
    name: &'static str,
    params: &'static [Param],
    returns: &'static str,
    doc: &'static str,
    example: &'static str,
) -> Entry {
    Entry { scope, name, kind: Kind::Method, params, returns, doc, example }
}

const fn field(
    scope: &'static str,
    name: &'static str,
    ty: &'static str,
    doc: &'static str,
    example: &'static str,
) -> Entry {
    Entry { scope, name, kind: Kind::Field, params: &[], returns: ty, doc, example }
}

/// The scopes, in the order `.help` and the stubs list them.
pub const SCOPES: &[Scope] = &[
    Scope { name: "netns", kind: ScopeKind::Global, doc: "Network namespaces." },
    Scope { name: "Netns", kind: ScopeKind::Class("Netns"), doc: "A network namespace (a name, or the host)." },
    Scope { name: "Process", kind: ScopeKind::Class("Process"), doc: "A process started by Netns:spawn." },
    Scope { name: "veth", kind: ScopeKind::Global, doc: "veth pairs." },
    Scope { name: "bridge", kind: ScopeKind::Global, doc: "Bridges." },
    Scope { name: "link", kind: ScopeKind::Global, doc: "Existing links, and links of other kinds." },
    Scope { name: "Link", kind: ScopeKind::Class("Link"), doc: "A link, by name and namespace." },
    Scope { name: "route", kind: ScopeKind::Global, doc: "Routes." },
    Scope { name: "sysctl", kind: ScopeKind::Global, doc: "sysctls (/proc/sys), per namespace." },
    Scope { name: "fw", kind: ScopeKind::Global, doc: "The firewall (iptables), per namespace." },
    Scope {
        name: "netscript",
        kind: ScopeKind::Global,
        doc: "The script's own run; also holds the modules (require(\"netscript\")).",
    },
    Scope { name: "Partition", kind: ScopeKind::Class("Partition"), doc: "A split made by netscript.partition." },
    Scope {
        name: "docker",
        kind: ScopeKind::Module("netscript.docker"),
        doc: "Docker's bridge network mode: local docker = require(\"netscript.docker\").",
    },
    Scope { name: "net", kind: ScopeKind::Class("DockerNetwork"), doc: "A network made by docker.network." },
];

const NS: &str = "Netns|string";

/// The API, grouped by scope in `SCOPES` order.
pub const API: &[Entry] = &[
    // netns
    f(
        "netns",
        "add",
        &[p("name", "string")],
        "Netns",
        "Create a named network namespace (ip netns add).",
        "local ns1 = netns.add(\"ns1\")",
    ),
    f(
        "netns",
        "get",
        &[p("name", "string")],
        "Netns",
        "A handle for an existing named namespace.",
        "local ns1 = netns.get(\"ns1\")",
    ),
    f("netns", "host", &[], "Netns", "The namespace netscript runs in.", "print(netns.host():ping(\"127.0.0.1\"))"),
    f(
        "netns",
        "list",
        &[],
        "string[]",
        "The names of all named namespaces, sorted.",
        "print(table.concat(netns.list(), \" \"))",
    ),
    // Netns
    field("Netns", "name", "string?", "The namespace's name (nil for the host).", "print(netns.add(\"ns1\").name)"),
    m("Netns", "del", &[], "", "Delete a namespace this run created.", "netns.add(\"tmp\"):del()"),
    m(
        "Netns",
        "link",
        &[p("name", "string")],
        "Link",
        "A handle for an existing link in this namespace.",
        "netns.add(\"ns1\"):link(\"lo\"):up()",
    ),
    m(
        "Netns",
        "links",
        &[],
        "Link[]",
        "Handles for every link in the namespace.",
        "for _, l in ipairs(netns.host():links()) do print(l.name) end",
    ),
    m(
        "Netns",
        "exec",
        &[p("cmd", "string|string[]"), opt("opts", "{check?: boolean, timeout?: number}")],
        "{code: integer, stdout: string, stderr: string, timed_out: boolean}",
        "Run a command to completion inside the namespace (a string runs with /bin/sh -c).",
        "print(netns.add(\"ns1\"):exec({ \"ip\", \"-o\", \"link\" }).stdout)",
    ),
    m(
        "Netns",
        "spawn",
        &[p("cmd", "string|string[]")],
        "Process",
        "Start a command in the background inside the namespace; stopped on rollback.",
        "local web = netns.add(\"ns1\"):spawn({ \"python3\", \"-m\", \"http.server\", \"80\" })",
    ),
    m(
        "Netns",
        "ping",
        &[p("addr", "string"), opt("opts", "{count?: integer, timeout?: number}")],
        "boolean",
        "Ping an address from inside the namespace; true when a reply came back.",
        "print(netns.host():ping(\"127.0.0.1\", { count = 2, timeout = 0.5 }))",
    ),
    m(
        "Netns",
        "tcp",
        &[p("addr", "string"), p("port", "integer"), opt("opts", "{timeout?: number}")],
        "boolean",
        "Open (and close) a TCP connection from inside the namespace; true when accepted.",
        "print(netns.host():tcp(\"127.0.0.1\", 22, { timeout = 0.2 }))",
    ),
    m(
        "Netns",
        "trace",
        &[
            p("addr", "string"),
            opt("opts", "{tcp?: integer, udp?: integer, icmp?: boolean, src?: string, timeout?: number}"),
        ],
        "table",
        "Send one probe from the namespace and explain its walk, hop by hop, with the rule that decided.",
        "local t = netns.host():trace(\"127.0.0.1\", { tcp = 9 }); print(t.reason)",
    ),
    // Process
    field("Process", "pid", "integer", "The process id.", "print(netns.host():spawn(\"sleep 30\").pid)"),
    m(
        "Process",
        "kill",
        &[],
        "",
        "Stop the process (SIGTERM to its group, SIGKILL after 2 s).",
        "netns.host():spawn(\"sleep 30\"):kill()",
    ),
    m(
        "Process",
        "wait",
        &[],
        "integer",
        "Wait for the process to end; its exit code.",
        "print(netns.host():spawn(\"exit 3\"):wait())",
    ),
    // veth, bridge, link
    f(
        "veth",
        "add",
        &[
            p("name", "string"),
            p("peer", "string"),
            opt("opts", "{ns?: Netns|string, peer_ns?: Netns|string, queues?: integer}"),
        ],
        "Link, Link",
        "Create a veth pair, each end in its namespace (default: the host).",
        "local inside, outside = veth.add(\"veth0\", \"veth_ns1\", { ns = netns.add(\"ns1\") })",
    ),
    f(
        "bridge",
        "add",
        &[p("name", "string"), opt("opts", "{ns?: Netns|string, stp?: boolean, vlan_filtering?: boolean}")],
        "Link",
        "Create a bridge (spanning tree and VLAN filtering off unless asked).",
        "local br = bridge.add(\"br0\"):addr(\"10.0.0.1/24\"):up()",
    ),
    f(
        "link",
        "get",
        &[p("name", "string"), opt("opts", "{ns?: Netns|string}")],
        "Link",
        "A handle for an existing link.",
        "print(link.get(\"lo\"):info().up)",
    ),
    f(
        "link",
        "add",
        &[
            p("name", "string"),
            p("kind", "\"vxlan\"|\"macvlan\"|\"macvtap\"|\"vlan\"|\"dummy\"|\"ifb\""),
            opt(
                "opts",
                "{ns?: Netns|string, id?: integer, remote?: string, local_addr?: string, dev?: Link|string, port?: integer, parent?: Link|string, mode?: string}",
            ),
        ],
        "Link",
        "Create a link of another kind (vxlan, macvlan, macvtap, vlan, dummy, ifb).",
        "link.add(\"mv0\", \"macvlan\", { parent = bridge.add(\"br0\"), ns = netns.add(\"c1\") })",
    ),
    // Link
    field("Link", "name", "string", "The link's name.", "print(bridge.add(\"br0\").name)"),
    field("Link", "ns", "Netns", "The link's namespace.", "print(link.get(\"lo\").ns)"),
    m("Link", "up", &[], "Link", "Bring the link up.", "link.get(\"lo\"):up()"),
    m("Link", "down", &[], "Link", "Bring the link down.", "bridge.add(\"br0\"):up():down()"),
    m(
        "Link",
        "addr",
        &[p("cidr", "string"), opt("opts", "{nodad?: boolean}")],
        "Link",
        "Add an IPv4 or IPv6 address (ip addr add); IPv6 ones without duplicate address detection unless nodad = false.",
        "bridge.add(\"br0\"):addr(\"10.0.0.1/24\"):addr(\"fd00::1/64\")",
    ),
    m(
        "Link",
        "move",
        &[p("ns", NS)],
        "Link",
        "Move the link into another namespace (netns.host() for the host).",
        "local a = veth.add(\"a\", \"b\"); a:move(netns.add(\"ns1\"))",
    ),
    m(
        "Link",
        "master",
        &[p("bridge", "Link|string")],
        "Link",
        "Attach the link to a bridge in its namespace.",
        "local br = bridge.add(\"br0\"); veth.add(\"a\", \"b\"):master(br)",
    ),
    m("Link", "nomaster", &[], "Link", "Detach the link from its bridge.", "link.get(\"a\"):nomaster()"),
    m("Link", "mtu", &[p("n", "integer")], "Link", "Set the MTU.", "bridge.add(\"br0\"):mtu(1400)"),
    m("Link", "del", &[], "", "Delete a link this topology created.", "bridge.add(\"tmp\"):del()"),
    m("Link", "addrs", &[], "string[]", "The link's addresses, as CIDR strings.", "print(link.get(\"lo\"):addrs()[1])"),
    m(
        "Link",
        "info",
        &[],
        "{name: string, up: boolean, mtu: integer, kind: string?, master: string?, alias: string?, addrs: string[], qdisc: string?}",
        "What the kernel says about the link now.",
        "print(link.get(\"lo\"):info().mtu)",
    ),
    m(
        "Link",
        "shape",
        &[p("opts", "{rate: string, burst?: string, latency?: string}")],
        "Link",
        "Limit the rate the link sends at (tbf root qdisc).",
        "veth.add(\"a\", \"b\"):shape{ rate = \"10mbit\" }",
    ),
    m(
        "Link",
        "impair",
        &[p(
            "opts",
            "{delay?: string, jitter?: string, loss?: string, duplicate?: string, corrupt?: string, reorder?: string, rate?: string}",
        )],
        "Link",
        "Delay, lose, duplicate, corrupt or reorder what the link sends (netem root qdisc).",
        "veth.add(\"a\", \"b\"):impair{ delay = \"50ms\", loss = \"1%\" }",
    ),
    m(
        "Link",
        "unimpair",
        &[],
        "Link",
        "Give the link back the kernel's default root qdisc.",
        "link.get(\"a\"):unimpair()",
    ),
    m(
        "Link",
        "bridge_port",
        &[p("opts", "{hairpin?: boolean, isolated?: boolean, learning?: boolean, flood?: boolean}")],
        "Link",
        "Set flags of a bridge port.",
        "veth.add(\"a\", \"b\"):master(bridge.add(\"br0\")):bridge_port{ hairpin = true }",
    ),
    // route
    f(
        "route",
        "add",
        &[
            p("dest", "string"),
            opt("opts", "{via?: string, dev?: Link|string, ns?: Netns|string, metric?: integer, family?: string}"),
        ],
        "",
        "Add a route (\"default\" or a CIDR).",
        "route.add(\"default\", { via = \"10.0.0.1\", ns = \"ns1\" })",
    ),
    f(
        "route",
        "del",
        &[
            p("dest", "string"),
            opt("opts", "{via?: string, dev?: Link|string, ns?: Netns|string, metric?: integer, family?: string}"),
        ],
        "",
        "Delete a route (also one the run did not create; rollback puts it back).",
        "route.del(\"10.0.0.0/24\", { dev = \"br0\" })",
    ),
    // sysctl
    f(
        "sysctl",
        "get",
        &[p("key", "string"), opt("opts", "{ns?: Netns|string}")],
        "string",
        "Read a sysctl.",
        "print(sysctl.get(\"net.ipv4.ip_forward\"))",
    ),
    f(
        "sysctl",
        "set",
        &[p("key", "string"), p("value", "string|integer|boolean"), opt("opts", "{ns?: Netns|string}")],
        "string",
        "Set a sysctl; returns the previous value.",
        "sysctl.set(\"net.ipv4.ip_forward\", 1)",
    ),
    // fw
    f(
        "fw",
        "policy",
        &[
            p("table", "string"),
            p("chain", "string"),
            p("target", "string"),
            opt("opts", "{ns?: Netns|string, family?: \"ipv4\"|\"ipv6\"}"),
        ],
        "string",
        "Set a built-in chain's policy; returns the previous one.",
        "fw.policy(\"filter\", \"FORWARD\", \"DROP\")",
    ),
    f(
        "fw",
        "append",
        &[
            p("table", "string"),
            p("chain", "string"),
            p("rule", "string"),
            opt("opts", "{ns?: Netns|string, family?: \"ipv4\"|\"ipv6\"}"),
        ],
        "",
        "Append a rule (iptables -A; ip6tables with family = \"ipv6\").",
        "fw.append(\"nat\", \"POSTROUTING\", \"-s 10.0.0.0/24 -j MASQUERADE\")",
    ),
    f(
        "fw",
        "insert",
        &[
            p("table", "string"),
            p("chain", "string"),
            p("rule", "string"),
            opt("opts", "{ns?: Netns|string, pos?: integer, family?: \"ipv4\"|\"ipv6\"}"),
        ],
        "",
        "Insert a rule at a position (default 1, iptables -I).",
        "fw.insert(\"filter\", \"INPUT\", \"-i lo -j ACCEPT\", { pos = 1 })",
    ),
    f(
        "fw",
        "delete",
        &[
            p("table", "string"),
            p("chain", "string"),
            p("rule", "string"),
            opt("opts", "{ns?: Netns|string, family?: \"ipv4\"|\"ipv6\"}"),
        ],
        "",
        "Delete a rule (iptables -D); rollback re-inserts it at its place.",
        "fw.delete(\"filter\", \"INPUT\", \"-i lo -j ACCEPT\")",
    ),
    f(
        "fw",
        "chain",
        &[p("table", "string"), p("name", "string"), opt("opts", "{ns?: Netns|string, family?: \"ipv4\"|\"ipv6\"}")],
        "",
        "Create a user chain (iptables -N).",
        "fw.chain(\"filter\", \"DOCKER\")",
    ),
    f(
        "fw",
        "rules",
        &[p("table", "string"), opt("opts", "{ns?: Netns|string, family?: \"ipv4\"|\"ipv6\"}")],
        "string[]",
        "The rules of a table, as iptables -S lines.",
        "for _, r in ipairs(fw.rules(\"nat\")) do print(r) end",
    ),
    f(
        "fw",
        "batch",
        &[p("fn", "fun(): any")],
        "any",
        "Run fn; its firewall changes are made together, in one iptables-restore (and ip6tables-restore).",
        "fw.batch(function() fw.append(\"filter\", \"FORWARD\", \"-i br0 -j ACCEPT\") end)",
    ),
    // netscript
    field(
        "netscript",
        "name",
        "string",
        "The topology's name (the script's file stem, or --name).",
        "print(netscript.name)",
    ),
    field("netscript", "version", "string", "netscript's version.", "print(netscript.version)"),
    f(
        "netscript",
        "sleep",
        &[p("seconds", "number")],
        "",
        "Sleep (fractions allowed); Ctrl-C cuts it short.",
        "netscript.sleep(0.2)",
    ),
    f(
        "netscript",
        "partition",
        &[p("group", "(Netns|string)[]"), p("...", "(Netns|string)[]")],
        "Partition",
        "Cut IPv4 and IPv6 traffic between groups of namespaces (by firewall) until :heal().",
        "local p = netscript.partition({ a, b }, { c })",
    ),
    m("Partition", "heal", &[], "Partition", "Undo the partition.", "p:heal()"),
    f(
        "netscript",
        "pingall",
        &[p("namespaces", "(Netns|string)[]"), opt("opts", "{tcp?: integer, timeout?: number, quiet?: boolean}")],
        "table",
        "The reachability matrix of the namespaces (one trace per pair), printed, with each failure's reason.",
        "local r = netscript.pingall({ ns1, ns2 })",
    ),
    // netscript.docker
    f(
        "docker",
        "network",
        &[p(
            "opts",
            "{name: string, subnet: string, gateway?: string, subnet6?: string, gateway6?: string, ns?: Netns|string, icc?: boolean, internal?: boolean, gateway_mode?: \"nat\"|\"routed\"}",
        )],
        "DockerNetwork",
        "A bridge network with Docker's rules: forwarding, NAT, isolation, DOCKER-USER.",
        "local net = require(\"netscript.docker\").network{ name = \"ns_br\", subnet = \"175.18.0.0/24\" }",
    ),
    field("net", "name", "string", "The bridge's name.", "print(net.name)"),
    field("net", "subnet", "string", "The network, as CIDR.", "print(net.subnet)"),
    field("net", "gateway", "string", "The bridge's address.", "print(net.gateway)"),
    field("net", "subnet6", "string|nil", "The IPv6 network, as CIDR (nil: IPv4 only).", "print(net.subnet6)"),
    field("net", "gateway6", "string|nil", "The bridge's IPv6 address (nil: IPv4 only).", "print(net.gateway6)"),
    field("net", "ns", "Netns|string|nil", "Where the bridge is (nil: the host).", "print(net.ns)"),
    field("net", "bridge", "Link", "The bridge's Link.", "print(net.bridge:addrs()[1])"),
    m(
        "net",
        "container",
        &[p("name", "string"), opt("opts", "{ip?: string, dev?: string, host_dev?: string}")],
        "Netns",
        "A namespace with lo up, a veth on the bridge, an address and a default route.",
        "local c1 = net:container(\"ns1\")",
    ),
    m(
        "net",
        "ip",
        &[p("container", NS)],
        "string",
        "The address of a container of this network.",
        "print(net:ip(\"ns1\"))",
    ),
    m(
        "net",
        "ip6",
        &[p("container", NS)],
        "string",
        "The IPv6 address of a container of this dual stack network.",
        "print(net:ip6(\"ns1\"))",
    ),
    m(
        "net",
        "publish",
        &[
            p("host_port", "integer|string"),
            p("container", NS),
            p("port", "integer|string"),
            opt("opts", "{proto?: \"tcp\"|\"udp\", host_ip?: string}"),
        ],
        "DockerNetwork, integer",
        "Publish a container's port, as docker run -p [HOST_IP:]HOST_PORT:PORT; returns net and the host port.",
        "net:publish(8088, c1, 80)",
    ),
];

pub fn scope(name: &str) -> Option<&'static Scope> {
    SCOPES.iter().find(|s| s.name == name)
}

/// The entries of one scope, in table order.
pub fn entries(scope: &str) -> impl Iterator<Item = &'static Entry> + '_ {
    API.iter().filter(move |e| e.scope == scope)
}

/// The names of a scope's entries of one kind (e.g. the methods of `Link`), sorted.
pub fn names(scope: &str, kind: Kind) -> Vec<&'static str> {
    let mut v: Vec<_> = entries(scope).filter(|e| e.kind == kind).map(|e| e.name).collect();
    v.sort_unstable();
    v
}

/// The keys of an options table type: `{ns?: Netns|string, pos?: integer}` -> ns, pos.
pub fn table_keys(ty: &str) -> Option<Vec<&str>> {
    let inner = ty.strip_prefix('{')?.strip_suffix('}')?;
    let mut keys = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' | '(' | '<' => depth += 1,
            '}' | ')' | '>' => depth -= 1,
            ',' if depth == 0 => {
                keys.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    keys.push(&inner[start..]);
    Some(keys.iter().filter_map(|k| k.split(':').next()).map(|k| k.trim().trim_end_matches('?')).collect())
}

impl Entry {
    /// How a script writes it: `netns.add`, `Netns:exec`, `Link.name`.
    pub fn path(&self) -> String {
        let sep = if self.kind == Kind::Method { ':' } else { '.' };
        format!("{}{sep}{}", self.scope, self.name)
    }

    /// For people: `veth.add(name, peer[, {ns=, peer_ns=, queues=}]) -> Link, Link`.
    pub fn signature(&self) -> String {
        if self.kind == Kind::Field {
            return self.path();
        }
        let mut s = format!("{}(", self.path());
        for (i, p) in self.params.iter().enumerate() {
            let shown = match table_keys(p.ty) {
                Some(keys) => format!("{{{}}}", keys.iter().map(|k| format!("{k}=")).collect::<Vec<_>>().join(", ")),
                None => p.name.to_string(),
            };
            let comma = if i == 0 { "" } else { ", " };
            if p.optional {
                s += &format!("[{comma}{shown}]");
            } else {
                s += &format!("{comma}{shown}");
            }
        }
        s.push(')');
        if !self.returns.is_empty() {
            // A table result as the docs write it: `{code=, stdout=, ...}`.
            let shown = match table_keys(self.returns) {
                Some(keys) => format!("{{{}}}", keys.iter().map(|k| format!("{k}=")).collect::<Vec<_>>().join(", ")),
                None => self.returns.to_string(),
            };
            s += &format!(" -> {shown}");
        }
        s
    }
}

/// The REPL's `.help` text on the API: the signatures, by scope, packed into lines.
pub fn help_text() -> String {
    let mut out = String::from(
        "The API (docs/api.md has it all; `.help NAME` shows one, e.g. `.help Netns:exec` or `.help fw`):\n",
    );
    for sc in SCOPES {
        let mut line = format!("  {:<10}", sc.name);
        let indent = line.len();
        for e in entries(sc.name) {
            let sig = e.signature();
            if line.len() > indent && line.len() + 2 + sig.len() > 100 {
                out += line.trim_end();
                out.push('\n');
                line = " ".repeat(indent);
            } else if line.len() > indent {
                line += "  ";
            }
            line += &sig;
        }
        out += line.trim_end();
        out.push('\n');
    }
    out.pop();
    out
}

/// `.help NAME`: the entries NAME names (`Netns:exec`, `exec`, `netns`), each with its
/// signature, doc and example; None when it names none.
pub fn help_for(name: &str) -> Option<String> {
    let name = name.trim();
    let found: Vec<_> = API.iter().filter(|e| e.path() == name || e.scope == name).collect();
    let found = if found.is_empty() { API.iter().filter(|e| e.name == name).collect() } else { found };
    if found.is_empty() {
        return None;
    }
    let mut out = String::new();
    if let Some(sc) = scope(name) {
        out += &format!("{}: {}\n", sc.name, sc.doc);
    }
    for e in found {
        out += &format!("{}\n    {}\n", e.signature(), e.doc);
        for l in e.example.lines() {
            out += &format!("    e.g. {l}\n");
        }
    }
    out.pop();
    Some(out)
}

/// A LuaLS annotation file (`---@meta`) for the whole API: what `netscript stubs` writes.
pub fn stubs() -> String {
    let mut out = format!(
        "---@meta\n-- LuaLS annotations for netscript {}'s Lua API, written by `netscript stubs`.\n\
         -- Put this file in your workspace, or its directory in `workspace.library`.\n",
        env!("CARGO_PKG_VERSION")
    );
    for sc in SCOPES {
        out.push('\n');
        let var = match sc.kind {
            ScopeKind::Global => {
                out += &format!("---{}\n", sc.doc);
                out += &format!("{} = {{}}\n", sc.name);
                if sc.name == "netscript" {
                    // require("netscript") holds the modules too.
                    for g in SCOPES.iter().filter(|s| s.kind == ScopeKind::Global && s.name != "netscript") {
                        out += &format!("netscript.{0} = {0}\n", g.name);
                    }
                }
                sc.name
            }
            ScopeKind::Class(class) | ScopeKind::Module(class) => {
                out += &format!("---{}\n---@class {class}\n", sc.doc);
                for e in entries(sc.name).filter(|e| e.kind == Kind::Field) {
                    out += &format!("---@field {} {} {}\n", e.name, e.returns, e.doc);
                }
                // A module's functions hang on a local named as scripts name it.
                let var = if matches!(sc.kind, ScopeKind::Module(_)) { sc.name } else { class };
                out += &format!("local {var} = {{}}\n");
                var
            }
        };
        for e in entries(sc.name) {
            if e.kind == Kind::Field && sc.kind != ScopeKind::Global {
                continue;
            }
            out += &format!("\n---{}\n---\n---```lua\n", e.doc);
            for line in e.example.lines() {
                out += &format!("---{line}\n");
            }
            out += "---```\n";
            if e.kind == Kind::Field {
                out += &format!("---@type {}\n{var}.{} = nil\n", e.returns, e.name);
                continue;
            }
            for p in e.params {
                let q = if p.optional { "?" } else { "" };
                out += &format!("---@param {}{q} {}\n", p.name, p.ty);
            }
            if !e.returns.is_empty() {
                for r in split_top(e.returns) {
                    out += &format!("---@return {r}\n");
                }
            }
            let sep = if e.kind == Kind::Method { ':' } else { '.' };
            let params: Vec<_> = e.params.iter().map(|p| p.name).collect();
            out += &format!("function {var}{sep}{}({}) end\n", e.name, params.join(", "));
        }
    }
    out
}

/// Splits `"Link, Link"` at the commas outside braces.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' | '(' => depth += 1,
            '}' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

/// The fields and methods a handle type registers (metamethods left out), read by
/// running its `UserData` registration against a recorder: what the tests compare
/// with the table.
pub fn registered<T: UserData>() -> (Vec<String>, Vec<String>) {
    let mut r = Recorder::default();
    T::add_fields(&mut r);
    T::add_methods(&mut r);
    r.fields.sort();
    r.methods.sort();
    (r.fields, r.methods)
}

#[derive(Default)]
struct Recorder {
    fields: Vec<String>,
    methods: Vec<String>,
}

impl<T> UserDataFields<T> for Recorder {
    fn add_field<V: IntoLua + 'static>(&mut self, name: impl Into<String>, _: V) {
        self.fields.push(name.into());
    }
    fn add_field_method_get<M, R>(&mut self, name: impl Into<String>, _: M)
    where
        M: Fn(&Lua, &T) -> mlua::Result<R> + MaybeSend + 'static,
        R: IntoLua,
    {
        self.fields.push(name.into());
    }
    fn add_field_method_set<M, A>(&mut self, name: impl Into<String>, _: M)
    where
        M: FnMut(&Lua, &mut T, A) -> mlua::Result<()> + MaybeSend + 'static,
        A: FromLua,
    {
        self.fields.push(name.into());
    }
    fn add_field_function_get<F, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: Fn(&Lua, AnyUserData) -> mlua::Result<R> + MaybeSend + 'static,
        R: IntoLua,
    {
        self.fields.push(name.into());
    }
    fn add_field_function_set<F, A>(&mut self, name: impl Into<String>, _: F)
    where
        F: FnMut(&Lua, AnyUserData, A) -> mlua::Result<()> + MaybeSend + 'static,
        A: FromLua,
    {
        self.fields.push(name.into());
    }
    fn add_meta_field<V: IntoLua + 'static>(&mut self, _: impl Into<String>, _: V) {}
    fn add_meta_field_with<F, R>(&mut self, _: impl Into<String>, _: F)
    where
        F: FnOnce(&Lua) -> mlua::Result<R> + 'static,
        R: IntoLua,
    {
    }
}

impl<T> UserDataMethods<T> for Recorder {
    fn add_method<M, A, R>(&mut self, name: impl Into<String>, _: M)
    where
        M: Fn(&Lua, &T, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.push(name.into());
    }
    fn add_method_mut<M, A, R>(&mut self, name: impl Into<String>, _: M)
    where
        M: FnMut(&Lua, &mut T, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.push(name.into());
    }
    fn add_function<F, A, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: Fn(&Lua, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.push(name.into());
    }
    fn add_function_mut<F, A, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: FnMut(&Lua, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.push(name.into());
    }
    fn add_meta_method<M, A, R>(&mut self, _: impl Into<String>, _: M)
    where
        M: Fn(&Lua, &T, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
    }
    fn add_meta_method_mut<M, A, R>(&mut self, _: impl Into<String>, _: M)
    where
        M: FnMut(&Lua, &mut T, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
    }
    fn add_meta_function<F, A, R>(&mut self, _: impl Into<String>, _: F)
    where
        F: Fn(&Lua, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
    }
    fn add_meta_function_mut<F, A, R>(&mut self, _: impl Into<String>, _: F)
    where
        F: FnMut(&Lua, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_read_as_the_docs_write_them() {
        let veth = API.iter().find(|e| e.path() == "veth.add").unwrap();
        assert_eq!(veth.signature(), "veth.add(name, peer[, {ns=, peer_ns=, queues=}]) -> Link, Link");
        let host = API.iter().find(|e| e.path() == "netns.host").unwrap();
        assert_eq!(host.signature(), "netns.host() -> Netns");
        assert_eq!(table_keys("{ns?: Netns|string, pos?: integer}"), Some(vec!["ns", "pos"]));
        assert_eq!(split_top("{a: x, b: y}, Link"), vec!["{a: x, b: y}", "Link"]);
    }

    #[test]
    fn every_entry_has_a_known_scope_doc_and_example() {
        for e in API {
            assert!(scope(e.scope).is_some(), "{}: unknown scope", e.path());
            assert!(!e.doc.is_empty() && !e.example.is_empty(), "{}: doc and example", e.path());
            assert_eq!(API.iter().filter(|o| o.path() == e.path()).count(), 1, "{} twice", e.path());
        }
    }
}
