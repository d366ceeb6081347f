//! Real `redis-server` and `haproxy` processes for the multi-node tests, and [`TestCluster`]:
//! in-process nodes sharing one Redis.
//!
//! Neither program is ever skipped: a missing one fails the test and says how to install it
//! (`scripts/setup-test-env` does). Each test gets processes of its own on free loopback ports,
//! killed when the helper is dropped.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use signalroom_server::Config;

use crate::support::TestServer;

/// How long a freshly spawned `redis-server` or `haproxy` has to start answering.
pub const PROCESS_START: Duration = Duration::from_secs(10);
/// Attempts at starting a process on a free port (another process may take it meanwhile).
const PORT_ATTEMPTS: usize = 5;
/// The HAProxy configuration of `deploy/`, used as it is: the tests run what people deploy.
pub const HAPROXY_CFG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/haproxy.cfg");

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// A scratch directory, removed by [`ScratchDir`]'s `Drop`.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("signalroom-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Spawns `program`, failing the test with `install_hint` when it is not installed.
fn spawn(program: &str, args: &[&str], envs: &[(&str, String)], dir: &Path, log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).expect("log file");
    let err = log.try_clone().expect("log file");
    match Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{program} is not installed, and the multi-node tests need it: run scripts/setup-test-env \
             (apt-get install redis-server haproxy)"
        ),
        Err(e) => panic!("cannot start {program}: {e}"),
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// `redis-server`'s arguments for port `port`: loopback only, no persistence, and `extra`.
fn redis_args<'a>(port: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    args.extend_from_slice(extra);
    args
}

/// A `redis-server` of the test's own: loopback, a free port, no persistence.
pub struct RedisProcess {
    port: u16,
    child: Option<Child>,
    dir: ScratchDir,
}

impl RedisProcess {
    /// Starts `redis-server` on a free port and waits until it answers `PING`.
    pub fn start() -> Self {
        let dir = ScratchDir::new("redis");
        let (port, child) = start_on_free_port("redis-server", false, &dir.0, "redis.log", |port| {
            Self::spawn_on(port, &dir.0)
        });
        Self { port, child: Some(child), dir }
    }

    fn spawn_on(port: u16, dir: &Path) -> Child {
        let port_arg = port.to_string();
        spawn("redis-server", &redis_args(&port_arg, &[]), &[], dir, "redis.log")
    }

    /// The URL to give the nodes (`Config::broker`, `--broker`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server; clients see connections refused until [`RedisProcess::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Starts it again on the same port, empty.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is running");
        let child = await_ping(
            Self::spawn_on(self.port, &self.dir.0),
            self.port,
            "redis-server",
            &self.dir.0,
            "redis.log",
        )
        .unwrap_or_else(|| panic!("redis-server cannot listen on {} again", self.port));
        self.child = Some(child);
    }

    /// Stops and starts again on the same port: every key is lost (no persistence).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `PING` answered by `+PONG` on `127.0.0.1:port`.
pub fn ping(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Runs one command whose reply is one line (`+OK`, `:1`, `$-1`, `-ERR …`) and returns that line.
pub fn redis_command(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1))
        .expect("redis answers");
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut command = format!("*{}\r\n", args.len());
    for a in args {
        command += &format!("${}\r\n{a}\r\n", a.len());
    }
    s.write_all(command.as_bytes()).expect("redis takes the command");
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !reply.ends_with(b"\r\n") {
        let n = s.read(&mut buf).expect("redis replies");
        assert!(n > 0, "redis closed the connection");
        reply.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&reply).trim_end().to_owned()
}

/// How many connections subscribe to `channel` (`PUBSUB NUMSUB`, read from the raw reply).
pub fn subscribers(port: u16, channel: &str) -> i64 {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1))
        .expect("redis answers");
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    s.write_all(format!("PUBSUB NUMSUB {channel}\r\n").as_bytes()).expect("redis takes the command");
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    // *2 $len channel :count
    while !reply.ends_with(b"\r\n") || reply.iter().filter(|b| **b == b':').count() == 0 {
        let n = s.read(&mut buf).expect("redis replies");
        assert!(n > 0, "redis closed the connection");
        reply.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&reply);
    let count = text.rsplit(':').next().expect("a count").trim();
    count.parse().unwrap_or_else(|_| panic!("PUBSUB NUMSUB reply {text:?}"))
}

