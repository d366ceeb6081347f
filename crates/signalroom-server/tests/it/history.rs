//! Signal history (signalroom's extension): a session created with `signalHistory` keeps its last
//! broadcasts of the chosen types; a joiner that asks gets them in its join answer, then live
//! signals, none twice; the back end reads them over REST. Off unless asked for.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::redis_support::TestCluster;
use crate::support::{Peer, TestServer};

/// Joins like openvidu-browser, asking for the history when `history`; the join answer.
async fn join_asking(node: &TestServer, minter: &TestServer, session: &str, history: bool) -> (Peer, Value) {
    let (token, _) = minter.connection(session, json!({})).await;
    let mut peer = Peer::open(&node.url, session).await;
    peer.call("ping", Some(json!({"interval": 5000}))).await.expect("pong");
    let mut params = json!({"token": token, "session": session, "platform": "test", "sdkVersion": "2.32.2",
        "metadata": "", "secret": "", "recorder": false, "stt": false});
    if history {
        params["history"] = json!(true);
    }
    let answer = peer.call("joinRoom", Some(params)).await.expect("joins");
    peer.connection_id = answer["id"].as_str().unwrap().to_owned();
    peer.rpc_id = answer["sessionId"].as_str().unwrap().to_owned();
    (peer, answer)
}

fn datas(history: &Value) -> Vec<&str> {
    history
        .as_array()
        .unwrap_or_else(|| panic!("no history: {history}"))
        .iter()
        .map(|e| e["data"].as_str().unwrap())
        .collect()
}

async fn create_with_history(node: &TestServer, session: &str, history: Value) {
    let (status, body) =
        node.post("/sessions", json!({"customSessionId": session, "signalHistory": history})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["signalHistory"]["size"], history["size"], "echoed: {body}");
}

#[tokio::test]
async fn a_late_joiner_gets_exactly_the_last_n_of_the_chosen_types_in_order_then_live_ones() {
    let s = TestServer::start().await;
    create_with_history(&s, "H1", json!({"size": 3, "types": ["chat"]})).await;
    let mut a = s.join("H1", "a").await;
    let aid = a.connection_id.clone();
    for i in 0..5 {
        a.signal(&[], &format!("chat {i}"), "signal:chat").await.unwrap();
        a.signal(&[], &format!("cursor {i}"), "signal:cursor").await.unwrap();
    }
    a.signal(&[&aid], "to myself", "signal:chat").await.unwrap();
    let (status, _) =
        s.post("/signal", json!({"session": "H1", "data": "from the server", "type": "signal:chat"})).await;
    assert_eq!(status, StatusCode::OK);

    let (mut b, answer) = join_asking(&s, &s, "H1", true).await;
    let history = &answer["signalHistory"];
    assert_eq!(datas(history), ["chat 3", "chat 4", "from the server"]);
    assert_eq!(history[0]["from"], aid.as_str());
    assert_eq!(history[0]["type"], "signal:chat");
    assert!(history[2]["from"].is_null());
    let last_seq = history[2]["seq"].as_u64().unwrap();

    // Then live, each once, numbered after the history.
    a.signal(&[], "live", "signal:chat").await.unwrap();
    let live = b.notification_frame("sendMessage").await;
    assert_eq!(live["params"]["data"], "live");
    assert!(live["seq"].as_u64().unwrap() > last_seq, "{live}");
    b.no_notification("sendMessage").await;

    // A joiner that does not ask (openvidu-browser) gets OpenVidu's answer.
    let (_c, plain) = join_asking(&s, &s, "H1", false).await;
    assert!(plain.get("signalHistory").is_none(), "{plain}");
}

