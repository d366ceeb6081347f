//! Entry points for the fuzz targets in `fuzz/` and for the tests that replay their corpora on
//! the stable toolchain: each takes arbitrary bytes, and must not panic.

use serde_json::{Map, Value};

use crate::jsonrpc::Frame;
use crate::limits::DEFAULT_MAX_FRAME_BYTES;
use crate::protocol::{ConnectParams, ForceDisconnectParams, JoinRoomParams, PingParams, SendMessageParams};
use crate::rest::{ConnectionProperties, ConnectionUpdate, SessionProperties};
use crate::signal::{SignalMessage, SignalRequest};
use crate::token::{TokenInfo, token_id};

/// An inbound JSON-RPC frame, parsed as the server does: the frame, its id, the params of every
/// method, and a signal's inner message.
pub fn rpc_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A signal read by hand is read as serde reads it.
    for limit in [64, DEFAULT_MAX_FRAME_BYTES] {
        if let Some(fast) = crate::signal_frame::parse(text, limit) {
            assert_eq!(Some(fast), crate::signal_frame::reference(text, limit), "{text}");
        }
    }
    let Ok(frame) = Frame::parse(text) else { return };
    let _ = frame.typed_id();
    let _ = frame.params::<PingParams>();
    let _ = frame.params::<JoinRoomParams>();
    let _ = frame.params::<ConnectParams>();
    let _ = frame.params::<ForceDisconnectParams>();
    if let Ok(p) = frame.params::<SendMessageParams<'_>>() {
        for limit in [1, 64, DEFAULT_MAX_FRAME_BYTES] {
            let _ = SignalMessage::parse(&p.message, limit);
        }
    }
}

/// A REST request body, as every endpoint that takes one reads it.
pub fn rest_body(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let Value::Object(mut body) = value else { return };
    body.retain(|_, v| !v.is_null());
    let body: Map<String, Value> = body;
    let _ = SessionProperties::from_body(&body);
    let _ = ConnectionProperties::from_body(&body);
    let _ = ConnectionUpdate::from_body(&body);
    if let Ok(req) = SignalRequest::from_body(&body, 64) {
        let _ = req.recipients();
    }
}

/// A token, as a client and the server read it.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = token_id(text);
    if let Ok(info) = TokenInfo::parse(text) {
        let _ = info.websocket_url(false);
        let _ = info.websocket_url(true);
    }
}

/// Every input of a fuzz target's corpus in this repository (`fuzz/corpus/<target>`), at least
/// `min` of them: what the crates' tests replay on the stable toolchain. Panics when the corpus is
/// missing or smaller (a test helper).
pub fn corpus(target: &str, min: usize) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.expect("a corpus entry").path()).expect("a readable input"))
        .collect();
    assert!(inputs.len() >= min, "{}: {} inputs, expected at least {min}", dir.display(), inputs.len());
    inputs
}

#[cfg(test)]
mod tests {
    use super::corpus;

    #[test]
    fn the_corpora_replay_without_a_panic() {
        for input in corpus("rpc_frame", 20) {
            super::rpc_frame(&input);
        }
        for input in corpus("rest_body", 5) {
            super::rest_body(&input);
        }
        for input in corpus("token", 5) {
            super::token(&input);
        }
    }
}
