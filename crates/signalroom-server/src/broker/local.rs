//! [`LocalBroker`]: every session in this process (one node, the default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use indexmap::IndexMap;
use parking_lot::Mutex;
use signalroom_core::{ConnectionId, RpcSessionId, SessionId};

use super::{Applied, Broker, Held, Later, Outcome, Reply, deliver};
use crate::op::{Op, SignalOp, Value};
use crate::outbox::{Limits, Out, Outbox};
use crate::refusal::Refusal;
use crate::room::{Audience, Effect, Room};

/// One session in this process: its room and the outboxes of its participants, in join order,
/// under one lock. The lock is held for an operation and the pushes of its effects, which never
/// wait; never across an `.await`.
#[derive(Debug)]
struct Cell {
    room: Room,
    roster: IndexMap<ConnectionId, Arc<Outbox>>,
    /// Frames held back, so that each participant gets those of several operations in one push
    /// ([`Held`]). Two kinds of operations hold theirs: a join (its `participantJoined`; the
    /// joiner is appended to the roster and its answer pushed at once, as nothing held is for
    /// it), and a participant's broadcast signal (the notification and the sender's reply).
    /// Every other operation pushes what is held before its own effects, so the roster changes
    /// only by appending while anything is held, and each participant still gets every frame in
    /// order. Whoever holds makes sure an operation follows soon ([`Applied::held`]); at most
    /// [`MAX_HELD`](super::MAX_HELD) frames and [`MAX_HELD_BYTES`](super::MAX_HELD_BYTES) are held.
    held: Held,
}

impl Cell {
    fn new(room: Room) -> Self {
        Self { room, roster: IndexMap::new(), held: Held::default() }
    }
}

/// Everything in this process: a sharded map of sessions, each under its own lock, so busy
/// sessions never contend.
#[derive(Debug)]
pub(crate) struct LocalBroker {
    sessions: DashMap<SessionId, Arc<Mutex<Cell>>>,
    rpc: DashMap<RpcSessionId, (SessionId, ConnectionId)>,
    /// How long a leaving participant's socket may linger ([`CloseMode::Linger`]).
    linger: Duration,
    /// What a session may hold back ([`Cell::held`]).
    most_held: Limits,
}

impl LocalBroker {
    /// An empty broker; sockets of leaving participants linger `linger` at most; each
    /// participant's queue holds `queue` at most.
    pub(crate) fn new(linger: Duration, queue: Limits) -> Self {
        Self { sessions: DashMap::new(), rpc: DashMap::new(), linger, most_held: super::most_held(queue) }
    }

    fn cell(&self, id: &str) -> Option<Arc<Mutex<Cell>>> {
        self.sessions.get(id).map(|c| Arc::clone(&c))
    }

    /// Pushes what is held back in session `id` ([`Cell::held`]): an operation without effects.
    fn push_held(&self, id: &str) -> Result<Applied<()>, Refusal> {
        self.run(id, None, None, |_| Ok(Outcome::new((), Vec::new(), None)))
    }

