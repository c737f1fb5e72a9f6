//! The fuzz targets' bodies, one module each: libFuzzer runs them from `fuzz_targets/`
//! (nightly), and `cargo test` runs them over the inputs in `fuzz/regressions/`.

pub mod capture_file;
pub mod engine;
pub mod frame_decoder;
pub mod g726;
pub mod live_block;
pub mod rtp;
pub mod sdp;
pub mod sip_message;
pub mod speech_codecs;
pub mod tcp_streams;
