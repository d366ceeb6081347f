//! A quick fan-out measurement: one session, N participants, one sender broadcasting signals;
//! reports deliveries per second as counted by the receivers.
//!
//! ```text
//! cargo run --release -p signalroom-server --example fanout -- [participants] [signals]
//! ```
//! Server and participants share this process (and the machine's cores), so the figure is a
//! floor; `bench/` compares servers side by side.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use signalroom_server::{Config, Server};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "fanout";
/// The whole run stops after this long, whatever happened.
const RUN_LIMIT: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let participants: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let signals: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let server = Server::start(Config { secret: SECRET.into(), ..Config::local() }).await?;
    let http = reqwest::Client::new();
    let api = format!("{}/openvidu/api", server.url());
    http.post(format!("{api}/sessions"))
        .basic_auth("OPENVIDUAPP", Some(SECRET))
        .json(&json!({"customSessionId": "fanout"}))
        .send()
        .await?
        .error_for_status()?;

    let received = Arc::new(AtomicU64::new(0));
    let ws_url = format!("{}/openvidu?sessionId=fanout", server.url().replacen("http", "ws", 1));
    let join_started = Instant::now();
    let mut sinks = Vec::with_capacity(participants);
    for i in 0..participants {
        let c: Value = http
            .post(format!("{api}/sessions/fanout/connection"))
            .basic_auth("OPENVIDUAPP", Some(SECRET))
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        let (ws, _) = connect_async(&ws_url).await?;
        let (mut sink, mut stream) = ws.split();
        let join = json!({"jsonrpc":"2.0","method":"joinRoom","id":1,"params":{"token":c["token"],"session":"fanout",
            "platform":"fanout","sdkVersion":"2.32.2","metadata":format!("p{i}"),"secret":"","recorder":false,"stt":false}});
        sink.send(Message::Text(join.to_string().into())).await?;
        loop {
            let Some(Ok(Message::Text(t))) = stream.next().await else { anyhow::bail!("join failed") };
            if t.contains("\"id\":1") {
                break;
            }
        }
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m {
                    if t.contains("\"signal:bench\"") {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        sinks.push(sink);
    }
    let join_secs = join_started.elapsed().as_secs_f64();
    println!(
        "{participants} participants joined in {join_secs:.2} s ({:.0} joins/s, sequential)",
        participants as f64 / join_secs
    );

    let sender = &mut sinks[0];
    let payload = "x".repeat(64);
    let expected = signals * participants as u64;
    let started = Instant::now();
    for i in 0..signals {
        let message = json!({"to": [], "data": payload, "type": "signal:bench"}).to_string();
        let frame =
            json!({"jsonrpc":"2.0","method":"sendMessage","id": 100 + i,"params":{"message": message}});
        sender.send(Message::Text(frame.to_string().into())).await?;
    }
    while received.load(Ordering::Relaxed) < expected && started.elapsed() < RUN_LIMIT {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    println!(
        "{signals} broadcasts x {participants} receivers: {got}/{expected} deliveries in {secs:.3} s = {:.0} deliveries/s",
        got as f64 / secs
    );
    server.shutdown().await;
    Ok(())
}
