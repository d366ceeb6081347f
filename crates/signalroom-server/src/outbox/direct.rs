//! Writes by pushers: a socket's writer asleep on an empty outbox leaves the socket to the
//! tasks that push to it ([`Sink`]), which write small frames at once themselves instead of
//! waking the writer; [`Writes`] holds those writes until a session's lock is released. Who
//! may write at any moment is the outbox's [`Direct`] state, under its lock: the writer, or the
//! one pusher that claimed the socket; never both.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{Order, Out, Outbox, State};

/// Frames up to this many bytes (headers included) may be written by their pusher ([`Sink`]);
/// larger ones are the writer's, which can wait for the socket.
pub(crate) const DIRECT_MAX: usize = 16 * 1024;

/// A socket its pushers may write to while its writer sleeps on an empty outbox.
pub(crate) trait Sink: Send + Sync + std::fmt::Debug {
    /// Writes `out` (frames: [`Out::Note`], [`Out::Reply`] or [`Order::Write`]) as far as the socket takes it
    /// now, without waiting.
    fn write_now(&self, out: &Out) -> Written;
}

/// How much of its frames a [`Sink`] wrote.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Everything.
    All,
    /// A part: these bytes are left.
    Part(Box<[u8]>),
    /// Nothing (the socket's buffer is full, or the socket failed: the writer finds out which).
    Nothing,
}

/// Who may write to the socket of an outbox's writer, besides the writer.
#[derive(Debug, Default)]
pub(super) enum Direct {
    /// Nobody: the writer is awake, or has no [`Sink`].
    #[default]
    Off,
    /// The writer sleeps on an empty queue: the next push may claim its sink.
    Parked,
    /// A pusher writes `out` (claim number `claim`); pushes queue behind it, and the writer waits
    /// for it (`wants`: the writer woke meanwhile, for something else).
    Claimed { claim: u64, out: Out, wants: bool },
}

/// A claimed write: the outbox, the claim, the socket and the frames.
type Claim = (Arc<Outbox>, u64, Arc<dyn Sink>, Out);

/// Writes one operation leaves for later at most ([`Writes`]): the sockets of a larger fan-out
/// past these are written by their writers, which other threads of the runtime can take on
/// meanwhile (one task writing to a thousand sockets would keep them all to one thread).
pub(super) const DEFERRED_MAX: usize = 128;

/// Socket writes that pushes made under a session's lock claimed ([`Outbox::push_later`]), to
/// be made once the lock is released ([`Writes::make`]), so that a fan-out's writes are never
/// made under it.
///
/// Invariants: a claim stops its socket's writer until the write is made, so every claim held
/// here is made, by [`Writes::make`] or, should a `Writes` be dropped without it (an early
/// return, a panic), by its `Drop`; and it holds at most [`DEFERRED_MAX`] claims (pushes past
/// those queue for their writers).
#[derive(Default)]
pub(crate) struct Writes(Vec<Claim>);

impl Writes {
    /// Makes the writes claimed so far (the session's lock is released).
    pub(crate) fn make(&mut self) {
        for (outbox, claim, sink, out) in self.0.drain(..) {
            outbox.write_claimed(claim, &*sink, &out);
        }
    }

    /// Whether one more claim may be left here.
    pub(super) fn has_room(&self) -> bool {
        self.0.len() < DEFERRED_MAX
    }

    /// Leaves the write of `out` to `outbox`'s socket, claimed (claim number `claim`), for later.
    pub(super) fn defer(&mut self, outbox: Arc<Outbox>, claim: u64, sink: Arc<dyn Sink>, out: Out) {
        self.0.push((outbox, claim, sink, out));
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        self.make();
    }
}

impl std::fmt::Debug for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Writes").field(&self.0.len()).finish()
    }
}

