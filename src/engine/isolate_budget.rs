//! The node-wide caps on live V8 isolates, least recently rendered evicted first.
//!
//! Memory, not CPU, limits how many actors a node keeps warm: a live isolate holds about
//! 1.6 MiB, so a traffic burst of fresh sessions could otherwise hold gigabytes until
//! `actors.isolate_idle_secs` passes; and one shopper's isolate over a large catalog held
//! ~63 MB. Each actor whose engine is live holds a ticket here with the bytes its isolate was
//! last measured at (its engine measures after its first render and every few after; heap
//! pages, V8's malloc'd memory, ArrayBuffers). Two budgets apply: a count
//! (`actors.max_live_isolates`) and bytes (`actors.isolate_memory_mb`). Admitting a ticket, or
//! a measurement that grows one, past either asks the least recently rendered other actors to
//! drop theirs (they keep their state; their next render starts a fresh isolate). The byte
//! budget also covers the isolates no actor owns (spare and ready ones, `engine::pooled`): they
//! may hold up to a quarter of it, and when they grow, live isolates make room the same way.
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
static BYTE_BUDGET: crate::budget::Budget = crate::budget::Budget::derived_by(derived_byte_budget);
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);
static LIVE: Mutex<Lru<Owner>> = Mutex::new(Lru::new());

/// What a live isolate counts for until its engine first measures it (right after its first
/// render): about what a fresh isolate holds.
pub const UNMEASURED_BYTES: usize = 2 << 20;

/// Both budgets at one moment.
#[derive(Debug, Clone, Copy)]
struct Limits {
    isolates: usize,
    bytes: usize,
}

/// Tickets in order of last use, with their measured bytes. Generic over the owner so its order
/// can be tested without actors.
struct Lru<O> {
    /// ticket → (its last use, its owner, its bytes).
    owners: BTreeMap<u64, (u64, O, usize)>,
    /// last use → ticket, oldest first.
    by_use: BTreeMap<u64, u64>,
    uses: u64,
    bytes: usize,
}

impl<O> Lru<O> {
    const fn new() -> Self {
        Lru { owners: BTreeMap::new(), by_use: BTreeMap::new(), uses: 0, bytes: 0 }
    }

    /// Adds `ticket` as the most recently used; returns the least recently used others that no
    /// longer fit in `limits`, removed.
    fn admit(&mut self, ticket: u64, owner: O, bytes: usize, limits: Limits) -> Vec<(u64, O)> {
        self.uses += 1;
        self.owners.insert(ticket, (self.uses, owner, bytes));
        self.by_use.insert(self.uses, ticket);
        self.bytes = self.bytes.saturating_add(bytes);
        self.evict_beyond(limits, ticket)
    }

    /// Records that `ticket`'s isolate now holds `bytes`; returns the least recently used
    /// others that no longer fit, removed. A ticket already evicted stays evicted.
    fn measured(&mut self, ticket: u64, bytes: usize, limits: Limits) -> Vec<(u64, O)> {
        let Some(entry) = self.owners.get_mut(&ticket) else { return Vec::new() };
        let previous = std::mem::replace(&mut entry.2, bytes);
        self.bytes = self.bytes.saturating_sub(previous).saturating_add(bytes);
        self.evict_beyond(limits, ticket)
    }

