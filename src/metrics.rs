//! Process-wide metrics through the `metrics` facade, exposed in Prometheus text format at
//! `GET /metrics` by `metrics-exporter-prometheus`: counters, gauges and histograms with
//! fixed buckets (so Prometheus can aggregate quantiles across nodes).
//!
//! Label values that come from tenants (store ids) must be bounded by the caller: see
//! [`StoreLabels`].

use std::collections::HashSet;
use std::sync::OnceLock;

use metrics::Label;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;

/// Seconds: from a cached page (tens of µs) to a render at its page limit and beyond.
const SECONDS_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Milliseconds, for histograms whose names end in `_ms`: calls to etcd, from a local round
/// trip to a failover between endpoints.
const MILLISECONDS_BUCKETS: &[f64] = &[1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// How often histogram samples are folded into their buckets. The recorder keeps every raw
/// sample until then, so a node nobody scrapes would otherwise grow by each request's samples.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The exporter, installed as the global recorder on first use (startup calls it first, so no
/// early sample goes to the facade's no-op recorder).
pub fn init() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(SECONDS_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_ms".into()), MILLISECONDS_BUCKETS))
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Fails only if another recorder was installed first (an embedding program's): its
        // choice wins and this handle renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        let upkeep = handle.clone();
        let started = std::thread::Builder::new().name("vitrina-metrics".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded only when /metrics is read");
        }
        handle
    })
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs.iter().map(|(k, v)| Label::new(*k, v.to_string())).collect()
}

pub fn add(name: &'static str, pairs: &[(&'static str, &str)], by: u64) {
    init();
    metrics::counter!(name, labels(pairs)).increment(by);
}

pub fn incr(name: &'static str, pairs: &[(&'static str, &str)]) {
    add(name, pairs, 1);
}

pub fn set_gauge(name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
    init();
    metrics::gauge!(name, labels(pairs)).set(value);
}

/// One observation of a histogram in seconds (names end in `_seconds`).
pub fn observe_seconds(name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
    init();
    metrics::histogram!(name, labels(pairs)).record(seconds);
}

/// One observation of a histogram in milliseconds (names end in `_ms`).
pub fn observe_ms(name: &'static str, pairs: &[(&'static str, &str)], ms: f64) {
    init();
    metrics::histogram!(name, labels(pairs)).record(ms);
}

/// All series in Prometheus text exposition format.
pub fn render_prometheus() -> String {
    let handle = init();
    handle.run_upkeep();
    handle.render()
}

/// The value of one counter or gauge series as `/metrics` shows it (0 when absent): for tests.
pub fn get(name: &str, pairs: &[(&str, &str)]) -> u64 {
    let mut wanted: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    render_prometheus()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, mut found) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}').split(',').map(str::to_string).collect::<Vec<_>>()),
                None => (series, Vec::new()),
            };
            found.sort();
            (series_name == name && found == wanted).then(|| value.parse::<f64>().ok().map(|v| v as u64)).flatten()
        })
        .unwrap_or(0)
}

/// Stores named in per-store usage series on one node; further stores count as `other`.
const NAMED_STORES: usize = 200;

/// The per-store usage label of `store` (bounded, see [`StoreLabels`]).
pub fn store_label(store: &str) -> String {
    static LABELS: OnceLock<StoreLabels> = OnceLock::new();
    LABELS.get_or_init(|| StoreLabels::new(NAMED_STORES)).label(store)
}

/// Bounds a per-store label: the first `named` stores seen are named, any further one is
/// `other`, so a node with a million stores still exports a bounded number of series.
pub struct StoreLabels {
    named: usize,
    seen: Mutex<HashSet<String>>,
}

impl StoreLabels {
    pub fn new(named: usize) -> StoreLabels {
        StoreLabels { named, seen: Mutex::new(HashSet::new()) }
    }

    pub fn label(&self, store: &str) -> String {
        let mut seen = self.seen.lock();
        if seen.contains(store) {
            return store.to_string();
        }
        if seen.len() < self.named {
            seen.insert(store.to_string());
            return store.to_string();
        }
        "other".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_bounded_store_labels_render() {
        incr("vitrina_test_events_total", &[("kind", "a")]);
        add("vitrina_test_events_total", &[("kind", "a")], 2);
        observe_seconds("vitrina_test_duration_seconds", &[("route", "/x")], 0.003);
        observe_ms("vitrina_test_acquire_ms", &[], 7.0);
        assert_eq!(get("vitrina_test_events_total", &[("kind", "a")]), 3);
        let text = render_prometheus();
        assert!(text.contains("vitrina_test_duration_seconds_bucket{route=\"/x\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("vitrina_test_acquire_ms_bucket{le=\"10\"} 1"), "{text}");
        assert!(text.contains("vitrina_test_acquire_ms_bucket{le=\"5\"} 0"), "{text}");
        let stores = StoreLabels::new(2);
        assert_eq!(
            (stores.label("s1"), stores.label("s2"), stores.label("s3"), stores.label("s1")),
            ("s1".into(), "s2".into(), "other".into(), "s1".into())
        );
    }
}
