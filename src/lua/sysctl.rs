//! `sysctl` module.

use mlua::{Lua, Table, Value};

use super::handles::q;
use super::options::{Opts, ns_only};
use super::util::fail;
use crate::error::Error;

pub fn register(lua: &Lua, sysctl: &Table) -> mlua::Result<()> {
    sysctl.set(
        "get",
        lua.create_function(|lua, (key, opts): (String, Opts)| {
            ns_only(lua, format!("sysctl.get({})", q(&key)), opts, |s, ns| s.sysctl_get(ns, &key))
        })?,
    )?;
    sysctl.set(
        "set",
        lua.create_function(|lua, (key, value, opts): (String, Value, Opts)| {
            let call = format!("sysctl.set({}, ...)", q(&key));
            let value = match value {
                Value::String(s) => s.to_str()?.to_string(),
                Value::Integer(i) => i.to_string(),
                Value::Number(n) if n.fract() == 0.0 => (n as i64).to_string(),
                Value::Boolean(b) => (b as u8).to_string(),
                _ => {
                    return Err(fail(
                        lua,
                        &call,
                        Error::invalid("a sysctl value is a string, an integer or a boolean"),
                    ));
                }
            };
            ns_only(lua, format!("sysctl.set({}, {})", q(&key), q(&value)), opts, |s, ns| {
                s.sysctl_set(ns, &key, &value)
            })
        })?,
    )?;
    Ok(())
}
