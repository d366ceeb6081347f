//! A socket's outbound queue: bounded, many senders (fan-outs under session locks, the socket's
//! own replies), one receiver (the socket's writer task).
//!
//! Made for fan-out: a push is a short uncontended lock and a `VecDeque::push_back`, and only the
//! push that finds the writer asleep wakes it; the writer takes everything queued in one lock.
//! (tokio's bounded mpsc costs a semaphore permit and a waker call per frame, and a permit
//! release per frame received: about a third of the server's time in a 1,000-receiver fan-out.)

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

use parking_lot::Mutex;
pub(crate) use tokio::sync::mpsc::error::TrySendError;

/// A queue that grew past this many slots is shrunk back once drained.
const SHRINK_ABOVE: usize = 1024;

/// Creates a queue holding at most `capacity` items.
pub(crate) fn channel<T>(capacity: usize) -> (QueueTx<T>, QueueRx<T>) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner { items: VecDeque::new(), waker: None, rx_gone: false }),
        capacity: capacity.max(1),
        senders: AtomicUsize::new(1),
    });
    (QueueTx(Arc::clone(&shared)), QueueRx(shared))
}

/// Aligned so that what a push touches (lock, deque, waker, capacity) shares one cache line:
/// a fan-out to 1,000 sockets touches 1,000 of these, rarely in cache.
#[repr(C, align(64))]
struct Shared<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
    senders: AtomicUsize,
}

struct Inner<T> {
    items: VecDeque<T>,
    /// The writer's waker, set while it waits on an empty queue.
    waker: Option<Waker>,
    rx_gone: bool,
}

/// The sending side; clones share the queue. The receiver sees the end once all are dropped.
pub(crate) struct QueueTx<T>(Arc<Shared<T>>);

/// The receiving side.
pub(crate) struct QueueRx<T>(Arc<Shared<T>>);

impl<T> QueueTx<T> {
    /// Queues `item` unless the queue is full or the receiver is gone. Never waits.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut inner = self.0.inner.lock();
        if inner.rx_gone {
            return Err(TrySendError::Closed(item));
        }
        if inner.items.len() >= self.0.capacity {
            return Err(TrySendError::Full(item));
        }
        inner.items.push_back(item);
        let waker = inner.waker.take();
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(&self.0))
    }
}

impl<T> Drop for QueueTx<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taken under the lock, so a receiver that saw a sender left has registered by now.
            let waker = self.0.inner.lock().waker.take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<T> fmt::Debug for QueueTx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueTx").field("capacity", &self.0.capacity).finish_non_exhaustive()
    }
}

impl<T> QueueRx<T> {
    /// Moves every queued item to the back of `buf`, waiting while the queue is empty. Returns
    /// the number moved; 0 once every sender is gone and the queue is drained. Cancel-safe.
    pub(crate) async fn recv_all(&mut self, buf: &mut VecDeque<T>) -> usize {
        poll_fn(|cx| {
            let mut inner = self.0.inner.lock();
            let n = inner.items.len();
            if n > 0 {
                if buf.is_empty() {
                    // Swap buffers: nothing moves, and the writer's (empty) deque is reused.
                    std::mem::swap(buf, &mut inner.items);
                } else {
                    buf.extend(inner.items.drain(..));
                }
                if inner.items.capacity() > SHRINK_ABOVE {
                    inner.items.shrink_to(SHRINK_ABOVE / 4);
                }
                return Poll::Ready(n);
            }
            if self.0.senders.load(Ordering::Acquire) == 0 {
                return Poll::Ready(0);
            }
            match &inner.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        let mut inner = self.0.inner.lock();
        inner.rx_gone = true;
        inner.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_in_batches_and_ends_with_the_last_sender() {
        let (tx, mut rx) = channel::<u32>(8);
        let tx2 = tx.clone();
        for i in 0..3 {
            tx.try_send(i).unwrap();
        }
        let mut buf = VecDeque::new();
        assert_eq!(rx.recv_all(&mut buf).await, 3);
        tx.try_send(3).unwrap();
        tx.try_send(4).unwrap();
        assert_eq!(rx.recv_all(&mut buf).await, 2);
        assert_eq!(buf, [0, 1, 2, 3, 4]);
        drop(tx);
        tx2.try_send(5).unwrap();
        drop(tx2);
        buf.clear();
        assert_eq!(rx.recv_all(&mut buf).await, 1);
        assert_eq!(rx.recv_all(&mut buf).await, 0);
    }

    #[tokio::test]
    async fn is_bounded_and_reports_a_gone_receiver() {
        let (tx, rx) = channel::<u32>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        drop(rx);
        assert!(matches!(tx.try_send(4), Err(TrySendError::Closed(4))));
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_a_push_and_on_the_last_drop() {
        let (tx, mut rx) = channel::<u32>(4);
        let waiter = tokio::spawn(async move {
            let mut buf = VecDeque::new();
            let first = rx.recv_all(&mut buf).await;
            let end = rx.recv_all(&mut buf).await;
            (first, end, buf)
        });
        tokio::task::yield_now().await;
        tx.try_send(7).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        let (first, end, buf) = waiter.await.unwrap();
        assert_eq!((first, end, Vec::from(buf)), (1, 0, vec![7]));
    }
}
