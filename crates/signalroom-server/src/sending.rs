//! One socket's signals on their way through the hub, in the order it sent them: the reader
//! hands each over ([`Sending::send`]) and reads the next request meanwhile; the outcomes come
//! back in order ([`Sending::next`], [`Sending::finish`]). What the broker does with a signal
//! (a ticket for one handed over, frames held back to be pushed with the next ones, the signal
//! hook's verdict first) stays here and below: the WebSocket layer sees a signal go in and, for
//! a refused one, its request id and the refusal come out.
//!
//! The fast path lives here: a shared broker numbers a signal in Redis while the socket's next
//! request is read, and the local broker applies it at once and holds its broadcast back so
//! that a burst from one socket reaches each receiver in one push ([`Sending::release`], once
//! the reader has nothing more to read at once).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use serde_json::value::RawValue;
use signalroom_core::signal::SignalMessage;
use signalroom_core::{ConnectionId, SessionId};
use tokio::sync::oneshot;

use crate::broker::{Applied, Signalled, Ticket};
use crate::hub::Hub;
use crate::op::{Listed, SignalOp};
use crate::outbox::Outbox;
use crate::refusal::Refusal;

/// At most this many of a socket's signals are on their way through the broker at once...
const MAX_ON_WAY: usize = 256;
/// ...holding at most this many bytes of data; then the socket is not read until some are done.
const MAX_ON_WAY_BYTES: usize = 1 << 20;

/// At most this many of a socket's frames are held back at once: its reader releases them
/// ([`Sending::release`]) after handing over as many signals in a row.
pub(crate) const MOST_HELD: usize = crate::broker::MAX_HELD;

/// A participant's signal, as its socket's reader hands it over.
pub(crate) struct Outgoing {
    pub session: SessionId,
    pub from: ConnectionId,
    pub message: SignalMessage,
    /// The request's id (`None`: a notification, not answered).
    pub id: Option<Box<RawValue>>,
    /// The reply, queued where the signal's effects say.
    pub reply: Option<Utf8Bytes>,
    /// The bytes of JSON it came in.
    pub bytes: usize,
}

/// A signal handed to the broker, waiting for its outcome.
struct OnWay {
    id: Option<Box<RawValue>>,
    session: SessionId,
    from: ConnectionId,
    /// The signal, for its event; `None`: its ticket emitted it (one through the signal hook).
    message: Option<SignalMessage>,
    bytes: usize,
}

/// The outcome of the oldest signal on its way, for [`Sending::finish`].
pub(crate) struct Outcome(Result<Applied<Listed>, Refusal>);

/// A signal refused after it was handed over: its request's id (`None`: a notification) and why.
pub(crate) type Refused = (Option<Box<RawValue>>, Refusal);

/// One socket's signals on their way (see the module docs).
#[derive(Default)]
pub(crate) struct Sending {
    /// Outcomes of the signals handed over, in order...
    tickets: FuturesOrdered<Ticket>,
    /// ...and what each needs to be finished.
    on_way: VecDeque<OnWay>,
    on_way_bytes: usize,
    /// The last signal that waits for the signal hook (or behind one that does) tells here when
    /// it is handed to the broker: until then, this socket's next signals wait behind it, so
    /// that they are delivered in the order they were sent.
    hooked: Option<oneshot::Receiver<()>>,
    /// A signal the broker has not handed over yet is on its way ([`Signalled::Waiting`]):
    /// nothing more is handed over (or read) until every signal on its way is finished.
    waiting: bool,
    /// The broker holds back frames of this socket's signals: released ([`Sending::release`])
    /// before the reader waits for the client, and before anything else is answered, so that
    /// the client gets its answers in order.
    held: bool,
}

impl Sending {
    /// Whether another signal may be handed over: not too many on their way.
    pub(crate) fn can_take(&self) -> bool {
        !self.waiting && self.on_way.len() < MAX_ON_WAY && self.on_way_bytes < MAX_ON_WAY_BYTES
    }

    /// Whether nothing is on its way.
    pub(crate) fn is_idle(&self) -> bool {
        self.on_way.is_empty()
    }

    /// Whether the broker holds frames of this socket's signals back.
    pub(crate) fn holds(&self) -> bool {
        self.held
    }

    /// The outcome of the oldest signal on its way, once it is there (never, with none on its
    /// way: check [`Sending::is_idle`]).
    pub(crate) async fn next(&mut self) -> Option<Outcome> {
        self.tickets.next().await.map(Outcome)
    }

    /// The outcome of the oldest signal on its way, if it is there now.
    pub(crate) fn next_now(&mut self) -> Option<Outcome> {
        if self.tickets.is_empty() {
            return None;
        }
        self.tickets.next().now_or_never().flatten().map(Outcome)
    }

