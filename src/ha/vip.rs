//! The virtual IP: added and removed through netlink, announced with gratuitous ARP
//! (IPv4) or an unsolicited neighbour advertisement (IPv6).
//!
//! Taking over the VIP is two steps. [`add`] puts the address on the interface, so the kernel
//! answers for it and sockets bound to it (with IP_FREEBIND on the standby) start receiving.
//! [`announce`] then tells the link: the neighbours of the pair still map the VIP to the old
//! active's MAC address in their ARP or neighbour caches, and would keep sending it there until
//! the entry timed out (tens of seconds, minutes on some switches and phones).
//!
//! The interface is looked up by name through netlink (RTM_GETLINK with IFLA_IFNAME), never
//! through /sys: /sys shows the network namespace of whoever mounted it, which inside a
//! container or `ip netns exec` need not be the namespace this process sends from. The async
//! calls open one netlink connection per call: VIP changes happen at takeover and release, a
//! few times a day at most, and a fresh connection has no state to go stale in between.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};

use futures_util::TryStreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkLayerType, LinkMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// A virtual IP: an address and its prefix, on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
    pub interface: String,
}

/// Why a VIP could not be parsed, added, removed, checked or announced. Every message names
/// the VIP and its interface, so a log line alone says which one failed.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The configured address, prefix, netmask or interface name is malformed.
    #[error("{0}")]
    Parse(String),
    /// No interface of that name in this network namespace.
    #[error("{0}")]
    NoInterface(String),
    /// The kernel refused a netlink request (EPERM without CAP_NET_ADMIN, for one).
    #[error("{0}")]
    Netlink(String),
    /// A socket call failed; the message says which VIP and which step.
    #[error("{0}")]
    Io(io::Error),
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} on {}", self.addr, self.prefix, self.interface)
    }
}

impl Vip {
    /// "10.0.0.100/24", "10.0.0.100" (prefix 32), "fd00::100/64", also
    /// "10.0.0.100/255.255.255.0" (netmask form, as Heartbeat's IPaddr2 takes).
    pub fn parse(spec: &str, interface: &str) -> Result<Vip, VipError> {
        let bad = |why: String| VipError::Parse(format!("bad virtual IP {spec:?} on {interface:?}: {why}"));
        check_interface_name(interface).map_err(|why| bad(why.to_string()))?;
        let spec = spec.trim();
        let (addr_text, prefix_text) = match spec.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (spec, None),
        };
        let addr: IpAddr =
            addr_text.parse().map_err(|_| bad(format!("{addr_text:?} is not an IPv4 or IPv6 address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| bad(format!("prefix length /{p} is over {max}")))?,
            Some(p) => match (addr, p.parse::<Ipv4Addr>()) {
                (IpAddr::V4(_), Ok(mask)) => prefix_of_netmask(mask)
                    .ok_or_else(|| bad(format!("netmask {mask} is not a run of ones followed by zeros")))?,
                _ => return Err(bad(format!("{p:?} after '/' is neither a prefix length nor an IPv4 netmask"))),
            },
        };
        let unusable = match addr {
            IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
        };
        if unusable {
            return Err(bad(format!("{addr} cannot be an interface's address (unspecified, multicast or broadcast)")));
        }
        Ok(Vip { addr, prefix, interface: interface.to_string() })
    }
}

/// The kernel's rules for an interface name (dev_valid_name in net/core/dev.c): 1 to 15 bytes
/// (IFNAMSIZ is 16 with the NUL), not "." or "..", no '/', ':' or whitespace.
fn check_interface_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err("an interface name has 1 to 15 bytes");
    }
    if name == "." || name == ".." || name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err("an interface name is not \".\" or \"..\" and has no '/', ':' or whitespace");
    }
    Ok(())
}

/// The prefix length of a contiguous netmask (255.255.255.0 -> 24), `None` for one like
/// 255.0.255.0 that no prefix length can express.
fn prefix_of_netmask(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    (bits.leading_ones() == bits.count_ones()).then(|| bits.count_ones() as u8)
}

