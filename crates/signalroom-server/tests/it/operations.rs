//! Metrics a Python test cannot easily provoke: reconnections and replays, the Redis broker's
//! state and round trip, and where the metrics are served.

use std::net::SocketAddr;

use serde_json::json;

use crate::redis_support::RedisProcess;
use crate::support::{Peer, TestServer};

/// The value of the sample line `name` (with its labels, as rendered) in `/metrics` at `base`.
pub(crate) async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn reconnections_and_replays_are_counted() {
    let s = TestServer::single().await;
    s.create_session("S1").await;
    let mut sender = s.join("S1", "sender").await;
    let b = s.join("S1", "b").await;
    let rpc = b.rpc_id.clone();
    let to = [b.connection_id.clone()];
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    b.close().await;
    let lost = "signalroom_links_lost_total";
    for _ in 0..200 {
        if metric(&s.http, &s.url, lost).await == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(metric(&s.http, &s.url, lost).await, Some(1.0));
    sender.signal(&to, "away", "signal:chat").await.unwrap();
    let mut again = Peer::open(&s.url, "S1").await;
    let result = again.call("connect", Some(json!({"sessionId": rpc, "reconnect": true}))).await.unwrap();
    assert_eq!(result["replayed"], 1);
    let counted = r#"signalroom_reconnections_total{recovered="unknown"}"#;
    for _ in 0..200 {
        if metric(&s.http, &s.url, counted).await == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(metric(&s.http, &s.url, counted).await, Some(1.0));
    assert_eq!(metric(&s.http, &s.url, "signalroom_notifications_replayed_total").await, Some(1.0));
}

#[tokio::test]
async fn the_redis_broker_is_watched() {
    let redis = RedisProcess::start();
    let s = TestServer::single_with(|c| c.broker = Some(redis.url())).await;
    assert_eq!(metric(&s.http, &s.url, r#"signalroom_broker_up{broker="redis"}"#).await, Some(1.0));
    let rtt = metric(&s.http, &s.url, "signalroom_broker_round_trip_seconds").await.unwrap();
    assert!(rtt > 0.0 && rtt < 1.0, "{rtt}");
}

#[tokio::test]
async fn metrics_on_a_listener_of_their_own_or_off() {
    let own: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let s = TestServer::single_with(|c| c.metrics_listen = Some(own)).await;
    let addr = s.server().metrics_addr().expect("a metrics listener");
    assert_eq!(metric(&s.http, &format!("http://{addr}"), "signalroom_sessions").await, Some(0.0));
    let main = s.http.get(format!("{}/metrics", s.url)).send().await.unwrap();
    assert_eq!(main.status(), reqwest::StatusCode::NOT_FOUND);

    let off = TestServer::single_with(|c| c.metrics = false).await;
    assert!(off.server().metrics_addr().is_none());
    let none = off.http.get(format!("{}/metrics", off.url)).send().await.unwrap();
    assert_eq!(none.status(), reqwest::StatusCode::NOT_FOUND);
}
