//! `engine`: the command-line entry point of fedengine.

mod commands;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// fedengine: federated fine-tuning of AlphaMed-style model packages.
#[derive(Debug, Parser)]
#[command(name = "engine", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check and inspect model packages.
    #[command(subcommand)]
    Model(commands::model::ModelCommand),
}

fn main() -> ExitCode {
    logging::init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Model(command) => commands::model::run(command),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
