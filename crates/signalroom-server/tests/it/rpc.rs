//! Every JSON-RPC method and notification of spec §3–§5.

use std::time::Duration;

use serde_json::json;

use crate::support::{Peer, QUIET, TestServer, WAIT};

#[tokio::test]
async fn ping_is_answered_before_and_after_join() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut p = Peer::open(&s.url, "S1").await;
    assert_eq!(p.call("ping", Some(json!({"interval": 5000}))).await.unwrap(), json!({"value": "pong"}));
    assert_eq!(p.call("ping", None).await.unwrap(), json!({"value": "pong"}));
    let (token, _) = s.connection("S1", json!({})).await;
    p.join(&token, "S1", "").await.unwrap();
    assert_eq!(p.call("ping", None).await.unwrap(), json!({"value": "pong"}));
}

#[tokio::test]
async fn join_room_result_has_every_field_and_announces_the_joiner_first() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut alice = s.join("S1", r#"{"name":"alice"}"#).await;
    let (token, bob_id) =
        s.connection("S1", json!({"data": "bob-server", "role": "MODERATOR", "record": false})).await;
    let mut bob = Peer::open(&s.url, "S1").await;
    let r = bob.join(&token, "S1", "bob-client").await.unwrap();

    assert_eq!(r["id"], bob_id.as_str());
    assert_eq!(r["role"], "MODERATOR");
    assert_eq!(r["record"], false);
    assert_eq!(r["version"], "2.32.2");
    assert_eq!(r["session"], "S1");
    assert_eq!(r["metadata"], "bob-client%/%bob-server");
    assert_eq!(r["mediaServer"], "kurento");
    assert_eq!(r["videoSimulcast"], false);
    assert!(r["createdAt"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(!r["finalUserId"].as_str().unwrap().is_empty());
    assert!(r["sessionId"].as_str().unwrap().len() >= 20, "RPC session id: {r}");
    assert!(r.get("life").is_none(), "never send life: {r}");
    // signalroom's extension: the largest frame it accepts (openvidu-browser ignores it).
    assert_eq!(r["maxFrameBytes"], 51_200);
    let value = r["value"].as_array().unwrap();
    assert_eq!(value.len(), 1, "existing participants, joiner excluded: {r}");
    assert_eq!(value[0]["id"], alice.connection_id.as_str());
    assert_eq!(value[0]["metadata"], r#"{"name":"alice"}"#);
    assert!(value[0].get("streams").is_none());

    let joined = alice.notification("participantJoined").await;
    assert_eq!(
        joined,
        json!({"id": bob_id, "createdAt": r["createdAt"], "metadata": "bob-client%/%bob-server"})
    );
    bob.no_notification("participantJoined").await;
}

#[tokio::test]
async fn broadcast_reaches_everybody_including_the_sender() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    let r = a.signal(&[], "hello", "signal:my-chat").await.unwrap();
    assert_eq!(r, json!({"sessionId": a.rpc_id}));
    let expected = json!({"data": "hello", "type": "signal:my-chat", "from": a.connection_id});
    assert_eq!(a.notification("sendMessage").await, expected);
    assert_eq!(b.notification("sendMessage").await, expected);
}

#[tokio::test]
async fn targeted_signals_reach_only_their_targets_once() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    let mut c = s.join("S1", "c").await;
    let b_id = b.connection_id.clone();
    a.signal(&[&b_id, &b_id], "toB", "signal:chat").await.unwrap();
    assert_eq!(b.notification("sendMessage").await["data"], "toB");
    b.no_notification("sendMessage").await;
    a.no_notification("sendMessage").await;
    c.no_notification("sendMessage").await;
}

#[tokio::test]
async fn absent_keys_stay_absent_and_scalars_are_stringified() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    a.call("sendMessage", Some(json!({"message": "{}"}))).await.unwrap();
    assert_eq!(a.notification("sendMessage").await, json!({"from": a.connection_id}));
    a.call("sendMessage", Some(json!({"message": r#"{"data":42,"type":"signal:n"}"#}))).await.unwrap();
    assert_eq!(a.notification("sendMessage").await["data"], "42");
}

#[tokio::test]
async fn an_unknown_recipient_rejects_the_whole_signal() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    let b_id = b.connection_id.clone();
    let e = a.signal(&[&b_id, "con_nope"], "x", "signal:chat").await.unwrap_err();
    assert_eq!(e["code"], 601);
    assert!(e["message"].as_str().unwrap().contains("con_nope"), "{e}");
    b.no_notification("sendMessage").await;
    a.no_notification("sendMessage").await;
}

#[tokio::test]
async fn a_thousand_signals_arrive_in_order() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    let b_id = b.connection_id.clone();
    let mut ids = Vec::new();
    for i in 0..1000 {
        let message = json!({"to": [b_id], "data": i.to_string(), "type": "signal:seq"}).to_string();
        ids.push(a.request("sendMessage", Some(json!({"message": message}))).await);
    }
    for id in ids {
        a.response(id).await.unwrap();
    }
    for i in 0..1000 {
        assert_eq!(b.notification("sendMessage").await["data"], i.to_string());
    }
}

/// A receiver that reads nothing for a while, and pings meanwhile: its socket's buffers fill,
/// the server's writes are taken in part or not at all (a pusher's, or the writer's), and the
/// pongs wait for the frame in the middle of which the socket stopped. Once it reads, every frame
/// is there, whole and in order.
#[tokio::test]
async fn a_receiver_that_reads_late_gets_every_frame_whole_and_in_order() {
    let s = TestServer::start_with(|c| c.send_queue_bytes = 64 << 20).await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    let b_id = b.connection_id.clone();
    const SIGNALS: usize = 1200;
    let data = |i: usize| format!("{i}:{}", "x".repeat(9_000 + 7 * (i % 500)));
    for i in 0..SIGNALS {
        a.signal(&[&b_id], &data(i), "signal:big").await.unwrap();
        if i % 100 == 0 {
            b.send_message(tokio_tungstenite::tungstenite::Message::Ping(vec![1, 2, 3].into())).await;
        }
    }
    for i in 0..SIGNALS {
        let frame = b.read_frame().await.expect("a whole frame, not the end of the socket");
        assert_eq!(frame["params"]["data"], data(i), "frame {i}");
    }
}

#[tokio::test]
async fn leave_room_tells_the_others_and_answers() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    assert_eq!(b.call("leaveRoom", Some(json!({}))).await.unwrap(), json!({"sessionId": b.rpc_id}));
    assert_eq!(
        a.notification("participantLeft").await,
        json!({"connectionId": b.connection_id, "reason": "disconnect"})
    );
    // No longer a participant: methods other than ping/connect/joinRoom get 803.
    assert_eq!(b.call("sendMessage", Some(json!({"message": "{}"}))).await.unwrap_err()["code"], 803);
    let e = a.signal(&[&b.connection_id.clone()], "x", "signal:chat").await.unwrap_err();
    assert_eq!(e["code"], 601);
}

#[tokio::test]
async fn the_server_closes_a_left_socket_after_the_linger_delay() {
    let s = TestServer::start_with(|c| c.linger_close = Duration::from_millis(200)).await;
    s.create_session("S1").await;
    let _a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    b.call("leaveRoom", Some(json!({}))).await.unwrap();
    assert_eq!(b.close_code(WAIT).await, Some(1000));
}

#[tokio::test]
async fn force_disconnect_follows_openvidus_order() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let (token, _) = s.connection("S1", json!({"role": "MODERATOR"})).await;
    let mut m = Peer::open(&s.url, "S1").await;
    m.join(&token, "S1", "mod").await.unwrap();
    let mut target = s.join("S1", "t").await;
    let mut other = s.join("S1", "o").await;
    let _ = m.notification("participantJoined").await;

    let t_id = target.connection_id.clone();
    let id = m.request("forceDisconnect", Some(json!({"connectionId": t_id}))).await;
    // The moderator sees participantLeft, then its response, then participantEvicted.
    let f1 = m.read_frame().await.unwrap();
    let f1 = if f1["method"] == "participantJoined" { m.read_frame().await.unwrap() } else { f1 };
    assert_eq!(f1["method"], "participantLeft", "{f1}");
    assert_eq!(f1["params"], json!({"connectionId": t_id, "reason": "forceDisconnectByUser"}));
    let f2 = m.read_frame().await.unwrap();
    assert_eq!(f2["id"], id, "{f2}");
    assert!(f2.get("result").is_some(), "{f2}");
    let f3 = m.read_frame().await.unwrap();
    assert_eq!(f3["method"], "participantEvicted", "{f3}");

    let evicted = json!({"connectionId": t_id, "reason": "forceDisconnectByUser"});
    assert_eq!(target.notification("participantEvicted").await, evicted);
    target.no_notification("participantLeft").await;
    assert_eq!(other.notification("participantLeft").await, evicted);
    assert_eq!(other.notification("participantEvicted").await, evicted);
}

