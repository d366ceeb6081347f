//! Rust futures as asyncio futures, safe at interpreter exit.
//!
//! Like `pyo3_async_runtimes::tokio::future_into_py` (and on its tokio runtime), with two
//! differences that make a process exit cleanly while sessions are still open, and one that makes
//! a process in a thousand sessions cheap:
//!
//! - The result *and the error* become Python objects only at delivery, under the GIL, on the
//!   delivery thread; the future itself never touches Python.
//! - Results are delivered in batches: one thread takes every result ready, converts them under
//!   one GIL acquisition and hands each event loop its share in one `call_soon_threadsafe` (one
//!   wake-up of the loop), where a thread hop, a GIL acquisition and a wake-up per result made
//!   each `await session.signal(...)` cost more than the signal.
//! - [`started_into_py`] has no done callback per call: its caller reports a cancelled await
//!   itself ([`abandon`]), which is cheaper for the calls a process makes thousands of a second.
//! - Delivery never enters Python once the interpreter is exiting: an `atexit` hook
//!   ([`at_exit`]) forbids new deliveries and waits for those in flight. Without it, a delivery
//!   thread inside `loop.call_soon_threadsafe` (which releases the GIL to write the loop's
//!   self-pipe) can find the interpreter finalized when it takes the GIL back; CPython then ends
//!   the thread with `pthread_exit`, and the unwinding drops Python objects: a crash at exit.
//!
//! A delivery to a closed event loop is dropped silently (nobody can await it any more).
//! Cancelling the asyncio future of [`future_into_py`] drops the Rust future; for
//! [`started_into_py`], [`abandon`] does.

use std::collections::HashMap;
use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{IntoPyObjectExt, intern};
use pyo3_async_runtimes::tokio::get_runtime;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

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

/// Like [`future_into_py`], without the done callback that tells the Rust side of a cancellation
/// (a Python call, a context and a scheduled callback per call, where a process answering
/// thousands of signals a second pays per call): the caller that sees its await cancelled calls
/// [`abandon`] with the asyncio future instead, which drops the Rust future as the callback would.
pub(crate) fn started_into_py<'py, F, T, E>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
    E: Into<PyErr> + Send + 'static,
{
    let event_loop = running_loop(py)?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    // The future's address names its work while the work runs: the work holds the future, so no
    // other object can have that address meanwhile.
    let key = future.as_ptr() as usize;
    let target = Target { event_loop: event_loop.unbind(), future: future.clone().unbind() };
    // Locked over the spawn (no await), so the work cannot remove its entry before it is made.
    let mut running = RUNNING.lock();
    let task = get_runtime().spawn(async move {
        let result = fut.await;
        RUNNING.lock().remove(&key);
        deliver_later(Delivery { target, outcome: Box::new(move |py| outcome(py, result)) });
    });
    running.insert(key, task.abort_handle());
    Ok(future)
}

/// The work of [`started_into_py`] still running, by its asyncio future's address.
static RUNNING: LazyLock<Mutex<HashMap<usize, AbortHandle>>> = LazyLock::new(Default::default);

/// Drops the Rust future behind `future` (made by [`started_into_py`]) if it is still running:
/// for the caller whose await of it was cancelled. Nothing happens once it has finished.
pub(crate) fn abandon(future: &Bound<'_, PyAny>) {
    let key = future.as_ptr() as usize;
    if let Some(task) = RUNNING.lock().remove(&key) {
        task.abort();
    }
}

fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP.import(py, "asyncio", "get_running_loop")?.call0()
}

/// A new asyncio future of the running loop, where its result goes, and a future that resolves
/// when it is cancelled.
fn asyncio_future(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Target, impl Future<Output = ()> + use<>)> {
    let event_loop = running_loop(py)?;
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
    // Waiting for the GIL must not hold a runtime worker: the delivery thread waits for it.
    deliver_later(Delivery { target, outcome: Box::new(move |py| outcome(py, result)) });
}

/// A result made a Python object (under the GIL): `(true, value)` or `(false, exception)`.
type Outcome = Box<dyn FnOnce(Python<'_>) -> (bool, Py<PyAny>) + Send>;

/// A future to complete: `(future, ok, value or exception)`.
type Completion = (Py<PyAny>, bool, Py<PyAny>);

/// A result on its way to its event loop, made a Python object on the delivery thread.
struct Delivery {
    target: Target,
    outcome: Outcome,
}

/// At most this many results are delivered under one GIL acquisition.
const MAX_DELIVERY_BATCH: usize = 1024;

/// Queues `delivery` for the delivery thread (started at the first call).
fn deliver_later(delivery: Delivery) {
    static QUEUE: std::sync::OnceLock<std::sync::mpsc::Sender<Delivery>> = std::sync::OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Delivery>();
        std::thread::Builder::new()
            .name("signalroom-deliver".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Ok(first) = rx.recv() {
                    batch.push(first);
                    while batch.len() < MAX_DELIVERY_BATCH {
                        match rx.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    deliver_all(&mut batch);
                }
            })
            .expect("a thread for signalroom's deliveries");
        tx
    });
    // The thread never stops: sending fails only at process exit, when nobody awaits any more.
    let _ = queue.send(delivery);
}

/// Delivers `batch` (emptied): each event loop gets its results in one `call_soon_threadsafe`.
fn deliver_all(batch: &mut Vec<Delivery>) {
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    if EXITING.load(Ordering::SeqCst) {
        batch.clear();
    } else {
        Python::attach(|py| {
            // (Loops are few: a process has one or a few; grouped by identity, in order.)
            let mut loops: Vec<(Py<PyAny>, Vec<Completion>)> = Vec::new();
            for Delivery { target, outcome } in batch.drain(..) {
                let (ok, value) = outcome(py);
                let items = match loops.iter_mut().find(|(l, _)| l.is(&target.event_loop)) {
                    Some((_, items)) => items,
                    None => {
                        loops.push((target.event_loop, Vec::new()));
                        &mut loops.last_mut().expect("just pushed").1
                    }
                };
                items.push((target.future, ok, value));
            }
            for (event_loop, items) in loops {
                let Ok(complete) = Bound::new(py, Completions { items: Mutex::new(items) }) else { continue };
                // Fails only when the loop is closed: nobody can await the results any more.
                let _ = event_loop.bind(py).call_method1(intern!(py, "call_soon_threadsafe"), (complete,));
            }
        });
    }
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
}

/// Results for one event loop, completed there in one call (a Rust list: no Python tuple per
/// result).
#[pyclass(frozen)]
struct Completions {
    items: Mutex<Vec<Completion>>,
}

#[pymethods]
impl Completions {
    /// Runs on the event loop: completes each future unless it was cancelled meanwhile.
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let items = std::mem::take(&mut *self.items.lock());
        for (future, ok, value) in items {
            complete(future.bind(py), ok, value.bind(py))?;
        }
        Ok(())
    }
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

/// Completes `future` unless it was cancelled meanwhile (on its event loop).
fn complete(future: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = future.py();
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    let method = if ok { intern!(py, "set_result") } else { intern!(py, "set_exception") };
    future.call_method1(method, (value,))?;
    Ok(())
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
