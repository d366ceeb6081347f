//! `soak`: a signalroom server under a steady crowd for a long time, to see that nothing grows.
//!
//! Participants join, signal and leave in a loop, each on its own schedule, for `--duration-secs`;
//! a few of them stop reading once joined (others keep sending them large signals), so the server
//! must evict them and give their memory back. Every 10 s the server's RSS, threads, open file
//! descriptors and sessions are sampled. At the end the load stops, the server is left to settle,
//! and the final sample is compared with the baseline. Prints one line per sample and a summary
//! (JSON with `--out`). Bounded: every cycle has timeouts, and the whole run a deadline.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "soak-secret";
/// Samples are this far apart.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples before this are warm-up, left out of the slope.
const WARM_UP: Duration = Duration::from_secs(60);
/// Any one step of a cycle (a REST call, the join, the leave) must be done within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Signals a participant sends per cycle, and the pause between them.
const SIGNALS_PER_CYCLE: usize = 4;
const SIGNAL_PAUSE: Duration = Duration::from_millis(300);
/// Signal data in an ordinary session, and in a session with a participant that stopped reading.
const SMALL_DATA: usize = 256;
const LARGE_DATA: usize = 16 * 1024;
/// How long a participant that stopped reading keeps its socket before it starts over.
const STALL_HOLD: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(name = "soak", about = "a signalroom server under a steady crowd: does anything grow?")]
struct Args {
    /// The signalroom server binary (a release build).
    #[arg(long, default_value = "target/release/signalroom")]
    signalroom: PathBuf,
    /// How long the crowd comes and goes.
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
    /// Participants, each joining, signalling and leaving in a loop.
    #[arg(long, default_value_t = 2000)]
    participants: usize,
    /// Sessions they are spread over.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Participants that stop reading once joined (one per session, in the first sessions).
    #[arg(long, default_value_t = 5)]
    stalled: usize,
    /// Seconds the server is left to settle after the load (write timeout, reconnection grace
    /// and socket linger all pass).
    #[arg(long, default_value_t = 40)]
    settle_secs: u64,
    /// Where the summary goes as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The server's log.
    #[arg(long, default_value = "target/soak-server.log")]
    log: PathBuf,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Sample {
    secs: f64,
    rss_mb: f64,
    threads: usize,
    fds: usize,
    sessions: u64,
    joined: u64,
    cycles: u64,
    evictions_seen: u64,
}

#[derive(Default)]
struct Counters {
    joined: AtomicU64,
    cycles: AtomicU64,
    failures: AtomicU64,
    stalls: AtomicU64,
    evictions_seen: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hard_stop = Duration::from_secs(args.duration_secs + args.settle_secs + 300);
    tokio::time::timeout(hard_stop, run(args)).await.context("the soak overran its deadline")?
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.stalled > args.sessions || args.participants < args.sessions {
        bail!("need at least one participant per session, and at most one stalled per session");
    }
    if let Some(dir) = args.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::File::create(&args.log).with_context(|| format!("cannot create {:?}", args.log))?;
    let mut server = tokio::process::Command::new(&args.signalroom)
        .args(["serve", "--listen", "127.0.0.1:0", "--secret", SECRET, "--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {:?}", args.signalroom))?;
    let pid = server.id().context("the server exited at once")?;
    let mut lines = BufReader::new(server.stdout.take().context("no stdout")?).lines();
    let url = loop {
        let line = lines.next_line().await?.context("the server exited before it was ready")?;
        if let Some(url) = line.strip_prefix("signalroom ready: ") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = sample(pid, &http, &url, &counters, started).await?;
    print_sample("baseline", &baseline);

    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let mut crowd = tokio::task::JoinSet::new();
    for i in 0..args.participants {
        let p = Participant {
            index: i,
            session: format!("soak-{}", i % args.sessions),
            stalls: i < args.stalled,
            large: i % args.sessions < args.stalled,
            url: url.clone(),
            http: http.clone(),
            counters: Arc::clone(&counters),
        };
        crowd.spawn(p.run(deadline));
    }
    let mut samples = vec![baseline];
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
    while Instant::now() < deadline {
        tick.tick().await;
        let s = sample(pid, &http, &url, &counters, started).await?;
        print_sample("load", &s);
        samples.push(s);
    }
    // Every participant finishes its cycle (each step is bounded), then the server settles.
    while crowd.join_next().await.is_some() {}
    let load_end = sample(pid, &http, &url, &counters, started).await?;
    print_sample("load over", &load_end);
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let end = sample(pid, &http, &url, &counters, started).await?;
    print_sample("settled", &end);
    let _ = server.kill().await;

    let warm: Vec<&Sample> = samples.iter().filter(|s| s.secs >= WARM_UP.as_secs_f64()).collect();
    let slope = slope_mb_per_min(&warm);
    let peak = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
    let summary = json!({
        "participants": args.participants,
        "sessions": args.sessions,
        "stalled": args.stalled,
        "duration_secs": args.duration_secs,
        "cycles": counters.cycles.load(Ordering::Relaxed),
        "failed_cycles": counters.failures.load(Ordering::Relaxed),
        "stalls": counters.stalls.load(Ordering::Relaxed),
        "stalled_evicted": counters.evictions_seen.load(Ordering::Relaxed),
        "rss_slope_mb_per_min_after_warm_up": slope,
        "rss_peak_mb": peak,
        "baseline": baseline,
        "end": end,
        "samples": samples,
    });
    println!(
        "soak: {} cycles ({} failed), {} stalls ({} seen evicted); RSS slope after {}s: {:+.3} MB/min; \
         peak {:.1} MB; baseline → settled: RSS {:.1} → {:.1} MB, threads {} → {}, fds {} → {}, sessions {} → {}",
        summary["cycles"],
        summary["failed_cycles"],
        summary["stalls"],
        summary["stalled_evicted"],
        WARM_UP.as_secs(),
        slope,
        peak,
        baseline.rss_mb,
        end.rss_mb,
        baseline.threads,
        end.threads,
        baseline.fds,
        end.fds,
        baseline.sessions,
        end.sessions
    );
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(())
}

fn print_sample(phase: &str, s: &Sample) {
    println!(
        "soak: {:>6.0}s {phase:<10} rss {:>7.1} MB  threads {:>3}  fds {:>5}  sessions {:>4}  joined {:>5}  cycles {:>7}",
        s.secs, s.rss_mb, s.threads, s.fds, s.sessions, s.joined, s.cycles
    );
}

/// Least-squares slope of RSS over time, in MB per minute.
fn slope_mb_per_min(samples: &[&Sample]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|s| s.secs).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.rss_mb).sum::<f64>() / n;
    let cov: f64 = samples.iter().map(|s| (s.secs - mean_t) * (s.rss_mb - mean_r)).sum();
    let var: f64 = samples.iter().map(|s| (s.secs - mean_t).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var * 60.0 }
}

