//! [`DataLoader`]: batches of one pass over a split, and [`SampleLoader`], the loader of
//! image datasets (`annotation.json` / CVAT) preprocessed per `preprocessor_config.json`.

use std::sync::Arc;

use fl_data::{BatchOptions, Preprocessor, Sample, batches};
use fl_torch::{ModelError, batch_tensors};
use tch::Tensor;

/// Which pass over a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// The run-wide epoch: keys shuffling and augmentation when training.
    pub epoch: u64,
    /// Training (shuffled, augmented) or evaluation (file order, as is).
    pub training: bool,
}

impl Pass {
    /// An evaluation pass.
    pub fn evaluation() -> Self {
        Self {
            epoch: 0,
            training: false,
        }
    }
}

/// A split's data as batches: images `[N, C, H, W]` (f32) and class indices `[N]` (i64,
/// into the task's labels).
pub trait DataLoader: Send + Sync {
    /// Samples per pass (a node's training count is its FedAvg weight).
    fn samples(&self) -> usize;

    /// The batches of one pass. A training pass must be a pure function of
    /// `(seed, pass.epoch)` for runs to be reproducible and resumable.
    fn batches(
        &self,
        pass: Pass,
    ) -> Box<dyn Iterator<Item = Result<(Tensor, Tensor), ModelError>> + '_>;
}

/// Image samples preprocessed by an [`fl_data::Preprocessor`], decoded ahead on worker
/// threads, shuffled and augmented by `(seed, epoch)` when training.
#[derive(Debug, Clone)]
pub struct SampleLoader {
    samples: Arc<[Sample]>,
    preprocessor: Arc<Preprocessor>,
    batch_size: usize,
    seed: u64,
    workers: usize,
}

impl SampleLoader {
    /// A loader of `samples` (labels index the task's labels).
    pub fn new(
        samples: impl Into<Arc<[Sample]>>,
        preprocessor: Arc<Preprocessor>,
        batch_size: usize,
        seed: u64,
        workers: usize,
    ) -> Self {
        Self {
            samples: samples.into(),
            preprocessor,
            batch_size: batch_size.max(1),
            seed,
            workers,
        }
    }

    /// The samples.
    pub fn sample_list(&self) -> &Arc<[Sample]> {
        &self.samples
    }
}

impl DataLoader for SampleLoader {
    fn samples(&self) -> usize {
        self.samples.len()
    }

    fn batches(
        &self,
        pass: Pass,
    ) -> Box<dyn Iterator<Item = Result<(Tensor, Tensor), ModelError>> + '_> {
        let options = BatchOptions {
            batch_size: self.batch_size,
            shuffle: pass.training,
            augment: pass.training,
            seed: self.seed,
            epoch: pass.epoch,
            workers: self.workers,
            prefetch: self.workers.max(1) * 2,
        };
        Box::new(
            batches(self.samples.clone(), self.preprocessor.clone(), options)
                .map(|batch| Ok(batch_tensors(&batch?))),
        )
    }
}
