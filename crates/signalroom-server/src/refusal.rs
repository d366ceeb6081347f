//! Every way the server refuses a request, and one table from each refusal to the JSON-RPC error
//! and the HTTP status OpenVidu 2.32 gives (spec §2.3, §6). The front ends never build an error
//! of their own: they return a [`Refusal`] and map it here.

use axum::http::StatusCode;
use signalroom_core::jsonrpc::{ErrorObject, codes};
use signalroom_core::{ConnectionId, Role, RpcSessionId, SessionId};

/// Why a request was refused. Retrying the same request will not help, except where noted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Refusal {
    /// The frame is not JSON.
    #[error("frame is not valid JSON: {0}")]
    NotJson(String),
    /// The frame is JSON but not a JSON-RPC request.
    #[error("{0}")]
    InvalidRequest(String),
    /// No such method in OpenVidu's protocol.
    #[error("method '{0}' is not part of the OpenVidu protocol")]
    UnknownMethod(String),
    /// A method's params are missing or of the wrong type.
    #[error("invalid params for '{method}': {reason}")]
    BadParams { method: String, reason: String },
    /// `sendMessage` params are not `{"message": "<json>"}`.
    #[error(r#"Provided signal has not a valid format: params must be {{"message":"<the signal as a JSON string>"}}"#)]
    SignalParams,
    /// The signal itself is refused (format, recipients, size).
    #[error("{0}")]
    Signal(#[from] signalroom_core::Error),
    /// A REST body or parameter is wrong (400 with this message).
    #[error("{0}")]
    BadRequest(String),
    /// This socket already carries a participant.
    #[error(
        "this WebSocket already joined session {session} as {connection}; open another WebSocket to join again"
    )]
    AlreadyJoined { session: SessionId, connection: ConnectionId },
    /// `connect` on a socket carrying another participant.
    #[error("this WebSocket already carries another participant")]
    CarriesAnother,
    /// The server is shutting down (retry on another node).
    #[error("Unable to join session: the server is stopping")]
    Stopping,
    /// No such session (`joinRoom`: 202; REST: 404 or the route's status).
    #[error("Unable to join session. Session {0} cannot be found")]
    NoSession(String),
    /// The session is closed or closing.
    #[error("Unable to join session {0}: it is closed")]
    SessionClosed(SessionId),
    /// The token is unknown or used.
    #[error("Unable to join session {session}. Token {token} is not valid")]
    BadToken { session: String, token: String },
    /// A method other than ping/connect/joinRoom before joining.
    #[error(
        "No connection found for participant with privateId {0}. Method 'Session.connect()' must be the first operation called in any session"
    )]
    NotJoined(RpcSessionId),
    /// The participant of this socket is no longer in the session.
    #[error("No connection found for participant with privateId {0}: it is no longer in the session")]
    NoLongerJoined(RpcSessionId),
    /// A moderator-only operation by somebody else.
    #[error(
        "The participant {who} has no permission to call '{what}': role {} (MODERATOR required)",
        role.map_or("unknown", Role::as_str)
    )]
    NotModerator { who: ConnectionId, what: &'static str, role: Option<Role> },
    /// `forceDisconnect` of a connection that is not a participant.
    #[error("Connection not found when calling 'forceDisconnect': {0}")]
    NoParticipant(ConnectionId),
    /// A SUBSCRIBER tried to publish.
    #[error("Unable to publish: a SUBSCRIBER connection has no permission to publish")]
    CannotPublish,
    /// `forceUnpublish` of a stream: there are none.
    #[error("stream not found: this server carries no media")]
    NoStream,
    /// A media method.
    #[error("Media not supported: '{0}' needs a media server; signalroom carries signals only")]
    Media(String),
    /// An OpenVidu Pro method.
    #[error("method '{0}' needs an OpenVidu Pro service, which this server does not provide")]
    ProOnly(String),
    /// `connect` with an unknown or expired RPC session id.
    #[error("reconnection error")]
    Reconnection,
    /// REST: a session with this custom id exists (409).
    #[error("session exists")]
    SessionExists,
    /// REST: no such connection (404, empty body).
    #[error("connection not found")]
    NoConnection,
    /// REST `POST /signal` before anybody joined (406, empty body).
    #[error("session not active")]
    NotActive,
    /// REST `POST /signal` whose `to` names nobody joined (406).
    #[error("\"to\" array has no valid connection identifiers")]
    NoValidRecipient,
    /// REST `POST /tokens` for an unknown session (404 with a message).
    #[error("Session {0} not found")]
    TokenSessionNotFound(String),
    /// REST credentials missing or wrong (401).
    #[error("authentication required: HTTP Basic with user OPENVIDUAPP and the server secret")]
    Unauthorized,
    /// The shared session store could not be reached (retry).
    #[error("the shared session store is unreachable ({0}); retry")]
    BrokerDown(String),
    /// REST: no such endpoint (404).
    #[error("no such endpoint in /openvidu/api")]
    NoEndpoint,
    /// A connection's metadata is over the configured limit (`joinRoom`: 803, as OpenVidu's
    /// "user metadata format invalid"; REST: 400).
    #[error("connection metadata of {size} bytes is over the limit of {limit} bytes")]
    MetadataTooLarge { size: usize, limit: usize },
    /// The server holds its maximum number of sessions (REST: 503).
    #[error("the server holds its maximum of {0} sessions: close some before creating more")]
    TooManySessions(usize),
    /// The signal hook refused the signal; the message is its reason (JSON-RPC 602, HTTP 403).
    #[error("{0}")]
    SignalRefused(String),
    /// The signal hook failed and fails closed (JSON-RPC 602, HTTP 503; retrying may help).
    #[error("signal refused: the signal hook is unavailable ({0})")]
    HookUnavailable(String),
    /// REST: a request body over the configured limit (413).
    #[error("request body is over the limit of {0} bytes")]
    BodyTooLarge(usize),
}

