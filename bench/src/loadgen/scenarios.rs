//! The seven scenarios. Each starts fresh server processes, drives them, stops them, and returns
//! their figures; every loop is bounded in count and in time. Fan-out and latency also run
//! against several signalroom nodes sharing a `redis-server` (scenario 7, two nodes).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::task::AbortHandle;

use crate::crowd::{self, Progress, Tally, join_all, sum_signals};
use crate::dialect::{Dialect, Joined};
use crate::procstat::CpuMeter;
use crate::sender::Blaster;
use std::net::SocketAddr;

use crate::servers::{Deployment, Launch, SECRET, ServerProc, Topology};
use crate::wire::ConnectOptions;

/// Concurrent joins while setting a scenario up.
const SETUP_CONCURRENCY: usize = 100;
/// Signal data size (bytes) in every scenario.
pub(crate) const SIGNAL_BYTES: usize = 64;
/// Signals a sender may have ahead of its slowest receiver in saturation scenarios.
const WINDOW: u64 = 1024;
/// How long stragglers get to receive everything after a saturation run.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// Time for notifications of the set-up (participantJoined...) to be read before measuring.
const SETTLE: Duration = Duration::from_millis(300);

/// Sizes and durations of one run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    pub fanout_receivers: Vec<usize>,
    pub fanout_warmup_s: f64,
    pub fanout_measure_s: f64,
    pub latency_receivers: usize,
    pub latency_signals_per_s: u64,
    pub latency_warmup_s: f64,
    pub latency_measure_s: f64,
    /// The measure is taken in this many turns per server, the servers taking turns.
    pub latency_rounds: usize,
    pub idle_counts: Vec<usize>,
    pub idle_warmup: usize,
    pub room_size: usize,
    pub joins: usize,
    /// Sessions of the joins scenario fill up to this many participants.
    pub join_session_size: usize,
    pub join_concurrency: usize,
    pub isolation_participants: usize,
    pub isolation_measure_s: f64,
    pub python_signals: u64,
    pub python_timeout_s: f64,
    /// Scenario 11: request/reply round trips (each way of doing them), in this many alternating
    /// rounds, and the bytes of the `send_text` against raw signals.
    pub rpc_requests: u64,
    pub rpc_rounds: u64,
    pub rpc_stream_bytes: u64,
    /// Receivers of the two-node fan-out (and of its one-node reference).
    pub twonode_receivers: usize,
    /// Participants of the big session, and how many join at once.
    pub big_participants: usize,
    pub big_concurrency: usize,
    /// How long the big session sits idle before its memory is read again.
    pub big_idle_s: f64,
    /// Scenario 12: sessions of `scaleout_size` participants spread over four nodes sharing a
    /// 3-primary Redis Cluster, each sent `scaleout_signals` broadcasts.
    pub scaleout_sessions: usize,
    pub scaleout_size: usize,
    pub scaleout_signals: usize,
    /// Scenario 13: one Python process in `bots_sessions` sessions of `bots_size` participants
    /// (the others the load generator's), signalled at `bots_signals_per_s` in all, then saturated.
    pub bots_sessions: usize,
    pub bots_size: usize,
    pub bots_signals_per_s: u64,
    pub bots_warmup_s: f64,
    pub bots_measure_s: f64,
    pub bots_saturate_s: f64,
    /// Scenario 14: `smallrooms_sessions` rooms of `smallrooms_size`, everyone signalling at a
    /// steady rate; raw is probed at `smallrooms_probe_signals_per_s` to find its half-busy rate.
    pub smallrooms_sessions: usize,
    pub smallrooms_size: usize,
    pub smallrooms_probe_signals_per_s: u64,
    pub smallrooms_probe_s: f64,
    pub smallrooms_warmup_s: f64,
    pub smallrooms_measure_s: f64,
}

impl Plan {
    pub(crate) fn full() -> Self {
        Self {
            fanout_receivers: vec![2, 10, 100, 1000],
            fanout_warmup_s: 0.5,
            fanout_measure_s: 3.0,
            latency_receivers: 100,
            latency_signals_per_s: 100,
            latency_warmup_s: 1.0,
            latency_measure_s: 5.0,
            latency_rounds: 5,
            idle_counts: vec![1000, 10_000],
            idle_warmup: 10,
            room_size: 100,
            joins: 10_000,
            join_session_size: 1000,
            join_concurrency: 100,
            isolation_participants: 1000,
            isolation_measure_s: 5.0,
            python_signals: 100_000,
            python_timeout_s: 60.0,
            rpc_requests: 20_000,
            rpc_rounds: 10,
            rpc_stream_bytes: 50_000_000,
            twonode_receivers: 1000,
            big_participants: 10_000,
            big_concurrency: 100,
            big_idle_s: 5.0,
            scaleout_sessions: 600,
            scaleout_size: 5,
            scaleout_signals: 20,
            bots_sessions: 1000,
            bots_size: 5,
            bots_signals_per_s: 2000,
            bots_warmup_s: 1.0,
            bots_measure_s: 5.0,
            bots_saturate_s: 3.0,
            smallrooms_sessions: 2000,
            smallrooms_size: 5,
            smallrooms_probe_signals_per_s: 20_000,
            smallrooms_probe_s: 2.0,
            smallrooms_warmup_s: 1.0,
            smallrooms_measure_s: 5.0,
        }
    }

    pub(crate) fn smoke() -> Self {
        Self {
            fanout_receivers: vec![3, 10],
            fanout_warmup_s: 0.1,
            fanout_measure_s: 0.4,
            latency_receivers: 5,
            latency_signals_per_s: 100,
            latency_warmup_s: 0.1,
            latency_measure_s: 0.4,
            latency_rounds: 2,
            idle_counts: vec![20, 50],
            idle_warmup: 5,
            room_size: 10,
            joins: 40,
            join_session_size: 20,
            join_concurrency: 10,
            isolation_participants: 10,
            isolation_measure_s: 0.4,
            python_signals: 300,
            python_timeout_s: 30.0,
            rpc_requests: 100,
            rpc_rounds: 2,
            rpc_stream_bytes: 200_000,
            twonode_receivers: 10,
            big_participants: 40,
            big_concurrency: 10,
            big_idle_s: 0.2,
            scaleout_sessions: 6,
            scaleout_size: 3,
            scaleout_signals: 3,
            bots_sessions: 4,
            bots_size: 3,
            bots_signals_per_s: 40,
            bots_warmup_s: 0.2,
            bots_measure_s: 0.5,
            bots_saturate_s: 0.5,
            smallrooms_sessions: 4,
            smallrooms_size: 3,
            smallrooms_probe_signals_per_s: 100,
            smallrooms_probe_s: 0.3,
            smallrooms_warmup_s: 0.2,
            smallrooms_measure_s: 0.5,
        }
    }
}

/// What a scenario needs.
pub(crate) struct Ctx {
    pub launch: Launch,
    pub http: reqwest::Client,
    pub plan: Plan,
    pub python: Option<PathBuf>,
    pub python_dir: PathBuf,
}

/// Tasks to abort when a scenario ends (their sockets close with them).
#[derive(Clone, Default)]
struct Tasks(Arc<Mutex<Vec<AbortHandle>>>);

impl Tasks {
    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) {
        let handle = tokio::spawn(f).abort_handle();
        self.0.lock().expect("tasks lock").push(handle);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        if Arc::strong_count(&self.0) == 1 {
            for h in self.0.lock().expect("tasks lock").drain(..) {
                h.abort();
            }
        }
    }
}

/// A joined crowd of receivers plus one sender, in one room.
struct Crowd {
    /// Held so the participants live as long as the crowd.
    _tasks: Tasks,
    receivers: Vec<Arc<Tally>>,
    /// The node each receiver joined (index into the deployment's nodes; the sender is on 0).
    node_of: Vec<usize>,
    progress: Arc<Progress>,
    blaster: Blaster,
    /// The sender's own copies and the answers it gets.
    echo: Arc<Tally>,
}

