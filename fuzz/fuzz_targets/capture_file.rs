//! The `capture_file` fuzz target; its body is `calltap_fuzz::targets::capture_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::capture_file::run(data));
