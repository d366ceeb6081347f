//! What a session hears: [`Event`]s (signals, participants joining and leaving, the session's
//! end) and the [`Connection`] they are about, as openvidu-browser names them.

use signalroom_core::signal::user_type;
use signalroom_core::{ConnectionId, EndReason};

/// A participant of the session, as openvidu-browser's `Connection`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Connection {
    /// Its public id (`con_…`).
    pub connection_id: ConnectionId,
    /// When it joined, in ms since the epoch (0 when the server did not say).
    pub created_at: u64,
    /// Its full metadata: the client data, the server data, or both joined by `%/%`.
    pub data: String,
}

impl Connection {
    /// A connection.
    pub fn new(connection_id: ConnectionId, created_at: u64, data: impl Into<String>) -> Self {
        Self { connection_id, created_at, data: data.into() }
    }
}

/// A signal received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalEvent {
    /// The data (`""` when the sender gave none).
    pub data: String,
    /// The wire type, verbatim (`signal:chat`); `signal` when the sender gave none.
    pub kind: String,
    /// The sender; `None` for signals sent through the REST API.
    pub from: Option<Connection>,
    /// Sent before this participant joined: from the session's history, which the server gives
    /// on joining when asked ([`ConnectOptions::history`](crate::ConnectOptions::history)).
    pub history: bool,
}

impl SignalEvent {
    /// The type without the `signal:` prefix: `signal:chat` → `chat`.
    pub fn user_type(&self) -> &str {
        user_type(&self.kind)
    }

    /// The sender's connection id, if any.
    pub fn from_id(&self) -> Option<&ConnectionId> {
        self.from.as_ref().map(|c| &c.connection_id)
    }

    /// Whether a subscription to `name` receives this signal: `signal` receives every signal,
    /// any other name the signals whose wire type is exactly `name` (as openvidu-browser's
    /// `session.on(name)`).
    pub fn matches(&self, name: &str) -> bool {
        name == SIGNAL_EVENT || self.kind == name
    }
}

/// The name of the event every signal fires.
pub const SIGNAL_EVENT: &str = "signal";

/// Everything that happens in a session, delivered in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A signal (broadcast, targeted, or from the REST API). Own broadcasts come back too.
    Signal(SignalEvent),
    /// A participant is in the session: first this client itself, then every participant already
    /// there, then each one that joins later.
    ConnectionCreated(Connection),
    /// A participant left or was evicted.
    ConnectionDestroyed {
        /// Who.
        connection: Connection,
        /// Why.
        reason: EndReason,
    },
    /// A property of this client's own connection changed (`role` or `record`).
    ConnectionPropertyChanged {
        /// `role` or `record`.
        property: String,
        /// The new value, as the server sent it.
        new_value: String,
    },
    /// The link broke; the client is reopening it. Requests wait until it is back.
    Reconnecting,
    /// The link is back; the session goes on.
    ///
    /// A signalroom server resumes where the client left off: it replays the notifications sent
    /// while the link was down, and says whether that was all of them. Other servers (OpenVidu)
    /// say nothing: `recovered` is `None` and `replayed` 0.
    Reconnected {
        /// `Some(true)`: nothing sent meanwhile was lost. `Some(false)`: the server no longer had
        /// some of it (the gap outgrew its queue), so events were missed. `None`: not known.
        recovered: Option<bool>,
        /// How many notifications the server replayed (delivered as events like any other).
        replayed: u64,
    },
    /// The session is over; always the last event.
    SessionDisconnected {
        /// `disconnect` after [`Session::disconnect`](crate::Session::disconnect), the eviction
        /// reason, or `networkDisconnect` when reconnection failed.
        reason: EndReason,
    },
}

impl Event {
    /// The openvidu-browser name of the event: `signal`, `connectionCreated`, …
    pub fn name(&self) -> &'static str {
        match self {
            Event::Signal(_) => SIGNAL_EVENT,
            Event::ConnectionCreated(_) => "connectionCreated",
            Event::ConnectionDestroyed { .. } => "connectionDestroyed",
            Event::ConnectionPropertyChanged { .. } => "connectionPropertyChanged",
            Event::Reconnecting => "reconnecting",
            Event::Reconnected { .. } => "reconnected",
            Event::SessionDisconnected { .. } => "sessionDisconnected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_like_openvidu_browser() {
        let ev = SignalEvent { data: "hi".into(), kind: "signal:chat".into(), from: None, history: false };
        assert!(ev.matches("signal"));
        assert!(ev.matches("signal:chat"));
        assert!(!ev.matches("chat"));
        assert!(!ev.matches("signal:other"));
        assert_eq!(ev.user_type(), "chat");
        // A REST signal sent with a bare type fires only `signal` and the bare name.
        let ev = SignalEvent { data: String::new(), kind: "chat".into(), from: None, history: false };
        assert!(ev.matches("chat"));
        assert!(!ev.matches("signal:chat"));
    }
}
