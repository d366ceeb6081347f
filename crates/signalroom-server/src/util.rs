//! Small helpers with no better home: the clock in ms, OpenVidu-style random ids, a
//! constant-time comparison for secrets, and the client address behind a proxy.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::distr::Alphanumeric;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// An OpenVidu-style id: `prefix` + one uppercase letter + `len - 1` alphanumerics, from the
/// thread's cryptographically secure generator (tokens must not be guessable).
pub(crate) fn random_id(prefix: &str, len: usize) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    s.push(rng.random_range(b'A'..=b'Z') as char);
    s.extend((1..len).map(|_| rng.sample(Alphanumeric) as char));
    s
}

/// A JSON-RPC session id: 26 lowercase base-32 characters (130 random bits), like Kurento's.
pub(crate) fn rpc_session_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    (0..26).map(|_| ALPHABET[rng.random_range(0..32)] as char).collect()
}

/// Compares two secrets in constant time (for equal lengths).
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The client's IP: `X-Real-IP` when a proxy set it, else the peer address.
pub(crate) fn client_ip(real_ip: Option<&[u8]>, peer: std::net::SocketAddr) -> String {
    real_ip
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map_or_else(|| peer.ip().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_openvidus_shape() {
        let id = random_id("con_", 10);
        assert_eq!(id.len(), 14);
        assert!(id.as_bytes()[4].is_ascii_uppercase());
        assert!(id[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(random_id("tok_", 16), random_id("tok_", 16));
        assert_eq!(rpc_session_id().len(), 26);
    }
}
