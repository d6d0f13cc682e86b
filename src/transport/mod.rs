//! Sockets in, framed messages out; messages in, datagrams and stream writes out.
//!
//! Owns: the UDP and TCP listeners of `[core] listen`, the table of open TCP connections
//! (so replies and in-dialog requests go back over the connection a request came on,
//! RFC 3261 §18.2.2), stream framing by Content-Length (§18.3), and the advertised address
//! written into Via and Record-Route. Does not own: what a message means.
//!
//! The hot path: each UDP socket (several per address with SO_REUSEPORT) has its own
//! receive task that hands every datagram to the [`Handler`] inline, with no channel hop
//! and no lock. Sends never wait: UDP uses `try_send_to`, TCP queues to the connection's
//! writer task.

mod tcp;
mod udp;

use crate::config::{parse_listen, Config};
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TpError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("no {0} socket to send from")]
    NoSocket(&'static str),
    #[error("send to {0} failed: {1}")]
    Send(SocketAddr, std::io::Error),
    #[error("send to {0} would block; datagram dropped")]
    WouldBlock(SocketAddr),
    #[error("{0}")]
    Config(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
    /// The transport token of a Via header (RFC 3261 §20.42).
    pub fn via_token(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }
    pub fn parse(s: &str) -> Option<Proto> {
        if s.eq_ignore_ascii_case("udp") {
            Some(Proto::Udp)
        } else if s.eq_ignore_ascii_case("tcp") {
            Some(Proto::Tcp)
        } else {
            None
        }
    }
    pub fn is_stream(self) -> bool {
        self == Proto::Tcp
    }
}

/// One configured socket and how it presents itself in Via and Record-Route.
#[derive(Clone, Debug)]
pub struct Listener {
    pub id: usize,
    pub proto: Proto,
    pub addr: SocketAddr,
    /// `host:port` for Via / Record-Route (the `advertise` address, or the socket's).
    pub advertised: String,
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// A message as it arrived.
#[derive(Debug)]
pub struct Inbound {
    pub data: Bytes,
    pub src: SocketAddr,
    pub proto: Proto,
    /// Index of the [`Listener`] it arrived on.
    pub listener: usize,
    /// How long it waited in the kernel's receive queue (zero when unknown).
    pub queued: std::time::Duration,
}

/// Receives every framed message. Called on the receiving task: must not block.
pub trait Handler: Send + Sync + 'static {
    fn on_message(&self, msg: Inbound);
}

/// The configured sockets as the SIP layer sees them: how each presents itself, which one a
/// message to some address leaves on, and which names mean "this proxy". Plain data: a dry
/// run (`siprox test`) builds one from the config without binding anything.
#[derive(Clone, Debug)]
pub struct Sockets {
    listeners: Vec<Listener>,
    aliases: Vec<String>,
}

pub struct Transport {
    sockets: Sockets,
    udp: Vec<Option<Arc<std::net::UdpSocket>>>,
    tcp: tcp::Connections,
    handler: std::sync::OnceLock<Arc<dyn Handler>>,
    me: std::sync::Weak<Transport>,
}

/// Sockets bound by [`Transport::bind`], waiting for [`Transport::start`].
pub struct Bound {
    udp: Vec<(usize, Vec<Arc<tokio::net::UdpSocket>>)>,
    tcp: Vec<(usize, tokio::net::TcpListener)>,
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address → host and port.
fn split_advertise(a: &str) -> (String, Option<u16>) {
    let a = a.trim();
    if a.parse::<std::net::Ipv6Addr>().is_ok() {
        return (a.to_string(), None);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if (h.ends_with(']') || !h.contains(':')) => match p.parse::<u16>() {
            Ok(port) => (h.to_string(), Some(port)),
            Err(_) => (a.to_string(), None),
        },
        _ => (a.to_string(), None),
    }
}

fn format_hostport(ip: &str, port: u16) -> String {
    if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

impl Transport {
    /// Binds every `[core] listen` socket (with IP_FREEBIND, so a standby can listen on a
    /// virtual IP it does not hold yet). `workers` UDP sockets share each UDP address
    /// through SO_REUSEPORT.
    ///
    /// # Errors
    /// A socket that cannot be bound, or a bad listen entry.
    pub fn bind(cfg: &Config, workers: usize) -> Result<(Arc<Transport>, Bound), TpError> {
        let mut listeners = Vec::new();
        let mut udp_send = Vec::new();
        let mut bound = Bound { udp: Vec::new(), tcp: Vec::new() };
        let advertise = cfg.core.advertise.as_deref().map(split_advertise);
        for (id, l) in cfg.core.listen.iter().enumerate() {
            let (proto, addr) = parse_listen_entry(l)?;
            let bind_err = |source| TpError::Bind { addr: l.clone(), source };
            // Port 0 asks the kernel; every later use needs the real one.
            let real = match proto {
                Proto::Udp => {
                    let socks = udp::bind(addr, workers.max(1), cfg.core.udp_rcvbuf).map_err(bind_err)?;
                    let real = socks.send.local_addr().map_err(bind_err)?;
                    udp_send.push(Some(socks.send.clone()));
                    bound.udp.push((id, socks.recv));
                    real
                }
                Proto::Tcp => {
                    let lst = tcp::bind(addr).map_err(bind_err)?;
                    let real = lst.local_addr().map_err(bind_err)?;
                    udp_send.push(None);
                    bound.tcp.push((id, lst));
                    real
                }
            };
            listeners.push(Listener::new(id, proto, real, advertise.as_ref()));
        }
        let tp = Arc::new_cyclic(|me| Transport {
            sockets: Sockets { listeners, aliases: aliases_of(cfg, advertise.as_ref()) },
            udp: udp_send,
            tcp: tcp::Connections::default(),
            handler: std::sync::OnceLock::new(),
            me: me.clone(),
        });
        Ok((tp, bound))
    }

    /// Starts the receive tasks; messages go to `handler`.
    pub fn start(self: &Arc<Self>, bound: Bound, handler: Arc<dyn Handler>) {
        let _ = self.handler.set(handler.clone());
        for (id, socks) in bound.udp {
            for s in socks {
                tokio::spawn(udp::recv_loop(s, id, handler.clone()));
            }
        }
        for (id, lst) in bound.tcp {
            tokio::spawn(tcp::accept_loop(self.clone(), lst, id, handler.clone()));
        }
    }

    fn handler_for_outgoing(&self) -> Option<Arc<dyn Handler>> {
        self.handler.get().cloned()
    }
    fn tcp_conns_handle(&self) -> tcp::ConnsHandle {
        Arc::new(tcp::TransportShared { tp: self.me.clone() })
    }

    /// The socket table (listeners, advertised addresses, aliases).
    pub fn sockets(&self) -> &Sockets {
        &self.sockets
    }
    pub fn listeners(&self) -> &[Listener] {
        self.sockets.listeners()
    }
    pub fn listener(&self, id: usize) -> Option<&Listener> {
        self.sockets.listener(id)
    }

    /// See [`Sockets::pick_listener`].
    pub fn pick_listener(&self, proto: Proto, dst: &SocketAddr, preferred: Option<usize>) -> Option<usize> {
        self.sockets.pick_listener(proto, dst, preferred)
    }

    /// Sends one message. Never waits.
    ///
    /// # Errors
    /// No socket of that protocol, or the kernel refused the datagram.
    pub fn send(&self, proto: Proto, listener: Option<usize>, dst: SocketAddr, data: Bytes) -> Result<(), TpError> {
        match proto {
            Proto::Udp => {
                let id = self.pick_listener(Proto::Udp, &dst, listener).ok_or(TpError::NoSocket("udp"))?;
                let sock = self.udp.get(id).and_then(|s| s.as_ref()).ok_or(TpError::NoSocket("udp"))?;
                match sock.send_to(&data, dst) {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(TpError::WouldBlock(dst)),
                    Err(e) => Err(TpError::Send(dst, e)),
                }
            }
            Proto::Tcp => {
                let id = self.pick_listener(Proto::Tcp, &dst, listener);
                self.tcp.send(self, id, dst, data)
            }
        }
    }

    /// See [`Sockets::is_myself`].
    pub fn is_myself(&self, host: &str, port: Option<u16>) -> bool {
        self.sockets.is_myself(host, port)
    }
}

/// `proto:ip:port` of a `[core] listen` entry.
fn parse_listen_entry(l: &str) -> Result<(Proto, SocketAddr), TpError> {
    let (proto, addr) = parse_listen(l).map_err(|e| TpError::Config(e.to_string()))?;
    let proto = Proto::parse(&proto).ok_or_else(|| TpError::Config(format!("bad protocol in {l}")))?;
    Ok((proto, addr))
}

/// `[core] alias`, plus the advertised host: both mean "this proxy".
fn aliases_of(cfg: &Config, advertise: Option<&(String, Option<u16>)>) -> Vec<String> {
    let mut aliases = cfg.core.alias.clone();
    if let Some((h, _)) = advertise {
        aliases.push(h.clone());
    }
    aliases
}

impl Listener {
    /// A socket bound (or to be bound) at `addr`, presented as the advertised address when
    /// one is configured: its host, and its port or else the socket's.
    fn new(id: usize, proto: Proto, addr: SocketAddr, advertise: Option<&(String, Option<u16>)>) -> Listener {
        let (host, port) = match advertise {
            Some((h, p)) => (h.clone(), p.unwrap_or(addr.port())),
            None => (addr.ip().to_string(), addr.port()),
        };
        Listener {
            id,
            proto,
            addr,
            advertised: format_hostport(&host, port),
            advertised_host: host,
            advertised_port: port,
        }
    }
}

impl Sockets {
    /// The table `[core] listen` / `advertise` / `alias` describe, with the addresses as
    /// written and nothing bound (a port 0 stays 0). For dry runs; the proxy gets its table
    /// from [`Transport::bind`], with the ports the kernel chose.
    ///
    /// # Errors
    /// A bad listen entry.
    pub fn from_config(cfg: &Config) -> Result<Sockets, TpError> {
        let advertise = cfg.core.advertise.as_deref().map(split_advertise);
        let mut listeners = Vec::with_capacity(cfg.core.listen.len());
        for (id, l) in cfg.core.listen.iter().enumerate() {
            let (proto, addr) = parse_listen_entry(l)?;
            listeners.push(Listener::new(id, proto, addr, advertise.as_ref()));
        }
        Ok(Sockets { listeners, aliases: aliases_of(cfg, advertise.as_ref()) })
    }

    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }
    pub fn listener(&self, id: usize) -> Option<&Listener> {
        self.listeners.get(id)
    }

    /// The socket to send from towards `dst` over `proto`: the given one when it fits,
    /// else the first listener of that protocol and address family.
    pub fn pick_listener(&self, proto: Proto, dst: &SocketAddr, preferred: Option<usize>) -> Option<usize> {
        if let Some(p) = preferred.and_then(|p| self.listeners.get(p)) {
            if p.proto == proto && p.addr.is_ipv4() == dst.is_ipv4() {
                return Some(p.id);
            }
        }
        self.listeners
            .iter()
            .find(|l| l.proto == proto && l.addr.is_ipv4() == dst.is_ipv4())
            .map(|l| l.id)
            .or_else(|| self.listeners.iter().find(|l| l.proto == proto).map(|l| l.id))
    }

    /// Whether `host[:port]` names this proxy: a listening address, the advertised
    /// address or an alias (OpenSIPS `myself`).
    pub fn is_myself(&self, host: &str, port: Option<u16>) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip: Option<IpAddr> = bare.parse().ok();
        // A URI without a port means 5060 (RFC 3261 §19.1.2).
        let want_port = port.unwrap_or(5060);
        let listening = self.listeners.iter().any(|l| {
            let host_ok = ip.is_some_and(|ip| ip == l.addr.ip()) || l.advertised_host.eq_ignore_ascii_case(bare);
            host_ok && (want_port == l.addr.port() || want_port == l.advertised_port)
        });
        if listening {
            return true;
        }
        self.aliases.iter().any(|a| {
            let (ah, ap) = a.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>().ok())).unwrap_or((a, None));
            ah.trim_start_matches('[').trim_end_matches(']').eq_ignore_ascii_case(bare)
                && (ap.is_none() || port.is_none() || ap == port)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{format_hostport, split_advertise, Proto, Sockets};
    use crate::config::Config;

    #[test]
    fn socket_table_from_config_without_binding() {
        let mut cfg = Config::default();
        cfg.core.listen = vec!["udp:127.0.0.1:5060".into(), "tcp:10.0.0.1:5070".into()];
        cfg.core.advertise = Some("203.0.113.10".into());
        cfg.core.alias = vec!["sip.example.com".into()];
        let s = Sockets::from_config(&cfg).expect("valid listen entries");
        assert_eq!(s.listeners().len(), 2);
        assert_eq!(s.listeners()[1].proto, Proto::Tcp);
        assert_eq!(s.listeners()[1].advertised, "203.0.113.10:5070");
        assert!(s.is_myself("203.0.113.10", Some(5060)));
        assert!(s.is_myself("127.0.0.1", None));
        assert!(s.is_myself("sip.example.com", Some(5999)));
        assert!(!s.is_myself("127.0.0.2", None));
        let dst = "192.0.2.1:5060".parse().expect("addr");
        assert_eq!(s.pick_listener(Proto::Tcp, &dst, Some(0)), Some(1));
        cfg.core.listen = vec!["sctp:127.0.0.1:5060".into()];
        assert!(Sockets::from_config(&cfg).is_err());
    }

    #[test]
    fn advertise_forms() {
        assert_eq!(split_advertise("203.0.113.10"), ("203.0.113.10".into(), None));
        assert_eq!(split_advertise("203.0.113.10:5080"), ("203.0.113.10".into(), Some(5080)));
        assert_eq!(split_advertise("sip.example.com:5060"), ("sip.example.com".into(), Some(5060)));
        assert_eq!(split_advertise("[2001:db8::1]:5062"), ("[2001:db8::1]".into(), Some(5062)));
        assert_eq!(split_advertise("2001:db8::1"), ("2001:db8::1".into(), None));
        assert_eq!(format_hostport("2001:db8::1", 5060), "[2001:db8::1]:5060");
        assert_eq!(format_hostport("[2001:db8::1]", 5060), "[2001:db8::1]:5060");
    }
}
