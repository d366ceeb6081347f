//! `attack`: what an anonymous client can make a signalroom server hold, measured on loopback
//! against a given server binary (to compare two builds). Each attack starts a server of its own,
//! runs bounded in count and time, and prints the server's RSS before, at the peak and after, and
//! how long the server took to let go (close or evict).
//!
//!   attack --signalroom BIN ping-flood | slowloris | silent | unfinished | stall | metadata

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "attack-secret";
/// No attack runs longer than this.
const LIMIT: Duration = Duration::from_secs(300);

#[derive(Parser)]
#[command(name = "attack", about = "what an anonymous client can make a signalroom server hold")]
struct Args {
    /// The signalroom server binary.
    #[arg(long, default_value = "target/release/signalroom")]
    signalroom: PathBuf,
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Subcommand, Clone, Copy)]
enum Attack {
    /// One socket sends pings without reading the pongs.
    PingFlood {
        #[arg(long, default_value_t = 3_000_000)]
        pings: u64,
    },
    /// Sockets hold a partial HTTP header, adding a byte every few seconds.
    Slowloris {
        #[arg(long, default_value_t = 2000)]
        sockets: usize,
        /// How long to watch them.
        #[arg(long, default_value_t = 40)]
        secs: u64,
    },
    /// Upgraded sockets that never send a frame.
    Silent {
        #[arg(long, default_value_t = 2000)]
        sockets: usize,
        #[arg(long, default_value_t = 40)]
        secs: u64,
    },
    /// Upgraded sockets that send 960 KiB of a 1,040,000-byte frame and never finish it.
    Unfinished {
        #[arg(long, default_value_t = 500)]
        sockets: usize,
        #[arg(long, default_value_t = 40)]
        secs: u64,
    },
    /// Joined participants that never read, sent signals of 45 KB.
    Stall {
        #[arg(long, default_value_t = 1)]
        sleepers: usize,
        #[arg(long, default_value_t = 3900)]
        signals: usize,
        /// How long to wait for the evictions.
        #[arg(long, default_value_t = 90)]
        secs: u64,
    },
    /// Joiners each with 1,000,000 bytes of metadata.
    Metadata {
        #[arg(long, default_value_t = 40)]
        joiners: usize,
    },
}

struct Server {
    child: tokio::process::Child,
    pid: u32,
    url: String,
}

