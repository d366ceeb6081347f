//! The servers under test, each a separate process (so its memory and CPU time can be read from
//! `/proc/<pid>`), started fresh for every scenario and killed after it. Several signalroom nodes
//! share their sessions through a `redis-server` of the scenario's own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::dialect::Dialect;

/// How long a server may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fresh `redis-server` may take to answer `PING`.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at starting `redis-server` on a free port (another process may take it meanwhile).
const REDIS_PORT_ATTEMPTS: usize = 5;
/// The REST secret of the signalroom servers we start.
pub(crate) const SECRET: &str = "bench-secret";

/// How to start the three servers.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub signalroom: PathBuf,
    pub raw: PathBuf,
    pub node: PathBuf,
    pub socketio: PathBuf,
    /// CPU the servers are pinned to (`taskset -c`), if pinning.
    pub server_cpu: Option<String>,
    /// Where server logs (stderr) go.
    pub logs: PathBuf,
}

/// How a scenario's server side is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server process, sessions in it.
    Single,
    /// This many signalroom nodes sharing a fresh `redis-server` (1: one node with the Redis broker).
    Redis(usize),
    /// This many signalroom nodes sharing a fresh Redis Cluster of three primaries (no replicas).
    RedisCluster(usize),
}

impl Topology {
    /// For labels and progress lines: `1 node`, `2 nodes + Redis`.
    pub(crate) fn describe(self) -> String {
        match self {
            Topology::Single => "1 node".to_owned(),
            Topology::Redis(1) => "1 node + Redis".to_owned(),
            Topology::Redis(n) => format!("{n} nodes + Redis"),
            Topology::RedisCluster(n) => format!("{n} nodes + a 3-primary Redis Cluster"),
        }
    }

    /// For log file names: empty, `-redis1`, `-redis2`.
    fn suffix(self) -> String {
        match self {
            Topology::Single => String::new(),
            Topology::Redis(n) => format!("-redis{n}"),
            Topology::RedisCluster(n) => format!("-rediscluster{n}"),
        }
    }
}

/// A running server.
pub(crate) struct ServerProc {
    pub dialect: Dialect,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub pid: u32,
    child: Child,
}

