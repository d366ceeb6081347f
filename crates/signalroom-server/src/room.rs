//! One session's state and rules (spec §5, §7), with no sockets, locks or clocks inside.
//!
//! Every operation returns the ordered [`Effect`]s it causes: notification frames for an
//! audience, the place of the caller's reply, a participant entering or leaving the roster. The
//! hub delivers them in order, so OpenVidu's orders (`participantLeft` to the others, then the
//! moderator's reply, then `participantEvicted` to everybody present before) are data here, and a
//! test is a table: state, operation, effects.
//!
//! Every notification carries the next number of the session's sequence (the `seq` wire
//! extension), so the numbers along what one participant receives increase, and a fan-out is
//! serialised once.

use std::collections::{HashMap, VecDeque};

use axum::extract::ws::Utf8Bytes;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use signalroom_core::history::HistoryEntry;
use signalroom_core::jsonrpc::Notification;
use signalroom_core::protocol::{
    ConnectionPropertyChanged, FullMetadata, JoinRoomResult, ParticipantLeft, RemoteParticipant,
    SignalNotification, full_metadata, notification,
};
use signalroom_core::rest::{
    ConnectionObject, ConnectionProperties, ConnectionStatus, Page, SessionObject, SessionProperties,
};
use signalroom_core::signal::{Recipients, route};
use signalroom_core::{ConnectionId, EndReason, OPENVIDU_VERSION, Role, RpcSessionId, SessionId};

use crate::outbox::Note;
use crate::refusal::Refusal;

/// Who receives a notification, resolved against the roster at that point of the effect list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Audience {
    /// Every participant in the roster.
    All,
    /// Every participant in the roster but this one.
    AllBut(ConnectionId),
    /// These participants (each once).
    Only(Vec<ConnectionId>),
}

/// How a leaving participant's socket is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CloseMode {
    /// After the linger delay, unless the client closes first (OpenVidu: 10 s).
    Linger,
    /// Right after the queued frames (server stopping, link lost for good).
    Now,
}

/// One consequence of an operation, in the order it must happen.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// A notification for `to` (its sequence number with it: [`Note::seq`]).
    Notify { to: Audience, note: Note },
    /// The participant enters the roster: `All` includes it from here on.
    Enter(ConnectionId),
    /// The reply to the caller goes here.
    Reply,
    /// The participant leaves the roster; its socket is closed after what is queued for it.
    Leave { who: ConnectionId, rpc_id: RpcSessionId, reason: EndReason, close: CloseMode, stay: Box<Stay> },
    /// The participant's socket is now held by `node` (a reconnection that landed on another
    /// node of a shared broker): that node's caller outbox takes its place in the roster, and
    /// the node that held it before closes the old socket.
    Moved { who: ConnectionId, node: String },
}

/// A leaving participant's stay, as its `participantLeft` event tells it (on whichever node
/// runs the operation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stay {
    /// When it joined (ms since the epoch).
    pub since: u64,
    pub ip: String,
    pub platform: String,
    pub client_data: String,
    /// The Connection's `data`.
    pub server_data: String,
}

/// The effects of one operation.
pub(crate) type Effects = Vec<Effect>;

/// Fresh identifiers for a Connection, made by the caller (the room draws no random numbers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Minted {
    pub id: ConnectionId,
    pub token_id: String,
    pub token: String,
}

/// A joined participant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Member {
    pub active_at: u64,
    pub client_data: String,
    pub platform: String,
    pub ip: String,
    pub rpc_id: RpcSessionId,
    /// The node holding its socket (a broker's node id).
    #[serde(default)]
    pub node: String,
}

/// A Connection: pending (created by REST), then active (its token used to join).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Conn {
    pub created_at: u64,
    pub token: String,
    pub token_id: String,
    pub props: ConnectionProperties,
    pub member: Option<Member>,
}

impl Conn {
    fn full_metadata(&self) -> String {
        match &self.member {
            Some(m) => full_metadata(&m.client_data, &self.props.data),
            None => self.props.data.clone(),
        }
    }
}

/// What a joiner presents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Joiner {
    /// The token's id (`tok_…`), or `None` when the token has none.
    pub token_id: Option<String>,
    /// The whole token, for error messages.
    pub token: String,
    /// Identifiers for an ad-hoc Connection when the joiner presented the server secret.
    pub with_secret: Option<Minted>,
    pub client_data: String,
    pub platform: String,
    pub ip: String,
    pub rpc_id: RpcSessionId,
    /// The node holding the joiner's socket.
    pub node: String,
    pub final_user_id: String,
    pub now: u64,
}

/// One session. Serialisable: a shared broker stores it between operations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Room {
    pub id: SessionId,
    pub created_at: u64,
    pub props: SessionProperties,
    /// Whether anybody ever joined.
    active: bool,
    /// Closed: every operation refuses; the registry forgets it.
    closed: bool,
    connections: IndexMap<ConnectionId, Conn>,
    /// Pending token id → its Connection.
    pending_tokens: HashMap<String, ConnectionId>,
    /// The last sequence number given to a notification.
    last_seq: u64,
    /// The signals kept, when the session keeps some (`props.signal_history`). Stored with the
    /// room, so that a shared broker's snapshot carries it to the nodes that follow the session.
    #[serde(default, skip_serializing_if = "History::is_empty")]
    history: History,
    /// The participants' entries for join answers, kept as they join and leave. Not stored
    /// with the room: a room read back lists its participants from its connections.
    #[serde(skip)]
    answers: Answers,
}

/// The entries of a room's participants in join answers, in join order, back to back: a
/// joiner's answer lists everyone before it with one copy (a big session's answers list
/// thousands).
#[derive(Debug, Clone, Default)]
struct Answers {
    /// Whether they are kept (false for a room read back).
    kept: bool,
    /// The entries, each followed by a comma.
    text: String,
    /// Whose each entry is, and where it ends in `text` (after its comma), in join order.
    ends: Vec<(ConnectionId, usize)>,
}

impl Answers {
    /// Adds `id`'s entry (`{"id":…,"createdAt":…,"metadata":…}`), made once at its join; none:
    /// no longer kept.
    fn add(&mut self, id: &ConnectionId, entry: Option<&str>) {
        match entry {
            Some(entry) if self.kept => {
                self.text.push_str(entry);
                self.text.push(',');
                self.ends.push((id.clone(), self.text.len()));
            }
            _ => self.clear(),
        }
    }

