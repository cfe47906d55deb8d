//! An example model author's crate: **LesionNet**, a skin-lesion style image classifier for
//! fedengine, written against the authoring API (`fl_model`) without changing the engine.
//!
//! - its own network ([`net::LesionNet`], tch) and preprocessing ([`images`]: grey, resize,
//!   per-image standardisation), configured from the package's `config.json`
//!   (`learning_rate`, `batch_size`, `momentum`) and `preprocessor_config.json` (`size`);
//! - `init_dataset` decodes every image once and refuses a dataset with too few samples or
//!   an unreadable image, naming it;
//! - an extra result file, `labels.md`: each label's description (from `config.json`'s
//!   `label_descriptions`) and the kept model's test accuracy per label;
//! - its own early-stopping rule: stop once validation accuracy reaches `config.json`'s
//!   `target_accuracy`, else fall back to the engine's rule.
//!
//! Registered as `entry_module: "acme.dermatology"`, `entry_class: "LesionNet"`;
//! `lesion-engine` is the engine binary with this crate linked in. See docs/AUTHORING.md.

pub mod images;
pub mod net;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fl_model::{
    AutoFedAvgModel, AutoModel, DataLoader, DataSummary, DatasetDirs, FineTuneJob, FineTuneOutcome,
    ModelContext, ModelError, ModelInit, Parts, Pass, ResultFile, Schedule, Scored,
    fine_tune_fedavg, open_dataset, summary,
};
use fl_package::Resize;
use fl_torch::read_params;
use serde_json::Value;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::images::{LesionImages, preprocess};
use crate::net::LesionNet;

/// The `entry_module` LesionNet is registered under.
pub const MODULE: &str = "acme.dermatology";
/// The `entry_class` LesionNet is registered under.
pub const CLASS: &str = "LesionNet";
/// The extra file LesionNet adds to `model.zip`.
pub const LABEL_REPORT: &str = "labels.md";
/// A split needs at least this many samples to be used.
pub const MIN_SAMPLES: usize = 10;

fl_model::register_model!(
    MODULE,
    CLASS,
    "example author model: residual CNN with its own preprocessing and stopping rule",
    |init| Ok(Box::new(Lesion::new(init)?))
);

/// LesionNet with its data, optimiser and settings.
pub struct Lesion {
    context: ModelContext,
    vs: nn::VarStore,
    net: LesionNet,
    optimizer: Option<nn::Optimizer>,
    training: Option<LesionImages>,
    validation: Option<LesionImages>,
    testing: Option<LesionImages>,
    learning_rate: f64,
    momentum: f64,
    batch_size: usize,
    size: u32,
    seed: u64,
    target_accuracy: f64,
    descriptions: serde_json::Map<String, Value>,
}

impl std::fmt::Debug for Lesion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lesion")
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

