//! Rust errors to Python exceptions, in one place.
//!
//! The exception classes are defined in Python (`python/signalroom/errors.py`, so they can
//! subclass two built-ins each, e.g. `ConnectionLostError(SignalroomError, ConnectionError)`);
//! they are imported from there once and cached in a [`PyOnceLock`]. Each client, core and server
//! error variant is mapped in one `match` below; messages end with what to do about it.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use signalroom_client::{Audience, Error as ClientError};
use signalroom_core::Error as CoreError;
use signalroom_server::Error as ServerError;

/// The Python module defining the exception classes.
const MODULE: &str = "signalroom.errors";

/// A client error on its way to Python (a local wrapper: orphan rule).
#[derive(Debug)]
pub(crate) struct PyClientError(pub(crate) ClientError);

/// A core (validation) error on its way to Python.
#[derive(Debug)]
pub(crate) struct PyCoreError(pub(crate) CoreError);

/// An embedded server's start error on its way to Python.
#[derive(Debug)]
pub(crate) struct PyServerError(pub(crate) ServerError);

impl From<PyServerError> for PyErr {
    fn from(err: PyServerError) -> PyErr {
        Python::attach(|py| server_error(py, err.0))
    }
}

impl From<PyClientError> for PyErr {
    fn from(err: PyClientError) -> PyErr {
        Python::attach(|py| client_error(py, err.0))
    }
}

impl From<PyCoreError> for PyErr {
    fn from(err: PyCoreError) -> PyErr {
        Python::attach(|py| core_error(py, err.0))
    }
}

/// The exception classes of `signalroom.errors`.
#[derive(Clone, Copy)]
pub(crate) enum Class {
    Signalroom,
    InvalidSignal,
    InvalidArgument,
    Rpc,
    ConnectionLost,
    SignalTimeout,
    ServerApi,
    ServerStart,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Signalroom => "SignalroomError",
            Class::InvalidSignal => "InvalidSignalError",
            Class::InvalidArgument => "InvalidArgumentError",
            Class::Rpc => "RpcError",
            Class::ConnectionLost => "ConnectionLostError",
            Class::SignalTimeout => "SignalTimeoutError",
            Class::ServerApi => "ServerApiError",
            Class::ServerStart => "ServerStartError",
        }
    }

    fn cell(self) -> &'static PyOnceLock<Py<PyType>> {
        static SIGNALROOM: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static INVALID_SIGNAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static INVALID_ARGUMENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static RPC: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static CONNECTION_LOST: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static SIGNAL_TIMEOUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static SERVER_API: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static SERVER_START: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        match self {
            Class::Signalroom => &SIGNALROOM,
            Class::InvalidSignal => &INVALID_SIGNAL,
            Class::InvalidArgument => &INVALID_ARGUMENT,
            Class::Rpc => &RPC,
            Class::ConnectionLost => &CONNECTION_LOST,
            Class::SignalTimeout => &SIGNAL_TIMEOUT,
            Class::ServerApi => &SERVER_API,
            Class::ServerStart => &SERVER_START,
        }
    }
}

/// A new exception of `class` with the message `text` and keyword attributes.
pub(crate) fn new_error(py: Python<'_>, class: Class, text: String, attrs: &[(&str, Attr)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = class.cell().import(py, MODULE, class.name())?;
        let kwargs = PyDict::new(py);
        for (key, value) in attrs {
            match value {
                Attr::Str(s) => kwargs.set_item(key, s)?,
                Attr::Int(i) => kwargs.set_item(key, i)?,
                Attr::Float(f) => kwargs.set_item(key, f)?,
                Attr::None => kwargs.set_item(key, py.None())?,
            }
        }
        Ok(PyErr::from_value(cls.call((text.clone(),), Some(&kwargs))?))
    };
    // Only if signalroom.errors cannot be imported (a broken installation): keep the message.
    build().unwrap_or_else(|e| PyRuntimeError::new_err(format!("{text} (and signalroom.errors failed: {e})")))
}

/// A keyword attribute of an exception.
pub(crate) enum Attr {
    Str(String),
    Int(i64),
    Float(f64),
    None,
}

impl From<&str> for Attr {
    fn from(s: &str) -> Self {
        Attr::Str(s.to_owned())
    }
}

impl From<String> for Attr {
    fn from(s: String) -> Self {
        Attr::Str(s)
    }
}

impl<T: Into<Attr>> From<Option<T>> for Attr {
    fn from(v: Option<T>) -> Self {
        v.map_or(Attr::None, Into::into)
    }
}

impl From<u16> for Attr {
    fn from(v: u16) -> Self {
        Attr::Int(v.into())
    }
}

/// An `InvalidArgumentError` for a bad option given from Python.
pub(crate) fn invalid_argument(text: impl Into<String>) -> PyErr {
    Python::attach(|py| new_error(py, Class::InvalidArgument, text.into(), &[]))
}

