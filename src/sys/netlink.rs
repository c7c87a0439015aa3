//! Links, addresses and routes over route netlink, on sockets bound to one namespace:
//! the changes the kernel answers with an ack alone on a plain socket (`Acks`: one
//! send, one receive), reads and the rarer changes through rtnetlink.
//! Functions here speak kernel terms (indexes, messages); naming objects in error
//! messages is the caller's job.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{Error, Result};
use crate::model::{ROUTE_PROTO, Route};

/// What netscript needs to know about a link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// IFF_LOWER_UP: the link has carrier.
    pub carrier: bool,
    /// IFF_LOOPBACK or IFF_NOARP: no neighbour discovery on it.
    pub no_nd: bool,
    pub master: Option<u32>,
    pub mtu: u32,
    pub kind: Option<String>,
    pub alias: Option<String>,
}

fn link_state(m: &LinkMessage) -> LinkState {
    let mut s = LinkState {
        index: m.header.index,
        name: String::new(),
        up: m.header.flags.contains(LinkFlags::Up),
        carrier: m.header.flags.contains(LinkFlags::LowerUp),
        no_nd: m.header.flags.intersects(LinkFlags::Loopback | LinkFlags::Noarp),
        master: None,
        mtu: 0,
        kind: None,
        alias: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => s.name = n.clone(),
            LinkAttribute::Controller(c) => s.master = Some(*c),
            LinkAttribute::Mtu(x) => s.mtu = *x,
            LinkAttribute::IfAlias(x) => s.alias = Some(x.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        s.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    s
}

pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkState>> {
    first_link(h.link().get().match_name(name.to_string())).await
}

pub async fn link_by_index(h: &Handle, index: u32) -> Result<Option<LinkState>> {
    first_link(h.link().get().match_index(index)).await
}

/// The link a filtered get returns; "no such device" is None.
async fn first_link(req: rtnetlink::LinkGetRequest) -> Result<Option<LinkState>> {
    let mut st = req.execute();
    match st.try_next().await {
        Ok(m) => Ok(m.as_ref().map(link_state)),
        Err(e) => {
            let e = Error::from(e);
            if e.is_gone() { Ok(None) } else { Err(e) }
        }
    }
}

pub async fn links(h: &Handle) -> Result<Vec<LinkState>> {
    let msgs: Vec<LinkMessage> = h.link().get().execute().try_collect().await?;
    Ok(msgs.iter().map(link_state).collect())
}

/// Deletes the link with index `index`.
pub async fn del_link(h: &Handle, index: u32) -> Result<()> {
    h.link().del(index).execute().await?;
    Ok(())
}

/// Sets the link of index `index` up or down.
pub fn set_up(sock: &mut Acks, index: u32, up: bool) -> Result<()> {
    let b = LinkUnspec::new_with_index(index);
    let b = if up { b.up() } else { b.down() };
    sock.request(RouteNetlinkMessage::SetLink(b.build()), 0)
}

/// Adds an address; `nodad` (IPv6: IFA_F_NODAD, `ip addr add ... nodad`) makes it
/// usable at once, without duplicate address detection.
/// `proto`: its protocol (IFA_PROTO, `ip addr add ... proto N`).
pub fn add_addr(s: &mut Acks, index: u32, addr: IpNet, nodad: bool, proto: Option<u8>) -> Result<()> {
    let mut m = match addr.addr() {
        IpAddr::V4(a) => rtnetlink::AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(index)
            .address(a, addr.prefix_len())
            .build(),
        IpAddr::V6(a) => rtnetlink::AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(index)
            .address(a, addr.prefix_len())
            .build(),
    };
    // The builder adds a broadcast address; `ip addr add` does not (without `brd +`).
    m.attributes.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
    if nodad {
        m.header.flags |= AddressHeaderFlags::Nodad;
        m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    if let Some(p) = proto.filter(|p| *p != 0) {
        m.attributes.push(AddressAttribute::Protocol(p.into()));
    }
    s.request(RouteNetlinkMessage::NewAddress(m), CREATE)
}

fn addr_of(m: &AddressMessage) -> Option<IpNet> {
    // IFA_LOCAL is the address itself on point-to-point links; IFA_ADDRESS otherwise.
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => return IpNet::new(*ip, m.header.prefix_len).ok(),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    addr.and_then(|ip| IpNet::new(ip, m.header.prefix_len).ok())
}

/// An address's flags (IFA_FLAGS when the kernel sends it, else the header's 8 bits).
fn flags_of(m: &AddressMessage) -> AddressFlags {
    m.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(m.header.flags.bits() as u32))
}

/// An address as netscript reads it: the address and whether it is IPv6 without
/// duplicate address detection (nodad) or still being checked (tentative).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AddrState {
    pub addr: IpNet,
    pub nodad: bool,
    pub tentative: bool,
    /// Its protocol (IFA_PROTO; 0: none).
    pub proto: u8,
}

/// The addresses on a link, in kernel order.
pub async fn addrs(h: &Handle, index: u32) -> Result<Vec<AddrState>> {
    // The header's index makes the kernel filter the dump (the socket sets strict
    // checking, see `connect`); without it every address of the namespace comes back.
    let mut req = h.address().get().set_link_index_filter(index);
    req.message_mut().header.index = index;
    let msgs: Vec<AddressMessage> = req.execute().try_collect().await?;
    Ok(msgs.iter().filter(|m| m.header.index == index).filter_map(addr_state).collect())
}

fn addr_state(m: &AddressMessage) -> Option<AddrState> {
    let f = flags_of(m);
    let tentative = f.contains(AddressFlags::Tentative) && !f.contains(AddressFlags::Dadfailed);
    addr_of(m).map(|addr| AddrState { addr, nodad: f.contains(AddressFlags::Nodad), tentative, proto: proto_of(m) })
}

fn proto_of(m: &AddressMessage) -> u8 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Protocol(p) => Some(u8::from(*p)),
            _ => None,
        })
        .unwrap_or(0)
}

