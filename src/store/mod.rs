//! The store's domain: model types that validate, and their SQL.
pub mod block_settings;
pub mod day_stats;
pub mod model;
pub mod repo;
pub mod staff;
