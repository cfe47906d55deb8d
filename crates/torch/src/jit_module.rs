//! A TorchScript module held through libtorch's C++ module API (`csrc/jit_module.cpp`), which
//! reaches what tch's `CModule` cannot: the module's buffers (`named_buffers`), BatchNorm's
//! running statistics and `num_batches_tracked` counters among them.
//!
//! This is the crate's only unsafe code: the calls into the C++ shim. Every shim function
//! catches C++ exceptions and reports them as a message; tensors come back as heap-allocated
//! `at::Tensor`s, which [`Tensor::from_ptr`] takes ownership of, exactly as tch's own bindings
//! return them.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;

use tch::Tensor;
use torch_sys::C_tensor;

#[repr(C)]
struct RawModule {
    _private: [u8; 0],
}

type NamedFn = extern "C" fn(data: *mut c_void, name: *const c_char, tensor: *mut C_tensor);

unsafe extern "C" {
    fn fe_module_load(path: *const c_char, error: *mut *mut c_char) -> *mut RawModule;
    fn fe_module_free(module: *mut RawModule);
    fn fe_string_free(text: *mut c_char);
    fn fe_module_set_training(
        module: *mut RawModule,
        training: c_int,
        error: *mut *mut c_char,
    ) -> c_int;
    fn fe_module_forward(
        module: *mut RawModule,
        input: *const C_tensor,
        error: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn fe_module_named(
        module: *mut RawModule,
        buffers: c_int,
        data: *mut c_void,
        f: NamedFn,
        error: *mut *mut c_char,
    ) -> c_int;
}

/// Takes a C string the shim allocated, as an owned `String`.
fn take_string(text: *mut c_char) -> String {
    if text.is_null() {
        return "libtorch failed without a message".to_owned();
    }
    // SAFETY: the shim returns NUL-terminated strings from malloc, freed once here.
    let owned = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    unsafe { fe_string_free(text) };
    owned
}

/// Runs a shim call with an error slot; `Err` with the C++ message when it set one.
fn call<T>(f: impl FnOnce(*mut *mut c_char) -> T) -> Result<T, String> {
    let mut error: *mut c_char = std::ptr::null_mut();
    let out = f(&mut error);
    if error.is_null() {
        Ok(out)
    } else {
        Err(take_string(error))
    }
}

/// A loaded TorchScript module (CPU).
pub(crate) struct JitModule {
    raw: *mut RawModule,
}

// SAFETY: a `torch::jit::Module` has no thread affinity; the engine uses one from one thread
// at a time (behind a mutex).
unsafe impl Send for JitModule {}

impl std::fmt::Debug for JitModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitModule").finish_non_exhaustive()
    }
}

impl Drop for JitModule {
    fn drop(&mut self) {
        // SAFETY: `raw` came from fe_module_load and is freed once.
        unsafe { fe_module_free(self.raw) }
    }
}

impl JitModule {
    /// Loads the TorchScript file at `path` (`torch.jit.script(m).save` or
    /// `torch.jit.trace(m, x).save`) on the CPU.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| "the path contains a NUL byte".to_owned())?;
        // SAFETY: `path` is a valid C string for the call.
        let raw = call(|error| unsafe { fe_module_load(path.as_ptr(), error) })?;
        if raw.is_null() {
            return Err("libtorch returned no module".to_owned());
        }
        Ok(Self { raw })
    }

    /// Sets training or evaluation mode on the module and its submodules.
    pub(crate) fn set_training(&mut self, training: bool) -> Result<(), String> {
        // SAFETY: `raw` is a live module, used through `&mut self` only here.
        call(|error| unsafe { fe_module_set_training(self.raw, c_int::from(training), error) })?;
        Ok(())
    }

    /// Runs `forward` on `input`; the module must return one tensor.
    pub(crate) fn forward(&self, input: &Tensor) -> Result<Tensor, String> {
        // SAFETY: `raw` is a live module and `input` a live tensor for the call; a non-null
        // result is a new `at::Tensor` that the returned `Tensor` owns.
        let out = call(|error| unsafe { fe_module_forward(self.raw, input.as_ptr(), error) })?;
        if out.is_null() {
            return Err("forward returned nothing".to_owned());
        }
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// The module's parameters by state-dict name (`block.0.weight`), the module's own tensors.
    pub(crate) fn named_parameters(&self) -> Result<Vec<(String, Tensor)>, String> {
        self.named(false)
    }

    /// The module's buffers by state-dict name (`bn1.running_mean`,
    /// `bn1.num_batches_tracked`), the module's own tensors: writing into them changes what
    /// the module computes with.
    pub(crate) fn named_buffers(&self) -> Result<Vec<(String, Tensor)>, String> {
        self.named(true)
    }

    fn named(&self, buffers: bool) -> Result<Vec<(String, Tensor)>, String> {
        extern "C" fn collect(data: *mut c_void, name: *const c_char, tensor: *mut C_tensor) {
            // SAFETY: `data` is the `Vec` below for the duration of the call, `name` a C
            // string valid during the callback, and `tensor` a new `at::Tensor` we now own.
            let out = unsafe { &mut *data.cast::<Vec<(String, Tensor)>>() };
            let name = unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned();
            out.push((name, unsafe { Tensor::from_ptr(tensor) }));
        }
        let mut out: Vec<(String, Tensor)> = Vec::new();
        let data = (&mut out as *mut Vec<(String, Tensor)>).cast::<c_void>();
        // SAFETY: `raw` is a live module; `collect` only pushes into `out`, and cannot panic
        // short of allocation failure (which aborts).
        let status = call(|error| unsafe {
            fe_module_named(self.raw, c_int::from(buffers), data, collect, error)
        })?;
        if status != 0 {
            return Err("libtorch could not list the module's tensors".to_owned());
        }
        Ok(out)
    }
}
