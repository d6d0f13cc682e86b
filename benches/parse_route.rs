//! Criterion bench: index an INVITE, and run the bench route hook on it with a core that
//! only counts what it is asked to do (no sockets), so the figure is parse + script cost.
//! `cargo bench --bench parse_route`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use siprox::config::Config;
use siprox::message::{Edits, SipMsg};
use siprox::script::api::{CoreOps, Ctx, RouteKind};
use siprox::script::{build_engine, compile, run_hook, Limits, Source};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const INVITE: &[u8] = b"INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1234-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5090>;tag=1234SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5060>\r\n\
Call-ID: 1-1234@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sipp@127.0.0.1:5090>\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

#[derive(Default)]
struct CountingCore {
    relays: AtomicU64,
}

impl CoreOps for CountingCore {
    fn sl_send_reply(&self, _: &mut Ctx, _: u16, _: &str) -> i64 {
        1
    }
    fn send_reply(&self, _: &mut Ctx, _: u16, _: &str) -> i64 {
        1
    }
    fn t_reply(&self, _: &mut Ctx, _: u16, _: &str) -> i64 {
        1
    }
    fn t_relay(&self, _: &mut Ctx, _: &str, _: Option<&str>) -> i64 {
        self.relays.fetch_add(1, Ordering::Relaxed);
        1
    }
    fn t_newtran(&self, _: &mut Ctx) -> i64 {
        1
    }
    fn t_check_trans(&self, _: &mut Ctx) -> i64 {
        -1
    }
    fn t_was_cancelled(&self, _: &Ctx) -> bool {
        false
    }
    fn forward(&self, _: &mut Ctx, _: Option<&str>) -> i64 {
        1
    }
    fn is_myself(&self, host: &str, port: Option<u16>) -> bool {
        host == "127.0.0.1" && port.unwrap_or(5060) == 5060
    }
    fn has_socket(&self, _: &str) -> bool {
        true
    }
}

fn bench(c: &mut Criterion) {
    let data = Bytes::from_static(INVITE);
    c.bench_function("parse_invite", |b| b.iter(|| SipMsg::parse(black_box(data.clone())).map(|m| m.headers().len())));
    c.bench_function("parse_and_read_route_fields", |b| {
        b.iter(|| {
            let m = SipMsg::parse(black_box(data.clone())).ok()?;
            Some((m.has_to_tag(), m.max_forwards(), m.top_via().map(|(_, v)| v.branch().map(str::len))))
        })
    });

    let cfg = Config::default();
    let engine = build_engine(Limits::default(), &*siprox::modules::Modules::new(&cfg).registrar());
    let src = format!(
        "fn backends() {{ [\"sip:127.0.0.1:5081\", \"sip:127.0.0.1:5082\"] }}\n{}",
        include_str!("lb-static.rhai")
    );
    let bundle =
        compile(engine, Source::Text { text: &src, name: "benches/lb-static.rhai" }).expect("bench script compiles");
    let core = Arc::new(CountingCore::default());
    let src_addr = "127.0.0.1:5090".parse().expect("addr");
    let local = "127.0.0.1:5060".parse().expect("addr");
    c.bench_function("parse_and_route_hook", |b| {
        b.iter(|| {
            let m = SipMsg::parse(data.clone()).expect("invite parses");
            let ctx = Ctx::new(RouteKind::Request, m, src_addr, "udp", local, core.clone());
            let (ctx, _) = run_hook(&bundle, "route", ctx);
            black_box(Edits::render(&ctx.msg, &[&ctx.edits]).len())
        })
    });
    assert!(core.relays.load(Ordering::Relaxed) > 0, "the route relayed");
}

criterion_group!(benches, bench);
criterion_main!(benches);
