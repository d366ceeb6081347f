//! The REST API under `/openvidu/api` (spec §6): statuses and JSON shapes as OpenVidu 2.32.2.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use signalroom_core::rest::{
    self, ConnectionProperties, ConnectionUpdate, ErrorBody, Page, SessionProperties, TokenObject,
};
use signalroom_core::signal::{SignalRequest, SignalRequestError, json_kind};
use signalroom_core::{EndReason, OPENVIDU_VERSION, SessionId};

use crate::hub::Hub;
use crate::op::SignalOp;
use crate::refusal::Refusal;
use crate::room::CloseMode;
use crate::util::{constant_time_eq, now_ms};

type Shared = AxumState<Arc<Hub>>;
type ApiResult<T = Response> = Result<T, ApiError>;

/// The `/openvidu/api` router (to be nested at that path).
pub(crate) fn router(state: Arc<Hub>) -> Router<Arc<Hub>> {
    let authenticated = Router::new()
        .route("/sessions", post(create_session).get(list_sessions))
        .route("/sessions/{id}", get(get_session).delete(close_session))
        .route("/sessions/{id}/connection", post(create_connection).get(list_connections))
        .route(
            "/sessions/{id}/connection/{cid}",
            get(get_connection).patch(update_connection).delete(delete_connection),
        )
        .route("/sessions/{id}/stream/{sid}", delete(delete_stream))
        .route("/sessions/{id}/signals", get(signal_history))
        .route("/tokens", post(create_token))
        .route("/signal", post(send_signal))
        .route("/config", get(config))
        .route("/config/openvidu-version", get(|| async { OPENVIDU_VERSION }))
        .route("/config/openvidu-recording", get(|| async { "false" }))
        .route("/config/openvidu-recording-path", get(|| async { "" }))
        .route("/config/openvidu-cdr", get(|| async { "false" }))
        .route("/signalroom/drain", post(drain))
        .fallback(|| async { ApiError::from(Refusal::NoEndpoint) })
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), basic_auth));
    let body_limit = state.config.max_rest_body_bytes;
    Router::new()
        .route("/config/openvidu-publicurl", get(public_url))
        .merge(authenticated)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state, render_errors))
}

/// A REST error: a status, and a message for the JSON body (`None`: empty body, as OpenVidu).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: Option<String>,
}

impl ApiError {
    fn empty(status: StatusCode) -> Self {
        Self { status, message: None }
    }

    fn bad(message: impl Into<String>) -> Self {
        Refusal::BadRequest(message.into()).into()
    }

    /// A refusal on a route where a missing session is `missing` (OpenVidu answers 400 on
    /// some routes, 404 on others).
    fn refused(refusal: Refusal, missing: StatusCode) -> Self {
        let (status, message) = refusal.http(missing);
        Self { status, message }
    }
}

impl From<rest::BadRequest> for ApiError {
    fn from(bad: rest::BadRequest) -> Self {
        Refusal::BadRequest(bad.0).into()
    }
}

impl From<SignalRequestError> for ApiError {
    fn from(e: SignalRequestError) -> Self {
        match e {
            SignalRequestError::BadRequest(bad) => bad.into(),
            _ => Refusal::NoValidRecipient.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        Self::refused(refusal, StatusCode::NOT_FOUND)
    }
}

/// Carries an error message to [`render_errors`], which knows the path.
#[derive(Debug, Clone)]
struct ErrorMessage(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if let Some(message) = self.message {
            response.extensions_mut().insert(ErrorMessage(message));
        }
        response
    }
}

/// Renders [`ApiError`] messages as OpenVidu's JSON error body; so too the 413 of a body over the
/// limit (axum's own is plain text).
async fn render_errors(AxumState(hub): Shared, request: Request, next: Next) -> Response {
    // The full path (`/openvidu/api/...`), as OpenVidu reports it: this router is nested, so
    // `request.uri()` has the prefix stripped.
    let path = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().path(), |u| u.0.path())
        .to_owned();
    let mut response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response.extensions().get::<ErrorMessage>().is_none()
    {
        let (_, message) = Refusal::BodyTooLarge(hub.config.max_rest_body_bytes).http(StatusCode::NOT_FOUND);
        if let Some(message) = message {
            response.extensions_mut().insert(ErrorMessage(message));
        }
    }
    if let Some(ErrorMessage(message)) = response.extensions_mut().remove::<ErrorMessage>() {
        let status = response.status();
        tracing::debug!(%path, status = status.as_u16(), %message, "REST request refused");
        let body = ErrorBody {
            timestamp: now_ms(),
            status: status.as_u16(),
            error: status.canonical_reason().unwrap_or("Error").to_owned(),
            message,
            path,
        };
        let mut r = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Realm\""));
        }
        return r;
    }
    response
}

