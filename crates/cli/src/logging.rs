//! Log output: `tracing` to stderr, filtered by `RUST_LOG` (default: warnings).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once per process; later calls keep the first).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,engine=info,fl_cli=info,fl_torch=info,fl_model=info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init()
        .ok();
}
