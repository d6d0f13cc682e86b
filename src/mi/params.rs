//! `params` as clients send them (design.md §1): absent or `{}` (no arguments), a positional
//! array, or a named object, values usually strings (`"1"`). [`bind`] maps them onto one of
//! a command's parameter lists, so a handler reads every argument by name.

use super::MiError;
use serde_json::{Map, Value};

/// The arguments of one call, by parameter name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    named: Map<String, Value>,
}

impl Params {
    /// Params from name/value pairs (tests, and commands calling each other).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Params {
        Params { named: pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.named.get(name)
    }

    /// A scalar as text: strings as they are, numbers and booleans as written.
    ///
    /// # Errors
    /// The value is an array, an object or null.
    pub fn str(&self, name: &str) -> Result<Option<String>, MiError> {
        self.named.get(name).map(|v| scalar(name, v)).transpose()
    }

    /// # Errors
    /// The parameter is missing or not a scalar.
    pub fn required_str(&self, name: &str) -> Result<String, MiError> {
        self.str(name)?.ok_or_else(|| MiError::invalid_params(format!("missing parameter {name:?}")))
    }

    /// An integer, given as a number or as its decimal text (`"1"`).
    ///
    /// # Errors
    /// The value is not an integer.
    pub fn int(&self, name: &str) -> Result<Option<i64>, MiError> {
        let Some(text) = self.str(name)? else { return Ok(None) };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| MiError::invalid_params(format!("{name}: expected an integer, got {text:?}")))
    }

    /// A list of scalars: an array (nested arrays flattened) or a single scalar.
    ///
    /// # Errors
    /// An element is an object or null.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>, MiError> {
        let Some(v) = self.named.get(name) else { return Ok(None) };
        let mut out = Vec::new();
        flatten_into(name, v, &mut out)?;
        Ok(Some(out))
    }
}

fn scalar(name: &str, v: &Value) -> Result<String, MiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(MiError::invalid_params(format!("{name}: expected a string, got {other}"))),
    }
}

fn flatten_into(name: &str, v: &Value, out: &mut Vec<String>) -> Result<(), MiError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten_into(name, i, out)),
        other => {
            out.push(scalar(name, other)?);
            Ok(())
        }
    }
}

/// `params` as received, before a command's parameter lists give it names.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Raw {
    None,
    Positional(Vec<Value>),
    Named(Map<String, Value>),
}

impl Raw {
    /// Absent, `null`, `{}` and `[]` all mean "no arguments".
    ///
    /// # Errors
    /// `params` is a string, a number or a boolean.
    pub(super) fn from_json(params: Option<Value>) -> Result<Raw, MiError> {
        match params {
            None | Some(Value::Null) => Ok(Raw::None),
            Some(Value::Array(a)) if a.is_empty() => Ok(Raw::None),
            Some(Value::Array(a)) => Ok(Raw::Positional(a)),
            Some(Value::Object(m)) if m.is_empty() => Ok(Raw::None),
            Some(Value::Object(m)) => Ok(Raw::Named(m)),
            Some(other) => Err(MiError::invalid_params(format!("params must be an array or an object, not {other}"))),
        }
    }
}

/// How a command takes its arguments.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Signature {
    /// The accepted parameter-name lists (OpenSIPS's "recipes"); `[]` = no arguments.
    pub recipes: Vec<Vec<String>>,
    /// Every positional value goes into the one parameter of the single-name list, as an
    /// array (`get_statistics core: tm:` and `[["core:", "tm:"]]` alike).
    pub gather: bool,
}

