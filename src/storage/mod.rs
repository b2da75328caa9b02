//! An actor's handle on its one SQLite file: writes acknowledged only once durable, commit
//! hooks for replication, and the node's budgets of shopper files (per store) and open files.
//!
//! Durability: WAL with `synchronous=FULL`, so a commit returns only after the WAL is fsynced.
//! `NORMAL` would let a power loss drop the last acknowledged commits, which breaks the rule that
//! an acknowledged write is on disk. Commits run on the node's commit threads (`committer`) so
//! that commits of different actors proceed in parallel (the disk's parallel fsync rate is an
//! order of magnitude above its serial rate) while the actor's turn waits for its own commit.

mod actor_db;
mod committer;
pub mod open_files;
mod shopper_files;

pub use actor_db::{ActorDb, Commit, CommitHook};
pub use shopper_files::ShopperFiles;
