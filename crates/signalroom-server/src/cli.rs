//! The `signalroom` command line (`serve`, and the admin commands `sessions`, `signal` (or
//! `send`), `kick`, `token`, `listen`), shared by the `signalroom` binary and `python -m
//! signalroom` (through `signalroom._native.serve_cli`), so both accept the same commands and
//! flags and print the same `--help`.
//! Every flag can also be set by an environment variable (shown in `--help`).

use std::ffi::OsString;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use signalroom_core::limits;
use tracing_subscriber::EnvFilter;

use crate::admin::{Admin, Listen, RoleArg, Target};
use crate::config::{Config, DEFAULT_SECRET, DEFAULT_SEND_QUEUE, DEFAULT_SEND_QUEUE_BYTES, TlsConfig};
use crate::hook::{HookTarget, SignalHookConfig};
use crate::server::Server;
use crate::webhook::WebhookConfig;
use signalroom_core::history::SignalHistory;

/// Exit status of a run that failed after parsing (e.g. the address is taken).
const EXIT_FAILURE: u8 = 1;
/// Exit status of bad arguments (as clap's).
pub(crate) const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "signalroom",
    bin_name = "signalroom",
    version,
    about = "OpenVidu 2.32-compatible signalling server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until SIGTERM or Ctrl-C.
    Serve(Box<ServeArgs>),
    /// List the sessions of a server and their participants.
    Sessions {
        #[command(flatten)]
        target: Target,
    },
    /// Send a signal from the server to a session (everyone, or --to some participants).
    #[command(visible_alias = "send")]
    Signal {
        /// The session.
        session: String,
        /// The signal's data.
        data: String,
        /// The signal's type (`chat` arrives as `signal:chat`).
        #[arg(long = "type", value_name = "T")]
        kind: Option<String>,
        /// Recipients' connection ids (none: everyone).
        #[arg(long, value_name = "CONNECTION", num_args = 1..)]
        to: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Print the signals a session kept (its signalHistory), oldest first.
    History {
        /// The session.
        session: String,
        /// At most this many (the last ones; the server's default: 100).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only those after this signal number (a `seq` printed before).
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a participant from a session (it leaves with forceDisconnectByServer).
    Kick {
        /// The session.
        session: String,
        /// The participant's connection id.
        connection: String,
        #[command(flatten)]
        target: Target,
    },
    /// Make a node sharing its sessions (--broker) drain, as SIGTERM does: it takes no new
    /// sockets, its participants resume on the other nodes, losing nothing, and it exits. --url
    /// names the node itself, not the balancer.
    Drain {
        #[command(flatten)]
        target: Target,
    },
    /// Make a token to join a session (the session is created if missing); prints the token.
    Token {
        /// The session.
        session: String,
        /// The participant's role.
        #[arg(long, value_enum, ignore_case = true)]
        role: Option<RoleArg>,
        /// Server data given to everyone in the participant's metadata.
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Join a session and print its signals, joins and leaves as they happen, until Ctrl-C or the
    /// session ends.
    Listen {
        /// A token (ws://…), or a session id: a connection is made for it (the session too).
        #[arg(value_name = "TOKEN_OR_SESSION")]
        token_or_session: String,
        /// This participant's client data.
        #[arg(long, default_value = "signalroom listen")]
        data: String,
        /// Print only the signals of this type (`chat` for signal:chat).
        #[arg(long = "type", value_name = "T")]
        kind: Option<String>,
        /// Exit after this many signals.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One line per event for people (coloured on a terminal).
    Pretty,
    /// One JSON object per line for machines.
    Json,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; `:PORT` listens on 127.0.0.1).
    #[arg(long, env = "SIGNALROOM_LISTEN", value_name = "HOST:PORT", default_value = "127.0.0.1:4443",
          value_parser = parse_listen)]
    listen: SocketAddr,
    /// URL clients reach this server at; tokens point there (http → ws://, https → wss://).
    /// Default: derived from the listening address.
    #[arg(long, env = "SIGNALROOM_PUBLIC_URL")]
    public_url: Option<url::Url>,
    /// Secret of the REST API (HTTP Basic, user OPENVIDUAPP).
    #[arg(long, env = "OPENVIDU_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// TLS certificate chain (PEM); needs --tls-key. Tokens become wss://.
    #[arg(long, env = "SIGNALROOM_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, env = "SIGNALROOM_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve https/wss with a certificate made at start for the public URL's host (and
    /// localhost); prints its SHA-256 fingerprint. For development: browsers warn about it.
    #[arg(long, env = "SIGNALROOM_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Maximum size of a signal's data, in bytes (a sendMessage is bounded by the frame too, a
    /// POST /signal by the request body).
    #[arg(long, env = "SIGNALROOM_MAX_SIGNAL_BYTES", default_value_t = limits::DEFAULT_MAX_SIGNAL_DATA_BYTES,
          value_parser = at_least(1))]
    max_signal_bytes: usize,
    /// Maximum size of an inbound WebSocket frame, in bytes (OpenVidu's 50 KiB); larger frames close
    /// the socket with 1009.
    #[arg(long, env = "SIGNALROOM_MAX_FRAME_BYTES", default_value_t = limits::DEFAULT_MAX_FRAME_BYTES,
          value_parser = at_least(1024))]
    max_frame_bytes: usize,
    /// Maximum size of a REST request body, in bytes; larger bodies get a 413.
    #[arg(long, env = "SIGNALROOM_MAX_REST_BODY_BYTES", default_value_t = limits::DEFAULT_MAX_REST_BODY_BYTES,
          value_parser = at_least(1024))]
    max_rest_body_bytes: usize,
    /// Maximum size of a connection's metadata (joinRoom's metadata, REST's data), in bytes.
    #[arg(long, env = "SIGNALROOM_MAX_METADATA_BYTES", default_value_t = limits::DEFAULT_MAX_METADATA_BYTES)]
    max_metadata_bytes: usize,
    /// Outbound frames queued per participant before it is disconnected as too slow; also how many
    /// notifications are kept for a resume after a reconnection.
    #[arg(long, env = "SIGNALROOM_SEND_QUEUE", default_value_t = DEFAULT_SEND_QUEUE,
          value_parser = at_least(1))]
    send_queue: usize,
    /// The same bound in bytes (each of the queue and what is kept for a resume).
    #[arg(long, env = "SIGNALROOM_SEND_QUEUE_BYTES", default_value_t = DEFAULT_SEND_QUEUE_BYTES,
          value_parser = at_least(1))]
    send_queue_bytes: usize,
    /// Bound of a socket's write buffer, in bytes, beyond its send queue (pongs included); at least
    /// twice --max-frame-bytes.
    #[arg(long, env = "SIGNALROOM_MAX_WRITE_BUFFER_BYTES",
          default_value_t = limits::DEFAULT_MAX_WRITE_BUFFER_BYTES, value_parser = at_least(2048))]
    max_write_buffer_bytes: usize,
    /// Seconds a write may stay blocked (the client does not read) before the participant is
    /// evicted with networkDisconnect.
    #[arg(long, env = "SIGNALROOM_WRITE_TIMEOUT_SECS", default_value_t = limits::DEFAULT_WRITE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout_secs: u64,
    /// Seconds a new connection has to send a complete first request (the WebSocket upgrade
    /// included), and a keep-alive one the headers of its next.
    #[arg(long, env = "SIGNALROOM_HEADER_TIMEOUT_SECS", default_value_t = limits::DEFAULT_HEADER_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Seconds an upgraded socket has to send its first frame.
    #[arg(long, env = "SIGNALROOM_FIRST_FRAME_TIMEOUT_SECS",
          default_value_t = limits::DEFAULT_FIRST_FRAME_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    first_frame_timeout_secs: u64,
    /// Seconds a socket has to join (joinRoom, or connect for a reconnection) once open; 0 keeps
    /// it for as long as it pings, as OpenVidu does.
    #[arg(long, env = "SIGNALROOM_JOIN_TIMEOUT_SECS", default_value_t = limits::DEFAULT_JOIN_TIMEOUT_SECS)]
    join_timeout_secs: u64,
    /// Maximum number of TCP connections open at once; more are closed at once, with a log line.
    #[arg(long, env = "SIGNALROOM_MAX_CONNECTIONS", default_value_t = limits::DEFAULT_MAX_CONNECTIONS,
          value_parser = at_least(1))]
    max_connections: usize,
    /// Maximum number of sessions; creating more is refused with a 503.
    #[arg(long, env = "SIGNALROOM_MAX_SESSIONS", default_value_t = limits::DEFAULT_MAX_SESSIONS,
          value_parser = at_least(1))]
    max_sessions: usize,
    /// Share sessions with other nodes through Redis: redis://HOST:PORT[/DB] (rediss:// for TLS;
    /// a password in the URL), redis+sentinel://H1:26379,H2:26379/MASTER_NAME[/DB], or
    /// redis-cluster://H1:6379,H2:6379 (?replicas=N: replicas an operation waits for, default 1).
    /// Default: sessions live in this process.
    #[arg(long, env = "SIGNALROOM_BROKER")]
    broker: Option<String>,
    /// Seconds a participant whose socket dropped is kept for a reconnection.
    #[arg(long, env = "SIGNALROOM_RECONNECTION_GRACE_SECS",
          default_value_t = signalroom_core::limits::RECONNECTION_GRACE_SECS)]
    reconnection_grace_secs: u64,
    /// With --broker, SIGTERM drains the node: its sockets are closed over this many seconds (so
    /// that the other nodes are not hit by every reconnection at once) and their participants
    /// resume on the other nodes.
    #[arg(long, env = "SIGNALROOM_DRAIN_WINDOW_SECS", default_value_t = 5)]
    drain_window_secs: u64,
    /// A draining node exits at the latest this many seconds after SIGTERM.
    #[arg(long, env = "SIGNALROOM_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    drain_timeout_secs: u64,
    /// Seconds between garbage collections of never-joined sessions (0 disables).
    #[arg(long, env = "OPENVIDU_SESSIONS_GARBAGE_INTERVAL", default_value_t = 900)]
    session_gc_interval_secs: u64,
    /// Age in seconds after which a never-joined session is garbage-collected.
    #[arg(long, env = "OPENVIDU_SESSIONS_GARBAGE_THRESHOLD", default_value_t = 3600)]
    session_gc_threshold_secs: u64,
    /// Log filter when RUST_LOG is not set (e.g. debug, signalroom_server=trace).
    #[arg(long, env = "SIGNALROOM_LOG", value_name = "FILTER", default_value = "info")]
    log: String,
    /// Log lines for people (`pretty`, no colours unless stderr is a terminal) or machines
    /// (`json`, one object per line).
    #[arg(long, env = "SIGNALROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Count nothing and serve no /metrics (on by default).
    #[arg(long, env = "SIGNALROOM_NO_METRICS")]
    no_metrics: bool,
    /// Serve the metrics on this address (e.g. a private one) rather than at /metrics of the
    /// main listener.
    #[arg(long, env = "SIGNALROOM_METRICS_LISTEN", value_name = "HOST:PORT", value_parser = parse_listen,
          conflicts_with = "no_metrics")]
    metrics_listen: Option<SocketAddr>,
    /// Post OpenVidu's webhook events to this URL.
    #[arg(long = "webhook", env = "OPENVIDU_WEBHOOK_ENDPOINT", value_name = "URL")]
    webhook: Option<url::Url>,
    /// Whether to post webhook events (OpenVidu's switch; `false` turns off a configured endpoint).
    #[arg(long, env = "OPENVIDU_WEBHOOK", value_name = "BOOL", action = clap::ArgAction::Set)]
    webhook_enabled: Option<bool>,
    /// Headers of every webhook post, as OpenVidu takes them: a JSON array of "Name: value"
    /// strings.
    #[arg(long, env = "OPENVIDU_WEBHOOK_HEADERS", value_name = "JSON",
          value_parser = WebhookConfig::parse_headers)]
    webhook_headers: Option<Headers>,
    /// The webhook events to post: a JSON array of OpenVidu event names (default: OpenVidu's
    /// default list, which leaves out signalSent).
    #[arg(long, env = "OPENVIDU_WEBHOOK_EVENTS", value_name = "JSON",
          value_parser = WebhookConfig::parse_events)]
    webhook_events: Option<EventNames>,
    /// The signal history of sessions created without a `signalHistory` of their own: a JSON
    /// object as that field, e.g. {"size":100,"ttlSeconds":3600,"types":["chat"]} (default: none,
    /// as OpenVidu).
    #[arg(long, env = "SIGNALROOM_SIGNAL_HISTORY", value_name = "JSON", value_parser = parse_history)]
    signal_history: Option<SignalHistory>,
    /// Ask this URL before delivering a signal (a POST of the signal as JSON; the answer allows,
    /// refuses or rewrites it).
    #[arg(long, env = "SIGNALROOM_SIGNAL_HOOK", value_name = "URL")]
    signal_hook: Option<url::Url>,
    /// Headers of every signal hook post: a JSON array of "Name: value" strings.
    #[arg(long, env = "SIGNALROOM_SIGNAL_HOOK_HEADERS", value_name = "JSON",
          value_parser = WebhookConfig::parse_headers, requires = "signal_hook")]
    signal_hook_headers: Option<Headers>,
    /// The signal types the hook is asked about: a JSON array or a comma-separated list (default:
    /// every type).
    #[arg(long, env = "SIGNALROOM_SIGNAL_HOOK_TYPES", value_name = "TYPES",
          value_parser = SignalHookConfig::parse_types, requires = "signal_hook")]
    signal_hook_types: Option<Types>,
    /// How long the signal hook has to answer, in milliseconds.
    #[arg(long, env = "SIGNALROOM_SIGNAL_HOOK_TIMEOUT_MS", value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    signal_hook_timeout_ms: u64,
    /// When the signal hook is down, slow or answers nonsense: `closed` refuses the signal,
    /// `open` delivers it unchanged.
    #[arg(long, env = "SIGNALROOM_SIGNAL_HOOK_FAIL", value_enum, default_value_t = HookFail::Closed)]
    signal_hook_fail: HookFail,
}

