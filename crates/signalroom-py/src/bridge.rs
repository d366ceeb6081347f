//! Rust futures as asyncio futures, safe at interpreter exit.
//!
//! Like `pyo3_async_runtimes::tokio::future_into_py` (and on its tokio runtime), with two
//! differences that make a process exit cleanly while sessions are still open:
//!
//! - The result *and the error* become Python objects only at delivery, under the GIL, on a
//!   blocking-pool thread; the future itself never touches Python.
//! - Delivery never enters Python once the interpreter is exiting: an `atexit` hook
//!   ([`at_exit`]) forbids new deliveries and waits for those in flight. Without it, a delivery
//!   thread inside `loop.call_soon_threadsafe` (which releases the GIL to write the loop's
//!   self-pipe) can find the interpreter finalized when it takes the GIL back; CPython then ends
//!   the thread with `pthread_exit`, and the unwinding drops Python objects: a crash at exit.
//!
//! A delivery to a closed event loop is dropped silently (nobody can await it any more).
//! Cancelling the asyncio future drops the Rust future.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{IntoPyObjectExt, intern};
use pyo3_async_runtimes::tokio::get_runtime;
use tokio::sync::oneshot;

/// Set by [`at_exit`]: no delivery may enter Python any more.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Deliveries that may be inside Python now.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// How long [`at_exit`] waits for deliveries in flight.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Runs `fut` on the runtime and returns an asyncio future (of the running loop) for its result.
/// `fut` must own everything it uses (`Send + 'static`); its error is converted at delivery.
pub(crate) fn future_into_py<'py, F, T, E>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
    E: Into<PyErr> + Send + 'static,
{
    let (future, target, cancelled) = asyncio_future(py)?;
    get_runtime().spawn(run(fut, target, cancelled));
    Ok(future)
}

/// A new asyncio future of the running loop, where its result goes, and a future that resolves
/// when it is cancelled.
fn asyncio_future(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Target, impl Future<Output = ()> + use<>)> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let event_loop = GET_RUNNING_LOOP.import(py, "asyncio", "get_running_loop")?.call0()?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let (cancel_tx, cancel_rx) = oneshot::channel();
    future
        .call_method1(intern!(py, "add_done_callback"), (OnDone { cancel: Mutex::new(Some(cancel_tx)) },))?;
    let target = Target { event_loop: event_loop.unbind(), future: future.clone().unbind() };
    let cancelled = async {
        if cancel_rx.await.is_err() {
            // Completed normally: the callback is gone without a word.
            std::future::pending::<()>().await;
        }
    };
    Ok((future, target, cancelled))
}

/// Drives `fut` to its end, unless the asyncio future is cancelled first, and delivers.
async fn run<F, T, E>(fut: F, target: Target, cancelled: impl Future<Output = ()>)
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
    E: Into<PyErr> + Send + 'static,
{
    let result = tokio::select! {
        result = fut => result,
        () = cancelled => return,
    };
    // Waiting for the GIL must not hold a runtime worker; nothing waits for the delivery.
    drop(tokio::task::spawn_blocking(move || target.deliver(result)));
}

/// A result as Python sees it: `(true, value)` or `(false, exception)`.
fn outcome<T, E>(py: Python<'_>, result: Result<T, E>) -> (bool, Py<PyAny>)
where
    T: for<'a> IntoPyObject<'a>,
    E: Into<PyErr>,
{
    match result.map_err(Into::into).and_then(|v| v.into_py_any(py)) {
        Ok(value) => (true, value),
        Err(err) => (false, err.into_value(py).into_any()),
    }
}

/// Where a result goes.
struct Target {
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
}

impl Target {
    fn deliver<T, E>(self, result: Result<T, E>)
    where
        T: for<'a> IntoPyObject<'a>,
        E: Into<PyErr>,
    {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        if !EXITING.load(Ordering::SeqCst) {
            Python::attach(|py| {
                let (ok, value) = outcome(py, result);
                let complete = match complete_fn(py) {
                    Ok(f) => f,
                    Err(_) => return,
                };
                // Fails only when the loop is closed: nobody can await the result any more.
                let _ = self.event_loop.bind(py).call_method1(
                    intern!(py, "call_soon_threadsafe"),
                    (complete, self.future.bind(py), ok, value),
                );
            });
        }
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs on the event loop: completes `future` unless it was cancelled meanwhile.
#[pyfunction]
fn complete(future: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = future.py();
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    let method = if ok { intern!(py, "set_result") } else { intern!(py, "set_exception") };
    future.call_method1(method, (value,))?;
    Ok(())
}

fn complete_fn(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static COMPLETE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    COMPLETE
        .get_or_try_init(py, || Ok::<_, PyErr>(wrap_pyfunction!(complete, py)?.into_any().unbind()))
        .map(|f| f.bind(py))
}

/// The done callback of an asyncio future: tells the Rust side when it was cancelled.
#[pyclass(frozen)]
struct OnDone {
    cancel: Mutex<Option<oneshot::Sender<()>>>,
}

#[pymethods]
impl OnDone {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0(intern!(future.py(), "cancelled"))?.is_truthy()? {
            if let Some(tx) = self.cancel.lock().take() {
                let _ = tx.send(());
            }
        }
        Ok(())
    }
}

/// Registered with `atexit` when the module loads: from now on no result is delivered to
/// Python; waits (without the GIL) for deliveries already inside Python.
#[pyfunction]
pub(crate) fn at_exit(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + EXIT_GRACE;
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}
