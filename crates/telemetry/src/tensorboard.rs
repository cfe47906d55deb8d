//! TensorBoard event files.
//!
//! An event file is a TFRecord file: each record is the little-endian `u64` length of the
//! data, the masked CRC-32C of those 8 bytes, the data (one serialised `Event`), and the
//! masked CRC-32C of the data. The first event holds `file_version: "brain.Event:2"`; the
//! following ones hold summaries of scalar values.
//!
//! TensorBoard shows each directory holding event files as one run, so a task writes one
//! [`EventWriter`] per participant under a common root (`tensorboard/site-1/`,
//! `tensorboard/initiator/`) and points TensorBoard at the root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::crc32c::masked_crc32c;
use crate::error::TelemetryError;
use crate::proto::{self, RecordedEvent};

/// The version string of the first event of every file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Seconds since the Unix epoch, as event `wall_time`s are.
pub fn unix_seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// The current time as an event `wall_time`.
pub fn wall_time_now() -> f64 {
    unix_seconds(SystemTime::now())
}

/// Writes one TensorBoard event file.
///
/// Events are buffered: call [`flush`](Self::flush) when readers should see them (after each
/// round, say). [`close`](Self::close), or dropping the writer, flushes and syncs the file to
/// disk; `close` reports errors, drop logs them through `tracing`.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    /// `None` once closed.
    file: Option<BufWriter<File>>,
    /// Set when a write failed: the file may end with a partial record.
    failed: bool,
}

impl EventWriter {
    /// Creates a new event file `events.out.tfevents.<unix seconds>.<hostname>` in `dir`, or
    /// in `dir/<run_name>` when a run name is given (directories are created as needed),
    /// and writes the file-version event.
    ///
    /// A run name is one or more `/`-separated components of ASCII letters, digits, `-`,
    /// `_` and `.`, none of them `.` or `..`. An existing file is never overwritten: when the
    /// name is taken (two writers in the same second), `.<pid>.<n>` is appended, which
    /// sorts after it, as TensorBoard reads a run's files in name order.
    pub fn create(dir: impl AsRef<Path>, run_name: Option<&str>) -> Result<Self, TelemetryError> {
        let mut run_dir = dir.as_ref().to_path_buf();
        if let Some(name) = run_name {
            check_run_name(name)?;
            run_dir.extend(name.split('/'));
        }
        fs::create_dir_all(&run_dir).map_err(|source| TelemetryError::io(&run_dir, source))?;
        let now = SystemTime::now();
        let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let base = format!("events.out.tfevents.{seconds}.{}", hostname());
        let (path, file) = create_new(&run_dir, &base)?;
        let mut writer = Self {
            path,
            file: Some(BufWriter::new(file)),
            failed: false,
        };
        writer.write_record(&proto::encode_file_version(unix_seconds(now), FILE_VERSION))?;
        writer.flush()?;
        Ok(writer)
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one scalar: `value` of `tag` (such as `train/loss`) at `step`, with `wall_time`
    /// in seconds since the Unix epoch (see [`wall_time_now`]).
    pub fn add_scalar(
        &mut self,
        tag: &str,
        step: i64,
        value: f32,
        wall_time: f64,
    ) -> Result<(), TelemetryError> {
        self.add_scalars(step, &[(tag, value)], wall_time)
    }

    /// Writes several scalars of the same step as one event.
    pub fn add_scalars(
        &mut self,
        step: i64,
        scalars: &[(&str, f32)],
        wall_time: f64,
    ) -> Result<(), TelemetryError> {
        self.write_record(&proto::encode_scalars(wall_time, step, scalars))
    }

    /// Hands buffered events to the operating system, where readers see them.
    pub fn flush(&mut self) -> Result<(), TelemetryError> {
        let file = self.usable_file()?;
        let result = file.flush();
        self.note(result)
    }

    /// Flushes and syncs the file to disk, and closes it.
    pub fn close(mut self) -> Result<(), TelemetryError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), TelemetryError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        if self.failed {
            return Err(TelemetryError::WriterFailed {
                path: self.path.clone(),
            });
        }
        let result = file.flush().and_then(|()| file.get_ref().sync_all());
        result.map_err(|source| TelemetryError::io(&self.path, source))
    }

    fn usable_file(&mut self) -> Result<&mut BufWriter<File>, TelemetryError> {
        match &mut self.file {
            Some(file) if !self.failed => Ok(file),
            Some(_) => Err(TelemetryError::WriterFailed {
                path: self.path.clone(),
            }),
            // Only `close` and drop take the file, and both consume the writer.
            None => Err(TelemetryError::io(
                &self.path,
                io::Error::other("event file already closed"),
            )),
        }
    }

    fn note(&mut self, result: io::Result<()>) -> Result<(), TelemetryError> {
        result.map_err(|source| {
            self.failed = true;
            TelemetryError::io(&self.path, source)
        })
    }

    fn write_record(&mut self, data: &[u8]) -> Result<(), TelemetryError> {
        let file = self.usable_file()?;
        let result = file.write_all(&frame(data));
        self.note(result)
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if let Err(error) = self.finish() {
            tracing::warn!(%error, "TensorBoard event file not closed cleanly");
        }
    }
}

