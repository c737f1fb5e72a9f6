//! The store: what goes in comes out, once, in the window and order the API serves, and
//! survives a restart; a second instance, a newer schema or a corrupt value are clear
//! errors, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use calltap::call::record::PropertyValue;
use calltap::call::{CallRecord, Direction, EndReason, OperatorRef, Outcome, WhoHungUp};
use calltap::store::{DiscoveredOperator, Inserted, Store, StoreError, SCHEMA_VERSION};

#[path = "support/records.rs"]
mod records;

/// An answered, exported incoming call starting at `start` (Unix seconds).
fn call(id: &str, start: u64) -> CallRecord {
    CallRecord {
        operator: OperatorRef {
            department: Some("Sales".into()),
            ..records::alice()
        },
        client_number: Some("+15551234567".into()),
        properties: BTreeMap::from([("Quality score".to_owned(), PropertyValue::Number(72.0))]),
        ..records::answered_call(id, start)
    }
}

fn missed(id: &str, start: u64) -> CallRecord {
    CallRecord {
        outcome: Outcome::Missed,
        exported: false,
        answer_ns: None,
        duration: 0,
        end_time: start,
        who_hung_up: WhoHungUp::System,
        end_reason: EndReason::NotAnswered,
        ..call(id, start)
    }
}

fn ids(store: &Store, start: u64, stop: u64) -> Vec<String> {
    store
        .calls_between(start, stop)
        .map(|c| c.expect("a readable call").id)
        .collect()
}

fn open(dir: &Path) -> Store {
    Store::open(dir).expect("the store opens")
}

#[test]
fn a_stored_call_reads_back_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let record = call("c1", 1_000);
    assert_eq!(store.put_call(&record).unwrap(), Inserted::New);
    assert_eq!(store.get_call("c1").unwrap(), Some(record));
    assert_eq!(store.get_call("nope").unwrap(), None);
    assert!(store.recordings_dir().is_dir());
    assert!(store.recordings_dir().starts_with(dir.path()));
    assert!(store.size_on_disk().unwrap() > 0);
    assert_eq!(store.recordings_size().unwrap(), 0);
}

#[test]
fn the_same_call_twice_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = call("c1", 1_000);
    assert_eq!(store.put_call(&first).unwrap(), Inserted::New);
    // A replay may rebuild the record slightly differently: the first one stays.
    let again = CallRecord {
        duration: 61,
        ..first.clone()
    };
    assert_eq!(store.put_call(&again).unwrap(), Inserted::Duplicate);
    assert_eq!(store.get_call("c1").unwrap(), Some(first));
    assert_eq!(store.count_calls().unwrap(), 1);
    assert_eq!(ids(&store, 0, 10_000), ["c1"]);

    // In a batch too, including twice within the batch.
    let batch = [call("c2", 1_001), call("c1", 1_000), call("c2", 1_001)];
    assert_eq!(
        store.put_calls(&batch).unwrap(),
        [Inserted::New, Inserted::Duplicate, Inserted::Duplicate]
    );
    assert_eq!(store.count_calls().unwrap(), 2);
    assert_eq!(ids(&store, 0, 10_000), ["c1", "c2"]);
}

#[test]
fn the_window_includes_its_start_and_excludes_its_stop() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for (id, start) in [
        ("before", 99),
        ("at-start", 100),
        ("inside", 150),
        ("last", 199),
        ("at-stop", 200),
    ] {
        store.put_call(&call(id, start)).unwrap();
    }
    assert_eq!(ids(&store, 100, 200), ["at-start", "inside", "last"]);
    assert_eq!(ids(&store, 100, 101), ["at-start"]);
    assert_eq!(ids(&store, 200, 201), ["at-stop"]);
    assert!(ids(&store, 100, 100).is_empty());
    assert!(
        ids(&store, 200, 100).is_empty(),
        "an inverted window is empty"
    );
    assert_eq!(ids(&store, 0, u64::MAX).len(), 5);
}

