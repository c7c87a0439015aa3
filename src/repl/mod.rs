//! The interactive REPL: `netscript` with no script, or `netscript repl`.
//!
//! A Lua prompt with the whole API loaded, over one session that is recorded like a
//! script run (so `netscript down NAME` can remove what it leaves behind). Each input
//! is one chunk: an expression prints its value, an error undoes only what that
//! input changed, and the dot-commands (`.journal`, `.undo`, `.save`, ...) work on
//! the session's journal. `!NS cmd` runs a shell command inside a namespace.
//!
//! On a terminal, input goes through rustyline (history, completion); otherwise the
//! REPL reads stdin line by line with no prompts, which suits pipes and tests.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mlua::{Function, Lua, MultiValue};
use rustyline::completion::FilenameCompleter;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};

use crate::cli::RunOpts;
use crate::cmd::{self, Signals};
use crate::error::{Error, Result};
use crate::journal::State;
use crate::lua::handles::{LLink, LNetns, LProcess};
use crate::lua::util::{KEYWORDS, is_ident, lua_quote};
use crate::lua::{self, SessionRef};
use crate::model::{NsRef, plural};

mod complete;
mod show;

use complete::*;

const PROMPT: &str = "netscript> ";
const PROMPT_MORE: &str = "       ..> ";

/// The dot-commands, for `.help` and completion.
const COMMANDS: &[(&str, &str)] = &[
    (".help [NAME]", "this text, or one function (`.help Link:addr`), or one module"),
    (".journal", "what this session changed, as shell commands, oldest first"),
    (".undo [N]", "undo the newest N changes (default 1)"),
    (".rollback", "undo every change this session made"),
    (".save FILE", "write the inputs that built the current state as a script"),
    (".load FILE", "run a script into this session"),
    (".trace NS DST [tcp|udp PORT]", "why a probe from NS gets (or not) to DST: the walk, hop by hop"),
    (".net", "the topology: its namespaces, with their links, addresses and routes"),
    (".exit", "leave (as Ctrl-D)"),
];

