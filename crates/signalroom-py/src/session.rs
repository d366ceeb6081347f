//! `connect` and the native `Session`: the Rust client's `Session`, mirrored.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3_async_runtimes::tokio::get_runtime;
use signalroom_client::{ConnectOptions, ConnectionId, EventReceiver, SessionState, Signal};

use crate::bridge::{abandon, future_into_py, started_into_py};
use crate::errors::{PyClientError, PyCoreError, invalid_argument, invalid_signal};
use crate::events::{Batch, Connection};
use crate::hub::EventHub;

/// At most this many events cross to Python in one batch, so one burst cannot hold the event
/// loop for long; the rest follow in the next batch.
const MAX_BATCH: usize = 4096;

/// A duration in seconds from Python: finite and not negative.
pub(crate) fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| invalid_argument(format!("{name} must be a finite number of seconds >= 0, not {value}")))
}

/// Joins the session of `token`; resolves to a native `Session` once the server accepted the
/// token. See `signalroom.connect` for the documented, public form.
#[pyfunction]
#[pyo3(signature = (
    token, *, data = "", platform = None, timeout = 10.0, connect_timeout = 10.0,
    ping_interval = 5.0, ping_timeout = 5.0, reconnect_interval = 3.0, reconnect_attempts = 2000,
    accept_invalid_certs = false, history = false,
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn connect<'py>(
    py: Python<'py>,
    token: String,
    data: &str,
    platform: Option<String>,
    timeout: f64,
    connect_timeout: f64,
    ping_interval: f64,
    ping_timeout: f64,
    reconnect_interval: f64,
    reconnect_attempts: u32,
    accept_invalid_certs: bool,
    history: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let mut options = ConnectOptions::default()
        .with_metadata(data)
        .with_request_timeout(seconds("timeout", timeout)?)
        .with_connect_timeout(seconds("connect_timeout", connect_timeout)?)
        .with_ping(seconds("ping_interval", ping_interval)?, seconds("ping_timeout", ping_timeout)?)
        .with_reconnect(seconds("reconnect_interval", reconnect_interval)?, reconnect_attempts)
        .with_accept_invalid_certs(accept_invalid_certs)
        .with_history(history);
    if options.ping_interval.is_zero() {
        return Err(invalid_argument("ping_interval must be more than 0 seconds"));
    }
    options = options.with_platform(
        platform
            .unwrap_or_else(|| format!("signalroom-py {} (Python; Rust client)", env!("CARGO_PKG_VERSION"))),
    );
    future_into_py(py, async move {
        let (session, events) =
            signalroom_client::Session::connect_with(&token, options).await.map_err(PyClientError)?;
        Ok::<_, PyClientError>(Session { session, events: Arc::new(tokio::sync::Mutex::new(events)) })
    })
}

/// A joined session (native half). Use `signalroom.Session`, which adds handlers, `wait_for` and
/// streams on top of this.
#[pyclass(frozen, module = "signalroom._native")]
pub struct Session {
    session: signalroom_client::Session,
    /// Read by `next_events` or by the hub it is attached to; a tokio mutex, so a cancelled
    /// `next_events` never loses it.
    events: Arc<tokio::sync::Mutex<EventReceiver>>,
}