impl Server {
    async fn start(bin: &PathBuf) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--secret", SECRET, "--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {bin:?}"))?;
        let pid = child.id().context("exited at once")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let url = loop {
            let line = lines.next_line().await?.context("exited before it was ready")?;
            if let Some(url) = line.strip_prefix("signalroom ready: ") {
                break url.trim_end_matches('/').to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, pid, url })
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        kb / 1024.0
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map(|d| d.count()).unwrap_or(0)
    }

    fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    fn ws(&self, session: &str) -> String {
        format!("{}/openvidu?sessionId={session}", self.url.replacen("http", "ws", 1))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = reqwest::Client::new()
            .post(format!("{}/openvidu/api{path}", self.url))
            .basic_auth("OPENVIDUAPP", Some(SECRET))
            .json(&body)
            .send()
            .await?;
        Ok(r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::start(&args.signalroom).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_mb();
    tokio::time::timeout(LIMIT, run(args.attack, &server, before)).await.context("the attack overran")??;
    let mut child = server.child;
    let _ = child.kill().await;
    Ok(())
}

async fn run(attack: Attack, server: &Server, before: f64) -> anyhow::Result<()> {
    match attack {
        Attack::PingFlood { pings } => {
            let (mut ws, _) = tokio_tungstenite::connect_async(server.ws("S1")).await?;
            let started = Instant::now();
            for i in 0..pings {
                ws.feed(Message::Ping(vec![b'p'; 125].into())).await?;
                if i % 10_000 == 0 {
                    ws.flush().await?;
                }
            }
            ws.flush().await?;
            // Wait until the server has read them all (its CPU time stops moving).
            tokio::time::sleep(Duration::from_secs(2)).await;
            let peak = server.rss_mb();
            println!(
                "ping-flood: {pings} pings of 125 bytes in {:.1}s without reading: RSS {before:.1} → {peak:.1} MB (+{:.1})",
                started.elapsed().as_secs_f64(),
                peak - before
            );
            drop(ws);
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("ping-flood: after the socket closed: RSS {:.1} MB", server.rss_mb());
        }
        Attack::Slowloris { sockets, secs } => {
            let mut held = Vec::new();
            for _ in 0..sockets {
                let mut s = TcpStream::connect(server.addr()).await?;
                s.write_all(b"GET /openvidu HTTP/1.1\r\nHost: x\r\n").await?;
                held.push(s);
            }
            watch("slowloris", server, before, &mut held, secs, Some(b"X")).await?;
        }
        Attack::Silent { sockets, secs } => {
            let mut held = Vec::new();
            for _ in 0..sockets {
                held.push(upgraded(server).await?);
            }
            watch("silent", server, before, &mut held, secs, None).await?;
        }
        Attack::Unfinished { sockets, secs } => {
            let mut held = Vec::new();
            for _ in 0..sockets {
                let mut s = upgraded(server).await?;
                // FIN + text, masked, 64-bit length 1,040,000; then 960 KiB of it.
                let mut head = vec![0x81u8, 0x80 | 127];
                head.extend_from_slice(&1_040_000u64.to_be_bytes());
                head.extend_from_slice(&[1, 2, 3, 4]);
                let _ = s.write_all(&head).await;
                let chunk = vec![b'a'; 64 * 1024];
                for _ in 0..15 {
                    if tokio::time::timeout(Duration::from_millis(500), s.write_all(&chunk)).await.is_err() {
                        break;
                    }
                }
                held.push(s);
            }
            watch("unfinished", server, before, &mut held, secs, None).await?;
        }
        Attack::Stall { sleepers, signals, secs } => {
            server.post("/sessions", json!({"customSessionId": "S1"})).await?;
            let mut joined = Vec::new();
            for i in 0..=sleepers {
                let c = server.post("/sessions/S1/connection", json!({})).await?;
                let token = c["token"].as_str().context("no token")?.to_owned();
                let (mut ws, _) = tokio_tungstenite::connect_async(server.ws("S1")).await?;
                let join = json!({"jsonrpc":"2.0","method":"joinRoom","id":1,"params":{"token":token,"session":"S1",
                    "platform":"attack","metadata":format!("p{i}"),"secret":""}});
                ws.send(Message::Text(join.to_string().into())).await?;
                loop {
                    let Some(m) = ws.next().await else { bail!("closed before joining") };
                    if let Message::Text(t) = m? {
                        let v: Value = serde_json::from_str(&t)?;
                        if v["id"] == 1 {
                            anyhow::ensure!(v.get("result").is_some(), "join refused: {v}");
                            break;
                        }
                    }
                }
                joined.push(ws);
            }
            // The first participant sends; it reads everything (in a task); the others never read.
            let sender = joined.remove(0);
            let (mut tx, mut rx) = sender.split();
            let (left_tx, mut left_rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Some(Ok(Message::Text(t))) = rx.next().await {
                    if t.contains("\"participantLeft\"") {
                        let _ = left_tx.send(Instant::now());
                    }
                }
            });
            let message = json!({"to": [], "data": "x".repeat(45_000), "type": "signal:big"}).to_string();
            let started = Instant::now();
            for i in 0..signals {
                let frame =
                    json!({"jsonrpc":"2.0","method":"sendMessage","params":{"message":message},"id":10 + i});
                tx.send(Message::Text(frame.to_string().into())).await?;
            }
            let sent = started.elapsed();
            let mut peak = server.rss_mb();
            let mut evicted = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(secs);
            while evicted.len() < sleepers && Instant::now() < deadline {
                peak = peak.max(server.rss_mb());
                if let Ok(Some(at)) = tokio::time::timeout(Duration::from_millis(200), left_rx.recv()).await {
                    evicted.push(at.duration_since(started));
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            let evictions = if evicted.is_empty() {
                format!("none evicted within {secs}s")
            } else {
                let last = evicted.iter().max().copied().unwrap_or_default();
                format!(
                    "{} of {sleepers} evicted, the last {:.1}s after the first signal",
                    evicted.len(),
                    last.as_secs_f64()
                )
            };
            println!(
                "stall: {signals} signals of 45 KB to {sleepers} participant(s) that do not read, sent in {:.1}s: \
                 RSS {before:.1} → peak {peak:.1} MB; {evictions}; RSS 3s later {:.1} MB",
                sent.as_secs_f64(),
                server.rss_mb()
            );
            drop(joined);
        }
        Attack::Metadata { joiners } => {
            server.post("/sessions", json!({"customSessionId": "S1"})).await?;
            let mut joined = Vec::new();
            let (mut accepted, mut refused) = (0, 0);
            let metadata = "m".repeat(1_000_000);
            for i in 0..joiners {
                let c = server.post("/sessions/S1/connection", json!({})).await?;
                let token = c["token"].as_str().context("no token")?.to_owned();
                let (ws, _) = tokio_tungstenite::connect_async(server.ws("S1")).await?;
                let (mut tx, mut rx) = ws.split();
                let join = json!({"jsonrpc":"2.0","method":"joinRoom","id":1,"params":{"token":token,"session":"S1",
                    "platform":"attack","metadata":format!("{i}{metadata}"),"secret":""}});
                let sending = tokio::spawn(async move {
                    let _ = tx.send(Message::Text(join.to_string().into())).await;
                    tx
                });
                let answer = tokio::time::timeout(Duration::from_secs(10), async {
                    while let Some(Ok(m)) = rx.next().await {
                        match m {
                            Message::Text(t) if t.contains("\"id\":1") => return t.contains("\"result\""),
                            Message::Close(_) => return false,
                            _ => {}
                        }
                    }
                    false
                })
                .await
                .unwrap_or(false);
                if answer {
                    accepted += 1;
                } else {
                    refused += 1;
                }
                if (i + 1) % 5 == 0 {
                    println!(
                        "metadata: {} joiners: {accepted} joined, {refused} refused; RSS {:.1} MB",
                        i + 1,
                        server.rss_mb()
                    );
                }
                // Joined participants keep reading (in a task), as a browser would.
                let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
                joined.push((sending, reader));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!(
                "metadata: {joiners} joiners with 1,000,000 bytes of metadata each: {accepted} joined, {refused} refused; \
                 RSS {before:.1} → {:.1} MB",
                server.rss_mb()
            );
            for (s, r) in joined {
                s.abort();
                r.abort();
            }
        }
    }
    Ok(())
}

/// A socket upgraded to WebSocket by hand (nothing sent after the upgrade).
async fn upgraded(server: &Server) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(server.addr()).await?;
    let upgrade = "GET /openvidu?sessionId=S1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(upgrade.as_bytes()).await?;
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await?;
    anyhow::ensure!(buf[..n].starts_with(b"HTTP/1.1 101"), "not upgraded");
    Ok(s)
}

/// Watches `held` sockets for `secs`, dripping `drip` into each every 5 s: prints the server's
/// RSS and file descriptors, and how many sockets it has closed, every 5 s.
async fn watch(
    name: &str,
    server: &Server,
    before: f64,
    held: &mut [TcpStream],
    secs: u64,
    drip: Option<&[u8]>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut closed_at: Option<Duration> = None;
    let mut peak = server.rss_mb();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut open = 0;
        for s in held.iter_mut() {
            let mut buf = [0u8; 256];
            let alive = match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => false,
                Ok(Ok(_)) | Err(_) => true,
            };
            let alive = alive
                && match drip {
                    Some(b) => s.write_all(b).await.is_ok(),
                    None => true,
                };
            if alive {
                open += 1;
            }
        }
        peak = peak.max(server.rss_mb());
        if open == 0 && closed_at.is_none() {
            closed_at = Some(started.elapsed());
        }
        println!(
            "{name}: {:>3.0}s: {open} of {} sockets open; server RSS {:.1} MB, {} fds",
            started.elapsed().as_secs_f64(),
            held.len(),
            server.rss_mb(),
            server.fds()
        );
    }
    let closed = closed_at.map_or_else(
        || format!("still open after {secs}s"),
        |d| format!("all closed by {:.0}s", d.as_secs_f64()),
    );
    println!("{name}: {} sockets: {closed}; RSS {before:.1} → peak {peak:.1} MB", held.len());
    Ok(())
}
