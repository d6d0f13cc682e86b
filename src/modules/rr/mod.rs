//! rr: record-routing and Route-driven forwarding (RFC 3261 §16.4, §16.6 steps 4–7, §16.12;
//! spec §5).
//!
//! Parameters (`[rr]`): `append_fromtag` (default true: `;ftag=` in our Record-Route),
//! `enable_double_rr` (default true: two entries when the request leaves on another socket
//! than it came in on, both with `;r2=on`).
//!
//! Script functions:
//! - `record_route([params])`, `record_route_preset(uri[, uri2])`, `add_rr_param(params)`
//! - `loose_route()` → 1 routed by the Route set, -1 no Route / preloaded route to us only.
//! - `check_route_param(re)`, `is_direction("downstream"|"upstream")`

pub mod script;

use crate::message::{Edits, HeaderName, NameAddr, SipMsg, Span, Uri};

/// One Record-Route header line for a socket known by its advertised `host:port`.
pub fn format_rr(hostport: &str, proto: &str, r2: bool, ftag: Option<&str>, params: &str) -> String {
    let mut s = String::with_capacity(96);
    s.push_str("Record-Route: <sip:");
    s.push_str(hostport);
    if !proto.eq_ignore_ascii_case("udp") {
        s.push_str(";transport=");
        s.push_str(&proto.to_ascii_lowercase());
    }
    if r2 {
        s.push_str(";r2=on");
    }
    s.push_str(";lr");
    if let Some(t) = ftag {
        s.push_str(";ftag=");
        s.push_str(t);
    }
    s.push_str(params);
    s.push_str(">\r\n");
    s
}

/// `record_route_preset`: the given URI (with or without `sip:`) plus `;lr` and `;ftag`.
pub fn format_rr_preset(uri: &str, ftag: Option<&str>, params: &str) -> String {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let scheme = if uri.contains(':') && (uri.starts_with("sip:") || uri.starts_with("sips:")) { "" } else { "sip:" };
    let mut s = format!("Record-Route: <{scheme}{uri};lr");
    if let Some(t) = ftag {
        s.push_str(";ftag=");
        s.push_str(t);
    }
    s.push_str(params);
    s.push_str(">\r\n");
    s
}

/// Where the Record-Route lines go: above any received Record-Route (§16.6 step 4).
pub fn rr_insert_point(msg: &SipMsg) -> usize {
    msg.first(&HeaderName::RecordRoute)
        .or_else(|| msg.headers().first())
        .map(|h| h.line.start as usize)
        .unwrap_or(msg.headers_end())
}

/// What `loose_route` decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Routed {
    pub code: i64,
    pub new_ruri: Option<String>,
    pub du: Option<String>,
    /// Route values to delete.
    pub remove: Vec<Span>,
    /// A Route value to add at the end (the old R-URI when the next hop is a strict router).
    pub append_route: Option<String>,
    /// Parameters of our own Route entry.
    pub our_params: String,
    /// `(proto, host, port)` of our second entry in a double Record-Route: the socket the
    /// request must leave on.
    pub send_socket: Option<(String, String, u16)>,
    /// Our entry was a single Record-Route: leave on the socket the request came in on.
    pub same_socket: bool,
}

