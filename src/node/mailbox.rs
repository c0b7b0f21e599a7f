//! What workers send each other: frames for their clients and the answers
//! to cross-worker lookups. One queue per worker (the shell wakes its loop
//! when the queue was empty); frames travel as `Arc<[u8]>`, encoded once
//! by the sender.
//!
//! A mailbox counts what it holds, in bytes (each mail's frame and its
//! entry) and entries, and says when it is past its bound. Posting never
//! fails, so no message is lost between workers: the senders stop reading
//! their clients while any mailbox is full (see `node::pressure`), and the
//! receiver empties its mailbox at its next turn.

use std::sync::{Arc, Mutex};

use crate::app::envelope::Tag;
use crate::app::history::Position;
use crate::ids::ConnKey;

#[derive(Debug)]
pub enum Mail {
    /// A frame for every `/ws` client of the receiving worker.
    Broadcast(Arc<[u8]>),
    /// A message of the broadcast stream that goes to every `/ws` client
    /// of the receiving worker without an offset (Redis could not number
    /// it). `tag`: the publication it is, when it was sent for numbering
    /// and may also come back numbered; a worker that has already
    /// delivered it numbered skips it.
    Unsequenced { frame: Arc<[u8]>, tag: Option<Tag> },
    /// A frame for every `/ws` client of the receiving worker, with its
    /// place in the broadcast stream.
    Stream { frame: Arc<[u8]>, at: Position },
    /// A message of `channel` for the receiving worker's subscribers of it
    /// (`offset`: its number in the channel, if it has one). Mailed to
    /// every worker under the stream's lock, so each sees a channel's
    /// offsets in order.
    Channel {
        channel: Arc<str>,
        offset: Option<u64>,
        frame: Arc<[u8]>,
    },
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

impl Mail {
    /// What the mail holds in memory: its entry and the frame it carries
    /// (shared with other mailboxes and queues, and counted in each).
    pub fn cost(&self) -> usize {
        let frame = match self {
            Mail::Broadcast(frame)
            | Mail::Unsequenced { frame, .. }
            | Mail::Stream { frame, .. }
            | Mail::Channel { frame, .. } => frame.len(),
            Mail::Deliver { frame, report, .. } => {
                frame.len()
                    + match report {
                        Report::SenderOnMiss { error, .. } => error.len(),
                        _ => 0,
                    }
            }
            Mail::Delivered { .. } => 0,
        };
        ENTRY_BYTES + frame
    }
}

/// The size of one mailbox entry.
pub const ENTRY_BYTES: usize = std::mem::size_of::<Mail>();

/// The most entries one mailbox holds before it counts as full.
pub const MAX_ENTRIES: usize = 65_536;

/// The most bytes one mailbox holds before it counts as full (less when a
/// quarter of a worker's share of the total bound is less): what the
/// receiver takes at once joins its turn's batch, and every client left
/// behind by a batch takes an entry per 64 KiB of it.
pub const MAX_BYTES: usize = 256 * 1024;

/// What posting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    /// The queue was empty: the receiver needs waking (it wakes once per
    /// batch, not per mail).
    pub wake: bool,
    /// The bytes the mail added.
    pub bytes: usize,
    /// This mail made the mailbox full.
    pub filled: bool,
}

/// What taking the mail found.
#[derive(Debug, Default)]
pub struct Taken {
    pub mail: Vec<Mail>,
    pub bytes: usize,
    /// The mailbox was full, and is now empty.
    pub was_full: bool,
}

#[derive(Debug)]
pub struct Mailbox {
    inbox: Mutex<Inbox>,
    /// Past this many bytes the mailbox is full.
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Inbox {
    mail: Vec<Mail>,
    bytes: usize,
    full: bool,
    /// Its worker has stopped: nobody will take mail any more.
    closed: bool,
}

impl Mailbox {
    /// A mailbox that is full past `max_bytes` or `MAX_ENTRIES`.
    pub fn new(max_bytes: usize) -> Mailbox {
        Mailbox {
            inbox: Mutex::default(),
            max_bytes,
        }
    }

