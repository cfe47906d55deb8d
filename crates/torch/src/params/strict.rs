//! Strict loading of named tensors into a [`VarStore`], and the store's tensors in a
//! deterministic order.

use std::collections::{HashMap, HashSet};
use std::fmt;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::ParamError;

use crate::registry::BATCH_COUNTER;

/// What [`load_strict`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Variables copied: every variable of the store.
    pub loaded: usize,
    /// Entries accepted without a variable: BatchNorm `num_batches_tracked` counters.
    pub ignored: Vec<String>,
    /// Counter variables the tensors did not name, which kept their values.
    pub kept: Vec<String>,
    /// Variables whose tensor had another dtype and was converted: (name, from, to).
    pub converted: Vec<(String, Kind, Kind)>,
}

/// A tensor whose shape differs from its variable's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The name.
    pub name: String,
    /// The variable's shape.
    pub expected: Vec<i64>,
    /// The given tensor's shape.
    pub found: Vec<i64>,
}

/// Every way the given tensors differ from a store's variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrictMismatch {
    /// Variables with no tensor of that name (sorted).
    pub missing: Vec<String>,
    /// Tensors with no variable of that name (in the given order).
    pub unexpected: Vec<String>,
    /// Tensors whose shape is not exactly the variable's (in the given order).
    pub wrong_shape: Vec<ShapeMismatch>,
    /// Names given more than once.
    pub duplicated: Vec<String>,
}

impl StrictMismatch {
    fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.wrong_shape.is_empty()
            && self.duplicated.is_empty()
    }
}

impl fmt::Display for StrictMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |names: &[String]| {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} missing: {}",
                self.missing.len(),
                quoted(&self.missing)
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected: {}",
                self.unexpected.len(),
                quoted(&self.unexpected)
            ));
        }
        if !self.wrong_shape.is_empty() {
            let shapes: Vec<String> = self
                .wrong_shape
                .iter()
                .map(|m| format!("`{}` (model {:?}, file {:?})", m.name, m.expected, m.found))
                .collect();
            parts.push(format!(
                "{} with the wrong shape: {}",
                shapes.len(),
                shapes.join(", ")
            ));
        }
        if !self.duplicated.is_empty() {
            parts.push(format!(
                "{} given twice: {}",
                self.duplicated.len(),
                quoted(&self.duplicated)
            ));
        }
        write!(
            f,
            "the tensors do not match the model's variables, so nothing was loaded: {}; \
             accepted: exactly the model's variable names with the same shapes, plus BatchNorm \
             `{BATCH_COUNTER}` counters",
            parts.join("; ")
        )
    }
}

/// Loads `tensors` into the variables of `vs`, all or nothing.
///
/// Every variable must be given exactly once with exactly its shape (no broadcasting, unlike
/// [`VarStore::load`]); tensors are converted to the variable's dtype and device. Missing,
/// unexpected, mis-shaped and duplicated names are all collected and reported together in one
/// [`ParamError::Strict`], and nothing is copied unless everything matches.
///
/// BatchNorm counters (`<prefix>.num_batches_tracked`, beside a `<prefix>.running_mean`
/// variable) follow PyTorch's `load_state_dict`: a counter variable the tensors do not name
/// keeps its value (older files lack them; listed in [`LoadReport::kept`]), and a counter
/// entry holding a single value for a store without that counter variable (an author's network
/// built from tch's BatchNorm) is accepted and ignored (listed in [`LoadReport::ignored`]).
pub fn load_strict(
    vs: &mut VarStore,
    tensors: &[(String, Tensor)],
) -> Result<LoadReport, ParamError> {
    let variables = vs.variables();
    let mut mismatch = StrictMismatch::default();
    let mut report = LoadReport::default();
    let mut seen = HashSet::new();
    let mut pairs = Vec::with_capacity(variables.len());
    for (name, tensor) in tensors {
        if !seen.insert(name.as_str()) {
            mismatch.duplicated.push(name.clone());
            continue;
        }
        let found = tensor.size();
        match variables.get(name) {
            Some(var) if var.size() == found => pairs.push((name, var, tensor)),
            Some(var) => mismatch.wrong_shape.push(ShapeMismatch {
                name: name.clone(),
                expected: var.size(),
                found,
            }),
            None if is_batch_counter(name, &variables) => {
                if tensor.numel() == 1 {
                    report.ignored.push(name.clone());
                } else {
                    mismatch.wrong_shape.push(ShapeMismatch {
                        name: name.clone(),
                        expected: Vec::new(),
                        found,
                    });
                }
            }
            None => mismatch.unexpected.push(name.clone()),
        }
    }
    let (kept, missing): (Vec<String>, Vec<String>) = variables
        .keys()
        .filter(|name| !seen.contains(name.as_str()))
        .cloned()
        .partition(|name| is_batch_counter(name, &variables));
    report.kept = kept;
    report.kept.sort();
    mismatch.missing = missing;
    mismatch.missing.sort();
    if !mismatch.is_empty() {
        return Err(ParamError::Strict(mismatch));
    }

    // Convert everything first, so that a failure leaves the store untouched.
    let mut ready = Vec::with_capacity(pairs.len());
    for (name, var, tensor) in pairs {
        let (from, to) = (tensor.kind(), var.kind());
        if from != to {
            report.converted.push((name.clone(), from, to));
        }
        let src = tensor
            .detach()
            .f_to_device(var.device())
            .and_then(|t| t.f_to_kind(to))
            .map_err(|e| ParamError::Tensor {
                name: name.clone(),
                reason: format!("cannot be converted to the variable's {to:?}: {e}"),
            })?;
        ready.push((name, var.shallow_clone(), src));
    }
    tch::no_grad(|| {
        for (name, mut var, src) in ready {
            var.f_copy_(&src).map_err(|e| ParamError::Tensor {
                name: name.clone(),
                reason: format!("cannot be copied into its variable: {e}"),
            })?;
        }
        Ok::<_, ParamError>(())
    })?;
    report.loaded = variables.len() - report.kept.len();
    Ok(report)
}

