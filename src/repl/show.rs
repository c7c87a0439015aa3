//! How the REPL prints values: strings as they are, tables and handles readably
//! (a namespace with its links, a process with its state), cycles marked.

use std::collections::HashSet;
use std::ffi::c_void;

use mlua::{Table, Value};

use super::*;
use crate::lua::handles::word;
use crate::model::NsRef;

impl Repl {
    /// A value printed at the prompt: strings as they are (as the Lua REPL does),
    /// everything else as `show` spells it.
    pub(super) fn show_top(&self, v: &Value) -> String {
        match v {
            Value::String(s) => s.to_string_lossy(),
            v => self.show(v, 0, &mut HashSet::new()),
        }
    }

    pub(super) fn tostring(&self, v: &Value) -> String {
        match self.tostring.call::<String>(v.clone()) {
            Ok(s) => s,
            Err(e) => format!("<tostring failed: {}>", lua::error_text(&e)),
        }
    }

    pub(super) fn show(&self, v: &Value, depth: usize, seen: &mut HashSet<*const c_void>) -> String {
        match v {
            Value::String(s) => lua_quote(&s.as_bytes()),
            Value::Table(t) => self.show_table(t, depth, seen),
            Value::UserData(ud) => {
                if let Ok(n) = ud.borrow::<LNetns>() {
                    let ns = n.ns.clone();
                    drop(n);
                    return format!("{} {}", self.tostring(v), self.netns_summary(&ns));
                }
                if let Ok(p) = ud.borrow::<LProcess>() {
                    let pid = p.pid;
                    drop(p);
                    // Where it runs: from the journal entry that started it.
                    let ns = self.session.borrow().journal().entries().iter().rev().find_map(|e| match &e.op {
                        crate::op::Op::Spawn { ns, pid: p, .. } if *p == pid => Some(ns.short().to_string()),
                        _ => None,
                    });
                    let place = ns.map(|n| format!("in {}, ", word(&n))).unwrap_or_default();
                    return format!("{} [{place}{}]", self.tostring(v), process_state(pid));
                }
                // Link (and anything else): its own __tostring.
                self.tostring(v)
            }
            other => self.tostring(other),
        }
    }

    /// `.net`: each namespace of the topology (the host first), its links (state,
    /// kind, master, addresses; the kernel's IPv6 link-local ones left out) and its
    /// routes, as Mininet's `net` / `dump` show a network.
    pub(super) fn net(&self) -> String {
        let mut s = self.session.borrow_mut();
        let mut out = String::new();
        for ns in s.topology_netns() {
            out += &format!("{}\n", word(&crate::trace::ns_label(&ns)));
            let links = match s.links(&ns) {
                Ok(l) => l,
                Err(e) => {
                    out += &format!("  ({e})\n");
                    continue;
                }
            };
            for l in &links {
                let mut words = vec![if l.up { "up".to_string() } else { "down".to_string() }];
                words.extend(l.kind.iter().cloned());
                words.extend(l.master.iter().map(|m| format!("master {}", word(m))));
                let addrs = l
                    .addrs
                    .iter()
                    .filter(|a| !matches!(a.addr(), std::net::IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80));
                words.extend(addrs.map(|a| a.to_string()));
                out += &format!("  {:<15} {}\n", word(&l.name), words.join(" "));
            }
            for r in s.backend().routes(&ns).unwrap_or_default() {
                if r.dest.addr().is_ipv6() && (r.dest.prefix_len() == 8 || r.dest.to_string().starts_with("fe80:")) {
                    continue; // the kernel's own multicast and link-local routes
                }
                out += &format!("  route {r}\n");
            }
        }
        out
    }

    pub(super) fn netns_summary(&self, ns: &NsRef) -> String {
        let links = self.session.borrow_mut().links(ns);
        match links {
            Err(_) => "[gone]".into(),
            Ok(ls) => {
                const MAX: usize = 8;
                let mut parts: Vec<String> = ls
                    .iter()
                    .take(MAX)
                    .map(|l| {
                        let mut p = vec![if l.up { "up".to_string() } else { "down".to_string() }];
                        if let Some(m) = &l.master {
                            p.push(format!("master {}", word(m)));
                        }
                        p.extend(l.addrs.iter().map(|a| a.to_string()));
                        format!("{} ({})", word(&l.name), p.join(", "))
                    })
                    .collect();
                if ls.len() > MAX {
                    parts.push(format!("{} more", ls.len() - MAX));
                }
                format!("[links: {}]", parts.join(", "))
            }
        }
    }

    pub(super) fn show_table(&self, t: &Table, depth: usize, seen: &mut HashSet<*const c_void>) -> String {
        if t.metatable().is_some_and(|m| m.raw_get::<Value>("__tostring").is_ok_and(|v| !v.is_nil())) {
            return self.tostring(&Value::Table(t.clone()));
        }
        let ptr = t.to_pointer();
        if seen.contains(&ptr) {
            return "<cycle>".into();
        }
        if depth >= 5 {
            return "{...}".into();
        }
        seen.insert(ptr);
        let n = t.raw_len();
        let mut items: Vec<String> = Vec::new();
        for i in 1..=n {
            let v: Value = t.raw_get(i).unwrap_or(Value::Nil);
            items.push(self.show(&v, depth + 1, seen));
        }
        // (sort key, key as written, value): keys sort by name, not by `[` quoting.
        let mut rest: Vec<(String, String, String)> = Vec::new();
        for pair in t.pairs::<Value, Value>() {
            let Ok((k, v)) = pair else { break };
            if let Value::Integer(i) = k
                && i >= 1
                && (i as usize) <= n
            {
                continue;
            }
            let (sort, key) = match &k {
                Value::String(s) => {
                    let s = s.to_string_lossy();
                    let key = if is_ident(&s) { s.clone() } else { format!("[{}]", lua_quote(s.as_bytes())) };
                    (s, key)
                }
                other => {
                    let shown = self.show(other, depth + 1, seen);
                    // Numbers and other keys first, after the sequence.
                    (format!("\0{shown}"), format!("[{shown}]"))
                }
            };
            rest.push((sort, key, self.show(&v, depth + 1, seen)));
        }
        seen.remove(&ptr);
        rest.sort();
        const MAX_ITEMS: usize = 200;
        let total = items.len() + rest.len();
        items.extend(rest.into_iter().map(|(_, k, v)| format!("{k} = {v}")));
        if items.len() > MAX_ITEMS {
            items.truncate(MAX_ITEMS);
            items.push(format!("... ({} more)", total - MAX_ITEMS));
        }
        if items.is_empty() {
            return "{}".into();
        }
        let one = format!("{{{}}}", items.join(", "));
        if one.len() <= 72 && !one.contains('\n') {
            return one;
        }
        let mut s = "{\n".to_string();
        for it in items {
            for (j, l) in it.lines().enumerate() {
                s += "  ";
                s += l;
                if j + 1 == it.lines().count() {
                    s += ",";
                }
                s += "\n";
            }
        }
        s + "}"
    }
}

pub(super) fn process_state(pid: u32) -> &'static str {
    match crate::sys::proc::stat(pid) {
        Some(s) if !s.exited() => "running",
        _ => "exited",
    }
}
