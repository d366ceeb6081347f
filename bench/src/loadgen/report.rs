//! The table and the targets, computed from the results JSON (so a stored run can be re-read).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// One target of the issue, checked on one run's ratios.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    pub name: Cow<'static, str>,
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

/// A figure of the two-node scenario: `run` is e.g. `two_node_fanout`.
fn twonode(results: &Value, run: &str, key: &str) -> Option<f64> {
    results["twonode"][run][key].as_f64()
}

/// Two nodes' fan-out deliveries/s (every receiver, half of them across nodes) ÷ one node's.
fn twonode_deliveries_ratio(results: &Value) -> Option<f64> {
    ratio(
        twonode(results, "two_node_fanout", "deliveries_per_s"),
        twonode(results, "one_node_fanout", "deliveries_per_s"),
    )
}

/// p99 latency of the receivers on the other node than the sender's − one node's p99, in µs.
fn twonode_p99_added(results: &Value) -> Option<f64> {
    Some(
        twonode(results, "two_node_latency", "cross_node_p99_us")?
            - twonode(results, "one_node_latency", "p99_us")?,
    )
}

/// Fan-out ÷ raw goals by receiver count: small rooms (N ≤ 10, a call of two, a class of ten),
/// N = 100, and larger rooms.
fn fanout_goal(n: u64) -> (&'static str, &'static str, f64) {
    match n {
        0..=2 => ("fan-out deliveries/s ÷ raw, N = 2", "≥ 0.85", 0.85),
        3..=10 => ("fan-out deliveries/s ÷ raw, N = 10", "≥ 0.85", 0.85),
        11..=100 => ("fan-out deliveries/s ÷ raw, N = 100", "≥ 0.85", 0.85),
        _ => ("fan-out deliveries/s ÷ raw, N = 1,000", "≥ 0.9", 0.9),
    }
}

