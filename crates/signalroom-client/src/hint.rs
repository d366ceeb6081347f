//! What to do about an [`Error`]: one table of hints, shared by the `signalroom` command line and
//! the Python package (`signalroom._native` builds its exception messages with it), so that both
//! say the same. A hint names the fix in the words of whoever reads it: a flag (`--insecure`) on
//! the command line, an argument (`accept_invalid_certs=True`) in Python.
//!
//! ```
//! use signalroom_client::{Audience, Error};
//!
//! let refused = Error::Api { status: 404, message: "Not Found".into() };
//! assert_eq!(
//!     refused.explain(Audience::CommandLine),
//!     "server API 404: Not Found; no such session or connection"
//! );
//! ```

use std::error::Error as StdError;

use signalroom_core::jsonrpc::codes;

use crate::error::Error;

/// Who reads a hint: its fix names that front end's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Audience {
    /// The `signalroom` command line: `--url`, `--secret`, `--insecure`, `signalroom token`.
    CommandLine,
    /// The Python package: `ServerApi(url, secret)`, `accept_invalid_certs=True`.
    Python,
}

/// What probably went wrong, as far as the error tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// REST 401: the secret is not the server's.
    WrongSecret,
    /// REST 404.
    NoSuchSessionOrConnection,
    /// REST 406: a recipient is not in the session, or nobody has joined it.
    NotInSession,
    /// REST 409.
    SessionExists,
    /// REST 503: the server is at a limit, or its broker is unreachable.
    Unavailable,
    /// Nothing listens at the address.
    Refused,
    /// The server's TLS certificate is not trusted (a self-signed development certificate).
    UntrustedCertificate,
    /// TLS was spoken to a server that does not speak it.
    NotTls,
    /// No answer in time.
    NoAnswer,
    /// The server could not be reached, for another reason.
    Unreachable,
    /// `joinRoom` refused the token (401).
    TokenUnusable,
    /// Another request refused for the participant's role (401).
    RoleTooLow,
    /// The session does not exist (any more) (202, 203).
    NoSuchSession,
    /// A signal's recipient is not in the session (601).
    RecipientAbsent,
    /// A malformed signal (600).
    BadSignal,
    /// A media method (301).
    MediaNotSupported,
    /// No such connection in the session (102).
    NoSuchConnection,
    /// The link dropped while a request was out.
    Reconnecting,
    /// The session is over.
    SessionOver,
    /// The answer was not OpenVidu's.
    NotOpenVidu,
}

impl Cause {
    /// What to do about it, for `audience`: the one table of hints.
    pub fn hint(self, audience: Audience) -> &'static str {
        use Audience::{CommandLine as Cli, Python as Py};
        match (self, audience) {
            (Cause::WrongSecret, Cli) => "wrong secret: pass the server's with --secret or OPENVIDU_SECRET",
            (Cause::WrongSecret, Py) => "wrong secret: pass the server's OPENVIDU_SECRET",
            (Cause::NoSuchSessionOrConnection, _) => "no such session or connection",
            (Cause::NotInSession, _) => "a recipient is not in the session, or nobody has joined it yet",
            (Cause::SessionExists, _) => "a session with that id exists already",
            (Cause::Unavailable, _) => {
                "the server is at its session limit or cannot reach its broker: retry later"
            }
            (Cause::Refused, Cli) => {
                "connection refused: is the server running? pass --url (or SIGNALROOM_URL) if it listens elsewhere"
            }
            (Cause::Refused, Py) => "connection refused: is the server running, at that address?",
            (Cause::UntrustedCertificate, Cli) => {
                "the server's TLS certificate is not trusted: for a development server (--tls-self-signed), \
                 check the SHA-256 fingerprint it printed at start and pass --insecure, or trust its certificate"
            }
            (Cause::UntrustedCertificate, Py) => {
                "the server's TLS certificate is not trusted: for a development server (--tls-self-signed), \
                 check the SHA-256 fingerprint it printed at start and pass accept_invalid_certs=True, or trust \
                 its certificate"
            }
            (Cause::NotTls, Cli) => "the server does not speak TLS: use an http:// URL",
            (Cause::NotTls, Py) => "the server does not speak TLS: use an http:// URL (ws:// token)",
            (Cause::NoAnswer, _) => {
                "the server is slow or unreachable; the request may or may not have been processed"
            }
            (Cause::Unreachable, Cli) => "is the server running at that URL? pass --url if it is elsewhere",
            (Cause::Unreachable, Py) => "is the server running, and is its address reachable from here?",
            (Cause::TokenUnusable, Cli) => {
                "the token is unknown or already used: make a new one (signalroom token SESSION)"
            }
            (Cause::TokenUnusable, Py) => {
                "the token is unknown or already used: create a new connection \
                 (ServerApi.create_connection) and join with its token"
            }
            (Cause::RoleTooLow, _) => {
                "this participant's role does not allow it (forceDisconnect needs MODERATOR)"
            }
            (Cause::NoSuchSession, Cli) => {
                "the session does not exist (any more): make a new token (signalroom token SESSION creates it)"
            }
            (Cause::NoSuchSession, Py) => {
                "the session does not exist (any more): create it (ServerApi.create_session) and a new token"
            }
            (Cause::RecipientAbsent, _) => {
                "nothing was delivered: send only to connections now in the session"
            }
            (Cause::BadSignal, _) => "nothing was delivered: fix the signal (type, data size)",
            (Cause::MediaNotSupported, _) => "signalroom is signalling only: no audio or video",
            (Cause::NoSuchConnection, _) => "no such connection in the session",
            (Cause::Reconnecting, _) => {
                "the session is reconnecting: the request may or may not have been processed"
            }
            (Cause::SessionOver, _) => "this session is over; join again with a new token",
            (Cause::NotOpenVidu, _) => "is this an OpenVidu 2.x server?",
        }
    }
}

