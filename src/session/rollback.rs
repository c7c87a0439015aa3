//! Rollback: undoing journal entries newest first, carrying on past failures, with
//! the shortcuts that make it fast without changing its result (undos that a later
//! deletion makes pointless are skipped; firewall undos go in one batch).

use std::collections::HashSet;
use std::time::Duration;

use super::{RollbackReport, Session, UndoFailure};
use crate::backend::Pending;
use crate::firewall::{Family, rule};
use crate::journal::{Entry, State};
use crate::model::{NsId, NsProcess, NsRef, one_line};
use crate::op::Op;

/// A veth end outside a namespace the rollback deletes, which dies with its peer
/// there (`wait_gone`), the entry of the pair, and that namespace (`of`).
pub(super) struct Dying {
    ns: NsRef,
    name: String,
    seq: u64,
    of: String,
}

impl Session {
    /// Undoes the journal entries at `picked` (positions, newest first), carrying on
    /// past failures.
    ///
    /// Entries whose undo is a single firewall change are collected and sent to the
    /// back end together (one iptables-restore per family and namespace), in their
    /// order, to be made while the rest goes on (first, or right after the last
    /// namespace deletion: see below): firewall changes commute with the other kinds
    /// (rules name interfaces by name; no link, address, route or sysctl depends on
    /// a rule).
    /// Links that die with a deleted namespace are not deleted one by one (each
    /// deletion waits for the kernel); the ends of those veth pairs that sit outside
    /// are waited for, so that nothing is left when rollback returns.
    pub(super) fn undo_entries(&mut self, picked: &[usize], mut tick: impl FnMut(usize)) -> RollbackReport {
        self.forget_known();
        if let Some(h) = self.handover.as_mut() {
            h.begin();
        }
        let mut report = RollbackReport::default();
        // What another topology handed over predates this topology's own changes
        // (the chains its rules were put in): undone after them.
        let (own, adopted): (Vec<usize>, Vec<usize>) =
            picked.iter().partition(|&&p| self.journal.entries()[p].from.is_none());
        let picked = &self.hand_over_chains([own, adopted].concat(), &mut report);
        // Namespaces are deleted as their entries come (newest first), and the back
        // end may hold them (`hold_deletions`): deleted one after another, each
        // waited for the kernel's cleanup of those before it (500 took 70-180 ms,
        // 20-40 ms held); held, their cleanup starts once, for all of them, after the
        // last. The kernel then dismantles them in the background, holding the rtnl
        // lock (a forwarding sysctl write spins on a CPU until it gets it; a link
        // change waits), and a bridge whose ports die that way loses them one by one
        // (cheaply once it is down: `quiesce`, below). So right after the last come
        // (`pulled`): the firewall undos, sent as one batch the back end may make on
        // a thread of its own (`start_undo_batch`; the firewall processes then run
        // while the kernel is busy; during the deletions they slowed them down),
        // their results taken at the end; the link deletions that nothing else
        // orders (`Order::late`), sent before the kernel takes the lock, as
        // `ip -batch` does; then the wait for the veth ends outside; then the older
        // undos, which then find the lock free. Without namespace deletions, the
        // firewall batch starts first.
        let order = Order::of(&picked.iter().map(|&p| &self.journal.entries()[p]).collect::<Vec<_>>());
        let doomed = &order.doomed;
        let mut pulled = vec![false; picked.len()];
        // A forwarding sysctl takes the rtnl lock too (it spins until it gets it):
        // its undo goes first, before the kernel is busy (`Order::forwarding`).
        for &j in &order.forwarding {
            pulled[j] = true;
            if !self.handed_over(picked[j], &mut report) {
                self.undo_at(picked[j], doomed, &mut report);
            }
        }
        // A bridge among the late link deletions goes down now (`Backend::quiesce`,
        // on a thread, done before the first namespace deletion), so that the
        // kernel releases the ports that die with the namespaces cheaply (a bridge
        // that is up re-elects its ports' states for each one that goes).
        for &k in &order.late {
            let del = self.journal.entries()[picked[k]].undo[0].clone();
            let _ = self.backend.quiesce(&del);
        }
        let last_netns = order.last_netns;
        let mut dying: Vec<Dying> = Vec::new();
        // The entries are read in place, not copied (5,000 at N=500 took 6-23 ms
        // before the first deletion): only those whose undo runs alone are cloned.
        let mut batch: Vec<(u64, Op)> = Vec::new();
        for (k, &p) in picked.iter().enumerate() {
            if !pulled[k] && order.fw_only(&self.journal.entries()[p]) {
                pulled[k] = true;
                if !self.handed_over(p, &mut report) {
                    let e = &self.journal.entries()[p];
                    batch.push((e.seq, e.undo[0].clone()));
                }
            }
        }
        // Without namespaces to delete, the firewall batch starts now; with them, once
        // the last is deleted (see above).
        let mut running = last_netns.is_none().then(|| self.start_undo_batch(std::mem::take(&mut batch)));
        self.backend.hold_deletions(last_netns.is_some());
        for (i, &p) in picked.iter().enumerate() {
            tick(picked.len() - i);
            if pulled[i] || self.handed_over(p, &mut report) {
                continue;
            }
            let e = &self.journal.entries()[p];
            if e.undo.iter().all(|u| doomed.covers(u)) {
                // Covered by a deletion still to come: nothing to run. A veth pair
                // whose other end sits outside is undone once that end is gone too
                // (`wait_gone`); anything else is undone now.
                report.changes += 1;
                match &e.op {
                    Op::AddVeth { ns, peer, peer_ns, .. } if doomed.ns(ns) && !doomed.ns(peer_ns) => {
                        let of = ns.name().unwrap_or_default().to_string();
                        dying.push(Dying { ns: peer_ns.clone(), name: peer.clone(), seq: e.seq, of });
                    }
                    _ => {
                        let seq = e.seq;
                        let _ = self.journal.mark_undone(seq, false);
                    }
                }
                continue;
            }
            self.undo_at(p, doomed, &mut report);
            if Some(i) == last_netns {
                self.backend.hold_deletions(false);
                running = Some(self.start_undo_batch(std::mem::take(&mut batch)));
                for &k in &order.late {
                    pulled[k] = true;
                    self.undo_at(picked[k], &Doomed::default(), &mut report);
                }
                let held = self.held_namespaces(doomed, &mut report);
                self.wait_gone(std::mem::take(&mut dying), &held, &mut report);
            }
        }
        self.backend.hold_deletions(false);
        let running = match running {
            Some(r) => r,
            None => self.start_undo_batch(batch),
        };
        self.finish_undo_batch(running, &mut report);
        let _ = self.journal.sync();
        self.wait_gone(dying, &HashSet::new(), &mut report);
        report
    }

