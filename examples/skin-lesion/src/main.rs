//! `lesion-engine`: the `engine` command line with LesionNet linked in. Linking the crate is
//! what registers its model; nothing else differs from `engine`.

use skin_lesion as _;

fn main() -> std::process::ExitCode {
    fl_cli::main()
}