const HELP_REPL: &str = "\
Typing:
  An expression prints its value (`1+1`, `ns1`, `fw.rules(\"nat\")`); a statement runs.
  An unfinished input (open `function`, `{`, string) continues on the next line.
  `local x = ...` at the start of an input defines x for the inputs that follow.
  An input that fails is undone (only that input's changes); the rest stays.
  Tab completes globals, module fields (`fw.` ...) and methods (`l:` ...).
  Ctrl-C cancels the input being typed, or stops the one running; Ctrl-D leaves.
Shell:
  !NS cmd     run `cmd` with /bin/sh inside namespace NS (`!ns1 ping -c1 10.0.0.2`)
  ! cmd       the same in the host namespace (also `!host cmd`)";

/// One input that ran without error, and the journal entries it made.
struct Chunk {
    /// What `.save` writes for it (None: nothing to save, e.g. a bare expression).
    save: Option<String>,
    /// How messages name it: the input on one line, or `.load FILE`.
    label: String,
    /// The journal's length before and after the input ran.
    start: usize,
    end: usize,
}

enum ChunkState {
    /// Every change it made is still in place (or it made none).
    Live,
    /// Some of its changes were undone by `.undo`.
    Partly,
    /// All its changes were undone.
    Undone,
}

/// What to do after an input.
enum Next {
    Continue,
    /// The input is not finished: read more lines.
    More,
    Exit,
}

pub struct Repl {
    lua: Lua,
    session: SessionRef,
    cancel: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    /// SIGTERM or SIGHUP (also set `cancel`): stop the running input, then leave.
    term: Arc<AtomicBool>,
    topo: String,
    chunks: Vec<Chunk>,
    tostring: Function,
    /// Set when a `.load`ed script calls `os.exit()`: the REPL leaves after it.
    exit: Rc<std::cell::Cell<bool>>,
}

/// Runs the REPL of topology `topo` to its end. `user_ns` is Some when the caller
/// has entered the sandbox (it must, while single-threaded); `cancel` and `count`
/// are the SIGINT / SIGTERM flags it installed.
pub fn run(opts: &RunOpts, topo: &str, user_ns: Option<bool>, signals: &Signals) -> Result<u8> {
    let topo = topo.to_string();
    let opened = cmd::open(opts, &topo, crate::journal::REPL_SCRIPT, user_ns.is_some(), signals).map_err(|e| {
        if opts.sandbox || nix::unistd::geteuid().is_root() {
            e
        } else {
            Error::sys(format!("{e}\n(the REPL changes this machine's network, which needs root; to try things out as a normal user: netscript repl --sandbox)"), e.errno())
        }
    })?;
    let session = opened.session.clone();
    let (cancel, count) = (signals.cancel.clone(), signals.count.clone());
    let lua = lua::new_lua(session.clone(), &topo, None, &[], cancel.clone())
        .and_then(|l| if opts.safe { lua::restrict::restrict(&l, "--safe").map(|()| l) } else { Ok(l) })
        .map_err(|e| Error::sys(format!("cannot start Lua: {e}"), None))?;
    let tostring: Function =
        lua.globals().get("tostring").map_err(|e| Error::sys(format!("cannot start Lua: {e}"), None))?;
    let term = Arc::new(AtomicBool::new(false));
    for sig in cmd::stop_signals().into_iter().filter(|s| *s != signal_hook::consts::SIGINT) {
        let _ = signal_hook::flag::register(sig, term.clone());
    }
    // os.exit() (see lua::exit_code) leaves the REPL the normal way: rollback with
    // --sandbox, the "still in place" note otherwise.
    let exit = Rc::new(std::cell::Cell::new(false));
    let mut repl = Repl {
        lua,
        session: session.clone(),
        cancel,
        count,
        term,
        topo: topo.clone(),
        chunks: Vec::new(),
        tostring,
        exit,
    };

    if std::io::stdin().is_terminal() {
        println!(
            "netscript {} REPL, topology \"{topo}\"{}",
            env!("CARGO_PKG_VERSION"),
            if opts.sandbox {
                " in a sandbox (everything is undone when you leave)"
            } else if opts.ephemeral {
                " (ephemeral: everything is undone when you leave)"
            } else {
                ""
            }
        );
        if opts.sandbox {
            println!(
                "From another shell, `netscript exec {} NS` opens a shell in one of its namespaces.",
                crate::model::shell_quote(&topo)
            );
        } else {
            // Not a sandbox: say so, and how to leave the machine as it was.
            println!(
                "This REPL changes THIS MACHINE's network (no --sandbox). .rollback undoes everything it did; {}",
                if opts.ephemeral {
                    "so does leaving.".to_string()
                } else {
                    format!("after leaving, so does: {}", cmd::down_command(opts, &topo))
                }
            );
        }
        println!("Type Lua. .help for the API and commands, Tab to complete, Ctrl-D to leave.");
        repl.interactive();
    } else {
        repl.piped();
    }
    let Repl { lua, cancel, term, .. } = repl;
    drop(lua);
    if term.load(Ordering::SeqCst) {
        eprintln!("netscript: terminated (SIGTERM or SIGHUP)");
    }
    // The signal has done its work (stopped the input); what follows must not be cut short.
    cancel.store(false, Ordering::SeqCst);

    Ok(opened.finish(opts, signals))
}

/// `$XDG_STATE_HOME/netscript/history`, or `~/.local/state/netscript/history`.
pub fn history_path() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base =
        env("XDG_STATE_HOME").filter(|p| p.is_absolute()).or_else(|| env("HOME").map(|h| h.join(".local/state")))?;
    Some(base.join("netscript").join("history"))
}

