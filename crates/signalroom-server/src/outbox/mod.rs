//! A participant's outbox: what is on its way to it, and what it may still need after a
//! reconnection.
//!
//! An outbox belongs to a participant, not to a socket. A socket's writer task drains the outbox
//! it is attached to; when the socket dies the outbox stays with the participant for the
//! reconnection grace window, and the reconnecting socket's writer takes it over. Each
//! notification carries its sequence number; once a client shows it acknowledges them (`lastSeq`
//! in a ping or in `connect`), written notifications are kept until acknowledged, so a resume
//! can replay them. Everything is bounded in frames and in bytes:
//! - queued and not yet written: a participant whose socket is attached and which falls further
//!   behind is too slow ([`Outbox::push`] says so, and the hub evicts it); while no socket is
//!   attached, the oldest notifications are dropped instead, and a resume reports the loss;
//! - written and kept: the oldest are forgotten, and a resume from before them reports the loss.
//!
//! Made for fan-out: a push is a short uncontended lock and a `VecDeque::push_back`, and only
//! the push that finds the writer asleep wakes it; the writer takes everything queued in one
//! lock. (tokio's bounded mpsc costs a semaphore permit and a waker call per frame.)
//!
//! A writer asleep on an empty outbox may leave its socket to the pushers ([`Sink`]): a frame
//! pushed then is written by the pushing task itself, at once, without waking the writer (at a
//! steady load most pushes find the writer asleep, and a wake-up costs as much of the server's
//! time as the write). The pusher claims the socket under the outbox's lock; what is pushed
//! meanwhile queues behind its frame, and the writer takes over again if the socket does not take
//! the whole frame.
//!
//! What is queued ([`Out`], [`Framed`], [`Order`]) is in `out`; the writes by pushers
//! ([`Sink`], [`Writes`]) in `direct`; the queue itself, bounded and resumable, here.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use tokio::task::AbortHandle;

mod direct;
mod out;

use self::direct::Direct;
pub(crate) use self::direct::{DIRECT_MAX, Sink, Writes, Written};
pub(crate) use self::out::{Framed, Note, Order, Out, one_by_one};

/// A queue that grew past this many slots is shrunk back once drained.
const SHRINK_ABOVE: usize = 1024;

/// Slots an idle writer keeps in its two queues (the outbox's and its own batch); larger ones
/// are released ([`Outbox::release_idle`]). A burst (the joins of a filling session) grows them,
/// and an idle participant should not hold that memory (2 KiB of 13 per participant, in rooms of
/// 100).
pub(crate) const IDLE_SLOTS: usize = 8;

/// Frees an empty queue's room if it holds more than `slots`.
fn release_above(queue: &mut VecDeque<Out>, slots: usize) {
    if queue.is_empty() && queue.capacity() > slots {
        *queue = VecDeque::new();
    }
}

/// How much an outbox holds, in each of its two parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub frames: usize,
    pub bytes: usize,
}

/// What a writer's [`Outbox::take`] found.
#[derive(Debug)]
pub(crate) enum Take {
    /// Items were moved to the writer's buffer.
    Items,
    /// Another socket (or none) carries the participant now: this writer is done.
    Detached,
    /// Drained, and the socket's participant lives in this outbox now (a reconnection).
    Redirect(Arc<Outbox>),
}

/// The outcome of a resume, for the `connect` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resumed {
    /// Whether everything after the client's `lastSeq` is replayed; `None` when the client gave
    /// none (openvidu-browser): it gets what was queued and not yet written.
    pub recovered: Option<bool>,
    /// Notifications replayed ahead of the live ones.
    pub replayed: u64,
}

/// One participant's outbox (or, before it joins, one socket's).
///
/// Laid out for fan-out, which touches thousands of these, rarely in cache: what a push writes
/// (lock, queue, waker, size) fills one cache line, and what a push or a writer's wake-up reads
/// (writer, limits, redirect, acking) the next, in one 128-byte block, which processors fetch
/// together; what only resumes use comes after.
#[derive(Debug)]
#[repr(C, align(128))]
pub(crate) struct Outbox {
    state: Mutex<State>,
}

#[derive(Debug)]
#[repr(C)]
struct State {
    // What a push writes, in the cache line of the lock:
    /// Queued, not yet written.
    items: VecDeque<Out>,
    /// The writer's waker, set while it waits on an empty outbox.
    waker: Option<Waker>,
    /// Bytes of frames in `items`.
    bytes: usize,
    // What a push or the writer only reads, in the next line:
    /// The socket whose writer drains this outbox; 0 while none does.
    writer: u64,
    /// Frames in `items` (an item may hold several: [`Order::Write`]).
    frames: usize,
    limits: Limits,
    /// Where the writer goes once this outbox is drained.
    redirect: Option<Arc<Outbox>>,
    /// The client acknowledges notifications: keep written ones.
    acking: bool,
    /// How many items the writer took last time.
    taken: u32,
    /// Whether a pusher may write to the socket ([`Sink`]).
    direct: Direct,
    /// The socket of this outbox's writer, for pushers to write to while it sleeps (given by
    /// the writer of `writer`; taken back when another socket or none drains the outbox).
    sink: Option<Arc<dyn Sink>>,
    /// Claims of the socket so far.
    claims: u64,
    // The rest, for resumes:
    /// Written, kept until acknowledged (only for clients that acknowledge).
    kept: VecDeque<Note>,
    kept_bytes: usize,
    /// The highest sequence number dropped before it was acknowledged (0: none).
    lost_upto: u64,
    /// Resumes so far: a grace timer started before one has nothing to do.
    epoch: u64,
    /// Aborts the writer: for a socket too far behind to take a close order.
    abort: Option<AbortHandle>,
}

