//! The events of a session as Python objects, converted in batches.

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};
use signalroom_client::{Connection as RustConnection, Event};
use signalroom_core::signal::user_type;

/// A participant of the session (openvidu-browser's `Connection`).
///
/// Equal (and hashing alike) when id, join time and data are.
#[pyclass(frozen, eq, hash, get_all, module = "signalroom._native")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Its id (``con_…``); give it in ``to=[...]`` to signal only this participant.
    pub connection_id: String,
    /// When it joined, in ms since the epoch (0 when the server did not say).
    pub created_at: u64,
    /// Its metadata: the client data given to ``connect(data=...)``, the server data given to
    /// ``ServerApi.create_connection(data=...)``, or both joined by ``%/%``.
    pub data: String,
}

#[pymethods]
impl Connection {
    fn __repr__(&self) -> String {
        format!("Connection(connection_id={:?}, data={:?})", self.connection_id, self.data)
    }
}

impl From<RustConnection> for Connection {
    fn from(c: RustConnection) -> Self {
        Self { connection_id: c.connection_id.as_str().to_owned(), created_at: c.created_at, data: c.data }
    }
}

/// A signal received: fires the event ``signal`` and the event named by its wire type
/// (``signal:chat``).
#[pyclass(frozen, get_all, module = "signalroom._native")]
pub struct SignalEvent {
    /// The event name: the wire type, e.g. ``signal:chat``.
    pub name: Py<PyString>,
    /// The type without the ``signal:`` prefix, e.g. ``chat``.
    pub r#type: Py<PyString>,
    /// The data (``""`` when the sender gave none).
    pub data: Py<PyString>,
    /// The sender, or ``None`` for a signal sent through the REST API.
    pub from_: Option<Py<Connection>>,
    /// Sent before this participant joined: from the session's history (``connect(...,
    /// history=True)``).
    pub history: bool,
}

#[pymethods]
impl SignalEvent {
    fn __repr__(&self, py: Python<'_>) -> String {
        let from = match &self.from_ {
            Some(c) => format!("{:?}", c.get().connection_id),
            None => "None".to_owned(),
        };
        let (ty, data) = (self.r#type.bind(py), self.data.bind(py));
        let history = if self.history { ", history=True" } else { "" };
        format!("SignalEvent(type={ty:?}, data={data:?}, from_={from}{history})")
    }
}

/// ``connectionCreated`` or ``connectionDestroyed``.
#[pyclass(frozen, get_all, module = "signalroom._native")]
pub struct ConnectionEvent {
    /// ``connectionCreated`` or ``connectionDestroyed``.
    pub name: &'static str,
    /// Who joined or left.
    pub connection: Py<Connection>,
    /// Why it left (``disconnect``, ``forceDisconnectByServer``, ``networkDisconnect``, ...);
    /// ``None`` for ``connectionCreated``.
    pub reason: Option<String>,
}

#[pymethods]
impl ConnectionEvent {
    fn __repr__(&self) -> String {
        let c = self.connection.get();
        match &self.reason {
            Some(r) => format!("ConnectionEvent({}, {:?}, reason={r:?})", self.name, c.connection_id),
            None => format!("ConnectionEvent({}, {:?})", self.name, c.connection_id),
        }
    }
}

/// ``connectionPropertyChanged``: a property of this participant's own connection changed.
#[pyclass(frozen, get_all, module = "signalroom._native")]
pub struct ConnectionPropertyChangedEvent {
    /// ``connectionPropertyChanged``.
    pub name: &'static str,
    /// ``role`` or ``record``.
    pub property: String,
    /// The new value, as the server sent it.
    pub new_value: String,
}

#[pymethods]
impl ConnectionPropertyChangedEvent {
    fn __repr__(&self) -> String {
        format!("ConnectionPropertyChangedEvent({:?}={:?})", self.property, self.new_value)
    }
}

/// ``sessionDisconnected``: the session is over; always the last event.
#[pyclass(frozen, get_all, module = "signalroom._native")]
pub struct SessionDisconnectedEvent {
    /// ``sessionDisconnected``.
    pub name: &'static str,
    /// ``disconnect`` (you left), ``forceDisconnectByServer``, ``sessionClosedByServer``,
    /// ``openviduServerStopped``, ``networkDisconnect`` (reconnection failed), ...
    pub reason: String,
}

#[pymethods]
impl SessionDisconnectedEvent {
    fn __repr__(&self) -> String {
        format!("SessionDisconnectedEvent(reason={:?})", self.reason)
    }
}

/// ``reconnecting`` (the link broke and is being reopened; requests wait) or ``reconnected``
/// (a [`ReconnectedEvent`]).
#[pyclass(frozen, subclass, get_all, module = "signalroom._native")]
pub struct SessionEvent {
    /// ``reconnecting`` or ``reconnected``.
    pub name: &'static str,
}

#[pymethods]
impl SessionEvent {
    fn __repr__(&self) -> String {
        format!("SessionEvent({})", self.name)
    }
}

/// ``reconnected``: the link is back and the session goes on. A signalroom server replays what
/// it sent while the link was down and says whether that was everything.
#[pyclass(frozen, extends = SessionEvent, get_all, module = "signalroom._native")]
pub struct ReconnectedEvent {
    /// ``True``: nothing sent meanwhile was lost. ``False``: the server no longer had some of it
    /// (the gap outgrew its queue), so events were missed. ``None``: the server does not say
    /// (OpenVidu).
    pub recovered: Option<bool>,
    /// How many notifications the server replayed (delivered as events like any other).
    pub replayed: u64,
}

#[pymethods]
impl ReconnectedEvent {
    fn __repr__(&self) -> String {
        let recovered = match self.recovered {
            Some(true) => "True",
            Some(false) => "False",
            None => "None",
        };
        format!("ReconnectedEvent(recovered={recovered}, replayed={})", self.replayed)
    }
}

/// Events crossing to Python in one go: one list, converted under one GIL acquisition.
pub(crate) struct Batch(pub(crate) Vec<Event>);

/// Within a batch (of one session, or of all a hub takes at once), consecutive signals of one
/// type and sender share their Python strings and `Connection` object.
#[derive(Default)]
pub(crate) struct Reuse {
    kind: Option<(String, Py<PyString>, Py<PyString>)>,
    from: Option<(RustConnection, Py<Connection>)>,
}

impl<'py> IntoPyObject<'py> for Batch {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.convert(py, &mut Reuse::default())
    }
}

