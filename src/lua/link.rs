//! `veth`, `bridge` and `link` modules and the Link handle.

use mlua::{AnyUserData, Lua, Table, UserData, UserDataFields, UserDataMethods, Value, Variadic};

use super::handles::{LLink, link_desc, new_link, ns_to_lua};
use super::handles::{q, word};
use super::options::ns_only;
use super::options::{self, Arg, LinkArg, NsArg, Opts, options};
use super::util::{fail, no_more, ns_value, session, with};
use crate::error::Error;
use crate::model::{NsRef, parse_cidr};
use crate::op::BridgeOpts;

options! {
    /// `Link:addr`'s options.
    struct AddrOpts { nodad: bool }
}

options! {
    /// `veth.add`'s options.
    struct VethOpts { ns: NsArg, peer_ns: NsArg, queues: u32 }
}

options! {
    /// `bridge.add`'s options.
    struct BridgeAddOpts { ns: NsArg, vlan_filtering: bool, stp: bool }
}

/// A link argument: a Link handle or a name (looked up in `ns`).
pub fn link_arg(lua: &Lua, call: &str, v: Value, ns: &NsRef) -> mlua::Result<LLink> {
    match v {
        Value::UserData(ud) => ud
            .borrow::<LLink>()
            .map(|l| l.clone())
            .map_err(|_| fail(lua, call, Error::invalid("expected a Link or a link name"))),
        Value::String(s) => Ok(LLink { ns: ns.clone(), name: s.to_str()?.to_string() }),
        _ => Err(fail(lua, call, Error::invalid("expected a Link or a link name"))),
    }
}

/// Calls `f` with the link, then returns the handle itself (methods chain).
fn chain(
    lua: &Lua,
    this: AnyUserData,
    what: impl FnOnce(&LLink) -> String,
    f: impl FnOnce(&mut crate::session::Session, &LLink) -> crate::error::Result<()>,
) -> mlua::Result<AnyUserData> {
    let l = this.borrow::<LLink>()?.clone();
    with(lua, || what(&l), |s| f(s, &l))?;
    Ok(this)
}

impl UserData for LLink {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("name", |_, this| Ok(this.name.clone()));
        f.add_field_method_get("ns", |lua, this| ns_to_lua(lua, &this.ns));
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        super::kinds::add_methods(m);
        m.add_meta_method("__tostring", |lua, this, ()| {
            let s = session(lua);
            let info = {
                let mut se = s.borrow_mut();
                se.before_call().and_then(|()| se.link(&this.ns, &this.name))
            };
            Ok(match info {
                Ok(i) => {
                    let mut parts = vec![if i.up { "up".to_string() } else { "down".to_string() }];
                    if let Some(k) = i.kind {
                        parts.push(k);
                    }
                    if let Some(m) = i.master {
                        parts.push(format!("master {}", word(&m)));
                    }
                    parts.extend(i.addrs.iter().map(|a| a.to_string()));
                    parts.extend(super::kinds::qdisc_text(&mut s.borrow_mut(), this));
                    format!("{} [{}]", this.desc(), parts.join(", "))
                }
                Err(_) => format!("{} [gone]", this.desc()),
            })
        });
        m.add_function("up", |lua, (this, rest): (AnyUserData, Variadic<Value>)| {
            no_more(lua, || format!("{}:up()", link_desc(&this)), &rest)?;
            // `link:master(br):up()` is one request (Session::hold_link_changes).
            session(lua).borrow_mut().next_call_may_pair();
            chain(lua, this, |l| format!("{}:up()", l.desc()), |s, l| s.link_set_up(&l.ns, &l.name, true))
        });
        m.add_function("down", |lua, (this, rest): (AnyUserData, Variadic<Value>)| {
            no_more(lua, || format!("{}:down()", link_desc(&this)), &rest)?;
            chain(lua, this, |l| format!("{}:down()", l.desc()), |s, l| s.link_set_up(&l.ns, &l.name, false))
        });
        m.add_function("addr", |lua, (this, cidr, opts): (AnyUserData, String, Opts)| {
            let call = format!("{}:addr({})", this.borrow::<LLink>()?.desc(), q(&cidr));
            let nodad = options::read::<AddrOpts>(lua, &call, opts)?.nodad.unwrap_or(true);
            chain(
                lua,
                this,
                |_| call.clone(),
                |s, l| {
                    let a = parse_cidr(&cidr)?;
                    s.link_addr_opts(&l.ns, &l.name, a, nodad)
                },
            )
        });
        m.add_function("mtu", |lua, (this, Arg(mtu), rest): (AnyUserData, Arg<u32>, Variadic<Value>)| {
            no_more(lua, || format!("{}:mtu({mtu})", link_desc(&this)), &rest)?;
            chain(lua, this, |l| format!("{}:mtu({mtu})", l.desc()), |s, l| s.link_mtu(&l.ns, &l.name, mtu))
        });
        m.add_function("master", |lua, (this, br, rest): (AnyUserData, Value, Variadic<Value>)| {
            let l = this.borrow::<LLink>()?.clone();
            let call = format!("{}:master(...)", l.desc());
            no_more(lua, || call.clone(), &rest)?;
            let b = link_arg(lua, &call, br, &l.ns)?;
            if b.ns != l.ns {
                return Err(fail(
                    lua,
                    &call,
                    Error::invalid(format!("bridge \"{}\" is in {} but the link is in {}", b.name, b.ns, l.ns)),
                ));
            }
            chain(
                lua,
                this,
                |l| format!("{}:master({})", l.desc(), q(&b.name)),
                |s, l| s.link_master(&l.ns, &l.name, Some(&b.name)),
            )
        });
        m.add_function("nomaster", |lua, (this, rest): (AnyUserData, Variadic<Value>)| {
            no_more(lua, || format!("{}:nomaster()", link_desc(&this)), &rest)?;
            chain(lua, this, |l| format!("{}:nomaster()", l.desc()), |s, l| s.link_master(&l.ns, &l.name, None))
        });
        m.add_function("move", |lua, (this, to, rest): (AnyUserData, Value, Variadic<Value>)| {
            let l = this.borrow::<LLink>()?.clone();
            let call = format!("{}:move(...)", l.desc());
            no_more(lua, || call.clone(), &rest)?;
            if to.is_nil() {
                return Err(fail(
                    lua,
                    &call,
                    Error::invalid("name the target namespace (a Netns, a name, or netns.host())"),
                ));
            }
            let to = ns_value(lua, &call, to, "the target namespace")?;
            with(lua, || format!("{}:move({})", l.desc(), q(to.short())), |s| s.link_move(&l.ns, &l.name, &to))?;
            this.borrow_mut::<LLink>()?.ns = to;
            Ok(this)
        });
        m.add_method("del", |lua, this, rest: Variadic<Value>| {
            no_more(lua, || format!("{}:del()", this.desc()), &rest)?;
            with(lua, || format!("{}:del()", this.desc()), |s| s.link_del(&this.ns, &this.name))
        });
        m.add_method("addrs", |lua, this, rest: Variadic<Value>| {
            no_more(lua, || format!("{}:addrs()", this.desc()), &rest)?;
            let i = with(lua, || format!("{}:addrs()", this.desc()), |s| s.link(&this.ns, &this.name))?;
            lua.create_sequence_from(i.addrs.iter().map(|a| a.to_string()))
        });
        m.add_method("info", |lua, this, rest: Variadic<Value>| {
            no_more(lua, || format!("{}:info()", this.desc()), &rest)?;
            let i = with(lua, || format!("{}:info()", this.desc()), |s| s.link(&this.ns, &this.name))?;
            let t = lua.create_table()?;
            t.set("name", i.name)?;
            t.set("up", i.up)?;
            t.set("mtu", i.mtu)?;
            t.set("kind", i.kind)?;
            t.set("master", i.master)?;
            t.set("alias", i.alias)?;
            let qd = super::kinds::qdisc_text(&mut session(lua).borrow_mut(), this);
            t.set("qdisc", qd)?;
            t.set("addrs", lua.create_sequence_from(i.addrs.iter().map(|a| a.to_string()))?)?;
            Ok(t)
        });
    }
}

