//! `ServerApi`: the REST client, mirrored; and the REST objects it returns.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyAny;
use signalroom_client::{ApiOptions, ConnectionOptions, Role, SessionId, SignalRequest};
use signalroom_core::rest::{ConnectionObject as RestConnection, SessionObject as RestSession};

use crate::bridge::future_into_py;
use crate::errors::{PyClientError, invalid_argument};
use crate::session::{recipients, seconds};

/// `json.loads`, cached.
fn json_loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOADS.import(py, "json", "loads")?.call1((text,))
}

/// A Connection of the REST API (``/openvidu/api/sessions/{id}/connection``): a token to join
/// with, and, once used, who joined.
#[pyclass(frozen, module = "signalroom._native")]
pub struct ConnectionObject {
    /// The connection id (``con_…``).
    #[pyo3(get)]
    pub connection_id: String,
    /// The session id.
    #[pyo3(get)]
    pub session_id: String,
    /// ``pending`` (token not used yet) or ``active``.
    #[pyo3(get)]
    pub status: String,
    /// The token: give it to ``signalroom.connect`` or to openvidu-browser.
    #[pyo3(get)]
    pub token: String,
    /// ``PUBLISHER``, ``SUBSCRIBER`` or ``MODERATOR``.
    #[pyo3(get)]
    pub role: String,
    /// Whether the connection is recorded.
    #[pyo3(get)]
    pub record: bool,
    /// The server data given at creation (``""`` when none).
    #[pyo3(get)]
    pub server_data: String,
    /// The client data given by the participant when it joined, once active.
    #[pyo3(get)]
    pub client_data: Option<String>,
    /// When it was created, in ms since the epoch.
    #[pyo3(get)]
    pub created_at: u64,
    /// When its participant joined, in ms since the epoch; ``None`` while pending.
    #[pyo3(get)]
    pub active_at: Option<u64>,
    /// The participant's platform, once active.
    #[pyo3(get)]
    pub platform: Option<String>,
    /// The participant's IP, once active.
    #[pyo3(get)]
    pub ip: Option<String>,
    json: String,
}

impl From<RestConnection> for ConnectionObject {
    fn from(c: RestConnection) -> Self {
        let json = serde_json::to_string(&c).unwrap_or_default();
        let status = serde_json::to_value(c.status).ok().and_then(|v| v.as_str().map(str::to_owned));
        Self {
            connection_id: c.connection_id.as_str().to_owned(),
            session_id: c.session_id.as_str().to_owned(),
            status: status.unwrap_or_default(),
            token: c.token,
            role: c.role.as_str().to_owned(),
            record: c.record,
            server_data: c.server_data,
            client_data: c.client_data,
            created_at: c.created_at,
            active_at: c.active_at,
            platform: c.platform,
            ip: c.ip,
            json,
        }
    }
}

#[pymethods]
impl ConnectionObject {
    /// The object exactly as the REST API returned it (OpenVidu's JSON, camelCase keys).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, &self.json)
    }

    fn __repr__(&self) -> String {
        format!(
            "ConnectionObject(connection_id={:?}, session_id={:?}, status={:?})",
            self.connection_id, self.session_id, self.status
        )
    }
}

/// A Session of the REST API (``/openvidu/api/sessions``).
#[pyclass(frozen, module = "signalroom._native")]
pub struct SessionObject {
    /// The session id.
    #[pyo3(get)]
    pub session_id: String,
    /// The custom id given at creation, or ``""``.
    #[pyo3(get)]
    pub custom_session_id: String,
    /// When it was created, in ms since the epoch.
    #[pyo3(get)]
    pub created_at: u64,
    /// Its connections, pending ones included.
    #[pyo3(get)]
    pub connections: Vec<Py<ConnectionObject>>,
    json: String,
}

