//! What one store may take of the node's render threads: renders in flight at once, and render
//! CPU per second (a token bucket charged with each render's measured CPU time).
//!
//! A store past either bound is refused, it alone: its other requests, and every other store,
//! go on. A render starts only once the bucket holds what the store's recent renders cost (at
//! most the whole bucket): a store whose pages run to their CPU budget would otherwise start
//! one whenever its bucket is barely positive and spend a page budget beyond it each time. A render waits for a slot only briefly (a page of a healthy store takes milliseconds);
//! a store whose renders hold their slots for their whole CPU budget is refused instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::RenderSettings;
use crate::ids::StoreId;

/// Why a store's render was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When a retry may succeed.
    pub retry_after_secs: u64,
    /// `concurrency` or `cpu`.
    pub bound: &'static str,
}

struct Gate {
    slots: Arc<Semaphore>,
    /// Renders waiting for a slot.
    waiting: Arc<AtomicUsize>,
    /// CPU milliseconds the store may still spend; negative: in debt.
    tokens_ms: f64,
    refilled: Instant,
    /// What the store's next render is expected to cost: its last render's CPU, or half the
    /// previous expectation if that is more (a cheap page does not at once hide a costly one).
    expected_ms: f64,
}

pub struct StoreGates {
    concurrency: usize,
    rate_ms_per_sec: f64,
    burst_ms: f64,
    wait: Duration,
    gates: Mutex<HashMap<StoreId, Gate>>,
}

/// A render slot; give back the render's CPU time with [`Permit::charge`].
pub struct Permit {
    gates: Arc<StoreGates>,
    store: StoreId,
    _slot: OwnedSemaphorePermit,
}

impl Permit {
    pub fn charge(&self, cpu: Duration) {
        self.gates.charge(&self.store, cpu);
    }
}

/// Waiters per store beyond which a render is refused at once.
const MAX_WAITING_PER_SLOT: usize = 16;
/// Stores with a gate beyond which idle, refilled gates are forgotten.
const PRUNE_ABOVE: usize = 4096;

impl StoreGates {
    pub fn new(settings: &RenderSettings) -> StoreGates {
        StoreGates {
            concurrency: settings.store_concurrency(),
            rate_ms_per_sec: settings.store_cpu_ms_per_sec as f64,
            burst_ms: settings.store_cpu_burst_ms.max(1) as f64,
            wait: Duration::from_millis(settings.max_page_cpu_ms.saturating_mul(2).max(100)),
            gates: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, gate: &mut Gate, now: Instant) {
        if self.rate_ms_per_sec > 0.0 {
            let earned = now.duration_since(gate.refilled).as_secs_f64() * self.rate_ms_per_sec;
            gate.tokens_ms = (gate.tokens_ms + earned).min(self.burst_ms);
        }
        gate.refilled = now;
    }

    /// Refuses a store whose bucket does not hold what its next render is expected to cost (at
    /// most a full bucket), until it has earned that.
    fn in_debt(&self, gate: &Gate) -> Result<(), Refused> {
        let needed = gate.expected_ms.min(self.burst_ms);
        if gate.tokens_ms > 0.0 && gate.tokens_ms >= needed {
            return Ok(());
        }
        let secs = ((needed.max(0.0) - gate.tokens_ms) / self.rate_ms_per_sec.max(1.0)).ceil() as u64;
        Err(Refused { retry_after_secs: secs.clamp(1, 60), bound: "cpu" })
    }

    /// Checks the store's CPU bucket and takes one of its slots, waiting briefly for one.
    pub async fn admit(self: &Arc<Self>, store: &StoreId) -> Result<Permit, Refused> {
        let (slots, waiting) = {
            let now = Instant::now();
            let mut gates = self.gates.lock();
            if gates.len() > PRUNE_ABOVE {
                let full = self.burst_ms;
                gates.retain(|_, g| g.tokens_ms < full || g.slots.available_permits() < self.concurrency);
            }
            let gate = gates.entry(store.clone()).or_insert_with(|| Gate {
                slots: Arc::new(Semaphore::new(self.concurrency)),
                waiting: Arc::new(AtomicUsize::new(0)),
                tokens_ms: self.burst_ms,
                refilled: now,
                expected_ms: 0.0,
            });
            self.refill(gate, now);
            self.in_debt(gate)?;
            (gate.slots.clone(), gate.waiting.clone())
        };
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            return Ok(Permit { gates: self.clone(), store: store.clone(), _slot: slot });
        }
        let refused = Refused { retry_after_secs: 1, bound: "concurrency" };
        if waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING_PER_SLOT * self.concurrency {
            waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(refused);
        }
        let slot = tokio::time::timeout(self.wait, slots.acquire_owned()).await;
        waiting.fetch_sub(1, Ordering::Relaxed);
        match slot {
            Ok(Ok(slot)) => {
                // The render that held the slot may have put the store in debt meanwhile.
                self.debt(store)?;
                Ok(Permit { gates: self.clone(), store: store.clone(), _slot: slot })
            }
            _ => Err(refused),
        }
    }

