//! Bad input gets a precise error; the socket stays usable where the protocol allows, and other
//! participants never notice.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Peer, TestServer, WAIT};

/// Sends `text` and returns the error response.
async fn error_for(p: &mut Peer, text: &str) -> serde_json::Value {
    p.send_text(text).await;
    let f = p.read_frame().await.expect("an answer");
    assert_eq!(f["jsonrpc"], "2.0", "{f}");
    f
}

#[tokio::test]
async fn malformed_frames_get_json_rpc_errors_and_the_socket_stays_usable() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut watcher = s.join("S1", "watcher").await;
    let mut p = s.join("S1", "p").await;
    let _ = watcher.notification("participantJoined").await;

    let f = error_for(&mut p, "this is not json").await;
    assert_eq!(f["id"], json!(null));
    assert_eq!(f["error"]["code"], -32700);
    assert!(f["error"]["message"].as_str().unwrap().contains("not valid JSON"), "{f}");

    let f = error_for(&mut p, "[1,2,3]").await;
    assert_eq!(f["error"]["code"], -32600);

    let f = error_for(&mut p, r#"{"method":"ping","id":7}"#).await;
    assert_eq!(f["id"], 7);
    assert_eq!(f["error"]["code"], -32600);
    assert!(f["error"]["message"].as_str().unwrap().contains("jsonrpc"), "{f}");

    let f = error_for(&mut p, r#"{"jsonrpc":"2.0","id":8}"#).await;
    assert_eq!((f["id"].clone(), f["error"]["code"].clone()), (json!(8), json!(-32600)));

    p.send_message(Message::Binary(vec![1u8, 2, 3].into())).await;
    let f = p.read_frame().await.unwrap();
    assert_eq!(f["error"]["code"], -32600);
    assert!(f["error"]["message"].as_str().unwrap().contains("binary"), "{f}");

    // Still usable, and the watcher saw nothing.
    p.signal(&[], "fine", "signal:chat").await.unwrap();
    assert_eq!(watcher.notification("sendMessage").await["data"], "fine");
    watcher.no_notification("participantLeft").await;
}

#[tokio::test]
async fn wrong_or_missing_params_name_the_problem() {
    let s = TestServer::start().await;
    s.create_session("S1").await;
    let mut p = Peer::open(&s.url, "S1").await;
    let e = p.call("joinRoom", Some(json!({"session": "S1"}))).await.unwrap_err();
    assert_eq!(e["code"], -1);
    assert!(e["message"].as_str().unwrap().contains("`token`"), "{e}");
    let e = p.call("joinRoom", Some(json!({"token": 5, "session": "S1"}))).await.unwrap_err();
    assert_eq!(e["code"], -1);
    assert!(e["message"].as_str().unwrap().contains("joinRoom"), "{e}");
    let e = p.call("ping", Some(json!({"interval": "soon"}))).await.unwrap_err();
    assert_eq!(e["code"], -1);
    let e = p.call("connect", None).await.unwrap_err();
    assert_eq!(e["code"], -1);
}

#[tokio::test]
async fn bad_signals_get_600_or_601_and_deliver_nothing() {
    let s = TestServer::start_with(|c| c.max_signal_bytes = 100).await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut b = s.join("S1", "b").await;
    let cases = [
        (json!({"message": "not json"}), 600),
        (json!({"message": "[1]"}), 600),
        (json!({"message": r#"{"to":"con_x"}"#}), 600),
        (json!({"message": r#"{"data":{"a":1}}"#}), 600),
        (json!({"message": r#"{"to":[null]}"#}), 601),
        (json!({"message": r#"{"to":["con_unknown"]}"#}), 601),
        (json!({"message": format!(r#"{{"data":"{}"}}"#, "x".repeat(101))}), 600),
        (json!({"message": {"data": "an object, not a string"}}), 600),
        (json!({}), 600),
    ];
    for (params, code) in cases {
        let e = a.call("sendMessage", Some(params.clone())).await.unwrap_err();
        assert_eq!(e["code"], code, "{params}: {e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let e =
        a.call("sendMessage", Some(json!({"message": format!(r#"{{"data":"{}"}}"#, "x".repeat(101))}))).await;
    assert!(e.unwrap_err()["message"].as_str().unwrap().contains("limit of 100 bytes"));
    b.no_notification("sendMessage").await;
    a.no_notification("sendMessage").await;
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_socket_with_1009() {
    let s = TestServer::start_with(|c| c.max_frame_bytes = 4096).await;
    s.create_session("S1").await;
    let mut a = s.join("S1", "a").await;
    let mut big = s.join("S1", "big").await;
    let _ = a.notification("participantJoined").await;
    let message = json!({"data": "x".repeat(10_000)}).to_string();
    big.send_text(
        json!({"jsonrpc":"2.0","method":"sendMessage","params":{"message": message},"id":99}).to_string(),
    )
    .await;
    assert_eq!(big.close_code(WAIT).await, Some(1009));
    // Nobody else noticed: signals still flow.
    a.signal(&[], "ok", "signal:chat").await.unwrap();
    assert_eq!(a.notification("sendMessage").await["data"], "ok");
}

/// `/openvidu` takes only a WebSocket upgrade (RFC 6455 §4.2.1); anything else is refused with
/// what is missing, and a good upgrade gets the accept key of its own key.
#[tokio::test]
async fn a_request_that_is_not_a_websocket_upgrade_is_refused_with_what_is_missing() {
    let s = TestServer::start().await;
    let url = format!("{}/openvidu", s.url);
    let upgrade = |r: reqwest::RequestBuilder| {
        r.header("Connection", "keep-alive, Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("upgrade"));
    let r = upgrade(s.http.post(&url)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = s
        .http
        .get(&url)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "8")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Sec-WebSocket-Version"));
    let r = upgrade(s.http.get(&url)).send().await.unwrap();
    assert_eq!(r.status(), 101);
    // RFC 6455 §1.3's example key and its accept key.
    assert_eq!(r.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
