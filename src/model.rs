//! Plain values shared by the core: namespace references, routes, validation of
//! names and addresses. No kernel access here.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which network namespace an object lives in: the one netscript runs in ("the
/// host"), or a named one under /run/netns.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(from = "Option<String>", into = "Option<String>")]
pub enum NsRef {
    #[default]
    Host,
    Named(String),
}

impl From<Option<String>> for NsRef {
    fn from(o: Option<String>) -> Self {
        o.map_or(NsRef::Host, NsRef::Named)
    }
}
impl From<NsRef> for Option<String> {
    fn from(n: NsRef) -> Self {
        match n {
            NsRef::Host => None,
            NsRef::Named(s) => Some(s),
        }
    }
}

impl NsRef {
    pub fn named(name: impl Into<String>) -> Self {
        NsRef::Named(name.into())
    }
    pub fn name(&self) -> Option<&str> {
        match self {
            NsRef::Host => None,
            NsRef::Named(s) => Some(s),
        }
    }
    pub fn is_host(&self) -> bool {
        matches!(self, NsRef::Host)
    }
    /// "host" or the namespace's name, for short listings.
    pub fn short(&self) -> &str {
        self.name().unwrap_or("host")
    }
    /// `-n NAME ` for iproute2 commands ("" for the host).
    pub fn ip_flag(&self) -> String {
        match self {
            NsRef::Host => String::new(),
            NsRef::Named(n) => format!("-n {} ", shell_quote(n)),
        }
    }
    /// `ip netns exec NAME ` prefix for other commands ("" for the host).
    pub fn exec_prefix(&self) -> String {
        match self {
            NsRef::Host => String::new(),
            NsRef::Named(n) => format!("ip netns exec {} ", shell_quote(n)),
        }
    }
}

impl fmt::Display for NsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsRef::Host => f.write_str("the host namespace"),
            NsRef::Named(n) => write!(f, "namespace \"{n}\""),
        }
    }
}

/// A route as netscript adds, deletes and restores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination; 0.0.0.0/0 or ::/0 is "default".
    pub dest: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// Routing protocol number (who installed it); None = netscript's own mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
}

/// The routing protocol number netscript stamps on the routes it adds: its ownership
/// mark for routes (`ip route` shows it as `proto 78`).
pub const ROUTE_PROTO: u8 = 78;

/// The address protocol (IFA_PROTO) netscript stamps on the addresses it adds, its
/// ownership mark for addresses (`ip addr` shows `proto 78`): the same number as
/// routes'.
pub const ADDR_PROTO: u8 = ROUTE_PROTO;

/// The check an address's undo makes before deleting it: that it still carries the
/// protocol it was added with (`want`; None: any, as in records from before the
/// mark), `have` being the one it carries now.
pub fn addr_owned(ns: &NsRef, dev: &str, addr: &IpNet, want: Option<u8>, have: u8) -> Result<()> {
    match want {
        Some(want) if want != have => Err(Error::NotOurs(format!(
            "{addr} on \"{dev}\" in {ns} is not the address this topology added (its protocol is {have}, not {want}: added again by someone else); left alone"
        ))),
        _ => Ok(()),
    }
}

/// The metric the kernel gives an IPv6 route added without one, or with 0
/// (IP6_RT_PRIO_USER).
pub const IPV6_METRIC: u32 = 1024;

