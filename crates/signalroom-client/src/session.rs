//! [`Session`], a participant joined with a token: sends signals, subscribes to events, leaves.
//! It is a handle: the connection itself is driven by a task of its own (`driver`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use signalroom_core::protocol::{ForceDisconnectParams, SendMessageParams, method};
use signalroom_core::signal::Signal;
use signalroom_core::token::TokenInfo;
use signalroom_core::{ConnectionId, Role, SessionId};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{self, Joined};
use crate::error::{Error, Result};
use crate::event::{Connection, Event, SignalEvent};
use crate::options::ConnectOptions;
use crate::pending::params;
use crate::requests::{self, REPLY_TYPE, REQUEST_TYPE, Request, RequestFailure};
use crate::state::{Command, SessionState, Shared};
use crate::streams::{self, IncomingStream, STREAM_TYPE};

/// Sends a signal for `shared`: refused before anything is sent when its frame would be over the
/// server's limit; queued now, in call order.
pub(crate) fn send_signal(
    shared: &Arc<Shared>,
    signal: Signal,
) -> impl Future<Output = Result<()>> + Send + 'static {
    let message = SendMessageParams { message: signal.to_message_json().into() };
    let shared = Arc::clone(shared);
    let params = params(&message);
    let limit = shared.max_frame.load(std::sync::atomic::Ordering::Relaxed);
    let size = params.get().len() + SEND_MESSAGE_FRAME_OVERHEAD;
    let queued = if size > limit {
        Err(signalroom_core::Error::FrameTooLarge { size, limit }.into())
    } else {
        shared.enqueue(method::SEND_MESSAGE, Some(params))
    };
    async move {
        let (id, rx) = queued?;
        shared.reply_to(method::SEND_MESSAGE, id, rx).await.map(drop)
    }
}

/// Chunk signals a writer keeps in flight (queued, not yet accepted by the server).
const STREAM_IN_FLIGHT: usize = 32;
/// Room kept free in each frame besides what is measured.
const STREAM_FRAME_MARGIN: usize = 64;
/// The frame around a sendMessage's params, with the longest request id.
const STREAM_FRAME_SKELETON: usize =
    r#"{"jsonrpc":"2.0","id":,"method":"sendMessage","params":{"message":""}}"#.len() + 20;

type Sent = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A text stream being written ([`Session::open_stream`]).
pub struct StreamWriter {
    shared: Arc<Shared>,
    id: String,
    to: Vec<ConnectionId>,
    control: Arc<streams::FlowControl>,
    open: Option<serde_json::Value>,
    chunks: u64,
    written: u64,
    message_cost: usize,
    in_flight: std::collections::VecDeque<Sent>,
    over: bool,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter").field("id", &self.id).field("written", &self.written).finish()
    }
}