/// Adds the address to the interface (idempotent: already there is Ok). IPv6 with IFA_F_NODAD
/// so it is usable at once.
pub async fn add(vip: &Vip) -> Result<(), VipError> {
    let handle = connect(vip)?;
    let link = link(&handle, vip).await?;
    let mut request = handle.address().add(link.index, vip.addr, vip.prefix);
    if vip.addr.is_ipv6() {
        // Without NODAD the kernel keeps a new IPv6 address "tentative" while it runs Duplicate
        // Address Detection (RFC 4862 §5.4), a second or more, and nothing can bind to it or send
        // from it meanwhile. At takeover the old owner is presumed gone, and if it is not, the
        // advertisement of `announce` overrides it anyway: the wait would only lengthen the outage.
        // The header byte and IFA_FLAGS carry the same flag; newer kernels read IFA_FLAGS.
        let message = request.message_mut();
        message.header.flags |= AddressHeaderFlags::Nodad;
        message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match request.execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(netlink_error(vip, "adding the address", &e)),
    }
}

/// Removes it (idempotent: not there is Ok). The address goes whatever prefix it was added
/// with: what matters is that this node stops answering for it.
pub async fn remove(vip: &Vip) -> Result<(), VipError> {
    let handle = connect(vip)?;
    let link = link(&handle, vip).await?;
    for held in held(&handle, vip, link.index).await? {
        match handle.address().del(held).execute().await {
            Ok(()) => {}
            // Removed by someone else between the dump and the delete: the end state we want.
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
            Err(e) => return Err(netlink_error(vip, "removing the address", &e)),
        }
    }
    Ok(())
}

/// Whether the interface holds the address now (with any prefix length).
pub async fn is_present(vip: &Vip) -> Result<bool, VipError> {
    let handle = connect(vip)?;
    let link = link(&handle, vip).await?;
    Ok(!held(&handle, vip, link.index).await?.is_empty())
}

/// Tells the link the address moved here: IPv4, gratuitous ARP (one ARP request and one ARP
/// reply, broadcast, sender = target = VIP, sender MAC = the interface's) through an AF_PACKET
/// socket; IPv6, an unsolicited neighbour advertisement (override flag, target link-layer
/// address option) to ff02::1 through a raw ICMPv6 socket with hop limit 255, bound to the
/// interface. Synchronous, non-blocking sends.
///
/// One announcement can be lost like any frame; RFC 5227 §2.3 sends two, two seconds apart, so
/// a caller that wants the same calls this again a little later. An interface without an
/// Ethernet address (loopback, tun, a point-to-point link) has no neighbour cache to correct:
/// there this logs and returns Ok.
pub fn announce(vip: &Vip) -> Result<(), VipError> {
    let link = link_now(vip)?;
    let Some(mac) = link.mac else {
        tracing::warn!(vip = %vip, "the interface has no Ethernet address: no neighbour to announce the virtual IP to");
        return Ok(());
    };
    match vip.addr {
        IpAddr::V4(ip) => send_garp(vip, link.index, mac, ip),
        IpAddr::V6(ip) => send_na(vip, link.index, mac, ip),
    }
}

/// What the VIP needs to know of its interface.
struct Link {
    index: u32,
    /// The Ethernet address, `None` on a link that has none (or loopback's all-zero one).
    mac: Option<[u8; 6]>,
}

impl Link {
    fn of(message: &LinkMessage) -> Link {
        let mac = if message.header.link_layer_type == LinkLayerType::Ether {
            message
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                    _ => None,
                })
                .filter(|mac| *mac != [0; 6])
        } else {
            None
        };
        Link { index: message.header.index, mac }
    }
}

/// A netlink connection for one call. Its driver is spawned on the caller's runtime; it ends by
/// itself once the returned handle (and its clones) are dropped at the end of that call.
fn connect(vip: &Vip) -> Result<rtnetlink::Handle, VipError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| io_error(vip, "opening a netlink socket", e))?;
    drop(tokio::spawn(connection));
    Ok(handle)
}

