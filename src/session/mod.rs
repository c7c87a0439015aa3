//! The session: validates each request against the system (through a back end),
//! writes the journal entry with its undo before the change, applies it, and rolls
//! back newest first. This is the typed API the Lua bindings and the tests use.

mod known;
mod links;
mod timings;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::backend::{Backend, LinkInfo};
use crate::error::{Error, Result};
use crate::firewall::{self, Family, rule};
use crate::journal::{Journal, State};
use crate::model::{NsRef, Route, check_ifname, check_name, check_words};
use crate::observer::Observer;
use crate::op::{Op, Probe};
use crate::sys::process::ExecResult;
use crate::trace::{Mode, Proto, Spec, Trace};

use known::Need;
pub use timings::{Phase, Timings};

mod rollback;

/// The queues (transmit and receive) of each end of a veth pair netscript makes
/// unless told otherwise: one, the number the kernel uses for a veth anyway. Left to
/// the kernel, an end gets one per CPU and is cut back to one at once, and the cut
/// waits for an RCU grace period while holding the rtnl lock, which every other
/// change to any link waits for: the benchmark's 1000 containers build in 5.2 s with
/// one queue per end, 7.6 s without (docs/performance.md).
pub const VETH_QUEUES: u32 = 1;

/// The most queues the kernel gives a link (rtnl_create_link refuses more).
pub const MAX_QUEUES: u32 = 4096;

/// One undo that failed during rollback.
#[derive(Debug)]
pub struct UndoFailure {
    pub undo: Op,
    pub error: Error,
}

#[derive(Debug, Default)]
pub struct RollbackReport {
    /// How many changes the rollback took on (undone, handed over, or `pending`).
    pub changes: usize,
    /// How many of them could not be undone (in whole or in part): still recorded,
    /// for a later `down` (their failures are in `failures`).
    pub pending: usize,
    /// The undos that ran, in order (rendered as commands only when printed).
    pub undone: Vec<Op>,
    pub failures: Vec<UndoFailure>,
    /// Objects found under a name of ours that are not ours (another one took the
    /// name): not touched. Not a failure: nothing of ours is left.
    pub left_alone: Vec<String>,
    /// Host-wide settings whose value to restore, and firewall chains, that went
    /// to another topology (see `Handover`).
    pub handed_over: Vec<String>,
    /// Deleted namespaces that outlived their deletion: held by processes in them
    /// (named in the text), or not gone after the wait (an open file or a mount
    /// holds them). Not a failure: their veth ends outside are deleted, and nothing
    /// reaches them by name.
    pub held: Vec<String>,
}

impl RollbackReport {
    pub fn complete(&self) -> bool {
        self.failures.is_empty()
    }
}

pub struct Session {
    backend: Box<dyn Backend>,
    journal: Journal,
    topo: String,
    cancel: Arc<AtomicBool>,
    observers: Vec<Box<dyn Observer>>,
    /// Firewall changes journaled but not yet made, applied together (one
    /// iptables-restore per table and namespace) before anything could see them: a
    /// firewall read, a process, a check, a change that depends on them, the end of
    /// the script, of a REPL line or of `fw.batch`. Always on for a back end that
    /// batches (the kernel); only inside `fw.batch` for the others (plan).
    fw_queue: Vec<Queued>,
    /// Inside `fw_batch_begin` / `fw_batch_end`: the journal sequence number at its
    /// start (the changes queued since are dropped when the batch's code fails).
    fw_batch: Option<u64>,
    /// A change was queued and does not know yet which call asked for it (see
    /// `needs_origin`).
    origin_wanted: bool,
    /// Asked before a rollback restores a host-wide setting or deletes firewall
    /// chains another topology may use (see `Handover`).
    handover: Option<Box<dyn Handover>>,
    /// The links this run created, as its changes left them (see `known`).
    known: known::Known,
    /// Time spent per phase (see `timings`).
    timings: Timings,
    /// Whether a master change may be held back one call (`hold_link_changes`).
    hold_links: bool,
    /// A master change journaled and held back (see `hold_link_changes`).
    held: Option<Queued>,
    /// See `next_call_may_pair`.
    may_pair: bool,
}

/// A refusal found after the call that asked for the change: it names that call
/// ("file:line: call") when it is known.
fn deferred(origin: Option<String>, e: Error) -> Error {
    match origin {
        Some(at) => Error::Deferred { at, source: Box::new(e) },
        None => e,
    }
}

/// A firewall change journaled and waiting in the queue.
struct Queued {
    seq: u64,
    op: Op,
    /// The call that asked for it ("file:line: fw.append(...)"), for its error.
    origin: Option<String>,
}

