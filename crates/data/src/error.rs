//! The crate's error type: every failure a caller can act on, naming the file, the key and
//! what would be accepted.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why a dataset, an image or a batch could not be produced.
#[derive(Debug, Error)]
pub enum DataError {
    /// The dataset directory does not exist or is not a directory.
    #[error("dataset directory {}: {source}", dir.display())]
    Directory {
        /// The directory as given.
        dir: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The dataset directory holds no annotation file.
    #[error("dataset directory {} has no annotation file; accepted: {accepted}", dir.display())]
    NoAnnotationFile {
        /// The dataset directory.
        dir: PathBuf,
        /// The file names looked for, in order.
        accepted: &'static str,
    },
    /// A file could not be read.
    #[error("{}: cannot be read: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// An annotation file is larger than what is read whole.
    #[error("{}: is {size} bytes, larger than the {limit} bytes accepted for an annotation file", file.display())]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// An annotation file is not well-formed JSON or XML, or not UTF-8.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What the parser reported.
        message: String,
    },
    /// An annotation file is well-formed but a key holds something unusable.
    #[error("{}: `{key}` {problem}; expected {expected}", file.display())]
    Malformed {
        /// The file.
        file: PathBuf,
        /// Where in the file, e.g. `labels` or `Train[3].tags`.
        key: String,
        /// What was found, e.g. `is a number`.
        problem: String,
        /// What would be accepted.
        expected: String,
    },
    /// Strict mode: some samples cannot be used.
    #[error("{}: {skipped} samples cannot be used (strict mode refuses them all):\n{summary}", file.display())]
    Rejected {
        /// The annotation file.
        file: PathBuf,
        /// How many samples were refused.
        skipped: usize,
        /// The report, one line per split and reason.
        summary: String,
    },
    /// An image could not be decoded.
    #[error("{}: cannot be decoded as a PNG or JPEG image: {message}", file.display())]
    Decode {
        /// The image file.
        file: PathBuf,
        /// What the decoder reported.
        message: String,
    },
    /// An image held in memory could not be decoded.
    #[error("the image data cannot be decoded as a PNG or JPEG image: {message}")]
    DecodeBytes {
        /// What the decoder reported.
        message: String,
    },
    /// The preprocessor configuration does not fit the model's channel count.
    #[error(
        "preprocessor_config.json: `{key}` has {values} values but the model takes {channels}-channel images; expected 1 value or {channels}"
    )]
    ChannelMismatch {
        /// `image_mean` or `image_std`.
        key: &'static str,
        /// How many values the key has.
        values: usize,
        /// The model's channel count.
        channels: usize,
    },
    /// Images of different sizes ended up in one batch.
    #[error(
        "{}: is {}x{}x{} (CxHxW) after preprocessing but {} in the same batch is {}x{}x{}; set `size` in preprocessor_config.json so that every image is resized to one size",
        file.display(), shape[0], shape[1], shape[2], first.display(), first_shape[0], first_shape[1], first_shape[2]
    )]
    MixedSizes {
        /// The image that differs.
        file: PathBuf,
        /// Its shape, `[C, H, W]`.
        shape: [usize; 3],
        /// The batch's first image.
        first: PathBuf,
        /// Its shape, `[C, H, W]`.
        first_shape: [usize; 3],
    },
    /// Batch options that cannot work.
    #[error("batch options: `{key}` {problem}")]
    InvalidOptions {
        /// The option.
        key: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A decoding worker stopped without delivering its batch (it panicked).
    #[error("a data loading worker stopped unexpectedly before delivering batch {batch}")]
    WorkerStopped {
        /// The batch it was working on, or the next one expected.
        batch: usize,
    },
}