/// One TFRecord: length, masked CRC of the length, data, masked CRC of the data.
fn frame(data: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(data.len() + 16);
    let length = (data.len() as u64).to_le_bytes();
    record.extend_from_slice(&length);
    record.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    record.extend_from_slice(data);
    record.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    record
}

fn create_new(dir: &Path, base: &str) -> Result<(PathBuf, File), TelemetryError> {
    let pid = std::process::id();
    for attempt in 0u32..1000 {
        let name = match attempt {
            0 => base.to_owned(),
            n => format!("{base}.{pid}.{n}"),
        };
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(TelemetryError::io(path, source)),
        }
    }
    Err(TelemetryError::io(
        dir.join(base),
        io::Error::new(io::ErrorKind::AlreadyExists, "no free event file name"),
    ))
}

fn check_run_name(name: &str) -> Result<(), TelemetryError> {
    let invalid = |reason| TelemetryError::InvalidRunName {
        name: name.to_owned(),
        reason,
    };
    for component in name.split('/') {
        if component.is_empty() {
            return Err(invalid("it is empty, absolute, or has an empty component"));
        }
        if component == "." || component == ".." {
            return Err(invalid("`.` and `..` are not accepted"));
        }
        if component.len() > 255 {
            return Err(invalid("a component is longer than 255 bytes"));
        }
        if !component
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(invalid("it has a character outside the accepted set"));
        }
    }
    Ok(())
}

