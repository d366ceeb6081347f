//! What the nodes serving one set of sessions must share, behind one trait; [`LocalBroker`] keeps
//! it in this process (one node, the default).
//!
//! # The contract
//! A broker holds the session registry (every [`Room`] by id), the index from RPC session ids to
//! participants (for reconnections), and the local roster of each session: the outbox of every
//! participant whose socket this node holds. An implementation must guarantee:
//! 1. **Registry.** [`Broker::create`] registers a room unless an open session has its id
//!    ([`Refusal::SessionExists`]: the REST 409), atomically across nodes. A room that an
//!    operation closed ([`Room::is_closed`]) is unregistered before [`Broker::apply`] returns, so
//!    its id can be created again at once.
//! 2. **One operation at a time per session.** [`Broker::apply`] runs `op` on the current room
//!    exclusively with respect to every other `apply` on the same session, on every node, and
//!    stores the room it leaves (a pending token consumed by one join is gone for every other:
//!    tokens are single-use across nodes). `op` is pure and may be run again on a fresher room if
//!    an implementation retries (optimistic concurrency); its effects are delivered once.
//! 3. **Delivery in order.** The effects of one `apply` are delivered in their order, and the
//!    effects of successive `apply`s on one session in the order those ran, to the outboxes of the
//!    recipients wherever they are attached: [`Audience::All`] is the session's roster at that
//!    point of the effect list, across nodes. [`Effect::Enter`] puts the caller's outbox in the
//!    roster; [`Effect::Leave`] takes the participant out and queues its socket's close
//!    ([`CloseMode`]); [`Effect::Reply`] queues the caller's reply. A push refused by a full
//!    outbox is reported back ([`Applied::slow`]) so that the hub evicts that participant.
//!    A broker may hold back the frames of a join or of a participant's broadcast, to push them
//!    with those of the next operations ([`Applied::held`]): then the next operation on the
//!    session pushes them before its own, and the caller makes sure one comes soon
//!    ([`Hub::release_now`](crate::hub::Hub::release_now)).
//! 4. **RPC index.** [`Broker::bind_rpc`] makes a participant findable by its RPC session id
//!    ([`Broker::find_rpc`], from any node); a participant leaving ([`Effect::Leave`]) unbinds it.
//! 5. **Outboxes stay where their participant's socket is.** [`Broker::outbox`] finds the outbox
//!    of a participant for a reconnection; a broker that can reach only local outboxes returns
//!    `None` for one held elsewhere, and the reconnection then fails like an unknown one.
//!
//! The hub, the front ends and the room never depend on which broker runs: [`AnyBroker`] is the
//! one type they hold.

mod link;
mod local;
mod redis;

pub(crate) use local::LocalBroker;
pub(crate) use redis::{RedisBroker, redact};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use indexmap::IndexMap;
use signalroom_core::protocol::JoinRoomResult;
use signalroom_core::{ConnectionId, EndReason, RpcSessionId, SessionId};
use tokio::sync::mpsc;

use smallvec::SmallVec;

use crate::op::{Listed, Op, SignalOp, Value};
use crate::outbox::{Framed, Note, Order, Out, Outbox, Resumed, Writes};
use crate::refusal::Refusal;
use crate::room::{Audience, CloseMode, Effect, Effects, Room};

/// What an operation returns to the broker: its value for the caller, its effects, and the
/// caller's reply (queued at [`Effect::Reply`]).
pub(crate) struct Outcome<R> {
    pub value: R,
    pub effects: Effects,
    pub reply: Option<Out>,
}

impl<R> Outcome<R> {
    pub(crate) fn new(value: R, effects: Effects, reply: Option<Out>) -> Self {
        Self { value, effects, reply }
    }
}

/// What happened when an operation's effects were delivered.
#[derive(Debug)]
pub(crate) struct Applied<R> {
    pub value: R,
    /// Participants whose outbox was full: too slow, to be evicted.
    pub slow: Vec<ConnectionId>,
    /// Participants who left the roster.
    pub left: Vec<Left>,
    /// Outbox pushes of notifications (a signal's recipients).
    pub delivered: usize,
    /// The operation closed the session (it is unregistered).
    pub closed: bool,
    /// Frames of this operation (a join's notification; a participant's broadcast and reply) are
    /// held back, to be pushed with those of the next ones: any later operation on the session
    /// pushes them first, and the caller applies one without effects soon if none comes (a
    /// join: [`LocalBroker::after_join`]). The mark tells whether an operation held frames
    /// since ([`Held::newer_than`]).
    pub held: Option<u64>,
    /// Socket writes its pushes claimed under the session's lock: made by whoever releases it
    /// ([`Writes::make`]).
    pub writes: Writes,
}

