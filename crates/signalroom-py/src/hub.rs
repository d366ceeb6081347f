//! The events of every session of one event loop, crossing to Python together.
//!
//! A process in a thousand sessions gets about one event per session at a time: with a pending
//! `next_events` per session, each event paid a crossing of its own (an asyncio future, a tokio
//! task, a delivery). Here each session's events are forwarded (on the runtime, without the GIL)
//! into one queue per event loop, its [`EventHub`], and one Python task takes everything queued
//! there in one crossing ([`EventHub::next`]), grouped by session, in each session's order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3_async_runtimes::tokio::get_runtime;
use signalroom_client::{Event, EventReceiver};
use tokio::sync::Notify;

use crate::bridge::future_into_py;
use crate::errors::PyClientError;
use crate::events::{Batch, Reuse};

/// At most this many events cross to Python in one batch (all sessions together), so that one
/// burst cannot hold the event loop for long; the rest follow in the next batch.
const MAX_BATCH: usize = 4096;

/// A session's event, or its end (`None`: its events are over), tagged with the session's key.
type Item = (u64, Option<Event>);

struct Queue {
    items: Mutex<VecDeque<Item>>,
    ready: Notify,
}

/// The events of the sessions of one event loop ([`Session::attach`](crate::session::Session)),
/// taken together by one task of that loop.
#[pyclass(frozen, module = "signalroom._native")]
pub struct EventHub {
    queue: Arc<Queue>,
    keys: AtomicU64,
}

#[pymethods]
impl EventHub {
    #[new]
    fn new() -> Self {
        Self {
            queue: Arc::new(Queue { items: Mutex::new(VecDeque::new()), ready: Notify::new() }),
            keys: AtomicU64::new(0),
        }
    }

    /// Everything queued since the last call (waits for one event), grouped by session in the
    /// order each first appears: a list of ``(key, events, over)``, ``over`` once that session's
    /// events are over (``events`` then holds its last ones, maybe none).
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let queue = Arc::clone(&self.queue);
        future_into_py(py, async move {
            loop {
                // Made before looking, so a push after the look is not missed (`notify_one`
                // leaves a permit when nobody waits yet).
                let ready = queue.ready.notified();
                {
                    let mut items = queue.items.lock();
                    if !items.is_empty() {
                        let n = items.len().min(MAX_BATCH);
                        let taken: Vec<Item> = items.drain(..n).collect();
                        if !items.is_empty() {
                            queue.ready.notify_one();
                        }
                        return Ok::<_, PyClientError>(Groups::of(taken));
                    }
                }
                ready.await;
            }
        })
    }
}

impl EventHub {
    /// Forwards `events` into this hub under a new key, on the runtime, until they are over.
    pub(crate) fn forward(&self, events: Arc<tokio::sync::Mutex<EventReceiver>>) -> u64 {
        let key = self.keys.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::clone(&self.queue);
        get_runtime().spawn(async move {
            let mut rx = events.lock().await;
            while let Some(first) = rx.recv().await {
                {
                    let mut items = queue.items.lock();
                    items.push_back((key, Some(first)));
                    while let Ok(more) = rx.try_recv() {
                        items.push_back((key, Some(more)));
                    }
                }
                queue.ready.notify_one();
            }
            queue.items.lock().push_back((key, None));
            queue.ready.notify_one();
        });
        key
    }
}

/// Events taken from a hub, grouped by session: `(key, events, over)`.
struct Groups(Vec<(u64, Vec<Event>, bool)>);

impl Groups {
    fn of(items: Vec<Item>) -> Self {
        let mut groups: Vec<(u64, Vec<Event>, bool)> = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        for (key, event) in items {
            let i = *index.entry(key).or_insert_with(|| {
                groups.push((key, Vec::new(), false));
                groups.len() - 1
            });
            let group = &mut groups[i];
            match event {
                Some(event) => group.1.push(event),
                None => group.2 = true,
            }
        }
        Self(groups)
    }
}

impl<'py> IntoPyObject<'py> for Groups {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut out = Vec::with_capacity(self.0.len());
        // One for all the sessions: their signals of one type share the type's strings.
        let mut reuse = Reuse::default();
        for (key, events, over) in self.0 {
            let events = Batch(events).convert(py, &mut reuse)?;
            out.push((key, events, over).into_pyobject(py)?);
        }
        PyList::new(py, out)
    }
}
