//! The three ways a participant talks to a server: OpenVidu JSON-RPC (signalroom), raw text
//! frames (the tokio-tungstenite baseline) and Socket.IO 4 over Engine.IO v4 (the Socket.IO
//! baseline). Each knows how to join a room and how to frame a signal; receivers recognise a
//! signal by the `@` that starts every payload (no other frame of these protocols contains one).

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::json;

use crate::wire::{self, ConnectOptions, OP_CLOSE, OP_PING, OP_TEXT, Reader, Writer};

/// The protocol a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenVidu 2.x JSON-RPC at `/openvidu` (`joinRoom`, `sendMessage`).
    OpenVidu,
    /// Raw text frames: every frame is a signal.
    Raw,
    /// Socket.IO 4: `42["signal",data]` events in rooms.
    SocketIo,
}

/// Where a participant joins: the room (OpenVidu session id) and, for OpenVidu, its token.
#[derive(Debug, Clone)]
pub(crate) struct Seat {
    pub room: String,
    pub token: Option<String>,
}

/// A joined participant.
pub(crate) struct Joined {
    pub reader: Reader,
    pub writer: Writer,
}

/// The first byte of every signal payload.
pub(crate) const MARK: u8 = b'@';

/// Nanoseconds since the first call, the clock shared by senders and receivers of this process.
pub(crate) fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Signal data: `@<send time ns, 20 digits>#<seq, 10 digits>` padded with `x` to `size` bytes.
pub(crate) fn signal_data(out: &mut Vec<u8>, sent_ns: u64, seq: u64, size: usize) {
    use std::io::Write as _;
    let start = out.len();
    let _ = write!(out, "@{sent_ns:020}#{seq:010}");
    while out.len() - start < size {
        out.push(b'x');
    }
}

/// The send time and sequence number of the signal in `frame`, if it carries one.
pub(crate) fn parse_signal(frame: &[u8]) -> Option<(u64, u64)> {
    let at = memchr::memchr(MARK, frame)?;
    let digits = frame.get(at + 1..at + 32)?;
    let mut ts = 0u64;
    for &d in &digits[..20] {
        ts = ts * 10 + u64::from(d.wrapping_sub(b'0'));
    }
    let mut seq = 0u64;
    for &d in &digits[21..31] {
        seq = seq * 10 + u64::from(d.wrapping_sub(b'0'));
    }
    Some((ts, seq))
}

/// What an error response carries (a searcher made once: each received frame is searched).
static ERROR: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"error\":{"));

