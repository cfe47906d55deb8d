//! Splitting a message into chunks and putting it back together, without a server.
//!
//! Every chunk carries [`ChunkMeta`]: the message id, its index and the chunk count, the CRC-32
//! of its own bytes, the whole message's length and SHA-256. A [`Reassembler`] (one per sender)
//! accepts chunks in any order, drops duplicates, and yields a message only when every chunk is
//! present, each chunk's CRC-32 matches and the whole message's SHA-256 matches: bad data is
//! never delivered.
//!
//! A chunk's headers are the sender's word, so they are checked against [`Limits`] before
//! anything is kept: the announced size against the largest message accepted, the chunk
//! count against what that size can need (chunks other than the last are all one size, at
//! least [`MIN_CHUNK`] bytes), and the bytes received against the announced size. What a
//! reassembler holds for one sender is therefore at most one message of at most
//! [`Limits::max_message`] bytes, in at most `max_message / MIN_CHUNK + 1` chunks.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

/// How many finished (delivered or abandoned) message ids a [`Reassembler`] remembers, so that
/// late duplicates of their chunks are recognised.
const REMEMBERED: usize = 1024;

/// The smallest chunk a sender cuts, except a message's last one.
pub const MIN_CHUNK: usize = 1024;

/// How many missing chunk indices an error lists.
const LISTED: usize = 8;

/// What one sender's chunks may announce and carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message accepted, in bytes.
    pub max_message: u64,
    /// The largest chunk accepted, in bytes (the server's `max_payload` bounds it anyway).
    pub max_chunk: usize,
}

impl Limits {
    /// The chunk count a message of `total_len` bytes may have at most.
    fn max_count(total_len: u64) -> u64 {
        total_len.div_ceil(MIN_CHUNK as u64).max(1)
    }
}

/// What travels with each chunk (in NATS headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMeta {
    /// The message's id, unique per sender.
    pub message_id: String,
    /// This chunk's index, `0..count`.
    pub index: u32,
    /// How many chunks the message has (at least 1: an empty message is one empty chunk).
    pub count: u32,
    /// CRC-32 (IEEE) of this chunk's bytes.
    pub crc32: u32,
    /// The whole message's length in bytes.
    pub total_len: u64,
    /// The whole message's SHA-256, lowercase hex.
    pub sha256: String,
}

/// Splits `bytes` into chunks of at most `chunk_size` bytes (at least one chunk, even for an
/// empty message), each with its [`ChunkMeta`] and the byte range it covers. A receiver
/// refuses chunks smaller than [`MIN_CHUNK`] other than the last.
///
/// # Panics
/// If `chunk_size` is 0 or the message would need more than `u32::MAX` chunks.
pub fn split(
    message_id: &str,
    bytes: &[u8],
    chunk_size: usize,
) -> Vec<(ChunkMeta, std::ops::Range<usize>)> {
    assert!(chunk_size > 0, "chunk size must be positive");
    let sha256 = sha256_hex(bytes);
    let count = bytes.len().div_ceil(chunk_size).max(1);
    let count_u32 = u32::try_from(count).expect("fewer than 2^32 chunks");
    (0..count)
        .map(|i| {
            let start = i * chunk_size;
            let end = (start + chunk_size).min(bytes.len());
            let meta = ChunkMeta {
                message_id: message_id.to_owned(),
                index: u32::try_from(i).expect("fewer than 2^32 chunks"),
                count: count_u32,
                crc32: crc32fast::hash(&bytes[start..end]),
                total_len: bytes.len() as u64,
                sha256: sha256.clone(),
            };
            (meta, start..end)
        })
        .collect()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Why a message could not be put back together. Its chunks are discarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// A chunk's bytes do not match its CRC-32.
    #[error(
        "message {message_id}: chunk {index} is corrupt (CRC-32 {found:08x}, expected {expected:08x})"
    )]
    CorruptChunk {
        /// The message.
        message_id: String,
        /// The chunk.
        index: u32,
        /// CRC-32 of the bytes received.
        found: u32,
        /// CRC-32 in the chunk's header.
        expected: u32,
    },
    /// Every chunk arrived intact, but the whole message's SHA-256 or length is wrong.
    #[error(
        "message {message_id}: SHA-256 or length of the reassembled message does not match (got {found_len} bytes, expected {expected_len})"
    )]
    DigestMismatch {
        /// The message.
        message_id: String,
        /// Length of what was reassembled.
        found_len: u64,
        /// Length announced in the headers.
        expected_len: u64,
    },
    /// A chunk's header disagrees with the message's earlier chunks, or is impossible.
    #[error("message {message_id}: chunk {index} is inconsistent: {reason}")]
    Inconsistent {
        /// The message.
        message_id: String,
        /// The chunk.
        index: u32,
        /// What is wrong.
        reason: String,
    },
    /// A later message from the same sender started before this one was complete: the missing
    /// chunks were lost (a sender publishes every chunk of a message before the next message).
    #[error(
        "message {message_id}: {missing_count} of its {count} chunks never arrived (the first: {missing:?})"
    )]
    Missing {
        /// The message.
        message_id: String,
        /// The first indices that never arrived (at most 8).
        missing: Vec<u32>,
        /// How many never arrived.
        missing_count: u32,
        /// The message's chunk count.
        count: u32,
    },
    /// The message announces more bytes than the receiver accepts.
    #[error("message {message_id}: {size} bytes announced, more than the {limit} accepted")]
    TooLarge {
        /// The message.
        message_id: String,
        /// The size its headers announce.
        size: u64,
        /// The largest message accepted.
        limit: u64,
    },
}