#[tokio::test]
async fn force_disconnect_needs_a_moderator_and_a_participant() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let b = s.join("S1", "b").await;
    let e = a.call("forceDisconnect", Some(json!({"connectionId": b.connection_id}))).await.unwrap_err();
    assert_eq!(e["code"], 401);
    assert!(e["message"].as_str().unwrap().contains("MODERATOR"), "{e}");

    let (token, _) = s.connection("S1", json!({"role": "MODERATOR"})).await;
    let mut m = Peer::open(&s.url, "S1").await;
    m.join(&token, "S1", "mod").await.unwrap();
    let e = m.call("forceDisconnect", Some(json!({"connectionId": "con_nope"}))).await.unwrap_err();
    assert_eq!(e["code"], 102);
}

#[tokio::test]
async fn media_methods_get_clear_answers() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    for m in [
        "echo",
        "videoData",
        "streamPropertyChanged",
        "unpublishVideo",
        "unsubscribeFromVideo",
        "onIceCandidate",
    ] {
        assert!(a.call(m, Some(json!({}))).await.is_ok(), "{m}");
    }
    let e = a.call("publishVideo", Some(json!({"sdpOffer": "v=0"}))).await.unwrap_err();
    assert_eq!(e["code"], 301);
    for m in ["receiveVideoFrom", "prepareReceiveVideoFrom", "reconnectStream", "applyFilter"] {
        assert_eq!(a.call(m, Some(json!({}))).await.unwrap_err()["code"], 301, "{m}");
    }
    assert_eq!(a.call("forceUnpublish", Some(json!({"streamId": "str_x"}))).await.unwrap_err()["code"], 401);
    assert_eq!(a.call("subscribeToSpeechToText", Some(json!({}))).await.unwrap_err()["code"], 996);
    let e = a.call("noSuchMethod", Some(json!({}))).await.unwrap_err();
    assert_eq!(e["code"], -32601);

    let (token, _) = s.connection("S1", json!({"role": "SUBSCRIBER"})).await;
    let mut sub = Peer::open(&s.url, "S1").await;
    sub.join(&token, "S1", "sub").await.unwrap();
    assert_eq!(sub.call("publishVideo", Some(json!({}))).await.unwrap_err()["code"], 401);
    // Any role may signal.
    sub.signal(&[], "hi", "signal:chat").await.unwrap();

    let (token, _) = s.connection("S1", json!({"role": "MODERATOR"})).await;
    let mut m = Peer::open(&s.url, "S1").await;
    m.join(&token, "S1", "mod").await.unwrap();
    assert_eq!(m.call("forceUnpublish", Some(json!({"streamId": "str_x"}))).await.unwrap_err()["code"], 105);
}

