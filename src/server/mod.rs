//! `promfed serve`: the HTTPS admission webhook.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `promfed serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// promfed config file (reloaded when it changes).
    #[arg(long, required_unless_present = "dev")]
    pub config: Option<PathBuf>,
    /// PEM serving certificate (reloaded when it changes).
    #[arg(long, required_unless_present = "dev")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the serving certificate.
    #[arg(long, required_unless_present = "dev")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: when given, clients must present a certificate it signed.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// HTTPS listener for `POST /mutate`.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP listener for `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, default_value = "0.0.0.0:9102")]
    pub metrics_listen: SocketAddr,
    /// Local development: embedded example config and a fresh self-signed certificate.
    #[arg(long)]
    pub dev: bool,
}

/// Run the webhook until SIGTERM or Ctrl-C.
pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("promfed serve is not implemented yet")
}
