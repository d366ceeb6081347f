//! Past one Redis: two nodes sharing sessions through Redis Sentinel or a Redis Cluster keep
//! every participant and every signal when a Redis primary dies and a replica takes its place.
//! Each test kills the primary (SIGKILL) under a steady stream of signals and checks that every
//! signal was either delivered, in order, to everyone, or refused to its sender, never both and
//! never lost; that no participant left; and how long the switch took.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::operations::metric;
use crate::redis_support::{RedisCluster, RedisSentinel, caught_up, wait_until};
use crate::support::{Peer, TestServer};

/// The longest a switch may take (the documented bound: detection, promotion, following).
const SWITCH_BOUND: Duration = Duration::from_secs(15);
/// Signals sent before the primary is killed, and at least after the switch.
const BEFORE: usize = 30;
const AFTER: usize = 30;

/// The nodes' logs, with `RUST_LOG` (e.g. `signalroom_server=info`), on the test's output.
fn logs() {
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// Sends `sendMessage` and waits (longer than a switch) for its answer.
async fn send(peer: &mut Peer, i: usize) -> Result<Value, Value> {
    let message = json!({"to": [], "data": i.to_string(), "type": "signal:n"}).to_string();
    let id = peer.request("sendMessage", Some(json!({"message": message}))).await;
    loop {
        let f = peer
            .read_frame_within(SWITCH_BOUND * 2)
            .await
            .expect("an answer within the bound")
            .expect("the socket stays open through a failover");
        if f.get("method").is_some() {
            peer.pending.push_back(f);
            continue;
        }
        assert_eq!(f["id"], id, "{f}");
        return match f.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(f["result"].clone()),
        };
    }
}

/// Every `n` signal `peer` got, in arrival order, until `last` arrived (or the socket went quiet).
async fn received(peer: &mut Peer, last: usize) -> Vec<usize> {
    let mut got = Vec::new();
    let mut frames: Vec<Value> = peer.pending.drain(..).collect();
    loop {
        for f in frames.drain(..) {
            if f["method"] == "sendMessage" && f["params"]["type"] == "signal:n" {
                got.push(f["params"]["data"].as_str().expect("data").parse().expect("a number"));
            }
        }
        if got.last() == Some(&last) {
            return got;
        }
        match peer.read_frame_within(SWITCH_BOUND).await {
            Ok(Some(f)) => frames.push(f),
            _ => return got,
        }
    }
}

/// What a stream of signals across a failover came to.
struct Stream {
    delivered: Vec<usize>,
    refused: Vec<usize>,
    /// From the kill to the first signal answered after it, and to the last refusal.
    first_answer: Duration,
    switch: Duration,
}

impl Stream {
    /// Prints the figures (with `--nocapture`): the switch's length as the client saw it.
    fn report(&self, what: &str, rest: Duration) {
        eprintln!(
            "{what}: {} signals accepted, {} refused ({:?}); first answer after {:?}, last refusal after {:?}, REST ok after {rest:?}",
            self.delivered.len(),
            self.refused.len(),
            self.refused,
            self.first_answer,
            self.switch,
        );
    }
}

/// After the switch, a newcomer joins on node `b` and gets `alice`'s next signal.
async fn works_after(alice: &mut Peer, b: &TestServer) {
    let mut carol = b.join("S", "carol").await;
    assert!(alice.signal(&[], "after", "late").await.is_ok());
    assert_eq!(carol.notification("sendMessage").await["data"], "after");
}

