//! Per-source token buckets on the injected clock.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: DateTime<Utc>,
}

/// Admits `rate` requests per second per source, with a burst of one second's worth.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `Ok(())` to admit, or `Err(seconds to wait)`.
    pub fn check(&self, source_id: &str, rate: u32, now: DateTime<Utc>) -> Result<(), u64> {
        let rate = f64::from(rate.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(source_id.to_owned()).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let elapsed = (now - bucket.updated)
            .num_microseconds()
            .unwrap_or(0)
            .max(0) as f64
            / 1e6;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn bucket_refills_with_the_clock() {
        let limiter = RateLimiter::default();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert!(limiter.check("s", 2, t0).is_ok());
        assert!(limiter.check("s", 2, t0).is_ok());
        assert_eq!(limiter.check("s", 2, t0), Err(1));
        assert!(
            limiter.check("other", 2, t0).is_ok(),
            "sources are independent"
        );
        assert!(limiter
            .check("s", 2, t0 + Duration::milliseconds(500))
            .is_ok());
        assert!(limiter
            .check("s", 2, t0 + Duration::milliseconds(500))
            .is_err());
    }
}