    /// Whether [`StoreGates::admit`] would refuse the store at once (in CPU debt, or its waiting
    /// line full), without taking a slot or waiting: the HTTP edge asks before it spends anything
    /// on a request that would end in that refusal.
    pub fn check(&self, store: &StoreId) -> Result<(), Refused> {
        self.debt(store)?;
        let gates = self.gates.lock();
        let Some(gate) = gates.get(store) else { return Ok(()) };
        if gate.waiting.load(Ordering::Relaxed) >= MAX_WAITING_PER_SLOT * self.concurrency {
            return Err(Refused { retry_after_secs: 1, bound: "concurrency" });
        }
        Ok(())
    }

    fn debt(&self, store: &StoreId) -> Result<(), Refused> {
        let mut gates = self.gates.lock();
        let Some(gate) = gates.get_mut(store) else { return Ok(()) };
        self.refill(gate, Instant::now());
        self.in_debt(gate)
    }

    fn charge(&self, store: &StoreId, cpu: Duration) {
        if self.rate_ms_per_sec <= 0.0 {
            return;
        }
        let now = Instant::now();
        let mut gates = self.gates.lock();
        if let Some(gate) = gates.get_mut(store) {
            self.refill(gate, now);
            let spent = cpu.as_secs_f64() * 1000.0;
            gate.tokens_ms -= spent;
            gate.expected_ms = spent.max(gate.expected_ms / 2.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(concurrency: usize, rate: u64, burst: u64) -> Arc<StoreGates> {
        let settings = RenderSettings {
            store_max_concurrent: concurrency,
            store_cpu_ms_per_sec: rate,
            store_cpu_burst_ms: burst,
            max_page_cpu_ms: 50,
            ..Default::default()
        };
        Arc::new(StoreGates::new(&settings))
    }

    #[actix_rt::test]
    async fn a_store_in_cpu_debt_is_refused_and_others_are_not() {
        let g = gates(2, 100, 200);
        let (a, b) = (StoreId::parse("a").unwrap(), StoreId::parse("b").unwrap());
        let permit = g.admit(&a).await.unwrap();
        permit.charge(Duration::from_millis(500));
        drop(permit);
        let refused = g.admit(&a).await.err().unwrap();
        assert_eq!(refused.bound, "cpu");
        // 300 ms of debt, then a full bucket (200 ms, less than the 500 the render cost).
        assert!((5..=6).contains(&refused.retry_after_secs), "{refused:?}");
        assert!(g.admit(&b).await.is_ok());
        assert_eq!(g.check(&a).err().map(|r| r.bound), Some("cpu"));
        assert!(g.check(&b).is_ok());
        assert!(g.check(&StoreId::parse("never-seen").unwrap()).is_ok());
    }

    #[actix_rt::test]
    async fn a_store_whose_renders_are_costly_waits_until_its_bucket_holds_one() {
        let g = gates(2, 100, 500);
        let (a, b) = (StoreId::parse("a").unwrap(), StoreId::parse("b").unwrap());
        // A costly render from a full bucket: allowed, and the store goes into debt.
        g.admit(&a).await.unwrap().charge(Duration::from_millis(1000));
        // Earned back past zero is not enough: the next render needs a full bucket (500 ms of
        // CPU, less than the 1000 ms its last render cost).
        {
            let mut gates = g.gates.lock();
            let gate = gates.get_mut(&a).unwrap();
            gate.tokens_ms = 200.0;
            gate.refilled = Instant::now();
        }
        let refused = g.check(&a).err().unwrap();
        assert_eq!(refused.bound, "cpu");
        assert!((3..=4).contains(&refused.retry_after_secs), "{refused:?}");
        // A store whose renders are cheap renders on whatever is left.
        g.admit(&b).await.unwrap().charge(Duration::from_millis(5));
        {
            let mut gates = g.gates.lock();
            let gate = gates.get_mut(&b).unwrap();
            gate.tokens_ms = 10.0;
            gate.refilled = Instant::now();
        }
        assert!(g.check(&b).is_ok());
        assert!(g.admit(&b).await.is_ok());
        // Once full again, the costly store renders.
        {
            let mut gates = g.gates.lock();
            let gate = gates.get_mut(&a).unwrap();
            gate.tokens_ms = 500.0;
        }
        assert!(g.admit(&a).await.is_ok());
    }

    #[actix_rt::test]
    async fn a_store_gets_at_most_its_slots_and_waits_briefly_for_one() {
        let g = gates(1, 0, 1);
        let a = StoreId::parse("a").unwrap();
        let held = g.admit(&a).await.unwrap();
        let started = Instant::now();
        assert_eq!(g.admit(&a).await.err().map(|r| r.bound), Some("concurrency"));
        assert!(started.elapsed() >= Duration::from_millis(90));
        drop(held);
        assert!(g.admit(&a).await.is_ok());
    }
}