impl Lesion {
    /// Builds LesionNet for the task's labels from the package: its weights are loaded
    /// whole when the package has as many classes, otherwise every weight but the head.
    pub fn new(init: ModelInit) -> Result<Self, ModelError> {
        let config = init.config();
        let number =
            |key: &str, default: f64| config.get(key).and_then(Value::as_f64).unwrap_or(default);
        let hp = init.hyper_parameters()?;
        let size = match init
            .package
            .preprocessor
            .as_ref()
            .and_then(|p| p.resize.as_ref())
        {
            Some(Resize::Exact { height, .. }) => *height,
            Some(Resize::ShortestEdge(side)) => *side,
            None => 16,
        };
        let labels = init.context.labels.clone();
        tch::manual_seed(init.options.seed as i64);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = LesionNet::new(&vs.root(), labels.len() as i64);
        let tensors =
            read_params(&init.package.param_path).map_err(|source| ModelError::Params {
                path: init.package.param_path.clone(),
                source,
            })?;
        let keep: Vec<(String, Tensor)> = tensors
            .into_iter()
            .filter(|(name, tensor)| {
                !name.starts_with("head.") || tensor.size().first() == Some(&(labels.len() as i64))
            })
            .collect();
        let variables = vs.variables();
        tch::no_grad(|| {
            for (name, tensor) in &keep {
                let Some(variable) = variables.get(name) else {
                    return Err(ModelError::Model(format!(
                        "{}: `{name}` is not a LesionNet weight",
                        init.package.param_path.display()
                    )));
                };
                variable.shallow_clone().f_copy_(tensor)?;
            }
            Ok(())
        })?;
        vs.set_kind(Kind::Float);
        Ok(Self {
            context: init.context,
            vs,
            net,
            optimizer: None,
            training: None,
            validation: None,
            testing: None,
            learning_rate: hp.learning_rate,
            momentum: hp.momentum,
            batch_size: hp.batch_size,
            size,
            seed: init.options.seed,
            target_accuracy: number("target_accuracy", 1.0),
            descriptions: config
                .get("label_descriptions")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Decodes a split's images (labels already the task's); too few is a refusal.
    fn load_split(
        &self,
        split: &str,
        samples: &[fl_data::Sample],
    ) -> Result<Option<LesionImages>, String> {
        if samples.is_empty() {
            return Ok(None);
        }
        if samples.len() < MIN_SAMPLES {
            return Err(format!(
                "the {split} split has {} samples; LesionNet needs at least {MIN_SAMPLES}",
                samples.len()
            ));
        }
        let samples: Vec<(PathBuf, usize)> =
            samples.iter().map(|s| (s.path.clone(), s.label)).collect();
        LesionImages::load(&samples, self.size, self.batch_size, self.seed).map(Some)
    }
}

impl AutoModel for Lesion {
    fn context(&self) -> &ModelContext {
        &self.context
    }

    fn context_mut(&mut self) -> &mut ModelContext {
        &mut self.context
    }

    fn forward(&mut self, batch: &Tensor) -> Result<Tensor, ModelError> {
        Ok(nn::ModuleT::forward_t(
            &self.net,
            batch,
            self.context.training,
        ))
    }

    fn predict_file(&mut self, image: &Path) -> Result<Vec<Scored>, ModelError> {
        let side = self.size as i64;
        let values = preprocess(image, self.size).map_err(ModelError::Model)?;
        let xs = Tensor::from_slice(&values).view([1, 1, side, side]);
        Ok(self.predict(&xs)?.into_iter().next().unwrap_or_default())
    }

    fn init_dataset(&mut self, dataset: &DatasetDirs) -> Result<DataSummary, String> {
        let data = open_dataset(dataset, &self.context.labels, &self.context.logger)?;
        self.training = self.load_split("training", &data.train)?;
        self.validation = self.load_split("validation", &data.validation)?;
        self.testing = self.load_split("test", &data.test)?;
        let counts = summary(&data);
        self.push_log(&format!(
            "LesionNet: {} training, {} validation, {} test images at {}x{}",
            counts.train, counts.validation, counts.test, self.size, self.size
        ));
        Ok(counts)
    }

    fn fine_tune(&mut self, job: &FineTuneJob) -> Result<FineTuneOutcome, ModelError> {
        fine_tune_fedavg(self, job)
    }
}

impl AutoFedAvgModel for Lesion {
    fn parts(&mut self) -> Parts<'_> {
        Parts {
            vs: &self.vs,
            model: &self.net,
            optimizer: &mut self.optimizer,
            training: self.training.as_ref().map(|l| l as &dyn DataLoader),
            validation: self.validation.as_ref().map(|l| l as &dyn DataLoader),
            testing: self.testing.as_ref().map(|l| l as &dyn DataLoader),
        }
    }

    fn build_optimizer(&mut self) -> Result<nn::Optimizer, ModelError> {
        Ok(nn::Sgd {
            momentum: self.momentum,
            ..Default::default()
        }
        .build(&self.vs, self.learning_rate)?)
    }

    /// `labels.md`: every label, its description and the kept model's test accuracy on it.
    fn fine_tuned_files(&mut self, result_dir: &Path) -> Result<Vec<ResultFile>, ModelError> {
        let labels = self.context.labels.clone();
        let mut correct = vec![0u64; labels.len()];
        let mut total = vec![0u64; labels.len()];
        self.eval();
        if let Some(testing) = &self.testing {
            for batch in testing.batches(Pass::evaluation()) {
                let (xs, ys) = batch?;
                let predicted = tch::no_grad(|| nn::ModuleT::forward_t(&self.net, &xs, false))
                    .argmax(-1, false);
                let predicted = Vec::<i64>::try_from(predicted)?;
                let ys = Vec::<i64>::try_from(ys)?;
                for (p, y) in predicted.into_iter().zip(ys) {
                    total[y as usize] += 1;
                    correct[y as usize] += u64::from(p == y);
                }
            }
        }
        let mut text = String::from(
            "# Labels\n\n| class | label | description | test accuracy |\n|---|---|---|---|\n",
        );
        for (i, label) in labels.iter().enumerate() {
            let description = self
                .descriptions
                .get(label)
                .and_then(Value::as_str)
                .unwrap_or("");
            let accuracy = match total[i] {
                0 => "-".to_owned(),
                n => format!("{:.1}% of {n}", correct[i] as f64 * 100.0 / n as f64),
            };
            let _ = writeln!(text, "| {i} | {label} | {description} | {accuracy} |");
        }
        let file = result_dir.join(LABEL_REPORT);
        std::fs::write(&file, text).map_err(|source| ModelError::Io {
            path: file.clone(),
            source,
        })?;
        Ok(vec![ResultFile {
            path_in_zip: LABEL_REPORT.into(),
            file,
        }])
    }

    /// Stops as soon as the validation accuracy reaches `target_accuracy`; otherwise the
    /// engine's rule (max_rounds, patience).
    fn is_task_finished(&self, schedule: &Schedule) -> Option<String> {
        let accuracy = schedule
            .current()
            .and_then(|r| r.validation.as_ref())
            .and_then(|m| m.accuracy);
        match accuracy {
            Some(a) if a >= self.target_accuracy => Some(format!(
                "LesionNet rule: validation accuracy {:.1}% reached the target {:.1}%",
                a * 100.0,
                self.target_accuracy * 100.0
            )),
            _ => schedule.default_finished(),
        }
    }
}
