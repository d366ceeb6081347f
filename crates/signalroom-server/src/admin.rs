//! The admin commands (`signalroom sessions|signal|kick|token`): a look into, and a hand on, any
//! OpenVidu-compatible server through its REST API, with tables for people and `--json` for
//! scripts.

use std::io::Write as _;

use clap::{Args, ValueEnum};
use comfy_table::Table;
use serde_json::{Value, json};
use signalroom_client::{
    ApiOptions, ConnectionId, ConnectionOptions, ConnectionStatus, Role, ServerApi, SessionObject,
};

/// Exit status of a command the server refused or could not be reached for.
const EXIT_REFUSED: u8 = 1;

/// What every admin command needs: where the server is and its secret.
#[derive(Args, Debug, Clone)]
pub(crate) struct Target {
    /// The server's URL (the base of `/openvidu/api`).
    #[arg(long, env = "SIGNALROOM_URL", default_value = "http://127.0.0.1:4443")]
    url: String,
    /// Secret of the REST API (HTTP Basic, user OPENVIDUAPP).
    #[arg(long, env = "OPENVIDU_SECRET", hide_env_values = true, default_value = crate::config::DEFAULT_SECRET)]
    secret: String,
    /// Accept any TLS certificate (a server started with --tls-self-signed). Never in production.
    #[arg(long, env = "SIGNALROOM_INSECURE")]
    insecure: bool,
    /// Print JSON rather than a table.
    #[arg(long)]
    json: bool,
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
    Token { session: String, role: Option<RoleArg>, data: Option<String> },
}

/// Runs `command` against `target`; prints its result to stdout, a problem to stderr; the exit
/// status.
pub(crate) async fn run(target: Target, command: Admin) -> u8 {
    let options = ApiOptions::default().with_accept_invalid_certs(target.insecure);
    let api = match ServerApi::with_options(&target.url, &target.secret, options) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("signalroom: {}: {e}", target.url);
            return crate::cli::EXIT_USAGE;
        }
    };
    let out = match execute(&api, command, target.json).await {
        Ok(out) => out,
        Err(e) => {
            eprintln!("signalroom: {e}");
            return EXIT_REFUSED;
        }
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
        Admin::Kick { session, connection } => {
            api.delete_connection(&session, &connection).await?;
            Ok(if as_json {
                pretty(&json!({"session": session, "connection": connection, "kicked": true}))
            } else {
                format!("{connection} removed from {session}")
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
        let created = format!("{}", s.created_at);
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
