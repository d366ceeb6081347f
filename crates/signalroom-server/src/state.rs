//! Sessions, connections and participants, and the rules that change them (spec §7).
//!
//! Each session has its own lock, so busy sessions never contend; the registry is a sharded map.
//! No lock is ever held across an `.await`: everything done under a session lock is synchronous
//! (state changes and `try_send` into bounded per-socket queues).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use indexmap::IndexMap;
use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;
use signalroom_core::jsonrpc::Notification;
use signalroom_core::protocol::{ParticipantLeft, RemoteParticipant, full_metadata, notification};
use signalroom_core::rest::{ConnectionObject, ConnectionStatus, Page, SessionObject, SessionProperties};
use signalroom_core::{ConnectionId, EndReason, Role, RpcSessionId, SessionId};

use tokio::task::AbortHandle;

use crate::config::Config;
use crate::queue::{QueueTx, TrySendError};
use crate::util::{now_ms, random_id};

/// What a socket's writer task is asked to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Write this text frame (shared: a fan-out is serialised once).
    Frame(Utf8Bytes),
    /// Close the socket now with this code and reason.
    Close { code: u16, reason: &'static str },
    /// Close the socket after this delay unless the client closes it first.
    CloseAfter(Duration),
    /// Cancel a pending [`Outbound::CloseAfter`]: the socket carries a participant again.
    KeepOpen,
}

/// The socket currently carrying a participant.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub tx: QueueTx<Outbound>,
    pub socket_id: u64,
    /// The socket's writer task, aborted for a socket too far behind to take a close request.
    /// (Aborting costs the writer nothing while it runs, unlike a signal it would have to poll.)
    pub writer: AbortHandle,
}

impl Link {
    /// Queues a frame; `false` when the queue is full (the receiver is too slow).
    fn push(&self, frame: &Utf8Bytes) -> bool {
        match self.tx.try_send(Outbound::Frame(frame.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            // The socket is gone; the reconnection grace period decides what happens.
            Err(TrySendError::Closed(_)) => true,
        }
    }

    /// Queues a close request; a socket whose queue is full cannot take one and is dropped.
    pub(crate) fn control(&self, out: Outbound) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(out) {
            tracing::debug!(socket = self.socket_id, "too far behind to be closed politely: dropped");
            self.writer.abort();
        }
    }
}

/// A joined participant.
#[derive(Debug)]
pub(crate) struct Participant {
    pub active_at: u64,
    pub client_data: String,
    pub platform: String,
    pub ip: String,
    pub rpc_id: RpcSessionId,
    /// `None` while its socket is gone and a reconnection is awaited.
    pub link: Option<Link>,
    /// Incremented at every (re)binding, so a stale grace timer does nothing.
    pub link_generation: u64,
}

/// A Connection: created by REST (pending), then used by one participant (active).
#[derive(Debug)]
pub(crate) struct Conn {
    pub created_at: u64,
    pub token: String,
    pub token_id: String,
    pub role: Role,
    pub record: bool,
    pub server_data: String,
    pub kurento_options: Value,
    pub custom_ice_servers: Value,
    pub participant: Option<Participant>,
}

impl Conn {
    pub fn full_metadata(&self) -> String {
        match &self.participant {
            Some(p) => full_metadata(&p.client_data, &self.server_data),
            None => self.server_data.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct SessionInner {
    /// Set when the session is closed; it is then removed from the registry.
    pub closed: bool,
    /// Whether anybody ever joined.
    pub active: bool,
    pub connections: IndexMap<ConnectionId, Conn>,
    /// Pending token id → connection.
    pub pending_tokens: std::collections::HashMap<String, ConnectionId>,
}

impl SessionInner {
    pub fn participants(&self) -> impl Iterator<Item = (&ConnectionId, &Conn, &Participant)> {
        self.connections.iter().filter_map(|(id, c)| c.participant.as_ref().map(|p| (id, c, p)))
    }

    pub fn is_participant(&self, id: &ConnectionId) -> bool {
        self.connections.get(id).is_some_and(|c| c.participant.is_some())
    }

    pub fn participant_count(&self) -> usize {
        self.participants().count()
    }

    /// Queues `frame` to one participant; records it in `slow` when its queue is full.
    pub fn send_to(&self, id: &ConnectionId, frame: &Utf8Bytes, slow: &mut Vec<ConnectionId>) {
        if let Some(link) = self.connections.get(id).and_then(|c| c.participant.as_ref()?.link.as_ref()) {
            if !link.push(frame) && !slow.contains(id) {
                slow.push(id.clone());
            }
        }
    }

    /// Queues `frame` to every participant.
    pub fn send_all(&self, frame: &Utf8Bytes, slow: &mut Vec<ConnectionId>) {
        for (id, _, p) in self.participants() {
            if let Some(link) = &p.link {
                if !link.push(frame) && !slow.contains(id) {
                    slow.push(id.clone());
                }
            }
        }
    }
}

/// One session.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: SessionId,
    pub created_at: u64,
    pub props: SessionProperties,
    pub inner: Mutex<SessionInner>,
}

/// How the evicted participant's socket is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseMode {
    /// After the linger delay, unless the client closes first (OpenVidu: 10 s).
    Linger,
    /// Right after the queued frames (server stopping).
    Now,
}

/// Work done between `participantLeft` and `participantEvicted` (the moderator's response); it
/// records receivers whose queue overflowed.
pub(crate) type Between<'a> = &'a mut dyn FnMut(&mut Vec<ConnectionId>);

/// The whole server state.
#[derive(Debug)]
pub(crate) struct State {
    pub config: Config,
    /// `ws[s]://host[:port]`: the start of every token.
    pub token_base: String,
    /// The public `http[s]://` URL.
    pub public_url: String,
    pub sessions: DashMap<SessionId, Arc<Session>>,
    /// RPC session id → where its participant is, for reconnection.
    pub rpc_sessions: DashMap<RpcSessionId, (SessionId, ConnectionId)>,
    pub stopping: AtomicBool,
    next_socket_id: AtomicU64,
}

/// The result of removing a participant under the lock; act on it after unlocking.
#[must_use]
#[derive(Debug, Default)]
pub(crate) struct Removal {
    /// The session has no participant left and was closed: remove it from the registry.
    pub session_emptied: bool,
}

impl State {
    pub fn new(config: Config, token_base: String, public_url: String) -> Self {
        Self {
            config,
            token_base,
            public_url,
            sessions: DashMap::new(),
            rpc_sessions: DashMap::new(),
            stopping: AtomicBool::new(false),
            next_socket_id: AtomicU64::new(1),
        }
    }

