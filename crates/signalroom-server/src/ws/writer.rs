//! A socket's writer task: what writes to the socket while it is awake (the rule is in the
//! module docs of `ws`). It drains the outbox it is
//! attached to (the socket's own, then its participant's), follows a reconnection to the
//! participant's outbox, honours close orders, and ends when another socket takes its
//! participant over or the reader is done.
//!
//! While it sleeps on an empty outbox, the pushers may write small frames to the socket
//! themselves (plain TCP sockets: [`TcpSocket`]): the writer takes the socket back whenever it
//! wakes.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

use super::transport::{Control, TcpSocket};
use crate::heap;
use crate::metrics::FrameCounts;
use crate::outbox::{IDLE_SLOTS, Order, Out, Outbox, Sink, Take, Written};
use crate::wire::{self, CLOSE, TEXT};

/// Frames written between flushes at most, so a long queue reaches the socket in pieces: as many
/// as one write call takes.
const WRITE_BATCH: usize = wire::FRAMES_PER_WRITE;
/// How long a close frame may take to write.
const CLOSE_WRITE: Duration = Duration::from_secs(1);
/// How long a writer with nothing to write waits before it releases what a burst made its queues
/// grow to ([`Outbox::release_idle`]): far longer than a socket busy with a fan-out waits between
/// batches (well under a millisecond), short enough that the memory is freed while the burst's
/// other allocations are (freed much later, it is left in holes of the heap: 100 ms cost 1.3 KiB
/// per idle participant in rooms of 100).
const IDLE_RELEASE: Duration = Duration::from_millis(10);

/// How a batch went.
enum Wrote {
    /// Written; the socket goes on.
    All,
    /// The socket is done (closed, failed, or a close written).
    Done,
    /// A write stayed blocked past the write timeout: the client does not read.
    Stalled,
}

/// Writes what socket `me`'s outbox holds, and the control frames its reader answers with
/// (`control`: pongs, the answer to a close), until the socket is done. `reader_done` fires when
/// the reader stopped: what is queued then is written, and the socket closed. Returns `true` when
/// a write stayed blocked for `timeout` (the client does not read): its participant is to be
/// evicted.
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    mut socket: W,
    outbox: Arc<Outbox>,
    control: Arc<Control>,
    me: u64,
    mut reader_done: oneshot::Receiver<()>,
    timeout: Duration,
    counts: Arc<FrameCounts>,
) -> bool {
    // However the writer ends (aborted included), pushers stop writing to its socket.
    // (The outbox and `me` are used from here: a reference or a copy kept across the awaits
    // would be every socket's memory.)
    let mut attached = Attached { outbox, me };
    let mut close_at: Option<Instant> = None;
    let mut batch = VecDeque::new();
    let mut finishing = false;
    // The queues grew past what an idle writer keeps: released once nothing came for a while.
    let mut grown = false;
    loop {
        // In this order: the reader's end and a due close are seen even while frames keep
        // coming, and the idle timer is started only when there is nothing else to do.
        // (Nothing is awaited inside the select: its branches' futures would stay in this
        // writer's future beside what a branch awaits, and it is every socket's memory.)
        let mut close_due = false;
        // Woken for something else than the queue: the socket is taken back from the pushers.
        let mut reclaim = true;
        let took = tokio::select! {
            biased;
            _ = &mut reader_done, if !finishing => {
                finishing = true;
                Take::Items
            }
            () = sleep_until(close_at.unwrap_or_else(Instant::now)), if close_at.is_some() => {
                close_due = true;
                Take::Items
            }
            took = attached.outbox.take(&mut batch, attached.me) => {
                reclaim = false;
                took
            }
            () = control.ready() => Take::Items,
            () = async { tokio::time::sleep(IDLE_RELEASE).await }, if grown => {
                attached.outbox.release_idle(&mut batch, attached.me);
                heap::released_queues();
                grown = false;
                continue;
            }
        };
        if reclaim {
            attached.outbox.reclaim(&mut batch, attached.me).await;
        }
        if close_due {
            batch.push_back(Out::Order(Order::Close { code: 1000, reason: "closed by server" }));
        }
        match took {
            Take::Items => grown |= batch.capacity() > IDLE_SLOTS,
            Take::Redirect(next) => {
                // The socket's pushers are now those of the outbox it moves to.
                if let Some(sink) = attached.outbox.writer_gone(attached.me) {
                    next.give_sink(attached.me, sink);
                }
                attached.outbox = next;
                continue;
            }
            Take::Detached => {
                let _ = write_close(&mut socket, Some((1000, "replaced by a reconnection"))).await;
                return false;
            }
        }
        // The rest of a frame a pusher wrote in part comes before anything else.
        let mut wrote = match batch.front() {
            Some(Out::Order(Order::Rest(_))) => write_rest(&mut socket, &mut batch, close_at, timeout).await,
            _ => Wrote::All,
        };
        if matches!(wrote, Wrote::All) {
            wrote = write_control(&mut socket, &control, false, close_at, timeout).await;
        }
        if matches!(wrote, Wrote::All) {
            wrote = write_batch(&mut socket, &mut batch, &mut close_at, timeout, &counts).await;
        }
        if !matches!(wrote, Wrote::All) {
            // What this socket could not write is still owed to its participant (or, stalled,
            // goes with it when it is evicted).
            attached.outbox.requeue(attached.me, std::mem::take(&mut batch));
            if matches!(wrote, Wrote::Stalled) {
                tracing::warn!(
                    socket = attached.me,
                    "a write stayed blocked for {timeout:?}: the client does not read"
                );
                return true;
            }
            return false;
        }
        if finishing {
            // The reader is done: its answer to the client's close, if it made one, goes last;
            // else a close frame of our own.
            let _ = write_control(&mut socket, &control, true, None, CLOSE_WRITE).await;
            if !control.wrote_close() {
                let _ = write_close(&mut socket, None).await;
            }
            return false;
        }
    }
}

