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
    /// The `token` query parameter (`tok_…`), as [`token_id`] finds it.
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
        let session_id = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == "sessionId")
            .last()
            .map(|(_, v)| v.into_owned());
        let token_id = self::token_id(token).map(str::to_owned);
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

/// The token id a token carries: its first `token` query parameter (`ws://h?sessionId=S&token=tok_A`
/// → `tok_A`), or the token itself when it is a bare `tok_…` without a query. `None` otherwise.
///
/// The server looks the id up among its pending tokens on `joinRoom`; `None` or an unknown id is
/// OpenVidu's 401 "Unable to join session S. Token T is not valid".
pub fn token_id(token: &str) -> Option<&str> {
    match token.split_once('?') {
        Some((_, query)) => {
            let query = query.split('#').next().unwrap_or("");
            query.split('&').find_map(|kv| kv.strip_prefix("token="))
        }
        None => token.starts_with("tok_").then_some(token),
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
    fn finds_the_token_id_as_the_server_does() {
        assert_eq!(token_id("ws://h:1/x?sessionId=S&token=tok_A"), Some("tok_A"));
        assert_eq!(token_id("wss://h?token=tok_B&sessionId=S"), Some("tok_B"));
        assert_eq!(token_id("tok_C"), Some("tok_C"));
        assert_eq!(token_id("ws://h?sessionId=S&token=tok_D#frag"), Some("tok_D"));
        assert_eq!(token_id("ws://h?token=tok_E&token=tok_F"), Some("tok_E"));
        assert_eq!(token_id("ws://h?sessionId=S"), None);
        assert_eq!(token_id("ws://h"), None);
        assert_eq!(token_id("garbage"), None);
        let info = TokenInfo::parse("ws://h?sessionId=S&token=tok_A").unwrap();
        assert_eq!(info.token_id.as_deref(), token_id(&info.raw));
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
