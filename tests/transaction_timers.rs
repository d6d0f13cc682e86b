//! The transaction layer's state machines (RFC 3261 §17, OpenSIPS tm semantics of
//! spec/opensips-primitives.md §4) driven through the public API with paused tokio time.
//!
//! The pieces are the real ones: a `Transport` bound on a UDP port of 127.0.0.1, a `Tm` with
//! timers from `[tm]`, and a recording `TmHooks`. Raw UDP sockets play the caller
//! (upstream) and the callees (downstream). Each peer has a reader task that stamps every
//! datagram with the (virtual) time it arrived: loopback delivery is synchronous and
//! tokio does not auto-advance a paused clock while an I/O event is pending, so the stamp
//! is the instant the proxy sent it. Assertions are on what the peers actually receive,
//! and when.

use bytes::Bytes;
use siprox::config::Config;
use siprox::message::SipMsg;
use siprox::transaction::{BranchOut, Cell, Dest, ReplyVerdict, Timers, Tm, TmError, TmHooks, Winner};
use siprox::transport::{Handler, Inbound, Proto, Transport};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

const MS: Duration = Duration::from_millis(1);
/// Slack when comparing arrival times (the timer wheel has 1 ms ticks).
const SLACK: Duration = Duration::from_millis(5);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ------------------------------------------------------------------ recording hooks

#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    cell: u64,
    branch: usize,
    code: u16,
    /// Status of the winner's reply, `None` for a local 408.
    reply: Option<u16>,
}

/// What a test's failure handler does (failure_route: fork again, or reply).
type FailureAction = Box<dyn FnMut(&Arc<Cell>, &Winner) + Send>;

#[derive(Default)]
struct Recorder {
    replies: Mutex<Vec<(u64, usize, u16)>>,
    failures: Mutex<Vec<Failure>>,
    strays: Mutex<Vec<u16>>,
    /// Runs (once) inside `on_failure`, after the call is recorded.
    action: Mutex<Option<FailureAction>>,
}

impl Recorder {
    fn failures(&self) -> Vec<Failure> {
        self.failures.lock().unwrap().clone()
    }
    fn replies(&self) -> Vec<(u64, usize, u16)> {
        self.replies.lock().unwrap().clone()
    }
}

impl TmHooks for Recorder {
    fn on_reply(&self, cell: &Arc<Cell>, branch: usize, reply: &SipMsg, _src: std::net::SocketAddr) -> ReplyVerdict {
        self.replies.lock().unwrap().push((cell.id, branch, reply.status().unwrap_or(0)));
        ReplyVerdict::default()
    }
    fn on_failure(&self, cell: &Arc<Cell>, winner: &Winner) {
        self.failures.lock().unwrap().push(Failure {
            cell: cell.id,
            branch: winner.branch,
            code: winner.code,
            reply: winner.reply.as_ref().and_then(|r| r.status()),
        });
        let action = self.action.lock().unwrap().take();
        if let Some(mut act) = action {
            act(cell, winner);
        }
    }
    fn on_stray_reply(&self, reply: SipMsg, _src: SocketAddr, _proto: Proto) {
        self.strays.lock().unwrap().push(reply.status().unwrap_or(0));
    }
}

/// The proxy socket's handler: replies go to the transaction layer, requests (a
/// retransmission, an ACK) to the test.
struct Feed {
    tm: Arc<Tm>,
    requests: mpsc::UnboundedSender<(SipMsg, SocketAddr)>,
}

impl Handler for Feed {
    fn on_message(&self, m: Inbound) {
        let Ok(msg) = SipMsg::parse(m.data) else { return };
        if msg.is_request() {
            let _ = self.requests.send((msg, m.src));
        } else {
            self.tm.on_reply(msg, m.src, m.proto);
        }
    }
}

// ------------------------------------------------------------------ peers

/// One datagram a peer received.
#[derive(Debug, Clone)]
struct Got {
    /// Virtual time since the harness started.
    at: Duration,
    text: String,
}

impl Got {
    fn start_line(&self) -> &str {
        self.text.split("\r\n").next().unwrap_or("")
    }
    fn header_lines(&self) -> impl Iterator<Item = (&str, &str)> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n").skip(1).filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim(), v.trim()))
    }
    /// Values of every line of a header (full names only; the test builds all messages).
    fn headers(&self, name: &str) -> Vec<&str> {
        self.header_lines().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v).collect()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }
    fn is_reply(&self, code: u16) -> bool {
        self.start_line().starts_with(&format!("SIP/2.0 {code} "))
    }
    fn method(&self) -> &str {
        self.start_line().split(' ').next().unwrap_or("")
    }
}

struct Peer {
    name: &'static str,
    sock: Arc<UdpSocket>,
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Got>,
}

impl Peer {
    async fn new(name: &'static str, t0: Instant) -> Peer {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind peer"));
        let addr = sock.local_addr().expect("peer addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = sock.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, _)) = reader.recv_from(&mut buf).await else { continue };
                let got = Got { at: Instant::now() - t0, text: String::from_utf8_lossy(&buf[..n]).into_owned() };
                if tx.send(got).is_err() {
                    return;
                }
            }
        });
        Peer { name, sock, addr, rx }
    }

    /// The next datagram, waiting at most `within` of virtual time.
    async fn next(&mut self, within: Duration) -> Got {
        match timeout(within, self.rx.recv()).await {
            Ok(Some(g)) => g,
            _ => panic!("{}: nothing received within {within:?}", self.name),
        }
    }

    /// Asserts that nothing arrives for `dur` of virtual time.
    async fn quiet(&mut self, dur: Duration, why: &str) {
        if let Ok(Some(g)) = timeout(dur, self.rx.recv()).await {
            panic!("{}: expected nothing for {dur:?} ({why}), got at {:?}:\n{}", self.name, g.at, g.text);
        }
    }

    /// Everything that arrives until `deadline` (virtual time since t0).
    async fn collect_until(&mut self, t0: Instant, deadline: Duration) -> Vec<Got> {
        let mut out = Vec::new();
        loop {
            let left = (t0 + deadline).saturating_duration_since(Instant::now());
            match timeout(left, self.rx.recv()).await {
                Ok(Some(g)) => out.push(g),
                _ => return out,
            }
        }
    }

    async fn send(&self, to: SocketAddr, text: &str) {
        self.sock.send_to(text.as_bytes(), to).await.expect("peer send");
    }
}

// ------------------------------------------------------------------ messages

