//! Just enough protocol buffers for TensorBoard's `Event` and `Summary` messages.
//!
//! Field numbers, from `tensorflow/core/util/event.proto` and
//! `tensorflow/core/framework/summary.proto`:
//!
//! ```text
//! message Event   { double wall_time = 1; int64 step = 2;
//!                   oneof what { string file_version = 3; Summary summary = 5; ... } }
//! message Summary { repeated Value value = 1;
//!                   message Value { string tag = 1; oneof value { float simple_value = 2; ... } } }
//! ```
//!
//! Scalars with their default value are left out, as proto3 encoders do, except
//! `simple_value`, which belongs to a `oneof` and so is always written (a zero would
//! otherwise read back as "no value").

use std::fmt;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// What an event carries.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The first event of a file: the format version, `brain.Event:2`.
    FileVersion(String),
    /// Summary values (scalars and others).
    Summary(Vec<SummaryValue>),
    /// Something this crate does not decode (a graph, a log message, ...), or nothing.
    Other,
}

/// One value of a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryValue {
    /// The tag, such as `train/loss`.
    pub tag: String,
    /// The scalar, when the value is a `simple_value`.
    pub simple_value: Option<f32>,
}

/// One decoded event of an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// The step (the round, for a federated task).
    pub step: i64,
    /// What the event carries.
    pub kind: EventKind,
}

fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_len(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn put_event_header(buf: &mut Vec<u8>, wall_time: f64, step: i64) {
    if wall_time.to_bits() != 0 {
        put_key(buf, 1, FIXED64);
        buf.extend_from_slice(&wall_time.to_le_bytes());
    }
    if step != 0 {
        put_key(buf, 2, VARINT);
        // int64 is encoded as the two's complement 64-bit varint.
        put_varint(buf, step as u64);
    }
}

/// `Event { wall_time, file_version }`.
pub(crate) fn encode_file_version(wall_time: f64, version: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32);
    put_event_header(&mut buf, wall_time, 0);
    put_len(&mut buf, 3, version.as_bytes());
    buf
}

/// `Event { wall_time, step, summary { value { tag, simple_value } ... } }`.
pub(crate) fn encode_scalars(wall_time: f64, step: i64, scalars: &[(&str, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    let mut value = Vec::new();
    for &(tag, simple_value) in scalars {
        value.clear();
        put_len(&mut value, 1, tag.as_bytes());
        put_key(&mut value, 2, FIXED32);
        value.extend_from_slice(&simple_value.to_le_bytes());
        put_len(&mut summary, 1, &value);
    }
    let mut buf = Vec::with_capacity(summary.len() + 24);
    put_event_header(&mut buf, wall_time, step);
    put_len(&mut buf, 5, &summary);
    buf
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A field's payload.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Len(&'a [u8]),
    Fixed32([u8; 4]),
}

struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(DecodeError("truncated fixed-width field"))?;
        self.rest = rest;
        Ok(*head)
    }

    /// The next field number and payload, or `None` at the end.
    fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>, DecodeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(DecodeError("field number 0"));
        }
        let payload = match (key & 7) as u8 {
            VARINT => Field::Varint(self.varint()?),
            FIXED64 => Field::Fixed64(self.take()?),
            LEN => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| DecodeError("length does not fit in memory"))?;
                if len > self.rest.len() {
                    return Err(DecodeError("truncated length-delimited field"));
                }
                let (bytes, rest) = self.rest.split_at(len);
                self.rest = rest;
                Field::Len(bytes)
            }
            FIXED32 => Field::Fixed32(self.take()?),
            _ => return Err(DecodeError("unsupported wire type")),
        };
        Ok(Some((field, payload)))
    }
}

