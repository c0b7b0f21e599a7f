//! What workers send each other: frames for their clients and the answers
//! to cross-worker lookups. One queue per worker (the shell wakes its loop
//! when the queue was empty); frames travel as `Arc<[u8]>`, encoded once
//! by the sender.

use std::sync::{Arc, Mutex};

use crate::app::history::Position;
use crate::ids::ConnKey;

#[derive(Debug)]
pub enum Mail {
    /// A frame for every `/ws` client of the receiving worker.
    Broadcast(Arc<[u8]>),
    /// A frame for every `/ws` client of the receiving worker, with its
    /// place in the broadcast stream.
    Stream { frame: Arc<[u8]>, at: Position },
    /// A frame for one client of the receiving worker, and whom to tell
    /// whether it was there.
    Deliver {
        seq: u64,
        frame: Arc<[u8]>,
        report: Report,
    },
    /// The answer to a personal publish, for the HTTP connection `conn` of
    /// the receiving worker that waits with `ticket`.
    Delivered {
        conn: ConnKey,
        ticket: u64,
        found: bool,
        id: u64,
    },
}

#[derive(Debug)]
pub enum Report {
    /// Nobody waits for the outcome.
    Nothing,
    /// A direct message: if the target is gone, this error frame goes back to
    /// the sender, client `seq` of `worker`.
    SenderOnMiss {
        worker: usize,
        seq: u64,
        error: Arc<[u8]>,
    },
    /// A personal publish: the outcome goes back to an HTTP connection.
    Publisher {
        worker: usize,
        conn: ConnKey,
        ticket: u64,
        id: u64,
    },
}

#[derive(Debug, Default)]
pub struct Mailbox {
    queue: Mutex<Vec<Mail>>,
}

impl Mailbox {
    /// Queues mail; returns true when the queue was empty, i.e. when the
    /// receiver needs waking (it wakes once per batch, not per mail).
    pub fn post(&self, mail: Mail) -> bool {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.push(mail);
        queue.len() == 1
    }

    /// Takes everything queued, in order.
    pub fn take(&self) -> Vec<Mail> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut *queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_once_per_batch() {
        let mailbox = Mailbox::default();
        let frame: Arc<[u8]> = Arc::from(&b"x"[..]);
        assert!(mailbox.post(Mail::Broadcast(Arc::clone(&frame))));
        assert!(!mailbox.post(Mail::Broadcast(Arc::clone(&frame))));
        assert_eq!(mailbox.take().len(), 2);
        assert!(mailbox.post(Mail::Broadcast(frame)));
    }
}
