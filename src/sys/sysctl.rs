//! Sysctls under /proc/sys, read and written from inside the target namespace
//! (files under /proc/sys/net resolve against the namespace of the opening thread).

use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::sys::netns::in_netns;

/// "net.ipv4.ip_forward" -> /proc/sys/net/ipv4/ip_forward. A key with '/' is taken
/// as a path below /proc/sys (needed for names with dots, e.g. "net/ipv4/conf/eth0.5/rp_filter").
/// Every part of the path is a name: none is empty, `.` or `..` (so one setting has
/// one path, and none leads out of /proc/sys), and no control character, white
/// space or `=` is in the key.
pub fn key_path(key: &str) -> Result<PathBuf> {
    let sep = if key.contains('/') { '/' } else { '.' };
    if key.split(sep).any(|p| p.is_empty() || p == "." || p == "..")
        || key.chars().any(|c| c.is_whitespace() || c.is_control() || c == '=')
    {
        return Err(Error::invalid(format!(
            "\"{}\" is not a sysctl key (like net.ipv4.ip_forward)",
            crate::model::one_line(key)
        )));
    }
    let rel = if key.contains('/') { key.to_string() } else { key.replace('.', "/") };
    Ok(PathBuf::from("/proc/sys").join(rel))
}

/// Whether a sysctl belongs to a network namespace (`net.*`): the only ones a
/// sandbox may set. Every other key (`kernel.*`, `vm.*`, `fs.*`, ...) is the
/// machine's own, whatever namespace writes it.
pub fn per_netns(key: &str) -> bool {
    key_path(key).is_ok_and(|p| p.starts_with("/proc/sys/net/"))
}

fn io_err(key: &str, e: std::io::Error, what: &str) -> Error {
    let errno = e.raw_os_error().map(Errno::from_raw);
    match errno {
        Some(Errno::ENOENT) => Error::sys(format!("no sysctl named {key}"), errno),
        Some(Errno::EACCES | Errno::EPERM) => {
            Error::sys(format!("cannot {what} sysctl {key}: not permitted (needs root, or run with --sandbox)"), errno)
        }
        Some(Errno::EINVAL) => Error::sys(format!("the kernel rejected the value for sysctl {key}"), errno),
        _ => Error::sys(format!("cannot {what} sysctl {key}: {e}"), errno),
    }
}

pub fn get(fd: Option<BorrowedFd<'_>>, key: &str) -> Result<String> {
    let p = key_path(key)?;
    in_netns(fd, || std::fs::read_to_string(&p))?
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|e| io_err(key, e, "read"))
}

pub fn set(fd: Option<BorrowedFd<'_>>, key: &str, value: &str) -> Result<()> {
    let p = key_path(key)?;
    in_netns(fd, || std::fs::write(&p, value.as_bytes()))?.map_err(|e| io_err(key, e, "write"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_a_path_of_names_below_proc_sys() {
        assert_eq!(key_path("net.ipv4.ip_forward").unwrap(), PathBuf::from("/proc/sys/net/ipv4/ip_forward"));
        assert_eq!(
            key_path("net/ipv4/conf/eth0.5/rp_filter").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.5/rp_filter")
        );
        for bad in [
            "",
            ".net.ipv4.ip_forward",
            "net.ipv4.",
            "net..ipv4",
            "/net/ipv4/ip_forward",
            "net/ipv4/",
            "net//ipv4",
            "net/../kernel/x",
            "net/ipv4/./ip_forward",
            "net/..",
            "net.ipv4.ip forward",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.a\u{1b}[8m.forwarding",
            "net.ipv4.x\u{9b}",
        ] {
            let e = key_path(bad).expect_err(bad).to_string();
            assert!(!e.contains('\u{1b}') && !e.contains('\u{9b}'), "{e:?}");
        }
    }
}
