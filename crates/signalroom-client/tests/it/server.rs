//! Against the real signalroom server, started in-process.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use signalroom_client::{
    ApiOptions, ConnectOptions, ConnectionId, ConnectionOptions, ConnectionStatus, EndReason, Error, Event,
    Role, ServerApi, Session, SessionState, Signal, SignalEvent, SignalHistory,
};

use crate::support::*;

fn chat(data: &str) -> Signal {
    Signal::broadcast("chat", data).unwrap()
}

fn to(ids: &[&ConnectionId], data: &str) -> Signal {
    Signal::new(data, Some("chat"), ids.iter().map(|id| (*id).clone()).collect()).unwrap()
}

async fn next_signal_event(events: &mut signalroom_client::EventReceiver) -> SignalEvent {
    match next_event(events).await {
        Event::Signal(s) => s,
        other => panic!("expected a signal, got {other:?}"),
    }
}

#[tokio::test]
async fn join_reports_everybody_with_full_metadata() {
    let ts = TestServer::start().await;
    let (alice, mut alice_events) = ts.join("room", "alice-server").await;
    let token = ts.token("room", "bob-server").await;
    let (bob, mut bob_events) =
        Session::connect_with(&token, fast().with_metadata("bob-client")).await.expect("bob joins");
    assert_eq!(bob.connection().data, "bob-client%/%bob-server");
    assert_eq!(alice.connection().data, "alice-server");
    assert_eq!(bob.session_id().as_str(), "room");
    assert_eq!(bob.role(), Role::Publisher);
    assert_eq!(bob.state(), SessionState::Connected);

    // Bob: self first, then alice.
    assert_eq!(next_event(&mut bob_events).await, Event::ConnectionCreated(bob.connection()));
    assert_eq!(next_event(&mut bob_events).await, Event::ConnectionCreated(alice.connection()));
    // Alice: bob, with the same join time and metadata bob sees for himself.
    assert_eq!(next_event(&mut alice_events).await, Event::ConnectionCreated(bob.connection()));
    assert_eq!(alice.remote_connections(), vec![bob.connection()]);
    assert_eq!(bob.remote_connections(), vec![alice.connection()]);
    assert!(bob.connection().created_at > 0);

    // REST agrees.
    let c = ts.api.get_connection("room", bob.connection_id()).await.unwrap();
    assert_eq!(c.status, ConnectionStatus::Active);
    assert_eq!(c.client_data.as_deref(), Some("bob-client"));
    assert_eq!(c.platform.as_deref(), Some(signalroom_client::default_platform().as_str()));
}

#[tokio::test]
async fn broadcast_and_targeted_signals() {
    let ts = TestServer::start().await;
    let (alice, mut alice_events) = ts.join("room", "alice").await;
    let (bob, mut bob_events) = ts.join("room", "bob").await;
    next_event(&mut bob_events).await; // alice
    next_event(&mut alice_events).await; // bob

    // A broadcast reaches everybody, the sender included.
    alice.signal(chat("hello all")).await.unwrap();
    for events in [&mut alice_events, &mut bob_events] {
        let s = next_signal_event(events).await;
        assert_eq!((s.data.as_str(), s.kind.as_str()), ("hello all", "signal:chat"));
        assert_eq!(s.from, Some(alice.connection()));
    }

    // A targeted signal reaches only its recipients.
    alice.signal(to(&[bob.connection_id()], "just bob")).await.unwrap();
    let s = next_signal_event(&mut bob_events).await;
    assert_eq!(s.data, "just bob");
    assert_eq!(s.from_id(), Some(alice.connection_id()));
    // ... and to oneself too.
    bob.signal(to(&[bob.connection_id(), alice.connection_id()], "both")).await.unwrap();
    assert_eq!(next_signal_event(&mut alice_events).await.data, "both");
    assert_eq!(next_signal_event(&mut bob_events).await.data, "both");
    expect_no_event(&mut alice_events, Duration::from_millis(100)).await;

    // No type: openvidu-browser's `signal:signal`.
    alice.signal(Signal::new("untyped", None, vec![]).unwrap()).await.unwrap();
    let s = next_signal_event(&mut bob_events).await;
    assert_eq!((s.kind.as_str(), s.user_type()), ("signal:signal", "signal"));
}

