//! `signalroom._native`: the Rust half of the Python package `signalroom`.
//!
//! A thin mirror of [`signalroom_client`] (and of the embedded [`signalroom_server`]): it converts
//! arguments, forwards to Rust and converts results back; the Python package (`python/signalroom`)
//! adds handlers, `wait_for`, streams, stubs and the pytest plugin on top.
//!
//! - Every coroutine is a Rust future on pyo3-async-runtimes' one tokio runtime
//!   ([`pyo3_async_runtimes::tokio::future_into_py`]); inputs are owned before the future starts,
//!   and cancelling the Python awaitable drops the Rust future (the client is cancel-safe;
//!   `Session.start_signal`, the hot path, returns a lighter awaitable than an asyncio future,
//!   [`bridge::Sent`], which does the same).
//! - Events cross to asyncio in batches, those of every session of an event loop together: each
//!   session attached to its loop's `EventHub` forwards its events there, and `EventHub.next()`
//!   returns everything queued since the previous call, grouped by session, converted under one
//!   GIL acquisition ([`hub`]).
//! - Errors become the classes of `signalroom.errors` ([`errors`]).
//! - Blocking work (starting or stopping the embedded server) runs without the GIL.
//!
//! Built by maturin from the repository's `pyproject.toml` (`pip install .`, `maturin develop`):
//!
//! ```python
//! import signalroom
//!
//! async with signalroom.Server(secret="s3cret") as server:
//!     api = signalroom.ServerApi(server.url, "s3cret")
//!     conn = await api.create_connection((await api.create_session("lobby")).session_id)
//!     async with signalroom.connect(conn.token) as session:
//!         await session.signal("hi", type="chat")
//! ```

mod api;
mod bridge;
mod errors;
mod events;
mod hub;
mod server;
mod session;

use pyo3::prelude::*;

/// Sends the Rust logs (``tracing``) to stderr, filtered as ``RUST_LOG`` (e.g. ``info``,
/// ``signalroom_server=debug``); `default_filter` is used when ``RUST_LOG`` is not set. Only the
/// first call has an effect.
#[pyfunction]
#[pyo3(signature = (default_filter = "info"))]
fn enable_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The module `signalroom._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Whether this is an unoptimised build (`maturin develop` without `--release`).
    m.setattr("_debug_build", cfg!(debug_assertions))?;
    // Before the interpreter finalizes, stop delivering results into it (see `bridge`).
    let at_exit = wrap_pyfunction!(bridge::at_exit, m)?;
    m.py().import("atexit")?.call_method1("register", (at_exit,))?;
    m.add_function(wrap_pyfunction!(session::connect, m)?)?;
    m.add_function(wrap_pyfunction!(enable_logging, m)?)?;
    m.add_function(wrap_pyfunction!(server::serve_cli, m)?)?;
    m.add_class::<session::Session>()?;
    m.add_class::<hub::EventHub>()?;
    m.add_class::<events::Connection>()?;
    m.add_class::<events::SignalEvent>()?;
    m.add_class::<events::ConnectionEvent>()?;
    m.add_class::<events::ConnectionPropertyChangedEvent>()?;
    m.add_class::<events::SessionDisconnectedEvent>()?;
    m.add_class::<events::SessionEvent>()?;
    m.add_class::<events::ReconnectedEvent>()?;
    m.add_class::<api::ServerApi>()?;
    m.add_class::<api::SessionObject>()?;
    m.add_class::<api::ConnectionObject>()?;
    m.add_class::<server::Server>()?;
    Ok(())
}
