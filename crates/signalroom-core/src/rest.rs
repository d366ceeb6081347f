//! The JSON objects of OpenVidu's REST API under `/openvidu/api` (spec §6). Every key OpenVidu
//! sends is present, `null` where OpenVidu puts `null`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{ConnectionId, SessionId};
use crate::protocol::Role;
use crate::signal::json_kind;

/// The user of the REST API's HTTP Basic authentication: `OPENVIDUAPP:<secret>`. A request
/// without it, or with another user or secret, is answered 401.
pub const BASIC_AUTH_USER: &str = "OPENVIDUAPP";

/// The development secret, used when none is given (servers warn loudly about it).
pub const DEFAULT_SECRET: &str = "MY_SECRET";

/// A request body the REST API refuses: the server answers 400 with this message (in the
/// `message` of its [`ErrorBody`]). Retrying the same body will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// The type of a Connection. Only WebRTC ones exist here: an IP camera needs a media server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConnectionType {
    /// A participant that joins with a token (the only kind signalroom creates).
    #[default]
    #[serde(rename = "WEBRTC")]
    Webrtc,
}

/// The properties of a new Connection, as given to `POST /sessions/{id}/connection`, validated,
/// with OpenVidu's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionProperties {
    /// `type`: `WEBRTC` (the default).
    #[serde(rename = "type")]
    pub kind: ConnectionType,
    /// `data`: the server data participants see (the Connection's `serverData`); default `""`.
    pub data: String,
    /// `record`; default `true`.
    pub record: bool,
    /// `role`; default `PUBLISHER`.
    pub role: Role,
    /// `kurentoOptions` as given, or `null`.
    pub kurento_options: Value,
    /// `customIceServers` as given, or `[]`.
    pub custom_ice_servers: Value,
}

impl Default for ConnectionProperties {
    fn default() -> Self {
        Self {
            kind: ConnectionType::Webrtc,
            data: String::new(),
            record: true,
            role: Role::default(),
            kurento_options: Value::Null,
            custom_ice_servers: Value::Array(Vec::new()),
        }
    }
}

impl ConnectionProperties {
    /// Validates the body of `POST /sessions/{id}/connection` (a JSON object; `null` values count
    /// as absent). A refused body is answered 400 with the [`BadRequest`] message, e.g.
    /// `Parameter 'type' is wrong: IPCAM connections need a media server; signalroom carries
    /// signals only`, `Parameter 'role' is wrong: "BOSS" is not one of ["SUBSCRIBER",
    /// "PUBLISHER", "MODERATOR"]`, `Parameter 'record' must be a boolean, not a string`.
    pub fn from_body(body: &Map<String, Value>) -> Result<Self, BadRequest> {
        let kind = match opt_str(body, "type")? {
            None | Some("WEBRTC") => ConnectionType::Webrtc,
            Some("IPCAM") => {
                return Err(BadRequest(
                    "Parameter 'type' is wrong: IPCAM connections need a media server; signalroom carries signals only"
                        .to_owned(),
                ));
            }
            Some(other) => {
                return Err(BadRequest(format!(
                    "Parameter 'type' is wrong: {other:?} is not WEBRTC or IPCAM"
                )));
            }
        };
        Ok(Self {
            kind,
            role: opt_role(body)?.unwrap_or_default(),
            record: opt_bool(body, "record")?.unwrap_or(true),
            data: opt_str(body, "data")?.unwrap_or("").to_owned(),
            kurento_options: opt_kurento_options(body)?,
            custom_ice_servers: opt_ice_servers(body)?,
        })
    }
}

/// What `PATCH /sessions/{id}/connection/{connectionId}` may change; absent = unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionUpdate {
    /// A new role.
    pub role: Option<Role>,
    /// A new `record`.
    pub record: Option<bool>,
}

impl ConnectionUpdate {
    /// Validates a `PATCH` body, with the messages of [`ConnectionProperties::from_body`] (400).
    pub fn from_body(body: &Map<String, Value>) -> Result<Self, BadRequest> {
        Ok(Self { role: opt_role(body)?, record: opt_bool(body, "record")? })
    }
}