impl Applied<Listed> {
    /// What a ticket gives when it finished its signal itself (one through the signal hook).
    pub(crate) fn handled() -> Self {
        Self::with(Listed::new(), false)
    }
}

impl<R> Applied<R> {
    /// Nothing done yet, for an operation that returned `value` (and closed its session, or not).
    pub(crate) fn with(value: R, closed: bool) -> Self {
        Self {
            value,
            slow: Vec::new(),
            left: Vec::new(),
            delivered: 0,
            closed,
            held: None,
            writes: Writes::default(),
        }
    }
}

/// A participant who left the roster: who, its RPC session id, why, and its stay.
#[derive(Debug, Clone)]
pub(crate) struct Left {
    pub who: ConnectionId,
    pub rpc_id: RpcSessionId,
    pub reason: EndReason,
    pub stay: Box<crate::room::Stay>,
}

/// The shared state of a set of sessions (see the module docs for the contract).
pub(crate) trait Broker: Send + Sync + 'static {
    /// Registers a new session; [`Refusal::SessionExists`] if an open one has its id.
    fn create(&self, room: Room) -> impl Future<Output = Result<(), Refusal>> + Send;

    /// Runs `op` on the session's room and delivers its effects; `caller` is the outbox that
    /// gets the reply and, on [`Effect::Enter`], enters the roster. [`Refusal::NoSession`] if
    /// there is no open session `id`.
    fn apply(
        &self,
        id: &SessionId,
        caller: Option<&Arc<Outbox>>,
        op: Op,
        reply: Reply,
    ) -> impl Future<Output = Result<Applied<Value>, Refusal>> + Send;

    /// A signal: what `apply` with [`Room::signal`] does, which a broker may do without the
    /// whole room (a signal changes nothing but the session's sequence). The one call for every
    /// signal: the broker applies it now or hands it over ([`Signalled`]). Signals a caller hands
    /// over one after another are applied in that order, and in order with the operations it
    /// applies after them.
    fn signal(
        &self,
        id: &SessionId,
        signal: SignalOp<'_>,
        caller: Option<&Arc<Outbox>>,
        reply: Option<Out>,
    ) -> Signalled;

    /// Reads a session's room.
    fn read<R: Send>(
        &self,
        id: &SessionId,
        f: impl FnOnce(&Room) -> R + Send,
    ) -> impl Future<Output = Option<R>> + Send;

    /// The ids of every open session.
    fn sessions(&self) -> impl Future<Output = Vec<SessionId>> + Send;

    /// Makes participant `who` of `session` findable by its RPC session id.
    fn bind_rpc(
        &self,
        rpc: RpcSessionId,
        session: SessionId,
        who: ConnectionId,
    ) -> impl Future<Output = ()> + Send;

    /// The participant with this RPC session id.
    fn find_rpc(&self, rpc: &RpcSessionId) -> impl Future<Output = Option<(SessionId, ConnectionId)>> + Send;

    /// The outbox of a participant whose socket this node holds (or held).
    fn outbox(
        &self,
        session: &SessionId,
        who: &ConnectionId,
    ) -> impl Future<Output = Option<Arc<Outbox>>> + Send;

    /// A reconnection of `who` landed on this node while its outbox is on another: `outbox` (the
    /// new socket's) takes its place, gets `reply` then every notification for `who` after
    /// `last_seq` that the broker still has, and the other node closes the old socket.
    /// [`Refusal::Reconnection`] when the broker cannot (one node: never needed).
    fn adopt(
        &self,
        session: &SessionId,
        who: &ConnectionId,
        outbox: &Arc<Outbox>,
        last_seq: Option<u64>,
        reply: Box<dyn FnOnce(Resumed) -> Utf8Bytes + Send>,
    ) -> impl Future<Output = Result<Resumed, Refusal>> + Send;

    /// The number of open sessions.
    fn session_count(&self) -> impl Future<Output = usize> + Send;

    /// Participant `who`'s socket on this node closes for a drain: nothing more is queued for it
    /// here, and a reconnection on another node replays everything after what was queued (a
    /// broker in one process never drains).
    fn hand_off(&self, session: &SessionId, who: &ConnectionId) -> impl Future<Output = ()> + Send;

    /// This node stops for good: the others are told at once rather than when its heartbeat
    /// expires.
    fn retire(&self) -> impl Future<Output = ()> + Send;

    /// This node's id, recorded with each participant whose socket it holds.
    fn node(&self) -> &str;

    /// Participants the broker found lost (too slow on another delivery path, or held by a node
    /// that stopped beating): the hub evicts them with `networkDisconnect`. `None` for a broker that
    /// reports everything through [`Applied`]. Taken once.
    fn notices(&self) -> Option<mpsc::UnboundedReceiver<Notice>>;

    /// Whether sessions outlive this process: another node can take a participant over, so a
    /// draining node may close its sockets and let them resume there.
    fn shared(&self) -> bool;

    /// Pushes what operations on session `id` held back ([`Applied::held`]). `None`: this
    /// broker holds nothing back.
    fn release(&self, id: &SessionId) -> Option<Result<Applied<()>, Refusal>>;

    /// After a join whose frames were held back (marked `mark`, [`Applied::held`]), once the
    /// joins of other sockets ready then ran: releases them, leaves them to a later join, or
    /// asks for a task to release them when due.
    fn after_join(&self, id: &SessionId, mark: u64) -> Later;

    /// For the task [`Broker::after_join`] asked for, at the time it gave: releases what is held
    /// if it is due by now, or tells when it will be.
    fn release_due(&self, id: &SessionId) -> Later;
}