#[tokio::test]
async fn methods_before_join_room_get_803() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut p = Peer::open(&s.url, "S1").await;
    for m in ["sendMessage", "leaveRoom", "forceDisconnect", "echo"] {
        let e = p.call(m, Some(json!({}))).await.unwrap_err();
        assert_eq!(e["code"], 803, "{m}: {e}");
        assert!(e["message"].as_str().unwrap().contains("Session.connect()"), "{e}");
    }
}

#[tokio::test]
async fn a_client_notification_is_handled_without_a_response() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut p = Peer::open(&s.url, "S1").await;
    p.send_text(r#"{"jsonrpc":"2.0","method":"ping","params":{"interval":5000}}"#).await;
    assert_eq!(p.read_frame_within(QUIET).await, Err(()), "no response to a notification");
    assert_eq!(p.call("ping", None).await.unwrap(), json!({"value": "pong"}));
}

#[tokio::test]
async fn reconnection_rebinds_the_participant_to_a_new_socket() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let b = s.join("S1", "b").await;
    let (b_id, b_rpc) = (b.connection_id.clone(), b.rpc_id.clone());
    drop(b); // the network goes away: no leaveRoom

    let url = format!("{}/openvidu?sessionId=S1&reconnect=true", s.url.replacen("http", "ws", 1));
    let mut b2 = Peer::open_url(&url).await;
    let r = b2.call("connect", Some(json!({"sessionId": b_rpc, "reconnect": true}))).await.unwrap();
    assert_eq!(r["value"], "reconnection successful");
    assert_eq!(r["sessionId"], b_rpc.as_str());
    b2.connection_id = b_id.clone();

    a.signal(&[&b_id], "after", "signal:chat").await.unwrap();
    assert_eq!(b2.notification("sendMessage").await["data"], "after");
    b2.signal(&[], "back", "signal:chat").await.unwrap();
    assert_eq!(a.notification("sendMessage").await["from"], b_id.as_str());
    a.no_notification("participantLeft").await;
}

