//! `transport`: embedded, or a NATS server with its URL and credentials.

use super::Checker;
use crate::error::Position;
use crate::keys;
use crate::workflow::{NatsTransport, Transport};
use crate::yaml::{Node, Value};

impl Checker {
    pub(super) fn transport(&mut self, node: &Node, key: &str, at: Position) -> Option<Transport> {
        const ACCEPTED: &str =
            "`embedded`, or `{nats: {url: nats://HOST:PORT, credentials: FILE}}`";
        match &node.value {
            Value::Str(text) if text == "embedded" => Some(Transport::Embedded),
            Value::Map(_) => {
                let m = self.mapping(node, key, at, &keys::TRANSPORT, ACCEPTED)?;
                let Some(nats) = m.get("nats") else {
                    self.missing(&m, "nats", ACCEPTED);
                    return None;
                };
                let nats_at = match &node.value {
                    Value::Map(pairs) => pairs
                        .iter()
                        .find(|(k, _)| k.value == Value::Str("nats".into()))
                        .map_or(nats.at, |(k, _)| k.at),
                    _ => nats.at,
                };
                let n = self.mapping(
                    nats,
                    &m.key("nats"),
                    nats_at,
                    &keys::NATS,
                    "a mapping with `url` and optionally `credentials`",
                )?;
                let url = match n.get("url") {
                    None => {
                        self.missing(&n, "url", "the server URL, such as nats://127.0.0.1:4222");
                        None
                    }
                    Some(u) => self.nats_url(u, &n.key("url")),
                };
                let credentials = self.or_none(&n, "credentials", |c, v, k| {
                    let path = c.path(
                        v,
                        k,
                        "a NATS credentials file, relative to the workflow file",
                    )?;
                    if c.local_files && !path.is_file() {
                        let what = if path.exists() {
                            "is not a file"
                        } else {
                            "does not exist"
                        };
                        c.error(
                            v.at,
                            k,
                            format!("{} {what}", path.display()),
                            Some("an existing NATS credentials file (.creds)".to_owned()),
                        );
                        return None;
                    }
                    Some(path)
                });
                Some(Transport::Nats(NatsTransport {
                    url: url?,
                    credentials: credentials?,
                }))
            }
            _ => {
                self.wrong(node, key, ACCEPTED);
                None
            }
        }
    }

    fn nats_url(&mut self, node: &Node, key: &str) -> Option<String> {
        const ACCEPTED: &str = "a URL such as nats://127.0.0.1:4222 (schemes nats, tls, ws, wss)";
        let Value::Str(url) = &node.value else {
            self.wrong(node, key, ACCEPTED);
            return None;
        };
        let url = url.trim();
        let host = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme));
        match host {
            Some(rest)
                if !rest.is_empty()
                    && !rest.starts_with(['/', ':'])
                    && !rest.contains(char::is_whitespace) =>
            {
                Some(url.to_owned())
            }
            _ => {
                self.error(
                    node.at,
                    key,
                    format!("`{url}` is not a NATS server URL"),
                    Some(ACCEPTED.to_owned()),
                );
                None
            }
        }
    }
}
