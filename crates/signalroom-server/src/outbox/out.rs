//! What an outbox queues ([`Out`]): notifications ([`Note`]: shared by every receiver of a
//! fan-out, with their sequence number), replies, notifications framed once for all their
//! receivers ([`Framed`]), and orders about the socket ([`Order`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;

use super::DIRECT_MAX;

/// Something for a socket's writer: 40 bytes (a reply's buffer and the variant), the size of a
/// slot in every receiver's queue that a fan-out writes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Out {
    /// A notification (shared: a fan-out serialises it once, and each receiver's slot holds a
    /// reference).
    Note(Note),
    /// A reply to a request of the socket it was written for.
    Reply(Utf8Bytes),
    /// An order about the socket itself, or frames framed already ([`Order::Write`]).
    Order(Order),
}

/// A notification: its frame, serialised once for all its receivers, and its number in the
/// session's sequence (the frame's `seq`; 0 for a notice outside the sequence, such as the
/// eviction of everyone from a session lost). Cloned for each receiver: one reference count, on
/// one pointer (the two live behind it, made once per notification).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Note(Arc<(u64, Utf8Bytes)>);

impl Note {
    /// Notification `frame`, number `seq` of its session's sequence.
    pub(crate) fn new(seq: u64, frame: Utf8Bytes) -> Self {
        Self(Arc::new((seq, frame)))
    }

    /// A notice outside the session's sequence (nothing acknowledges or replays it by number).
    pub(crate) fn unnumbered(frame: Utf8Bytes) -> Self {
        Self::new(0, frame)
    }

    /// Its number in the session's sequence.
    pub(crate) fn seq(&self) -> u64 {
        self.0.0
    }

    /// The frame's text.
    pub(crate) fn frame(&self) -> &Utf8Bytes {
        &self.0.1
    }

    /// The frame's bytes.
    pub(crate) fn len(&self) -> usize {
        self.0.1.len()
    }
}

/// Notifications framed once, headers and payloads back to back: the writer of every receiver
/// writes them from here, as they are (a server's frames are not masked, so they are the same
/// bytes on every socket). A receiver gets those from an index on (a participant that joined
/// among them gets those that followed its join). The frames are kept too, for what needs them
/// one by one (a resume, a detached queue, a client that acknowledges).
#[derive(Debug, PartialEq)]
pub(crate) struct Framed {
    bytes: Vec<u8>,
    frames: Vec<Note>,
    /// Where each frame's header starts in `bytes`, and the payload bytes before it.
    starts: Vec<(usize, usize)>,
    payload: usize,
}

impl Framed {
    /// Frames `frames` (notifications, in order).
    pub(crate) fn new(frames: Vec<Note>) -> Self {
        let payload: usize = frames.iter().map(|f| f.len()).sum();
        let mut bytes = Vec::with_capacity(payload + 4 * frames.len());
        let mut starts = Vec::with_capacity(frames.len());
        let mut before = 0;
        for f in &frames {
            starts.push((bytes.len(), before));
            bytes.extend_from_slice(crate::wire::Header::new(crate::wire::TEXT, f.len()).as_bytes());
            bytes.extend_from_slice(f.frame().as_bytes());
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
    pub(crate) fn frames_from(&self, from: u32) -> &[Note] {
        self.frames.get(from as usize..).unwrap_or_default()
    }

    /// The payload bytes of the frames from index `from` on.
    pub(crate) fn payload_from(&self, from: u32) -> usize {
        self.starts.get(from as usize).map_or(0, |&(_, before)| self.payload - before)
    }
}

/// An order about a socket, or frames to write as they are (an enum of its own, so that an
/// [`Out`] is no larger than a reply).
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

impl Out {
    /// Payload bytes.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Out::Note(n) => n.len(),
            Out::Reply(f) => f.len(),
            Out::Order(Order::Write(framed, from)) => framed.payload_from(*from),
            Out::Order(Order::Rest(rest)) => rest.len(),
            Out::Order(_) => 0,
        }
    }

    /// Frames.
    pub(crate) fn frames(&self) -> usize {
        match self {
            Out::Note(_) | Out::Reply(_) => 1,
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
            Out::Note(_) | Out::Reply(_) => self.bytes() + 4 <= DIRECT_MAX,
            Out::Order(Order::Write(framed, from)) => framed.bytes_from(*from).len() <= DIRECT_MAX,
            Out::Order(_) => false,
        }
    }

    /// Whether this is notifications only (one, or framed ones).
    pub(super) fn is_notes(&self) -> bool {
        matches!(self, Out::Note(_) | Out::Order(Order::Write(..)))
    }

    /// The notification, if this is one (replayable on a resume).
    pub(super) fn note(&self) -> Option<&Note> {
        match self {
            Out::Note(n) => Some(n),
            _ => None,
        }
    }

    /// The text of this frame, if it is one frame (a notification or a reply).
    pub(crate) fn text(&self) -> Option<&Utf8Bytes> {
        match self {
            Out::Note(n) => Some(n.frame()),
            Out::Reply(f) => Some(f),
            Out::Order(_) => None,
        }
    }

    /// The last notification of this, if it holds any (one, or the last of framed ones).
    pub(super) fn last_note(&self) -> Option<&Note> {
        match self {
            Out::Order(Order::Write(framed, from)) => framed.frames_from(*from).last(),
            _ => self.note(),
        }
    }

    /// The notifications of this (one, or framed ones), for a resume to keep.
    pub(super) fn notes(&self) -> &[Note] {
        match self {
            Out::Order(Order::Write(framed, from)) => framed.frames_from(*from),
            Out::Note(n) => std::slice::from_ref(n),
            _ => &[],
        }
    }
}

/// `items` with framed notifications given one by one (for what needs them so: rare paths).
pub(crate) fn one_by_one(items: impl IntoIterator<Item = Out>) -> impl Iterator<Item = Out> {
    items.into_iter().flat_map(|out| -> Box<dyn Iterator<Item = Out>> {
        match out {
            Out::Order(Order::Write(framed, from)) => {
                let frames: Vec<Out> = framed.frames_from(from).iter().cloned().map(Out::Note).collect();
                Box::new(frames.into_iter())
            }
            other => Box::new(std::iter::once(other)),
        }
    })
}