/// Signal recipients from Python: connection id strings, or objects with a `connection_id`
/// (a `Connection`, a `ConnectionObject`).
pub(crate) fn recipients(to: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<ConnectionId>> {
    let Some(to) = to else { return Ok(Vec::new()) };
    if to.is_none() {
        return Ok(Vec::new());
    }
    if to.is_instance_of::<PyString>() {
        return Err(invalid_signal(
            "to",
            format!("to must be a list of connection ids, not a string: write to=[{}]", to.repr()?),
        ));
    }
    let mut ids = Vec::new();
    for (i, item) in to.try_iter()?.enumerate() {
        ids.push(recipient(&item?, || format!("to[{i}]"))?);
    }
    Ok(ids)
}

/// One recipient: a connection id string, or an object with a `connection_id`. `what` names it
/// in an error (made only then: this runs for every recipient of every signal).
pub(crate) fn recipient(item: &Bound<'_, PyAny>, what: impl FnOnce() -> String) -> PyResult<ConnectionId> {
    if let Ok(s) = item.cast::<PyString>() {
        return Ok(ConnectionId::from(s.to_cow()?.as_ref()));
    }
    if let Ok(c) = item.cast::<Connection>() {
        return Ok(ConnectionId::from(c.get().connection_id.as_str()));
    }
    if item.is_none() {
        return Err(invalid_signal(
            "to",
            format!("{} is None: a signal sent through the REST API has no sender to answer", what()),
        ));
    }
    match item.getattr("connection_id").and_then(|v| v.extract::<String>()) {
        Ok(id) => Ok(ConnectionId::from(id)),
        Err(_) => Err(invalid_signal(
            "to",
            format!("{} is {}: give connection ids or Connection objects", what(), item.repr()?),
        )),
    }
}

/// A signal from Python's arguments, checked: bad input raises `InvalidSignalError` now, before
/// anything is sent (the data's size is the server's to judge: its limit is configured).
fn checked_signal(data: String, r#type: Option<String>, to: Option<&Bound<'_, PyAny>>) -> PyResult<Signal> {
    let to = recipients(to)?;
    Ok(Signal::new(data, r#type.as_deref(), to).map_err(PyCoreError)?)
}

#[pymethods]
impl Session {
    /// Sends a signal; resolves when the server accepted it. Bad input raises
    /// `InvalidSignalError` now, before anything is sent.
    #[pyo3(signature = (data, *, r#type = None, to = None))]
    fn signal<'py>(
        &self,
        py: Python<'py>,
        data: String,
        r#type: Option<String>,
        to: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // Queued now (Session::signal queues at call time): signals go out in the order of
        // the calls, even when several tasks send at once.
        let sent = self.session.signal(checked_signal(data, r#type, to)?);
        future_into_py(py, async move {
            sent.await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(())
        })
    }

    /// `signal` as a [`Sent`](crate::bridge::Sent) rather than an asyncio future (lighter, see
    /// there); a cancelled await of it drops the signal if it is not written yet. For
    /// `signalroom.Session.signal` and `reply`, which a process may call thousands of times a
    /// second. Its arguments are positional: with the abi3 module's calling convention, keywords
    /// cost a dict per call.
    #[pyo3(signature = (data, r#type, to, /))]
    fn start_signal<'py>(
        &self,
        py: Python<'py>,
        data: String,
        r#type: Option<String>,
        to: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let sent = self.session.signal(checked_signal(data, r#type, to)?);
        started_into_py(py, async move {
            sent.await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(())
        })
    }

    /// The await of `sent` (an awaitable of this session's `start_signal`) was cancelled: drops the
    /// signal's Rust future, so a signal not written yet is not written and its answer is not
    /// waited for. Nothing happens once it was answered.
    fn abandon(&self, sent: &Bound<'_, PyAny>) {
        abandon(sent);
    }

    /// Every event queued since the last call, as a list (waits for at least one); `None` once
    /// the session is over and every event was taken.
    fn next_events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = Arc::clone(&self.events);
        future_into_py(py, async move {
            let mut rx = events.lock().await;
            let Some(first) = rx.recv().await else {
                return Ok(None);
            };
            let mut batch = Vec::with_capacity((rx.len() + 1).min(MAX_BATCH));
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            Ok::<_, PyClientError>(Some(Batch(batch)))
        })
    }

    /// Sends this session's events to `hub` from now on (where `next_events` gave them), under
    /// the key returned; once they are over the hub says so. At most once per session.
    fn attach(&self, hub: &EventHub) -> u64 {
        hub.forward(Arc::clone(&self.events))
    }

    /// Leaves the session (`leaveRoom`, then the socket is closed). Resolves when done.
    fn disconnect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let session = self.session.clone();
        future_into_py(py, async move {
            session.disconnect().await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(())
        })
    }

    /// Starts leaving the session without waiting (for when no event loop is left to await
    /// `disconnect`): `leaveRoom` is sent and the socket closed on the runtime's threads.
    fn close(&self) {
        let session = self.session.clone();
        get_runtime().spawn(async move {
            let _ = session.disconnect().await;
        });
    }

    /// Evicts a participant (needs the MODERATOR role).
    fn force_disconnect<'py>(
        &self,
        py: Python<'py>,
        connection: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = recipient(connection, || "connection".to_owned())?;
        let session = self.session.clone();
        future_into_py(py, async move {
            session.force_disconnect(&id).await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(())
        })
    }

    /// This participant.
    #[getter]
    fn connection(&self) -> Connection {
        self.session.connection().into()
    }

    /// The largest frame the server accepts, in bytes (its `joinRoom` answer's `maxFrameBytes`,
    /// or OpenVidu's 51200 for a server that does not say).
    #[getter]
    fn max_frame_bytes(&self) -> usize {
        self.session.max_frame_bytes()
    }

    /// This participant's connection id.
    #[getter]
    fn connection_id(&self) -> &str {
        self.session.connection_id().as_str()
    }

    /// The OpenVidu session id.
    #[getter]
    fn session_id(&self) -> &str {
        self.session.session_id().as_str()
    }

    /// The other participants, in join order.
    #[getter]
    fn remote_connections(&self) -> Vec<Connection> {
        self.session.remote_connections().into_iter().map(Connection::from).collect()
    }

    /// This participant's role: ``PUBLISHER``, ``SUBSCRIBER`` or ``MODERATOR``.
    #[getter]
    fn role(&self) -> &'static str {
        self.session.role().as_str()
    }

    /// ``connected``, ``reconnecting`` or ``disconnected`` (``joining`` never shows: `connect`
    /// returns once joined).
    #[getter]
    fn state(&self) -> &'static str {
        match self.session.state() {
            SessionState::Joining => "joining",
            SessionState::Connected => "connected",
            SessionState::Reconnecting => "reconnecting",
            SessionState::Disconnected(_) => "disconnected",
            _ => "unknown",
        }
    }

    /// Why the session ended, once it has; else ``None``.
    #[getter]
    fn end_reason(&self) -> Option<String> {
        match self.session.state() {
            SessionState::Disconnected(reason) => Some(reason.as_str().to_owned()),
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Session(session_id={:?}, connection_id={:?}, state={:?})",
            self.session.session_id().as_str(),
            self.session.connection_id().as_str(),
            self.state()
        )
    }
}
