//! A server on a random port, a REST helper and a raw JSON-RPC peer.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use signalroom_server::{Config, Server};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::redis_support::{Balancer, SharedRedis, free_listen_port};

pub const SECRET: &str = "test-secret";
/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure a frame does not come.
pub const QUIET: Duration = Duration::from_millis(300);

/// The server a test talks to: one node on a random port, or, with `SIGNALROOM_TEST_NODES=N`
/// (1 or 2), N nodes behind HAProxy (`deploy/haproxy.cfg`), sharing a `redis-server` when N = 2.
/// Behind the balancer `url` is the balancer's, every node's public URL points there, and every
/// REST request and every socket is balanced on its own: a test's calls alternate nodes. N = 1
/// checks the balancer's part alone (one node, the in-process broker).
pub struct TestServer {
    /// The first node.
    pub server: Option<Server>,
    /// The other nodes behind the balancer.
    pub others: Vec<Server>,
    pub http: reqwest::Client,
    pub url: String,
    /// Kept alive for the test: the balancer first, then Redis (dropped in this order).
    balancer: Option<Balancer>,
    redis: Option<SharedRedis>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with `tweak` applied to the configuration of each of its nodes.
    pub async fn start_with(tweak: impl Fn(&mut Config)) -> Self {
        match test_nodes() {
            None => Self::single_with(tweak).await,
            Some(n) => Self::behind_balancer(n, tweak).await,
        }
    }

    /// One node reached directly, whatever `SIGNALROOM_TEST_NODES` says: for tests of one node's
    /// own behaviour (its address, its events).
    pub async fn single() -> Self {
        Self::single_with(|_| {}).await
    }

