//! Latency statistics: a log-linear histogram (HDR-like) with a fixed
//! memory cost whatever the number of samples, and nearest-rank
//! percentiles within 0.4 % of the exact ones.

/// Sub-buckets per power of two above the exact range: 2^7 = 128, so a
/// bucket is at most 1/128 of its value wide and its midpoint is within
/// 1/256 (0.39 %) of any value in it.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this are counted exactly, one bucket each.
const EXACT: u64 = 2 * SUB;
const BUCKETS: usize = EXACT as usize + (64 - SUB_BITS as usize - 1) * SUB as usize;

pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let shift = exp - SUB_BITS; // >= 1
    let mantissa = v >> shift; // in [SUB, 2 * SUB)
    EXACT as usize + (shift as usize - 1) * SUB as usize + (mantissa - SUB) as usize
}

/// The value a bucket stands for: its midpoint (exact buckets: the value).
fn value_of(i: usize) -> u64 {
    if (i as u64) < EXACT {
        return i as u64;
    }
    let rel = i - EXACT as usize;
    let shift = (rel / SUB as usize) as u32 + 1;
    let mantissa = SUB + (rel % SUB as usize) as u64;
    let low = mantissa << shift;
    low + ((1u64 << shift) - 1) / 2
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Nearest-rank percentile (`p` in 0..=100): the smallest recorded value
    /// such that at least p % of the samples are not above it. None when
    /// empty. Never above the true maximum.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let rank = rank.min(self.total);
        if rank == self.total {
            return Some(self.max);
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(value_of(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Rng;

    fn exact(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank.min(sorted.len()) - 1]
    }

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        let mut last = 0;
        for v in 0..1_000_000u64 {
            let i = index(v);
            assert!(i == last || i == last + 1, "v {v}");
            last = i;
        }
        assert!(index(u64::MAX) < BUCKETS);
        for i in 0..BUCKETS {
            assert_eq!(index(value_of(i)), i, "bucket {i}");
        }
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(90.0), Some(90));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        assert_eq!(h.max(), 100);
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn empty_has_no_percentiles() {
        assert_eq!(Histogram::default().percentile(50.0), None);
    }

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut rng = Rng::new(42);
        let mut h = Histogram::default();
        let mut all = Vec::new();
        for _ in 0..200_000 {
            // Log-uniform over 1 µs .. ~17 s.
            let exp = rng.next_u64() % 24;
            let v = (1u64 << exp) + rng.next_u64() % (1u64 << exp);
            h.record(v);
            all.push(v);
        }
        all.sort_unstable();
        for p in [1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            let want = exact(&all, p) as f64;
            let got = h.percentile(p).unwrap() as f64;
            assert!(
                (got - want).abs() <= want * 0.01,
                "p{p}: got {got}, exact {want}"
            );
        }
        assert_eq!(h.percentile(100.0), Some(*all.last().unwrap()));
    }

    #[test]
    fn single_large_sample() {
        let mut h = Histogram::default();
        h.record(123_456_789);
        let p = h.percentile(50.0).unwrap() as f64;
        assert!((p - 123_456_789.0).abs() < 123_456_789.0 * 0.005);
    }
}
