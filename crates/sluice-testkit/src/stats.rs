//! Counters and a delivery-latency histogram for benchmarks (`GET /_test/stats`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// 1 ms buckets below this many ms (60 s).
const FINE_MS: u64 = 60_000;
/// Then 1 s buckets up to this many ms (1 h); anything above lands in one overflow bucket.
const COARSE_END_MS: u64 = 3_600_000;
const COARSE_WIDTH_MS: u64 = 1_000;
const BUCKETS: usize = (FINE_MS + (COARSE_END_MS - FINE_MS) / COARSE_WIDTH_MS + 1) as usize;

/// A fixed-size latency histogram in milliseconds: exact to 1 ms below 60 s, to 1 s below 1 h.
/// Memory is constant (~500 KB) however many samples are recorded.
pub(crate) struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    sum: u64,
    max: u64,
}

impl LatencyHistogram {
    pub(crate) fn new() -> Self {
        LatencyHistogram {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }

    fn index(ms: u64) -> usize {
        if ms < FINE_MS {
            ms as usize
        } else if ms < COARSE_END_MS {
            (FINE_MS + (ms - FINE_MS) / COARSE_WIDTH_MS) as usize
        } else {
            BUCKETS - 1
        }
    }

    pub(crate) fn record(&mut self, ms: u64) {
        self.buckets[Self::index(ms)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(ms);
        self.max = self.max.max(ms);
    }

    /// The value at quantile `q` (0..=1): the bucket's ms below 60 s, the bucket's upper bound
    /// (at most the maximum) above; 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let i = i as u64;
                return if i < FINE_MS {
                    i
                } else if i as usize == BUCKETS - 1 {
                    self.max
                } else {
                    (FINE_MS + (i - FINE_MS + 1) * COARSE_WIDTH_MS - 1).min(self.max)
                };
            }
        }
        self.max
    }
}

/// What `GET /_test/stats` reports; `POST /_test/stats/reset` zeroes it.
pub(crate) struct Stats {
    /// Requests answered, except `/_test/*` control calls.
    requests: u64,
    status_counts: BTreeMap<u16, u64>,
    pub(crate) accepted_ops: u64,
    pub(crate) duplicate_ids: u64,
    /// Wall-clock ms at acceptance minus the ULID time part of the event `id`.
    pub(crate) latency: LatencyHistogram,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            requests: 0,
            status_counts: BTreeMap::new(),
            accepted_ops: 0,
            duplicate_ids: 0,
            latency: LatencyHistogram::new(),
        }
    }

    pub(crate) fn answered(&mut self, status: u16) {
        self.requests += 1;
        *self.status_counts.entry(status).or_default() += 1;
    }

    pub(crate) fn to_json(&self) -> Value {
        let status_counts: serde_json::Map<String, Value> = self
            .status_counts
            .iter()
            .map(|(status, n)| (status.to_string(), json!(n)))
            .collect();
        let h = &self.latency;
        let mean = if h.count == 0 {
            0.0
        } else {
            ((h.sum as f64 / h.count as f64) * 10.0).round() / 10.0
        };
        json!({
            "requests": self.requests,
            "accepted_ops": self.accepted_ops,
            "duplicate_ids": self.duplicate_ids,
            "status_counts": status_counts,
            "latency_ms": {
                "count": h.count,
                "mean": mean,
                "p50": h.quantile(0.50),
                "p90": h.quantile(0.90),
                "p99": h.quantile(0.99),
                "max": h.max,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_below_a_minute_and_bounded_above() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), 0);
        for ms in 1..=100 {
            h.record(ms);
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.9), 90);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.quantile(1.0), 100);
        h.record(61_500);
        assert_eq!(h.quantile(1.0), 61_500, "capped at the maximum");
        h.record(10 * 3_600_000);
        assert_eq!(h.max, 36_000_000);
        assert_eq!(h.quantile(1.0), 36_000_000);
        assert_eq!(h.buckets.len(), BUCKETS);
    }
}
