//! `route` module.

use mlua::{Lua, Table, Value};

use super::link::dev_name;
use super::util::{Opts, q, with};
use crate::model::{Route, parse_dest, parse_ip};

fn spec(lua: &Lua, call: &str, dest: &str, o: &Opts, ns: &crate::model::NsRef) -> mlua::Result<Route> {
    let via: Option<String> = o.get(lua, call, "via")?;
    let dev = dev_name(lua, call, o.get::<Value>(lua, call, "dev")?.unwrap_or(Value::Nil), ns)?;
    let metric: Option<u32> = if o_has(o, lua, call, "metric")? { o.get(lua, call, "metric")? } else { None };
    with(
        lua,
        || call.to_string(),
        |_| {
            let via = via.as_deref().map(parse_ip).transpose()?;
            let dest = parse_dest(dest, via)?;
            Ok(Route { dest, via, dev, metric, proto: None, scope: None, src: None })
        },
    )
}

fn o_has(o: &Opts, lua: &Lua, call: &str, key: &str) -> mlua::Result<bool> {
    Ok(o.get::<Value>(lua, call, key)?.is_some_and(|v| !v.is_nil()))
}

pub fn register(lua: &Lua, route: &Table) -> mlua::Result<()> {
    route.set(
        "add",
        lua.create_function(|lua, (dest, opts): (String, Option<Table>)| {
            let call = format!("route.add({})", q(&dest));
            let o = Opts::new(lua, &call, opts, &["via", "dev", "ns", "metric"])?;
            let ns = o.ns(lua, &call, "ns")?;
            let r = spec(lua, &call, &dest, &o, &ns)?;
            with(lua, || call.clone(), |s| s.route_add(&ns, r))
        })?,
    )?;
    route.set(
        "del",
        lua.create_function(|lua, (dest, opts): (String, Option<Table>)| {
            let call = format!("route.del({})", q(&dest));
            let o = Opts::new(lua, &call, opts, &["via", "dev", "ns", "metric"])?;
            let ns = o.ns(lua, &call, "ns")?;
            let r = spec(lua, &call, &dest, &o, &ns)?;
            with(lua, || call.clone(), |s| s.route_del(&ns, r))
        })?,
    )?;
    Ok(())
}
