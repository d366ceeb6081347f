//! Every operation on a session as data: what the hub asks of a [`Room`], with everything the
//! room does not draw itself (identifiers, the clock, the node) inside.
//!
//! An operation run on equal rooms gives equal effects and leaves equal rooms: a room is a state
//! machine whose inputs are these operations. A shared broker relies on it: it orders a session's
//! operations in Redis, and every node that follows the session runs each of them on its own copy
//! of the room (its replica), so no node ever writes or reads the whole room to apply one.

use serde::{Deserialize, Serialize};
use signalroom_core::protocol::JoinRoomResult;
use signalroom_core::rest::{ConnectionObject, ConnectionProperties};
use signalroom_core::signal::SignalMessage;
use signalroom_core::{ConnectionId, EndReason, Role};

use crate::refusal::Refusal;
use crate::room::{CloseMode, Effects, Joiner, Minted, Room};

/// One operation on a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Op {
    /// A pending Connection (REST).
    CreateConnection { minted: Minted, props: ConnectionProperties, now: u64 },
    /// A Connection's role and record (REST).
    UpdateConnection { id: String, role: Option<Role>, record: Option<bool> },
    /// A pending Connection dropped, or its participant evicted (REST).
    DeleteConnection { id: String },
    /// `joinRoom`.
    Join(Joiner),
    /// A signal from a participant, or from the server (`from: None`), sent at `at` (ms; for
    /// the session's history).
    Signal {
        from: Option<ConnectionId>,
        to: Vec<ConnectionId>,
        data: Option<String>,
        kind: Option<String>,
        #[serde(default)]
        at: u64,
        /// A broadcast's recipients are listed in its value ([`Value::Listed`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        listed: bool,
    },
    /// `leaveRoom`.
    Leave { who: ConnectionId },
    /// RPC `forceDisconnect` by a moderator.
    ForceDisconnect { by: ConnectionId, target: ConnectionId },
    /// Participants evicted one by one (too slow receivers).
    Evict { who: Vec<(ConnectionId, EndReason)>, close: CloseMode },
    /// Every participant whose socket `node` holds, evicted (that node stops).
    EvictNode { node: String, reason: EndReason },
    /// `who` evicted with `networkDisconnect`, if its socket is still held by `node` (it did not
    /// come back, or not elsewhere).
    EvictLost { who: ConnectionId, node: String },
    /// The session closed, every participant evicted with `reason` (REST delete).
    Close { reason: EndReason, close: CloseMode },
    /// The session closed if nobody ever joined it and it is at least `threshold` ms old.
    CollectIfStale { now: u64, threshold: u64 },
    /// A reconnection of `who` landed on `node`: its socket is held there from now on.
    Relocate { who: ConnectionId, node: String },
}

/// A signal on its way through the hub and the broker, borrowed from the request that carries
/// it: from a participant (`sendMessage`) or from the server (`from: None`, REST), to chosen
/// participants or to everyone (`to` empty), with its data and type as given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignalOp<'a> {
    pub from: Option<&'a ConnectionId>,
    pub to: &'a [ConnectionId],
    pub data: Option<&'a str>,
    pub kind: Option<&'a str>,
    /// A broadcast lists who it went to ([`Listed`]): asked only when its event is wanted.
    pub listed: bool,
}

/// Everyone in the session when a broadcast was applied (what it went to, on every node); empty
/// for a signal to chosen participants, or when not asked for ([`SignalOp::listed`]).
pub(crate) type Listed = Vec<ConnectionId>;

impl<'a> SignalOp<'a> {
    /// A participant's `sendMessage`.
    pub(crate) fn message(from: &'a ConnectionId, message: &'a SignalMessage) -> Self {
        Self {
            from: Some(from),
            to: &message.to,
            data: message.data.as_deref(),
            kind: message.kind.as_deref(),
            listed: false,
        }
    }

    /// Runs on `room`, sent at `at()` (ms): see [`Room::signal`].
    pub(crate) fn run(self, room: &mut Room, at: impl FnOnce() -> u64) -> Result<(Listed, Effects), Refusal> {
        let effects = room.signal(self.from, self.to, self.data, self.kind, at)?;
        let listed = if self.listed && self.to.is_empty() {
            room.participants().map(|(id, _, _)| id.clone()).collect()
        } else {
            Listed::new()
        };
        Ok((listed, effects))
    }

    /// As an operation a shared broker orders and every replica runs.
    pub(crate) fn to_op(self, at: u64) -> Op {
        Op::Signal {
            from: self.from.cloned(),
            to: self.to.to_vec(),
            data: self.data.map(str::to_owned),
            kind: self.kind.map(str::to_owned),
            at,
            listed: self.listed,
        }
    }
}

/// What an operation gives its caller.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// Nothing but its effects.
    Done,
    /// The Connection created or changed.
    Connection(Box<ConnectionObject>),
    /// The join made (its `value` left empty: see [`Room::join`]).
    Joined(Box<JoinRoomResult>),
    /// Whether a stale session was collected.
    Collected(bool),
    /// Who a broadcast went to ([`Op::Signal`] with `listed`).
    Listed(Listed),
}