    pub fn next_socket_id(&self) -> u64 {
        self.next_socket_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The open session with this id. A session closed but not yet removed from the registry
    /// counts as gone.
    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.sessions.get(id).map(|s| Arc::clone(&s))?;
        let closed = session.inner.lock().closed;
        (!closed).then_some(session)
    }

    /// Releases a session's lock, then acts on `removal`: a session left empty is unregistered
    /// (which takes the registry's lock, never taken under a session's).
    pub fn settle(&self, session: &Arc<Session>, inner: MutexGuard<'_, SessionInner>, removal: Removal) {
        drop(inner);
        if removal.session_emptied {
            self.forget_session(session);
        }
    }

    /// Removes a closed session from the registry (only that instance: a session re-created
    /// with the same id in the meantime stays).
    pub fn forget_session(&self, session: &Arc<Session>) {
        self.sessions.remove_if(&session.id, |_, s| Arc::ptr_eq(s, session));
        tracing::info!(session = %session.id, "session closed");
    }

    /// Creates a pending Connection in `inner` and returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn create_connection(
        &self,
        session: &Session,
        inner: &mut SessionInner,
        role: Role,
        record: bool,
        server_data: String,
        kurento_options: Value,
        custom_ice_servers: Value,
    ) -> ConnectionId {
        let id = ConnectionId::from(random_id("con_", 10));
        let token_id = random_id("tok_", 16);
        let token = signalroom_core::token::build_token(&self.token_base, session.id.as_str(), &token_id);
        inner.pending_tokens.insert(token_id.clone(), id.clone());
        inner.connections.insert(
            id.clone(),
            Conn {
                created_at: now_ms(),
                token,
                token_id,
                role,
                record,
                server_data,
                kurento_options,
                custom_ice_servers,
                participant: None,
            },
        );
        id
    }

    /// Removes participants under the session lock, in OpenVidu's order (spec §7.3), for each:
    /// `participantLeft` to the remaining participants, then `between` (the moderator's
    /// response), then `participantEvicted` to everybody present before, the evicted included.
    /// With `evicted == false` (a `leaveRoom`) only `participantLeft` is sent.
    /// Receivers whose queues overflow are evicted in turn with `networkDisconnect`.
    pub fn remove_participants(
        &self,
        inner: &mut SessionInner,
        first: Vec<(ConnectionId, EndReason)>,
        evicted: bool,
        close: CloseMode,
        mut between: Option<Between<'_>>,
    ) -> Removal {
        let mut work: std::collections::VecDeque<(ConnectionId, EndReason, bool)> =
            first.into_iter().map(|(id, r)| (id, r, evicted)).collect();
        while let Some((id, reason, evicted)) = work.pop_front() {
            let mut slow = Vec::new();
            let Some(conn) = inner.connections.get_mut(&id) else { continue };
            let Some(participant) = conn.participant.take() else { continue };
            inner.connections.shift_remove(&id);
            self.rpc_sessions.remove(&participant.rpc_id);
            tracing::info!(connection = %id, %reason, "participant removed");

            let params = ParticipantLeft { connection_id: id.clone(), reason: reason.clone() };
            let left = frame(notification::PARTICIPANT_LEFT, &params);
            inner.send_all(&left, &mut slow);
            if let Some(between) = between.take() {
                between(&mut slow);
            }
            if evicted {
                let ev = frame(notification::PARTICIPANT_EVICTED, &params);
                inner.send_all(&ev, &mut slow);
                if let Some(link) = &participant.link {
                    link.push(&ev);
                }
            }
            if let Some(link) = &participant.link {
                link.control(match close {
                    CloseMode::Linger => Outbound::CloseAfter(self.config.linger_close),
                    CloseMode::Now => Outbound::Close { code: 1000, reason: "participant removed" },
                });
            }
            for s in slow {
                if !work.iter().any(|(w, _, _)| *w == s) {
                    tracing::warn!(connection = %s, "send queue full: evicting slow receiver");
                    work.push_back((s, EndReason::NetworkDisconnect, true));
                }
            }
        }
        let mut removal = Removal::default();
        if inner.active && !inner.closed && inner.participant_count() == 0 {
            inner.closed = true;
            inner.connections.clear();
            inner.pending_tokens.clear();
            removal.session_emptied = true;
        }
        removal
    }

