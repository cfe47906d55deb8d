//! Resizing 8-bit images exactly as Pillow's `Image.resize` does, which is what
//! torchvision's `Resize` runs on PIL images (and Hugging Face image processors too).
//!
//! Pillow resamples in two separable passes, horizontal then vertical. Each output pixel
//! is a weighted sum of the input pixels under a filter centred on it; when downsampling,
//! the filter is stretched by the scale so that every input pixel contributes
//! (antialiasing). The weights of a pixel are normalised to sum to one, then turned into
//! 22-bit fixed-point integers, and each pass rounds its result to 8 bits, so the
//! intermediate image between the passes is 8-bit too. Nearest neighbour is a separate
//! path: the input pixel under the output pixel's centre. Reproducing these steps, with the
//! same floating-point expressions, gives bit-identical pixels
//! (`tests/torchvision_parity.rs` checks it against Pillow itself).

use fl_package::Resample;

/// Fixed-point precision of the weights: 32 bits less 8 for the pixel and 2 for the
/// overshoot of filters with negative lobes.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// An interleaved 8-bit image: `width * height * channels` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pixels {
    /// The bytes, `channels` per pixel.
    pub data: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes per pixel (1 to 4).
    pub channels: usize,
}

/// Returns `image` resized to `width` x `height` with `filter`, as Pillow's
/// `Image.resize((width, height), filter)` would. Both sizes must be at least 1.
pub(crate) fn resize(image: &Pixels, width: usize, height: usize, filter: Resample) -> Pixels {
    debug_assert!(width > 0 && height > 0 && image.channels <= 4);
    if (width, height) == (image.width, image.height) {
        return image.clone();
    }
    let Some(kernel) = Kernel::of(filter) else {
        return nearest(image, width, height);
    };
    let vertical = || Weights::new(image.height, height, kernel);
    let horizontal = || Weights::new(image.width, width, kernel);
    // Without a crop box every input row and column is read, so each pass covers the
    // whole image.
    if width == image.width {
        return vertical_pass(image, &vertical());
    }
    if height == image.height {
        return horizontal_pass(image, &horizontal());
    }
    if vertical_first(image.width, image.height, width, height) {
        horizontal_pass(&vertical_pass(image, &vertical()), &horizontal())
    } else {
        vertical_pass(&horizontal_pass(image, &horizontal()), &vertical())
    }
}

/// Whether Pillow runs the vertical pass first: when the height shrinks by more than twice
/// as many pixels as the width does. This is Pillow 13's rule (the version
/// `scripts/requirements.txt` pins; older releases always ran the horizontal pass first).
/// The order moves the 8-bit rounding between the passes, by a level here and there.
fn vertical_first(width: usize, height: usize, new_width: usize, new_height: usize) -> bool {
    let shrink = |from: usize, to: usize| from as i64 - to as i64;
    let rows = shrink(height, new_height);
    rows > 0 && rows > 2 * shrink(width, new_width)
}

/// The separable filters of Pillow's resampling, with their supports (half-widths).
#[derive(Debug, Clone, Copy)]
enum Kernel {
    Box,
    Bilinear,
    Hamming,
    Bicubic,
    Lanczos,
}

impl Kernel {
    /// The kernel of a filter; `None` for nearest neighbour, which is not a convolution.
    fn of(filter: Resample) -> Option<Kernel> {
        match filter {
            Resample::Nearest => None,
            Resample::Box => Some(Kernel::Box),
            Resample::Bilinear => Some(Kernel::Bilinear),
            Resample::Hamming => Some(Kernel::Hamming),
            Resample::Bicubic => Some(Kernel::Bicubic),
            Resample::Lanczos => Some(Kernel::Lanczos),
        }
    }

    fn support(self) -> f64 {
        match self {
            Kernel::Box => 0.5,
            Kernel::Bilinear | Kernel::Hamming => 1.0,
            Kernel::Bicubic => 2.0,
            Kernel::Lanczos => 3.0,
        }
    }

