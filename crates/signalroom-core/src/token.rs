//! OpenVidu tokens: `ws[s]://host[:port]?sessionId=<S>&token=tok_<16>` (spec §1).

use url::Url;

use crate::error::{Error, Result};

/// A token as openvidu-browser reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// `true` for `wss://`.
    pub secure: bool,
    /// `host[:port]`.
    pub authority: String,
    /// The `sessionId` query parameter.
    pub session_id: Option<String>,
    /// The `token` query parameter (`tok_…`).
    pub token_id: Option<String>,
    /// The whole token, sent verbatim as `joinRoom.token`.
    pub raw: String,
}

impl TokenInfo {
    /// Parses a token as openvidu-browser 2.32.2 does: `ws://` or `wss://`, an authority, any path
    /// (ignored), and a query.
    pub fn parse(token: &str) -> Result<Self> {
        let invalid = || Error::InvalidToken(token.to_owned());
        let (secure, rest) = if let Some(r) = token.strip_prefix("wss://") {
            (true, r)
        } else if let Some(r) = token.strip_prefix("ws://") {
            (false, r)
        } else {
            return Err(invalid());
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty() || authority.contains(char::is_whitespace) {
            return Err(invalid());
        }
        let query = rest.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or("")).unwrap_or("");
        let mut session_id = None;
        let mut token_id = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "sessionId" => session_id = Some(v.into_owned()),
                "token" => token_id = Some(v.into_owned()),
                _ => {}
            }
        }
        Ok(Self { secure, authority: authority.to_owned(), session_id, token_id, raw: token.to_owned() })
    }

    /// The WebSocket URL openvidu-browser connects to: `<scheme>://<authority>/openvidu?sessionId=<S>`,
    /// plus `&reconnect=true` when reconnecting.
    pub fn websocket_url(&self, reconnect: bool) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        let session = self.session_id.as_deref().unwrap_or("undefined");
        let session: String = url::form_urlencoded::byte_serialize(session.as_bytes()).collect();
        let mut url = format!("{scheme}://{}/openvidu?sessionId={session}", self.authority);
        if reconnect {
            url.push_str("&reconnect=true");
        }
        url
    }
}

/// The base of every token for a server whose public URL is `public_url` (`http(s)://host[:port]`):
/// the scheme swapped to `ws(s)`, the path dropped, the default port omitted.
pub fn token_base(public_url: &Url) -> Result<String> {
    let scheme = match public_url.scheme() {
        "https" | "wss" => "wss",
        "http" | "ws" => "ws",
        _ => return Err(Error::InvalidToken(public_url.to_string())),
    };
    let host = public_url.host_str().ok_or_else(|| Error::InvalidToken(public_url.to_string()))?;
    let host =
        if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    let default_port = if scheme == "wss" { 443 } else { 80 };
    Ok(match public_url.port() {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// A token: `<base>?sessionId=<S>&token=<T>`.
pub fn build_token(base: &str, session_id: &str, token_id: &str) -> String {
    format!("{base}?sessionId={session_id}&token={token_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tokens_like_openvidu_browser() {
        let t = TokenInfo::parse("ws://127.0.0.1:18443/ignored/path?sessionId=S1&token=tok_A").unwrap();
        assert!(!t.secure);
        assert_eq!(t.authority, "127.0.0.1:18443");
        assert_eq!(t.session_id.as_deref(), Some("S1"));
        assert_eq!(t.token_id.as_deref(), Some("tok_A"));
        assert_eq!(t.websocket_url(false), "ws://127.0.0.1:18443/openvidu?sessionId=S1");
        assert_eq!(t.websocket_url(true), "ws://127.0.0.1:18443/openvidu?sessionId=S1&reconnect=true");

        let t = TokenInfo::parse(
            "wss://ov.example.com?sessionId=ses_YnDaGYNcd7&token=tok_AVe8o7iltWqtijyl&role=PUBLISHER&version=2.15.0",
        )
        .unwrap();
        assert!(t.secure);
        assert_eq!(t.websocket_url(false), "wss://ov.example.com/openvidu?sessionId=ses_YnDaGYNcd7");
    }

    #[test]
    fn refuses_what_openvidu_browser_refuses() {
        for bad in ["tok_AVe8o7iltWqtijyl", "http://h?sessionId=S", "ws://", "wss://?x"] {
            assert!(TokenInfo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builds_tokens_from_the_public_url() {
        let b = token_base(&Url::parse("https://ov.example.com/").unwrap()).unwrap();
        assert_eq!(b, "wss://ov.example.com");
        let b = token_base(&Url::parse("http://localhost:4443").unwrap()).unwrap();
        assert_eq!(b, "ws://localhost:4443");
        assert_eq!(build_token(&b, "S1", "tok_A"), "ws://localhost:4443?sessionId=S1&token=tok_A");
    }
}
