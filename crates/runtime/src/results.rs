//! The Packager's work: a federated task's results written as two archives.
//!
//! - `model.zip`: the fine-tuned package (a valid package itself, written by
//!   [`fl_package::write_model_zip`]): the best round's weights as `model.safetensors`,
//!   `config.json` labels rewritten, the Model Card's front matter kept as written and a
//!   "Federated fine-tuning" section ([`card_appendix`]) appended to its body.
//! - `report.zip`: everything a user reads after the task: the TensorBoard run directories
//!   under `tensorboard/`, `metrics.json`, `task.log` and `summary.json` (the
//!   [`FederationSummary`]).
//!
//! Both are written atomically (temporary file, fsync, rename), so a reader never sees a
//! partial archive and a crash leaves at most a `*.partial` file, which the next run replaces.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use fl_package::{ModelPackage, ResultError, ResultSpec, write_model_zip};
use fl_tensor::Metrics;
use serde::{Deserialize, Serialize};

use zip::write::SimpleFileOptions;

use crate::RuntimeError;
use crate::settings::EffectiveSettings;

/// The model archive's file name in the output directory.
pub const MODEL_ZIP: &str = "model.zip";
/// The report archive's file name in the output directory.
pub const REPORT_ZIP: &str = "report.zip";
/// The summary's entry name inside `report.zip`.
pub const SUMMARY_FILE: &str = "summary.json";
/// The folder of the TensorBoard run directories inside `report.zip`.
pub const TENSORBOARD_DIR: &str = "tensorboard";
/// The weights' file name inside `model.zip`.
pub const WEIGHTS_NAME: &str = "model.safetensors";

/// One participant's share of the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantSummary {
    /// The node id.
    pub node: String,
    /// Its training samples (the FedAvg weight when weighting by samples).
    pub samples: u64,
    /// Rounds whose aggregate included its update.
    pub rounds_contributed: u32,
}

/// What happened in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSummary {
    /// The round (1-based).
    pub round: u64,
    /// Nodes whose updates were aggregated.
    pub participants: Vec<String>,
    /// Nodes that were asked but did not deliver (or were rejected).
    pub dropped: Vec<String>,
    /// Sample-weighted mean training loss of the aggregated updates.
    pub train_loss: Option<f64>,
    /// Validation accuracy of the aggregated model, in `[0, 1]`.
    pub validation_accuracy: Option<f64>,
    /// Test accuracy of the aggregated model, in `[0, 1]`.
    pub test_accuracy: Option<f64>,
    /// Wall-clock duration of the round.
    pub seconds: f64,
}

/// A federated task's outcome, as shown in the Model Card and stored as `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederationSummary {
    /// The task id.
    pub task: String,
    /// Rounds actually run.
    pub rounds_run: u64,
    /// Rounds the workflow allowed.
    pub max_rounds: u64,
    /// Whether early stopping ended the task before `max_rounds`.
    pub stopped_early: bool,
    /// The round whose model was kept (0: none, e.g. no round completed).
    pub best_round: u64,
    /// Validation metrics of the kept model.
    pub best_validation: Option<Metrics>,
    /// Test metrics of the kept model.
    pub final_test: Option<Metrics>,
    /// Every training participant.
    pub participants: Vec<ParticipantSummary>,
    /// Every round run, in order.
    pub rounds: Vec<RoundSummary>,
    /// The workflow's seed.
    pub seed: u64,
    /// The effective workflow's digest (`fl_workflow::Workflow::digest`).
    pub workflow_digest: String,
    /// How updates were weighted (`samples`, `equal`, ...).
    pub weighting: String,
    /// Every hyper-parameter the task trained with and where it came from (absent in
    /// summaries written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<EffectiveSettings>,
}

/// The two archives [`write_results`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFiles {
    /// `model.zip`: the fine-tuned package.
    pub model_zip: PathBuf,
    /// `report.zip`: TensorBoard runs, metrics, task log and summary.
    pub report_zip: PathBuf,
}