    pub async fn single_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config { secret: SECRET.into(), ..Config::local() };
        tweak(&mut config);
        let server = Server::start(config).await.expect("server starts");
        let url = server.url().to_owned();
        Self {
            server: Some(server),
            others: Vec::new(),
            http: reqwest::Client::new(),
            url,
            balancer: None,
            redis: None,
        }
    }

    async fn behind_balancer(n: usize, tweak: impl Fn(&mut Config)) -> Self {
        let redis = (n > 1).then(SharedRedis::start);
        let port = free_listen_port(false);
        let public = format!("http://127.0.0.1:{port}/");
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let mut config = Config { secret: SECRET.into(), ..Config::local() };
            config.public_url = Some(public.parse().expect("public URL"));
            config.broker = redis.as_ref().map(SharedRedis::url);
            tweak(&mut config);
            nodes.push(Server::start(config).await.expect("node starts"));
        }
        let addrs: Vec<_> = nodes.iter().map(Server::local_addr).collect();
        let balancer = Balancer::start(port, &addrs).await;
        let mut nodes = nodes.into_iter();
        Self {
            server: nodes.next(),
            others: nodes.collect(),
            http: reqwest::Client::new(),
            url: balancer.url(),
            balancer: Some(balancer),
            redis,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// Shuts every node down, all at once.
    pub async fn shutdown(&mut self) {
        let nodes = self.server.take().into_iter().chain(self.others.drain(..));
        futures_util::future::join_all(nodes.map(Server::shutdown)).await;
    }

    /// The port of `url` (the node's, or the balancer's).
    pub fn port(&self) -> u16 {
        self.url
            .rsplit_once(':')
            .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
            .expect("url with a port")
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/openvidu/api{}", self.url, path)
    }

    /// A request with the right credentials; returns the status and the body (JSON if any).
    pub async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.api(path)).basic_auth("OPENVIDUAPP", Some(SECRET));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.rest(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.rest(reqwest::Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.rest(reqwest::Method::DELETE, path, None).await
    }

    pub async fn create_session(&self, id: &str) {
        let (status, body) = self.post("/sessions", json!({"customSessionId": id})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// A pending connection: (token, connection id).
    pub async fn connection(&self, session: &str, body: Value) -> (String, String) {
        let (status, c) = self.post(&format!("/sessions/{session}/connection"), body).await;
        assert_eq!(status, StatusCode::OK, "{c}");
        (c["token"].as_str().unwrap().to_owned(), c["connectionId"].as_str().unwrap().to_owned())
    }

    /// A joined participant with client metadata `metadata`.
    pub async fn join(&self, session: &str, metadata: &str) -> Peer {
        let (token, cid) = self.connection(session, json!({})).await;
        let mut peer = Peer::open(&self.url, session).await;
        let r = peer.join(&token, session, metadata).await.expect("joins");
        assert_eq!(r["id"], cid.as_str());
        peer
    }
}

/// A raw JSON-RPC peer, speaking like openvidu-browser.
pub struct Peer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    pub pending: VecDeque<Value>,
    pub connection_id: String,
    pub rpc_id: String,
}

impl Peer {
    pub async fn open(http_url: &str, session: &str) -> Self {
        Self::open_url(&format!("{}/openvidu?sessionId={session}", http_url.replacen("http", "ws", 1))).await
    }

    pub async fn open_url(url: &str) -> Self {
        let (ws, _) = connect_async(url).await.expect("websocket opens");
        Self::from_socket(ws)
    }

    /// A peer over a socket opened some other way.
    pub fn from_socket(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self { ws, next_id: 0, pending: VecDeque::new(), connection_id: String::new(), rpc_id: String::new() }
    }

    pub async fn join(&mut self, token: &str, session: &str, metadata: &str) -> Result<Value, Value> {
        self.call("ping", Some(json!({"interval": 5000}))).await.expect("pong");
        let r = self
            .call(
                "joinRoom",
                Some(json!({"token": token, "session": session, "platform": "test", "sdkVersion": "2.32.2",
                    "metadata": metadata, "secret": "", "recorder": false, "stt": false})),
            )
            .await?;
        self.connection_id = r["id"].as_str().unwrap().to_owned();
        self.rpc_id = r["sessionId"].as_str().unwrap().to_owned();
        Ok(r)
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::Text(text.into().into())).await.expect("frame sent");
    }

    /// Sends a frame; `false` if the socket is closed.
    pub async fn try_send_text(&mut self, text: impl Into<String>) -> bool {
        self.ws.send(Message::Text(text.into().into())).await.is_ok()
    }

    pub async fn send_message(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("frame sent");
    }

    /// A fresh request id.
    pub fn next_request_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Sends a request and returns its id.
    pub async fn request(&mut self, method: &str, params: Option<Value>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut frame = json!({"jsonrpc": "2.0", "method": method, "id": id});
        if let Some(p) = params {
            frame["params"] = p;
        }
        self.send_text(frame.to_string()).await;
        id
    }

    /// Sends requests of `method` with each of `params` in one write, and returns their ids.
    pub async fn requests(&mut self, method: &str, params: impl IntoIterator<Item = Value>) -> Vec<u64> {
        let mut ids = Vec::new();
        for p in params {
            let id = self.next_id;
            self.next_id += 1;
            let frame = json!({"jsonrpc": "2.0", "method": method, "id": id, "params": p});
            self.ws.feed(Message::Text(frame.to_string().into())).await.expect("frame queued");
            ids.push(id);
        }
        self.ws.flush().await.expect("frames sent");
        ids
    }

    /// Calls a method: `Ok(result)` or `Err(error object)`. Notifications meanwhile are kept.
    pub async fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, Value> {
        let id = self.request(method, params).await;
        self.response(id).await
    }

    pub async fn response(&mut self, id: u64) -> Result<Value, Value> {
        loop {
            let f = self.read_frame().await.unwrap_or_else(|| panic!("socket closed awaiting response {id}"));
            if f.get("method").is_some() {
                self.pending.push_back(f);
                continue;
            }
            assert_eq!(f["jsonrpc"], "2.0", "{f}");
            assert_eq!(f["id"], id, "unexpected response {f}");
            return match f.get("error") {
                Some(e) => Err(e.clone()),
                None => Ok(f["result"].clone()),
            };
        }
    }

    /// The next frame, or `None` when the socket closed. Panics after [`WAIT`].
    pub async fn read_frame(&mut self) -> Option<Value> {
        self.read_frame_within(WAIT).await.expect("a frame within the wait")
    }

    /// `Err(())` on timeout; `Ok(None)` when closed.
    pub async fn read_frame_within(&mut self, wait: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.map_err(|_| ())?;
            match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(t))) => {
                    return Ok(Some(serde_json::from_str(&t).expect("server sends JSON")));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The close frame's code, waiting up to `wait`.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code.into()),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The params of the next notification of `method` (earlier ones of other methods are kept).
    pub async fn notification(&mut self, method: &str) -> Value {
        self.notification_frame(method).await["params"].clone()
    }

    /// The whole next notification of `method` (earlier ones of other methods are kept).
    pub async fn notification_frame(&mut self, method: &str) -> Value {
        if let Some(i) = self.pending.iter().position(|f| f["method"] == method) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            let f = self.read_frame().await.unwrap_or_else(|| panic!("socket closed awaiting {method}"));
            assert_eq!(f["jsonrpc"], "2.0", "{f}");
            if f["method"] == method {
                return f;
            }
            self.pending.push_back(f);
        }
    }

    /// Asserts no notification of `method` arrives within [`QUIET`].
    pub async fn no_notification(&mut self, method: &str) {
        assert!(
            !self.pending.iter().any(|f| f["method"] == method),
            "unexpected {method}: {:?}",
            self.pending
        );
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(f)) = self.read_frame_within(deadline - tokio::time::Instant::now()).await {
            assert_ne!(f["method"], method, "unexpected {f}");
            self.pending.push_back(f);
        }
    }

    pub async fn signal(&mut self, to: &[&str], data: &str, kind: &str) -> Result<Value, Value> {
        let message = json!({"to": to, "data": data, "type": kind}).to_string();
        self.call("sendMessage", Some(json!({"message": message}))).await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// `SIGNALROOM_TEST_NODES`: unset for one node reached directly; 1 or 2 for nodes behind HAProxy.
pub fn test_nodes() -> Option<usize> {
    let v = std::env::var("SIGNALROOM_TEST_NODES").ok().filter(|v| !v.is_empty())?;
    match v.parse() {
        Ok(n @ (1 | 2)) => Some(n),
        _ => panic!("SIGNALROOM_TEST_NODES={v:?}: 1 or 2 nodes behind the balancer (unset: one node)"),
    }
}
