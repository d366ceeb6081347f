//! Webhooks as OpenVidu 2.32 sends them: each event an HTTP `POST` of one JSON object (its
//! call-detail-record fields plus `"event": NAME`) to one endpoint, with the configured headers.
//!
//! Delivery never blocks the server: a task follows the [`ServerEvent`] stream and turns the
//! configured events into JSON on a bounded queue (full: the event is dropped, counted and
//! logged); another posts them in order, retrying a failed post with exponential backoff, and
//! drops (counts and logs) an event once every retry failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use signalroom_core::{ConnectionId, EndReason, SessionId};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use url::Url;

use crate::events::ServerEvent;
use crate::hub::Hub;
use crate::metrics::WebhookMetrics;
use crate::util::now_ms;

/// Events waiting to be posted before new ones are dropped.
pub const QUEUE: usize = 1024;
/// Posts of one event before it is dropped.
const ATTEMPTS: u32 = 5;
/// The wait after the first failed post; doubled after each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How long one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// OpenVidu's names of call-detail-record events: the values `--webhook-events` accepts.
pub const EVENT_NAMES: &[&str] = &[
    "sessionCreated",
    "sessionDestroyed",
    "participantJoined",
    "participantLeft",
    "webrtcConnectionCreated",
    "webrtcConnectionDestroyed",
    "recordingStatusChanged",
    "filterEventDispatched",
    "signalSent",
    "mediaNodeStatusChanged",
    "autoscaling",
    "nodeCrashed",
    "nodeRecovered",
    "mediaServerCrashed",
    "mediaServerReconnected",
    "broadcastStarted",
    "broadcastStopped",
];

/// The events OpenVidu's default `OPENVIDU_WEBHOOK_EVENTS` leaves out (`signalSent` is sent
/// only when asked for); the default is every other one of [`EVENT_NAMES`].
const NOT_BY_DEFAULT: &[&str] =
    &["signalSent", "autoscaling", "mediaServerCrashed", "mediaServerReconnected"];

/// OpenVidu's default `OPENVIDU_WEBHOOK_EVENTS`.
fn default_events() -> Vec<String> {
    EVENT_NAMES.iter().filter(|e| !NOT_BY_DEFAULT.contains(e)).map(|&e| e.to_owned()).collect()
}

/// Where and what to post.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The endpoint (`http://` or `https://`).
    pub endpoint: Url,
    /// Headers added to every post (`Content-Type: application/json` unless given).
    pub headers: Vec<(String, String)>,
    /// The event names to post (see [`EVENT_NAMES`]).
    pub events: Vec<String>,
}

impl WebhookConfig {
    /// `endpoint` with OpenVidu's default events and no extra header.
    pub fn new(endpoint: Url) -> Self {
        Self { endpoint, headers: Vec::new(), events: default_events() }
    }

    /// Parses OpenVidu's `OPENVIDU_WEBHOOK_HEADERS`: a JSON array of `"Name: value"` strings.
    pub fn parse_headers(value: &str) -> Result<Vec<(String, String)>, String> {
        let list: Vec<String> = serde_json::from_str(value).map_err(|e| {
            format!("{value:?} is not a JSON array of \"Name: value\" strings (e.g. [\"Authorization: Basic abc\"]): {e}")
        })?;
        list.into_iter()
            .map(|h| {
                let (name, v) = h
                    .split_once(':')
                    .ok_or_else(|| format!("header {h:?} has no ':' between its name and its value"))?;
                let (name, v) = (name.trim(), v.trim());
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{name:?} is not a header name"))?;
                HeaderValue::from_str(v).map_err(|_| format!("the value of header {name:?} is not valid"))?;
                Ok((name.to_owned(), v.to_owned()))
            })
            .collect()
    }

    /// Parses OpenVidu's `OPENVIDU_WEBHOOK_EVENTS`: a JSON array of event names (a comma-separated
    /// list is taken too).
    pub fn parse_events(value: &str) -> Result<Vec<String>, String> {
        let list: Vec<String> = if value.trim_start().starts_with('[') {
            serde_json::from_str(value)
                .map_err(|e| format!("{value:?} is not a JSON array of event names: {e}"))?
        } else {
            value.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
        };
        for name in &list {
            if !EVENT_NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "{name:?} is not an OpenVidu event name (one of {})",
                    EVENT_NAMES.join(", ")
                ));
            }
        }
        Ok(list)
    }
}

