//! [`RedisBroker`]: sessions shared by every node given the same Redis, so that any number of
//! nodes behind a balancer behave as one server.
//!
//! # A session is a log of operations
//! A room is a state machine whose inputs are [`Op`]s (see [`crate::op`]). Redis orders each
//! session's operations: one script numbers an operation (its version), appends it to the
//! session's log and publishes it on the session's channel. Every node that follows the session
//! (it holds participants of it, or ran an operation on it a moment ago) keeps a *replica*: its
//! own copy of the room, to which it applies every operation in version order, delivering the
//! effects to the participants whose sockets it holds. The node that submitted an operation
//! learns its outcome (value, refusal, the join's answer) when it applies it, like every other.
//!
//! So an operation costs Redis O(1) bytes, whatever the session's size (a join writes its
//! joiner's entry, not the room), nothing ever locks a session (Redis's order is the order), and
//! the answer of a join, which lists everyone, is made by the node that sends it, from its
//! replica.
//!
//! What lives in Redis (the `sr:` prefix; every key of a session carries its id as a hash tag):
//! - `sr:{id}:snap`: a hash: the session's `epoch` (drawn at its creation, so that a session
//!   created again under the same id is another), its latest snapshot (`room` at version `ver`)
//!   and the one before it (`proom` at `pver`);
//! - `sr:{id}:ver`: the last version given to an operation;
//! - `sr:{id}:log`: the operations after the previous snapshot, a stream whose entry ids are
//!   the versions;
//! - channel `sr:{id}:fx`: every operation as it is numbered;
//! - `sr:sessions`: the set of open sessions' ids;
//! - `sr:rpc:{rpc id}`: the session and connection of a participant, for reconnections;
//! - `sr:node:{node id}`: a node's heartbeat, refreshed every [`HEARTBEAT`], expiring after
//!   [`NODE_TTL`]; participants of a node whose heartbeat expired are evicted by the others once
//!   the reconnection grace has passed without them coming back;
//! - `sr:nodes`, `sr:held:{node id}`: the nodes, and the sessions each holds participants of,
//!   for the reaper ([`reap`]), whose rounds cost O(nodes).
//!
//! Which Redis (one server, Sentinel's primary, a Redis Cluster) and how the connection follows
//! it is [`super::link`]'s; in a cluster no script or pipeline mixes a session's keys with
//! another's. With replicas, operations are published by [`RELEASE`] once `WAIT` says the
//! replicas have them ([`write_ops`]).
//!
//! A replica starts from the previous snapshot and the log after it, having subscribed first, so
//! that nothing published meanwhile is missed; a version that skips one (a message lost with a
//! subscription) is filled from the log. The node that applies an operation whose version is due
//! ([`snapshot_every`]) and that submitted it writes the next snapshot and trims the log: a
//! snapshot lists everyone, but comes once per twice as many operations as there are
//! participants, so each operation pays O(1) for it.
//!
//! One node hands its operations to Redis in the order they were made, from every socket, many
//! per round trip ([`write_ops`]): a socket's signals are on their way while it reads the next
//! request, and stay in order with everything else it asks.
//!
//! A reconnection that lands on another node moves the participant there ([`Op::Relocate`]):
//! that node replays, from its replica's recent notifications, every notification for it after
//! the client's `lastSeq` (the client is told whether they still reached back that far), and the
//! old node closes the old socket.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use indexmap::IndexMap;
use parking_lot::Mutex;
use redis::AsyncCommands;
use redis::aio::PubSubSink;
use signalroom_core::{ConnectionId, EndReason, RpcSessionId, SessionId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::link::{Event, Feed, Link, Topology};
use super::{Applied, Broker, For, Held, Later, Notice, Reply, Ticket, deliver};
use crate::op::{Op, SignalOp, Value};
use crate::outbox::{Limits, Order, Out, Outbox, Resumed};
use crate::refusal::Refusal;
use crate::room::{Audience, Effect, Room};
use crate::util::random_id;

/// How often a node says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a node counts as alive after its last heartbeat.
pub(crate) const NODE_TTL: Duration = Duration::from_secs(6);
/// How often a node looks for participants of nodes that stopped beating.
pub(crate) const REAP_EVERY: Duration = Duration::from_secs(3);
/// At most this many operations go to Redis in one pipeline.
const OP_BATCH: usize = 512;
/// How long an operation waits for Redis to number it and for its message to come back.
const OP_WAIT: Duration = Duration::from_secs(10);
/// A replica this node has no participant, and no operation on its way, in is dropped (and its
/// channel left) once unused this long.
const REPLICA_LINGER: Duration = Duration::from_secs(2);
/// How often unused replicas are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A replica keeps this many of its session's latest notifications for reconnections on this
/// node ([`Recent`])...
const RECENT_FRAMES: usize = 4096;
/// ...and at most this many bytes of them.
const RECENT_BYTES: usize = 4 << 20;
/// How long a node waits before reconnecting its subscriptions after Redis went away.
const RESUBSCRIBE_BACKOFF: [Duration; 4] =
    [Duration::from_millis(100), Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];

/// Snapshots are written at least this many operations apart...
const SNAPSHOT_MIN: u64 = 1024;

/// ...and twice as many as the session has Connections (pending or joined: a snapshot lists
/// them all): a snapshot's bytes, spread over the operations until the next, are O(1) for each.
fn snapshot_every(connections: usize) -> u64 {
    SNAPSHOT_MIN.max(2 * connections as u64)
}

/// Numbers an operation, logs it and, unless ARGV[4] is empty, publishes it with the command
/// ARGV[4] names (`PUBLISH`, or `SPUBLISH` in a cluster). KEYS: snap, ver, log, channel. ARGV:
/// node, operation number on that node, the operation, the publishing command. Returns its
/// version, or -1 if there is no such session. (With replicas, operations are published by
/// [`RELEASE`] once the replicas have them.)
const SUBMIT: &str = r#"
local epoch = redis.call("HGET", KEYS[1], "epoch")
if not epoch then return -1 end
local v = redis.call("INCR", KEYS[2])
local m = v .. "\n" .. epoch .. "\n" .. ARGV[1] .. "\n" .. ARGV[2] .. "\n" .. ARGV[3]
redis.call("XADD", KEYS[3], v .. "-1", "m", m)
if ARGV[4] ~= "" then redis.call(ARGV[4], KEYS[4], m) end
return v
"#;

/// Publishes, in order, the operations numbered but not yet published (the snapshot's `pub` is
/// the last published version), once the replicas acknowledged them (`WAIT`, just before).
/// KEYS: snap, ver, log, channel. ARGV: the publishing command. Returns the last version.
const RELEASE: &str = r#"
local v = tonumber(redis.call("GET", KEYS[2]) or "0")
local p = tonumber(redis.call("HGET", KEYS[1], "pub") or "0")
if v > p then
  for _, e in ipairs(redis.call("XRANGE", KEYS[3], (p + 1) .. "-1", v .. "-1")) do
    redis.call(ARGV[1], KEYS[4], e[2][2])
  end
  redis.call("HSET", KEYS[1], "pub", v)
end
return v
"#;

/// Creates a session unless it exists. KEYS: snap, ver. ARGV: epoch, room, "1" if operations
/// are published by [`RELEASE`]. (The caller adds its id to `sr:sessions` first, outside the
/// script: in a cluster that key is on another shard.)
const CREATE: &str = r#"
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "epoch", ARGV[1], "ver", 0, "room", ARGV[2], "pver", 0, "proom", ARGV[2])
if ARGV[3] == "1" then redis.call("HSET", KEYS[1], "pub", 0) end
redis.call("SET", KEYS[2], 0)
return 1
"#;

