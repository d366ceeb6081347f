//! The upgrade to `/openvidu`, taken at the connection's first request, before hyper.
//!
//! Every participant's connection starts with the same request: a WebSocket upgrade to
//! `/openvidu`. Served by hyper, that request costs a read of its first bytes to tell HTTP/1 from
//! HTTP/2, a dispatch through the routes and their layers, and the hand-over of the connection
//! through hyper's upgrade (a boxed stream behind a oneshot channel), about a quarter of a join's
//! time in the server. [`Upgrades`] reads the first request's head itself: a complete, valid
//! upgrade to the endpoint is answered here, and the connection goes to the socket's reader and
//! writer at once; anything else (REST, the page, an upgrade that is not valid, a head that is
//! unusual or too long) goes to hyper with the bytes read so far ([`Replay`]), and is served
//! exactly as before, the upgrade route included.

use std::any::Any;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::transport::TcpSocket;
use super::{Io, Socket, accept_key, run};
use crate::hub::Hub;
use crate::limit::Counted;
use crate::util::client_ip;

/// What is read of a request's head at first; a longer head (many cookies) grows the buffer.
const HEAD_READ: usize = 2048;
/// A longer head is left to hyper, whose limits apply to it as to any request.
const HEAD_LIMIT: usize = 16 * 1024;
/// Headers an upgrade may have; a request with more is left to hyper.
const MAX_HEADERS: usize = 48;

/// An acceptor that takes a connection whose first request is a WebSocket upgrade to
/// `/openvidu`, and hands every other connection on, unchanged, to hyper.
#[derive(Debug, Clone)]
pub(crate) struct Upgrades<A> {
    inner: A,
    hub: Arc<Hub>,
    /// How long the head of the first request may take: as long as hyper gives it.
    timeout: Duration,
}

impl Upgrades<()> {
    pub(crate) fn new(hub: Arc<Hub>, timeout: Duration) -> Self {
        Self { inner: (), hub, timeout }
    }

    /// Takes the connections `inner` accepted (the connection limit's, TLS's).
    pub(crate) fn over<A>(self, inner: A) -> Upgrades<A> {
        Upgrades { inner, hub: self.hub, timeout: self.timeout }
    }
}

/// A connection was upgraded and is being served: hyper is not to serve it.
fn taken() -> io::Error {
    io::Error::other("upgraded to a WebSocket at its first request")
}

impl<A, S> Accept<TcpStream, S> for Upgrades<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
    A::Stream: Socket,
    A::Service: Send + 'static,
{
    type Stream = Replay<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, tcp: TcpStream, service: S) -> Self::Future {
        let peer = tcp.peer_addr();
        let accepted = self.inner.accept(tcp, service);
        let hub = Arc::clone(&self.hub);
        let timeout = self.timeout;
        Box::pin(async move {
            let (mut stream, service) = accepted.await?;
            let mut head = Vec::with_capacity(HEAD_READ);
            let first = tokio::time::timeout(timeout, read_head(&mut stream, &mut head))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no complete request head in time"))??;
            // (A node that is not ready leaves upgrades to the route, which refuses them.)
            let (Ok(peer), First::Upgrade { len, accept, real_ip }, true) = (peer, first, hub.is_ready())
            else {
                return Ok((Replay::new(head, stream), service));
            };
            let ip = client_ip(real_ip.as_deref(), peer);
            let early = head.split_off(len);
            drop(head);
            // A fresh socket takes the answer at once; the socket's task is then the reader's
            // future alone (anything else kept alive with it would be memory per participant).
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
                 sec-websocket-accept: {accept}\r\n\r\n"
            );
            if let Err(e) = stream.write_all(answer.as_bytes()).await {
                tracing::debug!(error = %e, %ip, "upgrade failed");
                return Err(e);
            }
            // A plain TCP connection is shared by its reader, writer and pushers; any other is
            // split.
            let mut stream = Some(stream);
            let io = match (&mut stream as &mut dyn Any).downcast_mut::<Option<Counted>>() {
                Some(tcp) => Io::Tcp(Arc::new(TcpSocket {
                    tcp: tcp.take().expect("the stream is there"),
                    counts: Arc::clone(&hub.frame_counts),
                })),
                None => Io::Other(Box::new(stream.take().expect("the stream is there"))),
            };
            tokio::spawn(run(hub, io, ip, early));
            Err(taken())
        })
    }
}

/// What a connection's first request is, as far as this acceptor cares.
#[derive(Debug, PartialEq, Eq)]
enum First {
    /// A valid WebSocket upgrade to `/openvidu`, its head `len` bytes long.
    Upgrade {
        len: usize,
        /// The `Sec-WebSocket-Accept` of its key.
        accept: String,
        /// Its `X-Real-IP`, set by a proxy.
        real_ip: Option<Vec<u8>>,
    },
    /// Anything else, for hyper: another request, a bad or unusual upgrade, a head over
    /// [`HEAD_LIMIT`], or the end of the stream before the head was complete.
    Other,
}

/// Reads into `head` until the first request is known to be an upgrade or something else. The
/// head is parsed again only once a read completed a line: a head sent a byte at a time is not
/// parsed for every byte (and past [`MAX_HEADERS`] lines it is hyper's).
async fn read_head<R: AsyncRead + Unpin>(stream: &mut R, head: &mut Vec<u8>) -> io::Result<First> {
    loop {
        if head.len() == head.capacity() {
            if head.len() >= HEAD_LIMIT {
                return Ok(First::Other);
            }
            head.reserve(head.len().max(HEAD_READ));
        }
        let before = head.len();
        if stream.read_buf(head).await? == 0 {
            return Ok(First::Other);
        }
        if head[before..].contains(&b'\n') {
            if let Some(first) = parse(head) {
                return Ok(first);
            }
        }
    }
}

