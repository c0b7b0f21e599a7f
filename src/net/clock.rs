//! The shell's one way to read the clock: the monotonic instant, for every
//! deadline, and the wall clock that messages carry. A worker reads it once
//! per loop turn (and once more for how long to sleep), the supervisor
//! once per turn of its own.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::node::Now;

pub fn now() -> Now {
    Now {
        at: Instant::now(),
        wall_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    }
}
