//! Image classification data for federated fine-tuning: datasets, preprocessing, batches.
//!
//! A dataset is a directory with an AlphaMed `annotation.json` (or a CVAT "for images 1.1"
//! `annotations.xml` export) and the images it names. [`Dataset::open`] checks every sample
//! and leaves out, never silently, the ones that cannot be used: each is counted by split
//! and reason in the [`DatasetReport`] (strict mode makes them an error). A
//! [`Preprocessor`] turns an image file into CHW `f32` values as a model package's
//! `preprocessor_config.json` says, and [`batches`] cuts a split into seeded, shuffled
//! batches decoded ahead of the consumer on worker threads:
//!
//! ```no_run
//! use std::sync::Arc;
//! use fl_data::{BatchOptions, Dataset, OpenOptions, Preprocessor, Split, batches};
//!
//! let dataset = Dataset::open("datasets/digits/central".as_ref(), &OpenOptions::default())?;
//! if dataset.report.total_skipped() > 0 {
//!     eprintln!("{}", dataset.report);
//! }
//! let preprocessor = Arc::new(Preprocessor::new(None, 1));
//! let options = BatchOptions { batch_size: 64, shuffle: true, augment: true, seed: 7, epoch: 0,
//!                              workers: 2, prefetch: 4 };
//! for batch in batches(dataset.split(Split::Train).to_vec(), preprocessor, options) {
//!     let batch = batch?;
//!     assert_eq!(batch.data.len(), batch.shape.iter().product::<usize>());
//! }
//! # Ok::<(), fl_data::DataError>(())
//! ```
//!
//! Everything random (data order, augmentation) is a pure function of `(seed, epoch)` and
//! the sample's index, so a run is reproducible whatever the number of threads. The crate
//! has no libtorch dependency: the `fl-torch` crate turns the `f32` buffers into tensors.

mod alphamed;
mod annotation;
mod augment;
mod batch;
mod cvat;
mod dataset;
mod error;
mod preprocess;
mod report;
mod rng;

pub use alphamed::ANNOTATION_JSON;
pub use annotation::MAX_ANNOTATION_BYTES;
pub use augment::AugmentKey;
pub use batch::{Batch, BatchOptions, Batches, batches};
pub use cvat::CVAT_XML;
pub use dataset::{Dataset, OpenOptions, Sample, find_annotation_file};
pub use error::DataError;
pub use preprocess::{Image, Preprocessor};
pub use report::{DatasetReport, MAX_EXAMPLES, SkipEntry, SkipReason, Split};
pub use rng::{SplitMix64, epoch_order};
