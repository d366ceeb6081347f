//! [`LocalBroker`]: every session in this process (one node, the default).

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use indexmap::IndexMap;
use parking_lot::Mutex;
use signalroom_core::{ConnectionId, RpcSessionId, SessionId};

use super::{Applied, Broker, Outcome, deliver};
use crate::outbox::Outbox;
use crate::refusal::Refusal;
use crate::room::Room;

/// One session in this process: its room and the outboxes of its participants, in join order,
/// under one lock. The lock is held for an operation and the pushes of its effects, which never
/// wait; never across an `.await`.
#[derive(Debug)]
struct Cell {
    room: Room,
    roster: IndexMap<ConnectionId, Arc<Outbox>>,
}

/// Everything in this process: a sharded map of sessions, each under its own lock, so busy
/// sessions never contend.
#[derive(Debug)]
pub(crate) struct LocalBroker {
    sessions: DashMap<SessionId, Arc<Mutex<Cell>>>,
    rpc: DashMap<RpcSessionId, (SessionId, ConnectionId)>,
    /// How long a leaving participant's socket may linger ([`CloseMode::Linger`]).
    linger: Duration,
}

impl LocalBroker {
    /// An empty broker; sockets of leaving participants linger `linger` at most.
    pub(crate) fn new(linger: Duration) -> Self {
        Self { sessions: DashMap::new(), rpc: DashMap::new(), linger }
    }

    fn cell(&self, id: &str) -> Option<Arc<Mutex<Cell>>> {
        self.sessions.get(id).map(|c| Arc::clone(&c))
    }
}

impl Broker for LocalBroker {
    async fn create(&self, room: Room) -> Result<(), Refusal> {
        let id = room.id.clone();
        let cell = Arc::new(Mutex::new(Cell { room, roster: IndexMap::new() }));
        match self.sessions.entry(id) {
            dashmap::Entry::Occupied(mut o) => {
                // A session closed a moment ago may still be registered: it is replaced.
                if !o.get().lock().room.is_closed() {
                    return Err(Refusal::SessionExists);
                }
                o.insert(cell);
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(cell);
            }
        }
        Ok(())
    }

    async fn apply<R: Send>(
        &self,
        id: &str,
        caller: Option<&Arc<Outbox>>,
        op: impl FnOnce(&mut Room) -> Result<Outcome<R>, Refusal> + Send,
    ) -> Result<Applied<R>, Refusal> {
        let cell = self.cell(id).ok_or_else(|| Refusal::NoSession(id.to_owned()))?;
        let mut guard = cell.lock();
        if guard.room.is_closed() {
            return Err(Refusal::NoSession(id.to_owned()));
        }
        let Outcome { value, effects, reply } = op(&mut guard.room)?;
        let mut applied = Applied { value, slow: Vec::new(), left: Vec::new(), delivered: 0, closed: false };
        let mut reply = reply;
        let cell_ref = &mut *guard;
        for effect in effects {
            deliver(&mut cell_ref.roster, effect, caller, &mut reply, self.linger, &mut applied);
        }
        applied.closed = cell_ref.room.is_closed();
        let session_id = cell_ref.room.id.clone();
        drop(guard);
        for (who, rpc, _) in &applied.left {
            self.rpc.remove_if(rpc, |_, (s, c)| *s == session_id && c == who);
        }
        if applied.closed {
            self.sessions.remove_if(id, |_, c| Arc::ptr_eq(c, &cell));
        }
        Ok(applied)
    }

    async fn signal(
        &self,
        id: &str,
        from: Option<&ConnectionId>,
        to: &[ConnectionId],
        data: Option<&str>,
        kind: Option<&str>,
        caller: Option<&Arc<Outbox>>,
        reply: Option<crate::outbox::Out>,
    ) -> Result<Applied<()>, Refusal> {
        self.apply(id, caller, |room| Ok(Outcome::new((), room.signal(from, to, data, kind)?, reply))).await
    }

    fn start_signal(
        &self,
        _id: &str,
        _from: &ConnectionId,
        _to: &[ConnectionId],
        _data: Option<&str>,
        _kind: Option<&str>,
        _caller: &Arc<Outbox>,
        _reply: Option<crate::outbox::Out>,
    ) -> Option<super::Ticket> {
        // A signal is applied at once, under the session's lock.
        None
    }

    fn unfence(&self, _id: &str, _from: &ConnectionId) {}

    async fn read<R: Send>(&self, id: &str, f: impl FnOnce(&Room) -> R + Send) -> Option<R> {
        let cell = self.cell(id)?;
        let guard = cell.lock();
        (!guard.room.is_closed()).then(|| f(&guard.room))
    }

    async fn sessions(&self) -> Vec<SessionId> {
        self.sessions.iter().map(|e| e.key().clone()).collect()
    }

    async fn bind_rpc(&self, rpc: RpcSessionId, session: SessionId, who: ConnectionId) {
        self.rpc.insert(rpc, (session, who));
    }

    async fn find_rpc(&self, rpc: &RpcSessionId) -> Option<(SessionId, ConnectionId)> {
        self.rpc.get(rpc).map(|e| e.clone())
    }

    async fn outbox(&self, session: &str, who: &ConnectionId) -> Option<Arc<Outbox>> {
        let cell = self.cell(session)?;
        let guard = cell.lock();
        guard.roster.get(who).cloned()
    }

    async fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn node(&self) -> &str {
        "local"
    }

    async fn adopt(
        &self,
        _session: &str,
        _who: &ConnectionId,
        _outbox: &Arc<Outbox>,
        _last_seq: Option<u64>,
        _reply: Box<dyn FnOnce(crate::outbox::Resumed) -> axum::extract::ws::Utf8Bytes + Send>,
    ) -> Result<crate::outbox::Resumed, Refusal> {
        // Every outbox is in this process: `outbox()` finds it.
        Err(Refusal::Reconnection)
    }

    fn notices(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<super::Notice>> {
        None
    }
}
