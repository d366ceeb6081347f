//! [`RedisBroker`]: sessions shared by every node given the same Redis, so that any number of
//! nodes behind a balancer behave as one server.
//!
//! What lives in Redis (the `sr:` prefix):
//! - `sr:sessions`: a set of the open sessions' ids;
//! - `sr:room:{id}`: the session's [`Room`] (JSON): connections, tokens, roster, sequence;
//! - `sr:lock:{id}`: held (a random token, 5 s expiry) while one node runs an operation on it;
//! - `sr:members:{id}`: the set of its participants, and `sr:seq:{id}`: its last notification's
//!   sequence number, which a signal needs without the whole room;
//! - `sr:fence:{id}:{connection}`: raised while a participant's signals take the locked path (see
//!   below), 60 s expiry;
//! - `sr:rpc:{rpc id}`: the session and connection of a participant, for reconnections;
//! - `sr:node:{node id}`: a node's heartbeat, refreshed every [`HEARTBEAT`], expiring after
//!   [`NODE_TTL`]; participants of a node whose heartbeat expired are evicted by the others;
//! - channel `sr:fx:{id}`: one message per operation on the session: its effects, in order;
//! - `sr:log:{id}`: the same messages in a stream capped near [`LOG_LENGTH`] entries, from which
//!   a reconnection that lands on another node replays what the participant missed.
//!
//! An operation takes the session's lock, reads the room, runs the pure room operation, and in
//! one transaction stores the room and publishes the effects; then it unlocks. Every node holding
//! participants of the session subscribes to its channel and delivers each message to its own
//! participants' outboxes, in publish order: the node that ran the operation too, which delivers
//! its caller's reply (and, for a join, puts the caller's outbox in the roster) when its own
//! message comes back, so a reply keeps its place after the notifications.
//!
//! A signal, the hot path, does not read the room: one script checks the sender and the
//! recipients against `sr:members:{id}`, takes the next number of `sr:seq:{id}`, appends it to
//! the frame the sending node serialised, logs and publishes it (one publish per signal per
//! session); while an operation holds the session's lock it falls back to the locked path.
//! A socket does not wait for its signal's script before it reads the next request: a node's
//! signal writer sends whatever signals wait, from every socket, in one pipeline per round trip,
//! in the order handed over, so one sender's signals reach Redis, and every node, in batches.
//! Order per sender survives the locked path: a signal that meets the lock raises its sender's
//! fence, the sender's later signals already on their way meet the fence and take the locked
//! path too, and the socket runs them there one by one, in order, then lowers the fence.
//!
//! Outboxes stay on the node that holds the participant's socket. A reconnection that lands on
//! another node moves the participant there: that node replays, from the session's log, every
//! notification for it after the client's `lastSeq` (the client is told whether the log still
//! reached back that far), and the old node closes the old socket. A client that sends no
//! `lastSeq` (openvidu-browser) gets nothing replayed on another node.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use futures_util::{FutureExt, StreamExt};
use indexmap::IndexMap;
use parking_lot::Mutex;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use serde::{Deserialize, Serialize};
use signalroom_core::{ConnectionId, EndReason, RpcSessionId, SessionId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Applied, Broker, For, Held, Notice, Outcome, Step, Ticket, deliver};
use crate::outbox::{Limits, Order, Out, Outbox, Resumed};
use crate::refusal::Refusal;
use crate::room::{Audience, CloseMode, Effect, Room};
use crate::util::random_id;

/// How often a node says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a node counts as alive after its last heartbeat.
pub(crate) const NODE_TTL: Duration = Duration::from_secs(6);
/// How often a node looks for participants of nodes that stopped beating.
pub(crate) const REAP_EVERY: Duration = Duration::from_secs(3);
/// About how many operations each session's log keeps for reconnections on another node.
pub(crate) const LOG_LENGTH: usize = 4096;
/// At most this many signals go to Redis in one pipeline.
const SIGNAL_BATCH: usize = 512;
/// How long a session lock lives if its holder dies.
const LOCK_TTL_MS: u64 = 5_000;
/// How long an operation waits for a session's lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);
/// How long a node waits before reconnecting its subscriptions after Redis went away.
const RESUBSCRIBE_BACKOFF: [Duration; 4] =
    [Duration::from_millis(100), Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];

/// A signal without the room (see the module docs). KEYS: members, seq, lock, log, channel,
/// fence. ARGV: sender (or ""), message head, frame prefix, log length, recipients... Returns
/// `{1, recipients}`, `{0, 0}` to take the locked path (locked, fenced, or nobody joined), `{-1, 0}`
/// if the sender is not a participant, `{-2, i}` if recipient `i` is not. A participant's signal
/// sent to the locked path raises its fence, so that its later signals, sent before the node learnt
/// of this, follow it there in order instead of overtaking it; the node lowers the fence when the
/// locked path has taken them all.
const SIGNAL: &str = r#"
if redis.call("EXISTS", KEYS[3], KEYS[6]) > 0 or redis.call("SCARD", KEYS[1]) == 0 then
  if ARGV[1] ~= "" then redis.call("SET", KEYS[6], "1", "PX", 60000) end
  return {0, 0}
end
if ARGV[1] ~= "" and redis.call("SISMEMBER", KEYS[1], ARGV[1]) == 0 then return {-1, 0} end
local n = 0
for i = 5, #ARGV do
  if redis.call("SISMEMBER", KEYS[1], ARGV[i]) == 0 then return {-2, i - 5} end
  n = n + 1
end
if #ARGV < 5 then n = redis.call("SCARD", KEYS[1]) end
local seq = redis.call("INCR", KEYS[2])
local message = ARGV[2] .. seq .. "\n" .. ARGV[3] .. seq .. "}"
redis.call("XADD", KEYS[4], "MAXLEN", "~", ARGV[4], "*", "m", message)
redis.call("PUBLISH", KEYS[5], message)
return {1, n}
"#;