#[test]
fn calls_come_sorted_by_start_time_then_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Ids sort against their start times, and go in out of order.
    let calls = [
        call("b", 300),
        call("z", 100),
        call("c", 200),
        call("a", 300),
        call("y", 200),
    ];
    store.put_calls(&calls).unwrap();
    assert_eq!(ids(&store, 0, 1_000), ["z", "c", "y", "a", "b"]);
    let all: Vec<String> = store.all_calls().map(|c| c.unwrap().id).collect();
    assert_eq!(all, ["z", "c", "y", "a", "b"]);
}

#[test]
fn only_exported_calls_leave_through_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let internal = CallRecord {
        direction: Direction::Internal,
        exported: false,
        ..call("internal", 120)
    };
    let busy = CallRecord {
        outcome: Outcome::Busy,
        ..missed("busy", 130)
    };
    store
        .put_calls(&[call("answered", 100), missed("missed", 110), internal, busy])
        .unwrap();
    assert_eq!(ids(&store, 0, 1_000), ["answered"]);

    // The operator's views see every outcome.
    let every: Vec<String> = store
        .all_calls_between(0, 1_000)
        .map(|c| c.unwrap().id)
        .collect();
    assert_eq!(every, ["answered", "missed", "internal", "busy"]);
    assert_eq!(store.all_calls().count(), 4);

    let counts = store.counts().unwrap();
    assert_eq!(counts.total(), 4);
    assert_eq!(counts.get(Outcome::Answered), 2);
    assert_eq!(counts.get(Outcome::Missed), 1);
    assert_eq!(counts.get(Outcome::Busy), 1);
    assert_eq!(counts.get(Outcome::Failed), 0);
    assert_eq!(counts.exported, 1);
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .put_calls(&[call("c1", 100), missed("m1", 50)])
            .unwrap();
        store.put_call(&call("c2", 200)).unwrap();
        store
            .upsert_operator(&sighting("101", "Alice", 10))
            .unwrap();
        store.put_in_progress("live-1", b"state").unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.get_call("c1").unwrap(), Some(call("c1", 100)));
    assert_eq!(ids(&store, 0, 1_000), ["c1", "c2"]);
    assert_eq!(store.count_calls().unwrap(), 3);
    assert_eq!(store.counts().unwrap().exported, 2);
    assert_eq!(store.operators().unwrap()[0].name, "Alice");
    assert_eq!(
        store.in_progress().unwrap(),
        [("live-1".to_owned(), b"state".to_vec())]
    );
    assert_eq!(
        store.put_call(&call("c1", 100)).unwrap(),
        Inserted::Duplicate
    );
}

#[test]
fn a_second_instance_on_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let err = Store::open(dir.path())
        .err()
        .expect("the second open fails");
    assert!(
        matches!(&err, StoreError::Locked { path } if path == dir.path()),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("another calltap instance is probably running"),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );

    // Once the first is gone, the folder opens again.
    drop(first);
    open(dir.path());
}