impl Dialect {
    /// The name used in tables and JSON.
    pub(crate) fn server_name(self) -> &'static str {
        match self {
            Dialect::OpenVidu => "signalroom",
            Dialect::Raw => "raw",
            Dialect::SocketIo => "socketio",
        }
    }

    /// Connects and joins `seat`. Returns once the server confirmed the join (OpenVidu: the
    /// `joinRoom` result; Socket.IO: the namespace CONNECT ack, sent after the room join; raw:
    /// the upgrade).
    pub(crate) async fn join(
        self,
        addr: SocketAddr,
        seat: &Seat,
        opts: ConnectOptions,
    ) -> io::Result<Joined> {
        match self {
            Dialect::Raw => {
                // (The path names the room; a raw-server without `--rooms` has one room.)
                let (mut reader, writer) = wire::connect(addr, &format!("/{}", seat.room), opts).await?;
                if opts.answered {
                    // The first frame is the join's answer (`raw-server --join-answers`).
                    match reader.next().await? {
                        Some(frame) if frame.opcode == OP_TEXT => {}
                        _ => return Err(io::Error::other("raw join: no answer")),
                    }
                }
                Ok(Joined { reader, writer })
            }
            Dialect::SocketIo => {
                let path = format!("/socket.io/?EIO=4&transport=websocket&room={}", seat.room);
                let (mut reader, mut writer) = wire::connect(addr, &path, opts).await?;
                // Engine.IO open packet `0{...}`, then our namespace CONNECT `40`, answered `40{"sid":..}`.
                let mut sent_connect = false;
                loop {
                    let Some(frame) = reader.next().await? else {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before CONNECT"));
                    };
                    let payload = reader.payload(&frame);
                    match frame.opcode {
                        OP_TEXT if payload.first() == Some(&b'0') && !sent_connect => {
                            writer.send_text(b"40").await?;
                            sent_connect = true;
                        }
                        OP_TEXT if payload.starts_with(b"40") => break,
                        OP_TEXT if payload.starts_with(b"44") => {
                            return Err(io::Error::other(String::from_utf8_lossy(payload).into_owned()));
                        }
                        OP_TEXT if payload == b"2" => writer.send_text(b"3").await?,
                        OP_PING => {
                            let p = payload.to_vec();
                            writer.pong(&p).await?;
                        }
                        OP_CLOSE => return Err(io::Error::other("closed by the server")),
                        _ => {}
                    }
                }
                Ok(Joined { reader, writer })
            }
            Dialect::OpenVidu => {
                let token = seat.token.as_deref().unwrap_or_default();
                let path = format!("/openvidu?sessionId={}", seat.room);
                let (mut reader, mut writer) = wire::connect(addr, &path, opts).await?;
                let join = json!({"jsonrpc":"2.0","method":"joinRoom","id":1,"params":{
                    "token": token, "session": seat.room, "platform": "signalroom-bench loadgen",
                    "sdkVersion": "2.32.2", "metadata": "", "secret": "", "recorder": false, "stt": false}});
                writer.send_text(join.to_string().as_bytes()).await?;
                loop {
                    let Some(frame) = reader.next().await? else {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed before joinRoom answered",
                        ));
                    };
                    let payload = reader.payload(&frame);
                    match frame.opcode {
                        // The first frame carrying an id is the joinRoom answer (we sent no other request).
                        OP_TEXT if memchr::memmem::find(payload, b"\"id\":1").is_some() => {
                            // (`"result"` first: it comes early in an answer, `"error"` is
                            // searched only when it is not there.)
                            if memchr::memmem::find(payload, b"\"result\"").is_none()
                                && memchr::memmem::find(payload, b"\"error\"").is_some()
                            {
                                return Err(io::Error::other(format!(
                                    "joinRoom refused: {}",
                                    String::from_utf8_lossy(payload)
                                )));
                            }
                            break;
                        }
                        OP_PING => {
                            let p = payload.to_vec();
                            writer.pong(&p).await?;
                        }
                        OP_CLOSE => return Err(io::Error::other("closed by the server")),
                        _ => {}
                    }
                }
                Ok(Joined { reader, writer })
            }
        }
    }

    /// Appends the frame payload that sends `data` as a broadcast signal to the room.
    pub(crate) fn signal_frame(self, out: &mut Vec<u8>, data: &[u8], id: u64) {
        match self {
            Dialect::Raw => out.extend_from_slice(data),
            Dialect::SocketIo => {
                out.extend_from_slice(b"42[\"signal\",\"");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\"]");
            }
            Dialect::OpenVidu => {
                out.extend_from_slice(
                    br#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{\"to\":[],\"data\":\""#,
                );
                out.extend_from_slice(data);
                out.extend_from_slice(br#"\",\"type\":\"signal:bench\"}"},"id":"#);
                out.extend_from_slice(id.to_string().as_bytes());
                out.push(b'}');
            }
        }
    }

    /// Whether this text frame is an Engine.IO ping that must be answered with `3`.
    pub(crate) fn is_engine_ping(self, payload: &[u8]) -> bool {
        self == Dialect::SocketIo && payload == b"2"
    }

    /// Whether this text frame, not a signal ([`parse_signal`] found none), reports a refused
    /// request (an error response). A notification (the server's request, `method` right after
    /// `jsonrpc`, as the server writes them) is not searched: receivers get hundreds of them a
    /// join, and this is the load generator's only per-frame scan of them.
    pub(crate) fn is_error(self, payload: &[u8]) -> bool {
        self == Dialect::OpenVidu
            && !payload.starts_with(br#"{"jsonrpc":"2.0","method":""#)
            && ERROR.find(payload).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_data_round_trips_through_every_dialect() {
        let mut data = Vec::new();
        signal_data(&mut data, 123_456_789, 42, 64);
        assert_eq!(data.len(), 64);
        for dialect in [Dialect::Raw, Dialect::SocketIo, Dialect::OpenVidu] {
            let mut frame = Vec::new();
            dialect.signal_frame(&mut frame, &data, 7);
            assert_eq!(parse_signal(&frame), Some((123_456_789, 42)), "{dialect:?}");
        }
        let mut frame = Vec::new();
        Dialect::OpenVidu.signal_frame(&mut frame, &data, 7);
        let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        let inner: serde_json::Value =
            serde_json::from_str(v["params"]["message"].as_str().unwrap()).unwrap();
        assert_eq!(inner["data"].as_str().unwrap().as_bytes(), &data[..]);
        assert_eq!(inner["type"], "signal:bench");
    }

    #[test]
    fn error_responses_are_told_from_results_and_notifications() {
        let ov = Dialect::OpenVidu;
        assert!(ov.is_error(br#"{"id":4,"jsonrpc":"2.0","error":{"code":401,"message":"no"}}"#));
        assert!(!ov.is_error(br#"{"id":4,"jsonrpc":"2.0","result":{"sessionId":"x"}}"#));
        // A notification is never an error response, whatever its params say.
        assert!(!ov.is_error(br#"{"jsonrpc":"2.0","method":"x","params":{"data":""error":{"}}"#));
        assert!(!Dialect::Raw.is_error(br#"{"error":{}}"#));
    }

    #[test]
    fn frames_without_a_mark_are_not_signals() {
        assert_eq!(parse_signal(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#), None);
        assert_eq!(parse_signal(b"@123"), None);
    }
}
