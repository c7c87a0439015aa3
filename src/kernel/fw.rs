//! Firewall changes on the kernel: one change through the driver, and a run of them
//! through one iptables-restore per family, checked afterwards. A `FwRun` holds what
//! that needs (the driver and the namespaces' fds) and nothing of the `Kernel`, so
//! that a rollback's firewall undos can run on a thread while the session deletes
//! links and waits for the kernel (`Backend::start_batch`).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::firewall::{Change, Family, Firewall, rule};
use crate::model::NsRef;
use crate::op::Op;
use crate::sys::netns;

/// The driver and the namespaces a run of firewall changes acts in.
pub(super) struct FwRun {
    fw: Arc<dyn Firewall>,
    /// The topology's ownership mark (the comment its rules carry).
    mark: String,
    /// None for the namespace netscript runs in.
    fds: HashMap<NsRef, Option<OwnedFd>>,
}

/// The `iptables -S` lines of each table, in one namespace.
type FwSnapshot = HashMap<String, Vec<String>>;

/// An error of `op` as the kernel back end words it: the change's command first.
pub(super) fn named(op: &Op, e: Error) -> Error {
    match e {
        Error::Sys { msg, errno } => Error::Sys { msg: format!("{}: {msg}", op.render()), errno },
        other => other,
    }
}

/// A firewall change as the driver's batch takes it, with its namespace and family.
pub(super) fn fw_change(op: &Op) -> Option<(&NsRef, Family, Change<'_>)> {
    Some(match op {
        Op::FwAppend { ns, family, table, chain, rule } => (ns, *family, Change::Append { table, chain, rule }),
        Op::FwInsert { ns, family, table, chain, pos, rule } => {
            (ns, *family, Change::Insert { table, chain, pos: *pos, rule })
        }
        Op::FwDelete { ns, family, table, chain, rule } => (ns, *family, Change::Delete { table, chain, rule }),
        Op::FwPolicy { ns, family, table, chain, target } => (ns, *family, Change::Policy { table, chain, target }),
        _ => return None,
    })
}

/// The run of `fw_change`s of one namespace that starts at `i`: its namespace and
/// where it ends (None: `ops[i]` is no such change).
pub(super) fn run_of(ops: &[Op], i: usize) -> Option<(&NsRef, usize)> {
    let ns = fw_change(&ops[i])?.0;
    let end = (i + 1..ops.len()).find(|&k| fw_change(&ops[k]).is_none_or(|c| c.0 != ns)).unwrap_or(ops.len());
    Some((ns, end))
}

/// How many rules `chain` of `table` has in a snapshot.
fn count(snap: &FwSnapshot, table: &str, chain: &str) -> i64 {
    snap.get(table).map_or(0, |lines| {
        lines.iter().filter(|l| l.strip_prefix("-A ").and_then(|r| r.split(' ').next()) == Some(chain)).count() as i64
    })
}

impl FwRun {
    /// For changes in `nss`; `known` gives the fd of a namespace already open.
    pub(super) fn new<'a, 'b>(
        fw: Arc<dyn Firewall>,
        mark: &str,
        nss: impl IntoIterator<Item = &'a NsRef>,
        known: impl Fn(&NsRef) -> Option<BorrowedFd<'b>>,
    ) -> Result<FwRun> {
        let mut fds = HashMap::new();
        for ns in nss {
            if fds.contains_key(ns) {
                continue;
            }
            let fd = match ns {
                NsRef::Host => None,
                NsRef::Named(n) => Some(match known(ns) {
                    Some(fd) => fd.try_clone_to_owned().map_err(|e| Error::sys(format!("namespace {n}: {e}"), None))?,
                    None => netns::open(n)?,
                }),
            };
            fds.insert(ns.clone(), fd);
        }
        Ok(FwRun { fw, mark: mark.to_string(), fds })
    }

