//! The `sdp` fuzz target; its body is `calltap_fuzz::targets::sdp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::sdp::run(data));
