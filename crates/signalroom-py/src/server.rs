//! The signalroom server, embedded: runs on the extension's tokio runtime, inside the Python
//! process.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3_async_runtimes::tokio::get_runtime;
use signalroom_server::hook::{HookDecision, HookFn, HookTarget};
use signalroom_server::{Config, DEFAULT_SEND_QUEUE, SignalHookConfig, TlsConfig};
use tokio::sync::oneshot;
use url::Url;

use crate::bridge::future_into_py;
use crate::errors::{Class, PyServerError, invalid_argument, new_error};
use crate::session::seconds;

/// Where a started server can be reached.
#[derive(Clone)]
struct Address {
    url: String,
    token_base: String,
    port: u16,
}

/// The embedded server (native half of `signalroom.Server`).
#[pyclass(module = "signalroom._native")]
pub struct Server {
    config: Config,
    running: Arc<Running>,
}

fn not_running() -> PyErr {
    Python::attach(|py| {
        new_error(py, Class::Signalroom, "the server is not running: call start() first".to_owned(), &[])
    })
}

type Running = Mutex<Option<(signalroom_server::Server, Address)>>;

/// Keeps a started server and where it can be reached.
fn keep(running: &Running, server: signalroom_server::Server) {
    let address = Address {
        url: server.url().to_owned(),
        token_base: server.token_base().to_owned(),
        port: server.local_addr().port(),
    };
    *running.lock() = Some((server, address));
}

/// Answers one question to the signal hook (native half of `signalroom.Server(signal_hook=...)`):
/// called once, with the decision as JSON text (`None`: allow), or with why there is none.
#[pyclass(frozen, module = "signalroom._native")]
pub struct HookAnswer {
    tx: Mutex<Option<oneshot::Sender<Result<HookDecision, String>>>>,
}

#[pymethods]
impl HookAnswer {
    #[pyo3(signature = (decision = None, error = None))]
    fn __call__(&self, decision: Option<String>, error: Option<String>) {
        let answer = match (error, decision) {
            (Some(error), _) => Err(error),
            (None, None) => Ok(HookDecision::allow()),
            (None, Some(text)) => serde_json::from_str(&text).map_err(|e| format!("not a decision: {e}")),
        };
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(answer);
        }
    }
}

/// The hook function over `submit`, a Python callable `(request_json, answer)` that schedules the
/// user's function and calls `answer` with its decision.
fn hook_function(submit: Py<PyAny>) -> HookFn {
    let submit = Arc::new(submit);
    Arc::new(move |request| {
        let submit = Arc::clone(&submit);
        Box::pin(async move {
            let text = serde_json::to_string(&request).map_err(|e| e.to_string())?;
            let (tx, rx) = oneshot::channel();
            Python::attach(|py| {
                let answer = Py::new(py, HookAnswer { tx: Mutex::new(Some(tx)) })?;
                submit.call1(py, (text, answer)).map(drop)
            })
            .map_err(|e| format!("the hook function could not be called: {e}"))?;
            rx.await.map_err(|_| "the hook function gave no answer".to_owned())?
        })
    })
}

