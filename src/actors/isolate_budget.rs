//! The node-wide cap on live V8 isolates, least recently rendered evicted first.
//!
//! Memory, not CPU, limits how many actors a node keeps warm: a live isolate holds about
//! 1.6 MiB (W5), so a traffic burst of fresh sessions could otherwise hold gigabytes until
//! `actors.isolate_idle_secs` passes. Each actor whose engine is live holds a ticket here;
//! admitting a new one past the budget asks the least recently rendered other actors to drop
//! theirs (they keep their state; their next render starts a fresh isolate from the snapshot).
//!
//! Isolates cannot leave their thread, so eviction is a message ([`ReleaseIsolate`]) handled
//! on the owner's turn. The evicted ticket leaves the budget at once, so the count here is
//! never above the budget; the isolate itself is gone when the owner's mailbox reaches the
//! message (after the turn it is in, if any). The message names the ticket, so an owner that
//! has meanwhile dropped that engine and started another keeps the new one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use actix::WeakRecipient;
use parking_lot::Mutex;

/// Asks an actor to drop the engine it holds under `ticket`, if it still does.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseIsolate {
    pub ticket: u64,
}

/// What a live engine's owner is reached by. Weak: the budget must not keep an actor alive.
pub type Owner = WeakRecipient<ReleaseIsolate>;

static BUDGET: crate::budget::Budget = crate::budget::Budget::derived_by(derived_budget);
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);
static LIVE: Mutex<Lru<Owner>> = Mutex::new(Lru::new());

/// Tickets in order of last use. Generic over the owner so its order can be tested without
/// actors.
struct Lru<O> {
    /// ticket → (its last use, its owner).
    owners: BTreeMap<u64, (u64, O)>,
    /// last use → ticket, oldest first.
    by_use: BTreeMap<u64, u64>,
    uses: u64,
}

impl<O> Lru<O> {
    const fn new() -> Self {
        Lru { owners: BTreeMap::new(), by_use: BTreeMap::new(), uses: 0 }
    }

    /// Adds `ticket` as the most recently used; returns the least recently used others that no
    /// longer fit in `budget`, removed.
    fn admit(&mut self, ticket: u64, owner: O, budget: usize) -> Vec<(u64, O)> {
        self.uses += 1;
        self.owners.insert(ticket, (self.uses, owner));
        self.by_use.insert(self.uses, ticket);
        let mut evicted = Vec::new();
        while self.by_use.len() > budget {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            if let Some((_, owner)) = self.owners.remove(&oldest) {
                evicted.push((oldest, owner));
            }
        }
        evicted
    }

    fn touch(&mut self, ticket: u64) {
        self.uses += 1;
        let Some(entry) = self.owners.get_mut(&ticket) else { return };
        let previous = std::mem::replace(&mut entry.0, self.uses);
        self.by_use.remove(&previous);
        self.by_use.insert(self.uses, ticket);
    }

    fn forget(&mut self, ticket: u64) {
        if let Some((used, _)) = self.owners.remove(&ticket) {
            self.by_use.remove(&used);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_use.len()
    }
}

/// Sets the budget; 0 derives it from the machine's memory (see [`derived_budget`]).
pub fn set_budget(isolates: usize) {
    BUDGET.set(isolates);
}

/// Half of physical memory at 6 MiB per isolate, at least 16: 2,048 isolates on a 24 GiB
/// machine. An isolate measures ~1.6 MiB after one render on a fresh node, but ~4.4 MiB under
/// churn (isolates created and evicted hundreds of times a second) and ~4.6 MiB after many
/// renders (`loadtest/RESULTS.md`, session 5). Blocks may grow one up to their heap limit: the
/// margin is for them.
fn derived_budget() -> usize {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let (pages, page_size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages <= 0 || page_size <= 0 {
        return 1024;
    }
    let memory = (pages as u128) * (page_size as u128);
    ((memory / 2 / (6 << 20)) as usize).max(16)
}

pub fn budget() -> usize {
    BUDGET.get()
}

/// Registers a new live engine as the most recently used and evicts the least recently used
/// others while over budget. Returns the engine's ticket.
pub fn admit(owner: Owner) -> u64 {
    let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
    let budget = budget();
    let evicted = LIVE.lock().admit(ticket, owner, budget);
    // Sent outside the lock, and past a full mailbox (`do_send`): the ticket has already left
    // the budget, so a release that is not delivered would leave an uncounted isolate.
    for (ticket, owner) in evicted {
        crate::metrics::incr("vitrina_isolates_evicted_total", &[]);
        // An owner that is gone took its engine with it.
        if let Some(owner) = owner.upgrade() {
            owner.do_send(ReleaseIsolate { ticket });
        }
    }
    ticket
}

/// Marks `ticket` as just used. A ticket already evicted stays evicted.
pub fn touch(ticket: u64) {
    LIVE.lock().touch(ticket);
}

/// Removes `ticket` (its engine was dropped).
pub fn forget(ticket: u64) {
    LIVE.lock().forget(ticket);
}

#[cfg(test)]
mod tests {
    use super::Lru;

    fn tickets(evicted: Vec<(u64, &str)>) -> Vec<u64> {
        evicted.into_iter().map(|(ticket, _)| ticket).collect()
    }

    #[test]
    fn the_least_recently_used_leave_first_and_the_newest_stays() {
        let mut lru = Lru::new();
        assert!(lru.admit(1, "a", 2).is_empty());
        assert!(lru.admit(2, "b", 2).is_empty());
        lru.touch(1);
        assert_eq!(tickets(lru.admit(3, "c", 2)), vec![2]);
        assert_eq!(lru.len(), 2);
        // A budget of one keeps only the ticket just admitted.
        assert_eq!(tickets(lru.admit(4, "d", 1)), vec![1, 3]);
        assert_eq!(lru.len(), 1);
    }

    #[test]
    fn forgotten_and_evicted_tickets_are_not_counted_or_revived() {
        let mut lru = Lru::new();
        lru.admit(1, "a", 3);
        lru.admit(2, "b", 3);
        lru.forget(1);
        assert_eq!(lru.len(), 1);
        assert_eq!(tickets(lru.admit(3, "c", 1)), vec![2]);
        lru.touch(2);
        lru.forget(2);
        assert_eq!(lru.len(), 1);
        assert!(lru.admit(4, "d", 2).is_empty());
    }
}
