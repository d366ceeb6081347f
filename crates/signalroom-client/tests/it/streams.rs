//! Text streams between two Rust participants (`Session::open_stream`, `Session::streams`),
//! against the real server: any size, in order, aborted, the sender leaving, flow control.

use std::time::Duration;

use signalroom_client::{StreamAborted, WINDOW_BYTES};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_large_text_arrives_whole_and_ten_thousand_chunks_in_order() {
    let ts = TestServer::start().await;
    let (alice, _alice_events) = ts.join("room", "alice").await;
    let (bob, _bob_events) = ts.join("room", "bob").await;
    let mut incoming = bob.streams(Some("report"));
    let pattern = "plain, \"quotes\", back\\slashes, new\nlines, \u{1}, é, 漢字, 🎉. ";
    let text = pattern.repeat(2_000_000 / pattern.len());
    let sending = tokio::spawn({
        let (alice, text, bob_id) = (alice.clone(), text.clone(), bob.connection_id().clone());
        async move { alice.send_text(&text, &[bob_id], "report").await }
    });
    let stream = tokio::time::timeout(WAIT, incoming.recv()).await.unwrap().unwrap();
    assert_eq!(stream.sender.connection_id, *alice.connection_id());
    assert_eq!(stream.total, Some(text.len() as u64));
    assert_eq!(tokio::time::timeout(WAIT, stream.text()).await.unwrap().unwrap(), text);
    sending.await.unwrap().unwrap();

    // The reader reads while the writer writes: the writer keeps within a window of it.
    let mut incoming = bob.streams(Some("count"));
    let reading = tokio::spawn(async move {
        let mut stream = incoming.recv().await.unwrap();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next_chunk().await {
            chunks.push(chunk.unwrap());
        }
        chunks
    });
    let mut writer = alice.open_stream(&[], "count", None);
    for i in 0..10_000 {
        writer.write(&format!("{i},")).await.unwrap();
    }
    writer.close().await.unwrap();
    let chunks = tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
    assert_eq!(chunks, (0..10_000).map(|i| format!("{i},")).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_aborted_stream_and_a_sender_leaving_raise_at_the_reader() {
    let ts = TestServer::start().await;
    let (alice, _alice_events) = ts.join("room", "alice").await;
    let (bob, _bob_events) = ts.join("room", "bob").await;
    let mut incoming = bob.streams(None);
    let mut writer = alice.open_stream(&[bob.connection_id().clone()], "answer", None);
    writer.write("the beginning").await.unwrap();
    writer.abort("changed my mind").await.unwrap();
    let mut stream = incoming.recv().await.unwrap();
    assert_eq!(stream.next_chunk().await.unwrap().unwrap(), "the beginning");
    let aborted: StreamAborted = stream.next_chunk().await.unwrap().unwrap_err();
    assert_eq!(aborted.reason, "changed my mind");

    let mut writer = alice.open_stream(&[], "answer", None);
    writer.write("half").await.unwrap();
    let stream = incoming.recv().await.unwrap();
    alice.disconnect().await.unwrap();
    assert_eq!(stream.text().await.unwrap_err().reason, "sender left");
}

#[tokio::test]
async fn a_writer_faster_than_its_reader_waits() {
    let ts = TestServer::start().await;
    let (alice, _alice_events) = ts.join("room", "alice").await;
    let (bob, _bob_events) = ts.join("room", "bob").await;
    let mut incoming = bob.streams(Some("flood"));
    let piece = "x".repeat(40_000);
    let pieces = 3 * WINDOW_BYTES as usize / piece.len();
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let writing = tokio::spawn({
        let (alice, piece, bob_id) = (alice.clone(), piece.clone(), bob.connection_id().clone());
        async move {
            let mut writer = alice.open_stream(&[bob_id], "flood", None);
            for _ in 0..pieces {
                writer.write(&piece).await.unwrap();
                let _ = progress_tx.send(writer.written());
            }
            writer.close().await.unwrap();
        }
    });
    let mut stream = incoming.recv().await.unwrap();
    assert_eq!(stream.next_chunk().await.unwrap().unwrap(), piece);
    // The writer stops within a window (and a piece) of what was read, and stays there.
    progress.wait_for(|&w| w + piece.len() as u64 >= WINDOW_BYTES).await.unwrap();
    assert!(
        tokio::time::timeout(
            Duration::from_millis(500),
            progress.wait_for(|&w| w > WINDOW_BYTES + 2 * piece.len() as u64)
        )
        .await
        .is_err()
    );
    assert!(!writing.is_finished());
    let mut read = piece.len();
    while let Some(chunk) = stream.next_chunk().await {
        read += chunk.unwrap().len();
    }
    writing.await.unwrap();
    assert_eq!(read, pieces * piece.len());
}
