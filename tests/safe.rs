//! `netscript plan` and `--safe` run a script restricted to netscript's API and pure
//! Lua (src/lua/restrict.rs): every refused function is an error naming it, the
//! script line and why, and what it would have done did not happen; reading files,
//! `require` of a neighbouring Lua module, `load` of text stay.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A fresh directory for one test's scripts and marker files (under the tests'
/// script directory, which earlier test processes' sweep removes).
fn dir(name: &str) -> PathBuf {
    let base = PathBuf::from(script_file(".keep", "")).parent().unwrap().to_path_buf();
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(d: &Path, name: &str, src: &str) -> String {
    let p = d.join(name);
    std::fs::write(&p, src).unwrap();
    p.display().to_string()
}

/// A refused call: (Lua source, the name the error gives, the file it must not create
/// (relative to the test dir), a file it must not remove).
struct Case {
    src: &'static str,
    names: &'static str,
    creates: Option<&'static str>,
    keeps: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        src: r#"os.execute("touch " .. D .. "/m_execute")"#,
        names: "os.execute",
        creates: Some("m_execute"),
        keeps: None,
    },
    Case {
        src: r#"io.popen("touch " .. D .. "/m_popen"):close()"#,
        names: "io.popen",
        creates: Some("m_popen"),
        keeps: None,
    },
    Case {
        src: r#"io.open(D .. "/m_w", "w"):write("x")"#,
        names: "io.open(..., \"w\")",
        creates: Some("m_w"),
        keeps: None,
    },
    Case { src: r#"io.open(D .. "/m_a", "a")"#, names: "io.open(..., \"a\")", creates: Some("m_a"), keeps: None },
    Case {
        src: r#"io.open(D .. "/victim", "r+"):write("x")"#,
        names: "io.open(..., \"r+\")",
        creates: None,
        keeps: Some("victim"),
    },
    Case { src: r#"io.output(D .. "/m_out")"#, names: "io.output(file name)", creates: Some("m_out"), keeps: None },
    Case { src: r#"os.remove(D .. "/victim")"#, names: "os.remove", creates: None, keeps: Some("victim") },
    Case {
        src: r#"os.rename(D .. "/victim", D .. "/m_renamed")"#,
        names: "os.rename",
        creates: Some("m_renamed"),
        keeps: Some("victim"),
    },
    Case { src: r#"os.tmpname()"#, names: "os.tmpname", creates: None, keeps: None },
    Case { src: r#"io.tmpfile()"#, names: "io.tmpfile", creates: None, keeps: None },
    Case { src: r#"package.loadlib("libc.so.6", "system")"#, names: "package.loadlib", creates: None, keeps: None },
    Case { src: r#"load(string.dump(function() end))"#, names: "load of a binary chunk", creates: None, keeps: None },
    Case { src: r#"load("return 1", "x", "b")"#, names: "load with mode \"b\"", creates: None, keeps: None },
    Case { src: r#"loadfile(D .. "/victim", "b")"#, names: "loadfile with mode \"b\"", creates: None, keeps: None },
    Case {
        src: r#"package.cpath = D .. "/?.so"; require("fakec")"#,
        names: "require(\"fakec\") (the C module",
        creates: None,
        keeps: None,
    },
];

/// The script of one case: line 1 sets D, line 2 makes a namespace (a change to roll
/// back), line 3 is the refused call.
fn case_script(d: &Path, c: &Case) -> String {
    format!("local D = {:?}\nnetns.add(\"safe1\")\n{}\nnetns.add(\"never\")\n", d.display().to_string(), c.src)
}

fn check_refused(o: &Output, who: &str, d: &Path, file: &str, c: &Case) {
    let err = stderr(o);
    let want = format!("{who} runs nothing outside netscript: {}", c.names);
    assert_eq!(o.status.code(), Some(1), "{}: {err}", c.src);
    assert!(err.contains(&want), "{}: expected {want:?} in:\n{err}", c.src);
    assert!(err.contains(&format!("at {file}:3 (")), "{}: the error names the line:\n{err}", c.src);
    if let Some(m) = c.creates {
        assert!(!d.join(m).exists(), "{}: {m} was created", c.src);
    }
    if let Some(k) = c.keeps {
        assert_eq!(std::fs::read_to_string(d.join(k)).unwrap(), "return 1\n", "{}: {k} was changed", c.src);
    }
}

fn setup(d: &Path) {
    write(d, "victim", "return 1\n");
    write(d, "fakec.so", "not really a C module\n");
}

#[test]
fn plan_refuses_every_function_outside_netscript_and_nothing_happens() {
    let d = dir("safe-plan");
    setup(&d);
    for (i, c) in CASES.iter().enumerate() {
        let file = write(&d, &format!("case{i}.lua"), &case_script(&d, c));
        let o = Command::new(BIN).args(["plan", &file]).output().unwrap();
        check_refused(&o, "plan", &d, &file, c);
        assert!(stdout(&o).is_empty(), "a failed plan prints no plan: {}", stdout(&o));
    }
    // The debug library is not there, under any name.
    let file = write(
        &d,
        "no_dbg.lua",
        "assert(debug == nil and package.loaded.debug == nil, 'debug reachable')\nassert(not pcall(require, 'debug'), 'require debug')\n",
    );
    let o = Command::new(BIN).args(["plan", &file]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn plan_still_reads_files_requires_lua_modules_and_loads_text() {
    let d = dir("safe-read");
    write(&d, "names.txt", "from_file\nsecond\n");
    write(&d, "helper.lua", "local M = {}\nfunction M.make(n) return netns.add(n) end\nreturn M\n");
    write(&d, "chunk.lua", "return 'dofiled'\n");
    write(&d, "chunk2.lua", "return 'loadfiled'\n");
    let file = write(
        &d,
        "reads.lua",
        r#"local helper = require("helper")
local f = assert(io.open(arg[1] .. "/names.txt"))
helper.make(f:read("l"))
f:close()
for l in io.lines(arg[1] .. "/names.txt") do last = l end
helper.make(last)
helper.make(load("return 'loaded'")())
helper.make(dofile(arg[1] .. "/chunk.lua"))
helper.make(assert(loadfile(arg[1] .. "/chunk2.lua"))())
io.stdout:write("echo not-in-the-plan\n")
"#,
    );
    let o = Command::new(BIN).args(["plan", &file, &d.display().to_string()]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for n in ["from_file", "second", "loaded", "dofiled", "loadfiled"] {
        assert!(out.contains(&format!("ip netns add {n}\n")), "{n}: {out}");
    }
    // What the script writes to io.stdout goes to stderr, never into the plan.
    assert!(!out.contains("not-in-the-plan") && stderr(&o).contains("echo not-in-the-plan"), "{out}");
}

#[test]
fn safe_runs_are_restricted_the_same_way_and_rolled_back() {
    let d = dir("safe-run");
    setup(&d);
    let sb = Sandbox::new();
    let before = sb.snapshot();
    for (i, c) in CASES.iter().enumerate() {
        let file = write(&d, &format!("case{i}.lua"), &case_script(&d, c));
        let o = sb.netscript(&["--safe", &file]);
        check_refused(&o, "--safe", &d, &file, c);
        assert_same(&before, &sb.snapshot(), c.src);
    }
    // Without --safe the same script does run the command: the restriction is what
    // stops it above.
    let c = &CASES[0];
    let file = write(&d, "unsafe.lua", &case_script(&d, c));
    let o = sb.netscript(&["--ephemeral", &file]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("m_execute").exists(), "without --safe, os.execute runs");
    // Reading and require stay under --safe.
    write(&d, "helper.lua", "return { make = function(n) return netns.add(n) end }\n");
    write(&d, "names.txt", "read_ns\n");
    let file = write(
        &d,
        "ok.lua",
        &format!("require('helper').make(io.lines({:?})())\n", d.join("names.txt").display().to_string()),
    );
    let o = sb.netscript(&["--safe", "--ephemeral", "-v", &file]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("+ ip netns add read_ns"), "{}", stderr(&o));
    assert_same(&before, &sb.snapshot(), "after the --safe run");
}

#[test]
fn safe_repl_refuses_too() {
    let d = dir("safe-repl");
    let input = format!("os.execute('touch {0}/m_repl')\nprint(pcall(io.open, '{0}/m_repl2', 'w'))\n", d.display());
    let o = fed(spawn_piped(&["repl", "--sandbox", "--safe"], &[("HOME", &d)]), input.as_bytes());
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("--safe runs nothing outside netscript: os.execute"), "{all}");
    assert!(all.contains("--safe runs nothing outside netscript: io.open(..., \"w\")"), "{all}");
    assert!(!d.join("m_repl").exists() && !d.join("m_repl2").exists());
}
