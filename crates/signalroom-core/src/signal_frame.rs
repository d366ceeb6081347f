//! A `sendMessage` request read by hand: every signal's way into the server.
//!
//! A signal arrives as JSON inside a JSON string:
//!
//! ```text
//! {"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{\"to\":[],\"data\":\"hi\",\"type\":\"signal:chat\"}"},"id":7}
//! ```
//!
//! [`parse`] reads exactly that shape in one pass, the inner signal straight out of the escaped
//! string (no unescaped copy of it, no serde visitor), into a validated [`SignalMessage`]. It
//! understands a strict subset of what serde reads: anything else (an unknown or repeated key, a
//! `\u` escape, a number or a boolean where a string is expected, data over the limit, bad JSON)
//! is `None`, and the caller reads the frame the general way (serde), which answers it or says
//! what is wrong. Whatever it does read, it reads as serde does: the tests and the `rpc_frame`
//! fuzz target check it against [`reference`] (serde) on every input.

use crate::ids::ConnectionId;
use crate::limits::MAX_SIGNAL_RECIPIENTS;
use crate::signal::{SignalMessage, check_data, check_type};

/// A `sendMessage` request read by [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalFrame<'a> {
    /// The request's id as written (a JSON number or string); `None`: a notification.
    pub id: Option<&'a str>,
    /// The signal, validated as [`SignalMessage::parse`] validates it.
    pub message: SignalMessage,
    /// The length of the `message` param once unescaped: the inner JSON text's length.
    pub message_len: usize,
}

/// Reads a `sendMessage` request of the usual shape, or `None` (read it the general way then).
///
/// The usual shape: an object with `jsonrpc` `"2.0"`, `method` `"sendMessage"`, `params`
/// `{"message": <string>}` and optionally `id` (a number, or a string without escapes), each key
/// once, in any order, JSON whitespace anywhere between tokens; the message an object with at
/// most `to` (null, or an array of strings), `data` and `type` (null or strings), each once,
/// within `max_data_bytes` and the type's limits.
pub fn parse(text: &str, max_data_bytes: usize) -> Option<SignalFrame<'_>> {
    let mut p = Outer { s: text, b: text.as_bytes(), i: 0 };
    let (mut jsonrpc, mut method, mut params, mut id) = (false, false, None, None);
    p.ws();
    p.eat(b'{')?;
    p.ws();
    if p.peek()? == b'}' {
        return None;
    }
    loop {
        let key = p.plain_string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        match key {
            "jsonrpc" if !jsonrpc => {
                (p.plain_string()? == "2.0").then_some(())?;
                jsonrpc = true;
            }
            "method" if !method => {
                (p.plain_string()? == "sendMessage").then_some(())?;
                method = true;
            }
            "params" if params.is_none() => params = Some(p.params(max_data_bytes)?),
            "id" if id.is_none() => id = Some(p.id()?),
            _ => return None,
        }
        p.ws();
        match p.next()? {
            b',' => p.ws(),
            b'}' => break,
            _ => return None,
        }
    }
    p.ws();
    if p.i != p.b.len() || !jsonrpc || !method {
        return None;
    }
    let (message, message_len) = params?;
    Some(SignalFrame { id, message, message_len })
}

/// The request's text.
struct Outer<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Where a string's plain run (no quote, backslash or control character) ends in `b`: the next
/// quote or backslash (memchr's vector search), then a check of the bytes before it (a loop the
/// compiler vectorises), which is faster than one byte-at-a-time search for all three.
fn plain_run(b: &[u8]) -> Option<usize> {
    let end = memchr::memchr2(b'"', b'\\', b)?;
    match b[..end].iter().any(|&c| c < 0x20) {
        false => Some(end),
        true => b.iter().position(|&c| c < 0x20),
    }
}