/// What to do about frames held back after a join ([`Broker::after_join`]).
pub(crate) enum Later {
    /// Nothing: someone else releases them, or nothing is held.
    Nothing,
    /// Released now.
    Released(Result<Applied<()>, Refusal>),
    /// To be released at this time ([`Broker::release_due`]).
    At(std::time::Instant),
}

/// What a broker did with a signal ([`Broker::signal`]).
pub(crate) enum Signalled {
    /// Applied now (a participant's broadcast may be held back: [`Applied::held`]).
    Now(Result<Applied<Listed>, Refusal>),
    /// Handed over: the caller's next signals may be handed over at once, and are applied after
    /// it; the ticket tells the outcome.
    OnWay(Ticket),
    /// Not handed over yet (the broker first has to load the session): the caller hands nothing
    /// more over until the ticket has told the outcome, or the next signal could overtake it.
    Waiting(Ticket),
}

impl Signalled {
    /// The outcome, once there.
    pub(crate) async fn outcome(self) -> Result<Applied<Listed>, Refusal> {
        match self {
            Signalled::Now(outcome) => outcome,
            Signalled::OnWay(ticket) | Signalled::Waiting(ticket) => ticket.await,
        }
    }
}

/// The outcome of a signal handed over ([`Signalled`]), on its way.
pub(crate) type Ticket = std::pin::Pin<Box<dyn Future<Output = Result<Applied<Listed>, Refusal>> + Send>>;

/// The caller's reply to an operation, queued where its effects say ([`Effect::Reply`]).
pub(crate) enum Reply {
    /// A frame known before the operation runs, or none.
    Ready(Option<Out>),
    /// A join's answer, made from the room the join leaves (it lists everyone in); an empty
    /// frame: none (the join came as a notification).
    Join(JoinAnswer),
}

/// Makes a join's answer from the room it leaves.
pub(crate) type JoinAnswer = Box<dyn FnOnce(&JoinRoomResult, &Room) -> Utf8Bytes + Send>;

impl Reply {
    /// No reply.
    pub(crate) const NONE: Reply = Reply::Ready(None);

    /// The reply once the operation ran, to `value`, leaving `room`.
    pub(crate) fn build(self, value: &Value, room: &Room) -> Option<Out> {
        match (self, value) {
            (Reply::Ready(out), _) => out,
            (Reply::Join(answer), Value::Joined(result)) => {
                let frame = answer(result, room);
                (!frame.is_empty()).then_some(Out::Reply(frame))
            }
            (Reply::Join(_), _) => None,
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Ready(out) => f.debug_tuple("Ready").field(&out.is_some()).finish(),
            Reply::Join(_) => f.write_str("Join"),
        }
    }
}

/// Something a broker found on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// This participant is gone for good: evict it with `networkDisconnect`, if its socket is
    /// still held by `node`.
    Lost { session: SessionId, who: ConnectionId, node: String },
    /// The node holding this participant's socket stopped: evict it with `networkDisconnect`
    /// unless it reconnects (elsewhere) within the reconnection grace, as a dropped socket may.
    /// Said again while it lasts.
    NodeGone { session: SessionId, who: ConnectionId, node: String },
}

