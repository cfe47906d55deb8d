//! The workflow YAML of a FedAvg task: a versioned format, its defaults, and a checker that
//! reports every problem of a file at once with its line, column and key path.
//!
//! ```no_run
//! use fl_workflow::Workflow;
//!
//! match Workflow::load("workflows/fedavg.yaml") {
//!     Ok(workflow) => println!("{} rounds, digest {}", workflow.max_rounds, workflow.digest()),
//!     Err(errors) => {
//!         for error in &errors {
//!             eprintln!("error: {error}");
//!         }
//!     }
//! }
//! ```
//!
//! [`Workflow`] is the effective workflow, defaults filled in and paths resolved against the
//! workflow file's directory; it serialises to what can be printed or hashed
//! ([`Workflow::digest`]). [`json_schema`] describes the same types for editors;
//! [`accepted_keys`] lists every key path the parser accepts.
//!
//! [`Workflow::load_with`] applies command-line [`Overrides`] (`--set KEY=VALUE`,
//! `--output DIR`) before checking, so they are checked like the file itself:
//!
//! ```no_run
//! use fl_workflow::{Overrides, Workflow};
//!
//! let overrides = Overrides::from_sets(["max_rounds=3", "training.optimizer=sgd"])?
//!     .with_output("runs/try-sgd");
//! let workflow = Workflow::load_with("workflows/fedavg.yaml", &overrides)?;
//! assert_eq!(workflow.max_rounds, 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`template::fedavg`] writes a new workflow file with every key and its default, commented.

mod check;
mod duration;
mod error;
mod keys;
mod load;
mod overrides;
mod paths;
mod quote;
mod schema;
pub mod template;
mod workflow;
mod yaml;

pub use duration::{Timeout, TimeoutParseError};
pub use error::{Position, WorkflowError, WorkflowErrors};
pub use keys::accepted_keys;
pub use overrides::{Override, OverrideError, Overrides};
pub use quote::yaml_string;
pub use schema::json_schema;
pub use workflow::{
    Aggregation, Dataset, EarlyStopping, Initiator, MAX_ROUNDS_LIMIT, MERGE_EPOCHS_LIMIT,
    NatsTransport, Optimizer, Participant, ROUND_RETRIES_LIMIT, SUPPORTED_VERSIONS, StoppingMetric,
    THREADS_LIMIT, Timeouts, Training, Transport, Weighting, Workflow, defaults,
};