/// Markdown appended to the Model Card body: a "Federated fine-tuning" section with the
/// summary (rounds run of max, early stop, participants and their sample counts, best
/// validation and final test metrics, seed, workflow digest, weighting) and a per-round table.
pub fn card_appendix(summary: &FederationSummary) -> String {
    let mut text = String::from("## Federated fine-tuning\n\n");
    let total: u64 = summary.participants.iter().map(|p| p.samples).sum();
    let ending = if summary.stopped_early {
        "stopped early when validation stopped improving"
    } else {
        "no early stop"
    };
    let _ = write!(
        text,
        "Fine-tuned federatedly (FedAvg) by fedengine in task `{}`: {} of at most {} rounds \
         run ({ending}), {} participant(s) with {total} training samples in all.\n\n",
        code_text(&summary.task),
        summary.rounds_run,
        summary.max_rounds,
        summary.participants.len(),
    );

    text.push_str("| | value |\n|---|---|\n");
    let best_round = if summary.best_round == 0 {
        "-".to_owned()
    } else {
        summary.best_round.to_string()
    };
    let rows = [
        (
            "rounds run",
            format!("{} of {}", summary.rounds_run, summary.max_rounds),
        ),
        ("stopped early", yes_no(summary.stopped_early).to_owned()),
        ("best round", best_round),
        (
            "best validation",
            metrics_text(summary.best_validation.as_ref()),
        ),
        ("final test", metrics_text(summary.final_test.as_ref())),
        ("seed", summary.seed.to_string()),
        (
            "workflow digest",
            format!("`{}`", code_text(&summary.workflow_digest)),
        ),
        ("weighting", cell(&summary.weighting)),
    ];
    for (key, value) in rows {
        let _ = writeln!(text, "| {key} | {value} |");
    }

    if let Some(settings) = &summary.settings {
        text.push_str("\n### Training settings\n\n");
        text.push_str("| setting | value | from |\n|---|---|---|\n");
        for s in &settings.hyper_parameters {
            let _ = writeln!(
                text,
                "| `{}` | {} | {} |",
                s.key,
                cell(&s.shown()),
                s.source
            );
        }
        let _ = writeln!(
            text,
            "| augmentation | {} | preprocessor_config.json |",
            cell(&settings.augmentation)
        );
        let _ = writeln!(
            text,
            "| `merge_epochs` | {} | workflow |",
            settings.merge_epochs
        );
    }

    text.push_str("\n### Participants\n\n");
    text.push_str("| node | samples | rounds contributed |\n|---|---|---|\n");
    for p in &summary.participants {
        let _ = writeln!(
            text,
            "| {} | {} | {} |",
            cell(&p.node),
            p.samples,
            p.rounds_contributed
        );
    }

    text.push_str("\n### Rounds\n\n");
    text.push_str(
        "| round | participants | dropped | train loss | validation accuracy | test accuracy | seconds |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in &summary.rounds {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            r.round,
            node_list(&r.participants),
            node_list(&r.dropped),
            r.train_loss
                .map_or_else(|| "-".to_owned(), |l| format!("{l:.4}")),
            percent(r.validation_accuracy),
            percent(r.test_accuracy),
            r.seconds,
        );
    }
    text
}

/// Writes `out/model.zip` and `out/report.zip` (see the module documentation) and returns
/// their paths.
///
/// `model.zip` is the package with `best_weights` as `model.safetensors`, `labels` as its
/// `id2label`/`label2id`, [`card_appendix`] appended to the Model Card and the model's
/// `extra_files` (its `fine_tuned_files`). `report.zip` holds
/// every regular file under `tensorboard_dir` at its relative path under `tensorboard/`,
/// `metrics.json` and `task.log` when they exist, and `summary.json`. Event writers and the
/// task log should be flushed (or closed) first: files are copied as they are at the call.
/// A missing `tensorboard_dir` contributes nothing. Each archive is written to a
/// `*.partial` file, synced and renamed into place; on failure the partial file is removed.
#[allow(clippy::too_many_arguments)]
pub fn write_results(
    out: &Path,
    package: &ModelPackage,
    best_weights: &Path,
    labels: &[String],
    summary: &FederationSummary,
    tensorboard_dir: &Path,
    metrics: &Path,
    task_log: &Path,
    extra_files: &[(String, Vec<u8>)],
) -> Result<ResultFiles, RuntimeError> {
    fs::create_dir_all(out).map_err(|e| RuntimeError::from(output(out, e)))?;
    let model_zip = out.join(MODEL_ZIP);
    let report_zip = out.join(REPORT_ZIP);

    let spec = ResultSpec {
        source: package,
        weights: best_weights,
        weights_name: WEIGHTS_NAME,
        labels,
        config_updates: summary
            .settings
            .as_ref()
            .map(EffectiveSettings::config_json)
            .unwrap_or_default(),
        card_appendix: Some(card_appendix(summary)),
        federated: Some(true),
        extra_files,
    };
    if let Err(error) = write_model_zip(&spec, &model_zip) {
        let _ = fs::remove_file(partial_path(&model_zip));
        return Err(from_result_error(&model_zip, error));
    }

    let partial = partial_path(&report_zip);
    if let Err(error) = write_report(&partial, summary, tensorboard_dir, metrics, task_log)
        .and_then(|()| fs::rename(&partial, &report_zip).map_err(|e| output(&report_zip, e)))
    {
        let _ = fs::remove_file(&partial);
        return Err(error.into());
    }
    sync_dir(out);
    Ok(ResultFiles {
        model_zip,
        report_zip,
    })
}