/// Releases a lock only if it is still ours.
const UNLOCK: &str =
    r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

fn room_key(id: &str) -> String {
    format!("sr:room:{id}")
}

fn lock_key(id: &str) -> String {
    format!("sr:lock:{id}")
}

fn rpc_key(rpc: &str) -> String {
    format!("sr:rpc:{rpc}")
}

fn members_key(id: &str) -> String {
    format!("sr:members:{id}")
}

fn seq_key(id: &str) -> String {
    format!("sr:seq:{id}")
}

fn log_key(id: &str) -> String {
    format!("sr:log:{id}")
}

fn fence_key(id: &str, sender: &str) -> String {
    format!("sr:fence:{id}:{sender}")
}

fn node_key(node: &str) -> String {
    format!("sr:node:{node}")
}

fn channel(id: &str) -> String {
    format!("sr:fx:{id}")
}

const SESSIONS: &str = "sr:sessions";
const CHANNEL_PREFIX: &str = "sr:fx:";

/// One operation's effects as published.
#[derive(Debug, Serialize, Deserialize)]
struct Published {
    /// The node that ran it.
    node: String,
    /// Its number on that node (finds the caller's reply there).
    op: u64,
    effects: Vec<WireEffect>,
    /// The operation closed the session.
    closed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
enum WireEffect {
    Notify { to: Audience, seq: u64, frame: String },
    Enter(ConnectionId),
    Reply,
    Leave { who: ConnectionId, rpc_id: RpcSessionId, reason: EndReason, close: CloseMode },
    Moved { who: ConnectionId, node: String },
}

impl From<&Effect> for WireEffect {
    fn from(e: &Effect) -> Self {
        match e {
            Effect::Notify { to, seq, frame } => {
                WireEffect::Notify { to: to.clone(), seq: *seq, frame: frame.as_str().to_owned() }
            }
            Effect::Enter(id) => WireEffect::Enter(id.clone()),
            Effect::Reply => WireEffect::Reply,
            Effect::Leave { who, rpc_id, reason, close } => WireEffect::Leave {
                who: who.clone(),
                rpc_id: rpc_id.clone(),
                reason: reason.clone(),
                close: *close,
            },
            Effect::Moved { who, node } => WireEffect::Moved { who: who.clone(), node: node.clone() },
        }
    }
}

impl From<WireEffect> for Effect {
    fn from(e: WireEffect) -> Self {
        match e {
            WireEffect::Notify { to, seq, frame } => {
                Effect::Notify { to, seq, frame: Utf8Bytes::from(frame) }
            }
            WireEffect::Enter(id) => Effect::Enter(id),
            WireEffect::Reply => Effect::Reply,
            WireEffect::Leave { who, rpc_id, reason, close } => Effect::Leave { who, rpc_id, reason, close },
            WireEffect::Moved { who, node } => Effect::Moved { who, node },
        }
    }
}

/// The outboxes of a session's participants this node holds, in join order.
type Roster = IndexMap<ConnectionId, Arc<Outbox>>;

/// A caller waiting for its operation's message to come back.
struct Pending {
    session: SessionId,
    caller: Arc<Outbox>,
    reply: Option<Out>,
}

/// An operation of this node in progress on a session.
struct Interest {
    shared: Arc<Shared>,
    session: SessionId,
}

impl Drop for Interest {
    fn drop(&mut self) {
        if let Some(mut n) = self.shared.interest.get_mut(&self.session) {
            *n = n.saturating_sub(1);
        }
        if self.shared.interest.remove_if(&self.session, |_, n| *n == 0).is_some() {
            // The last operation here may have ended after its message was delivered.
            let (shared, session) = (Arc::clone(&self.shared), self.session.clone());
            tokio::spawn(async move { release_if_idle(&shared, &session).await });
        }
    }
}

/// What this node holds of the sessions it has participants in.
struct Shared {
    node: String,
    linger: Duration,
    /// What a session's consecutive messages may hold back to push together ([`Held`]).
    most_held: Limits,
    /// Session → its participants whose sockets this node holds, in join order.
    rosters: DashMap<SessionId, Arc<Mutex<Roster>>>,
    /// This node's operations whose message has not come back yet.
    pending: DashMap<u64, Pending>,
    /// Sessions whose channel this node subscribes to.
    subscribed: Mutex<std::collections::HashSet<String>>,
    /// Operations of this node in progress on each session (they need its channel).
    interest: DashMap<SessionId, usize>,
    /// Orders subscribing and unsubscribing (held across their round trip).
    gate: tokio::sync::Mutex<()>,
    sink: Mutex<Option<PubSubSink>>,
    notices: mpsc::UnboundedSender<Notice>,
}

/// Sessions shared through Redis (see the module docs).
pub(crate) struct RedisBroker {
    shared: Arc<Shared>,
    conn: ConnectionManager,
    next_op: AtomicU64,
    /// The signal writer's queue ([`write_signals`]).
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

/// A broker URL without its password, for logs and messages.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
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
async fn again<T, F, Fut>(conn: &ConnectionManager, mut run: F) -> redis::RedisResult<T>
where
    F: FnMut(ConnectionManager) -> Fut,
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

impl RedisBroker {
    /// One `PING` round trip (for the metrics, at scrape time).
    pub(crate) async fn ping(&self) -> redis::RedisResult<Duration> {
        let started = std::time::Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await?;
        Ok(started.elapsed())
    }

