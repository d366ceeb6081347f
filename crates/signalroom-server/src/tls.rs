//! Development TLS: a self-signed certificate made at start (`--tls-self-signed`).

use std::fmt::Write as _;

/// A certificate and its key, in PEM, and the certificate's SHA-256 fingerprint.
pub(crate) struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    /// `AB:CD:...`, as browsers and `openssl x509 -fingerprint -sha256` show it.
    pub fingerprint: String,
}

/// A certificate for `host` (and `localhost`, `127.0.0.1`, `::1`), valid from now on.
pub(crate) fn self_signed(host: &str) -> Result<SelfSigned, rcgen::Error> {
    let mut names = vec![host.trim_start_matches('[').trim_end_matches(']').to_owned()];
    for also in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == also) {
            names.push(also.to_owned());
        }
    }
    let made = rcgen::generate_simple_self_signed(names)?;
    Ok(SelfSigned {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        fingerprint: fingerprint(made.cert.der()),
    })
}

/// The SHA-256 fingerprint of a DER certificate, as colon-separated hex pairs.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = String::with_capacity(95);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn makes_a_certificate_for_the_host_and_loopback() {
        let made = super::self_signed("example.test").unwrap();
        assert!(made.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(made.key_pem.contains("PRIVATE KEY"));
        assert_eq!(made.fingerprint.len(), 32 * 3 - 1);
        assert_ne!(made.fingerprint, super::self_signed("example.test").unwrap().fingerprint);
    }
}
