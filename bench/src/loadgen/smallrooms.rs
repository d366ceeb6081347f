//! Scenario 14: many small rooms, the common case. `smallrooms_sessions` sessions of
//! `smallrooms_size` participants (10,000 sockets in the full plan), every participant sending a
//! chat-sized broadcast signal at the same steady rate, against raw (`raw-server --rooms`: a
//! room per path) with the same rooms, then signalroom, in one run. The total rate is the one at
//! which raw's core is half busy: raw is first run at a probe rate, and the rate scaled by its
//! CPU use (to 0.5 of a core), then both servers run at that rate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::dialect::{Dialect, Seat, now_ns};
use crate::procstat::CpuMeter;
use crate::scenarios::Ctx;
use crate::servers::ServerProc;
use crate::steady::{Phase, Shared, participant};
use crate::wire::ConnectOptions;

/// The share of raw's core the measured rate keeps busy.
const RAW_BUSY: f64 = 0.5;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SmallRoomsRun {
    pub server: String,
    pub participants: usize,
    pub signals_per_s: f64,
    pub deliveries_per_s: f64,
    /// Deliveries expected at this rate (each signal reaches everyone in its room, its sender too).
    pub expected_deliveries_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub samples: usize,
    pub server_cpu: f64,
    pub loadgen_cpu: f64,
    /// Server CPU time per delivery, ns.
    pub cpu_ns_per_delivery: f64,
    pub closed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SmallRooms {
    pub sessions: usize,
    pub size: usize,
    /// The probe rate raw ran at, and the share of its core it kept busy.
    pub probe_signals_per_s: f64,
    pub probe_raw_cpu: f64,
    /// The rate both servers ran at.
    pub signals_per_s: f64,
    pub raw: Option<SmallRoomsRun>,
    pub signalroom: Option<SmallRoomsRun>,
}

pub(crate) async fn small_rooms(ctx: &Ctx, servers: &[Dialect]) -> anyhow::Result<SmallRooms> {
    let plan = &ctx.plan;
    let mut out = SmallRooms {
        sessions: plan.smallrooms_sessions,
        size: plan.smallrooms_size,
        probe_signals_per_s: plan.smallrooms_probe_signals_per_s as f64,
        probe_raw_cpu: f64::NAN,
        signals_per_s: plan.smallrooms_probe_signals_per_s as f64,
        raw: None,
        signalroom: None,
    };
    if servers.contains(&Dialect::Raw) {
        let server = ctx.launch.start(Dialect::Raw, "smallrooms", &["--rooms", "--ring", "256"]).await?;
        let r = async {
            let mut room = Room::join(ctx, &server).await?;
            let probe = room.run(out.probe_signals_per_s, plan.smallrooms_probe_s).await?;
            out.probe_raw_cpu = probe.server_cpu;
            if probe.server_cpu > 0.01 {
                let scaled = out.probe_signals_per_s * RAW_BUSY / probe.server_cpu;
                out.signals_per_s =
                    scaled.clamp(out.probe_signals_per_s / 20.0, out.probe_signals_per_s * 4.0);
            }
            crate::progress(&format!(
                "small rooms: raw at {:.0} signals/s used {:.2} of its core: measuring at {:.0} signals/s",
                out.probe_signals_per_s, probe.server_cpu, out.signals_per_s
            ));
            room.run(out.signals_per_s, plan.smallrooms_measure_s).await
        }
        .await;
        server.stop().await;
        out.raw = Some(r?);
    }
    if servers.contains(&Dialect::OpenVidu) {
        let server = ctx.launch.start(Dialect::OpenVidu, "smallrooms", &[]).await?;
        let r = async {
            let mut room = Room::join(ctx, &server).await?;
            room.run(out.signals_per_s, plan.smallrooms_measure_s).await
        }
        .await;
        server.stop().await;
        out.signalroom = Some(r?);
    }
    Ok(out)
}

/// Every room of one server, joined.
struct Room<'a> {
    ctx: &'a Ctx,
    server: &'a ServerProc,
    participants: usize,
    phase: watch::Sender<Phase>,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl<'a> Room<'a> {
    async fn join(ctx: &'a Ctx, server: &'a ServerProc) -> anyhow::Result<Self> {
        let plan = &ctx.plan;
        let (sessions, size) = (plan.smallrooms_sessions, plan.smallrooms_size);
        let seats: Vec<Seat> = if server.dialect == Dialect::OpenVidu {
            crate::bots::mint(&ctx.http, server, "small", sessions, size)
                .await?
                .into_iter()
                .flatten()
                .map(|m| m.seat)
                .collect()
        } else {
            (0..sessions)
                .flat_map(|s| (0..size).map(move |_| Seat { room: format!("small-{s}"), token: None }))
                .collect()
        };
        let participants = seats.len();
        let (phase, phase_rx) = watch::channel(Phase::Idle);
        let shared = Arc::new(Shared::default());
        let mut tasks = JoinSet::new();
        let gate = Arc::new(Semaphore::new(100));
        let (dialect, addr) = (server.dialect, server.addr);
        let mut joining = JoinSet::new();
        for (i, seat) in seats.into_iter().enumerate() {
            let gate = Arc::clone(&gate);
            joining.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let joined = dialect.join(addr, &seat, ConnectOptions::default()).await?;
                anyhow::Ok((i, joined))
            });
        }
        let all = async {
            while let Some(done) = joining.join_next().await {
                let (i, joined) = done??;
                tasks.spawn(participant(
                    i,
                    participants,
                    dialect,
                    joined,
                    None,
                    phase_rx.clone(),
                    Arc::clone(&shared),
                ));
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(120), all)
            .await
            .context("joins did not finish in time")??;
        // The join notifications read before anything is measured.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Self { ctx, server, participants, phase, shared, tasks })
    }

    /// Every participant at `rate ÷ participants` signals/s: a warm-up, then `seconds` measured.
    async fn run(&mut self, rate: f64, seconds: f64) -> anyhow::Result<SmallRoomsRun> {
        let plan = &self.ctx.plan;
        let period = Duration::from_secs_f64(self.participants as f64 / rate.max(1.0));
        self.phase.send(Phase::Rate { period })?;
        tokio::time::sleep(Duration::from_secs_f64(plan.smallrooms_warmup_s)).await;
        let shared = &self.shared;
        let cpu = CpuMeter::start_all(&[self.server.pid, 0]);
        let (d0, t0) = (shared.answers.load(Ordering::Relaxed), Instant::now());
        shared.record_from.store(now_ns(), Ordering::Relaxed);
        shared.recording.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        shared.recording.store(false, Ordering::Relaxed);
        let elapsed = t0.elapsed().as_secs_f64();
        let deliveries = shared.answers.load(Ordering::Relaxed) - d0;
        let cores = cpu.cores_each();
        let server_secs = cpu.cpu_secs_each().first().copied().unwrap_or(f64::NAN);
        self.phase.send(Phase::Stop)?;
        // What is still on its way is read (not recorded) before the next run.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut lat = std::mem::take(&mut *shared.latencies.lock().expect("latencies"));
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .map_or(f64::NAN, |&ns| ns as f64 / 1e3)
        };
        Ok(SmallRoomsRun {
            server: self.server.dialect.server_name().to_owned(),
            participants: self.participants,
            signals_per_s: rate,
            deliveries_per_s: deliveries as f64 / elapsed,
            expected_deliveries_per_s: rate * self.ctx.plan.smallrooms_size as f64,
            p50_us: pct(0.5),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            samples: lat.len(),
            server_cpu: cores.first().copied().unwrap_or(f64::NAN),
            loadgen_cpu: cores.get(1).copied().unwrap_or(f64::NAN),
            cpu_ns_per_delivery: server_secs * 1e9 / deliveries.max(1) as f64,
            closed: shared.closed.load(Ordering::Relaxed),
        })
    }
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}
