// A TorchScript module through libtorch's own C++ API, for what tch's C API does not reach:
// a module's buffers (`named_buffers`). The module is loaded, switched between training and
// evaluation, run and listed here; tensors cross to Rust as `new at::Tensor(...)`, the form tch's
// `Tensor::from_ptr` takes ownership of (tch frees it with `delete`). Every entry point catches
// C++ exceptions and returns their message through `error` (freed by fe_string_free), so no
// exception ever unwinds into Rust.

#include <torch/script.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace {

char *copy_string(const std::string &text) {
  char *out = static_cast<char *>(std::malloc(text.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, text.c_str(), text.size() + 1);
  }
  return out;
}

// The message of the exception being handled, without libtorch's C++ backtrace.
void set_error(char **error) {
  try {
    throw;
  } catch (const c10::Error &e) {
    *error = copy_string(e.what_without_backtrace());
  } catch (const std::exception &e) {
    *error = copy_string(e.what());
  } catch (...) {
    *error = copy_string("unknown C++ exception");
  }
}

}  // namespace

extern "C" {

typedef void (*fe_named_fn)(void *data, const char *name, at::Tensor *tensor);

torch::jit::Module *fe_module_load(const char *path, char **error) {
  try {
    return new torch::jit::Module(torch::jit::load(std::string(path), at::kCPU));
  } catch (...) {
    set_error(error);
    return nullptr;
  }
}

void fe_module_free(torch::jit::Module *module) { delete module; }

void fe_string_free(char *text) { std::free(text); }

// Sets training (1) or evaluation (0) mode, recursively; returns 0 on success.
int fe_module_set_training(torch::jit::Module *module, int training, char **error) {
  try {
    module->train(training != 0);
    return 0;
  } catch (...) {
    set_error(error);
    return 1;
  }
}

// Runs `forward` on one tensor; the result must be a tensor.
at::Tensor *fe_module_forward(torch::jit::Module *module, const at::Tensor *input,
                              char **error) {
  try {
    std::vector<torch::jit::IValue> inputs{*input};
    torch::jit::IValue output = module->forward(std::move(inputs));
    if (!output.isTensor()) {
      throw std::runtime_error("forward returned a " + output.tagKind() +
                               ", not a tensor of logits");
    }
    return new at::Tensor(output.toTensor());
  } catch (...) {
    set_error(error);
    return nullptr;
  }
}

// Calls `f` with each parameter (`buffers` 0) or buffer (`buffers` 1) of the module and its
// submodules, by state-dict name, in the module's order. The tensors are the module's own
// (aliases, not copies). Returns 0 on success.
int fe_module_named(torch::jit::Module *module, int buffers, void *data, fe_named_fn f,
                    char **error) {
  try {
    if (buffers != 0) {
      for (const auto &item : module->named_buffers(/*recurse=*/true)) {
        f(data, item.name.c_str(), new at::Tensor(item.value));
      }
    } else {
      for (const auto &item : module->named_parameters(/*recurse=*/true)) {
        f(data, item.name.c_str(), new at::Tensor(item.value));
      }
    }
    return 0;
  } catch (...) {
    set_error(error);
    return 1;
  }
}

}  // extern "C"