/// `POST /signalroom/drain` (a signalroom extension): this node drains as on SIGTERM, then
/// exits. 202 once asked; 400 for a node whose sessions live in its own process (it has nowhere
/// to send its participants: stop it instead, which ends their sessions as OpenVidu does).
async fn drain(AxumState(hub): Shared) -> Response {
    if hub.ask_drain() {
        (StatusCode::ACCEPTED, Json(json!({"draining": true}))).into_response()
    } else {
        let message =
            "this node shares no sessions (no --broker): it has nowhere to drain to; stop it instead";
        (StatusCode::BAD_REQUEST, Json(json!({"status": 400, "message": message}))).into_response()
    }
}

/// HTTP Basic `OPENVIDUAPP:<secret>`, compared in constant time.
async fn basic_auth(AxumState(state): Shared, request: Request, next: Next) -> Response {
    let ok = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (user, secret) = pair.split_once(':')?;
            Some(user == rest::BASIC_AUTH_USER && constant_time_eq(secret, &state.config.secret))
        })
        .unwrap_or(false);
    if !ok {
        return ApiError::from(Refusal::Unauthorized).into_response();
    }
    next.run(request).await
}

// ---- body and query helpers ------------------------------------------------------------------

/// Parses an optional JSON object body. JSON `null` values count as absent keys.
fn object_body(body: &Bytes) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut m)) => {
            m.retain(|_, v| !v.is_null());
            Ok(m)
        }
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => {
            Err(ApiError::bad(format!("request body must be a JSON object, not {}", json_kind(&other))))
        }
        Err(e) => Err(ApiError::bad(format!("request body is not valid JSON: {e}"))),
    }
}

fn pending_param(q: &HashMap<String, String>, default: bool) -> bool {
    q.get("pendingConnections").map_or(default, |v| v.eq_ignore_ascii_case("true"))
}

// ---- sessions --------------------------------------------------------------------------------

async fn create_session(AxumState(hub): Shared, body: Bytes) -> ApiResult {
    let props = SessionProperties::from_body(&object_body(&body)?)?;
    let custom = props.custom_session_id.clone();
    Ok(Json(hub.create_session(&custom, props).await?).into_response())
}

async fn list_sessions(AxumState(hub): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    Json(Page::new(hub.sessions(pending_param(&q, false)).await)).into_response()
}

async fn get_session(
    AxumState(hub): Shared,
    Path(id): Path<SessionId>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    Ok(Json(hub.session(&id, pending_param(&q, false)).await?).into_response())
}

async fn close_session(AxumState(hub): Shared, Path(id): Path<SessionId>) -> ApiResult {
    hub.close_session(&id, EndReason::SessionClosedByServer, CloseMode::Linger).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- connections -----------------------------------------------------------------------------

async fn create_connection(AxumState(hub): Shared, Path(id): Path<SessionId>, body: Bytes) -> ApiResult {
    // A missing session is reported before a bad body, as OpenVidu does.
    hub.check_session(&id).await?;
    let props = ConnectionProperties::from_body(&object_body(&body)?)?;
    Ok(Json(hub.create_connection(&id, props).await?).into_response())
}

async fn list_connections(
    AxumState(hub): Shared,
    Path(id): Path<SessionId>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    Ok(Json(hub.session(&id, pending_param(&q, true)).await?.connections).into_response())
}

async fn get_connection(AxumState(hub): Shared, Path((id, cid)): Path<(SessionId, String)>) -> ApiResult {
    let object =
        hub.connection(&id, &cid).await.map_err(|r| ApiError::refused(r, StatusCode::BAD_REQUEST))?;
    Ok(Json(object).into_response())
}

async fn update_connection(
    AxumState(hub): Shared,
    Path((id, cid)): Path<(SessionId, String)>,
    body: Bytes,
) -> ApiResult {
    let update = ConnectionUpdate::from_body(&object_body(&body)?)?;
    Ok(Json(hub.update_connection(&id, &cid, update.role, update.record).await?).into_response())
}

async fn delete_connection(AxumState(hub): Shared, Path((id, cid)): Path<(SessionId, String)>) -> ApiResult {
    hub.delete_connection(&id, &cid).await.map_err(|r| ApiError::refused(r, StatusCode::BAD_REQUEST))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_stream(AxumState(hub): Shared, Path((id, _sid)): Path<(SessionId, String)>) -> ApiResult {
    hub.check_session(&id).await.map_err(|r| ApiError::refused(r, StatusCode::BAD_REQUEST))?;
    Err(ApiError::empty(StatusCode::NOT_FOUND))
}

async fn create_token(AxumState(hub): Shared, body: Bytes) -> ApiResult {
    let b = object_body(&body)?;
    let session_id = rest::opt_str(&b, "session")?
        .map(SessionId::from)
        .ok_or_else(|| rest::BadRequest("Parameter 'session' is mandatory".into()))?;
    let props = ConnectionProperties {
        role: rest::opt_role(&b)?.unwrap_or_default(),
        data: rest::opt_str(&b, "data")?.unwrap_or("").to_owned(),
        kurento_options: rest::opt_kurento_options(&b)?,
        ..ConnectionProperties::default()
    };
    let (data, role, kurento_options) = (props.data.clone(), props.role, props.kurento_options.clone());
    let c = hub.create_connection(&session_id, props).await.map_err(|r| match r {
        Refusal::NoSession(s) => ApiError::from(Refusal::TokenSessionNotFound(s)),
        other => other.into(),
    })?;
    Ok(Json(TokenObject {
        id: c.token.clone(),
        token: c.token.clone(),
        created_at: c.created_at,
        connection_id: c.connection_id.clone(),
        session: c.session_id.clone(),
        data,
        role,
        kurento_options: (!kurento_options.is_null()).then_some(kurento_options),
    })
    .into_response())
}

// ---- signals ---------------------------------------------------------------------------------

async fn send_signal(AxumState(hub): Shared, body: Bytes) -> ApiResult {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad("request body is missing: send a JSON object with at least 'session'"));
    }
    let req = SignalRequest::from_body(&object_body(&body)?, hub.config.max_signal_bytes)?;
    let session_id = &SessionId::from(req.session.as_str());
    let to = match req.recipients() {
        Ok(to) => to,
        Err(_) => {
            // Checked after the session: a missing session is 404, an inactive one 406.
            let active = hub.read(session_id, |room| room.is_active()).await;
            return Err(match active {
                None => Refusal::NoSession(session_id.to_string()),
                Some(false) => Refusal::NotActive,
                Some(true) => Refusal::NoValidRecipient,
            }
            .into());
        }
    };
    let mut signal =
        SignalOp { from: None, to, data: req.data.as_deref(), kind: req.kind.as_deref(), listed: false };
    let rewrite = if hub.hooked(signal.kind) { hub.check_signal(session_id, signal).await? } else { None };
    if let Some(rewrite) = &rewrite {
        signal.data = rewrite.data.as_deref().or(signal.data);
        signal.to = rewrite.to.as_deref().unwrap_or(signal.to);
    }
    hub.signal(session_id, signal).await?;
    Ok(StatusCode::OK.into_response())
}

