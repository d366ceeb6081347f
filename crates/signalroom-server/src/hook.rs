//! The signal hook: before a signal of a type it covers is delivered, the server asks the
//! application (an HTTP endpoint, or a function of the embedding program) whether to allow it,
//! refuse it with a reason, or allow it with other data and/or other recipients.
//!
//! The hook runs in the hub's callers, before the signal enters the broker, so a signal refused
//! costs no node anything and a rewritten one is delivered (and kept in the history) as
//! rewritten. Signals of types the hook does not cover never wait for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use signalroom_core::signal::user_type;
use signalroom_core::{ConnectionId, SessionId};
use url::Url;

use crate::refusal::Refusal;

/// How long the hook has by default to answer.
pub const DEFAULT_SIGNAL_HOOK_TIMEOUT: Duration = Duration::from_millis(1000);

/// What the hook is asked about: one signal, as its sender sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRequest {
    /// The session.
    pub session_id: SessionId,
    /// The sender; `None` for a signal sent through the REST API.
    pub from: Option<ConnectionId>,
    /// The recipients asked for; empty: everybody in the session.
    pub to: Vec<ConnectionId>,
    /// The type without the `signal:` prefix (`chat`), as the webhook's `signalSent` gives it;
    /// `None`: the signal has none.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The data.
    pub data: Option<String>,
}

/// The hook's answer. An empty JSON object (or an empty body) allows the signal unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookDecision {
    /// `false` refuses the signal: the sender's `signal()` fails with `reason` (JSON-RPC error
    /// 602), a REST `POST /signal` gets 403 with it.
    #[serde(default = "yes")]
    pub allow: bool,
    /// Why it is refused (shown to the sender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Other data to deliver instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Other recipients (connection ids; empty: everybody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<ConnectionId>>,
}

fn yes() -> bool {
    true
}

impl HookDecision {
    /// Allows the signal unchanged.
    pub fn allow() -> Self {
        Self { allow: true, ..Self::default() }
    }

    /// Refuses the signal with `reason`.
    pub fn refuse(reason: impl Into<String>) -> Self {
        Self { allow: false, reason: Some(reason.into()), ..Self::default() }
    }
}

/// The future a hook function gives: its decision, or why it could not decide (then the hook's
/// failure mode decides).
pub type HookFuture = Pin<Box<dyn Future<Output = Result<HookDecision, String>> + Send>>;

/// A hook function of the embedding program (Python's `Server(signal_hook=fn)`).
pub type HookFn = Arc<dyn Fn(HookRequest) -> HookFuture + Send + Sync>;

/// Where the hook is.
#[derive(Clone)]
pub enum HookTarget {
    /// `POST`ed to this URL as JSON, with these headers; a 2xx answer's JSON body is the
    /// [`HookDecision`].
    Http {
        /// The endpoint.
        url: Url,
        /// Headers of every post, as the webhook's (`Name`, `value`).
        headers: Vec<(String, String)>,
    },
    /// A function in this process.
    Function(HookFn),
}

impl std::fmt::Debug for HookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookTarget::Http { url, .. } => write!(f, "Http({})", crate::broker::redact(url.as_str())),
            HookTarget::Function(_) => f.write_str("Function"),
        }
    }
}

/// The signal hook's configuration.
#[derive(Debug, Clone)]
pub struct SignalHookConfig {
    /// Where it is.
    pub target: HookTarget,
    /// The types it covers, without the `signal:` prefix; empty: every type.
    pub types: Vec<String>,
    /// How long it has to answer.
    pub timeout: Duration,
    /// When it does not answer in time, cannot be reached or answers nonsense: `true` delivers
    /// the signal unchanged (fail open), `false` refuses it (fail closed, the default).
    pub fail_open: bool,
}

impl SignalHookConfig {
    /// A hook at `target` covering every type, failing closed, with the default timeout.
    pub fn new(target: HookTarget) -> Self {
        Self { target, types: Vec::new(), timeout: DEFAULT_SIGNAL_HOOK_TIMEOUT, fail_open: false }
    }

    /// Parses `--signal-hook-types`: a JSON array of types, or a comma-separated list (`signal:`
    /// prefixes dropped).
    pub fn parse_types(value: &str) -> Result<Vec<String>, String> {
        let list: Vec<String> = if value.trim_start().starts_with('[') {
            serde_json::from_str(value).map_err(|e| format!("{value:?} is not a JSON array of types: {e}"))?
        } else {
            value.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
        };
        for t in &list {
            signalroom_core::signal::check_type(t).map_err(|e| format!("type {t:?}: {e}"))?;
        }
        Ok(list.iter().map(|t| user_type(t).to_owned()).collect())
    }
}

/// What the hook decided, counted for the metrics.
#[derive(Debug, Default)]
pub(crate) struct HookCounts {
    pub allowed: AtomicU64,
    pub refused: AtomicU64,
    pub rewritten: AtomicU64,
    /// It failed, and the signal was delivered (fail open)...
    pub failed_open: AtomicU64,
    /// ...or refused (fail closed).
    pub failed_closed: AtomicU64,
}

/// A running signal hook.
#[derive(Debug)]
pub(crate) struct SignalHook {
    config: SignalHookConfig,
    client: Option<reqwest::Client>,
    pub counts: HookCounts,
}

