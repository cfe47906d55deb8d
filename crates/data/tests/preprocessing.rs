//! Preprocessing real PNG and JPEG files: known pixels in, known values out.

#![allow(clippy::unwrap_used)]

mod common;

use common::TempDataset;
use fl_data::{AugmentKey, DataError, Image, Preprocessor};
use fl_package::{Affine, Normalize, PreprocessorConfig, Resample, Resize};

fn config() -> PreprocessorConfig {
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

fn key(epoch: u64, index: u64) -> AugmentKey {
    AugmentKey {
        seed: 7,
        epoch,
        index,
    }
}

fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() < 1e-5, "{actual:?} != {expected:?}");
    }
}

#[test]
fn without_config_grey_becomes_rgb_scaled_to_unit_range() {
    let ds = TempDataset::new();
    let path = ds.grey_pixels("g.png", 2, 1, vec![0, 255]);
    let image = Preprocessor::new(None, 3).load(&path, None).unwrap();
    assert_eq!(image.shape(), [3, 1, 2]);
    assert_eq!(image.data, [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn rgb_becomes_grey_by_luminance_and_channels_are_planar() {
    let ds = TempDataset::new();
    let path = ds.rgb_pixels("c.png", 2, 1, vec![255, 0, 0, 0, 0, 255]);
    let grey = Preprocessor::new(None, 1).load(&path, None).unwrap();
    // PIL's L: 0.299 R + 0.587 G + 0.114 B, rounded: 76 and 29.
    assert_close(&grey.data, &[76.0 / 255.0, 29.0 / 255.0]);
    let rgb = Preprocessor::new(None, 3).load(&path, None).unwrap();
    // CHW: the red plane, then green, then blue.
    assert_eq!(rgb.data, [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn normalize_uses_one_or_per_channel_values_after_rescaling() {
    let ds = TempDataset::new();
    let path = ds.grey_pixels("g.png", 3, 1, vec![0, 255, 51]);
    let mut c = config();
    c.normalize = Some(Normalize {
        mean: vec![0.5],
        std: vec![0.25],
    });
    let image = Preprocessor::new(Some(&c), 1).load(&path, None).unwrap();
    assert_close(&image.data, &[-2.0, 2.0, -1.2]);

    c.normalize = Some(Normalize {
        mean: vec![0.0, 0.5, 1.0],
        std: vec![1.0, 0.5, 0.25],
    });
    let image = Preprocessor::new(Some(&c), 3).load(&path, None).unwrap();
    assert_close(
        &image.data,
        &[0.0, 1.0, 0.2, -1.0, 1.0, -0.6, -4.0, 0.0, -3.2],
    );

    // No rescale: raw 0..255 values.
    c.rescale_factor = None;
    c.normalize = None;
    let image = Preprocessor::new(Some(&c), 1).load(&path, None).unwrap();
    assert_eq!(image.data, [0.0, 255.0, 51.0]);
}

#[test]
fn normalize_values_must_fit_the_channel_count() {
    let ds = TempDataset::new();
    let path = ds.grey("g.png", 2, 2, 0);
    let mut c = config();
    c.normalize = Some(Normalize {
        mean: vec![0.1, 0.2, 0.3],
        std: vec![1.0, 1.0, 1.0],
    });
    let p = Preprocessor::new(Some(&c), 1);
    assert!(matches!(
        p.validate(),
        Err(DataError::ChannelMismatch {
            key: "image_mean",
            values: 3,
            channels: 1
        })
    ));
    assert!(p.load(&path, None).is_err());
}

#[test]
fn resize_and_center_crop_give_the_configured_shape() {
    let ds = TempDataset::new();
    let path = ds.grey("g.png", 16, 8, 100);
    let mut c = config();
    c.resize = Some(Resize::Exact {
        height: 4,
        width: 6,
    });
    let image = Preprocessor::new(Some(&c), 3).load(&path, None).unwrap();
    assert_eq!(image.shape(), [3, 4, 6]);
    // A uniform image stays uniform whatever the filter.
    assert!(image.data.iter().all(|v| (v - 100.0 / 255.0).abs() < 1e-3));

    c.resize = Some(Resize::ShortestEdge(4));
    let image = Preprocessor::new(Some(&c), 1).load(&path, None).unwrap();
    assert_eq!(image.shape(), [1, 4, 8]);

    c.center_crop = Some((2, 3));
    let image = Preprocessor::new(Some(&c), 1).load(&path, None).unwrap();
    assert_eq!(image.shape(), [1, 2, 3]);
}

#[test]
fn nearest_resize_replicates_pixels() {
    let ds = TempDataset::new();
    let path = ds.grey_pixels("g.png", 2, 2, vec![0, 51, 102, 153]);
    let mut c = config();
    c.rescale_factor = None;
    c.resample = Resample::Nearest;
    c.resize = Some(Resize::Exact {
        height: 4,
        width: 4,
    });
    let image = Preprocessor::new(Some(&c), 1).load(&path, None).unwrap();
    #[rustfmt::skip]
    let expected = [
        0.0, 0.0, 51.0, 51.0,
        0.0, 0.0, 51.0, 51.0,
        102.0, 102.0, 153.0, 153.0,
        102.0, 102.0, 153.0, 153.0,
    ];
    assert_eq!(image.data, expected);
}

#[test]
fn jpeg_files_are_decoded() {
    let ds = TempDataset::new();
    let path = ds.rgb_pixels("c.jpg", 8, 8, [200u8, 100, 50].repeat(64));
    let image = Preprocessor::new(None, 3).load(&path, None).unwrap();
    assert_eq!(image.shape(), [3, 8, 8]);
    let mean = |c: usize| image.data[c * 64..(c + 1) * 64].iter().sum::<f32>() / 64.0;
    for (c, expected) in [200.0, 100.0, 50.0].into_iter().enumerate() {
        assert!((mean(c) * 255.0 - expected).abs() < 4.0, "channel {c}");
    }
}

#[test]
fn undecodable_files_are_errors_naming_the_file() {
    let ds = TempDataset::new();
    let path = ds.bytes("bad.png", b"\x89PNG\r\n\x1a\nnope");
    let message = Preprocessor::new(None, 1)
        .load(&path, None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("bad.png"), "{message}");
}

/// A 4x3 image whose pixels all differ, so any flip or warp shows.
fn ramp(ds: &TempDataset) -> std::path::PathBuf {
    ds.grey_pixels("r.png", 4, 3, (0..12).map(|v| v * 20).collect())
}

fn mirrored(image: &Image) -> Vec<f32> {
    image
        .data
        .chunks(image.width)
        .flat_map(|row| row.iter().rev().copied())
        .collect()
}

#[test]
fn horizontal_flip_mirrors_pixels_for_about_half_the_keys() {
    let ds = TempDataset::new();
    let path = ramp(&ds);
    let mut c = config();
    c.horizontal_flip = true;
    let p = Preprocessor::new(Some(&c), 1);
    let plain = p.load(&path, None).unwrap();
    let mut flipped = 0;
    for index in 0..40 {
        let out = p.load(&path, Some(key(0, index))).unwrap();
        if out.data == plain.data {
            continue;
        }
        assert_eq!(out.data, mirrored(&plain), "only a mirror image may differ");
        flipped += 1;
    }
    assert!((8..=32).contains(&flipped), "{flipped} of 40 flipped");
}

#[test]
fn augmentation_is_a_pure_function_of_the_key() {
    let ds = TempDataset::new();
    let path = ds.grey_pixels("r.png", 8, 8, (0..64).map(|v| v * 4).collect());
    let mut c = config();
    c.affine = Some(Affine {
        degrees: (-30.0, 30.0),
        translate: (0.25, 0.25),
    });
    c.horizontal_flip = true;
    let p = Preprocessor::new(Some(&c), 1);
    let plain = p.load(&path, None).unwrap();
    let a = p.load(&path, Some(key(3, 5))).unwrap();
    assert_eq!(a, p.load(&path, Some(key(3, 5))).unwrap());
    assert_ne!(a.data, plain.data);
    assert_ne!(a.data, p.load(&path, Some(key(4, 5))).unwrap().data);
    assert_ne!(a.data, p.load(&path, Some(key(3, 6))).unwrap().data);
    assert_eq!(a.shape(), plain.shape());
    // Zero fill and bilinear sampling keep values within the input's range.
    assert!(a.data.iter().all(|v| (0.0..=1.0).contains(v)));

    // Without augmentation steps in the configuration, keys change nothing.
    let p = Preprocessor::new(Some(&config()), 1);
    assert_eq!(p.load(&path, Some(key(3, 5))).unwrap(), plain);
}

#[test]
fn the_decoded_cache_gives_exactly_what_decoding_gives_and_skips_the_file() {
    let ds = TempDataset::new();
    let pixels: Vec<u8> = (0..64u8).map(|v| v * 3).collect();
    let path = ds.grey_pixels("a.png", 8, 8, pixels);
    let mut c = config();
    c.affine = Some(Affine {
        degrees: (-20.0, 20.0),
        translate: (0.2, 0.2),
    });
    c.horizontal_flip = true;
    let plain = Preprocessor::new(Some(&c), 1);
    let cached = Preprocessor::new(Some(&c), 1).with_cache(1 << 20);
    for k in [None, Some(key(0, 1)), Some(key(3, 1))] {
        let first = cached.load(&path, k).unwrap();
        assert_eq!(first, plain.load(&path, k).unwrap(), "{k:?}");
    }
    // A hit does not touch the file any more; without a cache the file is needed.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        cached.load(&path, Some(key(5, 1))).unwrap().shape(),
        [1, 8, 8]
    );
    assert!(plain.load(&path, None).is_err());
    // A budget too small for the image caches nothing.
    let tiny = Preprocessor::new(Some(&c), 1).with_cache(16);
    let other = ds.grey("b.png", 8, 8, 9);
    tiny.load(&other, None).unwrap();
    std::fs::remove_file(&other).unwrap();
    assert!(tiny.load(&other, None).is_err());
}

#[test]
fn bytes_in_memory_give_what_the_file_gives_and_are_checked_as_datasets_check_files() {
    let ds = TempDataset::new();
    let pixels: Vec<u8> = (0..48u8).map(|v| v * 5).collect();
    let path = ds.rgb_pixels("c.jpg", 4, 4, pixels);
    let bytes = std::fs::read(&path).unwrap();
    let mut c = config();
    c.resize = Some(Resize::ShortestEdge(3));
    c.horizontal_flip = true;
    for channels in [1, 3] {
        let p = Preprocessor::new(Some(&c), channels);
        for k in [None, Some(key(1, 2))] {
            assert_eq!(p.load_bytes(&bytes, k).unwrap(), p.load(&path, k).unwrap());
        }
    }
    assert_eq!(fl_data::check_image_bytes(&bytes), Ok(()));

    let p = Preprocessor::new(None, 3);
    let garbage = p.load_bytes(b"not an image", None).unwrap_err();
    assert!(
        matches!(garbage, DataError::DecodeBytes { .. }),
        "{garbage}"
    );
    assert!(p.load_bytes(&[], None).is_err());
    // A JPEG cut short decodes (padded with grey) but is not a whole image.
    let cut = &bytes[..bytes.len() - 2];
    assert!(p.load_bytes(cut, None).is_ok());
    let problem = fl_data::check_image_bytes(cut).unwrap_err();
    assert!(problem.to_string().contains("truncated"), "{problem}");
}
