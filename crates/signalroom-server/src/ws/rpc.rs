//! One socket's JSON-RPC session: parses each request, calls the hub, and answers through the
//! socket's outbox (so a reply keeps its place among the notifications, spec §5.2, §7.3).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use signalroom_core::jsonrpc::{ErrorResponse, Frame, Response};
use signalroom_core::limits::{DEFAULT_SERVER_PING_INTERVAL_MS, PING_WATCHDOG_FACTOR};
use signalroom_core::protocol::{
    ConnectParams, ForceDisconnectParams, JoinRoomParams, PingParams, ReconnectResult, SendMessageParams,
    method,
};
use signalroom_core::signal::SignalMessage;
use signalroom_core::signal_frame::{self, SignalFrame};
use signalroom_core::{ConnectionId, Role, RpcSessionId, SessionId};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::hub::{Hub, JoinRequest};
use crate::outbox::{Order, Out, Outbox};
use crate::refusal::Refusal;
use crate::sending::{Outcome, Outgoing, Sending};
use crate::util::constant_time_eq;

/// Bounds on the interval a client may ask the ping watchdog for.
const MIN_PING_INTERVAL_MS: u64 = 1_000;
const MAX_PING_INTERVAL_MS: u64 = 300_000;

/// Where this socket's participant is.
#[derive(Debug, Clone)]
struct Joined {
    session: SessionId,
    connection: ConnectionId,
}

/// One socket's reader: the JSON-RPC session.
pub(crate) struct SocketConn {
    pub(super) hub: Arc<Hub>,
    pub(super) id: u64,
    /// The socket's own outbox before it carries a participant; the participant's after.
    outbox: Arc<Outbox>,
    writer: AbortHandle,
    ip: String,
    rpc_id: RpcSessionId,
    joined: Option<Joined>,
    ping_interval_ms: Option<u64>,
    pub(super) ping_deadline: Option<Instant>,
    /// Our own outbox overflowed, or a write stalled: the client does not read. The socket is
    /// dropped, and its participant evicted at once.
    pub(super) overflowed: bool,
    /// The node drains: the socket closes as a network drop, its participant resuming elsewhere.
    pub(super) drained: bool,
    /// A `joinRoom` or `connect` succeeded on this socket (the join deadline is met).
    pub(super) joined_once: bool,
    /// The client acknowledges notifications (`lastSeq` in a ping): what is written to its
    /// participant is kept for a resume from the join on.
    acks: bool,
    /// The raw id of the request being handled; `None` for notifications (no reply).
    request_id: Option<Box<RawValue>>,
    /// This socket's signals on their way, in order.
    pub(super) sending: Sending,
}

type RpcResult = Result<(), Refusal>;

impl SocketConn {
    pub(super) fn new(
        hub: Arc<Hub>,
        id: u64,
        outbox: Arc<Outbox>,
        ip: String,
        rpc_id: RpcSessionId,
        writer: AbortHandle,
    ) -> Self {
        Self {
            hub,
            id,
            outbox,
            writer,
            ip,
            rpc_id,
            joined: None,
            ping_interval_ms: None,
            ping_deadline: None,
            overflowed: false,
            drained: false,
            joined_once: false,
            acks: false,
            request_id: None,
            sending: Sending::default(),
        }
    }

    /// Whether the socket may be read: not too many signals on their way.
    pub(super) fn can_read(&self) -> bool {
        self.sending.can_take()
    }

    /// Pushes what the broker held back of this socket's signals (and of others' operations on
    /// its session).
    pub(super) fn release(&mut self) {
        if let Some(joined) = &self.joined {
            self.sending.release(&self.hub, &joined.session);
        }
    }

    /// Finishes every signal on its way, in order.
    pub(super) async fn drain(&mut self) {
        while !self.sending.is_idle() {
            let Some(outcome) = self.sending.next().await else { break };
            Box::pin(self.finish(outcome)).await;
        }
    }

    /// Finishes the oldest signal on its way: its event, or its error reply.
    pub(super) async fn finish(&mut self, outcome: Outcome) {
        let Some((id, refusal)) = self.sending.finish(&self.hub, outcome).await else { return };
        let refusal = self.for_client(refusal);
        match id {
            Some(id) => self.send_error(Some(&id), &refusal),
            None => tracing::debug!(error = %refusal, "error on a notification (not answered)"),
        }
    }

