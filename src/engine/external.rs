//! ArrayBuffer memory with a per-isolate byte budget.
//!
//! The backing stores of ArrayBuffers and typed arrays live outside the V8 heap, so the heap
//! limit does not cover them: four shoppers on a page of typed-array blocks took a node from
//! 26 MB to 1.5 GB. Each isolate gets its own allocator with a budget; an allocation past it
//! returns null, which V8 turns into a `RangeError` in the block, and the budget remembers that
//! it refused one so the engine reports the block as `heap-limit`.
//!
//! Resizable ArrayBuffers reserve and commit their memory through V8's page allocator instead
//! of this allocator; the library makes the `ArrayBuffer` constructor ignore `maxByteLength`
//! (`CONTAINMENT_JS` in `js/platform.rs`), so a block cannot make one.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of ArrayBuffer backing stores one isolate holds, and its limit.
#[derive(Debug)]
pub struct ExternalBudget {
    used: AtomicUsize,
    limit: usize,
    refused: AtomicBool,
}

impl ExternalBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ExternalBudget { used: AtomicUsize::new(0), limit, refused: AtomicBool::new(false) })
    }

    /// Bytes currently allocated.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether an allocation was ever refused (the isolate hit its limit).
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::SeqCst)
    }

    /// Reserves `len` bytes; false (and remembered) when they do not fit.
    fn reserve(&self, len: usize) -> bool {
        let fits = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| used.checked_add(len).filter(|total| *total <= self.limit))
            .is_ok();
        if !fits {
            self.refused.store(true, Ordering::SeqCst);
        }
        fits
    }

    fn release(&self, len: usize) {
        let _ = self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| Some(used.saturating_sub(len)));
    }
}

unsafe extern "C" fn allocate(budget: &ExternalBudget, len: usize) -> *mut c_void {
    if !budget.reserve(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: calloc has no preconditions; V8 expects zeroed memory from `Allocate`.
    let data = unsafe { libc::calloc(len.max(1), 1) };
    if data.is_null() {
        budget.release(len);
    }
    data
}

unsafe extern "C" fn allocate_uninitialized(budget: &ExternalBudget, len: usize) -> *mut c_void {
    if !budget.reserve(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: malloc has no preconditions.
    let data = unsafe { libc::malloc(len.max(1)) };
    if data.is_null() {
        budget.release(len);
    }
    data
}

unsafe extern "C" fn free(budget: &ExternalBudget, data: *mut c_void, len: usize) {
    // SAFETY: V8 frees only what `allocate` or `allocate_uninitialized` returned, once, with
    // the length it asked for.
    unsafe { libc::free(data) };
    budget.release(len);
}

unsafe extern "C" fn drop_handle(budget: *const ExternalBudget) {
    // SAFETY: the handle is the `Arc::into_raw` of [`allocator`], released once by V8.
    drop(unsafe { Arc::from_raw(budget) });
}

static VTABLE: ::v8::RustAllocatorVtable<ExternalBudget> =
    ::v8::RustAllocatorVtable { allocate, allocate_uninitialized, free, drop: drop_handle };

/// An array-buffer allocator that allocates against `budget`.
pub fn allocator(budget: &Arc<ExternalBudget>) -> ::v8::UniqueRef<::v8::Allocator> {
    let handle = Arc::into_raw(budget.clone());
    // SAFETY: `handle` is a live `Arc<ExternalBudget>` the allocator owns until V8 calls
    // `drop_handle`; the vtable's functions take exactly that type.
    unsafe { ::v8::new_rust_allocator(handle, &VTABLE) }
}

#[cfg(test)]
mod tests {
    use super::ExternalBudget;

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_remembers_it() {
        let budget = ExternalBudget::new(100);
        assert!(budget.reserve(60));
        assert!(!budget.refused());
        assert!(!budget.reserve(50));
        assert!(budget.refused());
        assert_eq!(budget.used(), 60);
        budget.release(60);
        assert!(budget.reserve(100));
        assert!(!budget.reserve(usize::MAX));
    }
}
