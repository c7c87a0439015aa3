//! Fault injection for the tests of rollback and crash recovery, as a back-end
//! decorator: `Faulty` wraps the real back end and fails or crashes at the k-th
//! change. src/cmd builds it only when a test sets the switch
//! (NETSCRIPT_FAIL_AFTER=k, NETSCRIPT_CRASH_AT=...); the session knows nothing of it.
//!
//! The changes are counted as `-v` prints them: the session's observer stream
//! (`Faults::counter`) numbers each change it hands to the back end, and the
//! decorator acts on the back-end call that follows. Undos during rollback are not
//! reported to observers: they are numbered apart (every change the back end is
//! given that was not reported), for NETSCRIPT_FAIL_UNDO=k (the k-th undo fails, once:
//! a second `down` is another process) and NETSCRIPT_CRASH_AT=after-undo:K.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::backend::{Backend, LinkInfo};
use crate::error::{Error, Result};
use crate::firewall::Family;
use crate::model::{NsRef, Route};
use crate::observer::Observer;
use crate::op::Op;
use crate::sys::process::ExecResult;

/// What to inject.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Every change after the k-th fails.
    pub fail_after: Option<u64>,
    /// Where to die (SIGABRT): `before-apply:K` (journaled, not applied),
    /// `after-apply:K` (applied, not marked done), `spawned` (a process runs, its
    /// pid not yet journaled), `after-undo:K` (the K-th undo made, not marked
    /// undone: a crash in the middle of a rollback or `down`); without `:K`, at the
    /// first such point.
    pub crash_at: Option<String>,
    /// The k-th undo fails (counted from 1), without being made.
    pub fail_undo: Option<u64>,
}

impl Faults {
    /// From NETSCRIPT_FAIL_AFTER / NETSCRIPT_CRASH_AT; None when neither is set.
    pub fn from_env() -> Option<Faults> {
        let f = Faults {
            fail_after: std::env::var("NETSCRIPT_FAIL_AFTER").ok().and_then(|v| v.parse().ok()),
            crash_at: std::env::var("NETSCRIPT_CRASH_AT").ok(),
            fail_undo: std::env::var("NETSCRIPT_FAIL_UNDO").ok().and_then(|v| v.parse().ok()),
        };
        (f.fail_after.is_some() || f.crash_at.is_some() || f.fail_undo.is_some()).then_some(f)
    }
}

#[derive(Default)]
struct Count {
    /// Changes reported so far.
    seen: u64,
    /// The numbers of reported changes the back end has not been handed yet.
    pending: VecDeque<u64>,
}

/// Counts the changes the session reports (see the module's comment).
struct Counter(Rc<RefCell<Count>>);

impl Observer for Counter {
    fn change(&mut self, _op: &Op) {
        let mut c = self.0.borrow_mut();
        c.seen += 1;
        let k = c.seen;
        c.pending.push_back(k);
    }
}

/// A back end that fails or crashes where `Faults` says, and otherwise passes every
/// call to the one it wraps.
pub struct Faulty<B: Backend> {
    inner: B,
    faults: Faults,
    count: Rc<RefCell<Count>>,
    /// Undos (changes not reported) given to the back end so far.
    undos: u64,
}

impl<B: Backend> Faulty<B> {
    pub fn new(inner: B, faults: Faults) -> Self {
        Faulty { inner, faults, count: Rc::default(), undos: 0 }
    }

    /// The observer to install on the session, which numbers the changes.
    pub fn counter(&self) -> Box<dyn Observer> {
        Box::new(Counter(self.count.clone()))
    }

    /// The number of the change this back-end call makes (None: not a counted
    /// change, e.g. an undo).
    fn next(&self) -> Option<u64> {
        self.count.borrow_mut().pending.pop_front()
    }

    /// Dies on the spot (SIGABRT) when NETSCRIPT_CRASH_AT names this point.
    fn crash_point(&self, point: &str, k: u64) {
        if let Some(at) = &self.faults.crash_at
            && (at == point || *at == format!("{point}:{k}"))
        {
            std::process::abort();
        }
    }

