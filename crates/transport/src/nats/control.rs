//! The control plane: core NATS request and reply, for what is small, immediate and needs an
//! answer (a task announced to an agent, a ping or a status query to the coordinator). Not
//! durable on purpose: a request nobody listens to fails at once ("no responders"), which
//! is exactly how a missing agent or coordinator is detected. Bulk and durable traffic (the
//! weights, a submitted package) goes through [`NatsTransport`](super::NatsTransport).

use std::time::Duration;

use async_nats::RequestErrorKind;
use futures_util::StreamExt;

use super::connection::connect_client;
use super::options::{NatsError, NatsOptions, valid_name};
use super::permissions::inbox_prefix;

/// A connection for control requests, as `options.endpoint` (replies come to its own inbox
/// prefix for `options.task`, as with [`NatsTransport`](super::NatsTransport)).
#[derive(Clone, Debug)]
pub struct ControlConnection {
    client: async_nats::Client,
    url: String,
}

/// Why a control request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nobody subscribes to the subject.
    #[error("nobody answers on `{subject}`")]
    NoResponders {
        /// The subject.
        subject: String,
    },
    /// Somebody subscribes, but no answer came in time.
    #[error("no answer on `{subject}` within {seconds:.0} s")]
    TimedOut {
        /// The subject.
        subject: String,
        /// The timeout.
        seconds: f64,
    },
    /// The request could not be sent (permissions, payload size, connection).
    #[error("request on `{subject}`: {message}")]
    Failed {
        /// The subject.
        subject: String,
        /// Why.
        message: String,
    },
}

/// One request received by [`ControlConnection::serve`].
#[derive(Debug)]
pub struct Request {
    /// What was asked.
    pub payload: Vec<u8>,
    reply: Option<async_nats::Subject>,
}

/// The requests on a subject, as they come.
#[derive(Debug)]
pub struct Requests(async_nats::Subscriber);

impl Requests {
    /// The next request; `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Request> {
        self.0.next().await.map(|message| Request {
            payload: message.payload.to_vec(),
            reply: message.reply,
        })
    }
}

impl ControlConnection {
    /// Connects (see [`NatsTransport::connect`](super::NatsTransport::connect) for what is
    /// checked); fails within seconds when the server is not there or refuses the
    /// credentials.
    pub async fn connect(options: &NatsOptions) -> Result<Self, NatsError> {
        for name in [&options.task, &options.endpoint] {
            if !valid_name(name) {
                return Err(NatsError::InvalidName(name.clone()));
            }
        }
        let client = connect_client(
            options,
            inbox_prefix(&options.task, &options.endpoint),
            format!("fedengine-{}-{}", options.task, options.endpoint),
        )
        .await?;
        Ok(Self {
            client,
            url: options.url.clone(),
        })
    }

    /// The server URL this connection was made with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `payload` on `subject` and waits at most `timeout` for the answer.
    pub async fn request(
        &self,
        subject: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ControlError> {
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(timeout));
        match self.client.send_request(subject.to_owned(), request).await {
            Ok(message) => Ok(message.payload.to_vec()),
            Err(error) => Err(match error.kind() {
                RequestErrorKind::NoResponders => ControlError::NoResponders {
                    subject: subject.to_owned(),
                },
                RequestErrorKind::TimedOut => ControlError::TimedOut {
                    subject: subject.to_owned(),
                    seconds: timeout.as_secs_f64(),
                },
                _ => ControlError::Failed {
                    subject: subject.to_owned(),
                    message: error.to_string(),
                },
            }),
        }
    }

    /// Subscribes to the requests on `subject`.
    pub async fn serve(&self, subject: &str) -> Result<Requests, ControlError> {
        let subscriber = self
            .client
            .subscribe(subject.to_owned())
            .await
            .map_err(|e| ControlError::Failed {
                subject: subject.to_owned(),
                message: e.to_string(),
            })?;
        // The subscription is registered with the server before anyone is told it exists.
        let _ = self.client.flush().await;
        Ok(Requests(subscriber))
    }

    /// Answers `request` (a request without a reply subject needs no answer).
    pub async fn respond(&self, request: &Request, payload: Vec<u8>) {
        if let Some(reply) = &request.reply
            && let Err(error) = self.client.publish(reply.clone(), payload.into()).await
        {
            tracing::warn!(%error, "cannot answer a control request");
        }
    }
}
