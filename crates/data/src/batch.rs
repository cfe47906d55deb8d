//! Seeded, prefetched batching: a per-epoch shuffle, batches decoded in parallel by worker
//! threads a bounded distance ahead of the consumer, delivered in order and identical
//! whatever the number of workers.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use crate::augment::AugmentKey;
use crate::dataset::Sample;
use crate::error::DataError;
use crate::preprocess::Preprocessor;
use crate::rng::epoch_order;

/// What becomes of an epoch's last batch when it is smaller than the batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LastBatch {
    /// It is a batch of its own (evaluation).
    #[default]
    Keep,
    /// It is a batch of its own, except a single sample, which joins the batch before it
    /// (training: BatchNorm in training mode cannot normalise one sample).
    MergeSingle,
    /// It is left out of the epoch (PyTorch's `drop_last=True`).
    Drop,
}

impl LastBatch {
    /// The number of batches of `len` samples in batches of `size`.
    pub fn count(self, len: usize, size: usize) -> usize {
        let size = size.max(1);
        match self {
            Self::Keep => len.div_ceil(size),
            Self::MergeSingle if size > 1 && len > size && len % size == 1 => len / size,
            Self::MergeSingle => len.div_ceil(size),
            Self::Drop => len / size,
        }
    }

    /// The sample positions `start..end` of batch `b` (of [`count`](Self::count)).
    pub fn range(self, len: usize, size: usize, b: usize) -> std::ops::Range<usize> {
        let size = size.max(1);
        let start = (b * size).min(len);
        let last = b + 1 == self.count(len, size);
        let end = if last && self == Self::MergeSingle {
            len
        } else {
            ((b + 1) * size).min(len)
        };
        start..end
    }
}

/// How to cut a split into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Samples per batch (the last batch may be smaller, as `last_batch` says); at least 1.
    pub batch_size: usize,
    /// What becomes of a last batch smaller than `batch_size`.
    pub last_batch: LastBatch,
    /// Shuffle the samples, by `(seed, epoch)`; off for evaluation.
    pub shuffle: bool,
    /// Apply the training-only random transforms, keyed by `(seed, epoch, sample index)`.
    pub augment: bool,
    /// The run's seed.
    pub seed: u64,
    /// The epoch, counted across the whole run so every epoch differs.
    pub epoch: u64,
    /// Decoding threads; 0 decodes in the consumer's thread, on demand.
    pub workers: usize,
    /// How many batches may be decoded ahead of the consumer (at least `workers`, so that
    /// every worker has one to work on).
    pub prefetch: usize,
}

impl Default for BatchOptions {
    /// Evaluation defaults: batches of 32, no shuffle, no augmentation, 2 workers, 4
    /// batches ahead.
    fn default() -> Self {
        Self {
            batch_size: 32,
            last_batch: LastBatch::Keep,
            shuffle: false,
            augment: false,
            seed: 0,
            epoch: 0,
            workers: 2,
            prefetch: 4,
        }
    }
}

/// A batch of preprocessed images and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `N * C * H * W` values, sample-major, each image CHW.
    pub data: Vec<f32>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// Class index of each image.
    pub labels: Vec<i64>,
    /// Each image's position in the sample slice given to [`batches`].
    pub indices: Vec<usize>,
}

