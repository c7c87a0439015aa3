//! The binding layer: a thin skin over `Session`. One file per area registers its
//! module; this file builds the Lua state (globals, `require`, `arg`, the embedded
//! standard library, Ctrl-C) and turns Lua errors into text for people.

pub mod api;
pub mod fw;
pub mod handles;
pub mod kinds;
pub mod link;
pub mod netns;
pub mod options;
pub mod restrict;
pub mod route;
pub mod sysctl;
pub mod util;

pub use util::settle;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mlua::{HookTriggers, Lua, Table, VmState};

pub use util::SessionRef;

/// Lua modules shipped inside the binary: (module name, source).
pub const STDLIB: &[(&str, &str)] = &[
    ("netscript.docker", include_str!("../../lua/netscript/docker.lua")),
    ("netscript.partition", include_str!("../../lua/netscript/partition.lua")),
    ("netscript.pingall", include_str!("../../lua/netscript/pingall.lua")),
];

/// Builds a Lua state with the whole API bound to `session`.
pub fn new_lua(
    session: SessionRef,
    topo: &str,
    script: Option<&Path>,
    args: &[String],
    cancel: Arc<AtomicBool>,
) -> mlua::Result<Lua> {
    let lua = Lua::new();
    // Every call from here releases a held link change first (util::with).
    session.borrow_mut().hold_link_changes(true);
    lua.set_app_data(session);
    let g = lua.globals();
    let ns_table = register_api(&lua, topo, cancel.clone())?;

    // require: netscript itself, the embedded standard library, then modules next
    // to the script and on NETSCRIPT_PATH.
    let package: Table = g.get("package")?;
    let loaded: Table = package.get("loaded")?;
    loaded.set("netscript", ns_table)?;
    // The modules in package.loaded too: Lua's tracebacks then name functions
    // `veth.add` (not `add`), which argument errors repeat.
    for sc in api::SCOPES.iter().filter(|s| s.kind == api::ScopeKind::Global && s.name != "netscript") {
        loaded.set(sc.name, g.get::<Table>(sc.name)?)?;
    }
    let preload: Table = package.get("preload")?;
    for (name, src) in STDLIB {
        let chunk = format!("=[{name}]");
        let f = lua.load(*src).set_name(chunk).into_function()?;
        preload.set(*name, f)?;
    }
    // netscript.partition and netscript.pingall come from the standard library (loaded on first use; a
    // tail call, so its errors point at the script's line).
    let partition = lua
        .load("local r = require; return function(...) return r('netscript.partition').partition(...) end")
        .set_name(WRAPPER_CHUNK)
        .eval::<mlua::Function>()?;
    g.get::<Table>("netscript")?.set("partition", partition)?;
    let pingall = lua
        .load("local r = require; return function(...) return r('netscript.pingall').pingall(...) end")
        .set_name(WRAPPER_CHUNK)
        .eval::<mlua::Function>()?;
    g.get::<Table>("netscript")?.set("pingall", pingall)?;
    let mut path = String::new();
    if let Some(dir) = script.and_then(|s| s.parent()) {
        let d = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        path += &format!("{0}/?.lua;{0}/?/init.lua;", d.display());
    }
    if let Ok(extra) = std::env::var("NETSCRIPT_PATH") {
        for p in extra.split(':').filter(|p| !p.is_empty()) {
            path += &format!("{p}/?.lua;{p}/?/init.lua;");
        }
    }
    let old: String = package.get("path")?;
    package.set("path", format!("{path}{old}"))?;

    // arg, as the standalone interpreter sets it.
    let arg = lua.create_table()?;
    arg.set(-1, "netscript")?;
    if let Some(s) = script {
        arg.set(0, s.display().to_string())?;
    }
    for (i, a) in args.iter().enumerate() {
        arg.set(i as i64 + 1, a.as_str())?;
    }
    g.set("arg", arg)?;

    // pcall / xpcall hand errors to the script as strings (netscript's errors travel
    // as mlua error values inside Rust), and os.exit ends the run the normal way.
    // errtext(e) -> the message as a string (other values unchanged), and whether
    // the error is an os.exit or comes after an interruption, which pcall must not
    // swallow.
    // After Ctrl-C / SIGTERM, whatever error a pcall catches (the interruption
    // itself, or what it cut short) ends the script too, as os.exit does: a script
    // cannot go on after it.
    let interrupted = cancel.clone();
    let errtext = lua.create_function(move |lua, v: mlua::Value| {
        let stop = interrupted.load(Ordering::SeqCst);
        Ok(match v {
            mlua::Value::Error(e) => {
                (mlua::Value::String(lua.create_string(error_text(&e))?), stop || exit_code(&e).is_some())
            }
            // `error(msg, 2)` in a function handed straight to pcall / xpcall blames
            // its caller, which is the wrapper below: the script's line instead.
            mlua::Value::String(s) => match blames_wrapper(&s.to_string_lossy()) {
                Some(rest) => (mlua::Value::String(lua.create_string(format!("{}{rest}", util::location(lua)))?), stop),
                None => (mlua::Value::String(s), stop),
            },
            other => (other, stop),
        })
    });
    let exit = lua.create_function(|_, code: mlua::Value| -> mlua::Result<()> {
        let c = match code {
            mlua::Value::Nil | mlua::Value::Boolean(true) => 0,
            mlua::Value::Boolean(false) => 1,
            mlua::Value::Integer(i) => i as i32,
            mlua::Value::Number(n) => n as i32,
            _ => 1,
        };
        Err(mlua::Error::RuntimeError(format!("{EXIT_MARK}{c}")))
    })?;
    let outside = lua.create_function(|lua, keeps_running: bool| {
        util::settle(lua)?;
        let s = util::session(lua);
        let mut s = s.borrow_mut();
        if keeps_running {
            s.distrust_known()
        } else {
            s.forget_known()
        }
        Ok(())
    })?;
    lua.load(
        r#"
local errtext, exit, settle, outside = ...
local raw_pcall, raw_xpcall = pcall, xpcall
-- The protected function's queued firewall changes are made before pcall returns,
-- so a refused rule is pcall's error.
local function pass(...) settle() return ... end
local function settled(f, ...) return pass(f(...)) end
local function fix(ok, ...)
  if ok then return ok, ... end
  local msg, is_exit = errtext((...))
  if is_exit then error((...), 0) end
  return false, msg
end
pcall = function(f, ...) return fix(raw_pcall(settled, f, ...)) end
xpcall = function(f, h, ...)
  local exiting
  local function handler(e)
    local msg, is_exit = errtext(e)
    if is_exit then exiting = e return e end
    return h(msg)
  end
  local function finish(ok, ...)
    if exiting then error(exiting, 0) end
    return ok, ...
  end
  return finish(raw_xpcall(settled, handler, f, ...))
end
os.exit = exit
-- A shell command can see the firewall and change links: the queued firewall
-- changes are made first, and the session reads links from the system again
-- (never again from what it knows after io.popen: that process keeps running).
-- (Each original is called through a local of its own name: an argument error
-- names the function as the script called it.)
do
  local execute, popen = os.execute, io.popen
  os.execute = function(...) outside(false) return execute(...) end
  io.popen = function(...) outside(true) return popen(...) end
end
-- No C code is loaded (mlua's "safe mode"): said in netscript's words, since
-- `--safe` is something else.
package.searchers[3] = function() return "no C modules (netscript loads Lua modules only)" end
package.loadlib = function() error("package.loadlib: netscript loads no C code (Lua modules only)", 2) end
-- Reading standard input waits for a person ("press Enter to go on"), who looks at
-- the topology meanwhile: the queued firewall changes are made first.
do
  local read, lines = io.read, io.lines
  io.read = function(...) settle() return read(...) end
  io.lines = function(file, ...)
    if file == nil then settle() end
    return lines(file, ...)
  end
end
do
  local methods = getmetatable(io.stdin).__index
  local read, lines = methods.read, methods.lines
  methods.read = function(f, ...)
    if rawequal(f, io.stdin) then settle() end
    return read(f, ...)
  end
  methods.lines = function(f, ...)
    if rawequal(f, io.stdin) then settle() end
    return lines(f, ...)
  end
end
"#,
    )
    .set_name(WRAPPER_CHUNK)
    .call::<()>((errtext?, exit, lua.create_function(|lua, ()| util::settle(lua))?, outside))?;

    // Ctrl-C / SIGTERM stop a running script between instructions.
    lua.set_hook(HookTriggers::new().every_nth_instruction(1000), move |_, _| {
        if cancel.load(Ordering::SeqCst) {
            Err(mlua::Error::RuntimeError("interrupted".into()))
        } else {
            Ok(VmState::Continue)
        }
    })?;
    Ok(lua)
}

/// Registers the API (the module globals and the `netscript` table, which it
/// returns) on `lua`. Needs no session until a function is called: the tests use it
/// to compare what is registered with the API table (src/lua/api.rs).
pub fn register_api(lua: &Lua, topo: &str, cancel: Arc<AtomicBool>) -> mlua::Result<Table> {
    let g = lua.globals();
    let ns_mod = lua.create_table()?;
    netns::register(lua, &ns_mod)?;
    let (veth, bridge, link_mod) = (lua.create_table()?, lua.create_table()?, lua.create_table()?);
    link::register(lua, &veth, &bridge, &link_mod)?;
    let route_mod = lua.create_table()?;
    route::register(lua, &route_mod)?;
    let sysctl_mod = lua.create_table()?;
    sysctl::register(lua, &sysctl_mod)?;
    let fw_mod = lua.create_table()?;
    fw::register(lua, &fw_mod)?;

    let ns_table = lua.create_table()?;
    for (name, t) in [
        ("netns", &ns_mod),
        ("veth", &veth),
        ("bridge", &bridge),
        ("link", &link_mod),
        ("route", &route_mod),
        ("sysctl", &sysctl_mod),
        ("fw", &fw_mod),
    ] {
        g.set(name, t.clone())?;
        ns_table.set(name, t.clone())?;
    }
    ns_table.set("name", topo)?;
    ns_table.set("version", env!("CARGO_PKG_VERSION"))?;
    let c = cancel;
    ns_table.set(
        "sleep",
        lua.create_function(move |lua, secs: f64| {
            if !(secs >= 0.0 && secs.is_finite()) {
                return Err(util::fail(
                    lua,
                    "netscript.sleep",
                    crate::Error::invalid(format!("{secs} is not a number of seconds")),
                ));
            }
            // Whatever the script changed can be looked at from outside meanwhile:
            // the queued firewall changes are made first.
            util::settle(lua)?;
            // In small steps, so Ctrl-C ends it.
            let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
            while std::time::Instant::now() < end {
                if c.load(Ordering::SeqCst) {
                    return Err(mlua::Error::RuntimeError("interrupted".into()));
                }
                std::thread::sleep((end - std::time::Instant::now()).min(std::time::Duration::from_millis(20)));
            }
            Ok(())
        })?,
    )?;
    g.set("netscript", ns_table.clone())?;
    Ok(ns_table)
}

/// Sends what the script prints (`print`, `io.write`) to stderr: in `plan`, stdout
/// carries the plan itself.
pub fn output_to_stderr(lua: &Lua) -> mlua::Result<()> {
    let print = lua.create_function(|lua, args: mlua::MultiValue| {
        let tostring: mlua::Function = lua.globals().get("tostring")?;
        let words = args.into_iter().map(|v| tostring.call::<String>(v)).collect::<mlua::Result<Vec<_>>>()?;
        eprintln!("{}", words.join("\t"));
        Ok(())
    })?;
    lua.globals().set("print", print)?;
    // io.stdout too: a script writing there would write into the plan.
    lua.load("io.output(io.stderr) io.stdout = io.stderr").exec()
}

/// The chunk name of the wrappers `new_lua` puts around pcall, xpcall, os.exit and
/// the functions that reach outside the process.
const WRAPPER_CHUNK: &str = "=[netscript]";

/// The rest of an error message that Lua prefixed with a position in the wrappers
/// ("[netscript]:7: ...", or those of `restrict`), which are not the script's.
fn blames_wrapper(msg: &str) -> Option<&str> {
    [WRAPPER_CHUNK, restrict::CHUNK].iter().find_map(|chunk| {
        let (line, rest) = msg.strip_prefix(&chunk[1..])?.strip_prefix(':')?.split_once(": ")?;
        (!line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())).then_some(rest)
    })
}

