//! The API table (src/lua/api.rs) against what is registered, what docs/api.md
//! documents, and what `netscript stubs` writes. Needs no root: the Lua state runs
//! over the plan model (no kernel).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use mlua::{Lua, Table, Value};
use netscript::journal::{Journal, Meta};
use netscript::lua::api::{self, API, Kind, SCOPES, ScopeKind};
use netscript::lua::handles::{LLink, LNetns, LProcess};
use netscript::plan::Plan;
use netscript::session::{Session, mark_for};

const BIN: &str = env!("CARGO_BIN_EXE_netscript");

/// A Lua state with the whole API, over the plan model.
fn lua() -> Lua {
    let cancel = Arc::new(AtomicBool::new(false));
    let journal = Journal::in_memory(Meta { name: "t".into(), script: "t.lua".into(), ..Meta::default() });
    let session = Session::new(Box::new(Plan::new(&mark_for("t"))), journal, "t", cancel.clone());
    netscript::lua::new_lua(Rc::new(RefCell::new(session)), "t", None, &[], cancel).unwrap()
}

fn table_names(scope: &str, kinds: &[Kind]) -> BTreeSet<String> {
    api::entries(scope).filter(|e| kinds.contains(&e.kind)).map(|e| e.name.to_string()).collect()
}

#[test]
fn every_registered_global_function_is_in_the_table_and_back() {
    let lua = lua();
    let globals: Vec<_> = SCOPES.iter().filter(|s| s.kind == ScopeKind::Global).collect();
    let modules: BTreeSet<_> = globals.iter().map(|s| s.name.to_string()).collect();
    for sc in &globals {
        let t: Table = lua.globals().get(sc.name).unwrap_or_else(|e| panic!("global {}: {e}", sc.name));
        let mut registered = BTreeSet::new();
        for pair in t.pairs::<String, Value>() {
            let (k, v) = pair.unwrap();
            // netscript.netns etc. are the modules themselves.
            if sc.name == "netscript" && modules.contains(&k) {
                assert!(v.is_table(), "netscript.{k} is not the module");
                continue;
            }
            registered.insert(k);
        }
        assert_eq!(
            registered,
            table_names(sc.name, &[Kind::Function, Kind::Field]),
            "{}: registered (left) and the API table (right) differ",
            sc.name
        );
        for e in api::entries(sc.name) {
            let v: Value = t.get(e.name).unwrap();
            assert_eq!(v.is_function(), e.kind == Kind::Function, "{}: function or field?", e.path());
        }
    }
}

#[test]
fn every_registered_handle_member_is_in_the_table_and_back() {
    for (class, (fields, methods)) in [
        ("Netns", api::registered::<LNetns>()),
        ("Link", api::registered::<LLink>()),
        ("Process", api::registered::<LProcess>()),
    ] {
        let fields: BTreeSet<_> = fields.into_iter().collect();
        let methods: BTreeSet<_> = methods.into_iter().collect();
        assert_eq!(fields, table_names(class, &[Kind::Field]), "{class} fields: registered (left) vs table");
        assert_eq!(methods, table_names(class, &[Kind::Method]), "{class} methods: registered (left) vs table");
    }
    // The handle scopes of the table are exactly these three, the partition and the
    // docker network.
    let classes: Vec<_> = SCOPES.iter().filter(|s| matches!(s.kind, ScopeKind::Class(_))).map(|s| s.name).collect();
    assert_eq!(classes, ["Netns", "Process", "Link", "Partition", "net"]);
    // A partition's methods are those partition.lua defines.
    let (_, src) = netscript::lua::STDLIB.iter().find(|(n, _)| *n == "netscript.partition").unwrap();
    let defined: BTreeSet<String> = src
        .lines()
        .filter_map(|l| l.strip_prefix("function Partition:"))
        .map(|rest| rest.split('(').next().unwrap().to_string())
        .collect();
    assert_eq!(defined, table_names("Partition", &[Kind::Method]));
}

#[test]
fn the_docker_module_functions_are_in_the_table_and_back() {
    let (_, src) = netscript::lua::STDLIB.iter().find(|(n, _)| *n == "netscript.docker").unwrap();
    let defined = |prefix: &str| -> BTreeSet<String> {
        src.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.split('(').next().unwrap().to_string())
            .filter(|n| !n.starts_with('_'))
            .collect()
    };
    assert_eq!(defined("function M."), table_names("docker", &[Kind::Function]));
    assert_eq!(defined("function Network:"), table_names("net", &[Kind::Method]));
    // The fields of a network, read from a real one (over the plan model; dual stack,
    // which sets them all).
    let lua = lua();
    let net: Table = lua
        .load(r#"return require("netscript.docker").network{ name = "br0", subnet = "10.0.0.0/24", subnet6 = "fd00::/64", ns = netns.add("n") }"#)
        .eval()
        .unwrap();
    for f in table_names("net", &[Kind::Field]) {
        assert!(!net.get::<Value>(f.as_str()).unwrap().is_nil(), "net.{f} is in the table but not set");
    }
}

