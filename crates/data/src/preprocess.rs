//! Turning an image file into model input as `preprocessor_config.json` says: decode,
//! convert channels, resize, centre crop, (training only) augment, to CHW `f32`, rescale,
//! normalise.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fl_package::{PreprocessorConfig, Resample, Resize};
use image::DynamicImage;

use crate::augment::{AugmentKey, Draw, flip_horizontal, warp_affine};
use crate::error::DataError;
use crate::resample::{Pixels, resize};

/// A preprocessed image: CHW `f32` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `channels * height * width` values, channel-major.
    pub data: Vec<f32>,
    /// Number of channels (1 or 3).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl Image {
    /// Returns `[channels, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }
}

/// Loads images as one model expects them. Cheap to share between threads (`Arc`).
///
/// The result is what torchvision's `Resize`, `CenterCrop`, `ToTensor` and `Normalize`
/// give on `PIL.Image.open(path).convert("RGB")` (or `"L"`): resizing reproduces Pillow's
/// resampling pixel for pixel, and crops are placed as torchvision places them.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    config: PreprocessorConfig,
    channels: usize,
    cache: Option<Arc<Mutex<DecodedCache>>>,
}

/// Decoded images before augmentation and scaling (after channel conversion, resize and
/// crop), kept so that later epochs do not decode again, up to a byte budget. What is cached
/// is deterministic, so a hit gives exactly what decoding would.
#[derive(Debug, Default)]
struct DecodedCache {
    budget: usize,
    used: usize,
    images: HashMap<PathBuf, Arc<Image>>,
}

/// What applies when a package has no `preprocessor_config.json`: no resize, rescale by
/// 1/255, no normalisation, no augmentation.
fn default_config() -> PreprocessorConfig {
    PreprocessorConfig {
        resize: None,
        center_crop: None,
        affine: None,
        horizontal_flip: false,
        rescale_factor: Some(1.0 / 255.0),
        normalize: None,
        resample: Resample::Bilinear,
    }
}

impl Preprocessor {
    /// Returns a preprocessor for a model taking `channels`-channel input: 1 means grey,
    /// anything else RGB (3 channels). `None` means the package has no preprocessor
    /// configuration: no resize, rescale by 1/255, no normalisation, no augmentation.
    pub fn new(config: Option<&PreprocessorConfig>, channels: u32) -> Self {
        Self {
            config: config.cloned().unwrap_or_else(default_config),
            channels: if channels == 1 { 1 } else { 3 },
            cache: None,
        }
    }

    /// Keeps decoded images (before augmentation) in memory, up to `bytes`, so that later
    /// epochs skip decoding and resizing. Clones of this preprocessor share the cache.
    pub fn with_cache(mut self, bytes: usize) -> Self {
        self.cache = (bytes > 0).then(|| {
            Arc::new(Mutex::new(DecodedCache {
                budget: bytes,
                ..DecodedCache::default()
            }))
        });
        self
    }

    /// Returns the channel count of the images produced (1 or 3).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Returns the configuration in use.
    pub fn config(&self) -> &PreprocessorConfig {
        &self.config
    }

    /// Returns whether `augment` keys change anything (random affine or flip configured).
    pub fn augments(&self) -> bool {
        self.config.affine.is_some() || self.config.horizontal_flip
    }

    /// Checks that the normalisation fits the channel count (one value, or one per
    /// channel); [`Preprocessor::load`] fails the same way otherwise.
    pub fn validate(&self) -> Result<(), DataError> {
        if let Some(n) = &self.config.normalize {
            for (key, values) in [("image_mean", n.mean.len()), ("image_std", n.std.len())] {
                if values != 1 && values != self.channels {
                    return Err(DataError::ChannelMismatch {
                        key,
                        values,
                        channels: self.channels,
                    });
                }
            }
        }
        Ok(())
    }

    /// Decodes the PNG or JPEG file at `path` and preprocesses it. `augment` applies the
    /// training-only random transforms, drawn from the key.
    pub fn load(&self, path: &Path, augment: Option<AugmentKey>) -> Result<Image, DataError> {
        self.validate()?;
        if let Some(cache) = &self.cache {
            let hit = cache.lock().ok().and_then(|c| c.images.get(path).cloned());
            let base = match hit {
                Some(base) => base,
                None => {
                    let base = Arc::new(self.base(self.decode(path)?));
                    if let Ok(mut c) = cache.lock() {
                        let size = base.data.len() * size_of::<f32>();
                        if c.used + size <= c.budget {
                            c.used += size;
                            c.images.insert(path.to_path_buf(), base.clone());
                        }
                    }
                    base
                }
            };
            return Ok(self.finish((*base).clone(), augment));
        }
        let decoded = self.decode(path)?;
        Ok(self.finish(self.base(decoded), augment))
    }

