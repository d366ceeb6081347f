//! Writes by pushers: a socket's writer asleep on an empty outbox leaves the socket to the
//! tasks that push to it ([`Sink`]), which write small frames at once themselves instead of
//! waking the writer; [`Deferring`] leaves those writes until a session's lock is released. Who
//! may write at any moment is the outbox's [`Direct`] state, under its lock: the writer, or the
//! one pusher that claimed the socket; never both.

use std::cell::RefCell;
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

thread_local! {
    /// The writes that pushes claimed while a [`Deferring`] lives on this thread.
    static DEFERRED: RefCell<Deferred> = const { RefCell::new(Deferred { depth: 0, writes: Vec::new() }) };
}

/// A claimed write: the outbox, the claim, the socket and the frames.
pub(super) type Claim = (Arc<Outbox>, u64, Arc<dyn Sink>, Out);

pub(super) struct Deferred {
    depth: u32,
    writes: Vec<Claim>,
}

/// Writes one operation leaves to its own task at most ([`Deferring`]): the sockets of a larger
/// fan-out past these are written by their writers, which other threads of the runtime can take
/// on meanwhile (one task writing to a thousand sockets would keep them all to one thread).
pub(super) const DEFERRED_MAX: usize = 128;

/// While one lives (on this thread), a push that claims a socket ([`Sink`]) leaves the write until
/// the last is dropped: a session's lock is taken after one is made and released before it is
/// dropped, so that a fan-out's writes are not made under the lock. It must not live across an
/// `.await`. At most [`DEFERRED_MAX`] writes are claimed meanwhile.
#[must_use]
pub(crate) struct Deferring(());

impl Deferring {
    pub(crate) fn begin() -> Self {
        DEFERRED.with_borrow_mut(|d| d.depth += 1);
        Deferring(())
    }
}

impl Drop for Deferring {
    fn drop(&mut self) {
        let mut writes = DEFERRED.with_borrow_mut(|d| {
            d.depth -= 1;
            if d.depth == 0 { std::mem::take(&mut d.writes) } else { Vec::new() }
        });
        if writes.is_empty() {
            return;
        }
        for (outbox, claim, sink, out) in writes.drain(..) {
            outbox.write_claimed(claim, &*sink, &out);
        }
        // The list's room is kept for the next fan-out of this thread.
        DEFERRED.with_borrow_mut(|d| {
            if d.writes.capacity() < writes.capacity() && d.writes.is_empty() {
                d.writes = writes;
            }
        });
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

impl Outbox {
    /// Makes a write claimed by a push (see [`Outbox::push`]): now, or, while a [`Deferring`]
    /// lives on this thread, when the last one is dropped.
    pub(super) fn write_or_defer(self: &Arc<Self>, claim: u64, sink: Arc<dyn Sink>, out: Out) {
        let now = DEFERRED.with_borrow_mut(|d| {
            if d.depth == 0 {
                return Some(out);
            }
            d.writes.push((Arc::clone(self), claim, Arc::clone(&sink), out));
            None
        });
        if let Some(out) = now {
            self.write_claimed(claim, &*sink, &out);
        }
    }
}

/// Whether a push may claim a socket now: no [`Deferring`] lives on this thread, or fewer than
/// [`DEFERRED_MAX`] writes are deferred.
pub(super) fn may_claim() -> bool {
    DEFERRED.with_borrow(|d| d.depth == 0 || d.writes.len() < DEFERRED_MAX)
}
