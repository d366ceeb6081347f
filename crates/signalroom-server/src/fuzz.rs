//! Entry point for the fuzz target in `fuzz/` and for the test that replays its corpus on the
//! stable toolchain: takes arbitrary bytes, and must not panic.

use std::sync::Arc;

use signalroom_core::rest::SessionProperties;

use crate::broker::{AnyBroker, LocalBroker};
use crate::config::Config;
use crate::events::ServerEvent;
use crate::hub::Hub;

/// Inbound frames (one a line) handled by one socket of a fresh server, which holds the session
/// `S1` (join it with the secret `MY_SECRET`: a token cannot be guessed).
pub fn rpc_dispatch(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        dispatch(text);
    }
}

/// [`rpc_dispatch`]: what the server did, as its events.
fn dispatch(text: &str) -> Vec<ServerEvent> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_time().build() else {
        return Vec::new();
    };
    runtime.block_on(async {
        let config = Config::local();
        let broker = AnyBroker::Local(LocalBroker::new(config.linger_close, config.send_queue_limits()));
        let hub =
            Arc::new(Hub::new(config, "ws://127.0.0.1:1".into(), "http://127.0.0.1:1".into(), broker, None));
        let mut events = hub.subscribe();
        hub.want_signals();
        let props = SessionProperties::from_body(&serde_json::Map::new()).expect("defaults are valid");
        hub.create_session("S1", props).await.expect("a fresh server creates S1");
        crate::ws::handle_frames(Arc::clone(&hub), text.lines()).await;
        tokio::task::yield_now().await;
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    })
}

#[cfg(test)]
mod tests {
    use signalroom_core::fuzz::corpus;

    #[test]
    fn the_target_reaches_the_dispatch() {
        use crate::events::ServerEvent;
        let seed = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/rpc_dispatch/signals"),
        )
        .unwrap();
        let events = super::dispatch(&seed);
        assert!(events.iter().any(|e| matches!(e, ServerEvent::ParticipantJoined { .. })), "{events:?}");
        assert!(events.iter().any(|e| matches!(e, ServerEvent::SignalSent { .. })), "{events:?}");
        assert!(events.iter().any(|e| matches!(e, ServerEvent::ParticipantLeft { .. })), "{events:?}");
    }

    #[test]
    fn the_corpus_replays_without_a_panic() {
        for input in corpus("rpc_dispatch", 5) {
            super::rpc_dispatch(&input);
        }
    }
}
