//! Requests and replies between participants ([`Session::request`](crate::Session::request),
//! [`Session::handle`](crate::Session::handle)) over ordinary signals: a request is a signal of
//! type `signal:sr.request` to the participant asked, `{"id":"7","method":"ask","payload":"…"}`
//! (`{"id":"7","cancel":true}` when the caller gives up), its reply a `signal:sr.reply` to the
//! caller, `{"id":"7","payload":"…"}` or `{"id":"7","error":{"code":"no-handler","message":"…"}}`:
//! the envelope of signalroom's Python package and browser module (`docs/protocol.md`).
//!
//! The client takes these signals out of the event stream only once the application uses them: a
//! reply when it answers a request of this client, a request once a handler is registered.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Value, json};
use signalroom_core::ConnectionId;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::event::{Connection, SignalEvent};

/// The signal type of a request (on the wire `signal:sr.request`).
pub const REQUEST_TYPE: &str = "sr.request";
/// The signal type of a reply (on the wire `signal:sr.reply`).
pub const REPLY_TYPE: &str = "sr.reply";
pub(crate) const REQUEST_WIRE_TYPE: &str = "signal:sr.request";
pub(crate) const REPLY_WIRE_TYPE: &str = "signal:sr.reply";

/// A request received by a handler ([`Session::handle`](crate::Session::handle)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// The caller's id of this request.
    pub id: String,
    /// The method asked.
    pub method: String,
    /// What the caller sent.
    pub payload: String,
    /// Who asked.
    pub caller: Connection,
}

/// Why a request got no reply ([`Error::Request`](crate::Error::Request)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// No reply within the timeout.
    #[error("no reply in time")]
    Timeout,
    /// The participant asked handles no request of that method.
    #[error("no handler of that method there")]
    NoHandler,
    /// The participant asked left before replying, or is not in the session.
    #[error("the participant left")]
    TargetLeft,
    /// The handler failed (its message says how).
    #[error("its handler failed")]
    HandlerFailed,
    /// The reply did not fit in a signal.
    #[error("the reply was too big")]
    ReplyTooBig,
    /// Another failure the other side named.
    #[error("{0}")]
    Other(String),
}

impl RequestFailure {
    fn from_code(code: &str) -> Self {
        match code {
            "no-handler" => RequestFailure::NoHandler,
            "handler-failed" => RequestFailure::HandlerFailed,
            "reply-too-big" => RequestFailure::ReplyTooBig,
            "target-left" => RequestFailure::TargetLeft,
            "timeout" => RequestFailure::Timeout,
            other => RequestFailure::Other(other.to_owned()),
        }
    }
}

/// What a handler's future gives: the reply, or an error message that reaches the caller.
pub type HandlerResult = std::result::Result<String, String>;
/// A handler's future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;
pub(crate) type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

/// A reply: the payload, or why there is none (with the other side's message).
pub(crate) type ReplyOutcome = std::result::Result<String, (RequestFailure, String)>;

struct Pending {
    target: ConnectionId,
    tx: oneshot::Sender<ReplyOutcome>,
}

/// A session's requests in flight and its handlers (inside the session's state).
#[derive(Default)]
pub(crate) struct Requests {
    next: u64,
    pending: HashMap<String, Pending>,
    pub(crate) handlers: HashMap<String, Handler>,
    serving: HashMap<(ConnectionId, String), AbortHandle>,
}

/// What to do with a request that arrived.
pub(crate) enum Incoming {
    /// Run this handler and reply.
    Serve(Handler, Request),
    /// Reply that nothing handles the method.
    NoHandler { caller: ConnectionId, id: String, method: String },
}