    /// Evicts participants with the slow-receiver rule, for fan-outs done elsewhere.
    pub fn evict_slow(&self, inner: &mut SessionInner, slow: Vec<ConnectionId>) -> Removal {
        if slow.is_empty() {
            return Removal::default();
        }
        for s in &slow {
            tracing::warn!(connection = %s, "send queue full: evicting slow receiver");
        }
        let work = slow.into_iter().map(|id| (id, EndReason::NetworkDisconnect)).collect();
        self.remove_participants(inner, work, true, CloseMode::Linger, None)
    }

    /// Closes a session: evicts every participant one by one with `reason`, drops pending
    /// connections, and removes it from the registry.
    pub fn close_session(&self, session: &Arc<Session>, reason: EndReason, close: CloseMode) {
        {
            let mut inner = session.inner.lock();
            let ids: Vec<_> = inner.participants().map(|(id, _, _)| id.clone()).collect();
            for id in ids {
                let _ = self.remove_participants(&mut inner, vec![(id, reason.clone())], true, close, None);
            }
            inner.closed = true;
            inner.connections.clear();
            inner.pending_tokens.clear();
        }
        self.forget_session(session);
    }

    /// Removes sessions that never became active and are older than the threshold.
    pub fn collect_garbage(&self) -> usize {
        let threshold = self.config.session_gc_threshold.as_millis() as u64;
        let now = now_ms();
        let stale: Vec<Arc<Session>> = self
            .sessions
            .iter()
            .filter(|s| now.saturating_sub(s.created_at) >= threshold)
            .map(|s| Arc::clone(&s))
            .collect();
        let mut removed = 0;
        for s in stale {
            let never_joined = {
                let mut inner = s.inner.lock();
                let idle = !inner.active && !inner.closed;
                if idle {
                    inner.closed = true;
                }
                idle
            };
            if never_joined {
                self.forget_session(&s);
                removed += 1;
            }
        }
        removed
    }

    /// The REST Session object.
    pub fn session_object(&self, session: &Session, pending: bool) -> SessionObject {
        let inner = session.inner.lock();
        let content = inner
            .connections
            .iter()
            .filter(|(_, c)| pending || c.participant.is_some())
            .map(|(id, c)| self.connection_object_of(session, id, c))
            .collect();
        SessionObject {
            id: session.id.clone(),
            object: "session".into(),
            session_id: session.id.clone(),
            created_at: session.created_at,
            recording: false,
            broadcasting: false,
            properties: session.props.clone(),
            connections: Page::new(content),
        }
    }

    /// The REST Connection object.
    pub fn connection_object_of(&self, session: &Session, id: &ConnectionId, c: &Conn) -> ConnectionObject {
        let p = c.participant.as_ref();
        ConnectionObject {
            id: id.clone(),
            object: "connection".into(),
            status: if p.is_some() { ConnectionStatus::Active } else { ConnectionStatus::Pending },
            connection_id: id.clone(),
            session_id: session.id.clone(),
            created_at: c.created_at,
            kind: "WEBRTC".into(),
            record: c.record,
            role: c.role,
            kurento_options: c.kurento_options.clone(),
            custom_ice_servers: c.custom_ice_servers.clone(),
            rtsp_uri: None,
            adaptative_bitrate: None,
            only_play_with_subscribers: None,
            network_cache: None,
            server_data: c.server_data.clone(),
            token: c.token.clone(),
            active_at: p.map(|p| p.active_at),
            location: p.map(|_| "unknown".to_owned()),
            ip: p.map(|p| p.ip.clone()),
            platform: p.map(|p| p.platform.clone()),
            client_data: p.map(|p| p.client_data.clone()),
            publishers: p.map(|_| Vec::new()),
            subscribers: p.map(|_| Vec::new()),
        }
    }

    /// The participants of a session as `joinRoom`'s `value`, excluding `except`.
    pub fn remote_participants(inner: &SessionInner, except: &ConnectionId) -> Vec<RemoteParticipant> {
        inner
            .participants()
            .filter(|(id, _, _)| *id != except)
            .map(|(id, c, p)| RemoteParticipant {
                id: id.clone(),
                created_at: p.active_at,
                metadata: c.full_metadata(),
            })
            .collect()
    }
}

/// Serialises a notification once, for sharing among recipients.
pub(crate) fn frame<P: serde::Serialize>(method: &str, params: &P) -> Utf8Bytes {
    Utf8Bytes::from(Notification::new(method, params).to_json())
}
