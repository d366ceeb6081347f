//! What happened, as the hub reports it: one [`ServerEvent`] per operation, on a broadcast
//! channel ([`crate::Server::events`]) that metrics and webhooks subscribe to. Emitting costs
//! nothing when nobody listens.

use signalroom_core::{ConnectionId, EndReason, SessionId};

/// One thing the server did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A session was created.
    SessionCreated {
        /// Its id.
        session: SessionId,
    },
    /// A session was closed and removed.
    SessionDestroyed {
        /// Its id.
        session: SessionId,
        /// Why: the reason of its last participant's leaving, `sessionClosedByServer`,
        /// `openviduServerStopped`, or `sessionGarbageCollected` for a session nobody joined.
        reason: EndReason,
    },
    /// A participant joined.
    ParticipantJoined {
        /// The session.
        session: SessionId,
        /// Its connection.
        connection: ConnectionId,
    },
    /// A participant left or was evicted.
    ParticipantLeft {
        /// The session.
        session: SessionId,
        /// Its connection.
        connection: ConnectionId,
        /// Why.
        reason: EndReason,
    },
    /// A signal was delivered.
    SignalSent {
        /// The session.
        session: SessionId,
        /// The sender; `None` for a REST signal.
        from: Option<ConnectionId>,
        /// The wire type, if any.
        kind: Option<String>,
        /// How many participants it was queued for.
        recipients: usize,
        /// The size of its data.
        bytes: usize,
    },
    /// A participant's socket is gone; it stays for the reconnection grace period, its outbox
    /// collecting what it misses.
    LinkLost {
        /// The session.
        session: SessionId,
        /// Its connection.
        connection: ConnectionId,
    },
    /// A participant's new socket took over (a reconnection).
    Reconnected {
        /// The session.
        session: SessionId,
        /// Its connection.
        connection: ConnectionId,
        /// Whether nothing was lost (`None`: the client did not say what it had).
        recovered: Option<bool>,
        /// Notifications replayed.
        replayed: u64,
    },
}