    /// Runs a driver call in `ns` (one of those the run was made for).
    fn with<T>(&self, ns: &NsRef, f: impl FnOnce(&dyn Firewall, Option<BorrowedFd<'_>>) -> Result<T>) -> Result<T> {
        let fd = self.fds.get(ns).ok_or_else(|| Error::invalid(format!("{ns}: not opened for the firewall")))?;
        f(self.fw.as_ref(), fd.as_ref().map(|f| f.as_fd()))
    }

    /// One firewall change (an `Op::Fw*`); the error is the driver's (see `named`).
    pub(super) fn apply(&self, op: &Op) -> Result<()> {
        match op {
            Op::FwPolicy { ns, family: f, table, chain, target } => {
                self.with(ns, |fw, fd| fw.set_policy(fd, *f, table, chain, target))
            }
            Op::FwAppend { ns, family: f, table, chain, rule } => {
                self.with(ns, |fw, fd| fw.append(fd, *f, table, chain, rule))
            }
            Op::FwInsert { ns, family: f, table, chain, pos, rule } => {
                self.with(ns, |fw, fd| fw.insert(fd, *f, table, chain, *pos, rule))
            }
            // A missing rule or chain comes back as ENOENT ("already gone").
            Op::FwDelete { ns, family: f, table, chain, rule } => {
                self.with(ns, |fw, fd| fw.delete(fd, *f, table, chain, rule))
            }
            Op::FwNewChain { ns, family: f, table, chain } => {
                self.with(ns, |fw, fd| fw.new_chain(fd, *f, table, chain))
            }
            // A chain this topology made is emptied and deleted only when every rule
            // left in it is its own (another's would go with it): its own rules are
            // undone before it, so what is left is someone else's. One that is gone
            // already is undone: the table is listed, not the chain (iptables-nft
            // calls a missing chain "incompatible").
            Op::FwDelChain { ns, family: f, table, chain } => self.with(ns, |fw, fd| {
                let listing = fw.rules(fd, *f, table, None)?;
                if !rule::user_chains(&listing).any(|c| c == chain) {
                    return Err(Error::sys(
                        format!("chain {chain} in table {table} of {ns} is gone"),
                        Some(nix::errno::Errno::ENOENT),
                    ));
                }
                let mine = format!("-A {chain} ");
                if let Some(l) = listing.iter().find(|l| l.starts_with(&mine) && !rule::carries(&self.mark, l)) {
                    // Nothing marks the chain itself: say how to delete it later.
                    let render = op.render();
                    return Err(Error::NotOurs(format!(
                        "chain {chain} in table {table} of {ns} holds a rule that is not this topology's (`{}`): the chain is left in place (once it is empty: {})",
                        crate::model::one_line(l),
                        render.lines().last().unwrap_or_default()
                    )));
                }
                fw.delete_chain(fd, *f, table, chain)
            }),
            other => Err(Error::invalid(format!("{}: not a firewall change", other.render()))),
        }
    }

    /// Firewall changes without stopping at a refusal, each run of one namespace
    /// through `group`: what a rollback's undos need.
    pub(super) fn batch(&self, ops: &[Op]) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(ops.len());
        let mut i = 0;
        while i < ops.len() {
            match run_of(ops, i) {
                Some((_, j)) => {
                    results.extend(self.group(&ops[i..j], false, false));
                    i = j;
                }
                None => {
                    results.push(self.apply(&ops[i]).map_err(|e| named(&ops[i], e)));
                    i += 1;
                }
            }
        }
        results
    }

