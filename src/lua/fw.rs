//! `fw` module (iptables).

use mlua::{Function, Lua, MultiValue, Table};

use super::util::{Opts, ns_only, q, with};

pub fn register(lua: &Lua, fw: &Table) -> mlua::Result<()> {
    fw.set(
        "policy",
        lua.create_function(|lua, (table, chain, target, opts): (String, String, String, Option<Table>)| {
            ns_only(lua, format!("fw.policy({}, {}, {})", q(&table), q(&chain), q(&target)), opts, |s, ns| {
                s.fw_policy(ns, &table, &chain, &target)
            })
        })?,
    )?;
    fw.set(
        "append",
        lua.create_function(|lua, (table, chain, rule, opts): (String, String, String, Option<Table>)| {
            ns_only(lua, format!("fw.append({}, {}, {})", q(&table), q(&chain), q(&rule)), opts, |s, ns| {
                s.fw_append(ns, &table, &chain, &rule)
            })
        })?,
    )?;
    fw.set(
        "insert",
        lua.create_function(|lua, (table, chain, rule, opts): (String, String, String, Option<Table>)| {
            let call = format!("fw.insert({}, {}, {})", q(&table), q(&chain), q(&rule));
            let o = Opts::new(lua, &call, opts, &["ns", "pos"])?;
            let ns = o.ns(lua, &call, "ns")?;
            let pos = o.get::<u32>(lua, &call, "pos")?.unwrap_or(1);
            with(lua, || call.clone(), |s| s.fw_insert(&ns, &table, &chain, &rule, pos))
        })?,
    )?;
    fw.set(
        "delete",
        lua.create_function(|lua, (table, chain, rule, opts): (String, String, String, Option<Table>)| {
            ns_only(lua, format!("fw.delete({}, {}, {})", q(&table), q(&chain), q(&rule)), opts, |s, ns| {
                s.fw_delete(ns, &table, &chain, &rule)
            })
        })?,
    )?;
    fw.set(
        "chain",
        lua.create_function(|lua, (table, name, opts): (String, String, Option<Table>)| {
            ns_only(lua, format!("fw.chain({}, {})", q(&table), q(&name)), opts, |s, ns| s.fw_chain(ns, &table, &name))
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
        lua.create_function(|lua, (table, opts): (String, Option<Table>)| {
            let v = ns_only(lua, format!("fw.rules({})", q(&table)), opts, |s, ns| s.fw_rules(ns, &table))?;
            lua.create_sequence_from(v)
        })?,
    )?;
    Ok(())
}
