//! A small non-cryptographic generator for the instance nonce and reconnect
//! jitter, seeded from the kernel.

use std::io::Read;

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn from_os() -> Rng {
        let mut seed = [0u8; 8];
        let from_kernel =
            std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
        let mut state = u64::from_ne_bytes(seed);
        if from_kernel.is_err() || state == 0 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            state = nanos ^ (u64::from(std::process::id()) << 32) | 1;
        }
        Rng(state)
    }

    /// A generator that always gives the same values for the same seed:
    /// for tests, and for a node whose shell seeded it from the kernel.
    pub fn seeded(seed: u64) -> Rng {
        // xorshift never leaves 0: any other state will do.
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// xorshift64*.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_below_bound_and_varies() {
        let mut rng = Rng::from_os();
        let values: Vec<u64> = (0..1000).map(|_| rng.below(10)).collect();
        assert!(values.iter().all(|v| *v < 10));
        assert!(values.iter().any(|v| *v != values[0]));
        assert_eq!(rng.below(0), 0);
    }
}
