//! `link.add` (link kinds beyond veth and bridge), the Link methods for bridge-port
//! flags and root qdiscs (`impair`, `shape`, `unimpair`, `bridge_port`), and the
//! bridge options of `bridge.add`.

use mlua::{AnyUserData, Lua, Table, UserDataMethods, Value, Variadic};

use super::handles::{LLink, new_link};
use super::link::link_arg;
use super::util::{Opts, fail, no_more, q, with};
use crate::error::Error;
use crate::model::{NsRef, parse_ip};
use crate::op::{BridgeOpts, LinkKind, PortFlags};
use crate::qdisc::{Impair, RootQdisc, Shape};

const KINDS: &[&str] = &["vxlan", "macvlan", "macvtap", "vlan", "dummy", "ifb"];

/// The options of `link.add`, all kinds together.
const ALL_OPTS: &[&str] = &["ns", "id", "remote", "local_addr", "dev", "port", "parent", "mode"];

/// The options each kind takes (besides `ns`).
fn kind_opts(kind: &str) -> &'static [&'static str] {
    match kind {
        "vxlan" => &["ns", "id", "remote", "local_addr", "dev", "port"],
        "macvlan" | "macvtap" => &["ns", "parent", "mode"],
        "vlan" => &["ns", "parent", "id"],
        _ => &["ns"],
    }
}

/// A parent / underlay option: a Link (in any namespace; the new link is created
/// from there) or a link name in the new link's namespace. Returns (name, namespace).
fn lower(lua: &Lua, call: &str, o: &Opts, key: &str, ns: &NsRef) -> mlua::Result<Option<(String, NsRef)>> {
    match o.get::<Value>(lua, call, key)? {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => {
            let l = link_arg(lua, call, v, ns)?;
            Ok(Some((l.name, l.ns)))
        }
    }
}

fn required<T>(lua: &Lua, call: &str, v: Option<T>, what: &str) -> mlua::Result<T> {
    v.ok_or_else(|| fail(lua, call, Error::invalid(format!("option {what} is required"))))
}

