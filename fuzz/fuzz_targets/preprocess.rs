//! An image file from a dataset, as the engine sees one: checked whole as `Dataset::open`
//! checks every image (`fl_data::check_image_bytes`), then decoded and preprocessed by
//! `fl_data::Preprocessor` under a configuration chosen by the input's first two bytes.
//!
//! Input: `[mode, size, image file bytes...]`. `mode` picks the resize (none, exact,
//! shortest edge + centre crop, exact + larger crop that pads), grey or RGB, the resampling
//! filter, normalisation and augmentation; `size` the output side (1..=64).

#![no_main]

use std::io::Cursor;

use fl_data::{AugmentKey, Preprocessor};
use fl_package::{Affine, Normalize, PreprocessorConfig, Resample, Resize};
use libfuzzer_sys::fuzz_target;

/// Images declaring more pixels than this are skipped: decoding one is bounded by the
/// decoder's own allocation limit (512 MiB), but decoding and turning it into `f32` planes
/// takes seconds and gigabytes, which makes a slow input for the fuzzer, not a bug; the same
/// decoder paths run on smaller images.
const MAX_PIXELS: u64 = 1 << 18;

const RESAMPLE: [Resample; 6] = [
    Resample::Nearest,
    Resample::Lanczos,
    Resample::Bilinear,
    Resample::Bicubic,
    Resample::Box,
    Resample::Hamming,
];

fuzz_target!(|data: &[u8]| {
    let [mode, size, image @ ..] = data else {
        return;
    };
    let Some((width, height)) = image::ImageReader::new(Cursor::new(image))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok())
    else {
        // Not even a header: both must still fail cleanly.
        let _ = fl_data::check_image_bytes(image);
        let _ = Preprocessor::new(None, 3).load_bytes(image, None);
        return;
    };
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return;
    }
    let _ = fl_data::check_image_bytes(image);

    let channels = if mode & 0x10 == 0 { 1 } else { 3 };
    let config = config(*mode, *size, width, height, channels);
    let preprocessor = Preprocessor::new(config.as_ref(), channels);
    let augment = (mode & 0x20 != 0).then_some(AugmentKey {
        seed: u64::from(*size),
        epoch: u64::from(*mode),
        index: image.len() as u64,
    });
    if let Ok(out) = preprocessor.load_bytes(image, augment) {
        assert_eq!(out.data.len(), out.shape().iter().product::<usize>());
        assert_eq!(out.channels, preprocessor.channels());
        if let Some(config) = &config {
            if let Some((h, w)) = config.center_crop {
                assert_eq!((out.height, out.width), (h as usize, w as usize));
            } else if let Some(Resize::Exact { height, width }) = config.resize {
                assert_eq!((out.height, out.width), (height as usize, width as usize));
            }
        } else {
            assert_eq!((out.height, out.width), (height as usize, width as usize));
        }
    }
});

/// The configuration `mode` and `size` pick; `None` is a package without
/// `preprocessor_config.json`.
fn config(
    mode: u8,
    size: u8,
    width: u32,
    height: u32,
    channels: u32,
) -> Option<PreprocessorConfig> {
    let side = u32::from(size % 64) + 1;
    let (resize, center_crop) = match mode & 0x03 {
        0 => return None,
        1 => (
            Some(Resize::Exact {
                height: side,
                width: u32::from(size / 64) * 7 + 1,
            }),
            None,
        ),
        2 => {
            // Shortest edge keeps the aspect ratio: bound the longer side it gives.
            let (short, long) = (width.min(height).max(1), width.max(height));
            let longer = u64::from(side) * u64::from(long) / u64::from(short);
            if longer > 4096 {
                return None;
            }
            (Some(Resize::ShortestEdge(side)), Some((side, side)))
        }
        _ => (
            Some(Resize::Exact {
                height: side,
                width: side,
            }),
            // A crop larger than the image pads it.
            Some((side + u32::from(size % 5), side + u32::from(size % 3))),
        ),
    };
    Some(PreprocessorConfig {
        resize,
        center_crop,
        affine: (mode & 0x40 != 0).then_some(Affine {
            degrees: (-f64::from(size % 181), f64::from(size % 181)),
            translate: (f64::from(size % 11) / 10.0, f64::from(size % 7) / 6.0),
        }),
        horizontal_flip: mode & 0x80 != 0,
        rescale_factor: (mode & 0x08 == 0).then_some(1.0 / 255.0),
        normalize: (mode & 0x04 != 0).then(|| match channels {
            1 => Normalize {
                mean: vec![0.5],
                std: vec![0.25],
            },
            _ => Normalize {
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            },
        }),
        resample: RESAMPLE[usize::from(size) % RESAMPLE.len()],
    })
}
