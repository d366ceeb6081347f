//! The sending participant: frames timestamped signals, and keeps the pipeline full without
//! letting any receiver fall more than a window behind (so no server has to queue without
//! bound, and a fast sender never turns a throughput test into a memory test).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::crowd::{Progress, Tally, min_signals};
use crate::dialect::{Dialect, now_ns, signal_data};
use crate::wire::Writer;

/// Frames written per `write` call at most.
const SEND_BATCH: u64 = 32;
/// A blocked sender re-checks at least this often (a receiver may have died).
const RECHECK: Duration = Duration::from_millis(5);

/// Builds and sends signals.
pub(crate) struct Blaster {
    dialect: Dialect,
    writer: Writer,
    size: usize,
    /// Signals sent so far; the next signal's sequence number.
    pub sent: u64,
    data: Vec<u8>,
    frame: Vec<u8>,
}

impl Blaster {
    pub(crate) fn new(dialect: Dialect, writer: Writer, size: usize) -> Self {
        Self {
            dialect,
            writer,
            size,
            sent: 0,
            data: Vec::with_capacity(size),
            frame: Vec::with_capacity(256),
        }
    }

    /// Frames the signals from now on in `dialect` (a raw server answering as OpenVidu does).
    pub(crate) fn speak(&mut self, dialect: Dialect) {
        self.dialect = dialect;
    }

    fn push(&mut self) {
        self.data.clear();
        signal_data(&mut self.data, now_ns(), self.sent, self.size);
        self.frame.clear();
        // Request ids 0 and 1 went to ping/joinRoom in OpenVidu terms; start signals at 2.
        self.dialect.signal_frame(&mut self.frame, &self.data, self.sent + 2);
        self.writer.push_text(&self.frame);
        self.sent += 1;
    }

    /// Sends one signal now.
    pub(crate) async fn send_one(&mut self) -> std::io::Result<()> {
        self.push();
        self.writer.flush().await
    }

    /// Sends `count` signals in batches, as fast as the socket takes them.
    pub(crate) async fn send_burst(&mut self, count: u64) -> std::io::Result<()> {
        let end = self.sent + count;
        while self.sent < end {
            for _ in 0..SEND_BATCH.min(end - self.sent) {
                self.push();
            }
            self.writer.flush().await?;
        }
        Ok(())
    }

    /// Sends as fast as the slowest of `receivers` keeps up, with at most `window` signals not
    /// yet received by all of them, until `until`.
    pub(crate) async fn saturate(
        &mut self,
        receivers: &[Arc<Tally>],
        progress: &Progress,
        window: u64,
        until: Instant,
    ) -> std::io::Result<()> {
        while Instant::now() < until {
            let min = min_signals(receivers);
            let in_flight = self.sent.saturating_sub(min);
            if in_flight >= window {
                progress.waiting.store(true, Ordering::Relaxed);
                if min_signals(receivers) == min {
                    let _ = tokio::time::timeout(RECHECK, progress.notify.notified()).await;
                }
                continue;
            }
            for _ in 0..SEND_BATCH.min(window - in_flight) {
                self.push();
            }
            self.writer.flush().await?;
        }
        Ok(())
    }

    /// Waits until every receiver got everything sent, or `limit` passed. Returns whether they did.
    pub(crate) async fn drain(&self, receivers: &[Arc<Tally>], progress: &Progress, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if min_signals(receivers) >= self.sent {
                return true;
            }
            progress.waiting.store(true, Ordering::Relaxed);
            let _ = tokio::time::timeout(RECHECK, progress.notify.notified()).await;
        }
        min_signals(receivers) >= self.sent
    }
}
