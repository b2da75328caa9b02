//! A client-side history of cart writes and its check against the carts at the end, for fault
//! tests: every add the client saw acknowledged must be in its cart exactly once, an add whose
//! outcome the client could not know (a timeout, a 5xx) at most once, a refused add never, and
//! nothing may appear that no client sent.
//!
//! Each add puts a product no earlier add of that shopper used, with quantity 1, so a cart line's
//! quantity says how many times that one operation was applied.

use std::collections::BTreeMap;
use std::sync::Mutex;

use reqwest::StatusCode;
use serde_json::Value;

/// What the client learnt of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: the node acknowledged it.
    Acked,
    /// A 4xx other than a timeout: the node refused it before applying it.
    Refused,
    /// A 5xx, a 408, a dropped connection or a client timeout: it may or may not have been applied.
    Unknown,
}

impl Outcome {
    /// The outcome a status says (`None`: no answer arrived).
    pub fn of(status: Option<StatusCode>) -> Outcome {
        match status {
            Some(s) if s.is_success() => Outcome::Acked,
            Some(s) if s.is_client_error() && s != StatusCode::REQUEST_TIMEOUT => Outcome::Refused,
            _ => Outcome::Unknown,
        }
    }
}

#[derive(Debug, Clone)]
struct Op {
    shopper: String,
    product: String,
    outcome: Outcome,
}

/// What a history check found.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub acked: usize,
    pub refused: usize,
    pub unknown: usize,
    /// Unknown adds that turned out applied.
    pub unknown_applied: usize,
}

/// The operations every client task recorded, in any order.
#[derive(Default)]
pub struct History {
    ops: Mutex<Vec<Op>>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Records one add of `product` to `shopper`'s cart.
    pub fn record(&self, shopper: &str, product: &str, outcome: Outcome) {
        let op = Op { shopper: shopper.to_string(), product: product.to_string(), outcome };
        self.ops.lock().expect("history lock").push(op);
    }

    /// The shoppers that appear in the history.
    pub fn shoppers(&self) -> Vec<String> {
        let ops = self.ops.lock().expect("history lock");
        let mut shoppers: Vec<String> = ops.iter().map(|o| o.shopper.clone()).collect();
        shoppers.sort();
        shoppers.dedup();
        shoppers
    }

    /// Checks the final carts (shopper → product → quantity) against the history; the error
    /// lists every violation.
    pub fn check(&self, carts: &BTreeMap<String, BTreeMap<String, i64>>) -> Result<Summary, Vec<String>> {
        let ops = self.ops.lock().expect("history lock");
        let mut summary = Summary::default();
        let mut violations = Vec::new();
        let mut sent: BTreeMap<(&str, &str), Outcome> = BTreeMap::new();
        for op in ops.iter() {
            if sent.insert((&op.shopper, &op.product), op.outcome).is_some() {
                violations.push(format!("the test sent {} twice to {}: each add must use a new product", op.product, op.shopper));
            }
            let quantity = carts.get(&op.shopper).and_then(|c| c.get(&op.product)).copied().unwrap_or(0);
            match op.outcome {
                Outcome::Acked => {
                    summary.acked += 1;
                    if quantity != 1 {
                        violations.push(format!("{}: acknowledged add of {} applied {quantity} times", op.shopper, op.product));
                    }
                }
                Outcome::Refused => {
                    summary.refused += 1;
                    if quantity != 0 {
                        violations.push(format!("{}: refused add of {} applied {quantity} times", op.shopper, op.product));
                    }
                }
                Outcome::Unknown => {
                    summary.unknown += 1;
                    match quantity {
                        0 => {}
                        1 => summary.unknown_applied += 1,
                        n => violations.push(format!("{}: add of {} with unknown outcome applied {n} times", op.shopper, op.product)),
                    }
                }
            }
        }
        for (shopper, cart) in carts {
            for product in cart.keys() {
                if !sent.contains_key(&(shopper.as_str(), product.as_str())) {
                    violations.push(format!("{shopper}: {product} is in the cart but no client sent it"));
                }
            }
        }
        if violations.is_empty() {
            Ok(summary)
        } else {
            Err(violations)
        }
    }
}

/// A cart as `GET /cart` answers it (`cart.items[]` with `productId` and `quantity`), as
/// product → quantity.
pub fn cart_lines(cart: &Value) -> BTreeMap<String, i64> {
    cart["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| Some((i["productId"].as_str()?.to_string(), i["quantity"].as_i64()?))).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carts(lines: &[(&str, &str, i64)]) -> BTreeMap<String, BTreeMap<String, i64>> {
        let mut carts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for (s, p, q) in lines {
            carts.entry(s.to_string()).or_default().insert(p.to_string(), *q);
        }
        carts
    }

    #[test]
    fn a_consistent_history_passes() {
        let h = History::new();
        h.record("s1", "p1", Outcome::Acked);
        h.record("s1", "p2", Outcome::Unknown);
        h.record("s1", "p3", Outcome::Refused);
        h.record("s2", "p1", Outcome::Unknown);
        let summary = h.check(&carts(&[("s1", "p1", 1), ("s1", "p2", 1)])).unwrap();
        assert_eq!((summary.acked, summary.refused, summary.unknown, summary.unknown_applied), (1, 1, 2, 1));
    }

    #[test]
    fn lost_duplicated_and_phantom_writes_are_caught() {
        let h = History::new();
        h.record("s1", "p1", Outcome::Acked);
        h.record("s1", "p2", Outcome::Acked);
        h.record("s1", "p3", Outcome::Refused);
        h.record("s1", "p4", Outcome::Unknown);
        let violations = h.check(&carts(&[("s1", "p2", 2), ("s1", "p3", 1), ("s1", "p4", 2), ("s1", "p9", 1)])).unwrap_err();
        assert_eq!(violations.len(), 5, "{violations:#?}");
        assert!(violations.iter().any(|v| v.contains("p1 applied 0 times")));
        assert!(violations.iter().any(|v| v.contains("no client sent it")));
    }

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(Outcome::of(Some(StatusCode::CREATED)), Outcome::Acked);
        assert_eq!(Outcome::of(Some(StatusCode::CONFLICT)), Outcome::Refused);
        assert_eq!(Outcome::of(Some(StatusCode::REQUEST_TIMEOUT)), Outcome::Unknown);
        assert_eq!(Outcome::of(Some(StatusCode::SERVICE_UNAVAILABLE)), Outcome::Unknown);
        assert_eq!(Outcome::of(None), Outcome::Unknown);
    }
}
