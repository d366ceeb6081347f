//! Limits, as named constants. The server may be configured within them; every one of them is a
//! flag of `signalroom serve` (see the table of limits in `docs/server/limits.md`).

/// Maximum size of an inbound WebSocket frame accepted by the server: OpenVidu's 50 KiB
/// (`setMaxTextMessageBufferSize(50*1024)`, spec §2.1). Larger frames close the socket with 1009
/// (message too big), as OpenVidu's servlet container does.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 50 * 1024;

/// Default maximum size of a REST request body. Larger bodies get a 413 with OpenVidu's JSON error.
pub const DEFAULT_MAX_REST_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Default maximum size in bytes of a signal's `data` (UTF-8). OpenVidu has no limit of its own
/// (spec §5.1): a `sendMessage` is bounded by the frame, `POST /signal` by the request body. This
/// default is the body limit, so only those two bound a signal unless configured lower.
pub const DEFAULT_MAX_SIGNAL_DATA_BYTES: usize = DEFAULT_MAX_REST_BODY_BYTES;

/// Default maximum size of a connection's metadata (the `metadata` of `joinRoom`, the `data` of a
/// connection created through REST). Every participant receives everyone's metadata when it joins.
pub const DEFAULT_MAX_METADATA_BYTES: usize = 10 * 1024;

/// Default bound of a socket's write buffer (tungstenite's): what a client that does not read can
/// make the server hold for it beyond its send queue (automatic pongs included).
pub const DEFAULT_MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Default time a write to a socket may stay blocked (the client does not read) before the
/// participant is evicted with `networkDisconnect`, in seconds.
pub const DEFAULT_WRITE_TIMEOUT_SECS: u64 = 15;

/// Default time a new TCP connection has to send its first complete HTTP request (the WebSocket
/// upgrade included), and a keep-alive connection the headers of its next one, in seconds.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;

/// Default time an upgraded socket has to send its first frame (openvidu-browser pings at once),
/// in seconds.
pub const DEFAULT_FIRST_FRAME_TIMEOUT_SECS: u64 = 10;

/// Default time a socket has to join (`joinRoom`, or `connect` for a reconnection) after it
/// opened, in seconds. OpenVidu keeps such sockets open as long as they ping.
pub const DEFAULT_JOIN_TIMEOUT_SECS: u64 = 60;

/// Default maximum number of TCP connections open at once; connections over it are closed at
/// once, with a log line.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// Default maximum number of sessions; creating another one is refused (and `GET /sessions`
/// bounded by it).
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// Maximum length in bytes of a signal `type`, not counting its `signal:` prefix.
pub const MAX_SIGNAL_TYPE_BYTES: usize = 256;

/// Maximum number of entries in a signal's `to` array.
pub const MAX_SIGNAL_RECIPIENTS: usize = 10_000;

/// Interval between client pings, in milliseconds, as openvidu-browser sends it.
pub const PING_INTERVAL_MS: u64 = 5_000;

/// Ping interval assumed by the server when the first ping carries none (Kurento default).
pub const DEFAULT_SERVER_PING_INTERVAL_MS: u64 = 20_000;

/// The server closes a socket after this many ping intervals without a ping.
pub const PING_WATCHDOG_FACTOR: u64 = 3;

/// Seconds a participant whose socket dropped is kept, waiting for a `connect` (reconnection).
pub const RECONNECTION_GRACE_SECS: u64 = 10;