/// Writes the report archive at `path` and syncs it.
fn write_report(
    path: &Path,
    summary: &FederationSummary,
    tensorboard_dir: &Path,
    metrics: &Path,
    task_log: &Path,
) -> Result<(), OutputError> {
    let zip_err = |e: zip::result::ZipError| OutputError {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::create(path).map_err(|e| output(path, e))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);

    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    if tensorboard_dir.is_dir() {
        let mut files = Vec::new();
        collect_files(tensorboard_dir, Path::new(""), &mut files)?;
        files.sort();
        for relative in files {
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            entries.push((
                format!("{TENSORBOARD_DIR}/{name}"),
                tensorboard_dir.join(relative),
            ));
        }
    }
    for (name, source) in [
        (fl_telemetry::METRICS_FILE, metrics),
        (fl_telemetry::TASK_LOG_FILE, task_log),
    ] {
        if source.is_file() {
            entries.push((name.to_owned(), source.to_path_buf()));
        }
    }

    for (name, source) in entries {
        let mut input = File::open(&source).map_err(|e| output(&source, e))?;
        let len = input.metadata().map_err(|e| output(&source, e))?.len();
        zip.start_file(name, options.large_file(len >= u64::from(u32::MAX)))
            .map_err(zip_err)?;
        io::copy(&mut input, &mut zip).map_err(|e| output(&source, e))?;
    }

    let json = serde_json::to_vec_pretty(summary).map_err(|e| OutputError {
        path: path.to_path_buf(),
        message: format!("{SUMMARY_FILE}: {e}"),
    })?;
    zip.start_file(SUMMARY_FILE, options).map_err(zip_err)?;
    zip.write_all(&json).map_err(|e| output(path, e))?;
    zip.write_all(b"\n").map_err(|e| output(path, e))?;

    let writer = zip.finish().map_err(zip_err)?;
    let file = writer
        .into_inner()
        .map_err(|e| output(path, e.into_error()))?;
    file.sync_all().map_err(|e| output(path, e))?;
    Ok(())
}

/// Lists the regular files under `root.join(relative)` as paths relative to `root`, following
/// no symbolic link (a run directory holds only what the event writers made).
fn collect_files(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> Result<(), OutputError> {
    let dir = root.join(relative);
    for entry in fs::read_dir(&dir).map_err(|e| output(&dir, e))? {
        let entry = entry.map_err(|e| output(&dir, e))?;
        let kind = entry.file_type().map_err(|e| output(&entry.path(), e))?;
        let child = relative.join(entry.file_name());
        if kind.is_dir() {
            collect_files(root, &child, out)?;
        } else if kind.is_file() {
            out.push(child);
        }
    }
    Ok(())
}

/// The temporary name `fl_package::write_model_zip` and [`write_report`] use.
fn partial_path(path: &Path) -> PathBuf {
    path.with_extension("zip.partial")
}

/// Makes the renames durable; best effort (not every platform can open a directory).
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// A failure while writing an archive: [`RuntimeError::Output`]'s fields, kept small inside
/// this module (`RuntimeError` is large).
#[derive(Debug)]
struct OutputError {
    path: PathBuf,
    message: String,
}

impl From<OutputError> for RuntimeError {
    fn from(OutputError { path, message }: OutputError) -> Self {
        RuntimeError::Output { path, message }
    }
}

fn output(path: &Path, error: io::Error) -> OutputError {
    OutputError {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

fn from_result_error(model_zip: &Path, error: ResultError) -> RuntimeError {
    match error {
        ResultError::Io { path, source } => RuntimeError::Output {
            path,
            message: format!("writing {MODEL_ZIP}: {source}"),
        },
        ResultError::Zip { path, reason } => RuntimeError::Output {
            path,
            message: format!("writing {MODEL_ZIP}: {reason}"),
        },
        other => RuntimeError::Output {
            path: model_zip.to_path_buf(),
            message: other.to_string(),
        },
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.2}%", v * 100.0))
}

/// `accuracy 81.25%, loss 0.4213, auc 0.9000`, or `-` when nothing was measured.
fn metrics_text(metrics: Option<&Metrics>) -> String {
    let Some(m) = metrics else {
        return "-".to_owned();
    };
    let mut parts = Vec::new();
    if let Some(accuracy) = m.accuracy {
        parts.push(format!("accuracy {}", percent(Some(accuracy))));
    }
    if let Some(loss) = m.loss {
        parts.push(format!("loss {loss:.4}"));
    }
    for (name, value) in &m.extra {
        parts.push(format!("{} {value:.4}", cell(name)));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

fn node_list(nodes: &[String]) -> String {
    if nodes.is_empty() {
        "-".to_owned()
    } else {
        nodes.iter().map(|n| cell(n)).collect::<Vec<_>>().join(", ")
    }
}

/// Text safe inside a Markdown table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.replace(['\r', '\n'], " ").replace('|', "\\|")
}

/// Text safe inside an inline code span within a table cell.
fn code_text(text: &str) -> String {
    cell(text).replace('`', "'")
}
