//! Which Redis the nodes share, and the connections to it: one `redis-server`, a primary that
//! Redis Sentinel watches (and replaces by a replica when it dies), or a Redis Cluster (keys
//! sharded over several primaries). The Redis broker ([`super::redis`]) runs the same operations
//! on each; this module hides the differences:
//! - [`Topology::parse`] reads the broker URL (`redis://`, `redis+sentinel://`, `redis-cluster://`);
//! - [`Link`] is the connection commands go through: a [`ConnectionManager`] to the one server,
//!   one to whichever primary Sentinel names now (followed as it changes), or a cluster
//!   connection, which routes each command to the shard holding its keys and follows the
//!   shards' failovers itself;
//! - [`Feed`] is where a session's messages arrive: a pub/sub connection to the one server (or
//!   to Sentinel's primary), or the cluster connection's sharded pub/sub (`SSUBSCRIBE`), so that
//!   a session's messages stay on its shard instead of crossing every one.
//!
//! With replicas ([`Topology::replicas`] > 0), an operation is published only once that many
//! replicas have it (`WAIT`): a failover can then lose no operation that any node applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSubStream};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, RedisResult, Value};
use tokio::sync::{mpsc, watch};

/// How often the primary Sentinel names is asked for, to follow a failover.
pub(crate) const SENTINEL_POLL: Duration = Duration::from_millis(250);
/// How long an operation waits for replicas to acknowledge it (`WAIT`) before it is published
/// anyway, and the node stops waiting until its replicas are back.
pub(crate) const WAIT_REPLICAS: Duration = Duration::from_millis(200);
/// How long a command waits for its answer before it counts as failed (then it is refused:
/// "retry").
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis deployment a broker URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// `redis://` or `rediss://`: one server.
    Single { url: String },
    /// `redis+sentinel://[:password@]host:port,host:port/MASTER_NAME[/DB]`: the primary the
    /// sentinels name.
    Sentinel { sentinels: Vec<String>, master: String, password: Option<String>, db: i64, replicas: usize },
    /// `redis-cluster://[:password@]host:port,host:port` (`rediss-cluster://` for TLS): a Redis
    /// Cluster, found from these seed nodes.
    Cluster { seeds: Vec<String>, replicas: usize },
}

/// A broker URL that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadUrl(String);

impl Topology {
    /// Reads a broker URL (see the variants). A `?replicas=N` query sets
    /// [`Topology::replicas`] for Sentinel and Cluster (default 1).
    pub(crate) fn parse(url: &str) -> Result<Self, BadUrl> {
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| BadUrl(format!("{url:?} is not a URL (scheme://…)")))?;
        match scheme {
            "redis" | "rediss" => Ok(Topology::Single { url: url.to_owned() }),
            "redis+sentinel" | "redis-cluster" | "rediss-cluster" => {
                let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
                let replicas = replicas_of(query)?;
                let (password, rest) = match rest.rsplit_once('@') {
                    Some((auth, rest)) => {
                        let password = auth.split_once(':').map_or(auth, |(_, p)| p);
                        (Some(percent_decode(password)).filter(|p| !p.is_empty()), rest)
                    }
                    None => (None, rest),
                };
                let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
                let default_port = if scheme == "redis+sentinel" { 26379 } else { 6379 };
                let hosts = hosts
                    .split(',')
                    .filter(|h| !h.is_empty())
                    .map(|h| if h.contains(':') { h.to_owned() } else { format!("{h}:{default_port}") })
                    .collect::<Vec<_>>();
                if hosts.is_empty() {
                    return Err(BadUrl(format!("{scheme}:// needs at least one host:port")));
                }
                if scheme == "redis+sentinel" {
                    let mut parts = path.split('/').filter(|p| !p.is_empty());
                    let master = parts.next().ok_or_else(|| {
                        BadUrl("redis+sentinel:// needs the primary's name: redis+sentinel://host:26379/mymaster".into())
                    })?;
                    let db = match parts.next() {
                        Some(db) => {
                            db.parse().map_err(|_| BadUrl(format!("{db:?} is not a database number")))?
                        }
                        None => 0,
                    };
                    let sentinels = hosts.into_iter().map(|h| format!("redis://{h}")).collect();
                    Ok(Topology::Sentinel { sentinels, master: master.to_owned(), password, db, replicas })
                } else {
                    if !path.is_empty() {
                        return Err(BadUrl(
                            "a Redis Cluster has one database: no /DB in redis-cluster://".into(),
                        ));
                    }
                    let data = if scheme == "rediss-cluster" { "rediss" } else { "redis" };
                    let auth = password.map(|p| format!(":{}@", percent_encode(&p))).unwrap_or_default();
                    let seeds = hosts.into_iter().map(|h| format!("{data}://{auth}{h}")).collect();
                    Ok(Topology::Cluster { seeds, replicas })
                }
            }
            other => Err(BadUrl(format!(
                "unknown broker scheme {other:?}: use redis://, rediss://, redis+sentinel:// or redis-cluster://"
            ))),
        }
    }

    /// How many replicas must have an operation before it is published.
    pub(crate) fn replicas(&self) -> usize {
        match self {
            Topology::Single { .. } => 0,
            Topology::Sentinel { replicas, .. } | Topology::Cluster { replicas, .. } => *replicas,
        }
    }

    /// Whether keys are sharded (cross-slot commands are not allowed; pub/sub is sharded).
    pub(crate) fn sharded(&self) -> bool {
        matches!(self, Topology::Cluster { .. })
    }

    /// What a session's messages are published with.
    pub(crate) fn publish(&self) -> &'static str {
        if self.sharded() { "SPUBLISH" } else { "PUBLISH" }
    }
}