    /// [`Broker::apply`]; `sender`: the operation is that participant's signal, whose broadcast
    /// and reply may be held back ([`Cell::held`]).
    fn run<R>(
        &self,
        id: &str,
        caller: Option<&Arc<Outbox>>,
        sender: Option<&ConnectionId>,
        op: impl FnOnce(&mut Room) -> Result<Outcome<R>, Refusal>,
    ) -> Result<Applied<R>, Refusal> {
        let shared = self.cell(id).ok_or_else(|| Refusal::NoSession(id.to_owned()))?;
        let mut guard = shared.lock();
        if guard.room.is_closed() {
            return Err(Refusal::NoSession(id.to_owned()));
        }
        let Outcome { value, effects, reply } = op(&mut guard.room)?;
        let mut applied = Applied::with(value, false);
        let mut reply = reply;
        let cell = &mut *guard;
        // A join: its caller enters the roster. A broadcast: the sender's place, for its reply.
        let joining = caller.is_some()
            && effects.iter().any(|e| matches!(e, Effect::Enter(id) if !cell.roster.contains_key(id)));
        let broadcast = effects.iter().any(|e| matches!(e, Effect::Notify { to: Audience::All, .. }));
        let sender_at = sender.filter(|_| broadcast).and_then(|s| cell.roster.get_index_of(s));
        let holding = joining || sender_at.is_some();
        for effect in effects {
            match (effect, sender_at) {
                (Effect::Notify { to: Audience::All, note }, _) if holding => {
                    applied.delivered += cell.roster.len();
                    cell.held.hold_note(note, cell.roster.len());
                }
                (Effect::Reply, Some(at)) => {
                    if let Some(Out::Reply(frame)) = reply.take() {
                        cell.held.hold_reply(frame, at);
                    }
                }
                // The joiner is appended to the roster, and nothing held is for it.
                (effect @ (Effect::Enter(_) | Effect::Reply), _) if joining => {
                    deliver(&mut cell.roster, effect, caller, &mut reply, self.linger, &mut applied);
                }
                (effect, _) => {
                    cell.held.release(&cell.roster, &mut applied);
                    deliver(&mut cell.roster, effect, caller, &mut reply, self.linger, &mut applied);
                }
            }
        }
        if !holding || cell.held.too_much(self.most_held) {
            cell.held.release(&cell.roster, &mut applied);
        }
        if !cell.held.is_empty() {
            applied.held = Some(if holding { cell.held.mark() } else { 0 });
        }
        applied.closed = cell.room.is_closed();
        let session_id = cell.room.id.clone();
        drop(guard);
        // The writes the pushes claimed ([`crate::outbox::Sink`]), now that the lock is released.
        applied.writes.make();
        for left in &applied.left {
            self.rpc.remove_if(&left.rpc_id, |_, (s, c)| *s == session_id && *c == left.who);
        }
        if applied.closed {
            self.sessions.remove_if(id, |_, c| Arc::ptr_eq(c, &shared));
        }
        Ok(applied)
    }
}