#[pymethods]
impl Server {
    /// A server, not started yet. (`secret` defaults to `signalroom_server::DEFAULT_SECRET`,
    /// spelled out so that Python shows it.)
    #[new]
    #[pyo3(signature = (
        *, secret = "MY_SECRET", host = "127.0.0.1", port = 0, public_url = None,
        tls_cert = None, tls_key = None, max_signal_bytes = None, send_queue = None,
        reconnection_grace = None, broker = None, drain_window = None, signal_history = None,
        signal_hook = None, signal_hook_types = None, signal_hook_timeout = None,
        signal_hook_fail_open = false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        secret: &str,
        host: &str,
        port: u16,
        public_url: Option<String>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        max_signal_bytes: Option<usize>,
        send_queue: Option<usize>,
        reconnection_grace: Option<f64>,
        broker: Option<String>,
        drain_window: Option<f64>,
        signal_history: Option<String>,
        signal_hook: Option<Py<PyAny>>,
        signal_hook_types: Option<Vec<String>>,
        signal_hook_timeout: Option<f64>,
        signal_hook_fail_open: bool,
    ) -> PyResult<Self> {
        let listen: SocketAddr = (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| invalid_argument(format!("cannot resolve host {host:?}")))?;
        let public_url = public_url
            .map(|u| Url::parse(&u).map_err(|e| invalid_argument(format!("public_url {u:?}: {e}"))))
            .transpose()?;
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig { cert, key }),
            (None, None) => None,
            _ => return Err(invalid_argument("give both tls_cert and tls_key, or neither")),
        };
        let send_queue = send_queue.unwrap_or(DEFAULT_SEND_QUEUE);
        if send_queue == 0 || max_signal_bytes == Some(0) {
            return Err(invalid_argument("send_queue and max_signal_bytes must be at least 1"));
        }
        let mut config = Config {
            listen,
            public_url,
            secret: secret.to_owned(),
            tls,
            send_queue_capacity: send_queue,
            broker,
            ..Config::local()
        };
        if let Some(bytes) = max_signal_bytes {
            config.max_signal_bytes = bytes;
        }
        if let Some(grace) = reconnection_grace {
            config.reconnection_grace = seconds("reconnection_grace", grace)?;
        }
        if let Some(window) = drain_window {
            config.drain_window = seconds("drain_window", window)?;
        }
        config.signal_history = signal_history.map(|text| crate::api::history_setting(&text)).transpose()?;
        if let Some(submit) = signal_hook {
            let mut hook = SignalHookConfig::new(HookTarget::Function(hook_function(submit)));
            if let Some(types) = signal_hook_types {
                hook.types =
                    SignalHookConfig::parse_types(&serde_json::to_string(&types).unwrap_or_default())
                        .map_err(invalid_argument)?;
            }
            if let Some(timeout) = signal_hook_timeout {
                hook.timeout = seconds("signal_hook_timeout", timeout)?;
            }
            hook.fail_open = signal_hook_fail_open;
            config.signal_hook = Some(hook);
        }
        Ok(Self { config, running: Arc::new(Mutex::new(None)) })
    }

    /// Starts serving; returns once the socket listens. Blocks (without the GIL).
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        if self.running.lock().is_some() {
            return Ok(());
        }
        let config = self.config.clone();
        let server = py
            .detach(|| get_runtime().block_on(signalroom_server::Server::start(config)))
            .map_err(PyServerError)?;
        keep(&self.running, server);
        Ok(())
    }

    /// As `start`, as a coroutine.
    fn start_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let config = self.config.clone();
        let running = Arc::clone(&self.running);
        future_into_py(py, async move {
            if running.lock().is_some() {
                return Ok(());
            }
            let server = signalroom_server::Server::start(config).await.map_err(PyServerError)?;
            keep(&running, server);
            Ok::<_, PyServerError>(())
        })
    }

    /// Stops: every participant gets ``sessionDisconnected`` (``openviduServerStopped``), sockets
    /// are flushed and closed. Blocks (without the GIL). Stopping a stopped server does nothing.
    fn stop(&self, py: Python<'_>) {
        let taken = self.running.lock().take();
        if let Some((server, _)) = taken {
            py.detach(|| get_runtime().block_on(server.shutdown()));
        }
    }

    /// As `stop`, as a coroutine.
    fn stop_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let taken = self.running.lock().take();
        future_into_py(py, async move {
            if let Some((server, _)) = taken {
                server.shutdown().await;
            }
            Ok::<_, PyErr>(())
        })
    }

    /// Drains, then stops (with a broker; without one, as `stop`): its participants resume on
    /// the other servers sharing the broker, missing nothing, nobody told they left.
    fn drain_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let taken = self.running.lock().take();
        future_into_py(py, async move {
            if let Some((server, _)) = taken {
                server.drain().await;
            }
            Ok::<_, PyErr>(())
        })
    }

    /// Whether it is serving.
    #[getter]
    fn running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// The server's URL (``http://127.0.0.1:PORT``): give it to `ServerApi`.
    #[getter]
    fn url(&self) -> PyResult<String> {
        self.address().map(|a| a.url)
    }

    /// The start of every token it issues (``ws://127.0.0.1:PORT``).
    #[getter]
    fn token_base(&self) -> PyResult<String> {
        self.address().map(|a| a.token_base)
    }

    /// The port it listens on (useful with ``port=0``).
    #[getter]
    fn port(&self) -> PyResult<u16> {
        self.address().map(|a| a.port)
    }

    /// The REST secret.
    #[getter]
    fn secret(&self) -> &str {
        &self.config.secret
    }
}

impl Server {
    fn address(&self) -> PyResult<Address> {
        self.running.lock().as_ref().map(|(_, a)| a.clone()).ok_or_else(not_running)
    }
}

impl Drop for Server {
    /// A server dropped while running is stopped in the background.
    fn drop(&mut self) {
        if let Some((server, _)) = self.running.lock().take() {
            get_runtime().spawn(server.shutdown());
        }
    }
}

/// Runs the command line of `signalroom` (`argv[0]` is the program name; e.g.
/// ``["signalroom", "serve", "--listen", ":0"]``) until SIGTERM or Ctrl-C, without the GIL;
/// returns the exit status. The same definition as the `signalroom` binary's, so the flags and
/// ``--help`` are the same. The server installs its own SIGINT and SIGTERM handlers: set SIGINT to
/// ``signal.SIG_DFL`` first, or Python's handler raises ``KeyboardInterrupt`` after the stop.
#[pyfunction]
pub(crate) fn serve_cli(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| get_runtime().block_on(signalroom_server::cli::run(argv)))
}