impl SessionObject {
    fn new(py: Python<'_>, s: RestSession) -> PyResult<Self> {
        let json = serde_json::to_string(&s).unwrap_or_default();
        let connections = s
            .connections
            .content
            .into_iter()
            .map(|c| Py::new(py, ConnectionObject::from(c)))
            .collect::<PyResult<_>>()?;
        Ok(Self {
            session_id: s.session_id.as_str().to_owned(),
            custom_session_id: s.properties.custom_session_id,
            created_at: s.created_at,
            connections,
            json,
        })
    }
}

#[pymethods]
impl SessionObject {
    /// The object exactly as the REST API returned it (OpenVidu's JSON, camelCase keys).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, &self.json)
    }

    fn __repr__(&self) -> String {
        format!("SessionObject(session_id={:?}, connections={})", self.session_id, self.connections.len())
    }
}

/// A session object built under the GIL from the REST result.
struct SessionResult(RestSession);

impl<'py> IntoPyObject<'py> for SessionResult {
    type Target = SessionObject;
    type Output = Bound<'py, SessionObject>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, SessionObject>> {
        Bound::new(py, SessionObject::new(py, self.0)?)
    }
}

/// A client of the REST API of an OpenVidu 2.x server (signalroom's or the real one):
/// sessions, connections (tokens) and signals sent by the server. Every method is a coroutine.
///
/// ```python
/// api = signalroom.ServerApi("http://127.0.0.1:4443", "MY_SECRET")
/// await api.create_session("lobby")
/// conn = await api.create_connection("lobby", data='{"name": "bot"}')
/// session = await signalroom.connect(conn.token)
/// await api.signal("lobby", "from the server", type="chat")
/// ```
#[pyclass(frozen, module = "signalroom._native")]
pub struct ServerApi {
    api: signalroom_client::ServerApi,
}

/// A `signalHistory` setting from its JSON text.
pub(crate) fn history_setting(text: &str) -> PyResult<signalroom_core::history::SignalHistory> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid_argument(format!("signal_history: {e}")))?;
    signalroom_core::history::SignalHistory::from_value(&value).map_err(|e| invalid_argument(e.0))
}

fn role(role: Option<String>) -> PyResult<Option<Role>> {
    role.map(|r| {
        Role::parse(&r.to_ascii_uppercase())
            .ok_or_else(|| invalid_argument(format!("role {r:?} is not PUBLISHER, SUBSCRIBER or MODERATOR")))
    })
    .transpose()
}

#[pymethods]
impl ServerApi {
    /// A client of the server at `url` (``http(s)://host:port``) with its secret.
    #[new]
    #[pyo3(signature = (url, secret, *, timeout = 10.0, accept_invalid_certs = false))]
    fn new(url: &str, secret: &str, timeout: f64, accept_invalid_certs: bool) -> PyResult<Self> {
        let options = ApiOptions::default()
            .with_timeout(seconds("timeout", timeout)?)
            .with_accept_invalid_certs(accept_invalid_certs);
        // Building the HTTP client may touch the runtime (connection pool timers).
        let _guard = pyo3_async_runtimes::tokio::get_runtime().enter();
        let api = signalroom_client::ServerApi::with_options(url, secret, options).map_err(PyClientError)?;
        Ok(Self { api })
    }

    /// The REST base: ``http(s)://host:port/openvidu/api``.
    #[getter]
    fn url(&self) -> &str {
        self.api.base_url()
    }

