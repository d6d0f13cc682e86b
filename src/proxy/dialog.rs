//! The network side of dialogs: the BYEs the proxy sends itself when a dialog's lifetime
//! is over (flag `B`) or the operator ends it (`dlg_end_dlg`), built from the dialog's
//! stored state (RFC 3261 §12.2.1.1, §15.1.1).

use super::hooks::with_data;
use super::util::local_dest;
use super::Proxy;
use crate::dialog::{Dialog, DialogActions, DlgState, Side};
use crate::message::{Method, Uri};
use crate::script::api::Ctx;
use crate::transaction::{Cell, InDialog, LocalOutcome, LocalRequest};
use std::sync::Arc;

/// Route values stored as `<uri>,<uri>`, split at the commas outside angle brackets.
fn split_routes(set: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0u32);
    for c in set.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The URI of a route value (`<sip:x;lr>` → `sip:x;lr`).
fn route_uri(v: &str) -> &str {
    let v = v.trim();
    match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    }
}

/// What a BYE to `side` looks like, and where it goes first (the first loose route, else
/// the remote target).
fn bye_for(dlg: &Dialog, side: Side) -> (String, String, InDialog, String) {
    let mut d = dlg.data();
    let caller = format!("<{}>;tag={}", dlg.from_uri, dlg.from_tag);
    let callee =
        if d.to_tag.is_empty() { format!("<{}>", dlg.to_uri) } else { format!("<{}>;tag={}", dlg.to_uri, d.to_tag) };
    let (ruri, routes, from, to, cseq, sock) = match side {
        Side::Callee => {
            d.caller_cseq += 1;
            (d.callee_contact.clone(), d.callee_route_set.clone(), caller, callee, d.caller_cseq, d.callee_sock.clone())
        }
        Side::Caller => {
            d.callee_cseq += 1;
            (d.caller_contact.clone(), d.caller_route_set.clone(), callee, caller, d.callee_cseq, d.caller_sock.clone())
        }
    };
    let route = split_routes(&routes);
    let first_hop = match route.first().map(|r| route_uri(r)) {
        Some(u) if Uri::parse(u).is_some_and(|u| u.is_loose()) => u.to_string(),
        _ => ruri.clone(),
    };
    let dialog = InDialog { call_id: dlg.callid.clone(), from, to, cseq, route };
    (ruri, first_hop, dialog, sock)
}

impl Proxy {
    /// After the request route: a dialog created for this INVITE belongs to its
    /// transaction, whose final reply ends it if negative. When the script answered it
    /// already (a 503 because no destination had capacity), answered it statelessly, dropped
    /// it, or it was a retransmission, the dialog ends here, so its profiles (the load
    /// balancer's load) never keep a call that does not exist.
    pub(super) fn settle_dialog(&self, ctx: &Ctx) {
        let Some(dlg) = &ctx.dlg else { return };
        if dlg.state() != DlgState::Unconfirmed || ctx.msg.method() != Method::Invite || ctx.msg.has_to_tag() {
            return;
        }
        let cell = ctx.tsx.clone().and_then(|t| t.downcast::<Cell>().ok());
        let Some(cell) = cell else {
            self.dialogs.end(dlg, "failed");
            return;
        };
        // t_newtran before create_dialog froze the transaction without it.
        with_data(&cell, |d| {
            if d.dlg.is_none() {
                d.dlg = Some(dlg.clone());
            }
        });
        let status = cell.uas_status();
        if status >= 300 {
            self.dialogs.on_final(dlg, status);
        }
    }
}

impl DialogActions for Proxy {
    fn send_bye(&self, dlg: &Arc<Dialog>, side: Side) {
        let (ruri, hop_uri, dialog, sock) = bye_for(dlg, side);
        if ruri.is_empty() {
            tracing::warn!(did = %dlg.did(), ?side, "no contact known: BYE not sent");
            return;
        }
        let (Some(me), Ok(rt)) = (self.me.upgrade(), tokio::runtime::Handle::try_current()) else { return };
        let did = dlg.did();
        rt.spawn(async move {
            let (dest, via_addr) = match local_dest(&me.tp, &hop_uri, Some(&sock)).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(%did, ?side, error = ?e, "BYE not sent: no route to the target");
                    return;
                }
            };
            let req = LocalRequest {
                method: "BYE".into(),
                ruri,
                from: String::new(),
                max_forwards: 70,
                dest,
                via_addr,
                dialog: Some(dialog),
            };
            let timeout = me.tm.timers.fr;
            match me.tm.request_local(req, timeout).await {
                LocalOutcome::Final(code) => tracing::info!(%did, ?side, code, "dialog BYE answered"),
                LocalOutcome::NoAnswer => tracing::info!(%did, ?side, code = 408, "dialog BYE not answered"),
                LocalOutcome::NotSent(error) => tracing::warn!(%did, ?side, %error, "BYE not sent"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_outside_brackets() {
        assert_eq!(split_routes("<sip:a;lr>,<sip:b,c;lr>"), vec!["<sip:a;lr>", "<sip:b,c;lr>"]);
        assert!(split_routes("").is_empty());
        assert_eq!(route_uri("<sip:a;lr>"), "sip:a;lr");
    }
}