impl Batch {
    /// The events as a list, sharing what `reuse` holds from the batches converted before.
    pub(crate) fn convert<'py>(self, py: Python<'py>, reuse: &mut Reuse) -> PyResult<Bound<'py, PyList>> {
        let mut items = Vec::with_capacity(self.0.len());
        for event in self.0 {
            items.push(convert(py, event, reuse)?);
        }
        PyList::new(py, items)
    }
}

fn connection(py: Python<'_>, c: RustConnection) -> PyResult<Py<Connection>> {
    Py::new(py, Connection::from(c))
}

fn convert<'py>(py: Python<'py>, event: Event, reuse: &mut Reuse) -> PyResult<Bound<'py, PyAny>> {
    Ok(match event {
        Event::Signal(signal) => {
            let (name, r#type) = match &reuse.kind {
                Some((kind, name, ty)) if *kind == signal.kind => (name.clone_ref(py), ty.clone_ref(py)),
                _ => {
                    let name = PyString::new(py, &signal.kind).unbind();
                    let ty = PyString::new(py, user_type(&signal.kind)).unbind();
                    reuse.kind = Some((signal.kind.clone(), name.clone_ref(py), ty.clone_ref(py)));
                    (name, ty)
                }
            };
            let from_ = match signal.from {
                None => None,
                Some(from) => Some(match &reuse.from {
                    Some((last, obj)) if *last == from => obj.clone_ref(py),
                    _ => {
                        let obj = connection(py, from.clone())?;
                        reuse.from = Some((from, obj.clone_ref(py)));
                        obj
                    }
                }),
            };
            let data = PyString::new(py, &signal.data).unbind();
            let history = signal.history;
            Bound::new(py, SignalEvent { name, r#type, data, from_, history })?.into_any()
        }
        Event::ConnectionCreated(c) => {
            let connection = connection(py, c)?;
            Bound::new(py, ConnectionEvent { name: "connectionCreated", connection, reason: None })?
                .into_any()
        }
        Event::ConnectionDestroyed { connection: c, reason } => {
            let connection = connection(py, c)?;
            let reason = Some(reason.as_str().to_owned());
            Bound::new(py, ConnectionEvent { name: "connectionDestroyed", connection, reason })?.into_any()
        }
        Event::ConnectionPropertyChanged { property, new_value } => {
            let name = "connectionPropertyChanged";
            Bound::new(py, ConnectionPropertyChangedEvent { name, property, new_value })?.into_any()
        }
        Event::SessionDisconnected { reason } => {
            let reason = reason.as_str().to_owned();
            Bound::new(py, SessionDisconnectedEvent { name: "sessionDisconnected", reason })?.into_any()
        }
        Event::Reconnecting => Bound::new(py, SessionEvent { name: "reconnecting" })?.into_any(),
        Event::Reconnected { recovered, replayed } => {
            let event = PyClassInitializer::from(SessionEvent { name: "reconnected" })
                .add_subclass(ReconnectedEvent { recovered, replayed });
            Bound::new(py, event)?.into_any()
        }
        // `Event` is #[non_exhaustive]: an event added later arrives under its name.
        other => Bound::new(py, SessionEvent { name: other.name() })?.into_any(),
    })
}
