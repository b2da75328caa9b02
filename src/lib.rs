//! Vitrina: an actor-based, stateful edge runtime for personalised storefronts.
//!
//! See ARCHITECTURE.md for the map. In one line: an HTTP request is resolved to an actor key
//! (`store:{store}` or `shopper:{store}:{sid}`), the registry finds or activates that actor on
//! its arbiter, and the actor — owner of exactly one SQLite file — answers in one turn.
pub mod actors;
pub mod block_limits;
pub mod budget;
pub mod catalog;
pub mod cdn;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod coordination;
pub mod demo;
pub mod egress;
pub mod engine;
pub mod error;
pub mod feed;
pub mod fuzzing;
pub mod http;
pub mod ids;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod private_files;
pub mod render;
pub mod replication;
pub mod runtime;
pub mod secrets;
pub mod shutdown;
pub mod sqlite;
pub mod startup;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod trace_context;
