//! Prediction: top-k labels with probabilities for image files, batched.

use std::path::PathBuf;

use fl_data::{DataError, Preprocessor};
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
}

/// The prediction for one image, or why it could not be made.
#[derive(Debug)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// Top-k labels, most probable first; the error when the image could not be read.
    pub outcome: Result<Vec<Scored>, DataError>,
}

/// Predicts the `top_k` most probable labels of each image, `batch_size` images at a time.
/// An unreadable image gets its error and does not stop the others.
pub fn predict(
    model: &Classifier,
    preprocessor: &Preprocessor,
    paths: &[PathBuf],
    top_k: usize,
    batch_size: usize,
) -> Result<Vec<Prediction>, ModelError> {
    let mut out: Vec<Prediction> = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch_size.max(1)) {
        let mut images = Vec::new();
        let mut slots = Vec::new();
        for path in chunk {
            match preprocessor.load(path, None) {
                Ok(image) => {
                    slots.push(out.len());
                    images.push(image);
                    out.push(Prediction {
                        path: path.clone(),
                        outcome: Ok(Vec::new()),
                    });
                }
                Err(error) => out.push(Prediction {
                    path: path.clone(),
                    outcome: Err(error),
                }),
            }
        }
        // Images of different sizes are run one by one.
        let groups: Vec<Vec<usize>> = if images.windows(2).all(|w| w[0].shape() == w[1].shape()) {
            vec![(0..images.len()).collect()]
        } else {
            (0..images.len()).map(|i| vec![i]).collect()
        };
        for group in groups {
            if group.is_empty() {
                continue;
            }
            let [c, h, w] = images[group[0]].shape();
            let mut data = Vec::with_capacity(group.len() * c * h * w);
            for &i in &group {
                data.extend_from_slice(&images[i].data);
            }
            let xs =
                Tensor::from_slice(&data).view([group.len() as i64, c as i64, h as i64, w as i64]);
            let probabilities = tch::no_grad(|| model.forward(&xs, false).softmax(-1, Kind::Float));
            let k = top_k.clamp(1, model.labels.len()) as i64;
            let (values, indices) = probabilities.topk(k, -1, true, true);
            for (row, &i) in group.iter().enumerate() {
                let scored = (0..k)
                    .map(|j| {
                        let index = indices.int64_value(&[row as i64, j]) as usize;
                        Scored {
                            label: model.labels.get(index).cloned().unwrap_or_default(),
                            probability: values.double_value(&[row as i64, j]),
                        }
                    })
                    .collect();
                out[slots[i]].outcome = Ok(scored);
            }
        }
    }
    Ok(out)
}
