//! TorchScript entry files: a package whose `config.json` names `entry_file` ships its model as
//! a module exported from PyTorch (`torch.jit.script(model).save("model.ts")`), which the
//! engine runs and trains through libtorch's JIT.
//!
//! # Parameters
//!
//! The module's parameters are taken from `CModule::named_parameters()` and registered in the
//! classifier's [`VarStore`] under their real PyTorch names (`block.0.weight`), as trainable
//! variables when they require gradients. tch's `TrainableCModule::load` would rename `.` to
//! `_`, which cannot be undone (`block_0.weight` or `block.0_weight`?), so it is not used. The
//! variables are the module's own tensors, not copies: the optimiser's in-place updates are what
//! the module computes with, and copying into a variable (strict loading, restoring a snapshot)
//! changes the module.
//!
//! # Buffers (BatchNorm running statistics and the like)
//!
//! A scripted module's buffers are not parameters, and neither tch nor libtorch's C API that
//! tch wraps can list them (there is no `named_buffers`, and a module cannot be turned into an
//! object whose attributes tch could read). Keeping them only inside the module and saving the
//! module with `CModule::save` was rejected: weights would then travel in two places, a
//! snapshot would not contain the statistics that eval mode computes with, so the same weights
//! would give different eval logits in PyTorch and in the engine, and federated averaging could
//! not exchange them. Keeping them local (FedBN) is a training policy, not a storage format;
//! it remains possible on top of this design.
//!
//! The decision: a scripted module that has buffers exports an accessor, [`BUFFERS_METHOD`],
//! returning its buffers themselves (not copies) by state-dict name. It is the same few lines
//! for every model, because TorchScript unrolls `named_modules()`:
//!
//! ```python
//! from typing import Dict
//! from torch import Tensor
//!
//! @torch.jit.export
//! def fedengine_buffers(self) -> Dict[str, Tensor]:
//!     out: Dict[str, Tensor] = {}
//!     for prefix, module in self.named_modules():
//!         for name, buffer in module.named_buffers():
//!             out[prefix + "." + name if prefix != "" else name] = buffer
//!     return out
//! ```
//!
//! (a method of the model class, or assigned to it before scripting:
//! `Net.fedengine_buffers = torch.jit.export(fedengine_buffers)`). The engine calls it through
//! `CModule::method_is` and registers the returned tensors in the [`VarStore`] as non-trainable
//! variables under those names, exactly as tch's own BatchNorm registers `running_mean`. Since
//! they alias the module's buffers, BatchNorm's in-place updates in training mode show in every
//! snapshot, and copying into them (strict loading, restore) changes what the module computes
//! with. The accessor is called again before every snapshot, restore and save, so a module that
//! assigns a new tensor to a buffer attribute is followed too. Two calls must return the same
//! storage for every buffer: an accessor returning copies is refused.
//!
//! So a snapshot and a saved param file hold every parameter and buffer under PyTorch's names
//! (including BatchNorm's `num_batches_tracked`), `model.load_state_dict(weights, strict=True)`
//! accepts it both on the eager PyTorch model and on the scripted module, and both give the
//! engine's eval logits. The package's `param_file` is loaded strictly into the same set, so a
//! file written by `torch.save(model.state_dict())` or by safetensors works. A module without
//! buffers needs no accessor; one whose code declares buffers but has no accessor is refused
//! with the recipe above. The accessor decides what is exchanged: a non-persistent buffer it
//! returns must also be in the param file.
//!
//! # `entry_class`
//!
//! The module's class is read from the archive (the first global of its `data.pkl`, such as
//! `__torch__.Net` or `__torch__.models.___torch_mangle_3.Net`) and `entry_class` must name it:
//! the class name alone (`Net`) or with its Python module (`models.Net`).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tch::nn::VarStore;
use tch::{CModule, IValue, TchError, Tensor};

use crate::error::ModelError;

/// The method a scripted module with buffers exports so that the engine can read and write
/// them: `def fedengine_buffers(self) -> Dict[str, Tensor]`, returning the buffers themselves by
/// state-dict name (see the [module documentation](self)).
pub const BUFFERS_METHOD: &str = "fedengine_buffers";

/// The Python lines that define [`BUFFERS_METHOD`], for messages.
const BUFFERS_RECIPE: &str = "@torch.jit.export\n\
     def fedengine_buffers(self) -> Dict[str, Tensor]:\n    \
     out: Dict[str, Tensor] = {}\n    \
     for prefix, module in self.named_modules():\n        \
     for name, buffer in module.named_buffers():\n            \
     out[prefix + \".\" + name if prefix != \"\" else name] = buffer\n    \
     return out";

