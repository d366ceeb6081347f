//! The REST API under `/openvidu/api` (spec §6, §7), over real HTTP against a real server.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Peer, SECRET, TestServer, WAIT};

// ---- helpers ---------------------------------------------------------------------------------

/// Every key of OpenVidu's Session object (spec §6.2).
const SESSION_KEYS: &[&str] = &[
    "allowTranscoding",
    "broadcasting",
    "connections",
    "createdAt",
    "customSessionId",
    "defaultRecordingProperties",
    "forcedVideoCodec",
    "id",
    "mediaMode",
    "object",
    "recording",
    "recordingMode",
    "sessionId",
];

/// Every key of OpenVidu's Connection object (spec §6.3).
const CONNECTION_KEYS: &[&str] = &[
    "activeAt",
    "adaptativeBitrate",
    "clientData",
    "connectionId",
    "createdAt",
    "customIceServers",
    "id",
    "ip",
    "kurentoOptions",
    "location",
    "networkCache",
    "object",
    "onlyPlayWithSubscribers",
    "platform",
    "publishers",
    "record",
    "role",
    "rtspUri",
    "serverData",
    "sessionId",
    "status",
    "subscribers",
    "token",
    "type",
];

/// Keys of the error body (spec §6.1).
const ERROR_KEYS: &[&str] = &["error", "message", "path", "status", "timestamp"];

/// How a raw request authenticates.
#[derive(Clone, Copy)]
enum Auth {
    Good,
    Anonymous,
    Basic(&'static str, &'static str),
}

/// A response as received: status, headers and the body text.
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header"))
    }
}

/// A request with full control over body and credentials. A `Some` body is sent verbatim with
/// `Content-Type: application/json`.
async fn raw(ts: &TestServer, method: Method, path: &str, body: Option<&str>, auth: Auth) -> Raw {
    let mut req = ts.http.request(method, ts.api(path));
    match auth {
        Auth::Good => req = req.basic_auth("OPENVIDUAPP", Some(SECRET)),
        Auth::Anonymous => {}
        Auth::Basic(user, secret) => req = req.basic_auth(user, Some(secret)),
    }
    if let Some(b) = body {
        req = req.header(header::CONTENT_TYPE, "application/json").body(b.to_owned());
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body read");
    Raw { status, headers, text }
}

/// A JSON request with good credentials, keeping headers.
async fn call(ts: &TestServer, method: Method, path: &str, body: Option<Value>) -> Raw {
    let text = body.map(|b| b.to_string());
    raw(ts, method, path, text.as_deref(), Auth::Good).await
}

fn sorted_keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> =
        v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// A 200 with a JSON body.
fn ok_json(r: &Raw) -> Value {
    assert_eq!(r.status, StatusCode::OK, "body: {}", r.text);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "Content-Type {ct:?}");
    r.json()
}

/// A response with this status and no body at all.
fn assert_empty(r: &Raw, status: StatusCode) {
    assert_eq!(r.status, status, "body: {}", r.text);
    assert_eq!(r.text, "", "the body must be empty");
}

/// An error response with OpenVidu's JSON error body, whose message mentions `needle`.
fn assert_error(r: &Raw, status: StatusCode, path: &str, needle: &str) -> Value {
    assert_eq!(r.status, status, "body: {}", r.text);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "Content-Type {ct:?}");
    let b = r.json();
    assert_eq!(sorted_keys(&b), ERROR_KEYS, "{b}");
    assert_eq!(b["status"], status.as_u16(), "{b}");
    assert_eq!(b["error"], status.canonical_reason().unwrap(), "{b}");
    assert_eq!(b["path"], format!("/openvidu/api{path}"), "{b}");
    let ts = b["timestamp"].as_u64().expect("numeric timestamp");
    assert!(ts.abs_diff(now_ms()) < 60_000, "timestamp {ts} is not now");
    let message = b["message"].as_str().expect("string message");
    assert!(message.contains(needle), "message {message:?} does not mention {needle:?}");
    b
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `prefix` + one uppercase letter + `len - 1` alphanumerics (spec §0).
fn assert_id_shape(id: &str, prefix: &str, len: usize) {
    let rest = id.strip_prefix(prefix).unwrap_or_else(|| panic!("{id:?} does not start with {prefix}"));
    assert_eq!(rest.len(), len, "{id:?}");
    assert!(rest.as_bytes()[0].is_ascii_uppercase(), "{id:?}");
    assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric()), "{id:?}");
}

fn port(ts: &TestServer) -> u16 {
    ts.port()
}

/// Asserts the token format `ws://127.0.0.1:<port>?sessionId=<session>&token=tok_<16>`.
fn assert_token(ts: &TestServer, token: &str, session: &str) {
    let prefix = format!("ws://127.0.0.1:{}?sessionId={session}&token=", port(ts));
    let tok = token
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("token {token:?} does not start with {prefix:?}"));
    assert_id_shape(tok, "tok_", 16);
}

/// A Session object with default properties and no connections listed.
fn assert_default_session(s: &Value, id: &str, custom: &str) {
    assert_eq!(sorted_keys(s), SESSION_KEYS, "{s}");
    assert_eq!(s["id"], id);
    assert_eq!(s["sessionId"], id);
    assert_eq!(s["object"], "session");
    let created = s["createdAt"].as_u64().expect("numeric createdAt");
    assert!(created.abs_diff(now_ms()) < 60_000, "createdAt {created}");
    assert_eq!(s["recording"], false);
    assert_eq!(s["broadcasting"], false);
    assert_eq!(s["mediaMode"], "ROUTED");
    assert_eq!(s["recordingMode"], "MANUAL");
    assert_eq!(s["defaultRecordingProperties"], default_recording());
    assert_eq!(s["customSessionId"], custom);
    assert_eq!(s["forcedVideoCodec"], "MEDIA_SERVER_PREFERRED");
    assert_eq!(s["allowTranscoding"], false);
    assert_eq!(s["connections"], json!({"numberOfElements": 0, "content": []}));
}

fn default_recording() -> Value {
    json!({"name": "", "hasAudio": true, "hasVideo": true, "outputMode": "COMPOSED",
        "recordingLayout": "BEST_FIT", "resolution": "1280x720", "frameRate": 25, "shmSize": 536870912})
}

/// A pending Connection with default properties.
fn assert_default_pending(ts: &TestServer, c: &Value, session: &str) {
    assert_eq!(sorted_keys(c), CONNECTION_KEYS, "{c}");
    let id = c["id"].as_str().expect("string id");
    assert_id_shape(id, "con_", 10);
    assert_eq!(c["connectionId"], id);
    assert_eq!(c["object"], "connection");
    assert_eq!(c["status"], "pending");
    assert_eq!(c["sessionId"], session);
    let created = c["createdAt"].as_u64().expect("numeric createdAt");
    assert!(created.abs_diff(now_ms()) < 60_000, "createdAt {created}");
    assert_eq!(c["type"], "WEBRTC");
    assert_eq!(c["record"], true);
    assert_eq!(c["role"], "PUBLISHER");
    assert_eq!(c["kurentoOptions"], Value::Null);
    assert_eq!(c["customIceServers"], json!([]));
    assert_eq!(c["serverData"], "");
    assert_token(ts, c["token"].as_str().expect("string token"), session);
    assert_pending_nulls(c);
}

/// The keys OpenVidu leaves `null` on a pending Connection (and the IPCAM ones, always null).
fn assert_pending_nulls(c: &Value) {
    for k in [
        "rtspUri",
        "adaptativeBitrate",
        "onlyPlayWithSubscribers",
        "networkCache",
        "activeAt",
        "location",
        "ip",
        "platform",
        "clientData",
        "publishers",
        "subscribers",
    ] {
        assert_eq!(c[k], Value::Null, "{k} must be null in {c}");
    }
}

/// Joins `session` with `token` on a fresh socket.
async fn join_with(
    ts: &TestServer,
    session: &str,
    token: &str,
    metadata: &str,
) -> (Peer, Result<Value, Value>) {
    let mut peer = Peer::open(&ts.url, session).await;
    let r = peer.join(token, session, metadata).await;
    (peer, r)
}

