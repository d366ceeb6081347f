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

/// A room: its ring and, with `--join-answers`, the listing of its members so far.
struct Room {
    tx: broadcast::Sender<Item>,
    listing: String,
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
        tokio::spawn(client(stream, server.clone(), next_id));
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
    let (room, mut rx, answer) = {
        let mut rooms = server.rooms.lock().expect("rooms");
        let room = rooms
            .entry(room_name)
            .or_insert_with(|| Room { tx: broadcast::channel(server.ring).0, listing: String::new() });
        let rx = room.tx.subscribe();
        let answer = server.join_answers.then(|| {
            let answer = format!(
                r#"{{"id":1,"jsonrpc":"2.0","result":{{"id":"con_{id:010}","createdAt":1765000000000,"metadata":"p","value":[{}],"session":"s","version":"2.32.2"}}}}"#,
                room.listing
            );
            let me = entry(id);
            let _ = room.tx.send((id, Utf8Bytes::from(joined_notification(&me))));
            if !room.listing.is_empty() {
                room.listing.push(',');
            }
            room.listing.push_str(&me);
            Utf8Bytes::from(answer)
        });
        (room.tx.clone(), rx, answer)
    };
    let (mut sink, mut source) = ws.split();
    let hold = server.join_answers;
    let write = async move {
        if let Some(answer) = answer {
            if sink.send(Message::Text(answer)).await.is_err() {
                return;
            }
        }
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
            if hold {
                // Joins: the writer sleeps through HOLD (woken by nothing), then takes everything
                // the ring got meanwhile, so that a run of joins costs each socket one wake-up and
                // one write (tokio's broadcast wakes every waiting receiver on every send).
                tokio::time::sleep(HOLD).await;
            }
            loop {
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
                // Joins: everything that came during the hold, in batches of WRITE_BATCH.
                if !hold || rx.is_empty() {
                    break;
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