/// signalroom's extension: the signals the session kept (`signalHistory`), oldest first, as a
/// page; `since` (a signal's `seq`) keeps those after it, `limit` (default 100) the last of them.
async fn signal_history(
    AxumState(hub): Shared,
    Path(id): Path<SessionId>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let number = |key: &str, default: u64| match q.get(key).map(|v| v.parse::<u64>()) {
        None => Ok(default),
        Some(Ok(n)) => Ok(n),
        Some(Err(_)) => Err(ApiError::bad(format!("Parameter '{key}' must be a non-negative integer"))),
    };
    let limit =
        number("limit", DEFAULT_HISTORY_LIMIT)?.min(signalroom_core::history::MAX_HISTORY_SIZE as u64);
    let since = number("since", 0)?;
    let now = now_ms();
    let entries = hub
        .read(&id, move |room| room.signal_history(now, since, limit as usize))
        .await
        .ok_or_else(|| Refusal::NoSession(id.to_string()))?;
    Ok(Json(Page::new(entries)).into_response())
}

/// What `GET /sessions/{id}/signals` gives without a `limit`.
const DEFAULT_HISTORY_LIMIT: u64 = 100;

// ---- config ----------------------------------------------------------------------------------

async fn config(AxumState(state): Shared) -> Response {
    let url = url::Url::parse(&state.public_url).ok();
    let mut config = json!({
        "VERSION": OPENVIDU_VERSION,
        "DOMAIN_OR_PUBLIC_IP": url.as_ref().and_then(|u| u.host_str()).unwrap_or(""),
        "HTTPS_PORT": url.as_ref().and_then(url::Url::port_or_known_default),
        "OPENVIDU_PUBLICURL": state.public_url,
        "OPENVIDU_CDR": false,
        "OPENVIDU_STREAMS_VIDEO_MAX_RECV_BANDWIDTH": 1000,
        "OPENVIDU_STREAMS_VIDEO_MIN_RECV_BANDWIDTH": 300,
        "OPENVIDU_STREAMS_VIDEO_MAX_SEND_BANDWIDTH": 1000,
        "OPENVIDU_STREAMS_VIDEO_MIN_SEND_BANDWIDTH": 300,
        "OPENVIDU_WEBRTC_SIMULCAST": false,
        "OPENVIDU_SESSIONS_GARBAGE_INTERVAL": state.config.session_gc_interval.as_secs(),
        "OPENVIDU_SESSIONS_GARBAGE_THRESHOLD": state.config.session_gc_threshold.as_secs(),
        "OPENVIDU_RECORDING": false,
        "OPENVIDU_WEBHOOK": state.config.webhook.is_some(),
        "SIGNALROOM_MAX_SIGNAL_BYTES": state.config.max_signal_bytes,
    });
    // As OpenVidu, the webhook's endpoint and events when it is on (not its headers: they may
    // carry credentials).
    if let Some(webhook) = &state.config.webhook {
        config["OPENVIDU_WEBHOOK_ENDPOINT"] = crate::broker::redact(webhook.endpoint.as_str()).into();
        config["OPENVIDU_WEBHOOK_EVENTS"] = webhook.events.clone().into();
    }
    Json(config).into_response()
}

async fn public_url(AxumState(state): Shared) -> String {
    format!("{}/", state.public_url)
}
