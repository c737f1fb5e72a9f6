//! The `live_block` fuzz target; its body is `calltap_fuzz::targets::live_block`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::live_block::run(data));