/// What a replica starts from: `{epoch, version, room, operations after it...}` (the previous
/// snapshot, so that the log after it reaches back a whole snapshot interval), or nil. With
/// replicas, only published operations are read (the ones numbered after them may yet be lost
/// to a failover). KEYS: snap, log.
const LOAD: &str = r#"
local s = redis.call("HMGET", KEYS[1], "epoch", "pver", "proom", "pub")
if not s[1] then return false end
local out = {s[1], s[2], s[3]}
local last = "+"
if s[4] then last = s[4] .. "-1" end
for _, e in ipairs(redis.call("XRANGE", KEYS[2], (tonumber(s[2]) + 1) .. "-1", last)) do
  out[#out + 1] = e[2][2]
end
return out
"#;

/// The log's (published) operations from version ARGV[1] on. KEYS: snap, log.
const READ: &str = r#"
local last = redis.call("HGET", KEYS[1], "pub")
if last then last = last .. "-1" else last = "+" end
local out = {}
for _, e in ipairs(redis.call("XRANGE", KEYS[2], ARGV[1] .. "-1", last)) do
  out[#out + 1] = e[2][2]
end
return out
"#;

/// Stores a snapshot if it is newer, keeps the one before it, and trims the log to what follows
/// that one. KEYS: snap, log. ARGV: epoch, version, room.
const SNAPSHOT: &str = r#"
if redis.call("HGET", KEYS[1], "epoch") ~= ARGV[1] then return 0 end
local cur = tonumber(redis.call("HGET", KEYS[1], "ver"))
if tonumber(ARGV[2]) <= cur then return 0 end
redis.call("HSET", KEYS[1], "pver", cur, "proom", redis.call("HGET", KEYS[1], "room"), "ver", ARGV[2], "room", ARGV[3])
redis.call("XTRIM", KEYS[2], "MINID", (cur + 1) .. "-1")
return 1
"#;

/// Forgets a closed session (if it is still that one); the caller then takes its id out of
/// `sr:sessions`. KEYS: snap, ver, log. ARGV: epoch.
const DROP: &str = r#"
if redis.call("HGET", KEYS[1], "epoch") ~= ARGV[1] then return 0 end
redis.call("DEL", KEYS[1], KEYS[2], KEYS[3])
return 1
"#;

fn key(id: &str, what: &str) -> String {
    format!("sr:{{{id}}}:{what}")
}

/// How far a drained socket was written (its participant's resume on another node replays the
/// rest).
fn drained_key(id: &str, who: &str) -> String {
    key(id, &format!("drained:{who}"))
}

/// How long the record of a drained socket is kept: longer than any reconnection grace.
const DRAINED_TTL: Duration = Duration::from_secs(300);

fn rpc_key(rpc: &str) -> String {
    format!("sr:rpc:{rpc}")
}

fn node_key(node: &str) -> String {
    format!("sr:node:{node}")
}

fn channel(id: &str) -> String {
    key(id, "fx")
}

/// The session a channel is of.
fn session_of(channel: &str) -> Option<&str> {
    channel.strip_prefix("sr:{")?.strip_suffix("}:fx")
}

const SESSIONS: &str = "sr:sessions";

/// The set of nodes that ever beat and were not found stopped with nobody held (the reaper's
/// list of nodes to watch).
const NODES: &str = "sr:nodes";

/// The set of sessions node `node` holds (or held) participants of: added to before a
/// participant joins or moves there, kept up to date by its heartbeat.
fn held_key(node: &str) -> String {
    format!("sr:held:{node}")
}

/// One operation as the log and the channel carry it: `version\nepoch\nnode\nnumber\nop`.
#[derive(Debug, Clone)]
struct Message {
    ver: u64,
    epoch: String,
    node: String,
    op_id: u64,
    op: String,
}

impl Message {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(5, '\n');
        Some(Self {
            ver: parts.next()?.parse().ok()?,
            epoch: parts.next()?.to_owned(),
            node: parts.next()?.to_owned(),
            op_id: parts.next()?.parse().ok()?,
            op: parts.next()?.to_owned(),
        })
    }
}

/// The outboxes of a session's participants this node holds, in join order.
type Roster = IndexMap<ConnectionId, Arc<Outbox>>;

/// A session's latest notifications, for reconnections that land on this node: their numbers,
/// audiences and frames, bounded in count and bytes.
#[derive(Debug, Default)]
struct Recent {
    notes: VecDeque<(u64, Audience, Utf8Bytes)>,
    bytes: usize,
}

impl Recent {
    fn keep(&mut self, seq: u64, to: &Audience, frame: &Utf8Bytes) {
        self.bytes += frame.len();
        self.notes.push_back((seq, to.clone(), frame.clone()));
        while self.notes.len() > RECENT_FRAMES || self.bytes > RECENT_BYTES {
            let Some((_, _, old)) = self.notes.pop_front() else { break };
            self.bytes -= old.len();
        }
    }

    /// The notifications for `who` after `last_seq`, and whether they reach back that far
    /// (`last_seq` is at least the room's last: nothing was missed).
    fn missed(&self, who: &ConnectionId, last_seq: u64, room_seq: u64) -> (bool, Vec<Utf8Bytes>) {
        let recovered =
            room_seq <= last_seq || self.notes.front().is_some_and(|(seq, _, _)| *seq <= last_seq + 1);
        let frames = self
            .notes
            .iter()
            .filter(|(seq, to, _)| {
                *seq > last_seq
                    && match to {
                        Audience::All => true,
                        Audience::AllBut(but) => but != who,
                        Audience::Only(ids) => ids.contains(who),
                    }
            })
            .map(|(_, _, frame)| frame.clone())
            .collect();
        (recovered, frames)
    }
}

/// This node's copy of a session.
struct Replica {
    epoch: String,
    room: Room,
    /// The version of the last operation applied.
    ver: u64,
    /// The version of the latest snapshot (as far as this replica knows).
    snap_at: u64,
    /// Messages ahead of the next version, waiting for the ones before them (a load or a gap
    /// being filled from the log).
    ahead: BTreeMap<u64, Message>,
    /// The log is being read for this replica: messages wait in `ahead`.
    filling: bool,
    /// The participants whose sockets this node holds.
    roster: Roster,
    /// Frames held back to be pushed together ([`Held`]): a run of joins' `participantJoined`s
    /// stay held across the messages that bring them, as the local broker holds them, until a
    /// write's worth is held or they waited as long as a session of this size waits (in a big
    /// session, a write per participant per join would cost the kernel more than the bytes);
    /// anything else pushes them first, and a batch with other operations' frames held pushes
    /// everything at its end.
    held: Held,
    /// Everything held came from joins (it may wait for more).
    held_joins: bool,
    recent: Recent,
    /// The session closed, or Redis forgot it: the replica is being dropped.
    gone: bool,
}

/// A session this node follows: its replica once loaded, and the versions applied so far.
struct Cell {
    /// The keys its operations are submitted with (made once: every signal uses them).
    keys: Keys,
    replica: Mutex<Option<Replica>>,
    /// Loaded, and the session not gone (read without the replica's lock, by every signal).
    live: AtomicBool,
    /// When this node last ran an operation on the session, in ms from the node's start (without
    /// the replica's lock, which the reader holds while it applies).
    used: AtomicU64,
    /// Messages that came while the replica was loading (taken under the replica's lock, which
    /// is always locked first).
    early: Mutex<Vec<Message>>,
    applied: watch::Sender<u64>,
}

/// A session's keys, as [`SUBMIT`] takes them.
struct Keys {
    snap: String,
    ver: String,
    log: String,
    channel: String,
}

impl Keys {
    fn of(id: &str) -> Self {
        Self { snap: key(id, "snap"), ver: key(id, "ver"), log: key(id, "log"), channel: channel(id) }
    }
}

/// What an operation of this node waits for.
enum Answer {
    /// Its reply, and its outcome.
    Reply(Reply, oneshot::Sender<Result<Applied<Value>, Refusal>>),
    /// A reconnection that moves its participant here ([`Op::Relocate`]): the reply made from
    /// what the replica could replay, then the replay.
    Resume {
        last_seq: Option<u64>,
        build: Box<dyn FnOnce(Resumed) -> Utf8Bytes + Send>,
        done: oneshot::Sender<Result<Resumed, Refusal>>,
    },
}

/// An operation of this node whose message has not come back yet.
struct Waiter {
    session: SessionId,
    caller: Option<Arc<Outbox>>,
    answer: Answer,
}

/// What this node holds of the sessions it follows.
struct Shared {
    node: String,
    linger: Duration,
    /// What a session's consecutive operations may hold back to push together ([`Held`]).
    most_held: Limits,
    replicas: DashMap<SessionId, Arc<Cell>>,
    /// This node's operations whose message has not come back yet, by number. (Each under a
    /// lock of its own, which nobody contends for: a reply's closure is not `Sync`.)
    pending: DashMap<u64, Mutex<Waiter>>,
    /// Sessions whose channel this node subscribes to.
    subscribed: Mutex<HashSet<String>>,
    /// Orders subscribing and unsubscribing (held across their round trip).
    gate: tokio::sync::Mutex<()>,
    /// Where subscriptions are made: a pub/sub connection (`None` while it is being
    /// re-established), or, in a cluster, `conn` itself (sharded pub/sub).
    sink: Mutex<Option<PubSubSink>>,
    notices: mpsc::UnboundedSender<Notice>,
    conn: Link,
    /// The command operations are published with (`PUBLISH`, `SPUBLISH`).
    publish: &'static str,
    /// Keys are sharded: no command crosses slots, and pub/sub is sharded.
    sharded: bool,
    /// How many replicas must have an operation before it is published (0: published as it is
    /// numbered).
    acks: usize,
    /// Replicas did not acknowledge in time: operations are published without waiting for them
    /// until they are back ([`watch_replicas`]).
    degraded: AtomicBool,
    /// When this node last failed to reach Redis, in ms from its start (0: never): until a
    /// heartbeat's lifetime has passed since, other nodes' missing heartbeats may be Redis's
    /// doing (a failover), not theirs.
    trouble: AtomicU64,
    /// Sessions in this node's held set ([`held_key`]), as far as it knows.
    held: DashMap<SessionId, ()>,
    /// When this node started (the origin of [`Cell::used`]).
    started: Instant,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Redis failed this node just now.
    fn troubled(&self) {
        self.trouble.store(self.now_ms().max(1), Ordering::Relaxed);
    }

    /// Whether Redis failed this node within a heartbeat's lifetime (see [`Shared::trouble`]).
    fn recently_troubled(&self) -> bool {
        let at = self.trouble.load(Ordering::Relaxed);
        at > 0 && self.now_ms().saturating_sub(at) < (NODE_TTL + HEARTBEAT).as_millis() as u64
    }
}

/// Sessions shared through Redis (see the module docs).
pub(crate) struct RedisBroker {
    shared: Arc<Shared>,
    next_op: AtomicU64,
    /// The operation writer's queue ([`write_ops`]).
    jobs: mpsc::UnboundedSender<Job>,
    notices_rx: Mutex<Option<mpsc::UnboundedReceiver<Notice>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker").field("node", &self.shared.node).finish_non_exhaustive()
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The broker URL without its password, for logs and messages (any scheme; hosts may be a
/// comma-separated list).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    // (A password may hold '/', '?' or '@': the hosts follow the last '@'.)
    let Some((auth, hosts)) = rest.rsplit_once('@') else { return url.to_owned() };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{hosts}"),
        None => url.to_owned(),
    }
}

fn down(e: redis::RedisError) -> Refusal {
    Refusal::BrokerDown(e.to_string())
}

/// The connection dropped or is being re-established: the same command may succeed shortly.
fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Runs a command that is safe to repeat, once more after a short pause if the connection was
/// being re-established.
async fn again<T, F, Fut>(conn: &Link, mut run: F) -> redis::RedisResult<T>
where
    F: FnMut(Link) -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    match run(conn.clone()).await {
        Err(e) if transient(&e) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            run(conn.clone()).await
        }
        done => done,
    }
}

/// What [`LOAD`] found: the epoch, and the room at the version it is at after the log.
struct Loaded {
    epoch: String,
    ver: u64,
    room: Room,
    /// The log's operations after the snapshot, in order.
    log: Vec<Message>,
}

/// Reads what a replica starts from; `None`: no such session.
async fn load(conn: &Link, id: &str) -> Result<Option<Loaded>, Refusal> {
    let found: Option<Vec<String>> = again(conn, |mut conn| async move {
        redis::cmd("EVAL")
            .arg(LOAD)
            .arg(2)
            .arg(key(id, "snap"))
            .arg(key(id, "log"))
            .query_async(&mut conn)
            .await
    })
    .await
    .map_err(down)?;
    let Some(found) = found else { return Ok(None) };
    let mut parts = found.into_iter();
    let (Some(epoch), Some(ver), Some(room)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Refusal::BrokerDown(format!("session {id}: unreadable snapshot")));
    };
    let ver = ver.parse().map_err(|_| Refusal::BrokerDown(format!("session {id}: unreadable version")))?;
    let mut room = serde_json::from_str::<Room>(&room)
        .map_err(|e| Refusal::BrokerDown(format!("session {id} unreadable: {e}")))?;
    room.keep_answers();
    let log = parts.filter_map(|m| Message::parse(&m)).collect();
    Ok(Some(Loaded { epoch, ver, room, log }))
}

/// Reads the log's operations from version `from` on.
async fn read_log(conn: &Link, id: &str, from: u64) -> redis::RedisResult<Vec<Message>> {
    let entries: Vec<String> = again(conn, |mut conn| async move {
        redis::cmd("EVAL")
            .arg(READ)
            .arg(2)
            .arg(key(id, "snap"))
            .arg(key(id, "log"))
            .arg(from)
            .query_async(&mut conn)
            .await
    })
    .await?;
    Ok(entries.iter().filter_map(|m| Message::parse(m)).collect())
}