/// What to deliver instead, when the hook rewrote a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub data: Option<String>,
    pub to: Option<Vec<ConnectionId>>,
}

impl SignalHook {
    pub(crate) fn new(config: SignalHookConfig) -> Result<Self, String> {
        let client = match &config.target {
            HookTarget::Function(_) => None,
            HookTarget::Http { headers, .. } => {
                let mut map = HeaderMap::new();
                for (name, value) in headers {
                    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
                    map.insert(name, HeaderValue::from_str(value).map_err(|e| e.to_string())?);
                }
                map.entry(CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
                let client = reqwest::Client::builder()
                    .default_headers(map)
                    .timeout(config.timeout)
                    .build()
                    .map_err(|e| format!("cannot build the signal hook's client: {e}"))?;
                Some(client)
            }
        };
        Ok(Self { config, client, counts: HookCounts::default() })
    }

    /// Whether the hook covers signals of wire type `kind`.
    pub(crate) fn covers(&self, kind: Option<&str>) -> bool {
        let types = &self.config.types;
        types.is_empty() || kind.is_some_and(|k| types.iter().any(|t| t == user_type(k)))
    }

    /// Asks the hook about a signal: `Ok(None)` delivers it unchanged, `Ok(Some)` rewritten,
    /// `Err` refuses it.
    pub(crate) async fn check(&self, request: HookRequest) -> Result<Option<Rewrite>, Refusal> {
        let asked = tokio::time::timeout(self.config.timeout, self.ask(request)).await;
        let decision = match asked {
            Ok(Ok(decision)) => decision,
            Ok(Err(why)) => return self.failed(why),
            Err(_) => return self.failed(format!("no answer within {:?}", self.config.timeout)),
        };
        if !decision.allow {
            self.counts.refused.fetch_add(1, Relaxed);
            let reason =
                decision.reason.filter(|r| !r.is_empty()).unwrap_or_else(|| "signal refused".to_owned());
            return Err(Refusal::SignalRefused(reason));
        }
        if decision.data.is_none() && decision.to.is_none() {
            self.counts.allowed.fetch_add(1, Relaxed);
            return Ok(None);
        }
        self.counts.rewritten.fetch_add(1, Relaxed);
        Ok(Some(Rewrite { data: decision.data, to: decision.to }))
    }

    fn failed(&self, why: String) -> Result<Option<Rewrite>, Refusal> {
        if self.config.fail_open {
            self.counts.failed_open.fetch_add(1, Relaxed);
            tracing::warn!("signal hook: {why}; the signal is delivered (fail open)");
            Ok(None)
        } else {
            self.counts.failed_closed.fetch_add(1, Relaxed);
            tracing::warn!("signal hook: {why}; the signal is refused (fail closed)");
            Err(Refusal::HookUnavailable(why))
        }
    }

    async fn ask(&self, request: HookRequest) -> Result<HookDecision, String> {
        match (&self.config.target, &self.client) {
            (HookTarget::Function(f), _) => f(request).await,
            (HookTarget::Http { url, .. }, Some(client)) => {
                let response = client
                    .post(url.clone())
                    .json(&request)
                    .send()
                    .await
                    .map_err(|e| e.without_url().to_string())?;
                let status = response.status();
                if !status.is_success() {
                    return Err(format!("status {status}"));
                }
                let body = response.bytes().await.map_err(|e| e.without_url().to_string())?;
                if body.iter().all(u8::is_ascii_whitespace) {
                    return Ok(HookDecision::allow());
                }
                serde_json::from_slice(&body).map_err(|e| format!("answer is not a decision: {e}"))
            }
            (HookTarget::Http { .. }, None) => Err("no client".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_read_from_json() {
        let read = |s: &str| serde_json::from_str::<HookDecision>(s).unwrap();
        assert_eq!(read("{}"), HookDecision::allow());
        assert_eq!(read(r#"{"allow":false,"reason":"no"}"#), HookDecision::refuse("no"));
        assert_eq!(
            read(r#"{"data":"x","to":["con_A"]}"#),
            HookDecision {
                allow: true,
                reason: None,
                data: Some("x".into()),
                to: Some(vec!["con_A".into()]),
            }
        );
        assert_eq!(SignalHookConfig::parse_types(r#"["signal:chat","note"]"#).unwrap(), ["chat", "note"]);
        assert_eq!(SignalHookConfig::parse_types("chat, signal:note").unwrap(), ["chat", "note"]);
        assert!(SignalHookConfig::parse_types("[1]").is_err());
    }

    #[test]
    fn covers_only_its_types() {
        let f: HookFn = Arc::new(|_| Box::pin(async { Ok(HookDecision::allow()) }));
        let mut config = SignalHookConfig::new(HookTarget::Function(f));
        let every = SignalHook::new(config.clone()).unwrap();
        assert!(every.covers(None) && every.covers(Some("signal:x")));
        config.types = vec!["chat".into()];
        let chat = SignalHook::new(config).unwrap();
        assert!(chat.covers(Some("signal:chat")) && !chat.covers(Some("signal:x")) && !chat.covers(None));
    }
}
