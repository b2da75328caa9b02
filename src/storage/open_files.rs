//! The node's budget of open shopper files. Every open file costs three descriptors (database,
//! WAL, shared memory) and a page cache; a burst of new sessions opened them faster than idle
//! shoppers closed theirs, and at the process's descriptor limit opens failed with 500s. Past
//! the budget, the oldest-opened file of a shopper that is not in the middle of an access is
//! closed; its actor keeps its state and reopens the file on its next read or write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::actor_db::Db;

pub(super) static OPEN: AtomicUsize = AtomicUsize::new(0);
static BUDGET: crate::budget::Budget = crate::budget::Budget::derived_by(derived_budget);
static OPENED: Mutex<VecDeque<Weak<Mutex<Db>>>> = Mutex::new(VecDeque::new());
/// Entries of [`OPENED`] whose handle is gone (its actor passivated), roughly. A `Weak` keeps
/// its handle's allocation: after a burst of new sessions those small blocks, scattered through
/// the allocator's pages by everything else the burst allocated, kept most of the pages from
/// being given back long after every actor had passivated.
static DEAD: AtomicUsize = AtomicUsize::new(0);

/// At most this many shopper files open when the budget is derived. SQLite's unix VFS walks
/// its list of every open file (database and WAL) on each open, so an open costs O(files
/// open), which dominated a new session's CPU with thousands open
/// (`docs/decisions/storage-files.md`). A closed file costs its actor nothing until its next write, which reopens it.
const DERIVED_MAX: usize = 1024;

/// Sets the budget; 0 derives it from the process's open-file limit (a third of it, less a
/// reserve for sockets and the node's own files), at most `DERIVED_MAX`.
pub fn set_budget(files: usize) {
    BUDGET.set(files);
}

fn derived_budget() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid out pointer for getrlimit.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur as usize } else { 1024 };
    (soft.saturating_sub(1024) / 3).clamp(64, DERIVED_MAX)
}

fn budget() -> usize {
    BUDGET.get()
}

/// Shopper files open now.
pub fn open_now() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// Records a newly opened file and closes the oldest others while over budget. Called with
/// no database lock held; others' locks are only tried, never waited for.
pub(super) fn admit(opened: &Arc<Mutex<Db>>) {
    let mut queue = OPENED.lock();
    queue.push_back(Arc::downgrade(opened));
    let budget = budget();
    let mut tries = queue.len();
    while OPEN.load(Ordering::Relaxed) > budget && tries > 0 {
        tries -= 1;
        let Some(weak) = queue.pop_front() else { break };
        let Some(db) = weak.upgrade() else { continue };
        if Arc::ptr_eq(&db, opened) {
            queue.push_back(weak);
            continue;
        }
        let busy = match db.try_lock() {
            Some(mut guard) => {
                guard.close_file();
                false
            }
            None => true,
        };
        if busy {
            queue.push_back(weak);
        }
    }
    // Entries of files closed by their idle actors stay queued until popped: keep the
    // queue proportional to the budget.
    if queue.len() > budget.saturating_mul(2).max(1024) {
        queue.retain(|weak| weak.upgrade().is_some_and(|db| db.try_lock().is_none_or(|g| g.conn_is_file)));
    }
}

/// Counts `entries` queue entries of a handle being dropped, and drops the queue's dead
/// entries once they are half of it (so each costs O(1) amortised). Never waits for the queue:
/// a handle may be dropped inside [`admit`], which holds it; the next drop compacts instead.
pub(super) fn note_dropped(entries: usize) {
    if entries == 0 {
        return;
    }
    let dead = DEAD.fetch_add(entries, Ordering::Relaxed) + entries;
    let Some(mut queue) = OPENED.try_lock() else { return };
    if dead.saturating_mul(2) >= queue.len() {
        queue.retain(|weak| weak.strong_count() > 0);
        DEAD.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SchemaKind;
    use crate::storage::actor_db::ActorDb;

    #[test]
    fn passivated_files_leave_no_entries_behind() {
        let dir = tempfile::tempdir().unwrap();
        let count = 300;
        let dbs: Vec<ActorDb> =
            (0..count).map(|i| ActorDb::open(&dir.path().join(format!("s{i}.db")), SchemaKind::Shopper).unwrap()).collect();
        // Other tests of this binary open files too: compare with what these added.
        let with_ours = OPENED.lock().len();
        assert!(with_ours >= count, "{with_ours} queued after opening {count}");
        drop(dbs);
        let left = OPENED.lock().len();
        assert!(left + count / 2 <= with_ours, "{left} of {with_ours} entries left after {count} handles were dropped");
    }
}
