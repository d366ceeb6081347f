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
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if let Some(child) = Self::spawn_on(port, &dir.0) {
                return Self { port, child: Some(child), dir };
            }
        }
        panic!("redis-server did not start in {PORT_ATTEMPTS} attempts:\n{}", log_of(&dir.0, "redis.log"));
    }

    /// `None` when it exited before answering (its port was taken).
    fn spawn_on(port: u16, dir: &Path) -> Option<Child> {
        let port_arg = port.to_string();
        let args = ["--port", &port_arg, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
        let mut child = spawn("redis-server", &args, &[], dir, "redis.log");
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
                panic!("redis-server on port {port} never answered PING:\n{}", log_of(dir, "redis.log"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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
        let child = Self::spawn_on(self.port, &self.dir.0)
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
    pub redis: Option<RedisProcess>,
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
        let redis = RedisProcess::start();
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
        self.redis.as_mut().expect("a Redis (not in SIGNALROOM_TEST_CLUSTER_SELFCHECK)")
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