impl Signature {
    fn expected(&self) -> String {
        self.recipes
            .iter()
            .map(|r| if r.is_empty() { "no parameters".to_string() } else { format!("({})", r.join(", ")) })
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// Names `raw` after the first parameter list it fits.
///
/// # Errors
/// -32602 with the reason when no list fits: wrong count, unknown or missing names.
pub(super) fn bind(sig: &Signature, raw: Raw) -> Result<Params, MiError> {
    match raw {
        Raw::None => {
            if sig.recipes.iter().any(Vec::is_empty) {
                Ok(Params::default())
            } else {
                Err(MiError::invalid_params(format!("missing parameters: expected {}", sig.expected())))
            }
        }
        Raw::Named(map) => {
            let fits = sig.recipes.iter().any(|r| r.len() == map.len() && map.keys().all(|k| r.contains(k)));
            if fits {
                Ok(Params { named: map })
            } else {
                let got: Vec<&str> = map.keys().map(String::as_str).collect();
                Err(MiError::invalid_params(format!(
                    "parameters ({}) do not fit: expected {}",
                    got.join(", "),
                    sig.expected()
                )))
            }
        }
        Raw::Positional(values) => {
            if sig.gather {
                if let Some(name) = sig.recipes.iter().find(|r| r.len() == 1).map(|r| r[0].clone()) {
                    return Ok(Params { named: Map::from_iter([(name, Value::Array(values))]) });
                }
            }
            match sig.recipes.iter().find(|r| r.len() == values.len()) {
                Some(names) => Ok(Params { named: names.iter().cloned().zip(values).collect() }),
                None => Err(MiError::invalid_params(format!(
                    "{} positional parameter(s): expected {}",
                    values.len(),
                    sig.expected()
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig(recipes: &[&[&str]], gather: bool) -> Signature {
        Signature { recipes: recipes.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect(), gather }
    }

    fn raw(v: Value) -> Raw {
        Raw::from_json(Some(v)).expect("structured params")
    }

    #[test]
    fn empty_forms_mean_no_arguments() {
        for v in [json!({}), json!([]), Value::Null] {
            assert_eq!(raw(v), Raw::None);
        }
        assert_eq!(Raw::from_json(None), Ok(Raw::None));
        let e = Raw::from_json(Some(json!("x"))).unwrap_err();
        assert_eq!(e.code, MiError::INVALID_PARAMS);
    }

    #[test]
    fn positional_takes_the_names_of_the_list_of_its_length() {
        let s = sig(&[&[], &["partition"], &["state", "group", "address"]], false);
        assert!(bind(&s, Raw::None).unwrap().is_empty());
        let p = bind(&s, raw(json!(["pstn"]))).unwrap();
        assert_eq!(p.str("partition").unwrap().as_deref(), Some("pstn"));
        let p = bind(&s, raw(json!(["i", "1", "sip:10.0.0.1"]))).unwrap();
        assert_eq!(p.required_str("address").unwrap(), "sip:10.0.0.1");
        assert_eq!(p.int("group").unwrap(), Some(1));
        let e = bind(&s, raw(json!(["a", "b"]))).unwrap_err();
        assert_eq!(e.code, MiError::INVALID_PARAMS);
        assert!(e.data.unwrap().as_str().unwrap().contains("2 positional"));
    }

    #[test]
    fn named_must_match_a_list_exactly() {
        let s = sig(&[&["state", "group", "address"], &["state", "group", "address", "partition"]], false);
        let p = bind(&s, raw(json!({"group": 2, "state": "a", "address": "x"}))).unwrap();
        assert_eq!(p.int("group").unwrap(), Some(2));
        assert!(bind(&s, raw(json!({"group": "2", "state": "a"}))).is_err());
        assert!(bind(&s, raw(json!({"group": "2", "state": "a", "address": "x", "bogus": "1"}))).is_err());
        let e = bind(&s, Raw::None).unwrap_err();
        assert!(e.data.unwrap().as_str().unwrap().contains("missing parameters"));
    }

    #[test]
    fn gathered_statistics_forms() {
        let s = sig(&[&["statistics"]], true);
        for v in [json!([["all"]]), json!(["all"]), json!({"statistics": ["all"]}), json!({"statistics": "all"})] {
            let p = bind(&s, raw(v.clone())).unwrap();
            assert_eq!(p.list("statistics").unwrap(), Some(vec!["all".to_string()]), "{v}");
        }
        let p = bind(&s, raw(json!([["core:", "tm:"]]))).unwrap();
        assert_eq!(p.list("statistics").unwrap(), Some(vec!["core:".to_string(), "tm:".to_string()]));
        let p = bind(&s, raw(json!(["core:", "rcv_requests"]))).unwrap();
        assert_eq!(p.list("statistics").unwrap().unwrap().len(), 2);
        assert!(bind(&s, Raw::None).is_err());
    }

    #[test]
    fn value_forms() {
        let p = Params::from_pairs([("n", json!(5)), ("s", json!(" 7 ")), ("bad", json!({"a": 1})), ("t", json!("x"))]);
        assert_eq!(p.int("n").unwrap(), Some(5));
        assert_eq!(p.int("s").unwrap(), Some(7));
        assert_eq!(p.int("missing").unwrap(), None);
        assert!(p.int("t").is_err());
        assert!(p.str("bad").is_err());
        assert!(p.list("bad").is_err());
        assert_eq!(p.list("t").unwrap(), Some(vec!["x".to_string()]));
        assert_eq!(p.required_str("missing").unwrap_err().code, MiError::INVALID_PARAMS);
    }
}