impl State {
    /// Keeps the writer's waker, for a push, a redirect or the end of a claimed write to wake.
    fn register(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }

    /// Notifications taken for writing: kept for a resume while the client acknowledges them.
    fn keep(kept: &mut VecDeque<Note>, kept_bytes: &mut usize, out: &Out) {
        for note in out.notes() {
            *kept_bytes += note.len();
            kept.push_back(note.clone());
        }
    }

    /// Forgets the oldest kept notifications past the limits.
    fn trim_kept(&mut self) {
        while self.kept.len() > self.limits.frames || self.kept_bytes > self.limits.bytes {
            let Some(note) = self.kept.pop_front() else { break };
            self.kept_bytes -= note.len();
            self.lost_upto = self.lost_upto.max(note.seq());
        }
    }

    /// Whether `frames` more frames of `size` bytes would overflow the queue (an order counts
    /// as a frame: a full queue takes none).
    fn is_full(&self, frames: usize, size: usize) -> bool {
        self.frames + frames.max(1) > self.limits.frames || self.bytes + size > self.limits.bytes
    }

    /// Queues `out` as [`Outbox::push`] does: `Err(out)` when a socket is attached and the queue
    /// is full. With none attached, the oldest notifications make room, and anything but a
    /// notification is dropped (it was for a socket that is gone).
    fn queue(&mut self, out: Out) -> Result<(), Out> {
        let (size, frames) = (out.bytes(), out.frames());
        if self.writer != 0 {
            if self.is_full(frames, size) {
                return Err(out);
            }
        } else {
            if let Out::Order(Order::Write(..)) = out {
                // One by one: the oldest make room for the newest.
                for one in one_by_one([out]) {
                    let _ = self.queue(one);
                }
                return Ok(());
            }
            if out.note().is_none() {
                return Ok(());
            }
            self.make_room(size);
        }
        self.bytes += size;
        self.frames += frames;
        self.items.push_back(out);
        Ok(())
    }

    /// With no socket attached: drops the oldest queued items until one more frame of `size`
    /// bytes fits, noting the highest notification lost.
    fn make_room(&mut self, size: usize) {
        while !self.items.is_empty() && self.is_full(1, size) {
            if let Some(old) = self.items.pop_front() {
                self.bytes -= old.bytes();
                self.frames -= old.frames();
                if let Some(note) = old.last_note() {
                    self.lost_upto = self.lost_upto.max(note.seq());
                }
            }
        }
    }
}

