//! Text streams of any size between participants ([`Session::open_stream`](crate::Session::open_stream),
//! [`Session::streams`](crate::Session::streams)) over ordinary signals, with the envelope of
//! signalroom's Python package and browser module (`docs/protocol.md`): chunks are
//! `signal:sr.stream` signals `{"id":"3","n":0,"open":{"topic":…,"kind":"text","total":…},"data":…}`,
//! the last with `"end":true` (or `"abort":"why"`); readers acknowledge what they consumed with
//! `signal:sr.ack` `{"id":"3","read":…,"n":…}`, and a writer keeps within a window of each reader
//! that does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use signalroom_core::ConnectionId;
use tokio::sync::{Notify, mpsc};

use crate::event::{Connection, SignalEvent};

/// The signal type of a stream's chunks (on the wire `signal:sr.stream`).
pub const STREAM_TYPE: &str = "sr.stream";
/// The signal type of a reader's acknowledgements (on the wire `signal:sr.ack`).
pub const ACK_TYPE: &str = "sr.ack";
pub(crate) const STREAM_WIRE_TYPE: &str = "signal:sr.stream";
pub(crate) const ACK_WIRE_TYPE: &str = "signal:sr.ack";

/// A writer waits while a reader that acknowledges is this many bytes behind...
pub const WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// ... or this many chunks.
pub const WINDOW_CHUNKS: u64 = 1024;
/// A recipient silent once the window is full is not waited for after this long.
pub const ANNOUNCE_GRACE: Duration = Duration::from_secs(5);
const ACK_BYTES: u64 = WINDOW_BYTES / 4;
const ACK_CHUNKS: u64 = WINDOW_CHUNKS / 4;

/// What a writer knows of its readers.
#[derive(Default)]
pub(crate) struct Flow {
    pub(crate) readers: HashMap<ConnectionId, (u64, u64)>,
    pub(crate) presumed: HashSet<ConnectionId>,
    pub(crate) over: bool,
}

/// One writer's flow control, shared with the reader of acknowledgements.
#[derive(Default)]
pub(crate) struct FlowControl {
    pub(crate) flow: Mutex<Flow>,
    pub(crate) changed: Notify,
}

impl FlowControl {
    pub(crate) fn blocked(&self, written: u64, chunks: u64) -> bool {
        let behind = |read: u64, n: u64| {
            written.saturating_sub(read) >= WINDOW_BYTES || chunks.saturating_sub(n) >= WINDOW_CHUNKS
        };
        let flow = self.flow.lock();
        if flow.over {
            return false;
        }
        (!flow.presumed.is_empty() && behind(0, 0)) || flow.readers.values().any(|&(read, n)| behind(read, n))
    }
}

/// Why a stream could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {id} was aborted: {reason}")]
#[non_exhaustive]
pub struct StreamAborted {
    /// The stream's id.
    pub id: String,
    /// The sender's reason, `sender left`, `chunks missing`, or the session's end.
    pub reason: String,
}

/// Sends a reader's acknowledgement (`to`, `data`) for the session.
pub(crate) type AckSender = Arc<dyn Fn(ConnectionId, String) + Send + Sync>;

/// A stream being received ([`Session::streams`](crate::Session::streams)): its chunks in order.
pub struct IncomingStream {
    /// The sender's id of this stream.
    pub id: String,
    /// Who sends it.
    pub sender: Connection,
    /// Its topic.
    pub topic: String,
    /// The size the sender announced, in bytes, if any.
    pub total: Option<u64>,
    chunks: mpsc::UnboundedReceiver<Result<String, StreamAborted>>,
    acks: AckSender,
    read: u64,
    read_chunks: u64,
    acked: (u64, u64),
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream")
            .field("id", &self.id)
            .field("sender", &self.sender.connection_id)
            .field("topic", &self.topic)
            .field("total", &self.total)
            .field("read", &self.read)
            .finish()
    }
}

impl IncomingStream {
    /// The next chunk, in order; `None` at the stream's end; an error if it was aborted.
    pub async fn next_chunk(&mut self) -> Option<Result<String, StreamAborted>> {
        let chunk = self.chunks.recv().await?;
        if let Ok(text) = &chunk {
            self.read += text.len() as u64;
            self.read_chunks += 1;
            if self.read - self.acked.0 >= ACK_BYTES || self.read_chunks - self.acked.1 >= ACK_CHUNKS {
                self.ack();
            }
        }
        Some(chunk)
    }

    fn ack(&mut self) {
        self.acked = (self.read, self.read_chunks);
        let data = json!({"id": self.id, "read": self.read, "n": self.read_chunks}).to_string();
        (self.acks)(self.sender.connection_id.clone(), data);
    }

    /// The whole text, once the stream ended.
    pub async fn text(mut self) -> Result<String, StreamAborted> {
        let mut out = String::new();
        while let Some(chunk) = self.next_chunk().await {
            out.push_str(&chunk?);
        }
        Ok(out)
    }
}

struct Incoming {
    tx: mpsc::UnboundedSender<Result<String, StreamAborted>>,
    next: u64,
}

/// A session's streams being received, and the writers' flow control.
#[derive(Default)]
pub(crate) struct Streams {
    incoming: HashMap<(ConnectionId, String), Incoming>,
    subscribers: Vec<(Option<String>, mpsc::UnboundedSender<IncomingStream>)>,
    pub(crate) writers: HashMap<String, Arc<FlowControl>>,
    next: u64,
}

