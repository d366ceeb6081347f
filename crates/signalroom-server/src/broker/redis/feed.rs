//! The subscriber: reads the messages of every followed session from its channel (plain or
//! sharded pub/sub), in batches, and applies them to the replicas; after Redis went away,
//! subscribes again and lets each replica fill from the log what it missed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::Utf8Bytes;
use redis::AsyncCommands;
use signalroom_core::{EndReason, SessionId};

use crate::broker::link::{Event, Feed, Link};
use crate::outbox::{Note, Order, Out};

use super::keys::{channel, key, session_of};
use super::replica::{apply_ahead, fill};
use super::{Cell, Message, RESUBSCRIBE_BACKOFF, Shared, again};

/// At most this many messages are read before they are applied.
pub(super) const MAX_BATCH: usize = 256;

/// Applies every message of the followed sessions, in order. A plain feed that ends (Redis went
/// away, or Sentinel named another primary) is replaced, with backoff, by a new subscription to
/// the same channels, then each replica fills from the log what it missed; a cluster's feed
/// resubscribes by itself, and a session's replica fills from the log when its channel is
/// subscribed again.
pub(super) async fn read_messages(client: Option<redis::Client>, mut feed: Feed, shared: Arc<Shared>) {
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
pub(super) fn read_event(shared: &Arc<Shared>, event: Event, batch: &mut Vec<(SessionId, Message)>) {
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
pub(super) fn apply_batch(shared: &Arc<Shared>, batch: &mut Vec<(SessionId, Message)>) {
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
pub(super) async fn resume_replicas(shared: &Arc<Shared>) {
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
                // (The roster is out of the replica's lock: pushes may write at once.)
                for (who, outbox) in roster {
                    let params = signalroom_core::protocol::ParticipantLeft {
                        connection_id: who,
                        reason: EndReason::NetworkDisconnect,
                    };
                    let evicted = signalroom_core::jsonrpc::Notification::new(
                        signalroom_core::protocol::notification::PARTICIPANT_EVICTED,
                        &params,
                    );
                    outbox.push(Out::Note(Note::unnumbered(Utf8Bytes::from(evicted.to_json()))));
                    outbox
                        .push(Out::Order(Order::Close { code: 1000, reason: "session lost by the broker" }));
                }
            }
            Err(e) => tracing::warn!(%session, error = %e, "cannot check a session after Redis came back"),
        }
    }
}
