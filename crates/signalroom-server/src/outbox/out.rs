//! What an outbox queues ([`Out`]): text frames (a notification shared by every receiver of a
//! fan-out, or a reply), notifications framed once for all their receivers ([`Framed`]), and
//! orders about the socket ([`Order`]); and what is read back from a frame.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;

use super::DIRECT_MAX;

/// Something for a socket's writer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Out {
    /// A text frame: a notification (shared: a fan-out is serialised once), or a reply to a
    /// request of the socket it was written for. Which one, and a notification's sequence number,
    /// are read from the frame ([`Out::note`], [`seq_of`]): one variant keeps the queue's slots at
    /// 32 bytes, and they are the fan-out's cache misses.
    Frame(Utf8Bytes),
    /// An order about the socket itself, or frames framed already ([`Order::Write`]).
    Order(Order),
}

/// Notifications framed once, headers and payloads back to back: the writer of every receiver
/// writes them from here, as they are (a server's frames are not masked, so they are the same
/// bytes on every socket). A receiver gets those from an index on (a participant that joined
/// among them gets those that followed its join). The frames are kept too, for what needs them
/// one by one (a resume, a detached queue, a client that acknowledges).
#[derive(Debug, PartialEq)]
pub(crate) struct Framed {
    bytes: Vec<u8>,
    frames: Vec<Utf8Bytes>,
    /// Where each frame's header starts in `bytes`, and the payload bytes before it.
    starts: Vec<(usize, usize)>,
    payload: usize,
}

impl Framed {
    /// Frames `frames` (notifications, in order).
    pub(crate) fn new(frames: Vec<Utf8Bytes>) -> Self {
        let payload: usize = frames.iter().map(|f| f.len()).sum();
        let mut bytes = Vec::with_capacity(payload + 4 * frames.len());
        let mut starts = Vec::with_capacity(frames.len());
        let mut before = 0;
        for f in &frames {
            starts.push((bytes.len(), before));
            bytes.extend_from_slice(crate::wire::Header::new(crate::wire::TEXT, f.len()).as_bytes());
            bytes.extend_from_slice(f.as_bytes());
            before += f.len();
        }
        Self { bytes, frames, starts, payload }
    }

    /// How many frames there are.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// The frames from index `from` on, framed.
    pub(crate) fn bytes_from(&self, from: u32) -> &[u8] {
        self.starts.get(from as usize).map_or(&[], |&(at, _)| &self.bytes[at..])
    }

    /// The frames from index `from` on.
    pub(crate) fn frames_from(&self, from: u32) -> &[Utf8Bytes] {
        self.frames.get(from as usize..).unwrap_or_default()
    }

    /// The payload bytes of the frames from index `from` on.
    pub(crate) fn payload_from(&self, from: u32) -> usize {
        self.starts.get(from as usize).map_or(0, |&(_, before)| self.payload - before)
    }
}

/// An order about a socket, or frames to write as they are (kept apart from [`Out::Frame`] so
/// that an [`Out`] is 32 bytes: a text frame's buffer leaves room for one other variant).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Order {
    /// Write notifications framed once for every receiver ([`Framed`]), from the one at this
    /// index on: what operations held back is pushed to a receiver as one item. (Frames, not an
    /// order about the socket: [`Out::is_order`].)
    Write(Arc<Framed>, u32),
    /// Close the socket now with this code and reason.
    Close { code: u16, reason: &'static str },
    /// Close the socket after this delay unless the client closes it first.
    CloseAfter(Duration),
    /// Cancel a pending [`Order::CloseAfter`]: the socket carries a participant again.
    KeepOpen,
    /// The rest of frames a pusher wrote in part ([`Sink`]): the writer's first bytes, before
    /// anything else (they are the middle of a frame). Only for the socket they were begun on:
    /// dropped with it.
    Rest(Box<[u8]>),
}

/// How every notification frame starts (replies have an `id` there).
pub(super) const NOTE_PREFIX: &str = r#"{"jsonrpc":"2.0","method":"#;

/// Whether a frame the server queued is a notification (else a response).
pub(crate) fn is_notification(frame: &str) -> bool {
    frame.starts_with(NOTE_PREFIX)
}

/// The sequence number a notification frame ends with (`…,"seq":N}`, as the room serialises it).
pub(crate) fn seq_of(frame: &str) -> u64 {
    let body = frame.strip_suffix('}').unwrap_or(frame);
    body.rsplit(':').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

impl Out {
    /// Payload bytes.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Out::Frame(f) => f.len(),
            Out::Order(Order::Write(framed, from)) => framed.payload_from(*from),
            Out::Order(Order::Rest(rest)) => rest.len(),
            Out::Order(_) => 0,
        }
    }

    /// Frames.
    pub(crate) fn frames(&self) -> usize {
        match self {
            Out::Frame(_) => 1,
            Out::Order(Order::Write(framed, from)) => framed.len().saturating_sub(*from as usize),
            Out::Order(_) => 0,
        }
    }

    /// Whether this is an order about the socket (not frames).
    pub(crate) fn is_order(&self) -> bool {
        matches!(self, Out::Order(order) if !matches!(order, Order::Write(..) | Order::Rest(_)))
    }

    /// Whether a pusher may write this itself ([`Sink`]): frames, and not many bytes of them.
    pub(super) fn is_direct(&self) -> bool {
        match self {
            Out::Frame(f) => f.len() + 4 <= DIRECT_MAX,
            Out::Order(Order::Write(framed, from)) => framed.bytes_from(*from).len() <= DIRECT_MAX,
            Out::Order(_) => false,
        }
    }

    /// Whether this is notifications only ([`Out::note`], or framed ones).
    pub(super) fn is_notes(&self) -> bool {
        matches!(self, Out::Order(Order::Write(..))) || self.note().is_some()
    }

    /// The frame, if this is a notification (replayable on a resume).
    pub(super) fn note(&self) -> Option<&Utf8Bytes> {
        match self {
            Out::Frame(f) if f.as_str().starts_with(NOTE_PREFIX) => Some(f),
            _ => None,
        }
    }
}

/// `items` with framed notifications given one by one (for what needs them so: rare paths).
pub(crate) fn one_by_one(items: impl IntoIterator<Item = Out>) -> impl Iterator<Item = Out> {
    items.into_iter().flat_map(|out| -> Box<dyn Iterator<Item = Out>> {
        match out {
            Out::Order(Order::Write(framed, from)) => {
                let frames: Vec<Out> = framed.frames_from(from).iter().cloned().map(Out::Frame).collect();
                Box::new(frames.into_iter())
            }
            other => Box::new(std::iter::once(other)),
        }
    })
}