/// Calls each function that takes an options table with an unknown key: the
/// binding's "known options" must be the table's keys.
#[test]
fn the_options_the_bindings_accept_are_the_tables() {
    let lua = lua();
    lua.load(
        r#"
        N = netns.add("n")
        L = bridge.add("b0")
        NET = require("netscript.docker").network{ name = "br1", subnet = "10.1.0.0/24" }
        docker = require("netscript.docker")
        net = NET
        Netns, Link = N, L
        "#,
    )
    .exec()
    .unwrap();
    let mut checked = 0;
    for e in API {
        let Some(p) = e.params.iter().find(|p| p.name == "opts") else { continue };
        let keys = api::table_keys(p.ty).unwrap();
        let args: Vec<String> = e
            .params
            .iter()
            .map(|p| match p.name {
                "opts" if p.optional => "{ bogus = 1 }".to_string(),
                "opts" if e.scope == "docker" => {
                    "{ name = 'x', subnet = '10.2.0.0/24', bogus = 1 }".to_string() // docker.network
                }
                "opts" => "{ bogus = 1 }".to_string(),
                _ if p.ty.contains("integer") => "1".into(),
                _ if p.ty.contains("Netns") => "N".into(),
                _ => "'x'".into(),
            })
            .collect();
        let call = format!("{}({})", e.path(), args.join(", "));
        let err = lua.load(call.as_str()).exec().expect_err(&call).to_string();
        let known =
            err.split("known options: ").nth(1).unwrap_or_else(|| panic!("{call}: {err}")).split(')').next().unwrap();
        let mut got: Vec<_> = known.split(", ").collect();
        let mut want = keys.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{call}: the binding's options (left) and the table's differ");
        assert!(err.contains("unknown option \"bogus\""), "{call}: {err}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} functions with options");
}

#[test]
fn docs_api_md_names_every_function_in_the_table() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let headings: Vec<_> = doc.lines().filter(|l| l.starts_with("### ")).collect();
    for e in API {
        let path = e.path();
        let named = match e.kind {
            // A function has a heading of its own (or shares one: `Link:up(), Link:down()`).
            Kind::Function | Kind::Method => {
                headings.iter().any(|h| h.contains(&format!("{path}(")) || h.contains(&format!("{path}{{")))
            }
            Kind::Field => doc.contains(&format!("`{path}`")) || headings.iter().any(|h| h.contains(&path)),
        };
        assert!(named, "docs/api.md does not document {path}");
    }
    assert!(doc.contains("netscript stubs"), "docs/api.md does not mention netscript stubs");
}

#[test]
fn netscript_stubs_writes_lua_that_annotates_every_function() {
    let dir = std::env::temp_dir().join(format!("netscript-stubs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let o = std::process::Command::new(BIN).arg("stubs").current_dir(&dir).output().unwrap();
    assert!(o.status.success(), "netscript stubs: {}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(dir.join("netscript.lua")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let o = std::process::Command::new(BIN).args(["stubs", "-o", "-"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), text, "-o - prints the same file");

    // It is Lua: it loads and runs in a plain state.
    let lua = Lua::new();
    lua.load(text.as_str()).set_name("=netscript.lua").exec().unwrap();
    assert!(text.starts_with("---@meta\n"));
    for class in ["Netns", "Link", "Process", "DockerNetwork", "netscript.docker"] {
        assert!(text.contains(&format!("\n---@class {class}\n")), "no class {class}");
    }
    for e in API {
        let var = match api::scope(e.scope).unwrap().kind {
            ScopeKind::Class(c) => c,
            _ => e.scope,
        };
        match e.kind {
            Kind::Field => assert!(
                text.contains(&format!("---@field {} {}", e.name, e.returns))
                    || text.contains(&format!("---@type {}\n{var}.{} = nil", e.returns, e.name)),
                "stubs lack the field {}",
                e.path()
            ),
            Kind::Function | Kind::Method => {
                let sep = if e.kind == Kind::Method { ':' } else { '.' };
                let params: Vec<_> = e.params.iter().map(|p| p.name).collect();
                let def = format!("function {var}{sep}{}({}) end", e.name, params.join(", "));
                let at = text.find(&def).unwrap_or_else(|| panic!("stubs lack {def}"));
                // Its annotations are the lines just above it.
                let block = &text[..at].rsplit("\n\n").next().unwrap();
                for p in e.params {
                    let q = if p.optional { "?" } else { "" };
                    assert!(block.contains(&format!("---@param {}{q} {}", p.name, p.ty)), "{def}: @param {}", p.name);
                }
                assert_eq!(block.contains("---@return"), !e.returns.is_empty(), "{def}: @return");
                assert!(block.contains(e.doc), "{def}: doc");
            }
        }
        // Functions defined in a global module are callable stubs there.
        if e.kind == Kind::Function && api::scope(e.scope).unwrap().kind == ScopeKind::Global {
            let v: Value = lua.load(format!("return {}", e.path())).eval().unwrap();
            assert!(v.is_function(), "{} is not a function in the stubs", e.path());
        }
    }
}

#[test]
fn repl_help_lists_every_function_of_the_table() {
    let help = api::help_text();
    for e in API {
        assert!(help.contains(&e.signature()), ".help lacks {}", e.signature());
        let one = api::help_for(&e.path()).unwrap();
        assert!(one.contains(e.doc) && one.contains(e.example.lines().next().unwrap()), ".help {}: {one}", e.path());
    }
    assert!(api::help_for("fw").unwrap().contains("fw.batch(fn)"));
    assert!(
        api::help_for("addr").unwrap().starts_with("Link:addr(cidr[, {nodad=}]) -> Link"),
        "{:?}",
        api::help_for("addr")
    );
    assert_eq!(api::help_for("nope"), None);
}
