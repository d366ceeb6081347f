//! A socket's writer task: the only code that writes to the socket. It drains the outbox it is
//! attached to (the socket's own, then its participant's), follows a reconnection to the
//! participant's outbox, honours close orders, and ends when another socket takes its
//! participant over or the reader is done.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

use crate::outbox::{Order, Out, Outbox, Take};

/// Frames written between flushes at most, so a long queue reaches the socket in pieces.
const WRITE_BATCH: usize = 256;
/// How long a close frame may take to write.
const CLOSE_WRITE: Duration = Duration::from_secs(1);

/// How a batch went.
enum Wrote {
    /// Written; the socket goes on.
    All,
    /// The socket is done (closed, failed, or a close written).
    Done,
    /// A write stayed blocked past the write timeout: the client does not read.
    Stalled,
}

/// Writes what socket `me`'s outbox holds until the socket is done. `reader_done` fires when the
/// reader stopped: what is queued then is written, and the socket closed. Returns `true` when a
/// write stayed blocked for `timeout` (the client does not read): its participant is to be evicted.
pub(crate) async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbox: Arc<Outbox>,
    me: u64,
    mut reader_done: oneshot::Receiver<()>,
    timeout: Duration,
) -> bool {
    let mut close_at: Option<Instant> = None;
    let mut batch = VecDeque::new();
    let mut finishing = false;
    loop {
        let took = tokio::select! {
            took = outbox.take(&mut batch, me) => took,
            () = sleep_until(close_at.unwrap_or_else(Instant::now)), if close_at.is_some() => {
                batch.push_back(Out::Order(Order::Close { code: 1000, reason: "closed by server" }));
                Take::Items
            }
            _ = &mut reader_done, if !finishing => {
                finishing = true;
                outbox.take_now(&mut batch, me);
                Take::Items
            }
        };
        match took {
            Take::Items => {}
            Take::Redirect(next) => {
                outbox = next;
                continue;
            }
            Take::Detached => {
                let close =
                    CloseFrame { code: 1000, reason: Utf8Bytes::from_static("replaced by a reconnection") };
                let _ = tokio::time::timeout(CLOSE_WRITE, sink.send(Message::Close(Some(close)))).await;
                return false;
            }
        }
        let wrote = write_batch(&mut sink, &mut batch, &mut close_at, timeout).await;
        if !matches!(wrote, Wrote::All) {
            // What this socket could not write is still owed to its participant (or, stalled,
            // goes with it when it is evicted).
            outbox.requeue(me, std::mem::take(&mut batch));
            if matches!(wrote, Wrote::Stalled) {
                tracing::warn!(
                    socket = me,
                    "a write stayed blocked for {timeout:?}: the client does not read"
                );
                return true;
            }
            return false;
        }
        if finishing {
            let _ = tokio::time::timeout(CLOSE_WRITE, sink.send(Message::Close(None))).await;
            return false;
        }
    }
}

/// Writes a batch, each write within `timeout`.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    batch: &mut VecDeque<Out>,
    close_at: &mut Option<Instant>,
    timeout: Duration,
) -> Wrote {
    let mut written = 0;
    while let Some(out) = batch.pop_front() {
        match out {
            Out::Frame(text) => {
                // (What was being fed when the socket failed is gone with it; the rest of the
                // batch is given back.)
                match io(*close_at, timeout, sink.feed(Message::Text(text))).await {
                    Wrote::All => {}
                    other => return other,
                }
                written += 1;
                if written % WRITE_BATCH == 0 {
                    match io(*close_at, timeout, sink.flush()).await {
                        Wrote::All => {}
                        other => return other,
                    }
                }
            }
            Out::Order(Order::Close { code, reason }) => {
                let close = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                let _ = tokio::time::timeout(CLOSE_WRITE, sink.send(Message::Close(Some(close)))).await;
                return Wrote::Done;
            }
            Out::Order(Order::CloseAfter(delay)) => {
                let at = Instant::now() + delay;
                *close_at = Some(close_at.map_or(at, |c| c.min(at)));
            }
            Out::Order(Order::KeepOpen) => *close_at = None,
        }
    }
    if written % WRITE_BATCH == 0 { Wrote::All } else { io(*close_at, timeout, sink.flush()).await }
}

/// A socket write, which may block while the client does not read: past `timeout` the socket is
/// stalled; once a close is due, a write that cannot finish by then ends the socket.
async fn io(
    close_at: Option<Instant>,
    timeout: Duration,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Wrote {
    let stall = Instant::now() + timeout;
    match close_at {
        Some(at) if at < stall => match tokio::time::timeout_at(at, write).await {
            Ok(Ok(())) => Wrote::All,
            _ => Wrote::Done,
        },
        _ => match tokio::time::timeout_at(stall, write).await {
            Ok(Ok(())) => Wrote::All,
            Ok(Err(_)) => Wrote::Done,
            Err(_) => Wrote::Stalled,
        },
    }
}
