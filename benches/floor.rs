//! The kernel floor of benches/run.sh: the benchmark topology (benches/topology.lua,
//! ../shared/bench/baseline/build_batch.sh) built in one process with raw rtnetlink,
//! one request and its ack at a time: no marks, no journal, no validation, no reads.
//! What it costs is what the kernel costs (plus one iptables-restore for the firewall,
//! as the stock batch), so netscript's build time minus this one is netscript's own.
//!
//!   bench-floor N        build (inside the benchmark's pb_host namespace)
//!   BENCH_FLOOR_WORK_US=U bench-floor N
//!                        the same, computing U µs of CPU (its own thread's, in user
//!                        space) after each container: the control of run.sh's
//!                        BENCH_CONTROL, a program that adds a fixed amount of work to
//!                        the floor's and nothing else
//!   BENCH_FLOOR_MARKS=M bench-floor N
//!                        the same with ownership marks (alias) on the veth ends, for
//!                        the A/B of docs/performance.md: `none` (the default), `own`
//!                        (one request per end after the creation, as netscript sends
//!                        them), `folded` (each end's mark in the request that brings
//!                        it up), `inside` (eth0's in its `up`, the host end's own),
//!                        `all` (`own` and each namespace's mark, its lo's alias: every
//!                        mark netscript sends)
//!   BENCH_FLOOR_QUEUES=kernel bench-floor N
//!                        the veths as `ip link add ... type veth` makes them (one
//!                        queue per CPU, cut to one by the kernel) instead of with one
//!                        queue per end, as netscript makes them: the A/B of
//!                        docs/performance.md
//!   bench-floor down N   take it down: the namespaces, br0, the firewall reset
//!
//! Linux only; run as root inside a throwaway namespace (benches/run.sh does).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Error, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_IFALIAS: u16 = 20;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_GATEWAY: u16 = 5;
const NLA_F_NESTED: u16 = 0x8000;
const IFF_UP: u32 = 1;

/// One netlink request being built: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(ty: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]); // seq, pid
        Msg { buf, nests: Vec::new() }
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    /// struct ifinfomsg
    fn ifinfo(mut self, index: i32, flags: u32, change: u32) -> Msg {
        self.ifinfo_raw(index, flags, change);
        self
    }
    fn ifinfo_raw(&mut self, index: i32, flags: u32, change: u32) {
        self.buf.extend_from_slice(&[0, 0, 0, 0]); // family, pad, type
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }
    fn attr(mut self, ty: u16, data: &[u8]) -> Msg {
        self.attr_raw(ty, data);
        self
    }
    fn attr_raw(&mut self, ty: u16, data: &[u8]) {
        self.buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn name(self, ty: u16, s: &str) -> Msg {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }
    fn begin(mut self, ty: u16) -> Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }
    fn end(mut self) -> Msg {
        let at = self.nests.pop().expect("nest");
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }
    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn addr_msg(index: u32, ip: [u8; 4], prefix: u8) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    // struct ifaddrmsg: family, prefixlen, flags, scope, index
    m.buf.extend_from_slice(&[libc::AF_INET as u8, prefix, 0, 0]);
    m.buf.extend_from_slice(&index.to_ne_bytes());
    m.attr(IFA_LOCAL, &ip).attr(IFA_ADDRESS, &ip).finish()
}

fn default_route(gw: [u8; 4]) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    // struct rtmsg: family, dst_len, src_len, tos, table (main), protocol (boot),
    // scope (universe), type (unicast), flags
    m.buf.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0, 254, 3, 0, 1]);
    m.buf.extend_from_slice(&0u32.to_ne_bytes());
    m.attr(RTA_GATEWAY, &gw).finish()
}

/// A link's "up" (and master), with its ownership mark when `mark` says so.
fn set_link(index: i32, up: bool, master: Option<u32>, mark: Mark) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWLINK, 0).ifinfo(index, if up { IFF_UP } else { 0 }, IFF_UP);
    if let Some(x) = master {
        m = m.attr(IFLA_MASTER, &x.to_ne_bytes());
    }
    if mark == Mark::WithUp {
        m = m.attr(IFLA_IFALIAS, MARK);
    }
    m.finish()
}

