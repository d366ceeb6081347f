//! The shared state of a session and the two tasks that own one WebSocket: the reader (parses
//! every inbound frame, completes requests, turns notifications into events) and the writer (the
//! only code that writes to the socket).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::Value;
use signalroom_core::jsonrpc::{Frame, Request};
use signalroom_core::protocol::{
    ConnectionPropertyChanged, JoinRoomResult, ParticipantLeft, RemoteParticipant, SignalNotification,
    notification,
};
use signalroom_core::token::TokenInfo;
use signalroom_core::{ConnectionId, EndReason, Role, RpcSessionId, SessionId};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::event::{Connection, Event, SignalEvent};
use crate::options::ConnectOptions;
use crate::tls;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Close code and reason openvidu-browser uses when it leaves, is evicted, or gives up.
pub(crate) const CLOSE_BY_CLIENT: (u16, &str) = (4102, "Connection closed by client");
/// Close code and reason openvidu-browser uses when it drops a socket to reconnect.
pub(crate) const CLOSE_FOR_RECONNECTION: (u16, &str) = (4104, "Connection closed for reconnection");
/// How long the writer may take to send a close frame before it is aborted.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames written before one flush.
const MAX_BATCH: usize = 64;

/// Request params, serialised once, keeping the key order of the struct they come from.
pub(crate) type Params = Box<serde_json::value::RawValue>;

/// Serialises request params.
pub(crate) fn params<T: serde::Serialize>(params: &T) -> Params {
    serde_json::value::to_raw_value(params).expect("request params serialise")
}

/// The answer to a request: the `result`, or why there is none.
pub(crate) type Reply = Result<Value>;

/// What the reader must do, besides answering the caller, when a response arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingKind {
    /// Nothing.
    Plain,
    /// `joinRoom`: install the local connection and the roster, emit `connectionCreated`s.
    JoinRoom,
    /// `connect` (reconnection): emit `reconnected`.
    Reconnect,
}

struct Pending {
    method: &'static str,
    kind: PendingKind,
    tx: oneshot::Sender<Reply>,
    /// The link the request was written on; `None` while queued.
    sent_on: Option<u64>,
}

/// Where a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Joining (before `connect` returns).
    Joining,
    /// Joined; the link is up.
    Connected,
    /// The link broke and is being reopened.
    Reconnecting,
    /// Over; no request will succeed any more.
    Disconnected(EndReason),
}

/// Everything the reader, the writer, the driver and the callers share. Locked briefly, never
/// across an `.await`.
pub(crate) struct State {
    pub(crate) phase: SessionState,
    pending: HashMap<u64, Pending>,
    pub(crate) local: Option<Connection>,
    pub(crate) role: Role,
    pub(crate) record: bool,
    pub(crate) session_id: Option<SessionId>,
    pub(crate) rpc_session_id: Option<RpcSessionId>,
    /// Remote participants in join order.
    pub(crate) remotes: Vec<Connection>,
    events: Option<mpsc::UnboundedSender<Event>>,
    subscribers: Vec<(String, mpsc::UnboundedSender<SignalEvent>)>,
}

impl State {
    fn emit(&mut self, event: Event) {
        if let Event::Signal(signal) = &event {
            self.subscribers.retain(|(name, tx)| !signal.matches(name) || tx.send(signal.clone()).is_ok());
        }
        if let Some(tx) = &self.events {
            // A receiver the application dropped is not an error: it only uses subscriptions.
            let _ = tx.send(event);
        }
    }

    pub(crate) fn subscribe(&mut self, name: &str) -> mpsc::UnboundedReceiver<SignalEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        if !matches!(self.phase, SessionState::Disconnected(_)) {
            self.subscribers.retain(|(_, tx)| !tx.is_closed());
            self.subscribers.push((name.to_owned(), tx));
        }
        rx
    }

    /// Ends the session: `sessionDisconnected` (the last event), every channel closed, every
    /// pending request failed. Idempotent.
    pub(crate) fn finish(&mut self, reason: EndReason) {
        if matches!(self.phase, SessionState::Disconnected(_)) {
            return;
        }
        tracing::debug!(%reason, "session disconnected");
        self.phase = SessionState::Disconnected(reason.clone());
        self.emit(Event::SessionDisconnected { reason: reason.clone() });
        self.events = None;
        self.subscribers.clear();
        for (_, p) in self.pending.drain() {
            let _ = p.tx.send(Err(Error::Disconnected { reason: reason.clone() }));
        }
    }

    fn connection_of(&self, id: &str) -> Option<&Connection> {
        self.local.iter().chain(self.remotes.iter()).find(|c| c.connection_id.as_str() == id)
    }

    fn is_local(&self, id: &ConnectionId) -> bool {
        self.local.as_ref().is_some_and(|c| &c.connection_id == id)
    }
}

