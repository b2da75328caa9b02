//! The integration tests, in one binary (one link of the server and V8, not one per file).
//! Most are black-box: they start the real `vitrina` binary through `test-support` and speak
//! HTTP; `engine`, `primordials`, `fuzz_corpus` and `runtime` call the library in process.

mod abuse;
mod admin;
mod browser;
mod cdn;
mod cluster;
mod cluster_history;
mod config_reference;
mod console;
mod console_editor;
mod containment;
mod coordination;
mod copies;
mod copy_ledger;
mod day_stats;
mod durability;
mod egress;
mod engine;
mod etcd;
mod exposure;
mod fairness;
mod fuzz_corpus;
mod hosts;
mod http_conventions;
mod live;
mod membership;
mod memory_budget;
mod metrics;
mod operator;
mod primordials;
mod probes;
mod registry;
mod replication;
mod runtime;
mod sessions;
mod shop;
mod shutdown;
mod staff;
mod state;
mod traces;
mod v8_flags;
mod webhooks;

// Helpers only these tests use: a fake upstream HTTP server, an S3-compatible server's client.
mod fake_http;
mod objects;
