//! `loadgen`: signalroom's load generator. `loadgen compare` starts signalroom, the raw
//! tokio-tungstenite baseline and the Socket.IO 4 baseline one after the other, runs every
//! scenario against each (and signalroom as two nodes sharing a `redis-server` against one node),
//! prints a table of absolute figures and ratios, and writes the figures as JSON. `scripts/bench` builds everything and runs it; see `bench/README.md`.

mod bots;
mod crowd;
mod dialect;
mod procstat;
mod report;
mod scenarios;
mod sender;
mod servers;
mod smallrooms;
mod steady;
mod wire;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::dialect::Dialect;
use crate::scenarios::{Ctx, Plan};
use crate::servers::{Launch, Topology};

/// Receivers of scenario 10 (the signal hook's and the signal history's cost).
const EXTENSIONS_RECEIVERS: usize = 100;

/// The whole run stops after this long, whatever happened (a full run takes about 3 minutes).
const RUN_LIMIT: Duration = Duration::from_secs(600);

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "signalroom load generator: signalroom vs raw tokio-tungstenite vs Socket.IO"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every scenario against every server and report.
    Compare(CompareArgs),
}

#[derive(clap::Args)]
struct CompareArgs {
    /// A few seconds with tiny sizes: checks the harness works (CI), measures nothing.
    #[arg(long)]
    smoke: bool,
    /// The signalroom server binary.
    #[arg(long)]
    signalroom: PathBuf,
    /// The raw-server binary.
    #[arg(long)]
    raw: PathBuf,
    /// bench/socketio/server.js
    #[arg(long)]
    socketio: PathBuf,
    /// Node.js.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// Python with the `signalroom` and `websockets` packages (scenario 5 is pending without).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Directory of participant.py.
    #[arg(long, default_value = "bench/python")]
    python_dir: PathBuf,
    /// CPU list the servers are pinned to (`taskset -c`); `none` to not pin.
    #[arg(long, default_value = "0")]
    server_cpu: String,
    /// Where the JSON results go (`<stamp>.json`, `latest.json`, `latest.md`). Default:
    /// bench/results, or target/bench-smoke for a smoke run.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where server logs go.
    #[arg(long, default_value = "target/bench-logs")]
    logs: PathBuf,
    /// Name of this run's files (default: UTC time, YYYYMMDDTHHMMSSZ).
    #[arg(long)]
    stamp: Option<String>,
    /// Only these scenarios (comma-separated: fanout,latency,idle,joins,python,isolation,twonode,
    /// bigsession,bigcluster,scaleout,extensions,rpc,bots,smallrooms).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these servers (comma-separated: signalroom,raw,socketio).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Override the fan-out sizes (comma-separated receivers), e.g. for profiling one size.
    #[arg(long, value_delimiter = ',')]
    fanout_receivers: Vec<usize>,
    /// Override how long each saturation scenario measures, in seconds.
    #[arg(long)]
    measure_s: Option<f64>,
    /// Override the fixed load of scenario 2, in signals per second (to each of its receivers),
    /// e.g. to profile it at a rate where a delivery's cost can be measured.
    #[arg(long)]
    latency_signals_per_s: Option<u64>,
    /// Override how many joins scenario 4 times (into sessions of its session size, filled from
    /// empty one after another), e.g. to profile joins over more than a fraction of a second.
    #[arg(long)]
    joins: Option<usize>,
    /// Extra note stored in the JSON (e.g. the command line).
    #[arg(long, default_value = "")]
    note: String,
}

fn main() -> anyhow::Result<()> {
    let Cmd::Compare(args) = Cli::parse().command;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let code = runtime.block_on(async {
        match tokio::time::timeout(RUN_LIMIT, compare(args)).await {
            Ok(r) => r,
            Err(_) => anyhow::bail!("the run took longer than {RUN_LIMIT:?}: stopped"),
        }
    })?;
    // Child processes are killed on drop; leave without waiting for stray tasks.
    runtime.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(code);
}

fn progress(line: &str) {
    eprintln!("bench: {line}");
}

