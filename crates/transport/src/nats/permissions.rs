//! NATS users and permissions for one task: who may publish, read, and drive which
//! JetStream API calls (see `config/nats/README.md` for the rules in prose).
//!
//! [`server_config`] writes a nats-server configuration with one user per endpoint (user
//! name = node id, or [`COORDINATOR`]) and an allow-list per user; everything not listed is
//! denied. For task `T`, stream `S = fedengine-T` and node `N`:
//!
//! | user | publish | subscribe |
//! |---|---|---|
//! | `N` | `fedengine.T.from.N`; `$JS.API.STREAM.INFO.S`; `$JS.API.CONSUMER.INFO.S.N`; `$JS.API.CONSUMER.CREATE.S.N.fedengine.T.to.N`; `$JS.API.CONSUMER.MSG.NEXT.S.N`; `$JS.ACK.S.N.>` | `_INBOX.fedengine.T.N.>` |
//! | `coordinator` | `fedengine.T.to.*`; `$JS.API.STREAM.INFO.S`; `$JS.API.STREAM.CREATE.S`; `$JS.API.CONSUMER.INFO.S.coordinator`; `$JS.API.CONSUMER.CREATE.S.coordinator.fedengine.T.from.>`; `$JS.API.CONSUMER.MSG.NEXT.S.coordinator`; `$JS.ACK.S.coordinator.>` | `_INBOX.fedengine.T.coordinator.>` |
//!
//! - Consumers are created only through the filtered create subject
//!   `$JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>`, which async-nats 0.51 uses
//!   whenever a consumer has a name and one filter subject. The server refuses a request whose
//!   body names another consumer or another filter than the subject does, so allowing exactly
//!   one such subject pins both the consumer's name and its filter. The unfiltered
//!   (`CONSUMER.CREATE.S.N`) and legacy (`CONSUMER.DURABLE.CREATE.S.N`) forms are not allowed:
//!   with them a node could give its own consumer another node's filter.
//! - Replies (JetStream API responses, publish acknowledgements, pulled messages) go to the
//!   connection's inbox prefix, which the transport sets to [`inbox_prefix`]
//!   (`_INBOX.fedengine.T.N`) instead of the shared `_INBOX`: with `_INBOX.>` any user could
//!   subscribe to every other user's replies, and so read every message pulled by anyone.
//! - Nobody may delete or purge streams or consumers, read messages by sequence
//!   (`STREAM.MSG.GET`, `DIRECT.GET`) or list streams and consumers. Only the coordinator
//!   creates the stream: a node that connects before the stream exists fails (after the
//!   request timeout) with [`NatsError::Stream`](super::NatsError::Stream); start the
//!   coordinator first.
//! - User and password keep the example short; in production use nkeys or decentralised JWT
//!   `.creds` files ([`NatsOptions::credentials_file`](super::NatsOptions)) with the same
//!   permission lists, and TLS.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{from_subject, stream_name, to_subject, valid_name};
use crate::base::COORDINATOR;

/// Why a configuration could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A task or node id that cannot be a subject token.
    #[error("`{0}` is not a valid task or node id for NATS (use letters, digits, `-` and `_`)")]
    InvalidName(String),
    /// A node id used twice, or a node called `coordinator`.
    #[error("node `{0}` is listed twice or is the coordinator's name")]
    Duplicate(String),
    /// A password that is empty or cannot be written into the configuration safely.
    #[error(
        "the password of `{0}` is empty or contains a quote, backslash, `$` or control character"
    )]
    InvalidPassword(String),
}

/// What one user may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects the user may publish on (wildcards as in NATS).
    pub publish: Vec<String>,
    /// Subjects the user may subscribe to.
    pub subscribe: Vec<String>,
}

/// The inbox prefix of `endpoint`'s connections for `task`: replies to it are readable by
/// that endpoint only.
pub fn inbox_prefix(task: &str, endpoint: &str) -> String {
    format!("_INBOX.fedengine.{task}.{endpoint}")
}

/// The permissions of `endpoint` (a node id or [`COORDINATOR`]) for `task`.
pub fn permissions(task: &str, endpoint: &str) -> Permissions {
    let stream = stream_name(task);
    let (data, filter) = if endpoint == COORDINATOR {
        (to_subject(task, "*"), format!("fedengine.{task}.from.>"))
    } else {
        (from_subject(task, endpoint), to_subject(task, endpoint))
    };
    let mut publish = vec![data, format!("$JS.API.STREAM.INFO.{stream}")];
    if endpoint == COORDINATOR {
        publish.push(format!("$JS.API.STREAM.CREATE.{stream}"));
    }
    publish.extend([
        format!("$JS.API.CONSUMER.INFO.{stream}.{endpoint}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.{endpoint}.{filter}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{endpoint}"),
        format!("$JS.ACK.{stream}.{endpoint}.>"),
    ]);
    Permissions {
        publish,
        subscribe: vec![format!("{}.>", inbox_prefix(task, endpoint))],
    }
}

fn check_password(user: &str, password: &str) -> Result<(), ConfigError> {
    if password.is_empty()
        || password
            .chars()
            .any(|c| c == '"' || c == '\\' || c == '$' || c.is_control())
    {
        return Err(ConfigError::InvalidPassword(user.to_owned()));
    }
    Ok(())
}

