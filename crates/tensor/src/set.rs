//! A model's tensors, sorted by name, with its digest.

use crate::digest::Digest;
use crate::tensor::{NamedTensor, TensorError, TensorView};

/// A set of named tensors (a model's weights), kept sorted by name with unique names.
///
/// The order is byte-wise by name, which is the canonical order of the digest and of
/// encoded messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorSet {
    tensors: Vec<NamedTensor>,
}

impl TensorSet {
    /// Creates a set from tensors in any order; a repeated name is an error.
    pub fn new(mut tensors: Vec<NamedTensor>) -> Result<Self, TensorError> {
        tensors.sort_unstable_by(|a, b| a.name().cmp(b.name()));
        if let Some(pair) = tensors.windows(2).find(|p| p[0].name() == p[1].name()) {
            return Err(TensorError::DuplicateName {
                tensor: pair[0].name().to_owned(),
            });
        }
        Ok(TensorSet { tensors })
    }

    /// Wraps tensors already sorted by unique name.
    pub(crate) fn from_sorted_unique(tensors: Vec<NamedTensor>) -> Self {
        debug_assert!(tensors.windows(2).all(|p| p[0].name() < p[1].name()));
        TensorSet { tensors }
    }

    /// Adds a tensor at its place; a name already present is an error.
    pub fn insert(&mut self, tensor: NamedTensor) -> Result<(), TensorError> {
        match self
            .tensors
            .binary_search_by(|t| t.name().cmp(tensor.name()))
        {
            Ok(_) => Err(TensorError::DuplicateName {
                tensor: tensor.name().to_owned(),
            }),
            Err(index) => {
                self.tensors.insert(index, tensor);
                Ok(())
            }
        }
    }

    /// Returns the tensor with this name.
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors
            .binary_search_by(|t| t.name().cmp(name))
            .ok()
            .map(|i| &self.tensors[i])
    }

    /// Returns the tensors in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, NamedTensor> {
        self.tensors.iter()
    }

    /// Returns the number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Tells whether the set has no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Returns the total size of the tensors' data in bytes.
    pub fn byte_size(&self) -> u64 {
        self.tensors.iter().map(|t| t.data().len() as u64).sum()
    }

    /// Returns the SHA-256 digest over names, dtypes, shapes and data (see [`Digest`]).
    pub fn digest(&self) -> Digest {
        Digest::of_sorted(self.tensors.iter().map(NamedTensor::view))
    }

    /// Returns a borrowed view of every tensor.
    pub fn view(&self) -> TensorSetView<'_> {
        TensorSetView {
            tensors: self.tensors.iter().map(NamedTensor::view).collect(),
        }
    }

    /// Returns the tensors in name order.
    pub fn into_tensors(self) -> Vec<NamedTensor> {
        self.tensors
    }
}

impl<'s> IntoIterator for &'s TensorSet {
    type Item = &'s NamedTensor;
    type IntoIter = std::slice::Iter<'s, NamedTensor>;

    fn into_iter(self) -> Self::IntoIter {
        self.tensors.iter()
    }
}

/// Borrowed tensors with the invariants of a [`TensorSet`], as decoded without copying.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorSetView<'a> {
    tensors: Vec<TensorView<'a>>,
}

impl<'a> TensorSetView<'a> {
    /// Creates a view from tensors in any order; a repeated name is an error.
    pub fn new(mut tensors: Vec<TensorView<'a>>) -> Result<Self, TensorError> {
        tensors.sort_unstable_by(|a, b| a.name().cmp(b.name()));
        if let Some(pair) = tensors.windows(2).find(|p| p[0].name() == p[1].name()) {
            return Err(TensorError::DuplicateName {
                tensor: pair[0].name().to_owned(),
            });
        }
        Ok(TensorSetView { tensors })
    }

