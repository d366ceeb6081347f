//! `raw-server`: the limit. A minimal tokio-tungstenite broadcast server: one room, every text
//! frame a client sends is fanned out to every connected client, the sender included.
//!
//! ```text
//! raw-server [--listen 127.0.0.1:0]     prints `raw ready: http://127.0.0.1:PORT` once listening
//! ```
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

use std::net::SocketAddr;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames kept in the shared ring (the same depth as signalroom's default per-client queue).
const RING: usize = 4096;
/// Frames written per flush at most (as signalroom's writer).
const WRITE_BATCH: usize = 256;
/// Initial read buffer of a socket (tungstenite's default is 128 KiB).
const READ_BUFFER: usize = 4 * 1024;

#[derive(Parser)]
#[command(name = "raw-server", about = "Minimal tokio-tungstenite broadcast server (benchmark baseline)")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    println!("raw ready: http://{}", listener.local_addr()?);
    let (room, _) = broadcast::channel::<Utf8Bytes>(RING);
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
        tokio::spawn(client(stream, room.clone()));
    }
}

async fn client(stream: TcpStream, room: broadcast::Sender<Utf8Bytes>) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else { return };
    let (mut sink, mut source) = ws.split();
    let mut rx = room.subscribe();
    let write = async move {
        loop {
            let first = match rx.recv().await {
                Ok(text) => text,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if sink.feed(Message::Text(first)).await.is_err() {
                return;
            }
            for _ in 1..WRITE_BATCH {
                match rx.try_recv() {
                    Ok(text) => {
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
                    let _ = room.send(text);
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
