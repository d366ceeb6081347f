//! Node liveness: this node's heartbeat (and its sets of nodes and held sessions), and the
//! reaper that finds participants held by nodes that stopped beating.

use std::collections::HashSet;
use std::sync::Arc;

use redis::AsyncCommands;
use signalroom_core::{ConnectionId, SessionId};

use crate::broker::Notice;
use crate::broker::link::Link;
use crate::op::Op;

use super::keys::{NODES, SESSIONS, held_key, key, node_key};
use super::{HEARTBEAT, Loaded, NODE_TTL, REAP_EVERY, Shared, load};

/// Keeps this node's heartbeat alive.
pub(super) async fn heartbeat(mut conn: Link, shared: Arc<Shared>) {
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

/// Finds participants held by nodes whose heartbeat expired, for the hub to evict once they had
/// the reconnection grace to come back. A round costs O(nodes), whatever the number of sessions:
/// it looks at the heartbeats of the nodes in [`NODES`], and only for a node found dead at the
/// sessions it held participants of ([`held_key`]); a dead node whose sessions hold none of its
/// participants any more is forgotten. Every few rounds it also checks a few listed sessions,
/// unlisting those that no longer exist ([`prune_listed`]).
pub(super) async fn reap(shared: Arc<Shared>) {
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
pub(super) const PRUNE_EVERY: u64 = 10;
/// ...this many.
pub(super) const PRUNE_SAMPLE: usize = 20;

/// Unlists sessions listed in `sr:sessions` that do not exist, found missing twice in a row (a
/// session is listed just before it is made; a node that died between the two leaves its id).
pub(super) async fn prune_listed(conn: &mut Link, missing: &mut HashSet<String>) {
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
pub(super) async fn participants_of(shared: &Shared, id: &str) -> Option<Vec<(ConnectionId, String)>> {
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