/// Writes a batch, each piece within `timeout`.
async fn write_batch<W: AsyncWrite + Unpin>(
    socket: &mut W,
    batch: &mut VecDeque<Out>,
    close_at: &mut Option<Instant>,
    timeout: Duration,
    counts: &FrameCounts,
) -> Wrote {
    loop {
        // The next run of frames (up to a flush's worth), written from the batch in place, then
        // the order that ends it, if any.
        let run = batch.iter().take(WRITE_BATCH).take_while(|o| !o.is_order()).count();
        if run > 0 {
            let frames = &batch.make_contiguous()[..run];
            let (mut notes, mut others) = ((0, 0), (0, 0));
            for out in frames {
                let kind = if is_note(out) { &mut notes } else { &mut others };
                *kind = (kind.0 + out.frames() as u64, kind.1 + out.bytes() as u64);
                if piece(out).bytes().len() >= heap::LARGE_FRAME {
                    heap::wrote_large();
                }
            }
            let write = async {
                wire::write_frames(socket, TEXT, frames, piece).await?;
                socket.flush().await
            };
            let wrote = io(*close_at, timeout, write).await;
            // (What was being written when the socket failed is gone with it; the rest of the
            // batch is given back.)
            batch.drain(..run);
            match wrote {
                Wrote::All => {}
                other => return other,
            }
            counts.record(notes, others);
            continue;
        }
        match batch.pop_front() {
            None => return Wrote::All,
            Some(Out::Note(_) | Out::Reply(_) | Out::Order(Order::Write(..) | Order::Rest(_))) => {
                unreachable!("frames were written above")
            }
            Some(Out::Order(Order::Close { code, reason })) => {
                let _ = write_close(socket, Some((code, reason))).await;
                return Wrote::Done;
            }
            Some(Out::Order(Order::CloseAfter(delay))) => {
                let at = Instant::now() + delay;
                *close_at = Some(close_at.map_or(at, |c| c.min(at)));
            }
            Some(Out::Order(Order::KeepOpen)) => *close_at = None,
        }
    }
}

/// Writes the rest of a frame a pusher wrote in part (the batch's first item).
async fn write_rest<W: AsyncWrite + Unpin>(
    socket: &mut W,
    batch: &mut VecDeque<Out>,
    close_at: Option<Instant>,
    timeout: Duration,
) -> Wrote {
    let Some(Out::Order(Order::Rest(rest))) = batch.pop_front() else { return Wrote::All };
    let write = async {
        socket.write_all(&rest).await?;
        socket.flush().await
    };
    io(close_at, timeout, write).await
}

/// The outbox a writer drains, and its socket's number: pushers stop writing to the socket once
/// the writer is gone, however it ends.
struct Attached {
    outbox: Arc<Outbox>,
    me: u64,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.outbox.writer_gone(self.me);
    }
}

