//! The `engine` command line of fedengine, as a library: the `engine` binary is
//! [`main`], and a model author's own engine binary is the same call with the author's model
//! crates linked in (docs/AUTHORING.md):
//!
//! ```no_run
//! // src/main.rs of an author's engine: linking the crate registers its models.
//! // use my_models as _;
//! fn main() -> std::process::ExitCode {
//!     fl_cli::main()
//! }
//! ```

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
    /// Make datasets: import an ImageFolder tree or a CSV, partition one into sites.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Fine-tune a model package on a local dataset and write model.zip.
    Finetune(commands::finetune::FinetuneArgs),
    /// Print the most probable labels of images.
    Predict(commands::predict::PredictArgs),
    /// Run a FedAvg workflow and write its results: embedded (every node in this process),
    /// or with `--nats URL` on the coordinator service and agents.
    Submit(commands::submit::SubmitArgs),
    /// Run the coordinator service: it takes submitted workflows and runs them on agents.
    Coordinator(commands::service::CoordinatorArgs),
    /// Run a node's agent next to its data: it hosts the node in the tasks it is announced.
    Agent(commands::service::AgentArgs),
    /// List the coordinator service's tasks, running and finished.
    Status(commands::status::StatusArgs),
    /// Print a task's log from the coordinator service (`--follow` to keep printing).
    Logs(commands::status::LogsArgs),
    /// Check a workflow file and print every problem, or a summary of the task.
    Validate(commands::validate::ValidateArgs),
    /// Workflow file tools.
    #[command(subcommand)]
    Workflow(commands::validate::WorkflowCommand),
}

/// Runs the command line given to this process.
pub fn main() -> ExitCode {
    run_from(std::env::args_os())
}

/// Runs a command line (`args[0]` is the program name), as `engine` would; for author
/// binaries and tests that run the engine in their own process.
pub fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    logging::init();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = match cli.command {
        Command::Model(command) => commands::model::run(command),
        Command::Data(command) => commands::data::run(command),
        Command::Finetune(args) => commands::finetune::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Submit(args) => commands::submit::run(args),
        Command::Coordinator(args) => commands::service::coordinator(args),
        Command::Agent(args) => commands::service::agent(args),
        Command::Status(args) => commands::status::status(args),
        Command::Logs(args) => commands::status::logs(args),
        Command::Validate(args) => commands::validate::run(args),
        Command::Workflow(command) => commands::validate::run_workflow(command),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, each cause once: library errors often say their
/// source's message already (`file: the tensors do not match ...`), so a cause whose text is
/// in what was written is not written again.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn each_cause_is_written_once() {
        #[derive(Debug)]
        struct Wrapped {
            source: std::io::Error,
        }
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "weights.pt: {}", self.source)
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let io = || std::io::Error::other("the file is cut off");
        let error = anyhow::Error::new(Wrapped { source: io() }).context("opening the package");
        assert_eq!(
            describe(&error),
            "opening the package: weights.pt: the file is cut off"
        );
        let plain = anyhow::Error::new(io()).context("reading weights.pt");
        assert_eq!(describe(&plain), "reading weights.pt: the file is cut off");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
