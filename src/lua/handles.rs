//! The handle types scripts hold (Netns, Link, Process) and their constructors. The
//! methods are in the file of their area (netns.rs, link.rs); this file is what those
//! areas and util.rs share, so that they need not import each other. Option tables
//! take Netns and Link handles as themselves (options.rs, `Scalar::of`).

use mlua::{AnyUserData, Lua, Value};

use crate::model::NsRef;

#[derive(Clone)]
pub struct LNetns {
    pub ns: NsRef,
}

pub struct LProcess {
    pub pid: u32,
    pub cmd: String,
}

/// A Lua string argument as it reads in the call description of an error message
/// (`veth.add("a")`; control characters escaped). Never used for commands: those
/// are quoted by `model::shell_quote`.
pub fn q(s: &str) -> String {
    format!("{s:?}")
}

/// A name as it reads inside a handle's description: bare when it is a plain word
/// (`Link("eth0" in ns1)`, `master br0`), quoted as `q` does otherwise, so that a
/// namespace called `a b` or `x) [up` cannot make the text say something else.
pub fn word(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.@+".contains(c));
    if plain { s.to_string() } else { q(s) }
}

pub fn ns_desc(ns: &NsRef) -> String {
    match ns {
        NsRef::Host => "netns.host()".into(),
        NsRef::Named(n) => format!("Netns({})", q(n)),
    }
}

pub fn new_netns(lua: &Lua, ns: NsRef) -> mlua::Result<AnyUserData> {
    lua.create_userdata(LNetns { ns })
}

/// `netns.host()` style handle for a namespace value returned to Lua.
pub fn ns_to_lua(lua: &Lua, ns: &NsRef) -> mlua::Result<Value> {
    Ok(Value::UserData(new_netns(lua, ns.clone())?))
}

#[derive(Clone, Debug)]
pub struct LLink {
    pub ns: NsRef,
    pub name: String,
}

impl LLink {
    pub fn desc(&self) -> String {
        match &self.ns {
            NsRef::Host => format!("Link({})", q(&self.name)),
            NsRef::Named(n) => format!("Link({} in {})", q(&self.name), word(n)),
        }
    }
}

/// `LLink::desc` of a link handle (for a call's description in an error; a handle
/// that is not a link is refused where it is used).
pub fn link_desc(u: &mlua::AnyUserData) -> String {
    u.borrow::<LLink>().map_or_else(|_| "Link(?)".to_string(), |l| l.desc())
}

pub fn new_link(lua: &Lua, ns: NsRef, name: String) -> mlua::Result<AnyUserData> {
    lua.create_userdata(LLink { ns, name })
}