/// A request as the caller sends it.
fn request(method: &str, caller: SocketAddr, call_id: &str, branch: &str) -> String {
    format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {caller};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a-{call_id}\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 7 {method}\r\n\
         Contact: <sip:alice@{caller}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn parse(text: &str) -> SipMsg {
    SipMsg::parse(Bytes::from(text.to_string())).expect("test message parses")
}

/// A reply to a request the peer received: every Via, From, To (with `to_tag` added when
/// the request's To has none and the tag is not empty), Call-ID, CSeq.
fn reply_to(req: &Got, code: u16, reason: &str, to_tag: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for (n, v) in req.header_lines() {
        match n.to_ascii_lowercase().as_str() {
            "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{n}: {v}\r\n")),
            "to" if !to_tag.is_empty() && !v.contains(";tag=") => out.push_str(&format!("{n}: {v};tag={to_tag}\r\n")),
            "to" => out.push_str(&format!("{n}: {v}\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// The `branch` parameter of the top Via of a received message.
fn top_branch(g: &Got) -> String {
    let via = g.header("Via").expect("a Via");
    via.split(';')
        .find_map(|p| p.trim().strip_prefix("branch="))
        .expect("a branch")
        .split(',')
        .next()
        .unwrap()
        .trim()
        .to_string()
}

/// Arrival times in seconds, to the millisecond.
fn arrivals(got: &[Got]) -> Vec<f64> {
    got.iter().map(|g| (g.at.as_secs_f64() * 1000.0).round() / 1000.0).collect()
}

fn assert_at(g: &Got, want: Duration, what: &str) {
    let diff = g.at.abs_diff(want);
    assert!(diff <= SLACK, "{what}: arrived at {:?}, expected {want:?}\n{}", g.at, g.text);
}

// ------------------------------------------------------------------ harness

struct Net {
    t0: Instant,
    tm: Arc<Tm>,
    hooks: Arc<Recorder>,
    proxy: SocketAddr,
    caller: Peer,
    callee: Peer,
    callee2: Peer,
    requests: mpsc::UnboundedReceiver<(SipMsg, SocketAddr)>,
}

/// A port nobody holds. `udp:127.0.0.1:0` would do, but the transport binds with
/// SO_REUSEADDR + SO_REUSEPORT, and Linux hands such a port-0 bind a port that another
/// reuse socket of the same user already holds — another test's proxy running in
/// parallel, which would then get half of this test's datagrams. A plain socket's port 0
/// is never shared, and the port is free again the moment the probe closes.
fn exclusive_port() -> u16 {
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe socket");
    probe.local_addr().expect("probe addr").port()
}

async fn net() -> Net {
    net_with(|_| {}).await
}

async fn net_with(tweak: impl FnOnce(&mut Config)) -> Net {
    let mut cfg = Config::default();
    cfg.core.listen = vec![format!("udp:127.0.0.1:{}", exclusive_port())];
    tweak(&mut cfg);
    let (tp, bound) = Transport::bind(&cfg, 1).expect("bind the proxy socket");
    let proxy = tp.listeners()[0].addr;
    let tm = Tm::new(Timers::from_config(&cfg.tm), tp.clone());
    let hooks = Arc::new(Recorder::default());
    tm.set_hooks(hooks.clone());
    let (req_tx, requests) = mpsc::unbounded_channel();
    tp.start(bound, Arc::new(Feed { tm: tm.clone(), requests: req_tx }));
    // The transport sends with `try_send_to`, which fails with WouldBlock until the I/O
    // driver has reported the new socket writable once: let the runtime turn before
    // anything is sent (in the proxy every send follows a receive, so this never shows).
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    let t0 = Instant::now();
    Net {
        t0,
        tm,
        hooks,
        proxy,
        caller: Peer::new("caller", t0).await,
        callee: Peer::new("callee", t0).await,
        callee2: Peer::new("callee2", t0).await,
        requests,
    }
}

impl Net {
    fn upstream(&self) -> Dest {
        Dest { proto: Proto::Udp, addr: self.caller.addr, listener: None }
    }

    /// The caller's request and its cell.
    fn create(&self, method: &str, call_id: &str) -> (String, Arc<Cell>) {
        let req = request(method, self.caller.addr, call_id, &format!("z9hG4bK-up-{call_id}"));
        let cell = self.tm.create(parse(&req), self.upstream(), None).expect("cell created");
        (req, cell)
    }

    /// Sends `req` on a new branch towards `to`, built as a proxy would: our Via on top,
    /// the Request-URI pointing at the callee. Returns the branch parameter.
    fn fork(&self, cell: &Arc<Cell>, req: &str, to: SocketAddr) -> String {
        let (n, param) = self.tm.new_branch_param(cell);
        let uri = format!("sip:bob@{to}");
        let (first, rest) = req.split_once("\r\n").expect("request line");
        let method = first.split(' ').next().expect("method");
        let bytes = format!("{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={param}\r\n{rest}", self.proxy);
        let out =
            BranchOut { uri, dest: Dest { proto: Proto::Udp, addr: to, listener: None }, bytes: Bytes::from(bytes) };
        self.tm.add_branch(cell, n, out).expect("branch sent");
        param
    }

    async fn until(&self, t: Duration) {
        sleep_until(self.t0 + t).await;
    }

    async fn next_request(&mut self) -> (SipMsg, SocketAddr) {
        match timeout(secs(1.0), self.requests.recv()).await {
            Ok(Some(r)) => r,
            _ => panic!("the proxy received no request"),
        }
    }
}

// ------------------------------------------------------------------ tests

/// RFC 3261 §17.1.1.2: Timer A starts at T1 and doubles (T1, 2T1, 4T1, 8T1 …) until a
/// provisional reply moves the client transaction to Proceeding; then it stops.
#[tokio::test(start_paused = true)]
async fn invite_timer_a_doubles_until_a_provisional() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "ta");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    let param = n.fork(&cell, &req, n.callee.addr);

    let first = n.callee.next(secs(1.0)).await;
    assert_eq!(first.start_line(), format!("INVITE sip:bob@{} SIP/2.0", n.callee.addr));
    assert_eq!(top_branch(&first), param);
    assert_at(&first, Duration::ZERO, "the branch");
    // Retransmissions at T1, 3T1, 7T1, 15T1: intervals T1, 2T1, 4T1, 8T1.
    for want in [0.5, 1.5, 3.5, 7.5] {
        let g = n.callee.next(secs(10.0)).await;
        assert_eq!(g.text, first.text, "a retransmission is the same datagram");
        assert_at(&g, secs(want), "Timer A retransmission");
    }
    n.until(secs(8.0)).await;
    n.callee.send(n.proxy, &reply_to(&first, 180, "Ringing", "b1")).await;
    let ringing = n.caller.next(secs(1.0)).await;
    assert!(ringing.is_reply(180), "{}", ringing.text);
    assert_at(&ringing, secs(8.0), "the relayed 180");
    // The next retransmission was due at 15.5 s, then 31.5 s; fr_inv (120 s) is far away.
    n.callee.quiet(secs(60.0), "Timer A stops with a provisional").await;
    assert_eq!(n.hooks.replies(), vec![(cell.id, 0, 180)]);
}

/// Timer values come from `[tm]`: T1 = 200 ms doubles to 0.2, 0.6, 1.4, 3.0 s, and
/// fr_timeout = 5 s ends the branch with a local 408.
#[tokio::test(start_paused = true)]
async fn timers_come_from_the_tm_config() {
    let mut n = net_with(|c| {
        c.tm.T1_timer = 200;
        c.tm.fr_timeout = 5;
    })
    .await;
    let (req, cell) = n.create("INVITE", "cfg");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let first = n.callee.next(secs(1.0)).await;
    for want in [0.2, 0.6, 1.4, 3.0] {
        let g = n.callee.next(secs(10.0)).await;
        assert_eq!(g.text, first.text);
        assert_at(&g, secs(want), "Timer A with T1 = 200 ms");
    }
    let timeout_reply = n.caller.next(secs(10.0)).await;
    assert!(timeout_reply.is_reply(408), "{}", timeout_reply.text);
    assert_at(&timeout_reply, secs(5.0), "fr_timeout = 5 s");
}

/// RFC 3261 §17.1.2.2: Timer E doubles from T1 but is capped at T2 (4 s).
#[tokio::test(start_paused = true)]
async fn non_invite_timer_e_is_capped_at_t2() {
    let mut n = net().await;
    let (req, cell) = n.create("OPTIONS", "te");
    n.fork(&cell, &req, n.callee.addr);
    let first = n.callee.next(secs(1.0)).await;
    assert_eq!(first.method(), "OPTIONS");
    for want in [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5] {
        let g = n.callee.next(secs(10.0)).await;
        assert_eq!(g.text, first.text);
        assert_at(&g, secs(want), "Timer E retransmission");
    }
    // No 100 Trying for a non-INVITE (RFC 3261 §16.2 / auto_100trying is INVITE only).
    n.caller.quiet(MS, "nothing upstream yet").await;
    assert_eq!(cell.uas_status(), 0);
}

/// RFC 3261 §17.1.2.2: in Proceeding (after a 1xx) Timer E keeps firing, every T2.
/// With a 100 at 1.0 s the retransmissions are 1.5 s (already armed), then every 4 s —
/// not 3.5 s / 7.5 s as in Trying. Without a final reply, fr_timeout (30 s) answers 408
/// upstream and no CANCEL is sent (non-INVITE).
#[tokio::test(start_paused = true)]
async fn non_invite_timer_e_continues_at_t2_after_a_provisional() {
    let mut n = net().await;
    let (req, cell) = n.create("OPTIONS", "te1xx");
    n.fork(&cell, &req, n.callee.addr);
    let first = n.callee.next(secs(1.0)).await;
    let g = n.callee.next(secs(1.0)).await;
    assert_at(&g, secs(0.5), "first retransmission");
    n.until(secs(1.0)).await;
    n.callee.send(n.proxy, &reply_to(&first, 100, "Trying", "")).await;
    let got = n.callee.collect_until(n.t0, secs(29.9)).await;
    let times = arrivals(&got);
    assert!(got.iter().all(|g| g.text == first.text), "only retransmissions of the request");
    assert_eq!(times, vec![1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5], "Timer E at T2 in Proceeding");
    // 100 is hop-by-hop: nothing was relayed. fr_timeout: a local 408.
    let r = n.caller.next(secs(5.0)).await;
    assert!(r.is_reply(408), "{}", r.text);
    assert_at(&r, secs(30.0), "fr_timeout");
    assert!(r.header("To").is_some_and(|t| t.contains(";tag=")), "a local final reply carries a To tag");
    n.callee.quiet(secs(40.0), "a non-INVITE branch is never CANCELled; retransmissions stop").await;
    n.caller.quiet(secs(10.0), "no Timer G for non-INVITE").await;
    assert_eq!(n.hooks.failures(), vec![Failure { cell: cell.id, branch: 0, code: 408, reply: None }]);
}

/// RFC 3261 §16.2 / tm auto_100trying: creating an INVITE cell answers 100 Trying at once,
/// built from the request (same Via, From, Call-ID, CSeq; To without a tag). A second
/// create of the same request is refused with no side effect.
#[tokio::test(start_paused = true)]
async fn invite_creation_sends_100_trying_upstream() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "trying");
    let t = n.caller.next(secs(1.0)).await;
    assert_at(&t, Duration::ZERO, "100 Trying");
    assert_eq!(t.start_line(), "SIP/2.0 100 Trying");
    let r = parse(&req);
    assert_eq!(t.headers("Via"), vec![r.value(&siprox::message::HeaderName::Via).unwrap()]);
    assert_eq!(t.header("Call-ID"), Some("trying"));
    assert_eq!(t.header("CSeq"), Some("7 INVITE"));
    assert_eq!(t.header("From"), Some("\"Alice\" <sip:alice@example.com>;tag=a-trying"));
    assert_eq!(t.header("To"), Some("<sip:bob@example.com>"), "a 100 gets no To tag");
    assert_eq!(cell.uas_status(), 100);

    assert!(matches!(n.tm.create(parse(&req), n.upstream(), None), Err(TmError::Exists)));
    n.caller.quiet(secs(1.0), "a refused create sends nothing").await;
    assert_eq!(n.tm.len(), 1);
}

