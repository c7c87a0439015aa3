//! Shared pieces of the binding layer: the session handle, namespace arguments,
//! errors that name the call and the line, and Lua's own syntax (a string literal, a
//! name) for what netscript writes as Lua (option tables: options.rs; the quoting of
//! arguments in call descriptions: handles.rs).

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{Lua, Value};

use crate::error::Error;
use crate::model::NsRef;
use crate::session::Session;

pub type SessionRef = Rc<RefCell<Session>>;

/// The positions on the Lua stack, innermost first: (chunk is a file, "short_src:line");
/// the walk stops after the first file when `to_first_file`.
fn frames(lua: &Lua, to_first_file: bool) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for level in 1..64 {
        let Some(frame) = lua.inspect_stack(level, |d| {
            let s = d.source();
            let file = s.source.as_deref().is_some_and(|x| x.starts_with('@'));
            (file, s.short_src.map(|x| x.into_owned()).zip(d.current_line()))
        }) else {
            break;
        };
        if let (file, Some((short, line))) = frame {
            out.push((file, format!("{short}:{line}")));
            if file && to_first_file {
                break;
            }
        }
    }
    out
}

/// The script position to blame: the innermost caller that is a file (not netscript's
/// embedded standard library), so errors inside `docker.lua` point at the user's line.
fn position(frames: &[(bool, String)]) -> Option<&str> {
    frames.iter().find(|(file, _)| *file).or(frames.first()).map(|(_, at)| at.as_str())
}

/// The script line a call comes from ("file:line"), as errors name it.
pub fn here(lua: &Lua) -> Option<String> {
    position(&frames(lua, true)).map(str::to_string)
}

/// `position` as a message prefix: "file:line: " (empty when there is none).
pub fn location(lua: &Lua) -> String {
    position(&frames(lua, true)).map(|at| format!("{at}: ")).unwrap_or_default()
}

/// Where a call comes from, for `plan`'s comments: `position`, and when that is
/// inside a module of the user's (another file, `require`d by the script), the
/// script's own line first: "topo.lua:4 > ./lan.lua:19".
pub fn origin(lua: &Lua) -> String {
    let frames = frames(lua, false);
    let here = position(&frames).unwrap_or_default();
    let outer = frames.iter().rev().find(|(file, _)| *file).map(|(_, at)| at.as_str());
    let file = |s: &str| s.rsplit_once(':').map(|(f, _)| f.to_string());
    match outer {
        Some(o) if file(o) != file(here) => format!("{o} > {here}"),
        _ => here.to_string(),
    }
}

/// Runs `f` on the session; an error becomes a Lua error reading
/// `file:line: call: reason`.
pub fn with<T>(
    lua: &Lua,
    call: impl FnOnce() -> String,
    f: impl FnOnce(&mut Session) -> crate::error::Result<T>,
) -> mlua::Result<T> {
    let s = lua.app_data_ref::<SessionRef>().expect("session is registered").clone();
    let mut se = s.borrow_mut();
    // The one place that tells the session (and `plan`) which script line a call
    // comes from; worked out only for a back end that shows it.
    se.set_origin(&|| origin(lua));
    // A link change held back for this call is made first unless this call pairs
    // with it (`Session::hold_link_changes`).
    match se.before_call().and_then(|()| f(&mut se)) {
        Ok(v) => {
            // A queued firewall change: where it came from, for its error later.
            if se.needs_origin() {
                se.set_origin_of_queued(format!("{}{}", location(lua), call()));
            }
            Ok(v)
        }
        Err(e) => {
            drop(se);
            Err(fail(lua, &call(), e))
        }
    }
}

pub fn fail(lua: &Lua, call: &str, e: Error) -> mlua::Error {
    match e {
        // A queued change refused later: the error names the call that asked for it.
        Error::Deferred { .. } => mlua::Error::RuntimeError(e.to_string()),
        e => mlua::Error::RuntimeError(format!("{}{call}: {e}", location(lua))),
    }
}

/// Makes the queued firewall changes (the end of a script, a REPL line, a pcall);
/// a refusal is an error that names the script line of the refused change.
pub fn settle(lua: &Lua) -> mlua::Result<()> {
    let s = session(lua);
    let r = s.borrow_mut().settle();
    r.map_err(|e| match e {
        Error::Deferred { .. } => mlua::Error::RuntimeError(e.to_string()),
        e => mlua::Error::RuntimeError(format!("{}{e}", location(lua))),
    })
}

pub fn session(lua: &Lua) -> SessionRef {
    lua.app_data_ref::<SessionRef>().expect("session is registered").clone()
}

/// Refuses arguments past the last one a function takes (a table there would be
/// options it does not have, silently ignored otherwise). `call` makes the call's
/// description, only for the error (most calls have none).
pub fn no_more(lua: &Lua, call: impl FnOnce() -> String, rest: &mlua::Variadic<Value>) -> mlua::Result<()> {
    if rest.is_empty() {
        return Ok(());
    }
    let what = if matches!(rest[0], Value::Table(_)) {
        "a table, but it takes no options"
    } else {
        "more arguments than it takes"
    };
    Err(fail(lua, &call(), Error::invalid(format!("unexpected extra argument: {what}"))))
}

/// Reads a namespace argument: a Netns handle, a name (which must exist), or nil (host).
pub fn ns_value(lua: &Lua, call: &str, v: Value, what: &str) -> mlua::Result<NsRef> {
    match v {
        Value::Nil => Ok(NsRef::Host),
        Value::UserData(ud) => match ud.borrow::<super::handles::LNetns>() {
            Ok(n) => Ok(n.ns.clone()),
            Err(_) => Err(fail(lua, call, Error::invalid(format!("{what} must be a Netns or a namespace name")))),
        },
        Value::String(s) => {
            let name = s.to_str()?.to_string();
            with(lua, || call.to_string(), |se| se.netns_get(&name))
        }
        _ => Err(fail(lua, call, Error::invalid(format!("{what} must be a Netns or a namespace name")))),
    }
}

/// Lua's reserved words.
pub const KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in", "local", "nil",
    "not", "or", "repeat", "return", "then", "true", "until", "while",
];

/// Whether `s` can be written as a Lua name (a variable, a field after `.`).
pub fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        && !KEYWORDS.contains(&s)
}

/// A string as a Lua literal.
pub fn lua_quote(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for ch in String::from_utf8_lossy(b).chars() {
        match ch {
            '"' => s += "\\\"",
            '\\' => s += "\\\\",
            '\n' => s += "\\n",
            '\r' => s += "\\r",
            '\t' => s += "\\t",
            c if (c as u32) < 0x20 || c as u32 == 0x7f => s += &format!("\\{}", c as u32),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}
