//! One error type for the whole core: every error carries a sentence for a person
//! (object and reason) and, when the kernel said no, the errno behind it.

use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input, caught before the kernel was touched.
    #[error("{0}")]
    Invalid(String),
    /// The kernel or a system tool refused; `msg` names the object and the reason.
    #[error("{msg}")]
    Sys { msg: String, errno: Option<Errno> },
    /// The object by that name is not the one netscript made (another one took its
    /// name): it is left alone, and said so.
    #[error("{0}")]
    NotOurs(String),
    /// SIGINT or SIGTERM arrived.
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
    /// A change made later than the call that asked for it (a queued firewall
    /// change) was refused; `at` is that call: "file:line: fw.append(...)".
    #[error("{at}: {source}")]
    Deferred { at: String, source: Box<Error> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn sys(msg: impl Into<String>, errno: Option<Errno>) -> Self {
        Error::Sys { msg: msg.into(), errno }
    }
    /// `what` failed because of `errno`: "what: <reason in words>".
    pub fn from_errno(what: impl std::fmt::Display, errno: Errno) -> Self {
        Error::Sys { msg: format!("{what}: {}", errno_reason(errno)), errno: Some(errno) }
    }
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { errno, .. } => *errno,
            Error::Deferred { source, .. } => source.errno(),
            _ => None,
        }
    }
    /// True when the object found is not the one netscript made (left alone).
    pub fn is_not_ours(&self) -> bool {
        matches!(self, Error::NotOurs(_))
    }
    /// True when the error means "the object is not there" (used by rollback, where
    /// an object that is already gone counts as undone).
    pub fn is_gone(&self) -> bool {
        matches!(self.errno(), Some(Errno::ENOENT | Errno::ENODEV | Errno::ESRCH | Errno::EADDRNOTAVAIL))
    }
}

/// The reason behind an errno, in words a person understands.
pub fn errno_reason(e: Errno) -> String {
    match e {
        Errno::EEXIST => "already exists".into(),
        Errno::ENODEV => "no such link".into(),
        Errno::EPERM => "operation not permitted (needs root, or run with --sandbox)".into(),
        // Not a missing privilege: a file's mode (a program that is not executable, a
        // directory that may not be read).
        Errno::EACCES => "permission denied".into(),
        Errno::ENOENT => "not found".into(),
        Errno::ESRCH => "no such object (already gone?)".into(),
        Errno::EBUSY => "busy (in use)".into(),
        Errno::ENETUNREACH => "network unreachable (no route to the gateway)".into(),
        Errno::EADDRNOTAVAIL => "address not available".into(),
        Errno::EOPNOTSUPP => "operation not supported by this kernel or link type".into(),
        Errno::EINVAL => "invalid argument (the kernel rejected it)".into(),
        other => format!("{} ({})", other.desc().to_lowercase(), other),
    }
}

impl From<rtnetlink::Error> for Error {
    fn from(e: rtnetlink::Error) -> Self {
        match e {
            rtnetlink::Error::NetlinkError(m) => {
                let code = m.code.map(|c| -c.get()).unwrap_or(0);
                let errno = Errno::from_raw(code);
                Error::Sys { msg: errno_reason(errno), errno: Some(errno) }
            }
            other => Error::Sys { msg: other.to_string(), errno: None },
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let errno = e.raw_os_error().map(Errno::from_raw);
        Error::Sys { msg: e.to_string(), errno }
    }
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        Error::Sys { msg: errno_reason(e), errno: Some(e) }
    }
}