/// HAProxy with `deploy/haproxy.cfg`: round robin over two nodes, each request and each
/// WebSocket on its own.
pub struct Balancer {
    port: u16,
    child: Option<Child>,
    dir: ScratchDir,
}

impl Balancer {
    /// Listens on `port` (chosen beforehand, so that the nodes' public URL can point here) in
    /// front of `nodes` (one or two; one is given twice), and waits until a request through it
    /// is answered.
    pub async fn start(port: u16, nodes: &[SocketAddr]) -> Self {
        assert!(matches!(nodes.len(), 1 | 2), "deploy/haproxy.cfg names two nodes");
        let dir = ScratchDir::new("haproxy");
        let envs = [
            ("LB_ADDR", format!("127.0.0.1:{port}")),
            ("NODE1_ADDR", nodes[0].to_string()),
            ("NODE2_ADDR", nodes[nodes.len() - 1].to_string()),
        ];
        let mut child = spawn("haproxy", &["-db", "-f", HAPROXY_CFG], &envs, &dir.0, "haproxy.log");
        let url = format!("http://127.0.0.1:{port}/openvidu/api/config/openvidu-publicurl");
        let deadline = Instant::now() + PROCESS_START;
        loop {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return Self { port, child: Some(child), dir };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("haproxy exited ({status}):\n{}", log_of(&dir.0, "haproxy.log"));
            }
            if Instant::now() > deadline {
                kill(&mut child);
                panic!("haproxy on port {port} never answered:\n{}", log_of(&dir.0, "haproxy.log"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }
}

/// Nodes in this process sharing one `redis-server`, each reached directly (no balancer), so a
/// test says which node does what.
///
/// With `SIGNALROOM_TEST_CLUSTER_SELFCHECK=1`, every "node" is one in-process server with the
/// in-process broker and no Redis: a check of the tests' own mechanics, not of a cluster (tests
/// that need Redis or a second process then fail).
pub struct TestCluster {
    pub nodes: Vec<TestServer>,
    pub redis: Option<SharedRedis>,
}

impl TestCluster {
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, |_| {}).await
    }

    /// `n` nodes, each with `tweak` applied after `broker` is set.
    pub async fn start_with(n: usize, tweak: impl Fn(&mut Config)) -> Self {
        if selfcheck() {
            return Self { nodes: vec![TestServer::single_with(|c| tweak(c)).await], redis: None };
        }
        let redis = SharedRedis::start();
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let url = redis.url();
            nodes.push(
                TestServer::single_with(|c| {
                    c.broker = Some(url);
                    tweak(c);
                })
                .await,
            );
        }
        Self { nodes, redis: Some(redis) }
    }

    /// Node `i` (in a self-check, the one server).
    pub fn node(&self, i: usize) -> &TestServer {
        &self.nodes[i % self.nodes.len()]
    }

    pub fn redis(&mut self) -> &mut RedisProcess {
        self.redis.as_mut().expect("a Redis (not in SIGNALROOM_TEST_CLUSTER_SELFCHECK)").one()
    }

    /// The Redis URL the nodes share.
    pub fn broker_url(&self) -> String {
        self.redis.as_ref().expect("a Redis (not in SIGNALROOM_TEST_CLUSTER_SELFCHECK)").url()
    }
}

/// `SIGNALROOM_TEST_CLUSTER_SELFCHECK=1`: see [`TestCluster`].
pub fn selfcheck() -> bool {
    std::env::var("SIGNALROOM_TEST_CLUSTER_SELFCHECK").is_ok_and(|v| v == "1")
}

// ---- Redis Cluster and Sentinel ----------------------------------------------------------------

