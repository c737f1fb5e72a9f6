//! The `rtp` fuzz target; its body is `calltap_fuzz::targets::rtp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::rtp::run(data));
