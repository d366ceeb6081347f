//! OpenVidu's JSON-RPC methods and notifications, as typed params and results (spec §3–§4).

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{ConnectionId, RpcSessionId, SessionId};

/// Client → server method names.
pub mod method {
    /// Keep-alive.
    pub const PING: &str = "ping";
    /// Join a session with a token.
    pub const JOIN_ROOM: &str = "joinRoom";
    /// Leave the session.
    pub const LEAVE_ROOM: &str = "leaveRoom";
    /// Send a signal.
    pub const SEND_MESSAGE: &str = "sendMessage";
    /// Re-bind a participant to a new socket after a network blip.
    pub const CONNECT: &str = "connect";
    /// Evict a participant (MODERATOR only).
    pub const FORCE_DISCONNECT: &str = "forceDisconnect";
    /// Unpublish somebody's stream (MODERATOR only; media).
    pub const FORCE_UNPUBLISH: &str = "forceUnpublish";
    /// Liveness probe.
    pub const ECHO: &str = "echo";
    /// Media: publish.
    pub const PUBLISH_VIDEO: &str = "publishVideo";
    /// Media: unpublish.
    pub const UNPUBLISH_VIDEO: &str = "unpublishVideo";
    /// Media: stop subscribing.
    pub const UNSUBSCRIBE_FROM_VIDEO: &str = "unsubscribeFromVideo";
    /// Media: stream property toggles.
    pub const STREAM_PROPERTY_CHANGED: &str = "streamPropertyChanged";
    /// Network-quality bookkeeping.
    pub const VIDEO_DATA: &str = "videoData";
    /// Media: ICE candidate.
    pub const ON_ICE_CANDIDATE: &str = "onIceCandidate";
    /// Media methods answered with "media not supported".
    pub const MEDIA_UNSUPPORTED: &[&str] = &[
        "reconnectStream",
        "prepareReceiveVideoFrom",
        "receiveVideoFrom",
        "applyFilter",
        "removeFilter",
        "execFilterMethod",
        "addFilterEventListener",
        "removeFilterEventListener",
    ];
    /// Pro services answered with "service not enabled".
    pub const PRO_ONLY: &[&str] =
        &["subscribeToSpeechToText", "unsubscribeFromSpeechToText", "sessionStatus"];
}

/// Server → client notification names.
pub mod notification {
    /// A participant joined.
    pub const PARTICIPANT_JOINED: &str = "participantJoined";
    /// A participant left or was evicted.
    pub const PARTICIPANT_LEFT: &str = "participantLeft";
    /// A participant was evicted.
    pub const PARTICIPANT_EVICTED: &str = "participantEvicted";
    /// A signal.
    pub const SEND_MESSAGE: &str = "sendMessage";
    /// A property of the receiver's own connection changed.
    pub const CONNECTION_PROPERTY_CHANGED: &str = "connectionPropertyChanged";
}

/// A participant's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    /// May only receive (and signal).
    Subscriber,
    /// May publish (the default).
    #[default]
    Publisher,
    /// May publish and evict others.
    Moderator,
}

impl Role {
    /// The wire name: `SUBSCRIBER`, `PUBLISHER` or `MODERATOR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Subscriber => "SUBSCRIBER",
            Role::Publisher => "PUBLISHER",
            Role::Moderator => "MODERATOR",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SUBSCRIBER" => Some(Role::Subscriber),
            "PUBLISHER" => Some(Role::Publisher),
            "MODERATOR" => Some(Role::Moderator),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a participant left (OpenVidu `EndReason`). Unknown values are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The participant called `leaveRoom`.
    Disconnect,
    /// A moderator evicted it (RPC `forceDisconnect`).
    ForceDisconnectByUser,
    /// The REST API evicted it.
    ForceDisconnectByServer,
    /// The session was closed through the REST API.
    SessionClosedByServer,
    /// Its link was lost, or it fell too far behind.
    NetworkDisconnect,
    /// The server is stopping.
    OpenviduServerStopped,
    /// Any other reason, verbatim (`""` when unknown).
    Other(String),
}

impl EndReason {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            EndReason::Disconnect => "disconnect",
            EndReason::ForceDisconnectByUser => "forceDisconnectByUser",
            EndReason::ForceDisconnectByServer => "forceDisconnectByServer",
            EndReason::SessionClosedByServer => "sessionClosedByServer",
            EndReason::NetworkDisconnect => "networkDisconnect",
            EndReason::OpenviduServerStopped => "openviduServerStopped",
            EndReason::Other(s) => s,
        }
    }

    /// Parses a wire value.
    pub fn parse(s: &str) -> Self {
        match s {
            "disconnect" => EndReason::Disconnect,
            "forceDisconnectByUser" => EndReason::ForceDisconnectByUser,
            "forceDisconnectByServer" => EndReason::ForceDisconnectByServer,
            "sessionClosedByServer" => EndReason::SessionClosedByServer,
            "networkDisconnect" => EndReason::NetworkDisconnect,
            "openviduServerStopped" => EndReason::OpenviduServerStopped,
            other => EndReason::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EndReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EndReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        Ok(EndReason::parse(&s))
    }
}

