//! Limits, as named constants. The server may be configured within them.

/// Default maximum size in bytes of a signal's `data` (UTF-8). OpenVidu has no explicit limit but
/// caps inbound frames at 50 KiB; the JSON-escaped `data` must fit in that frame.
pub const DEFAULT_MAX_SIGNAL_DATA_BYTES: usize = 45 * 1024;

/// Maximum size of an inbound WebSocket text frame accepted by the server. Larger frames close the
/// socket with 1009 (message too big), as OpenVidu's servlet container does at 50 KiB. Ours is
/// larger so that a `data` of the configured maximum always fits after JSON escaping.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

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