    /// Connects to Redis at `url` and starts this node's heartbeat, its subscription reader and
    /// its reaper of dead nodes' participants.
    pub(crate) async fn connect(
        url: &str,
        linger: Duration,
        queue: Limits,
    ) -> Result<Self, redis::RedisError> {
        if url.starts_with("rediss:") {
            // rediss:// runs on rustls, which needs a process-wide crypto provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        let (sink, stream) = client.get_async_pubsub().await?.split();
        let (notices, notices_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            node: random_id("node_", 12),
            linger,
            most_held: super::most_held(queue),
            rosters: DashMap::new(),
            pending: DashMap::new(),
            subscribed: Mutex::new(Default::default()),
            interest: DashMap::new(),
            gate: tokio::sync::Mutex::new(()),
            sink: Mutex::new(Some(sink)),
            notices,
        });
        let mut beat = conn.clone();
        let _: () = beat.set_ex(node_key(&shared.node), 1, NODE_TTL.as_secs()).await?;
        tracing::info!(node = %shared.node, url = %redact(url), "sharing sessions through Redis");
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(write_signals(conn.clone(), jobs_rx)),
            tokio::spawn(heartbeat(beat, shared.node.clone())),
            tokio::spawn(read_messages(client, stream, Arc::clone(&shared))),
            tokio::spawn(reap(conn.clone(), Arc::clone(&shared))),
        ];
        Ok(Self {
            shared,
            conn,
            next_op: AtomicU64::new(1),
            jobs,
            notices_rx: Mutex::new(Some(notices_rx)),
            tasks,
        })
    }

    /// Subscribes to a session's channel unless this node already does; the channel is kept
    /// while the returned interest lives (and while this node has participants or replies
    /// pending there).
    async fn subscribe(&self, id: &str) -> Result<Interest, Refusal> {
        let session = SessionId::from(id);
        *self.shared.interest.entry(session.clone()).or_default() += 1;
        let interest = Interest { shared: Arc::clone(&self.shared), session };
        let name = channel(id);
        let _gate = self.shared.gate.lock().await;
        if self.shared.subscribed.lock().contains(&name) {
            return Ok(interest);
        }
        let sink = self.shared.sink.lock().clone();
        let Some(mut sink) = sink else { return Err(Refusal::BrokerDown("not subscribed".into())) };
        sink.subscribe(&name).await.map_err(down)?;
        self.shared.subscribed.lock().insert(name);
        Ok(interest)
    }

