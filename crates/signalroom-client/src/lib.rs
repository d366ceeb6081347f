//! A client of OpenVidu 2.x signalling, for signalroom servers and real OpenVidu deployments.
//!
//! - [`Session`] joins a session with a token over WebSocket JSON-RPC exactly as
//!   `openvidu-browser` 2.32 does (first `ping`, then `joinRoom`; a ping every 5 s; the link
//!   reopened with `connect` when it breaks), sends signals, and delivers every event in arrival
//!   order on a channel ([`EventReceiver`]) and per signal type as streams ([`Subscription`]).
//! - [`ServerApi`] drives the REST API (`/openvidu/api`): sessions, connections (tokens) and
//!   server-sent signals.
//!
//! One reader task and one writer task own each socket; callers only talk to them through
//! channels, so every future is `Send + 'static`-friendly and dropping one never corrupts the
//! link. Handles are `Arc`s: clone them freely.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use signalroom_client::{ConnectionOptions, Event, ServerApi, Session, Signal};
//!
//! # async fn demo() -> signalroom_client::Result<()> {
//! let api = ServerApi::new("http://127.0.0.1:4443", "MY_SECRET")?;
//! api.create_session(Some("lobby")).await?;
//! let conn = api.create_connection("lobby", &ConnectionOptions::default()).await?;
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
//!         Event::Signal(s) if s.from.is_none() => break, // server-sent
//!         Event::ConnectionCreated(c) => println!("joined: {} {}", c.connection_id, c.data),
//!         _ => {}
//!     }
//! }
//! session.disconnect().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Errors are one enum, [`Error`]; [`Error::is_transient`] tells whether retrying may help.

mod api;
mod driver;
mod error;
mod event;
mod link;
mod options;
mod session;
mod tls;

pub use api::{API_TIMEOUT, ApiOptions, ConnectionOptions, ServerApi};
pub use error::{BoxError, Error, Result};
pub use event::{Connection, Event, SIGNAL_EVENT, SignalEvent};
pub use link::SessionState;
pub use options::{
    CONNECT_TIMEOUT, ConnectOptions, PING_INTERVAL, PING_TIMEOUT, RECONNECT_ATTEMPTS, RECONNECT_INTERVAL,
    REQUEST_TIMEOUT, default_platform,
};
pub use session::{EventReceiver, Session, Subscription};
pub use signalroom_core::rest::{ConnectionObject, ConnectionStatus, SessionObject, SignalRequest};
pub use signalroom_core::signal::Signal;
pub use signalroom_core::{ConnectionId, EndReason, Role, RpcSessionId, SessionId};