    /// A refusal as this socket's client is told it.
    fn for_client(&mut self, refusal: Refusal) -> Refusal {
        match refusal {
            Refusal::NoLongerJoined(_) => {
                self.joined = None;
                Refusal::NoLongerJoined(self.rpc_id.clone())
            }
            other => other,
        }
    }

    /// Handles one text frame from the client. (A boxed future, whichever way the frame goes:
    /// the requests' futures, deep, would otherwise size every socket's reader task, idle or
    /// not: about 1 KiB of each participant's memory.)
    pub(super) fn handle_text<'a>(
        &'a mut self,
        text: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        // Every signal's way: the request read by hand, the signal straight out of its string...
        if let Some(frame) = signal_frame::parse(text, self.hub.config.max_signal_bytes) {
            return Box::pin(self.signal_frame(frame));
        }
        // ...or by serde in one pass, straight into its params.
        match SendMessageRequest::parse(text) {
            Some(request) => Box::pin(self.signal(request)),
            None => Box::pin(self.handle_frame(text)),
        }
    }

    /// Handles a text frame the general way: any request, or what is wrong with it.
    async fn handle_frame(&mut self, text: &str) {
        let frame = match Frame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                self.release();
                let refusal = if e.is_syntax() || e.is_eof() {
                    Refusal::NotJson(e.to_string())
                } else {
                    Refusal::InvalidRequest(format!("frame is not a JSON-RPC request object: {e}"))
                };
                self.send_error(None, &refusal);
                return;
            }
        };
        if frame.method.as_deref() != Some(method::SEND_MESSAGE) {
            self.release();
        }
        if frame.id.is_some_and(|id| !is_valid_id(id)) {
            // JSON-RPC 2.0 §4: an id is a string or a number; a request with another id is an
            // Invalid Request, answered with a null id (a response's id is left alone: ignored).
            if frame.method.is_some() {
                self.send_error(
                    None,
                    &Refusal::InvalidRequest("request \"id\" must be a number or a string".into()),
                );
            }
            return;
        }
        let Some(method) = frame.method.as_deref() else {
            if frame.result.is_some() || frame.error.is_some() {
                tracing::debug!(socket = self.id, "ignoring a response from the client");
                return;
            }
            self.send_error(frame.id, &Refusal::InvalidRequest("request has no \"method\"".into()));
            return;
        };
        if frame.jsonrpc != Some("2.0") {
            self.send_error(
                frame.id,
                &Refusal::InvalidRequest("request must have \"jsonrpc\":\"2.0\"".into()),
            );
            return;
        }
        self.request_id = frame.id.map(|id| id.to_owned());
        if method != method::SEND_MESSAGE && !self.sending.is_idle() {
            // Whatever else the client asks comes after its signals.
            self.drain().await;
        }
        if let Err(refusal) = self.dispatch(method, &frame).await {
            self.refused(refusal);
        }
    }

    async fn dispatch(&mut self, name: &str, frame: &Frame<'_>) -> RpcResult {
        match name {
            method::PING => return self.ping(params(name, frame)?),
            // Rare and deep: boxed, so that they do not size every socket's reader task.
            method::CONNECT => return Box::pin(self.reconnect(params(name, frame)?)).await,
            method::JOIN_ROOM => return Box::pin(self.join(params(name, frame)?)).await,
            _ => {}
        }
        if !is_known(name) {
            return Err(Refusal::UnknownMethod(name.to_owned()));
        }
        let Some(me) = self.bound() else {
            return Err(Refusal::NotJoined(self.rpc_id.clone()));
        };
        match name {
            method::SEND_MESSAGE => {
                let p: SendMessageParams<'_> = frame.params().map_err(|_| Refusal::SignalParams)?;
                self.send_message(me, p).await
            }
            method::LEAVE_ROOM => {
                let reply = self.ok_frame();
                Box::pin(self.hub.leave(&me.session, &me.connection, &self.outbox, reply)).await?;
                self.joined = None;
                Ok(())
            }
            method::FORCE_DISCONNECT => {
                let p: ForceDisconnectParams = params(name, frame)?;
                let reply = self.ok_frame();
                Box::pin(self.hub.force_disconnect(
                    &me.session,
                    &me.connection,
                    &p.connection_id,
                    &self.outbox,
                    reply,
                ))
                .await
            }
            method::FORCE_UNPUBLISH => {
                let conn = me.connection.clone();
                self.hub
                    .read(&me.session, move |room| room.require_moderator(&conn, "forceUnpublish"))
                    .await
                    .unwrap_or(Err(Refusal::NoLongerJoined(self.rpc_id.clone())))?;
                Err(Refusal::NoStream)
            }
            method::PUBLISH_VIDEO => {
                let conn = me.connection.clone();
                if self.hub.read(&me.session, move |room| room.role_of(&conn)).await.flatten()
                    == Some(Role::Subscriber)
                {
                    return Err(Refusal::CannotPublish);
                }
                Err(Refusal::Media(name.to_owned()))
            }
            method::ECHO
            | method::VIDEO_DATA
            | method::STREAM_PROPERTY_CHANGED
            | method::UNPUBLISH_VIDEO
            | method::UNSUBSCRIBE_FROM_VIDEO
            | method::ON_ICE_CANDIDATE => {
                self.reply_ok();
                Ok(())
            }
            m if method::MEDIA_UNSUPPORTED.contains(&m) => Err(Refusal::Media(m.to_owned())),
            m => Err(Refusal::ProOnly(m.to_owned())),
        }
    }

    /// A `sendMessage` request read the one-pass way ([`SendMessageRequest`]).
    async fn signal(&mut self, request: SendMessageRequest<'_>) {
        self.request_id = request.id.map(ToOwned::to_owned);
        let result = match self.bound() {
            Some(me) => self.send_message(me, request.params).await,
            None => Err(Refusal::NotJoined(self.rpc_id.clone())),
        };
        if let Err(refusal) = result {
            self.refused(refusal);
        }
    }

    /// A `sendMessage` request read by hand ([`signal_frame::parse`]).
    async fn signal_frame(&mut self, frame: SignalFrame<'_>) {
        self.request_id = frame.id.and_then(|id| RawValue::from_string(id.to_owned()).ok());
        let result = match self.bound() {
            Some(me) => self.send_signal(me, frame.message, frame.message_len).await,
            None => Err(Refusal::NotJoined(self.rpc_id.clone())),
        };
        if let Err(refusal) = result {
            self.refused(refusal);
        }
    }

    /// `sendMessage` from participant `me`.
    async fn send_message(&mut self, me: Joined, p: SendMessageParams<'_>) -> RpcResult {
        let message = SignalMessage::parse(&p.message, self.hub.config.max_signal_bytes)?;
        self.send_signal(me, message, p.message.len()).await
    }

    /// Signal `message` (`bytes` of JSON) from participant `me`.
    async fn send_signal(&mut self, me: Joined, message: SignalMessage, bytes: usize) -> RpcResult {
        let Joined { session, connection: from } = me;
        let reply = self.ok_frame();
        let signal = Outgoing { session, from, message, id: self.request_id.take(), reply, bytes };
        self.sending.send(&self.hub, signal, &self.outbox).await.map_err(|(id, refusal)| {
            // Refused at once: answered as the request being handled.
            self.request_id = id;
            refusal
        })
    }

    fn ping(&mut self, p: PingParams) -> RpcResult {
        if let Some(interval) = p.interval {
            self.ping_interval_ms = Some(interval.clamp(MIN_PING_INTERVAL_MS, MAX_PING_INTERVAL_MS));
        }
        let interval = *self.ping_interval_ms.get_or_insert(DEFAULT_SERVER_PING_INTERVAL_MS);
        self.ping_deadline = Some(Instant::now() + Duration::from_millis(interval * PING_WATCHDOG_FACTOR));
        if let Some(last_seq) = p.last_seq {
            self.acks = true;
            if self.joined.is_some() {
                self.outbox.ack(last_seq);
            }
        }
        self.reply_result(json!({"value": "pong"}));
        Ok(())
    }

    async fn join(&mut self, p: JoinRoomParams) -> RpcResult {
        if let Some(j) = &self.joined {
            return Err(Refusal::AlreadyJoined {
                session: j.session.clone(),
                connection: j.connection.clone(),
            });
        }
        let secret = !p.secret.is_empty() && constant_time_eq(&p.secret, &self.hub.config.secret);
        let req = JoinRequest {
            session: SessionId::from(p.session),
            token_id: signalroom_core::token::token_id(&p.token).map(str::to_owned),
            token: p.token,
            secret,
            client_data: p.metadata,
            platform: p.platform,
            ip: self.ip.clone(),
            rpc_id: self.rpc_id.clone(),
            acks: self.acks,
        };
        let id = self.request_id.clone();
        let history = p.history;
        let max_frame_bytes = self.hub.config.max_frame_bytes as u64;
        let reply = move |result: &signalroom_core::protocol::JoinRoomResult, room: &crate::room::Room| {
            let answer = id.as_deref().map(|id| room.join_answer_json(id, result)).unwrap_or_default();
            let answer = if history { room.history_answer(answer, result) } else { answer };
            // signalroom's extension: the frame limit, so that clients refuse a larger signal
            // before sending it (openvidu-browser ignores the member).
            Utf8Bytes::from(with_max_frame_bytes(answer, max_frame_bytes))
        };
        let result = self.hub.join(req, &self.outbox, reply).await?;
        self.push(Out::Order(Order::KeepOpen));
        self.joined_once = true;
        self.joined = Some(Joined {
            session: result.session.clone().unwrap_or_else(|| SessionId::from("")),
            connection: result.id,
        });
        Ok(())
    }

    async fn reconnect(&mut self, p: ConnectParams) -> RpcResult {
        if self.joined.is_some() && p.session_id != self.rpc_id {
            return Err(Refusal::CarriesAnother);
        }
        let id = self.request_id.clone();
        let rpc = p.session_id.clone();
        let reply = move |r: crate::outbox::Resumed| {
            let result = ReconnectResult {
                value: "reconnection successful".into(),
                session_id: Some(rpc),
                recovered: r.recovered,
                replayed: Some(r.replayed),
            };
            response(id.as_deref(), result)
        };
        let (session, connection, outbox, _) = self
            .hub
            .reconnect(&p.session_id, self.id, &self.outbox, self.writer.clone(), p.last_seq, reply)
            .await?;
        if !Arc::ptr_eq(&outbox, &self.outbox) {
            // What this socket queued before goes first, then the participant's outbox.
            self.outbox.redirect(Arc::clone(&outbox));
            self.outbox = outbox;
        }
        self.rpc_id = p.session_id;
        self.joined_once = true;
        self.joined = Some(Joined { session, connection });
        Ok(())
    }

    /// The node drains: the participant is left to resume on another node (which replays what
    /// was not queued here), and the socket closes after what is queued, with 1012 (service
    /// restart): its client reconnects, as after a network drop.
    pub(super) async fn hand_off(&mut self) {
        if let Some(joined) = self.joined.clone() {
            self.hub.hand_off(&joined.session, &joined.connection).await;
        }
        self.push(Out::Order(Order::Close { code: 1012, reason: "server restarting: reconnect" }));
    }

    /// The socket is gone. A participant that did not leave is kept for the reconnection grace
    /// period, then evicted with `networkDisconnect`.
    pub(super) fn socket_closed(&mut self) {
        let Some(me) = self.joined.take() else { return };
        self.hub.socket_closed(me.session, me.connection, Arc::clone(&self.outbox), self.id, self.overflowed);
    }

    /// This socket's participant, if it still carries one.
    fn bound(&mut self) -> Option<Joined> {
        let joined = self.joined.clone()?;
        if !self.outbox.is_drained_by(self.id) {
            self.joined = None;
            return None;
        }
        Some(joined)
    }

    /// The `{"sessionId": …}` reply to the request being handled (`None` for a notification).
    fn ok_frame(&self) -> Option<Utf8Bytes> {
        let id = self.request_id.as_deref()?;
        Some(session_id_reply(id, &self.rpc_id))
    }

    fn reply_ok(&mut self) {
        if let Some(frame) = self.ok_frame() {
            self.push(Out::Reply(frame));
        }
    }

    fn reply_result<R: Serialize>(&mut self, result: R) {
        let Some(id) = &self.request_id else { return };
        let text = Response::new(id, result).to_json();
        self.push(Out::Reply(Utf8Bytes::from(text)));
    }

    /// The current request was refused: what its signals held goes out first, then the error.
    fn refused(&mut self, refusal: Refusal) {
        self.release();
        let refusal = self.for_client(refusal);
        self.reply_error(&refusal);
    }

    fn reply_error(&mut self, refusal: &Refusal) {
        let id = self.request_id.take();
        if id.is_none() {
            tracing::debug!(error = %refusal, "error on a notification (not answered)");
            return;
        }
        self.send_error(id.as_deref(), refusal);
    }

    pub(super) fn send_error(&mut self, id: Option<&RawValue>, refusal: &Refusal) {
        let error = refusal.rpc();
        tracing::debug!(socket = self.id, code = error.code, message = %error.message, "request refused");
        let text = ErrorResponse::new(id, &error).to_json();
        self.push(Out::Reply(Utf8Bytes::from(text)));
    }

    /// Takes what is queued for this socket, as its writer would (for [`super::handle_frames`]).
    pub(super) fn take_sent(&self, buf: &mut std::collections::VecDeque<Out>) {
        self.outbox.take_now(buf, self.id);
    }

    /// Queues something for this socket; an outbox too full to take it means the client does
    /// not read: the socket is dropped.
    pub(super) fn push(&mut self, out: Out) {
        if !self.outbox.push(out) {
            tracing::warn!(socket = self.id, "own send queue full: the client does not read; dropping it");
            self.overflowed = true;
        }
    }
}