/// The broker the server runs: one type for the hub and the front ends to hold.
#[derive(Debug)]
pub(crate) enum AnyBroker {
    /// Everything in this process.
    Local(LocalBroker),
    /// Sessions shared with other nodes through Redis.
    Redis(RedisBroker),
}

impl AnyBroker {
    /// The round trip to Redis (`None` without Redis; `Some(Err)` when it does not answer).
    pub(crate) async fn ping(&self) -> Option<Result<Duration, String>> {
        match self {
            AnyBroker::Local(_) => None,
            AnyBroker::Redis(redis) => Some(redis.ping().await.map_err(|e| e.to_string())),
        }
    }

    /// Whether operations wait for Redis replicas before they are published (`None` without
    /// Redis, or when no replica is asked for).
    pub(crate) fn replicas_waited(&self) -> Option<bool> {
        match self {
            AnyBroker::Local(_) => None,
            AnyBroker::Redis(redis) => redis.replicas_waited(),
        }
    }
}

/// Calls the same method on whichever broker runs.
macro_rules! each {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            AnyBroker::Local($b) => $e,
            AnyBroker::Redis($b) => $e,
        }
    };
}

/// Awaits the same async method on whichever broker runs. The Redis broker's futures (round
/// trips, locks, retries) are boxed: inline, they would size every future that calls the broker,
/// each socket's reader task included, for the largest of them.
macro_rules! each_async {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            AnyBroker::Local($b) => $e.await,
            AnyBroker::Redis($b) => Box::pin($e).await,
        }
    };
}

impl Broker for AnyBroker {
    async fn create(&self, room: Room) -> Result<(), Refusal> {
        each_async!(self, b => b.create(room))
    }

    async fn apply(
        &self,
        id: &SessionId,
        caller: Option<&Arc<Outbox>>,
        op: Op,
        reply: Reply,
    ) -> Result<Applied<Value>, Refusal> {
        each_async!(self, b => b.apply(id, caller, op, reply))
    }

    fn signal(
        &self,
        id: &SessionId,
        signal: SignalOp<'_>,
        caller: Option<&Arc<Outbox>>,
        reply: Option<Out>,
    ) -> Signalled {
        each!(self, b => b.signal(id, signal, caller, reply))
    }

    async fn read<R: Send>(&self, id: &SessionId, f: impl FnOnce(&Room) -> R + Send) -> Option<R> {
        each_async!(self, b => b.read(id, f))
    }

    async fn sessions(&self) -> Vec<SessionId> {
        each_async!(self, b => b.sessions())
    }

    async fn bind_rpc(&self, rpc: RpcSessionId, session: SessionId, who: ConnectionId) {
        each_async!(self, b => b.bind_rpc(rpc, session, who))
    }

    async fn find_rpc(&self, rpc: &RpcSessionId) -> Option<(SessionId, ConnectionId)> {
        each_async!(self, b => b.find_rpc(rpc))
    }

    async fn outbox(&self, session: &SessionId, who: &ConnectionId) -> Option<Arc<Outbox>> {
        each_async!(self, b => b.outbox(session, who))
    }

    async fn session_count(&self) -> usize {
        each_async!(self, b => b.session_count())
    }

    async fn hand_off(&self, session: &SessionId, who: &ConnectionId) {
        each_async!(self, b => b.hand_off(session, who))
    }

    async fn retire(&self) {
        each_async!(self, b => b.retire())
    }

    async fn adopt(
        &self,
        session: &SessionId,
        who: &ConnectionId,
        outbox: &Arc<Outbox>,
        last_seq: Option<u64>,
        reply: Box<dyn FnOnce(Resumed) -> Utf8Bytes + Send>,
    ) -> Result<Resumed, Refusal> {
        each_async!(self, b => b.adopt(session, who, outbox, last_seq, reply))
    }

    fn node(&self) -> &str {
        each!(self, b => b.node())
    }

    fn notices(&self) -> Option<mpsc::UnboundedReceiver<Notice>> {
        each!(self, b => b.notices())
    }

    fn shared(&self) -> bool {
        each!(self, b => b.shared())
    }

    fn release(&self, id: &SessionId) -> Option<Result<Applied<()>, Refusal>> {
        each!(self, b => b.release(id))
    }

    fn after_join(&self, id: &SessionId, mark: u64) -> Later {
        each!(self, b => b.after_join(id, mark))
    }

    fn release_due(&self, id: &SessionId) -> Later {
        each!(self, b => b.release_due(id))
    }
}

