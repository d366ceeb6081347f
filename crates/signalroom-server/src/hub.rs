//! The operations both front ends call: sessions, connections, join, signal, leave, evictions,
//! reconnection, garbage collection. The hub draws identifiers and reads the clock, runs the
//! room's rules through the broker, evicts receivers that fall too far behind, and emits a
//! [`ServerEvent`] for every operation. `ws` and `rest` parse, call the hub, and map the result.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use signalroom_core::protocol::JoinRoomResult;
use signalroom_core::rest::{ConnectionObject, ConnectionProperties, SessionObject, SessionProperties};
use signalroom_core::{ConnectionId, EndReason, RpcSessionId, SessionId};
use tokio::sync::broadcast;

use crate::broker::{AnyBroker, Applied, Broker, Later, Notice, Reply, Signalled};
use crate::config::Config;
use crate::events::ServerEvent;
use crate::op::{Listed, Op, SignalOp, Value};
use crate::outbox::{Limits, Out, Outbox, Resumed};
use crate::refusal::Refusal;
use crate::room::{CloseMode, Joiner, Minted, Room};
use crate::util::{now_ms, random_id};

/// Events buffered for a slow subscriber before it misses some.
const EVENT_BUFFER: usize = 4096;
/// How long a stop waits for its evictions to come back from a shared broker to the sockets.
const EVICTIONS_DELIVERED: Duration = Duration::from_secs(1);

/// Why a socket must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The server stops (its participants were evicted).
    Stop,
    /// The node drains: the participant resumes elsewhere.
    Drain,
}

/// Who joins, from which socket.
pub(crate) struct JoinRequest {
    pub session: SessionId,
    pub token: String,
    pub token_id: Option<String>,
    pub secret: bool,
    pub client_data: String,
    pub platform: String,
    pub ip: String,
    pub rpc_id: RpcSessionId,
    /// The client acknowledges notifications: keep what is written for a resume from the start.
    pub acks: bool,
}

/// The server's operations over its broker.
#[derive(Debug)]
pub(crate) struct Hub {
    pub config: Config,
    /// `ws[s]://host[:port]`: the start of every token.
    pub token_base: String,
    /// The public `http[s]://` URL.
    pub public_url: String,
    broker: AnyBroker,
    events: broadcast::Sender<ServerEvent>,
    stopping: AtomicBool,
    next_socket: AtomicU64,
    /// A wake-up each time a socket closes (a stopping server waits for them).
    socket_closed: tokio::sync::Notify,
    /// Set once a stopping server has evicted its participants: every socket closes then.
    closing: AtomicBool,
    close_sockets: tokio::sync::Notify,
    /// Set when the node drains: when, and over how long its sockets are closed.
    drain: std::sync::OnceLock<(tokio::time::Instant, Duration)>,
    /// Somebody asked this node to drain (`POST /openvidu/api/signalroom/drain`).
    drain_asked: tokio::sync::Notify,
    /// Open sockets' outboxes, for the metrics (read at scrape time).
    sockets: dashmap::DashMap<u64, Weak<Outbox>>,
    /// Signals counted where they happen (a few relaxed additions), for the metrics: an event per
    /// signal, built, sent and handled by a task, costs far more.
    pub signal_counts: crate::metrics::SignalCounts,
    /// Frames the sockets' writers wrote, for the metrics (counted once per batch).
    pub frame_counts: Arc<crate::metrics::FrameCounts>,
    /// Whether anybody wants [`ServerEvent::SignalSent`] (one per signal): [`Hub::subscribe`]
    /// alone does not ask for them.
    wants_signals: AtomicBool,
    /// The metrics, if the server keeps them: they count every event where it is emitted. A task
    /// following [`Hub::subscribe`] would miss some whenever more than the channel holds come at
    /// once (a load balancer dropping 10,000 sockets makes 10,000 `LinkLost` before its turn).
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The signal hook, if one is configured.
    pub(crate) hook: Option<crate::hook::SignalHook>,
}

