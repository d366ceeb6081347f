//! Participants in bulk: seats (tokens), concurrent joins, and the receiver task that counts
//! signals and, when asked, records their latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::dialect::{Dialect, Joined, Seat, now_ns, parse_signal};
use crate::servers::{SECRET, ServerProc};
use crate::wire::{ConnectOptions, OP_CLOSE, OP_PING, OP_TEXT, Reader, Writer};

/// Concurrent REST requests when minting tokens.
const MINT_CONCURRENCY: usize = 32;
/// How long one whole batch of joins may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Seats for `count` participants in `room`: for signalroom the session is created and one
/// Connection (token) minted per participant through the REST API.
pub(crate) async fn seats(
    http: &reqwest::Client,
    server: &ServerProc,
    room: &str,
    count: usize,
) -> anyhow::Result<Vec<Seat>> {
    if server.dialect != Dialect::OpenVidu {
        return Ok((0..count).map(|_| Seat { room: room.to_owned(), token: None }).collect());
    }
    let api = format!("{}/openvidu/api", server.url);
    let status = http
        .post(format!("{api}/sessions"))
        .basic_auth("OPENVIDUAPP", Some(SECRET))
        .json(&json!({"customSessionId": room}))
        .send()
        .await?
        .status();
    if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
        bail!("creating session {room}: HTTP {status}");
    }
    let url = Arc::new(format!("{api}/sessions/{room}/connection"));
    let gate = Arc::new(Semaphore::new(MINT_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let (http, url, gate) = (http.clone(), Arc::clone(&url), Arc::clone(&gate));
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let c: Value = http
                .post(url.as_str())
                .basic_auth("OPENVIDUAPP", Some(SECRET))
                .json(&json!({"data": format!("p{i}")}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let token = c["token"].as_str().context("no token in the Connection")?.to_owned();
            anyhow::Ok((i, token))
        });
    }
    let mut tokens = vec![String::new(); count];
    while let Some(done) = tasks.join_next().await {
        let (i, token) = done??;
        tokens[i] = token;
    }
    Ok(tokens.into_iter().map(|t| Seat { room: room.to_owned(), token: Some(t) }).collect())
}

/// Joins every seat, `concurrency` at a time, handing each joined participant (with its index)
/// to `started`, which spawns what runs it. Returns the wall time and each join's duration.
pub(crate) async fn join_all<F>(
    dialect: Dialect,
    addr: SocketAddr,
    seats: Vec<Seat>,
    concurrency: usize,
    opts: ConnectOptions,
    started: F,
) -> anyhow::Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize, Joined) + Clone + Send + 'static,
{
    let begin = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (i, seat) in seats.into_iter().enumerate() {
        let gate = Arc::clone(&gate);
        let started = started.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let t = Instant::now();
            let joined = dialect.join(addr, &seat, opts).await.with_context(|| format!("participant {i}"))?;
            let took = t.elapsed();
            started(i, joined);
            anyhow::Ok(took)
        });
    }
    let mut took = Vec::new();
    let all = async {
        while let Some(done) = tasks.join_next().await {
            took.push(done??);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(JOIN_TIMEOUT, all).await.context("joins did not finish in time")??;
    Ok((begin.elapsed(), took))
}

/// What a receiver shares with the scenario.
#[derive(Default)]
pub(crate) struct Tally {
    /// Signals received.
    pub signals: AtomicU64,
    /// Error responses received (requests the server refused).
    pub errors: AtomicU64,
    /// Other text frames received: notifications (`participantJoined`, …).
    pub notes: AtomicU64,
    /// Set when the server closed the socket.
    pub closed: AtomicBool,
    /// Latencies (ns) of signals with sequence number ≥ `latency_from`, when recording.
    pub latencies: Option<Mutex<Vec<u64>>>,
    pub latency_from: AtomicU64,
}

impl Tally {
    pub(crate) fn recording() -> Self {
        Self { latencies: Some(Mutex::new(Vec::new())), ..Self::default() }
    }
}

/// Wakes a sender waiting for receivers to catch up.
#[derive(Default)]
pub(crate) struct Progress {
    pub waiting: AtomicBool,
    pub notify: Notify,
}

impl Progress {
    fn advanced(&self) {
        if self.waiting.load(Ordering::Relaxed) {
            self.waiting.store(false, Ordering::Relaxed);
            self.notify.notify_one();
        }
    }
}

/// Reads everything a participant receives until the socket closes: counts signals, answers
/// pings, records latencies.
/// `writer` answers pings; a sender's reader has none (its writer sends signals).
pub(crate) async fn receive(
    dialect: Dialect,
    mut reader: Reader,
    mut writer: Option<Writer>,
    tally: Arc<Tally>,
    progress: Arc<Progress>,
) {
    let mut lat = Vec::new();
    loop {
        let mut count = 0u64;
        let mut errors = 0u64;
        let mut notes = 0u64;
        let mut pong: Option<Vec<u8>> = None;
        let mut engine_ping = false;
        let from = tally.latency_from.load(Ordering::Relaxed);
        let now = if tally.latencies.is_some() { now_ns() } else { 0 };
        loop {
            let frame = match reader.parse() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    tally.closed.store(true, Ordering::Relaxed);
                    return;
                }
            };
            let payload = reader.payload(&frame);
            match frame.opcode {
                OP_TEXT => {
                    if let Some((ts, seq)) = parse_signal(payload) {
                        count += 1;
                        if tally.latencies.is_some() && seq >= from {
                            lat.push(now.saturating_sub(ts));
                        }
                    } else if dialect.is_engine_ping(payload) {
                        engine_ping = true;
                    } else if dialect.is_error(payload) {
                        errors += 1;
                    } else {
                        notes += 1;
                    }
                }
                OP_PING => pong = Some(payload.to_vec()),
                OP_CLOSE => {
                    tally.closed.store(true, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        if count > 0 {
            if let Some(l) = &tally.latencies {
                if !lat.is_empty() {
                    l.lock().expect("latency lock").append(&mut lat);
                }
            }
            tally.signals.fetch_add(count, Ordering::Relaxed);
            progress.advanced();
        }
        if errors > 0 {
            tally.errors.fetch_add(errors, Ordering::Relaxed);
        }
        if notes > 0 {
            tally.notes.fetch_add(notes, Ordering::Relaxed);
        }
        if let Some(w) = writer.as_mut() {
            if let Some(p) = pong {
                if w.pong(&p).await.is_err() {
                    break;
                }
            }
            if engine_ping && w.send_text(b"3").await.is_err() {
                break;
            }
        }
        match reader.fill().await {
            Ok(true) => {}
            _ => break,
        }
    }
    tally.closed.store(true, Ordering::Relaxed);
}

/// The smallest signal count among `tallies`.
pub(crate) fn min_signals(tallies: &[Arc<Tally>]) -> u64 {
    tallies.iter().map(|t| t.signals.load(Ordering::Relaxed)).min().unwrap_or(0)
}

/// The sum of signal counts among `tallies`.
pub(crate) fn sum_signals(tallies: &[Arc<Tally>]) -> u64 {
    tallies.iter().map(|t| t.signals.load(Ordering::Relaxed)).sum()
}