fn is_batch_counter(name: &str, variables: &HashMap<String, Tensor>) -> bool {
    let Some(prefix) = name.strip_suffix(BATCH_COUNTER) else {
        return false;
    };
    (prefix.is_empty() || prefix.ends_with('.'))
        && variables.contains_key(&format!("{prefix}running_mean"))
}

/// A snapshot of every variable of `vs` (trainable ones and buffers such as BatchNorm running
/// statistics), sorted by name: detached copies that later training does not change, ready for
/// [`write_safetensors`](super::write_safetensors) or exchange.
pub fn named_tensors(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.detach().copy()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;
    use tch::nn;

    fn store() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let _ = nn::linear(&root / "fc", 3, 2, Default::default());
        let _ = nn::batch_norm1d(&root / "bn", 2, Default::default());
        vs
    }

    fn full(shape: &[i64], value: f64, kind: Kind) -> Tensor {
        Tensor::full(shape, value, (kind, Device::Cpu))
    }

    fn matching() -> Vec<(String, Tensor)> {
        vec![
            ("fc.weight".into(), full(&[2, 3], 1.0, Kind::Double)),
            ("fc.bias".into(), full(&[2], 2.0, Kind::Float)),
            ("bn.weight".into(), full(&[2], 3.0, Kind::Float)),
            ("bn.bias".into(), full(&[2], 4.0, Kind::Float)),
            ("bn.running_mean".into(), full(&[2], 5.0, Kind::Float)),
            ("bn.running_var".into(), full(&[2], 6.0, Kind::Float)),
            ("bn.num_batches_tracked".into(), full(&[], 7.0, Kind::Int64)),
        ]
    }

    #[test]
    fn loads_converts_and_ignores_batch_counters() {
        let mut vs = store();
        let report = load_strict(&mut vs, &matching()).expect("matches");
        assert_eq!(report.loaded, 6);
        assert_eq!(report.ignored, vec!["bn.num_batches_tracked".to_string()]);
        assert_eq!(
            report.converted,
            vec![("fc.weight".to_string(), Kind::Double, Kind::Float)]
        );
        let vars = vs.variables();
        assert_eq!(vars["fc.weight"].kind(), Kind::Float);
        assert!(vars["bn.running_var"].equal(&full(&[2], 6.0, Kind::Float)));
        let names: Vec<String> = named_tensors(&vs).into_iter().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 6);
    }

    #[test]
    fn reports_every_problem_and_copies_nothing() {
        let mut vs = store();
        let before = named_tensors(&vs);
        let mut tensors = matching();
        drop(tensors.remove(1)); // fc.bias missing
        tensors[1].1 = full(&[1], 3.0, Kind::Float); // bn.weight broadcastable, still wrong
        tensors.push(("extra.weight".into(), full(&[1], 0.0, Kind::Float)));
        tensors.push(("fc.num_batches_tracked".into(), full(&[], 0.0, Kind::Int64)));
        tensors.push(("bn.running_var".into(), full(&[2], 6.0, Kind::Float)));
        let err = load_strict(&mut vs, &tensors).expect_err("mismatch");
        let ParamError::Strict(m) = &err else {
            panic!("not a strict error: {err}");
        };
        assert_eq!(m.missing, vec!["fc.bias".to_string()]);
        assert_eq!(
            m.unexpected,
            vec![
                "extra.weight".to_string(),
                "fc.num_batches_tracked".to_string()
            ]
        );
        assert_eq!(m.wrong_shape.len(), 1);
        assert_eq!(m.wrong_shape[0].name, "bn.weight");
        assert_eq!(m.duplicated, vec!["bn.running_var".to_string()]);
        let text = err.to_string();
        for name in [
            "`fc.bias`",
            "`extra.weight`",
            "`bn.weight` (model [2], file [1])",
        ] {
            assert!(text.contains(name), "{text}");
        }
        for ((_, a), (_, b)) in before.iter().zip(named_tensors(&vs)) {
            assert!(a.equal(&b), "a variable changed although the load failed");
        }
    }
}