impl Refusal {
    /// The JSON-RPC error for the WebSocket front end.
    pub(crate) fn rpc(&self) -> ErrorObject {
        let code = match self {
            Refusal::NotJson(_) => codes::PARSE_ERROR,
            Refusal::InvalidRequest(_) => codes::INVALID_REQUEST,
            Refusal::UnknownMethod(_) => codes::METHOD_NOT_FOUND,
            Refusal::BadParams { .. } => codes::GENERIC,
            Refusal::SignalParams => codes::SIGNAL_FORMAT_INVALID,
            Refusal::Signal(e) => return e.to_error_object(),
            Refusal::AlreadyJoined { .. } | Refusal::CarriesAnother => codes::GENERIC_ERROR,
            Refusal::Stopping | Refusal::SessionClosed(_) => codes::ROOM_CLOSED,
            Refusal::NoSession(_) => codes::ROOM_NOT_FOUND,
            Refusal::BadToken { .. }
            | Refusal::NotModerator { .. }
            | Refusal::CannotPublish
            | Refusal::Unauthorized => codes::TOKEN_INVALID,
            Refusal::NotJoined(_) | Refusal::NoLongerJoined(_) | Refusal::MetadataTooLarge { .. } => {
                codes::USER_METADATA_FORMAT_INVALID_OR_NOT_JOINED
            }
            Refusal::NoParticipant(_) | Refusal::NoConnection => codes::USER_NOT_FOUND,
            Refusal::NoStream => codes::USER_NOT_STREAMING,
            Refusal::Media(_) => codes::MEDIA_NOT_SUPPORTED,
            Refusal::ProOnly(_) => codes::SERVICE_NOT_ENABLED,
            Refusal::TooManySessions(_) => codes::ROOM_CANNOT_BE_CREATED,
            Refusal::Reconnection => codes::RECONNECTION_ERROR,
            Refusal::NoValidRecipient => codes::SIGNAL_TO_INVALID,
            Refusal::SignalRefused(_) | Refusal::HookUnavailable(_) => codes::SIGNAL_REFUSED,
            Refusal::BadRequest(_)
            | Refusal::SessionExists
            | Refusal::NotActive
            | Refusal::TokenSessionNotFound(_)
            | Refusal::NoEndpoint
            | Refusal::BrokerDown(_)
            | Refusal::BodyTooLarge(_) => codes::GENERIC_ERROR,
        };
        ErrorObject::new(code, self.to_string())
    }

