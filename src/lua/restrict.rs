//! The restricted environment of `netscript plan` and `--safe`: a script may use
//! netscript's API and pure Lua, nothing else. It runs no program, writes, removes
//! or renames no file, loads no C code and no binary chunk, and cannot reach the
//! `debug` library; it may still read files (`io.open(path)`, `io.lines`) and
//! `require` Lua modules. The one rule: a refused call is an error naming the
//! function, the script line and why, e.g. `plan runs nothing outside netscript:
//! os.execute at topo.lua:3 (it runs a shell command)`; `pcall` catches it like any
//! error.

use mlua::{Lua, Table};

use super::util;

/// Functions replaced by one that refuses: (name, why).
pub const REFUSED: &[(&str, &str)] = &[
    ("os.execute", "it runs a shell command"),
    ("io.popen", "it runs a shell command"),
    ("os.remove", "it deletes a file"),
    ("os.rename", "it renames a file"),
    ("os.tmpname", "it creates a file"),
    ("io.tmpfile", "it creates a file"),
    ("package.loadlib", "it loads C code"),
];

/// Functions that stay for what changes nothing: (name, what is allowed). Their
/// wrappers are in `LIMITS` below.
pub const LIMITED: &[(&str, &str)] = &[
    ("io.open", "reading only (mode \"r\" or \"rb\")"),
    ("io.output", "a file already open (io.stderr), not a file name"),
    ("load", "text chunks only"),
    ("loadfile", "text chunks only"),
    ("dofile", "text chunks only"),
    ("require", "Lua modules only (package.searchers: preload and package.path)"),
];

/// Libraries removed altogether.
pub const REMOVED: &[&str] = &["debug"];

/// The chunk name of the wrappers below (see `lua::blames_wrapper`).
pub const CHUNK: &str = "=[netscript restrict]";

/// The wrappers of `LIMITED`, in Lua (they keep each function's own arity and
/// errors). `refuse(what, why)` raises the error.
const LIMITS: &str = r#"
local refuse, who = ...
local type, error = type, error
local byte, fmt, find, tostring = string.byte, string.format, string.find, tostring
local package, searchpath = package, package.searchpath
-- Each original is called through a local of its own name (an argument error names
-- the function as the script called it); `_ENV.f =` sets the global.
do
  local open = io.open
  io.open = function(path, mode, ...)
    if mode ~= nil and mode ~= "r" and mode ~= "rb" then
      refuse(fmt("io.open(..., %q)", tostring(mode)), "it opens a file for writing")
    end
    return open(path, mode, ...)
  end
  local output = io.output
  io.output = function(...)
    if type((...)) == "string" then refuse("io.output(file name)", "it opens a file for writing") end
    return output(...)
  end
end
local function text_only(what, mode)
  if mode ~= nil and (type(mode) ~= "string" or not find(mode, "t", 1, true)) then
    refuse(fmt("%s with mode %q", what, tostring(mode)), "binary chunks can break out of Lua")
  end
end
local text_loadfile
do
  local load, loadfile = load, loadfile
  _ENV.load = function(chunk, name, mode, ...)
    text_only("load", mode)
    if type(chunk) == "string" and byte(chunk, 1) == 27 then
      refuse("load of a binary chunk", "binary chunks can break out of Lua")
    end
    return load(chunk, name, "t", ...)
  end
  _ENV.loadfile = function(path, mode, ...)
    text_only("loadfile", mode)
    return loadfile(path, "t", ...)
  end
  text_loadfile = function(path) return loadfile(path, "t") end
end
dofile = function(path)
  local f, err = text_loadfile(path)
  if not f then error(err, 2) end
  return f()
end
local preload = package.searchers[1]
package.searchers = {
  preload,
  function(name)
    local path, err = searchpath(name, package.path)
    if not path then return err end
    local f, lerr = text_loadfile(path)
    if not f then error(fmt("error loading module '%s' from file '%s':\n\t%s", name, path, lerr), 0) end
    return f, path
  end,
  function(name)
    local path = searchpath(name, package.cpath)
    if path then refuse(fmt("require(%q) (the C module %s)", name, path), "it loads C code") end
    return "no C modules (" .. who .. " loads Lua modules only)"
  end,
}
"#;

/// Restricts `lua` as described above; `who` says what restricts it ("plan",
/// "--safe") in the errors.
pub fn restrict(lua: &Lua, who: &str) -> mlua::Result<()> {
    let refusal = |lua: &Lua, who: &str, what: &str, why: &str| {
        let at = util::here(lua).map(|h| format!(" at {h}")).unwrap_or_default();
        mlua::Error::RuntimeError(format!("{who} runs nothing outside netscript: {what}{at} ({why})"))
    };
    let g = lua.globals();
    for (name, why) in REFUSED {
        let (lib, f) = name.split_once('.').expect("lib.function");
        let (who, name, why) = (who.to_string(), name.to_string(), why.to_string());
        let refuse = lua.create_function(move |lua, _: mlua::MultiValue| -> mlua::Result<()> {
            Err(refusal(lua, &who, &name, &why))
        })?;
        g.get::<Table>(lib)?.set(f, refuse)?;
    }
    let w = who.to_string();
    let refuse = lua.create_function(move |lua, (what, why): (String, String)| -> mlua::Result<()> {
        Err(refusal(lua, &w, &what, &why))
    })?;
    lua.load(LIMITS).set_name(CHUNK).call::<()>((refuse, who))?;
    let loaded: Table = g.get::<Table>("package")?.get("loaded")?;
    for lib in REMOVED {
        g.set(*lib, mlua::Value::Nil)?;
        loaded.set(*lib, mlua::Value::Nil)?;
    }
    Ok(())
}
