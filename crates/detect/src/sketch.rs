//! A small HyperLogLog for distinct counts past the exact bound, in two generations so it
//! slides with the window.

/// Register index bits: 2^10 registers, a standard error of about 3.3%.
const PRECISION: u32 = 10;
const REGISTERS: usize = 1 << PRECISION;

/// A HyperLogLog sketch over 64-bit hashes (Flajolet et al. 2007, with linear counting for
/// small cardinalities).
#[derive(Debug, Clone)]
pub(crate) struct HyperLogLog {
    registers: Box<[u8]>,
}

impl HyperLogLog {
    pub(crate) fn new() -> HyperLogLog {
        HyperLogLog {
            registers: vec![0; REGISTERS].into_boxed_slice(),
        }
    }

    /// Adds a value by its (well-mixed) hash.
    pub(crate) fn insert(&mut self, hash: u64) {
        let index = (hash >> (64 - PRECISION)) as usize;
        let rest = (hash << PRECISION) | (1 << (PRECISION - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        let register = &mut self.registers[index];
        *register = (*register).max(rank);
    }

    /// Estimated distinct values in the union of `sketches`.
    pub(crate) fn estimate_union(sketches: &[&HyperLogLog]) -> f64 {
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for index in 0..REGISTERS {
            let rank = sketches
                .iter()
                .map(|sketch| sketch.registers[index])
                .max()
                .unwrap_or(0);
            if rank == 0 {
                zeros += 1;
            }
            sum += 2f64.powi(-i32::from(rank));
        }
        let registers = REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / registers);
        let raw = alpha * registers * registers / sum;
        if raw <= 2.5 * registers && zeros > 0 {
            registers * (registers / zeros as f64).ln()
        } else {
            raw
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.registers.len()
    }
}

/// Two sketches, each covering half a window; the estimate is their union, so it covers
/// between half a window and a whole window of history.
#[derive(Debug, Clone)]
pub(crate) struct SlidingSketch {
    current: HyperLogLog,
    previous: HyperLogLog,
    generation: i64,
    half_window_ns: i64,
}

impl SlidingSketch {
    pub(crate) fn new(window_ns: i64, at_ns: i64) -> SlidingSketch {
        let half_window_ns = (window_ns / 2).max(1);
        SlidingSketch {
            current: HyperLogLog::new(),
            previous: HyperLogLog::new(),
            generation: at_ns.div_euclid(half_window_ns),
            half_window_ns,
        }
    }

    /// Adds a value seen at `at_ns`.
    pub(crate) fn insert(&mut self, hash: u64, at_ns: i64) {
        let generation = at_ns.div_euclid(self.half_window_ns);
        if generation > self.generation {
            if generation == self.generation + 1 {
                std::mem::swap(&mut self.previous, &mut self.current);
                self.current.registers.fill(0);
            } else {
                self.previous.registers.fill(0);
                self.current.registers.fill(0);
            }
            self.generation = generation;
        }
        self.current.insert(hash);
    }

    /// Estimated distinct values in the window.
    pub(crate) fn estimate(&self) -> u64 {
        HyperLogLog::estimate_union(&[&self.current, &self.previous]).round() as u64
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.current.heap_bytes() + self.previous.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    /// A fixed-key hasher: the estimates are the same every run (a random seed made this
    /// test fail about once in a few hundred runs, at three standard errors).
    fn fixed() -> std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher> {
        std::hash::BuildHasherDefault::default()
    }

    #[test]
    fn estimate_is_within_ten_percent() {
        let build = fixed();
        for truth in [10u64, 1_000, 50_000] {
            let mut sketch = HyperLogLog::new();
            for value in 0..truth {
                sketch.insert(build.hash_one(value));
            }
            let estimate = HyperLogLog::estimate_union(&[&sketch]);
            let error = (estimate - truth as f64).abs() / truth as f64;
            assert!(error < 0.1, "truth {truth} estimate {estimate}");
        }
    }

    #[test]
    fn sliding_sketch_forgets_values_older_than_a_window() {
        let build = fixed();
        let mut sketch = SlidingSketch::new(100, 0);
        for value in 0..500u64 {
            sketch.insert(build.hash_one(value), 10);
        }
        assert!(sketch.estimate() > 400);
        sketch.insert(build.hash_one(9999u64), 60);
        assert!(sketch.estimate() > 400, "previous half still counts");
        sketch.insert(build.hash_one(9999u64), 110);
        assert!(sketch.estimate() < 5);
    }
}