/// The receiver counts of the fan-out scenario, in the plan's order.
fn fanout_sizes(results: &Value) -> Vec<u64> {
    results["plan"]["fanout_receivers"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect()
}

/// The big session must fill within this many seconds.
const BIG_FILL_S: f64 = 15.0;

/// What two nodes may add to one node's p99 at fixed load, in µs.
const TWONODE_P99_ALLOWANCE_US: f64 = 2000.0;

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
    for n in fanout_sizes(results) {
        let (name, goal, min) = fanout_goal(n);
        let key = format!("fanout_{n}");
        let m = ratio(
            num(results, "signalroom", &[&key, "deliveries_per_s"]),
            num(results, "raw", &[&key, "deliveries_per_s"]),
        );
        out.push(Target { name: name.into(), goal, measured: m, pass: m.map(|x| x >= min) });
    }
    for (variant, what) in [
        ("fanout_by_hand", "raw by hand (the leanest broadcast; a reference)"),
        ("fanout_protocol", "raw writing the same bytes (OpenVidu's answer, notifications; a reference)"),
    ] {
        for n in fanout_sizes(results) {
            let m = ratio(
                num(results, "signalroom", &[&format!("fanout_{n}"), "deliveries_per_s"]),
                num(results, "raw", &[&format!("{variant}_{n}"), "deliveries_per_s"]),
            );
            let size = fanout_goal(n).0.rsplit(", ").next().unwrap_or_default();
            out.push(Target {
                name: format!("fan-out deliveries/s ÷ {what}, {size}").into(),
                goal: "—",
                measured: m,
                pass: None,
            });
        }
    }
    let m = ratio(fan("signalroom"), fan("socketio"));
    out.push(Target {
        name: Cow::Borrowed("fan-out deliveries/s at the largest N ÷ Socket.IO"),
        goal: "≥ 15",
        measured: m,
        pass: check(m, |x| x >= 15.0),
    });
    let p99 = |s: &str| num(results, s, &["latency", "p99_us"]);
    let m = ratio(p99("signalroom"), p99("raw"));
    out.push(Target {
        name: Cow::Borrowed("p99 latency at fixed load ÷ raw"),
        goal: "≤ 1.0",
        measured: m,
        pass: check(m, |x| x <= 1.0),
    });
    let m = ratio(idle_per(results, "signalroom"), idle_per(results, "raw"));
    out.push(Target {
        name: Cow::Borrowed("RSS per idle participant (largest count) ÷ raw"),
        goal: "≤ 1.5",
        measured: m,
        pass: check(m, |x| x <= 1.5),
    });
    let joins = |s: &str| num(results, s, &["joins", "joins_per_s"]);
    let m = ratio(joins("signalroom"), num(results, "raw", &["joins_answered", "joins_per_s"]));
    out.push(Target {
        name: Cow::Borrowed(
            "joins/s into sessions of 1,000 ÷ raw writing the same bytes (answer, notifications)",
        ),
        goal: "≥ 0.8",
        measured: m,
        pass: check(m, |x| x >= 0.8),
    });
    let m = ratio(joins("signalroom"), joins("raw"));
    out.push(Target {
        name: Cow::Borrowed(
            "joins/s into sessions of 1,000 ÷ raw's bare upgrade (different work: a reference)",
        ),
        goal: "—",
        measured: m,
        pass: None,
    });
    let m = results["python"]["ratio"].as_f64();
    out.push(Target {
        name: Cow::Borrowed("Python handler signals/s ÷ pure-Python participant"),
        goal: "≥ 6",
        measured: m,
        pass: check(m, |x| x >= 6.0),
    });
    let small = &results["smallrooms"];
    let m =
        ratio(small["signalroom"]["deliveries_per_s"].as_f64(), small["raw"]["deliveries_per_s"].as_f64());
    out.push(Target {
        name: Cow::Borrowed("small rooms (2,000 × 5) at raw's half-busy rate: deliveries/s ÷ raw"),
        goal: "— (reported)",
        measured: m,
        pass: None,
    });
    let m = ratio(small["signalroom"]["p99_us"].as_f64(), small["raw"]["p99_us"].as_f64());
    out.push(Target {
        name: Cow::Borrowed("small rooms: p99 delivery latency ÷ raw"),
        goal: "— (reported)",
        measured: m,
        pass: None,
    });
    let m = ratio(
        small["signalroom"]["cpu_ns_per_delivery"].as_f64(),
        small["raw"]["cpu_ns_per_delivery"].as_f64(),
    );
    out.push(Target {
        name: Cow::Borrowed("small rooms: server CPU per delivery ÷ raw"),
        goal: "— (reported)",
        measured: m,
        pass: None,
    });
    let bots = &results["bots"];
    let m = bots["signalroom"]["bytes_per_session"].as_f64().map(|b| b / 1024.0);
    out.push(Target {
        name: Cow::Borrowed("one Python process in 1,000 sessions: RSS KiB per session"),
        goal: "≤ 50 KB",
        measured: m,
        pass: check(m, |x| x * 1024.0 <= 50_000.0),
    });
    let m = bots["ratio"].as_f64();
    out.push(Target {
        name: Cow::Borrowed(
            "one Python process in 1,000 sessions: handled signals/s ÷ pure-Python `websockets`",
        ),
        goal: "≥ 5",
        measured: m,
        pass: check(m, |x| x >= 5.0),
    });
    let m = bots["signalroom"]["rate_lag_max_ms"].as_f64();
    out.push(Target {
        name: Cow::Borrowed("one Python process in 1,000 sessions: event loop lag at the fixed load, max ms"),
        goal: "≤ 10",
        measured: m,
        pass: check(m, |x| x <= 10.0),
    });
    let m = bots["signalroom"]["rate_lag_cpu_max_ms"].as_f64();
    out.push(Target {
        name: Cow::Borrowed("… the loop's own work in one probe's wait, max ms (its thread's CPU time: without the core lent to other processes)"),
        goal: "≤ 10",
        measured: m,
        pass: check(m, |x| x <= 10.0),
    });
    let m = results["rpc"]["rate_ratio"].as_f64();
    out.push(Target {
        name: Cow::Borrowed("Python request/reply round trips/s ÷ the same by hand with two signals"),
        goal: "≥ 0.9",
        measured: m,
        pass: check(m, |x| x >= 0.9),
    });
    let m = isolation_share(results, "signalroom");
    out.push(Target {
        name: Cow::Borrowed("isolation: others' throughput with a stalled participant ÷ without"),
        goal: "> 0.9",
        measured: m,
        pass: check(m, |x| x > 0.9),
    });
    let m = isolation_growth(results, "signalroom").map(|b| b / 1048576.0);
    out.push(Target {
        name: Cow::Borrowed("isolation: server RSS growth while a participant stalls (MiB)"),
        goal: "bounded (< 32 MiB)",
        measured: m,
        pass: isolation_growth(results, "signalroom").map(|b| b < BOUNDED_GROWTH),
    });
    let big = |k: &str| num(results, "signalroom", &["bigsession", k]);
    let m = big("fill_seconds");
    out.push(Target {
        name: Cow::Borrowed("big session: seconds to fill"),
        goal: "≤ 15",
        measured: m,
        pass: check(m, |x| x <= BIG_FILL_S),
    });
    let m = ratio(big("filled_bytes_per_participant"), idle_per(results, "signalroom"));
    out.push(Target {
        name: Cow::Borrowed("big session: RSS per participant once filled ÷ idle per participant (3)"),
        goal: "≤ 2",
        measured: m,
        pass: check(m, |x| x <= 2.0),
    });
    let m = big("closed");
    out.push(Target {
        name: Cow::Borrowed("big session: participants evicted while reading as fast as they can"),
        goal: "0",
        measured: m,
        pass: check(m, |x| x == 0.0),
    });
    let m = twonode_deliveries_ratio(results);
    out.push(Target {
        name: Cow::Borrowed("two nodes + Redis: fan-out deliveries/s ÷ one node"),
        goal: "≥ 0.5",
        measured: m,
        pass: check(m, |x| x >= 0.5),
    });
    let m = ratio(
        twonode(results, "two_node_cluster_fanout", "deliveries_per_s"),
        twonode(results, "two_node_fanout", "deliveries_per_s"),
    );
    out.push(Target {
        name: Cow::Borrowed(
            "two nodes over a 3-primary Redis Cluster: fan-out deliveries/s ÷ over one Redis",
        ),
        goal: "≥ 0.8",
        measured: m,
        pass: check(m, |x| x >= 0.8),
    });
    let m = twonode_p99_added(results).map(|us| us / 1000.0);
    out.push(Target {
        name: Cow::Borrowed("two nodes + Redis: p99 across nodes at fixed load − one node's p99 (ms)"),
        goal: "≤ 2",
        measured: m,
        pass: twonode_p99_added(results).map(|us| us <= TWONODE_P99_ALLOWANCE_US),
    });
    let so = |key: &str| results["scaleout"][key].as_f64();
    let m = ratio(so("deliveries"), so("expected_deliveries"));
    out.push(Target {
        name: Cow::Borrowed(
            "scale-out (four nodes, 3-primary Redis Cluster): deliveries made ÷ signals × session size",
        ),
        goal: "1",
        measured: m,
        pass: check(m, |x| x == 1.0),
    });
    let m = so("shard_balance");
    out.push(Target {
        name: Cow::Borrowed("scale-out: Redis commands on the least busy shard ÷ the busiest"),
        goal: "≥ 0.5",
        measured: m,
        pass: check(m, |x| x >= 0.5),
    });
    let bc = |key: &str| results["bigcluster"][key].as_f64();
    let one = |key: &str| num(results, "signalroom", &["bigsession", key]);
    let m = bc("refused");
    out.push(Target {
        name: Cow::Borrowed("big session over two nodes + Redis: joins refused"),
        goal: "0",
        measured: m,
        pass: check(m, |x| x == 0.0),
    });
    let m = ratio(bc("fill_seconds"), one("fill_seconds"));
    out.push(Target {
        name: Cow::Borrowed("big session over two nodes + Redis: time to fill ÷ one node's"),
        goal: "≤ 2",
        measured: m,
        pass: check(m, |x| x <= 2.0),
    });
    let m = ratio(bc("redis_in_bytes_per_join"), bc("redis_in_bytes_per_join_small"));
    out.push(Target {
        name: Cow::Borrowed(
            "big session over two nodes + Redis: bytes written to Redis per join ÷ in a tenth the size",
        ),
        goal: "≤ 1.5",
        measured: m,
        pass: check(m, |x| x <= 1.5),
    });
    let m = ratio(bc("idle_bytes_per_participant"), one("idle_bytes_per_participant"));
    out.push(Target {
        name: Cow::Borrowed(
            "big session over two nodes + Redis: RSS per participant (both nodes, settled) ÷ one node's",
        ),
        goal: "≤ 1.5",
        measured: m,
        pass: check(m, |x| x <= 1.5),
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
        // The raw column: raw-server's other modes (`--by-hand`, `--protocol`).
        for (variant, what) in [
            ("fanout_by_hand", "raw by hand (the leanest broadcast)"),
            ("fanout_protocol", "raw writing OpenVidu's answer and notification"),
        ] {
            let other = format!("{variant}_{n}");
            if results["servers"]["raw"][&other].is_null() {
                continue;
            }
            row(
                &format!("1. fan-out, N = {n}, {what}"),
                "deliveries/s",
                &|s| match s {
                    "raw" => num(results, "raw", &[&other, "deliveries_per_s"]),
                    _ => num(results, s, &[&key, "deliveries_per_s"]),
                },
                &fmt_rate,
            );
        }
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
        &format!(
            "4. joins into sessions of {} ({} concurrent)",
            plan["join_session_size"], plan["join_concurrency"]
        ),
        "joins/s (raw: bare upgrade)",
        &|s| num(results, s, &["joins", "joins_per_s"]),
        &fmt_rate,
    );
    row(
        &format!(
            "4. joins into sessions of {} ({} concurrent)",
            plan["join_session_size"], plan["join_concurrency"]
        ),
        "joins/s (raw: writing the same bytes)",
        &|s| match s {
            "raw" => num(results, "raw", &["joins_answered", "joins_per_s"]),
            "signalroom" => num(results, s, &["joins", "joins_per_s"]),
            _ => None,
        },
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
    let big = format!("8. big session, {} participants", plan["big_participants"]);
    let b = |s: &str, k: &str| num(results, s, &["bigsession", k]);
    row(&big, "seconds to fill", &|s| b(s, "fill_seconds"), &|v| fmt_num(v, 1));
    row(&big, "… until everyone was told", &|s| b(s, "told_seconds"), &|v| fmt_num(v, 1));
    row(&big, "joins/s", &|s| b(s, "joins_per_s"), &fmt_rate);
    row(&big, "GB sent", &|s| b(s, "bytes_sent").map(|v| v / 1e9), &|v| fmt_num(v, 2));
    row(
        &big,
        "RSS KiB per participant, filled",
        &|s| b(s, "filled_bytes_per_participant").map(|v| v / 1024.0),
        &|v| fmt_num(v, 1),
    );
    row(&big, "… after idle", &|s| b(s, "idle_bytes_per_participant").map(|v| v / 1024.0), &|v| {
        fmt_num(v, 1)
    });
    row(&big, "sockets closed by the server", &|s| b(s, "closed"), &|v| fmt_num(v, 0));

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
    let small = &results["smallrooms"];
    if let Some(err) = small.get("error") {
        let _ = writeln!(t, "\n14. small rooms: failed: {err}");
    } else if !small.is_null() {
        let f = |side: &str, key: &str| small[side][key].as_f64();
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "| 14. {} rooms of {}, {} signals/s in all (raw's core half busy) | signalroom | raw | ÷ raw |",
            small["sessions"],
            small["size"],
            fmt_rate(small["signals_per_s"].as_f64())
        );
        let _ = writeln!(t, "|---|---:|---:|---:|");
        for (label, key, decimals) in [
            ("deliveries/s", "deliveries_per_s", 0),
            ("p50 µs", "p50_us", 0),
            ("p99 µs", "p99_us", 0),
            ("p99.9 µs", "p999_us", 0),
            ("server cores", "server_cpu", 2),
            ("server CPU ns per delivery", "cpu_ns_per_delivery", 0),
        ] {
            let (a, b) = (f("signalroom", key), f("raw", key));
            let _ = writeln!(
                t,
                "| {label} | {} | {} | {} |",
                fmt_num(a, decimals),
                fmt_num(b, decimals),
                fmt_ratio(ratio(a, b))
            );
        }
    }
    let bots = &results["bots"];
    if let Some(err) = bots.get("error") {
        let _ = writeln!(t, "\n13. one Python process in many sessions: failed: {err}");
    } else if bots["status"].as_str() == Some("ok") {
        let f = |side: &str, key: &str| bots[side][key].as_f64();
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "| 13. one Python process, {} sessions of {} | `signalroom` | `websockets` | ratio |",
            bots["signalroom"]["sessions"], results["plan"]["bots_size"]
        );
        let _ = writeln!(t, "|---|---:|---:|---:|");
        for (label, key, scale, decimals) in [
            ("RSS KiB per session, joined", "bytes_per_session", 1.0 / 1024.0, 1),
            ("RSS KiB per session, after the load", "bytes_per_session_after", 1.0 / 1024.0, 1),
            ("handled signals/s, saturated", "handled_per_s", 1.0, 0),
            ("p50 µs signal → reply at the fixed load", "rate_p50_us", 1.0, 0),
            ("p99 µs signal → reply at the fixed load", "rate_p99_us", 1.0, 0),
            ("loop lag max ms at the fixed load", "rate_lag_max_ms", 1.0, 1),
            ("… the loop's own work in one wait, max ms", "rate_lag_cpu_max_ms", 1.0, 1),
            ("longest GC collection ms at the fixed load", "rate_gc_max_ms", 1.0, 1),
            ("loop lag max ms, saturated", "saturated_lag_max_ms", 1.0, 1),
            ("CPU µs per handled signal, saturated: the Python process", "python_us_per_handled", 1.0, 1),
            ("… the server", "server_us_per_handled", 1.0, 1),
            ("… the load generator (on the Python process's core)", "loadgen_us_per_handled", 1.0, 1),
        ] {
            let (a, b) = (f("signalroom", key).map(|v| v * scale), f("websockets", key).map(|v| v * scale));
            let _ = writeln!(
                t,
                "| {label} | {} | {} | {} |",
                fmt_num(a, decimals),
                fmt_num(b, decimals),
                fmt_ratio(ratio(a, b))
            );
        }
    }
    let rpc = &results["rpc"];
    if let Some(err) = rpc.get("error") {
        let _ = writeln!(t, "\n10. Python requests and streams: failed: {err}");
    } else if rpc["status"].as_str() == Some("ok") {
        let f = |side: &str, key: &str| rpc[side][key].as_f64();
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "| 10. two Python participants | `request` / `send_text` | by hand / raw signals | ratio |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|");
        let _ = writeln!(
            t,
            "| round trips/s | {} | {} | {} |",
            fmt_rate(f("requests", "round_trips_per_s")),
            fmt_rate(f("by_hand", "round_trips_per_s")),
            fmt_ratio(rpc["rate_ratio"].as_f64())
        );
        let _ = writeln!(
            t,
            "| p99 µs | {} | {} | {} |",
            fmt_num(f("requests", "p99_us"), 0),
            fmt_num(f("by_hand", "p99_us"), 0),
            fmt_ratio(rpc["p99_ratio"].as_f64())
        );
        let _ = writeln!(
            t,
            "| {} MB in one stream, MB/s | {} | {} | {} |",
            fmt_num(rpc["stream_bytes"].as_f64().map(|b| b / 1e6), 0),
            fmt_num(rpc["send_text_mb_per_s"].as_f64(), 1),
            fmt_num(rpc["raw_signals_mb_per_s"].as_f64(), 1),
            fmt_ratio(rpc["stream_ratio"].as_f64())
        );
    }
    let tn = &results["twonode"];
    if let Some(err) = tn.get("error") {
        let _ = writeln!(t, "\n7. two nodes + Redis: failed: {err}");
    } else if !tn.is_null() {
        let f = |run: &str, key: &str| twonode(results, run, key);
        let _ = writeln!(t);
        let _ =
            writeln!(t, "| 7. signalroom, two nodes + Redis vs one node | one node | two nodes | ratio |");
        let _ = writeln!(t, "|---|---:|---:|---:|");
        let n = tn["two_node_fanout"]["receivers"].as_u64().unwrap_or(0);
        let (one, two) = (f("one_node_fanout", "deliveries_per_s"), f("two_node_fanout", "deliveries_per_s"));
        let _ = writeln!(
            t,
            "| fan-out N = {n}, deliveries/s | {} | {} | {} |",
            fmt_rate(one),
            fmt_rate(two),
            fmt_ratio(ratio(two, one))
        );
        let cluster = f("two_node_cluster_fanout", "deliveries_per_s");
        let _ = writeln!(
            t,
            "| … two nodes over a 3-primary Redis Cluster (ratio ÷ over one Redis) | | {} | {} |",
            fmt_rate(cluster),
            fmt_ratio(ratio(cluster, two))
        );
        let redis = f("one_node_redis_fanout", "deliveries_per_s");
        let _ = writeln!(
            t,
            "| … one node with the Redis broker (reference) | {} | | {} |",
            fmt_rate(redis),
            fmt_ratio(ratio(redis, one))
        );
        let _ = writeln!(
            t,
            "| … of which to the other node | — | {} | |",
            fmt_rate(f("two_node_fanout", "cross_node_deliveries_per_s"))
        );
        let (one, two) = (f("one_node_fanout", "server_cpu"), f("two_node_fanout", "server_cpu"));
        let _ = writeln!(t, "| … server side CPU, cores | {} | {} | |", fmt_num(one, 2), fmt_num(two, 2));
        let load = fmt_rate(f("two_node_latency", "deliveries_per_s"));
        for (metric, key) in [("p50 µs", "p50"), ("p99 µs", "p99"), ("p99.9 µs", "p999")] {
            let one = f("one_node_latency", &format!("{key}_us"));
            let two = f("two_node_latency", &format!("{key}_us"));
            let far = f("two_node_latency", &format!("cross_node_{key}_us"));
            let _ = writeln!(
                t,
                "| latency at {load} deliveries/s, {metric} (across nodes) | {} | {} ({}) | {} |",
                fmt_num(one, 0),
                fmt_num(two, 0),
                fmt_num(far, 0),
                fmt_ratio(ratio(far, one))
            );
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "| target | goal | measured | |");
    let _ = writeln!(t, "|---|---|---:|---|");
    for g in targets {
        let mark = match g.pass {
            Some(true) => "met",
            Some(false) => "**missed**",
            None if g.goal.starts_with('—') && g.measured.is_some() => "reported",
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
    let small = &results["smallrooms"];
    if let Some(err) = small.get("error") {
        c.failed.push(format!("smallrooms: {err}"));
    } else if !small.is_null() {
        let ok = |side: &str| small[side].is_null() || positive(&small[side], "deliveries_per_s");
        if ok("raw") && ok("signalroom") {
            c.passed += 1;
        } else {
            c.failed.push(format!("smallrooms: {small}"));
        }
    }
    let bots = &results["bots"];
    match bots["status"].as_str() {
        Some(s) if s.starts_with("pending") => c.skipped += 1,
        Some(_)
            if positive(&bots["signalroom"], "handled_per_s")
                && positive(&bots["websockets"], "handled_per_s") =>
        {
            c.passed += 1
        }
        None if bots.is_null() => {}
        _ => c.failed.push(format!("bots: {bots}")),
    }
    let rpc = &results["rpc"];
    match rpc["status"].as_str() {
        Some(s) if s.starts_with("pending") => c.skipped += 1,
        Some(_)
            if positive(&rpc["requests"], "round_trips_per_s")
                && positive(&rpc["by_hand"], "round_trips_per_s")
                && positive(rpc, "send_text_mb_per_s") =>
        {
            c.passed += 1
        }
        None if rpc.is_null() => {}
        _ => c.failed.push(format!("rpc: {rpc}")),
    }
    let tn = &results["twonode"];
    if !tn.is_null() {
        let fan = |run: &str| positive(&tn[run], "deliveries_per_s");
        let lat = |run: &str| positive(&tn[run], "samples") && positive(&tn[run], "p99_us");
        if fan("one_node_fanout")
            && fan("one_node_redis_fanout")
            && fan("two_node_fanout")
            && positive(&tn["two_node_fanout"], "cross_node_deliveries_per_s")
            && lat("one_node_latency")
            && lat("two_node_latency")
            && positive(&tn["two_node_latency"], "cross_node_p99_us")
        {
            c.passed += 1;
        } else {
            c.failed.push(format!("twonode: {}", tn.get("error").unwrap_or(tn)));
        }
    }
    let bc = &results["bigcluster"];
    if !bc.is_null() {
        if positive(bc, "fill_seconds") && positive(bc, "redis_in_bytes_per_join") {
            c.passed += 1;
        } else {
            c.failed.push(format!("bigcluster: {}", bc.get("error").unwrap_or(bc)));
        }
    }
    c
}
