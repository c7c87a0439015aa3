//! The documents against each other and against the binary (no root needed): the
//! English and the Chinese tutorial run the same commands (the same `netscript` command
//! lines, in the same order) and name the same Lua files, every file they name exists,
//! and every `netscript` subcommand the README and the tutorials mention is one that
//! `netscript --help` lists.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_netscript");
const EN: &str = "docs/tutorial.md";
const ZH: &str = "docs/tutorial.zh.md";
const README: &str = "README.md";
/// The files the tutorials have the reader write (everything else they name is in the
/// repository).
const READERS_FILES: &[&str] = &["bridge.lua", "short.lua"];

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The code in a Markdown text.
struct Code {
    /// Lines of fenced blocks, with the block's info string (`sh`, `text`, `lua`, ...),
    /// and of indented blocks (info string ""), in order.
    lines: Vec<(String, String)>,
    /// Inline code spans (`...`), line breaks inside them read as spaces.
    spans: Vec<String>,
}

fn code(md: &str) -> Code {
    let mut lines = Vec::new();
    let mut prose = String::new();
    let mut fence: Option<String> = None;
    for line in md.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(rest.trim().to_string()),
            };
            prose.push('\n');
        } else if let Some(info) = &fence {
            lines.push((info.clone(), line.to_string()));
        } else if let Some(indented) = line.strip_prefix("    ") {
            lines.push((String::new(), indented.to_string()));
            prose.push('\n');
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let spans =
        prose.split('`').skip(1).step_by(2).map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    Code { lines, spans }
}