    /// Queues mail, even past the bound (a message between workers is never
    /// dropped: see the module's comment).
    pub fn post(&self, mail: Mail) -> Posted {
        let bytes = mail.cost();
        let mut inbox = self.lock();
        if inbox.closed {
            return Posted {
                wake: false,
                bytes: 0,
                filled: false,
            };
        }
        inbox.mail.push(mail);
        inbox.bytes += bytes;
        let filled =
            !inbox.full && (inbox.bytes > self.max_bytes || inbox.mail.len() > MAX_ENTRIES);
        inbox.full |= filled;
        Posted {
            wake: inbox.mail.len() == 1,
            bytes,
            filled,
        }
    }

    /// Takes everything queued, in order.
    pub fn take(&self) -> Taken {
        let mut inbox = self.lock();
        let closed = inbox.closed;
        let Inbox {
            mail, bytes, full, ..
        } = std::mem::replace(
            &mut *inbox,
            Inbox {
                closed,
                ..Inbox::default()
            },
        );
        Taken {
            mail,
            bytes,
            was_full: full,
        }
    }

    /// Its worker stopped: what waits is given back, and later mail is not
    /// kept (a stopped worker would never take it, and a full mailbox
    /// would stop every other worker's reads for good).
    pub fn close(&self) -> Taken {
        self.lock().closed = true;
        self.take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_once_per_batch() {
        let mailbox = Mailbox::new(1 << 20);
        let frame: Arc<[u8]> = Arc::from(&b"x"[..]);
        assert!(mailbox.post(Mail::Broadcast(Arc::clone(&frame))).wake);
        assert!(!mailbox.post(Mail::Broadcast(Arc::clone(&frame))).wake);
        assert_eq!(mailbox.take().mail.len(), 2);
        assert!(mailbox.post(Mail::Broadcast(frame)).wake);
    }

    #[test]
    fn past_its_bytes_a_mailbox_is_full_once_and_keeps_every_mail() {
        let mailbox = Mailbox::new(3 * (300 + ENTRY_BYTES));
        let frame: Arc<[u8]> = Arc::from(vec![0; 300]);
        let filled: Vec<bool> = (0..6)
            .map(|_| mailbox.post(Mail::Broadcast(Arc::clone(&frame))).filled)
            .collect();
        // 300 bytes and an entry each: three fit, the fourth is past.
        assert_eq!(filled, [false, false, false, true, false, false]);
        let taken = mailbox.take();
        assert_eq!(taken.mail.len(), 6, "nothing dropped");
        assert_eq!(taken.bytes, 6 * (300 + ENTRY_BYTES));
        assert!(taken.was_full);
        assert!(!mailbox.take().was_full, "empty again");
    }

    #[test]
    fn a_closed_mailbox_keeps_nothing() {
        let mailbox = Mailbox::new(1 << 20);
        let frame: Arc<[u8]> = Arc::from(&b"x"[..]);
        mailbox.post(Mail::Broadcast(Arc::clone(&frame)));
        assert_eq!(mailbox.close().mail.len(), 1);
        let posted = mailbox.post(Mail::Broadcast(frame));
        assert_eq!((posted.wake, posted.bytes), (false, 0));
        assert!(mailbox.take().mail.is_empty());
    }

    #[test]
    fn past_its_entries_a_mailbox_is_full() {
        let mailbox = Mailbox::new(usize::MAX);
        let answer = || Mail::Delivered {
            conn: ConnKey(0),
            ticket: 1,
            found: true,
            id: 1,
        };
        for _ in 0..MAX_ENTRIES {
            assert!(!mailbox.post(answer()).filled);
        }
        assert!(mailbox.post(answer()).filled);
        assert_eq!(mailbox.take().mail.len(), MAX_ENTRIES + 1);
    }
}
