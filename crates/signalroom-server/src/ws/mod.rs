//! The WebSocket JSON-RPC endpoint at `/openvidu` (spec §2–§5).
//!
//! A connection whose first request is the upgrade goes straight to its socket ([`accept`]);
//! hyper serves every other request. Per socket: a reader (this task) handles requests in order,
//! so one sender's signals keep their order ([`rpc`]); a writer task ([`writer`]) drains the
//! outbox into the socket. tungstenite reads and checks the client's frames.
//!
//! Who writes to a socket: its writer, always, but while it sleeps on an empty outbox; then at
//! most one pusher at a time, the one that claimed the socket under the outbox's lock, writes
//! small frames it pushed itself (see `outbox::direct`: the claim is the outbox's `Direct`
//! state, and the writer takes the socket back, after a claimed write, whenever it wakes). A
//! push under a session's lock leaves its claimed write in the operation's `outbox::Writes`,
//! made once the lock is released, never under it. Both
//! write the server's frames framed by [`crate::wire`] straight from the queued payloads; the control
//! frames tungstenite answers with go through the writer ([`transport`]).

mod accept;
mod rpc;
mod transport;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use signalroom_core::RpcSessionId;
use signalroom_core::limits::PING_WATCHDOG_FACTOR;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::either::Either;

use crate::hub::{Closing, Hub};
use crate::outbox::{Order, Out};
use crate::refusal::Refusal;
use crate::util::{client_ip, rpc_session_id};

pub(crate) use accept::Upgrades;
pub(crate) use rpc::SocketConn;

/// Initial read buffer of a socket. tungstenite zero-fills its whole read buffer before every
/// read, so its default (128 KiB) is 128 KiB of memory per idle participant; OpenVidu requests
/// are small, and the buffer still grows for a larger frame.
const READ_BUFFER: usize = 4 * 1024;
/// Frames a reader handles in a row, while the client's frames are there to read at once, before
/// it releases what it held and lets the other tasks run (the writers of the sockets its signals
/// went to, other sockets' readers). A client that keeps many requests in flight would otherwise
/// have them all read before any of their deliveries is written: it waits for those, and the
/// server's core idles meanwhile (fan-out to 10 receivers, a sender with 1,024 signals in flight:
/// the core 89% busy; with this bound 99%, and 4–16% more deliveries per second). As many as the
/// broker holds back at most: a yield comes with a release that was due.
const READ_BURST: usize = crate::sending::MOST_HELD;
/// Close code for frames over the size limit.
const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a protocol error (RFC 6455 §7.4.1).
const CLOSE_PROTOCOL: u16 = 1002;
/// Close code for a text frame that is not UTF-8.
const CLOSE_BAD_DATA: u16 = 1007;
/// How long the writer may take to flush and close once the socket is done.
const WRITER_DRAIN: Duration = Duration::from_secs(5);
/// How long a socket closed for a bad frame is held open, unread, after the close frame: a client
/// still sending the rest of that frame would otherwise get a reset, and lose the close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A client's connection once upgraded, whichever way it came: taken at its first request
/// ([`Upgrades`]), or handed over by hyper after it served the upgrade.
trait Socket: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Socket for T {}

/// An upgraded connection: a plain TCP one, which pushers may write to while its writer sleeps
/// ([`transport::TcpSocket`]), or any other (TLS, or handed over by hyper).
enum Io {
    Tcp(Arc<transport::TcpSocket>),
    Other(Box<dyn Socket>),
}

/// The socket as the reader sees it: tungstenite over its read half.
type Reader = WebSocketStream<transport::Duplex<Either<transport::Shared, ReadHalf<Box<dyn Socket>>>>>;
/// The socket as the writer sees it.
type Writer = Either<transport::Shared, WriteHalf<Box<dyn Socket>>>;

