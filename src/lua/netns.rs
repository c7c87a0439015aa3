//! `netns` module, the Netns handle (exec, spawn, ping, tcp) and the Process handle.

use std::time::Duration;

use mlua::{AnyUserData, Lua, Table, UserData, UserDataFields, UserDataMethods, Value, Variadic};

use super::handles::q;
use super::handles::{LNetns, LProcess, new_link, new_netns, ns_desc as desc};
use super::options::{self, Arg, Opts, options};
use super::util::{fail, no_more, with};
use crate::error::Error;
use crate::model::{NsRef, parse_ip};
use crate::trace::{Proto, Source, Trace};

options! {
    /// `Netns:exec`'s options.
    struct ExecOpts { check: bool, timeout: f64 }
}

options! {
    /// `Netns:ping`'s options.
    struct PingOpts { count: u32, timeout: f64 }
}

options! {
    /// `Netns:trace`'s options.
    struct TraceOpts { tcp: u16, udp: u16, icmp: bool, src: String, timeout: f64 }
}

options! {
    /// `Netns:tcp`'s options.
    struct TcpOpts { timeout: f64 }
}

/// A command argument: an argv table, or a string for /bin/sh -c.
pub fn argv(lua: &Lua, call: &str, v: Value) -> mlua::Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec!["/bin/sh".into(), "-c".into(), s.to_str()?.to_string()]),
        Value::Table(t) => {
            let v: Vec<String> = t.sequence_values::<String>().collect::<mlua::Result<_>>()?;
            if v.is_empty() {
                return Err(fail(lua, call, Error::invalid("empty command")));
            }
            Ok(v)
        }
        _ => {
            Err(fail(lua, call, Error::invalid("a command is an argv table like {\"ip\", \"addr\"} or a shell string")))
        }
    }
}

fn secs(lua: &Lua, call: &str, v: Option<f64>, default: f64) -> mlua::Result<Duration> {
    let s = v.unwrap_or(default);
    if !(s > 0.0 && s < 1e6) {
        return Err(fail(lua, call, Error::invalid(format!("timeout must be a positive number of seconds, not {s}"))));
    }
    Ok(Duration::from_secs_f64(s))
}

impl UserData for LNetns {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("name", |_, this| Ok(this.ns.name().map(str::to_string)));
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method("__tostring", |_, this, ()| Ok(desc(&this.ns)));
        m.add_meta_method("__eq", |_, this, other: AnyUserData| {
            Ok(other.borrow::<LNetns>().map(|o| o.ns == this.ns).unwrap_or(false))
        });

        m.add_method("del", |lua, this, rest: Variadic<Value>| {
            no_more(lua, || format!("{}:del()", desc(&this.ns)), &rest)?;
            let NsRef::Named(n) = &this.ns else {
                return Err(fail(lua, "netns.host():del()", Error::invalid("the host namespace cannot be deleted")));
            };
            let n = n.clone();
            with(lua, || format!("{}:del()", desc(&this.ns)), |s| s.netns_del(&n))
        });

        m.add_method("link", |lua, this, (name, rest): (String, Variadic<Value>)| {
            let call = format!("{}:link({})", desc(&this.ns), q(&name));
            no_more(lua, || call.clone(), &rest)?;
            with(lua, || call.clone(), |s| s.link_exists(&this.ns, &name))?;
            new_link(lua, this.ns.clone(), name)
        });

        m.add_method("links", |lua, this, rest: Variadic<Value>| {
            let call = format!("{}:links()", desc(&this.ns));
            no_more(lua, || call.clone(), &rest)?;
            let ls = with(lua, || call, |s| s.links(&this.ns))?;
            let t = lua.create_table()?;
            for l in ls {
                t.push(new_link(lua, this.ns.clone(), l.name)?)?;
            }
            Ok(t)
        });

