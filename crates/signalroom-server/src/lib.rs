//! The signalroom server: OpenVidu 2.32-compatible sessions, connections and signals.
//!
//! - WebSocket JSON-RPC 2.0 at `/openvidu` (what openvidu-browser speaks),
//! - the REST API at `/openvidu/api` (sessions, connections, tokens, `POST /signal`, config),
//! - layers that each do one job: `room` (one session's rules, pure), `hub` (the operations both
//!   front ends call, emitting a [`ServerEvent`] each), `broker` (what nodes share; in-process by
//!   default), `outbox` (per participant, surviving a dropped socket for a zero-loss resume), and
//!   the thin front ends `ws` and `rest`, whose refusals map through one table (`refusal`),
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

mod admin;
mod broker;
pub mod cli;
mod config;
mod error;
mod events;
#[doc(hidden)]
pub mod fuzz;
mod heap;
pub mod hook;
mod hub;
mod limit;
mod metrics;
mod op;
mod outbox;
mod page;
mod refusal;
mod rest;
mod room;
mod sending;
mod server;
mod tls;
mod util;
mod webhook;
mod wire;
mod ws;

pub use config::{
    Config, DEFAULT_SECRET, DEFAULT_SEND_QUEUE, DEFAULT_SEND_QUEUE_BYTES, SignalHookConfig, TlsConfig,
    WebhookConfig,
};
pub use error::{Error, Result};
pub use events::ServerEvent;
pub use limit::ConnectionCounts;
pub use server::Server;
pub use webhook::EVENT_NAMES;
