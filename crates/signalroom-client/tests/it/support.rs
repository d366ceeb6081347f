//! What the client's integration tests share: the step timeout, logs, an in-process server and
//! helpers to connect participants and wait for their events.

use std::time::Duration;

use signalroom_client::{ConnectOptions, Event, EventReceiver, Session, Subscription};

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(5);

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Options for tests: the protocol's defaults, with fast reconnection.
pub fn fast() -> ConnectOptions {
    ConnectOptions::default().with_reconnect(Duration::from_millis(100), 3)
}

/// The next event, within [`STEP`].
pub async fn next_event(events: &mut EventReceiver) -> Event {
    tokio::time::timeout(STEP, events.recv()).await.expect("no event in time").expect("event channel closed")
}

/// The next event that is not a signal, within [`STEP`].
pub async fn next_non_signal(events: &mut EventReceiver) -> Event {
    loop {
        match next_event(events).await {
            Event::Signal(_) => continue,
            other => return other,
        }
    }
}

/// Asserts that no event arrives within `wait`.
pub async fn expect_no_event(events: &mut EventReceiver, wait: Duration) {
    if let Ok(ev) = tokio::time::timeout(wait, events.recv()).await {
        panic!("unexpected event {ev:?}");
    }
}

/// Asserts that the channel is closed (after `SessionDisconnected`).
pub async fn expect_closed(events: &mut EventReceiver) {
    match tokio::time::timeout(STEP, events.recv()).await {
        Ok(None) => {}
        Ok(Some(ev)) => panic!("expected the end of events, got {ev:?}"),
        Err(_) => panic!("event channel still open"),
    }
}

/// The next signal of a subscription, within [`STEP`].
pub async fn next_signal(sub: &mut Subscription) -> signalroom_client::SignalEvent {
    tokio::time::timeout(STEP, sub.recv()).await.expect("no signal in time").expect("subscription ended")
}

/// The REST secret of the test servers.
pub const SECRET: &str = "client-test-secret";

/// A real signalroom server on `127.0.0.1:0` and a REST client for it.
pub struct TestServer {
    pub server: Option<signalroom_server::Server>,
    pub api: signalroom_client::ServerApi,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut signalroom_server::Config)) -> Self {
        init_tracing();
        let mut config =
            signalroom_server::Config { secret: SECRET.into(), ..signalroom_server::Config::local() };
        tweak(&mut config);
        let server = signalroom_server::Server::start(config).await.expect("server starts");
        let api = signalroom_client::ServerApi::new(server.url(), SECRET).unwrap();
        Self { server: Some(server), api }
    }

    pub fn server(&self) -> &signalroom_server::Server {
        self.server.as_ref().expect("running")
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// A token of `session` (created if needed) with server data `data`.
    pub async fn token(&self, session: &str, data: &str) -> String {
        self.api.create_session(Some(session)).await.unwrap();
        let opts = signalroom_client::ConnectionOptions::default().with_data(data);
        self.api.create_connection(session, &opts).await.unwrap().token
    }

    /// Joins `session` with server data `data` and `options`; the first event (self) is consumed.
    pub async fn join_with(
        &self,
        session: &str,
        data: &str,
        options: ConnectOptions,
    ) -> (Session, EventReceiver) {
        let token = self.token(session, data).await;
        let (s, mut events) = Session::connect_with(&token, options).await.expect("joins");
        assert_eq!(next_event(&mut events).await, Event::ConnectionCreated(s.connection()));
        (s, events)
    }

    pub async fn join(&self, session: &str, data: &str) -> (Session, EventReceiver) {
        self.join_with(session, data, fast()).await
    }
}

/// A TCP proxy in front of a server, to break and restore the network between client and
/// server without either of them knowing.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    target: std::sync::Arc<parking_lot::Mutex<Option<std::net::SocketAddr>>>,
    tasks: std::sync::Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port; forwards nowhere until [`Proxy::forward_to`].
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = Self { addr, target: Default::default(), tasks: Default::default(), accept: None };
        proxy.accept = Some(proxy.serve(listener));
        proxy
    }

    pub fn forward_to(&self, target: std::net::SocketAddr) {
        *self.target.lock() = Some(target);
    }

    fn serve(&self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let target = self.target.clone();
        let tasks = self.tasks.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(to) = *target.lock() else { continue };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().push(task);
            }
        })
    }

    /// Cuts every connection and stops listening: the port refuses connections.
    pub fn cut(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.accept = Some(self.serve(listener));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