/// The interface, through RTM_GETLINK by name.
async fn link(handle: &rtnetlink::Handle, vip: &Vip) -> Result<Link, VipError> {
    let mut replies = std::pin::pin!(handle.link().get().match_name(vip.interface.clone()).execute());
    match replies.try_next().await {
        Ok(Some(message)) => Ok(Link::of(&message)),
        Ok(None) => Err(no_interface(vip)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Err(no_interface(vip)),
        Err(e) => Err(netlink_error(vip, "looking up the interface", &e)),
    }
}

/// The same RTM_GETLINK as [`link`], for the synchronous [`announce`]: a blocking netlink
/// socket of its own, since `announce` may be called both inside a tokio runtime (which cannot
/// block on another) and outside any. The kernel handles a request to NETLINK_ROUTE inside the
/// sender's send() and queues the answer before send() returns, so the read never waits.
fn link_now(vip: &Vip) -> Result<Link, VipError> {
    use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket as NetlinkSocket, SocketAddr as NetlinkAddr};
    const SEQUENCE: u32 = 1;
    let mut query = LinkMessage::default();
    query.attributes.push(LinkAttribute::IfName(vip.interface.clone()));
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetLink(query));
    request.header.flags = NLM_F_REQUEST;
    request.header.sequence_number = SEQUENCE;
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);

    let step = "looking up the interface";
    let socket = NetlinkSocket::new(NETLINK_ROUTE).map_err(|e| io_error(vip, step, e))?;
    socket.connect(&NetlinkAddr::new(0, 0)).map_err(|e| io_error(vip, step, e))?;
    socket.send(&bytes, 0).map_err(|e| io_error(vip, step, e))?;
    // One link's RTM_NEWLINK (with its statistics and per-family blocks) is a few KiB.
    let mut reply: Vec<u8> = Vec::with_capacity(64 * 1024);
    socket.recv(&mut reply, libc::MSG_DONTWAIT).map_err(|e| io_error(vip, step, e))?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| VipError::Netlink(format!("virtual IP {vip}: {step}: unreadable netlink reply: {e}")))?;
    if reply.header.sequence_number != SEQUENCE {
        return Err(VipError::Netlink(format!("virtual IP {vip}: {step}: netlink answered another request")));
    }
    match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(message)) => Ok(Link::of(&message)),
        NetlinkPayload::Error(e) if -e.raw_code() == libc::ENODEV => Err(no_interface(vip)),
        NetlinkPayload::Error(e) => Err(VipError::Netlink(format!("virtual IP {vip}: {step}: {}", e.to_io()))),
        other => Err(VipError::Netlink(format!("virtual IP {vip}: {step}: unexpected netlink reply {other:?}"))),
    }
}

/// The interface's addresses that are the VIP's, ready to be passed to a delete.
async fn held(handle: &rtnetlink::Handle, vip: &Vip, index: u32) -> Result<Vec<AddressMessage>, VipError> {
    let mut request = handle.address().get().set_link_index_filter(index);
    // Asking for one family makes the kernel dump only that family's addresses.
    request.message_mut().header.family = if vip.addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let dump: Vec<AddressMessage> = request
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink_error(vip, "listing the interface's addresses", &e))?;
    Ok(dump
        .into_iter()
        .filter(|message| local_address(message) == Some(vip.addr))
        .map(|message| {
            // The header (family, prefix, index) and the address identify it for RTM_DELADDR;
            // the dump's cache info and flags are not for sending back.
            let mut delete = AddressMessage::default();
            delete.attributes = message
                .attributes
                .into_iter()
                .filter(|a| matches!(a, AddressAttribute::Address(_) | AddressAttribute::Local(_)))
                .collect();
            delete.header = message.header;
            delete
        })
        .collect())
}

/// The address an RTM_NEWADDR gives the interface itself: IFA_LOCAL when present, which on a
/// point-to-point IPv4 link differs from IFA_ADDRESS (the peer's), else IFA_ADDRESS.
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// The errno of a netlink NACK.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(message) => Some(-message.raw_code()),
        _ => None,
    }
}