    /// The user chains this rollback would delete in the host namespace, and its
    /// rules that jump to them, go to a live topology whose rules use them (`Handover::chains`),
    /// one family at a time: they stay, their entries are done. Returns the
    /// positions left to undo.
    fn hand_over_chains(&mut self, picked: Vec<usize>, report: &mut RollbackReport) -> Vec<usize> {
        let Some(h) = self.handover.as_mut() else { return picked };
        let mut handed: HashSet<usize> = HashSet::new();
        for family in Family::ALL {
            let entries = self.journal.entries();
            let oldest_first =
                || picked.iter().rev().map(|&p| (p, &entries[p])).filter(|(_, e)| e.state == State::Done);
            let mut chains: Vec<(String, String)> = Vec::new();
            let mut at: Vec<usize> = Vec::new();
            for (p, e) in oldest_first() {
                if let [Op::FwDelChain { ns: NsRef::Host, family: f, table, chain }] = e.undo.as_slice()
                    && *f == family
                {
                    chains.push((table.clone(), chain.clone()));
                    at.push(p);
                }
            }
            if chains.is_empty() {
                continue;
            }
            // A jump that matches on a link this rollback deletes (its own network's
            // `-o br_a -j DOCKER`) has no use after it: not offered.
            let links: HashSet<&str> = oldest_first()
                .flat_map(|(_, e)| match &e.op {
                    Op::AddBridge { ns: NsRef::Host, name } | Op::AddLink { ns: NsRef::Host, name, .. } => {
                        vec![name.as_str()]
                    }
                    Op::AddVeth { ns, name, peer_ns, peer, .. } => [(ns, name), (peer_ns, peer)]
                        .into_iter()
                        .filter(|(ns, _)| **ns == NsRef::Host)
                        .map(|(_, n)| n.as_str())
                        .collect(),
                    _ => Vec::new(),
                })
                .collect();
            for (p, e) in oldest_first() {
                if let [Op::FwDelete { ns: NsRef::Host, family: f, table, rule, .. }] = e.undo.as_slice()
                    && *f == family
                    && rule::jumps_into(table, rule, &chains)
                    && !rule::interfaces(rule).iter().any(|i| links.contains(i))
                {
                    at.push(p);
                }
            }
            at.sort_unstable();
            let changes: Vec<(Op, Vec<Op>)> =
                at.iter().map(|&p| (entries[p].op.clone(), entries[p].undo.clone())).collect();
            let seqs: Vec<u64> = at.iter().map(|&p| entries[p].seq).collect();
            let Some(told) = h.chains(family, &chains, &changes) else { continue };
            for seq in seqs {
                report.changes += 1;
                let _ = self.journal.mark_undone(seq, false);
            }
            let _ = self.journal.sync();
            report.handed_over.push(told);
            handed.extend(at);
        }
        picked.into_iter().filter(|p| !handed.contains(p)).collect()
    }

    /// When another live topology changed the same host-wide setting after this one,
    /// it now holds the value to restore: the setting stays, the entry (at `p` in
    /// the journal) is done.
    fn handed_over(&mut self, p: usize, report: &mut RollbackReport) -> bool {
        let e = &self.journal.entries()[p];
        if let ([u], Some(h), State::Done) = (e.undo.as_slice(), self.handover.as_mut(), e.state)
            && let Some(told) = h.setting(u)
        {
            let seq = e.seq;
            report.changes += 1;
            report.handed_over.push(told);
            let _ = self.journal.mark(seq, State::Undone);
            return true;
        }
        false
    }

    /// Runs the undo of the entry at `p` in the journal (`undo_ops`), but for what a
    /// deletion to come covers. The entry is cloned: its undo marks it in the
    /// journal.
    fn undo_at(&mut self, p: usize, doomed: &Doomed, report: &mut RollbackReport) {
        let e = self.journal.entries()[p].clone();
        let undo: Vec<&Op> = e.undo.iter().filter(|u| !doomed.covers(u)).collect();
        self.undo_ops(&e, &undo, report);
    }

    /// Runs the undo of `e` (`undo`: the part not covered by a deletion to come). An
    /// undo that fails keeps its entry pending, so that a later `down` tries again:
    /// when other parts of the undo ran, the entry's undo becomes what failed
    /// (`amend`), so that what was done is not done twice.
    pub(super) fn undo_ops(&mut self, e: &Entry, undo: &[&Op], report: &mut RollbackReport) {
        self.set_origin(&|| format!("undo of: {}", e.op.render()));
        report.changes += 1;
        // An undo of several ops: once its main inverse is made, a crash before the
        // entry is marked must not make the next rollback take the object it finds
        // gone for a change that never happened (and skip the restorations).
        if undo.len() > 1 && !e.undoing {
            let _ = self.journal.undoing(e.seq);
        }
        let mut failed: Vec<Op> = Vec::new();
        for (i, u) in undo.iter().enumerate() {
            // A namespace that still holds a link whose move back failed is not
            // deleted (that would destroy the link): it waits for a later `down`.
            let held = match u {
                Op::DelNetns { name, .. } => report.failures.iter().find_map(|f| match &f.undo {
                    Op::MoveLink { ns: NsRef::Named(n), name: link, .. } if n == name => Some(link.clone()),
                    _ => None,
                }),
                _ => None,
            };
            let result = match held {
                Some(link) => Err(crate::error::Error::sys(
                    format!(
                        "{}: the namespace still holds \"{link}\", whose move back failed; left for a later down",
                        u.render()
                    ),
                    None,
                )),
                None => self.backend.apply(u),
            };
            match result {
                Ok(()) => report.undone.push((*u).clone()),
                // What a restoration would make is there already (it ran before a
                // crash that lost the entry's `undone` line).
                Err(err) if err.errno() == Some(nix::errno::Errno::EEXIST) && restores(u) => {}
                // Already gone counts as undone (CNI's rule: teardown is idempotent).
                // When the main inverse finds nothing (the change never happened, for
                // an entry in flight at a crash), the restorations after it do not apply.
                // (Unless an earlier rollback made the main inverse and crashed:
                // `undoing`.)
                Err(err) if err.is_gone() => {
                    if i == 0 && !e.undoing {
                        break;
                    }
                }
                // Another object took the name of ours: not touched, and the
                // restorations that belong to ours do not apply to it either.
                Err(err) if err.is_not_ours() => {
                    report.left_alone.push(err.to_string());
                    if i == 0 {
                        break;
                    }
                }
                // The restorations apply to the object after its main inverse: when
                // that fails, none runs, and the whole undo stays pending.
                Err(error) => {
                    failed.push((*u).clone());
                    report.failures.push(UndoFailure { undo: (*u).clone(), error });
                    if i == 0 {
                        failed = undo.iter().map(|u| (*u).clone()).collect();
                        break;
                    }
                }
            }
        }
        if failed.is_empty() {
            let _ = self.journal.mark_undone(e.seq, undo.iter().any(|u| !idempotent(u)));
            return;
        }
        report.pending += 1;
        if failed.len() < undo.len() {
            let _ = self.journal.amend(e.seq, None, failed);
        }
    }

