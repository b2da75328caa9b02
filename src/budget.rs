//! A node-wide limit (open files, live isolates): set once at startup from configuration, where
//! 0 means "derive it from the machine", and read on hot paths without a lock.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Budget {
    value: AtomicUsize,
    derive: fn() -> usize,
}

impl Budget {
    /// A budget not set yet: the first read derives it.
    pub const fn derived_by(derive: fn() -> usize) -> Budget {
        Budget { value: AtomicUsize::new(0), derive }
    }

    /// Sets the budget; 0 derives it. Never below 1.
    pub fn set(&self, configured: usize) {
        let value = if configured > 0 { configured } else { (self.derive)() };
        self.value.store(value.max(1), Ordering::Relaxed);
    }

    pub fn get(&self) -> usize {
        match self.value.load(Ordering::Relaxed) {
            0 => {
                self.set(0);
                self.value.load(Ordering::Relaxed)
            }
            value => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Budget;

    #[test]
    fn zero_derives_and_nothing_goes_below_one() {
        let budget = Budget::derived_by(|| 7);
        assert_eq!(budget.get(), 7, "unset: derived on first read");
        budget.set(3);
        assert_eq!(budget.get(), 3);
        budget.set(0);
        assert_eq!(budget.get(), 7);
        let tiny = Budget::derived_by(|| 0);
        assert_eq!(tiny.get(), 1);
    }
}
