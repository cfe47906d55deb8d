//! `preprocessor_config.json`: how images are turned into model input. AlphaMed's keys
//! (`size`, `do_affine`, `degrees`, `translate`, `do_horizontal_flip`, `image_mean`,
//! `image_std`) and the common Hugging Face image-processor keys are understood.
//!
//! Each step means what torchvision's transform means on a PIL image:
//!
//! | key | torchvision |
//! |---|---|
//! | `"size": N` (AlphaMed: exactly N x N, aspect ratio not kept) | `Resize((N, N))` |
//! | `"size": {"height": H, "width": W}` | `Resize((H, W))` |
//! | `"size": {"shortest_edge": N}` (aspect ratio kept) | `Resize(N)` |
//! | `"crop_size": N` or `{"height": H, "width": W}` | `CenterCrop(N)` / `CenterCrop((H, W))` |
//! | `"resample"` (PIL's numbers, 2 = bilinear by default) | `interpolation=` |
//! | `"rescale_factor"` (default 1/255) | `ToTensor()` |
//! | `"image_mean"`, `"image_std"` | `Normalize(mean, std)` |
//!
//! So torchvision's `Resize(256)` + `CenterCrop(224)` is
//! `{"size": {"shortest_edge": 256}, "crop_size": 224}`; `"size": 256` would squash.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::problem::{Position, Problem, Problems};
use crate::values::{describe, integer_at_least, number_in};

/// The preprocessor configuration's file name inside a package.
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

/// How images are resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// To exactly `height` x `width`, whatever the aspect ratio: torchvision's
    /// `Resize((height, width))`. `"size": {"height": H, "width": W}`, and AlphaMed's
    /// `"size": N`, which means N x N (`Resize((N, N))`, not `Resize(N)`).
    Exact {
        /// Output height.
        height: u32,
        /// Output width.
        width: u32,
    },
    /// So that the shorter side has this length and the longer `int(n * long / short)`,
    /// keeping the aspect ratio: torchvision's `Resize(n)`. `"size": {"shortest_edge": n}`
    /// (a `longest_edge` beside it is accepted but not applied).
    ShortestEdge(u32),
}

/// Training-only random affine transform.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Affine {
    /// Rotation range in degrees, `(min, max)`.
    pub degrees: (f64, f64),
    /// Maximum translation as fractions of width and height.
    pub translate: (f64, f64),
}

/// Per-channel normalisation after rescaling.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalize {
    /// Means, one per channel (or one for all).
    pub mean: Vec<f64>,
    /// Standard deviations, one per channel (or one for all), each > 0.
    pub std: Vec<f64>,
}

/// Resampling filter, with PIL's numbering as Hugging Face uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resample {
    /// 0
    Nearest,
    /// 1
    Lanczos,
    /// 2 (the default)
    Bilinear,
    /// 3
    Bicubic,
    /// 4
    Box,
    /// 5
    Hamming,
}

/// A parsed, valid preprocessor configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreprocessorConfig {
    /// Resize step, when enabled.
    pub resize: Option<Resize>,
    /// Centre crop to `(height, width)` after the resize, when enabled: torchvision's
    /// `CenterCrop`, zero-padded where the image is smaller.
    pub center_crop: Option<(u32, u32)>,
    /// Random affine augmentation (training only), when enabled.
    pub affine: Option<Affine>,
    /// Random horizontal flip (training only).
    pub horizontal_flip: bool,
    /// Factor applied to 0..255 pixel values, when rescaling is enabled (default 1/255).
    pub rescale_factor: Option<f64>,
    /// Normalisation, when enabled.
    pub normalize: Option<Normalize>,
    /// Resampling filter for resizing.
    pub resample: Resample,
}

