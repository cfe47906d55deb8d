//! The on-disk log of a round's accepted updates, one file per sender.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::codec::{CodecError, decode_view};
use crate::envelope::Body;

/// The longest file stem a node id may encode to (file names are limited to 255 bytes).
const MAX_STEM: usize = 200;
const EXTENSION: &str = ".msgpack";
const TEMP_SUFFIX: &str = ".tmp";

/// Why the spool could not write, read or list its files.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file-system operation failed.
    #[error("update spool: cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`write`, `read`, `list`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A spooled file does not decode any more.
    #[error("update spool: {path} cannot be read back: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What decoding found.
        source: CodecError,
    },
    /// A spooled file holds another kind of message than an update.
    #[error("update spool: {path} holds a `{kind}` message, not an update")]
    NotAnUpdate {
        /// The file.
        path: PathBuf,
        /// The message's kind.
        kind: &'static str,
    },
    /// A spooled file's sender is not the one its name encodes.
    #[error(
        "update spool: {path} holds an update from `{sender}`, not from the node its name says"
    )]
    SenderMismatch {
        /// The file.
        path: PathBuf,
        /// The sender inside.
        sender: String,
    },
    /// A node id that cannot name a file (empty, or too long once escaped).
    #[error(
        "update spool: node id `{sender}` cannot name a spool file (it must be non-empty and at most {MAX_STEM} bytes once escaped)"
    )]
    SenderName {
        /// The node id.
        sender: String,
    },
    /// The sender already has an update in the spool.
    #[error("update spool: `{sender}` already has an update in {dir}")]
    Exists {
        /// The node id.
        sender: String,
        /// The spool directory.
        dir: PathBuf,
    },
}

/// One spooled update: who sent it, its sample count and its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolEntry {
    sender: String,
    samples: u64,
    path: PathBuf,
}

impl SpoolEntry {
    /// Returns the sender's node id.
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// Returns the sample count the update declares.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Returns the file holding the encoded envelope.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A round directory holding each accepted update as its encoded envelope bytes.
///
/// Files are named after the sender (`hospital-a.msgpack`; bytes other than ASCII letters,
/// digits, `-` and `_` are written `%XX`), and written to a temporary name, synced, renamed
/// and the directory synced, so a file that exists is complete. Only names and sample counts
/// are kept in memory. The directory doubles as the round's crash-recovery log:
/// [`UpdateSpool::open`] lists what an earlier process left. One process owns a round
/// directory at a time.
#[derive(Debug)]
pub struct UpdateSpool {
    dir: PathBuf,
    entries: BTreeMap<String, SpoolEntry>,
}

impl UpdateSpool {
    /// Opens (creating it if needed) a round directory and lists its updates.
    ///
    /// Each `*.msgpack` file is read and decoded (checksums included) one at a time; a file
    /// that does not decode, is not an update, or whose sender is not the one its name
    /// encodes is an error. Temporary files left by an interrupted write are removed; files
    /// with other names are ignored.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, SpoolError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        let mut entries = BTreeMap::new();
        let listing = fs::read_dir(&dir).map_err(io_error("list", &dir))?;
        for item in listing {
            let item = item.map_err(io_error("list", &dir))?;
            let path = item.path();
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.ends_with(TEMP_SUFFIX) && name.contains(EXTENSION) {
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
                continue;
            }
            let Some(stem) = name.strip_suffix(EXTENSION) else {
                continue;
            };
            let Some(sender) = decode_stem(stem) else {
                continue;
            };
            let entry = read_entry(&path, &sender)?;
            entries.insert(sender, entry);
        }
        Ok(UpdateSpool { dir, entries })
    }

    /// Returns the round directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the spooled updates, sorted by sender (byte-wise).
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &SpoolEntry> {
        self.entries.values()
    }

    /// Returns the spooled update of a sender.
    pub fn get(&self, sender: &str) -> Option<&SpoolEntry> {
        self.entries.get(sender)
    }

    /// Returns the number of spooled updates.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tells whether nothing is spooled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Durably writes a sender's encoded update; the caller has checked it.
    pub fn write(
        &mut self,
        sender: &str,
        samples: u64,
        bytes: &[u8],
    ) -> Result<&SpoolEntry, SpoolError> {
        let stem = encode_stem(sender)?;
        if self.entries.contains_key(sender) {
            return Err(SpoolError::Exists {
                sender: sender.to_owned(),
                dir: self.dir.clone(),
            });
        }
        let path = self.dir.join(format!("{stem}{EXTENSION}"));
        let temp = self.dir.join(format!("{stem}{EXTENSION}{TEMP_SUFFIX}"));
        let written = write_synced(&temp, bytes)
            .map_err(io_error("write", &temp))
            .and_then(|()| fs::rename(&temp, &path).map_err(io_error("rename", &temp)))
            .and_then(|()| sync_dir(&self.dir).map_err(io_error("sync", &self.dir)));
        if let Err(error) = written {
            let _ = fs::remove_file(&temp);
            return Err(error);
        }
        let entry = SpoolEntry {
            sender: sender.to_owned(),
            samples,
            path,
        };
        Ok(self.entries.entry(sender.to_owned()).or_insert(entry))
    }

    /// Reads a spooled update's bytes back.
    pub fn read(&self, entry: &SpoolEntry) -> Result<Vec<u8>, SpoolError> {
        fs::read(&entry.path).map_err(io_error("read", &entry.path))
    }

    /// Checks that a node id can name a spool file.
    pub fn check_sender(sender: &str) -> Result<(), SpoolError> {
        encode_stem(sender).map(drop)
    }
}