/// An ownership mark like netscript's (its length: "netscript:" and a name).
const MARK: &[u8] = b"netscript:bench";

/// Where a veth end's mark goes (BENCH_FLOOR_MARKS).
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    No,
    /// In a request of its own, right after the creation (netscript's way).
    Alone,
    /// In the request that brings the link up.
    WithUp,
}

/// The marks of eth0 and of the host end, as BENCH_FLOOR_MARKS names them.
fn marks() -> Result<(Mark, Mark)> {
    Ok(match std::env::var("BENCH_FLOOR_MARKS").as_deref() {
        Err(_) | Ok("none") => (Mark::No, Mark::No),
        Ok("own" | "all") => (Mark::Alone, Mark::Alone),
        Ok("folded") => (Mark::WithUp, Mark::WithUp),
        Ok("inside") => (Mark::WithUp, Mark::Alone),
        Ok(m) => return Err(format!("BENCH_FLOOR_MARKS={m:?}: none, own, all, folded or inside").into()),
    })
}

/// The mark alone on a link, as netscript sends it.
fn mark_link(index: i32) -> Vec<u8> {
    Msg::new(RTM_NEWLINK, 0).ifinfo(index, 0, 0).attr(IFLA_IFALIAS, MARK).finish()
}

/// A NETLINK_ROUTE socket in the calling thread's namespace.
struct Sock {
    fd: OwnedFd,
    seq: u32,
}

impl Sock {
    fn open() -> Result<Sock> {
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(Error::last_os_error().into());
        }
        Ok(Sock { fd: unsafe { OwnedFd::from_raw_fd(fd) }, seq: 0 })
    }

    /// Sends one request and waits for its ack; a refusal is an error naming `what`.
    fn call(&mut self, mut req: Vec<u8>, what: &str) -> Result<()> {
        self.seq += 1;
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(format!("{what}: send: {}", Error::last_os_error()).into());
        }
        let mut buf = [0u8; 8192];
        loop {
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(format!("{what}: recv: {}", Error::last_os_error()).into());
            }
            let mut off = 0usize;
            while off + 16 <= n as usize {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into()?) as usize;
                let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into()?);
                let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into()?);
                if ty == NLMSG_ERROR && seq == self.seq {
                    let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into()?);
                    if code == 0 {
                        return Ok(());
                    }
                    return Err(format!("{what}: {}", Error::from_raw_os_error(-code)).into());
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}

fn ip_of(i: u32) -> [u8; 4] {
    [10, 200, (1 + (i - 1) / 250) as u8, (1 + (i - 1) % 250) as u8]
}

fn check(r: libc::c_int, what: &str) -> Result<()> {
    if r < 0 { Err(format!("{what}: {}", Error::last_os_error()).into()) } else { Ok(()) }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// /run/netns as iproute2 leaves it: a shared mount point.
fn prepare_run_dir() -> Result<()> {
    std::fs::create_dir_all("/run/netns")?;
    let dir = cstr("/run/netns");
    let none = cstr("none");
    let shared = || unsafe {
        libc::mount(std::ptr::null(), dir.as_ptr(), none.as_ptr(), libc::MS_SHARED | libc::MS_REC, std::ptr::null())
    };
    if shared() < 0 {
        check(
            unsafe {
                libc::mount(dir.as_ptr(), dir.as_ptr(), none.as_ptr(), libc::MS_BIND | libc::MS_REC, std::ptr::null())
            },
            "bind /run/netns",
        )?;
        check(shared(), "make /run/netns shared")?;
    }
    Ok(())
}

/// `ip netns add NAME`, in this (single-threaded) process: unshare, bind-mount, and a
/// netlink socket and a namespace fd opened inside before returning to `host`.
fn netns_add(name: &str, host: RawFd) -> Result<(Sock, OwnedFd)> {
    let path = format!("/run/netns/{name}");
    OpenOptions::new().write(true).create_new(true).mode(0o000).open(&path).map_err(|e| format!("{path}: {e}"))?;
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) }, "unshare")?;
    let (src, dst, none) = (cstr("/proc/thread-self/ns/net"), cstr(&path), cstr("none"));
    check(unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), none.as_ptr(), libc::MS_BIND, std::ptr::null()) }, &path)?;
    let sock = Sock::open()?;
    let fd = OwnedFd::from(File::open("/proc/thread-self/ns/net")?);
    check(unsafe { libc::setns(host, libc::CLONE_NEWNET) }, "setns back")?;
    Ok((sock, fd))
}