impl RedisBroker {
    /// One `PING` round trip (for the metrics, at scrape time).
    /// Whether operations wait for replicas before they are published: `None` when none are
    /// asked for (`replicas=0`), `Some(false)` while they failed to acknowledge in time and
    /// operations are published without them (a failover then may lose the latest).
    pub(crate) fn replicas_waited(&self) -> Option<bool> {
        (self.shared.acks > 0).then(|| !self.shared.degraded.load(Ordering::Relaxed))
    }

    pub(crate) async fn ping(&self) -> redis::RedisResult<Duration> {
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut self.shared.conn.clone()).await?;
        Ok(started.elapsed())
    }

    /// Connects to Redis at `url` and starts this node's heartbeat, its subscription reader, its
    /// operation writer and its reaper of dead nodes' participants.
    pub(crate) async fn connect(
        url: &str,
        linger: Duration,
        queue: Limits,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let topology = Topology::parse(url)?;
        if url.starts_with("rediss") {
            // rediss:// runs on rustls, which needs a process-wide crypto provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let (pushes, pushed) = mpsc::unbounded_channel();
        let (conn, follower) = Link::connect(&topology, topology.sharded().then_some(pushes)).await?;
        let (sink, feed, client) = match (&topology, &conn) {
            (Topology::Cluster { .. }, _) => (None, Feed::Sharded(pushed), None),
            (Topology::Single { url }, _) => {
                let client = redis::Client::open(url.as_str())?;
                let (sink, stream) = client.get_async_pubsub().await?.split();
                (Some(sink), Feed::Plain(stream), Some(client))
            }
            (Topology::Sentinel { .. }, link) => {
                let client = link.client().expect("a followed primary");
                let (sink, stream) = client.get_async_pubsub().await?.split();
                (Some(sink), Feed::Plain(stream), None)
            }
        };
        let (notices, notices_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            node: random_id("node_", 12),
            linger,
            most_held: super::most_held(queue),
            replicas: DashMap::new(),
            pending: DashMap::new(),
            subscribed: Mutex::new(HashSet::new()),
            gate: tokio::sync::Mutex::new(()),
            sink: Mutex::new(sink),
            notices,
            conn: conn.clone(),
            publish: topology.publish(),
            sharded: topology.sharded(),
            acks: topology.replicas(),
            degraded: AtomicBool::new(false),
            trouble: AtomicU64::new(0),
            held: DashMap::new(),
            started: Instant::now(),
        });
        let mut beat = conn.clone();
        let _: () = beat.set_ex(node_key(&shared.node), 1, NODE_TTL.as_secs()).await?;
        let _: () = beat.sadd(NODES, &shared.node).await?;
        tracing::info!(node = %shared.node, url = %redact(url), acks = shared.acks, "sharing sessions through Redis");
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let mut tasks = vec![
            tokio::spawn(write_ops(Arc::clone(&shared), jobs_rx)),
            tokio::spawn(heartbeat(beat, Arc::clone(&shared))),
            tokio::spawn(read_messages(client, feed, Arc::clone(&shared))),
            tokio::spawn(reap(Arc::clone(&shared))),
            tokio::spawn(sweep(Arc::clone(&shared))),
        ];
        tasks.extend(follower);
        if shared.acks > 0 {
            tasks.push(tokio::spawn(watch_replicas(Arc::clone(&shared))));
        }
        Ok(Self { shared, next_op: AtomicU64::new(1), jobs, notices_rx: Mutex::new(Some(notices_rx)), tasks })
    }

    /// The session's replica on this node, loaded (and its channel subscribed) if it was not.
    async fn replica(&self, id: &str) -> Result<Arc<Cell>, Refusal> {
        follow(&self.shared, id).await
    }

    /// Hands `op` to the operation writer, in order with every other operation of this node; the
    /// replica must be loaded. Resolves once this node applied it.
    fn hand_over(
        &self,
        id: &str,
        cell: &Cell,
        caller: Option<&Arc<Outbox>>,
        op: &Op,
        answer: Answer,
    ) -> impl Future<Output = Result<(), Refusal>> + Send + 'static {
        cell.used.store(self.shared.now_ms(), Ordering::Relaxed);
        let op_id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let session = SessionId::from(id);
        self.shared.pending.insert(op_id, Mutex::new(Waiter { session, caller: caller.cloned(), answer }));
        let mut cmd = redis::cmd("EVAL");
        let keys = &cell.keys;
        cmd.arg(SUBMIT)
            .arg(4)
            .arg(&keys.snap)
            .arg(&keys.ver)
            .arg(&keys.log)
            .arg(&keys.channel)
            .arg(&self.shared.node)
            .arg(op_id)
            .arg(serde_json::to_string(op).expect("operations serialise"))
            .arg(if self.shared.acks == 0 { self.shared.publish } else { "" });
        let (numbered, version) = oneshot::channel();
        let _ = self.jobs.send(Job { cmd, session: SessionId::from(id), op_id, done: numbered });
        let shared = Arc::clone(&self.shared);
        async move {
            let version =
                version.await.unwrap_or_else(|_| Err(Failed::Refused("the operation writer stopped".into())));
            match version {
                Ok(v) if v > 0 => return Ok(()),
                // Numbered or not: it comes back, or is refused, once Redis answers again
                // ([`settle`]).
                Err(Failed::Uncertain) => return Ok(()),
                _ => {}
            }
            // Not numbered: it will not come back.
            let waiter = shared.pending.remove(&op_id).map(|(_, w)| w.into_inner());
            let refusal = match version {
                Err(Failed::Refused(e)) => Refusal::BrokerDown(e),
                Err(Failed::Uncertain) => unreachable!("returned above"),
                Ok(_) => {
                    Refusal::NoSession(waiter.as_ref().map_or_else(String::new, |w| w.session.to_string()))
                }
            };
            if let Some(waiter) = waiter {
                waiter.answer.fail(refusal.clone());
            }
            Err(refusal)
        }
    }

    /// Submits `op` and waits for this node to apply it.
    async fn submit(
        &self,
        id: &str,
        caller: Option<&Arc<Outbox>>,
        op: Op,
        reply: Reply,
    ) -> Result<Applied<Value>, Refusal> {
        let cell = self.replica(id).await?;
        let (done, outcome) = oneshot::channel();
        let numbered = self.hand_over(id, &cell, caller, &op, Answer::Reply(reply, done));
        outcome_of(numbered, outcome).await
    }

    /// Adds session `id` to this node's held set, unless it is there: before a participant joins
    /// or moves here, so that the others find it if this node dies.
    async fn holding(&self, id: &str) -> Result<(), Refusal> {
        if self.shared.held.contains_key(id) {
            return Ok(());
        }
        let mut conn = self.shared.conn.clone();
        let _: i64 = conn.sadd(held_key(&self.shared.node), id).await.map_err(down)?;
        self.shared.held.insert(SessionId::from(id), ());
        Ok(())
    }

    /// After an operation of this node was applied: forgets what it ended in Redis (the RPC
    /// ids of who left; the session, if it closed).
    async fn clean_up(&self, id: &str, applied: &Applied<Value>, epoch: Option<String>) {
        if applied.left.is_empty() && !applied.closed {
            return;
        }
        let mut cmds = Vec::with_capacity(applied.left.len() + 1);
        for left in &applied.left {
            let mut del = redis::cmd("DEL");
            del.arg(rpc_key(left.rpc_id.as_str()));
            cmds.push(del);
        }
        let mut dropped = None;
        if let (true, Some(epoch)) = (applied.closed, epoch) {
            let mut drop = redis::cmd("EVAL");
            drop.arg(DROP).arg(3).arg(key(id, "snap")).arg(key(id, "ver")).arg(key(id, "log")).arg(epoch);
            dropped = Some(drop);
        }
        let done = async {
            if cmds.is_empty() && dropped.is_none() {
                return Ok(());
            }
            if let Some(drop) = dropped {
                // Unlisted once gone (in a cluster, `sr:sessions` is on another shard).
                let gone: i64 = drop.query_async(&mut self.shared.conn.clone()).await?;
                if gone == 1 {
                    let mut srem = redis::cmd("SREM");
                    srem.arg(SESSIONS).arg(id);
                    cmds.push(srem);
                }
            }
            self.shared.conn.each(cmds).await
        };
        if let Err(e) = done.await {
            tracing::warn!(session = id, error = %e, "could not forget what an operation ended");
        }
    }
}

/// Waits for an operation handed over: numbered by Redis, then applied by this node.
async fn outcome_of(
    numbered: impl Future<Output = Result<(), Refusal>>,
    outcome: oneshot::Receiver<Result<Applied<Value>, Refusal>>,
) -> Result<Applied<Value>, Refusal> {
    numbered.await?;
    match tokio::time::timeout(OP_WAIT, outcome).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Refusal::BrokerDown("the operation was dropped".into())),
        Err(_) => Err(Refusal::BrokerDown("the operation did not come back from Redis in time".into())),
    }
}

impl Answer {
    /// The operation failed before it ran.
    fn fail(self, refusal: Refusal) {
        match self {
            Answer::Reply(_, done) => {
                let _ = done.send(Err(refusal));
            }
            Answer::Resume { done, .. } => {
                let _ = done.send(Err(refusal));
            }
        }
    }
}

