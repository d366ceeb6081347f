//! `raw-server`: the limit. A minimal tokio-tungstenite broadcast server: one room, every text
//! frame a client sends is fanned out to every connected client, the sender included.
//!
//! ```text
//! raw-server [--listen 127.0.0.1:0]     prints `raw ready: http://127.0.0.1:PORT` once listening
//! raw-server --rooms --ring 256          a room per request path (many small rooms)
//! raw-server --rooms --join-answers      and every join written as OpenVidu's is (below)
//! raw-server --by-hand                   the same broadcast, the sockets read and written by hand
//! raw-server --protocol                  every frame answered and fanned out as OpenVidu's signals
//! ```
//!
//! With `--by-hand`, the broadcast is the plain mode's, without tungstenite: the upgrade, the
//! frames read (unmasked in place, text checked to be UTF-8) and written by hand, each frame
//! framed once and shared by every writer, many to a vectored write. No protocol either: this
//! is the leanest broadcast here, faster than the plain mode at every room size.
//!
//! With `--join-answers`, a join makes the server write what an OpenVidu join makes it write:
//! the joiner gets one frame listing everyone already in its room (an entry of OpenVidu's size
//! each, kept as one growing string per room, so an answer is one copy), and everyone already in
//! gets a `participantJoined`-sized frame, through the room's ring like any broadcast (framed once,
//! written by each writer in its next batch; a writer woken by a frame sleeps 20 ms before it
//! writes what came meanwhile, as signalroom holds join notifications back, so that a run of joins
//! costs each socket one wake-up and one write). Nothing else: no tokens, no ids, no validation.
//!
//! With `--protocol`, every frame a client sends is taken for a `sendMessage` request of the shape
//! clients send (`{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{\"to\":[],
//! \"data\":\"…\",\"type\":\"…\"}"},"id":N}`) and makes the server write what OpenVidu writes
//! for it: the answer to the sender (`{"jsonrpc":"2.0","id":N,"result":{"sessionId":…}}`) and the
//! `sendMessage` notification, with its `data`, `type`, `from` and the room's `seq`, to everyone,
//! the sender included. The request is not parsed: its three fields are found by searching for
//! their names, and taken as they are (no JSON validation, no escapes, no `to`). The notification
//! is framed once for everyone, on the ring; the answer goes through the sender's own queue. The
//! socket is read and written by hand, not through tungstenite: frames are built once, shared by
//! every writer, and written many to a vectored write (the leanest writing there is, the way
//! signalroom writes).
//! That is the limit for the bytes a signal costs an OpenVidu server, where the plain mode is the
//! limit for moving a frame.
//!
//! It does the least a WebSocket fan-out can do with tokio-tungstenite, and does it well: one
//! `tokio::sync::broadcast` ring shared by every client (a frame is stored once, never copied per
//! receiver), a writer per client that drains everything ready and flushes once, `TCP_NODELAY`.
//! No protocol, no ids, no validation, no per-client queue bound beyond the ring: a client that
//! falls a whole ring behind silently skips frames. Any path is accepted.
//!
//! Sockets get the leanest configuration tungstenite allows: a 4 KiB read buffer (tungstenite
//! allocates its whole read buffer per socket, 128 KiB by default; it still grows for a larger
//! frame), and the same write batching as signalroom (tungstenite's default write buffer,
//! flushed once per batch).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};

/// Frames kept in the shared ring (the same depth as signalroom's default per-client queue).
const RING: usize = 4096;
/// Frames written per flush at most (as signalroom's writer).
const WRITE_BATCH: usize = 256;
/// With `--join-answers`, a writer woken by a frame sleeps this long before it writes what the
/// ring got meanwhile (as signalroom holds `participantJoined`s back): a run of joins' notifications
/// to a thousand sockets then cost a thousand wake-ups and writes, not a thousand per join.
const HOLD: std::time::Duration = std::time::Duration::from_millis(20);
/// Initial read buffer of a socket (tungstenite's default is 128 KiB).
const READ_BUFFER: usize = 4 * 1024;

#[derive(Parser)]
#[command(name = "raw-server", about = "Minimal tokio-tungstenite broadcast server (benchmark baseline)")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A room per request path (`/room-1`), each with a ring of its own, instead of one room.
    #[arg(long)]
    rooms: bool,
    /// Frames kept in each room's ring.
    #[arg(long, default_value_t = RING)]
    ring: usize,
    /// Write what an OpenVidu join makes a server write: the joiner is answered with a listing
    /// of everyone already in its room, and everyone already in is told of the joiner.
    #[arg(long)]
    join_answers: bool,
    /// Answer every frame and fan it out as OpenVidu answers and notifies a `sendMessage`.
    #[arg(long, conflicts_with = "join_answers")]
    protocol: bool,
    /// Read and write the sockets by hand (as `--protocol` does), not through tungstenite.
    #[arg(long, conflicts_with = "join_answers")]
    by_hand: bool,
}