    /// Consecutive firewall changes of one namespace (all `fw_change`): one restore
    /// per family for all its tables, between one `iptables-save` before and one
    /// after (see `check_batch`). iptables-restore commits table by table, so a
    /// refusal leaves the tables before it committed: those that differ from before
    /// are checked, and the changes of the others are then made one by one, in
    /// order, so each gets its own result. `stop`: after a refused change, the later
    /// ones are not made (`failed`: one before this group was refused).
    pub(super) fn group(&self, ops: &[Op], stop: bool, mut failed: bool) -> Vec<Result<()>> {
        let changes: Vec<(&NsRef, Family, Change<'_>)> = ops.iter().filter_map(fw_change).collect();
        debug_assert_eq!(changes.len(), ops.len());
        let Some(ns) = changes.first().map(|c| c.0.clone()) else { return Vec::new() };
        let mut families: Vec<Family> = Vec::new();
        for (_, f, _) in &changes {
            if !families.contains(f) {
                families.push(*f);
            }
        }
        let mut done: HashMap<usize, Result<()>> = HashMap::new();
        if changes.len() > 1 && !(failed && stop) {
            for fam in families {
                let mine: Vec<usize> = (0..changes.len()).filter(|&k| changes[k].1 == fam).collect();
                let part: Vec<_> = mine.iter().map(|&k| changes[k].2).collect();
                let mut tables: Vec<&str> = Vec::new();
                for c in &part {
                    if !tables.contains(&c.table()) {
                        tables.push(c.table());
                    }
                }
                let Ok(before) = self.snapshot(&ns, fam, &tables) else { break };
                let restored = self.with(&ns, |fw, fd| fw.batch(fd, fam, &part));
                let after = self.snapshot(&ns, fam, &tables);
                let committed: Vec<&str> = match (&restored, &after) {
                    (Ok(()), _) => tables.clone(),
                    (Err(_), Ok(a)) => tables.iter().copied().filter(|t| a.get(*t) != before.get(*t)).collect(),
                    (Err(_), Err(_)) => break,
                };
                let checked: Vec<usize> =
                    mine.into_iter().filter(|&k| committed.contains(&changes[k].2.table())).collect();
                let part_ops: Vec<&Op> = checked.iter().map(|&k| &ops[k]).collect();
                let results = self.check_batch(fam, &part_ops, &before, &after);
                done.extend(checked.into_iter().zip(results));
                if restored.is_err() {
                    break;
                }
            }
        }
        (0..ops.len())
            .map(|k| {
                let r = match done.remove(&k) {
                    Some(r) => r,
                    None if failed && stop => Err(crate::backend::not_made()),
                    None => self.apply(&ops[k]).map_err(|e| named(&ops[k], e)),
                };
                failed |= r.is_err();
                r
            })
            .collect()
    }

    /// The tables of one family, read at once (one `iptables-save`).
    fn snapshot(&self, ns: &NsRef, fam: Family, tables: &[&str]) -> Result<FwSnapshot> {
        Ok(self.with(ns, |fw, fd| fw.tables(fd, fam, tables))?.into_iter().collect())
    }

    /// After an iptables-restore that said it succeeded: is what the batch meant to
    /// do there? (`iptables-restore` exits 0 having done nothing when a line asks
    /// for help, say.) Cheap check first: each chain holds as many rules more (or
    /// fewer) as the batch added (deleted), and each policy is what it set. If not,
    /// each rule is looked up (`iptables -C`): one added that is not there, or one
    /// deleted that still is, is the error of its change, naming the rule.
    fn check_batch(
        &self,
        fam: Family,
        ops: &[&Op],
        before: &FwSnapshot,
        after: &Result<FwSnapshot>,
    ) -> Vec<Result<()>> {
        let mut delta: HashMap<(&str, &str), i64> = HashMap::new();
        let mut policies: HashMap<(&str, &str), &str> = HashMap::new();
        for op in ops {
            match *op {
                Op::FwAppend { table, chain, .. } | Op::FwInsert { table, chain, .. } => {
                    *delta.entry((table, chain)).or_default() += 1
                }
                Op::FwDelete { table, chain, .. } => *delta.entry((table, chain)).or_default() -= 1,
                Op::FwPolicy { table, chain, target, .. } => {
                    policies.insert((table, chain), target);
                }
                _ => {}
            }
        }
        let policy_of = |snap: &FwSnapshot, t: &str, c: &str| {
            snap.get(t).and_then(|ls| crate::firewall::rule::policy_in(ls, c)).map(str::to_string)
        };
        if let Ok(after) = &after
            && delta.iter().all(|((t, c), d)| count(after, t, c) == count(before, t, c) + d)
            && policies.iter().all(|((t, c), p)| policy_of(after, t, c).as_deref() == Some(*p))
        {
            return ops.iter().map(|_| Ok(())).collect();
        }
        let missing = |op: &Op, what: &str| {
            Error::sys(format!("{}: {}-restore reported success, but {what}", op.render(), fam.cmd()), None)
        };
        ops.iter()
            .map(|&op| match op {
                Op::FwAppend { ns, table, chain, rule, .. } | Op::FwInsert { ns, table, chain, rule, .. } => {
                    match self.with(ns, |fw, fd| fw.exists(fd, fam, table, chain, rule)) {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(missing(op, "the rule is not there")),
                        Err(e) => Err(e),
                    }
                }
                Op::FwDelete { ns, table, chain, rule, .. } => {
                    match self.with(ns, |fw, fd| fw.exists(fd, fam, table, chain, rule)) {
                        Ok(false) => Ok(()),
                        Ok(true) => Err(missing(op, "the rule is still there")),
                        Err(e) => Err(e),
                    }
                }
                Op::FwPolicy { table, chain, target, .. } => match &after {
                    Ok(a) if policy_of(a, table, chain).as_deref() != Some(target.as_str()) => {
                        Err(missing(op, "the policy was not set"))
                    }
                    _ => Ok(()),
                },
                _ => Ok(()),
            })
            .collect()
    }
}