/// What the tests stand on: both nodes wait for the replicas before they publish (had a replica
/// been disconnected a moment on a machine this busy, they would publish without it for a while,
/// and a failover then may lose the latest operations: the documented trade, not what is tested).
async fn replicas_waited(nodes: [&TestServer; 2]) {
    let waited = r#"signalroom_broker_replicas_waited{broker="redis"}"#;
    for node in nodes {
        let started = Instant::now();
        while metric(&node.http, &node.url, waited).await != Some(1.0) {
            assert!(
                started.elapsed() < SWITCH_BOUND,
                "{} publishes without waiting for the replicas",
                node.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// SIGKILLs the primary on `port` (with `kill`) once its replicas have all it has.
fn kill_caught_up(port: u16, kill: impl FnOnce(u16)) {
    wait_until(SWITCH_BOUND, "the replicas have everything the primary has", || caught_up(port));
    kill(port);
}

/// Sends signals from `alice` while `kill` runs after [`BEFORE`] of them (both nodes waiting
/// for the replicas then), until [`AFTER`] were accepted after the switch; checks what `alice`
/// and `bob` received.
async fn stream_across(
    nodes: [&TestServer; 2],
    alice: &mut Peer,
    bob: &mut Peer,
    kill: impl FnOnce(),
) -> Stream {
    let mut kill = Some(kill);
    let (mut delivered, mut refused) = (Vec::new(), Vec::new());
    let mut killed_at = None;
    let mut first_answer = None;
    let mut last_refusal = None;
    let mut after = 0;
    let started = Instant::now();
    let mut pinged = Instant::now();
    for i in 0..2000 {
        if pinged.elapsed() > Duration::from_secs(2) {
            // (A socket that does not ping for three intervals is closed.)
            for peer in [&mut *alice, &mut *bob] {
                peer.call("ping", Some(json!({"interval": 5000}))).await.expect("pong");
            }
            pinged = Instant::now();
        }
        if i == BEFORE {
            replicas_waited(nodes).await;
            (kill.take().expect("once"))();
            killed_at = Some(Instant::now());
        }
        let answer = send(alice, i).await;
        if let Some(at) = killed_at {
            first_answer.get_or_insert_with(|| at.elapsed());
        }
        match answer {
            Ok(_) => {
                delivered.push(i);
                if killed_at.is_some() {
                    after += 1;
                }
            }
            Err(e) => {
                assert!(killed_at.is_some(), "signal {i} refused before the failover: {e}");
                let message = e["message"].as_str().unwrap_or_default().to_owned();
                assert!(message.to_lowercase().contains("retry"), "a refusal says to retry: {e}");
                refused.push(i);
                last_refusal = killed_at.map(|at| at.elapsed());
                after = 0;
            }
        }
        if after >= AFTER {
            break;
        }
        assert!(started.elapsed() < SWITCH_BOUND * 4, "the stream did not recover");
    }
    let last = *delivered.last().expect("signals delivered");
    for (who, peer) in [("alice", alice), ("bob", bob)] {
        let got = received(peer, last).await;
        assert_eq!(got, delivered, "{who} got exactly the accepted signals, in order (refused: {refused:?})");
    }
    Stream {
        delivered,
        refused,
        first_answer: first_answer.unwrap_or_default(),
        switch: last_refusal.unwrap_or_default(),
    }
}

/// Both participants still in the session, seen from both nodes, once REST answers again.
async fn both_still_there(nodes: [&TestServer; 2], started: Instant) -> Duration {
    for node in nodes {
        loop {
            let (status, body) = node.get("/sessions/S").await;
            if status == StatusCode::OK {
                let joined: Vec<&Value> = body["connections"]["content"]
                    .as_array()
                    .expect("connections")
                    .iter()
                    .filter(|c| c["status"] == "active")
                    .collect();
                assert_eq!(joined.len(), 2, "{body}");
                break;
            }
            assert!(started.elapsed() < SWITCH_BOUND * 2, "REST did not come back: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_loses_no_participant_and_no_signal() {
    logs();
    let mut redis = RedisSentinel::start();
    let url = redis.url();
    let a = TestServer::single_with(|c| c.broker = Some(url.clone())).await;
    let b = TestServer::single_with(|c| c.broker = Some(url.clone())).await;
    a.create_session("S").await;
    let mut alice = a.join("S", "alice").await;
    let mut bob = b.join("S", "bob").await;
    let old = redis.primary;
    let killed = Instant::now();
    let stream = stream_across([&a, &b], &mut alice, &mut bob, || {
        kill_caught_up(old, |_| redis.kill_primary());
    })
    .await;
    let rest = both_still_there([&a, &b], killed).await;
    assert_eq!(redis.named_primary(), Some(redis.replica), "the replica was promoted (old primary {old})");
    stream.report("sentinel failover", rest);
    works_after(&mut alice, &b).await;
    b.create_session("T").await;
    assert_eq!(a.get("/sessions/T").await.0, StatusCode::OK);
}

/// Session ids whose keys fall on every shard (by their slot's primary now).
fn ids_on_every_shard(cluster: &RedisCluster, n: usize) -> Vec<(String, u16)> {
    let mut ids = Vec::new();
    let mut shards = std::collections::BTreeSet::new();
    for i in 0..200 {
        let id = format!("spread{i}");
        let primary = cluster.primary_of(&format!("sr:{{{id}}}:snap"));
        shards.insert(primary);
        ids.push((id, primary));
        if ids.len() >= n && shards.len() == 3 {
            break;
        }
    }
    assert_eq!(shards.len(), 3, "ids over three shards: {ids:?}");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_every_shard_of_a_cluster_and_work_across_them() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url(0);
    let a = TestServer::single_with(|c| c.broker = Some(url.clone())).await;
    let b = TestServer::single_with(|c| c.broker = Some(url.clone())).await;
    let ids = ids_on_every_shard(&cluster, 6);
    for (i, (id, _)) in ids.iter().enumerate() {
        [&a, &b][i % 2].create_session(id).await;
    }
    // Every shard holds sessions' keys.
    let keys = cluster.keys_per_primary();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.iter().all(|(_, n)| *n > 0), "keys on every primary: {keys:?}");
    // Listed by both nodes.
    for node in [&a, &b] {
        let (_, list) = node.get("/sessions").await;
        let mut listed: Vec<String> = list["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        listed.sort();
        let mut want: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
        want.sort();
        assert_eq!(listed, want);
    }
    // A participant on each node of each session; signals cross nodes on every shard.
    for (id, _) in &ids {
        let mut x = a.join(id, "x").await;
        let mut y = b.join(id, "y").await;
        assert!(x.signal(&[], &format!("hello {id}"), "chat").await.is_ok());
        assert_eq!(x.notification("sendMessage").await["data"], format!("hello {id}"));
        assert_eq!(y.notification("sendMessage").await["data"], format!("hello {id}"));
        let (status, _) = b.post("/signal", json!({"session": id, "data": "rest"})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(x.notification("sendMessage").await["data"], "rest");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shard_failover_loses_no_participant_and_no_signal() {
    logs();
    let mut cluster = RedisCluster::start(3, 1);
    let url = cluster.url(1);
    let a = TestServer::single_with(|c| c.broker = Some(url.clone())).await;
    let b = TestServer::single_with(|c| c.broker = Some(url.clone())).await;
    a.create_session("S").await;
    let mut alice = a.join("S", "alice").await;
    let mut bob = b.join("S", "bob").await;
    let mut doomed = 0;
    let killed = Instant::now();
    let stream = stream_across([&a, &b], &mut alice, &mut bob, || {
        // (Read at the kill: a machine this busy may have failed the shard over already.)
        doomed = cluster.primary_of("sr:{S}:snap");
        kill_caught_up(doomed, |port| cluster.kill(port));
    })
    .await;
    let rest = both_still_there([&a, &b], killed).await;
    let now = cluster.primary_of("sr:{S}:snap");
    assert_ne!(now, doomed, "a replica took the shard over");
    stream.report("cluster shard failover", rest);
    works_after(&mut alice, &b).await;
}

/// A replica that is connected but slow to acknowledge (frozen here, as on a starved host) slows
/// operations down, and they keep waiting for it: the node does not fall back to publishing
/// without it, which would let a failover lose what it applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_is_waited_for_not_given_up() {
    logs();
    let redis = RedisSentinel::start();
    let url = redis.url();
    let a = TestServer::single_with(|c| c.broker = Some(url.clone())).await;
    a.create_session("S").await;
    let mut alice = a.join("S", "alice").await;
    let mut bob = a.join("S", "bob").await;
    replicas_waited([&a, &a]).await;
    redis.freeze_replica(true);
    for i in 0..3 {
        let sent = alice.signal(&[], &format!("slow {i}"), "signal:n").await;
        assert!(sent.is_ok(), "accepted once the wait for the replica timed out: {sent:?}");
    }
    let waited = metric(&a.http, &a.url, r#"signalroom_broker_replicas_waited{broker="redis"}"#).await;
    redis.freeze_replica(false);
    assert_eq!(waited, Some(1.0), "operations still wait for the replica");
    for i in 0..3 {
        assert_eq!(bob.notification("sendMessage").await["data"], format!("slow {i}"));
    }
}
