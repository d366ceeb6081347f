//! `ServerApi`: the REST API of an OpenVidu 2.x server under `/openvidu/api` (spec §6).

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use signalroom_core::rest::{ConnectionObject, Page, SessionObject, SignalRequest};
use signalroom_core::signal::wire_type;
use signalroom_core::{ConnectionId, Role, SessionId};

use crate::error::{Error, Result};

/// Timeout of one REST request.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The Basic-auth user of OpenVidu's REST API.
const USER: &str = "OPENVIDUAPP";

/// Options of [`ServerApi::with_options`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiOptions {
    /// Accept any TLS certificate (self-signed development certificates). Never in production.
    pub accept_invalid_certs: bool,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self { accept_invalid_certs: false, timeout: API_TIMEOUT }
    }
}

impl ApiOptions {
    /// Accepts any TLS certificate (development only).
    pub fn with_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self
    }

    /// Sets the timeout of one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What [`ServerApi::create_connection`] creates.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectionOptions {
    /// Server data (`data`), given to every participant in the connection's metadata.
    pub data: Option<String>,
    /// The role (server default: `PUBLISHER`).
    pub role: Option<Role>,
    /// Whether the connection is recorded (server default: `true`).
    pub record: Option<bool>,
}

impl ConnectionOptions {
    /// Sets the server data.
    pub fn with_data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Sets the role.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Sets whether the connection is recorded.
    pub fn with_record(mut self, record: bool) -> Self {
        self.record = Some(record);
        self
    }

    fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), "WEBRTC".into());
        if let Some(data) = &self.data {
            body.insert("data".into(), data.clone().into());
        }
        if let Some(role) = self.role {
            body.insert("role".into(), role.as_str().into());
        }
        if let Some(record) = self.record {
            body.insert("record".into(), record.into());
        }
        Value::Object(body)
    }
}

/// A client of the REST API of an OpenVidu 2.x server (ours or the real one): sessions,
/// connections (tokens) and server-sent signals. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> signalroom_client::Result<()> {
/// use signalroom_client::{ConnectionOptions, ServerApi};
///
/// let api = ServerApi::new("http://127.0.0.1:4443", "MY_SECRET")?;
/// let session = api.create_session(Some("lobby")).await?;
/// let conn = api.create_connection(&session.id, &ConnectionOptions::default().with_data("bot")).await?;
/// println!("join with {}", conn.token);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServerApi {
    client: reqwest::Client,
    base: Url,
    secret: String,
}

impl ServerApi {
    /// A client of the server at `base_url` (`http(s)://host[:port]`; any path is ignored, as
    /// openvidu-node-client does) with the REST secret.
    ///
    /// Errors: [`Error::Invalid`] when `base_url` is not an `http(s)` URL.
    pub fn new(base_url: &str, secret: &str) -> Result<Self> {
        Self::with_options(base_url, secret, ApiOptions::default())
    }

