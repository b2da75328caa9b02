#![no_main]
// The target's body is vitrina::fuzzing::id_parsing, shared with the corpus replay in tests/it/fuzz_corpus.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| vitrina::fuzzing::id_parsing(data));