fn firewall(input: &str) -> Result<()> {
    let mut child = Command::new("iptables-restore").arg("--noflush").stdin(Stdio::piped()).spawn()?;
    child.stdin.take().expect("stdin").write_all(input.as_bytes())?;
    let st = child.wait()?;
    if !st.success() {
        return Err(format!("iptables-restore: {st}").into());
    }
    Ok(())
}

/// Time per phase, as netscript's NETSCRIPT_PHASES splits it (ms; printed to stderr
/// as `PHASES ...` when BENCH_FLOOR_PHASES is set).
#[derive(Default)]
struct Phases {
    netns: std::time::Duration,
    links: std::time::Duration,
    addrs: std::time::Duration,
    fw: std::time::Duration,
}

fn timed<T>(acc: &mut std::time::Duration, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = std::time::Instant::now();
    let r = f();
    *acc += t.elapsed();
    r
}

/// Computes until this thread has used `us` µs more CPU: work of a fixed size, however
/// long the CPU takes to give it.
fn compute(us: u64) {
    let cpu = || {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    };
    let end = cpu() + us * 1000;
    let mut x = 0u64;
    while cpu() < end {
        for k in 0..1000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(k));
        }
    }
}

fn build(n: u32) -> Result<()> {
    // The settings first: a refused one leaves nothing made.
    let work = match std::env::var("BENCH_FLOOR_WORK_US") {
        Ok(u) => Some(u.parse::<u64>().map_err(|_| format!("BENCH_FLOOR_WORK_US={u:?}: not a number of µs"))?),
        Err(_) => None,
    };
    let (mark_in, mark_host) = marks()?;
    // `all`: also each namespace's mark (its lo's alias), as netscript sends it.
    let mark_lo = std::env::var("BENCH_FLOOR_MARKS").as_deref() == Ok("all");
    // Each veth end's queues: one, as netscript makes them; none given, the kernel's.
    let queues = match std::env::var("BENCH_FLOOR_QUEUES").as_deref() {
        Err(_) | Ok("1") => Some(1u32.to_ne_bytes()),
        Ok("kernel") => None,
        Ok(q) => return Err(format!("BENCH_FLOOR_QUEUES={q:?}: 1 or kernel").into()),
    };
    let with_queues = |m: &mut Msg| {
        if let Some(q) = &queues {
            m.attr_raw(IFLA_NUM_TX_QUEUES, q);
            m.attr_raw(IFLA_NUM_RX_QUEUES, q);
        }
    };
    let start = std::time::Instant::now();
    let mut ph = Phases::default();
    prepare_run_dir()?;
    let host = File::open("/proc/thread-self/ns/net")?;
    let mut h = Sock::open()?;
    // The index of br0, and the host ends' indexes, chosen (netscript chooses them too).
    const BR: i32 = 100_000;
    let vh = |i: u32| BR + i as i32;
    h.call(
        Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
            .ifinfo(BR, 0, 0)
            .name(IFLA_IFNAME, "br0")
            .begin(IFLA_LINKINFO)
            .name(IFLA_INFO_KIND, "bridge")
            .end()
            .finish(),
        "link add br0",
    )?;
    h.call(addr_msg(BR as u32, [10, 200, 0, 1], 16), "addr add br0")?;
    h.call(set_link(BR, true, None, Mark::No), "link set br0 up")?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
    for i in 1..=n {
        let (mut c, nsfd) = timed(&mut ph.netns, || netns_add(&format!("pb_c{i}"), host.as_raw_fd()))?;
        if mark_lo {
            timed(&mut ph.netns, || c.call(mark_link(1), "mark lo"))?;
        }
        // veth vh_I (host) / eth0 (index 2 in the new namespace, where lo is 1)
        let mut m =
            Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL).ifinfo(vh(i), 0, 0).name(IFLA_IFNAME, &format!("vh_{i}"));
        with_queues(&mut m);
        let mut m = m.begin(IFLA_LINKINFO).name(IFLA_INFO_KIND, "veth").begin(IFLA_INFO_DATA).begin(VETH_INFO_PEER);
        m.ifinfo_raw(2, 0, 0);
        m.attr_raw(IFLA_IFNAME, b"eth0\0");
        with_queues(&mut m);
        m.attr_raw(IFLA_NET_NS_FD, &nsfd.as_raw_fd().to_ne_bytes());
        timed(&mut ph.links, || h.call(m.end().end().end().finish(), "link add veth"))?;
        drop(nsfd);
        if mark_in == Mark::Alone {
            timed(&mut ph.links, || c.call(mark_link(2), "mark eth0"))?;
        }
        if mark_host == Mark::Alone {
            timed(&mut ph.links, || h.call(mark_link(vh(i)), "mark vh"))?;
        }
        timed(&mut ph.addrs, || c.call(addr_msg(2, ip_of(i), 16), "addr add eth0"))?;
        timed(&mut ph.links, || c.call(set_link(1, true, None, Mark::No), "link set lo up"))?;
        timed(&mut ph.links, || c.call(set_link(2, true, None, mark_in), "link set eth0 up"))?;
        timed(&mut ph.addrs, || c.call(default_route([10, 200, 0, 1]), "route add default"))?;
        timed(&mut ph.links, || {
            h.call(set_link(vh(i), true, Some(BR as u32), mark_host), "link set vh master br0 up")
        })?;
        if let Some(us) = work {
            compute(us);
        }
    }
    let mut rules = String::from("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i br0 -j ACCEPT\n");
    let dotted = |i: u32| ip_of(i).map(|b| b.to_string()).join(".");
    for i in 1..=n {
        rules += &format!("-A FORWARD -d {}/32 ! -i br0 -o br0 -p tcp -m tcp --dport 80 -j ACCEPT\n", dotted(i));
    }
    rules += "COMMIT\n*nat\n-A POSTROUTING -s 10.200.0.0/16 -j MASQUERADE\n";
    for i in 1..=n {
        rules +=
            &format!("-A PREROUTING -p tcp -m tcp --dport {} -j DNAT --to-destination {}:80\n", 8000 + i, dotted(i));
    }
    rules += "COMMIT\n";
    timed(&mut ph.fw, || firewall(&rules))?;
    if std::env::var_os("BENCH_FLOOR_PHASES").is_some() {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "PHASES total={:.1} netns={:.1} links={:.1} addrs+routes={:.1} firewall={:.1}",
            ms(start.elapsed()),
            ms(ph.netns),
            ms(ph.links),
            ms(ph.addrs),
            ms(ph.fw)
        );
    }
    Ok(())
}

