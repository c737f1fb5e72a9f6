//! The `engine` fuzz target; its body is `calltap_fuzz::targets::engine`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::engine::run(data));
