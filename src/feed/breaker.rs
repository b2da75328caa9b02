//! The upstream sync's circuit breaker, as a pure function of its persisted state.
//!
//! Closed: runs go ahead. After `threshold` consecutive failed runs it opens: scheduled runs are
//! skipped (the cached catalog keeps serving) until `cooldown` has passed since it opened; then
//! it is half-open and one trial run decides — success closes it, failure re-opens it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    pub threshold: u32,
    pub cooldown_ms: i64,
}

/// The circuit's state from the persisted counters.
pub fn circuit(policy: BreakerPolicy, consecutive_failures: u32, opened_ms: Option<i64>, now_ms: i64) -> Circuit {
    if consecutive_failures < policy.threshold.max(1) {
        return Circuit::Closed;
    }
    match opened_ms {
        Some(opened) if now_ms - opened < policy.cooldown_ms => Circuit::Open,
        _ => Circuit::HalfOpen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_half_opens_after_cooldown() {
        let p = BreakerPolicy { threshold: 3, cooldown_ms: 1000 };
        assert_eq!(circuit(p, 0, None, 0), Circuit::Closed);
        assert_eq!(circuit(p, 2, None, 0), Circuit::Closed);
        assert_eq!(circuit(p, 3, Some(10_000), 10_500), Circuit::Open);
        assert_eq!(circuit(p, 3, Some(10_000), 11_000), Circuit::HalfOpen);
        assert_eq!(circuit(p, 4, Some(11_000), 11_200), Circuit::Open);
    }
}
