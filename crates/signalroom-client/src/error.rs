//! What can go wrong in a session or a REST call: [`Error`], each variant saying whether
//! retrying helps.

use signalroom_core::{ConnectionId, EndReason};

use crate::requests::RequestFailure;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from the transport libraries, kept out of the public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a [`Session`](crate::Session) or a
/// [`ServerApi`](crate::ServerApi). Each variant says whether retrying helps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was refused before anything was sent: a malformed token, a signal type or data
    /// over the limits. Retrying the same input will not help.
    #[error(transparent)]
    Invalid(#[from] signalroom_core::Error),

    /// The server refused the request with a JSON-RPC error (e.g. 401 invalid token on
    /// `joinRoom`, 601 unknown recipient on `sendMessage`). Retrying will not help.
    #[error("{method} rejected: {message} (code {code})")]
    Rpc {
        /// The JSON-RPC method.
        method: &'static str,
        /// OpenVidu's error code ([`signalroom_core::jsonrpc::codes`]).
        code: i64,
        /// The server's message.
        message: String,
    },

    /// The server did not answer in time (10 s, 5 s for pings by default). The request may or may
    /// not have been processed; retrying may help but may also repeat it.
    #[error("{method} timed out after {timeout_ms} ms")]
    Timeout {
        /// The JSON-RPC method.
        method: &'static str,
        /// The timeout that expired, in milliseconds.
        timeout_ms: u64,
    },

    /// The WebSocket could not be opened (DNS, TCP, TLS, HTTP upgrade). Retrying may help.
    #[error("cannot open {url}: {source}")]
    Connect {
        /// The WebSocket URL.
        url: String,
        /// What failed.
        #[source]
        source: BoxError,
    },

    /// The socket dropped after the request was written and before the server answered; the
    /// session is reconnecting. The request may or may not have been processed: retrying may
    /// help but may also repeat it.
    #[error("{method}: connection lost before the server answered")]
    ConnectionLost {
        /// The JSON-RPC method.
        method: &'static str,
    },

    /// The session is over: it was left, the participant was evicted, or reconnection failed.
    /// Retrying will not help; join again with a new token.
    #[error("session disconnected ({reason})")]
    Disconnected {
        /// Why the session ended.
        reason: EndReason,
    },

    /// The server answered something this client cannot understand (e.g. a `joinRoom` result
    /// without an `id`). Retrying will not help.
    #[error("unexpected {method} response: {reason}")]
    UnexpectedResponse {
        /// The JSON-RPC method or REST call.
        method: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The REST API answered with an error status (e.g. 404 unknown session, 406 unknown
    /// recipient, 401 wrong secret). Retrying will not help, except for 5xx statuses.
    #[error("server API {status}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The body's `message`, or the body, or the status' reason phrase.
        message: String,
    },

    /// The REST request could not be sent or its response not read (connection refused, TLS,
    /// timeout). Retrying may help.
    #[error("server API request failed: {0}")]
    Http(#[source] BoxError),

    /// A request to another participant ([`Session::request`](crate::Session::request)) got no
    /// reply: `failure` says why, `message` is the other side's (the handler's error). Retrying
    /// may help after a timeout only.
    #[error("request {method:?} to {target}: {failure}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Request {
        /// The method asked.
        method: String,
        /// The participant asked.
        target: ConnectionId,
        /// Why there is no reply.
        failure: RequestFailure,
        /// The other side's message, if any.
        message: String,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Connect { .. } | Error::ConnectionLost { .. } | Error::Http(_) => {
                true
            }
            Error::Api { status, .. } => *status >= 500,
            Error::Request { failure, .. } => *failure == RequestFailure::Timeout,
            Error::Invalid(_)
            | Error::Rpc { .. }
            | Error::Disconnected { .. }
            | Error::UnexpectedResponse { .. } => false,
        }
    }

    /// The JSON-RPC error code, for [`Error::Rpc`].
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            Error::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_readable() {
        let e =
            Error::Rpc { method: "sendMessage", code: 601, message: "Signal \"to\" field invalid".into() };
        assert_eq!(e.to_string(), "sendMessage rejected: Signal \"to\" field invalid (code 601)");
        assert!(!e.is_transient());
        assert_eq!(e.rpc_code(), Some(601));
        let e = Error::Timeout { method: "ping", timeout_ms: 5000 };
        assert_eq!(e.to_string(), "ping timed out after 5000 ms");
        assert!(e.is_transient());
        let e = Error::Disconnected { reason: EndReason::ForceDisconnectByServer };
        assert_eq!(e.to_string(), "session disconnected (forceDisconnectByServer)");
    }
}
