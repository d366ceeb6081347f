//! The admin commands (`signalroom sessions|signal|kick|token|listen`): a look into, and a hand
//! on, any OpenVidu-compatible server through its REST API, with tables for people and `--json`
//! for scripts. A refusal is printed with what to do about it, from the hints the Python package
//! gives too ([`signalroom_client::Cause`]).

use std::io::Write as _;

use clap::{Args, ValueEnum};
use comfy_table::Table;
use serde_json::{Value, json};
use signalroom_client::{
    ApiOptions, Audience, ConnectOptions, Connection, ConnectionId, ConnectionOptions, ConnectionStatus,
    Event, Role, ServerApi, Session, SessionObject,
};

/// Exit status of a command the server refused or could not be reached for.
const EXIT_REFUSED: u8 = 1;

/// The server's URL when neither `--url`, `SIGNALROOM_URL` nor `OPENVIDU_URL` gives it.
const DEFAULT_URL: &str = "http://127.0.0.1:4443";

/// What every admin command needs: where the server is and its secret.
#[derive(Args, Debug, Clone)]
pub(crate) struct Target {
    /// The server's URL (the base of `/openvidu/api`); else OPENVIDU_URL, else
    /// http://127.0.0.1:4443.
    #[arg(long, env = "SIGNALROOM_URL")]
    url: Option<String>,
    /// Secret of the REST API (HTTP Basic, user OPENVIDUAPP).
    #[arg(long, env = "OPENVIDU_SECRET", hide_env_values = true, default_value = crate::config::DEFAULT_SECRET)]
    secret: String,
    /// Accept any TLS certificate (a server started with --tls-self-signed). Never in production.
    #[arg(long, env = "SIGNALROOM_INSECURE")]
    insecure: bool,
    /// Print JSON for scripts rather than text for people.
    #[arg(long)]
    json: bool,
}

impl Target {
    fn url(&self) -> String {
        self.url
            .clone()
            .or_else(|| std::env::var("OPENVIDU_URL").ok())
            .unwrap_or_else(|| DEFAULT_URL.to_owned())
    }

    /// A client of the server's REST API; `Err` (printed) for a URL that is not one.
    fn api(&self) -> Result<ServerApi, u8> {
        let options = ApiOptions::default().with_accept_invalid_certs(self.insecure);
        let url = self.url();
        ServerApi::with_options(&url, &self.secret, options).map_err(|e| {
            eprintln!("signalroom: {url}: {e}");
            crate::cli::EXIT_USAGE
        })
    }
}

/// The role of a token.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "UPPER")]
pub(crate) enum RoleArg {
    Subscriber,
    Publisher,
    Moderator,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Subscriber => Role::Subscriber,
            RoleArg::Publisher => Role::Publisher,
            RoleArg::Moderator => Role::Moderator,
        }
    }
}

/// One admin command.
#[derive(Debug)]
pub(crate) enum Admin {
    Sessions,
    Signal { session: String, data: String, kind: Option<String>, to: Vec<String> },
    Kick { session: String, connection: String },
    Drain,
    Token { session: String, role: Option<RoleArg>, data: Option<String> },
    History { session: String, limit: Option<usize>, since: Option<u64> },
}

/// Runs `command` against `target`; prints its result to stdout, a problem to stderr; the exit
/// status.
pub(crate) async fn run(target: Target, command: Admin) -> u8 {
    let api = match target.api() {
        Ok(api) => api,
        Err(status) => return status,
    };
    let out = match execute(&api, command, target.json).await {
        Ok(out) => out,
        Err(e) => return refused(&e),
    };
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{out}").and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(_) => EXIT_REFUSED,
    }
}

async fn execute(api: &ServerApi, command: Admin, as_json: bool) -> signalroom_client::Result<String> {
    match command {
        Admin::Sessions => {
            let sessions = api.list_sessions().await?;
            Ok(if as_json {
                pretty(&serde_json::to_value(&sessions).unwrap_or_default())
            } else {
                table(&sessions)
            })
        }
        Admin::Signal { session, data, kind, to } => {
            let to: Vec<ConnectionId> = to.into_iter().map(ConnectionId::from).collect();
            api.signal(&session, &data, kind.as_deref(), &to).await?;
            Ok(if as_json {
                pretty(&json!({"session": session, "sent": true}))
            } else {
                let whom = if to.is_empty() {
                    "everyone".to_owned()
                } else {
                    format!("{} participant(s)", to.len())
                };
                format!("signal sent to {whom} in {session}")
            })
        }
        Admin::Drain => {
            api.drain().await?;
            Ok(if as_json {
                pretty(&json!({"draining": true}))
            } else {
                "draining: its participants move to the other nodes; it exits once they have".to_owned()
            })
        }
        Admin::Kick { session, connection } => {
            api.delete_connection(&session, &connection).await?;
            Ok(if as_json {
                pretty(&json!({"session": session, "connection": connection, "kicked": true}))
            } else {
                format!("{connection} removed from {session}")
            })
        }
        Admin::History { session, limit, since } => {
            let entries = api.signal_history(&session, limit, since).await?;
            Ok(if as_json {
                pretty(&serde_json::to_value(&entries).unwrap_or_default())
            } else {
                history_table(&entries)
            })
        }
        Admin::Token { session, role, data } => {
            // The session is made when missing (409: it exists already).
            match api.create_session(Some(&session)).await {
                Ok(_) | Err(signalroom_client::Error::Api { status: 409, .. }) => {}
                Err(e) => return Err(e),
            }
            let mut options = ConnectionOptions::default();
            if let Some(role) = role {
                options = options.with_role(role.into());
            }
            if let Some(data) = data {
                options = options.with_data(data);
            }
            let connection = api.create_connection(&session, &options).await?;
            Ok(if as_json {
                pretty(&json!({
                    "session": session,
                    "connection": connection.id,
                    "role": connection.role.as_str(),
                    "token": connection.token,
                }))
            } else {
                connection.token
            })
        }
    }
}

