//! The binding layer: a thin skin over `Session`. One file per area registers its
//! module; this file builds the Lua state (globals, `require`, `arg`, the embedded
//! standard library, Ctrl-C) and turns Lua errors into text for people.

pub mod fw;
pub mod link;
pub mod netns;
pub mod route;
pub mod sysctl;
pub mod util;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mlua::{HookTriggers, Lua, Table, VmState};

pub use util::SessionRef;

/// Lua modules shipped inside the binary: (module name, source).
pub const STDLIB: &[(&str, &str)] = &[("netscript.docker", include_str!("../../lua/netscript/docker.lua"))];

/// The modules of the API, in the order `.help` lists them.
pub const MODULES: &[&str] = &["netns", "veth", "bridge", "link", "route", "sysctl", "fw"];

/// Builds a Lua state with the whole API bound to `session`.
pub fn new_lua(session: SessionRef, topo: &str, script: Option<&Path>, args: &[String], cancel: Arc<AtomicBool>) -> mlua::Result<Lua> {
    let lua = Lua::new();
    lua.set_app_data(session);
    let g = lua.globals();
    let ns_mod = lua.create_table()?;
    netns::register(&lua, &ns_mod)?;
    let (veth, bridge, link_mod) = (lua.create_table()?, lua.create_table()?, lua.create_table()?);
    link::register(&lua, &veth, &bridge, &link_mod)?;
    let route_mod = lua.create_table()?;
    route::register(&lua, &route_mod)?;
    let sysctl_mod = lua.create_table()?;
    sysctl::register(&lua, &sysctl_mod)?;
    let fw_mod = lua.create_table()?;
    fw::register(&lua, &fw_mod)?;

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
    ns_table.set(
        "sleep",
        lua.create_function(|_, secs: f64| {
            std::thread::sleep(std::time::Duration::from_secs_f64(secs.clamp(0.0, 3600.0)));
            Ok(())
        })?,
    )?;
    g.set("netscript", ns_table.clone())?;

    // require: netscript itself, the embedded standard library, then modules next
    // to the script and on NETSCRIPT_PATH.
    let package: Table = g.get("package")?;
    let loaded: Table = package.get("loaded")?;
    loaded.set("netscript", ns_table)?;
    let preload: Table = package.get("preload")?;
    for (name, src) in STDLIB {
        let chunk = format!("=[{name}]");
        let f = lua.load(*src).set_name(chunk).into_function()?;
        preload.set(*name, f)?;
    }
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
    lua.load("io.output(io.stderr)").exec()
}

/// Runs a script file with `args` as `...`.
pub fn run_file(lua: &Lua, path: &Path, args: &[String]) -> mlua::Result<()> {
    let src = std::fs::read(path).map_err(|e| mlua::Error::RuntimeError(format!("cannot read {}: {e}", path.display())))?;
    let mut src = src.as_slice();
    // A #! line is allowed, as with the standalone interpreter.
    if src.starts_with(b"#") {
        let end = src.iter().position(|&b| b == b'\n').unwrap_or(src.len());
        src = &src[end..];
    }
    let f = lua.load(src).set_name(format!("@{}", path.display())).into_function()?;
    f.call::<()>(mlua::MultiValue::from_iter(args.iter().map(|a| mlua::Value::String(lua.create_string(a).unwrap()))))
}

/// The message of a Lua error, without mlua's wrapping; with the traceback only when
/// the error did not come from netscript itself.
pub fn error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        // Lua appends a traceback to errors raised in Lua code; the first line says it.
        mlua::Error::RuntimeError(s) => s.split("\nstack traceback:").next().unwrap_or(s).to_string(),
        mlua::Error::SyntaxError { message, .. } => format!("syntax error: {message}"),
        mlua::Error::WithContext { cause, .. } => error_text(cause),
        other => other.to_string(),
    }
}
