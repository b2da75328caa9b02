#![no_main]
// The target's body is vitrina::fuzzing::host_header, shared with the corpus replay in tests/it/fuzz_corpus.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| vitrina::fuzzing::host_header(data));
