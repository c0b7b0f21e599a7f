//! A hashed timing wheel for per-connection deadlines (head timeout, idle,
//! ping, close linger): O(1) to arm, and a tick looks only at its own slot,
//! so ten thousand idle connections cost nothing between their deadlines.
//!
//! Entries are lazy: a connection that pushes its deadline later does not
//! touch the wheel; when the old entry comes due, the owner sees the new
//! deadline and arms again. Time is in ticks, given by the caller.

/// Tick length: fine enough for sub-second timeouts in tests, coarse enough
/// that one slot gathers many connections.
pub const TICK_MS: u64 = 100;
pub use crate::conn::Tick;
const SLOTS: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: u32,
    pub at: Tick,
}

#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    /// Every tick up to and including this one has been handed out.
    done: Tick,
    len: usize,
}

impl TimerWheel {
    pub fn new(now: Tick) -> TimerWheel {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            done: now,
            len: 0,
        }
    }

    /// Arms `key` for tick `at`; a tick already past fires on the next
    /// `advance`.
    pub fn schedule(&mut self, key: usize, at: Tick) {
        let at = at.max(self.done + 1);
        // Slab keys stay far below 2^32: each is an open descriptor.
        let key = key as u32;
        self.slots[at as usize % SLOTS].push(Entry { key, at });
        self.len += 1;
    }

    /// Moves time forward to `now`, appending every entry due by then to
    /// `due`.
    pub fn advance(&mut self, now: Tick, due: &mut Vec<Entry>) {
        if self.len == 0 {
            self.done = self.done.max(now);
            return;
        }
        // Past a full lap every slot is visited once; later ticks add nothing.
        let last = now.min(self.done + SLOTS as Tick);
        let mut tick = self.done + 1;
        while tick <= last {
            let slot = &mut self.slots[tick as usize % SLOTS];
            let before = slot.len();
            let mut i = 0;
            while i < slot.len() {
                if slot[i].at <= now {
                    due.push(slot.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            self.len -= before - slot.len();
            if slot.is_empty() && slot.capacity() > 64 {
                slot.shrink_to(8);
            }
            tick += 1;
        }
        self.done = self.done.max(now);
    }

    /// The earliest tick worth waking for, if anything is armed. It may find
    /// only entries of a later lap; `advance` then hands out nothing.
    pub fn next_tick(&self) -> Option<Tick> {
        if self.len == 0 {
            return None;
        }
        (self.done + 1..=self.done + SLOTS as Tick)
            .find(|t| !self.slots[*t as usize % SLOTS].is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(wheel: &mut TimerWheel, now: Tick) -> Vec<(u32, Tick)> {
        let mut due = Vec::new();
        wheel.advance(now, &mut due);
        let mut got: Vec<_> = due.into_iter().map(|e| (e.key, e.at)).collect();
        got.sort_unstable();
        got
    }

    #[test]
    fn fires_in_order_and_only_when_due() {
        let mut w = TimerWheel::new(0);
        w.schedule(1, 5);
        w.schedule(2, 3);
        w.schedule(3, 5);
        assert_eq!(w.next_tick(), Some(3));
        assert_eq!(fire(&mut w, 2), vec![]);
        assert_eq!(fire(&mut w, 3), vec![(2, 3)]);
        assert_eq!(fire(&mut w, 10), vec![(1, 5), (3, 5)]);
        assert_eq!(w.len, 0);
        assert_eq!(w.next_tick(), None);
    }

    #[test]
    fn entries_beyond_one_lap_wait_for_their_lap() {
        let mut w = TimerWheel::new(0);
        w.schedule(7, 3 + SLOTS as Tick);
        assert_eq!(fire(&mut w, 3), vec![]);
        assert_eq!(fire(&mut w, SLOTS as Tick), vec![]);
        assert_eq!(
            fire(&mut w, 3 + SLOTS as Tick),
            vec![(7, 3 + SLOTS as Tick)]
        );
    }

    #[test]
    fn an_entry_is_a_key_and_a_tick_in_8_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 8);
    }

    #[test]
    fn entries_several_laps_ahead_share_a_slot_until_their_own_lap() {
        let lap = SLOTS as Tick;
        let mut w = TimerWheel::new(0);
        w.schedule(1, 7);
        w.schedule(2, 7 + 3 * lap);
        w.schedule(3, 7 + lap);
        assert_eq!(fire(&mut w, 7), vec![(1, 7)]);
        assert_eq!(fire(&mut w, 6 + lap), vec![]);
        assert_eq!(fire(&mut w, 7 + 2 * lap), vec![(3, 7 + lap)]);
        assert_eq!(w.next_tick(), Some(7 + 3 * lap));
        assert_eq!(fire(&mut w, 6 + 3 * lap), vec![]);
        assert_eq!(fire(&mut w, 100 * lap), vec![(2, 7 + 3 * lap)]);
        assert_eq!(w.next_tick(), None);
    }

    #[test]
    fn a_long_jump_delivers_everything_due() {
        let mut w = TimerWheel::new(0);
        for k in 0..2000 {
            w.schedule(k, k as Tick);
        }
        let got = fire(&mut w, 100_000);
        assert_eq!(got.len(), 2000);
        assert_eq!(w.len, 0);
    }

    #[test]
    fn past_deadlines_fire_on_next_advance() {
        let mut w = TimerWheel::new(50);
        w.schedule(9, 10);
        assert_eq!(fire(&mut w, 51), vec![(9, 51)]);
    }

    #[test]
    fn advancing_touches_only_due_slots() {
        let mut w = TimerWheel::new(0);
        for k in 0..10_000 {
            w.schedule(k, 300);
        }
        assert_eq!(fire(&mut w, 299), vec![]);
        assert_eq!(w.len, 10_000);
        assert_eq!(fire(&mut w, 300).len(), 10_000);
    }
}
