//! Vitrina: an actor-based, stateful edge runtime for personalised storefronts.
pub mod engine;
pub mod metrics;
