//! A participant's outbox outlives its socket: `connect` resumes after `lastSeq` (signalroom's
//! extension) or, without it, replays what was not yet written; and every operation is observed as
//! a `ServerEvent`.

use serde_json::json;
use signalroom_server::ServerEvent;

use crate::support::{Peer, TestServer, WAIT};

/// Reads `sendMessage` notifications until one with `data == last`; returns every (seq, data).
async fn signals_until(peer: &mut Peer, last: &str) -> Vec<(u64, String)> {
    let mut seen = Vec::new();
    loop {
        let n = peer.notification_frame("sendMessage").await;
        let data = n["params"]["data"].as_str().unwrap().to_owned();
        seen.push((n["seq"].as_u64().expect("a notification carries seq"), data.clone()));
        if data == last {
            return seen;
        }
    }
}

/// Waits until the server has seen a participant's socket go.
async fn link_lost(events: &mut tokio::sync::broadcast::Receiver<ServerEvent>) {
    loop {
        let event =
            tokio::time::timeout(WAIT, events.recv()).await.expect("the socket is seen gone").unwrap();
        if matches!(event, ServerEvent::LinkLost { .. }) {
            return;
        }
    }
}

fn data(seen: &[(u64, String)]) -> Vec<&str> {
    seen.iter().map(|(_, d)| d.as_str()).collect()
}

#[tokio::test]
async fn notifications_carry_increasing_sequence_numbers() {
    let s = TestServer::single().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let _b = s.join("S1", "b").await;
    let joined = a.notification_frame("participantJoined").await;
    for i in 0..3 {
        a.signal(&[], &format!("m{i}"), "signal:chat").await.unwrap();
    }
    let seen = signals_until(&mut a, "m2").await;
    let seqs: Vec<u64> =
        std::iter::once(joined["seq"].as_u64().unwrap()).chain(seen.iter().map(|(s, _)| *s)).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test]
async fn connect_with_last_seq_replays_what_followed_exactly_once() {
    let s = TestServer::single().await;
    s.create_session("S1").await;
    let mut sender = s.join("S1", "sender").await;
    let (token, _) = s.connection("S1", json!({})).await;
    let mut b = Peer::open(&s.url, "S1").await;
    // A client that acknowledges says so from its first ping.
    b.call("ping", Some(json!({"interval": 5000, "lastSeq": 0}))).await.unwrap();
    b.join(&token, "S1", "b").await.unwrap();
    let to = [b.connection_id.clone()];
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    for i in 0..5 {
        sender.signal(&to, &format!("m{i}"), "signal:chat").await.unwrap();
    }
    let seen = signals_until(&mut b, "m4").await;
    let handled = seen[1].0; // the client handled m0 and m1 only
    let rpc = b.rpc_id.clone();
    b.close().await;
    for i in 5..8 {
        sender.signal(&to, &format!("m{i}"), "signal:chat").await.unwrap();
    }
    let mut again = Peer::open(&s.url, "S1").await;
    let result =
        again.call("connect", Some(json!({"sessionId": rpc, "reconnect": true, "lastSeq": handled}))).await;
    let result = result.unwrap();
    assert_eq!(result["value"], "reconnection successful");
    assert_eq!(result["recovered"], true);
    assert_eq!(result["replayed"], 6);
    let replay = signals_until(&mut again, "m7").await;
    assert_eq!(data(&replay), ["m2", "m3", "m4", "m5", "m6", "m7"]);
    // Live again afterwards, nothing repeated.
    sender.signal(&to, "live", "signal:chat").await.unwrap();
    assert_eq!(data(&signals_until(&mut again, "live").await), ["live"]);
}

#[tokio::test]
async fn without_last_seq_what_was_sent_while_away_is_replayed() {
    let s = TestServer::single().await;
    let mut events = s.server().events();
    s.create_session("S1").await;
    let mut sender = s.join("S1", "sender").await;
    let mut b = s.join("S1", "b").await;
    let rpc = b.rpc_id.clone();
    let to = [b.connection_id.clone()];
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    sender.signal(&to, "before", "signal:chat").await.unwrap();
    signals_until(&mut b, "before").await;
    b.close().await;
    link_lost(&mut events).await;
    sender.signal(&to, "away", "signal:chat").await.unwrap();
    let mut again = Peer::open(&s.url, "S1").await;
    let result = again.call("connect", Some(json!({"sessionId": rpc, "reconnect": true}))).await.unwrap();
    assert_eq!(result["replayed"], 1);
    assert!(result.get("recovered").is_none(), "{result}");
    assert_eq!(data(&signals_until(&mut again, "away").await), ["away"]);
}

#[tokio::test]
async fn a_gap_larger_than_the_outbox_still_reconnects_and_says_so() {
    let s = TestServer::single_with(|c| c.send_queue_capacity = 4).await;
    let mut events = s.server().events();
    s.create_session("S1").await;
    let mut sender = s.join("S1", "sender").await;
    let (token, _) = s.connection("S1", json!({})).await;
    let mut b = Peer::open(&s.url, "S1").await;
    b.call("ping", Some(json!({"lastSeq": 0}))).await.unwrap();
    b.join(&token, "S1", "b").await.unwrap();
    let rpc = b.rpc_id.clone();
    let to = [b.connection_id.clone()];
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    b.close().await;
    link_lost(&mut events).await;
    for i in 0..10 {
        sender.signal(&to, &format!("m{i}"), "signal:chat").await.unwrap();
    }
    let mut again = Peer::open(&s.url, "S1").await;
    let result = again
        .call("connect", Some(json!({"sessionId": rpc, "reconnect": true, "lastSeq": 0})))
        .await
        .unwrap();
    assert_eq!(result["recovered"], false);
    assert_eq!(result["replayed"], 4);
    assert_eq!(data(&signals_until(&mut again, "m9").await), ["m6", "m7", "m8", "m9"]);
}

#[tokio::test]
async fn every_operation_is_a_server_event() {
    let s = TestServer::single().await;
    let mut events = s.server().events();
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    a.signal(&[], "hello", "signal:chat").await.unwrap();
    a.call("leaveRoom", Some(json!({}))).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        let event = tokio::time::timeout(WAIT, events.recv()).await.expect("an event").unwrap();
        got.push(event);
    }
    let cid = a.connection_id.as_str();
    assert!(
        matches!(&got[0], ServerEvent::SessionCreated { session, .. } if session.as_str() == "S1"),
        "{got:?}"
    );
    assert!(
        matches!(&got[1], ServerEvent::ParticipantJoined { connection, .. } if connection.as_str() == cid)
    );
    assert!(
        matches!(&got[2], ServerEvent::SignalSent { from: Some(f), kind: Some(k), recipients: 1, bytes: 5, .. }
            if f.as_str() == cid && k == "signal:chat"),
        "{got:?}"
    );
    assert!(
        matches!(&got[3], ServerEvent::ParticipantLeft { reason, .. } if reason.as_str() == "disconnect")
    );
    assert!(matches!(&got[4], ServerEvent::SessionDestroyed { session, .. } if session.as_str() == "S1"));
}