    /// Numbers an undo: Err when NETSCRIPT_FAIL_UNDO names it.
    fn undo(&mut self, op: &Op) -> (u64, Result<()>) {
        self.undos += 1;
        let k = self.undos;
        match self.faults.fail_undo {
            Some(n) if n == k => (
                k,
                Err(Error::sys(
                    format!("{}: injected failure of undo {k} (NETSCRIPT_FAIL_UNDO={n})", op.render()),
                    None,
                )),
            ),
            _ => (k, Ok(())),
        }
    }

    /// A batch of undos: the one NETSCRIPT_FAIL_UNDO names is left out and fails;
    /// the rest go to the wrapped back end together (a crash `after-undo:K` for any K
    /// of the batch comes after all of it).
    fn undo_batch(&mut self, ops: &[Op], stop: bool) -> Vec<Result<()>> {
        let numbered: Vec<(u64, Result<()>)> = ops.iter().map(|op| self.undo(op)).collect();
        let given: Vec<Op> =
            ops.iter().zip(&numbered).filter(|(_, (_, r))| r.is_ok()).map(|(op, _)| op.clone()).collect();
        let mut made = self.inner.apply_batch(&given, stop).into_iter();
        let last = numbered.iter().map(|(k, _)| *k).collect::<Vec<_>>();
        let results = numbered.into_iter().map(|(_, r)| r.and_then(|()| made.next().unwrap_or(Ok(())))).collect();
        for k in last {
            self.crash_point("after-undo", k);
        }
        results
    }

    fn injected(&self, op: &Op, k: u64) -> Result<()> {
        match self.faults.fail_after {
            Some(n) if k > n => Err(Error::sys(
                format!("{}: injected failure at change {k} (NETSCRIPT_FAIL_AFTER={n})", op.render()),
                None,
            )),
            _ => Ok(()),
        }
    }
}

impl<B: Backend> Backend for Faulty<B> {
    fn apply(&mut self, op: &Op) -> Result<()> {
        let Some(k) = self.next() else {
            let (u, injected) = self.undo(op);
            injected?;
            self.inner.apply(op)?;
            self.crash_point("after-undo", u);
            return Ok(());
        };
        self.crash_point("before-apply", k);
        self.injected(op, k)?;
        self.inner.apply(op)?;
        self.crash_point("after-apply", k);
        Ok(())
    }

    /// Counted changes past the limit fail; the ones before it go to the wrapped
    /// back end together, as they would without the decorator.
    /// Made now, through `apply_batch` (its injected failures and crash points).
    fn start_batch(&mut self, ops: Vec<Op>) -> crate::backend::Pending {
        crate::backend::Pending::Done(self.apply_batch(&ops, false))
    }

    fn apply_batch(&mut self, ops: &[Op], stop: bool) -> Vec<Result<()>> {
        let ks: Vec<Option<u64>> = ops.iter().map(|_| self.next()).collect();
        if ks.iter().all(Option::is_none) {
            return self.undo_batch(ops, stop);
        }
        // A crash before the batch: all of it journaled, none of it made.
        for k in ks.iter().flatten() {
            self.crash_point("before-apply", *k);
        }
        let ok = ops.iter().zip(&ks).take_while(|(op, k)| k.is_none_or(|k| self.injected(op, k).is_ok())).count();
        let mut results = self.inner.apply_batch(&ops[..ok], stop);
        for (k, r) in ks.iter().zip(&results) {
            if let (Some(k), Ok(())) = (k, r) {
                self.crash_point("after-apply", *k);
            }
        }
        results.extend(ops[ok..].iter().zip(&ks[ok..]).map(|(op, k)| match k {
            Some(k) => self.injected(op, *k),
            None => Ok(()),
        }));
        results
    }

    fn spawn(&mut self, ns: &NsRef, argv: &[String], mark: &str) -> Result<(u32, u64)> {
        if let Some(k) = self.next() {
            let op = Op::Spawn { ns: ns.clone(), cmd: argv.to_vec(), pid: 0, start: 0, mark: mark.into() };
            self.injected(&op, k)?;
        }
        let r = self.inner.spawn(ns, argv, mark)?;
        self.crash_point("spawned", 0);
        Ok(r)
    }

    fn netns_exists(&mut self, name: &str) -> bool {
        self.inner.netns_exists(name)
    }
    fn netns_list(&mut self) -> Vec<String> {
        self.inner.netns_list()
    }
    fn link(&mut self, ns: &NsRef, name: &str) -> Result<Option<LinkInfo>> {
        self.inner.link(ns, name)
    }
    fn quiesce(&mut self, del: &Op) -> Result<()> {
        self.inner.quiesce(del)
    }
    fn hold_deletions(&mut self, on: bool) {
        self.inner.hold_deletions(on)
    }
    fn link_there(&mut self, ns: &NsRef, name: &str) -> Result<bool> {
        self.inner.link_there(ns, name)
    }