/// Polls `GET path` until it answers `status`, for at most [`WAIT`].
async fn eventually_status(ts: &TestServer, path: &str, status: StatusCode) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, _) = ts.get(path).await;
        if s == status {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "GET {path} still answers {s}, never {status}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---- authentication and CORS -----------------------------------------------------------------

async fn assert_unauthorized(ts: &TestServer, auth: Auth) {
    let r = raw(ts, Method::GET, "/sessions", None, auth).await;
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Realm\""));
    assert_error(&r, StatusCode::UNAUTHORIZED, "/sessions", "OPENVIDUAPP");
}

#[tokio::test]
async fn auth_missing_credentials_is_401_with_basic_challenge() {
    let ts = TestServer::start().await;
    assert_unauthorized(&ts, Auth::Anonymous).await;
    // A non-Basic scheme counts as no credentials.
    let r = ts.http.get(ts.api("/sessions")).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"Realm\"");
}

#[tokio::test]
async fn auth_wrong_user_is_401() {
    let ts = TestServer::start().await;
    assert_unauthorized(&ts, Auth::Basic("OPENVIDU", SECRET)).await;
    assert_unauthorized(&ts, Auth::Basic("openviduapp", SECRET)).await;
}

#[tokio::test]
async fn auth_wrong_secret_is_401_and_does_nothing() {
    let ts = TestServer::start().await;
    assert_unauthorized(&ts, Auth::Basic("OPENVIDUAPP", "not-the-secret")).await;
    assert_unauthorized(&ts, Auth::Basic("OPENVIDUAPP", "")).await;
    let r = raw(
        &ts,
        Method::POST,
        "/sessions",
        Some(r#"{"customSessionId":"sneaky"}"#),
        Auth::Basic("OPENVIDUAPP", "x"),
    )
    .await;
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Realm\""));
    assert_error(&r, StatusCode::UNAUTHORIZED, "/sessions", "OPENVIDUAPP");
    let (status, body) = ts.get("/sessions/sneaky").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused request created a session: {body}");
}

#[tokio::test]
async fn public_url_needs_no_auth() {
    let ts = TestServer::start().await;
    let r = raw(&ts, Method::GET, "/config/openvidu-publicurl", None, Auth::Anonymous).await;
    assert_eq!(r.status, StatusCode::OK);
    // A bare URL with a trailing slash, as OpenVidu (`https://host/`, spec §6.4).
    assert_eq!(r.text, format!("http://127.0.0.1:{}/", port(&ts)));
    let r = raw(&ts, Method::HEAD, "/config/openvidu-publicurl", None, Auth::Anonymous).await;
    assert_eq!(r.status, StatusCode::OK);
    // The other config values do need it.
    let r = raw(&ts, Method::GET, "/config/openvidu-version", None, Auth::Anonymous).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cors_preflight_succeeds_without_auth() {
    let ts = TestServer::start().await;
    for (method, path) in
        [("POST", "/sessions"), ("DELETE", "/sessions/s1/connection/con_X"), ("POST", "/signal")]
    {
        let r = ts
            .http
            .request(Method::OPTIONS, ts.api(path))
            .header("Origin", "http://app.example.com")
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", "authorization,content-type")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "preflight {method} {path}: {}", r.status());
        let h = r.headers();
        // As OpenVidu: any origin as `*`, and no credentials (`*` cannot carry them).
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(h.get("access-control-allow-credentials").is_none());
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains(method), "allowed methods {methods:?}");
        let headers = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
        assert!(headers.contains("authorization") && headers.contains("content-type"), "{headers:?}");
        assert!(h.get("www-authenticate").is_none());
    }
    // The actual cross-origin request is answered with the CORS header too.
    let r = ts
        .http
        .get(ts.api("/sessions"))
        .basic_auth("OPENVIDUAPP", Some(SECRET))
        .header("Origin", "http://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers().get("access-control-allow-credentials").is_none());
}

// ---- POST /sessions --------------------------------------------------------------------------

#[tokio::test]
async fn create_session_without_body_gets_a_random_id() {
    let ts = TestServer::start().await;
    let r = raw(&ts, Method::POST, "/sessions", None, Auth::Good).await;
    let a = ok_json(&r);
    let id_a = a["id"].as_str().unwrap().to_owned();
    assert_id_shape(&id_a, "ses_", 10);
    assert_default_session(&a, &id_a, "");

    let b = ok_json(&call(&ts, Method::POST, "/sessions", Some(json!({}))).await);
    let id_b = b["id"].as_str().unwrap().to_owned();
    assert_id_shape(&id_b, "ses_", 10);
    assert_default_session(&b, &id_b, "");
    assert_ne!(id_a, id_b);

    // An empty customSessionId is "unset" too (node-client sends "").
    let c = ok_json(&call(&ts, Method::POST, "/sessions", Some(json!({"customSessionId": ""}))).await);
    let id_c = c["id"].as_str().unwrap().to_owned();
    assert_id_shape(&id_c, "ses_", 10);
    assert_default_session(&c, &id_c, "");

    for id in [&id_a, &id_b, &id_c] {
        let s = ok_json(&call(&ts, Method::GET, &format!("/sessions/{id}"), None).await);
        assert_default_session(&s, id, "");
    }
}

#[tokio::test]
async fn create_session_with_custom_id_and_properties() {
    let ts = TestServer::start().await;
    let body = json!({
        "customSessionId": "my_Session-1",
        "mediaMode": "RELAYED",
        "recordingMode": "ALWAYS",
        "forcedVideoCodec": "VP8",
        "allowTranscoding": true,
        "defaultRecordingProperties": {"name": "rec", "hasAudio": false, "resolution": "640x480"},
    });
    let s = ok_json(&call(&ts, Method::POST, "/sessions", Some(body)).await);
    assert_eq!(sorted_keys(&s), SESSION_KEYS);
    assert_eq!(s["id"], "my_Session-1");
    assert_eq!(s["sessionId"], "my_Session-1");
    assert_eq!(s["object"], "session");
    assert_eq!(s["customSessionId"], "my_Session-1");
    assert_eq!(s["mediaMode"], "RELAYED");
    assert_eq!(s["recordingMode"], "ALWAYS");
    assert_eq!(s["forcedVideoCodec"], "VP8");
    assert_eq!(s["allowTranscoding"], true);
    assert_eq!(s["recording"], false);
    assert_eq!(s["broadcasting"], false);
    assert_eq!(
        s["defaultRecordingProperties"],
        json!({"name": "rec", "hasAudio": false, "hasVideo": true, "outputMode": "COMPOSED",
            "recordingLayout": "BEST_FIT", "resolution": "640x480", "frameRate": 25, "shmSize": 536870912})
    );
    assert_eq!(s["connections"], json!({"numberOfElements": 0, "content": []}));
    // GET answers the same object.
    let got = ok_json(&call(&ts, Method::GET, "/sessions/my_Session-1", None).await);
    assert_eq!(got, s);

    for codec in ["MEDIA_SERVER_PREFERRED", "NONE", "VP9", "H264"] {
        let s =
            ok_json(&call(&ts, Method::POST, "/sessions", Some(json!({"forcedVideoCodec": codec}))).await);
        assert_eq!(s["forcedVideoCodec"], codec);
    }
    let s = ok_json(
        &call(
            &ts,
            Method::POST,
            "/sessions",
            Some(json!({"mediaMode": "ROUTED", "recordingMode": "MANUAL"})),
        )
        .await,
    );
    assert_eq!((s["mediaMode"].as_str(), s["recordingMode"].as_str()), (Some("ROUTED"), Some("MANUAL")));
}

#[tokio::test]
async fn create_session_individual_recording_properties() {
    let ts = TestServer::start().await;
    let body = json!({"customSessionId": "indiv", "defaultRecordingProperties": {"outputMode": "INDIVIDUAL", "name": "n"}});
    let s = ok_json(&call(&ts, Method::POST, "/sessions", Some(body)).await);
    assert_eq!(
        s["defaultRecordingProperties"],
        json!({"name": "n", "hasAudio": true, "hasVideo": true, "outputMode": "INDIVIDUAL", "ignoreFailedStreams": false})
    );
}

#[tokio::test]
async fn create_session_treats_json_nulls_as_absent() {
    let ts = TestServer::start().await;
    // What openvidu-node-client 2.32.2 sends for `createSession()` with no properties.
    let body = json!({
        "mediaMode": null, "recordingMode": null, "customSessionId": null,
        "defaultRecordingProperties": {"name": null, "hasAudio": null, "hasVideo": null, "outputMode": null,
            "recordingLayout": null, "resolution": null, "frameRate": null, "shmSize": null},
        "mediaNode": null, "forcedVideoCodec": null, "allowTranscoding": null,
    });
    let s = ok_json(&call(&ts, Method::POST, "/sessions", Some(body)).await);
    let id = s["id"].as_str().unwrap().to_owned();
    assert_id_shape(&id, "ses_", 10);
    assert_default_session(&s, &id, "");

    let body = json!({"customSessionId": "with-nulls", "mediaMode": null, "allowTranscoding": null, "defaultRecordingProperties": null});
    let s = ok_json(&call(&ts, Method::POST, "/sessions", Some(body)).await);
    assert_default_session(&s, "with-nulls", "with-nulls");

    // A JSON `null` body is no body.
    let s = ok_json(&raw(&ts, Method::POST, "/sessions", Some("null"), Auth::Good).await);
    let id = s["id"].as_str().unwrap().to_owned();
    assert_default_session(&s, &id, "");
}

#[tokio::test]
async fn create_session_duplicate_is_409_with_empty_body() {
    let ts = TestServer::start().await;
    let first = ok_json(
        &call(
            &ts,
            Method::POST,
            "/sessions",
            Some(json!({"customSessionId": "dup", "mediaMode": "RELAYED"})),
        )
        .await,
    );
    let r = call(&ts, Method::POST, "/sessions", Some(json!({"customSessionId": "dup"}))).await;
    assert_empty(&r, StatusCode::CONFLICT);
    let r = call(
        &ts,
        Method::POST,
        "/sessions",
        Some(json!({"customSessionId": "dup", "recordingMode": "ALWAYS"})),
    )
    .await;
    assert_empty(&r, StatusCode::CONFLICT);
    // The original is untouched (node-client's fallback: GET ?pendingConnections=true).
    let got = ok_json(&call(&ts, Method::GET, "/sessions/dup?pendingConnections=true", None).await);
    assert_eq!(got, first);
    let list = ok_json(&call(&ts, Method::GET, "/sessions", None).await);
    assert_eq!(list["numberOfElements"], 1);
}

#[tokio::test]
async fn create_session_bad_custom_id_is_400() {
    let ts = TestServer::start().await;
    for bad in ["bad id", "a/b", "sés", "x.y", "semi;colon", "new\nline"] {
        let r = call(&ts, Method::POST, "/sessions", Some(json!({"customSessionId": bad}))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "/sessions", "customSessionId");
    }
    let list = ok_json(&call(&ts, Method::GET, "/sessions", None).await);
    assert_eq!(list, json!({"numberOfElements": 0, "content": []}));
}

#[tokio::test]
async fn create_session_wrong_enum_values_are_400() {
    let ts = TestServer::start().await;
    for (field, value) in [
        ("mediaMode", "ROUTED_X"),
        ("mediaMode", "routed"),
        ("recordingMode", "SOMETIMES"),
        ("forcedVideoCodec", "MPEG2"),
        ("forcedVideoCodec", "vp8"),
    ] {
        let r =
            call(&ts, Method::POST, "/sessions", Some(json!({"customSessionId": "e", field: value}))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "/sessions", field);
    }
    let (status, _) = ts.get("/sessions/e").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a rejected request created the session");
}

#[tokio::test]
async fn create_session_wrong_types_are_400() {
    let ts = TestServer::start().await;
    for (field, value) in [
        ("customSessionId", json!(5)),
        ("customSessionId", json!(["a"])),
        ("mediaMode", json!(1)),
        ("recordingMode", json!(true)),
        ("forcedVideoCodec", json!({"codec": "VP8"})),
        ("allowTranscoding", json!("yes")),
        ("allowTranscoding", json!(1)),
        ("defaultRecordingProperties", json!("x")),
        ("defaultRecordingProperties", json!([])),
    ] {
        let r = call(&ts, Method::POST, "/sessions", Some(json!({field: value}))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "/sessions", field);
    }
    let list = ok_json(&call(&ts, Method::GET, "/sessions", None).await);
    assert_eq!(list["numberOfElements"], 0);
}

#[tokio::test]
async fn create_session_non_object_or_invalid_json_is_400() {
    let ts = TestServer::start().await;
    for body in ["[1,2]", "\"ses\"", "42", "true"] {
        let r = raw(&ts, Method::POST, "/sessions", Some(body), Auth::Good).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "/sessions", "JSON object");
    }
    for body in ["{\"customSessionId\":", "{customSessionId: 'x'}", "not json"] {
        let r = raw(&ts, Method::POST, "/sessions", Some(body), Auth::Good).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "/sessions", "JSON");
    }
    let list = ok_json(&call(&ts, Method::GET, "/sessions", None).await);
    assert_eq!(list["numberOfElements"], 0);
}

