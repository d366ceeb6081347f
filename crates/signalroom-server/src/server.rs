//! [`Server`]: starts the listeners (HTTP with WebSocket, metrics, TLS), builds the hub over the
//! chosen broker, and drains or shuts it all down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum_server::tls_rustls::RustlsAcceptor;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tower_http::cors::{AllowHeaders, AllowMethods, Any, CorsLayer};
use url::Url;

use crate::broker::{AnyBroker, LocalBroker, RedisBroker, redact};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::ServerEvent;
use crate::hub::Hub;
use crate::limit::{ConnectionCounts, Gate, Limited};
use crate::metrics::Metrics;
use crate::webhook::Webhook;

/// How long shutdown waits for sockets to flush their last frames.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    hub: Arc<Hub>,
    local_addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    serve: JoinHandle<std::io::Result<()>>,
    gc: Option<JoinHandle<()>>,
    /// Returns the heap's free pages after a burst (see [`crate::heap`]).
    trim: JoinHandle<()>,
    gate: Arc<Gate>,
    /// The metrics' task, and their listener's when they have one.
    metrics_tasks: Vec<JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
    webhook: Option<Webhook>,
    tls_fingerprint: Option<String>,
}

impl Server {
    /// Binds `config.listen` and starts serving. Returns once the socket is listening.
    ///
    /// Errors: a configuration value is out of range ([`Error::Config`]), the address cannot be
    /// bound ([`Error::Bind`]), the public URL is not `http(s)://` ([`Error::PublicUrl`]), or the
    /// TLS files cannot be loaded ([`Error::Tls`]).
    pub async fn start(config: Config) -> Result<Self> {
        if config.max_signal_bytes == 0 || config.send_queue_capacity == 0 {
            return Err(Error::Config(
                "the maximum signal size and the send queue must be at least 1".to_owned(),
            ));
        }
        if config.max_frame_bytes < 1024 || config.max_write_buffer_bytes < 2 * config.max_frame_bytes {
            return Err(Error::Config(
                "the maximum frame must be at least 1024 bytes, and the write buffer at least twice that"
                    .to_owned(),
            ));
        }
        if config.max_connections == 0 || config.max_sessions == 0 || config.write_timeout.is_zero() {
            return Err(Error::Config(
                "the connection and session limits and the write timeout must be at least 1".to_owned(),
            ));
        }
        let bind = |source| Error::Bind { addr: config.listen, source };
        let listener = std::net::TcpListener::bind(config.listen).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let local_addr = listener.local_addr().map_err(bind)?;
        let tls = config.tls.is_some() || config.tls_self_signed;
        let public_url = match &config.public_url {
            Some(url) => url.clone(),
            None => {
                let scheme = if tls { "https" } else { "http" };
                let mut reachable = local_addr;
                if reachable.ip().is_unspecified() {
                    // 0.0.0.0 is no address a client can dial: tokens would point nowhere.
                    reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    tracing::warn!(
                        "listening on {local_addr}: tokens point to {reachable}; set --public-url to the address clients reach"
                    );
                }
                let url = format!("{scheme}://{reachable}");
                Url::parse(&url).map_err(|e| Error::PublicUrl { url, reason: e.to_string() })?
            }
        };
        let token_base = signalroom_core::token::token_base(&public_url).map_err(|_| Error::PublicUrl {
            url: public_url.to_string(),
            reason: "must be http:// or https:// with a host".to_owned(),
        })?;
        let public = public_url.as_str().trim_end_matches('/').to_owned();
        let broker = match &config.broker {
            None => AnyBroker::Local(LocalBroker::new(config.linger_close, config.send_queue_limits())),
            Some(url) => AnyBroker::Redis(
                RedisBroker::connect(url, config.linger_close, config.send_queue_limits())
                    .await
                    .map_err(|e| Error::Broker { url: redact(url), reason: e.to_string() })?,
            ),
        };
        let metrics = config.metrics.then(|| Arc::new(Metrics::new()));
        let hook = config
            .signal_hook
            .clone()
            .map(crate::hook::SignalHook::new)
            .transpose()
            .map_err(Error::Config)?;
        let hub =
            Arc::new(Hub::new(config.clone(), token_base, public, broker, metrics.clone()).with_hook(hook));
        hub.watch_notices();

        let mut metrics_tasks = Vec::new();
        let mut metrics_addr = None;
        if let Some(metrics) = &metrics {
            if let Some(addr) = config.metrics_listen {
                let bind = |source| Error::Bind { addr, source };
                let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
                metrics_addr = Some(listener.local_addr().map_err(bind)?);
                let app = Router::new()
                    .route("/metrics", get(crate::metrics::scrape))
                    .with_state((Arc::clone(metrics), Arc::clone(&hub)));
                metrics_tasks.push(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::warn!(error = %e, "the metrics listener failed");
                    }
                }));
            }
        }
        let webhook = match &config.webhook {
            None => None,
            Some(webhook) => {
                let counts = metrics.as_ref().map(|m| m.webhook.clone()).unwrap_or_default();
                Some(Webhook::start(webhook, &hub, counts).map_err(Error::Config)?)
            }
        };
        let self_signed = match (&config.tls, config.tls_self_signed) {
            (None, true) => {
                let host = public_url.host_str().unwrap_or("localhost");
                Some(
                    crate::tls::self_signed(host)
                        .map_err(|e| Error::Config(format!("cannot make a certificate: {e}")))?,
                )
            }
            _ => None,
        };
        let tls_fingerprint = self_signed.as_ref().map(|made| made.fingerprint.clone());

        let app = router(Arc::clone(&hub), metrics.filter(|_| config.metrics_listen.is_none()))
            .into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let gate = Gate::new(config.max_connections);
        let limited = Limited::new(Arc::clone(&gate));
        // A connection's first request, when it is the upgrade to `/openvidu`, is answered
        // before hyper (`ws::Upgrades`); it has as long for its head as hyper would give it.
        let upgrades = |timeout| crate::ws::Upgrades::new(Arc::clone(&hub), timeout);
        let rustls = match (&config.tls, self_signed) {
            (Some(tls), _) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key).await.map_err(
                        |source| Error::Tls { cert: tls.cert.clone(), key: tls.key.clone(), source },
                    )?,
                )
            }
            (None, Some(made)) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(
                    axum_server::tls_rustls::RustlsConfig::from_pem(
                        made.cert_pem.into_bytes(),
                        made.key_pem.into_bytes(),
                    )
                    .await
                    .map_err(|e| Error::Config(format!("cannot use the self-signed certificate: {e}")))?,
                )
            }
            (None, None) => None,
        };
        // A connection has `header_timeout` to send a complete first request (slow headers, or
        // nothing at all), and a keep-alive one as long for the headers of its next.
        let serve = match rustls {
            None => {
                let mut server = axum_server::from_tcp(listener)
                    .map_err(bind)?
                    .acceptor(upgrades(config.header_timeout).over(limited))
                    .first_request_timeout(config.header_timeout)
                    .handle(handle.clone());
                server.http_builder().http1().header_read_timeout(config.header_timeout);
                tokio::spawn(server.serve(app))
            }
            Some(rustls) => {
                let acceptor =
                    RustlsAcceptor::new(rustls).handshake_timeout(config.header_timeout).acceptor(limited);
                let mut server = axum_server::from_tcp(listener)
                    .map_err(bind)?
                    .acceptor(upgrades(config.header_timeout).over(acceptor))
                    .first_request_timeout(config.header_timeout)
                    .handle(handle.clone());
                server.http_builder().http1().header_read_timeout(config.header_timeout);
                tokio::spawn(server.serve(app))
            }
        };
        let gc = (!config.session_gc_interval.is_zero()).then(|| {
            let hub = Arc::clone(&hub);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(hub.config.session_gc_interval);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let n = hub.collect_garbage().await;
                    if n > 0 {
                        tracing::info!(sessions = n, "garbage-collected never-joined sessions");
                    }
                }
            })
        });
        let trim = tokio::spawn(async {
            let mut tick = tokio::time::interval(crate::heap::EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let free = crate::heap::trim();
                if free > 0 {
                    tracing::debug!(free_bytes = free, "returned the heap's free pages to the kernel");
                }
            }
        });
        Ok(Self {
            hub,
            trim,
            local_addr,
            handle,
            serve,
            gc,
            gate,
            metrics_tasks,
            metrics_addr,
            webhook,
            tls_fingerprint,
        })
    }

    /// Where the metrics are served when they have a listener of their own
    /// ([`Config::metrics_listen`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The SHA-256 fingerprint of the self-signed certificate ([`Config::tls_self_signed`]).
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.tls_fingerprint.as_deref()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The public URL: `http[s]://host:port`, the base of the REST API (`/openvidu/api`).
    pub fn url(&self) -> &str {
        &self.hub.public_url
    }

    /// The start of every token this server issues: `ws[s]://host:port`.
    pub fn token_base(&self) -> &str {
        &self.hub.token_base
    }

    /// The number of sessions open now.
    pub async fn session_count(&self) -> usize {
        self.hub.session_count().await
    }

    /// TCP connections open now, and those closed at once because `max_connections` was reached.
    pub fn connections(&self) -> ConnectionCounts {
        self.gate.counts()
    }

    /// Every operation the server performs from now on, as [`ServerEvent`]s (for metrics,
    /// webhooks, tests). A subscriber that falls more than 4,096 events behind misses some
    /// (`RecvError::Lagged`); nothing is built for events while nobody subscribes.
    pub fn events(&self) -> broadcast::Receiver<ServerEvent> {
        self.hub.want_signals();
        self.hub.subscribe()
    }

    /// Resolves once somebody asked this node to drain (`POST /openvidu/api/signalroom/drain`,
    /// which `signalroom drain` sends); the caller then calls [`Server::drain`].
    pub async fn drain_asked(&self) {
        self.hub.drain_asked().await
    }

    /// Whether this node can drain: it shares its sessions with other nodes (a broker).
    pub fn can_drain(&self) -> bool {
        self.hub.config.broker.is_some()
    }

    /// Drains, then stops (a node sharing its sessions through a broker; with none, the same as
    /// [`Server::shutdown`]): `/health/ready` answers 503 and new sockets are refused, so that the
    /// balancer sends nothing new here; each socket is closed (1012, after what is queued for it)
    /// at its turn in the drain window, as a network drop: its client reconnects, to another node,
    /// where its participant resumes with what it missed replayed, nobody told it left. Returns
    /// once every socket closed, or at the drain timeout; those who did not come back elsewhere
    /// within the reconnection grace are removed by the other nodes.
    pub async fn drain(self) {
        let (window, timeout) = (self.hub.config.drain_window, self.hub.config.drain_timeout);
        if !self.hub.begin_drain(window) {
            return self.shutdown().await;
        }
        if !self.hub.sockets_closed(timeout).await {
            tracing::warn!("drain timeout: closing the sockets still open");
        }
        self.hub.retire().await;
        self.stop_serving().await;
        tracing::info!("drained and stopped");
    }

    /// Stops gracefully: every participant is evicted with `openviduServerStopped`, sockets are
    /// flushed and closed, then the listener stops.
    pub async fn shutdown(self) {
        self.hub.stop().await;
        self.stop_serving().await;
        tracing::info!("server stopped");
    }

    /// Once the participants were evicted or drained: sockets closed, webhooks flushed, tasks and
    /// listener stopped.
    async fn stop_serving(self) {
        self.trim.abort();
        if let Some(gc) = self.gc {
            gc.abort();
        }
        // The evicted participants' sockets take their last frames and close.
        if !self.hub.sockets_closed(SHUTDOWN_GRACE).await {
            tracing::warn!("some sockets did not close in time");
        }
        if let Some(webhook) = &self.webhook {
            // What the stop emitted (participants left, sessions destroyed), as far as it goes.
            webhook.flush(SHUTDOWN_GRACE).await;
        }
        for task in self.metrics_tasks {
            task.abort();
        }
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        match tokio::time::timeout(SHUTDOWN_GRACE * 2, self.serve).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("server did not stop in time"),
        }
    }
}

