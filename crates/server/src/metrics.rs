//! Counters for `/metrics`, in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the check latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    locked: AtomicU64,
    unlocked: AtomicU64,
    /// Checks answered with an error, by status code.
    errors: [AtomicU64; 6],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    pub attempt_queue_depth: Arc<AtomicI64>,
    pub attempts_written: AtomicU64,
}

const ERROR_STATUSES: [u16; 6] = [400, 401, 413, 429, 503, 500];

impl Metrics {
    pub fn decision(&self, locked: bool) {
        if locked { &self.locked } else { &self.unlocked }.fetch_add(1, Ordering::Relaxed);
    }
    pub fn error(&self, status: u16) {
        let i = ERROR_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(ERROR_STATUSES.len() - 1);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(out, "# HELP deadbolt_checks_total Checks answered with a decision.\n# TYPE deadbolt_checks_total counter");
        let _ = writeln!(
            out,
            "deadbolt_checks_total{{decision=\"locked\"}} {}",
            g(&self.locked)
        );
        let _ = writeln!(
            out,
            "deadbolt_checks_total{{decision=\"unlocked\"}} {}",
            g(&self.unlocked)
        );
        let _ = writeln!(out, "# HELP deadbolt_check_errors_total Checks answered without a decision, by status.\n# TYPE deadbolt_check_errors_total counter");
        for (s, a) in ERROR_STATUSES.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "deadbolt_check_errors_total{{status=\"{s}\"}} {}",
                g(a)
            );
        }
        let _ = writeln!(out, "# HELP deadbolt_check_duration_seconds Check latency inside the server.\n# TYPE deadbolt_check_duration_seconds histogram");
        let mut cumulative = 0;
        for (b, a) in BUCKETS.iter().zip(&self.latency) {
            cumulative += g(a);
            let _ = writeln!(
                out,
                "deadbolt_check_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += g(&self.latency[BUCKETS.len()]);
        let _ = writeln!(
            out,
            "deadbolt_check_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "deadbolt_check_duration_seconds_sum {}",
            g(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "deadbolt_check_duration_seconds_count {cumulative}");
        let _ = writeln!(out, "# HELP deadbolt_cache_lookups_total Check-path cache lookups.\n# TYPE deadbolt_cache_lookups_total counter");
        let _ = writeln!(
            out,
            "deadbolt_cache_lookups_total{{result=\"hit\"}} {}",
            g(&self.cache_hits)
        );
        let _ = writeln!(
            out,
            "deadbolt_cache_lookups_total{{result=\"miss\"}} {}",
            g(&self.cache_misses)
        );
        let _ = writeln!(out, "# HELP deadbolt_attempt_queue_depth Attempts waiting to be written.\n# TYPE deadbolt_attempt_queue_depth gauge");
        let _ = writeln!(
            out,
            "deadbolt_attempt_queue_depth {}",
            self.attempt_queue_depth.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP deadbolt_attempts_written_total Attempts committed to the store.\n# TYPE deadbolt_attempts_written_total counter");
        let _ = writeln!(
            out,
            "deadbolt_attempts_written_total {}",
            g(&self.attempts_written)
        );
        out
    }
}