/// A plain TCP socket's pushers write to it while its writer sleeps.
impl Sink for TcpSocket {
    fn write_now(&self, out: &Out) -> Written {
        let stream = self.tcp.stream();
        let write = |bytes: &[u8]| match stream.try_write(bytes) {
            Ok(n) if n == bytes.len() => Written::All,
            Ok(n) if n > 0 => Written::Part(bytes[n..].into()),
            // Would block, or failed: the writer finds out which.
            _ => Written::Nothing,
        };
        let written = match out {
            // A large frame (a join answer) is written from where it is, as the writer does.
            Out::Note(_) | Out::Reply(_) if out.bytes() > wire::COPIED_FRAME => {
                let text = out.text().expect("one frame");
                let header = wire::Header::new(TEXT, text.len());
                let (head, payload) = (header.as_bytes(), text.as_bytes());
                match stream.try_write_vectored(&[IoSlice::new(head), IoSlice::new(payload)]) {
                    Ok(n) if n == head.len() + payload.len() => Written::All,
                    Ok(n) if n > 0 => {
                        Written::Part(wire::unwritten(Some(&header), payload, n).concat().into())
                    }
                    _ => Written::Nothing,
                }
            }
            Out::Note(_) | Out::Reply(_) => wire::GATHERED.with_borrow_mut(|buf| {
                let text = out.text().expect("one frame");
                buf.clear();
                buf.extend_from_slice(wire::Header::new(TEXT, text.len()).as_bytes());
                buf.extend_from_slice(text.as_bytes());
                write(buf)
            }),
            Out::Order(Order::Write(framed, from)) => write(framed.bytes_from(*from)),
            Out::Order(_) => Written::Nothing,
        };
        if written != Written::Nothing {
            let counted = (out.frames() as u64, out.bytes() as u64);
            if is_note(out) {
                self.counts.record(counted, (0, 0));
            } else {
                self.counts.record((0, 0), counted);
            }
        }
        written
    }
}

/// Writes the control frames the reader produced (framed by tungstenite): those before an answer
/// to a close, or with `all` everything.
async fn write_control<W: AsyncWrite + Unpin>(
    socket: &mut W,
    control: &Control,
    all: bool,
    close_at: Option<Instant>,
    timeout: Duration,
) -> Wrote {
    let Some(bytes) = control.take(all) else { return Wrote::All };
    let write = async {
        socket.write_all(&bytes).await?;
        socket.flush().await
    };
    io(close_at, timeout, write).await
}