/// The session's replica on this node, loaded (and its channel subscribed) if it was not.
async fn follow(shared: &Arc<Shared>, id: &str) -> Result<Arc<Cell>, Refusal> {
    if let Some(cell) = shared.replicas.get(id).map(|c| Arc::clone(&c)) {
        if cell.live.load(Ordering::Acquire) {
            return Ok(cell);
        }
    }
    let session = SessionId::from(id);
    let (cell, first) = match shared.replicas.entry(session.clone()) {
        dashmap::Entry::Occupied(o) => (Arc::clone(o.get()), false),
        dashmap::Entry::Vacant(v) => {
            let cell = Arc::new(Cell {
                keys: Keys::of(id),
                replica: Mutex::new(None),
                live: AtomicBool::new(false),
                used: AtomicU64::new(shared.now_ms()),
                early: Mutex::new(Vec::new()),
                applied: watch::channel(0).0,
            });
            v.insert(Arc::clone(&cell));
            (cell, true)
        }
    };
    if !first {
        // Loaded, or being loaded by another caller: wait for it.
        let mut loaded = cell.applied.subscribe();
        loop {
            let state = cell.replica.lock().as_ref().map(|r| r.gone);
            match state {
                Some(false) => return Ok(cell),
                // Closed: a session created again under its id is another one.
                Some(true) => {
                    shared.replicas.remove_if(&session, |_, c| Arc::ptr_eq(c, &cell));
                    return Box::pin(follow(shared, id)).await;
                }
                None => {}
            }
            if !shared.replicas.get(&session).is_some_and(|c| Arc::ptr_eq(&c, &cell)) {
                // The load failed: try again as the first.
                return Box::pin(follow(shared, id)).await;
            }
            if tokio::time::timeout(OP_WAIT, loaded.changed()).await.is_err() {
                return Err(Refusal::BrokerDown(format!("session {id}: loading took too long")));
            }
        }
    }
    let loaded = async {
        subscribe(shared, id).await?;
        load(&shared.conn, id).await
    }
    .await;
    let loaded = match loaded {
        Ok(Some(loaded)) => loaded,
        Ok(None) | Err(_) => {
            shared.replicas.remove_if(&session, |_, c| Arc::ptr_eq(c, &cell));
            cell.applied.send_modify(|_| {});
            let _ = Box::pin(unsubscribe_if_unfollowed(shared, &session)).await;
            return Err(match loaded {
                Err(e) => e,
                _ => Refusal::NoSession(id.to_owned()),
            });
        }
    };
    let Loaded { epoch, ver, room, log } = loaded;
    let mut replica = Replica {
        epoch,
        room,
        ver,
        snap_at: ver,
        ahead: BTreeMap::new(),
        filling: false,
        roster: Roster::new(),
        held: Held::default(),
        held_joins: true,
        recent: Recent::default(),
        gone: false,
    };
    for message in log {
        replica.ahead.insert(message.ver, message);
    }
    {
        let mut guard = cell.replica.lock();
        for message in cell.early.lock().drain(..) {
            replica.ahead.insert(message.ver, message);
        }
        *guard = Some(replica);
        cell.live.store(true, Ordering::Release);
    }
    // The log, then whatever the channel brought meanwhile.
    apply_ahead(shared, &session, &cell);
    Ok(cell)
}

/// Subscribes to a session's channel unless this node already does.
async fn subscribe(shared: &Shared, id: &str) -> Result<(), Refusal> {
    let name = channel(id);
    let _gate = shared.gate.lock().await;
    if shared.subscribed.lock().contains(&name) {
        return Ok(());
    }
    if let Link::Cluster(conn) = &shared.conn {
        conn.ssubscribe(&name).await.map_err(down)?;
    } else {
        let sink = shared.sink.lock().clone();
        let Some(mut sink) = sink else { return Err(Refusal::BrokerDown("Redis is unreachable".into())) };
        sink.subscribe(&name).await.map_err(down)?;
    }
    shared.subscribed.lock().insert(name);
    Ok(())
}

/// Leaves a session's channel if this node no longer follows it.
async fn unsubscribe_if_unfollowed(shared: &Shared, session: &SessionId) -> Result<(), Refusal> {
    let _gate = shared.gate.lock().await;
    let name = channel(session.as_str());
    if shared.replicas.contains_key(session) || !shared.subscribed.lock().remove(&name) {
        return Ok(());
    }
    if let Link::Cluster(conn) = &shared.conn {
        conn.sunsubscribe(&name).await.map_err(down)?;
        return Ok(());
    }
    let sink = shared.sink.lock().clone();
    if let Some(mut sink) = sink {
        sink.unsubscribe(&name).await.map_err(down)?;
    }
    Ok(())
}

/// Applies the messages waiting in the replica's `ahead` that follow its version, in order; if
/// one is missing, reads the log for it (once at a time).
fn apply_ahead(shared: &Arc<Shared>, session: &SessionId, cell: &Arc<Cell>) {
    let mut batch = Batch::default();
    let missing = {
        let _deferring = crate::outbox::Deferring::begin();
        let mut guard = cell.replica.lock();
        let Some(replica) = guard.as_mut() else { return };
        let mut held = std::mem::take(&mut replica.held);
        while let Some(entry) = replica.ahead.first_entry() {
            if *entry.key() <= replica.ver {
                entry.remove();
                continue;
            }
            if *entry.key() != replica.ver + 1 {
                break;
            }
            let message = entry.remove();
            apply_one(shared, session, replica, message, &mut held, &mut batch);
            if replica.gone {
                break;
            }
        }
        let members = replica.roster.len();
        let wait = replica.held_joins && !replica.gone && !held.is_empty() && !held.ripe(members);
        match held.due(members) {
            Some(due) if wait => {
                if !held.armed {
                    held.armed = true;
                    batch.release_at = Some(due);
                }
            }
            _ => {
                held.release(&replica.roster, &mut batch.applied);
                held.armed = false;
                replica.held_joins = true;
            }
        }
        replica.held = held;
        let missing = !replica.gone && !replica.ahead.is_empty() && !replica.filling;
        if missing {
            replica.filling = true;
        }
        cell.applied.send_replace(replica.ver);
        missing.then_some(replica.ver + 1)
    };
    let release_at = batch.release_at;
    batch.finish(shared, session, cell);
    if let Some(from) = missing {
        let (shared, session, cell) = (Arc::clone(shared), session.clone(), Arc::clone(cell));
        tokio::spawn(async move { fill(&shared, &session, &cell, from).await });
    }
    if let Some(due) = release_at {
        let (shared, session, cell) = (Arc::clone(shared), session.clone(), Arc::clone(cell));
        tokio::spawn(async move { release_when_due(&shared, &session, &cell, due).await });
    }
}

/// Pushes what joins held back in a replica once it is due (first at `due`): a task armed by the
/// batch that left it held.
async fn release_when_due(shared: &Arc<Shared>, session: &SessionId, cell: &Arc<Cell>, mut due: Instant) {
    loop {
        tokio::time::sleep_until(due.into()).await;
        let mut batch = Batch::default();
        let next = {
            let _deferring = crate::outbox::Deferring::begin();
            let mut guard = cell.replica.lock();
            let Some(replica) = guard.as_mut() else { return };
            let members = replica.roster.len();
            match replica.held.due(members) {
                Some(at)
                    if at > Instant::now() && !replica.held.is_empty() && !replica.held.ripe(members) =>
                {
                    Some(at)
                }
                _ => {
                    replica.release(&mut batch.applied);
                    None
                }
            }
        };
        batch.finish(shared, session, cell);
        match next {
            Some(at) => due = at,
            None => return,
        }
    }
}

impl Replica {
    /// Pushes what is held back, now.
    fn release(&mut self, applied: &mut Applied<()>) {
        self.held.release(&self.roster, applied);
        self.held.armed = false;
        self.held_joins = true;
    }
}

/// Reads the log from version `from` on for a replica that missed messages, and applies them.
async fn fill(shared: &Arc<Shared>, session: &SessionId, cell: &Arc<Cell>, from: u64) {
    let mut pause = Duration::from_millis(50);
    loop {
        match read_log(&shared.conn, session.as_str(), from).await {
            Ok(log) => {
                let complete = log.first().is_none_or(|m| m.ver == from);
                {
                    let mut guard = cell.replica.lock();
                    let Some(replica) = guard.as_mut() else { return };
                    replica.filling = false;
                    for message in log {
                        replica.ahead.insert(message.ver, message);
                    }
                    if !complete && replica.ahead.first_key_value().is_some_and(|(v, _)| *v > replica.ver + 1)
                    {
                        // The log no longer reaches back that far: what this node's participants
                        // missed meanwhile is lost to them; the replica goes on from the log.
                        tracing::error!(%session, from, "a replica fell behind the log: skipping to it");
                        if let Some((&v, _)) = replica.ahead.first_key_value() {
                            replica.ver = v - 1;
                        }
                    }
                }
                apply_ahead(shared, session, cell);
                return;
            }
            Err(e) => {
                shared.troubled();
                tracing::warn!(%session, error = %e, "cannot read a session's log: retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                if !shared.replicas.contains_key(session) {
                    return;
                }
            }
        }
    }
}

/// An outcome, and whom to tell.
type Outcome<T> = (oneshot::Sender<T>, T);

/// What applying messages leaves to do once the replica's lock is released.
#[derive(Default)]
struct Batch {
    /// Pushes and evictions found on this node ([`Applied::slow`]).
    applied: Applied<()>,
    /// Outcomes for this node's operations.
    outcomes: Vec<Outcome<Result<Applied<Value>, Refusal>>>,
    resumed: Vec<Outcome<Result<Resumed, Refusal>>>,
    /// A snapshot to write: epoch, version, room.
    snapshot: Option<(String, u64, String)>,
    /// What joins held back is to be released then, by a task.
    release_at: Option<Instant>,
}

impl Default for Applied<()> {
    fn default() -> Self {
        Applied { value: (), slow: Vec::new(), left: Vec::new(), delivered: 0, closed: false, held: None }
    }
}

impl Batch {
    fn finish(self, shared: &Arc<Shared>, session: &SessionId, cell: &Arc<Cell>) {
        for who in self.applied.slow {
            let _ = shared.notices.send(Notice::Lost {
                session: session.clone(),
                who,
                node: shared.node.clone(),
            });
        }
        for (done, outcome) in self.outcomes {
            let _ = done.send(outcome);
        }
        for (done, outcome) in self.resumed {
            let _ = done.send(outcome);
        }
        if let Some((epoch, ver, room)) = self.snapshot {
            let (conn, id) = (shared.conn.clone(), session.to_string());
            tokio::spawn(async move {
                let written: redis::RedisResult<i64> = redis::cmd("EVAL")
                    .arg(SNAPSHOT)
                    .arg(2)
                    .arg(key(&id, "snap"))
                    .arg(key(&id, "log"))
                    .arg(epoch)
                    .arg(ver)
                    .arg(room)
                    .query_async(&mut conn.clone())
                    .await;
                if let Err(e) = written {
                    tracing::warn!(session = id, error = %e, "could not write a session's snapshot");
                }
            });
        }
        let gone = cell.replica.lock().as_ref().is_some_and(|r| r.gone);
        if gone {
            cell.live.store(false, Ordering::Release);
        }
        if gone && shared.replicas.remove_if(session, |_, c| Arc::ptr_eq(c, cell)).is_some() {
            cell.applied.send_modify(|_| {});
            let (shared, session) = (Arc::clone(shared), session.clone());
            tokio::spawn(async move {
                if let Err(e) = unsubscribe_if_unfollowed(&shared, &session).await {
                    tracing::debug!(%session, error = %e, "unsubscribing failed (a reconnection resubscribes only what is left)");
                }
            });
        }
    }
}