/// What a failing signal hook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HookFail {
    /// Refuse the signal.
    Closed,
    /// Deliver it unchanged.
    Open,
}

type Types = Vec<String>;

fn parse_history(value: &str) -> Result<SignalHistory, String> {
    let json: serde_json::Value =
        serde_json::from_str(value).map_err(|e| format!("{value:?} is not JSON: {e}"))?;
    SignalHistory::from_value(&json).map_err(|e| e.0)
}

/// The signal hook the arguments ask for.
fn signal_hook(args: &mut ServeArgs) -> Result<Option<SignalHookConfig>, String> {
    let Some(url) = args.signal_hook.take() else { return Ok(None) };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the signal hook {url} is not http:// or https://"));
    }
    let headers = args.signal_hook_headers.take().unwrap_or_default();
    let mut config = SignalHookConfig::new(HookTarget::Http { url, headers });
    config.types = args.signal_hook_types.take().unwrap_or_default();
    config.timeout = Duration::from_millis(args.signal_hook_timeout_ms);
    config.fail_open = args.signal_hook_fail == HookFail::Open;
    Ok(Some(config))
}

// Aliases, so that clap takes each list as one value (its derive reads `Vec` as "repeatable").
type Headers = Vec<(String, String)>;
type EventNames = Vec<String>;

