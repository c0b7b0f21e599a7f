//! Time as the node sees it: the moment a loop turn began, read once by the
//! shell and passed in with every call, and its conversion to the ticks the
//! connections and the timer wheel count in.

use std::time::{Duration, Instant};

use super::timer_wheel::{Tick, TICK_MS};

/// The time of one loop turn: the monotonic instant, for every deadline,
/// and the wall clock (ms since the Unix epoch), which server messages
/// carry as `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub at: Instant,
    pub wall_ms: u64,
}

/// Ticks since the node began, and the turn being handled.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
    now: Now,
    tick: Tick,
}

impl Clock {
    pub fn new(now: Now) -> Clock {
        Clock {
            epoch: now.at,
            now,
            tick: 0,
        }
    }

    /// Takes the time of the call being handled; time never goes back.
    /// Returns whether it is a new turn's (a later time than the last
    /// call's: the shell reads the clock once per turn).
    pub fn set(&mut self, now: Now) -> bool {
        if now.at <= self.now.at {
            return false;
        }
        self.now = now;
        self.tick = self.tick_of(now.at);
        true
    }

    pub fn at(&self) -> Instant {
        self.now.at
    }

    pub fn wall_ms(&self) -> u64 {
        self.now.wall_ms
    }

    pub fn tick(&self) -> Tick {
        self.tick
    }

    fn tick_of(&self, at: Instant) -> Tick {
        (at.saturating_duration_since(self.epoch).as_millis() as u64 / TICK_MS) as Tick
    }

    pub fn instant_of(&self, tick: Tick) -> Instant {
        self.epoch + Duration::from_millis(u64::from(tick) * TICK_MS)
    }
}

/// Converts a duration to the ticks to add to the current tick for a
/// deadline. The current tick is rounded down, so one more tick (and the
/// duration rounded up) keeps every timer from firing early; it may fire up
/// to two ticks late.
pub fn ticks(d: Duration) -> Tick {
    // Capped at about 3 years, so adding it to the current tick cannot
    // overflow within a decade of uptime.
    let ticks = (d.as_millis() as u64).div_ceil(TICK_MS) + 1;
    ticks.min(1 << 30) as Tick
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_never_fire_early() {
        assert_eq!(ticks(Duration::ZERO), 1);
        assert_eq!(ticks(Duration::from_millis(100)), 2);
        assert_eq!(ticks(Duration::from_millis(101)), 3);
        assert_eq!(ticks(Duration::from_secs(1 << 40)), 1 << 30);
    }

    #[test]
    fn the_clock_counts_ticks_from_its_start_and_never_goes_back() {
        let t0 = Instant::now();
        let mut clock = Clock::new(Now { at: t0, wall_ms: 5 });
        assert!(clock.set(Now {
            at: t0 + Duration::from_millis(250),
            wall_ms: 255,
        }));
        assert_eq!((clock.tick(), clock.wall_ms()), (2, 255));
        assert_eq!(clock.instant_of(2), t0 + Duration::from_millis(200));
        assert!(!clock.set(Now { at: t0, wall_ms: 0 }));
        assert_eq!(clock.tick(), 2, "an earlier time is ignored");
    }
}
