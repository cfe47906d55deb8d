//! The per-node NATS permissions of `fl_transport::permissions` against a real nats-server
//! started with the generated configuration: the transport works under them, and a node
//! cannot read, write or steer anything of another node's.
//!
//! Every isolation check is also run against an "open" configuration (the same users, no
//! permissions), where each of them must fail: that proves the checks can fail.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::NatsServer;
use fl_transport::permissions::{deployment_config, inbox_prefix, server_config};
use fl_transport::{COORDINATOR, Inbox, NatsOptions, NatsTransport, Transport, stream_name};
use futures_util::StreamExt as _;

const TASK: &str = "perm";
const COORDINATOR_PASSWORD: &str = "pw-coordinator";
const NODES: [(&str, &str); 2] = [("site-1", "pw-site-1"), ("site-2", "pw-site-2")];
const WAIT: Duration = Duration::from_secs(60);
/// How long a refused request is given to be answered anyway.
const QUIET: Duration = Duration::from_millis(1500);

fn password(user: &str) -> &'static str {
    if user == COORDINATOR {
        return COORDINATOR_PASSWORD;
    }
    NODES
        .iter()
        .find(|(n, _)| *n == user)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no user {user}"))
}

/// The same users as the generated configuration, with no permissions at all.
fn open_config() -> String {
    let users = std::iter::once((COORDINATOR, COORDINATOR_PASSWORD))
        .chain(NODES)
        .map(|(u, p)| format!("{{ user: \"{u}\", password: \"{p}\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("authorization {{ users = [{users}] }}\n")
}

async fn transport(server: &NatsServer, endpoint: &str) -> Result<NatsTransport, String> {
    let mut options = NatsOptions::new(server.url(), TASK, endpoint);
    options.user_password = Some((endpoint.to_owned(), password(endpoint).to_owned()));
    // Several chunks per message, so that many pulls and acks go through the permissions.
    options.max_chunk = Some(4096);
    NatsTransport::connect(options)
        .await
        .map_err(|e| e.to_string())
}

async fn next(inbox: &mut Inbox, who: &str) -> Vec<u8> {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("{who}: nothing within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{who}: inbox closed"))
}

fn payload(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_add((i % 251) as u8))
        .collect()
}