impl Repl {
    fn interactive(&mut self) {
        let builder = Config::builder().completion_type(CompletionType::List).auto_add_history(false);
        let config = builder
            .max_history_size(5000)
            .and_then(|b| b.history_ignore_dups(true))
            .map(|b| b.build())
            .unwrap_or_default();
        let mut rl: Editor<ReplHelper, DefaultHistory> = match Editor::with_config(config) {
            Ok(rl) => rl,
            Err(e) => {
                eprintln!("netscript: cannot use the terminal for line editing ({e}); reading plain lines");
                return self.piped();
            }
        };
        rl.set_helper(Some(ReplHelper {
            lua: self.lua.clone(),
            session: self.session.clone(),
            files: FilenameCompleter::new(),
        }));
        let history = history_path();
        if let Some(h) = &history {
            if let Some(dir) = h.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if h.exists()
                && let Err(e) = rl.load_history(h)
            {
                eprintln!("netscript: cannot read the history {}: {e}", h.display());
            }
        }
        let mut buf = String::new();
        loop {
            let prompt = if buf.is_empty() { PROMPT } else { PROMPT_MORE };
            match rl.readline(prompt) {
                Ok(line) => {
                    if buf.is_empty() && line.trim().is_empty() {
                        continue;
                    }
                    if !buf.is_empty() {
                        buf.push('\n');
                    }
                    buf.push_str(&line);
                    let next = self.input(&buf);
                    if !matches!(next, Next::More) {
                        let _ = rl.add_history_entry(buf.as_str());
                        if let Some(h) = &history {
                            let _ = rl.append_history(h);
                        }
                        buf.clear();
                    }
                    if matches!(next, Next::Exit) || self.term.load(Ordering::SeqCst) {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    if buf.is_empty() {
                        println!("(Ctrl-D or .exit to leave)");
                    }
                    buf.clear();
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("netscript: cannot read input: {e}");
                    break;
                }
            }
        }
    }

    /// Stdin is not a terminal: plain lines, no prompts, no banner.
    fn piped(&mut self) {
        let stdin = std::io::stdin();
        let mut buf = String::new();
        // Line by line, without holding stdin's lock: `.save` may read an answer.
        loop {
            let mut line = String::new();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line).to_string();
            // A signal that came while we waited for input ends the REPL, as it
            // would end a script.
            if self.cancel.load(Ordering::SeqCst) {
                eprintln!("netscript: interrupted");
                return;
            }
            if buf.is_empty() && line.trim().is_empty() {
                continue;
            }
            if !buf.is_empty() {
                buf.push('\n');
            }
            buf.push_str(&line);
            match self.input(&buf) {
                Next::More => continue,
                Next::Continue => buf.clear(),
                Next::Exit => return,
            }
            if self.term.load(Ordering::SeqCst) {
                return;
            }
        }
        if !buf.is_empty() {
            eprintln!("error: the input ended inside an unfinished chunk:\n{buf}");
        }
    }

    /// Handles one complete or partial input.
    fn input(&mut self, src: &str) -> Next {
        let next = self.input_inner(src);
        // A Ctrl-C that came too late to stop the input (it had just finished) must
        // not hit the next one.
        self.clear_interrupt();
        next
    }

    fn input_inner(&mut self, src: &str) -> Next {
        let first = src.trim_start();
        if first.starts_with('.') && first[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            let r = self.command(first.trim_end());
            let _ = std::io::stdout().flush();
            return r;
        }
        if let Some(rest) = first.strip_prefix('!') {
            self.shell(rest);
            return Next::Continue;
        }
        self.eval(src)
    }

    /// After an input: whether a signal stopped it. The flag is cleared so the REPL
    /// (and the undo of that input) goes on.
    fn clear_interrupt(&self) -> bool {
        self.count.store(0, Ordering::SeqCst);
        self.cancel.swap(false, Ordering::SeqCst)
    }

    fn compile(&self, src: &str) -> mlua::Result<Function> {
        self.lua.load(src).set_name("=stdin").into_function()
    }

