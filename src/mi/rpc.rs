//! The JSON-RPC 2.0 envelope of `POST /mi`: one request in, one response out, whatever
//! went wrong (design.md §1: errors travel in the body, the HTTP status stays 200).
//!
//! The `id` is kept as the raw JSON text the client sent and written back unchanged, so a
//! string stays a string and a number keeps its exact spelling (`1.0`, 2^70).

use super::{MiError, Registry};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(default)]
    jsonrpc: Option<Value>,
    #[serde(default)]
    method: Option<Value>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i64,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

#[derive(Serialize)]
struct Response<'a> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorObject<'a>>,
    id: &'a RawValue,
}

/// The JSON text `null`, for answers whose request had no usable id.
fn null_id() -> &'static RawValue {
    // A valid JSON literal; the fallback is never taken.
    serde_json::from_str("null").unwrap_or_else(|_| unreachable!("null is JSON"))
}

/// JSON-RPC 2.0 §4: an id is a string, a number or null.
fn valid_id(id: &RawValue) -> bool {
    matches!(id.get().trim_start().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9' | b'n'))
}

/// A complete response body.
pub fn response(id: Option<&RawValue>, outcome: &Result<Value, MiError>) -> String {
    let id: &RawValue = match id {
        Some(id) => id,
        None => null_id(),
    };
    let body = match outcome {
        Ok(v) => Response { jsonrpc: "2.0", result: Some(v), error: None, id },
        Err(e) => Response {
            jsonrpc: "2.0",
            result: None,
            error: Some(ErrorObject { code: e.code, message: &e.message, data: e.data.as_ref() }),
            id,
        },
    };
    serde_json::to_string(&body).unwrap_or_else(|e| {
        // A result value always serialises; keep the wire contract even if one did not.
        format!(r#"{{"jsonrpc":"2.0","error":{{"code":500,"message":"unserialisable result: {e}"}},"id":null}}"#)
    })
}

/// A well-formed request.
struct Call<'a> {
    id: Option<&'a RawValue>,
    method: String,
    params: Option<Value>,
}

/// A refused request: the error, and its id when one could be read.
struct Refused<'a> {
    id: Option<&'a RawValue>,
    error: MiError,
}

/// Checks the envelope.
fn parse(body: &[u8]) -> Result<Call<'_>, Refused<'_>> {
    let req: Request<'_> = serde_json::from_slice(body).map_err(|e| {
        let error = match e.classify() {
            serde_json::error::Category::Data => MiError::invalid_request(e.to_string()),
            _ => MiError::parse_error(e.to_string()),
        };
        Refused { id: None, error }
    })?;
    let id = match req.id {
        Some(id) if !valid_id(id) => {
            return Err(Refused { id: None, error: MiError::invalid_request("id must be a string, a number or null") });
        }
        id => id,
    };
    if req.jsonrpc.as_ref().and_then(Value::as_str) != Some("2.0") {
        return Err(Refused { id, error: MiError::invalid_request(r#"jsonrpc must be "2.0""#) });
    }
    match req.method {
        Some(Value::String(method)) => Ok(Call { id, method, params: req.params }),
        _ => Err(Refused { id, error: MiError::invalid_request("method must be a string") }),
    }
}

/// Answers one request body.
pub async fn answer(registry: &Registry, body: &[u8]) -> String {
    match parse(body) {
        Ok(call) => {
            let outcome = registry.call(&call.method, call.params).await;
            if let Err(e) = &outcome {
                tracing::debug!(method = %call.method, code = e.code, message = %e.message, "MI command refused");
            }
            response(call.id, &outcome)
        }
        Err(refused) => response(refused.id, &Err(refused.error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mi::Command;
    use serde_json::json;

    async fn ask(body: &str) -> Value {
        let r = Registry::default();
        r.register(Command::immediate("ping", &[&[]], |_| Ok(json!("pong"))));
        let text = answer(&r, body.as_bytes()).await;
        serde_json::from_str(&text).expect("the answer is JSON")
    }

    async fn raw_answer(body: &str) -> String {
        let r = Registry::default();
        r.register(Command::immediate("ping", &[&[]], |_| Ok(json!("pong"))));
        answer(&r, body.as_bytes()).await
    }

    #[tokio::test]
    async fn success_and_id_echo() {
        let v = ask(r#"{"jsonrpc":"2.0","method":"ping","params":{},"id":"7"}"#).await;
        assert_eq!(v, json!({"jsonrpc": "2.0", "result": "pong", "id": "7"}));
        // Numbers come back spelled as sent.
        let text = raw_answer(r#"{"jsonrpc":"2.0","method":"ping","id":1.50}"#).await;
        assert!(text.ends_with(r#""id":1.50}"#), "{text}");
        let text = raw_answer(r#"{"jsonrpc":"2.0","method":"ping","id":123456789012345678901234567890}"#).await;
        assert!(text.contains("123456789012345678901234567890"), "{text}");
        let v = ask(r#"{"jsonrpc":"2.0","method":"ping"}"#).await;
        assert_eq!(v["id"], Value::Null);
    }

    #[tokio::test]
    async fn protocol_errors() {
        for (body, code) in [
            ("{not json", MiError::PARSE_ERROR),
            ("", MiError::PARSE_ERROR),
            (r#"{"jsonrpc":"2.0","method":"ping"} x"#, MiError::PARSE_ERROR),
            ("[1,2]", MiError::INVALID_REQUEST),
            (r#""ping""#, MiError::INVALID_REQUEST),
            (r#"{"method":"ping","id":1}"#, MiError::INVALID_REQUEST),
            (r#"{"jsonrpc":"1.0","method":"ping","id":1}"#, MiError::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","method":5,"id":1}"#, MiError::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","method":"ping","id":{"a":1}}"#, MiError::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","method":"nope","id":1}"#, MiError::METHOD_NOT_FOUND),
            (r#"{"jsonrpc":"2.0","method":"ping","params":["x"],"id":1}"#, MiError::INVALID_PARAMS),
            (r#"{"jsonrpc":"2.0","method":"ping","params":"x","id":1}"#, MiError::INVALID_PARAMS),
        ] {
            let v = ask(body).await;
            assert_eq!(v["error"]["code"], json!(code), "{body} -> {v}");
            assert!(v["error"]["message"].is_string(), "{v}");
            assert!(v.get("result").is_none(), "{v}");
        }
        let v = ask(r#"{"jsonrpc":"2.0","method":"nope","id":"abc"}"#).await;
        assert_eq!(v["id"], json!("abc"));
        assert_eq!(v["error"]["data"], json!("nope"));
    }
}
