//! calltap: a passive SIP/RTP recorder that sits beside an on-prem PBX.
//!
//! The data flows one way, and the modules follow it:
//! `capture` (frames with capture time) -> `net` (datagrams and TCP-framed SIP messages)
//! -> `sip` -> `dialog` -> `media` -> `call` -> `store` -> `api`.
//! The engine is synchronous and never reads the wall clock: time comes from packets.

pub mod api;
pub mod base;
pub mod call;
pub mod capture;
pub mod config;
pub mod dialog;
pub mod engine;
pub mod events;
pub mod ingest;
pub mod loadgen;
pub mod media;
pub mod net;
pub mod pcapgen;
pub mod replay;
pub mod run;
pub mod sip;
pub mod store;