impl Launch {
    /// A command running `program`, pinned to the servers' CPU when pinning.
    fn command(&self, program: &std::path::Path) -> Command {
        match &self.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Starts the deployment under test, all on the servers' CPU: one server, or a fresh
    /// `redis-server` and signalroom nodes sharing it (`--broker`).
    pub(crate) async fn deploy(
        &self,
        dialect: Dialect,
        label: &str,
        topology: Topology,
        extra: &[&str],
    ) -> anyhow::Result<Deployment> {
        let nodes = match topology {
            Topology::Single => {
                let node = self.start(dialect, label, extra).await?;
                return Ok(Deployment { nodes: vec![node], redis: None, cluster: None });
            }
            Topology::Redis(nodes) | Topology::RedisCluster(nodes) => nodes.max(1),
        };
        if dialect != Dialect::OpenVidu {
            bail!("only signalroom shares sessions through Redis");
        }
        let label = format!("{label}{}", topology.suffix());
        let (redis, cluster) = match topology {
            Topology::RedisCluster(_) => (None, Some(self.start_redis_cluster(&label).await?)),
            _ => (Some(self.start_redis(&label).await?), None),
        };
        let broker = match (&redis, &cluster) {
            (Some(redis), _) => redis.url(),
            (_, Some(cluster)) => cluster.url(),
            _ => unreachable!("one of them"),
        };
        let mut args = vec!["--broker", broker.as_str()];
        args.extend_from_slice(extra);
        let mut started = Vec::with_capacity(nodes);
        for i in 0..nodes {
            started.push(self.start(dialect, &format!("{label}-node{i}"), &args).await?);
        }
        Ok(Deployment { nodes: started, redis, cluster })
    }

    /// Starts three `redis-server`s in cluster mode on free loopback ports (each with its bus port
    /// free), makes them a cluster of three primaries (`redis-cli --cluster create`), and waits
    /// until it is ok.
    async fn start_redis_cluster(&self, label: &str) -> anyhow::Result<RedisClusterProc> {
        std::fs::create_dir_all(&self.logs)?;
        let mut ports = Vec::new();
        let mut children = Vec::new();
        let mut pids = Vec::new();
        let mut seed = std::process::id() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        while ports.len() < 3 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let port = 20000 + (seed >> 33) as u16 % 20000;
            let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
            if !free(port) || !free(port + 10000) {
                continue;
            }
            let log_path = self.logs.join(format!("redis-{label}-{port}.log"));
            let log =
                std::fs::File::create(&log_path).with_context(|| format!("cannot create {log_path:?}"))?;
            let mut command = self.command(std::path::Path::new("redis-server"));
            let p = port.to_string();
            command
                .args(["--port", &p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{label}-{p}.conf"),
                ])
                .current_dir(&self.logs)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            let child = command
                .spawn()
                .context("cannot start redis-server (Debian: apt-get install redis-server)")?;
            pids.push(child.id().context("redis-server exited at once")?);
            children.push(child);
            let deadline = tokio::time::Instant::now() + REDIS_START_TIMEOUT;
            while !redis_ping(port).await {
                if tokio::time::Instant::now() > deadline {
                    bail!("redis-server on port {port} never answered PING (log: {log_path:?})");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ports.push(port);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .context("cannot run redis-cli (Debian: redis-tools, with redis-server)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(text.contains("All 16384 slots covered"), "redis-cli --cluster create: {text}");
        let deadline = tokio::time::Instant::now() + REDIS_START_TIMEOUT;
        for port in &ports {
            loop {
                let info = tokio::process::Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .await?;
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "the cluster never became ok");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(RedisClusterProc { ports, pids, _children: children })
    }

    /// Starts `redis-server` on a free loopback port without persistence (`--save "" --appendonly
    /// no`), and waits until it answers `PING`.
    async fn start_redis(&self, label: &str) -> anyhow::Result<RedisProc> {
        std::fs::create_dir_all(&self.logs)?;
        let log_path = self.logs.join(format!("redis-{label}.log"));
        for _ in 0..REDIS_PORT_ATTEMPTS {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let log =
                std::fs::File::create(&log_path).with_context(|| format!("cannot create {log_path:?}"))?;
            let mut command = self.command(std::path::Path::new("redis-server"));
            command
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .current_dir(&self.logs)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            let mut child = command
                .spawn()
                .context("cannot start redis-server (Debian: apt-get install redis-server)")?;
            let pid = child.id().context("redis-server exited at once")?;
            let deadline = tokio::time::Instant::now() + REDIS_START_TIMEOUT;
            loop {
                if redis_ping(port).await {
                    return Ok(RedisProc { port, pid, child });
                }
                if child.try_wait()?.is_some() {
                    break; // its port was taken: try another
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("redis-server on port {port} never answered PING (log: {log_path:?})");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        bail!("redis-server did not start in {REDIS_PORT_ATTEMPTS} attempts (log: {log_path:?})")
    }

    /// Starts the server speaking `dialect`; `extra` are extra signalroom flags.
    pub(crate) async fn start(
        &self,
        dialect: Dialect,
        label: &str,
        extra: &[&str],
    ) -> anyhow::Result<ServerProc> {
        let (program, args): (PathBuf, Vec<String>) = match dialect {
            Dialect::OpenVidu => {
                let mut args: Vec<String> =
                    ["serve", "--listen", "127.0.0.1:0", "--secret", SECRET].map(String::from).to_vec();
                args.extend(extra.iter().map(|s| s.to_string()));
                (self.signalroom.clone(), args)
            }
            Dialect::Raw => {
                let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into()];
                args.extend(extra.iter().map(|s| s.to_string()));
                (self.raw.clone(), args)
            }
            Dialect::SocketIo => (self.node.clone(), vec![self.socketio.display().to_string()]),
        };
        let mut command = self.command(&program);
        command.args(&args);
        std::fs::create_dir_all(&self.logs)?;
        let log_path = self.logs.join(format!("{}-{label}.log", dialect.server_name()));
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {log_path:?}"))?;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).kill_on_drop(true);
        let mut child = command.spawn().with_context(|| format!("cannot start {program:?}"))?;
        let pid = child.id().context("server exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some((_, url)) = line.split_once(" ready: ") {
                    return Ok::<_, anyhow::Error>(url.trim().to_owned());
                }
            }
            bail!("{} exited before it was ready (log: {log_path:?})", dialect.server_name())
        })
        .await
        .with_context(|| format!("{} did not print its ready line in time", dialect.server_name()))??;
        // Keep draining stdout so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr: SocketAddr = ready
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("cannot read the address in {ready:?}"))?;
        Ok(ServerProc { dialect, addr, url: ready.trim_end_matches('/').to_owned(), pid, child })
    }
}

impl ServerProc {
    /// Resident memory now, in bytes.
    pub(crate) fn rss(&self) -> anyhow::Result<u64> {
        crate::procstat::rss_bytes(self.pid)
    }

    /// Stops the server (SIGKILL: nothing to flush in a benchmark) and reaps it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `PING` answered by `+PONG` on `127.0.0.1:port`.
async fn redis_ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"PING\r\n").await?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await?;
        std::io::Result::Ok(&buf == b"+PONG\r\n")
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), attempt).await, Ok(Ok(true)))
}