fn link_add(lua: &Lua, name: String, kind: String, opts: Option<Table>) -> mlua::Result<AnyUserData> {
    let call = format!("link.add({}, {})", q(&name), q(&kind));
    // Unknown keys first (every kind's options), then the kind, then whether each
    // key given applies to it.
    let o = Opts::new(lua, &call, opts, ALL_OPTS)?;
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
    for key in ALL_OPTS.iter().filter(|k| !takes.contains(k)) {
        if !matches!(o.get::<Value>(lua, &call, key)?, None | Some(Value::Nil)) {
            return Err(fail(
                lua,
                &call,
                Error::invalid(format!(
                    "option {key} does not apply to {kind} links ({kind} takes: {})",
                    takes.join(", ")
                )),
            ));
        }
    }
    let ns = o.ns(lua, &call, "ns")?;
    let ip = |key: &str| -> mlua::Result<Option<std::net::IpAddr>> {
        match o.get::<String>(lua, &call, key)? {
            Some(s) => parse_ip(&s).map(Some).map_err(|e| fail(lua, &call, e)),
            None => Ok(None),
        }
    };
    let (link, from) = match kind.as_str() {
        "vxlan" => {
            let id = required(lua, &call, o.get::<u32>(lua, &call, "id")?, "id (the VXLAN network identifier)")?;
            let dev = lower(lua, &call, &o, "dev", &ns)?;
            let port = o.get::<u16>(lua, &call, "port")?.unwrap_or(4789);
            let (dev, from) = match dev {
                Some((d, f)) => (Some(d), f),
                None => (None, ns.clone()),
            };
            (LinkKind::Vxlan { id, remote: ip("remote")?, local: ip("local_addr")?, dev, port }, from)
        }
        "macvlan" | "macvtap" => {
            let (parent, from) = required(lua, &call, lower(lua, &call, &o, "parent", &ns)?, "parent")?;
            let mode = o.get::<String>(lua, &call, "mode")?.unwrap_or_else(|| "bridge".into());
            let k =
                if kind == "macvlan" { LinkKind::Macvlan { parent, mode } } else { LinkKind::Macvtap { parent, mode } };
            (k, from)
        }
        "vlan" => {
            let (parent, from) = required(lua, &call, lower(lua, &call, &o, "parent", &ns)?, "parent")?;
            let id = required(lua, &call, o.get::<u16>(lua, &call, "id")?, "id (the VLAN id, 1 to 4094)")?;
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
        lua.create_function(|lua, (name, kind, opts): (String, String, Option<Table>)| {
            link_add(lua, name, kind, opts)
        })?,
    )
}

/// `bridge.add`'s options other than `ns`.
pub const BRIDGE_OPTS: &[&str] = &["ns", "vlan_filtering", "stp"];

/// Reads `vlan_filtering` and `stp` from `bridge.add`'s options.
pub fn bridge_opts(lua: &Lua, call: &str, o: &Opts) -> mlua::Result<BridgeOpts> {
    Ok(BridgeOpts { vlan_filtering: o.get(lua, call, "vlan_filtering")?, stp: o.get(lua, call, "stp")? })
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
    m.add_function("impair", |lua, (this, opts, rest): (AnyUserData, Option<Table>, Variadic<Value>)| {
        let l = this.borrow::<LLink>()?.clone();
        let call = format!("{}:impair{{...}}", l.desc());
        no_more(lua, &call, &rest)?;
        let keys = ["delay", "jitter", "loss", "duplicate", "corrupt", "reorder", "rate"];
        let o = Opts::new(lua, &call, opts, &keys)?;
        let imp = Impair {
            delay: o.get(lua, &call, "delay")?,
            jitter: o.get(lua, &call, "jitter")?,
            loss: o.get(lua, &call, "loss")?,
            duplicate: o.get(lua, &call, "duplicate")?,
            corrupt: o.get(lua, &call, "corrupt")?,
            reorder: o.get(lua, &call, "reorder")?,
            rate: o.get(lua, &call, "rate")?,
        };
        with(lua, || call.clone(), |s| s.qdisc_set(&l.ns, &l.name, imp.qdisc()?))?;
        Ok(this)
    });
    m.add_function("shape", |lua, (this, opts, rest): (AnyUserData, Option<Table>, Variadic<Value>)| {
        let l = this.borrow::<LLink>()?.clone();
        let call = format!("{}:shape{{...}}", l.desc());
        no_more(lua, &call, &rest)?;
        let o = Opts::new(lua, &call, opts, &["rate", "burst", "latency"])?;
        let rate = required(lua, &call, o.get::<String>(lua, &call, "rate")?, "rate (like \"10mbit\")")?;
        let sh = Shape { rate, burst: o.get(lua, &call, "burst")?, latency: o.get(lua, &call, "latency")? };
        with(lua, || call.clone(), |s| s.qdisc_set(&l.ns, &l.name, sh.qdisc()?))?;
        Ok(this)
    });
    m.add_function("unimpair", |lua, (this, rest): (AnyUserData, Variadic<Value>)| {
        let l = this.borrow::<LLink>()?.clone();
        let call = format!("{}:unimpair()", l.desc());
        no_more(lua, &call, &rest)?;
        with(lua, || call.clone(), |s| s.qdisc_clear(&l.ns, &l.name))?;
        Ok(this)
    });
    m.add_function("bridge_port", |lua, (this, opts, rest): (AnyUserData, Option<Table>, Variadic<Value>)| {
        let l = this.borrow::<LLink>()?.clone();
        let call = format!("{}:bridge_port{{...}}", l.desc());
        no_more(lua, &call, &rest)?;
        let o = Opts::new(lua, &call, opts, &["hairpin", "isolated", "learning", "flood"])?;
        let flags = PortFlags {
            hairpin: o.get(lua, &call, "hairpin")?,
            isolated: o.get(lua, &call, "isolated")?,
            learning: o.get(lua, &call, "learning")?,
            flood: o.get(lua, &call, "flood")?,
        };
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
