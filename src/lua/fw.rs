//! `fw` module (iptables; ip6tables with `{family = "ipv6"}`).

use mlua::{Function, Lua, MultiValue, Table};

use super::handles::q;
use super::options::{self, NsArg, Opts, options};
use super::util::{fail, with};
use crate::firewall::Family;
use crate::model::NsRef;
use crate::session::Session;

options! {
    /// The options every `fw` function takes.
    struct FwOpts { ns: NsArg, family: String }
}

options! {
    /// `fw.insert`'s options.
    struct InsertOpts { ns: NsArg, pos: u32, family: String }
}

/// The `family` option: "ipv4" (the default: iptables) or "ipv6" (ip6tables).
fn family(lua: &Lua, call: &str, f: Option<String>) -> mlua::Result<Family> {
    f.map_or(Ok(Family::Ipv4), |f| Family::parse(&f).map_err(|e| fail(lua, call, e)))
}

/// A call with the options every `fw` function takes (`ns`, `family`).
fn fw_call<T>(
    lua: &Lua,
    call: String,
    opts: Opts,
    f: impl FnOnce(&mut Session, &NsRef, Family) -> crate::error::Result<T>,
) -> mlua::Result<T> {
    let o: FwOpts = options::read(lua, &call, opts)?;
    let ns = options::ns(lua, &call, o.ns)?;
    let fam = family(lua, &call, o.family)?;
    with(lua, move || call, |s| f(s, &ns, fam))
}

pub fn register(lua: &Lua, fw: &Table) -> mlua::Result<()> {
    fw.set(
        "policy",
        lua.create_function(|lua, (table, chain, target, opts): (String, String, String, Opts)| {
            fw_call(lua, format!("fw.policy({}, {}, {})", q(&table), q(&chain), q(&target)), opts, |s, ns, f| {
                s.fw_policy(ns, f, &table, &chain, &target)
            })
        })?,
    )?;
    fw.set(
        "append",
        lua.create_function(|lua, (table, chain, rule, opts): (String, String, String, Opts)| {
            fw_call(lua, format!("fw.append({}, {}, {})", q(&table), q(&chain), q(&rule)), opts, |s, ns, f| {
                s.fw_append(ns, f, &table, &chain, &rule)
            })
        })?,
    )?;
    fw.set(
        "insert",
        lua.create_function(|lua, (table, chain, rule, opts): (String, String, String, Opts)| {
            let call = format!("fw.insert({}, {}, {})", q(&table), q(&chain), q(&rule));
            let o: InsertOpts = options::read(lua, &call, opts)?;
            let ns = options::ns(lua, &call, o.ns)?;
            let fam = family(lua, &call, o.family)?;
            let pos = o.pos.unwrap_or(1);
            with(lua, || call.clone(), |s| s.fw_insert(&ns, fam, &table, &chain, &rule, pos))
        })?,
    )?;
    fw.set(
        "delete",
        lua.create_function(|lua, (table, chain, rule, opts): (String, String, String, Opts)| {
            fw_call(lua, format!("fw.delete({}, {}, {})", q(&table), q(&chain), q(&rule)), opts, |s, ns, f| {
                s.fw_delete(ns, f, &table, &chain, &rule)
            })
        })?,
    )?;
    fw.set(
        "chain",
        lua.create_function(|lua, (table, name, opts): (String, String, Opts)| {
            fw_call(lua, format!("fw.chain({}, {})", q(&table), q(&name)), opts, |s, ns, f| {
                s.fw_chain(ns, f, &table, &name)
            })
        })?,
    )?;
    fw.set(
        "batch",
        lua.create_function(|lua, f: Function| {
            with(lua, || "fw.batch(...)".into(), |s| s.fw_batch_begin())?;
            let r = f.call::<MultiValue>(());
            // The batch's own code failed: its queued changes were never made. But an
            // os.exit(0) inside ends the script successfully: they must be made.
            let apply = match &r {
                Ok(_) => true,
                Err(e) => super::exit_code(e) == Some(0),
            };
            let end = with(lua, || "fw.batch(...)".into(), |s| s.fw_batch_end(apply));
            let values = r?;
            end?;
            Ok(values)
        })?,
    )?;
    fw.set(
        "rules",
        lua.create_function(|lua, (table, opts): (String, Opts)| {
            let v = fw_call(lua, format!("fw.rules({})", q(&table)), opts, |s, ns, f| s.fw_rules(ns, f, &table))?;
            lua.create_sequence_from(v)
        })?,
    )?;
    Ok(())
}
