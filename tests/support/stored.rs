//! A generated scenario replayed into a new store with recording on, for the tests that
//! look at what the store and its recordings hold afterwards.
#![allow(dead_code)] // each test binary uses a part of it

use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::pcapgen::scenario::Scenario;
use calltap::pcapgen::{ByteOrder, Link, Packet, PcapFile, TsResolution};
use calltap::replay::replay_files;
use calltap::store::Store;

/// A store in its own temporary folder (the store is dropped first).
pub struct Stored {
    pub store: Store,
    _dir: tempfile::TempDir,
}

/// `packets` as an Ethernet pcap, in the order given.
pub fn pcap_of(packets: &[Packet]) -> Vec<u8> {
    let mut pcap = PcapFile::new(
        Vec::new(),
        Link::Ethernet,
        ByteOrder::Little,
        TsResolution::Micro,
    )
    .expect("writer");
    for p in packets {
        pcap.write_packet(p).expect("written");
    }
    pcap.finish().expect("capture")
}

/// Writes `scenario` as an Ethernet pcap and replays it with `config` into a new store.
pub fn replay_scenario(scenario: &Scenario, config: &Config) -> Stored {
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = dir.path().join("scenario.pcap");
    std::fs::write(&capture, scenario.pcap(Link::Ethernet)).expect("write capture");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let engine = Engine::with_recordings(config, store.recordings_dir().to_path_buf());
    let mut ingest = Ingest::new(engine, &store);
    replay_files(&[capture], &mut ingest, false);
    drop(ingest);
    Stored { store, _dir: dir }
}
