//! What a session knows and who hears about it: [`SessionData`] (phase, roster, pending requests,
//! event sinks) behind one lock, inside [`Shared`], the state every handle and task of a session
//! holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use parking_lot::Mutex;
use signalroom_core::token::TokenInfo;
use signalroom_core::{ConnectionId, EndReason, Role, RpcSessionId, SessionId};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::event::{Connection, Event, SignalEvent};
use crate::options::ConnectOptions;
use crate::pending::{Outgoing, Pending};

/// Where a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Joining (before `connect` returns).
    Joining,
    /// Joined; the link is up.
    Connected,
    /// The link broke and is being reopened.
    Reconnecting,
    /// Over; no request will succeed any more.
    Disconnected(EndReason),
}

/// Everything the reader, the writer, the driver and the callers share. Locked briefly, never
/// across an `.await`.
pub(crate) struct SessionData {
    pub(crate) phase: SessionState,
    pub(crate) pending: HashMap<u64, Pending>,
    pub(crate) local: Option<Connection>,
    pub(crate) role: Role,
    pub(crate) record: bool,
    pub(crate) session_id: Option<SessionId>,
    pub(crate) rpc_session_id: Option<RpcSessionId>,
    /// Remote participants in join order.
    pub(crate) remotes: Vec<Connection>,
    /// The `seq` of the last notification handled (signalroom's resume extension): sent in pings
    /// and in `connect`, and the bar a notification must pass to be handled at all.
    pub(crate) last_seq: Option<u64>,
    /// Requests in flight and request handlers ([`crate::Session::request`]).
    pub(crate) requests: crate::requests::Requests,
    /// Streams being received, and the writers' flow control ([`crate::Session::open_stream`]).
    pub(crate) streams: crate::streams::Streams,
    events: Option<mpsc::UnboundedSender<Event>>,
    subscribers: Vec<(String, mpsc::UnboundedSender<SignalEvent>)>,
}

impl SessionData {
    pub(crate) fn emit(&mut self, event: Event) {
        if let Event::Signal(signal) = &event {
            self.subscribers.retain(|(name, tx)| !signal.matches(name) || tx.send(signal.clone()).is_ok());
        }
        if let Some(tx) = &self.events {
            // A receiver the application dropped is not an error: it only uses subscriptions.
            let _ = tx.send(event);
        }
    }

    pub(crate) fn subscribe(&mut self, name: &str) -> mpsc::UnboundedReceiver<SignalEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        if !matches!(self.phase, SessionState::Disconnected(_)) {
            self.subscribers.retain(|(_, tx)| !tx.is_closed());
            self.subscribers.push((name.to_owned(), tx));
        }
        rx
    }

    /// Ends the session: `sessionDisconnected` (the last event), every channel closed, every
    /// pending request failed. Idempotent.
    pub(crate) fn finish(&mut self, reason: EndReason) {
        if matches!(self.phase, SessionState::Disconnected(_)) {
            return;
        }
        tracing::debug!(%reason, "session disconnected");
        self.phase = SessionState::Disconnected(reason.clone());
        self.emit(Event::SessionDisconnected { reason: reason.clone() });
        self.events = None;
        self.subscribers.clear();
        self.requests.end();
        self.streams.end(reason.as_str());
        for (_, p) in self.pending.drain() {
            let _ = p.tx.send(Err(Error::Disconnected { reason: reason.clone() }));
        }
    }

    /// Whether a notification numbered `seq` is new, remembering it if so. A notification without
    /// a number (servers without the extension) is always new; one numbered at or below the last
    /// handled is a repeat (a server replayed too much) and must be dropped.
    pub(crate) fn admit(&mut self, seq: Option<u64>) -> bool {
        let Some(seq) = seq else { return true };
        if self.last_seq.is_some_and(|last| seq <= last) {
            return false;
        }
        self.last_seq = Some(seq);
        true
    }

    pub(crate) fn connection_of(&self, id: &str) -> Option<&Connection> {
        self.local.iter().chain(self.remotes.iter()).find(|c| c.connection_id.as_str() == id)
    }

    pub(crate) fn is_local(&self, id: &ConnectionId) -> bool {
        self.local.as_ref().is_some_and(|c| &c.connection_id == id)
    }
}

/// Commands to the driver.
pub(crate) enum Command {
    /// Leave the session (`leaveRoom`, close); answer when done.
    Leave(Option<oneshot::Sender<()>>),
}

/// The state shared by every handle and task of one session.
pub(crate) struct Shared {
    pub(crate) opts: ConnectOptions,
    pub(crate) token: TokenInfo,
    pub(crate) next_id: AtomicU64,
    pub(crate) next_link: AtomicU64,
    /// The largest frame the server accepts: its `joinRoom` answer's `maxFrameBytes`
    /// (signalroom's extension), else OpenVidu's 50 KiB.
    pub(crate) max_frame: AtomicUsize,
    pub(crate) state: Mutex<SessionData>,
    pub(crate) user_tx: mpsc::UnboundedSender<Outgoing>,
    pub(crate) cmd_tx: mpsc::UnboundedSender<Command>,
    /// This very value, for the tasks it starts (request handlers).
    pub(crate) me: std::sync::Weak<Shared>,
}

/// The receiving ends the driver owns.
pub(crate) struct DriverChannels {
    pub(crate) user_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Outgoing>>>,
    pub(crate) cmd_rx: mpsc::UnboundedReceiver<Command>,
}

impl Shared {
    pub(crate) fn new(
        token: TokenInfo,
        opts: ConnectOptions,
        events: mpsc::UnboundedSender<Event>,
    ) -> (Arc<Self>, DriverChannels) {
        let (user_tx, user_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let state = SessionData {
            phase: SessionState::Joining,
            pending: HashMap::new(),
            local: None,
            role: Role::default(),
            record: false,
            session_id: None,
            rpc_session_id: None,
            remotes: Vec::new(),
            last_seq: None,
            requests: crate::requests::Requests::default(),
            streams: crate::streams::Streams::default(),
            events: Some(events),
            subscribers: Vec::new(),
        };
        let shared = Arc::new_cyclic(|me| Self {
            opts,
            token,
            next_id: AtomicU64::new(0),
            next_link: AtomicU64::new(0),
            max_frame: AtomicUsize::new(signalroom_core::limits::DEFAULT_MAX_FRAME_BYTES),
            state: Mutex::new(state),
            user_tx,
            cmd_tx,
            me: me.clone(),
        });
        let channels = DriverChannels { user_rx: Arc::new(tokio::sync::Mutex::new(user_rx)), cmd_rx };
        (shared, channels)
    }

    pub(crate) fn set_phase(&self, phase: SessionState) {
        let mut state = self.state.lock();
        if !matches!(state.phase, SessionState::Disconnected(_)) {
            state.phase = phase;
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.state.lock().emit(event);
    }

    pub(crate) fn finish(&self, reason: EndReason) {
        self.state.lock().finish(reason);
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state.lock().phase, SessionState::Disconnected(_))
    }
}
