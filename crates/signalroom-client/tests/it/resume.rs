//! Zero-loss resume, end to end: participant B listens through a [`TcpProxy`] the test breaks
//! while participant A, connected directly, sends B a numbered stream of signals. B reconnects by
//! itself and resumes after the last notification it handled (`lastSeq`): every signal arrives
//! exactly once, in order, or, when the gap outgrew the server's queue, the `reconnected` event
//! says so.
//!
//! Each test prints what B received (`lost`, `duplicated`), so a run against a server without the
//! resume extension shows what the extension saves.

use std::collections::HashSet;
use std::time::Duration;

use signalroom_client::{ConnectOptions, Event, EventReceiver, ServerApi, Session, Signal};
use signalroom_server::{Config, Server};

use crate::proxy::TcpProxy;
use crate::support::{SECRET, init_tracing, next_event};

/// Signals A sends.
const SIGNALS: usize = 300;
/// The signal A is about to send when the network breaks.
const CUT_AT: usize = 100;
/// A's pause between two signals.
const PACE: Duration = Duration::from_millis(1);
/// How long B may take to receive the last signal once A sent it (a reconnection included).
const SETTLE: Duration = Duration::from_secs(10);
/// How long B is watched for repeats after the last signal.
const QUIET: Duration = Duration::from_millis(500);

/// A server whose tokens point to a proxy in front of it.
struct Rig {
    server: Server,
    proxy: TcpProxy,
    api: ServerApi,
}

impl Rig {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        init_tracing();
        let proxy = TcpProxy::start().await;
        let public_url = format!("http://{}", proxy.addr()).parse().expect("a URL");
        let mut config = Config { secret: SECRET.into(), public_url: Some(public_url), ..Config::local() };
        tweak(&mut config);
        let server = Server::start(config).await.expect("server starts");
        proxy.forward_to(server.local_addr());
        // REST goes straight to the server: only B's socket crosses the proxy.
        let api = ServerApi::new(&format!("http://{}", server.local_addr()), SECRET).expect("REST client");
        api.create_session(Some("stream")).await.expect("session created");
        Self { server, proxy, api }
    }

    /// A token through the proxy.
    async fn token(&self) -> String {
        let conn = self.api.create_connection("stream", &Default::default()).await.expect("a token");
        conn.token
    }

    /// A token straight to the server.
    async fn direct_token(&self) -> String {
        let through = format!("ws://{}", self.proxy.addr());
        let direct = format!("ws://{}", self.server.local_addr());
        let token = self.token().await;
        assert!(token.starts_with(&through), "{token}");
        token.replacen(&through, &direct, 1)
    }
}

/// B's options: a broken link is noticed within 750 ms and reopened every 100 ms.
fn fast_pings() -> ConnectOptions {
    ConnectOptions::default()
        .with_ping(Duration::from_millis(250), Duration::from_millis(500))
        .with_reconnect(Duration::from_millis(100), 50)
}

/// What B saw.
struct Seen {
    /// The data of every signal, in arrival order.
    data: Vec<String>,
    /// What each `reconnected` said: `recovered`, `replayed`.
    reconnected: Vec<(Option<bool>, u64)>,
}

impl Seen {
    fn expected() -> Vec<String> {
        (0..SIGNALS).map(|i| i.to_string()).collect()
    }

    fn lost(&self) -> usize {
        let got: HashSet<&str> = self.data.iter().map(String::as_str).collect();
        Self::expected().iter().filter(|d| !got.contains(d.as_str())).count()
    }

    fn duplicated(&self) -> usize {
        self.data.len() - self.data.iter().collect::<HashSet<_>>().len()
    }

    fn in_order(&self) -> bool {
        let numbers: Vec<usize> = self.data.iter().map(|d| d.parse().expect("a number")).collect();
        numbers.windows(2).all(|w| w[0] < w[1])
    }

    fn report(&self, test: &str) {
        eprintln!(
            "{test}: B received {} signals of {SIGNALS}: lost {}, duplicated {}, in order {}; reconnected {:?}",
            self.data.len(),
            self.lost(),
            self.duplicated(),
            self.in_order(),
            self.reconnected,
        );
    }
}

