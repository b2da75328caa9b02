//! What a live shopper actor publishes for the HTTP workers, so that a page it already rendered
//! can be served without a message to the actor's thread.
//!
//! The W1 profile (warm personalised page) showed the hop to the actor's arbiter and back
//! costing more than serving the cached page itself, and adding two thread wake-ups to every
//! request's latency. A cached page is valid while the store's version and the shopper's state
//! version are the ones it was rendered for; the store's version is known without the actor,
//! the state version is published here.
//!
//! Ordering: the actor publishes a new state version in the same turn that applies a change to
//! its memory, before that change is acknowledged. A request that starts after the
//! acknowledgement therefore never gets a page of the older state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Not yet published: the actor is still loading its state.
const UNKNOWN: u64 = u64::MAX;

#[derive(Debug)]
pub struct ShopperPulse {
    state_version: AtomicU64,
    /// The shopper's current session-token generation (`http::session`): tokens of an older
    /// generation were rotated away and no longer reach this shopper.
    generation: AtomicU64,
    /// Milliseconds since [`epoch`] of the last page served from cache without the actor.
    last_hit_ms: AtomicU64,
}

impl Default for ShopperPulse {
    fn default() -> Self {
        ShopperPulse { state_version: AtomicU64::new(UNKNOWN), generation: AtomicU64::new(UNKNOWN), last_hit_ms: AtomicU64::new(0) }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl ShopperPulse {
    /// The shopper's current state version, once the actor has published one.
    pub fn state_version(&self) -> Option<u64> {
        match self.state_version.load(Ordering::Acquire) {
            UNKNOWN => None,
            v => Some(v),
        }
    }

    /// Called by the actor only.
    pub(super) fn publish(&self, state_version: u64) {
        self.state_version.store(state_version, Ordering::Release);
    }

    /// The shopper's current session generation, once the actor has loaded it.
    pub fn generation(&self) -> Option<u64> {
        match self.generation.load(Ordering::Acquire) {
            UNKNOWN => None,
            g => Some(g),
        }
    }

    /// Called by the actor only, before the rotation is acknowledged.
    pub(super) fn publish_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Release);
    }

    /// A page was served for this shopper without its actor: it counts as activity, so a
    /// shopper busy on cached pages is not passivated as idle.
    pub fn record_hit(&self) {
        let now = epoch().elapsed().as_millis() as u64;
        self.last_hit_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// When a page was last served without the actor, if ever.
    pub(super) fn last_hit(&self) -> Option<Instant> {
        match self.last_hit_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(epoch() + Duration::from_millis(ms)),
        }
    }
}
