//! `link.add` (link kinds beyond veth and bridge), the Link methods for bridge-port
//! flags and root qdiscs (`impair`, `shape`, `unimpair`, `bridge_port`).

use mlua::{AnyUserData, Lua, Table, UserDataMethods, Value, Variadic};

use super::handles::q;
use super::handles::{LLink, new_link};
use super::options::{self, LinkArg, NsArg, Options, Opts, options};
use super::util::{fail, no_more, with};
use crate::error::Error;
use crate::model::parse_ip;
use crate::op::{LinkKind, PortFlags};
use crate::qdisc::{Impair, RootQdisc, Shape};

const KINDS: &[&str] = &["vxlan", "macvlan", "macvtap", "vlan", "dummy", "ifb"];

options! {
    /// The options of `link.add`, all kinds together (`kind_opts`: which apply to
    /// which kind). `id` is the VNI of vxlan and the VLAN id of vlan.
    struct LinkAddOpts { ns: NsArg, id: u32, remote: String, local_addr: String, dev: LinkArg, port: u16, parent: LinkArg, mode: String }
}

options! {
    /// `Link:impair`'s options (netem).
    struct ImpairOpts { delay: String, jitter: String, loss: String, duplicate: String, corrupt: String, reorder: String, rate: String }
}

options! {
    /// `Link:shape`'s options (tbf).
    struct ShapeOpts { rate: String, burst: String, latency: String }
}

options! {
    /// `Link:bridge_port`'s options.
    struct PortOpts { hairpin: bool, isolated: bool, learning: bool, flood: bool }
}

/// The options each kind takes (besides `ns`).
fn kind_opts(kind: &str) -> &'static [&'static str] {
    match kind {
        "vxlan" => &["ns", "id", "remote", "local_addr", "dev", "port"],
        "macvlan" | "macvtap" => &["ns", "parent", "mode"],
        "vlan" => &["ns", "parent", "id"],
        _ => &["ns"],
    }
}

fn required<T>(lua: &Lua, call: &str, v: Option<T>, what: &str) -> mlua::Result<T> {
    v.ok_or_else(|| fail(lua, call, Error::invalid(format!("option {what} is required"))))
}

fn link_add(lua: &Lua, name: String, kind: String, opts: Opts) -> mlua::Result<AnyUserData> {
    let call = format!("link.add({}, {})", q(&name), q(&kind));
    // Unknown keys first (every kind's options), then the kind, then whether each
    // key given applies to it.
    let o: LinkAddOpts = options::read(lua, &call, opts)?;
    if !KINDS.contains(&kind.as_str()) {
        let hint = match kind.as_str() {
            "veth" => " (veth pairs are made by veth.add)".to_string(),
            "bridge" => " (bridges are made by bridge.add)".to_string(),
            _ => String::new(),
        };
        return Err(fail(
            lua,
            &call,
            Error::invalid(format!("unknown link kind \"{kind}\"{hint}; known: {}", KINDS.join(", "))),
        ));
    }
    let takes = kind_opts(&kind);
    if let Some(key) = o.given().into_iter().find(|k| !takes.contains(k)) {
        return Err(fail(
            lua,
            &call,
            Error::invalid(format!("option {key} does not apply to {kind} links ({kind} takes: {})", takes.join(", "))),
        ));
    }
    let ns = options::ns(lua, &call, o.ns)?;
    let ip = |v: Option<String>| -> mlua::Result<Option<std::net::IpAddr>> {
        v.map(|s| parse_ip(&s).map_err(|e| fail(lua, &call, e))).transpose()
    };
    // A parent / underlay: a Link (in any namespace; the new link is created from
    // there) or a link name in the new link's namespace.
    let lower = |v: Option<LinkArg>| v.map(|v| v.link(&ns)).map(|l| (l.name, l.ns));
    let (link, from) = match kind.as_str() {
        "vxlan" => {
            let id = required(lua, &call, o.id, "id (the VXLAN network identifier)")?;
            let (dev, from) = match lower(o.dev) {
                Some((d, f)) => (Some(d), f),
                None => (None, ns.clone()),
            };
            let port = o.port.unwrap_or(4789);
            (LinkKind::Vxlan { id, remote: ip(o.remote)?, local: ip(o.local_addr)?, dev, port }, from)
        }
        "macvlan" | "macvtap" => {
            let (parent, from) = required(lua, &call, lower(o.parent), "parent")?;
            let mode = o.mode.unwrap_or_else(|| "bridge".into());
            let k =
                if kind == "macvlan" { LinkKind::Macvlan { parent, mode } } else { LinkKind::Macvtap { parent, mode } };
            (k, from)
        }
        "vlan" => {
            let (parent, from) = required(lua, &call, lower(o.parent), "parent")?;
            let id = required(lua, &call, o.id, "id (the VLAN id, 1 to 4094)")?;
            let id = u16::try_from(id)
                .map_err(|_| fail(lua, &call, Error::invalid("option id: expected an integer from 0 to 65535")))?;
            (LinkKind::Vlan { parent, id }, from)
        }
        "dummy" => (LinkKind::Dummy, ns.clone()),
        _ => (LinkKind::Ifb, ns.clone()),
    };
    with(lua, || call.clone(), |s| s.link_add(&name, &ns, link, &from))?;
    new_link(lua, ns, name)
}