impl StreamWriter {
    /// The stream's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn header(&self) -> serde_json::Value {
        let mut header = serde_json::json!({"id": self.id, "n": self.chunks});
        if let Some(open) = &self.open {
            header["open"] = open.clone();
        }
        header
    }

    fn room(&self, header: &serde_json::Value) -> usize {
        let mut skeleton = header.clone();
        skeleton["data"] = "".into();
        let used = STREAM_FRAME_SKELETON
            + self.message_cost
            + streams::cost(&skeleton.to_string())
            + STREAM_FRAME_MARGIN;
        self.shared.max_frame.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(used)
    }

    /// Sends `text`, in as many signals as it takes; waits first while a reader is too far behind.
    pub async fn write(&mut self, text: &str) -> Result<()> {
        let mut rest = text;
        loop {
            let header = self.header();
            let room = self.room(&header).max(8);
            let mut end = floor_boundary(rest, rest.len().min(room));
            loop {
                let cost = streams::cost(&streams::escaped(&rest[..end]));
                if cost <= room || end <= 4 {
                    break;
                }
                end = floor_boundary(rest, (end * room / cost).saturating_sub(8).min(end - 1));
            }
            if end == 0 && !rest.is_empty() {
                end = rest.chars().next().map_or(0, char::len_utf8);
            }
            let (piece, after) = rest.split_at(end);
            self.send(header, piece, None).await?;
            rest = after;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    async fn send(
        &mut self,
        header: serde_json::Value,
        piece: &str,
        last: Option<(&str, serde_json::Value)>,
    ) -> Result<()> {
        if last.is_none() {
            self.flow().await?;
        }
        let mut body = header;
        body["data"] = piece.into();
        if let Some((key, value)) = last {
            body[key] = value;
        }
        self.open = None;
        self.chunks += 1;
        self.written += piece.len() as u64;
        let signal = Signal::new(body.to_string(), Some(STREAM_TYPE), self.to.clone())?;
        self.in_flight.push_back(Box::pin(send_signal(&self.shared, signal)));
        while self.in_flight.len() > STREAM_IN_FLIGHT {
            if let Some(sent) = self.in_flight.pop_front() {
                sent.await?;
            }
        }
        Ok(())
    }

    async fn flow(&mut self) -> Result<()> {
        while self.control.blocked(self.written, self.chunks) {
            let changed = self.control.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !self.control.blocked(self.written, self.chunks) {
                break;
            }
            if tokio::time::timeout(streams::ANNOUNCE_GRACE, changed).await.is_err() {
                self.control.flow.lock().presumed.clear();
            }
        }
        if self.control.flow.lock().over {
            return Err(self.shared.closed_error());
        }
        Ok(())
    }

    async fn finish(&mut self, key: &str, value: serde_json::Value) -> Result<()> {
        if self.over {
            return Ok(());
        }
        self.over = true;
        let header = self.header();
        self.send(header, "", Some((key, value))).await?;
        while let Some(sent) = self.in_flight.pop_front() {
            sent.await?;
        }
        Ok(())
    }

    /// Ends the stream.
    pub async fn close(mut self) -> Result<()> {
        self.finish("end", true.into()).await
    }

    /// Ends the stream early: readers get a [`StreamAborted`](crate::StreamAborted) with `reason`.
    pub async fn abort(mut self, reason: &str) -> Result<()> {
        self.finish("abort", reason.into()).await
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.shared.state.lock().streams.writers.remove(&self.id);
    }
}

/// The largest char boundary of `s` at or below `at`.
fn floor_boundary(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A request given up (dropped, timed out) after it was sent: the other side is told to cancel
/// its handler.
struct CancelOnDrop {
    shared: Arc<Shared>,
    id: String,
    to: ConnectionId,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let forgotten = self.shared.state.lock().requests.forget(&self.id);
        if self.armed && forgotten {
            if let Ok(signal) =
                Signal::new(requests::cancel_data(&self.id), Some(REQUEST_TYPE), vec![self.to.clone()])
            {
                drop(send_signal(&self.shared, signal)); // queued; its answer is not awaited
            }
        }
    }
}

/// Runs a request's handler (or says there is none) and sends the reply to the caller.
pub(crate) async fn serve_request(shared: Arc<Shared>, incoming: requests::Incoming) {
    let (caller, id, data) = match incoming {
        requests::Incoming::Serve(handler, request) => {
            let (caller, id) = (request.caller.connection_id.clone(), request.id.clone());
            let outcome = handler(request).await;
            let data = requests::reply_data(&id, &outcome);
            (caller, id, data)
        }
        requests::Incoming::NoHandler { caller, id, method } => {
            let data = requests::error_data(&id, "no-handler", &format!("no handler of {method:?}"));
            (caller, id, data)
        }
    };
    let Ok(signal) = Signal::new(data, Some(REPLY_TYPE), vec![caller.clone()]) else { return };
    match send_signal(&shared, signal).await {
        Err(Error::Invalid(e @ signalroom_core::Error::FrameTooLarge { .. })) => {
            let data = requests::error_data(&id, "reply-too-big", &e.to_string());
            if let Ok(signal) = Signal::new(data, Some(REPLY_TYPE), vec![caller]) {
                let _ = send_signal(&shared, signal).await;
            }
        }
        Err(e) => tracing::debug!(error = %e, "a reply could not be sent"),
        Ok(()) => {}
    }
}

/// The bytes a `sendMessage` request adds around its params:
/// `{"jsonrpc":"2.0","id":N,"method":"sendMessage","params":…}` with the longest id (20 digits).
const SEND_MESSAGE_FRAME_OVERHEAD: usize =
    r#"{"jsonrpc":"2.0","id":,"method":"sendMessage","params":}"#.len() + 20;

/// The events of a session, in arrival order; closed after
/// [`Event::SessionDisconnected`].
///
/// Unbounded on purpose: the reader never waits for the application, so a caller awaiting
/// [`Session::signal`] while not draining events can never stall the link (the response it
/// waits for sits behind those events). Memory grows only while the application does not read.
pub type EventReceiver = mpsc::UnboundedReceiver<Event>;

/// A participant's membership in an OpenVidu session: one WebSocket JSON-RPC link, kept alive
/// and reopened when it breaks.
///
/// Cheap to clone (`Arc`); every clone is the same participant. When the last clone is dropped
/// the session is left (`leaveRoom`) in the background. Every `async` method is cancel-safe:
/// dropping its future never corrupts the link (a request not yet written is not written; the
/// response of one already written is ignored).
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    local: Connection,
    session_id: SessionId,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shared.cmd_tx.send(Command::Leave(None));
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.handle.session_id)
            .field("connection_id", &self.handle.local.connection_id)
            .field("state", &self.state())
            .finish()
    }
}

