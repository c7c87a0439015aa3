//! The firewall behind `fw.*`: a trait with one implementation per driver
//! (iptables now; room for native nftables), and `driver` which picks one. Every
//! call names the namespace it acts in; the implementation runs its tool from a
//! thread inside that namespace. Rule syntax is in `rule`.

pub mod iptables;
pub mod rule;

pub use rule::parse_rule;

use std::os::fd::BorrowedFd;

use crate::error::{Error, Result};

/// The family a firewall call works on (defined with the shared vocabulary in model.rs).
pub use crate::model::Family;

pub const TABLES: &[&str] = &["filter", "nat", "mangle", "raw", "security"];

pub fn builtin_chains(table: &str) -> &'static [&'static str] {
    match table {
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        "security" => &["INPUT", "FORWARD", "OUTPUT"],
        _ => &[],
    }
}

pub fn check_table(table: &str) -> Result<()> {
    if TABLES.contains(&table) {
        Ok(())
    } else {
        Err(Error::invalid(format!("unknown table \"{table}\" (one of: {})", TABLES.join(", "))))
    }
}

/// Targets a chain may not be named after (iptables: "chain name may not clash
/// with target name"): the standard verdicts and the target extensions.
const TARGET_NAMES: &[&str] = &[
    "ACCEPT",
    "DROP",
    "QUEUE",
    "RETURN",
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNAT",
    "DSCP",
    "ECN",
    "HMARK",
    "IDLETIMER",
    "LED",
    "LOG",
    "MARK",
    "MASQUERADE",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "RATEEST",
    "REDIRECT",
    "REJECT",
    "SECMARK",
    "SET",
    "SNAT",
    "SNPT",
    "DNPT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
];

/// Checks a chain name as iptables does (1 to 28 bytes, no white space, not starting
/// with '-' or '!', not a target's name), and refuses what its `iptables-restore`
/// input cannot carry (quotes, backslashes) and what has no place in a name (control
/// characters, '!').
pub fn check_chain_name(chain: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("{chain:?} is not a valid chain name: {why}")));
    if chain.is_empty() {
        return bad("it is empty");
    }
    if chain.len() > 28 {
        return bad(&format!("it is {} bytes long; iptables allows at most 28", chain.len()));
    }
    if chain.starts_with('-') {
        return bad("it starts with '-'");
    }
    if let Some(c) = chain.chars().find(|c| c.is_whitespace() || c.is_control() || "!\"'\\".contains(*c)) {
        return bad(&format!("it contains {c:?} (no white space, control characters, '!', quotes or backslashes)"));
    }
    if TARGET_NAMES.contains(&chain) {
        return bad("it is the name of a target");
    }
    Ok(())
}

pub fn check_policy(table: &str, chain: &str, target: &str) -> Result<()> {
    check_table(table)?;
    if !builtin_chains(table).contains(&chain) {
        return Err(Error::invalid(format!(
            "only built-in chains have a policy; {table} has {}",
            builtin_chains(table).join(", ")
        )));
    }
    if target != "ACCEPT" && target != "DROP" {
        return Err(Error::invalid(format!("a policy is ACCEPT or DROP, not \"{target}\"")));
    }
    Ok(())
}

/// Which firewall driver to use (`--iptables`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Choice {
    /// The system's `iptables`, unless only iptables-legacy holds rules.
    #[default]
    Auto,
    Nft,
    Legacy,
}

/// The firewall driver for `choice`. The iptables driver finds its command on first
/// use, so a run that never touches the firewall needs no iptables installed.
pub fn driver(choice: Choice) -> Result<Box<dyn Firewall>> {
    Ok(Box::new(iptables::Iptables::new(choice)))
}

/// A rule where it is looked up (`Firewall::exist_all`): table, chain, rule words.
pub type RuleAt<'a> = (&'a str, &'a str, &'a [String]);

