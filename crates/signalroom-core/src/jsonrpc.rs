//! JSON-RPC 2.0 frames as OpenVidu (Kurento's JSON-RPC layer) uses them.
//!
//! Inbound frames are parsed into [`Frame`], which borrows from the text and keeps `params`,
//! `result` and `id` as raw JSON so that a frame is parsed once and each method parses only its
//! own params. Outbound frames are built with [`Response`], [`ErrorResponse`] and
//! [`Notification`], which always carry `"jsonrpc":"2.0"` (openvidu-browser drops frames without).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// JSON-RPC error codes used by OpenVidu, plus the standard ones.
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid or missing method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Unexpected server error (OpenVidu: a Java exception).
    pub const GENERIC: i64 = -1;
    /// Connection not found (`forceDisconnect` of an unknown connection).
    pub const USER_NOT_FOUND: i64 = 102;
    /// Stream not found.
    pub const USER_NOT_STREAMING: i64 = 105;
    /// Session does not exist.
    pub const ROOM_NOT_FOUND: i64 = 202;
    /// Session is closed or closing.
    pub const ROOM_CLOSED: i64 = 203;
    /// Session could not be created.
    pub const ROOM_CANNOT_BE_CREATED: i64 = 204;
    /// Media is not supported (signalling-only server).
    pub const MEDIA_NOT_SUPPORTED: i64 = 301;
    /// Token invalid or already used; or the role forbids the operation.
    pub const TOKEN_INVALID: i64 = 401;
    /// Signal object is not valid JSON, or `to` is not an array.
    pub const SIGNAL_FORMAT_INVALID: i64 = 600;
    /// Signal `to` contains an unknown or null recipient.
    pub const SIGNAL_TO_INVALID: i64 = 601;
    /// signalroom's: the server's signal hook refused the signal (the message is its reason).
    pub const SIGNAL_REFUSED: i64 = 602;
    /// A method other than ping/connect called before a successful joinRoom.
    pub const USER_METADATA_FORMAT_INVALID_OR_NOT_JOINED: i64 = 803;
    /// Pro service not enabled.
    pub const SERVICE_NOT_ENABLED: i64 = 996;
    /// Generic error.
    pub const GENERIC_ERROR: i64 = 999;
    /// Reconnection with an unknown RPC session id.
    pub const RECONNECTION_ERROR: i64 = 40007;
}

/// The mandatory `jsonrpc` member.
pub const VERSION: &str = "2.0";

/// A request id. openvidu-browser sends integers starting at 0; any JSON-RPC id is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id.
    Number(i64),
    /// A string id.
    String(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// Any inbound JSON-RPC frame: a request, a notification, or a response. Borrowed from the text.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    /// Must be `"2.0"` on a request.
    #[serde(default, borrow)]
    pub jsonrpc: Option<&'a str>,
    /// Raw id; `None` for notifications (an explicit `"id":null` is kept, as `null`: JSON-RPC 2.0
    /// makes that an invalid request, not a notification).
    #[serde(default, borrow, deserialize_with = "present")]
    pub id: Option<&'a RawValue>,
    /// The method of a request or notification.
    #[serde(default, borrow)]
    pub method: Option<std::borrow::Cow<'a, str>>,
    /// Raw params.
    #[serde(default, borrow)]
    pub params: Option<&'a RawValue>,
    /// Raw result of a response.
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    /// Error of a response.
    #[serde(default)]
    pub error: Option<ErrorObject>,
    /// signalroom's one wire extension: the sequence number of a server notification
    /// ([`Notification::with_seq`]). Absent on every other frame, and from other servers.
    #[serde(default)]
    pub seq: Option<u64>,
}

/// A member that is present, whatever its value (`null` included): for an optional raw member
/// that tells `null` from absent (`#[serde(default, borrow, deserialize_with = "present")]`).
pub fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

impl<'a> Frame<'a> {
    /// Parses a text frame.
    pub fn parse(text: &'a str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// The id as a typed [`Id`], if it is a number or a string.
    pub fn typed_id(&self) -> Option<Id> {
        self.id.and_then(|raw| serde_json::from_str(raw.get()).ok())
    }

    /// Parses `params` as `T`; absent params parse as `{}`.
    pub fn params<T: Deserialize<'a>>(&self) -> serde_json::Result<T> {
        match self.params {
            Some(raw) if raw.get() != "null" => serde_json::from_str(raw.get()),
            _ => serde_json::from_str("{}"),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// OpenVidu error code ([`codes`]).
    pub code: i64,
    /// A message a person understands.
    pub message: String,
    /// Optional details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ErrorObject {
    /// An error with a code and a message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// An outbound request (client side).
#[derive(Debug, Serialize)]
pub struct Request<'a, P: Serialize> {
    /// Always `"2.0"`.
    pub jsonrpc: &'static str,
    /// Method name.
    pub method: &'a str,
    /// Params; omitted when `None`, as openvidu-browser does for pings after the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<P>,
    /// Request id.
    pub id: u64,
}

impl<'a, P: Serialize> Request<'a, P> {
    /// A request.
    pub fn new(id: u64, method: &'a str, params: Option<P>) -> Self {
        Self { jsonrpc: VERSION, method, params, id }
    }
}

/// An outbound successful response. `id` is the raw id of the request, echoed verbatim.
#[derive(Debug, Serialize)]
pub struct Response<'a, R: Serialize> {
    /// Always `"2.0"`.
    pub jsonrpc: &'static str,
    /// The request's id.
    pub id: &'a RawValue,
    /// The result.
    pub result: R,
}

impl<'a, R: Serialize> Response<'a, R> {
    /// A response to the request with this raw id.
    pub fn new(id: &'a RawValue, result: R) -> Self {
        Self { jsonrpc: VERSION, id, result }
    }