/// Applies one operation to the replica, delivering its effects to this node's participants
/// (notifications to everyone and replies held in `held`, to be pushed together).
fn apply_one(
    shared: &Shared,
    session: &SessionId,
    replica: &mut Replica,
    message: Message,
    held: &mut Held,
    batch: &mut Batch,
) {
    replica.ver = message.ver;
    let waiter = if message.node == shared.node {
        shared.pending.remove(&message.op_id).map(|(_, w)| w.into_inner())
    } else {
        None
    };
    if message.epoch != replica.epoch {
        tracing::warn!(%session, "an operation of another incarnation of the session: ignored");
        if let Some(waiter) = waiter {
            waiter.answer.fail(Refusal::NoSession(session.to_string()));
        }
        return;
    }
    let op = match serde_json::from_str::<Op>(&message.op) {
        Ok(op) => op,
        Err(e) => {
            tracing::error!(%session, ver = message.ver, error = %e, "an unreadable operation: skipped");
            if let Some(waiter) = waiter {
                waiter.answer.fail(Refusal::BrokerDown(format!("unreadable operation: {e}")));
            }
            return;
        }
    };
    let before = replica.room.participant_count();
    let joining = matches!(op, Op::Join(_));
    let ran = if replica.room.is_closed() {
        Err(Refusal::NoSession(session.to_string()))
    } else {
        op.run(&mut replica.room)
    };
    let (caller, answer) = match waiter {
        Some(w) => (w.caller, Some(w.answer)),
        None => (None, None),
    };
    let (value, effects) = match ran {
        Ok(ran) => ran,
        Err(refusal) => {
            if let Some(answer) = answer {
                match answer {
                    Answer::Reply(_, done) => batch.outcomes.push((done, Err(refusal))),
                    Answer::Resume { done, .. } => batch.resumed.push((done, Err(Refusal::Reconnection))),
                }
            }
            return;
        }
    };
    let closed = replica.room.is_closed();
    let mut applied =
        Applied { value: (), slow: Vec::new(), left: Vec::new(), delivered: 0, closed, held: None };
    let mut present = before;
    for effect in &effects {
        match effect {
            Effect::Notify { to, seq, frame } => {
                replica.recent.keep(*seq, to, frame);
                applied.delivered += match to {
                    Audience::All => present,
                    Audience::AllBut(_) => present.saturating_sub(1),
                    Audience::Only(ids) => ids.len(),
                };
            }
            Effect::Enter(_) => present += 1,
            Effect::Leave { who, rpc_id, reason, stay, .. } => {
                present = present.saturating_sub(1);
                let (who, rpc_id, reason, stay) = (who.clone(), rpc_id.clone(), reason.clone(), stay.clone());
                applied.left.push(super::Left { who, rpc_id, reason, stay });
            }
            Effect::Reply | Effect::Moved { .. } => {}
        }
    }
    // The caller's reply; a reconnection's, with its replay, goes first of all.
    let mut reply = None;
    let mut outcome = None;
    match answer {
        Some(Answer::Reply(r, done)) => {
            reply = r.build(&value, &replica.room);
            outcome = Some(done);
        }
        Some(Answer::Resume { last_seq, build, done }) => {
            held.release(&replica.roster, &mut batch.applied);
            let who = match &effects[..] {
                [Effect::Moved { who, .. }] => who.clone(),
                _ => ConnectionId::from(""),
            };
            let (recovered, frames) = match last_seq {
                Some(last) => {
                    let (recovered, frames) = replica.recent.missed(&who, last, replica.room.last_seq());
                    (Some(recovered), frames)
                }
                None => (None, Vec::new()),
            };
            let resumed = Resumed { recovered, replayed: frames.len() as u64 };
            if let Some(outbox) = &caller {
                outbox.push(Out::Frame(build(resumed)));
                for frame in frames {
                    outbox.push(Out::Frame(frame));
                }
                if let Some(last) = last_seq {
                    outbox.ack(last);
                }
            }
            batch.resumed.push((done, Ok(resumed)));
        }
        None => {}
    }
    let roster = &mut replica.roster;
    for effect in effects {
        match effect {
            Effect::Notify { to: Audience::All, frame, .. } => held.hold(frame, For::First(roster.len())),
            Effect::Reply => {
                let (Some(caller), Some(out)) = (&caller, reply.take()) else { continue };
                if joining {
                    // The joiner entered the roster last: nothing held is for it, and what is
                    // held after it comes after its answer.
                    caller.push(out);
                    continue;
                }
                match (out, roster.values().position(|o| Arc::ptr_eq(o, caller))) {
                    (Out::Frame(frame), Some(at)) => held.hold(frame, For::At(at)),
                    (out, _) => {
                        held.release(roster, &mut batch.applied);
                        caller.push(out);
                    }
                }
            }
            // A joiner enters the roster at its end: what is held keeps its places (and is not
            // for it), so nothing needs pushing first.
            Effect::Enter(who) if joining => {
                if let Some(outbox) = &caller {
                    roster.insert(who, Arc::clone(outbox));
                }
            }
            Effect::Moved { who, node } if node != shared.node => {
                // Its new socket is on another node: this one's is closed.
                held.release(roster, &mut batch.applied);
                if let Some(old) = roster.shift_remove(&who) {
                    old.push(Out::Order(Order::Close { code: 1000, reason: "replaced by a reconnection" }));
                }
            }
            effect => {
                held.release(roster, &mut batch.applied);
                let mut unused = None;
                deliver(roster, effect, caller.as_ref(), &mut unused, shared.linger, &mut batch.applied);
            }
        }
    }
    if closed || held.too_much(shared.most_held) {
        held.release(roster, &mut batch.applied);
    }
    if !joining && !held.is_empty() {
        replica.held_joins = false;
    }
    if let Some(done) = outcome {
        let Applied { slow, left, delivered, closed, held, .. } = applied;
        batch.outcomes.push((done, Ok(Applied { value, slow, left, delivered, closed, held })));
    }
    if closed {
        held.release(roster, &mut batch.applied);
        roster.clear();
        replica.gone = true;
        return;
    }
    if replica.ver >= replica.snap_at + snapshot_every(replica.room.connection_count()) {
        replica.snap_at = replica.ver;
        if message.node == shared.node {
            let room = serde_json::to_string(&replica.room).expect("rooms serialise");
            batch.snapshot = Some((replica.epoch.clone(), replica.ver, room));
        }
    }
}

impl Broker for RedisBroker {
    async fn create(&self, room: Room) -> Result<(), Refusal> {
        let id = room.id.clone();
        let text = serde_json::to_string(&room).expect("rooms serialise");
        let epoch = random_id("", 12);
        // Listed first: a session is never without its entry in `sr:sessions` (an entry without
        // a session is pruned by the reaper).
        let listed: redis::RedisResult<()> = again(&self.shared.conn, |mut conn| {
            let id = id.clone();
            async move { conn.sadd(SESSIONS, id.as_str()).await }
        })
        .await;
        listed.map_err(down)?;
        // Repeated if the connection was being re-established (nothing was stored then).
        let durable = if self.shared.acks > 0 { "1" } else { "0" };
        let created: i64 = again(&self.shared.conn, |mut conn| {
            let (text, id, epoch) = (text.clone(), id.clone(), epoch.clone());
            async move {
                redis::cmd("EVAL")
                    .arg(CREATE)
                    .arg(2)
                    .arg(key(id.as_str(), "snap"))
                    .arg(key(id.as_str(), "ver"))
                    .arg(epoch)
                    .arg(text)
                    .arg(durable)
                    .query_async(&mut conn)
                    .await
            }
        })
        .await
        .map_err(down)?;
        if created == 0 {
            return Err(Refusal::SessionExists);
        }
        Ok(())
    }

    async fn apply(
        &self,
        id: &str,
        caller: Option<&Arc<Outbox>>,
        op: Op,
        reply: Reply,
    ) -> Result<Applied<Value>, Refusal> {
        if matches!(op, Op::Join { .. }) {
            self.holding(id).await?;
        }
        let applied = self.submit(id, caller, op, reply).await?;
        if !applied.left.is_empty() || applied.closed {
            let epoch =
                self.shared.replicas.get(id).and_then(|c| c.replica.lock().as_ref().map(|r| r.epoch.clone()));
            // (A closed session's replica is gone already: its epoch is read from Redis.)
            let epoch = match epoch {
                Some(epoch) => Some(epoch),
                None => {
                    let mut conn = self.shared.conn.clone();
                    conn.hget(key(id, "snap"), "epoch").await.ok().flatten()
                }
            };
            self.clean_up(id, &applied, epoch).await;
        }
        Ok(applied)
    }

    async fn signal(
        &self,
        id: &str,
        signal: SignalOp<'_>,
        caller: Option<&Arc<Outbox>>,
        reply: Option<Out>,
    ) -> Result<Applied<()>, Refusal> {
        let op = signal.to_op(crate::util::now_ms());
        let applied = self.submit(id, caller, op, Reply::Ready(reply)).await?;
        Ok(Applied { value: (), ..applied.map_value() })
    }

    fn start_signal(
        &self,
        id: &str,
        signal: SignalOp<'_>,
        caller: &Arc<Outbox>,
        reply: Option<Out>,
    ) -> Option<Ticket> {
        let cell = self.shared.replicas.get(id).map(|c| Arc::clone(&c))?;
        if !cell.live.load(Ordering::Acquire) {
            return None;
        }
        let op = signal.to_op(crate::util::now_ms());
        let (done, outcome) = oneshot::channel();
        let numbered = self.hand_over(id, &cell, Some(caller), &op, Answer::Reply(Reply::Ready(reply), done));
        Some(Box::pin(async move { outcome_of(numbered, outcome).await.map(Applied::map_value) }))
    }

    async fn read<R: Send>(&self, id: &str, f: impl FnOnce(&Room) -> R + Send) -> Option<R> {
        let cell = self.shared.replicas.get(id).map(|c| Arc::clone(&c));
        if let Some(cell) = cell.filter(|c| c.replica.lock().is_some()) {
            // Everything numbered before the read is applied first.
            let mut conn = self.shared.conn.clone();
            let latest: Option<u64> = if self.shared.acks > 0 {
                // (Numbered operations not yet published may yet be lost to a failover.)
                conn.hget(key(id, "snap"), "pub").await.ok().flatten()
            } else {
                conn.get(key(id, "ver")).await.ok().flatten()
            };
            let mut applied = cell.applied.subscribe();
            let latest = latest.unwrap_or(0);
            let deadline = tokio::time::Instant::now() + OP_WAIT;
            while *applied.borrow_and_update() < latest {
                if cell.replica.lock().as_ref().is_none_or(|r| r.gone) {
                    return None;
                }
                if tokio::time::timeout_at(deadline, applied.changed()).await.is_err() {
                    tracing::warn!(session = id, "a replica is behind: reading it as it is");
                    break;
                }
            }
            let guard = cell.replica.lock();
            return guard.as_ref().filter(|r| !r.gone && !r.room.is_closed()).map(|r| f(&r.room));
        }
        // Not followed here: read from Redis once.
        match load(&self.shared.conn, id).await {
            Ok(Some(Loaded { mut room, log, epoch, .. })) => {
                for message in log {
                    if message.epoch != epoch || room.is_closed() {
                        continue;
                    }
                    if let Ok(op) = serde_json::from_str::<Op>(&message.op) {
                        let _ = op.run(&mut room);
                    }
                }
                (!room.is_closed()).then(|| f(&room))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(session = id, error = %e, "cannot read a session");
                None
            }
        }
    }

