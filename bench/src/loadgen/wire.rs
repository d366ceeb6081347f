//! A minimal WebSocket client (RFC 6455) over a raw `TcpStream`, as cheap per frame as it can be.
//!
//! Why not tokio-tungstenite on this side: server and load generator share a 2-core machine, so
//! every cycle the receivers spend is a cycle a server cannot have. tungstenite allocates a
//! message per frame and validates its UTF-8; here a receiver reads up to 64 KiB at a time and
//! walks the frame headers in place (a frame costs a header parse and, for signals, one
//! `memchr`). The 64 KiB are lent by the thread's [`pool`] for the read and what follows it, and
//! given back once every complete frame was taken: a socket that waits holds no buffer, only the
//! start of a frame not complete yet (so 10,000 participants cost no 640 MB, and a read costs no
//! page faults: the lent buffers stay warm). Enough of the protocol for benchmarking servers we
//! run ourselves: client frames are masked, server frames must be unmasked and unfragmented,
//! ping is answered with pong, no extensions.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bytes every [`Reader`] of this process read from its socket (handshakes included).
pub(crate) static BYTES_READ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Text frame opcode.
pub(crate) const OP_TEXT: u8 = 0x1;
/// Close frame opcode.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub(crate) const OP_PING: u8 = 0x9;
/// Pong frame opcode.
const OP_PONG: u8 = 0xA;

/// Largest frame a reader accepts (a `joinRoom` result listing 10,000 participants fits).
const MAX_FRAME: usize = 16 << 20;
/// How long the opening handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of one connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ConnectOptions {
    /// `SO_RCVBUF` to ask for before connecting (a participant that must stall quickly).
    pub recv_buffer: Option<u32>,
    /// raw only: the join is answered (`raw-server --join-answers`): wait for the answer.
    pub answered: bool,
}

/// Read buffers lent to the readers of a thread while they read.
mod pool {
    use std::cell::RefCell;

    /// What one read may take.
    pub(super) const READ_SIZE: usize = 64 * 1024;
    /// Buffers kept for the next readers; more are freed when given back.
    const KEEP: usize = 16;

    thread_local! {
        static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of [`READ_SIZE`] bytes (their contents are whatever the last reader left).
    pub(super) fn take() -> Vec<u8> {
        FREE.with_borrow_mut(Vec::pop).unwrap_or_else(|| vec![0; READ_SIZE])
    }

    /// How many buffers wait for a reader.
    #[cfg(test)]
    pub(super) fn kept() -> usize {
        FREE.with_borrow(Vec::len)
    }

    /// Gives `buf` back; one that grew for a large frame (or none at all) is freed instead.
    pub(super) fn give(buf: Vec<u8>) {
        if buf.len() == READ_SIZE {
            FREE.with_borrow_mut(|free| {
                if free.len() < KEEP {
                    free.push(buf);
                }
            });
        }
    }
}

/// One frame located in a [`Reader`]'s buffer; valid until the next [`Reader::fill`].
#[derive(Debug, Clone)]
pub(crate) struct FrameRef {
    pub opcode: u8,
    pub payload: Range<usize>,
}

/// The receiving half.
pub(crate) struct Reader {
    half: OwnedReadHalf,
    /// Lent by the [`pool`] while it holds bytes not parsed yet; empty otherwise.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// The sending half: frames are appended to a buffer and written by [`Writer::flush`].
pub(crate) struct Writer {
    half: OwnedWriteHalf,
    out: Vec<u8>,
    mask_seed: u32,
}

/// Opens a WebSocket to `ws://addr{path}` (path includes any query).
pub(crate) async fn connect(
    addr: SocketAddr,
    path: &str,
    opts: ConnectOptions,
) -> io::Result<(Reader, Writer)> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_inner(addr, path, opts))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "websocket handshake timed out"))?
}

async fn connect_inner(addr: SocketAddr, path: &str, opts: ConnectOptions) -> io::Result<(Reader, Writer)> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(size) = opts.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    write.write_all(request.as_bytes()).await?;
    let mut reader = Reader { half: read, buf: Vec::new(), start: 0, end: 0 };
    let header_end = loop {
        if let Some(i) = memchr::memmem::find(&reader.buf[..reader.end], b"\r\n\r\n") {
            break i + 4;
        }
        if !reader.fill().await? {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
        }
    };
    let head = &reader.buf[..header_end];
    if !head.starts_with(b"HTTP/1.1 101") {
        let line =
            String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned();
        return Err(io::Error::other(format!("upgrade refused: {line}")));
    }
    reader.start = header_end;
    let seed = (addr.port() as u32).wrapping_mul(2_654_435_761) | 1;
    Ok((reader, Writer { half: write, out: Vec::with_capacity(1024), mask_seed: seed }))
}

