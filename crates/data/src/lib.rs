//! Image classification data for federated fine-tuning: datasets, import, partition,
//! preprocessing, batches.
//!
//! [`import_dataset`] turns an ImageFolder tree (`SRC/<label>/<image>`) or a `path,label`
//! CSV file into a dataset directory with seeded, label-stratified Train, Validation and
//! Test splits; [`partition_dataset`] deals a dataset to `site-1` ... `site-N` (IID,
//! Dirichlet label skew or whole labels per site) for federated simulation. Both write
//! into a staging directory and leave nothing behind on error:
//!
//! ```no_run
//! use fl_data::{ImportOptions, PartitionOptions, PartitionScheme, SplitFractions,
//!               import_dataset, no_progress, partition_dataset};
//!
//! let options = ImportOptions { split: SplitFractions::parse("0.8,0.1,0.1")?, seed: 7,
//!                               ..ImportOptions::default() };
//! let report = import_dataset("raw/xray".as_ref(), "datasets/xray".as_ref(), &options,
//!                             &no_progress)?;
//! println!("{report}");
//! let options = PartitionOptions { scheme: PartitionScheme::Dirichlet { alpha: 0.5 },
//!                                  ..PartitionOptions::new(3) };
//! let report = partition_dataset("datasets/xray".as_ref(), "datasets/xray-3".as_ref(),
//!                                &options)?;
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A dataset is a directory with an AlphaMed `annotation.json` (or a CVAT "for images 1.1"
//! `annotations.xml` export) and the images it names. [`Dataset::open`] checks every sample
//! (decoding every image whole) and leaves out, never silently, the ones that cannot be used:
//! each is counted by split and reason in the [`DatasetReport`] (strict mode makes them an
//! error). A
//! [`Preprocessor`] turns an image file into CHW `f32` values as a model package's
//! `preprocessor_config.json` says, and [`batches`] cuts a split into seeded, shuffled
//! batches decoded ahead of the consumer on worker threads:
//!
//! ```no_run
//! use std::sync::Arc;
//! use fl_data::{BatchOptions, Dataset, LastBatch, OpenOptions, Preprocessor, Split, batches};
//!
//! let dataset = Dataset::open("datasets/digits/central".as_ref(), &OpenOptions::default())?;
//! if dataset.report.total_skipped() > 0 {
//!     eprintln!("{}", dataset.report);
//! }
//! let preprocessor = Arc::new(Preprocessor::new(None, 1));
//! let options = BatchOptions { batch_size: 64, last_batch: LastBatch::MergeSingle, shuffle: true,
//!                              augment: true, seed: 7, epoch: 0, workers: 2, prefetch: 4 };
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
mod csv;
mod cvat;
mod dataset;
mod deal;
mod dirichlet;
mod error;
mod fractions;
mod import;
mod import_report;
mod partition;
mod partition_report;
mod preprocess;
mod report;
mod resample;
mod rng;
mod source;
mod stratify;
mod table;
mod verify;
mod write;

pub use alphamed::ANNOTATION_JSON;
pub use annotation::MAX_ANNOTATION_BYTES;
pub use augment::AugmentKey;
pub use batch::{Batch, BatchOptions, Batches, LastBatch, batches};
pub use cvat::CVAT_XML;
pub use dataset::{Dataset, OpenOptions, Sample, find_annotation_file};
pub use error::DataError;
pub use fractions::SplitFractions;
pub use import::{ImportError, ImportOptions, import_dataset};
pub use import_report::{ImportReport, ImportSkipReason, SkippedFile, SourceKind};
pub use partition::{
    INITIATOR, MAX_DIRICHLET_ATTEMPTS, PartitionError, PartitionOptions, PartitionScheme,
    partition_dataset,
};
pub use partition_report::{PartitionReport, SiteShare};
pub use preprocess::{Image, Preprocessor};
pub use report::{DatasetReport, MAX_EXAMPLES, SkipEntry, SkipReason, Split, UndecodableImage};
pub use rng::{SplitMix64, epoch_order};
pub use verify::{ImageProblem, check_image_bytes};
pub use write::{ProgressFn, ProgressStage, no_progress};
