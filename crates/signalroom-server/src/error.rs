//! Why the server could not start ([`Error`]), each variant saying whether retrying helps.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the server could not start. Each variant says whether retrying helps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening address cannot be bound or set up: it is in use, not local, or needs
    /// privileges. Retrying may help once the other process releases the port; otherwise pick
    /// another address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be read or is not valid PEM. Retrying will not help: fix
    /// the files.
    #[error("cannot load TLS certificate {} and key {}: {source}", cert.display(), key.display())]
    Tls {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// What went wrong reading or parsing them.
        #[source]
        source: std::io::Error,
    },
    /// The public URL (what tokens point to) is unusable. Retrying will not help.
    #[error("public URL {url} {reason}")]
    PublicUrl {
        /// The URL given or derived.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker (Redis) cannot be reached or the URL is not valid. Retrying helps once Redis is
    /// up, if the URL is right.
    #[error("cannot use the broker at {url}: {reason}")]
    Broker {
        /// The broker URL (without its password).
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A configuration value is out of range (e.g. a zero queue size). Retrying will not help.
    #[error("invalid configuration: {0}")]
    Config(String),
}
