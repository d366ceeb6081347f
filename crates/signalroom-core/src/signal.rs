//! Signals: the message model, validation (spec §5.1) and the routing rule (§5.2).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::ids::{ConnectionId, SessionId};
use crate::limits::{MAX_SIGNAL_RECIPIENTS, MAX_SIGNAL_TYPE_BYTES};
use crate::rest::{BadRequest, opt_str};

/// The prefix openvidu-browser gives every signal type on the wire.
pub const TYPE_PREFIX: &str = "signal:";

/// A signal as a sender submits it: the inner object of `sendMessage.params.message`, or the body
/// of `POST /openvidu/api/signal` without `session`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalMessage {
    /// Recipients as given (may hold duplicates); empty means everybody.
    pub to: Vec<ConnectionId>,
    /// The data, if any. JSON numbers and booleans are stringified, as OpenVidu does.
    pub data: Option<String>,
    /// The wire type, if any, passed through unchanged.
    pub kind: Option<String>,
}

/// A signal whose fields are strings or nulls: [`SignalMessage::parse`]'s fast way.
#[derive(Deserialize)]
struct Plain {
    #[serde(default)]
    to: Option<Vec<ConnectionId>>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl SignalMessage {
    /// Parses and validates the JSON text of a signal (the `message` param of `sendMessage`).
    ///
    /// Errors: not a JSON object, or `to` not an array → [`Error::SignalFormat`] (600);
    /// a `null` or non-string `to` entry → [`Error::SignalRecipients`] (601); `data` or `type`
    /// an object or array → [`Error::InvalidField`] (600); `data` too large → [`Error::DataTooLarge`].
    pub fn parse(message: &str, max_data_bytes: usize) -> Result<Self> {
        // The usual signal (strings, or nulls) is read straight into its typed fields, without a
        // `Value` (a map, and a string per key and value); anything else (numbers to stringify,
        // wrong types, duplicate keys, bad JSON) takes the general way below, which gives the
        // same result or the precise error.
        // (Only for an object: serde would also read a struct from an array.)
        let object = message.trim_start().starts_with('{');
        if let Some(plain) = object.then(|| serde_json::from_str::<Plain>(message).ok()).flatten() {
            let Plain { to, data, kind } = plain;
            if to.as_ref().is_none_or(|to| to.len() <= MAX_SIGNAL_RECIPIENTS) {
                if let Some(d) = &data {
                    check_data(d, max_data_bytes)?;
                }
                if let Some(k) = &kind {
                    check_type(k)?;
                }
                return Ok(Self { to: to.unwrap_or_default(), data, kind });
            }
        }
        let value: Value = serde_json::from_str(message).map_err(|e| Error::SignalFormat {
            message: message.to_owned(),
            reason: format!("not JSON ({e})"),
        })?;
        let Value::Object(obj) = value else {
            return Err(Error::SignalFormat {
                message: message.to_owned(),
                reason: "not a JSON object".to_owned(),
            });
        };
        Self::from_object(&obj, message, max_data_bytes)
    }

    /// Validates a signal given as a JSON object. `original` is quoted in error messages.
    pub fn from_object(obj: &Map<String, Value>, original: &str, max_data_bytes: usize) -> Result<Self> {
        let to = match obj.get("to") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > MAX_SIGNAL_RECIPIENTS {
                    return Err(Error::SignalRecipients {
                        reason: format!(
                            "{} recipients, over the limit of {MAX_SIGNAL_RECIPIENTS}",
                            items.len()
                        ),
                    });
                }
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(ConnectionId::from(s.as_str())),
                        Value::Null => {
                            Err(Error::SignalRecipients { reason: "\"to\" contains null".to_owned() })
                        }
                        other => Err(Error::SignalRecipients {
                            reason: format!("\"to\" entry {other} is not a connection id string"),
                        }),
                    })
                    .collect::<Result<_>>()?
            }
            Some(other) => {
                return Err(Error::SignalFormat {
                    message: original.to_owned(),
                    reason: format!("\"to\" must be an array, not {}", json_kind(other)),
                });
            }
        };
        let data = scalar_as_string(obj.get("data"), "data")?;
        if let Some(d) = &data {
            check_data(d, max_data_bytes)?;
        }
        let kind = scalar_as_string(obj.get("type"), "type")?;
        if let Some(k) = &kind {
            check_type(k)?;
        }
        Ok(Self { to, data, kind })
    }
}