#[tokio::test]
async fn history_is_off_by_default() {
    let s = TestServer::start().await;
    s.create_session("H2").await;
    let (_, session) = s.get("/sessions/H2").await;
    assert!(session.get("signalHistory").is_none(), "{session}");
    let mut a = s.join("H2", "a").await;
    a.signal(&[], "said", "signal:chat").await.unwrap();
    let (_b, answer) = join_asking(&s, &s, "H2", true).await;
    assert_eq!(answer["signalHistory"], json!([]));
    let (status, page) = s.get("/sessions/H2/signals").await;
    assert_eq!((status, page), (StatusCode::OK, json!({"numberOfElements": 0, "content": []})));
}

#[tokio::test]
async fn a_server_wide_default_applies_to_sessions_without_a_setting() {
    let s = TestServer::start_with(|c| {
        c.signal_history =
            Some(signalroom_core::history::SignalHistory::from_value(&json!({"size": 2})).unwrap());
    })
    .await;
    s.create_session("H3").await;
    let mut a = s.join("H3", "a").await;
    for i in 0..3 {
        a.signal(&[], &format!("m{i}"), "signal:any").await.unwrap();
    }
    let (_, page) = s.get("/sessions/H3/signals").await;
    assert_eq!(datas(&page["content"]), ["m1", "m2"]);
}

#[tokio::test]
async fn rest_reads_the_history_with_limit_and_since_and_checks_its_input() {
    let s = TestServer::start().await;
    create_with_history(&s, "H4", json!({"size": 10, "ttlSeconds": 3600, "types": ["signal:chat"]})).await;
    let mut a = s.join("H4", "a").await;
    for i in 0..4 {
        a.signal(&[], &format!("m{i}"), "signal:chat").await.unwrap();
    }
    let (status, page) = s.get("/sessions/H4/signals").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["numberOfElements"], 4);
    assert_eq!(datas(&page["content"]), ["m0", "m1", "m2", "m3"]);
    let second = page["content"][1]["seq"].as_u64().unwrap();
    let (_, after) = s.get(&format!("/sessions/H4/signals?since={second}")).await;
    assert_eq!(datas(&after["content"]), ["m2", "m3"]);
    let (_, last) = s.get("/sessions/H4/signals?limit=1").await;
    assert_eq!(datas(&last["content"]), ["m3"]);
    assert_eq!(s.get("/sessions/H4/signals?limit=x").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(s.get("/sessions/nope/signals").await.0, StatusCode::NOT_FOUND);
    for bad in [
        json!({"size": 0}),
        json!({"size": 1, "types": "chat"}),
        json!("yes"),
        json!({"size": 1, "maxBytes": -1}),
    ] {
        let (status, body) = s.post("/sessions", json!({"signalHistory": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().contains("signalHistory"), "{body}");
    }
}

#[tokio::test]
async fn a_late_joiner_on_another_node_gets_the_history_then_live_ones() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    create_with_history(a, "H5", json!({"size": 5, "types": ["chat"]})).await;
    let mut x = a.join("H5", "x").await;
    // More operations than a snapshot interval: the other node starts from a snapshot.
    let n = 1100;
    let params: Vec<Value> = (0..n)
        .map(|i| {
            let kind = if i % 2 == 0 { "signal:chat" } else { "signal:other" };
            json!({"message": json!({"to": [], "data": format!("m{i}"), "type": kind}).to_string()})
        })
        .collect();
    let ids = x.requests("sendMessage", params).await;
    for id in ids {
        x.response(id).await.expect("sent");
    }
    let (mut y, answer) = join_asking(b, a, "H5", true).await;
    assert_eq!(datas(&answer["signalHistory"]), ["m1090", "m1092", "m1094", "m1096", "m1098"]);
    x.signal(&[], "live", "signal:chat").await.unwrap();
    assert_eq!(y.notification("sendMessage").await["data"], "live");
    y.no_notification("sendMessage").await;
    // Both nodes read the same history.
    let (_, on_a) = a.get("/sessions/H5/signals").await;
    let (_, on_b) = b.get("/sessions/H5/signals").await;
    assert_eq!(on_a, on_b);
    assert_eq!(datas(&on_b["content"]), ["m1092", "m1094", "m1096", "m1098", "live"]);
}