fn replicas_of(query: &str) -> Result<usize, BadUrl> {
    let mut replicas = 1;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("replicas", n)) => {
                replicas = n.parse().map_err(|_| BadUrl(format!("replicas={n:?} is not a count")))?;
            }
            _ => return Err(BadUrl(format!("unknown broker URL parameter {pair:?} (known: replicas=N)"))),
        }
    }
    Ok(replicas)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| s.to_owned(), |(_, v)| v.into_owned())
}

fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The connection commands go through (see the module docs). Cheap to clone: clones share it.
#[derive(Clone)]
pub(crate) enum Link {
    Single(ConnectionManager),
    Sentinel(Arc<Followed>),
    Cluster(Arc<Sharded>),
}

/// A Redis Cluster connection, renewed when it keeps failing: the cluster client reconnects to a
/// dead primary until it happens to reread the slots, which took it 13 to 16 s after a shard's
/// failover; a new connection reads them from the live nodes at once. So once commands have been
/// failing for [`RENEW_AFTER`], a task makes a new connection every [`RENEW_AFTER`] until they
/// succeed again.
pub(crate) struct Sharded {
    client: redis::cluster::ClusterClient,
    current: parking_lot::RwLock<ClusterConnection>,
    /// When a command last failed, and last succeeded, in ms from `started` (0: never).
    failed: AtomicU64,
    succeeded: AtomicU64,
    started: std::time::Instant,
    /// Counts the renewals (the subscriptions are made again on each).
    switches: watch::Sender<u64>,
    /// Asks for a renewal now (a node connection dropped, a subscription failed).
    renew: tokio::sync::Notify,
}

/// How long commands fail before the cluster connection is renewed, and between renewals.
pub(crate) const RENEW_AFTER: Duration = Duration::from_millis(500);

impl Sharded {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    fn conn(&self) -> ClusterConnection {
        self.current.read().clone()
    }

    fn note<T>(&self, result: &RedisResult<T>) {
        let at = self.now_ms();
        match result {
            Ok(_) => self.succeeded.store(at, Ordering::Relaxed),
            Err(_) => self.failed.store(at, Ordering::Relaxed),
        }
    }

    /// Subscribes to a sharded channel, on the connection of now.
    pub(crate) async fn ssubscribe(&self, channel: &str) -> RedisResult<()> {
        self.conn().ssubscribe(channel).await
    }

    pub(crate) async fn sunsubscribe(&self, channel: &str) -> RedisResult<()> {
        self.conn().sunsubscribe(channel).await
    }

