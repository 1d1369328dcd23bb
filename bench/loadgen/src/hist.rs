//! Log-linear histogram of nanosecond values: exact below 128 ns, then 64
//! sub-buckets per power of two (about 1.6% resolution). Fixed size, so
//! recording never allocates.

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = 2 * SUB + (63 - SUB_BITS as usize) * SUB;

#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < 2 * SUB as u64 {
        v as usize
    } else {
        let e = 63 - v.leading_zeros();
        let shift = e - SUB_BITS;
        let m = (v >> shift) as usize;
        2 * SUB + (e - SUB_BITS - 1) as usize * SUB + (m - SUB)
    }
}

fn value(idx: usize) -> u64 {
    if idx < 2 * SUB {
        idx as u64
    } else {
        let k = idx - 2 * SUB;
        let shift = (k / SUB) as u32 + 1;
        let m = (SUB + k % SUB) as u64;
        (m << shift) + (1u64 << shift) / 2
    }
}

impl Hist {
    pub fn new() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.total += 1;
        if ns > self.max {
            self.max = ns;
        }
    }

    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.total += o.total;
        self.max = self.max.max(o.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), in nanoseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let want = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= want {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_within_resolution() {
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            65_432,
            1 << 40,
            u64::MAX / 2,
        ] {
            let i = index(v);
            assert!(i < BUCKETS);
            let back = value(i) as f64;
            assert!(
                (back - v as f64).abs() <= v as f64 / 60.0 + 1.0,
                "{v} -> {i} -> {back}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() < 10_000.0, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() < 20_000.0, "{p99}");
    }
}