impl State {
    /// Claims the socket for `out`, when its writer sleeps on an empty queue and `out` is frames
    /// small enough for a pusher to write ([`Sink`]).
    pub(super) fn claim(&mut self, out: &Out) -> Option<(u64, Arc<dyn Sink>)> {
        if !matches!(self.direct, Direct::Parked) || !self.items.is_empty() || !out.is_direct() {
            return None;
        }
        let sink = Arc::clone(self.sink.as_ref()?);
        self.claims += 1;
        self.direct = Direct::Claimed { claim: self.claims, out: out.clone(), wants: false };
        Some((self.claims, sink))
    }

    /// Whether a pusher is writing to the socket: the writer waits, and is woken once it is done.
    pub(super) fn claimed(&mut self, cx: &Context<'_>) -> bool {
        let Direct::Claimed { wants, .. } = &mut self.direct else { return false };
        *wants = true;
        self.register(cx);
        true
    }

    /// Takes the socket back from the pushers (its writer is gone, or another socket carries the
    /// participant now): a claimed write, perhaps not made, is owed still, first.
    pub(super) fn revoke(&mut self) {
        if let Direct::Claimed { out, .. } = std::mem::take(&mut self.direct) {
            self.bytes += out.bytes();
            self.frames += out.frames();
            self.items.push_front(out);
        }
    }
}

impl Outbox {
    /// Makes a claimed write (claim number `claim`), then gives the socket back: to the writer
    /// if anything queued meanwhile, or the socket did not take all of `out` (the rest goes
    /// first), or the writer woke meanwhile; else to the next push.
    pub(super) fn write_claimed(&self, claim: u64, sink: &dyn Sink, out: &Out) {
        let written = sink.write_now(out);
        let mut st = self.state.lock();
        let st = &mut *st;
        match &st.direct {
            Direct::Claimed { claim: c, .. } if *c == claim => {}
            // Taken back meanwhile ([`State::revoke`]): `out` is in the queue again.
            _ => return,
        }
        let Direct::Claimed { wants, .. } = std::mem::take(&mut st.direct) else { return };
        match written {
            Written::All | Written::Part(_) if st.acking => {
                State::keep(&mut st.kept, &mut st.kept_bytes, out);
                st.trim_kept();
            }
            _ => {}
        }
        match written {
            Written::All => {}
            Written::Part(rest) => {
                st.bytes += rest.len();
                st.frames += 1;
                st.items.push_front(Out::Order(Order::Rest(rest)));
            }
            Written::Nothing => {
                st.bytes += out.bytes();
                st.frames += out.frames();
                st.items.push_front(out.clone());
            }
        }
        if st.items.is_empty() && !wants {
            st.direct = Direct::Parked;
            return;
        }
        if let Some(w) = st.waker.take() {
            w.wake();
        }
    }

    /// The writer of socket `me` woke for something else than its queue (a control frame, the
    /// reader's end, a close due): it takes the socket back from the pushers, once a write one
    /// claimed is done, and what was queued meanwhile into `buf` (the rest of a frame a pusher
    /// wrote in part first).
    pub(crate) async fn reclaim(&self, buf: &mut VecDeque<Out>, me: u64) {
        poll_fn(|cx| {
            let mut st = self.state.lock();
            if st.claimed(cx) {
                return Poll::Pending;
            }
            st.direct = Direct::Off;
            if st.writer == me && !st.items.is_empty() {
                self.drain_into(&mut st, buf);
            }
            Poll::Ready(())
        })
        .await;
    }

    /// Pushers may write to socket `me` ([`Sink`]) while its writer sleeps on this outbox.
    pub(crate) fn give_sink(&self, me: u64, sink: Arc<dyn Sink>) {
        let mut st = self.state.lock();
        if st.writer == me {
            st.sink = Some(sink);
        }
    }

    /// The writer of socket `me` is gone, or drains another outbox now: pushers no longer write
    /// to its socket here (and this outbox no longer holds it open). Returns the socket's
    /// [`Sink`], if it was here.
    pub(crate) fn writer_gone(&self, me: u64) -> Option<Arc<dyn Sink>> {
        let mut st = self.state.lock();
        if st.writer != me {
            return None;
        }
        st.revoke();
        st.sink.take()
    }
}
