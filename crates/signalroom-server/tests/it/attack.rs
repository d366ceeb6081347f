//! What an anonymous client can try, on loopback, bounded in count and time: every attempt is
//! answered as the protocol says, and none makes the server hold more than its limits.
//!
//! The memory figures are read from a server of its own (the `signalroom` binary, or
//! `SIGNALROOM_BIN`), so that other tests running meanwhile do not blur them.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::support::{Peer, SECRET, TestServer, WAIT};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How soon the memory of an evicted participant's queue is back with the kernel.
const MEMORY_RETURNED: Duration = Duration::from_secs(3);

/// A `signalroom serve` process of the test's own, stopped when dropped.
struct Spawned {
    child: Child,
    url: String,
}

impl Spawned {
    fn start(flags: &[&str]) -> Self {
        let bin =
            std::env::var("SIGNALROOM_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_signalroom").to_owned());
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--secret", SECRET, "--log", "warn"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("a ready line");
        let url = line.trim().strip_prefix("signalroom ready: ").expect("the ready line").to_owned();
        Self { child, url }
    }

    /// The server's resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
        kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
    }

    fn ws_url(&self) -> String {
        format!("{}/openvidu?sessionId=S1", self.url.replacen("http", "ws", 1))
    }

    fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    async fn rest(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/openvidu/api{path}", self.url))
            .basic_auth("OPENVIDUAPP", Some(SECRET));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("the server answers");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The close code the server sends, within `wait` (`None`: no close frame, the socket just ended).
async fn close_code(ws: &mut Ws, wait: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code.into()),
            Ok(Some(Ok(_))) => continue,
            Ok(None) | Ok(Some(Err(_))) => return None,
            Err(_) => panic!("no close within {wait:?}"),
        }
    }
}

async fn open(url: &str) -> Ws {
    connect_async(url).await.expect("websocket opens").0
}

#[tokio::test]
async fn a_ping_flood_from_a_client_that_does_not_read_stays_within_the_write_buffer() {
    let server = Spawned::start(&[]);
    let mut ws = open(&server.ws_url()).await;
    let before = server.rss();
    // 600,000 pings of 125 bytes: 76 MB of pongs if every one were kept for a client that never
    // reads. The write buffer holds at most 4 MiB.
    let started = Instant::now();
    for i in 0..600_000u32 {
        ws.feed(Message::Ping(vec![b'p'; 125].into())).await.expect("the server reads");
        if i % 1000 == 0 {
            ws.flush().await.unwrap();
            assert!(started.elapsed() < Duration::from_secs(120), "the flood is bounded in time");
        }
    }
    ws.flush().await.unwrap();
    // The server has read them all when it answers a request queued behind them.
    let (status, _) = server.rest(reqwest::Method::GET, "/config", None).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = server.rss().saturating_sub(before);
    assert!(grown < 24 << 20, "the server grew by {} MB", grown >> 20);
}

#[tokio::test]
async fn slow_headers_and_silent_sockets_are_cut_off() {
    let server = Spawned::start(&["--header-timeout-secs", "1", "--first-frame-timeout-secs", "1"]);
    // A byte of header now and then (slowloris).
    let mut slow = TcpStream::connect(server.addr()).await.unwrap();
    slow.write_all(b"GET /openvidu HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        assert!(started.elapsed() < WAIT, "a connection without complete headers stays open");
        if slow.write_all(b"X").await.is_err() {
            break;
        }
        let read = tokio::time::timeout(Duration::from_millis(300), slow.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());

    // Nothing at all after the TCP connect.
    let mut idle = TcpStream::connect(server.addr()).await.unwrap();
    let n = tokio::time::timeout(WAIT, idle.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)));

    // An upgraded socket that never sends a frame: closed with 1000.
    let mut ws = open(&server.ws_url()).await;
    assert_eq!(close_code(&mut ws, WAIT).await, Some(1000));
}

