//! The `speech_codecs` fuzz target; its body is `calltap_fuzz::targets::speech_codecs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::speech_codecs::run(data));
