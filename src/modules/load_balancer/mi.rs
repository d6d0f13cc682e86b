//! The load balancer's MI commands: `lb_list`, `lb_reload`, `lb_resize`, `lb_status`
//! (OpenSIPS 3.x names, parameters and reply shapes).

use super::{DstInfo, LbLoader, LoadBalancer, MiChangeError};
use crate::mi::{Command, Mi, MiError, Params};
use serde_json::{json, Value};
use std::sync::Arc;

/// Registers the commands of `lb` into `mi`; `loader` reads the table for `lb_reload`.
pub fn install(mi: &Arc<Mi>, lb: Arc<LoadBalancer>, loader: LbLoader) {
    let l = lb.clone();
    mi.commands.register(Command::immediate("lb_list", &[&[]], move |_p: Params| Ok(list(&l))));
    let l = lb.clone();
    mi.commands.register(Command::new("lb_reload", &[&[]], move |_p: Params| {
        let (l, loader) = (l.clone(), loader.clone());
        async move {
            match l.reload(&loader).await {
                Ok(_) => Ok(json!("OK")),
                Err(e) => Err(MiError::internal(format!("lb_reload failed, the loaded destinations stay in use: {e}"))),
            }
        }
    }));
    let l = lb.clone();
    mi.commands.register(Command::immediate(
        "lb_resize",
        &[&["destination_id", "res_name", "new_capacity"]],
        move |p: Params| {
            let id = int_param(&p, "destination_id")?;
            let res = p.required_str("res_name")?;
            let max = int_param(&p, "new_capacity")?;
            if max < 0 {
                return Err(MiError::invalid_params(format!("new_capacity: must not be negative, got {max}")));
            }
            l.resize(id, res.trim(), max).map_err(not_found)?;
            Ok(json!("OK"))
        },
    ));
    let l = lb;
    mi.commands.register(Command::immediate(
        "lb_status",
        &[&["destination_id"], &["destination_id", "new_status"]],
        move |p: Params| {
            let id = int_param(&p, "destination_id")?;
            match p.str("new_status")?.as_deref().map(str::trim) {
                None | Some("") => {
                    let st = l.status(id).ok_or_else(|| not_found(MiChangeError::NoDestination(id)))?;
                    Ok(json!({ "enabled": yes_no(st.is_enabled()) }))
                }
                Some("1") => l.set_enabled(id, true).map(|_| json!("OK")).map_err(not_found),
                Some("0") => l.set_enabled(id, false).map(|_| json!("OK")).map_err(not_found),
                Some(other) => Err(MiError::invalid_params(format!("new_status: expected 0 or 1, got {other:?}"))),
            }
        },
    ));
}

fn not_found(e: MiChangeError) -> MiError {
    MiError::not_found(e.to_string())
}

/// A required integer parameter, given as a number or as text.
fn int_param(p: &Params, name: &str) -> Result<i64, MiError> {
    p.int(name)?.ok_or_else(|| MiError::invalid_params(format!("missing parameter {name:?}")))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `lb_list` in OpenSIPS 3.x's shape. siprox adds `probe_mode`, and `attrs` /
/// `description` when the row has them.
pub fn list(lb: &LoadBalancer) -> Value {
    let dsts: Vec<Value> = lb.destinations().iter().map(|d| dst_json(lb, d)).collect();
    json!({ "Destinations": dsts })
}

fn dst_json(lb: &LoadBalancer, d: &DstInfo) -> Value {
    let resources: Vec<Value> =
        d.resources.iter().map(|(name, max, load)| json!({ "name": name, "max": max, "load": load })).collect();
    let mut o = json!({
        "id": d.id,
        "group": d.group,
        "uri": d.uri,
        "enabled": yes_no(d.status.is_enabled()),
        "auto-re": if lb.auto_reenable(d) { "on" } else { "off" },
        "probe_mode": d.probe_mode,
        "Resources": resources,
    });
    if let Some(map) = o.as_object_mut() {
        if let Some(a) = &d.attrs {
            map.insert("attrs".into(), json!(a));
        }
        if let Some(desc) = &d.description {
            map.insert("description".into(), json!(desc));
        }
    }
    o
}
