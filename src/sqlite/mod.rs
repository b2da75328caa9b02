//! Vitrina's SQLite files, below any actor: where they live, how they are opened and migrated,
//! kept private, copied and checked. The actor's handle on its file (durable writes, budgets)
//! is `storage`, one layer up.
//!
//! Layout under the data directory (every component is a validated id or a fixed name):
//! ```text
//! node/catalog.db                              node-level catalog (stores, hosts, tokens, alarms)
//! stores/{store}/store.db                      the store actor
//! stores/{store}/shoppers/{xx}/{sid}.db        a shopper actor; xx = first byte of sha256(sid)
//! ```
//! Files are 0600 and directories 0700: the node sets its umask to 077 at startup (SQLite's
//! files, WAL and shared memory included), creates its own with explicit modes, and tightens
//! what an older version left readable (`private_files::walk_private`).
//!
//! Durability: WAL with `synchronous=FULL`, so a commit returns only after the WAL is fsynced.
//! `NORMAL` would let a power loss drop the last acknowledged commits, which breaks the rule that
//! an acknowledged write is on disk. Commits run on the blocking pool so that commits of
//! different actors proceed in parallel (the disk's parallel fsync rate is an order of magnitude
//! above its serial rate) while the actor's turn waits for its own commit.

mod error;
mod files;
mod layout;
mod open;
mod schema;

pub use error::{StorageError, StorageResult};
pub use files::{checkpoint, consistent_copy, fold_wal_into_file, integrity_problems, remove_sidecars};
pub use layout::DataLayout;
pub use open::{create_from_template, open};
pub use schema::{migrate, SchemaKind};