/// tm fr_timeout: an INVITE branch that never answers ends with a local 408 upstream
/// after 30 s; it is never CANCELled (RFC 3261 §9.1); failure handling sees a 408 with
/// no reply.
#[tokio::test(start_paused = true)]
async fn fr_timeout_without_reply_gives_local_408_and_no_cancel() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "frt");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);

    let r = n.caller.next(secs(40.0)).await;
    assert_eq!(r.start_line(), "SIP/2.0 408 Request Timeout");
    assert_at(&r, secs(30.0), "fr_timeout");
    assert_eq!(r.header("CSeq"), Some("7 INVITE"));
    let tag = r.header("To").and_then(|t| t.split(";tag=").nth(1)).expect("local 408 has a To tag");
    assert_eq!(tag, cell.to_tag);
    assert_eq!(n.hooks.failures(), vec![Failure { cell: cell.id, branch: 0, code: 408, reply: None }]);

    let got = n.callee.collect_until(n.t0, secs(100.0)).await;
    assert!(!got.is_empty());
    for g in &got {
        assert_eq!(g.method(), "INVITE", "a silent branch gets no CANCEL, got at {:?}:\n{}", g.at, g.text);
        assert!(g.at < secs(30.0), "no retransmission after the branch timed out ({:?})", g.at);
    }
}