impl Hub {
    /// The hub over `broker` (which the server chose from its configuration), counting its events
    /// in `metrics`.
    pub(crate) fn new(
        config: Config,
        token_base: String,
        public_url: String,
        broker: AnyBroker,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            config,
            token_base,
            public_url,
            broker,
            events,
            stopping: AtomicBool::new(false),
            next_socket: AtomicU64::new(1),
            socket_closed: tokio::sync::Notify::new(),
            closing: AtomicBool::new(false),
            close_sockets: tokio::sync::Notify::new(),
            drain: std::sync::OnceLock::new(),
            drain_asked: tokio::sync::Notify::new(),
            sockets: dashmap::DashMap::new(),
            signal_counts: crate::metrics::SignalCounts::default(),
            frame_counts: Arc::default(),
            wants_signals: AtomicBool::new(false),
            metrics,
            hook: None,
        }
    }

    /// The hub with a signal hook.
    pub(crate) fn with_hook(self, hook: Option<crate::hook::SignalHook>) -> Self {
        Self { hook, ..self }
    }

    /// Whether the signal hook must see signals of wire type `kind`.
    pub(crate) fn hooked(&self, kind: Option<&str>) -> bool {
        self.hook.as_ref().is_some_and(|h| h.covers(kind))
    }

    /// Asks the signal hook about a signal (of a type it covers): `Ok(None)` to deliver it as it
    /// is, `Ok(Some)` rewritten, `Err` refused.
    pub(crate) async fn check_signal(
        &self,
        session: &SessionId,
        signal: SignalOp<'_>,
    ) -> Result<Option<crate::hook::Rewrite>, Refusal> {
        let Some(hook) = &self.hook else { return Ok(None) };
        let SignalOp { from, to, data, kind, .. } = signal;
        let request = crate::hook::HookRequest {
            session_id: session.into(),
            from: from.cloned(),
            to: to.to_vec(),
            kind: kind.map(|k| signalroom_core::signal::user_type(k).to_owned()),
            data: data.map(str::to_owned),
        };
        hook.check(request).await
    }

    /// A participant's signal that waited for the signal hook (or behind one that did), handed to
    /// the broker once those before it were: `submitted` is told then, so that the next one
    /// follows in order. Its event is emitted here. `true`: its broadcast and reply are held back
    /// ([`Applied::held`]), for the socket's reader to release with the next ones (a
    /// burst of signals through the hook then reaches each receiver in one push, as without).
    pub(crate) async fn send_after_hook(
        self: &Arc<Self>,
        session: &SessionId,
        signal: SignalOp<'_>,
        caller: &Arc<Outbox>,
        reply: Option<Utf8Bytes>,
        submitted: tokio::sync::oneshot::Sender<()>,
    ) -> Result<bool, Refusal> {
        let outcome = match self.send_signal(session, signal, Some(caller), reply) {
            Signalled::Waiting(ticket) => {
                let outcome = ticket.await;
                let _ = submitted.send(());
                outcome
            }
            sent => {
                let _ = submitted.send(());
                sent.outcome().await
            }
        };
        let applied = outcome?;
        let held = applied.held.is_some();
        self.signal_done(session, signal, applied).await;
        Ok(held)
    }

    /// Evicts (with `networkDisconnect`) whoever the broker finds lost on its own: receivers too
    /// slow on another node's delivery, participants of a node that stopped.
    pub(crate) fn watch_notices(self: &Arc<Self>) {
        let Some(mut notices) = self.broker.notices() else { return };
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            // Participants of stopped nodes whose grace runs now (each is reported again and
            // again while it lasts).
            let waiting: Arc<dashmap::DashSet<(SessionId, ConnectionId)>> = Arc::default();
            while let Some(notice) = notices.recv().await {
                let Some(hub) = hub.upgrade() else { return };
                match notice {
                    Notice::Lost { session, who, node } => hub.evict_lost(&session, who, &node).await,
                    Notice::NodeGone { session, who, node } => {
                        if !waiting.insert((session.clone(), who.clone())) {
                            continue;
                        }
                        tracing::info!(%session, connection = %who, %node, "its node stopped: waiting {:?} for a reconnection", hub.config.reconnection_grace);
                        let waiting = Arc::clone(&waiting);
                        tokio::spawn(async move {
                            tokio::time::sleep(hub.config.reconnection_grace).await;
                            hub.evict_lost(&session, who.clone(), &node).await;
                            waiting.remove(&(session, who));
                        });
                    }
                }
            }
        });
    }

    /// Every operation's event from now on; signals' only once somebody asked for them
    /// ([`Hub::want_signals`]).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.events.subscribe()
    }

    /// Emits [`ServerEvent::SignalSent`] from now on.
    pub(crate) fn want_signals(&self) {
        self.wants_signals.store(true, Ordering::Relaxed);
    }

    /// Emits an event: counts it, and sends it to the subscribers; building it costs nothing when
    /// nobody counts or listens.
    fn emit(&self, event: impl FnOnce() -> ServerEvent) {
        let listened = self.events.receiver_count() > 0;
        if self.metrics.is_none() && !listened {
            return;
        }
        let event = event();
        if let Some(metrics) = &self.metrics {
            metrics.count(&event);
        }
        if listened {
            let _ = self.events.send(event);
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Waits until every socket is closed, or `limit` passed; `false` if some are still open.
    pub(crate) async fn sockets_closed(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let closed = self.socket_closed.notified();
            if self.sockets.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return self.sockets.is_empty();
            }
        }
    }

    /// A new socket: its id and its outbox (which becomes its participant's on join).
    pub(crate) fn open_socket(&self) -> (u64, Arc<Outbox>) {
        let id = self.next_socket.fetch_add(1, Ordering::Relaxed);
        let outbox = Outbox::new(self.limits(), id);
        self.sockets.insert(id, Arc::downgrade(&outbox));
        (id, outbox)
    }

    /// Socket `id` is closed.
    pub(crate) fn close_socket(&self, id: u64) {
        self.sockets.remove(&id);
        self.socket_closed.notify_waiters();
    }

    /// The number of items queued for each open socket, now.
    pub(crate) fn queue_depths(&self) -> Vec<usize> {
        let outboxes: Vec<_> = self.sockets.iter().filter_map(|s| s.value().upgrade()).collect();
        outboxes.iter().map(|o| o.depth()).collect()
    }

    /// The broker's round trip (`None` without Redis).
    pub(crate) async fn broker_ping(&self) -> Option<Result<std::time::Duration, String>> {
        self.broker.ping().await
    }

    pub(crate) fn broker_replicas_waited(&self) -> Option<bool> {
        self.broker.replicas_waited()
    }

    fn limits(&self) -> Limits {
        self.config.send_queue_limits()
    }

    pub(crate) async fn session_count(&self) -> usize {
        self.broker.session_count().await
    }

    /// Sessions open, and participants joined in them, now (for the metrics, at scrape time).
    pub(crate) async fn census(&self) -> (usize, usize) {
        let ids = self.broker.sessions().await;
        let mut participants = 0;
        for id in &ids {
            participants += self.broker.read(id, |room| room.participants().count()).await.unwrap_or(0);
        }
        (ids.len(), participants)
    }

    /// Runs an operation, then evicts (with `networkDisconnect`) whoever was too slow to take
    /// its effects, and whoever was too slow for those evictions, and so on.
    async fn apply(
        &self,
        session: &SessionId,
        caller: Option<&Arc<Outbox>>,
        op: Op,
        reply: Reply,
    ) -> Result<Applied<Value>, Refusal> {
        let mut applied = self.broker.apply(session, caller, op, reply).await?;
        self.settle(session, &mut applied).await;
        Ok(applied)
    }

    /// Announces who left, then evicts the slow receivers an operation found (and those the
    /// evictions find, and so on).
    async fn settle<R>(&self, session: &SessionId, applied: &mut Applied<R>) {
        self.announce_left(session, &applied.left, applied.closed);
        let mut slow = std::mem::take(&mut applied.slow);
        while !slow.is_empty() {
            for s in &slow {
                tracing::warn!(connection = %s, "send queue full: evicting slow receiver");
                self.emit(|| ServerEvent::SlowReceiver { session: session.into(), connection: s.clone() });
            }
            let who = slow.drain(..).map(|id| (id, EndReason::NetworkDisconnect)).collect();
            let op = Op::Evict { who, close: CloseMode::Linger };
            match self.broker.apply(session, None, op, Reply::NONE).await {
                Ok(applied) => {
                    self.announce_left(session, &applied.left, applied.closed);
                    slow = applied.slow;
                }
                Err(_) => break,
            }
        }
    }

    fn announce_left(&self, session: &SessionId, left: &[crate::broker::Left], closed: bool) {
        for crate::broker::Left { who, reason, stay, .. } in left {
            tracing::info!(session = %session, connection = %who, %reason, "participant removed");
            self.emit(|| ServerEvent::ParticipantLeft {
                session: session.into(),
                connection: who.clone(),
                reason: reason.clone(),
                joined_at: stay.since,
                ip: stay.ip.clone(),
                platform: stay.platform.clone(),
                client_data: stay.client_data.clone(),
                server_data: stay.server_data.clone(),
            });
        }
        if closed {
            tracing::info!(session = %session, "session closed");
            let reason = left.last().map_or(EndReason::Other(String::new()), |l| l.reason.clone());
            self.emit(|| ServerEvent::SessionDestroyed { session: session.into(), reason });
        }
    }

    // ---- sessions -------------------------------------------------------------------------

    /// Creates a session (`custom_id` empty: a random one).
    pub(crate) async fn create_session(
        &self,
        custom_id: &str,
        mut props: SessionProperties,
    ) -> Result<SessionObject, Refusal> {
        if props.signal_history.is_none() {
            props.signal_history.clone_from(&self.config.signal_history);
        }
        let max = self.config.max_sessions;
        if self.broker.session_count().await >= max {
            tracing::warn!("session limit of {max} reached: refusing to create another session");
            return Err(Refusal::TooManySessions(max));
        }
        let id =
            SessionId::from(if custom_id.is_empty() { random_id("ses_", 10) } else { custom_id.to_owned() });
        let room = Room::new(id.clone(), props, now_ms());
        let object = room.session_object(false);
        self.broker.create(room).await?;
        tracing::info!(session = %id, "session created");
        self.emit(|| ServerEvent::SessionCreated { session: id.clone(), at: object.created_at });
        Ok(object)
    }

    /// A session as the REST API shows it.
    pub(crate) async fn session(&self, id: &SessionId, pending: bool) -> Result<SessionObject, Refusal> {
        self.broker
            .read(id, |room| room.session_object(pending))
            .await
            .ok_or_else(|| Refusal::NoSession(id.to_string()))
    }

    /// `Err(NoSession)` when the session does not exist; its object is not built (a session's
    /// object lists every Connection, and a route that only checks would pay for all of them).
    pub(crate) async fn check_session(&self, id: &SessionId) -> Result<(), Refusal> {
        self.broker.read(id, |_| ()).await.ok_or_else(|| Refusal::NoSession(id.to_string()))
    }

    /// Refuses connection metadata over the configured limit.
    fn check_metadata(&self, metadata: &str) -> Result<(), Refusal> {
        let limit = self.config.max_metadata_bytes;
        if metadata.len() > limit {
            return Err(Refusal::MetadataTooLarge { size: metadata.len(), limit });
        }
        Ok(())
    }

    /// Every open session, oldest first.
    pub(crate) async fn sessions(&self, pending: bool) -> Vec<SessionObject> {
        let mut out = Vec::new();
        for id in self.broker.sessions().await {
            if let Some(s) = self.broker.read(&id, |room| room.session_object(pending)).await {
                out.push(s);
            }
        }
        out.sort_by_key(|s| s.created_at);
        out
    }

    /// Closes a session: evicts every participant with `reason`.
    pub(crate) async fn close_session(
        &self,
        id: &SessionId,
        reason: EndReason,
        close: CloseMode,
    ) -> Result<(), Refusal> {
        self.apply(id, None, Op::Close { reason, close }, Reply::NONE).await?;
        Ok(())
    }

    /// Stops: every participant of this node evicted with `openviduServerStopped`, sockets closed
    /// at once (a session left empty closes).
    pub(crate) async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let node = self.broker.node().to_owned();
        let mut evicted = Vec::new();
        for id in self.broker.sessions().await {
            // This node's participants only: with a shared broker, the sessions go on elsewhere.
            let op = Op::EvictNode { node: node.clone(), reason: EndReason::OpenviduServerStopped };
            if let Ok(applied) = self.apply(&id, None, op, Reply::NONE).await {
                evicted.extend(applied.left.into_iter().map(|l| (id.clone(), l.who)));
            }
        }
        // With a shared broker, the evictions reach the sockets when they come back from it: the
        // sockets are told to close once they have (each participant then has its
        // `participantEvicted`), or after a moment.
        let deadline = tokio::time::Instant::now() + EVICTIONS_DELIVERED;
        for (session, who) in evicted {
            while self.broker.outbox(&session, &who).await.is_some() && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        self.closing.store(true, Ordering::SeqCst);
        self.close_sockets.notify_waiters();
    }

    /// Resolves when socket `id` must close: the server stopped and evicted its participants,
    /// or it drains and this socket's turn came (the turns spread over the drain window).
    pub(crate) async fn socket_must_close(&self, id: u64) -> Closing {
        let drain = loop {
            let told = self.close_sockets.notified();
            if self.closing.load(Ordering::SeqCst) {
                return Closing::Stop;
            }
            if let Some(drain) = self.drain.get() {
                break *drain;
            }
            told.await;
        };
        let (began, window) = drain;
        // A fraction of the window, the same for a socket whatever the order sockets look.
        let spread = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        tokio::select! {
            () = Box::pin(tokio::time::sleep_until(began + window.mul_f64(spread))) => Closing::Drain,
            () = async {
                loop {
                    let told = self.close_sockets.notified();
                    if self.closing.load(Ordering::SeqCst) {
                        return;
                    }
                    told.await;
                }
            } => Closing::Stop,
        }
    }

    /// Whether the node takes new work: not stopping, not draining.
    pub(crate) fn is_ready(&self) -> bool {
        !self.is_stopping() && self.drain.get().is_none()
    }

    /// Asks the process to drain this node, as SIGTERM does; `false` with the broker in this
    /// process (nowhere to go).
    pub(crate) fn ask_drain(&self) -> bool {
        if !self.broker.shared() {
            return false;
        }
        self.drain_asked.notify_one();
        true
    }

    /// Resolves once somebody asked this node to drain ([`Hub::ask_drain`]).
    pub(crate) async fn drain_asked(&self) {
        self.drain_asked.notified().await;
    }

    /// Whether the node drains.
    pub(crate) fn is_draining(&self) -> bool {
        self.drain.get().is_some()
    }

    /// Begins draining, with a shared broker: the node is not ready, takes no new sockets, and
    /// closes its sockets over `window` as a network drop, keeping their participants, which
    /// resume on another node. `false` with the broker in this process (nowhere to go).
    pub(crate) fn begin_drain(&self, window: Duration) -> bool {
        if !self.broker.shared() {
            return false;
        }
        if self.drain.set((tokio::time::Instant::now(), window)).is_ok() {
            tracing::info!(sockets = self.sockets.len(), "draining: closing sockets over {window:?}");
            self.close_sockets.notify_waiters();
        }
        true
    }

    /// Participant `who`'s socket on this node is closed for a drain: it is left to resume on
    /// another node, which replays what it was not written here.
    pub(crate) async fn hand_off(&self, session: &SessionId, who: &ConnectionId) {
        self.broker.hand_off(session, who).await;
    }

    /// Stops a drained node: the sockets still open are closed, nobody is evicted (those who did
    /// not come back elsewhere are, once the other nodes find this one gone and the grace passed).
    pub(crate) async fn retire(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.close_sockets.notify_waiters();
        self.broker.retire().await;
    }

    /// Removes sessions nobody joined that are older than the threshold; returns how many.
    pub(crate) async fn collect_garbage(&self) -> usize {
        let threshold = self.config.session_gc_threshold.as_millis() as u64;
        let now = now_ms();
        let mut removed = 0;
        for id in self.broker.sessions().await {
            let op = Op::CollectIfStale { now, threshold };
            if let Ok(applied) = self.broker.apply(&id, None, op, Reply::NONE).await {
                if applied.value.collected() {
                    removed += 1;
                    self.emit(|| ServerEvent::SessionDestroyed {
                        session: id.clone(),
                        reason: EndReason::Other("sessionGarbageCollected".into()),
                    });
                }
            }
        }
        removed
    }

    // ---- connections ----------------------------------------------------------------------

    fn mint(&self, session: &SessionId) -> Minted {
        let id = ConnectionId::from(random_id("con_", 10));
        let token_id = random_id("tok_", 16);
        let token = signalroom_core::token::build_token(&self.token_base, session.as_str(), &token_id);
        Minted { id, token_id, token }
    }

    /// Creates a pending Connection.
    pub(crate) async fn create_connection(
        &self,
        session: &SessionId,
        props: ConnectionProperties,
    ) -> Result<ConnectionObject, Refusal> {
        self.check_metadata(&props.data)?;
        let minted = self.mint(session);
        let now = now_ms();
        let applied =
            self.apply(session, None, Op::CreateConnection { minted, props, now }, Reply::NONE).await?;
        applied.value.connection()
    }

    /// One Connection.
    pub(crate) async fn connection(
        &self,
        session: &SessionId,
        id: &str,
    ) -> Result<ConnectionObject, Refusal> {
        self.broker
            .read(session, |room| room.connection_object(id))
            .await
            .ok_or_else(|| Refusal::NoSession(session.to_string()))?
            .ok_or(Refusal::NoConnection)
    }

    /// Changes a Connection's role and record.
    pub(crate) async fn update_connection(
        &self,
        session: &SessionId,
        id: &str,
        role: Option<signalroom_core::Role>,
        record: Option<bool>,
    ) -> Result<ConnectionObject, Refusal> {
        let op = Op::UpdateConnection { id: id.to_owned(), role, record };
        let applied = self.apply(session, None, op, Reply::NONE).await?;
        applied.value.connection()
    }

    /// Deletes a pending Connection or evicts its participant.
    pub(crate) async fn delete_connection(&self, session: &SessionId, id: &str) -> Result<(), Refusal> {
        self.apply(session, None, Op::DeleteConnection { id: id.to_owned() }, Reply::NONE).await?;
        Ok(())
    }

    // ---- participants ---------------------------------------------------------------------

    /// Joins; `reply` builds the joiner's reply (from the result and the room, for
    /// [`Room::join_answer`]), queued after `participantJoined` to the others. The result's
    /// `value` is empty (see [`Room::join`]).
    pub(crate) async fn join(
        self: &Arc<Self>,
        req: JoinRequest,
        outbox: &Arc<Outbox>,
        reply: impl FnOnce(&JoinRoomResult, &Room) -> Utf8Bytes + Send + 'static,
    ) -> Result<JoinRoomResult, Refusal> {
        if self.is_stopping() {
            return Err(Refusal::Stopping);
        }
        self.check_metadata(&req.client_data)?;
        let started = std::time::Instant::now();
        let with_secret = req.secret.then(|| self.mint(&req.session));
        let rpc_id = req.rpc_id.clone();
        let (platform, client_data) = (req.platform.clone(), req.client_data.clone());
        let joiner = Joiner {
            token_id: req.token_id,
            token: req.token,
            with_secret,
            client_data: req.client_data,
            platform: req.platform,
            ip: req.ip.clone(),
            rpc_id: rpc_id.clone(),
            node: self.broker.node().to_owned(),
            final_user_id: random_id("", 16).to_ascii_uppercase(),
            now: now_ms(),
        };
        outbox.restart();
        if req.acks {
            outbox.ack(0);
        }
        let applied =
            self.apply(&req.session, Some(outbox), Op::Join(joiner), Reply::Join(Box::new(reply))).await?;
        let held = applied.held;
        let result = applied.value.joined()?;
        let session = result.session.clone().unwrap_or_else(|| req.session.as_str().into());
        self.broker.bind_rpc(rpc_id, session.clone(), result.id.clone()).await;
        tracing::info!(session = %session, connection = %result.id, ip = %req.ip, "participant joined");
        self.emit(|| ServerEvent::ParticipantJoined {
            session,
            connection: result.id.clone(),
            at: result.created_at,
            ip: req.ip,
            platform,
            server_data: crate::events::server_data(&client_data, &result.metadata),
            client_data,
            took: started.elapsed(),
        });
        if let Some(mark) = held {
            // The `participantJoined` is held back for the next joins' (see `Applied::held`):
            // the joins of other sockets ready now run first, then what they held is pushed,
            // by the last of them (while joins keep coming, for a while); in a big session,
            // by a task a moment later, so that each participant gets a write's worth.
            tokio::task::yield_now().await;
            match self.broker.after_join(&req.session, mark) {
                Later::Released(Ok(mut applied)) => self.settle(&req.session, &mut applied).await,
                Later::At(due) => {
                    let (hub, session) = (Arc::clone(self), req.session.clone());
                    tokio::spawn(async move { hub.release_when_due(&session, due).await });
                }
                Later::Released(Err(_)) | Later::Nothing => {}
            }
        }
        Ok(result)
    }

    /// Releases the frames joins held back in `session` when they are due (first at `due`).
    async fn release_when_due(&self, session: &SessionId, mut due: std::time::Instant) {
        loop {
            tokio::time::sleep_until(due.into()).await;
            match self.broker.release_due(session) {
                Later::At(next) => due = next,
                Later::Released(Ok(mut applied)) => return self.settle(session, &mut applied).await,
                Later::Released(Err(_)) | Later::Nothing => return,
            }
        }
    }

    /// Pushes what operations on the session held back ([`Applied::held`]; only the local broker
    /// holds frames back), without waiting: the evictions of slow receivers it finds are settled
    /// by a task of their own. A socket's reader calls it
    /// between frames, where a future would size every socket's task.
    pub(crate) fn release_now(self: &Arc<Self>, session: &SessionId) {
        let Some(Ok(mut applied)) = self.broker.release(session) else { return };
        if !applied.slow.is_empty() || !applied.left.is_empty() || applied.closed {
            let (hub, session) = (Arc::clone(self), session.to_owned());
            tokio::spawn(async move { hub.settle(&session, &mut applied).await });
        }
    }

    /// Hands a signal to the broker: from a participant (RPC; `caller`, its outbox, gets
    /// `reply`) or from the server (`from: None`, REST). The broker applies it now or hands it
    /// over ([`Signalled`]); whoever sent it finishes it with [`Hub::signal_done`], in order.
    pub(crate) fn send_signal(
        &self,
        session: &SessionId,
        signal: SignalOp<'_>,
        caller: Option<&Arc<Outbox>>,
        reply: Option<Utf8Bytes>,
    ) -> Signalled {
        // A broadcast's event names everyone it went to: listed as it is applied, when wanted.
        let listed = signal.to.is_empty() && self.wants_signals.load(Ordering::Relaxed);
        self.broker.signal(session, SignalOp { listed, ..signal }, caller, reply.map(Out::Reply))
    }

    /// A signal from the server (REST), applied and finished.
    pub(crate) async fn signal(&self, session: &SessionId, signal: SignalOp<'_>) -> Result<(), Refusal> {
        let applied = self.send_signal(session, signal, None, None).outcome().await?;
        self.signal_done(session, signal, applied).await;
        Ok(())
    }

    /// What follows a signal the broker applied: evictions of the receivers too slow for it, and
    /// its event.
    pub(crate) async fn signal_done(
        &self,
        session: &SessionId,
        signal: SignalOp<'_>,
        mut applied: Applied<Listed>,
    ) {
        let SignalOp { from, to, data, kind, .. } = signal;
        if !applied.slow.is_empty() || !applied.left.is_empty() || applied.closed {
            // Rare (evictions): boxed, so that it does not size the futures of every signal.
            Box::pin(self.settle(session, &mut applied)).await;
        }
        self.signal_counts.record(from.is_some(), data.map_or(0, str::len), applied.delivered);
        if !self.wants_signals.load(Ordering::Relaxed) {
            return;
        }
        // A broadcast went to everyone in the session, on every node: listed by the broker as it
        // applied it ([`Hub::send_signal`]), so the events of a cluster's nodes say the same.
        let everyone = std::mem::take(&mut applied.value);
        self.emit(|| ServerEvent::SignalSent {
            session: session.into(),
            from: from.cloned(),
            to: to.to_vec(),
            everyone,
            kind: kind.map(str::to_owned),
            data: data.map(str::to_owned),
            recipients: applied.delivered,
            bytes: data.map_or(0, str::len),
        });
    }

    /// `leaveRoom`.
    pub(crate) async fn leave(
        &self,
        session: &SessionId,
        who: &ConnectionId,
        caller: &Arc<Outbox>,
        reply: Option<Utf8Bytes>,
    ) -> Result<(), Refusal> {
        let op = Op::Leave { who: who.clone() };
        self.apply(session, Some(caller), op, Reply::Ready(reply.map(Out::Reply))).await?;
        Ok(())
    }

    /// RPC `forceDisconnect`.
    pub(crate) async fn force_disconnect(
        &self,
        session: &SessionId,
        by: &ConnectionId,
        target: &ConnectionId,
        caller: &Arc<Outbox>,
        reply: Option<Utf8Bytes>,
    ) -> Result<(), Refusal> {
        let op = Op::ForceDisconnect { by: by.clone(), target: target.clone() };
        self.apply(session, Some(caller), op, Reply::Ready(reply.map(Out::Reply))).await?;
        Ok(())
    }

    /// Reads something of a participant's room (role checks).
    pub(crate) async fn read<R: Send>(
        &self,
        session: &SessionId,
        f: impl FnOnce(&Room) -> R + Send,
    ) -> Option<R> {
        self.broker.read(session, f).await
    }

    /// `connect`: socket `me` takes over the participant with RPC session id `rpc`; what it
    /// missed is replayed after `reply`.
    pub(crate) async fn reconnect(
        &self,
        rpc: &RpcSessionId,
        me: u64,
        own: &Arc<Outbox>,
        abort: tokio::task::AbortHandle,
        last_seq: Option<u64>,
        reply: impl FnOnce(Resumed) -> Utf8Bytes + Send + 'static,
    ) -> Result<(SessionId, ConnectionId, Arc<Outbox>, Resumed), Refusal> {
        let (session, who) = self.broker.find_rpc(rpc).await.ok_or(Refusal::Reconnection)?;
        let joined = self.broker.read(&session, |room| room.is_participant(&who)).await.unwrap_or(false);
        if !joined {
            return Err(Refusal::Reconnection);
        }
        let (outbox, resumed) = match self.broker.outbox(&session, &who).await {
            Some(outbox) => {
                let resumed = outbox.resume(me, abort, last_seq, reply);
                (outbox, resumed)
            }
            // Its outbox is on another node: this socket's own takes over.
            None => {
                let resumed = self.broker.adopt(&session, &who, own, last_seq, Box::new(reply)).await?;
                (Arc::clone(own), resumed)
            }
        };
        tracing::info!(session = %session, connection = %who, recovered = ?resumed.recovered, replayed = resumed.replayed, "participant reconnected");
        self.emit(|| ServerEvent::Reconnected {
            session: session.clone(),
            connection: who.clone(),
            recovered: resumed.recovered,
            replayed: resumed.replayed,
        });
        Ok((session, who, outbox, resumed))
    }

    /// Socket `me` of participant `who` is gone. Unless it is gone for good (`lost`, or the
    /// server is stopping), the participant is kept for the reconnection grace period, its
    /// outbox collecting what it misses, then evicted with `networkDisconnect`.
    pub(crate) fn socket_closed(
        self: &Arc<Self>,
        session: SessionId,
        who: ConnectionId,
        outbox: Arc<Outbox>,
        me: u64,
        lost: bool,
    ) {
        if !outbox.detach(me) {
            return; // another socket carries the participant now
        }
        let grace = self.config.reconnection_grace;
        let hub = Arc::clone(self);
        if lost || self.is_stopping() || grace.is_zero() {
            tokio::spawn(async move {
                let node = hub.broker.node().to_owned();
                hub.evict_lost(&session, who, &node).await;
            });
            return;
        }
        tracing::info!(connection = %who, "socket lost: waiting {grace:?} for a reconnection");
        self.emit(|| ServerEvent::LinkLost { session: session.clone(), connection: who.clone() });
        let epoch = outbox.epoch();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if outbox.is_detached_since(epoch) {
                let node = hub.broker.node().to_owned();
                hub.evict_lost(&session, who, &node).await;
            }
        });
    }

    /// Evicts `who` with `networkDisconnect` if its socket is still held by `node` (a
    /// reconnection on another node in the meantime keeps it).
    async fn evict_lost(&self, session: &SessionId, who: ConnectionId, node: &str) {
        let _ = self.apply(session, None, Op::EvictLost { who, node: node.to_owned() }, Reply::NONE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::LocalBroker;

    #[tokio::test]
    async fn the_metrics_count_every_event_of_a_burst() {
        let config = Config::local();
        let broker = AnyBroker::Local(LocalBroker::new(config.linger_close, config.send_queue_limits()));
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (token_base, public_url) = ("ws://127.0.0.1:1".into(), "http://127.0.0.1:1".into());
        let hub = Hub::new(config, token_base, public_url, broker, Some(Arc::clone(&metrics)));
        // A subscriber that does not read meanwhile, as any task does while the burst runs.
        let _subscriber = hub.subscribe();
        // More lost links than the event channel holds, with no await between them: a load
        // balancer dropping every socket at once.
        let burst = 3 * EVENT_BUFFER;
        for i in 0..burst {
            hub.emit(|| ServerEvent::LinkLost {
                session: SessionId::from("S1"),
                connection: ConnectionId::from(format!("con_{i}")),
            });
        }
        let text = metrics.render(&hub).await;
        let line = text.lines().find(|l| l.starts_with("signalroom_links_lost_total ")).expect("rendered");
        assert_eq!(line, format!("signalroom_links_lost_total {burst}"));
    }
}