    /// Renews the connection as soon as [`RENEW_AFTER`] allows: one of its node connections
    /// dropped (its subscriptions with it, which a node that only listens would not notice), or
    /// subscribing failed.
    pub(crate) fn renew_soon(&self) {
        self.renew.notify_one();
    }
}

/// Renews a failing cluster connection (see [`Sharded`]) while the link lives.
async fn renew_failing(sharded: Arc<Sharded>) {
    let mut tick = tokio::time::interval(RENEW_AFTER / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing_since: Option<u64> = None;
    let mut renewed_at = 0;
    let mut asked = false;
    let after = RENEW_AFTER.as_millis() as u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = sharded.renew.notified() => asked = true,
        }
        let (failed, succeeded, now) = (
            sharded.failed.load(Ordering::Relaxed),
            sharded.succeeded.load(Ordering::Relaxed),
            sharded.now_ms(),
        );
        let failing = if failed <= succeeded {
            failing_since = None;
            false
        } else {
            now.saturating_sub(*failing_since.get_or_insert(failed)) >= after
        };
        if !(failing || asked) || now.saturating_sub(renewed_at) < after {
            continue;
        }
        asked = false;
        renewed_at = now;
        match tokio::time::timeout(CONNECT_TIMEOUT, sharded.client.get_async_connection()).await {
            Ok(Ok(conn)) => {
                *sharded.current.write() = conn;
                sharded.switches.send_modify(|n| *n += 1);
                tracing::warn!("Redis Cluster commands kept failing: reconnected, with the slots read anew");
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "no Redis Cluster connection yet"),
            Err(_) => tracing::debug!("no Redis Cluster connection yet (timed out)"),
        }
    }
}

/// The primary Sentinel names, followed: a task asks the sentinels every [`SENTINEL_POLL`] and,
/// when they name another, connects to it and sends every later command there.
pub(crate) struct Followed {
    current: parking_lot::RwLock<(ConnectionManager, redis::Client)>,
    /// Counts the switches to another primary (the subscription reconnects on each).
    switches: watch::Sender<u64>,
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_max_delay(Duration::from_millis(500))
}

impl Link {
    /// Connects to what `topology` names. For a cluster, `pushes` gets its sharded messages.
    pub(crate) async fn connect(
        topology: &Topology,
        pushes: Option<mpsc::UnboundedSender<PushInfo>>,
    ) -> RedisResult<(Self, Option<tokio::task::JoinHandle<()>>)> {
        match topology {
            Topology::Single { url } => {
                let client = redis::Client::open(url.as_str())?;
                let conn = ConnectionManager::new_with_config(client, manager_config()).await?;
                Ok((Link::Single(conn), None))
            }
            Topology::Sentinel { sentinels, master, password, db, .. } => {
                let mut sentinel = sentinel_client(sentinels, master, password.as_deref(), *db)?;
                let client = sentinel.async_get_client().await?;
                let conn = ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
                let followed = Arc::new(Followed {
                    current: parking_lot::RwLock::new((conn, client)),
                    switches: watch::channel(0).0,
                });
                let task = tokio::spawn(follow_primary(sentinel, Arc::downgrade(&followed)));
                Ok((Link::Sentinel(followed), Some(task)))
            }
            Topology::Cluster { seeds, .. } => {
                let mut builder = ClusterClientBuilder::new(seeds.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(6)
                    .min_retry_wait(50)
                    .max_retry_wait(1000);
                if let Some(pushes) = pushes {
                    builder = builder.push_sender(pushes);
                }
                let client = builder.build()?;
                let conn = client.get_async_connection().await?;
                let sharded = Arc::new(Sharded {
                    client,
                    current: parking_lot::RwLock::new(conn),
                    failed: AtomicU64::new(0),
                    succeeded: AtomicU64::new(0),
                    started: std::time::Instant::now(),
                    switches: watch::channel(0).0,
                    renew: tokio::sync::Notify::new(),
                });
                let task = tokio::spawn(renew_failing(Arc::clone(&sharded)));
                Ok((Link::Cluster(sharded), Some(task)))
            }
        }
    }

    /// A client for a new pub/sub connection to the one server, or to Sentinel's primary now.
    pub(crate) fn client(&self) -> Option<redis::Client> {
        match self {
            Link::Single(_) | Link::Cluster(_) => None,
            Link::Sentinel(f) => Some(f.current.read().1.clone()),
        }
    }

    /// Changes each time the link switches to another primary (Sentinel) or connection (a
    /// cluster's, renewed).
    pub(crate) fn switches(&self) -> Option<watch::Receiver<u64>> {
        match self {
            Link::Sentinel(f) => Some(f.switches.subscribe()),
            Link::Cluster(c) => Some(c.switches.subscribe()),
            Link::Single(_) => None,
        }
    }

    /// Runs `cmds` (each with its own keys): one pipeline where keys may cross slots, one
    /// command each (concurrently) in a cluster. Errors are logged by the caller.
    pub(crate) async fn each(&self, cmds: Vec<Cmd>) -> RedisResult<()> {
        match self {
            Link::Cluster(_) => {
                let runs = cmds.into_iter().map(|cmd| {
                    let mut link = self.clone();
                    async move { cmd.query_async::<Value>(&mut link).await.map(drop) }
                });
                futures_util::future::try_join_all(runs).await.map(drop)
            }
            _ => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd).ignore();
                }
                pipe.query_async::<()>(&mut self.clone()).await
            }
        }
    }
}

