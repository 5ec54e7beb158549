//! `promfed serve`: the HTTPS admission webhook.
//!
//! The whole request path: [`router`] (`handlers.rs`, `POST /mutate`) reads the body (within
//! a memory budget shared by all requests, `budget.rs`) and hands it to [`crate::admission`];
//! a cache miss runs the engine on one of a few long-lived worker threads (`workers.rs`, one
//! per core) so the runtime never stalls. `state.rs` holds what the handlers share (the
//! current config, swapped on reload); `serve.rs` starts the listeners and drains them on
//! SIGTERM; `conn.rs` bounds connections; `tls.rs` terminates TLS with a certificate that
//! `reload.rs` swaps when the files change; `metrics.rs` counts and `telemetry.rs` logs;
//! `dev.rs` makes `--dev` work without any file.

pub mod budget;
pub mod conn;
pub mod dev;
mod handlers;
pub mod io;
pub mod metrics;
pub mod reload;
mod serve;
mod state;
mod telemetry;
pub mod tls;
pub mod workers;

pub use crate::admission::{FRAME_COST_BYTES, FRAMING_ALLOWANCE_BYTES};
pub use budget::BODY_BUDGET_BYTES;
pub use handlers::{metrics_router, router};
pub(crate) use serve::stopped;
pub use serve::{ServeArgs, run, serve};
pub use state::{AppState, BODY_TIMEOUT, REVIEW_DEADLINE};
pub use telemetry::LogFormat;
pub(crate) use telemetry::printable;