impl PreprocessorConfig {
    /// Describes the training-only augmentation, as runs print it among their effective
    /// settings: `none`, or the random affine transform and flip that apply.
    pub fn augmentation(&self) -> String {
        let mut parts = Vec::new();
        if let Some(affine) = &self.affine {
            parts.push(format!(
                "random affine (rotation {} to {} degrees, shift up to {} x {} of the size)",
                affine.degrees.0, affine.degrees.1, affine.translate.0, affine.translate.1
            ));
        }
        if self.horizontal_flip {
            parts.push("random horizontal flip".to_owned());
        }
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

const BOOL_KEYS: &[&str] = &[
    "do_resize",
    "do_center_crop",
    "do_normalize",
    "do_rescale",
    "do_affine",
    "do_horizontal_flip",
    "do_convert_rgb",
];
/// Keys Hugging Face writes that carry no preprocessing meaning for the engine.
const METADATA_KEYS: &[&str] = &[
    "image_processor_type",
    "feature_extractor_type",
    "processor_class",
];
const VALUE_KEYS: &[&str] = &[
    "size",
    "crop_size",
    "degrees",
    "translate",
    "image_mean",
    "image_std",
    "resample",
    "rescale_factor",
];

/// Parses and checks `preprocessor_config.json`, adding every problem to `problems`.
/// Returns the configuration when it has no error.
pub fn parse_preprocessor(text: &str, problems: &mut Problems) -> Option<PreprocessorConfig> {
    let raw = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            problems.push(
                Problem::error(
                    PREPROCESSOR_FILE,
                    format!("is {}, not a JSON object", describe(&other)),
                )
                .expected("a JSON object of preprocessing keys"),
            );
            return None;
        }
        Err(error) => {
            problems.push(
                Problem::error(PREPROCESSOR_FILE, format!("is not valid JSON: {error}"))
                    .at(Some(Position {
                        line: error.line() as u64,
                        column: error.column() as u64,
                    }))
                    .expected("a JSON object"),
            );
            return None;
        }
    };
    let errors_before = problems.error_count();
    let mut p = Parser {
        raw: &raw,
        problems,
    };

    for key in raw.keys() {
        let known = BOOL_KEYS.contains(&key.as_str())
            || METADATA_KEYS.contains(&key.as_str())
            || VALUE_KEYS.contains(&key.as_str());
        if !known {
            let all: Vec<&str> = BOOL_KEYS.iter().chain(VALUE_KEYS).copied().collect();
            p.problems.push(
                Problem::warning(
                    PREPROCESSOR_FILE,
                    "is not a preprocessing key the engine knows; it is ignored",
                )
                .key(key)
                .expected(all.join(", ")),
            );
        }
    }
    let flags: Vec<Option<bool>> = BOOL_KEYS.iter().map(|k| p.flag(k)).collect();
    let flag = |key: &str| flags[BOOL_KEYS.iter().position(|k| *k == key).unwrap_or(0)];

    let size = p.size("size");
    let resize = match (flag("do_resize"), size) {
        (Some(false), _) => None,
        (Some(true), None) if !raw.contains_key("size") => {
            p.error(
                "do_resize",
                "is true but `size` is missing".into(),
                "`size` as a number or {\"height\", \"width\"} or {\"shortest_edge\"}",
            );
            None
        }
        (_, size) => size,
    };
    let crop = p.size("crop_size");
    let center_crop = match (flag("do_center_crop"), crop) {
        (Some(false), _) => None,
        (Some(true), None) if !raw.contains_key("crop_size") => {
            p.error(
                "do_center_crop",
                "is true but `crop_size` is missing".into(),
                "`crop_size` as a number or {\"height\", \"width\"}",
            );
            None
        }
        (_, Some(Resize::ShortestEdge(_))) => {
            p.error(
                "crop_size",
                "cannot be a shortest edge".into(),
                "a number or {\"height\", \"width\"}",
            );
            None
        }
        (_, Some(Resize::Exact { height, width })) => Some((height, width)),
        (_, None) => None,
    };

    let degrees = p.range("degrees", 180.0, true);
    let translate = p.range("translate", 1.0, false);
    let affine = if flag("do_affine") == Some(true) {
        Some(Affine {
            degrees: degrees.unwrap_or((0.0, 0.0)),
            translate: translate.unwrap_or((0.0, 0.0)),
        })
    } else {
        for key in ["degrees", "translate"] {
            if raw.contains_key(key) {
                p.problems.push(
                    Problem::warning(
                        PREPROCESSOR_FILE,
                        "is ignored because `do_affine` is not true",
                    )
                    .key(key)
                    .expected("\"do_affine\": true to enable the random affine transform"),
                );
            }
        }
        None
    };

    let rescale = match raw.get("rescale_factor") {
        None => Some(1.0 / 255.0),
        Some(v) => number_in(v, f64::MIN_POSITIVE, f64::MAX).or_else(|| {
            p.error(
                "rescale_factor",
                format!("is {}", describe(v)),
                "a number greater than 0, such as 0.00392156862745098 (1/255)",
            );
            None
        }),
    };
    let rescale_factor = if flag("do_rescale") == Some(false) {
        None
    } else {
        rescale
    };

