//! The WebSocket JSON-RPC endpoint at `/openvidu` (spec §2–§5).
//!
//! Per socket: this task reads and handles requests in order (so one sender's signals keep their
//! order), and a writer task drains a bounded queue into the socket. Only the writer touches the
//! sink. Handlers never await while holding a session lock: they change state and `try_send`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State as AxumState};
use axum::http::HeaderMap;
use axum::response::Response as HttpResponse;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use parking_lot::MutexGuard;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use signalroom_core::jsonrpc::{ErrorObject, ErrorResponse, Frame, Response, codes};
use signalroom_core::limits::{DEFAULT_SERVER_PING_INTERVAL_MS, PING_WATCHDOG_FACTOR};
use signalroom_core::protocol::{
    ConnectParams, ForceDisconnectParams, JoinRoomParams, JoinRoomResult, PingParams, RemoteParticipant,
    SendMessageParams, SignalNotification, method, notification,
};
use signalroom_core::signal::{Recipients, SignalMessage, route};
use signalroom_core::{ConnectionId, EndReason, OPENVIDU_VERSION, Role, RpcSessionId};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::{Instant, sleep_until};

use crate::queue::{self, QueueRx, QueueTx, TrySendError};
use crate::state::{CloseMode, Link, Outbound, Participant, Session, SessionInner, State, frame};
use crate::util::{client_ip, constant_time_eq, now_ms, random_id, rpc_session_id};

/// Initial read buffer of a socket. tungstenite zero-fills its whole read buffer before every
/// read, so its default (128 KiB) is 128 KiB of memory per idle participant; OpenVidu requests
/// are small, and the buffer still grows for a larger frame.
const READ_BUFFER: usize = 8 * 1024;
/// Close code for frames over the size limit.
const CLOSE_TOO_BIG: u16 = 1009;
/// Frames written between flushes at most, so a long queue reaches the socket in pieces.
const WRITE_BATCH: usize = 256;
/// How long a close frame may take to write.
const CLOSE_WRITE: Duration = Duration::from_secs(1);
/// How long the writer may take to flush and close once the socket is done.
const WRITER_DRAIN: Duration = Duration::from_secs(5);
/// Bounds on the interval a client may ask the ping watchdog for.
const MIN_PING_INTERVAL_MS: u64 = 1_000;
const MAX_PING_INTERVAL_MS: u64 = 300_000;

/// `GET /openvidu`: accepts any query and any Origin; problems are reported as JSON-RPC errors.
pub(crate) async fn upgrade(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> HttpResponse {
    let ip = client_ip(&headers, peer);
    let max = state.config.max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| run(state, socket, ip))
}

async fn run(state: Arc<State>, socket: WebSocket, ip: String) {
    let socket_id = state.next_socket_id();
    let (sink, stream) = socket.split();
    let (tx, rx) = queue::channel(state.config.send_queue_capacity);
    let mut writer = tokio::spawn(write_frames(sink, rx));
    tracing::debug!(socket = socket_id, %ip, "socket opened");

    let mut conn = SocketConn {
        state,
        socket_id,
        tx,
        ip,
        rpc_id: RpcSessionId::from(rpc_session_id()),
        joined: None,
        ping_interval_ms: None,
        ping_deadline: None,
        overflowed: false,
        request_id: None,
        writer: writer.abort_handle(),
    };
    let writer_ended = conn.read_loop(stream, &mut writer).await;
    conn.socket_closed();
    drop(conn);
    // Every sender is gone now: the writer drains what is queued, closes, and ends.
    if !writer_ended && tokio::time::timeout(WRITER_DRAIN, &mut writer).await.is_err() {
        writer.abort();
    }
    tracing::debug!(socket = socket_id, "socket closed");
}

