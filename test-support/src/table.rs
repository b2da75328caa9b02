//! Outcome tables of the security suites (containment, edge security): every hostile case a
//! black-box test tries is recorded as one row, and `tests/tables.py` renders the rows of a run
//! into `docs/{table}.md` (class → cases → outcome).
//!
//! Rows go to `target/tmp/tables/{table}.jsonl`, one JSON object a line, appended by each test
//! process (a line is one `write`, so concurrent tests and processes do not interleave). CI
//! clears the directory before the run, so the tables describe exactly that run.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory rows are written to: `tmp/tables` in the target directory of the running test
/// binary (`target/{profile}/deps/NAME`), which is where cargo's `CARGO_TARGET_TMPDIR` points.
pub fn dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    let target = exe.parent().and_then(Path::parent).and_then(Path::parent).expect("test binary in target/{profile}/deps");
    target.join("tmp").join("tables")
}

/// Records that in `table`, under `class`, `case` ended as `outcome` (`refused`, `escaped`,
/// `bounded`, `placeholder`, …). Call it after the case's assertions have passed: a case whose
/// assertion failed is missing from the table, and the test fails.
pub fn record(table: &str, class: &str, case: &str, outcome: &str) {
    record_with(table, class, case, outcome, "");
}

/// [`record`] with a short detail shown in the table (a status code, a byte count).
pub fn record_with(table: &str, class: &str, case: &str, outcome: &str, detail: &str) {
    let dir = dir();
    std::fs::create_dir_all(&dir).expect("create table dir");
    let row = serde_json::json!({
        "class": class,
        "case": case,
        "outcome": outcome,
        "detail": detail,
        "test": std::thread::current().name().unwrap_or("").to_string(),
        "binary": std::env::args().next().unwrap_or_default(),
    });
    let mut line = row.to_string();
    line.push('\n');
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{table}.jsonl"))).expect("open table");
    file.write_all(line.as_bytes()).expect("write table row");
}