    /// Pushes what the broker held back of this socket's signals (and of others' operations on
    /// `session`).
    pub(crate) fn release(&mut self, hub: &Arc<Hub>, session: &SessionId) {
        if std::mem::take(&mut self.held) {
            hub.release_now(session);
        }
    }

    /// Finishes the oldest signal on its way with its outcome: its event, or its refusal, for
    /// the reader to answer.
    pub(crate) async fn finish(&mut self, hub: &Hub, outcome: Outcome) -> Option<Refused> {
        let signal = self.on_way.pop_front()?;
        self.on_way_bytes -= signal.bytes;
        self.waiting &= !self.on_way.is_empty();
        match (outcome.0, &signal.message) {
            (Ok(applied), Some(message)) => {
                self.held |= applied.held.is_some();
                hub.signal_done(&signal.session, SignalOp::message(&signal.from, message), applied).await;
                None
            }
            (Ok(applied), None) => {
                // Finished by its ticket (see `Hub::send_after_hook`); its frames may be held
                // back, to be released with the next ones.
                self.held |= applied.held.is_some();
                None
            }
            (Err(refusal), _) => Some((signal.id, refusal)),
        }
    }

    /// Hands `signal` to the broker: finished now (refused now: its id and why), or on its way
    /// (its outcome comes from [`Sending::next`]).
    pub(crate) async fn send(
        &mut self,
        hub: &Arc<Hub>,
        signal: Outgoing,
        caller: &Arc<Outbox>,
    ) -> Result<(), Refused> {
        let hooked = hub.hooked(signal.message.kind.as_deref());
        if hooked || self.behind_hook() {
            self.after_hook(hub, signal, hooked, caller);
            return Ok(());
        }
        let Outgoing { session, from, message, id, reply, bytes } = signal;
        let ticket = match hub.send_signal(&session, SignalOp::message(&from, &message), Some(caller), reply)
        {
            Signalled::Now(outcome) if self.on_way.is_empty() => {
                let applied = outcome.map_err(|refusal| (id, refusal))?;
                self.held |= applied.held.is_some();
                hub.signal_done(&session, SignalOp::message(&from, &message), applied).await;
                return Ok(());
            }
            // Applied, and finished after this socket's signals still on their way: their
            // answers and events come first.
            Signalled::Now(outcome) => Box::pin(std::future::ready(outcome)),
            // On its way: the next request is read meanwhile; the outcome comes in order.
            Signalled::OnWay(ticket) => ticket,
            // Not handed over yet: nothing more is read until it is.
            Signalled::Waiting(ticket) => {
                self.waiting = true;
                ticket
            }
        };
        self.push(ticket, OnWay { id, session, from, message: Some(message), bytes });
        Ok(())
    }

    fn push(&mut self, ticket: Ticket, on_way: OnWay) {
        self.on_way_bytes += on_way.bytes;
        self.tickets.push_back(ticket);
        self.on_way.push_back(on_way);
    }

    /// Whether a signal of this socket still waits for the signal hook, or behind one that does.
    fn behind_hook(&mut self) -> bool {
        let Some(last) = &mut self.hooked else { return false };
        if matches!(last.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            return true;
        }
        self.hooked = None;
        false
    }

    /// A signal on its way through the signal hook (`hooked`), or behind one: the hook is asked at
    /// once (so a slow hook delays a burst by one answer, not one per signal), and the signal is
    /// handed to the broker after the one before it.
    fn after_hook(&mut self, hub: &Arc<Hub>, signal: Outgoing, hooked: bool, caller: &Arc<Outbox>) {
        let before = self.hooked.take();
        let (submitted, next) = oneshot::channel();
        self.hooked = Some(next);
        let Outgoing { session, from, mut message, id, reply, bytes } = signal;
        let (hub, caller) = (Arc::clone(hub), Arc::clone(caller));
        let on_way = OnWay { id, session: session.clone(), from: from.clone(), message: None, bytes };
        let ticket: Ticket = Box::pin(async move {
            let op = SignalOp::message(&from, &message);
            let verdict = if hooked { hub.check_signal(&session, op).await } else { Ok(None) };
            if let Some(before) = before {
                let _ = before.await;
            }
            if let Some(rewrite) = verdict? {
                if let Some(data) = rewrite.data {
                    message.data = Some(data);
                }
                if let Some(to) = rewrite.to {
                    message.to = to;
                }
            }
            let op = SignalOp::message(&from, &message);
            let held = hub.send_after_hook(&session, op, &caller, reply, submitted).await?;
            Ok(Applied { held: held.then_some(0), ..Applied::handled() })
        });
        self.push(ticket, on_way);
    }
}