async fn write_frames(mut sink: SplitSink<WebSocket, Message>, mut rx: QueueRx<Outbound>) {
    let mut close_at: Option<Instant> = None;
    let mut batch = VecDeque::new();
    'outer: loop {
        let n = tokio::select! {
            n = rx.recv_all(&mut batch) => n,
            () = sleep_until(close_at.unwrap_or_else(Instant::now)), if close_at.is_some() => {
                batch.push_back(Outbound::Close { code: 1000, reason: "closed by server" });
                1
            }
        };
        if n == 0 {
            // Every sender is gone and everything queued was written.
            let _ = tokio::time::timeout(CLOSE_WRITE, sink.send(Message::Close(None))).await;
            break;
        }
        let mut written = 0;
        while let Some(out) = batch.pop_front() {
            match out {
                Outbound::Frame(text) => {
                    // The hot path: a plain `feed` unless a close is due.
                    let fed = match close_at {
                        None => sink.feed(Message::Text(text)).await.is_ok(),
                        Some(_) => io(close_at, sink.feed(Message::Text(text))).await,
                    };
                    if !fed {
                        break 'outer;
                    }
                    written += 1;
                    if written % WRITE_BATCH == 0 && !io(close_at, sink.flush()).await {
                        break 'outer;
                    }
                }
                Outbound::Close { code, reason } => {
                    let close = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                    let _ = tokio::time::timeout(CLOSE_WRITE, sink.send(Message::Close(Some(close)))).await;
                    break 'outer;
                }
                Outbound::CloseAfter(delay) => {
                    let at = Instant::now() + delay;
                    close_at = Some(close_at.map_or(at, |c| c.min(at)));
                }
                Outbound::KeepOpen => close_at = None,
            }
        }
        if written % WRITE_BATCH != 0 && !io(close_at, sink.flush()).await {
            break;
        }
    }
}

/// A socket write; once a close is due, a write that cannot finish by then (the client does not
/// read) ends the socket.
async fn io(close_at: Option<Instant>, write: impl Future<Output = Result<(), axum::Error>>) -> bool {
    match close_at {
        None => write.await.is_ok(),
        Some(at) => matches!(tokio::time::timeout_at(at, write).await, Ok(Ok(()))),
    }
}

/// Where this socket's participant lives.
struct Joined {
    session: Arc<Session>,
    connection_id: ConnectionId,
}

/// One socket's reader: the JSON-RPC session.
struct SocketConn {
    state: Arc<State>,
    socket_id: u64,
    tx: QueueTx<Outbound>,
    ip: String,
    rpc_id: RpcSessionId,
    joined: Option<Joined>,
    ping_interval_ms: Option<u64>,
    ping_deadline: Option<Instant>,
    /// Our own queue overflowed: the client does not read. The socket is dropped.
    overflowed: bool,
    /// The raw id of the request being handled; `None` for notifications (no reply).
    request_id: Option<Box<RawValue>>,
    /// The writer task (see [`Link::writer`]).
    writer: AbortHandle,
}

type RpcResult = Result<(), ErrorObject>;