    async fn sessions(&self) -> Vec<SessionId> {
        let ids: redis::RedisResult<Vec<String>> =
            again(&self.shared.conn, |mut conn| async move { conn.smembers(SESSIONS).await }).await;
        match ids {
            Ok(ids) => ids.into_iter().map(SessionId::from).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list sessions");
                Vec::new()
            }
        }
    }

    async fn bind_rpc(&self, rpc: RpcSessionId, session: SessionId, who: ConnectionId) {
        let mut conn = self.shared.conn.clone();
        let value = serde_json::to_string(&(session, who)).expect("ids serialise");
        let set: redis::RedisResult<()> = conn.set(rpc_key(rpc.as_str()), value).await;
        if let Err(e) = set {
            tracing::warn!(error = %e, "cannot record a participant for reconnection");
        }
    }

    async fn find_rpc(&self, rpc: &RpcSessionId) -> Option<(SessionId, ConnectionId)> {
        let key = rpc_key(rpc.as_str());
        let value: Option<String> = again(&self.shared.conn, |mut conn| {
            let key = key.clone();
            async move { conn.get(key).await }
        })
        .await
        .ok()?;
        serde_json::from_str(&value?).ok()
    }

    async fn outbox(&self, session: &str, who: &ConnectionId) -> Option<Arc<Outbox>> {
        let cell = self.shared.replicas.get(session).map(|c| Arc::clone(&c))?;
        let guard = cell.replica.lock();
        guard.as_ref()?.roster.get(who).cloned()
    }

    async fn session_count(&self) -> usize {
        again(&self.shared.conn, |mut conn| async move { conn.scard(SESSIONS).await }).await.unwrap_or(0)
    }

    async fn hand_off(&self, session: &str, who: &ConnectionId) {
        let Some(cell) = self.shared.replicas.get(session).map(|c| Arc::clone(&c)) else { return };
        // Everything numbered up to here was queued for it; nothing after will be.
        let mut batch = Batch::default();
        let written = {
            let _deferring = crate::outbox::Deferring::begin();
            let mut guard = cell.replica.lock();
            let Some(replica) = guard.as_mut() else { return };
            // (What is held is for places in the roster: pushed before one leaves it.)
            replica.release(&mut batch.applied);
            replica.roster.shift_remove(who);
            replica.room.last_seq()
        };
        batch.finish(&self.shared, &SessionId::from(session), &cell);
        let mut conn = self.shared.conn.clone();
        let recorded: redis::RedisResult<()> =
            conn.set_ex(drained_key(session, who.as_str()), written, DRAINED_TTL.as_secs()).await;
        if let Err(e) = recorded {
            tracing::warn!(session, connection = %who, error = %e, "cannot record how far a drained socket was written");
        }
    }

    async fn retire(&self) {
        let mut conn = self.shared.conn.clone();
        // (Its held set stays: the others reap what is left of its participants, then forget it.)
        let gone: redis::RedisResult<()> = conn.del(node_key(&self.shared.node)).await;
        if let Err(e) = gone {
            tracing::warn!(error = %e, "cannot tell the other nodes that this one stops");
        }
    }

    fn node(&self) -> &str {
        &self.shared.node
    }

    fn shared(&self) -> bool {
        true
    }

    // Operations here are published to every node following the session, which applies and
    // pushes them as they come: nothing is held back.

    fn release(&self, _id: &str) -> Option<Result<Applied<()>, Refusal>> {
        None
    }

    fn after_join(&self, _id: &str, _mark: u64) -> Later {
        Later::Nothing
    }

    fn release_due(&self, _id: &str) -> Later {
        Later::Nothing
    }

    async fn adopt(
        &self,
        session: &str,
        who: &ConnectionId,
        outbox: &Arc<Outbox>,
        last_seq: Option<u64>,
        reply: Box<dyn FnOnce(Resumed) -> Utf8Bytes + Send>,
    ) -> Result<Resumed, Refusal> {
        let cell = self.replica(session).await.map_err(|_| Refusal::Reconnection)?;
        // A client that does not say what it got (openvidu-browser) resumes after what a
        // drained node wrote to it.
        let last_seq = match last_seq {
            Some(last) => Some(last),
            None => {
                let mut conn = self.shared.conn.clone();
                redis::cmd("GETDEL")
                    .arg(drained_key(session, who.as_str()))
                    .query_async::<Option<u64>>(&mut conn)
                    .await
                    .ok()
                    .flatten()
            }
        };
        self.holding(session).await?;
        let (done, resumed) = oneshot::channel();
        let op = Op::Relocate { who: who.clone(), node: self.shared.node.clone() };
        let numbered = self.hand_over(
            session,
            &cell,
            Some(outbox),
            &op,
            Answer::Resume { last_seq, build: reply, done },
        );
        numbered.await?;
        let result = match tokio::time::timeout(OP_WAIT, resumed).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => {
                Err(Refusal::BrokerDown("the reconnection did not come back from Redis".into()))
            }
        };
        if let Ok(r) = &result {
            tracing::info!(session, connection = %who, recovered = ?r.recovered, replayed = r.replayed, "participant moved to this node");
        }
        result
    }

    fn notices(&self) -> Option<mpsc::UnboundedReceiver<Notice>> {
        self.notices_rx.lock().take()
    }
}

impl Applied<Value> {
    fn map_value(self) -> Applied<()> {
        let Applied { slow, left, delivered, closed, held, .. } = self;
        Applied { value: (), slow, left, delivered, closed, held }
    }
}

/// A [`SUBMIT`] for the operation writer; `done` gets its answer.
struct Job {
    cmd: redis::Cmd,
    session: SessionId,
    op_id: u64,
    done: oneshot::Sender<Result<i64, Failed>>,
}

/// Why an operation was not numbered.
enum Failed {
    /// Redis refused it (the message says why): it was not numbered.
    Refused(String),
    /// The connection failed while it was on its way, with replicas: it may have been numbered
    /// (and may survive a failover); [`settle`] finds out.
    Uncertain,
}

/// Sends the operations handed over ([`RedisBroker::hand_over`]) to Redis in the order handed
/// over: whatever waits when a round trip ends goes in the next pipeline, so a sender with many
/// signals on their way, or many senders, cost one round trip per batch instead of one each. In
/// a cluster, a pipeline holds one session's operations (its keys' slot), and the sessions'
/// pipelines run concurrently.
///
/// With replicas, a pipeline numbers its operations, waits for the replicas to have them
/// (`WAIT`), then publishes them ([`RELEASE`]): an operation any node applied is on a replica
/// when its primary dies.
async fn write_ops(shared: Arc<Shared>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(OP_BATCH);
    while jobs.recv_many(&mut batch, OP_BATCH).await > 0 {
        if !shared.sharded {
            write_batch(&shared, std::mem::take(&mut batch)).await;
            continue;
        }
        let mut by_session: IndexMap<SessionId, Vec<Job>> = IndexMap::new();
        for job in batch.drain(..) {
            by_session.entry(job.session.clone()).or_default().push(job);
        }
        futures_util::future::join_all(by_session.into_values().map(|jobs| write_batch(&shared, jobs))).await;
    }
}

/// Adds to `pipe` what publishes the operations numbered before it: `WAIT` for the replicas
/// (unless they are known to be missing), then [`RELEASE`] for each session.
fn add_release<'a>(
    shared: &Shared,
    pipe: &mut redis::Pipeline,
    sessions: impl Iterator<Item = &'a SessionId>,
) {
    if !shared.degraded.load(Ordering::Relaxed) {
        pipe.cmd("WAIT").arg(shared.acks).arg(super::link::WAIT_REPLICAS.as_millis() as u64);
    }
    for session in sessions {
        let id = session.as_str();
        pipe.cmd("EVAL")
            .arg(RELEASE)
            .arg(4)
            .arg(key(id, "snap"))
            .arg(key(id, "ver"))
            .arg(key(id, "log"))
            .arg(channel(id))
            .arg(shared.publish);
    }
}

/// One pipeline of operations (see [`write_ops`]).
async fn write_batch(shared: &Arc<Shared>, jobs: Vec<Job>) {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut waiting = Vec::with_capacity(jobs.len());
    let mut sessions: IndexMap<SessionId, Vec<u64>> = IndexMap::new();
    for job in jobs {
        pipe.add_command(job.cmd);
        sessions.entry(job.session).or_default().push(job.op_id);
        waiting.push(job.done);
    }
    let waited = shared.acks > 0 && !shared.degraded.load(Ordering::Relaxed);
    if shared.acks > 0 {
        add_release(shared, &mut pipe, sessions.keys());
    }
    match pipe.query_async::<Vec<redis::Value>>(&mut shared.conn.clone()).await {
        Ok(answers) => {
            let mut answers = answers.into_iter();
            for done in waiting {
                let answer = match answers.next() {
                    Some(redis::Value::ServerError(e)) => Err(Failed::Refused(e.to_string())),
                    Some(v) => redis::from_redis_value::<i64>(v).map_err(|e| Failed::Refused(e.to_string())),
                    None => Err(Failed::Refused("no answer from Redis".to_owned())),
                };
                let _ = done.send(answer);
            }
            if waited {
                let acknowledged = answers.next().and_then(|v| redis::from_redis_value::<usize>(v).ok());
                if acknowledged.is_some_and(|n| n < shared.acks)
                    && !shared.degraded.swap(true, Ordering::Relaxed)
                {
                    tracing::error!(
                        wanted = shared.acks,
                        acknowledged,
                        "Redis replicas did not acknowledge in time: publishing without them until they are back \
                         (a failover meanwhile may lose the latest operations)"
                    );
                }
            }
        }
        Err(e) if shared.acks > 0 => {
            shared.troubled();
            tracing::warn!(error = %e, "Redis failed while numbering operations: settling them once it is back");
            for done in waiting {
                let _ = done.send(Err(Failed::Uncertain));
            }
            tokio::spawn(settle(Arc::clone(shared), sessions));
        }
        Err(e) => {
            shared.troubled();
            let e = e.to_string();
            for done in waiting {
                let _ = done.send(Err(Failed::Refused(e.clone())));
            }
        }
    }
}