/// Runs a script file with `args` as `...`.
pub fn run_file(lua: &Lua, path: &Path, args: &[String]) -> mlua::Result<()> {
    call_chunk(lua, &load_file(lua, path)?, args).map(|_| ())
}

/// Reads and compiles a script without running any of it (an unreadable file or a
/// syntax error is found here, before anything changed).
pub fn load_file(lua: &Lua, path: &Path) -> mlua::Result<mlua::Function> {
    let src =
        std::fs::read(path).map_err(|e| mlua::Error::RuntimeError(format!("cannot read {}: {e}", path.display())))?;
    let mut src = src.as_slice();
    // A #! line is allowed, as with the standalone interpreter.
    if src.starts_with(b"#") {
        let end = src.iter().position(|&b| b == b'\n').unwrap_or(src.len());
        src = &src[end..];
    }
    lua.load(src).set_name(format!("@{}", path.display())).into_function()
}

/// Runs a compiled script with its arguments; at its end (os.exit(0) included), the
/// queued firewall changes are made. True when the script returned a table, as a
/// module does (`require` is how a module is meant to be run).
pub fn call_chunk(lua: &Lua, f: &mlua::Function, args: &[String]) -> mlua::Result<bool> {
    let r = f.call::<mlua::MultiValue>(mlua::MultiValue::from_iter(
        args.iter().map(|a| mlua::Value::String(lua.create_string(a).unwrap())),
    ));
    match r {
        Ok(values) => util::settle(lua).map(|()| values.front().is_some_and(mlua::Value::is_table)),
        Err(e) if exit_code(&e) == Some(0) => util::settle(lua).and(Err(e)),
        Err(e) => Err(e),
    }
}