/// The largest `data.pkl` prefix and code file read from an archive (bytes).
const MAX_CODE_BYTES: u64 = 16 << 20;

/// What the archive of a TorchScript file says about its module, read without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchiveInfo {
    /// The module's TorchScript type name, e.g. `__torch__.Net`.
    pub type_name: String,
    /// Whether any class of the archive declares buffers (`__buffers__ = ["..."]`).
    pub has_buffers: bool,
    /// Whether a class of the archive defines [`BUFFERS_METHOD`].
    pub has_accessor: bool,
}

/// Reads the module's type name and whether it has buffers and the accessor from a TorchScript
/// archive (a zip with `<name>/data.pkl` and `<name>/code/**.py`).
pub(crate) fn inspect_archive(path: &Path) -> Result<ArchiveInfo, String> {
    let file = File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("is not a zip archive ({e}), so not a TorchScript module"))?;
    let mut type_name = None;
    let mut has_buffers = false;
    let mut has_accessor = false;
    let mut has_code = false;
    let accessor = format!("def {BUFFERS_METHOD}(self");
    for index in 0..zip.len() {
        let entry = zip
            .by_index(index)
            .map_err(|e| format!("has an unreadable zip entry: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("has a zip entry with an unreadable name: {e}"))?
            .into_owned();
        let mut parts = name.splitn(2, '/');
        let (Some(_archive), Some(inner)) = (parts.next(), parts.next()) else {
            continue;
        };
        let is_code = inner.starts_with("code/") && inner.ends_with(".py");
        if inner != "data.pkl" && !is_code {
            continue;
        }
        if entry.size() > MAX_CODE_BYTES {
            return Err(format!(
                "has a `{name}` of {} bytes (more than {MAX_CODE_BYTES})",
                entry.size()
            ));
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_CODE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot be read at `{name}`: {e}"))?;
        if inner == "data.pkl" {
            type_name = Some(
                pickled_class(&bytes)
                    .ok_or_else(|| format!("has a `{name}` that does not start with a class"))?,
            );
        } else {
            has_code = true;
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines() {
                let line = line.trim();
                if let Some(rest) = line.strip_prefix("__buffers__ = [") {
                    has_buffers |= rest.trim() != "]";
                }
                has_accessor |= line.starts_with(&accessor);
            }
        }
    }
    let type_name = type_name.ok_or_else(|| {
        "has no `data.pkl`: it is not a TorchScript module (a file saved by \
         torch.jit.script(model).save(path))"
            .to_owned()
    })?;
    if !has_code {
        return Err(format!(
            "has no TorchScript code: it holds a pickled `{type_name}` (torch.save(model)?), \
             which needs Python to run; export it with torch.jit.script(model).save(path)"
        ));
    }
    Ok(ArchiveInfo {
        type_name,
        has_buffers,
        has_accessor,
    })
}

/// The class a TorchScript `data.pkl` starts with: `PROTO n`, then `GLOBAL module\nname\n`.
fn pickled_class(bytes: &[u8]) -> Option<String> {
    let rest = match bytes {
        [0x80, _, rest @ ..] => rest,
        rest => rest,
    };
    let rest = rest.strip_prefix(b"c")?;
    let mut lines = rest.splitn(3, |&b| b == b'\n');
    let module = std::str::from_utf8(lines.next()?).ok()?;
    let class = std::str::from_utf8(lines.next()?).ok()?;
    lines.next()?;
    (!module.is_empty() && !class.is_empty()).then(|| format!("{module}.{class}"))
}

/// Whether `entry_class` names the TorchScript type `type_name`: its class name (`Net`), or
/// the class with its Python module (`models.Net`), or the full type name. TorchScript's
/// `__torch__.` prefix and `___torch_mangle_N` name spaces are ignored.
pub(crate) fn class_matches(entry_class: &str, type_name: &str) -> bool {
    let plain: Vec<&str> = type_name
        .split('.')
        .filter(|part| *part != "__torch__" && !part.starts_with("___torch_mangle_"))
        .collect();
    let plain = plain.join(".");
    entry_class == type_name || entry_class == plain || plain.ends_with(&format!(".{entry_class}"))
}

/// The first line of a libtorch message (the rest is a C++ backtrace).
fn first_line(error: &TchError) -> String {
    let text = error.to_string();
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(&text)
        .to_owned()
}

fn entry_error(path: &Path, message: String, expected: &str) -> ModelError {
    ModelError::Config {
        key: "entry_file".into(),
        message: format!("`{}` {message}", path.display()),
        expected: expected.into(),
    }
}

struct Live {
    module: CModule,
    /// The mode last set: `Some(true)` training, `Some(false)` evaluation.
    training: Option<bool>,
}

/// A TorchScript module loaded from a package's `entry_file`, its parameters and buffers
/// registered in a [`VarStore`] under their PyTorch names (see the [module
/// documentation](self)).
pub struct ScriptedModule {
    live: Mutex<Live>,
    path: PathBuf,
    type_name: String,
    parameters: Vec<String>,
    buffers: Vec<String>,
}

impl std::fmt::Debug for ScriptedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedModule")
            .field("path", &self.path)
            .field("type_name", &self.type_name)
            .field("parameters", &self.parameters.len())
            .field("buffers", &self.buffers.len())
            .finish_non_exhaustive()
    }
}

