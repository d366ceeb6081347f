//! Requests and replies between two Rust participants (`Session::request`, `Session::handle`),
//! against the real server: every error path, and many requests at once.

use std::time::Duration;

use futures_util::future::join_all;
use signalroom_client::{Error, Event, Request, RequestFailure};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

fn failure(result: Result<String, Error>) -> (RequestFailure, String) {
    match result {
        Err(Error::Request { failure, message, .. }) => (failure, message),
        other => panic!("expected a failed request, got {other:?}"),
    }
}

#[tokio::test]
async fn requests_get_replies_and_each_failure_says_why() {
    let ts = TestServer::start().await;
    let (alice, _alice_events) = ts.join("room", "alice").await;
    let (bob, _bob_events) = ts.join("room", "bob").await;
    let bob_id = bob.connection_id().clone();
    let alice_id = alice.connection_id().clone();
    bob.handle("upper", move |r: Request| {
        let alice_id = alice_id.clone();
        async move {
            assert_eq!(r.caller.connection_id, alice_id);
            Ok(r.payload.to_uppercase())
        }
    });
    bob.handle("fail", |_| async { Err("ValueError: broken".to_owned()) });
    bob.handle("big", |_| async { Ok("x".repeat(100_000)) });
    bob.handle("slow", |_| std::future::pending());

    assert_eq!(alice.request(&bob_id, "upper", "héllo \"q\"", WAIT).await.unwrap(), "HÉLLO \"Q\"");
    assert_eq!(
        failure(alice.request(&bob_id, "fail", "", WAIT).await),
        (RequestFailure::HandlerFailed, "ValueError: broken".into())
    );
    assert_eq!(failure(alice.request(&bob_id, "nope", "", WAIT).await).0, RequestFailure::NoHandler);
    assert_eq!(failure(alice.request(&bob_id, "big", "", WAIT).await).0, RequestFailure::ReplyTooBig);
    let timed_out = alice.request(&bob_id, "slow", "", Duration::from_millis(200)).await;
    assert!(timed_out.as_ref().is_err_and(|e| e.is_transient()), "{timed_out:?}");
    assert_eq!(failure(timed_out).0, RequestFailure::Timeout);

    // Many at once, from both sides.
    let alice_id = alice.connection_id().clone();
    alice.handle("double", |r: Request| async move { Ok(format!("{}{}", r.payload, r.payload)) });
    let asks = (0..100).map(|i| {
        let (alice, bob_id) = (alice.clone(), bob_id.clone());
        async move { alice.request(&bob_id, "upper", &format!("n{i}"), WAIT).await.unwrap() }
    });
    let back = (0..100).map(|i| {
        let (bob, alice_id) = (bob.clone(), alice_id.clone());
        async move { bob.request(&alice_id, "double", &i.to_string(), WAIT).await.unwrap() }
    });
    let (asks, back) = tokio::join!(join_all(asks), join_all(back));
    assert_eq!(asks, (0..100).map(|i| format!("N{i}")).collect::<Vec<_>>());
    assert_eq!(back, (0..100).map(|i| format!("{i}{i}")).collect::<Vec<_>>());

    // A request too big for a signal is refused before sending.
    assert!(matches!(
        alice.request(&bob_id, "upper", &"x".repeat(60_000), WAIT).await,
        Err(Error::Invalid(signalroom_core::Error::FrameTooLarge { .. }))
    ));
}

#[tokio::test]
async fn the_target_leaving_fails_the_request_and_requests_never_reach_the_events() {
    let ts = TestServer::start().await;
    let (alice, mut alice_events) = ts.join("room", "alice").await;
    let (bob, mut bob_events) = ts.join("room", "bob").await;
    let bob_id = bob.connection_id().clone();
    assert!(
        matches!(next_event(&mut alice_events).await, Event::ConnectionCreated(c) if c.connection_id == bob_id)
    );
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started = std::sync::Mutex::new(Some(started_tx));
    bob.handle("slow", move |_| {
        if let Some(tx) = started.lock().unwrap().take() {
            let _ = tx.send(());
        }
        std::future::pending()
    });
    let asking = tokio::spawn({
        let (alice, bob_id) = (alice.clone(), bob_id.clone());
        async move { alice.request(&bob_id, "slow", "", Duration::from_secs(30)).await }
    });
    started_rx.await.unwrap();
    bob.disconnect().await.unwrap();
    assert_eq!(failure(asking.await.unwrap()).0, RequestFailure::TargetLeft);
    assert_eq!(failure(alice.request(&bob_id, "slow", "", WAIT).await).0, RequestFailure::TargetLeft);
    // Neither side saw the request or the reply signals as events.
    while let Ok(event) = bob_events.try_recv() {
        assert!(!matches!(event, Event::Signal(_)), "{event:?}");
    }
    while let Ok(event) = alice_events.try_recv() {
        assert!(!matches!(event, Event::Signal(_)), "{event:?}");
    }
}