// ---- GET/DELETE /sessions --------------------------------------------------------------------

#[tokio::test]
async fn list_sessions_with_and_without_pending_connections() {
    let ts = TestServer::start().await;
    let empty = ok_json(&call(&ts, Method::GET, "/sessions", None).await);
    assert_eq!(empty, json!({"numberOfElements": 0, "content": []}));

    ts.create_session("quiet").await;
    let (_, quiet_pending) = ts.connection("quiet", json!({})).await;
    ts.create_session("busy").await;
    let alice = ts.join("busy", "alice").await;
    let (_, busy_pending) = ts.connection("busy", json!({})).await;

    let find = |list: &Value, id: &str| -> Value {
        list["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {list}"))
    };
    let ids = |s: &Value| -> Vec<(String, String)> {
        s["connections"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (c["connectionId"].as_str().unwrap().to_owned(), c["status"].as_str().unwrap().to_owned())
            })
            .collect()
    };

    for query in ["", "?pendingConnections=false", "?webRtcStats=true"] {
        let list = ok_json(&call(&ts, Method::GET, &format!("/sessions{query}"), None).await);
        assert_eq!(sorted_keys(&list), ["content", "numberOfElements"]);
        assert_eq!(list["numberOfElements"], 2, "{list}");
        assert_eq!(list["content"].as_array().unwrap().len(), 2);
        let quiet = find(&list, "quiet");
        assert_default_session(&quiet, "quiet", "quiet");
        let busy = find(&list, "busy");
        assert_eq!(sorted_keys(&busy), SESSION_KEYS);
        assert_eq!(busy["connections"]["numberOfElements"], 1);
        assert_eq!(ids(&busy), [(alice.connection_id.clone(), "active".to_owned())]);
    }

    let list = ok_json(&call(&ts, Method::GET, "/sessions?pendingConnections=true", None).await);
    assert_eq!(list["numberOfElements"], 2);
    let quiet = find(&list, "quiet");
    assert_eq!(quiet["connections"]["numberOfElements"], 1);
    assert_eq!(ids(&quiet), [(quiet_pending.clone(), "pending".to_owned())]);
    let busy = find(&list, "busy");
    assert_eq!(busy["connections"]["numberOfElements"], 2);
    let mut got = ids(&busy);
    got.sort();
    let mut want =
        vec![(alice.connection_id.clone(), "active".to_owned()), (busy_pending, "pending".to_owned())];
    want.sort();
    assert_eq!(got, want);
    for c in busy["connections"]["content"].as_array().unwrap() {
        assert_eq!(sorted_keys(c), CONNECTION_KEYS);
        assert_eq!(c["sessionId"], "busy");
    }
}

