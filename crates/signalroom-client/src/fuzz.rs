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
    use signalroom_core::fuzz::corpus;

    #[test]
    fn the_corpus_replays_without_a_panic() {
        for input in corpus("client_inbound", 5) {
            super::inbound(&input);
        }
    }
}