async fn sample(
    pid: u32,
    http: &reqwest::Client,
    url: &str,
    counters: &Counters,
    started: Instant,
) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("the server is gone")?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let page: Value = http
        .get(format!("{url}/openvidu/api/sessions"))
        .basic_auth("OPENVIDUAPP", Some(SECRET))
        .timeout(STEP_TIMEOUT)
        .send()
        .await?
        .json()
        .await?;
    Ok(Sample {
        secs: started.elapsed().as_secs_f64(),
        rss_mb: field("VmRSS:") as f64 / 1024.0,
        threads: field("Threads:") as usize,
        fds,
        sessions: page["numberOfElements"].as_u64().unwrap_or(0),
        joined: counters.joined.load(Ordering::Relaxed),
        cycles: counters.cycles.load(Ordering::Relaxed),
        evictions_seen: counters.evictions_seen.load(Ordering::Relaxed),
    })
}

struct Participant {
    index: usize,
    session: String,
    /// Stops reading once joined.
    stalls: bool,
    /// Its session holds a participant that stops reading: its signals are large.
    large: bool,
    url: String,
    http: reqwest::Client,
    counters: Arc<Counters>,
}

impl Participant {
    async fn run(self, deadline: Instant) {
        // Spread the first joins over the first 20 seconds.
        tokio::time::sleep(Duration::from_millis((self.index as u64 * 7919) % 20_000)).await;
        let mut round = 0u64;
        while Instant::now() < deadline {
            round += 1;
            match self.cycle().await {
                Ok(()) => self.counters.cycles.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    eprintln!(
                        "soak: participant {} (session {}): cycle failed: {e:#}",
                        self.index, self.session
                    );
                    self.counters.failures.fetch_add(1, Ordering::Relaxed)
                }
            };
            // 2 to 6 seconds between cycles.
            let pause = 2000 + (self.index as u64 * 31 + round * 977) % 4000;
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    async fn rest(&self, path: &str, body: Value) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let r = self
            .http
            .post(format!("{}/openvidu/api{path}", self.url))
            .basic_auth("OPENVIDUAPP", Some(SECRET))
            .json(&body)
            .timeout(STEP_TIMEOUT)
            .send()
            .await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn cycle(&self) -> anyhow::Result<()> {
        let (status, _) = self.rest("/sessions", json!({"customSessionId": self.session})).await?;
        if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
            bail!("session: {status}");
        }
        let (status, c) = self.rest(&format!("/sessions/{}/connection", self.session), json!({})).await?;
        if !status.is_success() {
            bail!("connection: {status}");
        }
        let token = c["token"].as_str().context("no token")?.to_owned();
        let ws_url = format!("{}/openvidu?sessionId={}", self.url.replacen("http", "ws", 1), self.session);
        let (ws, _) = tokio::time::timeout(STEP_TIMEOUT, tokio_tungstenite::connect_async(ws_url)).await??;
        let (mut tx, mut rx) = ws.split();
        let send = |id: u64, method: &str, params: Value| {
            Message::Text(json!({"jsonrpc":"2.0","method":method,"params":params,"id":id}).to_string().into())
        };
        tx.send(send(0, "ping", json!({"interval": 5000}))).await?;
        let join = json!({"token": token, "session": self.session, "platform": "soak", "metadata": format!("p{}", self.index),
            "secret": "", "recorder": false, "stt": false});
        tx.send(send(1, "joinRoom", join)).await?;
        tokio::time::timeout(STEP_TIMEOUT, answer(&mut rx, 1)).await??;
        self.counters.joined.fetch_add(1, Ordering::Relaxed);
        if self.stalls {
            // Reads nothing from now on; the server should evict it, and its socket ends.
            self.counters.stalls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(STALL_HOLD).await;
            let ended = tokio::time::timeout(STEP_TIMEOUT, async {
                while let Some(Ok(m)) = rx.next().await {
                    if m.is_close() {
                        break;
                    }
                }
            })
            .await;
            if ended.is_ok() {
                self.counters.evictions_seen.fetch_add(1, Ordering::Relaxed);
            }
            self.counters.joined.fetch_sub(1, Ordering::Relaxed);
            return Ok(());
        }
        // Reads everything it is sent while it signals, until the answer to its leaveRoom.
        let reader =
            tokio::spawn(async move { tokio::time::timeout(STEP_TIMEOUT * 2, answer(&mut rx, 99)).await });
        let data = "s".repeat(if self.large { LARGE_DATA } else { SMALL_DATA });
        let message = json!({"to": [], "data": data, "type": "signal:soak"}).to_string();
        for i in 0..SIGNALS_PER_CYCLE {
            tx.send(send(2 + i as u64, "sendMessage", json!({"message": message}))).await?;
            tokio::time::sleep(SIGNAL_PAUSE).await;
        }
        tx.send(send(99, "leaveRoom", json!({}))).await?;
        let left = reader.await;
        self.counters.joined.fetch_sub(1, Ordering::Relaxed);
        let _ = tx.close().await;
        match left {
            Ok(Ok(Ok(()))) => Ok(()),
            _ => bail!("no answer to leaveRoom"),
        }
    }
}

/// Reads until the answer to request `id`.
async fn answer<S>(rx: &mut S, id: u64) -> anyhow::Result<()>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(m) = rx.next().await {
        if let Message::Text(t) = m? {
            if t.contains(&format!("\"id\":{id},")) || t.contains(&format!("\"id\":{id}}}")) {
                let v: Value = serde_json::from_str(&t)?;
                if v["id"] == id {
                    if let Some(e) = v.get("error") {
                        bail!("request {id} refused: {e}");
                    }
                    return Ok(());
                }
            }
        }
    }
    bail!("socket closed before the answer to {id}")
}