#[tokio::test]
async fn reconnection_with_an_unknown_id_is_refused() {
    let s = TestServer::start().await;
    let url = format!("{}/openvidu?sessionId=S1&reconnect=true", s.url.replacen("http", "ws", 1));
    let mut p = Peer::open_url(&url).await;
    let e = p.call("connect", Some(json!({"sessionId": "nope", "reconnect": true}))).await.unwrap_err();
    assert_eq!(e, json!({"code": 40007, "message": "reconnection error"}));
}

#[tokio::test]
async fn a_participant_that_does_not_come_back_is_evicted_after_the_grace_period() {
    let s = TestServer::start_with(|c| c.reconnection_grace = Duration::from_millis(300)).await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let b = s.join("S1", "b").await;
    let (b_id, b_rpc) = (b.connection_id.clone(), b.rpc_id.clone());
    drop(b);
    let left = a.notification("participantLeft").await;
    assert_eq!(left, json!({"connectionId": b_id, "reason": "networkDisconnect"}));
    assert_eq!(a.notification("participantEvicted").await["connectionId"], b_id.as_str());

    let url = format!("{}/openvidu?sessionId=S1&reconnect=true", s.url.replacen("http", "ws", 1));
    let mut late = Peer::open_url(&url).await;
    let e = late.call("connect", Some(json!({"sessionId": b_rpc, "reconnect": true}))).await.unwrap_err();
    assert_eq!(e["code"], 40007);
}

#[tokio::test]
async fn the_ping_watchdog_closes_a_silent_socket() {
    let s = TestServer::start_with(|c| c.reconnection_grace = Duration::from_millis(100)).await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    // The shortest interval the server accepts is 1 s: the watchdog fires after 3 s of silence.
    b.call("ping", Some(json!({"interval": 1000}))).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(b.close_code(Duration::from_secs(10)).await, Some(1000));
    assert!(started.elapsed() >= Duration::from_millis(2500), "{:?}", started.elapsed());
    assert_eq!(a.notification("participantLeft").await["reason"], "networkDisconnect");
}

#[tokio::test]
async fn a_receiver_that_stops_reading_is_evicted_and_others_carry_on() {
    let s = TestServer::start_with(|c| {
        c.send_queue_capacity = 8;
        c.reconnection_grace = Duration::from_millis(100);
    })
    .await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let stalled = s.join("S1", "stalled").await; // never read again
    let mut c = s.join("S1", "c").await;
    let _ = a.notification("participantJoined").await;
    let stalled_id = stalled.connection_id.clone();
    let data = "x".repeat(40_000);
    let mut evicted = false;
    for _ in 0..2_000 {
        match a.signal(&[&stalled_id], &data, "signal:big").await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e["code"], 601, "{e}");
                evicted = true;
                break;
            }
        }
    }
    assert!(evicted, "the stalled receiver was never evicted");
    let left = c.notification("participantLeft").await;
    assert_eq!(left, json!({"connectionId": stalled_id, "reason": "networkDisconnect"}));
    a.signal(&[], "still here", "signal:chat").await.unwrap();
    assert_eq!(c.notification("sendMessage").await["data"], "still here");
    // Its socket is dropped, though it is too far behind to take a close frame: once what was
    // already in flight is read, the connection ends.
    let mut stalled = stalled;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match stalled.read_frame_within(deadline - tokio::time::Instant::now()).await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(()) => panic!("the evicted receiver's socket is still open"),
        }
    }
}