/// A quoted subject per line, indented for the `allow` array.
fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("            \"{s}\"\n"))
        .collect()
}

/// A nats-server configuration for `task`: JetStream (with `store_dir` when given; otherwise
/// the server's default or `-sd`) and one user per endpoint, the coordinator with
/// `coordinator_password` and each `(node, password)` of `nodes`, with the permissions of
/// [`permissions`]. Listen address, TLS and limits are the caller's (command line or an
/// `include`).
pub fn server_config(
    task: &str,
    coordinator_password: &str,
    nodes: &[(&str, &str)],
    store_dir: Option<&str>,
) -> Result<String, ConfigError> {
    if !valid_name(task) {
        return Err(ConfigError::InvalidName(task.to_owned()));
    }
    check_password(COORDINATOR, coordinator_password)?;
    let mut seen = BTreeSet::from([COORDINATOR]);
    for (node, password) in nodes {
        if !valid_name(node) {
            return Err(ConfigError::InvalidName((*node).to_owned()));
        }
        if !seen.insert(*node) {
            return Err(ConfigError::Duplicate((*node).to_owned()));
        }
        check_password(node, password)?;
    }
    if let Some(dir) = store_dir {
        check_password("store_dir", dir)?;
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# nats-server configuration for fedengine task `{task}` (stream `{}`).\n\
         # Written by fl_transport::permissions::server_config: one user per endpoint,\n\
         # everything not allowed below is denied. The rules: config/nats/README.md.\n",
        stream_name(task)
    );
    match store_dir {
        Some(dir) => {
            let _ = writeln!(out, "jetstream {{\n  store_dir: \"{dir}\"\n}}\n");
        }
        None => {
            let _ = writeln!(
                out,
                "# store_dir: the server's default, or `-sd DIR` on the command line.\njetstream {{}}\n"
            );
        }
    }
    out.push_str("authorization {\n  users = [\n");
    let users = std::iter::once((COORDINATOR, coordinator_password)).chain(nodes.iter().copied());
    for (user, password) in users {
        let p = permissions(task, user);
        let role = if user == COORDINATOR {
            "the coordinator: publishes to every node, reads what every node sends".to_owned()
        } else {
            format!(
                "node `{user}`: publishes only its own updates, reads only what is addressed to it"
            )
        };
        let _ = writeln!(
            out,
            "    # {role}\n    {{\n      user: \"{user}\"\n      password: \"{password}\"\n      permissions: {{\n        publish: {{\n          allow: [\n{}          ]\n        }}\n        subscribe: {{\n          allow: [\n{}          ]\n        }}\n      }}\n    }}",
            list(&p.publish),
            list(&p.subscribe)
        );
    }
    out.push_str("  ]\n}\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_permissions_name_only_its_own_subjects_and_consumer() {
        let p = permissions("digits", "site-1");
        assert_eq!(
            p.publish,
            [
                "fedengine.digits.from.site-1",
                "$JS.API.STREAM.INFO.fedengine-digits",
                "$JS.API.CONSUMER.INFO.fedengine-digits.site-1",
                "$JS.API.CONSUMER.CREATE.fedengine-digits.site-1.fedengine.digits.to.site-1",
                "$JS.API.CONSUMER.MSG.NEXT.fedengine-digits.site-1",
                "$JS.ACK.fedengine-digits.site-1.>",
            ]
        );
        assert_eq!(p.subscribe, ["_INBOX.fedengine.digits.site-1.>"]);
        let c = permissions("digits", COORDINATOR);
        assert!(c.publish.contains(&"fedengine.digits.to.*".to_owned()));
        assert!(
            c.publish.contains(
                &"$JS.API.CONSUMER.CREATE.fedengine-digits.coordinator.fedengine.digits.from.>"
                    .to_owned()
            )
        );
        assert!(c.publish.iter().all(|s| !s.contains("DELETE")));
    }

    #[test]
    fn config_lists_every_user_and_refuses_unsafe_input() {
        let config = server_config(
            "digits",
            "c-pw",
            &[("site-1", "p1"), ("site-2", "p2")],
            Some("/var/lib/nats"),
        )
        .expect("config");
        for needle in [
            "user: \"coordinator\"",
            "user: \"site-1\"",
            "password: \"p2\"",
            "store_dir: \"/var/lib/nats\"",
            "\"fedengine.digits.from.site-2\"",
        ] {
            assert!(config.contains(needle), "{needle} missing:\n{config}");
        }
        assert_eq!(
            server_config("a.b", "x", &[], None),
            Err(ConfigError::InvalidName("a.b".into()))
        );
        assert_eq!(
            server_config("t", "x", &[("site-*", "p")], None),
            Err(ConfigError::InvalidName("site-*".into()))
        );
        assert_eq!(
            server_config("t", "x", &[("s", "p"), ("s", "q")], None),
            Err(ConfigError::Duplicate("s".into()))
        );
        assert_eq!(
            server_config("t", "x", &[(COORDINATOR, "p")], None),
            Err(ConfigError::Duplicate(COORDINATOR.into()))
        );
        for bad in ["", "a\"b", "a\\b", "$x", "a\nb"] {
            assert_eq!(
                server_config("t", "x", &[("s", bad)], None),
                Err(ConfigError::InvalidPassword("s".into()))
            );
        }
    }
}
