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
mod tests;
