//! Prediction: top-k labels with probabilities for image files, batched.

use std::path::PathBuf;

use fl_data::{Image, Preprocessor};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::classifier::Classifier;
use crate::error::ModelError;

/// One label with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    /// The label.
    pub label: String,
    /// Softmax probability, 0..=1.
    pub probability: f64,
    /// The model's raw output for the label (the logit, before softmax).
    pub logit: f64,
}

/// The prediction for one image, or why it could not be made.
#[derive(Debug)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// Top-k labels, most probable first; the error when the image could not be read, the
    /// model refused it, or its output was not finite.
    pub outcome: Result<Vec<Scored>, ModelError>,
}

/// Predicts the `top_k` most probable labels of each image, `batch_size` images at a time.
/// Each image gets its own outcome: an unreadable image, one the model refuses (too small
/// for its convolutions) or one whose output is not finite gets its error and does not stop
/// the others.
pub fn predict(
    model: &Classifier,
    preprocessor: &Preprocessor,
    paths: &[PathBuf],
    top_k: usize,
    batch_size: usize,
) -> Vec<Prediction> {
    let mut out: Vec<Prediction> = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch_size.max(1)) {
        let mut images = Vec::new();
        let mut slots = Vec::new();
        for path in chunk {
            let outcome = match preprocessor.load(path, None) {
                Ok(image) => {
                    slots.push(out.len());
                    images.push(image);
                    Ok(Vec::new())
                }
                Err(error) => Err(ModelError::Data(error)),
            };
            out.push(Prediction {
                path: path.clone(),
                outcome,
            });
        }
        // Images of one size run together; should the model refuse the batch, each image is
        // run alone so that the others still get their predictions.
        let same_size = images.windows(2).all(|w| w[0].shape() == w[1].shape());
        let together: Vec<usize> = (0..images.len()).collect();
        let scored = match same_size.then(|| score(model, &images, &together, top_k)) {
            Some(Ok(rows)) => rows.into_iter().map(Ok).collect(),
            _ => together
                .iter()
                .map(|&i| score(model, &images, &[i], top_k).map(|mut rows| rows.remove(0)))
                .collect::<Vec<_>>(),
        };
        for (i, outcome) in scored.into_iter().enumerate() {
            out[slots[i]].outcome = outcome;
        }
    }
    out
}

/// The top-k labels of each image of `group` (images of one size), run as one batch.
fn score(
    model: &Classifier,
    images: &[Image],
    group: &[usize],
    top_k: usize,
) -> Result<Vec<Vec<Scored>>, ModelError> {
    let [c, h, w] = images[group[0]].shape();
    let mut data = Vec::with_capacity(group.len() * c * h * w);
    for &i in group {
        data.extend_from_slice(&images[i].data);
    }
    let xs = Tensor::from_slice(&data).view([group.len() as i64, c as i64, h as i64, w as i64]);
    let logits = tch::no_grad(|| model.try_forward(&xs, false))?;
    let probabilities = logits.f_softmax(-1, Kind::Float)?;
    let k = top_k.clamp(1, model.labels.len()) as i64;
    let (values, indices) = probabilities.f_topk(k, -1, true, true)?;
    (0..group.len() as i64)
        .map(|row| {
            (0..k)
                .map(|j| {
                    let probability = values.f_double_value(&[row, j])?;
                    if !probability.is_finite() {
                        return Err(ModelError::NonFinite {
                            what: "the model's output".into(),
                            at: "prediction".into(),
                        });
                    }
                    let index = indices.f_int64_value(&[row, j])?;
                    Ok(Scored {
                        label: model
                            .labels
                            .get(index as usize)
                            .cloned()
                            .unwrap_or_default(),
                        probability,
                        logit: logits.f_double_value(&[row, index])?,
                    })
                })
                .collect()
        })
        .collect()
}