    /// As [`ServerApi::new`], with options.
    pub fn with_options(base_url: &str, secret: &str, options: ApiOptions) -> Result<Self> {
        let invalid = |reason: &str| {
            Error::Invalid(signalroom_core::Error::InvalidField {
                field: "base_url",
                reason: reason.to_owned(),
            })
        };
        let mut base = Url::parse(base_url).map_err(|e| invalid(&format!("{base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid(&format!("{base_url:?} is not an http(s) URL")));
        }
        base.set_path("/openvidu/api");
        base.set_query(None);
        base.set_fragment(None);
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(options.accept_invalid_certs)
            .timeout(options.timeout)
            .build()
            .map_err(|e| Error::Http(Box::new(e)))?;
        Ok(Self { client, base, secret: secret.to_owned() })
    }

    /// The REST base: `http(s)://host[:port]/openvidu/api`.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("http URLs have paths").extend(segments);
        url
    }

    async fn send(&self, method: Method, url: Url, body: Option<&Value>) -> Result<reqwest::Response> {
        let mut request = self.client.request(method, url).basic_auth(USER, Some(&self.secret));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| Error::Http(Box::new(e)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    async fn json<T: DeserializeOwned>(&self, what: &'static str, response: reqwest::Response) -> Result<T> {
        let bytes = response.bytes().await.map_err(|e| Error::Http(Box::new(e)))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::UnexpectedResponse { method: what, reason: e.to_string() })
    }

    /// Creates a session (`POST /sessions`), with `custom_session_id` or a random `ses_…` id.
    ///
    /// When a session with that custom id exists already (409), returns it instead, as
    /// openvidu-node-client does; so calling this twice with the same id is safe.
    pub async fn create_session(&self, custom_session_id: Option<&str>) -> Result<SessionObject> {
        self.create_session_with(custom_session_id, None).await
    }

    /// As [`ServerApi::create_session`], with signalroom's `signalHistory` extension: the session
    /// keeps its last broadcast signals of the chosen types, for late joiners
    /// ([`ConnectOptions::history`](crate::ConnectOptions::history)) and
    /// [`ServerApi::signal_history`].
    pub async fn create_session_with(
        &self,
        custom_session_id: Option<&str>,
        signal_history: Option<&signalroom_core::history::SignalHistory>,
    ) -> Result<SessionObject> {
        let mut body = match custom_session_id {
            Some(id) => json!({ "customSessionId": id }),
            None => json!({}),
        };
        if let Some(history) = signal_history {
            body["signalHistory"] = serde_json::to_value(history).unwrap_or_default();
        }
        let url = self.url(&["sessions"]);
        for _ in 0..2 {
            match self.send(Method::POST, url.clone(), Some(&body)).await {
                Ok(response) => return self.json("create_session", response).await,
                Err(Error::Api { status: 409, .. }) if custom_session_id.is_some() => {
                    let id = custom_session_id.unwrap_or_default();
                    match self.get_session(id).await {
                        // Closed between the two calls: create it again.
                        Err(Error::Api { status: 404, .. }) => continue,
                        other => return other,
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Api { status: 409, message: "session exists but cannot be fetched".to_owned() })
    }

    /// A session (`GET /sessions/{id}?pendingConnections=true`), pending connections included.
    /// 404 when it does not exist.
    pub async fn get_session(&self, session_id: impl AsRef<str>) -> Result<SessionObject> {
        let mut url = self.url(&["sessions", session_id.as_ref()]);
        url.set_query(Some("pendingConnections=true"));
        let response = self.send(Method::GET, url, None).await?;
        self.json("get_session", response).await
    }

    /// The signals a session kept (`GET /sessions/{id}/signals`, a signalroom extension), oldest
    /// first: the last `limit` (the server's default: 100) of those numbered after `since`. Empty
    /// for a session keeping none; 404 when it does not exist.
    pub async fn signal_history(
        &self,
        session_id: impl AsRef<str>,
        limit: Option<usize>,
        since: Option<u64>,
    ) -> Result<Vec<signalroom_core::history::HistoryEntry>> {
        let mut url = self.url(&["sessions", session_id.as_ref(), "signals"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(limit) = limit {
                query.append_pair("limit", &limit.to_string());
            }
            if let Some(since) = since {
                query.append_pair("since", &since.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let response = self.send(Method::GET, url, None).await?;
        let page: Page<signalroom_core::history::HistoryEntry> =
            self.json("signal_history", response).await?;
        Ok(page.content)
    }

    /// Every session (`GET /sessions?pendingConnections=true`).
    pub async fn list_sessions(&self) -> Result<Vec<SessionObject>> {
        let mut url = self.url(&["sessions"]);
        url.set_query(Some("pendingConnections=true"));
        let response = self.send(Method::GET, url, None).await?;
        let page: Page<SessionObject> = self.json("list_sessions", response).await?;
        Ok(page.content)
    }

    /// Makes a signalroom node that shares its sessions through a broker drain, as SIGTERM does
    /// (`POST /signalroom/drain`, a signalroom extension): it stops taking new sockets, closes its
    /// sockets over its drain window so that their participants resume on the other nodes, then
    /// exits. 400 for a node without a broker (it has nowhere to drain to); 404 from a server
    /// that is not signalroom.
    pub async fn drain(&self) -> Result<()> {
        self.send(Method::POST, self.url(&["signalroom", "drain"]), Some(&json!({}))).await.map(drop)
    }

    /// Closes a session (`DELETE /sessions/{id}`): every participant is evicted with
    /// `sessionClosedByServer`. 404 when it does not exist.
    pub async fn close_session(&self, session_id: impl AsRef<str>) -> Result<()> {
        self.send(Method::DELETE, self.url(&["sessions", session_id.as_ref()]), None).await.map(drop)
    }

    /// Creates a connection (`POST /sessions/{id}/connection`); its `token` joins the session
    /// once. 404 when the session does not exist.
    pub async fn create_connection(
        &self,
        session_id: impl AsRef<str>,
        options: &ConnectionOptions,
    ) -> Result<ConnectionObject> {
        let url = self.url(&["sessions", session_id.as_ref(), "connection"]);
        let response = self.send(Method::POST, url, Some(&options.to_body())).await?;
        self.json("create_connection", response).await
    }

    /// The connections of a session, pending ones included (`GET /sessions/{id}/connection`).
    pub async fn list_connections(&self, session_id: impl AsRef<str>) -> Result<Vec<ConnectionObject>> {
        let mut url = self.url(&["sessions", session_id.as_ref(), "connection"]);
        url.set_query(Some("pendingConnections=true"));
        let response = self.send(Method::GET, url, None).await?;
        let page: Page<ConnectionObject> = self.json("list_connections", response).await?;
        Ok(page.content)
    }

    /// A connection (`GET /sessions/{id}/connection/{cid}`): 400 when the session does not
    /// exist, 404 when the connection does not.
    pub async fn get_connection(
        &self,
        session_id: impl AsRef<str>,
        connection_id: impl AsRef<str>,
    ) -> Result<ConnectionObject> {
        let url = self.url(&["sessions", session_id.as_ref(), "connection", connection_id.as_ref()]);
        let response = self.send(Method::GET, url, None).await?;
        self.json("get_connection", response).await
    }

    /// Deletes a connection (`DELETE /sessions/{id}/connection/{cid}`): an active participant is
    /// evicted with `forceDisconnectByServer`; a pending token becomes invalid.
    pub async fn delete_connection(
        &self,
        session_id: impl AsRef<str>,
        connection_id: impl AsRef<str>,
    ) -> Result<()> {
        let url = self.url(&["sessions", session_id.as_ref(), "connection", connection_id.as_ref()]);
        self.send(Method::DELETE, url, None).await.map(drop)
    }

    /// Sends a signal from the server (`POST /signal`) to `to`, or to everybody when `to` is
    /// empty. Receivers see it with `from = None`.
    ///
    /// `kind` is normalised as [`Signal`](signalroom_core::signal::Signal) does (`chat` →
    /// `signal:chat`) so that subscriptions to `signal:chat` receive it; `None` sends no type.
    /// Use [`ServerApi::send_signal`] to send a type verbatim.
    ///
    /// Errors: 404 unknown session, 406 session never joined or a recipient not in it.
    pub async fn signal(
        &self,
        session_id: impl AsRef<str>,
        data: &str,
        kind: Option<&str>,
        to: &[ConnectionId],
    ) -> Result<()> {
        let request = SignalRequest {
            session: SessionId::from(session_id.as_ref()),
            to: (!to.is_empty()).then(|| to.to_vec()),
            kind: kind.map(wire_type),
            data: Some(data.to_owned()),
        };
        self.send_signal(&request).await
    }

    /// Sends a signal request verbatim (`POST /signal`).
    pub async fn send_signal(&self, request: &SignalRequest) -> Result<()> {
        let body = serde_json::to_value(request).expect("signal requests serialise");
        self.send(Method::POST, self.url(&["signal"]), Some(&body)).await.map(drop)
    }
}

async fn api_error(response: reqwest::Response) -> Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Error::Api { status: status.as_u16(), message: error_message(status, &body) }
}

/// The body's `message` (OpenVidu's error JSON), else the body, else the reason phrase.
fn error_message(status: StatusCode, body: &str) -> String {
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(body) {
        if let Some(Value::String(message)) = obj.get("message") {
            return message.clone();
        }
    }
    let body = body.trim();
    if !body.is_empty() {
        return body.chars().take(500).collect();
    }
    status.canonical_reason().unwrap_or("error").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_scheme_host_and_port() {
        let api = ServerApi::new("https://ov.example.com:4443/some/path/?x=1", "s").unwrap();
        assert_eq!(api.base_url(), "https://ov.example.com:4443/openvidu/api");
        assert_eq!(
            api.url(&["sessions", "a b", "connection"]).as_str(),
            "https://ov.example.com:4443/openvidu/api/sessions/a%20b/connection"
        );
        assert!(ServerApi::new("ws://h", "s").is_err());
        assert!(ServerApi::new("not a url", "s").is_err());
    }

    #[test]
    fn error_messages_come_from_the_body() {
        let body = r#"{"timestamp":1,"status":400,"error":"Bad Request","message":"Parameter 'x' is wrong","path":"/p"}"#;
        assert_eq!(error_message(StatusCode::BAD_REQUEST, body), "Parameter 'x' is wrong");
        assert_eq!(error_message(StatusCode::NOT_FOUND, ""), "Not Found");
        assert_eq!(error_message(StatusCode::NOT_ACCEPTABLE, "nope\n"), "nope");
    }

    #[test]
    fn connection_bodies_omit_what_is_not_given() {
        assert_eq!(ConnectionOptions::default().to_body(), json!({"type":"WEBRTC"}));
        let o = ConnectionOptions::default().with_data("d").with_role(Role::Moderator).with_record(false);
        assert_eq!(o.to_body(), json!({"type":"WEBRTC","data":"d","role":"MODERATOR","record":false}));
    }
}
