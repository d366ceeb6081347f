#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signalroom_client::fuzz::inbound(data));