/// After the connection failed under operations of this node (with replicas): once Redis
/// answers again (its primary, or the replica promoted in its place), publishes whatever of
/// theirs was numbered and survived, lets the replica here apply it, and refuses the rest to
/// their callers ("retry"): each operation ends applied or refused, never both, never lost.
async fn settle(shared: Arc<Shared>, sessions: IndexMap<SessionId, Vec<u64>>) {
    let deadline = tokio::time::Instant::now() + OP_WAIT;
    for (session, ops) in sessions {
        let mut pause = Duration::from_millis(50);
        let last = loop {
            let mut pipe = redis::pipe();
            add_release(&shared, &mut pipe, std::iter::once(&session));
            match pipe.query_async::<Vec<redis::Value>>(&mut shared.conn.clone()).await {
                Ok(answers) => {
                    break answers.last().and_then(|v| redis::from_redis_value_ref::<u64>(v).ok());
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%session, error = %e, "Redis is not back yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(_) => break None,
            }
        };
        if let (Some(last), Some(cell)) = (last, shared.replicas.get(&session).map(|c| Arc::clone(&c))) {
            let mut applied = cell.applied.subscribe();
            let _ = tokio::time::timeout_at(deadline, applied.wait_for(|v| *v >= last)).await;
        }
        for op_id in ops {
            if let Some((_, waiter)) = shared.pending.remove(&op_id) {
                waiter.into_inner().answer.fail(Refusal::BrokerDown(
                    "Redis failed over while the operation was on its way, and it was not applied: retry"
                        .into(),
                ));
            }
        }
    }
}

/// With replicas, after they failed to acknowledge: looks every second whether enough are
/// connected again (to the primary, or to each cluster primary), then waits for them again.
async fn watch_replicas(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if !shared.degraded.load(Ordering::Relaxed) {
            continue;
        }
        let fewest = if shared.sharded {
            let nodes: redis::RedisResult<String> =
                redis::cmd("CLUSTER").arg("NODES").query_async(&mut shared.conn.clone()).await;
            nodes.ok().map(|nodes| fewest_cluster_replicas(&nodes))
        } else {
            let info: redis::RedisResult<String> =
                redis::cmd("INFO").arg("replication").query_async(&mut shared.conn.clone()).await;
            info.ok().and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("connected_slaves:"))
                    .and_then(|n| n.trim().parse().ok())
            })
        };
        if fewest.is_some_and(|n| n >= shared.acks) {
            shared.degraded.store(false, Ordering::Relaxed);
            tracing::info!(replicas = fewest, "Redis replicas are back: operations wait for them again");
        }
    }
}

/// The fewest connected replicas any primary holding slots has, from `CLUSTER NODES`.
fn fewest_cluster_replicas(nodes: &str) -> usize {
    let lines: Vec<Vec<&str>> =
        nodes.lines().map(|l| l.split(' ').collect()).filter(|f: &Vec<&str>| f.len() >= 8).collect();
    let primaries = lines.iter().filter(|f| f[2].contains("master") && !f[2].contains("fail") && f.len() > 8);
    primaries
        .map(|p| {
            lines
                .iter()
                .filter(|f| {
                    f[2].contains("slave") && !f[2].contains("fail") && f[3] == p[0] && f[7] == "connected"
                })
                .count()
        })
        .min()
        .unwrap_or(0)
}

/// Keeps this node's heartbeat alive.
async fn heartbeat(mut conn: Link, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut was_down = false;
    let node = &shared.node;
    // Sessions found without participants here at the last beat: taken out of this node's
    // held set if still without at this one (a join adds its session just before it runs).
    let mut empty: HashSet<SessionId> = HashSet::new();
    loop {
        tick.tick().await;
        let beat: redis::RedisResult<()> = conn.set_ex(node_key(node), 1, NODE_TTL.as_secs()).await;
        if beat.is_err() {
            shared.troubled();
        } else {
            let now_empty: HashSet<SessionId> = shared
                .replicas
                .iter()
                .filter(|e| e.value().replica.lock().as_ref().is_some_and(|r| r.roster.is_empty()))
                .map(|e| e.key().clone())
                .collect();
            let gone: Vec<&SessionId> = now_empty.intersection(&empty).collect();
            if !gone.is_empty() {
                for id in &gone {
                    shared.held.remove(*id);
                }
                let ids: Vec<&str> = gone.iter().map(|id| id.as_str()).collect();
                let _: redis::RedisResult<i64> = conn.srem(held_key(node), ids).await;
            }
            empty = now_empty;
        }
        match beat {
            Ok(()) if was_down => {
                tracing::info!(%node, "Redis is back");
                was_down = false;
            }
            Ok(()) => {}
            Err(e) if !was_down => {
                tracing::error!(%node, error = %e, "Redis is unreachable: retrying");
                was_down = true;
            }
            Err(_) => {}
        }
    }
}

/// At most this many messages are read before they are applied.
const MAX_BATCH: usize = 256;