#[test]
fn a_store_from_a_newer_calltap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let db = raw_sled(&dir.path().join("db")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", &(SCHEMA_VERSION + 1).to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path()).err().expect("a newer schema fails");
    assert!(
        matches!(err, StoreError::NewerSchema { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("newer calltap"), "{message}");
    assert!(
        message.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
        "{message}"
    );
}

fn sighting(ext: &str, name: &str, at: u64) -> DiscoveredOperator {
    DiscoveredOperator {
        id: ext.into(),
        name: name.into(),
        extension: ext.into(),
        first_seen: at,
        last_seen: at,
    }
}

#[test]
fn a_display_name_beats_a_bare_extension_and_then_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(
        store
            .upsert_operator(&sighting("101", "101", 100))
            .unwrap()
            .name,
        "101"
    );
    let op = store
        .upsert_operator(&sighting("101", "Alice Smith", 200))
        .unwrap();
    assert_eq!(
        op.name, "Alice Smith",
        "a display name replaces the bare extension"
    );
    let op = store
        .upsert_operator(&sighting("101", "Bob Jones", 50))
        .unwrap();
    assert_eq!(op.name, "Alice Smith", "the first display name stays");
    let op = store.upsert_operator(&sighting("101", "101", 300)).unwrap();
    assert_eq!(
        op.name, "Alice Smith",
        "a bare extension never replaces a name"
    );
    assert_eq!((op.first_seen, op.last_seen), (50, 300));

    store.upsert_operator(&sighting("100", "", 10)).unwrap();
    let all = store.operators().unwrap();
    let names: Vec<(&str, &str)> = all
        .iter()
        .map(|o| (o.id.as_str(), o.name.as_str()))
        .collect();
    assert_eq!(names, [("100", ""), ("101", "Alice Smith")]);
}

#[test]
fn in_progress_state_is_put_replaced_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.in_progress().unwrap().is_empty());
    store.put_in_progress("b", b"one").unwrap();
    store.put_in_progress("a", b"two").unwrap();
    store.put_in_progress("b", b"three").unwrap();
    assert_eq!(
        store.in_progress().unwrap(),
        [
            ("a".to_owned(), b"two".to_vec()),
            ("b".to_owned(), b"three".to_vec())
        ]
    );
    store.remove_in_progress("a").unwrap();
    store.remove_in_progress("never-there").unwrap();
    assert_eq!(
        store.in_progress().unwrap(),
        [("b".to_owned(), b"three".to_vec())]
    );

    // Storing the finished call clears its in-progress state in the same write.
    store.put_call(&call("b", 100)).unwrap();
    assert!(store.in_progress().unwrap().is_empty());
}

#[test]
fn a_corrupt_record_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .put_calls(&[call("c1", 100), call("c2", 200), call("c3", 300)])
            .unwrap();
    }
    {
        // `calls`: start time (u64 BE) ++ id -> [format, flags, outcome] ++ the record.
        let key = |start: u64, id: &str| [&start.to_be_bytes()[..], id.as_bytes()].concat();
        let db = raw_sled(&dir.path().join("db")).unwrap();
        let calls = db.open_tree("calls").unwrap();
        calls
            .insert(key(200, "c2"), &b"\x01\x01\x00{\"id\": \"c2\", trunc"[..])
            .unwrap();
        calls
            .insert(key(300, "c3"), &b"\x09binary from the future"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let store = open(dir.path());
    let out: Vec<Result<CallRecord, StoreError>> = store.calls_between(0, 1_000).collect();
    assert_eq!(out.len(), 3, "the iteration goes past both corrupt records");
    assert_eq!(out[0].as_ref().unwrap().id, "c1");
    for (item, id) in out[1..].iter().zip(["c2", "c3"]) {
        match item {
            Err(StoreError::Corrupt {
                tree: "calls", key, ..
            }) => assert_eq!(key, id),
            other => panic!("expected a corrupt-record error for {id}, got {other:?}"),
        }
    }
    let message = out[2].as_ref().unwrap_err().to_string();
    assert!(
        message.contains("\"c3\"") && message.contains("unknown record format 9"),
        "{message}"
    );
    assert!(matches!(
        store.get_call("c2"),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(store.corrupt_seen(), 3);
    assert_eq!(store.get_call("c1").unwrap().unwrap().id, "c1");
}

#[test]
fn a_record_that_would_not_read_back_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let nan = CallRecord {
        ring_seconds: f64::NAN,
        ..call("nan", 100)
    };
    assert!(
        matches!(store.put_call(&nan), Err(StoreError::InvalidRecord { id, .. }) if id == "nan")
    );
    let empty = call("", 100);
    assert!(matches!(
        store.put_call(&empty),
        Err(StoreError::InvalidRecord { .. })
    ));
    assert_eq!(store.count_calls().unwrap(), 0);
}

/// sled itself, under a store just dropped: its flusher thread lets go of sled's lock
/// when it next wakes (Store::open waits the same way).
fn raw_sled(path: &std::path::Path) -> sled::Result<sled::Db> {
    for _ in 0..150 {
        match sled::open(path) {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            result => return result,
        }
    }
    sled::open(path)
}