/// A session's signal history, one row per signal, oldest first.
fn history_table(entries: &[signalroom_core::history::HistoryEntry]) -> String {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(["SEQ", "SENT", "FROM", "TYPE", "DATA"]);
    for e in entries {
        table.add_row([
            e.seq.to_string(),
            local_time(e.created_at).map_or_else(|| e.created_at.to_string(), |t| t.date_time()),
            e.from.as_ref().map_or_else(|| "server".to_owned(), ToString::to_string),
            e.kind.clone().unwrap_or_default(),
            e.data.clone().unwrap_or_default(),
        ]);
    }
    table.to_string()
}

/// Prints why the server refused, or could not be reached, and what to do about it; the exit
/// status.
fn refused(error: &signalroom_client::Error) -> u8 {
    eprintln!("signalroom: {}", error.explain(Audience::CommandLine));
    EXIT_REFUSED
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Sessions and their participants, one row per participant (a session without any has one
/// row of its own).
fn table(sessions: &[SessionObject]) -> String {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header([
        "SESSION",
        "CREATED",
        "CONNECTION",
        "STATUS",
        "ROLE",
        "IP",
        "PLATFORM",
        "CLIENT DATA",
        "SERVER DATA",
    ]);
    for s in sessions {
        let created = local_time(s.created_at).map_or_else(|| s.created_at.to_string(), |t| t.date_time());
        if s.connections.content.is_empty() {
            table.add_row([s.id.as_str(), &created, "-", "", "", "", "", "", ""]);
        }
        for c in &s.connections.content {
            table.add_row([
                s.id.as_str(),
                &created,
                c.id.as_str(),
                match c.status {
                    ConnectionStatus::Pending => "pending",
                    ConnectionStatus::Active => "active",
                },
                c.role.as_str(),
                c.ip.as_deref().unwrap_or(""),
                c.platform.as_deref().unwrap_or(""),
                c.client_data.as_deref().unwrap_or(""),
                &c.server_data,
            ]);
        }
    }
    if sessions.is_empty() {
        return "no sessions".to_owned();
    }
    table.to_string().lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
}

/// What `signalroom listen` was asked for.
#[derive(Debug)]
pub(crate) struct Listen {
    /// A token (`ws://…`), or a session's id to make a connection for.
    pub(crate) token_or_session: String,
    /// This participant's client data.
    pub(crate) data: String,
    /// Print only the signals of this type (without `signal:`).
    pub(crate) kind: Option<String>,
    /// Stop after this many signals.
    pub(crate) count: Option<u64>,
}

/// Joins a session and prints what happens in it, one line each, until Ctrl-C (status 130),
/// `--count` signals or the end of the session; the exit status.
pub(crate) async fn listen(target: Target, listen: Listen) -> u8 {
    let stop = crate::cli::shutdown_signal();
    let token = match token_for(&target, listen.token_or_session).await {
        Ok(token) => token,
        Err(status) => return status,
    };
    let options =
        ConnectOptions::default().with_metadata(listen.data).with_accept_invalid_certs(target.insecure);
    let (session, mut events) = match Session::connect_with(&token, options).await {
        Ok(joined) => joined,
        Err(e) => return refused(&e),
    };
    eprintln!("listening to session {} as {}", session.session_id(), session.connection_id());
    tokio::pin!(stop);
    let mut signals = 0;
    let status = loop {
        let event = tokio::select! {
            () = &mut stop => break 130,
            event = events.recv() => event,
        };
        let Some(event) = event else { break 0 };
        if let Event::Signal(signal) = &event {
            if listen.kind.as_deref().is_some_and(|kind| kind != signal.user_type()) {
                continue;
            }
            signals += 1;
        }
        if let Some(line) = listen_line(&event, target.json) {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                break EXIT_REFUSED; // nobody reads any more
            }
        }
        let over = matches!(event, Event::SessionDisconnected { .. });
        if over || listen.count.is_some_and(|count| signals >= count) {
            break 0;
        }
    };
    let _ = session.disconnect().await;
    status
}

/// `token_or_session` if it is a token, else a token made for the session of that name (created
/// if missing); `Err` (printed) with the exit status.
async fn token_for(target: &Target, token_or_session: String) -> Result<String, u8> {
    if token_or_session.starts_with("ws://") || token_or_session.starts_with("wss://") {
        return Ok(token_or_session);
    }
    let api = target.api()?;
    let made = async {
        api.create_session(Some(&token_or_session)).await?;
        api.create_connection(&token_or_session, &ConnectionOptions::default()).await
    };
    made.await.map(|connection| connection.token).map_err(|e| refused(&e))
}

/// The line `signalroom listen` prints for `event`, if any: for people, the local time, what
/// happened and who (a participant by its id and its data); with `--json`, one object.
fn listen_line(event: &Event, as_json: bool) -> Option<String> {
    let who = |c: &Connection| {
        if c.data.is_empty() {
            c.connection_id.to_string()
        } else {
            format!("{} ({})", c.connection_id, c.data)
        }
    };
    let now = local_time(crate::util::now_ms()).map(|t| t.time_of_day()).unwrap_or_default();
    Some(match event {
        Event::Signal(signal) if as_json => json!({
            "event": signal.kind,
            "type": signal.user_type(),
            "from": signal.from_id().map_or("server", |id| id.as_str()),
            "data": signal.data,
        })
        .to_string(),
        Event::Signal(signal) => {
            let from = signal.from.as_ref().map_or_else(|| "server".to_owned(), who);
            format!("{now} {} from {from}: {}", signal.kind, signal.data)
        }
        Event::ConnectionCreated(c) if as_json => {
            json!({"event": event.name(), "from": c.connection_id, "data": c.data, "reason": null})
                .to_string()
        }
        Event::ConnectionCreated(c) => format!("{now} {} joined", who(c)),
        Event::ConnectionDestroyed { connection: c, reason } if as_json => {
            json!({"event": event.name(), "from": c.connection_id, "data": c.data, "reason": reason.as_str()})
                .to_string()
        }
        Event::ConnectionDestroyed { connection, reason } => {
            format!("{now} {} left ({})", who(connection), reason.as_str())
        }
        Event::SessionDisconnected { reason } if as_json => {
            json!({"event": event.name(), "reason": reason.as_str()}).to_string()
        }
        Event::SessionDisconnected { reason } => format!("{now} session over ({})", reason.as_str()),
        _ => return None,
    })
}

/// A moment in the local time zone.
struct LocalTime {
    tm: libc::tm,
    millis: u64,
}

impl LocalTime {
    /// `2026-12-06 17:28:42`.
    fn date_time(&self) -> String {
        let t = &self.tm;
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.tm_year + 1900,
            t.tm_mon + 1,
            t.tm_mday,
            t.tm_hour,
            t.tm_min,
            t.tm_sec
        )
    }

    /// `17:28:42.123`.
    fn time_of_day(&self) -> String {
        let t = &self.tm;
        format!("{:02}:{:02}:{:02}.{:03}", t.tm_hour, t.tm_min, t.tm_sec, self.millis)
    }
}

