//! The firewall behind `fw.*`: a trait with one implementation per back end
//! (iptables now; room for native nftables). Every call names the namespace it acts
//! in; the implementation runs its tool from a thread inside that namespace.

pub mod iptables;

use std::os::fd::BorrowedFd;

use crate::error::{Error, Result};

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

pub fn check_chain_name(chain: &str) -> Result<()> {
    if chain.is_empty()
        || chain.len() > 28
        || chain.starts_with('-')
        || chain.chars().any(|c| c.is_whitespace() || c == '!')
    {
        return Err(Error::invalid(format!(
            "\"{chain}\" is not a valid chain name (1 to 28 characters, no spaces, not starting with '-')"
        )));
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

/// One firewall back end. `ns` is the namespace to act in (None: netscript's own).
pub trait Firewall {
    /// A short name for messages and `--help` ("iptables-nft", ...).
    fn describe(&self) -> String;
    fn policy(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str) -> Result<String>;
    fn set_policy(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, target: &str) -> Result<()>;
    fn append(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, rule: &[String]) -> Result<()>;
    fn insert(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, pos: u32, rule: &[String]) -> Result<()>;
    fn delete(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, rule: &[String]) -> Result<()>;
    fn exists(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str, rule: &[String]) -> Result<bool>;
    fn new_chain(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str) -> Result<()>;
    /// Flush and delete a user chain.
    fn delete_chain(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str) -> Result<()>;
    fn chain_exists(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: &str) -> Result<bool>;
    /// The table (or one chain of it) as `iptables -t TABLE -S [CHAIN]` prints it.
    fn rules(&self, ns: Option<BorrowedFd<'_>>, table: &str, chain: Option<&str>) -> Result<Vec<String>>;
    /// Applies many changes at once, all or nothing per table (`iptables-restore
    /// --noflush`): `lines` are (table, line in iptables-save syntax), in order.
    fn restore(&self, ns: Option<BorrowedFd<'_>>, lines: &[(String, String)]) -> Result<()>;
}

/// Quotes a rule word for iptables-save / iptables-restore syntax.
pub fn restore_quote(w: &str) -> String {
    if !w.is_empty() && !w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\' || c == '\'') {
        w.to_string()
    } else {
        format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
    }
}
