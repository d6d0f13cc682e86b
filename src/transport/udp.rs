//! UDP sockets: several per address (SO_REUSEPORT lets the kernel spread datagrams over
//! them), each drained by its own task in batches (recvmmsg), handing datagrams to the
//! handler inline with the time each one waited in the kernel (SO_TIMESTAMPNS), so the
//! proxy can shed load before the queue turns into retransmissions (design.md §7).

use super::{Handler, Inbound, Proto};
use bytes::Bytes;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams taken from the kernel per system call.
const BATCH: usize = 32;
/// Largest datagram (IPv4/IPv6 UDP payload limit).
const MAX_DATAGRAM: usize = 65_535;
/// Room for one SCM_TIMESTAMPNS control message.
const CMSG_SPACE: usize = 64;

/// Bound sockets of one UDP address: the receivers, and a plain non-blocking handle on the
/// first for sending (a send never waits for tokio's readiness bookkeeping).
pub(super) struct UdpBound {
    pub recv: Vec<Arc<UdpSocket>>,
    pub send: Arc<std::net::UdpSocket>,
}

/// A port no socket uses, for a `:0` listen address: the kernel may hand an SO_REUSEPORT
/// socket a port another reuse socket of the same user already holds, and the two would
/// then split each other's datagrams.
fn free_port(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let probe = std::net::UdpSocket::bind(addr)?;
    probe.local_addr()
}

pub(super) fn bind(addr: SocketAddr, count: usize, rcvbuf: usize) -> std::io::Result<UdpBound> {
    let mut out = Vec::with_capacity(count);
    let mut addr = if addr.port() == 0 { free_port(addr)? } else { addr };
    let mut send = None;
    for _ in 0..count {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        // IP_FREEBIND: bind an address this host does not hold yet (HA standby on the VIP).
        if addr.is_ipv4() {
            sock.set_freebind(true)?;
        } else {
            sock.set_freebind_ipv6(true)?;
        }
        // A large receive buffer rides out bursts instead of dropping them (design.md §7).
        let _ = sock.set_recv_buffer_size(rcvbuf);
        let _ = sock.set_send_buffer_size(rcvbuf / 2);
        enable_rx_timestamps(&sock);
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        // With port 0 the first socket gets a port; the others must share exactly it.
        if addr.port() == 0 {
            if let Some(a) = sock.local_addr()?.as_socket() {
                addr = a;
            }
        }
        if send.is_none() {
            send = Some(Arc::new(std::net::UdpSocket::from(sock.try_clone()?)));
        }
        out.push(Arc::new(UdpSocket::from_std(sock.into())?));
    }
    let send = send.ok_or_else(|| std::io::Error::other("no UDP socket bound"))?;
    Ok(UdpBound { recv: out, send })
}

fn enable_rx_timestamps(sock: &Socket) {
    let on: libc::c_int = 1;
    // SAFETY: a valid fd, and a pointer/length pair describing a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("SO_TIMESTAMPNS unavailable; no queueing-delay measurement");
    }
}

/// Receive buffers for one batch, reused for every call.
struct Batch {
    data: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    control: Vec<[u8; CMSG_SPACE]>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside point only into this Batch's own heap buffers (Vecs that
// are never resized after `new`), so moving the Batch to another thread moves their owner.
unsafe impl Send for Batch {}

impl Batch {
    fn new() -> Batch {
        // SAFETY: sockaddr_storage and mmsghdr are plain C structs for which all-zero is valid.
        let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut b = Batch {
            data: vec![0u8; BATCH * MAX_DATAGRAM],
            names: vec![zero_name; BATCH],
            control: vec![[0u8; CMSG_SPACE]; BATCH],
            iovecs: Vec::with_capacity(BATCH),
            headers: Vec::with_capacity(BATCH),
        };
        for i in 0..BATCH {
            b.iovecs
                .push(libc::iovec { iov_base: b.data[i * MAX_DATAGRAM..].as_mut_ptr().cast(), iov_len: MAX_DATAGRAM });
        }
        for i in 0..BATCH {
            // SAFETY: as above.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut b.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            b.headers.push(h);
        }
        b
    }

    /// One recvmmsg call: how many datagrams arrived.
    fn receive(&mut self, fd: i32) -> std::io::Result<usize> {
        for i in 0..BATCH {
            let h = &mut self.headers[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_control = self.control[i].as_mut_ptr().cast();
            h.msg_controllen = CMSG_SPACE as _;
            h.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by self, sized as declared.
        let n = unsafe {
            libc::recvmmsg(fd, self.headers.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.headers[i].msg_len as usize).min(MAX_DATAGRAM);
        &self.data[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len]
    }

    fn source(&self, i: usize) -> Option<SocketAddr> {
        let len = self.headers[i].msg_hdr.msg_namelen;
        // SAFETY: the kernel filled `names[i]` with a socket address of `len` bytes.
        let addr = unsafe { SockAddr::new(self.names[i], len) };
        addr.as_socket()
    }

    /// The kernel's receive time of datagram `i` (CLOCK_REALTIME), if it gave one.
    fn rx_time(&self, i: usize) -> Option<libc::timespec> {
        let h = &self.headers[i].msg_hdr;
        // SAFETY: walking the control buffer the kernel filled, with the libc CMSG macros.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>()));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }
}

fn realtime_now() -> libc::timespec {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts
}

fn delay(now: &libc::timespec, then: &libc::timespec) -> Duration {
    let ns = (now.tv_sec - then.tv_sec) as i128 * 1_000_000_000 + (now.tv_nsec - then.tv_nsec) as i128;
    Duration::from_nanos(ns.clamp(0, u64::MAX as i128) as u64)
}

pub(super) async fn recv_loop(sock: Arc<UdpSocket>, listener: usize, handler: Arc<dyn Handler>) {
    let mut batch = Batch::new();
    let fd = sock.as_raw_fd();
    loop {
        if let Err(e) = sock.readable().await {
            tracing::error!(error = %e, "udp socket unusable; receive task ends");
            return;
        }
        loop {
            let n = match sock.try_io(Interest::READABLE, || batch.receive(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors surface here on some kernels; they do not end the socket.
                    tracing::debug!(error = %e, "udp recv error");
                    break;
                }
            };
            let now = realtime_now();
            for i in 0..n {
                let data = batch.datagram(i);
                // Keep-alives (a bare CRLF or zero bytes, RFC 5626 §3.5.1) carry no message.
                if data.iter().all(|&b| b == b'\r' || b == b'\n' || b == 0) {
                    continue;
                }
                let Some(src) = batch.source(i) else { continue };
                let queued = batch.rx_time(i).map(|t| delay(&now, &t)).unwrap_or_default();
                handler.on_message(Inbound {
                    data: Bytes::copy_from_slice(data),
                    src,
                    proto: Proto::Udp,
                    listener,
                    queued,
                });
            }
            if n < BATCH {
                break;
            }
        }
    }
}
