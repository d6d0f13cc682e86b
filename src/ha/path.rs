//! Heartbeat paths, written as ha.cf lines: `ucast IFACE ADDR…`, `bcast IFACE`,
//! `mcast IFACE GROUP PORT TTL`. Each path is one UDP socket tied to its interface
//! (SO_BINDTODEVICE), so a heartbeat that arrives on it really came over that link, and
//! per-path liveness means something: cut one cable and the other path still speaks.

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("[ha] path {line:?}: {why}")]
    Syntax { line: String, why: String },
    #[error("[ha] path {line:?}: {source}")]
    Io {
        line: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// To each listed address that is not this host's own.
    Ucast(Vec<IpAddr>),
    /// To 255.255.255.255 on the interface.
    Bcast,
    /// To a multicast group, with its own port and TTL.
    Mcast { group: Ipv4Addr, port: u16, ttl: u32 },
}

/// One parsed path line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSpec {
    pub line: String,
    pub interface: String,
    pub kind: Kind,
}

impl PathSpec {
    /// # Errors
    /// A line that is not one of the three forms.
    pub fn parse(line: &str) -> Result<PathSpec, PathError> {
        let bad = |why: &str| PathError::Syntax { line: line.to_string(), why: why.to_string() };
        let words: Vec<&str> = line.split_whitespace().collect();
        let (kind, interface, rest) = match words.as_slice() {
            [kind, iface, rest @ ..] => (*kind, iface.to_string(), rest),
            _ => return Err(bad("want `ucast IFACE ADDR…`, `bcast IFACE` or `mcast IFACE GROUP PORT TTL`")),
        };
        if interface.len() > 15 {
            return Err(bad("interface names are at most 15 characters"));
        }
        let kind = match kind {
            "ucast" => {
                let addrs: Vec<IpAddr> =
                    rest.iter().map(|a| a.parse().map_err(|_| bad("not an IP address"))).collect::<Result<_, _>>()?;
                if addrs.is_empty() {
                    return Err(bad("ucast needs at least one address"));
                }
                if addrs.iter().any(|a| a.is_ipv4() != addrs[0].is_ipv4()) {
                    return Err(bad("one ucast line takes addresses of one family"));
                }
                Kind::Ucast(addrs)
            }
            "bcast" if rest.is_empty() => Kind::Bcast,
            "mcast" => match rest {
                // ha.cf also has a LOOP field; multicast loopback stays off here.
                [group, port, ttl, ..] => {
                    let group: Ipv4Addr = group.parse().map_err(|_| bad("GROUP is not an IPv4 address"))?;
                    if !group.is_multicast() {
                        return Err(bad("GROUP is not a multicast address"));
                    }
                    Kind::Mcast {
                        group,
                        port: port.parse().map_err(|_| bad("PORT is not a port"))?,
                        ttl: ttl.parse().map_err(|_| bad("TTL is not a number"))?,
                    }
                }
                _ => return Err(bad("mcast IFACE GROUP PORT TTL")),
            },
            _ => return Err(bad("want ucast, bcast or mcast")),
        };
        Ok(PathSpec { line: line.to_string(), interface, kind })
    }
}

/// An open path: its socket and where heartbeats go.
pub struct Path {
    pub spec: PathSpec,
    pub socket: tokio::net::UdpSocket,
    pub targets: Vec<SocketAddr>,
}

/// Whether `ip` is one of this host's addresses (binding to it works without freebind).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Opens `spec` on `udpport` (ucast, bcast). Must run inside a tokio runtime.
///
/// # Errors
/// The interface does not exist, the port is taken without SO_REUSEADDR, …
pub fn open(spec: &PathSpec, udpport: u16) -> Result<Path, PathError> {
    let io = |source| PathError::Io { line: spec.line.clone(), source };
    let v6 = matches!(&spec.kind, Kind::Ucast(a) if a[0].is_ipv6());
    let sock =
        Socket::new(if v6 { Domain::IPV6 } else { Domain::IPV4 }, Type::DGRAM, Some(Protocol::UDP)).map_err(io)?;
    // Every path listens on the same port, each tied to its own interface.
    sock.set_reuse_address(true).map_err(io)?;
    sock.bind_device(Some(spec.interface.as_bytes())).map_err(io)?;
    let (port, targets) = match &spec.kind {
        Kind::Ucast(addrs) => {
            let to = addrs.iter().filter(|a| !is_local(**a)).map(|a| SocketAddr::new(*a, udpport)).collect();
            (udpport, to)
        }
        Kind::Bcast => {
            sock.set_broadcast(true).map_err(io)?;
            (udpport, vec![SocketAddr::new(Ipv4Addr::BROADCAST.into(), udpport)])
        }
        Kind::Mcast { group, port, ttl } => {
            let index = interface_index(&spec.interface).map_err(io)?;
            sock.join_multicast_v4_n(group, &InterfaceIndexOrAddress::Index(index)).map_err(io)?;
            sock.set_multicast_ttl_v4(*ttl).map_err(io)?;
            // Our own heartbeats are no news to us.
            sock.set_multicast_loop_v4(false).map_err(io)?;
            (*port, vec![SocketAddr::new((*group).into(), *port)])
        }
    };
    let any: IpAddr = if v6 { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() };
    sock.bind(&SockAddr::from(SocketAddr::new(any, port))).map_err(io)?;
    sock.set_nonblocking(true).map_err(io)?;
    let socket = tokio::net::UdpSocket::from_std(sock.into()).map_err(io)?;
    Ok(Path { spec: spec.clone(), socket, targets })
}

fn interface_index(name: &str) -> std::io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| std::io::Error::other("interface name has a NUL"))?;
    // SAFETY: a valid NUL-terminated string; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha_cf_lines() {
        let p = PathSpec::parse("ucast eth1 10.0.0.1 10.0.0.2").unwrap();
        assert_eq!(p.interface, "eth1");
        assert_eq!(p.kind, Kind::Ucast(vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()]));
        assert_eq!(PathSpec::parse("bcast bond0").unwrap().kind, Kind::Bcast);
        assert_eq!(
            PathSpec::parse("mcast eth0 225.0.0.1 694 1 0").unwrap().kind,
            Kind::Mcast { group: "225.0.0.1".parse().unwrap(), port: 694, ttl: 1 }
        );
        for bad in [
            "",
            "ucast",
            "ucast eth0",
            "ucast eth0 nope",
            "ucast eth0 10.0.0.1 ::1",
            "bcast eth0 extra",
            "mcast eth0 10.0.0.1 694 1",
            "mcast eth0 225.0.0.1 port 1",
            "serial /dev/ttyS0",
            "ucast averyveryverylongname 10.0.0.1",
        ] {
            assert!(PathSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_addresses_are_skipped() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let p = PathSpec::parse("ucast lo 127.0.0.1 192.0.2.77").unwrap();
            let path = open(&p, 0).unwrap();
            assert_eq!(path.targets, vec!["192.0.2.77:0".parse().unwrap()]);
        });
    }
}