/// What pushing one chunk produced. `T` is whatever the caller needs to acknowledge a chunk
/// (a JetStream message); every token pushed comes back exactly once in some outcome.
#[derive(Debug)]
pub enum Outcome<T> {
    /// Kept; the message is not complete yet.
    Pending,
    /// The message is complete and verified; acknowledge `tokens` once it is delivered.
    Complete {
        /// The message's id.
        message_id: String,
        /// The message's bytes.
        message: Vec<u8>,
        /// The tokens of all its chunks.
        tokens: Vec<T>,
    },
    /// The message failed; nothing is delivered and its chunks (`tokens`) should be discarded.
    Failed {
        /// Why.
        error: ReassemblyError,
        /// The tokens of the chunks received for it.
        tokens: Vec<T>,
    },
    /// A duplicate chunk (already held, or of a message already delivered or abandoned):
    /// acknowledge and drop it.
    Stale(T),
}

#[derive(Debug)]
struct Partial<T> {
    message_id: String,
    count: u32,
    total_len: u64,
    sha256: String,
    chunks: BTreeMap<u32, Vec<u8>>,
    /// Bytes held in `chunks`.
    received: u64,
    /// The length of the chunks other than the last, once one arrived.
    chunk_len: Option<usize>,
    tokens: Vec<T>,
}

impl<T> Partial<T> {
    /// Why `meta` and a payload of `len` bytes cannot belong to this message, if they cannot
    /// (the chunk passed [`check_alone`]).
    fn inconsistency(&self, meta: &ChunkMeta, len: usize) -> Option<String> {
        if meta.count != self.count
            || meta.total_len != self.total_len
            || meta.sha256 != self.sha256
        {
            return Some(
                "chunk count, length or digest differs from the message's first chunk".into(),
            );
        }
        if self.received.saturating_add(len as u64) > self.total_len {
            return Some(format!(
                "its bytes exceed the {} the message announces",
                self.total_len
            ));
        }
        let last = meta.index + 1 == meta.count;
        if !last && self.chunk_len.is_some_and(|l| l != len) {
            return Some(format!(
                "{len} bytes, where every chunk but the last has one size"
            ));
        }
        None
    }

    /// Up to [`LISTED`] indices that never arrived, and how many.
    fn missing(&self) -> (Vec<u32>, u32) {
        let missing = (0..self.count).filter(|i| !self.chunks.contains_key(i));
        let count = self
            .count
            .saturating_sub(u32::try_from(self.chunks.len()).unwrap_or(u32::MAX));
        (missing.take(LISTED).collect(), count)
    }
}

