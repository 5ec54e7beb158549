#![no_main]
//! See `promfed_fuzz::admission` (fuzz/src/lib.rs) for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| promfed_fuzz::admission(data));