impl Broker for LocalBroker {
    async fn create(&self, room: Room) -> Result<(), Refusal> {
        let id = room.id.clone();
        let cell = Arc::new(Mutex::new(Cell::new(room)));
        match self.sessions.entry(id) {
            dashmap::Entry::Occupied(mut o) => {
                // A session closed a moment ago may still be registered: it is replaced.
                if !o.get().lock().room.is_closed() {
                    return Err(Refusal::SessionExists);
                }
                o.insert(cell);
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(cell);
            }
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
        self.run(id, caller, None, |room| {
            let (value, effects) = op.run(room)?;
            let reply = reply.build(&value, room);
            Ok(Outcome::new(value, effects, reply))
        })
    }

    fn signal(
        &self,
        id: &SessionId,
        signal: SignalOp<'_>,
        caller: Option<&Arc<Outbox>>,
        reply: Option<crate::outbox::Out>,
    ) -> super::Signalled {
        let id = id.as_str();
        // Applied at once, under the session's lock; a participant's broadcast is held back (its
        // socket's reader makes the next operation).
        let sender = signal.from.filter(|_| caller.is_some());
        super::Signalled::Now(self.run(id, caller, sender, |room| {
            // (The clock is read only for a signal the session's history keeps.)
            let (listed, effects) = signal.run(room, crate::util::now_ms)?;
            Ok(Outcome::new(listed, effects, reply))
        }))
    }

    async fn read<R: Send>(&self, id: &SessionId, f: impl FnOnce(&Room) -> R + Send) -> Option<R> {
        let id = id.as_str();
        let cell = self.cell(id)?;
        let guard = cell.lock();
        (!guard.room.is_closed()).then(|| f(&guard.room))
    }

    async fn sessions(&self) -> Vec<SessionId> {
        self.sessions.iter().map(|e| e.key().clone()).collect()
    }

    async fn bind_rpc(&self, rpc: RpcSessionId, session: SessionId, who: ConnectionId) {
        self.rpc.insert(rpc, (session, who));
    }

    async fn find_rpc(&self, rpc: &RpcSessionId) -> Option<(SessionId, ConnectionId)> {
        self.rpc.get(rpc).map(|e| e.clone())
    }

    async fn outbox(&self, session: &SessionId, who: &ConnectionId) -> Option<Arc<Outbox>> {
        let session = session.as_str();
        let cell = self.cell(session)?;
        let guard = cell.lock();
        guard.roster.get(who).cloned()
    }

    async fn session_count(&self) -> usize {
        self.sessions.len()
    }

    async fn hand_off(&self, _session: &SessionId, _who: &ConnectionId) {}

    async fn retire(&self) {}

    fn node(&self) -> &str {
        "local"
    }

    fn shared(&self) -> bool {
        false
    }

    fn release(&self, id: &SessionId) -> Option<Result<Applied<()>, Refusal>> {
        let id = id.as_str();
        Some(self.push_held(id))
    }

    /// After a join that held frames (marked `mark`), once the joins of other sockets ready
    /// then ran: releases what is held if it is ripe ([`Held::ripe`]); else leaves it to a join
    /// that held after this one, if any; else, this being the last join of a run, releases it
    /// now in a small session, or asks for a task to release it when due ([`Held::due`]): once
    /// for what is held, [`Later::At`].
    fn after_join(&self, id: &SessionId, mark: u64) -> Later {
        let id = id.as_str();
        let Some(cell) = self.cell(id) else { return Later::Nothing };
        {
            let mut c = cell.lock();
            let members = c.roster.len();
            if c.held.is_empty() {
                return Later::Nothing;
            }
            if !c.held.ripe(members) {
                if c.held.newer_than(mark) || c.held.armed {
                    return Later::Nothing;
                }
                if let Some(due) = c.held.due(members) {
                    c.held.armed = true;
                    return Later::At(due);
                }
            }
        }
        Later::Released(self.push_held(id))
    }

    /// For the task [`Broker::after_join`] asked for, at the time it gave: releases what is
    /// held if it is due by now, or tells when it will be.
    fn release_due(&self, id: &SessionId) -> Later {
        let id = id.as_str();
        let Some(cell) = self.cell(id) else { return Later::Nothing };
        {
            let mut c = cell.lock();
            let members = c.roster.len();
            if c.held.is_empty() {
                c.held.armed = false;
                return Later::Nothing;
            }
            match c.held.due(members) {
                Some(due) if due > Instant::now() && !c.held.ripe(members) => return Later::At(due),
                _ => c.held.armed = false,
            }
        }
        Later::Released(self.push_held(id))
    }

    async fn adopt(
        &self,
        _session: &SessionId,
        _who: &ConnectionId,
        _outbox: &Arc<Outbox>,
        _last_seq: Option<u64>,
        _reply: Box<dyn FnOnce(crate::outbox::Resumed) -> axum::extract::ws::Utf8Bytes + Send>,
    ) -> Result<crate::outbox::Resumed, Refusal> {
        // Every outbox is in this process: `outbox()` finds it.
        Err(Refusal::Reconnection)
    }

    fn notices(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<super::Notice>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::outbox::Out;
    use crate::room::tests::props;
    use crate::room::{Joiner, Minted};

    const LIMITS: Limits = Limits { frames: 1024, bytes: 1 << 20 };

    fn sid() -> SessionId {
        SessionId::from("S")
    }

    fn sig<'a>(from: Option<&'a ConnectionId>, to: &'a [ConnectionId], data: &'a str) -> SignalOp<'a> {
        SignalOp { from, to, data: Some(data), kind: None, listed: false }
    }

    async fn broker() -> LocalBroker {
        let broker = LocalBroker::new(Duration::from_secs(10), Limits { frames: 4096, bytes: 16 << 20 });
        broker.create(Room::new("S".into(), props(), 0)).await.unwrap();
        broker
    }

    /// `n` joins session `S` on socket `socket` (with the secret: no token to mint); its answer
    /// is the frame `answer n`.
    async fn join(broker: &LocalBroker, n: &str, socket: u64) -> (Arc<Outbox>, Applied<()>) {
        join_with(broker, n, socket, "").await
    }

    /// [`join`], with `metadata` as the client's data.
    async fn join_with(
        broker: &LocalBroker,
        n: &str,
        socket: u64,
        metadata: &str,
    ) -> (Arc<Outbox>, Applied<()>) {
        let outbox = Outbox::new(LIMITS, socket);
        let joiner = Joiner {
            token_id: None,
            token: String::new(),
            with_secret: Some(Minted {
                id: format!("con_{n}").into(),
                token_id: format!("tok_{n}"),
                token: format!("ws://h?sessionId=S&token=tok_{n}"),
            }),
            client_data: metadata.to_owned(),
            platform: "test".into(),
            ip: "127.0.0.1".into(),
            rpc_id: format!("rpc_{n}").into(),
            node: "local".into(),
            final_user_id: "F".into(),
            now: 1,
        };
        let answer = Out::Reply(format!("answer {n}").into());
        let applied = broker
            .run("S", Some(&outbox), None, |room| Ok(Outcome::new((), room.join(joiner)?.1, Some(answer))))
            .unwrap();
        (outbox, applied)
    }

