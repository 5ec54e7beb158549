//! YAML documents as Prometheus reads them.
//!
//! Prometheus (Go `yaml.v2`) and kubectl read YAML 1.1, where unquoted `on`, `yes`, `0777`,
//! `1_000` or `12:30` are not strings. serde-based YAML crates resolve YAML 1.2 and lose how a
//! scalar was written, so a round trip through them can silently turn a string into a boolean.
//! This module keeps every scalar's original text and style: plain scalars are written back
//! exactly as they were read, and any other string is written plain only where both a YAML 1.1
//! and a YAML 1.2 reader would read it back as the same string.
//!
//! - `resolve`: what a YAML 1.1 reader makes of a plain scalar, and its JSON value;
//! - `parse`: saphyr-parser events checked for what YAML 1.1 and 1.2 readers disagree on;
//! - `build`: the tree built from those events within [`Limits`] (alias bombs, depth), as
//!   `count` counts them;
//! - `emit`: the tree written back as block YAML;
//! - `place`, `edit`: a changed tree written over the text it was read from, only the changes
//!   rewritten (the places of the nodes recorded from the events the tree is built from);
//! - `verify`: whether a text reads as a tree, compared event by event (the writer's proof);
//! - `tree`: [`Node`], [`Value`], [`Scalar`] and their accessors.

mod build;
mod count;
mod edit;
mod emit;
mod parse;
mod place;
mod resolve;
mod tree;
mod verify;

pub use edit::{emit_in_place, emit_in_place_over};
pub use emit::emit;
pub use parse::{
    Expanded, Limits, Over, YamlError, has_top_level_key, parse, parse_counted, parse_placed,
};
pub use place::Places;
pub use resolve::{Kind, resolve_1_1};
pub use tree::{Node, Scalar, Style, Value};

#[cfg(test)]
mod edit_tests;
#[cfg(test)]
mod tests;
