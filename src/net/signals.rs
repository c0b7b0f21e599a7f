//! SIGINT and SIGTERM: the handler only writes to signal-hook's self-pipe;
//! the supervisor loop reads it and decides, here, what each signal means.

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// Registers for SIGINT and SIGTERM. From here on those signals no longer
/// kill the process; they arrive as readiness on the returned source.
pub fn install() -> io::Result<Signals> {
    Signals::new([SIGINT, SIGTERM])
}

pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// What one more stop signal means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// The first: start draining.
    Drain,
    /// Counted (`count` of `force_at`); the drain goes on.
    Counted { count: u32, force_at: u32 },
    /// The `--force-signals`-th: exit at once with 130.
    Force { count: u32 },
}

/// Counts stop signals for the whole process: SIGINT and SIGTERM share one
/// count.
#[derive(Debug, Clone)]
pub struct SignalCount {
    count: u32,
    force_at: u32,
}

impl SignalCount {
    pub fn new(force_at: u32) -> SignalCount {
        SignalCount { count: 0, force_at }
    }

    pub fn record(&mut self) -> Meaning {
        self.count = self.count.saturating_add(1);
        if self.count >= self.force_at {
            Meaning::Force { count: self.count }
        } else if self.count == 1 {
            Meaning::Drain
        } else {
            Meaning::Counted {
                count: self.count,
                force_at: self.force_at,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_signal_forces_by_default() {
        let mut count = SignalCount::new(3);
        assert_eq!(count.record(), Meaning::Drain);
        assert_eq!(
            count.record(),
            Meaning::Counted {
                count: 2,
                force_at: 3
            }
        );
        assert_eq!(count.record(), Meaning::Force { count: 3 });
    }

    #[test]
    fn force_at_two_and_five() {
        let mut count = SignalCount::new(2);
        assert_eq!(count.record(), Meaning::Drain);
        assert_eq!(count.record(), Meaning::Force { count: 2 });
        let mut count = SignalCount::new(5);
        count.record();
        for n in 2..5 {
            assert_eq!(
                count.record(),
                Meaning::Counted {
                    count: n,
                    force_at: 5
                }
            );
        }
        assert_eq!(count.record(), Meaning::Force { count: 5 });
    }
}
