//! One NATS connection from [`NatsOptions`]: credentials, TLS, its own reply-inbox prefix,
//! reconnecting forever once connected, and the server version checked.

use std::time::Duration;

use async_nats::ConnectErrorKind;

use super::options::{NatsError, NatsOptions};
use super::version::check_server_version;

/// How long the first connection may take before it is reported as failed.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects with `options`' URL, credentials and TLS. Replies come to `inbox_prefix`
/// (permissions can give it to one endpoint alone); `default_name` names the connection
/// when `options` does not. The first connection fails within [`CONNECT_TIMEOUT`] with an
/// error that says what to check; after that the client reconnects forever.
pub(super) async fn connect_client(
    options: &NatsOptions,
    inbox_prefix: String,
    default_name: String,
) -> Result<async_nats::Client, NatsError> {
    let label = default_name.clone();
    let mut connect = async_nats::ConnectOptions::new()
        .name(options.connection_name.clone().unwrap_or(default_name))
        .max_reconnects(None)
        .connection_timeout(CONNECT_TIMEOUT)
        .custom_inbox_prefix(inbox_prefix)
        .event_callback(move |event| {
            let label = label.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(connection = %label, "NATS connected")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(connection = %label, "NATS disconnected; reconnecting")
                    }
                    other => tracing::warn!(connection = %label, "NATS: {other}"),
                }
            }
        });
    if let Some((user, password)) = &options.user_password {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(path) = &options.credentials_file {
        connect =
            connect
                .credentials_file(path)
                .await
                .map_err(|source| NatsError::Credentials {
                    path: path.clone(),
                    source,
                })?;
    }
    if let Some(ca) = &options.tls_ca {
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    let client = connect
        .connect(options.url.as_str())
        .await
        .map_err(|source| match source.kind() {
            ConnectErrorKind::AuthorizationViolation => NatsError::Refused {
                url: options.url.clone(),
                who: options
                    .user_password
                    .as_ref()
                    .map(|(user, _)| format!("user `{user}`"))
                    .or_else(|| {
                        options
                            .credentials_file
                            .as_ref()
                            .map(|p| format!("credentials {}", p.display()))
                    })
                    .unwrap_or_else(|| "no credentials".to_owned()),
            },
            _ => NatsError::Connect {
                url: options.url.clone(),
                source,
            },
        })?;
    check_server_version(&client.server_info().version).map_err(NatsError::ServerTooOld)?;
    Ok(client)
}
