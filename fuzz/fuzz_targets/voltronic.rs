//! Fuzz target: see `markaz_fuzz::voltronic`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| markaz_fuzz::voltronic(data));