/// Joins a sender on the first of `nodes`, then `receivers` receivers spread over `nodes` in
/// turn (receiver `i` on node `i % nodes.len()`, with a token minted there), each reading from
/// the moment it joined. `extra` more seats are minted in the same room on the first node and
/// returned, unused.
async fn crowd(
    ctx: &Ctx,
    nodes: &[ServerProc],
    room: &str,
    receivers: usize,
    recording: bool,
    extra: usize,
) -> anyhow::Result<(Crowd, Vec<crate::dialect::Seat>)> {
    let home = nodes.first().context("no server")?;
    let mut seats = crowd::seats(&ctx.http, home, room, 1 + extra).await?;
    let extra_seats = seats.split_off(1);
    let sender_seat = seats.remove(0);
    let dialect = home.dialect;
    let tasks = Tasks::default();
    let progress = Arc::new(Progress::default());
    let Joined { reader, writer } = dialect.join(home.addr, &sender_seat, ConnectOptions::default()).await?;
    let echo = Arc::new(Tally::default());
    tasks.spawn(crowd::receive(dialect, reader, None, Arc::clone(&echo), Arc::new(Progress::default())));
    let tallies: Vec<Arc<Tally>> = (0..receivers)
        .map(|_| Arc::new(if recording { Tally::recording() } else { Tally::default() }))
        .collect();
    let node_of: Vec<usize> = (0..receivers).map(|i| i % nodes.len()).collect();
    let concurrency = SETUP_CONCURRENCY;
    for (k, node) in nodes.iter().enumerate() {
        // This node's receivers, by their index among all receivers.
        let mine: Arc<Vec<usize>> = Arc::new((0..receivers).filter(|&i| node_of[i] == k).collect());
        if mine.is_empty() {
            continue;
        }
        let seats = crowd::seats(&ctx.http, node, room, mine.len()).await?;
        let started = {
            let (tasks, tallies, progress) = (tasks.clone(), tallies.clone(), Arc::clone(&progress));
            move |i: usize, j: Joined| {
                let (tally, progress) = (Arc::clone(&tallies[mine[i]]), Arc::clone(&progress));
                tasks.spawn(crowd::receive(dialect, j.reader, Some(j.writer), tally, progress));
            }
        };
        join_all(dialect, node.addr, seats, concurrency, ConnectOptions::default(), started).await?;
    }
    tokio::time::sleep(SETTLE).await;
    let blaster = Blaster::new(dialect, writer, SIGNAL_BYTES);
    Ok((Crowd { _tasks: tasks, receivers: tallies, node_of, progress, blaster, echo }, extra_seats))
}

impl Crowd {
    /// Signals received by the receivers on another node than the sender's.
    fn cross_node_signals(&self) -> u64 {
        let far = self.receivers.iter().zip(&self.node_of).filter(|&(_, &node)| node != 0);
        far.map(|(t, _)| t.signals.load(Ordering::Relaxed)).sum()
    }
}

/// Scenario 1: one sender, `n` receivers, sending as fast as the slowest receiver keeps up.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Fanout {
    pub receivers: usize,
    /// Server nodes (more than one: signalroom nodes sharing a `redis-server`).
    pub nodes: usize,
    pub seconds: f64,
    pub signals_per_s: f64,
    /// At every receiver, wherever it joined.
    pub deliveries_per_s: f64,
    /// At the receivers on another node than the sender's (none with one node).
    pub cross_node_deliveries_per_s: f64,
    /// Cores the server side used on average while measured (1.0 = one core busy): every node
    /// and Redis together.
    pub server_cpu: f64,
    /// The same, per process: each node in turn, then Redis.
    pub server_cpu_each: Vec<f64>,
    /// Cores the load generator used on average while measured.
    pub loadgen_cpu: f64,
    /// Whether every receiver got every signal sent.
    pub complete: bool,
    pub errors: u64,
    pub receivers_closed: usize,
}

pub(crate) async fn fanout(
    ctx: &Ctx,
    dialect: Dialect,
    n: usize,
    topology: Topology,
) -> anyhow::Result<Fanout> {
    let deployment = ctx.launch.deploy(dialect, &format!("fanout-{n}"), topology, &[]).await?;
    let result = fanout_on(ctx, &deployment, n, dialect).await;
    deployment.stop().await;
    result
}

/// The other ways raw-server runs scenario 1, beside its plain (tokio-tungstenite) mode.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawVariant {
    /// `--by-hand`: the same broadcast, the sockets read and written by hand (the leanest).
    ByHand,
    /// `--protocol`: for each signal, what OpenVidu writes (the answer, the notification to
    /// everyone): the limit for the same bytes. The sender frames its signals as OpenVidu's
    /// `sendMessage` requests.
    Protocol,
}

impl RawVariant {
    pub(crate) const ALL: [RawVariant; 2] = [RawVariant::ByHand, RawVariant::Protocol];

    /// Its results' key prefix (`fanout_by_hand_N`).
    pub(crate) fn key(self) -> &'static str {
        match self {
            RawVariant::ByHand => "fanout_by_hand",
            RawVariant::Protocol => "fanout_protocol",
        }
    }

    /// Its name in progress lines.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            RawVariant::ByHand => "raw by hand",
            RawVariant::Protocol => "raw writing OpenVidu's signal bytes",
        }
    }
}

/// Scenario 1 against raw-server run as `variant`.
pub(crate) async fn fanout_raw(ctx: &Ctx, n: usize, variant: RawVariant) -> anyhow::Result<Fanout> {
    let (flag, frames) = match variant {
        RawVariant::ByHand => ("--by-hand", Dialect::Raw),
        RawVariant::Protocol => ("--protocol", Dialect::OpenVidu),
    };
    let node = ctx.launch.start(Dialect::Raw, &format!("{}-{n}", variant.key()), &[flag]).await?;
    let deployment = Deployment::single(node);
    let result = fanout_on(ctx, &deployment, n, frames).await;
    deployment.stop().await;
    result
}

/// Scenario 1 on `deployment`, the sender framing signals in `frames`.
async fn fanout_on(ctx: &Ctx, deployment: &Deployment, n: usize, frames: Dialect) -> anyhow::Result<Fanout> {
    let plan = &ctx.plan;
    let (mut c, _) = crowd(ctx, &deployment.nodes, &format!("fanout{n}"), n, false, 0).await?;
    c.blaster.speak(frames);
    let warm = Instant::now() + secs(plan.fanout_warmup_s);
    c.blaster.saturate(&c.receivers, &c.progress, WINDOW, warm).await?;
    let (server_cpu, loadgen_cpu) = (CpuMeter::start_all(&deployment.pids()), CpuMeter::start(0));
    let (before, far_before, sent_before, t0) =
        (sum_signals(&c.receivers), c.cross_node_signals(), c.blaster.sent, Instant::now());
    c.blaster.saturate(&c.receivers, &c.progress, WINDOW, t0 + secs(plan.fanout_measure_s)).await?;
    let (after, far_after, sent_after, seconds) =
        (sum_signals(&c.receivers), c.cross_node_signals(), c.blaster.sent, t0.elapsed().as_secs_f64());
    let (server_cpu_each, loadgen_cpu) = (server_cpu.cores_each(), loadgen_cpu.cores());
    let complete = c.blaster.drain(&c.receivers, &c.progress, DRAIN_LIMIT).await;
    Ok(Fanout {
        receivers: n,
        nodes: deployment.nodes.len(),
        seconds,
        signals_per_s: (sent_after - sent_before) as f64 / seconds,
        deliveries_per_s: (after - before) as f64 / seconds,
        cross_node_deliveries_per_s: (far_after - far_before) as f64 / seconds,
        server_cpu: server_cpu_each.iter().sum(),
        server_cpu_each,
        loadgen_cpu,
        complete,
        errors: errors(&c),
        receivers_closed: c.receivers.iter().filter(|t| t.closed.load(Ordering::Relaxed)).count(),
    })
}

fn errors(c: &Crowd) -> u64 {
    c.echo.errors.load(Ordering::Relaxed)
        + c.receivers.iter().map(|t| t.errors.load(Ordering::Relaxed)).sum::<u64>()
}

/// Scenario 2: latency at a fixed load (`receivers` × `signals_per_s` deliveries/s).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub receivers: usize,
    /// Server nodes (more than one: signalroom nodes sharing a `redis-server`).
    pub nodes: usize,
    pub signals_per_s: u64,
    pub deliveries_per_s: u64,
    /// The turns it was measured in, taking turns with the other servers of the run.
    pub rounds: usize,
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// Of the receivers on another node than the sender's only (with several nodes).
    pub cross_node_samples: usize,
    pub cross_node_p50_us: Option<f64>,
    pub cross_node_p99_us: Option<f64>,
    pub cross_node_p999_us: Option<f64>,
    /// Every node and Redis together, then per process.
    pub server_cpu: f64,
    pub server_cpu_each: Vec<f64>,
    pub complete: bool,
    pub errors: u64,
}