/// A field absent or `null`.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// An optional string field: `Parameter '<key>' must be a string, not <kind>`.
pub fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, BadRequest> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => {
            Err(BadRequest(format!("Parameter '{key}' must be a string, not {}", json_kind(other))))
        }
    }
}

/// An optional boolean field: `Parameter '<key>' must be a boolean, not <kind>`.
pub fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, BadRequest> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => {
            Err(BadRequest(format!("Parameter '{key}' must be a boolean, not {}", json_kind(other))))
        }
    }
}

/// An optional string field with a closed set of values:
/// `Parameter '<key>' is wrong: "<v>" is not one of [...]`.
pub fn opt_enum<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, BadRequest> {
    match opt_str(obj, key)? {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v)),
        Some(v) => Err(BadRequest(format!("Parameter '{key}' is wrong: {v:?} is not one of {allowed:?}"))),
    }
}

impl SessionProperties {
    /// Validates the body of `POST /sessions` (a JSON object; `null` values count as absent),
    /// with OpenVidu's defaults. A refused body is answered 400 with the [`BadRequest`] message,
    /// e.g. `Parameter 'mediaMode' is wrong: "X" is not one of ["ROUTED", "RELAYED"]`,
    /// `Parameter 'customSessionId' is wrong: "a b" must match [a-zA-Z0-9_-]+`.
    pub fn from_body(body: &Map<String, Value>) -> Result<Self, BadRequest> {
        let media_mode = opt_enum(body, "mediaMode", &["ROUTED", "RELAYED"])?.unwrap_or("ROUTED");
        let recording_mode = opt_enum(body, "recordingMode", &["MANUAL", "ALWAYS"])?.unwrap_or("MANUAL");
        let forced_video_codec =
            opt_enum(body, "forcedVideoCodec", &["MEDIA_SERVER_PREFERRED", "NONE", "VP8", "VP9", "H264"])?
                .unwrap_or("MEDIA_SERVER_PREFERRED");
        let allow_transcoding = opt_bool(body, "allowTranscoding")?.unwrap_or(false);
        let recording = match field(body, "defaultRecordingProperties") {
            None => None,
            Some(Value::Object(o)) => Some(o),
            Some(other) => {
                return Err(BadRequest(format!(
                    "Parameter 'defaultRecordingProperties' must be an object, not {}",
                    json_kind(other)
                )));
            }
        };
        let custom = opt_str(body, "customSessionId")?.unwrap_or("");
        if !custom.is_empty() && !crate::SessionId::is_valid_custom(custom) {
            return Err(BadRequest(format!(
                "Parameter 'customSessionId' is wrong: {custom:?} must match [a-zA-Z0-9_-]+"
            )));
        }
        let signal_history = match field(body, "signalHistory") {
            None => None,
            Some(v) => Some(crate::history::SignalHistory::from_value(v)?),
        };
        Ok(Self {
            signal_history,
            media_mode: media_mode.to_owned(),
            recording_mode: recording_mode.to_owned(),
            default_recording_properties: default_recording_properties(recording),
            custom_session_id: custom.to_owned(),
            forced_video_codec: forced_video_codec.to_owned(),
            allow_transcoding,
        })
    }
}

/// The optional `role`: `SUBSCRIBER`, `PUBLISHER` or `MODERATOR`.
pub fn opt_role(obj: &Map<String, Value>) -> Result<Option<Role>, BadRequest> {
    const ALLOWED: [&str; 3] = ["SUBSCRIBER", "PUBLISHER", "MODERATOR"];
    match opt_str(obj, "role")? {
        None => Ok(None),
        Some(v) if ALLOWED.contains(&v) => Ok(Role::parse(v)),
        Some(v) => Err(BadRequest(format!("Parameter 'role' is wrong: {v:?} is not one of {ALLOWED:?}"))),
    }
}

