//! The `rest_body` fuzz target: feeds libFuzzer's bytes to `signalroom_core::fuzz::rest_body`:
//! that function's docs say what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signalroom_core::fuzz::rest_body(data));
