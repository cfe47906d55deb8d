//! The in-process transport, the embedded default: a channel per endpoint.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::base::{Delivery, Inbox, Transport, TransportError};

/// The in-process transport: a channel per endpoint.
#[derive(Debug, Default, Clone)]
pub struct InProcess {
    endpoints: Arc<Mutex<HashMap<String, UnboundedSender<Delivery>>>>,
    unreachable: Arc<Mutex<HashSet<String>>>,
}

impl InProcess {
    /// Returns a transport with no endpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `name` unreachable: messages to it are accepted and silently lost, as with a
    /// node whose network is down (for tests of timeouts and quorum).
    pub fn make_unreachable(&self, name: &str) {
        if let Ok(mut set) = self.unreachable.lock() {
            set.insert(name.to_owned());
        }
    }
}

impl Transport for InProcess {
    fn send_traced(
        &self,
        to: &str,
        bytes: Vec<u8>,
        traceparent: Option<String>,
    ) -> Result<(), TransportError> {
        if self.unreachable.lock().is_ok_and(|set| set.contains(to)) {
            return Ok(());
        }
        let endpoints = self
            .endpoints
            .lock()
            .map_err(|_| TransportError::Unknown(to.to_owned()))?;
        let sender = endpoints
            .get(to)
            .ok_or_else(|| TransportError::Unknown(to.to_owned()))?;
        sender
            .send(Delivery {
                bytes,
                traceparent,
                from: None,
            })
            .map_err(|_| TransportError::Unknown(to.to_owned()))
    }

    fn open(&self, name: &str) -> Result<Inbox, TransportError> {
        let mut endpoints = self
            .endpoints
            .lock()
            .map_err(|_| TransportError::Taken(name.to_owned()))?;
        if endpoints.get(name).is_some_and(|s| !s.is_closed()) {
            return Err(TransportError::Taken(name.to_owned()));
        }
        let (sender, receiver) = unbounded_channel();
        endpoints.insert(name.to_owned(), sender);
        Ok(Inbox::new(receiver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::COORDINATOR;

    #[tokio::test]
    async fn delivers_in_order_and_loses_messages_to_unreachable_nodes() {
        let transport = InProcess::new();
        let mut inbox = transport.open("a").expect("open");
        assert!(matches!(transport.open("a"), Err(TransportError::Taken(_))));
        transport.send("a", vec![1]).expect("send");
        transport
            .send_traced("a", vec![2], Some("00-trace-span-01".into()))
            .expect("send");
        assert_eq!(inbox.recv().await, Some(vec![1]));
        let traced = inbox.recv_delivery().await.expect("a message");
        assert_eq!(traced.bytes, vec![2]);
        assert_eq!(traced.traceparent.as_deref(), Some("00-trace-span-01"));
        assert!(matches!(
            transport.send("b", vec![3]),
            Err(TransportError::Unknown(_))
        ));
        transport.make_unreachable("a");
        transport.send("a", vec![4]).expect("accepted");
        transport
            .send(COORDINATOR, vec![])
            .expect_err("no coordinator yet");
        drop(transport);
        assert_eq!(inbox.recv().await, None);
    }
}