/// The result most requests get: `{"sessionId": …}` (serialised without a map made for it, as
/// every `sendMessage` is answered with it).
#[derive(Serialize)]
struct SessionIdResult<'a> {
    #[serde(rename = "sessionId")]
    session_id: &'a RpcSessionId,
}

/// `{"sessionId": …}` answering request `id`, the same text serde writes; written by hand when
/// the session id needs no escaping (every `sendMessage` is answered with it).
fn session_id_reply(id: &RawValue, session: &RpcSessionId) -> Utf8Bytes {
    let session = session.as_str();
    if !session.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')) {
        return response(Some(id), SessionIdResult { session_id: &session.into() });
    }
    let (head, middle, tail) = (r#"{"jsonrpc":"2.0","id":"#, r#","result":{"sessionId":""#, r#""}}"#);
    let mut out =
        String::with_capacity(head.len() + id.get().len() + middle.len() + session.len() + tail.len());
    for piece in [head, id.get(), middle, session, tail] {
        out.push_str(piece);
    }
    Utf8Bytes::from(out)
}

/// A success response frame; empty without an id (a notification gets no answer).
fn response<R: Serialize>(id: Option<&RawValue>, result: R) -> Utf8Bytes {
    Utf8Bytes::from(id.map(|id| Response::new(id, result).to_json()).unwrap_or_default())
}