/// The message of a Lua error, without mlua's wrapping. Errors netscript raises
/// already read `file:line: call: reason`; a wrong argument (type or count) gets the
/// same shape here, with the script position taken from the traceback.
pub fn error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, traceback } => match cause.as_ref() {
            // A module function has no name of its own in mlua's error: take it from
            // the traceback ("[C]: in function 'veth.add'").
            mlua::Error::BadArgument { to: None, pos, name, cause } => {
                let to = traceback_function(traceback);
                let named = mlua::Error::BadArgument { to, pos: *pos, name: name.clone(), cause: cause.clone() };
                format!("{}{}", traceback_location(traceback), error_text(&named))
            }
            mlua::Error::BadArgument { .. } | mlua::Error::FromLuaConversionError { .. } => {
                format!("{}{}", traceback_location(traceback), error_text(cause))
            }
            other => error_text(other),
        },
        // Lua appends a traceback to errors raised in Lua code; the first line says
        // it. A position in the wrappers (an argument error of a function they pass
        // the call to) becomes the script's, from the traceback.
        mlua::Error::RuntimeError(s) => {
            let (msg, tb) = s.split_once("\nstack traceback:").unwrap_or((s, ""));
            match blames_wrapper(msg) {
                Some(rest) => format!("{}{rest}", traceback_location(tb)),
                None => msg.to_string(),
            }
        }
        mlua::Error::SyntaxError { message, .. } => format!("syntax error: {message}"),
        mlua::Error::WithContext { cause, .. } => error_text(cause),
        mlua::Error::BadArgument { to, pos, cause, .. } => {
            let f = to.as_deref().map(friendly_fn).unwrap_or_else(|| "a function".into());
            format!("bad argument #{} to {f}: {}", pos, error_text(cause))
        }
        mlua::Error::FromLuaConversionError { from, to, .. } => format!("expected {}, got {from}", friendly_type(to)),
        other => other.to_string(),
    }
}