/// tm fr_inv_timeout: once a branch rang, the INVITE waits fr_inv_timeout (120 s) for a
/// final; then TM CANCELs the branch with `Reason: SIP;cause=480` (spec §4.5) and answers
/// 408 upstream. The CANCEL is the RFC 3261 §9.1 shape: same Request-URI, the branch's
/// Via, Call-ID, From, To, CSeq number with method CANCEL. A late 487 is ACKed and goes
/// nowhere.
#[tokio::test(start_paused = true)]
async fn fr_inv_timeout_after_180_cancels_downstream_and_answers_408() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "frinv");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    let param = n.fork(&cell, &req, n.callee.addr);
    let inv = n.callee.next(secs(1.0)).await;
    n.until(secs(1.0)).await;
    n.callee.send(n.proxy, &reply_to(&inv, 180, "Ringing", "b1")).await;
    let ringing = n.caller.next(secs(1.0)).await;
    assert!(ringing.is_reply(180));

    // Drain the Timer A retransmission at 0.5 s, then the CANCEL at 1 s + 120 s.
    let mut c = n.callee.next(secs(200.0)).await;
    while c.method() == "INVITE" {
        assert!(c.at < secs(1.0), "no INVITE retransmission after the 180 ({:?})", c.at);
        c = n.callee.next(secs(200.0)).await;
    }
    assert_eq!(c.start_line(), format!("CANCEL sip:bob@{} SIP/2.0", n.callee.addr));
    assert_at(&c, secs(121.0), "fr_inv_timeout after the 180");
    assert_eq!(c.headers("Via").len(), 1, "only our Via:\n{}", c.text);
    assert_eq!(top_branch(&c), param, "the CANCEL carries the INVITE branch's Via branch");
    assert_eq!(c.header("Via"), inv.header("Via"));
    assert_eq!(c.header("Call-ID"), inv.header("Call-ID"));
    assert_eq!(c.header("From"), inv.header("From"));
    assert_eq!(c.header("To"), inv.header("To"));
    assert_eq!(c.header("CSeq"), Some("7 CANCEL"));
    let reason = c.header("Reason").expect("a Reason header");
    assert!(reason.starts_with("SIP;cause=480"), "Reason: {reason}");

    let r = n.caller.next(secs(1.0)).await;
    assert_eq!(r.start_line(), "SIP/2.0 408 Request Timeout");
    assert_at(&r, secs(121.0), "408 upstream together with the CANCEL");
    assert_eq!(n.hooks.failures(), vec![Failure { cell: cell.id, branch: 0, code: 408, reply: None }]);

    // The callee answers the CANCEL and then the INVITE with 487: the 487 is ACKed
    // hop by hop and not relayed (the caller only sees the 408 again, Timer G).
    n.callee.send(n.proxy, &reply_to(&c, 200, "OK", "b1")).await;
    n.callee.send(n.proxy, &reply_to(&inv, 487, "Request Terminated", "b1")).await;
    let ack = n.callee.next(secs(1.0)).await;
    assert_eq!(ack.start_line(), format!("ACK sip:bob@{} SIP/2.0", n.callee.addr));
    assert_eq!(ack.header("CSeq"), Some("7 ACK"));
    n.callee.quiet(secs(30.0), "the CANCEL was answered: no CANCEL retransmission").await;
    let up = n.caller.collect_until(n.t0, secs(160.0)).await;
    assert!(up.iter().all(|g| g.is_reply(408)), "only the 408 (and its retransmissions) upstream: {up:#?}");
}

/// restart_fr_on_each_reply (default on): each 1xx restarts fr_inv_timeout, so a 183 at
/// 60 s moves the CANCEL from 121 s to 180 s.
#[tokio::test(start_paused = true)]
async fn each_provisional_restarts_fr_inv_timeout() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "restart");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let inv = n.callee.next(secs(1.0)).await;
    n.until(secs(1.0)).await;
    n.callee.send(n.proxy, &reply_to(&inv, 180, "Ringing", "b1")).await;
    n.until(secs(60.0)).await;
    n.callee.send(n.proxy, &reply_to(&inv, 183, "Session Progress", "b1")).await;
    let mut c = n.callee.next(secs(300.0)).await;
    while c.method() == "INVITE" {
        c = n.callee.next(secs(300.0)).await;
    }
    assert_eq!(c.method(), "CANCEL");
    assert_at(&c, secs(180.0), "fr_inv_timeout restarted by the 183");
}

