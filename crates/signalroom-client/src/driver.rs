//! The driver task of a session: joins, pings, reopens a broken link (spec §2.5), and leaves.
//! It never touches a socket itself; it talks to a link's writer through its control channel.

use std::sync::Arc;

use signalroom_core::protocol::{ConnectParams, JoinRoomParams, PingParams, method};
use signalroom_core::{EndReason, OPENVIDU_VERSION, RpcSessionId, SessionId};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until};

use crate::error::{Error, Result};
use crate::event::Connection;
use crate::inbound::ReaderEnd;
use crate::link::{CLOSE_BY_CLIENT, CLOSE_FOR_RECONNECTION, Link};
use crate::pending::{Outgoing, Params, PendingKind, Reply, params};
use crate::state::{Command, DriverChannels, SessionState, Shared};

/// `{}`: the params openvidu-browser sends with `leaveRoom`.
#[derive(serde::Serialize)]
struct Empty {}

type UserRx = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Outgoing>>>;

/// What `connect` learns from a successful `joinRoom`.
pub(crate) struct Joined {
    pub(crate) local: Connection,
    pub(crate) session_id: SessionId,
}

/// Why the connected phase ended.
enum Outcome {
    Leave(Option<oneshot::Sender<()>>),
    Evicted,
    Lost(String),
}

/// How reconnection ended, when it did not succeed.
enum Failed {
    Leave(Option<oneshot::Sender<()>>),
    /// Evicted on the new socket before `connect` was answered; the session is already over.
    Evicted,
    Rejected,
    GaveUp,
}

/// Runs a session from the first socket to the last event. `joined` learns whether `joinRoom`
/// succeeded; if nobody is listening any more, the session is left at once.
pub(crate) async fn run(
    shared: Arc<Shared>,
    channels: DriverChannels,
    joined: oneshot::Sender<Result<Joined>>,
) {
    let DriverChannels { user_rx, mut cmd_rx } = channels;
    let Some((mut link, first_ping)) = join(&shared, &user_rx, joined).await else {
        return;
    };
    let mut ping = Some(first_ping);
    loop {
        match connected(&shared, &mut link, &mut cmd_rx, ping.take()).await {
            Outcome::Leave(reply) => {
                leave(&shared, link).await;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
                return;
            }
            Outcome::Evicted => {
                link.close(CLOSE_BY_CLIENT).await;
                return;
            }
            Outcome::Lost(why) => {
                tracing::info!(%why, "link broken, reconnecting");
                let lost = link.id;
                link.close(CLOSE_FOR_RECONNECTION).await;
                shared.fail_sent_on(lost);
                if shared.opts.reconnect_attempts == 0 {
                    shared.finish(EndReason::NetworkDisconnect);
                    return;
                }
                shared.set_phase(SessionState::Reconnecting);
                shared.emit(crate::Event::Reconnecting);
                match reconnect(&shared, &user_rx, &mut cmd_rx).await {
                    Ok(new) => {
                        link = new;
                        // As openvidu-browser: pings restart with the interval after a reconnection.
                        ping = Some(send_ping(&shared, &link, true));
                    }
                    Err(Failed::Leave(reply)) => {
                        shared.finish(EndReason::Disconnect);
                        if let Some(reply) = reply {
                            let _ = reply.send(());
                        }
                        return;
                    }
                    Err(Failed::Rejected | Failed::GaveUp | Failed::Evicted) => {
                        shared.finish(EndReason::NetworkDisconnect);
                        return;
                    }
                }
            }
        }
    }
}

/// A ping in flight: its id, its reply, and when it expires.
struct Ping {
    id: u64,
    rx: oneshot::Receiver<Reply>,
    deadline: Instant,
    sent: Instant,
}

fn send_ping(shared: &Shared, link: &Link, with_interval: bool) -> Ping {
    let params = ping_params(shared, with_interval);
    let now = Instant::now();
    let (id, rx) = shared.send_on(link, method::PING, params, PendingKind::Plain);
    Ping { id, rx, deadline: now + shared.opts.ping_timeout, sent: now }
}

/// A ping's params: the interval on a socket's first ping, as openvidu-browser, and always the
/// last notification handled (0 before any): the server then forgets what it kept up to there, and
/// from a socket's first ping on (before `joinRoom`) knows to keep what it writes for a resume.
fn ping_params(shared: &Shared, with_interval: bool) -> Option<Params> {
    let ping = PingParams {
        interval: with_interval.then_some(shared.opts.ping_interval.as_millis() as u64),
        last_seq: Some(shared.state.lock().last_seq.unwrap_or(0)),
    };
    Some(params(&ping))
}

/// A `connect`'s params: resume after the last notification handled (0 before any: everything).
fn connect_params(shared: &Shared, rpc_session_id: RpcSessionId) -> Params {
    let last_seq = Some(shared.state.lock().last_seq.unwrap_or(0));
    params(&ConnectParams { session_id: rpc_session_id, reconnect: true, last_seq })
}

