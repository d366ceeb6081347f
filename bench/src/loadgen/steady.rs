//! Participants that signal at a steady rate, or one signal at a time, and time what they
//! receive: scenario 13's (signalling a bot) and scenario 14's (many small rooms).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::dialect::{Dialect, Joined, now_ns, parse_signal, signal_data};
use crate::scenarios::SIGNAL_BYTES;
use crate::wire::{OP_PING, OP_TEXT};

/// What the load generator's participants do now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Phase {
    /// Nothing (joined, reading).
    Idle,
    /// Each sends one signal every `period`, from a start spread over one period.
    Rate { period: Duration },
    /// Each keeps one signal waiting for its answer: the bot's throughput.
    Closed,
    /// Stop sending (answers are still read).
    Stop,
}

/// What every participant adds to.
#[derive(Default)]
pub(crate) struct Shared {
    pub sent: AtomicU64,
    /// Signals received (in scenario 13: the bot's answers).
    pub answers: AtomicU64,
    /// Signals sent at or after this time (ns, [`now_ns`]) have their latency kept.
    pub record_from: AtomicU64,
    pub recording: AtomicBool,
    pub latencies: Mutex<Vec<u64>>,
    pub closed: AtomicU64,
}

/// One participant of the load generator: sends signals as the phase says (OpenVidu: to `to`
/// only, or to everyone), reads what it receives (counting signals, their latency when
/// recording), answers pings. Participant `index` of `count` starts its period at its share of it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn participant(
    index: usize,
    count: usize,
    dialect: Dialect,
    joined: Joined,
    to: Option<String>,
    mut phase: watch::Receiver<Phase>,
    shared: Arc<Shared>,
) {
    let Joined { mut reader, mut writer } = joined;
    let head = to.map(|to| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"message":"{{\"to\":[\"{to}\"],\"data\":\""#
        )
    });
    let (mut seq, mut id, mut in_flight) = (0u64, 2u64, 0u64);
    let mut frame = Vec::with_capacity(256);
    let mut data = Vec::with_capacity(SIGNAL_BYTES);
    let mut current = Phase::Idle;
    let mut next = tokio::time::Instant::now();
    let mut lat = Vec::new();
    let far = Duration::from_secs(3600);
    loop {
        let send_now = match current {
            Phase::Closed => in_flight == 0,
            _ => false,
        };
        if send_now || (matches!(current, Phase::Rate { .. }) && tokio::time::Instant::now() >= next) {
            data.clear();
            signal_data(&mut data, now_ns(), seq, SIGNAL_BYTES);
            frame.clear();
            match &head {
                Some(head) => {
                    frame.extend_from_slice(head.as_bytes());
                    frame.extend_from_slice(&data);
                    frame.extend_from_slice(br#"\",\"type\":\"signal:bench\"}"},"id":"#);
                    frame.extend_from_slice(id.to_string().as_bytes());
                    frame.push(b'}');
                }
                None => dialect.signal_frame(&mut frame, &data, id),
            }
            if writer.send_text(&frame).await.is_err() {
                break;
            }
            (seq, id, in_flight) = (seq + 1, id + 1, in_flight + 1);
            shared.sent.fetch_add(1, Ordering::Relaxed);
            if let Phase::Rate { period } = current {
                next += period;
            }
            continue;
        }
        let wake = match current {
            Phase::Rate { .. } => next,
            _ => tokio::time::Instant::now() + far,
        };
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                current = *phase.borrow_and_update();
                if let Phase::Rate { period } = current {
                    // Spread the participants' sends over one period.
                    next = tokio::time::Instant::now() + period.mul_f64(index as f64 / count.max(1) as f64);
                }
            }
            () = tokio::time::sleep_until(wake) => {}
            more = reader.fill() => {
                if !matches!(more, Ok(true)) {
                    break;
                }
                let now = now_ns();
                let (from, recording) = (shared.record_from.load(Ordering::Relaxed), shared.recording.load(Ordering::Relaxed));
                let mut answers = 0;
                let mut pong = None;
                while let Ok(Some(f)) = reader.parse() {
                    let payload = reader.payload(&f);
                    match f.opcode {
                        OP_TEXT => {
                            if let Some((ts, _)) = parse_signal(payload) {
                                answers += 1;
                                if recording && ts >= from {
                                    lat.push(now.saturating_sub(ts));
                                }
                            }
                        }
                        OP_PING => pong = Some(payload.to_vec()),
                        _ => {}
                    }
                }
                in_flight = in_flight.saturating_sub(answers);
                shared.answers.fetch_add(answers, Ordering::Relaxed);
                if !lat.is_empty() {
                    shared.latencies.lock().expect("latencies").append(&mut lat);
                }
                if let Some(p) = pong {
                    if writer.pong(&p).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}