fn down(n: u32) -> Result<()> {
    for i in 1..=n {
        let p = cstr(&format!("/run/netns/pb_c{i}"));
        unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        check(unsafe { libc::unlink(p.as_ptr()) }, "unlink netns")?;
    }
    let mut h = Sock::open()?;
    h.call(Msg::new(RTM_DELLINK, 0).ifinfo(0, 0, 0).name(IFLA_IFNAME, "br0").finish(), "link del br0")?;
    firewall("*filter\n:FORWARD ACCEPT [0:0]\n-F FORWARD\nCOMMIT\n*nat\n-F PREROUTING\n-F POSTROUTING\nCOMMIT\n")
}

/// Refuses the host's network namespace (the kernel's initial one, the only one with
/// net.core.dev_weight; /proc/1/ns/net may not be readable): the floor builds and
/// deletes br0, pb_c* and the firewall, and sets ip_forward, where it runs.
fn refuse_host_namespace() -> Result<()> {
    if std::path::Path::new("/proc/sys/net/core/dev_weight").exists() {
        return Err("refusing to run in the host's network namespace: run it through benches/run.sh \
                    (or inside `unshare --net --mount`)"
            .into());
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res =
        refuse_host_namespace().and_then(|()| match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["down", n] => n.parse().map_err(Into::into).and_then(down),
            [n] => n.parse().map_err(Into::into).and_then(build),
            _ => Err("usage: bench-floor N | bench-floor down N".into()),
        });
    if let Err(e) = res {
        eprintln!("bench-floor: {e}");
        std::process::exit(1);
    }
}