/// At most this many frames are held back ([`Held`])...
pub(crate) const MAX_HELD: usize = 256;
/// ...holding at most this many bytes; and at most a quarter of a participant's queue, so that
/// holding never fills a queue that the same frames pushed one by one would not.
const MAX_HELD_BYTES: usize = 256 * 1024;
/// A run of joins holds its frames until the last join of the run releases them, or for this
/// long at most while joins keep coming (see [`Held::ripe`])...
const MAX_RUN: Duration = Duration::from_millis(20);
/// ...but in a session of many, a write to each participant costs about the same for 100 bytes
/// as for 32 KiB (the kernel's work through loopback is per write): there the last join leaves
/// them held for a while, this long per participant (a release writes to each), at most
/// [`MAX_HELD_FOR`] or until [`HELD_ENOUGH`] bytes are held, whichever comes first.
const HELD_FOR_EACH: Duration = Duration::from_micros(50);
const MAX_HELD_FOR: Duration = Duration::from_millis(250);
const HELD_ENOUGH: usize = 32 * 1024;

/// What may be held back for participants whose queues hold `queue`.
pub(crate) fn most_held(queue: crate::outbox::Limits) -> crate::outbox::Limits {
    crate::outbox::Limits {
        frames: (queue.frames / 4).clamp(1, MAX_HELD),
        bytes: (queue.bytes / 4).clamp(1, MAX_HELD_BYTES),
    }
}

/// Whom a frame held back ([`Held`]) is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum For {
    /// The first `n` participants of the roster: those in it when the notification was made.
    First(usize),
    /// The participant at this place in the roster: a reply to its request.
    At(usize),
}

impl For {
    fn includes(self, place: usize) -> bool {
        match self {
            For::First(n) => place < n,
            For::At(i) => place == i,
        }
    }
}

/// Frames held back to be pushed together: a notification to everyone is a push per
/// participant, each a lock and a cache miss on a cold outbox (filling a session of 10,000 makes
/// 50 M of them, a fan-out to 1,000 a thousand per signal); several operations' frames held and
/// released together reach each participant in one push. The roster may only grow at its end
/// while anything is held (the places stay right).
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Notifications ([`For::First`]) and replies ([`For::At`]).
    frames: Vec<(Out, For)>,
    bytes: usize,
    /// Operations that held frames, ever: the mark of the last one ([`Applied::held`]).
    holds: u64,
    /// When the oldest frame held was.
    since: Option<Instant>,
    /// A task releases what is held when it is due ([`Held::due`]).
    pub(crate) armed: bool,
}

impl Held {
    /// Holds a notification for the first `n` of the roster.
    pub(crate) fn hold_note(&mut self, note: Note, n: usize) {
        self.hold(Out::Note(note), For::First(n));
    }

    /// Holds a reply for the participant at place `at` of the roster.
    pub(crate) fn hold_reply(&mut self, frame: Utf8Bytes, at: usize) {
        self.hold(Out::Reply(frame), For::At(at));
    }

    fn hold(&mut self, out: Out, to: For) {
        self.bytes += out.bytes();
        self.frames.push((out, to));
        self.since.get_or_insert_with(Instant::now);
    }

    /// Counts an operation that held frames; its mark.
    pub(crate) fn mark(&mut self) -> u64 {
        self.holds += 1;
        self.holds
    }

    /// Whether an operation held frames after the one marked `mark`.
    pub(crate) fn newer_than(&self, mark: u64) -> bool {
        self.holds != mark
    }

    /// How long the last join of a run leaves the frames held in a session of `members`.
    fn wait(members: usize) -> Duration {
        HELD_FOR_EACH.saturating_mul(u32::try_from(members).unwrap_or(u32::MAX)).min(MAX_HELD_FOR)
    }

    /// Whether what is held must go now, whoever holds it: a write's worth is held, or the
    /// oldest frame waited as long as a session of `members` waits.
    pub(crate) fn ripe(&self, members: usize) -> bool {
        self.bytes >= HELD_ENOUGH
            || self.since.is_some_and(|at| at.elapsed() >= Self::wait(members).max(MAX_RUN))
    }

