//! What a session needs from the system it changes. `Kernel` is the real one; the
//! plan back end models the system instead (it prints, it does not touch).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::error::Result;
use crate::firewall::{Family, RuleAt};
use crate::model::{NsRef, Route};
use crate::op::{BridgeOpts, Op, PortFlags};
use crate::qdisc::RootQdisc;
use crate::sys::process::ExecResult;
use crate::trace::{Mode, Spec, Trace};

/// The "errno" of a change the back end did not make because an earlier one in the
/// same batch was refused.
pub(crate) const NOT_MADE: nix::errno::Errno = nix::errno::Errno::ECANCELED;

/// The result of a change not made because an earlier one in its batch was refused.
pub fn not_made() -> crate::error::Error {
    crate::error::Error::sys("not made: an earlier change in the same batch was refused", Some(NOT_MADE))
}

/// A batch started by `Backend::start_batch`: its results, or the thread making them.
pub enum Pending {
    Done(Vec<Result<()>>),
    Running { thread: std::thread::JoinHandle<Vec<Result<()>>>, len: usize },
}

impl Pending {
    /// The results, one per change, in order (waiting for the thread).
    pub fn wait(self) -> Vec<Result<()>> {
        match self {
            Pending::Done(r) => r,
            Pending::Running { thread, len } => thread.join().unwrap_or_else(|_| {
                (0..len).map(|_| Err(crate::error::Error::sys("the firewall batch's thread panicked", None))).collect()
            }),
        }
    }
}

/// A link as the session sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkInfo {
    pub name: String,
    pub up: bool,
    pub master: Option<String>,
    pub mtu: u32,
    pub kind: Option<String>,
    pub alias: Option<String>,
    pub addrs: Vec<IpNet>,
    /// The IPv6 addresses of `addrs` added without duplicate address detection
    /// (IFA_F_NODAD), so that a restored address gets its flag back.
    pub nodad: Vec<IpNet>,
    /// The addresses of `addrs` that carry a protocol (IFA_PROTO), with it: a
    /// restored address gets it back.
    pub protos: Vec<(IpNet, u8)>,
}

pub trait Backend {
    /// Makes the change. Errors name the object and the reason.
    fn apply(&mut self, op: &Op) -> Result<()>;

    /// Makes several changes, one result each, in order. A back end may do them in
    /// one go (the kernel back end sends consecutive firewall changes through one
    /// `iptables-restore` per table); the results are the same as applying them one
    /// by one. With `stop`, the first refusal ends it: a change after it is either
    /// not made (an error with errno `NOT_MADE`) or was made together with
    /// earlier ones (Ok; the caller takes it back).
    fn apply_batch(&mut self, ops: &[Op], stop: bool) -> Vec<Result<()>> {
        let mut failed = false;
        ops.iter()
            .map(|op| {
                if failed && stop {
                    return Err(not_made());
                }
                let r = self.apply(op);
                failed |= r.is_err();
                r
            })
            .collect()
    }

    /// Starts `apply_batch(ops, false)` so that it may run while the caller goes on
    /// (the kernel runs a batch of firewall changes on a thread: a rollback's
    /// firewall undos then overlap the link deletions and the kernel's cleanup of
    /// the namespaces); the results come from `Pending::wait`. Only for changes that
    /// commute with whatever the caller does meanwhile. By default they are made now.
    fn start_batch(&mut self, ops: Vec<Op>) -> Pending {
        Pending::Done(self.apply_batch(&ops, false))
    }

    /// Whether `apply_batch` makes a link's master and "up" in one request when they
    /// come together (the kernel); the session then holds a master change back one
    /// call to see whether the link's `up` follows (`Session::hold_link_changes`).
    fn pairs_link_changes(&self) -> bool {
        false
    }

    /// Whether firewall changes are queued and made together by default (the kernel:
    /// one process per rule is slow). A back end that shows each change where the
    /// script makes it (plan) says no.
    fn batches_firewall(&self) -> bool {
        false
    }

    /// Whether applying a change refuses a link name or a route destination that is
    /// taken (the kernel: EEXIST), so that the session need not look first. A back
    /// end that does not (plan) is asked first.
    fn refuses_duplicates(&self) -> bool {
        false
    }

    /// Chooses the index the link `name` about to be created in `ns` will get, so that
    /// it can be journaled before the link exists: a link that a crash left unmarked
    /// (its mark is a second request) is still provably the one this run made. None
    /// where the back end lets the system choose.
    fn reserve_index(&mut self, _ns: &NsRef, _name: &str) -> Result<Option<u32>> {
        Ok(None)
    }

    /// The firewall tool in use, once one was found ("iptables-nft", ...): recorded
    /// in the journal so that `down` does not detect it again.
    fn firewall_tool(&self) -> Option<String> {
        None
    }

    /// The firewall tool a record says its run used (`firewall_tool`): the kernel
    /// back end uses it from now on unless told which or found one already
    /// (`Firewall::prefer`).
    fn prefer_firewall_tool(&mut self, _tool: &str) {}

