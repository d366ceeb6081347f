//! Several nodes sharing one `redis-server` behave as one server (issue 8 §2): each test says
//! which node serves each REST call and each socket.
//!
//! Run with `SIGNALROOM_TEST_CLUSTER_SELFCHECK=1`, the in-process tests use one server for every
//! "node": a check of their own mechanics (the process and Redis tests then fail by design).

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::redis_support::{RedisProcess, TestCluster, subscribers};
use crate::support::{Peer, SECRET, TestServer, WAIT};

/// A node that dies must be gone for everybody within this bound (heartbeat TTL 6 s, reaper
/// every 3 s: at most about 9 s, plus margin for a loaded machine).
const NODE_DEATH_BOUND: Duration = Duration::from_secs(15);
/// How long nodes may take to serve again after Redis came back (reconnection with backoff).
const BROKER_RECOVERY: Duration = Duration::from_secs(20);

/// A participant of `session` joined on `node` with a token minted by `minter`.
async fn join_on(node: &TestServer, minter: &TestServer, session: &str, metadata: &str) -> Peer {
    let (token, cid) = minter.connection(session, json!({})).await;
    let mut peer = Peer::open(&node.url, session).await;
    let r = peer.join(&token, session, metadata).await.expect("joins");
    assert_eq!(r["id"], cid.as_str());
    peer
}