    /// Sends the firewall undos of `batch` to the back end, which may make them while
    /// the rollback goes on (`Backend::start_batch`: they commute with the other
    /// kinds); `finish_undo_batch` takes their results.
    fn start_undo_batch(&mut self, mut batch: Vec<(u64, Op)>) -> RunningBatch {
        // Deleting rules by their spec gives the same result in any order, and
        // iptables-nft looks for each from the start of its chain: oldest first is
        // linear, newest first quadratic. Runs of deletions go oldest first; other
        // firewall undos (policies, re-insertions) keep their place.
        let mut i = 0;
        while i < batch.len() {
            let j = (i..batch.len()).find(|&k| !matches!(batch[k].1, Op::FwDelete { .. })).unwrap_or(batch.len());
            batch[i..j].reverse();
            i = j + 1;
        }
        let (seqs, ops): (Vec<u64>, Vec<Op>) = batch.into_iter().unzip();
        let pending = if ops.is_empty() {
            Pending::Done(Vec::new())
        } else {
            self.set_origin(&|| "undo of the firewall changes (sent together)".into());
            self.backend.start_batch(ops.clone())
        };
        RunningBatch { seqs, ops, pending }
    }

    /// Waits for the undos `start_undo_batch` sent and marks their entries: undone,
    /// or pending still when refused (a later `down` tries again).
    fn finish_undo_batch(&mut self, r: RunningBatch, report: &mut RollbackReport) {
        if r.seqs.is_empty() {
            return;
        }
        let results = r.pending.wait();
        for ((seq, op), r) in r.seqs.into_iter().zip(r.ops).zip(results) {
            report.changes += 1;
            let durable = !idempotent(&op);
            match r {
                Ok(()) => report.undone.push(op),
                Err(err) if err.is_gone() => {}
                Err(err) if err.is_not_ours() => report.left_alone.push(err.to_string()),
                Err(error) => {
                    report.failures.push(UndoFailure { undo: op, error });
                    report.pending += 1;
                    continue;
                }
            }
            let _ = self.journal.mark_undone(seq, durable);
        }
        // One fsync for the whole batch (most of its undos are deletions and
        // policies, which can run again after a crash).
        let _ = self.journal.sync();
    }

    /// The namespaces this rollback deleted that live on because a process is still
    /// in them (a shell the user left there): the kernel keeps a namespace while a
    /// process is in it, with its links. Found by the identity each namespace's
    /// creation recorded, among the namespaces of the processes (one look at them
    /// all), and each named in the report with its processes. A namespace still
    /// there by name is not among them (its deletion failed, and says so).
    fn held_namespaces(&mut self, doomed: &Doomed, report: &mut RollbackReport) -> HashSet<String> {
        let ids: Vec<NsId> = doomed.ids.iter().map(|(_, id)| *id).collect();
        let procs = self.backend.processes_in(&ids);
        let mut held = HashSet::new();
        for (name, id) in &doomed.ids {
            let inside: Vec<&NsProcess> = procs.iter().filter(|p| p.ns.same_inode(id)).collect();
            if inside.is_empty() || self.backend.netns_id(name).is_some_and(|now| now.is(id)) {
                continue;
            }
            report.held.push(held_message(name, &inside));
            held.insert(name.clone());
        }
        held
    }

    /// Waits for the links that the kernel removes asynchronously (veth ends whose
    /// peers died with their namespace); deletes those that linger, at once for a
    /// namespace in `held` (a process keeps it: its ends would not go), after 10 s
    /// for the others (whatever else holds a namespace). One question per link to
    /// the back end, which answers without waiting for the kernel's network lock
    /// (`link_there`): the kernel removes them while it holds that lock. A pair's
    /// entry is undone once its end is gone; when the end lingers and cannot be
    /// deleted, the entry's undo becomes that deletion, pending, for a later `down`.
    pub(super) fn wait_gone(&mut self, dying: Vec<Dying>, held: &HashSet<String>, report: &mut RollbackReport) {
        let (now, mut dying): (Vec<Dying>, Vec<Dying>) = dying.into_iter().partition(|d| held.contains(&d.of));
        for d in now {
            self.delete_lingering(d, report);
        }
        let t0 = std::time::Instant::now();
        let mut gone = 0;
        let mut asked = false;
        while gone < dying.len() && t0.elapsed() < Duration::from_secs(10) {
            // A second on, the few ends still there are asked whose they are (the
            // name alone cannot tell: a link someone made under the name of ours
            // after ours went never goes): those not marked for this topology are not
            // ours, and ours went with its namespace. Asked once, and only for a few:
            // each question waits for the lock the kernel's cleanup holds.
            if !asked && t0.elapsed() >= Duration::from_secs(1) && dying.len() - gone <= FEW {
                asked = true;
                let mark = self.mark();
                let (theirs, ours): (Vec<Dying>, Vec<Dying>) = dying.drain(gone..).partition(|d| {
                    matches!(self.backend.link(&d.ns, &d.name), Ok(Some(l)) if l.alias.as_deref() != Some(mark.as_str()))
                });
                dying.extend(ours);
                for d in theirs {
                    report.left_alone.push(format!(
                        "\"{}\" in {} is not the link this topology created (it is not marked {mark}); left alone",
                        d.name, d.ns
                    ));
                    let _ = self.journal.mark_undone(d.seq, false);
                }
                continue;
            }
            let d = &dying[gone];
            // A namespace that cannot be asked about holds no links of ours.
            if self.backend.link_there(&d.ns, &d.name).unwrap_or(false) {
                std::thread::sleep(Duration::from_millis(2));
            } else {
                let _ = self.journal.mark_undone(d.seq, false);
                gone += 1;
            }
        }
        let late: Vec<Dying> = dying.drain(gone..).collect();
        let mut named: Vec<&str> = Vec::new();
        for d in &late {
            if !named.contains(&d.of.as_str()) {
                named.push(&d.of);
                let ends: Vec<&str> = late.iter().filter(|e| e.of == d.of).map(|e| e.name.as_str()).collect();
                report.held.push(late_message(&d.of, &ends));
            }
        }
        for d in late {
            self.delete_lingering(d, report);
        }
    }