impl Route {
    pub fn is_default(&self) -> bool {
        self.dest.prefix_len() == 0
    }
    /// Whether this route (one the kernel holds) goes where `spec` says: the same
    /// destination, and the gateway and link `spec` gives, if it gives them.
    pub fn same_place(&self, spec: &Route) -> bool {
        self.dest == spec.dest
            && (spec.via.is_none() || self.via == spec.via)
            && (spec.dev.is_none() || self.dev == spec.dev)
    }
    /// Whether this route (one the kernel holds) is one `spec` names: the same place,
    /// and the metric `spec` gives, if it gives one (as `ip route del` picks a route).
    pub fn matches(&self, spec: &Route) -> bool {
        self.same_place(spec) && (spec.metric.is_none() || self.metric.unwrap_or(0) == spec.metric.unwrap_or(0))
    }
    /// The metric the kernel holds the route at once added: IPv4 keeps what is given
    /// (none is 0), IPv6 makes none and 0 into [`IPV6_METRIC`].
    pub fn kernel_metric(&self) -> u32 {
        match (self.dest.addr().is_ipv6(), self.metric) {
            (true, None | Some(0)) => IPV6_METRIC,
            (_, m) => m.unwrap_or(0),
        }
    }
    /// The metric the route is named by once added: for IPv6 the one the kernel gave
    /// it (`kernel_metric`), for IPv4 the one given (none: 0).
    pub fn named_metric(&self) -> Option<u32> {
        if self.dest.addr().is_ipv6() { Some(self.kernel_metric()) } else { self.metric }
    }
    /// The route as a deletion must name it to take that one route and no other to
    /// the same place: with its metric, for IPv6 (`ip -6 route del` without a metric
    /// deletes the route of the lowest metric, whoever's it is). IPv4 reads a metric
    /// of 0 as "any" in a deletion, so a route at 0 is named without one and told
    /// apart by reading first (`Backend::apply` of `Op::DelRoute`).
    pub fn to_delete(&self) -> Route {
        Route { metric: self.named_metric(), ..self.clone() }
    }
    /// `-6 ` for an IPv6 route ("" for IPv4): `ip -6 route` (needed for "default"
    /// without a gateway, and how people read IPv6 routes).
    pub fn family_flag(&self) -> &'static str {
        if self.dest.addr().is_ipv6() { "-6 " } else { "" }
    }
    /// The route's arguments after `ip route add`, as iproute2 spells them.
    pub fn render_args(&self) -> String {
        let mut s = if self.is_default() { "default".to_string() } else { self.dest.to_string() };
        if let Some(v) = self.via {
            s += &format!(" via {v}");
        }
        if let Some(d) = &self.dev {
            s += &format!(" dev {}", shell_quote(d));
        }
        if let Some(m) = self.metric {
            s += &format!(" metric {m}");
        }
        match self.proto {
            None | Some(ROUTE_PROTO) => {}
            Some(2) => s += " proto kernel",
            Some(3) => s += " proto boot",
            Some(4) => s += " proto static",
            Some(p) => s += &format!(" proto {p}"),
        }
        match self.scope {
            None | Some(0) => {}
            Some(253) => s += " scope link",
            Some(254) => s += " scope host",
            Some(x) => s += &format!(" scope {x}"),
        }
        if let Some(src) = self.src {
            s += &format!(" src {src}");
        }
        s
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_args())
    }
}

/// Checks a link name the way the kernel does (dev_valid_name), before asking it,
/// and refuses `%`: the kernel takes `a%d` as a pattern and makes `a0`, a name the
/// journal would not know.
pub fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("a link name cannot be empty"));
    }
    if name.len() > 15 {
        return Err(Error::invalid(format!(
            "link name {name:?} is {} bytes long; Linux allows at most 15",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(Error::invalid(format!("\"{name}\" is not a valid link name")));
    }
    if let Some(c) = name.chars().find(|c| "/:%".contains(*c) || c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(format!(
            "link name {name:?} contains {c:?}; '/', ':', '%', white space and control characters are not allowed"
        )));
    }
    Ok(())
}

/// Checks a namespace (or topology) name: it becomes a file name, and it is printed
/// in commands and comments.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("a {kind} name cannot be empty")));
    }
    if name.len() > 200 {
        return Err(Error::invalid(format!("{kind} name {name:?} is too long (200 bytes at most)")));
    }
    if name == "." || name == ".." || name.contains('/') {
        return Err(Error::invalid(format!("{name:?} is not a valid {kind} name (no '/', not '.' or '..')")));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "{kind} name {name:?} contains the control character {c:?} (no line breaks, NUL or other control characters)"
        )));
    }
    if name.starts_with('-') {
        return Err(Error::invalid(format!("{kind} name \"{name}\" must not start with '-'")));
    }
    Ok(())
}

/// Checks words that become a process's arguments (`exec`, `spawn`; `lines`: a line
/// break is allowed, as in a program given to `python3 -c`: printed commands quote
/// it, comments escape it) or a value written to the system (a sysctl value: no line
/// break). No NUL (no program can receive it) and no other control character (a
/// carriage return or an escape sequence would hide text from a person reading the
/// printed command).
pub fn check_words(what: &str, words: &[String], lines: bool) -> Result<()> {
    for w in words {
        if let Some(c) = w.chars().find(|c| c.is_control() && *c != '\t' && !(lines && *c == '\n')) {
            return Err(Error::invalid(format!(
                "{what} {w:?} contains the control character {c:?} (no NUL, carriage return or other control characters{})",
                if lines { "" } else { ", no line break" }
            )));
        }
    }
    Ok(())
}