    let mean = p.channels("image_mean", f64::NEG_INFINITY);
    let std = p.channels("image_std", 0.0);
    let normalize = match (flag("do_normalize"), mean, std) {
        (Some(false), _, _) => None,
        (_, Some(mean), Some(std)) => {
            if mean.len() != std.len() {
                p.error(
                    "image_std",
                    format!(
                        "has {} values but `image_mean` has {}",
                        std.len(),
                        mean.len()
                    ),
                    "as many standard deviations as means",
                );
                None
            } else {
                Some(Normalize { mean, std })
            }
        }
        (explicit, None, None) => {
            if explicit == Some(true)
                && !raw.contains_key("image_mean")
                && !raw.contains_key("image_std")
            {
                p.error(
                    "do_normalize",
                    "is true but `image_mean` and `image_std` are missing".into(),
                    "`image_mean` and `image_std` lists, one value per channel",
                );
            }
            None
        }
        (_, mean, _) => {
            // Exactly one of the two is present (or one of them was reported as invalid).
            let (missing, present) = if mean.is_some() {
                ("image_std", "image_mean")
            } else {
                ("image_mean", "image_std")
            };
            if !raw.contains_key(missing) {
                p.error(
                    present,
                    format!("is given without `{missing}`"),
                    "both `image_mean` and `image_std`",
                );
            }
            None
        }
    };

    let resample = match raw.get("resample") {
        None => Resample::Bilinear,
        Some(v) => {
            match v.as_u64() {
                Some(0) => Resample::Nearest,
                Some(1) => Resample::Lanczos,
                Some(2) => Resample::Bilinear,
                Some(3) => Resample::Bicubic,
                Some(4) => Resample::Box,
                Some(5) => Resample::Hamming,
                _ => {
                    p.error("resample", format!("is {}", describe(v)), "0 (nearest), 1 (lanczos), 2 (bilinear), 3 (bicubic), 4 (box) or 5 (hamming)");
                    Resample::Bilinear
                }
            }
        }
    };

    if problems.error_count() > errors_before {
        return None;
    }
    Some(PreprocessorConfig {
        resize,
        center_crop,
        affine,
        horizontal_flip: flag("do_horizontal_flip") == Some(true),
        rescale_factor,
        normalize,
        resample,
    })
}

struct Parser<'a> {
    raw: &'a Map<String, Value>,
    problems: &'a mut Problems,
}

