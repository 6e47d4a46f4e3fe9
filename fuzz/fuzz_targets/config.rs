//! Fuzz target: see `markaz_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| markaz_fuzz::config(data));
