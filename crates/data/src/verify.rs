//! Checking image files by decoding them whole, on a few threads, before anything relies on
//! them: a header can be fine while the pixels after it are cut off or corrupt, and a file
//! that only fails when it is decoded would stop a fine-tuning run halfway.

use std::fs;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use image::{ImageFormat, ImageReader};
use thiserror::Error;

/// Why an image file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageProblem {
    /// The file cannot be opened or read (the I/O error).
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// The file is not a PNG or JPEG image that decodes whole (the decoder's reason).
    #[error("{0}")]
    NotAnImage(String),
}

/// Checks an image file's bytes as [`Dataset::open`](crate::Dataset::open) checks every
/// image of a dataset: a PNG or JPEG that decodes whole, with pixels, and (a JPEG) reaches
/// its end-of-image marker.
pub fn check_image_bytes(bytes: &[u8]) -> Result<(), ImageProblem> {
    decode_bytes_whole(bytes).map(drop)
}

/// Decodes the image at `path` whole, as preprocessing will; returns its format (PNG or
/// JPEG). A JPEG must also reach its end-of-image marker: the JPEG decoder fills a file that
/// stops early with grey instead of failing, where Pillow (and so PyTorch) refuses it.
pub(crate) fn decode_whole(path: &Path) -> Result<ImageFormat, ImageProblem> {
    let bytes = fs::read(path).map_err(|e| ImageProblem::Unreadable(e.to_string()))?;
    decode_bytes_whole(&bytes)
}

/// [`decode_whole`] on a file's bytes.
fn decode_bytes_whole(bytes: &[u8]) -> Result<ImageFormat, ImageProblem> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageProblem::Unreadable(e.to_string()))?;
    let format = match reader.format() {
        Some(format @ (ImageFormat::Png | ImageFormat::Jpeg)) => format,
        Some(other) => {
            let name = other.extensions_str().first().copied().unwrap_or("other");
            return Err(ImageProblem::NotAnImage(format!(
                "{name} images are not supported"
            )));
        }
        None => return Err(ImageProblem::NotAnImage("unknown format".into())),
    };
    let image = reader
        .decode()
        .map_err(|e| ImageProblem::NotAnImage(e.to_string()))?;
    if image.width() == 0 || image.height() == 0 {
        return Err(ImageProblem::NotAnImage("no pixels".into()));
    }
    if format == ImageFormat::Jpeg {
        jpeg_reaches_its_end(bytes).map_err(ImageProblem::NotAnImage)?;
    }
    Ok(format)
}

/// Walks a JPEG's markers from start of image to end of image (`FF D9`): header segments by
/// their lengths, entropy-coded scan data up to the next marker. Fails when the file stops
/// first, which is what a cut-off download or copy looks like.
fn jpeg_reaches_its_end(data: &[u8]) -> Result<(), String> {
    let truncated = || {
        format!(
            "the JPEG data stops after {} bytes, before its end-of-image marker (the file is truncated)",
            data.len()
        )
    };
    let mut i = 2; // after start of image (`FF D8`), which decoding checked
    loop {
        // The next marker: `FF`, possibly repeated as fill, then its code. Stray bytes between
        // segments are skipped, as libjpeg does.
        i += data
            .get(i..)
            .and_then(|rest| rest.iter().position(|&b| b == 0xFF))
            .ok_or_else(truncated)?;
        while data.get(i) == Some(&0xFF) {
            i += 1;
        }
        let code = *data.get(i).ok_or_else(truncated)?;
        i += 1;
        match code {
            0xD9 => return Ok(()),
            // Markers without a length: start of image, TEM, restarts; 00 is a stuffed byte.
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let length = data.get(i..i + 2).ok_or_else(truncated)?;
        i += usize::from(u16::from_be_bytes([length[0], length[1]])).max(2);
        if i > data.len() {
            return Err(truncated());
        }
        if code == 0xDA {
            // Start of scan: entropy-coded data, in which `FF` is followed by a stuffed 00, a
            // restart marker or fill; anything else starts the next marker.
            loop {
                let at = data
                    .get(i..)
                    .and_then(|rest| rest.iter().position(|&b| b == 0xFF))
                    .ok_or_else(truncated)?;
                i += at;
                match data.get(i + 1) {
                    None => return Err(truncated()),
                    Some(0x00 | 0xD0..=0xD7) => i += 2,
                    Some(0xFF) => i += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

/// Applies `check` to every item on up to 8 threads, which take the next item as they
/// finish one (decoding times vary with image size); results are in item order. An item
/// whose check panics gets `panicked()` instead, and the others are unaffected.
pub(crate) fn check_all<T, R>(
    items: &[T],
    check: impl Fn(&T) -> R + Sync,
    panicked: impl Fn() -> R + Sync,
) -> Vec<R>
where
    T: Sync,
    R: Send,
{
    let threads = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(items.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            let result =
                catch_unwind(AssertUnwindSafe(|| check(item))).unwrap_or_else(|_| panicked());
            if let Ok(mut results) = results.lock() {
                results[i] = Some(result);
            }
        }
    };
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(work);
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(&panicked))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_all_keeps_item_order_and_isolates_panics() {
        let items: Vec<u32> = (0..100).collect();
        let results = check_all(
            &items,
            |&i| {
                assert!(i != 37, "decoder bug");
                i * 2
            },
            || u32::MAX,
        );
        assert_eq!(results.len(), 100);
        assert_eq!(results[36], 72);
        assert_eq!(results[37], u32::MAX);
        assert_eq!(results[99], 198);
        assert!(check_all(&[] as &[u32], |&i| i, || 0).is_empty());
    }

    #[test]
    fn a_jpeg_must_reach_its_end_of_image_marker() {
        let mut jpeg = Vec::new();
        let pixels: Vec<u8> = (0..32 * 24 * 3).map(|i| (i * 7 % 251) as u8).collect();
        image::RgbImage::from_raw(32, 24, pixels)
            .expect("pixels")
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .expect("jpeg encoded");
        assert_eq!(jpeg_reaches_its_end(&jpeg), Ok(()));
        // Trailing bytes after the end are allowed, as decoders allow them.
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"\0\0 trailer");
        assert_eq!(jpeg_reaches_its_end(&trailing), Ok(()));
        for cut in [jpeg.len() - 1, jpeg.len() / 2, 40, 3] {
            let message = jpeg_reaches_its_end(&jpeg[..cut]).expect_err("truncated");
            assert!(
                message.contains(&format!("stops after {cut} bytes")),
                "{message}"
            );
        }
    }

    #[test]
    fn decode_whole_names_the_format_or_the_reason() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let png = dir.path().join("a.png");
        image::GrayImage::new(3, 2).save(&png).expect("png written");
        assert_eq!(decode_whole(&png), Ok(ImageFormat::Png));
        let text = dir.path().join("b.png");
        fs::write(&text, "hello").expect("written");
        assert_eq!(
            decode_whole(&text),
            Err(ImageProblem::NotAnImage("unknown format".into()))
        );
        let missing = decode_whole(&dir.path().join("none.png")).expect_err("missing");
        assert!(
            missing.to_string().starts_with("cannot be read: "),
            "{missing}"
        );
    }
}
