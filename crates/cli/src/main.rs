//! `engine`: the command-line entry point of fedengine (see the `fl_cli` library).

fn main() -> std::process::ExitCode {
    fl_cli::main()
}
