//! The `rpc_dispatch` fuzz target: feeds libFuzzer's bytes to `signalroom_server::fuzz::rpc_dispatch`:
//! that function's docs say what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signalroom_server::fuzz::rpc_dispatch(data));
