//! What waits to be written to a Redis connection, and the accounting of
//! publications dropped because too much already waits.

use std::time::{Duration, Instant};

use crate::log;

/// Written bytes are only cut from the front once this many have piled up,
/// so a queue drained by partial writes is not moved for every write.
const COMPACT_AT: usize = 64 * 1024;
/// A drained queue keeps an allocation up to this size for the next bytes.
const KEEP_CAPACITY: usize = 64 * 1024;
/// A stalled Redis drops publications for as long as it stalls: one warning
/// per this period says how many, instead of one line per message.
const OVERFLOW_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct OutQueue {
    buf: Vec<u8>,
    sent: usize,
}

impl OutQueue {
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn unsent(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// Marks `n` bytes as written.
    pub fn consume(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.buf.len());
        if self.sent == self.buf.len() {
            self.clear();
        } else if self.sent >= COMPACT_AT && self.sent * 2 >= self.buf.len() {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Forgets everything; returns how many bytes were never written.
    pub fn clear(&mut self) -> usize {
        let unsent = self.pending();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.sent = 0;
        unsent
    }
}

/// Publications dropped because Redis did not keep up, from the first drop
/// until the queue has room again.
#[derive(Debug, Default)]
pub struct Overflow {
    dropped: u64,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl Overflow {
    pub fn is_active(&self) -> bool {
        self.dropped > 0
    }

    pub fn dropped_one(&mut self, now: Instant, queued: usize, cap: usize) {
        self.dropped += 1;
        self.unlogged += 1;
        if self
            .last_log
            .is_some_and(|at| now.duration_since(at) < OVERFLOW_LOG_EVERY)
        {
            return;
        }
        log!(
            Warn,
            "redis is not keeping up; dropping publications over --redis-max-queue-bytes",
            dropped = self.unlogged,
            queued_bytes = queued,
            cap_bytes = cap
        );
        self.unlogged = 0;
        self.last_log = Some(now);
    }

    /// The queue has room again: says how many were dropped in all.
    pub fn relieved(&mut self) {
        log!(
            Info,
            "redis is keeping up again; publishing resumed",
            dropped_total = self.dropped
        );
        *self = Overflow::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_keep_order_and_a_drained_queue_lets_go_of_its_memory() {
        let mut queue = OutQueue::default();
        let big = vec![7u8; 3 * COMPACT_AT];
        queue.push(&big);
        queue.push(b"tail");
        let mut written = Vec::new();
        while queue.pending() > 0 {
            let n = queue.unsent().len().min(10_000);
            written.extend_from_slice(&queue.unsent()[..n]);
            queue.consume(n);
        }
        assert_eq!(written.len(), big.len() + 4);
        assert!(written.ends_with(b"\x07tail"));
        assert_eq!(queue.buf.capacity(), 0);
    }

    #[test]
    fn clear_reports_what_was_never_written() {
        let mut queue = OutQueue::default();
        queue.push(b"abcdef");
        queue.consume(2);
        assert_eq!(queue.clear(), 4);
        assert_eq!(queue.pending(), 0);
    }
}
