#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rustbalance_fuzzing::onionbalance_config(data));