    /// Deletes a veth end that outlived its peer's namespace (`wait_gone`) and
    /// undoes the pair's entry, or leaves that deletion pending when it fails.
    fn delete_lingering(&mut self, d: Dying, report: &mut RollbackReport) {
        let op = Op::del_link(&d.ns, &d.name);
        match self.backend.apply(&op) {
            Ok(()) => report.undone.push(op),
            Err(err) if err.is_gone() => {}
            Err(err) if err.is_not_ours() => report.left_alone.push(err.to_string()),
            Err(error) => {
                let _ = self.journal.amend(d.seq, None, vec![op.clone()]);
                report.failures.push(UndoFailure { undo: op, error });
                report.pending += 1;
                return;
            }
        }
        let _ = self.journal.mark_undone(d.seq, false);
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
        // The queued changes came before whatever ended the run: made, as they
        // would have been one by one, then undone with the rest.
        self.fw_batch = None;
        let _ = self.settle();
        let picked: Vec<usize> = self.journal.live_positions_newest_first().take(n).collect();
        self.undo_entries(&picked, tick)
    }

    /// Undoes the changes made after the journal held `mark` entries (the REPL undoes
    /// one failed line this way).
    pub fn undo_since(&mut self, mark: usize) -> RollbackReport {
        // The queued changes came before whatever ended the run: made, as they
        // would have been one by one, then undone with the rest.
        self.fw_batch = None;
        let _ = self.settle();
        let picked: Vec<usize> = self.journal.live_positions_newest_first().take_while(|&p| p >= mark).collect();
        self.undo_entries(&picked, |_| {})
    }
}

/// IPv4 forwarding: its write takes the rtnl lock and copies the value to every link
/// (and nothing else; IPv6 forwarding also changes what the kernel does with
/// addresses and groups, so its undo keeps its place).
const FORWARDING: &[&str] = &["net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"];

/// What a rollback decides before it changes anything, read from its entries in
/// place (newest first).
struct Order {
    doomed: Doomed,
    /// The last namespace deletion (the oldest entry with one).
    last_netns: Option<usize>,
    /// Links some entry moves (their deletion keeps its place).
    moved: HashSet<String>,
    /// Undos of a forwarding sysctl that go first, before the kernel is busy: those
    /// outside the namespaces that go, with nothing newer in the rollback that could
    /// depend on their place (no newer sysctl or move in their namespace: a newer
    /// per-link value would otherwise be overwritten by the copy to every link).
    /// Only with namespace deletions (the busy kernel they avoid).
    forwarding: Vec<usize>,
    /// The link deletions pulled to right after the last namespace deletion: a
    /// single `DelLink` undo, of a link in a namespace that stays and never moved
    /// (what the other undos do to such a link is skipped or finds it gone, as with
    /// any deletion).
    late: Vec<usize>,
}

