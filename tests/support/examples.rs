//! The example inputs most webhook tests start from: promfed's example config, the TKG
//! prometheus-server ConfigMap, and what the engine makes of an object (the answer a test
//! expects from the webhook).

use promfed::{Config, Engine};
use serde_json::Value;

use super::read_data;
use super::review::data_pairs;

/// The engine for a config text.
pub fn engine(config: &str) -> Engine {
    Engine::new(Config::from_yaml(config).expect("test config loads")).expect("engine")
}

/// The example config (the seed's data values) with `extra` YAML appended.
pub fn example_config(extra: &str) -> String {
    format!("{}\n{extra}", promfed::config::EXAMPLE)
}

/// The TKG prometheus-server ConfigMap as JSON, from the shipped example review.
pub fn tkg_configmap() -> Value {
    let review: Value =
        serde_json::from_str(&read_data("review-tkg.json")).expect("review-tkg.json");
    review["request"]["object"].clone()
}

/// `object` with its `data` replaced by what the engine makes of it.
pub fn rendered(engine: &Engine, object: &Value) -> Value {
    let rewrite = engine
        .rewrite(&data_pairs(object))
        .expect("engine rewrites the object");
    let mut out = object.clone();
    out["data"] = Value::Object(
        rewrite
            .data
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    );
    out
}
