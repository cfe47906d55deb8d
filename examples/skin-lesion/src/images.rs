//! LesionNet's own preprocessing and loader: every image is decoded once (at
//! `init_dataset`, which is where a broken image is found), converted to grey, resized to
//! `size` x `size` and standardised per image (zero mean, unit variance: a simple colour
//! constancy, as dermoscopy pipelines use). Training passes are shuffled by `(seed, epoch)`
//! and flipped vertically at random, keyed the same way.

use std::path::Path;

use fl_data::{SplitMix64, epoch_order};
use fl_model::{DataLoader, ModelError, Pass};
use image::imageops::FilterType;
use tch::Tensor;

/// Preprocesses one image file to `[1, size, size]` values.
pub fn preprocess(path: &Path, size: u32) -> Result<Vec<f32>, String> {
    let image = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let grey = image::imageops::resize(&image.to_luma8(), size, size, FilterType::Triangle);
    let values: Vec<f32> = grey.pixels().map(|p| f32::from(p.0[0]) / 255.0).collect();
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let std = var.sqrt().max(1e-3);
    Ok(values.into_iter().map(|v| (v - mean) / std).collect())
}

/// A split's images, decoded, with their class indices.
#[derive(Debug, Clone)]
pub struct LesionImages {
    images: Vec<Vec<f32>>,
    labels: Vec<i64>,
    size: u32,
    batch_size: usize,
    seed: u64,
}

impl LesionImages {
    /// Decodes every `(path, class)`; the first image that cannot be read is the error.
    pub fn load(
        samples: &[(std::path::PathBuf, usize)],
        size: u32,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self, String> {
        let mut images = Vec::with_capacity(samples.len());
        for (path, _) in samples {
            images.push(preprocess(path, size)?);
        }
        Ok(Self {
            images,
            labels: samples.iter().map(|(_, l)| *l as i64).collect(),
            size,
            batch_size: batch_size.max(1),
            seed,
        })
    }

    /// The class indices, in file order.
    pub fn labels(&self) -> &[i64] {
        &self.labels
    }
}

/// Random-flip stream tag.
const FLIP: u64 = 0x6c65_7369_6f6e_666c;

impl DataLoader for LesionImages {
    fn samples(&self) -> usize {
        self.images.len()
    }

    fn batches(
        &self,
        pass: Pass,
    ) -> Box<dyn Iterator<Item = Result<(Tensor, Tensor), ModelError>> + '_> {
        let order = epoch_order(self.images.len(), pass.training, self.seed, pass.epoch);
        let side = self.size as i64;
        let chunks: Vec<Vec<usize>> = order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        Box::new(chunks.into_iter().map(move |chunk| {
            let mut data = Vec::with_capacity(chunk.len() * (side * side) as usize);
            for &i in &chunk {
                let flip = pass.training
                    && SplitMix64::from_words(&[FLIP, self.seed, pass.epoch, i as u64]).next_u64()
                        & 1
                        == 1;
                let image = &self.images[i];
                if flip {
                    for row in image.chunks(self.size as usize).rev() {
                        data.extend_from_slice(row);
                    }
                } else {
                    data.extend_from_slice(image);
                }
            }
            let xs = Tensor::from_slice(&data).view([chunk.len() as i64, 1, side, side]);
            let labels: Vec<i64> = chunk.iter().map(|&i| self.labels[i]).collect();
            Ok((xs, Tensor::from_slice(&labels)))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_resized_and_standardised_per_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ramp.png");
        let ramp = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 16 + y * 8) as u8]));
        ramp.save(&path).expect("png");
        let values = preprocess(&path, 16).expect("decoded");
        assert_eq!(values.len(), 16 * 16);
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32;
        assert!(mean.abs() < 1e-4, "mean {mean}");
        assert!((var - 1.0).abs() < 1e-3, "variance {var}");
        let error = preprocess(&dir.path().join("missing.png"), 16).expect_err("missing");
        assert!(error.contains("missing.png"), "{error}");
    }
}