/// The optional `kurentoOptions` (also of `POST /tokens`): an object of OpenVidu's known keys, or
/// `null` when absent.
pub fn opt_kurento_options(obj: &Map<String, Value>) -> Result<Value, BadRequest> {
    match field(obj, "kurentoOptions") {
        None => Ok(Value::Null),
        Some(Value::Object(o)) => {
            for (k, v) in o {
                let ok = match k.as_str() {
                    "videoMaxRecvBandwidth"
                    | "videoMinRecvBandwidth"
                    | "videoMaxSendBandwidth"
                    | "videoMinSendBandwidth" => v.is_i64() || v.is_u64(),
                    "allowedFilters" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                    _ => false,
                };
                if !ok {
                    return Err(BadRequest(format!(
                        "Parameter 'kurentoOptions' is wrong: bad property {k:?}"
                    )));
                }
            }
            Ok(Value::Object(o.clone()))
        }
        Some(other) => {
            Err(BadRequest(format!("Parameter 'kurentoOptions' must be an object, not {}", json_kind(other))))
        }
    }
}

fn opt_ice_servers(obj: &Map<String, Value>) -> Result<Value, BadRequest> {
    let Some(v) = field(obj, "customIceServers") else { return Ok(Value::Array(Vec::new())) };
    let Value::Array(servers) = v else {
        return Err(BadRequest(format!(
            "Parameter 'customIceServers' must be an array, not {}",
            json_kind(v)
        )));
    };
    for (i, server) in servers.iter().enumerate() {
        let bad = |why: &str| BadRequest(format!("Parameter 'customIceServers' is wrong: entry {i} {why}"));
        let s = server.as_object().ok_or_else(|| bad("is not an object"))?;
        let url = s.get("url").and_then(Value::as_str).ok_or_else(|| bad("has no string 'url'"))?;
        let scheme = url.split(':').next().unwrap_or("");
        let has_credentials = s.contains_key("username") || s.contains_key("credential");
        match scheme {
            "turn" | "turns" => {
                if !(s.get("username").is_some_and(Value::is_string)
                    && s.get("credential").is_some_and(Value::is_string))
                {
                    return Err(bad("is a TURN server without 'username' and 'credential'"));
                }
            }
            "stun" | "stuns" => {
                if has_credentials {
                    return Err(bad("is a STUN server with credentials"));
                }
            }
            _ => return Err(bad("has a 'url' whose scheme is not stun, stuns, turn or turns")),
        }
    }
    Ok(v.clone())
}

/// A list: `{"numberOfElements":N,"content":[...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// `content.len()`.
    pub number_of_elements: usize,
    /// The items.
    pub content: Vec<T>,
}

impl<T> Page<T> {
    /// A page holding `content`.
    pub fn new(content: Vec<T>) -> Self {
        Self { number_of_elements: content.len(), content }
    }
}

/// The Session object (spec §6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionObject {
    /// The session id.
    pub id: SessionId,
    /// Always `"session"`.
    pub object: String,
    /// Duplicate of `id` (required by openvidu-node-client).
    pub session_id: SessionId,
    /// Creation time, ms since the epoch.
    pub created_at: u64,
    /// Always `false` (no recording).
    pub recording: bool,
    /// Always `false` (no broadcasting).
    pub broadcasting: bool,
    /// The properties given at creation.
    #[serde(flatten)]
    pub properties: SessionProperties,
    /// Active connections (plus pending ones with `?pendingConnections=true`).
    pub connections: Page<ConnectionObject>,
}

/// A session's properties, as given to `POST /sessions` (with OpenVidu's defaults) and echoed
/// in the Session object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionProperties {
    /// `ROUTED` or `RELAYED`.
    pub media_mode: String,
    /// `MANUAL` or `ALWAYS`.
    pub recording_mode: String,
    /// As given, filled with OpenVidu's defaults.
    pub default_recording_properties: Value,
    /// The custom id given, or `""`.
    pub custom_session_id: String,
    /// Default `MEDIA_SERVER_PREFERRED`.
    pub forced_video_codec: String,
    /// Default `false`.
    pub allow_transcoding: bool,
    /// signalroom's extension: what the session keeps of its signals (absent: nothing, as
    /// OpenVidu).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_history: Option<crate::history::SignalHistory>,
}

