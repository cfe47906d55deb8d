//! The client side of the coordinator service: `engine submit --nats`, `engine status`,
//! `engine logs`. Every call first pings the service, so a coordinator that is not running
//! (or a server that refuses the credentials) is reported within seconds with what to check.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fl_transport::{
    COORDINATOR, ControlConnection, ControlError, Inbox, NatsOptions, NatsTransport, Transport,
};

use crate::control::{
    self, CLIENTS_TASK, CONTROL_TASK, ClientMessage, ClientRequest, PING_SUBJECT, Pong,
    STATUS_SUBJECT, TaskState, TaskStatus,
};
use crate::remote::package_files;
use crate::service::FromClient;

/// How long the coordinator has to answer a ping or a status query.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence after which the client checks that the coordinator is still there.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a submitter waits for a coordinator that stopped answering to come back (a
/// coordinator restarted with `--recover` resumes the task).
const RETURN_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection to NATS (the message says what to check).
    #[error("{0}")]
    Connect(String),
    /// No coordinator answers.
    #[error(
        "no coordinator answers on {url}: start one with `engine coordinator --nats {url}` (and check that this client uses the same server){detail}"
    )]
    NoCoordinator {
        /// The server URL.
        url: String,
        /// More about what happened.
        detail: String,
    },
    /// The coordinator refused the request.
    #[error("the coordinator refused: {0}")]
    Refused(String),
    /// The package could not be read.
    #[error("{}: {message}", path.display())]
    Package {
        /// The package.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The results could not be written.
    #[error("{}: {message}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Anything else on the way.
    #[error("{0}")]
    Protocol(String),
}

/// A client of the coordinator service.
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    control: ControlConnection,
    nats: NatsOptions,
    id: String,
    /// The service instance last seen answering a ping.
    instance: std::sync::Mutex<String>,
}

/// What waiting for the coordinator gave.
enum Next {
    /// A message.
    Message(ClientMessage),
    /// The coordinator answers again, but is another run of the service (it restarted).
    Restarted,
}

/// What a submission ended with.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The task's final status.
    pub status: TaskStatus,
    /// Where `model.zip` and `report.zip` were written (finished tasks).
    pub files: Vec<PathBuf>,
}

