//! Errors of the management interface: [`MiError`] is what a command answers (a JSON-RPC
//! error object), [`ServerError`] what can stop the server from starting.

use serde_json::Value;
use std::net::SocketAddr;
use thiserror::Error;

/// A JSON-RPC error object (design.md §1): the protocol codes -32700…-32602, or a
/// command-level 404/500-style code.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{code}: {message}")]
pub struct MiError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl MiError {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;

    pub fn new(code: i64, message: impl Into<String>) -> MiError {
        MiError { code, message: message.into(), data: None }
    }

    pub fn with_data(mut self, data: Value) -> MiError {
        self.data = Some(data);
        self
    }

    /// The body was not JSON.
    pub fn parse_error(reason: impl Into<String>) -> MiError {
        MiError::new(Self::PARSE_ERROR, "Parse error").with_data(Value::String(reason.into()))
    }

    /// JSON, but not a JSON-RPC 2.0 request.
    pub fn invalid_request(reason: impl Into<String>) -> MiError {
        MiError::new(Self::INVALID_REQUEST, "Invalid Request").with_data(Value::String(reason.into()))
    }

    pub fn method_not_found(method: &str) -> MiError {
        MiError::new(Self::METHOD_NOT_FOUND, "Method not found").with_data(Value::String(method.to_string()))
    }

    /// Wrong arity, unknown parameter names, a value of the wrong form; `reason` says which.
    pub fn invalid_params(reason: impl Into<String>) -> MiError {
        MiError::new(Self::INVALID_PARAMS, "Invalid params").with_data(Value::String(reason.into()))
    }

    /// The thing asked about does not exist (a statistic, a command, a destination).
    pub fn not_found(message: impl Into<String>) -> MiError {
        MiError::new(404, message)
    }

    /// The command ran and failed.
    pub fn internal(message: impl Into<String>) -> MiError {
        MiError::new(500, message)
    }
}

/// Why the management interface could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error(
        "management interface: cannot listen on {addr}: {source} (set [mi] listen to a free address, or \"\" to disable it)"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
}