fn scalar_as_string(value: Option<&Value>, field: &'static str) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(other) => {
            Err(Error::InvalidField { field, reason: format!("must be a string, not {}", json_kind(other)) })
        }
    }
}

/// Checks a signal's data: at most `max_data_bytes` bytes (UTF-8), else [`Error::DataTooLarge`].
pub fn check_data(data: &str, max_data_bytes: usize) -> Result<()> {
    if data.len() > max_data_bytes {
        return Err(Error::DataTooLarge { size: data.len(), limit: max_data_bytes });
    }
    Ok(())
}

/// A signal sent through the REST API: the body of `POST /openvidu/api/signal`, validated (the
/// server's side of [`crate::rest::SignalRequest`], which is what a client sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRequest {
    /// `session`: the session to signal in. The server answers 404 (empty body) when it does not
    /// exist, 406 (empty body) when nobody has joined it yet.
    pub session: SessionId,
    /// `to` without its `null` entries; empty = everybody. An id that is not a joined participant
    /// refuses the whole signal: 406 with [`SignalRequestError::NoValidRecipients`]'s message.
    pub to: Vec<ConnectionId>,
    /// `type`, passed through unchanged.
    pub kind: Option<String>,
    /// `data`.
    pub data: Option<String>,
    /// Whether `to` held a `null`.
    null_recipient: bool,
}

/// Why `POST /openvidu/api/signal` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalRequestError {
    /// The body is malformed: 400 with this message. Retrying will not help.
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    /// A recipient is `null` or not a joined participant: 406 with this message; nothing is
    /// delivered. Retrying helps only once the recipients have joined.
    #[error("\"to\" array has no valid connection identifiers")]
    NoValidRecipients,
}

impl SignalRequest {
    /// Validates a body object (`null` values count as absent), as OpenVidu checks it, in this
    /// order; each refusal is a 400 [`SignalRequestError::BadRequest`]:
    /// `Parameter 'session' is mandatory`, `Parameter 'session' must be a string, not <kind>`,
    /// `Parameter 'to' must be an array, not <kind>`, `Parameter 'to' must be an array of
    /// connection id strings, but holds <kind>`, `Parameter 'type' must be a string, not <kind>`,
    /// `Parameter 'data' must be a string, not <kind>`, `Parameter 'type' is wrong: <why>`
    /// ([`check_type`]), `Parameter 'data' is <n> bytes, over the limit of <max> bytes`
    /// ([`check_data`]). A `null` recipient is not refused here but by [`SignalRequest::recipients`],
    /// after the session is found, as OpenVidu does. An empty body is the server's to refuse
    /// (`request body is missing: send a JSON object with at least 'session'`).
    pub fn from_body(body: &Map<String, Value>, max_data_bytes: usize) -> Result<Self, SignalRequestError> {
        let bad = |m: String| SignalRequestError::BadRequest(BadRequest(m));
        let session = match body.get("session").filter(|v| !v.is_null()) {
            Some(Value::String(s)) => SessionId::from(s.as_str()),
            None => return Err(bad("Parameter 'session' is mandatory".to_owned())),
            Some(other) => {
                return Err(bad(format!("Parameter 'session' must be a string, not {}", json_kind(other))));
            }
        };
        let mut null_recipient = false;
        let to = match body.get("to").filter(|v| !v.is_null()) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut to = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => to.push(ConnectionId::from(s.as_str())),
                        Value::Null => null_recipient = true,
                        other => {
                            return Err(bad(format!(
                                "Parameter 'to' must be an array of connection id strings, but holds {}",
                                json_kind(other)
                            )));
                        }
                    }
                }
                to
            }
            Some(other) => {
                return Err(bad(format!("Parameter 'to' must be an array, not {}", json_kind(other))));
            }
        };
        let kind = opt_str(body, "type")?;
        let data = opt_str(body, "data")?;
        if let Some(kind) = kind {
            check_type(kind).map_err(|e| bad(format!("Parameter 'type' is wrong: {e}")))?;
        }
        if let Some(data) = data {
            check_data(data, max_data_bytes).map_err(|_| {
                bad(format!(
                    "Parameter 'data' is {} bytes, over the limit of {max_data_bytes} bytes",
                    data.len()
                ))
            })?;
        }
        Ok(Self { session, to, kind: kind.map(str::to_owned), data: data.map(str::to_owned), null_recipient })
    }

    /// The recipients to [`route`] once the session is known to exist and be active; a `null`
    /// recipient is [`SignalRequestError::NoValidRecipients`] (406). So is a failed [`route`].
    pub fn recipients(&self) -> std::result::Result<&[ConnectionId], SignalRequestError> {
        if self.null_recipient { Err(SignalRequestError::NoValidRecipients) } else { Ok(&self.to) }
    }
}

