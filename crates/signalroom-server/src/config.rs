//! [`Config`]: everything the server can be told (listening, secret, limits, broker, TLS,
//! webhooks, the signal hook), with the defaults and the checks a bad value fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use signalroom_core::limits;
use url::Url;

pub use crate::hook::SignalHookConfig;
pub use crate::webhook::WebhookConfig;

/// Everything the server can be told. [`Config::local`] is a development default on a random
/// loopback port.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The URL clients reach the server at; tokens are derived from it (`http` → `ws`,
    /// `https` → `wss`). Default: derived from the bound address and TLS.
    pub public_url: Option<Url>,
    /// The REST secret (Basic auth `OPENVIDUAPP:<secret>`).
    pub secret: String,
    /// TLS certificate and key (PEM). Tokens become `wss://`.
    pub tls: Option<TlsConfig>,
    /// Maximum size of a signal's `data` in bytes.
    pub max_signal_bytes: usize,
    /// Maximum size of an inbound WebSocket frame; larger ones close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Maximum size of a REST request body; larger ones get a 413.
    pub max_rest_body_bytes: usize,
    /// Maximum size of a connection's metadata (`joinRoom`'s `metadata`, REST's `data`).
    pub max_metadata_bytes: usize,
    /// Bound of a socket's write buffer, beyond its send queue (automatic pongs included).
    pub max_write_buffer_bytes: usize,
    /// How long a write may stay blocked (the client does not read) before the participant is
    /// evicted with `networkDisconnect`.
    pub write_timeout: Duration,
    /// How long a new TCP connection has to send a complete first request (and a keep-alive one
    /// the headers of its next).
    pub header_timeout: Duration,
    /// How long an upgraded socket has to send its first frame.
    pub first_frame_timeout: Duration,
    /// How long a socket has to join (or reconnect) after it opened; zero: for ever, as OpenVidu.
    pub join_timeout: Duration,
    /// Maximum number of TCP connections open at once; more are closed at once, with a log line.
    pub max_connections: usize,
    /// Maximum number of sessions; creating more is refused.
    pub max_sessions: usize,
    /// Outbound frames queued per participant before it is evicted as too slow; also the
    /// number of written notifications kept for a resume.
    pub send_queue_capacity: usize,
    /// The same bound in bytes.
    pub send_queue_bytes: usize,
    /// How long a participant whose socket dropped is kept for a reconnection.
    pub reconnection_grace: Duration,
    /// A draining node (one sharing its sessions, stopped on purpose) closes its sockets spread
    /// over this long, so that the other nodes are not hit by every reconnection at once.
    pub drain_window: Duration,
    /// A draining node stops at the latest this long after it began, sockets closed or not.
    pub drain_timeout: Duration,
    /// How often never-joined sessions are garbage-collected; zero disables.
    pub session_gc_interval: Duration,
    /// Age after which a never-joined session is garbage-collected.
    pub session_gc_threshold: Duration,
    /// How long after `leaveRoom` or an eviction the server closes a socket the client keeps open.
    pub linger_close: Duration,
    /// Where the sessions live: `None` in this process (one node); `redis://HOST:PORT[/DB]` (or
    /// `rediss://`, with a password in the URL if needed), `redis+sentinel://H:26379,.../MASTER`
    /// or `redis-cluster://H:6379,...` to share them with other nodes.
    pub broker: Option<String>,
    /// Make a self-signed certificate at start (for the public URL's host) and serve TLS with it;
    /// ignored when `tls` is given.
    pub tls_self_signed: bool,
    /// Count and serve Prometheus metrics.
    pub metrics: bool,
    /// Serve the metrics on this address rather than at `/metrics` of the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Post OpenVidu's webhook events.
    pub webhook: Option<WebhookConfig>,
    /// The signal history of sessions created without a `signalHistory` of their own; `None`:
    /// they keep none, as OpenVidu.
    pub signal_history: Option<signalroom_core::history::SignalHistory>,
    /// Asked before delivering signals of the types it covers.
    pub signal_hook: Option<SignalHookConfig>,
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

impl Config {
    /// What one participant's queue holds at most.
    pub(crate) fn send_queue_limits(&self) -> crate::outbox::Limits {
        crate::outbox::Limits { frames: self.send_queue_capacity, bytes: self.send_queue_bytes }
    }

    /// Development defaults on `127.0.0.1:0` with the secret `MY_SECRET`.
    pub fn local() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            secret: DEFAULT_SECRET.to_owned(),
            tls: None,
            max_signal_bytes: limits::DEFAULT_MAX_SIGNAL_DATA_BYTES,
            max_frame_bytes: limits::DEFAULT_MAX_FRAME_BYTES,
            max_rest_body_bytes: limits::DEFAULT_MAX_REST_BODY_BYTES,
            max_metadata_bytes: limits::DEFAULT_MAX_METADATA_BYTES,
            max_write_buffer_bytes: limits::DEFAULT_MAX_WRITE_BUFFER_BYTES,
            write_timeout: Duration::from_secs(limits::DEFAULT_WRITE_TIMEOUT_SECS),
            header_timeout: Duration::from_secs(limits::DEFAULT_HEADER_TIMEOUT_SECS),
            first_frame_timeout: Duration::from_secs(limits::DEFAULT_FIRST_FRAME_TIMEOUT_SECS),
            join_timeout: Duration::from_secs(limits::DEFAULT_JOIN_TIMEOUT_SECS),
            max_connections: limits::DEFAULT_MAX_CONNECTIONS,
            max_sessions: limits::DEFAULT_MAX_SESSIONS,
            send_queue_capacity: DEFAULT_SEND_QUEUE,
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            reconnection_grace: Duration::from_secs(limits::RECONNECTION_GRACE_SECS),
            drain_window: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            session_gc_interval: Duration::from_secs(900),
            session_gc_threshold: Duration::from_secs(3600),
            linger_close: Duration::from_secs(10),
            broker: None,
            tls_self_signed: false,
            metrics: true,
            metrics_listen: None,
            webhook: None,
            signal_history: None,
            signal_hook: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 4443)), ..Self::local() }
    }
}

pub use signalroom_core::rest::DEFAULT_SECRET;

/// Default number of outbound frames queued per participant.
pub const DEFAULT_SEND_QUEUE: usize = 4096;

/// Default number of bytes queued per participant (and kept for a resume).
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 16 * 1024 * 1024;