fn sentinel_client(
    sentinels: &[String],
    master: &str,
    password: Option<&str>,
    db: i64,
) -> RedisResult<SentinelClient> {
    let mut info = redis::RedisConnectionInfo::default().set_db(db);
    if let Some(password) = password {
        info = info.set_password(password);
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
    SentinelClient::build(sentinels.to_vec(), master, Some(node), SentinelServerType::Master)
}

/// Follows the primary Sentinel names (see [`Followed`]) while the link lives.
async fn follow_primary(mut sentinel: SentinelClient, followed: std::sync::Weak<Followed>) {
    let mut tick = tokio::time::interval(SENTINEL_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(followed) = followed.upgrade() else { return };
        let named = match tokio::time::timeout(CONNECT_TIMEOUT, sentinel.async_get_client()).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the sentinels name no reachable primary yet");
                continue;
            }
            Err(_) => continue,
        };
        let now = followed.current.read().1.get_connection_info().addr().to_string();
        let addr = named.get_connection_info().addr().to_string();
        if addr == now {
            continue;
        }
        match ConnectionManager::new_with_config(named.clone(), manager_config()).await {
            Ok(conn) => {
                *followed.current.write() = (conn, named);
                followed.switches.send_modify(|n| *n += 1);
                tracing::warn!(from = %now, to = %addr, "Sentinel named another primary: following it");
            }
            Err(e) => {
                tracing::warn!(primary = %addr, error = %e, "cannot reach the primary Sentinel names yet")
            }
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(conn) => conn.req_packed_command(cmd),
            Link::Cluster(c) => {
                let (c, mut conn) = (Arc::clone(c), c.conn());
                Box::pin(async move {
                    let result = conn.req_packed_command(cmd).await;
                    c.note(&result);
                    result
                })
            }
            Link::Sentinel(f) => {
                let mut conn = f.current.read().0.clone();
                Box::pin(async move { conn.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Link::Cluster(c) => {
                let (c, mut conn) = (Arc::clone(c), c.conn());
                Box::pin(async move {
                    let result = conn.req_packed_commands(cmd, offset, count).await;
                    c.note(&result);
                    result
                })
            }
            Link::Sentinel(f) => {
                let mut conn = f.current.read().0.clone();
                Box::pin(async move { conn.req_packed_commands(cmd, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(conn) => conn.get_db(),
            Link::Cluster(c) => c.conn().get_db(),
            Link::Sentinel(f) => f.current.read().0.get_db(),
        }
    }
}

/// Where the messages of the sessions a node follows arrive.
pub(crate) enum Feed {
    /// A pub/sub connection (one server, or Sentinel's primary).
    Plain(PubSubStream),
    /// The cluster connection's pushes (sharded pub/sub); it resubscribes by itself after a
    /// shard's failover, and says so with an `ssubscribe` push.
    Sharded(mpsc::UnboundedReceiver<PushInfo>),
}

/// One thing a [`Feed`] brought.
pub(crate) enum Event {
    /// A message on a channel.
    Message { channel: String, payload: String },
    /// The channel was subscribed (again, after a reconnection, if it was already).
    Subscribed { channel: String },
    /// A connection of the feed dropped (a cluster node's): its subscriptions may be gone.
    Lost,
    /// Nothing this module reads (a confirmation of unsubscription, an unreadable message).
    Other,
}

impl Feed {
    /// The next event; `None` when the connection ended (a plain feed must then be replaced).
    pub(crate) async fn next(&mut self) -> Option<Event> {
        use futures_util::StreamExt;
        match self {
            Feed::Plain(stream) => stream.next().await.map(|m| plain(&m)),
            Feed::Sharded(rx) => rx.recv().await.map(sharded),
        }
    }

    /// The next event if one is there already.
    pub(crate) fn try_next(&mut self) -> Option<Option<Event>> {
        use futures_util::{FutureExt, StreamExt};
        match self {
            Feed::Plain(stream) => stream.next().now_or_never().map(|m| m.map(|m| plain(&m))),
            Feed::Sharded(rx) => match rx.try_recv() {
                Ok(push) => Some(Some(sharded(push))),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
            },
        }
    }
}

fn plain(msg: &redis::Msg) -> Event {
    match msg.get_payload::<String>() {
        Ok(payload) => Event::Message { channel: msg.get_channel_name().to_owned(), payload },
        Err(e) => {
            tracing::warn!(channel = msg.get_channel_name(), error = %e, "ignoring an unreadable message");
            Event::Other
        }
    }
}

fn sharded(push: PushInfo) -> Event {
    let text = |v: &Value| redis::from_redis_value_ref::<String>(v).ok();
    match push.kind {
        redis::PushKind::SMessage | redis::PushKind::Message => match (push.data.first(), push.data.get(1)) {
            (Some(c), Some(p)) => match (text(c), text(p)) {
                (Some(channel), Some(payload)) => Event::Message { channel, payload },
                _ => Event::Other,
            },
            _ => Event::Other,
        },
        redis::PushKind::SSubscribe => match push.data.first().and_then(text) {
            Some(channel) => Event::Subscribed { channel },
            None => Event::Other,
        },
        redis::PushKind::Disconnection => Event::Lost,
        _ => Event::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_name_their_topology() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:6379/0").unwrap(),
            Topology::Single { url: "redis://127.0.0.1:6379/0".into() }
        );
        assert_eq!(
            Topology::parse("redis+sentinel://:pw@h1:26379,h2/mymaster/2").unwrap(),
            Topology::Sentinel {
                sentinels: vec!["redis://h1:26379".into(), "redis://h2:26379".into()],
                master: "mymaster".into(),
                password: Some("pw".into()),
                db: 2,
                replicas: 1,
            }
        );
        assert_eq!(
            Topology::parse("redis-cluster://:p%40ss@a:7000,b:7001?replicas=0").unwrap(),
            Topology::Cluster {
                seeds: vec!["redis://:p%40ss@a:7000".into(), "redis://:p%40ss@b:7001".into()],
                replicas: 0
            }
        );
        assert_eq!(Topology::parse("rediss-cluster://a").unwrap().publish(), "SPUBLISH");
        assert_eq!(Topology::parse("redis-cluster://a").unwrap().replicas(), 1);
        assert_eq!(Topology::parse("redis://a").unwrap().replicas(), 0);
    }

    #[test]
    fn a_bad_broker_url_says_what_is_wrong() {
        let err = |url: &str| Topology::parse(url).unwrap_err().to_string();
        assert!(
            err("redis+sentinel://h1:26379").contains("primary's name"),
            "{}",
            err("redis+sentinel://h1:26379")
        );
        assert!(err("redis-cluster://").contains("at least one host"));
        assert!(err("redis-cluster://a/3").contains("one database"));
        assert!(err("redis-cluster://a?replica=1").contains("replicas=N"));
        assert!(err("memcached://a").contains("unknown broker scheme"));
        assert!(err("localhost:6379").contains("not a URL"));
    }
}
