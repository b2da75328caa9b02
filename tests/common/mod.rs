//! The black-box harness lives in `test-support/` (shared with the load generator); the fake
//! upstream HTTP server and the S3 helpers stay here, with the tests that use them.
#![allow(dead_code)]

pub mod fake_http;
pub mod objects;

pub use test_support::*;