impl SocketConn {
    /// Reads and handles requests until the socket is done; `true` when that is because the
    /// writer ended (closed, failed or aborted).
    async fn read_loop(&mut self, mut stream: SplitStream<WebSocket>, writer: &mut JoinHandle<()>) -> bool {
        loop {
            let msg = tokio::select! {
                msg = stream.next() => msg,
                _ = &mut *writer => return true,
                () = sleep_until(self.ping_deadline.unwrap_or_else(Instant::now)), if self.ping_deadline.is_some() => {
                    tracing::info!(socket = self.socket_id, "no ping within {}x the interval: closing", PING_WATCHDOG_FACTOR);
                    self.control(Outbound::Close { code: 1000, reason: "Close for not receive ping from client" });
                    break;
                }
            };
            match msg {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(text))) => self.handle_text(&text),
                Some(Ok(Message::Binary(_))) => {
                    self.request_id = None;
                    self.send_error(
                        None,
                        ErrorObject::new(
                            codes::INVALID_REQUEST,
                            "binary frames are not supported: send JSON-RPC requests as text frames",
                        ),
                    );
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) => {
                    if is_too_big(&e) {
                        tracing::info!(
                            socket = self.socket_id,
                            "frame over {} bytes: closing",
                            self.state.config.max_frame_bytes
                        );
                        self.control(Outbound::Close { code: CLOSE_TOO_BIG, reason: "message too big" });
                    } else {
                        tracing::debug!(socket = self.socket_id, error = %e, "socket error");
                    }
                    break;
                }
            }
            if self.overflowed {
                break;
            }
        }
        false
    }

    fn handle_text(&mut self, text: &str) {
        let frame = match Frame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                let (code, what) = if e.is_syntax() || e.is_eof() {
                    (codes::PARSE_ERROR, "frame is not valid JSON")
                } else {
                    (codes::INVALID_REQUEST, "frame is not a JSON-RPC request object")
                };
                self.send_error(None, ErrorObject::new(code, format!("{what}: {e}")));
                return;
            }
        };
        let Some(method) = frame.method.as_deref() else {
            if frame.result.is_some() || frame.error.is_some() {
                tracing::debug!(socket = self.socket_id, "ignoring a response from the client");
                return;
            }
            self.send_error(frame.id, ErrorObject::new(codes::INVALID_REQUEST, "request has no \"method\""));
            return;
        };
        if frame.jsonrpc != Some("2.0") {
            self.send_error(
                frame.id,
                ErrorObject::new(codes::INVALID_REQUEST, "request must have \"jsonrpc\":\"2.0\""),
            );
            return;
        }
        self.request_id = frame.id.map(|id| id.to_owned());
        if let Err(error) = self.dispatch(method, &frame) {
            self.reply_error(error);
        }
    }

    fn dispatch(&mut self, name: &str, frame: &Frame<'_>) -> RpcResult {
        match name {
            method::PING => return self.ping(params(name, frame)?),
            method::CONNECT => return self.reconnect(params(name, frame)?),
            method::JOIN_ROOM => return self.join(params(name, frame)?),
            _ => {}
        }
        if !is_known(name) {
            return Err(ErrorObject::new(
                codes::METHOD_NOT_FOUND,
                format!("method '{name}' is not part of the OpenVidu protocol"),
            ));
        }
        let Some(joined) = self.bound() else {
            return Err(ErrorObject::new(
                codes::USER_METADATA_FORMAT_INVALID_OR_NOT_JOINED,
                format!(
                    "No connection found for participant with privateId {}. Method 'Session.connect()' must be the first operation called in any session",
                    self.rpc_id
                ),
            ));
        };
        match name {
            method::SEND_MESSAGE => {
                let p = frame.params().map_err(|_| {
                    ErrorObject::new(
                        codes::SIGNAL_FORMAT_INVALID,
                        r#"Provided signal has not a valid format: params must be {"message":"<the signal as a JSON string>"}"#,
                    )
                })?;
                self.send_message(joined, p)
            }
            method::LEAVE_ROOM => self.leave(joined),
            method::FORCE_DISCONNECT => self.force_disconnect(joined, params(name, frame)?),
            method::FORCE_UNPUBLISH => {
                self.require_moderator(&joined, "forceUnpublish")?;
                Err(ErrorObject::new(
                    codes::USER_NOT_STREAMING,
                    "stream not found: this server carries no media",
                ))
            }
            method::PUBLISH_VIDEO => {
                if self.role_of(&joined) == Some(Role::Subscriber) {
                    return Err(ErrorObject::new(
                        codes::TOKEN_INVALID,
                        "Unable to publish: a SUBSCRIBER connection has no permission to publish",
                    ));
                }
                Err(media_not_supported(name))
            }
            method::ECHO
            | method::VIDEO_DATA
            | method::STREAM_PROPERTY_CHANGED
            | method::UNPUBLISH_VIDEO
            | method::UNSUBSCRIBE_FROM_VIDEO
            | method::ON_ICE_CANDIDATE => {
                self.reply_ok();
                Ok(())
            }
            m if method::MEDIA_UNSUPPORTED.contains(&m) => Err(media_not_supported(m)),
            m => Err(ErrorObject::new(
                codes::SERVICE_NOT_ENABLED,
                format!("method '{m}' needs an OpenVidu Pro service, which this server does not provide"),
            )),
        }
    }

    fn ping(&mut self, p: PingParams) -> RpcResult {
        if let Some(interval) = p.interval {
            self.ping_interval_ms = Some(interval.clamp(MIN_PING_INTERVAL_MS, MAX_PING_INTERVAL_MS));
        }
        let interval = *self.ping_interval_ms.get_or_insert(DEFAULT_SERVER_PING_INTERVAL_MS);
        self.ping_deadline = Some(Instant::now() + Duration::from_millis(interval * PING_WATCHDOG_FACTOR));
        self.reply_result(json!({"value": "pong"}));
        Ok(())
    }

    fn join(&mut self, p: JoinRoomParams) -> RpcResult {
        if let Some(j) = &self.joined {
            return Err(ErrorObject::new(
                codes::GENERIC_ERROR,
                format!(
                    "this WebSocket already joined session {} as {}; open another WebSocket to join again",
                    j.session.id, j.connection_id
                ),
            ));
        }
        if self.state.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ErrorObject::new(
                codes::ROOM_CLOSED,
                "Unable to join session: the server is stopping",
            ));
        }
        let Some(session) = self.state.session(&p.session) else {
            return Err(ErrorObject::new(
                codes::ROOM_NOT_FOUND,
                format!("Unable to join session. Session {} cannot be found", p.session),
            ));
        };
        let mut slow = Vec::new();
        let mut inner = session.inner.lock();
        if inner.closed {
            return Err(ErrorObject::new(
                codes::ROOM_CLOSED,
                format!("Unable to join session {}: it is closed", p.session),
            ));
        }
        let connection_id = if !p.secret.is_empty() && constant_time_eq(&p.secret, &self.state.config.secret)
        {
            self.state.create_connection(
                &session,
                &mut inner,
                Role::Publisher,
                true,
                String::new(),
                serde_json::Value::Null,
                json!([]),
            )
        } else {
            let token_id = token_id_of(&p.token);
            match token_id.and_then(|t| inner.pending_tokens.get(t).cloned()) {
                Some(id) => id,
                None => {
                    return Err(ErrorObject::new(
                        codes::TOKEN_INVALID,
                        format!("Unable to join session {}. Token {} is not valid", p.session, p.token),
                    ));
                }
            }
        };
        let now = now_ms();
        let link = self.link();
        let fields = &mut *inner;
        let conn = fields.connections.get_mut(&connection_id).expect("the pending connection exists");
        fields.pending_tokens.remove(&conn.token_id);
        conn.participant = Some(Participant {
            active_at: now,
            client_data: p.metadata,
            platform: p.platform,
            ip: self.ip.clone(),
            rpc_id: self.rpc_id.clone(),
            link: Some(link),
            link_generation: 1,
        });
        let (role, record, metadata) = (conn.role, conn.record, conn.full_metadata());
        inner.active = true;

        let announce = frame(
            notification::PARTICIPANT_JOINED,
            &RemoteParticipant { id: connection_id.clone(), created_at: now, metadata: metadata.clone() },
        );
        for (id, _, _) in inner.participants() {
            if *id != connection_id {
                inner.send_to(id, &announce, &mut slow);
            }
        }
        let result = JoinRoomResult {
            id: connection_id.clone(),
            final_user_id: random_id("", 16).to_ascii_uppercase(),
            created_at: now,
            metadata,
            value: State::remote_participants(&inner, &connection_id),
            session: Some(session.id.clone()),
            version: OPENVIDU_VERSION.to_owned(),
            media_server: "kurento".to_owned(),
            video_simulcast: false,
            record,
            role,
            session_id: self.rpc_id.clone(),
        };
        self.reply_result(result);
        self.control(Outbound::KeepOpen);
        self.state.rpc_sessions.insert(self.rpc_id.clone(), (session.id.clone(), connection_id.clone()));
        tracing::info!(session = %session.id, connection = %connection_id, ip = %self.ip, "participant joined");
        let removal = self.state.evict_slow(&mut inner, slow);
        self.state.settle(&session, inner, removal);
        self.joined = Some(Joined { session, connection_id });
        Ok(())
    }

    fn send_message(&mut self, me: Joined, p: SendMessageParams<'_>) -> RpcResult {
        let message = SignalMessage::parse(&p.message, self.state.config.max_signal_bytes)
            .map_err(|e| e.to_error_object())?;
        let notification = frame(
            notification::SEND_MESSAGE,
            &SignalNotification {
                data: message.data.as_deref().map(Into::into),
                kind: message.kind.as_deref().map(Into::into),
                from: Some(me.connection_id.as_str().into()),
            },
        );
        let mut slow = Vec::new();
        let mut inner = me.session.inner.lock();
        if !bound_in(&inner, &me.connection_id, self.socket_id) {
            drop(inner);
            return Err(self.not_joined());
        }
        match route(&message.to, |id| inner.is_participant(id)).map_err(|e| e.to_error_object())? {
            Recipients::All => inner.send_all(&notification, &mut slow),
            Recipients::Only(ids) => {
                for id in &ids {
                    inner.send_to(id, &notification, &mut slow);
                }
            }
        }
        self.reply_ok();
        let removal = self.state.evict_slow(&mut inner, slow);
        self.state.settle(&me.session, inner, removal);
        Ok(())
    }

    fn leave(&mut self, me: Joined) -> RpcResult {
        let mut inner = me.session.inner.lock();
        let removal = self.state.remove_participants(
            &mut inner,
            vec![(me.connection_id.clone(), EndReason::Disconnect)],
            false,
            CloseMode::Linger,
            None,
        );
        self.reply_ok();
        self.state.settle(&me.session, inner, removal);
        self.joined = None;
        Ok(())
    }

    fn force_disconnect(&mut self, me: Joined, p: ForceDisconnectParams) -> RpcResult {
        self.require_moderator(&me, "forceDisconnect")?;
        let mut inner = me.session.inner.lock();
        if !inner.is_participant(&p.connection_id) {
            return Err(ErrorObject::new(
                codes::USER_NOT_FOUND,
                format!("Connection not found when calling 'forceDisconnect': {}", p.connection_id),
            ));
        }
        let response = Utf8Bytes::from(self.ok_json());
        let (tx, my_id) = (self.tx.clone(), me.connection_id.clone());
        let mut respond = |slow: &mut Vec<ConnectionId>| {
            if tx.try_send(Outbound::Frame(response.clone())).is_err() && !slow.contains(&my_id) {
                slow.push(my_id.clone());
            }
        };
        let removal = self.state.remove_participants(
            &mut inner,
            vec![(p.connection_id.clone(), EndReason::ForceDisconnectByUser)],
            true,
            CloseMode::Linger,
            Some(&mut respond),
        );
        self.state.settle(&me.session, inner, removal);
        Ok(())
    }

    fn reconnect(&mut self, p: ConnectParams) -> RpcResult {
        let reconnection_error = || ErrorObject::new(codes::RECONNECTION_ERROR, "reconnection error");
        let Some((session_id, connection_id)) = self.state.rpc_sessions.get(&p.session_id).map(|e| e.clone())
        else {
            return Err(reconnection_error());
        };
        let session = self.state.session(session_id.as_str()).ok_or_else(reconnection_error)?;
        if let Some(j) = &self.joined {
            if j.connection_id != connection_id {
                return Err(ErrorObject::new(
                    codes::GENERIC_ERROR,
                    "this WebSocket already carries another participant",
                ));
            }
        }
        {
            let mut inner = session.inner.lock();
            let participant = inner
                .connections
                .get_mut(&connection_id)
                .and_then(|c| c.participant.as_mut())
                .ok_or_else(reconnection_error)?;
            if let Some(old) = participant.link.take() {
                if old.socket_id != self.socket_id {
                    old.control(Outbound::Close { code: 1000, reason: "replaced by a reconnection" });
                }
            }
            participant.link = Some(self.link());
            participant.link_generation += 1;
        }
        tracing::info!(session = %session.id, connection = %connection_id, "participant reconnected");
        self.rpc_id = p.session_id;
        self.joined = Some(Joined { session, connection_id });
        self.reply_result(json!({"value": "reconnection successful", "sessionId": self.rpc_id}));
        self.control(Outbound::KeepOpen);
        Ok(())
    }

    /// The socket is gone. A participant that did not leave is kept for the reconnection grace
    /// period, then evicted with `networkDisconnect`.
    fn socket_closed(&mut self) {
        let Some(me) = self.joined.take() else { return };
        let stopping = self.state.stopping.load(std::sync::atomic::Ordering::Relaxed);
        let mut inner = me.session.inner.lock();
        if !bound_in(&inner, &me.connection_id, self.socket_id) {
            return;
        }
        if self.overflowed || stopping || self.state.config.reconnection_grace.is_zero() {
            evict_lost(&self.state, &me, inner);
            return;
        }
        let participant = inner
            .connections
            .get_mut(&me.connection_id)
            .and_then(|c| c.participant.as_mut())
            .expect("bound participant exists");
        participant.link = None;
        participant.link_generation += 1;
        let generation = participant.link_generation;
        drop(inner);
        tracing::info!(connection = %me.connection_id, "socket lost: waiting {:?} for a reconnection", self.state.config.reconnection_grace);
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            tokio::time::sleep(state.config.reconnection_grace).await;
            let inner = me.session.inner.lock();
            let still_away = inner
                .connections
                .get(&me.connection_id)
                .and_then(|c| c.participant.as_ref())
                .is_some_and(|p| p.link.is_none() && p.link_generation == generation);
            if still_away {
                evict_lost(&state, &me, inner);
            }
        });
    }

    /// This socket's participant, if it is still joined and bound to this socket.
    fn bound(&mut self) -> Option<Joined> {
        let j = self.joined.as_ref()?;
        let ok = bound_in(&j.session.inner.lock(), &j.connection_id, self.socket_id);
        if !ok {
            self.joined = None;
            return None;
        }
        Some(Joined { session: Arc::clone(&j.session), connection_id: j.connection_id.clone() })
    }

    fn role_of(&self, me: &Joined) -> Option<Role> {
        me.session.inner.lock().connections.get(&me.connection_id).map(|c| c.role)
    }

    fn require_moderator(&self, me: &Joined, what: &str) -> RpcResult {
        match self.role_of(me) {
            Some(Role::Moderator) => Ok(()),
            role => Err(ErrorObject::new(
                codes::TOKEN_INVALID,
                format!(
                    "The participant {} has no permission to call '{what}': role {} (MODERATOR required)",
                    me.connection_id,
                    role.map_or("unknown", Role::as_str)
                ),
            )),
        }
    }

    fn not_joined(&mut self) -> ErrorObject {
        self.joined = None;
        ErrorObject::new(
            codes::USER_METADATA_FORMAT_INVALID_OR_NOT_JOINED,
            format!(
                "No connection found for participant with privateId {}: it is no longer in the session",
                self.rpc_id
            ),
        )
    }

    fn ok_json(&self) -> String {
        match &self.request_id {
            Some(id) => Response::new(id, json!({"sessionId": self.rpc_id})).to_json(),
            None => String::new(),
        }
    }

    fn reply_ok(&mut self) {
        self.reply_result(json!({"sessionId": self.rpc_id}));
    }

    fn reply_result<R: Serialize>(&mut self, result: R) {
        let Some(id) = &self.request_id else { return };
        let text = Response::new(id, result).to_json();
        self.push(text);
    }

    fn reply_error(&mut self, error: ErrorObject) {
        let id = self.request_id.take();
        if id.is_none() {
            tracing::debug!(error = %error, "error on a notification (not answered)");
            return;
        }
        self.send_error(id.as_deref(), error);
    }

    fn send_error(&mut self, id: Option<&RawValue>, error: ErrorObject) {
        tracing::debug!(socket = self.socket_id, code = error.code, message = %error.message, "request refused");
        let text = ErrorResponse::new(id, &error).to_json();
        self.push(text);
    }

    fn push(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Outbound::Frame(Utf8Bytes::from(text))) {
            tracing::warn!(
                socket = self.socket_id,
                "own send queue full: the client does not read; dropping it"
            );
            self.overflowed = true;
        }
    }

    fn control(&self, out: Outbound) {
        self.link().control(out);
    }

    fn link(&self) -> Link {
        Link { tx: self.tx.clone(), socket_id: self.socket_id, writer: self.writer.clone() }
    }
}