/// One change in a batch (`Firewall::batch`).
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    Policy { table: &'a str, chain: &'a str, target: &'a str },
    Append { table: &'a str, chain: &'a str, rule: &'a [String] },
    Insert { table: &'a str, chain: &'a str, pos: u32, rule: &'a [String] },
    Delete { table: &'a str, chain: &'a str, rule: &'a [String] },
}

impl Change<'_> {
    /// The table the change is in.
    pub fn table(&self) -> &str {
        match self {
            Change::Policy { table, .. }
            | Change::Append { table, .. }
            | Change::Insert { table, .. }
            | Change::Delete { table, .. } => table,
        }
    }
}

/// One firewall driver. `ns` is the namespace to act in (None: netscript's own),
/// `fam` the family (iptables or ip6tables: one driver serves both, so that both
/// use the same variant, nft or legacy). Shared with a thread (`Send + Sync`): a
/// rollback's firewall undos run while the namespaces and links go
/// (`Backend::start_batch`).
pub trait Firewall: Send + Sync {
    /// A short name for messages and `--help` ("iptables-nft", ...).
    fn describe(&self) -> String;
    /// What this driver found to use, once it has looked ("iptables-nft", ...):
    /// recorded in the journal, so that `down`, `ls` and `show` get it back
    /// (`prefer`) without detecting it again.
    fn resolved(&self) -> Option<String> {
        None
    }
    /// The tool a run resolved and recorded (`resolved`), known to work: used from
    /// now on, with no detection and no check, when the choice was auto and nothing
    /// was found yet. A name no driver has, an explicit choice (`--iptables`) or a
    /// tool already found keep what there is.
    fn prefer(&self, _tool: &str) {}
    fn policy(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str) -> Result<String>;
    fn set_policy(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str, target: &str)
    -> Result<()>;
    fn append(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str, rule: &[String]) -> Result<()>;
    fn insert(
        &self,
        ns: Option<BorrowedFd<'_>>,
        fam: Family,
        table: &str,
        chain: &str,
        pos: u32,
        rule: &[String],
    ) -> Result<()>;
    fn delete(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str, rule: &[String]) -> Result<()>;
    fn exists(
        &self,
        ns: Option<BorrowedFd<'_>>,
        fam: Family,
        table: &str,
        chain: &str,
        rule: &[String],
    ) -> Result<bool>;
    fn new_chain(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str) -> Result<()>;
    /// Flush and delete a user chain.
    fn delete_chain(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str) -> Result<()>;
    fn chain_exists(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: &str) -> Result<bool>;
    /// The table (or one chain of it) as `iptables -t TABLE -S [CHAIN]` prints it.
    fn rules(&self, ns: Option<BorrowedFd<'_>>, fam: Family, table: &str, chain: Option<&str>) -> Result<Vec<String>>;
    /// Several tables at once, each as `rules` prints it (the order of the lines
    /// aside: policies and chains, then rules); a table the tool does not list is
    /// empty. The default asks table by table; iptables reads them all with one
    /// `iptables-save`.
    fn tables(&self, ns: Option<BorrowedFd<'_>>, fam: Family, tables: &[&str]) -> Result<Vec<(String, Vec<String>)>> {
        tables.iter().map(|t| Ok((t.to_string(), self.rules(ns, fam, t, None)?))).collect()
    }
    /// Whether each rule is in its chain, as `exists` answers for each (`rules`:
    /// table, chain, rule). The default asks rule by rule; iptables asks the tool
    /// twice for them all.
    fn exist_all(&self, ns: Option<BorrowedFd<'_>>, fam: Family, rules: &[RuleAt<'_>]) -> Result<Vec<bool>> {
        rules.iter().map(|(t, c, r)| self.exists(ns, fam, t, c, r)).collect()
    }
    /// Makes many changes at once, in order, all or nothing per table (iptables:
    /// one `iptables-restore --noflush`, or `ip6tables-restore` for IPv6).
    fn batch(&self, ns: Option<BorrowedFd<'_>>, fam: Family, changes: &[Change<'_>]) -> Result<()>;
}
