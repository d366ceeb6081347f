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

mod feed;
mod keys;
mod nodes;
mod replica;
mod writer;

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
use signalroom_core::{ConnectionId, RpcSessionId, SessionId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Applied, Broker, Held, Later, Notice, Reply, Signalled};
use crate::broker::link::{Feed, Link, Topology};
use crate::op::{Listed, Op, SignalOp, Value};
use crate::outbox::{Limits, Note, Out, Outbox, Resumed};
use crate::refusal::Refusal;
use crate::room::{Audience, Room};
use crate::util::random_id;

use self::feed::read_messages;
use self::keys::{
    CREATE, DRAINED_TTL, DROP, LOAD, NODES, READ, SESSIONS, SUBMIT, channel, drained_key, held_key, key,
    node_key, rpc_key,
};
use self::nodes::{heartbeat, reap};
use self::replica::{Batch, follow, sweep};
use self::writer::{Failed, Job, watch_replicas, write_ops};
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
    notes: VecDeque<(Audience, Note)>,
    bytes: usize,
}

impl Recent {
    fn keep(&mut self, to: &Audience, note: &Note) {
        self.bytes += note.len();
        self.notes.push_back((to.clone(), note.clone()));
        while self.notes.len() > RECENT_FRAMES || self.bytes > RECENT_BYTES {
            let Some((_, old)) = self.notes.pop_front() else { break };
            self.bytes -= old.len();
        }
    }

    /// The notifications for `who` after `last_seq`, and whether they reach back that far
    /// (`last_seq` is at least the room's last: nothing was missed).
    fn missed(&self, who: &ConnectionId, last_seq: u64, room_seq: u64) -> (bool, Vec<Note>) {
        let recovered =
            room_seq <= last_seq || self.notes.front().is_some_and(|(_, note)| note.seq() <= last_seq + 1);
        let frames = self
            .notes
            .iter()
            .filter(|(to, note)| {
                note.seq() > last_seq
                    && match to {
                        Audience::All => true,
                        Audience::AllBut(but) => but != who,
                        Audience::Only(ids) => ids.contains(who),
                    }
            })
            .map(|(_, note)| note.clone())
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
    /// Connected replicas were slow to acknowledge (logged once until they keep up again).
    lagging: AtomicBool,
    /// When this node last failed to reach Redis, in ms from its start (0: never): until a
    /// heartbeat's lifetime has passed since, other nodes' missing heartbeats may be Redis's
    /// doing (a failover), not theirs.
    trouble: AtomicU64,
    /// Sessions in this node's held set ([`held_key`]), as far as it knows.
    held: DashMap<SessionId, ()>,
    /// When this node started (the origin of [`Cell::used`]).
    started: Instant,
    /// The number of this node's next operation ([`Waiter`]s are found by it).
    next_op: AtomicU64,
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
            lagging: AtomicBool::new(false),
            trouble: AtomicU64::new(0),
            held: DashMap::new(),
            started: Instant::now(),
            next_op: AtomicU64::new(1),
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
        Ok(Self { shared, jobs, notices_rx: Mutex::new(Some(notices_rx)), tasks })
    }