/// Returns the batches of one epoch over `samples`. Decoding starts at once, on
/// `options.workers` threads; dropping the iterator stops them.
pub fn batches(
    samples: impl Into<Arc<[Sample]>>,
    preprocessor: Arc<Preprocessor>,
    options: BatchOptions,
) -> Batches {
    let samples: Arc<[Sample]> = samples.into();
    let valid = options.batch_size > 0;
    let order = if valid {
        epoch_order(samples.len(), options.shuffle, options.seed, options.epoch)
    } else {
        Vec::new()
    };
    let mut batches = Batches {
        total: options.last_batch.count(order.len(), options.batch_size),
        job: Arc::new(Job {
            order,
            samples,
            preprocessor,
            options,
        }),
        next: 0,
        first_error: (!valid).then_some(DataError::InvalidOptions {
            key: "batch_size",
            problem: "is 0; it must be at least 1",
        }),
        shared: Arc::new(Shared::default()),
        receiver: None,
        pending: BTreeMap::new(),
        workers: Vec::new(),
    };
    if options.workers > 0 && batches.total > 0 {
        let window = options.prefetch.max(options.workers);
        let (sender, receiver) = sync_channel(window);
        batches.receiver = Some(receiver);
        for _ in 0..options.workers.min(batches.total) {
            let (job, shared, sender) = (
                Arc::clone(&batches.job),
                Arc::clone(&batches.shared),
                sender.clone(),
            );
            let total = batches.total;
            let spawned = thread::Builder::new()
                .name("fl-data-worker".into())
                .spawn(move || work(&job, &shared, &sender, total, window));
            match spawned {
                Ok(handle) => batches.workers.push(handle),
                // Fewer workers (or none: decode on demand) rather than a panic.
                Err(_) => break,
            }
        }
        if batches.workers.is_empty() {
            batches.receiver = None;
        }
    }
    batches
}

/// Everything a worker needs, shared read-only.
#[derive(Debug)]
struct Job {
    samples: Arc<[Sample]>,
    preprocessor: Arc<Preprocessor>,
    options: BatchOptions,
    /// This epoch's visiting order.
    order: Vec<usize>,
}

impl Job {
    /// Decodes batch `b`.
    fn build(&self, b: usize) -> Result<Batch, DataError> {
        let range = self
            .options
            .last_batch
            .range(self.order.len(), self.options.batch_size, b);
        let positions = &self.order[range];
        let mut data = Vec::new();
        let mut shape = [positions.len(), 0, 0, 0];
        let mut labels = Vec::with_capacity(positions.len());
        for (k, &index) in positions.iter().enumerate() {
            let sample = &self.samples[index];
            let key = self.options.augment.then_some(AugmentKey {
                seed: self.options.seed,
                epoch: self.options.epoch,
                index: index as u64,
            });
            let image = self.preprocessor.load(&sample.path, key)?;
            if k == 0 {
                [shape[1], shape[2], shape[3]] = image.shape();
                data.reserve_exact(positions.len() * image.data.len());
            } else if image.shape() != [shape[1], shape[2], shape[3]] {
                return Err(DataError::MixedSizes {
                    file: sample.path.clone(),
                    shape: image.shape(),
                    first: self.samples[positions[0]].path.clone(),
                    first_shape: [shape[1], shape[2], shape[3]],
                });
            }
            data.extend_from_slice(&image.data);
            labels.push(sample.label as i64);
        }
        Ok(Batch {
            data,
            shape,
            labels,
            indices: positions.to_vec(),
        })
    }
}

/// Coordination between the consumer and the workers.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The next batch a worker may claim.
    next_claim: usize,
    /// How many batches the consumer has taken.
    consumed: usize,
    /// Set when the iterator is dropped.
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type Delivery = (usize, Result<Batch, DataError>);

