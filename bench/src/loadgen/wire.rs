//! A minimal WebSocket client (RFC 6455) over a raw `TcpStream`, as cheap per frame as it can be.
//!
//! Why not tokio-tungstenite on this side: server and load generator share a 2-core machine, so
//! every cycle the receivers spend is a cycle a server cannot have. tungstenite allocates a
//! message per frame and validates its UTF-8; here a receiver reads 64 KiB at a time into one
//! buffer and walks the frame headers in place (a frame costs a header parse and, for signals,
//! one `memchr`). Enough of the protocol for benchmarking servers we run ourselves: client
//! frames are masked, server frames must be unmasked and unfragmented, ping is answered with
//! pong, no extensions.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectOptions {
    /// Initial read buffer size (it grows for larger frames).
    pub read_buffer: usize,
    /// `SO_RCVBUF` to ask for before connecting (a participant that must stall quickly).
    pub recv_buffer: Option<u32>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { read_buffer: 64 * 1024, recv_buffer: None }
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
    let mut reader = Reader { half: read, buf: vec![0; opts.read_buffer.max(4096)], start: 0, end: 0 };
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

    /// Gives back memory a large frame made the buffer grow: keeps the bytes not parsed yet,
    /// in a buffer of `size` or the next power of two that holds them.
    pub(crate) fn shrink(&mut self, size: usize) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let keep = self.end.max(size).max(4096).next_power_of_two();
        if keep < self.buf.len() {
            self.buf.truncate(keep);
            self.buf.shrink_to_fit();
        }
    }

    /// The bytes of a frame returned by [`Reader::parse`].
    pub(crate) fn payload(&self, frame: &FrameRef) -> &[u8] {
        &self.buf[frame.payload.clone()]
    }

    /// Reads more bytes; `false` at end of stream. Invalidates earlier [`FrameRef`]s.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0
            && (self.buf.len() - self.end < self.buf.len() / 4 || self.start > self.buf.len() / 2)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
        let n = self.half.read(&mut self.buf[self.end..]).await?;
        BYTES_READ.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        self.end += n;
        Ok(n > 0)
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
