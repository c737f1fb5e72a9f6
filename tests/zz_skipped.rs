//! The end of `cargo test`: the tests that could not run here, and why (integration tests
//! run in name order, so this comes after the others). Printed past the harness's
//! capture; the list is emptied for the next run.

#[path = "support/skip.rs"]
mod skip;

use std::io::Write;

#[test]
fn tests_that_could_not_run_here() {
    let list = skip::list();
    let text = std::fs::read_to_string(&list).unwrap_or_default();
    let _ = std::fs::remove_file(&list);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let mut err = std::io::stderr().lock();
    if lines.is_empty() {
        let _ = writeln!(err, "\nskipped tests: none");
        return;
    }
    let _ = writeln!(
        err,
        "\nskipped tests: {} (CALLTAP_TEST_REQUIRE=all makes each a failure)",
        lines.len()
    );
    for line in &lines {
        let _ = writeln!(err, "  {line}");
    }
    assert!(
        !skip::required(),
        "tests were skipped under CALLTAP_TEST_REQUIRE=all"
    );
}
