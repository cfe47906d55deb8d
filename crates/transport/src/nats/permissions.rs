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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    /// Subjects the user may publish on (wildcards as in NATS).
    pub publish: Vec<String>,
    /// Subjects the user may subscribe to.
    pub subscribe: Vec<String>,
    /// Subjects excluded from `publish` (deny wins).
    pub publish_deny: Vec<String>,
    /// Subjects excluded from `subscribe`.
    pub subscribe_deny: Vec<String>,
    /// Whether the user may answer the requests it receives (`allow_responses`).
    pub allow_responses: bool,
}

/// The task scope of a configuration that serves every task (long-running agents and
/// coordinator service): `*` in the place of the task and stream tokens.
pub const ANY_TASK: &str = "*";

/// The clients' stream (`engine submit|status|logs` talk to the coordinator service on it).
const CLIENTS_STREAM: &str = "fedengine-clients";

/// The inbox prefix of `endpoint`'s connections for `task`: replies to it are readable by
/// that endpoint only.
pub fn inbox_prefix(task: &str, endpoint: &str) -> String {
    format!("_INBOX.fedengine.{task}.{endpoint}")
}

/// The permissions of `endpoint` (a node id or [`COORDINATOR`]) for `task`, or for every
/// task with [`ANY_TASK`]. Besides the task's data, a node may take task announcements on
/// `fedengine.agent.<node>` and answer them; the coordinator may announce to every agent and
/// answer pings and status queries on `fedengine.coordinator.*`.
pub fn permissions(task: &str, endpoint: &str) -> Permissions {
    let stream = if task == ANY_TASK {
        ANY_TASK.to_owned()
    } else {
        stream_name(task)
    };
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
    let mut subscribe = vec![format!("{}.>", inbox_prefix(task, endpoint))];
    if endpoint == COORDINATOR {
        publish.push("fedengine.agent.*".to_owned());
        subscribe.push("fedengine.coordinator.*".to_owned());
    } else {
        subscribe.push(format!("fedengine.agent.{endpoint}"));
    }
    // With `*` for the task, `fedengine.*.from.N` would also cover the clients' stream:
    // a node may not pose as a client of the coordinator service (submit tasks).
    let publish_deny = if endpoint == COORDINATOR {
        Vec::new()
    } else {
        vec!["fedengine.clients.>".to_owned()]
    };
    Permissions {
        publish,
        subscribe,
        publish_deny,
        allow_responses: true,
        ..Permissions::default()
    }
}

