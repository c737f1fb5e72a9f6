//! The web console in a real browser: headless Chromium, driven by selenium (PyPI)
//! through Debian's chromium-driver, loads each page, opens a message from the SIP
//! ladder, checks the player fetches its recording and the Live page gets its events,
//! and saves screenshots under target/tmp/ui-screenshots as artefacts.
//!
//! The Python with selenium is CALLTAP_SELENIUM_PYTHON (.ci/run makes a venv for it),
//! else python3; a missing piece is a skip (see support/skip.rs).

#[path = "support/console.rs"]
mod console;
#[path = "support/records.rs"]
mod records;
#[path = "support/skip.rs"]
mod skip;
#[path = "support/stored.rs"]
mod stored;

use std::path::{Path, PathBuf};
use std::process::Command;

fn found(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn python_with_selenium() -> Option<String> {
    let python = std::env::var("CALLTAP_SELENIUM_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_page_in_headless_chromium() {
    let Some(chromium) = found(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]) else {
        skip::skip("chromium is not installed (apt-get install chromium)");
        return;
    };
    let Some(driver) = found(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]) else {
        skip::skip("chromedriver is not installed (apt-get install chromium-driver)");
        return;
    };
    let Some(python) = python_with_selenium() else {
        skip::skip("selenium is not installed for python3 (pip install selenium; .ci/run sets CALLTAP_SELENIUM_PYTHON)");
        return;
    };
    let c = console::start("").await;
    let call = c
        .store
        .all_calls()
        .map(|r| r.unwrap())
        .find(|r| r.media.recording.is_some() && r.conversation.merged_into.is_none())
        .expect("a recorded call");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.py");
    // The server runs on the runtime's threads while the browser is driven.
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(&c.base)
        .arg(console::PASSWORD)
        .arg(&call.id)
        .arg(&shots)
        .arg(&chromium)
        .arg(&driver);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the browser task")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("ok:"), "{stdout}");
    for shot in [
        "login",
        "history",
        "call",
        "call-message",
        "live",
        "status",
        "history-phone",
    ] {
        let png = shots.join(format!("{shot}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is no screenshot",
            png.display()
        );
    }
    eprintln!("{}", stdout.trim());
}