impl ScriptedModule {
    /// Loads the TorchScript module at `path` on the CPU, checks that `entry_class` names its
    /// class, and registers its parameters (trainable when they require gradients) and its
    /// buffers (through [`BUFFERS_METHOD`]) in `vs` under their PyTorch names.
    pub fn load(path: &Path, entry_class: &str, vs: &VarStore) -> Result<Self, ModelError> {
        let recipe = "a TorchScript module saved by torch.jit.script(model).save(path)";
        let info = inspect_archive(path).map_err(|m| entry_error(path, m, recipe))?;
        if !class_matches(entry_class, &info.type_name) {
            return Err(ModelError::Config {
                key: "entry_class".into(),
                message: format!(
                    "is `{entry_class}`, but the TorchScript module `{}` is of class `{}`",
                    path.display(),
                    info.type_name
                ),
                expected: "the scripted model's class name, e.g. `Net` for `__torch__.Net`".into(),
            });
        }
        if info.has_buffers && !info.has_accessor {
            return Err(entry_error(
                path,
                format!(
                    "has buffers (such as BatchNorm running statistics) but does not export \
                     `{BUFFERS_METHOD}`, through which the engine reads, exchanges and saves them; \
                     add to the model class before scripting:\n{BUFFERS_RECIPE}\n"
                ),
                "a scripted module without buffers, or one exporting fedengine_buffers",
            ));
        }
        let module = CModule::load_on_device(path, vs.device()).map_err(|e| {
            entry_error(
                path,
                format!("cannot be loaded by libtorch: {}", first_line(&e)),
                recipe,
            )
        })?;
        let named = module.named_parameters()?;
        let buffers = if info.has_accessor {
            let first = call_accessor(&module).map_err(|m| entry_error(path, m, recipe))?;
            let second = call_accessor(&module).map_err(|m| entry_error(path, m, recipe))?;
            let params: HashSet<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
            for ((name, a), (_, b)) in first.iter().zip(&second) {
                if params.contains(name.as_str()) {
                    return Err(entry_error(
                        path,
                        format!("returns the parameter `{name}` from `{BUFFERS_METHOD}`"),
                        "buffers only: parameters are found by the engine",
                    ));
                }
                if a.numel() > 0 && a.data_ptr() != b.data_ptr() {
                    return Err(entry_error(
                        path,
                        format!(
                            "returns a copy of the buffer `{name}` from `{BUFFERS_METHOD}`; \
                             the engine must get the buffers themselves to write them"
                        ),
                        "`out[name] = buffer`, without clone(), detach() or arithmetic",
                    ));
                }
            }
            first
        } else {
            Vec::new()
        };

        let root = vs.root();
        let mut parameters = Vec::with_capacity(named.len());
        for (index, (name, tensor)) in named.into_iter().enumerate() {
            // `Path::add` refuses names with dots, and is the only way to make a variable
            // trainable: add under a placeholder, then rename to the PyTorch name.
            let placeholder = format!("fedengine_parameter_{index}");
            let trainable = tensor.requires_grad();
            let _ = root.add(&placeholder, tensor, trainable);
            let mut variables = vs.variables_.lock().expect("var store lock");
            let var = variables
                .named_variables
                .remove(&placeholder)
                .expect("just added");
            variables.named_variables.insert(name.clone(), var);
            parameters.push(name);
        }
        let scripted = Self {
            live: Mutex::new(Live {
                module,
                training: None,
            }),
            path: path.to_path_buf(),
            type_name: info.type_name,
            parameters,
            buffers: buffers.iter().map(|(n, _)| n.clone()).collect(),
        };
        scripted.register_buffers(vs, buffers)?;
        Ok(scripted)
    }

    /// The TorchScript file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The module's TorchScript type name, e.g. `__torch__.Net`.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The parameters' PyTorch names, in the module's order.
    pub fn parameter_names(&self) -> &[String] {
        &self.parameters
    }