/// RFC 3261 §17.1.1.3: the client transaction ACKs a negative final itself: same
/// Request-URI, one Via equal to the INVITE's (same branch), To from the reply (with its
/// tag), From and Call-ID from the INVITE, CSeq number with method ACK. The reply then
/// reaches failure handling as the winner and is relayed without our Via.
#[tokio::test(start_paused = true)]
async fn negative_final_is_acked_downstream_and_reaches_on_failure() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "neg");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    let param = n.fork(&cell, &req, n.callee.addr);
    let inv = n.callee.next(secs(1.0)).await;
    let busy = reply_to(&inv, 486, "Busy Here", "busy-tag");
    n.callee.send(n.proxy, &busy).await;

    let ack = n.callee.next(secs(1.0)).await;
    assert_eq!(ack.start_line(), format!("ACK sip:bob@{} SIP/2.0", n.callee.addr));
    assert_eq!(ack.headers("Via").len(), 1, "{}", ack.text);
    assert_eq!(ack.header("Via"), inv.header("Via"));
    assert_eq!(top_branch(&ack), param);
    assert_eq!(ack.header("To"), Some("<sip:bob@example.com>;tag=busy-tag"));
    assert_eq!(ack.header("From"), inv.header("From"));
    assert_eq!(ack.header("Call-ID"), inv.header("Call-ID"));
    assert_eq!(ack.header("CSeq"), Some("7 ACK"));

    assert_eq!(n.hooks.failures(), vec![Failure { cell: cell.id, branch: 0, code: 486, reply: Some(486) }]);
    assert_eq!(n.hooks.replies(), vec![(cell.id, 0, 486)]);

    let up = n.caller.next(secs(1.0)).await;
    assert_eq!(up.start_line(), "SIP/2.0 486 Busy Here");
    assert_eq!(up.headers("Via"), vec![format!("SIP/2.0/UDP {};branch=z9hG4bK-up-neg", n.caller.addr)]);
    assert_eq!(
        up.header("To"),
        Some("<sip:bob@example.com>;tag=busy-tag"),
        "the callee's reply is relayed, not rebuilt"
    );

    // A retransmitted 486 is ACKed again and relayed no more (the caller's copies are
    // Timer G's, at T1 intervals, not at the time of the callee's retransmission).
    n.until(secs(0.2)).await;
    n.callee.send(n.proxy, &busy).await;
    let ack2 = n.callee.next(secs(1.0)).await;
    assert_eq!(ack2.text, ack.text);
    let again = n.caller.next(secs(1.0)).await;
    assert_at(&again, secs(0.5), "only Timer G repeats the final upstream");
    assert_eq!(n.hooks.failures().len(), 1, "failure handling runs once");
}

/// Forks two branches, answers them with `a` then `b`, returns what the caller got.
async fn two_negatives(a: (u16, &str), b: (u16, &str)) -> (Got, Vec<Failure>, u64) {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "sel");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    n.fork(&cell, &req, n.callee2.addr);
    let inv1 = n.callee.next(secs(1.0)).await;
    let inv2 = n.callee2.next(secs(1.0)).await;
    n.callee.send(n.proxy, &reply_to(&inv1, a.0, a.1, "tag-a")).await;
    assert_eq!(n.callee.next(secs(1.0)).await.method(), "ACK");
    n.caller.quiet(secs(0.1), "nothing goes up while a branch is pending").await;
    n.callee2.send(n.proxy, &reply_to(&inv2, b.0, b.1, "tag-b")).await;
    assert_eq!(n.callee2.next(secs(1.0)).await.method(), "ACK");
    let up = n.caller.next(secs(1.0)).await;
    (up, n.hooks.failures(), cell.id)
}

/// OpenSIPS reply selection (spec §4.4) end to end: the winner of the branches goes up,
/// relayed as the callee sent it, once both are final.
#[tokio::test(start_paused = true)]
async fn reply_selection_404_beats_503() {
    let (up, failures, id) = two_negatives((503, "Service Unavailable"), (404, "Not Found")).await;
    assert_eq!(up.start_line(), "SIP/2.0 404 Not Found");
    assert!(up.header("To").unwrap().ends_with(";tag=tag-b"));
    assert_eq!(failures, vec![Failure { cell: id, branch: 1, code: 404, reply: Some(404) }]);
}

#[tokio::test(start_paused = true)]
async fn reply_selection_302_beats_486() {
    let (up, failures, id) = two_negatives((486, "Busy Here"), (302, "Moved Temporarily")).await;
    assert_eq!(up.start_line(), "SIP/2.0 302 Moved Temporarily");
    assert_eq!(failures, vec![Failure { cell: id, branch: 1, code: 302, reply: Some(302) }]);
}

#[tokio::test(start_paused = true)]
async fn reply_selection_407_beats_404_and_500() {
    let (up, failures, id) = two_negatives((407, "Proxy Authentication Required"), (500, "Server Error")).await;
    assert_eq!(up.start_line(), "SIP/2.0 407 Proxy Authentication Required");
    assert_eq!(failures, vec![Failure { cell: id, branch: 0, code: 407, reply: Some(407) }]);
    let (up, _, _) = two_negatives((404, "Not Found"), (407, "Proxy Authentication Required")).await;
    assert!(up.is_reply(407), "{}", up.text);
}

/// spec §4.4: a local 408 (a branch that timed out) ranks above 503.
#[tokio::test(start_paused = true)]
async fn reply_selection_local_408_beats_503() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "sel408");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    n.fork(&cell, &req, n.callee2.addr);
    let inv1 = n.callee.next(secs(1.0)).await;
    n.callee.send(n.proxy, &reply_to(&inv1, 503, "Service Unavailable", "tag-a")).await;
    let up = n.caller.next(secs(40.0)).await;
    assert_eq!(up.start_line(), "SIP/2.0 408 Request Timeout");
    assert_at(&up, secs(30.0), "the silent branch's fr_timeout");
    assert_eq!(n.hooks.failures(), vec![Failure { cell: cell.id, branch: 1, code: 408, reply: None }]);
}

/// A 6xx ends forking (tm `disable_6xx_block = 0`, RFC 3261 §16.7 step 5): the branch that
/// rang is CANCELled at once, no branch may be added any more, and the 6xx outranks the
/// other branch's 487 (the caller did not cancel).
#[tokio::test(start_paused = true)]
async fn six_xx_blocks_forking_and_cancels_the_other_branch() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "six");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let pb = n.fork(&cell, &req, n.callee2.addr);
    let inv_a = n.callee.next(secs(1.0)).await;
    let inv_b = n.callee2.next(secs(1.0)).await;
    n.until(secs(0.1)).await;
    n.callee2.send(n.proxy, &reply_to(&inv_b, 180, "Ringing", "tag-b")).await;
    assert!(n.caller.next(secs(1.0)).await.is_reply(180));
    n.callee.send(n.proxy, &reply_to(&inv_a, 603, "Decline", "tag-a")).await;
    assert_eq!(n.callee.next(secs(1.0)).await.method(), "ACK");
    let cb = n.callee2.next(secs(1.0)).await;
    assert_eq!(cb.method(), "CANCEL", "{}", cb.text);
    assert_at(&cb, secs(0.1), "CANCEL right after the 6xx");
    assert_eq!(top_branch(&cb), pb);
    assert!(!cell.can_fork());
    let (n3, _) = n.tm.new_branch_param(&cell);
    let late = BranchOut {
        uri: "sip:bob@example.com".into(),
        dest: Dest { proto: Proto::Udp, addr: n.callee.addr, listener: None },
        bytes: Bytes::from(req.clone()),
    };
    assert!(matches!(n.tm.add_branch(&cell, n3, late), Err(TmError::Closed)), "no new branch after a 6xx");
    n.callee.quiet(secs(0.1), "the refused branch sent nothing").await;

    n.callee2.send(n.proxy, &reply_to(&cb, 200, "OK", "tag-b")).await;
    n.callee2.send(n.proxy, &reply_to(&inv_b, 487, "Request Terminated", "tag-b")).await;
    assert_eq!(n.callee2.next(secs(1.0)).await.method(), "ACK");
    let up = n.caller.next(secs(1.0)).await;
    assert_eq!(up.start_line(), "SIP/2.0 603 Decline");
    assert_eq!(n.hooks.failures(), vec![Failure { cell: cell.id, branch: 0, code: 603, reply: Some(603) }]);
}

