//! The broadcasts this worker gave Redis to number that have not yet come
//! back on its subscription. Until they do they reach no client, so they
//! are kept here: when Redis stalls or a connection is lost they are handed
//! to the clients at once instead (`release`), never held for the length of
//! the stall and never lost. Each carries this worker's own count of them
//! (its `seq`, in the envelope's origin), so a copy that Redis numbers
//! later is recognised and not delivered twice.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What one kept broadcast costs besides its text.
const ENTRY_COST: usize = 48;

#[derive(Debug)]
struct Waiting {
    seq: u64,
    json: Box<str>,
    /// When the wait for its return began: `None` until the start of the
    /// loop turn after the one that queued it (see `RedisLink::turn_began`).
    since: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Returns {
    /// The last `seq` handed out.
    last_seq: u64,
    waiting: VecDeque<Waiting>,
    bytes: usize,
}

impl Returns {
    /// The count for the next broadcast published through the numbering.
    pub fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// Broadcast `seq` was queued for Redis.
    pub fn push(&mut self, seq: u64, json: &str) {
        self.bytes += json.len() + ENTRY_COST;
        self.waiting.push_back(Waiting {
            seq,
            json: json.into(),
            since: None,
        });
    }

    /// Broadcast `seq` came back numbered: it and any before it (Redis
    /// numbers one connection's commands in order) wait no more.
    pub fn returned(&mut self, seq: u64) {
        while self.waiting.front().is_some_and(|w| w.seq <= seq) {
            if let Some(w) = self.waiting.pop_front() {
                self.bytes -= w.json.len() + ENTRY_COST;
            }
        }
    }

    pub fn turn_began(&mut self, now: Instant) {
        for waiting in &mut self.waiting {
            waiting.since.get_or_insert(now);
        }
    }

    /// When the oldest has waited `limit`.
    pub fn overdue_at(&self, limit: Duration) -> Option<Instant> {
        self.waiting.front()?.since.map(|since| since + limit)
    }

    /// Whether one waits for the next loop turn to start its wait.
    pub fn unstarted(&self) -> bool {
        self.waiting.back().is_some_and(|w| w.since.is_none())
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// What is kept, in bytes (counted against `--redis-max-queue-bytes`).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Everything still waiting, oldest first, to be delivered without an
    /// offset.
    pub fn release(&mut self) -> Vec<(u64, Box<str>)> {
        self.bytes = 0;
        self.waiting.drain(..).map(|w| (w.seq, w.json)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_comes_back_leaves_in_order_and_the_rest_is_released() {
        let now = Instant::now();
        let mut returns = Returns::default();
        for text in ["a", "b", "c"] {
            let seq = returns.next_seq();
            returns.push(seq, text);
        }
        assert_eq!(returns.overdue_at(Duration::from_secs(1)), None);
        assert!(returns.unstarted());
        returns.turn_began(now);
        assert!(!returns.unstarted());
        assert_eq!(
            returns.overdue_at(Duration::from_secs(1)),
            Some(now + Duration::from_secs(1))
        );
        assert_eq!(returns.bytes(), 3 * (1 + ENTRY_COST));
        returns.returned(1);
        assert_eq!(returns.bytes(), 2 * (1 + ENTRY_COST));
        let released = returns.release();
        assert_eq!(released, [(2, "b".into()), (3, "c".into())]);
        assert!(returns.is_empty() && returns.bytes() == 0);
        assert_eq!(returns.next_seq(), 4, "counts never repeat");
    }
}
