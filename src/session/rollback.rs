//! Rollback: undoing journal entries newest first, carrying on past failures, with
//! the shortcuts that make it fast without changing its result (undos that a later
//! deletion makes pointless are skipped; firewall undos go in one batch).

use std::collections::HashSet;
use std::time::Duration;

use super::{RollbackReport, Session, UndoFailure};
use crate::journal::{Entry, State};
use crate::model::NsRef;
use crate::op::Op;

impl Session {
    /// Undoes `todo` (entries, newest first), carrying on past failures.
    ///
    /// Entries whose undo is a single firewall change are collected and sent to the
    /// back end together at the end (one iptables-restore per namespace), in their
    /// order: firewall changes commute with the other kinds (rules name interfaces by
    /// name; no link, address, route or sysctl depends on a rule).
    /// Links that die with a deleted namespace are not deleted one by one (each
    /// deletion waits for the kernel); the ends of those veth pairs that sit outside
    /// are waited for at the end, so that nothing is left when rollback returns.
    pub(super) fn undo_entries(&mut self, todo: &[Entry], mut tick: impl FnMut(usize)) -> RollbackReport {
        let mut report = RollbackReport::default();
        let doomed = Doomed::of(todo);
        let mut batch: Vec<&Entry> = Vec::new();
        let mut dying: Vec<(NsRef, String)> = Vec::new();
        for (i, e) in todo.iter().enumerate() {
            tick(todo.len() - i);
            let undo: Vec<&Op> = e.undo.iter().filter(|u| !doomed.covers(u)).collect();
            if let (Op::AddVeth { ns, peer, peer_ns, .. }, true) = (&e.op, undo.is_empty())
                && doomed.ns(ns)
                && !doomed.ns(peer_ns)
            {
                dying.push((peer_ns.clone(), peer.clone()));
            }
            if undo.is_empty() {
                // Covered by a deletion still to come: nothing to run, nothing to wait for.
                report.changes += 1;
                let _ = self.journal.mark(e.seq, State::Undone);
                continue;
            }
            if undo.len() == 1 && undo[0].is_firewall() && e.undo.len() == 1 {
                batch.push(e);
                continue;
            }
            self.undo_ops(e, &undo, &mut report);
        }
        self.flush_undo_batch(&mut batch, &mut report);
        for (ns, name) in dying {
            self.wait_gone(&ns, &name, &mut report);
        }
        report
    }

    pub(super) fn undo_ops(&mut self, e: &Entry, undo: &[&Op], report: &mut RollbackReport) {
        self.backend.set_origin(&|| format!("undo of: {}", e.op.render()));
        report.changes += 1;
        for (i, u) in undo.iter().enumerate() {
            match self.backend.apply(u) {
                Ok(()) => report.undone.push(u.render()),
                // Already gone counts as undone (CNI's rule: teardown is idempotent).
                // When the main inverse finds nothing (the change never happened, for
                // an entry in flight at a crash), the restorations after it do not apply.
                Err(err) if err.is_gone() => {
                    if i == 0 {
                        break;
                    }
                }
                Err(error) => report.failures.push(UndoFailure { undo: (*u).clone(), error }),
            }
        }
        let _ = self.journal.mark(e.seq, State::Undone);
    }

    pub(super) fn flush_undo_batch(&mut self, batch: &mut Vec<&Entry>, report: &mut RollbackReport) {
        if batch.is_empty() {
            return;
        }
        let ops: Vec<Op> = batch.iter().map(|e| e.undo[0].clone()).collect();
        self.backend.set_origin(&|| "undo of the firewall changes (sent together, at the end)".into());
        let results = self.backend.apply_batch(&ops);
        for ((e, op), r) in batch.drain(..).zip(ops).zip(results) {
            report.changes += 1;
            match r {
                Ok(()) => report.undone.push(op.render()),
                Err(err) if err.is_gone() => {}
                Err(error) => report.failures.push(UndoFailure { undo: op, error }),
            }
            let _ = self.journal.mark(e.seq, State::Undone);
        }
    }

