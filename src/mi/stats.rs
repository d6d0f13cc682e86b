//! The statistics catalogue behind `get_statistics` / `reset_statistics`: each statistic
//! is a `group:name` and a reader over a lock-free counter that lives where the event
//! happens (proxy, transaction layer, script host, later modules). Reading walks this list;
//! the hot path never sees it.

use super::MiError;
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};

type Reader = Arc<dyn Fn() -> u64 + Send + Sync>;
type Resetter = Arc<dyn Fn() + Send + Sync>;

struct Stat {
    group: String,
    name: String,
    read: Reader,
    /// `None` for a gauge (a current level such as `tm:inuse_transactions`): never reset.
    reset: Option<Resetter>,
}

/// Every statistic, in registration order.
#[derive(Default)]
pub struct Statistics {
    list: RwLock<Vec<Stat>>,
}

/// Whether selector `sel` names `group:name`: `all`, `group:` (the whole group),
/// `group:name`, or a bare `name` in any group.
fn selects(sel: &str, group: &str, name: &str) -> bool {
    if sel == "all" {
        return true;
    }
    match sel.split_once(':') {
        Some((g, "")) => g == group,
        Some((g, n)) => g == group && n == name,
        None => sel == name,
    }
}

impl Statistics {
    /// A counter that `reset_statistics` zeroes.
    pub fn counter(
        &self,
        group: &str,
        name: &str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
        reset: impl Fn() + Send + Sync + 'static,
    ) {
        self.push(group, name, Arc::new(read), Some(Arc::new(reset)));
    }

    /// A level (in use, loaded, version): read only.
    pub fn gauge(&self, group: &str, name: &str, read: impl Fn() -> u64 + Send + Sync + 'static) {
        self.push(group, name, Arc::new(read), None);
    }

    fn push(&self, group: &str, name: &str, read: Reader, reset: Option<Resetter>) {
        let stat = Stat { group: group.to_string(), name: name.to_string(), read, reset };
        self.list.write().unwrap_or_else(|p| p.into_inner()).push(stat);
    }

    /// Every statistic some selector names, as a flat `{"group:name": value}` object.
    ///
    /// # Errors
    /// 404 when no statistic matches any selector.
    pub fn select(&self, selectors: &[String]) -> Result<Map<String, Value>, MiError> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        let out: Map<String, Value> = list
            .iter()
            .filter(|s| selectors.iter().any(|sel| selects(sel.trim(), &s.group, &s.name)))
            .map(|s| (format!("{}:{}", s.group, s.name), Value::from((s.read)())))
            .collect();
        if out.is_empty() {
            return Err(MiError::not_found(format!("Statistics not found: {}", selectors.join(" "))));
        }
        Ok(out)
    }

    /// Zeroes every counter some selector names (gauges are left alone); returns how many.
    ///
    /// # Errors
    /// 404 when no statistic matches any selector.
    pub fn reset(&self, selectors: &[String]) -> Result<usize, MiError> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        let mut matched = false;
        let mut reset = 0;
        for s in list.iter().filter(|s| selectors.iter().any(|sel| selects(sel.trim(), &s.group, &s.name))) {
            matched = true;
            if let Some(r) = &s.reset {
                r();
                reset += 1;
            }
        }
        if !matched {
            return Err(MiError::not_found(format!("Statistics not found: {}", selectors.join(" "))));
        }
        Ok(reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn sel(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn sample() -> (Statistics, Arc<AtomicU64>) {
        let st = Statistics::default();
        let n = Arc::new(AtomicU64::new(5));
        let (r, w) = (n.clone(), n.clone());
        st.counter("core", "rcv_requests", move || r.load(Ordering::Relaxed), move || w.store(0, Ordering::Relaxed));
        st.counter("core", "rcv_replies", || 2, || {});
        st.counter("tm", "UAS_transactions", || 3, || {});
        st.gauge("tm", "inuse_transactions", || 1);
        (st, n)
    }

    #[test]
    fn selectors() {
        let (st, _) = sample();
        assert_eq!(st.select(&sel(&["all"])).unwrap().len(), 4);
        let core = st.select(&sel(&["core:"])).unwrap();
        let mut keys: Vec<&String> = core.keys().collect();
        keys.sort();
        assert_eq!(keys, vec!["core:rcv_replies", "core:rcv_requests"]);
        assert_eq!(core["core:rcv_requests"], Value::from(5));
        assert_eq!(st.select(&sel(&["core:", "tm:"])).unwrap().len(), 4);
        let one = st.select(&sel(&["inuse_transactions"])).unwrap();
        assert_eq!(one.get("tm:inuse_transactions"), Some(&Value::from(1)));
        assert_eq!(st.select(&sel(&["tm:UAS_transactions"])).unwrap().len(), 1);
        assert_eq!(st.select(&sel(&["tm:rcv_requests"])).unwrap_err().code, 404);
        assert_eq!(st.select(&sel(&["nope:", "bogus"])).unwrap_err().code, 404);
        // Unknown selectors beside known ones are ignored.
        assert_eq!(st.select(&sel(&["bogus", "tm:"])).unwrap().len(), 2);
        // Case matters, as in OpenSIPS.
        assert!(st.select(&sel(&["uas_transactions"])).is_err());
    }

    #[test]
    fn reset_leaves_gauges() {
        let (st, n) = sample();
        assert_eq!(st.reset(&sel(&["tm:"])).unwrap(), 1);
        assert_eq!(st.reset(&sel(&["core:rcv_requests"])).unwrap(), 1);
        assert_eq!(n.load(Ordering::Relaxed), 0);
        assert_eq!(st.reset(&sel(&["all"])).unwrap(), 3);
        assert_eq!(st.reset(&sel(&["missing"])).unwrap_err().code, 404);
    }
}