/// What makes a chunk impossible whatever else arrived: a size over the limit, an index or
/// count the size cannot have, a payload too large, or (not the last) too small.
fn check_alone(meta: &ChunkMeta, len: usize, limits: &Limits) -> Option<ReassemblyError> {
    if meta.total_len > limits.max_message {
        return Some(ReassemblyError::TooLarge {
            message_id: meta.message_id.clone(),
            size: meta.total_len,
            limit: limits.max_message,
        });
    }
    let count = u64::from(meta.count);
    let reason = if meta.count == 0 || meta.index >= meta.count {
        format!("index {} of {} chunks", meta.index, meta.count)
    } else if count > Limits::max_count(meta.total_len)
        || meta.total_len > count.saturating_mul(limits.max_chunk as u64)
    {
        format!(
            "{count} chunks cannot hold {} bytes (chunks are {MIN_CHUNK} to {} bytes)",
            meta.total_len, limits.max_chunk
        )
    } else if len > limits.max_chunk {
        format!(
            "{len} bytes, more than the {} a chunk may hold",
            limits.max_chunk
        )
    } else if meta.index + 1 < meta.count && len < MIN_CHUNK {
        format!("{len} bytes, where every chunk but the last has at least {MIN_CHUNK}")
    } else {
        return None;
    };
    Some(ReassemblyError::Inconsistent {
        message_id: meta.message_id.clone(),
        index: meta.index,
        reason,
    })
}

/// Puts one sender's messages back together (see the module docs).
#[derive(Debug)]
pub struct Reassembler<T> {
    limits: Limits,
    current: Option<Partial<T>>,
    finished: HashSet<String>,
    finished_order: VecDeque<String>,
}