#[tokio::test]
async fn subscriptions_filter_by_type() {
    let ts = TestServer::start().await;
    let (alice, _alice_events) = ts.join("room", "alice").await;
    let mut chat_sub = alice.subscribe("signal:chat");
    let mut all = alice.subscribe("signal");
    let mut bare = alice.subscribe("chat");
    alice.signal(Signal::broadcast("other", "o1").unwrap()).await.unwrap();
    alice.signal(chat("c1")).await.unwrap();
    alice.signal(Signal::broadcast("signal:chat", "c2").unwrap()).await.unwrap();
    assert_eq!(next_signal(&mut chat_sub).await.data, "c1");
    assert_eq!(next_signal(&mut chat_sub).await.data, "c2");
    let kinds: Vec<String> = (&mut all).take(3).map(|s| s.kind).collect().await;
    assert_eq!(kinds, ["signal:other", "signal:chat", "signal:chat"]);
    assert!(bare.drain().is_empty());
    // Subscriptions end with the session.
    alice.disconnect().await.unwrap();
    assert!(chat_sub.next().await.is_none());
}

#[tokio::test]
async fn a_thousand_signals_arrive_in_order() {
    let ts = TestServer::start().await;
    let (alice, _alice_events) = ts.join("room", "alice").await;
    let (_bob, mut bob_events) = ts.join("room", "bob").await;
    next_event(&mut bob_events).await; // alice
    let mut mine = alice.subscribe("signal:chat");
    // Pipelined: all 1,000 are queued before the first answer comes back.
    let results = join_all((0..1000).map(|i| alice.signal(chat(&i.to_string())))).await;
    assert!(results.iter().all(Result::is_ok));
    for i in 0..1000 {
        assert_eq!(next_signal_event(&mut bob_events).await.data, i.to_string());
        assert_eq!(next_signal(&mut mine).await.data, i.to_string());
    }
}

#[tokio::test]
async fn signals_go_out_in_call_order_whatever_order_their_futures_run_in() {
    let ts = TestServer::start().await;
    let (alice, _alice_events) = ts.join("room", "alice").await;
    let (_bob, mut bob_events) = ts.join("room", "bob").await;
    next_event(&mut bob_events).await; // alice
    let first = alice.signal(chat("first"));
    let second = alice.signal(chat("second"));
    let (r2, r1) = tokio::join!(second, first);
    assert!(r1.is_ok() && r2.is_ok());
    assert_eq!(next_signal_event(&mut bob_events).await.data, "first");
    assert_eq!(next_signal_event(&mut bob_events).await.data, "second");
}

#[tokio::test]
async fn server_sent_signals_have_no_sender() {
    let ts = TestServer::start().await;
    let (alice, mut alice_events) = ts.join("room", "alice").await;
    let (bob, mut bob_events) = ts.join("room", "bob").await;
    next_event(&mut bob_events).await;
    next_event(&mut alice_events).await;
    let mut alice_chat = alice.subscribe("signal:chat");

    ts.api.signal("room", "to everybody", Some("chat"), &[]).await.unwrap();
    for events in [&mut alice_events, &mut bob_events] {
        let s = next_signal_event(events).await;
        assert_eq!(
            (s.data.as_str(), s.kind.as_str(), s.from.is_none()),
            ("to everybody", "signal:chat", true)
        );
    }
    assert!(next_signal(&mut alice_chat).await.from.is_none());

    ts.api.signal("room", "to bob", Some("signal:chat"), &[bob.connection_id().clone()]).await.unwrap();
    assert_eq!(next_signal_event(&mut bob_events).await.data, "to bob");
    expect_no_event(&mut alice_events, Duration::from_millis(100)).await;

    // A type sent verbatim without the prefix fires only `signal` and the bare name.
    let request = signalroom_client::SignalRequest {
        session: "room".into(),
        to: None,
        kind: Some("bare".into()),
        data: Some("b".into()),
    };
    ts.api.send_signal(&request).await.unwrap();
    assert_eq!(next_signal_event(&mut alice_events).await.kind, "bare");
    assert!(alice_chat.drain().is_empty());
}

