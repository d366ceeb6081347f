//! Scenario 13: one Python process in many sessions (a bot service). `bench/python/bots.py` joins
//! one participant to each of `bots_sessions` sessions and answers every signal from a handler;
//! the load generator fills each session with `bots_size - 1` participants of its own, which
//! signal the bot (and only it) and time its answers. Run for the `signalroom` package, then for
//! a pure-Python `websockets` service doing the same, each against a fresh server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::dialect::{Dialect, Seat, now_ns};
use crate::procstat::CpuMeter;
use crate::scenarios::Ctx;
use crate::servers::{SECRET, ServerProc};
use crate::steady::{Phase, Shared, participant};
use crate::wire::ConnectOptions;

/// How long the Python process may take to join every session, and to answer a command.
const PY_JOIN_TIMEOUT: Duration = Duration::from_secs(180);
const PY_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One service's run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BotRun {
    pub mode: String,
    pub sessions: usize,
    pub rss_base_bytes: u64,
    pub rss_joined_bytes: u64,
    pub rss_after_bytes: u64,
    /// (RSS once joined − RSS before the first join) ÷ sessions.
    pub bytes_per_session: f64,
    /// … and with RSS after the load.
    pub bytes_per_session_after: f64,
    pub join_seconds: f64,
    /// Fixed load: signals/s offered, answers/s received, latency of the answers.
    pub rate_signals_per_s: f64,
    pub rate_answers_per_s: f64,
    pub rate_p50_us: f64,
    pub rate_p99_us: f64,
    pub rate_p999_us: f64,
    pub rate_samples: usize,
    /// The Python process's loop lag at the fixed load (its probe: 1 ms sleeps).
    pub rate_lag_max_ms: f64,
    pub rate_lag_p99_ms: f64,
    /// … the most CPU time the loop's thread used within one probe's wait (work holding the loop,
    /// without the time the kernel gave the core to another process), and the longest collection
    /// of Python's cyclic GC (part of that work).
    pub rate_lag_cpu_max_ms: f64,
    pub rate_gc_max_ms: f64,
    /// Saturation (one signal in flight per participant): signals the handlers handled per second.
    pub handled_per_s: f64,
    pub saturated_answers_per_s: f64,
    pub saturated_lag_max_ms: f64,
    pub saturated_lag_p99_ms: f64,
    /// Cores the Python process, the server and the load generator used while saturated.
    pub python_cpu: f64,
    pub server_cpu: f64,
    pub loadgen_cpu: f64,
    /// The same, in µs of CPU per signal the handlers handled.
    pub python_us_per_handled: f64,
    pub server_us_per_handled: f64,
    pub loadgen_us_per_handled: f64,
    pub closed: u64,
}

/// Scenario 13's figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bots {
    pub status: String,
    pub signalroom: Option<BotRun>,
    pub websockets: Option<BotRun>,
    /// signalroom's handled signals/s ÷ the pure-Python service's.
    pub ratio: Option<f64>,
}

pub(crate) async fn bots(ctx: &Ctx) -> anyhow::Result<Bots> {
    let pending = |why: String| Bots {
        status: format!("pending: {why}"),
        signalroom: None,
        websockets: None,
        ratio: None,
    };
    let Some(py) = &ctx.python else { return Ok(pending("no Python interpreter given".into())) };
    let check = Command::new(py).args(["-c", "import signalroom, websockets"]).output().await;
    if !check.as_ref().is_ok_and(|o| o.status.success()) {
        return Ok(pending(format!("`import signalroom, websockets` fails in {py:?}")));
    }
    let mut runs = Vec::new();
    for mode in ["signalroom", "websockets"] {
        let server = ctx.launch.start(Dialect::OpenVidu, &format!("bots-{mode}"), &[]).await?;
        let r = run(ctx, py, &server, mode).await;
        server.stop().await;
        let r = r.with_context(|| format!("{mode} service"))?;
        crate::progress(&format!(
            "bots {mode}: {} sessions, {:.1} KiB per session ({:.1} after the load), fixed load {:.0}/s: \
             p50 {:.0} µs p99 {:.0} µs, loop lag max {:.1} ms (the loop's own work in one probe's wait \
             at most {:.1} ms, the longest GC collection {:.1} ms); saturated {:.0} handled/s (loop lag max {:.1} ms; \
             CPU per handled signal: Python {:.1} µs, server {:.1} µs, load generator {:.1} µs)",
            r.sessions,
            r.bytes_per_session / 1024.0,
            r.bytes_per_session_after / 1024.0,
            r.rate_signals_per_s,
            r.rate_p50_us,
            r.rate_p99_us,
            r.rate_lag_max_ms,
            r.rate_lag_cpu_max_ms,
            r.rate_gc_max_ms,
            r.handled_per_s,
            r.saturated_lag_max_ms,
            r.python_us_per_handled,
            r.server_us_per_handled,
            r.loadgen_us_per_handled,
        ));
        runs.push(r);
    }
    let websockets = runs.pop();
    let signalroom = runs.pop();
    let ratio = match (&signalroom, &websockets) {
        (Some(s), Some(w)) if w.handled_per_s > 0.0 => Some(s.handled_per_s / w.handled_per_s),
        _ => None,
    };
    Ok(Bots { status: "ok".into(), signalroom, websockets, ratio })
}