    /// Decodes a PNG or JPEG image held in memory and preprocesses it as
    /// [`Preprocessor::load`] does a file (without the cache). `augment` applies the
    /// training-only random transforms, drawn from the key.
    pub fn load_bytes(
        &self,
        bytes: &[u8],
        augment: Option<AugmentKey>,
    ) -> Result<Image, DataError> {
        self.validate()?;
        let decoded = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| DataError::DecodeBytes {
                message: e.to_string(),
            })?
            .decode()
            .map_err(|e| DataError::DecodeBytes {
                message: e.to_string(),
            })?;
        Ok(self.finish(self.base(decoded), augment))
    }

    fn decode(&self, path: &Path) -> Result<DynamicImage, DataError> {
        image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|source| DataError::Io {
                file: path.to_owned(),
                source,
            })?
            .decode()
            .map_err(|e| DataError::Decode {
                file: path.to_owned(),
                message: e.to_string(),
            })
    }

    /// The deterministic part of preprocessing: channels, resize, crop, to CHW (0..255).
    /// Resizing and cropping give what torchvision's `Resize` and `CenterCrop` give on the
    /// PIL image.
    fn base(&self, decoded: DynamicImage) -> Image {
        let converted = convert_channels(decoded, self.channels);
        let pixels = Pixels {
            width: converted.width() as usize,
            height: converted.height() as usize,
            channels: self.channels,
            data: converted.into_bytes(),
        };
        let resized = match self.config.resize {
            None => pixels,
            Some(size) => {
                let (w, h) = resized_size(size, pixels.width, pixels.height);
                resize(&pixels, w, h, self.config.resample)
            }
        };
        let mut image = to_chw(&resized);
        if let Some((h, w)) = self.config.center_crop {
            image = center_crop(&image, h as usize, w as usize);
        }
        image
    }

    /// The rest: (training only) augmentation, then rescale and normalise.
    fn finish(&self, mut image: Image, augment: Option<AugmentKey>) -> Image {
        if let Some(key) = augment.filter(|_| self.augments()) {
            let draw = Draw::new(key, self.config.affine.as_ref(), image.height, image.width);
            if self.config.affine.is_some() && (draw.angle, draw.tx, draw.ty) != (0.0, 0.0, 0.0) {
                image.data = warp_affine(
                    &image.data,
                    image.channels,
                    image.height,
                    image.width,
                    draw.angle,
                    draw.tx,
                    draw.ty,
                );
            }
            if self.config.horizontal_flip && draw.flip {
                flip_horizontal(&mut image.data, image.width);
            }
        }
        self.scale(&mut image);
        image
    }

    /// Rescales, then normalises, every value.
    fn scale(&self, image: &mut Image) {
        let plane = image.height * image.width;
        let factor = self.config.rescale_factor.unwrap_or(1.0);
        for c in 0..image.channels {
            let (mean, std) = match &self.config.normalize {
                Some(n) => (pick(&n.mean, c), pick(&n.std, c)),
                None => (0.0, 1.0),
            };
            // Computed in f64 like the Python reference, stored as f32.
            for v in &mut image.data[c * plane..(c + 1) * plane] {
                *v = ((f64::from(*v) * factor - mean) / std) as f32;
            }
        }
    }
}

/// The value for channel `c`: the only one, or the c-th.
fn pick(values: &[f64], c: usize) -> f64 {
    if values.len() == 1 {
        values[0]
    } else {
        values[c]
    }
}

/// Converts to 8-bit grey (luminance with PIL's ITU-R 601-2 weights) or 8-bit RGB (grey
/// repeated); alpha is dropped.
fn convert_channels(image: DynamicImage, channels: usize) -> DynamicImage {
    if channels == 3 {
        return match image {
            DynamicImage::ImageRgb8(_) => image,
            other => DynamicImage::ImageRgb8(other.to_rgb8()),
        };
    }
    if !image.color().has_color() {
        return match image {
            DynamicImage::ImageLuma8(_) => image,
            other => DynamicImage::ImageLuma8(other.to_luma8()),
        };
    }
    let rgb = image.to_rgb8();
    let luma = image::GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        // PIL's "L" conversion: L = R*299/1000 + G*587/1000 + B*114/1000, rounded.
        let l = (u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16;
        image::Luma([l as u8])
    });
    DynamicImage::ImageLuma8(luma)
}

/// The output `(width, height)` of a resize step, as torchvision's `Resize` computes it
/// (`_compute_resized_output_size`): the shorter side becomes `n` and the longer one
/// `int(n * long / short)`, truncated; a square image becomes `n` x `n`.
fn resized_size(resize: Resize, width: usize, height: usize) -> (usize, usize) {
    match resize {
        Resize::Exact { height, width } => (width as usize, height as usize),
        Resize::ShortestEdge(n) => {
            let n = n as usize;
            let scaled = |long: usize, short: usize| (n * long / short.max(1)).max(1);
            if width <= height {
                (n, scaled(height, width))
            } else {
                (scaled(width, height), n)
            }
        }
    }
}