impl<'a> Outer<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters; its text.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = start + plain_run(&self.b[start..])?;
        (self.b[end] == b'"').then_some(())?;
        self.i = end + 1;
        // The quotes are ASCII: char boundaries on both sides.
        self.s.get(start..end)
    }

    /// `id`: a number (JSON's grammar) or a string without escapes, as written.
    fn id(&mut self) -> Option<&'a str> {
        let start = self.i;
        if self.peek()? == b'"' {
            self.plain_string()?;
        } else {
            self.number()?;
        }
        self.s.get(start..self.i)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digit()?;
            self.digits();
        }
        Some(())
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// `params`: `{"message": <string>}`; the signal and the message's unescaped length.
    fn params(&mut self, max_data_bytes: usize) -> Option<(SignalMessage, usize)> {
        self.eat(b'{')?;
        self.ws();
        (self.plain_string()? == "message").then_some(())?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        self.eat(b'"')?;
        let mut inner = Inner { s: self.s, b: self.b, i: self.i, len: 0 };
        let message = inner.signal(max_data_bytes)?;
        self.i = inner.i;
        self.eat(b'"')?;
        self.ws();
        self.eat(b'}')?;
        Some((message, inner.len))
    }
}

/// The signal's JSON text, read through the escapes of the string that holds it: `next` gives
/// the inner text's bytes, and stops (`None`) at the string's closing quote, left unread.
struct Inner<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// Inner bytes read so far.
    len: usize,
}

impl<'a> Inner<'a> {
    /// The next byte of the inner text; `None` at the end of the string (or at anything this
    /// reader does not take: a `\u` escape, a control character).
    fn next(&mut self) -> Option<u8> {
        let c = match *self.b.get(self.i)? {
            b'"' => return None,
            b'\\' => {
                let c = match *self.b.get(self.i + 1)? {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    _ => return None,
                };
                self.i += 2;
                self.len += 1;
                return Some(c);
            }
            c if c < 0x20 => return None,
            c => c,
        };
        self.i += 1;
        self.len += 1;
        Some(c)
    }

    /// The next inner byte that is not whitespace.
    fn token(&mut self) -> Option<u8> {
        loop {
            match self.next()? {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                c => return Some(c),
            }
        }
    }