/// `ms` since the epoch in the local time zone (the `TZ` variable, else `/etc/localtime`).
#[allow(unsafe_code)]
fn local_time(ms: u64) -> Option<LocalTime> {
    let secs = libc::time_t::try_from(ms / 1000).ok()?;
    // SAFETY: `tm` is plain data (integers and a pointer that may be null), so all zeroes is a
    // valid value; `localtime_r`, the reentrant variant, only reads `secs` and writes `tm`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::localtime_r(&secs, &mut tm) };
    (!done.is_null()).then_some(LocalTime { tm, millis: ms % 1000 })
}

#[cfg(test)]
mod tests {
    use signalroom_client::EndReason;

    use super::*;

    fn alice() -> Connection {
        Connection::new(ConnectionId::from("con_A"), 0, "alice")
    }

    #[test]
    fn listen_names_a_participant_by_id_and_data() {
        let line = |event: &Event| listen_line(event, false).unwrap().split_once(' ').unwrap().1.to_owned();
        assert_eq!(line(&Event::ConnectionCreated(alice())), "con_A (alice) joined");
        let quiet = Connection::new(ConnectionId::from("con_B"), 0, "");
        assert_eq!(line(&Event::ConnectionCreated(quiet)), "con_B joined");
        let left = Event::ConnectionDestroyed { connection: alice(), reason: EndReason::Disconnect };
        assert_eq!(line(&left), "con_A (alice) left (disconnect)");
        let json: Value = serde_json::from_str(&listen_line(&left, true).unwrap()).unwrap();
        assert_eq!(
            json,
            json!({"event": "connectionDestroyed", "from": "con_A", "data": "alice", "reason": "disconnect"})
        );
    }

    #[test]
    fn local_times_read_as_dates_and_times_of_day() {
        let t = local_time(1_796_574_414_706).unwrap();
        let (date, time) = (t.date_time(), t.time_of_day());
        assert_eq!(date.len(), "2026-12-06 17:28:42".len(), "{date}");
        assert!(date.starts_with("2026-12-"), "{date}");
        assert_eq!(time.len(), "17:28:42.706".len(), "{time}");
        assert!(time.ends_with(".706") && date.ends_with(&time[..8]), "{date} {time}");
    }
}