#[tokio::test]
async fn get_unknown_session_is_404_with_empty_body() {
    let ts = TestServer::start().await;
    assert_empty(&call(&ts, Method::GET, "/sessions/nope", None).await, StatusCode::NOT_FOUND);
    assert_empty(
        &call(&ts, Method::GET, "/sessions/nope?pendingConnections=true", None).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn get_session_lists_pending_connections_only_on_request() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let alice = ts.join("s1", "{\"name\":\"alice\"}").await;
    let pending =
        ok_json(&call(&ts, Method::POST, "/sessions/s1/connection", Some(json!({"data": "for bob"}))).await);
    let pending_id = pending["id"].as_str().unwrap().to_owned();

    for query in ["", "?pendingConnections=false"] {
        let s = ok_json(&call(&ts, Method::GET, &format!("/sessions/s1{query}"), None).await);
        assert_eq!(sorted_keys(&s), SESSION_KEYS);
        assert_eq!(s["id"], "s1");
        assert_eq!(s["sessionId"], "s1");
        assert_eq!(s["connections"]["numberOfElements"], 1, "{s}");
        let c = &s["connections"]["content"][0];
        assert_eq!(sorted_keys(c), CONNECTION_KEYS);
        assert_eq!(c["id"], alice.connection_id.as_str());
        assert_eq!(c["connectionId"], alice.connection_id.as_str());
        assert_eq!(c["status"], "active");
        assert_eq!(c["clientData"], "{\"name\":\"alice\"}");
    }

    let s = ok_json(&call(&ts, Method::GET, "/sessions/s1?pendingConnections=true", None).await);
    assert_eq!(s["connections"]["numberOfElements"], 2, "{s}");
    let content = s["connections"]["content"].as_array().unwrap();
    let active = content.iter().find(|c| c["id"] == alice.connection_id.as_str()).expect("active listed");
    assert_eq!(active["status"], "active");
    let p = content.iter().find(|c| c["id"] == pending_id.as_str()).expect("pending listed");
    assert_eq!(p, &pending, "the listed pending connection equals the created one");
}

#[tokio::test]
async fn delete_session_evicts_everybody_with_session_closed_by_server() {
    let ts = TestServer::start().await;
    ts.create_session("doomed").await;
    let mut a = ts.join("doomed", "a").await;
    let mut b = ts.join("doomed", "b").await;
    let (pending_token, _) = ts.connection("doomed", json!({})).await;
    // `a` hears `b` join first, so that later frames are only about the close.
    let joined = a.notification("participantJoined").await;
    assert_eq!(joined["id"], b.connection_id.as_str());

    let r = call(&ts, Method::DELETE, "/sessions/doomed", None).await;
    assert_empty(&r, StatusCode::NO_CONTENT);

    // §7.3: evicted one by one, in join order.
    let ev_a = json!({"connectionId": a.connection_id, "reason": "sessionClosedByServer"});
    let ev_b = json!({"connectionId": b.connection_id, "reason": "sessionClosedByServer"});
    assert_eq!(a.notification("participantEvicted").await, ev_a);
    a.no_notification("participantLeft").await;
    assert_eq!(b.notification("participantLeft").await, ev_a);
    assert_eq!(b.notification("participantEvicted").await, ev_a);
    assert_eq!(b.notification("participantEvicted").await, ev_b);
    a.no_notification("participantEvicted").await;

    assert_empty(&call(&ts, Method::GET, "/sessions/doomed", None).await, StatusCode::NOT_FOUND);
    assert_empty(&call(&ts, Method::DELETE, "/sessions/doomed", None).await, StatusCode::NOT_FOUND);
    assert_empty(
        &call(&ts, Method::POST, "/sessions/doomed/connection", Some(json!({}))).await,
        StatusCode::NOT_FOUND,
    );
    let list = ok_json(&call(&ts, Method::GET, "/sessions", None).await);
    assert_eq!(list["numberOfElements"], 0);
    // The pending token died with the session.
    let (_, r) = join_with(&ts, "doomed", &pending_token, "").await;
    assert_eq!(r.expect_err("joining a deleted session fails")["code"], 202);
}

#[tokio::test]
async fn delete_unknown_session_is_404_with_empty_body() {
    let ts = TestServer::start().await;
    assert_empty(&call(&ts, Method::DELETE, "/sessions/ghost", None).await, StatusCode::NOT_FOUND);
}

// ---- connections -----------------------------------------------------------------------------

#[tokio::test]
async fn create_connection_defaults() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let c = ok_json(&call(&ts, Method::POST, "/sessions/s1/connection", Some(json!({}))).await);
    assert_default_pending(&ts, &c, "s1");
    // No body at all gives the same defaults.
    let d = ok_json(&raw(&ts, Method::POST, "/sessions/s1/connection", None, Auth::Good).await);
    assert_default_pending(&ts, &d, "s1");
    assert_ne!(c["id"], d["id"]);
    assert_ne!(c["token"], d["token"]);
    // GET answers the same object.
    let got = ok_json(
        &call(&ts, Method::GET, &format!("/sessions/s1/connection/{}", c["id"].as_str().unwrap()), None)
            .await,
    );
    assert_eq!(got, c);
}

#[tokio::test]
async fn create_connection_echoes_given_values() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let kurento = json!({"videoMaxRecvBandwidth": 1000, "videoMinRecvBandwidth": 300, "videoMaxSendBandwidth": 900,
        "videoMinSendBandwidth": 0, "allowedFilters": ["GStreamerFilter", "FaceOverlayFilter"]});
    let ice = json!([
        {"url": "turn:203.0.113.7:3478", "username": "u", "credential": "c"},
        {"url": "turns:turn.example.com:443?transport=tcp", "username": "u2", "credential": "c2"},
        {"url": "stun:stun.l.google.com:19302"},
        {"url": "stuns:stun.example.com:5349"},
    ]);
    let body = json!({"type": "WEBRTC", "data": "server data %/% x", "record": false, "role": "MODERATOR",
        "kurentoOptions": kurento, "customIceServers": ice});
    let c = ok_json(&call(&ts, Method::POST, "/sessions/s1/connection", Some(body)).await);
    assert_eq!(sorted_keys(&c), CONNECTION_KEYS);
    assert_eq!(c["status"], "pending");
    assert_eq!(c["type"], "WEBRTC");
    assert_eq!(c["serverData"], "server data %/% x");
    assert_eq!(c["record"], false);
    assert_eq!(c["role"], "MODERATOR");
    assert_eq!(c["kurentoOptions"], kurento);
    assert_eq!(c["customIceServers"], ice);
    assert_token(&ts, c["token"].as_str().unwrap(), "s1");
    assert_pending_nulls(&c);

    for role in ["SUBSCRIBER", "PUBLISHER"] {
        let c =
            ok_json(&call(&ts, Method::POST, "/sessions/s1/connection", Some(json!({"role": role}))).await);
        assert_eq!(c["role"], role);
    }
}

#[tokio::test]
async fn create_connection_treats_json_nulls_as_absent() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    // What openvidu-node-client sends for `createConnection()` with no properties.
    let body = json!({"type": null, "data": null, "record": null, "role": null, "kurentoOptions": null,
        "rtspUri": null, "adaptativeBitrate": null, "onlyPlayWithSubscribers": null, "networkCache": null,
        "customIceServers": null});
    let c = ok_json(&call(&ts, Method::POST, "/sessions/s1/connection", Some(body)).await);
    assert_default_pending(&ts, &c, "s1");
}