/// `GET /openvidu`: accepts any query and any Origin; problems are reported as JSON-RPC errors.
/// The upgrade is checked as RFC 6455 §4.2.1 says (no subprotocol, no extension). A valid upgrade
/// that is a connection's first request is answered before hyper ([`Upgrades`]); this route
/// serves the others (after another request on a keep-alive connection), and refuses what is not
/// a valid upgrade.
pub(crate) async fn upgrade(
    AxumState(hub): AxumState<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> HttpResponse {
    if !hub.is_ready() {
        // Draining or stopping: the balancer (or the client's next attempt) finds another node.
        return (StatusCode::SERVICE_UNAVAILABLE, "this node is not taking new sockets").into_response();
    }
    let headers = req.headers();
    let accept = match accept_key(req.method() == Method::GET, |name| {
        headers.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }) {
        Ok(accept) => accept,
        Err((status, why)) => return (status, why).into_response(),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::UPGRADE_REQUIRED, "WebSocket request couldn't be upgraded").into_response();
    };
    let ip = client_ip(req.headers().get("x-real-ip").map(HeaderValue::as_bytes), peer);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(hub, Io::Other(Box::new(TokioIo::new(upgraded))), ip, Vec::new()).await,
            Err(e) => tracing::debug!(error = %e, %ip, "upgrade failed"),
        }
    });
    HttpResponse::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .expect("a valid response")
}

