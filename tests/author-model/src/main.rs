//! `author-engine`: `engine` with this crate's model linked in.

use author_model_tests as _;

fn main() -> std::process::ExitCode {
    fl_cli::main()
}
