//! A small log-linear latency histogram (HdrHistogram-style bucketing).
//!
//! Values are nanoseconds. Values below 128 get one bucket each; above that
//! every power-of-two range is split into 64 linear sub-buckets, so the
//! relative error of a reported quantile is below 1/64 (~1.6 %). The exact
//! minimum, maximum and sum are tracked separately.

/// Sub-buckets per power of two (must be a power of two).
const SUB: u64 = 64;
const SUB_BITS: u32 = SUB.trailing_zeros();
/// Enough buckets for any `u64`.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (v >> shift) - SUB; // in [0, SUB)
    ((shift as u64 + 1) * SUB + sub) as usize
}

/// Inclusive upper bound of the values that land in bucket `idx`.
fn upper_bound(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < 2 * SUB {
        return idx;
    }
    let shift = idx / SUB - 1;
    let sub = idx % SUB + SUB;
    // (sub + 1) << shift overflows u64 for the very last bucket.
    let end = ((sub + 1) as u128) << shift;
    u64::try_from(end - 1).unwrap_or(u64::MAX)
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[index_of(v)] += 1;
        self.total += 1;
        self.sum += v as u128;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Value at quantile `q` (0.0..=1.0): the upper bound of the bucket that
    /// holds the ceil(q * n)-th smallest sample, clamped to the exact max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_bound(idx).min(self.max).max(self.min());
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        let mut prev = 0usize;
        for v in 0..1_000_000u64 {
            let i = index_of(v);
            assert!(i == prev || i == prev + 1, "gap at {v}");
            assert!(upper_bound(i) >= v);
            if i > 0 {
                assert!(upper_bound(i - 1) < v);
            }
            prev = i;
        }
        assert!(index_of(u64::MAX) < BUCKETS);
        assert_eq!(upper_bound(index_of(u64::MAX)), u64::MAX);
    }

    #[test]
    fn relative_error_is_small() {
        for v in [
            1u64,
            127,
            128,
            1_000,
            54_321,
            1_000_000,
            987_654_321,
            1 << 50,
        ] {
            let ub = upper_bound(index_of(v));
            assert!(ub >= v);
            assert!((ub - v) as f64 <= v as f64 / 64.0 + 1.0, "{v} -> {ub}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5_000_000.0).abs() / 5_000_000.0 < 0.02, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 9_900_000.0).abs() / 9_900_000.0 < 0.02, "{p99}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert_eq!(h.min(), 1000);
        assert_eq!(h.total, 10_000);

        let mut other = Histogram::new();
        other.record(50_000_000);
        h.merge(&other);
        assert_eq!(h.max(), 50_000_000);
        assert_eq!(h.total, 10_001);
        assert_eq!(h.quantile(1.0), 50_000_000);
    }
}