/// Whether a Connection has been used to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    /// Created; its token not used yet.
    Pending,
    /// Its participant has joined.
    Active,
}

/// The Connection object (spec §6.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionObject {
    /// The connection id.
    pub id: ConnectionId,
    /// Always `"connection"`.
    pub object: String,
    /// Pending or active.
    pub status: ConnectionStatus,
    /// Duplicate of `id` (openvidu-node-client reads only this).
    pub connection_id: ConnectionId,
    /// The session id.
    pub session_id: SessionId,
    /// Creation (REST) time, ms since the epoch.
    pub created_at: u64,
    /// `WEBRTC`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether recorded.
    pub record: bool,
    /// The role.
    pub role: Role,
    /// As given, or `null`.
    pub kurento_options: Value,
    /// As given, or `[]`.
    pub custom_ice_servers: Value,
    /// IPCAM only: `null`.
    pub rtsp_uri: Option<String>,
    /// IPCAM only: `null`.
    pub adaptative_bitrate: Option<bool>,
    /// IPCAM only: `null`.
    pub only_play_with_subscribers: Option<bool>,
    /// IPCAM only: `null`.
    pub network_cache: Option<i64>,
    /// The `data` given at creation, or `""`.
    pub server_data: String,
    /// The token to join with.
    pub token: String,
    /// Join time, or `null` while pending.
    pub active_at: Option<u64>,
    /// `"unknown"` once active.
    pub location: Option<String>,
    /// The client's IP once active.
    pub ip: Option<String>,
    /// The client's `platform` once active.
    pub platform: Option<String>,
    /// The client's `metadata` once active.
    pub client_data: Option<String>,
    /// `[]` once active (no media).
    pub publishers: Option<Vec<Value>>,
    /// `[]` once active (no media).
    pub subscribers: Option<Vec<Value>>,
}

/// The legacy token object of `POST /openvidu/api/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenObject {
    /// The token.
    pub id: String,
    /// The token again.
    pub token: String,
    /// Creation time.
    pub created_at: u64,
    /// The Connection created for it.
    pub connection_id: ConnectionId,
    /// The session.
    pub session: SessionId,
    /// Server data.
    pub data: String,
    /// The role.
    pub role: Role,
    /// Only when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kurento_options: Option<Value>,
}

/// An error body, as OpenVidu (Spring) writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// ms since the epoch.
    pub timestamp: u64,
    /// The HTTP status.
    pub status: u16,
    /// The status' reason phrase.
    pub error: String,
    /// What went wrong, naming the field.
    pub message: String,
    /// The request path.
    pub path: String,
}

/// The body of `POST /openvidu/api/signal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRequest {
    /// The session.
    pub session: SessionId,
    /// Recipients; absent or empty = everybody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<ConnectionId>>,
    /// The wire type, passed through unchanged (send `signal:<x>`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// OpenVidu's `defaultRecordingProperties` defaults, merged under what the caller gave.