    /// The session's replica on this node, loaded (and its channel subscribed) if it was not.
    async fn replica(&self, id: &str) -> Result<Arc<Cell>, Refusal> {
        follow(&self.shared, id).await
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
        let numbered =
            hand_over(&self.shared, &self.jobs, id, &cell, caller, &op, Answer::Reply(reply, done));
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

/// Hands `op` to the operation writer, in order with every other operation of this node; the
/// replica must be loaded. Resolves once this node applied it.
fn hand_over(
    shared: &Arc<Shared>,
    jobs: &mpsc::UnboundedSender<Job>,
    id: &str,
    cell: &Cell,
    caller: Option<&Arc<Outbox>>,
    op: &Op,
    answer: Answer,
) -> impl Future<Output = Result<(), Refusal>> + Send + 'static {
    cell.used.store(shared.now_ms(), Ordering::Relaxed);
    let op_id = shared.next_op.fetch_add(1, Ordering::Relaxed);
    let session = SessionId::from(id);
    shared.pending.insert(op_id, Mutex::new(Waiter { session, caller: caller.cloned(), answer }));
    let mut cmd = redis::cmd("EVAL");
    let keys = &cell.keys;
    cmd.arg(SUBMIT)
        .arg(4)
        .arg(&keys.snap)
        .arg(&keys.ver)
        .arg(&keys.log)
        .arg(&keys.channel)
        .arg(&shared.node)
        .arg(op_id)
        .arg(serde_json::to_string(op).expect("operations serialise"))
        .arg(if shared.acks == 0 { shared.publish } else { "" });
    let (numbered, version) = oneshot::channel();
    let _ = jobs.send(Job { cmd, session: SessionId::from(id), op_id, done: numbered });
    let shared = Arc::clone(shared);
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
            Ok(_) => Refusal::NoSession(waiter.as_ref().map_or_else(String::new, |w| w.session.to_string())),
        };
        if let Some(waiter) = waiter {
            waiter.answer.fail(refusal.clone());
        }
        Err(refusal)
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
        id: &SessionId,
        caller: Option<&Arc<Outbox>>,
        op: Op,
        reply: Reply,
    ) -> Result<Applied<Value>, Refusal> {
        let id = id.as_str();
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

    fn signal(
        &self,
        id: &SessionId,
        signal: SignalOp<'_>,
        caller: Option<&Arc<Outbox>>,
        reply: Option<Out>,
    ) -> Signalled {
        let op = signal.to_op(crate::util::now_ms());
        let (done, outcome) = oneshot::channel();
        let answer = Answer::Reply(Reply::Ready(reply), done);
        let live = self.shared.replicas.get(id.as_str()).map(|c| Arc::clone(&c));
        if let Some(cell) = live.filter(|c| c.live.load(Ordering::Acquire)) {
            // Numbered in Redis while the caller goes on.
            let numbered = hand_over(&self.shared, &self.jobs, id.as_str(), &cell, caller, &op, answer);
            return Signalled::OnWay(Box::pin(async move {
                outcome_of(numbered, outcome).await.map(Applied::listed)
            }));
        }
        // The session is not followed here yet: loaded first, then handed over.
        let (shared, jobs, caller) = (Arc::clone(&self.shared), self.jobs.clone(), caller.cloned());
        let id = id.clone();
        Signalled::Waiting(Box::pin(async move {
            let cell = follow(&shared, id.as_str()).await?;
            let numbered = hand_over(&shared, &jobs, id.as_str(), &cell, caller.as_ref(), &op, answer);
            outcome_of(numbered, outcome).await.map(Applied::listed)
        }))
    }

    async fn read<R: Send>(&self, id: &SessionId, f: impl FnOnce(&Room) -> R + Send) -> Option<R> {
        let id = id.as_str();
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

    async fn outbox(&self, session: &SessionId, who: &ConnectionId) -> Option<Arc<Outbox>> {
        let session = session.as_str();
        let cell = self.shared.replicas.get(session).map(|c| Arc::clone(&c))?;
        let guard = cell.replica.lock();
        guard.as_ref()?.roster.get(who).cloned()
    }

    async fn session_count(&self) -> usize {
        again(&self.shared.conn, |mut conn| async move { conn.scard(SESSIONS).await }).await.unwrap_or(0)
    }

    async fn hand_off(&self, session: &SessionId, who: &ConnectionId) {
        let session = session.as_str();
        let Some(cell) = self.shared.replicas.get(session).map(|c| Arc::clone(&c)) else { return };
        // Everything numbered up to here was queued for it; nothing after will be.
        let mut batch = Batch::default();
        let written = {
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

    fn release(&self, _id: &SessionId) -> Option<Result<Applied<()>, Refusal>> {
        None
    }

    fn after_join(&self, _id: &SessionId, _mark: u64) -> Later {
        Later::Nothing
    }

    fn release_due(&self, _id: &SessionId) -> Later {
        Later::Nothing
    }

    async fn adopt(
        &self,
        session: &SessionId,
        who: &ConnectionId,
        outbox: &Arc<Outbox>,
        last_seq: Option<u64>,
        reply: Box<dyn FnOnce(Resumed) -> Utf8Bytes + Send>,
    ) -> Result<Resumed, Refusal> {
        let session = session.as_str();
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
        let numbered = hand_over(
            &self.shared,
            &self.jobs,
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
    fn listed(self) -> Applied<Listed> {
        let Applied { value, slow, left, delivered, closed, held, writes } = self;
        Applied { value: value.listed(), slow, left, delivered, closed, held, writes }
    }
}

#[cfg(test)]
mod tests {
    use super::keys::session_of;
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
        let n = |seq: u64| Note::new(seq, format!("n{seq}").into());
        recent.keep(&Audience::All, &n(5));
        recent.keep(&Audience::AllBut(a.clone()), &n(6));
        recent.keep(&Audience::Only(vec![a.clone()]), &n(7));
        assert_eq!(recent.missed(&a, 4, 7), (true, vec![n(5), n(7)]));
        assert_eq!(recent.missed(&b, 5, 7), (true, vec![n(6)]));
        assert!(!recent.missed(&a, 2, 7).0, "5 is the oldest kept: 3 and 4 are gone");
        assert_eq!(recent.missed(&a, 7, 7), (true, vec![]));
    }
}