pub fn register(lua: &Lua, link: &Table) -> mlua::Result<()> {
    link.set(
        "add",
        lua.create_function(|lua, (name, kind, opts): (String, String, Opts)| link_add(lua, name, kind, opts))?,
    )
}

/// What `tostring(link)` and `link:info().qdisc` show: "netem delay 50ms", or None
/// for the kernel's default.
pub fn qdisc_text(s: &mut crate::session::Session, l: &LLink) -> Option<String> {
    match s.qdisc(&l.ns, &l.name).ok()? {
        RootQdisc::Default => None,
        RootQdisc::Known(q) => Some(q.describe()),
        RootQdisc::Other { kind, .. } => Some(kind),
    }
}

/// Adds `impair`, `shape`, `unimpair` and `bridge_port` to the Link handle.
pub fn add_methods<M: UserDataMethods<LLink>>(m: &mut M) {
    m.add_function("impair", |lua, (this, opts): (AnyUserData, Opts)| {
        let l = this.borrow::<LLink>()?.clone();
        let call = format!("{}:impair{{...}}", l.desc());
        let ImpairOpts { delay, jitter, loss, duplicate, corrupt, reorder, rate } = options::read(lua, &call, opts)?;
        let imp = Impair { delay, jitter, loss, duplicate, corrupt, reorder, rate };
        with(lua, || call.clone(), |s| s.qdisc_set(&l.ns, &l.name, imp.qdisc()?))?;
        Ok(this)
    });
    m.add_function("shape", |lua, (this, opts): (AnyUserData, Opts)| {
        let l = this.borrow::<LLink>()?.clone();
        let call = format!("{}:shape{{...}}", l.desc());
        let o: ShapeOpts = options::read(lua, &call, opts)?;
        let rate = required(lua, &call, o.rate, "rate (like \"10mbit\")")?;
        let sh = Shape { rate, burst: o.burst, latency: o.latency };
        with(lua, || call.clone(), |s| s.qdisc_set(&l.ns, &l.name, sh.qdisc()?))?;
        Ok(this)
    });
    m.add_function("unimpair", |lua, (this, rest): (AnyUserData, Variadic<Value>)| {
        let l = this.borrow::<LLink>()?.clone();
        let call = format!("{}:unimpair()", l.desc());
        no_more(lua, || call.clone(), &rest)?;
        with(lua, || call.clone(), |s| s.qdisc_clear(&l.ns, &l.name))?;
        Ok(this)
    });
    m.add_function("bridge_port", |lua, (this, opts): (AnyUserData, Opts)| {
        let l = this.borrow::<LLink>()?.clone();
        let call = format!("{}:bridge_port{{...}}", l.desc());
        let PortOpts { hairpin, isolated, learning, flood } = options::read(lua, &call, opts)?;
        let flags = PortFlags { hairpin, isolated, learning, flood };
        if flags == PortFlags::default() {
            return Err(fail(
                lua,
                &call,
                Error::invalid("give at least one of hairpin, isolated, learning, flood (true or false)"),
            ));
        }
        with(lua, || call.clone(), |s| s.bridge_port(&l.ns, &l.name, flags))?;
        Ok(this)
    });
}