/// Every address of the namespace, with the index of its link.
pub async fn all_addrs(h: &Handle) -> Result<Vec<(u32, AddrState)>> {
    let msgs: Vec<AddressMessage> = h.address().get().execute().try_collect().await?;
    Ok(msgs.iter().filter_map(|m| addr_state(m).map(|a| (m.header.index, a))).collect())
}

/// Deletes an address once `owned` accepts the protocol it carries (the kernel does
/// not match a protocol itself: the address is read first anyway, to be deleted as
/// it is).
pub async fn del_addr(h: &Handle, index: u32, addr: IpNet, owned: impl FnOnce(u8) -> Result<()>) -> Result<()> {
    let msgs: Vec<AddressMessage> = h.address().get().set_link_index_filter(index).execute().try_collect().await?;
    let m = msgs
        .into_iter()
        .find(|m| m.header.index == index && addr_of(m) == Some(addr))
        .ok_or(Error::sys("address not found", Some(nix::errno::Errno::EADDRNOTAVAIL)))?;
    owned(proto_of(&m))?;
    h.address().del(m).execute().await?;
    Ok(())
}

fn route_msg(r: &Route, oif: Option<u32>) -> Result<RouteMessage> {
    let bad = |e: &dyn std::fmt::Display| Error::invalid(format!("route {r}: {e}"));
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dest.addr(), r.dest.prefix_len())
        .map_err(|e| bad(&e))?;
    if let Some(v) = r.via {
        b = b.gateway(v).map_err(|e| bad(&e))?;
    }
    if let Some(i) = oif {
        b = b.output_interface(i);
    }
    if let Some(m) = r.metric {
        b = b.priority(m);
    }
    if let Some(s) = r.src {
        b = b.pref_source(s).map_err(|e| bad(&e))?;
    }
    b = b.protocol(RouteProtocol::from(r.proto.unwrap_or(ROUTE_PROTO)));
    // As `ip route add` does: a route without a gateway is on-link.
    let scope = r.scope.unwrap_or(if r.via.is_none() { 253 } else { 0 });
    b = b.scope(RouteScope::from(scope));
    Ok(b.build())
}

pub fn add_route(s: &mut Acks, r: &Route, oif: Option<u32>) -> Result<()> {
    s.request(RouteNetlinkMessage::NewRoute(route_msg(r, oif)?), CREATE)
}

pub async fn del_route(h: &Handle, r: &Route, oif: Option<u32>) -> Result<()> {
    let mut m = route_msg(r, oif)?;
    // Deletion matches on what is given; leave the scope open unless known. The
    // protocol is always given: a route of netscript's own (proto None) is deleted
    // only as protocol 78, never another route to the same place.
    if r.scope.is_none() {
        m.header.scope = RouteScope::NoWhere;
    }
    h.route().del(m).execute().await?;
    Ok(())
}

