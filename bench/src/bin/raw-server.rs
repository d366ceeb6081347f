//! `raw-server`: the limit. A minimal tokio-tungstenite broadcast server: one room, every text
//! frame a client sends is fanned out to every connected client, the sender included.
//!
//! ```text
//! raw-server [--listen 127.0.0.1:0]     prints `raw ready: http://127.0.0.1:PORT` once listening
//! raw-server --rooms --ring 256          a room per request path (many small rooms)
//! raw-server --rooms --join-answers      and every join written as OpenVidu's is (below)
//! ```
//!
//! With `--join-answers`, a join makes the server write what an OpenVidu join makes it write:
//! the joiner gets one frame listing everyone already in its room (an entry of OpenVidu's size
//! each, kept as one growing string per room, so an answer is one copy), and everyone already in
//! gets a `participantJoined`-sized frame, through the room's ring like any broadcast (framed once,
//! written by each writer in its next batch; a writer woken by a frame sleeps 20 ms before it
//! writes what came meanwhile, as signalroom holds join notifications back, so that a run of joins
//! costs each socket one wake-up and one write). Nothing else: no tokens, no ids, no validation.
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
use std::sync::{Arc, Mutex};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

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
}

/// A frame on a room's ring: for everyone but the client of id `skip` (0: everyone).
type Item = (u64, Utf8Bytes);

/// A room: its ring and, with `--join-answers`, the listing of its members so far and the log of
/// its join notifications, framed.
struct Room {
    tx: broadcast::Sender<Item>,
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
        Self { tx: broadcast::channel(ring).0, listing: String::new(), log: Arc::new(log) }
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

/// A client of `--join-answers`: the upgrade by hand (the socket stays ours, so frames built once
/// are written as they are), the join's answer, then every notification of its room in batches.
/// A joiner's notification is framed once, for everyone, onto the room's log; a writer woken by
/// the log's growth sleeps HOLD, then writes everything from where it was to the log's end (one
/// copy of those bytes, one write): a run of joins costs each socket one wake-up and one write,
/// and nothing per notification and receiver. What clients send is read and dropped.
async fn joiner(mut stream: TcpStream, server: Server, id: u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.set_nodelay(true);
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let end = loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if head.len() > 16 * 1024 {
            return;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let path = text.split(' ').nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
    let Some(key) = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim().to_owned())
    }) else {
        return;
    };
    let accept = derive_accept_key(key.as_bytes());
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes();
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