/// A running webhook sender.
#[derive(Debug)]
pub(crate) struct Webhook {
    tasks: [tokio::task::JoinHandle<()>; 2],
    /// Events taken from the stream and not yet posted or dropped.
    pending: Arc<AtomicUsize>,
}

impl Webhook {
    /// Starts following `hub`'s events.
    pub(crate) fn start(
        config: &WebhookConfig,
        hub: &Arc<Hub>,
        metrics: WebhookMetrics,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            headers.insert(name, HeaderValue::from_str(value).map_err(|e| e.to_string())?);
        }
        headers.entry(CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(POST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        if config.events.iter().any(|e| e == "signalSent") {
            hub.want_signals();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let pending = Arc::new(AtomicUsize::new(0));
        let follow = tokio::spawn(follow(
            hub.subscribe(),
            config.events.clone(),
            tx,
            metrics.clone(),
            Arc::clone(&pending),
        ));
        let post = tokio::spawn(post(client, config.endpoint.clone(), rx, metrics, Arc::clone(&pending)));
        Ok(Self { tasks: [follow, post], pending })
    }

    /// Waits (at most `limit`) for the events emitted so far to be posted or dropped.
    pub(crate) async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        // Let the follower take what was just emitted.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while self.pending.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Turns events into OpenVidu's JSON, remembering what later events need.
#[derive(Default)]
struct Shapes {
    /// Creation time of each session open on this server.
    sessions: HashMap<SessionId, u64>,
}

impl Shapes {
    /// The common fields: `sessionId`, `uniqueSessionId` (when the session's start is known),
    /// `timestamp`.
    fn base(&self, session: &SessionId, timestamp: u64) -> Map<String, Value> {
        let mut json = Map::new();
        json.insert("sessionId".into(), session.as_str().into());
        if let Some(start) = self.sessions.get(session) {
            json.insert("uniqueSessionId".into(), format!("{session}_{start}").into());
        }
        json.insert("timestamp".into(), timestamp.into());
        json
    }

    /// The event's name and JSON, or `None` for an event OpenVidu does not post.
    fn shape(&mut self, event: &ServerEvent, now: u64) -> Option<(&'static str, Map<String, Value>)> {
        match event {
            ServerEvent::SessionCreated { session, at } => {
                self.sessions.insert(session.clone(), *at);
                Some(("sessionCreated", self.base(session, *at)))
            }
            ServerEvent::SessionDestroyed { session, reason } => {
                let mut json = self.base(session, now);
                if let Some(start) = self.sessions.remove(session) {
                    json.insert("startTime".into(), start.into());
                    json.insert("duration".into(), (now.saturating_sub(start) / 1000).into());
                }
                json.insert("reason".into(), session_end(reason).into());
                Some(("sessionDestroyed", json))
            }
            ServerEvent::ParticipantJoined {
                session,
                connection,
                at,
                ip,
                platform,
                client_data,
                server_data,
                ..
            } => {
                let mut json = self.base(session, *at);
                participant(&mut json, connection, [ip, platform, client_data, server_data]);
                Some(("participantJoined", json))
            }
            ServerEvent::ParticipantLeft {
                session,
                connection,
                reason,
                joined_at,
                ip,
                platform,
                client_data,
                server_data,
            } => {
                // What it said at its join comes with the event, whichever node it joined through.
                let mut json = self.base(session, now);
                json.insert("startTime".into(), (*joined_at).into());
                json.insert("duration".into(), (now.saturating_sub(*joined_at) / 1000).into());
                json.insert("reason".into(), reason.as_str().into());
                participant(&mut json, connection, [ip, platform, client_data, server_data]);
                Some(("participantLeft", json))
            }
            ServerEvent::SignalSent { session, from, to, everyone, kind, data, .. } => {
                let mut json = self.base(session, now);
                let to: Vec<Value> =
                    if to.is_empty() { everyone } else { to }.iter().map(|id| id.as_str().into()).collect();
                json.insert("from".into(), from.as_ref().map_or(Value::Null, |f| f.as_str().into()));
                json.insert("to".into(), to.into());
                let kind = kind.as_deref().map(|k| k.strip_prefix("signal:").unwrap_or(k));
                json.insert("type".into(), kind.map_or(Value::Null, Into::into));
                json.insert("data".into(), data.as_deref().map_or(Value::Null, Into::into));
                Some(("signalSent", json))
            }
            _ => None,
        }
    }
}

/// A participant's fields, as OpenVidu's `participantJoined` and `participantLeft` have them:
/// its connection, then its join's address, platform, client data and server data.
fn participant(json: &mut Map<String, Value>, connection: &ConnectionId, joined: [&String; 4]) {
    let [ip, platform, client_data, server_data] = joined;
    // OpenVidu still sends the deprecated `participantId`, equal to `connectionId`.
    json.insert("participantId".into(), connection.as_str().into());
    json.insert("connectionId".into(), connection.as_str().into());
    // No geolocation database: OpenVidu's location of an unknown address.
    json.insert("location".into(), "unknown".into());
    json.insert("ip".into(), ip.as_str().into());
    json.insert("platform".into(), platform.as_str().into());
    json.insert("clientData".into(), client_data.as_str().into());
    json.insert("serverData".into(), server_data.as_str().into());
}

/// Why a session ended, as OpenVidu reports it: its last participant leaving on its own is
/// `lastParticipantLeft`.
fn session_end(reason: &EndReason) -> &str {
    match reason {
        EndReason::Disconnect
        | EndReason::ForceDisconnectByUser
        | EndReason::ForceDisconnectByServer
        | EndReason::NetworkDisconnect => "lastParticipantLeft",
        other => other.as_str(),
    }
}

/// Follows the server's events; queues the configured ones as JSON.
async fn follow(
    mut events: tokio::sync::broadcast::Receiver<ServerEvent>,
    wanted: Vec<String>,
    queue: mpsc::Sender<(&'static str, Value)>,
    metrics: WebhookMetrics,
    pending: Arc<AtomicUsize>,
) {
    let mut shapes = Shapes::default();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "webhook: fell behind the server's events; some are not posted");
                metrics.dropped("lagged", n);
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Some((name, mut json)) = shapes.shape(&event, now_ms()) else { continue };
        if !wanted.iter().any(|w| w == name) {
            continue;
        }
        json.insert("event".into(), name.into());
        pending.fetch_add(1, Ordering::SeqCst);
        if queue.try_send((name, Value::Object(json))).is_err() {
            pending.fetch_sub(1, Ordering::SeqCst);
            metrics.dropped("queue_full", 1);
            tracing::warn!(event = name, "webhook: {QUEUE} events are waiting already; this one is dropped");
        }
    }
}

/// Posts the queued events in order.
async fn post(
    client: reqwest::Client,
    endpoint: Url,
    mut queue: mpsc::Receiver<(&'static str, Value)>,
    metrics: WebhookMetrics,
    pending: Arc<AtomicUsize>,
) {
    // For logs: without a password the URL may carry.
    let shown = crate::broker::redact(endpoint.as_str());
    while let Some((name, body)) = queue.recv().await {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let sent = client.post(endpoint.clone()).json(&body).send().await;
            let problem = match sent {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("status {}", response.status())),
                Err(e) => Some(e.without_url().to_string()),
            };
            let Some(problem) = problem else {
                tracing::debug!(event = name, "webhook: posted");
                metrics.delivered.inc();
                break;
            };
            metrics.failures.inc();
            if attempt == ATTEMPTS {
                metrics.dropped("retries_exhausted", 1);
                tracing::warn!(event = name, endpoint = %shown, "webhook: {problem}; dropped after {ATTEMPTS} attempts");
                break;
            }
            tracing::info!(event = name, endpoint = %shown, "webhook: {problem}; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_default_events_are_openvidus() {
        let config = WebhookConfig::new("http://127.0.0.1:1/hook".parse().unwrap());
        let openvidu = "sessionCreated,sessionDestroyed,participantJoined,participantLeft,\
                        webrtcConnectionCreated,webrtcConnectionDestroyed,recordingStatusChanged,\
                        filterEventDispatched,mediaNodeStatusChanged,nodeCrashed,nodeRecovered,\
                        broadcastStarted,broadcastStopped";
        assert_eq!(config.events.join(","), openvidu);
    }

    #[test]
    fn parses_openvidu_headers_and_events() {
        let h = WebhookConfig::parse_headers(r#"["Authorization: Basic YWJj", "X-A:b"]"#).unwrap();
        assert_eq!(h, vec![("Authorization".into(), "Basic YWJj".into()), ("X-A".into(), "b".into())]);
        assert!(WebhookConfig::parse_headers(r#"["NoColon"]"#).unwrap_err().contains("no ':'"));
        assert!(WebhookConfig::parse_headers("Authorization: x").unwrap_err().contains("JSON array"));
        let e = WebhookConfig::parse_events(r#"["sessionCreated","signalSent"]"#).unwrap();
        assert_eq!(e, ["sessionCreated", "signalSent"]);
        assert_eq!(WebhookConfig::parse_events("participantJoined, participantLeft").unwrap().len(), 2);
        assert!(
            WebhookConfig::parse_events(r#"["sessionMade"]"#).unwrap_err().contains("not an OpenVidu event")
        );
    }

    #[test]
    fn shapes_are_openvidus() {
        let mut s = Shapes::default();
        let ses = SessionId::from("S");
        let con = ConnectionId::from("con_A");
        let (name, created) =
            s.shape(&ServerEvent::SessionCreated { session: ses.clone(), at: 1000 }, 1000).unwrap();
        assert_eq!(name, "sessionCreated");
        assert_eq!(
            Value::Object(created),
            json!({"sessionId": "S", "uniqueSessionId": "S_1000", "timestamp": 1000})
        );
        let joined = ServerEvent::ParticipantJoined {
            session: ses.clone(),
            connection: con.clone(),
            at: 2000,
            ip: "127.0.0.1".into(),
            platform: "Chrome".into(),
            client_data: "c".into(),
            server_data: "s".into(),
            took: Duration::ZERO,
        };
        let (_, j) = s.shape(&joined, 2000).unwrap();
        assert_eq!(j["connectionId"], "con_A");
        assert_eq!(j["participantId"], "con_A");
        assert_eq!(j["serverData"], "s");
        let signal = ServerEvent::SignalSent {
            session: ses.clone(),
            from: Some(con.clone()),
            to: vec![],
            everyone: vec![con.clone(), ConnectionId::from("con_B")],
            kind: Some("signal:chat".into()),
            data: Some("hi".into()),
            recipients: 1,
            bytes: 2,
        };
        let (_, sig) = s.shape(&signal, 2500).unwrap();
        assert_eq!(
            Value::Object(sig),
            json!({"sessionId": "S", "uniqueSessionId": "S_1000", "timestamp": 2500,
            "from": "con_A", "to": ["con_A", "con_B"], "type": "chat", "data": "hi"})
        );
        // (Its join's fields come with the event: the same on a node that never saw the join.)
        let left = ServerEvent::ParticipantLeft {
            session: ses.clone(),
            connection: con,
            reason: EndReason::Disconnect,
            joined_at: 2000,
            ip: "127.0.0.1".into(),
            platform: "Chrome".into(),
            client_data: "c".into(),
            server_data: "s".into(),
        };
        let (_, l) = Shapes::default().shape(&left, 5000).unwrap();
        assert_eq!(
            (l["startTime"].as_u64(), l["duration"].as_u64(), l["reason"].as_str()),
            (Some(2000), Some(3), Some("disconnect"))
        );
        assert_eq!((l["clientData"].as_str(), l["serverData"].as_str()), (Some("c"), Some("s")));
        let destroyed = ServerEvent::SessionDestroyed { session: ses, reason: EndReason::Disconnect };
        let (_, d) = s.shape(&destroyed, 9000).unwrap();
        assert_eq!(
            (d["startTime"].as_u64(), d["duration"].as_u64(), d["reason"].as_str()),
            (Some(1000), Some(8), Some("lastParticipantLeft"))
        );
        assert!(s.sessions.is_empty());
    }
}
