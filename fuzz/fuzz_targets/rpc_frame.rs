//! The `rpc_frame` fuzz target: feeds libFuzzer's bytes to `signalroom_core::fuzz::rpc_frame`:
//! that function's docs say what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signalroom_core::fuzz::rpc_frame(data));
