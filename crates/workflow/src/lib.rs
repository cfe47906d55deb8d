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

mod check;
mod duration;
mod error;
mod keys;
mod load;
mod paths;
mod schema;
mod workflow;
mod yaml;

pub use duration::{Timeout, TimeoutParseError};
pub use error::{Position, WorkflowError, WorkflowErrors};
pub use keys::accepted_keys;
pub use schema::json_schema;
pub use workflow::{
    Aggregation, Dataset, EarlyStopping, Initiator, MAX_ROUNDS_LIMIT, MERGE_EPOCHS_LIMIT,
    NatsTransport, Optimizer, Participant, ROUND_RETRIES_LIMIT, SUPPORTED_VERSIONS, StoppingMetric,
    THREADS_LIMIT, Timeouts, Training, Transport, Weighting, Workflow, defaults,
};