/// Between two servers' turns: the last signal's deliveries are done well within it, so one
/// server's turn never overlaps the next one's on the servers' core.
const TURN_GAP: Duration = Duration::from_millis(20);

/// Scenario 2 against several deployments side by side: all of them run at once, each idle while
/// another is measured. Each is warmed up, then measured in `latency_rounds` turns of
/// `latency_measure_s / latency_rounds`, the deployments taking turns (the order turning each
/// round): what else the machine does meanwhile (its other processes, the host, the clock's
/// speed) falls on all of them alike, where one after the other a slow minute would fall on one.
/// Returns each one's figures, in the order given.
pub(crate) async fn latency_side_by_side(
    ctx: &Ctx,
    deployments: &[(Dialect, Topology)],
) -> Vec<anyhow::Result<Latency>> {
    let plan = &ctx.plan;
    let rate = plan.latency_signals_per_s.max(1);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let rounds = plan.latency_rounds.max(1);
    let per_turn = ((plan.latency_measure_s * rate as f64) as u64 / rounds as u64).max(1);
    let mut runs = Vec::new();
    for &(dialect, topology) in deployments {
        runs.push(LatencyRun::start(ctx, dialect, topology, period).await);
    }
    for round in 0..rounds {
        for k in 0..runs.len() {
            let i = (k + round) % runs.len();
            if let Ok(run) = &mut runs[i] {
                if let Err(e) = run.turn(per_turn, period).await {
                    if let Ok(run) = std::mem::replace(&mut runs[i], Err(e)) {
                        run.deployment.stop().await;
                    }
                }
            }
        }
    }
    let mut results = Vec::new();
    for run in runs {
        results.push(match run {
            Ok(run) => run.finish(rate, rounds).await,
            Err(e) => Err(e),
        });
    }
    results
}

/// One deployment of scenario 2, joined and warmed up, measured turn by turn.
struct LatencyRun {
    deployment: Deployment,
    crowd: Crowd,
    /// Server CPU seconds during the turns, per process, and the turns' length.
    cpu_secs: Vec<f64>,
    measured: Duration,
}

impl LatencyRun {
    async fn start(
        ctx: &Ctx,
        dialect: Dialect,
        topology: Topology,
        period: Duration,
    ) -> anyhow::Result<Self> {
        let deployment = ctx.launch.deploy(dialect, "latency", topology, &[]).await?;
        match Self::warm_up(ctx, &deployment, period).await {
            Ok(crowd) => Ok(Self { deployment, crowd, cpu_secs: Vec::new(), measured: Duration::ZERO }),
            Err(e) => {
                deployment.stop().await;
                Err(e)
            }
        }
    }

    /// Joins the crowd, and sends the warm-up's signals (not recorded) at the scenario's rate.
    async fn warm_up(ctx: &Ctx, deployment: &Deployment, period: Duration) -> anyhow::Result<Crowd> {
        let plan = &ctx.plan;
        let (mut c, _) = crowd(ctx, &deployment.nodes, "latency", plan.latency_receivers, true, 0).await?;
        let warmup = (plan.latency_warmup_s * plan.latency_signals_per_s as f64) as u64;
        for t in &c.receivers {
            t.latency_from.store(warmup, Ordering::Relaxed);
        }
        send_at(&mut c.blaster, warmup, period).await?;
        tokio::time::sleep(TURN_GAP).await;
        Ok(c)
    }

    /// One turn: `count` signals at the scenario's rate, then [`TURN_GAP`] for their deliveries.
    async fn turn(&mut self, count: u64, period: Duration) -> anyhow::Result<()> {
        let meter = CpuMeter::start_all(&self.deployment.pids());
        let started = Instant::now();
        send_at(&mut self.crowd.blaster, count, period).await?;
        let sent = started.elapsed();
        tokio::time::sleep(TURN_GAP).await;
        let busy = meter.cpu_secs_each();
        self.cpu_secs.resize(busy.len(), 0.0);
        for (total, b) in self.cpu_secs.iter_mut().zip(busy) {
            *total += b;
        }
        self.measured += sent;
        Ok(())
    }

    /// Waits for the last deliveries, stops the deployment, and tells the figures.
    async fn finish(self, rate: u64, rounds: usize) -> anyhow::Result<Latency> {
        let Self { deployment, crowd: c, cpu_secs, measured } = self;
        let complete = c.blaster.drain(&c.receivers, &c.progress, DRAIN_LIMIT).await;
        let nodes = deployment.nodes.len();
        deployment.stop().await;
        let (mut all, mut far): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
        for (t, &node) in c.receivers.iter().zip(&c.node_of) {
            if let Some(l) = &t.latencies {
                let mut l = l.lock().expect("latency lock");
                if node != 0 {
                    far.extend_from_slice(&l);
                }
                all.append(&mut l);
            }
        }
        let (all, far) = (Samples::new(all), Samples::new(far));
        let (Some(p50_us), Some(p99_us), Some(p999_us), Some(max_us)) =
            (all.pct(0.50), all.pct(0.99), all.pct(0.999), all.pct(1.0))
        else {
            bail!("no latency samples");
        };
        let server_cpu_each: Vec<f64> =
            cpu_secs.iter().map(|s| s / measured.as_secs_f64().max(1e-9)).collect();
        let n = c.receivers.len();
        Ok(Latency {
            receivers: n,
            nodes,
            signals_per_s: rate,
            deliveries_per_s: rate * n as u64,
            rounds,
            samples: all.0.len(),
            p50_us,
            p99_us,
            p999_us,
            max_us,
            mean_us: all.0.iter().sum::<u64>() as f64 / all.0.len() as f64 / 1000.0,
            cross_node_samples: far.0.len(),
            cross_node_p50_us: far.pct(0.50),
            cross_node_p99_us: far.pct(0.99),
            cross_node_p999_us: far.pct(0.999),
            server_cpu: server_cpu_each.iter().sum(),
            server_cpu_each,
            complete,
            errors: errors(&c),
        })
    }
}

/// Sends `count` signals, one every `period`.
async fn send_at(blaster: &mut Blaster, count: u64, period: Duration) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..count {
        tick.tick().await;
        blaster.send_one().await?;
    }
    Ok(())
}

/// Latencies sorted, and their percentiles in µs.
struct Samples(Vec<u64>);

impl Samples {
    fn new(mut all: Vec<u64>) -> Self {
        all.sort_unstable();
        Self(all)
    }

    fn pct(&self, p: f64) -> Option<f64> {
        let i = ((self.0.len() as f64 * p) as usize).min(self.0.len().checked_sub(1)?);
        Some(self.0[i] as f64 / 1000.0)
    }
}

/// Scenario 7: the fan-out and the latency scenarios against one signalroom node and against two
/// nodes sharing a `redis-server` (receivers spread over both, the sender on the first), in one
/// run, so the ratios compare figures taken side by side. The fan-out also runs against one node
/// with the Redis broker, which tells the cost of the broker from the cost of crossing nodes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TwoNode {
    pub one_node_fanout: Fanout,
    pub one_node_redis_fanout: Fanout,
    pub two_node_fanout: Fanout,
    /// The same two nodes over a 3-primary Redis Cluster instead of one `redis-server`.
    pub two_node_cluster_fanout: Fanout,
    pub one_node_latency: Latency,
    pub two_node_latency: Latency,
}

pub(crate) async fn twonode(ctx: &Ctx) -> anyhow::Result<TwoNode> {
    let n = ctx.plan.twonode_receivers;
    let d = Dialect::OpenVidu;
    let fan = |t: Topology| async move {
        fanout(ctx, d, n, t).await.with_context(|| format!("{}, fan-out", t.describe()))
    };
    let one_node_fanout = fan(Topology::Single).await?;
    let one_node_redis_fanout = fan(Topology::Redis(1)).await?;
    let two_node_fanout = fan(Topology::Redis(2)).await?;
    let two_node_cluster_fanout = fan(Topology::RedisCluster(2)).await?;
    // Side by side, as scenario 2's servers.
    let topologies = [Topology::Single, Topology::Redis(2)];
    let mut latencies = latency_side_by_side(ctx, &topologies.map(|t| (d, t))).await.into_iter();
    let mut lat = |t: Topology| {
        latencies
            .next()
            .unwrap_or_else(|| Err(anyhow::anyhow!("no latency run")))
            .with_context(|| format!("{}, latency", t.describe()))
    };
    let one_node_latency = lat(Topology::Single)?;
    let two_node_latency = lat(Topology::Redis(2))?;
    Ok(TwoNode {
        one_node_fanout,
        one_node_redis_fanout,
        two_node_fanout,
        two_node_cluster_fanout,
        one_node_latency,
        two_node_latency,
    })
}