/// A size of at least `min`.
fn at_least(min: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min..)
}

/// `HOST:PORT`, `[V6]:PORT` or `:PORT` (on 127.0.0.1); a host name is resolved.
fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let wrong = || format!("{value:?} is not HOST:PORT (e.g. 127.0.0.1:4443, or :0 for any free port)");
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    let (host, port) = value.rsplit_once(':').ok_or_else(wrong)?;
    let port: u16 = port.parse().map_err(|_| wrong())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    (host, port).to_socket_addrs().ok().and_then(|mut addrs| addrs.next()).ok_or_else(wrong)
}

/// Runs `signalroom` with these arguments (the first is the program name) on a runtime of its own,
/// until SIGTERM or Ctrl-C. The `main` of the binary.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let Some(command) = parse(args) else { return ExitCode::from(EXIT_FAILURE) };
    let command = match command {
        Ok(command) => command,
        Err(code) => return ExitCode::from(code),
    };
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => ExitCode::from(runtime.block_on(execute(command))),
        Err(e) => {
            eprintln!("signalroom: cannot start the runtime: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// As [`main_with_args`], on the caller's tokio runtime; returns the exit status (0 after a clean
/// stop, 1 if the server could not start, 2 for bad arguments; `--help` and `--version` print and
/// return 0). Logging goes to stderr unless a `tracing` subscriber is set already.
pub async fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match parse(args) {
        Some(Ok(command)) => execute(command).await,
        Some(Err(code)) => code,
        None => EXIT_FAILURE,
    }
}

/// Runs a parsed command.
async fn execute(command: Command) -> u8 {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Sessions { target } => crate::admin::run(target, Admin::Sessions).await,
        Command::Signal { session, data, kind, to, target } => {
            crate::admin::run(target, Admin::Signal { session, data, kind, to }).await
        }
        Command::Kick { session, connection, target } => {
            crate::admin::run(target, Admin::Kick { session, connection }).await
        }
        Command::Drain { target } => crate::admin::run(target, Admin::Drain).await,
        Command::History { session, limit, since, target } => {
            crate::admin::run(target, Admin::History { session, limit, since }).await
        }
        Command::Token { session, role, data, target } => {
            crate::admin::run(target, Admin::Token { session, role, data }).await
        }
        Command::Listen { token_or_session, data, kind, count, target } => {
            crate::admin::listen(target, Listen { token_or_session, data, kind, count }).await
        }
    }
}

