#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signalroom_server::fuzz::rpc_dispatch(data));
