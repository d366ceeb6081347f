//! A loopback TCP proxy a test controls, to break the network between a client and a server
//! the way networks break: every connection reset at once (RST both ways), or silence (bytes stop
//! flowing, nobody is told) that ends in a reset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes read from one side before they are written to the other.
const CHUNK: usize = 16 * 1024;

/// What the test orders one connection pair.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Reset both sides now.
    Reset,
    /// Forward nothing for this long, then reset both sides.
    Blackhole(Duration),
}

/// A proxy on `127.0.0.1:0` forwarding to a target set with [`TcpProxy::forward_to`]. The cuts
/// apply to the connections open at the time; later connections are forwarded normally.
pub struct TcpProxy {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    pairs: Arc<Mutex<Vec<mpsc::UnboundedSender<Cut>>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port; connections are refused (closed) until
    /// [`forward_to`](Self::forward_to).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let target = Arc::new(Mutex::new(None));
        let pairs = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn(accept_loop(listener, target.clone(), pairs.clone()));
        Self { addr, target, pairs, accept }
    }

    /// Where clients connect: `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forwards new connections to `target`.
    pub fn forward_to(&self, target: SocketAddr) {
        *self.target.lock() = Some(target);
    }

    /// Aborts every open connection pair with an RST on both sides.
    pub fn reset(&self) {
        self.cut(Cut::Reset);
    }

    /// Stops forwarding bytes, both ways, on every open connection pair for `duration`, then
    /// resets them. Neither side is told until the reset.
    pub fn blackhole(&self, duration: Duration) {
        self.cut(Cut::Blackhole(duration));
    }

    fn cut(&self, cut: Cut) {
        let pairs = std::mem::take(&mut *self.pairs.lock());
        tracing::debug!(pairs = pairs.len(), ?cut, "proxy cut");
        for pair in pairs {
            let _ = pair.send(cut);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: Arc<Mutex<Option<SocketAddr>>>,
    pairs: Arc<Mutex<Vec<mpsc::UnboundedSender<Cut>>>>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let Some(to) = *target.lock() else { continue };
        let (tx, rx) = mpsc::unbounded_channel();
        pairs.lock().retain(|p| !p.is_closed());
        pairs.lock().push(tx);
        tokio::spawn(async move {
            match TcpStream::connect(to).await {
                Ok(server) => pump(client, server, rx).await,
                Err(e) => tracing::debug!(error = %e, "proxy cannot reach its target"),
            }
        });
    }
}

/// Forwards both ways until both sides closed; on a cut (or a side that fails), resets both.
async fn pump(mut client: TcpStream, mut server: TcpStream, mut cuts: mpsc::UnboundedReceiver<Cut>) {
    let (mut up, mut down) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let (mut client_open, mut server_open) = (true, true);
    let cut = loop {
        if !(client_open || server_open) {
            return;
        }
        tokio::select! {
            Some(cut) = cuts.recv() => break cut,
            n = client.read(&mut up), if client_open => match n {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = server.shutdown().await;
                }
                Ok(n) => {
                    if server.write_all(&up[..n]).await.is_err() {
                        break Cut::Reset;
                    }
                }
            },
            n = server.read(&mut down), if server_open => match n {
                Ok(0) | Err(_) => {
                    server_open = false;
                    let _ = client.shutdown().await;
                }
                Ok(n) => {
                    if client.write_all(&down[..n]).await.is_err() {
                        break Cut::Reset;
                    }
                }
            },
        }
    };
    if let Cut::Blackhole(duration) = cut {
        // Nothing is read, so nothing flows; the kernel buffers fill and stay full.
        tokio::time::sleep(duration).await;
    }
    // An RST on both sides: dropped with a zero linger, a socket is aborted, not closed.
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
}