/// This machine's name, made safe for a file name; `localhost` when unknown.
fn hostname() -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|file| fs::read_to_string(file).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// Reads every event of an event file, checking both checksums of every record.
///
/// For verification and tests: TensorBoard itself is the reader for users.
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<RecordedEvent>, TelemetryError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| TelemetryError::io(path, source))?;
    let corrupt = |offset: usize, problem: String| TelemetryError::CorruptEvents {
        path: path.to_path_buf(),
        offset: offset as u64,
        problem,
    };
    let mut events = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Some((header, rest)) = rest.split_first_chunk::<12>() else {
            return Err(corrupt(offset, "truncated record header".into()));
        };
        let (length, length_crc) = header.split_at(8);
        if masked_crc32c(length).to_le_bytes() != length_crc {
            return Err(corrupt(offset, "length checksum mismatch".into()));
        }
        let mut length_bytes = [0u8; 8];
        length_bytes.copy_from_slice(length);
        let length = u64::from_le_bytes(length_bytes);
        let data_len = usize::try_from(length)
            .ok()
            .filter(|&len| len.checked_add(4).is_some_and(|end| end <= rest.len()))
            .ok_or_else(|| corrupt(offset, format!("truncated record of {length} bytes")))?;
        let (data, rest) = rest.split_at(data_len);
        if masked_crc32c(data).to_le_bytes() != rest[..4] {
            return Err(corrupt(offset, "data checksum mismatch".into()));
        }
        let event = proto::decode_event(data)
            .map_err(|error| corrupt(offset, format!("undecodable event: {error}")))?;
        events.push(event);
        offset += 12 + data_len + 4;
    }
    Ok(events)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::{EventKind, SummaryValue};

    fn only_file(dir: &Path) -> PathBuf {
        let files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.into_iter().next().unwrap()
    }

    #[test]
    fn record_framing_matches_the_reference_writer() {
        // tensorboard's RecordWriter framing of the event in proto.rs's scalar test.
        let data = proto::encode_scalars(1.5, 3, &[("a/b", 0.25)]);
        let hex: String = frame(&data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "19000000000000008bf1082809000000000000f83f10032a0c0a0a0a03612f62150000803e1440548c"
        );
    }

    #[test]
    fn writes_file_version_then_scalars_in_a_run_directory() {
        let root = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(root.path(), Some("site-1")).unwrap();
        assert!(writer.path().starts_with(root.path().join("site-1")));
        let name = writer
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        writer.add_scalar("train/loss", 1, 0.5, 100.0).unwrap();
        writer
            .add_scalars(2, &[("train/loss", 0.25), ("train/accuracy", 0.75)], 101.0)
            .unwrap();
        writer.close().unwrap();

        let events = read_events(only_file(&root.path().join("site-1"))).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].kind, EventKind::FileVersion(FILE_VERSION.into()));
        assert!((events[0].wall_time - wall_time_now()).abs() < 60.0);
        let scalar = |tag: &str, value| SummaryValue {
            tag: tag.into(),
            simple_value: Some(value),
        };
        assert_eq!(
            events[1],
            RecordedEvent {
                wall_time: 100.0,
                step: 1,
                kind: EventKind::Summary(vec![scalar("train/loss", 0.5)]),
            }
        );
        assert_eq!(
            events[2],
            RecordedEvent {
                wall_time: 101.0,
                step: 2,
                kind: EventKind::Summary(vec![
                    scalar("train/loss", 0.25),
                    scalar("train/accuracy", 0.75)
                ]),
            }
        );
    }

    #[test]
    fn drop_flushes_everything() {
        let root = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(root.path(), None).unwrap();
        for step in 0..1000 {
            writer.add_scalar("x", step, step as f32, 1.0).unwrap();
        }
        drop(writer);
        let events = read_events(only_file(root.path())).unwrap();
        assert_eq!(events.len(), 1001);
        assert_eq!(events[1000].step, 999);
    }

    #[test]
    fn a_second_writer_never_overwrites_the_first() {
        let root = tempfile::tempdir().unwrap();
        let first = EventWriter::create(root.path(), Some("a")).unwrap();
        let second = EventWriter::create(root.path(), Some("a")).unwrap();
        assert_ne!(first.path(), second.path());
        let (first_path, second_path) = (first.path().to_owned(), second.path().to_owned());
        first.close().unwrap();
        second.close().unwrap();
        assert_eq!(read_events(first_path).unwrap().len(), 1);
        assert_eq!(read_events(second_path).unwrap().len(), 1);
    }

    #[test]
    fn nested_run_names_and_unsafe_ones() {
        let root = tempfile::tempdir().unwrap();
        let writer = EventWriter::create(root.path(), Some("round-1/site_2.a")).unwrap();
        assert!(
            writer
                .path()
                .starts_with(root.path().join("round-1").join("site_2.a"))
        );
        for bad in [
            "", "/abs", "a//b", "..", "a/../b", "./a", "a b", "a\\b", "site-1/",
        ] {
            let error = EventWriter::create(root.path(), Some(bad)).unwrap_err();
            assert!(
                matches!(&error, TelemetryError::InvalidRunName { name, .. } if name == bad),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn hostname_is_file_name_safe() {
        let name = hostname();
        assert!(!name.is_empty());
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        );
    }
}