/// A raw async-nats client logged in as `user`, recording the errors the server reports.
struct Raw {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Raw {
    async fn connect(server: &NatsServer, user: &str) -> Self {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let client = async_nats::ConnectOptions::with_user_and_password(
            user.to_owned(),
            password(user).to_owned(),
        )
        .custom_inbox_prefix(inbox_prefix(TASK, user))
        .event_callback({
            let errors = errors.clone();
            move |event| {
                let errors = errors.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        errors.lock().expect("errors").push(error.to_string());
                    }
                }
            }
        })
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("raw client for {user}: {e}"));
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(QUIET);
        Self {
            client,
            jetstream,
            errors,
        }
    }

    /// Whether the server reported a permissions violation naming `subject` (waits a little:
    /// the error comes asynchronously).
    async fn violation(&self, subject: &str) -> bool {
        let deadline = Instant::now() + QUIET;
        loop {
            let found =
                self.errors.lock().expect("errors").iter().any(|e| {
                    e.to_lowercase().contains("permissions violation") && e.contains(subject)
                });
            if found || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `body` to `subject` with a reply inbox of this user's; the reply, if any came.
    async fn request(&self, subject: &str, body: &str) -> Option<String> {
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .expect("subscribe");
        self.client
            .publish_with_reply(subject.to_owned(), inbox, body.to_owned().into())
            .await
            .expect("publish");
        self.client.flush().await.expect("flush");
        let reply = tokio::time::timeout(QUIET, replies.next()).await.ok()??;
        Some(String::from_utf8_lossy(&reply.payload).into_owned())
    }

    /// A JetStream API request that the permissions must stop before the server sees it:
    /// `Ok` when no reply came and a violation was reported.
    async fn refused(&self, subject: &str, body: &str) -> Result<(), String> {
        if let Some(reply) = self.request(subject, body).await {
            return Err(format!("answered: {reply}"));
        }
        if !self.violation(subject).await {
            return Err("no reply, but no permissions violation reported either".into());
        }
        Ok(())
    }
}

/// The three endpoints, after exchanging messages both ways under the server's config.
struct Setup {
    server: NatsServer,
    coordinator: NatsTransport,
    to_coordinator: Inbox,
    site2: NatsTransport,
    /// Whether site-1 could create the task's stream before the coordinator did.
    node_created_stream: bool,
    /// The server's log from the coordinator's connection on (after that refusal).
    exchange_log: String,
}

async fn setup(config: &str) -> Setup {
    let server = NatsServer::start_with_config(config);
    // Before the coordinator: a node may not create the task's stream.
    let early = Instant::now();
    let node_created_stream = transport(&server, "site-1").await.is_ok();
    eprintln!(
        "site-1 connecting before the stream exists: {} after {:.1?}",
        if node_created_stream {
            "created it"
        } else {
            "refused"
        },
        early.elapsed()
    );
    let log_start = server.log().len();

    let coordinator = transport(&server, COORDINATOR)
        .await
        .unwrap_or_else(|e| panic!("coordinator: {e}\n{}", server.log()));
    let site1 = transport(&server, "site-1")
        .await
        .unwrap_or_else(|e| panic!("site-1: {e}\n{}", server.log()));
    let site2 = transport(&server, "site-2")
        .await
        .unwrap_or_else(|e| panic!("site-2: {e}\n{}", server.log()));
    let mut to_coordinator = coordinator.open(COORDINATOR).expect("open coordinator");
    let mut to_1 = site1.open("site-1").expect("open site-1");
    let mut to_2 = site2.open("site-2").expect("open site-2");

    for round in 0..3u8 {
        let (down1, down2) = (payload(round, 20_000), payload(round + 50, 9_000));
        let (up1, up2) = (payload(round + 100, 15_000), payload(round + 150, 100));
        coordinator.send("site-1", down1.clone()).expect("send");
        coordinator.send("site-2", down2.clone()).expect("send");
        site1.send(COORDINATOR, up1.clone()).expect("send");
        site2.send(COORDINATOR, up2.clone()).expect("send");
        assert!(
            next(&mut to_1, "site-1").await == down1,
            "site-1 round {round}"
        );
        assert!(
            next(&mut to_2, "site-2").await == down2,
            "site-2 round {round}"
        );
        let mut got = [
            next(&mut to_coordinator, "coordinator").await,
            next(&mut to_coordinator, "coordinator").await,
        ];
        got.sort_by_key(|m| m.len());
        assert!(got == [up2, up1], "coordinator round {round}");
    }
    // Every chunk was acknowledged: the work-queue stream is empty (read with the
    // coordinator's own rights).
    let raw = Raw::connect(&server, COORDINATOR).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let mut stream = raw
            .jetstream
            .get_stream(stream_name(TASK))
            .await
            .expect("stream info as the coordinator");
        let left = stream.info().await.expect("stream info").state.messages;
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} chunks never acknowledged\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exchange_log = server.log()[log_start..].to_owned();
    Setup {
        server,
        coordinator,
        to_coordinator,
        site2,
        node_created_stream,
        exchange_log,
    }
}

