//! The reader's half of the protocol: every inbound frame decoded, responses matched to their
//! requests, notifications turned into events and kept in the roster.

use serde_json::Value;
use signalroom_core::jsonrpc::Frame;
use signalroom_core::protocol::{
    ConnectionPropertyChanged, JoinRoomResult, ParticipantLeft, ReconnectResult, RemoteParticipant,
    SignalNotification, notification,
};
use std::sync::Arc;

use signalroom_core::signal::Signal;
use signalroom_core::{ConnectionId, Role};

use crate::error::Error;
use crate::event::{Connection, Event, SignalEvent};
use crate::pending::PendingKind;
use crate::state::{SessionData, SessionState, Shared};

/// Why a reader stopped.
#[derive(Debug)]
pub(crate) enum ReaderEnd {
    /// The socket closed or failed.
    Lost(String),
    /// This participant was evicted; the session is already finished.
    Evicted,
}

impl Shared {
    /// Handles one inbound text frame. Returns `Some` when the session must stop reading:
    /// this participant was evicted.
    pub(crate) fn handle_frame(&self, text: &str) -> Option<ReaderEnd> {
        let frame = match Frame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, frame = %truncate(text), "ignoring a frame that is not JSON-RPC");
                return None;
            }
        };
        match (&frame.method, frame.id) {
            (Some(method), None) => {
                let mut state = self.state.lock();
                // Remembered before handling: a notification ignored below still counts as had.
                if !state.admit(frame.seq) {
                    let last = state.last_seq;
                    tracing::debug!(%method, seq = frame.seq, last, "dropping a notification already handled");
                    return None;
                }
                drop(state);
                self.handle_notification(method, &frame)
            }
            (Some(method), Some(_)) => {
                tracing::warn!(%method, "ignoring a request from the server (clients never answer them)");
                None
            }
            (None, Some(raw_id)) => {
                match raw_id.get().parse::<u64>() {
                    Ok(id) => self.handle_response(id, &frame),
                    Err(_) => tracing::debug!(id = raw_id.get(), "ignoring a response to an id never sent"),
                }
                None
            }
            (None, None) => {
                tracing::warn!(frame = %truncate(text), "ignoring a frame with neither method nor id");
                None
            }
        }
    }

    fn handle_response(&self, id: u64, frame: &Frame<'_>) {
        let mut state = self.state.lock();
        let Some(pending) = state.pending.remove(&id) else {
            tracing::debug!(id, "ignoring a response to a request forgotten or never sent");
            return;
        };
        let method = pending.method;
        let reply = if let Some(error) = &frame.error {
            Err(Error::Rpc { method, code: error.code, message: error.message.clone() })
        } else {
            let raw = frame.result.map(|r| r.get()).unwrap_or("null");
            match pending.kind {
                PendingKind::Plain => serde_json::from_str::<Value>(raw)
                    .map_err(|e| Error::UnexpectedResponse { method, reason: e.to_string() }),
                PendingKind::JoinRoom => match serde_json::from_str::<JoinRoomResult>(raw) {
                    Ok(result) => {
                        let max = result
                            .max_frame_bytes
                            .map_or(signalroom_core::limits::DEFAULT_MAX_FRAME_BYTES, |m| {
                                usize::try_from(m).unwrap_or(usize::MAX)
                            });
                        self.max_frame.store(max, std::sync::atomic::Ordering::Relaxed);
                        install_join(&mut state, result);
                        Ok(Value::Null)
                    }
                    Err(e) => Err(Error::UnexpectedResponse { method, reason: e.to_string() }),
                },
                PendingKind::Reconnect => {
                    // Any answer but an error means the server took the socket back; what it says
                    // about the resume is a bonus (OpenVidu says nothing).
                    let result = serde_json::from_str::<ReconnectResult>(raw).unwrap_or_else(|e| {
                        tracing::debug!(error = %e, "connect result not understood; nothing known of a resume");
                        ReconnectResult { value: String::new(), session_id: None, recovered: None, replayed: None }
                    });
                    if result.recovered == Some(false) {
                        tracing::warn!(
                            last_seq = state.last_seq,
                            "reconnected, but the server no longer had every notification sent meanwhile"
                        );
                    }
                    if !matches!(state.phase, SessionState::Disconnected(_)) {
                        state.phase = SessionState::Connected;
                        state.emit(Event::Reconnected {
                            recovered: result.recovered,
                            replayed: result.replayed.unwrap_or(0),
                        });
                    }
                    Ok(Value::Null)
                }
            }
        };
        let _ = pending.tx.send(reply);
    }

    fn handle_notification(&self, method: &str, frame: &Frame<'_>) -> Option<ReaderEnd> {
        match method {
            notification::SEND_MESSAGE => match frame.params::<SignalNotification<'_>>() {
                Ok(n) => self.on_signal(n),
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed sendMessage notification"),
            },
            notification::PARTICIPANT_JOINED => match frame.params::<RemoteParticipant>() {
                Ok(p) => {
                    let mut state = self.state.lock();
                    if state.connection_of(p.id.as_str()).is_some() {
                        tracing::debug!(id = %p.id, "participantJoined for a known connection");
                    } else {
                        let c = Connection::new(p.id, p.created_at, p.metadata);
                        state.remotes.push(c.clone());
                        state.emit(Event::ConnectionCreated(c));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed participantJoined"),
            },
            notification::PARTICIPANT_LEFT => match frame.params::<ParticipantLeft>() {
                Ok(left) => {
                    let mut state = self.state.lock();
                    match state.remotes.iter().position(|c| c.connection_id == left.connection_id) {
                        Some(i) => {
                            let connection = state.remotes.remove(i);
                            state.requests.left(&connection.connection_id);
                            state.streams.left(&connection.connection_id);
                            state.emit(Event::ConnectionDestroyed { connection, reason: left.reason });
                        }
                        None => {
                            tracing::warn!(id = %left.connection_id, "participantLeft for an unknown connection")
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed participantLeft"),
            },
            notification::PARTICIPANT_EVICTED => match frame.params::<ParticipantLeft>() {
                Ok(evicted) => {
                    let mut state = self.state.lock();
                    if state.is_local(&evicted.connection_id) {
                        state.finish(evicted.reason.clone());
                        return Some(ReaderEnd::Evicted);
                    }
                    // Others' evictions arrive as participantLeft too; openvidu-browser ignores these.
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed participantEvicted"),
            },
            notification::CONNECTION_PROPERTY_CHANGED => match frame.params::<ConnectionPropertyChanged>() {
                Ok(change) => {
                    let mut state = self.state.lock();
                    match change.property.as_str() {
                        "role" => match Role::parse(&change.new_value) {
                            Some(role) => state.role = role,
                            None => tracing::warn!(value = %change.new_value, "unknown role"),
                        },
                        "record" => state.record = change.new_value == "true",
                        _ => {}
                    }
                    state.emit(Event::ConnectionPropertyChanged {
                        property: change.property,
                        new_value: change.new_value,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed connectionPropertyChanged"),
            },
            other => tracing::debug!(method = other, "ignoring an unknown notification"),
        }
        None
    }

    fn on_signal(&self, n: SignalNotification<'_>) {
        let mut state = self.state.lock();
        let from = n.from.as_deref().map(|id| match state.connection_of(id) {
            Some(c) => c.clone(),
            None => {
                // openvidu-browser drops such a signal; keeping it loses nothing.
                tracing::warn!(from = id, "signal from an unknown connection");
                Connection::new(ConnectionId::from(id), 0, "")
            }
        });
        let event = SignalEvent {
            data: n.data.map(|d| d.into_owned()).unwrap_or_default(),
            kind: n.kind.map(|k| k.into_owned()).unwrap_or_else(|| crate::event::SIGNAL_EVENT.to_owned()),
            from,
            history: false,
        };
        if event.kind == crate::streams::STREAM_WIRE_TYPE {
            if let Some(shared) = self.me.upgrade() {
                let me = state.local.as_ref().map(|c| c.connection_id.clone());
                let acks: crate::streams::AckSender = Arc::new(move |to, data| {
                    if let Ok(signal) = Signal::new(data, Some(crate::streams::ACK_TYPE), vec![to]) {
                        // Queued from the task, not here: the session's state is locked here.
                        let shared = Arc::clone(&shared);
                        tokio::spawn(async move { crate::session::send_signal(&shared, signal).await });
                    }
                });
                if state.streams.on_chunk(&event, me.as_ref(), &acks) {
                    return;
                }
            }
        }
        if event.kind == crate::streams::ACK_WIRE_TYPE && state.streams.on_ack(&event) {
            return;
        }
        if event.kind == crate::requests::REPLY_WIRE_TYPE && state.requests.on_reply(&event) {
            return;
        }
        if event.kind == crate::requests::REQUEST_WIRE_TYPE {
            if let Some(what) = state.requests.on_request(&event) {
                if let (Some(incoming), Some(shared)) = (what, self.me.upgrade()) {
                    let key = match &incoming {
                        crate::requests::Incoming::Serve(_, r) => {
                            Some((r.caller.connection_id.clone(), r.id.clone()))
                        }
                        crate::requests::Incoming::NoHandler { .. } => None,
                    };
                    let task = tokio::spawn(crate::session::serve_request(shared, incoming));
                    if let Some((caller, id)) = key {
                        state.requests.serving(caller, id, task.abort_handle());
                    }
                }
                return;
            }
        }
        state.emit(Event::Signal(event));
    }
}

fn install_join(state: &mut SessionData, result: JoinRoomResult) {
    let local = Connection::new(result.id, result.created_at, result.metadata);
    state.role = result.role;
    state.record = result.record;
    state.session_id = result.session;
    state.rpc_session_id = Some(result.session_id);
    state.local = Some(local.clone());
    state.phase = SessionState::Connected;
    state.remotes = result
        .value
        .into_iter()
        .filter(|p| p.id != local.connection_id)
        .map(|p| Connection::new(p.id, p.created_at, p.metadata))
        .collect();
    // As openvidu-browser: self first, then everybody already there.
    state.emit(Event::ConnectionCreated(local));
    for c in state.remotes.clone() {
        state.emit(Event::ConnectionCreated(c));
    }
    // Then what was said before (signalroom's extension, when asked), before anything live.
    for entry in result.signal_history.unwrap_or_default() {
        let from = entry.from.map(|id| match state.connection_of(id.as_str()) {
            Some(c) => c.clone(),
            None => Connection::new(id, 0, ""), // it left since
        });
        let event = SignalEvent {
            data: entry.data.unwrap_or_default(),
            kind: entry.kind.unwrap_or_else(|| crate::event::SIGNAL_EVENT.to_owned()),
            from,
            history: true,
        };
        state.emit(Event::Signal(event));
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use signalroom_core::EndReason;
    use signalroom_core::token::TokenInfo;
    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::options::ConnectOptions;
    use crate::pending::Reply;

    fn session() -> (Arc<Shared>, mpsc::UnboundedReceiver<Event>) {
        let token = TokenInfo::parse("ws://127.0.0.1:1?sessionId=S1&token=tok_A").unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (shared, _channels) = Shared::new(token, ConnectOptions::default(), tx);
        (shared, rx)
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn join(shared: &Shared) -> oneshot::Receiver<Reply> {
        let mut state = shared.state.lock();
        let (out, rx) = shared.register(&mut state, "joinRoom", None, PendingKind::JoinRoom);
        assert_eq!(out.id, 0);
        rx
    }

    const JOIN_RESULT: &str = r#"{"jsonrpc":"2.0","id":0,"result":{"id":"con_B","finalUserId":"X","createdAt":2,
        "metadata":"bob","value":[{"id":"con_A","createdAt":1,"metadata":"alice"}],"session":"S1",
        "version":"2.32.2","mediaServer":"kurento","videoSimulcast":false,"record":true,"role":"MODERATOR",
        "coturnIp":"203.0.113.7","sessionId":"rpc1"}}"#;

    #[test]
    fn join_result_installs_the_roster_and_emits_self_first() {
        let (shared, mut events) = session();
        let mut rx = join(&shared);
        assert!(shared.handle_frame(JOIN_RESULT).is_none());
        assert!(rx.try_recv().unwrap().is_ok());
        let ev = drain(&mut events);
        assert_eq!(
            ev,
            vec![
                Event::ConnectionCreated(Connection::new("con_B".into(), 2, "bob")),
                Event::ConnectionCreated(Connection::new("con_A".into(), 1, "alice")),
            ]
        );
        let state = shared.state.lock();
        assert_eq!(state.role, Role::Moderator);
        assert_eq!(state.rpc_session_id.as_ref().unwrap(), "rpc1");
        assert_eq!(state.phase, SessionState::Connected);
    }

    #[test]
    fn notifications_keep_the_roster_and_resolve_senders() {
        let (shared, mut events) = session();
        let _rx = join(&shared);
        shared.handle_frame(JOIN_RESULT);
        drain(&mut events);
        let frames = [
            r#"{"jsonrpc":"2.0","method":"participantJoined","params":{"id":"con_C","createdAt":3,"metadata":"carol"}}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":"hi","type":"signal:chat","from":"con_C"}}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":"me","type":"signal:chat","from":"con_B"}}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":"srv"}}"#,
            r#"{"jsonrpc":"2.0","method":"participantPublished","params":{"id":"con_C","streams":[]}}"#,
            r#"{"jsonrpc":"2.0","method":"participantLeft","params":{"connectionId":"con_C","reason":"disconnect"}}"#,
            r#"{"jsonrpc":"2.0","method":"participantEvicted","params":{"connectionId":"con_A","reason":"forceDisconnectByServer"}}"#,
            r#"{"jsonrpc":"2.0","method":"connectionPropertyChanged","params":{"property":"role","newValue":"SUBSCRIBER"}}"#,
            r#"{"jsonrpc":"2.0","id":77,"result":{}}"#,
            r#"not json"#,
        ];
        for f in frames {
            assert!(shared.handle_frame(f).is_none(), "{f}");
        }
        let carol = Connection::new("con_C".into(), 3, "carol");
        let bob = Connection::new("con_B".into(), 2, "bob");
        assert_eq!(
            drain(&mut events),
            vec![
                Event::ConnectionCreated(carol.clone()),
                Event::Signal(SignalEvent {
                    data: "hi".into(),
                    kind: "signal:chat".into(),
                    from: Some(carol.clone()),
                    history: false,
                }),
                Event::Signal(SignalEvent {
                    data: "me".into(),
                    kind: "signal:chat".into(),
                    from: Some(bob),
                    history: false
                }),
                Event::Signal(SignalEvent {
                    data: "srv".into(),
                    kind: "signal".into(),
                    from: None,
                    history: false
                }),
                Event::ConnectionDestroyed { connection: carol, reason: EndReason::Disconnect },
                Event::ConnectionPropertyChanged { property: "role".into(), new_value: "SUBSCRIBER".into() },
            ]
        );
        assert_eq!(shared.state.lock().role, Role::Subscriber);
        assert_eq!(shared.state.lock().remotes.len(), 1);
    }

    #[test]
    fn eviction_of_self_finishes_the_session() {
        let (shared, mut events) = session();
        let _rx = join(&shared);
        shared.handle_frame(JOIN_RESULT);
        drain(&mut events);
        let end = shared.handle_frame(
            r#"{"jsonrpc":"2.0","method":"participantEvicted","params":{"connectionId":"con_B","reason":"forceDisconnectByServer"}}"#,
        );
        assert!(matches!(end, Some(ReaderEnd::Evicted)));
        assert_eq!(
            drain(&mut events),
            vec![Event::SessionDisconnected { reason: EndReason::ForceDisconnectByServer }]
        );
        assert!(events.try_recv().is_err());
        assert_eq!(shared.state.lock().phase, SessionState::Disconnected(EndReason::ForceDisconnectByServer));
    }

    #[test]
    fn errors_and_kurento_quirks_reach_the_caller() {
        let (shared, _events) = session();
        let (mut rx, id) = {
            let mut state = shared.state.lock();
            let (out, rx) = shared.register(&mut state, "sendMessage", None, PendingKind::Plain);
            (rx, out.id)
        };
        let frame = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":601,"message":"bad to","sessionId":"x"}},"data":{{}}}}"#
        );
        shared.handle_frame(&frame);
        match rx.try_recv().unwrap() {
            Err(Error::Rpc { method: "sendMessage", code: 601, message }) => assert_eq!(message, "bad to"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscriptions_receive_matching_signals_only() {
        let (shared, _events) = session();
        let mut chat = shared.state.lock().subscribe("signal:chat");
        let mut all = shared.state.lock().subscribe("signal");
        for kind in ["signal:chat", "signal:other"] {
            let f = format!(
                r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"data":"x","type":"{kind}"}}}}"#
            );
            shared.handle_frame(&f);
        }
        assert_eq!(chat.try_recv().unwrap().kind, "signal:chat");
        assert!(chat.try_recv().is_err());
        assert_eq!(all.try_recv().unwrap().kind, "signal:chat");
        assert_eq!(all.try_recv().unwrap().kind, "signal:other");
        shared.finish(EndReason::Disconnect);
        assert!(matches!(chat.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    }

    fn signal(seq: Option<u64>, data: &str) -> String {
        let seq = seq.map(|n| format!(r#","seq":{n}"#)).unwrap_or_default();
        format!(
            r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"data":"{data}","type":"signal:n"}}{seq}}}"#
        )
    }

    fn signal_data(events: Vec<Event>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e {
                Event::Signal(s) => s.data,
                other => panic!("expected a signal, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn notifications_numbered_at_or_below_the_last_handled_are_dropped() {
        let (shared, mut events) = session();
        // Numbers are the session's: gaps are normal.
        for (seq, data) in
            [(3, "a"), (7, "b"), (8, "c"), (7, "b again"), (3, "a again"), (8, "c again"), (12, "d")]
        {
            assert!(shared.handle_frame(&signal(Some(seq), data)).is_none());
        }
        assert_eq!(signal_data(drain(&mut events)), ["a", "b", "c", "d"]);
        assert_eq!(shared.state.lock().last_seq, Some(12));
    }

    #[test]
    fn an_ignored_notification_still_counts_as_handled() {
        let (shared, mut events) = session();
        shared.handle_frame(r#"{"jsonrpc":"2.0","method":"iceCandidate","params":{},"seq":5}"#);
        shared.handle_frame(r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"data":{"x":1}},"seq":6}"#);
        assert_eq!(shared.state.lock().last_seq, Some(6));
        shared.handle_frame(&signal(Some(6), "repeat"));
        shared.handle_frame(&signal(Some(9), "new"));
        assert_eq!(signal_data(drain(&mut events)), ["new"]);
    }

    #[test]
    fn notifications_without_seq_are_handled_as_ever() {
        let (shared, mut events) = session();
        shared.handle_frame(&signal(None, "plain"));
        shared.handle_frame(&signal(Some(4), "numbered"));
        shared.handle_frame(&signal(None, "plain again"));
        assert_eq!(signal_data(drain(&mut events)), ["plain", "numbered", "plain again"]);
        assert_eq!(shared.state.lock().last_seq, Some(4));
        // Responses carry no seq and leave it alone.
        shared.handle_frame(r#"{"jsonrpc":"2.0","id":77,"result":{}}"#);
        assert_eq!(shared.state.lock().last_seq, Some(4));
    }

    fn reconnect(shared: &Shared) -> (oneshot::Receiver<Reply>, u64) {
        let mut state = shared.state.lock();
        let (out, rx) = shared.register(&mut state, "connect", None, PendingKind::Reconnect);
        (rx, out.id)
    }

    #[test]
    fn reconnected_carries_what_the_server_said_of_the_resume() {
        let (shared, mut events) = session();
        let cases = [
            (
                r#"{"value":"reconnection successful","sessionId":"rpc1","recovered":true,"replayed":12}"#,
                Some(true),
                12,
            ),
            (
                r#"{"value":"reconnection successful","sessionId":"rpc1","recovered":false,"replayed":3}"#,
                Some(false),
                3,
            ),
            // OpenVidu: nothing said.
            (r#"{"value":"reconnection successful","sessionId":"rpc1"}"#, None, 0),
            // Not even an object: the reconnection stands, the resume is unknown.
            (r#""ok""#, None, 0),
        ];
        for (result, recovered, replayed) in cases {
            let (mut rx, id) = reconnect(&shared);
            shared.handle_frame(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#));
            assert!(rx.try_recv().unwrap().is_ok(), "{result}");
            assert_eq!(drain(&mut events), vec![Event::Reconnected { recovered, replayed }], "{result}");
            assert_eq!(shared.state.lock().phase, SessionState::Connected);
        }
    }
}