/// `ping` params. The first ping of a socket carries the interval; later ones none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PingParams {
    /// Milliseconds between pings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// signalroom's extension: the sequence number of the last notification the client handled.
    /// The server may then forget what it kept for a resume up to there. Other servers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

/// `joinRoom` params, as openvidu-browser 2.32.2 sends them (spec §3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRoomParams {
    /// The whole token string.
    pub token: String,
    /// The session id from the token.
    pub session: String,
    /// Free text describing the client.
    #[serde(default)]
    pub platform: String,
    /// The client library version.
    #[serde(default)]
    pub sdk_version: String,
    /// Client data; becomes the Connection's `clientData`.
    #[serde(default)]
    pub metadata: String,
    /// The server secret, for ad-hoc connections (recorders); `""` normally.
    #[serde(default)]
    pub secret: String,
    /// Hidden recorder participant.
    #[serde(default)]
    pub recorder: bool,
    /// Hidden speech-to-text participant.
    #[serde(default)]
    pub stt: bool,
    /// signalroom's extension: the joiner asks for the session's signal history, in the
    /// answer's `signalHistory` (never sent when `false`, so the request is OpenVidu's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history: bool,
}

/// An existing participant in a `joinRoom` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteParticipant {
    /// Its connection id.
    pub id: ConnectionId,
    /// Its join time (ms since the epoch).
    pub created_at: u64,
    /// Its full metadata ([`full_metadata`]).
    pub metadata: String,
}

/// The `joinRoom` result (spec §3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRoomResult {
    /// The joiner's connection id.
    pub id: ConnectionId,
    /// Opaque "browser user" id.
    #[serde(default)]
    pub final_user_id: String,
    /// Join time (ms since the epoch).
    #[serde(default)]
    pub created_at: u64,
    /// The joiner's full metadata.
    #[serde(default)]
    pub metadata: String,
    /// Existing participants, excluding the joiner.
    pub value: Vec<RemoteParticipant>,
    /// The OpenVidu session id.
    #[serde(default)]
    pub session: Option<SessionId>,
    /// Server version (`2.32.2`).
    pub version: String,
    /// Media server kind (`kurento`).
    #[serde(default)]
    pub media_server: String,
    /// Whether simulcast is on.
    #[serde(default)]
    pub video_simulcast: bool,
    /// Whether the connection is recorded.
    #[serde(default)]
    pub record: bool,
    /// The joiner's role.
    pub role: Role,
    /// The RPC session id, for reconnection.
    pub session_id: RpcSessionId,
    /// signalroom's extension, when the joiner asked (`history`): the signals the session kept,
    /// oldest first, all sent before the join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_history: Option<Vec<crate::history::HistoryEntry>>,
    /// signalroom's extension: the largest WebSocket frame the server accepts, in bytes
    /// (`--max-frame-bytes`). Clients refuse a larger request before sending it. Absent from
    /// other servers: assume OpenVidu's [`DEFAULT_MAX_FRAME_BYTES`](crate::limits::DEFAULT_MAX_FRAME_BYTES).
    /// openvidu-browser ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<u64>,
}

/// `sendMessage` params: the signal as a JSON string (spec §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessageParams<'a> {
    /// The signal object, JSON-encoded.
    #[serde(borrow, deserialize_with = "json_text")]
    pub message: Cow<'a, str>,
}

/// A JSON string's text, read in one pass into one allocation of the right size (or borrowed when
/// it has no escapes). `message` is JSON inside a JSON string, so it always has escapes, and
/// serde_json would unescape it into a buffer that doubles from empty, then copy it out; this is
/// every signal's path. An escape other than the short ones (`\uXXXX`) is left to serde_json.
fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, str>, D::Error> {
    let raw = <&serde_json::value::RawValue>::deserialize(d)?.get();
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return Err(serde::de::Error::invalid_type(serde::de::Unexpected::Other(raw), &"a string"));
    };
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    if let Some(text) = unescape_short(inner) {
        return Ok(Cow::Owned(text));
    }
    serde_json::from_str::<String>(raw).map(Cow::Owned).map_err(serde::de::Error::custom)
}