impl Requests {
    /// A new request to `target`: its id and where its reply arrives.
    pub(crate) fn register(&mut self, target: ConnectionId) -> (String, oneshot::Receiver<ReplyOutcome>) {
        self.next += 1;
        let id = format!("r{}", self.next);
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id.clone(), Pending { target, tx });
        (id, rx)
    }

    pub(crate) fn forget(&mut self, id: &str) -> bool {
        self.pending.remove(id).is_some()
    }

    /// A `signal:sr.reply`: taken if it answers a request of this client.
    pub(crate) fn on_reply(&mut self, event: &SignalEvent) -> bool {
        let Ok(reply) = serde_json::from_str::<Value>(&event.data) else { return false };
        let Some(id) = reply.get("id").and_then(Value::as_str) else { return false };
        let Some(pending) = self.pending.get(id) else { return false };
        if event.from_id() != Some(&pending.target) {
            return false;
        }
        let Some(pending) = self.pending.remove(id) else { return false };
        let outcome = match reply.get("error") {
            None => Ok(match reply.get("payload") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            }),
            Some(error) => {
                let code = error.get("code").and_then(Value::as_str).unwrap_or("");
                let message = error.get("message").and_then(Value::as_str).unwrap_or("").to_owned();
                Err((RequestFailure::from_code(code), message))
            }
        };
        let _ = pending.tx.send(outcome);
        true
    }

    /// A `signal:sr.request`: `None` when this client does not serve requests (no handler: the
    /// signal goes to the application as any other), else what to do (nothing for a cancel).
    pub(crate) fn on_request(&mut self, event: &SignalEvent) -> Option<Option<Incoming>> {
        if self.handlers.is_empty() {
            return None;
        }
        let caller = event.from.clone()?;
        let message = serde_json::from_str::<Value>(&event.data).ok()?;
        let id = match message.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Some(None),
        };
        if message.get("cancel").and_then(Value::as_bool) == Some(true) {
            if let Some(task) = self.serving.remove(&(caller.connection_id.clone(), id)) {
                task.abort();
            }
            return Some(None);
        }
        let method = message.get("method").and_then(Value::as_str).unwrap_or("").to_owned();
        let payload = match message.get("payload") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        Some(Some(match self.handlers.get(&method) {
            Some(handler) => Incoming::Serve(Arc::clone(handler), Request { id, method, payload, caller }),
            None => Incoming::NoHandler { caller: caller.connection_id, id, method },
        }))
    }

    pub(crate) fn serving(&mut self, caller: ConnectionId, id: String, task: AbortHandle) {
        self.serving.retain(|_, t| !t.is_finished());
        self.serving.insert((caller, id), task);
    }

    /// `connection` left: its requests fail, the requests it made are no longer served.
    pub(crate) fn left(&mut self, connection: &ConnectionId) {
        let gone: Vec<String> =
            self.pending.iter().filter(|(_, p)| &p.target == connection).map(|(id, _)| id.clone()).collect();
        for id in gone {
            if let Some(p) = self.pending.remove(&id) {
                let _ = p.tx.send(Err((RequestFailure::TargetLeft, "it left the session".into())));
            }
        }
        self.serving.retain(|(caller, _), task| {
            if caller == connection {
                task.abort();
            }
            caller != connection
        });
    }

    /// The session is over: every request in flight fails (its receiver sees the sender dropped).
    pub(crate) fn end(&mut self) {
        self.pending.clear();
        for (_, task) in self.serving.drain() {
            task.abort();
        }
    }
}

/// A reply's `data`.
pub(crate) fn reply_data(id: &str, outcome: &HandlerResult) -> String {
    match outcome {
        Ok(payload) => json!({"id": id, "payload": payload}).to_string(),
        Err(message) => {
            json!({"id": id, "error": {"code": "handler-failed", "message": message}}).to_string()
        }
    }
}

/// An error reply's `data`.
pub(crate) fn error_data(id: &str, code: &str, message: &str) -> String {
    json!({"id": id, "error": {"code": code, "message": message}}).to_string()
}

/// A request's `data`.
pub(crate) fn request_data(id: &str, method: &str, payload: &str) -> String {
    json!({"id": id, "method": method, "payload": payload}).to_string()
}

/// A cancel's `data`.
pub(crate) fn cancel_data(id: &str) -> String {
    json!({"id": id, "cancel": true}).to_string()
}