/// A `sendMessage` request as clients send it: `jsonrpc`, `method`, `params` and `id` and nothing
/// else, each once, the id a number or a string. Read in one pass, straight into the params; any
/// other frame (or this one with anything unusual) takes the general way, which answers it the
/// same or tells what is wrong.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessageRequest<'a> {
    jsonrpc: &'a str,
    method: &'a str,
    #[serde(borrow)]
    params: SendMessageParams<'a>,
    /// (`"id":null` is kept, as `null`: an Invalid Request, answered the general way.)
    #[serde(default, borrow, deserialize_with = "signalroom_core::jsonrpc::present")]
    id: Option<&'a RawValue>,
}

impl<'a> SendMessageRequest<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let request: Self = serde_json::from_str(text).ok()?;
        (request.jsonrpc == "2.0"
            && request.method == method::SEND_MESSAGE
            && request.id.is_none_or(is_valid_id))
        .then_some(request)
    }
}

fn params<'a, T: serde::Deserialize<'a>>(name: &str, frame: &Frame<'a>) -> Result<T, Refusal> {
    frame.params().map_err(|e| Refusal::BadParams { method: name.to_owned(), reason: e.to_string() })
}

/// Whether a request id is a number or a string (JSON-RPC 2.0 §4; `null` is reserved for the
/// answers to requests whose id could not be read).
fn is_valid_id(id: &RawValue) -> bool {
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

fn is_known(name: &str) -> bool {
    matches!(
        name,
        method::SEND_MESSAGE
            | method::LEAVE_ROOM
            | method::FORCE_DISCONNECT
            | method::FORCE_UNPUBLISH
            | method::PUBLISH_VIDEO
            | method::ECHO
            | method::VIDEO_DATA
            | method::STREAM_PROPERTY_CHANGED
            | method::UNPUBLISH_VIDEO
            | method::UNSUBSCRIBE_FROM_VIDEO
            | method::ON_ICE_CANDIDATE
    ) || method::MEDIA_UNSUPPORTED.contains(&name)
        || method::PRO_ONLY.contains(&name)
}

/// A join answer with signalroom's `maxFrameBytes` extension added to its result (the answer is
/// made as text, often from a cached listing of everyone: the member is appended, not the result
/// rebuilt).
fn with_max_frame_bytes(mut answer: String, max: u64) -> String {
    if answer.ends_with("}}") {
        answer.truncate(answer.len() - 2);
        answer.push_str(r#","maxFrameBytes":"#);
        answer.push_str(&max.to_string());
        answer.push_str("}}");
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_id_reply_is_the_text_serde_writes() {
        for id in ["0", "17", r#""a-string""#, r#""quote\"d""#] {
            let id = RawValue::from_string(id.to_owned()).unwrap();
            for session in ["ses_AbC", "wss://host:4443/openvidu?x=1", "odd \" \\ é", ""] {
                let session = RpcSessionId::from(session);
                let serde = response(Some(&id), SessionIdResult { session_id: &session });
                assert_eq!(session_id_reply(&id, &session), serde, "{session}");
            }
        }
    }

    #[test]
    fn ids_are_numbers_or_strings() {
        for ok in ["0", "-3", "1.5", r#""abc""#] {
            assert!(is_valid_id(&RawValue::from_string(ok.into()).unwrap()), "{ok}");
        }
        for bad in ["null", "true", "false", "{}", "[1]"] {
            assert!(!is_valid_id(&RawValue::from_string(bad.into()).unwrap()), "{bad}");
        }
    }

    #[test]
    fn every_media_and_pro_method_is_known() {
        for m in method::MEDIA_UNSUPPORTED.iter().chain(method::PRO_ONLY) {
            assert!(is_known(m));
        }
        assert!(!is_known("nope"));
    }

    /// The one-pass way takes the signals clients send, and leaves anything else to the general
    /// way (which answers the same, or tells what is wrong).
    #[test]
    fn only_plain_send_message_requests_take_the_one_pass_way() {
        // From spec/fixtures: openvidu-browser 2.32.2.
        let real = r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{\"to\":[],\"data\":\"hello\",\"type\":\"signal:my-chat\"}"},"id":7}"#;
        let r = SendMessageRequest::parse(real).expect("the real client's signal");
        assert_eq!(r.id.map(RawValue::get), Some("7"));
        assert_eq!(r.params.message, r#"{"to":[],"data":"hello","type":"signal:my-chat"}"#);
        let notification = r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{}"}}"#;
        assert!(SendMessageRequest::parse(notification).is_some_and(|r| r.id.is_none()));
        for other in [
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{}"},"id":null}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{}"},"id":{}}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{}"},"id":1,"seq":2}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{}"},"id":1,"id":2}"#,
            r#"{"jsonrpc":"1.0","method":"sendMessage","params":{"message":"{}"},"id":1}"#,
            r#"{"jsonrpc":"2.0","method":"send\u004dessage","params":{"message":"{}"},"id":1}"#,
            r#"{"jsonrpc":"2.0","method":"ping","params":{"message":"{}"},"id":1}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":null,"id":1}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","id":1}"#,
            r#"{"jsonrpc":"2.0","method":"sendMessage","params":{"message":"{}"},"id":1} x"#,
        ] {
            assert!(SendMessageRequest::parse(other).is_none(), "{other}");
        }
    }
}
