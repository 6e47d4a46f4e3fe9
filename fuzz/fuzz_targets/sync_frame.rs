//! Fuzz target: see `markaz_fuzz::sync_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| markaz_fuzz::sync_frame(data));