/// The shell commands a text shows, in order: every line of its `sh` blocks that is not
/// a comment, and the prompted lines (`$ ...`, `# ...`) of its `text` blocks, without
/// the prompt, blanks squeezed.
fn commands(md: &str) -> Vec<String> {
    let mut v = Vec::new();
    for (info, line) in code(md).lines {
        let t = line.trim();
        let cmd = match info.as_str() {
            "sh" if !t.is_empty() && !t.starts_with('#') => t,
            "text" => match t.strip_prefix("$ ").or_else(|| t.strip_prefix("# ")) {
                Some(c) => c,
                None => continue,
            },
            _ => continue,
        };
        v.push(cmd.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    v
}

/// The commands that run netscript (`netscript ...`, `sudo netscript ...`).
fn netscript_commands(md: &str) -> Vec<String> {
    commands(md).into_iter().filter(|c| c.starts_with("netscript ") || c.starts_with("sudo netscript ")).collect()
}

/// Every `*.lua` file a text names in its code (blocks and spans), as written.
fn lua_files(md: &str) -> BTreeSet<String> {
    let c = code(md);
    let texts = c.lines.into_iter().map(|(_, l)| l).chain(c.spans);
    let mut set = BTreeSet::new();
    for t in texts {
        for word in t.split(|ch: char| !(ch.is_ascii_alphanumeric() || "_./-~".contains(ch))) {
            let word = word.trim_end_matches('.');
            if word.len() > 4 && word.ends_with(".lua") {
                set.insert(word.to_string());
            }
        }
    }
    set
}

/// The subcommands `netscript --help` lists, and its options that take a value.
fn help() -> (BTreeSet<String>, BTreeSet<String>) {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert!(o.status.success(), "netscript --help fails");
    let text = String::from_utf8(o.stdout).unwrap();
    let mut commands = BTreeSet::new();
    let mut valued = BTreeSet::new();
    let mut in_commands = false;
    for line in text.lines() {
        if line == "Commands:" {
            in_commands = true;
        } else if line.is_empty() || !line.starts_with(' ') {
            in_commands = false;
        } else if in_commands {
            commands.insert(line.split_whitespace().next().unwrap().to_string());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(2) {
            if w[0].starts_with("--") && w[1].starts_with('<') {
                valued.insert(w[0].trim_end_matches(',').to_string());
            }
        }
    }
    assert!(commands.len() >= 3 && valued.contains("--name"), "cannot read netscript --help:\n{text}");
    (commands, valued)
}

/// The subcommand each `netscript ...` in the text's code (not in Lua, whose comments are
/// prose) names: the first argument after the options, unless it is a script (a path, a
/// `.lua` file) or a placeholder (`SCRIPT`, `[OPTIONS]`, `...`). Returns (subcommand, the
/// code it is in).
fn subcommands(md: &str, valued: &BTreeSet<String>) -> Vec<(String, String)> {
    let c = code(md);
    let mut v = Vec::new();
    for text in c.lines.into_iter().filter(|(info, _)| info != "lua").map(|(_, l)| l).chain(c.spans) {
        let words: Vec<&str> = text.split_whitespace().collect();
        for (i, _) in words.iter().enumerate().filter(|(_, w)| **w == "netscript") {
            let mut rest = words[i + 1..].iter();
            while let Some(w) = rest.next() {
                if w.starts_with('-') {
                    if valued.contains(*w) {
                        rest.next();
                    }
                    continue;
                }
                let placeholder = w.starts_with('[')
                    || w.starts_with('.')
                    || w.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_');
                if !placeholder && !w.contains('/') && !w.ends_with(".lua") {
                    v.push((w.trim_end_matches(['.', ',', ';', ')']).to_string(), text.clone()));
                }
                break;
            }
        }
    }
    v
}

#[test]
fn both_tutorials_run_the_same_netscript_commands_in_the_same_order() {
    let (en, zh) = (netscript_commands(&read(EN)), netscript_commands(&read(ZH)));
    assert!(en.len() >= 10, "{EN}: too few netscript commands found: {en:?}");
    assert_eq!(en, zh, "{EN} and {ZH} differ in their netscript command lines");
}

#[test]
fn both_tutorials_show_the_same_shell_commands_in_the_same_order() {
    let (en, zh) = (commands(&read(EN)), commands(&read(ZH)));
    assert!(en.iter().any(|c| c.starts_with("cargo build")), "{EN}: no shell commands found: {en:?}");
    assert_eq!(en, zh, "{EN} and {ZH} differ in their shell commands");
}

#[test]
fn both_tutorials_name_the_same_lua_files_and_they_exist() {
    let (en, zh) = (lua_files(&read(EN)), lua_files(&read(ZH)));
    assert!(en.iter().any(|f| f.starts_with("examples/")), "{EN}: no example files found: {en:?}");
    assert_eq!(en, zh, "{EN} and {ZH} name different Lua files");
    for doc in [EN, ZH, README] {
        for f in lua_files(&read(doc)) {
            if f.starts_with('/') || f.starts_with('~') || READERS_FILES.contains(&f.as_str()) {
                continue; // the reader's own files
            }
            let path =
                if f.contains('/') { Path::new(ROOT).join(&f) } else { Path::new(ROOT).join("examples").join(&f) };
            assert!(path.is_file(), "{doc} names {f}, but {} does not exist", path.display());
        }
    }
}

#[test]
fn every_netscript_subcommand_the_docs_mention_is_in_help() {
    let (known, valued) = help();
    let mut seen = BTreeSet::new();
    for doc in [README, EN, ZH] {
        for (sub, text) in subcommands(&read(doc), &valued) {
            assert!(
                known.contains(&sub),
                "{doc}: `{text}` uses `netscript {sub}`, not in netscript --help ({known:?})"
            );
            seen.insert(sub);
        }
    }
    for sub in ["down", "ls", "show", "plan", "repl", "gc"] {
        assert!(seen.contains(sub), "the docs were expected to mention `netscript {sub}`; found only {seen:?}");
    }
}

#[test]
fn the_tutorials_link_to_each_other_at_the_top() {
    for (doc, other) in [(EN, "tutorial.zh.md"), (ZH, "tutorial.md")] {
        let head: String = read(doc).lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(head.contains(&format!("]({other})")), "{doc} does not link to {other} at the top:\n{head}");
    }
}
