//! Per-application rate limit: a token bucket each, refilled continuously.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, DateTime<Utc>)>>,
}

impl RateLimiter {
    /// `per_second == 0` turns the limit off.
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            burst: per_second * 2.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn allow(&self, app_id: &str, now: DateTime<Utc>) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = buckets
            .entry(app_id.to_string())
            .or_insert((self.burst, now));
        let elapsed = (now - *last).num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6;
        *tokens = (*tokens + elapsed * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn bucket_empties_and_refills() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let r = RateLimiter::new(2);
        assert!((0..4).all(|_| r.allow("a", t)), "burst of twice the rate");
        assert!(!r.allow("a", t));
        assert!(r.allow("b", t), "buckets are per application");
        assert!(r.allow("a", t + Duration::milliseconds(500)));
        assert!(!r.allow("a", t + Duration::milliseconds(500)));
        assert!(RateLimiter::new(0).allow("a", t));
    }
}