#[tokio::test]
async fn create_connection_unknown_session_is_404_with_empty_body() {
    let ts = TestServer::start().await;
    let r = call(&ts, Method::POST, "/sessions/nope/connection", Some(json!({"role": "PUBLISHER"}))).await;
    assert_empty(&r, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn create_connection_bad_parameters_are_400() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let path = "/sessions/s1/connection";
    let cases = [
        ("role", json!({"role": "ADMIN"})),
        ("role", json!({"role": "publisher"})),
        ("role", json!({"role": 1})),
        ("type", json!({"type": "SIP"})),
        ("type", json!({"type": 3})),
        ("type", json!({"type": "IPCAM", "rtspUri": "rtsp://cam.example.com/stream"})),
        ("record", json!({"record": "true"})),
        ("record", json!({"record": 1})),
        ("data", json!({"data": 5})),
        ("data", json!({"data": {"k": "v"}})),
        ("kurentoOptions", json!({"kurentoOptions": "x"})),
        ("kurentoOptions", json!({"kurentoOptions": [1]})),
        ("kurentoOptions", json!({"kurentoOptions": {"videoMaxRecvBandwidth": "a lot"}})),
        ("kurentoOptions", json!({"kurentoOptions": {"allowedFilters": "GStreamerFilter"}})),
        ("kurentoOptions", json!({"kurentoOptions": {"unknownOption": 1}})),
        ("customIceServers", json!({"customIceServers": "stun:x"})),
        ("customIceServers", json!({"customIceServers": [5]})),
        ("customIceServers", json!({"customIceServers": [{}]})),
        ("customIceServers", json!({"customIceServers": [{"url": "turn:203.0.113.7:3478"}]})),
        (
            "customIceServers",
            json!({"customIceServers": [{"url": "turn:203.0.113.7:3478", "username": "u"}]}),
        ),
        ("customIceServers", json!({"customIceServers": [{"url": "turns:h:443", "credential": "c"}]})),
        (
            "customIceServers",
            json!({"customIceServers": [{"url": "stun:h:3478", "username": "u", "credential": "c"}]}),
        ),
        ("customIceServers", json!({"customIceServers": [{"url": "stun:h:3478", "username": "u"}]})),
        ("customIceServers", json!({"customIceServers": [{"url": "http://h:3478"}]})),
        ("customIceServers", json!({"customIceServers": [{"url": "h:3478"}]})),
        (
            "customIceServers",
            json!({"customIceServers": [{"url": "stun:ok:1"}, {"url": "turn:no-credentials:1"}]}),
        ),
    ];
    for (field, body) in cases {
        let r = call(&ts, Method::POST, path, Some(body.clone())).await;
        assert_error(&r, StatusCode::BAD_REQUEST, path, field);
    }
    for body in ["[]", "\"x\"", "{\"role\":"] {
        let r = raw(&ts, Method::POST, path, Some(body), Auth::Good).await;
        assert_error(&r, StatusCode::BAD_REQUEST, path, "JSON");
    }
    // Nothing was created.
    let list = ok_json(&call(&ts, Method::GET, path, None).await);
    assert_eq!(list, json!({"numberOfElements": 0, "content": []}));
}

#[tokio::test]
async fn list_connections_includes_pending_by_default() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let alice = ts.join("s1", "alice").await;
    let pending = ok_json(&call(&ts, Method::POST, "/sessions/s1/connection", Some(json!({}))).await);

    for query in ["", "?pendingConnections=true"] {
        let list = ok_json(&call(&ts, Method::GET, &format!("/sessions/s1/connection{query}"), None).await);
        assert_eq!(sorted_keys(&list), ["content", "numberOfElements"]);
        assert_eq!(list["numberOfElements"], 2, "{list}");
        let content = list["content"].as_array().unwrap();
        assert_eq!(content.len(), 2);
        assert!(content.iter().any(|c| c["id"] == alice.connection_id.as_str() && c["status"] == "active"));
        assert!(content.contains(&pending), "{list}");
    }
    let list =
        ok_json(&call(&ts, Method::GET, "/sessions/s1/connection?pendingConnections=false", None).await);
    assert_eq!(list["numberOfElements"], 1, "{list}");
    assert_eq!(list["content"][0]["id"], alice.connection_id.as_str());
    assert_eq!(list["content"][0]["status"], "active");

    assert_empty(&call(&ts, Method::GET, "/sessions/nope/connection", None).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn get_active_connection_shows_the_participant() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let created = ok_json(
        &call(
            &ts,
            Method::POST,
            "/sessions/s1/connection",
            Some(json!({"data": "srv", "role": "SUBSCRIBER"})),
        )
        .await,
    );
    let cid = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let (_peer, joined) = join_with(&ts, "s1", &token, "{\"name\":\"alice\"}").await;
    let joined = joined.expect("joins");
    assert_eq!(joined["id"], cid.as_str());

    let c = ok_json(&call(&ts, Method::GET, &format!("/sessions/s1/connection/{cid}"), None).await);
    assert_eq!(sorted_keys(&c), CONNECTION_KEYS);
    assert_eq!(c["id"], cid.as_str());
    assert_eq!(c["connectionId"], cid.as_str());
    assert_eq!(c["object"], "connection");
    assert_eq!(c["status"], "active");
    assert_eq!(c["sessionId"], "s1");
    assert_eq!(c["createdAt"], created["createdAt"]);
    let active_at = c["activeAt"].as_u64().expect("numeric activeAt");
    assert!(active_at >= created["createdAt"].as_u64().unwrap());
    assert_eq!(c["activeAt"], joined["createdAt"], "activeAt is the join time");
    assert_eq!(c["location"], "unknown");
    assert_eq!(c["ip"], "127.0.0.1");
    assert_eq!(c["platform"], "test");
    assert_eq!(c["clientData"], "{\"name\":\"alice\"}");
    assert_eq!(c["serverData"], "srv");
    assert_eq!(c["role"], "SUBSCRIBER");
    assert_eq!(c["record"], true);
    assert_eq!(c["type"], "WEBRTC");
    assert_eq!(c["token"], token.as_str());
    assert_eq!(c["kurentoOptions"], Value::Null);
    assert_eq!(c["customIceServers"], json!([]));
    assert_eq!(c["publishers"], json!([]));
    assert_eq!(c["subscribers"], json!([]));
    for k in ["rtspUri", "adaptativeBitrate", "onlyPlayWithSubscribers", "networkCache"] {
        assert_eq!(c[k], Value::Null, "{k}");
    }
}

#[tokio::test]
async fn get_connection_unknown_session_is_400_unknown_connection_404() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let (_, cid) = ts.connection("s1", json!({})).await;
    assert_empty(
        &call(&ts, Method::GET, &format!("/sessions/nope/connection/{cid}"), None).await,
        StatusCode::BAD_REQUEST,
    );
    assert_empty(
        &call(&ts, Method::GET, "/sessions/s1/connection/con_Nope123456", None).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn delete_pending_connection_invalidates_its_token() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let (token, cid) = ts.connection("s1", json!({})).await;
    let (_, other) = ts.connection("s1", json!({})).await;

    assert_empty(
        &call(&ts, Method::DELETE, &format!("/sessions/s1/connection/{cid}"), None).await,
        StatusCode::NO_CONTENT,
    );
    assert_empty(
        &call(&ts, Method::GET, &format!("/sessions/s1/connection/{cid}"), None).await,
        StatusCode::NOT_FOUND,
    );
    assert_empty(
        &call(&ts, Method::DELETE, &format!("/sessions/s1/connection/{cid}"), None).await,
        StatusCode::NOT_FOUND,
    );
    let list = ok_json(&call(&ts, Method::GET, "/sessions/s1/connection", None).await);
    assert_eq!(list["numberOfElements"], 1);
    assert_eq!(list["content"][0]["id"], other.as_str());

    let (_, r) = join_with(&ts, "s1", &token, "").await;
    let e = r.expect_err("a deleted connection's token must not join");
    assert_eq!(e["code"], 401, "{e}");
    // The session is still there and still not active.
    let s = ok_json(&call(&ts, Method::GET, "/sessions/s1", None).await);
    assert_eq!(s["id"], "s1");
}

#[tokio::test]
async fn delete_active_connection_evicts_with_force_disconnect_by_server() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let mut a = ts.join("s1", "a").await;
    let mut b = ts.join("s1", "b").await;
    assert_eq!(a.notification("participantJoined").await["id"], b.connection_id.as_str());

    let r = call(&ts, Method::DELETE, &format!("/sessions/s1/connection/{}", a.connection_id), None).await;
    assert_empty(&r, StatusCode::NO_CONTENT);

    let ev = json!({"connectionId": a.connection_id, "reason": "forceDisconnectByServer"});
    assert_eq!(a.notification("participantEvicted").await, ev);
    a.no_notification("participantLeft").await;
    assert_eq!(b.notification("participantLeft").await, ev);
    assert_eq!(b.notification("participantEvicted").await, ev);
    b.no_notification("participantEvicted").await;

    assert_empty(
        &call(&ts, Method::GET, &format!("/sessions/s1/connection/{}", a.connection_id), None).await,
        StatusCode::NOT_FOUND,
    );
    let s = ok_json(&call(&ts, Method::GET, "/sessions/s1", None).await);
    assert_eq!(s["connections"]["numberOfElements"], 1);
    assert_eq!(s["connections"]["content"][0]["id"], b.connection_id.as_str());

    // Evicting the last participant closes the session (§7.1).
    let r = call(&ts, Method::DELETE, &format!("/sessions/s1/connection/{}", b.connection_id), None).await;
    assert_empty(&r, StatusCode::NO_CONTENT);
    let ev_b = json!({"connectionId": b.connection_id, "reason": "forceDisconnectByServer"});
    assert_eq!(b.notification("participantEvicted").await, ev_b);
    assert_empty(&call(&ts, Method::GET, "/sessions/s1", None).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_connection_unknown_session_is_400_unknown_connection_404() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let (_, cid) = ts.connection("s1", json!({})).await;
    assert_empty(
        &call(&ts, Method::DELETE, &format!("/sessions/nope/connection/{cid}"), None).await,
        StatusCode::BAD_REQUEST,
    );
    assert_empty(
        &call(&ts, Method::DELETE, "/sessions/s1/connection/con_Nope123456", None).await,
        StatusCode::NOT_FOUND,
    );
    // The real one is untouched.
    let c = ok_json(&call(&ts, Method::GET, &format!("/sessions/s1/connection/{cid}"), None).await);
    assert_eq!(c["status"], "pending");
}

#[tokio::test]
async fn patch_connection_notifies_only_changed_properties() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let mut a = ts.join("s1", "a").await;
    let mut b = ts.join("s1", "b").await;
    let path = format!("/sessions/s1/connection/{}", a.connection_id);

    let c =
        ok_json(&call(&ts, Method::PATCH, &path, Some(json!({"role": "MODERATOR", "record": false}))).await);
    assert_eq!(sorted_keys(&c), CONNECTION_KEYS);
    assert_eq!(c["id"], a.connection_id.as_str());
    assert_eq!(c["status"], "active");
    assert_eq!(c["role"], "MODERATOR");
    assert_eq!(c["record"], false);
    assert_eq!(c["clientData"], "a");
    assert_eq!(
        a.notification("connectionPropertyChanged").await,
        json!({"property": "role", "newValue": "MODERATOR"})
    );
    assert_eq!(
        a.notification("connectionPropertyChanged").await,
        json!({"property": "record", "newValue": "false"})
    );
    a.no_notification("connectionPropertyChanged").await;
    b.no_notification("connectionPropertyChanged").await;
    assert_eq!(ok_json(&call(&ts, Method::GET, &path, None).await), c);

    // Same values again: nothing changes, nobody is told.
    let same =
        ok_json(&call(&ts, Method::PATCH, &path, Some(json!({"role": "MODERATOR", "record": false}))).await);
    assert_eq!(same, c);
    a.no_notification("connectionPropertyChanged").await;

    // Only what changed is announced; other keys are ignored.
    let c = ok_json(
        &call(
            &ts,
            Method::PATCH,
            &path,
            Some(json!({"role": "MODERATOR", "record": true, "data": "ignored"})),
        )
        .await,
    );
    assert_eq!(
        (c["role"].as_str(), c["record"].as_bool(), c["serverData"].as_str()),
        (Some("MODERATOR"), Some(true), Some(""))
    );
    assert_eq!(
        a.notification("connectionPropertyChanged").await,
        json!({"property": "record", "newValue": "true"})
    );
    a.no_notification("connectionPropertyChanged").await;
    b.no_notification("connectionPropertyChanged").await;

    // Nulls are absent keys.
    let c = ok_json(&call(&ts, Method::PATCH, &path, Some(json!({"role": null, "record": null}))).await);
    assert_eq!((c["role"].as_str(), c["record"].as_bool()), (Some("MODERATOR"), Some(true)));
    a.no_notification("connectionPropertyChanged").await;
}