impl<T> Reassembler<T> {
    /// A reassembler with nothing in progress that accepts what `limits` allow.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            current: None,
            finished: HashSet::new(),
            finished_order: VecDeque::new(),
        }
    }

    /// Changes the limits for the chunks pushed from now on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Whether a message is partly received.
    pub fn in_progress(&self) -> Option<&str> {
        self.current.as_ref().map(|p| p.message_id.as_str())
    }

    /// Accepts one chunk. Usually one outcome; two when this chunk starts a new message while
    /// another was incomplete (`Failed` with [`ReassemblyError::Missing`] for the old one, then
    /// the new chunk's outcome).
    pub fn push(&mut self, meta: ChunkMeta, payload: &[u8], token: T) -> Vec<Outcome<T>> {
        let mut outcomes = Vec::new();
        if self.finished.contains(&meta.message_id) {
            outcomes.push(Outcome::Stale(token));
            return outcomes;
        }
        // An impossible chunk is refused alone: it does not end the message in progress.
        if let Some(error) = check_alone(&meta, payload.len(), &self.limits) {
            if self
                .current
                .as_ref()
                .is_some_and(|p| p.message_id == meta.message_id)
            {
                let mut partial = self.current.take().expect("checked");
                partial.tokens.push(token);
                self.remember(partial.message_id);
                outcomes.push(Outcome::Failed {
                    error,
                    tokens: partial.tokens,
                });
            } else {
                self.remember(meta.message_id);
                outcomes.push(Outcome::Failed {
                    error,
                    tokens: vec![token],
                });
            }
            return outcomes;
        }
        if let Some(partial) = self.current.take_if(|p| p.message_id != meta.message_id) {
            let (missing, missing_count) = partial.missing();
            self.remember(partial.message_id.clone());
            outcomes.push(Outcome::Failed {
                error: ReassemblyError::Missing {
                    message_id: partial.message_id,
                    missing,
                    missing_count,
                    count: partial.count,
                },
                tokens: partial.tokens,
            });
        }
        outcomes.push(self.push_current(meta, payload, token));
        outcomes
    }

    fn push_current(&mut self, meta: ChunkMeta, payload: &[u8], token: T) -> Outcome<T> {
        let partial = self.current.get_or_insert_with(|| Partial {
            message_id: meta.message_id.clone(),
            count: meta.count,
            total_len: meta.total_len,
            sha256: meta.sha256.clone(),
            chunks: BTreeMap::new(),
            received: 0,
            chunk_len: None,
            tokens: Vec::new(),
        });
        if partial.chunks.contains_key(&meta.index) && meta.count == partial.count {
            return Outcome::Stale(token);
        }
        let inconsistent = partial.inconsistency(&meta, payload.len());
        let found = crc32fast::hash(payload);
        let error = if let Some(reason) = inconsistent {
            Some(ReassemblyError::Inconsistent {
                message_id: meta.message_id.clone(),
                index: meta.index,
                reason,
            })
        } else if found != meta.crc32 {
            Some(ReassemblyError::CorruptChunk {
                message_id: meta.message_id.clone(),
                index: meta.index,
                found,
                expected: meta.crc32,
            })
        } else {
            None
        };
        if let Some(error) = error {
            let mut partial = self.current.take().expect("just inserted");
            partial.tokens.push(token);
            self.remember(partial.message_id);
            return Outcome::Failed {
                error,
                tokens: partial.tokens,
            };
        }
        if meta.index + 1 < meta.count {
            partial.chunk_len = Some(payload.len());
        }
        partial.received += payload.len() as u64;
        partial.chunks.insert(meta.index, payload.to_vec());
        partial.tokens.push(token);
        if partial.chunks.len() < partial.count as usize {
            return Outcome::Pending;
        }
        let partial = self.current.take().expect("just inserted");
        self.remember(partial.message_id.clone());
        let mut message = Vec::with_capacity(usize::try_from(partial.received).unwrap_or(0));
        for chunk in partial.chunks.into_values() {
            message.extend_from_slice(&chunk);
        }
        if message.len() as u64 != partial.total_len || sha256_hex(&message) != partial.sha256 {
            return Outcome::Failed {
                error: ReassemblyError::DigestMismatch {
                    message_id: partial.message_id,
                    found_len: message.len() as u64,
                    expected_len: partial.total_len,
                },
                tokens: partial.tokens,
            };
        }
        Outcome::Complete {
            message_id: partial.message_id,
            message,
            tokens: partial.tokens,
        }
    }

    fn remember(&mut self, message_id: String) {
        if self.finished.insert(message_id.clone()) {
            self.finished_order.push_back(message_id);
            if self.finished_order.len() > REMEMBERED
                && let Some(old) = self.finished_order.pop_front()
            {
                self.finished.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        let mut x: u32 = 0x1234_5678;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Pushes chunks in the given order; returns the delivered messages and every failure.
    fn feed(
        r: &mut Reassembler<u32>,
        chunks: impl IntoIterator<Item = (ChunkMeta, Vec<u8>)>,
    ) -> (Vec<Vec<u8>>, Vec<ReassemblyError>, Vec<u32>) {
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        let mut acked = Vec::new();
        for (meta, payload) in chunks {
            let token = meta.index;
            for outcome in r.push(meta, &payload, token) {
                match outcome {
                    Outcome::Pending => {}
                    Outcome::Complete {
                        message, tokens, ..
                    } => {
                        delivered.push(message);
                        acked.extend(tokens);
                    }
                    Outcome::Failed { error, tokens } => {
                        failed.push(error);
                        acked.extend(tokens);
                    }
                    Outcome::Stale(t) => acked.push(t),
                }
            }
        }
        (delivered, failed, acked)
    }

    fn chunks(id: &str, bytes: &[u8], size: usize) -> Vec<(ChunkMeta, Vec<u8>)> {
        split(id, bytes, size)
            .into_iter()
            .map(|(m, r)| (m, bytes[r].to_vec()))
            .collect()
    }

    const CHUNK: usize = 1024 * 1024 - 8192;
    const LIMITS: Limits = Limits {
        max_message: 64 << 20,
        max_chunk: CHUNK,
    };

    #[test]
    fn round_trips_every_size() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * 1024 * 1024] {
            let bytes = data(len);
            let parts = chunks("m", &bytes, CHUNK);
            assert_eq!(parts.len(), len.div_ceil(CHUNK).max(1), "len {len}");
            assert!(parts.iter().all(|(_, p)| p.len() <= CHUNK));
            let mut r = Reassembler::new(LIMITS);
            let (delivered, failed, acked) = feed(&mut r, parts.clone());
            assert_eq!(delivered, vec![bytes], "len {len}");
            assert!(failed.is_empty());
            assert_eq!(acked.len(), parts.len());
            assert_eq!(r.in_progress(), None);
        }
    }

    #[test]
    fn accepts_chunks_in_any_order() {
        let bytes = data(10_000);
        let mut parts = chunks("m", &bytes, 1024);
        parts.reverse();
        parts.swap(2, 7);
        let mut r = Reassembler::new(LIMITS);
        let (delivered, failed, _) = feed(&mut r, parts);
        assert_eq!(delivered, vec![bytes]);
        assert!(failed.is_empty());
    }

    #[test]
    fn refuses_a_flipped_byte() {
        let bytes = data(10_000);
        let mut parts = chunks("m", &bytes, 1024);
        parts[3].1[17] ^= 0x01;
        let mut r = Reassembler::new(LIMITS);
        let (delivered, failed, acked) = feed(&mut r, parts);
        assert!(delivered.is_empty());
        assert!(matches!(
            failed.as_slice(),
            [ReassemblyError::CorruptChunk { index: 3, .. }]
        ));
        assert_eq!(
            acked.len(),
            10,
            "every chunk is discarded, none left pending"
        );
    }

    #[test]
    fn refuses_a_message_whose_digest_does_not_match() {
        // Chunks consistent with their own CRC-32 but not with the message's SHA-256 (as if
        // a sender's buffer changed between hashing and chunking).
        let bytes = data(3000);
        let mut parts = chunks("m", &bytes, 1024);
        parts[1].1[0] ^= 0xff;
        parts[1].0.crc32 = crc32fast::hash(&parts[1].1);
        let mut r = Reassembler::new(LIMITS);
        let (delivered, failed, _) = feed(&mut r, parts);
        assert!(delivered.is_empty());
        assert!(matches!(
            failed.as_slice(),
            [ReassemblyError::DigestMismatch { .. }]
        ));
    }

    #[test]
    fn reports_a_missing_chunk_when_the_next_message_starts() {
        let first = data(5000);
        let second = data(1500);
        let mut parts = chunks("a", &first, 1024);
        parts.remove(2);
        parts.extend(chunks("b", &second, 1024));
        let mut r = Reassembler::new(LIMITS);
        let (delivered, failed, acked) = feed(&mut r, parts);
        assert_eq!(delivered, vec![second]);
        assert_eq!(
            failed,
            vec![ReassemblyError::Missing {
                message_id: "a".into(),
                missing: vec![2],
                missing_count: 1,
                count: 5
            }]
        );
        assert_eq!(acked.len(), 4 + 2);
        // A late chunk of the abandoned message is stale, not the start of a new one.
        let late = chunks("a", &first, 1024).remove(2);
        let (delivered, failed, acked) = feed(&mut r, [late]);
        assert!(delivered.is_empty() && failed.is_empty());
        assert_eq!(acked, vec![2]);
    }

    #[test]
    fn drops_duplicate_chunks() {
        let bytes = data(3000);
        let parts = chunks("m", &bytes, 1024);
        let mut with_dups = vec![parts[0].clone(), parts[0].clone(), parts[1].clone()];
        with_dups.extend(parts.iter().cloned());
        let mut r = Reassembler::new(LIMITS);
        let (delivered, failed, acked) = feed(&mut r, with_dups);
        assert_eq!(delivered, vec![bytes]);
        assert!(failed.is_empty());
        // Every token comes back exactly once: 3 with the message, 3 as stale duplicates.
        assert_eq!(acked.len(), 6);
    }

    #[test]
    fn refuses_inconsistent_headers() {
        let bytes = data(3000);
        let mut parts = chunks("m", &bytes, 1024);
        parts[1].0.count = 4;
        let mut r = Reassembler::new(LIMITS);
        let (delivered, failed, _) = feed(&mut r, parts);
        assert!(delivered.is_empty());
        assert!(matches!(
            failed[0],
            ReassemblyError::Inconsistent { index: 1, .. }
        ));
    }

    /// One chunk whose headers announce `total_len` bytes in `count` chunks.
    fn forged(total_len: u64, count: u32, payload: &[u8]) -> (ChunkMeta, Vec<u8>) {
        let meta = ChunkMeta {
            message_id: "forged".into(),
            index: 0,
            count,
            crc32: crc32fast::hash(payload),
            total_len,
            sha256: sha256_hex(payload),
        };
        (meta, payload.to_vec())
    }

    #[test]
    fn refuses_what_the_headers_cannot_hold_before_keeping_anything() {
        let mut r = Reassembler::new(LIMITS);
        // A 100-byte chunk announcing 2^60 bytes (it aborted the coordinator once).
        let (_, failed, acked) = feed(&mut r, [forged(1 << 60, 1, &[7; 100])]);
        assert_eq!(
            failed,
            vec![ReassemblyError::TooLarge {
                message_id: "forged".into(),
                size: 1 << 60,
                limit: 64 << 20
            }]
        );
        assert_eq!(acked.len(), 1);
        assert_eq!(r.in_progress(), None);
        // 5·10^7 chunks announced for a small message, a chunk larger than allowed, chunks
        // of other sizes than the first, bytes beyond the announced size.
        let cases = [
            forged(4096, 50_000_000, &[1; 1024]),
            forged(10 << 20, 2, &[1; 1024]),
        ];
        for case in cases {
            let mut r = Reassembler::new(LIMITS);
            let (delivered, failed, _) = feed(&mut r, [case]);
            assert!(delivered.is_empty());
            assert!(
                matches!(&failed[..], [ReassemblyError::Inconsistent { reason, .. }] if reason.contains("cannot hold")),
                "{failed:?}"
            );
        }
        let mut big = forged(3 * 1024, 3, &[1; 1024]);
        big.1 = vec![1; CHUNK + 1];
        let mut small = forged(4 * 1024, 4, &[1; 1024]);
        small.1 = vec![1; 100];
        for case in [big, small] {
            let mut r = Reassembler::new(LIMITS);
            let (_, failed, _) = feed(&mut r, [case]);
            assert!(
                matches!(&failed[..], [ReassemblyError::Inconsistent { .. }]),
                "{failed:?}"
            );
        }
        let bytes = data(3000);
        let mut parts = chunks("m", &bytes, 1024);
        parts[2].1.extend_from_slice(&[0; 2000]);
        let mut r = Reassembler::new(LIMITS);
        let (_, failed, _) = feed(&mut r, parts);
        assert!(
            matches!(&failed[..], [ReassemblyError::Inconsistent { reason, .. }] if reason.contains("exceed")),
            "{failed:?}"
        );
    }

    #[test]
    fn an_impossible_chunk_does_not_end_the_message_in_progress() {
        let bytes = data(5000);
        let mut parts = chunks("honest", &bytes, 1024);
        parts.insert(2, forged(1 << 60, 1, &[7; 100]));
        let mut r = Reassembler::new(LIMITS);
        let (delivered, failed, acked) = feed(&mut r, parts);
        assert_eq!(delivered, vec![bytes]);
        assert!(
            matches!(&failed[..], [ReassemblyError::TooLarge { .. }]),
            "{failed:?}"
        );
        assert_eq!(acked.len(), 6);
    }

    #[test]
    fn lists_a_bounded_number_of_missing_chunks() {
        let bytes = data(64 * 1024);
        let mut parts = chunks("a", &bytes, 1024);
        parts.truncate(1);
        parts.extend(chunks("b", &bytes[..10], 1024));
        let mut r = Reassembler::new(LIMITS);
        let (_, failed, _) = feed(&mut r, parts);
        let [
            ReassemblyError::Missing {
                missing,
                missing_count,
                count,
                ..
            },
        ] = &failed[..]
        else {
            panic!("{failed:?}");
        };
        assert_eq!((missing.len(), *missing_count, *count), (8, 63, 64));
        assert_eq!(missing[0], 1);
        assert!(failed[0].to_string().len() < 200, "{}", failed[0]);
    }
}
