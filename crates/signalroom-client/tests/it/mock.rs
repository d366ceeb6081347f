//! A mock OpenVidu WebSocket endpoint that checks, frame by frame, what the client sends against
//! the frames the real openvidu-browser 2.32.2 sends (`shared/spec/fixtures`).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::support::STEP;

/// Accepts WebSockets on `127.0.0.1:0` and hands each one to the test with its request path.
pub struct MockServer {
    pub addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<MockConn>,
    accept: tokio::task::JoinHandle<()>,
}

impl MockServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener)
    }

    fn on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(conn) = MockConn::accept(stream).await {
                        let _ = tx.send(conn);
                    }
                });
            }
        });
        Self { addr, conns, accept }
    }

    /// A token pointing at this server, with a path that must be ignored.
    pub fn token(&self, session: &str, token: &str) -> String {
        format!("ws://{}/ignored/path?sessionId={session}&token={token}", self.addr)
    }

    /// The next WebSocket opened by the client.
    pub async fn next(&mut self) -> MockConn {
        tokio::time::timeout(STEP, self.conns.recv()).await.expect("no connection in time").unwrap()
    }

    /// Whether the client opens another WebSocket within `wait`.
    pub async fn expect_no_connection(&mut self, wait: Duration) {
        if let Ok(Some(conn)) = tokio::time::timeout(wait, self.conns.recv()).await {
            panic!("unexpected connection at {}", conn.path);
        }
    }

    /// Stops accepting: connections are refused from now on.
    pub fn stop(&self) {
        self.accept.abort();
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

pub struct MockConn {
    pub path: String,
    ws: WebSocketStream<TcpStream>,
}

impl MockConn {
    #[allow(clippy::result_large_err)] // the callback's type is tungstenite's
    async fn accept(stream: TcpStream) -> Option<Self> {
        let mut path = String::new();
        let ws = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
            path = req.uri().to_string();
            Ok(resp)
        })
        .await
        .ok()?;
        Some(Self { path, ws })
    }

    /// The next frame, parsed; panics on anything but a text frame.
    pub async fn recv(&mut self) -> Value {
        serde_json::from_str(&self.recv_text().await).expect("frames are JSON")
    }

    /// The next frame's text; panics on anything but a text frame.
    pub async fn recv_text(&mut self) -> String {
        let msg = tokio::time::timeout(STEP, self.ws.next()).await.expect("no frame in time");
        match msg {
            Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame that is not a ping; pings are answered with a pong on the way.
    pub async fn recv_request(&mut self) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["method"] == "ping" {
                self.pong(&frame).await;
            } else {
                return frame;
            }
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::text(frame.to_string())).await.unwrap();
    }

    pub async fn reply(&mut self, request: &Value, result: Value) {
        self.send(json!({"jsonrpc":"2.0","id":request["id"],"result":result})).await;
    }

    pub async fn reply_error(&mut self, request: &Value, code: i64, message: &str) {
        // With Kurento's quirks: sessionId inside the error and a stray top-level data.
        self.send(json!({"jsonrpc":"2.0","id":request["id"],
            "error":{"code":code,"message":message,"sessionId":"rpc1x"},"data":{}}))
            .await;
    }

    pub async fn pong(&mut self, ping: &Value) {
        self.send(json!({"jsonrpc":"2.0","id":ping["id"],"result":{"value":"pong"}})).await;
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc":"2.0","method":method,"params":params})).await;
    }

    /// Answers the first `ping` and the `joinRoom` as real OpenVidu does; returns the joinRoom.
    pub async fn accept_join(&mut self, id: &str, others: Value) -> Value {
        let ping = self.recv().await;
        assert_eq!(ping["method"], "ping");
        self.pong(&ping).await;
        let join = self.recv().await;
        assert_eq!(join["method"], "joinRoom");
        self.reply(&join, join_result(id, others)).await;
        join
    }

    /// Waits for the client's close frame and returns its code; pings are answered on the way.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(STEP, self.ws.next()).await.expect("no close in time");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(Message::Text(t))) => {
                    let frame: Value = serde_json::from_str(t.as_str()).unwrap();
                    assert_eq!(frame["method"], "ping", "unexpected frame before close: {frame}");
                }
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Drops the TCP connection without a close frame (a network failure).
    pub fn kill(self) {
        drop(self.ws);
    }
}

/// A joinRoom result as real OpenVidu CE 2.32.2 sends it (spec §3.1), RPC session id `rpc1x`.
pub fn join_result(id: &str, others: Value) -> Value {
    json!({"id":id,"finalUserId":"97061F3F73313C3E","createdAt":1700000001000u64,
        "metadata":"{\"name\":\"alice\"}","value":others,"session":"S1","version":"2.32.2",
        "mediaServer":"kurento","videoSimulcast":false,"record":true,"role":"PUBLISHER",
        "coturnIp":"203.0.113.7","coturnPort":3478,"turnUsername":"1700086400:abc","turnCredential":"xyz",
        "customIceServers":[{"url":"turn:203.0.113.7:3478","username":"1700086400:abc","credential":"xyz"}],
        "sessionId":"rpc1x"})
}

/// The frames of one scenario of the openvidu-browser fixture, in order.
pub fn fixture(scenario: &str) -> Vec<Value> {
    // A copy of shared/spec/fixtures/openvidu-browser-2.32.2-client-frames.jsonl.
    let text = include_str!("fixtures/openvidu-browser-2.32.2-client-frames.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["scenario"] == scenario)
        .collect()
}