/// A frame on a room's ring: for everyone but the client of id `skip` (0: everyone).
type Item = (u64, Utf8Bytes);

/// A room: its ring and, with `--join-answers`, the listing of its members so far and the log of
/// its join notifications, framed.
struct Room {
    tx: broadcast::Sender<Item>,
    /// With `--protocol`: frames for everyone, framed once.
    frames: broadcast::Sender<Bytes>,
    /// With `--protocol`: the room's notifications so far (their `seq`).
    seq: Arc<AtomicU64>,
    listing: String,
    log: Arc<Log>,
}

/// Every notification of a room, framed once, one after the other: each writer writes the bytes
/// from where it is to the end (no work per notification and receiver). `len` tells the writers
/// the log grew.
struct Log {
    bytes: Mutex<Vec<u8>>,
    len: tokio::sync::watch::Sender<usize>,
}

#[derive(Clone)]
struct Server {
    rooms: Arc<Mutex<HashMap<String, Room>>>,
    ring: usize,
    by_path: bool,
    join_answers: bool,
    protocol: bool,
    by_hand: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    println!("raw ready: http://{}", listener.local_addr()?);
    let server = Server {
        rooms: Arc::default(),
        ring: args.ring.max(1),
        by_path: args.rooms,
        join_answers: args.join_answers,
        protocol: args.protocol,
        by_hand: args.by_hand,
    };
    let mut next_id = 0u64;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: keep serving the clients already there.
            Err(e) => {
                eprintln!("raw-server: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        next_id += 1;
        if server.join_answers {
            tokio::spawn(joiner(stream, server.clone(), next_id));
        } else if server.protocol || server.by_hand {
            tokio::spawn(speaker(stream, server.clone(), next_id));
        } else {
            tokio::spawn(client(stream, server.clone(), next_id));
        }
    }
}

/// A participant's entry in a join answer's listing, and the notification of its join: the
/// sizes of OpenVidu's (`{"id":…,"createdAt":…,"metadata":"","streams":[]}`, and
/// `participantJoined` with the same fields).
fn entry(id: u64) -> String {
    format!(r#"{{"id":"con_{id:010}","createdAt":1765000000000,"metadata":"p","streams":[]}}"#)
}

fn joined_notification(entry: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"participantJoined","params":{entry}}}"#)
}