    /// Runs a Lua input: as an expression if it is one (its values print), else as
    /// a statement; an unfinished one asks for more.
    fn eval(&mut self, src: &str) -> Next {
        let (func, expr) = match self.compile(&format!("return {src}")) {
            Ok(f) => (f, true),
            Err(_) => match self.compile(src) {
                Ok(f) => {
                    // `local x = ...` alone on a line would be gone on the next: make it global.
                    let f = strip_local(src).and_then(|s| self.compile(&s).ok()).unwrap_or(f);
                    (f, false)
                }
                Err(mlua::Error::SyntaxError { incomplete_input: true, .. }) => return Next::More,
                Err(e) => {
                    eprintln!("error: {}", lua::error_text(&e));
                    return Next::Continue;
                }
            },
        };
        let start = self.session.borrow().journal().entries().len();
        // Between lines, anything may have changed the links (another shell).
        self.session.borrow_mut().forget_known();
        // The end of the line: the queued firewall changes are made (os.exit too).
        let result = match func.call::<MultiValue>(()) {
            Ok(v) => lua::settle(&self.lua).map(|()| v),
            Err(e) if lua::exit_code(&e).is_some() => lua::settle(&self.lua).and(Err(e)),
            Err(e) => Err(e),
        };
        let end = self.session.borrow().journal().entries().len();
        match result {
            Ok(values) => {
                let changed = end > start;
                let save = if expr && !changed {
                    // A look (`a:info()`, `fw.rules("nat")`): nothing to rebuild.
                    None
                } else if !expr || self.compile(src).is_ok() {
                    // A statement, or an expression that is also one (a call).
                    if first_word(src) == Some("return") {
                        changed.then(|| format!("do\n{src}\nend"))
                    } else {
                        Some(src.to_string())
                    }
                } else if changed {
                    Some(format!("local _ = {src}"))
                } else {
                    None
                };
                self.chunks.push(Chunk { save, label: one_line(src), start, end });
                // An expression's values; a statement's too when it returns some.
                if !values.is_empty() {
                    let shown: Vec<String> = values.iter().map(|v| self.show_top(v)).collect();
                    println!("{}", shown.join("\t"));
                }
            }
            // os.exit(): what the input did before it stays (and is not saved).
            Err(e) if lua::exit_code(&e).is_some() => return Next::Exit,
            Err(e) => self.failed(&e, start, "this input"),
        }
        let _ = std::io::stdout().flush();
        Next::Continue
    }

    /// Reports a failed input and undoes what it changed.
    fn failed(&mut self, e: &mlua::Error, start: usize, what: &str) {
        let interrupted = self.clear_interrupt();
        if interrupted {
            eprintln!("interrupted");
        } else {
            eprintln!("error: {}", lua::error_text(e));
        }
        let changes = self.session.borrow().journal().entries()[start..].iter().filter(|e| e.live()).count();
        let report = self.session.borrow_mut().undo_since(start);
        if changes > 0 || !report.complete() {
            eprintln!("(undid the {} {what} made; the rest stays)", plural(changes, "change"));
            cmd::print_undone(&report);
            cmd::print_notes(&report);
        }
    }

