//! Drives requests over N keep-alive connections and records latencies.
//!
//! Two loops:
//! - **closed loop** (`rate: None`): each connection sends its next request as soon as the
//!   previous answer arrived. Measures the maximum throughput; its latencies are service times
//!   under that concurrency, not what a user at a given arrival rate would see.
//! - **open loop** (`rate: Some(r)`): requests are *scheduled* at a fixed total rate, spread
//!   evenly over the connections, and latency is measured from the *intended* send time. If the
//!   server stalls, the requests that should have been sent meanwhile are charged the wait
//!   (no coordinated omission, as in wrk2).
//!
//! Requests sent during the warm-up are answered but not recorded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::Request;

use crate::client::{Answer, Body, Conn, Target};
use test_support::procfs;

/// How one phase runs.
#[derive(Clone, Debug)]
pub struct Phase {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Open loop at this total rate (requests per second); `None`: closed loop.
    pub rate: Option<f64>,
    /// Stop after this many requests in total (one pass over a set of shoppers).
    pub max_requests: Option<u64>,
}

/// Builds request number `i` (numbers are unique across connections within a phase).
pub type MakeRequest = Arc<dyn Fn(u64) -> Request<Body> + Send + Sync>;
/// Whether an answer counts as a success.
pub type Check = fn(&Answer) -> bool;

/// What a phase measured.
pub struct Measured {
    /// Latencies of successful measured requests, in microseconds.
    pub hist: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Values of `x-vitrina-cache` seen, to confirm which path was exercised.
    pub cache: BTreeMap<String, u64>,
    /// Connections opened beyond one per worker (0 = keep-alive held throughout).
    pub reconnects: u64,
    /// CPU time the node process spent per successful request during the measurement, in µs.
    pub node_cpu_us_per_req: Option<f64>,
    /// Same for this load generator, to show how much of the 2 cores it took.
    pub client_cpu_us_per_req: Option<f64>,
}

impl Measured {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    pub fn max_ms(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }
}

struct WorkerOut {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    cache: BTreeMap<String, u64>,
    opened: u64,
    last_done: Option<Instant>,
}

type Released = Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>>>;

/// Releases request numbers at their intended times from a dedicated thread.
fn pace(rate: f64, start: Instant, deadline: Instant, max_requests: Option<u64>) -> Released {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let interval = Duration::from_secs_f64(1.0 / rate);
    std::thread::Builder::new()
        .name("load-pacer".into())
        .spawn(move || {
            for n in 0u64.. {
                let intended = start + interval.mul_f64(n as f64);
                if intended >= deadline || max_requests.is_some_and(|m| n >= m) {
                    break;
                }
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                if tx.send((n, intended)).is_err() {
                    break;
                }
            }
        })
        .expect("spawn the pacing thread");
    Arc::new(tokio::sync::Mutex::new(rx))
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Runs one phase against `target`; `node_pid` (if known) is sampled for CPU time.
pub async fn run(target: &Target, phase: &Phase, make: MakeRequest, check: Check, node_pid: Option<u32>) -> Measured {
    let connections = phase.connections.max(1);
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + phase.warmup;
    let deadline = measure_from + phase.duration;
    let next = Arc::new(AtomicU64::new(0));

    // CPU samples at the start and the end of the measured window.
    let cpu_before = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        (node_pid.and_then(procfs::cpu_time), procfs::own_cpu_time(std::process::id()))
    });

    // Open loop: one pacing thread releases request n at `start + n / rate` with the OS's
    // sleep precision (tens of µs); idle workers take released requests in order. Sleeping in
    // each worker with tokio's timer (1 ms wheel) sent requests up to a millisecond late, and
    // latency is measured from the intended time, so that lateness counted as the node's.
    let schedule = phase.rate.map(|rate| pace(rate.max(1e-3), start, deadline, phase.max_requests));

    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (target, make, next, phase, schedule) = (target.clone(), make.clone(), next.clone(), phase.clone(), schedule.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::new(target.addr);
            let mut out =
                WorkerOut { hist: histogram(), ok: 0, errors: 0, first_error: None, cache: BTreeMap::new(), opened: 0, last_done: None };
            loop {
                let (i, intended) = match &schedule {
                    Some(released) => {
                        let next_released = released.lock().await.recv().await;
                        match next_released {
                            Some(released) => released,
                            None => break,
                        }
                    }
                    None => {
                        let intended = Instant::now().max(start);
                        if intended >= deadline {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if phase.max_requests.is_some_and(|m| i >= m) {
                            break;
                        }
                        tokio::time::sleep_until(intended.into()).await;
                        (i, intended)
                    }
                };
                let make = &make;
                let result = conn.send(|| make(i)).await;
                let done = Instant::now();
                let measured = intended >= measure_from;
                match result {
                    Ok(answer) if check(&answer) => {
                        if measured {
                            out.ok += 1;
                            let us = done.duration_since(intended).as_micros().clamp(1, 60_000_000) as u64;
                            let _ = out.hist.record(us);
                            if let Some(c) = answer.cache {
                                *out.cache.entry(c).or_default() += 1;
                            }
                            out.last_done = Some(done);
                        }
                    }
                    Ok(answer) => {
                        out.errors += 1;
                        if out.first_error.is_none() {
                            let body = String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]).into_owned();
                            out.first_error = Some(format!("HTTP {}: {body}", answer.status));
                        }
                    }
                    Err(e) => {
                        out.errors += 1;
                        if out.first_error.is_none() {
                            out.first_error = Some(format!("{e:#}"));
                        }
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            out.opened = conn.opened;
            out
        }));
    }

    let mut hist = histogram();
    let (mut ok, mut errors, mut first_error, mut cache, mut reconnects, mut last_done) = (0, 0, None, BTreeMap::new(), 0, None);
    for w in workers {
        let out = w.await.expect("load worker panicked");
        hist.add(&out.hist).expect("same histogram bounds");
        ok += out.ok;
        errors += out.errors;
        first_error = first_error.or(out.first_error);
        for (k, v) in out.cache {
            *cache.entry(k).or_default() += v;
        }
        reconnects += out.opened.saturating_sub(1);
        last_done = last_done.max(out.last_done);
    }
    let end = if phase.max_requests.is_some() { last_done.unwrap_or_else(Instant::now) } else { deadline };
    let (node_before, client_before) = cpu_before.await.unwrap_or((None, None));
    let node_after = node_pid.and_then(procfs::cpu_time);
    let client_after = procfs::own_cpu_time(std::process::id());
    let per_req = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(b), Some(a)) if ok > 0 => Some(a.saturating_sub(b).as_secs_f64() * 1e6 / ok as f64),
        _ => None,
    };
    Measured {
        hist,
        ok,
        errors,
        first_error,
        elapsed: end.saturating_duration_since(measure_from),
        cache,
        reconnects,
        node_cpu_us_per_req: per_req(node_before, node_after),
        client_cpu_us_per_req: per_req(client_before, client_after),
    }
}