pub fn register(lua: &Lua, veth: &Table, bridge: &Table, link: &Table) -> mlua::Result<()> {
    veth.set(
        "add",
        lua.create_function(|lua, (name, peer, opts): (String, String, Opts)| {
            let call = format!("veth.add({}, {})", q(&name), q(&peer));
            let o: VethOpts = options::read(lua, &call, opts)?;
            let ns = options::ns(lua, &call, o.ns)?;
            let peer_ns = options::ns(lua, &call, o.peer_ns)?;
            with(lua, || call.clone(), |s| s.veth_add(&name, &peer, &ns, &peer_ns, o.queues))?;
            Ok((new_link(lua, ns, name)?, new_link(lua, peer_ns, peer)?))
        })?,
    )?;
    bridge.set(
        "add",
        lua.create_function(|lua, (name, opts): (String, Opts)| {
            let call = format!("bridge.add({})", q(&name));
            let o: BridgeAddOpts = options::read(lua, &call, opts)?;
            let ns = options::ns(lua, &call, o.ns)?;
            let bo = BridgeOpts { vlan_filtering: o.vlan_filtering, stp: o.stp };
            with(lua, || call.clone(), |s| s.bridge_add_with(&name, &ns, bo))?;
            new_link(lua, ns, name)
        })?,
    )?;
    super::kinds::register(lua, link)?;
    link.set(
        "get",
        lua.create_function(|lua, (name, opts): (String, Opts)| {
            let ns = ns_only(lua, format!("link.get({})", q(&name)), opts, |s, ns| {
                s.link_exists(ns, &name).map(|_| ns.clone())
            })?;
            new_link(lua, ns, name)
        })?,
    )?;
    Ok(())
}

/// A `dev=` option: a Link or a link name, returned as a name.
pub fn dev_name(lua: &Lua, call: &str, v: Option<LinkArg>, ns: &NsRef) -> mlua::Result<Option<String>> {
    match v {
        None => Ok(None),
        Some(v) => {
            let l = v.link(ns);
            if &l.ns != ns {
                return Err(fail(
                    lua,
                    call,
                    Error::invalid(format!("link \"{}\" is in {}, not in {ns}", l.name, l.ns)),
                ));
            }
            Ok(Some(l.name))
        }
    }
}