/// Checks a signal type: at most [`MAX_SIGNAL_TYPE_BYTES`] bytes not counting the `signal:`
/// prefix (the type a sender writes, `chat`, may be as long with or without it), no control
/// characters.
pub fn check_type(kind: &str) -> Result<()> {
    let size = user_type(kind).len();
    if size > MAX_SIGNAL_TYPE_BYTES {
        return Err(Error::InvalidField {
            field: "type",
            reason: format!("{size} bytes, over the limit of {MAX_SIGNAL_TYPE_BYTES}"),
        });
    }
    if kind.chars().any(char::is_control) {
        return Err(Error::InvalidField { field: "type", reason: "contains control characters".to_owned() });
    }
    Ok(())
}

/// The name of a JSON value's kind, for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Who receives a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Every joined participant, the sender included.
    All,
    /// These participants, each once, in the order first named.
    Only(Vec<ConnectionId>),
}

/// The routing rule: an empty `to` is a broadcast; otherwise every entry must be a joined
/// participant (`is_member`), else the whole signal is refused (601) and nothing is delivered.
/// Duplicates are collapsed.
pub fn route(to: &[ConnectionId], is_member: impl Fn(&ConnectionId) -> bool) -> Result<Recipients> {
    if to.is_empty() {
        return Ok(Recipients::All);
    }
    let mut out: Vec<ConnectionId> = Vec::with_capacity(to.len());
    for id in to {
        if !is_member(id) {
            return Err(Error::SignalRecipients {
                reason: format!("connection {id:?} is not a participant of the session"),
            });
        }
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    Ok(Recipients::Only(out))
}

/// A signal a client sends: the type is normalised as openvidu-browser does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// Recipients; empty = broadcast.
    pub to: Vec<ConnectionId>,
    /// The data.
    pub data: String,
    /// The wire type, always `signal:<x>`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl Signal {
    /// A signal of `kind` (with or without the `signal:` prefix; `None` = `signal`) to `to`
    /// (empty = everybody). Checks what every server refuses alike: the type's syntax and the
    /// number of recipients. The data's size is left to the server, whose limit is configured
    /// (`--max-signal-bytes`); over it, the server answers error 600.
    pub fn new(data: impl Into<String>, kind: Option<&str>, to: Vec<ConnectionId>) -> Result<Self> {
        let kind = wire_type(kind.unwrap_or("signal"));
        check_type(&kind)?;
        if to.len() > MAX_SIGNAL_RECIPIENTS {
            return Err(Error::SignalRecipients {
                reason: format!("{} recipients, over the limit of {MAX_SIGNAL_RECIPIENTS}", to.len()),
            });
        }
        Ok(Self { to, data: data.into(), kind })
    }

    /// A broadcast signal.
    pub fn broadcast(kind: &str, data: impl Into<String>) -> Result<Self> {
        Self::new(data, Some(kind), Vec::new())
    }

    /// The inner message JSON that `sendMessage` carries.
    pub fn to_message_json(&self) -> String {
        serde_json::to_string(self).expect("signals serialise")
    }
}

/// The wire type for a user type: `chat` → `signal:chat`; `signal:chat` unchanged.
pub fn wire_type(kind: &str) -> String {
    if kind.starts_with(TYPE_PREFIX) { kind.to_owned() } else { format!("{TYPE_PREFIX}{kind}") }
}

