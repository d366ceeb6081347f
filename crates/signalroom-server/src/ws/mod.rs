//! The WebSocket JSON-RPC endpoint at `/openvidu` (spec §2–§5).
//!
//! Per socket: a reader (this task) handles requests in order, so one sender's signals keep their
//! order ([`rpc`]); a writer task ([`writer`]) drains the outbox into the socket. Only the writer
//! touches the sink.

mod rpc;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State as AxumState};
use axum::http::HeaderMap;
use axum::response::Response as HttpResponse;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use signalroom_core::RpcSessionId;
use signalroom_core::limits::PING_WATCHDOG_FACTOR;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::hub::Hub;
use crate::outbox::{Order, Out};
use crate::refusal::Refusal;
use crate::util::{client_ip, rpc_session_id};

pub(crate) use rpc::SocketConn;

/// Initial read buffer of a socket. tungstenite zero-fills its whole read buffer before every
/// read, so its default (128 KiB) is 128 KiB of memory per idle participant; OpenVidu requests
/// are small, and the buffer still grows for a larger frame.
const READ_BUFFER: usize = 8 * 1024;
/// Close code for frames over the size limit.
const CLOSE_TOO_BIG: u16 = 1009;
/// How long the writer may take to flush and close once the socket is done.
const WRITER_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /openvidu`: accepts any query and any Origin; problems are reported as JSON-RPC errors.
pub(crate) async fn upgrade(
    AxumState(hub): AxumState<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> HttpResponse {
    let ip = client_ip(&headers, peer);
    let max = hub.config.max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| run(hub, socket, ip))
}

async fn run(hub: Arc<Hub>, socket: WebSocket, ip: String) {
    let (id, outbox) = hub.open_socket();
    let (sink, stream) = socket.split();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let mut writer = tokio::spawn(writer::write_frames(sink, Arc::clone(&outbox), id, done_rx));
    outbox.set_abort(writer.abort_handle());
    tracing::debug!(socket = id, %ip, "socket opened");

    let mut conn =
        SocketConn::new(hub, id, outbox, ip, RpcSessionId::from(rpc_session_id()), writer.abort_handle());
    let writer_ended = read_loop(&mut conn, stream, &mut writer).await;
    // The writer writes what is queued (a close frame the reader asked for included), then ends;
    // only then is the participant's outbox left for a reconnection.
    let _ = done_tx.send(());
    if !writer_ended && tokio::time::timeout(WRITER_DRAIN, &mut writer).await.is_err() {
        writer.abort();
    }
    conn.socket_closed();
    conn.hub.close_socket(id);
    tracing::debug!(socket = id, "socket closed");
}

/// Reads and handles requests until the socket is done; `true` when that is because the writer
/// ended (closed, failed or aborted).
async fn read_loop(
    conn: &mut SocketConn,
    mut stream: SplitStream<WebSocket>,
    writer: &mut JoinHandle<()>,
) -> bool {
    loop {
        let deadline = conn.ping_deadline;
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = &mut *writer => return true,
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                tracing::info!(socket = conn.id, "no ping within {}x the interval: closing", PING_WATCHDOG_FACTOR);
                conn.push(Out::Order(Order::Close { code: 1000, reason: "Close for not receive ping from client" }));
                break;
            }
        };
        match msg {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(text))) => conn.handle_text(&text).await,
            Some(Ok(Message::Binary(_))) => conn.send_error(
                None,
                &Refusal::InvalidRequest(
                    "binary frames are not supported: send JSON-RPC requests as text frames".into(),
                ),
            ),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Err(e)) => {
                if is_too_big(&e) {
                    tracing::info!(
                        socket = conn.id,
                        "frame over {} bytes: closing",
                        conn.hub.config.max_frame_bytes
                    );
                    conn.push(Out::Order(Order::Close { code: CLOSE_TOO_BIG, reason: "message too big" }));
                } else {
                    tracing::debug!(socket = conn.id, error = %e, "socket error");
                }
                break;
            }
        }
        if conn.overflowed {
            break;
        }
    }
    false
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
