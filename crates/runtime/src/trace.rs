//! W3C trace context for a task's messages: every envelope a task's endpoints send carries a
//! `traceparent` whose trace id is derived from the task id, so the messages of one task are
//! one trace wherever they are observed (NATS headers, the transport's debug log, and an
//! OpenTelemetry collector once one is wired in); each message gets its own span id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The trace id of a task: the first 16 bytes of SHA-256 of its id, in hex.
pub fn trace_id(task_id: &str) -> String {
    fl_transport::chunk::sha256_hex(task_id.as_bytes())[..32].to_owned()
}

/// A `traceparent` (`00-<trace id>-<span id>-01`, sampled) for a new message of `task_id`.
pub fn traceparent(task_id: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Unique per process run and message; never zero (an invalid span id).
    let seed = u64::from(std::process::id()) << 40
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let span = (seed
        ^ NEXT
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15))
    .max(1);
    format!("00-{}-{span:016x}-01", trace_id(task_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trace_per_task_and_a_span_per_message() {
        let a = traceparent("digits-fedavg-0123");
        let b = traceparent("digits-fedavg-0123");
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 4, "{a}");
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        assert!(
            parts[1..3]
                .iter()
                .all(|p| p.bytes().all(|c| c.is_ascii_hexdigit()))
        );
        assert_eq!(a[..35], b[..35], "the same task, the same trace id");
        assert_ne!(a, b, "each message its own span id");
        assert_ne!(trace_id("another-task"), trace_id("digits-fedavg-0123"));
    }
}