/// Writes a close frame (the server's last frame), with a code and reason or without, and
/// flushes it, within [`CLOSE_WRITE`].
async fn write_close<W: AsyncWrite + Unpin>(socket: &mut W, why: Option<(u16, &str)>) -> std::io::Result<()> {
    let payload = why.map_or_else(Vec::new, |(code, reason)| wire::close_payload(code, reason));
    let write = async {
        wire::write_frames(socket, CLOSE, &[payload], |p| wire::Piece::Payload(p)).await?;
        socket.flush().await
    };
    tokio::time::timeout(CLOSE_WRITE, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// A socket write, which may block while the client does not read: past `timeout` the socket is
/// stalled; once a close is due, a write that cannot finish by then ends the socket.
async fn io(
    close_at: Option<Instant>,
    timeout: Duration,
    write: impl Future<Output = std::io::Result<()>>,
) -> Wrote {
    let stall = Instant::now() + timeout;
    match close_at {
        Some(at) if at < stall => match tokio::time::timeout_at(at, write).await {
            Ok(Ok(())) => Wrote::All,
            _ => Wrote::Done,
        },
        _ => match tokio::time::timeout_at(stall, write).await {
            Ok(Ok(())) => Wrote::All,
            Ok(Err(_)) => Wrote::Done,
            Err(_) => Wrote::Stalled,
        },
    }
}

/// Whether frames count as notifications in the metrics (framed ones are), or as responses.
fn is_note(out: &Out) -> bool {
    !matches!(out, Out::Reply(_))
}

/// What to write of an item (an order has nothing; the writer only writes runs of frames).
fn piece(out: &Out) -> wire::Piece<'_> {
    match out {
        Out::Note(note) => wire::Piece::Payload(note.frame().as_bytes()),
        Out::Reply(text) => wire::Piece::Payload(text.as_bytes()),
        Out::Order(Order::Write(framed, from)) => wire::Piece::Framed(framed.bytes_from(*from)),
        Out::Order(Order::Rest(rest)) => wire::Piece::Framed(rest),
        Out::Order(_) => wire::Piece::Payload(&[]),
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::ws::Utf8Bytes;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::outbox::Limits;

    fn note(seq: u64) -> Out {
        let text = format!(r#"{{"jsonrpc":"2.0","method":"n","params":{{}},"seq":{seq}}}"#);
        Out::Note(crate::outbox::Note::new(seq, Utf8Bytes::from(text)))
    }

    #[tokio::test]
    async fn a_burst_is_written_then_its_queues_are_released_once_idle() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let outbox = Outbox::new(Limits { frames: 4096, bytes: 1 << 24 }, 1);
        let (done, reader_done) = oneshot::channel();
        let writer = tokio::spawn(write_frames(
            ours,
            Arc::clone(&outbox),
            Arc::new(Control::new(1024)),
            1,
            reader_done,
            Duration::from_secs(5),
            Arc::default(),
        ));
        // Two bursts, each read by the client (a frame is a 2-byte header and its text): the
        // writer swaps its batch with the outbox's queue, so after the second both have grown.
        // (A current-thread runtime: the writer runs only while the test awaits.)
        for burst in [1..=300, 301..=600] {
            let expected: usize = burst.clone().map(|seq| 2 + note_len(seq)).sum();
            for seq in burst {
                assert!(outbox.push(note(seq)));
            }
            let mut read = vec![0; expected];
            theirs.read_exact(&mut read).await.unwrap();
        }
        // The writer is idle after batches the size of its queues: it keeps them for a while...
        assert!(outbox.queue_capacity() >= 300, "kept {} slots", outbox.queue_capacity());
        // ...and releases them once nothing came for IDLE_RELEASE.
        tokio::time::sleep(IDLE_RELEASE * 5).await;
        assert!(outbox.queue_capacity() <= IDLE_SLOTS, "kept {} slots", outbox.queue_capacity());
        // And it still writes.
        assert!(outbox.push(note(601)));
        let mut more = vec![0; 2 + note_len(601)];
        theirs.read_exact(&mut more).await.unwrap();
        assert!(more.ends_with(br#""seq":601}"#));
        drop(done);
        assert!(!writer.await.unwrap());
    }

    fn note_len(seq: u64) -> usize {
        note(seq).bytes()
    }

    /// A pusher writing to a sleeping writer's socket: small frames are gathered with their
    /// header, a large one (a join answer) goes from where it is; when the socket takes part of
    /// it, what it did not take comes back, and the two make the frame.
    #[tokio::test]
    async fn a_pusher_writes_small_and_large_frames_and_gives_back_the_rest() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let limited = crate::limit::Limited::new(crate::limit::Gate::new(1));
        let (tcp, _) = axum_server::accept::Accept::accept(&limited, accepted, ()).await.unwrap();
        let socket = TcpSocket { tcp, counts: Arc::default() };

        let small = Utf8Bytes::from("x".repeat(100));
        assert!(matches!(socket.write_now(&Out::Reply(small.clone())), Written::All));
        let mut got = vec![0; 2 + 100];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..2], wire::Header::new(TEXT, 100).as_bytes());
        assert_eq!(&got[2..], small.as_bytes());

        // 8 MiB: more than the socket's buffers hold while the client does not read.
        let text: String = (0..8 << 20).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let large = Utf8Bytes::from(text);
        let rest = match socket.write_now(&Out::Reply(large.clone())) {
            Written::Part(rest) => rest,
            Written::All => panic!("8 MiB taken at once: the test needs a full socket"),
            Written::Nothing => panic!("nothing written"),
        };
        let header = wire::Header::new(TEXT, large.len());
        let whole = header.as_bytes().len() + large.len();
        let mut read = Vec::with_capacity(whole);
        let reading = client.read_to_end(&mut read);
        drop(socket); // the client reads what was written, to the end
        tokio::time::timeout(Duration::from_secs(10), reading).await.unwrap().unwrap();
        read.extend_from_slice(&rest);
        assert_eq!(read.len(), whole);
        assert_eq!(&read[..header.as_bytes().len()], header.as_bytes());
        assert!(read[header.as_bytes().len()..] == *large.as_bytes(), "the frame's bytes, in order");
    }
}