    fn remove(&mut self, id: &ConnectionId) {
        let Some(at) = self.ends.iter().position(|(who, _)| who == id) else { return };
        let start = if at == 0 { 0 } else { self.ends[at - 1].1 };
        let end = self.ends.remove(at).1;
        self.text.replace_range(start..end, "");
        for (_, later) in &mut self.ends[at..] {
            *later -= end - start;
        }
    }

    /// The entries of everyone who joined before `joiner`, if `joiner` joined last, without
    /// the last comma.
    fn before_last(&self, joiner: &ConnectionId) -> Option<&str> {
        match self.ends.as_slice() {
            _ if !self.kept => None,
            [.., (_, end), (last, _)] if last == joiner => Some(&self.text[..end - 1]),
            [(last, _)] if last == joiner => Some(""),
            _ => None,
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// A session's last broadcast signals of the types its `signalHistory` names, oldest first,
/// bounded in count, bytes and age.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct History {
    entries: VecDeque<HistoryEntry>,
    /// What the entries count for ([`HistoryEntry::cost`]).
    bytes: usize,
}

impl History {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps `entry`, dropping the oldest beyond the bounds (one larger than the byte bound
    /// alone is not kept).
    fn push(&mut self, entry: HistoryEntry, setting: &signalroom_core::history::SignalHistory) {
        let cost = entry.cost();
        if cost > setting.max_bytes {
            return;
        }
        self.bytes += cost;
        self.entries.push_back(entry);
        while self.entries.len() > setting.size || self.bytes > setting.max_bytes {
            self.pop();
        }
        self.expire(self.entries.back().map_or(0, |e| e.created_at), setting.ttl_seconds);
    }

    fn pop(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.bytes -= old.cost();
        }
    }

    /// Drops what is older than `ttl_seconds` at `now` (0: nothing expires).
    fn expire(&mut self, now: u64, ttl_seconds: u64) {
        if ttl_seconds == 0 {
            return;
        }
        let oldest = now.saturating_sub(ttl_seconds.saturating_mul(1000));
        while self.entries.front().is_some_and(|e| e.created_at < oldest) {
            self.pop();
        }
    }
}

impl Room {
    /// A new session, not active until somebody joins.
    pub fn new(id: SessionId, props: SessionProperties, now: u64) -> Self {
        Self {
            id,
            created_at: now,
            props,
            active: false,
            closed: false,
            connections: IndexMap::new(),
            pending_tokens: HashMap::new(),
            last_seq: 0,
            history: History::default(),
            answers: Answers { kept: true, ..Answers::default() },
        }
    }

    /// A room read back (which keeps no join answer entries: they are not stored) keeps them
    /// again from now on, made from its participants, so that its joins' answers are copied as a
    /// new room's are.
    pub fn keep_answers(&mut self) {
        let mut answers = Answers { kept: true, ..Answers::default() };
        for (id, conn, member) in self.participants() {
            let entry = serde_json::to_string(&Entry {
                id,
                created_at: member.active_at,
                metadata: FullMetadata(&member.client_data, &conn.props.data),
            });
            answers.add(id, entry.as_deref().ok());
        }
        self.answers = answers;
    }

    /// Whether the session is closed (its last participant left, or it was deleted).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether anybody ever joined.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Whether `id` is a joined participant.
    pub fn is_participant(&self, id: &ConnectionId) -> bool {
        self.connections.get(id).is_some_and(|c| c.member.is_some())
    }

    /// The joined participants, in join order.
    pub fn participants(&self) -> impl Iterator<Item = (&ConnectionId, &Conn, &Member)> {
        self.connections.iter().filter_map(|(id, c)| c.member.as_ref().map(|m| (id, c, m)))
    }

    /// The number of joined participants.
    pub fn participant_count(&self) -> usize {
        self.participants().count()
    }

    /// The number of Connections, pending or joined (what a stored room lists).
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// The node holding the participant's socket.
    pub fn node_of(&self, who: &ConnectionId) -> Option<&str> {
        self.connections.get(who)?.member.as_ref().map(|m| m.node.as_str())
    }

    /// The last sequence number given to a notification.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// A reconnection of `who` on `node`: its socket is held there from now on.
    pub fn relocate(&mut self, who: &ConnectionId, node: &str) -> Result<Effects, Refusal> {
        self.refuse_if_closed().map_err(|_| Refusal::Reconnection)?;
        let member =
            self.connections.get_mut(who).and_then(|c| c.member.as_mut()).ok_or(Refusal::Reconnection)?;
        member.node = node.to_owned();
        Ok(vec![Effect::Moved { who: who.clone(), node: node.to_owned() }])
    }

    /// Whether nobody ever joined and the session is at least `threshold_ms` old.
    pub fn is_stale(&self, now: u64, threshold_ms: u64) -> bool {
        !self.active && !self.closed && now.saturating_sub(self.created_at) >= threshold_ms
    }

    /// Serialises a notification with the next sequence number.
    fn note<P: serde::Serialize>(&mut self, method: &str, params: &P, to: Audience) -> Effect {
        self.note_with(to, |seq| Notification::with_seq(method, params, seq).to_json())
    }

    /// A notification `text` writes for the next sequence number.
    fn note_with(&mut self, to: Audience, text: impl FnOnce(u64) -> String) -> Effect {
        self.last_seq += 1;
        let seq = self.last_seq;
        Effect::Notify { to, note: Note::new(seq, Utf8Bytes::from(text(seq))) }
    }

    fn refuse_if_closed(&self) -> Result<(), Refusal> {
        if self.closed { Err(Refusal::NoSession(self.id.to_string())) } else { Ok(()) }
    }

    // ---- connections ----------------------------------------------------------------------

    /// Creates a pending Connection.
    pub fn create_connection(
        &mut self,
        minted: Minted,
        props: ConnectionProperties,
        now: u64,
    ) -> Result<ConnectionObject, Refusal> {
        self.refuse_if_closed()?;
        let Minted { id, token_id, token } = minted;
        self.pending_tokens.insert(token_id.clone(), id.clone());
        self.connections.insert(id.clone(), Conn { created_at: now, token, token_id, props, member: None });
        Ok(self.connection_object(id.as_str()).expect("just created"))
    }

    /// Changes a Connection's role and record; its participant (if joined) is told of each change.
    pub fn update_connection(
        &mut self,
        id: &str,
        role: Option<Role>,
        record: Option<bool>,
    ) -> Result<(ConnectionObject, Effects), Refusal> {
        self.refuse_if_closed()?;
        let (id, conn) = self
            .connections
            .get_key_value_mut(id)
            .map(|(k, v)| (k.clone(), v))
            .ok_or(Refusal::NoConnection)?;
        let mut changes = Vec::new();
        if let Some(role) = role.filter(|r| *r != conn.props.role) {
            conn.props.role = role;
            changes
                .push(ConnectionPropertyChanged { property: "role".into(), new_value: role.as_str().into() });
        }
        if let Some(record) = record.filter(|r| *r != conn.props.record) {
            conn.props.record = record;
            changes
                .push(ConnectionPropertyChanged { property: "record".into(), new_value: record.to_string() });
        }
        let joined = conn.member.is_some();
        let mut effects = Vec::new();
        if joined {
            for change in &changes {
                effects.push(self.note(
                    notification::CONNECTION_PROPERTY_CHANGED,
                    change,
                    Audience::Only(vec![id.clone()]),
                ));
            }
        }
        Ok((self.connection_object(id.as_str()).expect("exists"), effects))
    }

    /// Deletes a pending Connection, or evicts its participant (`forceDisconnectByServer`).
    pub fn delete_connection(&mut self, id: &str) -> Result<Effects, Refusal> {
        self.refuse_if_closed()?;
        let (id, conn) = self.connections.get_key_value(id).ok_or(Refusal::NoConnection)?;
        let id = id.clone();
        if conn.member.is_none() {
            let token_id = conn.token_id.clone();
            self.pending_tokens.remove(&token_id);
            self.connections.shift_remove(&id);
            return Ok(Vec::new());
        }
        Ok(self.evict(vec![(id, EndReason::ForceDisconnectByServer)], CloseMode::Linger, false))
    }

    // ---- participants ---------------------------------------------------------------------

    /// Joins with a pending token (or the server secret): `participantJoined` to everybody
    /// already there, then the joiner enters the roster, then its reply.
    pub fn join(&mut self, joiner: Joiner) -> Result<(JoinRoomResult, Effects), Refusal> {
        if self.closed {
            return Err(Refusal::SessionClosed(self.id.clone()));
        }
        let id = match joiner.with_secret {
            Some(minted) => {
                let props = ConnectionProperties::default();
                self.create_connection(minted.clone(), props, joiner.now)?;
                minted.id
            }
            None => joiner.token_id.as_deref().and_then(|t| self.pending_tokens.get(t).cloned()).ok_or_else(
                || Refusal::BadToken { session: self.id.to_string(), token: joiner.token.clone() },
            )?,
        };
        let conn = self.connections.get_mut(&id).expect("a pending token names a connection");
        self.pending_tokens.remove(&conn.token_id);
        let entry = serde_json::to_string(&Entry {
            id: &id,
            created_at: joiner.now,
            metadata: FullMetadata(&joiner.client_data, &conn.props.data),
        });
        self.answers.add(&id, entry.as_deref().ok());
        conn.member = Some(Member {
            active_at: joiner.now,
            client_data: joiner.client_data,
            platform: joiner.platform,
            ip: joiner.ip,
            rpc_id: joiner.rpc_id.clone(),
            node: joiner.node,
        });
        let (role, record, metadata) = (conn.props.role, conn.props.record, conn.full_metadata());
        self.active = true;

        let announce =
            RemoteParticipant { id: id.clone(), created_at: joiner.now, metadata: metadata.clone() };
        let effects = vec![
            self.note(notification::PARTICIPANT_JOINED, &announce, Audience::All),
            Effect::Enter(id.clone()),
            Effect::Reply,
        ];
        let result = JoinRoomResult {
            id: id.clone(),
            final_user_id: joiner.final_user_id,
            created_at: joiner.now,
            metadata,
            // Left empty: the answer lists them from the room itself, borrowed
            // ([`Room::join_answer`]); a big session's answers list thousands.
            value: Vec::new(),
            session: Some(self.id.clone()),
            version: OPENVIDU_VERSION.to_owned(),
            media_server: "kurento".to_owned(),
            video_simulcast: false,
            record,
            role,
            session_id: joiner.rpc_id,
            // Added to the answer by its maker when the joiner asks ([`Room::history_answer`]).
            signal_history: None,
            // The front end's to say (it knows its frame limit): `ws` sets it.
            max_frame_bytes: None,
        };
        Ok((result, effects))
    }

    /// A signal from participant `from` (RPC `sendMessage`) or from the server (`None`, REST),
    /// sent at `at()` (ms, read only when the signal is kept): the notification to its recipients, then the reply. The recipients are
    /// checked all or nothing (spec §5.1). A broadcast of a type the session's `signalHistory`
    /// names is kept (signals to chosen participants never are: a late joiner would read others'
    /// private messages).
    pub fn signal(
        &mut self,
        from: Option<&ConnectionId>,
        to: &[ConnectionId],
        data: Option<&str>,
        kind: Option<&str>,
        at: impl FnOnce() -> u64,
    ) -> Result<Effects, Refusal> {
        self.refuse_if_closed()?;
        if from.is_none() && !self.active {
            return Err(Refusal::NotActive);
        }
        if from.is_some_and(|f| !self.is_participant(f)) {
            return Err(Refusal::NoLongerJoined(RpcSessionId::from("")));
        }
        let recipients = match route(to, |id| self.is_participant(id)) {
            Ok(r) => r,
            Err(_) if from.is_none() => return Err(Refusal::NoValidRecipient),
            Err(e) => return Err(e.into()),
        };
        let audience = match recipients {
            Recipients::All => Audience::All,
            Recipients::Only(ids) => Audience::Only(ids),
        };
        let params = SignalNotification {
            data: data.map(Into::into),
            kind: kind.map(Into::into),
            from: from.map(|f| f.as_str().into()),
        };
        let kept = audience == Audience::All;
        let effects = vec![self.note_with(audience, |seq| params.notification_json(seq)), Effect::Reply];
        if let Some(setting) = self.props.signal_history.as_ref().filter(|h| kept && h.keeps(kind)) {
            let entry = HistoryEntry {
                seq: self.last_seq,
                created_at: at(),
                from: from.cloned(),
                kind: kind.map(str::to_owned),
                data: data.map(str::to_owned),
            };
            self.history.push(entry, setting);
        }
        Ok(effects)
    }

    /// The signals kept at `now` (ms), oldest first: the last `limit` of those numbered after
    /// `since` (their `seq`).
    pub fn signal_history(&self, now: u64, since: u64, limit: usize) -> Vec<HistoryEntry> {
        let Some(setting) = &self.props.signal_history else { return Vec::new() };
        let oldest = match setting.ttl_seconds {
            0 => 0,
            ttl => now.saturating_sub(ttl.saturating_mul(1000)),
        };
        let fresh: Vec<_> =
            self.history.entries.iter().filter(|e| e.seq > since && e.created_at >= oldest).collect();
        fresh[fresh.len().saturating_sub(limit)..].iter().map(|e| (*e).clone()).collect()
    }

    /// `leaveRoom`: `participantLeft` (`disconnect`) to the others, the reply, then the socket
    /// is closed after the linger delay.
    pub fn leave(&mut self, who: &ConnectionId) -> Effects {
        let Some((member, stay)) = self.remove(who) else { return vec![Effect::Reply] };
        let params = ParticipantLeft { connection_id: who.clone(), reason: EndReason::Disconnect };
        let effects = vec![
            self.note(notification::PARTICIPANT_LEFT, &params, Audience::AllBut(who.clone())),
            Effect::Reply,
            Effect::Leave {
                who: who.clone(),
                rpc_id: member.rpc_id,
                reason: EndReason::Disconnect,
                close: CloseMode::Linger,
                stay,
            },
        ];
        self.close_if_empty();
        effects
    }

    /// RPC `forceDisconnect` by `by` (a MODERATOR) of `target`.
    pub fn force_disconnect(&mut self, by: &ConnectionId, target: &ConnectionId) -> Result<Effects, Refusal> {
        self.require_moderator(by, "forceDisconnect")?;
        if !self.is_participant(target) {
            return Err(Refusal::NoParticipant(target.clone()));
        }
        Ok(self.evict(vec![(target.clone(), EndReason::ForceDisconnectByUser)], CloseMode::Linger, true))
    }

    /// Refuses unless `who` is a MODERATOR.
    pub fn require_moderator(&self, who: &ConnectionId, what: &'static str) -> Result<(), Refusal> {
        match self.connections.get(who).map(|c| c.props.role) {
            Some(Role::Moderator) => Ok(()),
            role => Err(Refusal::NotModerator { who: who.clone(), what, role }),
        }
    }

    /// The participant's role.
    pub fn role_of(&self, who: &ConnectionId) -> Option<Role> {
        self.connections.get(who).map(|c| c.props.role)
    }

    /// Evicts participants one by one, in OpenVidu's order (spec §7.3), for each:
    /// `participantLeft` to the remaining participants, the reply (the first only, when
    /// `reply_between`: the moderator's), `participantEvicted` to everybody present before (the
    /// evicted included), then its socket is closed. Who is not a participant is skipped.
    pub fn evict(
        &mut self,
        who: Vec<(ConnectionId, EndReason)>,
        close: CloseMode,
        mut reply_between: bool,
    ) -> Effects {
        let mut effects = Vec::with_capacity(who.len() * 4);
        for (id, reason) in who {
            let Some((member, stay)) = self.remove(&id) else { continue };
            let params = ParticipantLeft { connection_id: id.clone(), reason: reason.clone() };
            effects.push(self.note(notification::PARTICIPANT_LEFT, &params, Audience::AllBut(id.clone())));
            if std::mem::take(&mut reply_between) {
                effects.push(Effect::Reply);
            }
            effects.push(self.note(notification::PARTICIPANT_EVICTED, &params, Audience::All));
            effects.push(Effect::Leave { who: id, rpc_id: member.rpc_id, reason, close, stay });
        }
        if reply_between {
            effects.push(Effect::Reply);
        }
        self.close_if_empty();
        effects
    }

    /// Closes the session: every participant evicted one by one with `reason`, pending
    /// Connections dropped.
    pub fn close(&mut self, reason: EndReason, close: CloseMode) -> Effects {
        let ids: Vec<_> = self.participants().map(|(id, _, _)| (id.clone(), reason.clone())).collect();
        let effects = self.evict(ids, close, false);
        self.shut();
        effects
    }

    /// Closes a session nobody ever joined; `false` if somebody did.
    pub fn close_if_never_joined(&mut self) -> bool {
        if self.active || self.closed {
            return false;
        }
        self.shut();
        true
    }

    fn remove(&mut self, id: &ConnectionId) -> Option<(Member, Box<Stay>)> {
        let member = self.connections.get_mut(id)?.member.take()?;
        let server_data = self.connections.shift_remove(id).map(|c| c.props.data).unwrap_or_default();
        self.answers.remove(id);
        let stay = Box::new(Stay {
            since: member.active_at,
            ip: member.ip.clone(),
            platform: member.platform.clone(),
            client_data: member.client_data.clone(),
            server_data,
        });
        Some((member, stay))
    }

    /// "A session is deleted when its last participant leaves" (spec §7.1).
    fn close_if_empty(&mut self) {
        if self.active && !self.closed && self.participant_count() == 0 {
            self.shut();
        }
    }

    fn shut(&mut self) {
        self.closed = true;
        self.connections.clear();
        self.pending_tokens.clear();
        self.answers.clear();
    }

    // ---- views ----------------------------------------------------------------------------

    /// The participants as `joinRoom`'s `value`, excluding `except`.
    #[cfg(test)]
    pub fn remote_participants(&self, except: &ConnectionId) -> Vec<RemoteParticipant> {
        self.participants()
            .filter(|(id, _, _)| *id != except)
            .map(|(id, c, m)| RemoteParticipant {
                id: id.clone(),
                created_at: m.active_at,
                metadata: c.full_metadata(),
            })
            .collect()
    }

    /// The `joinRoom` answer for `result` (from [`Room::join`]): `result` with the participants
    /// already in as its `value`, serialised straight from the room, the same JSON as
    /// [`Room::remote_participants`] gives, without a string made for each of them.
    pub fn join_answer<'a>(&'a self, result: &'a JoinRoomResult) -> JoinAnswer<'a> {
        JoinAnswer { result, room: self }
    }

    /// The `joinRoom` response (request id `id`) for `result`, the join just made: the JSON of a
    /// [`Response`](signalroom_core::jsonrpc::Response) of [`Room::join_answer`], its `value`
    /// copied from the entries kept as participants join and leave, in join order. (A room read
    /// back keeps none: it lists them in the order their Connections were made. OpenVidu lists
    /// them from a hash set: clients take them in any order.)
    pub fn join_answer_json(&self, id: &RawValue, result: &JoinRoomResult) -> String {
        let Some(value) = self.answers.before_last(&result.id) else {
            return signalroom_core::jsonrpc::Response::new(id, self.join_answer(result)).to_json();
        };
        fn push<T: Serialize + ?Sized>(out: &mut String, key: &str, value: &T) {
            out.push_str(key);
            out.push_str(&serde_json::to_string(value).expect("answer fields serialise"));
        }
        let r = result;
        let mut out = String::with_capacity(value.len() + r.metadata.len() + 512);
        out.push_str(r#"{"jsonrpc":"2.0","id":"#);
        out.push_str(id.get());
        push(&mut out, r#","result":{"id":"#, &r.id);
        push(&mut out, r#","finalUserId":"#, &r.final_user_id);
        push(&mut out, r#","createdAt":"#, &r.created_at);
        push(&mut out, r#","metadata":"#, &r.metadata);
        out.push_str(r#","value":["#);
        out.push_str(value);
        out.push(']');
        push(&mut out, r#","session":"#, &r.session);
        push(&mut out, r#","version":"#, &r.version);
        push(&mut out, r#","mediaServer":"#, &r.media_server);
        push(&mut out, r#","videoSimulcast":"#, &r.video_simulcast);
        push(&mut out, r#","record":"#, &r.record);
        push(&mut out, r#","role":"#, &r.role);
        push(&mut out, r#","sessionId":"#, &r.session_id);
        if let Some(max) = r.max_frame_bytes {
            push(&mut out, r#","maxFrameBytes":"#, &max);
        }
        out.push_str("}}");
        out
    }

    /// A `joinRoom` response (from [`Room::join_answer_json`]) with signalroom's `signalHistory`
    /// extension: the signals the session kept when `result` joined, oldest first (an empty list
    /// when it keeps none). Every one of them was numbered before the join, so none comes live
    /// again; openvidu-browser never asks for it.
    pub fn history_answer(&self, mut answer: String, result: &JoinRoomResult) -> String {
        if !answer.ends_with("}}") {
            return answer;
        }
        let entries = self.signal_history(result.created_at, 0, usize::MAX);
        let history = serde_json::to_string(&entries).expect("history entries serialise");
        answer.truncate(answer.len() - 2);
        answer.push_str(r#","signalHistory":"#);
        answer.push_str(&history);
        answer.push_str("}}");
        answer
    }

    /// The REST Session object; pending Connections too with `pending`.
    pub fn session_object(&self, pending: bool) -> SessionObject {
        let content = self
            .connections
            .keys()
            .filter(|id| pending || self.is_participant(id))
            .filter_map(|id| self.connection_object(id.as_str()))
            .collect();
        SessionObject {
            id: self.id.clone(),
            object: "session".into(),
            session_id: self.id.clone(),
            created_at: self.created_at,
            recording: false,
            broadcasting: false,
            properties: self.props.clone(),
            connections: Page::new(content),
        }
    }

    /// The REST Connection object.
    pub fn connection_object(&self, id: &str) -> Option<ConnectionObject> {
        let (id, c) = self.connections.get_key_value(id)?;
        let m = c.member.as_ref();
        Some(ConnectionObject {
            id: id.clone(),
            object: "connection".into(),
            status: if m.is_some() { ConnectionStatus::Active } else { ConnectionStatus::Pending },
            connection_id: id.clone(),
            session_id: self.id.clone(),
            created_at: c.created_at,
            kind: "WEBRTC".into(),
            record: c.props.record,
            role: c.props.role,
            kurento_options: c.props.kurento_options.clone(),
            custom_ice_servers: c.props.custom_ice_servers.clone(),
            rtsp_uri: None,
            adaptative_bitrate: None,
            only_play_with_subscribers: None,
            network_cache: None,
            server_data: c.props.data.clone(),
            token: c.token.clone(),
            active_at: m.map(|m| m.active_at),
            location: m.map(|_| "unknown".to_owned()),
            ip: m.map(|m| m.ip.clone()),
            platform: m.map(|m| m.platform.clone()),
            client_data: m.map(|m| m.client_data.clone()),
            publishers: m.map(|_| Vec::new()),
            subscribers: m.map(|_| Vec::new()),
        })
    }
}

/// A `joinRoom` answer, serialised from the room ([`Room::join_answer`]).
pub struct JoinAnswer<'a> {
    result: &'a JoinRoomResult,
    room: &'a Room,
}

impl Serialize for JoinAnswer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // JoinRoomResult's fields, in its order; `value` from the room.
        let r = self.result;
        let room = self.room;
        // The joiner is told apart by address: comparing every id is a memcmp per participant.
        let joiner = room.connections.get(&r.id).map_or(std::ptr::null(), |c| c as *const Conn);
        let value = Entries(|| {
            room.participants().filter(move |(_, c, _)| !std::ptr::eq(*c, joiner)).map(|(id, c, m)| Entry {
                id,
                created_at: m.active_at,
                metadata: FullMetadata(&m.client_data, &c.props.data),
            })
        });
        let mut st = s.serialize_struct("JoinRoomResult", 12 + usize::from(r.max_frame_bytes.is_some()))?;
        st.serialize_field("id", &r.id)?;
        st.serialize_field("finalUserId", &r.final_user_id)?;
        st.serialize_field("createdAt", &r.created_at)?;
        st.serialize_field("metadata", &r.metadata)?;
        st.serialize_field("value", &value)?;
        st.serialize_field("session", &r.session)?;
        st.serialize_field("version", &r.version)?;
        st.serialize_field("mediaServer", &r.media_server)?;
        st.serialize_field("videoSimulcast", &r.video_simulcast)?;
        st.serialize_field("record", &r.record)?;
        st.serialize_field("role", &r.role)?;
        st.serialize_field("sessionId", &r.session_id)?;
        if let Some(max) = r.max_frame_bytes {
            st.serialize_field("maxFrameBytes", &max)?;
        }
        st.end()
    }
}

/// A sequence serialised from the iterator its closure makes.
struct Entries<F>(F);

impl<F, I, T> Serialize for Entries<F>
where
    F: Fn() -> I,
    I: Iterator<Item = T>,
    T: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// A [`RemoteParticipant`], borrowed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    id: &'a ConnectionId,
    created_at: u64,
    metadata: FullMetadata<'a>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A session's properties, as REST creates them by default (custom id `S`).
    pub(crate) fn props() -> SessionProperties {
        SessionProperties {
            media_mode: "ROUTED".into(),
            recording_mode: "MANUAL".into(),
            default_recording_properties: json!({}),
            custom_session_id: "S".into(),
            forced_video_codec: "MEDIA_SERVER_PREFERRED".into(),
            allow_transcoding: false,
            signal_history: None,
        }
    }

    fn pending(room: &mut Room, n: &str, role: Role) -> String {
        let minted = Minted {
            id: format!("con_{n}").into(),
            token_id: format!("tok_{n}"),
            token: format!("ws://h?sessionId=S&token=tok_{n}"),
        };
        let props = ConnectionProperties { role, ..ConnectionProperties::default() };
        room.create_connection(minted, props, 1).unwrap();
        format!("tok_{n}")
    }

    fn joiner(token_id: &str, who: &str) -> Joiner {
        Joiner {
            token_id: Some(token_id.to_owned()),
            token: token_id.to_owned(),
            with_secret: None,
            client_data: who.to_owned(),
            platform: "test".into(),
            ip: "127.0.0.1".into(),
            rpc_id: format!("rpc_{who}").into(),
            node: "n1".into(),
            final_user_id: "F".into(),
            now: 10,
        }
    }

    /// A room with participants `A`, `B`, ... joined in order (`A` a moderator).
    fn room_with(names: &[&str]) -> Room {
        let mut room = Room::new("S".into(), props(), 0);
        for (i, n) in names.iter().enumerate() {
            let role = if i == 0 { Role::Moderator } else { Role::Publisher };
            let tok = pending(&mut room, n, role);
            room.join(joiner(&tok, n)).unwrap();
        }
        room
    }

    fn id(n: &str) -> ConnectionId {
        format!("con_{n}").into()
    }

    /// Effects as readable lines: `notify <audience> <method> <params>`, `enter X`, `reply`,
    /// `leave X <reason>`.
    fn lines(effects: &[Effect]) -> Vec<String> {
        effects
            .iter()
            .map(|e| match e {
                Effect::Notify { to, note } => {
                    let v: serde_json::Value = serde_json::from_str(note.frame().as_str()).unwrap();
                    let to = match to {
                        Audience::All => "all".to_owned(),
                        Audience::AllBut(x) => format!("all-but {x}"),
                        Audience::Only(ids) => {
                            format!("only {}", ids.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(","))
                        }
                    };
                    format!("notify {to} {} {}", v["method"].as_str().unwrap(), v["params"])
                }
                Effect::Enter(x) => format!("enter {x}"),
                Effect::Reply => "reply".to_owned(),
                Effect::Leave { who, reason, close, .. } => format!("leave {who} {reason} {close:?}"),
                Effect::Moved { who, node } => format!("moved {who} {node}"),
            })
            .collect()
    }

    #[test]
    fn a_join_answer_is_the_join_room_result_with_the_participants_already_in() {
        let mut room = Room::new("S".into(), props(), 0);
        // Client data, server data, both (joined by `%/%`), neither; with characters to escape.
        for (n, client, server) in
            [("A", "a \"q\" é", ""), ("B", "", "srv\n"), ("C", "c", "{\"s\":1}"), ("D", "", "")]
        {
            let minted = Minted {
                id: format!("con_{n}").into(),
                token_id: format!("tok_{n}"),
                token: format!("ws://h?sessionId=S&token=tok_{n}"),
            };
            let data = server.to_owned();
            let props =
                ConnectionProperties { role: Role::Publisher, data, ..ConnectionProperties::default() };
            room.create_connection(minted, props, 1).unwrap();
            let mut j = joiner(&format!("tok_{n}"), n);
            j.client_data = client.to_owned();
            room.join(j).unwrap();
        }
        let tok = pending(&mut room, "E", Role::Publisher);
        let (result, _) = room.join(joiner(&tok, "E")).unwrap();
        let answer = serde_json::to_string(&room.join_answer(&result)).unwrap();
        let whole = JoinRoomResult { value: room.remote_participants(&result.id), ..result.clone() };
        assert_eq!(answer, serde_json::to_string(&whole).unwrap());
        // A room read back (as from Redis) has no entries made at the joins: the same answer.
        let back: Room = serde_json::from_str(&serde_json::to_string(&room).unwrap()).unwrap();
        assert!(!back.answers.kept);
        assert_eq!(serde_json::to_string(&back.join_answer(&result)).unwrap(), answer);
        assert_eq!(whole.value.len(), 4);
        assert_eq!(whole.value[2].metadata, "c%/%{\"s\":1}");

        // The response made from the entries kept: the same bytes as the response serialised,
        // here and from the room read back (which has none kept).
        let id = RawValue::from_string("7".into()).unwrap();
        let made = room.join_answer_json(&id, &result);
        let serialised = signalroom_core::jsonrpc::Response::new(&id, &whole).to_json();
        assert_eq!(made, serialised);
        assert_eq!(back.join_answer_json(&id, &result), serialised);

        // With the frame limit the front end adds (signalroom's extension), last.
        let limited = JoinRoomResult { max_frame_bytes: Some(51_200), ..result.clone() };
        let whole = JoinRoomResult { max_frame_bytes: Some(51_200), ..whole };
        let serialised = signalroom_core::jsonrpc::Response::new(&id, &whole).to_json();
        assert!(serialised.ends_with(r#","maxFrameBytes":51200}}"#), "{serialised}");
        assert_eq!(room.join_answer_json(&id, &limited), serialised);
        assert_eq!(back.join_answer_json(&id, &limited), serialised);
    }

    /// The entries kept for answers follow joins and leaves: each answer lists everyone in,
    /// in join order, whatever the order the Connections were made in.
    #[test]
    fn join_answers_list_everyone_in_in_join_order_after_joins_and_leaves() {
        let mut room = Room::new("S".into(), props(), 0);
        let tokens: Vec<String> =
            ["A", "B", "C", "D", "E"].iter().map(|n| pending(&mut room, n, Role::Publisher)).collect();
        let request = RawValue::from_string("1".into()).unwrap();
        let join = |room: &mut Room, i: usize, n: &str| {
            let (result, _) = room.join(joiner(&tokens[i], n)).unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&room.join_answer_json(&request, &result)).unwrap();
            let listed: Vec<String> = v["result"]["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect();
            listed
        };
        assert!(join(&mut room, 2, "C").is_empty(), "the first joiner: nobody");
        assert_eq!(join(&mut room, 0, "A"), ["con_C"]);
        assert_eq!(join(&mut room, 3, "D"), ["con_C", "con_A"]);
        room.leave(&id("A"));
        room.leave(&id("C"));
        assert_eq!(join(&mut room, 1, "B"), ["con_D"]);
        room.leave(&id("B"));
        assert_eq!(join(&mut room, 4, "E"), ["con_D"]);
        assert_eq!(
            room.answers.text,
            room.answers
                .ends
                .iter()
                .map(|(who, _)| {
                    let (c, m) = (&room.connections[who], room.connections[who].member.as_ref().unwrap());
                    let entry = RemoteParticipant {
                        id: who.clone(),
                        created_at: m.active_at,
                        metadata: c.full_metadata(),
                    };
                    format!("{},", serde_json::to_string(&entry).unwrap())
                })
                .collect::<String>(),
            "the text is the entries of the ones in, nothing else"
        );
    }

    #[test]
    fn join_announces_to_the_others_then_enters_then_replies() {
        let mut room = room_with(&["A"]);
        let tok = pending(&mut room, "B", Role::Publisher);
        let (result, effects) = room.join(joiner(&tok, "B")).unwrap();
        assert_eq!(
            lines(&effects),
            [
                r#"notify all participantJoined {"createdAt":10,"id":"con_B","metadata":"B"}"#,
                "enter con_B",
                "reply"
            ]
        );
        assert_eq!(result.id, id("B"));
        let answer: JoinRoomResult =
            serde_json::from_str(&serde_json::to_string(&room.join_answer(&result)).unwrap()).unwrap();
        assert_eq!(answer.value.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), [id("A")]);
        assert_eq!(result.session_id, "rpc_B");
        assert!(room.is_active());
    }

    #[test]
    fn a_token_is_single_use_and_unknown_tokens_are_refused() {
        let mut room = room_with(&["A"]);
        assert!(matches!(room.join(joiner("tok_A", "again")), Err(Refusal::BadToken { .. })));
        assert!(matches!(room.join(joiner("tok_nope", "x")), Err(Refusal::BadToken { .. })));
    }

    #[test]
    fn a_signal_reaches_its_recipients_before_the_reply_and_is_all_or_nothing() {
        let mut room = room_with(&["A", "B", "C"]);
        let effects = room.signal(Some(&id("A")), &[], Some("hi"), Some("signal:chat"), || 0).unwrap();
        assert_eq!(
            lines(&effects),
            [r#"notify all sendMessage {"data":"hi","from":"con_A","type":"signal:chat"}"#, "reply"]
        );
        let effects =
            room.signal(Some(&id("A")), &[id("C"), id("B"), id("C")], Some("x"), None, || 0).unwrap();
        assert_eq!(lines(&effects)[0], r#"notify only con_C,con_B sendMessage {"data":"x","from":"con_A"}"#);
        let err = room.signal(Some(&id("A")), &[id("B"), id("Z")], Some("x"), None, || 0).unwrap_err();
        assert_eq!(err.rpc().code, 601);
        assert_eq!(
            room.signal(None, &[id("Z")], Some("x"), None, || 0).unwrap_err(),
            Refusal::NoValidRecipient
        );
    }

    #[test]
    fn a_signal_from_somebody_gone_is_refused() {
        let mut room = room_with(&["A"]);
        assert!(matches!(
            room.signal(Some(&id("Z")), &[], Some("x"), None, || 0),
            Err(Refusal::NoLongerJoined(_))
        ));
    }

    #[test]
    fn a_server_signal_needs_an_active_session() {
        let mut room = Room::new("S".into(), props(), 0);
        assert_eq!(room.signal(None, &[], Some("x"), None, || 0).unwrap_err(), Refusal::NotActive);
    }

    #[test]
    fn sequence_numbers_increase_along_every_notification() {
        let mut room = room_with(&["A", "B"]);
        let seqs: Vec<u64> = (0..3)
            .flat_map(|_| room.signal(Some(&id("A")), &[], Some("x"), None, || 0).unwrap())
            .filter_map(|e| match e {
                Effect::Notify { note, .. } => {
                    assert!(note.frame().as_str().ends_with(&format!(r#","seq":{}}}"#, note.seq())));
                    Some(note.seq())
                }
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [3, 4, 5], "1 and 2 announced the joins of A and B");
    }

    #[test]
    fn leave_tells_the_others_replies_then_closes_after_the_linger() {
        let mut room = room_with(&["A", "B"]);
        assert_eq!(
            lines(&room.leave(&id("B"))),
            [
                r#"notify all-but con_B participantLeft {"connectionId":"con_B","reason":"disconnect"}"#,
                "reply",
                "leave con_B disconnect Linger"
            ]
        );
        assert!(!room.is_closed());
        room.leave(&id("A"));
        assert!(room.is_closed(), "the last participant leaving closes the session");
    }

    #[test]
    fn force_disconnect_follows_openvidus_order() {
        let mut room = room_with(&["A", "B", "C"]);
        let effects = room.force_disconnect(&id("A"), &id("B")).unwrap();
        assert_eq!(
            lines(&effects),
            [
                r#"notify all-but con_B participantLeft {"connectionId":"con_B","reason":"forceDisconnectByUser"}"#,
                "reply",
                r#"notify all participantEvicted {"connectionId":"con_B","reason":"forceDisconnectByUser"}"#,
                "leave con_B forceDisconnectByUser Linger",
            ]
        );
        assert!(matches!(room.force_disconnect(&id("C"), &id("A")), Err(Refusal::NotModerator { .. })));
        assert_eq!(room.force_disconnect(&id("A"), &id("B")).unwrap_err(), Refusal::NoParticipant(id("B")));
    }

    #[test]
    fn closing_evicts_one_by_one() {
        let mut room = room_with(&["A", "B"]);
        let effects = room.close(EndReason::SessionClosedByServer, CloseMode::Linger);
        let r = r#""reason":"sessionClosedByServer""#;
        assert_eq!(
            lines(&effects),
            [
                format!(r#"notify all-but con_A participantLeft {{"connectionId":"con_A",{r}}}"#),
                format!(r#"notify all participantEvicted {{"connectionId":"con_A",{r}}}"#),
                "leave con_A sessionClosedByServer Linger".to_owned(),
                format!(r#"notify all-but con_B participantLeft {{"connectionId":"con_B",{r}}}"#),
                format!(r#"notify all participantEvicted {{"connectionId":"con_B",{r}}}"#),
                "leave con_B sessionClosedByServer Linger".to_owned(),
            ]
        );
        assert!(room.is_closed());
        assert!(matches!(room.signal(None, &[], None, None, || 0), Err(Refusal::NoSession(_))));
    }

    #[test]
    fn deleting_a_connection_drops_a_pending_one_and_evicts_a_participant() {
        let mut room = room_with(&["A", "B"]);
        let tok = pending(&mut room, "P", Role::Publisher);
        assert!(room.delete_connection("con_P").unwrap().is_empty());
        assert!(matches!(room.join(joiner(&tok, "P")), Err(Refusal::BadToken { .. })));
        let effects = room.delete_connection("con_B").unwrap();
        assert_eq!(lines(&effects)[2], "leave con_B forceDisconnectByServer Linger");
        assert_eq!(room.delete_connection("con_B").unwrap_err(), Refusal::NoConnection);
    }

    #[test]
    fn a_property_change_is_told_to_its_participant_only() {
        let mut room = room_with(&["A", "B"]);
        let (object, effects) = room.update_connection("con_B", Some(Role::Moderator), Some(true)).unwrap();
        assert_eq!(object.role, Role::Moderator);
        assert_eq!(
            lines(&effects),
            [r#"notify only con_B connectionPropertyChanged {"newValue":"MODERATOR","property":"role"}"#]
        );
        pending(&mut room, "P", Role::Publisher);
        let (_, effects) = room.update_connection("con_P", Some(Role::Subscriber), None).unwrap();
        assert!(effects.is_empty(), "a pending connection has nobody to tell");
    }

    #[test]
    fn a_participant_relocates_to_another_node() {
        let mut room = room_with(&["A", "B"]);
        assert_eq!(room.node_of(&id("B")), Some("n1"));
        assert_eq!(lines(&room.relocate(&id("B"), "n2").unwrap()), ["moved con_B n2"]);
        assert_eq!(room.node_of(&id("B")), Some("n2"));
        assert_eq!(room.relocate(&id("Z"), "n2").unwrap_err(), Refusal::Reconnection);
    }

    #[test]
    fn never_joined_sessions_are_stale_after_the_threshold() {
        let mut room = Room::new("S".into(), props(), 1_000);
        assert!(!room.is_stale(1_500, 1_000));
        assert!(room.is_stale(2_000, 1_000));
        assert!(room.close_if_never_joined());
        let mut joined = room_with(&["A"]);
        assert!(!joined.is_stale(u64::MAX, 0));
        assert!(!joined.close_if_never_joined());
    }

    fn with_history(room: &mut Room, size: usize, ttl_seconds: u64, max_bytes: usize) {
        room.props.signal_history = Some(signalroom_core::history::SignalHistory {
            size,
            ttl_seconds,
            types: vec!["chat".into()],
            max_bytes,
        });
    }

    fn kept(room: &Room, now: u64) -> Vec<String> {
        room.signal_history(now, 0, usize::MAX).into_iter().map(|e| e.data.unwrap_or_default()).collect()
    }

    #[test]
    fn history_keeps_the_last_broadcasts_of_its_types() {
        let mut room = room_with(&["A", "B"]);
        room.signal(Some(&id("A")), &[], Some("before"), Some("signal:chat"), || 1).unwrap();
        assert!(kept(&room, 1).is_empty(), "nothing is kept without a setting");
        with_history(&mut room, 3, 0, 1 << 20);
        for (i, kind) in ["signal:chat", "signal:cursor", "signal:chat", "chat", "signal:chat", "signal:chat"]
            .into_iter()
            .enumerate()
        {
            room.signal(Some(&id("A")), &[], Some(&format!("m{i}")), Some(kind), || 10 + i as u64).unwrap();
        }
        // To chosen participants: never kept. From the server: kept.
        room.signal(Some(&id("A")), &[id("B")], Some("private"), Some("signal:chat"), || 20).unwrap();
        room.signal(None, &[], Some("srv"), Some("signal:chat"), || 21).unwrap();
        assert_eq!(kept(&room, 21), ["m4", "m5", "srv"]);
        let all = room.signal_history(21, 0, usize::MAX);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
        assert_eq!(all[2].from, None);
        assert_eq!(all[0].from, Some(id("A")));
        // `since` and `limit`.
        assert_eq!(room.signal_history(21, all[0].seq, usize::MAX).len(), 2);
        assert_eq!(room.signal_history(21, 0, 1)[0].data.as_deref(), Some("srv"));
        // Refused signals are not kept.
        assert!(room.signal(Some(&id("Z")), &[], Some("no"), Some("signal:chat"), || 22).is_err());
        assert_eq!(kept(&room, 22), ["m4", "m5", "srv"]);
    }

    #[test]
    fn history_is_bounded_in_bytes_and_time() {
        let mut room = room_with(&["A"]);
        // Each entry costs 64 + 100 (data) + 11 (type) + 5 (sender) = 180 bytes.
        with_history(&mut room, 100, 1, 1000);
        let data = "x".repeat(100);
        for i in 0..10 {
            room.signal(Some(&id("A")), &[], Some(&data), Some("signal:chat"), || i).unwrap();
        }
        let entries = room.signal_history(10, 0, usize::MAX);
        assert_eq!(entries.len(), 5, "1000 bytes hold five entries of 180");
        assert!(entries.iter().map(HistoryEntry::cost).sum::<usize>() <= 1000);
        assert_eq!(entries.last().unwrap().created_at, 9);
        // One entry larger than the whole bound is not kept (and does not empty the history).
        room.signal(Some(&id("A")), &[], Some(&"y".repeat(2000)), Some("signal:chat"), || 10).unwrap();
        assert_eq!(room.signal_history(10, 0, usize::MAX).len(), 5);
        // Time: a second's TTL.
        room.signal(Some(&id("A")), &[], Some("late"), Some("signal:chat"), || 1_500).unwrap();
        assert_eq!(kept(&room, 1_500), ["late"], "older than a second at 1.5 s: expired when a signal came");
        assert_eq!(kept(&room, 2_600), Vec::<String>::new(), "expired at reading time too");
        // The history is stored with the room (a shared broker's snapshot) and read back.
        room.signal(Some(&id("A")), &[], Some("again"), Some("signal:chat"), || 2_600).unwrap();
        let back: Room = serde_json::from_str(&serde_json::to_string(&room).unwrap()).unwrap();
        assert_eq!(kept(&back, 2_600), ["again"]);
    }

    #[test]
    fn a_join_answer_carries_the_history_when_asked() {
        let mut room = room_with(&["A"]);
        with_history(&mut room, 10, 0, 1 << 20);
        room.signal(Some(&id("A")), &[], Some("hi"), Some("signal:chat"), || 5).unwrap();
        let tok = pending(&mut room, "B", Role::Publisher);
        let (result, _) = room.join(joiner(&tok, "B")).unwrap();
        let raw = RawValue::from_string("7".into()).unwrap();
        let plain = room.join_answer_json(&raw, &result);
        let with: serde_json::Value =
            serde_json::from_str(&room.history_answer(plain.clone(), &result)).unwrap();
        let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
        assert!(plain["result"].get("signalHistory").is_none());
        assert_eq!(
            with["result"]["signalHistory"],
            json!([{"seq": 2, "createdAt": 5, "from": "con_A", "type": "signal:chat", "data": "hi"}])
        );
        let mut without = with.clone();
        without["result"].as_object_mut().unwrap().remove("signalHistory");
        assert_eq!(without, plain, "the answer is otherwise the same");
    }
}