    /// The filter's weight at distance `x` (in input pixels, unstretched).
    fn weight(self, x: f64) -> f64 {
        match self {
            Kernel::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Kernel::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Kernel::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    return 1.0;
                }
                if x >= 1.0 {
                    return 0.0;
                }
                let x = x * std::f64::consts::PI;
                // Pillow writes these two constants as C floats.
                x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
            }
            Kernel::Bicubic => {
                // Keys' cubic convolution with a = -0.5.
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Kernel::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

/// The fixed-point weights of one pass: for each output position, the first input
/// position and how many follow, and `size` weights (zero beyond that count).
#[derive(Debug)]
struct Weights {
    bounds: Vec<(usize, usize)>,
    size: usize,
    weights: Vec<i32>,
}

impl Weights {
    /// The weights that resample `input` positions into `output`, as Pillow computes them.
    fn new(input: usize, output: usize, kernel: Kernel) -> Weights {
        let scale = input as f64 / output as f64;
        let filter_scale = scale.max(1.0);
        let support = kernel.support() * filter_scale;
        let size = support.ceil() as usize * 2 + 1;
        let inverse = 1.0 / filter_scale;
        let mut bounds = Vec::with_capacity(output);
        let mut weights = vec![0i32; output * size];
        let mut row = vec![0.0f64; size];
        for (out, chunk) in weights.chunks_exact_mut(size).enumerate() {
            let center = (out as f64 + 0.5) * scale;
            // C's truncating casts, then clamped to the image.
            let start = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let count = end.saturating_sub(start).min(size);
            let mut total = 0.0;
            for (i, w) in row.iter_mut().enumerate().take(count) {
                *w = kernel.weight(((start + i) as f64 - center + 0.5) * inverse);
                total += *w;
            }
            for (fixed, w) in chunk.iter_mut().zip(&row).take(count) {
                let w = if total == 0.0 { *w } else { *w / total };
                *fixed = to_fixed(w);
            }
            bounds.push((start, count));
        }
        Weights {
            bounds,
            size,
            weights,
        }
    }

    fn of(&self, out: usize) -> (usize, &[i32]) {
        let (start, count) = self.bounds[out];
        (
            start,
            &self.weights[out * self.size..out * self.size + count],
        )
    }
}

/// A weight in 22-bit fixed point, rounded half away from zero as Pillow does.
fn to_fixed(w: f64) -> i32 {
    let scaled = w * f64::from(1u32 << PRECISION_BITS);
    if w < 0.0 {
        (scaled - 0.5) as i32
    } else {
        (scaled + 0.5) as i32
    }
}

/// A fixed-point sum (with its rounding half already added) back to a clamped 8-bit value.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i64 = 1 << (PRECISION_BITS - 1);

/// The horizontal pass: each row resampled on its own.
fn horizontal_pass(image: &Pixels, weights: &Weights) -> Pixels {
    let channels = image.channels;
    let width = weights.bounds.len();
    let height = image.height;
    let mut data = Vec::with_capacity(width * height * channels);
    for y in 0..height {
        let row = &image.data[y * image.width * channels..(y + 1) * image.width * channels];
        for x in 0..width {
            let (start, k) = weights.of(x);
            let mut sums = [HALF; 4];
            for (i, &w) in k.iter().enumerate() {
                let pixel = &row[(start + i) * channels..(start + i + 1) * channels];
                for (sum, &v) in sums.iter_mut().zip(pixel) {
                    *sum += i64::from(v) * i64::from(w);
                }
            }
            data.extend(sums[..channels].iter().map(|&s| clip8(s)));
        }
    }
    Pixels {
        data,
        width,
        height,
        channels,
    }
}

/// The vertical pass: each column resampled on its own (computed row by row).
fn vertical_pass(image: &Pixels, weights: &Weights) -> Pixels {
    let channels = image.channels;
    let stride = image.width * channels;
    let height = weights.bounds.len();
    let mut data = Vec::with_capacity(stride * height);
    let mut sums = vec![0i64; stride];
    for y in 0..height {
        let (start, k) = weights.of(y);
        sums.fill(HALF);
        for (i, &w) in k.iter().enumerate() {
            let row = &image.data[(start + i) * stride..(start + i + 1) * stride];
            for (sum, &v) in sums.iter_mut().zip(row) {
                *sum += i64::from(v) * i64::from(w);
            }
        }
        data.extend(sums.iter().map(|&s| clip8(s)));
    }
    Pixels {
        data,
        width: image.width,
        height,
        channels,
    }
}

/// Nearest neighbour: the input pixel under each output pixel's centre, with Pillow's
/// accumulated (not multiplied) positions.
fn nearest(image: &Pixels, width: usize, height: usize) -> Pixels {
    let sources = |input: usize, output: usize| {
        let step = input as f64 / output as f64;
        let mut position = step * 0.5;
        (0..output)
            .map(|_| {
                // Positions start above zero and grow, so truncating is Pillow's floor.
                let source = position as usize;
                position += step;
                (source < input).then_some(source)
            })
            .collect::<Vec<_>>()
    };
    let (columns, rows) = (sources(image.width, width), sources(image.height, height));
    let channels = image.channels;
    let mut data = vec![0u8; width * height * channels];
    for (out_row, source_row) in data.chunks_exact_mut(width * channels).zip(&rows) {
        let Some(y) = source_row else { continue };
        for (out, source_column) in out_row.chunks_exact_mut(channels).zip(&columns) {
            if let Some(x) = source_column {
                let at = (y * image.width + x) * channels;
                out.copy_from_slice(&image.data[at..at + channels]);
            }
        }
    }
    Pixels {
        data,
        width,
        height,
        channels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(width: usize, height: usize, data: Vec<u8>) -> Pixels {
        Pixels {
            data,
            width,
            height,
            channels: 1,
        }
    }

    #[test]
    fn weights_are_normalised_and_widen_when_downsampling() {
        // Halving with bilinear: support 2 input pixels each side, weights 1/8, 3/8, 3/8, 1/8.
        let w = Weights::new(8, 4, Kernel::Bilinear);
        let (start, k) = w.of(1);
        assert_eq!(start, 1);
        let one = 1i32 << PRECISION_BITS;
        assert_eq!(k, &[one / 8, 3 * one / 8, 3 * one / 8, one / 8]);
        // At the border the weights outside the image are dropped and the rest renormalised.
        let (start, k) = w.of(0);
        assert_eq!((start, k.len()), (0, 3));
        assert!((k.iter().sum::<i32>() - one).abs() <= 1);
        // Upsampling keeps the filter's own support.
        assert_eq!(Weights::new(4, 8, Kernel::Bicubic).size, 5);
    }

    #[test]
    fn resize_averages_and_rounds_like_pillow() {
        // Pillow: Image.frombytes("L", (4, 1), bytes([0, 10, 20, 255])).resize((2, 1), BILINEAR)
        // gives [7, 119]; BOX gives [5, 138].
        let image = grey(4, 1, vec![0, 10, 20, 255]);
        assert_eq!(resize(&image, 2, 1, Resample::Bilinear).data, [7, 119]);
        assert_eq!(resize(&image, 2, 1, Resample::Box).data, [5, 138]);
        // A uniform image stays uniform, whatever the filter and direction.
        let flat = grey(5, 3, vec![77; 15]);
        for filter in [Resample::Bicubic, Resample::Lanczos, Resample::Hamming] {
            assert!(resize(&flat, 9, 2, filter).data.iter().all(|&v| v == 77));
        }
    }

    #[test]
    fn nearest_takes_the_pixel_under_each_centre() {
        let image = grey(3, 1, vec![10, 20, 30]);
        // Centres of 5 output pixels fall at 0.3, 0.9, 1.5, 2.1, 2.7 input pixels.
        assert_eq!(
            resize(&image, 5, 1, Resample::Nearest).data,
            [10, 10, 20, 30, 30]
        );
        let rgb = Pixels {
            data: vec![1, 2, 3, 4, 5, 6],
            width: 2,
            height: 1,
            channels: 3,
        };
        assert_eq!(
            resize(&rgb, 1, 2, Resample::Nearest).data,
            [4, 5, 6, 4, 5, 6]
        );
    }
}
