//! Running a network on user data without letting a libtorch failure become a panic.
//!
//! tch's layers (and an author's `ModuleT`) cannot return an error: on a tensor libtorch
//! refuses (an image too small for a convolution, the wrong channel count) they panic with
//! libtorch's message. [`catch_forward`] runs such a call, turns its panic into an error with
//! that message, and keeps the panic silent (the process-wide hook stays quiet for panics it
//! catches, and reports every other panic as before).

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use tch::Tensor;

thread_local! {
    /// Whether this thread is inside [`catch_forward`].
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once, a panic hook that is silent inside [`catch_forward`] and delegates to the
/// previous hook everywhere else.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `forward` and returns its tensor, or the panic's message (the first line of
/// libtorch's) when it panicked.
pub fn catch_forward(forward: impl FnOnce() -> Tensor) -> Result<Tensor, String> {
    install_hook();
    let outer = CATCHING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(forward));
    CATCHING.with(|c| c.set(outer));
    result.map_err(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("the network panicked");
        first_message(text)
    })
}

/// The useful line of a panic message from tch: libtorch's own message, without tch's
/// `called Result::unwrap()` wrapper or the C++ backtrace.
fn first_message(text: &str) -> String {
    let text = text
        .split_once("Torch(\"")
        .map(|(_, rest)| rest)
        .unwrap_or(text);
    let line = text
        .split(['\n'])
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(text);
    line.split("\\n")
        .next()
        .unwrap_or(line)
        .trim_end_matches(['"', ')'])
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_forward_becomes_its_message() {
        let error =
            catch_forward(|| panic!("Torch(\"input is too small\\nException raised from\")"))
                .expect_err("caught");
        assert_eq!(error, "input is too small");
        let ok = catch_forward(|| Tensor::from_slice(&[1.0f32])).expect("no panic");
        assert_eq!(ok.size(), vec![1]);
        // Outside, panics still unwind as usual.
        assert!(panic::catch_unwind(|| panic!("outside")).is_err());
    }
}