/// Decodes an `Event`, keeping what this crate knows.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<RecordedEvent, DecodeError> {
    let mut event = RecordedEvent {
        wall_time: 0.0,
        step: 0,
        kind: EventKind::Other,
    };
    let mut fields = Fields::new(bytes);
    while let Some((number, field)) = fields.next_field()? {
        match (number, field) {
            (1, Field::Fixed64(bytes)) => event.wall_time = f64::from_le_bytes(bytes),
            (2, Field::Varint(value)) => event.step = value as i64,
            (3, Field::Len(bytes)) => {
                let version = std::str::from_utf8(bytes)
                    .map_err(|_| DecodeError("file_version is not UTF-8"))?;
                event.kind = EventKind::FileVersion(version.to_owned());
            }
            (5, Field::Len(bytes)) => event.kind = EventKind::Summary(decode_summary(bytes)?),
            (1 | 2 | 3 | 5, _) => return Err(DecodeError("event field with the wrong wire type")),
            // Another member of the `what` oneof replaces what was read before.
            (4 | 6..=10, _) => event.kind = EventKind::Other,
            _ => {}
        }
    }
    Ok(event)
}

fn decode_summary(bytes: &[u8]) -> Result<Vec<SummaryValue>, DecodeError> {
    let mut values = Vec::new();
    let mut fields = Fields::new(bytes);
    while let Some((number, field)) = fields.next_field()? {
        match (number, field) {
            (1, Field::Len(bytes)) => values.push(decode_value(bytes)?),
            (1, _) => return Err(DecodeError("summary value with the wrong wire type")),
            _ => {}
        }
    }
    Ok(values)
}

fn decode_value(bytes: &[u8]) -> Result<SummaryValue, DecodeError> {
    let mut value = SummaryValue {
        tag: String::new(),
        simple_value: None,
    };
    let mut fields = Fields::new(bytes);
    while let Some((number, field)) = fields.next_field()? {
        match (number, field) {
            (1, Field::Len(bytes)) => {
                value.tag = std::str::from_utf8(bytes)
                    .map_err(|_| DecodeError("summary tag is not UTF-8"))?
                    .to_owned();
            }
            (2, Field::Fixed32(bytes)) => value.simple_value = Some(f32::from_le_bytes(bytes)),
            (1 | 2, _) => return Err(DecodeError("summary field with the wrong wire type")),
            // Another member of the `value` oneof (image, histogram, tensor, ...).
            (3..=6 | 8, _) => value.simple_value = None,
            _ => {}
        }
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // The expected bytes come from the tensorboard package's own protobuf classes:
    // `event_pb2.Event(wall_time=1.5, step=3)` with one `summary.value` of tag "a/b" and
    // simple_value 0.25, then `.SerializeToString().hex()`.
    #[test]
    fn scalar_event_matches_the_reference_encoder() {
        let bytes = encode_scalars(1.5, 3, &[("a/b", 0.25)]);
        assert_eq!(
            hex(&bytes),
            "09000000000000f83f10032a0c0a0a0a03612f62150000803e"
        );
    }

    #[test]
    fn file_version_event_matches_the_reference_encoder() {
        let bytes = encode_file_version(1.5, "brain.Event:2");
        assert_eq!(
            hex(&bytes),
            "09000000000000f83f1a0d627261696e2e4576656e743a32"
        );
    }

    #[test]
    fn negative_step_is_a_ten_byte_varint() {
        // event_pb2.Event(wall_time=1.5, step=-1)
        let bytes = encode_scalars(1.5, -1, &[]);
        assert_eq!(hex(&bytes), "09000000000000f83f10ffffffffffffffffff012a00");
        assert_eq!(decode_event(&bytes).unwrap().step, -1);
    }

    #[test]
    fn zero_scalar_is_written_and_read_back() {
        let bytes = encode_scalars(2.0, 0, &[("zero", 0.0), ("x", -3.5)]);
        let event = decode_event(&bytes).unwrap();
        assert_eq!(event.step, 0);
        assert_eq!(
            event.kind,
            EventKind::Summary(vec![
                SummaryValue {
                    tag: "zero".into(),
                    simple_value: Some(0.0)
                },
                SummaryValue {
                    tag: "x".into(),
                    simple_value: Some(-3.5)
                },
            ])
        );
    }

    #[test]
    fn truncated_messages_are_errors() {
        let bytes = encode_scalars(1.5, 3, &[("a/b", 0.25)]);
        // Every cut inside a field: the wall time is bytes 0..9, the step 9..11, the
        // summary 11.. (a cut between fields is a valid, shorter message).
        for len in (1..9).chain(10..11).chain(12..bytes.len()) {
            assert!(
                decode_event(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        assert_eq!(decode_event(&bytes[..11]).unwrap().kind, EventKind::Other);
    }
}
