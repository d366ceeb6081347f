//! The signal hook: asked before a signal of a type it covers is delivered; it allows, refuses
//! (the sender's `sendMessage` fails with its reason; REST gets 403) or rewrites; a hook that is
//! down or slow fails open or closed as configured; a sender's signals keep their order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use signalroom_server::hook::{HookDecision, HookFn, HookRequest, HookTarget, SignalHookConfig};

use crate::redis_support::{TestCluster, free_port};
use crate::support::TestServer;

fn function(f: impl Fn(HookRequest) -> HookDecision + Send + Sync + 'static) -> HookFn {
    let f = Arc::new(f);
    Arc::new(move |request| {
        let f = Arc::clone(&f);
        Box::pin(async move { Ok(f(request)) })
    })
}

/// A moderator: refuses "spam", replaces "darn", sends "whisper …" to its sender only.
fn moderator(request: HookRequest) -> HookDecision {
    let data = request.data.clone().unwrap_or_default();
    if data.contains("spam") {
        HookDecision::refuse("no spam here")
    } else if data.contains("darn") {
        HookDecision { data: Some(data.replace("darn", "****")), ..HookDecision::allow() }
    } else if data.starts_with("whisper") {
        HookDecision { to: Some(vec![request.from.clone().unwrap()]), ..HookDecision::allow() }
    } else {
        HookDecision::allow()
    }
}

fn with_hook(target: HookTarget, types: &[&str], timeout_ms: u64, fail_open: bool) -> SignalHookConfig {
    let mut config = SignalHookConfig::new(target);
    config.types = types.iter().map(|t| (*t).to_owned()).collect();
    config.timeout = Duration::from_millis(timeout_ms);
    config.fail_open = fail_open;
    config
}