impl Parser<'_> {
    fn error(&mut self, key: &str, message: String, expected: &str) {
        self.problems.push(
            Problem::error(PREPROCESSOR_FILE, message)
                .key(key)
                .expected(expected),
        );
    }

    fn flag(&mut self, key: &str) -> Option<bool> {
        match self.raw.get(key)? {
            Value::Bool(b) => Some(*b),
            v => {
                let message = format!("is {}", describe(v));
                self.error(key, message, "true or false");
                None
            }
        }
    }

    /// `size` / `crop_size`: a number, `{height, width}` or `{shortest_edge}`.
    fn size(&mut self, key: &str) -> Option<Resize> {
        let value = self.raw.get(key)?;
        let pixels = |v: &Value| integer_at_least(v, 1).and_then(|n| u32::try_from(n).ok());
        let parsed = match value {
            Value::Number(_) => pixels(value).map(|n| Resize::Exact {
                height: n,
                width: n,
            }),
            Value::Object(map) => {
                let get = |k: &str| map.get(k).and_then(pixels);
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                match keys.as_slice() {
                    ["shortest_edge"]
                    | ["shortest_edge", "longest_edge"]
                    | ["longest_edge", "shortest_edge"] => {
                        get("shortest_edge").map(Resize::ShortestEdge)
                    }
                    _ if keys.len() == 2
                        && map.contains_key("height")
                        && map.contains_key("width") =>
                    {
                        get("height")
                            .zip(get("width"))
                            .map(|(height, width)| Resize::Exact { height, width })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if parsed.is_none() {
            let message = format!("is {}", describe(value));
            self.error(key, message, "a whole number of pixels >= 1, {\"height\": H, \"width\": W} or {\"shortest_edge\": N}");
        }
        parsed
    }

    /// `degrees` (symmetric when one number; may be negative in a pair) and `translate`
    /// (fractions in 0..=1).
    fn range(&mut self, key: &str, limit: f64, signed: bool) -> Option<(f64, f64)> {
        let value = self.raw.get(key)?;
        let lo = if signed { -limit } else { 0.0 };
        let parsed = match value {
            Value::Number(_) => {
                number_in(value, 0.0, limit).map(|x| if signed { (-x, x) } else { (x, x) })
            }
            Value::Array(items) if items.len() == 2 => {
                let a = number_in(&items[0], lo, limit);
                let b = number_in(&items[1], lo, limit);
                match (a, b) {
                    (Some(a), Some(b)) if !signed || a <= b => Some((a, b)),
                    _ => None,
                }
            }
            _ => None,
        };
        if parsed.is_none() {
            let message = format!("is {}", describe(value));
            let expected = if signed {
                format!(
                    "a number of degrees in 0..={limit}, or a pair [min, max] within -{limit}..={limit}"
                )
            } else {
                "a pair [horizontal, vertical] of fractions in 0..=1, or one fraction for both"
                    .to_owned()
            };
            self.error(key, message, &expected);
        }
        parsed
    }

    /// `image_mean` / `image_std`: one number, or a list of 1 or 3 numbers above `min`.
    fn channels(&mut self, key: &str, min: f64) -> Option<Vec<f64>> {
        let value = self.raw.get(key)?;
        let valid = |v: &Value| v.as_f64().filter(|x| x.is_finite() && *x > min);
        let parsed = match value {
            Value::Number(_) => valid(value).map(|x| vec![x]),
            Value::Array(items) if items.len() == 1 || items.len() == 3 => {
                items.iter().map(valid).collect()
            }
            _ => None,
        };
        if parsed.is_none() {
            let message = format!("is {}", describe(value));
            let expected = if min == 0.0 {
                "a list of 3 numbers greater than 0 (one per channel), or 1 for grey images"
            } else {
                "a list of 3 numbers (one per channel), or 1 for grey images"
            };
            self.error(key, message, expected);
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<PreprocessorConfig>, Problems) {
        let mut problems = Problems::default();
        let config = parse_preprocessor(text, &mut problems);
        (config, problems)
    }

    #[test]
    fn alphamed_keys() {
        let (config, problems) = parse(
            r#"{"size": 224, "do_affine": true, "degrees": 10, "translate": [0.1, 0.2],
                "do_horizontal_flip": true, "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225]}"#,
        );
        assert!(problems.is_empty(), "{problems}");
        let c = config.expect("valid");
        assert_eq!(
            c.resize,
            Some(Resize::Exact {
                height: 224,
                width: 224
            })
        );
        assert_eq!(
            c.affine,
            Some(Affine {
                degrees: (-10.0, 10.0),
                translate: (0.1, 0.2)
            })
        );
        assert!(c.horizontal_flip);
        assert_eq!(c.rescale_factor, Some(1.0 / 255.0));
        assert_eq!(
            c.normalize.expect("normalize").std,
            vec![0.229, 0.224, 0.225]
        );
    }

    #[test]
    fn hugging_face_keys() {
        let (config, problems) = parse(
            r#"{"do_resize": true, "size": {"shortest_edge": 256}, "do_center_crop": true,
                "crop_size": {"height": 224, "width": 224}, "resample": 3, "do_rescale": true,
                "rescale_factor": 0.5, "do_normalize": false, "image_mean": [0.5], "image_std": [0.5],
                "image_processor_type": "ViTImageProcessor", "size_divisor": 32}"#,
        );
        let c = config.expect("valid");
        assert_eq!(c.resize, Some(Resize::ShortestEdge(256)));
        assert_eq!(c.center_crop, Some((224, 224)));
        assert_eq!(c.resample, Resample::Bicubic);
        assert_eq!(c.rescale_factor, Some(0.5));
        assert_eq!(c.normalize, None);
        // Only the unknown key warns; metadata keys are accepted silently.
        assert_eq!(problems.len(), 1, "{problems}");
        assert_eq!(problems.as_slice()[0].key.as_deref(), Some("size_divisor"));
    }

    #[test]
    fn wrong_types_and_ranges_are_all_reported() {
        let (config, problems) = parse(
            r#"{"size": "big", "do_affine": "yes", "degrees": 400, "translate": [0.1, 2],
                "do_horizontal_flip": 1, "image_mean": [0.5, 0.5], "image_std": [0, 1, 1],
                "resample": 9, "rescale_factor": -1}"#,
        );
        assert!(config.is_none());
        let keys: Vec<_> = problems
            .iter()
            .filter(|p| p.is_error())
            .filter_map(|p| p.key.as_deref())
            .collect();
        for key in [
            "size",
            "do_affine",
            "degrees",
            "translate",
            "do_horizontal_flip",
            "image_mean",
            "image_std",
            "resample",
            "rescale_factor",
        ] {
            assert!(keys.contains(&key), "{key} not reported: {problems}");
        }
    }
}