/// Checks that site-1's credentials give no access to anything of site-2's or the
/// coordinator's, each named, `Ok` when isolation held.
async fn isolation_checks(setup: &mut Setup) -> Vec<(&'static str, Result<(), String>)> {
    let spy = Raw::connect(&setup.server, "site-1").await;
    let stream = stream_name(TASK);
    let other_from = fl_transport::from_subject(TASK, "site-2");
    let mut results = vec![(
        "site-1 cannot create the task's stream",
        if setup.node_created_stream {
            Err("it did".to_owned())
        } else {
            Ok(())
        },
    )];

    // Listening in while site-2 sends and the coordinator pulls.
    let mut on_subject = spy.client.subscribe(other_from.clone()).await.expect("sub");
    let mut on_inboxes = spy.client.subscribe("_INBOX.>").await.expect("sub");
    spy.client.flush().await.expect("flush");
    let secret = payload(200, 5_000);
    setup.site2.send(COORDINATOR, secret.clone()).expect("send");
    assert!(next(&mut setup.to_coordinator, "coordinator").await == secret);
    for (name, subscription, subject) in [
        (
            "site-1 cannot subscribe to site-2's subject",
            &mut on_subject,
            other_from.as_str(),
        ),
        (
            "site-1 cannot subscribe to other users' inboxes",
            &mut on_inboxes,
            "_INBOX.>",
        ),
    ] {
        let result = match tokio::time::timeout(QUIET, subscription.next()).await {
            Ok(Some(message)) => Err(format!("received a message on {}", message.subject)),
            _ if !spy.violation(subject).await => Err("no violation reported".to_owned()),
            _ => Ok(()),
        };
        results.push((name, result));
    }

    let published = match spy
        .jetstream
        .publish(other_from.clone(), "forged".into())
        .await
    {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    results.push((
        "site-1 cannot publish on site-2's subject",
        match published {
            Ok(()) => Err("stored".to_owned()),
            Err(_) if !spy.violation(&other_from).await => {
                Err("not stored, but no violation reported".to_owned())
            }
            Err(_) => Ok(()),
        },
    ));

    let create = |name: &str, filter: &str| {
        format!(
            r#"{{"stream_name":"{stream}","config":{{"durable_name":"{name}","filter_subject":"{filter}","ack_policy":"explicit"}},"action":"create"}}"#
        )
    };
    let all_from = format!("fedengine.{TASK}.from.>");
    let to_2 = fl_transport::to_subject(TASK, "site-2");
    let refusals = [
        (
            "site-1 cannot fetch from site-2's consumer",
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.site-2"),
            r#"{"batch":1,"no_wait":true}"#.to_owned(),
        ),
        (
            "site-1 cannot fetch from the coordinator's consumer",
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.coordinator"),
            r#"{"batch":1,"no_wait":true}"#.to_owned(),
        ),
        (
            "site-1 cannot create a consumer filtered on every node's updates",
            format!("$JS.API.CONSUMER.CREATE.{stream}.site-1-spy.{all_from}"),
            create("site-1-spy", &all_from),
        ),
        (
            "site-1 cannot give its own consumer another filter",
            format!("$JS.API.CONSUMER.CREATE.{stream}.site-1.{all_from}"),
            create("site-1", &all_from),
        ),
        (
            "site-1 cannot create or update the consumer named site-2",
            format!("$JS.API.CONSUMER.CREATE.{stream}.site-2.{to_2}"),
            create("site-2", &to_2),
        ),
        (
            "site-1 cannot use the unfiltered consumer create",
            format!("$JS.API.CONSUMER.CREATE.{stream}.site-1"),
            create("site-1", &all_from),
        ),
        (
            "site-1 cannot use the legacy durable consumer create",
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.site-1"),
            create("site-1", &all_from),
        ),
        (
            "site-1 cannot look up site-2's consumer",
            format!("$JS.API.CONSUMER.INFO.{stream}.site-2"),
            String::new(),
        ),
        (
            "site-1 cannot read stored messages by sequence",
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            r#"{"seq":1}"#.to_owned(),
        ),
        (
            "site-1 cannot direct-get stored messages",
            format!("$JS.API.DIRECT.GET.{stream}"),
            r#"{"seq":1}"#.to_owned(),
        ),
        (
            "site-1 cannot list consumers",
            format!("$JS.API.CONSUMER.NAMES.{stream}"),
            String::new(),
        ),
        (
            "site-1 cannot delete site-2's consumer",
            format!("$JS.API.CONSUMER.DELETE.{stream}.site-2"),
            String::new(),
        ),
        (
            "site-1 cannot delete its own consumer",
            format!("$JS.API.CONSUMER.DELETE.{stream}.site-1"),
            String::new(),
        ),
        (
            "site-1 cannot purge the stream",
            format!("$JS.API.STREAM.PURGE.{stream}"),
            String::new(),
        ),
    ];
    // One at a time: under the open configuration the deletions (last) must not race the
    // rest.
    for (name, subject, body) in refusals {
        results.push((name, spy.refused(&subject, &body).await));
    }
    results.push((
        "site-1 cannot delete the stream",
        spy.refused(&format!("$JS.API.STREAM.DELETE.{stream}"), "")
            .await,
    ));
    results
}

/// Requests on the one consumer-create subject site-1 is allowed, with a body that does not
/// match it: the server itself must refuse them (this is what makes that one subject pin
/// the consumer's name and filter). `Ok` when the server answered with an error.
async fn server_side_checks(setup: &Setup) -> Vec<(&'static str, Result<(), String>)> {
    let spy = Raw::connect(&setup.server, "site-1").await;
    let stream = stream_name(TASK);
    let own = fl_transport::to_subject(TASK, "site-1");
    let subject = format!("$JS.API.CONSUMER.CREATE.{stream}.site-1.{own}");
    let all_from = format!("fedengine.{TASK}.from.>");
    let config = |config: String| {
        format!(r#"{{"stream_name":"{stream}","config":{{{config},"ack_policy":"explicit"}}}}"#)
    };
    let cases = [
        (
            "another filter_subject in the body",
            config(format!(
                r#""durable_name":"site-1","filter_subject":"{all_from}""#
            )),
        ),
        (
            "filter_subjects instead of filter_subject",
            config(format!(
                r#""durable_name":"site-1","filter_subjects":["{all_from}"]"#
            )),
        ),
        (
            "filter_subject and filter_subjects together",
            config(format!(
                r#""durable_name":"site-1","filter_subject":"{own}","filter_subjects":["{all_from}"]"#
            )),
        ),
        (
            "another durable name in the body",
            config(format!(
                r#""durable_name":"site-2","filter_subject":"{own}""#
            )),
        ),
        (
            "another name in the body",
            config(format!(
                r#""name":"site-2","durable_name":"site-2","filter_subject":"{own}""#
            )),
        ),
    ];
    let mut results = Vec::new();
    for (name, body) in cases {
        let result = match spy.request(&subject, &body).await {
            Some(reply) if reply.contains("\"error\"") => {
                eprintln!("  {name}: {reply}");
                Ok(())
            }
            Some(reply) => Err(format!("accepted: {reply}")),
            None => Err("no reply (the subject should be allowed)".to_owned()),
        };
        results.push((name, result));
    }
    results
}

fn report(title: &str, results: &[(&str, Result<(), String>)]) {
    eprintln!("{title}:");
    for (name, result) in results {
        match result {
            Ok(()) => eprintln!("  holds:  {name}"),
            Err(why) => eprintln!("  broken: {name}: {why}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_exchange_messages_under_their_permissions_and_are_isolated() {
    let config = server_config(TASK, COORDINATOR_PASSWORD, &NODES, None).expect("config");
    let mut setup = setup(&config).await;
    // The server logs violations (the node's refused stream creation is one), and the
    // exchange caused none.
    assert!(
        setup.server.log().contains("Violation"),
        "{}",
        setup.server.log()
    );
    let log = &setup.exchange_log;
    assert!(
        !log.to_lowercase().contains("violation"),
        "the transport itself hit a permissions violation:\n{log}"
    );

    let isolation = isolation_checks(&mut setup).await;
    report("isolation under the generated configuration", &isolation);
    let server_side = server_side_checks(&setup).await;
    report("server-side consumer checks", &server_side);
    assert!(
        isolation.iter().chain(&server_side).all(|(_, r)| r.is_ok()),
        "isolation broken (see above)"
    );

    // And everything still works for the legitimate users afterwards.
    let node = transport(&setup.server, "site-1").await.expect("site-1");
    let mut to_1 = node.open("site-1").expect("open site-1");
    setup
        .coordinator
        .send("site-1", payload(7, 10_000))
        .expect("send");
    assert!(next(&mut to_1, "site-1").await == payload(7, 10_000));
}

/// The same checks under the configuration for many tasks (long-running agents): a node's
/// rights cover every task, yet still only its own subjects and consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_isolated_under_the_deployment_configuration_too() {
    let config = deployment_config(COORDINATOR_PASSWORD, &NODES, &[("alice", "pw-alice")], None)
        .expect("config");
    let mut setup = setup(&config).await;
    assert!(
        !setup.node_created_stream,
        "a node created the task's stream"
    );
    let log = &setup.exchange_log;
    assert!(
        !log.to_lowercase().contains("violation"),
        "the transport itself hit a permissions violation:\n{log}"
    );
    let isolation = isolation_checks(&mut setup).await;
    report("isolation under the deployment configuration", &isolation);
    assert!(
        isolation.iter().all(|(_, r)| r.is_ok()),
        "isolation broken (see above)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_permissions_every_isolation_check_fails() {
    let mut setup = setup(&open_config()).await;
    let server_side = server_side_checks(&setup).await;
    report(
        "server-side consumer checks, open configuration",
        &server_side,
    );
    let isolation = isolation_checks(&mut setup).await;
    report("isolation under an open configuration", &isolation);
    let held: Vec<_> = isolation
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(name, _)| *name)
        .collect();
    assert!(
        held.is_empty(),
        "these checks pass even without permissions, so they prove nothing: {held:?}"
    );
    // The server refuses mismatched create requests whatever the permissions.
    assert!(server_side.iter().all(|(_, r)| r.is_ok()));
}
