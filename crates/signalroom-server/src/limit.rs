//! The connection limit: an acceptor that counts open TCP connections and closes those over the
//! limit at once, with a log line, instead of leaving them to time out in the listen backlog.

use std::future::Ready;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How many connections are open, and how many were refused (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// TCP connections open now.
    pub open: usize,
    /// Connections closed at once because the limit was reached, since the server started.
    pub refused: u64,
}

/// The shared counters of a [`Limited`] acceptor.
#[derive(Debug)]
pub(crate) struct Gate {
    max: usize,
    open: AtomicUsize,
    refused: AtomicU64,
    /// The limit is reached: logged once until connections fall below it again.
    full: AtomicBool,
}

impl Gate {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            full: AtomicBool::new(false),
        })
    }

    pub(crate) fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            open: self.open.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Takes a place for a new connection; `None` when the limit is reached.
    fn enter(self: &Arc<Self>) -> Option<Ticket> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.full.swap(true, Ordering::Relaxed) {
                let max = self.max;
                tracing::warn!(
                    refused,
                    "connection limit of {max} reached: closing new connections until some close \
                     (--max-connections)"
                );
            }
            return None;
        }
        Some(Ticket(Arc::clone(self)))
    }
}

/// A connection's place under the limit, given back when the connection is dropped.
#[derive(Debug)]
struct Ticket(Arc<Gate>);

impl Drop for Ticket {
    fn drop(&mut self) {
        let before = self.0.open.fetch_sub(1, Ordering::AcqRel);
        if before <= self.0.max && self.0.full.swap(false, Ordering::Relaxed) {
            tracing::info!(limit = self.0.max, "below the connection limit again: accepting connections");
        }
    }
}

/// An acceptor that admits at most the gate's limit of connections, and sets `TCP_NODELAY` on
/// them: signals are small frames, and Nagle's algorithm would hold a second one back until the
/// first is acknowledged (up to 40 ms with delayed ACKs).
#[derive(Debug, Clone)]
pub(crate) struct Limited {
    gate: Arc<Gate>,
}

impl Limited {
    pub(crate) fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }
}

impl<S> Accept<TcpStream, S> for Limited {
    type Stream = Counted;
    type Service = S;
    type Future = Ready<io::Result<(Counted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Some(ticket) = self.gate.enter() else {
            // Dropping the stream closes it: the client learns at once.
            return std::future::ready(Err(io::Error::other("connection limit reached")));
        };
        let accepted = stream.set_nodelay(true).map(|()| (Counted { stream, _ticket: ticket }, service));
        std::future::ready(accepted)
    }
}

/// A TCP stream holding its place under the connection limit.
#[derive(Debug)]
pub(crate) struct Counted {
    stream: TcpStream,
    _ticket: Ticket,
}

impl Counted {
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_its_limit_and_counts_refusals() {
        let gate = Gate::new(2);
        let a = gate.enter();
        let b = gate.enter();
        assert!(a.is_some() && b.is_some());
        assert!(gate.enter().is_none());
        assert_eq!(gate.counts(), ConnectionCounts { open: 2, refused: 1 });
        drop(a);
        assert!(gate.enter().is_some(), "a place was given back");
        assert_eq!(gate.counts().refused, 1);
    }
}