/// `LNetns.tcp` -> `Netns:tcp`, `veth.add` stays.
fn friendly_fn(f: &str) -> String {
    for (rust, lua) in [("LNetns.", "Netns:"), ("LLink.", "Link:"), ("LProcess.", "Process:")] {
        if let Some(m) = f.strip_prefix(rust) {
            return format!("{lua}{m}");
        }
    }
    f.to_string()
}

/// The function a traceback's first C frame names.
fn traceback_function(tb: &str) -> Option<String> {
    tb.lines().map(str::trim).find_map(|l| {
        let rest = l.strip_prefix("[C]: in ")?;
        let name = rest
            .strip_prefix("function '")
            .or_else(|| rest.strip_prefix("method '"))
            .or_else(|| rest.strip_prefix("field '"))?;
        Some(name.trim_end_matches('\'').to_string())
    })
}

/// A Rust type as a person reads it, for mlua's conversion errors (they hold the
/// value's type, not the value: an integer argument is read as `options::Arg` instead,
/// which shows a number out of range).
pub(crate) fn friendly_type(t: &str) -> String {
    match t {
        "u16" => "an integer from 0 to 65535".into(),
        "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i32" | "i64" | "Integer" => "an integer".into(),
        "f32" | "f64" | "Number" => "a number".into(),
        "String" | "string" => "a string".into(),
        "bool" | "boolean" => "a boolean".into(),
        "Table" | "table" => "a table".into(),
        "userdata" | "AnyUserData" => "a handle (Netns, Link, Process)".into(),
        other => other.trim_start_matches('L').to_string(),
    }
}