impl Outbox {
    /// An empty outbox drained by the writer of socket `writer`.
    pub(crate) fn new(limits: Limits, writer: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                limits: Limits { frames: limits.frames.max(1), bytes: limits.bytes.max(1) },
                kept: VecDeque::new(),
                kept_bytes: 0,
                acking: false,
                taken: 0,
                lost_upto: 0,
                writer,
                frames: 0,
                redirect: None,
                waker: None,
                epoch: 0,
                abort: None,
                direct: Direct::Off,
                sink: None,
                claims: 0,
            }),
        })
    }

    /// The slots the queue holds room for (for tests of the writer's release).
    #[cfg(test)]
    pub(crate) fn queue_capacity(&self) -> usize {
        self.state.lock().items.capacity()
    }

    /// How many items are queued, not yet written (for the metrics, at scrape time).
    pub(crate) fn depth(&self) -> usize {
        self.state.lock().items.len()
    }

    /// Queues `out`. Never waits. `false`: a socket is attached and the outbox is full, the
    /// receiver is too slow (nothing was queued). With no socket attached, the oldest
    /// notification makes room instead, and replies and socket orders are dropped (they were
    /// for a socket that is gone).
    ///
    /// A push that finds the writer asleep on an empty queue writes the frames itself ([`Sink`]),
    /// at once. (Under a session's lock, [`Outbox::push_later`] instead.)
    pub(crate) fn push(self: &Arc<Self>, out: Out) -> bool {
        self.push_with(out, None)
    }

    /// Queues `out` as [`Outbox::push`] does, but a write the push claims is left in `writes`, to
    /// be made once the caller's session lock is released.
    pub(crate) fn push_later(self: &Arc<Self>, out: Out, writes: &mut Writes) -> bool {
        self.push_with(out, Some(writes))
    }

    fn push_with(self: &Arc<Self>, out: Out, writes: Option<&mut Writes>) -> bool {
        let may_claim = writes.as_ref().is_none_or(|w| w.has_room());
        let mut st = self.state.lock();
        if let Some((claim, sink)) = if may_claim { st.claim(&out) } else { None } {
            drop(st);
            match writes {
                Some(writes) => writes.defer(Arc::clone(self), claim, sink, out),
                None => self.write_claimed(claim, &*sink, &out),
            }
            return true;
        }
        if let Err(out) = st.queue(out) {
            return self.refuse(&st, &out);
        }
        // (Behind a pusher's write, the pusher wakes the writer once it is done.)
        let waker = if matches!(st.direct, Direct::Claimed { .. }) { None } else { st.waker.take() };
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Queues frames, in order, as [`Outbox::push`] would one by one, under one lock and with
    /// one wake-up: what several operations pushed to one receiver (see the local broker's held
    /// frames). `false`: a socket is attached and the outbox filled up, the receiver is too slow
    /// (what did not fit was not queued).
    pub(crate) fn push_frames<'a>(&self, frames: impl Iterator<Item = &'a Out>) -> bool {
        let mut frames = frames.peekable();
        if frames.peek().is_none() {
            return true;
        }
        let mut st = self.state.lock();
        let all = frames.into_iter().all(|out| st.queue(out.clone()).is_ok());
        let waker = if matches!(st.direct, Direct::Claimed { .. }) { None } else { st.waker.take() };
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        all
    }

    /// Queues the notifications of `framed` from index `from` on, as [`Outbox::push_frames`]
    /// would queue them (under a session's lock: a write claimed is left in `writes`).
    pub(crate) fn push_framed(
        self: &Arc<Self>,
        framed: &Arc<Framed>,
        from: u32,
        writes: &mut Writes,
    ) -> bool {
        if from as usize >= framed.len() {
            return true;
        }
        self.push_later(Out::Order(Order::Write(Arc::clone(framed), from)), writes)
    }

    /// A full outbox refuses `out` (the receiver is too slow). A close order it cannot take means
    /// the writer is stuck behind a client that does not read: the socket is dropped.
    #[cold]
    fn refuse(&self, st: &State, out: &Out) -> bool {
        if out.is_order() {
            tracing::debug!(socket = st.writer, "too far behind to be closed politely: dropped");
            if let Some(abort) = &st.abort {
                abort.abort();
            }
        }
        false
    }

    /// Moves everything queued to the back of `buf`, waiting while there is nothing, for the
    /// writer of socket `me`. Notifications are kept for a resume if the client acknowledges.
    /// Cancel-safe.
    pub(crate) async fn take(&self, buf: &mut VecDeque<Out>, me: u64) -> Take {
        poll_fn(|cx| {
            let mut st = self.state.lock();
            if st.claimed(cx) {
                return Poll::Pending;
            }
            st.direct = Direct::Off;
            if st.writer != me {
                return Poll::Ready(Take::Detached);
            }
            if !st.items.is_empty() {
                self.drain_into(&mut st, buf);
                return Poll::Ready(Take::Items);
            }
            if let Some(next) = st.redirect.take() {
                return Poll::Ready(Take::Redirect(next));
            }
            // Going to sleep after a batch far smaller than the queues: the burst that grew them
            // is over, and they are released now. (Queues that fit the batches are kept until
            // the writer has been idle a while: see [`Outbox::release_idle`].)
            let keep = IDLE_SLOTS.max(4 * st.taken as usize);
            release_above(&mut st.items, keep);
            release_above(buf, keep);
            st.register(cx);
            // Asleep on an empty queue: the next push may write to the socket itself.
            if st.sink.is_some() {
                st.direct = Direct::Parked;
            }
            Poll::Pending
        })
        .await
    }

    /// The writer of socket `me` has been idle a while: it releases what a burst made its queues
    /// grow to, the outbox's (if empty) and `buf` (if empty). Not at every sleep: a writer keeping
    /// up with a fan-out sleeps between most batches, and its queues would grow again from empty
    /// each time (a reallocation and a copy per doubling, for every receiver).
    pub(crate) fn release_idle(&self, buf: &mut VecDeque<Out>, me: u64) {
        release_above(buf, IDLE_SLOTS);
        let mut st = self.state.lock();
        if st.writer == me {
            release_above(&mut st.items, IDLE_SLOTS);
        }
    }

    /// What is queued now, for a writer finishing up; nothing if `me` no longer drains it.
    pub(crate) fn take_now(&self, buf: &mut VecDeque<Out>, me: u64) {
        let mut st = self.state.lock();
        if st.writer == me && !st.items.is_empty() {
            self.drain_into(&mut st, buf);
        }
    }

    /// Moves the queued items to `buf`, keeping notifications for a resume if the client
    /// acknowledges them.
    fn drain_into(&self, st: &mut State, buf: &mut VecDeque<Out>) {
        st.taken = u32::try_from(st.items.len()).unwrap_or(u32::MAX);
        if st.acking {
            for out in &st.items {
                State::keep(&mut st.kept, &mut st.kept_bytes, out);
            }
            st.trim_kept();
        }
        if buf.is_empty() {
            // Swap buffers: nothing moves, and the writer's (empty) deque is reused.
            std::mem::swap(buf, &mut st.items);
        } else {
            buf.extend(st.items.drain(..));
        }
        st.bytes = 0;
        st.frames = 0;
        if st.items.capacity() > SHRINK_ABOVE {
            st.items.shrink_to(SHRINK_ABOVE / 4);
        }
    }

    /// The writer of socket `me` could not write `unwritten` (the socket failed): its
    /// notifications go back to the front, for a resume (replies and orders were for that
    /// socket). Nothing happens if another socket drains the outbox now.
    pub(crate) fn requeue(&self, me: u64, unwritten: VecDeque<Out>) {
        let mut st = self.state.lock();
        if st.writer != me && st.writer != 0 {
            return;
        }
        for out in unwritten.into_iter().rev() {
            if out.is_notes() {
                st.bytes += out.bytes();
                st.frames += out.frames();
                st.items.push_front(out);
            }
        }
    }

    /// The client has every notification up to `last_seq`: forget them, and from now on keep
    /// written notifications until acknowledged.
    pub(crate) fn ack(&self, last_seq: u64) {
        let mut st = self.state.lock();
        st.acking = true;
        while st.kept.front().is_some_and(|note| note.seq() <= last_seq) {
            let note = st.kept.pop_front().expect("front exists");
            st.kept_bytes -= note.len();
        }
    }

    /// The socket `me` is gone: no writer drains this outbox until a resume. Returns `false`
    /// (and does nothing) if another socket drains it.
    pub(crate) fn detach(&self, me: u64) -> bool {
        let mut st = self.state.lock();
        if st.writer != me {
            return false;
        }
        st.revoke();
        st.sink = None;
        st.writer = 0;
        st.items.retain(Out::is_notes);
        st.bytes = st.items.iter().map(Out::bytes).sum();
        st.frames = st.items.iter().map(Out::frames).sum();
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Hands the outbox to socket `me` (a reconnection): `reply` (built from the outcome) goes
    /// first, then every notification after `last_seq` still here (written and kept, or queued),
    /// in order, then what comes next. Without `last_seq`, what was queued and not yet written is
    /// replayed. The previous socket's writer, if any, stops.
    pub(crate) fn resume(
        &self,
        me: u64,
        abort: AbortHandle,
        last_seq: Option<u64>,
        reply: impl FnOnce(Resumed) -> Utf8Bytes,
    ) -> Resumed {
        let mut st = self.state.lock();
        let st = &mut *st;
        st.revoke();
        st.sink = None;
        st.writer = me;
        st.abort = Some(abort);
        st.epoch += 1;
        let after = last_seq.unwrap_or(0);
        let kept = std::mem::take(&mut st.kept);
        st.kept_bytes = 0;
        let queued = std::mem::take(&mut st.items);
        let mut items: VecDeque<Out> = VecDeque::with_capacity(kept.len() + queued.len() + 1);
        let mut last = after;
        if last_seq.is_some() {
            st.acking = true;
            for note in kept.into_iter().filter(|note| note.seq() > after) {
                last = note.seq();
                items.push_back(Out::Note(note));
            }
        }
        // Replies and socket orders were for the old socket; a notification both kept and
        // given back unwritten goes once.
        items.extend(one_by_one(queued).filter(|o| o.note().is_some_and(|note| note.seq() > last)));
        let resumed =
            Resumed { recovered: last_seq.map(|l| st.lost_upto <= l), replayed: items.len() as u64 };
        let reply = reply(resumed);
        if !reply.is_empty() {
            // (empty: the connect came as a notification, which gets no answer)
            items.push_front(Out::Reply(reply));
        }
        items.push_back(Out::Order(Order::KeepOpen));
        st.bytes = items.iter().map(Out::bytes).sum();
        st.frames = items.iter().map(Out::frames).sum();
        st.items = items;
        let waker = st.waker.take();
        if let Some(w) = waker {
            w.wake();
        }
        resumed
    }

    /// Starts over for a new participant joining on this socket.
    pub(crate) fn restart(&self) {
        let mut st = self.state.lock();
        st.kept.clear();
        st.kept_bytes = 0;
        st.lost_upto = 0;
        st.acking = false;
    }

    /// Once drained, the writer moves on to `next` (a reconnection resumed there).
    pub(crate) fn redirect(&self, next: Arc<Outbox>) {
        let mut st = self.state.lock();
        st.redirect = Some(next);
        if matches!(st.direct, Direct::Parked) {
            st.direct = Direct::Off;
        }
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The writer draining this outbox, to abort if it is stuck.
    pub(crate) fn set_abort(&self, abort: AbortHandle) {
        self.state.lock().abort = Some(abort);
    }

    /// The number of resumes so far.
    pub(crate) fn epoch(&self) -> u64 {
        self.state.lock().epoch
    }

    /// Whether no socket has drained this outbox since it was at `epoch`.
    pub(crate) fn is_detached_since(&self, epoch: u64) -> bool {
        let st = self.state.lock();
        st.writer == 0 && st.epoch == epoch
    }

    /// Whether socket `me` drains this outbox.
    pub(crate) fn is_drained_by(&self, me: u64) -> bool {
        self.state.lock().writer == me
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::direct::DEFERRED_MAX;
    use super::*;

    const LIMITS: Limits = Limits { frames: 4, bytes: 1 << 20 };

    fn abort() -> AbortHandle {
        tokio::spawn(async {}).abort_handle()
    }

    fn note(seq: u64) -> Out {
        Out::Note(notice(seq))
    }

    fn notice(seq: u64) -> Note {
        let text = format!(r#"{{"jsonrpc":"2.0","method":"n","params":{{}},"seq":{seq}}}"#);
        Note::new(seq, Utf8Bytes::from(text))
    }

    fn seqs(buf: &VecDeque<Out>) -> Vec<u64> {
        one_by_one(buf.iter().cloned()).filter_map(|o| o.note().map(Note::seq)).collect()
    }

    async fn take(o: &Outbox, me: u64) -> VecDeque<Out> {
        let mut buf = VecDeque::new();
        match o.take(&mut buf, me).await {
            Take::Items => buf,
            other => panic!("{other:?}"),
        }
    }

    /// A socket that records what pushers wrote to it, and answers each write as told (by
    /// default: everything written).
    #[derive(Debug, Default)]
    struct Recorder {
        wrote: Mutex<Vec<u64>>,
        answers: Mutex<VecDeque<Written>>,
    }

    impl Sink for Recorder {
        fn write_now(&self, out: &Out) -> Written {
            self.wrote.lock().extend(seqs(&VecDeque::from([out.clone()])));
            self.answers.lock().pop_front().unwrap_or(Written::All)
        }
    }

    /// The writer of socket `me` goes to sleep on `o`'s empty queue, leaving `sink` to pushers.
    async fn sleep_on(o: &Outbox, me: u64, sink: &Arc<dyn Sink>) {
        o.give_sink(me, Arc::clone(sink));
        let mut buf = VecDeque::new();
        let slept = tokio::time::timeout(Duration::from_millis(5), o.take(&mut buf, me)).await;
        assert!(slept.is_err() && buf.is_empty(), "the writer had something to take");
    }

    fn recorder() -> (Arc<Recorder>, Arc<dyn Sink>) {
        let r = Arc::new(Recorder::default());
        let sink: Arc<dyn Sink> = r.clone();
        (r, sink)
    }

    #[tokio::test]
    async fn a_push_to_a_sleeping_writer_is_written_by_the_pusher() {
        let o = Outbox::new(LIMITS, 1);
        let (r, sink) = recorder();
        // Awake, the writer writes: pushes queue.
        assert!(o.push(note(1)));
        assert_eq!(seqs(&take(&o, 1).await), [1]);
        sleep_on(&o, 1, &sink).await;
        for s in 2..=9 {
            assert!(o.push(note(s)), "a written frame does not fill the queue");
        }
        assert_eq!(*r.wrote.lock(), (2..=9).collect::<Vec<_>>());
        assert_eq!(o.depth(), 0);
        // Orders and large frames are the writer's.
        assert!(o.push(Out::Note(Note::new(
            10,
            Utf8Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","method":"n","params":{{"d":"{}"}},"seq":10}}"#,
                "x".repeat(DIRECT_MAX)
            ))
        ))));
        assert!(o.push(note(11)), "queued behind it");
        assert_eq!(seqs(&take(&o, 1).await), [10, 11]);
        sleep_on(&o, 1, &sink).await;
        assert!(o.push(Out::Order(Order::KeepOpen)));
        assert_eq!(o.depth(), 1);
        assert_eq!(r.wrote.lock().len(), 8);
    }

    #[tokio::test]
    async fn what_the_socket_did_not_take_goes_first_to_the_writer() {
        let o = Outbox::new(LIMITS, 1);
        let (r, sink) = recorder();
        sleep_on(&o, 1, &sink).await;
        r.answers.lock().extend([Written::Part(b"rest"[..].into()), Written::Nothing]);
        assert!(o.push(note(1)));
        assert!(o.push(note(2)), "behind the rest: queued");
        let buf = take(&o, 1).await;
        assert_eq!(buf.front(), Some(&Out::Order(Order::Rest(b"rest"[..].into()))));
        assert_eq!(seqs(&buf), [2]);
        // Nothing taken: the frame itself goes to the writer, before what followed it.
        sleep_on(&o, 1, &sink).await;
        assert!(o.push(note(3)));
        assert!(o.push(note(4)));
        assert_eq!(seqs(&take(&o, 1).await), [3, 4]);
        assert_eq!(*r.wrote.lock(), [1, 3]);
    }

    #[tokio::test]
    async fn under_a_session_lock_the_write_waits_and_pushes_queue_behind_it() {
        let o = Outbox::new(LIMITS, 1);
        let (r, sink) = recorder();
        // The writer sleeps on the outbox (in a task of its own).
        o.give_sink(1, Arc::clone(&sink));
        let writer = {
            let o = Arc::clone(&o);
            tokio::spawn(async move {
                let mut buf = VecDeque::new();
                assert!(matches!(o.take(&mut buf, 1).await, Take::Items));
                buf
            })
        };
        tokio::task::yield_now().await;
        let mut writes = Writes::default();
        assert!(o.push_later(note(1), &mut writes));
        assert!(o.push_later(note(2), &mut writes));
        assert!(r.wrote.lock().is_empty(), "written while the lock is held");
        writes.make();
        assert_eq!(*r.wrote.lock(), [1]);
        // The writer is woken for what queued behind the write.
        let buf = tokio::time::timeout(Duration::from_secs(1), writer).await.unwrap().unwrap();
        assert_eq!(seqs(&buf), [2]);
    }

    /// A socket shared by a writer and its pushers, for the race test: what each writes lands in
    /// one byte stream; the pushers' writes are taken whole, in part or not at all, at random.
    #[derive(Debug, Default)]
    struct Stream {
        bytes: Mutex<Vec<u8>>,
        rng: Mutex<u64>,
    }

    impl Sink for Stream {
        fn write_now(&self, out: &Out) -> Written {
            let Some(text) = out.text() else { return Written::Nothing };
            let roll = {
                let mut x = self.rng.lock();
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                *x
            };
            let bytes = text.as_bytes();
            let n = match roll % 4 {
                0 => 0,
                1 => (roll >> 8) as usize % bytes.len(),
                _ => bytes.len(),
            };
            self.bytes.lock().extend_from_slice(&bytes[..n]);
            match n {
                0 => Written::Nothing,
                n if n == bytes.len() => Written::All,
                n => Written::Part(bytes[n..].into()),
            }
        }
    }

    /// Pushers (with and without a session's lock), a writer and its wake-ups for something
    /// else (control frames: `C`) on several threads: the stream holds every frame once, in
    /// order, whole, and the control frames only between frames.
    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn pushers_and_the_writer_never_interleave_on_the_socket() {
        const FRAMES: u64 = 20_000;
        let o = Outbox::new(Limits { frames: 1 << 20, bytes: 1 << 30 }, 1);
        let stream =
            Arc::new(Stream { bytes: Mutex::new(Vec::new()), rng: Mutex::new(0x9E37_79B9_7F4A_7C15) });
        o.give_sink(1, stream.clone());
        let control = Arc::new(tokio::sync::Notify::new());
        let writer = {
            let (o, stream, control) = (Arc::clone(&o), Arc::clone(&stream), Arc::clone(&control));
            tokio::spawn(async move {
                let mut buf = VecDeque::new();
                loop {
                    let woke_for_control = tokio::select! {
                        biased;
                        took = o.take(&mut buf, 1) => {
                            assert!(matches!(took, Take::Items));
                            false
                        }
                        () = control.notified() => true,
                    };
                    if woke_for_control {
                        o.reclaim(&mut buf, 1).await;
                    }
                    // As the writer: the rest of a frame, then control, then the frames.
                    let mut out = stream.bytes.lock();
                    if let Some(Out::Order(Order::Rest(rest))) = buf.front() {
                        out.extend_from_slice(rest);
                        buf.pop_front();
                    }
                    if woke_for_control {
                        out.push(b'C');
                    }
                    for item in buf.drain(..) {
                        match item {
                            Out::Note(n) => out.extend_from_slice(n.frame().as_bytes()),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
            })
        };
        let pings = {
            let control = Arc::clone(&control);
            tokio::spawn(async move {
                loop {
                    control.notify_one();
                    tokio::task::yield_now().await;
                }
            })
        };
        let pusher = {
            let o = Arc::clone(&o);
            tokio::spawn(async move {
                for seq in 1..=FRAMES {
                    if seq % 3 == 0 {
                        let mut writes = Writes::default();
                        assert!(o.push_later(note(seq), &mut writes));
                        writes.make();
                    } else {
                        assert!(o.push(note(seq)));
                    }
                    if seq % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        pusher.await.unwrap();
        let expected: Vec<u8> =
            (1..=FRAMES).flat_map(|seq| notice(seq).frame().as_bytes().to_vec()).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let written = stream.bytes.lock().iter().filter(|&&b| b != b'C').count();
            if written >= expected.len() || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pings.abort();
        writer.abort();
        let got = stream.bytes.lock().clone();
        // Control frames only where a frame ends.
        let frame_ends: std::collections::HashSet<usize> = (1..=FRAMES)
            .scan(0, |at, seq| {
                *at += note(seq).bytes();
                Some(*at)
            })
            .chain([0])
            .collect();
        let mut plain = Vec::with_capacity(got.len());
        let mut controls = 0;
        for &b in &got {
            if b == b'C' {
                assert!(
                    frame_ends.contains(&plain.len()),
                    "a control frame inside a frame, at byte {}",
                    plain.len()
                );
                controls += 1;
            } else {
                plain.push(b);
            }
        }
        assert_eq!(plain.len(), expected.len(), "every frame, once");
        assert!(plain == expected, "in order and whole");
        assert!(controls > 0, "the writer woke for control frames too");
    }

    #[tokio::test]
    async fn one_operation_writes_to_so_many_sockets_at_most() {
        let (r, sink) = recorder();
        let outboxes: Vec<_> = (1..=DEFERRED_MAX as u64 + 2).map(|me| Outbox::new(LIMITS, me)).collect();
        for (o, me) in outboxes.iter().zip(1..) {
            sleep_on(o, me, &sink).await;
        }
        let mut writes = Writes::default();
        for o in &outboxes {
            assert!(o.push_later(note(1), &mut writes));
        }
        assert!(r.wrote.lock().is_empty());
        writes.make();
        assert_eq!(r.wrote.lock().len(), DEFERRED_MAX);
        let queued: Vec<usize> = outboxes.iter().map(|o| o.depth()).collect();
        assert_eq!(queued.iter().sum::<usize>(), 2, "the last two are their writers' to write");
        assert_eq!(queued[DEFERRED_MAX..], [1, 1]);
    }

    /// A claim stops its socket's writer until made: one left in a `Writes` dropped without
    /// [`Writes::make`] (an early return) is made all the same.
    #[tokio::test]
    async fn writes_dropped_unmade_are_made() {
        let (r, sink) = recorder();
        let o = Outbox::new(LIMITS, 1);
        sleep_on(&o, 1, &sink).await;
        {
            let mut writes = Writes::default();
            assert!(o.push_later(note(1), &mut writes));
            assert!(r.wrote.lock().is_empty());
        }
        assert_eq!(*r.wrote.lock(), [1]);
        assert!(o.push(note(2)), "the socket is the pushers' again");
        assert_eq!(*r.wrote.lock(), [1, 2]);
    }

    #[tokio::test]
    async fn a_resume_during_a_claimed_write_gives_its_frame_to_the_new_socket_once() {
        let o = Outbox::new(LIMITS, 1);
        let (r, sink) = recorder();
        o.ack(0);
        sleep_on(&o, 1, &sink).await;
        assert!(o.push(note(1)));
        let mut writes = Writes::default();
        assert!(o.push_later(note(2), &mut writes));
        let resumed = o.resume(2, abort(), Some(0), |_| Utf8Bytes::from_static(""));
        writes.make();
        assert_eq!(resumed, Resumed { recovered: Some(true), replayed: 2 });
        assert_eq!(seqs(&take(&o, 2).await), [1, 2]);
        // The old socket may have had it; nothing else changes.
        assert_eq!(*r.wrote.lock(), [1, 2]);
        assert_eq!(o.depth(), 0);
        // A push while socket 2's writer is awake queues; its writer then leaves its own socket.
        assert!(o.push(note(3)));
        assert_eq!(seqs(&take(&o, 2).await), [3]);
        let (r2, sink2) = recorder();
        sleep_on(&o, 2, &sink2).await;
        assert!(o.push(note(4)));
        assert_eq!(*r2.wrote.lock(), [4]);
        assert_eq!(r.wrote.lock().len(), 2);
    }

    #[tokio::test]
    async fn a_gone_writer_leaves_its_socket_to_nobody() {
        let o = Outbox::new(LIMITS, 1);
        let (r, sink) = recorder();
        sleep_on(&o, 1, &sink).await;
        assert!(o.writer_gone(1).is_some());
        assert_eq!(Arc::strong_count(&r), 2, "the outbox let the socket go");
        assert!(o.push(note(1)));
        assert!(r.wrote.lock().is_empty());
        assert_eq!(o.depth(), 1);
    }

    #[tokio::test]
    async fn delivers_in_order_and_refuses_past_the_limit_while_attached() {
        let o = Outbox::new(LIMITS, 1);
        for s in 1..=4 {
            assert!(o.push(note(s)));
        }
        assert!(!o.push(note(5)), "full: the receiver is too slow");
        assert_eq!(seqs(&take(&o, 1).await), [1, 2, 3, 4]);
        assert!(o.push(note(5)));
    }

    /// Several frames in one push: bounded as one by one, and, with no socket attached, the
    /// oldest make room (the resume reports them lost) and replies are dropped.
    #[tokio::test]
    async fn notifications_pushed_together_are_bounded_as_one_by_one() {
        let frames = |seqs: std::ops::RangeInclusive<u64>| -> Vec<Out> { seqs.map(note).collect() };
        let o = Outbox::new(LIMITS, 1);
        assert!(o.push_frames(frames(1..=3).iter()));
        assert!(!o.push_frames(frames(4..=6).iter()), "full after 4: the receiver is too slow");
        assert_eq!(seqs(&take(&o, 1).await), [1, 2, 3, 4]);

        assert!(o.detach(1));
        let reply = Out::Reply(Utf8Bytes::from_static(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
        let mut pushed = frames(5..=10);
        pushed.insert(3, reply);
        assert!(o.push_frames(pushed.iter()), "nobody attached: the oldest make room");
        let r = o.resume(2, abort(), Some(4), |_| Utf8Bytes::from_static(""));
        assert_eq!(r, Resumed { recovered: Some(false), replayed: 4 });
        assert_eq!(seqs(&take(&o, 2).await), [7, 8, 9, 10]);
    }

    #[tokio::test]
    async fn bytes_bound_it_too() {
        let size = note(1).bytes();
        let o = Outbox::new(Limits { frames: 100, bytes: 2 * size }, 1);
        assert!(o.push(note(1)) && o.push(note(2)));
        assert!(!o.push(note(3)), "three notifications are over the limit of two in bytes");
    }

    #[test]
    fn a_slot_is_40_bytes() {
        assert_eq!(std::mem::size_of::<Out>(), 40);
    }

    #[tokio::test]
    async fn a_resume_replays_what_followed_the_last_acknowledged_notification() {
        let o = Outbox::new(LIMITS, 1);
        o.ack(0);
        for s in [3, 5, 8] {
            o.push(note(s));
        }
        take(&o, 1).await; // written on socket 1, kept
        o.push(note(9)); // queued, not written
        assert!(o.detach(1));
        o.push(note(12)); // while nobody is attached
        let r = o.resume(2, abort(), Some(5), |r| Utf8Bytes::from(format!("{r:?}")));
        assert_eq!(r, Resumed { recovered: Some(true), replayed: 3 });
        let buf = take(&o, 2).await;
        assert!(
            matches!(&buf[0], Out::Reply(f) if f.as_str().contains("replayed: 3")),
            "the reply goes first"
        );
        assert_eq!(seqs(&buf), [8, 9, 12]);
        assert_eq!(buf.back(), Some(&Out::Order(Order::KeepOpen)));
    }

    #[tokio::test]
    async fn the_old_writer_stops_once_another_socket_resumes() {
        let o = Outbox::new(LIMITS, 1);
        o.resume(2, abort(), None, |_| Utf8Bytes::from_static("ok"));
        let mut buf = VecDeque::new();
        assert!(matches!(o.take(&mut buf, 1).await, Take::Detached));
        assert!(!o.detach(1), "socket 1 no longer drains it");
    }

    #[tokio::test]
    async fn a_gap_larger_than_what_is_kept_is_reported() {
        let o = Outbox::new(LIMITS, 1);
        o.ack(0);
        for s in 1..=4 {
            o.push(note(s));
        }
        take(&o, 1).await;
        for s in 5..=6 {
            o.push(note(s));
        }
        take(&o, 1).await; // 1 and 2 are forgotten: 4 kept at most
        o.detach(1);
        let r = o.resume(2, abort(), Some(1), |_| Utf8Bytes::from_static("ok"));
        assert_eq!(r, Resumed { recovered: Some(false), replayed: 4 });
        let r2 = Outbox::new(LIMITS, 1);
        r2.ack(0);
        r2.push(note(1));
        take(&r2, 1).await;
        r2.ack(1);
        r2.detach(1);
        for s in 2..=7 {
            r2.push(note(s)); // nobody attached: the oldest make room
        }
        let r = r2.resume(2, abort(), Some(1), |_| Utf8Bytes::from_static("ok"));
        assert_eq!(r, Resumed { recovered: Some(false), replayed: 4 });
    }

    #[tokio::test]
    async fn without_acknowledgements_what_was_not_written_is_replayed() {
        let o = Outbox::new(LIMITS, 1);
        o.push(note(1));
        take(&o, 1).await;
        o.push(note(2));
        o.push(Out::Reply(Utf8Bytes::from_static("reply for socket 1")));
        o.detach(1);
        let r = o.resume(2, abort(), None, |_| Utf8Bytes::from_static("ok"));
        assert_eq!(r, Resumed { recovered: None, replayed: 1 });
        let buf = take(&o, 2).await;
        assert_eq!(seqs(&buf), [2]);
        assert_eq!(buf.len(), 3, "reply, note 2, keep-open; the old socket's reply is gone");
    }

    #[tokio::test]
    async fn what_a_failed_writer_gives_back_is_replayed_once() {
        for acking in [false, true] {
            let o = Outbox::new(LIMITS, 1);
            if acking {
                o.ack(0);
            }
            o.push(note(1));
            o.push(note(2));
            let buf = take(&o, 1).await;
            o.requeue(1, buf);
            o.detach(1);
            let r = o.resume(2, abort(), acking.then_some(0), |_| Utf8Bytes::from_static("ok"));
            assert_eq!(r.replayed, 2, "acking: {acking}");
            assert_eq!(seqs(&take(&o, 2).await), [1, 2]);
        }
    }

    #[tokio::test]
    async fn acknowledged_notifications_are_forgotten() {
        let o = Outbox::new(LIMITS, 1);
        o.ack(0);
        o.push(note(1));
        o.push(note(2));
        take(&o, 1).await;
        o.ack(2);
        o.detach(1);
        assert_eq!(o.resume(2, abort(), Some(2), |_| Utf8Bytes::from_static("ok")).replayed, 0);
    }

    fn framed(seqs: std::ops::RangeInclusive<u64>) -> Arc<Framed> {
        Arc::new(Framed::new(seqs.map(notice).collect()))
    }

    /// Notifications framed once: each frame behind its header, a receiver's from an index on,
    /// bounded as one by one.
    #[tokio::test]
    async fn framed_notifications_are_bounded_and_replayed_one_by_one() {
        let f = framed(1..=3);
        let mut expected = Vec::new();
        for s in 2..=3 {
            let text = notice(s).frame().clone();
            expected.extend_from_slice(crate::wire::Header::new(crate::wire::TEXT, text.len()).as_bytes());
            expected.extend_from_slice(text.as_bytes());
        }
        assert_eq!(f.bytes_from(1), expected);
        assert_eq!(f.payload_from(1), note(2).bytes() + note(3).bytes());
        assert!(f.bytes_from(3).is_empty() && f.frames_from(3).is_empty());

        let o = Outbox::new(LIMITS, 1);
        assert!(o.push(note(0)));
        assert!(o.push_framed(&f, 0, &mut Writes::default()), "4 frames: full, not over");
        assert!(!o.push(note(4)), "full: the receiver is too slow");
        assert!(o.push_framed(&f, 3, &mut Writes::default()), "nothing from the end on");
        assert_eq!(seqs(&take(&o, 1).await), [0, 1, 2, 3]);
        assert!(o.push_framed(&f, 1, &mut Writes::default()));
        assert!(!o.push_framed(&framed(4..=6), 0, &mut Writes::default()), "2 + 3 frames are over 4");

        // Detached, what was not written is replayed one by one, after the client's `lastSeq`.
        assert!(o.detach(1));
        let r = o.resume(2, abort(), Some(2), |_| Utf8Bytes::from_static(""));
        assert_eq!(r.replayed, 1);
        assert_eq!(seqs(&take(&o, 2).await), [3]);

        // A client that acknowledges keeps them one by one.
        o.ack(3);
        assert!(o.push_framed(&framed(4..=5), 0, &mut Writes::default()));
        take(&o, 2).await;
        o.ack(4);
        assert!(o.detach(2));
        let r = o.resume(3, abort(), Some(4), |_| Utf8Bytes::from_static(""));
        assert_eq!(r, Resumed { recovered: Some(true), replayed: 1 });
        assert_eq!(seqs(&take(&o, 3).await), [5]);
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_on_a_push_and_follows_a_redirect() {
        let o = Outbox::new(LIMITS, 1);
        let next = Outbox::new(LIMITS, 1);
        let waiter = {
            let o = Arc::clone(&o);
            tokio::spawn(async move {
                let mut buf = VecDeque::new();
                let first = matches!(o.take(&mut buf, 1).await, Take::Items) && buf.len() == 1;
                let then = matches!(o.take(&mut buf, 1).await, Take::Redirect(_));
                (first, then)
            })
        };
        tokio::task::yield_now().await;
        o.push(note(7));
        tokio::task::yield_now().await;
        o.redirect(next);
        assert_eq!(waiter.await.unwrap(), (true, true));
    }

    #[tokio::test]
    async fn an_idle_writer_releases_what_a_burst_grew() {
        let o = Outbox::new(Limits { frames: 1000, bytes: 1 << 20 }, 1);
        for s in 1..=200 {
            o.push(note(s));
        }
        let mut buf = take(&o, 1).await;
        assert_eq!(buf.len(), 200);
        for s in 201..=400 {
            o.push(note(s));
        }
        buf.clear();
        // The outbox's queue now holds the burst's slots, and so does the writer's batch.
        assert!(matches!(o.take(&mut buf, 1).await, Take::Items));
        buf.clear();
        assert!(buf.capacity() >= 200 && o.state.lock().items.capacity() >= 200);
        let asleep = tokio::time::timeout(Duration::from_millis(20), o.take(&mut buf, 1)).await;
        assert!(asleep.is_err(), "nothing was queued");
        // Asleep, the writer keeps its queues: the next batch of a fan-out reuses them.
        assert!(buf.capacity() >= 200 && o.state.lock().items.capacity() >= 200);
        o.release_idle(&mut buf, 2);
        assert!(o.state.lock().items.capacity() >= 200, "socket 2 does not drain this outbox");
        o.release_idle(&mut buf, 1);
        assert!(buf.capacity() <= IDLE_SLOTS, "the batch keeps {}", buf.capacity());
        assert!(o.state.lock().items.capacity() <= IDLE_SLOTS);
        // And it still works.
        o.push(note(401));
        assert_eq!(seqs(&take(&o, 1).await), vec![401]);
    }
}
