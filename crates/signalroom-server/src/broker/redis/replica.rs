//! A node's replica of each session it follows: loading it (snapshot and log) and subscribing
//! its channel, applying operations in version order as they arrive, filling gaps from the log,
//! and dropping the replicas nobody here needs any more.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use signalroom_core::{ConnectionId, SessionId};
use tokio::sync::{oneshot, watch};

use crate::broker::link::Link;
use crate::broker::{Applied, Held, Notice, deliver};
use crate::op::{Op, Value};
use crate::outbox::{Order, Out, Resumed};
use crate::refusal::Refusal;
use crate::room::{Audience, Effect};

use super::keys::{SNAPSHOT, channel, key};
use super::{
    Answer, Cell, Keys, Loaded, Message, OP_WAIT, REPLICA_LINGER, Recent, Replica, Roster, SWEEP_EVERY,
    Shared, down, load, read_log, snapshot_every,
};

/// The session's replica on this node, loaded (and its channel subscribed) if it was not.
pub(super) async fn follow(shared: &Arc<Shared>, id: &str) -> Result<Arc<Cell>, Refusal> {
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
pub(super) async fn subscribe(shared: &Shared, id: &str) -> Result<(), Refusal> {
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
pub(super) async fn unsubscribe_if_unfollowed(shared: &Shared, session: &SessionId) -> Result<(), Refusal> {
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
pub(super) fn apply_ahead(shared: &Arc<Shared>, session: &SessionId, cell: &Arc<Cell>) {
    let mut batch = Batch::default();
    let missing = {
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
pub(super) async fn release_when_due(
    shared: &Arc<Shared>,
    session: &SessionId,
    cell: &Arc<Cell>,
    mut due: Instant,
) {
    loop {
        tokio::time::sleep_until(due.into()).await;
        let mut batch = Batch::default();
        let next = {
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
    pub(super) fn release(&mut self, applied: &mut Applied<()>) {
        self.held.release(&self.roster, applied);
        self.held.armed = false;
        self.held_joins = true;
    }
}

/// Reads the log from version `from` on for a replica that missed messages, and applies them.
pub(super) async fn fill(shared: &Arc<Shared>, session: &SessionId, cell: &Arc<Cell>, from: u64) {
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
pub(super) type Outcome<T> = (oneshot::Sender<T>, T);

/// What applying messages leaves to do once the replica's lock is released.
#[derive(Default)]
pub(super) struct Batch {
    /// Pushes and evictions found on this node ([`Applied::slow`]).
    pub(super) applied: Applied<()>,
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
        Applied::with((), false)
    }
}

impl Batch {
    pub(super) fn finish(mut self, shared: &Arc<Shared>, session: &SessionId, cell: &Arc<Cell>) {
        // The writes the pushes claimed, now that the replica's lock is released.
        self.applied.writes.make();
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
pub(super) fn apply_one(
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
    let mut applied = Applied::with((), closed);
    let mut present = before;
    for effect in &effects {
        match effect {
            Effect::Notify { to, note } => {
                replica.recent.keep(to, note);
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
                applied.left.push(super::super::Left { who, rpc_id, reason, stay });
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
                let writes = &mut batch.applied.writes;
                outbox.push_later(Out::Reply(build(resumed)), writes);
                for note in frames {
                    outbox.push_later(Out::Note(note), writes);
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
            Effect::Notify { to: Audience::All, note } => held.hold_note(note, roster.len()),
            Effect::Reply => {
                let (Some(caller), Some(out)) = (&caller, reply.take()) else { continue };
                if joining {
                    // The joiner entered the roster last: nothing held is for it, and what is
                    // held after it comes after its answer.
                    caller.push_later(out, &mut batch.applied.writes);
                    continue;
                }
                match (out, roster.values().position(|o| Arc::ptr_eq(o, caller))) {
                    (Out::Reply(frame), Some(at)) => held.hold_reply(frame, at),
                    (out, _) => {
                        held.release(roster, &mut batch.applied);
                        caller.push_later(out, &mut batch.applied.writes);
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
                    let close = Order::Close { code: 1000, reason: "replaced by a reconnection" };
                    old.push_later(Out::Order(close), &mut batch.applied.writes);
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
        batch.outcomes.push((
            done,
            Ok(Applied { slow, left, delivered, closed, held, ..Applied::with(value, closed) }),
        ));
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

/// Whether this node ran no operation on the session for [`REPLICA_LINGER`].
pub(super) fn unused(shared: &Shared, cell: &Cell) -> bool {
    shared.now_ms().saturating_sub(cell.used.load(Ordering::Relaxed)) >= REPLICA_LINGER.as_millis() as u64
}

/// Drops the replicas this node no longer needs: no participant here, no operation on its way,
/// unused for [`REPLICA_LINGER`]; and leaves their channels.
pub(super) async fn sweep(shared: Arc<Shared>) {
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