    /// Reads the inner text up to the string's end: a signal object, whitespace around it.
    fn signal(&mut self, max_data_bytes: usize) -> Option<SignalMessage> {
        (self.token()? == b'{').then_some(())?;
        let (mut to, mut data, mut kind) = (None, None, None);
        let mut c = self.token()?;
        if c != b'}' {
            loop {
                (c == b'"').then_some(())?;
                let key = self.key()?;
                (self.token()? == b':').then_some(())?;
                let first = self.token()?;
                match key {
                    "to" if to.is_none() => to = Some(self.recipients(first)?),
                    "data" if data.is_none() => data = Some(self.string_or_null(first)?),
                    "type" if kind.is_none() => kind = Some(self.string_or_null(first)?),
                    _ => return None,
                }
                match self.token()? {
                    b',' => c = self.token()?,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        // Only whitespace up to the closing quote.
        loop {
            match self.b.get(self.i)? {
                b'"' => break,
                _ => {
                    if !matches!(self.next()?, b' ' | b'\t' | b'\n' | b'\r') {
                        return None;
                    }
                }
            }
        }
        let to: Vec<ConnectionId> = to.flatten().unwrap_or_default();
        let (data, kind) = (data.flatten(), kind.flatten());
        if to.len() > MAX_SIGNAL_RECIPIENTS {
            return None;
        }
        if data.as_deref().is_some_and(|d| check_data(d, max_data_bytes).is_err())
            || kind.as_deref().is_some_and(|k| check_type(k).is_err())
        {
            return None;
        }
        Some(SignalMessage { to, data, kind })
    }

    /// `null` (its `n` read already as `first`), or a string (its `"` read).
    fn string_or_null(&mut self, first: u8) -> Option<Option<String>> {
        match first {
            b'"' => self.string().map(Some),
            b'n' => self.null().map(|()| None),
            _ => None,
        }
    }

    fn null(&mut self) -> Option<()> {
        (self.next()? == b'u' && self.next()? == b'l' && self.next()? == b'l').then_some(())
    }

    /// `to`: `null` or an array of strings (its first byte read as `first`).
    fn recipients(&mut self, first: u8) -> Option<Option<Vec<ConnectionId>>> {
        match first {
            b'n' => return self.null().map(|()| None),
            b'[' => {}
            _ => return None,
        }
        let mut to = Vec::new();
        let mut c = self.token()?;
        if c == b']' {
            return Some(Some(to));
        }
        loop {
            (c == b'"').then_some(())?;
            to.push(ConnectionId::from(self.string()?));
            match self.token()? {
                b',' => c = self.token()?,
                b']' => return Some(Some(to)),
                _ => return None,
            }
        }
    }

    /// A run of the inner text that is plain in both layers (no quote, backslash or control
    /// character), from here: its text.
    fn run(&mut self) -> Option<&'a str> {
        let start = self.i;
        let n = plain_run(&self.b[start..])?;
        self.i += n;
        self.len += n;
        // Stops at ASCII bytes: char boundaries on both sides.
        self.s.get(start..start + n)
    }

    /// An inner key without escapes, its opening quote read.
    fn key(&mut self) -> Option<&'a str> {
        let key = self.run()?;
        (self.next()? == b'"').then_some(key)
    }

    /// An inner string, its opening quote read: its text, unescaped, copied in runs. `\u`
    /// escapes are left to serde (`None`).
    fn string(&mut self) -> Option<String> {
        let mut out = String::new();
        loop {
            out.push_str(self.run()?);
            // A quote, a backslash or a control character, in the outer text.
            match self.next()? {
                b'"' => return Some(out),
                b'\\' => out.push(crate::protocol::short_escape(self.next()?)?),
                // (`/` from an outer `\/`.)
                c if c >= 0x20 && c.is_ascii() => out.push(char::from(c)),
                _ => return None,
            }
        }
    }
}

/// What serde makes of the same text: the request read as the server reads it the general way
/// (a JSON-RPC 2.0 `sendMessage` request with exactly these members, a number or string id),
/// then its message read by [`SignalMessage::parse`]. `None` when serde refuses it, or when it is
/// not such a request; [`parse`] must agree with it whenever [`parse`] reads a frame.
#[doc(hidden)]
pub fn reference(text: &str, max_data_bytes: usize) -> Option<SignalFrame<'_>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request<'a> {
        jsonrpc: &'a str,
        method: &'a str,
        #[serde(borrow)]
        params: crate::protocol::SendMessageParams<'a>,
        #[serde(default, borrow, deserialize_with = "crate::jsonrpc::present")]
        id: Option<&'a serde_json::value::RawValue>,
    }
    let r: Request<'_> = serde_json::from_str(text).ok()?;
    if r.jsonrpc != "2.0" || r.method != "sendMessage" {
        return None;
    }
    let id = match r.id {
        Some(id) if matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9')) => Some(id.get()),
        Some(_) => return None,
        None => None,
    };
    let message = SignalMessage::parse(&r.params.message, max_data_bytes).ok()?;
    Some(SignalFrame { id, message, message_len: r.params.message.len() })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const MAX: usize = 1000;

    /// `parse` agrees with serde whenever it reads a frame, and `want` says whether it must.
    fn check(text: &str, want: bool) {
        let fast = parse(text, MAX);
        let serde = reference(text, MAX);
        if let Some(f) = &fast {
            assert_eq!(Some(f), serde.as_ref(), "read differently from serde: {text}");
        }
        if want {
            assert!(fast.is_some(), "not read by hand: {text}");
        }
    }

