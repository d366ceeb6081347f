//! The WebSocket wire below the outbox and the writer: server frames, framed here (headers,
//! close payloads, notifications framed once for every receiver) and written straight from the
//! queued payloads.
//!
//! A server's frames are not masked (RFC 6455 §5.1), so a frame is a 2 to 10 byte header followed
//! by its payload, byte for byte. A fan-out's payload is one shared buffer: the writer of each
//! receiver sends a header of its own and that buffer, so no socket keeps a buffer the size of the
//! largest frame it ever sent. Small frames (a signal's, a reply) are copied with their headers
//! into one buffer of the thread and written with one plain write: the kernel copies one buffer
//! far faster than two per frame. Larger ones go with one vectored write, from where they are.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;

use smallvec::SmallVec;
use tokio::io::AsyncWrite;

/// Opcodes of the frames the server writes itself.
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const CLOSE: u8 = 0x8;

/// At most this many frames go to one write call: their headers and payloads are
/// `2 × FRAMES_PER_WRITE` buffers (Linux's `IOV_MAX` is 1,024), gathered on the stack of each
/// poll, so that a writer allocates nothing per batch and holds no buffer between writes.
pub(crate) const FRAMES_PER_WRITE: usize = 256;

/// Frames with payloads up to this size are copied, headers included, into one buffer of the
/// thread and written from there with a plain write...
pub(crate) const COPIED_FRAME: usize = 2 * 1024;
/// ...up to this many bytes a write. The kernel's copy from a write's buffers costs per buffer:
/// two per frame of a signal's ~150 bytes cost more than copying them together first.
const COPIED_WRITE: usize = 32 * 1024;

thread_local! {
    /// The buffer small frames are gathered into: one per thread, never per socket, reused by
    /// every write (it is not held across a poll).
    pub(crate) static GATHERED: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(COPIED_WRITE + COPIED_FRAME + 4));
}