/// Parses the arguments and, for `serve`, sets up logging; `Err(status)` when clap printed help,
/// a version or an error; `None` when that printing failed.
fn parse<I, T>(args: I) -> Option<Result<Command, u8>>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            e.print().ok()?;
            return Some(Err(u8::try_from(e.exit_code()).unwrap_or(EXIT_FAILURE)));
        }
    };
    if let Command::Serve(args) = &cli.command {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&args.log));
        let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        let _ = match args.log_format {
            LogFormat::Json => logs.json().with_ansi(false).try_init(),
            LogFormat::Pretty => {
                logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
            }
        };
    }
    Some(Ok(cli.command))
}

/// The webhook the arguments ask for; `Err` for OpenVidu's switch on without an endpoint.
fn webhook(args: &mut ServeArgs) -> Result<Option<WebhookConfig>, String> {
    match (args.webhook.take(), args.webhook_enabled) {
        (_, Some(false)) | (None, None) => Ok(None),
        (None, Some(true)) => {
            Err("OPENVIDU_WEBHOOK is true but no endpoint is given (--webhook or OPENVIDU_WEBHOOK_ENDPOINT)"
                .to_owned())
        }
        (Some(endpoint), _) => {
            if !matches!(endpoint.scheme(), "http" | "https") {
                return Err(format!("the webhook endpoint {endpoint} is not http:// or https://"));
            }
            let mut config = WebhookConfig::new(endpoint);
            if let Some(headers) = args.webhook_headers.take() {
                config.headers = headers;
            }
            if let Some(events) = args.webhook_events.take() {
                config.events = events;
            }
            Ok(Some(config))
        }
    }
}