    fn links(&mut self, ns: &NsRef) -> Result<Vec<LinkInfo>> {
        self.inner.links(ns)
    }
    fn find_route(&mut self, ns: &NsRef, r: &Route) -> Result<Option<Route>> {
        self.inner.find_route(ns, r)
    }
    fn sysctl_get(&mut self, ns: &NsRef, key: &str) -> Result<String> {
        self.inner.sysctl_get(ns, key)
    }
    fn fw_policy(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<String> {
        self.inner.fw_policy(ns, fam, table, chain)
    }
    fn fw_rules(&mut self, ns: &NsRef, fam: Family, table: &str, chain: Option<&str>) -> Result<Vec<String>> {
        self.inner.fw_rules(ns, fam, table, chain)
    }
    fn fw_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str, rule: &[String]) -> Result<bool> {
        self.inner.fw_exists(ns, fam, table, chain, rule)
    }
    fn fw_exist_all(&mut self, ns: &NsRef, fam: Family, rules: &[crate::firewall::RuleAt<'_>]) -> Result<Vec<bool>> {
        self.inner.fw_exist_all(ns, fam, rules)
    }
    fn fw_chain_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<bool> {
        self.inner.fw_chain_exists(ns, fam, table, chain)
    }
    fn exec(&mut self, ns: &NsRef, argv: &[String], timeout: Option<Duration>) -> Result<ExecResult> {
        self.inner.exec(ns, argv, timeout)
    }
    fn wait(&mut self, pid: u32) -> Result<i32> {
        self.inner.wait(pid)
    }
    fn ping(&mut self, ns: &NsRef, addr: IpAddr, count: u32, timeout: Duration) -> Result<bool> {
        self.inner.ping(ns, addr, count, timeout)
    }
    fn tcp(&mut self, ns: &NsRef, addr: IpAddr, port: u16, timeout: Duration) -> Result<bool> {
        self.inner.tcp(ns, addr, port, timeout)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn routes(&mut self, ns: &NsRef) -> Result<Vec<Route>> {
        self.inner.routes(ns)
    }
    fn marked_processes(&mut self) -> Vec<(u32, String, String)> {
        self.inner.marked_processes()
    }
    fn marked_qdiscs(&mut self, ns: &NsRef) -> Result<Vec<(String, u16)>> {
        self.inner.marked_qdiscs(ns)
    }
    fn alive(&mut self, pid: u32, start: u64) -> bool {
        self.inner.alive(pid, start)
    }
    fn exec_on_terminal(&mut self, ns: &NsRef, argv: &[String]) -> Result<i32> {
        self.inner.exec_on_terminal(ns, argv)
    }
    fn no_link_message(&self, ns: &NsRef, name: &str) -> Option<String> {
        self.inner.no_link_message(ns, name)
    }
    fn root_qdisc(&mut self, ns: &NsRef, dev: &str) -> Result<crate::qdisc::RootQdisc> {
        self.inner.root_qdisc(ns, dev)
    }
    fn bridge_opts(&mut self, ns: &NsRef, name: &str) -> Result<crate::op::BridgeOpts> {
        self.inner.bridge_opts(ns, name)
    }
    fn port_flags(&mut self, ns: &NsRef, dev: &str) -> Result<crate::op::PortFlags> {
        self.inner.port_flags(ns, dev)
    }
    fn trace_mode(&mut self) -> crate::trace::Mode {
        self.inner.trace_mode()
    }
    fn trace(
        &mut self,
        from: &NsRef,
        dst: std::net::IpAddr,
        spec: &crate::trace::Spec,
        nss: &[NsRef],
    ) -> Result<crate::trace::Trace> {
        self.inner.trace(from, dst, spec, nss)
    }
    fn reserve_index(&mut self, ns: &NsRef, name: &str) -> Result<Option<u32>> {
        self.inner.reserve_index(ns, name)
    }
    fn netns_id(&mut self, name: &str) -> Option<crate::model::NsId> {
        self.inner.netns_id(name)
    }
    fn processes_in(&mut self, ids: &[crate::model::NsId]) -> Vec<crate::model::NsProcess> {
        self.inner.processes_in(ids)
    }
    fn link_index(&mut self, ns: &NsRef, name: &str) -> Result<Option<u32>> {
        self.inner.link_index(ns, name)
    }
    fn batches_firewall(&self) -> bool {
        self.inner.batches_firewall()
    }

    fn pairs_link_changes(&self) -> bool {
        self.inner.pairs_link_changes()
    }

    fn refuses_duplicates(&self) -> bool {
        self.inner.refuses_duplicates()
    }

    fn firewall_tool(&self) -> Option<String> {
        self.inner.firewall_tool()
    }

    fn prefer_firewall_tool(&mut self, tool: &str) {
        self.inner.prefer_firewall_tool(tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decorator must hand every read on to the back end it wraps: a `Backend`
    /// method with a default body that `Faulty` does not forward would silently
    /// answer with the default under fault injection (identities, qdiscs, traces).
    #[test]
    fn every_backend_method_is_forwarded() {
        let names = |src: &str, from: &str, to: &str| -> Vec<String> {
            let body = &src[src.find(from).expect("start")..];
            let body = &body[..body.find(to).unwrap_or(body.len())];
            body.lines()
                .filter_map(|l| l.trim_start().strip_prefix("fn "))
                .map(|l| l.split(['(', '<']).next().unwrap_or("").to_string())
                .collect()
        };
        let wanted = names(include_str!("backend.rs"), "pub trait Backend", "\n}\n");
        let forwarded = names(include_str!("faults.rs"), "impl<B: Backend> Backend for Faulty<B>", "\n}\n");
        assert!(wanted.len() > 20, "{wanted:?}");
        for w in &wanted {
            assert!(forwarded.contains(w), "Faulty does not forward Backend::{w}");
        }
    }
    use crate::journal::{Journal, Meta};
    use crate::plan::Plan;
    use crate::session::Session;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// A session on the plan model wrapped in `Faulty` (no root needed).
    fn session(faults: Faults) -> Session {
        let faulty = Faulty::new(Plan::new("netscript:t"), faults);
        let counter = faulty.counter();
        let j = Journal::in_memory(Meta { name: "t".into(), ..Default::default() });
        let mut s = Session::new(Box::new(faulty), j, "t", Arc::new(AtomicBool::new(false)));
        s.observe(counter);
        s
    }

    #[test]
    fn fails_every_change_after_k_but_never_an_undo() {
        let mut s = session(Faults { fail_after: Some(2), ..Default::default() });
        s.netns_add("a").unwrap();
        s.netns_add("b").unwrap();
        let e = s.netns_add("c").unwrap_err().to_string();
        assert!(e.contains("injected failure at change 3 (NETSCRIPT_FAIL_AFTER=2)"), "{e}");
        assert!(s.netns_add("d").is_err());
        // Reads pass through; the rollback's undos are not counted, so they all work.
        assert_eq!(s.netns_list(), vec!["a", "b"]);
        let r = s.rollback();
        assert!(r.complete(), "{:?}", r.failures);
        assert_eq!(r.changes, 2);
        assert!(s.netns_list().is_empty());
    }

    #[test]
    fn a_batch_makes_the_changes_before_the_limit() {
        let mut s = session(Faults { fail_after: Some(2), ..Default::default() });
        let ns = s.netns_add("a").unwrap();
        s.fw_batch_begin().unwrap();
        s.fw_append(&ns, Family::Ipv4, "filter", "INPUT", "-j ACCEPT").unwrap();
        s.fw_append(&ns, Family::Ipv4, "filter", "INPUT", "-j DROP").unwrap();
        let e = s.fw_batch_end(true).unwrap_err().to_string();
        assert!(e.contains("injected failure at change 3"), "{e}");
        let rules = s.fw_rules(&ns, Family::Ipv4, "filter").unwrap();
        assert_eq!(rules.iter().filter(|l| l.starts_with("-A ")).count(), 1, "{rules:?}");
    }

    #[test]
    fn without_limit_nothing_fails() {
        let mut s = session(Faults::default());
        for n in ["a", "b", "c"] {
            s.netns_add(n).unwrap();
        }
        assert_eq!(s.netns_list().len(), 3);
    }
}
