//! The limits a block runs under: the watchdog that terminates an isolate when its CPU
//! deadline passes, the render thread's CPU clock those deadlines are on, and the heap guard
//! V8 calls near an isolate's heap limit.
//!
//! Deadlines are on the render thread's own CPU clock (`pthread_getcpuclockid`), not the wall
//! clock: a render thread that is descheduled because the machine is busy does not use up its
//! blocks' budgets, so load never turns healthy blocks into timeouts.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

// ---------------------------------------------------------------------------------------------
// Watchdog

/// One process-wide thread that terminates isolates whose deadline has passed.
///
/// Arming a deadline does not wake the thread while it is ticking: every block arms one or two
/// deadlines, and a wake-up (futex, context switch) per arm cost more CPU than the blocks of a
/// small page. While deadlines come and go the thread checks them every [`TICK`],
/// so a timeout lands at most one tick late; after [`LINGER`] with nothing armed it sleeps until
/// the next arm wakes it.
pub(super) struct Watchdog {
    armed: Mutex<ArmedSet>,
    wake: Condvar,
}

/// How often a busy watchdog checks the armed deadlines.
const TICK: Duration = Duration::from_millis(5);
/// How long the watchdog keeps ticking with nothing armed before it sleeps.
const LINGER: Duration = Duration::from_millis(200);

#[derive(Default)]
struct ArmedSet {
    deadlines: Vec<Armed>,
    /// The thread is asleep without a timeout: the next arm must wake it.
    sleeping: bool,
}

struct Armed {
    id: u64,
    deadline: CpuDeadline,
    isolate: v8::IsolateHandle,
    fired: Arc<AtomicBool>,
}

/// Disarms its deadline when dropped; after that the watchdog can no longer fire for it.
pub(super) struct WatchGuard {
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        // Removing under the lock the watchdog fires under: once this returns, no late
        // TerminateExecution can hit the isolate for this deadline.
        watchdog().armed.lock().deadlines.retain(|a| a.id != self.id);
    }
}

pub(super) fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let dog: &'static Watchdog = Box::leak(Box::new(Watchdog { armed: Mutex::new(ArmedSet::default()), wake: Condvar::new() }));
        let spawned = std::thread::Builder::new().name("v8-watchdog".into()).spawn(move || dog.run());
        if let Err(error) = spawned {
            // Without the watchdog CPU limits cannot be enforced; nothing else breaks.
            tracing::error!(%error, "cannot start the V8 watchdog thread; block CPU limits are not enforced");
        }
        dog
    })
}

impl Watchdog {
    pub(super) fn arm(&self, isolate: v8::IsolateHandle, deadline: CpuDeadline, fired: Arc<AtomicBool>) -> WatchGuard {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut armed = self.armed.lock();
        armed.deadlines.push(Armed { id, deadline, isolate, fired });
        if armed.sleeping {
            armed.sleeping = false;
            self.wake.notify_one();
        }
        WatchGuard { id }
    }

