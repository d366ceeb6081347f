//! Why a frame, a signal or a token is refused ([`Error`]), each mapped to the JSON-RPC error
//! OpenVidu gives for it.

use crate::jsonrpc::{ErrorObject, codes};

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a frame, a signal or a token is refused. Each maps to the JSON-RPC error OpenVidu gives.
/// None of these is transient: retrying the same input will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The signal is not a JSON object, or `to` is not an array (OpenVidu 600).
    #[error("provided signal object '{message}' has not a valid JSON format: {reason}")]
    SignalFormat {
        /// The message as received.
        message: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `to` entry is `null` or not a joined participant; nothing was delivered (OpenVidu 601).
    #[error("signal \"to\" field invalid format: {reason}")]
    SignalRecipients {
        /// Which entry is wrong.
        reason: String,
    },
    /// A field has the wrong JSON type or value.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `data` is larger than the configured limit.
    #[error("signal data is {size} bytes, over the limit of {limit} bytes")]
    DataTooLarge {
        /// Size of the data in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The request this signal makes is larger than the largest frame the server accepts (its
    /// `maxFrameBytes`, OpenVidu's 50 KiB for other servers): refused before sending, since the
    /// server would close the socket. Send it as a stream instead.
    #[error(
        "signal too big: its frame would be {size} bytes, over the server's limit of {limit} bytes; \
         nothing was sent and the session is still up: send large payloads as a stream \
         (Python: session.send_text(data) or session.open_stream())"
    )]
    FrameTooLarge {
        /// Size of the frame the signal makes, in bytes.
        size: usize,
        /// The largest frame the server accepts, in bytes.
        limit: usize,
    },
    /// A token that cannot be parsed.
    #[error("token not valid: {0:?}")]
    InvalidToken(String),
}

impl Error {
    /// The JSON-RPC error code OpenVidu uses for this error.
    pub fn rpc_code(&self) -> i64 {
        match self {
            Error::SignalFormat { .. }
            | Error::InvalidField { .. }
            | Error::DataTooLarge { .. }
            | Error::FrameTooLarge { .. } => codes::SIGNAL_FORMAT_INVALID,
            Error::SignalRecipients { .. } => codes::SIGNAL_TO_INVALID,
            Error::InvalidToken(_) => codes::TOKEN_INVALID,
        }
    }

    /// This error as a JSON-RPC error object.
    pub fn to_error_object(&self) -> ErrorObject {
        let mut message = self.to_string();
        // Messages are lowercase internally; OpenVidu's start with a capital letter.
        if let Some(first) = message.get(0..1) {
            let upper = first.to_ascii_uppercase();
            message.replace_range(0..1, &upper);
        }
        ErrorObject::new(self.rpc_code(), message)
    }
}