fn netlink_error(vip: &Vip, step: &str, e: &rtnetlink::Error) -> VipError {
    let why = match e {
        rtnetlink::Error::NetlinkError(message) => message.to_io().to_string(),
        other => other.to_string(),
    };
    VipError::Netlink(format!("virtual IP {vip}: {step}: {why}"))
}

fn no_interface(vip: &Vip) -> VipError {
    VipError::NoInterface(format!("virtual IP {vip}: no interface {:?} in this network namespace", vip.interface))
}

fn io_error(vip: &Vip, step: &str, e: io::Error) -> VipError {
    VipError::Io(io::Error::new(e.kind(), format!("virtual IP {vip}: {step}: {e}")))
}

const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_HARDWARE_ETHERNET: u16 = 1;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// A gratuitous ARP frame: Ethernet header and RFC 826 packet, sender and target protocol
/// address both the VIP, so that every host that has the VIP in its cache replaces the MAC it
/// holds with `mac` (RFC 826 "Packet Reception": the sender pair is merged into the table
/// before the opcode is even looked at).
///
/// As a request (`op` 1) it is RFC 5227 §3's ARP Announcement: target hardware address all
/// zeroes, as §2.1.1 has it for the probe it is "identical to". As a reply (`op` 2) it is
/// RFC 5944 §4.6's gratuitous reply, whose target hardware address is also the new MAC. Both
/// go out since stacks differ in which of the two they act on.
fn garp_frame(mac: [u8; 6], ip: Ipv4Addr, op: u16) -> [u8; 42] {
    let target_mac = if op == ARP_REPLY { mac } else { [0; 6] };
    let mut frame = [0u8; 42];
    // Ethernet II: destination, source, EtherType.
    frame[0..6].copy_from_slice(&BROADCAST_MAC);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // RFC 826: ar$hrd, ar$pro, ar$hln, ar$pln, ar$op, ar$sha, ar$spa, ar$tha, ar$tpa.
    frame[14..16].copy_from_slice(&ARP_HARDWARE_ETHERNET.to_be_bytes());
    frame[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame[18] = 6;
    frame[19] = 4;
    frame[20..22].copy_from_slice(&op.to_be_bytes());
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    frame[32..38].copy_from_slice(&target_mac);
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPTION_TARGET_LINK_LAYER_ADDRESS: u8 = 2;

/// An unsolicited Neighbor Advertisement for `ip` at `mac` (RFC 4861 §4.4, sent as §7.2.6
/// says): Router flag clear (a proxy is no router), Solicited clear (nobody asked, and §7.2.5
/// would otherwise mark the entry REACHABLE without proof), Override set so that receivers
/// replace the link-layer address they cache, and the Target Link-Layer Address option (§4.6.1)
/// carrying the new one. The checksum stays zero: on a raw ICMPv6 socket the kernel computes it
/// over the pseudo-header (RFC 3542 §3.1), which needs the source address the kernel picks.
fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut na = Vec::with_capacity(32);
    na.extend_from_slice(&[ICMPV6_NEIGHBOR_ADVERTISEMENT, 0]); // type, code
    na.extend_from_slice(&[0, 0]); // checksum, the kernel's
    na.extend_from_slice(&[NA_FLAG_OVERRIDE, 0, 0, 0]); // R S O flags, 29 reserved bits
    na.extend_from_slice(&ip.octets()); // target address
    na.extend_from_slice(&[ND_OPTION_TARGET_LINK_LAYER_ADDRESS, 1]); // option type, length in 8-octet units
    na.extend_from_slice(&mac);
    na
}

fn send_garp(vip: &Vip, index: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), VipError> {
    let step = "sending the gratuitous ARP";
    // SOCK_RAW: the frame is given whole, Ethernet header included. Protocol 0: the socket
    // receives nothing, it only sends.
    let socket = Socket::new(Domain::PACKET, Type::RAW, None).map_err(|e| io_error(vip, step, e))?;
    socket.set_nonblocking(true).map_err(|e| io_error(vip, step, e))?;
    let to = link_layer_address(index, BROADCAST_MAC).map_err(|e| io_error(vip, step, e))?;
    for op in [ARP_REQUEST, ARP_REPLY] {
        socket.send_to(&garp_frame(mac, ip, op), &to).map_err(|e| io_error(vip, step, e))?;
    }
    Ok(())
}

/// The sockaddr_ll (packet(7)) that sends a frame out of interface `index`.
fn link_layer_address(index: u32, destination: [u8; 6]) -> io::Result<SockAddr> {
    let mut sll_addr = [0u8; 8];
    sll_addr[..6].copy_from_slice(&destination);
    let address = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::sa_family_t,
        sll_protocol: ETHERTYPE_ARP.to_be(),
        sll_ifindex: i32::try_from(index).map_err(|_| io::Error::other("interface index out of range"))?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr,
    };
    let length = std::mem::size_of::<libc::sockaddr_ll>();
    // SAFETY: sockaddr_storage is plain integers, for which all-zero is a valid value, and is
    // larger than sockaddr_ll, so the copy stays inside it; SockAddr::new is then given a
    // storage whose family and length describe the sockaddr_ll written into it.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        std::ptr::copy_nonoverlapping(
            (&address as *const libc::sockaddr_ll).cast::<u8>(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            length,
        );
        Ok(SockAddr::new(storage, length as libc::socklen_t))
    }
}

