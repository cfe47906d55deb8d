//! [`DataLoader`]: batches of one pass over a split; [`SampleLoader`], the loader of image
//! datasets (`annotation.json` / CVAT) preprocessed per `preprocessor_config.json`; and
//! [`open_dataset`], which finds a node's samples for `init_dataset`.

use std::sync::Arc;

use fl_data::{
    BatchOptions, Dataset, Image, LastBatch, OpenOptions, Preprocessor, Sample, batches,
};
use fl_torch::{ModelError, NodeData, batch_tensors};
use tch::Tensor;

use crate::context::{DataSummary, DatasetDirs, TaskLogger};

/// Opens a node's dataset directories as AlphaMed (`annotation.json`) or CVAT datasets, each
/// directory once however many splits it serves, and keeps the splits the node uses,
/// their labels re-indexed to the task's `labels`. Unusable samples are left out and
/// reported to `logger`; a directory that is not a dataset, or a sample whose label is not
/// one of the task's, is the error (what `init_dataset` answers with).
pub fn open_dataset(
    dirs: &DatasetDirs,
    labels: &[String],
    logger: &TaskLogger,
) -> Result<NodeData, String> {
    let mut data = NodeData::default();
    for dir in dirs.dirs() {
        let opened = Dataset::open(dir, &OpenOptions::default()).map_err(|e| e.to_string())?;
        if !opened.report.is_clean() {
            logger.warn(&format!(
                "samples left out of the data:\n{}: {}",
                dir.display(),
                opened.report
            ));
        }
        let node = NodeData::from_dataset(&opened, labels).map_err(|e| e.to_string())?;
        if dirs.train.as_ref() == Some(dir) {
            data.train = node.train;
        }
        if dirs.validation.as_ref() == Some(dir) {
            data.validation = node.validation;
        }
        if dirs.test.as_ref() == Some(dir) {
            data.test = node.test;
        }
    }
    Ok(data)
}

/// The sample counts of a node's data.
pub fn summary(data: &NodeData) -> DataSummary {
    DataSummary {
        train: data.train.len() as u64,
        validation: data.validation.len() as u64,
        test: data.test.len() as u64,
    }
}

/// A preprocessed image as a batch of one, `[1, C, H, W]`.
pub fn image_batch(image: &Image) -> Tensor {
    Tensor::from_slice(&image.data).view([
        1,
        image.channels as i64,
        image.height as i64,
        image.width as i64,
    ])
}

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
///
/// A training pass never ends on a batch of one sample (BatchNorm cannot normalise it): it
/// joins the batch before it, unless [`drop_last`](Self::drop_last) leaves a short last batch
/// out altogether. Evaluation passes keep every sample in `batch_size` batches.
#[derive(Debug, Clone)]
pub struct SampleLoader {
    samples: Arc<[Sample]>,
    preprocessor: Arc<Preprocessor>,
    batch_size: usize,
    seed: u64,
    workers: usize,
    training_last: LastBatch,
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
            training_last: LastBatch::MergeSingle,
        }
    }

    /// Leaves a training pass's last batch out when it is smaller than the batch size
    /// (PyTorch's `drop_last=True`; the `drop_last` hyper-parameter).
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.training_last = if drop {
            LastBatch::Drop
        } else {
            LastBatch::MergeSingle
        };
        self
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
            last_batch: if pass.training {
                self.training_last
            } else {
                LastBatch::Keep
            },
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
