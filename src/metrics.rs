//! Process-wide counters, exposed in Prometheus text format at `GET /metrics`.
//!
//! A handful of named counters with labels; a mutex-protected map is plenty for their rate.

use std::collections::BTreeMap;

use parking_lot::Mutex;

static COUNTERS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn series_name(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let rendered: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{name}{{{}}}", rendered.join(","))
}

/// Adds `by` to the counter `name{labels}`.
pub fn add(name: &str, labels: &[(&str, &str)], by: u64) {
    *COUNTERS.lock().entry(series_name(name, labels)).or_insert(0) += by;
}

pub fn incr(name: &str, labels: &[(&str, &str)]) {
    add(name, labels, 1);
}

/// Current value of one series (0 when never counted).
pub fn get(name: &str, labels: &[(&str, &str)]) -> u64 {
    COUNTERS.lock().get(&series_name(name, labels)).copied().unwrap_or(0)
}

/// All series in Prometheus text exposition format.
pub fn render_prometheus() -> String {
    let counters = COUNTERS.lock();
    let mut out = String::new();
    for (series, value) in counters.iter() {
        out.push_str(series);
        out.push(' ');
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}
