//! Counters for `/metrics`, in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds of the check latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

// Where each counter sits in a shard.
const LOCKED: usize = 0;
const UNLOCKED: usize = 1;
const ERRORS: usize = 2;
const CACHE_HITS: usize = ERRORS + ERROR_STATUSES.len();
const CACHE_MISSES: usize = CACHE_HITS + 1;
const LATENCY: usize = CACHE_MISSES + 1;
const LATENCY_SUM_US: usize = LATENCY + BUCKETS.len() + 1;
const QUEUE_DEPTH: usize = LATENCY_SUM_US + 1;
const ATTEMPTS_WRITTEN: usize = QUEUE_DEPTH + 1;
const ATTEMPTS_DROPPED: usize = ATTEMPTS_WRITTEN + 1;
const LOG_READS: usize = ATTEMPTS_DROPPED + 1;
const ALERT_EMAILS_SENT: usize = LOG_READS + 1;
const ALERT_EMAILS_FAILED: usize = ALERT_EMAILS_SENT + 1;
const WEBHOOKS_DELIVERED: usize = ALERT_EMAILS_FAILED + 1;
const WEBHOOKS_FAILED: usize = WEBHOOKS_DELIVERED + 1;
const ALERT_READ_HANDED: usize = WEBHOOKS_FAILED + 1;
const ALERT_READ_STORE: usize = ALERT_READ_HANDED + 1;
const RUNTIME_LAG_US: usize = ALERT_READ_STORE + 1;
const RUNTIME_STALLS: usize = RUNTIME_LAG_US + 1;
const COUNTERS: usize = RUNTIME_STALLS + 1;

/// How often the runtime probe asks to be woken ([`probe_runtime`]).
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// A wake-up this late or later counts as a stall.
const STALL: Duration = Duration::from_millis(50);

/// Slots per [`Metrics`]: threads beyond this many share one.
const SHARDS: usize = 16;

/// One thread's counters, on cache lines of their own.
#[repr(align(128))]
struct Shard([AtomicI64; COUNTERS]);

/// The server's counters. Every check counts several things; counted into one shared place, the
/// cache lines holding them would travel between the cores at each check. So each thread counts
/// into its own shard, and reading sums the shards.
pub struct Metrics {
    shards: Box<[Shard]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Shard(std::array::from_fn(|_| AtomicI64::new(0))))
                .collect(),
        }
    }
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

const ERROR_STATUSES: [u16; 6] = [400, 401, 413, 429, 503, 500];

impl Metrics {
    fn add(&self, counter: usize, n: i64) {
        let slot = SLOT.with(|s| *s);
        self.shards[slot].0[counter].fetch_add(n, Ordering::Relaxed);
    }
    fn get(&self, counter: usize) -> i64 {
        self.shards
            .iter()
            .map(|s| s.0[counter].load(Ordering::Relaxed))
            .sum()
    }

