#![no_main]
//! See `promfed_fuzz::promql_syntax` (fuzz/src/lib.rs) and its oracle (fuzz/src/promql_syntax.rs)
//! for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| promfed_fuzz::promql_syntax(data));
