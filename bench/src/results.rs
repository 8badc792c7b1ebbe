//! What a benchmark run measured, as plain data: one wrk run's figures, a scenario's reps and
//! its median, percentiles. `load` produces them, `report` and `chart` read them, and none of
//! those three imports another.

use serde::Serialize;

/// One wrk run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub cpu_us_per_req: f64,
    pub peak_rss_mib: f64,
    pub requests: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub key: String,
    pub label: String,
    /// The median rep (by requests per second).
    pub median: Sample,
    pub ratio_to_ceiling: f64,
    pub reps: Vec<Sample>,
}

/// The `p` quantile (0 to 1) of already sorted values, by nearest rank (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