    /// Returns the tensor with this name.
    pub fn get(&self, name: &str) -> Option<&TensorView<'a>> {
        self.tensors
            .binary_search_by(|t| t.name().cmp(name))
            .ok()
            .map(|i| &self.tensors[i])
    }

    /// Returns the tensors in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, TensorView<'a>> {
        self.tensors.iter()
    }

    /// Returns the number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Tells whether the view has no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Returns the total size of the tensors' data in bytes.
    pub fn byte_size(&self) -> u64 {
        self.tensors.iter().map(|t| t.data().len() as u64).sum()
    }

    /// Returns the same digest as [`TensorSet::digest`] of the copied tensors.
    pub fn digest(&self) -> Digest {
        Digest::of_sorted(self.tensors.iter().cloned())
    }

    /// Copies the tensors into an owned set.
    pub fn to_tensor_set(&self) -> TensorSet {
        TensorSet {
            tensors: self.tensors.iter().map(TensorView::to_tensor).collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn sample() -> TensorSet {
        TensorSet::new(vec![
            NamedTensor::from_f32("fc.weight", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
                .unwrap(),
            NamedTensor::from_i64("bn.num_batches_tracked", vec![], &[5]).unwrap(),
            NamedTensor::from_f32("fc.bias", vec![2], &[0.5, -0.5]).unwrap(),
        ])
        .unwrap()
    }

    #[test]
    fn sorted_unique_and_sized() {
        let set = sample();
        let names: Vec<&str> = set.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["bn.num_batches_tracked", "fc.bias", "fc.weight"]);
        assert_eq!(set.byte_size(), 8 + 8 + 24);
        assert_eq!(
            set.get("fc.bias").unwrap().to_f32_vec().unwrap(),
            [0.5, -0.5]
        );
        assert!(set.get("fc").is_none());
        let mut again = sample();
        assert_eq!(
            again.insert(NamedTensor::from_f32("fc.bias", vec![], &[0.0]).unwrap()),
            Err(TensorError::DuplicateName {
                tensor: "fc.bias".into()
            })
        );
        again
            .insert(NamedTensor::from_f32("conv.weight", vec![1], &[0.0]).unwrap())
            .unwrap();
        assert_eq!(again.iter().nth(1).unwrap().name(), "conv.weight");
        let dup = vec![
            NamedTensor::from_f32("a", vec![], &[0.0]).unwrap(),
            NamedTensor::from_f32("a", vec![], &[1.0]).unwrap(),
        ];
        assert!(matches!(
            TensorSet::new(dup),
            Err(TensorError::DuplicateName { .. })
        ));
        assert_eq!(set.view().to_tensor_set(), set);
    }

    /// The digest layout is a wire contract: this value was computed independently with
    /// Python's `hashlib.sha256` over the documented stream (see `Digest`).
    #[test]
    fn digest_matches_the_documented_layout() {
        let set = sample();
        assert_eq!(set.digest().to_hex(), KNOWN_DIGEST);
        assert_eq!(set.view().digest(), set.digest());
    }
    const KNOWN_DIGEST: &str = "0e0751d6f13e7f4bfa78aaf28512cbea6f09a4c5f182629e24a69808324a0c35";

    type Parts = (String, DType, Vec<u64>, Vec<u8>);

    /// Returns the digest of `sample()` with each tensor's parts passed through `f`.
    fn rebuilt(f: impl Fn(Parts) -> Parts) -> Digest {
        let tensors = sample()
            .into_tensors()
            .into_iter()
            .map(|t| {
                let (name, dtype, shape, data) = f(t.into_parts());
                NamedTensor::new(name, dtype, shape, data).unwrap()
            })
            .collect();
        TensorSet::new(tensors).unwrap().digest()
    }

    #[test]
    fn digest_changes_with_any_byte_name_shape_or_dtype() {
        let base = sample().digest();
        assert_eq!(rebuilt(|p| p), base);
        let mut seen = vec![base];
        let mut distinct = |digest: Digest, what: &str| {
            assert!(!seen.contains(&digest), "{what} did not change the digest");
            seen.push(digest);
        };
        // Every single byte of the weight data matters.
        for i in 0..24 {
            let flipped = rebuilt(|(n, d, s, mut b)| {
                if n == "fc.weight" {
                    b[i] ^= 0x01;
                }
                (n, d, s, b)
            });
            distinct(flipped, "a flipped data bit");
        }
        let renamed = rebuilt(|(n, d, s, b)| (n.replace("fc.bias", "fc.bias2"), d, s, b));
        distinct(renamed, "a renamed tensor");
        let reshaped = rebuilt(|(n, d, s, b)| {
            let s = if n == "fc.weight" { vec![3, 2] } else { s };
            (n, d, s, b)
        });
        distinct(reshaped, "a reshaped tensor");
        let retyped = rebuilt(|(n, d, s, b)| {
            let d = if n == "fc.bias" { DType::I32 } else { d };
            (n, d, s, b)
        });
        distinct(retyped, "a retyped tensor");
        let unit_dim = rebuilt(|(n, d, s, b)| {
            let s = if n == "fc.bias" { vec![2, 1] } else { s };
            (n, d, s, b)
        });
        distinct(unit_dim, "an added unit dimension");
        // Moving bytes between tensors (same total stream of data) changes it too.
        let moved = TensorSet::new(vec![
            NamedTensor::new("x", DType::U8, vec![1], vec![1]).unwrap(),
            NamedTensor::new("y", DType::U8, vec![2], vec![2, 3]).unwrap(),
        ])
        .unwrap()
        .digest();
        let moved2 = TensorSet::new(vec![
            NamedTensor::new("x", DType::U8, vec![2], vec![1, 2]).unwrap(),
            NamedTensor::new("y", DType::U8, vec![1], vec![3]).unwrap(),
        ])
        .unwrap()
        .digest();
        assert_ne!(moved, moved2);
    }
}
