//! The `frame_decoder` fuzz target; its body is `calltap_fuzz::targets::frame_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::frame_decoder::run(data));