/// What `head` is, or `None` while it may still become an upgrade to the endpoint.
fn parse(head: &[u8]) -> Option<First> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            let other = req.method.is_some_and(|m| m != "GET") || req.path.is_some_and(|p| !is_endpoint(p));
            return other.then_some(First::Other);
        }
        Err(_) => return Some(First::Other),
    };
    if req.version != Some(1) || !req.path.is_some_and(is_endpoint) {
        return Some(First::Other);
    }
    let header = |name: &'static str| {
        req.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    };
    // A body after the head would be taken for the client's first frames.
    if header("content-length").next().is_some() || header("transfer-encoding").next().is_some() {
        return Some(First::Other);
    }
    let Ok(accept) = accept_key(req.method == Some("GET"), header) else {
        return Some(First::Other);
    };
    let real_ip = header("x-real-ip").next().map(<[u8]>::to_vec);
    Some(First::Upgrade { len, accept, real_ip })
}

/// The path of the upgrade route, with any query.
fn is_endpoint(path: &str) -> bool {
    path.strip_prefix("/openvidu").is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
}

/// A stream that first gives back what was read of it.
#[derive(Debug)]
pub(crate) struct Replay<S> {
    read: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replay<S> {
    fn new(read: Vec<u8>, inner: S) -> Self {
        Self { read, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.read.len() {
            let n = buf.remaining().min(self.read.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.read[at..at + n]);
            self.at += n;
            if self.at == self.read.len() {
                // Given back: its memory too.
                self.read = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn a_valid_upgrade_to_the_endpoint_is_taken_with_its_accept_key_and_length() {
        let head = upgrade("/openvidu?sessionId=S1", "X-Real-IP: 10.0.0.7\r\n");
        let mut bytes = head.clone().into_bytes();
        bytes.extend_from_slice(b"\x81\x85early");
        assert_eq!(
            parse(&bytes),
            Some(First::Upgrade {
                len: head.len(),
                // RFC 6455 §1.3's example key and its accept key.
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
                real_ip: Some(b"10.0.0.7".to_vec()),
            })
        );
        assert!(matches!(parse(upgrade("/openvidu", "").as_bytes()), Some(First::Upgrade { .. })));
    }

    #[test]
    fn anything_else_is_left_to_hyper_as_soon_as_it_is_known() {
        for other in [
            upgrade("/openvidu/", ""),
            upgrade("/openvidu/api/sessions", ""),
            upgrade("/openviduX", ""),
            upgrade("/openvidu", "Content-Length: 3\r\n"),
            upgrade("http://x/openvidu", ""),
            upgrade("/openvidu", "").replace("GET", "POST"),
            upgrade("/openvidu", "").replace("HTTP/1.1", "HTTP/1.0"),
            upgrade("/openvidu", "").replace("Version: 13", "Version: 8"),
            upgrade("/openvidu", "").replace("Upgrade: websocket", "Upgrade: h2c"),
            upgrade("/openvidu", "").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            "\x16\x03\x01 not http".into(),
        ] {
            assert_eq!(parse(other.as_bytes()), Some(First::Other), "{other:?}");
        }
        // Known before the head is complete.
        assert_eq!(parse(b"POST /openvidu/api/sessions HT"), Some(First::Other));
        assert_eq!(parse(b"GET /chat.js HTTP/1.1\r\nHo"), Some(First::Other));
        // Not yet known.
        assert_eq!(parse(b"GET /openvidu?sessionId=S1 HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(parse(b"GE"), None);
    }

    #[tokio::test]
    async fn a_head_is_read_in_pieces_and_one_over_the_limit_is_left_to_hyper() {
        let head = upgrade("/openvidu", "");
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for piece in head.as_bytes().chunks(7) {
                client.write_all(piece).await.unwrap();
            }
            client
        });
        let mut read = Vec::with_capacity(4);
        assert!(matches!(read_head(&mut server, &mut read).await.unwrap(), First::Upgrade { .. }));
        drop(writer.await.unwrap());

        let long = upgrade("/openvidu", &format!("Cookie: {}\r\n", "c".repeat(HEAD_LIMIT)));
        let (mut client, mut server) = tokio::io::duplex(HEAD_LIMIT * 2);
        client.write_all(long.as_bytes()).await.unwrap();
        let mut read = Vec::with_capacity(HEAD_READ);
        assert_eq!(read_head(&mut server, &mut read).await.unwrap(), First::Other);
        assert!(read.len() >= HEAD_LIMIT && read.len() < long.len(), "{}", read.len());

        // The end of the stream before a complete head.
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert_eq!(read_head(&mut server, &mut Vec::new()).await.unwrap(), First::Other);
    }

    #[tokio::test]
    async fn what_was_read_is_given_back_first_then_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut replay = Replay::new(b"hello".to_vec(), server);
        let mut small = [0u8; 3];
        replay.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hel");
        let mut rest = String::new();
        replay.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "lo world");
        assert_eq!(replay.read.capacity(), 0, "the head's memory was given back");
    }
}
