//! The command line as a user runs it: replay into a store, list calls, check configs.

use std::path::PathBuf;
use std::process::{Command, Output};

fn calltap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(args)
        .env_remove("CALLTAP_CONFIG")
        .output()
        .expect("calltap runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn pcaps() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .display()
        .to_string()
}

#[test]
fn replay_stats_prints_the_counters_per_file() {
    let file = format!("{}/fragmented-invite-ipv4.pcap", pcaps());
    let out = calltap(&["replay", "--dry-run", "--stats", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let counters = &json[&file];
    for key in [
        "frames",
        "bytes",
        "link_types",
        "ipv4_packets",
        "ipv6_packets",
        "fragments_reassembled",
        "fragments_dropped",
        "udp_datagrams",
        "tcp_segments",
        "tcp_sip_messages",
        "undecodable",
    ] {
        assert!(counters.get(key).is_some(), "missing {key}: {counters}");
    }
    assert_eq!(counters["frames"], 109);
    assert_eq!(counters["fragments_reassembled"], 1);
    assert_eq!(counters["link_types"], serde_json::json!({"ethernet": 109}));
}

#[test]
fn replaying_twice_leaves_the_store_unchanged() {
    let data = tempfile::tempdir().expect("temp dir");
    let data = data.path().to_str().expect("utf-8 path");
    let capture = format!("{}/two-interfaces.pcapng", pcaps());
    let first = calltap(&["replay", "--data", data, &capture]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout).contains("calls: 2 new (2 answered)"),
        "{}",
        text(&first.stdout)
    );
    let listed = text(&calltap(&["calls", "--all", "--json", "--data", data]).stdout);

    let second = calltap(&["replay", "--data", data, &capture]);
    assert!(second.status.success());
    assert!(
        text(&second.stdout).contains("calls: 0 new (none), 0 exported, 2 already stored"),
        "{}",
        text(&second.stdout)
    );
    assert_eq!(
        listed,
        text(&calltap(&["calls", "--all", "--json", "--data", data]).stdout)
    );

    let json: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let calls = json["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 2);
    for call in calls {
        // The contract's fields, and calltap's own under a separate key.
        assert!(call["id"].as_str().is_some_and(|id| id.starts_with("c-")));
        assert_eq!(call["calltap"]["outcome"], "answered");
        assert_eq!(call["duration"], 2);
    }
}

#[test]
fn calls_lists_only_exported_calls_unless_asked() {
    let data = tempfile::tempdir().expect("temp dir");
    let data = data.path().to_str().expect("utf-8 path");
    // Extension 1001 calling 1002 with nothing configured: an internal call, kept
    // but not exported.
    let capture = format!("{}/call-ethernet.pcap", pcaps());
    assert!(calltap(&["replay", "-q", "--data", data, &capture])
        .status
        .success());
    let exported = text(&calltap(&["calls", "--data", data]).stdout);
    assert!(exported.ends_with("0 calls\n"), "{exported}");
    let all = text(&calltap(&["calls", "--all", "--data", data]).stdout);
    assert!(
        all.contains("internal  answered") && all.ends_with("1 calls\n"),
        "{all}"
    );
    let window = text(
        &calltap(&[
            "calls",
            "--all",
            "--data",
            data,
            "--since",
            "2026-01-15T10:00:03Z",
        ])
        .stdout,
    );
    assert!(
        window.ends_with("0 calls\n"),
        "answered at 10:00:02: {window}"
    );
    let bad = calltap(&["calls", "--data", data, "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("neither Unix seconds nor an RFC 3339 time"));
}

#[test]
fn check_config_accepts_the_example_and_names_the_line_of_a_mistake() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/calltap.toml");
    let out = calltap(&["check-config", "--config", example.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("calltap.toml");
    std::fs::write(&bad, "[api]\nlisten = \"127.0.0.1:8080\"\nlisen = \"x\"\n").expect("write");
    let out = calltap(&["check-config", "--config", bad.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("line 3") && err.contains("lisen"), "{err}");
}

#[test]
fn a_missing_capture_is_an_error_and_the_rest_still_replays() {
    let good = format!("{}/call-vlan.pcap", pcaps());
    let out = calltap(&["replay", "--dry-run", "/nonexistent.pcap", &good]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent.pcap"));
    assert!(
        text(&out.stdout).contains("calls: 1 new"),
        "{}",
        text(&out.stdout)
    );
}

/// `calltap passwd` from a pipe: the line to paste under `[ui]`, which the configuration
/// takes; a short password is refused.
#[test]
fn passwd_prints_a_hash_line_the_configuration_takes() {
    use std::io::Write;
    let run = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_calltap"))
            .arg("passwd")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("calltap runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("a long enough password\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let line = printed
        .lines()
        .find(|l| l.starts_with("password_hash = \"$argon2id$"))
        .unwrap_or_else(|| panic!("no hash line in {printed}"));
    let config = calltap::config::Config::from_toml(&format!("[ui]\n{line}\n"), "passwd")
        .expect("the configuration takes the line");
    assert!(config.ui.password_hash.is_some());

    let short = run("short\n");
    assert_eq!(short.status.code(), Some(2));
    assert!(text(&short.stderr).contains("shorter than 8 characters"));
}
