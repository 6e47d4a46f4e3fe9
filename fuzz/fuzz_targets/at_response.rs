//! Fuzz target: see `markaz_fuzz::at_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| markaz_fuzz::at_response(data));
