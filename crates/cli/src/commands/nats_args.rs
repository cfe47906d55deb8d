//! The NATS connection arguments shared by `engine coordinator|agent|submit|status|logs`.

use std::path::PathBuf;

use clap::Args;
use fl_runtime::NatsOptions;

/// How to reach the NATS server, and as whom.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// User name (the shipped configuration has one user per node, plus `coordinator`).
    #[arg(long, env = "FEDENGINE_NATS_USER", requires = "password")]
    pub user: Option<String>,
    /// Password of `--user` (prefer the environment variable to the command line).
    #[arg(long, env = "FEDENGINE_NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// A NATS credentials file (`.creds`: JWT and NKey seed) instead of user and password.
    #[arg(long, env = "FEDENGINE_NATS_CREDS", conflicts_with = "user")]
    pub creds: Option<PathBuf>,
    /// A PEM file of CA certificates to trust; setting it requires TLS.
    #[arg(long, env = "FEDENGINE_NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl NatsArgs {
    /// Connection options for `url` (task and endpoint are filled in by the runtime).
    pub fn options(&self, url: &str) -> NatsOptions {
        let mut options = NatsOptions::new(url, "unset", "unset");
        options.user_password = self.user.clone().zip(self.password.clone());
        options.credentials_file = self.creds.clone();
        options.tls_ca = self.tls_ca.clone();
        options
    }
}
