//! [`VisionClassifier`]: the built-in image classifiers (`fedengine.vision`: SmallCnn,
//! ResNet18, ResNet34, ResNet50) and TorchScript packages, implemented through the authoring traits
//! and registered like an author's model.

use std::path::Path;
use std::sync::Arc;

use fl_data::Preprocessor;
use fl_tensor::TensorSet;
use fl_torch::{
    BUILTIN_MODULE, Classifier, HeadPlan, HyperParameters, LabelPlan, ModelError, Scored,
    WeightExchange,
};
use tch::{Tensor, nn};

use crate::auto_model::{AutoModel, FineTuneJob, FineTuneOutcome};
use crate::context::{DataSummary, DatasetDirs, ModelContext, ModelInit};
use crate::fedavg::{AutoFedAvgModel, EpochContext, Parts};
use crate::loader::{SampleLoader, image_batch, open_dataset, summary};
use crate::local::fine_tune_fedavg;

crate::register_model!(
    BUILTIN_MODULE,
    "SmallCnn",
    "two conv layers with BatchNorm; small images, fast tests",
    |init| Ok(Box::new(VisionClassifier::build(init)?))
);
crate::register_model!(
    BUILTIN_MODULE,
    "ResNet18",
    "torchvision resnet18 (same parameter names)",
    |init| Ok(Box::new(VisionClassifier::build(init)?))
);
crate::register_model!(
    BUILTIN_MODULE,
    "ResNet34",
    "torchvision resnet34 (same parameter names)",
    |init| Ok(Box::new(VisionClassifier::build(init)?))
);
crate::register_model!(
    BUILTIN_MODULE,
    "ResNet50",
    "torchvision resnet50 (same parameter names)",
    |init| Ok(Box::new(VisionClassifier::build(init)?))
);

/// A built-in or TorchScript image classifier with the package's preprocessing and
/// hyper-parameters (`config.json` plus the workflow's overrides): SGD or Adam, and the
/// declared learning-rate schedule (none by default) over the run-wide epoch.
pub struct VisionClassifier {
    context: ModelContext,
    classifier: Classifier,
    label_plan: LabelPlan,
    hp: HyperParameters,
    preprocessor: Arc<Preprocessor>,
    optimizer: Option<nn::Optimizer>,
    training: Option<SampleLoader>,
    validation: Option<SampleLoader>,
    testing: Option<SampleLoader>,
    seed: u64,
    workers: usize,
}

impl std::fmt::Debug for VisionClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisionClassifier")
            .field("classifier", &self.classifier)
            .field("hp", &self.hp)
            .finish_non_exhaustive()
    }
}

impl VisionClassifier {
    /// Builds the package's classifier for the context's labels, matched to the package's
    /// head by name under the `head` hyper-parameter (the context's labels become the plan's,
    /// which is logged when it is not simply the package's head).
    pub fn build(init: ModelInit) -> Result<Self, ModelError> {
        let hp = init.hyper_parameters()?;
        tch::set_num_threads(init.options.threads.max(1) as i32);
        let labels = (!init.context.labels.is_empty()).then_some(init.context.labels.as_slice());
        let (classifier, label_plan) =
            Classifier::from_package(&init.package, labels, hp.head, init.options.seed as i64)?;
        let preprocessor = Arc::new(
            Preprocessor::new(
                init.package.preprocessor.as_ref(),
                classifier.spec.in_channels as u32,
            )
            .with_cache(init.options.cache_bytes),
        );
        preprocessor.validate()?;
        let mut context = init.context;
        context.labels = classifier.labels.clone();
        if !matches!(&label_plan.head, HeadPlan::Keep { reordered: false, unused } if unused.is_empty())
        {
            context.logger.info(&label_plan.to_string());
        }
        Ok(Self {
            context,
            classifier,
            label_plan,
            hp,
            preprocessor,
            optimizer: None,
            training: None,
            validation: None,
            testing: None,
            seed: init.options.seed,
            workers: init.options.workers,
        })
    }

    /// How the task's labels met the package's head.
    pub fn label_plan(&self) -> &LabelPlan {
        &self.label_plan
    }

    /// The hyper-parameters in use.
    pub fn hyper_parameters(&self) -> &HyperParameters {
        &self.hp
    }

    fn loader(&self, data: Vec<fl_data::Sample>) -> Option<SampleLoader> {
        (!data.is_empty()).then(|| {
            SampleLoader::new(
                data,
                self.preprocessor.clone(),
                self.hp.batch_size,
                self.seed,
                self.workers,
            )
            .drop_last(self.hp.drop_last)
        })
    }
}

impl AutoModel for VisionClassifier {
    fn context(&self) -> &ModelContext {
        &self.context
    }

    fn context_mut(&mut self) -> &mut ModelContext {
        &mut self.context
    }

    fn forward(&mut self, batch: &Tensor) -> Result<Tensor, ModelError> {
        self.classifier.try_forward(batch, self.context.training)
    }

    fn predict_file(&mut self, image: &Path) -> Result<Vec<Scored>, ModelError> {
        let image = self.preprocessor.load(image, None)?;
        Ok(self
            .predict(&image_batch(&image))?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Batched: images of the same size share a forward pass.
    fn predict_files(
        &mut self,
        images: &[std::path::PathBuf],
        batch_size: usize,
    ) -> Vec<Result<Vec<Scored>, ModelError>> {
        let all = self.context.labels.len();
        fl_torch::predict(
            &self.classifier,
            &self.preprocessor,
            images,
            all,
            batch_size,
        )
        .into_iter()
        .map(|p| p.outcome)
        .collect()
    }

    /// Opens the directories with [`open_dataset`]: unusable samples are left out and
    /// reported in the task log; a sample whose label is not one of the task's, or a
    /// directory that is not a dataset, refuses the data.
    fn init_dataset(&mut self, dataset: &DatasetDirs) -> Result<DataSummary, String> {
        let data = open_dataset(dataset, &self.context.labels, &self.context.logger)?;
        let counts = summary(&data);
        self.training = self.loader(data.train);
        self.validation = self.loader(data.validation);
        self.testing = self.loader(data.test);
        Ok(counts)
    }

    fn fine_tune(&mut self, job: &FineTuneJob) -> Result<FineTuneOutcome, ModelError> {
        fine_tune_fedavg(self, job)
    }
}

impl AutoFedAvgModel for VisionClassifier {
    fn parts(&mut self) -> Parts<'_> {
        Parts {
            vs: self.classifier.var_store(),
            model: &self.classifier,
            optimizer: &mut self.optimizer,
            training: self.training.as_ref().map(|l| l as _),
            validation: self.validation.as_ref().map(|l| l as _),
            testing: self.testing.as_ref().map(|l| l as _),
        }
    }

    fn build_optimizer(&mut self) -> Result<nn::Optimizer, ModelError> {
        fl_torch::build_optimizer(&self.hp, self.classifier.var_store())
    }

    fn learning_rate(&self, epoch: &EpochContext) -> Option<f64> {
        Some(self.hp.learning_rate_at(epoch.run_epoch))
    }

    /// Every variable, a TorchScript module's buffers included.
    fn state_dict(&mut self) -> Result<TensorSet, ModelError> {
        self.classifier.weights()
    }

    /// Strictly: every variable, exact dtypes and shapes.
    fn load_state_dict(&mut self, state: &TensorSet) -> Result<(), ModelError> {
        self.classifier.load_weights(state)
    }

    fn save_weights(&mut self, path: &Path) -> Result<(), ModelError> {
        self.classifier.save_safetensors(path)
    }
}
