#![forbid(unsafe_code)]
//! promfed: turn a plain Prometheus `prometheus-server` ConfigMap into the hub of a
//! multi-cluster federation.

pub mod yaml;
