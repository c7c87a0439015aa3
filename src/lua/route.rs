//! `route` module.

use mlua::{Lua, Table};

use super::handles::q;
use super::link::dev_name;
use super::options::{self, LinkArg, NsArg, Opts, options};
use super::util::with;
use std::net::{IpAddr, Ipv6Addr};

use crate::error::Error;
use crate::model::{Route, parse_dest, parse_ip};

options! {
    /// The options of `route.add` and `route.del`.
    struct RouteOpts { via: String, dev: LinkArg, ns: NsArg, metric: u32, family: String }
}

fn spec(lua: &Lua, call: &str, dest: &str, o: RouteOpts, ns: &crate::model::NsRef) -> mlua::Result<Route> {
    let RouteOpts { via, dev, metric, family, .. } = o;
    let dev = dev_name(lua, call, dev, ns)?;
    with(
        lua,
        || call.to_string(),
        |_| {
            let via = via.as_deref().map(parse_ip).transpose()?;
            let v6 = match family.as_deref() {
                None => None,
                Some("ipv4") => Some(false),
                Some("ipv6") => Some(true),
                Some(f) => return Err(Error::invalid(format!("family \"{f}\" is not \"ipv4\" or \"ipv6\""))),
            };
            // "default" without a gateway says nothing of the family: `family` does
            // (IPv4 when neither does, as `ip route` without -6).
            let hint = via.or(v6.filter(|v| *v).map(|_| IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
            let dest = parse_dest(dest, hint)?;
            if let Some(v6) = v6
                && dest.addr().is_ipv6() != v6
            {
                let other = if v6 { "ipv4" } else { "ipv6" };
                return Err(Error::invalid(format!(
                    "{dest} is an {} route; use {{family = \"{other}\"}} (or leave family out)",
                    if v6 { "IPv4" } else { "IPv6" }
                )));
            }
            Ok(Route { dest, via, dev, metric, proto: None, scope: None, src: None })
        },
    )
}

pub fn register(lua: &Lua, route: &Table) -> mlua::Result<()> {
    route.set(
        "add",
        lua.create_function(|lua, (dest, opts): (String, Opts)| {
            let call = format!("route.add({})", q(&dest));
            let mut o: RouteOpts = options::read(lua, &call, opts)?;
            let ns = options::ns(lua, &call, o.ns.take())?;
            let r = spec(lua, &call, &dest, o, &ns)?;
            with(lua, || call.clone(), |s| s.route_add(&ns, r))
        })?,
    )?;
    route.set(
        "del",
        lua.create_function(|lua, (dest, opts): (String, Opts)| {
            let call = format!("route.del({})", q(&dest));
            let mut o: RouteOpts = options::read(lua, &call, opts)?;
            let ns = options::ns(lua, &call, o.ns.take())?;
            let r = spec(lua, &call, &dest, o, &ns)?;
            with(lua, || call.clone(), |s| s.route_del(&ns, r))
        })?,
    )?;
    Ok(())
}
