//! A client of OpenVidu 2.x signalling, for signalroom servers and real OpenVidu deployments.
//!
//! - [`Session`] joins a session with a token over WebSocket JSON-RPC exactly as
//!   `openvidu-browser` 2.32 does (first `ping`, then `joinRoom`; a ping every 5 s; the link
//!   reopened with `connect` when it breaks), sends signals, and delivers every event in arrival
//!   order on a channel ([`EventReceiver`]) and per signal type as streams ([`Subscription`]).
//!   With a signalroom server, a reopened link resumes after the last notification handled: nothing
//!   sent meanwhile is lost or repeated, or [`Event::Reconnected`] says what was lost.
//! - [`ServerApi`] drives the REST API (`/openvidu/api`): sessions, connections (tokens) and
//!   server-sent signals.
//!
//! One reader task and one writer task own each socket; callers only talk to them through
//! channels, so every future is `Send + 'static`-friendly and dropping one never corrupts the
//! link. Handles are `Arc`s: clone them freely.
//!
//! ```
//! use futures_util::StreamExt;
//! use signalroom_client::{ConnectionOptions, Event, ServerApi, Session, Signal};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = signalroom_server::Server::start(signalroom_server::Config::local()).await?;
//! # let url = server.url().to_owned();
//! let api = ServerApi::new(&url, "MY_SECRET")?; // url: e.g. "http://127.0.0.1:4443"
//! api.create_session(Some("lobby")).await?;
//! let conn = api.create_connection("lobby", &ConnectionOptions::default().with_data("bot")).await?;
//!
//! let (session, mut events) = Session::connect(&conn.token).await?;
//! let mut chat = session.subscribe("signal:chat");
//! session.signal(Signal::broadcast("chat", "hi")?).await?; // resolves when the server accepted it
//! let echo = chat.next().await.expect("own broadcasts come back");
//! assert_eq!(echo.data, "hi");
//! assert_eq!(echo.from_id(), Some(session.connection_id()));
//!
//! api.signal("lobby", "from the server", Some("chat"), &[]).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::ConnectionCreated(c) => println!("in the session: {} {}", c.connection_id, c.data),
//!         Event::Signal(s) if s.from.is_none() => break, // sent through the REST API
//!         _ => {}
//!     }
//! }
//! session.disconnect().await?;
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Errors are one enum, [`Error`]; [`Error::is_transient`] tells whether retrying may help.

mod api;
mod driver;
mod error;
mod event;
#[doc(hidden)]
pub mod fuzz;
mod hint;
mod inbound;
mod link;
mod options;
mod pending;
mod requests;
mod session;
mod state;
mod streams;
mod tls;

pub use api::{API_TIMEOUT, ApiOptions, ConnectionOptions, ServerApi};
pub use error::{BoxError, Error, Result};
pub use event::{Connection, Event, SIGNAL_EVENT, SignalEvent};
pub use hint::{Audience, Cause};
pub use options::{
    CONNECT_TIMEOUT, ConnectOptions, PING_INTERVAL, PING_TIMEOUT, RECONNECT_ATTEMPTS, RECONNECT_INTERVAL,
    REQUEST_TIMEOUT, default_platform,
};
pub use requests::{HandlerFuture, HandlerResult, REPLY_TYPE, REQUEST_TYPE, Request, RequestFailure};
pub use session::{EventReceiver, Session, StreamWriter, Subscription};
pub use signalroom_core::history::{HistoryEntry, SignalHistory};
pub use signalroom_core::rest::{ConnectionObject, ConnectionStatus, SessionObject, SignalRequest};
pub use signalroom_core::signal::Signal;
pub use signalroom_core::{ConnectionId, EndReason, Role, RpcSessionId, SessionId};
pub use state::SessionState;
pub use streams::{ACK_TYPE, IncomingStream, STREAM_TYPE, StreamAborted, WINDOW_BYTES, WINDOW_CHUNKS};

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync_static<T: Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>(_: &T) {}

    /// What the Python bindings rely on: shareable handles and futures they can move to tokio.
    #[test]
    fn handles_and_futures_cross_threads() {
        send_sync_static::<Session>();
        send_sync_static::<ServerApi>();
        send_sync_static::<Error>();
        send_sync_static::<Event>();
        send_sync_static::<Subscription>();
        send_sync_static::<EventReceiver>();
        send_static(&Session::connect("ws://127.0.0.1:1?sessionId=S&token=t"));
        let api = ServerApi::new("http://127.0.0.1:1", "s").unwrap();
        send_static(&async move { api.create_session(None).await });
        let _ = |session: Session| {
            let other = session.clone();
            send_static(&async move { session.signal(Signal::broadcast("chat", "x").unwrap()).await });
            send_static(&async move { other.disconnect().await })
        };
    }
}
