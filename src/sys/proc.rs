//! The one reader of /proc/PID/stat. The command name (field 2) is in parentheses
//! and may itself hold spaces and ')', so the fields after it are found from the
//! last ')' of the line.

/// The fields of /proc/PID/stat that netscript uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The command name (at most 15 bytes, as the kernel keeps it).
    pub comm: String,
    /// The state letter: R, S, D, Z (zombie), X (dead), ...
    pub state: char,
    /// Its parent (field 4).
    pub ppid: u32,
    /// Its process group (field 5).
    pub pgrp: i32,
    /// When the process started, in clock ticks after boot (field 22): with the
    /// pid, it tells the process netscript started from a later one that reused it.
    pub start: u64,
}

impl Stat {
    /// Whether the process has ended (a zombie, or dead).
    pub fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses the text of a /proc/PID/stat file.
pub fn parse_stat(s: &str) -> Option<Stat> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let mut rest = s.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    // `rest` now starts at field 4 (ppid), then the process group; the start time is
    // field 22.
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    let start = rest.nth(16)?.parse().ok()?;
    Some(Stat { comm, state, ppid, pgrp, start })
}

/// /proc/PID/stat of a process; None when it is gone (or unreadable).
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line for `comm` with state `state` and start time 4242.
    fn line(comm: &str, state: char) -> String {
        format!(
            "1234 ({comm}) {state} 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 4242 1000 200 18446744073709551615"
        )
    }

    #[test]
    fn plain_name() {
        let s = parse_stat(&line("nc", 'S')).unwrap();
        assert_eq!(s, Stat { comm: "nc".into(), state: 'S', ppid: 1, pgrp: 1234, start: 4242 });
        assert!(!s.exited());
    }

    #[test]
    fn name_with_parenthesis_and_spaces() {
        for comm in ["a) R 1 2", "x ) (y", ") Z 9", "tmux: server)"] {
            let s = parse_stat(&line(comm, 'R')).unwrap();
            assert_eq!(s.comm, comm);
            assert_eq!(s.state, 'R');
            assert_eq!((s.ppid, s.pgrp), (1, 1234));
            assert_eq!(s.start, 4242);
        }
    }

    #[test]
    fn zombie_and_dead() {
        assert!(parse_stat(&line("sh", 'Z')).unwrap().exited());
        assert!(parse_stat(&line("sh", 'X')).unwrap().exited());
    }

    #[test]
    fn truncated_is_none() {
        assert_eq!(parse_stat("1234 (sh) S 1 2 3"), None);
        assert_eq!(parse_stat("1234 sh S"), None);
    }

    #[test]
    fn own_process() {
        let me = stat(std::process::id()).unwrap();
        assert!(!me.exited());
        assert!(me.start > 0);
    }
}