/// A route as the kernel holds it in the main table, with its output interface index.
#[derive(Clone, Debug)]
pub struct KernelRoute {
    pub dest: IpNet,
    pub via: Option<IpAddr>,
    pub oif: Option<u32>,
    pub metric: Option<u32>,
    pub proto: u8,
    pub scope: u8,
    pub src: Option<IpAddr>,
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(x) => Some(IpAddr::V4(*x)),
        RouteAddress::Inet6(x) => Some(IpAddr::V6(*x)),
        _ => None,
    }
}

/// The routes of the main table of one address family.
pub async fn routes(h: &Handle, v6: bool) -> Result<Vec<KernelRoute>> {
    let mut query = if v6 {
        RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
    };
    // With strict checking (see `connect`) the header's protocol and type are
    // filters: any of them (the table stays: the main one).
    query.header.protocol = RouteProtocol::Unspec;
    query.header.kind = rtnetlink::packet_route::route::RouteType::Unspec;
    let msgs: Vec<RouteMessage> = h.route().get(query).execute().try_collect().await?;
    let mut out = Vec::new();
    for m in msgs {
        let mut table = m.header.table as u32;
        let fam_zero = if m.header.address_family == AddressFamily::Inet6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        };
        let mut r = KernelRoute {
            dest: IpNet::new(fam_zero, 0).unwrap(),
            via: None,
            oif: None,
            metric: None,
            proto: u8::from(m.header.protocol),
            scope: u8::from(m.header.scope),
            src: None,
        };
        let mut dest = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dest = ip_of(d),
                RouteAttribute::Gateway(g) => r.via = ip_of(g),
                RouteAttribute::Oif(i) => r.oif = Some(*i),
                RouteAttribute::Priority(p) => r.metric = Some(*p),
                RouteAttribute::PrefSource(s) => r.src = ip_of(s),
                RouteAttribute::Table(t) => table = *t,
                _ => {}
            }
        }
        if table != 254 || m.header.kind != rtnetlink::packet_route::route::RouteType::Unicast {
            continue;
        }
        if let Some(d) = dest {
            r.dest = IpNet::new(d, m.header.destination_prefix_length).map_err(|e| Error::sys(e.to_string(), None))?;
        }
        out.push(r);
    }
    Ok(out)
}

// ---- other link kinds, bridge options and port flags (link.add, bridge.add,
// Link:bridge_port) --------------------------------------------------------------

/// Creates a link of `kind` named `name` through the socket of the namespace the
/// request is sent to; `lower` is the index there of its parent / underlay link;
/// `target_fd` sends it straight into another namespace (IFLA_NET_NS_FD).
pub async fn add_kind(
    h: &Handle,
    name: &str,
    kind: &crate::op::LinkKind,
    lower: Option<u32>,
    target_fd: Option<RawFd>,
    index: Option<u32>,
) -> Result<()> {
    use crate::op::LinkKind as K;
    use rtnetlink::packet_route::link::MacVlanMode;
    use rtnetlink::{LinkDummy, LinkIfb, LinkMacVlan, LinkMacVtap, LinkVlan, LinkVxlan};
    let mode = |m: &str| match m {
        "private" => MacVlanMode::Private,
        "vepa" => MacVlanMode::Vepa,
        "passthru" => MacVlanMode::Passthrough,
        "source" => MacVlanMode::Source,
        _ => MacVlanMode::Bridge,
    };
    let need_lower = || Error::invalid(format!("{} \"{name}\" needs its parent link", kind.name()));
    let mut msg = match kind {
        K::Vxlan { id, remote, local, port, .. } => {
            let mut b = LinkVxlan::new(name, *id).port(*port);
            if let Some(i) = lower {
                b = b.dev(i);
            }
            match remote {
                Some(IpAddr::V4(a)) => b = b.remote(*a),
                Some(IpAddr::V6(a)) => b = b.remote6(*a),
                None => {}
            }
            match local {
                Some(IpAddr::V4(a)) => b = b.local(*a),
                Some(IpAddr::V6(a)) => b = b.local6(*a),
                None => {}
            }
            b.build()
        }
        K::Macvlan { mode: m, .. } => LinkMacVlan::new(name, lower.ok_or_else(need_lower)?, mode(m)).build(),
        K::Macvtap { mode: m, .. } => LinkMacVtap::new(name, lower.ok_or_else(need_lower)?, mode(m)).build(),
        K::Vlan { id, .. } => LinkVlan::new(name, lower.ok_or_else(need_lower)?, *id).build(),
        K::Dummy => LinkDummy::new(name).build(),
        K::Ifb => LinkIfb::new(name).build(),
    };
    if let Some(fd) = target_fd {
        msg.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    msg.header.index = index.unwrap_or(0);
    h.link().add(msg).execute().await?;
    Ok(())
}

async fn link_message(h: &Handle, index: u32) -> Result<LinkMessage> {
    let mut st = h.link().get().match_index(index).execute();
    st.try_next().await?.ok_or_else(|| Error::sys("no such link", Some(nix::errno::Errno::ENODEV)))
}

/// The IFLA_LINKINFO entries of a link message.
fn link_infos(m: &LinkMessage) -> impl Iterator<Item = &LinkInfo> {
    m.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos.iter()),
            _ => None,
        })
        .flatten()
}