/// Serves until SIGTERM or Ctrl-C; the exit status.
async fn serve(mut args: ServeArgs) -> u8 {
    let (webhook, signal_hook) = match webhook(&mut args).and_then(|w| Ok((w, signal_hook(&mut args)?))) {
        Ok(both) => both,
        Err(e) => {
            eprintln!("signalroom: {e}");
            return EXIT_USAGE;
        }
    };
    let stop = shutdown_signal();
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
        max_frame_bytes: args.max_frame_bytes,
        max_rest_body_bytes: args.max_rest_body_bytes,
        max_metadata_bytes: args.max_metadata_bytes,
        send_queue_capacity: args.send_queue,
        send_queue_bytes: args.send_queue_bytes,
        max_write_buffer_bytes: args.max_write_buffer_bytes,
        write_timeout: Duration::from_secs(args.write_timeout_secs),
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        first_frame_timeout: Duration::from_secs(args.first_frame_timeout_secs),
        join_timeout: Duration::from_secs(args.join_timeout_secs),
        max_connections: args.max_connections,
        max_sessions: args.max_sessions,
        reconnection_grace: Duration::from_secs(args.reconnection_grace_secs),
        drain_window: Duration::from_secs(args.drain_window_secs),
        drain_timeout: Duration::from_secs(args.drain_timeout_secs),
        session_gc_interval: Duration::from_secs(args.session_gc_interval_secs),
        session_gc_threshold: Duration::from_secs(args.session_gc_threshold_secs),
        broker: args.broker,
        tls_self_signed: args.tls_self_signed,
        metrics: !args.no_metrics,
        metrics_listen: args.metrics_listen,
        webhook,
        signal_history: args.signal_history.take(),
        signal_hook,
        ..Config::local()
    };
    let server = match Server::start(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("signalroom: {e}");
            return EXIT_FAILURE;
        }
    };
    tracing::info!(listen = %server.local_addr(), tokens = server.token_base(), "signalroom listening");
    if let Some(fingerprint) = server.tls_fingerprint() {
        eprintln!("signalroom: self-signed certificate, SHA-256 fingerprint {fingerprint}");
    }
    if let Some(addr) = server.metrics_addr() {
        tracing::info!("metrics at http://{addr}/metrics");
    }
    let ready = {
        let mut out = std::io::stdout().lock();
        writeln!(out, "signalroom ready: {}", server.url()).and_then(|()| out.flush())
    };
    if let Err(e) = ready {
        // Whoever waits for the line will not see it: stop rather than serve unannounced.
        eprintln!("signalroom: cannot write to stdout: {e}");
        server.shutdown().await;
        return EXIT_FAILURE;
    }
    tokio::select! {
        () = stop => {}
        () = server.drain_asked() => tracing::info!("asked to drain"),
    }
    if server.can_drain() {
        tracing::info!("draining: participants resume on the other nodes");
        server.drain().await;
    } else {
        tracing::info!("stopping: evicting participants with openviduServerStopped");
        server.shutdown().await;
    }
    0
}