/// Scenario 8: one big session (a webinar's chat): `participants` join one session,
/// `concurrency` at a time, and everybody reads as fast as it can. OpenVidu's protocol makes
/// filling it O(n²) bytes: each join answer lists everyone already in, and everyone already in
/// is told of each join.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BigSession {
    pub participants: usize,
    pub concurrency: usize,
    /// From the first join to the last join's answer.
    pub fill_seconds: f64,
    /// From the first join until everyone was told of every join after its own (n(n−1)/2
    /// `participantJoined`; the server may hold them back a moment to send them together).
    /// `None` where joins are not told (raw), or not all were within [`TOLD_LIMIT`].
    pub told_seconds: Option<f64>,
    pub joins_per_s: f64,
    pub p50_join_ms: f64,
    pub p99_join_ms: f64,
    /// What the participants read meanwhile (the server's answers and notifications).
    pub bytes_sent: u64,
    /// RSS before the first join, once filled, and after sitting idle `idle_s`.
    pub rss_base_bytes: u64,
    pub rss_filled_bytes: u64,
    pub rss_idle_bytes: u64,
    pub idle_s: f64,
    /// (RSS − base) ÷ participants, once filled and after the idle time.
    pub filled_bytes_per_participant: f64,
    pub idle_bytes_per_participant: f64,
    /// Participants whose socket the server closed (evicted as too slow, or refused).
    pub closed: usize,
    pub server_cpu: f64,
}

/// Waits (at most [`TOLD_LIMIT`]) until the `n` participants of a session filled one after
/// another were each told of every join after its own (n(n−1)/2 `participantJoined`); seconds
/// from `begin`, or `None` if they were not.
async fn everyone_told(tallies: &Mutex<Vec<Arc<Tally>>>, n: usize, begin: Instant) -> Option<f64> {
    let all_told = (n * n.saturating_sub(1) / 2) as u64;
    let told =
        || -> u64 { tallies.lock().expect("tallies").iter().map(|t| t.notes.load(Ordering::Relaxed)).sum() };
    let limit = Instant::now() + TOLD_LIMIT;
    while told() < all_told && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (told() >= all_told).then(|| begin.elapsed().as_secs_f64())
}

/// The `p` quantile of sorted durations, in ms (NaN for none).
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).map_or(f64::NAN, |t| t.as_secs_f64() * 1000.0)
}

/// How long after the last join's answer the big session waits for everyone to be told.
const TOLD_LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn big_session(ctx: &Ctx, dialect: Dialect) -> anyhow::Result<BigSession> {
    let server = ctx.launch.start(dialect, "bigsession", &[]).await?;
    let result = big_session_on(ctx, &server).await;
    server.stop().await;
    result
}

async fn big_session_on(ctx: &Ctx, server: &ServerProc) -> anyhow::Result<BigSession> {
    let plan = &ctx.plan;
    let n = plan.big_participants;
    let seats = crowd::seats(&ctx.http, server, "big", n).await?;
    let rss_base_bytes = settled_rss(server).await?;
    let read_before = crate::wire::BYTES_READ.load(Ordering::Relaxed);
    let tasks = Tasks::default();
    let tallies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let (t, all, dialect) = (tasks.clone(), Arc::clone(&tallies), server.dialect);
    let cpu = CpuMeter::start(server.pid);
    let opts = ConnectOptions::default();
    let begin = Instant::now();
    let (wall, mut took) =
        join_all(server.dialect, server.addr, seats, plan.big_concurrency, opts, move |_, j: Joined| {
            let tally = Arc::new(Tally::default());
            all.lock().expect("tallies").push(Arc::clone(&tally));
            t.spawn(crowd::receive(dialect, j.reader, Some(j.writer), tally, Arc::new(Progress::default())));
        })
        .await?;
    let rss_filled_bytes = server.rss()?;
    let told_seconds = match server.dialect {
        Dialect::OpenVidu => everyone_told(&tallies, n, begin).await,
        _ => None,
    };
    let server_cpu = cpu.cores();
    let bytes_sent = crate::wire::BYTES_READ.load(Ordering::Relaxed) - read_before;
    tokio::time::sleep(Duration::from_secs_f64(plan.big_idle_s)).await;
    let rss_idle_bytes = server.rss()?;
    let closed = tallies.lock().expect("tallies").iter().filter(|t| t.closed.load(Ordering::Relaxed)).count();
    drop(tasks);
    took.sort_unstable();
    let pct = |p: f64| percentile_ms(&took, p);
    let per = |rss: u64| (rss as f64 - rss_base_bytes as f64) / n as f64;
    Ok(BigSession {
        participants: n,
        concurrency: plan.big_concurrency,
        fill_seconds: wall.as_secs_f64(),
        told_seconds,
        joins_per_s: n as f64 / wall.as_secs_f64(),
        p50_join_ms: pct(0.5),
        p99_join_ms: pct(0.99),
        bytes_sent,
        rss_base_bytes,
        rss_filled_bytes,
        rss_idle_bytes,
        idle_s: plan.big_idle_s,
        filled_bytes_per_participant: per(rss_filled_bytes),
        idle_bytes_per_participant: per(rss_idle_bytes),
        closed,
        server_cpu,
    })
}

/// Scenario 9: the big session of scenario 8 over two nodes sharing a `redis-server`: the same
/// participants join one session, as many at a time, alternating nodes (half their tokens minted on
/// each), everybody reading; compared with scenario 8's one node in the same run. Before it, a
/// session a tenth the size is filled the same way, so that what Redis is written per join can be
/// compared at both sizes (flat: each join writes O(1) bytes).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BigCluster {
    pub nodes: usize,
    pub participants: usize,
    pub concurrency: usize,
    pub fill_seconds: f64,
    /// Until everyone was told of every join after its own, or `None` past [`TOLD_LIMIT`].
    pub told_seconds: Option<f64>,
    pub joins_per_s: f64,
    pub p50_join_ms: f64,
    pub p99_join_ms: f64,
    /// Joins refused (for any reason): the target is none.
    pub refused: usize,
    /// The first refusal's message.
    pub first_refusal: Option<String>,
    /// Participants whose socket a node closed.
    pub closed: usize,
    /// The small session's size, and the bytes Redis read from the nodes per join there and in
    /// the big one (`total_net_input_bytes`), and wrote to them (its publishes to each node).
    pub small_participants: usize,
    pub redis_in_bytes_per_join_small: f64,
    pub redis_in_bytes_per_join: f64,
    pub redis_out_bytes_per_join_small: f64,
    pub redis_out_bytes_per_join: f64,
    /// The nodes' RSS (summed) over their base, per participant, once filled, and after
    /// everyone was told and the session sat idle `idle_s` (as scenario 8 measures its one node).
    pub filled_bytes_per_participant: f64,
    pub idle_bytes_per_participant: f64,
    pub idle_s: f64,
    pub server_cpu: f64,
}

/// One session filled across `nodes`: how long, each join's time, refusals and their first reason.
struct Filled {
    wall: Duration,
    took: Vec<Duration>,
    refused: usize,
    first_refusal: Option<String>,
}

