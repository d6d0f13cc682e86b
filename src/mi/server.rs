//! The HTTP side: `POST /mi` (JSON-RPC) and `GET /metrics` (Prometheus) on `[mi] listen`,
//! HTTP/1.1 through hyper.
//!
//! Access: with `[mi] token` set, both paths want `Authorization: Bearer <token>`. A refused
//! `/mi` call is still HTTP 200 with a JSON-RPC error (code 401), because MI clients show the
//! error object and hide non-2xx answers (design.md §1); a refused scrape is a plain 401 with
//! `WWW-Authenticate`, which is what Prometheus reports. Any request carrying an `Origin`
//! header is refused (403): command-line clients and scrapers never send one, browsers always
//! do on a POST, so a web page cannot drive the interface (cross-site requests, DNS rebinding).

use super::{rpc, Mi, MiError, ServerError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, ORIGIN, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest `/mi` request body read, bytes.
const MAX_BODY: usize = 1024 * 1024;
/// A client gets this long to send its request headers (slow or idle connections end).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the body once the headers are in.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// The running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The address actually bound (the port, when `[mi] listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds the address of `[mi] listen`. Blocking, and done before anything else starts, so
/// a taken port is a clear start-up error.
///
/// # Errors
/// The address cannot be bound.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let l = std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
    l.set_nonblocking(true).map_err(|source| ServerError::Bind { addr, source })?;
    Ok(l)
}

struct Shared {
    mi: Arc<Mi>,
    token: Option<String>,
}

/// Serves `mi` on a listener from [`bind`]. Must run inside a tokio runtime.
///
/// # Errors
/// The listener cannot be handed to the runtime.
pub fn serve(listener: std::net::TcpListener, mi: Arc<Mi>, token: Option<String>) -> Result<Server, ServerError> {
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: ([0, 0, 0, 0], 0).into(), source })?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| ServerError::Bind { addr, source })?;
    // Trimmed as the config check and the client's header are: spaces are never meant.
    let token = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let shared = Arc::new(Shared { mi, token });
    let task = tokio::spawn(accept_loop(listener, shared));
    Ok(Server { addr, task })
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    // A bound on connections served at once: each may hold a body of up to MAX_BODY, so
    // without it a local process could grow memory without end. Further ones wait in the
    // kernel's backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    connection(stream, peer, shared).await;
                    drop(slot);
                });
            }
            Err(e) => {
                // Out of descriptors and the like: wait instead of spinning on the error.
                tracing::warn!(error = %e, "MI accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(&shared, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    // A bare connect+close, a timeout or a malformed request ends only this connection.
    if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(%peer, error = %e, "MI connection ended");
    }
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/');
    if req.headers().contains_key(ORIGIN) {
        // Only browsers send Origin: a web page must not drive the proxy. On /mi the refusal
        // is an MI error like any other (HTTP 200, design.md §1).
        if path == "/mi" {
            return json(rpc::response(
                None,
                &Err(MiError::new(403, "Forbidden: requests from web pages are refused")),
            ));
        }
        return plain(StatusCode::FORBIDDEN, "requests from web pages are refused\n");
    }
    match (path, req.method()) {
        ("/mi", &Method::POST) => mi_call(shared, req).await,
        ("/mi", _) => not_allowed("POST"),
        ("/metrics", &Method::GET) => metrics(shared, &req),
        ("/metrics", _) => not_allowed("GET"),
        _ => plain(StatusCode::NOT_FOUND, "not found: the management interface answers POST /mi and GET /metrics\n"),
    }
}

async fn mi_call(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if !authorized(shared, &req) {
        let e = MiError::new(401, "Unauthorized: missing or wrong bearer token");
        return json(rpc::response(None, &Err(e)));
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), MAX_BODY).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Err(_) => {
            let e = MiError::invalid_request(format!("request body not received within {BODY_TIMEOUT:?}"));
            return json(rpc::response(None, &Err(e)));
        }
        Ok(Err(e)) => {
            let e = MiError::invalid_request(format!("request body unreadable or over {MAX_BODY} bytes: {e}"));
            return json(rpc::response(None, &Err(e)));
        }
    };
    json(rpc::answer(&shared.mi.commands, &body).await)
}

fn metrics(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if !authorized(shared, req) {
        let mut r = plain(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
        r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"siprox\""));
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(shared.mi.metrics.render())));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// No token configured, or `Authorization: Bearer <token>` with the right one.
fn authorized<B>(shared: &Shared, req: &Request<B>) -> bool {
    let Some(token) = &shared.token else { return true };
    let Some(value) = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let mut parts = value.trim().splitn(2, ' ');
    let scheme = parts.next().unwrap_or("");
    let given = parts.next().unwrap_or("").trim();
    scheme.eq_ignore_ascii_case("bearer") && same_secret(given.as_bytes(), token.as_bytes())
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guessed token was right (only its length, which is not the secret).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn json(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secret_comparison() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cret!", b"s3cret"));
        assert!(!same_secret(b"s3creT", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
        assert!(same_secret(b"", b""));
    }
}