/// Listens for Ctrl-C (SIGINT) and SIGTERM now; the future resolves on the first of them. Called
/// before the ready line, so that a signal sent as soon as it is read stops the server cleanly.
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let recv = |listener: std::io::Result<tokio::signal::unix::Signal>| async move {
                match listener {
                    Ok(mut listener) => {
                        listener.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = recv(interrupt) => {},
                () = recv(terminate) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["signalroom", "serve"].iter().chain(args))?;
        let Command::Serve(args) = cli.command else { unreachable!("serve parses as serve") };
        Ok(*args)
    }

    #[test]
    fn defaults_are_those_of_the_readme() {
        let a = serve_args(&[]).unwrap();
        assert_eq!(a.listen, "127.0.0.1:4443".parse().unwrap());
        assert_eq!(a.max_signal_bytes, 2 * 1024 * 1024);
        assert_eq!((a.max_frame_bytes, a.max_metadata_bytes), (51_200, 10_240));
        assert_eq!((a.write_timeout_secs, a.header_timeout_secs, a.join_timeout_secs), (15, 10, 60));
        assert_eq!((a.max_connections, a.max_sessions), (20_000, 10_000));
        assert_eq!(a.send_queue, 4096);
        assert_eq!(a.reconnection_grace_secs, 10);
        assert_eq!((a.session_gc_interval_secs, a.session_gc_threshold_secs), (900, 3600));
        assert!(a.public_url.is_none() && a.tls_cert.is_none());
    }

    #[test]
    fn listen_takes_host_port_or_a_bare_port() {
        assert_eq!(parse_listen(":0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(parse_listen("0.0.0.0:80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(parse_listen("[::1]:5").unwrap(), "[::1]:5".parse().unwrap());
        assert_eq!(parse_listen("localhost:7").unwrap().port(), 7);
        for bad in ["nowhere", "1.2.3.4", "h:port", ":99999"] {
            assert!(parse_listen(bad).unwrap_err().contains("is not HOST:PORT"), "{bad}");
        }
    }

    #[test]
    fn refuses_zero_limits_and_half_tls() {
        assert!(serve_args(&["--send-queue", "0"]).is_err());
        assert!(serve_args(&["--max-signal-bytes", "0"]).is_err());
        assert!(serve_args(&["--max-frame-bytes", "100"]).is_err());
        assert!(serve_args(&["--write-timeout-secs", "0"]).is_err());
        assert!(serve_args(&["--max-connections", "0"]).is_err());
        assert!(serve_args(&["--tls-cert", "c.pem"]).is_err());
        assert!(serve_args(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_ok());
    }

    #[test]
    fn takes_webhooks_as_openvidu() {
        let mut a = serve_args(&[
            "--webhook",
            "http://127.0.0.1:9/hook",
            "--webhook-headers",
            r#"["Authorization: Basic x"]"#,
            "--webhook-events",
            r#"["signalSent"]"#,
        ])
        .unwrap();
        let hook = webhook(&mut a).unwrap().unwrap();
        assert_eq!(hook.endpoint.as_str(), "http://127.0.0.1:9/hook");
        assert_eq!(hook.headers, [("Authorization".to_owned(), "Basic x".to_owned())]);
        assert_eq!(hook.events, ["signalSent"]);
        let mut off = serve_args(&["--webhook", "http://h/", "--webhook-enabled", "false"]).unwrap();
        assert!(webhook(&mut off).unwrap().is_none());
        assert!(serve_args(&["--webhook-events", r#"["nope"]"#]).is_err());
        assert!(serve_args(&["--log-format", "json", "--no-metrics", "--tls-self-signed"]).is_ok());
    }

    #[test]
    fn the_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