/// Fills session `room` with `n` participants joining `concurrency` at a time, participant `i` on
/// node `i % nodes`, its token minted there; each reads everything into a tally of `tallies`.
async fn fill_across(
    ctx: &Ctx,
    nodes: &[ServerProc],
    room: &str,
    n: usize,
    concurrency: usize,
    tasks: &Tasks,
    tallies: &Arc<Mutex<Vec<Arc<Tally>>>>,
) -> anyhow::Result<Filled> {
    let k = nodes.len().max(1);
    let mut per_node = Vec::with_capacity(k);
    for (j, node) in nodes.iter().enumerate() {
        let count = (j..n).step_by(k).count();
        per_node.push(crowd::seats(&ctx.http, node, room, count).await?.into_iter());
    }
    let order: Vec<(SocketAddr, crate::dialect::Seat)> =
        (0..n).filter_map(|i| per_node[i % k].next().map(|seat| (nodes[i % k].addr, seat))).collect();
    let dialect = nodes[0].dialect;
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut joins = tokio::task::JoinSet::new();
    let begin = Instant::now();
    for (addr, seat) in order {
        let (gate, tasks, tallies) = (Arc::clone(&gate), tasks.clone(), Arc::clone(tallies));
        joins.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("the gate stays open");
            let t = Instant::now();
            let joined = dialect.join(addr, &seat, ConnectOptions::default()).await;
            let took = t.elapsed();
            joined.map(|j| {
                let tally = Arc::new(Tally::default());
                tallies.lock().expect("tallies").push(Arc::clone(&tally));
                tasks.spawn(crowd::receive(
                    dialect,
                    j.reader,
                    Some(j.writer),
                    tally,
                    Arc::new(Progress::default()),
                ));
                took
            })
        });
    }
    let (mut took, mut refused, mut first_refusal) = (Vec::with_capacity(n), 0, None);
    while let Some(joined) = joins.join_next().await {
        match joined? {
            Ok(t) => took.push(t),
            Err(e) => {
                refused += 1;
                first_refusal.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    Ok(Filled { wall: begin.elapsed(), took, refused, first_refusal })
}

pub(crate) async fn big_cluster(ctx: &Ctx) -> anyhow::Result<BigCluster> {
    let deployment = ctx.launch.deploy(Dialect::OpenVidu, "bigcluster", Topology::Redis(2), &[]).await?;
    let result = big_cluster_on(ctx, &deployment).await;
    deployment.stop().await;
    result
}

async fn big_cluster_on(ctx: &Ctx, deployment: &Deployment) -> anyhow::Result<BigCluster> {
    let plan = &ctx.plan;
    let (n, concurrency) = (plan.big_participants, plan.big_concurrency);
    let small = (n / 10).max(2);
    let redis = deployment.redis.as_ref().context("two nodes share a redis-server")?;
    let nodes = &deployment.nodes;
    let rss = || -> anyhow::Result<u64> { nodes.iter().map(|s| s.rss()).sum() };

    // The small session, then its participants gone (their nodes keep nothing of it).
    let (tasks, tallies) = (Tasks::default(), Arc::new(Mutex::new(Vec::new())));
    let before = redis.net_bytes().await?;
    let filled = fill_across(ctx, nodes, "bigsmall", small, concurrency, &tasks, &tallies).await?;
    anyhow::ensure!(filled.refused == 0, "the small session: {:?}", filled.first_refusal);
    let after = redis.net_bytes().await?;
    let per = |a: u64, b: u64, joins: usize| (a - b) as f64 / joins as f64;
    let (in_small, out_small) = (per(after.0, before.0, small), per(after.1, before.1, small));
    drop(tasks);
    tokio::time::sleep(SETTLE).await;

    let (tasks, tallies) = (Tasks::default(), Arc::new(Mutex::new(Vec::with_capacity(n))));
    let rss_base = rss()?;
    let cpu = CpuMeter::start_all(&deployment.pids());
    let before = redis.net_bytes().await?;
    let begin = Instant::now();
    let mut filled = fill_across(ctx, nodes, "bigcluster", n, concurrency, &tasks, &tallies).await?;
    let after = redis.net_bytes().await?;
    let rss_filled = rss()?;
    let joined = n - filled.refused;
    let told_seconds = everyone_told(&tallies, joined, begin).await;
    let server_cpu = cpu.cores();
    tokio::time::sleep(Duration::from_secs_f64(plan.big_idle_s)).await;
    let rss_idle = rss()?;
    let closed = tallies.lock().expect("tallies").iter().filter(|t| t.closed.load(Ordering::Relaxed)).count();
    drop(tasks);
    filled.took.sort_unstable();
    let took = &filled.took;
    let pct = |p: f64| percentile_ms(took, p);
    Ok(BigCluster {
        nodes: nodes.len(),
        participants: n,
        concurrency,
        fill_seconds: filled.wall.as_secs_f64(),
        told_seconds,
        joins_per_s: joined as f64 / filled.wall.as_secs_f64(),
        p50_join_ms: pct(0.5),
        p99_join_ms: pct(0.99),
        refused: filled.refused,
        first_refusal: filled.first_refusal,
        closed,
        small_participants: small,
        redis_in_bytes_per_join_small: in_small,
        redis_in_bytes_per_join: per(after.0, before.0, n),
        redis_out_bytes_per_join_small: out_small,
        redis_out_bytes_per_join: per(after.1, before.1, n),
        filled_bytes_per_participant: (rss_filled as f64 - rss_base as f64) / n as f64,
        idle_bytes_per_participant: (rss_idle as f64 - rss_base as f64) / n as f64,
        idle_s: plan.big_idle_s,
        server_cpu,
    })
}

/// Scenario 3: memory of idle participants (joined, silent), in rooms of `room_size`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Idle {
    /// RSS after the warm-up participants joined.
    pub base_rss_bytes: u64,
    pub base_participants: usize,
    pub points: Vec<IdlePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct IdlePoint {
    pub participants: usize,
    pub rss_bytes: u64,
    /// (RSS − base RSS) / (participants − base participants).
    pub bytes_per_participant: f64,
}

pub(crate) async fn idle(ctx: &Ctx, dialect: Dialect) -> anyhow::Result<Idle> {
    let server = ctx.launch.start(dialect, "idle", &[]).await?;
    let result = idle_on(ctx, &server).await;
    server.stop().await;
    result
}

async fn idle_on(ctx: &Ctx, server: &ServerProc) -> anyhow::Result<Idle> {
    let plan = &ctx.plan;
    let tasks = Tasks::default();
    let mut joined = 0usize;
    let mut base = None;
    let mut points = Vec::new();
    let targets: Vec<usize> =
        std::iter::once(plan.idle_warmup).chain(plan.idle_counts.iter().copied()).collect();
    let opts = ConnectOptions::default();
    for target in targets {
        while joined < target {
            let room_index = joined / plan.room_size;
            let in_room = joined % plan.room_size;
            let count = (plan.room_size - in_room).min(target - joined);
            let seats = crowd::seats(&ctx.http, server, &format!("idle{room_index}"), count).await?;
            let dialect = server.dialect;
            let t = tasks.clone();
            join_all(dialect, server.addr, seats, SETUP_CONCURRENCY, opts, move |_, j: Joined| {
                let tally = Arc::new(Tally::default());
                t.spawn(crowd::receive(
                    dialect,
                    j.reader,
                    Some(j.writer),
                    tally,
                    Arc::new(Progress::default()),
                ));
            })
            .await?;
            joined += count;
        }
        let rss = settled_rss(server).await?;
        match base {
            None => base = Some((rss, joined)),
            Some((base_rss, base_n)) => points.push(IdlePoint {
                participants: joined,
                rss_bytes: rss,
                bytes_per_participant: (rss as f64 - base_rss as f64) / (joined - base_n) as f64,
            }),
        }
    }
    let (base_rss_bytes, base_participants) = base.context("no warm-up")?;
    drop(tasks);
    Ok(Idle { base_rss_bytes, base_participants, points })
}

/// RSS once it stopped moving (notifications of the joins delivered, allocator settled).
async fn settled_rss(server: &ServerProc) -> anyhow::Result<u64> {
    let mut last = server.rss()?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = server.rss()?;
        if now.abs_diff(last) < 64 * 1024 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// Scenario 4: joins per second, `concurrency` joiners at once, into sessions that fill up to
/// `join_session_size` participants (each join answers with everyone there, and tells them all).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Joins {
    pub joins: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub joins_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// signalroom only: REST Connections (tokens) minted per second beforehand, not timed above.
    pub tokens_per_s: Option<f64>,
    /// Cores the server and the load generator were busy while the joins ran (1.0 = one core).
    pub server_cpu: f64,
    pub loadgen_cpu: f64,
}

pub(crate) async fn joins(ctx: &Ctx, dialect: Dialect) -> anyhow::Result<Joins> {
    let server = ctx.launch.start(dialect, "joins", &[]).await?;
    let result = joins_on(ctx, &server, ConnectOptions::default()).await;
    server.stop().await;
    result
}

/// Scenario 4 against `raw-server --rooms --join-answers`: raw writing what an OpenVidu join
/// writes (the answer listing everyone in, a notification to each of them), with its leanest
/// batching; a join is the upgrade and that answer.
pub(crate) async fn joins_answered(ctx: &Ctx) -> anyhow::Result<Joins> {
    let server = ctx.launch.start(Dialect::Raw, "joins-answered", &["--rooms", "--join-answers"]).await?;
    let result = joins_on(ctx, &server, ConnectOptions { answered: true, ..ConnectOptions::default() }).await;
    server.stop().await;
    result
}

async fn joins_on(ctx: &Ctx, server: &ServerProc, opts: ConnectOptions) -> anyhow::Result<Joins> {
    // A round first, not timed, into sessions of its own, then left: both processes start the
    // timed round with their heaps grown (a cold load generator faults in the pages of 2,000
    // sockets and their join answers during the round: up to a third less joins/s, as measured
    // when this scenario ran first).
    let warm = join_round(ctx, server, "warmup", opts).await?;
    drop(warm.tasks);
    tokio::time::sleep(JOINS_SETTLE).await;
    let round = join_round(ctx, server, "joins", opts).await?;
    let plan = &ctx.plan;
    let mut took = round.took;
    took.sort_unstable();
    let pct = |p: f64| percentile_ms(&took, p);
    Ok(Joins {
        joins: plan.joins,
        concurrency: plan.join_concurrency,
        seconds: round.wall.as_secs_f64(),
        joins_per_s: plan.joins as f64 / round.wall.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        tokens_per_s: round.tokens_per_s,
        server_cpu: round.server_cpu,
        loadgen_cpu: round.loadgen_cpu,
    })
}

/// How long the warm-up round's participants get to leave before the timed round.
const JOINS_SETTLE: Duration = Duration::from_secs(1);

/// One round of scenario 4: what it measured, and its participants (they leave when dropped).
struct JoinRound {
    tasks: Tasks,
    wall: Duration,
    took: Vec<Duration>,
    tokens_per_s: Option<f64>,
    server_cpu: f64,
    loadgen_cpu: f64,
}

async fn join_round(
    ctx: &Ctx,
    server: &ServerProc,
    prefix: &str,
    opts: ConnectOptions,
) -> anyhow::Result<JoinRound> {
    let plan = &ctx.plan;
    let minting = Instant::now();
    let mut seats = Vec::with_capacity(plan.joins);
    let mut room = 0;
    while seats.len() < plan.joins {
        let count = plan.join_session_size.min(plan.joins - seats.len());
        seats.extend(crowd::seats(&ctx.http, server, &format!("{prefix}{room}"), count).await?);
        room += 1;
    }
    let tokens_per_s =
        (server.dialect == Dialect::OpenVidu).then(|| plan.joins as f64 / minting.elapsed().as_secs_f64());
    let tasks = Tasks::default();
    let dialect = server.dialect;
    let t = tasks.clone();
    let (server_cpu, loadgen_cpu) = (CpuMeter::start(server.pid), CpuMeter::start(0));
    let (wall, took) =
        join_all(dialect, server.addr, seats, plan.join_concurrency, opts, move |_, j: Joined| {
            t.spawn(crowd::receive(
                dialect,
                j.reader,
                Some(j.writer),
                Arc::new(Tally::default()),
                Arc::new(Progress::default()),
            ));
        })
        .await?;
    let (server_cpu, loadgen_cpu) = (server_cpu.cores(), loadgen_cpu.cores());
    Ok(JoinRound { tasks, wall, took, tokens_per_s, server_cpu, loadgen_cpu })
}

/// Scenario 6: one participant stops reading among `participants`; the others' throughput and
/// the server's memory.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Isolation {
    pub participants: usize,
    pub receivers: usize,
    pub seconds: f64,
    pub deliveries_per_s: f64,
    /// Signals per second each active receiver got (deliveries/s ÷ receivers).
    pub per_receiver_signals_per_s: f64,
    /// Bytes the stalled participant was sent and never read, at the end (server-side queue
    /// plus kernel buffers are not visible; this is what the server had to hold or drop).
    pub rss_start_bytes: u64,
    pub rss_max_bytes: u64,
    pub rss_end_bytes: u64,
    /// signalroom only: whether the stalled participant was removed from the session.
    pub stalled_evicted: Option<bool>,
    pub server_cpu: f64,
    pub complete: bool,
}

pub(crate) async fn isolation(ctx: &Ctx, dialect: Dialect) -> anyhow::Result<Isolation> {
    let server = ctx.launch.start(dialect, "isolation", &[]).await?;
    let result = isolation_on(ctx, &server).await;
    server.stop().await;
    result
}

async fn isolation_on(ctx: &Ctx, server: &ServerProc) -> anyhow::Result<Isolation> {
    let plan = &ctx.plan;
    let participants = plan.isolation_participants;
    let receivers = participants - 2;
    let room = "isolation";
    let (mut c, extra) = crowd(ctx, std::slice::from_ref(server), room, receivers, false, 1).await?;
    // The stalled participant: a tiny receive buffer, reads its join answer, then never reads again.
    let stall_opts = ConnectOptions { recv_buffer: Some(4096), ..ConnectOptions::default() };
    let stalled = server.dialect.join(server.addr, &extra[0], stall_opts).await?;
    tokio::time::sleep(SETTLE).await;
    let warm = Instant::now() + secs(plan.fanout_warmup_s);
    c.blaster.saturate(&c.receivers, &c.progress, WINDOW, warm).await?;
    let rss_start = server.rss()?;
    let rss_max = Arc::new(std::sync::atomic::AtomicU64::new(rss_start));
    let sampler = {
        let (pid, rss_max) = (server.pid, Arc::clone(&rss_max));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(r) = crate::procstat::rss_bytes(pid) {
                    rss_max.fetch_max(r, Ordering::Relaxed);
                }
            }
        })
    };
    let server_cpu = CpuMeter::start(server.pid);
    let (before, t0) = (sum_signals(&c.receivers), Instant::now());
    c.blaster.saturate(&c.receivers, &c.progress, WINDOW, t0 + secs(plan.isolation_measure_s)).await?;
    let (after, seconds) = (sum_signals(&c.receivers), t0.elapsed().as_secs_f64());
    let server_cpu = server_cpu.cores();
    let complete = c.blaster.drain(&c.receivers, &c.progress, DRAIN_LIMIT).await;
    sampler.abort();
    let rss_end = server.rss()?;
    let stalled_evicted = if server.dialect == Dialect::OpenVidu {
        let s: serde_json::Value = ctx
            .http
            .get(format!("{}/openvidu/api/sessions/{room}", server.url))
            .basic_auth("OPENVIDUAPP", Some(SECRET))
            .send()
            .await?
            .json()
            .await?;
        let active = s["connections"]["numberOfElements"].as_u64().context("no connections count")?;
        Some(active < participants as u64)
    } else {
        None
    };
    drop(stalled);
    let deliveries_per_s = (after - before) as f64 / seconds;
    Ok(Isolation {
        participants,
        receivers,
        seconds,
        deliveries_per_s,
        per_receiver_signals_per_s: deliveries_per_s / receivers as f64,
        rss_start_bytes: rss_start,
        rss_max_bytes: rss_max.load(Ordering::Relaxed).max(rss_end),
        rss_end_bytes: rss_end,
        stalled_evicted,
        server_cpu,
        complete,
    })
}