/// Applies every message of the followed sessions, in order. A plain feed that ends (Redis went
/// away, or Sentinel named another primary) is replaced, with backoff, by a new subscription to
/// the same channels, then each replica fills from the log what it missed; a cluster's feed
/// resubscribes by itself, and a session's replica fills from the log when its channel is
/// subscribed again.
async fn read_messages(client: Option<redis::Client>, mut feed: Feed, shared: Arc<Shared>) {
    let mut batch: Vec<(SessionId, Message)> = Vec::new();
    let mut switches = shared.conn.switches();
    loop {
        loop {
            let event = match &mut switches {
                Some(switches) => tokio::select! {
                    event = feed.next() => event,
                    _ = switches.changed() => {
                        if let Link::Cluster(conn) = &shared.conn {
                            // A renewed cluster connection: subscribe its channels again (each
                            // replica fills from the log what it missed when its channel is back).
                            let channels: Vec<String> = shared.subscribed.lock().iter().cloned().collect();
                            for name in channels {
                                if let Err(e) = conn.ssubscribe(&name).await {
                                    // (The shard may not have its new primary yet: again.)
                                    tracing::debug!(channel = name, error = %e, "cannot subscribe again yet");
                                    conn.renew_soon();
                                    break;
                                }
                            }
                            continue;
                        }
                        // (The old primary may live on as a replica: leave it.)
                        tracing::info!(node = %shared.node, "following the new primary's channels");
                        None
                    }
                },
                None => feed.next().await,
            };
            let Some(event) = event else { break };
            // With the messages already there: a session's consecutive messages are applied
            // together (one push per participant for several signals).
            read_event(&shared, event, &mut batch);
            let mut ended = false;
            while batch.len() < MAX_BATCH {
                match feed.try_next() {
                    Some(Some(event)) => read_event(&shared, event, &mut batch),
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            apply_batch(&shared, &mut batch);
            if ended {
                break;
            }
        }
        if matches!(feed, Feed::Sharded(_)) {
            // The cluster connection is gone with the broker.
            return;
        }
        tracing::error!(node = %shared.node, "lost the Redis subscription: reconnecting");
        *shared.sink.lock() = None;
        let mut attempt = 0;
        feed = loop {
            tokio::time::sleep(RESUBSCRIBE_BACKOFF[attempt.min(RESUBSCRIBE_BACKOFF.len() - 1)]).await;
            attempt += 1;
            let Some(client) = client.clone().or_else(|| shared.conn.client()) else { return };
            match client.get_async_pubsub().await {
                Ok(pubsub) => {
                    let (mut sink, stream) = pubsub.split();
                    let channels: Vec<String> = shared.subscribed.lock().iter().cloned().collect();
                    if channels.is_empty() || sink.subscribe(&channels).await.is_ok() {
                        *shared.sink.lock() = Some(sink);
                        tracing::info!(node = %shared.node, sessions = channels.len(), "Redis subscription back");
                        resume_replicas(&shared).await;
                        break Feed::Plain(stream);
                    }
                }
                Err(e) => tracing::debug!(error = %e, attempt, "Redis still unreachable"),
            }
        };
    }
}

/// Adds a session message to `batch`; a channel subscribed again has its replica filled.
fn read_event(shared: &Arc<Shared>, event: Event, batch: &mut Vec<(SessionId, Message)>) {
    match event {
        Event::Message { channel, payload } => {
            let Some(session) = session_of(&channel) else { return };
            match Message::parse(&payload) {
                Some(message) => batch.push((SessionId::from(session), message)),
                None => tracing::warn!(session, "ignoring an unreadable session message"),
            }
        }
        Event::Subscribed { channel } => {
            let Some(session) = session_of(&channel).map(SessionId::from) else { return };
            let Some(cell) = shared.replicas.get(&session).map(|c| Arc::clone(&c)) else { return };
            let from = {
                let mut guard = cell.replica.lock();
                let Some(replica) = guard.as_mut().filter(|r| !r.filling) else { return };
                replica.filling = true;
                replica.ver + 1
            };
            let shared = Arc::clone(shared);
            tokio::spawn(async move { fill(&shared, &session, &cell, from).await });
        }
        Event::Lost => {
            if let Link::Cluster(conn) = &shared.conn {
                conn.renew_soon();
            }
        }
        Event::Other => {}
    }
}

/// Hands a batch of messages to their replicas and applies them.
fn apply_batch(shared: &Arc<Shared>, batch: &mut Vec<(SessionId, Message)>) {
    let mut messages = batch.drain(..).peekable();
    while let Some((session, first)) = messages.next() {
        let Some(cell) = shared.replicas.get(&session).map(|c| Arc::clone(&c)) else {
            while messages.next_if(|(s, _)| *s == session).is_some() {}
            continue;
        };
        {
            // A replica still loading has them applied once it is loaded.
            let mut guard = cell.replica.lock();
            let mut put = |message: Message| match guard.as_mut() {
                Some(replica) => {
                    replica.ahead.insert(message.ver, message);
                }
                None => cell.early.lock().push(message),
            };
            put(first);
            while let Some((_, next)) = messages.next_if(|(s, _)| *s == session) {
                put(next);
            }
            if guard.is_none() {
                continue;
            }
        }
        apply_ahead(shared, &session, &cell);
    }
}

/// After Redis came back: each replica reads from the log what it missed; the sessions Redis no
/// longer has (it restarted without its data) are over: their participants on this node are told
/// they were evicted (`networkDisconnect`) and their sockets closed, so that clients rejoin with
/// new tokens instead of talking to nothing.
async fn resume_replicas(shared: &Arc<Shared>) {
    let cells: Vec<(SessionId, Arc<Cell>)> =
        shared.replicas.iter().map(|e| (e.key().clone(), Arc::clone(e.value()))).collect();
    for (session, cell) in cells {
        let epoch = cell.replica.lock().as_ref().map(|r| r.epoch.clone());
        let Some(epoch) = epoch else { continue };
        let snap = key(session.as_str(), "snap");
        let mut now: redis::RedisResult<Option<String>> = Ok(None);
        for pause in RESUBSCRIBE_BACKOFF {
            now = again(&shared.conn, |mut conn| {
                let snap = snap.clone();
                async move { conn.hget(snap, "epoch").await }
            })
            .await;
            if now.is_ok() {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        match now {
            Ok(Some(e)) if e == epoch => {
                let from = {
                    let mut guard = cell.replica.lock();
                    let Some(replica) = guard.as_mut() else { continue };
                    if replica.filling {
                        continue;
                    }
                    replica.filling = true;
                    replica.ver + 1
                };
                let (shared, cell) = (Arc::clone(shared), Arc::clone(&cell));
                tokio::spawn(async move { fill(&shared, &session, &cell, from).await });
            }
            Ok(_) => {
                tracing::warn!(%session, "Redis no longer has this session: disconnecting its participants");
                let roster = {
                    let mut guard = cell.replica.lock();
                    let Some(replica) = guard.as_mut() else { continue };
                    replica.gone = true;
                    cell.live.store(false, Ordering::Release);
                    std::mem::take(&mut replica.roster)
                };
                shared.replicas.remove_if(&session, |_, c| Arc::ptr_eq(c, &cell));
                cell.applied.send_modify(|_| {});
                shared.subscribed.lock().remove(&channel(session.as_str()));
                // (Writes the pushes claim are made once the roster's lock is released.)
                let _deferring = crate::outbox::Deferring::begin();
                for (who, outbox) in roster {
                    let params = signalroom_core::protocol::ParticipantLeft {
                        connection_id: who,
                        reason: EndReason::NetworkDisconnect,
                    };
                    let evicted = signalroom_core::jsonrpc::Notification::new(
                        signalroom_core::protocol::notification::PARTICIPANT_EVICTED,
                        &params,
                    );
                    outbox.push(Out::Frame(Utf8Bytes::from(evicted.to_json())));
                    outbox
                        .push(Out::Order(Order::Close { code: 1000, reason: "session lost by the broker" }));
                }
            }
            Err(e) => tracing::warn!(%session, error = %e, "cannot check a session after Redis came back"),
        }
    }
}

/// Whether this node ran no operation on the session for [`REPLICA_LINGER`].
fn unused(shared: &Shared, cell: &Cell) -> bool {
    shared.now_ms().saturating_sub(cell.used.load(Ordering::Relaxed)) >= REPLICA_LINGER.as_millis() as u64
}

/// Drops the replicas this node no longer needs: no participant here, no operation on its way,
/// unused for [`REPLICA_LINGER`]; and leaves their channels.
async fn sweep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let busy: HashSet<SessionId> = shared.pending.iter().map(|p| p.lock().session.clone()).collect();
        let idle: Vec<SessionId> = shared
            .replicas
            .iter()
            .filter(|e| !busy.contains(e.key()))
            .filter(|e| {
                e.value()
                    .replica
                    .lock()
                    .as_ref()
                    .is_some_and(|r| r.roster.is_empty() && unused(&shared, e.value()))
            })
            .map(|e| e.key().clone())
            .collect();
        for session in idle {
            let removed = shared.replicas.remove_if(&session, |_, c| {
                c.replica.lock().as_ref().is_some_and(|r| r.roster.is_empty() && unused(&shared, c))
            });
            if let Some((_, cell)) = removed {
                if let Some(r) = cell.replica.lock().as_mut() {
                    r.gone = true;
                }
                cell.live.store(false, Ordering::Release);
                cell.applied.send_modify(|_| {});
                if let Err(e) = unsubscribe_if_unfollowed(&shared, &session).await {
                    tracing::debug!(%session, error = %e, "unsubscribing failed (a reconnection resubscribes only what is left)");
                }
            }
        }
    }
}

/// Finds participants held by nodes whose heartbeat expired, for the hub to evict once they had
/// the reconnection grace to come back. A round costs O(nodes), whatever the number of sessions:
/// it looks at the heartbeats of the nodes in [`NODES`], and only for a node found dead at the
/// sessions it held participants of ([`held_key`]); a dead node whose sessions hold none of its
/// participants any more is forgotten. Every few rounds it also checks a few listed sessions,
/// unlisting those that no longer exist ([`prune_listed`]).
async fn reap(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    let mut conn = shared.conn.clone();
    let mut missing: HashSet<String> = HashSet::new();
    for round in 0u64.. {
        tick.tick().await;
        if round % PRUNE_EVERY == 0 {
            prune_listed(&mut conn, &mut missing).await;
        }
        if shared.recently_troubled() {
            // (A failover may have lost heartbeats, or kept nodes from writing them.)
            continue;
        }
        let Ok(nodes): redis::RedisResult<Vec<String>> = conn.smembers(NODES).await else { continue };
        for node in nodes {
            if node == shared.node {
                continue;
            }
            match conn.exists::<_, bool>(node_key(&node)).await {
                Ok(false) => {}
                // Alive, or Redis cannot say.
                _ => continue,
            }
            let Ok(sessions): redis::RedisResult<Vec<String>> = conn.smembers(held_key(&node)).await else {
                continue;
            };
            if sessions.is_empty() {
                tracing::info!(%node, "a stopped node holds nobody any more: forgotten");
                let _: redis::RedisResult<i64> = conn.srem(NODES, &node).await;
                continue;
            }
            for id in sessions {
                let Some(held) = participants_of(&shared, &id).await else { continue };
                let theirs: Vec<ConnectionId> =
                    held.into_iter().filter(|(_, n)| *n == node).map(|(who, _)| who).collect();
                if theirs.is_empty() {
                    let _: redis::RedisResult<i64> = conn.srem(held_key(&node), &id).await;
                    continue;
                }
                for who in theirs {
                    let gone =
                        Notice::NodeGone { session: SessionId::from(id.as_str()), who, node: node.clone() };
                    let _ = shared.notices.send(gone);
                }
            }
        }
    }
}

/// The reaper checks a few listed sessions every this many rounds.
const PRUNE_EVERY: u64 = 10;
/// ...this many.
const PRUNE_SAMPLE: usize = 20;

/// Unlists sessions listed in `sr:sessions` that do not exist, found missing twice in a row (a
/// session is listed just before it is made; a node that died between the two leaves its id).
async fn prune_listed(conn: &mut Link, missing: &mut HashSet<String>) {
    let Ok(sample): redis::RedisResult<Vec<String>> =
        redis::cmd("SRANDMEMBER").arg(SESSIONS).arg(PRUNE_SAMPLE).query_async(conn).await
    else {
        return;
    };
    let was_missing = std::mem::take(missing);
    for id in sample {
        if conn.exists::<_, bool>(key(&id, "snap")).await.unwrap_or(true) {
            continue;
        }
        if was_missing.contains(&id) {
            let _: redis::RedisResult<i64> = conn.srem(SESSIONS, &id).await;
        } else {
            missing.insert(id);
        }
    }
}

/// Who is in session `id`, and on which node: from the replica here, or from Redis. `None` if
/// the session is gone or cannot be read.
async fn participants_of(shared: &Shared, id: &str) -> Option<Vec<(ConnectionId, String)>> {
    let local = shared.replicas.get(id).map(|c| Arc::clone(&c));
    if let Some(cell) = local {
        let held = cell.replica.lock().as_ref().map(|r| {
            r.room.participants().map(|(who, _, m)| (who.clone(), m.node.clone())).collect::<Vec<_>>()
        });
        if held.is_some() {
            return held;
        }
    }
    match load(&shared.conn, id).await {
        Ok(Some(Loaded { mut room, log, .. })) => {
            for message in log {
                if let Ok(op) = serde_json::from_str::<Op>(&message.op) {
                    if !room.is_closed() {
                        let _ = op.run(&mut room);
                    }
                }
            }
            Some(room.participants().map(|(who, _, m)| (who.clone(), m.node.clone())).collect())
        }
        // Gone: nobody is held in it.
        Ok(None) => Some(Vec::new()),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_log() {
        assert_eq!(redact("rediss://:s3cret@127.0.0.1:6400/0"), "rediss://:***@127.0.0.1:6400/0");
        assert_eq!(redact("redis://user:pw@h:1"), "redis://user:***@h:1");
        assert_eq!(redact("redis://127.0.0.1:6379/2"), "redis://127.0.0.1:6379/2");
        assert_eq!(
            redact("redis+sentinel://:p@w/d@h1:26379,h2/mymaster"),
            "redis+sentinel://:***@h1:26379,h2/mymaster"
        );
        assert_eq!(
            redact("redis-cluster://:pw@a:7000,b:7001?replicas=0"),
            "redis-cluster://:***@a:7000,b:7001?replicas=0"
        );
    }

    #[test]
    fn a_message_reads_back() {
        let m = Message::parse("42\nep\nnode_A\n7\n{\"Leave\":{\"who\":\"a\\nb\"}}").expect("parses");
        assert_eq!((m.ver, m.epoch.as_str(), m.node.as_str(), m.op_id), (42, "ep", "node_A", 7));
        assert_eq!(m.op, "{\"Leave\":{\"who\":\"a\\nb\"}}");
        assert!(Message::parse("1\nbroken").is_none());
        assert_eq!(session_of(&channel("a}b")), Some("a}b"));
    }

    #[test]
    fn a_snapshot_costs_each_operation_o1() {
        assert_eq!(snapshot_every(10), SNAPSHOT_MIN);
        assert_eq!(snapshot_every(10_000), 20_000);
    }

    #[test]
    fn recent_notifications_replay_what_a_participant_missed() {
        let mut recent = Recent::default();
        let (a, b) = (ConnectionId::from("a"), ConnectionId::from("b"));
        recent.keep(5, &Audience::All, &"n5".into());
        recent.keep(6, &Audience::AllBut(a.clone()), &"n6".into());
        recent.keep(7, &Audience::Only(vec![a.clone()]), &"n7".into());
        assert_eq!(recent.missed(&a, 4, 7), (true, vec!["n5".into(), "n7".into()]));
        assert_eq!(recent.missed(&b, 5, 7), (true, vec!["n6".into()]));
        assert!(!recent.missed(&a, 2, 7).0, "5 is the oldest kept: 3 and 4 are gone");
        assert_eq!(recent.missed(&a, 7, 7), (true, vec![]));
    }
}