/// Runs `redis-cli` with `args` and returns its output (failing the test if it cannot run).
pub fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(args).output().unwrap_or_else(|e| {
        panic!("redis-cli (Debian's redis-tools, installed with redis-server) cannot run: {e}")
    });
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A loopback port free right now whose cluster bus port (+10,000) is free too.
/// A port free right now for a server of the test's own, and its cluster-bus port (port + 10,000)
/// too when `bus`.
///
/// They lie below the kernel's ephemeral range, so no outgoing connection of this host (the tests
/// open thousands) can take one between the check and the server's bind; a port handed out
/// earlier in this process is never handed out again, so two servers starting at once cannot
/// meet on a port or a bus port.
pub fn free_listen_port(bus: bool) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const BUS: u16 = 10000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10000u16, ephemeral_low.saturating_sub(BUS).max(10000 + 1000));
    let uses = |p: u16, bus: bool| if bus { vec![p, p + BUS] } else { vec![p] };
    for _ in 0..200 {
        let port = low + rand_u16() % (high - low);
        let mut given = GIVEN.lock().unwrap();
        let wanted = uses(port, bus);
        // A port given out may yet be a cluster node's: keep its bus port clear either way.
        let clashes = given.iter().any(|&g| uses(g, true).iter().any(|t| wanted.contains(t)));
        let free = |p: &u16| TcpListener::bind(("127.0.0.1", *p)).is_ok();
        if !clashes && wanted.iter().all(free) {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port below the ephemeral range");
}

/// Starts a server with `spawn_on(port)` on a port of [`free_listen_port`] and waits until it
/// answers `PING`, trying other ports when it exits first (its port was taken after all).
fn start_on_free_port(
    what: &str,
    bus: bool,
    dir: &Path,
    log: &str,
    spawn_on: impl Fn(u16) -> Child,
) -> (u16, Child) {
    for _ in 0..PORT_ATTEMPTS {
        let port = free_listen_port(bus);
        if let Some(child) = await_ping(spawn_on(port), port, what, dir, log) {
            return (port, child);
        }
    }
    panic!("{what} did not start in {PORT_ATTEMPTS} attempts:\n{}", log_of(dir, log));
}

/// Waits until the server on `port` answers `PING`: `None` when it exits first (its port was
/// taken), a failed test when it does neither within [`PROCESS_START`].
fn await_ping(mut child: Child, port: u16, what: &str, dir: &Path, log: &str) -> Option<Child> {
    let deadline = Instant::now() + PROCESS_START;
    loop {
        if ping(port) {
            return Some(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if Instant::now() > deadline {
            kill(&mut child);
            panic!("{what} on port {port} never answered PING:\n{}", log_of(dir, log));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u16
}

/// Waits until `check` holds, or fails with `what` after `within`.
pub fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether every replica of the primary on `port` is online and has everything it has (its
/// replication offset is the primary's).
pub fn caught_up(port: u16) -> bool {
    let info = redis_cli(&["-p", &port.to_string(), "info", "replication"]);
    let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let (Some(offset), Some(n)) = (field("master_repl_offset:"), field("connected_slaves:")) else {
        return false;
    };
    let replicas: Vec<&str> =
        info.lines().filter(|l| l.starts_with("slave") && l.contains("state=")).collect();
    n != "0"
        && replicas.len().to_string() == n
        && replicas.iter().all(|r| r.contains("state=online") && r.contains(&format!(",offset={offset},")))
}

/// A Redis Cluster of the test's own: `primaries` primaries with `replicas` replicas each, on
/// loopback, no persistence, a one-second node timeout (failovers within seconds).
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: ScratchDir,
}

impl RedisCluster {
    pub fn start(primaries: usize, replicas: usize) -> Self {
        let dir = ScratchDir::new("redis-cluster");
        let n = primaries * (1 + replicas);
        let mut ports = Vec::with_capacity(n);
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            let (port, child) = Self::spawn_node(i, &dir.0);
            ports.push(port);
            children.push(Some(child));
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        let r = replicas.to_string();
        args.extend(["--cluster-replicas", &r, "--cluster-yes"]);
        let out = redis_cli(&args);
        assert!(out.contains("[OK] All 16384 slots covered"), "redis-cli --cluster create:\n{out}");
        let cluster = Self { ports, children, dir };
        for &port in &cluster.ports {
            wait_until(PROCESS_START, &format!("cluster node {port} is ok"), || {
                redis_cli(&["-p", &port.to_string(), "cluster", "info"]).contains("cluster_state:ok")
            });
        }
        if replicas > 0 {
            wait_until(PROCESS_START, "every replica in sync", || {
                cluster.ports.iter().all(|p| {
                    let info = redis_cli(&["-p", &p.to_string(), "info", "replication"]);
                    !info.contains("role:slave") || info.contains("master_link_status:up")
                })
            });
        }
        cluster
    }

    /// Starts node `i` on a free port pair and waits until it answers `PING`.
    fn spawn_node(i: usize, dir: &Path) -> (u16, Child) {
        let log = format!("redis-{i}.log");
        start_on_free_port(&format!("cluster node {i}"), true, dir, &log, |port| {
            let p = port.to_string();
            let conf = format!("nodes-{p}.conf");
            let cluster = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--cluster-node-timeout",
                "1000",
            ];
            let args = redis_args(&p, &cluster);
            spawn("redis-server", &args, &[], dir, &log)
        })
    }

    /// The broker URL (`replicas=N`: operations wait for that many replicas).
    pub fn url(&self, replicas: usize) -> String {
        let seeds: Vec<String> = self.ports.iter().take(3).map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis-cluster://{}?replicas={replicas}", seeds.join(","))
    }

    /// The port of the primary holding `key` now.
    pub fn primary_of(&self, key: &str) -> u16 {
        let slot: u16 = redis_cli(&["-p", &self.ports[0].to_string(), "cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot");
        self.primary_of_slot(slot)
    }

    pub fn primary_of_slot(&self, slot: u16) -> u16 {
        if let Some(&port) = self.alive().next() {
            let nodes = redis_cli(&["-p", &port.to_string(), "cluster", "nodes"]);
            for line in nodes.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                    continue;
                }
                let owns = f[8..].iter().any(|r| match r.split_once('-') {
                    Some((a, b)) => {
                        a.parse::<u16>().is_ok_and(|a| a <= slot) && b.parse::<u16>().is_ok_and(|b| slot <= b)
                    }
                    None => r.parse::<u16>().is_ok_and(|s| s == slot),
                });
                if owns {
                    let addr = f[1].split('@').next().unwrap_or_default();
                    return addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
                }
            }
        }
        panic!("no primary holds slot {slot}");
    }

    fn alive(&self) -> impl Iterator<Item = &u16> {
        self.ports.iter().zip(&self.children).filter(|(_, c)| c.is_some()).map(|(p, _)| p)
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node of this cluster");
        if let Some(mut child) = self.children[i].take() {
            kill(&mut child);
        }
    }

    /// How many keys each live primary holds.
    pub fn keys_per_primary(&self) -> Vec<(u16, u64)> {
        self.alive()
            .filter(|p| redis_cli(&["-p", &p.to_string(), "info", "replication"]).contains("role:master"))
            .map(|p| {
                let n = redis_cli(&["-p", &p.to_string(), "dbsize"]).trim().parse().unwrap_or(0);
                (*p, n)
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            kill(child);
        }
    }
}

/// A primary, one replica and three sentinels watching them (quorum 2, one second to call the
/// primary down), on loopback, no persistence.
pub struct RedisSentinel {
    pub primary: u16,
    pub replica: u16,
    pub sentinels: Vec<u16>,
    children: Vec<(u16, Option<Child>)>,
    dir: ScratchDir,
}

pub const SENTINEL_MASTER: &str = "signalroom";

impl RedisSentinel {
    pub fn start() -> Self {
        let dir = ScratchDir::new("redis-sentinel");
        let mut children = Vec::new();
        let data = |port: u16, extra: &[&str], dir: &Path, log: &str| {
            let p = port.to_string();
            spawn("redis-server", &redis_args(&p, extra), &[], dir, log)
        };
        let (primary, child) = start_on_free_port("the primary", false, &dir.0, "primary.log", |port| {
            data(port, &[], &dir.0, "primary.log")
        });
        children.push((primary, Some(child)));
        let of = primary.to_string();
        let (replica, child) = start_on_free_port("the replica", false, &dir.0, "replica.log", |port| {
            data(port, &["--replicaof", "127.0.0.1", &of], &dir.0, "replica.log")
        });
        children.push((replica, Some(child)));
        wait_until(PROCESS_START, "the replica is in sync", || {
            redis_cli(&["-p", &replica.to_string(), "info", "replication"]).contains("master_link_status:up")
        });
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let log = format!("sentinel-{i}.log");
            let (port, child) = start_on_free_port(&format!("sentinel {i}"), false, &dir.0, &log, |port| {
                let conf = dir.0.join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary} 2\n\
                         sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                         sentinel failover-timeout {SENTINEL_MASTER} 5000\n"
                    ),
                )
                .expect("sentinel.conf");
                let conf = conf.to_string_lossy().into_owned();
                spawn("redis-server", &[&conf, "--sentinel"], &[], &dir.0, &log)
            });
            children.push((port, Some(child)));
            sentinels.push(port);
        }
        for &port in &sentinels {
            wait_until(PROCESS_START, "a sentinel knows the replica and the other sentinels", || {
                let out = redis_cli(&["-p", &port.to_string(), "sentinel", "master", SENTINEL_MASTER]);
                let field = |name: &str| {
                    let mut lines = out.lines();
                    while let Some(l) = lines.next() {
                        if l.trim() == name {
                            return lines.next().unwrap_or("").trim().to_owned();
                        }
                    }
                    String::new()
                };
                field("num-slaves") == "1" && field("num-other-sentinels") == "2"
            });
        }
        Self { primary, replica, sentinels, children, dir }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    /// SIGKILLs the primary.
    pub fn kill_primary(&mut self) {
        let primary = self.primary;
        if let Some((_, child)) = self.children.iter_mut().find(|(p, _)| *p == primary) {
            if let Some(mut c) = child.take() {
                kill(&mut c);
            }
        }
    }

    /// Freezes the replica (SIGSTOP) or lets it go on (SIGCONT): frozen, it stays connected to
    /// the primary but acknowledges nothing, as on a host too busy to run it.
    pub fn freeze_replica(&self, frozen: bool) {
        let replica = self.replica;
        let (_, child) = self.children.iter().find(|(p, _)| *p == replica).expect("the replica");
        let pid = child.as_ref().expect("the replica runs").id().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// The port of the primary the sentinels name now.
    pub fn named_primary(&self) -> Option<u16> {
        let out = redis_cli(&[
            "-p",
            &self.sentinels[0].to_string(),
            "sentinel",
            "get-master-addr-by-name",
            SENTINEL_MASTER,
        ]);
        out.lines().nth(1)?.trim().parse().ok()
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Some(c) = child.as_mut() {
                kill(c);
            }
        }
    }
}

/// The Redis a multi-node test shares: one `redis-server`, or, with
/// `SIGNALROOM_TEST_REDIS=cluster`, a 3-primary Redis Cluster (the same tests, run again).
pub enum SharedRedis {
    One(RedisProcess),
    Cluster(RedisCluster),
}

impl SharedRedis {
    pub fn start() -> Self {
        if std::env::var("SIGNALROOM_TEST_REDIS").is_ok_and(|v| v == "cluster") {
            SharedRedis::Cluster(RedisCluster::start(3, 0))
        } else {
            SharedRedis::One(RedisProcess::start())
        }
    }

    pub fn url(&self) -> String {
        match self {
            SharedRedis::One(r) => r.url(),
            SharedRedis::Cluster(c) => c.url(0),
        }
    }

    /// The one `redis-server` (a test that restarts it, or reads its subscriptions).
    pub fn one(&mut self) -> &mut RedisProcess {
        match self {
            SharedRedis::One(r) => r,
            SharedRedis::Cluster(_) => {
                panic!("this test needs one redis-server, not SIGNALROOM_TEST_REDIS=cluster")
            }
        }
    }
}
