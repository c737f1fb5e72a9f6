//! An INVITE flood nobody answers (a SIP scanner's), with a real call in the middle of
//! it: the flood costs a bounded number of dialogs and records whatever its size, is
//! counted per source, and the real call is recorded as if the flood were not there.

use std::time::Duration;

use calltap::capture::{Frame, LinkType};
use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::pcapgen::flood::FloodSpec;
use calltap::pcapgen::{CallScript, Packet};
use calltap::replay::FrameSink;
use calltap::store::Store;

const PENDING: usize = 500;
const PER_SOURCE: u32 = 4;
const PER_MINUTE: u32 = 50;

fn config() -> Config {
    let mut config = Config::default();
    config.calls.max_no_response = PENDING;
    config.calls.no_response_per_source_per_minute = PER_SOURCE;
    config.calls.no_response_per_minute = PER_MINUTE;
    config
}

struct Outcome {
    records: u64,
    answered: Vec<calltap::call::CallRecord>,
    most_pending: u64,
    stats: calltap::dialog::NoResponseStats,
    media_calls_over_limit: u64,
}

/// Feeds a flood of `invites` (from `sources` addresses, with SDP offers) and one
/// answered call placed in its middle, through the engine into a store.
fn flood(invites: usize, sources: usize) -> Outcome {
    let spec = FloodSpec {
        with_sdp: true,
        ..FloodSpec::new(invites, sources)
    };
    let middle = spec.invite(invites / 2).time;
    let call = CallScript::new(7)
        .start(middle)
        .talk(Duration::from_secs(4));
    let mut packets: Vec<Packet> = (0..invites).map(|i| spec.invite(i)).collect();
    packets.extend(call.to_vec());
    packets.sort_by_key(|p| p.time);

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let config = config();
    let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
    let mut ingest = Ingest::new(engine, &store);
    let mut most_pending = 0;
    ingest.begin_file();
    for (i, p) in packets.iter().enumerate() {
        ingest.frame(&Frame {
            time: p.time,
            link: LinkType::RawIp,
            data: &p.data,
            orig_len: p.data.len() as u32,
        });
        if i % 97 == 0 {
            let stats = ingest.engine.stats().dialogs;
            most_pending = most_pending.max(stats.no_response.pending);
        }
    }
    ingest.finish();
    let stats = ingest.engine.stats();
    let answered = store
        .all_calls()
        .filter_map(Result::ok)
        .filter(|c| c.answer_ns.is_some())
        .collect();
    Outcome {
        records: store.count_calls().expect("count"),
        answered,
        most_pending,
        stats: stats.dialogs.no_response,
        media_calls_over_limit: stats.media.calls_over_limit,
    }
}

#[test]
fn a_flood_costs_bounded_dialogs_and_records_and_spares_the_real_call() {
    // 10,000 INVITEs at 1,000 a second from 5 sources: 10 s, one minute of budget.
    let small = flood(10_000, 5);
    // Ten times the flood: the same bounds.
    let large = flood(100_000, 5);
    for (name, o) in [("10k", &small), ("100k", &large)] {
        assert!(
            o.most_pending <= PENDING as u64,
            "{name}: {}",
            o.most_pending
        );
        assert_eq!(
            o.media_calls_over_limit, 0,
            "{name}: the flood reached media"
        );
        // The real call: answered, recorded, with both directions of its audio.
        assert_eq!(o.answered.len(), 1, "{name}");
        let call = &o.answered[0];
        let rec = call.media.recording.as_ref().expect("recorded");
        assert!(rec.duration_ms >= 3_900, "{name}: {} ms", rec.duration_ms);
        assert!(call.media.caller_packets > 150 && call.media.callee_packets > 150);
    }
    // Records: within the budgets, per minute of capture time touched.
    let minutes = |invites: u64| invites / 1000 / 60 + 2;
    for (invites, o) in [(10_000u64, &small), (100_000, &large)] {
        let flood_records = o.records - 1;
        assert!(
            flood_records <= minutes(invites) * u64::from(PER_SOURCE.min(PER_MINUTE)) * 5,
            "{invites}: {flood_records} records"
        );
        assert!(
            flood_records > 0,
            "some are kept, to see what a scanner tries"
        );
        assert_eq!(o.stats.ended, invites, "every INVITE counted");
        assert_eq!(o.stats.stored + o.stats.not_stored, o.stats.ended);
        assert_eq!(o.stats.stored, flood_records);
        // Counted per source: five sources, a fifth each.
        assert_eq!(o.stats.sources.len(), 5);
        for s in &o.stats.sources {
            assert_eq!(s.invites, invites / 5, "{}", s.source);
        }
    }
    assert!(large.stats.ended_early > 0, "the pending limit was reached");
}

#[test]
fn a_flood_from_spoofed_sources_is_held_to_the_overall_budget() {
    // Every INVITE from its own address: the per-source budget cannot hold it.
    let o = flood(20_000, 20_000);
    let flood_records = o.records - 1;
    assert!(
        flood_records <= u64::from(PER_MINUTE) * 2,
        "{flood_records} records"
    );
    assert_eq!(o.stats.ended, 20_000);
    assert!(o.stats.other_sources > 0, "the source table stays bounded");
    assert_eq!(o.answered.len(), 1);
}
