//! The `sip_message` fuzz target; its body is `calltap_fuzz::targets::sip_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| calltap_fuzz::targets::sip_message::run(data));