/// `GET /health/ready`: 200 while the node takes new work (and reaches its broker); 503 while it
/// drains or stops, or Redis does not answer: a balancer's health check sends it nothing new.
async fn ready(axum::extract::State(hub): axum::extract::State<Arc<Hub>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let broker = hub.broker_ping().await;
    match broker {
        _ if hub.is_draining() => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining").into_response(),
        _ if !hub.is_ready() => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response(),
        Some(Err(e)) => {
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("broker unreachable: {e}")).into_response()
        }
        _ => "ready".into_response(),
    }
}

/// The routes. `metrics`: counted, and served at `/metrics`.
fn router(hub: Arc<Hub>, metrics: Option<Arc<Metrics>>) -> Router {
    let mut rest = crate::rest::router(Arc::clone(&hub));
    if let Some(metrics) = &metrics {
        rest = rest
            .layer(axum::middleware::from_fn_with_state(Arc::clone(metrics), crate::metrics::count_requests));
    }
    let mut app = Router::new()
        .route("/openvidu", get(crate::ws::upgrade))
        .route("/health/live", get(|| async { "live" }))
        .route("/health/ready", get(ready))
        .nest("/openvidu/api", rest)
        .merge(crate::page::router());
    if let Some(metrics) = metrics {
        let scrape = Router::new()
            .route("/metrics", get(crate::metrics::scrape))
            .with_state((metrics, Arc::clone(&hub)));
        app = app.merge(scrape);
    }
    // As OpenVidu: any origin, method and header, and no credentials (`*` cannot carry them).
    // Methods and headers are those the preflight asks for: a `*` would not cover
    // `Authorization`.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request());
    app.layer(cors).with_state(hub)
}
