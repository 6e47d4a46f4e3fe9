//! Fuzz target: see `markaz_fuzz::sms_pdu`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| markaz_fuzz::sms_pdu(data));
