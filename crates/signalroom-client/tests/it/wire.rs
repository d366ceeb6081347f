//! What the client sends and how it reacts, against a mock endpoint: the exact frames of
//! openvidu-browser 2.32.2, reconnection, timeouts, cancellation, evictions.

use std::time::Duration;

use serde_json::{Value, json};
use signalroom_client::{ConnectOptions, Session};
use signalroom_client::{
    Connection, ConnectionId, EndReason, Error, Event, SessionState, Signal, SignalEvent, default_platform,
};

use crate::mock::{MockServer, fixture, join_result};
use crate::support::*;

/// The fixture frame with the values that differ between runs replaced by ours, plus
/// signalroom's one extension: `lastSeq` (0 before any notification) in pings and `connect`.
fn expected(fixture_frame: &Value, token: &str) -> Value {
    let mut msg = fixture_frame["msg"].clone();
    if msg["method"] == "joinRoom" {
        msg["params"]["platform"] = default_platform().into();
        msg["params"]["token"] = token.into();
    }
    if msg["method"] == "ping" || msg["method"] == "connect" {
        msg["params"]["lastSeq"] = 0.into();
    }
    msg
}

#[tokio::test]
async fn sends_exactly_what_openvidu_browser_sends() {
    init_tracing();
    let frames = fixture("basic");
    let mut mock = MockServer::start().await;
    // Alice's token of the fixture carries a path, which must be ignored.
    let token = mock.token("S1", "tok_A");
    let connecting = tokio::spawn({
        let token = token.clone();
        async move {
            Session::connect_with(&token, ConnectOptions::default().with_metadata(r#"{"name":"alice"}"#))
                .await
        }
    });
    let mut conn = mock.next().await;
    assert_eq!(frames[0]["dir"], "upgrade");
    assert_eq!(conn.path, frames[0]["url"]);
    let ping = conn.recv().await;
    assert_eq!(ping, expected(&frames[1], &token));
    conn.pong(&ping).await;
    let join_text = conn.recv_text().await;
    let join: Value = serde_json::from_str(&join_text).unwrap();
    assert_eq!(join, expected(&frames[2], &token));
    // The text keeps openvidu-browser's key order too.
    let keys = ["jsonrpc", "method", "params", "token", "session", "platform", "sdkVersion", "metadata"];
    let keys = keys.iter().chain(&["secret", "recorder", "stt", "id"]);
    let at: Vec<usize> = keys.map(|k| join_text.find(&format!("\"{k}\":")).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{join_text}");
    conn.reply(&join, join_result("con_T1", json!([]))).await;
    let (session, mut events) = connecting.await.unwrap().unwrap();
    assert_eq!(session.connection_id(), &ConnectionId::from("con_T1"));
    assert_eq!(session.session_id().as_str(), "S1");

    // Bob joins; then the signals of the fixture, with their ids.
    conn.notify(
        "participantJoined",
        json!({"id":"con_T2","createdAt":1700000002000u64,"metadata":"bob-data"}),
    )
    .await;
    let signals = [
        (Signal::broadcast("my-chat", "hello").unwrap(), 6),
        (Signal::new("noType", None, vec![]).unwrap(), 7),
        (Signal::new("toB", Some("my-chat"), vec!["con_T2".into()]).unwrap(), 8),
        (Signal::new("x", None, vec!["con_nope".into()]).unwrap(), 9),
    ];
    for (signal, line) in signals {
        let sending = tokio::spawn({
            let session = session.clone();
            async move { session.signal(signal).await }
        });
        let frame = conn.recv_request().await;
        let want = &frames[line]["msg"];
        assert_eq!(frame, *want, "fixture line {line}");
        // The inner message is a string: its text must be identical, key order included.
        assert_eq!(frame["params"]["message"].as_str(), want["params"]["message"].as_str());
        if line == 9 {
            conn.reply_error(&frame, 601, "Signal \"to\" field invalid format: con_nope").await;
            match sending.await.unwrap() {
                Err(Error::Rpc { method: "sendMessage", code: 601, .. }) => {}
                other => panic!("{other:?}"),
            }
        } else {
            conn.reply(&frame, json!({"sessionId":"rpc1x"})).await;
            sending.await.unwrap().unwrap();
        }
    }

    let leaving = tokio::spawn({
        let session = session.clone();
        async move { session.disconnect().await }
    });
    let leave = conn.recv_request().await;
    let mut want = frames[10]["msg"].clone();
    want["id"] = 6.into();
    assert_eq!(leave, want);
    conn.reply(&leave, json!({"sessionId":"rpc1x"})).await;
    assert_eq!(conn.expect_close().await, 4102);
    leaving.await.unwrap().unwrap();

    // Events: self, bob, then sessionDisconnected(disconnect), then the end.
    assert_eq!(next_event(&mut events).await, Event::ConnectionCreated(session.connection()));
    match next_event(&mut events).await {
        Event::ConnectionCreated(c) => {
            assert_eq!(c, Connection::new("con_T2".into(), 1700000002000, "bob-data"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(next_event(&mut events).await, Event::SessionDisconnected { reason: EndReason::Disconnect });
    expect_closed(&mut events).await;
    assert_eq!(session.state(), SessionState::Disconnected(EndReason::Disconnect));
    match session.signal(Signal::broadcast("x", "late").unwrap()).await {
        Err(Error::Disconnected { reason: EndReason::Disconnect }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_announces_no_frame_limit_gets_openvidus() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let connecting =
        tokio::spawn(async move { Session::connect_with(&token, ConnectOptions::default()).await });
    let mut conn = mock.next().await;
    let ping = conn.recv().await;
    conn.pong(&ping).await;
    let join = conn.recv().await;
    conn.reply(&join, join_result("con_T1", json!([]))).await; // real OpenVidu: no maxFrameBytes
    let (session, _events) = connecting.await.unwrap().unwrap();
    assert_eq!(session.max_frame_bytes(), signalroom_core::limits::DEFAULT_MAX_FRAME_BYTES);
    let too_big = Signal::broadcast("chat", "x".repeat(51_200)).unwrap();
    assert!(matches!(
        session.signal(too_big).await,
        Err(Error::Invalid(signalroom_core::Error::FrameTooLarge { limit: 51_200, .. }))
    ));
}

#[tokio::test]
async fn pings_every_interval_with_only_the_last_seq() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let opts = ConnectOptions::default().with_ping(Duration::from_millis(100), Duration::from_secs(2));
    let connecting = tokio::spawn(async move { Session::connect_with(&token, opts).await });
    let mut conn = mock.next().await;
    let ping = conn.recv().await;
    // The first ping carries the configured interval (and lastSeq, signalroom's extension).
    assert_eq!(ping, json!({"jsonrpc":"2.0","method":"ping","params":{"interval":100,"lastSeq":0},"id":0}));
    conn.pong(&ping).await;
    let join = conn.recv().await;
    conn.reply(&join, join_result("con_T1", json!([]))).await;
    let (_session, _events) = connecting.await.unwrap().unwrap();
    for id in 2..5 {
        let ping = conn.recv().await;
        // openvidu-browser sends no params; signalroom's extension adds only lastSeq.
        assert_eq!(ping, json!({"jsonrpc":"2.0","method":"ping","params":{"lastSeq":0},"id":id}));
        conn.pong(&ping).await;
    }
}

#[tokio::test]
async fn reconnects_like_openvidu_browser() {
    init_tracing();
    let frames = fixture("reconnect");
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let connecting = tokio::spawn(async move { Session::connect_with(&token, fast()).await });
    let mut conn = mock.next().await;
    conn.accept_join("con_T1", json!([{"id":"con_T0","createdAt":1,"metadata":""}])).await;
    let (session, mut events) = connecting.await.unwrap().unwrap();
    assert!(matches!(next_event(&mut events).await, Event::ConnectionCreated(_)));
    assert!(matches!(next_event(&mut events).await, Event::ConnectionCreated(_)));

    // A request written on the socket that breaks fails with ConnectionLost.
    let in_flight = tokio::spawn({
        let session = session.clone();
        async move { session.signal(Signal::broadcast("chat", "lost").unwrap()).await }
    });
    let frame = conn.recv_request().await;
    assert_eq!(frame["method"], "sendMessage");
    conn.kill();
    assert!(matches!(in_flight.await.unwrap(), Err(Error::ConnectionLost { method: "sendMessage" })));
    assert_eq!(next_event(&mut events).await, Event::Reconnecting);

    // A request made while reconnecting waits for the new socket; one cancelled meanwhile is
    // never sent.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(20),
        session.signal(Signal::broadcast("chat", "cancelled").unwrap()),
    )
    .await;
    assert!(cancelled.is_err());
    let queued = tokio::spawn({
        let session = session.clone();
        async move { session.signal(Signal::broadcast("chat", "queued").unwrap()).await }
    });

    let mut conn = mock.next().await;
    let upgrade =
        frames.iter().find(|f| f["dir"] == "upgrade" && f["url"].as_str().unwrap().contains("reconnect"));
    assert_eq!(conn.path, upgrade.unwrap()["url"]);
    // No ping before `connect`; ids continue across sockets.
    let connect = conn.recv().await;
    let mut want = expected(frames.iter().find(|f| f["msg"]["method"] == "connect").unwrap(), "");
    want["id"] = connect["id"].clone();
    assert_eq!(connect, want);
    assert!(connect["id"].as_u64().unwrap() > 2);
    conn.reply(&connect, json!({"value":"reconnection successful","sessionId":"rpc1x"})).await;
    assert_eq!(next_event(&mut events).await, Event::Reconnected { recovered: None, replayed: 0 });
    assert_eq!(session.state(), SessionState::Connected);

    // Then pings restart with the interval, and the queued signal goes out.
    let mut saw_ping = false;
    let mut saw_signal = false;
    while !(saw_ping && saw_signal) {
        let frame = conn.recv().await;
        match frame["method"].as_str().unwrap() {
            "ping" => {
                assert_eq!(frame["params"], json!({"interval":5000,"lastSeq":0}));
                conn.pong(&frame).await;
                saw_ping = true;
            }
            "sendMessage" => {
                assert!(frame["params"]["message"].as_str().unwrap().contains("queued"));
                conn.reply(&frame, json!({})).await;
                saw_signal = true;
            }
            other => panic!("unexpected {other}"),
        }
    }
    queued.await.unwrap().unwrap();
    // Nothing else was sent (pings apart): the cancelled request stayed unsent.
    let more = tokio::time::timeout(Duration::from_millis(200), conn.recv_request()).await;
    assert!(more.is_err(), "unexpected {more:?}");
    // Roster kept across the reconnection.
    assert_eq!(session.remote_connections().len(), 1);
}

#[tokio::test]
async fn refused_reconnection_ends_the_session() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let connecting = tokio::spawn(async move { Session::connect_with(&token, fast()).await });
    let mut conn = mock.next().await;
    conn.accept_join("con_T1", json!([])).await;
    let (session, mut events) = connecting.await.unwrap().unwrap();
    next_event(&mut events).await;
    conn.kill();
    assert_eq!(next_event(&mut events).await, Event::Reconnecting);
    let mut conn = mock.next().await;
    let connect = conn.recv().await;
    assert_eq!(connect["method"], "connect");
    conn.reply_error(&connect, 40007, "reconnection error").await;
    assert_eq!(conn.expect_close().await, 4102);
    assert_eq!(
        next_event(&mut events).await,
        Event::SessionDisconnected { reason: EndReason::NetworkDisconnect }
    );
    expect_closed(&mut events).await;
    mock.expect_no_connection(Duration::from_millis(300)).await;
    assert!(matches!(
        session.signal(Signal::broadcast("x", "y").unwrap()).await,
        Err(Error::Disconnected { reason: EndReason::NetworkDisconnect })
    ));
}

#[tokio::test]
async fn gives_up_after_the_configured_attempts() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let connecting = tokio::spawn(async move { Session::connect_with(&token, fast()).await });
    let mut conn = mock.next().await;
    conn.accept_join("con_T1", json!([])).await;
    let (_session, mut events) = connecting.await.unwrap().unwrap();
    next_event(&mut events).await;
    mock.stop();
    conn.kill();
    let started = std::time::Instant::now();
    assert_eq!(next_event(&mut events).await, Event::Reconnecting);
    assert_eq!(
        next_event(&mut events).await,
        Event::SessionDisconnected { reason: EndReason::NetworkDisconnect }
    );
    // 3 attempts, 100 ms apart.
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    expect_closed(&mut events).await;
}

#[tokio::test]
async fn a_missing_pong_breaks_the_link() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let opts = fast().with_ping(Duration::from_millis(100), Duration::from_millis(300));
    let connecting = tokio::spawn(async move { Session::connect_with(&token, opts).await });
    let mut conn = mock.next().await;
    conn.accept_join("con_T1", json!([])).await;
    let (_session, mut events) = connecting.await.unwrap().unwrap();
    next_event(&mut events).await;
    // Pings are not answered: within 100 + 300 ms the client gives the socket up (4104).
    let ping = conn.recv().await;
    assert_eq!(ping["method"], "ping");
    let started = std::time::Instant::now();
    assert_eq!(next_event(&mut events).await, Event::Reconnecting);
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    assert_eq!(conn.expect_close().await, 4104);
    let mut conn = mock.next().await;
    assert!(conn.path.ends_with("&reconnect=true"));
    let connect = conn.recv().await;
    assert_eq!(connect["method"], "connect");
    conn.reply(&connect, json!({"value":"reconnection successful"})).await;
    assert_eq!(next_event(&mut events).await, Event::Reconnected { recovered: None, replayed: 0 });
}

#[tokio::test]
async fn requests_time_out_and_late_answers_are_ignored() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let opts = fast().with_request_timeout(Duration::from_millis(200));
    let connecting = tokio::spawn(async move { Session::connect_with(&token, opts).await });
    let mut conn = mock.next().await;
    conn.accept_join("con_T1", json!([])).await;
    let (session, _events) = connecting.await.unwrap().unwrap();

    let sending = tokio::spawn({
        let session = session.clone();
        async move { session.signal(Signal::broadcast("chat", "slow").unwrap()).await }
    });
    let slow = conn.recv_request().await;
    match sending.await.unwrap() {
        Err(e @ Error::Timeout { method: "sendMessage", timeout_ms: 200 }) => assert!(e.is_transient()),
        other => panic!("{other:?}"),
    }
    conn.reply(&slow, json!({})).await;

    // A call cancelled (its future dropped) after it was written leaves the link usable.
    let mut cancelled = Box::pin(session.signal(Signal::broadcast("chat", "cancelled").unwrap()));
    let dropped = tokio::select! {
        r = &mut cancelled => panic!("answered without an answer: {r:?}"),
        frame = conn.recv_request() => frame,
    };
    drop(cancelled);
    assert!(dropped["params"]["message"].as_str().unwrap().contains("cancelled"));
    conn.reply(&dropped, json!({})).await;

    let sending = tokio::spawn({
        let session = session.clone();
        async move { session.signal(Signal::broadcast("chat", "fast").unwrap()).await }
    });
    let fast = conn.recv_request().await;
    assert!(fast["params"]["message"].as_str().unwrap().contains("fast"));
    conn.reply(&fast, json!({})).await;
    sending.await.unwrap().unwrap();
}

#[tokio::test]
async fn join_errors_are_rpc_errors_and_close_the_socket() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_used");
    let connecting = tokio::spawn(async move { Session::connect(&token).await });
    let mut conn = mock.next().await;
    let ping = conn.recv().await;
    conn.pong(&ping).await;
    let join = conn.recv().await;
    conn.reply_error(&join, 401, "Unable to join session S1. Token tok_used is not valid").await;
    match connecting.await.unwrap() {
        Err(Error::Rpc { method: "joinRoom", code: 401, message }) => assert!(message.contains("not valid")),
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.expect_close().await, 4102);
}

#[tokio::test]
async fn invalid_tokens_are_refused_before_connecting() {
    for token in [
        "tok_AVe8o7iltWqtijyl",
        "http://127.0.0.1:1?sessionId=S1&token=tok_A",
        "ws://127.0.0.1:1?token=tok_A",
    ] {
        match Session::connect(token).await {
            Err(e @ Error::Invalid(_)) => assert!(!e.is_transient(), "{token}"),
            other => panic!("{token}: {other:?}"),
        }
    }
    // Nobody listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    match Session::connect(&format!("ws://{addr}?sessionId=S1&token=tok_A")).await {
        Err(e @ Error::Connect { .. }) => assert!(e.is_transient()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tolerates_unknown_members_and_notifications() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let connecting = tokio::spawn(async move { Session::connect(&token).await });
    let mut conn = mock.next().await;
    conn.accept_join(
        "con_T1",
        json!([{"id":"con_T0","createdAt":1,"metadata":"m","streams":[{"id":"str_X"}]}]),
    )
    .await;
    let (session, mut events) = connecting.await.unwrap().unwrap();
    next_event(&mut events).await;
    next_event(&mut events).await;
    for frame in [
        json!({"jsonrpc":"2.0","method":"participantPublished","params":{"id":"con_T0","streams":[]}}),
        json!({"jsonrpc":"2.0","method":"iceCandidate","params":{"candidate":"x"}}),
        json!({"jsonrpc":"2.0","method":"recordingStarted","params":{"id":"r","name":"n"}}),
        json!({"jsonrpc":"2.0","method":"whatever","params":{}, "id": 99}),
        json!({"jsonrpc":"2.0","id":12345,"result":{}}),
        json!({"jsonrpc":"2.0","method":"sendMessage","params":{"data":"hi","type":"signal:chat","from":"con_T0","extra":1}}),
    ] {
        conn.send(frame).await;
    }
    match next_event(&mut events).await {
        Event::Signal(SignalEvent { data, kind, from: Some(from), .. }) => {
            assert_eq!((data.as_str(), kind.as_str()), ("hi", "signal:chat"));
            assert_eq!(from, Connection::new("con_T0".into(), 1, "m"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(session.state(), SessionState::Connected);
}

#[tokio::test]
async fn eviction_of_self_closes_without_reconnecting() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let connecting = tokio::spawn(async move { Session::connect_with(&token, fast()).await });
    let mut conn = mock.next().await;
    conn.accept_join("con_T1", json!([{"id":"con_T0","createdAt":1,"metadata":""}])).await;
    let (session, mut events) = connecting.await.unwrap().unwrap();
    next_event(&mut events).await;
    next_event(&mut events).await;
    // As OpenVidu: everybody gets everybody's eviction; only our own ends the session.
    conn.notify("participantEvicted", json!({"connectionId":"con_T0","reason":"forceDisconnectByUser"}))
        .await;
    conn.notify("participantLeft", json!({"connectionId":"con_T0","reason":"forceDisconnectByUser"})).await;
    match next_event(&mut events).await {
        Event::ConnectionDestroyed { connection, reason } => {
            assert_eq!(connection.connection_id, "con_T0");
            assert_eq!(reason, EndReason::ForceDisconnectByUser);
        }
        other => panic!("{other:?}"),
    }
    conn.notify("participantEvicted", json!({"connectionId":"con_T1","reason":"forceDisconnectByServer"}))
        .await;
    assert_eq!(
        next_event(&mut events).await,
        Event::SessionDisconnected { reason: EndReason::ForceDisconnectByServer }
    );
    expect_closed(&mut events).await;
    assert_eq!(conn.expect_close().await, 4102);
    mock.expect_no_connection(Duration::from_millis(300)).await;
    assert!(session.remote_connections().is_empty());
    // disconnect() on a finished session is a no-op.
    session.disconnect().await.unwrap();
}

#[tokio::test]
async fn dropping_the_last_handle_leaves() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let connecting = tokio::spawn(async move { Session::connect(&token).await });
    let mut conn = mock.next().await;
    conn.accept_join("con_T1", json!([])).await;
    let (session, _events) = connecting.await.unwrap().unwrap();
    let clone = session.clone();
    drop(session);
    // A clone keeps it alive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(clone);
    let leave = conn.recv_request().await;
    assert_eq!(leave["method"], "leaveRoom");
    assert_eq!(leave["params"], json!({}));
    conn.reply(&leave, json!({})).await;
    assert_eq!(conn.expect_close().await, 4102);
}

#[tokio::test]
async fn a_dropped_connect_leaves_the_session() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let connecting = tokio::spawn(async move { Session::connect(&token).await });
    let mut conn = mock.next().await;
    let ping = conn.recv().await;
    conn.pong(&ping).await;
    let _join = conn.recv().await;
    connecting.abort();
    // Nobody waits for the result any more: the socket is closed without joining.
    assert_eq!(conn.expect_close().await, 4102);
}

#[tokio::test]
async fn numbered_notifications_resume_after_the_last_handled() {
    init_tracing();
    let mut mock = MockServer::start().await;
    let token = mock.token("S1", "tok_A");
    let opts = fast().with_ping(Duration::from_millis(100), Duration::from_secs(5));
    let connecting = tokio::spawn(async move { Session::connect_with(&token, opts).await });
    let mut conn = mock.next().await;
    conn.accept_join("con_T1", json!([])).await;
    let (_session, mut events) = connecting.await.unwrap().unwrap();
    next_event(&mut events).await;
    let signal = |data: &str, seq: u64| json!({"jsonrpc":"2.0","method":"sendMessage","params":{"data":data,"type":"signal:n"},"seq":seq});
    conn.send(signal("a", 3)).await;
    conn.send(signal("b", 7)).await;
    let data = |ev: Event| match ev {
        Event::Signal(s) => s.data,
        other => panic!("expected a signal, got {other:?}"),
    };
    assert_eq!(data(next_event(&mut events).await), "a");
    assert_eq!(data(next_event(&mut events).await), "b");
    // Pings say what the client has.
    let ping = loop {
        let frame = conn.recv().await;
        if frame["method"] == "ping" && frame["params"].get("lastSeq").is_some() {
            break frame;
        }
        conn.pong(&frame).await;
    };
    assert_eq!(ping["params"], json!({"lastSeq":7}));
    conn.pong(&ping).await;

    conn.kill();
    assert_eq!(next_event(&mut events).await, Event::Reconnecting);
    let mut conn = mock.next().await;
    let connect = conn.recv().await;
    assert_eq!(connect["method"], "connect");
    assert_eq!(connect["params"]["lastSeq"], 7);
    // A server that replays too much: what was handled is not handled twice.
    conn.send(signal("b", 7)).await;
    conn.send(signal("c", 9)).await;
    conn.reply(
        &connect,
        json!({"value":"reconnection successful","sessionId":"rpc1","recovered":true,"replayed":2}),
    )
    .await;
    conn.send(signal("d", 10)).await;
    assert_eq!(data(next_event(&mut events).await), "c");
    assert_eq!(next_event(&mut events).await, Event::Reconnected { recovered: Some(true), replayed: 2 });
    assert_eq!(data(next_event(&mut events).await), "d");
    // The first ping of the new socket carries both the interval and the last seq.
    let ping = conn.recv().await;
    assert_eq!(ping["params"], json!({"interval":100,"lastSeq":10}));
}