#[tokio::test]
async fn patch_pending_connection_changes_what_the_token_joins_with() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let (token, cid) = ts.connection("s1", json!({})).await;
    let path = format!("/sessions/s1/connection/{cid}");
    let c =
        ok_json(&call(&ts, Method::PATCH, &path, Some(json!({"role": "SUBSCRIBER", "record": false}))).await);
    assert_eq!(c["status"], "pending");
    assert_eq!((c["role"].as_str(), c["record"].as_bool()), (Some("SUBSCRIBER"), Some(false)));
    assert_pending_nulls(&c);
    let (_, joined) = join_with(&ts, "s1", &token, "").await;
    let joined = joined.expect("joins");
    assert_eq!((joined["role"].as_str(), joined["record"].as_bool()), (Some("SUBSCRIBER"), Some(false)));
}

#[tokio::test]
async fn patch_connection_bad_input_and_unknown_ids() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let mut a = ts.join("s1", "a").await;
    let path = format!("/sessions/s1/connection/{}", a.connection_id);
    for (field, body) in [
        ("role", json!({"role": 5})),
        ("role", json!({"role": "BOSS"})),
        ("record", json!({"record": "yes"})),
        ("record", json!({"role": "MODERATOR", "record": "no"})),
    ] {
        let r = call(&ts, Method::PATCH, &path, Some(body)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, &path, field);
    }
    let r = raw(&ts, Method::PATCH, &path, Some("[true]"), Auth::Good).await;
    assert_error(&r, StatusCode::BAD_REQUEST, &path, "JSON object");
    // Nothing changed, nobody was told.
    let c = ok_json(&call(&ts, Method::GET, &path, None).await);
    assert_eq!((c["role"].as_str(), c["record"].as_bool()), (Some("PUBLISHER"), Some(true)));
    a.no_notification("connectionPropertyChanged").await;

    let body = Some(json!({"role": "MODERATOR"}));
    assert_empty(
        &call(&ts, Method::PATCH, "/sessions/s1/connection/con_Nope123456", body.clone()).await,
        StatusCode::NOT_FOUND,
    );
    let r = call(&ts, Method::PATCH, &format!("/sessions/nope/connection/{}", a.connection_id), body).await;
    assert_empty(&r, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_stream_is_400_for_unknown_session_else_404() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let a = ts.join("s1", "a").await;
    let stream = format!("str_CAM_AbCd_{}", a.connection_id);
    assert_empty(
        &call(&ts, Method::DELETE, &format!("/sessions/nope/stream/{stream}"), None).await,
        StatusCode::BAD_REQUEST,
    );
    assert_empty(
        &call(&ts, Method::DELETE, &format!("/sessions/s1/stream/{stream}"), None).await,
        StatusCode::NOT_FOUND,
    );
    assert_empty(
        &call(&ts, Method::DELETE, "/sessions/s1/stream/anything", None).await,
        StatusCode::NOT_FOUND,
    );
}

// ---- POST /tokens ----------------------------------------------------------------------------

#[tokio::test]
async fn post_tokens_creates_a_joinable_pending_connection() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let t = ok_json(
        &call(
            &ts,
            Method::POST,
            "/tokens",
            Some(json!({"session": "s1", "role": "SUBSCRIBER", "data": "d", "record": false})),
        )
        .await,
    );
    assert_eq!(
        sorted_keys(&t),
        ["connectionId", "createdAt", "data", "id", "role", "session", "token"],
        "{t}"
    );
    let token = t["token"].as_str().unwrap().to_owned();
    assert_eq!(t["id"], token.as_str());
    assert_token(&ts, &token, "s1");
    let cid = t["connectionId"].as_str().unwrap().to_owned();
    assert_id_shape(&cid, "con_", 10);
    assert_eq!(t["session"], "s1");
    assert_eq!(t["role"], "SUBSCRIBER");
    assert_eq!(t["data"], "d");
    assert!(t["createdAt"].as_u64().expect("numeric createdAt").abs_diff(now_ms()) < 60_000);

    // It is a pending Connection like any other (`record` is ignored by this API).
    let c = ok_json(&call(&ts, Method::GET, &format!("/sessions/s1/connection/{cid}"), None).await);
    assert_eq!(c["status"], "pending");
    assert_eq!(c["token"], token.as_str());
    assert_eq!(c["role"], "SUBSCRIBER");
    assert_eq!(c["serverData"], "d");
    assert_eq!(c["record"], true);
    assert_eq!(c["createdAt"], t["createdAt"]);

    let (_peer, joined) = join_with(&ts, "s1", &token, "client").await;
    let joined = joined.expect("the token joins");
    assert_eq!(joined["id"], cid.as_str());
    assert_eq!(joined["role"], "SUBSCRIBER");
    assert_eq!(joined["metadata"], "client%/%d");
}