    /// Takes the session's lock; `Err(Busy)` after [`LOCK_WAIT`].
    async fn lock(&self, id: &str) -> Result<String, Refusal> {
        let token = random_id("", 16);
        let key = lock_key(id);
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let mut conn = self.conn.clone();
        let mut pause = Duration::from_micros(200);
        loop {
            let got: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LOCK_TTL_MS)
                .query_async(&mut conn)
                .await;
            match got {
                Ok(Some(_)) => return Ok(token),
                // Redis is reconnecting: keep trying until the deadline.
                Err(e) if transient(&e) && tokio::time::Instant::now() < deadline => {}
                Err(e) => return Err(down(e)),
                Ok(None) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Refusal::Busy(id.to_owned()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    async fn unlock(&self, id: &str, token: &str) {
        let mut conn = self.conn.clone();
        let released: redis::RedisResult<i64> =
            redis::Script::new(UNLOCK).key(lock_key(id)).arg(token).invoke_async(&mut conn).await;
        if let Err(e) = released {
            tracing::warn!(session = id, error = %e, "could not release a session lock (it expires by itself)");
        }
    }

    async fn load(&self, id: &str) -> Result<Option<Room>, Refusal> {
        let (text, seq): (Option<String>, Option<u64>) = again(&self.conn, |mut conn| async move {
            redis::pipe().get(room_key(id)).get(seq_key(id)).query_async(&mut conn).await
        })
        .await
        .map_err(down)?;
        let Some(text) = text else { return Ok(None) };
        let mut room = serde_json::from_str::<Room>(&text)
            .map_err(|e| Refusal::BrokerDown(format!("session {id} unreadable: {e}")))?;
        // Signals number notifications without the room: the counter is the truth.
        room.set_last_seq(room.last_seq().max(seq.unwrap_or(0)));
        Ok(Some(room))
    }

    async fn apply_locked<R: Send>(
        &self,
        id: &str,
        caller: Option<&Arc<Outbox>>,
        op: impl FnOnce(&mut Room) -> Result<Outcome<R>, Refusal> + Send,
    ) -> Result<Applied<R>, Refusal> {
        let mut room = self.load(id).await?.ok_or_else(|| Refusal::NoSession(id.to_owned()))?;
        if room.is_closed() {
            return Err(Refusal::NoSession(id.to_owned()));
        }
        let before = room.participant_count();
        let Outcome { value, effects, reply } = op(&mut room)?;
        let closed = room.is_closed();
        let mut applied =
            Applied { value, slow: Vec::new(), left: Vec::new(), delivered: 0, closed, held: None };
        let mut present = before;
        for effect in &effects {
            match effect {
                Effect::Notify { to, .. } => {
                    applied.delivered += match to {
                        Audience::All => present,
                        Audience::AllBut(_) => present.saturating_sub(1),
                        Audience::Only(ids) => ids.len(),
                    }
                }
                Effect::Enter(_) => present += 1,
                Effect::Leave { who, rpc_id, reason, .. } => {
                    present = present.saturating_sub(1);
                    applied.left.push((who.clone(), rpc_id.clone(), reason.clone()));
                }
                Effect::Reply | Effect::Moved { .. } => {}
            }
        }
        self.commit(id, &room, &effects, caller, reply).await?;
        Ok(applied)
    }

    /// Stores the room, logs and publishes the effects, in one transaction; the caller's reply
    /// waits for the message to come back.
    async fn commit(
        &self,
        id: &str,
        room: &Room,
        effects: &[Effect],
        caller: Option<&Arc<Outbox>>,
        reply: Option<Out>,
    ) -> Result<(), Refusal> {
        let closed = room.is_closed();
        let op_id = self.next_op.fetch_add(1, Ordering::Relaxed);
        if let Some(caller) = caller {
            self.shared
                .pending
                .insert(op_id, Pending { session: SessionId::from(id), caller: Arc::clone(caller), reply });
        }
        let message = Published {
            node: self.shared.node.clone(),
            op: op_id,
            effects: effects.iter().map(WireEffect::from).collect(),
            closed,
        };
        let message = serde_json::to_string(&message).expect("effects serialise");
        let mut tx = redis::pipe();
        tx.atomic();
        if closed {
            tx.del(room_key(id)).del(log_key(id)).del(members_key(id)).del(seq_key(id)).srem(SESSIONS, id);
        } else {
            tx.set(room_key(id), serde_json::to_string(room).expect("rooms serialise"));
            tx.set(seq_key(id), room.last_seq());
            tx.cmd("XADD")
                .arg(log_key(id))
                .arg("MAXLEN")
                .arg("~")
                .arg(LOG_LENGTH)
                .arg("*")
                .arg("m")
                .arg(&message);
        }
        for effect in effects {
            match effect {
                Effect::Leave { who, rpc_id, .. } => {
                    tx.del(rpc_key(rpc_id.as_str()));
                    if !closed {
                        tx.srem(members_key(id), who.as_str());
                    }
                }
                Effect::Enter(who) if !closed => {
                    tx.sadd(members_key(id), who.as_str());
                }
                _ => {}
            }
        }
        tx.publish(channel(id), message);
        let mut conn = self.conn.clone();
        if let Err(e) = tx.query_async::<()>(&mut conn).await {
            self.shared.pending.remove(&op_id);
            return Err(down(e));
        }
        Ok(())
    }

    /// The notifications for `who` after `last_seq` in the session's log, and whether the log
    /// reaches back that far.
    async fn missed(
        &self,
        id: &str,
        room: &Room,
        who: &ConnectionId,
        last_seq: u64,
    ) -> Result<(bool, Vec<String>), Refusal> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(log_key(id))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .map_err(down)?;
        let messages: Vec<Published> = entries
            .into_iter()
            .filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == "m"))
            .filter_map(|(_, m)| parse_message(&m))
            .collect();
        // Only what followed its (last) entry into the roster was for it.
        let entered = messages
            .iter()
            .rposition(|m| m.effects.iter().any(|e| matches!(e, WireEffect::Enter(x) if x == who)))
            .unwrap_or(0);
        let mut oldest = None;
        let mut frames = Vec::new();
        for message in &messages[entered..] {
            for effect in &message.effects {
                let WireEffect::Notify { to, seq, frame } = effect else { continue };
                oldest = Some(oldest.map_or(*seq, |o: u64| o.min(*seq)));
                let for_who = match to {
                    Audience::All => true,
                    Audience::AllBut(but) => but != who,
                    Audience::Only(ids) => ids.contains(who),
                };
                if for_who && *seq > last_seq {
                    frames.push(frame.clone());
                }
            }
        }
        let recovered =
            room.last_seq() <= last_seq || oldest.is_some_and(|o| o <= last_seq + 1) || entered > 0;
        Ok((recovered, frames))
    }

    async fn adopt_locked(
        &self,
        id: &str,
        who: &ConnectionId,
        outbox: &Arc<Outbox>,
        last_seq: Option<u64>,
        reply: Box<dyn FnOnce(Resumed) -> Utf8Bytes + Send>,
    ) -> Result<Resumed, Refusal> {
        let mut room = self.load(id).await?.ok_or(Refusal::Reconnection)?;
        if room.is_closed() || !room.is_participant(who) {
            return Err(Refusal::Reconnection);
        }
        let (recovered, frames) = match last_seq {
            Some(last) => {
                let (recovered, frames) = self.missed(id, &room, who, last).await?;
                (Some(recovered), frames)
            }
            None => (None, Vec::new()),
        };
        let effects = room.relocate(who, &self.shared.node)?;
        let resumed = Resumed { recovered, replayed: frames.len() as u64 };
        // This socket's own outbox: the reply, then the replay, then (once the move comes back
        // through the channel) everything live.
        outbox.push(Out::Frame(reply(resumed)));
        for frame in frames {
            outbox.push(Out::Frame(Utf8Bytes::from(frame)));
        }
        if let Some(last) = last_seq {
            outbox.ack(last);
        }
        self.commit(id, &room, &effects, Some(outbox), None).await?;
        Ok(resumed)
    }

