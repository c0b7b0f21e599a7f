//! Delivering messages to this worker's clients: one frame encoded once and
//! shared by every recipient's queue.

use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::sync::Arc;

use super::mailbox::{Mail, Report};
use super::notice::Notices;
use super::slot::Slot;
use super::socket_write::{sendmsg, slices_of};
use super::worker::Worker;
use crate::app::hub::Client;
use crate::app::publish::published;
use crate::conn::Chunk;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};

impl Worker {
    /// Queues one data frame (counted in `messages_sent`).
    pub(super) fn send_frame(&mut self, key: usize, frame: Chunk) {
        metrics::add(&self.shared.stats.messages_sent, 1);
        if let Some(out) = self.queue(key) {
            out.push(frame);
        }
    }

    /// Queues one JSON text frame (see `WriteQueue::push_frame`).
    pub(super) fn send_json(&mut self, key: usize, json: &str) {
        metrics::add(&self.shared.stats.messages_sent, 1);
        if let Some(out) = self.queue(key) {
            out.push_frame(Opcode::Text, json.as_bytes());
        }
    }

    /// Sends `json` to every `/ws` client of the process: encoded once,
    /// queued here, and the same bytes mailed to every other worker. Returns
    /// how many clients of the process it goes to.
    pub(super) fn broadcast(&mut self, json: &str) -> usize {
        let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
        for worker in (0..self.shared.config.workers).filter(|w| *w != self.id) {
            self.shared
                .post(worker, Mail::Broadcast(Arc::clone(&frame)));
        }
        let local = self.broadcast_local(&frame, None);
        (self.shared.notify_clients() as usize).max(local)
    }

    /// Takes a frame for every `/ws` client of this worker. Delivery waits
    /// for the end of the loop turn (or the next message to one client, or
    /// a client joining), so the broadcasts of one turn reach each client
    /// in one `sendmsg`. `offset`: its place in the broadcast stream.
    pub(super) fn broadcast_local(&mut self, frame: &Arc<[u8]>, offset: Option<u64>) -> usize {
        if !self.ahead.is_empty() {
            self.feed_ahead(frame, offset);
        }
        self.turn_broadcasts.push(Arc::clone(frame));
        let recipients = self.hub.len();
        metrics::add(&self.shared.stats.messages_sent, recipients as u64);
        recipients
    }

    /// Writes this turn's broadcasts to every `/ws` client (see `Pass`).
    pub(super) fn deliver_broadcasts(&mut self) {
        if !self.turn_broadcasts.is_empty() {
            self.deliver_turn(None);
        }
    }

    /// Writes this turn's broadcasts, and with `notices` each client's
    /// shutdown notice after them, to every `/ws` client: one `sendmsg` per
    /// client for all of it.
    pub(super) fn deliver_turn(&mut self, mut notices: Option<&mut Notices>) {
        let mut frames = std::mem::take(&mut self.turn_broadcasts);
        let broadcasts = frames.len();
        let broadcast_bytes: usize = frames.iter().map(|f| f.len()).sum();
        let (shared_slices, count) = slices_of(&frames);
        // With notices, each client's frames: the broadcasts and its notice.
        let mut own: Vec<Arc<[u8]>> = match notices {
            Some(_) => frames.clone(),
            None => Vec::new(),
        };
        let mut pass = Pass {
            dirty: &mut self.dirty,
            failed: &mut self.failed,
            sent: 0,
        };
        let mut recipients = 0;
        // Slab order, not the hub's hash order: the connections (and the
        // kernel's sockets, allocated in the same order) are visited the
        // way they lie in memory, which made 10,000-client fanout 1.4 times
        // faster. A client is in from its join (seq 0 until then).
        for (key, slot) in self.conns.iter_mut() {
            if !slot.conn.client().is_some_and(Client::takes_broadcasts) {
                continue;
            }
            recipients += 1;
            // A client resumed ahead of this worker gets the stream from
            // `feed_ahead`, not from the turn.
            let ahead = !self.ahead.is_empty() && self.ahead.contains_key(&key);
            let Some(notices) = notices.as_deref_mut() else {
                if !ahead {
                    pass.write(key, slot, &frames, &shared_slices[..count], broadcast_bytes);
                }
                continue;
            };
            let notice = notices.draw(&mut self.rng);
            let notice_bytes = notice.len();
            own.push(notice);
            let (from, total) = if ahead {
                (broadcasts, notice_bytes)
            } else {
                (0, broadcast_bytes + notice_bytes)
            };
            let (slices, n) = slices_of(&own[from..]);
            pass.write(key, slot, &own[from..], &slices[..n], total);
            own.pop();
        }
        if notices.is_some() {
            metrics::add(&self.shared.stats.messages_sent, recipients);
        }
        metrics::add(&self.shared.stats.bytes_sent, pass.sent as u64);
        self.remove_failed();
        frames.clear();
        self.turn_broadcasts = frames;
        self.catch_up_ahead();
    }