    pub fn decision(&self, locked: bool) {
        self.add(if locked { LOCKED } else { UNLOCKED }, 1);
    }
    pub fn error(&self, status: u16) {
        let i = ERROR_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(ERROR_STATUSES.len() - 1);
        self.add(ERRORS + i, 1);
    }
    pub fn cache_hit(&self) {
        self.add(CACHE_HITS, 1);
    }
    pub fn cache_miss(&self) {
        self.add(CACHE_MISSES, 1);
    }
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.add(LATENCY + i, 1);
        self.add(LATENCY_SUM_US, d.as_micros() as i64);
    }
    /// Attempts entered (`n > 0`) or left (`n < 0`) the queue.
    pub fn queued(&self, n: i64) {
        self.add(QUEUE_DEPTH, n);
    }
    pub fn written(&self, n: i64) {
        self.add(ATTEMPTS_WRITTEN, n);
    }
    /// Attempts that will not be recorded (the queue stayed full, or shutdown with the store
    /// failing).
    pub fn dropped(&self, n: i64) {
        self.add(ATTEMPTS_DROPPED, n);
    }

    /// An alert email the relay took (`true`), or a try of one that failed.
    pub fn alert_email(&self, sent: bool) {
        self.add(
            if sent {
                ALERT_EMAILS_SENT
            } else {
                ALERT_EMAILS_FAILED
            },
            1,
        );
    }

    /// A webhook delivery that the receiver took (`true`), or a try of one that failed.
    pub fn webhook(&self, delivered: bool) {
        self.add(
            if delivered {
                WEBHOOKS_DELIVERED
            } else {
                WEBHOOKS_FAILED
            },
            1,
        );
    }

    /// Blocked attempts the alert worker took: handed over by this process's attempt writer
    /// (`handed`), or read from the store (written by another process, or not handed over).
    pub fn alert_attempts_read(&self, handed: bool, n: usize) {
        self.add(
            if handed {
                ALERT_READ_HANDED
            } else {
                ALERT_READ_STORE
            },
            n as i64,
        );
    }

    /// The check path read the change log: a change made by another process (the CLI, another
    /// replica, SQL by hand); this process's own changes are applied without a read.
    pub fn log_read(&self) {
        self.add(LOG_READS, 1);
    }
    pub fn log_reads(&self) -> i64 {
        self.get(LOG_READS)
    }

    /// The runtime probe woke `late` after it asked to.
    pub fn runtime_late(&self, late: Duration) {
        self.add(RUNTIME_LAG_US, late.as_micros() as i64);
        if late >= STALL {
            self.add(RUNTIME_STALLS, 1);
        }
    }

    /// Attempts waiting to be written (queued, or in a write not yet committed).
    pub fn queue_depth(&self) -> i64 {
        self.get(QUEUE_DEPTH)
    }

    pub fn render(&self) -> String {
        let g = |counter: usize| self.get(counter);
        let mut out = String::new();
        let _ = writeln!(out, "# HELP deadbolt_checks_total Checks answered with a decision.\n# TYPE deadbolt_checks_total counter");
        let _ = writeln!(
            out,
            "deadbolt_checks_total{{decision=\"locked\"}} {}",
            g(LOCKED)
        );
        let _ = writeln!(
            out,
            "deadbolt_checks_total{{decision=\"unlocked\"}} {}",
            g(UNLOCKED)
        );
        let _ = writeln!(out, "# HELP deadbolt_check_errors_total Checks answered without a decision, by status.\n# TYPE deadbolt_check_errors_total counter");
        for (i, s) in ERROR_STATUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "deadbolt_check_errors_total{{status=\"{s}\"}} {}",
                g(ERRORS + i)
            );
        }
        let _ = writeln!(out, "# HELP deadbolt_check_duration_seconds Check latency inside the server.\n# TYPE deadbolt_check_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += g(LATENCY + i);
            let _ = writeln!(
                out,
                "deadbolt_check_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += g(LATENCY + BUCKETS.len());
        let _ = writeln!(
            out,
            "deadbolt_check_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "deadbolt_check_duration_seconds_sum {}",
            g(LATENCY_SUM_US) as f64 / 1e6
        );
        let _ = writeln!(out, "deadbolt_check_duration_seconds_count {cumulative}");
        let _ = writeln!(out, "# HELP deadbolt_cache_lookups_total Check-path cache lookups.\n# TYPE deadbolt_cache_lookups_total counter");
        let _ = writeln!(
            out,
            "deadbolt_cache_lookups_total{{result=\"hit\"}} {}",
            g(CACHE_HITS)
        );
        let _ = writeln!(
            out,
            "deadbolt_cache_lookups_total{{result=\"miss\"}} {}",
            g(CACHE_MISSES)
        );
        let _ = writeln!(out, "# HELP deadbolt_attempt_queue_depth Attempts waiting to be written.\n# TYPE deadbolt_attempt_queue_depth gauge");
        let _ = writeln!(out, "deadbolt_attempt_queue_depth {}", self.queue_depth());
        let _ = writeln!(out, "# HELP deadbolt_attempts_written_total Attempts committed to the store.\n# TYPE deadbolt_attempts_written_total counter");
        let _ = writeln!(
            out,
            "deadbolt_attempts_written_total {}",
            g(ATTEMPTS_WRITTEN)
        );
        let _ = writeln!(out, "# HELP deadbolt_check_log_reads_total Reads of the change log by the check path: changes made by another process (the CLI, another replica, SQL by hand). This server's own changes are applied without one.\n# TYPE deadbolt_check_log_reads_total counter");
        let _ = writeln!(out, "deadbolt_check_log_reads_total {}", g(LOG_READS));
        let _ = writeln!(out, "# HELP deadbolt_attempts_dropped_total Attempts answered but not recorded (queue full past its wait, or shutdown with the store failing).\n# TYPE deadbolt_attempts_dropped_total counter");
        let _ = writeln!(
            out,
            "deadbolt_attempts_dropped_total {}",
            g(ATTEMPTS_DROPPED)
        );
        let _ = writeln!(out, "# HELP deadbolt_alert_emails_total Tries of alert emails: taken by the mail relay, or failed (tried again later).\n# TYPE deadbolt_alert_emails_total counter");
        let _ = writeln!(
            out,
            "deadbolt_alert_emails_total{{result=\"sent\"}} {}",
            g(ALERT_EMAILS_SENT)
        );
        let _ = writeln!(
            out,
            "deadbolt_alert_emails_total{{result=\"failed\"}} {}",
            g(ALERT_EMAILS_FAILED)
        );
        let _ = writeln!(out, "# HELP deadbolt_webhook_deliveries_total Tries of webhook deliveries: taken by the receiver (2xx), or failed (tried again, or given up).\n# TYPE deadbolt_webhook_deliveries_total counter");
        let _ = writeln!(
            out,
            "deadbolt_webhook_deliveries_total{{result=\"delivered\"}} {}",
            g(WEBHOOKS_DELIVERED)
        );
        let _ = writeln!(
            out,
            "deadbolt_webhook_deliveries_total{{result=\"failed\"}} {}",
            g(WEBHOOKS_FAILED)
        );
        let _ = writeln!(out, "# HELP deadbolt_alert_attempts_read_total Blocked attempts the alert worker took: handed over by this server's attempt writer, or read back from the store (another process's, or not handed over).\n# TYPE deadbolt_alert_attempts_read_total counter");
        let _ = writeln!(
            out,
            "deadbolt_alert_attempts_read_total{{from=\"writer\"}} {}",
            g(ALERT_READ_HANDED)
        );
        let _ = writeln!(
            out,
            "deadbolt_alert_attempts_read_total{{from=\"store\"}} {}",
            g(ALERT_READ_STORE)
        );
        let _ = writeln!(out, "# HELP deadbolt_runtime_lag_seconds_total How late a timer set every 10 ms fired, summed (about 1 ms each is the timer's own granularity): while a request waits for a thread, so does the timer. Grows fast on a saturated machine, or when some work holds a thread without yielding.\n# TYPE deadbolt_runtime_lag_seconds_total counter");
        let _ = writeln!(
            out,
            "deadbolt_runtime_lag_seconds_total {}",
            g(RUNTIME_LAG_US) as f64 / 1e6
        );
        let _ = writeln!(out, "# HELP deadbolt_runtime_stalls_total Times that timer fired 50 ms or more late.\n# TYPE deadbolt_runtime_stalls_total counter");
        let _ = writeln!(out, "deadbolt_runtime_stalls_total {}", g(RUNTIME_STALLS));
        out
    }
}

