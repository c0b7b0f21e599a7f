//! This worker's side of the total queue bound: the connections whose
//! reads wait while the process holds more than `--max-total-queue-bytes`
//! or a mailbox is full, and this worker's part of the process's count as
//! it last published it.

use std::collections::HashSet;

use super::queue_total::QueueTotal;
use crate::ids::ConnKey;

#[derive(Debug, Default)]
pub struct HeldBack {
    keys: HashSet<ConnKey>,
    /// This worker's queued bytes as `QueueTotal` counts them.
    published: usize,
}

impl HeldBack {
    /// The connection is not read until `release`.
    pub fn hold(&mut self, key: ConnKey) {
        self.keys.insert(key);
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The connections held back, to be read again.
    pub fn release(&mut self) -> Vec<ConnKey> {
        let mut keys: Vec<ConnKey> = self.keys.drain().collect();
        keys.sort_unstable();
        keys
    }

    /// This worker now holds `queued` bytes for its clients.
    pub fn publish(&mut self, queued: usize, total: &QueueTotal) {
        if queued != self.published {
            total.changed(self.published, queued);
            self.published = queued;
        }
    }
}
