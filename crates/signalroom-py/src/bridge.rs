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
//! - [`started_into_py`] returns a [`Sent`] rather than an asyncio future: an awaitable that
//!   asyncio's tasks wait on as they wait on a future, made without a call into the loop, which
//!   drops the Rust future itself when it is cancelled (no done callback per call), and which
//!   resumes the tasks waiting on it when its result arrives, without a callback scheduled on the
//!   loop for each: what a process answering thousands of signals a second pays per call.
//! - Delivery never enters Python once the interpreter is exiting: an `atexit` hook
//!   ([`at_exit`]) forbids new deliveries and waits for those in flight. Without it, a delivery
//!   thread inside `loop.call_soon_threadsafe` (which releases the GIL to write the loop's
//!   self-pipe) can find the interpreter finalized when it takes the GIL back; CPython then ends
//!   the thread with `pthread_exit`, and the unwinding drops Python objects: a crash at exit.
//!
//! A delivery to a closed event loop is dropped silently (nobody can await it any more).
//! Cancelling the asyncio future of [`future_into_py`], or a [`Sent`], drops the Rust future.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use pyo3::{IntoPyObjectExt, intern};
use pyo3::{PyTraverseError, PyVisit};
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

/// Like [`future_into_py`], but the awaitable returned is a [`Sent`], not an asyncio future.
pub(crate) fn started_into_py<'py, F, T, E>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
    E: Into<PyErr> + Send + 'static,
{
    let event_loop = running_loop(py)?.unbind();
    let sent = Bound::new(
        py,
        Sent { event_loop: event_loop.clone_ref(py), state: Mutex::default(), work: Mutex::new(None) },
    )?;
    let target = Target { event_loop, future: sent.clone().into_any().unbind() };
    let task = get_runtime().spawn(async move {
        let result = fut.await;
        deliver_later(Delivery { target, outcome: Box::new(move |py| outcome(py, result)) });
    });
    *sent.get().work.lock() = Some(task.abort_handle());
    Ok(sent.into_any())
}

/// Drops the Rust future behind `sent` (a [`Sent`]) if it is still running: for the caller whose
/// await of it was cancelled. Nothing happens once it has finished, or for another object.
pub(crate) fn abandon(sent: &Bound<'_, PyAny>) {
    if let Ok(sent) = sent.cast::<Sent>() {
        sent.get().abandon();
    }
}

/// The result of work on the runtime ([`started_into_py`]), awaited from asyncio.
///
/// A task awaits it as it awaits an asyncio future (the protocol asyncio's `Task` speaks with any
/// future-like object: `_asyncio_future_blocking`, `get_loop`, `add_done_callback`, `result`,
/// `cancel`), but it is lighter: it is made without a call into the loop, the result resumes the
/// tasks waiting on it at once, from the delivery's own call on the loop (each in its context,
/// as the loop would a moment later), and cancelling it drops the Rust future (a signal not
/// written yet is not written). The cyclic GC sees what it holds (`__traverse__`): a failure's
/// exception refers, through its traceback, to the frame that awaited this. Awaited once, by the
/// coroutine that made it; not for users.
#[pyclass(frozen, module = "signalroom._native")]
pub(crate) struct Sent {
    event_loop: Py<PyAny>,
    state: Mutex<SentState>,
    /// The work on the runtime, to drop when the await is cancelled.
    work: Mutex<Option<AbortHandle>>,
}

#[derive(Default)]
struct SentState {
    outcome: SentOutcome,
    /// `(callback, context)`, called with the `Sent` once it is done.
    callbacks: Vec<(Py<PyAny>, Option<Py<PyAny>>)>,
    /// asyncio's flag: set when yielded to the task that awaits it.
    blocking: bool,
}

#[derive(Default)]
enum SentOutcome {
    #[default]
    Pending,
    Done,
    Failed(Py<PyAny>),
    Cancelled(Option<Py<PyAny>>),
}

/// What a [`Sent`] holds once done, as Python sees it: `Ok(())` or the exception to raise.
fn sent_result(py: Python<'_>, outcome: &SentOutcome) -> PyResult<()> {
    match outcome {
        SentOutcome::Pending => Err(asyncio_error(py, "InvalidStateError", Some("Result is not set."))),
        SentOutcome::Done => Ok(()),
        SentOutcome::Failed(error) => Err(PyErr::from_value(error.bind(py).clone())),
        SentOutcome::Cancelled(msg) => Err(cancelled_error(py, msg.as_ref())),
    }
}

fn asyncio_error(py: Python<'_>, name: &str, message: Option<&str>) -> PyErr {
    let class = py.import(intern!(py, "asyncio")).and_then(|m| m.getattr(name));
    match class.and_then(|c| c.call1((message.unwrap_or(""),))) {
        Ok(error) => PyErr::from_value(error),
        Err(e) => e,
    }
}

fn cancelled_error(py: Python<'_>, msg: Option<&Py<PyAny>>) -> PyErr {
    static CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let made = CANCELLED.import(py, "asyncio", "CancelledError").and_then(|class| match msg {
        Some(msg) => class.call1((msg,)),
        None => class.call0(),
    });
    match made {
        Ok(error) => PyErr::from_value(error),
        Err(e) => e,
    }
}

impl Sent {
    fn abandon(&self) {
        if let Some(work) = self.work.lock().take() {
            work.abort();
        }
    }