/// A frame header: final, unmasked, of one opcode and payload length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    pub(crate) fn new(opcode: u8, payload: usize) -> Self {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | opcode;
        let len = match payload {
            0..=125 => {
                bytes[1] = payload as u8;
                2
            }
            126..=0xFFFF => {
                bytes[1] = 126;
                bytes[2..4].copy_from_slice(&(payload as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = 127;
                bytes[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
                10
            }
        };
        Self { bytes, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The payload of a close frame: its code, then its reason (at most 123 bytes of it, cut on a
/// character boundary).
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

/// What to write of an item.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Piece<'a> {
    /// A frame's payload, to be written behind its header.
    Payload(&'a [u8]),
    /// Frames, framed already (headers and payloads).
    Framed(&'a [u8]),
}

impl<'a> Piece<'a> {
    fn header(self, opcode: u8) -> Option<Header> {
        match self {
            Piece::Payload(p) => Some(Header::new(opcode, p.len())),
            Piece::Framed(_) => None,
        }
    }

    pub(crate) fn bytes(self) -> &'a [u8] {
        match self {
            Piece::Payload(b) | Piece::Framed(b) => b,
        }
    }
}

/// Writes `frames` (`piece` gives each one's payload, all of one opcode, or frames framed
/// already), each payload behind its header, with as few write calls as the kernel takes.
pub(crate) async fn write_frames<W, T>(
    w: &mut W,
    opcode: u8,
    frames: &[T],
    piece: impl Fn(&T) -> Piece<'_>,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    // The first frame not written whole, and how many of its bytes (header first) were.
    let (mut next, mut done) = (0, 0);
    while next < frames.len() {
        let wrote = poll_fn(|cx| {
            let run = &frames[next..frames.len().min(next + FRAMES_PER_WRITE)];
            if piece(&run[0]).bytes().len() <= COPIED_FRAME {
                return GATHERED.with_borrow_mut(|buf| {
                    buf.clear();
                    for (i, f) in run.iter().enumerate() {
                        let (h, p) = (piece(f).header(opcode), piece(f).bytes());
                        if p.len() > COPIED_FRAME || (i > 0 && buf.len() + p.len() > COPIED_WRITE) {
                            break;
                        }
                        for part in unwritten(h.as_ref(), p, if i == 0 { done } else { 0 }) {
                            buf.extend_from_slice(part);
                        }
                    }
                    Pin::new(&mut *w).poll_write(cx, buf)
                });
            }
            // (On the stack and left uninitialised until pushed: a memset of their whole size
            // per write costs more than the allocations they replace.)
            let headers: SmallVec<[Option<Header>; FRAMES_PER_WRITE]> =
                run.iter().map(|f| piece(f).header(opcode)).collect();
            let mut slices: SmallVec<[IoSlice<'_>; 2 * FRAMES_PER_WRITE]> = SmallVec::new();
            for (i, (h, f)) in headers.iter().zip(run).enumerate() {
                for part in unwritten(h.as_ref(), piece(f).bytes(), if i == 0 { done } else { 0 }) {
                    if !part.is_empty() {
                        slices.push(IoSlice::new(part));
                    }
                }
            }
            Pin::new(&mut *w).poll_write_vectored(cx, &slices)
        })
        .await?;
        if wrote == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut wrote = wrote;
        while wrote > 0 {
            let p = piece(&frames[next]);
            let left = p.header(opcode).map_or(0, |h| h.as_bytes().len()) + p.bytes().len() - done;
            if wrote < left {
                done += wrote;
                break;
            }
            wrote -= left;
            next += 1;
            done = 0;
        }
    }
    Ok(())
}

/// What is left to write of a frame (its header, if it has one, then its payload) once `done`
/// of its bytes were written: the rest of the header, and the rest of the payload.
pub(crate) fn unwritten<'a>(header: Option<&'a Header>, payload: &'a [u8], done: usize) -> [&'a [u8]; 2] {
    let h = header.map_or(&[][..], Header::as_bytes);
    if done < h.len() { [&h[done..], payload] } else { [&[], &payload[done - h.len()..]] }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};

    use super::*;

    /// What tungstenite writes for the same frame.
    fn tungstenite_bytes(frame: Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    #[test]
    fn headers_match_tungstenite_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            let payload = vec![b'x'; len];
            let mut ours = Header::new(TEXT, len).as_bytes().to_vec();
            ours.extend_from_slice(&payload);
            let theirs = tungstenite_bytes(Frame::message(payload, OpCode::Data(coding_text()), true));
            assert_eq!(ours, theirs, "payload of {len} bytes");
        }
    }

    fn coding_text() -> tokio_tungstenite::tungstenite::protocol::frame::coding::Data {
        tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text
    }

    #[test]
    fn a_close_frame_matches_tungstenite_and_its_reason_is_cut_on_a_character() {
        let payload = close_payload(4104, "bye");
        let mut ours = Header::new(CLOSE, payload.len()).as_bytes().to_vec();
        ours.extend_from_slice(&payload);
        let close = CloseFrame { code: CloseCode::from(4104), reason: "bye".into() };
        assert_eq!(ours, tungstenite_bytes(Frame::close(Some(close))));
        let long = "é".repeat(100); // 200 bytes
        let cut = close_payload(1000, &long);
        assert_eq!(cut.len(), 2 + 122, "123 would split a character");
        assert!(std::str::from_utf8(&cut[2..]).is_ok());
    }

    /// A writer that takes at most `step` bytes per call, as a busy socket does.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        calls: usize,
        /// Of which vectored.
        vectored: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            self.calls += 1;
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                left -= take;
                n += take;
                if left == 0 {
                    break;
                }
            }
            self.calls += 1;
            self.vectored += 1;
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_batch_is_written_whole_however_the_writes_are_split() {
        let mut frames: Vec<String> = (0..700).map(|i| format!("frame {i} {}", "y".repeat(i % 60))).collect();
        frames[3].clear(); // an empty payload too
        let mut expected = Vec::new();
        for f in &frames {
            expected.extend_from_slice(Header::new(TEXT, f.len()).as_bytes());
            expected.extend_from_slice(f.as_bytes());
        }
        for step in [1, 7, 4096, usize::MAX] {
            let mut w = Trickle { out: Vec::new(), step, calls: 0, vectored: 0 };
            write_frames(&mut w, TEXT, &frames, |f| Piece::Payload(f.as_bytes())).await.unwrap();
            assert_eq!(w.out, expected, "writes of at most {step} bytes");
            if step == usize::MAX {
                assert_eq!(w.calls, 3, "700 frames: three writes of at most 256 frames");
                assert_eq!(w.vectored, 0, "small frames are gathered into one buffer");
            }
        }
    }

    #[tokio::test]
    async fn a_frame_with_a_ten_byte_header_is_written_whole_too() {
        let frames = ["a".to_owned(), "z".repeat(70_000), "b".to_owned()];
        let mut expected = Vec::new();
        for f in &frames {
            expected.extend_from_slice(Header::new(TEXT, f.len()).as_bytes());
            expected.extend_from_slice(f.as_bytes());
        }
        for step in [5, 999, usize::MAX] {
            let mut w = Trickle { out: Vec::new(), step, calls: 0, vectored: 0 };
            write_frames(&mut w, TEXT, &frames, |f| Piece::Payload(f.as_bytes())).await.unwrap();
            assert_eq!(w.out, expected, "writes of at most {step} bytes");
            if step == usize::MAX {
                // The small frame gathered, then the large one written from where it is (with
                // the small one after it), then nothing left.
                assert_eq!((w.calls, w.vectored), (2, 1));
            }
        }
    }
}
