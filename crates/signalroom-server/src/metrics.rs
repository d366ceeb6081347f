//! Prometheus metrics at `/metrics` (or on a listener of their own), in the OpenMetrics text
//! format.
//!
//! Little of it runs on the hot path: the hub counts each [`ServerEvent`] as it emits it (joins,
//! leaves, lost links: a few counter increments; no per-signal events), signals with a few relaxed
//! additions ([`SignalCounts`]), REST requests are counted by a layer of the router, and gauges
//! (sessions, participants, sockets, send queues, the broker) are read when Prometheus scrapes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::events::ServerEvent;
use crate::hub::Hub;

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrameKind {
    /// `notification` or `response` (an answer to a request, or an error).
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Origin {
    /// `rpc` (a participant's `sendMessage`) or `rest` (`POST /openvidu/api/signal`).
    origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Recovered {
    /// `true`, `false`, or `unknown` (the client did not say what it had).
    recovered: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRequest {
    method: String,
    /// The route's pattern (`/openvidu/api/sessions/{id}`), `unmatched` for no route.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookDecision {
    /// `allowed`, `refused`, `rewritten`, `failed_open` (delivered), `failed_closed` (refused).
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerKind {
    broker: &'static str,
}

/// Signals, counted by the hub where they happen: a few relaxed additions per signal.
#[derive(Debug, Default)]
pub(crate) struct SignalCounts {
    rpc: AtomicU64,
    rpc_bytes: AtomicU64,
    rest: AtomicU64,
    rest_bytes: AtomicU64,
    deliveries: AtomicU64,
    delivered_bytes: AtomicU64,
}

impl SignalCounts {
    /// One signal of `bytes` of data, from a participant (`rpc`) or the REST API, queued for
    /// `recipients`.
    pub(crate) fn record(&self, rpc: bool, bytes: usize, recipients: usize) {
        let (n, b) = if rpc { (&self.rpc, &self.rpc_bytes) } else { (&self.rest, &self.rest_bytes) };
        n.fetch_add(1, Relaxed);
        b.fetch_add(bytes as u64, Relaxed);
        self.deliveries.fetch_add(recipients as u64, Relaxed);
        self.delivered_bytes.fetch_add((bytes * recipients) as u64, Relaxed);
    }
}

/// Frames the sockets' writers wrote, by kind, counted once per batch by the writer.
#[derive(Debug, Default)]
pub(crate) struct FrameCounts {
    notifications: AtomicU64,
    notification_bytes: AtomicU64,
    responses: AtomicU64,
    response_bytes: AtomicU64,
}

impl FrameCounts {
    /// A batch written: its notifications and responses (frames, payload bytes).
    pub(crate) fn record(&self, notifications: (u64, u64), responses: (u64, u64)) {
        for ((n, b), (frames, bytes)) in [
            ((&self.notifications, &self.notification_bytes), notifications),
            ((&self.responses, &self.response_bytes), responses),
        ] {
            if frames > 0 {
                n.fetch_add(frames, Relaxed);
                b.fetch_add(bytes, Relaxed);
            }
        }
    }
}

/// Every metric of one server, in its own registry.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    sessions_created: Counter,
    sessions_destroyed: Family<Reason, Counter>,
    joins: Counter,
    left: Family<Reason, Counter>,
    slow_receivers: Counter,
    signals: Family<Origin, Counter>,
    signal_bytes: Family<Origin, Counter>,
    deliveries: Counter,
    delivered_bytes: Counter,
    frames_sent: Family<FrameKind, Counter>,
    frame_bytes_sent: Family<FrameKind, Counter>,
    links_lost: Counter,
    reconnections: Family<Recovered, Counter>,
    replayed: Counter,
    join_seconds: Histogram,
    http: Family<HttpRequest, Counter>,
    sessions: Gauge,
    participants: Gauge,
    sockets: Gauge,
    queue_depth: Histogram,
    broker_up: Family<BrokerKind, Gauge>,
    hook_decisions: Family<HookDecision, Counter>,
    broker_rtt: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Only with replicas asked for: no series otherwise.
    broker_replicas_waited: Family<BrokerKind, Gauge>,
    /// Webhook deliveries, registered here so that one scrape shows them.
    pub webhook: WebhookMetrics,
}

/// What the webhook sender counts.
#[derive(Debug, Default, Clone)]
pub(crate) struct WebhookMetrics {
    /// Events posted and answered with 200.
    pub delivered: Counter,
    /// Attempts that failed (each retry counts).
    pub failures: Counter,
    /// Events given up: the queue was full, or every retry failed.
    drops: Family<Reason, Counter>,
}

impl WebhookMetrics {
    /// Counts `n` events dropped for `reason`.
    pub(crate) fn dropped(&self, reason: &str, n: u64) {
        self.drops.get_or_create(&Reason { reason: reason.to_owned() }).inc_by(n);
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("signalroom");
        let m = Self {
            registry: Registry::default(),
            sessions_created: Counter::default(),
            sessions_destroyed: Family::default(),
            joins: Counter::default(),
            left: Family::default(),
            slow_receivers: Counter::default(),
            signals: Family::default(),
            signal_bytes: Family::default(),
            deliveries: Counter::default(),
            delivered_bytes: Counter::default(),
            frames_sent: Family::default(),
            frame_bytes_sent: Family::default(),
            links_lost: Counter::default(),
            reconnections: Family::default(),
            replayed: Counter::default(),
            // 100 µs to ~13 s.
            join_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            http: Family::default(),
            sessions: Gauge::default(),
            participants: Gauge::default(),
            sockets: Gauge::default(),
            // 0, 1, 2, 4, ... 16384 items.
            queue_depth: Histogram::new(std::iter::once(0.0).chain(exponential_buckets(1.0, 2.0, 15))),
            broker_up: Family::default(),
            hook_decisions: Family::default(),
            broker_rtt: Gauge::default(),
            broker_replicas_waited: Family::default(),
            webhook: WebhookMetrics::default(),
        };
        let r = &mut registry;
        r.register("sessions", "Sessions open now", m.sessions.clone());
        r.register("participants", "Participants joined now", m.participants.clone());
        r.register("sockets", "WebSocket connections open on this node now", m.sockets.clone());
        r.register(
            "send_queue_depth",
            "Frames queued and not yet written, per open socket, sampled at each scrape",
            m.queue_depth.clone(),
        );
        r.register("sessions_created", "Sessions created", m.sessions_created.clone());
        r.register("sessions_destroyed", "Sessions closed, by reason", m.sessions_destroyed.clone());
        r.register("participants_joined", "Participants joined", m.joins.clone());
        r.register("participants_left", "Participants that left or were evicted, by reason", m.left.clone());
        r.register(
            "send_queue_overflows",
            "Times a participant's send queue was found full (it is then evicted with networkDisconnect)",
            m.slow_receivers.clone(),
        );
        r.register_with_unit(
            "join_duration",
            "Time from a joinRoom request to its reply queued",
            Unit::Seconds,
            m.join_seconds.clone(),
        );
        r.register("signals_received", "Signals sent, by origin (rpc or rest)", m.signals.clone());
        r.register_with_unit(
            "signal_data_received",
            "Data of the signals sent, by origin",
            Unit::Bytes,
            m.signal_bytes.clone(),
        );
        r.register(
            "signal_notifications_sent",
            "Signal notifications queued to recipients (one per recipient)",
            m.deliveries.clone(),
        );
        r.register_with_unit(
            "signal_notification_data_sent",
            "Data of the signal notifications queued to recipients",
            Unit::Bytes,
            m.delivered_bytes.clone(),
        );
        r.register(
            "frames_sent",
            "Frames written to sockets, by kind (notification or response)",
            m.frames_sent.clone(),
        );
        r.register_with_unit(
            "frame_payload_sent",
            "Payload of the frames written to sockets, by kind",
            Unit::Bytes,
            m.frame_bytes_sent.clone(),
        );
        r.register(
            "links_lost",
            "Sockets lost by a participant kept for a reconnection",
            m.links_lost.clone(),
        );
        r.register(
            "reconnections",
            "Reconnections of a kept participant, by whether nothing was lost",
            m.reconnections.clone(),
        );
        r.register("notifications_replayed", "Notifications replayed on reconnections", m.replayed.clone());
        r.register("http_requests", "HTTP requests, by method, route and status", m.http.clone());
        r.register(
            "signal_hook_decisions",
            "Signals the signal hook was asked about, by decision (allowed, refused, rewritten, failed_open, failed_closed)",
            m.hook_decisions.clone(),
        );
        r.register("broker_up", "Whether the broker answers (1) or not (0)", m.broker_up.clone());
        r.register_with_unit(
            "broker_round_trip",
            "Round trip of a PING to Redis, measured at scrape time",
            Unit::Seconds,
            m.broker_rtt.clone(),
        );
        r.register(
            "broker_replicas_waited",
            "With Redis replicas asked for (replicas=N): whether operations wait for them before they are published (1), or are published without them since they failed to acknowledge in time (0; a failover then may lose the latest operations)",
            m.broker_replicas_waited.clone(),
        );
        r.register(
            "webhook_events_delivered",
            "Webhook events posted and answered 200",
            m.webhook.delivered.clone(),
        );
        r.register(
            "webhook_attempts_failed",
            "Webhook posts that failed (every retry counts)",
            m.webhook.failures.clone(),
        );
        r.register(
            "webhook_events_dropped",
            "Webhook events given up, by reason (queue_full, retries_exhausted, lagged)",
            m.webhook.drops.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one event.
    pub(crate) fn count(&self, event: &ServerEvent) {
        match event {
            ServerEvent::SessionCreated { .. } => {
                self.sessions_created.inc();
            }
            ServerEvent::SessionDestroyed { reason, .. } => {
                self.sessions_destroyed.get_or_create(&Reason { reason: reason.as_str().to_owned() }).inc();
            }
            ServerEvent::ParticipantJoined { took, .. } => {
                self.joins.inc();
                self.join_seconds.observe(took.as_secs_f64());
            }
            ServerEvent::ParticipantLeft { reason, .. } => {
                self.left.get_or_create(&Reason { reason: reason.as_str().to_owned() }).inc();
            }
            ServerEvent::SlowReceiver { .. } => {
                self.slow_receivers.inc();
            }
            // Counted where they happen (SignalCounts).
            ServerEvent::SignalSent { .. } => {}
            ServerEvent::LinkLost { .. } => {
                self.links_lost.inc();
            }
            ServerEvent::Reconnected { recovered, replayed, .. } => {
                let recovered = match recovered {
                    Some(true) => "true",
                    Some(false) => "false",
                    None => "unknown",
                };
                self.reconnections.get_or_create(&Recovered { recovered }).inc();
                self.replayed.inc_by(*replayed);
            }
        }
    }

    /// Reads the gauges and renders everything.
    pub(crate) async fn render(&self, hub: &Hub) -> String {
        let (sessions, participants) = hub.census().await;
        self.sessions.set(sessions as i64);
        self.participants.set(participants as i64);
        let counts = &hub.signal_counts;
        for (origin, n, bytes) in
            [("rpc", &counts.rpc, &counts.rpc_bytes), ("rest", &counts.rest, &counts.rest_bytes)]
        {
            let origin = Origin { origin };
            self.signals.get_or_create(&origin).inner().store(n.load(Relaxed), Relaxed);
            self.signal_bytes.get_or_create(&origin).inner().store(bytes.load(Relaxed), Relaxed);
        }
        let frames = &hub.frame_counts;
        for (kind, n, bytes) in [
            ("notification", &frames.notifications, &frames.notification_bytes),
            ("response", &frames.responses, &frames.response_bytes),
        ] {
            let kind = FrameKind { kind };
            self.frames_sent.get_or_create(&kind).inner().store(n.load(Relaxed), Relaxed);
            self.frame_bytes_sent.get_or_create(&kind).inner().store(bytes.load(Relaxed), Relaxed);
        }
        if let Some(hook) = &hub.hook {
            let c = &hook.counts;
            for (decision, n) in [
                ("allowed", &c.allowed),
                ("refused", &c.refused),
                ("rewritten", &c.rewritten),
                ("failed_open", &c.failed_open),
                ("failed_closed", &c.failed_closed),
            ] {
                self.hook_decisions
                    .get_or_create(&HookDecision { decision })
                    .inner()
                    .store(n.load(Relaxed), Relaxed);
            }
        }
        self.deliveries.inner().store(counts.deliveries.load(Relaxed), Relaxed);
        self.delivered_bytes.inner().store(counts.delivered_bytes.load(Relaxed), Relaxed);
        let depths = hub.queue_depths();
        self.sockets.set(depths.len() as i64);
        for depth in depths {
            self.queue_depth.observe(depth as f64);
        }
        let ping = tokio::time::timeout(PING_TIMEOUT, hub.broker_ping()).await;
        match ping.unwrap_or_else(|_| Some(Err("no answer in time".to_owned()))) {
            None => {
                self.broker_up.get_or_create(&BrokerKind { broker: "local" }).set(1);
            }
            Some(Ok(rtt)) => {
                self.broker_up.get_or_create(&BrokerKind { broker: "redis" }).set(1);
                self.broker_rtt.set(rtt.as_secs_f64());
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the broker does not answer");
                self.broker_up.get_or_create(&BrokerKind { broker: "redis" }).set(0);
            }
        }
        if let Some(waited) = hub.broker_replicas_waited() {
            self.broker_replicas_waited.get_or_create(&BrokerKind { broker: "redis" }).set(i64::from(waited));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a request by its route and status.
    fn count_request(&self, method: &str, route: &str, status: StatusCode) {
        let labels =
            HttpRequest { method: method.to_owned(), route: route.to_owned(), status: status.as_u16() };
        self.http.get_or_create(&labels).inc();
    }
}

/// `GET /metrics`.
pub(crate) async fn scrape(State((metrics, hub)): State<(Arc<Metrics>, Arc<Hub>)>) -> Response {
    let body = metrics.render(&hub).await;
    ([(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], body).into_response()
}

/// A layer counting every request by route and status.
pub(crate) async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.count_request(method.as_str(), route.as_deref().unwrap_or("unmatched"), response.status());
    response
}

/// How long a scrape may wait for the broker.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(2);