fn send_na(vip: &Vip, index: u32, mac: [u8; 6], ip: Ipv6Addr) -> Result<(), VipError> {
    let step = "sending the unsolicited neighbour advertisement";
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map_err(|e| io_error(vip, step, e))?;
    socket.set_nonblocking(true).map_err(|e| io_error(vip, step, e))?;
    // RFC 4861 §7.1.2: a receiver drops an NA whose hop limit is not 255, the proof that it was
    // not forwarded from off the link.
    socket.set_multicast_hops_v6(255).map_err(|e| io_error(vip, step, e))?;
    socket.set_multicast_if_v6(index).map_err(|e| io_error(vip, step, e))?;
    // Our own stack would only log "someone advertises our address" for the copy looped back.
    socket.set_multicast_loop_v6(false).map_err(|e| io_error(vip, step, e))?;
    socket.bind_device(Some(vip.interface.as_bytes())).map_err(|e| io_error(vip, step, e))?;
    let to = SocketAddrV6::new(all_nodes, 0, 0, index);
    socket.send_to(&unsolicited_na(mac, ip), &to.into()).map_err(|e| io_error(vip, step, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x53, 0x50, 0x0a, 0x0b, 0x0c];

    fn vip(spec: &str) -> Vip {
        match Vip::parse(spec, "eth0") {
            Ok(vip) => vip,
            Err(e) => panic!("{spec}: {e}"),
        }
    }

    #[test]
    fn parses_the_forms_ipaddr2_takes() {
        let v4: IpAddr = "10.0.0.100".parse().unwrap();
        assert_eq!(vip("10.0.0.100/24"), Vip { addr: v4, prefix: 24, interface: "eth0".into() });
        assert_eq!(vip("10.0.0.100").prefix, 32);
        assert_eq!(vip(" 10.0.0.100/255.255.255.0 ").prefix, 24);
        assert_eq!(vip("10.0.0.100/255.255.255.255").prefix, 32);
        assert_eq!(vip("10.0.0.100/0.0.0.0").prefix, 0);
        assert_eq!(vip("fd00::100/64").addr, "fd00::100".parse::<IpAddr>().unwrap());
        assert_eq!(vip("fd00::100/64").prefix, 64);
        assert_eq!(vip("fd00::100").prefix, 128);
        assert_eq!(vip("10.0.0.100/24").to_string(), "10.0.0.100/24 on eth0");
        assert_eq!(vip("fd00::100/64").to_string(), "fd00::100/64 on eth0");
    }

    #[test]
    fn rejects_what_no_interface_can_hold() {
        for (spec, interface) in [
            ("10.0.0.100/33", "eth0"),
            ("10.0.0.100/999", "eth0"),
            ("10.0.0.100/+24", "eth0"),
            ("10.0.0.100/", "eth0"),
            ("fd00::100/129", "eth0"),
            ("fd00::100/ffff::", "eth0"),
            ("10.0.0.100/255.0.255.0", "eth0"),
            ("10.0.0.300/24", "eth0"),
            ("vip.example.com", "eth0"),
            ("0.0.0.0/0", "eth0"),
            ("224.0.0.1", "eth0"),
            ("255.255.255.255", "eth0"),
            ("ff02::1", "eth0"),
            ("10.0.0.100/24", ""),
            ("10.0.0.100/24", "a-name-too-long0"),
            ("10.0.0.100/24", "eth0:1"),
            ("10.0.0.100/24", "eth 0"),
            ("10.0.0.100/24", ".."),
        ] {
            match Vip::parse(spec, interface) {
                Err(VipError::Parse(message)) => {
                    assert!(message.contains(spec) && message.contains(interface), "{message}")
                }
                other => panic!("{spec} on {interface:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn gratuitous_arp_request_is_an_rfc_5227_announcement() {
        let frame = garp_frame(MAC, Ipv4Addr::new(10, 0, 0, 100), ARP_REQUEST);
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // Ethernet destination: broadcast
            0x02, 0x53, 0x50, 0x0a, 0x0b, 0x0c, // Ethernet source: ours
            0x08, 0x06, // EtherType ARP
            0x00, 0x01, // ar$hrd Ethernet
            0x08, 0x00, // ar$pro IPv4
            6, 4, // ar$hln, ar$pln
            0x00, 0x01, // ar$op request
            0x02, 0x53, 0x50, 0x0a, 0x0b, 0x0c, // ar$sha
            10, 0, 0, 100, // ar$spa: the VIP
            0, 0, 0, 0, 0, 0, // ar$tha: zero (RFC 5227 §2.1.1, §3)
            10, 0, 0, 100, // ar$tpa: the VIP again
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn gratuitous_arp_reply_carries_the_new_mac_as_target_too() {
        let frame = garp_frame(MAC, Ipv4Addr::new(192, 168, 1, 7), ARP_REPLY);
        assert_eq!(frame[0..6], BROADCAST_MAC);
        assert_eq!(frame[12..14], [0x08, 0x06]);
        assert_eq!(frame[20..22], [0x00, 0x02]);
        assert_eq!(frame[22..28], MAC);
        assert_eq!(frame[28..32], [192, 168, 1, 7]);
        assert_eq!(frame[32..38], MAC);
        assert_eq!(frame[38..42], [192, 168, 1, 7]);
    }

    #[test]
    fn unsolicited_na_follows_rfc_4861() {
        let target: Ipv6Addr = "fd00::100".parse().unwrap();
        let na = unsolicited_na(MAC, target);
        let mut expected = vec![
            136, 0, // type Neighbor Advertisement, code 0
            0, 0, // checksum: the kernel's
            0x20, 0, 0, 0, // R=0 S=0 O=1, reserved
        ];
        expected.extend_from_slice(&target.octets());
        expected.extend_from_slice(&[2, 1]); // Target Link-Layer Address option, 8 octets
        expected.extend_from_slice(&MAC);
        assert_eq!(na, expected);
        // §4.4: 24 octets of message, then options in 8-octet units.
        assert_eq!(na.len(), 32);
        assert_eq!(na[24..].len() % 8, 0);
    }

    #[test]
    fn netmasks_convert_only_when_contiguous() {
        assert_eq!(prefix_of_netmask(Ipv4Addr::new(255, 255, 240, 0)), Some(20));
        assert_eq!(prefix_of_netmask(Ipv4Addr::new(255, 255, 255, 254)), Some(31));
        assert_eq!(prefix_of_netmask(Ipv4Addr::new(0, 255, 255, 0)), None);
    }
}
