//! One WebSocket and the two tasks that own it: the reader (hands every inbound frame to the
//! decoder) and the writer (the only code that writes to the socket).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::inbound::ReaderEnd;
use crate::pending::{Outgoing, Params, PendingKind, Reply};
use crate::state::Shared;
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
/// What one read of the socket may take. tungstenite's default, 128 KiB, is allocated for every
/// socket and stays: most of the memory of an idle session, and a process in a thousand sessions
/// holds a thousand. A frame larger than this is still read whole (the buffer grows for it).
const READ_BUFFER: usize = 8 * 1024;

/// Orders to the writer of one link.
enum Ctrl {
    /// Write this frame now, before any queued request of the application.
    Send(Outgoing),
    /// The handshake is done: write the application's requests too.
    OpenGate,
    /// Send a close frame and stop.
    Close(CloseFrame),
}

impl Shared {
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
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(WebSocketConfig::default().read_buffer_size(READ_BUFFER)),
            true,
            connector,
        );
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

async fn read_loop(mut stream: SplitStream<Ws>, shared: Arc<Shared>, link: u64) -> ReaderEnd {
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => {
                tracing::trace!(link, frame = text.as_str(), "received");
                if let Some(end) = shared.handle_frame(text.as_str()) {
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
    shared: Arc<Shared>,
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
        if feed(&mut sink, &shared, link, first).await.is_err() {
            return;
        }
        let mut batch = 1;
        while gate && batch < MAX_BATCH {
            let Ok(out) = user.try_recv() else { break };
            if feed(&mut sink, &shared, link, out).await.is_err() {
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
    shared: &Shared,
    link: u64,
    out: Outgoing,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    if !shared.mark_sent(out.id, link) {
        tracing::trace!(link, id = out.id, "not sending a request its caller gave up");
        return Ok(());
    }
    tracing::trace!(link, frame = out.text.as_str(), "sending");
    sink.feed(Message::text(out.text))
        .await
        .inspect_err(|e| tracing::debug!(link, error = %e, "write failed"))
}