    /// Hands a signal to this node's signal writer, which sends signals to Redis in the order
    /// handed over, many per round trip ([`write_signals`]).
    #[allow(clippy::too_many_arguments)]
    fn hand_over(
        &self,
        id: &str,
        from: Option<&ConnectionId>,
        to: &[ConnectionId],
        data: Option<&str>,
        kind: Option<&str>,
        caller: Option<&Arc<Outbox>>,
        reply: Option<Out>,
    ) -> Ticket {
        let mut ids: Vec<ConnectionId> = Vec::with_capacity(to.len());
        for c in to {
            if !ids.contains(c) {
                ids.push(c.clone());
            }
        }
        let audience = if ids.is_empty() { Audience::All } else { Audience::Only(ids.clone()) };
        let op_id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let head = format!(
            "S\n{}\n{op_id}\n{}\n",
            self.shared.node,
            serde_json::to_string(&audience).expect("audiences serialise")
        );
        let prefix = crate::room::signal_prefix(from, data, kind);
        if let Some(caller) = caller {
            let pending = Pending { session: SessionId::from(id), caller: Arc::clone(caller), reply };
            self.shared.pending.insert(op_id, pending);
        }
        let sender = from.map_or("", ConnectionId::as_str);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SIGNAL)
            .arg(6)
            .arg(members_key(id))
            .arg(seq_key(id))
            .arg(lock_key(id))
            .arg(log_key(id))
            .arg(channel(id))
            .arg(fence_key(id, sender))
            .arg(sender)
            .arg(head)
            .arg(prefix)
            .arg(LOG_LENGTH);
        for c in &ids {
            cmd.arg(c.as_str());
        }
        let (done, outcome) = oneshot::channel();
        let _ = self.jobs.send(Job { cmd, done: Some(done) });
        let shared = Arc::clone(&self.shared);
        let signed = from.is_some();
        Box::pin(async move {
            let outcome = outcome.await.unwrap_or_else(|_| Err("the signal writer stopped".into()));
            if !matches!(outcome, Ok((1, _))) {
                shared.pending.remove(&op_id);
            }
            Step::Done(match outcome {
                Ok((1, n)) => Ok(Applied {
                    value: (),
                    slow: Vec::new(),
                    left: Vec::new(),
                    delivered: n as usize,
                    closed: false,
                    held: None,
                }),
                Ok((-1, _)) => Err(Refusal::NoLongerJoined(RpcSessionId::from(""))),
                Ok((-2, i)) if signed => {
                    let who = ids.get(i as usize).map_or_else(String::new, |c| c.to_string());
                    Err(Refusal::Signal(signalroom_core::Error::SignalRecipients {
                        reason: format!("connection {who:?} is not a participant of the session"),
                    }))
                }
                Ok((-2, _)) => Err(Refusal::NoValidRecipient),
                Ok(_) => return Step::Locked,
                Err(e) => Err(Refusal::BrokerDown(e)),
            })
        })
    }
}

impl Broker for RedisBroker {
    async fn create(&self, room: Room) -> Result<(), Refusal> {
        let id = room.id.clone();
        let text = serde_json::to_string(&room).expect("rooms serialise");
        // A session and its listing in one transaction; repeated if the connection was being
        // re-established (nothing was stored then).
        let key = room_key(id.as_str());
        let (created, _): (Option<String>, i64) = again(&self.conn, |mut conn| {
            let (key, text, id) = (key.clone(), text.clone(), id.clone());
            async move {
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&key)
                    .arg(&text)
                    .arg("NX")
                    .sadd(SESSIONS, id.as_str())
                    .query_async(&mut conn)
                    .await
            }
        })
        .await
        .map_err(down)?;
        if created.is_none() {
            return Err(Refusal::SessionExists);
        }
        Ok(())
    }

    async fn apply<R: Send>(
        &self,
        id: &str,
        caller: Option<&Arc<Outbox>>,
        op: impl FnOnce(&mut Room) -> Result<Outcome<R>, Refusal> + Send,
    ) -> Result<Applied<R>, Refusal> {
        // The caller's reply (and, for a join, its place in the roster) comes back through the
        // session's channel, in order with everything else.
        let _interest = if caller.is_some() { Some(self.subscribe(id).await?) } else { None };
        let token = self.lock(id).await?;
        let result = self.apply_locked(id, caller, op).await;
        self.unlock(id, &token).await;
        result
    }

    async fn signal(
        &self,
        id: &str,
        from: Option<&ConnectionId>,
        to: &[ConnectionId],
        data: Option<&str>,
        kind: Option<&str>,
        caller: Option<&Arc<Outbox>>,
        reply: Option<Out>,
    ) -> Result<Applied<()>, Refusal> {
        let _interest = if caller.is_some() { Some(self.subscribe(id).await?) } else { None };
        match self.hand_over(id, from, to, data, kind, caller, reply.clone()).await {
            Step::Done(result) => result,
            // Locked, or nobody joined: the room decides.
            Step::Locked => {
                let result = self
                    .apply(id, caller, |room| Ok(Outcome::new((), room.signal(from, to, data, kind)?, reply)))
                    .await;
                if let Some(from) = from {
                    self.unfence(id, from);
                }
                result
            }
        }
    }

    fn start_signal(
        &self,
        id: &str,
        from: &ConnectionId,
        to: &[ConnectionId],
        data: Option<&str>,
        kind: Option<&str>,
        caller: &Arc<Outbox>,
        reply: Option<Out>,
    ) -> Option<Ticket> {
        // The reply comes back through the session's channel, which this node hears while it
        // holds a participant there (the sender) and has a reply pending.
        if !self.shared.subscribed.lock().contains(&channel(id)) {
            return None;
        }
        Some(self.hand_over(id, Some(from), to, data, kind, Some(caller), reply))
    }

    fn unfence(&self, id: &str, from: &ConnectionId) {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(fence_key(id, from.as_str()));
        let _ = self.jobs.send(Job { cmd, done: None });
    }

    async fn read<R: Send>(&self, id: &str, f: impl FnOnce(&Room) -> R + Send) -> Option<R> {
        match self.load(id).await {
            Ok(Some(room)) if !room.is_closed() => Some(f(&room)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(session = id, error = %e, "cannot read a session");
                None
            }
        }
    }

    async fn sessions(&self) -> Vec<SessionId> {
        let ids: redis::RedisResult<Vec<String>> =
            again(&self.conn, |mut conn| async move { conn.smembers(SESSIONS).await }).await;
        match ids {
            Ok(ids) => ids.into_iter().map(SessionId::from).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list sessions");
                Vec::new()
            }
        }
    }

    async fn bind_rpc(&self, rpc: RpcSessionId, session: SessionId, who: ConnectionId) {
        let mut conn = self.conn.clone();
        let value = serde_json::to_string(&(session, who)).expect("ids serialise");
        let set: redis::RedisResult<()> = conn.set(rpc_key(rpc.as_str()), value).await;
        if let Err(e) = set {
            tracing::warn!(error = %e, "cannot record a participant for reconnection");
        }
    }

    async fn find_rpc(&self, rpc: &RpcSessionId) -> Option<(SessionId, ConnectionId)> {
        let key = rpc_key(rpc.as_str());
        let value: Option<String> = again(&self.conn, |mut conn| {
            let key = key.clone();
            async move { conn.get(key).await }
        })
        .await
        .ok()?;
        serde_json::from_str(&value?).ok()
    }

    async fn outbox(&self, session: &str, who: &ConnectionId) -> Option<Arc<Outbox>> {
        let roster = self.shared.rosters.get(session).map(|r| Arc::clone(&r))?;
        roster.lock().get(who).cloned()
    }

    async fn session_count(&self) -> usize {
        again(&self.conn, |mut conn| async move { conn.scard(SESSIONS).await }).await.unwrap_or(0)
    }

    fn node(&self) -> &str {
        &self.shared.node
    }

    async fn adopt(
        &self,
        session: &str,
        who: &ConnectionId,
        outbox: &Arc<Outbox>,
        last_seq: Option<u64>,
        reply: Box<dyn FnOnce(Resumed) -> Utf8Bytes + Send>,
    ) -> Result<Resumed, Refusal> {
        let _interest = self.subscribe(session).await?;
        let token = self.lock(session).await?;
        let result = self.adopt_locked(session, who, outbox, last_seq, reply).await;
        self.unlock(session, &token).await;
        if let Ok(r) = &result {
            tracing::info!(session, connection = %who, recovered = ?r.recovered, replayed = r.replayed, "participant moved to this node");
        }
        result
    }

    fn notices(&self) -> Option<mpsc::UnboundedReceiver<Notice>> {
        self.notices_rx.lock().take()
    }
}