#[tokio::test]
async fn the_hook_allows_refuses_and_rewrites() {
    let s = TestServer::start_with(|c| {
        c.signal_hook = Some(with_hook(HookTarget::Function(function(moderator)), &["chat"], 1000, false));
    })
    .await;
    s.create_session("K1").await;
    let mut a = s.join("K1", "a").await;
    let mut b = s.join("K1", "b").await;
    a.signal(&[], "hello", "signal:chat").await.unwrap();
    assert_eq!(b.notification("sendMessage").await["data"], "hello");

    let refused = a.signal(&[], "buy spam", "signal:chat").await.unwrap_err();
    assert_eq!((refused["code"].as_i64(), refused["message"].as_str()), (Some(602), Some("no spam here")));

    a.signal(&[], "darn it", "signal:chat").await.unwrap();
    assert_eq!(b.notification("sendMessage").await["data"], "**** it");

    a.signal(&[], "whisper to me", "signal:chat").await.unwrap();
    for expected in ["hello", "**** it", "whisper to me"] {
        assert_eq!(a.notification("sendMessage").await["data"], expected);
    }
    // b got neither the refused nor the whispered one.
    b.no_notification("sendMessage").await;

    // REST: refused with 403 and the reason; rewritten.
    let (status, body) = s.post("/signal", json!({"session": "K1", "data": "spam", "type": "chat"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "no spam here");
    let (status, _) =
        s.post("/signal", json!({"session": "K1", "data": "darn", "type": "signal:chat"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b.notification("sendMessage").await["data"], "****");

    let metrics = s.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"signalroom_signal_hook_decisions_total{decision="refused"} 2"#,
        r#"signalroom_signal_hook_decisions_total{decision="rewritten"} 3"#,
        r#"signalroom_signal_hook_decisions_total{decision="allowed"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}

#[tokio::test]
async fn other_types_skip_the_hook() {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let s = TestServer::start_with(move |c| {
        let counter = Arc::clone(&counter);
        let hook = function(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            HookDecision::refuse("chat is closed")
        });
        c.signal_hook = Some(with_hook(HookTarget::Function(hook), &["chat"], 1000, false));
    })
    .await;
    s.create_session("K2").await;
    let mut a = s.join("K2", "a").await;
    let mut b = s.join("K2", "b").await;
    for kind in ["signal:cursor", "signal", "signal:chatty"] {
        a.signal(&[], "x", kind).await.unwrap();
        assert_eq!(b.notification("sendMessage").await["type"], kind);
    }
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    assert!(a.signal(&[], "x", "signal:chat").await.is_err());
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_slow_hook_keeps_each_senders_order() {
    // The first signals wait longest: a hook answering in any order must not reorder them.
    let hook: HookFn = Arc::new(|request: HookRequest| {
        Box::pin(async move {
            let n: u64 =
                request.data.as_deref().and_then(|d| d.strip_prefix("c")).unwrap_or("0").parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(100u64.saturating_sub(n * 10))).await;
            Ok(HookDecision::allow())
        })
    });
    let s = TestServer::start_with(move |c| {
        c.signal_hook = Some(with_hook(HookTarget::Function(Arc::clone(&hook)), &["chat"], 2000, false));
    })
    .await;
    s.create_session("K3").await;
    let mut a = s.join("K3", "a").await;
    let mut b = s.join("K3", "b").await;
    // Chat (through the hook) and cursor (not) interleaved, sent without waiting.
    let mut sent = Vec::new();
    let params: Vec<_> = (0..10)
        .flat_map(|i| {
            sent.push(format!("c{i}"));
            sent.push(format!("k{i}"));
            [
                json!({"message": json!({"to": [], "data": format!("c{i}"), "type": "signal:chat"}).to_string()}),
                json!({"message": json!({"to": [], "data": format!("k{i}"), "type": "signal:cursor"}).to_string()}),
            ]
        })
        .collect();
    let ids = a.requests("sendMessage", params).await;
    for id in ids {
        a.response(id).await.expect("sent");
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        got.push(b.notification("sendMessage").await["data"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, sent);
}

#[tokio::test]
async fn a_hook_that_times_out_fails_closed_or_open() {
    let never: HookFn = Arc::new(|_| Box::pin(std::future::pending()));
    for fail_open in [false, true] {
        let never = Arc::clone(&never);
        let s = TestServer::start_with(move |c| {
            c.signal_hook = Some(with_hook(HookTarget::Function(Arc::clone(&never)), &[], 200, fail_open));
        })
        .await;
        s.create_session("K4").await;
        let mut a = s.join("K4", "a").await;
        let mut b = s.join("K4", "b").await;
        let sent = a.signal(&[], "waiting", "signal:chat").await;
        let (status, _) = s.post("/signal", json!({"session": "K4", "data": "rest", "type": "chat"})).await;
        if fail_open {
            sent.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(b.notification("sendMessage").await["data"], "waiting");
            assert_eq!(b.notification("sendMessage").await["data"], "rest");
        } else {
            let err = sent.unwrap_err();
            assert_eq!(err["code"], 602);
            assert!(err["message"].as_str().unwrap().contains("signal hook is unavailable"), "{err}");
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            b.no_notification("sendMessage").await;
        }
        let metrics = s.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
        let decision = if fail_open { "failed_open" } else { "failed_closed" };
        let line = format!(r#"signalroom_signal_hook_decisions_total{{decision="{decision}"}} 2"#);
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
}

#[tokio::test]
async fn an_http_hook_that_is_down_fails_closed_or_open() {
    let url: url::Url = format!("http://127.0.0.1:{}/hook", free_port()).parse().unwrap();
    for fail_open in [false, true] {
        let target = HookTarget::Http { url: url.clone(), headers: Vec::new() };
        let s = TestServer::start_with(move |c| {
            c.signal_hook = Some(with_hook(target.clone(), &[], 1000, fail_open))
        })
        .await;
        s.create_session("K5").await;
        let mut a = s.join("K5", "a").await;
        let sent = a.signal(&[], "anyone?", "signal:chat").await;
        assert_eq!(sent.is_ok(), fail_open, "{sent:?}");
    }
}

#[tokio::test]
async fn an_http_hook_is_posted_the_signal_with_its_headers_and_decides() {
    use axum::routing::post;
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<serde_json::Value>| {
            let seen_tx = seen_tx.clone();
            async move {
                let auth =
                    headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let _ = seen_tx.send((auth, body.clone()));
                if body["data"] == "bad" {
                    axum::Json(json!({"allow": false, "reason": "bad word"}))
                } else {
                    axum::Json(json!({"data": format!("{}!", body["data"].as_str().unwrap_or(""))}))
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: url::Url = format!("http://{}/hook", listener.local_addr().unwrap()).parse().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let target =
        HookTarget::Http { url, headers: vec![("Authorization".into(), "Bearer hook-secret".into())] };
    let s = TestServer::start_with(move |c| {
        c.signal_hook = Some(with_hook(target.clone(), &["chat"], 2000, false))
    })
    .await;
    s.create_session("K6").await;
    let mut a = s.join("K6", "a").await;
    let mut b = s.join("K6", "b").await;
    let bid = b.connection_id.clone();
    a.signal(&[&bid], "hi", "signal:chat").await.unwrap();
    assert_eq!(b.notification("sendMessage").await["data"], "hi!");
    let (auth, body) = seen.recv().await.unwrap();
    assert_eq!(auth, "Bearer hook-secret");
    assert_eq!(
        body,
        json!({"sessionId": "K6", "from": a.connection_id, "to": [bid], "type": "chat", "data": "hi"})
    );
    let err = a.signal(&[], "bad", "signal:chat").await.unwrap_err();
    assert_eq!(err["message"], "bad word");
}

#[tokio::test]
async fn the_hook_works_through_several_nodes() {
    let c = TestCluster::start_with(2, |c| {
        c.signal_hook = Some(with_hook(HookTarget::Function(function(moderator)), &["chat"], 1000, false));
    })
    .await;
    let (n1, n2) = (c.node(0), c.node(1));
    n1.create_session("K7").await;
    let mut a = n1.join("K7", "a").await;
    let (token, _) = n1.connection("K7", json!({})).await;
    let mut b = crate::support::Peer::open(&n2.url, "K7").await;
    b.join(&token, "K7", "b").await.unwrap();
    assert_eq!(a.signal(&[], "spam", "signal:chat").await.unwrap_err()["message"], "no spam here");
    a.signal(&[], "darn", "signal:chat").await.unwrap();
    assert_eq!(b.notification("sendMessage").await["data"], "****");
    b.no_notification("sendMessage").await;
}