async fn client(stream: TcpStream, server: Server, id: u64) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let mut path = String::new();
    // (tungstenite's callback type: its error is an HTTP response.)
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        path = request.uri().path().to_owned();
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await else {
        return;
    };
    let room_name = if server.by_path { path } else { String::new() };
    let (room, mut rx) = {
        let mut rooms = server.rooms.lock().expect("rooms");
        let room = rooms.entry(room_name).or_insert_with(|| Room::new(server.ring));
        (room.tx.clone(), room.tx.subscribe())
    };
    let (mut sink, mut source) = ws.split();
    let write = async move {
        loop {
            let first = match rx.recv().await {
                Ok((skip, _)) if skip == id => continue,
                Ok((_, text)) => text,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if sink.feed(Message::Text(first)).await.is_err() {
                return;
            }
            for _ in 1..WRITE_BATCH {
                match rx.try_recv() {
                    Ok((skip, _)) if skip == id => {}
                    Ok((_, text)) => {
                        if sink.feed(Message::Text(text)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    };
    let read = async move {
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Text(text) => {
                    let _ = room.send((0, text));
                }
                Message::Close(_) => return,
                _ => {}
            }
        }
    };
    tokio::select! {
        () = write => {},
        () = read => {},
    }
}

impl Room {
    fn new(ring: usize) -> Self {
        let log = Log { bytes: Mutex::new(Vec::new()), len: tokio::sync::watch::channel(0).0 };
        Self {
            tx: broadcast::channel(ring).0,
            frames: broadcast::channel(ring).0,
            seq: Arc::default(),
            listing: String::new(),
            log: Arc::new(log),
        }
    }
}

/// A server frame (unmasked, final) carrying `payload`, appended to `out`.
fn frame_into(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Reads the upgrade request by hand and makes its answer. Returns the socket, the request's path
/// (without the query) and the answer's bytes, to be written first.
async fn upgrade(mut stream: TcpStream) -> Option<(TcpStream, String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let _ = stream.set_nodelay(true);
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let end = loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if head.len() > 16 * 1024 {
            return None;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let path = text.split(' ').nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
    let key = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim().to_owned())
    })?;
    let accept = derive_accept_key(key.as_bytes());
    let out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes();
    Some((stream, path, out))
}

/// A client of `--join-answers`: the upgrade by hand (the socket stays ours, so frames built once
/// are written as they are), the join's answer, then every notification of its room in batches.
/// A joiner's notification is framed once, for everyone, onto the room's log; a writer woken by
/// the log's growth sleeps HOLD, then writes everything from where it was to the log's end (one
/// copy of those bytes, one write): a run of joins costs each socket one wake-up and one write,
/// and nothing per notification and receiver. What clients send is read and dropped.
async fn joiner(stream: TcpStream, server: Server, id: u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((stream, path, mut out)) = upgrade(stream).await else { return };
    let mut buf = [0u8; 4096];
    let (log, mut at) = {
        let mut rooms = server.rooms.lock().expect("rooms");
        let room = rooms.entry(path).or_insert_with(|| Room::new(server.ring));
        let answer = format!(
            r#"{{"id":1,"jsonrpc":"2.0","result":{{"id":"con_{id:010}","createdAt":1765000000000,"metadata":"p","value":[{}],"session":"s","version":"2.32.2"}}}}"#,
            room.listing
        );
        frame_into(&mut out, answer.as_bytes());
        let me = entry(id);
        // The joiner's own notification is before where it starts reading.
        let len = {
            let mut bytes = room.log.bytes.lock().expect("log");
            frame_into(&mut bytes, joined_notification(&me).as_bytes());
            bytes.len()
        };
        room.log.len.send_replace(len);
        if !room.listing.is_empty() {
            room.listing.push(',');
        }
        room.listing.push_str(&me);
        (Arc::clone(&room.log), len)
    };
    let (mut read, mut write) = stream.into_split();
    let writer = async move {
        if write.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        let mut len = log.len.subscribe();
        loop {
            if len.wait_for(|&n| n > at).await.is_err() {
                return;
            }
            tokio::time::sleep(HOLD).await;
            {
                let bytes = log.bytes.lock().expect("log");
                out.extend_from_slice(&bytes[at..]);
                at = bytes.len();
            }
            if write.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    };
    let reader = async move { while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {} };
    tokio::select! {
        () = writer => {},
        () = reader => {},
    }
}

/// A client of `--protocol`, on the socket itself (the upgrade, the frames read and written by
/// hand, as lean as it gets): each `sendMessage` it sends is answered through its own queue, and
/// its notification, framed once, goes on the room's ring. The writer writes whatever is ready,
/// answers first, up to `WRITE_BATCH` frames in one vectored write, each frame as it was framed
/// (shared, never copied per receiver).
async fn speaker(stream: TcpStream, server: Server, id: u64) {
    use tokio::io::AsyncReadExt;
    let Some((stream, path, answer)) = upgrade(stream).await else { return };
    let (room, mut rx, seq) = {
        let mut rooms = server.rooms.lock().expect("rooms");
        let name = if server.by_path { path.clone() } else { String::new() };
        let room = rooms.entry(name).or_insert_with(|| Room::new(server.ring));
        (room.frames.clone(), room.frames.subscribe(), Arc::clone(&room.seq))
    };
    let session = path.trim_start_matches('/').to_owned();
    let (mut read, mut write) = stream.into_split();
    let (answer_tx, mut answers) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let _ = answer_tx.send(Bytes::from(answer));
    let writer = async move {
        let mut batch: Vec<Bytes> = Vec::with_capacity(WRITE_BATCH);
        loop {
            let first = tokio::select! {
                biased;
                answer = answers.recv() => match answer {
                    Some(answer) => answer,
                    None => return,
                },
                frame = rx.recv() => match frame {
                    Ok(frame) => frame,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            batch.push(first);
            while batch.len() < WRITE_BATCH {
                match answers.try_recv() {
                    Ok(answer) => batch.push(answer),
                    Err(_) => match rx.try_recv() {
                        Ok(frame) => batch.push(frame),
                        Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                }
            }
            if write_all_vectored(&mut write, &mut batch).await.is_err() {
                return;
            }
        }
    };
    let from = format!("con_{id:010}");
    let reader = async move {
        let mut buf = Vec::with_capacity(READ_BUFFER);
        let mut chunk = [0u8; READ_BUFFER];
        loop {
            let n = match read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            while let Some((opcode, start, end)) = client_frame(&mut buf[at..]) {
                let payload = &buf[at + start..at + end];
                at += end;
                match opcode {
                    // (A text frame must be UTF-8: what a WebSocket server must check, the least.)
                    0x1 if !server.protocol => {
                        if std::str::from_utf8(payload).is_err() {
                            return;
                        }
                        let _ = room.send(framed(payload));
                    }
                    0x1 => {
                        let Ok(text) = std::str::from_utf8(payload) else { return };
                        let Some(request) = SendMessage::find(text) else { continue };
                        let _ = answer_tx.send(framed(request.answer(&session).as_bytes()));
                        let seq = seq.fetch_add(1, Ordering::Relaxed) + 1;
                        let _ = room.send(framed(request.notification(&from, seq).as_bytes()));
                    }
                    0x8 => return,
                    _ => {}
                }
            }
            buf.drain(..at);
        }
    };
    tokio::select! {
        () = writer => {},
        () = reader => {},
    }
}

/// Writes every frame of `batch` with as few vectored writes as the socket allows, then empties it.
async fn write_all_vectored(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    batch: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let (mut first, mut skip) = (0, 0);
    while first < batch.len() {
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&batch[first][skip..])
            .chain(batch[first + 1..].iter().map(|b| &b[..]))
            .map(std::io::IoSlice::new)
            .collect();
        let mut n = write.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while first < batch.len() && n >= batch[first].len() - skip {
            n -= batch[first].len() - skip;
            first += 1;
            skip = 0;
        }
        skip += n;
    }
    batch.clear();
    Ok(())
}

/// A server frame (text, final) carrying `payload`.
fn framed(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    frame_into(&mut out, payload);
    Bytes::from(out)
}

/// The first whole client frame at the start of `buf`, unmasked in place: its opcode, and where its
/// payload starts and ends. `None` until all of it arrived.
fn client_frame(buf: &mut [u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, mut at) = match b1 & 0x7f {
        126 => (usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)), 4),
        127 => (usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?, 10),
        n => (usize::from(n), 2),
    };
    let mask: Option<[u8; 4]> = if b1 & 0x80 != 0 {
        let mask = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(mask)
    } else {
        None
    };
    let payload = buf.get_mut(at..at + len)?;
    if let Some(mask) = mask {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
    }
    Some((b0 & 0x0f, at, at + len))
}

/// The fields of a `sendMessage` request that its answer and notification carry, found by their
/// names (the request is trusted to be of the shape clients send: nothing is checked).
struct SendMessage<'a> {
    id: &'a str,
    data: &'a str,
    kind: &'a str,
}

impl<'a> SendMessage<'a> {
    fn find(frame: &'a str) -> Option<Self> {
        /// The string value of the inner message's field that starts after `key`.
        fn inner<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
            let start = memchr::memmem::find(frame.as_bytes(), key.as_bytes())? + key.len();
            let len = memchr::memmem::find(&frame.as_bytes()[start..], br#"\""#)?;
            frame.get(start..start + len)
        }
        let data = inner(frame, r#"\"data\":\""#)?;
        let kind = inner(frame, r#"\"type\":\""#)?;
        let key = r#""id":"#;
        let start = memchr::memmem::rfind(frame.as_bytes(), key.as_bytes())? + key.len();
        let len = frame[start..].find(['}', ','])?;
        Some(Self { id: &frame[start..start + len], data, kind })
    }

    fn answer(&self, session: &str) -> String {
        let mut out = String::with_capacity(64 + self.id.len() + session.len());
        for piece in [r#"{"jsonrpc":"2.0","id":"#, self.id, r#","result":{"sessionId":""#, session, r#""}}"#]
        {
            out.push_str(piece);
        }
        out
    }

    fn notification(&self, from: &str, seq: u64) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(96 + self.data.len() + self.kind.len() + from.len());
        for piece in [
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":""#,
            self.data,
            r#"","type":""#,
            self.kind,
            r#"","from":""#,
            from,
            r#""},"seq":"#,
        ] {
            out.push_str(piece);
        }
        let _ = write!(out, "{seq}}}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::SendMessage;

    #[test]
    fn a_send_message_is_answered_and_notified_as_openvidu_does() {
        let request = r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{\"to\":[],\"data\":\"@hi\",\"type\":\"signal:bench\"}"},"id":42}"#;
        let found = SendMessage::find(request).unwrap();
        assert_eq!(found.answer("s1"), r#"{"jsonrpc":"2.0","id":42,"result":{"sessionId":"s1"}}"#);
        assert_eq!(
            found.notification("con_0000000007", 3),
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":"@hi","type":"signal:bench","from":"con_0000000007"},"seq":3}"#
        );
        assert!(SendMessage::find("@plain").is_none());
    }
}
