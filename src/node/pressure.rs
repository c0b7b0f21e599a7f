//! The node's steps for the total queue bound (`--max-total-queue-bytes`,
//! the whole process): nothing new is read while the process holds more
//! than the bound or a mailbox is full; at the end of a turn a worker past
//! its share drops its largest queues (`writing.rs`), and whoever finds
//! the process back within the bound lets the reads go on, its own and the
//! other workers'.

use super::fanout::MAX_BATCH_BYTES;
use super::{Node, Output};
use crate::ids::ConnKey;

impl Node {
    /// Publishes what this worker holds for its clients (queues and the
    /// turn's batch) into the process's count.
    pub(super) fn publish_queued(&mut self) {
        let queued = self.conns.queued() + self.fanout.held();
        self.held_back.publish(queued, &self.process.queued);
    }

    /// Whether a read must wait: the turn's batch is full (the read waits
    /// for the turn's end), the process holds more than the bound, or a
    /// mailbox is full. The connection is then read again once it is within
    /// the bound.
    pub(super) fn must_wait(&mut self, key: ConnKey) -> bool {
        if self.fanout.held() >= MAX_BATCH_BYTES {
            self.held_back.hold(key);
            return true;
        }
        self.publish_queued();
        if !self.process.queued.pressed() {
            return false;
        }
        self.held_back.hold(key);
        self.process.queued.wait(self.id);
        true
    }

    /// Back within the bound: the reads held back here go on, and the
    /// workers waiting elsewhere are woken to let theirs go on.
    pub(super) fn release_reads(&mut self) {
        self.publish_queued();
        if self.process.queued.pressed() {
            return;
        }
        for worker in self.process.queued.take_waiting() {
            if worker != self.id {
                self.outputs.push_back(Output::Wake(worker));
            }
        }
        for key in self.held_back.release() {
            self.outputs.push_back(Output::ReadAgain(key));
        }
    }

    /// The worker stops: what it held no longer counts, no mail is kept for
    /// it, and the workers that waited for room are woken if that made
    /// some.
    pub(super) fn retire(&mut self) {
        self.held_back.publish(0, &self.process.queued);
        self.process.close_mailbox(self.id);
        if self.process.queued.pressed() {
            return;
        }
        for worker in self.process.queued.take_waiting() {
            if worker != self.id {
                self.outputs.push_back(Output::Wake(worker));
            }
        }
    }

    /// How many bytes this worker is to free by dropping queues: none
    /// within the bound; past it, what it holds beyond its share, at most
    /// the process's excess (so a worker never drops its clients for what
    /// another holds).
    pub(super) fn queue_excess(&mut self) -> usize {
        self.publish_queued();
        let excess = self.process.queued.excess();
        if excess == 0 {
            return 0;
        }
        let mine = self.conns.queued() + self.fanout.held();
        excess.min(mine.saturating_sub(self.queue_budget))
    }
}
