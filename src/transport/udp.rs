//! UDP sockets: several per address (SO_REUSEPORT lets the kernel spread datagrams over
//! them), each drained by its own task that hands datagrams to the handler inline.

use super::{Handler, Inbound, Proto};
use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

const RECV_BUF: usize = 65_536;

pub(super) fn bind(addr: SocketAddr, count: usize, rcvbuf: usize) -> std::io::Result<Vec<Arc<UdpSocket>>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
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
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        // With port 0 the first socket gets a port; the others must share exactly it.
        if addr.port() == 0 {
            if let Some(a) = sock.local_addr()?.as_socket() {
                addr = a;
            }
        }
        out.push(Arc::new(UdpSocket::from_std(sock.into())?));
    }
    Ok(out)
}

pub(super) async fn recv_loop(sock: Arc<UdpSocket>, listener: usize, handler: Arc<dyn Handler>) {
    let mut buf = BytesMut::with_capacity(RECV_BUF * 4);
    loop {
        if buf.capacity() < RECV_BUF {
            buf = BytesMut::with_capacity(RECV_BUF * 4);
        }
        // recv_buf_from writes into spare capacity: no zero-fill per datagram.
        match sock.recv_buf_from(&mut buf).await {
            Ok((_, src)) => {
                let data: Bytes = buf.split().freeze();
                // Keep-alives (a bare CRLF or four zero bytes, RFC 5626 §3.5.1) carry no message.
                if data.iter().all(|&b| b == b'\r' || b == b'\n' || b == 0) {
                    continue;
                }
                handler.on_message(Inbound { data, src, proto: Proto::Udp, listener });
            }
            Err(e) => {
                // ICMP errors surface here on some kernels; they do not end the socket.
                tracing::debug!(error = %e, "udp recv error");
            }
        }
    }
}