#[tokio::test]
async fn post_tokens_node_client_body_and_kurento_options() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    // openvidu-node-client `generateToken()` without options.
    let t = ok_json(
        &call(
            &ts,
            Method::POST,
            "/tokens",
            Some(json!({"session": "s1", "role": null, "data": null, "kurentoOptions": null})),
        )
        .await,
    );
    assert_eq!(
        sorted_keys(&t),
        ["connectionId", "createdAt", "data", "id", "role", "session", "token"],
        "{t}"
    );
    assert_eq!((t["role"].as_str(), t["data"].as_str()), (Some("PUBLISHER"), Some("")));

    let kurento = json!({"videoMaxSendBandwidth": 500, "allowedFilters": ["GStreamerFilter"]});
    let t = ok_json(
        &call(&ts, Method::POST, "/tokens", Some(json!({"session": "s1", "kurentoOptions": kurento}))).await,
    );
    assert_eq!(
        sorted_keys(&t),
        ["connectionId", "createdAt", "data", "id", "kurentoOptions", "role", "session", "token"],
        "{t}"
    );
    assert_eq!(t["kurentoOptions"], kurento);
    let c = ok_json(
        &call(
            &ts,
            Method::GET,
            &format!("/sessions/s1/connection/{}", t["connectionId"].as_str().unwrap()),
            None,
        )
        .await,
    );
    assert_eq!(c["kurentoOptions"], kurento);
}

#[tokio::test]
async fn post_tokens_errors() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    for body in [json!({}), json!({"role": "PUBLISHER"}), json!({"session": null})] {
        assert_error(
            &call(&ts, Method::POST, "/tokens", Some(body)).await,
            StatusCode::BAD_REQUEST,
            "/tokens",
            "session",
        );
    }
    assert_error(
        &raw(&ts, Method::POST, "/tokens", None, Auth::Good).await,
        StatusCode::BAD_REQUEST,
        "/tokens",
        "session",
    );
    for body in [json!({"session": 5}), json!({"session": ["s1"]})] {
        assert_error(
            &call(&ts, Method::POST, "/tokens", Some(body)).await,
            StatusCode::BAD_REQUEST,
            "/tokens",
            "session",
        );
    }
    for (field, body) in [
        ("role", json!({"session": "s1", "role": "KING"})),
        ("data", json!({"session": "s1", "data": 1})),
        ("kurentoOptions", json!({"session": "s1", "kurentoOptions": "x"})),
    ] {
        assert_error(
            &call(&ts, Method::POST, "/tokens", Some(body)).await,
            StatusCode::BAD_REQUEST,
            "/tokens",
            field,
        );
    }
    let r = call(&ts, Method::POST, "/tokens", Some(json!({"session": "nope"}))).await;
    assert_error(&r, StatusCode::NOT_FOUND, "/tokens", "nope");
    // None of these created a connection.
    let list = ok_json(&call(&ts, Method::GET, "/sessions/s1/connection", None).await);
    assert_eq!(list["numberOfElements"], 0);
}

// ---- POST /signal ----------------------------------------------------------------------------

async fn signal(ts: &TestServer, body: Value) -> Raw {
    call(ts, Method::POST, "/signal", Some(body)).await
}

#[tokio::test]
async fn signal_broadcast_reaches_every_participant_without_from() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let mut peers = vec![ts.join("s1", "a").await, ts.join("s1", "b").await, ts.join("s1", "c").await];

    let r = signal(&ts, json!({"session": "s1", "type": "my-chat", "data": "hi ✓"})).await;
    assert_empty(&r, StatusCode::OK);
    for p in &mut peers {
        assert_eq!(p.notification("sendMessage").await, json!({"data": "hi ✓", "type": "my-chat"}));
    }

    // `to: []`, `to: null` and absent `to` are all broadcasts; absent keys stay absent.
    let r = signal(&ts, json!({"session": "s1", "to": [], "type": "signal:x"})).await;
    assert_empty(&r, StatusCode::OK);
    for p in &mut peers {
        assert_eq!(p.notification("sendMessage").await, json!({"type": "signal:x"}));
    }
    let r = signal(&ts, json!({"session": "s1", "to": null, "data": "d", "type": null})).await;
    assert_empty(&r, StatusCode::OK);
    for p in &mut peers {
        assert_eq!(p.notification("sendMessage").await, json!({"data": "d"}));
    }
    let r = signal(&ts, json!({"session": "s1"})).await;
    assert_empty(&r, StatusCode::OK);
    for p in &mut peers {
        assert_eq!(p.notification("sendMessage").await, json!({}));
        p.no_notification("sendMessage").await;
    }
}

#[tokio::test]
async fn signal_to_targets_reaches_only_them() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let mut a = ts.join("s1", "a").await;
    let mut b = ts.join("s1", "b").await;
    let mut c = ts.join("s1", "c").await;

    let r =
        signal(&ts, json!({"session": "s1", "to": [b.connection_id], "type": "signal:t", "data": "for b"}))
            .await;
    assert_empty(&r, StatusCode::OK);
    assert_eq!(b.notification("sendMessage").await, json!({"data": "for b", "type": "signal:t"}));
    a.no_notification("sendMessage").await;
    c.no_notification("sendMessage").await;

    // Duplicates are collapsed.
    let to = json!([a.connection_id, c.connection_id, a.connection_id]);
    let r = signal(&ts, json!({"session": "s1", "to": to, "data": "a+c"})).await;
    assert_empty(&r, StatusCode::OK);
    assert_eq!(a.notification("sendMessage").await, json!({"data": "a+c"}));
    assert_eq!(c.notification("sendMessage").await, json!({"data": "a+c"}));
    a.no_notification("sendMessage").await;
    b.no_notification("sendMessage").await;
    c.no_notification("sendMessage").await;
}

#[tokio::test]
async fn signal_bad_requests_are_400() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let mut a = ts.join("s1", "a").await;
    let id = a.connection_id.clone();

    // Missing or empty bodies.
    for body in [None, Some(""), Some("  ")] {
        let r = raw(&ts, Method::POST, "/signal", body, Auth::Good).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "/signal", "body");
    }
    for body in ["[]", "\"s1\"", "{\"session\":"] {
        let r = raw(&ts, Method::POST, "/signal", Some(body), Auth::Good).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "/signal", "JSON");
    }
    for (field, body) in [
        ("session", json!({})),
        ("session", json!({"to": [id], "data": "x"})),
        ("session", json!({"session": null, "data": "x"})),
        ("session", json!({"session": 5})),
        ("session", json!({"session": ["s1"]})),
        ("to", json!({"session": "s1", "to": id})),
        ("to", json!({"session": "s1", "to": {"id": id}})),
        ("to", json!({"session": "s1", "to": [1]})),
        ("to", json!({"session": "s1", "to": [id, true]})),
        ("to", json!({"session": "s1", "to": [[id]]})),
        ("type", json!({"session": "s1", "type": 5})),
        ("type", json!({"session": "s1", "type": {"t": 1}})),
        ("data", json!({"session": "s1", "data": 5})),
        ("data", json!({"session": "s1", "data": true})),
        ("data", json!({"session": "s1", "data": {"k": "v"}})),
        ("data", json!({"session": "s1", "data": ["x"]})),
    ] {
        let r = signal(&ts, body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "/signal", field);
    }
    a.no_notification("sendMessage").await;
}