/// Parses "175.18.0.2/24" (an address with its prefix length). A bare address is
/// taken as a host address (/32 or /128), as `ip addr add` does.
pub fn parse_cidr(s: &str) -> Result<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n);
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(a));
    }
    let hint = match s.split_once('/') {
        Some((a, _)) if a.parse::<IpAddr>().is_err() => format!("\"{a}\" is not an IP address"),
        Some((a, p)) => {
            let max = if a.contains(':') { 128 } else { 32 };
            format!("prefix length \"{p}\" is not a number from 0 to {max}")
        }
        None => "expected an address with a prefix length, like 175.18.0.2/24".into(),
    };
    Err(Error::invalid(format!("malformed CIDR \"{s}\": {hint}")))
}

/// Parses a destination: "default" or a network CIDR (host bits must be zero).
pub fn parse_dest(s: &str, via: Option<IpAddr>) -> Result<IpNet> {
    if s == "default" {
        return Ok(match via {
            Some(IpAddr::V6(_)) => "::/0".parse().unwrap(),
            _ => "0.0.0.0/0".parse().unwrap(),
        });
    }
    let n = parse_cidr(s)?;
    if n.trunc() != n {
        return Err(Error::invalid(format!(
            "route destination \"{s}\" has host bits set; did you mean {}?",
            n.trunc()
        )));
    }
    Ok(n)
}

pub fn parse_ip(s: &str) -> Result<IpAddr> {
    s.parse::<IpAddr>().map_err(|_| Error::invalid(format!("\"{s}\" is not an IP address")))
}