/// RFC 3261 §16.7: a 2xx is relayed at once with our Via value removed (also when the
/// callee folded the Vias into one comma-separated line); step 10: the other branches
/// are CANCELled (the one that rang at once). No ACK for a 2xx from the proxy.
#[tokio::test(start_paused = true)]
async fn two_xx_is_relayed_without_our_via_and_the_other_branch_cancelled() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "ok");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    let param_a = n.fork(&cell, &req, n.callee.addr);
    n.fork(&cell, &req, n.callee2.addr);
    let inv_a = n.callee.next(secs(1.0)).await;
    let inv_b = n.callee2.next(secs(1.0)).await;

    n.until(secs(0.1)).await;
    n.callee.send(n.proxy, &reply_to(&inv_a, 180, "Ringing", "tag-a")).await;
    let ringing = n.caller.next(secs(1.0)).await;
    assert!(ringing.is_reply(180));
    assert_eq!(ringing.headers("Via"), vec![format!("SIP/2.0/UDP {};branch=z9hG4bK-up-ok", n.caller.addr)]);

    // The 200 with both Via values on one line.
    n.until(secs(0.2)).await;
    let vias = inv_b.headers("Via").join(", ");
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {vias}\r\nFrom: {}\r\nTo: {};tag=tag-b\r\nCall-ID: ok\r\nCSeq: 7 INVITE\r\n\
         Contact: <sip:bob@{}>\r\nX-Extra: kept\r\nContent-Length: 0\r\n\r\n",
        inv_b.header("From").unwrap(),
        inv_b.header("To").unwrap(),
        n.callee2.addr
    );
    n.callee2.send(n.proxy, &ok).await;
    let up = n.caller.next(secs(1.0)).await;
    assert!(up.is_reply(200), "{}", up.text);
    assert_at(&up, secs(0.2), "a 2xx is relayed at once");
    let want =
        ok.replacen(&format!("Via: {vias}"), &format!("Via: SIP/2.0/UDP {};branch=z9hG4bK-up-ok", n.caller.addr), 1);
    assert_eq!(up.text, want, "only our Via value is gone, the rest is byte for byte");

    let cancel = n.callee.next(secs(1.0)).await;
    assert_eq!(cancel.method(), "CANCEL", "{}", cancel.text);
    assert_at(&cancel, secs(0.2), "CANCEL of the ringing branch");
    assert_eq!(top_branch(&cancel), param_a);
    assert_eq!(cancel.header("CSeq"), Some("7 CANCEL"));
    assert!(cancel.header("Reason").is_some_and(|r| r.starts_with("SIP;cause=200")), "{}", cancel.text);
    n.callee.send(n.proxy, &reply_to(&cancel, 200, "OK", "tag-a")).await;

    n.callee2.quiet(secs(10.0), "the proxy never ACKs a 2xx and the branch no longer retransmits").await;
    assert!(n.hooks.failures().is_empty());
    // The CANCELled branch's 487 is ACKed and not relayed.
    n.callee.send(n.proxy, &reply_to(&inv_a, 487, "Request Terminated", "tag-a")).await;
    assert_eq!(n.callee.next(secs(1.0)).await.method(), "ACK");
    n.caller.quiet(secs(10.0), "the 487 of a CANCELled branch goes nowhere").await;
}

/// `tm.cancel()` (the caller's CANCEL, spec §4.6 / RFC 3261 §9.1): a branch that had a
/// provisional gets CANCEL at once; a branch with no reply keeps retransmitting the
/// INVITE and gets its CANCEL as soon as its first 1xx arrives. With the cell cancelled,
/// the 487s win.
#[tokio::test(start_paused = true)]
async fn cancel_waits_for_a_provisional_on_silent_branches() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "cx");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    let pa = n.fork(&cell, &req, n.callee.addr);
    let pb = n.fork(&cell, &req, n.callee2.addr);
    let inv_a = n.callee.next(secs(1.0)).await;
    let inv_b = n.callee2.next(secs(1.0)).await;
    n.until(secs(0.1)).await;
    n.callee.send(n.proxy, &reply_to(&inv_a, 180, "Ringing", "tag-a")).await;
    assert!(n.caller.next(secs(1.0)).await.is_reply(180));

    n.until(secs(2.0)).await;
    n.tm.cancel(&cell, None);
    assert!(cell.was_cancelled());
    let ca = n.callee.next(secs(1.0)).await;
    assert_eq!(ca.method(), "CANCEL");
    assert_at(&ca, secs(2.0), "CANCEL at once on the branch that rang");
    assert_eq!(top_branch(&ca), pa);
    assert_eq!(ca.header("Reason"), Some("SIP;cause=487;text=\"ORIGINATOR_CANCEL\""));
    n.callee.send(n.proxy, &reply_to(&ca, 200, "OK", "tag-a")).await;

    // The silent branch: only INVITE retransmissions (Timer A) until its first 1xx.
    let before = n.callee2.collect_until(n.t0, secs(8.0)).await;
    let times = arrivals(&before);
    assert!(before.iter().all(|g| g.text == inv_b.text), "no CANCEL before a provisional: {before:#?}");
    assert_eq!(times, vec![0.5, 1.5, 3.5, 7.5]);
    n.callee2.send(n.proxy, &reply_to(&inv_b, 100, "Trying", "")).await;
    let cb = n.callee2.next(secs(1.0)).await;
    assert_eq!(cb.method(), "CANCEL", "{}", cb.text);
    assert_at(&cb, secs(8.0), "CANCEL as soon as the first 1xx arrives");
    assert_eq!(top_branch(&cb), pb);
    n.callee2.send(n.proxy, &reply_to(&cb, 200, "OK", "tag-b")).await;

    // Both answer 487: ACKed; the caller gets one 487.
    n.callee.send(n.proxy, &reply_to(&inv_a, 487, "Request Terminated", "tag-a")).await;
    assert_eq!(n.callee.next(secs(1.0)).await.method(), "ACK");
    n.caller.quiet(secs(0.1), "branch B still pending").await;
    n.callee2.send(n.proxy, &reply_to(&inv_b, 487, "Request Terminated", "tag-b")).await;
    assert_eq!(n.callee2.next(secs(1.0)).await.method(), "ACK");
    let up = n.caller.next(secs(1.0)).await;
    assert!(up.is_reply(487), "{}", up.text);
    assert_eq!(n.hooks.failures().len(), 1);
    assert_eq!(n.hooks.failures()[0].code, 487);
}

