//! Line editing: completion of dot-commands, file names, Lua globals, table fields
//! and handle methods.

use mlua::{Lua, Table, Value};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::*;
use crate::lua::api;

/// Fields and methods of a handle type (`Netns`, `Link`, `Process`), for completion
/// after `.` and `:`: from the API table (src/lua/api.rs).
pub(super) fn members(class: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    (api::names(class, api::Kind::Field), api::names(class, api::Kind::Method))
}

pub(super) struct ReplHelper {
    pub(super) lua: Lua,
    pub(super) session: SessionRef,
    pub(super) files: FilenameCompleter,
}

impl Helper for ReplHelper {}
impl Hinter for ReplHelper {
    type Hint = String;
}
impl Highlighter for ReplHelper {}
impl Validator for ReplHelper {}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        let lead = before.len() - trimmed.len();
        // Dot-commands, and file names after .save / .load.
        if trimmed.starts_with('.') && trimmed[1..].starts_with(|c: char| c.is_ascii_alphabetic()) || trimmed == "." {
            if let Some((cmd, _)) = trimmed.split_once(char::is_whitespace) {
                if [".save", ".load"].contains(&cmd) {
                    return self.files.complete(line, pos, ctx);
                }
                return Ok((pos, vec![]));
            }
            let v = COMMANDS
                .iter()
                .map(|(c, _)| c.split_whitespace().next().unwrap_or(c))
                .filter(|c| c.starts_with(trimmed))
                .map(|c| Pair { display: c.to_string(), replacement: format!("{c} ") })
                .collect();
            return Ok((lead, v));
        }
        // `!NS`: namespace names.
        if let Some(rest) = trimmed.strip_prefix('!') {
            if rest.contains(char::is_whitespace) || rest.is_empty() && !trimmed.is_empty() && before.ends_with(' ') {
                return Ok((pos, vec![]));
            }
            let mut names = self.session.borrow_mut().netns_list();
            names.push("host".into());
            names.sort();
            let v = names
                .into_iter()
                .filter(|n| n.starts_with(rest))
                .map(|n| Pair { display: n.clone(), replacement: format!("{n} ") })
                .collect();
            return Ok((lead + 1, v));
        }
        Ok(lua_completions(&self.lua, before))
    }
}

/// Completion of the Lua word before the cursor: `pri`, `fw.ap`, `l:ad`, `x.y.z`.
pub fn lua_completions(lua: &Lua, before: &str) -> (usize, Vec<Pair>) {
    let pos = before.len();
    if in_string(before) {
        return (pos, vec![]);
    }
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.' || *c == ':'))
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    let word = &before[start..];
    if word.starts_with(|c: char| c.is_ascii_digit()) {
        return (pos, vec![]);
    }
    let Some(sep) = word.rfind(['.', ':']) else {
        // A global or a keyword.
        let mut names: Vec<(String, Kind)> = Vec::new();
        for pair in lua.globals().pairs::<Value, Value>() {
            if let Ok((Value::String(k), v)) = pair {
                let k = k.to_string_lossy();
                if is_ident(&k) && k.starts_with(word) {
                    names.push((k, kind(&v)));
                }
            }
        }
        names.extend(KEYWORDS.iter().filter(|k| k.starts_with(word)).map(|k| (k.to_string(), Kind::Other)));
        return (start, pairs(names));
    };
    let (base, method) = (&word[..sep], word.as_bytes()[sep] == b':');
    let prefix = &word[sep + 1..];
    if base.contains(':') || base.is_empty() {
        return (pos, vec![]);
    }
    // Walk the path through tables (raw access: completion never runs user code).
    let mut v = Value::Table(lua.globals());
    for seg in base.split('.') {
        v = match &v {
            Value::Table(t) => t.raw_get::<Value>(seg).unwrap_or(Value::Nil),
            Value::UserData(ud) if seg == "ns" && ud.borrow::<LLink>().is_ok() => {
                let ns = ud.borrow::<LLink>().map(|l| l.ns.clone()).unwrap_or_default();
                crate::lua::handles::new_netns(lua, ns).map(Value::UserData).unwrap_or(Value::Nil)
            }
            _ => Value::Nil,
        };
    }
    let mut names: Vec<(String, Kind)> = Vec::new();
    let mut add_static = |class: &str| {
        let (fields, methods) = members(class);
        let list = if method { methods } else { fields };
        for n in list.iter().filter(|n| n.starts_with(prefix)) {
            names.push((n.to_string(), if method { Kind::Function } else { Kind::Other }));
        }
    };
    match &v {
        Value::Table(t) => {
            for pair in t.pairs::<Value, Value>() {
                if let Ok((Value::String(k), val)) = pair {
                    let k = k.to_string_lossy();
                    if is_ident(&k) && k.starts_with(prefix) && (!method || val.is_function()) {
                        names.push((k, kind(&val)));
                    }
                }
            }
        }
        Value::UserData(ud) => {
            if ud.borrow::<LNetns>().is_ok() {
                add_static("Netns");
            } else if ud.borrow::<LLink>().is_ok() {
                add_static("Link");
            } else if ud.borrow::<LProcess>().is_ok() {
                add_static("Process");
            }
        }
        Value::String(_) if method => {
            if let Ok(t) = lua.globals().raw_get::<Table>("string") {
                for (k, val) in t.pairs::<String, Value>().flatten() {
                    if k.starts_with(prefix) {
                        names.push((k, kind(&val)));
                    }
                }
            }
        }
        _ => {}
    }
    (start + sep + 1, pairs(names))
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Function,
    Table,
    Other,
}

pub(super) fn kind(v: &Value) -> Kind {
    match v {
        Value::Function(_) => Kind::Function,
        Value::Table(_) => Kind::Table,
        _ => Kind::Other,
    }
}

/// Candidates, sorted. A single one completes a function with `(` and a table
/// with `.`, so the next Tab goes on.
pub(super) fn pairs(mut names: Vec<(String, Kind)>) -> Vec<Pair> {
    names.sort_by(|a, b| a.0.cmp(&b.0));
    names.dedup_by(|a, b| a.0 == b.0);
    let single = names.len() == 1;
    names
        .into_iter()
        .map(|(n, k)| {
            let suffix = match k {
                Kind::Function if single => "(",
                Kind::Table if single => ".",
                _ => "",
            };
            Pair { display: n.clone(), replacement: format!("{n}{suffix}") }
        })
        .collect()
}

/// Whether the cursor is inside a string literal (a rough check: unbalanced quotes).
pub(super) fn in_string(s: &str) -> bool {
    let mut q: Option<char> = None;
    let mut esc = false;
    for c in s.chars() {
        match q {
            Some(open) => {
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == open {
                    q = None;
                }
            }
            None if c == '"' || c == '\'' => q = Some(c),
            None => {}
        }
    }
    q.is_some()
}
