//! The terminal, for the command line only (the core never prints): whether stderr is
//! a terminal, colour (on a terminal, unless NO_COLOR is set), and the progress line
//! of runs and teardowns that last more than a second. Nothing here writes anything
//! when stderr is not a terminal (tests and pipes read stderr).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A progress line is on the screen now (it has no newline yet).
static SHOWN: AtomicBool = AtomicBool::new(false);

/// How long a run or teardown goes before its progress line appears.
pub const PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Colour on stderr: it is a terminal and NO_COLOR is unset or empty (no-color.org).
pub fn colour() -> bool {
    stderr_is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[derive(Clone, Copy)]
pub enum Paint {
    /// The progress line.
    Progress,
    /// A failure: the script failed, an undo failed.
    Bad,
    /// A topology left up.
    Good,
}

/// `text` in colour when stderr gets colour; as it is otherwise.
pub fn paint(p: Paint, text: &str) -> String {
    if !colour() {
        return text.to_string();
    }
    let code = match p {
        Paint::Progress => "36",
        Paint::Bad => "1;31",
        Paint::Good => "32",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Removes the progress line, if one is shown (before anything else is printed).
pub fn clear_progress() {
    if SHOWN.swap(false, Ordering::SeqCst) {
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[K");
        let _ = e.flush();
    }
}

/// The terminal's width (80 when it cannot be read).
fn width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct; fd 2 stays open.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 { ws.ws_col as usize } else { 80 }
}

/// One progress line, redrawn in place; shown only on a terminal, once `PROGRESS_AFTER`
/// has passed since it was made.
pub struct Progress {
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// A line for a run or teardown starting now; `enabled` false: never shown.
    pub fn new(enabled: bool) -> Progress {
        Progress { start: Instant::now(), last: None, enabled: enabled && stderr_is_terminal() }
    }

    /// Whether a redraw would be shown now.
    pub fn due(&self) -> bool {
        self.enabled && self.start.elapsed() >= PROGRESS_AFTER && self.last.is_none_or(|l| l.elapsed() >= REDRAW)
    }

    /// Seconds since the start, for the line's text.
    pub fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Redraws the line with `text` (made only when it is shown), cut to the width.
    pub fn show(&mut self, text: impl FnOnce() -> String) {
        if !self.due() {
            return;
        }
        self.last = Some(Instant::now());
        let text = text();
        let line: String = text.chars().filter(|c| !c.is_control()).take(width().saturating_sub(1)).collect();
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[K{}", paint(Paint::Progress, &line));
        let _ = e.flush();
        SHOWN.store(true, Ordering::SeqCst);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.enabled {
            clear_progress();
        }
    }
}