    /// The buffers' names as [`BUFFERS_METHOD`] returns them.
    pub fn buffer_names(&self) -> &[String] {
        &self.buffers
    }

    /// Runs `forward` on a batch in training mode (BatchNorm batch statistics and updated
    /// running averages, Dropout active) or evaluation mode, set on the module (`train()` /
    /// `eval()`, recursively) when it changes.
    pub fn try_forward(&self, xs: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.training != Some(train) {
            if train {
                live.module.f_set_train()?;
            } else {
                live.module.f_set_eval()?;
            }
            live.training = Some(train);
        }
        live.module.forward_ts(&[xs])
    }

    /// [`try_forward`](Self::try_forward), panicking with libtorch's message on failure (as
    /// tch's built-in layers do).
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        self.try_forward(xs, train).unwrap_or_else(|e| {
            panic!(
                "TorchScript module `{}`: forward on a batch of shape {:?} failed: {}",
                self.path.display(),
                xs.size(),
                first_line(&e)
            )
        })
    }

    /// Points the buffer variables of `vs` at the module's current buffer tensors (a module may
    /// assign new tensors to buffer attributes).
    pub fn refresh_buffers(&self, vs: &VarStore) -> Result<(), ModelError> {
        if self.buffers.is_empty() {
            return Ok(());
        }
        let buffers = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            call_accessor(&live.module)
        }
        .map_err(|m| entry_error(&self.path, m, "a stable fedengine_buffers"))?;
        self.register_buffers(vs, buffers)
    }

    fn register_buffers(
        &self,
        vs: &VarStore,
        buffers: Vec<(String, Tensor)>,
    ) -> Result<(), ModelError> {
        let names: Vec<&str> = buffers.iter().map(|(n, _)| n.as_str()).collect();
        if names != self.buffers.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(entry_error(
                &self.path,
                format!(
                    "returned other buffers from `{BUFFERS_METHOD}` than when it was loaded: {names:?}"
                ),
                "the same buffer names on every call",
            ));
        }
        let mut variables = vs.variables_.lock().expect("var store lock");
        for (name, tensor) in buffers {
            variables.named_variables.insert(name, tensor);
        }
        Ok(())
    }
}

/// Calls [`BUFFERS_METHOD`] and returns its `(name, tensor)` pairs in the dict's order.
fn call_accessor(module: &CModule) -> Result<Vec<(String, Tensor)>, String> {
    let expected = "a Dict[str, Tensor] of buffers";
    let value = module
        .method_is::<IValue>(BUFFERS_METHOD, &[])
        .map_err(|e| format!("failed in `{BUFFERS_METHOD}()`: {}", first_line(&e)))?;
    let IValue::GenericDict(entries) = value else {
        return Err(format!(
            "returned something other than {expected} from `{BUFFERS_METHOD}()`"
        ));
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        match (key, value) {
            (IValue::String(name), IValue::Tensor(tensor)) if !name.is_empty() => {
                if !seen.insert(name.clone()) {
                    return Err(format!("returned `{name}` twice from `{BUFFERS_METHOD}()`"));
                }
                out.push((name, tensor));
            }
            _ => {
                return Err(format!(
                    "returned an entry other than a non-empty name and a tensor from \
                     `{BUFFERS_METHOD}()` (expected {expected})"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_match_with_or_without_module_and_mangling() {
        assert!(class_matches("Net", "__torch__.Net"));
        assert!(class_matches("__torch__.Net", "__torch__.Net"));
        assert!(class_matches(
            "Net",
            "__torch__.models.cnn.___torch_mangle_3.Net"
        ));
        assert!(class_matches(
            "cnn.Net",
            "__torch__.models.cnn.___torch_mangle_3.Net"
        ));
        assert!(class_matches("models.cnn.Net", "__torch__.models.cnn.Net"));
        assert!(!class_matches("Net", "__torch__.ResNet"));
        assert!(!class_matches("SmallCnn", "__torch__.Net"));
        assert!(!class_matches("et", "__torch__.Net"));
    }

    #[test]
    fn the_class_is_the_first_global_of_data_pkl() {
        assert_eq!(
            pickled_class(b"\x80\x02c__torch__\nNet\nq\x00)\x81}"),
            Some("__torch__.Net".to_owned())
        );
        assert_eq!(
            pickled_class(b"c__torch__.a.b\nC\n"),
            Some("__torch__.a.b.C".to_owned())
        );
        assert_eq!(pickled_class(b"\x80\x02}q\x00"), None);
        assert_eq!(pickled_class(b"\x80\x02c__torch__\nNet"), None);
    }
}