#[tokio::test]
async fn a_socket_that_pings_but_never_joins_is_closed_at_the_join_deadline() {
    let server = Spawned::start(&["--join-timeout-secs", "2"]);
    let mut ws = open(&server.ws_url()).await;
    let started = Instant::now();
    let mut id = 0;
    let code = loop {
        let ping = json!({"jsonrpc":"2.0","method":"ping","params":{"interval":5000},"id":id});
        id += 1;
        if ws.send(Message::Text(ping.to_string().into())).await.is_err() {
            break None;
        }
        match tokio::time::timeout(Duration::from_millis(400), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(None | Some(Err(_))) => break None,
            _ => {}
        }
        assert!(started.elapsed() < WAIT, "still open after {:?}", started.elapsed());
    };
    assert_eq!(code, Some(1000));
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_unfinished_frame_is_bounded_by_the_frame_limit_and_the_first_frame_deadline() {
    let server = Spawned::start(&["--first-frame-timeout-secs", "1"]);
    // A header announcing 1 MB: refused at once with 1009, nothing buffered.
    let ws = open(&server.ws_url()).await;
    let frame = Frame::message(vec![b'x'; 1 << 20], OpCode::Data(Data::Text), true);
    let (mut sink, mut stream) = ws.split();
    let sender = tokio::spawn(async move {
        let _ = sink.send(Message::Frame(frame)).await;
        sink
    });
    let code = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("an answer in time");
    sender.abort();
    assert_eq!(code, Some(1009));

    // Half of a 40 KB frame, then nothing: closed at the first-frame deadline.
    let mut raw = TcpStream::connect(server.addr()).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let upgrade = format!(
        "GET /openvidu?sessionId=S1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    raw.write_all(upgrade.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = raw.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"), "upgraded");
    // FIN + text, masked, 16-bit length 40,000; then 20,000 bytes of it.
    let mut head = vec![0x81u8, 0x80 | 126];
    head.extend_from_slice(&40_000u16.to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    raw.write_all(&head).await.unwrap();
    raw.write_all(&vec![b'a'; 20_000]).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, raw.read_to_end(&mut answer)).await.expect("closed in time");
    assert!(read.is_ok() || !answer.is_empty());
    // The close frame: 0x88, length, code 1000.
    assert_eq!(answer.get(..4), Some(&[0x88, answer[1], 0x03, 0xe8][..]), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_participant_that_stops_reading_is_evicted_at_the_write_deadline_and_its_memory_returned() {
    let server = Spawned::start(&["--write-timeout-secs", "2"]);
    let (status, _) =
        server.rest(reqwest::Method::POST, "/sessions", Some(json!({"customSessionId": "S1"}))).await;
    assert_eq!(status, StatusCode::OK);
    let mut peers = Vec::new();
    for name in ["sender", "sleeper"] {
        let (status, c) =
            server.rest(reqwest::Method::POST, "/sessions/S1/connection", Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{c}");
        let mut p = Peer::open(&server.url, "S1").await;
        p.join(c["token"].as_str().unwrap(), "S1", name).await.expect("joins");
        peers.push(p);
    }
    let sleeper = peers.pop().unwrap();
    let mut sender = peers.pop().unwrap();
    let _ = sender.notification("participantJoined").await;
    let baseline = server.rss();
    // 250 signals of 45 KB to the sleeper, which never reads: 11 MB, more than the socket
    // buffers take, under the send queue's 16 MiB: only the write deadline can evict it.
    let data = "x".repeat(45_000);
    let started = Instant::now();
    for _ in 0..250 {
        if let Err(e) = sender.signal(&[sleeper.connection_id.as_str()], &data, "signal:big").await {
            assert_eq!(e["code"], 601, "only because the sleeper is gone: {e}");
            break;
        }
    }
    let left = sender.notification("participantLeft").await;
    let evicted_after = started.elapsed();
    assert_eq!(left["connectionId"], sleeper.connection_id.as_str());
    assert_eq!(left["reason"], "networkDisconnect");
    assert!(evicted_after < Duration::from_secs(10), "evicted after {evicted_after:?}");
    // Returned to the kernel: the binary's allocator gives freed pages back about a second
    // after they were freed (its `dirty_decay_ms`).
    let evicted = Instant::now();
    let after = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = server.rss();
        if after < baseline + (8 << 20) || evicted.elapsed() > MEMORY_RETURNED {
            break after;
        }
    };
    assert!(
        after < baseline + (8 << 20),
        "baseline {} MB, {:?} after the eviction {} MB",
        baseline >> 20,
        MEMORY_RETURNED,
        after >> 20
    );
    drop(sleeper);
}

#[tokio::test]
async fn metadata_over_the_limit_is_refused() {
    let s = TestServer::single_with(|c| c.max_metadata_bytes = 1000).await;
    s.create_session("S1").await;
    let (token, _) = s.connection("S1", json!({})).await;
    let mut p = Peer::open(&s.url, "S1").await;
    let e = p.join(&token, "S1", &"m".repeat(1001)).await.unwrap_err();
    assert_eq!(e["code"], 803);
    assert!(e["message"].as_str().unwrap().contains("over the limit of 1000 bytes"), "{e}");
    // The token was not used up: the same socket joins with smaller metadata.
    p.join(&token, "S1", &"m".repeat(1000)).await.expect("joins");
    let (status, e) = s.post("/sessions/S1/connection", json!({"data": "d".repeat(1001)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["message"].as_str().unwrap().contains("1000 bytes"), "{e}");
}

#[tokio::test]
async fn oversized_metadata_by_default_fits_neither_the_frame_nor_the_limit() {
    let s = TestServer::single().await;
    s.create_session("S1").await;
    let (token, _) = s.connection("S1", json!({})).await;
    let mut p = Peer::open(&s.url, "S1").await;
    // 20 KB: within OpenVidu's 50 KiB frame, over the metadata limit.
    let e = p.join(&token, "S1", &"m".repeat(20_000)).await.unwrap_err();
    assert_eq!(e["code"], 803);
    // 1 MB: over the frame, the socket is closed with 1009.
    let join = json!({"jsonrpc":"2.0","method":"joinRoom","id":9,
        "params":{"token": token, "session": "S1", "metadata": "m".repeat(1 << 20)}});
    p.send_text(join.to_string()).await;
    assert_eq!(p.close_code(WAIT).await, Some(1009));
}

#[tokio::test]
async fn a_close_frame_is_answered_with_the_same_code() {
    let s = TestServer::single().await;
    for code in [1000u16, 4102, 4104] {
        let mut ws = open(&format!("{}/openvidu?sessionId=S1", s.url.replacen("http", "ws", 1))).await;
        let close = CloseFrame { code: CloseCode::from(code), reason: "bye".into() };
        ws.send(Message::Close(Some(close))).await.unwrap();
        assert_eq!(close_code(&mut ws, WAIT).await, Some(code), "close {code}");
    }
}

#[tokio::test]
async fn protocol_errors_get_1002_and_bad_utf8_1007() {
    let s = TestServer::single().await;
    let url = format!("{}/openvidu?sessionId=S1", s.url.replacen("http", "ws", 1));
    // A close code no endpoint may send.
    let mut ws = open(&url).await;
    ws.send(Message::Frame(Frame::close(Some(CloseFrame {
        code: CloseCode::from(1005),
        reason: "".into(),
    }))))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws, WAIT).await, Some(1002));
    // A reserved opcode.
    let mut ws = open(&url).await;
    ws.send(Message::Frame(Frame::message(vec![1u8], OpCode::Data(Data::Reserved(3)), true))).await.unwrap();
    assert_eq!(close_code(&mut ws, WAIT).await, Some(1002));
    // A text frame that is not UTF-8.
    let mut ws = open(&url).await;
    ws.send(Message::Frame(Frame::message(vec![0xffu8, 0xfe, b'{'], OpCode::Data(Data::Text), true)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws, WAIT).await, Some(1007));
}

#[tokio::test]
async fn request_ids_that_are_not_numbers_or_strings_are_invalid_requests() {
    let s = TestServer::single().await;
    let mut p = Peer::open(&s.url, "S1").await;
    for id in ["null", "{}", "[1]", "true", "false"] {
        p.send_text(format!(r#"{{"jsonrpc":"2.0","method":"ping","params":{{"interval":5000}},"id":{id}}}"#))
            .await;
        let f = p.read_frame().await.expect("an answer");
        assert_eq!(f["id"], Value::Null, "id {id}: {f}");
        assert_eq!(f["error"]["code"], -32600, "id {id}: {f}");
    }
    // A string id is fine.
    p.send_text(r#"{"jsonrpc":"2.0","method":"ping","params":{"interval":5000},"id":"a"}"#).await;
    let f = p.read_frame().await.unwrap();
    assert_eq!((f["id"].clone(), f["result"]["value"].clone()), (json!("a"), json!("pong")));
}

#[tokio::test]
async fn sizes_follow_openvidu_a_50_kib_frame_and_no_signal_limit_of_its_own() {
    let s = TestServer::single().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    // A sendMessage frame of exactly 51,200 bytes.
    let frame_of = |len: usize| {
        let shell =
            json!({"jsonrpc":"2.0","method":"sendMessage","params":{"message": json!({"data": ""}).to_string()},"id":77})
                .to_string();
        let data = "d".repeat(len - shell.len());
        json!({"jsonrpc":"2.0","method":"sendMessage","params":{"message": json!({"data": data}).to_string()},"id":77})
            .to_string()
    };
    let frame = frame_of(51_200);
    assert_eq!(frame.len(), 51_200);
    a.send_text(frame).await;
    let f = a.read_frame().await.unwrap();
    let f = if f.get("method").is_some() { a.read_frame().await.unwrap() } else { f };
    assert_eq!(f["id"], 77, "{f}");
    assert!(f.get("error").is_none(), "{f}");
    // REST: 60 KiB of data.
    let (status, body) = s.post("/signal", json!({"session": "S1", "data": "r".repeat(60 * 1024)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // One byte over the frame: 1009.
    a.send_text(frame_of(51_201)).await;
    assert_eq!(a.close_code(WAIT).await, Some(1009));
}

#[tokio::test]
async fn sessions_are_bounded_and_big_bodies_get_openvidus_json_error() {
    let s = TestServer::single_with(|c| {
        c.max_sessions = 3;
        c.max_rest_body_bytes = 4096;
    })
    .await;
    for i in 0..3 {
        s.create_session(&format!("S{i}")).await;
    }
    let (status, e) = s.post("/sessions", json!({"customSessionId": "S3"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(e["message"].as_str().unwrap().contains("maximum of 3 sessions"), "{e}");
    let (status, page) = s.get("/sessions").await;
    assert_eq!((status, page["numberOfElements"].clone()), (StatusCode::OK, json!(3)));

    let (status, e) = s.post("/signal", json!({"session": "S0", "data": "x".repeat(5000)})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(e["status"], 413);
    assert_eq!(e["path"], "/openvidu/api/signal");
    assert!(e["message"].as_str().unwrap().contains("4096 bytes"), "{e}");
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once_and_counted() {
    let s = TestServer::single_with(|c| c.max_connections = 2).await;
    let addr = s.server().local_addr();
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, c.read(&mut buf)).await.expect("closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let counts = s.server().connections();
    assert_eq!((counts.open, counts.refused), (2, 1));
    drop(_a);
    // Its place is given back.
    let deadline = Instant::now() + WAIT;
    while s.server().connections().open > 1 {
        assert!(Instant::now() < deadline, "the closed connection is still counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