/// The failure hook may fork again (failure_route + t_relay, serial forking): the winner
/// is then not relayed, the new branch forms a new generation, and only its replies
/// decide the next winner.
#[tokio::test(start_paused = true)]
async fn a_new_branch_from_on_failure_starts_a_new_generation() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "serial");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let tm = n.tm.clone();
    let (proxy, second) = (n.proxy, n.callee2.addr);
    let req2 = req.clone();
    *n.hooks.action.lock().unwrap() = Some(Box::new(move |cell: &Arc<Cell>, w: &Winner| {
        assert_eq!(w.code, 503);
        let (k, param) = tm.new_branch_param(cell);
        let uri = format!("sip:bob@{second}");
        let rest = req2.split_once("\r\n").unwrap().1;
        let bytes = format!("INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {proxy};branch={param}\r\n{rest}");
        let out = BranchOut {
            uri,
            dest: Dest { proto: Proto::Udp, addr: second, listener: None },
            bytes: Bytes::from(bytes),
        };
        tm.add_branch(cell, k, out).expect("a branch from the failure hook");
    }));
    let inv_a = n.callee.next(secs(1.0)).await;
    n.callee.send(n.proxy, &reply_to(&inv_a, 503, "Service Unavailable", "tag-a")).await;
    assert_eq!(n.callee.next(secs(1.0)).await.method(), "ACK");
    let inv_b = n.callee2.next(secs(1.0)).await;
    assert_eq!(inv_b.start_line(), format!("INVITE sip:bob@{} SIP/2.0", n.callee2.addr));
    n.caller.quiet(secs(0.2), "the 503 is not relayed: the failure hook forked again").await;
    assert_eq!(cell.branch_count(), 2);

    n.callee2.send(n.proxy, &reply_to(&inv_b, 486, "Busy Here", "tag-b")).await;
    assert_eq!(n.callee2.next(secs(1.0)).await.method(), "ACK");
    let up = n.caller.next(secs(1.0)).await;
    assert_eq!(up.start_line(), "SIP/2.0 486 Busy Here", "the new generation's winner, not the old 503");
    assert_eq!(
        n.hooks.failures(),
        vec![
            Failure { cell: cell.id, branch: 0, code: 503, reply: Some(503) },
            Failure { cell: cell.id, branch: 1, code: 486, reply: Some(486) },
        ]
    );
}

/// The failure hook may answer itself (failure_route + t_reply): that reply goes up,
/// the winner does not.
#[tokio::test(start_paused = true)]
async fn a_reply_from_on_failure_replaces_the_winner() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "fr-reply");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let tm = n.tm.clone();
    *n.hooks.action.lock().unwrap() = Some(Box::new(move |cell: &Arc<Cell>, _: &Winner| {
        assert!(tm.reply(cell, 480, "Temporarily Unavailable", "X-Why: failure-hook\r\n", b""));
    }));
    let inv = n.callee.next(secs(1.0)).await;
    n.callee.send(n.proxy, &reply_to(&inv, 404, "Not Found", "tag-a")).await;
    let up = n.caller.next(secs(1.0)).await;
    assert_eq!(up.start_line(), "SIP/2.0 480 Temporarily Unavailable");
    assert_eq!(up.header("X-Why"), Some("failure-hook"));
    let next = n.caller.next(secs(1.0)).await;
    assert_eq!(next.text, up.text, "Timer G repeats the local reply, the 404 never goes up");
    assert_at(&next, secs(0.5), "Timer G");
}

/// RFC 3261 §9.1 / §17.1.2.2: a CANCEL the callee does not answer is retransmitted like
/// any non-INVITE request (T1, doubling, capped at T2) until its final reply.
#[tokio::test(start_paused = true)]
async fn cancel_is_retransmitted_until_answered() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "cxr");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let inv = n.callee.next(secs(1.0)).await;
    n.until(secs(0.1)).await;
    n.callee.send(n.proxy, &reply_to(&inv, 180, "Ringing", "b1")).await;
    n.until(secs(2.0)).await;
    n.tm.cancel(&cell, Some("Reason: SIP;cause=200;text=\"elsewhere\"".into()));
    let first = n.callee.next(secs(1.0)).await;
    assert_eq!(first.method(), "CANCEL");
    assert_eq!(first.header("Reason"), Some("SIP;cause=200;text=\"elsewhere\""), "the given Reason is used");
    for want in [2.5, 3.5, 5.5, 9.5, 13.5] {
        let g = n.callee.next(secs(10.0)).await;
        assert_eq!(g.text, first.text);
        assert_at(&g, secs(want), "CANCEL retransmission");
    }
    n.until(secs(14.0)).await;
    n.callee.send(n.proxy, &reply_to(&first, 200, "OK", "b1")).await;
    n.callee.quiet(secs(30.0), "an answered CANCEL is not retransmitted").await;
}

/// RFC 3261 §9.1 (and the comment in `cancel_branch`): a CANCELled branch that never
/// sends a final reply is given up 64*T1 after the CANCEL — here 2 s + 32 s — with a local
/// 408, not at the fr_inv_timeout armed by its 180 (120.1 s). The unanswered CANCEL is
/// retransmitted until then.
#[tokio::test(start_paused = true)]
async fn cancelled_branch_that_stays_silent_ends_64_t1_after_the_cancel() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "cxs");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let inv = n.callee.next(secs(1.0)).await;
    n.until(secs(0.1)).await;
    n.callee.send(n.proxy, &reply_to(&inv, 180, "Ringing", "b1")).await;
    assert!(n.caller.next(secs(1.0)).await.is_reply(180));
    n.until(secs(2.0)).await;
    n.tm.cancel(&cell, None);
    let got = n.callee.collect_until(n.t0, secs(40.0)).await;
    assert!(got.iter().all(|g| g.method() == "CANCEL"), "{got:#?}");
    assert!(got.len() > 5, "the CANCEL is retransmitted: {:?}", got.iter().map(|g| g.at).collect::<Vec<_>>());
    let up = n.caller.next(secs(200.0)).await;
    assert!(up.is_reply(408), "{}", up.text);
    assert_at(&up, secs(34.0), "64*T1 after the CANCEL");
}

