//! `signalroom serve`: the OpenVidu 2.32-compatible signalling server.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use signalroom_server::{Config, DEFAULT_SECRET, DEFAULT_SEND_QUEUE, Server, TlsConfig};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "signalroom", version, about = "OpenVidu 2.32-compatible signalling server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4443")]
    listen: SocketAddr,
    /// URL clients reach this server at; tokens point there (http → ws://, https → wss://).
    /// Default: derived from the listening address.
    #[arg(long)]
    public_url: Option<url::Url>,
    /// Secret of the REST API (HTTP Basic, user OPENVIDUAPP).
    #[arg(long, env = "OPENVIDU_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// TLS certificate chain (PEM); needs --tls-key. Tokens become wss://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Maximum size of a signal's data, in bytes.
    #[arg(long, default_value_t = signalroom_core::limits::DEFAULT_MAX_SIGNAL_DATA_BYTES)]
    max_signal_bytes: usize,
    /// Outbound frames queued per participant before it is disconnected as too slow.
    #[arg(long, default_value_t = DEFAULT_SEND_QUEUE)]
    send_queue: usize,
    /// Seconds a participant whose socket dropped is kept for a reconnection.
    #[arg(long, default_value_t = signalroom_core::limits::RECONNECTION_GRACE_SECS)]
    reconnection_grace_secs: u64,
    /// Seconds between garbage collections of never-joined sessions (0 disables).
    #[arg(long, default_value_t = 900)]
    session_gc_interval_secs: u64,
    /// Age in seconds after which a never-joined session is garbage-collected.
    #[arg(long, default_value_t = 3600)]
    session_gc_threshold_secs: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let Command::Serve(args) = cli.command;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.max_signal_bytes == 0 || args.send_queue == 0 {
        return Err("--max-signal-bytes and --send-queue must be at least 1".into());
    }
    let secret = args.secret.unwrap_or_else(|| {
        eprintln!(
            "WARNING: no --secret or OPENVIDU_SECRET given: using the development secret {DEFAULT_SECRET:?}. \
             Anybody who knows it can create sessions and tokens."
        );
        DEFAULT_SECRET.to_owned()
    });
    let config = Config {
        listen: args.listen,
        public_url: args.public_url,
        secret,
        tls: args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsConfig { cert, key }),
        max_signal_bytes: args.max_signal_bytes,
        send_queue_capacity: args.send_queue,
        reconnection_grace: Duration::from_secs(args.reconnection_grace_secs),
        session_gc_interval: Duration::from_secs(args.session_gc_interval_secs),
        session_gc_threshold: Duration::from_secs(args.session_gc_threshold_secs),
        ..Config::local()
    };
    let server = Server::start(config).await?;
    tracing::info!(listen = %server.local_addr(), tokens = server.token_base(), "signalroom listening");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "signalroom ready: {}", server.url())?;
        out.flush()?;
    }
    shutdown_signal().await;
    tracing::info!("stopping: evicting participants with openviduServerStopped");
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