/// Measures how long the runtime takes to get to a task that is ready: sleeps [`PROBE_EVERY`]
/// again and again and counts how late each wake-up came. A check waits as long for its thread,
/// so a server that answers slowly while its CPU time per check is unchanged shows it here.
pub async fn probe_runtime(metrics: std::sync::Arc<Metrics>) {
    loop {
        let asked = tokio::time::Instant::now();
        tokio::time::sleep(PROBE_EVERY).await;
        metrics.runtime_late(asked.elapsed().saturating_sub(PROBE_EVERY));
    }
}

/// The store's counters: how often the check path had to read the change log's position from
/// the database (on PostgreSQL, only while the change listener is not connected), and whether
/// the listener is.
pub fn render_store(out: &mut String, store: &deadbolt_store::Store) {
    let _ = writeln!(out, "# HELP deadbolt_store_position_reads_total Reads of the change log's position from the database by the check path (the rest were at hand: the change signal on SQLite, the change listener on PostgreSQL).\n# TYPE deadbolt_store_position_reads_total counter");
    let _ = writeln!(
        out,
        "deadbolt_store_position_reads_total {}",
        store.position_reads()
    );
    if let Some(up) = store.listening() {
        let _ = writeln!(out, "# HELP deadbolt_store_listener_up Whether the PostgreSQL change listener is connected and trusted (1), or checks read the position through (0).\n# TYPE deadbolt_store_listener_up gauge");
        let _ = writeln!(out, "deadbolt_store_listener_up {}", u8::from(up));
        let _ = writeln!(out, "# HELP deadbolt_store_writes_unconfirmed_total Changes acknowledged before every replica's change listener was seen to apply them (200 ms passed).\n# TYPE deadbolt_store_writes_unconfirmed_total counter");
        let _ = writeln!(
            out,
            "deadbolt_store_writes_unconfirmed_total {}",
            store.unconfirmed_writes()
        );
        let _ = writeln!(out, "# HELP deadbolt_store_listener_table_reads_total Changes that read change_listeners to learn that every replica's listener applied them, the listeners' announcements not saying so within 20 ms.\n# TYPE deadbolt_store_listener_table_reads_total counter");
        let _ = writeln!(
            out,
            "deadbolt_store_listener_table_reads_total {}",
            store.applied_reads()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Counts made on many threads (more than there are shards) all show, and a gauge raised on
    /// one thread and lowered on another comes back to zero.
    #[test]
    fn counts_from_every_thread_add_up() {
        let m = Arc::new(Metrics::default());
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|i| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.decision(i % 2 == 0);
                        m.queued(1);
                    }
                    m.observe(Duration::from_micros(300));
                    m.error(503);
                    m.error(418);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let n = (SHARDS + 3) as i64;
        assert_eq!(m.queue_depth(), n * 1000);
        let lower = std::thread::spawn({
            let m = m.clone();
            move || m.queued(-n * 1000)
        });
        lower.join().unwrap();
        let text = m.render();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} missing in {text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        let locked = ((SHARDS + 3).div_ceil(2) * 1000).to_string();
        assert_eq!(line("deadbolt_checks_total{decision=\"locked\"}"), locked);
        assert_eq!(
            line("deadbolt_check_errors_total{status=\"503\"}"),
            n.to_string()
        );
        assert_eq!(
            line("deadbolt_check_errors_total{status=\"500\"}"),
            n.to_string(),
            "an unlisted status counts as 500"
        );
        assert_eq!(
            line("deadbolt_check_duration_seconds_bucket{le=\"0.0005\"}"),
            n.to_string()
        );
        assert_eq!(
            line("deadbolt_check_duration_seconds_bucket{le=\"0.00025\"}"),
            "0"
        );
        assert_eq!(line("deadbolt_attempt_queue_depth"), "0");
    }

    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in {text}"))
    }

    /// Lateness adds up, and only a wake-up at least [`STALL`] late counts as a stall.
    #[test]
    fn runtime_lateness_is_summed_and_stalls_counted() {
        let m = Metrics::default();
        m.runtime_late(Duration::from_millis(1));
        m.runtime_late(STALL - Duration::from_micros(1));
        m.runtime_late(STALL);
        m.runtime_late(Duration::from_secs(2));
        let text = m.render();
        let lag = value(&text, "deadbolt_runtime_lag_seconds_total");
        // 1 ms + (50 ms - 1 µs) + 50 ms + 2 s.
        assert!((lag - 2.100_999).abs() < 1e-9, "{lag}");
        assert_eq!(value(&text, "deadbolt_runtime_stalls_total"), 2.0);
    }

    /// A task that holds the runtime's only thread without yielding shows in the probe's
    /// figures: the probe could not run meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn the_probe_sees_a_task_that_holds_the_thread() {
        let m = Arc::new(Metrics::default());
        let probe = tokio::spawn(probe_runtime(m.clone()));
        // Let the probe set its first timer.
        tokio::time::sleep(Duration::from_millis(30)).await;
        std::thread::sleep(Duration::from_millis(300));
        // The probe's next wake-up is the late one: give it the thread.
        tokio::time::sleep(Duration::from_millis(30)).await;
        probe.abort();
        let text = m.render();
        assert!(
            value(&text, "deadbolt_runtime_stalls_total") >= 1.0,
            "{text}"
        );
        assert!(
            value(&text, "deadbolt_runtime_lag_seconds_total") >= 0.25,
            "{text}"
        );
    }
}