/// Opens the first socket, sends `ping` (id 0) and `joinRoom` (id 1), waits for the result.
async fn join(
    shared: &Arc<Shared>,
    user_rx: &UserRx,
    mut joined: oneshot::Sender<Result<Joined>>,
) -> Option<(Link, Ping)> {
    let mut link = match shared.open_link(false, user_rx).await {
        Ok(link) => link,
        Err(e) => {
            shared.finish(EndReason::NetworkDisconnect);
            let _ = joined.send(Err(e));
            return None;
        }
    };
    let first_ping = send_ping(shared, &link, true);
    let params_session = shared.token.session_id.clone().unwrap_or_default();
    let join = JoinRoomParams {
        token: shared.token.raw.clone(),
        session: params_session.clone(),
        platform: shared.opts.platform.clone(),
        sdk_version: OPENVIDU_VERSION.to_owned(),
        metadata: shared.opts.metadata.clone(),
        secret: String::new(),
        recorder: false,
        stt: false,
        history: shared.opts.history,
    };
    let (id, rx) = shared.send_on(&link, method::JOIN_ROOM, Some(params(&join)), PendingKind::JoinRoom);
    let result = tokio::select! {
        r = shared.wait(method::JOIN_ROOM, rx, shared.opts.request_timeout) => r,
        end = link.ended() => Err(match end {
            ReaderEnd::Lost(why) => Error::Connect { url: shared.token.websocket_url(false), source: why.into() },
            ReaderEnd::Evicted => Error::Disconnected { reason: EndReason::NetworkDisconnect },
        }),
        _ = joined.closed() => Err(Error::Disconnected { reason: EndReason::Disconnect }),
    };
    shared.forget(id);
    let result = result.and_then(|_| {
        let state = shared.state.lock();
        let local = state.local.clone().ok_or_else(|| Error::UnexpectedResponse {
            method: method::JOIN_ROOM,
            reason: "no local connection".to_owned(),
        })?;
        let session_id = state.session_id.clone().unwrap_or_else(|| SessionId::from(params_session.as_str()));
        Ok(Joined { local, session_id })
    });
    match result {
        Ok(info) => {
            link.open_gate();
            if joined.send(Ok(info)).is_err() {
                // The caller of `connect` went away: leave, as nobody can.
                leave(shared, link).await;
                return None;
            }
            Some((link, first_ping))
        }
        Err(e) => {
            shared.forget(first_ping.id);
            link.close(CLOSE_BY_CLIENT).await;
            shared.finish(EndReason::NetworkDisconnect);
            let _ = joined.send(Err(e));
            None
        }
    }
}

/// Pings until the link breaks, this participant is evicted, or the application leaves.
async fn connected(
    shared: &Shared,
    link: &mut Link,
    cmd_rx: &mut mpsc::UnboundedReceiver<Command>,
    first: Option<Ping>,
) -> Outcome {
    let interval = shared.opts.ping_interval;
    let mut next_ping = first.as_ref().map_or_else(Instant::now, |p| p.sent) + interval;
    let mut ping = first;
    let outcome = loop {
        let deadline = ping.as_ref().map(|p| p.deadline);
        tokio::select! {
            end = link.ended() => break match end {
                ReaderEnd::Evicted => Outcome::Evicted,
                ReaderEnd::Lost(why) => Outcome::Lost(why),
            },
            cmd = cmd_rx.recv() => match cmd {
                Some(Command::Leave(reply)) => break Outcome::Leave(reply),
                None => break Outcome::Leave(None),
            },
            reply = async {
                match ping.as_mut() {
                    Some(p) => (&mut p.rx).await,
                    None => std::future::pending().await,
                }
            }, if deadline.is_some() => {
                let id = ping.take().map(|p| p.id);
                match reply {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break Outcome::Lost(format!("ping {id:?} failed: {e}")),
                    Err(_) => break Outcome::Lost("ping abandoned".to_owned()),
                }
            },
            _ = sleep_until(deadline.unwrap_or(next_ping)), if deadline.is_some() => {
                let ms = shared.opts.ping_timeout.as_millis();
                break Outcome::Lost(format!("no pong within {ms} ms"));
            },
            _ = sleep_until(next_ping), if deadline.is_none() => {
                ping = Some(send_ping(shared, link, false));
                next_ping += interval;
                let now = Instant::now();
                if next_ping < now {
                    next_ping = now + interval;
                }
            },
        }
    };
    if let Some(p) = ping {
        shared.forget(p.id);
    }
    outcome
}

/// `leaveRoom`, then close with 4102. `sessionDisconnected` (`disconnect`) is the last event.
async fn leave(shared: &Shared, mut link: Link) {
    if !shared.is_finished() {
        let (id, rx) = shared.send_on(&link, method::LEAVE_ROOM, Some(params(&Empty {})), PendingKind::Plain);
        tokio::select! {
            r = shared.wait(method::LEAVE_ROOM, rx, shared.opts.request_timeout) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "leaveRoom failed; leaving anyway");
                }
            }
            _ = link.ended() => {}
        }
        shared.forget(id);
        shared.finish(EndReason::Disconnect);
    }
    link.close(CLOSE_BY_CLIENT).await;
}

