//! One owner per directory: a task's output directory and the coordinator service's work
//! directory are held by one process at a time.
//!
//! The owner holds an exclusive OS lock on `<dir>/.lock` (`flock`, through
//! [`File::try_lock`]) for as long as it runs, and writes into the file who it is: pid, host
//! and start time. The kernel releases the lock when the process ends however it ends, so a
//! lock file left by a killed process is stale by construction: the next owner takes it and
//! says whose it was. A second process refuses to start with the owner named, before it
//! changes anything in the directory. (Over NFS, `flock` is only as good as the server's
//! lock support.)

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The lock file's name in a locked directory.
pub const LOCK_FILE: &str = ".lock";

/// A held directory; dropping it releases the lock (the file stays, naming the last owner).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error(
        "{} is in use by {owner}: two processes writing one directory would replace each \
         other's files; wait for that one to end, stop it, or choose another directory",
        dir.display()
    )]
    Held {
        /// The directory.
        dir: PathBuf,
        /// Who holds it, as its lock file says.
        owner: String,
    },
    /// The lock file cannot be opened or written.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Locks `dir` (which must exist) for this process, as `role` (e.g. "the task `T`").
pub(crate) fn lock_dir(dir: &Path, role: &str) -> Result<DirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                owner: if owner.is_empty() {
                    "another process".into()
                } else {
                    owner.chars().take(200).collect()
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let mut previous = String::new();
    let _ = file.read_to_string(&mut previous);
    if !previous.trim().is_empty() {
        tracing::info!(
            "{}: the lock of {} (ended) is taken over",
            dir.display(),
            previous.trim()
        );
    }
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(
        file,
        "{role}: pid {} on host {} since unix time {since}",
        std::process::id(),
        host()
    )
    .map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(DirLock { _file: file })
}

/// This machine's host name.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_with_the_first_named_and_a_released_lock_is_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = lock_dir(dir.path(), "the task `a`").expect("first");
        let error = lock_dir(dir.path(), "the task `b`").expect_err("second refused");
        let text = error.to_string();
        assert!(
            text.contains(&format!("the task `a`: pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("in use by"), "{text}");
        drop(first);
        let _again = lock_dir(dir.path(), "the task `b`").expect("released, so taken");
        let file = std::fs::read_to_string(dir.path().join(LOCK_FILE)).expect("lock file");
        assert!(file.starts_with("the task `b`: pid "), "{file}");
    }
}
