//! The signalroom server: OpenVidu 2.32-compatible sessions, connections and signals.
//!
//! - WebSocket JSON-RPC 2.0 at `/openvidu` (what openvidu-browser speaks),
//! - the REST API at `/openvidu/api` (sessions, connections, tokens, `POST /signal`, config),
//! - an in-process broker: per-session state, one bounded send queue and one writer task per socket,
//! - [`cli`]: the `signalroom serve` command line, shared by the binary and `python -m signalroom`.
//!
//! Run it in-process (tests, embedding):
//!
//! ```no_run
//! # async fn demo() -> signalroom_server::Result<()> {
//! use signalroom_server::{Config, Server};
//!
//! let server = Server::start(Config { secret: "s3cret".into(), ..Config::local() }).await?;
//! println!("REST at {}/openvidu/api", server.url());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod cli;
mod config;
mod error;
mod page;
mod queue;
mod rest;
mod server;
mod state;
mod util;
mod ws;

pub use config::{Config, DEFAULT_SECRET, DEFAULT_SEND_QUEUE, TlsConfig};
pub use error::{Error, Result};
pub use server::Server;
