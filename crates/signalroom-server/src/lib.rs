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
//! # The walk of one signal
//!
//! A participant's `sendMessage`, from its socket to the sockets of its receivers:
//!
//! 1. **`ws`**: the socket's reader reads the frame; `ws::rpc` reads a `sendMessage` of the usual
//!    shape by hand (`signalroom_core::signal_frame`, checked byte for byte against serde), anything
//!    else with serde, checks it, and hands it over as one `sending::Outgoing`.
//! 2. **`sending`**: the socket's signals on their way, in the order it sent them: the signal hook's
//!    verdict first when one is set, then the hub; outcomes come back in order, and a refusal goes
//!    back to `ws::rpc` to answer. `ws` sees no broker type.
//! 3. **`hub`**: the operation (`op::SignalOp`: session, sender, recipients, data, type) goes to
//!    the broker in one call (`Broker::signal`), which answers with a `broker::Signalled`: applied
//!    at once (in this process), or handed over and numbered elsewhere (Redis) while the socket's
//!    next request is read; `sending` keeps the outcomes in order either way.
//! 4. **`broker`**: under the session's lock, `room::Room::signal` routes it and serialises its
//!    notification once, numbered in the session's sequence (`outbox::Note`); `broker::deliver`
//!    pushes it to each receiver's outbox, or `broker::Held` holds a burst's broadcasts to push
//!    them together. With Redis, the operation is appended to the session's log first and every
//!    node's replica applies it the same way (`broker::redis::replica`).
//! 5. **`outbox`**: each receiver's bounded queue (a reference to the one notification per
//!    receiver). A push that finds the receiver's writer asleep writes the frame itself
//!    (`outbox::direct`), after the session's lock is released (`outbox::Writes`).
//! 6. **`ws::writer`**: the receiver's writer drains its outbox into its socket, framed by `wire`.
//!
//! Then, back in `sending`, the signal's outcome: its event ([`ServerEvent::SignalSent`]) and
//! metrics, or evictions of receivers too slow to take it.
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