/// A frame waiting for the writer.
pub(crate) struct Outgoing {
    id: u64,
    text: String,
}

/// Orders to the writer of one link.
enum Ctrl {
    /// Write this frame now, before any queued request of the application.
    Send(Outgoing),
    /// The handshake is done: write the application's requests too.
    OpenGate,
    /// Send a close frame and stop.
    Close(CloseFrame),
}

/// Commands to the driver.
pub(crate) enum Command {
    /// Leave the session (`leaveRoom`, close); answer when done.
    Leave(Option<oneshot::Sender<()>>),
}

/// The state shared by every handle and task of one session.
pub(crate) struct Inner {
    pub(crate) opts: ConnectOptions,
    pub(crate) token: TokenInfo,
    next_id: AtomicU64,
    next_link: AtomicU64,
    pub(crate) state: Mutex<State>,
    user_tx: mpsc::UnboundedSender<Outgoing>,
    pub(crate) cmd_tx: mpsc::UnboundedSender<Command>,
}

/// The receiving ends the driver owns.
pub(crate) struct DriverChannels {
    pub(crate) user_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Outgoing>>>,
    pub(crate) cmd_rx: mpsc::UnboundedReceiver<Command>,
}

impl Inner {
    pub(crate) fn new(
        token: TokenInfo,
        opts: ConnectOptions,
        events: mpsc::UnboundedSender<Event>,
    ) -> (Arc<Self>, DriverChannels) {
        let (user_tx, user_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let state = State {
            phase: SessionState::Joining,
            pending: HashMap::new(),
            local: None,
            role: Role::default(),
            record: false,
            session_id: None,
            rpc_session_id: None,
            remotes: Vec::new(),
            events: Some(events),
            subscribers: Vec::new(),
        };
        let inner = Arc::new(Self {
            opts,
            token,
            next_id: AtomicU64::new(0),
            next_link: AtomicU64::new(0),
            state: Mutex::new(state),
            user_tx,
            cmd_tx,
        });
        let channels = DriverChannels { user_rx: Arc::new(tokio::sync::Mutex::new(user_rx)), cmd_rx };
        (inner, channels)
    }

    /// Registers a request and returns its frame; `None` params are omitted from the frame.
    fn register(
        &self,
        state: &mut State,
        method: &'static str,
        params: Option<Params>,
        kind: PendingKind,
    ) -> (Outgoing, oneshot::Receiver<Reply>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let text = serde_json::to_string(&Request::new(id, method, params)).expect("requests serialise");
        let (tx, rx) = oneshot::channel();
        state.pending.insert(id, Pending { method, kind, tx, sent_on: None });
        (Outgoing { id, text }, rx)
    }

    /// Forgets a request whose caller gave up; a late response is then ignored, and a request
    /// not yet written is not written.
    pub(crate) fn forget(&self, id: u64) {
        self.state.lock().pending.remove(&id);
    }

    /// Sends an application request, queued behind earlier ones and held while reconnecting;
    /// resolves with its result. Cancel-safe: dropping the future forgets the request.
    pub(crate) async fn call(&self, method: &'static str, params: Option<Params>) -> Result<Value> {
        let (id, rx) = self.enqueue(method, params)?;
        self.reply_to(method, id, rx).await
    }

    /// Registers a request and queues it for the writer now: requests go out in the order of
    /// these calls, whenever their futures are first polled.
    pub(crate) fn enqueue(
        &self,
        method: &'static str,
        params: Option<Params>,
    ) -> Result<(u64, oneshot::Receiver<Reply>)> {
        let mut state = self.state.lock();
        if let SessionState::Disconnected(reason) = &state.phase {
            return Err(Error::Disconnected { reason: reason.clone() });
        }
        let (out, rx) = self.register(&mut state, method, params, PendingKind::Plain);
        let id = out.id;
        if self.user_tx.send(out).is_err() {
            state.pending.remove(&id);
            return Err(Error::Disconnected { reason: EndReason::NetworkDisconnect });
        }
        Ok((id, rx))
    }

    /// Waits for the reply to an [`enqueue`](Self::enqueue)d request; dropping this future
    /// forgets the request (unwritten, it is never sent).
    pub(crate) async fn reply_to(
        &self,
        method: &'static str,
        id: u64,
        rx: oneshot::Receiver<Reply>,
    ) -> Result<Value> {
        let guard = ForgetOnDrop { inner: self, id };
        let reply = self.wait(method, rx, self.opts.request_timeout).await;
        drop(guard);
        reply
    }

    /// Waits for a reply; on timeout the caller must [`forget`](Self::forget) the request.
    pub(crate) async fn wait(
        &self,
        method: &'static str,
        rx: oneshot::Receiver<Reply>,
        timeout: Duration,
    ) -> Result<Value> {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(Error::Timeout { method, timeout_ms: timeout.as_millis() as u64 }),
        }
    }