/// A seat and the connection id the REST API gave it.
pub(crate) struct Minted {
    pub seat: Seat,
    pub connection_id: String,
}

/// Sessions `{prefix}-0`… of `size` Connections each, minted through the REST API, 32 requests
/// at a time.
pub(crate) async fn mint(
    http: &reqwest::Client,
    server: &ServerProc,
    prefix: &str,
    sessions: usize,
    size: usize,
) -> anyhow::Result<Vec<Vec<Minted>>> {
    let api = format!("{}/openvidu/api", server.url);
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = JoinSet::new();
    for s in 0..sessions {
        let (http, api, gate) = (http.clone(), api.clone(), Arc::clone(&gate));
        let room = format!("{prefix}-{s}");
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            http.post(format!("{api}/sessions"))
                .basic_auth("OPENVIDUAPP", Some(SECRET))
                .json(&json!({"customSessionId": room}))
                .send()
                .await?
                .error_for_status()?;
            let mut seats = Vec::with_capacity(size);
            for i in 0..size {
                let c: Value = http
                    .post(format!("{api}/sessions/{room}/connection"))
                    .basic_auth("OPENVIDUAPP", Some(SECRET))
                    .json(&json!({"data": format!("p{i}")}))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let token = c["token"].as_str().context("no token")?.to_owned();
                let connection_id = c["connectionId"].as_str().context("no connectionId")?.to_owned();
                seats.push(Minted { seat: Seat { room: room.clone(), token: Some(token) }, connection_id });
            }
            anyhow::Ok((s, seats))
        });
    }
    let mut out: Vec<Vec<Minted>> = (0..sessions).map(|_| Vec::new()).collect();
    while let Some(done) = tasks.join_next().await {
        let (s, seats) = done??;
        out[s] = seats;
    }
    Ok(out)
}

/// The Python process, its stdin and its stdout's lines.
struct Service {
    child: tokio::process::Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Service {
    async fn command(&mut self, command: &str) -> anyhow::Result<Value> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(PY_COMMAND_TIMEOUT, self.lines.next_line())
            .await
            .with_context(|| format!("no answer to {command}"))??
            .context("the service exited")?;
        Ok(serde_json::from_str(&line)?)
    }
}