/// vlan_filtering and stp of bridge `index`.
pub async fn bridge_opts(h: &Handle, index: u32) -> Result<crate::op::BridgeOpts> {
    use rtnetlink::packet_route::link::{BridgeStpState, InfoBridge};
    let m = link_message(h, index).await?;
    let mut o = crate::op::BridgeOpts::default();
    for i in link_infos(&m) {
        if let LinkInfo::Data(InfoData::Bridge(v)) = i {
            for x in v {
                match x {
                    InfoBridge::VlanFiltering(b) => o.vlan_filtering = Some(*b),
                    InfoBridge::StpState(s) => o.stp = Some(*s != BridgeStpState::Disabled),
                    _ => {}
                }
            }
        }
    }
    Ok(o)
}

pub async fn set_bridge_opts(h: &Handle, index: u32, o: &crate::op::BridgeOpts) -> Result<()> {
    use rtnetlink::packet_route::link::BridgeStpState;
    let mut b = LinkMessageBuilder::<LinkBridge>::new_with_info_kind(InfoKind::Bridge).index(index);
    if let Some(v) = o.vlan_filtering {
        b = b.vlan_filtering(v);
    }
    if let Some(s) = o.stp {
        b = b.stp_state(if s { BridgeStpState::KernelStp } else { BridgeStpState::Disabled });
    }
    h.link().change(b.build()).execute().await?;
    Ok(())
}

/// hairpin, isolated, learning and flood (unicast flooding) of bridge port `index`.
pub async fn port_flags(h: &Handle, index: u32) -> Result<crate::op::PortFlags> {
    use rtnetlink::packet_route::link::{InfoBridgePort, InfoPortData};
    let m = link_message(h, index).await?;
    let mut f = crate::op::PortFlags::default();
    for i in link_infos(&m) {
        if let LinkInfo::PortData(InfoPortData::BridgePort(v)) = i {
            for x in v {
                match x {
                    InfoBridgePort::HairpinMode(b) => f.hairpin = Some(*b),
                    InfoBridgePort::Isolated(b) => f.isolated = Some(*b),
                    InfoBridgePort::Learning(b) => f.learning = Some(*b),
                    InfoBridgePort::UnicastFlood(b) => f.flood = Some(*b),
                    _ => {}
                }
            }
        }
    }
    if f.hairpin.is_none() && f.learning.is_none() {
        return Err(Error::sys("not a bridge port (it has no master bridge)", Some(nix::errno::Errno::EINVAL)));
    }
    Ok(f)
}

pub async fn set_port_flags(h: &Handle, index: u32, f: &crate::op::PortFlags) -> Result<()> {
    use rtnetlink::LinkBridgePort;
    let mut b = LinkBridgePort::new(index);
    if let Some(v) = f.hairpin {
        b = b.hairpin(v);
    }
    if let Some(v) = f.isolated {
        b = b.isolated(v);
    }
    if let Some(v) = f.learning {
        b = b.learning(v);
    }
    if let Some(v) = f.flood {
        b = b.flood(v);
    }
    h.link().set_port(b.build()).execute().await?;
    Ok(())
}
// ---- fewer round trips ------------------------------------------------------------
// Links are changed by name (the kernel looks the name up itself: no GETLINK first),
// a created link's index is the one netscript chose for it (or comes back with the
// creation, NLM_F_ECHO, when none was chosen), and dumps are
// filtered by the kernel (the socket sets NETLINK_GET_STRICT_CHK, see `connect`).

/// A netlink connection whose socket asks the kernel to check and honour the
/// filters of dump requests (NETLINK_GET_STRICT_CHK): an address dump for one link
/// returns that link's addresses, not every address of the namespace.
pub fn connect() -> std::io::Result<(rtnetlink::proto::Connection<rtnetlink::packet_route::RouteNetlinkMessage>, Handle)>
{
    rtnetlink::new_connection_with_strict_check().map(|(c, h, _)| (c, h))
}