/// RFC 3261 §9.2: a CANCEL matches the INVITE cell it cancels (same branch, method
/// INVITE), not as a request of its own.
#[tokio::test(start_paused = true)]
async fn cancel_request_finds_its_invite_cell() {
    let n = net().await;
    let (req, cell) = n.create("INVITE", "cm");
    let cancel = req.replacen("INVITE sip:", "CANCEL sip:", 1).replace("CSeq: 7 INVITE", "CSeq: 7 CANCEL");
    let c = parse(&cancel);
    assert_eq!(n.tm.lookup_invite_for_cancel(&c).map(|x| x.id), Some(cell.id));
    assert!(n.tm.lookup(&c).is_none(), "a CANCEL is its own transaction");
    let other = cancel.replace("z9hG4bK-up-cm", "z9hG4bK-up-other");
    assert!(n.tm.lookup_invite_for_cancel(&parse(&other)).is_none());
}

/// RFC 3261 §17.2.1 / spec §4.2: a retransmitted request finds its cell (`lookup`) and
/// `retransmit_reply` repeats the last reply sent upstream, byte for byte.
#[tokio::test(start_paused = true)]
async fn retransmitted_request_finds_the_cell_and_gets_the_last_reply_again() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "rtx");
    let trying = n.caller.next(secs(1.0)).await;
    n.fork(&cell, &req, n.callee.addr);
    let inv = n.callee.next(secs(1.0)).await;

    n.caller.send(n.proxy, &req).await;
    let (again, src) = n.next_request().await;
    assert_eq!(src, n.caller.addr);
    let found = n.tm.lookup(&again).expect("the retransmission matches the cell");
    assert_eq!(found.id, cell.id);
    assert!(matches!(n.tm.create(again, n.upstream(), None), Err(TmError::Exists)));
    n.tm.retransmit_reply(&found);
    assert_eq!(n.caller.next(secs(1.0)).await.text, trying.text, "the 100 again");

    n.callee.send(n.proxy, &reply_to(&inv, 180, "Ringing", "b1")).await;
    let ringing = n.caller.next(secs(1.0)).await;
    assert!(ringing.is_reply(180));
    n.caller.send(n.proxy, &req).await;
    let (again, _) = n.next_request().await;
    let found = n.tm.lookup(&again).expect("still the cell");
    n.tm.retransmit_reply(&found);
    assert_eq!(n.caller.next(secs(1.0)).await.text, ringing.text, "the last reply (180) again");

    // Another transaction (a new branch) does not match.
    let other = request("INVITE", n.caller.addr, "rtx", "z9hG4bK-up-other");
    assert!(n.tm.lookup(&parse(&other)).is_none());
}

/// RFC 3261 §17.2.1: a negative final to an INVITE over UDP is retransmitted upstream
/// (Timer G: T1, doubling, capped at T2) until the ACK is absorbed; then it stops and the
/// cell ends after wt_timer.
#[tokio::test(start_paused = true)]
async fn negative_final_upstream_is_retransmitted_until_the_ack() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "tg");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let inv = n.callee.next(secs(1.0)).await;
    n.callee.send(n.proxy, &reply_to(&inv, 486, "Busy Here", "busy")).await;
    let first = n.caller.next(secs(1.0)).await;
    assert!(first.is_reply(486));
    for want in [0.5, 1.5, 3.5, 7.5, 11.5] {
        let g = n.caller.next(secs(10.0)).await;
        assert_eq!(g.text, first.text);
        assert_at(&g, secs(want), "Timer G retransmission");
    }
    n.until(secs(12.0)).await;
    let ack = format!(
        "ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-up-tg\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a-tg\r\nTo: <sip:bob@example.com>;tag=busy\r\n\
         Call-ID: tg\r\nCSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n",
        n.caller.addr
    );
    n.caller.send(n.proxy, &ack).await;
    let (ack_msg, _) = n.next_request().await;
    let found = n.tm.lookup(&ack_msg).expect("the ACK of a negative final matches its INVITE cell");
    assert_eq!(found.id, cell.id);
    n.tm.absorb_ack(&found);
    n.caller.quiet(secs(60.0), "Timer G stops with the ACK").await;
    assert!(n.tm.lookup(&parse(&req)).is_none(), "the cell is gone after wt_timer");
    assert!(n.tm.is_empty());
}

/// Without an ACK, Timer G stops when Timer H (64*T1 = 32 s) fires.
#[tokio::test(start_paused = true)]
async fn negative_final_retransmissions_end_with_timer_h() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "th");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let inv = n.callee.next(secs(1.0)).await;
    n.callee.send(n.proxy, &reply_to(&inv, 404, "Not Found", "nf")).await;
    assert!(n.caller.next(secs(1.0)).await.is_reply(404));
    let got = n.caller.collect_until(n.t0, secs(120.0)).await;
    let times = arrivals(&got);
    assert_eq!(times, vec![0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]);
    assert!(n.tm.is_empty(), "the cell ended");
}

/// A reply whose top Via branch is not one of ours matches no cell: it goes to
/// `on_stray_reply` and nowhere else.
#[tokio::test(start_paused = true)]
async fn reply_matching_no_cell_is_stray() {
    let mut n = net().await;
    let (req, cell) = n.create("INVITE", "stray");
    assert!(n.caller.next(secs(1.0)).await.is_reply(100));
    n.fork(&cell, &req, n.callee.addr);
    let inv = n.callee.next(secs(1.0)).await;
    let bogus = reply_to(&inv, 180, "Ringing", "x").replacen(&top_branch(&inv), "z9hG4bKsomeoneelse.1.0", 1);
    n.callee.send(n.proxy, &bogus).await;
    n.caller.quiet(secs(0.2), "a stray reply is not relayed by the cell").await;
    assert_eq!(*n.hooks.strays.lock().unwrap(), vec![180]);
    assert!(n.hooks.replies().is_empty());
}