    pub(crate) fn closed_error(&self) -> Error {
        match &self.state.lock().phase {
            SessionState::Disconnected(reason) => Error::Disconnected { reason: reason.clone() },
            _ => Error::Disconnected { reason: EndReason::NetworkDisconnect },
        }
    }

    /// Marks a request as written on `link`; `false` if its caller gave up (don't write it).
    fn mark_sent(&self, id: u64, link: u64) -> bool {
        match self.state.lock().pending.get_mut(&id) {
            Some(p) => {
                p.sent_on = Some(link);
                true
            }
            None => false,
        }
    }

    /// Fails every request written on `link`, which broke before they were answered.
    pub(crate) fn fail_sent_on(&self, link: u64) {
        let mut state = self.state.lock();
        let lost: Vec<u64> =
            state.pending.iter().filter(|(_, p)| p.sent_on == Some(link)).map(|(id, _)| *id).collect();
        for id in lost {
            if let Some(p) = state.pending.remove(&id) {
                let _ = p.tx.send(Err(Error::ConnectionLost { method: p.method }));
            }
        }
    }

    pub(crate) fn set_phase(&self, phase: SessionState) {
        let mut state = self.state.lock();
        if !matches!(state.phase, SessionState::Disconnected(_)) {
            state.phase = phase;
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.state.lock().emit(event);
    }

    pub(crate) fn finish(&self, reason: EndReason) {
        self.state.lock().finish(reason);
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state.lock().phase, SessionState::Disconnected(_))
    }

    // ----- inbound frames (the reader) -----