/// Reopens the link at `…&reconnect=true` and sends `connect`, every `reconnect_interval`, at most
/// `reconnect_attempts` times.
async fn reconnect(
    shared: &Arc<Shared>,
    user_rx: &UserRx,
    cmd_rx: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<Link, Failed> {
    let rpc_session_id = shared.state.lock().rpc_session_id.clone();
    let Some(rpc_session_id) = rpc_session_id else {
        tracing::warn!("no RPC session id from joinRoom: cannot reconnect");
        return Err(Failed::Rejected);
    };
    let attempts = shared.opts.reconnect_attempts;
    for attempt in 1..=attempts {
        let opened = tokio::select! {
            r = shared.open_link(true, user_rx) => r,
            cmd = cmd_rx.recv() => return Err(Failed::Leave(leave_reply(cmd))),
        };
        match opened {
            Err(e) => tracing::debug!(attempt, attempts, error = %e, "reconnection attempt failed"),
            Ok(mut link) => {
                let connect = connect_params(shared, rpc_session_id.clone());
                let (id, rx) = shared.send_on(&link, method::CONNECT, Some(connect), PendingKind::Reconnect);
                let result = tokio::select! {
                    r = shared.wait(method::CONNECT, rx, shared.opts.request_timeout) => Some(r),
                    end = link.ended() => {
                        if let ReaderEnd::Evicted = end {
                            shared.forget(id);
                            link.close(CLOSE_BY_CLIENT).await;
                            return Err(Failed::Evicted);
                        }
                        None
                    }
                    cmd = cmd_rx.recv() => {
                        shared.forget(id);
                        link.close(CLOSE_BY_CLIENT).await;
                        return Err(Failed::Leave(leave_reply(cmd)));
                    }
                };
                shared.forget(id);
                match result {
                    Some(Ok(_)) => {
                        tracing::info!(attempt, "reconnected");
                        link.open_gate();
                        return Ok(link);
                    }
                    Some(Err(Error::Rpc { code, message, .. })) => {
                        tracing::info!(code, %message, "reconnection refused: this participant is gone");
                        link.close(CLOSE_BY_CLIENT).await;
                        return Err(Failed::Rejected);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(attempt, error = %e, "reconnection attempt failed");
                        link.close(CLOSE_FOR_RECONNECTION).await;
                    }
                    None => {
                        tracing::debug!(attempt, "socket closed during reconnection");
                        link.close(CLOSE_FOR_RECONNECTION).await;
                    }
                }
            }
        }
        if attempt < attempts {
            tokio::select! {
                _ = sleep(shared.opts.reconnect_interval) => {}
                cmd = cmd_rx.recv() => return Err(Failed::Leave(leave_reply(cmd))),
            }
        }
    }
    tracing::info!(attempts, "giving up reconnecting");
    Err(Failed::GaveUp)
}

fn leave_reply(cmd: Option<Command>) -> Option<oneshot::Sender<()>> {
    match cmd {
        Some(Command::Leave(reply)) => reply,
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use signalroom_core::token::TokenInfo;
    use tokio::sync::mpsc;

    use super::*;
    use crate::options::ConnectOptions;

    fn shared() -> Arc<Shared> {
        let token = TokenInfo::parse("ws://127.0.0.1:1?sessionId=S1&token=tok_A").unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        Shared::new(token, ConnectOptions::default(), tx).0
    }

    fn text(params: Option<Params>) -> Option<String> {
        params.map(|p| p.get().to_owned())
    }

    #[test]
    fn pings_carry_the_last_seq() {
        let shared = shared();
        assert_eq!(text(ping_params(&shared, true)).as_deref(), Some(r#"{"interval":5000,"lastSeq":0}"#));
        assert_eq!(text(ping_params(&shared, false)).as_deref(), Some(r#"{"lastSeq":0}"#));
        shared.state.lock().last_seq = Some(42);
        assert_eq!(text(ping_params(&shared, true)).as_deref(), Some(r#"{"interval":5000,"lastSeq":42}"#));
        assert_eq!(text(ping_params(&shared, false)).as_deref(), Some(r#"{"lastSeq":42}"#));
    }

    #[test]
    fn connect_resumes_after_the_last_seq() {
        let shared = shared();
        let connect = |s: &Shared| connect_params(s, RpcSessionId::from("rpc1")).get().to_owned();
        assert_eq!(connect(&shared), r#"{"sessionId":"rpc1","reconnect":true,"lastSeq":0}"#);
        shared.state.lock().last_seq = Some(7);
        assert_eq!(connect(&shared), r#"{"sessionId":"rpc1","reconnect":true,"lastSeq":7}"#);
    }
}