/// Scenario 5: a plain Python handler of the `signalroom` package against a pure-Python
/// participant (`websockets` + `json`), both in one signalroom session, receiving one burst.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Python {
    /// `ok`, or `pending: <why>` when the Python package cannot be used.
    pub status: String,
    pub signals: u64,
    pub signalroom: Option<PyParticipant>,
    pub websockets: Option<PyParticipant>,
    /// signalroom's signals/s ÷ the pure-Python participant's.
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct PyParticipant {
    pub received: u64,
    pub seconds: f64,
    pub signals_per_s: f64,
}

/// Signals (and bytes) queued per participant in the Python scenario: the burst waits in the
/// server for the held Python receivers instead of getting them disconnected as too slow.
const PYTHON_SEND_QUEUE: &str = "200000";
const PYTHON_SEND_QUEUE_BYTES: &str = "134217728";

pub(crate) async fn python(ctx: &Ctx) -> anyhow::Result<Python> {
    let pending = |why: String| Python {
        status: format!("pending: {why}"),
        signals: ctx.plan.python_signals,
        signalroom: None,
        websockets: None,
        ratio: None,
    };
    let Some(py) = &ctx.python else { return Ok(pending("no Python interpreter given".into())) };
    let check =
        Command::new(py).args(["-c", "import signalroom, websockets; signalroom.connect"]).output().await;
    match check {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("import failed").to_owned();
            return Ok(pending(format!("`import signalroom` fails in {py:?}: {last}")));
        }
        Err(e) => return Ok(pending(format!("cannot run {py:?}: {e}"))),
    }
    let args = ["--send-queue", PYTHON_SEND_QUEUE, "--send-queue-bytes", PYTHON_SEND_QUEUE_BYTES];
    let server = ctx.launch.start(Dialect::OpenVidu, "python", &args).await?;
    let result = python_on(ctx, py, &server).await;
    server.stop().await;
    result
}