/// Collects B's signals and reconnections until the last signal arrived and [`QUIET`] passed, or
/// [`SETTLE`] after `sent` resolves.
async fn watch(mut events: EventReceiver, sent: tokio::sync::oneshot::Receiver<()>) -> Seen {
    let mut seen = Seen { data: Vec::new(), reconnected: Vec::new() };
    let last = (SIGNALS - 1).to_string();
    let mut deadline = None::<tokio::time::Instant>;
    let mut sent = Some(sent);
    loop {
        let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let event = tokio::select! {
            e = events.recv() => e,
            _ = async { sent.as_mut().expect("present").await }, if sent.is_some() => {
                sent = None;
                deadline.get_or_insert(tokio::time::Instant::now() + SETTLE);
                continue;
            }
            _ = tokio::time::sleep_until(until) => break,
        };
        match event {
            Some(Event::Signal(s)) if s.kind == "signal:n" => {
                if s.data == last {
                    deadline = Some(tokio::time::Instant::now() + QUIET);
                }
                seen.data.push(s.data);
            }
            Some(Event::Reconnected { recovered, replayed }) => seen.reconnected.push((recovered, replayed)),
            Some(Event::SessionDisconnected { reason }) => panic!("B's session ended: {reason}"),
            Some(_) => {}
            None => break,
        }
    }
    seen
}

/// B joins through the proxy, A joins directly and sends B [`SIGNALS`] signals; `cut` breaks the
/// network as A is about to send signal [`CUT_AT`].
async fn stream_through(rig: &Rig, cut: impl FnOnce(&TcpProxy)) -> Seen {
    let (b, mut b_events) = Session::connect_with(&rig.token().await, fast_pings()).await.expect("B joins");
    assert_eq!(next_event(&mut b_events).await, Event::ConnectionCreated(b.connection()));
    let (a, _a_events) = Session::connect(&rig.direct_token().await).await.expect("A joins");
    assert_eq!(next_event(&mut b_events).await, Event::ConnectionCreated(a.connection()));

    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let watching = tokio::spawn(watch(b_events, sent_rx));
    let mut cut = Some(cut);
    let started = std::time::Instant::now();
    for i in 0..SIGNALS {
        if i == CUT_AT {
            eprintln!("cut after {} ms", started.elapsed().as_millis());
            (cut.take().expect("one cut"))(&rig.proxy);
        }
        let to_b = Signal::new(i.to_string(), Some("n"), vec![b.connection_id().clone()]).expect("a signal");
        a.signal(to_b).await.unwrap_or_else(|e| panic!("A's signal {i}: {e}"));
        tokio::time::sleep(PACE).await;
    }
    eprintln!("A sent {SIGNALS} signals in {} ms", started.elapsed().as_millis());
    let _ = sent_tx.send(());
    let seen = watching.await.expect("the watcher ran");
    a.disconnect().await.expect("A leaves");
    b.disconnect().await.expect("B leaves");
    seen
}

fn assert_every_signal_once_in_order(seen: &Seen) {
    assert!(!seen.reconnected.is_empty(), "B never reconnected");
    assert!(
        seen.reconnected.iter().all(|&(recovered, _)| recovered == Some(true)),
        "a reconnection was not a full recovery: {:?}",
        seen.reconnected
    );
    assert_eq!(
        (seen.lost(), seen.duplicated()),
        (0, 0),
        "lost and duplicated signals; reconnected {:?}",
        seen.reconnected
    );
    assert_eq!(seen.data, Seen::expected());
}

#[tokio::test]
async fn a_reset_connection_loses_nothing_and_repeats_nothing() {
    let rig = Rig::start(|_| {}).await;
    let seen = stream_through(&rig, TcpProxy::reset).await;
    seen.report("reset");
    assert_every_signal_once_in_order(&seen);
    rig.server.shutdown().await;
}

#[tokio::test]
async fn a_silent_network_loses_nothing_and_repeats_nothing() {
    let rig = Rig::start(|_| {}).await;
    let seen = stream_through(&rig, |proxy| proxy.blackhole(Duration::from_secs(2))).await;
    seen.report("blackhole 2 s");
    assert_every_signal_once_in_order(&seen);
    rig.server.shutdown().await;
}

#[tokio::test]
async fn a_gap_larger_than_the_queue_is_reported_and_repeats_nothing() {
    // The server keeps at most 32 notifications per participant: a 2 s silence at 1 signal per
    // millisecond or so outgrows it.
    let rig = Rig::start(|c| c.send_queue_capacity = 32).await;
    let seen = stream_through(&rig, |proxy| proxy.blackhole(Duration::from_secs(2))).await;
    seen.report("blackhole 2 s, queue of 32");
    assert!(
        seen.reconnected.iter().any(|&(recovered, _)| recovered == Some(false)),
        "no reconnection reported a loss: {:?}",
        seen.reconnected
    );
    assert!(seen.lost() > 0, "a loss was reported but every signal arrived");
    assert_eq!(seen.duplicated(), 0);
    assert!(seen.in_order(), "{:?}", seen.data);
    rig.server.shutdown().await;
}
