//! The store's domain: model types, their SQL, and the published snapshot.
pub mod feed;
pub mod limits;
pub mod model;
pub mod repo;
pub mod snapshot;