async fn python_on(ctx: &Ctx, py: &PathBuf, server: &ServerProc) -> anyhow::Result<Python> {
    let plan = &ctx.plan;
    let (mut c, seats) = crowd(ctx, std::slice::from_ref(server), "python", 0, false, 2).await?;
    let script = ctx.python_dir.join("participant.py");
    let mut procs = Vec::new();
    for (mode, seat) in ["signalroom", "websockets"].iter().zip(&seats) {
        let mut child = Command::new(py)
            .arg("-u")
            .arg(&script)
            .args(["--mode", mode, "--count"])
            .arg(plan.python_signals.to_string())
            .arg("--timeout")
            .arg(plan.python_timeout_s.to_string())
            .arg("--token")
            .arg(seat.token.as_deref().context("no token")?)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {script:?}"))?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.trim() == "ready" => {}
            other => bail!("python participant ({mode}) did not get ready: {other:?}"),
        }
        procs.push((*mode, child, lines));
    }
    // The whole burst first, while both participants hold; once the sender got its own copy of
    // every signal, the server has fanned them all out: then both start handling.
    let burst = Instant::now();
    c.blaster.send_burst(plan.python_signals).await?;
    while c.echo.signals.load(Ordering::Relaxed) < plan.python_signals {
        if burst.elapsed() > secs(plan.python_timeout_s) {
            bail!("the server did not fan the burst out in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One after the other: both run on the load generator's core, and two at once would share
    // it by the scheduler's slices, a few of which make up the faster one's whole run.
    let mut results = Vec::new();
    for (mode, mut child, mut lines) in procs {
        let mut stdin = child.stdin.take().context("no stdin")?;
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
        let line = tokio::time::timeout(secs(plan.python_timeout_s + 10.0), lines.next_line())
            .await
            .with_context(|| format!("python participant ({mode}) did not finish"))??
            .with_context(|| format!("python participant ({mode}) printed no result"))?;
        let r: PyParticipant =
            serde_json::from_str(&line).with_context(|| format!("bad result line {line:?}"))?;
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        results.push(r);
    }
    let websockets = results.pop();
    let signalroom = results.pop();
    let ratio = match (&signalroom, &websockets) {
        (Some(s), Some(w)) if w.signals_per_s > 0.0 => Some(s.signals_per_s / w.signals_per_s),
        _ => None,
    };
    let complete = [&signalroom, &websockets]
        .iter()
        .all(|r| r.as_ref().is_some_and(|r| r.received == plan.python_signals));
    Ok(Python {
        status: if complete { "ok".into() } else { "incomplete: a participant missed signals".into() },
        signals: plan.python_signals,
        signalroom,
        websockets,
        ratio,
    })
}

/// Scenario 11: requests and streams between two Python participants of the `signalroom`
/// package (`bench/python/requests.py`), against the same done by hand with signals. Its figures
/// are the script's JSON line, as is.
pub(crate) async fn rpc(ctx: &Ctx) -> anyhow::Result<serde_json::Value> {
    let Some(py) = &ctx.python else {
        return Ok(serde_json::json!({"status": "pending: no Python interpreter given"}));
    };
    // The raw signals of the stream comparison are sent without flow control: queues big enough
    // that the reader is not evicted by a burst (the stream itself needs no such room).
    let args = ["--send-queue", PYTHON_SEND_QUEUE, "--send-queue-bytes", PYTHON_SEND_QUEUE_BYTES];
    let server = ctx.launch.start(Dialect::OpenVidu, "rpc", &args).await?;
    let plan = &ctx.plan;
    let out = Command::new(py)
        .arg("-u")
        .arg(ctx.python_dir.join("requests.py"))
        .args(["--url", &server.url, "--secret", crate::servers::SECRET])
        .args(["--requests", &plan.rpc_requests.to_string(), "--rounds", &plan.rpc_rounds.to_string()])
        .args(["--stream-bytes", &plan.rpc_stream_bytes.to_string()])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(secs(600.0), out).await;
    server.stop().await;
    let out = out.context("the requests scenario did not finish in 10 minutes")??;
    if !out.status.success() {
        bail!("bench/python/requests.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("bench/python/requests.py printed nothing")?;
    let mut result: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("bad result {line:?}"))?;
    result["status"] = "ok".into();
    Ok(result)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Scenario 12: the largest topology this machine holds: four nodes over a 3-primary Redis
/// Cluster, many small sessions with their participants spread over the nodes, each session sent
/// broadcasts through the REST API of every node in turn. Shows that every signal is delivered and
/// that Redis's load spreads over the shards.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScaleOut {
    pub nodes: usize,
    pub shards: usize,
    pub sessions: usize,
    pub participants: usize,
    pub fill_seconds: f64,
    pub signals: usize,
    /// Deliveries expected (signals × session size) and made.
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub send_seconds: f64,
    pub deliveries_per_s: f64,
    /// Commands each primary ran during the scenario, and the fewest ÷ the most.
    pub commands_per_shard: Vec<u64>,
    pub shard_balance: f64,
    /// Participants whose socket a node closed.
    pub closed: usize,
}

/// How long the deliveries of scenario 12 may take to arrive once sent.
const SCALEOUT_DRAIN: Duration = Duration::from_secs(60);

pub(crate) async fn scale_out(ctx: &Ctx) -> anyhow::Result<ScaleOut> {
    let deployment = ctx.launch.deploy(Dialect::OpenVidu, "scaleout", Topology::RedisCluster(4), &[]).await?;
    let result = scale_out_on(ctx, &deployment).await;
    deployment.stop().await;
    result
}

async fn scale_out_on(ctx: &Ctx, deployment: &Deployment) -> anyhow::Result<ScaleOut> {
    let plan = &ctx.plan;
    let cluster = deployment.cluster.as_ref().context("scenario 12 runs over a Redis Cluster")?;
    let nodes = &deployment.nodes;
    let tasks = Tasks::default();
    let tallies: Arc<Mutex<Vec<Arc<Tally>>>> = Arc::new(Mutex::new(Vec::new()));
    let before = cluster.commands_per_primary().await?;
    let begin = Instant::now();
    let mut refused = 0;
    // Sessions fill a few at a time, each spread over the nodes (its i-th participant on node
    // (session + i) mod 4).
    for chunk in (0..plan.scaleout_sessions).collect::<Vec<_>>().chunks(16) {
        let mut fills = tokio::task::JoinSet::new();
        for &s in chunk {
            let rotated: Vec<usize> = (0..nodes.len()).map(|i| (s + i) % nodes.len()).collect();
            let (ctx_http, tasks, tallies) = (ctx.http.clone(), tasks.clone(), Arc::clone(&tallies));
            let picked: Vec<(SocketAddr, String, crate::dialect::Dialect)> =
                rotated.iter().map(|&i| (nodes[i].addr, nodes[i].url.clone(), nodes[i].dialect)).collect();
            let size = plan.scaleout_size;
            fills.spawn(async move {
                fill_session(&ctx_http, &picked, &format!("scale{s}"), size, &tasks, &tallies).await
            });
        }
        while let Some(done) = fills.join_next().await {
            refused += done??;
        }
    }
    anyhow::ensure!(refused == 0, "{refused} joins refused");
    let fill_seconds = begin.elapsed().as_secs_f64();
    let received = || sum_signals(&tallies.lock().expect("tallies"));
    let start_count = received();
    // Broadcasts through REST, every node in turn, a few dozen in flight.
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut sends = tokio::task::JoinSet::new();
    let sent_at = Instant::now();
    let mut signals = 0;
    for round in 0..plan.scaleout_signals {
        for s in 0..plan.scaleout_sessions {
            let node = &nodes[(s + round) % nodes.len()];
            let url = format!("{}/openvidu/api/signal", node.url);
            let (http, gate) = (ctx.http.clone(), Arc::clone(&gate));
            let body = {
                let mut data = Vec::new();
                crate::dialect::signal_data(&mut data, crate::dialect::now_ns(), round as u64, 64);
                let data = String::from_utf8(data).expect("ASCII");
                serde_json::json!({"session": format!("scale{s}"), "type": "n", "data": data})
            };
            signals += 1;
            sends.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let status =
                    http.post(url).basic_auth("OPENVIDUAPP", Some(SECRET)).json(&body).send().await?.status();
                anyhow::ensure!(status.is_success(), "POST /signal: HTTP {status}");
                anyhow::Ok(())
            });
        }
    }
    while let Some(done) = sends.join_next().await {
        done??;
    }
    let expected = (signals * plan.scaleout_size) as u64;
    let limit = Instant::now() + SCALEOUT_DRAIN;
    while received() - start_count < expected && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let send_seconds = sent_at.elapsed().as_secs_f64();
    let deliveries = received() - start_count;
    let after = cluster.commands_per_primary().await?;
    let commands_per_shard: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a.saturating_sub(*b)).collect();
    let (least, most) = (
        commands_per_shard.iter().copied().min().unwrap_or(0),
        commands_per_shard.iter().copied().max().unwrap_or(0),
    );
    let closed = tallies.lock().expect("tallies").iter().filter(|t| t.closed.load(Ordering::Relaxed)).count();
    Ok(ScaleOut {
        nodes: nodes.len(),
        shards: commands_per_shard.len(),
        sessions: plan.scaleout_sessions,
        participants: plan.scaleout_sessions * plan.scaleout_size,
        fill_seconds,
        signals,
        expected_deliveries: expected,
        deliveries,
        send_seconds,
        deliveries_per_s: deliveries as f64 / send_seconds,
        shard_balance: if most == 0 { 0.0 } else { least as f64 / most as f64 },
        commands_per_shard,
        closed,
    })
}

