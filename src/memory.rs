//! Returning memory to the operating system after actors release it.
//!
//! An isolate allocates a few MiB through malloc besides its V8 heap, and an open SQLite
//! connection its page cache and schema; glibc keeps freed chunks in its per-thread arenas, so
//! after a burst of sessions the node's RSS stayed at its peak. Whoever releases such memory
//! calls [`note_released`]; a background task then runs `malloc_trim`, which gives the free
//! pages of every arena back, only after something was released and at most every
//! [`MIN_INTERVAL`]: a trim holds each arena's lock while it walks it, so allocations on other
//! threads wait meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static RELEASED: AtomicU64 = AtomicU64::new(0);

/// Shortest time between two trims.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);

/// An isolate was dropped or a connection closed.
pub fn note_released() {
    RELEASED.fetch_add(1, Ordering::Relaxed);
}

/// How many releases were noted since the process started.
pub fn released() -> u64 {
    RELEASED.load(Ordering::Relaxed)
}

/// Gives the free pages of every malloc arena back now, on the calling thread.
pub fn trim_now() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Starts the trimming task on the current actix/tokio runtime.
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(MIN_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut trimmed_at = RELEASED.load(Ordering::Relaxed);
        loop {
            tick.tick().await;
            let released = RELEASED.load(Ordering::Relaxed);
            if released == trimmed_at {
                continue;
            }
            trimmed_at = released;
            let _ = tokio::task::spawn_blocking(trim_now).await;
        }
    });
}