/// The permissions of a client of the coordinator service (`engine submit|status|logs`):
/// ping and query the service, talk to it on the clients' stream, read replies to client
/// endpoints. Clients are trusted operators: they can see each other's sessions, but
/// neither the coordinator's inboxes nor its consumer.
pub fn client_permissions() -> Permissions {
    let s = CLIENTS_STREAM;
    Permissions {
        publish: vec![
            "fedengine.coordinator.*".to_owned(),
            "fedengine.clients.from.*".to_owned(),
            format!("$JS.API.STREAM.INFO.{s}"),
            format!("$JS.API.CONSUMER.INFO.{s}.*"),
            format!("$JS.API.CONSUMER.CREATE.{s}.*.fedengine.clients.to.*"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{s}.*"),
            format!("$JS.ACK.{s}.>"),
        ],
        subscribe: vec![
            "_INBOX.fedengine.control.*.>".to_owned(),
            "_INBOX.fedengine.clients.*.>".to_owned(),
        ],
        publish_deny: vec![
            format!("fedengine.clients.from.{COORDINATOR}"),
            format!("$JS.API.CONSUMER.CREATE.{s}.{COORDINATOR}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{s}.{COORDINATOR}"),
            format!("$JS.ACK.{s}.{COORDINATOR}.>"),
        ],
        subscribe_deny: vec![
            format!("_INBOX.fedengine.control.{COORDINATOR}.>"),
            format!("_INBOX.fedengine.clients.{COORDINATOR}.>"),
        ],
        allow_responses: false,
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
    check_users(coordinator_password, nodes, store_dir)?;
    let mut out = header(
        &format!("fedengine task `{task}` (stream `{}`)", stream_name(task)),
        store_dir,
    );
    let users: Vec<(&str, &str, Permissions, String)> = std::iter::once((
        COORDINATOR,
        coordinator_password,
    ))
    .chain(nodes.iter().copied())
    .map(|(user, password)| {
        let role = if user == COORDINATOR {
            "the coordinator: publishes to every node, reads what every node sends".to_owned()
        } else {
            format!(
                "node `{user}`: publishes only its own updates, reads only what is addressed to it"
            )
        };
        (user, password, permissions(task, user), role)
    })
    .collect();
    out.push_str(&users_block(&users));
    Ok(out)
}

/// A nats-server configuration for a deployment that runs many tasks: the coordinator
/// service and each node's agent with the permissions of [`permissions`] for
/// [`ANY_TASK`] (a node still publishes only its own updates and reads only what is
/// addressed to it, in every task), and `clients` (user, password) with
/// [`client_permissions`].
pub fn deployment_config(
    coordinator_password: &str,
    nodes: &[(&str, &str)],
    clients: &[(&str, &str)],
    store_dir: Option<&str>,
) -> Result<String, ConfigError> {
    let all: Vec<(&str, &str)> = nodes.iter().chain(clients).copied().collect();
    check_users(coordinator_password, &all, store_dir)?;
    let mut out = header(
        "every fedengine task of a deployment (long-running `engine coordinator` and `engine agent`s)",
        store_dir,
    );
    let mut users: Vec<(&str, &str, Permissions, String)> = vec![(
        COORDINATOR,
        coordinator_password,
        permissions(ANY_TASK, COORDINATOR),
        "the coordinator service: announces tasks to agents, publishes to every node, reads what every node sends".to_owned(),
    )];
    for (node, password) in nodes {
        users.push((
            node,
            password,
            permissions(ANY_TASK, node),
            format!(
                "the agent of node `{node}`: in every task, publishes only its own updates and reads only what is addressed to it"
            ),
        ));
    }
    for (client, password) in clients {
        users.push((
            client,
            password,
            client_permissions(),
            format!("`{client}`: submits and follows tasks (engine submit|status|logs)"),
        ));
    }
    out.push_str(&users_block(&users));
    Ok(out)
}

fn check_users(
    coordinator_password: &str,
    users: &[(&str, &str)],
    store_dir: Option<&str>,
) -> Result<(), ConfigError> {
    check_password(COORDINATOR, coordinator_password)?;
    let mut seen = BTreeSet::from([COORDINATOR]);
    for (user, password) in users {
        if !valid_name(user) {
            return Err(ConfigError::InvalidName((*user).to_owned()));
        }
        if !seen.insert(*user) {
            return Err(ConfigError::Duplicate((*user).to_owned()));
        }
        check_password(user, password)?;
    }
    if let Some(dir) = store_dir {
        check_password("store_dir", dir)?;
    }
    Ok(())
}

fn header(scope: &str, store_dir: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# nats-server configuration for {scope}.\n\
         # Written by fl_transport::permissions: one user per endpoint,\n\
         # everything not allowed below is denied. The rules: config/nats/README.md.\n"
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
    out
}

/// The `authorization` block: each user with a comment, password and permissions.
fn users_block(users: &[(&str, &str, Permissions, String)]) -> String {
    let mut out = String::from("authorization {\n  users = [\n");
    for (user, password, p, role) in users {
        let mut rules = format!(
            "        publish: {{\n          allow: [\n{}          ]\n",
            list(&p.publish)
        );
        if !p.publish_deny.is_empty() {
            let _ = write!(
                rules,
                "          deny: [\n{}          ]\n",
                list(&p.publish_deny)
            );
        }
        let _ = write!(
            rules,
            "        }}\n        subscribe: {{\n          allow: [\n{}          ]\n",
            list(&p.subscribe)
        );
        if !p.subscribe_deny.is_empty() {
            let _ = write!(
                rules,
                "          deny: [\n{}          ]\n",
                list(&p.subscribe_deny)
            );
        }
        rules.push_str("        }\n");
        if p.allow_responses {
            rules.push_str("        allow_responses: true\n");
        }
        let _ = writeln!(
            out,
            "    # {role}\n    {{\n      user: \"{user}\"\n      password: \"{password}\"\n      permissions: {{\n{rules}      }}\n    }}"
        );
    }
    out.push_str("  ]\n}\n");
    out
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
        assert_eq!(
            p.subscribe,
            ["_INBOX.fedengine.digits.site-1.>", "fedengine.agent.site-1"]
        );
        assert_eq!(p.publish_deny, ["fedengine.clients.>"]);
        assert!(p.allow_responses);
        let any = permissions(ANY_TASK, "site-1");
        assert!(any.publish.contains(&"fedengine.*.from.site-1".to_owned()));
        assert!(
            any.publish
                .contains(&"$JS.API.CONSUMER.CREATE.*.site-1.fedengine.*.to.site-1".to_owned())
        );
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