/// A worker: claims the next batch within `window` of the consumer, decodes it, sends it.
fn work(job: &Job, shared: &Shared, sender: &SyncSender<Delivery>, total: usize, window: usize) {
    loop {
        let b = {
            let mut state = shared.lock();
            loop {
                if state.stop || state.next_claim >= total {
                    return;
                }
                if state.next_claim < state.consumed + window {
                    break;
                }
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.next_claim += 1;
            state.next_claim - 1
        };
        // A panic must not leave the consumer waiting for a batch that never comes.
        let result = catch_unwind(AssertUnwindSafe(|| job.build(b)))
            .unwrap_or(Err(DataError::WorkerStopped { batch: b }));
        if sender.send((b, result)).is_err() {
            return;
        }
    }
}

/// The batches of one epoch, in order. See [`batches`].
#[derive(Debug)]
pub struct Batches {
    job: Arc<Job>,
    total: usize,
    /// The next batch to yield.
    next: usize,
    first_error: Option<DataError>,
    shared: Arc<Shared>,
    receiver: Option<Receiver<Delivery>>,
    /// Batches that arrived ahead of their turn.
    pending: BTreeMap<usize, Result<Batch, DataError>>,
    workers: Vec<JoinHandle<()>>,
}

impl Batches {
    /// Returns how many batches the epoch has in all.
    pub fn total(&self) -> usize {
        self.total
    }

    fn take_next(&mut self) -> Result<Batch, DataError> {
        let b = self.next;
        let Some(receiver) = &self.receiver else {
            return self.job.build(b);
        };
        loop {
            if let Some(result) = self.pending.remove(&b) {
                return result;
            }
            match receiver.recv() {
                Ok((index, result)) => {
                    self.pending.insert(index, result);
                }
                Err(_) => {
                    // Every worker is gone without delivering `b`: nothing more will come.
                    self.total = b + 1;
                    return Err(DataError::WorkerStopped { batch: b });
                }
            }
        }
    }
}

impl Iterator for Batches {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.first_error.take() {
            return Some(Err(error));
        }
        if self.next >= self.total {
            return None;
        }
        let result = self.take_next();
        self.next += 1;
        if self.receiver.is_some() {
            self.shared.lock().consumed = self.next;
            self.shared.changed.notify_all();
        }
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.total - self.next.min(self.total) + usize::from(self.first_error.is_some());
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches {}

impl Drop for Batches {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        // Workers blocked on a full channel wake up with an error once it is gone.
        self.receiver = None;
        for worker in self.workers.drain(..) {
            // A worker finishes at most the batch in hand; a panic was already reported.
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_batch_of_one_joins_the_one_before_or_is_dropped() {
        let sizes = |last: LastBatch, len: usize, size: usize| -> Vec<usize> {
            (0..last.count(len, size))
                .map(|b| last.range(len, size, b).len())
                .collect()
        };
        assert_eq!(sizes(LastBatch::Keep, 65, 32), [32, 32, 1]);
        assert_eq!(sizes(LastBatch::MergeSingle, 65, 32), [32, 33]);
        assert_eq!(sizes(LastBatch::MergeSingle, 66, 32), [32, 32, 2]);
        assert_eq!(sizes(LastBatch::MergeSingle, 1, 32), [1], "nothing to join");
        assert_eq!(
            sizes(LastBatch::MergeSingle, 7, 1),
            [1; 7],
            "batch size 1 as asked"
        );
        assert_eq!(sizes(LastBatch::Drop, 65, 32), [32, 32]);
        assert_eq!(sizes(LastBatch::Drop, 20, 32), Vec::<usize>::new());
        // Every sample once, in order, for each rule.
        for last in [LastBatch::Keep, LastBatch::MergeSingle] {
            let covered: Vec<usize> = (0..last.count(97, 8))
                .flat_map(|b| last.range(97, 8, b))
                .collect();
            assert_eq!(covered, (0..97).collect::<Vec<_>>());
        }
    }
    use std::time::{Duration, Instant};

    fn claimed(b: &Batches) -> usize {
        b.shared.lock().next_claim
    }

    /// Waits until `n` batches are claimed and stay so; fails after two seconds.
    fn settle(b: &Batches, n: usize) {
        let start = Instant::now();
        while claimed(b) < n {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "only {} claimed",
                claimed(b)
            );
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(50));
        assert_eq!(claimed(b), n, "workers went past the prefetch window");
    }

    #[test]
    fn workers_stay_a_bounded_window_ahead_of_the_consumer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let samples: Vec<Sample> = (0..20)
            .map(|i| {
                let path = dir.path().join(format!("{i}.png"));
                image::GrayImage::new(2, 2).save(&path).expect("png");
                Sample { path, label: 0 }
            })
            .collect();
        let options = BatchOptions {
            batch_size: 2,
            workers: 2,
            prefetch: 3,
            ..BatchOptions::default()
        };
        let mut it = batches(samples, Arc::new(Preprocessor::new(None, 1)), options);
        assert_eq!(it.total(), 10);
        // Decoding runs ahead before anything is asked for, but only `prefetch` batches.
        settle(&it, 3);
        assert!(it.next().is_some_and(|b| b.is_ok()));
        settle(&it, 4);
        let rest: Vec<_> = it.by_ref().collect();
        assert_eq!(rest.len(), 9);
        assert_eq!(claimed(&it), 10);
    }
}
