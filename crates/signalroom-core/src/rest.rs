//! The JSON objects of OpenVidu's REST API under `/openvidu/api` (spec §6). Every key OpenVidu
//! sends is present, `null` where OpenVidu puts `null`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{ConnectionId, SessionId};
use crate::protocol::Role;

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