/// Sends a request and reads its answers; returns the first RTM_NEWLINK message
/// among them (the echo of a creation), or the kernel's error.
async fn request_echo(
    h: &Handle,
    msg: rtnetlink::packet_route::RouteNetlinkMessage,
    flags: u16,
) -> Result<Option<u32>> {
    use futures::StreamExt;
    use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
    use rtnetlink::packet_route::RouteNetlinkMessage as R;
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = flags;
    let mut h = h.clone();
    let mut answers = h.request(req).map_err(Error::from)?;
    let mut index = None;
    while let Some(m) = answers.next().await {
        match m.payload {
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(Error::from(rtnetlink::Error::NetlinkError(e))),
            NetlinkPayload::InnerMessage(R::NewLink(l)) => {
                index.get_or_insert(l.header.index);
            }
            _ => {}
        }
    }
    Ok(index)
}

/// The flags rtnetlink gives a creation (and a link change): besides request and ack.
const CREATE: u16 = rtnetlink::packet_core::NLM_F_CREATE | rtnetlink::packet_core::NLM_F_EXCL;

/// A creation whose answer is the object made.
const CREATE_ECHO: u16 = rtnetlink::packet_core::NLM_F_REQUEST
    | rtnetlink::packet_core::NLM_F_ACK
    | CREATE
    | rtnetlink::packet_core::NLM_F_ECHO;

/// Creates a link (with the index asked for in `msg.header.index`, which the kernel
/// gives it or refuses with EBUSY); returns that index. No echo is asked for: it
/// would be the whole link's description, built by the kernel, read and parsed by us,
/// for an index already known. `create_link_echo` when none was chosen.
pub fn create_link(s: &mut Acks, msg: LinkMessage) -> Result<Option<u32>> {
    let asked = msg.header.index;
    s.request(RouteNetlinkMessage::NewLink(msg), CREATE)?;
    Ok(Some(asked))
}

/// Creates a link with the index the kernel chooses; returns it when the kernel
/// echoes it (Linux 6.3 and later).
pub async fn create_link_echo(h: &Handle, msg: LinkMessage) -> Result<Option<u32>> {
    request_echo(h, RouteNetlinkMessage::NewLink(msg), CREATE_ECHO).await
}

/// A veth pair's creation; the peer goes straight into the namespace `peer_ns_fd`
/// (IFLA_NET_NS_FD on the peer), so it never appears where it does not belong.
/// `index`: the index `name` is to have.
pub fn veth_msg(
    name: &str,
    peer: &str,
    peer_ns_fd: Option<RawFd>,
    index: Option<u32>,
    queues: Option<u32>,
) -> LinkMessage {
    // Each end's queues (IFLA_NUM_TX_QUEUES / IFLA_NUM_RX_QUEUES). Without them the
    // kernel gives an end one queue per CPU, then cuts it to the one it uses, and that
    // cut waits for an RCU grace period while holding the rtnl lock (twice per pair).
    let with_queues = |mut m: LinkMessage| {
        if let Some(n) = queues {
            m.attributes.push(LinkAttribute::NumTxQueues(n));
            m.attributes.push(LinkAttribute::NumRxQueues(n));
        }
        m
    };
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new().name(peer.to_string());
    let peer_msg = match peer_ns_fd {
        Some(fd) => peer_msg.setns_by_fd(fd),
        None => peer_msg,
    };
    let mut msg = with_queues(
        LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(name.to_string())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(with_queues(peer_msg.build()))))
            .build(),
    );
    msg.header.index = index.unwrap_or(0);
    msg
}

/// A bridge's creation, with the index it is to have.
pub fn bridge_msg(name: &str, index: Option<u32>) -> LinkMessage {
    let mut msg = LinkMessageBuilder::<LinkBridge>::new(name).build();
    msg.header.index = index.unwrap_or(0);
    msg
}

/// One change to a link named `name`, in one request: any of alias, master (Some(None)
/// releases it), MTU, up/down.
#[derive(Default)]
pub struct LinkSet<'a> {
    pub alias: Option<&'a str>,
    pub master: Option<Option<u32>>,
    pub mtu: Option<u32>,
    pub up: Option<bool>,
}

