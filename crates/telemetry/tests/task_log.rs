//! The task log's file, live delivery and thread safety.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use fl_telemetry::{Level, LogLine, TaskLog, TelemetryError};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `2026-11-26T17:11:50.123Z` shape, checked character by character.
fn assert_timestamp_shape(ts: &str) {
    assert_eq!(ts.len(), 24, "{ts}");
    for (i, c) in ts.chars().enumerate() {
        match i {
            4 | 7 => assert_eq!(c, '-', "{ts}"),
            10 => assert_eq!(c, 'T', "{ts}"),
            13 | 16 => assert_eq!(c, ':', "{ts}"),
            19 => assert_eq!(c, '.', "{ts}"),
            23 => assert_eq!(c, 'Z', "{ts}"),
            _ => assert!(c.is_ascii_digit(), "{ts}"),
        }
    }
}

#[test]
fn lines_reach_the_file_in_order_and_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out").join("task.log");
    let log = TaskLog::open(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    log.add_sender(tx);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_callback = Arc::clone(&seen);
    log.add_callback(move |line: &LogLine| {
        seen_by_callback.lock().unwrap().push(line.message.clone());
    });

    let before = now_ms();
    let site = log.node("site-1").unwrap();
    site.info("round 1 started");
    site.warn("slow batch");
    log.push("initiator", Level::Error, "aggregation failed")
        .unwrap();
    site.debug("détail ✓");
    let after = now_ms();

    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(text.ends_with('\n'));
    let expected = [
        ("[site-1] INFO round 1 started"),
        ("[site-1] WARN slow batch"),
        ("[initiator] ERROR aggregation failed"),
        ("[site-1] DEBUG détail ✓"),
    ];
    let mut last = 0;
    for (line, rest) in lines.iter().zip(expected) {
        let (ts, tail) = line.split_at(24);
        assert_timestamp_shape(ts);
        assert_eq!(tail, format!(" {rest}"));
        let parsed: LogLine = line.parse().unwrap();
        assert!((before..=after).contains(&parsed.unix_ms), "{line}");
        assert!(parsed.unix_ms >= last, "timestamps go back: {text}");
        last = parsed.unix_ms;
        assert_eq!(parsed.to_string(), *line);
    }

    let live: Vec<LogLine> = rx.try_iter().collect();
    assert_eq!(live.len(), 4);
    let from_file: Vec<LogLine> = lines.iter().map(|l| l.parse().unwrap()).collect();
    assert_eq!(live, from_file);
    assert_eq!(live[2].level, Level::Error);
    assert_eq!(live[2].node, "initiator");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "round 1 started",
            "slow batch",
            "aggregation failed",
            "détail ✓"
        ]
    );

    // Reopening appends.
    drop(log);
    let again = TaskLog::open(&path).unwrap();
    again.push("site-2", Level::Info, "joined").unwrap();
    again.sync().unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(
        text.lines()
            .nth(4)
            .unwrap()
            .ends_with(" [site-2] INFO joined")
    );
}

#[test]
fn multi_line_messages_become_one_file_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.log");
    let log = TaskLog::open(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    log.add_sender(tx);
    log.push(
        "site-1",
        Level::Error,
        "failed:\r\n  caused by: disk full\n",
    )
    .unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<LogLine> = text.lines().map(|l| l.parse().unwrap()).collect();
    let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["failed:", "  caused by: disk full", ""]);
    assert!(lines.iter().all(|l| l.unix_ms == lines[0].unix_ms));
    // The live line keeps the message whole.
    assert_eq!(
        rx.recv().unwrap().message,
        "failed:\r\n  caused by: disk full\n"
    );
}

#[test]
fn concurrent_writers_lose_no_line() {
    const THREADS: usize = 8;
    const LINES: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.log");
    let log = TaskLog::open(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    log.add_sender(tx);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let node = log.node(format!("site-{t}")).unwrap();
            thread::spawn(move || {
                for i in 0..LINES {
                    node.push_log(
                        Level::Info,
                        format!("line {i} of {t} {}", "x".repeat(i % 97)),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    drop(log);

    let text = fs::read_to_string(&path).unwrap();
    let from_file: Vec<LogLine> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(from_file.len(), THREADS * LINES);
    // Per node, every line once and in the order it was pushed.
    let mut next: HashMap<String, usize> = HashMap::new();
    for line in &from_file {
        let i = next.entry(line.node.clone()).or_default();
        let t = &line.node["site-".len()..];
        assert_eq!(
            line.message,
            format!("line {i} of {t} {}", "x".repeat(*i % 97))
        );
        *i += 1;
    }
    assert_eq!(next.len(), THREADS);
    assert!(next.values().all(|&n| n == LINES), "{next:?}");
    // The channel saw the same lines in the same order as the file.
    let live: Vec<LogLine> = rx.iter().collect();
    assert_eq!(live, from_file);
}

#[test]
fn line_round_trips_through_json() {
    let line = LogLine {
        unix_ms: 1_795_713_110_123,
        node: "site-1".into(),
        level: Level::Warn,
        message: "round 3 \"late\"".into(),
    };
    assert_eq!(
        line.to_string(),
        "2026-11-26T17:11:50.123Z [site-1] WARN round 3 \"late\""
    );
    let json = serde_json::to_string(&line).unwrap();
    assert_eq!(
        json,
        r#"{"unix_ms":1795713110123,"node":"site-1","level":"warn","message":"round 3 \"late\""}"#
    );
    assert_eq!(serde_json::from_str::<LogLine>(&json).unwrap(), line);
}

#[test]
fn bad_node_ids_and_lines_are_refused() {
    let log = TaskLog::without_file();
    for bad in ["", "site 1", "a]b", "[x", "tab\t", "new\nline"] {
        assert!(
            matches!(log.node(bad), Err(TelemetryError::InvalidNode { .. })),
            "{bad:?}"
        );
        assert!(log.push(bad, Level::Info, "x").is_err(), "{bad:?}");
    }
    for bad in [
        "2026-11-26T17:11:50.123Z site-1 INFO x",
        "2026-11-26T17:11:50Z [site-1] INFO x",
        "2026-11-26T17:11:50.123Z [site-1] NOTICE x",
        "2026-11-26T17:11:50.123Z [] INFO x",
    ] {
        assert!(
            matches!(
                bad.parse::<LogLine>(),
                Err(TelemetryError::InvalidLogLine { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_closed_console_does_not_stop_logging() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.log");
    let log = TaskLog::open(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    log.add_sender(tx);
    drop(rx);
    log.push("site-1", Level::Info, "still written").unwrap();
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .ends_with("still written\n")
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_failing_file_is_an_error_and_the_console_still_sees_the_line() {
    // Every write to /dev/full fails with "no space left on device".
    let log = TaskLog::open("/dev/full").unwrap();
    let (tx, rx) = mpsc::channel();
    log.add_sender(tx);
    let error = log.push("site-1", Level::Info, "lost").unwrap_err();
    assert!(matches!(error, TelemetryError::Io { .. }), "{error}");
    assert_eq!(rx.recv().unwrap().message, "lost");
    // The shorthand reports instead of returning, and does not panic.
    log.node("site-1").unwrap().info("also lost");
    assert_eq!(rx.recv().unwrap().message, "also lost");
}