    /// Sets the outcome (unless cancelled meanwhile) and calls the callbacks now, on the loop.
    fn finish(slf: &Bound<'_, Self>, ok: bool, value: &Bound<'_, PyAny>) {
        let py = slf.py();
        let callbacks = {
            let mut state = slf.get().state.lock();
            if !matches!(state.outcome, SentOutcome::Pending) {
                return;
            }
            state.outcome = if ok { SentOutcome::Done } else { SentOutcome::Failed(value.clone().unbind()) };
            std::mem::take(&mut state.callbacks)
        };
        slf.get().work.lock().take();
        for (callback, context) in callbacks {
            let called = match context {
                Some(context) => context.bind(py).call_method1(intern!(py, "run"), (&callback, slf)),
                None => callback.bind(py).call1((slf,)),
            };
            if let Err(error) = called {
                error.write_unraisable(py, Some(callback.bind(py)));
            }
        }
    }

    /// Lets the callbacks go without calling them: for a result nobody can receive any more (its
    /// loop is closed).
    fn forget_callbacks(&self) {
        let callbacks = std::mem::take(&mut self.state.lock().callbacks);
        drop(callbacks);
    }

    fn schedule(slf: &Bound<'_, Self>, callback: &Py<PyAny>, context: Option<&Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "context"), context)?;
        slf.get().event_loop.bind(py).call_method(
            intern!(py, "call_soon"),
            (callback, slf),
            Some(&kwargs),
        )?;
        Ok(())
    }
}

#[pymethods]
impl Sent {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Yields itself to the task while pending (the task then waits for its callbacks); ends with
    /// the result once done.
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Option<Py<Self>>> {
        let py = slf.py();
        let state = &mut *slf.get().state.lock();
        if let SentOutcome::Pending = state.outcome {
            state.blocking = true;
            return Ok(Some(slf.clone().unbind()));
        }
        sent_result(py, &state.outcome).map(|()| None)
    }

    #[getter(_asyncio_future_blocking)]
    fn blocking(&self) -> bool {
        self.state.lock().blocking
    }

    #[setter(_asyncio_future_blocking)]
    fn set_blocking(&self, value: bool) {
        self.state.lock().blocking = value;
    }

    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    #[pyo3(signature = (callback, *, context = None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        {
            let mut state = slf.get().state.lock();
            if let SentOutcome::Pending = state.outcome {
                state.callbacks.push((callback, context));
                return Ok(());
            }
        }
        Self::schedule(slf, &callback, context.as_ref())
    }

    fn remove_done_callback(&self, callback: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut state = self.state.lock();
        let before = state.callbacks.len();
        let mut error = None;
        state.callbacks.retain(|(cb, _)| match cb.bind(callback.py()).eq(callback) {
            Ok(same) => !same,
            Err(e) => {
                error.get_or_insert(e);
                true
            }
        });
        match error {
            Some(e) => Err(e),
            None => Ok(before - state.callbacks.len()),
        }
    }

    fn done(&self) -> bool {
        !matches!(self.state.lock().outcome, SentOutcome::Pending)
    }

    fn cancelled(&self) -> bool {
        matches!(self.state.lock().outcome, SentOutcome::Cancelled(_))
    }

    fn result(&self, py: Python<'_>) -> PyResult<()> {
        sent_result(py, &self.state.lock().outcome)
    }

    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.state.lock().outcome {
            SentOutcome::Failed(error) => Ok(Some(error.clone_ref(py))),
            SentOutcome::Done => Ok(None),
            other => sent_result(py, other).map(|()| None),
        }
    }

    /// Cancels the await: the Rust future is dropped (a signal not written yet is never written)
    /// and the callbacks are scheduled on the loop, as an asyncio future's.
    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let callbacks = {
            let mut state = slf.get().state.lock();
            if !matches!(state.outcome, SentOutcome::Pending) {
                return Ok(false);
            }
            state.outcome = SentOutcome::Cancelled(msg);
            std::mem::take(&mut state.callbacks)
        };
        slf.get().abandon();
        for (callback, context) in callbacks {
            Self::schedule(slf, &callback, context.as_ref())?;
        }
        Ok(true)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        // (Never blocks: a collection can start while this thread holds the lock. Not visiting
        // then only keeps the objects alive until a later collection.)
        if let Some(state) = self.state.try_lock() {
            for (callback, context) in &state.callbacks {
                visit.call(callback)?;
                visit.call(context)?;
            }
            match &state.outcome {
                SentOutcome::Failed(error) => visit.call(error)?,
                SentOutcome::Cancelled(msg) => visit.call(msg)?,
                SentOutcome::Pending | SentOutcome::Done => {}
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        if let Some(mut state) = self.state.try_lock() {
            let callbacks = std::mem::take(&mut state.callbacks);
            let outcome = std::mem::replace(&mut state.outcome, SentOutcome::Done);
            drop(state);
            drop((callbacks, outcome));
        }
    }

    fn __repr__(&self) -> &'static str {
        match self.state.lock().outcome {
            SentOutcome::Pending => "<signalroom Sent pending>",
            SentOutcome::Done => "<signalroom Sent done>",
            SentOutcome::Failed(_) => "<signalroom Sent failed>",
            SentOutcome::Cancelled(_) => "<signalroom Sent cancelled>",
        }
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
                if event_loop
                    .bind(py)
                    .call_method1(intern!(py, "call_soon_threadsafe"), (&complete,))
                    .is_err()
                {
                    for (future, _, _) in complete.get().items.lock().drain(..) {
                        if let Ok(sent) = future.bind(py).cast::<Sent>() {
                            sent.get().forget_callbacks();
                        }
                    }
                }
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
    if let Ok(sent) = future.cast::<Sent>() {
        Sent::finish(sent, ok, value);
        return Ok(());
    }
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
