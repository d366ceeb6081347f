//! The table and the targets, computed from the results JSON (so a stored run can be re-read).

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// One target of the issue, checked on one run's ratios.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    pub name: &'static str,
    pub goal: &'static str,
    /// The measured ratio (or share), when both figures exist.
    pub measured: Option<f64>,
    pub pass: Option<bool>,
}

const SERVERS: [(&str, &str); 3] =
    [("signalroom", "signalroom"), ("raw", "raw tokio-tungstenite"), ("socketio", "Socket.IO 4")];

fn num(results: &Value, server: &str, path: &[&str]) -> Option<f64> {
    let mut v = &results["servers"][server];
    for p in path {
        v = v.get(p)?;
    }
    v.as_f64()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Idle bytes per participant at the largest count measured.
fn idle_per(results: &Value, server: &str) -> Option<f64> {
    results["servers"][server]["idle"]["points"].as_array()?.last()?["bytes_per_participant"].as_f64()
}

/// Per-receiver signals/s with a stalled participant ÷ without (fan-out at the largest N).
fn isolation_share(results: &Value, server: &str) -> Option<f64> {
    let n = results["plan"]["fanout_receivers"].as_array()?.last()?.as_u64()?;
    let fan = num(results, server, &[&format!("fanout_{n}"), "deliveries_per_s"])? / n as f64;
    Some(num(results, server, &["isolation", "per_receiver_signals_per_s"])? / fan)
}

/// Growth of the server's RSS while a participant stalled, in bytes.
fn isolation_growth(results: &Value, server: &str) -> Option<f64> {
    Some(
        num(results, server, &["isolation", "rss_max_bytes"])?
            - num(results, server, &["isolation", "rss_start_bytes"])?,
    )
}

/// RSS growth under a stalled participant that still counts as bounded: a full send queue
/// (4,096 frames of ~150 bytes) is under 1 MiB; 32 MiB leaves room for allocator noise.
const BOUNDED_GROWTH: f64 = 32.0 * 1024.0 * 1024.0;

pub(crate) fn targets(results: &Value) -> Vec<Target> {
    let n = results["plan"]["fanout_receivers"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let fan = |s: &str| num(results, s, &[&format!("fanout_{n}"), "deliveries_per_s"]);
    let check = |m: Option<f64>, ok: fn(f64) -> bool| m.map(ok);
    let mut out = Vec::new();
    let m = ratio(fan("signalroom"), fan("raw"));
    out.push(Target {
        name: "fan-out deliveries/s at the largest N ÷ raw",
        goal: "≥ 0.8",
        measured: m,
        pass: check(m, |x| x >= 0.8),
    });
    let m = ratio(fan("signalroom"), fan("socketio"));
    out.push(Target {
        name: "fan-out deliveries/s at the largest N ÷ Socket.IO",
        goal: "≥ 15",
        measured: m,
        pass: check(m, |x| x >= 15.0),
    });
    let p99 = |s: &str| num(results, s, &["latency", "p99_us"]);
    let m = ratio(p99("signalroom"), p99("raw"));
    out.push(Target {
        name: "p99 latency at fixed load ÷ raw",
        goal: "≤ 1.2",
        measured: m,
        pass: check(m, |x| x <= 1.2),
    });
    let m = ratio(idle_per(results, "signalroom"), idle_per(results, "raw"));
    out.push(Target {
        name: "RSS per idle participant (largest count) ÷ raw",
        goal: "≤ 1.5",
        measured: m,
        pass: check(m, |x| x <= 1.5),
    });
    let joins = |s: &str| num(results, s, &["joins", "joins_per_s"]);
    let m = ratio(joins("signalroom"), joins("raw"));
    out.push(Target { name: "joins/s ÷ raw", goal: "≥ 0.5", measured: m, pass: check(m, |x| x >= 0.5) });
    let m = results["python"]["ratio"].as_f64();
    out.push(Target {
        name: "Python handler signals/s ÷ pure-Python participant",
        goal: "≥ 3",
        measured: m,
        pass: check(m, |x| x >= 3.0),
    });
    let m = isolation_share(results, "signalroom");
    out.push(Target {
        name: "isolation: others' throughput with a stalled participant ÷ without",
        goal: "> 0.9",
        measured: m,
        pass: check(m, |x| x > 0.9),
    });
    let m = isolation_growth(results, "signalroom").map(|b| b / 1048576.0);
    out.push(Target {
        name: "isolation: server RSS growth while a participant stalls (MiB)",
        goal: "bounded (< 32 MiB)",
        measured: m,
        pass: isolation_growth(results, "signalroom").map(|b| b < BOUNDED_GROWTH),
    });
    out
}

fn fmt_rate(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v >= 1e6 => format!("{:.2} M", v / 1e6),
        Some(v) if v >= 1e4 => format!("{:.0} k", v / 1e3),
        Some(v) if v >= 1e3 => format!("{:.1} k", v / 1e3),
        Some(v) => format!("{v:.0}"),
    }
}

fn fmt_num(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.decimals$}"))
}

fn fmt_ratio(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v >= 10.0 => format!("{v:.0}×"),
        Some(v) => format!("{v:.2}×"),
    }
}

