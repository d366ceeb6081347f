//! The `token` fuzz target: feeds libFuzzer's bytes to `signalroom_core::fuzz::token`:
//! that function's docs say what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signalroom_core::fuzz::token(data));
