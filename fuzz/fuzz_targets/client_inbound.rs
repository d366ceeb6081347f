//! The `client_inbound` fuzz target: feeds libFuzzer's bytes to `signalroom_client::fuzz::inbound`:
//! that function's docs say what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signalroom_client::fuzz::inbound(data));
