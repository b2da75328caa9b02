//! Process-wide counters, exposed in Prometheus text format at `GET /metrics`.
//!
//! A handful of named counters with labels; a mutex-protected map is plenty for their rate.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;

use parking_lot::Mutex;

static COUNTERS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

fn write_series_name(out: &mut String, name: &str, labels: &[(&str, &str)]) {
    out.clear();
    out.push_str(name);
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn series_name(name: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    write_series_name(&mut out, name, labels);
    out
}

/// Counters are bumped on every request (cache hits, activations): the series name is built in
/// a reused per-thread buffer and looked up by `&str`, so a bump allocates only the first time a
/// series appears (an allocation per bump showed in the request-path profile).
pub fn add(name: &str, labels: &[(&str, &str)], by: u64) {
    thread_local! {
        static SERIES: RefCell<String> = const { RefCell::new(String::new()) };
    }
    SERIES.with(|series| {
        let mut series = series.borrow_mut();
        write_series_name(&mut series, name, labels);
        let mut counters = COUNTERS.lock();
        let counters = counters.get_or_insert_with(HashMap::new);
        match counters.get_mut(series.as_str()) {
            Some(value) => *value += by,
            None => {
                counters.insert(series.clone(), by);
            }
        }
    });
}

pub fn incr(name: &str, labels: &[(&str, &str)]) {
    add(name, labels, 1);
}

pub fn get(name: &str, labels: &[(&str, &str)]) -> u64 {
    COUNTERS.lock().as_ref().and_then(|c| c.get(&series_name(name, labels)).copied()).unwrap_or(0)
}

/// All series in Prometheus text exposition format.
pub fn render_prometheus() -> String {
    let mut counters: Vec<(String, u64)> = COUNTERS.lock().iter().flatten().map(|(k, v)| (k.clone(), *v)).collect();
    counters.sort_unstable();
    let mut out = String::new();
    for (series, value) in counters.iter() {
        out.push_str(series);
        out.push(' ');
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}
