//! The socket under tungstenite. tungstenite reads the client's frames (and checks them: masks,
//! sizes, UTF-8, close codes); everything the server sends is written by the socket's writer
//! ([`super::writer`]), straight from the queued payloads. What tungstenite itself answers while
//! it reads (a pong to each ping, the answer to a close) it writes into [`Control`], which the
//! writer sends between its batches.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::wire::CLOSE;

/// Control frames tungstenite wrote, waiting for the writer; bounded in bytes.
#[derive(Debug)]
pub(crate) struct Control {
    state: Mutex<Pending>,
    writer: AtomicWaker,
    limit: usize,
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Where the answer to a close starts in `bytes`: it goes out last, when the reader is done.
    close_at: Option<usize>,
    /// An answer to a close was written: nothing follows it.
    closed: bool,
}

impl Control {
    /// Holds at most `limit` bytes: past that, pongs for a client that does not read are dropped.
    pub(crate) fn new(limit: usize) -> Self {
        Self { state: Mutex::new(Pending::default()), writer: AtomicWaker::new(), limit }
    }

    /// Waits until there is something to write before any answer to a close.
    pub(crate) async fn ready(&self) {
        std::future::poll_fn(|cx| {
            self.writer.register(cx.waker());
            if self.state.lock().writable() > 0 { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
    }

    /// What is ready to write: everything before an answer to a close, or with `all` (the reader
    /// is done) everything, the close last.
    pub(crate) fn take(&self, all: bool) -> Option<Vec<u8>> {
        let mut st = self.state.lock();
        let n = if all { st.bytes.len() } else { st.writable() };
        if n == 0 {
            return None;
        }
        if all && st.close_at.is_some() {
            st.closed = true;
        }
        let rest = st.bytes.split_off(n);
        let taken = std::mem::replace(&mut st.bytes, rest);
        st.close_at = st.close_at.map(|at| at - n.min(at));
        Some(taken)
    }

    /// Whether an answer to the client's close was written.
    pub(crate) fn wrote_close(&self) -> bool {
        self.state.lock().closed
    }

    fn push(&self, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.state.lock();
        let close = first_close(buf);
        if st.bytes.len() + buf.len() > self.limit && close.is_none() {
            // Pongs for a client that does not read them: RFC 6455 §5.5.3 lets an endpoint
            // answer only some pings. (An answer to a close is taken whatever its size.)
            return Ok(buf.len());
        }
        if st.close_at.is_none() {
            st.close_at = close.map(|at| st.bytes.len() + at);
        }
        st.bytes.extend_from_slice(buf);
        drop(st);
        self.writer.wake();
        Ok(buf.len())
    }
}

impl Pending {
    fn writable(&self) -> usize {
        self.close_at.unwrap_or(self.bytes.len())
    }
}

/// Where the first close frame starts in `buf`, a run of whole server frames (unmasked) as
/// tungstenite writes them.
fn first_close(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 2 <= buf.len() {
        if buf[at] & 0x0F == CLOSE {
            return Some(at);
        }
        let (len, header) = match buf[at + 1] & 0x7F {
            126 if at + 4 <= buf.len() => (usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])), 4),
            127 if at + 10 <= buf.len() => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&buf[at + 2..at + 10]);
                (usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX), 10)
            }
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        at = at.saturating_add(header).saturating_add(len);
    }
    None
}

/// What tungstenite reads from and writes to: the socket's read half, and [`Control`].
pub(crate) struct Duplex<R> {
    pub read: R,
    pub control: std::sync::Arc<Control>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Duplex<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for Duplex<R> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(self.control.push(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A plain TCP socket, shared by its reader, its writer and its pushers (its
/// [`Sink`](crate::outbox::Sink), in
/// [`super::writer`]): each reads or writes through a shared reference, as tokio allows. The
/// socket closes once the last of them lets it go.
#[derive(Debug)]
pub(crate) struct TcpSocket {
    pub tcp: crate::limit::Counted,
    /// Where the frames its pushers write are counted.
    pub counts: Arc<crate::metrics::FrameCounts>,
}

/// A reader's or a writer's hold on a [`TcpSocket`].
#[derive(Debug, Clone)]
pub(crate) struct Shared(pub Arc<TcpSocket>);

impl AsyncRead for Shared {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let stream = self.0.tcp.stream();
        loop {
            ready!(stream.poll_read_ready(cx))?;
            match stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Shared {
    /// Makes `write` once the socket is writable, until it does not find it full.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&tokio::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let stream = self.0.tcp.stream();
        loop {
            ready!(stream.poll_write_ready(cx))?;
            match write(stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }
}

impl AsyncWrite for Shared {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |stream| stream.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |stream| stream.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Not offered: a shared socket is closed by dropping it (the server never half-closes one).
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Header, TEXT, close_payload};

    fn framed(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Header::new(opcode, payload.len()).as_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn pongs_go_at_once_and_the_answer_to_a_close_waits_for_the_end() {
        let control = Control::new(1 << 20);
        let pong = framed(0xA, b"p");
        control.push(&pong).unwrap();
        assert_eq!(control.take(false).as_deref(), Some(&pong[..]));
        let close = framed(CLOSE, &close_payload(4102, ""));
        let mut both = framed(0xA, &[b'x'; 300]);
        both.extend_from_slice(&close);
        control.push(&both).unwrap();
        assert_eq!(control.take(false).map(|b| b.len()), Some(both.len() - close.len()));
        assert_eq!(control.take(false), None, "the close waits");
        assert!(!control.wrote_close());
        assert_eq!(control.take(true).as_deref(), Some(&close[..]));
        assert!(control.wrote_close());
    }

    #[test]
    fn pongs_past_the_limit_are_dropped_and_a_close_still_goes() {
        let control = Control::new(100);
        let pong = framed(0xA, &[0; 40]);
        for _ in 0..5 {
            assert_eq!(control.push(&pong).unwrap(), pong.len());
        }
        let close = framed(CLOSE, &close_payload(1000, ""));
        control.push(&close).unwrap();
        assert_eq!(control.take(true).map(|b| b.len()), Some(2 * pong.len() + close.len()));
        assert_eq!(first_close(&framed(TEXT, &[0; 70_000])), None);
    }
}