    /// Serialises the response.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("responses serialise")
    }
}

/// An outbound error response. `id` is `null` when the request's id could not be read.
#[derive(Debug, Serialize)]
pub struct ErrorResponse<'a> {
    /// Always `"2.0"`.
    pub jsonrpc: &'static str,
    /// The request's id, or `null`.
    pub id: Option<&'a RawValue>,
    /// The error.
    pub error: &'a ErrorObject,
}

impl<'a> ErrorResponse<'a> {
    /// An error response.
    pub fn new(id: Option<&'a RawValue>, error: &'a ErrorObject) -> Self {
        Self { jsonrpc: VERSION, id, error }
    }

    /// Serialises the response.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("responses serialise")
    }
}

/// The first capacity of a serialised notification (`participantJoined` and the like are
/// 130–250 bytes).
const NOTIFICATION_CAPACITY: usize = 320;

/// An outbound notification (no id).
#[derive(Debug, Serialize)]
pub struct Notification<'a, P: Serialize> {
    /// Always `"2.0"`.
    pub jsonrpc: &'static str,
    /// Method name.
    pub method: &'a str,
    /// Params.
    pub params: P,
    /// signalroom's wire extension: the notification's sequence number. Numbers increase along
    /// the notifications one participant receives (they are the session's, so a fan-out is
    /// serialised once, and may skip values); a client that remembers the last one it handled
    /// resumes after it on reconnection (`lastSeq` in `connect`). A top-level member, which
    /// openvidu-browser's JSON-RPC layer ignores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl<'a, P: Serialize> Notification<'a, P> {
    /// A notification without a sequence number.
    pub fn new(method: &'a str, params: P) -> Self {
        Self { jsonrpc: VERSION, method, params, seq: None }
    }

    /// A notification with a sequence number (see [`Notification::seq`]).
    pub fn with_seq(method: &'a str, params: P, seq: u64) -> Self {
        Self { jsonrpc: VERSION, method, params, seq: Some(seq) }
    }

    /// Serialises the notification, into a buffer of `NOTIFICATION_CAPACITY` (serde_json starts
    /// at 128 bytes, which most notifications outgrow: a reallocation and a copy).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(NOTIFICATION_CAPACITY);
        serde_json::to_writer(&mut out, self).expect("notifications serialise");
        // serde_json writes UTF-8 only.
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_with_and_without_params() {
        let f =
            Frame::parse(r#"{"jsonrpc":"2.0","method":"ping","params":{"interval":5000},"id":0}"#).unwrap();
        assert_eq!(f.method.as_deref(), Some("ping"));
        assert_eq!(f.typed_id(), Some(Id::Number(0)));
        let f = Frame::parse(r#"{"jsonrpc":"2.0","method":"ping","id":2}"#).unwrap();
        assert!(f.params.is_none());
    }

    #[test]
    fn echoes_the_raw_id() {
        let f = Frame::parse(r#"{"jsonrpc":"2.0","method":"x","id":"abc"}"#).unwrap();
        let out = Response::new(f.id.unwrap(), serde_json::json!({})).to_json();
        assert_eq!(out, r#"{"jsonrpc":"2.0","id":"abc","result":{}}"#);
    }

    #[test]
    fn error_response_with_null_id() {
        let e = ErrorObject::new(codes::PARSE_ERROR, "parse error");
        assert_eq!(
            ErrorResponse::new(None, &e).to_json(),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#
        );
    }

    #[test]
    fn a_sequence_number_is_a_trailing_member_read_back_by_the_frame() {
        let text = Notification::with_seq("sendMessage", serde_json::json!({"data":"x"}), 7).to_json();
        assert_eq!(text, r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":"x"},"seq":7}"#);
        assert_eq!(Frame::parse(&text).unwrap().seq, Some(7));
        let plain = Notification::new("sendMessage", serde_json::json!({})).to_json();
        assert!(!plain.contains("seq"));
        assert_eq!(Frame::parse(&plain).unwrap().seq, None);
    }

    #[test]
    fn parses_a_response_with_kurento_quirks() {
        let f = Frame::parse(
            r#"{"jsonrpc":"2.0","id":5,"error":{"code":601,"message":"m","sessionId":"x"},"data":{}}"#,
        )
        .unwrap();
        assert_eq!(f.error.unwrap().code, 601);
    }
}