impl Op {
    /// Runs the operation on `room`: its value and its effects, or why it is refused.
    pub(crate) fn run(self, room: &mut Room) -> Result<(Value, Effects), Refusal> {
        Ok(match self {
            Op::CreateConnection { minted, props, now } => {
                (Value::Connection(Box::new(room.create_connection(minted, props, now)?)), Vec::new())
            }
            Op::UpdateConnection { id, role, record } => {
                let (object, effects) = room.update_connection(&id, role, record)?;
                (Value::Connection(Box::new(object)), effects)
            }
            Op::DeleteConnection { id } => (Value::Done, room.delete_connection(&id)?),
            Op::Join(joiner) => {
                let (result, effects) = room.join(joiner)?;
                (Value::Joined(Box::new(result)), effects)
            }
            Op::Signal { from, to, data, kind, at, listed } => {
                let signal = SignalOp {
                    from: from.as_ref(),
                    to: &to,
                    data: data.as_deref(),
                    kind: kind.as_deref(),
                    listed,
                };
                let (everyone, effects) = signal.run(room, || at)?;
                (if listed { Value::Listed(everyone) } else { Value::Done }, effects)
            }
            Op::Leave { who } => (Value::Done, room.leave(&who)),
            Op::ForceDisconnect { by, target } => (Value::Done, room.force_disconnect(&by, &target)?),
            Op::Evict { who, close } => (Value::Done, room.evict(who, close, false)),
            Op::EvictNode { node, reason } => {
                let mine: Vec<_> = room
                    .participants()
                    .filter(|(_, _, m)| m.node == node)
                    .map(|(who, _, _)| (who.clone(), reason.clone()))
                    .collect();
                (Value::Done, room.evict(mine, CloseMode::Now, false))
            }
            Op::EvictLost { who, node } => {
                if room.node_of(&who) != Some(node.as_str()) {
                    return Ok((Value::Done, Vec::new()));
                }
                (Value::Done, room.evict(vec![(who, EndReason::NetworkDisconnect)], CloseMode::Now, false))
            }
            Op::Close { reason, close } => (Value::Done, room.close(reason, close)),
            Op::CollectIfStale { now, threshold } => {
                (Value::Collected(room.is_stale(now, threshold) && room.close_if_never_joined()), Vec::new())
            }
            Op::Relocate { who, node } => (Value::Done, room.relocate(&who, &node)?),
        })
    }
}

impl Value {
    /// The Connection of [`Op::CreateConnection`] and [`Op::UpdateConnection`].
    pub(crate) fn connection(self) -> Result<ConnectionObject, Refusal> {
        match self {
            Value::Connection(object) => Ok(*object),
            other => Err(Refusal::BrokerDown(format!("expected a connection, got {other:?}"))),
        }
    }

    /// The join of [`Op::Join`].
    pub(crate) fn joined(self) -> Result<JoinRoomResult, Refusal> {
        match self {
            Value::Joined(result) => Ok(*result),
            other => Err(Refusal::BrokerDown(format!("expected a join, got {other:?}"))),
        }
    }

    /// Who a broadcast went to ([`Op::Signal`]; empty unless it was asked to list them).
    pub(crate) fn listed(self) -> Listed {
        match self {
            Value::Listed(everyone) => everyone,
            _ => Listed::new(),
        }
    }

    /// Whether [`Op::CollectIfStale`] collected the session.
    pub(crate) fn collected(&self) -> bool {
        matches!(self, Value::Collected(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::tests::props;

    /// An operation read back from its JSON runs to the same effects and the same room: what a
    /// replica of a shared broker relies on.
    #[test]
    fn an_operation_read_back_runs_the_same() {
        let minted =
            Minted { id: "con_A".into(), token_id: "tok_A".into(), token: "ws://h?token=tok_A".into() };
        let joiner = Joiner {
            token_id: Some("tok_A".into()),
            token: "tok_A".into(),
            with_secret: None,
            client_data: "{\"n\":\"a\\\"b\"}".into(),
            platform: "test".into(),
            ip: "127.0.0.1".into(),
            rpc_id: "rpc_A".into(),
            node: "n1".into(),
            final_user_id: "F".into(),
            now: 10,
        };
        let ops = vec![
            Op::CreateConnection { minted, props: ConnectionProperties::default(), now: 1 },
            Op::Join(joiner),
            Op::Signal {
                from: Some("con_A".into()),
                to: vec![],
                data: Some("hé\n\"x\"".into()),
                kind: None,
                at: 5,
                listed: true,
            },
            Op::UpdateConnection { id: "con_A".into(), role: Some(Role::Moderator), record: None },
            Op::EvictLost { who: "con_A".into(), node: "elsewhere".into() },
            Op::Leave { who: "con_A".into() },
        ];
        let (mut direct, mut replayed) =
            (Room::new("S".into(), props(), 0), Room::new("S".into(), props(), 0));
        for op in ops {
            let text = serde_json::to_string(&op).unwrap();
            let back: Op = serde_json::from_str(&text).unwrap();
            let a = op.run(&mut direct).map(|(v, e)| (v, format!("{e:?}")));
            let b = back.run(&mut replayed).map(|(v, e)| (v, format!("{e:?}")));
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text}");
        }
        assert!(direct.is_closed() && replayed.is_closed());
    }
}