    /// When the last join of a run leaves what is held to be released, in a session of
    /// `members`: `None` if it is released now (a session too small to wait for).
    pub(crate) fn due(&self, members: usize) -> Option<Instant> {
        let wait = Self::wait(members);
        (wait >= Duration::from_millis(1)).then(|| self.since.unwrap_or_else(Instant::now) + wait)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether as many frames or bytes as `most` are held.
    pub(crate) fn too_much(&self, most: crate::outbox::Limits) -> bool {
        self.frames.len() >= most.frames || self.bytes >= most.bytes
    }

    /// Pushes what is held: to each participant of `roster`, in one push, the frames for it. A
    /// participant whose queue cannot take them is reported slow.
    ///
    /// The notifications (for the first `n` of the roster, `n` growing with it) are framed once
    /// ([`Framed`]): a participant at place `p` gets those made once it was in, the ones from
    /// the first with `n > p` on, as one item. A participant that a reply is for gets its frames
    /// one by one, the reply among them.
    pub(crate) fn release<R>(
        &mut self,
        roster: &IndexMap<ConnectionId, Arc<Outbox>>,
        applied: &mut Applied<R>,
    ) {
        if self.frames.is_empty() {
            return;
        }
        let (slow_ones, writes) = (&mut applied.slow, &mut applied.writes);
        let mut slow = |id: &ConnectionId| {
            if !slow_ones.contains(id) {
                slow_ones.push(id.clone());
            }
        };
        // Participants a reply is for: one by one.
        let mut replied = SmallVec::<[usize; 2]>::new();
        for &(_, to) in &self.frames {
            if let For::At(place) = to {
                if replied.contains(&place) {
                    continue;
                }
                replied.push(place);
                let Some((id, outbox)) = roster.get_index(place) else { continue };
                let frames = self.frames.iter().filter(|(_, to)| to.includes(place)).map(|(frame, _)| frame);
                if !outbox.push_frames(frames) {
                    slow(id);
                }
            }
        }
        // Everyone else: the notifications framed once.
        let mut firsts = Vec::with_capacity(self.frames.len());
        let mut ns = Vec::with_capacity(self.frames.len());
        for (out, to) in self.frames.drain(..) {
            if let (Out::Note(note), For::First(n)) = (out, to) {
                firsts.push(note);
                ns.push(n);
            }
        }
        let framed = Arc::new(Framed::new(firsts));
        // (The `n`s never decrease: the roster only grows while anything is held.)
        let mut from = 0;
        for (place, (id, outbox)) in roster.iter().enumerate() {
            while ns.get(from).is_some_and(|&n| n <= place) {
                from += 1;
            }
            if !replied.contains(&place) && !outbox.push_framed(&framed, from as u32, writes) {
                slow(id);
            }
        }
        self.bytes = 0;
        self.since = None;
    }
}

/// Delivers one effect to the local roster.
pub(crate) fn deliver<R>(
    roster: &mut IndexMap<ConnectionId, Arc<Outbox>>,
    effect: Effect,
    caller: Option<&Arc<Outbox>>,
    reply: &mut Option<Out>,
    linger: Duration,
    applied: &mut Applied<R>,
) {
    match effect {
        Effect::Notify { to, note } => match to {
            Audience::All => notify(roster.iter(), &note, applied),
            Audience::AllBut(but) => notify(roster.iter().filter(|(id, _)| **id != but), &note, applied),
            Audience::Only(ids) => {
                notify(ids.iter().filter_map(|id| roster.get_key_value(id)), &note, applied)
            }
        },
        Effect::Enter(id) | Effect::Moved { who: id, .. } => {
            if let Some(outbox) = caller {
                roster.insert(id, Arc::clone(outbox));
            }
        }
        Effect::Reply => {
            if let (Some(outbox), Some(out)) = (caller, reply.take()) {
                // The caller's own reply: a caller too slow to take it is found by its reader.
                outbox.push_later(out, &mut applied.writes);
            }
        }
        Effect::Leave { who, rpc_id, reason, close, stay } => {
            if let Some(outbox) = roster.shift_remove(&who) {
                let order = match close {
                    CloseMode::Linger => Order::CloseAfter(linger),
                    CloseMode::Now => Order::Close { code: 1000, reason: "participant removed" },
                };
                outbox.push_later(Out::Order(order), &mut applied.writes);
            }
            applied.left.push(Left { who, rpc_id, reason, stay });
        }
    }
}

/// The fan-out: a refcount and a push per receiver, nothing else.
fn notify<'a, R>(
    to: impl Iterator<Item = (&'a ConnectionId, &'a Arc<Outbox>)>,
    note: &Note,
    applied: &mut Applied<R>,
) {
    for (id, outbox) in to {
        applied.delivered += 1;
        if !outbox.push_later(Out::Note(note.clone()), &mut applied.writes) && !applied.slow.contains(id) {
            applied.slow.push(id.clone());
        }
    }
}