    fn run(&self) {
        let mut armed = self.armed.lock();
        let mut last_armed = Instant::now();
        loop {
            let mut next_check = TICK;
            armed.deadlines.retain(|a| {
                let left = a.deadline.remaining();
                if !left.is_zero() {
                    next_check = next_check.min(left);
                    return true;
                }
                a.fired.store(true, Ordering::SeqCst);
                a.isolate.terminate_execution();
                false
            });
            if !armed.deadlines.is_empty() {
                last_armed = Instant::now();
            }
            if armed.deadlines.is_empty() && last_armed.elapsed() >= LINGER {
                armed.sleeping = true;
                self.wake.wait(&mut armed);
                last_armed = Instant::now();
            } else {
                // A thread uses at most one second of CPU per second of wall time, so sleeping
                // for the CPU time left never sleeps past the deadline.
                self.wake.wait_for(&mut armed, next_check.max(Duration::from_micros(200)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU clock

/// The CPU clock of one thread, readable from any thread of the process.
#[derive(Debug, Clone, Copy)]
pub(super) struct ThreadClock(libc::clockid_t);

/// How long a reading of the calling thread's CPU clock stands in for a new one (see
/// [`ThreadClock::bounds`]): a block may use up to this much CPU time beyond its budget.
const CPU_READING_FRESH_FOR: Duration = Duration::from_micros(250);

thread_local! {
    /// The calling thread's last CPU clock reading: (clock, CPU time, wall time taken).
    static LAST_CPU_READING: std::cell::Cell<Option<(libc::clockid_t, Duration, Instant)>> = const { std::cell::Cell::new(None) };
}

/// Where a thread's CPU clock stands, known to within `high - low`.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuBounds {
    pub(super) low: Duration,
    pub(super) high: Duration,
}

impl ThreadClock {
    /// The calling thread's CPU clock.
    pub(super) fn current() -> ThreadClock {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self() is always a valid thread of this process; `id` is a valid out pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        if rc == 0 {
            ThreadClock(id)
        } else {
            // Without a per-thread clock, fall back to the process clock: coarser, still CPU time.
            ThreadClock(libc::CLOCK_PROCESS_CPUTIME_ID)
        }
    }

    fn now(self) -> Duration {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out pointer; an invalid clock id only makes the call fail.
        let rc = unsafe { libc::clock_gettime(self.0, &mut ts) };
        if rc != 0 {
            return Duration::MAX;
        }
        Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
    }

    /// This clock, which must be the calling thread's ([`ThreadClock::current`]), without a
    /// system call when it was read less than [`CPU_READING_FRESH_FOR`] ago. Reading a running
    /// thread's CPU clock locks its CPU's run queue, which one read per block made a visible
    /// share of a busy node's CPU (`docs/decisions/v8-engine.md`). A thread's CPU time advances no faster than wall time, so the last reading
    /// bounds it from below and that reading plus the wall time since from above.
    pub(super) fn bounds(self) -> CpuBounds {
        let wall = Instant::now();
        // The process clock counts every thread: only a thread's own clock is bounded so.
        if self.0 != libc::CLOCK_PROCESS_CPUTIME_ID {
            if let Some((clock, cpu, taken)) = LAST_CPU_READING.get() {
                let since = wall.saturating_duration_since(taken);
                if clock == self.0 && since < CPU_READING_FRESH_FOR {
                    return CpuBounds { low: cpu, high: cpu.saturating_add(since) };
                }
            }
        }
        let cpu = self.now();
        LAST_CPU_READING.set(Some((self.0, cpu, wall)));
        CpuBounds { low: cpu, high: cpu }
    }
}

/// A point on one thread's CPU clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuDeadline {
    clock: ThreadClock,
    pub(super) at: Duration,
}

impl CpuDeadline {
    /// `budget` after `now`, a reading of `clock` the caller already has.
    pub(super) fn after_reading(clock: ThreadClock, now: Duration, budget: Duration) -> CpuDeadline {
        CpuDeadline { clock, at: now.saturating_add(budget) }
    }
    /// `budget` from now on the same clock, which must be the calling thread's.
    pub(super) fn restarted(self, budget: Duration) -> CpuDeadline {
        CpuDeadline::after_reading(self.clock, self.clock.bounds().high, budget)
    }
    pub(super) fn min(self, other: CpuDeadline) -> CpuDeadline {
        if other.at < self.at {
            other
        } else {
            self
        }
    }
    fn remaining(&self) -> Duration {
        self.at.saturating_sub(self.clock.now())
    }
}

// ---------------------------------------------------------------------------------------------
// Heap guard

/// What the near-heap-limit callback adds to the limit each time V8 reaches it: room for the
/// largest object V8 allocates in one piece (a FixedArray or a two-byte string of maximal
/// length, 1 GiB) and the allocation that triggered the GC besides. V8 aborts the process
/// when the callback cannot make the allocation in flight fit, so a grant must always fit it;
/// the block is terminated at the same time and its isolate discarded.
const HEAP_GRANT: usize = (1024 + 128) << 20;

/// Grants one block can receive. A grant lasts until V8 reaches the next interrupt check (a
/// loop back-edge, a call); past this many V8 aborts the process, which would take a builtin
/// allocating gigabytes without ever checking for termination.
const MAX_HEAP_GRANTS: u32 = 8;

/// State shared with the near-heap-limit callback; boxed so its address is stable.
pub(super) struct HeapGuard {
    pub(super) isolate: v8::IsolateHandle,
    pub(super) hit: AtomicBool,
    pub(super) grants: AtomicU32,
}

/// Called by V8 inside a GC when the heap nears its limit: terminate the running block and
/// raise the limit so the allocation in flight succeeds instead of aborting the process.
pub(super) unsafe extern "C" fn near_heap_limit(data: *mut c_void, current_heap_limit: usize, _initial: usize) -> usize {
    // SAFETY: `data` is the `HeapGuard` boxed in `LiveIsolate`, which outlives its isolate.
    let guard = unsafe { &*(data as *const HeapGuard) };
    guard.hit.store(true, Ordering::SeqCst);
    guard.isolate.terminate_execution();
    let grants = guard.grants.fetch_add(1, Ordering::SeqCst);
    if grants < MAX_HEAP_GRANTS {
        current_heap_limit.saturating_add(HEAP_GRANT)
    } else {
        tracing::error!(grants, "a block kept allocating past its heap limit after termination; V8 will abort");
        current_heap_limit
    }
}
