//! Training-time augmentation: random affine transform (as torchvision's `RandomAffine`)
//! and random horizontal flip, drawn from a stream that depends only on
//! `(seed, epoch, sample index)`.

use fl_package::Affine;

use crate::rng::{AUGMENT_STREAM, SplitMix64};

/// What makes one sample's augmentation in one epoch reproducible: the same key always
/// gives the same transform, whatever thread decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AugmentKey {
    /// The run's seed.
    pub seed: u64,
    /// The epoch (a global count, so that rounds of federated training differ).
    pub epoch: u64,
    /// The sample's position in its dataset split (not in the shuffled order).
    pub index: u64,
}

/// The random choices for one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Draw {
    /// Clockwise rotation in degrees.
    pub angle: f64,
    /// Horizontal translation in whole pixels.
    pub tx: f64,
    /// Vertical translation in whole pixels.
    pub ty: f64,
    /// Whether to mirror left-right.
    pub flip: bool,
}

impl Draw {
    /// Draws the transform for `key` on an image of `height` x `width`. Every value is
    /// always drawn, in a fixed order, so that enabling one step never changes another's.
    pub fn new(key: AugmentKey, affine: Option<&Affine>, height: usize, width: usize) -> Self {
        let mut rng = SplitMix64::from_words(&[AUGMENT_STREAM, key.seed, key.epoch, key.index]);
        let (degrees, translate) =
            affine.map_or(((0.0, 0.0), (0.0, 0.0)), |a| (a.degrees, a.translate));
        let angle = rng.uniform(degrees.0, degrees.1);
        let max_dx = translate.0 * width as f64;
        let max_dy = translate.1 * height as f64;
        // torchvision rounds translations to whole pixels.
        let tx = rng.uniform(-max_dx, max_dx).round();
        let ty = rng.uniform(-max_dy, max_dy).round();
        let flip = rng.next_u64() >> 63 == 1;
        Self {
            angle,
            tx,
            ty,
            flip,
        }
    }
}

/// Rotates by `angle` degrees (clockwise, about the image centre) and translates by
/// `(tx, ty)` pixels a CHW image, sampling bilinearly and filling with zeros.
pub(crate) fn warp_affine(
    data: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    angle: f64,
    tx: f64,
    ty: f64,
) -> Vec<f32> {
    let plane = height * width;
    let mut out = vec![0.0f32; data.len()];
    let (sin, cos) = angle.to_radians().sin_cos();
    let (cx, cy) = (width as f64 * 0.5, height as f64 * 0.5);
    for i in 0..height {
        for j in 0..width {
            // Inverse map: output pixel centre -> input coordinates (pixel centres at +0.5).
            let x = j as f64 + 0.5 - cx - tx;
            let y = i as f64 + 0.5 - cy - ty;
            let u = cos * x + sin * y + cx - 0.5;
            let v = -sin * x + cos * y + cy - 0.5;
            let (u0, v0) = (u.floor(), v.floor());
            let (fu, fv) = ((u - u0) as f32, (v - v0) as f32);
            let taps = [
                (v0, u0, (1.0 - fu) * (1.0 - fv)),
                (v0, u0 + 1.0, fu * (1.0 - fv)),
                (v0 + 1.0, u0, (1.0 - fu) * fv),
                (v0 + 1.0, u0 + 1.0, fu * fv),
            ];
            for c in 0..channels {
                let src = &data[c * plane..(c + 1) * plane];
                let mut acc = 0.0f32;
                for &(row, col, weight) in &taps {
                    if weight != 0.0
                        && row >= 0.0
                        && col >= 0.0
                        && (row as usize) < height
                        && (col as usize) < width
                    {
                        acc += weight * src[row as usize * width + col as usize];
                    }
                }
                out[c * plane + i * width + j] = acc;
            }
        }
    }
    out
}

/// Mirrors a CHW image left-right in place.
pub(crate) fn flip_horizontal(data: &mut [f32], width: usize) {
    if width == 0 {
        return;
    }
    for row in data.chunks_exact_mut(width) {
        row.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_translation_move_pixels_exactly() {
        // 1 channel, 3x4, values 1..=12.
        let data: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        assert_eq!(warp_affine(&data, 1, 3, 4, 0.0, 0.0, 0.0), data);
        // One pixel right: the first column becomes zero fill.
        let shifted = warp_affine(&data, 1, 3, 4, 0.0, 1.0, 0.0);
        assert_eq!(shifted, [0., 1., 2., 3., 0., 5., 6., 7., 0., 9., 10., 11.]);
        // One pixel up.
        let up = warp_affine(&data, 1, 3, 4, 0.0, 0.0, -1.0);
        assert_eq!(up, [5., 6., 7., 8., 9., 10., 11., 12., 0., 0., 0., 0.]);
    }

    #[test]
    fn rotation_by_90_degrees_is_clockwise_about_the_centre() {
        // 2x2 image [[1, 2], [3, 4]] rotated 90 degrees clockwise is [[3, 1], [4, 2]].
        let data = [1.0, 2.0, 3.0, 4.0];
        let out = warp_affine(&data, 1, 2, 2, 90.0, 0.0, 0.0);
        let expected = [3.0, 1.0, 4.0, 2.0];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn flip_mirrors_each_row_of_each_channel() {
        let mut data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        flip_horizontal(&mut data, 3);
        assert_eq!(data, [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
    }

    #[test]
    fn draws_depend_only_on_the_key_and_stay_in_range() {
        let affine = Affine {
            degrees: (-10.0, 10.0),
            translate: (0.1, 0.2),
        };
        let key = AugmentKey {
            seed: 1,
            epoch: 2,
            index: 3,
        };
        let a = Draw::new(key, Some(&affine), 50, 100);
        assert_eq!(a, Draw::new(key, Some(&affine), 50, 100));
        let mut flips = 0;
        for index in 0..200 {
            let d = Draw::new(AugmentKey { index, ..key }, Some(&affine), 50, 100);
            assert!((-10.0..10.0).contains(&d.angle));
            assert!(d.tx.abs() <= 10.0 && d.tx.fract() == 0.0);
            assert!(d.ty.abs() <= 10.0);
            flips += usize::from(d.flip);
        }
        assert!((70..130).contains(&flips), "{flips}");
        let none = Draw::new(key, None, 50, 100);
        assert_eq!((none.angle, none.tx, none.ty), (0.0, 0.0, 0.0));
        assert_eq!(none.flip, a.flip);
    }
}