/// The text of a JSON string's contents (a valid JSON string, quotes stripped) whose escapes are
/// all short ones (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`); `None` otherwise.
fn unescape_short(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escaped = short_escape(*rest.as_bytes().get(at + 1)?)?;
        out.push(escaped);
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// `connect` (reconnection) params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectParams {
    /// The RPC session id received in the `joinRoom` result.
    pub session_id: RpcSessionId,
    /// Always `true`.
    #[serde(default)]
    pub reconnect: bool,
    /// signalroom's extension: the sequence number of the last notification the client handled;
    /// the server replays what followed it. Absent (openvidu-browser): the server replays what it
    /// had queued and not yet written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

/// The `connect` (reconnection) result. OpenVidu answers `value` and `sessionId`; signalroom adds
/// `recovered` and `replayed`, which openvidu-browser ignores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectResult {
    /// `"reconnection successful"`.
    #[serde(default)]
    pub value: String,
    /// The RPC session id (unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<RpcSessionId>,
    /// Whether every notification after the client's `lastSeq` was replayed: nothing was lost.
    /// `None` from servers that do not resume (OpenVidu).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// How many notifications were replayed before the live ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
}

/// `forceDisconnect` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForceDisconnectParams {
    /// The participant to evict.
    pub connection_id: ConnectionId,
}

/// `participantJoined` params.
pub type ParticipantJoined = RemoteParticipant;

/// `participantLeft` and `participantEvicted` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantLeft {
    /// Who left.
    pub connection_id: ConnectionId,
    /// Why.
    #[serde(default = "unknown_reason")]
    pub reason: EndReason,
}

fn unknown_reason() -> EndReason {
    EndReason::Other(String::new())
}

/// `sendMessage` notification params: a signal as received. Absent keys stay absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalNotification<'a> {
    /// The data.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub data: Option<Cow<'a, str>>,
    /// The wire type, e.g. `signal:chat`.
    #[serde(default, borrow, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Cow<'a, str>>,
    /// The sender; absent for server-sent signals.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub from: Option<Cow<'a, str>>,
}

impl SignalNotification<'_> {
    /// The whole `sendMessage` notification with sequence number `seq`: the same text as
    /// [`crate::jsonrpc::Notification::with_seq`] serialises, written without serde's struct
    /// machinery (every signal is serialised once for its fan-out; each string still goes
    /// through serde_json's escaping).
    pub fn notification_json(&self, seq: u64) -> String {
        use std::io::Write as _;
        let fields = [("data", &self.data), ("type", &self.kind), ("from", &self.from)];
        let len: usize = fields.iter().filter_map(|(_, v)| v.as_ref()).map(|v| v.len() + 10).sum();
        let mut out = Vec::with_capacity(len + 96);
        for piece in [r#"{"jsonrpc":"2.0","method":""#, notification::SEND_MESSAGE, r#"","params":{"#] {
            out.extend_from_slice(piece.as_bytes());
        }
        let mut first = true;
        for (key, value) in fields {
            let Some(value) = value else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            serde_json::to_writer(&mut out, value.as_ref()).expect("a string serialises");
        }
        write!(out, r#"}},"seq":{seq}}}"#).expect("a Vec takes every byte");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

/// `connectionPropertyChanged` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPropertyChanged {
    /// `role` or `record`.
    pub property: String,
    /// The new value, as a string.
    pub new_value: String,
}

/// The "full metadata" rule: `clientData` alone, `serverData` alone, or both joined by `%/%`.
pub fn full_metadata(client_data: &str, server_data: &str) -> String {
    FullMetadata(client_data, server_data).to_string()
}

/// A participant's full metadata (client data, server data), by [`full_metadata`]'s rule, without
/// making the string: displayed, or serialised as a JSON string.
#[derive(Debug, Clone, Copy)]
pub struct FullMetadata<'a>(pub &'a str, pub &'a str);

impl std::fmt::Display for FullMetadata<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0.is_empty(), self.1.is_empty()) {
            (_, true) => f.write_str(self.0),
            (true, false) => f.write_str(self.1),
            (false, false) => write!(f, "{}%/%{}", self.0, self.1),
        }
    }
}