#[tokio::test]
async fn the_server_judges_the_data_size() {
    // A server configured with a larger frame and a signal limit: it judges the size.
    let ts = TestServer::start_with(|c| {
        c.max_signal_bytes = 64 * 1024;
        c.max_frame_bytes = 128 * 1024;
    })
    .await;
    let (alice, mut alice_events) = ts.join("room", "alice").await;
    let big = "x".repeat(50 * 1024);
    alice.signal(chat(&big)).await.unwrap();
    assert_eq!(next_signal_event(&mut alice_events).await.data.len(), big.len());
    // Over its limit, the server refuses with 600 and delivers nothing.
    match alice.signal(chat(&"x".repeat(64 * 1024 + 1))).await {
        Err(e @ Error::Rpc { method: "sendMessage", code: 600, .. }) => {
            assert!(e.to_string().contains("over the limit of 65536 bytes"), "{e}");
            assert!(!e.is_transient());
        }
        other => panic!("{other:?}"),
    }
    expect_no_event(&mut alice_events, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_signal_too_big_for_the_frame_the_server_announced_is_refused_before_sending() {
    // The default server announces OpenVidu's 50 KiB in its joinRoom answer.
    let ts = TestServer::start().await;
    let (alice, mut alice_events) = ts.join("room", "alice").await;
    assert_eq!(alice.max_frame_bytes(), 51_200);
    match alice.signal(chat(&"x".repeat(51_200))).await {
        Err(e @ Error::Invalid(signalroom_core::Error::FrameTooLarge { size, limit: 51_200 })) => {
            assert!(size > 51_200 && size < 51_400, "{size}");
            let text = e.to_string();
            assert!(text.contains("51200") && text.contains("send_text"), "{text}");
            assert!(!e.is_transient());
        }
        other => panic!("{other:?}"),
    }
    // Nothing was sent and the session is still up: the largest signal that fits goes through.
    let fits = "x".repeat(51_200 - 200);
    alice.signal(chat(&fits)).await.unwrap();
    assert_eq!(next_signal_event(&mut alice_events).await.data.len(), fits.len());
    assert_eq!(alice.state(), SessionState::Connected);

    // A server configured with larger frames says so; its clients use them.
    let ts = TestServer::start_with(|c| c.max_frame_bytes = 128 * 1024).await;
    let (alice, mut alice_events) = ts.join("room", "alice").await;
    assert_eq!(alice.max_frame_bytes(), 128 * 1024);
    alice.signal(chat(&"x".repeat(100_000))).await.unwrap();
    assert_eq!(next_signal_event(&mut alice_events).await.data.len(), 100_000);
}

#[tokio::test]
async fn unknown_recipients_are_refused_with_601() {
    let ts = TestServer::start().await;
    let (alice, mut alice_events) = ts.join("room", "alice").await;
    let nope = ConnectionId::from("con_nope");
    match alice.signal(to(&[alice.connection_id(), &nope], "x")).await {
        Err(e @ Error::Rpc { method: "sendMessage", code: 601, .. }) => assert!(!e.is_transient()),
        other => panic!("{other:?}"),
    }
    // Nothing was delivered, not even to the valid recipient.
    expect_no_event(&mut alice_events, Duration::from_millis(100)).await;
    // REST: 406.
    match ts.api.signal("room", "x", Some("chat"), &[nope]).await {
        Err(Error::Api { status: 406, .. }) => {}
        other => panic!("{other:?}"),
    }
    // The session goes on.
    alice.signal(chat("still here")).await.unwrap();
}

#[tokio::test]
async fn connections_come_and_go() {
    let ts = TestServer::start().await;
    let (alice, mut alice_events) = ts.join("room", "alice").await;
    let (bob, mut bob_events) = ts.join("room", "bob").await;
    next_event(&mut alice_events).await; // bob
    let bob_conn = bob.connection();
    bob.disconnect().await.unwrap();
    assert_eq!(next_event(&mut bob_events).await, Event::ConnectionCreated(alice.connection()));
    assert_eq!(
        next_event(&mut bob_events).await,
        Event::SessionDisconnected { reason: EndReason::Disconnect }
    );
    expect_closed(&mut bob_events).await;
    assert_eq!(
        next_event(&mut alice_events).await,
        Event::ConnectionDestroyed { connection: bob_conn, reason: EndReason::Disconnect }
    );
    assert!(alice.remote_connections().is_empty());
    assert!(matches!(
        bob.signal(chat("gone")).await,
        Err(Error::Disconnected { reason: EndReason::Disconnect })
    ));
}

#[tokio::test]
async fn forced_disconnect_through_rest() {
    let ts = TestServer::start().await;
    let (alice, mut alice_events) = ts.join("room", "alice").await;
    let (bob, mut bob_events) = ts.join("room", "bob").await;
    next_event(&mut alice_events).await;
    next_event(&mut bob_events).await;
    ts.api.delete_connection("room", bob.connection_id()).await.unwrap();
    assert_eq!(
        next_event(&mut bob_events).await,
        Event::SessionDisconnected { reason: EndReason::ForceDisconnectByServer }
    );
    expect_closed(&mut bob_events).await;
    assert_eq!(bob.state(), SessionState::Disconnected(EndReason::ForceDisconnectByServer));
    match next_event(&mut alice_events).await {
        Event::ConnectionDestroyed { connection, reason } => {
            assert_eq!(&connection.connection_id, bob.connection_id());
            assert_eq!(reason, EndReason::ForceDisconnectByServer);
        }
        other => panic!("{other:?}"),
    }
    // Alice sees bob's eviction only as connectionDestroyed; she stays.
    expect_no_event(&mut alice_events, Duration::from_millis(100)).await;
    alice.signal(chat("still here")).await.unwrap();
}

#[tokio::test]
async fn moderators_evict_with_force_disconnect() {
    let ts = TestServer::start().await;
    ts.api.create_session(Some("room")).await.unwrap();
    let opts = ConnectionOptions::default().with_role(Role::Moderator).with_data("mod");
    let token = ts.api.create_connection("room", &opts).await.unwrap().token;
    let (moderator, _m_events) = Session::connect_with(&token, fast()).await.unwrap();
    assert_eq!(moderator.role(), Role::Moderator);
    let (bob, mut bob_events) = ts.join("room", "bob").await;
    next_event(&mut bob_events).await;
    match bob.force_disconnect(moderator.connection_id()).await {
        Err(Error::Rpc { code: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    moderator.force_disconnect(bob.connection_id()).await.unwrap();
    assert_eq!(
        next_non_signal(&mut bob_events).await,
        Event::SessionDisconnected { reason: EndReason::ForceDisconnectByUser }
    );
}

#[tokio::test]
async fn closing_the_session_disconnects_everybody() {
    let ts = TestServer::start().await;
    let (_alice, mut alice_events) = ts.join("room", "alice").await;
    ts.api.close_session("room").await.unwrap();
    assert_eq!(
        next_non_signal(&mut alice_events).await,
        Event::SessionDisconnected { reason: EndReason::SessionClosedByServer }
    );
    assert!(matches!(ts.api.get_session("room").await, Err(Error::Api { status: 404, .. })));
}

#[tokio::test]
async fn invalid_and_used_tokens_are_refused() {
    let ts = TestServer::start().await;
    let token = ts.token("room", "alice").await;
    let (alice, _events) = Session::connect(&token).await.unwrap();
    // Single use.
    match Session::connect(&token).await {
        Err(Error::Rpc { method: "joinRoom", code: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Unknown token id in a known session.
    let forged = token.replace("token=tok_", "token=tok_X");
    assert!(matches!(Session::connect(&forged).await, Err(Error::Rpc { code: 401, .. })));
    // Unknown session.
    let base = ts.server().token_base();
    let unknown = format!("{base}?sessionId=nope&token=tok_AAAAAAAAAAAAAAAA");
    match Session::connect(&unknown).await {
        Err(e @ Error::Rpc { code: 202 | 401, .. }) => assert!(!e.is_transient()),
        other => panic!("{other:?}"),
    }
    // Not a token at all.
    assert!(matches!(Session::connect("tok_AAAAAAAAAAAAAAAA").await, Err(Error::Invalid(_))));
    alice.disconnect().await.unwrap();
}

#[tokio::test]
async fn reconnects_through_a_network_blip() {
    let mut proxy = Proxy::start().await;
    let ts =
        TestServer::start_with(|c| c.public_url = Some(format!("http://{}", proxy.addr).parse().unwrap()))
            .await;
    proxy.forward_to(ts.server().local_addr());
    let patient = || ConnectOptions::default().with_reconnect(Duration::from_millis(100), 50);
    let (alice, mut alice_events) = ts.join_with("room", "alice", patient()).await;
    let (bob, mut bob_events) = ts.join_with("room", "bob", patient()).await;
    next_event(&mut alice_events).await;
    next_event(&mut bob_events).await;

    proxy.cut();
    assert_eq!(next_event(&mut alice_events).await, Event::Reconnecting);
    assert_eq!(next_event(&mut bob_events).await, Event::Reconnecting);
    assert!(matches!(alice.state(), SessionState::Reconnecting));
    // A signal sent while the link is down waits for it.
    let waiting = tokio::spawn({
        let alice = alice.clone();
        async move { alice.signal(chat("after the blip")).await }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    proxy.restore().await;
    assert!(matches!(next_event(&mut alice_events).await, Event::Reconnected { .. }));
    assert!(matches!(next_event(&mut bob_events).await, Event::Reconnected { .. }));
    waiting.await.unwrap().unwrap();
    // (Bob may have missed it: notifications that fall while his link is down are dropped, as
    // OpenVidu does, and alice's link may come back first.)
    assert_eq!(next_signal_event(&mut alice_events).await.data, "after the blip");
    bob.signal(chat("and back")).await.unwrap();
    assert_eq!(next_signal_event(&mut alice_events).await.data, "and back");
    let s = loop {
        let s = next_signal_event(&mut bob_events).await;
        if s.data == "and back" {
            break s;
        }
    };
    assert_eq!(s.from, Some(bob.connection()));
    assert_eq!(alice.remote_connections(), vec![bob.connection()]);
}

#[tokio::test]
async fn a_reconnection_after_the_grace_period_is_refused() {
    let mut proxy = Proxy::start().await;
    let ts = TestServer::start_with(|c| {
        c.public_url = Some(format!("http://{}", proxy.addr).parse().unwrap());
        c.reconnection_grace = Duration::from_millis(200);
    })
    .await;
    proxy.forward_to(ts.server().local_addr());
    let opts = ConnectOptions::default().with_reconnect(Duration::from_millis(500), 10);
    let (_alice, mut events) = ts.join_with("room", "alice", opts).await;
    proxy.cut();
    assert_eq!(next_event(&mut events).await, Event::Reconnecting);
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.restore().await;
    // The server evicted us meanwhile: `connect` gets 40007.
    assert_eq!(
        next_event(&mut events).await,
        Event::SessionDisconnected { reason: EndReason::NetworkDisconnect }
    );
    expect_closed(&mut events).await;
}

#[tokio::test]
async fn a_server_gone_for_good_ends_the_session_after_the_attempts() {
    let mut proxy = Proxy::start().await;
    let ts =
        TestServer::start_with(|c| c.public_url = Some(format!("http://{}", proxy.addr).parse().unwrap()))
            .await;
    proxy.forward_to(ts.server().local_addr());
    let (alice, mut events) = ts.join("room", "alice").await;
    proxy.cut();
    let started = std::time::Instant::now();
    assert_eq!(next_event(&mut events).await, Event::Reconnecting);
    assert_eq!(
        next_event(&mut events).await,
        Event::SessionDisconnected { reason: EndReason::NetworkDisconnect }
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    expect_closed(&mut events).await;
    assert!(matches!(alice.signal(chat("x")).await, Err(Error::Disconnected { .. })));
}

#[tokio::test]
async fn server_shutdown_ends_the_session() {
    let mut ts = TestServer::start().await;
    let (_alice, mut events) = ts.join("room", "alice").await;
    ts.shutdown().await;
    // Our server tells its participants before it goes (OpenVidu's `openviduServerStopped`).
    assert_eq!(
        next_non_signal(&mut events).await,
        Event::SessionDisconnected { reason: EndReason::OpenviduServerStopped }
    );
    expect_closed(&mut events).await;
}

#[tokio::test]
async fn rest_sessions_and_connections() {
    let ts = TestServer::start().await;
    let api = &ts.api;
    let created = api.create_session(Some("lobby")).await.unwrap();
    assert_eq!(created.id, "lobby");
    // 409 is handled by returning the existing session.
    let again = api.create_session(Some("lobby")).await.unwrap();
    assert_eq!(again.created_at, created.created_at);
    let random = api.create_session(None).await.unwrap();
    assert!(random.id.as_str().starts_with("ses_"), "{}", random.id);

    let conn = api.create_connection("lobby", &ConnectionOptions::default().with_data("d")).await.unwrap();
    assert_eq!(conn.status, ConnectionStatus::Pending);
    assert_eq!(conn.server_data, "d");
    assert!(conn.token.starts_with("ws://"));
    let fetched = api.get_session("lobby").await.unwrap();
    assert_eq!(fetched.connections.content.len(), 1, "pending connections are listed");
    let ids: Vec<_> = api.list_sessions().await.unwrap().into_iter().map(|s| s.id).collect();
    assert!(ids.contains(&created.id) && ids.contains(&random.id));
    assert_eq!(api.list_connections("lobby").await.unwrap().len(), 1);
    assert_eq!(api.get_connection("lobby", &conn.id).await.unwrap().id, conn.id);

    // Errors carry the status and the server's message.
    match api.get_connection("lobby", "con_nope").await {
        Err(e @ Error::Api { status: 404, .. }) => assert!(!e.is_transient()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        api.create_connection("nope", &ConnectionOptions::default()).await,
        Err(Error::Api { status: 404, .. })
    ));
    assert!(
        matches!(api.signal("lobby", "x", None, &[]).await, Err(Error::Api { status: 406, .. })),
        "never joined"
    );
    match api.create_session(Some("bad id!")).await {
        Err(Error::Api { status: 400, message }) => assert!(!message.is_empty()),
        other => panic!("{other:?}"),
    }
    // OpenVidu's statuses for an unknown session differ per endpoint (spec §6.4).
    assert!(matches!(api.get_connection("nope", "con_x").await, Err(Error::Api { status: 400, .. })));
    assert!(matches!(api.delete_connection("nope", "con_x").await, Err(Error::Api { status: 400, .. })));
    assert!(matches!(api.list_connections("nope").await, Err(Error::Api { status: 404, .. })));
    assert!(matches!(api.signal("nope", "x", None, &[]).await, Err(Error::Api { status: 404, .. })));
    let wrong = ServerApi::new(ts.server().url(), "wrong").unwrap();
    assert!(matches!(wrong.list_sessions().await, Err(Error::Api { status: 401, .. })));

    // A deleted pending connection's token is dead.
    api.delete_connection("lobby", &conn.id).await.unwrap();
    assert!(matches!(Session::connect(&conn.token).await, Err(Error::Rpc { code: 401, .. })));
    api.close_session("lobby").await.unwrap();
    assert!(matches!(api.close_session("lobby").await, Err(Error::Api { status: 404, .. })));

    // Nobody listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let gone = ServerApi::new(&format!("http://{addr}"), SECRET).unwrap();
    assert!(matches!(gone.list_sessions().await, Err(e @ Error::Http(_)) if e.is_transient()));
}

#[tokio::test]
async fn wss_with_a_self_signed_certificate_needs_the_opt_in() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures");
    let ts = TestServer::start_with(|c| {
        c.tls = Some(signalroom_server::TlsConfig {
            cert: format!("{dir}/self-signed-cert.pem").into(),
            key: format!("{dir}/self-signed-key.pem").into(),
        });
    })
    .await;
    assert!(ts.server().url().starts_with("https://"));
    // The REST client refuses the certificate too, unless told.
    assert!(matches!(ts.api.create_session(Some("room")).await, Err(Error::Http(_))));
    let insecure = ApiOptions::default().with_accept_invalid_certs(true);
    let api = ServerApi::with_options(ts.server().url(), SECRET, insecure).unwrap();
    api.create_session(Some("room")).await.unwrap();
    let token = api.create_connection("room", &ConnectionOptions::default()).await.unwrap().token;
    assert!(token.starts_with("wss://"), "{token}");

    match Session::connect(&token).await {
        Err(e @ Error::Connect { .. }) => assert!(e.to_string().contains("certificate"), "{e}"),
        other => panic!("{other:?}"),
    }
    // The refused attempt did not consume the token.
    let (session, mut events) =
        Session::connect_with(&token, fast().with_accept_invalid_certs(true)).await.expect("joins over wss");
    next_event(&mut events).await;
    session.signal(chat("over tls")).await.unwrap();
    assert_eq!(next_signal_event(&mut events).await.data, "over tls");
}

#[tokio::test]
async fn a_late_joiner_that_asks_gets_the_history_first_then_live_signals() {
    let ts = TestServer::start().await;
    let setting = SignalHistory { size: 2, ttl_seconds: 0, types: vec!["chat".into()], max_bytes: 1 << 20 };
    ts.api.create_session_with(Some("kept"), Some(&setting)).await.unwrap();
    let (alice, _alice_events) = ts.join("kept", "alice").await;
    for i in 0..3 {
        alice.signal(chat(&format!("m{i}"))).await.unwrap();
    }
    alice.signal(Signal::broadcast("cursor", "not kept").unwrap()).await.unwrap();
    let token = ts.token("kept", "bob").await;
    let (bob, mut bob_events) = Session::connect_with(&token, fast().with_history(true)).await.unwrap();
    assert_eq!(next_event(&mut bob_events).await, Event::ConnectionCreated(bob.connection()));
    assert_eq!(next_event(&mut bob_events).await, Event::ConnectionCreated(alice.connection()));
    for data in ["m1", "m2"] {
        let s = next_signal_event(&mut bob_events).await;
        assert_eq!((s.data.as_str(), s.history, s.from.as_ref()), (data, true, Some(&alice.connection())));
    }
    alice.signal(chat("live")).await.unwrap();
    let live = next_signal_event(&mut bob_events).await;
    assert_eq!((live.data.as_str(), live.history), ("live", false));
    expect_no_event(&mut bob_events, Duration::from_millis(200)).await;

    // The back end reads the same; a client that does not ask gets none.
    let kept = ts.api.signal_history("kept", None, None).await.unwrap();
    let datas: Vec<_> = kept.iter().map(|e| e.data.as_deref().unwrap_or("")).collect();
    assert_eq!(datas, ["m2", "live"]);
    assert_eq!(ts.api.signal_history("kept", Some(1), None).await.unwrap().len(), 1);
    let (_carol, mut carol_events) = ts.join("kept", "carol").await;
    next_event(&mut carol_events).await; // alice
    next_event(&mut carol_events).await; // bob
    expect_no_event(&mut carol_events, Duration::from_millis(200)).await;
}
