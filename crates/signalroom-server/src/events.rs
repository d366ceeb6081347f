//! What happened, as the hub reports it: one [`ServerEvent`] per operation, on a broadcast
//! channel ([`crate::Server::events`]) that metrics and webhooks subscribe to. Emitting costs
//! nothing when nobody listens.

use std::time::Duration;

use signalroom_core::{ConnectionId, EndReason, SessionId};

/// One thing the server did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A session was created.
    SessionCreated {
        /// Its id.
        session: SessionId,
        /// Its creation time (ms since the epoch), as the REST API's `createdAt`.
        at: u64,
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
        /// The join time (ms since the epoch), as the connection's `activeAt`.
        at: u64,
        /// The client's address.
        ip: String,
        /// The client's platform, as it said.
        platform: String,
        /// The client's data (`joinRoom`'s `metadata`).
        client_data: String,
        /// The server's data (the connection's `data`).
        server_data: String,
        /// How long the join took, from the request to the reply queued.
        took: Duration,
    },
    /// A participant left or was evicted (whichever node held its socket: the fields of its join
    /// come from the session).
    ParticipantLeft {
        /// The session.
        session: SessionId,
        /// Its connection.
        connection: ConnectionId,
        /// Why.
        reason: EndReason,
        /// When it joined (ms since the epoch).
        joined_at: u64,
        /// The client's address.
        ip: String,
        /// The client's platform, as it said.
        platform: String,
        /// The client's data (`joinRoom`'s `metadata`).
        client_data: String,
        /// The server's data (the connection's `data`).
        server_data: String,
    },
    /// A signal was delivered. One per signal: emitted only once somebody asked for them
    /// ([`crate::Server::events`], a webhook posting `signalSent`).
    SignalSent {
        /// The session.
        session: SessionId,
        /// The sender; `None` for a REST signal.
        from: Option<ConnectionId>,
        /// The recipients asked for; empty: everyone in the session.
        to: Vec<ConnectionId>,
        /// For a signal to everyone (`to` empty), everyone in the session, on every node, as
        /// the signal was applied: who it went to.
        everyone: Vec<ConnectionId>,
        /// The wire type, if any.
        kind: Option<String>,
        /// The data, if any.
        data: Option<String>,
        /// How many participants it was queued for.
        recipients: usize,
        /// The size of its data.
        bytes: usize,
    },
    /// A participant fell too far behind (its send queue was full): it is evicted with
    /// `networkDisconnect` (a [`ServerEvent::ParticipantLeft`] follows).
    SlowReceiver {
        /// The session.
        session: SessionId,
        /// Its connection.
        connection: ConnectionId,
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

/// The server's data of a participant, from its client data and its full metadata (`clientData`
/// alone, `serverData` alone, or both joined by `%/%`).
pub(crate) fn server_data(client_data: &str, metadata: &str) -> String {
    if client_data.is_empty() {
        metadata.to_owned()
    } else if metadata == client_data {
        String::new()
    } else {
        metadata.strip_prefix(client_data).and_then(|m| m.strip_prefix("%/%")).unwrap_or_default().to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_data_is_what_follows_the_client_data() {
        use super::server_data;
        assert_eq!(server_data("", "srv"), "srv");
        assert_eq!(server_data("cli", "cli"), "");
        assert_eq!(server_data("cli", "cli%/%srv %/% x"), "srv %/% x");
        assert_eq!(server_data("", ""), "");
    }
}
