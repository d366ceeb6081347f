//! Sends signals into a session as fast as the link takes them, from Rust: the sender of
//! `python/examples/handler_rate.py`, which measures how many signals per second one Python
//! handler receives.
//!
//! ```sh
//! cargo run --release -p signalroom-py --example signal_sender -- TOKEN COUNT [TO] [WINDOW]
//! ```
//!
//! Joins with `TOKEN`, sends `COUNT` signals of type `perf` (data: the sequence number) to the
//! connection `TO` (default `-`: everybody) with at most `WINDOW` (default 256) awaiting the
//! server's answer, in order, and prints `sent COUNT in SECONDS s`.

use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream;
use signalroom_client::{ConnectionId, Session, Signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(token), Some(count)) = (args.first(), args.get(1)) else {
        eprintln!("usage: signal_sender TOKEN COUNT [TO] [WINDOW]");
        std::process::exit(2);
    };
    let count: usize = count.parse()?;
    let to: Vec<ConnectionId> = match args.get(2).map(String::as_str) {
        None | Some("-") => Vec::new(),
        Some(id) => vec![ConnectionId::from(id)],
    };
    let window: usize = args.get(3).map_or(Ok(256), |w| w.parse())?;
    let (session, _events) = Session::connect(token).await?;
    let started = Instant::now();
    // `buffered` polls the sends in order, so they reach the wire in order.
    let mut sends = stream::iter(0..count)
        .map(|i| {
            let session = session.clone();
            let signal = Signal::new(i.to_string(), Some("perf"), to.clone());
            async move { session.signal(signal?).await }
        })
        .buffered(window);
    while let Some(sent) = sends.next().await {
        sent?;
    }
    println!("sent {count} in {:.3} s", started.elapsed().as_secs_f64());
    session.disconnect().await?;
    Ok(())
}
