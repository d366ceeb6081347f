//! The ids every crate passes around, as newtypes over a shared string: a session's
//! ([`SessionId`]), a participant's ([`ConnectionId`]) and a link's ([`RpcSessionId`]). Cheap to
//! clone, compared by value.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(Arc::from(s))
            }
        }

        impl From<&$name> for $name {
            fn from(id: &$name) -> Self {
                id.clone()
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

id_type!(
    /// An OpenVidu session ("room") id: `ses_…` or a `customSessionId`.
    SessionId
);
id_type!(
    /// A participant slot, public to every participant: `con_…`. Created at REST time.
    ConnectionId
);
id_type!(
    /// The id of one JSON-RPC session (one participant's link), used to reconnect. Private.
    RpcSessionId
);

impl SessionId {
    /// Whether `s` is a valid `customSessionId`: `[a-zA-Z0-9_-]+`.
    pub fn is_valid_custom(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_session_id_syntax() {
        assert!(SessionId::is_valid_custom("lobby_1-A"));
        assert!(!SessionId::is_valid_custom(""));
        assert!(!SessionId::is_valid_custom("a b"));
        assert!(!SessionId::is_valid_custom("a/b"));
        assert!(!SessionId::is_valid_custom("é"));
    }

    #[test]
    fn ids_serialise_as_strings() {
        let id = ConnectionId::from("con_A");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""con_A""#);
        let back: ConnectionId = serde_json::from_str(r#""con_A""#).unwrap();
        assert_eq!(back, id);
    }
}
