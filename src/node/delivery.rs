//! The node's steps for delivering messages: to one client of this worker,
//! to every client of the process (numbered in the stream, or not), and
//! the mail that carries them between workers.

use super::mailbox::{Mail, Report};
use super::peer::Sequenced;
use super::stream::StreamCursor;
use super::{Node, Output};
use crate::app::publish::published;
use crate::conn::Chunk;
use crate::ids::ConnKey;
use crate::obs::metrics;
use crate::proto::frame::Opcode;
use crate::proto::shared_frame::SharedFrame;

impl Node {
    /// Queues one data frame for a client of this worker (counted in
    /// `messages_sent`), after what went to everyone before it.
    pub(super) fn send_frame(&mut self, key: ConnKey, frame: Chunk) {
        self.fanout.prime(key, &mut self.conns);
        if let Some(Ok(())) = self.conns.queue(key, |conn| conn.send(frame)) {
            metrics::add(&self.process.stats.messages_sent, 1);
        }
    }

    /// Queues one JSON text frame for a client of this worker.
    pub(super) fn send_json(&mut self, key: ConnKey, json: &str) {
        self.fanout.prime(key, &mut self.conns);
        let sent = self
            .conns
            .queue(key, |conn| conn.send_frame(Opcode::Text, json.as_bytes()));
        if let Some(Ok(())) = sent {
            metrics::add(&self.process.stats.messages_sent, 1);
        }
    }

    /// Mail for another worker (woken if it is not already due to look).
    pub(super) fn post(&mut self, worker: usize, mail: Mail) {
        if self.process.post(worker, mail) && worker != self.id {
            self.outputs.push_back(Output::Wake(worker));
        }
    }

    /// Sends `json` to every `/ws` client of the process without an offset:
    /// encoded once, taken here, and the same bytes mailed to every other
    /// worker. Returns how many clients of the process it goes to.
    pub(super) fn broadcast(&mut self, json: &str) -> usize {
        let frame = self.compressor.frame(&self.process, json);
        let me = self.id;
        for worker in (0..self.process.config.workers).filter(|w| *w != me) {
            self.post(worker, Mail::Broadcast(frame.clone()));
        }
        let local = self.broadcast_local(&frame, None);
        (self.process.notify_clients() as usize).max(local)
    }

    /// Takes a frame for every `/ws` client of this worker, written at the
    /// end of the turn (see `Fanout`). `offset`: its place in the stream.
    /// Clients being replayed get a numbered one from their replay, where
    /// it is counted.
    pub(super) fn broadcast_local(&mut self, frame: &SharedFrame, offset: Option<u64>) -> usize {
        let fed = self.fanout.push(frame, offset, &mut self.conns);
        let recipients = self.hub.len();
        let from_batch = recipients.saturating_sub(self.fanout.apart()) as u64;
        metrics::add(&self.process.stats.messages_sent, from_batch + fed);
        recipients
    }

    /// Sends a message to every `/ws` client, numbered: by the process's
    /// sequencer without Redis, by Redis's script with it (every worker then
    /// delivers it from its subscription). While Redis is out of reach or
    /// stalled, or more than the cap waits for it, it goes to this
    /// process's clients at once without an offset (and to other instances
    /// unnumbered, if Redis takes it), after whatever of this worker's
    /// still waited for its numbering, and no resume may be recovered
    /// across it (see `unsequenced_local`). Returns how many clients of the
    /// process it goes to.
    pub(super) fn broadcast_stream(&mut self, json: &str) -> usize {
        let Some(remote) = &self.remote else {
            let (id, now) = (self.id, self.clock.at());
            let (outputs, compressor) = (&mut self.outputs, &mut self.compressor);
            let (sequenced, wake_link) =
                StreamCursor::sequence(&self.process, id, json, now, Some(compressor), |worker| {
                    outputs.push_back(Output::Wake(worker));
                });
            if wake_link {
                self.outputs.push_back(Output::WakeLink);
            }
            match sequenced {
                // This worker's own mail is read at once, so the message
                // keeps its place among the sender's own (a chat then a
                // direct message from one read arrive in that order).
                Sequenced::Here => self.read_mail(),
                // It comes back numbered from the new process.
                Sequenced::ToPeer => {}
                Sequenced::Unnumbered => {
                    self.broadcast(json);
                }
            }
            return self.process.notify_clients() as usize;
        };
        let sequencing = remote.sequencing(self.clock.at());
        if sequencing && self.publish_numbered(json) {
            return self.process.notify_clients() as usize;
        }
        // In publication order: what waited goes out first.
        self.release_waiting();
        if !sequencing {
            self.publish_remote(None, json);
        }
        metrics::add(&self.process.stats.redis_unnumbered, 1);
        let frame = self.compressor.frame(&self.process, json);
        for worker in 0..self.process.config.workers {
            let frame = frame.clone();
            self.post(worker, Mail::Unsequenced { frame, tag: None });
        }
        self.read_mail();
        self.process.notify_clients() as usize
    }

    /// Carries out mail from other workers (and this one's own stream).
    pub(super) fn read_mail(&mut self) {
        for item in self.mail.take(&self.process, self.id) {
            match item {
                Mail::Broadcast(frame) => {
                    self.broadcast_local(&frame, None);
                }
                Mail::Unsequenced { frame, tag } => {
                    let fresh = match tag {
                        Some(tag) => self.stream.release(tag),
                        None => true,
                    };
                    if fresh {
                        self.unsequenced_local(&frame);
                    }
                }
                Mail::Stream { frame, at } => {
                    self.stream.advance(at);
                    self.broadcast_local(&frame, Some(at.offset));
                }
                Mail::Channel {
                    channel,
                    offset,
                    frame,
                } => self.deliver_channel(&channel, offset, &frame),
                Mail::ChannelUnsequenced {
                    channel,
                    frame,
                    tag,
                } => {
                    let fresh = match tag {
                        Some(tag) => self.stream.release(tag),
                        None => true,
                    };
                    if fresh {
                        self.channel_unsequenced_local(&channel, &frame);
                    }
                }
                Mail::Deliver { seq, frame, report } => {
                    let target = self.hub.key(seq, &self.conns);
                    if let Some(key) = target {
                        self.send_frame(key, Chunk::Shared(frame));
                    }
                    self.report(report, target.is_some());
                }
                Mail::Delivered {
                    conn,
                    ticket,
                    found,
                    id,
                } => self.answer_parked(conn, ticket, published(found, id)),
            }
        }
    }

    /// Tells whoever waits for a delivery whether the client was here.
    fn report(&mut self, report: Report, found: bool) {
        match report {
            Report::Nothing => {}
            Report::SenderOnMiss { worker, seq, error } if !found => {
                let report = Report::Nothing;
                let mail = Mail::Deliver {
                    seq,
                    frame: error,
                    report,
                };
                self.post(worker, mail);
            }
            Report::SenderOnMiss { .. } => {}
            Report::Publisher {
                worker,
                conn,
                ticket,
                id,
            } => {
                let mail = Mail::Delivered {
                    conn,
                    ticket,
                    found,
                    id,
                };
                self.post(worker, mail);
            }
        }
    }
}