fn read_entry(path: &Path, sender: &str) -> Result<SpoolEntry, SpoolError> {
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    let envelope = decode_view(&bytes).map_err(|source| SpoolError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    let Body::Update { samples, .. } = envelope.body else {
        return Err(SpoolError::NotAnUpdate {
            path: path.to_path_buf(),
            kind: envelope.body.kind(),
        });
    };
    if envelope.sender != sender {
        return Err(SpoolError::SenderMismatch {
            path: path.to_path_buf(),
            sender: envelope.sender,
        });
    }
    Ok(SpoolEntry {
        sender: sender.to_owned(),
        samples,
        path: path.to_path_buf(),
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

fn io_error<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> SpoolError + 'p {
    move |source| SpoolError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// Escapes a node id into a file stem: `[A-Za-z0-9_-]` kept, every other byte `%XX`.
fn encode_stem(sender: &str) -> Result<String, SpoolError> {
    let mut stem = String::with_capacity(sender.len());
    for byte in sender.bytes() {
        if is_plain(byte) {
            stem.push(char::from(byte));
        } else {
            stem.push_str(&format!("%{byte:02X}"));
        }
    }
    if stem.is_empty() || stem.len() > MAX_STEM {
        return Err(SpoolError::SenderName {
            sender: sender.to_owned(),
        });
    }
    Ok(stem)
}

/// Reverses [`encode_stem`]; `None` for a name it would not have written.
fn decode_stem(stem: &str) -> Option<String> {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                let byte = u8::from_str_radix(hex, 16).ok()?;
                if is_plain(byte) || hex.bytes().any(|b| b.is_ascii_lowercase()) {
                    return None;
                }
                out.push(byte);
                i += 3;
            }
            byte if is_plain(byte) => {
                out.push(byte);
                i += 1;
            }
            _ => return None,
        }
    }
    let sender = String::from_utf8(out).ok()?;
    (!sender.is_empty()).then_some(sender)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::envelope::{Envelope, Metrics};
    use crate::set::TensorSet;
    use crate::tensor::NamedTensor;

    fn update(sender: &str, samples: u64) -> Vec<u8> {
        let tensors = TensorSet::new(vec![
            NamedTensor::from_f32("w", vec![2], &[1.0, 2.0]).unwrap(),
        ])
        .unwrap();
        Envelope::new(
            "t",
            0,
            sender,
            Body::Update {
                samples,
                base_digest: Digest::from_bytes([0; 32]),
                metrics: Metrics::default(),
                tensors,
            },
        )
        .encode()
        .unwrap()
    }

    #[test]
    fn node_ids_escape_to_safe_reversible_names() {
        for sender in [
            "hospital-a",
            "node_7",
            "a/b",
            "../x",
            "é clinic",
            "%41",
            ".hidden",
        ] {
            let stem = encode_stem(sender).unwrap();
            assert!(stem.bytes().all(|b| is_plain(b) || b == b'%'), "{stem}");
            assert_eq!(decode_stem(&stem).as_deref(), Some(sender));
        }
        assert_eq!(encode_stem("a/b").unwrap(), "a%2Fb");
        assert!(encode_stem("").is_err());
        assert!(encode_stem(&"/".repeat(100)).is_err());
        assert_eq!(decode_stem("a%2f"), None, "only the spelling we write");
        assert_eq!(decode_stem("a%41"), None);
        assert_eq!(decode_stem("a.b"), None);
    }

    #[test]
    fn writes_are_listed_again_by_a_new_process_and_temp_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let round = dir.path().join("round-3");
        let mut spool = UpdateSpool::open(&round).unwrap();
        assert!(spool.is_empty());
        spool.write("b/node", 7, &update("b/node", 7)).unwrap();
        spool.write("a", 5, &update("a", 5)).unwrap();
        assert!(matches!(
            spool.write("a", 5, &update("a", 5)),
            Err(SpoolError::Exists { .. })
        ));
        assert!(round.join("b%2Fnode.msgpack").is_file());
        fs::write(round.join("c.msgpack.tmp"), b"half-written").unwrap();
        fs::write(round.join("notes.txt"), b"not ours").unwrap();

        let reopened = UpdateSpool::open(&round).unwrap();
        let listed: Vec<(&str, u64)> = reopened
            .entries()
            .map(|e| (e.sender(), e.samples()))
            .collect();
        assert_eq!(listed, [("a", 5), ("b/node", 7)]);
        assert!(
            !round.join("c.msgpack.tmp").exists(),
            "stale temporary file removed"
        );
        assert!(
            round.join("notes.txt").exists(),
            "foreign files are left alone"
        );
        let entry = reopened.get("a").unwrap();
        assert_eq!(reopened.read(entry).unwrap(), update("a", 5));
    }

    #[test]
    fn damaged_or_misnamed_files_are_errors_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = update("a", 5);
        let at = bytes.len() - 3; // inside the tensor data
        bytes[at] ^= 1;
        fs::write(dir.path().join("a.msgpack"), &bytes).unwrap();
        assert!(matches!(
            UpdateSpool::open(dir.path()),
            Err(SpoolError::Corrupt { .. })
        ));

        fs::write(dir.path().join("a.msgpack"), update("z", 5)).unwrap();
        match UpdateSpool::open(dir.path()) {
            Err(SpoolError::SenderMismatch { sender, .. }) => assert_eq!(sender, "z"),
            other => panic!("expected a sender mismatch, got {other:?}"),
        }
    }
}