/// Creates session `room` and joins `size` participants to it, the i-th on node i mod k; returns
/// how many joins were refused.
async fn fill_session(
    http: &reqwest::Client,
    nodes: &[(SocketAddr, String, Dialect)],
    room: &str,
    size: usize,
    tasks: &Tasks,
    tallies: &Arc<Mutex<Vec<Arc<Tally>>>>,
) -> anyhow::Result<usize> {
    let api = format!("{}/openvidu/api", nodes[0].1);
    let status = http
        .post(format!("{api}/sessions"))
        .basic_auth("OPENVIDUAPP", Some(SECRET))
        .json(&serde_json::json!({"customSessionId": room}))
        .send()
        .await?
        .status();
    anyhow::ensure!(status.is_success(), "creating session {room}: HTTP {status}");
    let mut refused = 0;
    for i in 0..size {
        let (addr, url, dialect) = &nodes[i % nodes.len()];
        let c: serde_json::Value = http
            .post(format!("{url}/openvidu/api/sessions/{room}/connection"))
            .basic_auth("OPENVIDUAPP", Some(SECRET))
            .json(&serde_json::json!({}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = c["token"].as_str().context("no token")?.to_owned();
        let seat = crate::dialect::Seat { room: room.to_owned(), token: Some(token) };
        match dialect.join(*addr, &seat, ConnectOptions::default()).await {
            Ok(j) => {
                let tally = Arc::new(Tally::default());
                tallies.lock().expect("tallies").push(Arc::clone(&tally));
                tasks.spawn(crowd::receive(
                    *dialect,
                    j.reader,
                    Some(j.writer),
                    tally,
                    Arc::new(Progress::default()),
                ));
            }
            Err(_) => refused += 1,
        }
    }
    Ok(refused)
}

/// Scenario 10: what the signal hook and the signal history cost a fan-out (signalroom only).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Extensions {
    pub receivers: usize,
    /// Rounds of each configuration, taking turns (plain, hook, history) so that a slow moment of
    /// the machine falls on all three.
    pub rounds: usize,
    /// Deliveries/s of each round, per configuration.
    pub plain: Vec<f64>,
    pub hook: Vec<f64>,
    pub history: Vec<f64>,
    /// Medians.
    pub plain_median: f64,
    pub hook_median: f64,
    pub history_median: f64,
    /// Medians ÷ plain's.
    pub hook_ratio: f64,
    pub history_ratio: f64,
    /// Cores the server used while measured (medians), per configuration...
    pub plain_server_cpu: f64,
    pub hook_server_cpu: f64,
    pub history_server_cpu: f64,
    /// ...and the load generator (the allow-all hook included, in the hook's rounds).
    pub plain_loadgen_cpu: f64,
    pub hook_loadgen_cpu: f64,
    /// Requests the allow-all hook answered (every signal of the hook's rounds)...
    pub hook_requests: u64,
    /// ...over this many connections.
    pub hook_connections: u64,
    /// Whether every round delivered every signal.
    pub complete: bool,
}

/// The allow-all hook's listen backlog.
const HOOK_BACKLOG: u32 = 4096;

/// Rounds of each configuration in [`extensions`].
const EXTENSION_ROUNDS: usize = 5;

/// Scenario 10: fan-out to `n` receivers with a signal hook that allows everything (an HTTP server
/// of the load generator's, on a thread of its own: on the load generator's core) and with the
/// signal history on for the signal's type, each against the same fan-out without.
pub(crate) async fn extensions(ctx: &Ctx, n: usize) -> anyhow::Result<Extensions> {
    let hook = AllowAll::start()?;
    let hook_url = hook.url();
    let history = r#"{"size":100,"types":["bench"]}"#;
    let configs: [(&str, Vec<&str>); 3] = [
        ("plain", vec![]),
        ("hook", vec!["--signal-hook", hook_url.as_str(), "--signal-hook-types", "bench"]),
        ("history", vec!["--signal-history", history]),
    ];
    let mut figures: [Vec<f64>; 3] = Default::default();
    let mut server_cpu: [Vec<f64>; 3] = Default::default();
    let mut loadgen_cpu: [Vec<f64>; 3] = Default::default();
    let mut complete = true;
    for round in 0..EXTENSION_ROUNDS {
        for (i, (name, extra)) in configs.iter().enumerate() {
            let label = format!("extensions-{name}-{round}");
            let deployment = ctx.launch.deploy(Dialect::OpenVidu, &label, Topology::Single, extra).await?;
            let result = fanout_on(ctx, &deployment, n, Dialect::OpenVidu).await;
            deployment.stop().await;
            let f = result?;
            complete &= f.complete;
            figures[i].push(f.deliveries_per_s);
            server_cpu[i].push(f.server_cpu);
            loadgen_cpu[i].push(f.loadgen_cpu);
        }
    }
    let [plain, hook_runs, history_runs] = figures;
    let (p, h, s) = (median(&plain), median(&hook_runs), median(&history_runs));
    Ok(Extensions {
        receivers: n,
        rounds: EXTENSION_ROUNDS,
        plain_median: p,
        hook_median: h,
        history_median: s,
        hook_ratio: h / p.max(1e-9),
        history_ratio: s / p.max(1e-9),
        plain,
        hook: hook_runs,
        history: history_runs,
        plain_server_cpu: median(&server_cpu[0]),
        hook_server_cpu: median(&server_cpu[1]),
        history_server_cpu: median(&server_cpu[2]),
        plain_loadgen_cpu: median(&loadgen_cpu[0]),
        hook_loadgen_cpu: median(&loadgen_cpu[1]),
        hook_requests: hook.requests(),
        hook_connections: hook.connections.load(Ordering::Relaxed),
        complete,
    })
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A signal hook that allows everything: HTTP/1.1 with keep-alive on 127.0.0.1, answering every
/// `POST` with `{}`, on a thread (and runtime) of its own.
struct AllowAll {
    addr: std::net::SocketAddr,
    requests: Arc<std::sync::atomic::AtomicU64>,
    connections: Arc<std::sync::atomic::AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl AllowAll {
    fn start() -> anyhow::Result<Self> {
        // A backlog for every connection the server's hook client opens at once (one per signal
        // waiting for the hook, up to a socket's 256): with the default 128, SYNs are dropped and
        // retried a second later.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse()?)?;
        let addr = socket.local_addr()?;
        let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let counted = Arc::clone(&requests);
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let accepted = Arc::clone(&connections);
        std::thread::Builder::new().name("allow-all-hook".into()).spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = socket.listen(HOOK_BACKLOG) else { return };
                let serve = async {
                    while let Ok((socket, _)) = listener.accept().await {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(answer_all(socket, Arc::clone(&counted)));
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Self { addr, requests, connections, stop: Some(stop) })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for AllowAll {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Answers every request on one connection with `200 {}`.
async fn answer_all(mut socket: tokio::net::TcpStream, requests: Arc<std::sync::atomic::AtomicU64>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        // A request: headers up to the blank line, then Content-Length bytes of body.
        let request_len = loop {
            if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let body = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + body {
                    break end + 4 + body;
                }
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..request_len);
        requests.fetch_add(1, Ordering::Relaxed);
        if socket.write_all(ANSWER).await.is_err() {
            return;
        }
    }
}