/// An `InvalidSignalError` for a bad signal argument given from Python.
pub(crate) fn invalid_signal(field: &str, text: impl Into<String>) -> PyErr {
    Python::attach(|py| new_error(py, Class::InvalidSignal, text.into(), &[("field", field.into())]))
}

/// Maps a client error; every variant this version knows is named.
pub(crate) fn client_error(py: Python<'_>, err: ClientError) -> PyErr {
    // The message ends with what to do about it: the hints the command line gives too.
    let text = err.explain(Audience::Python);
    match err {
        ClientError::Invalid(core) => core_error(py, core),
        ClientError::Rpc { method, code, message } => {
            let attrs = [("code", Attr::Int(code)), ("message", message.into()), ("method", method.into())];
            new_error(py, Class::Rpc, text, &attrs)
        }
        ClientError::Timeout { method, timeout_ms } => {
            let attrs = [("timeout", Attr::Float(timeout_ms as f64 / 1000.0)), ("method", method.into())];
            new_error(py, Class::SignalTimeout, text, &attrs)
        }
        ClientError::Connect { .. } | ClientError::ConnectionLost { .. } => {
            new_error(py, Class::ConnectionLost, text, &[])
        }
        ClientError::Disconnected { reason } => {
            new_error(py, Class::ConnectionLost, text, &[("reason", reason.as_str().into())])
        }
        ClientError::UnexpectedResponse { .. } => new_error(py, Class::Signalroom, text, &[]),
        ClientError::Api { status, message } => {
            new_error(py, Class::ServerApi, text, &[("status", status.into()), ("message", message.into())])
        }
        ClientError::Http(_) => {
            let attrs = [("status", Attr::None), ("message", Attr::Str(text.clone()))];
            new_error(py, Class::ServerApi, text, &attrs)
        }
        // `Error` is #[non_exhaustive]: a variant added later still becomes a SignalroomError.
        _ => new_error(py, Class::Signalroom, text, &[]),
    }
}

/// Maps a server start error: what the operating system refused (the address, the TLS files)
/// becomes `ServerStartError` (an `OSError`, with its `errno`), a bad option `InvalidArgumentError`.
pub(crate) fn server_error(py: Python<'_>, err: ServerError) -> PyErr {
    let text = format!("cannot start the server: {err}");
    match err {
        ServerError::Bind { source, .. } => {
            let text = format!("{text}; is another server on that port? port 0 picks a free one");
            new_error(py, Class::ServerStart, text, &[("errno", errno(&source))])
        }
        ServerError::Tls { source, .. } => {
            new_error(py, Class::ServerStart, text, &[("errno", errno(&source))])
        }
        ServerError::PublicUrl { .. } | ServerError::Config(_) => {
            new_error(py, Class::InvalidArgument, text, &[])
        }
        // `Error` is #[non_exhaustive].
        _ => new_error(py, Class::Signalroom, text, &[]),
    }
}

/// The operating system's error number, if any.
fn errno(err: &std::io::Error) -> Attr {
    err.raw_os_error().map_or(Attr::None, |n| Attr::Int(n.into()))
}

/// Maps a validation error: signal problems become `InvalidSignalError`, the rest
/// `InvalidArgumentError`.
pub(crate) fn core_error(py: Python<'_>, err: CoreError) -> PyErr {
    let text = err.to_string();
    match err {
        CoreError::FrameTooLarge { size, limit } => new_error(
            py,
            Class::InvalidSignal,
            text,
            &[("field", "data".into()), ("size", Attr::Int(size as i64)), ("limit", Attr::Int(limit as i64))],
        ),
        CoreError::DataTooLarge { .. } => {
            let text = format!("{text}: send less data per signal, or split it");
            new_error(py, Class::InvalidSignal, text, &[("field", "data".into())])
        }
        CoreError::SignalRecipients { .. } => {
            new_error(py, Class::InvalidSignal, text, &[("field", "to".into())])
        }
        CoreError::SignalFormat { .. } => new_error(py, Class::InvalidSignal, text, &[("field", Attr::None)]),
        CoreError::InvalidField { field, .. } if matches!(field, "type" | "data" | "to") => {
            new_error(py, Class::InvalidSignal, text, &[("field", field.into())])
        }
        CoreError::InvalidField { .. } => new_error(py, Class::InvalidArgument, text, &[]),
        CoreError::InvalidToken(_) => {
            let text = format!(
                "{text}: a token looks like ws://host:port?sessionId=...&token=...; \
                 get one from ServerApi.create_connection(...).token"
            );
            new_error(py, Class::InvalidArgument, text, &[])
        }
        // `Error` is #[non_exhaustive].
        _ => new_error(py, Class::InvalidArgument, text, &[]),
    }
}
