//! How a session connects: [`ConnectOptions`] and the timings openvidu-browser uses (request
//! timeout, ping interval and timeout, reconnection interval).

use std::time::Duration;

/// Timeout of every request but `ping`, as openvidu-browser.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between pings, as openvidu-browser.
pub const PING_INTERVAL: Duration = Duration::from_millis(signalroom_core::limits::PING_INTERVAL_MS);
/// A ping without a pong within this time means the link is broken, as openvidu-browser.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to open a WebSocket (TCP, TLS and HTTP upgrade).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between two attempts to reopen a broken link, as openvidu-browser.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(3);
/// Attempts to reopen a broken link before giving up, as openvidu-browser (~100 minutes).
pub const RECONNECT_ATTEMPTS: u32 = 2000;

/// How [`Session::connect_with`](crate::Session::connect_with) joins and keeps the link.
///
/// Built from [`ConnectOptions::default`] and the `with_*` methods, or by assigning the public
/// fields of a default value:
///
/// ```
/// use std::time::Duration;
/// use signalroom_client::ConnectOptions;
///
/// let opts = ConnectOptions::default()
///     .with_metadata(r#"{"name":"bot"}"#)
///     .with_reconnect(Duration::from_millis(100), 5);
/// assert_eq!(opts.reconnect_attempts, 5);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Client data, sent as `joinRoom.metadata`; becomes the Connection's `clientData`.
    pub metadata: String,
    /// Free text describing this client, sent as `joinRoom.platform`.
    pub platform: String,
    /// Accept any TLS certificate for `wss://` tokens (self-signed development certificates).
    /// Never enable this in production: it makes the link open to interception.
    pub accept_invalid_certs: bool,
    /// Timeout of every request but `ping`.
    pub request_timeout: Duration,
    /// Interval between pings; also sent as the `interval` of the first ping.
    pub ping_interval: Duration,
    /// A ping without a pong within this time means the link is broken.
    pub ping_timeout: Duration,
    /// Time allowed to open a WebSocket.
    pub connect_timeout: Duration,
    /// Time between two attempts to reopen a broken link.
    pub reconnect_interval: Duration,
    /// Attempts to reopen a broken link before the session ends with `networkDisconnect`;
    /// 0 disables reconnection.
    pub reconnect_attempts: u32,
    /// Ask a signalroom server for the session's signal history on joining: it comes as
    /// [`Event::Signal`](crate::Event::Signal)s marked [`history`](crate::SignalEvent::history),
    /// oldest first, after the `ConnectionCreated` events and before any live signal. Other
    /// servers (and sessions keeping no history) send none.
    pub history: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            metadata: String::new(),
            platform: default_platform(),
            accept_invalid_certs: false,
            request_timeout: REQUEST_TIMEOUT,
            ping_interval: PING_INTERVAL,
            ping_timeout: PING_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            reconnect_interval: RECONNECT_INTERVAL,
            reconnect_attempts: RECONNECT_ATTEMPTS,
            history: false,
        }
    }
}

impl ConnectOptions {
    /// Sets the client data.
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Asks for the session's signal history on joining (see [`ConnectOptions::history`]).
    pub fn with_history(mut self, history: bool) -> Self {
        self.history = history;
        self
    }

    /// Sets the platform description.
    pub fn with_platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = platform.into();
        self
    }

    /// Accepts any TLS certificate (development only).
    pub fn with_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the ping interval and the pong timeout.
    pub fn with_ping(mut self, interval: Duration, timeout: Duration) -> Self {
        self.ping_interval = interval;
        self.ping_timeout = timeout;
        self
    }

    /// Sets the time allowed to open a WebSocket.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the interval between reconnection attempts and their number (0 disables).
    pub fn with_reconnect(mut self, interval: Duration, attempts: u32) -> Self {
        self.reconnect_interval = interval;
        self.reconnect_attempts = attempts;
        self
    }
}

/// `signalroom-client <version> (Rust)`.
pub fn default_platform() -> String {
    format!("signalroom-client {} (Rust)", env!("CARGO_PKG_VERSION"))
}
