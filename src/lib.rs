#![forbid(unsafe_code)]
//! promfed: turn a plain Prometheus `prometheus-server` ConfigMap into the hub of a
//! multi-cluster federation.
//!
//! [`engine::Engine`] is the pure rewrite; the CLI (`render`) and the webhook (`server`) are
//! thin shells around it.

pub mod admission;
pub mod config;
pub mod dashboard;
pub mod engine;
pub mod object;
pub mod prometheus;
pub mod promql;
pub mod redact;
pub mod yaml;

pub use config::Config;
pub use engine::Engine;
pub mod render;
pub mod server;