impl Reader {
    /// The next complete frame already in the buffer, if any.
    pub(crate) fn parse(&mut self) -> io::Result<Option<FrameRef>> {
        let data = &self.buf[self.start..self.end];
        if data.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (data[0], data[1]);
        if b0 & 0x80 == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "fragmented frames are not supported"));
        }
        if b1 & 0x80 != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "server frames must not be masked"));
        }
        let (len, header) = match b1 & 0x7F {
            126 => {
                if data.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([data[2], data[3]]) as usize, 4)
            }
            127 => {
                if data.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
        }
        if data.len() < header + len {
            // Make room for the whole frame at the next fill.
            let need = header + len;
            if need > self.buf.len() {
                self.buf.resize(need.next_power_of_two(), 0);
            }
            return Ok(None);
        }
        let begin = self.start + header;
        self.start = begin + len;
        Ok(Some(FrameRef { opcode: b0 & 0x0F, payload: begin..begin + len }))
    }

    /// The bytes of a frame returned by [`Reader::parse`].
    pub(crate) fn payload(&self, frame: &FrameRef) -> &[u8] {
        &self.buf[frame.payload.clone()]
    }

    /// Reads more bytes; `false` at end of stream. Invalidates earlier [`FrameRef`]s.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            // Everything was taken: the buffer goes back while the socket waits.
            (self.start, self.end) = (0, 0);
            pool::give(std::mem::take(&mut self.buf));
        } else if self.start > 0 {
            // The start of a frame: kept at the front, the rest of it read behind.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            self.half.readable().await?;
            if self.buf.is_empty() {
                self.buf = pool::take();
            }
            if self.end == self.buf.len() {
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
            }
            let read = self.half.try_read(&mut self.buf[self.end..]);
            if let Ok(n) = read {
                BYTES_READ.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                self.end += n;
            }
            if self.end == 0 {
                // Nothing to hold the buffer for (end of stream, or not readable after all).
                pool::give(std::mem::take(&mut self.buf));
            }
            match read {
                Ok(n) => return Ok(n > 0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next frame, reading as needed; `None` at end of stream.
    pub(crate) async fn next(&mut self) -> io::Result<Option<FrameRef>> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }
}

impl Writer {
    /// Appends a masked text frame; sent by the next [`Writer::flush`].
    pub(crate) fn push_text(&mut self, payload: &[u8]) {
        self.push(OP_TEXT, payload);
    }

    fn push(&mut self, opcode: u8, payload: &[u8]) {
        self.out.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            self.out.push(0x80 | len as u8);
        } else if len <= u16::MAX as usize {
            self.out.push(0x80 | 126);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0x80 | 127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        // xorshift32: a different key per frame, as RFC 6455 asks of clients.
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        let key = x.to_be_bytes();
        self.out.extend_from_slice(&key);
        self.out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    }

    /// Writes everything pushed so far.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.half.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends one text frame now.
    pub(crate) async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.push_text(payload);
        self.flush().await
    }

    /// Answers a ping.
    pub(crate) async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.push(OP_PONG, payload);
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// An unmasked server frame.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | OP_TEXT];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= u16::MAX as usize => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test(flavor = "current_thread")]
    async fn frames_split_anywhere_are_read_whole_and_buffers_go_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (read, _write) = client.into_split();
        let mut reader = Reader { half: read, buf: Vec::new(), start: 0, end: 0 };

        let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let payloads: Vec<Vec<u8>> =
            vec![b"one".to_vec(), vec![b'x'; 300], big.clone(), b"after the big one".to_vec(), vec![]];
        let bytes: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
        // Cut inside a header, inside a payload, and between frames, with pauses so that the
        // reader sees each piece on its own.
        let cuts = [1, 2, 5, 310, 4_000, 70_000, 150_000, bytes.len() - 3, bytes.len()];
        let writer = tokio::spawn(async move {
            let mut at = 0;
            for cut in cuts {
                server.write_all(&bytes[at..cut]).await.unwrap();
                at = cut;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            server
        });

        for want in &payloads {
            let got = reader.next().await.unwrap().expect("a frame");
            assert_eq!(got.opcode, OP_TEXT);
            assert_eq!(reader.payload(&got), &want[..], "payload of {} bytes", want.len());
        }
        assert!(pool::kept() <= 16);
        let server = writer.await.unwrap();
        drop(server);
        // End of stream: the reader's buffer is back with the pool, not kept.
        assert!(reader.next().await.unwrap().is_none());
        assert!(reader.buf.is_empty(), "an idle reader holds no buffer");
        assert_eq!(pool::kept(), 1, "the 64 KiB buffer went back, the grown one was freed");
    }
}