/// The one quoting function for everything printed as a command (`Op::render`,
/// plan, -v, show, rollback messages): a word goes through `shlex::try_quote`,
/// except a plain word that reads the same to every shell wherever it stands
/// (letters, digits and `-_./:@+,%=`, not starting with `%` or `=`, and not
/// `NAME=...`, which a shell would take as an assignment), printed as it is, so
/// `sysctl -w net.ipv4.ip_forward=1` stays readable. A NUL (which no real name or
/// argument can hold; they are refused earlier) is shown as `\0` inside the quotes.
/// A word with a control character other than a line break or a tab (a name found
/// on the system, which its maker chose: an escape sequence would act on the
/// terminal that shows it) is written in bash's `$'...'` form, every such character
/// escaped.
pub fn shell_quote(s: &str) -> String {
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return ansi_c_quote(s);
    }
    let plain = |s: &str| {
        let assignment = s.split_once('=').is_some_and(|(n, _)| {
            let n = n.strip_suffix('+').unwrap_or(n);
            n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        !s.is_empty()
            && !s.starts_with(['%', '='])
            && !assignment
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@+,%=".contains(c))
    };
    if plain(s) {
        return s.to_string();
    }
    match shlex::try_quote(s) {
        Ok(q) => q.into_owned(),
        Err(_) => shell_quote(&s.replace('\0', "\\0")),
    }
}

/// `s` in bash's `$'...'` quoting: backslash and quote escaped, control characters
/// as `\n`, `\t` or `\xHH`, a byte each (a C1 character as its two UTF-8 bytes:
/// bash reads `\uHHHH` only in a UTF-8 locale); a NUL as the two characters `\0`,
/// as `shell_quote` shows it.
fn ansi_c_quote(s: &str) -> String {
    let mut out = String::from("$'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\\\0"),
            c if c.is_control() => {
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Text for a comment line in printed commands (`# ...`): line breaks and other
/// control characters are shown escaped (`\n`), so a comment stays one line.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `n` and the noun, plural unless `n` is 1: "1 change", "3 changes".
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Splits a command line the way a POSIX shell splits words (quotes and
/// backslashes; no expansion). Used for iptables rule specs.
pub fn split_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(Error::invalid(format!("unterminated ' quote in: {s}"))),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err(Error::invalid(format!("trailing backslash in: {s}"))),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(Error::invalid(format!("unterminated \" quote in: {s}"))),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(Error::invalid(format!("trailing backslash in: {s}"))),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

pub fn join_words(words: &[String]) -> String {
    words.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inode number made again is another namespace; a record from before the
    /// instant was kept is compared by inode, as it was written.
    #[test]
    fn a_namespace_is_its_inode_made_at_its_instant() {
        let ours = NsId { dev: 4, ino: 4026532391, ctime_ns: Some(1_796_242_029_074_683_777) };
        assert!(ours.is(&ours));
        assert!(!ours.is(&NsId { ctime_ns: Some(1_796_242_030_622_683_759), ..ours }));
        assert!(!ours.is(&NsId { ino: 4026532392, ..ours }));
        let old = NsId { ctime_ns: None, ..ours };
        assert!(old.is(&ours) && ours.is(&old));
        let read: NsId = serde_json::from_str(r#"{"dev":4,"ino":4026532391}"#).unwrap();
        assert_eq!(read, old);
        assert!(!serde_json::to_string(&old).unwrap().contains("ctime"));
    }

    #[test]
    fn a_route_is_deleted_at_the_metric_the_kernel_gave_it() {
        let r = |dest: &str, metric| Route {
            dest: dest.parse().unwrap(),
            via: None,
            dev: Some("d0".into()),
            metric,
            proto: None,
            scope: None,
            src: None,
        };
        assert_eq!(r("fd00::/64", None).kernel_metric(), 1024);
        assert_eq!(r("fd00::/64", Some(0)).kernel_metric(), 1024);
        assert_eq!(r("fd00::/64", Some(5)).kernel_metric(), 5);
        assert_eq!(r("10.0.0.0/8", None).kernel_metric(), 0);
        assert_eq!(r("10.0.0.0/8", Some(5)).kernel_metric(), 5);
        assert_eq!(r("fd00::/64", None).to_delete().render_args(), "fd00::/64 dev d0 metric 1024");
        assert_eq!(r("fd00::/64", Some(0)).to_delete().render_args(), "fd00::/64 dev d0 metric 1024");
        // IPv4 takes metric 0 in a deletion as "any": named without it.
        assert_eq!(r("10.0.0.0/8", None).to_delete().render_args(), "10.0.0.0/8 dev d0");
        assert_eq!(r("10.0.0.0/8", Some(7)).to_delete().render_args(), "10.0.0.0/8 dev d0 metric 7");
    }

    #[test]
    fn ifname_rules() {
        assert!(check_ifname("veth_ns_1").is_ok());
        assert!(check_ifname("abcdefghijklmno").is_ok());
        let e = check_ifname("abcdefghijklmnop").unwrap_err().to_string();
        assert!(e.contains("16 bytes") && e.contains("at most 15"), "{e}");
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("a b").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a%d").unwrap_err().to_string().contains("'%'"));
        assert!(check_ifname("a\0b").is_err());
        assert!(check_ifname("a\nb").is_err());
        assert!(check_ifname("$(id>x)").is_ok());
        assert!(check_name("namespace", "a\nb").is_err());
        assert!(check_name("topology", "a\0b").is_err());
        assert!(check_words("value", &["a\nb".into()], false).is_err());
        assert!(check_words("argument", &["a\nb".into()], true).is_ok());
        assert!(check_words("argument", &["a\rb".into()], true).is_err());
        assert!(check_words("argument", &["a\0b".into()], true).is_err());
        assert!(check_words("argument", &["a\tb $(x)".into()], true).is_ok());
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("175.18.0.2/24").unwrap().to_string(), "175.18.0.2/24");
        assert_eq!(parse_cidr("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert!(parse_cidr("175.18.0.2/33").unwrap_err().to_string().contains("prefix length"));
        assert!(parse_cidr("175.18.0.300/24").unwrap_err().to_string().contains("not an IP"));
        assert!(parse_cidr("fd00::1/64").is_ok());
        assert!(parse_dest("175.18.0.1/24", None).unwrap_err().to_string().contains("175.18.0.0/24"));
        assert_eq!(parse_dest("default", None).unwrap().to_string(), "0.0.0.0/0");
    }

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"-m comment --comment "a b" -j ACCEPT"#).unwrap(),
            vec!["-m", "comment", "--comment", "a b", "-j", "ACCEPT"]
        );
        assert_eq!(split_words("! -d 127.0.0.0/8").unwrap(), vec!["!", "-d", "127.0.0.0/8"]);
        assert!(split_words("\"open").is_err());
    }

    #[test]
    fn plural_counts() {
        assert_eq!(plural(0, "change"), "0 changes");
        assert_eq!(plural(1, "change"), "1 change");
        assert_eq!(plural(2, "undone change"), "2 undone changes");
        assert_eq!(join_words(&["a b".into(), "c".into()]), "'a b' c");
    }

    #[test]
    fn quoting() {
        for plain in ["net.ipv4.ip_forward=1", "RELATED,ESTABLISHED", "--to=1.2.3.4:80", "a%d", "x+y"] {
            assert_eq!(shell_quote(plain), plain);
        }
        for (w, q) in [("FOO=1", "'FOO=1'"), ("a+=1", "'a+=1'"), ("%1", "'%1'"), ("=ls", "'=ls'"), ("", "''")] {
            assert_eq!(shell_quote(w), q);
        }
        assert_eq!(shell_quote("it's"), "\"it's\"");
        assert!(!shell_quote("a\0b").contains('\0'));
        // Control characters that act on a terminal: bash's $'...' form.
        assert_eq!(shell_quote("a\x1b[2Kb"), "$'a\\x1b[2Kb'");
        assert_eq!(shell_quote("it's\r\u{9b}\\"), "$'it\\'s\\x0d\\xc2\\x9b\\\\'");
        assert_eq!(shell_quote("x\x07\ny"), "$'x\\x07\\ny'");
        assert_eq!(shell_quote("a\nb"), "'a\nb'");
        // bash reads each back as the word it was.
        for w in ["a\x1b[2Kb", "it's\r\u{9b}\\", "x\x07\ny\tz", "\x7f1", "é\u{85}f"] {
            let o = std::process::Command::new("bash")
                .env("LC_ALL", "C")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(w)))
                .output();
            assert_eq!(String::from_utf8_lossy(&o.unwrap().stdout), w, "{}", shell_quote(w));
        }
        assert_eq!(one_line("a\nb\0"), "a\\nb\\u{0}");
    }
}

/// A network namespace's identity: the device and inode of its nsfs file (what
/// `stat -L /run/netns/NAME` shows), and the instant that inode was made (its ctime,
/// in ns). The inode number alone is not enough: the kernel gives a new namespace
/// the lowest number free, so one made after ours was freed often gets ours. The
/// file of a named namespace lives as long as its mount, so its ctime is the
/// namespace's (absent in records from before it was kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<i64>,
}

impl NsId {
    /// The same namespace: the same inode, made at the same instant when both say.
    pub fn is(&self, other: &NsId) -> bool {
        self.same_inode(other)
            && (self.ctime_ns.is_none() || other.ctime_ns.is_none() || self.ctime_ns == other.ctime_ns)
    }

    /// The same inode: how a process's namespace (/proc/PID/ns/net, whose file the
    /// kernel may make anew once no mount holds it) is matched.
    pub fn same_inode(&self, other: &NsId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// A process in a network namespace (`Backend::processes_in`): a namespace deleted
/// by name lives on while a process is in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsProcess {
    pub ns: NsId,
    pub pid: u32,
    /// Its command name, as the kernel keeps it (the process chose it: print it with
    /// `one_line`).
    pub comm: String,
}

/// The environment variable that marks a spawned process as netscript's.
pub const OWNER_ENV: &str = "NETSCRIPT_OWNER";

/// The topology a mark names (`netscript:TOPOLOGY`, `session::mark_for`: a link's or
/// a namespace's lo's alias, a rule's comment), or None when it is not netscript's.
pub fn mark_topology(mark: &str) -> Option<&str> {
    mark.strip_prefix("netscript:")
}

/// The topology of a process mark as netscript makes them
/// (`netscript:TOPOLOGY:PID:SEQ`, `Session::spawn`), read from the right (a topology
/// name may hold ':'). None for anything else: any process can set the variable, and
/// `gc` lists (and prints a command to stop) only what netscript could have made.
pub fn process_mark_topology(mark: &str) -> Option<&str> {
    let mut parts = mark_topology(mark)?.rsplitn(3, ':');
    let (seq, pid, topo) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(seq) && digits(pid) && check_name("topology", topo).is_ok()).then_some(topo)
}

/// The address family a firewall call works on: iptables (IPv4) or ip6tables (IPv6).
/// Journal records without the field are IPv4 (the only family before there was one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[default]
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// For `skip_serializing_if`: IPv4 is the default, left out of the journal.
    pub fn is_ipv4(&self) -> bool {
        *self == Family::Ipv4
    }

    /// The option value a script writes (`{family = "ipv6"}`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// The command a person types: `iptables` or `ip6tables`.
    pub fn cmd(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables",
            Family::Ipv6 => "ip6tables",
        }
    }

    /// The family of an address.
    pub fn of(addr: std::net::IpAddr) -> Family {
        if addr.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 }
    }

    pub fn parse(s: &str) -> Result<Family> {
        match s {
            "ipv4" => Ok(Family::Ipv4),
            "ipv6" => Ok(Family::Ipv6),
            _ => Err(Error::invalid(format!("unknown family {s:?} (\"ipv4\" or \"ipv6\")"))),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