/// Evicts a participant whose link is lost for good, with `networkDisconnect`.
fn evict_lost(state: &State, me: &Joined, mut inner: MutexGuard<'_, SessionInner>) {
    let lost = vec![(me.connection_id.clone(), EndReason::NetworkDisconnect)];
    let removal = state.remove_participants(&mut inner, lost, true, CloseMode::Now, None);
    state.settle(&me.session, inner, removal);
}

fn bound_in(inner: &SessionInner, id: &ConnectionId, socket_id: u64) -> bool {
    inner
        .connections
        .get(id)
        .and_then(|c| c.participant.as_ref())
        .and_then(|p| p.link.as_ref())
        .is_some_and(|l| l.socket_id == socket_id)
}

fn params<'a, T: serde::Deserialize<'a>>(name: &str, frame: &Frame<'a>) -> Result<T, ErrorObject> {
    frame.params().map_err(|e| ErrorObject::new(codes::GENERIC, format!("invalid params for '{name}': {e}")))
}

/// The token id of a joinRoom token: the `token` query parameter, or a bare `tok_…`.
fn token_id_of(token: &str) -> Option<&str> {
    let query = token.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or(""));
    match query {
        Some(q) => q.split('&').find_map(|kv| kv.strip_prefix("token=")),
        None => token.starts_with("tok_").then_some(token),
    }
}

