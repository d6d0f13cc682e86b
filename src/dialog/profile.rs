//! Dialog profiles (spec §10): named groups of dialogs, with or without a value, counted
//! as dialogs join and end. The load balancer keeps its load in them (`lbX<resource>`,
//! value = destination id).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

/// Declared profiles and their sizes.
#[derive(Default)]
pub struct Profiles {
    /// Name → has a value.
    defs: RwLock<HashMap<String, bool>>,
    /// Name → value ("" without) → dialogs in it.
    counts: Mutex<HashMap<String, HashMap<String, u64>>>,
}

impl Profiles {
    /// `profiles_with_value` / `profiles_no_value`; a later declaration of a name wins.
    pub fn declare(&self, name: &str, with_value: bool) {
        let mut defs = self.defs.write().unwrap_or_else(|p| p.into_inner());
        defs.insert(name.to_string(), with_value);
    }

    /// `Some(with_value)` when `name` is declared.
    pub fn kind(&self, name: &str) -> Option<bool> {
        self.defs.read().unwrap_or_else(|p| p.into_inner()).get(name).copied()
    }

    /// Every declared profile, sorted.
    pub fn names(&self) -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> =
            self.defs.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort();
        v
    }

    pub(crate) fn add(&self, name: &str, value: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(name.to_string()).or_default().entry(value.to_string()).or_default() += 1;
    }

    pub(crate) fn remove(&self, name: &str, value: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(per) = counts.get_mut(name) {
            if let Some(n) = per.get_mut(value) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per.remove(value);
                }
            }
        }
    }

    /// Dialogs in `name`; with `value`, only those with that value.
    pub fn size(&self, name: &str, value: Option<&str>) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(per) = counts.get(name) else { return 0 };
        match value {
            Some(v) => per.get(v).copied().unwrap_or(0),
            None => per.values().sum(),
        }
    }

    /// Every (value, size) of `name`.
    pub fn sizes(&self, name: &str) -> Vec<(String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, u64)> =
            counts.get(name).map(|per| per.iter().map(|(k, n)| (k.clone(), *n)).collect()).unwrap_or_default();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_value_and_total() {
        let p = Profiles::default();
        p.declare("caller", true);
        p.add("caller", "alice");
        p.add("caller", "alice");
        p.add("caller", "bob");
        assert_eq!(p.size("caller", Some("alice")), 2);
        assert_eq!(p.size("caller", None), 3);
        p.remove("caller", "alice");
        p.remove("caller", "alice");
        p.remove("caller", "alice");
        assert_eq!(p.size("caller", Some("alice")), 0);
        assert_eq!(p.sizes("caller"), vec![("bob".to_string(), 1)]);
        assert_eq!(p.kind("caller"), Some(true));
        assert_eq!(p.kind("x"), None);
    }
}