    fn frame(message: &str, id: &str) -> String {
        let mut f =
            json!({"jsonrpc": "2.0", "method": "sendMessage", "params": {"message": message}}).to_string();
        if !id.is_empty() {
            f.insert_str(f.len() - 1, &format!(r#","id":{id}"#));
        }
        f
    }

    #[test]
    fn the_browsers_signal_is_read_by_hand() {
        // From spec/fixtures: openvidu-browser 2.32.2.
        let real = r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{\"to\":[],\"data\":\"hello\",\"type\":\"signal:my-chat\"}"},"id":7}"#;
        let f = parse(real, MAX).expect("read by hand");
        assert_eq!(f.id, Some("7"));
        assert_eq!(f.message.data.as_deref(), Some("hello"));
        assert_eq!(f.message.kind.as_deref(), Some("signal:my-chat"));
        assert!(f.message.to.is_empty());
        assert_eq!(f.message_len, r#"{"to":[],"data":"hello","type":"signal:my-chat"}"#.len());
        check(real, true);
    }

    #[test]
    fn usual_shapes_are_read_by_hand_as_serde_reads_them() {
        for text in [
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{}"}}"#,
            r#"{"id":"a-b","params":{"message":"{\"data\":null,\"type\":null,\"to\":null}"},"method":"sendMessage","jsonrpc":"2.0"}"#,
            r#" { "jsonrpc" : "2.0" , "method" : "sendMessage" , "params" : { "message" : " { \"to\" : [ \"con_A\" , \"con_B\" ] } " } , "id" : -1.5e+3 } "#,
            "{\"jsonrpc\":\"2.0\",\"method\":\"sendMessage\",\"params\":{\"message\":\"{\\n\\t\\\"data\\\":\\\"x\\\"\\r}\"},\"id\":0}",
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{\"data\":\"q\\\" b\\\\ s\\/ n\\n t\\t ctl\\b\\f\\r é 😀\"}"},"id":3}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{\"data\":\"\"}"},"id":""}"#,
        ] {
            check(text, true);
        }
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        let m = r#"{\"data\":\"x\"}"#;
        for text in [
            // The request's shape.
            format!(r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"message":"{m}"}},"id":null}}"#),
            format!(r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"message":"{m}"}},"id":{{}}}}"#),
            format!(
                r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"message":"{m}"}},"id":1,"seq":2}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"message":"{m}"}},"id":1,"id":2}}"#
            ),
            format!(r#"{{"jsonrpc":"1.0","method":"sendMessage","params":{{"message":"{m}"}},"id":1}}"#),
            format!(r#"{{"jsonrpc":"2.0","method":"send\u004dessage","params":{{"message":"{m}"}},"id":1}}"#),
            format!(r#"{{"jsonrpc":"2.0","method":"ping","params":{{"message":"{m}"}},"id":1}}"#),
            format!(r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"message":"{m}"}},"id":01}}"#),
            format!(
                r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"message":"{m}"}},"id":"\u0041"}}"#
            ),
            format!(r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"message":"{m}"}},"id":1}} x"#),
            format!(
                r#"{{"jsonrpc":"2.0","method":"sendMessage","params":{{"message":"{m}","x":1}},"id":1}}"#
            ),
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":null,"id":1}"#.to_owned(),
            r#"{"jsonrpc":"2.0","method":"sendMessage","id":1}"#.to_owned(),
            r#"{"jsonrpc":"2.0","params":{"message":"{}"},"id":1}"#.to_owned(),
            // The message's.
            frame(r#"{"data":1}"#, "1"),
            frame(r#"{"data":true}"#, "1"),
            frame(r#"{"data":{}}"#, "1"),
            frame(r#"{"to":"con_A"}"#, "1"),
            frame(r#"{"to":[null]}"#, "1"),
            frame(r#"{"to":[1]}"#, "1"),
            frame(r#"{"data":"a","data":"b"}"#, "1"),
            frame(r#"{"other":"a"}"#, "1"),
            frame(r#"{"data":"\u00e9"}"#, "1"),
            frame(r#"{"data":"x"} x"#, "1"),
            frame(r#"[]"#, "1"),
            frame(r#"{"data":"x""#, "1"),
            frame(&format!(r#"{{"data":"{}"}}"#, "x".repeat(MAX + 1)), "1"),
            frame(&format!(r#"{{"type":"{}"}}"#, "x".repeat(300)), "1"),
            frame("{\"type\":\"a\\u0001\"}", "1"),
            frame(&format!(r#"{{"to":[{}]}}"#, vec![r#""c""#; MAX_SIGNAL_RECIPIENTS + 1].join(",")), "1"),
            // An outer `\u` escape (it could hide a quote).
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{\u0022data\":\"x\"}"},"id":1}"#
                .to_owned(),
        ] {
            assert_eq!(parse(&text, MAX), None, "{text}");
            check(&text, false);
        }
    }

    /// A small deterministic generator (xorshift), so that failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn text(&mut self) -> String {
            const PIECES: [&str; 18] = [
                "a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\r", "\u{8}", "\u{c}", "é", "😀",
                "\u{2028}", "\\u", "{}", "[,]",
            ];
            // Other control characters (written as `\u` escapes) now and then.
            (0..self.below(12))
                .map(|_| if self.below(100) == 0 { "\u{1f}" } else { PIECES[self.below(PIECES.len())] })
                .collect()
        }

        fn ws(&mut self) -> &'static str {
            [" ", "", "", "", "\n", "\t", "\r", "  "][self.below(8)]
        }
    }

    /// A signal message as some client might write it: keys in any order, some missing, some
    /// null, some of another type, escapes of every kind, whitespace; and whether it is of the
    /// usual shape (strings or nulls, no other key, no key twice, no `\u` escape, undamaged).
    fn message(r: &mut Rng) -> (String, bool) {
        let mut usual = true;
        let mut members = Vec::new();
        if r.below(4) > 0 {
            let to = match r.below(8) {
                0 => Value::Null,
                1 => {
                    usual = false;
                    json!("con")
                }
                2 => {
                    usual = false;
                    json!([1, "x"])
                }
                _ => Value::Array((0..r.below(4)).map(|_| Value::String(r.text())).collect()),
            };
            members.push(("to", to));
        }
        for key in ["data", "type"] {
            if r.below(4) > 0 {
                let value = match r.below(10) {
                    0 => Value::Null,
                    1 => {
                        usual = false;
                        json!(12)
                    }
                    2 => {
                        usual = false;
                        json!(false)
                    }
                    3 if key == "type" => json!("signal:chat"),
                    4..=6 if key == "type" => {
                        json!(format!("signal:{}", r.text().replace(char::is_control, "")))
                    }
                    _ => Value::String(r.text()),
                };
                members.push((key, value));
            }
        }
        if r.below(20) == 0 {
            usual = false;
            members.push(("extra", json!("x")));
        }
        if r.below(20) == 0 && !members.is_empty() {
            usual = false;
            members.push(members[0].clone());
        }
        let (ws1, ws2) = (r.ws(), r.ws());
        let body: Vec<String> =
            members.iter().map(|(k, v)| format!("{ws1}\"{k}\"{ws2}:{ws1}{v}{ws2}")).collect();
        let mut m = format!("{}{{{}}}{}", r.ws(), body.join(","), r.ws());
        if r.below(10) == 0 {
            // A `\u` escape of the inner text, or damage.
            let at = r.below(m.len() + 1);
            if m.is_char_boundary(at) {
                usual = false;
                m.insert_str(at, ["\\u0041", "\\", "\"", "}", "\\ud83d"][r.below(5)]);
            }
        }
        // (serde_json writes the other control characters as `\u` escapes.)
        usual &= !m.contains("\\u");
        (m, usual)
    }

    /// Many generated frames, some damaged: whatever `parse` reads, serde reads the same; and
    /// every undamaged frame in the usual shape is read by hand.
    #[test]
    fn generated_frames_are_read_as_serde_reads_them() {
        let mut r = Rng(0x5eed_1234_abcd_0001);
        let mut by_hand = 0;
        for _ in 0..50_000 {
            let (message, mut usual) = message(&mut r);
            let id = ["7", "\"x-1\"", "-0.5E2", "", "null", "1e", "\"\\u0031\""][r.below(7)];
            usual &= !id.contains('\\');
            let mut text = frame(&message, id);
            // The outer string's escapes: serde_json writes `\"`, `\\`, `\n`…; write some the other
            // ways JSON allows.
            if r.below(8) == 0 && text.contains("\\\"") {
                usual = false;
                text = text.replacen("\\\"", "\\u0022", 1);
            }
            if r.below(8) == 0 {
                let at = r.below(text.len());
                if text.is_char_boundary(at) && text.is_char_boundary(at + 1) {
                    usual = false;
                    text.replace_range(at..at + 1, ["", " ", "\"", "\\", ",", "}"][r.below(6)]);
                }
            }
            let fast = parse(&text, MAX);
            let serde = reference(&text, MAX);
            if let Some(f) = &fast {
                assert_eq!(Some(f), serde.as_ref(), "read differently from serde: {text}");
                by_hand += 1;
            }
            // The usual shape is read by hand whenever serde reads it.
            if usual && serde.is_some() {
                assert!(fast.is_some(), "not read by hand: {text}");
            }
        }
        assert!(by_hand > 5_000, "only {by_hand} of 50,000 read by hand");
    }
}
