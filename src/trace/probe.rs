//! The probe itself, sent from the calling thread's namespace (run it inside
//! `sys::netns::in_netns`): an ICMP echo with our id on a raw socket, a TCP connect
//! from our source port, or a UDP datagram from it.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::{Proto, Spec};

/// What came back.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The echo reply / the connection / a UDP answer.
    Answered,
    /// A TCP reset, or ICMP port unreachable for UDP.
    Refused,
    /// An ICMP error (host / net unreachable, ...) or the send failed at once
    /// (no route): the error's words.
    Unreachable(String),
    /// Nothing within the timeout.
    Silent,
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn bind_addr(spec: &Spec) -> SocketAddr {
    SocketAddr::new(spec.src.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), spec.id)
}

/// Sends the probe to `dst` and waits for its answer.
pub fn send(dst: IpAddr, spec: &Spec) -> Answer {
    match spec.proto {
        Proto::Tcp(port) => tcp(dst, port, spec),
        Proto::Udp(port) => udp(dst, port, spec),
        Proto::Icmp => icmp(dst, spec),
    }
}

fn io_answer(e: &std::io::Error) -> Answer {
    match e.kind() {
        ErrorKind::ConnectionRefused => Answer::Refused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Answer::Silent,
        _ => Answer::Unreachable(e.to_string()),
    }
}

fn tcp(dst: IpAddr, port: u16, spec: &Spec) -> Answer {
    // std has no bind-before-connect: do it with libc, then hand the fd to std.
    use std::os::fd::FromRawFd;
    let IpAddr::V4(d) = dst else { return Answer::Unreachable("IPv6 is not traced".into()) };
    let src = match bind_addr(spec) {
        SocketAddr::V4(a) => a,
        _ => return Answer::Unreachable("an IPv6 source for an IPv4 destination".into()),
    };
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
        if fd < 0 {
            return Answer::Unreachable(std::io::Error::last_os_error().to_string());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let sa = sockaddr(src);
        if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32)
            != 0
        {
            return Answer::Unreachable(format!("cannot bind {src}: {}", std::io::Error::last_os_error()));
        }
        let da = sockaddr(SocketAddrV4::new(d, port));
        let r = libc::connect(
            fd,
            &da as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return io_answer(&e);
            }
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
        let ms = spec.timeout.as_millis().min(i32::MAX as u128) as i32;
        if libc::poll(&mut pfd, 1, ms) <= 0 {
            return Answer::Silent;
        }
        match stream.take_error() {
            Ok(None) => Answer::Answered,
            Ok(Some(e)) => io_answer(&e),
            Err(e) => io_answer(&e),
        }
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

fn udp(dst: IpAddr, port: u16, spec: &Spec) -> Answer {
    let s = match UdpSocket::bind(bind_addr(spec)) {
        Ok(s) => s,
        Err(e) => return Answer::Unreachable(format!("cannot bind port {}: {e}", spec.id)),
    };
    if let Err(e) = s.connect(SocketAddr::new(dst, port)).and_then(|_| s.send(b"netscript trace\n")) {
        return io_answer(&e);
    }
    let _ = s.set_read_timeout(Some(spec.timeout));
    let mut buf = [0u8; 64];
    match s.recv(&mut buf) {
        Ok(_) => Answer::Answered,
        Err(e) => io_answer(&e),
    }
}

fn icmp(dst: IpAddr, spec: &Spec) -> Answer {
    let IpAddr::V4(d) = dst else { return Answer::Unreachable("IPv6 is not traced".into()) };
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP);
        if fd < 0 {
            return Answer::Unreachable(format!("cannot open a raw ICMP socket: {}", std::io::Error::last_os_error()));
        }
        let _close = Fd(fd);
        if let Some(IpAddr::V4(s)) = spec.src {
            let sa = sockaddr(SocketAddrV4::new(s, 0));
            if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32)
                != 0
            {
                return Answer::Unreachable(format!("cannot bind {s}: {}", std::io::Error::last_os_error()));
            }
        }
        let mut pkt = [0u8; 16];
        pkt[0] = 8;
        pkt[4..6].copy_from_slice(&spec.id.to_be_bytes());
        pkt[6..8].copy_from_slice(&1u16.to_be_bytes());
        pkt[8..].copy_from_slice(b"netscrip");
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
        let da = sockaddr(SocketAddrV4::new(d, 0));
        let n = libc::sendto(
            fd,
            pkt.as_ptr() as *const libc::c_void,
            pkt.len(),
            0,
            &da as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        if n < 0 {
            return io_answer(&std::io::Error::last_os_error());
        }
        let end = Instant::now() + spec.timeout;
        let mut buf = [0u8; 1500];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Answer::Silent;
            }
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            if libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) <= 0 {
                return Answer::Silent;
            }
            let n = libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
            if n <= 0 {
                continue;
            }
            let b = &buf[..n as usize];
            let ihl = usize::from(b[0] & 0x0f) * 4;
            let Some(icmp) = b.get(ihl..) else { continue };
            if icmp.len() < 8 {
                continue;
            }
            match icmp[0] {
                0 if icmp[4..6] == spec.id.to_be_bytes() => return Answer::Answered,
                3 | 11 => {
                    // An error about our echo: the quoted header's ICMP id.
                    let inner = &icmp[8..];
                    let iihl = usize::from(inner.first().copied().unwrap_or(0) & 0x0f) * 4;
                    if inner.get(iihl + 4..iihl + 6) == Some(&spec.id.to_be_bytes()[..]) {
                        let what = match (icmp[0], icmp[1]) {
                            (3, 0) => "network unreachable",
                            (3, 1) => "host unreachable",
                            (3, 3) => "port unreachable",
                            (3, 13) => "administratively prohibited",
                            (3, _) => "destination unreachable",
                            _ => "time exceeded",
                        };
                        let from = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
                        return Answer::Unreachable(format!("{what} (ICMP from {from})"));
                    }
                }
                _ => {}
            }
        }
    }
}

struct Fd(i32);
impl Drop for Fd {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.0);
        }
    }
}

/// How long to wait after the answer for the last trace events.
pub const SETTLE: Duration = Duration::from_millis(150);
