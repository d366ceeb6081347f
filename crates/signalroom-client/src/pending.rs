//! Requests in flight: each one registered under its id until its response arrives, its caller
//! gives up, or the link it was written on breaks.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use signalroom_core::EndReason;
use signalroom_core::jsonrpc::Request;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::state::{SessionData, SessionState, Shared};

/// Request params, serialised once, keeping the key order of the struct they come from.
pub(crate) type Params = Box<serde_json::value::RawValue>;

/// Serialises request params.
pub(crate) fn params<T: serde::Serialize>(params: &T) -> Params {
    serde_json::value::to_raw_value(params).expect("request params serialise")
}

/// The answer to a request: the `result`, or why there is none.
pub(crate) type Reply = Result<Value>;

/// What the reader must do, besides answering the caller, when a response arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingKind {
    /// Nothing.
    Plain,
    /// `joinRoom`: install the local connection and the roster, emit `connectionCreated`s.
    JoinRoom,
    /// `connect` (reconnection): emit `reconnected`.
    Reconnect,
}

pub(crate) struct Pending {
    pub(crate) method: &'static str,
    pub(crate) kind: PendingKind,
    pub(crate) tx: oneshot::Sender<Reply>,
    /// The link the request was written on; `None` while queued.
    pub(crate) sent_on: Option<u64>,
}

/// A frame waiting for the writer.
pub(crate) struct Outgoing {
    pub(crate) id: u64,
    pub(crate) text: String,
}

impl Shared {
    /// Registers a request and returns its frame; `None` params are omitted from the frame.
    pub(crate) fn register(
        &self,
        state: &mut SessionData,
        method: &'static str,
        params: Option<Params>,
        kind: PendingKind,
    ) -> (Outgoing, oneshot::Receiver<Reply>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let text = serde_json::to_string(&Request::new(id, method, params)).expect("requests serialise");
        let (tx, rx) = oneshot::channel();
        state.pending.insert(id, Pending { method, kind, tx, sent_on: None });
        (Outgoing { id, text }, rx)
    }

    /// Forgets a request whose caller gave up; a late response is then ignored, and a request
    /// not yet written is not written.
    pub(crate) fn forget(&self, id: u64) {
        self.state.lock().pending.remove(&id);
    }

    /// Sends an application request, queued behind earlier ones and held while reconnecting;
    /// resolves with its result. Cancel-safe: dropping the future forgets the request.
    pub(crate) async fn call(&self, method: &'static str, params: Option<Params>) -> Result<Value> {
        let (id, rx) = self.enqueue(method, params)?;
        self.reply_to(method, id, rx).await
    }

    /// Registers a request and queues it for the writer now: requests go out in the order of
    /// these calls, whenever their futures are first polled.
    pub(crate) fn enqueue(
        &self,
        method: &'static str,
        params: Option<Params>,
    ) -> Result<(u64, oneshot::Receiver<Reply>)> {
        let mut state = self.state.lock();
        if let SessionState::Disconnected(reason) = &state.phase {
            return Err(Error::Disconnected { reason: reason.clone() });
        }
        let (out, rx) = self.register(&mut state, method, params, PendingKind::Plain);
        let id = out.id;
        if self.user_tx.send(out).is_err() {
            state.pending.remove(&id);
            return Err(Error::Disconnected { reason: EndReason::NetworkDisconnect });
        }
        Ok((id, rx))
    }

    /// Waits for the reply to an [`enqueue`](Self::enqueue)d request; dropping this future
    /// forgets the request (unwritten, it is never sent).
    pub(crate) async fn reply_to(
        &self,
        method: &'static str,
        id: u64,
        rx: oneshot::Receiver<Reply>,
    ) -> Result<Value> {
        let guard = ForgetOnDrop { shared: self, id };
        let reply = self.wait(method, rx, self.opts.request_timeout).await;
        drop(guard);
        reply
    }

    /// Waits for a reply; on timeout the caller must [`forget`](Self::forget) the request.
    pub(crate) async fn wait(
        &self,
        method: &'static str,
        rx: oneshot::Receiver<Reply>,
        timeout: Duration,
    ) -> Result<Value> {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(Error::Timeout { method, timeout_ms: timeout.as_millis() as u64 }),
        }
    }

    pub(crate) fn closed_error(&self) -> Error {
        match &self.state.lock().phase {
            SessionState::Disconnected(reason) => Error::Disconnected { reason: reason.clone() },
            _ => Error::Disconnected { reason: EndReason::NetworkDisconnect },
        }
    }

    /// Marks a request as written on `link`; `false` if its caller gave up (don't write it).
    pub(crate) fn mark_sent(&self, id: u64, link: u64) -> bool {
        match self.state.lock().pending.get_mut(&id) {
            Some(p) => {
                p.sent_on = Some(link);
                true
            }
            None => false,
        }
    }

    /// Fails every request written on `link`, which broke before they were answered.
    pub(crate) fn fail_sent_on(&self, link: u64) {
        let mut state = self.state.lock();
        let lost: Vec<u64> =
            state.pending.iter().filter(|(_, p)| p.sent_on == Some(link)).map(|(id, _)| *id).collect();
        for id in lost {
            if let Some(p) = state.pending.remove(&id) {
                let _ = p.tx.send(Err(Error::ConnectionLost { method: p.method }));
            }
        }
    }
}

struct ForgetOnDrop<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.shared.forget(self.id);
    }
}