impl Error {
    /// What probably caused this error, when the error tells.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Error::Api { status, .. } => match status {
                401 => Some(Cause::WrongSecret),
                404 => Some(Cause::NoSuchSessionOrConnection),
                406 => Some(Cause::NotInSession),
                409 => Some(Cause::SessionExists),
                503 => Some(Cause::Unavailable),
                _ => None,
            },
            Error::Rpc { method, code, .. } => match *code {
                codes::TOKEN_INVALID if *method == "joinRoom" => Some(Cause::TokenUnusable),
                codes::TOKEN_INVALID => Some(Cause::RoleTooLow),
                codes::ROOM_NOT_FOUND | codes::ROOM_CLOSED => Some(Cause::NoSuchSession),
                codes::SIGNAL_TO_INVALID => Some(Cause::RecipientAbsent),
                codes::SIGNAL_FORMAT_INVALID => Some(Cause::BadSignal),
                codes::MEDIA_NOT_SUPPORTED => Some(Cause::MediaNotSupported),
                codes::USER_NOT_FOUND => Some(Cause::NoSuchConnection),
                _ => None,
            },
            Error::Http(source) | Error::Connect { source, .. } => {
                Some(transport_cause(source.as_ref()).unwrap_or(Cause::Unreachable))
            }
            Error::Timeout { .. } => Some(Cause::NoAnswer),
            Error::ConnectionLost { .. } => Some(Cause::Reconnecting),
            Error::Disconnected { .. } => Some(Cause::SessionOver),
            Error::UnexpectedResponse { .. } => Some(Cause::NotOpenVidu),
            Error::Invalid(_) | Error::Request { .. } => None,
        }
    }

    /// The error's message, with what lies under a transport error (`Connection refused`,
    /// `invalid peer certificate: UnknownIssuer`) and, when the cause is known, what to do about
    /// it in `audience`'s words: `<message>[: <underlying>][; <hint>]`.
    pub fn explain(&self, audience: Audience) -> String {
        let mut text = self.to_string();
        if let Error::Http(source) = self {
            // reqwest's message names the request, not what failed.
            let innermost = innermost(source.as_ref()).to_string();
            if !text.contains(&innermost) {
                text = format!("{text}: {innermost}");
            }
        }
        match self.cause() {
            Some(cause) => format!("{text}; {}", cause.hint(audience)),
            None => text,
        }
    }
}

/// The last error of `error`'s chain of sources.
fn innermost<'a>(error: &'a (dyn StdError + 'static)) -> &'a (dyn StdError + 'static) {
    let mut error = error;
    while let Some(source) = error.source() {
        error = source;
    }
    error
}

/// What a transport error (reqwest's, tungstenite's) comes down to, when its chain tells.
fn transport_cause(error: &(dyn StdError + 'static)) -> Option<Cause> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(cause) = error.downcast_ref::<rustls::Error>().and_then(tls_cause) {
            return Some(cause);
        }
        if error.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout) {
            return Some(Cause::NoAnswer);
        }
        let io = error.downcast_ref::<std::io::Error>();
        match io.map(std::io::Error::kind) {
            Some(std::io::ErrorKind::ConnectionRefused) => return Some(Cause::Refused),
            Some(std::io::ErrorKind::TimedOut) => return Some(Cause::NoAnswer),
            _ => {}
        }
        // An I/O error made from another (rustls's, or an I/O error, under hyper) hides it from
        // `source()`.
        next = match io.and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner),
            None => error.source(),
        };
    }
    None
}

fn tls_cause(error: &rustls::Error) -> Option<Cause> {
    match error {
        rustls::Error::InvalidCertificate(_) => Some(Cause::UntrustedCertificate),
        rustls::Error::InvalidMessage(_) => Some(Cause::NotTls),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rest_status_has_its_hint_on_both_front_ends() {
        for (status, words) in [
            (401, "wrong secret"),
            (404, "no such session or connection"),
            (406, "a recipient is not in the session, or nobody has joined it yet"),
            (409, "exists already"),
        ] {
            let error = Error::Api { status, message: "x".into() };
            for audience in [Audience::CommandLine, Audience::Python] {
                assert!(error.explain(audience).contains(words), "{status} {audience:?}");
            }
        }
        assert_eq!(
            Error::Api { status: 500, message: "boom".into() }.explain(Audience::Python),
            "server API 500: boom"
        );
    }

    #[test]
    fn a_refused_connection_says_so_and_where_to_point() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let error = Error::Http(Box::new(Wrapped(refused)));
        assert_eq!(error.cause(), Some(Cause::Refused));
        let cli = error.explain(Audience::CommandLine);
        assert!(
            cli.contains("connection refused") && cli.contains("is the server running? pass --url"),
            "{cli}"
        );
    }

    #[test]
    fn an_untrusted_certificate_names_the_fix_of_each_front_end() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As hyper hands it over: inside an I/O error inside another.
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls.clone());
        let error = Error::Http(Box::new(Wrapped(std::io::Error::other(io))));
        assert_eq!(error.cause(), Some(Cause::UntrustedCertificate));
        let cli = error.explain(Audience::CommandLine);
        assert!(
            cli.contains("invalid peer certificate: UnknownIssuer") && cli.contains("--insecure"),
            "{cli}"
        );
        assert!(!cli.contains("is the server running"), "{cli}");
        // As tungstenite hands it over: a source of its own.
        let error = Error::Connect { url: "wss://h/".into(), source: Box::new(tls) };
        assert!(error.explain(Audience::Python).contains("accept_invalid_certs=True"));
    }

    /// An error whose source is `.0`, as reqwest's and hyper's are.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error sending request")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }
}