#[tokio::test]
async fn signal_data_over_the_limit_is_400() {
    let ts = TestServer::start_with(|c| c.max_signal_bytes = 16).await;
    ts.create_session("s1").await;
    let mut a = ts.join("s1", "a").await;
    let at_limit = "0123456789abcdef";
    assert_empty(&signal(&ts, json!({"session": "s1", "data": at_limit})).await, StatusCode::OK);
    assert_eq!(a.notification("sendMessage").await, json!({"data": at_limit}));

    let r = signal(&ts, json!({"session": "s1", "data": format!("{at_limit}!")})).await;
    let b = assert_error(&r, StatusCode::BAD_REQUEST, "/signal", "data");
    assert!(b["message"].as_str().unwrap().contains("16"), "the limit is named: {b}");
    // Multi-byte characters count in bytes.
    let r = signal(&ts, json!({"session": "s1", "data": "ééééééééé"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "/signal", "data");
    a.no_notification("sendMessage").await;
    let config = ok_json(&call(&ts, Method::GET, "/config", None).await);
    assert_eq!(config["SIGNALROOM_MAX_SIGNAL_BYTES"], 16);
}

#[tokio::test]
async fn signal_unknown_session_is_404_with_empty_body() {
    let ts = TestServer::start().await;
    assert_empty(&signal(&ts, json!({"session": "nope", "data": "x"})).await, StatusCode::NOT_FOUND);
    assert_empty(
        &signal(&ts, json!({"session": "nope", "to": ["con_Abcdefghij"]})).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn signal_to_never_joined_session_is_406_with_empty_body() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    assert_empty(&signal(&ts, json!({"session": "s1", "data": "x"})).await, StatusCode::NOT_ACCEPTABLE);
    let (_, pending) = ts.connection("s1", json!({})).await;
    assert_empty(
        &signal(&ts, json!({"session": "s1", "to": [pending], "data": "x"})).await,
        StatusCode::NOT_ACCEPTABLE,
    );
    // The session is still there.
    assert_eq!(ok_json(&call(&ts, Method::GET, "/sessions/s1", None).await)["id"], "s1");
}

#[tokio::test]
async fn signal_to_unknown_or_null_recipient_is_406_and_delivers_nothing() {
    let ts = TestServer::start().await;
    ts.create_session("s1").await;
    let mut a = ts.join("s1", "a").await;
    let mut b = ts.join("s1", "b").await;
    let leaver = ts.join("s1", "leaver").await;
    let left_id = leaver.connection_id.clone();
    let mut leaver = leaver;
    leaver.call("leaveRoom", Some(json!({}))).await.expect("leaves");
    assert_eq!(a.notification("participantLeft").await["connectionId"], left_id.as_str());
    let (_, pending) = ts.connection("s1", json!({})).await;

    let bad_recipients = [
        json!([a.connection_id, "con_Unknown123"]),
        json!(["con_Unknown123"]),
        json!([a.connection_id, null]),
        json!([null]),
        json!([b.connection_id, pending]),
        json!([left_id]),
        json!([""]),
    ];
    for to in bad_recipients {
        let r = signal(&ts, json!({"session": "s1", "to": to, "data": "x"})).await;
        let body = assert_error(&r, StatusCode::NOT_ACCEPTABLE, "/signal", "");
        assert_eq!(body["message"], "\"to\" array has no valid connection identifiers", "to = {to}");
    }
    a.no_notification("sendMessage").await;
    b.no_notification("sendMessage").await;
}

// ---- lifecycle -------------------------------------------------------------------------------

#[tokio::test]
async fn session_is_deleted_when_the_last_participant_leaves() {
    let ts = TestServer::start().await;
    let first = ok_json(
        &call(
            &ts,
            Method::POST,
            "/sessions",
            Some(json!({"customSessionId": "life", "mediaMode": "RELAYED"})),
        )
        .await,
    );
    let mut a = ts.join("life", "a").await;
    let mut b = ts.join("life", "b").await;
    let (pending_token, _) = ts.connection("life", json!({})).await;

    a.call("leaveRoom", Some(json!({}))).await.expect("a leaves");
    let s = ok_json(&call(&ts, Method::GET, "/sessions/life", None).await);
    assert_eq!(s["connections"]["numberOfElements"], 1, "b is still there: {s}");
    assert_eq!(s["connections"]["content"][0]["id"], b.connection_id.as_str());

    b.call("leaveRoom", Some(json!({}))).await.expect("b leaves");
    assert_empty(&call(&ts, Method::GET, "/sessions/life", None).await, StatusCode::NOT_FOUND);
    assert_empty(&call(&ts, Method::GET, "/sessions/life/connection", None).await, StatusCode::NOT_FOUND);
    assert_empty(&signal(&ts, json!({"session": "life", "data": "x"})).await, StatusCode::NOT_FOUND);
    let list = ok_json(&call(&ts, Method::GET, "/sessions?pendingConnections=true", None).await);
    assert_eq!(list, json!({"numberOfElements": 0, "content": []}));
    let (_, r) = join_with(&ts, "life", &pending_token, "").await;
    assert_eq!(r.expect_err("the session is gone")["code"], 202);

    // The same custom id can be created again: a fresh session.
    let again =
        ok_json(&call(&ts, Method::POST, "/sessions", Some(json!({"customSessionId": "life"}))).await);
    assert_default_session(&again, "life", "life");
    assert!(again["createdAt"].as_u64() >= first["createdAt"].as_u64());
    // The old pending token does not belong to the new session.
    let (_, r) = join_with(&ts, "life", &pending_token, "").await;
    assert_eq!(r.expect_err("old tokens are dead")["code"], 401);
    let mut c = ts.join("life", "c").await;
    assert_empty(&signal(&ts, json!({"session": "life", "data": "back"})).await, StatusCode::OK);
    assert_eq!(c.notification("sendMessage").await, json!({"data": "back"}));
}

#[tokio::test]
async fn never_joined_sessions_are_garbage_collected() {
    let ts = TestServer::start_with(|c| {
        c.session_gc_interval = Duration::from_millis(100);
        c.session_gc_threshold = Duration::from_millis(200);
    })
    .await;
    ts.create_session("idle").await;
    ts.create_session("idle_with_pending").await;
    let (pending_token, _) = ts.connection("idle_with_pending", json!({})).await;
    ts.create_session("busy").await;
    let mut a = ts.join("busy", "a").await;

    eventually_status(&ts, "/sessions/idle", StatusCode::NOT_FOUND).await;
    eventually_status(&ts, "/sessions/idle_with_pending", StatusCode::NOT_FOUND).await;
    let (_, r) = join_with(&ts, "idle_with_pending", &pending_token, "").await;
    assert_eq!(r.expect_err("collected session")["code"], 202);

    // Several more collection rounds pass: the joined session stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = ok_json(&call(&ts, Method::GET, "/sessions/busy", None).await);
    assert_eq!(s["connections"]["numberOfElements"], 1);
    assert_eq!(s["connections"]["content"][0]["id"], a.connection_id.as_str());
    let list = ok_json(&call(&ts, Method::GET, "/sessions", None).await);
    assert_eq!(list["numberOfElements"], 1, "{list}");
    assert_empty(&signal(&ts, json!({"session": "busy", "data": "alive"})).await, StatusCode::OK);
    assert_eq!(a.notification("sendMessage").await, json!({"data": "alive"}));
    // Re-creating a collected id works.
    ts.create_session("idle").await;
}

// ---- config ----------------------------------------------------------------------------------

#[tokio::test]
async fn config_endpoints() {
    let ts = TestServer::start().await;
    let c = ok_json(&call(&ts, Method::GET, "/config", None).await);
    assert_eq!(c["VERSION"], "2.32.2");
    let public = c["OPENVIDU_PUBLICURL"].as_str().expect("string OPENVIDU_PUBLICURL");
    assert_eq!(public.trim_end_matches('/'), ts.url, "{c}");
    assert_eq!(c["DOMAIN_OR_PUBLIC_IP"], "127.0.0.1");
    assert_eq!(c["HTTPS_PORT"], port(&ts));
    assert_eq!(c["OPENVIDU_RECORDING"], false);
    assert_eq!(c["OPENVIDU_CDR"], false);
    assert_eq!(c["OPENVIDU_WEBRTC_SIMULCAST"], false);
    assert_eq!(c["OPENVIDU_SESSIONS_GARBAGE_INTERVAL"], 900);
    assert_eq!(c["OPENVIDU_SESSIONS_GARBAGE_THRESHOLD"], 3600);

    for (path, want) in [("/config/openvidu-version", "2.32.2"), ("/config/openvidu-recording", "false")] {
        let r = raw(&ts, Method::GET, path, None, Auth::Good).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.text, want, "{path}");
    }
    for path in ["/config", "/config/openvidu-version", "/config/openvidu-recording"] {
        let r = raw(&ts, Method::GET, path, None, Auth::Anonymous).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}