    /// Session `S` with participant `A` joined (socket 1), nothing held, nothing queued.
    async fn broker_with_a() -> (LocalBroker, Arc<Outbox>) {
        let broker = broker().await;
        let (a, _) = join(&broker, "A", 1).await;
        broker.release(&sid()).expect("a session").unwrap();
        let _ = queued(&a, 1);
        (broker, a)
    }

    /// What is queued for socket `socket`, one line each: a notification's method and the
    /// connection it names, or the frame as it is.
    fn queued(outbox: &Outbox, socket: u64) -> Vec<String> {
        let mut buf = VecDeque::new();
        outbox.take_now(&mut buf, socket);
        crate::outbox::one_by_one(buf)
            .filter_map(|out| match out {
                Out::Note(n) => {
                    let v: serde_json::Value = serde_json::from_str(n.frame().as_str()).unwrap();
                    let p = &v["params"];
                    let who = p["id"].as_str().or(p["connectionId"].as_str()).or(p["from"].as_str());
                    Some(format!("{} {}", v["method"].as_str().unwrap(), who.unwrap_or("")))
                }
                Out::Reply(f) => Some(f.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Joins hold their `participantJoined`s back; an operation without effects pushes them, each
    /// participant getting those of the joins after its own, in order, in one push.
    #[tokio::test]
    async fn joins_hold_their_notifications_until_the_next_operation() {
        let broker = broker().await;
        let (a, joined) = join(&broker, "A", 1).await;
        assert!(joined.held.is_some(), "the first join's notification is held too (for nobody)");
        let (b, _) = join(&broker, "B", 2).await;
        let (c, joined) = join(&broker, "C", 3).await;
        assert!(joined.held.is_some());
        assert_eq!(joined.delivered, 2, "counted when held: for A and B");
        assert_eq!(queued(&a, 1), ["answer A"], "nothing pushed to A yet");
        assert_eq!(queued(&b, 2), ["answer B"]);
        assert_eq!(queued(&c, 3), ["answer C"]);
        let applied = broker.release(&sid()).expect("a session").unwrap();
        assert!(applied.held.is_none());
        assert_eq!(queued(&a, 1), ["participantJoined con_B", "participantJoined con_C"]);
        assert_eq!(queued(&b, 2), ["participantJoined con_C"]);
        assert!(queued(&c, 3).is_empty());
    }

    /// Any other operation pushes what the joins held before its own effects: a signal right
    /// after a join reaches everyone after that join's `participantJoined`, and a participant
    /// leaving is told of every join before it left.
    #[tokio::test]
    async fn other_operations_push_what_joins_held_first() {
        let broker = broker().await;
        let (a, _) = join(&broker, "A", 1).await;
        let (b, _) = join(&broker, "B", 2).await;
        let from = ConnectionId::from("con_B");
        let reply = Out::Reply("reply B".into());
        let applied = broker
            .run("S", Some(&b), None, |room| {
                Ok(Outcome::new((), room.signal(Some(&from), &[], None, None, || 0)?, Some(reply)))
            })
            .unwrap();
        assert!(applied.held.is_none());
        assert_eq!(queued(&a, 1), ["answer A", "participantJoined con_B", "sendMessage con_B"]);
        assert_eq!(queued(&b, 2), ["answer B", "sendMessage con_B", "reply B"]);

        let (c, _) = join(&broker, "C", 3).await;
        let who = ConnectionId::from("con_A");
        broker.run("S", Some(&a), None, |room| Ok(Outcome::new((), room.leave(&who), None))).unwrap();
        assert_eq!(queued(&a, 1), ["participantJoined con_C"], "told of C before it left");
        assert_eq!(queued(&b, 2), ["participantJoined con_C", "participantLeft con_A"]);
        assert_eq!(queued(&c, 3), ["answer C", "participantLeft con_A"]);
    }

    /// A participant's broadcasts are held with its replies, each reply after its broadcast;
    /// a targeted signal, as any other operation, pushes them first. A signal from the server
    /// (no caller) is not held.
    #[tokio::test]
    async fn broadcasts_are_held_with_their_replies() {
        let broker = broker().await;
        let (a, _) = join(&broker, "A", 1).await;
        let (b, _) = join(&broker, "B", 2).await;
        let (c, _) = join(&broker, "C", 3).await;
        broker.release(&sid()).expect("a session").unwrap();
        let (_, _, _) = (queued(&a, 1), queued(&b, 2), queued(&c, 3));

        let (from_b, from_c) = (ConnectionId::from("con_B"), ConnectionId::from("con_C"));
        for n in 1..=2 {
            let reply = Some(Out::Reply(format!("reply B{n}").into()));
            let applied =
                broker.signal(&sid(), sig(Some(&from_b), &[], "x"), Some(&b), reply).outcome().await.unwrap();
            assert!(applied.held.is_some());
            assert_eq!(applied.delivered, 3, "counted when held");
        }
        assert!(queued(&a, 1).is_empty() && queued(&b, 2).is_empty());
        let to_a = [ConnectionId::from("con_A")];
        let reply = Some(Out::Reply("reply C".into()));
        let applied =
            broker.signal(&sid(), sig(Some(&from_c), &to_a, "y"), Some(&c), reply).outcome().await.unwrap();
        assert!(applied.held.is_none(), "a targeted signal is not held");
        assert_eq!(queued(&a, 1), ["sendMessage con_B", "sendMessage con_B", "sendMessage con_C"]);
        assert_eq!(queued(&b, 2), ["sendMessage con_B", "reply B1", "sendMessage con_B", "reply B2"]);
        assert_eq!(queued(&c, 3), ["sendMessage con_B", "sendMessage con_B", "reply C"]);

        let applied = broker.signal(&sid(), sig(None, &[], "z"), None, None).outcome().await.unwrap();
        assert!(applied.held.is_none(), "the server's signal is pushed at once");
        assert_eq!(queued(&a, 1), ["sendMessage "]);
    }

    /// A broadcast asked to list its recipients lists everyone in the session as it is applied
    /// (its event names them, whoever leaves right after); nothing is listed unless asked, nor
    /// for a signal to chosen participants.
    #[tokio::test]
    async fn a_broadcast_lists_everyone_it_went_to_when_asked() {
        let broker = broker().await;
        let (a, _) = join(&broker, "A", 1).await;
        let (b, _) = join(&broker, "B", 2).await;
        let (_c, _) = join(&broker, "C", 3).await;
        let from = ConnectionId::from("con_A");
        let listed = SignalOp { listed: true, ..sig(Some(&from), &[], "x") };
        let applied = broker.signal(&sid(), listed, Some(&a), None).outcome().await.unwrap();
        let everyone: Vec<ConnectionId> = ["con_A", "con_B", "con_C"].map(ConnectionId::from).into();
        assert_eq!(applied.value, everyone);
        let who = ConnectionId::from("con_C");
        broker.run("S", Some(&b), None, |room| Ok(Outcome::new((), room.leave(&who), None))).unwrap();

        let applied =
            broker.signal(&sid(), sig(Some(&from), &[], "x"), Some(&a), None).outcome().await.unwrap();
        assert!(applied.value.is_empty(), "not asked");
        let to_b = [ConnectionId::from("con_B")];
        let targeted = SignalOp { listed: true, ..sig(Some(&from), &to_b, "y") };
        let applied = broker.signal(&sid(), targeted, Some(&a), None).outcome().await.unwrap();
        assert!(applied.value.is_empty(), "a targeted signal names its recipients itself");
        let listed = SignalOp { listed: true, ..sig(None, &[], "z") };
        let applied = broker.signal(&sid(), listed, None, None).outcome().await.unwrap();
        assert_eq!(applied.value, everyone[..2], "after C left");
    }

    /// A receiver whose queue cannot take what is released is reported slow (to be evicted);
    /// the others get everything. A session holds at most a quarter of a queue.
    #[tokio::test]
    async fn a_full_queue_at_release_is_reported_slow() {
        let broker = LocalBroker::new(Duration::from_secs(10), Limits { frames: 32, bytes: 1 << 20 });
        broker.create(Room::new("S".into(), props(), 0)).await.unwrap();
        let (a, _) = join(&broker, "A", 1).await;
        let (b, _) = join(&broker, "B", 2).await;
        broker.release(&sid()).expect("a session").unwrap();
        let _ = queued(&a, 1);
        // B's queue (1,024 frames, as every test outbox) is all but full.
        for _ in 0..1020 {
            assert!(b.push(Out::Reply("backlog".into())));
        }
        let from = ConnectionId::from("con_A");
        let mut slow = Vec::new();
        for n in 0..8 {
            let reply = Some(Out::Reply(format!("reply {n}").into()));
            let applied =
                broker.signal(&sid(), sig(Some(&from), &[], "x"), Some(&a), reply).outcome().await.unwrap();
            assert_eq!(applied.held.is_some(), n % 4 != 3, "at most 8 frames (a quarter of 32) are held");
            slow.extend(applied.slow);
        }
        slow.dedup(); // reported by each release until the hub evicts it
        assert_eq!(slow, [ConnectionId::from("con_B")]);
        assert_eq!(queued(&a, 1).len(), 16, "the sender got every copy and reply");
    }

    /// After its yield, a join leaves the release to a join that held after it; the last one
    /// releases (or any, once the oldest frame held is old enough).
    #[tokio::test]
    async fn the_last_of_consecutive_joins_releases() {
        let (broker, a) = broker_with_a().await;
        let first = join(&broker, "B", 2).await.1.held.unwrap();
        let second = join(&broker, "C", 3).await.1.held.unwrap();
        assert!(matches!(broker.after_join(&sid(), first), Later::Nothing), "C's join came after");
        assert!(queued(&a, 1).is_empty(), "still held");
        let Later::Released(released) = broker.after_join(&sid(), second) else { panic!("not released") };
        assert!(released.unwrap().held.is_none());
        assert_eq!(queued(&a, 1), ["participantJoined con_B", "participantJoined con_C"]);

        let first = join(&broker, "D", 4).await.1.held.unwrap();
        let _ = join(&broker, "E", 5).await;
        tokio::time::sleep(super::super::MAX_RUN).await;
        assert!(
            matches!(broker.after_join(&sid(), first), Later::Released(_)),
            "held for too long: released"
        );
        assert_eq!(queued(&a, 1), ["participantJoined con_D", "participantJoined con_E"]);
    }

    /// In a session of many, the last join of a run leaves its frames held, for one task to
    /// release when they are due; a write's worth held goes at once.
    #[tokio::test]
    async fn in_a_big_session_the_last_join_leaves_the_release_to_a_timer() {
        let (broker, a) = broker_with_a().await;
        for i in 0..39 {
            join(&broker, &format!("P{i}"), 10 + i).await;
        }
        broker.release(&sid()).expect("a session").unwrap();
        let _ = queued(&a, 1);
        // 41 participants with X: held for 41 × 50 µs.
        let mark = join(&broker, "X", 100).await.1.held.unwrap();
        let Later::At(due) = broker.after_join(&sid(), mark) else { panic!("released at once") };
        let wait = due - Instant::now();
        assert!(wait <= std::time::Duration::from_micros(41 * 50) && !wait.is_zero(), "{wait:?}");
        assert!(matches!(broker.after_join(&sid(), mark), Later::Nothing), "one task asked for");
        assert!(matches!(broker.release_due(&sid()), Later::At(_)), "not due yet");
        assert!(queued(&a, 1).is_empty());
        tokio::time::sleep_until(due.into()).await;
        assert!(matches!(broker.release_due(&sid()), Later::Released(Ok(_))));
        assert_eq!(queued(&a, 1), ["participantJoined con_X"]);
        assert!(matches!(broker.release_due(&sid()), Later::Nothing), "nothing left");

        // Joiners with 8 KiB of metadata each: the fourth join's frames make 32 KiB.
        let big = "m".repeat(8 * 1024);
        let mut last = Later::Nothing;
        for i in 0..4 {
            let mark = join_with(&broker, &format!("Q{i}"), 200 + i, &big).await.1.held.unwrap();
            last = broker.after_join(&sid(), mark);
        }
        assert!(matches!(last, Later::Released(Ok(_))), "a write's worth held: released");
        assert_eq!(queued(&a, 1).len(), 4);
    }

    /// Past [`MAX_HELD`](super::MAX_HELD) joins, a join pushes what is held itself.
    #[tokio::test]
    async fn held_notifications_are_bounded() {
        let (broker, a) = broker_with_a().await;
        let mut held = true;
        for i in 0..crate::broker::MAX_HELD {
            held = join(&broker, &format!("P{i}"), 10 + i as u64).await.1.held.is_some();
        }
        assert!(!held, "the {}th join pushed them", crate::broker::MAX_HELD);
        assert_eq!(queued(&a, 1).len(), crate::broker::MAX_HELD);
    }
}