    /// Closes the connections whose write failed during a delivery pass.
    pub(super) fn remove_failed(&mut self) {
        let mut failed = std::mem::take(&mut self.failed);
        for key in failed.drain(..) {
            self.remove(key, &"write error");
        }
        self.failed = failed;
    }

    /// Carries out mail from other workers.
    pub(super) fn read_mail(&mut self) {
        let mut mail = std::mem::take(&mut self.mail);
        self.shared.take_mail(self.id, &mut mail);
        for item in mail.drain(..) {
            match item {
                Mail::Broadcast(frame) => {
                    self.broadcast_local(&frame, None);
                }
                Mail::Stream { frame, at } => {
                    self.position = at;
                    self.broadcast_local(&frame, Some(at.offset));
                }
                Mail::Deliver { seq, frame, report } => {
                    let target = self.hub.slot(seq);
                    if let Some(key) = target {
                        self.send_frame(key, Chunk::Shared(frame));
                    }
                    match report {
                        Report::Nothing => {}
                        Report::SenderOnMiss { worker, seq, error } if target.is_none() => {
                            let report = Report::Nothing;
                            self.shared.post(
                                worker,
                                Mail::Deliver {
                                    seq,
                                    frame: error,
                                    report,
                                },
                            );
                        }
                        Report::SenderOnMiss { .. } => {}
                        Report::Publisher {
                            worker,
                            conn,
                            ticket,
                            id,
                        } => {
                            let found = target.is_some();
                            self.shared.post(
                                worker,
                                Mail::Delivered {
                                    conn,
                                    ticket,
                                    found,
                                    id,
                                },
                            );
                        }
                    }
                }
                Mail::Delivered {
                    conn,
                    ticket,
                    found,
                    id,
                } => {
                    self.answer_parked(conn, ticket, published(found, id));
                }
            }
        }
        self.mail = mail;
    }
}

/// One pass writing shared frames to clients: what it sent, and the
/// connections it leaves to flush or to close.
pub(super) struct Pass<'a> {
    pub dirty: &'a mut Vec<usize>,
    pub failed: &'a mut Vec<usize>,
    pub sent: usize,
}

impl Pass<'_> {
    /// Writes `frames` to one client: straight from the frames to the
    /// socket when its queue is empty (nothing allocated or queued), and
    /// only what the socket did not take is queued, for the flush that
    /// follows (which registers for writability or drops a slow consumer).
    /// `slices` are the frames' slices and `total` their length.
    pub fn write(
        &mut self,
        key: usize,
        slot: &mut Slot,
        frames: &[Arc<[u8]>],
        slices: &[IoSlice<'_>],
        total: usize,
    ) {
        let out = slot.conn.out_mut();
        if out.is_empty() {
            match sendmsg(slot.stream.as_fd(), slices) {
                Ok(n) if n == total => {
                    self.sent += n;
                    return;
                }
                Ok(n) => {
                    self.sent += n;
                    out.push_unsent(frames, n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    out.push_unsent(frames, 0)
                }
                Err(_) => {
                    self.failed.push(key);
                    return;
                }
            }
        } else {
            for frame in frames {
                out.push(Chunk::Shared(Arc::clone(frame)));
            }
        }
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(key);
        }
    }
}
