//! `netscript stubs [-o FILE]`: writes the LuaLS annotation file for the Lua API
//! (`---@meta`, the handle classes, `---@param` / `---@return` for every function),
//! made from the API table in src/lua/api.rs, so editors complete and check scripts.

use std::path::Path;

use crate::error::{Error, Result};
use crate::lua::api;

/// Writes the stubs to `out` (`-` for stdout); says where on stderr.
pub fn stubs(out: &Path) -> Result<u8> {
    let text = api::stubs();
    if out == Path::new("-") {
        print!("{text}");
        return Ok(0);
    }
    std::fs::write(out, text).map_err(|e| Error::sys(format!("cannot write {}: {e}", out.display()), None))?;
    eprintln!(
        "netscript: wrote {} (LuaLS annotations; put it in your workspace or in workspace.library)",
        out.display()
    );
    Ok(0)
}
