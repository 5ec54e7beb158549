//! promfed's integration tests: one test binary (links once, runs in one process), as in
//! ripgrep. Each test module is a file under `tests/it/`, added here with one `#[path]` + `mod`
//! pair, kept in alphabetical order:
//!
//! ```ignore
//! #[path = "it/NAME.rs"]
//! mod NAME;
//! ```
//!
//! (Files under `tests/it/` are not test targets of their own: cargo only auto-discovers
//! `tests/*.rs` and `tests/*/main.rs`, so never add a `tests/it/main.rs`.)
//!
//! Shared helpers live in `tests/support/`, a file per concern (`mod.rs` says which): inputs
//! (`data`), the real peers and the skip convention (`require!(promtool)`), golden files
//! (`assert_golden`), `promfed serve` and its TLS client (`serve`, `tls`, `load`), the Prometheus
//! launcher (`prometheus`), AdmissionReview fixtures (`review`). Run one module with
//! `cargo test --test tests corpus_inputs`.

mod support;

#[path = "it/apiserver.rs"]
mod apiserver;

#[path = "it/attacks.rs"]
mod attacks;

#[path = "it/chart.rs"]
mod chart;

#[path = "it/cli.rs"]
mod cli;

#[path = "it/corpus_inputs.rs"]
mod corpus_inputs;

#[path = "it/dashboard.rs"]
mod dashboard;

#[path = "it/deploy.rs"]
mod deploy;

#[path = "it/dialect.rs"]
mod dialect;

#[path = "it/engine.rs"]
mod engine;

#[path = "it/faults.rs"]
mod faults;

#[path = "it/federation.rs"]
mod federation;

#[path = "it/hostile.rs"]
mod hostile;

#[path = "it/image.rs"]
mod image;

#[path = "it/installs.rs"]
mod installs;

#[path = "it/limits.rs"]
mod limits;

#[path = "it/node.rs"]
mod node;

#[path = "it/operator.rs"]
mod operator;

#[path = "it/package.rs"]
mod package;

#[path = "it/properties.rs"]
mod properties;

#[path = "it/promql.rs"]
mod promql;

#[path = "it/releases.rs"]
mod releases;

#[path = "it/security.rs"]
mod security;

#[path = "it/selection.rs"]
mod selection;

#[path = "it/semantic.rs"]
mod semantic;

#[path = "it/syntax.rs"]
mod syntax;

#[path = "it/syntax_properties.rs"]
mod syntax_properties;

#[path = "it/validation.rs"]
mod validation;

#[path = "it/webhook.rs"]
mod webhook;

#[path = "it/webhook_tls.rs"]
mod webhook_tls;

#[path = "it/yaml.rs"]
mod yaml;