    /// Removes the least recently used tickets other than `keep` while over either limit.
    fn evict_beyond(&mut self, limits: Limits, keep: u64) -> Vec<(u64, O)> {
        let mut evicted = Vec::new();
        while self.by_use.len() > limits.isolates || self.bytes > limits.bytes {
            let Some(oldest) = self.by_use.values().copied().find(|t| *t != keep) else { break };
            if let Some((used, owner, bytes)) = self.owners.remove(&oldest) {
                self.by_use.remove(&used);
                self.bytes = self.bytes.saturating_sub(bytes);
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
        if let Some((used, _, bytes)) = self.owners.remove(&ticket) {
            self.by_use.remove(&used);
            self.bytes = self.bytes.saturating_sub(bytes);
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

/// Sets the byte budget in MiB; 0 derives it: half of physical memory. Pooled isolates count
/// in it from then on.
pub fn set_byte_budget_mb(mb: usize) {
    BYTE_BUDGET.set(mb.saturating_mul(1 << 20));
    crate::engine::pooled::set_limit(byte_budget() / POOLED_SHARE);
    crate::engine::pooled::on_growth(pools_grew);
}

/// Pooled isolates may hold at most this fraction (1 / n) of the byte budget.
const POOLED_SHARE: usize = 4;

fn physical_memory() -> Option<u128> {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let (pages, page_size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    (pages > 0 && page_size > 0).then(|| (pages as u128) * (page_size as u128))
}

/// Half of physical memory (4 GiB when it cannot be read).
fn derived_byte_budget() -> usize {
    physical_memory().map_or(4 << 30, |memory| usize::try_from(memory / 2).unwrap_or(usize::MAX))
}

/// Half of physical memory at 6 MiB per isolate, at least 16: 2,048 isolates on a 24 GiB
/// machine. An isolate measures ~1.6 MiB after one render on a fresh node, but ~4.4 MiB under
/// churn (isolates created and evicted hundreds of times a second) and ~4.6 MiB after many
/// renders (`docs/decisions/v8-engine.md`). Blocks may grow one up to their heap limit: the
/// margin is for them.
fn derived_budget() -> usize {
    let Some(memory) = physical_memory() else { return 1024 };
    ((memory / 2 / (6 << 20)) as usize).max(16)
}

pub fn budget() -> usize {
    BUDGET.get()
}

/// The byte budget of all live isolates together.
pub fn byte_budget() -> usize {
    BYTE_BUDGET.get()
}

/// Bytes the live isolates held when last measured (unmeasured ones at [`UNMEASURED_BYTES`]).
pub fn live_bytes() -> usize {
    LIVE.lock().bytes
}

/// Bytes counted against the byte budget: live isolates and pooled ones.
pub fn held_bytes() -> usize {
    live_bytes().saturating_add(crate::engine::pooled::bytes())
}

/// The limits live tickets are held to: the byte budget less what the pools hold.
fn limits() -> Limits {
    Limits { isolates: budget(), bytes: byte_budget().saturating_sub(crate::engine::pooled::bytes()) }
}

/// The pools took an isolate: live ones make room for it, least recently rendered first.
fn pools_grew() {
    let limits = limits();
    let evicted = LIVE.lock().evict_beyond(limits, NO_TICKET);
    release(evicted);
}

/// Tickets start at 1.
const NO_TICKET: u64 = 0;

/// Registers a new live engine as the most recently used and evicts the least recently used
/// others while over budget. Returns the engine's ticket.
pub fn admit(owner: Owner) -> u64 {
    let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
    let limits = limits();
    let evicted = LIVE.lock().admit(ticket, owner, UNMEASURED_BYTES, limits);
    release(evicted);
    ticket
}

/// Records a measurement of `ticket`'s isolate and evicts the least recently used others while
/// the live isolates hold more than the byte budget.
pub fn measured(ticket: u64, bytes: usize) {
    let limits = limits();
    let evicted = LIVE.lock().measured(ticket, bytes, limits);
    release(evicted);
}

fn release(evicted: Vec<(u64, Owner)>) {
    // Sent outside the lock, and past a full mailbox (`do_send`): the ticket has already left
    // the budget, so a release that is not delivered would leave an uncounted isolate.
    for (ticket, owner) in evicted {
        crate::metrics::incr("vitrina_isolates_evicted_total", &[]);
        // An owner that is gone took its engine with it.
        if let Some(owner) = owner.upgrade() {
            owner.do_send(ReleaseIsolate { ticket });
        }
    }
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
    use super::{Limits, Lru};

    const MIB: usize = 1 << 20;

    fn count(isolates: usize) -> Limits {
        Limits { isolates, bytes: usize::MAX }
    }

    fn tickets(evicted: Vec<(u64, &str)>) -> Vec<u64> {
        evicted.into_iter().map(|(ticket, _)| ticket).collect()
    }

    #[test]
    fn the_least_recently_used_leave_first_and_the_newest_stays() {
        let mut lru = Lru::new();
        assert!(lru.admit(1, "a", MIB, count(2)).is_empty());
        assert!(lru.admit(2, "b", MIB, count(2)).is_empty());
        lru.touch(1);
        assert_eq!(tickets(lru.admit(3, "c", MIB, count(2))), vec![2]);
        assert_eq!(lru.len(), 2);
        // A budget of one keeps only the ticket just admitted.
        assert_eq!(tickets(lru.admit(4, "d", MIB, count(1))), vec![1, 3]);
        assert_eq!(lru.len(), 1);
    }

    #[test]
    fn forgotten_and_evicted_tickets_are_not_counted_or_revived() {
        let mut lru = Lru::new();
        lru.admit(1, "a", MIB, count(3));
        lru.admit(2, "b", MIB, count(3));
        lru.forget(1);
        assert_eq!(lru.len(), 1);
        assert_eq!(tickets(lru.admit(3, "c", MIB, count(1))), vec![2]);
        lru.touch(2);
        lru.forget(2);
        assert_eq!(lru.len(), 1);
        assert!(lru.admit(4, "d", MIB, count(2)).is_empty());
        assert_eq!(lru.bytes, 2 * MIB);
    }

    #[test]
    fn measured_bytes_evict_the_least_recently_used_others() {
        let limits = Limits { isolates: 100, bytes: 10 * MIB };
        let mut lru = Lru::new();
        for ticket in 1..=4 {
            assert!(lru.admit(ticket, "x", 2 * MIB, limits).is_empty());
        }
        lru.touch(1);
        // Ticket 3 grows to 6 MiB: 12 MiB in all, so the least recently used other (2) goes.
        assert_eq!(tickets(lru.measured(3, 6 * MIB, limits)), vec![2]);
        assert_eq!(lru.bytes, 10 * MIB);
        // One isolate over the whole budget evicts every other and stays itself.
        assert_eq!(tickets(lru.measured(4, 20 * MIB, limits)), vec![3, 1]);
        assert_eq!(lru.len(), 1);
        // Shrinking evicts nothing; an evicted ticket's measurement is ignored.
        assert!(lru.measured(4, MIB, limits).is_empty());
        assert!(lru.measured(2, 50 * MIB, limits).is_empty());
        assert_eq!(lru.bytes, MIB);
    }
}
