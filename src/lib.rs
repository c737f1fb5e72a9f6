//! calltap: a passive SIP/RTP recorder that sits beside an on-prem PBX.
//!
//! The data flows one way, and the modules follow it (docs/architecture.md):
//! `capture` (frames with capture time) -> `net` (datagrams and TCP-framed SIP messages)
//! -> `sip` -> `dialog` -> `media` -> `call` and `events`, all standing on `base` (the
//! words they share). `engine` drives them frame by frame; it is synchronous and never
//! reads the wall clock: time comes from packets. The drivers sit on top: `replay`
//! (files, through a `drive::FrameSink`) and `run` (live, from a `drive::FrameSource`) feed the
//! engine, `ingest` puts what it reports into the `store`, which `api` serves and
//! `events::deliver` pushes as webhooks.

pub mod api;
pub mod base;
pub mod call;
pub mod capture;
pub mod config;
pub mod dialog;
pub mod drive;
pub mod engine;
pub mod events;
pub mod ingest;
pub mod integrations;
#[cfg(any(test, feature = "generators"))]
pub mod loadgen;
pub mod media;
pub mod net;
#[cfg(any(test, feature = "generators"))]
pub mod pcapgen;
pub mod replay;
pub mod run;
pub mod sip;
pub mod store;
pub mod ui;
