//! The periodic notification's timer. Only worker 0 runs it, so a
//! notification goes out once per process however many workers there are.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Periodic {
    every: Option<Duration>,
    next: Option<Instant>,
    count: u64,
}

impl Periodic {
    pub fn new(every: Option<Duration>, now: Instant) -> Periodic {
        Periodic {
            every,
            next: every.map(|every| now + every),
            count: 0,
        }
    }

    /// The number of the notification due at `now`, if one is; the next
    /// one is then a period later.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        let every = self.every?;
        if self.next.is_some_and(|at| now >= at) {
            self.next = Some(now + every);
            self.count += 1;
            return Some(self.count);
        }
        None
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_period_from_when_the_last_went_out() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut periodic = Periodic::new(Some(10 * s), t0);
        assert_eq!(periodic.next_deadline(), Some(t0 + 10 * s));
        assert_eq!(periodic.due(t0 + 9 * s), None);
        assert_eq!(periodic.due(t0 + 12 * s), Some(1));
        assert_eq!(periodic.next_deadline(), Some(t0 + 22 * s));
        assert_eq!(periodic.due(t0 + 22 * s), Some(2));
    }

    #[test]
    fn off_is_never_due() {
        let t0 = Instant::now();
        let mut periodic = Periodic::new(None, t0);
        assert_eq!(periodic.next_deadline(), None);
        assert_eq!(periodic.due(t0 + Duration::from_secs(3600)), None);
    }
}