fn ids(session: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = session["connections"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no connections in {session}"))
        .iter()
        .map(|c| c["id"].as_str().expect("string id"))
        .collect();
    ids.sort_unstable();
    ids
}

/// Polls `GET path` on `node` until it answers `status`, for at most `wait`.
async fn eventually_status(node: &TestServer, path: &str, status: StatusCode, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (s, _) = node.get(path).await;
        if s == status {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "GET {path} still answers {s}, never {status}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---- REST ------------------------------------------------------------------------------------

#[tokio::test]
async fn a_session_created_on_one_node_is_read_patched_and_deleted_on_another() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    let (status, created) = a.post("/sessions", json!({"customSessionId": "S1"})).await;
    assert_eq!(status, StatusCode::OK, "{created}");

    let (status, got) = b.get("/sessions/S1").await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["createdAt"], created["createdAt"]);
    let (_, list) = b.get("/sessions").await;
    assert_eq!(list["numberOfElements"], 1, "{list}");
    assert_eq!(list["content"][0]["id"], "S1");

    // A connection made on B is seen, changed and deleted on A.
    let (token, cid) = b.connection("S1", json!({"data": "srv", "role": "SUBSCRIBER"})).await;
    let path = format!("/sessions/S1/connection/{cid}");
    let (status, conn) = a.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{conn}");
    assert_eq!(
        (conn["token"].as_str(), &conn["role"], &conn["status"]),
        (Some(token.as_str()), &json!("SUBSCRIBER"), &json!("pending"))
    );
    let (status, patched) = a.rest(Method::PATCH, &path, Some(json!({"role": "MODERATOR"}))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(b.get(&path).await.1["role"], "MODERATOR");
    assert_eq!(a.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_eq!(b.get(&path).await.0, StatusCode::NOT_FOUND);
    let mut p = Peer::open(&b.url, "S1").await;
    assert_eq!(p.join(&token, "S1", "").await.unwrap_err()["code"], 401, "a deleted connection's token");

    assert_eq!(b.delete("/sessions/S1").await.0, StatusCode::NO_CONTENT);
    assert_eq!(a.get("/sessions/S1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(a.get("/sessions").await.1["numberOfElements"], 0);
    a.create_session("S1").await;
}

#[tokio::test]
async fn a_custom_session_id_taken_on_one_node_is_409_on_another() {
    let c = TestCluster::start(2).await;
    c.node(0).create_session("S1").await;
    let (status, body) = c.node(1).post("/sessions", json!({"customSessionId": "S1"})).await;
    assert_eq!((status, body), (StatusCode::CONFLICT, Value::Null));
}

#[tokio::test]
async fn two_nodes_creating_one_custom_id_at_once_exactly_one_succeeds() {
    let c = TestCluster::start(2).await;
    for round in 0..10 {
        let id = format!("race{round}");
        let body = json!({"customSessionId": id});
        let (x, y) =
            tokio::join!(c.node(0).post("/sessions", body.clone()), c.node(1).post("/sessions", body));
        let mut statuses = [x.0, y.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "round {round}");
    }
}

// ---- tokens and joinRoom ---------------------------------------------------------------------

#[tokio::test]
async fn a_token_minted_on_one_node_joins_on_another_and_join_room_lists_every_node() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let mut alice = join_on(a, a, "S1", "alice").await;
    let (token, bob_id) = a.connection("S1", json!({"data": "srv"})).await;
    let mut bob = Peer::open(&b.url, "S1").await;
    let r = bob.join(&token, "S1", "bob").await.unwrap();
    assert_eq!(r["id"], bob_id.as_str());
    assert_eq!(r["metadata"], "bob%/%srv");
    let value = r["value"].as_array().unwrap();
    assert_eq!(value.len(), 1, "alice, on the other node: {r}");
    assert_eq!(value[0]["id"], alice.connection_id.as_str());
    assert_eq!(value[0]["metadata"], "alice");

    let joined = alice.notification("participantJoined").await;
    assert_eq!(joined, json!({"id": bob_id, "createdAt": r["createdAt"], "metadata": "bob%/%srv"}));
    // Both nodes list both participants as active.
    for node in [a, b] {
        let (_, s) = node.get("/sessions/S1").await;
        let mut want = vec![alice.connection_id.as_str(), bob_id.as_str()];
        want.sort_unstable();
        assert_eq!(ids(&s), want, "{s}");
        assert!(
            s["connections"]["content"].as_array().unwrap().iter().all(|c| c["status"] == "active"),
            "{s}"
        );
    }
    // A third, minted on B and joined on A, sees both.
    let mut carol = Peer::open(&a.url, "S1").await;
    let (token, _) = b.connection("S1", json!({})).await;
    assert_eq!(carol.join(&token, "S1", "carol").await.unwrap()["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_token_is_single_use_across_nodes() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let _stay = join_on(a, a, "S1", "stay").await;
    let (token, _) = a.connection("S1", json!({})).await;
    let mut first = Peer::open(&a.url, "S1").await;
    first.join(&token, "S1", "").await.unwrap();
    let mut again = Peer::open(&b.url, "S1").await;
    let e = again.join(&token, "S1", "").await.unwrap_err();
    assert_eq!(e["code"], 401, "{e}");
    // Still refused after the first one left.
    first.call("leaveRoom", Some(json!({}))).await.unwrap();
    let mut later = Peer::open(&b.url, "S1").await;
    assert_eq!(later.join(&token, "S1", "").await.unwrap_err()["code"], 401);
}

#[tokio::test]
async fn two_nodes_racing_to_consume_one_token_exactly_one_joins() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let _stay = join_on(a, a, "S1", "stay").await;
    let mut winners = Vec::new();
    for round in 0..10 {
        let (token, cid) = a.connection("S1", json!({})).await;
        let mut on_a = Peer::open(&a.url, "S1").await;
        let mut on_b = Peer::open(&b.url, "S1").await;
        let (x, y) = tokio::join!(on_a.join(&token, "S1", "a"), on_b.join(&token, "S1", "b"));
        match (x, y) {
            (Ok(r), Err(e)) | (Err(e), Ok(r)) => {
                assert_eq!(r["id"], cid.as_str(), "round {round}");
                assert_eq!(e["code"], 401, "round {round}: {e}");
            }
            (x, y) => panic!("round {round}: exactly one join must succeed: {x:?} {y:?}"),
        }
        winners.push((on_a, on_b));
    }
    let (_, s) = b.get("/sessions/S1").await;
    assert_eq!(s["connections"]["numberOfElements"], 11, "{s}");
}

// ---- notifications ---------------------------------------------------------------------------

#[tokio::test]
async fn leaving_evicting_and_patching_are_told_on_every_node() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let mut alice = join_on(a, a, "S1", "alice").await;
    let mut bob = join_on(b, a, "S1", "bob").await;
    let mut carol = join_on(b, b, "S1", "carol").await;
    assert_eq!(alice.notification("participantJoined").await["id"], bob.connection_id.as_str());
    assert_eq!(alice.notification("participantJoined").await["id"], carol.connection_id.as_str());

    // PATCH on A of a participant on B: told to that participant only.
    let path = format!("/sessions/S1/connection/{}", bob.connection_id);
    let (status, body) = a.rest(Method::PATCH, &path, Some(json!({"role": "MODERATOR"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        bob.notification("connectionPropertyChanged").await,
        json!({"property": "role", "newValue": "MODERATOR"})
    );
    alice.no_notification("connectionPropertyChanged").await;
    carol.no_notification("connectionPropertyChanged").await;

    // DELETE on A of a participant on B: evicted, and everybody is told.
    assert_eq!(a.delete(&path).await.0, StatusCode::NO_CONTENT);
    let ev = json!({"connectionId": bob.connection_id, "reason": "forceDisconnectByServer"});
    assert_eq!(bob.notification("participantEvicted").await, ev);
    for p in [&mut alice, &mut carol] {
        assert_eq!(p.notification("participantLeft").await, ev);
        assert_eq!(p.notification("participantEvicted").await, ev);
    }

    // leaveRoom on B: told on A.
    carol.call("leaveRoom", Some(json!({}))).await.unwrap();
    assert_eq!(
        alice.notification("participantLeft").await,
        json!({"connectionId": carol.connection_id, "reason": "disconnect"})
    );
    let (_, s) = b.get("/sessions/S1").await;
    assert_eq!(ids(&s), [alice.connection_id.as_str()], "{s}");
}

#[tokio::test]
async fn deleting_a_session_on_one_node_evicts_participants_of_every_node() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let mut alice = join_on(a, a, "S1", "alice").await;
    let mut bob = join_on(b, a, "S1", "bob").await;
    assert_eq!(alice.notification("participantJoined").await["id"], bob.connection_id.as_str());
    assert_eq!(b.delete("/sessions/S1").await.0, StatusCode::NO_CONTENT);
    // Evicted one by one in join order, as on one node.
    let ev_alice = json!({"connectionId": alice.connection_id, "reason": "sessionClosedByServer"});
    let ev_bob = json!({"connectionId": bob.connection_id, "reason": "sessionClosedByServer"});
    assert_eq!(alice.notification("participantEvicted").await, ev_alice);
    assert_eq!(bob.notification("participantLeft").await, ev_alice);
    assert_eq!(bob.notification("participantEvicted").await, ev_alice);
    assert_eq!(bob.notification("participantEvicted").await, ev_bob);
    alice.no_notification("participantEvicted").await;
    assert_eq!(a.get("/sessions/S1").await.0, StatusCode::NOT_FOUND);
}

// ---- signals ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_broadcast_reaches_every_node_including_the_sender() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let mut x = join_on(a, a, "S1", "x").await;
    let mut y = join_on(b, a, "S1", "y").await;
    let mut z = join_on(b, b, "S1", "z").await;
    for sender in 0..3 {
        let from = [&x, &y, &z][sender].connection_id.clone();
        let data = format!("from {sender}");
        let p = [&mut x, &mut y, &mut z].into_iter().nth(sender).unwrap();
        assert_eq!(p.signal(&[], &data, "signal:chat").await.unwrap(), json!({"sessionId": p.rpc_id}));
        let expected = json!({"data": data, "type": "signal:chat", "from": from});
        for p in [&mut x, &mut y, &mut z] {
            assert_eq!(p.notification("sendMessage").await, expected);
        }
    }
    for p in [&mut x, &mut y, &mut z] {
        p.no_notification("sendMessage").await;
    }
    // POST /signal on B reaches A's participant too, without `from`.
    let (status, _) = b.post("/signal", json!({"session": "S1", "data": "rest", "type": "note"})).await;
    assert_eq!(status, StatusCode::OK);
    for p in [&mut x, &mut y, &mut z] {
        assert_eq!(p.notification("sendMessage").await, json!({"data": "rest", "type": "note"}));
    }
}

#[tokio::test]
async fn targeted_signals_cross_nodes_and_reach_only_their_targets() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let mut x = join_on(a, a, "S1", "x").await;
    let mut y = join_on(b, a, "S1", "y").await;
    let mut z = join_on(b, b, "S1", "z").await;
    let (xid, yid, zid) = (x.connection_id.clone(), y.connection_id.clone(), z.connection_id.clone());

    x.signal(&[&zid], "x to z", "signal:chat").await.unwrap();
    assert_eq!(
        z.notification("sendMessage").await,
        json!({"data": "x to z", "type": "signal:chat", "from": xid})
    );
    z.signal(&[&xid], "z to x", "signal:chat").await.unwrap();
    assert_eq!(
        x.notification("sendMessage").await,
        json!({"data": "z to x", "type": "signal:chat", "from": zid})
    );
    // One on each node: each exactly once.
    y.signal(&[&xid, &zid, &xid], "y to x and z", "signal:chat").await.unwrap();
    assert_eq!(x.notification("sendMessage").await["data"], "y to x and z");
    assert_eq!(z.notification("sendMessage").await["data"], "y to x and z");
    let (status, _) = a.post("/signal", json!({"session": "S1", "to": [yid], "data": "rest to y"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(y.notification("sendMessage").await["data"], "rest to y");
    for p in [&mut x, &mut y, &mut z] {
        p.no_notification("sendMessage").await;
    }
}

#[tokio::test]
async fn the_to_check_sees_participants_of_every_node() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let mut x = join_on(a, a, "S1", "x").await;
    let mut y = join_on(b, a, "S1", "y").await;
    let yid = y.connection_id.clone();
    // Known on the other node only: accepted.
    x.signal(&[&yid], "ok", "signal:chat").await.unwrap();
    assert_eq!(y.notification("sendMessage").await["data"], "ok");
    // One unknown: the whole signal is refused, nobody gets it.
    let e = x.signal(&[&yid, "con_nope"], "no", "signal:chat").await.unwrap_err();
    assert_eq!(e["code"], 601, "{e}");
    assert!(e["message"].as_str().unwrap().contains("con_nope"), "{e}");
    // The same through REST on the other node.
    let (status, _) =
        b.post("/signal", json!({"session": "S1", "to": [x.connection_id, "con_nope"], "data": "no"})).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    // A participant who left is unknown everywhere.
    y.call("leaveRoom", Some(json!({}))).await.unwrap();
    assert_eq!(x.notification("participantLeft").await["connectionId"], yid.as_str());
    assert_eq!(x.signal(&[&yid], "gone", "signal:chat").await.unwrap_err()["code"], 601);
    x.no_notification("sendMessage").await;
    y.no_notification("sendMessage").await;
}

#[tokio::test]
async fn signals_keep_their_order_per_sender_across_nodes() {
    const N: usize = 200;
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let mut x = join_on(a, a, "S1", "x").await;
    let mut y = join_on(b, a, "S1", "y").await;
    let mut r = join_on(a, b, "S1", "r-on-a").await;
    let mut s = join_on(b, b, "S1", "s-on-b").await;
    let (xid, yid) = (x.connection_id.clone(), y.connection_id.clone());
    // x on A and y on B each pipeline N broadcasts, at the same time.
    tokio::join!(pipeline_broadcasts(&mut x, "x", N), pipeline_broadcasts(&mut y, "y", N));
    for p in [&mut r, &mut s, &mut x, &mut y] {
        let (mut from_x, mut from_y) = (Vec::new(), Vec::new());
        while from_x.len() + from_y.len() < 2 * N {
            let m = p.notification("sendMessage").await;
            let data = m["data"].as_str().unwrap().to_owned();
            if m["from"] == xid.as_str() {
                from_x.push(data);
            } else {
                assert_eq!(m["from"], yid.as_str(), "{m}");
                from_y.push(data);
            }
        }
        assert_eq!(from_x, (0..N).map(|i| format!("x{i}")).collect::<Vec<_>>());
        assert_eq!(from_y, (0..N).map(|i| format!("y{i}")).collect::<Vec<_>>());
    }
}

/// Many REST calls creating connections in one session at once, on every node, are each applied
/// once: nothing is refused for contention (no 503), and every token is distinct.
#[tokio::test]
async fn concurrent_connections_for_one_session_on_every_node_are_never_refused() {
    const N: usize = 300;
    let c = TestCluster::start(3).await;
    c.node(0).create_session("S").await;
    let calls = (0..N).map(|i| {
        let node = c.node(i % c.nodes.len());
        async move { node.post("/sessions/S/connection", json!({})).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    let mut tokens = std::collections::HashSet::new();
    for (status, body) in answers {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(tokens.insert(body["token"].as_str().unwrap().to_owned()), "a token minted twice");
    }
    let (_, session) = c.node(1).get("/sessions/S?pendingConnections=true").await;
    assert_eq!(ids(&session).len(), N, "every connection is in the session");
}

/// Joins of one session in flight at once on every node, as a crowd arriving: every one succeeds
/// (none refused for contention), each once, and every participant is told of everyone who
/// joined after it, in the same order on every node.
#[tokio::test]
async fn a_crowd_joining_one_session_across_nodes_is_never_refused() {
    const N: usize = 150;
    let c = TestCluster::start(3).await;
    c.node(0).create_session("S").await;
    let mut tokens = Vec::with_capacity(N);
    for i in 0..N {
        tokens.push(c.node(i % 3).connection("S", json!({})).await);
    }
    let joins = tokens.iter().enumerate().map(|(i, (token, cid))| {
        let node = c.node(i % 3);
        async move {
            let mut peer = Peer::open(&node.url, "S").await;
            let answer =
                peer.join(token, "S", &format!("p{i}")).await.unwrap_or_else(|e| panic!("join {i}: {e}"));
            assert_eq!(answer["id"], cid.as_str());
            let before: Vec<String> = answer["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned())
                .collect();
            (peer, before)
        }
    });
    let mut joined = futures_util::future::join_all(joins).await;
    // The order of the joins, as the last joiner's answer and the others' notifications tell it.
    let everyone: usize = joined.iter().map(|(_, before)| before.len()).max().unwrap();
    assert_eq!(everyone, N - 1, "the last joiner's answer lists everyone before it");
    for (peer, before) in &mut joined {
        let mut after = Vec::new();
        while before.len() + 1 + after.len() < N {
            let n = peer.notification("participantJoined").await;
            after.push(n["id"].as_str().unwrap().to_owned());
        }
        assert!(after.iter().all(|a| !before.contains(a)), "told of a join it was answered with");
    }
    let (_, session) = c.node(2).get("/sessions/S").await;
    assert_eq!(ids(&session).len(), N);
}

/// Sends `n` broadcasts `{tag}0`… without waiting for replies, then checks every reply.
async fn pipeline_broadcasts(p: &mut Peer, tag: &str, n: usize) {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let message = json!({"data": format!("{tag}{i}"), "type": "signal:seq"}).to_string();
        ids.push(p.request("sendMessage", Some(json!({"message": message}))).await);
    }
    for id in ids {
        p.response(id).await.unwrap();
    }
}

// ---- session lifetime ------------------------------------------------------------------------

#[tokio::test]
async fn the_last_participant_leaving_on_one_node_closes_the_session_for_all() {
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let (pending_token, _) = a.connection("S1", json!({})).await;
    let mut x = join_on(a, a, "S1", "x").await;
    let mut y = join_on(b, a, "S1", "y").await;
    x.call("leaveRoom", Some(json!({}))).await.unwrap();
    assert_eq!(b.get("/sessions/S1").await.0, StatusCode::OK, "y is still in");
    y.call("leaveRoom", Some(json!({}))).await.unwrap();
    assert_eq!(a.get("/sessions/S1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(b.get("/sessions/S1").await.0, StatusCode::NOT_FOUND);
    let mut p = Peer::open(&a.url, "S1").await;
    assert_eq!(p.join(&pending_token, "S1", "").await.unwrap_err()["code"], 202);
    // The id is free again, on either node.
    b.create_session("S1").await;
}

#[tokio::test]
async fn a_dropped_last_participant_closes_the_session_for_all_after_the_grace_period() {
    let c = TestCluster::start_with(2, |c| c.reconnection_grace = Duration::from_millis(200)).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S1").await;
    let y = join_on(b, a, "S1", "y").await;
    drop(y);
    eventually_status(a, "/sessions/S1", StatusCode::NOT_FOUND, WAIT).await;
}

#[tokio::test]
async fn never_joined_sessions_are_collected_across_nodes() {
    let c = TestCluster::start_with(2, |c| {
        c.session_gc_interval = Duration::from_millis(100);
        c.session_gc_threshold = Duration::from_millis(300);
    })
    .await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("idle").await;
    b.create_session("busy").await;
    // Joined on A, created on B: B's collector must not take it.
    let mut x = join_on(a, b, "busy", "x").await;
    eventually_status(b, "/sessions/idle", StatusCode::NOT_FOUND, WAIT).await;
    assert_eq!(a.get("/sessions/idle").await.0, StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for node in [a, b] {
        let (_, list) = node.get("/sessions").await;
        assert_eq!(list["numberOfElements"], 1, "{list}");
        assert_eq!(list["content"][0]["id"], "busy");
    }
    let (status, _) = b.post("/signal", json!({"session": "busy", "data": "alive"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(x.notification("sendMessage").await, json!({"data": "alive"}));
    b.create_session("idle").await;
}

// ---- a node dies, Redis restarts ---------------------------------------------------------------

/// The `signalroom` binary serving with a broker, killed on drop.
struct NodeProcess {
    child: Child,
    url: String,
}

impl NodeProcess {
    async fn start(broker: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_signalroom"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--broker",
                broker,
                "--secret",
                SECRET,
                "--log",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the signalroom binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            line
        });
        let line = match tokio::time::timeout(WAIT, line).await {
            Ok(Ok(line)) => line,
            _ => String::new(),
        };
        let Some(url) = line.trim().strip_prefix("signalroom ready: ") else {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            panic!("signalroom serve --broker {broker} did not announce itself ({status}); stdout: {line:?}");
        };
        Self { url: url.to_owned(), child }
    }

    /// SIGKILL: no goodbye to Redis, its heartbeat just stops.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A killed node's participants are given the reconnection grace that a dropped socket gets,
/// counted from when the others find the node gone, then leave for everybody.
#[tokio::test]
async fn a_killed_node_s_participants_leave_for_everybody_within_the_bound() {
    let grace = Duration::from_secs(2);
    let c = TestCluster::start_with(1, |c| c.reconnection_grace = grace).await;
    let a = c.node(0);
    let mut doomed = NodeProcess::start(&c.broker_url()).await;
    a.create_session("S1").await;
    let mut alice = join_on(a, a, "S1", "alice").await;
    let (token, bob_id) = a.connection("S1", json!({})).await;
    let mut bob = Peer::open(&doomed.url, "S1").await;
    bob.join(&token, "S1", "bob").await.unwrap();
    assert_eq!(alice.notification("participantJoined").await["id"], bob_id.as_str());

    doomed.kill();
    let killed = Instant::now();
    let bound = NODE_DEATH_BOUND + grace;
    let left = loop {
        let remaining = bound.saturating_sub(killed.elapsed());
        match alice.read_frame_within(remaining).await {
            Err(()) => panic!("no participantLeft for {bob_id} within {bound:?} of the SIGKILL"),
            Ok(None) => panic!("alice's socket closed"),
            Ok(Some(f)) if f["method"] == "participantLeft" => break f["params"].clone(),
            Ok(Some(_)) => {}
        }
    };
    let took = killed.elapsed();
    eprintln!("node death: participantLeft {:.2} s after the SIGKILL", took.as_secs_f64());
    assert!(took >= grace, "left {took:?} after the SIGKILL: before its reconnection grace");
    assert_eq!(left, json!({"connectionId": bob_id, "reason": "networkDisconnect"}));
    let (_, s) = a.get("/sessions/S1").await;
    assert_eq!(ids(&s), [alice.connection_id.as_str()], "{s}");
    assert_eq!(a.get(&format!("/sessions/S1/connection/{bob_id}")).await.0, StatusCode::NOT_FOUND);

    // A node started anew on the same Redis joins cleanly.
    let reborn = NodeProcess::start(&c.broker_url()).await;
    let (token, carol_id) = a.connection("S1", json!({})).await;
    let mut carol = Peer::open(&reborn.url, "S1").await;
    let r = carol.join(&token, "S1", "carol").await.unwrap();
    assert_eq!(r["value"].as_array().unwrap().len(), 1, "alice only: {r}");
    assert_eq!(alice.notification("participantJoined").await["id"], carol_id.as_str());
    carol.signal(&[], "hi", "signal:chat").await.unwrap();
    assert_eq!(alice.notification("sendMessage").await["data"], "hi");
}

/// What a Redis restart loses: everything in it (it runs without persistence here): the sessions,
/// their pending tokens, the participant lists and the node heartbeats. The participants of the
/// sessions lost are evicted (`networkDisconnect`) on every node, and once Redis is back new
/// sessions work on every node and across nodes.
#[tokio::test]
async fn after_a_redis_restart_new_sessions_work_on_every_node() {
    let mut c = TestCluster::start(2).await;
    c.node(0).create_session("before").await;
    let mut x = join_on(c.node(0), c.node(0), "before", "x").await;
    let mut y = join_on(c.node(1), c.node(0), "before", "y").await;
    x.signal(&[], "before", "signal:chat").await.unwrap();
    assert_eq!(y.notification("sendMessage").await["data"], "before");

    c.redis().restart();

    // Redis lost the session: its participants on every node are told, and their sockets closed,
    // so that clients rejoin instead of talking to nothing.
    for p in [&mut x, &mut y] {
        let evicted = tokio::time::timeout(BROKER_RECOVERY, p.notification("participantEvicted")).await;
        let evicted = evicted.expect("participantEvicted once Redis is back without the session");
        assert_eq!(evicted["reason"], "networkDisconnect");
        assert_eq!(evicted["connectionId"], p.connection_id.as_str());
    }

    // Each node serves REST again within the recovery bound (retrying with backoff).
    let deadline = Instant::now() + BROKER_RECOVERY;
    for (i, id) in [(0, "after0"), (1, "after1")] {
        loop {
            let (status, body) = c.node(i).post("/sessions", json!({"customSessionId": id})).await;
            if status == StatusCode::OK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} still answers {status} {body} after Redis came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (a, b) = (c.node(0), c.node(1));
    for (session, first, second) in [("after0", a, b), ("after1", b, a)] {
        let mut p = join_on(first, second, session, "p").await;
        let mut q = join_on(second, first, session, "q").await;
        assert_eq!(p.notification("participantJoined").await["id"], q.connection_id.as_str());
        let pid = p.connection_id.clone();
        q.signal(&[&pid], "q to p", "signal:chat").await.unwrap();
        assert_eq!(p.notification("sendMessage").await["data"], "q to p");
        p.signal(&[], "p to all", "signal:chat").await.unwrap();
        assert_eq!(q.notification("sendMessage").await["data"], "p to all");
        assert_eq!(p.notification("sendMessage").await["data"], "p to all");
    }
    let (_, list) = a.get("/sessions").await;
    let mut listed: Vec<&str> =
        list["content"].as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
    listed.sort_unstable();
    assert!(listed.starts_with(&["after0", "after1"]), "{list}");
}

#[tokio::test]
async fn a_reconnection_on_another_node_resumes_without_loss() {
    let grace = Duration::from_millis(500);
    let c = TestCluster::start_with(2, |c| c.reconnection_grace = grace).await;
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S").await;
    let mut sender = join_on(a, a, "S", "sender").await;
    let (token, _) = a.connection("S", json!({})).await;
    let mut moving = Peer::open(&a.url, "S").await;
    moving.call("ping", Some(json!({"interval": 5000, "lastSeq": 0}))).await.unwrap();
    moving.join(&token, "S", "moving").await.unwrap();
    let to = [moving.connection_id.clone()];
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    let mut seen = Vec::new();
    for i in 0..5 {
        sender.signal(&to, &format!("m{i}"), "signal:chat").await.unwrap();
    }
    for _ in 0..5 {
        let n = moving.notification_frame("sendMessage").await;
        seen.push((n["seq"].as_u64().unwrap(), n["params"]["data"].as_str().unwrap().to_owned()));
    }
    let handled = seen[2].0; // the client handled m0..m2 only
    let rpc = moving.rpc_id.clone();
    let cid = moving.connection_id.clone();
    moving.close().await;
    for i in 5..8 {
        sender.signal(&to, &format!("m{i}"), "signal:chat").await.unwrap();
    }
    // The balancer sends the new socket to the other node.
    let mut again = Peer::open(&b.url, "S").await;
    let r =
        again.call("connect", Some(json!({"sessionId": rpc, "reconnect": true, "lastSeq": handled}))).await;
    let r = r.expect("a reconnection on another node is accepted");
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(r["replayed"], 5, "{r}");
    let mut data = Vec::new();
    for _ in 0..5 {
        data.push(again.notification("sendMessage").await["data"].as_str().unwrap().to_owned());
    }
    assert_eq!(data, ["m3", "m4", "m5", "m6", "m7"]);
    // Live from node B now, nothing twice; and the participant stays past node A's grace period.
    sender.signal(&to, "live", "signal:chat").await.unwrap();
    assert_eq!(again.notification("sendMessage").await["data"], "live");
    again.no_notification("sendMessage").await;
    tokio::time::sleep(grace * 2).await; // node A's grace timer for the old socket has run out
    let (_, session) = a.get("/sessions/S").await;
    assert!(ids(&session).contains(&cid.as_str()), "{session}");
}

#[tokio::test]
async fn a_node_hears_a_session_only_while_it_holds_participants_of_it() {
    let mut c = TestCluster::start(2).await;
    let port = c.redis().port();
    let (a, b) = (c.node(0), c.node(1));
    a.create_session("S").await;
    let mut on_a = join_on(a, a, "S", "a").await;
    assert_eq!(subscribers(port, "sr:{S}:fx"), 1, "only node A holds a participant");
    let mut on_b = join_on(b, a, "S", "b").await;
    assert_eq!(subscribers(port, "sr:{S}:fx"), 2);
    on_b.call("leaveRoom", Some(json!({}))).await.unwrap();
    on_a.notification("participantLeft").await;
    let deadline = Instant::now() + WAIT;
    while subscribers(port, "sr:{S}:fx") != 1 {
        assert!(Instant::now() < deadline, "node B still subscribes after its last participant left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Signals still flow on node A, and node B hears the session again once somebody joins there.
    let mut again = join_on(b, b, "S", "again").await;
    assert_eq!(subscribers(port, "sr:{S}:fx"), 2);
    on_a.signal(&[], "hello", "signal:chat").await.unwrap();
    assert_eq!(again.notification("sendMessage").await["data"], "hello");
}

#[tokio::test]
async fn stopping_one_node_evicts_only_its_participants() {
    let mut c = TestCluster::start(2).await;
    c.node(0).create_session("S").await;
    let mut stays = join_on(c.node(0), c.node(0), "S", "stays").await;
    let mut goes = join_on(c.node(1), c.node(0), "S", "goes").await;
    stays.notification("participantJoined").await;
    c.nodes[1].shutdown().await;
    let evicted = goes.notification("participantEvicted").await;
    assert_eq!(evicted["reason"], "openviduServerStopped");
    let left = stays.notification("participantLeft").await;
    assert_eq!(
        (left["connectionId"].as_str(), left["reason"].as_str()),
        (Some(goes.connection_id.as_str()), Some("openviduServerStopped"))
    );
    // The session goes on on node A.
    stays.signal(&[], "still here", "signal:chat").await.unwrap();
    assert_eq!(stays.notification("sendMessage").await["data"], "still here");
    let (_, session) = c.node(0).get("/sessions/S").await;
    assert_eq!(ids(&session), [stays.connection_id.as_str()]);
}

#[tokio::test]
async fn redis_process_helper_answers_ping_and_restarts_empty() {
    // The helper itself (no server): a started Redis answers, a stopped one does not.
    let mut redis = RedisProcess::start();
    assert!(crate::redis_support::ping(redis.port()));
    redis.stop();
    assert!(!crate::redis_support::ping(redis.port()));
    redis.start_again();
    assert!(crate::redis_support::ping(redis.port()));
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
}

// ---- draining and rolling restarts ------------------------------------------------------------

/// Reconnects `peer` on `node` as openvidu-browser does (no `lastSeq`): the same participant,
/// its connection id kept.
async fn resume_on(peer: &Peer, node_url: &str, session: &str) -> Peer {
    let mut again = Peer::open(node_url, session).await;
    let r = again.call("connect", Some(json!({"sessionId": peer.rpc_id, "reconnect": true}))).await;
    r.unwrap_or_else(|e| panic!("{} resumes on {node_url}: {e}", peer.connection_id));
    again.connection_id = peer.connection_id.clone();
    again.rpc_id = peer.rpc_id.clone();
    again
}

/// Sends signal `i` to `to` until it is answered, reconnecting on `fallback` if its node
/// closes the socket first (a signal the node did not read before closing was not applied).
async fn send_surely(sender: &mut Peer, fallback: &str, to: &str, i: usize) {
    let message = json!({"to": [to], "data": format!("m{i}"), "type": "signal:seq"}).to_string();
    loop {
        let id = sender.next_request_id();
        let frame =
            json!({"jsonrpc": "2.0", "method": "sendMessage", "id": id, "params": {"message": message}});
        if sender.try_send_text(frame.to_string()).await {
            loop {
                match sender.read_frame().await {
                    Some(f) if f["id"] == id => {
                        assert!(f.get("error").is_none(), "signal {i} refused: {f}");
                        return;
                    }
                    Some(f) => assert_ne!(f["method"], "participantLeft", "{f}"),
                    None => break,
                }
            }
        }
        *sender = resume_on(sender, fallback, "S").await;
    }
}

/// What `peer` receives until its socket closes: the data of each signal; asserts nobody left.
async fn until_closed(peer: &mut Peer, got: &mut Vec<String>) {
    for f in std::mem::take(&mut peer.pending) {
        note(&f, got);
    }
    while let Some(f) = peer.read_frame().await {
        note(&f, got);
    }
}

fn note(f: &Value, got: &mut Vec<String>) {
    assert_ne!(f["method"], "participantLeft", "nobody leaves in a rolling restart: {f}");
    assert_ne!(f["method"], "participantEvicted", "{f}");
    if f["method"] == "sendMessage" {
        got.push(f["params"]["data"].as_str().unwrap().to_owned());
    }
}

/// A rolling restart: each node in turn drains (as on SIGTERM), and a new node takes its place,
/// while a participant streams signals to another. Whoever was on a draining node resumes on
/// another as openvidu-browser does (no `lastSeq`), keeps its connection id, and misses
/// nothing: every signal arrives once, in order, and nobody is told anybody left.
#[tokio::test]
async fn a_rolling_restart_of_every_node_loses_nothing() {
    const EACH: usize = 40;
    let tweak = |c: &mut signalroom_server::Config| c.drain_window = Duration::from_millis(300);
    let mut c = TestCluster::start_with(2, tweak).await;
    let broker = c.broker_url();
    let (a_url, b_url) = (c.node(0).url.clone(), c.node(1).url.clone());
    c.node(0).create_session("S").await;
    let mut receiver = join_on(c.node(0), c.node(0), "S", "receiver").await;
    let mut sender = join_on(c.node(1), c.node(0), "S", "sender").await;
    let rid = receiver.connection_id.clone();
    let mut got = Vec::new();
    for i in 0..EACH {
        send_surely(&mut sender, &b_url, &rid, i).await;
    }

    // Node A drains while signals keep coming.
    let a = c.nodes[0].server.take().expect("node A runs");
    let drained = tokio::spawn(a.drain());
    until_closed(&mut receiver, &mut got).await;
    // Sent while the receiver is away: replayed when it comes back.
    for i in EACH..2 * EACH {
        send_surely(&mut sender, &b_url, &rid, i).await;
    }
    let mut receiver = resume_on(&receiver, &b_url, "S").await;
    drained.await.expect("node A drained");
    let a2 = TestServer::single_with(|c| {
        c.broker = Some(broker.clone());
        tweak(c);
    })
    .await;
    let (status, _) = a2.get("/sessions/S").await;
    assert_eq!(status, StatusCode::OK, "the new node serves the session");

    // Then node B, which holds both of them now.
    let b = c.nodes[1].server.take().expect("node B runs");
    let drained = tokio::spawn(b.drain());
    until_closed(&mut receiver, &mut got).await;
    for i in 2 * EACH..3 * EACH {
        send_surely(&mut sender, &a2.url, &rid, i).await;
    }
    let mut receiver = resume_on(&receiver, &a2.url, "S").await;
    drained.await.expect("node B drained");
    send_surely(&mut sender, &a2.url, &rid, 3 * EACH).await;
    while got.len() <= 3 * EACH {
        let f = receiver.read_frame().await.expect("the receiver's socket stays open");
        note(&f, &mut got);
    }
    let expected: Vec<String> = (0..=3 * EACH).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected, "every signal once, in order");
    let (_, session) = a2.get("/sessions/S").await;
    assert_eq!(ids(&session).len(), 2, "both still in: {session}");
    let _ = (&a_url, &mut sender);
}

/// A draining node says so on `/health/ready` (503) while `/health/live` stays 200, and refuses
/// new sockets; a node of one process has nowhere to drain to.
#[tokio::test]
async fn a_draining_node_is_not_ready_and_takes_no_new_socket() {
    let mut c = TestCluster::start_with(2, |c| c.drain_window = Duration::from_secs(3)).await;
    c.node(0).create_session("S").await;
    let _held = join_on(c.node(0), c.node(0), "S", "x").await;
    let url = c.node(0).url.clone();
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(format!("{url}{path}")).send().await.map(|r| r.status()).ok() }
    };
    assert_eq!(status("/health/ready").await, Some(StatusCode::OK));
    let a = c.nodes[0].server.take().expect("node A runs");
    let drained = tokio::spawn(a.drain());
    let deadline = Instant::now() + WAIT;
    while status("/health/ready").await != Some(StatusCode::SERVICE_UNAVAILABLE) {
        assert!(Instant::now() < deadline, "/health/ready still answers while draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status("/health/live").await, Some(StatusCode::OK));
    let refused =
        tokio_tungstenite::connect_async(format!("{}/openvidu?sessionId=S", url.replacen("http", "ws", 1)))
            .await;
    assert!(refused.is_err(), "a draining node takes no new socket");
    drained.await.unwrap();

    let single = TestServer::single().await;
    let (status, body) = single.post("/signalroom/drain", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("nowhere to drain"), "{body}");
}

// ---- events and webhooks ----------------------------------------------------------------------

/// Each operation's event comes once, from the node that ran it, and whole: a broadcast's
/// recipients are everyone in the session, on every node, and a participant removed through
/// another node than its own is reported with what it said at its join.
#[tokio::test]
async fn a_nodes_events_tell_the_whole_session() {
    use signalroom_server::ServerEvent;
    let c = TestCluster::start(2).await;
    let (a, b) = (c.node(0), c.node(1));
    let (mut on_a, mut on_b) = (a.server().events(), b.server().events());
    a.create_session("S").await;
    let mut x = join_on(a, a, "S", "x-data").await;
    let y = join_on(b, a, "S", "y-data").await;
    x.signal(&[], "to all", "signal:chat").await.unwrap();
    // (The event reads the session once the signal is applied: a removal made before it comes
    // would be read too.)
    let mut sent = None;
    while sent.is_none() {
        let event = tokio::time::timeout(WAIT, on_a.recv()).await.expect("an event").expect("open");
        if let ServerEvent::SignalSent { everyone, .. } = event {
            sent = Some(everyone);
        }
    }
    let (_, gone) = b.delete(&format!("/sessions/S/connection/{}", x.connection_id)).await;
    assert!(gone.is_null() || gone == json!(""), "{gone}");
    let mut everyone = sent.unwrap();
    everyone.sort();
    let mut expected = vec![x.connection_id.clone(), y.connection_id.clone()];
    expected.sort();
    assert_eq!(everyone.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>(), expected);
    let left = loop {
        let event = tokio::time::timeout(WAIT, on_b.recv()).await.expect("an event").expect("open");
        if let ServerEvent::ParticipantLeft { connection, client_data, joined_at, .. } = event {
            break (connection, client_data, joined_at);
        }
    };
    assert_eq!(left.0.as_str(), x.connection_id, "node B ran the removal: it tells it");
    assert_eq!(left.1, "x-data", "with what x said at its join on node A");
    assert!(left.2 > 0);
    // Node A, which ran none of them, reports neither the removal nor a second signal.
    while let Ok(event) = on_a.try_recv() {
        assert!(!matches!(event, ServerEvent::ParticipantLeft { .. }), "{event:?}");
    }
}