pub fn set_link(sock: &mut Acks, name: &str, s: LinkSet<'_>) -> Result<()> {
    let mut b = LinkUnspec::new_with_name(name);
    if let Some(a) = s.alias {
        b = b.alias(a.to_string());
    }
    match s.master {
        Some(Some(m)) => b = b.controller(m),
        Some(None) => b = b.nocontroller(),
        None => {}
    }
    if let Some(m) = s.mtu {
        b = b.mtu(m);
    }
    match s.up {
        Some(true) => b = b.up(),
        Some(false) => b = b.down(),
        None => {}
    }
    sock.request(RouteNetlinkMessage::SetLink(b.build()), CREATE)
}

/// Deletes the link named `name`.
pub async fn del_link_by_name(h: &Handle, name: &str) -> Result<()> {
    let mut req = h.link().del(0);
    req.message_mut().attributes.push(LinkAttribute::IfName(name.to_string()));
    req.execute().await?;
    Ok(())
}

/// Moves the link named `name` to the namespace `target_fd`.
pub async fn move_link_by_name(h: &Handle, name: &str, target_fd: RawFd) -> Result<()> {
    h.link().set(LinkUnspec::new_with_name(name).setns_by_fd(target_fd).build()).execute().await?;
    Ok(())
}

// ---- without the network lock ------------------------------------------------------
// Every netlink request about links waits for the kernel's network lock (rtnl), which
// the kernel's cleanup of deleted namespaces holds for long stretches. SIOCGIFINDEX
// looks a name up under RCU instead: it answers at once, which is what a wait for
// links to go needs.

/// A socket for `link_there`, made in the namespace it is to ask about (a socket
/// stays in the namespace it was made in).
pub fn probe_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd returned is owned by nobody else.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::from_errno("cannot open a socket", nix::errno::Errno::last()));
    }
    // SAFETY: `fd` was just returned by socket(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether a link named `name` is in `probe`'s namespace now (`probe_socket`).
pub fn link_there(probe: BorrowedFd<'_>, name: &str) -> Result<bool> {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() || name.contains('\0') {
        return Ok(false); // no link can have such a name
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFINDEX reads ifr_name and writes ifr_ifindex of `req`, which lives
    // through the call.
    if unsafe { libc::ioctl(probe.as_raw_fd(), libc::SIOCGIFINDEX as _, &mut req) } == 0 {
        return Ok(true);
    }
    match nix::errno::Errno::last() {
        nix::errno::Errno::ENODEV => Ok(false),
        e => Err(Error::from_errno(format!("cannot look up link \"{name}\""), e)),
    }
}

// ---- requests answered by an ack, without the async machinery ----------------------

/// A NETLINK_ROUTE socket for requests answered by an ack alone (a change): one send
/// and one receive, where the connection behind `Handle` polls, receives until the
/// socket is empty and wakes the request through a channel.
pub struct Acks {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Acks {
    /// A socket in the calling thread's namespace.
    pub fn open() -> Result<Acks> {
        // SAFETY: plain socket(2); the fd is owned from here.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // Not zeroed (a socket per namespace): `request` reads only what recv(2) wrote.
        Ok(Acks { fd: unsafe { OwnedFd::from_raw_fd(fd) }, seq: 0, buf: Vec::with_capacity(8192) })
    }

    /// Sends `msg` with `flags` (NLM_F_REQUEST | NLM_F_ACK added) and waits for its ack;
    /// a refusal is the kernel's errno.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags | NLM_F_REQUEST | NLM_F_ACK;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        loop {
            // SAFETY: send(2) of an initialized buffer on our socket.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), out.as_ptr().cast(), out.len(), 0) };
            if n >= 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
        loop {
            // SAFETY: recv(2) into our buffer, within its capacity; its length is then
            // what recv wrote (initialized).
            self.buf.clear();
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.capacity(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let n = n as usize;
            // SAFETY: recv(2) initialized the first n bytes, n <= capacity.
            unsafe { self.buf.set_len(n) };
            let mut at = 0usize;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(self.buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                if len < 16 || at + len > n {
                    break;
                }
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[at..at + len])
                    .map_err(|e| Error::sys(format!("cannot read the kernel's answer: {e}"), None))?;
                if m.header.sequence_number == self.seq
                    && let NetlinkPayload::Error(e) = m.payload
                {
                    return match e.code {
                        None => Ok(()),
                        Some(_) => Err(Error::from(rtnetlink::Error::NetlinkError(e))),
                    };
                }
                at += (len + 3) & !3;
            }
        }
    }
}
