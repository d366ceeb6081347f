//! Tokens, sessions and shutdown (spec §1.4, §7).

use std::time::Duration;

use serde_json::json;

use crate::support::{Peer, TestServer, WAIT};

#[tokio::test]
async fn tokens_are_single_use() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let _stay = s.join("S1", "stay").await;
    let (token, _) = s.connection("S1", json!({})).await;
    let mut p = Peer::open(&s.url, "S1").await;
    p.join(&token, "S1", "").await.unwrap();
    p.call("leaveRoom", Some(json!({}))).await.unwrap();
    let mut again = Peer::open(&s.url, "S1").await;
    let e = again.join(&token, "S1", "").await.unwrap_err();
    assert_eq!(e["code"], 401);
    assert!(e["message"].as_str().unwrap().contains("is not valid"), "{e}");
}

#[tokio::test]
async fn a_token_of_another_session_or_a_made_up_one_is_refused() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    s.create_session("S2").await;
    let (token2, _) = s.connection("S2", json!({})).await;
    let mut p = Peer::open(&s.url, "S1").await;
    assert_eq!(p.join(&token2, "S1", "").await.unwrap_err()["code"], 401);
    let made_up = token2.replace("tok_", "tok_X");
    assert_eq!(p.join(&made_up, "S2", "").await.unwrap_err()["code"], 401);
    // The socket stays usable: the right token still joins.
    p.join(&token2, "S2", "").await.unwrap();
}

#[tokio::test]
async fn joining_an_unknown_session_gets_202() {
    let s = TestServer::start().await;
    let mut p = Peer::open(&s.url, "nope").await;
    let e = p.join("ws://x?sessionId=nope&token=tok_A", "nope", "").await.unwrap_err();
    assert_eq!(e["code"], 202);
    assert_eq!(e["message"], "Unable to join session. Session nope cannot be found");
}

#[tokio::test]
async fn one_socket_carries_one_participant() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let (t1, _) = s.connection("S1", json!({})).await;
    let (t2, _) = s.connection("S1", json!({})).await;
    let mut p = Peer::open(&s.url, "S1").await;
    p.join(&t1, "S1", "").await.unwrap();
    let e = p.join(&t2, "S1", "").await.unwrap_err();
    assert_eq!(e["code"], 999);
    // The refused token is still pending and usable elsewhere.
    let mut q = Peer::open(&s.url, "S1").await;
    q.join(&t2, "S1", "").await.unwrap();
}

#[tokio::test]
async fn the_session_closes_when_its_last_participant_leaves() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let (pending_token, _) = s.connection("S1", json!({})).await;
    let mut a = s.join("S1", "a").await;
    a.call("leaveRoom", Some(json!({}))).await.unwrap();
    assert_eq!(s.get("/sessions/S1").await.0, 404);
    let mut p = Peer::open(&s.url, "S1").await;
    assert_eq!(p.join(&pending_token, "S1", "").await.unwrap_err()["code"], 202);
    s.create_session("S1").await;
}

#[tokio::test]
async fn a_dropped_last_participant_closes_the_session_after_the_grace_period() {
    let s = TestServer::start_with(|c| c.reconnection_grace = Duration::from_millis(100)).await;
    s.create_session("S1").await;
    let a = s.join("S1", "a").await;
    drop(a);
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.get("/sessions/S1").await.0 != 404 {
        assert!(tokio::time::Instant::now() < deadline, "session still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_evicts_everybody_with_openvidu_server_stopped() {
    let mut s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    let a_id = a.connection_id.clone();
    let shutdown = tokio::spawn(async move {
        s.shutdown().await;
        // Behind the balancer, the peers read what the nodes sent through it: it stays up.
        s
    });
    let ev = a.notification("participantEvicted").await;
    assert_eq!(ev, json!({"connectionId": a_id, "reason": "openviduServerStopped"}));
    let mut reasons = Vec::new();
    loop {
        match b.read_frame_within(WAIT).await.expect("frames or close") {
            Some(f)
                if f["method"] == "participantEvicted"
                    && f["params"]["connectionId"] == b.connection_id.as_str() =>
            {
                reasons.push(f["params"]["reason"].clone());
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(reasons, vec![json!("openviduServerStopped")]);
    let _stopped = tokio::time::timeout(WAIT * 2, shutdown).await.expect("shutdown finishes").unwrap();
}

#[tokio::test]
async fn a_socket_that_leaves_and_joins_again_stays_open() {
    let s = TestServer::start_with(|c| c.linger_close = Duration::from_millis(100)).await;
    s.create_session("S1").await;
    let mut other = s.join("S1", "other").await;
    let (t1, _) = s.connection("S1", json!({})).await;
    let (t2, id2) = s.connection("S1", json!({})).await;
    let mut p = Peer::open(&s.url, "S1").await;
    p.join(&t1, "S1", "").await.unwrap();
    p.call("leaveRoom", Some(json!({}))).await.unwrap();
    p.join(&t2, "S1", "").await.unwrap();
    // Past the linger delay of the first participant, the socket still carries the second.
    assert_eq!(p.read_frame_within(Duration::from_millis(400)).await, Err(()));
    other.signal(&[&id2], "still open", "signal:chat").await.unwrap();
    assert_eq!(p.notification("sendMessage").await["data"], "still open");
}

#[tokio::test]
async fn tokens_never_point_to_an_unspecified_address() {
    let s = TestServer::single_with(|c| c.listen = "0.0.0.0:0".parse().unwrap()).await;
    let port = s.server().local_addr().port();
    assert_eq!(s.server().token_base(), format!("ws://127.0.0.1:{port}"));
}

#[tokio::test]
async fn tokens_point_to_the_public_url() {
    let mut s =
        TestServer::start_with(|c| c.public_url = Some("https://ov.example.com/".parse().unwrap())).await;
    assert_eq!(s.server().token_base(), "wss://ov.example.com");
    // The REST calls of this test go to the server itself, behind its public URL.
    s.url = format!("http://{}", s.server().local_addr());
    s.create_session("S1").await;
    let (token, _) = s.connection("S1", json!({})).await;
    assert!(token.starts_with("wss://ov.example.com?sessionId=S1&token=tok_"), "{token}");
    let (status, url) = s.get("/config/openvidu-publicurl").await;
    assert_eq!((status.as_u16(), url), (200, json!("https://ov.example.com/")));
}