pub fn default_recording_properties(given: Option<&serde_json::Map<String, Value>>) -> Value {
    let individual = given.and_then(|g| g.get("outputMode")).and_then(Value::as_str) == Some("INDIVIDUAL");
    let mut out = serde_json::Map::new();
    out.insert("name".into(), "".into());
    out.insert("hasAudio".into(), true.into());
    out.insert("hasVideo".into(), true.into());
    if individual {
        out.insert("outputMode".into(), "INDIVIDUAL".into());
        out.insert("ignoreFailedStreams".into(), false.into());
    } else {
        out.insert("outputMode".into(), "COMPOSED".into());
        out.insert("recordingLayout".into(), "BEST_FIT".into());
        out.insert("resolution".into(), "1280x720".into());
        out.insert("frameRate".into(), 25.into());
        out.insert("shmSize".into(), 536_870_912u64.into());
    }
    if let Some(given) = given {
        for (k, v) in given {
            if !v.is_null() {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_connection_has_every_key_of_openvidu() {
        let c = ConnectionObject {
            id: "con_X".into(),
            object: "connection".into(),
            status: ConnectionStatus::Pending,
            connection_id: "con_X".into(),
            session_id: "ses_Y".into(),
            created_at: 1,
            kind: "WEBRTC".into(),
            record: true,
            role: Role::Publisher,
            kurento_options: Value::Null,
            custom_ice_servers: Value::Array(vec![]),
            rtsp_uri: None,
            adaptative_bitrate: None,
            only_play_with_subscribers: None,
            network_cache: None,
            server_data: "My Server Data".into(),
            token: "ws://h?sessionId=ses_Y&token=tok_Z".into(),
            active_at: None,
            location: None,
            ip: None,
            platform: None,
            client_data: None,
            publishers: None,
            subscribers: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        let spec: Value = serde_json::from_str(r#"{"id":"con_Xnxg19tonh","object":"connection","status":"pending","connectionId":"con_Xnxg19tonh",
 "sessionId":"ses_YnDaGYNcd7","createdAt":1538481999022,"type":"WEBRTC","record":true,"role":"PUBLISHER",
 "kurentoOptions":null,"customIceServers":[],"rtspUri":null,"adaptativeBitrate":null,
 "onlyPlayWithSubscribers":null,"networkCache":null,"serverData":"My Server Data",
 "token":"wss://ov.example.com?sessionId=ses_YnDaGYNcd7&token=tok_AVe8o7iltWqtijyl",
 "activeAt":null,"location":null,"ip":null,"platform":null,"clientData":null,"publishers":null,"subscribers":null}"#).unwrap();
        let mut ours: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let mut theirs: Vec<_> = spec.as_object().unwrap().keys().cloned().collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
        let back: ConnectionObject = serde_json::from_value(spec).unwrap();
        assert_eq!(back.status, ConnectionStatus::Pending);
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn refusal(v: Value) -> String {
        ConnectionProperties::from_body(&body(v)).unwrap_err().0
    }

    #[test]
    fn session_properties_default_like_openvidu_and_refuse_bad_values() {
        let body = |v: serde_json::Value| v.as_object().unwrap().clone();
        let p = SessionProperties::from_body(&body(serde_json::json!({}))).unwrap();
        assert_eq!((p.media_mode.as_str(), p.recording_mode.as_str()), ("ROUTED", "MANUAL"));
        assert_eq!(p.forced_video_codec, "MEDIA_SERVER_PREFERRED");
        assert_eq!(p.custom_session_id, "");
        let p =
            SessionProperties::from_body(&body(serde_json::json!({"customSessionId": "lobby-1"}))).unwrap();
        assert_eq!(p.custom_session_id, "lobby-1");
        let e = SessionProperties::from_body(&body(serde_json::json!({"mediaMode": "X"}))).unwrap_err();
        assert_eq!(e.0, r#"Parameter 'mediaMode' is wrong: "X" is not one of ["ROUTED", "RELAYED"]"#);
        let e =
            SessionProperties::from_body(&body(serde_json::json!({"customSessionId": "a b"}))).unwrap_err();
        assert_eq!(e.0, r#"Parameter 'customSessionId' is wrong: "a b" must match [a-zA-Z0-9_-]+"#);
        let e =
            SessionProperties::from_body(&body(serde_json::json!({"allowTranscoding": "yes"}))).unwrap_err();
        assert_eq!(e.0, "Parameter 'allowTranscoding' must be a boolean, not a string");
    }

    #[test]
    fn connection_properties_default_like_openvidu() {
        let p = ConnectionProperties::from_body(&Map::new()).unwrap();
        assert_eq!(p, ConnectionProperties::default());
        assert_eq!((p.role, p.record, p.data.as_str()), (Role::Publisher, true, ""));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"WEBRTC","data":"","record":true,"role":"PUBLISHER",
                               "kurentoOptions":null,"customIceServers":[]})
        );
        let nulls = body(serde_json::json!({"type":null,"role":null,"record":null,"data":null}));
        assert_eq!(ConnectionProperties::from_body(&nulls).unwrap(), p);
    }

    #[test]
    fn connection_properties_keep_what_is_given() {
        let ice = serde_json::json!([{"url":"turn:t.example.com","username":"u","credential":"c"},
                                     {"url":"stun:s.example.com"}]);
        let p = ConnectionProperties::from_body(&body(serde_json::json!({
            "type":"WEBRTC","data":"alice","record":false,"role":"MODERATOR",
            "kurentoOptions":{"videoMaxRecvBandwidth":1000,"allowedFilters":["GStreamerFilter"]},
            "customIceServers": ice,
        })))
        .unwrap();
        assert_eq!((p.role, p.record, p.data.as_str()), (Role::Moderator, false, "alice"));
        assert_eq!(p.kurento_options["videoMaxRecvBandwidth"], 1000);
        assert_eq!(p.custom_ice_servers, ice);
    }

    #[test]
    fn connection_properties_refuse_with_the_servers_messages() {
        use serde_json::json;
        for (given, message) in [
            (
                json!({"type":"IPCAM"}),
                "Parameter 'type' is wrong: IPCAM connections need a media server; signalroom carries signals only",
            ),
            (json!({"type":"SIP"}), "Parameter 'type' is wrong: \"SIP\" is not WEBRTC or IPCAM"),
            (json!({"type":5}), "Parameter 'type' must be a string, not a number"),
            (
                json!({"role":"BOSS"}),
                "Parameter 'role' is wrong: \"BOSS\" is not one of [\"SUBSCRIBER\", \"PUBLISHER\", \"MODERATOR\"]",
            ),
            (json!({"record":"yes"}), "Parameter 'record' must be a boolean, not a string"),
            (json!({"data":{}}), "Parameter 'data' must be a string, not an object"),
            (json!({"kurentoOptions":[]}), "Parameter 'kurentoOptions' must be an object, not an array"),
            (json!({"kurentoOptions":{"x":1}}), "Parameter 'kurentoOptions' is wrong: bad property \"x\""),
            (
                json!({"kurentoOptions":{"videoMaxRecvBandwidth":"1"}}),
                "Parameter 'kurentoOptions' is wrong: bad property \"videoMaxRecvBandwidth\"",
            ),
            (json!({"customIceServers":{}}), "Parameter 'customIceServers' must be an array, not an object"),
            (
                json!({"customIceServers":[1]}),
                "Parameter 'customIceServers' is wrong: entry 0 is not an object",
            ),
            (
                json!({"customIceServers":[{}]}),
                "Parameter 'customIceServers' is wrong: entry 0 has no string 'url'",
            ),
            (
                json!({"customIceServers":[{"url":"stun:s"},{"url":"turn:t"}]}),
                "Parameter 'customIceServers' is wrong: entry 1 is a TURN server without 'username' and 'credential'",
            ),
            (
                json!({"customIceServers":[{"url":"stun:s","username":"u"}]}),
                "Parameter 'customIceServers' is wrong: entry 0 is a STUN server with credentials",
            ),
            (
                json!({"customIceServers":[{"url":"http://x"}]}),
                "Parameter 'customIceServers' is wrong: entry 0 has a 'url' whose scheme is not stun, stuns, turn or turns",
            ),
        ] {
            assert_eq!(refusal(given.clone()), message, "{given}");
        }
    }

    #[test]
    fn connection_updates_take_role_and_record() {
        let u = ConnectionUpdate::from_body(&body(serde_json::json!({"role":"SUBSCRIBER"}))).unwrap();
        assert_eq!(u, ConnectionUpdate { role: Some(Role::Subscriber), record: None });
        assert!(ConnectionUpdate::from_body(&body(serde_json::json!({"record":1}))).is_err());
    }

    #[test]
    fn recording_defaults_follow_output_mode() {
        let d = default_recording_properties(None);
        assert_eq!(d["resolution"], "1280x720");
        let given = serde_json::json!({"outputMode":"INDIVIDUAL","name":"n"});
        let d = default_recording_properties(given.as_object());
        assert_eq!(d["ignoreFailedStreams"], false);
        assert!(d.get("resolution").is_none());
        assert_eq!(d["name"], "n");
    }
}
