//! The `g726` fuzz target; its body is `calltap_fuzz::targets::g726`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::g726::run(data));