/// A command for the signal writer; `done` gets a signal script's answer.
struct Job {
    cmd: redis::Cmd,
    done: Option<oneshot::Sender<Result<(i64, i64), String>>>,
}

/// Sends the signals handed over ([`RedisBroker::hand_over`]) to Redis in the order handed
/// over: whatever waits when a round trip ends goes in the next pipeline, so a sender with many
/// signals on their way, or many senders, cost one round trip per batch instead of one each.
async fn write_signals(mut conn: ConnectionManager, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(SIGNAL_BATCH);
    let mut waiting = Vec::with_capacity(SIGNAL_BATCH);
    while jobs.recv_many(&mut batch, SIGNAL_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for job in batch.drain(..) {
            pipe.add_command(job.cmd);
            waiting.push(job.done);
        }
        match pipe.query_async::<Vec<redis::Value>>(&mut conn).await {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for done in waiting.drain(..) {
                    let answer = match answers.next() {
                        Some(redis::Value::ServerError(e)) => Err(e.to_string()),
                        Some(v) => redis::from_redis_value::<(i64, i64)>(v).map_err(|e| e.to_string()),
                        None => Err("no answer from Redis".to_owned()),
                    };
                    if let Some(done) = done {
                        let _ = done.send(answer);
                    }
                }
            }
            Err(e) => {
                let e = e.to_string();
                for done in waiting.drain(..).flatten() {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Keeps this node's heartbeat alive.
async fn heartbeat(mut conn: ConnectionManager, node: String) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut was_down = false;
    loop {
        tick.tick().await;
        let beat: redis::RedisResult<()> = conn.set_ex(node_key(&node), 1, NODE_TTL.as_secs()).await;
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

/// Delivers every message of the subscribed sessions to this node's participants, in order;
/// reconnects (with backoff) and resubscribes when Redis goes away.
async fn read_messages(client: redis::Client, mut stream: PubSubStream, shared: Arc<Shared>) {
    let mut batch: Vec<(SessionId, Published)> = Vec::new();
    loop {
        let mut ended = false;
        while let Some(msg) = stream.next().await {
            // With the messages already there: a session's consecutive messages are delivered
            // together (one push per participant for several signals).
            read_message(&msg, &mut batch);
            while batch.len() < MAX_BATCH {
                match stream.next().now_or_never() {
                    Some(Some(msg)) => read_message(&msg, &mut batch),
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            let mut messages = batch.drain(..).peekable();
            while let Some((session, first)) = messages.next() {
                let mut run = vec![first];
                while let Some((_, next)) = messages.next_if(|(s, _)| *s == session) {
                    run.push(next);
                }
                on_messages(&shared, session.clone(), run);
                release_if_idle(&shared, &session).await;
            }
            if ended {
                break;
            }
        }
        tracing::error!(node = %shared.node, "lost the Redis subscription: reconnecting");
        *shared.sink.lock() = None;
        let mut attempt = 0;
        stream = loop {
            tokio::time::sleep(RESUBSCRIBE_BACKOFF[attempt.min(RESUBSCRIBE_BACKOFF.len() - 1)]).await;
            attempt += 1;
            match client.get_async_pubsub().await {
                Ok(pubsub) => {
                    let (mut sink, stream) = pubsub.split();
                    let channels: Vec<String> = shared.subscribed.lock().iter().cloned().collect();
                    if channels.is_empty() || sink.subscribe(&channels).await.is_ok() {
                        *shared.sink.lock() = Some(sink);
                        tracing::info!(node = %shared.node, sessions = channels.len(), "Redis subscription back");
                        drop_forgotten_sessions(&client, &shared).await;
                        break stream;
                    }
                }
                Err(e) => tracing::debug!(error = %e, attempt, "Redis still unreachable"),
            }
        };
    }
}

/// After Redis came back: the sessions it no longer has (it restarted without its data) are
/// over. Their participants on this node are told they were evicted (`networkDisconnect`) and
/// their sockets closed, so that clients rejoin with new tokens instead of talking to nothing.
async fn drop_forgotten_sessions(client: &redis::Client, shared: &Shared) {
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return };
    let sessions: Vec<SessionId> = shared.rosters.iter().map(|e| e.key().clone()).collect();
    for session in sessions {
        let exists: bool = conn.exists(room_key(session.as_str())).await.unwrap_or(true);
        if exists {
            continue;
        }
        tracing::warn!(%session, "Redis no longer has this session: disconnecting its participants");
        let Some((_, roster)) = shared.rosters.remove(&session) else { continue };
        let name = channel(session.as_str());
        shared.subscribed.lock().remove(&name);
        // (Writes the pushes claim are made once the roster's lock is released.)
        let _deferring = crate::outbox::Deferring::begin();
        for (who, outbox) in roster.lock().drain(..) {
            let params = signalroom_core::protocol::ParticipantLeft {
                connection_id: who,
                reason: EndReason::NetworkDisconnect,
            };
            let evicted = signalroom_core::jsonrpc::Notification::new(
                signalroom_core::protocol::notification::PARTICIPANT_EVICTED,
                &params,
            );
            outbox.push(Out::Frame(Utf8Bytes::from(evicted.to_json())));
            outbox.push(Out::Order(Order::Close { code: 1000, reason: "session lost by the broker" }));
        }
    }
}

/// A session message: an operation's JSON, or a signal from the script
/// (`S\n<node>\n<op>\n<audience>\n<seq>\n<frame>`).
fn parse_message(text: &str) -> Option<Published> {
    if !text.starts_with("S\n") {
        return serde_json::from_str(text).ok();
    }
    let mut parts = text.splitn(6, '\n').skip(1);
    let node = parts.next()?.to_owned();
    let op = parts.next()?.parse().ok()?;
    let to = serde_json::from_str(parts.next()?).ok()?;
    let seq = parts.next()?.parse().ok()?;
    let frame = parts.next()?.to_owned();
    Some(Published {
        node,
        op,
        effects: vec![WireEffect::Notify { to, seq, frame }, WireEffect::Reply],
        closed: false,
    })
}

/// At most this many messages are read before they are delivered.
const MAX_BATCH: usize = 256;

/// Adds a session message to `batch`, or logs why it cannot be read.
fn read_message(msg: &redis::Msg, batch: &mut Vec<(SessionId, Published)>) {
    let Some(session) = msg.get_channel_name().strip_prefix(CHANNEL_PREFIX) else { return };
    match msg.get_payload::<String>().map(|p| parse_message(&p)) {
        Ok(Some(published)) => batch.push((SessionId::from(session), published)),
        Ok(None) => tracing::warn!(session, "ignoring an unreadable session message"),
        Err(e) => tracing::warn!(session, error = %e, "ignoring a session message"),
    }
}

/// Delivers consecutive operations' effects to this node's participants, in order: the
/// notifications to everyone and the replies to this node's participants are held and pushed
/// together ([`Held`]), anything else first pushes what is held.
fn on_messages(shared: &Shared, session: SessionId, messages: Vec<Published>) {
    let roster = shared.rosters.entry(session.clone()).or_default().clone();
    let mut applied =
        Applied { value: (), slow: Vec::new(), left: Vec::new(), delivered: 0, closed: false, held: None };
    let mut closed = false;
    {
        // (Writes the pushes claim are made once the roster's lock is released.)
        let _deferring = crate::outbox::Deferring::begin();
        let mut roster = roster.lock();
        let mut held = Held::default();
        for published in messages {
            let pending =
                if published.node == shared.node { shared.pending.remove(&published.op) } else { None };
            let (caller, mut reply) = match pending {
                Some((_, p)) => (Some(p.caller), p.reply),
                None => (None, None),
            };
            for effect in published.effects {
                match effect {
                    WireEffect::Notify { to: Audience::All, frame, .. } => {
                        held.hold(Utf8Bytes::from(frame), For::First(roster.len()));
                    }
                    WireEffect::Reply => {
                        let (Some(caller), Some(out)) = (&caller, reply.take()) else { continue };
                        match (out, roster.values().position(|o| Arc::ptr_eq(o, caller))) {
                            (Out::Frame(frame), Some(at)) => held.hold(frame, For::At(at)),
                            (out, _) => {
                                held.release(&roster, &mut applied);
                                caller.push(out);
                            }
                        }
                    }
                    WireEffect::Moved { who, node } if node != shared.node => {
                        // Its new socket is on another node: this one's is closed.
                        held.release(&roster, &mut applied);
                        if let Some(old) = roster.shift_remove(&who) {
                            old.push(Out::Order(Order::Close {
                                code: 1000,
                                reason: "replaced by a reconnection",
                            }));
                        }
                    }
                    effect => {
                        held.release(&roster, &mut applied);
                        deliver(
                            &mut roster,
                            effect.into(),
                            caller.as_ref(),
                            &mut reply,
                            shared.linger,
                            &mut applied,
                        );
                    }
                }
            }
            if published.closed || held.too_much(shared.most_held) {
                held.release(&roster, &mut applied);
            }
            closed |= published.closed;
        }
        held.release(&roster, &mut applied);
    }
    for who in applied.slow {
        let _ =
            shared.notices.send(Notice::Lost { session: session.clone(), who, node: shared.node.clone() });
    }
    if closed {
        roster.lock().clear();
    }
}

/// Whether this node has nothing more to do with a session: no participant, no operation in
/// progress, no reply pending.
fn idle(shared: &Shared, session: &SessionId) -> bool {
    shared.rosters.get(session).is_none_or(|r| r.lock().is_empty())
        && !shared.interest.contains_key(session)
        && !shared.pending.iter().any(|p| p.session == *session)
}

/// Unsubscribes from a session this node has nothing more to do with (its last participant here
/// left): a node only hears the sessions it holds participants of.
async fn release_if_idle(shared: &Shared, session: &SessionId) {
    if !idle(shared, session) {
        return;
    }
    let _gate = shared.gate.lock().await;
    let name = channel(session.as_str());
    if !idle(shared, session) || !shared.subscribed.lock().remove(&name) {
        return;
    }
    shared.rosters.remove(session);
    let sink = shared.sink.lock().clone();
    if let Some(mut sink) = sink {
        if let Err(e) = sink.unsubscribe(&name).await {
            tracing::debug!(%session, error = %e, "unsubscribing failed (the reconnection resubscribes only what is left)");
        }
    }
}

/// Finds participants held by nodes whose heartbeat expired, for the hub to evict.
async fn reap(mut conn: ConnectionManager, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    loop {
        tick.tick().await;
        let Ok(ids): redis::RedisResult<Vec<String>> = conn.smembers(SESSIONS).await else { continue };
        let mut alive: HashMap<String, bool> = HashMap::new();
        for id in ids {
            let Ok(Some(text)): redis::RedisResult<Option<String>> = conn.get(room_key(&id)).await else {
                continue;
            };
            let Ok(room) = serde_json::from_str::<Room>(&text) else { continue };
            let mut nodes: Vec<String> = room.participants().map(|(_, _, m)| m.node.clone()).collect();
            nodes.sort();
            nodes.dedup();
            for node in nodes {
                if node == shared.node || alive.contains_key(&node) {
                    continue;
                }
                let exists: bool = conn.exists(node_key(&node)).await.unwrap_or(true);
                alive.insert(node, exists);
            }
            for (who, _, member) in room.participants() {
                if member.node == shared.node || alive.get(&member.node).copied().unwrap_or(true) {
                    continue;
                }
                tracing::info!(session = %id, connection = %who, node = %member.node, "its node stopped: evicting");
                let lost = Notice::Lost {
                    session: SessionId::from(id.as_str()),
                    who: who.clone(),
                    node: member.node.clone(),
                };
                let _ = shared.notices.send(lost);
            }
        }
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
    }

    /// A `redis-server` of its own, on a free port, killed on drop.
    struct Scratch(std::process::Child, u16);

    impl Scratch {
        fn start() -> Self {
            for _ in 0..20 {
                let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                let mut child = std::process::Command::new("redis-server")
                    .args([
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("redis-server runs (scripts/setup-test-env installs it)");
                for _ in 0..200 {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Self(child, port);
                    }
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
            }
            panic!("redis-server did not start");
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Once a participant's signal met the lock, its later ones take the locked path too, even
    /// with the lock gone, until the node lowers the fence: none overtakes the locked one.
    #[tokio::test]
    async fn a_signal_after_a_locked_one_waits_behind_the_fence() {
        let redis = Scratch::start();
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.1)).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = conn.sadd(members_key("S"), &["x", "r"]).await.unwrap();
        let mut conn2 = conn.clone();
        let mut signal = async move |sender: &str| -> (i64, i64) {
            redis::cmd("EVAL")
                .arg(SIGNAL)
                .arg(6)
                .arg(members_key("S"))
                .arg(seq_key("S"))
                .arg(lock_key("S"))
                .arg(log_key("S"))
                .arg(channel("S"))
                .arg(fence_key("S", sender))
                .arg(sender)
                .arg("S\nnode\n1\n\"All\"\n")
                .arg("{\"jsonrpc\":\"2.0\",\"method\":\"sendMessage\",\"params\":{},\"seq\":")
                .arg(LOG_LENGTH)
                .query_async(&mut conn2)
                .await
                .unwrap()
        };
        assert_eq!(signal("x").await, (1, 2));
        let _: () = conn.set(lock_key("S"), "op").await.unwrap();
        assert_eq!(signal("x").await, (0, 0), "the session is locked");
        assert_eq!(signal("").await, (0, 0), "a signal from the server too");
        let _: () = conn.del(lock_key("S")).await.unwrap();
        assert_eq!(signal("x").await, (0, 0), "x's fence holds it behind its locked signal");
        assert_eq!(signal("r").await, (1, 2), "another sender has no fence");
        assert_eq!(signal("").await, (1, 2), "nor has the server");
        let _: () = conn.del(fence_key("S", "x")).await.unwrap();
        assert_eq!(signal("x").await, (1, 2));
        let seq: u64 = conn.get(seq_key("S")).await.unwrap();
        assert_eq!(seq, 4, "only the applied signals took numbers");
    }

    #[test]
    fn a_signal_message_reads_back_as_its_effects() {
        let text = "S\nnode_A\n7\n\"All\"\n42\n{\"jsonrpc\":\"2.0\",\"method\":\"sendMessage\",\"params\":{\"data\":\"a\\nb\"},\"seq\":42}";
        let m = parse_message(text).expect("parses");
        assert_eq!((m.node.as_str(), m.op), ("node_A", 7));
        match &m.effects[..] {
            [WireEffect::Notify { to: Audience::All, seq: 42, frame }, WireEffect::Reply] => {
                assert!(frame.ends_with(r#""seq":42}"#))
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_message("S\nbroken").is_none());
    }
}