    fn shell(&mut self, rest: &str) {
        let (ns, cmd) = if rest.starts_with(char::is_whitespace) || rest.is_empty() {
            (NsRef::Host, rest.trim())
        } else {
            let (name, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            (if name == "host" { NsRef::Host } else { NsRef::named(name) }, cmd.trim())
        };
        if cmd.is_empty() {
            eprintln!("usage: !NS command (runs it with /bin/sh inside namespace NS), or ! command for the host");
            return;
        }
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), cmd.to_string()];
        // On a terminal the command gets it (`!ns1 bash`, `!ns1 vi x`); else its output
        // is captured and printed.
        let on_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        let r = if on_terminal {
            let _ = std::io::stdout().flush();
            self.session.borrow_mut().exec_on_terminal(&ns, &argv).map(|code| crate::sys::process::ExecResult {
                code,
                stdout: String::new(),
                stderr: String::new(),
                timed_out: false,
            })
        } else {
            self.session.borrow_mut().exec(&ns, &argv, None)
        };
        let interrupted = self.clear_interrupt();
        match r {
            Ok(r) => {
                print!("{}", r.stdout);
                if !r.stdout.is_empty() && !r.stdout.ends_with('\n') {
                    println!();
                }
                let _ = std::io::stdout().flush();
                eprint!("{}", r.stderr);
                if !r.stderr.is_empty() && !r.stderr.ends_with('\n') {
                    eprintln!();
                }
                if r.code != 0 {
                    eprintln!("(exit code {})", r.code);
                }
            }
            Err(_) if interrupted => eprintln!("interrupted"),
            Err(e) => {
                let known = self.session.borrow_mut().netns_list();
                let hint = match &ns {
                    NsRef::Named(_) if !known.is_empty() => {
                        format!(" (namespaces: {}; `!host` or `! ` for the host)", known.join(", "))
                    }
                    NsRef::Named(_) => " (there are no named namespaces; `! cmd` runs in the host)".to_string(),
                    NsRef::Host => String::new(),
                };
                eprintln!("error: !{} {cmd}: {e}{hint}", ns.short());
            }
        }
    }

    fn command(&mut self, line: &str) -> Next {
        let (cmd, arg) = line.split_once(char::is_whitespace).map(|(c, a)| (c, a.trim())).unwrap_or((line, ""));
        match cmd {
            ".help" | ".h" => self.help(arg),
            ".journal" | ".j" => self.show_journal(),
            ".undo" | ".u" => {
                let n = if arg.is_empty() { Ok(1) } else { arg.parse::<usize>().map_err(|_| ()) };
                match n {
                    Ok(0) | Err(()) => eprintln!("usage: .undo [N] (N a positive number of changes; not {arg:?})"),
                    Ok(n) => self.undo(n),
                }
            }
            ".rollback" => self.undo(usize::MAX),
            ".save" => {
                if arg.is_empty() {
                    eprintln!("usage: .save FILE");
                } else {
                    self.save(&expand_home(arg));
                }
            }
            ".load" => {
                if arg.is_empty() {
                    eprintln!("usage: .load FILE");
                } else {
                    self.load(&expand_home(arg));
                }
            }
            ".trace" | ".t" => self.trace(arg),
            ".net" => {
                print!("{}", self.net());
                let _ = std::io::stdout().flush();
            }
            ".exit" | ".quit" | ".q" => return Next::Exit,
            other => eprintln!("unknown command {other}; .help lists the commands"),
        }
        if self.exit.get() { Next::Exit } else { Next::Continue }
    }

    fn trace(&mut self, arg: &str) {
        let words: Vec<&str> = arg.split_whitespace().collect();
        let r = crate::trace::parse_words(&words).and_then(|(ns, dst, proto)| {
            self.session.borrow_mut().trace(&ns, dst, proto, None, std::time::Duration::from_secs(1))
        });
        let interrupted = self.clear_interrupt();
        match r {
            Ok(t) => {
                print!("{t}");
                let _ = std::io::stdout().flush();
            }
            Err(_) if interrupted => eprintln!("interrupted"),
            Err(e) => eprintln!("error: .trace {arg}: {e}"),
        }
    }

    fn help(&self, arg: &str) {
        if !arg.is_empty() {
            match lua::api::help_for(arg) {
                Some(text) => println!("{text}"),
                None => eprintln!("no function, field or module named {arg}; .help lists them"),
            }
            return;
        }
        println!("{}\n\nCommands:", lua::api::help_text());
        for (c, what) in COMMANDS {
            println!("  {c:<14}{what}");
        }
        println!("{HELP_REPL}");
    }

    fn show_journal(&self) {
        let s = self.session.borrow();
        let entries = s.journal().entries();
        let live: Vec<_> = entries.iter().filter(|e| e.live()).collect();
        let undone = entries.iter().filter(|e| e.state == State::Undone).count();
        if live.is_empty() {
            println!("(no changes in place)");
        }
        for (i, e) in live.iter().enumerate() {
            println!("{:>3}  {}", i + 1, e.op.render());
        }
        if undone > 0 {
            println!("({} not shown)", plural(undone, "undone change"));
        }
    }

    fn chunk_state(&self, c: &Chunk) -> ChunkState {
        let s = self.session.borrow();
        let entries = &s.journal().entries()[c.start..c.end];
        let made = entries.iter().filter(|e| e.state != State::Failed).count();
        let undone = entries.iter().filter(|e| e.state == State::Undone).count();
        if undone == 0 {
            ChunkState::Live
        } else if undone == made {
            ChunkState::Undone
        } else {
            ChunkState::Partly
        }
    }

    /// Whether journal entry `i` is one of `seqs` (the ones an undo just undid).
    fn undone_now(&self, i: usize, seqs: &[u64]) -> bool {
        self.session.borrow().journal().entries().get(i).is_some_and(|e| seqs.contains(&e.seq))
    }

    fn undo(&mut self, n: usize) {
        let todo_seqs: Vec<u64> = self.session.borrow().journal().live_newest_first().take(n).map(|e| e.seq).collect();
        if todo_seqs.is_empty() {
            println!("nothing to undo");
            return;
        }
        let report = self.session.borrow_mut().undo_last(n);
        // The commands that ran to undo (as a failed run and `down -v` print them).
        for u in &report.undone {
            println!("undone: {}", u.render());
        }
        cmd::print_notes(&report);
        for c in &self.chunks[..] {
            if let (ChunkState::Partly, Some(_)) = (self.chunk_state(c), &c.save)
                && (c.start..c.end).any(|i| self.undone_now(i, &todo_seqs))
            {
                println!("note: this undid only part of `{}`; .save writes that input commented out", c.label);
            }
        }
    }

    /// The inputs that built the current state, as a script.
    /// The inputs that built the current state, as a script: those whose changes are
    /// in place, and (with `statements`) the inputs that changed nothing but may
    /// define what later ones use (`a = netns.get("ns1")`). Returns the text, how
    /// many inputs it holds, and how many were partly undone (written commented out).
    fn saved_script(&self, statements: bool) -> (String, usize, usize) {
        let mut out = format!(
            "-- Saved from the netscript REPL (topology {}).\n-- Rebuild with: netscript FILE\n\n",
            crate::model::shell_quote(&self.topo)
        );
        let (mut kept, mut partly) = (0, 0);
        for c in &self.chunks {
            let Some(src) = &c.save else { continue };
            if c.start == c.end && !statements {
                continue;
            }
            match self.chunk_state(c) {
                ChunkState::Live => {
                    out += src;
                    out += "\n";
                    kept += 1;
                }
                ChunkState::Partly => {
                    out += "-- partly undone with .undo in the REPL; left out:\n";
                    for l in src.lines() {
                        out += &format!("-- {l}\n");
                    }
                    partly += 1;
                }
                ChunkState::Undone => {}
            }
        }
        (out, kept, partly)
    }

    /// Writes the script, after checking under the plan model that it rebuilds the
    /// topology (when it does not with every input, without the inputs that changed
    /// nothing). Asks before replacing an existing file.
    fn save(&self, path: &Path) {
        if path.exists() && !confirm(&format!("{} exists; replace it? [y/N] ", path.display())) {
            println!("not saved");
            return;
        }
        // The trial copy goes to a fresh directory only this user can enter (mkdtemp:
        // a new name, mode 0700), never to a path someone else could have prepared.
        let dir = match nix::unistd::mkdtemp(&std::env::temp_dir().join("netscript-save-XXXXXX")) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: .save {}: cannot make a directory to check it in: {e}", path.display());
                return;
            }
        };
        let trial = dir.join(path.file_name().unwrap_or_else(|| std::ffi::OsStr::new("saved.lua")));
        let check = |text: &str| -> Option<String> {
            if let Err(e) = std::fs::write(&trial, text) {
                return Some(format!("cannot check it: {e}"));
            }
            match cmd::plan::runs_under_plan(&self.topo, &trial) {
                Ok(failure) => failure,
                Err(e) => Some(e.to_string()),
            }
        };
        let full = self.saved_script(true);
        let (mut chosen, mut failure) = (full.clone(), check(&full.0));
        if failure.is_some() {
            let lean = self.saved_script(false);
            if lean.1 < full.1 && check(&lean.0).is_none() {
                (chosen, failure) = (lean, None);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let (text, kept, partly) = chosen;
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: .save {}: cannot write it: {e}", path.display());
            return;
        }
        match failure {
            None => println!(
                "saved {} to {}; rebuild with: netscript {}",
                plural(kept, "input"),
                path.display(),
                crate::model::shell_quote(&path.display().to_string())
            ),
            Some(why) => eprintln!(
                "saved {} to {}, but it does not rebuild the topology as it is: under `netscript plan` it fails: {}",
                plural(kept, "input"),
                path.display(),
                why.replace(&trial.display().to_string(), &path.display().to_string())
            ),
        }
        if partly > 0 {
            eprintln!(
                "note: {partly} input{} partly undone with .undo and written commented out; the script rebuilds less than the session holds",
                if partly == 1 { " was" } else { "s were" }
            );
        }
    }

    fn load(&mut self, path: &Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: .load {}: cannot read it: {e}", path.display());
                return;
            }
        };
        let start = self.session.borrow().journal().entries().len();
        self.session.borrow_mut().forget_known();
        let r = lua::run_file(&self.lua, path, &[]);
        let end = self.session.borrow().journal().entries().len();
        match r {
            Ok(()) => {
                let body = if text.starts_with('#') { text.split_once('\n').map(|x| x.1).unwrap_or("") } else { &text };
                let save = format!("-- .load {}\ndo\n{}\nend", path.display(), body.trim_end());
                self.chunks.push(Chunk { save: Some(save), label: format!(".load {}", path.display()), start, end });
                let n = self.session.borrow().journal().entries()[start..end].iter().filter(|e| e.live()).count();
                println!("loaded {} ({})", path.display(), plural(n, "change"));
            }
            Err(e) if lua::exit_code(&e).is_some() => self.exit.set(true),
            Err(e) => self.failed(&e, start, &format!("{}", path.display())),
        }
    }
}