impl Session {
    /// Joins the session of `token` with default options. See [`Session::connect_with`].
    pub async fn connect(token: &str) -> Result<(Session, EventReceiver)> {
        Self::connect_with(token, ConnectOptions::default()).await
    }

    /// Joins the session of `token` (`ws[s]://host[:port]?sessionId=…&token=…`), as
    /// openvidu-browser does: opens `<scheme>://host[:port]/openvidu?sessionId=…`, sends `ping`
    /// then `joinRoom`, and resolves when the server accepted the token.
    ///
    /// The receiver's first events are [`Event::ConnectionCreated`] for this participant, then
    /// one per participant already in the session.
    ///
    /// Errors: [`Error::Invalid`](crate::Error::Invalid) for a malformed token, [`Error::Connect`](crate::Error::Connect) when the socket
    /// cannot be opened, [`Error::Rpc`](crate::Error::Rpc) when the server refuses the join (401 token invalid or
    /// used, 202 session unknown), [`Error::Timeout`](crate::Error::Timeout).
    pub async fn connect_with(token: &str, options: ConnectOptions) -> Result<(Session, EventReceiver)> {
        let info = TokenInfo::parse(token)?;
        if info.session_id.is_none() {
            return Err(signalroom_core::Error::InvalidToken(token.to_owned()).into());
        }
        let (events_tx, events) = mpsc::unbounded_channel();
        let (shared, channels) = Shared::new(info, options, events_tx);
        let (joined_tx, joined_rx) = oneshot::channel();
        tokio::spawn(driver::run(shared.clone(), channels, joined_tx));
        let Joined { local, session_id } = match joined_rx.await {
            Ok(Ok(joined)) => joined,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(shared.closed_error()),
        };
        Ok((Session { handle: Arc::new(Handle { shared, local, session_id }) }, events))
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Sends a signal; resolves when the server accepted it (`{}`), which OpenVidu sends after
    /// delivering it to every recipient's queue, the sender included for broadcasts.
    ///
    /// Errors: [`Error::Rpc`](crate::Error::Rpc) with code 601 when a recipient is not in the session (nothing is
    /// delivered), 600 for a malformed signal; [`Error::Timeout`](crate::Error::Timeout); [`Error::ConnectionLost`](crate::Error::ConnectionLost);
    /// [`Error::Disconnected`](crate::Error::Disconnected). While reconnecting, the signal waits (within its timeout).
    ///
    /// The request is queued when this is called, not when the future is first polled, so
    /// signals go out in the order of the calls even when their futures run concurrently.
    pub fn signal(&self, signal: Signal) -> impl Future<Output = Result<()>> + Send + 'static {
        send_signal(&self.handle.shared, signal)
    }