/// A `redis-server` of one scenario.
pub(crate) struct RedisProc {
    port: u16,
    pub pid: u32,
    child: Child,
}

impl RedisProc {
    /// Bytes Redis has read from its clients and written to them so far (`INFO stats`:
    /// `total_net_input_bytes`, `total_net_output_bytes`).
    pub(crate) async fn net_bytes(&self) -> anyhow::Result<(u64, u64)> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        s.write_all(b"INFO stats\r\n").await?;
        let mut text = Vec::new();
        let mut buf = [0u8; 8192];
        // A bulk string: `$LEN\r\n` then LEN bytes and `\r\n`.
        loop {
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await??;
            anyhow::ensure!(n > 0, "redis closed the connection");
            text.extend_from_slice(&buf[..n]);
            let head_end = text.windows(2).position(|w| w == b"\r\n");
            if let Some(end) = head_end {
                let len: usize = std::str::from_utf8(&text[1..end])?.parse()?;
                if text.len() >= end + 2 + len {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&text);
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = text.lines().find_map(|l| l.strip_prefix(name)).context("no such INFO field")?;
            Ok(line.trim_start_matches(':').trim().parse()?)
        };
        Ok((field("total_net_input_bytes")?, field("total_net_output_bytes")?))
    }

    /// The URL the nodes are given (`--broker`).
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// A Redis Cluster of one scenario: three primaries, no replicas.
pub(crate) struct RedisClusterProc {
    ports: Vec<u16>,
    pids: Vec<u32>,
    _children: Vec<Child>,
}

impl RedisClusterProc {
    /// Commands each primary has run so far (`INFO stats`: `total_commands_processed`).
    pub(crate) async fn commands_per_primary(&self) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::with_capacity(self.ports.len());
        for port in &self.ports {
            let info = tokio::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "info", "stats"])
                .output()
                .await
                .context("cannot run redis-cli")?;
            let text = String::from_utf8_lossy(&info.stdout);
            let n = text
                .lines()
                .find_map(|l| l.strip_prefix("total_commands_processed:"))
                .context("no total_commands_processed in INFO stats")?
                .trim()
                .parse()?;
            out.push(n);
        }
        Ok(out)
    }

    /// The URL the nodes are given (`--broker`): the seeds, no replica to wait for.
    pub(crate) fn url(&self) -> String {
        let seeds: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis-cluster://{}?replicas=0", seeds.join(","))
    }
}

/// What one scenario runs against: one server, or signalroom nodes sharing a `redis-server` or a
/// Redis Cluster.
pub(crate) struct Deployment {
    /// The nodes; the first is where senders join.
    pub nodes: Vec<ServerProc>,
    pub redis: Option<RedisProc>,
    pub cluster: Option<RedisClusterProc>,
}

impl Deployment {
    /// One node on its own.
    pub(crate) fn single(node: ServerProc) -> Self {
        Self { nodes: vec![node], redis: None, cluster: None }
    }

    /// Every process of the deployment: the nodes, then Redis.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let cluster = self.cluster.iter().flat_map(|c| c.pids.iter().copied());
        self.nodes.iter().map(|n| n.pid).chain(self.redis.as_ref().map(|r| r.pid)).chain(cluster).collect()
    }

    /// Stops every process (SIGKILL) and reaps it.
    pub(crate) async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
        if let Some(mut redis) = self.redis {
            let _ = redis.child.kill().await;
        }
    }
}
