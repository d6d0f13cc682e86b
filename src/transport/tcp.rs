//! TCP: accepted and outgoing connections, one reader and one writer task each, framed by
//! Content-Length (RFC 3261 §18.3). Connections are found by the peer's address, so a
//! reply or an in-dialog request to that peer reuses the connection (§18.2.2, RFC 5923's
//! idea without the alias parameter).

use super::{Handler, Inbound, Proto, TpError, Transport};
use crate::message::{frame_stream, ParseError};
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A connection with no traffic this long is closed.
const IDLE: Duration = Duration::from_secs(600);
/// Messages queued to a connection that cannot keep up are dropped past this.
const QUEUE: usize = 4096;

#[derive(Default)]
pub(super) struct Connections {
    by_peer: DashMap<SocketAddr, Conn>,
}

#[derive(Clone)]
struct Conn {
    tx: mpsc::Sender<Bytes>,
    /// Identifies this connection so a closing task removes only its own entry.
    serial: u64,
}

fn next_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv4() {
        sock.set_freebind(true)?;
    } else {
        sock.set_freebind_ipv6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

impl Connections {
    pub(super) fn send(
        &self,
        tp: &Transport,
        listener: Option<usize>,
        dst: SocketAddr,
        data: Bytes,
    ) -> Result<(), TpError> {
        if let Some(c) = self.by_peer.get(&dst) {
            return c.tx.try_send(data).map_err(|_| TpError::WouldBlock(dst));
        }
        // No connection yet: open one. The message waits in the queue until it is up.
        let (tx, rx) = mpsc::channel(QUEUE);
        let serial = next_serial();
        let _ = tx.try_send(data);
        self.by_peer.insert(dst, Conn { tx, serial });
        let handler = tp.handler_for_outgoing();
        let listener = listener.unwrap_or(0);
        let tp_conns = tp.tcp_conns_handle();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(dst)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    run_conn(tp_conns, stream, dst, listener, handler, rx, serial).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(peer = %dst, error = %e, "tcp connect failed");
                    tp_conns.remove(dst, serial);
                }
                Err(_) => {
                    tracing::warn!(peer = %dst, "tcp connect timed out");
                    tp_conns.remove(dst, serial);
                }
            }
        });
        Ok(())
    }

    fn remove(&self, peer: SocketAddr, serial: u64) {
        self.by_peer.remove_if(&peer, |_, c| c.serial == serial);
    }
}

/// Shared pieces a connection task needs after the `Transport` borrow ends.
pub(super) type ConnsHandle = Arc<TransportShared>;

pub(super) struct TransportShared {
    pub(super) tp: std::sync::Weak<Transport>,
}

impl TransportShared {
    fn remove(&self, peer: SocketAddr, serial: u64) {
        if let Some(tp) = self.tp.upgrade() {
            tp.tcp.remove(peer, serial);
        }
    }
}

pub(super) async fn accept_loop(tp: Arc<Transport>, lst: TcpListener, listener: usize, handler: Arc<dyn Handler>) {
    loop {
        match lst.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let (tx, rx) = mpsc::channel(QUEUE);
                let serial = next_serial();
                tp.tcp.by_peer.insert(peer, Conn { tx, serial });
                let shared = Arc::new(TransportShared { tp: Arc::downgrade(&tp) });
                tokio::spawn(run_conn(shared, stream, peer, listener, Some(handler.clone()), rx, serial));
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn run_conn(
    shared: ConnsHandle,
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    handler: Option<Arc<dyn Handler>>,
    mut rx: mpsc::Receiver<Bytes>,
    serial: u64,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'conn: loop {
        match tokio::time::timeout(IDLE, rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
        loop {
            // Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped.
            let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            let _ = buf.split_to(skip);
            if buf.is_empty() {
                break;
            }
            match frame_stream(&buf) {
                Ok(Some(len)) => {
                    let data = buf.split_to(len).freeze();
                    if let Some(h) = &handler {
                        h.on_message(Inbound { data, src: peer, proto: Proto::Tcp, listener, queued: Duration::ZERO });
                    }
                }
                Ok(None) => break,
                Err(ParseError::Incomplete) => break,
                Err(e) => {
                    // The stream cannot be re-synchronised after a bad frame: close it.
                    tracing::warn!(peer = %peer, error = %e, "bad stream framing; closing connection");
                    if let Some(h) = &handler {
                        h.on_message(Inbound {
                            data: buf.split().freeze(),
                            src: peer,
                            proto: Proto::Tcp,
                            listener,
                            queued: Duration::ZERO,
                        });
                    }
                    break 'conn;
                }
            }
        }
    }
    shared.remove(peer, serial);
    // Give queued replies (e.g. a 400 for the bad frame) a moment to leave.
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer.abort();
}
