//! The operation writer: hands this node's operations to Redis in order, many per round trip
//! ([`SUBMIT`] pipelines); with replicas asked for, waits for them (`WAIT`) and then publishes
//! ([`RELEASE`]); settles the operations a broken pipeline left uncertain; and watches whether
//! the replicas are back after they failed to acknowledge.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indexmap::IndexMap;
use signalroom_core::SessionId;
use tokio::sync::{mpsc, oneshot};

use crate::refusal::Refusal;

use super::keys::{RELEASE, channel, key};
use super::{OP_BATCH, OP_WAIT, Shared};

/// A [`SUBMIT`] for the operation writer; `done` gets its answer.
pub(super) struct Job {
    pub(super) cmd: redis::Cmd,
    pub(super) session: SessionId,
    pub(super) op_id: u64,
    pub(super) done: oneshot::Sender<Result<i64, Failed>>,
}

/// Why an operation was not numbered.
pub(super) enum Failed {
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
pub(super) async fn write_ops(shared: Arc<Shared>, mut jobs: mpsc::UnboundedReceiver<Job>) {
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
pub(super) fn add_release<'a>(
    shared: &Shared,
    pipe: &mut redis::Pipeline,
    sessions: impl Iterator<Item = &'a SessionId>,
) {
    if !shared.degraded.load(Ordering::Relaxed) {
        pipe.cmd("WAIT").arg(shared.acks).arg(crate::broker::link::WAIT_REPLICAS.as_millis() as u64);
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
pub(super) async fn write_batch(shared: &Arc<Shared>, jobs: Vec<Job>) {
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
                match acknowledged {
                    Some(n) if n < shared.acks => short_of_replicas(shared, n).await,
                    Some(_) => shared.lagging.store(false, Ordering::Relaxed),
                    None => {}
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
pub(super) async fn settle(shared: Arc<Shared>, sessions: IndexMap<SessionId, Vec<u64>>) {
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

/// Replicas acknowledged fewer than asked (`acknowledged`) in time. Connected ones only lag (a
/// busy host): operations keep waiting for them, those of this pipeline being published already.
/// Missing ones (gone, or a failover left the new primary without any): operations are published
/// without them until they are back ([`watch_replicas`]).
async fn short_of_replicas(shared: &Shared, acknowledged: usize) {
    let connected = connected_replicas(shared).await;
    if connected.is_some_and(|n| n >= shared.acks) {
        if !shared.lagging.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                wanted = shared.acks,
                acknowledged,
                connected,
                "Redis replicas are connected but slow to acknowledge: operations keep waiting for them"
            );
        }
        return;
    }
    if !shared.degraded.swap(true, Ordering::Relaxed) {
        tracing::error!(
            wanted = shared.acks,
            acknowledged,
            connected,
            "Redis replicas did not acknowledge in time and are not all connected: publishing without them \
             until they are back (a failover meanwhile may lose the latest operations)"
        );
    }
}

/// How many replicas are connected: to the primary, or the fewest any cluster primary has.
async fn connected_replicas(shared: &Shared) -> Option<usize> {
    if shared.sharded {
        let nodes: redis::RedisResult<String> =
            redis::cmd("CLUSTER").arg("NODES").query_async(&mut shared.conn.clone()).await;
        nodes.ok().map(|nodes| fewest_cluster_replicas(&nodes))
    } else {
        let info: redis::RedisResult<String> =
            redis::cmd("INFO").arg("replication").query_async(&mut shared.conn.clone()).await;
        info.ok().and_then(|info| {
            info.lines().find_map(|l| l.strip_prefix("connected_slaves:")).and_then(|n| n.trim().parse().ok())
        })
    }
}

/// With replicas, after they failed to acknowledge: looks every second whether enough are
/// connected again (to the primary, or to each cluster primary), then waits for them again.
pub(super) async fn watch_replicas(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if !shared.degraded.load(Ordering::Relaxed) {
            continue;
        }
        let fewest = connected_replicas(&shared).await;
        if fewest.is_some_and(|n| n >= shared.acks) {
            shared.degraded.store(false, Ordering::Relaxed);
            tracing::info!(replicas = fewest, "Redis replicas are back: operations wait for them again");
        }
    }
}

/// The fewest connected replicas any primary holding slots has, from `CLUSTER NODES`.
pub(super) fn fewest_cluster_replicas(nodes: &str) -> usize {
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
