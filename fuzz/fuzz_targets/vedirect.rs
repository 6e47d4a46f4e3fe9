//! Fuzz target: see `markaz_fuzz::vedirect`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| markaz_fuzz::vedirect(data));