        m.add_method("exec", |lua, this, (cmd, opts): (Value, Opts)| {
            let call = format!("{}:exec(...)", desc(&this.ns));
            let o: ExecOpts = options::read(lua, &call, opts)?;
            let argv = argv(lua, &call, cmd)?;
            let call = format!("{}:exec({})", desc(&this.ns), q(&crate::model::join_words(&argv)));
            let check = o.check.unwrap_or(false);
            let timeout = match o.timeout {
                Some(t) => Some(secs(lua, &call, Some(t), 0.0)?),
                None => None,
            };
            let r = with(lua, || call.clone(), |s| s.exec(&this.ns, &argv, timeout))?;
            if check && r.code != 0 {
                let why = if r.timed_out { "timed out".to_string() } else { format!("exited with code {}", r.code) };
                let err = r.stderr.trim();
                let detail = if err.is_empty() { String::new() } else { format!(": {err}") };
                return Err(fail(lua, &call, Error::sys(format!("{why}{detail}"), None)));
            }
            let t = lua.create_table()?;
            t.set("code", r.code)?;
            t.set("stdout", r.stdout)?;
            t.set("stderr", r.stderr)?;
            t.set("timed_out", r.timed_out)?;
            Ok(t)
        });

        m.add_method("spawn", |lua, this, (cmd, rest): (Value, Variadic<Value>)| {
            let call = format!("{}:spawn(...)", desc(&this.ns));
            no_more(lua, || call.clone(), &rest)?;
            let argv = argv(lua, &call, cmd)?;
            let call = format!("{}:spawn({})", desc(&this.ns), q(&crate::model::join_words(&argv)));
            let pid = with(lua, || call.clone(), |s| s.spawn(&this.ns, &argv))?;
            lua.create_userdata(LProcess { pid, cmd: crate::model::join_words(&argv) })
        });

        m.add_method("ping", |lua, this, (addr, opts): (String, Opts)| {
            let call = format!("{}:ping({})", desc(&this.ns), q(&addr));
            let o: PingOpts = options::read(lua, &call, opts)?;
            let count = o.count.unwrap_or(1);
            if count == 0 {
                return Err(fail(lua, &call, Error::invalid("count must be at least 1")));
            }
            let timeout = secs(lua, &call, o.timeout, 1.0)?;
            with(
                lua,
                || call.clone(),
                |s| {
                    let ip = parse_ip(&addr)?;
                    s.ping(&this.ns, ip, count, timeout)
                },
            )
        });

        m.add_method("trace", |lua, this, (addr, opts): (String, Opts)| {
            let call = format!("{}:trace({})", desc(&this.ns), q(&addr));
            let o: TraceOpts = options::read(lua, &call, opts)?;
            let (tcp, udp, icmp) = (o.tcp, o.udp, o.icmp.unwrap_or(false));
            let proto = match (tcp, udp, icmp) {
                (Some(p), None, false) => Proto::Tcp(p),
                (None, Some(p), false) => Proto::Udp(p),
                (None, None, _) => Proto::Icmp,
                _ => return Err(fail(lua, &call, Error::invalid("give one of tcp = PORT, udp = PORT or icmp = true"))),
            };
            if proto.port() == Some(0) {
                return Err(fail(lua, &call, Error::invalid("port 0 cannot be probed")));
            }
            let src = o.src;
            let timeout = secs(lua, &call, o.timeout, 1.0)?;
            let t = with(
                lua,
                || call.clone(),
                |s| {
                    let ip = parse_ip(&addr)?;
                    let src = src.as_deref().map(parse_ip).transpose()?;
                    s.trace(&this.ns, ip, proto, src, timeout)
                },
            )?;
            trace_table(lua, &t)
        });

        m.add_method("tcp", |lua, this, (addr, Arg(port), opts): (String, Arg<u16>, Opts)| {
            let call = format!("{}:tcp({}, {port})", desc(&this.ns), q(&addr));
            let o: TcpOpts = options::read(lua, &call, opts)?;
            let timeout = secs(lua, &call, o.timeout, 1.0)?;
            with(
                lua,
                || call.clone(),
                |s| {
                    let ip = parse_ip(&addr)?;
                    s.tcp(&this.ns, ip, port, timeout)
                },
            )
        });
    }
}

