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
//! A module's buffers are listed by libtorch itself (`torch::jit::Module::named_buffers`,
//! reached through the crate's small C++ shim, since tch's C API has no such call), so a module
//! scripted or traced the ordinary way (`torch.jit.script(model).save(path)`,
//! `torch.jit.trace(model, example).save(path)`) needs nothing added. The buffers are
//! registered in the [`VarStore`] as non-trainable variables under their state-dict names
//! (`bn1.running_mean`, `bn1.num_batches_tracked`), exactly as tch's own BatchNorm registers
//! `running_mean`; they are the module's tensors, not copies, so BatchNorm's in-place updates in
//! training mode show in every snapshot, and copying into them (strict loading, restore)
//! changes what the module computes with. The buffers are listed again before every snapshot,
//! restore and save, so a module that assigns a new tensor to a buffer attribute is followed
//! too. Keeping buffers only inside the module was rejected: a snapshot would then lack the
//! statistics that eval mode computes with, and federated averaging could not exchange them.
//!
//! So a snapshot and a saved param file hold every parameter and buffer under PyTorch's names
//! (including BatchNorm's `num_batches_tracked`, an integer counter that federated averaging
//! does not average but takes the element-wise maximum of), `model.load_state_dict(weights,
//! strict=True)` accepts it both on the eager PyTorch model and on the scripted module, and both
//! give the engine's eval logits. The package's `param_file` is loaded strictly into the same
//! set, so a file written by `torch.save(model.state_dict())` or by safetensors works.
//!
//! A traced module records the operations of one call in the mode it was traced in: a module
//! traced in evaluation mode keeps using BatchNorm's running statistics (and no Dropout) while
//! it is fine-tuned, as it would in PyTorch. Script a module (`torch.jit.script`) to train it
//! with batch statistics.
//!
//! # `entry_class`
//!
//! The module's class is read from the archive (the first global of its `data.pkl`, such as
//! `__torch__.Net` or `__torch__.models.___torch_mangle_3.Net`) and `entry_class` must name it:
//! the class name alone (`Net`) or with its Python module (`models.Net`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tch::Tensor;
use tch::nn::VarStore;

use crate::error::ModelError;
use crate::jit_module::JitModule;

/// The largest `data.pkl` prefix and code file read from an archive (bytes).
const MAX_CODE_BYTES: u64 = 16 << 20;

/// What the archive of a TorchScript file says about its module, read without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchiveInfo {
    /// The module's TorchScript type name, e.g. `__torch__.Net`.
    pub type_name: String,
}

/// Reads the module's type name from a TorchScript archive (a zip with `<name>/data.pkl` and `<name>/code/**.py`).
pub(crate) fn inspect_archive(path: &Path) -> Result<ArchiveInfo, String> {
    let file = File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("is not a zip archive ({e}), so not a TorchScript module"))?;
    let mut type_name = None;
    let mut has_code = false;
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
    Ok(ArchiveInfo { type_name })
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

fn entry_error(path: &Path, message: String, expected: &str) -> ModelError {
    ModelError::Config {
        key: "entry_file".into(),
        message: format!("`{}` {message}", path.display()),
        expected: expected.into(),
    }
}

struct Live {
    module: JitModule,
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
    /// buffers (non-trainable) in `vs` under their PyTorch names.
    pub fn load(path: &Path, entry_class: &str, vs: &VarStore) -> Result<Self, ModelError> {
        let recipe = "a TorchScript module saved by torch.jit.script(model).save(path) or \
                      torch.jit.trace(model, example).save(path)";
        let info = inspect_archive(path).map_err(|m| entry_error(path, m, recipe))?;
        crate::params::check_archive(path).map_err(|m| entry_error(path, m, recipe))?;
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
        let libtorch =
            |m: String| entry_error(path, format!("cannot be loaded by libtorch: {m}"), recipe);
        let module = JitModule::load(path).map_err(|m| libtorch(first_line(&m)))?;
        let named = module.named_parameters().map_err(libtorch)?;
        let buffers = module.named_buffers().map_err(libtorch)?;

        let root = vs.root();
        let mut parameters = Vec::with_capacity(named.len());
        for (index, (name, tensor)) in named.into_iter().enumerate() {
            // `Path::add` refuses names with dots, and is the only way to make a variable
            // trainable: add under a placeholder, then rename to the PyTorch name.
            let placeholder = format!("fedengine_parameter_{index}");
            let trainable = tensor.requires_grad();
            let _ = root.add(&placeholder, tensor, trainable);
            let mut variables = vs.variables_.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(var) = variables.named_variables.remove(&placeholder) {
                variables.named_variables.insert(name.clone(), var);
            }
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

    /// The buffers' PyTorch names (BatchNorm's `running_mean`, `running_var` and
    /// `num_batches_tracked`, and any buffer the model registers), in the module's order.
    pub fn buffer_names(&self) -> &[String] {
        &self.buffers
    }

    /// Runs `forward` on a batch in training mode (BatchNorm batch statistics and updated
    /// running averages, Dropout active) or evaluation mode, set on the module (`train()` /
    /// `eval()`, recursively) when it changes. Fails with libtorch's message (first line).
    pub fn try_forward(&self, xs: &Tensor, train: bool) -> Result<Tensor, String> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.training != Some(train) {
            live.module
                .set_training(train)
                .map_err(|m| first_line(&m))?;
            live.training = Some(train);
        }
        live.module.forward(xs).map_err(|m| first_line(&m))
    }

    /// Points the buffer variables of `vs` at the module's current buffer tensors (a module may
    /// assign new tensors to buffer attributes).
    pub fn refresh_buffers(&self, vs: &VarStore) -> Result<(), ModelError> {
        if self.buffers.is_empty() {
            return Ok(());
        }
        let buffers = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.module.named_buffers()
        }
        .map_err(|m| entry_error(&self.path, m, "a module whose buffers libtorch can list"))?;
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
                format!("has other buffers than when it was loaded: {names:?}"),
                "a module that keeps its buffers (it may assign new tensors to them)",
            ));
        }
        let mut variables = vs.variables_.lock().unwrap_or_else(|p| p.into_inner());
        for (name, tensor) in buffers {
            variables.named_variables.insert(name, tensor);
        }
        Ok(())
    }
}

/// The first line of a libtorch message (the rest may be a C++ backtrace or TorchScript's
/// source excerpt).
fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(text)
        .to_owned()
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