    /// Waits for a link that the kernel removes asynchronously (a veth end whose peer
    /// died with its namespace); deletes it if it lingers.
    pub(super) fn wait_gone(&mut self, ns: &NsRef, name: &str, report: &mut RollbackReport) {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            match self.backend.link(ns, name) {
                Ok(Some(_)) => std::thread::sleep(Duration::from_millis(2)),
                _ => return,
            }
        }
        let op = Op::DelLink { ns: ns.clone(), name: name.to_string() };
        match self.backend.apply(&op) {
            Ok(()) => report.undone.push(op.render()),
            Err(err) if err.is_gone() => {}
            Err(error) => report.failures.push(UndoFailure { undo: op, error }),
        }
    }

    /// Undoes everything still in effect, newest first, carrying on past failures.
    pub fn rollback(&mut self) -> RollbackReport {
        self.undo_last(usize::MAX)
    }

    /// `rollback` with a progress callback (see `undo_last_with`).
    pub fn rollback_with(&mut self, tick: impl FnMut(usize)) -> RollbackReport {
        self.undo_last_with(usize::MAX, tick)
    }

    /// Undoes the newest `n` changes still in effect.
    pub fn undo_last(&mut self, n: usize) -> RollbackReport {
        self.undo_last_with(n, |_| {})
    }

    /// Like `undo_last`, calling `tick(left)` before each entry (the CLI uses it to
    /// say it is finishing when interrupted again).
    pub fn undo_last_with(&mut self, n: usize, tick: impl FnMut(usize)) -> RollbackReport {
        let _ = self.fw_batch_end(false);
        let todo: Vec<Entry> = self.journal.live_newest_first().into_iter().take(n).collect();
        self.undo_entries(&todo, tick)
    }

    /// Undoes the changes made after the journal held `mark` entries (the REPL undoes
    /// one failed line this way).
    pub fn undo_since(&mut self, mark: usize) -> RollbackReport {
        let _ = self.fw_batch_end(false);
        let newer: Vec<Entry> = self.journal.entries()[mark.min(self.journal.entries().len())..]
            .iter()
            .rev()
            .filter(|e| e.live())
            .cloned()
            .collect();
        self.undo_entries(&newer, |_| {})
    }
}

/// The namespaces and links that a rollback will delete anyway. Restoring their
/// attributes first (addresses, up/down, master, routes, rules and sysctls inside a
/// namespace that goes) is work without effect, so such undos are skipped. Deletions,
/// moves back and process stops are never skipped: a veth end outside a deleted
/// namespace would otherwise vanish only later, asynchronously.
#[derive(Default)]
struct Doomed {
    namespaces: HashSet<String>,
    links: HashSet<(NsRef, String)>,
}

impl Doomed {
    /// From the entries a rollback undoes (newest first).
    fn of(todo: &[Entry]) -> Doomed {
        let mut d = Doomed::default();
        for e in todo.iter().rev() {
            match &e.op {
                Op::AddNetns { name } => {
                    d.namespaces.insert(name.clone());
                }
                Op::AddVeth { ns, name, peer, peer_ns } => {
                    d.links.insert((ns.clone(), name.clone()));
                    d.links.insert((peer_ns.clone(), peer.clone()));
                }
                Op::AddBridge { ns, name } => {
                    d.links.insert((ns.clone(), name.clone()));
                }
                Op::MoveLink { ns, name, to } if d.links.contains(&(ns.clone(), name.clone())) => {
                    d.links.insert((to.clone(), name.clone()));
                }
                _ => {}
            }
        }
        d
    }

    fn ns(&self, ns: &NsRef) -> bool {
        ns.name().is_some_and(|n| self.namespaces.contains(n))
    }

    fn link(&self, ns: &NsRef, name: &str) -> bool {
        self.ns(ns) || self.links.contains(&(ns.clone(), name.to_string()))
    }

    fn covers(&self, undo: &Op) -> bool {
        match undo {
            Op::SetUp { ns, name, .. } => self.link(ns, name),
            Op::DelAddr { ns, dev, .. } | Op::SetMaster { ns, dev, .. } | Op::SetMtu { ns, dev, .. } => {
                self.link(ns, dev)
            }
            Op::DelRoute { ns, route } => self.ns(ns) || route.dev.as_deref().is_some_and(|d| self.link(ns, d)),
            Op::AddRoute { ns, .. }
            | Op::SetSysctl { ns, .. }
            | Op::FwPolicy { ns, .. }
            | Op::FwAppend { ns, .. }
            | Op::FwInsert { ns, .. }
            | Op::FwDelete { ns, .. }
            | Op::FwDelChain { ns, .. } => self.ns(ns),
            // A link inside a namespace that goes dies with it.
            Op::DelLink { ns, .. } => self.ns(ns),
            _ => false,
        }
    }
}