/// The loose_route algorithm (spec §5; RFC 3261 §16.4 and §16.6 step 6).
pub fn loose_route(msg: &SipMsg, ruri: &str, is_myself: &dyn Fn(&str, Option<u16>) -> bool) -> Routed {
    let mut routes: Vec<(Span, String)> = msg
        .values(&HeaderName::Route)
        .into_iter()
        .map(|(s, t)| (s, NameAddr::parse(t).map(|n| n.uri.to_string()).unwrap_or_default()))
        .collect();
    let mut r = Routed { code: -1, ..Default::default() };
    if routes.is_empty() {
        return r;
    }
    let mine = |uri: &str| Uri::parse(uri).is_some_and(|u| u.is_sip() && is_myself(u.host(), u.port()));
    let preloaded = !msg.has_to_tag();
    let mut current_ruri = ruri.to_string();
    // §16.4: the previous hop was a strict router and put our RR URI in the R-URI: the real
    // target is the last Route value.
    if !preloaded && mine(ruri) {
        if let Some((span, last)) = routes.pop() {
            r.remove.push(span);
            current_ruri = last.clone();
            r.new_ruri = Some(last);
        }
    }
    let mut next = 0;
    if let Some((span, uri)) = routes.first() {
        if mine(uri) {
            r.remove.push(*span);
            let u = Uri::parse(uri);
            r.our_params = u.as_ref().map(|u| u.params().to_string()).unwrap_or_default();
            next = 1;
            let r2 = u.as_ref().and_then(|u| u.param("r2")).flatten().is_some_and(|v| v.eq_ignore_ascii_case("on"));
            match routes.get(1) {
                Some((span2, uri2)) if r2 && mine(uri2) => {
                    r.remove.push(*span2);
                    if let Some(u2) = Uri::parse(uri2) {
                        r.send_socket = Some((u2.transport(), u2.host().to_string(), u2.port().unwrap_or(5060)));
                    }
                    next = 2;
                }
                _ => r.same_socket = !r2,
            }
        }
    }
    match routes.get(next) {
        None => {
            // Nothing beyond us: an in-dialog request goes to its R-URI; a preloaded Route
            // to ourselves is stripped and routing falls back to the R-URI.
            r.code = if preloaded { -1 } else { 1 };
        }
        Some((span, uri)) => {
            let loose = Uri::parse(uri).is_some_and(|u| u.is_loose());
            if loose {
                r.du = Some(uri.clone());
            } else {
                // §16.6 step 6: a strict next hop goes into the R-URI, the R-URI to the end.
                r.append_route = Some(current_ruri);
                r.new_ruri = Some(uri.clone());
                r.remove.push(*span);
            }
            r.code = 1;
        }
    }
    r
}

/// Deletes comma-separated header values: whole lines when every value of a line goes,
/// else the line's value rewritten with the survivors.
pub fn remove_values(msg: &SipMsg, edits: &mut Edits, name: HeaderName, spans: &[Span]) {
    for h in msg.headers_named(&name) {
        let in_line: Vec<Span> =
            spans.iter().copied().filter(|s| s.start >= h.value.start && s.end <= h.value.end).collect();
        if in_line.is_empty() {
            continue;
        }
        let values = crate::message::split_commas(msg.slice(h.value))
            .map(|r| Span::new(h.value.start as usize + r.start, h.value.start as usize + r.end))
            .collect::<Vec<_>>();
        let keep: Vec<&str> = values.iter().filter(|v| !in_line.contains(v)).map(|v| msg.text(*v)).collect();
        if keep.is_empty() {
            edits.delete(h.line);
        } else {
            edits.replace(h.value, keep.join(", "));
        }
    }
}