/// A burst of broadcasts sent in one write (read together by the server, and pushed to each
/// receiver together) reaches every receiver in order, the sender's reply to each after its own
/// copy, and a request after the burst is answered after all of them.
#[tokio::test]
async fn a_burst_of_broadcasts_keeps_its_order_and_its_replies_in_place() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    let _ = a.notification("participantJoined").await;
    const N: usize = 300;
    let message = |i: usize| json!({"to": [], "data": i.to_string(), "type": "signal:n"}).to_string();
    let mut ids = a.requests("sendMessage", (0..N).map(|i| json!({"message": message(i)}))).await;
    ids.extend(a.requests("ping", [json!({})]).await);

    // The sender: copy i, then reply i, for every i in order; then the pong.
    let mut expected = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if i < N {
            expected.push(format!("copy {i}"));
        }
        expected.push(format!("reply {id}"));
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let f = a.read_frame().await.expect("the sender's socket stays open");
        match f["method"].as_str() {
            Some("sendMessage") => got.push(format!("copy {}", f["params"]["data"].as_str().unwrap())),
            Some(other) => panic!("unexpected {other}: {f}"),
            None => {
                assert!(f.get("error").is_none(), "{f}");
                got.push(format!("reply {}", f["id"]));
            }
        }
    }
    assert_eq!(got, expected);

    // The other participant: every broadcast, in order.
    let mut data = Vec::new();
    while data.len() < N {
        let f = b.read_frame().await.expect("the receiver's socket stays open");
        assert_eq!(f["method"], "sendMessage", "{f}");
        data.push(f["params"]["data"].as_str().unwrap().parse::<usize>().unwrap());
    }
    assert_eq!(data, (0..N).collect::<Vec<_>>());
}

#[tokio::test]
async fn connection_property_changes_reach_only_the_participant() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    let (status, body) = s
        .rest(
            reqwest::Method::PATCH,
            &format!("/sessions/S1/connection/{}", a.connection_id),
            Some(json!({"role": "MODERATOR"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        a.notification("connectionPropertyChanged").await,
        json!({"property": "role", "newValue": "MODERATOR"})
    );
    b.no_notification("connectionPropertyChanged").await;
    // The new role is in force.
    let r = a.call("forceDisconnect", Some(json!({"connectionId": b.connection_id}))).await;
    assert!(r.is_ok(), "{r:?}");
}

/// The upgrade request and the client's first frame, sent in one write: the frame is read with
/// the head, and answered.
#[tokio::test]
async fn a_frame_sent_with_the_upgrade_request_is_answered() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_tungstenite::tungstenite::protocol::Role;

    let s = TestServer::single().await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port())).await.unwrap();
    let mut bytes = b"GET /openvidu?sessionId=S1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    let ping = json!({"jsonrpc": "2.0", "method": "ping", "params": {"interval": 5000}, "id": 0}).to_string();
    // A masked text frame (RFC 6455 §5.2), its length under 126.
    let mask = [7u8, 1, 8, 2];
    bytes.extend_from_slice(&[0x81, 0x80 | u8::try_from(ping.len()).unwrap()]);
    bytes.extend_from_slice(&mask);
    bytes.extend(ping.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tcp.write_all(&bytes).await.unwrap();

    let mut read = Vec::new();
    let end = loop {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&read));
        read.extend_from_slice(&buf[..n]);
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&read[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"), "{head}");
    let mut ws = tokio_tungstenite::WebSocketStream::from_partially_read(
        tcp,
        read[end..].to_vec(),
        Role::Client,
        None,
    )
    .await;
    let answer =
        tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws)).await.unwrap().unwrap().unwrap();
    let answer: serde_json::Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(answer, json!({"id": 0, "jsonrpc": "2.0", "result": {"value": "pong"}}));
}

/// A connection that served another request first is upgraded by the route, as any upgrade was
/// before the first-request path: the socket works the same.
#[tokio::test]
async fn an_upgrade_after_another_request_on_the_same_connection_works() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let s = TestServer::single().await;
    s.create_session("S1").await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port())).await.unwrap();
    tcp.write_all(b"GET /openvidu/api/config/openvidu-publicurl HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut read = Vec::new();
    loop {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&read));
        read.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&read).to_lowercase();
        let Some(at) = text.find("\r\n\r\n") else { continue };
        assert!(text.starts_with("http/1.1 200 "), "{text}");
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a length")
            .trim()
            .parse()
            .unwrap();
        if read.len() >= at + 4 + length {
            break;
        }
    }
    let url = format!("ws://127.0.0.1:{}/openvidu?sessionId=S1", s.port());
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (ws, response) = tokio_tungstenite::client_async(url, tcp).await.expect("upgraded");
    assert_eq!(response.status(), 101);
    let mut p = Peer::from_socket(ws);
    assert_eq!(p.call("ping", Some(json!({"interval": 5000}))).await.unwrap(), json!({"value": "pong"}));
    let (token, _) = s.connection("S1", json!({})).await;
    p.join(&token, "S1", "").await.unwrap();
}