async fn run(ctx: &Ctx, py: &Path, server: &ServerProc, mode: &str) -> anyhow::Result<BotRun> {
    let plan = &ctx.plan;
    let (sessions, size) = (plan.bots_sessions, plan.bots_size);
    let minted = mint(&ctx.http, server, "bots", sessions, size).await?;
    let tokens: Vec<&str> = minted.iter().map(|s| s[0].seat.token.as_deref().unwrap_or_default()).collect();
    std::fs::create_dir_all(&ctx.launch.logs)?;
    let file: PathBuf = ctx.launch.logs.join(format!("bots-{mode}-tokens.txt"));
    std::fs::write(&file, tokens.join("\n"))?;
    let mut child = Command::new(py)
        .arg("-u")
        .arg(ctx.python_dir.join("bots.py"))
        .args(["--mode", mode, "--tokens"])
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start bots.py")?;
    let pid = child.id().context("bots.py exited at once")?;
    let stdin = child.stdin.take().context("no stdin")?;
    let lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut service = Service { child, stdin, lines };
    let begin = Instant::now();
    let line = tokio::time::timeout(PY_JOIN_TIMEOUT, service.lines.next_line())
        .await
        .context("the service did not join every session in time")??
        .context("the service exited before joining")?;
    let join_seconds = begin.elapsed().as_secs_f64();
    let joined: Value = serde_json::from_str(&line).with_context(|| format!("bad line {line:?}"))?;
    let rss_base = joined["rss_base"].as_u64().context("no rss_base")?;
    let rss_joined = joined["rss_joined"].as_u64().context("no rss_joined")?;

    // The others: size − 1 participants of the load generator per session, signalling the bot.
    let shared = Arc::new(Shared::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Idle);
    let seats: Vec<(Seat, String)> = minted
        .iter()
        .flat_map(|s| s[1..].iter().map(|m| (m.seat.clone(), s[0].connection_id.clone())))
        .collect();
    let participants = seats.len();
    let addr = server.addr;
    let mut tasks = JoinSet::new();
    let gate = Arc::new(Semaphore::new(100));
    let joins = async {
        let mut joining = JoinSet::new();
        for (i, (seat, bot)) in seats.into_iter().enumerate() {
            let gate = Arc::clone(&gate);
            joining.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let joined = Dialect::OpenVidu.join(addr, &seat, ConnectOptions::default()).await?;
                anyhow::Ok((i, joined, bot))
            });
        }
        while let Some(done) = joining.join_next().await {
            let (i, joined, bot) = done??;
            tasks.spawn(participant(
                i,
                participants,
                Dialect::OpenVidu,
                joined,
                Some(bot),
                phase_rx.clone(),
                Arc::clone(&shared),
            ));
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(120), joins)
        .await
        .context("the participants did not join in time")??;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Fixed load: every participant at the same rate, `bots_signals_per_s` in all.
    let rate = plan.bots_signals_per_s as f64;
    let period = Duration::from_secs_f64(participants as f64 / rate.max(1.0));
    phase_tx.send(Phase::Rate { period })?;
    tokio::time::sleep(Duration::from_secs_f64(plan.bots_warmup_s)).await;
    service.command("reset").await?;
    let (a0, t0) = (shared.answers.load(Ordering::Relaxed), Instant::now());
    shared.record_from.store(now_ns(), Ordering::Relaxed);
    shared.recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(plan.bots_measure_s)).await;
    shared.recording.store(false, Ordering::Relaxed);
    let rate_answers_per_s =
        (shared.answers.load(Ordering::Relaxed) - a0) as f64 / t0.elapsed().as_secs_f64();
    let at_rate = service.command("report").await?;
    let mut lat = std::mem::take(&mut *shared.latencies.lock().expect("latencies"));
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |&ns| ns as f64 / 1e3)
    };

    // Saturation: one signal in flight per participant.
    phase_tx.send(Phase::Closed)?;
    tokio::time::sleep(Duration::from_secs_f64(plan.bots_warmup_s)).await;
    service.command("reset").await?;
    let cpu = CpuMeter::start_all(&[pid, server.pid, std::process::id()]);
    let (a1, t1) = (shared.answers.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(plan.bots_saturate_s)).await;
    let saturated_answers_per_s =
        (shared.answers.load(Ordering::Relaxed) - a1) as f64 / t1.elapsed().as_secs_f64();
    let cores = cpu.cores_each();
    let saturated = service.command("report").await?;
    phase_tx.send(Phase::Stop)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = crate::procstat::rss_bytes(pid)?;
    let _ = service.stdin.write_all(b"quit\n").await;
    let _ = tokio::time::timeout(Duration::from_secs(10), service.child.wait()).await;
    tasks.abort_all();

    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let handled_per_s = f(&saturated, "handled") / f(&saturated, "seconds");
    let core = |i: usize| cores.get(i).copied().unwrap_or(f64::NAN);
    let per_handled = |i: usize| core(i) / handled_per_s * 1e6;
    Ok(BotRun {
        mode: mode.to_owned(),
        sessions,
        rss_base_bytes: rss_base,
        rss_joined_bytes: rss_joined,
        rss_after_bytes: rss_after,
        bytes_per_session: rss_joined.saturating_sub(rss_base) as f64 / sessions as f64,
        bytes_per_session_after: rss_after.saturating_sub(rss_base) as f64 / sessions as f64,
        join_seconds,
        rate_signals_per_s: rate,
        rate_answers_per_s,
        rate_p50_us: pct(0.5),
        rate_p99_us: pct(0.99),
        rate_p999_us: pct(0.999),
        rate_samples: lat.len(),
        rate_lag_max_ms: f(&at_rate, "lag_max_ms"),
        rate_lag_p99_ms: f(&at_rate, "lag_p99_ms"),
        rate_lag_cpu_max_ms: f(&at_rate, "lag_cpu_max_ms"),
        rate_gc_max_ms: f(&at_rate, "gc_max_ms"),
        handled_per_s,
        saturated_answers_per_s,
        saturated_lag_max_ms: f(&saturated, "lag_max_ms"),
        saturated_lag_p99_ms: f(&saturated, "lag_p99_ms"),
        python_cpu: core(0),
        server_cpu: core(1),
        loadgen_cpu: core(2),
        python_us_per_handled: per_handled(0),
        server_us_per_handled: per_handled(1),
        loadgen_us_per_handled: per_handled(2),
        closed: shared.closed.load(Ordering::Relaxed),
    })
}