/// `is_direction`: "downstream" when the request's From-tag is the `ftag` of our Route entry.
pub fn is_downstream(msg: &SipMsg, our_params: &str) -> bool {
    let ftag = our_params.split(';').find_map(|p| p.trim().strip_prefix("ftag="));
    match (ftag, msg.from().and_then(|f| f.tag())) {
        (Some(ft), Some(tag)) => ft == tag,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn me(host: &str, port: Option<u16>) -> bool {
        host == "10.0.0.1" && port.unwrap_or(5060) == 5060
    }
    fn msg(s: &str) -> SipMsg {
        SipMsg::parse(Bytes::from(s.to_string())).expect("parses")
    }

    #[test]
    fn loose_in_dialog_to_next_hop() {
        let m = msg("BYE sip:bob@10.0.0.9 SIP/2.0\r\nRoute: <sip:10.0.0.1;lr;ftag=abc>, <sip:10.0.0.5;lr>\r\nTo: <sip:b@x>;tag=2\r\nFrom: <sip:a@x>;tag=abc\r\n\r\n");
        let r = loose_route(&m, m.ruri(), &me);
        assert_eq!(r.code, 1);
        assert_eq!(r.du.as_deref(), Some("sip:10.0.0.5;lr"));
        assert_eq!(r.our_params, ";lr;ftag=abc");
        assert!(is_downstream(&m, &r.our_params));
        let mut e = Edits::new();
        remove_values(&m, &mut e, HeaderName::Route, &r.remove);
        let out = String::from_utf8(Edits::render(&m, &[&e])).expect("utf8");
        assert!(out.contains("Route: <sip:10.0.0.5;lr>\r\n"), "{out}");
    }

    #[test]
    fn double_rr_removes_both_and_pins_socket() {
        let m = msg("BYE sip:bob@10.0.0.9 SIP/2.0\r\nRoute: <sip:10.0.0.1;r2=on;lr>\r\nRoute: <sip:10.0.0.1:5060;transport=tcp;r2=on;lr>\r\nTo: <sip:b@x>;tag=2\r\n\r\n");
        let r = loose_route(&m, m.ruri(), &me);
        assert_eq!(r.code, 1);
        assert_eq!(r.remove.len(), 2);
        assert_eq!(r.send_socket, Some(("tcp".into(), "10.0.0.1".into(), 5060)));
        assert_eq!(r.du, None);
    }

    #[test]
    fn strict_router_previous_hop() {
        let m = msg("BYE sip:10.0.0.1;lr SIP/2.0\r\nRoute: <sip:10.0.0.7;lr>, <sip:bob@10.0.0.9>\r\nTo: <sip:b@x>;tag=2\r\n\r\n");
        let r = loose_route(&m, m.ruri(), &me);
        assert_eq!(r.new_ruri.as_deref(), Some("sip:bob@10.0.0.9"));
        assert_eq!(r.du.as_deref(), Some("sip:10.0.0.7;lr"));
        assert_eq!(r.code, 1);
    }

    #[test]
    fn strict_next_hop_swaps_ruri() {
        let m = msg(
            "BYE sip:bob@10.0.0.9 SIP/2.0\r\nRoute: <sip:10.0.0.1;lr>, <sip:10.0.0.7>\r\nTo: <sip:b@x>;tag=2\r\n\r\n",
        );
        let r = loose_route(&m, m.ruri(), &me);
        assert_eq!(r.new_ruri.as_deref(), Some("sip:10.0.0.7"));
        assert_eq!(r.append_route.as_deref(), Some("sip:bob@10.0.0.9"));
    }

    #[test]
    fn preloaded_route_to_us_only() {
        let m = msg("INVITE sip:bob@10.0.0.9 SIP/2.0\r\nRoute: <sip:10.0.0.1;lr>\r\nTo: <sip:b@x>\r\n\r\n");
        assert_eq!(loose_route(&m, m.ruri(), &me).code, -1);
        let none = msg("INVITE sip:bob@10.0.0.9 SIP/2.0\r\nTo: <sip:b@x>\r\n\r\n");
        assert_eq!(loose_route(&none, none.ruri(), &me).code, -1);
    }

    #[test]
    fn rr_lines() {
        assert_eq!(
            format_rr("1.2.3.4:5060", "udp", false, Some("t1"), ""),
            "Record-Route: <sip:1.2.3.4:5060;lr;ftag=t1>\r\n"
        );
        assert_eq!(
            format_rr("1.2.3.4:5060", "tcp", true, None, ";x=1"),
            "Record-Route: <sip:1.2.3.4:5060;transport=tcp;r2=on;lr;x=1>\r\n"
        );
        assert_eq!(format_rr_preset("5.6.7.8", None, ""), "Record-Route: <sip:5.6.7.8;lr>\r\n");
    }
}
