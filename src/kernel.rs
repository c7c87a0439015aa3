//! The real back end: netlink sockets opened inside each namespace, /proc/sys from
//! inside it, the firewall tool run from a thread that entered it.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use nix::errno::Errno;
use rtnetlink::Handle;

mod fw;

use crate::backend::{Backend, LinkInfo};
use crate::error::{Error, Result};
use crate::fasthash::FastMap;
use crate::firewall::{Family, Firewall, RuleAt};
use crate::model::{NsRef, Route};
use crate::op::{BridgeOpts, Op, PortFlags};
use crate::qdisc::RootQdisc;
use crate::sys::process::{self, ExecResult};
use crate::sys::{netlink as nl, netns, sysctl, tc};
use crate::trace::{self, Spec, Trace};

struct NsCtx {
    /// None for the namespace netscript runs in (no thread needs to enter it).
    fd: Option<OwnedFd>,
    /// The changes that the kernel answers with an ack alone (most of a build).
    acks: nl::Acks,
    /// rtnetlink's connection, for reads (dumps) and the rarer changes; made when
    /// first needed.
    reads: Option<(Handle, tokio::task::JoinHandle<()>)>,
    /// For `link_there` (made when first needed).
    probe: Option<OwnedFd>,
    /// When it was last used (`Kernel::tick`), to close the least recently used.
    used: u64,
}

impl NsCtx {
    /// The fd to enter (None for the namespace netscript runs in).
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }
}

/// How many namespaces keep their fd and netlink sockets open at once. A topology of
/// many namespaces would otherwise hold two or three fds and socket buffers for each
/// (fds and memory grow with it); reopening one costs two `setns` and a socket.
const OPEN_NAMESPACES: usize = 32;

pub struct Kernel {
    rt: tokio::runtime::Runtime,
    host_fd: OwnedFd,
    nss: FastMap<NsRef, NsCtx>,
    tick: u64,
    fw: Arc<dyn Firewall>,
    /// Link indexes by namespace and name, learnt from creations (the index chosen,
    /// or the kernel's echo) and lookups; forgotten when netscript deletes or moves
    /// the link. A stale one (someone else deleted the link) makes the kernel answer
    /// ENODEV, and the name is looked up again.
    idx: FastMap<NsRef, FastMap<String, u32>>,
    /// Indexes chosen for links about to be created (`reserve_index`), by namespace
    /// and name; taken by the creation.
    reserved: FastMap<(NsRef, String), u32>,
    /// The ownership mark put on links (alias).
    mark: String,
    children: FastMap<u32, Child>,
    /// Exit codes of children that ended (so `wait` answers more than once).
    exited: FastMap<u32, i32>,
    cancel: Arc<AtomicBool>,
    log_dir: Option<std::path::PathBuf>,
    /// Namespaces deleted while `hold_deletions` is on, kept alive by their fd
    /// (None: not holding).
    held: Option<Vec<OwnedFd>>,
    /// `held_namespaces_max`, read when holding starts.
    held_max: usize,
    /// Bridges `quiesce` is taking down, each on a thread of its own; waited for
    /// before namespaces are deleted or let go (`hold_deletions`).
    quiescing: Vec<std::thread::JoinHandle<()>>,
}

/// How many deleted namespaces `hold_deletions` keeps at most (one fd each): half
/// the open-file limit (512 at the common 1024; the other half for the rest: at most
/// `OPEN_NAMESPACES` open with their sockets, the firewall tool's pipes). The next
/// deletion releases them (their cleanup starts) and holds again: two cleanups
/// overlapping the deletions between them are slower than one (1000 namespaces
/// held 512 at a time: `down` 1.15 s, median of 5; all held: 0.84 s).
fn held_namespaces_max() -> usize {
    usize::try_from(crate::sys::nofile_limit() / 2).unwrap_or(usize::MAX).max(1)
}

/// A process's exit code; 128 + the signal when a signal ended it, as shells say.
fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

fn not_found_link(ns: &NsRef, name: &str) -> Error {
    Error::sys(format!("no link named \"{name}\" in {ns}"), Some(Errno::ENODEV))
}

/// A master change followed by "up" of the same link (see `Kernel::apply_pair`).
fn master_then_up(ops: &[Op]) -> bool {
    matches!(ops, [Op::SetMaster { ns, dev, master: Some(_) }, Op::SetUp { ns: n, name, up: true }] if ns == n && dev == name)
}

