//! The `tcp_streams` fuzz target; its body is `calltap_fuzz::targets::tcp_streams`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::tcp_streams::run(data));
