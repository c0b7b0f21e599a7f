//! The shutdown notice at broadcast speed. Every client's notice has the
//! same text but for its random `reconnect_after_ms`, so the delays are
//! drawn in steps of `STEP_MS`: each step's notice is encoded once, when a
//! client first draws it, and shared by every client that draws it, then
//! written straight to the sockets like a broadcast (see `Fanout::deliver`).

use std::sync::Arc;
use std::time::Duration;

use crate::app::lifecycle::{announced_timeout_s, reconnect_spread_ms};
use crate::app::protocol;
use crate::proto::frame::{encode_frame, Opcode};
use crate::rand::Rng;

/// The granularity of `reconnect_after_ms`: a 10 s spread is 1,000 steps,
/// fine enough to spread reconnects, few enough to encode in a millisecond
/// or two.
pub const STEP_MS: u64 = 10;

/// The notices of one drain moment, one frame per delay step, encoded on
/// first use.
pub struct Notices {
    timeout_s: u64,
    wall_ms: u64,
    frames: Vec<Option<Arc<[u8]>>>,
}

impl Notices {
    /// `left`: the time before the drain deadline; `wall_ms`: the time the
    /// notices carry.
    pub fn new(left: Duration, drain_timeout: Duration, wall_ms: u64) -> Notices {
        let spread = reconnect_spread_ms(drain_timeout);
        Notices {
            timeout_s: announced_timeout_s(left, drain_timeout),
            wall_ms,
            frames: vec![None; (spread / STEP_MS) as usize],
        }
    }

    /// A notice with a random delay within the spread.
    pub fn draw(&mut self, rng: &mut Rng) -> Arc<[u8]> {
        let step = rng.below(self.frames.len() as u64) as usize;
        let (timeout_s, wall_ms) = (self.timeout_s, self.wall_ms);
        let frame = self.frames[step].get_or_insert_with(|| {
            let json = protocol::shutdown_notice(timeout_s, step as u64 * STEP_MS, wall_ms);
            encode_frame(Opcode::Text, json.as_bytes()).into()
        });
        Arc::clone(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(frame: &[u8]) -> serde_json::Value {
        // A server text frame under 126 bytes has a 2-byte header; longer
        // ones (these) a 4-byte one.
        serde_json::from_slice(&frame[4..]).unwrap()
    }

    #[test]
    fn delays_are_random_steps_within_the_spread_and_frames_are_shared() {
        let mut notices = Notices::new(Duration::from_secs(60), Duration::from_secs(60), 0);
        let mut rng = Rng::from_os();
        let mut seen = std::collections::HashSet::new();
        let mut drawn = Vec::new();
        for _ in 0..5_000 {
            let frame = notices.draw(&mut rng);
            let v = parsed(&frame);
            assert_eq!(v["type"], "shutdown_notice");
            assert_eq!(v["drain_timeout_s"], 60);
            let delay = v["reconnect_after_ms"].as_u64().unwrap();
            assert!(delay < 10_000 && delay % STEP_MS == 0, "{delay}");
            seen.insert(delay);
            drawn.push(frame);
        }
        // 5,000 draws over 1,000 steps: most steps are seen, and no more
        // frames exist than steps.
        assert!(seen.len() > 900, "only {} distinct delays", seen.len());
        let distinct: std::collections::HashSet<*const u8> =
            drawn.iter().map(|f| f.as_ptr()).collect();
        assert_eq!(distinct.len(), seen.len());
    }

    #[test]
    fn a_short_drain_still_spreads_over_a_second() {
        let mut notices = Notices::new(Duration::ZERO, Duration::ZERO, 0);
        assert_eq!(notices.frames.len(), 100);
        let v = parsed(&notices.draw(&mut Rng::from_os()));
        assert_eq!(v["drain_timeout_s"], 0);
    }
}
