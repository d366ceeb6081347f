//! Entry point for the fuzz target in `fuzz/` and for the test that replays its corpus on the
//! stable toolchain: takes arbitrary bytes, and must not panic.

use tokio::sync::mpsc;

use crate::options::ConnectOptions;
use crate::pending::PendingKind;
use crate::state::Shared;
use signalroom_core::token::TokenInfo;

/// Inbound frames (one a line), decoded by a session whose requests 0 (`joinRoom`), 1 (a plain
/// one) and 2 (`connect`) wait for their answers.
pub fn inbound(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let token = TokenInfo::parse("ws://127.0.0.1:1?sessionId=S1&token=tok_A").expect("a valid token");
    let (events, mut received) = mpsc::unbounded_channel();
    let (shared, _channels) = Shared::new(token, ConnectOptions::default(), events);
    let _waiting: Vec<_> = {
        let mut state = shared.state.lock();
        [
            ("joinRoom", PendingKind::JoinRoom),
            ("signal", PendingKind::Plain),
            ("connect", PendingKind::Reconnect),
        ]
        .into_iter()
        .map(|(method, kind)| shared.register(&mut state, method, None, kind).1)
        .collect()
    };
    for frame in text.lines() {
        if shared.handle_frame(frame).is_some() {
            break;
        }
        while received.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    /// Every input of a fuzz target's corpus (`fuzz/corpus/<target>`), at least `min` of them.
    pub(crate) fn corpus(target: &str, min: usize) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
        let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
            .collect();
        assert!(inputs.len() >= min, "{}: {} inputs, expected at least {min}", dir.display(), inputs.len());
        inputs
    }

    #[test]
    fn the_corpus_replays_without_a_panic() {
        for input in corpus("client_inbound", 5) {
            super::inbound(&input);
        }
    }
}
