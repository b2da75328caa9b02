//! What one render of a store's blocks may use: a value the store sets (`settings.limits`),
//! the operator caps (`[render]` maxima) and the block engine enforces.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Per-render limits. Defaults follow the seed design (Workers-like limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RenderLimits {
    /// CPU budget of one block, in milliseconds.
    pub block_cpu_ms: u64,
    /// CPU budget of all blocks of one page together, in milliseconds.
    pub page_cpu_ms: u64,
    /// Heap limit of the isolate, in megabytes.
    pub heap_mb: usize,
    /// Largest HTML one block may return, in kilobytes.
    pub output_kb: usize,
}

impl Default for RenderLimits {
    fn default() -> Self {
        Self { block_cpu_ms: 50, page_cpu_ms: 1000, heap_mb: 128, output_kb: 1024 }
    }
}

impl RenderLimits {
    pub fn block_cpu(&self) -> Duration {
        Duration::from_millis(self.block_cpu_ms)
    }
    pub fn page_cpu(&self) -> Duration {
        Duration::from_millis(self.page_cpu_ms)
    }
    pub fn heap_bytes(&self) -> usize {
        self.heap_mb * 1024 * 1024
    }
    pub fn output_bytes(&self) -> usize {
        self.output_kb * 1024
    }
}