    /// The HTTP status and JSON error message for the REST front end (`None`: an empty body, as
    /// OpenVidu sends for that status). `missing` is the status of a missing session on this
    /// route (OpenVidu answers 400 on some routes, 404 on others).
    pub(crate) fn http(&self, missing: StatusCode) -> (StatusCode, Option<String>) {
        match self {
            Refusal::NoSession(_) | Refusal::SessionClosed(_) => (missing, None),
            Refusal::NoConnection | Refusal::NoParticipant(_) => (StatusCode::NOT_FOUND, None),
            Refusal::SessionExists => (StatusCode::CONFLICT, None),
            Refusal::NotActive => (StatusCode::NOT_ACCEPTABLE, None),
            Refusal::NoValidRecipient => (StatusCode::NOT_ACCEPTABLE, Some(self.to_string())),
            Refusal::Signal(signalroom_core::Error::SignalRecipients { .. }) => {
                (StatusCode::NOT_ACCEPTABLE, Some(Refusal::NoValidRecipient.to_string()))
            }
            Refusal::Unauthorized => (StatusCode::UNAUTHORIZED, Some(self.to_string())),
            Refusal::TokenSessionNotFound(_) | Refusal::NoEndpoint => {
                (StatusCode::NOT_FOUND, Some(self.to_string()))
            }
            Refusal::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, Some(self.to_string())),
            Refusal::SignalRefused(_) => (StatusCode::FORBIDDEN, Some(self.to_string())),
            Refusal::Stopping
            | Refusal::BrokerDown(_)
            | Refusal::TooManySessions(_)
            | Refusal::HookUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Some(self.to_string())),
            Refusal::NotJson(_)
            | Refusal::InvalidRequest(_)
            | Refusal::UnknownMethod(_)
            | Refusal::BadParams { .. }
            | Refusal::SignalParams
            | Refusal::Signal(_)
            | Refusal::BadRequest(_)
            | Refusal::AlreadyJoined { .. }
            | Refusal::CarriesAnother
            | Refusal::BadToken { .. }
            | Refusal::NotJoined(_)
            | Refusal::NoLongerJoined(_)
            | Refusal::NotModerator { .. }
            | Refusal::CannotPublish
            | Refusal::NoStream
            | Refusal::Media(_)
            | Refusal::ProOnly(_)
            | Refusal::MetadataTooLarge { .. }
            | Refusal::Reconnection => (StatusCode::BAD_REQUEST, Some(self.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_openvidus_codes_and_statuses() {
        let cases: Vec<(Refusal, i64, StatusCode)> = vec![
            (Refusal::NoSession("S".into()), 202, StatusCode::NOT_FOUND),
            (Refusal::SessionClosed("S".into()), 203, StatusCode::NOT_FOUND),
            (Refusal::BadToken { session: "S".into(), token: "t".into() }, 401, StatusCode::BAD_REQUEST),
            (Refusal::NotJoined("r".into()), 803, StatusCode::BAD_REQUEST),
            (Refusal::NoParticipant("con_X".into()), 102, StatusCode::NOT_FOUND),
            (Refusal::Reconnection, 40007, StatusCode::BAD_REQUEST),
            (Refusal::Media("publishVideo".into()), 301, StatusCode::BAD_REQUEST),
            (Refusal::SessionExists, 999, StatusCode::CONFLICT),
            (Refusal::MetadataTooLarge { size: 2, limit: 1 }, 803, StatusCode::BAD_REQUEST),
            (Refusal::TooManySessions(1), 204, StatusCode::SERVICE_UNAVAILABLE),
            (Refusal::BodyTooLarge(1), 999, StatusCode::PAYLOAD_TOO_LARGE),
            (Refusal::NotActive, 999, StatusCode::NOT_ACCEPTABLE),
            (Refusal::SignalRefused("spam".into()), 602, StatusCode::FORBIDDEN),
            (Refusal::HookUnavailable("down".into()), 602, StatusCode::SERVICE_UNAVAILABLE),
            (
                Refusal::Signal(signalroom_core::Error::SignalRecipients { reason: "x".into() }),
                601,
                StatusCode::NOT_ACCEPTABLE,
            ),
            (
                Refusal::Signal(signalroom_core::Error::DataTooLarge { size: 2, limit: 1 }),
                600,
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (refusal, code, status) in cases {
            assert_eq!(refusal.rpc().code, code, "{refusal:?}");
            assert_eq!(refusal.http(StatusCode::NOT_FOUND).0, status, "{refusal:?}");
        }
        assert_eq!(Refusal::Reconnection.rpc().message, "reconnection error");
        assert_eq!(
            Refusal::NotModerator {
                who: "con_A".into(),
                what: "forceDisconnect",
                role: Some(Role::Publisher)
            }
            .rpc()
            .message,
            "The participant con_A has no permission to call 'forceDisconnect': role PUBLISHER (MODERATOR required)"
        );
    }
}