fn is_known(name: &str) -> bool {
    matches!(
        name,
        method::SEND_MESSAGE
            | method::LEAVE_ROOM
            | method::FORCE_DISCONNECT
            | method::FORCE_UNPUBLISH
            | method::PUBLISH_VIDEO
            | method::ECHO
            | method::VIDEO_DATA
            | method::STREAM_PROPERTY_CHANGED
            | method::UNPUBLISH_VIDEO
            | method::UNSUBSCRIBE_FROM_VIDEO
            | method::ON_ICE_CANDIDATE
    ) || method::MEDIA_UNSUPPORTED.contains(&name)
        || method::PRO_ONLY.contains(&name)
}

fn media_not_supported(name: &str) -> ErrorObject {
    ErrorObject::new(
        codes::MEDIA_NOT_SUPPORTED,
        format!("Media not supported: '{name}' needs a media server; signalroom carries signals only"),
    )
}

fn is_too_big(e: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
            return matches!(t, tokio_tungstenite::tungstenite::Error::Capacity(_));
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_read_from_urls_and_bare_tokens() {
        assert_eq!(token_id_of("ws://h:1/x?sessionId=S&token=tok_A"), Some("tok_A"));
        assert_eq!(token_id_of("wss://h?token=tok_B&sessionId=S"), Some("tok_B"));
        assert_eq!(token_id_of("tok_C"), Some("tok_C"));
        assert_eq!(token_id_of("ws://h?sessionId=S"), None);
        assert_eq!(token_id_of("garbage"), None);
    }

    #[test]
    fn every_media_and_pro_method_is_known() {
        for m in method::MEDIA_UNSUPPORTED.iter().chain(method::PRO_ONLY) {
            assert!(is_known(m));
        }
        assert!(!is_known("nope"));
    }
}