impl Client {
    /// Connects and checks that a coordinator answers. `nats` carries the URL and the
    /// client's credentials.
    pub fn connect(nats: &NatsOptions) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let id = format!(
            "client-{:x}-{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros())
        );
        let mut options = nats.clone();
        options.task = CONTROL_TASK.to_owned();
        options.endpoint = id.clone();
        let control = runtime
            .block_on(ControlConnection::connect(&options))
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let client = Self {
            runtime,
            control,
            nats: nats.clone(),
            id,
            instance: std::sync::Mutex::new(String::new()),
        };
        let pong = client.ping()?;
        client.seen(&pong.instance);
        Ok(client)
    }

    /// Asks the coordinator for its version and load.
    pub fn ping(&self) -> Result<Pong, ClientError> {
        let answer = self.runtime.block_on(self.control.request(
            PING_SUBJECT,
            Vec::new(),
            ANSWER_TIMEOUT,
        ));
        self.answer(answer)
    }

    /// Records the instance that answered; whether it differs from the one seen before.
    fn seen(&self, instance: &str) -> bool {
        let mut seen = self
            .instance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = !seen.is_empty() && *seen != instance;
        *seen = instance.to_owned();
        changed
    }

    /// Every task the coordinator knows.
    pub fn status(&self) -> Result<Vec<TaskStatus>, ClientError> {
        let answer = self.runtime.block_on(self.control.request(
            STATUS_SUBJECT,
            Vec::new(),
            ANSWER_TIMEOUT,
        ));
        self.answer(answer)
    }

    fn answer<T: serde::de::DeserializeOwned>(
        &self,
        answer: Result<Vec<u8>, ControlError>,
    ) -> Result<T, ClientError> {
        match answer {
            Ok(bytes) => control::decode(&bytes).map_err(ClientError::Protocol),
            Err(ControlError::NoResponders { .. }) => Err(ClientError::NoCoordinator {
                url: self.nats.url.clone(),
                detail: String::new(),
            }),
            Err(other) => Err(ClientError::NoCoordinator {
                url: self.nats.url.clone(),
                detail: format!(" ({other})"),
            }),
        }
    }

    fn session(&self) -> Result<(NatsTransport, Inbox), ClientError> {
        let mut options = self.nats.clone();
        options.task = CLIENTS_TASK.to_owned();
        options.endpoint = self.id.clone();
        let transport = self
            .runtime
            .block_on(NatsTransport::connect(options))
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let inbox = transport
            .open(&self.id)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok((transport, inbox))
    }

    fn ask(&self, transport: &NatsTransport, request: ClientRequest) -> Result<(), ClientError> {
        let message = FromClient {
            client: self.id.clone(),
            request,
        };
        transport
            .send(COORDINATOR, control::encode(&message))
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Asks the coordinator to stream task `id` to this client again.
    fn follow(&self, transport: &NatsTransport, id: &str) -> Result<(), ClientError> {
        self.ask(
            transport,
            ClientRequest::Follow {
                task_id: id.to_owned(),
            },
        )
    }

    /// The next message from the coordinator; checks that it is still there (and the same
    /// run of the service) when it has been silent for a while.
    fn next(&self, inbox: &mut Inbox) -> Result<Next, ClientError> {
        loop {
            let received = self
                .runtime
                .block_on(async { tokio::time::timeout(LIVENESS_INTERVAL, inbox.recv()).await });
            match received {
                Ok(Some(bytes)) => {
                    return control::decode(&bytes)
                        .map(Next::Message)
                        .map_err(ClientError::Protocol);
                }
                Ok(None) => return Err(ClientError::Protocol("the connection closed".into())),
                Err(_) => {
                    let pong = self.ping().map_err(|e| match e {
                        ClientError::NoCoordinator { url, .. } => ClientError::NoCoordinator {
                            url,
                            detail: " (it stopped answering while the task ran; `engine status` shows what it knows once it is back)".into(),
                        },
                        other => other,
                    })?;
                    if self.seen(&pong.instance) {
                        return Ok(Next::Restarted);
                    }
                }
            }
        }
    }

    /// Submits the workflow at `path` (already checked by the caller) with its model
    /// package, calls `on_message` with everything the coordinator sends until the task ends,
    /// and writes `model.zip` and `report.zip` into `output` when it finished.
    pub fn submit(
        &self,
        path: &Path,
        model: &Path,
        output: &Path,
        mut on_message: impl FnMut(&ClientMessage),
    ) -> Result<Submitted, ClientError> {
        let workflow = std::fs::read_to_string(path).map_err(|e| ClientError::Package {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let opened = fl_package::OpenedPackage::open(model, &fl_model::catalog()).map_err(|e| {
            ClientError::Package {
                path: model.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let package =
            package_files(&opened.package.root).map_err(|message| ClientError::Package {
                path: model.to_path_buf(),
                message,
            })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let (transport, mut inbox) = self.session()?;
        self.ask(
            &transport,
            ClientRequest::Submit {
                workflow,
                path: absolute.display().to_string(),
                package,
            },
        )?;
        let mut task_id: Option<String> = None;
        loop {
            let message = match (self.next(&mut inbox), &task_id) {
                (Err(ClientError::NoCoordinator { .. }), Some(id)) => {
                    tracing::warn!(
                        "the coordinator stopped answering; waiting up to {} s for it to come back and resume task `{id}`",
                        RETURN_TIMEOUT.as_secs()
                    );
                    self.wait_for_coordinator()?;
                    tracing::warn!("the coordinator is back; following task `{id}` again");
                    self.follow(&transport, id)?;
                    continue;
                }
                (Ok(Next::Restarted), Some(id)) => {
                    tracing::warn!("the coordinator restarted; following task `{id}` again");
                    self.follow(&transport, id)?;
                    continue;
                }
                (Ok(Next::Restarted), None) => continue,
                (message, _) => match message? {
                    Next::Message(message) => message,
                    Next::Restarted => continue,
                },
            };
            on_message(&message);
            match message {
                ClientMessage::Accepted { task_id: id } => task_id = Some(id),
                ClientMessage::Refused { reason } => return Err(ClientError::Refused(reason)),
                ClientMessage::Ended {
                    status,
                    model_zip,
                    report_zip,
                } => {
                    let mut files = Vec::new();
                    if matches!(status.state, TaskState::Finished { .. }) {
                        std::fs::create_dir_all(output).map_err(|e| ClientError::Output {
                            path: output.to_path_buf(),
                            message: e.to_string(),
                        })?;
                        for (name, bytes) in [("model.zip", model_zip), ("report.zip", report_zip)]
                        {
                            let target = output.join(name);
                            write_atomically(&target, &bytes)?;
                            files.push(target);
                        }
                    }
                    return Ok(Submitted { status, files });
                }
                _ => {}
            }
        }
    }

    /// Pings until the coordinator answers, at most [`RETURN_TIMEOUT`].
    fn wait_for_coordinator(&self) -> Result<(), ClientError> {
        let deadline = std::time::Instant::now() + RETURN_TIMEOUT;
        loop {
            match self.ping() {
                Ok(pong) => {
                    self.seen(&pong.instance);
                    return Ok(());
                }
                Err(error) if std::time::Instant::now() >= deadline => {
                    return Err(match error {
                        ClientError::NoCoordinator { url, .. } => ClientError::NoCoordinator {
                            url,
                            detail: format!(
                                " (it stopped answering while the task ran and did not come back within {} s; `engine status` shows what it knows once it is back)",
                                RETURN_TIMEOUT.as_secs()
                            ),
                        },
                        other => other,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    /// Calls `on_message` with a task's log so far and, with `follow`, everything until it
    /// ends; returns its status.
    pub fn logs(
        &self,
        task_id: &str,
        follow: bool,
        mut on_message: impl FnMut(&ClientMessage),
    ) -> Result<TaskStatus, ClientError> {
        let (transport, mut inbox) = self.session()?;
        self.ask(
            &transport,
            ClientRequest::Logs {
                task_id: task_id.to_owned(),
                follow,
            },
        )?;
        loop {
            let Next::Message(message) = self.next(&mut inbox)? else {
                return Err(ClientError::Protocol(
                    "the coordinator restarted; run the command again".into(),
                ));
            };
            on_message(&message);
            match message {
                ClientMessage::Refused { reason } => return Err(ClientError::Refused(reason)),
                ClientMessage::Done { status } | ClientMessage::Ended { status, .. } => {
                    return Ok(status);
                }
                _ => {}
            }
        }
    }
}

fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let partial = target.with_extension("zip.partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, target))
        .map_err(|e| ClientError::Output {
            path: target.to_path_buf(),
            message: e.to_string(),
        })
}
