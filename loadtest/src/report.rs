//! Results: one row per measured phase (JSON for tools, a Markdown table for RESULTS.md).

use std::fmt::Write as _;

use serde::Serialize;

use crate::driver::Measured;

#[derive(Serialize, Clone, Default)]
pub struct Row {
    /// Short id, e.g. `w1`, `w1@rate`, `ceiling-http`.
    pub id: String,
    pub workload: String,
    /// How it was driven (loop, connections, rate).
    pub mode: String,
    pub ok: u64,
    pub errors: u64,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub node_cpu_us_per_req: Option<f64>,
    pub client_cpu_us_per_req: Option<f64>,
    pub target: String,
    pub ceiling: Option<String>,
    pub ceiling_rps: Option<f64>,
    /// Throughput / ceiling.
    pub ratio: Option<f64>,
    /// Whether the target was met; `None` when the row has no target.
    pub meets_target: Option<bool>,
    pub notes: String,
}

impl Row {
    pub fn from_measured(id: &str, workload: &str, mode: String, m: &Measured) -> Row {
        let mut notes = Vec::new();
        if !m.cache.is_empty() {
            let seen: Vec<String> = m.cache.iter().map(|(k, v)| format!("{k}×{v}")).collect();
            notes.push(format!("cache: {}", seen.join(", ")));
        }
        if m.reconnects > 0 {
            notes.push(format!("{} reconnects", m.reconnects));
        }
        if let Some(e) = &m.first_error {
            notes.push(format!("first error: {}", e.chars().take(160).collect::<String>()));
        }
        Row {
            id: id.into(),
            workload: workload.into(),
            mode,
            ok: m.ok,
            errors: m.errors,
            throughput_rps: m.throughput(),
            p50_ms: m.quantile_ms(0.50),
            p90_ms: m.quantile_ms(0.90),
            p99_ms: m.quantile_ms(0.99),
            max_ms: m.max_ms(),
            node_cpu_us_per_req: m.node_cpu_us_per_req,
            client_cpu_us_per_req: m.client_cpu_us_per_req,
            notes: notes.join("; "),
            ..Default::default()
        }
    }

    /// Compares throughput with a ceiling; `min_ratio` is the target, if any.
    pub fn against(mut self, ceiling: Option<&Row>, min_ratio: Option<f64>) -> Row {
        if let Some(c) = ceiling {
            self.ceiling = Some(c.id.clone());
            self.ceiling_rps = Some(c.throughput_rps);
            let ratio = self.throughput_rps / c.throughput_rps.max(1e-9);
            self.ratio = Some(ratio);
            if let Some(min) = min_ratio {
                self.target = format!("≥ {min} × {}", c.id);
                self.meets_target = Some(ratio >= min);
            }
        }
        self
    }

    pub fn p99_under(self, ms: f64) -> Row {
        let ok = self.p99_ms < ms && self.errors == 0;
        self.and_target(format!("p99 < {ms} ms"), ok)
    }

    /// The node's CPU per request at most `us` microseconds (unmeasured counts as missed).
    pub fn cpu_at_most(self, us: f64) -> Row {
        let ok = self.node_cpu_us_per_req.is_some_and(|cpu| cpu <= us);
        self.and_target(format!("≤ {us} µs CPU/req"), ok)
    }

    fn and_target(mut self, target: String, ok: bool) -> Row {
        self.target = if self.target.is_empty() { target } else { format!("{}; {target}", self.target) };
        self.meets_target = Some(self.meets_target.unwrap_or(true) && ok);
        self
    }
}

/// W5: memory per actor in one state.
#[derive(Serialize, Clone)]
pub struct MemRow {
    pub actors: usize,
    pub state: String,
    pub live_shoppers: u64,
    pub rss_kib: u64,
    pub baseline_kib: u64,
    pub kib_per_actor: f64,
    pub open_fds: usize,
    pub target: String,
    pub meets_target: Option<bool>,
    pub notes: String,
}

#[derive(Serialize, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub memory: Vec<MemRow>,
    pub skipped: Vec<String>,
    /// Extra Markdown (cluster workloads' details), appended as is.
    pub sections: Vec<String>,
}

fn verdict(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "✅",
        Some(false) => "❌",
        None => "",
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_default()
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| workload | mode | ok / errors | throughput (req/s) | p50 | p90 | p99 | max (ms) | node CPU µs/req | target | ceiling | ratio | |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let ceiling = match (&r.ceiling, r.ceiling_rps) {
                (Some(c), Some(v)) => format!("{c} {v:.0}/s"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "| {} `{}` | {} | {} / {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
                r.workload,
                r.id,
                r.mode,
                r.ok,
                r.errors,
                r.throughput_rps,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.max_ms,
                opt(r.node_cpu_us_per_req, 0),
                r.target,
                ceiling,
                opt(r.ratio, 3),
                verdict(r.meets_target),
            );
        }
        let notes: Vec<_> = self.rows.iter().filter(|r| !r.notes.is_empty()).collect();
        if !notes.is_empty() {
            s.push('\n');
            for r in notes {
                let _ = writeln!(s, "- `{}`: {}", r.id, r.notes);
            }
        }
        if !self.memory.is_empty() {
            s.push_str("\nW5 memory (VmRSS of the node process):\n\n");
            s.push_str("| actors | state | live shoppers | RSS (KiB) | baseline (KiB) | KiB per actor | open fds | target | |\n");
            s.push_str("|---|---|---|---|---|---|---|---|---|\n");
            for m in &self.memory {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {} |",
                    m.actors,
                    m.state,
                    m.live_shoppers,
                    m.rss_kib,
                    m.baseline_kib,
                    m.kib_per_actor,
                    m.open_fds,
                    m.target,
                    verdict(m.meets_target)
                );
            }
            for m in self.memory.iter().filter(|m| !m.notes.is_empty()) {
                let _ = writeln!(s, "- {} actors, {}: {}", m.actors, m.state, m.notes);
            }
        }
        for section in &self.sections {
            s.push_str(section);
        }
        for skipped in &self.skipped {
            let _ = writeln!(s, "- skipped: {skipped}");
        }
        s
    }
}