    fn netns_exists(&mut self, name: &str) -> bool;
    fn netns_list(&mut self) -> Vec<String>;
    fn link(&mut self, ns: &NsRef, name: &str) -> Result<Option<LinkInfo>>;
    fn links(&mut self, ns: &NsRef) -> Result<Vec<LinkInfo>>;
    /// From `hold_deletions(true)` to `hold_deletions(false)`, the back end may keep
    /// the namespaces it deletes alive (gone by name, their links still there) and
    /// let them go together at the end: the kernel then dismantles them in one go.
    fn hold_deletions(&mut self, _on: bool) {}
    /// Prepares `del` (a `DelLink` a rollback makes after deleting namespaces whose
    /// links may be its ports): the kernel back end takes a bridge of this topology
    /// down, so that the kernel releases its ports cheaply, on a thread while the
    /// caller goes on (preparing its rollback), done when `hold_deletions` returns.
    /// Not journaled: the link is deleted next (a later `down` does it if that
    /// fails).
    fn quiesce(&mut self, _del: &Op) -> Result<()> {
        Ok(())
    }
    /// Whether a link named `name` is in `ns` now. The kernel back end asks without
    /// waiting for the network lock (which the kernel's cleanup of deleted namespaces
    /// holds): what a wait for links to go needs.
    fn link_there(&mut self, ns: &NsRef, name: &str) -> Result<bool> {
        Ok(self.link(ns, name)?.is_some())
    }
    /// The route in the main table that matches `r` (its dest, and via / dev /
    /// metric where given), as the system holds it.
    fn find_route(&mut self, ns: &NsRef, r: &Route) -> Result<Option<Route>>;
    fn sysctl_get(&mut self, ns: &NsRef, key: &str) -> Result<String>;
    /// The root qdisc of link `dev`.
    fn root_qdisc(&mut self, ns: &NsRef, dev: &str) -> Result<RootQdisc>;
    /// The options of bridge `name` (every field set).
    fn bridge_opts(&mut self, ns: &NsRef, name: &str) -> Result<BridgeOpts>;
    /// The flags of bridge port `dev` (every field set).
    fn port_flags(&mut self, ns: &NsRef, dev: &str) -> Result<PortFlags>;
    fn fw_policy(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<String>;
    fn fw_rules(&mut self, ns: &NsRef, fam: Family, table: &str, chain: Option<&str>) -> Result<Vec<String>>;
    fn fw_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str, rule: &[String]) -> Result<bool>;
    /// `fw_exists` of each rule (table, chain, rule) of one namespace and family.
    fn fw_exist_all(&mut self, ns: &NsRef, fam: Family, rules: &[RuleAt<'_>]) -> Result<Vec<bool>> {
        rules.iter().map(|(t, c, r)| self.fw_exists(ns, fam, t, c, r)).collect()
    }
    fn fw_chain_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<bool>;

    fn exec(&mut self, ns: &NsRef, argv: &[String], timeout: Option<Duration>) -> Result<ExecResult>;
    /// Runs a command on this process's terminal (stdin, stdout, stderr not
    /// captured), for interactive programs; returns its exit code.
    fn exec_on_terminal(&mut self, _ns: &NsRef, _argv: &[String]) -> Result<i32> {
        Err(crate::error::Error::invalid(format!("{} cannot run a command on the terminal", self.describe())))
    }
    /// Starts a background process; returns its pid and start time.
    /// `mark` goes into the process's environment (NETSCRIPT_OWNER), to find it by.
    fn spawn(&mut self, ns: &NsRef, argv: &[String], mark: &str) -> Result<(u32, u64)>;
    /// Waits for a process this back end spawned; returns its exit code.
    fn wait(&mut self, pid: u32) -> Result<i32>;
    fn ping(&mut self, ns: &NsRef, addr: IpAddr, count: u32, timeout: Duration) -> Result<bool>;
    fn tcp(&mut self, ns: &NsRef, addr: IpAddr, port: u16, timeout: Duration) -> Result<bool>;
    /// A short description for messages ("kernel (iptables-nft)", "plan").
    fn describe(&self) -> String;

    /// The routes of the main table (both families), as `find_route` returns them.
    fn routes(&mut self, _ns: &NsRef) -> Result<Vec<Route>> {
        Ok(Vec::new())
    }
    /// The identity of a named namespace (recorded at creation, checked before
    /// deleting); None where the back end has none.
    fn netns_id(&mut self, _name: &str) -> Option<crate::model::NsId> {
        None
    }
    /// The processes in the network namespaces `ids` now; empty where the back end
    /// cannot tell (a rollback names those that keep a deleted namespace alive).
    fn processes_in(&mut self, _ids: &[crate::model::NsId]) -> Vec<crate::model::NsProcess> {
        Vec::new()
    }
    /// The index of a link (recorded at creation, checked before deleting).
    fn link_index(&mut self, _ns: &NsRef, _name: &str) -> Result<Option<u32>> {
        Ok(None)
    }
    /// How this back end answers `trace` (asked before each trace).
    fn trace_mode(&mut self) -> Mode {
        Mode::Unavailable(format!("{} cannot trace", self.describe()))
    }
    /// Sends one probe from `from` to `dst` and explains its walk (`trace`). The
    /// session has put the probe's trace table (`Op::TraceOn`) into each of `nss`.
    fn trace(&mut self, _from: &NsRef, _dst: IpAddr, _spec: &Spec, _nss: &[NsRef]) -> Result<Trace> {
        Err(crate::error::Error::invalid(format!("{} cannot trace", self.describe())))
    }
    /// Processes carrying a NETSCRIPT_OWNER mark: (pid, mark, command line).
    fn marked_processes(&mut self) -> Vec<(u32, String, String)> {
        Vec::new()
    }
    /// The links of `ns` whose root qdisc has one of netscript's handles
    /// (`qdisc::QDISC_HANDLES`): (link, handle).
    fn marked_qdiscs(&mut self, _ns: &NsRef) -> Result<Vec<(String, u16)>> {
        Ok(Vec::new())
    }
    /// Whether the process `pid` that started at `start` still runs.
    fn alive(&mut self, _pid: u32, _start: u64) -> bool {
        false
    }
    /// The error for a link `name` that `ns` does not have, when this back end has
    /// more to say than "no link named ..." (the plan's model starts with only `lo`).
    fn no_link_message(&self, _ns: &NsRef, _name: &str) -> Option<String> {
        None
    }
}
