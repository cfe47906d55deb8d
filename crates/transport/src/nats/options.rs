//! [`NatsOptions`], [`NatsError`] and the naming of subjects and streams (see the module docs
//! of the NATS transport).

use std::path::PathBuf;

/// How to reach the server and who this transport is.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Server URL(s), e.g. `nats://127.0.0.1:4222` (comma-separated for several).
    pub url: String,
    /// The task id (a subject token).
    pub task: String,
    /// The local endpoint: a node id or [`COORDINATOR`](crate::COORDINATOR).
    pub endpoint: String,
    /// User and password.
    pub user_password: Option<(String, String)>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// The connection's name as the server shows it; default `fedengine-<task>-<endpoint>`.
    pub connection_name: Option<String>,
    /// An upper bound on chunk size below the server's limit (tests use it to get many
    /// chunks); at least [`MIN_CHUNK`](crate::chunk::MIN_CHUNK).
    pub max_chunk: Option<usize>,
    /// The largest message the inbox accepts, in bytes ([`DEFAULT_MAX_MESSAGE`] unless set);
    /// the runtime lowers it per task from the model's size.
    pub max_message: u64,
}

/// The default of [`NatsOptions::max_message`]: 4 GiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 4 << 30;

impl NatsOptions {
    /// Options with no authentication and no TLS.
    pub fn new(
        url: impl Into<String>,
        task: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            task: task.into(),
            endpoint: endpoint.into(),
            user_password: None,
            credentials_file: None,
            tls_ca: None,
            connection_name: None,
            max_chunk: None,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Why a NATS transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A task or node id that cannot be a subject token.
    #[error("`{0}` is not a valid task or node id for NATS (use letters, digits, `-` and `_`)")]
    InvalidName(String),
    /// The credentials file could not be read.
    #[error("reading NATS credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No connection.
    #[error(
        "connecting to NATS at {url}: {source} (check the URL, and that nats-server runs there with JetStream, `-js`)"
    )]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        source: async_nats::ConnectError,
    },
    /// The server refused the credentials.
    #[error(
        "the NATS server at {url} refused {who}: check the user and password (--user, --password) or the credentials file (--creds) against the server's configuration"
    )]
    Refused {
        /// The URL.
        url: String,
        /// Who tried: the user or the credentials file.
        who: String,
    },
    /// The server is older than [`MIN_SERVER_VERSION`](super::MIN_SERVER_VERSION).
    #[error("{0}")]
    ServerTooOld(String),
    /// The server has no JetStream, or the task's stream could not be made.
    #[error(
        "JetStream stream `{stream}`: {message} (is the server started with JetStream, `-js`?)"
    )]
    Stream {
        /// The stream.
        stream: String,
        /// Why.
        message: String,
    },
}

/// Whether `name` can be a subject token and consumer name.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Subject of messages from the coordinator to `node`.
pub fn to_subject(task: &str, node: &str) -> String {
    format!("fedengine.{task}.to.{node}")
}

/// Subject of messages from `node` to the coordinator.
pub fn from_subject(task: &str, node: &str) -> String {
    format!("fedengine.{task}.from.{node}")
}

/// The task's stream name.
pub fn stream_name(task: &str) -> String {
    format!("fedengine-{task}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_names() {
        assert_eq!(to_subject("t1", "site-1"), "fedengine.t1.to.site-1");
        assert_eq!(from_subject("t1", "site-1"), "fedengine.t1.from.site-1");
        assert_eq!(stream_name("t1"), "fedengine-t1");
        assert!(valid_name("site_1-A"));
        for bad in ["", "a.b", "a*", ">", "a b", "ü"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