/// The Markdown table of one run.
pub(crate) fn table(results: &Value, targets: &[Target]) -> String {
    let mut t = String::new();
    let _ =
        writeln!(t, "| scenario | metric | {} | ÷ raw | ÷ Socket.IO |", SERVERS.map(|(_, h)| h).join(" | "));
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|");
    let mut row = |scenario: &str,
                   metric: &str,
                   get: &dyn Fn(&str) -> Option<f64>,
                   fmt: &dyn Fn(Option<f64>) -> String| {
        let v: Vec<Option<f64>> = SERVERS.iter().map(|(k, _)| get(k)).collect();
        let _ = writeln!(
            t,
            "| {scenario} | {metric} | {} | {} | {} | {} | {} |",
            fmt(v[0]),
            fmt(v[1]),
            fmt(v[2]),
            fmt_ratio(ratio(v[0], v[1])),
            fmt_ratio(ratio(v[0], v[2]))
        );
    };
    let plan = &results["plan"];
    for n in plan["fanout_receivers"].as_array().into_iter().flatten().filter_map(Value::as_u64) {
        let key = format!("fanout_{n}");
        row(
            &format!("1. fan-out, N = {n}"),
            "deliveries/s",
            &|s| num(results, s, &[&key, "deliveries_per_s"]),
            &fmt_rate,
        );
    }
    let load = format!(
        "2. latency at {} deliveries/s",
        fmt_rate(
            plan["latency_receivers"]
                .as_f64()
                .zip(plan["latency_signals_per_s"].as_f64())
                .map(|(a, b)| a * b)
        )
    );
    for (metric, key) in [("p50 µs", "p50_us"), ("p99 µs", "p99_us"), ("p99.9 µs", "p999_us")] {
        row(&load, metric, &|s| num(results, s, &["latency", key]), &|v| fmt_num(v, 0));
    }
    let counts: Vec<u64> =
        results["plan"]["idle_counts"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
    for (i, c) in counts.iter().enumerate() {
        row(
            &format!("3. idle, {c} participants"),
            "RSS KiB per participant",
            &|s| {
                results["servers"][s]["idle"]["points"].get(i)?["bytes_per_participant"]
                    .as_f64()
                    .map(|b| b / 1024.0)
            },
            &|v| fmt_num(v, 1),
        );
    }
    row(
        &format!("4. joins ({} concurrent)", plan["join_concurrency"]),
        "joins/s",
        &|s| num(results, s, &["joins", "joins_per_s"]),
        &fmt_rate,
    );
    let iso = format!("6. isolation, 1 stalled of {}", plan["isolation_participants"]);
    row(
        &iso,
        "others' signals/s each",
        &|s| num(results, s, &["isolation", "per_receiver_signals_per_s"]),
        &fmt_rate,
    );
    row(&iso, "÷ same without the stall", &|s| isolation_share(results, s), &|v| fmt_num(v, 2));
    row(&iso, "server RSS growth MiB", &|s| isolation_growth(results, s).map(|b| b / 1048576.0), &|v| {
        fmt_num(v, 1)
    });

    let py = &results["python"];
    let _ = writeln!(t);
    match py["status"].as_str() {
        Some(status) => {
            let rate = |k: &str| py[k]["signals_per_s"].as_f64();
            let _ = writeln!(
                t,
                "5. Python, {} signals in one session: `signalroom` plain handler {} signals/s, pure-Python \
                 `websockets` participant {} signals/s: **{}** ({status})",
                py["signals"],
                fmt_rate(rate("signalroom")),
                fmt_rate(rate("websockets")),
                fmt_ratio(py["ratio"].as_f64()),
            );
        }
        None => {
            let _ = writeln!(t, "5. Python: {}", py.get("error").map_or("not run".into(), |e| e.to_string()));
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "| target | goal | measured | |");
    let _ = writeln!(t, "|---|---|---:|---|");
    for g in targets {
        let mark = match g.pass {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(t, "| {} | {} | {} | {mark} |", g.name, g.goal, fmt_num(g.measured, 2));
    }
    t
}

/// Whether each scenario produced numbers.
pub(crate) struct Checks {
    pub passed: usize,
    pub failed: Vec<String>,
    pub skipped: usize,
}

/// One check per scenario and server run (and one for the Python scenario; pending = skipped).
pub(crate) fn checks(results: &Value) -> Checks {
    let mut c = Checks { passed: 0, failed: Vec::new(), skipped: 0 };
    let positive = |v: &Value, key: &str| v[key].as_f64().is_some_and(|x| x > 0.0);
    for (server, runs) in results["servers"].as_object().into_iter().flatten() {
        for (scenario, v) in runs.as_object().into_iter().flatten() {
            let ok = if scenario.starts_with("fanout") {
                positive(v, "deliveries_per_s")
            } else {
                match scenario.as_str() {
                    "latency" => positive(v, "samples") && positive(v, "p99_us"),
                    "idle" => v["points"]
                        .as_array()
                        .is_some_and(|p| !p.is_empty() && p.iter().all(|p| positive(p, "rss_bytes"))),
                    "joins" => positive(v, "joins_per_s"),
                    "isolation" => positive(v, "deliveries_per_s") && positive(v, "rss_max_bytes"),
                    _ => true,
                }
            };
            if ok {
                c.passed += 1;
            } else {
                c.failed.push(format!("{server} {scenario}: {}", v.get("error").unwrap_or(v)));
            }
        }
    }
    let py = &results["python"];
    match py["status"].as_str() {
        Some(s) if s.starts_with("pending") => c.skipped += 1,
        Some(_)
            if positive(&py["signalroom"], "signals_per_s")
                && positive(&py["websockets"], "signals_per_s") =>
        {
            c.passed += 1
        }
        None if py.is_null() => {}
        _ => c.failed.push(format!("python: {py}")),
    }
    c
}