/// "file:line: " of the innermost script frame in a Lua traceback.
fn traceback_location(tb: &str) -> String {
    tb.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("[C]") && !l.starts_with("[netscript"))
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (file, line) = (parts.next()?, parts.next()?);
            line.parse::<u32>().ok().map(|n| format!("{file}:{n}: "))
        })
        .unwrap_or_default()
}

/// How `os.exit` ends a script: it raises this, and the runner turns it into the
/// normal end of the run (success, or failure and rollback), so nothing is left.
pub const EXIT_MARK: &str = "netscript: os.exit with code ";

/// The exit code of an `os.exit()` call, if that is what ended the script.
pub fn exit_code(e: &mlua::Error) -> Option<i32> {
    match e {
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => exit_code(cause),
        mlua::Error::RuntimeError(s) => s.strip_prefix(EXIT_MARK).and_then(|c| c.parse().ok()),
        _ => None,
    }
}

/// How a script run ended, for people: None when it ended normally (`os.exit(0)`
/// included), otherwise why it failed.
pub fn failure<T>(result: &mlua::Result<T>, interrupted: bool) -> Option<String> {
    let e = result.as_ref().err()?;
    match exit_code(e) {
        Some(0) => None,
        Some(c) => Some(format!("the script called os.exit({c})")),
        None if interrupted => Some("interrupted".to_string()),
        None => Some(error_text(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_position_in_the_wrappers_is_taken_off() {
        assert_eq!(blames_wrapper("[netscript]:7: docker.network: give a table"), Some("docker.network: give a table"));
        assert_eq!(blames_wrapper("[netscript]:x: not a line"), None);
        assert_eq!(blames_wrapper("[netscript restrict]:3: bad argument"), Some("bad argument"));
        assert_eq!(blames_wrapper("[netscript.docker]:3: inside"), None);
        assert_eq!(blames_wrapper("[netscript]:: empty"), None);
        assert_eq!(blames_wrapper("topo.lua:3: [netscript]:7: x"), None);
        assert_eq!(blames_wrapper("plain"), None);
    }

    #[test]
    #[allow(clippy::arc_with_non_send_sync)]
    fn friendly_errors() {
        assert_eq!(friendly_fn("LNetns.tcp"), "Netns:tcp");
        assert_eq!(
            traceback_location("stack traceback:\n\t[C]: in ?\n\t/tmp/x.lua:7: in main chunk"),
            "/tmp/x.lua:7: "
        );
        let e = mlua::Error::BadArgument {
            to: Some("LNetns.tcp".into()),
            pos: 3,
            name: None,
            cause: std::sync::Arc::new(mlua::Error::FromLuaConversionError {
                from: "string",
                to: "u16".into(),
                message: None,
            }),
        };
        assert_eq!(error_text(&e), "bad argument #3 to Netns:tcp: expected an integer from 0 to 65535, got string");
    }

    /// An integer argument read as `options::Arg` shows a number that is out of range
    /// or not whole (mlua's own conversion error holds only its type: "got integer").
    #[test]
    fn integer_arguments_show_the_number() {
        let lua = Lua::new();
        let f = lua.create_function(|_, (_, options::Arg(p)): (String, options::Arg<u16>)| Ok(p)).unwrap();
        lua.globals().set("tcp", f).unwrap();
        let err = |src: &str| error_text(&lua.load(src).set_name("@x.lua").exec().unwrap_err());
        assert_eq!(lua.load("return tcp('a', '80')").eval::<u16>().unwrap(), 80);
        for (arg, got) in [
            ("70000", "70000"),
            ("-1", "-1"),
            ("1.5", "1.5"),
            ("'99999'", "\"99999\""),
            ("'http'", "string"),
            ("nil", "nil"),
        ] {
            assert_eq!(
                err(&format!("tcp('a', {arg})")),
                format!("x.lua:1: bad argument #2 to tcp: expected an integer from 0 to 65535, got {got}"),
                "{arg}"
            );
        }
    }
}
