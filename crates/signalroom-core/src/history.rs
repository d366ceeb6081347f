//! Signal history, a signalroom extension: a session created with a `signalHistory` setting keeps
//! its last broadcast signals of the chosen types, bounded in count, bytes and age, for late
//! joiners (an extension field of the `joinRoom` answer, when the joiner asks) and for the back
//! end (`GET /openvidu/api/sessions/{id}/signals`). Without the setting nothing is kept and the
//! server behaves as OpenVidu.
//!
//! ```
//! use signalroom_core::history::SignalHistory;
//!
//! let h = SignalHistory::from_value(&serde_json::json!({"size": 100, "ttlSeconds": 3600, "types": ["chat"]})).unwrap();
//! assert!(h.keeps(Some("signal:chat")) && !h.keeps(Some("signal:cursor")) && !h.keeps(None));
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ConnectionId;
use crate::rest::BadRequest;
use crate::signal::{check_type, json_kind, user_type};

/// The most signals a session's history may keep.
pub const MAX_HISTORY_SIZE: usize = 10_000;
/// The bytes a session's history keeps when the setting does not say (`maxBytes`).
pub const DEFAULT_HISTORY_BYTES: usize = 1 << 20;
/// The most bytes a session's history may keep.
pub const MAX_HISTORY_BYTES: usize = 64 << 20;
/// What an entry costs besides its data, type and sender, in the byte bound.
pub const ENTRY_OVERHEAD_BYTES: usize = 64;

/// What a session keeps of its signals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalHistory {
    /// How many signals at most (1 to [`MAX_HISTORY_SIZE`]).
    pub size: usize,
    /// How long a signal is kept, in seconds; 0: as long as there is room.
    #[serde(default)]
    pub ttl_seconds: u64,
    /// The types kept, without the `signal:` prefix; empty: every type.
    #[serde(default)]
    pub types: Vec<String>,
    /// How many bytes at most (data, type and sender, plus [`ENTRY_OVERHEAD_BYTES`] each).
    #[serde(default = "default_bytes")]
    pub max_bytes: usize,
}

fn default_bytes() -> usize {
    DEFAULT_HISTORY_BYTES
}

impl SignalHistory {
    /// Reads and checks a `signalHistory` object; the message names what is wrong, for a 400.
    pub fn from_value(value: &Value) -> Result<Self, BadRequest> {
        let Value::Object(o) = value else {
            return Err(BadRequest(format!(
                "Parameter 'signalHistory' must be an object, not {}",
                json_kind(value)
            )));
        };
        let size =
            uint(o, "size")?.ok_or_else(|| BadRequest("Parameter 'signalHistory.size' is missing".into()))?;
        if size == 0 || size > MAX_HISTORY_SIZE as u64 {
            return Err(BadRequest(format!(
                "Parameter 'signalHistory.size' is wrong: {size} is not between 1 and {MAX_HISTORY_SIZE}"
            )));
        }
        let ttl_seconds = uint(o, "ttlSeconds")?.unwrap_or(0);
        let max_bytes = uint(o, "maxBytes")?.unwrap_or(DEFAULT_HISTORY_BYTES as u64);
        if max_bytes == 0 || max_bytes > MAX_HISTORY_BYTES as u64 {
            return Err(BadRequest(format!(
                "Parameter 'signalHistory.maxBytes' is wrong: {max_bytes} is not between 1 and {MAX_HISTORY_BYTES}"
            )));
        }
        let types = match o.get("types").filter(|v| !v.is_null()) {
            None => Vec::new(),
            Some(Value::Array(items)) if items.len() <= 256 => {
                let mut types = Vec::with_capacity(items.len());
                for item in items {
                    let Value::String(t) = item else {
                        return Err(BadRequest(format!(
                            "Parameter 'signalHistory.types' must hold strings, not {}",
                            json_kind(item)
                        )));
                    };
                    check_type(t)
                        .map_err(|e| BadRequest(format!("Parameter 'signalHistory.types' is wrong: {e}")))?;
                    types.push(user_type(t).to_owned());
                }
                types
            }
            Some(other) => {
                return Err(BadRequest(format!(
                    "Parameter 'signalHistory.types' must be an array of at most 256 strings, not {}",
                    json_kind(other)
                )));
            }
        };
        Ok(Self { size: size as usize, ttl_seconds, types, max_bytes: max_bytes as usize })
    }

    /// Whether a signal of wire type `kind` (`signal:chat`; `None`: no type) is kept.
    pub fn keeps(&self, kind: Option<&str>) -> bool {
        match kind {
            _ if self.types.is_empty() => true,
            Some(kind) => self.types.iter().any(|t| t == user_type(kind)),
            None => false,
        }
    }
}

fn uint(o: &Map<String, Value>, key: &str) -> Result<Option<u64>, BadRequest> {
    match o.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(other) => Err(BadRequest(format!(
            "Parameter 'signalHistory.{key}' must be a non-negative integer, not {}",
            json_kind(other)
        ))),
    }
}

/// A signal kept: in the `joinRoom` answer's `signalHistory` and in
/// `GET /openvidu/api/sessions/{id}/signals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The signal's number in the session (its notification's `seq`): increasing along the
    /// history, and below every notification the joiner gets live.
    pub seq: u64,
    /// When it was sent (ms since the epoch).
    pub created_at: u64,
    /// The sender's connection id; `None` for a signal sent through the REST API.
    pub from: Option<ConnectionId>,
    /// The wire type, verbatim (`signal:chat`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The data.
    pub data: Option<String>,
}

impl HistoryEntry {
    /// What the entry counts for in the byte bound.
    pub fn cost(&self) -> usize {
        ENTRY_OVERHEAD_BYTES
            + self.data.as_ref().map_or(0, String::len)
            + self.kind.as_ref().map_or(0, String::len)
            + self.from.as_ref().map_or(0, |f| f.as_str().len())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_setting_is_read_and_checked() {
        let h = SignalHistory::from_value(&json!({"size": 3, "types": ["signal:chat", "note"]})).unwrap();
        assert_eq!(
            h,
            SignalHistory {
                size: 3,
                ttl_seconds: 0,
                types: vec!["chat".into(), "note".into()],
                max_bytes: DEFAULT_HISTORY_BYTES
            }
        );
        assert!(h.keeps(Some("chat")) && h.keeps(Some("signal:note")) && !h.keeps(Some("signal:x")));
        let every = SignalHistory::from_value(&json!({"size": 1})).unwrap();
        assert!(every.keeps(None) && every.keeps(Some("signal:any")));
        for (bad, says) in [
            (json!([]), "must be an object"),
            (json!({}), "size' is missing"),
            (json!({"size": 0}), "not between 1 and"),
            (json!({"size": 10001}), "not between 1 and"),
            (json!({"size": -1}), "non-negative integer"),
            (json!({"size": 1, "ttlSeconds": "1"}), "non-negative integer"),
            (json!({"size": 1, "maxBytes": 0}), "maxBytes' is wrong"),
            (json!({"size": 1, "types": "chat"}), "must be an array"),
            (json!({"size": 1, "types": [1]}), "must hold strings"),
            (json!({"size": 1, "types": ["a\u{1}"]}), "control characters"),
        ] {
            let err = SignalHistory::from_value(&bad).unwrap_err();
            assert!(err.0.contains(says), "{bad}: {}", err.0);
        }
    }
}
