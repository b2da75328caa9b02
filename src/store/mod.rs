//! The store's domain: model types, their SQL, and the published snapshot.
pub mod model;
pub mod repo;
pub mod snapshot;