impl Streams {
    pub(crate) fn next_id(&mut self) -> String {
        self.next += 1;
        format!("s{}", self.next)
    }

    pub(crate) fn subscribe(&mut self, topic: Option<String>) -> mpsc::UnboundedReceiver<IncomingStream> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push((topic, tx));
        rx
    }

    /// A `signal:sr.stream`: `false` when nothing here reads streams (it goes to the events).
    pub(crate) fn on_chunk(
        &mut self,
        event: &SignalEvent,
        me: Option<&ConnectionId>,
        acks: &AckSender,
    ) -> bool {
        self.subscribers.retain(|(_, tx)| !tx.is_closed());
        if self.subscribers.is_empty() && self.incoming.is_empty() {
            return false;
        }
        let Some(sender) = event.from.clone() else { return true };
        if Some(&sender.connection_id) == me {
            return true; // our own broadcast, back
        }
        let Ok(message) = serde_json::from_str::<Value>(&event.data) else { return true };
        let id = match message.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return true,
        };
        let n = message.get("n").and_then(Value::as_u64);
        let key = (sender.connection_id.clone(), id.clone());
        if !self.incoming.contains_key(&key) {
            let Some(open) = message.get("open").filter(|_| n == Some(0)) else { return true };
            let topic = open.get("topic").and_then(Value::as_str).unwrap_or("").to_owned();
            let Some(subscriber) = self
                .subscribers
                .iter()
                .find(|(t, _)| t.as_deref().is_none_or(|t| t == topic))
                .map(|(_, tx)| tx.clone())
            else {
                let skip = json!({"id": id, "skip": true}).to_string();
                acks(sender.connection_id.clone(), skip);
                return true;
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let mut stream = IncomingStream {
                id: id.clone(),
                sender: sender.clone(),
                topic,
                total: open.get("total").and_then(Value::as_u64),
                chunks: rx,
                acks: acks.clone(),
                read: 0,
                read_chunks: 0,
                acked: (0, 0),
            };
            stream.ack(); // a reader is here
            if subscriber.send(stream).is_err() {
                return true;
            }
            self.incoming.insert(key.clone(), Incoming { tx, next: 0 });
        }
        let Some(incoming) = self.incoming.get_mut(&key) else { return true };
        if n != Some(incoming.next) {
            let reason = "chunks missing".to_owned();
            let _ = incoming.tx.send(Err(StreamAborted { id, reason }));
            self.incoming.remove(&key);
            return true;
        }
        incoming.next += 1;
        if let Some(Value::String(text)) = message.get("data") {
            if !text.is_empty() {
                let _ = incoming.tx.send(Ok(text.clone()));
            }
        }
        if let Some(reason) = message.get("abort") {
            let reason = reason.as_str().map_or_else(|| reason.to_string(), str::to_owned);
            let _ = incoming.tx.send(Err(StreamAborted { id, reason }));
            self.incoming.remove(&key);
        } else if message.get("end").and_then(Value::as_bool) == Some(true) {
            self.incoming.remove(&key);
        }
        true
    }

    /// A `signal:sr.ack`: `false` when it is not for a writer of this client.
    pub(crate) fn on_ack(&mut self, event: &SignalEvent) -> bool {
        let Some(from) = event.from_id() else { return false };
        let Ok(message) = serde_json::from_str::<Value>(&event.data) else { return false };
        let Some(id) = message.get("id").and_then(Value::as_str) else { return false };
        let Some(control) = self.writers.get(id) else { return false };
        {
            let mut flow = control.flow.lock();
            flow.presumed.remove(from);
            if message.get("skip").and_then(Value::as_bool) == Some(true) {
                flow.readers.remove(from);
            } else {
                let read = message.get("read").and_then(Value::as_u64).unwrap_or(0);
                let n = message.get("n").and_then(Value::as_u64).unwrap_or(0);
                flow.readers.insert(from.clone(), (read, n));
            }
        }
        control.changed.notify_waiters();
        true
    }

    /// `connection` left: its streams abort at their readers, writers stop waiting for it.
    pub(crate) fn left(&mut self, connection: &ConnectionId) {
        self.incoming.retain(|(sender, id), incoming| {
            if sender == connection {
                let reason = "sender left".to_owned();
                let _ = incoming.tx.send(Err(StreamAborted { id: id.clone(), reason }));
            }
            sender != connection
        });
        for control in self.writers.values() {
            {
                let mut flow = control.flow.lock();
                flow.presumed.remove(connection);
                flow.readers.remove(connection);
            }
            control.changed.notify_waiters();
        }
    }

    /// The session is over.
    pub(crate) fn end(&mut self, reason: &str) {
        for ((_, id), incoming) in self.incoming.drain() {
            let _ =
                incoming.tx.send(Err(StreamAborted { id, reason: format!("the session ended ({reason})") }));
        }
        self.subscribers.clear();
        for control in self.writers.values() {
            control.flow.lock().over = true;
            control.changed.notify_waiters();
        }
    }
}

/// The bytes `escaped` (a chunk escaped once, as in the envelope) takes in a frame: escaped twice
/// more (in the signal's message, in the frame), each quote or backslash grows by 3 bytes.
pub(crate) fn cost(escaped: &str) -> usize {
    escaped.len() + 3 * escaped.bytes().filter(|&b| b == b'"' || b == b'\\').count()
}

/// A chunk's text escaped once (a JSON string's contents).
pub(crate) fn escaped(piece: &str) -> String {
    let quoted = serde_json::to_string(piece).expect("a str serialises");
    quoted[1..quoted.len() - 1].to_owned()
}