fn is_link_local(a: &IpNet) -> bool {
    match a.addr() {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

impl Session {
    pub fn new(backend: Box<dyn Backend>, journal: Journal, topo: &str, cancel: Arc<AtomicBool>) -> Self {
        Session {
            backend,
            journal,
            topo: topo.to_string(),
            cancel,
            observers: Vec::new(),
            fw_queue: Vec::new(),
            fw_batch: None,
            origin_wanted: false,
            handover: None,
            known: known::Known::default(),
            timings: Timings::default(),
            hold_links: false,
            held: None,
            may_pair: false,
        }
    }

    /// Adds an observer (see `Observer`).
    pub fn observe(&mut self, o: Box<dyn Observer>) {
        self.observers.push(o);
    }

    /// What rollback asks before it restores a host-wide setting or deletes the
    /// firewall chains it made in the host namespace (see `Handover`).
    pub fn set_handover(&mut self, f: Box<dyn Handover>) {
        self.handover = Some(f);
    }

    pub fn topo(&self) -> &str {
        &self.topo
    }

    /// The ownership mark on links (alias) and rules (comment): "netscript:<topology>".
    pub fn mark(&self) -> String {
        mark_for(&self.topo)
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Where the calls that follow come from (the binding layer passes the script's
    /// "file:line" before each call); handed to the observers, which may show it.
    pub fn set_origin(&mut self, origin: &dyn Fn() -> String) {
        for o in &mut self.observers {
            o.origin(origin);
        }
    }

    /// Tells the observers about a read and its answer.
    fn note_read(&mut self, probe: &Probe, answer: &str) {
        for o in &mut self.observers {
            o.read(probe, answer);
        }
    }

    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    pub fn interrupted(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn check_interrupt(&self) -> Result<()> {
        if self.interrupted() { Err(Error::Interrupted("a signal")) } else { Ok(()) }
    }

    /// Whether the last call queued a firewall change that does not know where it
    /// came from: the binding layer then says (`set_origin_of_queued`), so that a
    /// refusal found later names the script line of the rule.
    pub fn needs_origin(&self) -> bool {
        self.origin_wanted
    }

    pub fn set_origin_of_queued(&mut self, origin: String) {
        for q in self.fw_queue.iter_mut().rev().take_while(|q| q.origin.is_none()) {
            q.origin = Some(origin.clone());
        }
        if let Some(h) = self.held.as_mut().filter(|h| h.origin.is_none()) {
            h.origin = Some(origin);
        }
        self.origin_wanted = false;
    }

    /// Lets a link's master change wait for the next call, so that when that call is
    /// the same link's `up` (`link:master(br):up()`), both go to the back end
    /// together, in one request on the kernel (`Backend::pairs_link_changes`). The
    /// master change is journaled when it is asked for and made at the next call at
    /// the latest (`release`): the binding layer releases it before every call but
    /// that `up` (`before_call`), and `settle` does (the end of the script, of a REPL
    /// line, a `pcall`, before processes and checks). A refusal found later names the
    /// script line of the refused change, and nothing after it is made. For callers
    /// that release before each call (src/lua); off by default.
    pub fn hold_link_changes(&mut self, on: bool) {
        self.hold_links = on && self.backend.pairs_link_changes();
    }

    /// The next call may be the held change's pair (`link:up()`): `before_call`
    /// keeps it held for it.
    pub fn next_call_may_pair(&mut self) {
        self.may_pair = true;
    }

    /// The binding layer calls this before each call: a held change is made now,
    /// unless the call may pair with it (`next_call_may_pair`).
    pub fn before_call(&mut self) -> Result<()> {
        if std::mem::take(&mut self.may_pair) { Ok(()) } else { self.release() }
    }

    /// Makes a held master change now (see `hold_link_changes`).
    pub fn release(&mut self) -> Result<()> {
        let Some(h) = self.held.take() else { return Ok(()) };
        let r = self.apply_now(&h.op);
        self.track(&h.op, r.is_ok());
        let t = Instant::now();
        let written = self.journal.mark(h.seq, if r.is_ok() { State::Done } else { State::Failed });
        self.timings.add(Phase::Journal, t);
        written?;
        r.map_err(|e| deferred(h.origin, e))
    }

    /// Journals a master change and holds it back (see `hold_link_changes`).
    fn hold(&mut self, op: Op, undo: Vec<Op>) -> Result<()> {
        self.release()?;
        self.check_interrupt()?;
        let t = Instant::now();
        let seq = self.journal.begin(&op, &undo)?;
        self.timings.add(Phase::Journal, t);
        self.held = Some(Queued { seq, op, origin: None });
        self.origin_wanted = true;
        Ok(())
    }

    /// The held master change and `op` (its link's `up`) together: both journaled,
    /// then made in one go; a refused master is the error (named at its own script
    /// line), and the `up` after it is not made.
    fn change_paired(&mut self, held: Queued, op: Op, undo: Vec<Op>) -> Result<()> {
        let t = Instant::now();
        let seq = self.journal.begin(&op, &undo);
        self.timings.add(Phase::Journal, t);
        let seq = match seq {
            Ok(s) => s,
            Err(e) => {
                self.held = Some(held);
                return Err(e);
            }
        };
        let ops = [held.op, op];
        for o in &ops {
            self.notify_change(o);
        }
        let t = Instant::now();
        let results = self.backend.apply_batch(&ops, true);
        self.timings.add(Phase::of(&ops[0]), t);
        self.timings.changes += 2;
        let mut first = None;
        for ((op, s, origin), r) in [(&ops[0], held.seq, held.origin), (&ops[1], seq, None)].into_iter().zip(results) {
            self.track(op, r.is_ok());
            let t = Instant::now();
            match (r, first.is_some()) {
                (Ok(()), false) => self.journal.mark(s, State::Done)?,
                (Ok(()), true) => self.take_back(s)?,
                (Err(e), false) => {
                    self.journal.mark(s, State::Failed)?;
                    first = Some(deferred(origin, e));
                }
                (Err(_), true) => self.journal.mark(s, State::Failed)?,
            }
            self.timings.add(Phase::Journal, t);
        }
        first.map_or(Ok(()), Err)
    }

    fn queueing(&self) -> bool {
        self.fw_batch.is_some() || self.backend.batches_firewall()
    }

    /// Journal first, then the change (or, for a firewall change, the queue).
    fn change(&mut self, op: Op, undo: Vec<Op>) -> Result<()> {
        self.check_interrupt()?;
        if let Some(h) = self.held.take() {
            if matches!((&h.op, &op), (Op::SetMaster { ns, dev, .. }, Op::SetUp { ns: n, name, up: true }) if ns == n && dev == name)
            {
                return self.change_paired(h, op, undo);
            }
            self.held = Some(h);
            self.release()?;
        }
        let t = Instant::now();
        let seq = self.journal.begin(&op, &undo)?;
        self.timings.add(Phase::Journal, t);
        if op.is_firewall() && self.queueing() {
            self.fw_queue.push(Queued { seq, op, origin: None });
            self.origin_wanted = true;
            return Ok(());
        }
        let r = self.apply_now(&op);
        self.track(&op, r.is_ok());
        if op.is_firewall() {
            self.note_firewall()?;
        }
        let exact = if r.is_ok() { self.identified(&op, &undo) } else { None };
        let t = Instant::now();
        let written = match r {
            Ok(()) => match exact {
                Some(exact) => self.journal.amend(seq, None, exact).and_then(|()| self.journal.mark(seq, State::Done)),
                None => self.journal.mark(seq, State::Done),
            },
            Err(e) => self.journal.mark(seq, State::Failed).and(Err(e)),
        };
        self.timings.add(Phase::Journal, t);
        written
    }

    /// Where the run's time went so far, by phase.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// The undo of a creation with the identity of what was created (a link's
    /// index, a namespace's nsfs inode), so that rollback deletes that object and
    /// never another one that took its name later.
    fn identified(&mut self, op: &Op, undo: &[Op]) -> Option<Vec<Op>> {
        match (op, undo) {
            (Op::AddNetns { name }, [Op::DelNetns { id: None, marked, .. }]) => {
                let id = self.backend.netns_id(name)?;
                Some(vec![Op::DelNetns { name: name.clone(), id: Some(id), marked: *marked }])
            }
            (
                Op::AddVeth { ns, name, .. } | Op::AddBridge { ns, name } | Op::AddLink { ns, name, .. },
                [Op::DelLink { ifindex: None, .. }],
            ) => {
                let i = self.backend.link_index(ns, name).ok()??;
                Some(vec![Op::DelLink { ns: ns.clone(), name: name.clone(), ifindex: Some(i) }])
            }
            _ => None,
        }
    }

    /// Before a link moves: the kernel may give it another index in its new
    /// namespace (and again on the way back), so the index recorded at its creation
    /// no longer says which link it is; its mark still does.
    fn forget_index(&mut self, ns: &NsRef, name: &str) -> Result<()> {
        let found = self.journal.entries().iter().rev().find_map(|e| match e.undo.as_slice() {
            [Op::DelLink { ns: n, name: m, ifindex: Some(_) }] if e.live() && n == ns && m == name => Some(e.seq),
            _ => None,
        });
        match found {
            Some(seq) => self.journal.amend(seq, None, vec![Op::del_link(ns, name)]),
            None => Ok(()),
        }
    }

    /// Tells the observers about a change the back end gets now.
    fn notify_change(&mut self, op: &Op) {
        for o in &mut self.observers {
            o.change(op);
        }
    }

    /// Hands one journaled change to the back end (the observers hear of it first).
    fn apply_now(&mut self, op: &Op) -> Result<()> {
        self.notify_change(op);
        let t = Instant::now();
        let r = self.backend.apply(op);
        self.timings.add(Phase::of(op), t);
        self.timings.changes += 1;
        r
    }

    // ---- firewall batches ---------------------------------------------------------

    /// Starts an explicit firewall batch (`fw.batch`). Firewall changes are queued
    /// anyway (on the kernel); the batch adds two things: its changes are made at its
    /// end at the latest, and when its code fails, the changes it queued (and that
    /// nothing needed yet) are dropped, never made. Firewall changes commute with the
    /// other kinds (see rollback), so only firewall reads, processes and checks wait.
    pub fn fw_batch_begin(&mut self) -> Result<()> {
        if self.fw_batch.is_some() {
            return Err(Error::invalid("a firewall batch is already open (fw.batch cannot be nested)"));
        }
        self.fw_batch = Some(self.journal.next_seq());
        Ok(())
    }

    /// Ends the batch: makes the queued changes (`apply`), or drops those the batch
    /// queued (its code failed; they were never made). A change the system refuses is
    /// the error, and the changes after it are not made (see `apply_queued`).
    pub fn fw_batch_end(&mut self, apply: bool) -> Result<()> {
        let since = self.fw_batch.take().unwrap_or(0);
        if apply { self.settle() } else { self.drop_queued(since) }
    }

    /// Drops the queued changes journaled at or after `since` (never made).
    pub(super) fn drop_queued(&mut self, since: u64) -> Result<()> {
        let keep = self.fw_queue.iter().take_while(|q| q.seq < since).count();
        for q in self.fw_queue.split_off(keep) {
            self.journal.mark(q.seq, State::Failed)?;
        }
        Ok(())
    }

    /// Makes the queued firewall changes now, and writes the journal's buffered
    /// lines (`Journal::mark`). Called before anything that could see them, and at
    /// the end of a script, a REPL line, a `pcall`.
    pub fn settle(&mut self) -> Result<()> {
        self.release()?;
        if !self.fw_queue.is_empty() {
            let queue = std::mem::take(&mut self.fw_queue);
            self.origin_wanted = false;
            self.apply_queued(queue)?;
        }
        self.journal.flush()
    }

    /// Makes queued changes together, with the result of making them one by one and
    /// stopping at the first refusal: the changes before it are done, the refused
    /// one and those after it are journaled as not made (one that the back end made
    /// together with earlier ones is taken back), and the error names the script
    /// line of the refused change.
    fn apply_queued(&mut self, queue: Vec<Queued>) -> Result<()> {
        let ops: Vec<Op> = queue.iter().map(|q| q.op.clone()).collect();
        for op in &ops {
            self.notify_change(op);
        }
        let t = Instant::now();
        let results = self.backend.apply_batch(&ops, true);
        self.timings.add(Phase::Firewall, t);
        self.timings.changes += ops.len() as u64;
        self.note_firewall()?;
        let t = Instant::now();
        let mut first: Option<Error> = None;
        for (q, r) in queue.into_iter().zip(results) {
            match (r, first.is_some()) {
                (Ok(()), false) => {
                    self.journal.mark(q.seq, State::Done)?;
                }
                (Ok(()), true) => self.take_back(q.seq)?,
                (Err(e), false) => {
                    self.journal.mark(q.seq, State::Failed)?;
                    first = Some(match q.origin {
                        Some(at) => Error::Deferred { at, source: Box::new(e) },
                        None => e,
                    });
                }
                (Err(_), true) => self.journal.mark(q.seq, State::Failed)?,
            }
        }
        self.timings.add(Phase::Journal, t);
        first.map_or(Ok(()), Err)
    }

    /// Records the firewall tool in the journal once one is in use (see
    /// `Meta::firewall`).
    fn note_firewall(&mut self) -> Result<()> {
        if self.journal.meta.firewall.is_none()
            && let Some(t) = self.backend.firewall_tool()
        {
            self.journal.set_firewall(&t)?;
        }
        Ok(())
    }

    /// Undoes a queued change that was made after one refused before it; journaled
    /// as not made when that worked (else it stays done, for rollback).
    fn take_back(&mut self, seq: u64) -> Result<()> {
        let undo = self.journal.entries().iter().find(|e| e.seq == seq).map(|e| e.undo.clone()).unwrap_or_default();
        if undo.iter().all(|u| self.backend.apply(u).is_ok()) {
            self.journal.mark(seq, State::Failed)
        } else {
            self.journal.mark(seq, State::Done)
        }
    }

    // ---- namespaces -------------------------------------------------------------

    fn require_ns(&mut self, ns: &NsRef) -> Result<()> {
        match ns {
            NsRef::Host => Ok(()),
            NsRef::Named(n) if self.backend.netns_exists(n) => Ok(()),
            NsRef::Named(n) => Err(Error::invalid(format!("no namespace named \"{n}\""))),
        }
    }

    pub fn netns_add(&mut self, name: &str) -> Result<NsRef> {
        check_name("namespace", name)?;
        if name == "host" {
            // exec, trace, show and the REPL's .trace spell the host namespace "host".
            return Err(Error::invalid(
                "\"host\" names the host namespace in netscript (exec, trace, show); choose another name",
            ));
        }
        if self.backend.netns_exists(name) {
            return Err(Error::invalid(format!("a namespace named \"{name}\" already exists")));
        }
        self.change(Op::AddNetns { name: name.into() }, vec![Op::del_netns(name)])?;
        Ok(NsRef::named(name))
    }

    pub fn netns_get(&mut self, name: &str) -> Result<NsRef> {
        check_name("namespace", name)?;
        let ns = NsRef::named(name);
        self.require_ns(&ns)?;
        Ok(ns)
    }

    pub fn netns_list(&mut self) -> Vec<String> {
        self.backend.netns_list()
    }

    fn created_here(&self, pred: impl Fn(&Op) -> bool) -> bool {
        self.journal.entries().iter().any(|e| e.state == State::Done && pred(&e.op))
    }

    pub fn netns_del(&mut self, name: &str) -> Result<()> {
        self.require_ns(&NsRef::named(name))?;
        // The newest creation of that name by this run, and the identity it recorded:
        // the deletion applies to that namespace only.
        let made = self
            .journal
            .entries()
            .iter()
            .rev()
            .find(|e| e.state == State::Done && matches!(&e.op, Op::AddNetns { name: n } if n == name));
        let Some(made) = made else {
            return Err(Error::invalid(format!(
                "namespace \"{name}\" was not created by this run; netscript deletes only what it created"
            )));
        };
        let (id, marked) = made
            .undo
            .iter()
            .find_map(|u| match u {
                Op::DelNetns { id, marked, .. } => Some((*id, *marked)),
                _ => None,
            })
            .unwrap_or((None, false));
        self.change(Op::DelNetns { name: name.to_string(), id, marked }, vec![])
    }

    // ---- links ------------------------------------------------------------------

    pub fn link(&mut self, ns: &NsRef, name: &str) -> Result<LinkInfo> {
        self.require_ns(ns)?;
        self.backend.link(ns, name)?.ok_or_else(|| {
            Error::invalid(
                self.backend.no_link_message(ns, name).unwrap_or_else(|| format!("no link named \"{name}\" in {ns}")),
            )
        })
    }

    pub fn links(&mut self, ns: &NsRef) -> Result<Vec<LinkInfo>> {
        self.require_ns(ns)?;
        self.backend.links(ns)
    }

    fn require_free_name(&mut self, ns: &NsRef, name: &str) -> Result<()> {
        check_ifname(name)?;
        self.require_ns(ns)?;
        if self.backend.link(ns, name)?.is_some() {
            return Err(Error::invalid(format!("a link named \"{name}\" already exists in {ns}")));
        }
        Ok(())
    }

    /// A veth pair; each end with `queues` transmit and receive queues (default
    /// [`VETH_QUEUES`]).
    pub fn veth_add(&mut self, name: &str, peer: &str, ns: &NsRef, peer_ns: &NsRef, queues: Option<u32>) -> Result<()> {
        check_ifname(name)?;
        check_ifname(peer)?;
        if name == peer && ns == peer_ns {
            return Err(Error::invalid(format!(
                "the two ends of a veth pair need different names (both are \"{name}\")"
            )));
        }
        let queues = queues.unwrap_or(VETH_QUEUES);
        if !(1..=MAX_QUEUES).contains(&queues) {
            return Err(Error::invalid(format!(
                "queues = {queues}: a veth end has 1 to {MAX_QUEUES} queues (the kernel's limit)"
            )));
        }
        let op = Op::AddVeth {
            ns: ns.clone(),
            name: name.into(),
            peer: peer.into(),
            peer_ns: peer_ns.clone(),
            queues: Some(queues),
        };
        self.create(&[(ns, name), (peer_ns, peer)], op)
    }

    pub fn bridge_add(&mut self, name: &str, ns: &NsRef) -> Result<()> {
        self.create(&[(ns, name)], Op::AddBridge { ns: ns.clone(), name: name.into() })
    }

    pub fn link_set_up(&mut self, ns: &NsRef, name: &str, up: bool) -> Result<()> {
        // Taking a link down needs all its addresses (the undo restores them).
        let l = self.known_link(ns, name, if up { Need::default() } else { Need::ADDRS })?;
        if l.up == up {
            return Ok(());
        }
        // Down, the kernel drops the link's IPv6 addresses and every route through
        // it: the undo brings them back after bringing the link up.
        let mut undo = vec![Op::SetUp { ns: ns.clone(), name: name.to_string(), up: !up }];
        if !up {
            undo.extend(self.restore_ops(ns, &l, true)?);
            let v4_routes = self.restore_ops(ns, &LinkInfo { addrs: vec![], ..l.clone() }, false)?;
            undo.extend(
                v4_routes
                    .into_iter()
                    .filter(|o| matches!(o, Op::AddRoute { route, .. } if route.dest.addr().is_ipv4())),
            );
        }
        self.change(Op::SetUp { ns: ns.clone(), name: name.to_string(), up }, undo)
    }

    /// Adds an address. An IPv6 address is added without duplicate address
    /// detection (`nodad`): usable at once, as labs want.
    pub fn link_addr(&mut self, ns: &NsRef, name: &str, addr: IpNet) -> Result<()> {
        self.link_addr_opts(ns, name, addr, true)
    }

    /// `link_addr` with the choice: `nodad = false` lets the kernel check IPv6
    /// addresses for duplicates first (the address is "tentative" for a second or
    /// two; checks wait for it). No effect on IPv4.
    pub fn link_addr_opts(&mut self, ns: &NsRef, name: &str, addr: IpNet, nodad: bool) -> Result<()> {
        // The kernel takes 0.0.0.0/0 and adds nothing (and refuses ::/0): no link has it.
        if addr.addr().is_unspecified() {
            return Err(Error::invalid(format!(
                "{addr} is not an address a link can have ({} is the unspecified address)",
                addr.addr()
            )));
        }
        let l = self.known_link(ns, name, Need::ADDRS)?;
        if l.addrs.contains(&addr) {
            return Err(Error::invalid(format!("{addr} is already on link \"{name}\" in {ns}")));
        }
        let nodad = nodad && addr.addr().is_ipv6();
        let (ns, dev) = (ns.clone(), name.to_string());
        let proto = Some(crate::model::ADDR_PROTO);
        self.change(
            Op::AddAddr { ns: ns.clone(), dev: dev.clone(), addr, nodad, proto },
            vec![Op::DelAddr { ns, dev, addr, proto }],
        )
    }

    /// What brings back a link's addresses and routes after the kernel dropped them
    /// (link down, disable_ipv6, a move): its addresses (IPv6 only with `v6_only`;
    /// link-local ones the kernel makes itself), with their nodad flag, then the
    /// routes through it that someone added (kernel and router-advertised ones come
    /// back by themselves).
    fn restore_ops(&mut self, ns: &NsRef, l: &LinkInfo, v6_only: bool) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        for a in l.addrs.iter().filter(|a| !is_link_local(a) && (!v6_only || a.addr().is_ipv6())) {
            let nodad = l.nodad.contains(a);
            let proto = l.protos.iter().find(|(x, _)| x == a).map(|(_, p)| *p);
            ops.push(Op::AddAddr { ns: ns.clone(), dev: l.name.clone(), addr: *a, nodad, proto });
        }
        for r in self.backend.routes(ns)? {
            let ours = r.dev.as_deref() == Some(l.name.as_str()) && !matches!(r.proto, Some(2 | 9));
            if ours && (!v6_only || r.dest.addr().is_ipv6()) && !is_link_local(&r.dest) {
                ops.push(Op::AddRoute { ns: ns.clone(), route: r });
            }
        }
        Ok(ops)
    }

    /// Moves a link to another namespace. The kernel drops its addresses and takes it
    /// down on the way; the undo moves it back and restores both.
    pub fn link_move(&mut self, ns: &NsRef, name: &str, to: &NsRef) -> Result<()> {
        let l = self.link(ns, name)?;
        if ns == to {
            return Ok(());
        }
        self.require_ns(to)?;
        if self.backend.link(to, name)?.is_some() {
            return Err(Error::invalid(format!("a link named \"{name}\" already exists in {to}")));
        }
        let mut undo = vec![Op::MoveLink { ns: to.clone(), name: name.into(), to: ns.clone() }];
        let restore = self.restore_ops(ns, &l, false)?;
        let (addrs, routes): (Vec<Op>, Vec<Op>) = restore.into_iter().partition(|o| matches!(o, Op::AddAddr { .. }));
        undo.extend(addrs);
        if l.up {
            undo.push(Op::SetUp { ns: ns.clone(), name: name.into(), up: true });
            undo.extend(routes);
        }
        self.forget_index(ns, name)?;
        self.change(Op::MoveLink { ns: ns.clone(), name: name.into(), to: to.clone() }, undo)
    }

    pub fn link_master(&mut self, ns: &NsRef, name: &str, master: Option<&str>) -> Result<()> {
        let l = self.known_link(ns, name, Need::default())?;
        if let Some(m) = master {
            let b = match self.known_info(ns, m) {
                Some(b) => Some(b),
                None => self.backend.link(ns, m)?,
            };
            let b = b.ok_or_else(|| {
                Error::invalid(format!(
                    "no link named \"{m}\" in {ns} (a link and its bridge must be in the same namespace)"
                ))
            })?;
            if b.kind.as_deref() != Some("bridge") {
                return Err(Error::invalid(format!("\"{m}\" in {ns} is not a bridge")));
            }
        }
        if l.master.as_deref() == master {
            return Ok(());
        }
        let op = Op::SetMaster { ns: ns.clone(), dev: name.into(), master: master.map(str::to_string) };
        let undo = vec![Op::SetMaster { ns: ns.clone(), dev: name.into(), master: l.master }];
        if self.hold_links && master.is_some() { self.hold(op, undo) } else { self.change(op, undo) }
    }

    pub fn link_mtu(&mut self, ns: &NsRef, name: &str, mtu: u32) -> Result<()> {
        if !(68..=65535).contains(&mtu) {
            return Err(Error::invalid(format!("MTU {mtu} is out of range (68 to 65535)")));
        }
        let l = self.known_link(ns, name, Need::MTU)?;
        if l.mtu == mtu {
            return Ok(());
        }
        let op = Op::SetMtu { ns: ns.clone(), dev: name.into(), mtu };
        self.change(op, vec![Op::SetMtu { ns: ns.clone(), dev: name.into(), mtu: l.mtu }])
    }

    /// Deletes a link netscript created for this topology (it carries our mark).
    pub fn link_del(&mut self, ns: &NsRef, name: &str) -> Result<()> {
        let l = self.known_link(ns, name, Need::default())?;
        if l.alias.as_deref() != Some(self.mark().as_str()) {
            return Err(Error::invalid(format!(
                "link \"{name}\" in {ns} was not created by this topology; netscript deletes only what it created"
            )));
        }
        self.change(Op::del_link(ns, name), vec![])
    }

    // ---- routes -----------------------------------------------------------------

    pub fn route_add(&mut self, ns: &NsRef, route: Route) -> Result<()> {
        self.require_ns(ns)?;
        if let Some(d) = &route.dev {
            self.known_link(ns, d, Need::default())?;
        }
        if let Some(v) = route.via
            && v.is_ipv6() != route.dest.addr().is_ipv6()
        {
            return Err(Error::invalid(format!(
                "gateway {v} and destination {} are of different IP versions",
                route.dest
            )));
        }
        if route.via.is_none() && route.dev.is_none() {
            return Err(Error::invalid(format!("route {route}: give a gateway (via=) or a link (dev=)")));
        }
        // A back end that refuses a route to a taken destination by itself (the
        // kernel: EEXIST) is not asked first; the route is looked up when it refuses.
        if !self.backend.refuses_duplicates() {
            self.require_free_route(ns, &route)?;
        }
        let op = Op::AddRoute { ns: ns.clone(), route: route.clone() };
        match self.change(op, vec![Op::DelRoute { ns: ns.clone(), route: route.clone() }]) {
            Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {
                self.require_free_route(ns, &route)?;
                Err(e)
            }
            r => r,
        }
    }

    fn require_free_route(&mut self, ns: &NsRef, route: &Route) -> Result<()> {
        if let Some(r) = self.backend.find_route(ns, &Route { via: None, dev: None, ..route.clone() })?
            && route.metric.unwrap_or(0) == r.metric.unwrap_or(0)
        {
            return Err(Error::invalid(format!(
                "{ns} already has a route to {} ({r})",
                if route.is_default() { "default".into() } else { route.dest.to_string() }
            )));
        }
        Ok(())
    }

    pub fn route_del(&mut self, ns: &NsRef, spec: Route) -> Result<()> {
        self.require_ns(ns)?;
        if let Some(d) = &spec.dev {
            self.link(ns, d)?;
        }
        let found =
            self.backend.find_route(ns, &spec)?.ok_or_else(|| Error::invalid(format!("{ns} has no route {spec}")))?;
        self.change(
            Op::DelRoute { ns: ns.clone(), route: found.clone() },
            vec![Op::AddRoute { ns: ns.clone(), route: found }],
        )
    }

    // ---- sysctl -----------------------------------------------------------------

    pub fn sysctl_get(&mut self, ns: &NsRef, key: &str) -> Result<String> {
        let v = self.read_sysctl(ns, key)?;
        self.note_read(&Probe::SysctlGet { ns: ns.clone(), key: key.into() }, &v);
        Ok(v)
    }

    fn read_sysctl(&mut self, ns: &NsRef, key: &str) -> Result<String> {
        self.require_ns(ns)?;
        crate::sys::sysctl::key_path(key)?;
        self.backend.sysctl_get(ns, key)
    }

    /// Sets a sysctl; returns the previous value (restored on rollback).
    pub fn sysctl_set(&mut self, ns: &NsRef, key: &str, value: &str) -> Result<String> {
        check_words(&format!("the value for sysctl {key}:"), &[value.to_string()], false)?;
        // A malformed key is refused as that first, sandbox or not.
        crate::sys::sysctl::key_path(key)?;
        if crate::sandbox::active() && !crate::sys::sysctl::per_netns(key) {
            return Err(Error::invalid(format!(
                "sysctl {key} is not per network namespace: it would change the real machine, not the sandbox; \
                 in --sandbox only net.* keys can be set"
            )));
        }
        let old = self.read_sysctl(ns, key)?;
        // A host-wide setting already at the value is journaled all the same (once):
        // the topology relies on it, so another one going down hands its original
        // value over instead of changing it under this one.
        let op = Op::SetSysctl { ns: ns.clone(), key: key.into(), value: value.into() };
        if old == value && (!ns.is_host() || self.created_here(|o| same_setting(o, &op))) {
            return Ok(old);
        }
        let mut undo = vec![Op::SetSysctl { ns: ns.clone(), key: key.into(), value: old.clone() }];
        let k = key.replace('/', ".");
        let links: Vec<LinkInfo> = self.backend.links(ns)?;
        // Keys the kernel copies to every link (and the default) when written: the
        // undo writes the old value back, which copies it too; the links that had a
        // value of their own get it back after that.
        let spread = match k.as_str() {
            "net.ipv4.ip_forward" | "net.ipv4.conf.all.forwarding" => Some(("ipv4", "forwarding")),
            "net.ipv6.conf.all.forwarding" => Some(("ipv6", "forwarding")),
            "net.ipv6.conf.all.disable_ipv6" => Some(("ipv6", "disable_ipv6")),
            _ => None,
        };
        if let Some((fam, leaf)) = spread {
            let names = std::iter::once("default".to_string()).chain(links.iter().map(|l| l.name.clone()));
            for d in names.filter(|d| !d.contains('/')) {
                let sib = format!("net/{fam}/conf/{d}/{leaf}");
                if let Ok(v) = self.backend.sysctl_get(ns, &sib)
                    && v != old
                {
                    undo.push(Op::SetSysctl { ns: ns.clone(), key: sib, value: v });
                }
            }
        }
        // Disabling IPv6 drops the IPv6 addresses of the links it reaches (and their
        // routes): the undo adds them back once IPv6 is on again.
        if value.trim() == "1"
            && let Some(dev) = k.strip_prefix("net.ipv6.conf.").and_then(|r| r.strip_suffix(".disable_ipv6"))
        {
            for l in links.iter().filter(|l| dev == "all" || l.name == dev) {
                let own = format!("net/ipv6/conf/{}/disable_ipv6", l.name);
                if !l.name.contains('/') && self.backend.sysctl_get(ns, &own).is_ok_and(|v| v.trim() == "0") {
                    undo.extend(self.restore_ops(ns, l, true)?);
                }
            }
        }
        self.change(op, undo)?;
        Ok(old)
    }

    // ---- firewall ---------------------------------------------------------------

    /// A script's rule string as words, with this topology's mark (`firewall::rule`).
    /// Its addresses must be of the family of the rule set it goes to.
    fn marked_rule(&self, fam: Family, rule: &str) -> Result<Vec<String>> {
        let words = rule::parse_rule(rule)?;
        rule::check_family(&words, fam)?;
        Ok(rule::marked(&self.mark(), &words))
    }

    fn require_chain(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<()> {
        firewall::check_table(table)?;
        firewall::check_chain_name(chain)?;
        self.require_ns(ns)?;
        if firewall::builtin_chains(table).contains(&chain) {
            return Ok(());
        }
        self.settle()?;
        if self.backend.fw_chain_exists(ns, fam, table, chain)? {
            Ok(())
        } else {
            Err(Error::invalid(format!("table {table} has no chain {chain} in {ns}{}", in_family(fam))))
        }
    }

    /// Sets a built-in chain's policy (`fam`: iptables or ip6tables); returns the old one.
    pub fn fw_policy(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str, target: &str) -> Result<String> {
        firewall::check_policy(table, chain, target)?;
        self.require_ns(ns)?;
        // The policy depends only on earlier policy changes of the same chain.
        let queued = self.fw_queue.iter().rev().find_map(|q| match &q.op {
            Op::FwPolicy { ns: n, family: f, table: t, chain: c, target }
                if n == ns && *f == fam && t == table && c == chain =>
            {
                Some(target.clone())
            }
            _ => None,
        });
        let old = match queued {
            Some(t) => t,
            None => self.backend.fw_policy(ns, fam, table, chain)?,
        };
        let (t, c) = (table.to_string(), chain.to_string());
        let op =
            Op::FwPolicy { ns: ns.clone(), family: fam, table: t.clone(), chain: c.clone(), target: target.into() };
        // As for sysctls: a host chain's policy already at the target is journaled once.
        if old == target && (!ns.is_host() || self.created_here(|o| same_setting(o, &op))) {
            return Ok(old);
        }
        let undo = Op::FwPolicy { ns: ns.clone(), family: fam, table: t, chain: c, target: old.clone() };
        self.change(op, vec![undo])?;
        Ok(old)
    }

    pub fn fw_append(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str, rule: &str) -> Result<()> {
        self.require_chain(ns, fam, table, chain)?;
        let rule = self.marked_rule(fam, rule)?;
        let (t, c) = (table.to_string(), chain.to_string());
        let undo = Op::FwDelete { ns: ns.clone(), family: fam, table: t.clone(), chain: c.clone(), rule: rule.clone() };
        self.change(Op::FwAppend { ns: ns.clone(), family: fam, table: t, chain: c, rule }, vec![undo])
    }

    pub fn fw_insert(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str, rule: &str, pos: u32) -> Result<()> {
        self.settle()?;
        self.require_chain(ns, fam, table, chain)?;
        if pos == 0 {
            return Err(Error::invalid("rule positions start at 1"));
        }
        let count = rule::count(&self.backend.fw_rules(ns, fam, table, Some(chain))?);
        if pos as usize > count + 1 {
            return Err(Error::invalid(format!("position {pos} is past the end of chain {chain} ({count} rules)")));
        }
        let rule = self.marked_rule(fam, rule)?;
        let (t, c) = (table.to_string(), chain.to_string());
        let undo = Op::FwDelete { ns: ns.clone(), family: fam, table: t.clone(), chain: c.clone(), rule: rule.clone() };
        self.change(Op::FwInsert { ns: ns.clone(), family: fam, table: t, chain: c, pos, rule }, vec![undo])
    }

    /// Deletes a rule; rollback re-inserts it at its old position.
    pub fn fw_delete(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str, rule: &str) -> Result<()> {
        self.settle()?;
        self.require_chain(ns, fam, table, chain)?;
        let words = rule::parse_rule(rule)?;
        rule::check_family(&words, fam)?;
        // A rule this topology added carries our comment: accept it without.
        let spec = if self.backend.fw_exists(ns, fam, table, chain, &words)? {
            words
        } else {
            let m = rule::marked(&self.mark(), &words);
            if !self.backend.fw_exists(ns, fam, table, chain, &m)? {
                return Err(Error::invalid(format!(
                    "chain {chain} of table {table} in {ns}{} has no rule {rule}",
                    in_family(fam)
                )));
            }
            m
        };
        // The position and canonical spelling of the rule the kernel removes (the
        // first match) come from comparing `iptables -S` before and after.
        let before = self.backend.fw_rules(ns, fam, table, Some(chain))?;
        let (t, c) = (table.to_string(), chain.to_string());
        let op = Op::FwDelete { ns: ns.clone(), family: fam, table: t.clone(), chain: c.clone(), rule: spec.clone() };
        // The undo is known exactly only after the kernel said which rule went; until
        // then, the journal holds a re-append of the spec (right if we crash here).
        let provisional = Op::FwAppend { ns: ns.clone(), family: fam, table: t.clone(), chain: c.clone(), rule: spec };
        self.check_interrupt()?;
        let seq = self.journal.begin(&op, &[provisional])?;
        let r = self.apply_now(&op);
        self.note_firewall()?;
        if let Err(e) = r {
            self.journal.mark(seq, State::Failed)?;
            return Err(e);
        }
        let after = self.backend.fw_rules(ns, fam, table, Some(chain))?;
        let (pos, canon) = rule::removed(&before, &after)?;
        let undo = Op::FwInsert { ns: ns.clone(), family: fam, table: t, chain: c, pos, rule: canon };
        self.journal.amend(seq, None, vec![undo])?;
        self.journal.mark(seq, State::Done)
    }

    pub fn fw_chain(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<()> {
        self.settle()?;
        firewall::check_table(table)?;
        firewall::check_chain_name(chain)?;
        self.require_ns(ns)?;
        if firewall::builtin_chains(table).contains(&chain) || self.backend.fw_chain_exists(ns, fam, table, chain)? {
            return Err(Error::invalid(format!("table {table} already has a chain {chain} in {ns}{}", in_family(fam))));
        }
        let (t, c) = (table.to_string(), chain.to_string());
        let op = Op::FwNewChain { ns: ns.clone(), family: fam, table: t.clone(), chain: c.clone() };
        self.change(op, vec![Op::FwDelChain { ns: ns.clone(), family: fam, table: t, chain: c }])
    }

    pub fn fw_rules(&mut self, ns: &NsRef, fam: Family, table: &str) -> Result<Vec<String>> {
        self.settle()?;
        firewall::check_table(table)?;
        self.require_ns(ns)?;
        let v = self.backend.fw_rules(ns, fam, table, None)?;
        let n = rule::count(&v);
        self.note_read(&Probe::FwRules { ns: ns.clone(), family: fam, table: table.into() }, &format!("{n} rule(s)"));
        Ok(v)
    }

    // ---- processes and checks ---------------------------------------------------

    /// What starting a process in `ns` needs first: a command line no process can
    /// misread, the queued changes made (it sees the firewall), the namespace, and
    /// no interrupt pending.
    fn before_process(&mut self, ns: &NsRef, argv: &[String]) -> Result<()> {
        check_words("argument", argv, true)?;
        self.settle()?;
        self.require_ns(ns)?;
        self.check_interrupt()
    }

    pub fn exec(&mut self, ns: &NsRef, argv: &[String], timeout: Option<Duration>) -> Result<ExecResult> {
        self.before_process(ns, argv)?;
        // A process can change anything.
        self.forget_known();
        let r = self.backend.exec(ns, argv, timeout)?;
        self.note_read(&Probe::Exec { ns: ns.clone(), cmd: argv.to_vec() }, &format!("exit code {}", r.code));
        Ok(r)
    }

    /// Runs a command on the terminal (not captured: interactive programs, the REPL's
    /// `!ns cmd`); its exit code.
    pub fn exec_on_terminal(&mut self, ns: &NsRef, argv: &[String]) -> Result<i32> {
        self.before_process(ns, argv)?;
        self.forget_known();
        let code = self.backend.exec_on_terminal(ns, argv)?;
        self.note_read(&Probe::Exec { ns: ns.clone(), cmd: argv.to_vec() }, &format!("exit code {code}"));
        Ok(code)
    }

    /// Starts a background process; it is stopped on rollback.
    ///
    /// Journal first here too: the entry (with the process's environment mark as its
    /// undo) is on disk before the process starts; once it runs, its pid and start
    /// time replace the mark.
    pub fn spawn(&mut self, ns: &NsRef, argv: &[String]) -> Result<u32> {
        self.before_process(ns, argv)?;
        // It keeps running: it can change links at any time.
        self.distrust_known();
        let mark = format!("{}:{}:{}", self.mark(), std::process::id(), self.journal.next_seq());
        let spawn = |pid, start| Op::Spawn { ns: ns.clone(), cmd: argv.to_vec(), pid, start, mark: mark.clone() };
        let seq = self.journal.begin(&spawn(0, 0), &[Op::StopMarked { mark: mark.clone() }])?;
        self.notify_change(&spawn(0, 0));
        match self.backend.spawn(ns, argv, &mark) {
            Ok((pid, start)) => {
                self.journal.amend(seq, Some(spawn(pid, start)), vec![Op::Kill { pid, start }])?;
                self.journal.mark(seq, State::Done)?;
                Ok(pid)
            }
            Err(e) => {
                self.journal.mark(seq, State::Failed)?;
                Err(e)
            }
        }
    }

    fn spawned(&self, pid: u32) -> Option<u64> {
        self.journal.entries().iter().find_map(|e| match &e.op {
            Op::Spawn { pid: p, start, .. } if *p == pid && e.live() => Some(*start),
            _ => None,
        })
    }

    pub fn kill(&mut self, pid: u32) -> Result<()> {
        let start =
            self.spawned(pid).ok_or_else(|| Error::invalid(format!("process {pid} was not started by this run")))?;
        self.change(Op::Kill { pid, start }, vec![])
    }

    pub fn wait(&mut self, pid: u32) -> Result<i32> {
        self.backend.wait(pid)
    }

    pub fn ping(&mut self, ns: &NsRef, addr: IpAddr, count: u32, timeout: Duration) -> Result<bool> {
        self.settle()?;
        self.require_ns(ns)?;
        self.check_interrupt()?;
        let ok = self.backend.ping(ns, addr, count, timeout)?;
        self.note_read(&Probe::Ping { ns: ns.clone(), addr, count, timeout }, &ok.to_string());
        Ok(ok)
    }

    pub fn tcp(&mut self, ns: &NsRef, addr: IpAddr, port: u16, timeout: Duration) -> Result<bool> {
        self.settle()?;
        self.require_ns(ns)?;
        self.check_interrupt()?;
        let ok = self.backend.tcp(ns, addr, port, timeout)?;
        self.note_read(
            &Probe::Tcp { ns: ns.clone(), addr, port, timeout_secs: timeout.as_secs().max(1) },
            &ok.to_string(),
        );
        Ok(ok)
    }
}

/// " (ip6tables)" for IPv6, to name the rule set in messages.
fn in_family(fam: Family) -> &'static str {
    match fam {
        Family::Ipv4 => "",
        Family::Ipv6 => " (ip6tables)",
    }
}

/// What a rollback asks before it undoes what other live topologies may share (the
/// CLI answers from the other records: `state::hand_over`, `state::hand_over_chains`).
pub trait Handover {
    /// A rollback starts (the hand-overs it asks for share one wait for a taker
    /// that is busy).
    fn begin(&mut self) {}
    /// Before a host-wide setting is restored (`undo`): Some(what was done) when
    /// the value to restore went to another topology, which changed it too.
    fn setting(&mut self, undo: &Op) -> Option<String>;
    /// Before the user chains this topology made in the host namespace (`chains`:
    /// table and chain, of `family`) are deleted, with `changes`, op and undo,
    /// oldest first: the chains' creations and this topology's rules that jump to
    /// them. Some(what was done) when a live topology whose rules use them took
    /// them over (it deletes them when it goes down).
    fn chains(&mut self, family: Family, chains: &[(String, String)], changes: &[(Op, Vec<Op>)]) -> Option<String>;
}

/// Whether two changes are of the same setting (sysctl key, chain policy) in the
/// same namespace.
fn same_setting(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (Op::SetSysctl { ns, key, .. }, Op::SetSysctl { ns: n2, key: k2, .. }) => ns == n2 && key == k2,
        (
            Op::FwPolicy { ns, family, table, chain, .. },
            Op::FwPolicy { ns: n2, family: f2, table: t2, chain: c2, .. },
        ) => ns == n2 && family == f2 && table == t2 && chain == c2,
        _ => false,
    }
}

impl Session {
    /// Sends one probe from `from` to `dst` and returns its walk, explained (see
    /// src/trace). Each namespace of the topology (the host and those it made) gets
    /// the probe's trace table for the time of the probe: journaled, then removed.
    pub fn trace(
        &mut self,
        from: &NsRef,
        dst: IpAddr,
        proto: Proto,
        src: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Trace> {
        let live: Vec<Op> = self.journal.entries().iter().filter(|e| e.live()).map(|e| e.op.clone()).collect();
        self.trace_over(&live, from, dst, proto, src, timeout)
    }

    /// `trace` of a topology whose changes (`live`, oldest first) are recorded in
    /// another journal than this session's: a `--sandbox --wait` run's, which that run
    /// holds while it waits. The probe's temporary tables are this session's changes.
    pub fn trace_over(
        &mut self,
        live: &[Op],
        from: &NsRef,
        dst: IpAddr,
        proto: Proto,
        src: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Trace> {
        self.settle()?;
        self.require_ns(from)?;
        self.check_interrupt()?;
        if !dst.is_ipv4() {
            return Err(Error::invalid(format!("trace is IPv4 only ({dst})")));
        }
        if let Some(s) = src.filter(|s| !s.is_ipv4()) {
            return Err(Error::invalid(format!("trace is IPv4 only (src = {s})")));
        }
        let spec = Spec { proto, src, timeout, id: trace_id() };
        let t = match self.backend.trace_mode() {
            Mode::Kernel => self.trace_kernel(netns_of(live), from, dst, &spec)?,
            Mode::Model => self.backend.trace(from, dst, &spec, &[])?,
            Mode::Unavailable(why) => {
                // The model of what this topology made, on a fresh host.
                let mut model = crate::plan::Plan::new(&self.mark());
                for op in live {
                    let _ = model.apply(op);
                }
                let mut t = model.trace(from, dst, &spec, &[])?;
                t.note = Some(format!(
                    "{why}; this is the model's explanation (as `netscript plan` gives it), not the kernel's"
                ));
                t
            }
        };
        self.note_read(&Probe::Trace { ns: from.clone(), addr: dst, proto }, &t.reason);
        Ok(t)
    }

    /// The topology's namespaces: the host, then those it made (and still has), oldest
    /// first.
    pub fn topology_netns(&self) -> Vec<NsRef> {
        netns_of(self.journal.entries().iter().filter(|e| e.live()).map(|e| &e.op))
    }

    /// A trace from the kernel: each namespace of the topology (the host and those it
    /// made) gets the probe's trace table for the time of the probe.
    fn trace_kernel(&mut self, mut nss: Vec<NsRef>, from: &NsRef, dst: IpAddr, spec: &Spec) -> Result<Trace> {
        if !nss.contains(from) {
            nss.push(from.clone());
        }
        let mark = self.journal.entries().len();
        let mut res = Ok(());
        for ns in &nss {
            let on = Op::TraceOn { ns: ns.clone(), proto: spec.proto.name().into(), id: spec.id };
            res = self.change(on, vec![Op::TraceOff { ns: ns.clone(), id: spec.id }]);
            if res.is_err() {
                break;
            }
        }
        let r = res.and_then(|()| self.backend.trace(from, dst, spec, &nss));
        let report = self.undo_since(mark);
        if let Some(f) = report.failures.first() {
            return Err(Error::sys(
                format!("the trace's temporary table was not removed ({}): {}", f.undo.render(), f.error),
                f.error.errno(),
            ));
        }
        r
    }
}

/// The namespaces of a topology that made `live`: the host, then those it made,
/// oldest first.
fn netns_of<'a>(live: impl IntoIterator<Item = &'a Op>) -> Vec<NsRef> {
    let mut nss = vec![NsRef::Host];
    for op in live {
        if let Op::AddNetns { name } = op
            && !nss.contains(&NsRef::named(name.clone()))
        {
            nss.push(NsRef::named(name.clone()));
        }
    }
    nss
}

/// A probe id (source port / ICMP id) unlikely to be in use: in 41000..61000.
fn trace_id() -> u16 {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = N.fetch_add(7919, Ordering::SeqCst);
    (41000 + (t ^ std::process::id().wrapping_mul(2654435761) ^ n) % 20000) as u16
}

pub fn mark_for(topo: &str) -> String {
    format!("netscript:{topo}")
}