    /// Creates a session; with `custom_session_id`, returns the existing one if there is one.
    /// `signal_history`: signalroom's `signalHistory` setting, as JSON text.
    #[pyo3(signature = (custom_session_id = None, *, signal_history = None))]
    fn create_session<'py>(
        &self,
        py: Python<'py>,
        custom_session_id: Option<String>,
        signal_history: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let history = signal_history.map(|text| history_setting(&text)).transpose()?;
        let api = self.api.clone();
        future_into_py(py, async move {
            let s = api
                .create_session_with(custom_session_id.as_deref(), history.as_ref())
                .await
                .map_err(PyClientError)?;
            Ok::<_, PyClientError>(SessionResult(s))
        })
    }

    /// The signals a session kept, as JSON text (a list of entries).
    #[pyo3(signature = (session_id, *, limit = None, since = None))]
    fn signal_history<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        limit: Option<usize>,
        since: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let api = self.api.clone();
        future_into_py(py, async move {
            let entries = api.signal_history(&session_id, limit, since).await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(serde_json::to_string(&entries).unwrap_or_else(|_| "[]".to_owned()))
        })
    }

    /// A session (its pending connections included).
    fn get_session<'py>(&self, py: Python<'py>, session_id: String) -> PyResult<Bound<'py, PyAny>> {
        let api = self.api.clone();
        future_into_py(py, async move {
            Ok::<_, PyClientError>(SessionResult(api.get_session(&session_id).await.map_err(PyClientError)?))
        })
    }

    /// Every session.
    fn list_sessions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let api = self.api.clone();
        future_into_py(py, async move {
            let sessions = api.list_sessions().await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(sessions.into_iter().map(SessionResult).collect::<Vec<_>>())
        })
    }

    /// Closes a session: every participant gets ``sessionDisconnected`` (``sessionClosedByServer``).
    fn close_session<'py>(&self, py: Python<'py>, session_id: String) -> PyResult<Bound<'py, PyAny>> {
        let api = self.api.clone();
        future_into_py(py, async move {
            api.close_session(&session_id).await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(())
        })
    }

    /// Creates a connection: its ``token`` joins the session once.
    #[pyo3(signature = (session_id, *, data = None, role = None, record = None))]
    fn create_connection<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        data: Option<String>,
        role: Option<String>,
        record: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut options = ConnectionOptions::default();
        options.data = data;
        options.role = self::role(role)?;
        options.record = record;
        let api = self.api.clone();
        future_into_py(py, async move {
            let c = api.create_connection(&session_id, &options).await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(ConnectionObject::from(c))
        })
    }

    /// The connections of a session, pending ones included.
    fn list_connections<'py>(&self, py: Python<'py>, session_id: String) -> PyResult<Bound<'py, PyAny>> {
        let api = self.api.clone();
        future_into_py(py, async move {
            let list = api.list_connections(&session_id).await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(list.into_iter().map(ConnectionObject::from).collect::<Vec<_>>())
        })
    }

    /// A connection.
    fn get_connection<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        connection_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let api = self.api.clone();
        future_into_py(py, async move {
            let c = api.get_connection(&session_id, &connection_id).await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(ConnectionObject::from(c))
        })
    }

    /// Deletes a connection: its participant is evicted (``forceDisconnectByServer``), or its
    /// unused token stops working.
    fn delete_connection<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        connection_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let api = self.api.clone();
        future_into_py(py, async move {
            api.delete_connection(&session_id, &connection_id).await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(())
        })
    }

    /// Sends a signal from the server to `to` (connection ids or `Connection`s), or to everybody.
    /// `type` ``chat`` reaches ``session.on("signal:chat")``; receivers see ``from_`` ``None``.
    #[pyo3(signature = (session_id, data, *, r#type = None, to = None))]
    fn signal<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        data: String,
        r#type: Option<String>,
        to: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let to = recipients(to)?;
        let api = self.api.clone();
        future_into_py(py, async move {
            api.signal(&session_id, &data, r#type.as_deref(), &to).await.map_err(PyClientError)?;
            Ok::<_, PyClientError>(())
        })
    }

    /// Sends a signal request verbatim (``POST /openvidu/api/signal``): unlike `signal`, `type`
    /// is not given the ``signal:`` prefix (openvidu-browser fires the event named exactly so).
    #[pyo3(signature = (session_id, *, data = None, r#type = None, to = None))]
    fn send_signal<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        data: Option<String>,
        r#type: Option<String>,
        to: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let to = recipients(to)?;
        let request = SignalRequest {
            session: SessionId::from(session_id),
            to: (!to.is_empty()).then_some(to),
            kind: r#type,
            data,
        };
        let api = self.api.clone();
        future_into_py(py, async move { api.send_signal(&request).await.map_err(PyClientError) })
    }

    fn __repr__(&self) -> String {
        format!("ServerApi({:?})", self.api.base_url())
    }
}
