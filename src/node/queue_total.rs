//! What the process holds for its clients, every worker together, counted
//! toward `--max-total-queue-bytes` from the moment a message is queued
//! anywhere: the mail between workers (counted as it is posted and
//! taken), each worker's batch for the turn and its clients' queues (each
//! worker publishes its part before every read and at the end of every
//! turn). Past the bound, or while a mailbox is full, workers stop reading
//! and wait here until another (or their own turn's end) finds the process
//! back within it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::mailbox::{Posted, Taken};

#[derive(Debug)]
pub struct QueueTotal {
    bound: usize,
    /// Client queues and turn batches, as each worker last published them.
    queued: AtomicUsize,
    /// Mail posted and not yet taken.
    mail: AtomicUsize,
    /// Mailboxes past their own bound.
    full: AtomicUsize,
    /// Whether `waiting` may hold a worker (read without the lock).
    waits: AtomicBool,
    /// Workers that stopped reading until the process is within the bound.
    waiting: Mutex<Vec<usize>>,
}

impl QueueTotal {
    pub fn new(bound: usize) -> QueueTotal {
        QueueTotal {
            bound,
            queued: AtomicUsize::new(0),
            mail: AtomicUsize::new(0),
            full: AtomicUsize::new(0),
            waits: AtomicBool::new(false),
            waiting: Mutex::new(Vec::new()),
        }
    }

    pub fn bound(&self) -> usize {
        self.bound
    }

    /// A worker's part of the queued bytes went from `before` to `after`.
    pub fn changed(&self, before: usize, after: usize) {
        if after >= before {
            self.queued.fetch_add(after - before, Ordering::SeqCst);
        } else {
            self.queued.fetch_sub(before - after, Ordering::SeqCst);
        }
    }

    pub fn posted(&self, posted: Posted) {
        self.mail.fetch_add(posted.bytes, Ordering::SeqCst);
        if posted.filled {
            self.full.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn taken(&self, taken: &Taken) {
        self.mail.fetch_sub(taken.bytes, Ordering::SeqCst);
        if taken.was_full {
            self.full.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Bytes in client queues and turn batches.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Bytes of mail between workers, posted and not yet taken.
    pub fn mail(&self) -> usize {
        self.mail.load(Ordering::Relaxed)
    }

    /// Whether nothing new may be read: a mailbox is full, or the process
    /// holds more than the bound.
    pub fn pressed(&self) -> bool {
        self.full.load(Ordering::SeqCst) > 0
            || self.queued.load(Ordering::SeqCst) + self.mail.load(Ordering::SeqCst) > self.bound
    }

    /// How far past the bound the process is (0 within it).
    pub fn excess(&self) -> usize {
        (self.queued.load(Ordering::SeqCst) + self.mail.load(Ordering::SeqCst))
            .saturating_sub(self.bound)
    }

    /// `worker` stopped reading until the process is within the bound.
    pub fn wait(&self, worker: usize) {
        let mut waiting = self.lock();
        if !waiting.contains(&worker) {
            waiting.push(worker);
        }
        self.waits.store(true, Ordering::SeqCst);
    }

    /// The workers waiting, who are to be woken now.
    pub fn take_waiting(&self) -> Vec<usize> {
        if !self.waits.load(Ordering::SeqCst) {
            return Vec::new();
        }
        let mut waiting = self.lock();
        self.waits.store(false, Ordering::SeqCst);
        std::mem::take(&mut *waiting)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bound_or_with_a_full_mailbox_readers_wait() {
        let total = QueueTotal::new(1_000);
        total.changed(0, 600);
        total.posted(Posted {
            wake: true,
            bytes: 300,
            filled: false,
        });
        assert!(!total.pressed());
        total.changed(600, 800);
        assert!(total.pressed());
        assert_eq!(total.excess(), 100);
        total.changed(800, 100);
        assert!(!total.pressed());
        total.posted(Posted {
            wake: false,
            bytes: 1,
            filled: true,
        });
        assert!(total.pressed(), "a full mailbox, whatever the total");
        total.taken(&Taken {
            mail: Vec::new(),
            bytes: 301,
            was_full: true,
        });
        assert!(!total.pressed());
        assert_eq!((total.queued(), total.mail()), (100, 0));
    }

    #[test]
    fn each_waiting_worker_is_handed_out_once() {
        let total = QueueTotal::new(1);
        assert!(total.take_waiting().is_empty());
        total.wait(1);
        total.wait(1);
        total.wait(0);
        assert_eq!(total.take_waiting(), [1, 0]);
        assert!(total.take_waiting().is_empty());
    }
}