    /// Handles one inbound text frame. Returns `Some` when the session must stop reading:
    /// this participant was evicted.
    pub(crate) fn handle_frame(&self, text: &str) -> Option<ReaderEnd> {
        let frame = match Frame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, frame = %truncate(text), "ignoring a frame that is not JSON-RPC");
                return None;
            }
        };
        match (&frame.method, frame.id) {
            (Some(method), None) => self.handle_notification(method, &frame),
            (Some(method), Some(_)) => {
                tracing::warn!(%method, "ignoring a request from the server (clients never answer them)");
                None
            }
            (None, Some(raw_id)) => {
                match raw_id.get().parse::<u64>() {
                    Ok(id) => self.handle_response(id, &frame),
                    Err(_) => tracing::debug!(id = raw_id.get(), "ignoring a response to an id never sent"),
                }
                None
            }
            (None, None) => {
                tracing::warn!(frame = %truncate(text), "ignoring a frame with neither method nor id");
                None
            }
        }
    }

    fn handle_response(&self, id: u64, frame: &Frame<'_>) {
        let mut state = self.state.lock();
        let Some(pending) = state.pending.remove(&id) else {
            tracing::debug!(id, "ignoring a response to a request forgotten or never sent");
            return;
        };
        let method = pending.method;
        let reply = if let Some(error) = &frame.error {
            Err(Error::Rpc { method, code: error.code, message: error.message.clone() })
        } else {
            let raw = frame.result.map(|r| r.get()).unwrap_or("null");
            match pending.kind {
                PendingKind::Plain => serde_json::from_str::<Value>(raw)
                    .map_err(|e| Error::UnexpectedResponse { method, reason: e.to_string() }),
                PendingKind::JoinRoom => match serde_json::from_str::<JoinRoomResult>(raw) {
                    Ok(result) => {
                        install_join(&mut state, result);
                        Ok(Value::Null)
                    }
                    Err(e) => Err(Error::UnexpectedResponse { method, reason: e.to_string() }),
                },
                PendingKind::Reconnect => {
                    if !matches!(state.phase, SessionState::Disconnected(_)) {
                        state.phase = SessionState::Connected;
                        state.emit(Event::Reconnected);
                    }
                    Ok(Value::Null)
                }
            }
        };
        let _ = pending.tx.send(reply);
    }

    fn handle_notification(&self, method: &str, frame: &Frame<'_>) -> Option<ReaderEnd> {
        match method {
            notification::SEND_MESSAGE => match frame.params::<SignalNotification<'_>>() {
                Ok(n) => self.on_signal(n),
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed sendMessage notification"),
            },
            notification::PARTICIPANT_JOINED => match frame.params::<RemoteParticipant>() {
                Ok(p) => {
                    let mut state = self.state.lock();
                    if state.connection_of(p.id.as_str()).is_some() {
                        tracing::debug!(id = %p.id, "participantJoined for a known connection");
                    } else {
                        let c = Connection::new(p.id, p.created_at, p.metadata);
                        state.remotes.push(c.clone());
                        state.emit(Event::ConnectionCreated(c));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed participantJoined"),
            },
            notification::PARTICIPANT_LEFT => match frame.params::<ParticipantLeft>() {
                Ok(left) => {
                    let mut state = self.state.lock();
                    match state.remotes.iter().position(|c| c.connection_id == left.connection_id) {
                        Some(i) => {
                            let connection = state.remotes.remove(i);
                            state.emit(Event::ConnectionDestroyed { connection, reason: left.reason });
                        }
                        None => {
                            tracing::warn!(id = %left.connection_id, "participantLeft for an unknown connection")
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed participantLeft"),
            },
            notification::PARTICIPANT_EVICTED => match frame.params::<ParticipantLeft>() {
                Ok(evicted) => {
                    let mut state = self.state.lock();
                    if state.is_local(&evicted.connection_id) {
                        state.finish(evicted.reason.clone());
                        return Some(ReaderEnd::Evicted);
                    }
                    // Others' evictions arrive as participantLeft too; openvidu-browser ignores these.
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed participantEvicted"),
            },
            notification::CONNECTION_PROPERTY_CHANGED => match frame.params::<ConnectionPropertyChanged>() {
                Ok(change) => {
                    let mut state = self.state.lock();
                    match change.property.as_str() {
                        "role" => match Role::parse(&change.new_value) {
                            Some(role) => state.role = role,
                            None => tracing::warn!(value = %change.new_value, "unknown role"),
                        },
                        "record" => state.record = change.new_value == "true",
                        _ => {}
                    }
                    state.emit(Event::ConnectionPropertyChanged {
                        property: change.property,
                        new_value: change.new_value,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed connectionPropertyChanged"),
            },
            other => tracing::debug!(method = other, "ignoring an unknown notification"),
        }
        None
    }

    fn on_signal(&self, n: SignalNotification<'_>) {
        let mut state = self.state.lock();
        let from = n.from.as_deref().map(|id| match state.connection_of(id) {
            Some(c) => c.clone(),
            None => {
                // openvidu-browser drops such a signal; keeping it loses nothing.
                tracing::warn!(from = id, "signal from an unknown connection");
                Connection::new(ConnectionId::from(id), 0, "")
            }
        });
        let event = SignalEvent {
            data: n.data.map(|d| d.into_owned()).unwrap_or_default(),
            kind: n.kind.map(|k| k.into_owned()).unwrap_or_else(|| crate::event::SIGNAL_EVENT.to_owned()),
            from,
        };
        state.emit(Event::Signal(event));
    }

    // ----- links -----

    /// Opens a WebSocket at the token's URL and starts its reader and writer. Application requests
    /// are held until [`Link::open_gate`].
    pub(crate) async fn open_link(
        self: &Arc<Self>,
        reconnect: bool,
        user_rx: &Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Outgoing>>>,
    ) -> Result<Link> {
        let url = self.token.websocket_url(reconnect);
        let connector = self.token.secure.then(|| {
            Connector::Rustls(if self.opts.accept_invalid_certs {
                tls::unverified()
            } else {
                tls::verified()
            })
        });
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, connector);
        let ws = match tokio::time::timeout(self.opts.connect_timeout, connecting).await {
            Ok(Ok((ws, _response))) => ws,
            Ok(Err(e)) => return Err(Error::Connect { url, source: Box::new(e) }),
            Err(_) => {
                let ms = self.opts.connect_timeout.as_millis();
                return Err(Error::Connect { url, source: format!("timed out after {ms} ms").into() });
            }
        };
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(link = id, %url, "socket open");
        let (sink, stream) = ws.split();
        let (ctrl, ctrl_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(sink, ctrl_rx, user_rx.clone(), self.clone(), id));
        let reader = tokio::spawn(read_loop(stream, self.clone(), id));
        Ok(Link { id, ctrl, reader, reader_done: false, writer: Some(writer) })
    }

    /// Sends a request of the driver's on `link`, ahead of the application's.
    pub(crate) fn send_on(
        &self,
        link: &Link,
        method: &'static str,
        params: Option<Params>,
        kind: PendingKind,
    ) -> (u64, oneshot::Receiver<Reply>) {
        let mut state = self.state.lock();
        let (out, rx) = self.register(&mut state, method, params, kind);
        let id = out.id;
        if link.ctrl.send(Ctrl::Send(out)).is_err() {
            // The writer is gone: the link is broken and the reader will say so.
            state.pending.remove(&id);
        }
        (id, rx)
    }
}

fn install_join(state: &mut State, result: JoinRoomResult) {
    let local = Connection::new(result.id, result.created_at, result.metadata);
    state.role = result.role;
    state.record = result.record;
    state.session_id = result.session;
    state.rpc_session_id = Some(result.session_id);
    state.local = Some(local.clone());
    state.phase = SessionState::Connected;
    state.remotes = result
        .value
        .into_iter()
        .filter(|p| p.id != local.connection_id)
        .map(|p| Connection::new(p.id, p.created_at, p.metadata))
        .collect();
    // As openvidu-browser: self first, then everybody already there.
    state.emit(Event::ConnectionCreated(local));
    for c in state.remotes.clone() {
        state.emit(Event::ConnectionCreated(c));
    }
}

struct ForgetOnDrop<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.inner.forget(self.id);
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Why a reader stopped.
#[derive(Debug)]
pub(crate) enum ReaderEnd {
    /// The socket closed or failed.
    Lost(String),
    /// This participant was evicted; the session is already finished.
    Evicted,
}

/// One open WebSocket with its reader and writer tasks. Dropping it aborts both.
pub(crate) struct Link {
    pub(crate) id: u64,
    ctrl: mpsc::UnboundedSender<Ctrl>,
    reader: JoinHandle<ReaderEnd>,
    reader_done: bool,
    writer: Option<JoinHandle<()>>,
}

impl Link {
    /// Resolves when the reader stops. Cancel-safe; after it resolved once it never resolves again.
    pub(crate) async fn ended(&mut self) -> ReaderEnd {
        if self.reader_done {
            return std::future::pending().await;
        }
        let end = (&mut self.reader).await;
        self.reader_done = true;
        match end {
            Ok(end) => end,
            Err(e) => ReaderEnd::Lost(format!("reader task failed: {e}")),
        }
    }

    /// Lets the writer send the application's requests.
    pub(crate) fn open_gate(&self) {
        let _ = self.ctrl.send(Ctrl::OpenGate);
    }

    /// Stops reading, sends a close frame with `code` and `reason` (waiting at most a second),
    /// and stops the writer.
    pub(crate) async fn close(mut self, (code, reason): (u16, &'static str)) {
        self.reader.abort();
        let frame = CloseFrame { code: code.into(), reason: reason.into() };
        let _ = self.ctrl.send(Ctrl::Close(frame));
        if let Some(mut writer) = self.writer.take() {
            if tokio::time::timeout(CLOSE_TIMEOUT, &mut writer).await.is_err() {
                writer.abort();
            }
        }
        tracing::debug!(link = self.id, code, "socket closed");
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(writer) = &self.writer {
            writer.abort();
        }
    }
}

async fn read_loop(mut stream: SplitStream<Ws>, inner: Arc<Inner>, link: u64) -> ReaderEnd {
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => {
                tracing::trace!(link, frame = text.as_str(), "received");
                if let Some(end) = inner.handle_frame(text.as_str()) {
                    return end;
                }
            }
            Ok(Message::Close(frame)) => {
                let why = match frame {
                    Some(f) => format!("closed by the server ({} {})", u16::from(f.code), f.reason),
                    None => "closed by the server".to_owned(),
                };
                tracing::debug!(link, %why, "socket closed");
                return ReaderEnd::Lost(why);
            }
            Ok(Message::Binary(_)) => tracing::warn!(link, "ignoring a binary frame"),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(link, error = %e, "socket failed");
                return ReaderEnd::Lost(e.to_string());
            }
        }
    }
    ReaderEnd::Lost("socket ended".to_owned())
}

async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    mut ctrl: mpsc::UnboundedReceiver<Ctrl>,
    user: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Outgoing>>>,
    inner: Arc<Inner>,
    link: u64,
) {
    // Held for the life of this writer; released when it ends or is aborted.
    let mut user = user.lock().await;
    let mut gate = false;
    loop {
        let first = tokio::select! {
            biased;
            c = ctrl.recv() => match c {
                Some(Ctrl::Send(out)) => out,
                Some(Ctrl::OpenGate) => {
                    gate = true;
                    continue;
                }
                Some(Ctrl::Close(frame)) => {
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
                None => return,
            },
            out = user.recv(), if gate => match out {
                Some(out) => out,
                None => return,
            },
        };
        if feed(&mut sink, &inner, link, first).await.is_err() {
            return;
        }
        let mut batch = 1;
        while gate && batch < MAX_BATCH {
            let Ok(out) = user.try_recv() else { break };
            if feed(&mut sink, &inner, link, out).await.is_err() {
                return;
            }
            batch += 1;
        }
        if let Err(e) = sink.flush().await {
            tracing::debug!(link, error = %e, "write failed");
            return;
        }
    }
}

async fn feed(
    sink: &mut SplitSink<Ws, Message>,
    inner: &Inner,
    link: u64,
    out: Outgoing,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    if !inner.mark_sent(out.id, link) {
        tracing::trace!(link, id = out.id, "not sending a request its caller gave up");
        return Ok(());
    }
    tracing::trace!(link, frame = out.text.as_str(), "sending");
    sink.feed(Message::text(out.text))
        .await
        .inspect_err(|e| tracing::debug!(link, error = %e, "write failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ConnectOptions;

    fn session() -> (Arc<Inner>, mpsc::UnboundedReceiver<Event>) {
        let token = TokenInfo::parse("ws://127.0.0.1:1?sessionId=S1&token=tok_A").unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (inner, _channels) = Inner::new(token, ConnectOptions::default(), tx);
        (inner, rx)
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn join(inner: &Inner) -> oneshot::Receiver<Reply> {
        let mut state = inner.state.lock();
        let (out, rx) = inner.register(&mut state, "joinRoom", None, PendingKind::JoinRoom);
        assert_eq!(out.id, 0);
        rx
    }

    const JOIN_RESULT: &str = r#"{"jsonrpc":"2.0","id":0,"result":{"id":"con_B","finalUserId":"X","createdAt":2,
        "metadata":"bob","value":[{"id":"con_A","createdAt":1,"metadata":"alice"}],"session":"S1",
        "version":"2.32.2","mediaServer":"kurento","videoSimulcast":false,"record":true,"role":"MODERATOR",
        "coturnIp":"203.0.113.7","sessionId":"rpc1"}}"#;

    #[test]
    fn join_result_installs_the_roster_and_emits_self_first() {
        let (inner, mut events) = session();
        let mut rx = join(&inner);
        assert!(inner.handle_frame(JOIN_RESULT).is_none());
        assert!(rx.try_recv().unwrap().is_ok());
        let ev = drain(&mut events);
        assert_eq!(
            ev,
            vec![
                Event::ConnectionCreated(Connection::new("con_B".into(), 2, "bob")),
                Event::ConnectionCreated(Connection::new("con_A".into(), 1, "alice")),
            ]
        );
        let state = inner.state.lock();
        assert_eq!(state.role, Role::Moderator);
        assert_eq!(state.rpc_session_id.as_ref().unwrap(), "rpc1");
        assert_eq!(state.phase, SessionState::Connected);
    }

    #[test]
    fn notifications_keep_the_roster_and_resolve_senders() {
        let (inner, mut events) = session();
        let _rx = join(&inner);
        inner.handle_frame(JOIN_RESULT);
        drain(&mut events);
        let frames = [
            r#"{"jsonrpc":"2.0","method":"participantJoined","params":{"id":"con_C","createdAt":3,"metadata":"carol"}}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":"hi","type":"signal:chat","from":"con_C"}}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":"me","type":"signal:chat","from":"con_B"}}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":"srv"}}"#,
            r#"{"jsonrpc":"2.0","method":"participantPublished","params":{"id":"con_C","streams":[]}}"#,
            r#"{"jsonrpc":"2.0","method":"participantLeft","params":{"connectionId":"con_C","reason":"disconnect"}}"#,
            r#"{"jsonrpc":"2.0","method":"participantEvicted","params":{"connectionId":"con_A","reason":"forceDisconnectByServer"}}"#,
            r#"{"jsonrpc":"2.0","method":"connectionPropertyChanged","params":{"property":"role","newValue":"SUBSCRIBER"}}"#,
            r#"{"jsonrpc":"2.0","id":77,"result":{}}"#,
            r#"not json"#,
        ];
        for f in frames {
            assert!(inner.handle_frame(f).is_none(), "{f}");
        }
        let carol = Connection::new("con_C".into(), 3, "carol");
        let bob = Connection::new("con_B".into(), 2, "bob");
        assert_eq!(
            drain(&mut events),
            vec![
                Event::ConnectionCreated(carol.clone()),
                Event::Signal(SignalEvent {
                    data: "hi".into(),
                    kind: "signal:chat".into(),
                    from: Some(carol.clone())
                }),
                Event::Signal(SignalEvent { data: "me".into(), kind: "signal:chat".into(), from: Some(bob) }),
                Event::Signal(SignalEvent { data: "srv".into(), kind: "signal".into(), from: None }),
                Event::ConnectionDestroyed { connection: carol, reason: EndReason::Disconnect },
                Event::ConnectionPropertyChanged { property: "role".into(), new_value: "SUBSCRIBER".into() },
            ]
        );
        assert_eq!(inner.state.lock().role, Role::Subscriber);
        assert_eq!(inner.state.lock().remotes.len(), 1);
    }

    #[test]
    fn eviction_of_self_finishes_the_session() {
        let (inner, mut events) = session();
        let _rx = join(&inner);
        inner.handle_frame(JOIN_RESULT);
        drain(&mut events);
        let end = inner.handle_frame(
            r#"{"jsonrpc":"2.0","method":"participantEvicted","params":{"connectionId":"con_B","reason":"forceDisconnectByServer"}}"#,
        );
        assert!(matches!(end, Some(ReaderEnd::Evicted)));
        assert_eq!(
            drain(&mut events),
            vec![Event::SessionDisconnected { reason: EndReason::ForceDisconnectByServer }]
        );
        assert!(events.try_recv().is_err());
        assert_eq!(inner.state.lock().phase, SessionState::Disconnected(EndReason::ForceDisconnectByServer));
    }

    #[test]
    fn errors_and_kurento_quirks_reach_the_caller() {
        let (inner, _events) = session();
        let (mut rx, id) = {
            let mut state = inner.state.lock();
            let (out, rx) = inner.register(&mut state, "sendMessage", None, PendingKind::Plain);
            (rx, out.id)
        };
        let frame = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":601,"message":"bad to","sessionId":"x"}},"data":{{}}}}"#
        );
        inner.handle_frame(&frame);
        match rx.try_recv().unwrap() {
            Err(Error::Rpc { method: "sendMessage", code: 601, message }) => assert_eq!(message, "bad to"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscriptions_receive_matching_signals_only() {
        let (inner, _events) = session();
        let mut chat = inner.state.lock().subscribe("signal:chat");
        let mut all = inner.state.lock().subscribe("signal");
        for kind in ["signal:chat", "signal:other"] {
            let f = format!(
                r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"data":"x","type":"{kind}"}}}}"#
            );
            inner.handle_frame(&f);
        }
        assert_eq!(chat.try_recv().unwrap().kind, "signal:chat");
        assert!(chat.try_recv().is_err());
        assert_eq!(all.try_recv().unwrap().kind, "signal:chat");
        assert_eq!(all.try_recv().unwrap().kind, "signal:other");
        inner.finish(EndReason::Disconnect);
        assert!(matches!(chat.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    }
}
