//! The signalling model of OpenVidu 2.x, shared by the signalroom server and clients.
//!
//! This crate is pure: no sockets, no tasks, no clocks. It owns
//! - the identifiers ([`SessionId`], [`ConnectionId`], [`RpcSessionId`]) as newtypes,
//! - the JSON-RPC 2.0 frames ([`jsonrpc`]) and every OpenVidu method and notification as typed
//!   serde structs ([`protocol`]),
//! - the REST objects of `/openvidu/api` ([`rest`]),
//! - tokens ([`token`]), signal validation and the routing rule ([`signal`]), and the limits.
//!
//! ```
//! use signalroom_core::signal::{Recipients, SignalMessage, route};
//! use signalroom_core::ConnectionId;
//!
//! // The inner message openvidu-browser sends in `sendMessage.params.message`.
//! let msg = SignalMessage::parse(r#"{"to":["con_B"],"data":"hi","type":"signal:chat"}"#, 1024).unwrap();
//! let roster = [ConnectionId::from("con_A"), ConnectionId::from("con_B")];
//! let recipients = route(&msg.to, |id| roster.contains(id)).unwrap();
//! assert_eq!(recipients, Recipients::Only(vec![ConnectionId::from("con_B")]));
//! ```

mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod history;
mod ids;
pub mod jsonrpc;
pub mod limits;
pub mod protocol;
pub mod rest;
pub mod signal;
pub mod signal_frame;
pub mod token;

pub use error::{Error, Result};
pub use ids::{ConnectionId, RpcSessionId, SessionId};
pub use protocol::{EndReason, Role};

/// The OpenVidu version this implementation speaks; sent as `version` in `joinRoom` results and
/// as `sdkVersion` by clients.
pub const OPENVIDU_VERSION: &str = "2.32.2";
