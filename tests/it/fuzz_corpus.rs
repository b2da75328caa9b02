//! Replays the committed fuzzing corpora (`fuzz/corpus/{target}/`) through the same entry points
//! the fuzzers drive (`vitrina::fuzzing`), so every input a fuzzer ever found interesting —
//! crashes it found included, once fixed — stays a regression test on the stable toolchain.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Far above what any input takes; an input past it is a hang the fuzzer would report too.
const PER_INPUT: Duration = Duration::from_secs(5);

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_fuzzing_input_is_handled_without_a_panic() {
    for (target, run) in vitrina::fuzzing::TARGETS {
        let inputs = corpus(target);
        assert!(!inputs.is_empty(), "corpus of {target} is empty");
        let mut slowest = Duration::ZERO;
        for path in &inputs {
            let data = std::fs::read(path).expect("read corpus input");
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(|| run(&data));
            let took = started.elapsed();
            assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
            assert!(took < PER_INPUT, "{target} took {took:?} on {}", path.display());
            slowest = slowest.max(took);
        }
        test_support::table::record_with(
            "edge-security",
            "fuzzing (corpus replay)",
            target,
            "contained",
            &format!("{} inputs, slowest {} ms; fuzzing runs: docs/fuzzing.md", inputs.len(), slowest.as_millis()),
        );
    }
}