impl Serialize for FullMetadata<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The character a JSON short escape (`\\` and this byte) stands for; `None` for `u` (four hex
/// digits follow) and anything JSON does not allow there.
#[inline]
pub(crate) fn short_escape(byte: u8) -> Option<char> {
    Some(match byte {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_signal_notification_is_written_as_serde_writes_it() {
        let texts = [None, Some(""), Some("plain"), Some("quotes \" \\ / \u{1} \n é 😀 \u{7f}")];
        for data in texts {
            for kind in [None, Some("signal:chat"), Some("signal:\"odd\"")] {
                for from in [None, Some("con_AbC123")] {
                    let n = SignalNotification {
                        data: data.map(Cow::Borrowed),
                        kind: kind.map(Cow::Borrowed),
                        from: from.map(Cow::Borrowed),
                    };
                    for seq in [0, 7, u64::MAX] {
                        let serde = crate::jsonrpc::Notification::with_seq("sendMessage", &n, seq).to_json();
                        assert_eq!(n.notification_json(seq), serde);
                    }
                }
            }
        }
    }

    #[test]
    fn a_signal_message_is_read_as_serde_json_reads_a_string() {
        let texts = [
            "",
            "plain",
            r#"{"to":[],"data":"hi","type":"signal:chat"}"#,
            "quotes \" and \\ backslashes / slashes",
            "controls \u{8}\u{c}\n\r\t and \u{1} \u{1f}",
            "unicode é ✓ 😀 and \u{2028}",
            "\\\\\"\"",
        ];
        for text in texts {
            // As a client writes it, and with every character escaped as `\uXXXX`.
            let plain = serde_json::to_string(&json!({ "message": text })).unwrap();
            let escaped: String = text.encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
            let all = format!(r#"{{"message":"{escaped}"}}"#);
            for params in [plain, all] {
                let p: SendMessageParams<'_> = serde_json::from_str(&params).unwrap();
                assert_eq!(p.message, text, "{params}");
            }
        }
        let unescaped: SendMessageParams<'_> = serde_json::from_str(r#"{"message":"abc"}"#).unwrap();
        assert!(matches!(unescaped.message, Cow::Borrowed("abc")));
        for bad in [r#"{"message":null}"#, r#"{"message":1}"#, r#"{"message":{}}"#, r#"{}"#] {
            assert!(serde_json::from_str::<SendMessageParams<'_>>(bad).is_err(), "{bad}");
        }
        // A lone surrogate is serde_json's error, as before.
        assert!(serde_json::from_str::<SendMessageParams<'_>>(r#"{"message":"\ud800"}"#).is_err());
    }

    #[test]
    fn join_room_params_from_the_real_client() {
        let p: JoinRoomParams = serde_json::from_value(json!({
            "token":"ws://127.0.0.1:18443?sessionId=S1&token=tok_B","session":"S1",
            "platform":"Node.js 20.20.2 on Linux 64-bit","sdkVersion":"2.32.2","metadata":"bob-data",
            "secret":"","recorder":false,"stt":false}))
        .unwrap();
        assert_eq!(p.session, "S1");
        assert_eq!(p.sdk_version, "2.32.2");
        assert_eq!(p.metadata, "bob-data");
    }

    #[test]
    fn join_room_result_from_real_openvidu_parses() {
        let r: JoinRoomResult = serde_json::from_value(json!({
            "id":"con_T2","finalUserId":"97061F3F73313C3E","createdAt":1700000001000u64,
            "metadata":"bob-client-data%/%bob-server-data",
            "value":[{"id":"con_T1","createdAt":1700000000000u64,"metadata":"{\"name\":\"alice\"}"}],
            "session":"S1","version":"2.32.2","mediaServer":"kurento","videoSimulcast":false,
            "record":true,"role":"PUBLISHER","coturnIp":"203.0.113.7","coturnPort":3478,
            "turnUsername":"1700086400:abc","turnCredential":"xyz",
            "customIceServers":[{"url":"turn:203.0.113.7:3478","username":"1700086400:abc","credential":"xyz"}],
            "sessionId":"4aktv8cfkhe2ooksplqg0c8v80"}))
        .unwrap();
        assert_eq!(r.id, "con_T2");
        assert_eq!(r.value[0].id, "con_T1");
        assert_eq!(r.role, Role::Publisher);
        assert_eq!(r.session_id, "4aktv8cfkhe2ooksplqg0c8v80");
    }

    #[test]
    fn signal_notification_omits_absent_keys() {
        let n = SignalNotification { data: Some("hi".into()), kind: Some("signal:chat".into()), from: None };
        assert_eq!(serde_json::to_string(&n).unwrap(), r#"{"data":"hi","type":"signal:chat"}"#);
    }

    #[test]
    fn end_reason_round_trips_and_keeps_unknown_values() {
        let l: ParticipantLeft =
            serde_json::from_str(r#"{"connectionId":"con_A","reason":"nodeCrashed"}"#).unwrap();
        assert_eq!(l.reason, EndReason::Other("nodeCrashed".into()));
        let l: ParticipantLeft =
            serde_json::from_str(r#"{"connectionId":"con_A","reason":"forceDisconnectByServer"}"#).unwrap();
        assert_eq!(l.reason, EndReason::ForceDisconnectByServer);
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"connectionId":"con_A","reason":"forceDisconnectByServer"}"#
        );
    }

    #[test]
    fn full_metadata_rule() {
        assert_eq!(full_metadata("c", ""), "c");
        assert_eq!(full_metadata("", "s"), "s");
        assert_eq!(full_metadata("c", "s"), "c%/%s");
        assert_eq!(full_metadata("", ""), "");
    }
}