async fn compare(args: CompareArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let mut plan = if args.smoke { Plan::smoke() } else { Plan::full() };
    if !args.fanout_receivers.is_empty() {
        plan.fanout_receivers = args.fanout_receivers.clone();
    }
    if let Some(rate) = args.latency_signals_per_s {
        plan.latency_signals_per_s = rate.max(1);
    }
    if let Some(joins) = args.joins {
        plan.joins = joins.max(1);
    }
    if let Some(s) = args.measure_s {
        plan.fanout_measure_s = s;
        plan.isolation_measure_s = s;
    }
    let ctx = Ctx {
        launch: Launch {
            signalroom: args.signalroom.clone(),
            raw: args.raw.clone(),
            node: args.node.clone(),
            socketio: args.socketio.clone(),
            server_cpu: (args.server_cpu != "none").then(|| args.server_cpu.clone()),
            logs: args.logs.clone(),
        },
        http: reqwest::Client::builder().pool_max_idle_per_host(64).build()?,
        plan: plan.clone(),
        python: args.python.clone(),
        python_dir: args.python_dir.clone(),
    };
    let wanted = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let dialects: Vec<Dialect> = [Dialect::OpenVidu, Dialect::Raw, Dialect::SocketIo]
        .into_iter()
        .filter(|d| args.servers.is_empty() || args.servers.iter().any(|s| s == d.server_name()))
        .collect();
    let mut servers = serde_json::Map::new();
    for d in &dialects {
        servers.insert(d.server_name().into(), json!({}));
    }
    let mut failures = Vec::new();
    let mut record = |server: &str, key: &str, value: anyhow::Result<Value>, failures: &mut Vec<String>| {
        let v = match value {
            Ok(v) => v,
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  {server} {key}: FAILED: {msg}"));
                failures.push(format!("{server} {key}: {msg}"));
                json!({"error": msg})
            }
        };
        servers[server][key] = v;
    };

    if wanted("fanout") {
        for &n in &plan.fanout_receivers {
            for &d in &dialects {
                let r = scenarios::fanout(&ctx, d, n, Topology::Single).await;
                if let Ok(f) = &r {
                    progress(&format!(
                        "fan-out N={n} {}: {:.0} deliveries/s ({:.0} signals/s; server {:.2} cores, loadgen {:.2}){}",
                        d.server_name(),
                        f.deliveries_per_s,
                        f.signals_per_s,
                        f.server_cpu,
                        f.loadgen_cpu,
                        if f.complete { "" } else { " INCOMPLETE" }
                    ));
                }
                let key = format!("fanout_{n}");
                record(d.server_name(), &key, r.map(to_value), &mut failures);
                for variant in scenarios::RawVariant::ALL.into_iter().filter(|_| d == Dialect::Raw) {
                    let r = scenarios::fanout_raw(&ctx, n, variant).await;
                    if let Ok(f) = &r {
                        progress(&format!(
                            "fan-out N={n} {}: {:.0} deliveries/s ({:.0} signals/s; server {:.2} cores, loadgen {:.2}){}",
                            variant.describe(),
                            f.deliveries_per_s,
                            f.signals_per_s,
                            f.server_cpu,
                            f.loadgen_cpu,
                            if f.complete { "" } else { " INCOMPLETE" }
                        ));
                    }
                    record("raw", &format!("{}_{n}", variant.key()), r.map(to_value), &mut failures);
                }
            }
        }
    }
    if wanted("latency") {
        // Side by side: the servers take turns, so a slow moment of the machine falls on all.
        let deployments: Vec<_> = dialects.iter().map(|&d| (d, Topology::Single)).collect();
        let results = scenarios::latency_side_by_side(&ctx, &deployments).await;
        for (&d, r) in dialects.iter().zip(results) {
            if let Ok(l) = &r {
                progress(&format!(
                    "latency {} deliveries/s {}: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs ({} samples, {} turns)",
                    l.deliveries_per_s,
                    d.server_name(),
                    l.p50_us,
                    l.p99_us,
                    l.p999_us,
                    l.samples,
                    l.rounds
                ));
            }
            record(d.server_name(), "latency", r.map(to_value), &mut failures);
        }
    }
    if wanted("idle") {
        for &d in &dialects {
            let r = scenarios::idle(&ctx, d).await;
            if let Ok(i) = &r {
                for p in &i.points {
                    progress(&format!(
                        "idle {} {}: RSS {:.1} MiB, {:.1} KiB per participant",
                        p.participants,
                        d.server_name(),
                        p.rss_bytes as f64 / 1048576.0,
                        p.bytes_per_participant / 1024.0
                    ));
                }
            }
            record(d.server_name(), "idle", r.map(to_value), &mut failures);
        }
    }
    if wanted("joins") {
        for &d in &dialects {
            let r = scenarios::joins(&ctx, d).await;
            if let Ok(j) = &r {
                progress(&format!(
                    "joins {}: {:.0} joins/s (p50 {:.1} ms, p99 {:.1} ms; cores: server {:.2}, load generator {:.2})",
                    d.server_name(),
                    j.joins_per_s,
                    j.p50_ms,
                    j.p99_ms,
                    j.server_cpu,
                    j.loadgen_cpu
                ));
            }
            record(d.server_name(), "joins", r.map(to_value), &mut failures);
            if d == Dialect::Raw {
                let r = scenarios::joins_answered(&ctx).await;
                if let Ok(j) = &r {
                    progress(&format!(
                        "joins raw writing OpenVidu's join bytes: {:.0} joins/s (p50 {:.1} ms, p99 {:.1} ms; \
                         cores: server {:.2}, load generator {:.2})",
                        j.joins_per_s, j.p50_ms, j.p99_ms, j.server_cpu, j.loadgen_cpu
                    ));
                }
                record("raw", "joins_answered", r.map(to_value), &mut failures);
            }
        }
    }
    if wanted("isolation") {
        for &d in &dialects {
            let r = scenarios::isolation(&ctx, d).await;
            if let Ok(i) = &r {
                progress(&format!(
                    "isolation {}: {:.0} deliveries/s ({:.0} per receiver), RSS {:.1} → max {:.1} MiB, stalled evicted: {:?}",
                    d.server_name(),
                    i.deliveries_per_s,
                    i.per_receiver_signals_per_s,
                    i.rss_start_bytes as f64 / 1048576.0,
                    i.rss_max_bytes as f64 / 1048576.0,
                    i.stalled_evicted
                ));
            }
            record(d.server_name(), "isolation", r.map(to_value), &mut failures);
        }
    }
    if wanted("bigsession") {
        for &d in dialects.iter().filter(|d| **d != Dialect::SocketIo) {
            let r = scenarios::big_session(&ctx, d).await;
            if let Ok(b) = &r {
                progress(&format!(
                    "big session {} {}: filled in {:.1} s{} ({:.0} joins/s, p99 {:.0} ms), {:.2} GB sent, \
                     RSS {:.0} MiB filled, {:.0} MiB after {:.0} s idle ({:.1} / {:.1} KiB per participant), {} closed",
                    b.participants,
                    d.server_name(),
                    b.fill_seconds,
                    b.told_seconds.map(|t| format!(", everyone told in {t:.1} s")).unwrap_or_default(),
                    b.joins_per_s,
                    b.p99_join_ms,
                    b.bytes_sent as f64 / 1e9,
                    b.rss_filled_bytes as f64 / 1048576.0,
                    b.rss_idle_bytes as f64 / 1048576.0,
                    b.idle_s,
                    b.filled_bytes_per_participant / 1024.0,
                    b.idle_bytes_per_participant / 1024.0,
                    b.closed
                ));
            }
            record(d.server_name(), "bigsession", r.map(to_value), &mut failures);
        }
    }
    let mut python = Value::Null;
    if wanted("python") && dialects.contains(&Dialect::OpenVidu) {
        match scenarios::python(&ctx).await {
            Ok(p) => {
                progress(&format!(
                    "python: {} (signalroom {:?} signals/s, websockets {:?} signals/s)",
                    p.status,
                    p.signalroom.as_ref().map(|r| r.signals_per_s.round()),
                    p.websockets.as_ref().map(|r| r.signals_per_s.round())
                ));
                python = to_value(p);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  python: FAILED: {msg}"));
                failures.push(format!("python: {msg}"));
                python = json!({"error": msg});
            }
        }
    }

    let mut smallrooms = Value::Null;
    if wanted("smallrooms") {
        match smallrooms::small_rooms(&ctx, &dialects).await {
            Ok(r) => {
                for run in [&r.raw, &r.signalroom].into_iter().flatten() {
                    progress(&format!(
                        "small rooms {}: {} participants at {:.0} signals/s: {:.0} deliveries/s (of {:.0}), \
                         p50 {:.0} µs p99 {:.0} µs p99.9 {:.0} µs; server {:.2} cores, {:.0} ns per delivery",
                        run.server,
                        run.participants,
                        run.signals_per_s,
                        run.deliveries_per_s,
                        run.expected_deliveries_per_s,
                        run.p50_us,
                        run.p99_us,
                        run.p999_us,
                        run.server_cpu,
                        run.cpu_ns_per_delivery
                    ));
                }
                smallrooms = to_value(r);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  smallrooms: FAILED: {msg}"));
                failures.push(format!("smallrooms: {msg}"));
                smallrooms = json!({"error": msg});
            }
        }
    }

    let mut bots = Value::Null;
    if wanted("bots") && dialects.contains(&Dialect::OpenVidu) {
        match bots::bots(&ctx).await {
            Ok(b) => {
                progress(&format!("bots: {} (signalroom ÷ websockets handled/s: {:?})", b.status, b.ratio));
                bots = to_value(b);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  bots: FAILED: {msg}"));
                failures.push(format!("bots: {msg}"));
                bots = json!({"error": msg});
            }
        }
    }

    let mut scaleout = Value::Null;
    if wanted("scaleout") && dialects.contains(&Dialect::OpenVidu) {
        match scenarios::scale_out(&ctx).await {
            Ok(x) => {
                progress(&format!(
                    "scale-out: {} participants in {} sessions over {} nodes + {} shards, filled in {:.1} s; \
                     {}/{} deliveries in {:.1} s ({:.0}/s), {} closed; commands per shard {:?} (balance {:.2})",
                    x.participants,
                    x.sessions,
                    x.nodes,
                    x.shards,
                    x.fill_seconds,
                    x.deliveries,
                    x.expected_deliveries,
                    x.send_seconds,
                    x.deliveries_per_s,
                    x.closed,
                    x.commands_per_shard,
                    x.shard_balance,
                ));
                scaleout = to_value(x);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  scaleout: FAILED: {msg}"));
                failures.push(format!("scaleout: {msg}"));
                scaleout = json!({"error": msg});
            }
        }
    }

    let mut rpc = Value::Null;
    if wanted("rpc") && dialects.contains(&Dialect::OpenVidu) {
        match scenarios::rpc(&ctx).await {
            Ok(r) => {
                progress(&format!(
                    "rpc: request/reply {:.0} round trips/s (p99 {:.0} µs) vs by hand {:.0} (p99 {:.0} µs): {:.2}×; \
                     send_text {:.1} MB/s vs raw signals {:.1} MB/s",
                    r["requests"]["round_trips_per_s"].as_f64().unwrap_or(f64::NAN),
                    r["requests"]["p99_us"].as_f64().unwrap_or(f64::NAN),
                    r["by_hand"]["round_trips_per_s"].as_f64().unwrap_or(f64::NAN),
                    r["by_hand"]["p99_us"].as_f64().unwrap_or(f64::NAN),
                    r["rate_ratio"].as_f64().unwrap_or(f64::NAN),
                    r["send_text_mb_per_s"].as_f64().unwrap_or(f64::NAN),
                    r["raw_signals_mb_per_s"].as_f64().unwrap_or(f64::NAN),
                ));
                rpc = r;
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  rpc: FAILED: {msg}"));
                failures.push(format!("rpc: {msg}"));
                rpc = json!({"error": msg});
            }
        }
    }

    let mut bigcluster = Value::Null;
    if wanted("bigcluster") && dialects.contains(&Dialect::OpenVidu) {
        match scenarios::big_cluster(&ctx).await {
            Ok(b) => {
                progress(&format!(
                    "big session {} over {} nodes + Redis: filled in {:.1} s{} ({:.0} joins/s, p99 {:.0} ms), \
                     {} refused, {} closed; Redis read {:.0} B per join ({:.0} at {}), wrote {:.0} ({:.0}); \
                     {:.1} KiB per participant (both nodes; {:.1} after {:.0} s idle)",
                    b.participants,
                    b.nodes,
                    b.fill_seconds,
                    b.told_seconds.map(|t| format!(", everyone told in {t:.1} s")).unwrap_or_default(),
                    b.joins_per_s,
                    b.p99_join_ms,
                    b.refused,
                    b.closed,
                    b.redis_in_bytes_per_join,
                    b.redis_in_bytes_per_join_small,
                    b.small_participants,
                    b.redis_out_bytes_per_join,
                    b.redis_out_bytes_per_join_small,
                    b.filled_bytes_per_participant / 1024.0,
                    b.idle_bytes_per_participant / 1024.0,
                    b.idle_s,
                ));
                bigcluster = to_value(b);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  bigcluster: FAILED: {msg}"));
                failures.push(format!("bigcluster: {msg}"));
                bigcluster = json!({"error": msg});
            }
        }
    }

    let mut twonode = Value::Null;
    if wanted("twonode") && dialects.contains(&Dialect::OpenVidu) {
        match scenarios::twonode(&ctx).await {
            Ok(t) => {
                let (one, two) = (&t.one_node_fanout, &t.two_node_fanout);
                progress(&format!(
                    "one node with the Redis broker, fan-out N={}: {:.0} deliveries/s (server side {:.2} cores)",
                    t.one_node_redis_fanout.receivers,
                    t.one_node_redis_fanout.deliveries_per_s,
                    t.one_node_redis_fanout.server_cpu
                ));
                progress(&format!(
                    "two nodes, fan-out N={}: {:.0} deliveries/s ({:.0} across nodes; server side {:.2} cores: {}) \
                     vs one node {:.0} ({:.2} cores): {:.2}×{}",
                    two.receivers,
                    two.deliveries_per_s,
                    two.cross_node_deliveries_per_s,
                    two.server_cpu,
                    two.server_cpu_each.iter().map(|c| format!("{c:.2}")).collect::<Vec<_>>().join(" + "),
                    one.deliveries_per_s,
                    one.server_cpu,
                    two.deliveries_per_s / one.deliveries_per_s.max(1e-9),
                    if two.complete { "" } else { " INCOMPLETE" }
                ));
                let (one, two) = (&t.one_node_latency, &t.two_node_latency);
                progress(&format!(
                    "two nodes, latency at {} deliveries/s: p99 {:.0} µs (across nodes {:.0} µs), p50 {:.0} µs \
                     vs one node p99 {:.0} µs, p50 {:.0} µs",
                    two.deliveries_per_s,
                    two.p99_us,
                    two.cross_node_p99_us.unwrap_or(f64::NAN),
                    two.p50_us,
                    one.p99_us,
                    one.p50_us
                ));
                twonode = to_value(t);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  twonode: FAILED: {msg}"));
                failures.push(format!("twonode: {msg}"));
                twonode = json!({"error": msg});
            }
        }
    }

    let mut extensions = Value::Null;
    if wanted("extensions") && dialects.contains(&Dialect::OpenVidu) {
        let n = if args.smoke { 3 } else { EXTENSIONS_RECEIVERS };
        match scenarios::extensions(&ctx, n).await {
            Ok(e) => {
                progress(&format!(
                    "fan-out N={n} with an allow-all signal hook: {:.0} deliveries/s ({} hook requests) vs {:.0}                      without: {:.2}×; with the signal history on for its type: {:.0}: {:.2}× (medians of {} rounds){}",
                    e.hook_median,
                    e.hook_requests,
                    e.plain_median,
                    e.hook_ratio,
                    e.history_median,
                    e.history_ratio,
                    e.rounds,
                    if e.complete { "" } else { " INCOMPLETE" }
                ));
                extensions = to_value(e);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                progress(&format!("  extensions: FAILED: {msg}"));
                failures.push(format!("extensions: {msg}"));
                extensions = json!({"error": msg});
            }
        }
    }

    let stamp = args.stamp.clone().unwrap_or_else(utc_stamp);
    let mut results = json!({
        "stamp": stamp,
        "mode": if args.smoke { "smoke" } else { "full" },
        "note": args.note,
        "machine": machine(),
        "server_cpu": args.server_cpu,
        "plan": to_value(plan),
        "servers": Value::Object(servers),
        "python": python,
        "rpc": rpc,
        "bots": bots,
        "smallrooms": smallrooms,
        "twonode": twonode,
        "bigcluster": bigcluster,
        "scaleout": scaleout,
        "extensions": extensions,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let targets = report::targets(&results);
    results["targets"] = to_value(&targets);
    let mut table = report::table(&results, &targets);
    if args.smoke {
        table = format!("Smoke run: tiny sizes, debug builds; these figures mean nothing.\n\n{table}");
    }
    println!("{table}");

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(if args.smoke { "target/bench-smoke" } else { "bench/results" }));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {out:?}"))?;
    let text = serde_json::to_string_pretty(&results)?;
    let file = out.join(format!("{stamp}.json"));
    std::fs::write(&file, &text)?;
    std::fs::write(out.join("latest.json"), &text)?;
    std::fs::write(out.join("latest.md"), &table)?;
    progress(&format!("results: {} ({:.0} s)", file.display(), started.elapsed().as_secs_f64()));

    // Every scenario must have produced numbers (all a smoke run asserts).
    let checks = report::checks(&results);
    for f in &checks.failed {
        progress(&format!("no numbers: {f}"));
    }
    for f in &failures {
        progress(&format!("failed: {f}"));
    }
    let skipped = if checks.skipped > 0 { format!(", {} skipped", checks.skipped) } else { String::new() };
    println!("bench: {} passed, {} failed{skipped}", checks.passed, checks.failed.len());
    Ok(if checks.failed.is_empty() { 0 } else { 1 })
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// What the figures were measured on.
fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split_once(':').map_or("", |(_, v)| v).trim().to_owned());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "loadavg_at_end": read("/proc/loadavg").trim(),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
    })
}

/// Now as `YYYYMMDDTHHMMSSZ` (UTC).
fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
