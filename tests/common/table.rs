//! Outcome tables of the security suites (containment, edge security): every hostile case a
//! black-box test tries is recorded as one row, and `tests/tables.py` renders the rows of a run
//! into `docs/{table}.md` (class → cases → outcome).
//!
//! Rows go to `target/tmp/tables/{table}.jsonl`, one JSON object a line, appended by each test
//! process (several test binaries run at once; a line is one `write`). CI clears the directory
//! before the run, so the tables describe exactly that run.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// The directory rows are written to.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tables")
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