impl Order {
    fn of(todo: &[&Entry]) -> Order {
        let doomed = Doomed::of(todo);
        let last_netns = todo.iter().rposition(|e| e.undo.iter().any(|u| matches!(u, Op::DelNetns { .. })));
        let moved = todo
            .iter()
            .flat_map(|e| std::iter::once(&e.op).chain(&e.undo))
            .filter_map(|o| match o {
                Op::MoveLink { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let mut order = Order { doomed, last_netns, moved, forwarding: Vec::new(), late: Vec::new() };
        let Some(last) = last_netns else { return order };
        for (j, e) in todo.iter().enumerate() {
            let ([Op::SetSysctl { ns, key, .. }, ..], false) = (e.undo.as_slice(), order.doomed.ns(&e.op.ns())) else {
                continue;
            };
            let newer_touch = todo[..j].iter().any(|n| match &n.op {
                Op::SetSysctl { ns: m, .. } => m == ns,
                Op::MoveLink { ns: a, to: b, .. } => a == ns || b == ns,
                _ => false,
            });
            if FORWARDING.contains(&key.as_str()) && !newer_touch {
                order.forwarding.push(j);
            }
        }
        order.late = (last + 1..todo.len()).filter(|&k| order.link_del(todo[k])).collect();
        order
    }

    /// A single link deletion that nothing else orders.
    fn link_del(&self, e: &Entry) -> bool {
        matches!(e.undo.as_slice(), [u @ Op::DelLink { name, .. }] if !self.doomed.covers(u) && !self.moved.contains(name))
    }

    /// A single firewall change, not inside a namespace that goes.
    fn fw_only(&self, e: &Entry) -> bool {
        matches!(e.undo.as_slice(), [u] if u.is_firewall() && !self.doomed.covers(u))
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
    /// The namespaces' identities, as their creations recorded them.
    ids: Vec<(String, NsId)>,
    links: HashSet<(NsRef, String)>,
}

impl Doomed {
    /// From the entries a rollback undoes (newest first).
    fn of(todo: &[&Entry]) -> Doomed {
        let mut d = Doomed::default();
        for e in todo.iter().rev() {
            match &e.op {
                Op::AddNetns { name } => {
                    d.namespaces.insert(name.clone());
                    if let [Op::DelNetns { id: Some(id), .. }] = e.undo.as_slice() {
                        d.ids.push((name.clone(), *id));
                    }
                }
                Op::AddVeth { ns, name, peer, peer_ns, .. } => {
                    d.links.insert((ns.clone(), name.clone()));
                    d.links.insert((peer_ns.clone(), peer.clone()));
                }
                Op::AddBridge { ns, name } | Op::AddLink { ns, name, .. } => {
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
            Op::DelAddr { ns, dev, .. }
            | Op::SetMaster { ns, dev, .. }
            | Op::SetMtu { ns, dev, .. }
            | Op::SetBridgePort { ns, dev, .. }
            | Op::SetQdisc { ns, dev, .. }
            | Op::DelQdisc { ns, dev, .. } => self.link(ns, dev),
            Op::SetBridge { ns, name, .. } => self.link(ns, name),
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

/// What the report says of a deleted namespace that processes keep alive.
fn held_message(name: &str, inside: &[&NsProcess]) -> String {
    const SHOWN: usize = 5;
    let mut who: Vec<String> =
        inside.iter().take(SHOWN).map(|p| format!("{} ({})", p.pid, one_line(&p.comm))).collect();
    if inside.len() > SHOWN {
        who.push(format!("{} more", inside.len() - SHOWN));
    }
    let (noun, verb) = if inside.len() == 1 { ("process", "is") } else { ("processes", "are") };
    format!(
        "namespace {name} is deleted but lives on while {noun} {} {verb} in it: the kernel keeps a namespace that a process is in (its veth pairs to the outside are deleted)",
        who.join(", ")
    )
}

/// How many veth ends still there a second after their namespaces' deletion
/// `wait_gone` asks whose they are (more: the kernel's cleanup is still busy).
const FEW: usize = 16;

/// What the report says of a deleted namespace whose veth ends outside were still
/// there after the wait, with no process in it.
fn late_message(name: &str, ends: &[&str]) -> String {
    format!(
        "namespace {name} was not gone 10 s after its deletion, with no process in it (an open file or a mount of it keeps it): its veth {} outside, {}, {} deleted",
        if ends.len() == 1 { "end" } else { "ends" },
        ends.join(", "),
        if ends.len() == 1 { "is" } else { "are" },
    )
}

/// Whether an undo can run a second time without harm (after a crash that lost its
/// `undone` line): a deletion finds nothing, a value or state is set again. Adding an
/// address, a route or a rule again would fail or duplicate it.
fn idempotent(op: &Op) -> bool {
    !restores(op) && !matches!(op, Op::FwInsert { .. } | Op::FwAppend { .. })
}

/// A batch of firewall undos sent to the back end (`start_undo_batch`): the entries'
/// sequence numbers, their undos in the order sent, and the results to come.
struct RunningBatch {
    seqs: Vec<u64>,
    ops: Vec<Op>,
    pending: Pending,
}

/// An undo that puts back an address or a route (the kernel answers EEXIST when it
/// is there already).
fn restores(op: &Op) -> bool {
    matches!(op, Op::AddAddr { .. } | Op::AddRoute { .. })
}

/// Rollback's shortcuts, checked without root against the plan back end (a model of
/// the system that records every command it is given, in order).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, Meta};
    use crate::model::Route;
    use crate::plan::{Plan, RecordingRef, Step};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    const H: NsRef = NsRef::Host;

    fn session() -> (Session, RecordingRef) {
        let p = Plan::new("netscript:t");
        let rec = p.recording();
        let recorder = p.recorder();
        let j = Journal::in_memory(Meta { name: "t".into(), ..Default::default() });
        let mut s = Session::new(Box::new(p), j, "t", Arc::new(AtomicBool::new(false)));
        s.observe(recorder);
        (s, rec)
    }

    fn route_dev(dest: &str, dev: &str) -> Route {
        Route {
            dest: dest.parse().unwrap(),
            via: None,
            dev: Some(dev.into()),
            metric: None,
            proto: None,
            scope: None,
            src: None,
        }
    }

    /// What the back end was given since the recording was cleared: (origin, command).
    fn given(rec: &RecordingRef) -> Vec<(String, String)> {
        rec.borrow()
            .steps
            .iter()
            .filter_map(|(o, s)| match s {
                Step::Change(c) => Some((o.clone(), c.clone())),
                _ => None,
            })
            .collect()
    }

    /// A complete rollback, and the commands it gave the back end, in order.
    fn rolled_back(s: &mut Session, rec: &RecordingRef) -> (RollbackReport, Vec<String>) {
        rec.borrow_mut().steps.clear();
        let report = s.rollback();
        assert!(report.complete(), "{:?}", report.failures);
        (report, given(rec).into_iter().map(|(_, c)| c).collect())
    }

    /// A namespace with a veth made inside it (its peer outside, on a bridge), and
    /// attributes, routes, sysctls and rules on both sides.
    fn build(s: &mut Session) {
        let ns1 = s.netns_add("ns1").unwrap();
        s.veth_add("c0", "h0", &ns1, &H, None).unwrap();
        s.link_addr(&ns1, "c0", "10.0.0.2/24".parse().unwrap()).unwrap();
        s.link_set_up(&ns1, "c0", true).unwrap();
        s.sysctl_set(&ns1, "net.ipv4.ip_forward", "1").unwrap();
        s.fw_append(&ns1, Family::Ipv4, "filter", "FORWARD", "-j ACCEPT").unwrap();
        s.bridge_add("br0", &H).unwrap();
        s.link_master(&H, "h0", Some("br0")).unwrap();
        s.link_addr(&H, "br0", "10.0.0.1/24".parse().unwrap()).unwrap();
        s.link_set_up(&H, "br0", true).unwrap();
        s.link_set_up(&H, "h0", true).unwrap();
        s.route_add(&H, route_dev("10.9.0.0/16", "br0")).unwrap();
        s.sysctl_set(&H, "net.ipv4.ip_forward", "1").unwrap();
        s.fw_policy(&H, Family::Ipv4, "filter", "FORWARD", "DROP").unwrap();
        s.fw_append(&H, Family::Ipv4, "nat", "POSTROUTING", "-s 10.0.0.0/24 -j MASQUERADE").unwrap();
    }

    #[test]
    fn undos_a_later_deletion_makes_pointless_are_skipped() {
        let (mut s, rec) = session();
        build(&mut s);
        let made = s.journal().live_count();
        assert_eq!(made, 15);
        let (report, cmds) = rolled_back(&mut s, &rec);
        // Newest first: the host sysctl; the route, up/down, address and master of
        // br0 and h0 (deleted below) are skipped, as is everything inside ns1 (its
        // rule, sysctl, c0's address and state, c0 itself: it dies with ns1, and so
        // does its peer h0). Deletions are kept. The forwarding sysctl goes first;
        // the firewall goes together, in order, right after the last namespace
        // deletion (see `undo_entries`).
        assert_eq!(
            cmds,
            vec![
                "sysctl -w net.ipv4.ip_forward=0",
                "ip link del br0",
                "ip netns del ns1",
                "iptables -t nat -D POSTROUTING -m comment --comment netscript:t -s 10.0.0.0/24 -j MASQUERADE",
                "iptables -t filter -P FORWARD ACCEPT",
            ]
        );
        // Every entry counts as undone, skipped ones too, and the report lists what ran
        // (the firewall's once its results are in, at the end).
        assert_eq!(report.changes, made);
        let (mut undone, mut ran) = (report.undone.iter().map(Op::render).collect::<Vec<_>>(), cmds.clone());
        undone.sort();
        ran.sort();
        assert_eq!(undone, ran);
        assert_eq!(s.journal().live_count(), 0);
        // The model is back where it started.
        let b = s.backend();
        assert!(b.netns_list().is_empty());
        let names: Vec<String> = b.links(&H).unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, vec!["lo"]);
        assert_eq!(b.sysctl_get(&H, "net.ipv4.ip_forward").unwrap(), "0");
        assert_eq!(b.fw_policy(&H, Family::Ipv4, "filter", "FORWARD").unwrap(), "ACCEPT");
        assert_eq!(b.fw_rules(&H, Family::Ipv4, "nat", Some("POSTROUTING")).unwrap(), vec!["-P POSTROUTING ACCEPT"]);
    }

    #[test]
    fn a_partial_undo_skips_nothing_its_own_entries_do_not_delete() {
        let (mut s, rec) = session();
        s.bridge_add("br0", &H).unwrap();
        s.link_addr(&H, "br0", "10.0.0.1/24".parse().unwrap()).unwrap();
        s.link_set_up(&H, "br0", true).unwrap();
        rec.borrow_mut().steps.clear();
        // The bridge stays (its entry is not undone), so its attributes are restored.
        let report = s.undo_last(2);
        assert!(report.complete());
        assert_eq!(report.changes, 2);
        let cmds: Vec<String> = given(&rec).into_iter().map(|(_, c)| c).collect();
        assert_eq!(cmds, vec!["ip link set br0 down", "ip addr del 10.0.0.1/24 dev br0"]);
        let br = s.link(&H, "br0").unwrap();
        assert!(!br.up && br.addrs.is_empty());
        assert_eq!(s.journal().live_count(), 1);
    }

    #[test]
    /// The firewall undos together, first (the kernel back end makes them on a thread
    /// while the rest goes on), newest first, except that a run of rule deletions
    /// goes oldest first (the same result in any order; linear for iptables-nft).
    fn firewall_undos_go_together_first_newest_first() {
        let (mut s, rec) = session();
        s.fw_chain(&H, Family::Ipv4, "filter", "MINE").unwrap();
        s.bridge_add("b1", &H).unwrap();
        s.fw_append(&H, Family::Ipv4, "filter", "MINE", "-j RETURN").unwrap();
        s.sysctl_set(&H, "net.ipv4.ip_forward", "1").unwrap();
        s.fw_insert(&H, Family::Ipv4, "filter", "INPUT", "-p tcp --dport 22 -j ACCEPT", 1).unwrap();
        s.fw_policy(&H, Family::Ipv4, "filter", "FORWARD", "DROP").unwrap();
        s.bridge_add("b2", &H).unwrap();
        rec.borrow_mut().steps.clear();
        let report = s.rollback();
        assert!(report.complete(), "{:?}", report.failures);
        assert_eq!(report.changes, 7);
        let batch = "undo of the firewall changes (sent together)";
        let got = given(&rec);
        let shown: Vec<(bool, &str)> = got.iter().map(|(o, c)| (o == batch, c.as_str())).collect();
        assert_eq!(
            shown,
            vec![
                (true, "iptables -t filter -P FORWARD ACCEPT"),
                (true, "iptables -t filter -D MINE -m comment --comment netscript:t -j RETURN"),
                (true, "iptables -t filter -D INPUT -m comment --comment netscript:t -p tcp --dport 22 -j ACCEPT"),
                (true, "iptables -t filter -F MINE\niptables -t filter -X MINE"),
                (false, "ip link del b2"),
                (false, "sysctl -w net.ipv4.ip_forward=0"),
                (false, "ip link del b1"),
            ]
        );
        // The others say which change each undoes.
        assert_eq!(got[4].0, "undo of: ip link add b2 type bridge");
    }

    /// With namespaces: the IPv4 forwarding undo goes first; right after the last
    /// namespace deletion come the firewall batch (started: the kernel back end makes
    /// it on a thread), the link deletions nothing else orders, then the older undos
    /// (the kernel dismantles namespaces in the background, holding the lock that
    /// link and forwarding changes wait for).
    #[test]
    fn link_deletions_go_right_after_the_last_namespace_deletion() {
        let (mut s, rec) = session();
        s.bridge_add("br0", &H).unwrap();
        s.sysctl_set(&H, "net.ipv4.ip_forward", "1").unwrap();
        s.fw_policy(&H, Family::Ipv4, "filter", "FORWARD", "DROP").unwrap();
        let ns1 = s.netns_add("ns1").unwrap();
        s.fw_append(&H, Family::Ipv4, "nat", "PREROUTING", "-p tcp --dport 8001 -j DNAT --to-destination 10.0.0.2:80")
            .unwrap();
        s.veth_add("eth0", "vh1", &ns1, &H, None).unwrap();
        s.link_master(&H, "vh1", Some("br0")).unwrap();
        let (_, cmds) = rolled_back(&mut s, &rec);
        assert_eq!(
            cmds,
            vec![
                "sysctl -w net.ipv4.ip_forward=0",
                "ip netns del ns1",
                "iptables -t nat -D PREROUTING -m comment --comment netscript:t -p tcp --dport 8001 -j DNAT --to-destination 10.0.0.2:80",
                "iptables -t filter -P FORWARD ACCEPT",
                "ip link del br0",
            ]
        );
        assert_eq!(s.journal().live_count(), 0);

        // A newer sysctl in the same namespace: the forwarding undo keeps its place
        // (its copy to every link would overwrite the newer one's restored value).
        s.sysctl_set(&H, "net.ipv4.ip_forward", "1").unwrap();
        s.sysctl_set(&H, "net.ipv4.conf.lo.forwarding", "0").unwrap();
        s.netns_add("ns2").unwrap();
        let (_, cmds) = rolled_back(&mut s, &rec);
        assert_eq!(
            cmds,
            vec!["ip netns del ns2", "sysctl -w net.ipv4.conf.lo.forwarding=1", "sysctl -w net.ipv4.ip_forward=0",]
        );
    }

    #[test]
    fn when_the_main_inverse_finds_nothing_the_restorations_after_it_are_skipped() {
        let (mut s, rec) = session();
        s.bridge_add("br0", &H).unwrap();
        let ns2 = s.netns_add("ns2").unwrap();
        rec.borrow_mut().steps.clear();
        // In flight at a crash, never made: moving a link that is not there.
        let e = Entry {
            seq: 99,
            op: Op::MoveLink { ns: H, name: "ghost".into(), to: ns2.clone() },
            undo: vec![
                Op::MoveLink { ns: ns2.clone(), name: "ghost".into(), to: H },
                Op::SetUp { ns: H, name: "br0".into(), up: true },
            ],
            state: State::InFlight,
            note: None,
            from: None,
            undoing: false,
        };
        let mut report = RollbackReport::default();
        s.undo_ops(&e, &e.undo.iter().collect::<Vec<_>>(), &mut report);
        assert!(report.complete() && report.undone.is_empty(), "{report:?}");
        assert!(given(&rec).is_empty());
        assert!(!s.link(&H, "br0").unwrap().up);
        // A later restoration that finds nothing does not stop the ones after it.
        let e = Entry {
            seq: 100,
            op: Op::SetUp { ns: H, name: "br0".into(), up: false },
            undo: vec![
                Op::SetUp { ns: H, name: "br0".into(), up: true },
                Op::DelAddr { ns: H, dev: "br0".into(), addr: "10.0.0.1/24".parse().unwrap(), proto: None },
                Op::SetMtu { ns: H, dev: "br0".into(), mtu: 1400 },
            ],
            state: State::InFlight,
            note: None,
            from: None,
            undoing: false,
        };
        s.undo_ops(&e, &e.undo.iter().collect::<Vec<_>>(), &mut report);
        assert!(report.complete(), "{report:?}");
        assert_eq!(
            report.undone.iter().map(Op::render).collect::<Vec<_>>(),
            vec!["ip link set br0 up", "ip link set br0 mtu 1400"]
        );
        assert_eq!(s.link(&H, "br0").unwrap().mtu, 1400);
    }

    /// A `Handover` that takes every offer of chains (and keeps it) and no setting.
    struct Taker(std::rc::Rc<std::cell::RefCell<Vec<Offer>>>);

    /// An offer as `Taker` keeps it: the family, the chains, the changes rendered.
    type Offer = (Family, Vec<(String, String)>, Vec<String>);

    impl super::super::Handover for Taker {
        fn setting(&mut self, _: &Op) -> Option<String> {
            None
        }
        fn chains(&mut self, family: Family, chains: &[(String, String)], changes: &[(Op, Vec<Op>)]) -> Option<String> {
            self.0.borrow_mut().push((family, chains.to_vec(), changes.iter().map(|(op, _)| op.render()).collect()));
            Some("taken".into())
        }
    }

    #[test]
    fn chains_made_in_the_host_are_offered_with_the_rules_that_jump_to_them() {
        let (mut s, rec) = session();
        let ns1 = s.netns_add("ns1").unwrap();
        s.fw_chain(&H, Family::Ipv4, "filter", "SHARED").unwrap();
        s.fw_chain(&ns1, Family::Ipv4, "filter", "INNER").unwrap();
        s.fw_chain(&H, Family::Ipv6, "filter", "SHARED6").unwrap();
        s.fw_insert(&H, Family::Ipv4, "filter", "FORWARD", "-j SHARED", 1).unwrap();
        s.fw_append(&H, Family::Ipv4, "filter", "SHARED", "-i br0 -j ACCEPT").unwrap();
        s.fw_append(&H, Family::Ipv4, "filter", "FORWARD", "-o br0 -j ACCEPT").unwrap();
        s.fw_append(&ns1, Family::Ipv4, "filter", "FORWARD", "-j INNER").unwrap();
        // A jump that matches on a link the rollback deletes has no use after it.
        s.bridge_add("br1", &H).unwrap();
        s.fw_append(&H, Family::Ipv4, "filter", "FORWARD", "-o br1 -j SHARED").unwrap();
        s.veth_add("va", "vb", &H, &H, None).unwrap();
        s.fw_append(&H, Family::Ipv4, "filter", "FORWARD", "-i vb -j SHARED").unwrap();
        let offers = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        s.set_handover(Box::new(Taker(offers.clone())));
        let (report, cmds) = rolled_back(&mut s, &rec);
        assert_eq!(report.handed_over, vec!["taken", "taken"]);
        let offers = offers.borrow();
        assert_eq!(offers.len(), 2, "one offer per family: {offers:?}");
        let (fam, chains, changes) = &offers[0];
        assert_eq!((*fam, chains.as_slice()), (Family::Ipv4, &[("filter".to_string(), "SHARED".to_string())][..]));
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].ends_with("-N SHARED") && changes[1].ends_with("-j SHARED"), "oldest first: {changes:?}");
        assert_eq!(offers[1].0, Family::Ipv6);
        // What was taken stays; the rest is undone here (the rule in the chain, the
        // other rule, everything in ns1).
        assert!(!cmds.iter().any(|c| c.contains("-X SHARED") || c.ends_with("netscript:t -j SHARED")), "{cmds:?}");
        assert!(cmds.iter().any(|c| c.contains("-D SHARED") && c.ends_with("-i br0 -j ACCEPT")), "{cmds:?}");
        assert!(cmds.iter().any(|c| c.contains("-D FORWARD") && c.ends_with("-o br0 -j ACCEPT")), "{cmds:?}");
        assert!(cmds.iter().any(|c| c.contains("-D FORWARD") && c.ends_with("-o br1 -j SHARED")), "{cmds:?}");
        assert!(cmds.iter().any(|c| c.contains("-D FORWARD") && c.ends_with("-i vb -j SHARED")), "{cmds:?}");
        assert_eq!(s.journal().live_count(), 0);
    }

    #[test]
    fn what_another_topology_handed_over_is_undone_after_the_own_changes() {
        let (mut s, rec) = session();
        let theirs = [(
            Op::FwNewChain { ns: H, family: Family::Ipv4, table: "filter".into(), chain: "THEIRS".into() },
            vec![Op::FwDelChain { ns: H, family: Family::Ipv4, table: "filter".into(), chain: "THEIRS".into() }],
        )];
        s.backend.apply(&theirs[0].0).unwrap();
        s.fw_append(&H, Family::Ipv4, "filter", "THEIRS", "-i br1 -j ACCEPT").unwrap();
        s.journal.adopt(&theirs, "a", "holds the chain THEIRS for topology \"a\"").unwrap();
        let (_, cmds) = rolled_back(&mut s, &rec);
        let at = |what: &str| cmds.iter().position(|c| c.contains(what)).unwrap_or_else(|| panic!("{what}: {cmds:?}"));
        assert!(at("-D THEIRS") < at("-X THEIRS"), "{cmds:?}");
    }

    fn entry(seq: u64, op: Op) -> Entry {
        Entry { seq, op, undo: Vec::new(), state: State::Done, note: None, from: None, undoing: false }
    }

    #[test]
    fn doomed_covers_what_a_deletion_takes_along_and_never_a_deletion() {
        let ns1 = NsRef::named("ns1");
        let ns2 = NsRef::named("ns2");
        // Oldest first, as made; Doomed::of takes them newest first.
        let made = [
            entry(1, Op::AddNetns { name: "ns1".into() }),
            entry(2, Op::AddVeth { ns: H, name: "a".into(), peer: "b".into(), peer_ns: ns2.clone(), queues: None }),
            entry(3, Op::AddBridge { ns: H, name: "br".into() }),
            // A veth end this run made, moved: it is deleted where it went.
            entry(4, Op::MoveLink { ns: H, name: "a".into(), to: ns2.clone() }),
            // A link this run did not make, moved: nothing deletes it.
            entry(5, Op::MoveLink { ns: H, name: "old".into(), to: ns2.clone() }),
        ];
        let d = Doomed::of(&made.iter().rev().collect::<Vec<_>>());
        assert!(d.ns(&ns1) && !d.ns(&ns2) && !d.ns(&H));
        assert!(d.link(&ns2, "a") && d.link(&ns2, "b") && d.link(&H, "br") && d.link(&ns1, "anything"));
        assert!(!d.link(&ns2, "old") && !d.link(&H, "old"));

        let up = |ns: &NsRef, n: &str| Op::SetUp { ns: ns.clone(), name: n.into(), up: false };
        let covered = [
            up(&ns2, "a"),
            up(&ns1, "lo"),
            Op::DelAddr { ns: H, dev: "br".into(), addr: "10.0.0.1/24".parse().unwrap(), proto: None },
            Op::SetMaster { ns: ns2.clone(), dev: "b".into(), master: None },
            Op::SetMtu { ns: H, dev: "br".into(), mtu: 1500 },
            Op::DelRoute { ns: H, route: route_dev("10.9.0.0/16", "br") },
            Op::DelRoute { ns: ns1.clone(), route: route_dev("10.9.0.0/16", "x") },
            Op::SetSysctl { ns: ns1.clone(), key: "net.ipv4.ip_forward".into(), value: "0".into() },
            Op::FwPolicy {
                ns: ns1.clone(),
                family: Family::Ipv4,
                table: "filter".into(),
                chain: "FORWARD".into(),
                target: "ACCEPT".into(),
            },
            Op::FwDelChain { ns: ns1.clone(), family: Family::Ipv4, table: "filter".into(), chain: "MINE".into() },
            // A link inside a namespace that goes dies with it.
            Op::del_link(&ns1, "c0"),
        ];
        for u in &covered {
            assert!(d.covers(u), "should be skipped: {}", u.render());
        }
        let kept = [
            // Deletions outside a doomed namespace wait for the kernel: never skipped.
            Op::del_link(&H, "br"),
            Op::del_link(&ns2, "a"),
            Op::del_netns("ns1"),
            // Moves back, and what is about links nobody deletes.
            Op::MoveLink { ns: ns2.clone(), name: "old".into(), to: H },
            up(&ns2, "old"),
            Op::DelRoute { ns: H, route: route_dev("10.9.0.0/16", "eth0") },
            Op::SetSysctl { ns: H, key: "net.ipv4.ip_forward".into(), value: "0".into() },
            Op::FwPolicy {
                ns: ns2.clone(),
                family: Family::Ipv4,
                table: "filter".into(),
                chain: "FORWARD".into(),
                target: "ACCEPT".into(),
            },
            Op::Kill { pid: 42, start: 7 },
        ];
        for u in &kept {
            assert!(!d.covers(u), "should be run: {}", u.render());
        }
    }

    #[test]
    fn the_report_names_the_processes_that_hold_a_namespace() {
        let id = NsId { dev: 4, ino: 9, ctime_ns: None };
        let p = |pid: u32, comm: &str| NsProcess { ns: id, pid, comm: comm.into() };
        let one = [p(12, "sleep")];
        assert_eq!(
            held_message("ha", &one.iter().collect::<Vec<_>>()),
            "namespace ha is deleted but lives on while process 12 (sleep) is in it: the kernel keeps a namespace that a process is in (its veth pairs to the outside are deleted)"
        );
        // A command name is the process's choice: a line break in it stays escaped.
        let many: Vec<NsProcess> = (1..=7).map(|i| p(i, if i == 2 { "x\nnetscript: ok" } else { "bash" })).collect();
        let m = held_message("hb", &many.iter().collect::<Vec<_>>());
        assert!(
            m.contains(
                "while processes 1 (bash), 2 (x\\nnetscript: ok), 3 (bash), 4 (bash), 5 (bash), 2 more are in it"
            ),
            "{m}"
        );
        assert!(!m.contains('\n'), "{m}");
    }
}