    /// Asks participant `to` to run its handler of `method` with `payload` (the envelope of
    /// signalroom's Python package and browser module, `docs/protocol.md`) and returns its reply.
    /// Dropping the future (or the timeout) tells the other side to cancel its handler.
    ///
    /// Errors: [`Error::Request`](crate::Error::Request) with [`RequestFailure::Timeout`],
    /// `NoHandler`, `TargetLeft` (it left, or is not in the session), `HandlerFailed` (with the
    /// handler's message) or `ReplyTooBig`; [`Error::Invalid`](crate::Error::Invalid) for a payload too big for one
    /// signal; [`Error::Disconnected`](crate::Error::Disconnected) when this session ends first.
    pub async fn request(
        &self,
        to: &ConnectionId,
        method: &str,
        payload: &str,
        timeout: std::time::Duration,
    ) -> Result<String> {
        let shared = &self.handle.shared;
        let (id, rx) = shared.state.lock().requests.register(to.clone());
        let failed = |failure: RequestFailure, message: String| Error::Request {
            method: method.to_owned(),
            target: to.clone(),
            failure,
            message,
        };
        let mut guard =
            CancelOnDrop { shared: Arc::clone(shared), id: id.clone(), to: to.clone(), armed: false };
        let signal =
            Signal::new(requests::request_data(&id, method, payload), Some(REQUEST_TYPE), vec![to.clone()])?;
        match send_signal(shared, signal).await {
            Ok(()) => guard.armed = true,
            Err(Error::Rpc { code: 601, .. }) => {
                return Err(failed(RequestFailure::TargetLeft, "not in the session".into()));
            }
            Err(e) => return Err(e),
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                Err(failed(RequestFailure::Timeout, format!("no reply within {} ms", timeout.as_millis())))
            }
            Ok(Err(_)) => {
                guard.armed = false;
                Err(shared.closed_error())
            }
            Ok(Ok(outcome)) => {
                guard.armed = false;
                outcome.map_err(|(failure, message)| failed(failure, message))
            }
        }
    }

    /// Makes `handler` answer the requests of `method` ([`Session::request`], or the Python
    /// package's and browser module's): it receives a [`Request`] and gives the reply, or an
    /// error message the caller gets as [`RequestFailure::HandlerFailed`]. It runs as a task,
    /// aborted if the caller gives up or leaves. Once a handler is registered this session also
    /// answers requests of other methods, with `NoHandler`; request signals no longer reach its
    /// events.
    pub fn handle<F, Fut>(&self, method: &str, handler: F)
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = requests::HandlerResult> + Send + 'static,
    {
        let handler: requests::Handler = Arc::new(move |request| Box::pin(handler(request)));
        self.shared().state.lock().requests.handlers.insert(method.to_owned(), handler);
    }

    /// The largest frame the server accepts, in bytes: what its `joinRoom` answer said
    /// (signalroom's `maxFrameBytes`), or OpenVidu's 50 KiB for a server that says nothing.
    /// [`Session::signal`] refuses a signal whose request would be larger.
    pub fn max_frame_bytes(&self) -> usize {
        self.shared().max_frame.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A text stream to `to` (everyone else when empty), on `topic`, with `total` bytes to
    /// expect if known: [`StreamWriter::write`] pieces of any size, then
    /// [`close`](StreamWriter::close) or [`abort`](StreamWriter::abort) it. The envelope is the
    /// Python package's and the browser module's; a writer waits while a reader that acknowledges
    /// is more than [`WINDOW_BYTES`](crate::WINDOW_BYTES) behind.
    pub fn open_stream(&self, to: &[ConnectionId], topic: &str, total: Option<u64>) -> StreamWriter {
        let shared = Arc::clone(&self.handle.shared);
        let control = Arc::new(streams::FlowControl::default());
        let id = {
            let mut state = shared.state.lock();
            let presumed: std::collections::HashSet<ConnectionId> = if to.is_empty() {
                state.remotes.iter().map(|c| c.connection_id.clone()).collect()
            } else {
                to.iter().cloned().collect()
            };
            control.flow.lock().presumed = presumed;
            let id = state.streams.next_id();
            state.streams.writers.insert(id.clone(), Arc::clone(&control));
            id
        };
        let mut open = serde_json::json!({"topic": topic, "kind": "text"});
        if let Some(total) = total {
            open["total"] = total.into();
        }
        let message =
            serde_json::json!({"to": to, "data": "", "type": format!("signal:{STREAM_TYPE}")}).to_string();
        let message_cost = message.len() + message.bytes().filter(|&b| b == b'"' || b == b'\\').count();
        StreamWriter {
            shared,
            id,
            to: to.to_vec(),
            control,
            open: Some(open),
            chunks: 0,
            written: 0,
            message_cost,
            in_flight: std::collections::VecDeque::new(),
            over: false,
        }
    }

    /// Sends `text`, of any size, as one stream (see [`Session::open_stream`]).
    pub async fn send_text(&self, text: &str, to: &[ConnectionId], topic: &str) -> Result<()> {
        let mut stream = self.open_stream(to, topic, Some(text.len() as u64));
        match stream.write(text).await {
            Ok(()) => stream.close().await,
            Err(e) => {
                let _ = stream.abort(&e.to_string()).await;
                Err(e)
            }
        }
    }

    /// The streams of `topic` (every topic when `None`) that begin from now on. Once this is
    /// called, stream signals no longer reach the events; a stream nobody reads is skipped.
    pub fn streams(&self, topic: Option<&str>) -> mpsc::UnboundedReceiver<IncomingStream> {
        self.shared().state.lock().streams.subscribe(topic.map(str::to_owned))
    }

    /// A stream of the signals named `name`: `signal` for every signal, otherwise those whose wire
    /// type is exactly `name` (e.g. `signal:chat`), as openvidu-browser's `session.on(name)`.
    /// Receives the signals that arrive after this call; ends when the session ends.
    pub fn subscribe(&self, name: &str) -> Subscription {
        Subscription { rx: self.shared().state.lock().subscribe(name) }
    }

    /// Leaves the session: `leaveRoom`, then the socket is closed with 4102. Resolves when done;
    /// the last event is [`Event::SessionDisconnected`] with reason `disconnect`. Leaving a
    /// session that is already over does nothing.
    pub async fn disconnect(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.shared().cmd_tx.send(Command::Leave(Some(tx))).is_ok() {
            // An error means the driver ended first: the session is over either way.
            let _ = rx.await;
        }
        Ok(())
    }

    /// Evicts a participant (`forceDisconnect`); needs the MODERATOR role (else 401).
    pub async fn force_disconnect(&self, connection_id: &ConnectionId) -> Result<()> {
        let target = ForceDisconnectParams { connection_id: connection_id.clone() };
        self.shared().call(method::FORCE_DISCONNECT, Some(params(&target))).await.map(drop)
    }

    /// This participant.
    pub fn connection(&self) -> Connection {
        self.handle.local.clone()
    }

    /// This participant's connection id.
    pub fn connection_id(&self) -> &ConnectionId {
        &self.handle.local.connection_id
    }

    /// The other participants, in join order.
    pub fn remote_connections(&self) -> Vec<Connection> {
        self.shared().state.lock().remotes.clone()
    }

    /// Another participant by id.
    pub fn remote_connection(&self, id: &ConnectionId) -> Option<Connection> {
        self.shared().state.lock().remotes.iter().find(|c| &c.connection_id == id).cloned()
    }

    /// The OpenVidu session id.
    pub fn session_id(&self) -> &SessionId {
        &self.handle.session_id
    }

    /// This participant's role (updated by `connectionPropertyChanged`).
    pub fn role(&self) -> Role {
        self.shared().state.lock().role
    }

    /// Where the session is: connected, reconnecting, or over (and why).
    pub fn state(&self) -> SessionState {
        self.shared().state.lock().phase.clone()
    }
}

/// The signals of one name, from [`Session::subscribe`]. A [`Stream`]; ends when the session
/// ends.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<SignalEvent>,
}

impl Subscription {
    /// The next signal; `None` once the session is over.
    pub async fn recv(&mut self) -> Option<SignalEvent> {
        self.rx.recv().await
    }

    /// Every signal already received, without waiting.
    pub fn drain(&mut self) -> Vec<SignalEvent> {
        std::iter::from_fn(|| self.rx.try_recv().ok()).collect()
    }
}

impl Stream for Subscription {
    type Item = SignalEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SignalEvent>> {
        self.rx.poll_recv(cx)
    }
}
