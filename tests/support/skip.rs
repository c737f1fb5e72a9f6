//! A test that cannot run here (no root, no baresip, no `../shared`) says so where it
//! is seen, and never passes quietly:
//! - the reason goes to the terminal at once (written to stderr directly, which the test
//!   harness does not capture), and to a list `tests/zz_skipped.rs` prints at the end
//!   of `cargo test`;
//! - with `CALLTAP_TEST_REQUIRE=all` (CI sets it, having installed everything) a skip
//!   fails the test with its reason.
#![allow(dead_code)] // each test binary uses a part of it

use std::io::Write;
use std::path::PathBuf;

/// Where the skips of a `cargo test` run are listed for the summary.
pub fn list() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt")
}

/// Whether every test must run (CI).
pub fn required() -> bool {
    std::env::var("CALLTAP_TEST_REQUIRE").is_ok_and(|v| v == "all")
}

/// The current test cannot run here, because `why`: fails under
/// `CALLTAP_TEST_REQUIRE=all`, else says so and lists it. The caller returns after.
pub fn skip(why: impl std::fmt::Display) {
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed)")
        .to_string();
    let line = format!("{}::{test}: {why}", env!("CARGO_CRATE_NAME"));
    if required() {
        panic!("CALLTAP_TEST_REQUIRE=all, and this test cannot run: {line}");
    }
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {line}");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list())
    {
        let _ = writeln!(f, "{line}");
    }
}

/// `../shared/pcaps` beside the checkout, or a skip saying it is absent.
pub fn shared_pcaps() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(format!("{} is absent", dir.display()));
        None
    }
}