/// Asks a yes/no question on the terminal (or reads the answer from piped input);
/// only "y" or "yes" is yes.
fn confirm(question: &str) -> bool {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// `~/x` -> `$HOME/x`, as a shell would.
fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(h)) => PathBuf::from(h).join(rest),
        _ => PathBuf::from(p),
    }
}

/// An input on one line, shortened, for messages.
fn one_line(src: &str) -> String {
    let s: String = src.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 60 { format!("{}...", s.chars().take(57).collect::<String>()) } else { s }
}

fn first_word(src: &str) -> Option<&str> {
    src.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).find(|w| !w.is_empty())
}

/// `local x = 1` -> `x = 1`, `local function f` -> `function f` (a leading `local`
/// only; the caller keeps the original when the rewrite does not compile).
fn strip_local(src: &str) -> Option<String> {
    let t = src.trim_start();
    let rest = t.strip_prefix("local")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(rest.trim_start().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::{AnyUserData, ObjectLike, Value};

    fn names(lua: &Lua, before: &str) -> Vec<String> {
        lua_completions(lua, before).1.into_iter().map(|p| p.replacement).collect()
    }

    #[test]
    fn handle_members_listed_for_completion_exist() {
        let lua = Lua::new();
        let check = |ud: AnyUserData, class: &str| {
            let (fields, methods) = members(class);
            assert!(!methods.is_empty(), "{class} has no methods in the API table");
            for n in fields.iter().chain(&methods) {
                let v: Value = ud.get(*n).unwrap_or_else(|e| panic!("{n}: {e}"));
                assert!(!v.is_nil(), "{class}: {n} is listed for completion but does not exist");
            }
        };
        check(lua.create_userdata(LNetns { ns: NsRef::named("x") }).unwrap(), "Netns");
        check(lua.create_userdata(LLink { ns: NsRef::Host, name: "l".into() }).unwrap(), "Link");
        check(lua.create_userdata(LProcess { pid: 1, cmd: "x".into() }).unwrap(), "Process");
    }

    #[test]
    fn completes_globals_fields_and_methods() {
        let lua = Lua::new();
        lua.load("fw = {append = function() end, policy = function() end, rules = function() end}; nested = {inner = {leaf = 1}}")
            .exec()
            .unwrap();
        assert_eq!(names(&lua, "fw.ap"), vec!["append("]);
        assert_eq!(names(&lua, "x = fw."), vec!["append", "policy", "rules"]);
        assert_eq!(lua_completions(&lua, "x = fw.").0, 7);
        assert_eq!(names(&lua, "pri"), vec!["print("]);
        assert_eq!(names(&lua, "nested.inner.l"), vec!["leaf"]);
        assert_eq!(names(&lua, "nes"), vec!["nested."]);
        assert!(names(&lua, "fun").contains(&"function".to_string()));
        lua.globals().set("l", lua.create_userdata(LLink { ns: NsRef::Host, name: "v".into() }).unwrap()).unwrap();
        assert_eq!(names(&lua, "l:ad"), vec!["addr", "addrs"]);
        assert_eq!(names(&lua, "l:mt"), vec!["mtu("]);
        assert_eq!(names(&lua, "l.ns:pi"), vec!["ping("]);
        assert!(names(&lua, "print(\"fw.ap").is_empty());
    }

    #[test]
    fn values_print_readably() {
        assert_eq!(lua_quote(b"a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(strip_local("local x = 1").as_deref(), Some("x = 1"));
        assert_eq!(strip_local("localx = 1"), None);
        assert_eq!(first_word("  return 1"), Some("return"));
    }
}