impl UserData for LProcess {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("pid", |_, this| Ok(this.pid));
    }
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method("__tostring", |_, this, ()| Ok(format!("Process(pid {}: {})", this.pid, this.cmd)));
        m.add_method("kill", |lua, this, rest: Variadic<Value>| {
            let call = format!("Process({}):kill()", this.pid);
            no_more(lua, || call.clone(), &rest)?;
            with(lua, || call.clone(), |s| s.kill(this.pid))
        });
        m.add_method("wait", |lua, this, rest: Variadic<Value>| {
            let call = format!("Process({}):wait()", this.pid);
            no_more(lua, || call.clone(), &rest)?;
            with(lua, || call.clone(), |s| s.wait(this.pid))
        });
    }
}

/// A trace as Lua sees it: `delivered`, `reason`, `source`, `note`, `hops` (a list of
/// tables with the `Hop` fields), and `tostring(t)` the readable walk.
pub fn trace_table(lua: &Lua, t: &Trace) -> mlua::Result<Table> {
    let r = lua.create_table()?;
    r.set("delivered", t.delivered)?;
    r.set("reason", t.reason.clone())?;
    r.set("source", if t.source == Source::Kernel { "kernel" } else { "model" })?;
    r.set("note", t.note.clone())?;
    let hops = lua.create_table()?;
    for h in &t.hops {
        let x = lua.create_table()?;
        x.set("ns", h.ns.clone())?;
        x.set("reply", h.reply)?;
        x.set("iif", h.iif.clone())?;
        x.set("oif", h.oif.clone())?;
        x.set("hook", h.hook.clone())?;
        x.set("table", h.table.clone())?;
        x.set("chain", h.chain.clone())?;
        x.set("rule", h.rule.clone())?;
        x.set("verdict", h.verdict.clone())?;
        x.set("rewrite", h.rewrite.clone())?;
        x.set("packet", h.packet.clone())?;
        x.set("deciding", h.deciding)?;
        hops.push(x)?;
    }
    r.set("hops", hops)?;
    let text = t.to_string();
    let mt = lua.create_table()?;
    mt.set("__tostring", lua.create_function(move |_, _: Value| Ok(text.clone()))?)?;
    r.set_metatable(Some(mt))?;
    Ok(r)
}

pub fn register(lua: &Lua, ns_mod: &Table) -> mlua::Result<()> {
    ns_mod.set(
        "add",
        lua.create_function(|lua, (name, rest): (String, Variadic<Value>)| {
            no_more(lua, || format!("netns.add({})", q(&name)), &rest)?;
            let ns = with(lua, || format!("netns.add({})", q(&name)), |s| s.netns_add(&name))?;
            new_netns(lua, ns)
        })?,
    )?;
    ns_mod.set(
        "get",
        lua.create_function(|lua, (name, rest): (String, Variadic<Value>)| {
            no_more(lua, || format!("netns.get({})", q(&name)), &rest)?;
            let ns = with(lua, || format!("netns.get({})", q(&name)), |s| s.netns_get(&name))?;
            new_netns(lua, ns)
        })?,
    )?;
    ns_mod.set(
        "host",
        lua.create_function(|lua, rest: Variadic<Value>| {
            no_more(lua, || "netns.host()".into(), &rest)?;
            new_netns(lua, NsRef::Host)
        })?,
    )?;
    ns_mod.set(
        "list",
        lua.create_function(|lua, rest: Variadic<Value>| {
            no_more(lua, || "netns.list()".into(), &rest)?;
            let v = with(lua, || "netns.list()".into(), |s| Ok(s.netns_list()))?;
            lua.create_sequence_from(v)
        })?,
    )?;
    Ok(())
}