impl Kernel {
    /// `fw`: the firewall driver (`firewall::driver`).
    pub fn new(mark: String, fw: Box<dyn Firewall>, cancel: Arc<AtomicBool>) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let host_fd = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net")?);
        Ok(Kernel {
            rt,
            host_fd,
            nss: FastMap::default(),
            tick: 0,
            fw: Arc::from(fw),
            idx: FastMap::default(),
            reserved: FastMap::default(),
            mark,
            children: FastMap::default(),
            exited: FastMap::default(),
            cancel,
            log_dir: None,
            held: None,
            held_max: 0,
            quiescing: Vec::new(),
        })
    }

    /// Where spawned processes write their output (`<dir>/spawn-PID.log`).
    pub fn set_log_dir(&mut self, dir: Option<std::path::PathBuf>) {
        self.log_dir = dir;
    }

    /// Lets the namespaces `hold_deletions` holds go (the kernel's cleanup of them
    /// starts), once the bridges `quiesce` is taking down are down: their ports are
    /// then released cheaply.
    fn let_go(&mut self) {
        for t in self.quiescing.drain(..) {
            let _ = t.join();
        }
        if let Some(held) = &mut self.held {
            held.clear();
        }
    }

    /// Brings up lo in the namespace netscript runs in (used for a fresh sandbox;
    /// not journaled, the sandbox dies with the process).
    pub fn set_lo_up(&mut self) -> Result<()> {
        self.set_link(&NsRef::Host, "lo", nl::LinkSet { up: Some(true), ..Default::default() })
    }

    fn ctx(&mut self, ns: &NsRef) -> Result<&NsCtx> {
        self.tick += 1;
        if let Some(c) = self.nss.get_mut(ns) {
            c.used = self.tick;
        } else {
            let fd = match ns {
                NsRef::Host => None,
                NsRef::Named(n) => Some(netns::open(n)?),
            };
            let acks = netns::briefly_in(fd.as_ref().map(|f| f.as_fd()), self.host_fd.as_fd(), nl::Acks::open)??;
            self.adopt(ns, fd, acks);
        }
        Ok(&self.nss[ns])
    }

    /// Keeps `fd` and `acks` as what this run holds open for `ns` (see `ctx`),
    /// closing the least recently used namespace's when `OPEN_NAMESPACES` are open.
    fn adopt(&mut self, ns: &NsRef, fd: Option<OwnedFd>, acks: nl::Acks) {
        if self.nss.len() >= OPEN_NAMESPACES
            && let Some(old) =
                self.nss.iter().filter(|(k, _)| **k != NsRef::Host).min_by_key(|(_, c)| c.used).map(|(k, _)| k.clone())
        {
            self.close(&old);
        }
        self.nss.insert(ns.clone(), NsCtx { fd, acks, reads: None, probe: None, used: self.tick });
    }

    /// Forgets a namespace: closes our fd and netlink sockets, which would otherwise
    /// keep a deleted namespace alive.
    fn forget(&mut self, ns: &NsRef) {
        self.idx.remove(ns);
        self.close(ns);
    }

    /// Closes our fd and netlink sockets for a namespace (reopened when needed).
    fn close(&mut self, ns: &NsRef) {
        if let Some((h, conn)) = self.nss.remove(ns).and_then(|c| c.reads) {
            drop(h);
            conn.abort();
            let _ = self.rt.block_on(conn);
        }
    }

    fn nl(&mut self, ns: &NsRef) -> Result<Handle> {
        self.ctx(ns)?;
        let c = self.nss.get_mut(ns).expect("just opened");
        if let Some((h, _)) = &c.reads {
            return Ok(h.clone());
        }
        let rt = self.rt.handle().clone();
        let connect = move || {
            let _g = rt.enter();
            nl::connect()
        };
        let (conn, handle) = netns::briefly_in(c.fd(), self.host_fd.as_fd(), connect)??;
        let conn = self.rt.spawn(conn);
        c.reads = Some((handle.clone(), conn));
        Ok(handle)
    }

    /// The fd to enter for `ns`, borrowed from the cache (None for the host).
    fn fd(&mut self, ns: &NsRef) -> Result<Option<BorrowedFd<'_>>> {
        Ok(self.ctx(ns)?.fd())
    }

    /// An fd for `ns` usable as a move / peer target (the host included).
    fn target_fd(&mut self, ns: &NsRef) -> Result<i32> {
        Ok(match ns {
            NsRef::Host => self.host_fd.as_raw_fd(),
            _ => self.ctx(ns)?.fd.as_ref().expect("named namespaces have an fd").as_raw_fd(),
        })
    }

    fn index(&mut self, ns: &NsRef, name: &str) -> Result<u32> {
        if let Some(i) = self.idx.get(ns).and_then(|m| m.get(name)) {
            return Ok(*i);
        }
        let h = self.nl(ns)?;
        let i =
            self.rt.block_on(nl::link_by_name(&h, name))?.map(|l| l.index).ok_or_else(|| not_found_link(ns, name))?;
        self.learn(ns, name, i);
        Ok(i)
    }

    fn learn(&mut self, ns: &NsRef, name: &str, index: u32) {
        self.idx.entry(ns.clone()).or_default().insert(name.to_string(), index);
    }

    fn unlearn(&mut self, ns: &NsRef, name: &str) {
        if let Some(m) = self.idx.get_mut(ns) {
            m.remove(name);
        }
    }

    /// Runs `f` with the indexes of the links named in `names` (all in `ns`). When
    /// the kernel answers "no such device" and an index came from the cache, the
    /// names are looked up again and `f` runs once more.
    fn with_indexes<T>(&mut self, ns: &NsRef, names: &[&str], f: impl Fn(&mut Self, &[u32]) -> Result<T>) -> Result<T> {
        let cached = names.iter().all(|n| self.idx.get(ns).is_some_and(|m| m.contains_key(*n)));
        let idx = names.iter().map(|n| self.index(ns, n)).collect::<Result<Vec<_>>>()?;
        match f(self, &idx) {
            Err(e) if cached && e.errno() == Some(Errno::ENODEV) => {
                for n in names {
                    self.unlearn(ns, n);
                }
                let idx = names.iter().map(|n| self.index(ns, n)).collect::<Result<Vec<_>>>()?;
                f(self, &idx)
            }
            r => r,
        }
    }

    /// The socket for changes answered by an ack alone, in `ns`.
    fn acks(&mut self, ns: &NsRef) -> Result<&mut nl::Acks> {
        self.ctx(ns)?;
        Ok(&mut self.nss.get_mut(ns).expect("just opened").acks)
    }

    fn set_link(&mut self, ns: &NsRef, name: &str, s: nl::LinkSet<'_>) -> Result<()> {
        nl::set_link(self.acks(ns)?, name, s)
    }

    /// Creates a link (`msg`, made in `ns`); returns its index (see `nl::create_link`).
    fn create_link(&mut self, ns: &NsRef, msg: rtnetlink::packet_route::link::LinkMessage) -> Result<Option<u32>> {
        if msg.header.index != 0 {
            return nl::create_link(self.acks(ns)?, msg);
        }
        let h = self.nl(ns)?;
        self.rt.block_on(nl::create_link_echo(&h, msg))
    }

    /// The link named `name` in `ns` if it is the one this topology created: marked,
    /// or with the index chosen for it (`ifindex`) and no alias at all (a crash
    /// between its creation and its mark). Otherwise `Error::NotOurs`.
    fn own_link(&mut self, ns: &NsRef, name: &str, ifindex: Option<u32>) -> Result<nl::LinkState> {
        let h = self.nl(ns)?;
        let l = self.rt.block_on(nl::link_by_name(&h, name))?.ok_or_else(|| not_found_link(ns, name))?;
        let marked = self.mark.is_empty() || l.alias.as_deref() == Some(self.mark.as_str());
        let unmarked_ours = ifindex == Some(l.index) && l.alias.as_deref().is_none_or(str::is_empty);
        if !(marked || unmarked_ours) || ifindex.is_some_and(|i| i != l.index) {
            return Err(Error::NotOurs(format!(
                "\"{name}\" in {ns} is not the link this topology created ({}); left alone",
                if marked {
                    "another link took its name".to_string()
                } else {
                    format!("it is not marked {}", self.mark)
                }
            )));
        }
        Ok(l)
    }

    /// What a run of firewall changes in `nss` needs (the driver, the namespaces).
    fn fw_run<'a>(&self, nss: impl IntoIterator<Item = &'a NsRef>) -> Result<fw::FwRun> {
        fw::FwRun::new(self.fw.clone(), &self.mark, nss, |ns| self.nss.get(ns).and_then(NsCtx::fd))
    }

    /// Runs a firewall call in `ns`.
    fn with_fw<T>(
        &mut self,
        ns: &NsRef,
        f: impl FnOnce(&dyn Firewall, Option<BorrowedFd<'_>>) -> Result<T>,
    ) -> Result<T> {
        self.ctx(ns)?;
        let fd = self.nss[ns].fd();
        f(self.fw.as_ref(), fd)
    }

    /// A link's master and its "up" (`master_then_up`) in one request, as `ip link
    /// set DEV master BR up`. When the kernel refuses it, they are made again one by
    /// one (both can be made twice: a master set again and an "up" again change
    /// nothing), so that the refusal is that of the change refused alone, named as
    /// alone, and a master made before the refused "up" is reported made. `skip`:
    /// neither is made (an earlier change of the batch was refused).
    fn apply_pair(&mut self, master: &Op, up: &Op, skip: bool) -> (Result<()>, Result<()>) {
        if skip {
            return (Err(crate::backend::not_made()), Err(crate::backend::not_made()));
        }
        let (Op::SetMaster { ns, dev, master: Some(m) }, Op::SetUp { .. }) = (master, up) else {
            return (self.apply(master), self.apply(up));
        };
        let both = self.with_indexes(ns, &[m], |k, i| {
            k.set_link(ns, dev, nl::LinkSet { master: Some(Some(i[0])), up: Some(true), ..Default::default() })
        });
        match both {
            Ok(()) => (Ok(()), Ok(())),
            Err(_) => {
                let a = self.apply(master);
                let b = if a.is_ok() { self.apply(up) } else { Err(crate::backend::not_made()) };
                (a, b)
            }
        }
    }

    /// Puts the ownership mark (alias) on a link just created (`name` in `ns`) and on
    /// the other ends named in `also`. If that fails, the link is deleted again, so a
    /// failed creation leaves nothing behind.
    fn mark_new_link(&mut self, ns: &NsRef, name: &str, also: &[(&NsRef, &String)]) -> Result<()> {
        let mark = self.mark.clone();
        let res = std::iter::once((ns, name))
            .chain(also.iter().map(|(n, m)| (*n, m.as_str())))
            .try_for_each(|(n, m)| self.set_link(n, m, nl::LinkSet { alias: Some(&mark), ..Default::default() }));
        if res.is_err() {
            let h = self.nl(ns)?;
            let _ = self.rt.block_on(nl::del_link_by_name(&h, name));
            self.unlearn(ns, name);
        }
        res
    }

    /// Waits until the IPv6 addresses in the namespaces this run touched are usable.
    /// An address still under duplicate address detection ("tentative") neither
    /// sends nor receives: the ones netscript adds skip it (nodad), but the kernel's
    /// own link-local address goes through it for a second or two after a link comes
    /// up, and until then a router sends no neighbour solicitation there (it has no
    /// source address for it), so forwarded IPv6 is lost. And an address on a link
    /// that just came up answers solicitations only once the kernel has joined its
    /// solicited-node multicast group, up to a second later (nodad or not). A check
    /// right after either would fail. Only links that are up with carrier count
    /// (others wait for carrier), and the wait ends after 3 s whatever happens.
    fn wait_usable_v6(&mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let mut busy = false;
            let nss: Vec<NsRef> = self.nss.keys().cloned().collect();
            for ns in nss {
                let h = self.nl(&ns)?;
                let links = self.rt.block_on(nl::links(&h))?;
                let addrs = self.rt.block_on(nl::all_addrs(&h))?;
                let waiting: Vec<(String, std::net::Ipv6Addr, bool)> = addrs
                    .iter()
                    .filter_map(|(i, a)| {
                        let IpAddr::V6(v) = a.addr.addr() else { return None };
                        let l = links.iter().find(|l| l.index == *i && l.up && l.carrier && !l.no_nd)?;
                        Some((l.name.clone(), v, a.tentative))
                    })
                    .collect();
                if waiting.iter().any(|w| w.2) {
                    busy = true;
                    continue;
                }
                if waiting.is_empty() {
                    continue;
                }
                let fd = self.fd(&ns)?;
                let groups =
                    netns::in_netns(fd, || std::fs::read_to_string("/proc/thread-self/net/igmp6").unwrap_or_default())?;
                busy |= waiting.iter().any(|(dev, a, _)| {
                    let o = a.octets();
                    let sol = format!("ff0200000000000000000001ff{:02x}{:02x}{:02x}", o[13], o[14], o[15]);
                    !groups.lines().any(|l| {
                        let w: Vec<&str> = l.split_whitespace().collect();
                        w.get(1) == Some(&dev.as_str()) && w.get(2) == Some(&sol.as_str())
                    })
                });
            }
            if !busy || std::time::Instant::now() > deadline {
                return Ok(());
            }
            if self.cancel.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Interrupted("a signal"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one `nft` command line in `ns` (a trace's temporary table).
    fn nft(&mut self, ns: &NsRef, cmd: &str) -> Result<()> {
        let cancel = self.cancel.clone();
        let fd = self.fd(ns)?;
        let r = process::exec(fd, &["nft".to_string(), cmd.to_string()], Some(Duration::from_secs(10)), &cancel)?;
        if r.code == 0 {
            return Ok(());
        }
        let err = r.stderr.lines().next().unwrap_or("").trim().to_string();
        if r.code == 127 || r.stderr.contains("command not found") {
            return Err(Error::sys(process::not_installed("nft").unwrap_or_default(), Some(Errno::ENOENT)));
        }
        let errno = err.contains("No such file or directory").then_some(Errno::ENOENT);
        Err(Error::sys(format!("{}nft {cmd:?} in {ns}: {err}", ns.exec_prefix()), errno))
    }

    /// Whether the firewall is iptables-legacy (whose rules nftables cannot trace).
    fn fw_is_legacy(&mut self) -> Result<bool> {
        // The driver's command ("iptables-nft", "iptables-legacy", or "iptables" before
        // its first use), asked for its variant.
        let name = self.fw.describe();
        let cmd = name.split_whitespace().next().unwrap_or("iptables").to_string();
        let out = std::process::Command::new(cmd).arg("-V").output()?;
        Ok(String::from_utf8_lossy(&out.stdout).contains("legacy"))
    }

    fn apply_inner(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::AddNetns { name } => {
                // The namespace's fd and socket for changes are opened while the
                // thread is in it (a script changes what it just made, mostly), and
                // its lo gets the mark (alias) before the name exists: a namespace
                // under the name whose lo is not marked was never made here.
                let mark = self.mark.clone();
                let opened = netns::create(name, self.host_fd.as_fd(), || {
                    let mut acks = nl::Acks::open()?;
                    if !mark.is_empty() {
                        nl::set_link(&mut acks, "lo", nl::LinkSet { alias: Some(&mark), ..Default::default() })
                            .map_err(|e| {
                                let msg = format!("cannot mark namespace \"{name}\" (the alias of its lo): {e}");
                                Error::sys(msg, e.errno())
                            })?;
                    }
                    Ok((netns::open_current().ok(), acks))
                })?;
                // Nothing known of a namespace that had the name before is true of it.
                let ns = NsRef::named(name.clone());
                self.forget(&ns);
                if let (Some(fd), acks) = opened {
                    self.tick += 1;
                    self.adopt(&ns, Some(fd), acks);
                }
                Ok(())
            }
            Op::DelNetns { name, id, marked } => {
                // Opened first: its identity is read from the open file (one lookup of
                // the name fewer), and the file holds the namespace when deletions are
                // held. Unable to open it: deleted all the same, only not held.
                let fd = netns::open(name).ok();
                let have = match &fd {
                    Some(f) => netns::id_of(f.as_fd()),
                    None => netns::id(name),
                };
                if let (Some(want), Some(have)) = (id, have)
                    && !want.is(&have)
                {
                    return Err(Error::NotOurs(format!(
                        "namespace \"{name}\" is not the namespace this topology created (another one took its name); left alone"
                    )));
                }
                // Its identity never recorded (a crash right after its creation, or
                // before it): ours only if its lo has the mark set before the name
                // existed. (An empty file under the name, left by a creation
                // interrupted before its bind mount, is no namespace: removed.)
                if id.is_none()
                    && *marked
                    && fd.as_ref().is_some_and(|f| netns::is_namespace(f.as_fd()))
                    && !self.mark.is_empty()
                {
                    let ns = NsRef::named(name.clone());
                    let h = self.nl(&ns)?;
                    let lo = self.rt.block_on(nl::link_by_name(&h, "lo"))?;
                    self.forget(&ns);
                    if lo.and_then(|l| l.alias).as_deref() != Some(self.mark.as_str()) {
                        return Err(Error::NotOurs(format!(
                            "namespace \"{name}\" is not the namespace this topology created (its lo is not marked {}); left alone",
                            self.mark
                        )));
                    }
                }
                self.forget(&NsRef::named(name.clone()));
                if self.held.as_ref().is_some_and(|held| held.len() >= self.held_max) {
                    self.let_go();
                }
                netns::delete(name)?;
                if let (Some(held), Some(fd)) = (&mut self.held, fd) {
                    held.push(fd);
                }
                Ok(())
            }
            Op::AddVeth { ns, name, peer, peer_ns, queues } => {
                // `ns` opened first: opening `peer_ns` then cannot close it (the least
                // recently used goes), and the creation opens nothing, so `peer_fd` holds.
                self.ctx(ns)?;
                let peer_fd = if peer_ns != ns { Some(self.target_fd(peer_ns)?) } else { None };
                let index = self.reserved.remove(&(ns.clone(), name.clone()));
                let made = self.create_link(ns, nl::veth_msg(name, peer, peer_fd, index, *queues));
                if let Some(i) = index_taken(made, ns, name, index)? {
                    self.learn(ns, name, i);
                }
                self.mark_new_link(ns, name, &[(peer_ns, peer)])
            }
            Op::AddBridge { ns, name } => {
                let index = self.reserved.remove(&(ns.clone(), name.clone()));
                let made = self.create_link(ns, nl::bridge_msg(name, index));
                if let Some(i) = index_taken(made, ns, name, index)? {
                    self.learn(ns, name, i);
                }
                self.mark_new_link(ns, name, &[])
            }
            Op::AddLink { ns, name, link, from } => {
                let lower = match link.lower() {
                    Some(p) => Some(self.index(from, p)?),
                    None => None,
                };
                let target = if from != ns { Some(self.target_fd(ns)?) } else { None };
                let h = self.nl(from)?;
                let index = self.reserved.remove(&(ns.clone(), name.clone()));
                let made = self.rt.block_on(nl::add_kind(&h, name, link, lower, target, index)).map(|()| None);
                index_taken(made, ns, name, index).map_err(|e| missing_kind(e, link))?;
                self.mark_new_link(ns, name, &[])
            }
            Op::SetBridge { ns, name, opts } => {
                let i = self.index(ns, name)?;
                let h = self.nl(ns)?;
                self.rt.block_on(nl::set_bridge_opts(&h, i, opts)).map_err(|e| match (e.errno(), opts.vlan_filtering) {
                    (Some(Errno::EOPNOTSUPP), Some(true)) => {
                        Error::sys(crate::sys::kconfig::NO_VLAN_FILTERING, Some(Errno::EOPNOTSUPP))
                    }
                    _ => e,
                })
            }
            Op::SetBridgePort { ns, dev, flags } => {
                let i = self.index(ns, dev)?;
                let h = self.nl(ns)?;
                self.rt.block_on(nl::set_port_flags(&h, i, flags))
            }
            Op::SetQdisc { ns, dev, qdisc, over } => {
                let fd = self.fd(ns)?;
                if qdisc_undo_done(fd, ns, dev, *over, Some(qdisc))? {
                    return Ok(());
                }
                tc::replace(fd, dev, qdisc)
            }
            Op::DelQdisc { ns, dev, over } => {
                let fd = self.fd(ns)?;
                if qdisc_undo_done(fd, ns, dev, *over, None)? {
                    return Ok(());
                }
                tc::delete_root(fd, dev)
            }
            Op::DelLink { ns, name, ifindex } => {
                self.unlearn(ns, name);
                let l = self.own_link(ns, name, *ifindex)?;
                let h = self.nl(ns)?;
                self.rt.block_on(nl::del_link(&h, l.index))
            }
            Op::MoveLink { ns, name, to } => {
                self.unlearn(ns, name);
                self.unlearn(to, name);
                let h = self.nl(ns)?;
                let fd = self.target_fd(to)?;
                self.rt.block_on(nl::move_link_by_name(&h, name, fd))
            }
            Op::SetUp { ns, name, up } => self.set_link(ns, name, nl::LinkSet { up: Some(*up), ..Default::default() }),
            Op::AddAddr { ns, dev, addr, nodad, proto } => {
                self.with_indexes(ns, &[dev], |k, i| nl::add_addr(k.acks(ns)?, i[0], *addr, *nodad, *proto))
            }
            Op::DelAddr { ns, dev, addr, proto } => self.with_indexes(ns, &[dev], |k, i| {
                let h = k.nl(ns)?;
                k.rt.block_on(nl::del_addr(&h, i[0], *addr, |have| {
                    crate::model::addr_owned(ns, dev, addr, *proto, have)
                }))
            }),
            Op::SetMaster { ns, dev, master } => match master {
                Some(m) => self.with_indexes(ns, &[m], |k, i| {
                    k.set_link(ns, dev, nl::LinkSet { master: Some(Some(i[0])), ..Default::default() })
                }),
                None => self.set_link(ns, dev, nl::LinkSet { master: Some(None), ..Default::default() }),
            },
            Op::SetMtu { ns, dev, mtu } => {
                self.set_link(ns, dev, nl::LinkSet { mtu: Some(*mtu), ..Default::default() })
            }
            Op::AddRoute { ns, route } => {
                let devs: Vec<&str> = route.dev.iter().map(String::as_str).collect();
                self.with_indexes(ns, &devs, |k, i| nl::add_route(k.acks(ns)?, route, i.first().copied()))
            }
            Op::DelRoute { ns, route } => {
                if route.proto.is_none() {
                    // Ours (protocol 78), at the metric it was added with: a route to the
                    // same place of someone else's (another topology's at another
                    // metric too) is left alone.
                    let all = self.routes(ns)?;
                    let same = |k: &&Route| k.same_place(route) && k.kernel_metric() == route.kernel_metric();
                    let found: Vec<&Route> = all.iter().filter(same).collect();
                    if found.is_empty() {
                        return Err(Error::sys(format!("no route {route} in {ns}"), Some(Errno::ESRCH)));
                    }
                    if !found.iter().any(|k| k.proto == Some(crate::model::ROUTE_PROTO)) {
                        return Err(Error::NotOurs(format!(
                            "the route {route} in {ns} is not the route this topology added ({}); left alone",
                            found[0]
                        )));
                    }
                }
                let devs: Vec<&str> = route.dev.iter().map(String::as_str).collect();
                self.with_indexes(ns, &devs, |k, i| {
                    let h = k.nl(ns)?;
                    k.rt.block_on(nl::del_route(&h, &route.to_delete(), i.first().copied()))
                })
            }
            Op::SetSysctl { ns, key, value } => {
                let fd = self.fd(ns)?;
                sysctl::set(fd, key, value)
            }
            Op::FwPolicy { ns, .. }
            | Op::FwAppend { ns, .. }
            | Op::FwInsert { ns, .. }
            | Op::FwDelete { ns, .. }
            | Op::FwNewChain { ns, .. }
            | Op::FwDelChain { ns, .. } => self.fw_run([ns])?.apply(op),
            Op::Spawn { .. } => Err(Error::invalid("a process is started with spawn(), not replayed")),
            Op::StopMarked { mark } => process::stop_marked(mark, Duration::from_secs(2)),
            Op::TraceOn { ns, proto, id } => {
                if !crate::trace::valid_proto(proto) {
                    return Err(Error::invalid(format!("a trace probe is icmp, tcp or udp, not {proto:?}")));
                }
                self.nft(ns, &crate::trace::table_commands(proto, *id).join("; "))
            }
            Op::TraceOff { ns, id } => self.nft(ns, &format!("delete table inet {}", crate::trace::table_name(*id))),
            Op::Kill { pid, start } => {
                let r = process::stop(*pid, *start, Duration::from_secs(2));
                // Our own child: reap it, and keep its exit code for wait().
                if let Some(mut c) = self.children.remove(pid)
                    && let Ok(st) = c.wait()
                {
                    self.exited.insert(*pid, exit_code(st));
                }
                r
            }
        }
    }
}

/// A creation's result, with the refusal of an index netscript chose (EBUSY: another
/// link holds it, which a random choice among 2^30 makes very unlikely) said as such.
fn index_taken(made: Result<Option<u32>>, ns: &NsRef, name: &str, index: Option<u32>) -> Result<Option<u32>> {
    match (made, index) {
        (Err(e), Some(i)) if e.errno() == Some(Errno::EBUSY) => Err(Error::sys(
            format!(
                "cannot create link \"{name}\" in {ns}: the index netscript chose for it ({i}) is taken; run again"
            ),
            Some(Errno::EBUSY),
        )),
        (made, _) => made,
    }
}

/// For an undo of a root qdisc that expects the one with handle `over` at the root
/// (`Op::SetQdisc`): true when it is already done (run a second time), false when it
/// is to be made (or has no expectation); another qdisc in that place is not ours.
fn qdisc_undo_done(
    fd: Option<BorrowedFd<'_>>,
    ns: &NsRef,
    dev: &str,
    over: Option<u16>,
    target: Option<&crate::qdisc::Qdisc>,
) -> Result<bool> {
    use crate::qdisc::{DEFAULT_HANDLE, UndoVerdict, undo_verdict};
    let Some(over) = over else { return Ok(false) };
    let root = tc::root(fd, dev)?;
    match undo_verdict(&root, over, target) {
        UndoVerdict::Apply => Ok(false),
        UndoVerdict::Done => Ok(true),
        UndoVerdict::NotOurs => {
            let left = if over == DEFAULT_HANDLE { "the kernel's default".into() } else { format!("{over:x}:") };
            Err(Error::NotOurs(format!(
                "the root qdisc of \"{dev}\" in {ns} is not the one this topology left there ({left}; it is {} now); left alone",
                root.describe()
            )))
        }
    }
}

/// A link kind the kernel does not know (EOPNOTSUPP from the creation request):
/// the error names the module that is missing and what still works.
fn missing_kind(e: Error, link: &crate::op::LinkKind) -> Error {
    if e.errno() != Some(Errno::EOPNOTSUPP) {
        return e;
    }
    Error::sys(crate::sys::kconfig::missing_link_kind(link.name()), Some(Errno::EOPNOTSUPP))
}

/// A link's addresses, those of them with nodad, and those with a protocol (see
/// `LinkInfo`).
type Addrs = (Vec<ipnet::IpNet>, Vec<ipnet::IpNet>, Vec<(ipnet::IpNet, u8)>);

fn split_addrs(st: Vec<nl::AddrState>) -> Addrs {
    let nodad = st.iter().filter(|a| a.nodad).map(|a| a.addr).collect();
    let protos = st.iter().filter(|a| a.proto != 0).map(|a| (a.addr, a.proto)).collect();
    (st.into_iter().map(|a| a.addr).collect(), nodad, protos)
}

impl Backend for Kernel {
    fn apply(&mut self, op: &Op) -> Result<()> {
        self.apply_inner(op).map_err(|e| fw::named(op, e))
    }

    /// Consecutive firewall changes in one namespace go through iptables-restore
    /// (ip6tables-restore for IPv6; each iptables-nft process reads the whole rule
    /// set: one process per rule is quadratic), one process per family for all its
    /// tables, with one `iptables-save` before and one after to check it (see
    /// `check_batch`). iptables-restore commits table by table, so a refusal leaves
    /// the tables before it committed: those that differ from before are checked,
    /// and the changes of the others are then made one by one, in order, so each
    /// gets its own result.
    fn apply_batch(&mut self, ops: &[Op], stop: bool) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(ops.len());
        let mut failed = false;
        let mut i = 0;
        while i < ops.len() {
            if let Some(pair) = ops.get(i..i + 2).filter(|p| master_then_up(p)) {
                let (a, b) = self.apply_pair(&pair[0], &pair[1], failed && stop);
                failed |= a.is_err() || b.is_err();
                results.extend([a, b]);
                i += 2;
                continue;
            }
            let Some((ns, j)) = fw::run_of(ops, i) else {
                let r = if failed && stop { Err(crate::backend::not_made()) } else { self.apply(&ops[i]) };
                failed |= r.is_err();
                results.push(r);
                i += 1;
                continue;
            };
            let start = results.len();
            match self.fw_run([ns]) {
                Ok(run) => results.extend(run.group(&ops[i..j], stop, failed)),
                // The namespace cannot be opened: each change says so (as one by one).
                Err(_) => {
                    for op in &ops[i..j] {
                        let r = if failed && stop { Err(crate::backend::not_made()) } else { self.apply(op) };
                        failed |= r.is_err();
                        results.push(r);
                    }
                }
            }
            failed |= results[start..].iter().any(Result::is_err);
            i = j;
        }
        results
    }

    /// Firewall changes only: on a thread of their own (the driver's processes run
    /// while the caller deletes namespaces and links); anything else now.
    fn start_batch(&mut self, ops: Vec<Op>) -> crate::backend::Pending {
        use crate::backend::Pending;
        let nss: Option<Vec<NsRef>> = ops.iter().map(|op| op.is_firewall().then(|| op.ns())).collect();
        let run = nss.and_then(|nss| self.fw_run(&nss).ok());
        match run {
            Some(run) => {
                let len = ops.len();
                Pending::Running { thread: std::thread::spawn(move || run.batch(&ops)), len }
            }
            None => Pending::Done(self.apply_batch(&ops, false)),
        }
    }

    fn batches_firewall(&self) -> bool {
        true
    }

    fn pairs_link_changes(&self) -> bool {
        true
    }

    fn refuses_duplicates(&self) -> bool {
        true
    }

    fn reserve_index(&mut self, ns: &NsRef, name: &str) -> Result<Option<u32>> {
        let i = random_index();
        self.reserved.insert((ns.clone(), name.to_string()), i);
        Ok(Some(i))
    }

    fn firewall_tool(&self) -> Option<String> {
        self.fw.resolved()
    }

    fn prefer_firewall_tool(&mut self, tool: &str) {
        self.fw.prefer(tool);
    }

    fn netns_exists(&mut self, name: &str) -> bool {
        netns::exists(name)
    }

    fn netns_id(&mut self, name: &str) -> Option<crate::model::NsId> {
        netns::id(name)
    }

    fn processes_in(&mut self, ids: &[crate::model::NsId]) -> Vec<crate::model::NsProcess> {
        crate::sys::process::in_namespaces(ids)
    }

    /// From the cache when known (a creation's index is that of what was made).
    fn link_index(&mut self, ns: &NsRef, name: &str) -> Result<Option<u32>> {
        match self.index(ns, name) {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn netns_list(&mut self) -> Vec<String> {
        netns::list()
    }

    fn link(&mut self, ns: &NsRef, name: &str) -> Result<Option<LinkInfo>> {
        let h = self.nl(ns)?;
        let Some(l) = self.rt.block_on(nl::link_by_name(&h, name))? else {
            self.unlearn(ns, name);
            return Ok(None);
        };
        self.learn(ns, name, l.index);
        let master = match l.master {
            Some(m) => self.rt.block_on(nl::link_by_index(&h, m))?.map(|x| x.name),
            None => None,
        };
        let (addrs, nodad, protos) = split_addrs(self.rt.block_on(nl::addrs(&h, l.index))?);
        Ok(Some(LinkInfo {
            name: l.name,
            up: l.up,
            master,
            mtu: l.mtu,
            kind: l.kind,
            alias: l.alias,
            addrs,
            nodad,
            protos,
        }))
    }

    /// Deleting a namespace puts the kernel's last reference to it, and the kernel
    /// then dismantles it on a worker, holding its network lock. Deleted one after
    /// another, the deletions overlap that work and slow down (500 took 70-180 ms,
    /// measured). Held (an fd of each kept), they are deleted at the speed of
    /// unmounting, and their cleanup starts once, for all of them, when they are
    /// released. Each unmount waits for an RCU grace period, which a CPU busy in the
    /// kernel holds up: the bridges `quiesce` is taking down are down first (500
    /// unmounts took 3-9 ms after that, 20-50 ms beside it).
    fn hold_deletions(&mut self, on: bool) {
        self.let_go();
        self.held = on.then(Vec::new);
        self.held_max = held_namespaces_max();
    }

    /// A bridge that is up re-elects the state of every port each time one goes (the
    /// kernel's spanning-tree bookkeeping, even with STP off): N ports going cost N x N.
    /// Down, its ports are all disabled, and releasing them is cheap (500 ports:
    /// `ip -batch` teardown 0.20 s instead of 0.25 s). Taking it down walks the ports
    /// too (4 ms for 200, 18 ms for 500, measured), holding the network lock and the
    /// bridge's with bottom halves off (what needs a grace period on the other CPU
    /// waits for it): it is done on a thread with a socket of its own, while the
    /// rollback prepares (reads nothing from the kernel), and waited for before the
    /// first namespace deletion (`hold_deletions`).
    fn quiesce(&mut self, del: &Op) -> Result<()> {
        let Op::DelLink { ns, name, ifindex } = del else { return Ok(()) };
        let l = self.own_link(ns, name, *ifindex)?;
        if !(l.up && l.kind.as_deref() == Some("bridge")) {
            return Ok(());
        }
        self.ctx(ns)?;
        let fd = self.nss.get(ns).and_then(NsCtx::fd);
        let mut sock = netns::briefly_in(fd, self.host_fd.as_fd(), nl::Acks::open)??;
        let index = l.index;
        // Its error is not waited for: the bridge is deleted next, down or not.
        match std::thread::Builder::new().name("quiesce".into()).spawn(move || {
            let _ = nl::set_up(&mut sock, index, false);
        }) {
            Ok(t) => self.quiescing.push(t),
            Err(_) => nl::set_up(self.acks(ns)?, index, false)?,
        }
        Ok(())
    }

    fn link_there(&mut self, ns: &NsRef, name: &str) -> Result<bool> {
        self.ctx(ns)?;
        let host = self.host_fd.as_fd();
        let c = self.nss.get_mut(ns).expect("opened above");
        if c.probe.is_none() {
            c.probe = Some(netns::briefly_in(c.fd(), host, nl::probe_socket)??);
        }
        nl::link_there(c.probe.as_ref().expect("made above").as_fd(), name)
    }

    fn links(&mut self, ns: &NsRef) -> Result<Vec<LinkInfo>> {
        let h = self.nl(ns)?;
        let all = self.rt.block_on(nl::links(&h))?;
        let mut out = Vec::new();
        for l in &all {
            let master = l.master.and_then(|m| all.iter().find(|x| x.index == m)).map(|x| x.name.clone());
            let (addrs, nodad, protos) = split_addrs(self.rt.block_on(nl::addrs(&h, l.index))?);
            out.push(LinkInfo {
                nodad,
                protos,
                name: l.name.clone(),
                up: l.up,
                master,
                mtu: l.mtu,
                kind: l.kind.clone(),
                alias: l.alias.clone(),
                addrs,
            });
        }
        Ok(out)
    }

    fn find_route(&mut self, ns: &NsRef, r: &Route) -> Result<Option<Route>> {
        let all = self.routes(ns)?;
        Ok(all.into_iter().find(|k| k.matches(r)))
    }

    fn sysctl_get(&mut self, ns: &NsRef, key: &str) -> Result<String> {
        let fd = self.fd(ns)?;
        sysctl::get(fd, key)
    }

    fn root_qdisc(&mut self, ns: &NsRef, dev: &str) -> Result<RootQdisc> {
        let fd = self.fd(ns)?;
        tc::root(fd, dev)
    }

    fn bridge_opts(&mut self, ns: &NsRef, name: &str) -> Result<BridgeOpts> {
        let i = self.index(ns, name)?;
        let h = self.nl(ns)?;
        self.rt.block_on(nl::bridge_opts(&h, i))
    }

    fn port_flags(&mut self, ns: &NsRef, dev: &str) -> Result<PortFlags> {
        let i = self.index(ns, dev)?;
        let h = self.nl(ns)?;
        self.rt.block_on(nl::port_flags(&h, i))
    }

    fn fw_policy(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<String> {
        self.with_fw(ns, |fw, fd| fw.policy(fd, fam, table, chain))
    }

    fn fw_rules(&mut self, ns: &NsRef, fam: Family, table: &str, chain: Option<&str>) -> Result<Vec<String>> {
        self.with_fw(ns, |fw, fd| fw.rules(fd, fam, table, chain))
    }

    fn fw_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str, rule: &[String]) -> Result<bool> {
        self.with_fw(ns, |fw, fd| fw.exists(fd, fam, table, chain, rule))
    }

    fn fw_exist_all(&mut self, ns: &NsRef, fam: Family, rules: &[RuleAt<'_>]) -> Result<Vec<bool>> {
        self.with_fw(ns, |fw, fd| fw.exist_all(fd, fam, rules))
    }

    fn fw_chain_exists(&mut self, ns: &NsRef, fam: Family, table: &str, chain: &str) -> Result<bool> {
        self.with_fw(ns, |fw, fd| fw.chain_exists(fd, fam, table, chain))
    }

    fn exec(&mut self, ns: &NsRef, argv: &[String], timeout: Option<Duration>) -> Result<ExecResult> {
        let cancel = self.cancel.clone();
        let fd = self.fd(ns)?;
        process::exec(fd, argv, timeout, &cancel)
    }

    fn exec_on_terminal(&mut self, ns: &NsRef, argv: &[String]) -> Result<i32> {
        let fd = self.fd(ns)?;
        process::exec_on_terminal(fd, argv)
    }

    fn spawn(&mut self, ns: &NsRef, argv: &[String], mark: &str) -> Result<(u32, u64)> {
        let log = match &self.log_dir {
            // Never through a link; refused when someone else owns it (see state.rs).
            Some(d) => Some(crate::state::open_file_in(d, &format!("spawn-{}.log", std::process::id()))?),
            None => None,
        };
        let fd = self.fd(ns)?;
        let child = process::spawn(fd, argv, log, mark)?;
        let pid = child.id();
        let start = process::start_time(pid).unwrap_or(0);
        self.children.insert(pid, child);
        Ok((pid, start))
    }

    fn wait(&mut self, pid: u32) -> Result<i32> {
        if let Some(code) = self.exited.get(&pid) {
            return Ok(*code);
        }
        let mut c = self
            .children
            .remove(&pid)
            .ok_or_else(|| Error::invalid(format!("process {pid} was not started by this run")))?;
        loop {
            if let Some(st) = c.try_wait()? {
                self.exited.insert(pid, exit_code(st));
                return Ok(exit_code(st));
            }
            if self.cancel.load(std::sync::atomic::Ordering::SeqCst) {
                self.children.insert(pid, c);
                return Err(Error::Interrupted("a signal"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&mut self, ns: &NsRef, addr: IpAddr, count: u32, timeout: Duration) -> Result<bool> {
        if addr.is_ipv6() {
            self.wait_usable_v6()?;
        }
        let argv = crate::op::ping_argv(addr, count, timeout);
        // -W bounds each reply and ping waits a second between packets; bound the
        // whole run as well.
        let limit = (timeout + Duration::from_secs(1)) * count.max(1) + Duration::from_secs(2);
        let r = self.exec(ns, &argv, Some(limit))?;
        if r.code == 127 || r.stderr.contains("command not found") {
            return Err(Error::sys(process::not_installed("ping").unwrap_or_default(), None));
        }
        Ok(r.code == 0)
    }

    fn tcp(&mut self, ns: &NsRef, addr: IpAddr, port: u16, timeout: Duration) -> Result<bool> {
        if addr.is_ipv6() {
            self.wait_usable_v6()?;
        }
        let fd = self.fd(ns)?;
        let sa = SocketAddr::new(addr, port);
        netns::in_netns(fd, move || TcpStream::connect_timeout(&sa, timeout).is_ok())
    }

    fn routes(&mut self, ns: &NsRef) -> Result<Vec<Route>> {
        let h = self.nl(ns)?;
        let mut all = self.rt.block_on(nl::routes(&h, false))?;
        all.extend(self.rt.block_on(nl::routes(&h, true))?);
        let links = self.rt.block_on(nl::links(&h))?;
        Ok(all
            .into_iter()
            .map(|k| Route {
                dest: k.dest,
                via: k.via,
                dev: k.oif.and_then(|i| links.iter().find(|l| l.index == i)).map(|l| l.name.clone()),
                metric: k.metric,
                proto: Some(k.proto),
                scope: Some(k.scope),
                src: k.src,
            })
            .collect())
    }

    fn marked_processes(&mut self) -> Vec<(u32, String, String)> {
        process::marked()
    }

    fn marked_qdiscs(&mut self, ns: &NsRef) -> Result<Vec<(String, u16)>> {
        let fd = self.fd(ns)?;
        tc::marked_roots(fd).map_err(|e| Error::sys(format!("cannot list the root qdiscs of {ns}: {e}"), e.errno()))
    }

    fn alive(&mut self, pid: u32, start: u64) -> bool {
        // A zombie (its parent gone, not reaped by whoever inherited it) runs no more.
        crate::sys::proc::stat(pid).is_some_and(|s| s.start == start && !s.exited())
    }

    fn trace_mode(&mut self) -> trace::Mode {
        match self.fw_is_legacy() {
            Ok(false) => trace::Mode::Kernel,
            Ok(true) => trace::Mode::Unavailable(
                "iptables-legacy rules cannot be traced (nftables tracing sees only iptables-nft rules)".into(),
            ),
            Err(e) => trace::Mode::Unavailable(format!("cannot tell which iptables is in use: {e}")),
        }
    }

    fn trace(&mut self, from: &NsRef, dst: IpAddr, spec: &Spec, nss: &[NsRef]) -> Result<Trace> {
        if self.fw_is_legacy()? {
            return Err(Error::sys(
                "iptables-legacy rules cannot be traced (nftables tracing sees only iptables-nft rules)",
                Some(Errno::EOPNOTSUPP),
            ));
        }
        let mut mons = Monitors(Vec::new());
        for ns in nss {
            let fd = self.fd(ns)?;
            let child = netns::in_netns(fd, || {
                std::process::Command::new("xtables-monitor")
                    .arg("--trace")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .process_group(0)
                    .spawn()
            })?
            .map_err(|e| Error::sys(format!("cannot start xtables-monitor in {ns}: {e}"), None))?;
            mons.0.push((trace::ns_label(ns), child));
        }
        // Let each monitor subscribe before the probe leaves.
        std::thread::sleep(Duration::from_millis(200));
        let fd = self.fd(from)?;
        let s2 = spec.clone();
        let answer = netns::in_netns(fd, move || trace::probe::send(dst, &s2))?;
        std::thread::sleep(trace::probe::SETTLE);
        let mut per_ns = mons.finish();
        for (ns, blocks) in per_ns.iter_mut() {
            let nsr = nss.iter().find(|n| trace::ns_label(n) == *ns).cloned().unwrap_or(NsRef::Host);
            let argv: Vec<String> = ["nft", "-a", "list", "table", "inet", &trace::table_name(spec.id)]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let listing = self.exec(&nsr, &argv, Some(Duration::from_secs(5)))?.stdout;
            trace::kernel::directions(blocks, &trace::kernel::handle_directions(&listing));
        }
        let mut oracle = KernelOracle { k: self, nss };
        Ok(trace::kernel::explain(&trace::ns_label(from), dst, spec, &per_ns, &answer, &mut oracle))
    }

    fn describe(&self) -> String {
        format!("kernel ({})", self.fw.describe())
    }
}

/// The trace monitors (xtables-monitor, one per namespace); stopped when dropped.
struct Monitors(Vec<(String, Child)>);

impl Monitors {
    /// Stops the monitors and parses what each reported.
    fn finish(&mut self) -> Vec<(String, Vec<trace::kernel::Block>)> {
        use std::io::Read;
        let mut out = Vec::new();
        for (ns, mut c) in self.0.drain(..) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::SIGTERM);
            let mut text = String::new();
            if let Some(mut o) = c.stdout.take() {
                let _ = o.read_to_string(&mut text);
            }
            let _ = c.wait();
            out.push((ns, trace::kernel::parse(&text)));
        }
        out
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The kernel's routing answers and sysctls, for a trace's explanation.
struct KernelOracle<'a> {
    k: &'a mut Kernel,
    nss: &'a [NsRef],
}

impl KernelOracle<'_> {
    fn ns(&self, label: &str) -> NsRef {
        self.nss.iter().find(|n| trace::ns_label(n) == label).cloned().unwrap_or(NsRef::Host)
    }
}

impl trace::kernel::Oracle for KernelOracle<'_> {
    fn route_get(&mut self, ns: &str, args: &[String]) -> std::result::Result<trace::kernel::RouteAnswer, String> {
        let ns = self.ns(ns);
        let mut argv: Vec<String> = ["ip", "-j", "route", "get"].iter().map(|s| s.to_string()).collect();
        argv.extend(args.iter().cloned());
        let r = self.k.exec(&ns, &argv, Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        if r.code != 0 {
            return Err(r.stderr.trim().trim_start_matches("RTNETLINK answers: ").to_string());
        }
        let v: serde_json::Value = serde_json::from_str(&r.stdout).map_err(|e| e.to_string())?;
        let first = &v[0];
        Ok(trace::kernel::RouteAnswer {
            dev: first["dev"].as_str().map(str::to_string),
            kind: first["type"].as_str().map(str::to_string),
        })
    }

    fn sysctl(&mut self, ns: &str, key: &str) -> Option<String> {
        let ns = self.ns(ns);
        self.k.sysctl_get(&ns, key).ok().map(|v| v.trim().to_string())
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.let_go();
        let keys: Vec<NsRef> = self.nss.keys().cloned().collect();
        for k in keys {
            self.forget(&k);
        }
    }
}

/// An interface index for a link about to be made: random in 2^30..2^31 (the kernel
/// numbers links it names itself from 1 up), so that it is free in practice and
/// another link will not get it by chance later.
fn random_index() -> u32 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32);
    let mut x = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ seed;
    // splitmix64
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (1 << 30) | (x as u32 & ((1 << 30) - 1))
}