/// The user type of a wire type: `signal:chat` → `chat`; `chat` unchanged.
pub fn user_type(wire: &str) -> &str {
    wire.strip_prefix(TYPE_PREFIX).unwrap_or(wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_way_and_the_general_way_agree() {
        let parse = |m: &str| SignalMessage::parse(m, 1 << 20);
        let plain =
            parse(r#"{"to":["a","b\u0063"],"data":"hi \"x\"","type":"signal:chat","extra":1}"#).unwrap();
        assert_eq!(plain.to, vec![ConnectionId::from("a"), ConnectionId::from("bc")]);
        assert_eq!((plain.data.as_deref(), plain.kind.as_deref()), (Some("hi \"x\""), Some("signal:chat")));
        // What the fast way does not take goes the general way, with its results and errors.
        assert_eq!(parse(r#"{"data":5,"type":true}"#).unwrap().data.as_deref(), Some("5"));
        assert_eq!(parse(r#"{"data":"a","data":"b"}"#).unwrap().data.as_deref(), Some("b"));
        assert!(matches!(parse(r#"[null,"x","y"]"#), Err(Error::SignalFormat { .. })));
        assert!(matches!(parse(r#"{"to":[null]}"#), Err(Error::SignalRecipients { .. })));
        assert!(matches!(parse(r#"{"to":"a"}"#), Err(Error::SignalFormat { .. })));
        assert!(matches!(parse(r#"{"data":{}}"#), Err(Error::InvalidField { .. })));
        assert!(matches!(SignalMessage::parse(r#"{"data":"12345"}"#, 4), Err(Error::DataTooLarge { .. })));
        let many = format!(r#"{{"to":[{}]}}"#, vec![r#""x""#; MAX_SIGNAL_RECIPIENTS + 1].join(","));
        assert!(matches!(parse(&many), Err(Error::SignalRecipients { .. })));
    }

    const MAX: usize = 1024;

    fn ids(v: &[&str]) -> Vec<ConnectionId> {
        v.iter().map(|s| ConnectionId::from(*s)).collect()
    }

    #[test]
    fn parses_the_real_clients_messages() {
        // From spec/fixtures: openvidu-browser 2.32.2, scenario "basic".
        let m = SignalMessage::parse(r#"{"to":[],"data":"hello","type":"signal:my-chat"}"#, MAX).unwrap();
        assert_eq!(
            m,
            SignalMessage { to: vec![], data: Some("hello".into()), kind: Some("signal:my-chat".into()) }
        );
        let m =
            SignalMessage::parse(r#"{"to":["con_T2"],"data":"toB","type":"signal:my-chat"}"#, MAX).unwrap();
        assert_eq!(m.to, ids(&["con_T2"]));
    }

    #[test]
    fn refuses_non_objects_and_bad_to() {
        for bad in ["not json", "[1,2]", "\"x\"", "42"] {
            let e = SignalMessage::parse(bad, MAX).unwrap_err();
            assert_eq!(e.rpc_code(), 600, "{bad}");
        }
        let e = SignalMessage::parse(r#"{"to":"con_A"}"#, MAX).unwrap_err();
        assert_eq!(e.rpc_code(), 600);
        assert!(e.to_string().contains("\"to\" must be an array"), "{e}");
        let e = SignalMessage::parse(r#"{"to":[null]}"#, MAX).unwrap_err();
        assert_eq!(e.rpc_code(), 601);
        let e = SignalMessage::parse(r#"{"to":[7]}"#, MAX).unwrap_err();
        assert_eq!(e.rpc_code(), 601);
    }

    #[test]
    fn stringifies_scalars_and_refuses_objects() {
        let m = SignalMessage::parse(r#"{"data":12,"type":true}"#, MAX).unwrap();
        assert_eq!(m.data.as_deref(), Some("12"));
        assert_eq!(m.kind.as_deref(), Some("true"));
        let e = SignalMessage::parse(r#"{"data":{"a":1}}"#, MAX).unwrap_err();
        assert!(matches!(e, Error::InvalidField { field: "data", .. }));
    }

    #[test]
    fn enforces_the_data_limit() {
        let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(MAX + 1));
        let e = SignalMessage::parse(&big, MAX).unwrap_err();
        assert_eq!(e, Error::DataTooLarge { size: MAX + 1, limit: MAX });
    }

    #[test]
    fn routing_broadcasts_targets_and_rejects_unknown() {
        let roster = ids(&["con_A", "con_B", "con_C"]);
        let member = |id: &ConnectionId| roster.contains(id);
        assert_eq!(route(&[], member).unwrap(), Recipients::All);
        assert_eq!(
            route(&ids(&["con_B", "con_A", "con_B"]), member).unwrap(),
            Recipients::Only(ids(&["con_B", "con_A"]))
        );
        let e = route(&ids(&["con_B", "con_nope"]), member).unwrap_err();
        assert_eq!(e.rpc_code(), 601);
        assert!(e.to_string().contains("con_nope"));
    }

    #[test]
    fn client_signals_are_normalised_like_openvidu_browser() {
        let s = Signal::new("hi", Some("chat"), ids(&["con_A"])).unwrap();
        assert_eq!(s.to_message_json(), r#"{"to":["con_A"],"data":"hi","type":"signal:chat"}"#);
        assert_eq!(Signal::new("", None, vec![]).unwrap().kind, "signal:signal");
        assert_eq!(Signal::new("", Some("signal:x"), vec![]).unwrap().kind, "signal:x");
        assert!(Signal::new("", Some("new\nline"), vec![]).is_err());
        // The data's size is the server's to judge.
        assert!(Signal::new("x".repeat(MAX + 1), None, vec![]).is_ok());
        assert_eq!(user_type("signal:chat"), "chat");
    }

    fn request(v: serde_json::Value) -> std::result::Result<SignalRequest, SignalRequestError> {
        SignalRequest::from_body(v.as_object().unwrap(), 16)
    }

    fn bad_request(v: serde_json::Value) -> String {
        match request(v.clone()) {
            Err(SignalRequestError::BadRequest(BadRequest(m))) => m,
            other => panic!("{v}: {other:?}"),
        }
    }

    #[test]
    fn rest_signal_requests_parse_like_the_server() {
        use serde_json::json;
        let r =
            request(json!({"session":"s1","to":["con_A","con_B"],"type":"signal:chat","data":"hi"})).unwrap();
        assert_eq!(r.session, SessionId::from("s1"));
        assert_eq!(r.recipients().unwrap(), ids(&["con_A", "con_B"]).as_slice());
        assert_eq!((r.kind.as_deref(), r.data.as_deref()), (Some("signal:chat"), Some("hi")));
        let r = request(json!({"session":"s1","to":null,"type":null,"data":null})).unwrap();
        assert!(r.to.is_empty() && r.kind.is_none() && r.data.is_none());
        assert_eq!(
            request(json!({"session":"s1","data":"0123456789abcdef"})).unwrap().data.unwrap().len(),
            16
        );
    }

    #[test]
    fn a_null_recipient_is_refused_as_406_after_parsing() {
        use serde_json::json;
        let r = request(json!({"session":"s1","to":["con_A",null]})).unwrap();
        assert_eq!(r.recipients(), Err(SignalRequestError::NoValidRecipients));
        assert_eq!(
            SignalRequestError::NoValidRecipients.to_string(),
            "\"to\" array has no valid connection identifiers"
        );
    }

    #[test]
    fn rest_signal_requests_refuse_with_the_servers_messages() {
        use serde_json::json;
        for (given, message) in [
            (json!({}), "Parameter 'session' is mandatory"),
            (json!({"session":null,"data":"x"}), "Parameter 'session' is mandatory"),
            (json!({"session":5}), "Parameter 'session' must be a string, not a number"),
            (json!({"session":["s1"]}), "Parameter 'session' must be a string, not an array"),
            (json!({"session":"s1","to":"con_A"}), "Parameter 'to' must be an array, not a string"),
            (json!({"session":"s1","to":{"id":"x"}}), "Parameter 'to' must be an array, not an object"),
            (
                json!({"session":"s1","to":["con_A",true]}),
                "Parameter 'to' must be an array of connection id strings, but holds a boolean",
            ),
            (json!({"session":"s1","type":5}), "Parameter 'type' must be a string, not a number"),
            (json!({"session":"s1","data":{"k":"v"}}), "Parameter 'data' must be a string, not an object"),
            (
                json!({"session":"s1","type":"new\nline"}),
                "Parameter 'type' is wrong: invalid type: contains control characters",
            ),
            (
                json!({"session":"s1","data":"0123456789abcdef!"}),
                "Parameter 'data' is 17 bytes, over the limit of 16 bytes",
            ),
            (
                json!({"session":"s1","data":"ééééééééé"}),
                "Parameter 'data' is 18 bytes, over the limit of 16 bytes",
            ),
        ] {
            assert_eq!(bad_request(given.clone()), message, "{given}");
        }
    }

    #[test]
    fn a_type_may_be_256_bytes_without_its_prefix_whichever_way_it_is_written() {
        let longest = "t".repeat(MAX_SIGNAL_TYPE_BYTES);
        for kind in [longest.clone(), format!("{TYPE_PREFIX}{longest}")] {
            assert!(check_type(&kind).is_ok(), "{} bytes with the prefix", kind.len());
            assert_eq!(Signal::new("", Some(&kind), vec![]).unwrap().kind, format!("signal:{longest}"));
        }
        let over = format!("{longest}t");
        for kind in [over.clone(), format!("{TYPE_PREFIX}{over}")] {
            let error = Signal::new("", Some(&kind), vec![]).unwrap_err().to_string();
            assert!(error.contains("257 bytes, over the limit of 256"), "{error}");
        }
    }
}
