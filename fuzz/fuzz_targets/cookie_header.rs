#![no_main]
// The target's body is vitrina::fuzzing::cookie_header, shared with the corpus replay in tests/it/fuzz_corpus.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| vitrina::fuzzing::cookie_header(data));