/// Interleaved 8-bit pixels to CHW `f32` in 0..=255.
fn to_chw(pixels: &Pixels) -> Image {
    let Pixels {
        width,
        height,
        channels,
        ..
    } = *pixels;
    debug_assert_eq!(pixels.data.len(), width * height * channels);
    let plane = width * height;
    let mut data = vec![0.0f32; plane * channels];
    for (p, pixel) in pixels.data.chunks_exact(channels).enumerate() {
        for (c, &v) in pixel.iter().enumerate() {
            data[c * plane + p] = f32::from(v);
        }
    }
    Image {
        data,
        channels,
        height,
        width,
    }
}

/// Where a centre crop of `want` pixels starts in a side of `have`, as torchvision's
/// `center_crop` places it: `int(round((have - want) / 2.0))`, with Python's rounding of
/// halves to even, when the image is larger; when it is smaller, the image is padded with
/// `(want - have) // 2` zeros before (the larger half after), a negative offset.
fn crop_offset(have: usize, want: usize) -> i64 {
    if have < want {
        return -(((want - have) / 2) as i64);
    }
    let margin = have - want;
    let half = margin / 2;
    // An odd margin is half + 0.5 pixels: to even.
    let rounded = if margin % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    };
    rounded as i64
}

/// Crops the centre `height` x `width`, padding with zeros where the image is smaller
/// (as torchvision's `CenterCrop`).
fn center_crop(image: &Image, height: usize, width: usize) -> Image {
    if (image.height, image.width) == (height, width) {
        return image.clone();
    }
    // Offsets of the crop in the image; negative means padding.
    let top = crop_offset(image.height, height);
    let left = crop_offset(image.width, width);
    let mut data = vec![0.0f32; image.channels * height * width];
    for c in 0..image.channels {
        for i in 0..height {
            let src_i = i as i64 + top;
            if src_i < 0 || src_i >= image.height as i64 {
                continue;
            }
            for j in 0..width {
                let src_j = j as i64 + left;
                if src_j < 0 || src_j >= image.width as i64 {
                    continue;
                }
                data[(c * height + i) * width + j] =
                    image.data[(c * image.height + src_i as usize) * image.width + src_j as usize];
            }
        }
    }
    Image {
        data,
        channels: image.channels,
        height,
        width,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_keeps_the_aspect_ratio_truncating() {
        assert_eq!(resized_size(Resize::ShortestEdge(8), 16, 33), (8, 16));
        assert_eq!(resized_size(Resize::ShortestEdge(8), 33, 16), (16, 8));
        assert_eq!(
            resized_size(
                Resize::Exact {
                    height: 5,
                    width: 7
                },
                1,
                1
            ),
            (7, 5)
        );
    }

    #[test]
    fn crop_offsets_round_halves_to_even_and_pad_the_smaller_half_first() {
        // torchvision: int(round((have - want) / 2.0)); Python's round(0.5) is 0, round(1.5)
        // and round(2.5) are 2.
        let offsets: Vec<i64> = [(5, 4), (7, 4), (9, 4), (11, 4), (8, 4), (61, 40)]
            .iter()
            .map(|&(have, want)| crop_offset(have, want))
            .collect();
        assert_eq!(offsets, [0, 2, 2, 4, 2, 10]);
        // Padding: (want - have) // 2 zeros before.
        assert_eq!(crop_offset(4, 7), -1);
        assert_eq!(crop_offset(20, 27), -3);
        assert_eq!(crop_offset(26, 35), -4);
    }

    #[test]
    fn center_crop_takes_the_middle_and_pads_with_zeros() {
        let image = Image {
            data: (0..16).map(|v| v as f32).collect(),
            channels: 1,
            height: 4,
            width: 4,
        };
        let cropped = center_crop(&image, 2, 2);
        assert_eq!(cropped.data, [5.0, 6.0, 9.0, 10.0]);
        let padded = center_crop(&image, 6, 4);
        assert_eq!(padded.shape(), [1, 6, 4]);
        assert_eq!(&padded.data[..4], &[0.0; 4]);
        assert_eq!(&padded.data[4..8], &[0.0, 1.0, 2.0, 3.0]);
        assert_eq!(&padded.data[20..], &[0.0; 4]);
    }

    #[test]
    fn rgb_to_grey_uses_pil_luminance() {
        let rgb = image::RgbImage::from_raw(2, 1, vec![255, 0, 0, 10, 200, 30]).expect("buffer");
        let grey = convert_channels(DynamicImage::ImageRgb8(rgb), 1);
        // PIL: L(255,0,0) = 76; L(10,200,30) = 124.
        assert_eq!(grey.as_bytes(), &[76, 124]);
    }
}
