//! The `--split` fractions of an import: how much of each label goes to Train, Validation
//! and Test.

use crate::import::ImportError;
use crate::report::Split;

/// What `--split` accepts, for error messages.
pub(crate) const SPLIT_EXPECTED: &str = "three non-negative fractions for Train, Validation and Test that sum to 1, such as 0.8,0.1,0.1";

/// How far from 1 the split fractions may sum.
const SPLIT_TOLERANCE: f64 = 1e-6;

/// The fractions of each label's images that go to Train, Validation and Test: three
/// non-negative numbers that sum to 1 (within 1e-6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    fractions: [f64; 3],
}

impl SplitFractions {
    /// Returns the fractions `train`, `validation`, `test`, checked.
    pub fn new(train: f64, validation: f64, test: f64) -> Result<Self, ImportError> {
        let shown = format!("{train},{validation},{test}");
        Self::checked([train, validation, test], &shown)
    }

    /// Parses `--split` text: three comma-separated numbers, such as `0.8,0.1,0.1`.
    pub fn parse(text: &str) -> Result<Self, ImportError> {
        let invalid = |problem: String| ImportError::InvalidSplit {
            value: text.to_owned(),
            problem,
        };
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        if parts.len() != 3 {
            return Err(invalid(format!("has {} values", parts.len())));
        }
        let mut fractions = [0.0; 3];
        for (slot, part) in fractions.iter_mut().zip(&parts) {
            *slot = part
                .parse::<f64>()
                .map_err(|_| invalid(format!("has `{part}`, which is not a number")))?;
        }
        Self::checked(fractions, text)
    }

    fn checked(fractions: [f64; 3], shown: &str) -> Result<Self, ImportError> {
        let invalid = |problem: String| ImportError::InvalidSplit {
            value: shown.to_owned(),
            problem,
        };
        if let Some(bad) = fractions.iter().find(|f| !f.is_finite() || **f < 0.0) {
            return Err(invalid(format!(
                "has {bad}, which is not a non-negative number"
            )));
        }
        let sum: f64 = fractions.iter().sum();
        if (sum - 1.0).abs() > SPLIT_TOLERANCE {
            return Err(invalid(format!("sums to {sum}")));
        }
        Ok(Self { fractions })
    }

    /// Returns the fraction for `split`.
    pub fn get(&self, split: Split) -> f64 {
        self.fractions[split as usize]
    }

    /// Returns the fractions in [`Split::ALL`] order.
    pub fn as_array(&self) -> [f64; 3] {
        self.fractions
    }
}

/// 0.8, 0.1, 0.1.
impl Default for SplitFractions {
    fn default() -> Self {
        Self {
            fractions: [0.8, 0.1, 0.1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_checked_and_errors_name_the_flag() {
        let ok = SplitFractions::parse(" 0.7, 0.2 ,0.1").expect("valid");
        assert_eq!(ok.get(Split::Validation), 0.2);
        assert_eq!(ok.as_array(), [0.7, 0.2, 0.1]);
        assert!(SplitFractions::parse("1,0,0").is_ok());
        assert!(SplitFractions::parse("0.3333333,0.3333333,0.3333334").is_ok());
        assert_eq!(SplitFractions::default().as_array(), [0.8, 0.1, 0.1]);
        for (text, problem) in [
            ("0.8,0.2", "has 2 values"),
            ("0.8,0.1,x", "has `x`, which is not a number"),
            (
                "1.2,-0.1,-0.1",
                "has -0.1, which is not a non-negative number",
            ),
            ("0.8,0.1,0.2", "sums to 1.1"),
            ("NaN,0,1", "has NaN, which is not a non-negative number"),
        ] {
            let message = SplitFractions::parse(text).expect_err(text).to_string();
            assert!(
                message.starts_with(&format!("--split `{text}` {problem}")),
                "{message}"
            );
            assert!(message.contains("such as 0.8,0.1,0.1"), "{message}");
        }
        let message = SplitFractions::new(0.5, 0.5, 0.5)
            .expect_err("sum")
            .to_string();
        assert!(
            message.starts_with("--split `0.5,0.5,0.5` sums to 1.5"),
            "{message}"
        );
    }
}
