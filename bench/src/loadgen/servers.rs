//! The servers under test, each a separate process (so its memory and CPU time can be read from
//! `/proc/<pid>`), started fresh for every scenario and killed after it.

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
            Dialect::Raw => (self.raw.clone(), vec!["--listen".into(), "127.0.0.1:0".into()]),
            Dialect::SocketIo => (self.node.clone(), vec![self.socketio.display().to_string()]),
        };
        let mut command = match &self.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu).arg(&program).args(&args);
                c
            }
            None => {
                let mut c = Command::new(&program);
                c.args(&args);
                c
            }
        };
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