/// The `Sec-WebSocket-Accept` for a valid upgrade request, or the refusal's status and reason.
/// `header(name)`: the values of the request's headers of that (lowercase) name.
fn accept_key<'h, I>(
    is_get: bool,
    header: impl Fn(&'static str) -> I,
) -> Result<String, (StatusCode, &'static str)>
where
    I: Iterator<Item = &'h [u8]>,
{
    let refuse = |status: StatusCode, why: &'static str| Err((status, why));
    let has = |name: &'static str, token: &str| {
        header(name).any(|v| {
            std::str::from_utf8(v).is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !is_get {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "a WebSocket upgrade is a GET request");
    }
    if !has("connection", "upgrade") {
        return refuse(StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'");
    }
    if !has("upgrade", "websocket") {
        return refuse(StatusCode::BAD_REQUEST, "`Upgrade` header did not include 'websocket'");
    }
    if !has("sec-websocket-version", "13") {
        return refuse(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Version` header did not include '13'");
    }
    let Some(key) = header("sec-websocket-key").next() else {
        return refuse(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Key` header missing");
    };
    Ok(derive_accept_key(key))
}

/// Serves an upgraded socket; `read`: what the client sent after its upgrade request, read with it.
async fn run(hub: Arc<Hub>, io: Io, ip: String, early: Vec<u8>) {
    // What tungstenite answers while it reads (pongs to a ping flood included) waits for the
    // writer up to this bound; a client that sends pings and never reads is cut off past it.
    let control = Arc::new(transport::Control::new(hub.config.max_write_buffer_bytes.max(1024)));
    let (id, outbox) = hub.open_socket();
    // (The writer starts first: what it takes is not kept across the reader's first await, in
    // every socket's task.)
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (read, write): (_, Writer) = match io {
        Io::Tcp(socket) => {
            let shared = transport::Shared(Arc::clone(&socket));
            outbox.give_sink(id, socket);
            (Either::Left(shared.clone()), Either::Left(shared))
        }
        Io::Other(io) => {
            let (read, write) = tokio::io::split(io);
            (Either::Right(read), Either::Right(write))
        }
    };
    let mut writer = tokio::spawn(writer::write_frames::<Writer>(
        write,
        Arc::clone(&outbox),
        Arc::clone(&control),
        id,
        done_rx,
        hub.config.write_timeout,
        Arc::clone(&hub.frame_counts),
    ));
    outbox.set_abort(writer.abort_handle());
    let max = hub.config.max_frame_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .write_buffer_size(0);
    let duplex = transport::Duplex { read, control };
    let stream = WebSocketStream::from_partially_read(duplex, early, Role::Server, Some(config)).await;
    tracing::debug!(socket = id, %ip, "socket opened");

    let mut conn =
        SocketConn::new(hub, id, outbox, ip, RpcSessionId::from(rpc_session_id()), writer.abort_handle());
    let mut stream = stream;
    let (writer_ended, linger) = read_loop(&mut conn, &mut stream, &mut writer).await;
    let stream = linger.then_some(stream);
    // Signals still on their way through the broker are finished.
    conn.drain().await;
    if conn.drained {
        conn.hand_off().await;
    }
    // The writer writes what is queued (a close frame the reader asked for included), then ends;
    // only then is the participant's outbox left for a reconnection.
    let _ = done_tx.send(());
    if !writer_ended && tokio::time::timeout(WRITER_DRAIN, &mut writer).await.is_err() {
        writer.abort();
    }
    conn.socket_closed();
    if let Some(stream) = stream {
        tokio::time::sleep(CLOSE_LINGER).await;
        drop(stream);
    }
    conn.hub.close_socket(id);
    tracing::debug!(socket = id, "socket closed");
}

/// Why the reader stops waiting for a frame.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    /// No ping within the watchdog's time.
    Ping,
    /// No frame at all since the socket opened.
    FirstFrame,
    /// No `joinRoom` (or `connect`) since the socket opened.
    Join,
}

impl Deadline {
    /// Logs why the socket closes; the reason of its close frame.
    fn close(self, conn: &SocketConn) -> &'static str {
        let config = &conn.hub.config;
        match self {
            Deadline::Ping => {
                tracing::info!(
                    socket = conn.id,
                    "no ping within {PING_WATCHDOG_FACTOR}x the interval: closing"
                );
                "Close for not receive ping from client"
            }
            Deadline::FirstFrame => {
                let timeout = config.first_frame_timeout;
                tracing::info!(socket = conn.id, "no frame within {timeout:?} of the upgrade: closing");
                "no frame received"
            }
            Deadline::Join => {
                let timeout = config.join_timeout;
                tracing::info!(socket = conn.id, "no joinRoom within {timeout:?} of the upgrade: closing");
                "no joinRoom received"
            }
        }
    }
}

/// Reads and handles requests until the socket is done; `true` when that is because the writer
/// ended (closed, failed, stalled or aborted). Then `true` when the socket closed for a bad frame:
/// the stream is to be held open a moment, unread (see [`CLOSE_LINGER`]). (The stream is borrowed:
/// an argument moved into an async fn takes room twice in its future, and this one is in every
/// socket's task.)
async fn read_loop(
    conn: &mut SocketConn,
    stream: &mut Reader,
    writer: &mut JoinHandle<bool>,
) -> (bool, bool) {
    let opened = Instant::now();
    let first_frame = opened + conn.hub.config.first_frame_timeout;
    let join_timeout = conn.hub.config.join_timeout;
    let join_by = (!join_timeout.is_zero()).then(|| opened + join_timeout);
    let mut framed = false;
    let hub = Arc::clone(&conn.hub);
    let must_close = hub.socket_must_close(conn.id);
    tokio::pin!(must_close);
    // Frames handled since the reader last waited for the client.
    let mut in_row = 0usize;
    loop {
        if in_row >= READ_BURST {
            in_row = 0;
            conn.release();
            tokio::task::yield_now().await;
        }
        // While the client's frames are there to read at once, its signals stay held back
        // (several per push to each receiver); before waiting for more, they are released.
        let ready = if conn.sending.holds() && conn.can_read() { stream.next().now_or_never() } else { None };
        let msg = match ready {
            Some(msg) => {
                in_row += 1;
                msg
            }
            None => {
                // Signals that went through the signal hook finish in bursts too: while their
                // outcomes are there at once, their held frames wait to go out together.
                if conn.sending.holds() {
                    if let Some(outcome) = conn.sending.next_now() {
                        in_row += 1;
                        Box::pin(conn.finish(outcome)).await;
                        continue;
                    }
                }
                in_row = 0;
                conn.release();
                let deadline = [
                    conn.ping_deadline.map(|at| (at, Deadline::Ping)),
                    (!framed).then_some((first_frame, Deadline::FirstFrame)),
                    join_by.filter(|_| !conn.joined_once).map(|at| (at, Deadline::Join)),
                ]
                .into_iter()
                .flatten()
                .min_by_key(|(at, _)| *at);
                tokio::select! {
                    msg = stream.next(), if conn.can_read() => msg,
                    Some(outcome) = conn.sending.next(), if !conn.sending.is_idle() => {
                        Box::pin(conn.finish(outcome)).await;
                        continue;
                    }
                    why = &mut must_close => {
                        match why {
                            Closing::Stop => conn.push(Out::Order(Order::Close { code: 1001, reason: "server stopping" })),
                            Closing::Drain => conn.drained = true,
                        }
                        break;
                    }
                    stalled = &mut *writer => {
                        // A writer blocked past the write timeout: the client does not read.
                        conn.overflowed |= matches!(stalled, Ok(true));
                        return (true, false);
                    }
                    () = sleep_until(deadline.map_or_else(Instant::now, |(at, _)| at)), if deadline.is_some() => {
                        let why = deadline.map_or(Deadline::Ping, |(_, why)| why);
                        conn.push(Out::Order(Order::Close { code: 1000, reason: why.close(conn) }));
                        break;
                    }
                }
            }
        };
        framed = true;
        match msg {
            None => break,
            Some(Ok(Message::Close(_))) => {
                // tungstenite made the answer (the client's code echoed, or 1002 for a code that
                // is not allowed); flushed, it is the writer's last frame once the reader is done.
                conn.release();
                let _ = stream.flush().await;
                break;
            }
            Some(Ok(Message::Text(text))) => conn.handle_text(&text).await,
            Some(Ok(Message::Binary(_))) => {
                conn.release();
                conn.send_error(
                    None,
                    &Refusal::InvalidRequest(
                        "binary frames are not supported: send JSON-RPC requests as text frames".into(),
                    ),
                );
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(e)) => {
                let Some((code, reason)) = close_for(&e) else {
                    tracing::debug!(socket = conn.id, error = %e, "socket error");
                    break;
                };
                if code == CLOSE_TOO_BIG {
                    tracing::info!(
                        socket = conn.id,
                        "frame over {} bytes: closing",
                        conn.hub.config.max_frame_bytes
                    );
                } else {
                    tracing::info!(socket = conn.id, error = %e, "bad frame: closing with {code}");
                }
                conn.release();
                conn.push(Out::Order(Order::Close { code, reason }));
                return (false, true);
            }
        }
        if conn.overflowed {
            break;
        }
    }
    conn.release();
    (false, false)
}

/// The close frame a read error calls for: 1009 for a frame over the limit, 1007 for a text frame
/// that is not UTF-8, 1002 for any other breach of the protocol; `None` when the socket failed
/// (nothing can be written to it).
fn close_for(e: &WsError) -> Option<(u16, &'static str)> {
    match e {
        WsError::Capacity(_) => Some((CLOSE_TOO_BIG, "message too big")),
        WsError::Utf8(_) => Some((CLOSE_BAD_DATA, "text frame is not UTF-8")),
        // The client went away without a close frame: nothing can be written to it.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((CLOSE_PROTOCOL, "protocol error")),
        _ => None,
    }
}

/// Handles `frames` as the reader of one socket would, without a socket (what it would be sent
/// is dropped), then closes it: the fuzz target's way into the dispatch.
pub(crate) async fn handle_frames<'a>(hub: Arc<Hub>, frames: impl IntoIterator<Item = &'a str>) {
    let (id, outbox) = hub.open_socket();
    let writer = tokio::spawn(async {}).abort_handle();
    let mut conn = SocketConn::new(hub, id, outbox, "127.0.0.1".into(), RpcSessionId::from("rpc"), writer);
    let mut sent = std::collections::VecDeque::new();
    for frame in frames {
        conn.handle_text(frame).await;
        conn.release();
        conn.take_sent(&mut sent);
        sent.clear();
        if conn.overflowed {
            break;
        }
    }
    conn.socket_closed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gone_without_a_close_frame_is_not_sent_one() {
        // Its socket is lost, not closed for a bad frame: no close frame, no linger.
        assert_eq!(close_for(&WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)), None);
        assert_eq!(
            close_for(&WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)),
            Some((CLOSE_PROTOCOL, "protocol error"))
        );
        assert_eq!(close_for(&WsError::ConnectionClosed), None);
    }
}
